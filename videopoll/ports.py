"""What the engine needs from the outside world, as Protocols.

Adapters in `videopoll.services` implement these over real services; `videopoll.testing`
implements them in memory. Every method is async; every store write is one guarded
transition (a compare-and-set on the row's current state) that returns whether it matched, so
a repeated or racing call is harmless.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from .model import AgentState, ArtifactRef, Lesson, StartTask, Status, VideoAsset
from .states import Change


class AgentAPI(Protocol):
    ids_per_request: int
    """Conversation ids one state request carries (OpenHands: 99)."""

    def budget(self) -> int | None:
        """How many requests can be sent now without waiting for the agent's rate budget
        (None: unlimited), so that a pass can plan how many rows to check. Every request
        counts, the follow-up lookups `states` makes included; one over the budget is not
        refused, it waits for its slot (up to a minute)."""
        ...

    async def states(self, conversation_ids: Sequence[str], *, explain_later: bool = False
                     ) -> dict[str, AgentState | None]:
        """State of each conversation (None: unknown to the agent), batched and concurrent.
        `explain_later`: a failure whose reason needs a lookup of its own comes back
        `unexplained` at once, for `explain` — so the other rows' decisions need not wait
        for it."""
        ...

    async def explain(self, conversation_id: str, state: AgentState) -> AgentState:
        """An `unexplained` failure with its reason (or, while the agent's event log has not
        caught up with it, generating for one more pass); any other state as it is."""
        ...

    async def start(
        self, *, prompt: str, repository: str, branch: str, title: str,
        secrets: Mapping[str, str] | None = None, conversation_id: str | None = None,
    ) -> StartTask:
        """Start a conversation (with the id chosen here, when given, so that whether a
        start arrived can be asked afterwards); never sent twice by the client layer."""
        ...

    async def resolve(self, start_ids: Sequence[str]) -> dict[str, StartTask | None]:
        """Progress of start tasks (None: unknown)."""
        ...

    async def visible(self) -> bool:
        """Whether this key sees any conversation at all: one of another account (or
        another server) sees none of ours."""
        ...

    async def find_start(self, conversation_id: str, since: datetime) -> StartTask | None:
        """The start task (made since `since`) of a start that asked for `conversation_id`:
        how a start whose answer was lost is recognised."""
        ...

    async def check(self) -> list[tuple[str, bool, str]]:
        """doctor: reachable and our key accepted, as (name, ok, detail) rows."""
        ...


class ArtifactSource(Protocol):
    async def find(self, paths: Sequence[str]) -> dict[str, ArtifactRef | None]:
        """Which of `paths` exist, from one (conditional) listing."""
        ...

    def open(self, ref: ArtifactRef) -> AsyncIterator[bytes]:
        """Stream the file's bytes (not verified: see `videopoll.engine.verify`)."""
        ...

    async def check(self) -> list[tuple[str, bool, str]]:
        """doctor: the repository and branch are visible to our token."""
        ...


