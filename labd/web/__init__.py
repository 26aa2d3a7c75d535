"""labd's web console (`labd serve --web-listen HOST:PORT`): fleet, queue, runs with live progress and their signed
reports, suites and the audit log, in a browser, with exactly the powers each role has over gRPC."""

from labd.web.site import WebConsole, check_web_listen

__all__ = ["WebConsole", "check_web_listen"]
