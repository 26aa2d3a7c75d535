"""report.html printed to an A4 PDF by a local Chromium, for `labctl report pull --pdf`.

Chromium is driven through its DevTools protocol over `--remote-debugging-pipe` (Page.printToPDF with a footer
template): every page gets the report id and "page N of M", and no browser driver or extra package is needed.
Should that fail, Chromium's own `--print-to-pdf` prints the same pages without page numbers (report.html repeats
the report id on every page by itself). The PDF is derived from report.html and is never part of the signed bundle.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from html import escape
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PDF_NAME = "report.pdf"  # beside report.html in the pulled folder; `report verify` names it unsigned, not altered
TIMEOUT_S = 60.0
# Chromium refuses to start as root with its sandbox; the page it prints is a local, script-free file.
_FLAGS = ["--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
          "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio"]
_FOOTER = ('<div style="font: 7pt sans-serif; color: #57606a; width: 100%; margin: 0 12mm; display: flex; '
           'justify-content: space-between"><span>{label}</span><span>page <span class="pageNumber"></span> of '
           '<span class="totalPages"></span></span></div>')


# Puts the pipe ends on the fds Chromium's DevTools pipe uses, then becomes Chromium. A pre-exec hook would do it
# without this step, but is unsafe in a process with threads (gRPC's), and POSIX sh cannot name fds above 9.
_ON_FDS_3_AND_4 = ("import os, sys; a, b = (os.dup(int(fd)) for fd in sys.argv[1:3]); os.dup2(a, 3); os.dup2(b, 4); "
                   "os.set_inheritable(3, True); os.set_inheritable(4, True); os.execvp(sys.argv[3], sys.argv[3:])")


class PdfError(Exception):
    """Chromium could not print the report."""


def find_browser() -> str | None:
    """The first Chromium on PATH (chromium, chromium-browser, google-chrome), or None."""
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def _flags(user_data: str) -> list[str]:
    extra = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    return [*_FLAGS, *extra, f"--user-data-dir={user_data}"]


class _DevTools:
    """One headless Chromium spoken to over its DevTools pipe: fd 3 carries commands in, fd 4 answers out, each
    message JSON ended by a NUL byte."""

    def __init__(self, browser: str, user_data: str) -> None:
        cmd_r, self._cmd_w = os.pipe()
        self._res_r, res_w = os.pipe()
        try:
            self.proc = subprocess.Popen([sys.executable, "-I", "-c", _ON_FDS_3_AND_4, str(cmd_r), str(res_w), browser,
                                          *_flags(user_data), "--remote-debugging-pipe", "about:blank"],
                                         pass_fds=(cmd_r, res_w), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        finally:
            os.close(cmd_r)
            os.close(res_w)
        self._buf = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PdfError(f"Chromium did not answer within {TIMEOUT_S:.0f} s")
            ready, _, _ = select.select([self._res_r], [], [], left)
            if ready:
                chunk = os.read(self._res_r, 1 << 20)
                if not chunk:
                    raise PdfError("Chromium closed its DevTools pipe" + self._stderr())
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return dict(json.loads(msg))

    def _stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        lines = [ln for ln in self.proc.stderr.read().decode(errors="replace").splitlines() if ln.strip()]
        return f": {lines[-1].strip()}" if lines else ""

    def send(self, method: str, params: dict[str, Any] | None = None, session: str = "") -> int:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        return self._next

    def wait(self, deadline: float, msg_id: int | None = None, event: str = "") -> dict[str, Any]:
        """The answer to command msg_id, or the first `event` (kept from earlier reads too)."""
        seen = next((e for e in self.events if event and e.get("method") == event), None)
        if seen is not None:
            return seen
        while True:
            msg = self._read(deadline)
            if msg_id is not None and msg.get("id") == msg_id:
                if "error" in msg:
                    raise PdfError(f"Chromium refused {msg['error'].get('message', msg['error'])}")
                return dict(msg.get("result") or {})
            if event and msg.get("method") == event:
                return msg
            if "method" in msg:
                self.events.append(msg)

    def call(self, deadline: float, method: str, params: dict[str, Any] | None = None, session: str = "") -> Any:
        return self.wait(deadline, self.send(method, params, session))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.send("Browser.close")
        for fd in (self._cmd_w, self._res_r):
            os.close(fd)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def _devtools_pdf(browser: str, url: str, label: str, user_data: str) -> bytes:
    deadline = time.monotonic() + TIMEOUT_S
    chrome = _DevTools(browser, user_data)
    try:
        target = chrome.call(deadline, "Target.createTarget", {"url": "about:blank"})["targetId"]
        session = chrome.call(deadline, "Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        chrome.call(deadline, "Emulation.setScriptExecutionDisabled", {"value": True}, session)
        chrome.call(deadline, "Page.enable", {}, session)
        nav = chrome.call(deadline, "Page.navigate", {"url": url}, session)
        if nav.get("errorText"):
            raise PdfError(f"Chromium could not open {url}: {nav['errorText']}")
        chrome.wait(deadline, event="Page.loadEventFired")
        result = chrome.call(deadline, "Page.printToPDF", {
            "printBackground": True, "preferCSSPageSize": True, "displayHeaderFooter": True,
            "headerTemplate": "<span></span>", "footerTemplate": _FOOTER.format(label=escape(label))}, session)
        return base64.b64decode(result["data"])
    finally:
        chrome.close()


def _plain_pdf(browser: str, url: str, out: Path, user_data: str) -> None:
    # --print-to-pdf-no-header is the older Chromium's name for --no-pdf-header-footer; each ignores the other.
    p = subprocess.run([browser, *_flags(user_data), "--no-pdf-header-footer", "--print-to-pdf-no-header",
                        f"--print-to-pdf={out}", url],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT_S)
    if p.returncode != 0 or not out.is_file():
        tail = [ln for ln in p.stderr.splitlines() if ln.strip()][-1:]
        raise PdfError(f"{Path(browser).name} --print-to-pdf exited {p.returncode}" + (f": {tail[0]}" if tail else ""))


def print_pdf(browser: str, html: Path, out: Path, label: str) -> str:
    """Print html to out (A4, as its print stylesheet lays it out) with `label` (the report id) and the page number
    in every page's footer. Returns "" then, or why the DevTools protocol failed and the pages have no numbers.
    Raises PdfError when Chromium cannot print at all."""
    url = html.resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="labctl-chromium-") as user_data:
        try:
            data = _devtools_pdf(browser, url, label, user_data)
            if not data.startswith(b"%PDF"):
                raise PdfError("Chromium's DevTools returned something that is not a PDF")
        except (PdfError, OSError, ValueError, KeyError) as e:
            _plain_pdf(browser, url, out, user_data)
            return str(e) or type(e).__name__
    out.write_bytes(data)
    return ""
