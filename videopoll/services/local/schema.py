"""The local store's SQLite schema, timestamps, row mapping and file helpers.

The tables copy DESIGN section 7 (uuids as text, metadata as JSON text) plus what the
Supabase migration adds, in the same places: the app-visible columns on `lesson_assets`,
videopoll's bookkeeping in `videopoll_assets`, and `videopoll_state`. A file made by an
earlier version, with the bookkeeping on `lesson_assets`, is upgraded when it is opened.
Timestamps are fixed-width ISO-8601 UTC text
(`2026-01-02T03:04:05.000006Z`) so that comparing them as strings compares the instants:
the lease checks (`claimed_until > now`) and the pending order rely on it.
"""

from __future__ import annotations

import errno
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ...errors import ConfigError, DiskError, RequestRejected, ServerError
from ...model import Lesson, Service, Status, VideoAsset

TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# The same width as TS_FORMAT: SQLite's %f has milliseconds only, so pad to microseconds.
_NOW_SQL = "(strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z')"
_STATES = ", ".join(f"'{s}'" for s in Status)
PENDING_SQL = ", ".join(f"'{s}'" for s in
                        (Status.STARTING, Status.GENERATING, Status.FINISHED, Status.TRANSFERRING))

SCHEMA = f"""
create table if not exists lessons (
  id text primary key, user_id text, title text not null,
  created_at text not null default {_NOW_SQL});
create table if not exists lesson_assets (
  id text primary key,
  lesson_id text not null references lessons(id) on delete cascade,
  user_id text, kind text not null, storage_path text, mime_type text, conversation_id text,
  metadata text not null default '{{}}',
  created_at text not null default {_NOW_SQL},
  status text not null default 'generating' check (status in ({_STATES})),
  error text,
  attempts integer not null default 0,
  finished_at text,
  updated_at text not null default {_NOW_SQL},
  start_task_id text);
create table if not exists videopoll_assets (
  asset_id text primary key references lesson_assets(id) on delete cascade,
  claimed_by text, claimed_until text,
  mismatches integer not null default 0,
  retried_at text,
  upload_url text, upload_digest text, upload_offset integer, upload_prefix_sha256 text,
  updated_at text not null default {_NOW_SQL});
create index if not exists lesson_assets_pending on lesson_assets (created_at)
  where kind = 'video' and storage_path is null and status in ({PENDING_SQL});
create index if not exists lesson_assets_conversation on lesson_assets (conversation_id);
create index if not exists lesson_assets_lesson on lesson_assets (lesson_id);
create table if not exists videopoll_state (
  key text primary key, value text not null, updated_at text not null default {_NOW_SQL});
"""

# Columns a doctor check expects, beyond what the app's own tables have.
REQUIRED_COLUMNS = frozenset({
    "status", "error", "attempts", "finished_at", "updated_at", "start_task_id"})
BOOKKEEPING_COLUMNS = frozenset({
    "asset_id", "claimed_by", "claimed_until", "mismatches", "retried_at", "upload_url",
    "upload_digest", "upload_offset", "upload_prefix_sha256", "updated_at"})
# What earlier versions kept on lesson_assets; `upgrade` drops them all and carries over the
# first four. Not the resumable-upload state, as in the Supabase migration (there app users
# could write its URL); LocalStore never saved any anyway.
MOVED_COLUMNS = ("claimed_by", "claimed_until", "mismatches", "retried_at", "upload_url",
                 "upload_digest", "upload_offset", "upload_prefix_sha256")
_CARRIED = MOVED_COLUMNS[:4]

# A video row is its lesson_assets row plus its bookkeeping, if any (`a` and `v`).
ASSETS_FROM = "lesson_assets a left join videopoll_assets v on v.asset_id = a.id"
# What every query that builds a VideoAsset selects from ASSETS_FROM.
ASSET_COLUMNS = (
    "a.id as id, a.lesson_id as lesson_id, a.status as status, a.created_at as created_at, "
    "a.updated_at as updated_at, a.conversation_id as conversation_id, "
    "a.start_task_id as start_task_id, a.user_id as user_id, a.storage_path as storage_path, "
    "a.error as error, a.attempts as attempts, coalesce(v.mismatches, 0) as mismatches, "
    "json_extract(a.metadata, '$.github_path') as github_path, a.finished_at as finished_at, "
    "v.claimed_by as claimed_by, v.claimed_until as claimed_until, v.retried_at as retried_at"
)


# `retry`'s change to lesson_assets, minus its row filter. SET expressions read the old row,
# so the `error` archived into metadata.error_history is the one being cleared.
# (A lesson that has another open video keeps its failed one: one open video per lesson.)
# A row named in :restart (a JSON object, asset id -> new conversation id) starts over under
# that conversation, with no start task.
_RESTART = "json_extract(:restart, '$.\"' || id || '\"')"
RETRY_SQL = f"""update lesson_assets set
    status = case when {_RESTART} is not null then 'starting'
                  when conversation_id is null and start_task_id is not null
                  then 'starting' else 'generating' end,
    metadata = json_insert(json_insert(metadata, '$.error_history', json('[]')),
                           '$.error_history[#]', json_object('at', :now, 'error', error,
                                                             'conversation_id', conversation_id)),
    conversation_id = coalesce({_RESTART}, conversation_id),
    start_task_id = case when {_RESTART} is not null then null else start_task_id end,
    error = null, finished_at = null, updated_at = :now
    where kind = 'video' and status = 'failed'
      and not exists (select 1 from lesson_assets o where o.lesson_id = lesson_assets.lesson_id
                        and o.kind = 'video' and o.status in ({PENDING_SQL}))"""
