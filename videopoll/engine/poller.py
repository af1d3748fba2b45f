"""The pass: pending rows -> agent states -> (only if something finished) one artifact
listing -> claimed, verified, streamed transfers -> a PassSummary.

The engine talks to the world only through its ports and never imports httpx; its clock
and sleep are injected so tests move time instead of waiting for it.

A failure while handling one row stays with that row (it is deferred to the next pass) and the
pass always ends with its summary; only what no row can get past ends it early: refused
credentials (exit 3) and configuration errors (exit 2).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TypeVar

from ..errors import ArtifactError, AuthError, ConfigError, ServiceError, VideopollError
from ..model import (
    Action,
    AgentState,
    ArtifactRef,
    PassError,
    PassSummary,
    Service,
    Status,
    VideoAsset,
)
from ..model import normalise_id as _normalise
from ..ports import AgentAPI, ArtifactSource, Store
from .bookkeeping import Pass
from .config import EngineConfig
from .transfer import Transfers
from .verify import check_github_path

T = TypeVar("T")
Refs = dict[str, ArtifactRef | None]
# Errors no row gets past: every row would meet them the same way, so they end the pass.
FATAL = (AuthError, ConfigError)
NEVER_STARTED = ("the agent never started (generate was interrupted, or its start was lost); "
                 "run `videopoll generate` for the lesson again")
NO_START_SEEN = ("OpenHands shows no start of this video, and this key sees no conversation at "
                 "all: nothing was failed. The key may belong to another account, or "
                 "OPENHANDS_BASE_URL points at another server; if `videopoll generate` was "
                 "interrupted, run it again")
NOBODY_KNOWN = ("OpenHands knows none of the {n} pending {what}: nothing was failed. The key "
                "may belong to another account, or OPENHANDS_BASE_URL points at another server")


class Poller:
    """Runs passes over a store with an agent and an artifact source."""

    def __init__(self, store: Store, agent: AgentAPI, artifacts: ArtifactSource,
                 config: EngineConfig, *, owner: str, clock: Callable[[], datetime],
                 monotonic: Callable[[], float] = time.monotonic,
                 calls: Mapping[str, int] | None = None,
                 progress: Callable[[str, int, int], None] | None = None,
                 before_pass: Callable[[], None] | None = None) -> None:
        self.store, self.agent, self.artifacts = store, agent, artifacts
        self.config = config
        self.owner = owner
        self.clock = clock
        self.monotonic = monotonic
        self.calls = calls if calls is not None else {}
        self.before_pass = before_pass
        self.transfers = Transfers(store, artifacts, config, owner, progress)

    async def poll_once(self, *, limit: int | None = None, dry_run: bool = False) -> PassSummary:
        """One pass over every pending row (or the oldest `limit`)."""
        if self.before_pass is not None:
            self.before_pass()
        started, before = self.monotonic(), dict(self.calls)
        run = Pass(self.store, self.clock(), dry_run)
        try:
            rows = await self.store.pending(limit)
        except FATAL:
            raise
        except VideopollError as exc:  # nothing to decide: an empty pass with the error
            run.error(None, exc, Service.STORE)
            rows = []
        # A start task tells a starting row's progress (and why it failed); a row `generate`
        # wrote but could not record a task for is asked about by its conversation id.
        starting = [r for r in rows if r.status is Status.STARTING and r.start_task_id]
        running = [r for r in rows if r.conversation_id and r not in starting]
        await self._resolve(run, starting)
        finished, listing = await self._states(run, running)
        if finished and listing is not None:
            await self._collect(run, finished, listing)
        elif listing is not None:  # every finished row was taken by another poller
            listing.cancel()
            await asyncio.gather(listing, return_exceptions=True)
        summary = run.summary
        summary.items = [run.items[r.id] for r in rows if r.id in run.items]
        summary.duration_ms = int((self.monotonic() - started) * 1000)
        summary.calls = {k: v - before.get(k, 0) for k, v in self.calls.items()}
        return summary

    async def _resolve(self, run: Pass, rows: list[VideoAsset]) -> None:
        """Start tasks that became conversations (or failed to)."""
        if not rows:
            return
        try:
            tasks = await self.agent.resolve([r.start_task_id or "" for r in rows])
        except ServiceError as exc:
            await run.defer_all(rows, exc)
            return
        if await self._nobody_known(run, rows, [tasks.get(r.start_task_id or "") for r in rows],
                                    "start tasks"):
            return

        async def one(row: VideoAsset) -> None:
            task = tasks.get(row.start_task_id or "")
            if task is None:
                if self._older_than(row, run.now, self.config.not_found_grace):
                    await run.fail(row, "start task not found")
                else:
                    run.wait(row, "start task not visible yet")
            elif task.state is Status.FAILED:
                await run.fail(row, f"agent could not start: {task.detail}")
            elif task.conversation_id is None:
                run.wait(row, f"agent starting ({task.status})")
            elif run.dry_run or await self.store.resolve_start(row.id, task.conversation_id):
                run.note(row, Status.GENERATING, Action.RESOLVED,
                         f"conversation {task.conversation_id} started")
            else:
                run.note(row, row.status, Action.SKIPPED, "changed by another poller")

        await self._each(run, rows, one)

    async def _each(self, run: Pass, rows: list[VideoAsset],
                    decide: Callable[[VideoAsset], Awaitable[T]]) -> list[T | None]:
        """Decide every row at once: each decision is a store write or two, and waiting for
        them one by one would make a pass as slow as the original's per-row loop.

        Each decision is isolated: when it fails, that row is deferred (None) and the others
        go on. A fatal error cancels the siblings before it leaves (a task group), so none
        keeps writing while the runtime closes its clients."""
        gate = asyncio.Semaphore(self.config.writes_in_flight)

        async def isolated(row: VideoAsset) -> T | None:
            async with gate:
                try:
                    return await decide(row)
                except FATAL:
                    raise
                except VideopollError as exc:
                    await run.defer(row, exc)
                    return None

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(isolated(row)) for row in rows]
        except BaseExceptionGroup as failed:  # the first fatal error, as itself
            raise failed.exceptions[0] from None
        return [task.result() for task in tasks]

    async def _nobody_known(self, run: Pass, rows: list[VideoAsset], found: Sequence[object],
                            what: str) -> bool:
        """No id known to OpenHands, some past the not-found grace: for several ids, far
        more likely a wrong key or server than every conversation gone at once; for one, so
        it is when the key sees no conversation at all (one search). Then fail none: the rows
        wait and the pass reports it (exit 1)."""
        if not rows or any(item is not None for item in found) or not any(
                self._older_than(row, run.now, self.config.not_found_grace) for row in rows):
            return False
        if len(rows) == 1:
            try:
                if await self.agent.visible():
                    return False  # this account has conversations: that one is gone
            except FATAL:
                raise
            except VideopollError:
                pass  # cannot tell: better to wait a pass than to fail a good video
        await run.defer_all(rows, ServiceError(NOBODY_KNOWN.format(n=len(rows), what=what),
                                                 service=Service.OPENHANDS))
        return True

    async def _states(self, run: Pass, rows: list[VideoAsset]
                      ) -> tuple[list[VideoAsset], asyncio.Future[Refs] | None]:
        """Ask the agent about every conversation at once; return the rows ready to collect
        and the GitHub listing for them, already under way while their rows are written."""

        async def screen(row: VideoAsset) -> VideoAsset | None:
            """Rows worth asking about; the others are settled without a request."""
            if row.status is Status.TRANSFERRING and row.claimed_until and \
                    row.claimed_until > run.now and row.claimed_by != self.owner:
                run.note(row, row.status, Action.SKIPPED, "being transferred by another poller")
            elif _normalise(row.conversation_id or "") is None:
                await run.fail(row, "malformed conversation id")
            else:
                try:
                    check_github_path(row.github_path, self.config.github_dir)
                except ArtifactError as exc:
                    await run.fail(row, exc.message)
                    return None
                return row
            return None

        asked = [row for row in await self._each(run, rows, screen) if row is not None]
        if not asked:
            return [], None
        try:
            states = await self.agent.states([_normalise(r.conversation_id or "") or ""
                                              for r in asked])
        except ServiceError as exc:
            await run.defer_all(asked, exc)
            return [], None
        found = [states.get(_normalise(r.conversation_id or "") or "") for r in asked]
        # Rows `generate` wrote are not known yet by design: they do not count here.
        known_before = [(r, s) for r, s in zip(asked, found, strict=True)
                        if r.status is not Status.STARTING]
        if known_before and await self._nobody_known(
                run, [r for r, _ in known_before], [s for _, s in known_before],
                "conversations"):
            asked = [r for r in asked if r.status is Status.STARTING]
            found = [states.get(_normalise(r.conversation_id or "") or "") for r in asked]
        unread: dict[str, list[VideoAsset]] = {}  # lookups that failed, by what they said
        for row, state in zip(asked, found, strict=True):
            if state is not None and state.lookup_error:
                unread.setdefault(state.lookup_error, []).append(row)
        for message, waiting in unread.items():
            await run.defer_all(waiting, ServiceError(message, service=Service.OPENHANDS))
        asked = [r for r, s in zip(asked, found, strict=True)
                 if s is None or not s.lookup_error]
        done = [r.github_path or "" for r in asked
                if (s := states.get(_normalise(r.conversation_id or "") or "")) is not None
                and s.state is Status.FINISHED]
        listing = asyncio.ensure_future(self.artifacts.find(done)) if done else None

        async def apply(row: VideoAsset) -> VideoAsset | None:
            return await self._apply(run, row,
                                     states.get(_normalise(row.conversation_id or "") or ""))

        try:
            decided = await self._each(run, asked, apply)
        except BaseException:
            if listing is not None:
                listing.cancel()
                await asyncio.gather(listing, return_exceptions=True)
            raise
        return [row for row in decided if row is not None], listing

    async def _apply(self, run: Pass, row: VideoAsset, state: AgentState | None
                     ) -> VideoAsset | None:
        if state is None:
            if not self._older_than(row, run.now, self.config.not_found_grace):
                run.wait(row, "conversation not visible yet")
            elif row.status is Status.STARTING:  # written by generate; did its start land?
                await self._lost_start(run, row)
            else:
                await run.fail(row, "conversation not found")
            return None
        if row.status is Status.STARTING:  # an earlier start did arrive: it is generating
            if not run.dry_run and not await self.store.resolve_start(row.id):
                run.note(row, row.status, Action.SKIPPED, "changed by another poller")
                return None
            row = replace(row, status=Status.GENERATING)
        if state.warning:
            run.summary.errors.append(PassError(row.id, Service.OPENHANDS, state.warning))
        if state.state is Status.FAILED:
            await run.fail(row, state.reason or "agent failed")
        elif state.state is Status.GENERATING:
            if self._older_than(row, run.now, self.config.max_generation):
                limit = int(self.config.max_generation)
                await run.fail(row, f"stuck: still generating after {limit}s")
            else:
                # The agent went back to work (it asked a question): so does the row, and a
                # claim on it that nobody is using any more goes.
                now_is = row.status
                if row.status is not Status.GENERATING and (
                        run.dry_run or await self.store.mark_generating(row.id, self.owner)):
                    now_is = Status.GENERATING
                run.wait(row, "agent working", now_is)
        elif row.status is Status.GENERATING:
            if run.dry_run or await self.store.mark_finished(row.id):
                return replace(row, status=Status.FINISHED, finished_at=run.now)
            run.note(row, row.status, Action.SKIPPED, "changed by another poller")
        else:
            return replace(row, finished_at=row.finished_at or run.now)
        return None

    async def _lost_start(self, run: Pass, row: VideoAsset) -> None:
        """A row `generate` wrote, whose start's answer never came back and whose
        conversation is still unknown: the start task that echoes its conversation id says
        whether the start arrived (then follow the task) or not (then the row fails)."""
        task = await self.agent.find_start(row.conversation_id or "",
                                           row.age_from - timedelta(minutes=5))
        if task is None and not await self.agent.visible():
            # A key that sees nothing at all may be another account's: the start may be
            # running there. Fail nothing; rerunning `generate` resumes the row.
            await run.defer_all([row], ServiceError(NO_START_SEEN, service=Service.OPENHANDS))
        elif task is None:
            await run.fail(row, NEVER_STARTED)
        elif task.state is Status.FAILED:
            await run.fail(row, f"agent could not start: {task.detail}")
        elif run.dry_run or await self.store.record_start(row.id, task.id):
            run.wait(row, f"agent starting ({task.status})")
        else:
            run.note(row, row.status, Action.SKIPPED, "changed by another poller")

    async def _collect(self, run: Pass, rows: list[VideoAsset], listing: Awaitable[Refs]
                       ) -> None:
        """One listing for every finished row, then the transfers, overlapping."""
        try:
            refs = await listing
        except ServiceError as exc:
            await run.defer_all(rows, exc)
            return

        async def absent(row: VideoAsset) -> None:
            waited = (run.now - (row.finished_at or run.now)).total_seconds()
            if waited >= self.config.artifact_grace:
                await run.fail(row, "conversation finished but video not in GitHub")
            else:
                left = int(self.config.artifact_grace - waited)
                run.wait(row, f"finished; waiting for the file on GitHub ({left}s left)",
                         Status.FINISHED)

        found = {row.id: ref for row in rows if (ref := refs.get(row.github_path or ""))}
        run.summary.found += len(found)

        async def decide(row: VideoAsset) -> None:
            ref = found.get(row.id)
            # Transfers bound their own downloads (VIDEOPOLL_CONCURRENCY); the rest overlaps.
            await (self.transfers.run(run, row, ref) if ref else absent(row))

        await self._each(run, rows, decide)

    def _older_than(self, row: VideoAsset, now: datetime, seconds: float) -> bool:
        return (now - row.age_from).total_seconds() >= seconds

    async def watch(
        self, *, interval: float, sleep: Callable[[float], object],
        until_done: bool = False, timeout: float | None = None, limit: int | None = None,
        on_pass: Callable[[PassSummary], None] | None = None,
        stop: asyncio.Event | None = None,
    ) -> bool:
        """Passes until `stop` is set, nothing is pending (`until_done`) or `timeout` runs
        out; returns False only when the timeout ran out first."""
        deadline = None if timeout is None else self.monotonic() + timeout
        while True:
            summary = await self.poll_once(limit=limit)
            if on_pass is not None:
                on_pass(summary)
            # Nothing pending, as far as a pass that could read the rows can tell.
            looked = summary.checked > 0 or not summary.errors
            if until_done and summary.still_generating == 0 and looked:
                return True
            if stop is not None and stop.is_set():
                return True
            pause = interval
            if deadline is not None:
                left = deadline - self.monotonic()
                if left <= 0:
                    return False
                pause = min(interval, left)
            outcome = sleep(pause)
            if asyncio.iscoroutine(outcome):
                await outcome

