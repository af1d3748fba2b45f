"""The Store contract (DESIGN sections 4, 6.1 and ports.Store), run on every implementation.

Each test gets `harness`/`store` once per implementation (see conftest.py); time moves
only through `harness.advance`, never by sleeping.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from videopoll.errors import ConfigError, ContentMismatch, RequestRejected, ShortBody
from videopoll.model import PENDING, Status, VideoAsset
from videopoll.ports import Store
from videopoll.services.local.store import LocalStore
from videopoll.states import EVENT_VALUE, TRANSITIONS, Change, Event, Guard, Transition
from videopoll.testing import FakeClock, StoreHarness

OWNER, OTHER = "poller-a:1", "poller-b:2"
LEASE = 60.0
USER = "5b0c3a52-6f1e-4a8e-9d57-3c2f1a9e7b10"  # Supabase user ids are uuids


async def make_row(h: StoreHarness, status: Status, *, lesson_id: str | None = None) -> str:
    """A video row brought to `status` through the Store API only (app insert first)."""
    store = h.store
    lesson = lesson_id or h.add_lesson("Fractions").id
    if status is Status.STARTING:
        asset = await store.insert_asset(
            asset_id=str(uuid.uuid4()), lesson_id=lesson, user_id=None,
            conversation_id=uuid.uuid4().hex, start_task_id=uuid.uuid4().hex,
            github_path=f"videos/{lesson}/v.mp4")
        return asset.id
    aid = h.add_asset(lesson, conversation_id=uuid.uuid4().hex,
                      github_path=f"videos/{lesson}/v.mp4")
    if status is Status.FAILED:
        assert await store.mark_failed(aid, "boom")
    if status in (Status.GENERATING, Status.FAILED):
        return aid
    assert await store.mark_finished(aid)
    if status is not Status.FINISHED:
        assert await store.claim(aid, OWNER, LEASE)
    if status is Status.READY:
        assert await store.mark_ready(aid, OWNER, f"videos/{lesson}/{aid}.mp4")
    return aid


async def row(store: Store, asset_id: str) -> VideoAsset:
    found = await store.get(asset_id)
    assert found is not None
    return found


async def chunks(data: bytes, *, piece: int = 1000, fail_at: int | None = None
                 ) -> AsyncIterator[bytes]:
    """What `transfer` hands to `put`; with `fail_at`, the stream raises there instead."""
    for start in range(0, len(data), piece):
        if fail_at is not None and start >= fail_at:
            raise ShortBody()
        yield data[start:start + piece]


# -- seeding and reads ---------------------------------------------------------------------


async def test_app_inserted_row_defaults_to_generating(harness: StoreHarness, store: Store,
                                                        clock: FakeClock) -> None:
    """A row with only the app's columns reads as generating, with zeroed counters."""
    lesson = harness.add_lesson("Photosynthesis", user_id=USER)
    aid = harness.add_asset(lesson.id, conversation_id="c" * 32, github_path="videos/a.mp4",
                            user_id=USER)
    got = await row(store, aid)
    assert (got.status, got.conversation_id, got.github_path) == (
        Status.GENERATING, "c" * 32, "videos/a.mp4")
    assert (got.attempts, got.mismatches, got.error, got.storage_path) == (0, 0, None, None)
    assert got.created_at == got.updated_at == clock.now()
    assert got.lesson_id == lesson.id and got.user_id == USER
    assert await store.lesson(lesson.id) == lesson
    assert await store.lesson(str(uuid.uuid4())) is None


async def test_get_ignores_unknown_and_non_video_rows(harness: StoreHarness,
                                                      store: Store) -> None:
    lesson = harness.add_lesson("L")
    image = harness.add_asset(lesson.id, kind="image", conversation_id="c" * 32)
    assert await store.get(image) is None
    assert await store.get(str(uuid.uuid4())) is None
    assert await store.by_conversation("c" * 32) == []


