"""`watch`: passes until Ctrl+C, nothing pending or a timeout; a live table on a terminal,
JSON Lines or one plain line per pass otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from ..model import PassSummary
from ..ui.console import Output
from ..ui.records import PassLog, summary_line
from .options import Json, Limit, LogFormat, Strict, duration
from .poll import report_pass
from .session import ALL, Session, finish

if TYPE_CHECKING:
    from rich.console import Group

    from ..runtime import Runtime


def watch(
    interval: Annotated[float | None, typer.Option(
        "--interval", parser=duration, metavar="DURATION",
        help="Time between passes, e.g. 30, 90s, 5m [default: VIDEOPOLL_INTERVAL].")] = None,
    until_done: Annotated[bool, typer.Option("--until-done",
                                             help="Stop when nothing is pending.")] = False,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", parser=duration, metavar="DURATION",
        help="Give up after this long, e.g. 600 or 10m (exit 1).")] = None,
    limit: Limit = None,
    strict: Strict = False,
    log_format: LogFormat = None,
    json: Json = False,
) -> None:
    """Run passes until Ctrl+C, until nothing is pending (--until-done) or --timeout.

    On a terminal a live table shows each video; with --json one summary per pass is
    printed as a JSON line; otherwise one plain line per pass. Exits 1 when the last pass
    met errors, on --timeout, and (--strict) when any video failed during the run.

    Examples:

      videopoll watch --interval 10 --until-done

      videopoll watch --until-done --strict --timeout 30m --json
    """
    session = Session.start(json=json, log_format=log_format, interval=interval)
    log = PassLog(log_format, scrub=session.out.scrub)
    finish(session.run(ALL, lambda rt: watch_view(
        rt, session.out, interval=session.settings.interval, until_done=until_done,
        timeout=timeout, limit=limit, log=log, strict=strict)))


async def watch_view(rt: Runtime, out: Output, *, interval: float, until_done: bool,
                     timeout: float | None, limit: int | None,
                     collect: list[PassSummary] | None = None,
                     log: PassLog | None = None, strict: bool = False,
                     clock: Callable[[], datetime] | None = None) -> int:
    """Run the engine's watch loop, rendering each pass; returns the exit code.
    Every pass's summary is appended to `collect` when given; `clock` (UTC) ages the rows."""
    from rich.console import Group  # the live table's: not loaded for --help
    from rich.live import Live

    from ..ui.board import LiveBoard
    from ..ui.progress import TransferBars, make_progress
    from ..ui.render import board_table, summary_table

    log = log or PassLog(None, scrub=out.scrub)
    last: list[PassSummary] = []
    failed = 0  # videos failed over the whole run, for --strict
    live = Live(console=out.out, auto_refresh=False, transient=False) \
        if not out.json_mode and out.live else None  # in this order: --json never loads rich
    board = LiveBoard(clock=clock or (lambda: datetime.now(UTC)))
    bars = None
    if live is not None:
        # Each progress call redraws the table too (at most every 0.1 s): a row with bytes
        # flowing reads `transferring` while its bar moves.
        bars = TransferBars(make_progress(out.out), lambda: live.update(view(), refresh=True))

    def view() -> Group:
        assert bars is not None
        now = board.board()
        parts = [summary_table(now.summary)] if now.summary else []
        if now.lines:
            parts.append(board_table(now))
        return Group(*parts, bars.progress)

    def on_bytes(asset_id: str, done: int, total: int) -> None:
        assert bars is not None
        board.progress(asset_id, done, total)
        bars(asset_id, done, total)

    def on_pass(summary: PassSummary) -> None:
        nonlocal failed
        last[:] = [summary]
        board.passed(summary)
        failed += summary.failed
        if collect is not None:
            collect.append(summary)
        report_pass(summary, out, log)
        if out.json_mode:
            out.emit(summary)
        elif live is not None:
            live.update(view(), refresh=True)
        else:
            out.line(summary_line(summary))

    poller = rt.poller(progress=on_bytes if bars is not None else None)
    try:
        if live is not None:
            live.start()
            live.update(view(), refresh=True)
        finished = await poller.watch(interval=interval, sleep=asyncio.sleep,
                                      until_done=until_done, timeout=timeout, limit=limit,
                                      on_pass=on_pass)
    finally:
        if live is not None:
            live.stop()
    if not finished:
        out.say(f"timed out after {timeout:g}s with videos still pending")
        return 1
    if strict and failed:
        out.say(f"{failed} video(s) failed during this run (--strict)")
        return 1
    return 1 if last and last[0].errors else 0
