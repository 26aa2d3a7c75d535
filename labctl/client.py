"""labctl's connection to the lab: address, token, and one mapping of gRPC failures to one-line errors."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn, TypeVar

from labctl.lazy import lazy
from pilotlab.tls import ClientTls, TlsError, explain_unreachable

if TYPE_CHECKING:
    import grpc

    from pilotlab.v1 import lab_pb2_grpc
else:
    grpc = lazy("grpc")
    lab_pb2_grpc = lazy("pilotlab.v1.lab_pb2_grpc")

T = TypeVar("T")
DEFAULT_LAB = "127.0.0.1:50051"

EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_LAB = 3


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def die(message: str, code: int = EXIT_USAGE) -> NoReturn:
    raise CliError(message, code)


@dataclass
class Ctx:
    lab: str
    token: str
    json: bool = False
    tls: ClientTls = field(default_factory=ClientTls)
    _channel: grpc.Channel | None = None

    @property
    def stub(self) -> lab_pb2_grpc.LabServiceStub:
        if self._channel is None:
            try:
                self._channel = self.tls.channel(self.lab)
            except TlsError as e:
                die(str(e), EXIT_USAGE)
        return lab_pb2_grpc.LabServiceStub(self._channel)  # type: ignore[no-untyped-call]  # generated, untyped

    @property
    def md(self) -> list[tuple[str, str]]:
        if not self.token:
            die("no token: pass --token or set LAB_TOKEN (admins find one in DATA_DIR/admin.token)", EXIT_LAB)
        return [("authorization", f"Bearer {self.token}")]

    def call(self, fn: Callable[..., T], request: object, timeout: float = 30) -> T:
        with rpc_errors(self.lab, self.tls.enabled):
            return fn(request, metadata=self.md, timeout=timeout)

    def errors(self) -> AbstractContextManager[None]:
        return rpc_errors(self.lab, self.tls.enabled)


@contextmanager
def rpc_errors(lab: str, tls: bool = False) -> Iterator[None]:
    try:
        yield
    except grpc.RpcError as e:
        code, details = e.code(), (e.details() or "").strip()
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            hint = explain_unreachable(details, tls)
            if hint:
                die(f"cannot reach the lab at {lab}: {hint}", EXIT_LAB)
            die(f"cannot reach the lab at {lab}; check --lab/LAB_ADDR and that labd is running", EXIT_LAB)
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            die(f"the lab refused the token: {details}", EXIT_LAB)
        die(details or f"the lab answered {code.name}", EXIT_USAGE)


def report_error(e: CliError) -> int:
    print(f"labctl: {e}", file=sys.stderr)
    return e.code
