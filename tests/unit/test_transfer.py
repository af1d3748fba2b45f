"""The verifying stream and the github_path rules."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from videopoll.engine.verify import check_github_path, check_size, verified
from videopoll.errors import ContentMismatch, NotVideo, ShortBody, TooLarge, UnsafePath
from videopoll.model import ArtifactRef

MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(range(256)) * 40


def blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def ref_for(data: bytes, *, lfs: bool = False, size: int | None = None) -> ArtifactRef:
    if lfs:
        return ArtifactRef("videos/a/b.mp4", "0" * 40, size or len(data),
                           lfs_oid=hashlib.sha256(data).hexdigest())
    return ArtifactRef("videos/a/b.mp4", blob_sha(data), size or len(data))


async def pieces(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def collect(stream: AsyncIterator[bytes]) -> tuple[bytes, list[bytes]]:
    seen: list[bytes] = []
    try:
        async for piece in stream:
            seen.append(piece)
    except Exception:
        raise
    return b"".join(seen), seen


@pytest.mark.parametrize("lfs", [False, True])
@pytest.mark.parametrize("piece", [1, 7, 1000, 100_000])
async def test_good_bytes_pass_through_unchanged(lfs: bool, piece: int) -> None:
    """Whatever the piece size, a matching file comes out byte for byte."""
    data, _ = await collect(verified(pieces(MP4, piece), ref_for(MP4, lfs=lfs)))
    assert data == MP4


async def test_last_piece_is_held_until_the_hash_is_checked() -> None:
    """Nothing after the first piece... and crucially the last piece never leaves on a mismatch."""
    bad = MP4[:-1] + bytes([MP4[-1] ^ 1])
    out: list[bytes] = []
    with pytest.raises(ContentMismatch, match="git blob SHA-1"):
        async for piece in verified(pieces(bad, 1000), ref_for(MP4)):
            out.append(piece)
    assert len(b"".join(out)) < len(MP4)
    assert b"".join(out) == MP4[: len(b"".join(out))]


@pytest.mark.parametrize("piece", [7, 1000])
async def test_a_sha256_repository_s_blob_id_is_checked_with_sha256(piece: int) -> None:
    """A 64-hex blob id (git's SHA-256 object format, which the listing accepts) is the
    SHA-256 of the blob; its bytes pass, and other bytes under that id do not."""
    sha = hashlib.sha256(b"blob %d\0" % len(MP4) + MP4).hexdigest()
    ref = ArtifactRef("videos/a/b.mp4", sha, len(MP4))
    data, _ = await collect(verified(pieces(MP4, piece), ref))
    assert data == MP4
    bad = MP4[:-1] + bytes([MP4[-1] ^ 1])
    with pytest.raises(ContentMismatch, match="git blob SHA-256"):
        await collect(verified(pieces(bad, piece), ref))


async def test_short_body_is_transient() -> None:
    """A body that ends early is ShortBody (retried), not a mismatch (counted)."""
    with pytest.raises(ShortBody, match=f"download ended \\(5000 of {len(MP4)} bytes"):
        await collect(verified(pieces(MP4[:5000]), ref_for(MP4)))


async def test_extra_bytes_are_refused_at_once() -> None:
    with pytest.raises(ContentMismatch, match="more than"):
        await collect(verified(pieces(MP4 + b"x"), ref_for(MP4)))


async def test_html_page_is_never_passed_on() -> None:
    """An HTML page in place of the video yields nothing and says what it was."""
    page = b"<!DOCTYPE html><html>" + b" " * (len(MP4) - 21)
    out: list[bytes] = []
    with pytest.raises(ContentMismatch, match="HTML page"):
        async for piece in verified(pieces(page), ref_for(MP4)):
            out.append(piece)
    assert out == []


async def test_a_real_non_mp4_file_is_permanent() -> None:
    """Bytes that match GitHub's hash but have no ftyp box: the file itself is no video."""
    data = b"GIF89a" + bytes(5000)
    with pytest.raises(NotVideo, match="no ftyp"):
        await collect(verified(pieces(data), ref_for(data)))


def test_size_limits() -> None:
    with pytest.raises(TooLarge, match="VIDEOPOLL_MAX_BYTES"):
        check_size(ArtifactRef("videos/x.mp4", "a" * 40, 11), 10)
    with pytest.raises(NotVideo, match="0 bytes"):
        check_size(ArtifactRef("videos/x.mp4", "a" * 40, 0), 10)


@pytest.mark.parametrize("path", [
    "videos/l/a.mp4", "videos/deep/er/a-b_c.1.mp4",
])
def test_safe_paths(path: str) -> None:
    assert check_github_path(path, "videos") == path


@pytest.mark.parametrize(("path", "why"), [
    (None, "missing"),
    ("", "missing"),
    ("/videos/a.mp4", "absolute"),
    ("videos/../secrets.mp4", "'..'"),
    ("videos//a.mp4", "empty segment"),
    ("videos\\a.mp4", "non-printable|backslash"),
    ("videos/%2e%2e/a.mp4", "percent"),
    ("videos/a\x00.mp4", "non-printable"),
    ("videos/a\n.mp4", "non-printable"),
    ("videos/caf\u00e9.mp4", "non-ASCII"),
    ("videos/a b.mp4", "non-printable"),
    ("other/a.mp4", "not under videos/"),
    ("videos/a.mov", "not an .mp4"),
])
def test_unsafe_paths(path: str | None, why: str) -> None:
    with pytest.raises(UnsafePath, match=why):
        check_github_path(path, "videos")
