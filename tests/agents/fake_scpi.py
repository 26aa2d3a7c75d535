"""A fake SCPI bench power meter for the meter tests: a threaded TCP server on 127.0.0.1, port chosen by the OS.

It answers every query line with a wattage: a fixed one, or the next value of a trace (the last
value repeating once the trace is used up). It can be told to stop answering after N queries
(it keeps the connection open and reads on, like a hung instrument), to drop the connection once
after N answers, or to answer through a custom responder (garbage, overload markers).

Load it with importlib from a test module (tests/agents has no __init__.py):

    spec = importlib.util.spec_from_file_location("fake_scpi", Path(__file__).with_name("fake_scpi.py"))
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Callable, Sequence
from types import TracebackType

Responder = Callable[[int, str], "str | None"]


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        fake = self.server.fake
        fake._opened(self.connection)
        try:
            for raw in self.rfile:
                reply, close = fake._answer(raw.decode(errors="replace").strip())
                if reply is not None:
                    self.wfile.write(reply.encode() + b"\n")
                    self.wfile.flush()
                if close:
                    return
        except OSError:
            return
        finally:
            fake._closed(self.connection)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeScpi


class FakeScpi:
    """The fake meter. Use as a context manager, or start()/stop()."""

    def __init__(self, watts: float = 10.0, trace: Sequence[float] | None = None, answer_limit: int | None = None,
                 drop_after: int | None = None, responder: Responder | None = None) -> None:
        self.watts = watts
        self.trace = list(trace) if trace is not None else None
        self.answer_limit = answer_limit  # answer this many queries, then fall silent
        self.drop_after = drop_after  # close the connection once, after this many answers
        self.responder = responder  # (query index, command) -> reply line, or None for no reply
        self.commands: list[str] = []
        self.connections = 0
        self._live: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # -- control -----------------------------------------------------------------------------------
    def start(self) -> FakeScpi:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-scpi", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            live = list(self._live)
        for conn in live:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server = None

    def __enter__(self) -> FakeScpi:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def silence(self) -> None:
        """Stop answering from the next query on."""
        with self._lock:
            self.answer_limit = len(self.commands)

    @property
    def port(self) -> int:
        assert self._port is not None, "start the fake meter first"
        return self._port  # kept after stop(), to name the meter that was there

    def url(self, **params: str | float) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"scpi://127.0.0.1:{self.port}" + (f"?{query}" if query else "")

    @property
    def queries(self) -> int:
        with self._lock:
            return len(self.commands)

    # -- the server side ---------------------------------------------------------------------------
    def _opened(self, conn: socket.socket) -> None:
        with self._lock:
            self.connections += 1
            self._live.add(conn)

    def _closed(self, conn: socket.socket) -> None:
        with self._lock:
            self._live.discard(conn)

    def _answer(self, command: str) -> tuple[str | None, bool]:
        """(reply or None, whether to close the connection after it)."""
        with self._lock:
            index = len(self.commands)
            self.commands.append(command)
            if self.answer_limit is not None and index >= self.answer_limit:
                return None, False
            close = self.drop_after is not None and index + 1 == self.drop_after
            if close:
                self.drop_after = None
            if self.responder is not None:
                return self.responder(index, command), close
            value = self.trace[min(index, len(self.trace) - 1)] if self.trace else self.watts
            return f"{value:+.6E}", close
