"""The row state machine, written once as data: which event moves a row from which status,
under which guard, to which status (`TRANSITIONS`), and what each event writes (`effects`).

Every store applies this table through one guarded call, `apply(changes)`, and inherits the
events as methods (`Transitions`) from here. SQLite and the in-memory store read the table
here; the Supabase migration carries it, rendered from here by `videopoll schema`, as the
VALUES list of `videopoll_transitions()`. The contract suite (tests/contract) generates a
case for every line and claim situation on all three stores.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from .model import PENDING, Status, VideoAsset


class Event(StrEnum):
    """What is asked of a row; `TRANSITIONS` says from which states, under which guard."""

    START = "start"  # `generate` records the start task of a row it inserted
    RESOLVE = "resolve"  # the agent's conversation exists: generating
    FINISH = "finish"  # the agent is done; the file may not be on GitHub yet
    REOPEN = "reopen"  # the agent went back to work
    CLAIM = "claim"  # a poller takes the transfer, under a lease on the store's clock
    RENEW = "renew"  # the lease holder extends it while bytes flow
    RELEASE = "release"  # the transfer stops for now; the row is claimable again
    READY = "ready"  # the verified object is stored under `value` (the key)
    FAIL = "fail"  # given up, `value` says why


class Guard(StrEnum):
    """What a transition needs beyond the row's status; leases use the store's clock."""

    NONE = "none"
    HOLDER = "holder"  # the caller holds the claim, live or not (nobody has taken it since)
    LIVE = "live"  # the caller holds the claim and its lease has not run out
    EXPIRED = "expired"  # nobody holds a live lease: a killed poller's claim ran out
    SAME = "same"  # the row already is what the event would make it: a repeated call


@dataclass(frozen=True)
class Transition:
    event: Event
    source: Status
    guard: Guard
    target: Status


def _each(event: Event, sources: frozenset[Status] | Status, guard: Guard,
          target: Status) -> tuple[Transition, ...]:
    group = sources if isinstance(sources, frozenset) else frozenset({sources})
    return tuple(Transition(event, s, guard, target) for s in sorted(group))


# The state machine, written once: the stores apply it (SQLite and in memory read this table;
# the Supabase migration's `videopoll_apply` carries it as a VALUES list rendered from here),
# and the contract suite tests every store against every line. Liveness: a row left
# transferring by a killed poller can be failed, released or claimed by anyone once its lease
# has run out. The SAME lines make a repeated call (a retry after a lost answer) report what
# it did the first time instead of "changed by another poller" — only where no outcome is
# counted: two pollers failing (or storing) the same row must not both count it, and the
# store cannot tell a repeat of one's own call from another poller's.
TRANSITIONS: tuple[Transition, ...] = (
    *_each(Event.START, Status.STARTING, Guard.NONE, Status.STARTING),
    *_each(Event.RESOLVE, Status.STARTING, Guard.NONE, Status.GENERATING),
    *_each(Event.RESOLVE, Status.GENERATING, Guard.SAME, Status.GENERATING),
    *_each(Event.FINISH, Status.GENERATING, Guard.NONE, Status.FINISHED),
    *_each(Event.FINISH, Status.FINISHED, Guard.SAME, Status.FINISHED),
    *_each(Event.REOPEN, Status.FINISHED, Guard.NONE, Status.GENERATING),
    # A claim nobody is using any more (run out, or the caller's own) follows the agent
    # back to work: the row is generating again, unclaimed, its finished_at cleared.
    *_each(Event.REOPEN, Status.TRANSFERRING, Guard.HOLDER, Status.GENERATING),
    *_each(Event.REOPEN, Status.TRANSFERRING, Guard.EXPIRED, Status.GENERATING),
    *_each(Event.CLAIM, Status.FINISHED, Guard.NONE, Status.TRANSFERRING),
    *_each(Event.CLAIM, Status.TRANSFERRING, Guard.EXPIRED, Status.TRANSFERRING),
    *_each(Event.CLAIM, Status.TRANSFERRING, Guard.LIVE, Status.TRANSFERRING),
    *_each(Event.RENEW, Status.TRANSFERRING, Guard.LIVE, Status.TRANSFERRING),
    *_each(Event.RELEASE, Status.TRANSFERRING, Guard.HOLDER, Status.FINISHED),
    *_each(Event.RELEASE, Status.TRANSFERRING, Guard.EXPIRED, Status.FINISHED),
    *_each(Event.READY, Status.TRANSFERRING, Guard.LIVE, Status.READY),
    *_each(Event.FAIL, PENDING - {Status.TRANSFERRING}, Guard.NONE, Status.FAILED),
    *_each(Event.FAIL, Status.TRANSFERRING, Guard.HOLDER, Status.FAILED),
    *_each(Event.FAIL, Status.TRANSFERRING, Guard.EXPIRED, Status.FAILED),
)
# Which column an event writes its `value` to: what SAME compares.
EVENT_VALUE = {Event.START: "start_task_id", Event.RESOLVE: "conversation_id",
               Event.READY: "storage_path", Event.FAIL: "error"}


@dataclass(frozen=True)
class Change:
    """One event for one row, as a store's `apply` takes it."""

    asset_id: str
    event: Event
    owner: str | None = None  # who holds (or takes) the claim
    lease_s: float | None = None  # CLAIM, RENEW: how long the lease holds from now
    value: str | None = None  # START task id, RESOLVE conversation id, READY key, FAIL reason

    def to_json(self) -> dict[str, Any]:
        return {"id": self.asset_id, "event": str(self.event), "owner": self.owner,
                "lease_s": self.lease_s, "value": self.value}