async def test_insert_asset_creates_a_starting_row(harness: StoreHarness, store: Store,
                                                   clock: FakeClock) -> None:
    lesson = harness.add_lesson("L", user_id=USER)
    aid = str(uuid.uuid4())
    made = await store.insert_asset(asset_id=aid, lesson_id=lesson.id, user_id=USER,
                                    start_task_id="t" * 32, github_path="videos/x/y.mp4")
    assert made == await store.get(aid)
    assert (made.status, made.start_task_id, made.conversation_id, made.user_id) == (
        Status.STARTING, "t" * 32, None, USER)
    assert made.github_path == "videos/x/y.mp4" and made.created_at == clock.now()
    assert harness.metadata(aid) == {"github_path": "videos/x/y.mp4"}


async def test_insert_asset_refuses_unknown_lesson_and_duplicate_id(harness: StoreHarness,
                                                                    store: Store) -> None:
    lesson = harness.add_lesson("L").id

    async def insert(asset_id: str, lesson_id: str) -> VideoAsset:
        return await store.insert_asset(asset_id=asset_id, lesson_id=lesson_id, user_id=None,
                                        start_task_id="t", github_path="videos/a.mp4")

    with pytest.raises(RequestRejected):
        await insert(str(uuid.uuid4()), str(uuid.uuid4()))
    aid = str(uuid.uuid4())
    await insert(aid, lesson)
    with pytest.raises(RequestRejected):
        await insert(aid, lesson)


async def test_by_conversation_and_open_video(harness: StoreHarness, store: Store) -> None:
    lesson = harness.add_lesson("L").id
    await make_row(harness, Status.READY, lesson_id=lesson)
    await make_row(harness, Status.FAILED, lesson_id=lesson)
    assert await store.open_video(lesson) is None
    other = await make_row(harness, Status.GENERATING)  # another lesson's row
    harness.advance(1)
    open_ = await make_row(harness, Status.TRANSFERRING, lesson_id=lesson)
    found = await store.open_video(lesson)
    assert found is not None and found.id == open_ != other
    conversation = (await row(store, open_)).conversation_id
    assert conversation is not None
    harness.advance(1)
    twin = harness.add_asset(harness.add_lesson("M").id, conversation_id=conversation)
    assert [a.id for a in await store.by_conversation(conversation)] == [open_, twin]


async def test_pending_filters_and_orders_oldest_first(harness: StoreHarness,
                                                       store: Store) -> None:
    expected = []
    for status in (Status.TRANSFERRING, Status.STARTING, Status.READY, Status.FINISHED,
                   Status.FAILED, Status.GENERATING):
        aid = await make_row(harness, status)  # each in a lesson of its own
        if status in PENDING:
            expected.append(aid)
        harness.advance(1)
    # Rows the pending query must skip even though their status is a pending one.
    harness.add_asset(harness.add_lesson("I").id, kind="image", conversation_id="c" * 32)
    harness.add_asset(harness.add_lesson("D").id, conversation_id="d" * 32,
                      storage_path="videos/done.mp4")
    harness.add_asset(harness.add_lesson("O").id,
                      github_path="videos/orphan.mp4")  # no conversation, no task
    assert [a.id for a in await store.pending()] == expected
    assert [a.id for a in await store.pending(limit=2)] == expected[:2]
    assert await store.pending(limit=0) == []


# -- transitions ---------------------------------------------------------------------------

# Which guards hold, by the situation of the row's claim as the caller (OWNER) sees it: stated
# here independently of the stores, so the table is checked, not copied.
HOLDS = {
    "unclaimed": {Guard.NONE, Guard.EXPIRED},
    "mine-live": {Guard.NONE, Guard.HOLDER, Guard.LIVE},
    "mine-expired": {Guard.NONE, Guard.HOLDER, Guard.EXPIRED},
    "other-live": {Guard.NONE},
    "other-expired": {Guard.NONE, Guard.EXPIRED},
}
CLAIMS = [s for s in HOLDS if s != "unclaimed"]


def expected(event: Event, status: Status, situation: str, same: bool) -> Transition | None:
    holds = HOLDS[situation] | ({Guard.SAME} if same else set())
    return next((t for t in TRANSITIONS if (t.event, t.source) == (event, status)
                 and t.guard in holds), None)


