"""ArtifactService: models and datasets by sha256, streamed in chunks, resumable from an offset; to a device only
what its running assignments need, inside each artifact's data zone, and only while the lab's own copy still hashes
to its digest (DATA_LOSS, the lab's fault, otherwise)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from labd.handlers import artifacts as h
from labd.lab import Lab
from labd.servicers.errors import streaming, unary
from labd.servicers.tokens import call_token
from pilotlab import convert
from pilotlab import domain as d
from pilotlab.v1 import artifact_pb2, artifact_pb2_grpc

MAX_CHUNK = 4 << 20


class ArtifactServicer(artifact_pb2_grpc.ArtifactServiceServicer):
    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    async def _artifact(self, context: grpc.aio.ServicerContext, sha256: str, offset: int = 0) -> d.ArtifactRecord:
        # Devices only (no admin, engineer or certifier ever receives a dataset), and only what their running
        # assignments need, inside the artifact's data zone.
        who = await asyncio.to_thread(self.lab.auth.require, call_token(context), [d.Role.DEVICE],
                                      "download artifacts")
        if who.device_id is None:
            raise d.Denied("this device token names no device; enrol the device again")
        return await asyncio.to_thread(h.artifact_for_device, self.lab.store, who.device_id, sha256, offset)

    @unary
    async def Stat(self, request: artifact_pb2.StatArtifactRequest,
                   context: grpc.aio.ServicerContext) -> artifact_pb2.ArtifactInfo:
        return convert.artifact_info_to_pb(await self._artifact(context, request.sha256))

    @streaming
    async def Get(self, request: artifact_pb2.GetArtifactRequest,
                  context: grpc.aio.ServicerContext) -> AsyncIterator[artifact_pb2.ArtifactChunk]:
        art = await self._artifact(context, request.sha256, request.offset)
        # 0 or a negative size asks for the default; more than MAX_CHUNK gets MAX_CHUNK.
        chunk = min(request.chunk_size if request.chunk_size > 0 else self.lab.config.chunk_size, MAX_CHUNK)
        offset = request.offset
        while offset < art.size:
            data = await asyncio.to_thread(h.read_chunk, art.path, offset, chunk)
            if not data:
                break
            yield artifact_pb2.ArtifactChunk(offset=offset, data=data, total_size=art.size)
            offset += len(data)
