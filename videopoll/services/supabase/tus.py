"""A TUS 1.0.0 client for Supabase Storage's resumable uploads, over the run's httpx client.

`tuspy` would drag in requests, aiohttp and tinydb; the protocol is four requests:
create (`POST` → 201 + `Location`), `HEAD` (where is it?), `PATCH` (append at `Upload-Offset`,
409 when the offset is wrong) and `DELETE` (abandon). Hosted Supabase wants every chunk but the
last to be exactly 6 MiB (DESIGN 8.3). The real tus server (what Storage runs) keeps the bytes
of a PATCH cut short, so after a crash it may hold more than was saved: a resume continues
from the server's offset, never from scratch (tests/real/test_tus_real.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx

from ...errors import (
    AuthError,
    ConfigError,
    ContentMismatch,
    LeaseLost,
    ProtocolError,
    RequestRejected,
    ServiceError,
)
from ...model import Service
from ..http import origin
from ..translate import error_for, safe_url, transport_error

CHUNK = 6 * 1024 * 1024
SERVICE = Service.STORE
log = logging.getLogger(__name__)


class OffsetConflict(ServiceError):
    """The server holds a different number of bytes than we thought (HTTP 409)."""

    code = "protocol"


class TusClient:
    """One bucket's resumable uploads; `key` is sent as Supabase's gateway wants it."""

    def __init__(self, client: httpx.AsyncClient, storage_url: str, key: str, bucket: str
                 ) -> None:
        self._client = client
        self.endpoint = storage_url.rstrip("/") + "/upload/resumable"
        self.bucket = bucket
        self._headers = {"apikey": key, "Authorization": f"Bearer {key}",
                         "Tus-Resumable": "1.0.0"}

    def owns(self, url: str) -> bool:
        """Whether `url` is an upload of this endpoint: same origin (scheme, host, port) and
        under its path. Only such a URL may receive our key; a saved one is data a row
        carried, so it is checked before any request."""
        try:
            candidate, endpoint = httpx.URL(url), httpx.URL(self.endpoint)
        except httpx.InvalidURL:
            return False
        inside = candidate.path.startswith(endpoint.path.rstrip("/") + "/")
        plain = not (candidate.userinfo or candidate.query or candidate.fragment)
        return origin(candidate) == origin(endpoint) and inside and plain \
            and ".." not in candidate.path.split("/")

    async def _send(self, method: str, url: str, what: str, *, headers: dict[str, str],
                    content: AsyncIterator[bytes] | None = None) -> httpx.Response:
        try:
            return await self._client.request(method, url, headers={**self._headers, **headers},
                                              content=content)
        except httpx.RequestError as exc:
            raise transport_error(exc, SERVICE, url) from exc

    def _error(self, response: httpx.Response, what: str) -> ServiceError | ConfigError:
        """TUS errors are plain text with the real status; a rejected JWT comes before TUS,
        in Storage's JSON (HTTP 400, the status in `statusCode`)."""
        status, text = response.status_code, ""
        kind = response.headers.get("Content-Type", "")
        if kind.startswith("text/plain"):
            text = " ".join(response.text.split())[:160]
        elif kind.startswith("application/json"):
            try:
                body = response.json()
                if isinstance(body, dict):
                    status = int(body.get("statusCode") or status)
                    text = " ".join(str(body.get("message", "")).split())[:160]
            except ValueError:  # a broken error body: the HTTP status must do
                pass
        shown = f" (HTTP {status}): {text}" if text else f" (HTTP {status})"
        if status == 404 and "Bucket not found" in text:
            return ConfigError(f"storage bucket {self.bucket!r} does not exist",
                               hint="set VIDEOPOLL_BUCKET or run `videopoll doctor --fix`")
        if status in (401, 403):
            return AuthError(f"store: {what} refused{shown}", service=SERVICE, status=status)
        if status == 409 and what == "upload chunk":
            return OffsetConflict(f"store: {what}{shown}", service=SERVICE, status=409)
        if status == 429 or status >= 500:
            return error_for(response, SERVICE, what)
        return RequestRejected(f"store: {what} rejected{shown}", service=SERVICE,
                               status=status)

    async def create(self, *, name: str, size: int, content_type: str,
                     cache_control: str = "3600", upsert: bool = True) -> str:
        """A new upload of `size` bytes for object `name`; returns its URL."""
        meta = {"bucketName": self.bucket, "objectName": name, "contentType": content_type,
                "cacheControl": cache_control}
        encoded = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}"
                           for k, v in meta.items())
        response = await self._send("POST", self.endpoint, "create upload", headers={
            "Upload-Length": str(size), "Upload-Metadata": encoded,
            "x-upsert": "true" if upsert else "false"})
        location: str | None = response.headers.get("Location")
        if response.status_code != 201:
            raise self._error(response, "create upload")
        if not location:
            raise ProtocolError("store: resumable upload created without a Location",
                                service=SERVICE)
        url = urljoin(self.endpoint + "/", location)
        if not self.owns(url):  # the PATCHes would carry our key there
            raise ProtocolError(f"store: resumable upload created at {safe_url(url)}, "
                                f"outside {self.endpoint}", service=SERVICE)
        return url

    async def offset(self, url: str) -> int | None:
        """How many bytes the server holds; None when the upload is gone or expired."""
        response = await self._send("HEAD", url, "resume upload", headers={})
        if response.status_code in (404, 410):
            return None
        if response.status_code != 200:
            raise self._error(response, "resume upload")
        raw = response.headers.get("Upload-Offset", "")
        if not raw.isdigit():
            raise ProtocolError(f"store: HEAD {safe_url(url)} without Upload-Offset",
                                service=SERVICE)
        return int(raw)

    async def patch(self, url: str, offset: int, data: bytes,
                    sent: asyncio.Event | None = None) -> int:
        """Append `data` at `offset`; returns the server's new offset. `sent` is set once the
        body has gone to the connection (all but the transport's last 64 KiB in the kernel)."""
        response = await self._send("PATCH", url, "upload chunk", content=_body(data, sent),
                                    headers={
            "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream",
            "Content-Length": str(len(data))})
        if response.status_code != 204:
            raise self._error(response, "upload chunk")
        raw = response.headers.get("Upload-Offset", "")
        if raw != str(offset + len(data)):
            raise ProtocolError(f"store: upload chunk acknowledged offset {raw or 'none'}, "
                                f"expected {offset + len(data)}", service=SERVICE)
        return offset + len(data)

    async def terminate(self, url: str) -> None:
        """Abandon an upload (best effort: it expires on its own anyway)."""
        try:
            await self._send("DELETE", url, "abandon upload", headers={})
        except ServiceError:
            pass


