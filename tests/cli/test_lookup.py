"""Asking by the ids users see (issue 16, items 9 and 10): `status` by an asset id or a
prefix of any id the tables show, `pending --failed`/`--all` with the reasons, and
`watch --strict` failing a run in which a video failed."""

from __future__ import annotations

import uuid

from .conftest import Stack


def test_status_by_the_8_characters_the_tables_show(stack: Stack, video: bytes) -> None:
    asset, cid, path = stack.video("RUNNING", "finished", commit=video)
    lesson = stack.seed.row(asset)["lesson_id"]
    for given in (asset[:8], asset, asset.upper(), cid[:8], lesson[:8], cid):
        result = stack.cli("status", given, "--json")
        assert result.code == 0, (given, result.err)
        report = result.json
        assert report["conversation_id"] == cid, given
        assert [a["id"] for a in report["assets"]] == [asset]
        assert report["artifact"]["path"] == path
    human = stack.cli("status", asset[:8])
    assert human.code == 0 and f"conversation {cid}" in human.out and asset in human.out


def test_a_prefix_of_two_videos_is_refused_with_the_candidates(stack: Stack) -> None:
    lesson = stack.seed.lesson()
    first = stack.seed.video(lesson, uuid.uuid4().hex, asset_id=f"abcd1234-0000-4000-8000-{1:012d}")
    stack.cli("poll")  # fails the first: its conversation is unknown (after the grace)
    other = stack.seed.lesson()
    second = stack.seed.video(other, uuid.uuid4().hex,
                              asset_id=f"abcd1234-0000-4000-8000-{2:012d}")
    result = stack.cli("status", "abcd1234")
    assert result.code == 2
    assert "abcd1234 is ambiguous; it starts the ids of:" in result.err
    assert f"asset {first}" in result.err and f"asset {second}" in result.err
    assert "hint: give more characters of the id" in result.err
    assert stack.cli("status", "abcd1234-0000-4000-8000-0000000000").code == 2  # still both
    one = stack.cli("status", "abcd1234-0000-4000-8000-000000000002", "--json")
    assert one.code == 0 and [a["id"] for a in one.json["assets"]] == [second]


def test_status_of_unknown_short_and_malformed_ids(stack: Stack) -> None:
    unknown = stack.cli("status", "0123abcd")
    assert unknown.code == 1
    assert "no video's asset, lesson or conversation id starts with 0123abcd" in unknown.err
    for bad in ("abc", "../../etc/passwd", "ghijklmn", "f" * 33):
        result = stack.cli("status", bad)
        assert result.code == 2 and "not an id" in result.err, bad
    assert stack.sandbox.openhands.total() == 0


def test_pending_failed_lists_failures_with_their_reasons(stack: Stack, video: bytes) -> None:
    generating, _, _ = stack.video()
    agent, _, _ = stack.video("ERROR", None)
    transfer, _, _ = stack.video("RUNNING", "finished", commit=video)
    stack.cli("poll", env={"VIDEOPOLL_MAX_BYTES": "100"})
    listed = stack.cli("pending", "--failed", "--json", env={"OPENHANDS_API_KEY": None,
                                                              "GITHUB_TOKEN": None})
    assert listed.code == 0, listed.err
    rows = {r["id"]: r for r in listed.json}
    assert list(rows) == [transfer, agent]  # newest first
    assert (rows[agent]["error"], rows[agent]["cause"]) == ("agent sandbox failed", "agent")
    assert rows[transfer]["cause"] == "transfer"
    assert rows[transfer]["error"].startswith("artifact is")
    human = stack.cli("pending", "--failed")
    assert human.code == 0 and "2 failed video(s)" in human.out
    assert "agent sandbox failed" in human.out
    assert f"{agent[:8]} " in human.out and agent not in human.out  # as `status` takes it
    assert "agent → new conversation" in human.out
    assert "transfer → transfer again" in human.out
    every = stack.cli("pending", "--all", "--json").json
    assert [r["id"] for r in every] == [transfer, agent, generating]
    assert [r["cause"] for r in every] == ["transfer", "agent", None]
    assert [r["id"] for r in stack.cli("pending", "--all", "--limit", "1", "--json").json] \
        == [transfer]
    assert [r["id"] for r in stack.cli("pending", "--json").json] == [generating]
    both = stack.cli("pending", "--failed", "--all")
    assert both.code == 2 and "give --failed or --all, not both" in both.err


def test_watch_strict_exits_1_when_a_video_failed(stack: Stack) -> None:
    stack.video("ERROR", None)
    plain = stack.cli("watch", "--until-done", "--interval", "0.05", "--timeout", "10")
    assert plain.code == 0, plain.err  # a failed video is a normal outcome
    stack.video("RUNNING", "error")
    strict = stack.cli("watch", "--until-done", "--strict", "--interval", "0.05",
                       "--timeout", "10")
    assert strict.code == 1 and "1 video(s) failed during this run (--strict)" in strict.err
    stack.video("ERROR", None)
    gh = stack.cli("watch", "--until-done", "--exit-status", "--json", "--interval", "0.05")
    assert gh.code == 1 and sum(p["failed"] for p in gh.lines) == 1
    assert stack.cli("watch", "--until-done", "--strict", "--interval", "0.05").code == 0
