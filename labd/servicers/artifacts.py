"""ArtifactService: models and datasets by sha256, streamed in chunks, resumable from an offset."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from labd.lab import Lab
from labd.servicers.errors import streaming, unary
from labd.servicers.tokens import call_token
from pilotlab import domain as d
from pilotlab.v1 import artifact_pb2, artifact_pb2_grpc

MAX_CHUNK = 4 << 20


def _read_chunk(path: str, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


class ArtifactServicer(artifact_pb2_grpc.ArtifactServiceServicer):
    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    async def _artifact(self, context: grpc.aio.ServicerContext, sha256: str) -> d.ArtifactRecord:
        await asyncio.to_thread(self.lab.auth.require, call_token(context), [d.Role.DEVICE, d.Role.ADMIN],
                                "download artifacts")
        art = await asyncio.to_thread(self.lab.store.get_artifact, sha256.lower())
        if not Path(art.path).exists():
            raise d.NotFound(f"artifact {sha256} is registered but its file is gone from the lab's store; "
                             "restart labd so it reloads its suites")
        return art

    @unary
    async def Stat(self, request: artifact_pb2.StatArtifactRequest,
                   context: grpc.aio.ServicerContext) -> artifact_pb2.ArtifactInfo:
        art = await self._artifact(context, request.sha256)
        return artifact_pb2.ArtifactInfo(sha256=art.sha256, size=art.size, name=art.name, kind=art.kind)

    @streaming
    async def Get(self, request: artifact_pb2.GetArtifactRequest,
                  context: grpc.aio.ServicerContext) -> AsyncIterator[artifact_pb2.ArtifactChunk]:
        art = await self._artifact(context, request.sha256)
        if not 0 <= request.offset <= art.size:
            raise d.Invalid(f"offset {request.offset} is outside artifact {art.sha256} of {art.size} bytes")
        chunk = min(request.chunk_size or self.lab.config.chunk_size, MAX_CHUNK)
        offset = request.offset
        while offset < art.size:
            data = await asyncio.to_thread(_read_chunk, art.path, offset, chunk)
            if not data:
                break
            yield artifact_pb2.ArtifactChunk(offset=offset, data=data, total_size=art.size)
            offset += len(data)
