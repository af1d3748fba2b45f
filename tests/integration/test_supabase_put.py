"""`SupabaseStore.put`: the standard upload for small files, TUS for large ones, resuming after
a crash, and never an object from a stream that fails verification."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from videopoll.errors import (
    ConfigError,
    ContentMismatch,
    LeaseLost,
    ProtocolError,
    RequestRejected,
    ServerError,
    ShortBody,
    Unreachable,
)
from videopoll.model import Service, VideoAsset
from videopoll.sandbox import storage_io
from videopoll.sandbox.server import Fault, Request
from videopoll.sandbox.supabase import SupabaseStandIn
from videopoll.services.http import make_client
from videopoll.services.supabase import tus
from videopoll.services.supabase.store import SupabaseStore

from ..tuscut import CutPatch
from .conftest import BUCKET, Seed

pytestmark = pytest.mark.postgres
MiB = 1024 * 1024
CHUNK = 6 * MiB
OWNER = "poller-a:1"


def blob(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


async def verified(data: bytes, *, piece: int = 256 * 1024, crash_after: int | None = None,
                   mismatch: bool = False) -> AsyncIterator[bytes]:
    """Like `videopoll.engine.verify.verified`: the last piece comes only once the whole body is
    known good; `mismatch` raises there instead, `crash_after` raises mid-stream."""
    pieces = [data[i:i + piece] for i in range(0, len(data), piece)]
    sent = 0
    for part in pieces[:-1]:
        if crash_after is not None and sent >= crash_after:
            raise ShortBody()
        sent += len(part)
        yield part
    if mismatch:
        raise ContentMismatch()
    yield pieces[-1]


async def claimed(seed: Seed, store: SupabaseStore) -> VideoAsset:
    aid = seed.asset(status="finished")
    assert await store.claim(aid, OWNER, 300)
    asset = await store.get(aid)
    assert asset is not None
    return asset


def key_of(asset: VideoAsset) -> str:
    return f"videos/{asset.lesson_id}/{asset.id}.mp4"


async def stored(http: httpx.AsyncClient, supa: SupabaseStandIn, key: str) -> bytes | None:
    got = await http.get(f"{supa.url}/storage/v1/object/{BUCKET}/{key}",
                         headers={"apikey": supa.service_key,
                                  "Authorization": f"Bearer {supa.service_key}"})
    return got.content if got.status_code == 200 else None


async def test_small_file_is_one_standard_upload(seed: Seed, store: SupabaseStore,
                                                 supa: SupabaseStandIn,
                                                 http: httpx.AsyncClient) -> None:
    asset, data = await claimed(seed, store), blob(3 * MiB)
    key = key_of(asset)
    await store.put(asset, key, verified(data), size=len(data), digest="d1", owner=OWNER)
    assert await stored(http, supa, key) == data
    assert (supa.writes[f"{BUCKET}/{key}"], supa.write_log[-1].via) == (1, "upload")
    assert supa.write_log[-1].sha256 == hashlib.sha256(data).hexdigest()
    assert supa.counts["tus.create"] == 0
    await store.put(asset, key, verified(data), size=len(data), digest="d1", owner=OWNER)
    assert supa.writes[f"{BUCKET}/{key}"] == 2  # the deterministic key is upserted
    assert len({w.sha256 for w in supa.write_log}) == 1
    assert await store.mark_ready(asset.id, OWNER, key)


async def test_small_file_failing_verification_leaves_nothing(seed: Seed, store: SupabaseStore,
                                                              supa: SupabaseStandIn) -> None:
    asset, data = await claimed(seed, store), blob(MiB)
    with pytest.raises(ContentMismatch):
        await store.put(asset, key_of(asset), verified(data, mismatch=True), size=len(data),
                        digest="d", owner=OWNER)
    assert supa.writes == {}


async def test_missing_bucket_is_a_configuration_error(seed: Seed, supa: SupabaseStandIn,
                                                       http: httpx.AsyncClient) -> None:
    store = await SupabaseStore.connect(http, url=supa.url, key=supa.service_key,
                                        bucket="no-such-bucket")
    asset = await claimed(seed, store)
    for size in (10, 7 * MiB):  # standard upload and TUS say it the same way
        with pytest.raises(ConfigError) as missing:
            await store.put(asset, key_of(asset), verified(blob(size)), size=size,
                            digest=f"d{size}", owner=OWNER)
        assert "VIDEOPOLL_BUCKET" in (missing.value.hint or "")


async def test_large_file_goes_through_tus_in_6_mib_chunks(seed: Seed, store: SupabaseStore,
                                                           supa: SupabaseStandIn,
                                                           http: httpx.AsyncClient) -> None:
    asset, data = await claimed(seed, store), blob(13 * MiB + 5)
    key = key_of(asset)
    await store.put(asset, key, verified(data), size=len(data), digest="sha-1", owner=OWNER)
    assert [(o, n) for _, o, n in supa.tus_log] == [(0, CHUNK), (CHUNK, CHUNK),
                                                   (2 * CHUNK, MiB + 5)]
    assert (supa.writes[f"{BUCKET}/{key}"], supa.write_log[-1].via) == (1, "tus")
    assert await stored(http, supa, key) == data
    saved = seed.book(asset.id)  # the URL, saved before any chunk went out
    assert saved is not None and saved["upload_url"] and saved["upload_offset"] == 0
    assert await store.mark_ready(asset.id, OWNER, key)
    done = seed.book(asset.id)
    assert done is not None and done["upload_url"] is None  # ready clears the upload state


async def test_a_mismatching_final_hash_leaves_no_object(seed: Seed, store: SupabaseStore,
                                                         supa: SupabaseStandIn,
                                                         http: httpx.AsyncClient) -> None:
    asset, data = await claimed(seed, store), blob(12 * MiB + 1)
    with pytest.raises(ContentMismatch):
        await store.put(asset, key_of(asset), verified(data, mismatch=True), size=len(data),
                        digest="sha-x", owner=OWNER)
    assert supa.tus_received[f"{BUCKET}/{key_of(asset)}"] == 2 * CHUNK  # last chunk withheld
    assert supa.writes == {}
    assert await stored(http, supa, key_of(asset)) is None


async def test_resume_after_a_crash_sends_only_the_rest(seed: Seed, supa: SupabaseStandIn,
                                                        http: httpx.AsyncClient,
                                                        store: SupabaseStore) -> None:
    """Stop after two chunks; a new store (a new process) with the same digest re-reads and
    checks the first 12 MiB, then sends only the remaining bytes."""
    asset, data = await claimed(seed, store), blob(20 * MiB + 123, seed=7)
    key = key_of(asset)
    with pytest.raises(ShortBody):
        await store.put(asset, key, verified(data, crash_after=2 * CHUNK + MiB),
                        size=len(data), digest="sha-r", owner=OWNER)
    row = seed.book(asset.id)
    assert row is not None
    assert (row["upload_offset"], row["upload_digest"]) == (2 * CHUNK, "sha-r")
    assert row["upload_prefix_sha256"] == hashlib.sha256(data[:2 * CHUNK]).hexdigest()
    assert supa.writes == {}
    before = supa.tus_received[f"{BUCKET}/{key}"]
    fresh = await SupabaseStore.connect(http, url=supa.url, key=supa.service_key, bucket=BUCKET)
    await fresh.put(asset, key, verified(data), size=len(data), digest="sha-r", owner=OWNER)
    assert supa.tus_received[f"{BUCKET}/{key}"] - before == len(data) - 2 * CHUNK
    assert supa.counts["tus.create"] == 1 and supa.counts["tus.head"] == 1
    assert [o for _, o, _ in supa.tus_log] == [0, CHUNK, 2 * CHUNK, 3 * CHUNK]
    assert supa.writes[f"{BUCKET}/{key}"] == 1
    assert supa.write_log[-1].sha256 == hashlib.sha256(data).hexdigest()
    assert await stored(http, supa, key) == data


async def test_a_patch_cut_short_resumes_from_the_bytes_the_server_kept(
        seed: Seed, supa: SupabaseStandIn, http: httpx.AsyncClient) -> None:
    """The poller dies mid-PATCH: like the real tus server, the stand-in keeps the part of
    the chunk that arrived, so its offset is past the saved one; the next attempt checks
    the saved prefix and continues from the server's offset, without a new upload."""
    async with make_client(Service.STORE, supa.url, calls=Counter(),
                           transport=CutPatch(nth=2, keep=MiB + 4321)) as cut:
        store = await SupabaseStore.connect(cut, url=supa.url, key=supa.service_key,
                                            bucket=BUCKET)
        asset, data = await claimed(seed, store), blob(20 * MiB + 123, seed=11)
        with pytest.raises(Unreachable):
            await store.put(asset, key_of(asset), verified(data), size=len(data),
                            digest="sha-c", owner=OWNER)
    saved = seed.book(asset.id)
    assert saved is not None and saved["upload_offset"] == CHUNK  # the last accepted chunk
    kept = CHUNK + MiB + 4321  # the whole first chunk and what came of the second
    head = await http.head(saved["upload_url"], headers={
        "Tus-Resumable": "1.0.0", "apikey": supa.service_key,
        "Authorization": f"Bearer {supa.service_key}"})
    assert head.headers.get("Upload-Offset") == str(kept), head  # HEAD waits for the cut PATCH
    assert supa.tus_received[f"{BUCKET}/{key_of(asset)}"] == kept
    assert [(o, n) for _, o, n in supa.tus_log] == [(0, CHUNK), (CHUNK, MiB + 4321)]
    fresh = await SupabaseStore.connect(http, url=supa.url, key=supa.service_key,
                                        bucket=BUCKET)
    await fresh.put(asset, key_of(asset), verified(data), size=len(data), digest="sha-c",
                    owner=OWNER)
    assert supa.counts["tus.create"] == 1
    assert [o for _, o, _ in supa.tus_log][2:] == [kept, kept + CHUNK, kept + 2 * CHUNK]
    assert await stored(http, supa, key_of(asset)) == data


