"""Serving the console on --web-listen, on labd's own event loop: HTTPS with the lab's certificate when labd has
TLS, plaintext only on loopback or with --insecure (as for --listen); the bound address published for scripts."""

from __future__ import annotations

import logging
import ssl

from aiohttp import web

from labd.config import LabConfig, StartupError
from labd.lab import Lab
from labd.scheduler.dispatcher import Dispatcher
from labd.web.access import CONSOLE
from labd.web.app import make_app
from pilotlab.tls import ServerTls, is_loopback

log = logging.getLogger("labd.web")

SHUTDOWN_S = 3.0  # open pages and live streams get this long to finish when labd stops


def check_web_listen(config: LabConfig) -> None:
    """Refuse, before anything starts, a console that would take tokens in plaintext from other machines."""
    address = config.web_listen
    if address and config.tls is None and not is_loopback(address) and not config.insecure:
        raise StartupError(f"--web-listen {address} is reachable from other machines and no TLS is configured: give "
                           "--tls-cert and --tls-key, or --insecure to let tokens cross the network in plaintext")


def ssl_context(tls: ServerTls) -> ssl.SSLContext:
    """The console's HTTPS: the lab's certificate and key (checked at start, as for gRPC), TLS 1.2 or later. Browsers
    are not asked for client certificates; they sign in with a token."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(tls.cert), str(tls.key))
    except (OSError, ssl.SSLError) as e:
        raise StartupError(f"cannot use --tls-cert {tls.cert} and --tls-key {tls.key} for --web-listen ({e}); "
                           "give a PEM certificate chain and its unencrypted key") from None
    return ctx


class WebConsole:
    """The running console: start() binds (OSError when it cannot), stop() ends live streams and closes."""

    def __init__(self, lab: Lab, dispatcher: Dispatcher, address: str, tls: ServerTls | None) -> None:
        self.address = address
        self.tls = tls
        self.app = make_app(lab, dispatcher, secure=tls is not None)
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=SHUTDOWN_S)
        self.bound = ""

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.bound}/"

    async def start(self) -> str:
        """Listen; returns HOST:PORT as bound (port 0 picks one)."""
        host, _, port = self.address.rpartition(":")
        ctx = ssl_context(self.tls) if self.tls is not None else None
        await self._runner.setup()
        site = web.TCPSite(self._runner, host.strip("[]") or None, int(port), ssl_context=ctx, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            raise
        bound_port = self._runner.addresses[0][1]
        self.bound = f"{host}:{bound_port}"
        log.info("web console on %s%s", self.url, "" if self.tls or is_loopback(self.address) else
                 " (PLAINTEXT, --insecure: tokens cross the network unencrypted)")
        return self.bound

    async def stop(self) -> None:
        self.app[CONSOLE].closing.set()
        await self._runner.cleanup()
