"""On a terminal, the demo's watch shows a live table that changes as videos move."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from .tmuxscreen import Screen

pytestmark = [
    pytest.mark.tmux,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]
VIDEOPOLL = str(Path(sys.executable).parent / "videopoll")


def test_live_table_appears_and_changes(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "xterm-256color",
           "VIDEOPOLL_ENV_FILE": os.devnull, "HOME": str(tmp_path)}
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
