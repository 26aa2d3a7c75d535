"""The web console under a real browser: Debian's headless chromium driven by Debian's chromedriver through Selenium
(never a downloaded browser or driver), against one real labd with --web-listen and one real lab-agent per module.
Screenshots go to $PILOTLAB_ARTIFACTS/web-console, or a temporary directory the session prints."""

from __future__ import annotations

import http.cookiejar
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Agent, Labd, make_suite, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
LIVE_SUITE = "web-live"
DEVICE = "web-dev1"


class Rpc:
    """LabService called in-process (a labctl process per call costs a second on a loaded machine)."""

    def __init__(self, lab: Labd) -> None:
        import grpc

        from pilotlab.v1 import lab_pb2_grpc

        self.admin = lab.admin_token
        self.channel = grpc.insecure_channel(lab.addr)
        self.stub = lab_pb2_grpc.LabServiceStub(self.channel)

    def __call__(self, method: str, token: str | None = None, **request: Any) -> Any:
        from pilotlab.v1 import lab_pb2

        return getattr(self.stub, method)(getattr(lab_pb2, f"{method}Request")(**request), timeout=30,
                                          metadata=[("authorization", f"Bearer {token or self.admin}")])

    def token(self, role: str) -> tuple[str, str]:
        """A new token of this role: (secret, id)."""
        made = self("CreateToken", role=role)
        return made.token, made.id

    def device(self, name: str) -> Any:
        return next((x for x in self("ListDevices").devices if x.name == name), None)


@dataclass
class Console:
    """A labd with its web console, the device of its one agent, and an engineer's token."""

    lab: Labd
    rpc: Rpc
    base: str  # http://HOST:PORT
    device: str
    engineer: str


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    root = tmp_path_factory.mktemp("web")
    # The smoke suite with a longer timed phase, so that a browser sees the task running before it ends.
    suites = make_suite(root / "suites", LIVE_SUITE, min_duration_ms=2500)
    (root / "lab").mkdir()
    (root / "lab" / "web.addr").unlink(missing_ok=True)
    lab = Labd(root / "lab", extra=["--web-listen", "127.0.0.1:0", "--suites", str(suites)]).start()
    agent = None
    try:
        rpc = Rpc(lab)
        base = "http://" + (lab.data_dir / "web.addr").read_text().strip()
        agent = Agent(lab, DEVICE, root / "agent", rpc.token("agent")[0]).start()
        engineer = rpc.token("engineer")[0]
        wait_until(lambda: getattr(rpc.device(DEVICE), "status", "") == "online", 60, f"agent {DEVICE} online")
        yield Console(lab, rpc, base, DEVICE, engineer)
        rpc.channel.close()
    finally:
        if agent is not None:
            agent.stop()
        lab.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots are kept; printed so a reviewer can find them."""
    env = os.environ.get("PILOTLAB_ARTIFACTS")
    path = Path(env) / "web-console" if env else tmp_path_factory.mktemp("screens")
    path.mkdir(parents=True, exist_ok=True)
    print(f"\nweb console screenshots: {path}")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One headless chromium for the module. Selenium is told the driver's path and offline mode, so its manager
    never downloads a browser or a driver."""
    for exe in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(exe), f"{exe} is missing: `make system-deps` installs Debian's chromium and chromium-driver"
    os.environ["SE_OFFLINE"] = "1"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--window-size=1280,900", "--disable-extensions", "--disable-background-networking"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


class Http:
    """A scripted client with its own cookies: what a forged or out-of-browser request can do."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar),
                                                  _NoRedirect())

    def request(self, path: str, data: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.base + path, data=body, headers=headers or {})
        try:
            with self.opener.open(req, timeout=30) as r:
                return r.status, r.read().decode(errors="replace"), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace"), dict(e.headers)

    def sign_in(self, token: str) -> str:
        """Sign in; returns the session's CSRF token (read from the sign-out form of the next page)."""
        _, html, _ = self.request("/login")
        status, _, _ = self.request("/login", {"csrf": form_csrf(html), "token": token, "next": "/devices"})
        assert status == 303, status
        _, html, _ = self.request("/devices")
        return form_csrf(html)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def form_csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m[1]