async def test_other_digest_or_expired_upload_starts_afresh(seed: Seed, store: SupabaseStore,
                                                            supa: SupabaseStandIn) -> None:
    asset, data = await claimed(seed, store), blob(13 * MiB, seed=3)
    key = key_of(asset)
    with pytest.raises(ShortBody):
        await store.put(asset, key, verified(data, crash_after=CHUNK), size=len(data),
                        digest="old", owner=OWNER)
    await store.put(asset, key, verified(data), size=len(data), digest="new", owner=OWNER)
    assert supa.counts["tus.create"] == 2
    assert [o for _, o, _ in supa.tus_log][-3:] == [0, CHUNK, 2 * CHUNK]
    with pytest.raises(ShortBody):
        await store.put(asset, key, verified(data, crash_after=CHUNK), size=len(data),
                        digest="again", owner=OWNER)
    supa.uploads.clear()  # the upload URL expired (404 on HEAD)
    await store.put(asset, key, verified(data), size=len(data), digest="again", owner=OWNER)
    assert supa.counts["tus.create"] == 4
    assert len({w.sha256 for w in supa.write_log}) == 1  # never different bytes


async def test_a_lost_lease_stops_the_upload(seed: Seed, store: SupabaseStore,
                                             supa: SupabaseStandIn) -> None:
    asset, data = await claimed(seed, store), blob(13 * MiB)
    seed.expire_lease(asset.id)
    assert await store.claim(asset.id, "poller-b:2", 300)
    with pytest.raises(LeaseLost):
        await store.put(asset, key_of(asset), verified(data), size=len(data), digest="d",
                        owner=OWNER)
    assert supa.writes == {} and supa.tus_received == {}


