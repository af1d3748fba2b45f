"""Storage's resumable uploads: TUS 1.0.0 at `/storage/v1/upload/resumable`.

`POST` creates an upload (`Upload-Length`, `Upload-Metadata` with base64 `bucketName`,
`objectName`, `contentType`, `cacheControl`; `x-upsert`) and answers 201 with a `Location`
ending in base64url("bucket/name/version"). `PATCH` appends at `Upload-Offset` (409 on a
mismatch) in chunks of exactly `chunk_size` bytes except the last, as hosted Supabase requires;
`HEAD` tells the offset; `DELETE` abandons. The object is committed only when its last byte
arrives: an unfinished upload leaves no object. A PATCH cut short keeps the bytes that arrived
(as the real tus server does), so the offset need not fall on a chunk boundary, and a HEAD
waits for a PATCH in progress. Errors inside the protocol are plain text with the real
status, as supabase/storage's `onResponseError` renders them.
Route names for faults: tus.create, tus.patch, tus.head, tus.delete, tus.options.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from .postgrest_query import ApiError
from .server import Request, Response
from .storage import claims_of, storage_response
from .storage_io import (
    StorageError,
    can_upload,
    check_key,
    check_mime,
    commit,
    find_bucket,
    size_limit,
    temp_path,
    too_large,
)

if TYPE_CHECKING:
    from .supabase import SupabaseStandIn

_P = "/storage/v1/upload/resumable"
_TUS = {"Tus-Resumable": "1.0.0"}
# A PATCH body is read in pieces of up to a whole 6 MiB chunk: the server's default 64 KiB
# made ~100 reads and writes of each chunk, and 1 MiB pieces still ~4 ms more of a round trip
# than one read (each piece a fresh allocation), time that real Storage does not spend. A
# body cut short still yields what arrived before the read comes back empty.
BODY_PIECE = 6 * 1024 * 1024
# Batches of a PATCH body (of at least STORE_BATCH bytes) waiting for the storage thread, per
# upload, before reading waits for it: bounds the memory a client can make the stand-in hold
# (a last chunk may be any size).
STORE_BACKLOG = 4
STORE_BATCH = 8 * 1024 * 1024


@dataclass
class Upload:
    id: str
    bucket: str
    name: str
    length: int
    content_type: str
    cache_control: str
    upsert: bool
    path: Path
    expires: float
    offset: int = 0
    done: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    # sha256 and md5 of bytes [0, offset), fed in order as PATCHes land (storage thread) so
    # that the last PATCH need not read the whole file again before committing; hashes_kept
    # is False once bytes were written that the offset then did not keep.
    sha256: Any = field(default_factory=hashlib.sha256)
    md5: Any = field(default_factory=lambda: hashlib.md5(usedforsecurity=False))
    storing: deque[Future[None]] = field(default_factory=deque)  # batches being written
    hashes_kept: bool = True

    @property
    def key(self) -> str:
        return f"{self.bucket}/{self.name}"


class _TusError(Exception):
    def __init__(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(text)
        self.status, self.text, self.headers = status, text, headers or {}


def register(app: SupabaseStandIn) -> None:
    app.route("POST", _P + "/?", "tus.create", _guard(app, _create))
    app.route("OPTIONS", _P + "(/[A-Za-z0-9_-]+)?/?", "tus.options", lambda r: Response(
        204, b"", {**_TUS, "Tus-Version": "1.0.0", "Tus-Max-Size": str(app.file_size_limit),
                   "Tus-Extension": "creation,creation-with-upload,termination,expiration"}))
    one = _P + "/(?P<upload>[A-Za-z0-9_-]+)"
    # The chunk streams in while the latency runs, as on a network (see StandIn.route).
    app.route("PATCH", one, "tus.patch", _guard(app, _patch), latency_after_body=True)
    app.route("HEAD", one, "tus.head", _guard(app, _head))
    app.route("DELETE", one, "tus.delete", _guard(app, _delete))


def _guard(app: SupabaseStandIn, handler: Any) -> Any:
    def run(request: Request) -> Response:
        try:
            claims = claims_of(app, request)  # the JWT is checked before TUS, in JSON
        except StorageError as exc:
            return storage_response(exc)
        try:
            if request.header("Tus-Resumable") != "1.0.0":
                raise _TusError(412, "Unsupported version", {"Tus-Version": "1.0.0"})
            result: Response = handler(app, request, claims)
            return result
        except _TusError as exc:
            return Response(exc.status, exc.text.encode(), {
                **_TUS, "Content-Type": "text/plain; charset=utf-8", **exc.headers})
        except StorageError as exc:
            return Response(exc.status, exc.message.encode(), {
                **_TUS, "Content-Type": "text/plain; charset=utf-8"})
        except ApiError as exc:
            return Response(403, exc.message.encode(), dict(_TUS))
        except psycopg.Error as exc:
            return Response(500, f"database error, code: {exc.sqlstate}".encode(), dict(_TUS))

    return run


def _metadata(header: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in (header or "").split(","):
        key, _, value = pair.strip().partition(" ")
        if not key:
            continue
        try:
            out[key] = base64.b64decode(value, validate=True).decode() if value else ""
        except (binascii.Error, UnicodeDecodeError):
            raise _TusError(400, "Invalid Upload-Metadata header") from None
    return out


def _expires(upload: Upload) -> dict[str, str]:
    return {"Upload-Expires": formatdate(upload.expires, usegmt=True)}


def _create(app: SupabaseStandIn, request: Request, claims: dict[str, Any]) -> Response:
    raw_length = request.header("Upload-Length")
    if raw_length is None or not raw_length.isdigit():
        raise _TusError(400, "Upload-Length or Upload-Defer-Length header required")
    length = int(raw_length)
    meta = _metadata(request.header("Upload-Metadata"))
    if not meta:
        raise _TusError(400, "Metadata header is required")
    bucket_id, name = meta.get("bucketName", ""), check_key(meta.get("objectName", ""))
    content_type = meta.get("contentType") or "application/octet-stream"
    cache = meta.get("cacheControl", "")
    upsert = (request.header("x-upsert") or "").lower() == "true"
    bucket = find_bucket(app, bucket_id)
    if length > size_limit(app, bucket):
        raise _TusError(413, "Maximum size exceeded")
    check_mime(bucket, content_type)
    can_upload(app, claims, bucket_id, name, upsert)
    version = uuid.uuid4().hex
    upload_id = base64.urlsafe_b64encode(f"{bucket_id}/{name}/{version}".encode()
                                         ).decode().rstrip("=")
    path = temp_path(app, "tus")
    path.touch()
    upload = Upload(upload_id, bucket_id, name, length, content_type,
                    f"max-age={cache}" if cache.isdigit() else "no-cache", upsert, path,
                    time.time() + app.tus_expiry_s)
    with app.lock:
        app.uploads[upload_id] = upload
    if length == 0:
        _finish(app, upload, claims)
    return Response(201, b"", {**_TUS, **_expires(upload),
                               "Location": f"{app.url}{_P}/{upload_id}"})


def _find(app: SupabaseStandIn, request: Request) -> Upload:
    with app.lock:
        upload = app.uploads.get(request.params["upload"])
    if upload is None:
        raise _TusError(404, "The file for this url was not found")
    if upload.expires < time.time():
        with app.lock:
            app.uploads.pop(upload.id, None)
        upload.path.unlink(missing_ok=True)
        raise _TusError(410, "The file for this url no longer exists")
    return upload


def _head(app: SupabaseStandIn, request: Request, claims: dict[str, Any]) -> Response:
    upload = _find(app, request)
    # As tus-node-server does: a PATCH still being received (or cut short) finishes first,
    # so the offset told is the one the next PATCH must use.
    if not upload.lock.acquire(timeout=10):
        raise _TusError(423, "Resource locked")
    upload.lock.release()
    return Response(200, b"", {**_TUS, **_expires(upload), "Cache-Control": "no-store",
                               "Upload-Offset": str(upload.offset),
                               "Upload-Length": str(upload.length)})


def _patch(app: SupabaseStandIn, request: Request, claims: dict[str, Any]) -> Response:
    if (request.header("Content-Type") or "") != "application/offset+octet-stream":
        raise _TusError(415, "Unsupported Media Type")
    upload = _find(app, request)
    raw_offset = request.header("Upload-Offset") or ""
    raw_size = request.header("Content-Length") or ""
    if not raw_offset.isdigit():
        raise _TusError(403, "Upload-Offset header required")
    if not raw_size.isdigit():
        raise _TusError(400, "Content-Length header required")
    offset, size = int(raw_offset), int(raw_size)
    if not upload.lock.acquire(timeout=10):
        raise _TusError(423, "Resource locked")
    try:
        if offset != upload.offset:
            raise _TusError(409, "Upload-Offset conflict")
        if offset + size > upload.length:
            raise _TusError(413, "Maximum size exceeded")
        if size != app.chunk_size and offset + size != upload.length:
            raise _TusError(400, f"Chunks must be exactly {app.chunk_size} bytes except the "
                            "last one")
        try:
            _receive(app, request, upload, offset, offset + size)
        except ConnectionError:
            # Like tus-node-server (what Storage runs), the bytes of a PATCH cut short are
            # kept: the offset moves past the last whole chunk, to what arrived.
            received = upload.path.stat().st_size - offset
            upload.offset = offset + received
            with app.lock:
                app.tus_received[upload.key] += received
                app.tus_log.append((upload.key, offset, received))
            raise
        except BaseException:
            upload.hashes_kept = False  # written, hashed, but not kept: _finish re-reads
            raise
        upload.offset = offset + size
        with app.lock:
            app.tus_received[upload.key] += size
            app.tus_log.append((upload.key, offset, size))
        headers = {**_TUS, **_expires(upload), "Upload-Offset": str(upload.offset)}
        if upload.offset == upload.length and not upload.done:
            _finish(app, upload, claims)
            headers["Tus-Complete"] = "1"
        return Response(204, b"", headers)
    finally:
        upload.lock.release()


def _receive(app: SupabaseStandIn, request: Request, upload: Upload, offset: int,
             limit: int) -> None:
    """Read the PATCH body (never past `limit`) and have the app's storage thread write it at
    `offset` and hash it; returns once all of it is written. Reading is all this thread does
    while the body arrives: writing and hashing it here too took CPU from receiving it (the
    client's chunk waited in socket buffers meanwhile), so they run on the storage thread,
    the body's pieces handed over once it is in (or every STORE_BATCH bytes of a longer one),
    and so beside the latency that follows."""
    at, batch, size = offset, [], 0
    try:
        for piece in request.stream(BODY_PIECE):
            if at + size + len(piece) > limit:
                raise too_large()
            batch.append(piece)
            size += len(piece)
            if at + size == limit or size >= STORE_BATCH:
                _store(app, upload, at, batch)
                at, batch, size = at + size, [], 0
    except ConnectionError:
        _store(app, upload, at, batch)  # what arrived is kept, so it is written and hashed
        raise
    finally:
        while upload.storing:  # written (or failed) before the offset moves or the answer
            upload.storing.popleft().result()


def _store(app: SupabaseStandIn, upload: Upload, at: int, pieces: list[bytes]) -> None:
    """Queue `pieces` for the app's one storage thread, which writes them at `at` and feeds
    them to the upload's hashers: one thread, first in first out, so an upload's bytes are
    hashed in the order written, and at most STORE_BACKLOG batches wait per upload."""
    if len(upload.storing) >= STORE_BACKLOG:
        upload.storing.popleft().result()
    if pieces:
        upload.storing.append(app.tus_storing.submit(_write, upload, at, pieces))


def _write(upload: Upload, at: int, pieces: list[bytes]) -> None:
    with open(upload.path, "r+b") as out:
        out.seek(at)
        for piece in pieces:
            out.write(piece)
    for piece in pieces:
        upload.sha256.update(piece)
        upload.md5.update(piece)


def _finish(app: SupabaseStandIn, upload: Upload, claims: dict[str, Any]) -> None:
    digests = (upload.sha256.hexdigest(), upload.md5.hexdigest()) \
        if upload.hashes_kept else None
    commit(app, claims, upload.bucket, upload.name, upload.path, upsert=upload.upsert,
           content_type=upload.content_type, cache_control=upload.cache_control, via="tus",
           digests=digests)
    upload.done = True


def _delete(app: SupabaseStandIn, request: Request, claims: dict[str, Any]) -> Response:
    upload = _find(app, request)
    if upload.done:
        raise _TusError(400, "Cannot terminate an already completed upload")
    with app.lock:
        app.uploads.pop(upload.id, None)
    upload.path.unlink(missing_ok=True)
    return Response(204, b"", dict(_TUS))
