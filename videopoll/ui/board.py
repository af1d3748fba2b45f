"""What `watch`'s live table shows, as data (rendered by `render.board_table`).

A pass summary is the truth as of the end of a pass; the board adds what happened since and
what would otherwise vanish:

- **bytes flowing**: the engine's `progress(asset_id, done, total)` calls during a pass. A
  row with bytes flowing is `transferring` (whatever the last pass said), with how far along.
  The next pass summary replaces them.
- **recent outcomes**: a row that became `ready` or `failed` leaves the pending set, so the
  next pass no longer checks it. The board keeps its last item on screen, dimmed, for
  `keep_for` seconds after the outcome (at most `keep_max` of them, newest first), unless a
  later pass or transfer shows the row again.

Times come from the injected `clock`, so the ages count on between passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from ..model import Action, Item, PassSummary, Status

KEEP_FOR = 600.0  # seconds an outcome stays on screen after it left the pending set
KEEP_MAX = 20  # outcomes kept at most, newest first
OUTCOMES = frozenset({Status.READY, Status.FAILED})


@dataclass(frozen=True)
class Line:
    """One row of the live table."""

    asset_id: str
    lesson_id: str  # "" when the row is known only from its transfer
    state: Status
    created_at: datetime | None
    changed_at: datetime | None
    action: Action  # NONE while a transfer is under way (the pass has not ended)
    detail: str
    transfer: tuple[int, int] | None = None  # (bytes done, bytes in all) while flowing
    past: bool = False  # an outcome kept after it left the pending set


@dataclass(frozen=True)
class Board:
    """The live table at one moment."""

    now: datetime
    summary: PassSummary | None  # the last pass, None before the first ends
    lines: list[Line]
    keep_for: float
    keep_max: int

    @property
    def past(self) -> int:
        return sum(1 for line in self.lines if line.past)


def line_of(item: Item) -> Line:
    return Line(item.asset_id, item.lesson_id, item.state, item.created_at, item.changed_at,
                item.action, item.detail)


@dataclass
class _Outcome:
    item: Item
    at: datetime  # when the row became ready or failed


class LiveBoard:
    """Collects pass summaries and progress calls; `board()` is what to show now."""

    def __init__(self, *, clock: Callable[[], datetime], keep_for: float = KEEP_FOR,
                 keep_max: int = KEEP_MAX) -> None:
        self.clock = clock
        self.keep_for = keep_for
        self.keep_max = keep_max
        self.summary: PassSummary | None = None
        self.flowing: dict[str, tuple[int, int]] = {}
        self.began: dict[str, datetime] = {}  # when each transfer's first bytes came
        self.outcomes: dict[str, _Outcome] = {}  # by asset id, newest first

    def progress(self, asset_id: str, done: int, total: int) -> None:
        """The engine's progress callback: bytes of a transfer so far."""
        self.flowing[asset_id] = (done, total)
        self.began.setdefault(asset_id, self.clock())

    def passed(self, summary: PassSummary) -> None:
        """A pass ended: its items are the truth now; its outcomes are kept."""
        self.summary = summary
        self.flowing.clear()  # a pass's transfers end within it
        self.began.clear()
        for item in summary.items:
            self.outcomes.pop(item.asset_id, None)  # checked again: the pass is the truth
            if item.state in OUTCOMES:
                self.outcomes[item.asset_id] = _Outcome(item, item.changed_at
                                                        or summary.timestamp)
        self._prune(self.clock())

    def _prune(self, now: datetime) -> None:
        """Outcomes younger than `keep_for`, the newest `keep_max`, newest first (those of
        one pass in the pass's order)."""
        fresh = [(asset_id, kept) for asset_id, kept in self.outcomes.items()
                 if (now - kept.at).total_seconds() <= self.keep_for]
        fresh.sort(key=lambda pair: pair[1].at, reverse=True)  # stable: ties keep order
        self.outcomes = dict(fresh[:self.keep_max])

    def board(self) -> Board:
        now = self.clock()
        self._prune(now)
        items = self.summary.items if self.summary else []
        lines = [self._flowing(line_of(item)) for item in items]
        shown = {line.asset_id for line in lines}
        # A transfer of a row the last pass did not list (the first pass is still running).
        lines += [self._flowing(Line(asset_id, "", Status.TRANSFERRING, None, None,
                                     Action.NONE, ""))
                  for asset_id in self.flowing if asset_id not in shown]
        shown |= self.flowing.keys()
        lines += [replace(line_of(kept.item), changed_at=kept.at, past=True)
                  for asset_id, kept in self.outcomes.items()
                  if asset_id not in shown]
        return Board(now, self.summary, lines, self.keep_for, self.keep_max)

    def _flowing(self, line: Line) -> Line:
        flow = self.flowing.get(line.asset_id)
        if flow is None:
            return line
        done, total = flow
        # Bytes flow only under our claim: the row is transferring, whatever the last pass
        # (which ended before the transfer began) said about it.
        return Line(line.asset_id, line.lesson_id, Status.TRANSFERRING, line.created_at,
                    self.began[line.asset_id], Action.NONE, "", transfer=(done, total))