def cases() -> list[tuple[Event, Status, str, bool]]:
    """Every event against every state, in every claim situation of a transferring row, with
    the value the row already holds and with another (for the lines that compare them)."""
    found = []
    for event in Event:
        for status in Status:
            for situation in CLAIMS if status is Status.TRANSFERRING else ["unclaimed"]:
                valued = event in EVENT_VALUE and any(
                    t.guard is Guard.SAME and (t.event, t.source) == (event, status)
                    for t in TRANSITIONS)
                # An event that writes no value is always "the same" when repeated.
                found += [(event, status, situation, same) for same in
                          ([True, False] if valued else [event not in EVENT_VALUE])]
    return found


async def row_in(h: StoreHarness, status: Status, situation: str) -> VideoAsset:
    aid = await make_row(h, status)
    if situation.startswith("other"):  # the claim is someone else's
        h.advance(LEASE + 1)
        assert await h.store.claim(aid, OTHER, LEASE)
    if situation.endswith("expired"):
        h.advance(LEASE + 1)
    h.advance(1)
    return await row(h.store, aid)


@pytest.mark.parametrize(("event", "status", "situation", "same"), cases(),
                         ids=lambda v: str(v) if not isinstance(v, bool) else
                         ("same" if v else "new"))
async def test_transitions_follow_the_table(harness: StoreHarness, store: Store, event: Event,
                                            status: Status, situation: str, same: bool
                                            ) -> None:
    """model.TRANSITIONS, line by line, on every store: a change is applied exactly when a
    line allows it (moving the row to its target, with the event's effects), and a refusal
    changes nothing at all."""
    before = await row_in(harness, status, situation)
    current = {Event.START: before.start_task_id, Event.RESOLVE: before.conversation_id,
               Event.READY: before.storage_path, Event.FAIL: before.error}.get(event)
    fresh = {Event.START: "e" * 32, Event.RESOLVE: "f" * 32,
             Event.READY: f"videos/{before.lesson_id}/{before.id}.mp4",
             Event.FAIL: "a new reason"}.get(event)
    if event is Event.READY and not same:
        fresh = "videos/elsewhere.mp4"
    change = Change(before.id, event, owner=OWNER, lease_s=LEASE,
                    value=current if same else fresh)
    line = expected(event, status, situation, same)
    assert await store.apply([change]) == [line is not None]
    after = await row(store, before.id)
    now = harness.clock.now()
    if line is None or line.guard is Guard.SAME:
        assert after == before
        return
    assert after.status is line.target
    touched = before.updated_at if event is Event.RENEW else now  # bookkeeping only
    assert after.updated_at == touched
    if event in (Event.CLAIM, Event.RENEW):
        assert (after.claimed_by, after.claimed_until) == (OWNER, now + timedelta(seconds=LEASE))
    if event in (Event.RELEASE, Event.READY, Event.FAIL):
        assert (after.claimed_by, after.claimed_until) == (None, None)
    if event in EVENT_VALUE and change.value is not None:
        assert getattr(after, EVENT_VALUE[event]) == change.value
    if event is Event.FINISH:
        assert after.finished_at == now
    if event is Event.REOPEN:
        assert after.finished_at is None


def test_every_line_of_the_table_is_reached() -> None:
    """The generated cases exercise every transition (a line no case reaches is untested)."""
    reached = {expected(*case) for case in cases()}
    assert set(TRANSITIONS) <= reached


async def test_a_batch_applies_each_change_on_its_own(harness: StoreHarness,
                                                      store: Store) -> None:
    """One call, many rows: each change is judged by its own row; refusals do not hold the
    others back; results come in the order given."""
    finished = await make_row(harness, Status.FINISHED)
    failed = await make_row(harness, Status.FAILED)
    generating = await make_row(harness, Status.GENERATING)
    got = await store.apply([Change(generating, Event.FINISH),
                             Change(failed, Event.CLAIM, owner=OWNER, lease_s=LEASE),
                             Change(finished, Event.CLAIM, owner=OWNER, lease_s=LEASE),
                             Change(str(uuid.uuid4()), Event.FAIL, value="nobody")])
    assert got == [True, False, True, False]
    assert (await row(store, finished)).status is Status.TRANSFERRING
    assert (await row(store, generating)).status is Status.FINISHED
    assert await store.apply([]) == []


