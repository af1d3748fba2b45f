"""Transfers on fakes: verification outcomes, claims, and the write that fails after upload."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

from videopoll.errors import ServerError, ShortBody
from videopoll.model import Action, ArtifactRef, Status
from videopoll.testing import fake_mp4

from .conftest import MP4, World


async def test_corrupt_bytes_are_retried_then_failed_after_max_attempts(world: World) -> None:
    row = world.video(Status.FINISHED, file=MP4)
    world.artifacts.corrupt(row.github_path or "")
    for attempt in (1, 2):
        summary = await world.poll()
        assert summary.items[0].action is Action.DEFERRED
        assert world.row(row.id).status is Status.FINISHED  # released for the next pass
        assert world.row(row.id).attempts == attempt
    summary = await world.poll()
    assert summary.failed == 1
    assert "do not match" in (world.row(row.id).error or "")
    assert world.store.objects == {}


async def test_one_bad_download_then_a_good_one_is_stored(world: World) -> None:
    row = world.video(Status.FINISHED, file=MP4)
    world.artifacts.corrupt(row.github_path or "", times=1)
    assert (await world.poll()).processed == 0
    assert (await world.poll()).processed == 1
    assert world.store.objects[f"videos/{row.lesson_id}/{row.id}.mp4"] == MP4


async def test_truncated_downloads_never_fail_a_good_video(world: World) -> None:
    row = world.video(Status.FINISHED, file=MP4)
    world.artifacts.break_after(row.github_path or "", 50_000, ShortBody("connection reset"))
    for _ in range(6):
        summary = await world.poll()
        assert summary.failed == 0 and summary.items[0].action is Action.DEFERRED
    assert world.row(row.id).attempts == 6 and world.store.objects == {}
    world.artifacts.reset()
    world.artifacts.add(row.github_path or "", MP4)
    assert (await world.poll()).processed == 1


async def test_an_html_page_is_never_stored(world: World) -> None:
    row = world.video(Status.FINISHED, file=MP4)
    world.artifacts.serve_html(row.github_path or "", times=1)
    summary = await world.poll()
    assert summary.items[0].action is Action.DEFERRED
    assert summary.items[0].detail.startswith("got an HTML page instead of the video")
    assert world.store.objects == {}


async def test_oversized_files_fail_from_the_listing_without_a_download(world: World) -> None:
    row = world.video(Status.FINISHED, file=fake_mp4(20_000))
    summary = await world.poller(max_bytes=10_000).poll_once()
    assert summary.failed == 1 and world.artifacts.count("open") == 0
    assert "VIDEOPOLL_MAX_BYTES" in (world.row(row.id).error or "")


async def test_a_non_mp4_file_fails_permanently(world: World) -> None:
    row = world.video(Status.FINISHED, file=b"GIF89a" + bytes(4000))
    summary = await world.poll()
    assert summary.failed == 1 and "not an MP4" in (world.row(row.id).error or "")


async def test_a_row_claimed_by_another_poller_is_skipped_and_counted_once(world: World
                                                                          ) -> None:
    row = world.video(Status.FINISHED, file=MP4)
    await world.store.mark_finished(row.id)
    assert await world.store.claim(row.id, "other-poller", 300)
    summary = await world.poll()
    assert summary.items[0].action is Action.SKIPPED
    assert (summary.processed, summary.still_generating) == (0, 1)
    assert world.artifacts.count("open") == 0
    world.clock.advance(301)  # the other poller crashed: its lease runs out
    assert (await world.poll()).processed == 1


async def test_a_live_claim_of_another_poller_says_who_holds_it_and_until_when(
        world: World) -> None:
    """The skip note names the holder and when its lease runs out, so a claim a killed
    process left behind is told apart from a transfer in progress, and its end is known."""
    row = world.video(Status.FINISHED, file=MP4)
    await world.store.mark_finished(row.id)
    world.clock.advance(1.5)  # 2026-01-01 00:00:01.5: the note shows whole seconds
    assert await world.store.claim(row.id, "host-a:4242:abc123", 300)
    world.clock.advance(60)  # a minute into that lease: it still ends when it did
    detail = (await world.poll()).items[0].detail
    assert detail == ("claimed by host-a:4242:abc123 until 00:05:01 UTC (if that poller is "
                      "gone, the row is taken over then)")
    world.clock.advance(240)  # 00:05:01.5: it is gone
    assert (await world.poll()).processed == 1


async def test_upload_succeeds_but_the_row_update_fails(world: World) -> None:
    """The dangerous one: the object is there, the row is not ready. Next pass finishes it
    with the same bytes under the same key; the video is neither lost nor failed."""
    row = world.video(Status.FINISHED, file=MP4)
    world.store.fail_next("mark_ready", ServerError("store: HTTP 503", service="store"))
    first = await world.poll()
    assert first.items[0].action is Action.DEFERRED and first.failed == 0
    key = f"videos/{row.lesson_id}/{row.id}.mp4"
    assert world.store.objects[key] == MP4
    second = await world.poll()
    assert second.processed == 1 and world.row(row.id).status is Status.READY
    assert world.store.objects[key] == MP4 and world.store.writes[key] == 2


async def test_concurrent_transfers_overlap_up_to_the_limit(world: World) -> None:
    for i in range(6):
        world.video(Status.FINISHED, file=fake_mp4(300_000, seed=i))
    world.artifacts.chunk_size = 10_000
    original = world.artifacts.open
    streaming: set[str] = set()
    overlap: list[int] = []

    async def counted(ref: ArtifactRef) -> AsyncIterator[bytes]:
        streaming.add(ref.path)
        try:
            async for piece in original(ref):
                overlap.append(len(streaming))
                await asyncio.sleep(0)  # let the other transfers run between pieces
                yield piece
        finally:
            streaming.discard(ref.path)

    world.artifacts.open = counted  # type: ignore[method-assign]
    summary = await world.poller(concurrency=3).poll_once()
    assert summary.processed == 6
    # Serial transfers would never exceed 1, unlimited ones would reach 6.
    assert max(overlap) == 3


async def test_claims_expire_and_the_old_holder_cannot_finish(world: World) -> None:
    row = world.video(Status.FINISHED)
    await world.store.mark_finished(row.id)
    assert await world.store.claim(row.id, "slow", 300)
    world.clock.advance(301)
    assert await world.store.claim(row.id, "fresh", 300)
    assert not await world.store.mark_ready(row.id, "slow", "videos/x.mp4")
    assert world.row(row.id).claimed_until == world.clock.now() + timedelta(seconds=300)


async def test_a_long_transfer_renews_its_lease(world: World) -> None:
    """A download slower than a third of the lease renews the claim while it streams."""
    import asyncio

    row = world.video(Status.FINISHED, file=MP4)
    original = world.artifacts.open

    async def slow(ref: ArtifactRef) -> AsyncIterator[bytes]:
        async for piece in original(ref):
            await asyncio.sleep(0.02)
            yield piece

    world.artifacts.open = slow  # type: ignore[method-assign]
    world.artifacts.chunk_size = 20_000  # 10 pieces, 0.2 s in all
    summary = await world.poller(lease=0.15).poll_once()
    assert summary.processed == 1 and world.row(row.id).status is Status.READY
    assert world.store.count("renew") >= 2
