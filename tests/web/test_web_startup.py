"""--web-listen against real labd processes: refused start-ups are one line and exit 2, as for --listen; with TLS the
console speaks HTTPS only and its cookies are Secure and __Host- prefixed; SIGTERM stops labd promptly even while a
browser holds a live stream open."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import BIN, Labd
from tests.tlscerts import TestCA
from tests.web.conftest import form_csrf


def _refused(data_dir: Path, *args: str) -> str:
    p = subprocess.run([str(BIN / "labd"), "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", *args],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and "Traceback" not in p.stderr, (p.returncode, p.stderr)
    assert len(lines) == 1, p.stderr
    return lines[0]


@pytest.fixture
def held_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def queued_run(lab: Labd, ca: TestCA) -> str:
    """A run that stays queued: its one device enrolled over the real Enrol RPC and never connected."""
    import grpc

    from pilotlab.v1 import agent_pb2, agent_pb2_grpc, common_pb2, lab_pb2, lab_pb2_grpc

    admin = [("authorization", f"Bearer {lab.admin_token}")]
    with grpc.secure_channel(lab.addr, grpc.ssl_channel_credentials(ca.path.read_bytes())) as ch:
        users = lab_pb2_grpc.LabServiceStub(ch)
        token = users.CreateToken(lab_pb2.CreateTokenRequest(role="agent"), metadata=admin, timeout=30).token
        agent_pb2_grpc.AgentServiceStub(ch).Enrol(
            agent_pb2.EnrolRequest(name="never-online", device_class="robot",
                                   capabilities=common_pb2.Capabilities(slots=1)),
            metadata=[("authorization", f"Bearer {token}")], timeout=30)
        run = users.SubmitRun(lab_pb2.SubmitRunRequest(suite_id="smoke", device="never-online"), metadata=admin,
                              timeout=30)
    return str(run.id)


def test_web_listen_on_a_port_in_use(tmp_path: Path, held_port: int) -> None:
    line = _refused(tmp_path / "lab", "--web-listen", f"127.0.0.1:{held_port}")
    assert line == (f"labd: 127.0.0.1:{held_port} is already in use (another labd, or another program); "
                    "stop it or choose another --web-listen")


def test_web_listen_off_loopback_needs_tls_or_insecure(tmp_path: Path) -> None:
    line = _refused(tmp_path / "lab", "--web-listen", "0.0.0.0:0")
    assert line.startswith("labd: --web-listen 0.0.0.0:0 is reachable from other machines and no TLS is configured")
    assert "--tls-cert and --tls-key, or --insecure" in line


def test_https_console_with_secure_cookies_and_a_prompt_stop(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "pki")
    server = ca.issue("labd")
    lab = Labd(tmp_path / "lab", extra=["--tls-cert", str(server.cert), "--tls-key", str(server.key),
                                        "--web-listen", "127.0.0.1:0"]).start()
    try:
        base = "https://" + (lab.data_dir / "web.addr").read_text().strip()
        ctx = ssl.create_default_context(cafile=str(ca.path))
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx))
        with opener.open(base + "/login", timeout=30) as r:
            html, cookie = r.read().decode(), r.headers["Set-Cookie"]
        assert cookie.startswith("__Host-pilotlab_login=") and "Secure" in cookie and "HttpOnly" in cookie, cookie
        assert "SameSite=Strict" in cookie, cookie
        plain = base.replace("https://", "http://")
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # no plaintext on the TLS port
            urllib.request.urlopen(plain + "/login", timeout=10).read()

        class Keep(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a: object, **k: object) -> None:
                return None

        form = urllib.parse.urlencode({"csrf": form_csrf(html), "token": lab.admin_token}).encode()
        req = urllib.request.Request(base + "/login", data=form, headers={"Cookie": cookie.split(";")[0]})
        no_follow = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx), Keep())
        with pytest.raises(urllib.error.HTTPError) as e:
            no_follow.open(req, timeout=30)
        assert e.value.code == 303
        session = next(c for c in e.value.headers.get_all("Set-Cookie") if c.startswith("__Host-pilotlab_session="))
        assert "Secure" in session and "HttpOnly" in session and "SameSite=Strict" in session, session

        # A browser watching a run (an open event stream) does not hold labd up when it is told to stop.
        run_id = queued_run(lab, ca)
        watch = urllib.request.Request(f"{base}/runs/{run_id}/events", headers={"Cookie": session.split(";")[0]})
        stream = opener.open(watch, timeout=30)
        assert stream.readline().startswith(b"retry:")
    finally:
        t0 = time.monotonic()
        assert lab.stop(signal.SIGTERM) == 0
    print(f"labd stopped in {time.monotonic() - t0:.2f} s with a live stream open")
    assert time.monotonic() - t0 < 10, "labd took too long to stop with a live stream open"
