"""`SupabaseStore` through the stand-in with the real supabase-py client: the Store contract,
guarded transitions, leases on the server clock, and errors translated at the edge."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from videopoll.errors import AuthError, ConfigError, ProtocolError, ServerError, Unreachable
from videopoll.model import Status
from videopoll.sandbox.server import Fault
from videopoll.sandbox.supabase import SupabaseStandIn
from videopoll.services.http import make_client
from videopoll.services.supabase.store import SupabaseStore

from .conftest import BUCKET, Seed

pytestmark = pytest.mark.postgres
A, B = "poller-a:1", "poller-b:2"


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


async def test_guarded_transitions_refuse_wrong_states_and_owners(seed: Seed,
                                                                  store: SupabaseStore) -> None:
    lesson = seed.lesson()
    starting = (await store.insert_asset(asset_id=str(uuid.uuid4()), lesson_id=lesson,
                                         user_id=None, start_task_id="t",
                                         github_path="videos/a.mp4")).id
    assert not await store.mark_finished(starting)
    assert await store.resolve_start(starting, "c" * 32)
    assert not await store.resolve_start(starting, "d" * 32)
    assert not await store.claim(starting, A, 60)  # generating is not claimable
    assert await store.mark_finished(starting)
    assert (await store.get(starting)).finished_at is not None  # type: ignore[union-attr]
    assert await store.mark_finished(starting)  # a repeated call says what it did
    assert await store.mark_generating(starting)
    assert (await store.get(starting)).finished_at is None  # type: ignore[union-attr]
    assert not await store.mark_generating(starting)
    assert await store.mark_finished(starting)
    assert await store.claim(starting, A, 60)
    assert not await store.claim(starting, B, 60)
    assert not await store.renew(starting, B, 60)
    assert await store.renew(starting, A, 60)
    assert not await store.release(starting, B)
    assert not await store.mark_failed(starting, "not yours", B)
    assert not await store.mark_ready(starting, B, "videos/x.mp4")
    assert await store.release(starting, A)
    assert (await store.get(starting)).status is Status.FINISHED  # type: ignore[union-attr]
    assert await store.claim(starting, B, 60)
    assert await store.mark_ready(starting, B, "videos/x.mp4")
    done = await store.get(starting)
    assert done is not None
    assert (done.status, done.storage_path, done.claimed_by) == (Status.READY, "videos/x.mp4",
                                                                 None)
    assert not await store.mark_failed(starting, "too late")
    assert not await store.mark_ready(starting, B, "videos/x.mp4")  # counted once, by B
    held = seed.asset(status="finished")
    assert await store.claim(held, A, 60)
    assert not await store.mark_failed(held, "boom")  # transferring: only its holder
    assert await store.mark_failed(held, "boom", A)
    assert (await store.get(held)).error == "boom"  # type: ignore[union-attr]


async def test_an_expired_lease_is_claimable_and_its_old_holder_is_out(seed: Seed,
                                                                       store: SupabaseStore
                                                                       ) -> None:
    aid = seed.asset(status="finished")
    assert await store.claim(aid, A, 300)
    assert not await store.claim(aid, B, 300)
    seed.expire_lease(aid)
    assert not await store.renew(aid, A, 300)
    assert await store.claim(aid, B, 300)
    assert not await store.mark_ready(aid, A, "videos/x.mp4")
    assert await store.mark_ready(aid, B, "videos/x.mp4")


async def test_record_error_and_retry(seed: Seed, store: SupabaseStore) -> None:
    aid = seed.asset(status="finished")
    assert await store.record_error(aid, "timeout") == 0
    assert await store.record_error(aid, "bad bytes", mismatch=True) == 1
    row = await store.get(aid)
    assert row is not None
    assert (row.status, row.attempts, row.mismatches, row.error) == (
        Status.FINISHED, 2, 1, "bad bytes")
    assert await store.mark_failed(aid, "gave up")
    only_task = seed.asset(conversation_id=None, status="failed")
    seed.sql("update lesson_assets set start_task_id = 't' where id = %s", [only_task])
    would = await store.retry([aid], dry_run=True)
    assert [(r.id, r.status) for r in would] == [(aid, Status.GENERATING)]
    assert seed.row(aid)["status"] == "failed"
    moved = await store.retry(None)
    assert {(r.id, r.status) for r in moved} == {(aid, Status.GENERATING),
                                                 (only_task, Status.STARTING)}
    again, book = seed.row(aid), seed.book(aid)
    assert again["metadata"]["error_history"][0]["error"] == "gave up"
    assert book is not None
    assert (again["error"], book["mismatches"], book["retried_at"] is not None) == (
        None, 0, True)
    assert await store.retry([]) == []
    ready = seed.asset(storage_path="videos/r.mp4", status="ready")
    assert await store.record_error(ready, "late") == 0


async def test_state(store: SupabaseStore) -> None:
    assert await store.get_state("github") is None
    await store.set_state("github", {"etag": 'W/"1"', "paths": {"a": 1}})
    await store.set_state("github", {"etag": 'W/"2"'})
    assert await store.get_state("github") == {"etag": 'W/"2"'}


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

    async with make_client("store", "http://127.0.0.1:9", calls=Counter()) as http:
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
            async with make_client("store", bare.url, calls=Counter()) as http:
                store = await SupabaseStore.connect(http, url=bare.url, key=bare.service_key,
                                                    bucket=BUCKET)
                with pytest.raises(ConfigError) as unmigrated:
                    await store.claim(str(uuid.uuid4()), A, 60)
                assert "migration" in unmigrated.value.message
                checks = {n: (ok, d) for n, ok, d in await store.check()}
                assert checks["supabase migration"][0] is False
                assert checks["supabase api"][0] is True
                bare.stop()  # the pool's connections must go before the database is dropped
