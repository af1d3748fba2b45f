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
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial

from ..errors import ArtifactError, AuthError, ConfigError, ServiceError, VideopollError
from ..model import (
    Action,
    AgentState,
    ArtifactRef,
    PassError,
    PassSummary,
    Service,
    StartTask,
    Status,
    VideoAsset,
)
from ..model import normalise_id as _normalise
from ..ports import AgentAPI, ArtifactSource, Store
from ..states import Change, Event
from .bookkeeping import Pass
from .config import EngineConfig
from .transfer import Transfers
from .verify import check_github_path
from .writes import Writes

Refs = dict[str, ArtifactRef | None]
# Errors no row gets past: every row would meet them the same way, so they end the pass.
FATAL = (AuthError, ConfigError)
NEVER_STARTED = ("the agent never started (generate was interrupted, or its start was lost); "
                 "run `videopoll generate` for the lesson again")
NO_START_SEEN = ("OpenHands shows no start of this video, and this key sees no conversation at "
                 "all: nothing was failed. The key may belong to another account, or "
                 "OPENHANDS_BASE_URL points at another server; if `videopoll generate` was "
                 "interrupted, run it again")
def _id(row: VideoAsset) -> str:
    return _normalise(row.conversation_id or "") or ""


def _place(row: VideoAsset) -> tuple[str, str]:
    """A row's place in the round the budget's rotation makes (the pending order)."""
    return (row.created_at.isoformat(), row.id)


