"""The console's way into hookline: the gRPC API itself, called over a loopback
channel with the signed-in person's API key. So every page sees exactly what that
key may see (its space, its role) and every action is validated and refused by
the RPC's own rules, with the RPC's own message."""

from __future__ import annotations

from typing import Any

import grpc
from grpc import aio

from hookline.v1 import jobs_pb2_grpc, webhooks_pb2_grpc


class Refused(Exception):
    """An RPC said no: its status code and the message it gave."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Api:
    """Stubs of hookline's services on one channel; `call` adds the key."""

    def __init__(self, target: str):
        self._channel = aio.insecure_channel(target)
        self.webhooks = webhooks_pb2_grpc.WebhookServiceStub(self._channel)
        self.jobs = jobs_pb2_grpc.JobServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def call(self, method: Any, request: Any, api_key: str, timeout: float = 30.0) -> Any:
        """One unary call with `api_key`; Refused when the RPC fails."""
        try:
            return await method(request, metadata=_key(api_key), timeout=timeout)
        except aio.AioRpcError as error:
            raise Refused(error.code(), error.details() or error.code().name) from None

    def stream(self, method: Any, request: Any, api_key: str) -> Any:
        """A server-streaming call with `api_key` (iterate it; AioRpcError when it fails)."""
        return method(request, metadata=_key(api_key))


def _key(api_key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key}"),)
