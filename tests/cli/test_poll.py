"""`videopoll poll` end to end: real HTTP to the stand-ins, a real store."""

from __future__ import annotations

import math

from .conftest import Stack

SUMMARY_KEYS = {"checked", "stillGenerating", "found", "processed", "failed", "unchecked",
                "timestamp", "errors", "durationMs", "calls", "items"}
ITEM_KEYS = {"asset_id", "lesson_id", "conversation_id", "state", "action", "detail"}


def test_nothing_pending(stack: Stack) -> None:
    result = stack.cli("poll", "--json")
    assert result.code == 0, result.err
    summary = result.json
    assert set(summary) == SUMMARY_KEYS
    assert summary["checked"] == 0 and summary["items"] == [] and summary["errors"] == []
    assert summary["timestamp"].endswith("Z")
    assert stack.sandbox.openhands.total() == 0 and stack.sandbox.github.total() == 0


def test_a_finished_video_is_stored(stack: Stack, video: bytes) -> None:
    asset, cid, path = stack.video("RUNNING", "finished", commit=video)
    result = stack.cli("poll", "--json")
    assert result.code == 0, result.err
    summary = result.json
    assert (summary["checked"], summary["found"], summary["processed"]) == (1, 1, 1)
    item = summary["items"][0]
    assert set(item) == ITEM_KEYS
    assert (item["asset_id"], item["conversation_id"], item["state"], item["action"]) == (
        asset, cid, "ready", "stored")
    row = stack.seed.row(asset)
    assert row["status"] == "ready" and row["storage_path"] == stack.key(asset)
    assert stack.seed.object(stack.key(asset)) == video
    # Found by path: the contents answer carries the 47 kB clip inline, so finding and
    # reading it cost one request (no listing, no blob download).
    assert stack.sandbox.github.counts == {"contents": 1}
    assert summary["calls"]["openhands"] == 1 and summary["calls"]["github"] == 1


def test_a_video_over_1_mb_costs_its_contents_answer_and_a_blob_download(
        stack: Stack, large_video: bytes) -> None:
    asset, _, _ = stack.video("RUNNING", "finished", commit=large_video)
    summary = stack.cli("poll", "--json").json
    assert summary["processed"] == 1
    assert stack.seed.object(stack.key(asset)) == large_video
    assert stack.sandbox.github.counts == {"contents": 1, "blobs": 1}
    assert summary["calls"]["github"] == 2


def test_three_finished_videos_are_found_by_one_listing(stack: Stack, video: bytes) -> None:
    """Over BY_PATH_MAX files a pass lists the tree once instead of asking for each."""
    assets = [stack.video("RUNNING", "finished", commit=video)[0] for _ in range(3)]
    assert stack.cli("poll", "--json").json["processed"] == 3
    assert all(stack.seed.object(stack.key(a)) == video for a in assets)
    assert stack.sandbox.github.counts == {"trees": 1, "blobs": 3}


def test_git_lfs_videos_come_from_the_lfs_host_without_our_token(stack: Stack,
                                                                  video: bytes) -> None:
    asset, _, _ = stack.video("RUNNING", "finished", commit=video, lfs=True)
    result = stack.cli("poll", "--json")
    assert result.json["processed"] == 1, result.out
    assert stack.seed.object(stack.key(asset)) == video
    objects = stack.sandbox.github.objects
    assert objects.counts["lfs_object"] == 1
    sent = [h for _, _, h in objects.log]
    assert all(stack.sandbox.github_token not in str(h) for h in sent)


def test_300_running_conversations_cost_4_state_requests_and_no_github(stack: Stack) -> None:
    for _ in range(300):
        stack.video("RUNNING", "running")
    result = stack.cli("poll", "--json")
    assert result.code == 0, result.err
    summary = result.json
    assert (summary["checked"], summary["stillGenerating"]) == (300, 300)
    assert stack.sandbox.openhands.counts["conversations"] <= math.ceil(300 / 99)
    assert stack.sandbox.openhands.total() == 4
    assert stack.sandbox.github.total() == 0
    store_calls = 1 if stack.seed.kind == "supabase" else 0  # the pending query, over REST
    assert summary["calls"] == {"openhands": 4, "github": 0, "store": store_calls}


def test_a_file_not_pushed_yet_costs_a_404_and_the_listing(stack: Stack, video: bytes) -> None:
    """The 404 by path cannot tell "not pushed yet" from "a repository we cannot see"; the
    listing can (a free 304 from the second pass on)."""
    asset, _, path = stack.video("RUNNING", "finished")  # finished, but no file yet
    github = stack.sandbox.github
    for n in range(2):
        summary = stack.cli("poll", "--json").json
        assert summary["stillGenerating"] == 1 and summary["calls"]["github"] == 2
        assert github.counts == {"contents": 1, "trees": 1}
        assert github.not_modified == ({"trees": 1} if n else {})  # new, then a 304
        github.reset_counts()
        github.not_modified.clear()
    github.put_file(stack.sandbox.repo, path, video)
    assert stack.cli("poll", "--json").json["processed"] == 1
    assert stack.seed.object(stack.key(asset)) == video
    assert github.counts == {"contents": 1}


