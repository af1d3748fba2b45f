"""`SupabaseStore` through the stand-in with the real supabase-py client: what is Supabase's
own (the original pending query, uuid and dashed ids, the app's columns, doctor's checks,
errors translated at the edge). The transitions, leases on the server clock, retries and the
state cache are the store contract's (tests/contract), which runs on this store too."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from videopoll.errors import AuthError, ConfigError, ProtocolError, ServerError, Unreachable
from videopoll.model import Service, Status
from videopoll.sandbox.server import Fault
from videopoll.sandbox.supabase import SupabaseStandIn
from videopoll.services.http import make_client
from videopoll.services.supabase.store import SupabaseStore

from .conftest import BUCKET, Seed

pytestmark = pytest.mark.postgres
A = "poller-a:1"


async def test_pending_is_the_original_query_plus_states(seed: Seed, store: SupabaseStore
                                                         ) -> None:
    """Pending rows: video, no storage_path, a pending state, a conversation or a start task;
    oldest first; github_path read from metadata."""
    wanted = [seed.asset(status=s) for s in ("generating", "finished", "transferring")]
    started = await store.insert_asset(asset_id=str(uuid.uuid4()), lesson_id=seed.lesson(),
                                       user_id=None, start_task_id="t1",
                                       github_path="videos/x.mp4")
    seed.asset(status="failed")
    seed.asset(storage_path="videos/done.mp4", status="ready")
    seed.asset(conversation_id=None)  # neither a conversation nor a start task
    seed.asset(kind="image")
    got = await store.pending()
    assert [a.id for a in got] == [*wanted, started.id]
    assert got[0].github_path and got[0].github_path.startswith("videos/")
    assert [a.status for a in got] == [Status.GENERATING, Status.FINISHED,
                                       Status.TRANSFERRING, Status.STARTING]
    assert [a.id for a in await store.pending(limit=2)] == wanted[:2]


async def test_reads(seed: Seed, store: SupabaseStore) -> None:
    user = str(uuid.uuid4())
    lesson = seed.lesson("Photosynthesis", user_id=user)
    cid = uuid.uuid4().hex
    aid = seed.asset(lesson, conversation_id=cid)
    assert (await store.lesson(lesson)) is not None
    assert (await store.lesson(lesson)).title == "Photosynthesis"  # type: ignore[union-attr]
    assert await store.lesson("not-a-uuid") is None
    assert await store.lesson(str(uuid.uuid4())) is None
    assert (await store.get(aid)).conversation_id == cid  # type: ignore[union-attr]
    assert await store.get("nope") is None
    dashed = seed.asset(conversation_id=str(uuid.UUID(hex=cid)))  # another lesson's row
    assert {a.id for a in await store.by_conversation(cid)} == {aid, dashed}
    assert (await store.open_video(lesson)).id == aid  # type: ignore[union-attr]
    assert await store.mark_failed(aid, "make room: one open video per lesson")
    made = await store.insert_asset(asset_id=str(uuid.uuid4()), lesson_id=lesson,
                                    user_id=user, start_task_id="task-1",
                                    github_path=f"videos/{lesson}/v.mp4")
    row = seed.row(made.id)
    assert (made.status, row["kind"], row["mime_type"], row["start_task_id"]) == (
        Status.STARTING, "video", "video/mp4", "task-1")
    assert row["metadata"] == {"github_path": f"videos/{lesson}/v.mp4"}


async def test_check_reports_every_part(seed: Seed, store: SupabaseStore,
                                        supa: SupabaseStandIn, http: httpx.AsyncClient) -> None:
    checks = {name: (ok, detail) for name, ok, detail in await store.check()}
    assert all(ok for ok, _ in checks.values()), checks
    assert checks["supabase migration"] == (True, "complete")
    assert "private" in checks["supabase bucket"][1]
    other = await SupabaseStore.connect(http, url=supa.url, key=supa.service_key,
                                        bucket="videos-nope")
    missing = {name: ok for name, ok, _ in await other.check()}
    assert missing["supabase bucket"] is False
    assert await other.create_bucket() is True
    assert await other.create_bucket() is False
    assert seed.sql("select public from storage.buckets where id = 'videos-nope'") == [(False,)]
    anon = await SupabaseStore.connect(http, url=supa.url, key=supa.anon_key, bucket=BUCKET)
    assert [ok for _, ok, _ in await anon.check()] == [False]
    seed.sql("alter table lesson_assets replica identity default")
    try:
        partial = {n: d for n, _, d in await store.check()}["supabase migration"]
        assert "replica identity full" in partial
    finally:
        seed.sql("alter table lesson_assets replica identity full")
    seed.sql("grant select on videopoll_assets to authenticated")  # an app's blanket grant
    try:
        exposed = {n: (ok, d) for n, ok, d in await store.check()}["supabase migration"]
        assert exposed[0] is False and "videopoll_assets private to service_role" in exposed[1]
    finally:
        seed.sql("revoke select on videopoll_assets from authenticated")


async def test_errors_are_translated_without_secrets(seed: Seed, supa: SupabaseStandIn,
                                                     http: httpx.AsyncClient) -> None:
    forged = supa.make_key("service_role", secret="s" * 40)
    bad = await SupabaseStore.connect(http, url=supa.url, key=forged, bucket=BUCKET)
    with pytest.raises(AuthError) as refused:
        await bad.pending()
    assert refused.value.service == "store" and forged not in str(refused.value)
    anon = await SupabaseStore.connect(http, url=supa.url, key=supa.anon_key, bucket=BUCKET)
    with pytest.raises(AuthError):
        await anon.claim(seed.asset(status="finished"), A, 60)
    with pytest.raises(AuthError):
        await bad.check()
    expired = supa.make_key("service_role", expires_in=-1)
    late = await SupabaseStore.connect(http, url=supa.url, key=expired, bucket=BUCKET)
    with pytest.raises(AuthError):
        await late.mark_finished(str(uuid.uuid4()))
    store = await SupabaseStore.connect(http, url=supa.url, key=supa.service_key, bucket=BUCKET)
    supa.inject("rest.rpc", Fault("status", status=503))
    with pytest.raises(ServerError) as failed:
        await store.claim(str(uuid.uuid4()), A, 60)
    assert failed.value.transient
    supa.inject("rest.rpc", Fault("html"))  # a proxy's 200 page must not read as "claimed"
    with pytest.raises(ProtocolError):
        await store.claim(seed.asset(status="finished"), A, 60)


async def test_unreachable_and_unmigrated(pg_admin: str, tmp_path: Any) -> None:
    from videopoll.sandbox.pg import bootstrap_supabase, fresh_database

    async with make_client(Service.STORE, "http://127.0.0.1:9", calls=Counter()) as http:
        nowhere = await SupabaseStore.connect(http, url="http://127.0.0.1:9", key="k.e.y",
                                              bucket=BUCKET)
        with pytest.raises(Unreachable) as down:
            await nowhere.pending()
        assert down.value.transient
        [(name, ok, detail)] = await nowhere.check()
        assert (name, ok) == ("supabase api", False) and "127.0.0.1:9" in detail
    with fresh_database("videopoll_bare", dsn=pg_admin) as dsn:
        bootstrap_supabase(dsn)
        with SupabaseStandIn(dsn, tmp_path / "bare") as bare:
            async with make_client(Service.STORE, bare.url, calls=Counter()) as http:
                store = await SupabaseStore.connect(http, url=bare.url, key=bare.service_key,
                                                    bucket=BUCKET)
                with pytest.raises(ConfigError) as unmigrated:
                    await store.claim(str(uuid.uuid4()), A, 60)
                assert "migration" in unmigrated.value.message
                checks = {n: (ok, d) for n, ok, d in await store.check()}
                assert checks["supabase migration"][0] is False
                assert checks["supabase api"][0] is True
                bare.stop()  # the pool's connections must go before the database is dropped