@dataclass(frozen=True)
class Saved:
    """Where a resumable upload stood when it was last saved on the row."""

    url: str
    digest: str
    offset: int
    prefix_sha256: str


Save = Callable[[str, int, str], Awaitable[bool]]  # (url, offset, prefix sha256) -> lease held

# How often the position is saved on the row while chunks go out: when this many bytes were
# accepted since the last save, or this many seconds passed, whichever comes first (and always
# right after create, and after a failure). Saving after every 6 MiB chunk
# cost a REST round trip per chunk. Little is lost by saving less: after a crash HEAD gives
# the server's offset anyway, so a resume goes on from there, not from the saved offset; what
# the row must hold is the URL and the digest (saved at once), and the saved prefix hash covers
# exactly the saved offset, so the re-read prefix is still checked. What a crash costs is that
# the bytes between the saved offset and the server's (at most these 64 MiB and a chunk, ~2
# chunks before) are taken as they are, like the bytes of a PATCH cut short always were.
# Nothing is saved after the last chunk: the ready mark that follows clears the upload state,
# and a crash between the two resumes the same way from the last save (HEAD says the upload
# is complete, the saved prefix is checked, nothing is sent), so that save was a round trip of
# every large upload for nothing.
SAVE_BYTES = 64 * 1024 * 1024
SAVE_SECONDS = 10.0


