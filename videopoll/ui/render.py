"""Pure builders from result objects to rich renderables and JSON text (no I/O here)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..model import Action, PassSummary, Status, VideoAsset, iso

STATE_STYLE = {
    Status.STARTING: "cyan", Status.GENERATING: "yellow", Status.FINISHED: "blue",
    Status.TRANSFERRING: "magenta", Status.READY: "green", Status.FAILED: "red",
}


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def summary_table(summary: PassSummary) -> Table:
    table = Table(title=f"Pass at {iso(summary.timestamp)}", title_justify="left")
    for column in ("checked", "still generating", "found", "processed", "failed", "errors"):
        table.add_column(column, justify="right")
    table.add_row(str(summary.checked), str(summary.still_generating), str(summary.found),
                  str(summary.processed), str(summary.failed), str(len(summary.errors)))
    return table


def items_table(summary: PassSummary, *, progress: dict[str, tuple[int, int]] | None = None
                ) -> Table:
    """One row per video: lesson, state, age, last change, and what happened (or how far
    its transfer is)."""
    now = summary.timestamp
    table = Table(show_edge=False, pad_edge=False)
    for column in ("video", "lesson", "state", "age", "changed", "action", "detail"):
        table.add_column(column, overflow="fold")
    for item in summary.items:
        detail = item.detail
        if progress and item.asset_id in progress:
            done, total = progress[item.asset_id]
            detail = f"transferring {done * 100 // max(total, 1)}% of {total} bytes"
        table.add_row(item.asset_id[:8], item.lesson_id[:8],
                      Text(str(item.state), style=STATE_STYLE.get(item.state, "")),
                      age(now, item.created_at) if item.created_at else "",
                      f"{age(now, item.changed_at)} ago" if item.changed_at else "",
                      "" if item.action is Action.NONE else str(item.action), detail)
    return table


def closing_lines(summary: PassSummary) -> list[str]:
    """The original system's closing lines, plus failures and errors."""
    prefix = "(dry run) " if summary.dry_run else ""
    lines = []
    if summary.processed:
        lines.append(f"{prefix}✅ {summary.processed} video(s) ready!")
    if summary.failed:
        lines.append(f"{prefix}❌ {summary.failed} video(s) failed")
    if summary.still_generating:
        lines.append(f"⏳ {summary.still_generating} video(s) still generating…")
    if not summary.checked:
        lines.append("No pending videos.")
    lines.extend(f"⚠ {e.service}: {e.detail}" for e in summary.errors)
    return lines


def summary_view(summary: PassSummary) -> RenderableType:
    parts: list[RenderableType] = [summary_table(summary)]
    if summary.items:
        parts.append(items_table(summary))
    parts.extend(Text(line) for line in closing_lines(summary))
    return Group(*parts)


def summary_line(summary: PassSummary) -> str:
    """One plain line per pass, for logs and pipes."""
    return (f"{iso(summary.timestamp)} checked={summary.checked} "
            f"stillGenerating={summary.still_generating} found={summary.found} "
            f"processed={summary.processed} failed={summary.failed} "
            f"errors={len(summary.errors)}")


def rows_table(rows: Sequence[VideoAsset], *, now: datetime) -> Table:
    table = Table(title=f"{len(rows)} pending video(s)", title_justify="left")
    for column in ("asset", "lesson", "status", "conversation", "age", "attempts", "error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row.id, row.lesson_id,
                      Text(str(row.status), style=STATE_STYLE.get(row.status, "")),
                      row.conversation_id or (f"task {row.start_task_id}" if row.start_task_id
                                              else "-"),
                      age(now, row.created_at), str(row.attempts), row.error or "")
    return table


def age(now: datetime, then: datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def status_view(report: dict[str, Any]) -> RenderableType:
    table = Table(title=f"conversation {report['conversation_id']}", show_header=False,
                  title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    agent = report["agent"]
    if agent is None:
        table.add_row("agent", "unknown to OpenHands")
    else:
        table.add_row("agent", f"{agent['state']} (sandbox {agent['sandbox_status']}, "
                               f"execution {agent['execution_status']})")
        if agent.get("reason"):
            table.add_row("reason", agent["reason"])
    for row in report["assets"]:
        table.add_row("asset", f"{row['id']} {row['status']} {row['github_path'] or ''}"
                               + (f" error: {row['error']}" if row["error"] else ""))
    if not report["assets"]:
        table.add_row("asset", "no row in lesson_assets")
    artifact = report["artifact"]
    if artifact is None:
        table.add_row("GitHub", "not there yet")
    else:
        lfs = ", Git LFS" if artifact["lfs"] else ""
        table.add_row("GitHub", f"{artifact['path']} ({artifact['size']} bytes{lfs})")
    return table


def checks_table(checks: Sequence[dict[str, Any]]) -> Table:
    table = Table(title="videopoll doctor", title_justify="left")
    for column in ("check", "ok", "detail"):
        table.add_column(column, overflow="fold")
    for check in checks:
        mark = Text("✔", style="green") if check["ok"] else Text("✘", style="red")
        table.add_row(check["name"], mark, check["detail"])
    return table