async def test_a_killed_pollers_row_can_be_failed_or_released_by_anyone(
        harness: StoreHarness, store: Store) -> None:
    """Liveness: once the lease of a claim nobody renews has run out, any poller may fail
    the row (the agent failed, the file never came) or hand it back, so it never stays
    transferring forever."""
    stuck = await make_row(harness, Status.TRANSFERRING)  # OWNER was killed mid-transfer
    assert not await store.mark_failed(stuck, "agent failed")  # the lease is still live
    harness.advance(LEASE + 1)
    assert await store.mark_failed(stuck, "agent failed")
    assert (await row(store, stuck)).status is Status.FAILED
    back = await make_row(harness, Status.TRANSFERRING)
    harness.advance(LEASE + 1)
    assert await store.release(back, OTHER)
    assert (await row(store, back)).status is Status.FINISHED


async def test_finished_at_is_stamped_and_cleared(harness: StoreHarness, store: Store,
                                                  clock: FakeClock) -> None:
    aid = await make_row(harness, Status.GENERATING)
    assert await store.mark_finished(aid)
    assert (await row(store, aid)).finished_at == clock.now()
    assert await store.mark_generating(aid)
    assert (await row(store, aid)).finished_at is None


async def test_claim_holds_a_lease_on_the_store_clock(harness: StoreHarness, store: Store,
                                                      clock: FakeClock) -> None:
    aid = await make_row(harness, Status.FINISHED)
    assert await store.claim(aid, OWNER, LEASE)
    got = await row(store, aid)
    assert (got.status, got.claimed_by) == (Status.TRANSFERRING, OWNER)
    assert got.claimed_until == clock.now() + timedelta(seconds=LEASE)
    harness.advance(LEASE - 1)
    assert not await store.claim(aid, OTHER, LEASE)  # live lease: nobody else
    assert await store.claim(aid, OWNER, LEASE)  # its holder again: a repeated call
    assert (await row(store, aid)).claimed_until == clock.now() + timedelta(seconds=LEASE)
    harness.advance(1)
    assert await store.renew(aid, OWNER, LEASE)
    assert (await row(store, aid)).claimed_until == clock.now() + timedelta(seconds=LEASE)


async def test_expired_lease_passes_to_a_new_owner(harness: StoreHarness, store: Store) -> None:
    """After expiry another poller claims; the old holder can no longer touch the row."""
    aid = await make_row(harness, Status.TRANSFERRING)
    harness.advance(LEASE)  # the lease ends exactly now
    assert await store.claim(aid, OTHER, LEASE)
    assert not await store.mark_ready(aid, OWNER, "videos/v.mp4")
    assert not await store.renew(aid, OWNER, LEASE)
    assert not await store.release(aid, OWNER)
    assert not await store.mark_failed(aid, "stale", OWNER)
    assert (await row(store, aid)).claimed_by == OTHER
    assert await store.mark_ready(aid, OTHER, "videos/v.mp4")
    done = await row(store, aid)
    assert (done.status, done.storage_path, done.claimed_by, done.claimed_until) == (
        Status.READY, "videos/v.mp4", None, None)


async def test_expired_lease_refuses_ready_and_renew_even_unclaimed(harness: StoreHarness,
                                                                    store: Store) -> None:
    aid = await make_row(harness, Status.TRANSFERRING)
    harness.advance(LEASE + 1)
    assert not await store.mark_ready(aid, OWNER, "videos/v.mp4")
    assert not await store.renew(aid, OWNER, LEASE)
    assert await store.release(aid, OWNER)  # handing back is harmless: nobody took it
    back = await row(store, aid)
    assert (back.status, back.claimed_by, back.claimed_until) == (Status.FINISHED, None, None)
    assert back.finished_at is not None  # the grace period keeps counting


