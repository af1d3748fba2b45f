"""Plain data the engine, the adapters and the renderers share."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Service(StrEnum):
    """The three services videopoll talks to: counters, errors and retries are per service."""

    OPENHANDS = "openhands"
    GITHUB = "github"
    STORE = "store"


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


class Cause(StrEnum):
    """Why a failed video failed, as `retry` redrives it (engine.redrive derives it from what
    the row recorded)."""

    AGENT = "agent"  # the agent did not deliver: a new conversation
    TRANSFER = "transfer"  # the file was there but could not be stored: the transfer again

    @property
    def redrive(self) -> str:
        """What `retry` does about it, for people."""
        return "start a new conversation" if self is Cause.AGENT else "retry the transfer"


class Action(StrEnum):
    """What a pass did to a row."""

    NONE = "none"
    STORED = "stored"
    FAILED = "failed"
    DEFERRED = "deferred"  # a transient error; retried next pass
    SKIPPED = "skipped"  # claimed by another poller
    RESOLVED = "resolved"  # a start task became a conversation


_HEX32 = re.compile(r"[0-9a-f]{32}")
HEX = re.compile(r"[0-9a-f]+")  # an id prefix, as the stores' `by_prefix` takes it


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
    # A failure whose wording (and whether the event log has caught up with it) is still to
    # be looked up: `AgentAPI.explain` finishes it (asked for with `states(explain_later=)`).
    unexplained: bool = False

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


def git_blob_hash(size: int, sha: str) -> Any:
    """A hash primed for the git blob of `size` bytes named `sha`; fed the blob's bytes, its
    hexdigest is `sha` when they are that blob. SHA-1 for a 40-hex name, SHA-256 for a 64-hex
    one (a repository in git's SHA-256 object format): the one rule for the listing's SHAs,
    which both lengths pass."""
    return (hashlib.sha1 if len(sha) == 40 else hashlib.sha256)(b"blob %d\0" % size)


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


@dataclass(frozen=True)
class Counter:
    """One number of a pass's summary: its JSON key, its label for people, how to count it."""

    key: str
    label: str
    count: Callable[[PassSummary], int]
    in_json: bool = True  # `errors` is a list in JSON; tables and lines show how many


@dataclass
class PassSummary:
    """The result of one pass; `checked = still_generating + processed + failed`.

    `COUNTERS` is the summary's shape, in order, written once: every table, line, log record
    and step summary loops over it, so a new number touches this class and nothing else.
    """

    timestamp: datetime
    items: list[Item] = field(default_factory=list)
    errors: list[PassError] = field(default_factory=list)
    found: int = 0
    # Rows not asked about this pass (the agent's rate budget is spent): they are first in
    # line next time; `unchecked_why` says why.
    unchecked: int = 0
    unchecked_why: str | None = None
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

    def counts(self) -> list[tuple[Counter, int]]:
        return [(c, c.count(self)) for c in COUNTERS]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {c.key: n for c, n in self.counts() if c.in_json}
        out |= {
            "timestamp": iso(self.timestamp),
            "errors": [e.to_json() for e in self.errors],
            **({"uncheckedWhy": self.unchecked_why} if self.unchecked_why else {}),
            "durationMs": self.duration_ms,
            "calls": dict(self.calls),
            "items": [i.to_json() for i in self.items],
        }
        if self.dry_run:
            out["dryRun"] = True
        return out


COUNTERS: tuple[Counter, ...] = (
    Counter("checked", "checked", lambda s: s.checked),
    Counter("stillGenerating", "still generating", lambda s: s.still_generating),
    Counter("found", "found", lambda s: s.found),
    Counter("processed", "processed", lambda s: s.processed),
    Counter("failed", "failed", lambda s: s.failed),
    Counter("unchecked", "unchecked", lambda s: s.unchecked),
    Counter("errors", "errors", lambda s: len(s.errors), in_json=False),
)


def size(n: int) -> str:
    """Bytes as people read them, in the progress bars' units (powers of 1000): every
    message and table says sizes this one way."""
    if n < 1000:
        return f"{n} bytes"
    value = n / 1000
    for unit in ("kB", "MB"):
        if round(value, 1) < 1000:  # 999,960 bytes is "1.0 MB", not "1000.0 kB"
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
