"""Commands that change what is pending: `generate` and `retry`."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import UsageError
from ..model import Cause, Service, Status, VideoAsset
from .options import DryRun, Json
from .session import ALL, STORE, Session

if TYPE_CHECKING:
    from ..reports import Generated, Retried
    from ..runtime import Runtime  # imported to run, not for --help (httpx)


def generate(
    lesson: Annotated[str, typer.Argument(help="The lesson's id (a UUID in `lessons`).")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the agent has started.")
                    ] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace the lesson's pending video: it is failed (\"replaced by a "
                        "new video\") and a new one starts.")] = False,
    json: Json = False,
) -> None:
    """Start an agent conversation that renders the lesson's video, and track it.

    Writes the pending row first, then starts the conversation under an id chosen here, so
    running it again (after an interruption) resumes that row instead of starting a second
    agent. The next `poll` (or --wait) follows the start; a later one stores the video.

    Example:

      videopoll generate 7d1f0c7e-1f52-4a53-9d0c-1b9e4c6f0a11 --wait
    """
    from ..engine.generate import generate as start
    from ..engine.generate import wait_started
    from ..reports import Generated

    session = Session.start(json=json)
    out, settings = session.out, session.settings

    async def work(rt: Runtime) -> Generated:
        row = await start(rt.store, rt.agent, settings, lesson, force=force)
        if wait and row.status is Status.STARTING:
            out.say(f"started task {row.start_task_id}; waiting for the conversation…")
            row = await wait_started(rt.store, rt.agent, row, timeout=settings.interval * 10,
                                     every=min(2.0, settings.interval))
        return Generated(row)

    out.emit(session.run(ALL, work))


def retry(
    asset: Annotated[str | None, typer.Argument(help="The failed asset's id.")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Every failed video.")] = False,
    dry_run: DryRun = False,
    json: Json = False,
) -> None:
    """Put failed videos back, each the way its failure calls for, keeping their error
    history (a redrive).

    A video whose agent failed (its own error, stuck, not found, no file on GitHub) gets a
    new conversation on the same row, as `generate --force` would start one: this needs
    OPENHANDS_API_KEY and VIDEOPOLL_GITHUB_REPO. A video whose transfer failed (the file
    was there but could not be stored) goes back to generating and the next pass transfers
    it again. --dry-run shows which, and why each failed, changing nothing.

    Examples:

      videopoll retry --failed --dry-run

      videopoll retry 0b6c0a57-7c39-4e3a-9d38-0a1e2d3c4b5a
    """
    from ..engine.redrive import Start, cause_of, failed_rows, redrive
    from ..reports import Retried

    if (asset is None) == (not failed):
        raise UsageError("give either an asset id or --failed")
    wanted = None if asset is None else asset_id(asset)
    session = Session.start(json=json)
    settings = session.settings

    async def work(rt: Runtime) -> Retried:
        from ..engine.generate import load_template, start_again

        rows = await failed_rows(rt.store, wanted)
        start: Start | None = None
        if not dry_run and any(cause_of(row) is Cause.AGENT for row in rows):
            # Everything a new conversation needs, checked before any row changes.
            settings.require(Service.OPENHANDS, Service.GITHUB)
            load_template(settings.prompt_file)

            async def start(row: VideoAsset) -> VideoAsset:
                return await start_again(rt.store, rt.agent, settings, row)
        done = await redrive(rt.store, rows, dry_run=dry_run, start=start)
        return Retried([(d.row, d.reason, d.cause) for d in done], dry_run)

    session.out.emit(session.run(STORE, work))


def asset_id(raw: str) -> str:
    """An asset id is a UUID; anything else is a usage error (exit 2)."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        shown = raw.encode("unicode_escape").decode("ascii")[:80]
        raise UsageError(f"not an asset id (a UUID): {shown}") from None
