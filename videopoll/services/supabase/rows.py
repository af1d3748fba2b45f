"""Rows as they cross the Supabase edge: the columns videopoll reads (lesson_assets with its
bookkeeping embedded), a row parsed into `VideoAsset`, and the keys and ids it sends."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from ...errors import ProtocolError, RequestRejected
from ...model import Status, VideoAsset
from .errors import SERVICE

# videopoll's bookkeeping lives in its own table, videopoll_assets (one row per asset, or
# none); PostgREST embeds it into each lesson_assets row as one object (a one-to-one
# relationship: its key is both its primary key and a foreign key to lesson_assets.id).
BOOKKEEPING = "videopoll_assets"
COLUMNS = ("id,lesson_id,user_id,status,conversation_id,start_task_id,storage_path,error,"
           "attempts,metadata->>github_path,finished_at,created_at,updated_at,"
           f"{BOOKKEEPING}(claimed_by,claimed_until,mismatches,retried_at)")
PENDING = [str(s) for s in (Status.STARTING, Status.GENERATING, Status.FINISHED,
                            Status.TRANSFERRING)]


_KEY = re.compile(r"[A-Za-z0-9_/!.*'() &$=@;:+,?-]+\Z")  # Storage's VALID_OBJECT_KEY


def check_key(key: str) -> str:
    """An object key Storage accepts and that stays inside the bucket."""
    if not _KEY.match(key) or any(p in ("", ".", "..") for p in key.split("/")):
        raise RequestRejected(f"store: object key {key!r} is not a safe Storage key",
                              service=SERVICE)
    return key


def valid_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _ts(raw: Any) -> datetime | None:
    return datetime.fromisoformat(raw) if raw else None


def asset_row(row: dict[str, Any]) -> VideoAsset:
    """A lesson_assets row with its bookkeeping embedded under "videopoll_assets" (an object,
    or null when the asset has none yet) as `VideoAsset`."""
    try:
        github_path = row.get("github_path") or (row.get("metadata") or {}).get("github_path")
        book = row.get(BOOKKEEPING) or {}
        if not isinstance(book, dict):
            raise TypeError(f"{BOOKKEEPING} is not an object")
        return VideoAsset(
            id=row["id"], lesson_id=row["lesson_id"], status=Status(row["status"]),
            created_at=datetime.fromisoformat(row["created_at"]),
            updated_at=datetime.fromisoformat(row["updated_at"]),
            conversation_id=row.get("conversation_id"), start_task_id=row.get("start_task_id"),
            user_id=row.get("user_id"), storage_path=row.get("storage_path"),
            error=row.get("error"), attempts=row.get("attempts") or 0,
            mismatches=book.get("mismatches") or 0, github_path=github_path,
            finished_at=_ts(row.get("finished_at")), claimed_by=book.get("claimed_by"),
            claimed_until=_ts(book.get("claimed_until")), retried_at=_ts(book.get("retried_at")))
    except (KeyError, ValueError, TypeError) as exc:
        raise ProtocolError(f"store: unexpected lesson_assets row ({exc})",
                            service=SERVICE) from exc
