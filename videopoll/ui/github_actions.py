"""GitHub Actions: a markdown step summary and annotations for failed videos and errors."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..model import Action, PassSummary


def enabled() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def _escape(text: str) -> str:
    # Workflow command data escaping (as actions/toolkit does), and no table breaks.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def annotation_lines(summary: PassSummary) -> list[str]:
    lines = [f"::error title=video failed::{_escape(f'{i.asset_id}: {i.detail}')}"
             for i in summary.items if i.action is Action.FAILED]
    lines += [f"::warning title={e.service}::{_escape(e.detail)}" for e in summary.errors]
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(summary: PassSummary) -> str:
    head = ("| checked | still generating | found | processed | failed | errors |\n"
            "|---:|---:|---:|---:|---:|---:|\n"
            f"| {summary.checked} | {summary.still_generating} | {summary.found} | "
            f"{summary.processed} | {summary.failed} | {len(summary.errors)} |\n")
    rows = [f"| `{i.asset_id[:8]}` | {i.state} | {i.action} | {_cell(i.detail)} |"
            for i in summary.items if i.action is not Action.NONE]
    body = ("\n| video | state | action | detail |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"
            if rows else "")
    return f"### videopoll pass\n\n{head}{body}\n"


def report(summary: PassSummary, write_err: Callable[[str], None],
           scrub: Callable[[str], str]) -> None:
    """Append the summary to $GITHUB_STEP_SUMMARY and emit the annotations (`write_err`
    scrubs its own lines; the summary file is written here, so scrubbed here)."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with Path(path).open("a", encoding="utf-8") as handle:
            handle.write(scrub(markdown(summary)))
    for line in annotation_lines(summary):
        write_err(line)