def test_an_unchanged_repository_costs_one_304_on_the_next_run(stack: Stack) -> None:
    for _ in range(3):  # over BY_PATH_MAX: the listing; finished, but no file there yet
        stack.video("RUNNING", "finished")
    first = stack.cli("poll", "--json").json
    assert first["stillGenerating"] == 3
    github = stack.sandbox.github
    assert github.counts == {"trees": 1} and not github.not_modified
    github.reset_counts()
    second = stack.cli("poll", "--json").json  # a new Runtime: ETag comes from the store
    assert second["stillGenerating"] == 3
    assert github.counts == {"trees": 1} and github.not_modified == {"trees": 1}
    assert second["calls"]["github"] == 1


def test_a_commit_after_the_304_is_picked_up(stack: Stack, video: bytes) -> None:
    rows = [stack.video("RUNNING", "finished") for _ in range(3)]  # listed, not by path
    asset, _, path = rows[0]
    stack.cli("poll")
    stack.cli("poll")  # answered 304
    github = stack.sandbox.github
    github.put_file(stack.sandbox.repo, path, video)
    github.reset_counts()
    github.not_modified.clear()
    assert stack.cli("poll", "--json").json["processed"] == 1
    assert stack.seed.row(asset)["status"] == "ready"
    # The moved branch costs the same one listing request, answered 200, then the download.
    assert github.counts == {"trees": 1, "blobs": 1} and not github.not_modified


def test_failed_conversation_is_failed_with_its_reason_and_exit_0(stack: Stack) -> None:
    asset, cid, _ = stack.video("RUNNING", "error")
    stack.sandbox.openhands.add_error_event(cid, "LLMError", "quota exceeded for model")
    result = stack.cli("poll", "--json")
    assert result.code == 0
    assert result.json["failed"] == 1
    assert stack.seed.row(asset)["error"] == "quota exceeded for model"
    assert stack.cli("poll", "--strict").code == 0  # nothing failed in this pass
    stack.video("RUNNING", "stuck")
    assert stack.cli("poll", "--strict").code == 1


def test_human_output_has_the_table_and_the_closing_lines(stack: Stack, video: bytes) -> None:
    stack.video("RUNNING", "finished", commit=video)
    stack.video("RUNNING", "running")
    result = stack.cli("poll")
    assert result.code == 0
    assert "still generating" in result.out and "processed" in result.out
    assert "✅ 1 video(s) ready!" in result.out
    assert "⏳ 1 video(s) still generating…" in result.out
    assert "\x1b[" not in result.out  # not a terminal: no colour codes


def test_dry_run_changes_nothing(stack: Stack, video: bytes) -> None:
    asset, _, _ = stack.video("RUNNING", "finished", commit=video)
    result = stack.cli("poll", "--dry-run", "--json")
    assert result.json["dryRun"] is True and result.json["processed"] == 1
    assert stack.seed.row(asset)["status"] == "generating"
    assert stack.seed.object(stack.key(asset)) is None


def test_limit_takes_the_oldest(stack: Stack) -> None:
    first, _, _ = stack.video()
    stack.video()
    result = stack.cli("poll", "--limit", "1", "--json").json
    assert [i["asset_id"] for i in result["items"]] == [first]


def test_redirected_downloads_never_carry_our_token_to_the_other_host(
        stack: Stack, large_video: bytes) -> None:
    video = large_video  # over 1 MB: downloaded by blob, which is what redirects
    asset, _, _ = stack.video("RUNNING", "finished", commit=video)
    stack.sandbox.github.redirect = 302
    assert stack.cli("poll", "--json").json["processed"] == 1
    assert stack.seed.object(stack.key(asset)) == video
    objects = stack.sandbox.github.objects
    assert objects.counts["redirected"] == 1
    assert objects.authorizations("redirected") == [None]


def test_error_reasons_are_rationed_per_pass(stack: Stack) -> None:
    """Each agent error could cost an events request; a pass spends at most four (OpenHands
    Cloud allows 10 requests a second), the rest keep a generic reason."""
    rows = []
    for n in range(6):
        asset, cid, _ = stack.video("RUNNING", "error")
        stack.sandbox.openhands.add_error_event(cid, "AgentError", f"render {n} crashed")
        rows.append(asset)
    summary = stack.cli("poll", "--json").json
    assert summary["failed"] == 6
    assert stack.sandbox.openhands.counts["events"] == 4
    reasons = sorted(stack.seed.row(a)["error"] for a in rows)
    assert sum(r.startswith("render") for r in reasons) == 4
    assert reasons.count("agent error") == 2


def test_a_repository_the_token_cannot_see_is_an_error_not_a_missing_file(stack: Stack
                                                                          ) -> None:
    """One finished row, asked for by path: GitHub answers 404 for a repository the token
    cannot see exactly as for a file not pushed yet. The pass must not take it for a file
    not pushed yet (and fail the video once the grace has passed) but say what is wrong."""
    asset, _, _ = stack.video("RUNNING", "finished")
    env = {"VIDEOPOLL_GITHUB_REPO": "someone/else", "VIDEOPOLL_ARTIFACT_GRACE": "0"}
    result = stack.cli("poll", "--json", env=env)
    assert result.code == 1
    errors = [e["detail"] for e in result.json["errors"]]
    assert errors == ["github: someone/else@main not found (or the token cannot see it)"]
    assert (result.json["failed"], stack.seed.row(asset)["status"]) == (0, "finished")