ROTATION = "openhands:rotation"  # state cache key: where the budget's rotation stopped


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
        writes = Writes(self.store, linger=self.config.write_linger)
        run = Pass(self.store, self.clock(), dry_run, writes)
        try:
            rows = await self.store.pending(limit)
        except FATAL:
            raise
        except VideopollError as exc:  # nothing to decide: an empty pass with the error
            run.error(None, exc, Service.STORE)
            rows = []
        listing: asyncio.Future[Refs] | None = None
        try:
            listing = await self._decide_and_collect(run, rows)
            await writes.close()
        except (asyncio.CancelledError, Exception):
            # Refused credentials, a configuration error, Ctrl+C or SIGTERM: nothing more is
            # written, and what this pass claimed goes back now rather than when its lease
            # runs out (a killed process cannot; its claims expire).
            await writes.abort()
            await self._hand_back(run)
            raise
        finally:
            if listing is not None and not listing.done():  # nobody needed the files
                listing.cancel()
            if listing is not None:
                await asyncio.gather(listing, return_exceptions=True)
        try:
            await self.store.flush()
        except FATAL:
            raise
        except VideopollError as exc:  # a cache entry not saved: the next listing is full
            run.error(None, exc, Service.STORE)
        summary = run.summary
        summary.items = [run.items[r.id] for r in rows if r.id in run.items]
        summary.duration_ms = int((self.monotonic() - started) * 1000)
        summary.calls = {k: v - before.get(k, 0) for k, v in self.calls.items()}
        return summary

    async def _hand_back(self, run: Pass) -> None:
        """Release every claim this pass asked for (a refused release is harmless: the row is
        stored, failed or someone else's by now). Bounded: an exit must not hang on it."""
        if run.dry_run or not run.claiming:
            return
        changes = [Change(i, Event.RELEASE, owner=self.owner) for i in sorted(run.claiming)]
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self.store.apply(changes)),
                                   self.config.hand_back_timeout)

    async def _decide_and_collect(self, run: Pass, rows: list[VideoAsset]
                                  ) -> asyncio.Future[Refs] | None:
        """Ask the agent about every row at once (start tasks and conversations together),
        start the GitHub listing for the finished ones, then settle every row concurrently:
        their decisions (failures, status changes, claims) go to the store in one batch
        while the listing runs, and each claimed video moves on as soon as both are back."""
        # A start task tells a starting row's progress (and why it failed); a row `generate`
        # wrote but could not record a task for is asked about by its conversation id.
        starting = [r for r in rows if r.status is Status.STARTING and r.start_task_id]
        running = [r for r in rows if r.conversation_id and r not in starting]
        decisions: list[tuple[VideoAsset, Callable[[], Awaitable[VideoAsset | None]]]] = []
        asked = [r for r in running if self._screen(run, r, decisions)]
        asked = await self._within_budget(run, asked, bool(starting))
        tasks, states = await self._ask(run, starting, asked)
        if tasks is not None and not await self._nobody_known(
                run, starting, [tasks.get(r.start_task_id or "") for r in starting],
                "start tasks"):
            for row in starting:
                task = tasks.get(row.start_task_id or "")
                decisions.append((row, partial(self._started, run, row, task)))
        listing = None
        late = 0  # failures whose reason is still being looked up: not waited for
        if states is not None:
            asked = await self._readable(run, asked, states)
            done = [r.github_path or "" for r in asked
                    if (s := states.get(_id(r))) is not None and s.state is Status.FINISHED]
            # Off the critical path: GitHub answers while the decisions are written.
            listing = asyncio.ensure_future(self.artifacts.find(done)) if done else None
            for row in asked:
                state = states.get(_id(row))
                if state is not None and state.unexplained:
                    late += 1
                    decisions.append((row, partial(self._decide_late, run, row, state)))
                else:
                    decisions.append((row, partial(self._decide, run, row, state)))

        async def settle(row: VideoAsset, decide: Callable[[], Awaitable[VideoAsset | None]]
                         ) -> None:
            try:
                claimed = await decide()
                if claimed is not None and listing is not None:
                    await self._collect(run, claimed, listing)
            finally:
                run.writes.leave()

        run.writes.join(len(decisions) - late)
        try:
            await self._each(run, decisions, settle)
        except BaseException:
            if listing is not None:
                listing.cancel()
                await asyncio.gather(listing, return_exceptions=True)
            raise
        return listing

    async def _within_budget(self, run: Pass, rows: list[VideoAsset], starting: bool
                             ) -> list[VideoAsset]:
        """The rows this pass can ask about without waiting for the agent's rate budget
        (OpenHands Cloud: 100 requests a minute): when that is not all of them, those least
        recently asked about, by a cursor kept in the state cache that goes round the pending
        rows in their order; the rest are counted as unchecked and come first next pass."""
        budget = self.agent.budget()
        per = max(1, self.agent.ids_per_request)
        if budget is None or not rows:
            return rows
        # Keep some for what a pass asks besides the batches: the start tasks' progress, a
        # few error reasons and events pages.
        spare = budget - (1 if starting else 0) - min(budget // 10, self.config.agent_reserve)
        take = max(0, spare) * per
        if take >= len(rows):
            return rows
        order = sorted(rows, key=_place)
        saved = await self.store.get_state(ROTATION) or {}
        after = tuple(saved.get("after") or ())
        start = next((i for i, r in enumerate(order) if _place(r) > after), 0) if after else 0
        chosen = (order[start:] + order[:start])[:take]
        if chosen and not run.dry_run:
            await self.store.set_state(ROTATION, {"after": list(_place(chosen[-1]))})
        run.summary.unchecked = len(rows) - len(chosen)
        run.summary.unchecked_why = (
            f"OpenHands rate budget: {budget} request(s) left this minute, {per} ids each; "
            "the rows asked about least recently go first next pass")
        return chosen

    def _screen(self, run: Pass, row: VideoAsset,
                decisions: list[tuple[VideoAsset, Callable[[], Awaitable[VideoAsset | None]]]]
                ) -> bool:
        """Whether `row` is worth asking the agent about; the others are settled without a
        request to it (a failure still goes out with the pass's batch)."""
        if row.status is Status.TRANSFERRING and row.claimed_until and \
                row.claimed_until > run.now and row.claimed_by != self.owner:
            until = row.claimed_until.astimezone(run.now.tzinfo).strftime("%H:%M:%S %Z")
            run.note(row, row.status, Action.SKIPPED,
                     f"claimed by {row.claimed_by or 'another poller'} until {until} "
                     "(if that poller is gone, the row is taken over then)")
            return False
        reason = None
        if _normalise(row.conversation_id or "") is None:
            reason = "malformed conversation id"
        else:
            try:
                check_github_path(row.github_path, self.config.github_dir)
            except ArtifactError as exc:
                reason = exc.message
        if reason is None:
            return True
        decisions.append((row, partial(self._fail_now, run, row, reason)))
        return False

    async def _fail_now(self, run: Pass, row: VideoAsset, reason: str) -> None:
        await run.fail(row, reason)

    async def _ask(self, run: Pass, starting: list[VideoAsset], asked: list[VideoAsset]
                   ) -> tuple[dict[str, StartTask | None] | None,
                              dict[str, AgentState | None] | None]:
        """Start tasks and conversation states in one round trip's time; a lookup that fails
        defers its own rows only (None), refused credentials end the pass."""

        async def resolve() -> dict[str, StartTask | None] | None:
            return await self.agent.resolve([r.start_task_id or "" for r in starting]) \
                if starting else None

        async def states() -> dict[str, AgentState | None] | None:
            return await self.agent.states([_id(r) for r in asked], explain_later=True) \
                if asked else None

        answers = await asyncio.gather(resolve(), states(), return_exceptions=True)
        for answer in answers:
            if isinstance(answer, FATAL) or (isinstance(answer, BaseException)
                                             and not isinstance(answer, ServiceError)):
                raise answer
        tasks, found = answers
        if isinstance(tasks, ServiceError):
            await run.defer_all(starting, tasks)
            tasks = None
        if isinstance(found, ServiceError):
            await run.defer_all(asked, found)
            found = None
        assert not isinstance(tasks, BaseException) and not isinstance(found, BaseException)
        return tasks, found

    async def _readable(self, run: Pass, asked: list[VideoAsset],
                        states: Mapping[str, AgentState | None]) -> list[VideoAsset]:
        """The rows whose answer can be acted on: not when OpenHands knows none of them (a
        wrong key or server), nor a row whose own lookup failed (deferred, one error each)."""
        found = [states.get(_id(r)) for r in asked]
        # Rows `generate` wrote are not known yet by design: they do not count here.
        known_before = [(r, s) for r, s in zip(asked, found, strict=True)
                        if r.status is not Status.STARTING]
        if known_before and await self._nobody_known(
                run, [r for r, _ in known_before], [s for _, s in known_before],
                "conversations"):
            asked = [r for r in asked if r.status is Status.STARTING]
        unread: dict[str, list[VideoAsset]] = {}  # lookups that failed, by what they said
        for row in asked:
            state = states.get(_id(row))
            if state is not None and state.lookup_error:
                unread.setdefault(state.lookup_error, []).append(row)
        for message, waiting in unread.items():
            await run.defer_all(waiting, ServiceError(message, service=Service.OPENHANDS))
        return [r for r in asked if (s := states.get(_id(r))) is None or not s.lookup_error]

    async def _started(self, run: Pass, row: VideoAsset, task: StartTask | None) -> None:
        """A start task that became a conversation (or failed to)."""
        if task is None:
            if self._older_than(row, run.now, self.config.not_found_grace):
                await run.fail(row, "start task not found")
            else:
                run.wait(row, "start task not visible yet")
        elif task.state is Status.FAILED:
            await run.fail(row, f"agent could not start: {task.detail}")
        elif task.conversation_id is None:
            run.wait(row, f"agent starting ({task.status})")
        elif run.dry_run or await run.writes.one(
                Change(row.id, Event.RESOLVE, value=task.conversation_id)):
            run.note(row, Status.GENERATING, Action.RESOLVED,
                     f"conversation {task.conversation_id} started")
        else:
            run.note(row, row.status, Action.SKIPPED, "changed by another poller")

    async def _each(self, run: Pass,
                    work: list[tuple[VideoAsset, Callable[[], Awaitable[VideoAsset | None]]]],
                    settle: Callable[[VideoAsset, Callable[[], Awaitable[VideoAsset | None]]],
                                     Awaitable[None]]) -> None:
        """Settle every row at once: waiting for them one by one would make a pass as slow
        as the original's per-row loop (their writes are batched by `Writes`).

        Each row is isolated: when its handling fails, that row is deferred and the others
        go on. A fatal error cancels the siblings before it leaves (a task group), so none
        keeps writing while the runtime closes its clients."""

        async def isolated(row: VideoAsset,
                           decide: Callable[[], Awaitable[VideoAsset | None]]) -> None:
            try:
                await settle(row, decide)
            except FATAL:
                raise
            except VideopollError as exc:
                await run.defer(row, exc)

        try:
            async with asyncio.TaskGroup() as group:
                for row, decide in work:
                    group.create_task(isolated(row, decide))
        except BaseExceptionGroup as failed:  # the first fatal error, as itself
            raise failed.exceptions[0] from None

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

    async def _decide_late(self, run: Pass, row: VideoAsset, state: AgentState
                           ) -> VideoAsset | None:
        """A failure whose reason needs a lookup of its own (`explain`): the pass's other
        decisions (the claims above all) are written without waiting for it, and its own
        write waits for the next batch rather than going alone."""
        try:
            state = await self.agent.explain(_id(row), state)
        finally:
            run.writes.join()  # from now on a batch waits for this row too (settle leaves)
        return await self._decide(run, row, state, linger=self.config.late_linger)

    async def _decide(self, run: Pass, row: VideoAsset, state: AgentState | None, *,
                      linger: float | None = None) -> VideoAsset | None:
        """What the agent's answer means for `row`, written with the pass's other decisions;
        the row, claimed by this poller, when its video is to be collected."""
        if state is None:
            if not self._older_than(row, run.now, self.config.not_found_grace):
                run.wait(row, "conversation not visible yet")
            elif row.status is Status.STARTING:  # written by generate; did its start land?
                await self._lost_start(run, row)
            else:
                await run.fail(row, "conversation not found")
            return None
        # An earlier start did arrive: the row is generating, in the same batch as the rest.
        first = [Change(row.id, Event.RESOLVE)] if row.status is Status.STARTING else []
        if first:
            row = replace(row, status=Status.GENERATING)
        if state.warning:
            run.summary.errors.append(PassError(row.id, Service.OPENHANDS, state.warning))
        if state.state is Status.FAILED:
            await run.fail(row, state.reason or "agent failed", before=first, linger=linger)
        elif state.state is Status.GENERATING:
            if self._older_than(row, run.now, self.config.max_generation):
                limit = int(self.config.max_generation)
                await run.fail(row, f"stuck: still generating after {limit}s", before=first)
                return None
            # The agent went back to work (it asked a question): so does the row, and a
            # claim on it that nobody is using any more goes.
            back = [] if row.status is Status.GENERATING else [
                Change(row.id, Event.REOPEN, owner=self.owner)]
            done = await self._write(run, first + back)
            run.wait(row, "agent working", Status.GENERATING if done else row.status)
        else:
            return await self._claim(run, row, first)
        return None

    async def _claim(self, run: Pass, row: VideoAsset, first: list[Change]
                     ) -> VideoAsset | None:
        """The agent is done: the row is finished and claimed for its transfer, both in the
        pass's batch (the lease runs on the database clock from then)."""
        finish = [Change(row.id, Event.FINISH)] if row.status is Status.GENERATING else []
        claim = Change(row.id, Event.CLAIM, owner=self.owner, lease_s=self.config.lease)
        finished_at = row.finished_at or run.now
        if run.dry_run:
            return replace(row, status=Status.FINISHED, finished_at=finished_at)
        run.claiming.add(row.id)
        if await self._write(run, [*first, *finish, claim]):
            return replace(row, status=Status.TRANSFERRING, finished_at=finished_at)
        now_is = Status.FINISHED if finish and row.status is Status.GENERATING else row.status
        run.note(row, now_is, Action.SKIPPED, "changed by another poller")
        return None

    async def _write(self, run: Pass, changes: list[Change]) -> bool:
        """Whether the last (deciding) change of a row's list applied; a dry run writes
        nothing and says yes."""
        if run.dry_run or not changes:
            return True
        return (await run.writes.apply(changes))[-1]

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
        elif run.dry_run or await run.writes.one(Change(row.id, Event.START, value=task.id)):
            run.wait(row, f"agent starting ({task.status})")
        else:
            run.note(row, row.status, Action.SKIPPED, "changed by another poller")

    async def _collect(self, run: Pass, row: VideoAsset, listing: Awaitable[Refs]) -> None:
        """A claimed row once the pass's one listing is back: its transfer, or the claim
        handed back while the file is not on GitHub yet (failed once past the grace)."""
        try:
            refs = await listing
        except ServiceError as exc:
            await self.transfers.release(run, row)
            await run.defer_all([row], exc, once=True)
            return
        ref = refs.get(row.github_path or "")
        if ref is not None:
            run.summary.found += 1
            # Transfers bound their own downloads (VIDEOPOLL_CONCURRENCY); the rest overlaps.
            await self.transfers.run(run, row, ref)
            return
        waited = (run.now - (row.finished_at or run.now)).total_seconds()
        if waited >= self.config.artifact_grace:
            await self.transfers.fail(run, row, "conversation finished but video not in GitHub")
        else:
            await self.transfers.release(run, row)
            left = int(self.config.artifact_grace - waited)
            run.wait(row, f"finished; waiting for the file on GitHub ({left}s left)",
                     Status.FINISHED)

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
            if until_done and summary.still_generating == 0 and not summary.unchecked \
                    and looked:
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