async def test_a_server_error_mid_upload_is_transient_and_resumable(
        seed: Seed, store: SupabaseStore, supa: SupabaseStandIn) -> None:
    """A 503 on the second chunk defers the row; the next attempt resumes after chunk one."""
    asset, data = await claimed(seed, store), blob(14 * MiB, seed=5)
    key = key_of(asset)

    async def flaky() -> AsyncIterator[bytes]:
        async for piece in verified(data):
            yield piece
            if supa.tus_received[f"{BUCKET}/{key}"] == CHUNK and not supa.faults:
                supa.inject("tus.patch", Fault("status", status=503))

    with pytest.raises(ServerError) as failed:
        await store.put(asset, key, flaky(), size=len(data), digest="d", owner=OWNER)
    assert failed.value.transient
    await store.put(asset, key, verified(data), size=len(data), digest="d", owner=OWNER)
    assert [o for _, o, _ in supa.tus_log] == [0, CHUNK, 2 * CHUNK]
    assert supa.writes[f"{BUCKET}/{key}"] == 1


@pytest.mark.parametrize("key", ["../escape.mp4", "/abs.mp4", "videos//a.mp4",
                                 "videos/./a.mp4", "videos/../../a.mp4", "videos\\a.mp4", ""])
async def test_put_refuses_keys_outside_the_bucket(seed: Seed, store: SupabaseStore,
                                                   supa: SupabaseStandIn, key: str) -> None:
    asset = await claimed(seed, store)
    before = supa.total()
    with pytest.raises(RequestRejected):
        await store.put(asset, key, verified(b"abc"), size=3, digest="d", owner=OWNER)
    assert supa.writes == {} and supa.total() == before  # refused before any request


