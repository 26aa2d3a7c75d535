"""The `lab-agent` command line."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from agents import AGENT_VERSION
from agents.config import AgentConfig
from pilotlab.domain import DEVICE_CLASSES, Invalid
from pilotlab.instance import DirUnusable, claim_dir
from pilotlab.names import check_device
from pilotlab.tls import ClientTls, TlsError


def _tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"tag {text!r} is not KEY=VALUE")
    return key, value


def claim_work_dir(work_dir: Path) -> int:
    """Hold work_dir for this process: two agents sharing a work dir would be one device knocking each other's
    session off."""
    return claim_dir(work_dir, "agent.lock", "--work-dir", "lab-agent",
                     "running lab-agent{pid}; stop it or give this agent its own --work-dir")


class TokenError(Exception):
    """No usable enrolment token; the message is one line saying why and what to do."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lab-agent", description="PilotLab device agent")
    p.add_argument("--version", action="version", version=f"lab-agent {AGENT_VERSION}")
    p.add_argument("--lab", required=True,
                   help="the lab's HOST:PORT; several labd replicas: IP:PORT,IP:PORT… or dns:///NAME:PORT")
    token = p.add_mutually_exclusive_group()
    token.add_argument("--token", help="enrolment token (role agent); needed for the first enrolment only")
    token.add_argument("--token-file", type=Path,
                       help="a file holding the enrolment token (keeps it out of `ps`); instead of --token")
    p.add_argument("--name", required=True, help="this device's name in the lab")
    p.add_argument("--class", dest="device_class", required=True, choices=DEVICE_CLASSES)
    p.add_argument("--tag", action="append", type=_tag, default=[], help="KEY=VALUE (repeatable)")
    p.add_argument("--region", default="")
    p.add_argument("--work-dir", type=Path, default=Path("lab-agent-work"),
                   help="credentials, artifact cache and result outbox (default ./lab-agent-work)")
    p.add_argument("--power-meter", default=None, help="scpi://HOST:PORT[?query=CMD]")
    p.add_argument("--slots", type=int, default=1, help="tasks run at once")
    p.add_argument("--max-task-seconds", type=float, default=0.0,
                   help="cap on every task's wall-clock limit (timeout_s), seconds; default: the suite's")
    p.add_argument("--max-task-memory-mb", type=int, default=0,
                   help="cap on the memory of every task's executor process, MiB; default: 80%% of this device's RAM")
    p.add_argument("--no-isolate-cpus", dest="isolate_cpus", action="store_false",
                   help="on devices with 4 or more CPUs, do not keep the agent off the executors' CPUs")
    p.add_argument("--ca", type=Path, default=None,
                   help="the CA (or self-signed certificate) the lab's TLS certificate must chain to; enables TLS")
    p.add_argument("--tls-cert", type=Path, default=None,
                   help="this device's client certificate (PEM), for a lab that requires mutual TLS")
    p.add_argument("--tls-key", type=Path, default=None, help="the private key of --tls-cert (PEM)")
    p.add_argument("--insecure", action="store_true",
                   help="allow plaintext to a lab that is not on this machine (tokens cross the network unread)")
    p.add_argument("--log-level", default="INFO")
    return p


def enrolment_token(args: argparse.Namespace) -> str:
    """The agent token from --token or --token-file ("" when neither); a first enrolment needs one."""
    if args.token_file is not None:
        try:
            return str(args.token_file.read_text().strip())
        except OSError as e:
            raise TokenError(f"cannot read --token-file {args.token_file} ({e.strerror}); "
                             "check the path and its permissions") from None
    token = args.token or ""
    from agents.credentials import load_credential

    if not token and load_credential(args.work_dir) is None:
        raise TokenError(f"{args.work_dir} holds no device credential yet: the first enrolment needs --token TOKEN "
                         "or --token-file FILE (an agent token from `labctl token create --role agent`)")
    return str(token)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # gRPC's core would log each failed TLS handshake in its own format; the agent logs the failure and advice.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    try:
        token = enrolment_token(args)
    except TokenError as e:
        print(f"lab-agent: {e}", file=sys.stderr)
        return 2
    try:  # the lab checks these too; checked here, a bad one is one line now rather than a refused enrolment
        check_device(args.name, args.region, dict(args.tag))
    except Invalid as e:
        print(f"lab-agent: {e}", file=sys.stderr)
        return 2
    tls = ClientTls(args.ca, args.tls_cert, args.tls_key, args.insecure)
    try:
        tls.check_address(args.lab)
        if tls.enabled:
            tls.channel_credentials()  # reads and checks the files now: a bad one is one line, not a retry loop
    except TlsError as e:
        print(f"lab-agent: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = AgentConfig(tls=tls, lab=args.lab, token=token, name=args.name, device_class=args.device_class,
                      tags=dict(args.tag), region=args.region, work_dir=args.work_dir, power_meter=args.power_meter,
                      slots=max(1, args.slots), max_task_seconds=max(0.0, args.max_task_seconds),
                      max_task_memory_mb=max(0, args.max_task_memory_mb), isolate_cpus=args.isolate_cpus)
    try:
        lock_fd = claim_work_dir(cfg.work_dir)
    except DirUnusable as e:
        print(f"lab-agent: {e}", file=sys.stderr)
        return 2
    from agents.worker import AgentStopped, Worker

    worker = Worker(cfg)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.request_stop())
    try:
        worker.run()
    except AgentStopped as e:
        print(f"lab-agent: {e}", file=sys.stderr)
        return 3
    finally:
        os.close(lock_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
