"""What crosses the Supabase edge: errors translated into videopoll's exception tree, rows
parsed into `VideoAsset`, and doctor's checks.

postgrest's `APIError` carries the body's `code` but no HTTP status, so the code decides;
storage3's `StorageApiError` carries the body's `statusCode` (Storage answers HTTP 400 for
everything but 500) and its legacy `error` string as `code`. Messages name the operation and
the server's short reason, never a key or a header value.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from postgrest.exceptions import APIError
from storage3.exceptions import StorageApiError

from ...errors import (
    AuthError,
    ConfigError,
    ProtocolError,
    RateLimited,
    RequestRejected,
    ServerError,
    VideopollError,
)
from ...model import Status, VideoAsset

if TYPE_CHECKING:
    from .store import SupabaseStore

SERVICE = "store"
MIGRATION_HINT = "apply the migration `videopoll schema` prints (Supabase SQL editor)"
# JWT refused, anonymous access, insufficient privilege; plain HTTP codes when the body was
# not PostgREST's (postgrest-py then uses the status as the code).
_AUTH = {"PGRST301", "PGRST302", "PGRST303", "42501", "28000", "28P01", "401", "403"}
# Unknown function, table or column: the migration is missing or older than this client.
# PGRST200: no relationship to embed (videopoll_assets is missing: an older migration).
_SCHEMA = {"PGRST200", "PGRST202", "PGRST204", "PGRST205", "42883", "42P01", "42703"}
_TRANSIENT_PREFIXES = ("08", "40", "53", "57", "58", "XX", "PGRST00")


def _short(text: object) -> str:
    return " ".join(str(text or "").split())[:200]


def rest_error(exc: APIError, what: str) -> VideopollError:
    """A PostgREST (or API gateway) error as videopoll's exception."""
    code = str(exc.code or "")
    message = _short(exc.message)
    text = f"store: {what}: {message}" + (f" ({code})" if code else "")
    # Supabase's gateway answers a missing or unknown apikey itself, without a code.
    if code in _AUTH or message.startswith(("Invalid API key", "No API key found")):
        return AuthError(text, service=SERVICE, status=401)
    if code in _SCHEMA:
        return ConfigError(f"{text}; the videopoll migration is missing or outdated",
                           hint=MIGRATION_HINT)
    if code == "429" or "rate limit" in message.lower():
        return RateLimited(text, service=SERVICE, status=429)
    if not code:
        # PostgREST always sends a code: a JSON error without one came from something in front
        # of it (gateway, proxy), and APIError does not keep the HTTP status.
        if "no Route matched" in message:
            return ConfigError(f"{text}; is SUPABASE_URL the project's API URL?")
        return ServerError(f"{text} (from the API gateway)", service=SERVICE)
    if code.startswith(_TRANSIENT_PREFIXES) or (code.isdigit() and int(code) >= 500):
        return ServerError(text, service=SERVICE, status=int(code) if code.isdigit() else 503)
    if code == "23505":  # a unique key: the row (or an open video of the lesson) exists
        return RequestRejected(text, service=SERVICE, status=409)
    return RequestRejected(text, service=SERVICE, status=int(code) if code.isdigit() else 400)


def storage_error(exc: StorageApiError, what: str, bucket: str) -> VideopollError:
    """A Storage error as videopoll's exception (a missing bucket is a configuration error)."""
    status, code, message = str(exc.status), str(exc.code), _short(exc.message)
    text = f"store: {what}: {message} (status {status})"
    if status == "404" and (code == "Bucket not found" or "Bucket not found" in message):
        return ConfigError(f"storage bucket {bucket!r} does not exist",
                           hint="set VIDEOPOLL_BUCKET or run `videopoll doctor --fix`")
    if status in ("401", "403") or code in ("Unauthorized", "InvalidJWT", "AccessDenied"):
        return AuthError(text, service=SERVICE, status=int(status) if status.isdigit() else 403)
    if status == "429":
        return RateLimited(text, service=SERVICE, status=429)
    if status.isdigit() and int(status) >= 500:
        return ServerError(text, service=SERVICE, status=int(status))
    return RequestRejected(text, service=SERVICE,
                           status=int(status) if status.isdigit() else 400)


# videopoll's bookkeeping lives in its own table, videopoll_assets (one row per asset, or
# none); PostgREST embeds it into each lesson_assets row as one object (a one-to-one
# relationship: its key is both its primary key and a foreign key to lesson_assets.id).
BOOKKEEPING = "videopoll_assets"
COLUMNS = ("id,lesson_id,user_id,status,conversation_id,start_task_id,storage_path,error,"
           "attempts,metadata->>github_path,finished_at,created_at,updated_at,"
           f"{BOOKKEEPING}(claimed_by,claimed_until,mismatches,retried_at)")
