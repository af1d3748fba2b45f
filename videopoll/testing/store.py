"""`InMemoryStore`: the `Store` semantics of `LocalStore`, rows in dicts.

The contract suite (tests/contract) runs the same tests on both, so what holds here holds
for the embedded store, and unit tests of the engine can trust it.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from ..errors import ConfigError, ContentMismatch, RequestRejected
from ..model import HEX, PENDING, TERMINAL, Lesson, Service, Status, VideoAsset
from ..services.local.schema import check_key, ts
from ..states import METHODS, Change, Event, Guard, Transitions, effects, transition
from .faults import Recorder, recorded
from .rows import Row


def _logged(change: Change) -> tuple[object, ...]:
    """A change as its method's arguments, for the call log."""
    extra = {Event.CLAIM: (change.owner, change.lease_s), Event.RENEW: (change.owner,
             change.lease_s), Event.RELEASE: (change.owner,), Event.READY: (change.owner,
             change.value), Event.FAIL: (change.value, change.owner)}
    value = (change.value,) if change.event in (Event.START, Event.RESOLVE) else ()
    return (change.asset_id, *extra.get(change.event, value))


class InMemoryStore(Recorder, Transitions):
    """`Store` in memory, like procrastinate's `InMemoryConnector`.

    `rows`, `lessons`, `state`, `objects` (key -> bytes) and `writes` (completed uploads
    per key) are plain attributes to seed and inspect; `calls` logs every Store call;
    `fail_next(method, exc)` injects faults; `reset()` empties everything.
    """

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__()
        self._clock = clock or (lambda: datetime.now(UTC))
        self.rows: dict[str, Row] = {}
        self.lessons: dict[str, Lesson] = {}
        self.state: dict[str, str] = {}  # JSON text, so values must serialise as in SQL
        self.objects: dict[str, bytes] = {}
        self.writes: Counter[str] = Counter()
        self.bucket_exists = True  # False: `put` fails as with a missing bucket

    def reset(self) -> None:
        self.reset_calls()
        self.bucket_exists = True
        for table in (self.rows, self.lessons, self.state, self.objects, self.writes):
            table.clear()

    def _move(self, asset_id: str, guard: Callable[[Row], bool], now: datetime | None = None,
              *, touch: bool = True, **changes: Any) -> Row | None:
        """The in-memory twin of one guarded transition: check and change with no await
        between. `touch=False` for a change of videopoll's bookkeeping alone, which leaves the
        app's row, and so its updated_at, as it was (as the SQL stores do)."""
        row = self.rows.get(asset_id)
        if row is None or row.kind != "video" or not guard(row):
            return None
        for name, value in changes.items():
            setattr(row, name, value)
        if touch:
            row.updated_at = now or self._clock()
        return row

    def _videos(self) -> list[Row]:
        return sorted((r for r in self.rows.values() if r.kind == "video"),
                      key=lambda r: (r.created_at, r.id))

    # -- reads ---------------------------------------------------------------------------

    @recorded
    async def pending(self, limit: int | None = None) -> list[VideoAsset]:
        found = [r.asset() for r in self._videos()
                 if r.storage_path is None and r.status in PENDING
                 and (r.conversation_id is not None or r.start_task_id is not None)]
        return found if limit is None else found[:max(limit, 0)]

    @recorded
    async def get(self, asset_id: str) -> VideoAsset | None:
        row = self.rows.get(asset_id)
        return row.asset() if row is not None and row.kind == "video" else None

    @recorded
    async def videos(self, statuses: Collection[Status] | None = None,
                     limit: int | None = None) -> list[VideoAsset]:
        found = [r.asset() for r in reversed(self._videos())
                 if statuses is None or r.status in statuses]
        return found if limit is None else found[:max(limit, 0)]

    @recorded
    async def by_prefix(self, prefix: str, limit: int = 10) -> list[VideoAsset]:
        if not HEX.fullmatch(prefix):
            return []
        def bare(value: str | None) -> str:
            return (value or "").replace("-", "").lower()

        found = [r.asset() for r in reversed(self._videos())
                 if any(bare(v).startswith(prefix)
                        for v in (r.id, r.lesson_id, r.conversation_id))]
        return found[:max(limit, 0)]

    @recorded
    async def by_conversation(self, conversation_id: str) -> list[VideoAsset]:
        return [r.asset() for r in self._videos() if r.conversation_id == conversation_id]

    @recorded
    async def lesson(self, lesson_id: str) -> Lesson | None:
        return self.lessons.get(lesson_id)

    @recorded
    async def open_video(self, lesson_id: str) -> VideoAsset | None:
        return next((r.asset() for r in self._videos()
                     if r.lesson_id == lesson_id and r.status not in TERMINAL), None)

    # -- transitions ---------------------------------------------------------------------

    async def apply(self, changes: Sequence[Change]) -> list[bool]:
        """TRANSITIONS on dicts, all or nothing like one SQL transaction: the call log and
        fault switches see each change under its method's name (`claim`, `mark_ready`…),
        faults before any change is made (`after=True`: once all are)."""
        now = self._clock()
        for change in changes:
            self._record(METHODS[change.event], *_logged(change))
        for change in changes:
            self._fault(METHODS[change.event], subject=change.asset_id)
        done = [self._apply(change, now) for change in changes]
        for change in changes:
            self._fault(METHODS[change.event], after=True, subject=change.asset_id)
        return done

    def _apply(self, change: Change, now: datetime) -> bool:
        row = self.rows.get(change.asset_id)
        if row is None or row.kind != "video":
            return False
        step = transition(change, row.asset(), now)
        if step is None:
            return False
        if step.guard is not Guard.SAME:
            for column, value in effects(change, now).items():
                if hasattr(row, column):  # no resumable uploads in memory
                    setattr(row, column, value)
            if change.event is not Event.RENEW:  # bookkeeping only: the app's row is as was
                row.status, row.updated_at = step.target, now
        return True

    @recorded
    async def record_error(self, asset_id: str, error: str, *, mismatch: bool = False) -> int:
        # Pending rows only, as the SQL stores: a failed row keeps its reason.
        row = self._move(asset_id, lambda r: r.status in PENDING)
        if row is None:
            return 0
        row.error = error
        row.attempts += 1
        row.mismatches += int(mismatch)
        return row.mismatches

    @recorded
    async def retry(self, asset_ids: Sequence[str] | None, *, dry_run: bool = False,
                    restart: Mapping[str, str] | None = None) -> list[VideoAsset]:
        now = self._clock()
        restart = restart or {}
        changed: list[VideoAsset] = []
        lessons: set[str] = set()  # newest first: one failed video per lesson comes back
        for row in reversed(self._videos()):
            if row.status is not Status.FAILED or (asset_ids is not None
                                                   and row.id not in asset_ids):
                continue
            if row.lesson_id in lessons or any(
                    r.kind == "video" and r.lesson_id == row.lesson_id and r.status in PENDING
                    for r in self.rows.values()):
                continue  # one open video per lesson
            lessons.add(row.lesson_id)
            meta = json.loads(json.dumps(row.metadata))
            history = meta.setdefault("error_history", [])
            if isinstance(history, list):  # as SQL's json_insert: leave a non-array alone
                history.append({"at": ts(now), "error": row.error,
                                "conversation_id": row.conversation_id})
            only_task = row.conversation_id is None and row.start_task_id is not None
            again = row.id in restart  # a new conversation: starting, no start task yet
            new = replace(row, status=Status.STARTING if only_task or again
                          else Status.GENERATING,
                          conversation_id=restart[row.id] if again else row.conversation_id,
                          start_task_id=None if again else row.start_task_id,
                          metadata=meta, error=None, mismatches=0, claimed_by=None,
                          claimed_until=None, finished_at=None, retried_at=now, updated_at=now)
            if not dry_run:
                self.rows[row.id] = new
            changed.append(new.asset())
        return sorted(changed, key=lambda a: (a.created_at, a.id))

    @recorded
    async def insert_asset(self, *, asset_id: str, lesson_id: str, user_id: str | None,
                           github_path: str, conversation_id: str | None = None,
                           start_task_id: str | None = None) -> VideoAsset:
        now = self._clock()
        row = Row(id=asset_id, lesson_id=lesson_id, kind="video", created_at=now,
                  updated_at=now, status=Status.STARTING, user_id=user_id,
                  mime_type="video/mp4", metadata={"github_path": github_path},
                  conversation_id=conversation_id, start_task_id=start_task_id)
        self._insert(row)
        return row.asset()

    # -- state and objects ---------------------------------------------------------------

    @recorded
    async def get_state(self, key: str) -> dict[str, Any] | None:
        text = self.state.get(key)
        return None if text is None else dict(json.loads(text))

    @recorded
    async def set_state(self, key: str, value: dict[str, Any]) -> None:
        self.state[key] = json.dumps(value)

    async def flush(self) -> None:
        """Nothing held back in memory."""

    @recorded
    async def put(self, asset: VideoAsset, key: str, chunks: AsyncIterator[bytes], *,
                  size: int, digest: str, owner: str, content_type: str = "video/mp4") -> None:
        check_key(key)
        if not self.bucket_exists:
            raise ConfigError("the bucket does not exist", hint="check VIDEOPOLL_BUCKET")
        body = bytearray()
        async for chunk in chunks:  # an exception here leaves `objects` untouched
            body += chunk
        if len(body) != size:
            raise ContentMismatch(f"{key}: got {len(body)} bytes, expected {size}")
        self.objects[key] = bytes(body)
        self.writes[key] += 1

    @recorded
    async def check(self) -> list[tuple[str, bool, str]]:
        return [("memory store", True, f"{len(self.rows)} rows")]

    @recorded
    async def ensure_bucket(self) -> list[tuple[str, bool, str]]:
        created, self.bucket_exists = not self.bucket_exists, True
        return [("memory bucket", True, "created" if created else "exists")]

    @recorded
    async def close(self) -> None:
        pass

    # -- seeding (the same helpers as LocalStore) ------------------------------------------

    def _insert(self, row: Row) -> None:
        # What the database's keys would refuse (PostgREST answers 409 for both).
        if row.lesson_id not in self.lessons:
            raise RequestRejected(f"lesson {row.lesson_id} does not exist", service=Service.STORE,
                                  status=409)
        if row.id in self.rows:
            raise RequestRejected(f"asset {row.id} already exists", service=Service.STORE,
                                  status=409)
        if row.kind == "video" and row.status in PENDING and any(
                r.kind == "video" and r.lesson_id == row.lesson_id and r.status in PENDING
                for r in self.rows.values()):  # the one-open-video-per-lesson index
            raise RequestRejected(f"lesson {row.lesson_id} already has an open video",
                                  service=Service.STORE, status=409)
        self.rows[row.id] = row

    def add_lesson(self, title: str, user_id: str | None = None,
                   lesson_id: str | None = None) -> Lesson:
        """Seed a lesson as the app would."""
        lesson = Lesson(id=lesson_id or str(uuid.uuid4()), title=title, user_id=user_id)
        if lesson.id in self.lessons:
            raise RequestRejected(f"lesson {lesson.id} already exists", service=Service.STORE)
        self.lessons[lesson.id] = lesson
        return lesson

    def add_asset(self, lesson_id: str, *, conversation_id: str | None = None,
                  github_path: str | None = None, kind: str = "video",
                  storage_path: str | None = None, user_id: str | None = None,
                  asset_id: str | None = None, metadata: dict[str, Any] | None = None,
                  created_at: datetime | None = None) -> str:
        """Seed a row as the app inserts it (status takes the default, `generating`)."""
        meta = dict(metadata or {})
        if github_path is not None:
            meta["github_path"] = github_path
        stamp = created_at or self._clock()
        row = Row(id=asset_id or str(uuid.uuid4()), lesson_id=lesson_id, kind=kind,
                  created_at=stamp, updated_at=stamp, user_id=user_id,
                  storage_path=storage_path, mime_type="video/mp4" if kind == "video" else None,
                  conversation_id=conversation_id, metadata=meta)
        self._insert(row)
        return row.id

    def metadata(self, asset_id: str) -> dict[str, Any]:
        """The row's metadata JSON (where retry keeps error_history)."""
        return dict(json.loads(json.dumps(self.rows[asset_id].metadata)))
