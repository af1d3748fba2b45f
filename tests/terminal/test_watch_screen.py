"""On a terminal, `watch` shows a live table that changes as videos move: the demo to its
end, and one transfer watched from generating to a kept outcome."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest

from videopoll.sandbox.mp4 import mp4_of_size
from videopoll.sandbox.server import Fault
from videopoll.sandbox.stack import Sandbox
from videopoll.services.local.store import LocalStore

from .tmuxscreen import Screen

pytestmark = [
    pytest.mark.tmux,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]
VIDEOPOLL = str(Path(sys.executable).parent / "videopoll")


def terminal_env(tmp_path: Path) -> dict[str, str]:
    """A bare terminal's environment; PYTHONPATH kept, so a checkout under test is the one
    the command imports (a tmux server started earlier would not pass it on)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "xterm-256color",
           "VIDEOPOLL_ENV_FILE": os.devnull, "HOME": str(tmp_path)}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def test_live_table_appears_and_changes(tmp_path: Path) -> None:
    env = terminal_env(tmp_path)
    screen = Screen([VIDEOPOLL, "demo"], env=env, cwd=tmp_path)
    try:
        first = screen.wait_for("generating", timeout=60)
        assert "still generating" in first and "lesson" in first  # the live table's columns
        last = screen.wait_for("EXIT=", timeout=90)
    finally:
        screen.close()
    assert "EXIT=0" in last
    assert "ready" in last and "2 processed, 1 failed" in last
    assert first != last


def row_of(screen: str, asset_id: str) -> str:
    """The live table's line for one video ("" when it is not on screen)."""
    return next((line for line in screen.splitlines() if line.startswith(asset_id[:8])), "")


def checked(screen: str) -> int | None:
    """The `checked` count of the pass table on screen."""
    lines = screen.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("┡"):
            return int(lines[i + 1].split("│")[1])
    return None


def test_a_transfer_reads_transferring_and_its_outcome_stays(tmp_path: Path) -> None:
    """`watch` without --until-done: while the file's bytes flow (slowly) the row says
    `transferring` beside its bar, not `generating`; once ready it leaves the pending set
    (the next pass checks 0) and stays listed with how long ago."""
    home = tmp_path / "home"
    store = LocalStore(home)
    try:
        with Sandbox(step=0.01, run=0.05) as sandbox:
            lesson = store.add_lesson("A lesson").id
            cid = sandbox.openhands.add_conversation("RUNNING", "running")
            asset = str(uuid.uuid4())
            path = f"videos/{lesson}/{asset}.mp4"
            store.add_asset(lesson, conversation_id=cid, github_path=path, asset_id=asset)
            env = {**terminal_env(tmp_path), **sandbox.env(home)}
            screen = Screen([VIDEOPOLL, "watch", "--interval", "0.5"], env=env, cwd=tmp_path)
            try:
                screen.wait_until(lambda s: "generating" in row_of(s, asset), 60,
                                  what="the generating row")
                sandbox.github.inject("blobs", Fault("slow", delay=4, times=1))
                sandbox.github.put_file(sandbox.repo, path, mp4_of_size(3_000_000))
                sandbox.openhands.set_state(cid, "RUNNING", "finished")
                moving = screen.wait_until(lambda s: "transferring" in row_of(s, asset), 60,
                                           what="the transferring row")
                kept = screen.wait_until(
                    lambda s: "ready" in row_of(s, asset) and checked(s) == 0, 60,
                    what="the ready row after a pass that checked nothing")
            finally:
                screen.close()
    finally:
        asyncio.run(store.close())
    line = row_of(moving, asset)
    assert "generating" not in line and "% of 3.0 MB" in line, moving
    assert f"video {asset[:8]}" in moving  # its progress bar, below the table
    line = row_of(kept, asset)
    assert "stored" in line and " ago" in line, kept
    assert "stay listed 10m after they leave the pending set" in kept
