"""A pass's row writes, applied together: every row's changes wait a moment and go out in one
guarded `apply` with the others', so a pass costs a handful of store requests instead of one
(or two) a row.

A batch goes out as soon as every row still at work is waiting on it (nothing else could join),
when it is full, or when one of its changes has waited its `linger` (a slow download does not
hold back the rows already done; a change that can wait longer, a failure whose reason came
late, rides with the next batch — the transfers' ready marks — instead of going alone).
The guards are the store's, per change, exactly as when each went alone: a batch never
makes a transition happen that a single call would refuse.

A failed batch stays with its rows: a store that is down or answered something unusable
(after the client layer's retries) fails each waiting row's write, so each is deferred; a
batch the store rejected (a 4xx, one change it cannot take) is split in halves until the
change that caused it is alone, so one bad row does not hold back the others. Refused
credentials and configuration errors reach every row the same way and end the pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import RequestRejected, VideopollError
from ..ports import Rows
from ..states import Change


@dataclass
class _Waiting:
    changes: list[Change]
    deadline: float  # event-loop time by which it goes, whoever else has joined
    answer: asyncio.Future[list[bool]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class Writes:
    """The batching of one pass's row changes over `store.apply`."""

    def __init__(self, store: Rows, *, linger: float = 0.25, max_batch: int = 500,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.store = store
        self.linger = linger
        self.max_batch = max_batch
        self.on_batch = on_batch  # told each batch's size (tests and benchmarks count them)
        self._queue: list[_Waiting] = []
        self._active = 0  # rows at work that may still write
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[None]] = set()

    # -- who may still write -------------------------------------------------------------------
    def join(self, count: int = 1) -> None:
        """`count` more rows at work: a batch waits for them (or for `linger`)."""
        self._active += count

    def leave(self) -> None:
        """A row is done writing; if everyone left is waiting, their batch goes now."""
        self._active -= 1
        self._consider()

    # -- writing --------------------------------------------------------------------------------
    async def apply(self, changes: Sequence[Change], *, linger: float | None = None
                    ) -> list[bool]:
        """One row's changes (applied in order, in the same batch); whether each applied.
        `linger`: how long they may wait for company (default: the batcher's)."""
        if not changes:
            return []
        loop = asyncio.get_running_loop()
        waiting = _Waiting(list(changes),
                           loop.time() + (self.linger if linger is None else linger))
        self._queue.append(waiting)
        self._consider()
        return await waiting.answer

    async def one(self, change: Change) -> bool:
        return (await self.apply([change]))[0]

    async def close(self) -> None:
        """Send whatever waits and wait for every batch on its way."""
        self._active = 0
        self._send()
        while self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)

    async def abort(self) -> None:
        """The pass is ending early: what waits is not sent (its rows' tasks are gone), what
        is on its way is waited for, so the caller knows nothing more will be written."""
        self._active = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for waiting in self._queue:
            waiting.answer.cancel()
        self._queue = []
        while self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)

    # -- when a batch goes --------------------------------------------------------------------
    def _consider(self) -> None:
        if not self._queue:
            return
        size = sum(len(w.changes) for w in self._queue)
        if len(self._queue) >= self._active or size >= self.max_batch:
            self._send()
            return
        due = min(w.deadline for w in self._queue)
        if self._timer is None or due < self._timer.when():
            if self._timer is not None:
                self._timer.cancel()
            self._timer = asyncio.get_running_loop().call_at(due, self._send)

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._queue:
            return
        batch, self._queue = self._queue, []
        task = asyncio.ensure_future(self._flush(batch))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush(self, batch: list[_Waiting]) -> None:
        try:
            results = await self._apply(batch)
        except asyncio.CancelledError:
            for waiting in batch:
                waiting.answer.cancel()
            raise
        except BaseException as exc:  # a bug, not the store: every waiter hears of it
            for waiting in batch:
                if not waiting.answer.done():
                    waiting.answer.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for waiting, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                waiting.answer.set_exception(result)
            else:
                waiting.answer.set_result(result)

    async def _apply(self, batch: list[_Waiting]) -> list[list[bool] | BaseException]:
        """Apply `batch`; a rejected batch of several rows is split until the row it was
        about stands alone with its error."""
        changes = [c for w in batch for c in w.changes]
        if self.on_batch is not None:
            self.on_batch(len(changes))
        try:
            flat = await self.store.apply(changes)
        except RequestRejected as exc:
            if len(batch) == 1:
                return [exc]
            half = len(batch) // 2
            return await self._apply(batch[:half]) + await self._apply(batch[half:])
        except VideopollError as exc:
            return [exc] * len(batch)
        out: list[list[bool] | BaseException] = []
        for waiting in batch:
            out.append(flat[:len(waiting.changes)])
            flat = flat[len(waiting.changes):]
        return out
