"""The one mapping from domain errors to gRPC status codes, and decorators that apply it."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc

from pilotlab import domain as d
from pilotlab.names import one_line

log = logging.getLogger("labd.rpc")

_CODES: dict[type[d.LabError], grpc.StatusCode] = {
    d.StorageFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    d.LabFault: grpc.StatusCode.DATA_LOSS,  # the lab's stored artifact is corrupt or missing
    d.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    d.Denied: grpc.StatusCode.PERMISSION_DENIED,
    d.NotFound: grpc.StatusCode.NOT_FOUND,
    d.Invalid: grpc.StatusCode.INVALID_ARGUMENT,
    d.Conflict: grpc.StatusCode.FAILED_PRECONDITION,
}

T = TypeVar("T")
# Status details travel in a trailer that a client refuses past 16 KiB (percent-encoded: up to 12 bytes a character);
# a message quoting a huge value a caller sent would turn the status into the client's RESOURCE_EXHAUSTED.
MAX_DETAILS = 500


def details(exc: Exception) -> str:
    """The status details of exc: one line (messages quote what callers sent, line breaks and all), shortened."""
    text = one_line(str(exc))
    return text if len(text) <= MAX_DETAILS else text[:MAX_DETAILS - 20] + f"... ({len(text)} characters)"


async def abort(context: grpc.aio.ServicerContext, exc: d.LabError) -> NoReturn:
    code = next((c for t, c in _CODES.items() if isinstance(exc, t)), grpc.StatusCode.INTERNAL)
    await context.abort(code, details(exc))
    raise AssertionError("context.abort returned")  # pragma: no cover


def storage_full(servicer: Any, exc: Exception) -> d.StorageFull | None:
    """exc as StorageFull when it says the lab's storage is full (its watch, lab.leases.storage, logs the change of
    state once rather than a traceback per call); None otherwise."""
    lab = getattr(servicer, "lab", None)
    return lab.leases.storage.noted(exc) if lab is not None else None


def unary(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
        try:
            return await fn(self, request, context)
        except d.LabError as e:
            await abort(context, e)
        except Exception as e:
            if (full := storage_full(self, e)) is None:
                raise
            await abort(context, full)

    return wrapper


def streaming(fn: Callable[..., AsyncIterator[T]]) -> Callable[..., AsyncIterator[T]]:
    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[T]:
        try:
            async for item in fn(self, request, context):
                yield item
        except d.LabError as e:
            await abort(context, e)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if (full := storage_full(self, e)) is None:
                raise
            await abort(context, full)

    return wrapper
