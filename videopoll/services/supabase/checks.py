"""doctor's checks of a Supabase project: the key's role, the API, the bucket and the
migration's state. They read the project through `Inspectable`, not the store class, so the
store can call them without an import cycle."""

from __future__ import annotations

import base64
import json
from typing import Any, Protocol

from ...errors import AuthError, ConfigError, VideopollError
from .errors import MIGRATION_HINT
from .rows import BOOKKEEPING


class Inspectable(Protocol):
    """What the checks read of a Supabase store."""

    url: str
    bucket: str

    async def schema_report(self) -> dict[str, Any] | None: ...

    async def bucket_info(self) -> dict[str, Any]: ...


# What the migration creates; `check()` compares videopoll_schema_check() with these.
EXPECTED_COLUMNS = frozenset({  # added to lesson_assets: what the app reads
    "status", "error", "attempts", "finished_at", "updated_at", "start_task_id"})
EXPECTED_BOOKKEEPING = frozenset({  # videopoll_assets
    "asset_id", "claimed_by", "claimed_until", "mismatches", "retried_at", "upload_url",
    "upload_digest", "upload_offset", "upload_prefix_sha256", "updated_at"})
# What an earlier migration kept in lesson_assets; still there means not upgraded.
MOVED_COLUMNS = EXPECTED_BOOKKEEPING - {"asset_id", "updated_at"}
EXPECTED_FUNCTIONS = frozenset({
    "videopoll_apply", "videopoll_pending", "videopoll_transitions", "videopoll_now",
    "videopoll_record_error",
    "videopoll_retry", "videopoll_save_upload", "videopoll_schema_check"})


def key_role(key: str) -> str | None:
    """The `role` claim of a legacy JWT key, unverified (doctor's hint only)."""
    try:
        payload = key.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims.get("role")) if isinstance(claims, dict) else None
    except (IndexError, ValueError):
        return None


async def run_checks(store: Inspectable, role: str | None) -> list[tuple[str, bool, str]]:
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
