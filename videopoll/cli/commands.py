"""The subcommands. Each parses its options, opens a Runtime, calls one function, renders.

Heavy modules (httpx, supabase) are imported inside the commands so `--help` stays fast.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from ..ui.console import Output
from ..ui.records import LogStyle, PassLog
from ..ui.render import checks_table, rows_table, status_view
from .boundary import ALL, STORE, Json, Limit, app, finish, load_settings, run_async

LogFormat = Annotated[LogStyle | None, typer.Option(
    "--log-format", help="Write a log record per changed video to stderr, as text or JSON Lines.",
    case_sensitive=False)]


@app.command()
def poll(
    limit: Limit = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide, but change nothing.")
                       ] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any video failed.")
                      ] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="For cron: print only one line per stored or failed video.")
    ] = False,
    lock: Annotated[Path | None, typer.Option(
        "--lock", help="Skip the pass (exit 0) while another run holds this lock file.")
    ] = None,
    log_format: LogFormat = None,
    json: Json = False,
) -> None:
    """Run one pass over the pending videos and exit (for cron and CI).

    Asks OpenHands about every pending conversation at once, looks on GitHub only when one
    has finished, and stores each finished video in the bucket. With VIDEOPOLL_PING_URL
    set, pings a healthchecks.io-style URL before and after the pass.

    Example: videopoll poll --json
    Example (crontab): videopoll poll --quiet --lock ~/.cache/videopoll.lock
    """
    from .poll import run_poll
    from .unattended import pass_lock  # httpx: loaded only when a command runs, not for --help

    out = Output(json_mode=json)
    settings = load_settings(out)
    with pass_lock(lock) as held:
        if not held:
            out.say(f"another videopoll run holds {lock}; skipping this pass")
            return
        code = run_poll(settings, out, limit=limit, dry_run=dry_run, strict=strict,
                        quiet=quiet, log=PassLog(log_format, scrub=out.scrub))
    finish(code)


@app.command()
def watch(
    interval: Annotated[float | None, typer.Option(
        "--interval", min=0.01, help="Seconds between passes [default: VIDEOPOLL_INTERVAL].")
    ] = None,
    until_done: Annotated[bool, typer.Option("--until-done",
                                             help="Stop when nothing is pending.")] = False,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", min=0, help="Give up after S seconds (exit 1).")] = None,
    limit: Limit = None,
    log_format: LogFormat = None,
    json: Json = False,
) -> None:
    """Run passes until Ctrl+C, until nothing is pending (--until-done) or --timeout.

    On a terminal a live table shows each video; with --json one summary per pass is
    printed as a JSON line; otherwise one plain line per pass.

    Example: videopoll watch --interval 10 --until-done
    """
    from ..runtime import Runtime
    from .watch import watch_view

    out = Output(json_mode=json)
    settings = load_settings(out, interval=interval)

    async def go() -> int:
        async with Runtime(settings, need=ALL) as rt:
            return await watch_view(rt, out, interval=settings.interval,
                                    until_done=until_done, timeout=timeout, limit=limit,
                                    log=PassLog(log_format, scrub=out.scrub))

    finish(run_async(go()))


@app.command()
def status(
    conversation: Annotated[str, typer.Argument(help="OpenHands conversation id.")],
    json: Json = False,
) -> None:
    """Explain one conversation: the agent's state, its row(s), and the file on GitHub.

    Example: videopoll status 4f9c2a0e5b7d4c1e9a8b7c6d5e4f3a2b
    """
    from ..engine.status import conversation_id, explain
    from ..runtime import Runtime

    out = Output(json_mode=json)
    conversation_id(conversation)  # a malformed id is a usage error before any request
    settings = load_settings(out)

    async def go() -> None:
        async with Runtime(settings, need=ALL) as rt:
            report = await explain(rt.store, rt.agent, rt.artifacts, conversation)
        out.json(report) if json else out.show(status_view(report))

    run_async(go())


@app.command()
def pending(limit: Limit = None, json: Json = False) -> None:
    """List the videos still waiting, oldest first (reads the store only).

    Example: videopoll pending --json
    """
    from ..runtime import Runtime

    out = Output(json_mode=json)
    settings = load_settings(out)

    async def go() -> None:
        async with Runtime(settings, need=STORE) as rt:
            rows = await rt.store.pending(limit)
        if json:
            out.json([r.to_json() for r in rows])
        else:
            out.show(rows_table(rows, now=datetime.now(UTC)))

    run_async(go())


@app.command()
def generate(
    lesson: Annotated[str, typer.Argument(help="The lesson's id (a UUID in `lessons`).")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the agent has started.")
                    ] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Start another video even if one is pending.")] = False,
    json: Json = False,
) -> None:
    """Start an agent conversation that renders the lesson's video, and track it.

    Inserts a pending row; the next `poll` (or --wait) turns its start task into a
    conversation, and a later one stores the video.

    Example: videopoll generate 7d1f0c7e-1f52-4a53-9d0c-1b9e4c6f0a11 --wait
    """
    from ..engine.generate import generate as start
    from ..engine.generate import wait_started
    from ..runtime import Runtime

    out = Output(json_mode=json)
    settings = load_settings(out)

    async def go() -> None:
        async with Runtime(settings, need=ALL) as rt:
            row = await start(rt.store, rt.agent, settings, lesson, force=force)
            if wait:
                out.say(f"started task {row.start_task_id}; waiting for the conversation…")
                row = await wait_started(rt.store, rt.agent, row, timeout=settings.interval * 10,
                                         every=min(2.0, settings.interval))
        if json:
            out.json(row.to_json())
        else:
            out.line(f"{row.id} {row.status} lesson={row.lesson_id} "
                     f"conversation={row.conversation_id or '-'} task={row.start_task_id}")
            out.say(f"the agent will commit {row.github_path}")

    run_async(go())


@app.command()
def retry(
    asset: Annotated[str | None, typer.Argument(help="The failed asset's id.")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Every failed video.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show, change nothing.")] = False,
    json: Json = False,
) -> None:
    """Put failed videos back to pending, keeping their error history (a redrive).

    Example: videopoll retry --failed --dry-run
    """
    import uuid

    from ..errors import ConfigError, NotFound, Refused
    from ..runtime import Runtime

    if (asset is None) == (not failed):
        raise ConfigError("give either an asset id or --failed")
    if asset is not None:
        try:
            asset = str(uuid.UUID(asset))
        except ValueError:
            shown = asset.encode("unicode_escape").decode("ascii")[:80]
            raise ConfigError(f"not an asset id (a UUID): {shown}") from None
    out = Output(json_mode=json)
    settings = load_settings(out)

    async def go() -> None:
        async with Runtime(settings, need=STORE) as rt:
            if asset is not None:
                row = await rt.store.get(asset)
                if row is None:
                    raise NotFound(f"asset not found: {asset}")
                if row.status != "failed":
                    raise Refused(f"asset {asset} is {row.status}, not failed: nothing to retry")
            rows = await rt.store.retry(None if failed else [asset or ""], dry_run=dry_run)
        if json:
            out.json([r.to_json() for r in rows])
        else:
            verb = "would retry" if dry_run else "retried"
            out.line(f"{verb} {len(rows)} video(s)")
            for row in rows:
                out.line(f"  {row.id} -> {row.status} (was: {row.error or 'failed'})")

    run_async(go())


@app.command()
def doctor(
    fix: Annotated[bool, typer.Option("--fix", help="Create the bucket if it is missing.")
                   ] = False,
    json: Json = False,
) -> None:
    """Check configuration, credentials and reachability of each service.

    Exit 0 when every check passes, 1 when one fails, 3 when a credential is refused.

    Example: videopoll doctor --json
    """
    from ..engine.doctor import exit_code
    from .diagnose import diagnose

    out = Output(json_mode=json)
    checks = run_async(diagnose(load_settings(out), fix=fix))
    if json:
        out.json({"checks": [c.to_json() for c in checks]})
    else:
        out.show(checks_table([c.to_json() for c in checks]))
    finish(exit_code(checks))


@app.command()
def schema() -> None:
    """Print the SQL migration a Supabase project applies (idempotent).

    Example: videopoll schema | psql "$DATABASE_URL"
    """
    from ..sql import schema_sql

    typer.echo(schema_sql(), nl=False)


@app.command()
def demo(
    json: Json = False,
    home: Annotated[Path | None, typer.Option(
        "--home", help="Where to keep the demo's store [default: ./.videopoll/demo].")] = None,
) -> None:
    """Run the whole job on the embedded default: local store, local stand-ins of
    OpenHands and GitHub, three lessons generated and watched to the end.

    Needs no configuration and no network. Example: videopoll demo
    """
    from .demo import run_demo

    out = Output(json_mode=json)
    finish(run_async(run_demo(out, home or Path(".videopoll") / "demo")))

