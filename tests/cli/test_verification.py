"""Bad bytes from GitHub over real HTTP: nothing is stored, and the row ends where it should."""

from __future__ import annotations

import pytest

from videopoll.sandbox.mp4 import mp4_of_size
from videopoll.sandbox.server import Fault

from .conftest import Stack


def test_a_truncated_body_is_deferred_and_never_stored(stack: Stack, large_video: bytes
                                                       ) -> None:
    video = large_video  # over 1 MB: downloaded by blob, where the fault is
    asset, _, _ = stack.video("RUNNING", "finished", commit=video)
    stack.sandbox.github.inject("blobs", Fault("short", keep=0.5, times=None))
    result = stack.cli("poll", "--json")
    assert result.code == 1
    item = result.json["items"][0]
    assert item["action"] == "deferred" and item["state"] == "finished"
    row = stack.seed.row(asset)
    assert row["status"] == "finished" and row["attempts"] == 1
    assert stack.seed.object(stack.key(asset)) is None
    stack.sandbox.github.clear_faults()
    assert stack.cli("poll", "--json").json["processed"] == 1
    assert stack.seed.object(stack.key(asset)) == video


@pytest.mark.parametrize("inline", [False, True])
def test_wrong_bytes_are_counted_and_failed_after_max_attempts(
        stack: Stack, video: bytes, large_video: bytes, inline: bool) -> None:
    """Bytes that are not the blob GitHub named, from a blob download or inline in the
    contents answer (found by path): caught by the same verification, never stored."""
    asset, _, _ = stack.video("RUNNING", "finished", commit=video if inline else large_video)
    if inline:
        stack.sandbox.github.inject("contents", Fault("wrong_bytes", times=None))
    else:
        stack.sandbox.github.inject("blobs", Fault("corrupt", times=None))
    for _ in range(2):
        assert stack.cli("poll", "--json").json["items"][0]["action"] == "deferred"
    last = stack.cli("poll", "--json").json
    assert last["failed"] == 1
    row = stack.seed.row(asset)
    assert row["status"] == "failed" and "do not match" in row["error"]
    assert stack.seed.object(stack.key(asset)) is None
    # Inline bytes are never fetched again by blob in the same pass: each pass read them
    # from its one contents answer (and the retry of a pass is the next pass).
    assert stack.sandbox.github.counts == ({"contents": 3} if inline else
                                           {"contents": 3, "blobs": 3})


def test_inline_bytes_that_do_not_match_are_deferred_then_stored(stack: Stack, video: bytes
                                                                 ) -> None:
    asset, _, _ = stack.video("RUNNING", "finished", commit=video)
    stack.sandbox.github.inject("contents", Fault("wrong_bytes", times=1))
    result = stack.cli("poll", "--json")
    assert result.code == 1
    item = result.json["items"][0]
    assert item["action"] == "deferred" and "do not match" in item["detail"]
    assert stack.seed.row(asset)["attempts"] == 1
    assert stack.seed.object(stack.key(asset)) is None
    assert stack.cli("poll", "--json").json["processed"] == 1
    assert stack.seed.object(stack.key(asset)) == video


def test_an_html_page_with_status_200_is_never_stored(stack: Stack, large_video: bytes
                                                      ) -> None:
    asset, _, _ = stack.video("RUNNING", "finished", commit=large_video)
    stack.sandbox.github.inject("blobs", Fault("html", times=1))
    result = stack.cli("poll", "--json")
    assert "HTML page" in result.json["items"][0]["detail"]
    assert stack.seed.object(stack.key(asset)) is None
    assert stack.seed.row(asset)["status"] == "finished"


def test_an_oversized_file_is_refused_from_the_listing(stack: Stack) -> None:
    asset, _, _ = stack.video("RUNNING", "finished", commit=mp4_of_size(50_000))
    result = stack.cli("poll", "--json", env={"VIDEOPOLL_MAX_BYTES": "40000"})
    assert result.json["failed"] == 1
    assert "VIDEOPOLL_MAX_BYTES" in stack.seed.row(asset)["error"]
    assert stack.sandbox.github.counts["blobs"] == 0


def test_a_file_that_is_no_video_fails(stack: Stack) -> None:
    asset, _, _ = stack.video("RUNNING", "finished", commit=b"\x89PNG\r\n\x1a\n" + bytes(3000))
    assert stack.cli("poll", "--json").json["failed"] == 1
    assert "not an MP4" in stack.seed.row(asset)["error"]