# ... and to its bookkeeping.
RETRY_BOOKKEEPING = ("mismatches = 0, claimed_by = null, claimed_until = null, "
                     "retried_at = :now")

SAFE_OWNER = re.compile(r"[^A-Za-z0-9_.-]")  # what may appear in a temp file's name


def ts(moment: datetime) -> str:
    """A datetime as the store's fixed-width text."""
    return moment.astimezone(UTC).strftime(TS_FORMAT)


def parse_ts(text: str | None) -> datetime | None:
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def to_asset(row: sqlite3.Row) -> VideoAsset:
    created = parse_ts(row["created_at"])
    assert created is not None  # not null in the schema
    return VideoAsset(
        id=row["id"],
        lesson_id=row["lesson_id"],
        status=Status(row["status"]),
        created_at=created,
        updated_at=parse_ts(row["updated_at"]) or created,
        conversation_id=row["conversation_id"],
        start_task_id=row["start_task_id"],
        user_id=row["user_id"],
        storage_path=row["storage_path"],
        error=row["error"],
        attempts=row["attempts"],
        mismatches=row["mismatches"],
        github_path=row["github_path"],
        finished_at=parse_ts(row["finished_at"]),
        claimed_by=row["claimed_by"],
        claimed_until=parse_ts(row["claimed_until"]),
        retried_at=parse_ts(row["retried_at"]),
    )


def to_lesson(row: sqlite3.Row) -> Lesson:
    return Lesson(id=row["id"], title=row["title"], user_id=row["user_id"])


@contextmanager
def translated() -> Iterator[None]:
    """Turn driver errors into videopoll's tree at the edge, as the remote adapters do.

    A constraint violation is the request's fault (PostgREST answers 409 for it); anything
    else (a lock held past the busy timeout, a full disk) is the store failing, transiently.
    """
    try:
        yield
    except sqlite3.IntegrityError as exc:  # PostgREST answers 409 for a key, as here
        raise RequestRejected(f"local store refused the write: {exc}", service=Service.STORE,
                              status=409) from exc
    except sqlite3.Error as exc:
        raise ServerError(f"local store failed: {exc}", service=Service.STORE) from exc


def _wal(db: sqlite3.Connection, busy_timeout_s: float) -> None:
    """Switch to WAL. The switch needs the file to itself, and SQLite answers "locked" at
    once, without its busy handler, while another process is opening it too (two pollers
    starting together): wait for our turn like the busy timeout would."""
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            db.execute("pragma journal_mode = wal")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def connect(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """Open the database in autocommit mode; writers use explicit `BEGIN IMMEDIATE`.

    WAL lets readers run beside the one writer; the busy timeout makes a second process wait
    for the write lock instead of failing; `BEGIN IMMEDIATE` takes that lock before reading,
    so a guarded UPDATE never sees a snapshot another process has already overtaken.
    """
    with translated():
        db = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None,
                             check_same_thread=False)
        try:
            db.row_factory = sqlite3.Row
            _wal(db, busy_timeout_s)
            db.execute("pragma foreign_keys = on")
            # One write transaction: racing first opens create the tables (and upgrade an old
            # file) once; the second finds the work done. (executescript would commit an
            # open transaction first, so it starts this one itself.)
            db.executescript("begin immediate;" + SCHEMA)
            try:
                upgrade(db)
                one_open_video(db)
            except BaseException:
                db.execute("rollback")
                raise
            db.execute("commit")
        except BaseException:
            db.close()
            raise
    return db


ONE_OPEN_VIDEO = "lesson_assets_one_open_video"


def one_open_video(db: sqlite3.Connection) -> bool:
    """One open video per lesson, enforced by a unique index (as in the Supabase migration),
    so two `generate` runs racing for one lesson cannot both insert. A file that already
    holds two open videos of one lesson keeps working without it (doctor says so)."""
    try:
        db.execute(f"create unique index if not exists {ONE_OPEN_VIDEO} on lesson_assets "
                   f"(lesson_id) where kind = 'video' and status in ({PENDING_SQL})")
    except sqlite3.IntegrityError:
        return False
    return True