async def test_only_the_holder_fails_or_releases_a_transferring_row(harness: StoreHarness,
                                                                    store: Store) -> None:
    aid = await make_row(harness, Status.TRANSFERRING)
    assert not await store.mark_failed(aid, "bad bytes")  # no owner: transferring is held
    assert not await store.mark_failed(aid, "bad bytes", OTHER)
    assert not await store.release(aid, OTHER)
    assert await store.mark_failed(aid, "bad bytes", OWNER)
    failed = await row(store, aid)
    assert (failed.status, failed.error, failed.claimed_by) == (Status.FAILED, "bad bytes", None)


async def test_racing_claims_have_one_winner(harness: StoreHarness, store: Store) -> None:
    aid = await make_row(harness, Status.FINISHED)
    won = await asyncio.gather(*(store.claim(aid, f"w{i}", LEASE) for i in range(10)))
    assert won.count(True) == 1


async def test_record_error_counts_without_moving(harness: StoreHarness, store: Store) -> None:
    aid = await make_row(harness, Status.FINISHED)
    assert await store.record_error(aid, "github 502") == 0
    assert await store.record_error(aid, "hash mismatch", mismatch=True) == 1
    assert await store.record_error(aid, "hash mismatch", mismatch=True) == 2
    got = await row(store, aid)
    assert (got.status, got.error, got.attempts, got.mismatches) == (
        Status.FINISHED, "hash mismatch", 3, 2)
    assert await store.record_error(str(uuid.uuid4()), "nobody") == 0


async def test_retry_keeps_history_and_restarts_the_clock(harness: StoreHarness, store: Store,
                                                          clock: FakeClock) -> None:
    aid = await make_row(harness, Status.FINISHED)
    await store.record_error(aid, "mismatch", mismatch=True)
    assert await store.mark_failed(aid, "conversation finished but video not in GitHub")
    harness.advance(30)
    [again] = await store.retry([aid])
    assert again == await store.get(aid)
    assert (again.status, again.error, again.mismatches, again.attempts) == (
        Status.GENERATING, None, 0, 1)
    assert (again.retried_at, again.finished_at, again.claimed_by) == (clock.now(), None, None)
    assert again.age_from == clock.now()
    first_at = clock.now()
    assert await store.mark_failed(aid, "conversation not found")
    harness.advance(5)
    await store.retry(None)
    meta = harness.metadata(aid)
    assert meta["github_path"] == again.github_path
    assert [(datetime.fromisoformat(h["at"]), h["error"]) for h in meta["error_history"]] == [
        (first_at, "conversation finished but video not in GitHub"),
        (clock.now(), "conversation not found")]


async def test_retry_returns_start_only_rows_to_starting(harness: StoreHarness,
                                                         store: Store) -> None:
    """A row of an earlier version's `generate` (a start task, no conversation id)."""
    lesson = harness.add_lesson("L").id
    aid = (await store.insert_asset(asset_id=str(uuid.uuid4()), lesson_id=lesson, user_id=None,
                                    start_task_id="t" * 32, github_path="videos/a.mp4")).id
    assert await store.mark_failed(aid, "sandbox failed")
    assert [a.status for a in await store.retry([aid])] == [Status.STARTING]


async def test_retry_chooses_failed_rows_only(harness: StoreHarness, store: Store) -> None:
    failed = [await make_row(harness, Status.FAILED) for _ in range(3)]
    live = await make_row(harness, Status.GENERATING)
    assert await store.retry([]) == []
    assert [a.id for a in await store.retry([failed[0], live])] == [failed[0]]
    assert (await row(store, live)).status is Status.GENERATING
    assert sorted(a.id for a in await store.retry(None)) == sorted(failed[1:])


async def test_retry_dry_run_changes_nothing(harness: StoreHarness, store: Store,
                                             clock: FakeClock) -> None:
    aid = await make_row(harness, Status.FAILED)
    before = await row(store, aid)
    [would] = await store.retry(None, dry_run=True)
    assert (would.id, would.status, would.retried_at) == (aid, Status.GENERATING, clock.now())
    assert await store.get(aid) == before
    assert "error_history" not in harness.metadata(aid)


