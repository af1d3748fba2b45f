"""Pure builders from results to rich renderables and JSON text (no I/O here).

`view(result)` is the human form of every command's result (`reports`, `model.PassSummary`);
`Output.emit` prints it, or the result's `to_json()` under `--json`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import singledispatch

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..model import Action, Cause, PassSummary, Status, VideoAsset, iso, size
from ..reports import (
    DemoResult,
    DoctorReport,
    Generated,
    Retried,
    RowList,
    Schema,
    Skipped,
    StatusReport,
)
from .board import Board, Line, line_of

STATE_STYLE = {
    Status.STARTING: "cyan", Status.GENERATING: "yellow", Status.FINISHED: "blue",
    Status.TRANSFERRING: "magenta", Status.READY: "green", Status.FAILED: "red",
}


# -- a pass ---------------------------------------------------------------------------------

def summary_table(summary: PassSummary) -> Table:
    table = Table(title=f"Pass at {iso(summary.timestamp)}", title_justify="left")
    counts = summary.counts()
    for counter, _ in counts:
        table.add_column(counter.label, justify="right")
    table.add_row(*(str(n) for _, n in counts))
    return table


def items_table(summary: PassSummary) -> Table:
    """One row per video: lesson, state, age, last change, and what happened."""
    return lines_table([line_of(item) for item in summary.items], now=summary.timestamp)


def board_table(board: Board) -> Table:
    """`watch`'s live table: the last pass's rows (a transfer under way shown as such), then
    the recent outcomes kept on screen, dimmed, with how long ago they happened."""
    table = lines_table(board.lines, now=board.now)
    if board.past:
        table.caption = (f"ready and failed videos stay listed {age_span(board.keep_for)} "
                         f"after they leave the pending set (the last {board.keep_max})")
        table.caption_justify = "left"
    return table


def lines_table(lines: list[Line], *, now: datetime) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    for column in ("video", "lesson", "state", "age", "changed", "action", "detail"):
        table.add_column(column, overflow="fold")
    for i, line in enumerate(lines):
        if line.past and i and not lines[i - 1].past:
            table.add_section()  # pending rows above, outcomes kept from earlier passes below
        detail = line.detail
        if line.transfer is not None:
            done, total = line.transfer
            detail = f"{done * 100 // max(total, 1)}% of {size(total)}"
        table.add_row(line.asset_id[:8], line.lesson_id[:8],
                      Text(str(line.state), style=STATE_STYLE.get(line.state, "")),
                      age(now, line.created_at) if line.created_at else "",
                      f"{age(now, line.changed_at)} ago" if line.changed_at else "",
                      "" if line.action is Action.NONE else str(line.action), detail,
                      style="dim" if line.past else None)
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


def age(now: datetime, then: datetime) -> str:
    return age_span((now - then).total_seconds())


def age_span(seconds_: float) -> str:
    """A duration as the tables show ages: 45s, 10m, 2h05m."""
    seconds = max(0, int(seconds_))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def rows_table(rows: list[VideoAsset], *, now: datetime, title: str,
               causes: Mapping[str, Cause] | None = None) -> Table:
    """The rows; with `causes` (the listings that hold failed rows, newest first) ids are cut
    to the 8 characters `status` accepts, and a column says why each failed one failed and
    what `retry` would do about it."""
    table = Table(title=f"{len(rows)} {title}", title_justify="left")
    columns = ["asset", "lesson", "status", "conversation", "age", "attempts", "error"]
    for column in columns + (["cause → retry"] if causes is not None else []):
        table.add_column(column, overflow="fold")
    short = causes is not None

    def cut(text: str) -> str:
        return text[:8] if short else text

    for row in rows:
        cells: list[RenderableType] = [
            cut(row.id), cut(row.lesson_id),
            Text(str(row.status), style=STATE_STYLE.get(row.status, "")),
            cut(row.conversation_id) if row.conversation_id else
            (f"task {cut(row.start_task_id)}" if row.start_task_id else "-"),
            age(now, row.created_at), str(row.attempts), row.error or ""]
        if causes is not None:
            cause = causes.get(row.id)
            cells.append(f"{cause} → {RETRY_SHORT[cause]}" if cause else "")
        table.add_row(*cells)
    return table


RETRY_SHORT = {Cause.AGENT: "new conversation", Cause.TRANSFER: "transfer again"}


# -- every result, for people ---------------------------------------------------------------

@singledispatch
def view(result: object) -> RenderableType:
    raise TypeError(f"no view for {type(result).__name__}")


@view.register
def _(summary: PassSummary) -> RenderableType:
    parts: list[RenderableType] = [summary_table(summary)]
    if summary.items:
        parts.append(items_table(summary))
    parts.extend(Text(line) for line in closing_lines(summary))
    return Group(*parts)


@view.register
def _(listed: RowList) -> RenderableType:
    return rows_table(listed.rows, now=listed.now, title=listed.title, causes=listed.causes)


@view.register
def _(report: StatusReport) -> RenderableType:
    title = f"conversation {report.conversation_id}" if report.conversation_id else \
        f"asset {report.assets[0].id if report.assets else '?'} (no conversation yet)"
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    agent = report.agent
    if agent is None:
        table.add_row("agent", "unknown to OpenHands")
    else:
        table.add_row("agent", f"{agent.state} (sandbox {agent.sandbox_status}, "
                               f"execution {agent.execution_status})")
        if agent.reason:
            table.add_row("reason", agent.reason)
    for row in report.assets:
        table.add_row("asset", f"{row.id} {row.status} {row.github_path or ''}"
                               + (f" error: {row.error}" if row.error else ""))
    if not report.assets:
        table.add_row("asset", "no row in lesson_assets")
    artifact = report.artifact
    if artifact is None:
        table.add_row("GitHub", "not there yet")
    else:
        lfs = ", Git LFS" if artifact.lfs else ""
        table.add_row("GitHub", f"{artifact.path} ({size(artifact.size)}{lfs})")
    return table


@view.register
def _(made: Generated) -> RenderableType:
    row = made.row
    return Text(f"{row.id} {row.status} lesson={row.lesson_id} "
                f"conversation={row.conversation_id or '-'} task={row.start_task_id or '-'}\n"
                f"the agent will commit {row.github_path}")


@view.register
def _(retried: Retried) -> RenderableType:
    verb = "would retry" if retried.dry_run else "retried"
    lines = [f"{verb} {len(retried.rows)} video(s)"]
    for row, error, cause in retried.rows:
        failed = f"failed: {error or 'no reason recorded'}"
        if retried.dry_run:
            lines.append(f"  {row.id} {failed}\n    -> would {cause.redrive}")
        elif cause is Cause.AGENT:
            lines.append(f"  {row.id} {failed}\n    -> {row.status}: new conversation "
                         f"{row.conversation_id}")
        else:
            lines.append(f"  {row.id} {failed}\n    -> {row.status}: the next pass transfers "
                         "it again")
    return Text("\n".join(lines))


@view.register
def _(report: DoctorReport) -> RenderableType:
    table = Table(title="videopoll doctor", title_justify="left")
    for column in ("check", "ok", "detail"):
        table.add_column(column, overflow="fold")
    for check in report.checks:
        mark = Text("✔", style="green") if check.ok else Text("✘", style="red")
        table.add_row(check.name, mark,
                      check.detail + (f"\nhint: {check.hint}" if check.hint else ""))
    return table


@view.register
def _(schema: Schema) -> RenderableType:
    # Piped into psql: every line exactly as written, never wrapped to the terminal.
    return Text(schema.sql.rstrip("\n"), no_wrap=True, overflow="ignore")


@view.register
def _(skipped: Skipped) -> RenderableType:
    return Text(f"skipped: {skipped.reason}")


@view.register
def _(demo: DemoResult) -> RenderableType:
    table = Table(title="demo result", title_justify="left")
    for column in ("lesson", "status", "stored as / reason"):
        table.add_column(column, overflow="fold")
    for title, row in demo.videos:
        table.add_row(title, Text(str(row.status), style=STATE_STYLE[row.status]),
                      row.storage_path or row.error or "")
    return Group(table, Text(f"{demo.passes} passes: {demo.processed} processed, "
                             f"{demo.failed} failed"))
