"""The store is under the one retry policy too: supabase-py's PostgREST and Storage calls and
the TUS client go through the same transport as OpenHands and GitHub (real HTTP, real
PostgreSQL, faults injected in the stand-in)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest

from videopoll.errors import RequestRejected, ServerError
from videopoll.model import Service
from videopoll.sandbox.server import Fault
from videopoll.sandbox.supabase import SupabaseStandIn
from videopoll.services.http import make_client
from videopoll.services.supabase.store import SupabaseStore, repeatable

from .conftest import BUCKET, Seed

pytestmark = pytest.mark.postgres
OWNER = "poller-a:1"


async def store_for(supa: SupabaseStandIn, calls: Counter[str]
                    ) -> tuple[httpx.AsyncClient, SupabaseStore]:
    client = make_client(Service.STORE, supa.url, calls=calls, repeatable=repeatable)
    return client, await SupabaseStore.connect(client, url=supa.url, key=supa.service_key,
                                               bucket=BUCKET)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 520])
async def test_a_guarded_rpc_is_retried_through_a_gateway_error(
        seed: Seed, supa: SupabaseStandIn, status: int) -> None:
    """One 5xx (Cloudflare's 520 included) on a claim is absorbed by a retry, not a pass."""
    asset = seed.asset(status="finished")
    calls: Counter[str] = Counter()
    client, store = await store_for(supa, calls)
    async with client:
        supa.inject("rest.rpc", Fault("status", status=status, times=1))
        assert await store.claim(asset, OWNER, 300)
    assert calls["store"] == 2
    assert seed.row(asset)["status"] == "transferring"


async def test_a_stale_pooled_connection_is_retried(seed: Seed, supa: SupabaseStandIn) -> None:
    """A connection the server closed without answering (a stale keep-alive) is tried again."""
    seed.asset(status="generating")
    calls: Counter[str] = Counter()
    client, store = await store_for(supa, calls)
    async with client:
        supa.inject("rest.rpc", Fault("reset", times=1))  # pending is videopoll_pending
        assert len(await store.pending()) == 1
    assert calls["store"] == 2


async def test_the_standard_upload_is_retried_with_its_whole_body(
        seed: Seed, supa: SupabaseStandIn) -> None:
    """storage3's multipart upload (an upsert to a fixed key) is sent again, whole."""
    asset = seed.asset(status="finished")
    calls: Counter[str] = Counter()
    client, store = await store_for(supa, calls)
    data = random.Random(3).randbytes(100_000)

    async def body() -> AsyncIterator[bytes]:
        yield data

    async with client:
        assert await store.claim(asset, OWNER, 300)
        row = await store.get(asset)
        assert row is not None
        supa.inject("storage.object.upload", Fault("status", status=502, times=1))
        await store.put(row, f"videos/{row.lesson_id}/{asset}.mp4", body(), size=len(data),
                        digest="d", owner=OWNER)
    assert supa.writes[f"{BUCKET}/videos/{row.lesson_id}/{asset}.mp4"] == 1
    assert supa.counts["storage.object.upload"] == 2


async def test_an_insert_is_not_sent_twice_after_it_may_have_arrived(
        seed: Seed, supa: SupabaseStandIn) -> None:
    """A 503 to an insert is not retried (it may have been written): the caller decides."""
    lesson = seed.lesson()
    calls: Counter[str] = Counter()
    client, store = await store_for(supa, calls)
    async with client:
        supa.inject("rest.table.post", Fault("status", status=503, times=1))
        with pytest.raises(ServerError):
            await store.insert_asset(asset_id="0b6c0a57-7c39-4e3a-9d38-0a1e2d3c4b5a",
                                     lesson_id=lesson, user_id=None, start_task_id="t",
                                     github_path=f"videos/{lesson}/a.mp4")
    assert calls["store"] == 1


async def test_client_errors_are_never_retried(seed: Seed, supa: SupabaseStandIn) -> None:
    """A 4xx (here PostgREST's 400 for a bad filter) is the request's fault: one try."""
    calls: Counter[str] = Counter()
    client, store = await store_for(supa, calls)
    async with client:
        supa.inject("rest.rpc", Fault("status", status=400, times=None, body=(
            b'{"code":"P0001","message":"nope","details":null,"hint":null}')))
        with pytest.raises(RequestRejected):
            await store.claim("0b6c0a57-7c39-4e3a-9d38-0a1e2d3c4b5a", OWNER, 300)
    assert calls["store"] == 1


@pytest.mark.parametrize(("method", "path", "headers", "expected"), [
    ("GET", "/rest/v1/lesson_assets", {}, True),
    ("POST", "/rest/v1/rpc/videopoll_apply", {}, True),
    ("POST", "/rest/v1/rpc/some_app_function", {}, False),
    ("POST", "/rest/v1/lesson_assets", {}, False),
    ("POST", "/rest/v1/videopoll_state", {"Prefer": "resolution=merge-duplicates"}, True),
    ("POST", "/storage/v1/object/b/k.mp4", {"x-upsert": "true"}, True),
    ("POST", "/storage/v1/object/b/k.mp4", {}, False),
    ("POST", "/storage/v1/upload/resumable", {"x-upsert": "true"}, False),
    ("PATCH", "/storage/v1/upload/resumable/abc", {}, False),
    ("DELETE", "/storage/v1/upload/resumable/abc", {}, True),
])
def test_which_store_requests_are_repeatable(method: str, path: str, headers: dict[str, str],
                                             expected: bool) -> None:
    """The store's declaration: reads, guarded functions and upserts; never inserts, TUS
    creates or PATCHes (those are sent again only when they never arrived)."""
    request = httpx.Request(method, f"https://p.supabase.co{path}", headers=headers)
    assert repeatable(request) is expected