async def test_retry_restart_starts_over_under_a_new_conversation(harness: StoreHarness,
                                                                  store: Store) -> None:
    """An agent failure's redrive: starting, the new conversation id, no start task; the old
    conversation is kept in the history. Rows not named in `restart` come back as before."""
    aid, other = [await make_row(harness, Status.FAILED) for _ in range(2)]
    old = (await row(store, aid)).conversation_id
    new = uuid.uuid4().hex
    would = {a.id: a for a in await store.retry([aid, other], dry_run=True,
                                                restart={aid: new})}[aid]
    assert (would.status, would.conversation_id, would.start_task_id) == (
        Status.STARTING, new, None)
    assert (await row(store, aid)).conversation_id == old  # a dry run writes nothing
    back = {a.id: a for a in await store.retry([aid, other], restart={aid: new})}
    assert (back[aid].status, back[aid].conversation_id, back[aid].start_task_id) == (
        Status.STARTING, new, None)
    assert back[aid] == await store.get(aid)
    assert back[other].status is Status.GENERATING
    assert [(h["error"], h["conversation_id"])
            for h in harness.metadata(aid)["error_history"]] == [("boom", old)]
    assert await store.record_start(aid, "task-1")  # then generate's path: the start task


async def test_videos_lists_by_status_newest_first(harness: StoreHarness, store: Store) -> None:
    made = []
    for status in (Status.FAILED, Status.READY, Status.GENERATING, Status.FAILED):
        made.append(await make_row(harness, status))
        harness.advance(1)
    harness.add_asset(harness.add_lesson("I").id, kind="image", conversation_id="c" * 32)
    assert [a.id for a in await store.videos()] == made[::-1]
    assert [a.id for a in await store.videos([Status.FAILED])] == [made[3], made[0]]
    assert [a.id for a in await store.videos([Status.FAILED], limit=1)] == [made[3]]
    assert [a.id for a in await store.videos([Status.READY, Status.GENERATING])] == [
        made[2], made[1]]
    assert await store.videos([Status.TRANSFERRING]) == []


async def test_by_prefix_finds_asset_lesson_and_conversation_ids(harness: StoreHarness,
                                                                 store: Store) -> None:
    lesson = harness.add_lesson("P").id
    dashed = "0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d"
    aid = harness.add_asset(lesson, conversation_id=dashed, asset_id=f"abcdef01-{'0' * 4}-4000-"
                            f"8000-{'0' * 12}", github_path=f"videos/{lesson}/v.mp4")
    harness.advance(1)
    twin = harness.add_asset(harness.add_lesson("Q").id, conversation_id="f" * 32,
                             asset_id="abcdef02-0000-4000-8000-000000000000")
    assert [a.id for a in await store.by_prefix("abcdef")] == [twin, aid]  # newest first
    assert [a.id for a in await store.by_prefix("abcdef01")] == [aid]
    assert [a.id for a in await store.by_prefix("abcdef010000")] == [aid]  # past a dash
    assert [a.id for a in await store.by_prefix(lesson.replace("-", "")[:10])] == [aid]
    assert [a.id for a in await store.by_prefix("0a1b2c3d4e5f")] == [aid]  # dashes ignored
    assert [a.id for a in await store.by_prefix("0a1b2c3d4e5f4a6b8c7d8e9f0a1b2c3d")] == [aid]
    assert [a.id for a in await store.by_prefix("abcdef", limit=1)] == [twin]
    assert await store.by_prefix("0123abcd") == []
    assert await store.by_prefix("%") == [] and await store.by_prefix("ab_d") == []


# -- state, objects, doctor ----------------------------------------------------------------