class Rows(Protocol):
    """Rows of `lesson_assets` with videopoll's bookkeeping (which the SQL stores keep in
    `videopoll_assets`), and their guarded transitions (`videopoll.states`).

    Leases and timestamps use the store's own clock (the database server's `now()`).
    """

    async def pending(self, limit: int | None = None) -> list[VideoAsset]:
        """Rows in starting/generating/finished/transferring, oldest first."""
        ...

    async def get(self, asset_id: str) -> VideoAsset | None: ...

    async def videos(self, statuses: Collection[Status] | None = None,
                     limit: int | None = None) -> list[VideoAsset]:
        """Video rows in `statuses` (None: every one), newest first (`pending --failed`,
        `pending --all`, `retry --failed`)."""
        ...

    async def by_prefix(self, prefix: str, limit: int = 10) -> list[VideoAsset]:
        """Video rows whose asset, lesson or conversation id starts with `prefix` (lowercase
        hex, no dashes; dashes in the stored ids are ignored), newest first, at most `limit`:
        how `status` finds the row behind an id shown in a table."""
        ...

    async def by_conversation(self, conversation_id: str) -> list[VideoAsset]: ...

    async def apply(self, changes: Sequence[Change]) -> list[bool]:
        """Apply each change `states.TRANSITIONS` allows, all in one guarded call."""
        ...

    async def record_start(self, asset_id: str, task_id: str) -> bool:
        """starting: the start task of a row `generate` wrote first."""
        ...

    async def resolve_start(self, asset_id: str, conversation_id: str | None = None) -> bool:
        """starting -> generating (with the conversation id when it is new)."""
        ...

    async def mark_finished(self, asset_id: str) -> bool:
        """generating -> finished, stamping finished_at."""
        ...

    async def mark_generating(self, asset_id: str, owner: str | None = None) -> bool:
        """finished -> generating (the agent went back to work); clears finished_at."""
        ...

    async def claim(self, asset_id: str, owner: str, lease_s: float) -> bool:
        """finished (or transferring with an expired lease) -> transferring, held by owner."""
        ...

    async def renew(self, asset_id: str, owner: str, lease_s: float) -> bool:
        """Extend a live lease; False when owner no longer holds it."""
        ...

    async def release(self, asset_id: str, owner: str) -> bool:
        """transferring -> finished, when owner holds it (after a transient error)."""
        ...

    async def mark_ready(self, asset_id: str, owner: str, storage_path: str) -> bool:
        """transferring -> ready, only while owner holds a live lease."""
        ...

    async def mark_failed(self, asset_id: str, reason: str, owner: str | None = None) -> bool:
        """Any pending state -> failed; a transferring row only by its lease holder."""
        ...

    async def record_error(self, asset_id: str, error: str, *, mismatch: bool = False) -> int:
        """Note a transient error (attempts + 1; mismatches + 1 when asked); returns the new
        mismatch count. The status does not change."""
        ...

    async def retry(self, asset_ids: Sequence[str] | None, *, dry_run: bool = False,
                    restart: Mapping[str, str] | None = None) -> list[VideoAsset]:
        """failed -> generating (starting when there is only a start task); None: every failed
        row. The error (and the conversation it happened in) is appended to
        metadata.error_history; retried_at restarts the clock. A row in `restart` (asset id
        -> a new conversation id) starts over instead: starting, under the new conversation
        id, with no start task, as `generate` leaves a row before the agent is asked."""
        ...


class Objects(Protocol):
    """The bucket the videos are served from."""

    async def put(
        self, asset: VideoAsset, key: str, chunks: AsyncIterator[bytes], *, size: int,
        digest: str, owner: str, content_type: str = "video/mp4",
    ) -> None:
        """Upload to the deterministic key, upserting; raises what `chunks` raises.

        `chunks` holds its last piece back until the bytes are verified, so an upload
        whose stream raises must leave no object (or the previous one) behind. `digest`
        names the content (git blob sha or LFS oid): a resumable upload left by a crash is
        continued only for the same digest, and only by the lease holder `owner`.
        """
        ...


class StateCache(Protocol):
    """A small key-value table (`videopoll_state`): what one pass leaves for the next, such
    as GitHub's ETag and listing."""

    async def get_state(self, key: str) -> dict[str, Any] | None: ...

    async def set_state(self, key: str, value: dict[str, Any]) -> None:
        """Keep `value` under `key`; a store may hold it back until its next row write
        (`apply`) or `flush`, so the state costs no request of its own."""
        ...

    async def flush(self) -> None:
        """Write what `set_state` held back (the end of a pass)."""
        ...


class Lessons(Protocol):
    """The app's lessons and their video rows, as `generate` starts them."""

    async def lesson(self, lesson_id: str) -> Lesson | None: ...

    async def open_video(self, lesson_id: str) -> VideoAsset | None:
        """A video row of the lesson that is neither ready nor failed."""
        ...

    async def insert_asset(
        self, *, asset_id: str, lesson_id: str, user_id: str | None, github_path: str,
        conversation_id: str | None = None, start_task_id: str | None = None,
    ) -> VideoAsset:
        """A new video row in `starting`; a second open video of the lesson is refused
        (RequestRejected, status 409)."""
        ...


class StoreChecks(Protocol):
    """doctor's view of a store."""

    async def check(self) -> list[tuple[str, bool, str]]:
        """doctor's checks of this store: (name, ok, detail)."""
        ...

    async def ensure_bucket(self) -> list[tuple[str, bool, str]]:
        """doctor --fix: create the bucket (private) when it is missing."""
        ...


class Store(Rows, Objects, StateCache, Lessons, StoreChecks, Protocol):
    """One store (Supabase, the local SQLite file, the in-memory fake) in every role; the
    engine's parts each ask for the roles they use."""

    async def close(self) -> None: ...
