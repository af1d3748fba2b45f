"""What OpenHands says, read the way the real server says it: one conversation's lookup that
fails touches only that row; the execution status is found in whichever state event carries
it, however many other updates came after; batches stay under the servers' limits."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

from videopoll.sandbox.openhands_events import new_event
from videopoll.sandbox.server import Fault

from .conftest import Stack


def stats_events(stack: Stack, cid: str, n: int) -> None:
    """What the SDK emits after every LLM call: a state update of another field."""
    for i in range(n):
        stack.sandbox.openhands.add_event(cid, new_event(
            "ConversationStateUpdateEvent", key="stats", value={"llm_calls": i}))


def test_a_failed_events_lookup_defers_only_its_row(stack: Stack, video: bytes) -> None:
    """Events search answering 500 for one conversation (its sandbox is gone, on some
    versions) leaves that row waiting; the others are decided in the same pass."""
    broken, broken_cid, _ = stack.video("MISSING", None)
    fine, _, _ = stack.video("PAUSED", "finished", commit=video)
    failed, _, _ = stack.video("ERROR", None)
    stack.sandbox.openhands.inject("events", Fault("status", status=500, match=broken_cid,
                                                   times=None))
    result = stack.cli("poll", "--json")
    assert result.code == 1  # the error is reported
    items = {i["asset_id"]: i for i in result.json["items"]}
    assert items[broken]["action"] == "deferred"
    assert stack.seed.row(broken)["status"] == "generating"
    assert stack.seed.row(fine)["status"] == "ready"
    assert stack.seed.row(failed)["status"] == "failed"


def test_the_status_is_found_behind_many_other_state_updates(stack: Stack,
                                                             video: bytes) -> None:
    """A gone sandbox whose agent finished: the finish is an `execution_status` update
    followed by 150 `stats` updates; reading only the newest 20 would call it lost."""
    asset, cid, _ = stack.video("RUNNING", "finished", commit=video)
    stats_events(stack, cid, 150)
    stack.sandbox.openhands.set_state(cid, "MISSING")
    result = stack.cli("poll", "--json")
    assert result.code == 0, result.out + result.err
    assert stack.seed.row(asset)["status"] == "ready"


def test_a_full_state_snapshot_carries_the_status_too(stack: Stack, video: bytes) -> None:
    """The SDK's `full_state` snapshots hold the execution status as well; the newest state
    event that says it wins, whichever key it uses."""
    asset, cid, _ = stack.video("RUNNING", "running", commit=video)
    stats_events(stack, cid, 30)
    stack.sandbox.openhands.add_event(cid, new_event(
        "ConversationStateUpdateEvent", key="full_state",
        value={"id": cid, "execution_status": "finished", "stats": {}}))
    stats_events(stack, cid, 30)
    stack.sandbox.openhands.set_state(cid, "PAUSED")
    assert stack.cli("poll", "--json").code == 0
    assert stack.seed.row(asset)["status"] == "ready"


def test_start_tasks_are_asked_for_at_most_99_at_a_time(stack: Stack) -> None:
    """Some OpenHands versions refuse 100 ids in one start-tasks request (`< 100`)."""
    openhands = stack.sandbox.openhands
    for _ in range(150):
        task = openhands.add_start_task("WORKING")
        asset = stack.seed.video(stack.seed.lesson(), uuid.uuid4().hex)
        set_starting(stack, asset, task)
    assert stack.cli("poll", "--json").code == 0
    sizes = [len(parse_qs(urlsplit(path).query)["ids"]) for method, path, _ in openhands.log
             if "/start-tasks?" in path]
    assert sizes and max(sizes) <= 99 and sum(sizes) == 150


def set_starting(stack: Stack, asset: str, task: str) -> None:
    """Make a row look as `generate` leaves it: starting, a start task, no conversation."""
    if stack.seed.kind == "local":
        stack.seed.store._write(  # type: ignore[union-attr]
            "update lesson_assets set status = 'starting', start_task_id = ?, "
            "conversation_id = null where id = ?", (task, asset))
    else:
        stack.seed.sql(  # type: ignore[union-attr]
            "update lesson_assets set status = 'starting', start_task_id = %s, "
            "conversation_id = null where id = %s", [task, asset])


def test_a_pointer_pushed_without_its_lfs_object_fails_after_max_attempts(
        stack: Stack, video: bytes) -> None:
    """git-lfs pushed the pointer but never the object: the batch answer's per-object 404 is
    counted like a bad download, and after VIDEOPOLL_MAX_ATTEMPTS the video fails with the
    reason instead of being deferred forever."""
    asset, _, path = stack.video("RUNNING", "finished", commit=video, lfs=True)
    github = stack.sandbox.github
    repo = github.repos[stack.sandbox.repo]
    repo.lfs.clear()  # the object never arrived
    env = {"VIDEOPOLL_MAX_ATTEMPTS": "2"}
    first = stack.cli("poll", "--json", env=env)
    assert first.json["items"][0]["action"] == "deferred"
    assert stack.seed.row(asset)["status"] == "finished"
    second = stack.cli("poll", "--json", env=env)
    assert second.json["items"][0]["action"] == "failed"
    row = stack.seed.row(asset)
    assert row["status"] == "failed"
    assert "Object does not exist" in row["error"] and "(2 attempts)" in row["error"]
