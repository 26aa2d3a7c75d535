"""TLS on every gRPC door, with real certificates made by cryptography: a real labd with mutual TLS, a real agent
that enrols and runs a suite over it, labctl pulling and verifying the report; and every way to get it wrong, each
one line and a non-zero exit."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pilotlab.tls import ClientTls, TlsError, explain_unreachable, is_loopback
from tests.e2e.conftest import AGENT_BIN, BIN, Labd, labctl, make_suite, wait_until
from tests.tlscerts import TestCA


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "pki")


def _one_line(p: subprocess.CompletedProcess[str], code: int) -> str:
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == code, f"exit {p.returncode}: {p.stderr}"
    assert "Traceback" not in p.stderr
    assert len(lines) == 1, p.stderr
    return lines[0]


def test_suite_runs_over_mutual_tls_and_wrong_clients_are_refused(tmp_path: Path, ca: TestCA,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    server = ca.issue("labd")
    engineer, device = ca.issue("engineer", server=False), ca.issue("device", server=False)
    lab = Labd(tmp_path / "lab", extra=["--tls-cert", str(server.cert), "--tls-key", str(server.key),
                                        "--tls-client-ca", str(ca.path),
                                        "--suites", str(make_suite(tmp_path / "suites", "tls-smoke", 200))]).start()
    try:
        assert "gRPC speaks mutual TLS" in lab.log.read_text()
        admin = lab.admin_token
        # Without a client certificate, or trusting another CA, or in plaintext: refused, one line each, exit 3.
        monkeypatch.setenv("LAB_CA", str(ca.path))
        line = _one_line(labctl(lab, admin, "devices", "list"), 3)
        assert "client certificate" in line and "--tls-cert" in line, line
        other = TestCA(tmp_path / "other", "Other CA")
        line = _one_line(labctl(lab, admin, "--ca", str(other.path), "devices", "list"), 3)
        assert line.endswith("the lab's certificate does not chain to --ca; check that --ca is the lab's CA"), line
        monkeypatch.delenv("LAB_CA")
        line = _one_line(labctl(lab, admin, "devices", "list"), 3)
        assert "may speak TLS only: pass --ca FILE" in line, line

        monkeypatch.setenv("LAB_CA", str(ca.path))
        monkeypatch.setenv("LAB_TLS_CERT", str(engineer.cert))
        monkeypatch.setenv("LAB_TLS_KEY", str(engineer.key))
        token = json.loads(labctl(lab, admin, "token", "create", "--role", "agent", "--json").stdout)["token"]
        token_file = tmp_path / "agent.token"
        token_file.write_text(token)
        agent = subprocess.Popen(
            [str(AGENT_BIN), "--lab", lab.addr, "--token-file", str(token_file), "--name", "tls-dev",
             "--class", "smart-terminal", "--work-dir", str(tmp_path / "agent"), "--ca", str(ca.path),
             "--tls-cert", str(device.cert), "--tls-key", str(device.key)],
            stdout=subprocess.DEVNULL, stderr=(tmp_path / "agent.log").open("wb"))
        try:
            def online() -> bool:
                assert agent.poll() is None, (tmp_path / "agent.log").read_text()
                p = labctl(lab, admin, "devices", "list", "--json")
                return p.returncode == 0 and any(d["name"] == "tls-dev" for d in json.loads(p.stdout))

            wait_until(online, 60, "the agent to enrol over mutual TLS")
            p = labctl(lab, admin, "run", "submit", "--suite", "tls-smoke", "--device", "tls-dev", "--wait", "--json",
                       timeout=240)
            assert p.returncode == 0, p.stderr
            run = json.loads(p.stdout)
            assert run["status"] == "completed" and run["verdict"] == "pass", run
            out = tmp_path / "report"
            assert labctl(lab, admin, "report", "pull", run["id"], "--out", str(out)).returncode == 0
            v = labctl(lab, None, "report", "verify", str(out))
            assert v.returncode == 0, v.stdout + v.stderr
        finally:
            agent.terminate()
            agent.wait(timeout=30)
    finally:
        lab.stop()


@pytest.mark.parametrize("case", ["no-tls-off-loopback", "key-mismatch", "expired", "cert-without-key",
                                  "missing-file", "not-pem", "client-ca-alone"])
def test_labd_tls_startup_errors_are_one_line(tmp_path: Path, ca: TestCA, case: str) -> None:
    good = ca.issue("labd")
    expired = ca.issue("old", days=1, start_days_ago=3)
    not_pem = tmp_path / "cert.der"
    not_pem.write_bytes(b"\x30\x82\x01\x0a" + bytes(64))
    args, expected = {
        "no-tls-off-loopback": (["--listen", "0.0.0.0:0"], "reachable from other machines and no TLS is configured"),
        "key-mismatch": (["--tls-cert", str(good.cert), "--tls-key", str(ca.stray_key("stray"))],
                         "is not the key of --tls-cert"),
        "expired": (["--tls-cert", str(expired.cert), "--tls-key", str(expired.key)], "expired on"),
        "cert-without-key": (["--tls-cert", str(good.cert)], "--tls-cert and --tls-key go together"),
        "missing-file": (["--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(good.key)],
                         "cannot read --tls-cert"),
        "not-pem": (["--tls-cert", str(not_pem), "--tls-key", str(good.key)], "holds no PEM certificate"),
        "client-ca-alone": (["--tls-client-ca", str(ca.path)], "--tls-client-ca needs --tls-cert and --tls-key"),
    }[case]
    cmd = [str(BIN / "labd"), "serve", "--data-dir", str(tmp_path / "lab"), "--listen", "127.0.0.1:0", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    line = _one_line(p, 2)
    assert line.startswith("labd: ") and expected in line, line
    assert not (tmp_path / "lab" / "labd.addr").exists()


def test_agent_and_labctl_refuse_plaintext_off_this_machine(tmp_path: Path, ca: TestCA) -> None:
    line = _one_line(subprocess.run(
        [str(AGENT_BIN), "--lab", "192.0.2.10:50051", "--token", "x", "--name", "d", "--class", "robot",
         "--work-dir", str(tmp_path / "w")], capture_output=True, text=True, timeout=60), 2)
    assert "is not on this machine and no --ca was given" in line and "--insecure" in line, line
    line = _one_line(subprocess.run(
        [str(AGENT_BIN), "--lab", "127.0.0.1:1", "--token", "x", "--name", "d", "--class", "robot",
         "--work-dir", str(tmp_path / "w"), "--ca", str(tmp_path / "missing.pem")],
        capture_output=True, text=True, timeout=60), 2)
    assert line == f"lab-agent: cannot read --ca {tmp_path / 'missing.pem'} (No such file or directory); " \
                   "check the path and its permissions", line
    line = _one_line(labctl("192.0.2.10:50051", "t", "devices", "list"), 2)
    assert "is not on this machine and no --ca was given" in line, line


def test_loopback_and_advice() -> None:
    for addr in ("127.0.0.1:1", "127.8.9.1:1", "[::1]:50051", "localhost:5", "LOCALHOST:5"):
        assert is_loopback(addr), addr
    for addr in ("0.0.0.0:50051", "[::]:1", "10.0.0.1:1", "lab.example.org:443", "127.0.0.1.nip.io:1"):
        assert not is_loopback(addr), addr
    with pytest.raises(TlsError, match="need --ca FILE too"):
        ClientTls(cert=Path("c.pem"), key=Path("k.pem")).check_address("127.0.0.1:1")
    ClientTls(insecure=True).check_address("10.0.0.1:1")  # --insecure allows it
    assert "does not name this address" in explain_unreachable(
        "Custom verification check failed with error: UNAUTHENTICATED: Hostname Verification Check failed.", True)
    assert "speaks plaintext" in explain_unreachable("Tls handshake failed: WRONG_VERSION_NUMBER", True)
    assert explain_unreachable("failed to connect to all addresses; Connection refused", False) == ""