def upgrade(db: sqlite3.Connection) -> int:
    """Move the bookkeeping an earlier version kept on lesson_assets into videopoll_assets and
    drop those columns (SQLite >= 3.35); the number of rows moved. Runs inside the caller's
    write transaction, so it happens entirely or not at all."""
    present = {row[1] for row in db.execute("pragma table_info(lesson_assets)")}
    if not present & set(MOVED_COLUMNS):
        return 0
    # An even older file may lack some of them: read those as empty.
    source = {c: c if c in present else "null" for c in _CARRIED}
    source["mismatches"] = f"coalesce({source['mismatches']}, 0)"
    saved = " or ".join(f"{source[c]} is not null" for c in _CARRIED if c != "mismatches")
    moved = db.execute(
        f"insert into videopoll_assets (asset_id, {', '.join(_CARRIED)}, updated_at) "
        f"select id, {', '.join(source[c] for c in _CARRIED)}, updated_at "
        f"from lesson_assets where {source['mismatches']} <> 0 or {saved} "
        "on conflict (asset_id) do nothing").rowcount
    for column in MOVED_COLUMNS:
        if column in present:
            db.execute(f"alter table lesson_assets drop column {column}")
    return moved


def check_db(db: sqlite3.Connection, path: Path) -> tuple[str, bool, str]:
    try:
        with translated():
            db.execute("begin immediate")  # takes the write lock, writes nothing
            db.execute("rollback")
    except ServerError as exc:
        return ("local database", False, f"{path}: {exc}")
    ok = os.access(path, os.W_OK)
    return ("local database", ok, f"{path}" + ("" if ok else " is read-only"))


def check_schema(db: sqlite3.Connection) -> tuple[str, bool, str]:
    with translated():
        present = {row["name"] for row in db.execute("pragma table_info(lesson_assets)")}
        book = {row["name"] for row in db.execute("pragma table_info(videopoll_assets)")}
        has_state = db.execute("select 1 from sqlite_master where name = 'videopoll_state'")
        missing = set(REQUIRED_COLUMNS - present) if present else {"lesson_assets"}
        missing |= ({f"videopoll_assets.{c}" for c in BOOKKEEPING_COLUMNS - book} if book
                    else {"videopoll_assets"})
        if not has_state.fetchall():
            missing.add("videopoll_state")
        if not db.execute("select 1 from sqlite_master where name = ?",
                          (ONE_OPEN_VIDEO,)).fetchall():
            missing.add(f"{ONE_OPEN_VIDEO} (a lesson has two open videos: fail one)")
    detail = "tables present" if not missing else f"missing: {', '.join(sorted(missing))}"
    return ("local schema", not missing, detail)


def check_storage(bucket_dir: Path) -> tuple[str, bool, str]:
    if not bucket_dir.is_dir():
        return ("local storage", False, f"{bucket_dir} is missing: `videopoll doctor --fix` "
                "creates it")
    probe = bucket_dir / f".doctor-{os.getpid()}"
    try:
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        return ("local storage", False, f"{bucket_dir}: {exc}")
    return ("local storage", True, str(bucket_dir))


def check_key(key: str) -> str:
    """Refuse object keys that could leave the bucket (shared with the in-memory store)."""
    if (not key or "\\" in key or "\0" in key
            or any(part in ("", ".", "..") for part in key.split("/"))):
        raise RequestRejected(f"object key {key!r} is not a plain path inside the bucket",
                              service=Service.STORE)
    return key


@contextmanager
def disk(what: str = "local storage") -> Iterator[None]:
    """File-system failures are the store failing: transiently (a full disk frees up), like a
    5xx, with the errno's name and the file in one line."""
    try:
        yield
    except OSError as exc:
        raise disk_error(exc, what) from exc


# The machine's trouble (retry later, exit 1), not a home to change.
_DISK_FAULTS = frozenset({errno.ENOSPC, errno.EIO, errno.EDQUOT})


def usable_home(home: Path, bucket_dir: Path) -> None:
    """Create the store's folders in `home` and make sure this process can write there; a
    home that cannot be (not permitted, read-only, a file in the way) is a ConfigError
    naming VIDEOPOLL_HOME. A full disk stays a DiskError (exit 1)."""
    hint = "point VIDEOPOLL_HOME at a folder this user can create and write " \
           "(default: ./.videopoll)"
    try:
        bucket_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno in _DISK_FAULTS:
            raise disk_error(exc, "local storage") from exc
        name = errno.errorcode.get(exc.errno or 0, "")
        raise ConfigError(f"VIDEOPOLL_HOME={home} cannot be created: "
                          f"{exc.strerror or exc}{f' [{name}]' if name else ''}",
                          hint=hint) from None
    db = home / "videopoll.db"
    for path in (home, bucket_dir, *([db] if db.exists() else [])):
        if not os.access(path, os.W_OK):  # a read-only mount answers EROFS even to root
            raise ConfigError(f"VIDEOPOLL_HOME={home} cannot be written: {path} is read-only",
                              hint=hint)


def disk_error(exc: OSError, what: str) -> DiskError:
    name = errno.errorcode.get(exc.errno or 0, "")
    where = f" ({exc.filename})" if exc.filename else ""
    return DiskError(f"{what}: {exc.strerror or exc}{f' [{name}]' if name else ''}{where}",
                     service="disk")


def fsync_dir(directory: Path) -> None:
    """Make a rename itself durable, not only the file's bytes."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
