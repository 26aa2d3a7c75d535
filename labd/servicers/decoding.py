"""Requests that do not decode as their message type get INVALID_ARGUMENT in one line.

gRPC decodes a request before any servicer runs; bytes that are not the method's message would end the call UNKNOWN
with gRPC's own traceback in labd's log. This interceptor gives every method a decoder that cannot fail (it returns
an Undecodable in place of the message) and checks for it in front of the servicer: a unary request is refused at
once. A device's Session goes to its servicer unwrapped, which checks each message as it reads it (`check`): a
wrapping generator in front of it would cost every message of every session a hop each way; other streams (server
reflection) are wrapped.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from pilotlab import domain as d


@dataclass(frozen=True)
class Undecodable:
    """What arrived in place of a request message that did not decode."""

    method: str
    size: int
    error: str

    @property
    def message(self) -> str:
        return (f"the request to {self.method} ({self.size} bytes) is not a valid {self.method.rsplit('/', 1)[-1]} "
                f"message ({self.error}); send the message the API defines (protos/pilotlab/v1)")


def _decoder(method: str, decode: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def safe(raw: bytes) -> Any:
        try:
            return decode(raw)
        except Exception as e:  # protobuf's DecodeError, or whatever a decoder raises on bytes it cannot read
            return Undecodable(method, len(raw), type(e).__name__)

    return safe


SELF_CHECKED = {"/pilotlab.v1.AgentService/Session"}  # streams whose servicer calls `check` on each message


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield check(request)


def check(request: Any) -> Any:
    """A stream's message as read: returned when it decoded; else Invalid, which the servicer's error mapping ends
    the stream with (INVALID_ARGUMENT)."""
    if isinstance(request, Undecodable):
        raise d.Invalid(request.message)
    return request


class UndecodableRequests(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc.aio ships no type stubs here
    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method = str(details.method)
        decode = _decoder(method, handler.request_deserializer)
        serialize = handler.response_serializer
        if handler.unary_unary is not None:
            unary = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                if isinstance(request, Undecodable):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
                return await unary(request, context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, decode, serialize)
        if handler.unary_stream is not None and inspect.isasyncgenfunction(handler.unary_stream):
            stream = handler.unary_stream

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                if isinstance(request, Undecodable):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
                async for reply in stream(request, context):
                    yield reply

            return grpc.unary_stream_rpc_method_handler(unary_stream, decode, serialize)
        if handler.stream_stream is not None and method in SELF_CHECKED:
            return grpc.stream_stream_rpc_method_handler(handler.stream_stream, decode, serialize)
        if handler.stream_stream is not None and inspect.isasyncgenfunction(handler.stream_stream):
            both = handler.stream_stream  # another's stream (server reflection): checked by a wrapping generator

            async def stream_stream(requests: AsyncIterator[Any],
                                    context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                async for reply in both(_checked(requests), context):
                    yield reply

            return grpc.stream_stream_rpc_method_handler(stream_stream, decode, serialize)
        return handler
