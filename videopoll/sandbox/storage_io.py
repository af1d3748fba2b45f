"""Storage's plumbing shared by the standard and the resumable upload: errors in Storage's
shape, bucket lookups, the permission test, streaming bodies to disk and committing objects."""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

if TYPE_CHECKING:
    from .server import Request
    from .supabase import SupabaseStandIn

PIECE = 64 * 1024
# supabase/storage's VALID_OBJECT_KEY (src/storage/limits.ts): S3-safe characters only.
VALID_KEY = re.compile(r"[A-Za-z0-9_/!.*'() &$=@;:+,?-]+\Z")


class StorageError(Exception):
    """Storage's error: HTTP 400 for everything but 500, the real status in `statusCode`."""

    def __init__(self, status: int, code: str, message: str, error: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.error = status, code, message, error or code

    def body(self) -> dict[str, str]:
        return {"statusCode": str(self.status), "code": self.code, "error": self.error,
                "message": self.message}


def no_such_bucket() -> StorageError:
    return StorageError(404, "NoSuchBucket", "Bucket not found", "Bucket not found")


def no_such_key() -> StorageError:
    return StorageError(404, "NoSuchKey", "Object not found", "not_found")


def too_large(limit: str = "the maximum allowed size") -> StorageError:
    return StorageError(413, "EntityTooLarge", f"The object exceeded {limit}", "Payload too large")


def access_denied(message: str) -> StorageError:
    return StorageError(403, "AccessDenied", message, "Unauthorized")


def from_db(exc: psycopg.Error) -> StorageError:
    """supabase/storage's DBError.fromDBError, for the codes the sandbox can meet."""
    state = exc.sqlstate or ""
    message = exc.diag.message_primary or str(exc)
    if state == "42501":
        return access_denied("new row violates row-level security policy"
                             if "row-level security" in message else message)
    if state == "23505":
        return StorageError(409, "ResourceAlreadyExists", "The resource already exists",
                            "Duplicate")
    if state == "23503":
        return StorageError(404, "InvalidRequest", "The related resource does not exist")
    if state == "22P02":
        return StorageError(400, "InvalidParameter", message)
    return StorageError(500, "DatabaseError", f"database error, code: {state}")


def check_key(name: str) -> str:
    """Storage's key rule, plus (the sandbox keeps objects on disk) no empty, "." or ".."
    segments, which storage3 refuses on its side anyway."""
    if not VALID_KEY.match(name) or any(p in ("", ".", "..") for p in name.split("/")):
        raise StorageError(400, "InvalidKey", f"Invalid key: {name}")
    return name


@dataclass(frozen=True)
class Bucket:
    id: str
    public: bool
    file_size_limit: int | None
    allowed_mime_types: list[str] | None


def find_bucket(app: SupabaseStandIn, bucket_id: str) -> Bucket:
    """Storage finds buckets as its superuser before the caller's role applies."""
    with app.superuser() as conn:
        row = conn.execute("select id, public, file_size_limit, allowed_mime_types "
                           "from storage.buckets where id = %s", [bucket_id]).fetchone()
    if row is None:
        raise no_such_bucket()
    return Bucket(*row)


def size_limit(app: SupabaseStandIn, bucket: Bucket) -> int:
    return min(bucket.file_size_limit or app.file_size_limit, app.file_size_limit)


def check_mime(bucket: Bucket, content_type: str) -> None:
    allowed = bucket.allowed_mime_types
    mime = content_type.split(";")[0].strip().lower()
    if allowed and not any(a == mime or (a.endswith("/*") and mime.startswith(a[:-1]))
                           for a in (x.lower() for x in allowed)):
        raise StorageError(415, "InvalidMimeType", f"mime type {mime} is not supported",
                           "invalid_mime_type")


def can_upload(app: SupabaseStandIn, claims: dict[str, Any], bucket: str, name: str,
               upsert: bool) -> None:
    """Try the metadata write as the caller and roll it back: RLS and duplicates, before
    any byte is accepted (supabase/storage's Uploader.canUpload)."""
    try:
        with app.transaction(claims, method="POST", rollback=True) as conn:
            _upsert_row(conn, claims, bucket, name, {}, upsert)
    except psycopg.Error as exc:
        raise from_db(exc) from None


def _upsert_row(conn: psycopg.Connection[Any], claims: dict[str, Any], bucket: str, name: str,
                metadata: dict[str, Any], upsert: bool) -> str:
    conflict = (" on conflict (bucket_id, name) do update set metadata = excluded.metadata,"
                " version = excluded.version, owner = excluded.owner, updated_at = now()"
                if upsert else "")
    row = conn.execute(
        "insert into storage.objects (bucket_id, name, owner, metadata, version) "
        "values (%s, %s, %s, %s, %s)" + conflict + " returning id",
        [bucket, name, _owner(claims), json.dumps(metadata), uuid.uuid4().hex]).fetchone()
    assert row is not None
    return str(row[0])


def _owner(claims: dict[str, Any]) -> str | None:
    sub = claims.get("sub")
    try:
        return str(uuid.UUID(str(sub))) if sub else None
    except ValueError:
        return None


def object_path(app: SupabaseStandIn, bucket: str, name: str) -> Path:
    return app.storage_dir / "objects" / bucket / name


def temp_path(app: SupabaseStandIn, kind: str = "tmp") -> Path:
    folder = app.storage_dir / f".{kind}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / uuid.uuid4().hex


@dataclass
class Received:
    path: Path
    size: int
    sha256: str
    md5: str


def write_stream(pieces: Iterable[bytes], dest: Path, limit: int, *, mode: str = "wb",
                 offset: int = 0) -> int:
    """Write pieces to `dest` (at `offset`), refusing more than `limit` bytes in all."""
    written = 0
    with open(dest, mode) as out:
        if offset:
            out.seek(offset)
        for piece in pieces:
            written += len(piece)
            if offset + written > limit:
                raise too_large()
            out.write(piece)
    return written


def digest_file(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as src:
        while piece := src.read(1024 * 1024):
            sha.update(piece)
            md5.update(piece)
    return sha.hexdigest(), md5.hexdigest()


def commit(app: SupabaseStandIn, claims: dict[str, Any], bucket: str, name: str, src: Path,
           *, upsert: bool, content_type: str, cache_control: str, via: str,
           digests: tuple[str, str] | None = None) -> str:
    """Make `src` the object: its metadata row (as the caller, so RLS applies) and the file
    move happen under the row lock, so racing writers of one key queue up. `digests`
    (sha256, md5) when the caller hashed the bytes as they arrived; else `src` is read."""
    size = src.stat().st_size
    sha, md5 = digests or digest_file(src)
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    metadata = {"eTag": f'"{md5}"', "size": size, "mimetype": content_type,
                "cacheControl": cache_control, "lastModified": now, "contentLength": size,
                "httpStatusCode": 200}
    dest = object_path(app, bucket, name)
    try:
        with app.transaction(claims, method="POST") as conn:
            object_id = _upsert_row(conn, claims, bucket, name, metadata, upsert)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
    except psycopg.Error as exc:
        raise from_db(exc) from None
    finally:
        src.unlink(missing_ok=True)
    app.record_write(f"{bucket}/{name}", sha, size, via)
    return object_id


def read_file(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as src:
        while piece := src.read(PIECE):
            yield piece


class _Reader:
    """Pulls a request body through a small buffer (never the whole body in memory)."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self.pieces, self.buf = pieces, bytearray()

    def until(self, marker: bytes, out: Any, cap: int | None = None) -> None:
        """Feed `out` everything before `marker`, then drop the marker."""
        taken = 0
        while (idx := self.buf.find(marker)) < 0:
            keep = len(marker) - 1
            if len(self.buf) > keep:
                cut = len(self.buf) - keep
                taken += cut
                if cap is not None and taken > cap:
                    raise StorageError(400, "InvalidRequest", "Malformed multipart body")
                out(bytes(self.buf[:cut]))
                del self.buf[:cut]
            piece = next(self.pieces, None)
            if piece is None:
                raise StorageError(400, "InvalidRequest", "Malformed multipart body")
            self.buf += piece
        out(bytes(self.buf[:idx]))
        del self.buf[: idx + len(marker)]

    def take(self, n: int) -> bytes:
        while len(self.buf) < n and (piece := next(self.pieces, None)) is not None:
            self.buf += piece
        head = bytes(self.buf[:n])
        del self.buf[:n]
        return head


def receive(request: Request, dest: Path, limit: int) -> tuple[str, str]:
    """Stream the upload body into `dest`: storage3's multipart form (a `file` part and a
    `cacheControl` field) or a raw body. Returns (content_type, cache_control)."""
    ctype = request.header("Content-Type") or "application/octet-stream"
    cache = request.header("cache-control") or "no-cache"
    match = re.search(r'boundary="?([^";]+)"?', ctype)
    if not ctype.lower().startswith("multipart/form-data") or not match:
        write_stream(request.stream(), dest, limit)
        return ctype, cache
    boundary = match.group(1).encode()
    reader = _Reader(iter(request.stream()))
    reader.until(b"--" + boundary, lambda _: None)
    part_type, found = "text/plain;charset=UTF-8", False
    with open(dest, "wb") as out:
        while reader.take(2) == b"\r\n":
            raw: list[bytes] = []
            reader.until(b"\r\n\r\n", raw.append, cap=16 * 1024)
            headers = b"".join(raw).decode("utf-8", "replace")
            name = re.search(r'name="([^"]*)"', headers)
            is_file = 'filename="' in headers
            if is_file:
                found = True
                written = 0
                kind = re.search(r"(?im)^content-type:\s*(.+)$", headers)
                part_type = kind.group(1).strip() if kind else part_type

                def sink(data: bytes) -> None:
                    nonlocal written
                    written += len(data)
                    if written > limit:
                        raise too_large()
                    out.write(data)

                reader.until(b"\r\n--" + boundary, sink)
            else:
                value: list[bytes] = []
                reader.until(b"\r\n--" + boundary, value.append, cap=64 * 1024)
                if name and name.group(1) == "cacheControl":
                    cache = b"".join(value).decode() or cache
    if cache.isdigit():
        cache = f"max-age={cache}"
    if not found:
        raise StorageError(400, "InvalidRequest", "No content provided")
    return part_type, cache