async def upload(tus: TusClient, chunks: AsyncIterator[bytes], *, name: str, size: int,
                 content_type: str, digest: str,
                 saved: Saved | None | Awaitable[Saved | None], save: Save,
                 save_bytes: int = SAVE_BYTES, save_seconds: float = SAVE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
    """Stream `chunks` into object `name` through TUS, resuming `saved` when it is ours.

    Each full chunk is PATCHed as soon as it fills, while the next one is read (one chunk
    ahead, no more); the last one only after `chunks` ended without raising (it holds its last
    piece back until the bytes are verified), so a stream that fails leaves an unfinished
    upload and no object. `saved` may be the read of the row's saved position, still to be
    awaited: it then runs while the download's first bytes come (both are needed either way,
    and each takes a round trip or two). A new upload is created (and its URL saved) as soon
    as there is nothing to resume, while the first chunk is read. The position is saved
    through `save` every `save_bytes` or `save_seconds` (by `clock`), beside the next PATCH,
    never two saves at once; after a failure, the exact position is saved (False from `save`:
    the lease is gone, so stop). A resumed upload goes on from wherever the server is, at or
    past the saved position, once the saved prefix of `chunks` hashes as it did.
    """
    stream = aiter(chunks)
    url, offset, hasher, pending = None, 0, hashlib.sha256(), bytearray()
    if saved is None or isinstance(saved, Saved):
        known, opening = await _plan(tus, saved, save, name, size, content_type)
    else:
        reading = asyncio.ensure_future(saved)
        plan = asyncio.ensure_future(_read_plan(reading, tus, save, name, size, content_type))
        try:
            head = await anext(stream, b"")
            known, opening = await plan
        except BaseException:
            await _abandon(reading, plan)
            raise
        stream = _prepend(head, stream)
    if known is not None:
        # Offset 0 too: with saves every SAVE_BYTES, a crash may leave the server well past a
        # row that only ever held the URL.
        ours = known.digest == digest and 0 <= known.offset <= size
        held = await tus.offset(known.url) if ours else None
        if held is not None and known.offset <= held <= size:
            # Same artifact, and the server holds at least what was saved; a real tus server
            # also keeps the bytes of a PATCH cut short, so it may hold more. Re-read the
            # saved prefix (hashing it, keeping none), prove it is what was sent before, then
            # skip the rest of what the server holds and continue from its offset.
            pending = await _skip(stream, known.offset, hasher, name)
            if known.offset and hasher.hexdigest() != known.prefix_sha256:
                # Those bytes are consumed and cannot be sent again: drop the old upload and
                # let the next attempt start afresh.
                await save("", 0, "")
                await tus.terminate(known.url)
                raise ProtocolError(f"store: {name}: bytes differ from the interrupted upload; "
                                    "starting afresh next pass", service=SERVICE)
            pending = await _skip(_prepend(bytes(pending), stream), held - known.offset,
                                  hasher, name)
            url, offset = known.url, held
        else:  # another artifact, or the server lost track: abandon it (best effort)
            await tus.terminate(known.url)
            opening = asyncio.ensure_future(_open(tus, save, name, size, content_type))
    policy = _Policy(save_bytes, save_seconds, clock)
    if url is None:
        assert opening is not None
        pipe = _Pipeline(tus, opening, 0, 0, hasher, save, policy)
    else:
        assert known is not None
        pipe = _Pipeline(tus, url, offset, known.offset, hasher, save, policy)
    # The next chunk's pieces (views of what the stream gave), joined into one `bytes` once it
    # is full: one allocation and one copy a chunk. A bytearray grown piece by piece, then
    # copied out, cost ~6 ms of the event loop per 6 MiB chunk (regrowth and fresh pages).
    parts: list[memoryview] = []
    held = 0
    try:
        async for piece in _prepend(bytes(pending), stream):
            if pipe.end + held + len(piece) > size:
                raise ContentMismatch(f"{name}: more than {size} bytes")
            view = memoryview(piece)
            while view:
                take = view[:CHUNK - held]
                parts.append(take)
                held += len(take)
                view = view[len(take):]
                if held == CHUNK and pipe.end + CHUNK < size:  # never the last chunk
                    chunk = b"".join(parts)
                    parts.clear()
                    held = 0
                    await pipe.send(chunk)
        if pipe.end + held != size:
            raise ContentMismatch(f"{name}: got {pipe.end + held} bytes, expected {size}")
        if parts:
            await pipe.send(b"".join(parts))
        await pipe.finish()
    except asyncio.CancelledError:
        await pipe.cancel()
        raise
    except BaseException:
        # The stream failed (a bad hash, a broken download): keep what is already on its way
        # and save its position, so the next attempt resumes rather than starts over.
        await pipe.drain()
        raise


async def _plan(tus: TusClient, saved: Saved | None, save: Save, name: str, size: int,
                content_type: str) -> tuple[Saved | None, asyncio.Future[str] | None]:
    """The saved upload worth trying to resume, or (nothing to resume) the creation of a new
    one, already under way."""
    if saved is not None and saved.url and not tus.owns(saved.url):
        # Not an upload of our Storage endpoint: never send it a request (it would carry
        # the key); forget it and start afresh.
        log.warning("%s: ignoring a saved upload URL outside %s; starting the upload afresh",
                    name, tus.endpoint)
        if not await save("", 0, ""):
            raise LeaseLost()
        saved = None
    if saved is not None and saved.url:
        return saved, None
    return None, asyncio.ensure_future(_open(tus, save, name, size, content_type))


async def _read_plan(reading: Awaitable[Saved | None], tus: TusClient, save: Save, name: str,
                     size: int, content_type: str
                     ) -> tuple[Saved | None, asyncio.Future[str] | None]:
    return await _plan(tus, await reading, save, name, size, content_type)


async def _abandon(reading: asyncio.Future[Saved | None],
                   plan: asyncio.Future[tuple[Saved | None, asyncio.Future[str] | None]]
                   ) -> None:
    """The download failed (or we are cancelled) while the plan was made: stop the read, the
    plan, and the upload it may have begun creating (an upload created, or even saved, with
    nothing sent is harmless: the next attempt resumes it or it expires)."""
    reading.cancel()
    plan.cancel()
    await asyncio.gather(reading, plan, return_exceptions=True)
    if plan.done() and not plan.cancelled() and plan.exception() is None:
        _, opening = plan.result()
        if opening is not None:
            opening.cancel()
            await asyncio.gather(opening, return_exceptions=True)


async def _open(tus: TusClient, save: Save, name: str, size: int, content_type: str) -> str:
    """Create the upload and save its URL on the row before any byte goes out."""
    url = await tus.create(name=name, size=size, content_type=content_type)
    if not await save(url, 0, hashlib.sha256().hexdigest()):
        raise LeaseLost()
    return url


@dataclass
class _Policy:
    """When the position is due to be saved again (SAVE_BYTES, SAVE_SECONDS)."""

    every_bytes: int
    every_seconds: float
    clock: Callable[[], float]

    def due(self, accepted: int, saved: int, since: float) -> bool:
        return accepted - saved >= self.every_bytes or \
            self.clock() - since >= self.every_seconds


class _Pipeline:
    """Chunks go out one at a time, in order, while the caller reads the next one; the
    position is saved beside the next PATCH when the policy says so. At most one PATCH and one
    save are in flight, so memory stays at two chunks: the one in flight and the one being
    read (the caller's)."""

    def __init__(self, tus: TusClient, url: str | asyncio.Future[str], offset: int,
                 saved: int, hasher: Any, save: Save, policy: _Policy) -> None:
        self.tus, self.hasher, self.save, self.policy = tus, hasher, save, policy
        # The upload's URL, or the task creating it (and saving it on the row).
        self._opening = url if isinstance(url, asyncio.Future) else None
        self.url = url if isinstance(url, str) else ""
        self.end = offset  # bytes handed over so far (sent or in flight)
        self.accepted, self.prefix = offset, hasher.hexdigest()  # the server's, and its hash
        self.saved, self.saved_at = saved, policy.clock()  # what the row holds, and since when
        self._patch: asyncio.Task[tuple[int, str]] | None = None
        self._save: asyncio.Task[bool] | None = None

    async def send(self, data: bytes) -> None:
        if self._opening is not None:
            self.url = await self._opening
            self._opening = None
        await self._settle_patch()
        at, self.end = self.end, self.end + len(data)
        sent = asyncio.Event()
        self._patch = asyncio.ensure_future(self._put(at, data, sent))
        # Read on only once this chunk is on its way. The PATCH is what the upload waits for;
        # the next chunk's download and verification run on the same event loop, and started
        # at once they delayed this PATCH's headers and body by several ms a chunk. The next
        # chunk is still ready long before this one is answered (a round trip later).
        await _until_sent(sent, self._patch)

    async def _put(self, at: int, data: bytes, sent: asyncio.Event) -> tuple[int, str]:
        # The prefix hash runs on a worker thread (hashlib drops the GIL) beside the PATCH,
        # not on the event loop after it, and once the body is sent, not competing with
        # sending it; a PATCH that fails spoils the hasher, which is then never used again
        # (nothing more is sent, and the last good prefix is kept).
        patching = asyncio.ensure_future(self.tus.patch(self.url, at, data, sent))
        try:
            await _until_sent(sent, patching)
        except BaseException:
            patching.cancel()
            raise
        hashing = asyncio.ensure_future(asyncio.to_thread(self.hasher.update, data))
        try:
            offset = await patching
        except BaseException:
            patching.cancel()
            await asyncio.wait([hashing])
            raise
        await hashing
        return offset, self.hasher.hexdigest()

    async def _settle_patch(self) -> None:
        if self._patch is None:
            return
        self.accepted, self.prefix = await self._patch
        self._patch = None
        self._check_save()
        if self._save is None and self.policy.due(self.accepted, self.saved, self.saved_at):
            self._start_save()

    def _start_save(self) -> asyncio.Task[bool]:
        self.saved, self.saved_at = self.accepted, self.policy.clock()
        self._save = asyncio.ensure_future(self.save(self.url, self.accepted, self.prefix))
        return self._save

    def _check_save(self) -> None:
        """Collect a save that has finished (one still in flight is left to finish)."""
        if self._save is None or not self._save.done():
            return
        held = self._save.result()
        self._save = None
        if not held:
            raise LeaseLost()

    async def finish(self) -> None:
        """Wait for the last chunk (and a save still in flight); once the last PATCH is
        accepted the object is in, so a lease lost meanwhile no longer matters, and the
        position is not saved again (see SAVE_BYTES)."""
        if self._opening is not None:  # nothing was sent (an empty upload)
            self.url = await self._opening
            self._opening = None
        if self._patch is None:
            return
        self.accepted, self.prefix = await self._patch
        self._patch = None
        if self._save is not None:
            with contextlib.suppress(Exception):
                await self._save
            self._save = None

    async def drain(self) -> None:
        """Let the chunk in flight land, then save the last accepted position; errors do not
        matter any more (the caller is already failing). When the PATCH in flight is the one
        that failed, the chunk before it is what the next attempt resumes from."""
        with contextlib.suppress(Exception):
            if self._opening is not None:
                self.url = await self._opening
        self._opening = None
        with contextlib.suppress(Exception):
            if self._save is not None:
                await self._save
        self._save = None
        with contextlib.suppress(Exception):
            if self._patch is not None:
                self.accepted, self.prefix = await self._patch
        self._patch = None
        if self.url and self.accepted > self.saved:
            with contextlib.suppress(Exception):
                await self._start_save()
        await self.cancel()

    async def cancel(self) -> None:
        tasks = [t for t in (self._opening, self._patch, self._save) if t is not None]
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _skip(stream: AsyncIterator[bytes], count: int, hasher: Any, name: str) -> bytearray:
    """Read `count` bytes of `stream` into `hasher` only; what the last piece held beyond
    them is returned, to be sent."""
    seen, rest = 0, bytearray()
    while seen < count:
        piece = await anext(stream, None)
        if piece is None:
            raise ContentMismatch(f"{name}: stream ended before the resumed offset")
        take = min(len(piece), count - seen)
        hasher.update(piece[:take])
        seen += take
        rest += piece[take:]
    return rest


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for piece in rest:
        yield piece


async def _until_sent(sent: asyncio.Event, patch: asyncio.Future[Any]) -> None:
    """Until `sent` is set or `patch` is over (a PATCH that failed before its body left)."""
    waiter = asyncio.ensure_future(sent.wait())
    try:
        await asyncio.wait([waiter, patch], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


async def _body(data: bytes, sent: asyncio.Event | None) -> AsyncIterator[bytes]:
    """A PATCH body: the chunk in one piece (one write; cut in 256 KiB pieces it took an event
    loop turn per piece, each waiting behind the download's work), then `sent` is set. Handed
    to httpx as a generator, not as `bytes`: httpx keeps requests in reference cycles that
    only the garbage collector frees, and a finished generator no longer holds the chunk, so
    6 MiB chunks do not pile up."""
    yield data
    if sent is not None:
        sent.set()
