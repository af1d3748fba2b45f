"""The SQL migration a Supabase project applies (DESIGN section 7)."""

from __future__ import annotations

from importlib.resources import files

from ..states import TRANSITIONS


def schema_sql() -> str:
    """The idempotent migration, as `videopoll schema` prints it, with the state machine
    rendered into it from `model.TRANSITIONS` (written once, applied by every store)."""
    text = files(__package__).joinpath("schema.sql").read_text(encoding="utf-8")
    rows = ",\n         ".join(f"('{t.event}', '{t.source}', '{t.guard}', '{t.target}')"
                               for t in TRANSITIONS)
    return text.replace("{{TRANSITIONS}}", rows)
