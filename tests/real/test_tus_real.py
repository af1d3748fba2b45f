"""videopoll's TUS client on the real tus server (@tus/server + @tus/file-store, what Supabase
Storage runs), mounted where Supabase serves it: upload in 6 MiB chunks, resume after a PATCH
killed mid-body, a changed artifact, terminate, and a refused key."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest

from videopoll.errors import AuthError, ProtocolError, Unreachable
from videopoll.model import Service
from videopoll.services.http import make_client
from videopoll.services.supabase import tus as tusmod
from videopoll.services.supabase.tus import Saved, TusClient

from ..tuscut import CutPatch
from .tus_server import RealTus

pytestmark = pytest.mark.real
MiB = 1024 * 1024
CHUNK = tusmod.CHUNK
BUCKET = "lesson-assets"


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


async def pieces(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


class Saves:
    """The `save` callback of `tus.upload`: what the row would hold."""

    def __init__(self) -> None:
        self.log: list[tuple[str, int, str]] = []

    async def __call__(self, url: str, offset: int, prefix: str) -> bool:
        self.log.append((url, offset, prefix))
        return True

    def last(self, digest: str) -> Saved:
        url, offset, prefix = self.log[-1]
        return Saved(url, digest, offset, prefix)


async def upload(server: RealTus, data: bytes, name: str, *, saves: Saves,
                 saved: Saved | None = None, transport: httpx.AsyncBaseTransport | None = None,
                 key: str | None = None) -> None:
    async with make_client(Service.STORE, server.url, calls=Counter(), transport=transport) as http:
        client = TusClient(http, f"{server.url}/storage/v1", key or server.key, BUCKET)
        await tusmod.upload(client, pieces(data), name=name, size=len(data),
                            content_type="video/mp4", digest=hashlib.sha1(data).hexdigest(),
                            saved=saved, save=saves)


async def offset_of(server: RealTus, url: str) -> int | None:
    async with make_client(Service.STORE, server.url, calls=Counter()) as http:
        return await TusClient(http, f"{server.url}/storage/v1", server.key, BUCKET).offset(url)


def test_an_upload_goes_in_6_mib_chunks(tus: RealTus) -> None:
    """Create, then PATCHes of exactly 6 MiB but the last; the server holds every byte."""
    data, saves = blob(20 * MiB + 123, 1), Saves()
    asyncio.run(upload(tus, data, "videos/l1/a1.mp4", saves=saves))
    url = saves.log[-1][0]
    assert url.startswith(f"{tus.url}/storage/v1/upload/resumable/")  # on the Storage origin
    patches = [e for e in tus.log("PATCH") if e["id"] == url.rsplit("/", 1)[1]]
    assert [int(p["length"]) for p in patches] == [CHUNK, CHUNK, CHUNK, 2 * MiB + 123]
    assert [int(p["offset"]) for p in patches] == [0, CHUNK, 2 * CHUNK, 3 * CHUNK]
    assert tus.stored(url) == data
    assert asyncio.run(offset_of(tus, url)) == len(data)
    # The URL after create, and nothing more: 20 MiB is under tus.SAVE_BYTES, and the end is
    # not saved (the ready mark clears the upload state).
    assert [offset for _, offset, _ in saves.log] == [0]


def test_a_finished_upload_resumed_from_its_last_save_sends_nothing(tus: RealTus) -> None:
    """Killed between the last chunk and the ready mark: the next attempt holds only the
    last save (the URL at offset 0). The real server still answers HEAD for a finished
    upload, with its full length, so the bytes are re-read and checked, and not one request
    creates or PATCHes anything."""
    data, saves = blob(13 * MiB + 7, 7), Saves()
    digest = hashlib.sha1(data).hexdigest()
    asyncio.run(upload(tus, data, "videos/l1/a6.mp4", saves=saves))
    saved = saves.last(digest)
    assert saved.offset == 0
    creates, patches = len(tus.log("POST")), len(tus.log("PATCH"))
    asyncio.run(upload(tus, data, "videos/l1/a6.mp4", saves=saves, saved=saved))
    assert (len(tus.log("POST")), len(tus.log("PATCH"))) == (creates, patches)
    assert tus.stored(saved.url) == data


def test_a_killed_patch_resumes_from_the_bytes_the_server_kept(tus: RealTus) -> None:
    """The second PATCH dies after 1 MiB and a bit: the real server keeps those bytes, so it
    is past the saved offset; the next attempt checks the saved prefix and goes on from the
    server's offset with the same upload."""
    data, saves = blob(20 * MiB + 123, 2), Saves()
    digest = hashlib.sha1(data).hexdigest()
    with pytest.raises(Unreachable):
        asyncio.run(upload(tus, data, "videos/l1/a2.mp4", saves=saves,
                           transport=CutPatch(nth=2, keep=MiB + 4321)))
    saved = saves.last(digest)
    assert saved.offset == CHUNK
    held = asyncio.run(offset_of(tus, saved.url))
    assert held is not None and CHUNK < held <= CHUNK + MiB + 4321, held
    creates = len(tus.log("POST"))
    asyncio.run(upload(tus, data, "videos/l1/a2.mp4", saves=saves, saved=saved))
    assert len(tus.log("POST")) == creates  # the same upload, not a new one
    resumed = [e for e in tus.log("PATCH") if e["id"] == saved.url.rsplit("/", 1)[1]][2:]
    assert int(resumed[0]["offset"]) == held
    assert tus.stored(saved.url) == data


def test_other_bytes_under_the_same_digest_start_afresh(tus: RealTus) -> None:
    """A resumed stream whose saved prefix differs is refused and its upload terminated."""
    data, saves = blob(13 * MiB, 3), Saves()
    digest = hashlib.sha1(data).hexdigest()
    with pytest.raises(Unreachable):
        asyncio.run(upload(tus, data, "videos/l1/a3.mp4", saves=saves,
                           transport=CutPatch(nth=2, keep=MiB)))
    saved = saves.last(digest)
    other = blob(13 * MiB, 4)
    with pytest.raises(ProtocolError, match="bytes differ"):
        asyncio.run(upload(tus, other, "videos/l1/a3.mp4", saves=saves,
                           saved=Saved(saved.url, hashlib.sha1(other).hexdigest(), saved.offset,
                                       saved.prefix_sha256)))
    assert saves.log[-1] == ("", 0, "")
    assert asyncio.run(offset_of(tus, saved.url)) is None  # terminated: 404 on HEAD


def test_terminate_abandons_an_upload(tus: RealTus) -> None:
    """DELETE ends an unfinished upload: HEAD no longer finds it."""

    async def go() -> tuple[int | None, int | None]:
        async with make_client(Service.STORE, tus.url, calls=Counter()) as http:
            client = TusClient(http, f"{tus.url}/storage/v1", tus.key, BUCKET)
            url = await client.create(name="videos/l1/a4.mp4", size=2 * CHUNK,
                                      content_type="video/mp4")
            await client.patch(url, 0, blob(CHUNK, 5))
            before = await client.offset(url)
            await client.terminate(url)
            return before, await client.offset(url)

    assert asyncio.run(go()) == (CHUNK, None)


def test_a_refused_key_is_an_auth_error(tus: RealTus) -> None:
    """The server's plain-text refusal becomes AuthError with its words."""
    with pytest.raises(AuthError, match="invalid signature"):
        asyncio.run(upload(tus, blob(7 * MiB, 6), "videos/l1/a5.mp4", saves=Saves(),
                           key="not-the-key"))
