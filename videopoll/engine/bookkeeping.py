"""The bookkeeping of one pass: one Item per row, the errors met, and the writes that
settle a row (defer, fail) so every outcome is counted exactly once. Row changes go through
the pass's `Writes`, which sends them to the store in batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from ..errors import AuthError, ServiceError, VideopollError
from ..model import Action, Item, PassError, PassSummary, Service, Status, VideoAsset
from ..ports import Rows
from ..states import Change, Event
from .writes import Writes


class Pass:
    """The bookkeeping of one pass: one Item per row, errors, the dry-run switch."""

    def __init__(self, store: Rows, now: datetime, dry_run: bool,
                 writes: Writes | None = None) -> None:
        self.store = store
        self.now = now
        self.dry_run = dry_run
        self.writes = writes or Writes(store)
        self.summary = PassSummary(timestamp=now, dry_run=dry_run)
        self.items: dict[str, Item] = {}
        self.claiming: set[str] = set()  # rows this pass asked to claim (handed back on exit)
        self._reported: set[int] = set()  # errors already in the summary (shared by rows)

    def note(self, row: VideoAsset, state: Status, action: Action, detail: str) -> None:
        changed = self.now if state is not row.status else row.updated_at
        self.items[row.id] = Item(row.id, row.lesson_id, row.conversation_id, state, action,
                                  detail, row.created_at, changed)

    def restate(self, row: VideoAsset, state: Status) -> None:
        """The row's item keeps its action and detail; the row is now `state`."""
        item = self.items.get(row.id)
        if item is not None and item.state is not state:
            self.items[row.id] = replace(item, state=state, changed_at=self.now)

    def error(self, row: VideoAsset | None, exc: VideopollError, service: str = "") -> None:
        service = getattr(exc, "service", "") or service or "videopoll"
        self.summary.errors.append(PassError(row.id if row else None, service, exc.message))

    async def defer(self, row: VideoAsset, exc: VideopollError, *, record: bool = True,
                    mismatch: bool = False) -> int:
        """A transient problem: note it on the row (attempts + 1) and keep it pending."""
        self.error(row, exc)
        self.note(row, row.status, Action.DEFERRED, exc.message)
        if record and not self.dry_run:
            try:
                return await self.store.record_error(row.id, exc.message, mismatch=mismatch)
            except ServiceError as write_error:
                self.error(row, write_error, Service.STORE)
        return 0

    async def defer_all(self, rows: list[VideoAsset], exc: ServiceError, *,
                        once: bool = False) -> None:
        """A service failed for a whole batch: the rows wait for the next pass. Refused
        credentials end the pass instead (exit 3): every row would fail the same way.
        `once`: the same error reaches each row on its own (one listing shared by many
        rows); the summary lists it once."""
        if isinstance(exc, AuthError):
            raise exc
        if not once or id(exc) not in self._reported:
            self._reported.add(id(exc))
            self.error(None, exc)
        for row in rows:
            self.note(row, row.status, Action.DEFERRED, exc.message)

    async def fail(self, row: VideoAsset, reason: str, owner: str | None = None, *,
                   before: Sequence[Change] = (), linger: float | None = None) -> None:
        """Fail `row` (after `before`, its other changes of this pass, in the same batch;
        `linger`: how long the write may wait for a batch to share)."""
        if self.dry_run:
            self.note(row, row.status, Action.FAILED, f"would fail: {reason}")
        elif (await self.writes.apply(
                [*before, Change(row.id, Event.FAIL, owner=owner, value=reason)],
                linger=linger))[-1]:
            self.note(row, Status.FAILED, Action.FAILED, reason)
        else:
            self.note(row, row.status, Action.SKIPPED, "changed by another poller")

    def wait(self, row: VideoAsset, detail: str, state: Status | None = None) -> None:
        self.note(row, state or row.status, Action.NONE, detail)
