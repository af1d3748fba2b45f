"""`watch`'s display: a live table on a terminal, JSON Lines or plain lines otherwise."""

from __future__ import annotations

import asyncio

from rich.console import Group
from rich.live import Live

from ..model import PassSummary
from ..runtime import Runtime
from ..ui import github_actions as actions
from ..ui.console import Output
from ..ui.progress import TransferBars, make_progress
from ..ui.records import PassLog
from ..ui.render import items_table, summary_line, summary_table


async def watch_view(rt: Runtime, out: Output, *, interval: float, until_done: bool,
                     timeout: float | None, limit: int | None,
                     collect: list[PassSummary] | None = None,
                     log: PassLog | None = None) -> int:
    """Run the engine's watch loop, rendering each pass; returns the exit code.
    Every pass's summary is appended to `collect` when given."""
    last: list[PassSummary] = []
    live = Live(console=out.out, auto_refresh=False, transient=False) \
        if out.live and not out.json_mode else None
    bars = None
    if live is not None:
        progress = make_progress(out.out)
        bars = TransferBars(progress, live.refresh)

    def view() -> Group:
        assert bars is not None
        parts = [summary_table(last[0]), items_table(last[0], progress=bars.snapshot())] \
            if last else []
        return Group(*parts, bars.progress)

    def on_pass(summary: PassSummary) -> None:
        last[:] = [summary]
        if collect is not None:
            collect.append(summary)
        if log is not None:
            log.summary(summary)
        if actions.enabled():
            actions.report(summary, out.raw, out.scrub)
        if out.json_mode:
            out.json(summary.to_json())
        elif live is not None:
            live.update(view(), refresh=True)
        else:
            out.line(summary_line(summary))

    poller = rt.poller(progress=bars)
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
    return 1 if last and last[0].errors else 0
