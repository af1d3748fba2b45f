"""`poll`'s one pass with everything around it: progress bars, output, logs, GitHub Actions,
the dead-man's-switch ping and the exit code."""

from __future__ import annotations

from ..errors import VideopollError
from ..model import Action, PassSummary
from ..settings import Settings
from ..ui import github_actions as actions
from ..ui.console import Output
from ..ui.progress import TransferBars, make_progress
from ..ui.records import PassLog
from ..ui.render import summary_line, summary_view
from .boundary import run_async
from .unattended import Pinger


async def one_pass(settings: Settings, out: Output, *, limit: int | None, dry_run: bool
                   ) -> PassSummary:
    from ..runtime import Runtime

    async with Runtime(settings, need=frozenset({"store", "openhands", "github"})) as rt:
        if not out.live or out.json_mode:
            return await rt.poller().poll_once(limit=limit, dry_run=dry_run)
        with make_progress(out.err) as progress:
            return await rt.poller(progress=TransferBars(progress)).poll_once(
                limit=limit, dry_run=dry_run)


def exit_code(summary: PassSummary, strict: bool) -> int:
    return 1 if summary.errors or (strict and summary.failed) else 0


def quiet_lines(summary: PassSummary) -> list[str]:
    """Cron's output: nothing on a quiet pass, one line per stored or failed video."""
    return [f"{i.action} {i.asset_id} lesson={i.lesson_id}: {i.detail}" for i in summary.items
            if i.action in (Action.STORED, Action.FAILED)]


def run_poll(settings: Settings, out: Output, *, limit: int | None, dry_run: bool,
             strict: bool, quiet: bool, log: PassLog) -> int:
    pinger = Pinger(settings.ping_url, scrub=out.scrub)
    pinger.start()
    try:
        summary = run_async(one_pass(settings, out, limit=limit, dry_run=dry_run))
    except VideopollError as exc:
        pinger.finish(exc.exit_code, exc.message)
        for problem in pinger.problems:
            out.say(problem)
        raise
    code = exit_code(summary, strict)
    if out.json_mode:
        out.json(summary.to_json())
    elif quiet:
        for line in quiet_lines(summary):
            out.line(line)
    else:
        out.show(summary_view(summary))
    log.summary(summary)
    if actions.enabled():
        actions.report(summary, out.raw, out.scrub)
    pinger.finish(code, summary_line(summary))
    for problem in pinger.problems:
        out.say(problem)
    return code
