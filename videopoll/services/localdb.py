"""The local store's SQLite schema, timestamps, row mapping and file helpers.

The tables copy DESIGN section 7 (uuids as text, metadata as JSON text) plus the columns the
Supabase migration adds. Timestamps are fixed-width ISO-8601 UTC text
(`2026-01-02T03:04:05.000006Z`) so that comparing them as strings compares the instants:
the lease checks (`claimed_until > now`) and the pending order rely on it.
"""

from __future__ import annotations

import errno
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ..errors import DiskError, RequestRejected, ServerError
from ..model import Lesson, Status, VideoAsset

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
  mismatches integer not null default 0,
  claimed_by text, claimed_until text, finished_at text, retried_at text,
  updated_at text not null default {_NOW_SQL},
  start_task_id text,
  upload_url text, upload_digest text, upload_offset integer, upload_prefix_sha256 text);
create index if not exists lesson_assets_pending on lesson_assets (created_at)
  where kind = 'video' and storage_path is null and status in ({PENDING_SQL});
create index if not exists lesson_assets_conversation on lesson_assets (conversation_id);
create index if not exists lesson_assets_lesson on lesson_assets (lesson_id);
create table if not exists videopoll_state (
  key text primary key, value text not null, updated_at text not null default {_NOW_SQL});
"""

# Columns a doctor check expects, beyond what the app's own tables have.
REQUIRED_COLUMNS = frozenset({
    "status", "error", "attempts", "mismatches", "claimed_by", "claimed_until", "finished_at",
    "retried_at", "updated_at", "start_task_id", "upload_url", "upload_digest", "upload_offset",
    "upload_prefix_sha256",
})

# What every query that builds a VideoAsset selects (also usable after RETURNING).
ASSET_COLUMNS = (
    "id, lesson_id, status, created_at, updated_at, conversation_id, start_task_id, user_id, "
    "storage_path, error, attempts, mismatches, "
    "json_extract(metadata, '$.github_path') as github_path, "
    "finished_at, claimed_by, claimed_until, retried_at"
)


# `retry`, minus its row filter. SET expressions read the old row, so the `error` archived
# into metadata.error_history is the one being cleared.
RETRY_SQL = """update lesson_assets set
    status = case when conversation_id is null and start_task_id is not null
                  then 'starting' else 'generating' end,
    metadata = json_insert(json_insert(metadata, '$.error_history', json('[]')),
                           '$.error_history[#]', json_object('at', :now, 'error', error)),
    error = null, mismatches = 0, claimed_by = null, claimed_until = null,
    finished_at = null, retried_at = :now, updated_at = :now
    where kind = 'video' and status = 'failed'"""

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
    except sqlite3.IntegrityError as exc:
        raise RequestRejected(f"local store refused the write: {exc}", service="store") from exc
    except sqlite3.Error as exc:
        raise ServerError(f"local store failed: {exc}", service="store") from exc


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
            db.execute("pragma journal_mode = wal")
            db.execute("pragma foreign_keys = on")
            # One script inside one write transaction: racing first opens create it once.
            db.executescript("begin immediate;" + SCHEMA + "commit;")
        except BaseException:
            db.close()
            raise
    return db


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
        has_state = db.execute("select 1 from sqlite_master where name = 'videopoll_state'")
        missing = set(REQUIRED_COLUMNS - present) if present else {"lesson_assets"}
        if not has_state.fetchall():
            missing.add("videopoll_state")
    detail = "tables present" if not missing else f"missing: {', '.join(sorted(missing))}"
    return ("local schema", not missing, detail)


def check_storage(bucket_dir: Path) -> tuple[str, bool, str]:
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
                              service="store")
    return key


@contextmanager
def disk(what: str = "local storage") -> Iterator[None]:
    """File-system failures are the store failing: transiently (a full disk frees up), like a
    5xx, with the errno's name and the file in one line."""
    try:
        yield
    except OSError as exc:
        raise disk_error(exc, what) from exc


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