async def test_state_round_trip(store: Store) -> None:
    assert await store.get_state("github") is None
    value = {"etag": 'W/"abc"', "files": {"videos/a.mp4": {"sha": "1" * 40, "size": 3}}}
    await store.set_state("github", value)
    got = await store.get_state("github")
    assert got == value
    assert got is not None
    got["etag"] = "changed"  # a copy: the caller cannot edit the store by accident
    assert await store.get_state("github") == value
    await store.set_state("github", {"etag": None})
    assert await store.get_state("github") == {"etag": None}


async def test_put_stores_and_upserts(harness: StoreHarness, store: Store) -> None:
    asset = await row(store, await make_row(harness, Status.TRANSFERRING))
    first, second = b"\x00" * 2500, b"\x01" * 1700
    await store.put(asset, "videos/l/a.mp4", chunks(first), size=len(first), digest="d1",
                    owner=OWNER)
    await store.put(asset, "videos/l/a.mp4", chunks(second), size=len(second), digest="d2",
                    owner=OTHER)
    assert harness.objects() == {"videos/l/a.mp4": second}  # no temp file left either


async def test_put_leaves_nothing_when_the_stream_raises(harness: StoreHarness,
                                                         store: Store) -> None:
    asset = await row(store, await make_row(harness, Status.TRANSFERRING))
    data = b"x" * 5000
    with pytest.raises(ShortBody):
        await store.put(asset, "videos/l/a.mp4", chunks(data, fail_at=3000), size=len(data),
                        digest="d", owner=OWNER)
    assert harness.objects() == {}
    await store.put(asset, "videos/l/a.mp4", chunks(data), size=len(data), digest="d",
                    owner=OWNER)
    with pytest.raises(ShortBody):  # a failed re-upload keeps the previous object
        await store.put(asset, "videos/l/a.mp4", chunks(b"y" * 5000, fail_at=1000),
                        size=5000, digest="d", owner=OTHER)
    assert harness.objects() == {"videos/l/a.mp4": data}


async def test_put_refuses_a_body_of_the_wrong_size(harness: StoreHarness,
                                                    store: Store) -> None:
    asset = await row(store, await make_row(harness, Status.TRANSFERRING))
    with pytest.raises(ContentMismatch):
        await store.put(asset, "videos/a.mp4", chunks(b"abc"), size=4, digest="d",
                        owner=OWNER)
    assert harness.objects() == {}


@pytest.mark.parametrize("key", ["../escape.mp4", "/abs.mp4", "videos//a.mp4",
                                 "videos/./a.mp4", "videos/../../a.mp4", "videos\\a.mp4", ""])
async def test_put_refuses_keys_outside_the_bucket(harness: StoreHarness, store: Store,
                                                   key: str) -> None:
    asset = await row(store, await make_row(harness, Status.TRANSFERRING))
    with pytest.raises(RequestRejected):
        await store.put(asset, key, chunks(b"abc"), size=3, digest="d", owner=OWNER)
    assert harness.objects() == {}


async def test_check_and_ensure_bucket_report_healthy(store: Store) -> None:
    for checks in (await store.check(), await store.ensure_bucket(), await store.check()):
        assert checks and all(ok for _, ok, _ in checks), checks


# -- LocalStore only -----------------------------------------------------------------------


async def test_local_store_persists_across_reopen(tmp_path: Path, clock: FakeClock) -> None:
    store = LocalStore(tmp_path, clock=clock.now)
    lesson = store.add_lesson("L")
    aid = store.add_asset(lesson.id, conversation_id="c" * 32)
    assert await store.mark_finished(aid) and await store.claim(aid, OWNER, LEASE)
    asset = await row(store, aid)
    await store.put(asset, "videos/a.mp4", chunks(b"abc"), size=3, digest="d", owner=OWNER)
    assert store.writes == {"videos/a.mp4": 1}
    await store.close()
    again = LocalStore(tmp_path, clock=clock.now)
    try:
        assert await again.get(aid) == asset
        assert again.object_path("videos/a.mp4").read_bytes() == b"abc"
        assert again.object_path("videos/a.mp4") == tmp_path / "storage/lesson-assets/videos/a.mp4"
    finally:
        await again.close()


