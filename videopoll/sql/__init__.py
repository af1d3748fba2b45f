"""The SQL migration a Supabase project applies (DESIGN section 7)."""

from __future__ import annotations

from importlib.resources import files


def schema_sql() -> str:
    """The idempotent migration, as `videopoll schema` prints it."""
    return files(__package__).joinpath("schema.sql").read_text(encoding="utf-8")