_UNCLAIMED: dict[str, Any] = {"claimed_by": None, "claimed_until": None}
_NO_UPLOAD: dict[str, Any] = {"upload_url": None, "upload_digest": None, "upload_offset": None,
              "upload_prefix_sha256": None}


def effects(change: Change, now: datetime) -> dict[str, Any]:
    """What a (non-SAME) transition writes besides the status, column by column."""
    lease = now + timedelta(seconds=change.lease_s or 0)
    table: dict[Event, dict[str, Any]] = {
        Event.START: {"start_task_id": change.value},
        Event.RESOLVE: {} if change.value is None else {"conversation_id": change.value},
        Event.FINISH: {"finished_at": now},
        Event.REOPEN: {"finished_at": None, **_UNCLAIMED},
        Event.CLAIM: {"claimed_by": change.owner, "claimed_until": lease},
        Event.RENEW: {"claimed_until": lease},
        Event.RELEASE: _UNCLAIMED,
        Event.READY: {"storage_path": change.value, "error": None, **_UNCLAIMED, **_NO_UPLOAD},
        Event.FAIL: {"error": change.value, **_UNCLAIMED},
    }
    return table[change.event]


def transition(change: Change, row: VideoAsset, now: datetime) -> Transition | None:
    """The line of TRANSITIONS that lets `change` happen to `row` at `now`, or None. The
    first matching line wins; the table lists real moves before repeated calls (SAME)."""
    held = row.claimed_until is not None and row.claimed_until > now
    holder = change.owner is not None and row.claimed_by == change.owner
    field = EVENT_VALUE.get(change.event)
    same = field is None or change.value is None or getattr(row, field) == change.value
    ok = {Guard.NONE: True, Guard.HOLDER: holder, Guard.LIVE: holder and held,
          Guard.EXPIRED: not held, Guard.SAME: same}
    return next((t for t in TRANSITIONS if t.event is change.event and t.source is row.status
                 and ok[t.guard]), None)


# -- the events as methods, one `apply` each: every store inherits these -------------------

METHODS = {Event.START: "record_start", Event.RESOLVE: "resolve_start",
           Event.FINISH: "mark_finished", Event.REOPEN: "mark_generating",
           Event.CLAIM: "claim", Event.RENEW: "renew", Event.RELEASE: "release",
           Event.READY: "mark_ready", Event.FAIL: "mark_failed"}


class Transitions(ABC):
    @abstractmethod
    async def apply(self, changes: Sequence[Change]) -> list[bool]:
        """Apply each change that TRANSITIONS allows, atomically, in one call; whether
        each one did (a refused change is not an error: another poller got there first)."""

    async def _one(self, change: Change) -> bool:
        return (await self.apply([change]))[0]

    async def record_start(self, asset_id: str, task_id: str) -> bool:
        """starting: the start task `generate` was given (the row was written first)."""
        return await self._one(Change(asset_id, Event.START, value=task_id))

    async def resolve_start(self, asset_id: str, conversation_id: str | None = None) -> bool:
        """starting -> generating (with the conversation id, when it was not known yet)."""
        return await self._one(Change(asset_id, Event.RESOLVE, value=conversation_id))

    async def mark_finished(self, asset_id: str) -> bool:
        """generating -> finished, stamping finished_at."""
        return await self._one(Change(asset_id, Event.FINISH))

    async def mark_generating(self, asset_id: str, owner: str | None = None) -> bool:
        """finished -> generating (the agent went back to work); clears finished_at. A
        transferring row too, by its holder or once its lease ran out: the claim goes."""
        return await self._one(Change(asset_id, Event.REOPEN, owner=owner))

    async def claim(self, asset_id: str, owner: str, lease_s: float) -> bool:
        """finished (or transferring with a lease run out) -> transferring, held by owner."""
        return await self._one(Change(asset_id, Event.CLAIM, owner=owner, lease_s=lease_s))

    async def renew(self, asset_id: str, owner: str, lease_s: float) -> bool:
        """Extend a live lease; False when owner no longer holds it."""
        return await self._one(Change(asset_id, Event.RENEW, owner=owner, lease_s=lease_s))

    async def release(self, asset_id: str, owner: str) -> bool:
        """transferring -> finished, by the holder (or anyone once the lease ran out)."""
        return await self._one(Change(asset_id, Event.RELEASE, owner=owner))

    async def mark_ready(self, asset_id: str, owner: str, storage_path: str) -> bool:
        """transferring -> ready, only while owner holds a live lease."""
        return await self._one(Change(asset_id, Event.READY, owner=owner, value=storage_path))

    async def mark_failed(self, asset_id: str, reason: str, owner: str | None = None) -> bool:
        """Any pending state -> failed; a transferring row by its holder, or by anyone once
        its lease ran out (a killed poller's row must not stay transferring forever)."""
        return await self._one(Change(asset_id, Event.FAIL, owner=owner, value=reason))
