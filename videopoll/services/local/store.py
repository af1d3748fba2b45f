"""Store over SQLite and a directory: the embedded default (`VIDEOPOLL_STORE=local`).

`{home}/videopoll.db` holds the tables (see `localdb`), `{home}/storage/{bucket}/` the
objects. Every transition is one write transaction (`BEGIN IMMEDIATE`) that checks the row's
guard and writes `lesson_assets` and its bookkeeping in `videopoll_assets`: SQLite lets one
writer at a time hold the file from that BEGIN to the commit, so the check and the writes are
one compare-and-set, and several `videopoll poll` processes on one file claim each row exactly
once.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import sqlite3
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from ...errors import ConfigError, ContentMismatch, RequestRejected
from ...model import HEX, Lesson, Service, Status, VideoAsset
from ...states import Change, Event, Guard, Transitions, effects, transition
from .schema import (
    ASSET_COLUMNS,
    ASSETS_FROM,
    BOOKKEEPING_COLUMNS,
    PENDING_SQL,
    RETRY_BOOKKEEPING,
    RETRY_SQL,
    SAFE_OWNER,
    check_db,
    check_key,
    check_schema,
    check_storage,
    connect,
    disk,
    fsync_dir,
    to_asset,
    to_lesson,
    translated,
    ts,
    usable_home,
)

T = TypeVar("T")


class LocalStore(Transitions):
    """`Store` over a SQLite file (WAL) and a folder; `clock` is its "server clock".

    One connection, used from the event loop's thread: each method runs its statement to the
    end without awaiting, so coroutines never interleave inside a transaction.
    """

    def __init__(self, home: Path, *, bucket: str = "lesson-assets",
                 clock: Callable[[], datetime] | None = None,
                 busy_timeout_s: float = 30.0, create: bool = True) -> None:
        """Open the store in `home` (VIDEOPOLL_HOME), creating it there unless `create` is
        False (`doctor` without --fix): then a home without a store is a ConfigError and
        nothing is written. A home that cannot be created or written is a ConfigError
        naming VIDEOPOLL_HOME (exit 2), found before any pass could read a row it cannot
        then move."""
        if not bucket or "/" in bucket or bucket in (".", ".."):
            raise ConfigError(f"invalid bucket name {bucket!r}", hint="set VIDEOPOLL_BUCKET")
        self.home = Path(home)
        self.bucket = bucket
        self.db_path = self.home / "videopoll.db"
        self.bucket_dir = self.home / "storage" / bucket
        self.writes: Counter[str] = Counter()  # completed uploads per key
        self._clock = clock or (lambda: datetime.now(UTC))
        if create:
            usable_home(self.home, self.bucket_dir)
        elif not self.db_path.is_file():
            raise ConfigError(f"no local store in VIDEOPOLL_HOME={self.home} "
                              f"({self.db_path.name} is missing); nothing was created",
                              hint="check VIDEOPOLL_HOME, or run `videopoll doctor --fix` to "
                                   "create the store there")
        self._db = connect(self.db_path, busy_timeout_s)

    def _read(self, sql: str, params: Mapping[str, Any] | Sequence[Any] = ()
              ) -> list[sqlite3.Row]:
        with translated():
            return self._db.execute(sql, params).fetchall()

    def _transaction(self, work: Callable[[sqlite3.Connection], T], *,
                     commit: bool = True) -> T:
        """`work` inside one write transaction; `commit=False` shows, then undoes."""
        with translated():
            self._db.execute("begin immediate")
            try:
                done = work(self._db)
            except BaseException:
                self._db.execute("rollback")
                raise
            self._db.execute("commit" if commit else "rollback")
        return done

    def _write(self, sql: str, params: Mapping[str, Any] | Sequence[Any] = (),
               *, commit: bool = True) -> list[sqlite3.Row]:
        """One statement in its own write transaction."""
        return self._transaction(lambda db: db.execute(sql, params).fetchall(), commit=commit)

    @staticmethod
    def _keep(db: sqlite3.Connection, book: str, params: Mapping[str, Any], *,
              create: bool) -> None:
        """Apply `book` (SET assignments) to the asset's bookkeeping row; `create` makes the
        row first when the asset has none (clearing a claim needs no row)."""
        if create:
            db.execute("insert into videopoll_assets (asset_id, updated_at) values (:id, :now) "
                       "on conflict (asset_id) do nothing", params)
        db.execute(f"update videopoll_assets set {book}, updated_at = :now "
                   "where asset_id = :id", params)

    def _update(self, asset_id: str, sets: str | None, guard: str, *, book: str | None = None,
                create: bool = False, now: datetime | None = None,
                **params: Any) -> list[sqlite3.Row]:
        """The one shape of every transition: a compare-and-set on the row's current state
        (`guard`, over both tables), then `sets` on lesson_assets (which stamps its
        updated_at) and `book` on its bookkeeping; the row as it is afterwards, or nothing."""
        values = {"id": asset_id, "now": ts(now or self._clock()), "owner": None, **params}

        def work(db: sqlite3.Connection) -> list[sqlite3.Row]:
            hit = db.execute(f"select 1 from {ASSETS_FROM} where a.id = :id "
                             f"and a.kind = 'video' and ({guard})", values).fetchall()
            if not hit:
                return []
            if sets:
                db.execute(f"update lesson_assets set {sets}, updated_at = :now "
                           "where id = :id", values)
            if book:
                self._keep(db, book, values, create=create)
            return db.execute(f"select {ASSET_COLUMNS} from {ASSETS_FROM} where a.id = :id",
                              values).fetchall()

        return self._transaction(work)

    def _select(self, where: str, params: Mapping[str, Any], tail: str = "") -> list[VideoAsset]:
        rows = self._read(f"select {ASSET_COLUMNS} from {ASSETS_FROM} "
                          f"where a.kind = 'video' and ({where}) order by a.created_at, a.id "
                          f"{tail}", params)
        return [to_asset(row) for row in rows]

    async def pending(self, limit: int | None = None) -> list[VideoAsset]:
        where = (f"storage_path is null and status in ({PENDING_SQL}) "
                 "and (conversation_id is not null or start_task_id is not null)")
        if limit is None:
            return self._select(where, {})
        return self._select(where, {"limit": max(limit, 0)}, "limit :limit")

    async def get(self, asset_id: str) -> VideoAsset | None:
        found = self._select("a.id = :id", {"id": asset_id})
        return found[0] if found else None

    async def videos(self, statuses: Collection[Status] | None = None,
                     limit: int | None = None) -> list[VideoAsset]:
        where = "1" if statuses is None else \
            "a.status in (select value from json_each(:statuses))"
        params = {"statuses": json.dumps([str(s) for s in statuses or ()]),
                  "limit": -1 if limit is None else max(limit, 0)}
        rows = self._read(f"select {ASSET_COLUMNS} from {ASSETS_FROM} where a.kind = 'video' "
                          f"and ({where}) order by a.created_at desc, a.id desc limit :limit",
                          params)
        return [to_asset(row) for row in rows]

    async def by_prefix(self, prefix: str, limit: int = 10) -> list[VideoAsset]:
        if not HEX.fullmatch(prefix):
            return []
        # Ids are compared without dashes, in lower case: a prefix is hex digits only.
        rows = self._read(
            f"select {ASSET_COLUMNS} from {ASSETS_FROM} where a.kind = 'video' and ("
            + " or ".join(f"replace(lower({c}), '-', '') like :p || '%'"
                          for c in ("a.id", "a.lesson_id", "a.conversation_id"))
            + ") order by a.created_at desc, a.id desc limit :limit",
            {"p": prefix, "limit": max(limit, 0)})
        return [to_asset(row) for row in rows]

    async def by_conversation(self, conversation_id: str) -> list[VideoAsset]:
        return self._select("conversation_id = :c", {"c": conversation_id})

    async def lesson(self, lesson_id: str) -> Lesson | None:
        rows = self._read("select id, title, user_id from lessons where id = ?", (lesson_id,))
        return to_lesson(rows[0]) if rows else None

    async def open_video(self, lesson_id: str) -> VideoAsset | None:
        found = self._select("lesson_id = :l and status not in ('ready', 'failed')",
                             {"l": lesson_id}, "limit 1")
        return found[0] if found else None

    # -- transitions ---------------------------------------------------------------------

    async def apply(self, changes: Sequence[Change]) -> list[bool]:
        """TRANSITIONS in one write transaction: `BEGIN IMMEDIATE` holds SQLite's one write
        lock, so each change's read of the row and its write are one compare-and-set."""
        now = self._clock()
        stamp = ts(now)

        return self._transaction(
            lambda db: [self._apply(db, change, now, stamp) for change in changes])

    def _apply(self, db: sqlite3.Connection, change: Change, now: datetime, stamp: str
               ) -> bool:
        found = db.execute(f"select {ASSET_COLUMNS} from {ASSETS_FROM} where a.id = :id "
                           "and a.kind = 'video'", {"id": change.asset_id}).fetchall()
        step = transition(change, to_asset(found[0]), now) if found else None
        if step is None:
            return False
        if step.guard is Guard.SAME:
            return True
        writes = {k: ts(v) if isinstance(v, datetime) else v
                  for k, v in effects(change, now).items()}
        row = {k: v for k, v in writes.items() if k not in BOOKKEEPING_COLUMNS}
        book = {k: v for k, v in writes.items() if k in BOOKKEEPING_COLUMNS}
        values = {**writes, "id": change.asset_id, "now": stamp, "status": str(step.target)}
        if change.event is not Event.RENEW:  # a renewal is bookkeeping only
            sets = "".join(f", {k} = :{k}" for k in row)
            db.execute(f"update lesson_assets set status = :status{sets}, updated_at = :now "
                       "where id = :id", values)
        if book:
            self._keep(db, ", ".join(f"{k} = :{k}" for k in book), values,
                       create=change.event is Event.CLAIM)
        return True

    async def record_error(self, asset_id: str, error: str, *, mismatch: bool = False) -> int:
        # Pending rows only: a row a repeated call already failed keeps its reason.
        rows = self._update(asset_id, "error = :error, attempts = attempts + 1",
                            f"status in ({PENDING_SQL})",
                            book="mismatches = mismatches + 1" if mismatch else None,
                            create=True, error=error)
        return int(rows[0]["mismatches"]) if rows else 0

    async def retry(self, asset_ids: Sequence[str] | None, *, dry_run: bool = False,
                    restart: Mapping[str, str] | None = None) -> list[VideoAsset]:
        if asset_ids is not None and not asset_ids:
            return []
        chosen = "" if asset_ids is None else "and id in (select value from json_each(:ids))"
        params = {"now": ts(self._clock()), "ids": json.dumps(list(asset_ids or [])),
                  "restart": json.dumps(dict(restart or {}))}

        def work(db: sqlite3.Connection) -> list[sqlite3.Row]:
            # Newest first, one row at a time: RETRY_SQL leaves a failed row alone once its
            # lesson has an open video, an earlier one of this retry included.
            failed = db.execute("select id from lesson_assets where kind = 'video' and "
                                f"status = 'failed' {chosen} order by created_at desc, id desc",
                                params).fetchall()
            moved = [row["id"] for candidate in failed for row in db.execute(
                f"{RETRY_SQL} and id = :id returning id", {**params, "id": candidate["id"]})]
            for aid in moved:
                self._keep(db, RETRY_BOOKKEEPING, {**params, "id": aid}, create=True)
            return db.execute(f"select {ASSET_COLUMNS} from {ASSETS_FROM} where a.id in "
                              "(select value from json_each(:moved))",
                              {"moved": json.dumps(moved)}).fetchall()

        # A dry run shows the rows as the retry would leave them, then undoes it.
        rows = self._transaction(work, commit=not dry_run)
        return sorted((to_asset(row) for row in rows), key=lambda a: (a.created_at, a.id))

    async def insert_asset(self, *, asset_id: str, lesson_id: str, user_id: str | None,
                           github_path: str, conversation_id: str | None = None,
                           start_task_id: str | None = None) -> VideoAsset:
        values = {"id": asset_id, "lesson": lesson_id, "user": user_id, "path": github_path,
                  "task": start_task_id, "cid": conversation_id, "now": ts(self._clock())}

        def work(db: sqlite3.Connection) -> list[sqlite3.Row]:
            db.execute(
                "insert into lesson_assets (id, lesson_id, user_id, kind, mime_type, metadata, "
                "status, conversation_id, start_task_id, created_at, updated_at) values (:id, "
                ":lesson, :user, 'video', 'video/mp4', json_object('github_path', :path), "
                "'starting', :cid, :task, :now, :now)", values)
            return db.execute(f"select {ASSET_COLUMNS} from {ASSETS_FROM} where a.id = :id",
                              values).fetchall()

        return to_asset(self._transaction(work)[0])

    # -- state ---------------------------------------------------------------------------

    async def get_state(self, key: str) -> dict[str, Any] | None:
        rows = self._read("select value from videopoll_state where key = ?", (key,))
        return dict(json.loads(rows[0]["value"])) if rows else None

    async def set_state(self, key: str, value: dict[str, Any]) -> None:
        self._write("insert into videopoll_state (key, value, updated_at) values (?, ?, ?) "
                    "on conflict (key) do update set value = excluded.value, "
                    "updated_at = excluded.updated_at",
                    (key, json.dumps(value), ts(self._clock())))

    async def flush(self) -> None:
        """Nothing held back: a local write costs no request."""

    # -- objects -------------------------------------------------------------------------

    def object_path(self, key: str) -> Path:
        """Where the object `key` lives; refuses keys that would leave the bucket folder."""
        path = self.bucket_dir / check_key(key)
        if not path.resolve().is_relative_to(self.bucket_dir.resolve()):
            raise RequestRejected(f"object key {key!r} leaves the bucket", service=Service.STORE)
        return path

    async def put(self, asset: VideoAsset, key: str, chunks: AsyncIterator[bytes], *,
                  size: int, digest: str, owner: str, content_type: str = "video/mp4") -> None:
        # Local writes are atomic (temp file + rename), so there is nothing to resume and
        # `digest` is not needed; each owner writes its own temp file so two never mix.
        target = self.object_path(key)
        if not self.bucket_dir.is_dir():  # as Storage would answer: never created silently
            raise ConfigError(f"bucket folder {self.bucket_dir} is missing",
                              hint="run `videopoll doctor --fix` or check VIDEOPOLL_BUCKET")
        part = target.with_name(f"{target.name}.part-{SAFE_OWNER.sub('_', owner)[:80]}")
        with disk():
            target.parent.mkdir(parents=True, exist_ok=True)
            # A poller killed mid-write (SIGKILL runs no clean-up) left its temp file; we hold
            # the claim now, so any other writer of this key has lost its lease: sweep them.
            for stale in target.parent.glob(f"{glob.escape(target.name)}.part-*"):
                stale.unlink(missing_ok=True)
            out = open(part, "wb")  # closed by the `with out` just below
        try:
            # Closing flushes what is buffered, so it can fail for want of room too.
            with disk(), out:
                written = 0
                async for chunk in chunks:  # the stream's own errors pass through untouched
                    with disk():
                        out.write(chunk)
                    written += len(chunk)
                if written != size:  # what a resumable upload's Upload-Length would refuse
                    raise ContentMismatch(f"{key}: got {written} bytes, expected {size}")
                with disk():
                    out.flush()
                    await asyncio.to_thread(os.fsync, out.fileno())
            with disk():
                os.replace(part, target)
        except BaseException:  # cancellation too: never leave a half-written temp file
            part.unlink(missing_ok=True)
            raise
        with disk():
            fsync_dir(target.parent)
        self.writes[key] += 1

    # -- doctor, seeding, lifecycle --------------------------------------------------------

    async def check(self) -> list[tuple[str, bool, str]]:
        """Database writable, schema complete, storage folder writable."""
        return [check_db(self._db, self.db_path), check_schema(self._db),
                check_storage(self.bucket_dir)]

    async def ensure_bucket(self) -> list[tuple[str, bool, str]]:
        """doctor --fix: (re)create the bucket folder, which opening the store also does."""
        existed = self.bucket_dir.is_dir()
        with disk():
            self.bucket_dir.mkdir(parents=True, exist_ok=True)
        return [("local bucket", True, f"{self.bucket_dir} " + ("exists" if existed else
                                                                 "created"))]

    def add_lesson(self, title: str, user_id: str | None = None,
                   lesson_id: str | None = None) -> Lesson:
        """Seed a lesson as the app would (tests, demo)."""
        lesson = Lesson(id=lesson_id or str(uuid.uuid4()), title=title, user_id=user_id)
        self._write("insert into lessons (id, user_id, title, created_at) values (?, ?, ?, ?)",
                    (lesson.id, user_id, title, ts(self._clock())))
        return lesson

    def add_asset(self, lesson_id: str, *, conversation_id: str | None = None,
                  github_path: str | None = None, kind: str = "video",
                  storage_path: str | None = None, user_id: str | None = None,
                  asset_id: str | None = None, metadata: dict[str, Any] | None = None,
                  created_at: datetime | None = None) -> str:
        """Seed a row as the app inserts it: base columns only, so status is the default."""
        meta = dict(metadata or {})
        if github_path is not None:
            meta["github_path"] = github_path
        new_id = asset_id or str(uuid.uuid4())
        stamp = ts(created_at or self._clock())
        self._write(
            "insert into lesson_assets (id, lesson_id, user_id, kind, storage_path, mime_type, "
            "conversation_id, metadata, created_at, updated_at) "
            "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (new_id, lesson_id, user_id, kind, storage_path,
             "video/mp4" if kind == "video" else None, conversation_id, json.dumps(meta),
             stamp, stamp))
        return new_id

    def metadata(self, asset_id: str) -> dict[str, Any]:
        """The row's metadata JSON (where retry keeps error_history)."""
        rows = self._read("select metadata from lesson_assets where id = ?", (asset_id,))
        if not rows:
            raise KeyError(asset_id)
        return dict(json.loads(rows[0]["metadata"]))

    async def close(self) -> None:
        self._db.close()

