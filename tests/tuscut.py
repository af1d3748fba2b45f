"""A transport that cuts one TUS PATCH short, as a poller killed mid-upload would.

The `nth` PATCH sends its first `keep` bytes, then its connection breaks (httpx.WriteError):
the server has received part of a chunk. Shared by the stand-in's tests and the real tier.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx


class CutPatch(httpx.AsyncBaseTransport):
    def __init__(self, nth: int, keep: int, inner: httpx.AsyncBaseTransport | None = None
                 ) -> None:
        self.nth, self.keep = nth, keep
        self.inner = inner or httpx.AsyncHTTPTransport()
        self.patches = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            self.patches += 1
            if self.patches == self.nth:
                request.stream = _Cut(request.stream, self.keep)  # type: ignore[arg-type]
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Cut(httpx.AsyncByteStream):
    def __init__(self, body: httpx.AsyncByteStream, keep: int) -> None:
        self.body, self.keep = body, keep

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = 0
        async for piece in self.body:
            if sent + len(piece) >= self.keep:
                yield piece[:self.keep - sent]
                raise httpx.WriteError("connection cut mid-PATCH by the test")
            sent += len(piece)
            yield piece
