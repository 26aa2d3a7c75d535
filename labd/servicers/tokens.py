"""Reads the bearer token of a call."""

from __future__ import annotations

import grpc

from labd.auth import bearer


def call_token(context: grpc.aio.ServicerContext) -> str | None:
    return bearer(context.invocation_metadata())
