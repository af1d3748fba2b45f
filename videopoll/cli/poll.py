"""`poll`: one pass and everything around it — the lock, the dead-man's-switch ping,
progress bars, the result, log records, GitHub Actions, the exit code."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ..model import Action, PassSummary
from ..ui import github_actions
from ..ui.console import Output
from ..ui.records import PassLog, summary_line
from .options import DryRun, Json, Limit, Lock, LogFormat, Strict
from .session import ALL, Session, finish

if TYPE_CHECKING:
    from ..runtime import Runtime


def poll(
    limit: Limit = None,
    dry_run: DryRun = False,
    strict: Strict = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="For cron: print only one line per stored or failed video (none "
                              "with --log-format: the records carry them).")] = False,
    lock: Lock = None,
    log_format: LogFormat = None,
    json: Json = False,
) -> None:
    """Run one pass over the pending videos and exit (for cron and CI).

    Asks OpenHands about every pending conversation at once, looks on GitHub only when one
    has finished, and stores each finished video in the bucket. With VIDEOPOLL_PING_URL
    set, pings a healthchecks.io-style URL before and after the pass.

    Examples:

      videopoll poll --json

      videopoll poll --quiet --lock ~/.cache/videopoll.lock   # from cron
    """
    from .unattended import Pinger, pass_lock  # httpx: loaded to run, not for --help

    session = Session.start(json=json, log_format=log_format)
    out, log = session.out, PassLog(log_format, scrub=session.out.scrub)
    with pass_lock(lock) as held:
        if not held:
            from ..reports import Skipped

            skipped = Skipped(f"another videopoll run holds {lock}")
            out.say(f"{skipped.reason}; skipping this pass")
            if json:
                out.emit(skipped)
            return
        pinger = Pinger(session.settings.ping_url, scrub=out.scrub)
        pinger.start()
        try:
            summary = session.run(ALL, lambda rt: one_pass(rt, out, limit, dry_run))
        except Exception as exc:
            pinger.finish(getattr(exc, "exit_code", 1), str(exc))
            pinger.report(out)
            raise
        code = exit_code(summary, strict)
        if quiet and not json:
            if log_format is None:
                for line in quiet_lines(summary):
                    out.line(line)
        else:
            out.emit(summary)
        report_pass(summary, out, log)
        pinger.finish(code, summary_line(summary))
        pinger.report(out)
    finish(code)


async def one_pass(rt: Runtime, out: Output, limit: int | None, dry_run: bool) -> PassSummary:
    """The pass, with a progress bar per transfer on a terminal."""
    if out.json_mode or not out.live:  # in this order: --json never loads rich
        return await rt.poller().poll_once(limit=limit, dry_run=dry_run)
    from ..ui.progress import TransferBars, make_progress

    with make_progress(out.err) as progress:
        return await rt.poller(progress=TransferBars(progress)).poll_once(
            limit=limit, dry_run=dry_run)


def exit_code(summary: PassSummary, strict: bool) -> int:
    """1 when the pass met errors, or (strict) when a video failed; else 0."""
    return 1 if summary.errors or (strict and summary.failed) else 0


def quiet_lines(summary: PassSummary) -> list[str]:
    """Cron's output: nothing on a quiet pass, one line per stored or failed video."""
    return [f"{i.action} {i.asset_id} lesson={i.lesson_id}: {i.detail}" for i in summary.items
            if i.action in (Action.STORED, Action.FAILED)]


def report_pass(summary: PassSummary, out: Output, log: PassLog) -> None:
    """What every pass leaves besides its result, for `poll` and `watch` alike: log records
    and, under GitHub Actions, the step summary and annotations."""
    log.summary(summary)
    if github_actions.enabled():
        github_actions.report(summary, out.raw, out.scrub)
