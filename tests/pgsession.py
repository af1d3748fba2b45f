"""A throw-away PostgreSQL database set up like a Supabase project, for test sessions."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


def migrated_database(prefix: str) -> Iterator[str]:
    """Yield the DSN of a fresh database with Supabase's bootstrap and our migration; drop
    it afterwards. Skips (one line) only when no PostgreSQL is installed at all; a server
    that is installed but will not start fails the session loudly."""
    from videopoll.sandbox.pg import (
        PostgresUnavailable,
        apply_sql,
        bootstrap_supabase,
        ensure_server,
        fresh_database,
    )
    from videopoll.sql import schema_sql

    try:
        admin = ensure_server()
    except PostgresUnavailable as exc:
        if not exc.installed:
            pytest.skip(f"no PostgreSQL installed: {exc}")
        raise
    with fresh_database(prefix, dsn=admin) as dsn:
        bootstrap_supabase(dsn)
        apply_sql(dsn, schema_sql())
        yield dsn
