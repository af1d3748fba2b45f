"""Plain data the engine, the adapters and the renderers share."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """A video row's state (DESIGN section 4); every move is one conditional UPDATE."""

    STARTING = "starting"  # a start task exists, no conversation yet
    GENERATING = "generating"  # the agent is working
    FINISHED = "finished"  # the agent is done; the artifact has not been stored yet
    TRANSFERRING = "transferring"  # claimed by one poller under a lease
    READY = "ready"  # stored; storage_path is set
    FAILED = "failed"  # given up, with a reason in `error`


PENDING = frozenset({Status.STARTING, Status.GENERATING, Status.FINISHED, Status.TRANSFERRING})
TERMINAL = frozenset({Status.READY, Status.FAILED})


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


class Action(StrEnum):
    """What a pass did to a row."""

    NONE = "none"
    STORED = "stored"
    FAILED = "failed"
    DEFERRED = "deferred"  # a transient error; retried next pass
    SKIPPED = "skipped"  # claimed by another poller
    RESOLVED = "resolved"  # a start task became a conversation


_HEX32 = re.compile(r"[0-9a-f]{32}")


def normalise_id(raw: str) -> str | None:
    """OpenHands ids are 32 lowercase hex chars; accept dashed or upper-case input."""
    candidate = raw.strip().replace("-", "").lower()
    if len(raw.strip()) not in (32, 36) or not _HEX32.fullmatch(candidate):
        return None
    if len(raw.strip()) == 36 and [len(p) for p in raw.strip().split("-")] != [8, 4, 4, 4, 12]:
        return None
    return candidate


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class VideoAsset:
    """One `lesson_assets` row of kind video, with its bookkeeping (mismatches, the claim,
    retried_at: `videopoll_assets` in the SQL stores, which no app user can see)."""

    id: str
    lesson_id: str
    status: Status
    created_at: datetime
    updated_at: datetime
    conversation_id: str | None = None
    start_task_id: str | None = None
    user_id: str | None = None
    storage_path: str | None = None
    error: str | None = None
    attempts: int = 0
    mismatches: int = 0
    github_path: str | None = None
    finished_at: datetime | None = None
    claimed_by: str | None = None
    claimed_until: datetime | None = None
    retried_at: datetime | None = None  # `retry` restarts the generation clock

    @property
    def age_from(self) -> datetime:
        """Where VIDEOPOLL_MAX_GENERATION and the not-found grace count from."""
        return max(self.created_at, self.retried_at or self.created_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "lesson_id": self.lesson_id,
            "conversation_id": self.conversation_id,
            "status": str(self.status),
            "storage_path": self.storage_path,
            "error": self.error,
            "attempts": self.attempts,
            "github_path": self.github_path,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


@dataclass(frozen=True)
class Lesson:
    id: str
    title: str
    user_id: str | None = None


@dataclass(frozen=True)
class AgentState:
    """What OpenHands says about one conversation, mapped to a row state (DESIGN 8.1)."""

    state: Status  # GENERATING, FINISHED or FAILED
    sandbox_status: str | None = None
    execution_status: str | None = None
    reason: str | None = None
    warning: str | None = None  # an enum value we do not know
    # The state could not be read this pass (its event log did not answer): the row waits
    # for the next pass rather than being decided on a guess.
    lookup_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sandbox_status": self.sandbox_status,
            "execution_status": self.execution_status,
            "state": str(self.state),
        }
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class StartTask:
    """A start task: OpenHands' answer to "start a conversation"."""

    id: str
    status: str
    state: Status  # STARTING, GENERATING (ready) or FAILED
    conversation_id: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class ArtifactRef:
    """A file in the artifacts repository, as the listing describes it."""

    path: str
    sha: str  # git blob sha of what the tree holds (the pointer, for LFS)
    size: int  # bytes of the video itself (the LFS object's size for LFS)
    lfs_oid: str | None = None  # sha256 of the LFS object

    @property
    def lfs(self) -> bool:
        return self.lfs_oid is not None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha": self.lfs_oid or self.sha,
                "lfs": self.lfs}


@dataclass(frozen=True)
class Item:
    asset_id: str
    lesson_id: str
    conversation_id: str | None
    state: Status
    action: Action
    detail: str
    # For live views only (not in JSON): when the row was made and last changed.
    created_at: datetime | None = field(default=None, compare=False)
    changed_at: datetime | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "asset_id": self.asset_id,
            "lesson_id": self.lesson_id,
            "conversation_id": self.conversation_id,
            "state": str(self.state),
            "action": str(self.action),
            "detail": self.detail,
        }


@dataclass(frozen=True)
class PassError:
    """One transient problem met during a pass."""

    asset_id: str | None
    service: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"asset_id": self.asset_id, "service": self.service, "detail": self.detail}


@dataclass
class PassSummary:
    """The result of one pass; `checked = still_generating + processed + failed`."""

    timestamp: datetime
    items: list[Item] = field(default_factory=list)
    errors: list[PassError] = field(default_factory=list)
    found: int = 0
    duration_ms: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False

    @property
    def checked(self) -> int:
        return len(self.items)

    @property
    def processed(self) -> int:
        return sum(1 for i in self.items if i.action is Action.STORED)

    @property
    def failed(self) -> int:
        return sum(1 for i in self.items if i.action is Action.FAILED)

    @property
    def still_generating(self) -> int:
        return self.checked - self.processed - self.failed

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "checked": self.checked,
            "stillGenerating": self.still_generating,
            "found": self.found,
            "processed": self.processed,
            "failed": self.failed,
            "timestamp": iso(self.timestamp),
            "errors": [e.to_json() for e in self.errors],
            "durationMs": self.duration_ms,
            "calls": dict(self.calls),
            "items": [i.to_json() for i in self.items],
        }
        if self.dry_run:
            out["dryRun"] = True
        return out
