"""An external bench power meter speaking SCPI over a raw TCP socket (the usual port is 5025).

URL: ``scpi://HOST:PORT[?query=CMD&period=S&rate=HZ&timeout=S]``

* ``query``: the measurement command, default ``MEAS:POW?``; the meter must answer one line
  holding the power in watts (``+1.234E+01``; a trailing unit or extra comma-separated fields are
  ignored).
* ``period``: the meter's declared update period in seconds (default 0.1); ``rate``: how often to
  query it (default two queries per period); ``timeout``: how long to wait for an answer (default 1 s).

A query that gets no answer within the timeout fails with MeterError "the bench meter at HOST:PORT
stopped answering"; the socket is then dropped, so that a late answer cannot be taken for the reply
to the next query. A connection that breaks (reset, closed by the meter) is reopened once per read.
"""

from __future__ import annotations

import contextlib
import math
import socket
from urllib.parse import parse_qs, urlsplit

from agents.meters.base import POWER, MeterError, MeterInfo

DEFAULT_PORT = 5025
DEFAULT_COMMAND = "MEAS:POW?"
DEFAULT_PERIOD_S = 0.1
DEFAULT_TIMEOUT_S = 1.0
PARAMS = ("query", "period", "rate", "timeout")


def _positive(params: dict[str, list[str]], key: str, default: float, url: str) -> float:
    if key not in params:
        return default
    try:
        value = float(params[key][-1])
    except ValueError:
        value = -1.0
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{url}: {key} must be a positive number of {'Hz' if key == 'rate' else 'seconds'}")
    return value


class ScpiMeter:
    """A SCPI bench meter as a POWER meter (watts)."""

    def __init__(self, host: str, port: int = DEFAULT_PORT, command: str = DEFAULT_COMMAND,
                 timeout_s: float = DEFAULT_TIMEOUT_S, update_period_s: float = DEFAULT_PERIOD_S,
                 sample_rate_hz: float | None = None) -> None:
        self.host, self.port, self.command, self.timeout_s = host, port, command, timeout_s
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.info = MeterInfo(name=f"scpi:{self.address}", kind="scpi", quantity=POWER,
                              sample_rate_hz=sample_rate_hz or 2.0 / update_period_s,
                              update_period_s=update_period_s)
        self._sock: socket.socket | None = None
        self._buf = b""

    @classmethod
    def from_url(cls, url: str) -> ScpiMeter:
        """The meter a ``scpi://`` URL names; ValueError when the URL is malformed."""
        parts = urlsplit(url)
        if parts.scheme != "scpi" or not parts.hostname:
            raise ValueError(f"{url}: expected scpi://HOST:PORT[?query=CMD]")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError as exc:
            raise ValueError(f"{url}: bad port") from exc
        params = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(params) - set(PARAMS))
        if unknown:
            raise ValueError(f"{url}: unknown parameter(s) {', '.join(unknown)} (known: {', '.join(PARAMS)})")
        command = params.get("query", [DEFAULT_COMMAND])[-1].strip()
        if not command or "\n" in command:
            raise ValueError(f"{url}: query must be one non-empty SCPI command")
        period = _positive(params, "period", DEFAULT_PERIOD_S, url)
        return cls(parts.hostname, port, command,
                   timeout_s=_positive(params, "timeout", DEFAULT_TIMEOUT_S, url),
                   update_period_s=period,
                   sample_rate_hz=_positive(params, "rate", 2.0 / period, url))

    def _drop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock, self._buf = None, b""

    def _query(self) -> bytes:
        if self._sock is None:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.sendall(self.command.encode() + b"\n")
        while b"\n" not in self._buf:
            chunk = self._sock.recv(4096)
            if not chunk:
                raise ConnectionResetError("the meter closed the connection")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def read(self) -> float:
        for attempt in (1, 2):
            try:
                line = self._query()
                break
            except TimeoutError as exc:
                self._drop()
                raise MeterError(f"the bench meter at {self.address} stopped answering "
                                 f"(no reply to {self.command} within {self.timeout_s:g} s)") from exc
            except OSError as exc:
                self._drop()
                if attempt == 2:
                    raise MeterError(f"the bench meter at {self.address} cannot be reached: {exc}") from exc
        return self._parse(line)

    def _parse(self, line: bytes) -> float:
        text = line.decode("ascii", errors="replace").strip()
        fields = text.split(",")[0].split()
        token = fields[0] if fields else ""
        try:
            watts = float(token)
        except ValueError:
            raise MeterError(f"the bench meter at {self.address} answered {text[:40]!r} "
                             f"to {self.command}, not a number of watts") from None
        if not math.isfinite(watts) or abs(watts) >= 9.9e37:  # SCPI's overload / not-a-number markers
            raise MeterError(f"the bench meter at {self.address} reports an overload or invalid reading ({text})")
        return watts

    def close(self) -> None:
        self._drop()