# -- how often the position is saved, and how far the reading runs ahead ---------------------
# Counts, never times: how many PATCHes and saves, and how many bytes are held in memory.


class Saves:
    """The `save` callback of `tus.upload`: what the row would hold, in order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, int, str]] = []

    async def __call__(self, url: str, offset: int, prefix: str) -> bool:
        self.log.append((url, offset, prefix))
        return True

    @property
    def offsets(self) -> list[int]:
        return [offset for _, offset, _ in self.log]


async def tus_upload(http: httpx.AsyncClient, supa: SupabaseStandIn, chunks: AsyncIterator[bytes],
                     *, size: int, digest: str, saves: Saves, saved: tus.Saved | None = None,
                     name: str = "videos/l1/tus.mp4", **policy: Any) -> None:
    client = tus.TusClient(http, f"{supa.url}/storage/v1", supa.service_key, BUCKET)
    await tus.upload(client, chunks, name=name, size=size, content_type="video/mp4",
                     digest=digest, saved=saved, save=saves, **policy)


def save_rpcs(supa: SupabaseStandIn) -> int:
    return sum(1 for _, path, _ in supa.log
               if path.startswith("/rest/v1/rpc/videopoll_save_upload"))


async def test_a_100_mib_upload_is_17_patches_and_2_saves(seed: Seed, store: SupabaseStore,
                                                          supa: SupabaseStandIn,
                                                          http: httpx.AsyncClient) -> None:
    """One save after create and one when 64 MiB are in (it was 18: one per chunk, then 3
    with one for the end, which the ready mark clears at once); the row holds the last save's
    exact offset and prefix."""
    asset, data = await claimed(seed, store), blob(100 * MiB, seed=21)
    key = key_of(asset)
    await store.put(asset, key, verified(data), size=len(data), digest="sha-100", owner=OWNER)
    assert supa.counts["tus.patch"] == 17 == len(supa.tus_log)
    assert save_rpcs(supa) == 2
    row = seed.book(asset.id)
    assert row is not None and row["upload_offset"] == 11 * CHUNK
    assert row["upload_prefix_sha256"] == hashlib.sha256(data[:11 * CHUNK]).hexdigest()
    assert await stored(http, supa, key) == data


async def test_the_position_is_saved_every_64_mib(supa: SupabaseStandIn,
                                                  http: httpx.AsyncClient) -> None:
    data, saves = blob(100 * MiB, seed=22), Saves()
    await tus_upload(http, supa, verified(data), size=len(data), digest="d", saves=saves,
                     clock=lambda: 0.0)
    assert saves.offsets == [0, 11 * CHUNK]  # 11 chunks: the first at >= 64 MiB
    assert saves.log[1][2] == hashlib.sha256(data[:11 * CHUNK]).hexdigest()


async def test_the_position_is_saved_every_10_seconds_by_the_clock(
        supa: SupabaseStandIn, http: httpx.AsyncClient) -> None:
    """A clock that says 4 s pass per accepted chunk: a save every third chunk."""
    data, saves = blob(8 * CHUNK + 5, seed=23), Saves()
    await tus_upload(http, supa, verified(data), size=len(data), digest="d", saves=saves,
                     clock=lambda: 4.0 * len(supa.tus_log))
    assert saves.offsets == [0, 3 * CHUNK, 6 * CHUNK]


async def test_a_crash_after_a_save_less_stretch_resumes_from_the_servers_offset(
        supa: SupabaseStandIn, http: httpx.AsyncClient) -> None:
    """Killed (cancelled) after 5 chunks with only the URL saved: the next attempt asks the
    server, skips what it holds and sends the rest into the same upload; exact bytes."""
    data, saves = blob(10 * CHUNK + 77, seed=24), Saves()
    stuck = asyncio.Event()

    async def hangs() -> AsyncIterator[bytes]:
        async for piece in verified(data):
            if len(supa.tus_log) >= 5:
                await stuck.wait()  # never set: the poller is "killed" here
            yield piece

    task = asyncio.ensure_future(tus_upload(http, supa, hangs(), size=len(data), digest="d",
                                            saves=saves))
    for _ in range(500):
        if len(supa.tus_log) >= 5:
            break
        await asyncio.sleep(0.01)
    task.cancel()  # a PATCH may be in flight: cut short, the server keeps what came
    with pytest.raises(asyncio.CancelledError):
        await task
    assert saves.offsets == [0]  # nothing saved past the start
    url, _, prefix = saves.log[0]
    held = await tus.TusClient(http, f"{supa.url}/storage/v1", supa.service_key,
                               BUCKET).offset(url)
    assert held is not None and held >= 5 * CHUNK
    before = len(supa.tus_log)
    await tus_upload(http, supa, verified(data), size=len(data), digest="d", saves=saves,
                     saved=tus.Saved(url, "d", 0, prefix))
    assert supa.counts["tus.create"] == 1 and supa.counts["tus.head"] == 2  # ours, and its
    assert supa.tus_log[before][1] == held  # from the server's offset, not from 0
    assert sum(n for _, _, n in supa.tus_log) == len(data)  # every byte once
    assert saves.offsets == [0]  # 10 chunks: 60 MiB, never due
    assert await stored(http, supa, "videos/l1/tus.mp4") == data


class Gated(httpx.AsyncBaseTransport):
    """Holds the first PATCH's answer (its body is sent) until `ready()` (the reading got
    ahead), and notes how many bytes the client held (read from the stream, not yet accepted)
    whenever it asks."""

    def __init__(self, ready: Callable[[], bool]) -> None:
        self.inner, self.ready = httpx.AsyncHTTPTransport(), ready
        self.accepted, self.patches = 0, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "PATCH":
            self.patches += 1
            for _ in range(500):  # at most 5 s: a reader that never gets ahead fails the test
                if self.patches > 1 or self.ready():
                    break
                await asyncio.sleep(0.01)
        if request.method == "PATCH" and response.status_code == 204:
            self.accepted = int(response.headers["Upload-Offset"])
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class HeldSavedRead(httpx.AsyncBaseTransport):
    """Holds the answer to the read of the saved upload until the download has started (at
    most 5 s): a `put` that read it before starting the download would wait out the 5 s."""

    def __init__(self) -> None:
        self.inner, self.download = httpx.AsyncHTTPTransport(), asyncio.Event()
        self.overlapped: bool | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.endswith("/videopoll_assets"):
            try:
                await asyncio.wait_for(self.download.wait(), 5)
                self.overlapped = True
            except TimeoutError:
                self.overlapped = False
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_the_saved_upload_is_read_while_the_download_starts(
        seed: Seed, supa: SupabaseStandIn, http: httpx.AsyncClient) -> None:
    """Both take a round trip or two (the LFS batch and the object's first bytes; the REST
    read) and a large upload needs both, so they go together; every byte still goes once."""
    held = HeldSavedRead()
    data = blob(2 * CHUNK + 3, seed=29)

    async def download() -> AsyncIterator[bytes]:
        held.download.set()
        async for piece in verified(data):
            yield piece

    async with make_client(Service.STORE, supa.url, calls=Counter(), transport=held) as own:
        store = await SupabaseStore.connect(own, url=supa.url, key=supa.service_key,
                                            bucket=BUCKET)
        asset = await claimed(seed, store)
        await store.put(asset, key_of(asset), download(), size=len(data), digest="d",
                        owner=OWNER)
        await store.close()
    assert held.overlapped is True
    assert supa.counts["tus.create"] == 1 and sum(n for _, _, n in supa.tus_log) == len(data)
    assert await stored(http, supa, key_of(asset)) == data


async def test_a_download_failing_while_the_saved_upload_is_read_leaves_nothing_running(
        seed: Seed, store: SupabaseStore, supa: SupabaseStandIn) -> None:
    """The first bytes never come: the upload being planned beside them is abandoned, no
    task is left behind, and nothing was sent."""
    asset = await claimed(seed, store)

    async def broken() -> AsyncIterator[bytes]:
        nothing: tuple[bytes, ...] = ()
        for piece in nothing:  # an async generator that yields nothing, then fails
            yield piece
        raise ShortBody()

    before = set(asyncio.all_tasks())
    with pytest.raises(ShortBody):
        await store.put(asset, key_of(asset), broken(), size=3 * CHUNK, digest="d",
                        owner=OWNER)
    await asyncio.sleep(0.05)
    assert set(asyncio.all_tasks()) - before == set()
    assert supa.tus_log == []


@pytest.mark.parametrize(("fault", "error"), [
    (Fault("status", status=503, times=None), ServerError),  # fails after its retries
    (Fault("status", status=200, body=b'{"not": "rows"}', times=None), ProtocolError),  # lies
])
async def test_a_saved_upload_read_failing_beside_the_download_creates_nothing(
        seed: Seed, store: SupabaseStore, supa: SupabaseStandIn, fault: Fault,
        error: type[Exception]) -> None:
    """The read of the saved position fails (or answers something that is not rows) while
    the download has started: the put fails with that error, no upload is created and no
    task is left behind."""
    asset, data = await claimed(seed, store), blob(2 * CHUNK + 1, seed=31)
    supa.inject("rest.table.get", fault)
    before = set(asyncio.all_tasks())
    with pytest.raises(error):
        await store.put(asset, key_of(asset), verified(data), size=len(data), digest="d",
                        owner=OWNER)
    await asyncio.sleep(0.05)
    assert set(asyncio.all_tasks()) - before == set()
    assert supa.counts["tus.create"] == 0 and supa.tus_log == []


async def test_a_crash_between_the_last_chunk_and_the_ready_mark_sends_nothing_again(
        supa: SupabaseStandIn, http: httpx.AsyncClient) -> None:
    """Nothing is saved after the last chunk. Killed before the ready mark, the next attempt
    resumes from the last save: the server says the upload is complete, the saved prefix of
    the re-read bytes is checked, and not a byte or a new upload goes out."""
    data, saves = blob(70 * MiB, seed=27), Saves()
    await tus_upload(http, supa, verified(data), size=len(data), digest="d", saves=saves,
                     clock=lambda: 0.0)
    assert saves.offsets == [0, 11 * CHUNK]
    url, offset, prefix = saves.log[-1]
    patches = len(supa.tus_log)
    await tus_upload(http, supa, verified(data), size=len(data), digest="d", saves=saves,
                     saved=tus.Saved(url, "d", offset, prefix), clock=lambda: 0.0)
    assert len(supa.tus_log) == patches and supa.counts["tus.create"] == 1
    assert supa.counts["tus.head"] == 1
    assert await stored(http, supa, "videos/l1/tus.mp4") == data
    with pytest.raises(ProtocolError, match="bytes differ"):  # and the prefix is checked
        await tus_upload(http, supa, verified(blob(70 * MiB, seed=28)), size=len(data),
                         digest="d", saves=saves, saved=tus.Saved(url, "d", offset, prefix))


@pytest.mark.parametrize("case", range(6))
async def test_pieces_of_any_size_make_exact_chunks(supa: SupabaseStandIn,
                                                    http: httpx.AsyncClient, case: int) -> None:
    """Whatever sizes the download's pieces come in (a few bytes, across a chunk's end,
    several chunks at once), every PATCH but the last is exactly one chunk, in order, and
    the object is the bytes."""
    rng = random.Random(case)
    data = blob(3 * CHUNK + rng.randrange(1, CHUNK), seed=30 + case)
    sizes = [rng.choice([rng.randrange(1, 5000), rng.randrange(1, CHUNK),
                         rng.randrange(CHUNK, 2 * CHUNK + 2)]) for _ in range(64)]

    async def pieces() -> AsyncIterator[bytes]:
        at, n = 0, 0
        while at < len(data):
            yield data[at:at + sizes[n % len(sizes)]]
            at, n = at + sizes[n % len(sizes)], n + 1

    await tus_upload(http, supa, pieces(), size=len(data), digest="d", saves=Saves())
    log = [(o, n) for _, o, n in supa.tus_log]
    assert log == [(i * CHUNK, min(CHUNK, len(data) - i * CHUNK)) for i in range(len(log))]
    assert sum(n for _, n in log) == len(data)
    assert await stored(http, supa, "videos/l1/tus.mp4") == data


async def test_reading_runs_one_chunk_ahead_and_no_further(supa: SupabaseStandIn) -> None:
    """While a PATCH is in flight the next chunk is read (the download overlaps it), but
    never more: bytes read and not yet accepted stay within two chunks (and one piece)."""
    piece = 256 * 1024
    data, saves = blob(8 * CHUNK + 9, seed=25), Saves()
    pulled, held = 0, []
    gate = Gated(lambda: pulled >= 2 * CHUNK)

    async def counted() -> AsyncIterator[bytes]:
        nonlocal pulled
        async for part in verified(data, piece=piece):
            pulled += len(part)
            held.append(pulled - gate.accepted)
            yield part

    async with make_client(Service.STORE, supa.url, calls=Counter(), transport=gate) as http:
        await tus_upload(http, supa, counted(), size=len(data), digest="d", saves=saves)
    assert max(held) > CHUNK + piece  # the first PATCH waited while a second chunk was read
    assert max(held) <= 2 * CHUNK + piece
    assert sum(n for _, _, n in supa.tus_log) == len(data)


class Watched(httpx.AsyncBaseTransport):
    """Before each PATCH body leaves, gives the event loop turns in which a client that reads
    ahead at once would read, and notes how far the reading had got: (PATCH offset, bytes
    read then)."""

    def __init__(self, pulled: Callable[[], int]) -> None:
        self.inner, self.pulled = httpx.AsyncHTTPTransport(), pulled
        self.seen: list[tuple[int, int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            request.stream = _Held(request.stream, self,  # type: ignore[arg-type]
                                   int(request.headers["Upload-Offset"]))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Held(httpx.AsyncByteStream):
    def __init__(self, body: httpx.AsyncByteStream, watch: Watched, at: int) -> None:
        self.body, self.watch, self.at = body, watch, at

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(50):
            await asyncio.sleep(0)
        self.watch.seen.append((self.at, self.watch.pulled()))
        async for part in self.body:
            yield part


async def test_the_next_chunk_is_read_once_this_chunk_is_sent(supa: SupabaseStandIn) -> None:
    """The read-ahead starts once a PATCH body has gone: run beside it on the one event loop,
    it delayed the PATCH on the upload's critical path. Every byte still goes once."""
    piece = 256 * 1024
    data, saves, pulled = blob(5 * CHUNK + 9, seed=26), Saves(), 0

    async def counted() -> AsyncIterator[bytes]:
        nonlocal pulled
        async for part in verified(data, piece=piece):
            pulled += len(part)
            yield part

    watch = Watched(lambda: pulled)
    async with make_client(Service.STORE, supa.url, calls=Counter(), transport=watch) as http:
        await tus_upload(http, supa, counted(), size=len(data), digest="d", saves=saves)
        assert await stored(http, supa, "videos/l1/tus.mp4") == data
    assert [at for at, _ in watch.seen] == [i * CHUNK for i in range(6)]
    # when a PATCH body leaves, nothing past its chunk (and the piece that completed it)
    assert all(got <= at + CHUNK + piece for at, got in watch.seen), watch.seen
    assert sum(n for _, _, n in supa.tus_log) == len(data)


