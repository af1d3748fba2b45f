"""Drive a command in a real terminal (tmux) and read its screen, as a user would see it."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path


class Screen:
    def __init__(self, command: list[str], *, env: Mapping[str, str], cwd: Path,
                 width: int = 150, height: int = 45) -> None:
        tmux = shutil.which("tmux")
        if tmux is None:
            raise RuntimeError("tmux is not installed (Debian package: tmux)")
        self.tmux = tmux
        self.session = f"videopoll-{uuid.uuid4().hex[:8]}"
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        # Keep the pane open after the command ends so its last screen can be read.
        shell = f"cd {shlex.quote(str(cwd))} && env {exports} {shlex.join(command)}; " \
                f"echo EXIT=$?; sleep 600"
        subprocess.run([tmux, "new-session", "-d", "-s", self.session, "-x", str(width),
                        "-y", str(height), shell], check=True)

    def text(self) -> str:
        return subprocess.run([self.tmux, "capture-pane", "-p", "-t", self.session],
                              capture_output=True, text=True, check=True).stdout

    def wait_for(self, needle: str, timeout: float = 60.0) -> str:
        return self.wait_until(lambda screen: needle in screen, timeout, what=repr(needle))

    def wait_until(self, seen: Callable[[str], bool], timeout: float = 60.0, *,
                   what: str = "the screen asked for") -> str:
        """The first screen for which `seen` holds."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.text()
            if seen(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} never appeared; last screen:\n{screen}")
            time.sleep(0.05)

    def close(self) -> None:
        subprocess.run([self.tmux, "kill-session", "-t", self.session], check=False,
                       capture_output=True)
