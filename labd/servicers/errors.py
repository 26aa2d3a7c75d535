"""The one mapping from domain errors to gRPC status codes, and decorators that apply it."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc

from pilotlab import domain as d

log = logging.getLogger("labd.rpc")

_CODES: dict[type[d.LabError], grpc.StatusCode] = {
    d.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    d.Denied: grpc.StatusCode.PERMISSION_DENIED,
    d.NotFound: grpc.StatusCode.NOT_FOUND,
    d.Invalid: grpc.StatusCode.INVALID_ARGUMENT,
    d.Conflict: grpc.StatusCode.FAILED_PRECONDITION,
}

T = TypeVar("T")


async def abort(context: grpc.aio.ServicerContext, exc: d.LabError) -> NoReturn:
    code = next((c for t, c in _CODES.items() if isinstance(exc, t)), grpc.StatusCode.INTERNAL)
    await context.abort(code, str(exc))
    raise AssertionError("context.abort returned")  # pragma: no cover


def unary(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
        try:
            return await fn(self, request, context)
        except d.LabError as e:
            await abort(context, e)

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

    return wrapper
