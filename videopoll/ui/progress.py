"""Transfer progress bars (bytes, rate, ETA) for terminals; nothing when not a terminal."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


def make_progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=console,
                    auto_refresh=False, transient=True)


class TransferBars:
    """The engine's progress callback: one bar per video in flight, gone when done."""

    def __init__(self, progress: Progress, refresh: Callable[[], None] | None = None, *,
                 refresh_every: float = 0.1) -> None:
        self.progress = progress
        self.refresh = refresh or progress.refresh  # inside a Live: the Live's refresh
        self.tasks: dict[str, TaskID] = {}
        self.refresh_every = refresh_every
        self._last = 0.0

    def __call__(self, asset_id: str, done: int, total: int) -> None:
        task = self.tasks.get(asset_id)
        if task is None:
            task = self.tasks[asset_id] = self.progress.add_task(f"video {asset_id[:8]}",
                                                                 total=total)
        self.progress.update(task, completed=done)
        if done >= total:
            self.progress.remove_task(task)
            del self.tasks[asset_id]
        now = time.monotonic()
        if now - self._last >= self.refresh_every or done >= total:
            self._last = now
            self.refresh()