async def test_local_put_needs_the_bucket_folder(tmp_path: Path) -> None:
    """A missing bucket is a configuration error, never created by an upload."""
    store = LocalStore(tmp_path)
    try:
        aid = store.add_asset(store.add_lesson("L").id, conversation_id="c" * 32)
        asset = await row(store, aid)
        store.bucket_dir.rmdir()
        with pytest.raises(ConfigError):
            await store.put(asset, "videos/a.mp4", chunks(b"abc"), size=3, digest="d",
                            owner=OWNER)
        assert not store.bucket_dir.exists()
        [(_, ok, detail)] = await store.ensure_bucket()
        assert ok and detail.endswith("created") and store.bucket_dir.is_dir()
        await store.put(asset, "videos/a.mp4", chunks(b"abc"), size=3, digest="d", owner=OWNER)
        assert store.object_path("videos/a.mp4").read_bytes() == b"abc"
    finally:
        await store.close()


async def test_local_check_notices_a_missing_table(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    try:
        sqlite3.connect(store.db_path).execute("drop table videopoll_state").connection.close()
        checks = {name: (ok, detail) for name, ok, detail in await store.check()}
        assert checks["local schema"] == (False, "missing: videopoll_state")
        assert checks["local database"][0] and checks["local storage"][0]
    finally:
        await store.close()


def _claim_in_process(home: str, owner: str, ids: list[str], start_at: float) -> list[str]:
    """One `videopoll poll` stand-in: its own process, connection and (real) clock."""

    async def run() -> list[str]:
        store = LocalStore(Path(home))
        try:
            return [aid for aid in ids if await store.claim(aid, owner, 300)]
        finally:
            await store.close()

    time.sleep(max(0.0, start_at - time.time()))  # start together, to collide
    return asyncio.run(run())


def test_local_claims_are_exclusive_across_processes(tmp_path: Path) -> None:
    """4 processes race for 100 finished rows on one file: each row is claimed once."""

    async def seed() -> list[str]:
        store = LocalStore(tmp_path)
        try:
            ids = [store.add_asset(store.add_lesson(f"race {n}").id,
                                   conversation_id=uuid.uuid4().hex) for n in range(100)]
            for aid in ids:
                assert await store.mark_finished(aid)
            return ids
        finally:
            await store.close()

    ids = asyncio.run(seed())
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        start_at = time.time() + 1.0
        jobs = [(str(tmp_path), f"worker-{n}", random.Random(n).sample(ids, len(ids)), start_at)
                for n in range(4)]
        results = pool.starmap(_claim_in_process, jobs)
    claimed = [aid for got in results for aid in got]
    assert sorted(claimed) == sorted(ids)

    async def holders() -> dict[str, str | None]:
        store = LocalStore(tmp_path)
        try:
            return {aid: (await row(store, aid)).claimed_by for aid in ids}
        finally:
            await store.close()

    held = asyncio.run(holders())
    assert held == {aid: f"worker-{n}" for n, got in enumerate(results) for aid in got}


async def test_a_lesson_has_one_open_video_at_a_time(harness: StoreHarness,
                                                     store: Store) -> None:
    """The store refuses a second open video of a lesson (409), whoever inserts it; once the
    first is failed or ready, a new one may start. `retry` brings back one failed video per
    lesson, the newest, and none while another is open."""
    lesson = harness.add_lesson("L").id

    async def insert() -> str:
        return (await store.insert_asset(asset_id=str(uuid.uuid4()), lesson_id=lesson,
                                         user_id=None, conversation_id=uuid.uuid4().hex,
                                         github_path=f"videos/{lesson}/v.mp4")).id

    first = await insert()
    with pytest.raises(RequestRejected) as refused:
        await insert()
    assert refused.value.status == 409
    with pytest.raises(RequestRejected):
        harness.add_asset(lesson, conversation_id="c" * 32)  # the app's insert too
    assert await store.mark_failed(first, "boom")
    harness.advance(1)
    second = await insert()
    assert await store.mark_failed(second, "boom again")
    assert [a.id for a in await store.retry(None)] == [second]  # the newest only
    assert await store.retry([first]) == []  # its lesson has an open video again
