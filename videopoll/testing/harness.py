"""`StoreHarness`: what the store contract suite needs from a store beyond `Store`.

tests/contract runs one set of tests on every implementation; each implementation is
plugged in by a factory that builds its store and fills these few callables (seed a
lesson or an app-inserted row, read a row's metadata, list the bucket, move the clock).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..model import Lesson
from ..ports import Store
from .faults import FakeClock


@dataclass
class StoreHarness:
    """A store under test plus its seeding and inspection hooks."""

    store: Store
    clock: FakeClock  # the store's "server clock"; tests call `advance`, never sleep
    add_lesson: Callable[..., Lesson]  # (title, user_id=None, lesson_id=None)
    add_asset: Callable[..., str]  # (lesson_id, *, conversation_id=..., github_path=..., ...)
    metadata: Callable[[str], dict[str, Any]]  # a row's metadata JSON
    objects: Callable[[], dict[str, bytes]]  # every file in the bucket, temp files included

    def advance(self, seconds: float) -> None:
        """Move the store's clock (a server-clock store would shift it its own way)."""
        self.clock.advance(seconds)
