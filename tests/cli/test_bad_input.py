"""Bad input, each with a clear one-line reason, and the rest of the pass goes on."""

from __future__ import annotations

import pytest

from videopoll.sandbox.server import Fault

from .conftest import Stack


@pytest.mark.parametrize(("path", "why"), [
    ("videos/../../etc/passwd.mp4", "'..' segment"),
    ("/videos/abs.mp4", "absolute path"),
    ("videos/%2e%2e/x.mp4", "percent escape"),
    ("videos/a\x07b.mp4", "non-printable"),
    ("videos/vid\u00e9o.mp4", "non-ASCII"),
])
def test_hostile_github_paths_fail_without_a_request(stack: Stack, video: bytes, path: str,
                                                     why: str) -> None:
    lesson = stack.seed.lesson()
    cid = stack.sandbox.openhands.add_conversation("RUNNING", "finished")
    bad = stack.seed.video(lesson, cid, path)
    good, _, _ = stack.video("RUNNING", "finished", commit=video)
    summary = stack.cli("poll", "--json").json
    assert (summary["failed"], summary["processed"]) == (1, 1)
    assert why in stack.seed.row(bad)["error"]
    assert stack.seed.row(good)["status"] == "ready"
    asked = [p for _, p, _ in stack.sandbox.github.log]
    assert not any("passwd" in p or "abs.mp4" in p for p in asked)


def test_malformed_conversation_ids(stack: Stack) -> None:
    lesson = stack.seed.lesson()
    bad = stack.seed.video(lesson, "1234; drop table lessons")
    good, _, _ = stack.video()
    summary = stack.cli("poll", "--json").json
    assert summary["failed"] == 1 and stack.seed.row(bad)["error"] == "malformed conversation id"
    assert stack.seed.row(good)["status"] == "generating"


def test_a_zero_byte_file_fails(stack: Stack) -> None:
    asset, _, _ = stack.video("RUNNING", "finished", commit=b"")
    assert stack.cli("poll", "--json").json["failed"] == 1
    assert "0 bytes" in stack.seed.row(asset)["error"]


def test_invalid_json_from_openhands_defers_the_pass(stack: Stack) -> None:
    asset, _, _ = stack.video()
    stack.sandbox.openhands.inject("conversations", Fault("status", status=200,
                                                          body=b"<html>oops</html>"))
    result = stack.cli("poll", "--json")
    assert result.code == 1
    assert result.json["errors"][0]["detail"] == "openhands: conversation states answer is not JSON"
    assert stack.seed.row(asset)["status"] == "generating"


@pytest.mark.parametrize(("rows", "route", "status"),
                         [(1, "contents", 200), (3, "trees", 200), (1, "contents", 503)])
def test_invalid_json_from_github_defers_the_finished_rows(stack: Stack, rows: int,
                                                           route: str, status: int) -> None:
    """One finished row is looked up by path, three by the listing: either answer broken
    (or failing after the retries) defers them all, their claims handed back."""
    assets = [stack.video("RUNNING", "finished")[0] for _ in range(rows)]
    stack.sandbox.github.inject(route, Fault("status", status=status, body=b"{not json",
                                             times=None))
    result = stack.cli("poll", "--json")
    assert result.code == 1
    assert [i["action"] for i in result.json["items"]] == ["deferred"] * rows
    assert all(stack.seed.row(a)["status"] == "finished" for a in assets)
    assert set(stack.sandbox.github.counts) == {route}


def test_unknown_enum_values_keep_generating_with_a_warning(stack: Stack) -> None:
    asset, _, _ = stack.video("HIBERNATING", None)
    result = stack.cli("poll", "--json")
    assert result.code == 1
    assert "unknown sandbox_status 'HIBERNATING'" in result.json["errors"][0]["detail"]
    assert stack.seed.row(asset)["status"] == "generating"
