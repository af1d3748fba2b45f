"""Streaming verification: bytes pass through once, in order, and the last piece is held back
until size and hash match what GitHub listed. A store that only commits an object when its
input ends cleanly therefore never stores a truncated body, an HTML page or wrong bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..errors import ContentMismatch, NotVideo, ShortBody, TooLarge, UnsafePath
from ..model import ArtifactRef, git_blob_hash

_PRINTABLE = re.compile(r"[\x21-\x7e]+")  # printable ASCII without space


def check_github_path(path: str | None, directory: str) -> str:
    """Return `path` if it is a safe relative POSIX path under `directory` ending in .mp4."""
    if not path:
        raise UnsafePath("unsafe github_path: missing")
    shown = path.encode("unicode_escape").decode("ascii")[:120]
    reasons = [
        (not _PRINTABLE.fullmatch(path), "non-printable or non-ASCII characters"),
        (path.startswith("/"), "absolute path"),
        (".." in path.split("/"), "'..' segment"),
        ("//" in path, "empty segment"),
        ("\\" in path, "backslash"),
        ("%" in path, "percent escape"),
        (not path.startswith(directory.rstrip("/") + "/"), f"not under {directory}/"),
        (not path.endswith(".mp4"), "not an .mp4"),
    ]
    for bad, why in reasons:
        if bad:
            raise UnsafePath(f"unsafe github_path ({why}): {shown}")
    return path


def check_size(ref: ArtifactRef, max_bytes: int) -> None:
    if ref.size > max_bytes:
        raise TooLarge(f"artifact is {ref.size} bytes, over VIDEOPOLL_MAX_BYTES ({max_bytes})")
    if ref.size < 8:
        raise NotVideo(f"artifact is {ref.size} bytes: too small to be an MP4")


def _is_mp4(head: bytes) -> bool:
    return len(head) >= 8 and head[4:8] == b"ftyp"


class _Digest:
    """The hash GitHub listed, fed in batches on a worker thread (hashlib drops the GIL), so
    hashing a large file overlaps with moving its bytes instead of stalling the event loop."""

    BATCH = 4 * 1024 * 1024

    def __init__(self, ref: ArtifactRef) -> None:
        if ref.lfs_oid:
            self._hash: Any = hashlib.sha256()
            self.expected = ref.lfs_oid
        else:
            self._hash = git_blob_hash(ref.size, ref.sha)
            self.expected = ref.sha
        self._batch: list[bytes] = []
        self._batched = 0
        self._running: asyncio.Future[None] | None = None

    def _feed(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self._hash.update(piece)

    async def update(self, data: bytes) -> None:
        self._batch.append(data)
        self._batched += len(data)
        if self._batched >= self.BATCH:
            await self._drain()
            pieces, self._batch, self._batched = self._batch, [], 0
            self._running = asyncio.ensure_future(asyncio.to_thread(self._feed, pieces))

    async def _drain(self) -> None:
        if self._running is not None:
            await self._running
            self._running = None

    async def ok(self) -> bool:
        await self._drain()
        self._feed(self._batch)
        self._batch = []
        return bool(self._hash.hexdigest() == self.expected)


async def verified(
    source: AsyncIterator[bytes],
    ref: ArtifactRef,
    *,
    progress: Callable[[int], None] | None = None,
) -> AsyncIterator[bytes]:
    """Yield `source`'s bytes, raising before the last piece leaves unless they are exactly
    the file GitHub listed (size, git blob SHA-1, or SHA-256 in a SHA-256 repository, or LFS
    sha256) and start with an MP4 box.

    A head that is not an MP4 is read to the end without being passed on: when it still
    matches GitHub's hash the file really is no video (NotVideo, permanent); otherwise the
    bytes were damaged on the way (ContentMismatch, counted, retried).
    """
    digest = _Digest(ref)
    seen = 0
    head = b""
    held: bytes | None = None
    bad_head = False
    async for piece in source:
        if not piece:
            continue
        seen += len(piece)
        if seen > ref.size:
            raise ContentMismatch(f"got more than the {ref.size} bytes GitHub listed")
        await digest.update(piece)
        if progress is not None:
            progress(len(piece))
        if len(head) < 8:
            head += piece[: 8 - len(head)]
            if len(head) < 8:
                held = piece if held is None else held + piece
                continue
            bad_head = not _is_mp4(head)
            if held is not None:
                piece, held = held + piece, None
        if bad_head:
            continue
        if held is not None:
            yield held
        held = piece
    html = head.lstrip()[:1] == b"<"
    if seen < ref.size:
        what = "got an HTML page instead of the video" if html else "download ended"
        raise ShortBody(f"{what} ({seen} of {ref.size} bytes)")
    if not await digest.ok():
        if html:
            raise ContentMismatch("got an HTML page instead of the video")
        kind = "sha256" if ref.lfs else \
            "git blob SHA-1" if len(ref.sha) == 40 else "git blob SHA-256"
        raise ContentMismatch(f"downloaded bytes do not match GitHub's {kind}")
    if bad_head or len(head) < 8:
        looks = "an HTML page" if head.lstrip()[:1] == b"<" else f"starts with {head[:8]!r}"
        raise NotVideo(f"not an MP4: no ftyp box ({looks})")
    if held is not None:
        yield held
