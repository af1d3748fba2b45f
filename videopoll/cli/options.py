"""The options commands share, declared once (`Annotated` types Typer reads)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..settings import DURATION_FORM, parse_duration
from ..ui.records import LogStyle


def duration(text: str) -> float:
    """A flag's duration as people type it: 30, 90s, 5m, 1h30m."""
    try:
        return parse_duration(text)
    except ValueError:
        raise typer.BadParameter(f"expected {DURATION_FORM}; got {text!r}") from None


Json = Annotated[bool, typer.Option("--json", help="Print JSON to stdout.")]
Limit = Annotated[int | None, typer.Option("--limit", min=1, help="At most N rows.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Decide and show, but change nothing.")]
LogFormat = Annotated[LogStyle | None, typer.Option(
    "--log-format", case_sensitive=False,
    help="Write log records (one per changed video, per error, per retry) to stderr, as text "
         "or JSON Lines.")]
Lock = Annotated[Path | None, typer.Option(
    "--lock", help="Skip the pass (exit 0) while another run holds this lock file.")]
Strict = Annotated[bool, typer.Option(
    "--strict", "--exit-status",
    help="Exit 1 when any video failed (as gh's --exit-status), not only on errors.")]
