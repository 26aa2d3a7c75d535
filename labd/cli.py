"""The `labd` command line: `labd serve --data-dir DIR [...]`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from evalsuites import SuiteError
from labd.config import LabConfig, StartupError
from pilotlab import __version__
from pilotlab import domain as d
from pilotlab.tls import TlsError, server_tls


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="labd", description="PilotLab lab daemon")
    p.add_argument("--version", action="version", version=f"labd {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the lab daemon")
    s.add_argument("--data-dir", required=True, type=Path, help="keys, admin token, artifacts, SQLite db")
    s.add_argument("--listen", default="127.0.0.1:50051", help="gRPC HOST:PORT (port 0 picks one)")
    s.add_argument("--db", default="", help="database URL (default sqlite:///DATA_DIR/lab.db)")
    s.add_argument("--metrics-listen", default=None, help="Prometheus HOST:PORT")
    s.add_argument("--web-listen", default=None,
                   help="web console HOST:PORT (port 0 picks one; HTTPS with --tls-cert/--tls-key)")
    s.add_argument("--suites", action="append", type=Path, default=[], help="suite directory (repeatable)")
    s.add_argument("--lease-seconds", type=float, default=30.0,
                   help="an attempt whose agent stops heartbeating this long is requeued (default 30)")
    s.add_argument("--heartbeat-seconds", type=float, default=None,
                   help="how often agents heartbeat (default: a third of --lease-seconds, at most 5); a large fleet "
                        "heartbeats less often to spend less of labd on it (at most a third of --lease-seconds)")
    s.add_argument("--tls-cert", type=Path, default=None, help="the lab's TLS certificate chain (PEM)")
    s.add_argument("--tls-key", type=Path, default=None, help="the private key of --tls-cert (PEM, unencrypted)")
    s.add_argument("--tls-client-ca", type=Path, default=None,
                   help="require client certificates signed by this CA (mutual TLS)")
    s.add_argument("--insecure", action="store_true",
                   help="allow plaintext on a non-loopback --listen (tokens and results cross the network unread)")
    s.add_argument("--blobs", default=None,
                   help="where result batches are kept: a folder (default DATA_DIR/blobs; one shared by every "
                        "replica) or s3://BUCKET/PREFIX (endpoint and credentials from AWS_ENDPOINT_URL, "
                        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION)")
    s.add_argument("--signing-key", type=Path, default=None,
                   help="the lab's report signing key (default DATA_DIR/signing_key.pem); every replica of one lab "
                        "needs the same key")
    s.add_argument("--nats", default=None,
                   help="NATS URL for wake-up hints between labd replicas on one PostgreSQL (e.g. "
                        "nats://127.0.0.1:4222); without it replicas see each other's work within a second")
    s.add_argument("--threads", type=int, default=0,
                   help="worker threads for blocking work (store, signature checks); default: CPUs + 1 on SQLite, "
                        "CPUs + 4 (at most 32) on PostgreSQL")
    s.add_argument("--log-level", default="INFO")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        tls = server_tls(args.tls_cert, args.tls_key, args.tls_client_ca)
    except TlsError as e:
        print(f"labd: {e}", file=sys.stderr)
        return 2
    lease_ms = int(args.lease_seconds * 1000)
    most = min(3600.0, args.lease_seconds / 3)  # the longest heartbeat interval this lease allows
    if args.heartbeat_seconds is None:
        heartbeat_ms = min(5_000, max(200, lease_ms // 3))
    elif not 0.2 <= args.heartbeat_seconds <= most:
        print(f"labd: --heartbeat-seconds {args.heartbeat_seconds:g} is out of range: give 0.2 to {most:g} (at most a "
              f"third of --lease-seconds {args.lease_seconds:g}, so that a lease outlives two missed heartbeats, and "
              "an hour), or raise --lease-seconds", file=sys.stderr)
        return 2
    else:
        heartbeat_ms = int(args.heartbeat_seconds * 1000)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = LabConfig(data_dir=args.data_dir, listen=args.listen, db_url=args.db,
                       metrics_listen=args.metrics_listen, web_listen=args.web_listen, suite_dirs=args.suites,
                       tls=tls, insecure=args.insecure, blobs=args.blobs, signing_key=args.signing_key,
                       nats_url=args.nats, threads=args.threads,
                       lease_ms=lease_ms, heartbeat_interval_ms=heartbeat_ms)
    # An unreachable PostgreSQL is a start-up error in seconds, not a hang (libpq reads this; --db may override).
    os.environ.setdefault("PGCONNECT_TIMEOUT", "10")
    from labd.server import serve

    try:
        asyncio.run(serve(config))
    except (StartupError, SuiteError, d.LabError, ValueError) as e:
        print(f"labd: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"labd: {e}; is another labd using {args.listen}? pick another --listen", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