PENDING = [str(s) for s in (Status.STARTING, Status.GENERATING, Status.FINISHED,
                            Status.TRANSFERRING)]
# What the migration creates; `check()` compares videopoll_schema_check() with these.
EXPECTED_COLUMNS = frozenset({  # added to lesson_assets: what the app reads
    "status", "error", "attempts", "finished_at", "updated_at", "start_task_id"})
EXPECTED_BOOKKEEPING = frozenset({  # videopoll_assets
    "asset_id", "claimed_by", "claimed_until", "mismatches", "retried_at", "upload_url",
    "upload_digest", "upload_offset", "upload_prefix_sha256", "updated_at"})
# What an earlier migration kept in lesson_assets; still there means not upgraded.
MOVED_COLUMNS = EXPECTED_BOOKKEEPING - {"asset_id", "updated_at"}
EXPECTED_FUNCTIONS = frozenset({
    "videopoll_apply", "videopoll_transitions", "videopoll_now", "videopoll_record_error",
    "videopoll_retry", "videopoll_save_upload", "videopoll_schema_check"})


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
                            service="store") from exc


def key_role(key: str) -> str | None:
    """The `role` claim of a legacy JWT key, unverified (doctor's hint only)."""
    try:
        payload = key.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims.get("role")) if isinstance(claims, dict) else None
    except (IndexError, ValueError):
        return None


async def run_checks(store: SupabaseStore, role: str | None) -> list[tuple[str, bool, str]]:
    """doctor's checks of a Supabase store; raises AuthError when the key is refused."""
    checks: list[tuple[str, bool, str]] = []
    if role == "anon":
        return [("supabase key", False, "SUPABASE_SERVICE_ROLE_KEY holds the anon key; use "
                 "the service_role key (Project Settings > API)")]
    try:  # also proves the URL answers and the key is accepted
        report = await store.schema_report()
    except AuthError:
        raise
    except VideopollError as exc:  # unreachable, 5xx, a gateway in the way
        return [("supabase api", False, exc.message)]
    checks.append(("supabase api", True, f"{store.url} reachable, key accepted"))
    try:
        bucket = await store.bucket_info()
        checks.append(("supabase bucket", True, f"{bucket['id']} exists ("
                       + ("public" if bucket["public"] else "private") + ")"))
    except ConfigError:
        checks.append(("supabase bucket", False, f"bucket {store.bucket!r} is missing: run "
                       "`videopoll doctor --fix` or set VIDEOPOLL_BUCKET"))
    if report is None:
        checks.append(("supabase migration", False, "not applied: " + MIGRATION_HINT))
        return checks
    checks.append(("supabase migration", *_migration_state(report)))
    return checks


def _migration_state(report: dict[str, Any]) -> tuple[bool, str]:
    """(ok, detail) of videopoll_schema_check()'s report: complete, outdated (an earlier
    migration's shape, bookkeeping still in lesson_assets) or missing parts."""
    columns = set(report.get("columns", []))
    stale = sorted(MOVED_COLUMNS & columns)
    if stale or "bookkeeping_columns" not in report:
        where = (f"lesson_assets still holds {', '.join(stale)}" if stale
                 else f"no table {BOOKKEEPING}")
        return False, f"outdated ({where}): {MIGRATION_HINT}"
    missing = [f"column {c}" for c in sorted(EXPECTED_COLUMNS - columns)]
    missing += [f"column {BOOKKEEPING}.{c}" for c in
                sorted(EXPECTED_BOOKKEEPING - set(report.get("bookkeeping_columns", [])))]
    missing += [f"function {f}()" for f in
                sorted(EXPECTED_FUNCTIONS - set(report.get("functions", [])))]
    for flag, label in (("publication", "publication supabase_realtime"),
                        ("in_publication", "lesson_assets in supabase_realtime"),
                        ("replica_identity_full", "replica identity full"),
                        ("rls", "row-level security on lesson_assets"),
                        ("state_table", "table videopoll_state"),
                        ("one_open_video", "the one-open-video-per-lesson index (a lesson has "
                         "two open videos: fail or finish one, then migrate again)"),
                        ("bookkeeping_private", f"{BOOKKEEPING} private to service_role "
                         "(row-level security on, no policy or grant for anon/authenticated)")):
        if not report.get(flag):
            missing.append(label)
    if missing:
        return False, "missing: " + ", ".join(missing) + "; " + MIGRATION_HINT
    return True, "complete"