async def test_the_stand_in_hashes_a_tus_upload_once_as_it_arrives(
        supa: SupabaseStandIn, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last PATCH commits with the hashes fed while the chunks landed: the file is not read
    again (it was: 1 GiB hashed inside one PATCH), and the recorded sha256 is still the
    object's."""
    reads: list[object] = []
    original = storage_io.digest_file

    def digest_file(path: Path) -> tuple[str, str]:
        reads.append(path)
        return original(path)

    monkeypatch.setattr(storage_io, "digest_file", digest_file)
    data = blob(3 * CHUNK + 5, seed=27)
    await tus_upload(http, supa, verified(data), size=len(data), digest="d", saves=Saves())
    assert reads == []
    assert supa.write_log[-1].sha256 == hashlib.sha256(data).hexdigest()
    assert await stored(http, supa, "videos/l1/tus.mp4") == data


def test_a_patch_pays_its_latency_after_its_body(supa: SupabaseStandIn,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in's latency for a PATCH starts when its body is in (as on a network, where
    the body travels while the latency runs), once per request; other requests pay it first."""
    slept: list[tuple[str, int]] = []  # (route, PATCH bytes the stand-in had read by then)
    read = [0]
    original_body = Request._body

    def body(self: Request, piece_size: int) -> Iterator[bytes]:
        for piece in original_body(self, piece_size):
            read[0] += len(piece)
            yield piece

    monkeypatch.setattr(Request, "_body", body)
    # time.sleep is the stand-in's latency (and nothing else this test runs sleeps)
    monkeypatch.setattr(time, "sleep", lambda s: slept.append(("sleep", read[0])))
    monkeypatch.setattr(supa, "latency", 0.01)
    client = httpx.Client(base_url=f"{supa.url}/storage/v1", timeout=30)
    key = {"apikey": supa.service_key, "Authorization": f"Bearer {supa.service_key}",
           "Tus-Resumable": "1.0.0"}
    meta = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in
                    {"bucketName": BUCKET, "objectName": "videos/l1/lat.mp4"}.items())
    created = client.post("/upload/resumable", headers={
        **key, "Upload-Length": str(CHUNK + 3), "Upload-Metadata": meta})
    assert created.status_code == 201 and slept == [("sleep", 0)]
    url = created.headers["Location"]
    patch = {**key, "Content-Type": "application/offset+octet-stream"}
    assert client.patch(url, content=b"x" * CHUNK, headers={
        **patch, "Upload-Offset": "0"}).status_code == 204
    assert slept[1:] == [("sleep", CHUNK)]  # once, after the whole body
    assert client.patch(url, content=b"y" * 3, headers={  # a wrong offset: 409, after latency
        **patch, "Upload-Offset": "1"}).status_code == 409
    assert slept[2:] == [("sleep", CHUNK + 3)]
    client.close()
