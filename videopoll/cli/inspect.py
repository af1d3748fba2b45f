"""Commands that look without changing anything: `status` and `pending`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import ConfigError
from ..model import Status
from .options import Json, Limit
from .session import ALL, STORE, Session

if TYPE_CHECKING:
    from ..reports import RowList
    from ..runtime import Runtime  # imported to run, not for --help (httpx)


def status(
    video: Annotated[str, typer.Argument(
        metavar="ID", help="A conversation or asset id, or a unique prefix (4+ characters) of "
                           "any id the tables show: asset, lesson or conversation.")],
    json: Json = False,
) -> None:
    """Explain one video: the agent's state, its row(s), and the file on GitHub.

    An 8-character id from `watch` or `pending` is enough; a prefix that starts more than one
    video's ids is refused (exit 2) with the candidates.

    Examples:

      videopoll status 0b6c0a57

      videopoll status 4f9c2a0e5b7d4c1e9a8b7c6d5e4f3a2b --json
    """
    from ..engine.status import explain, id_or_prefix

    id_or_prefix(video)  # a malformed id is a usage error before any request
    session = Session.start(json=json)
    session.out.emit(session.run(ALL, lambda rt: explain(rt.store, rt.agent, rt.artifacts,
                                                         video)))


def pending(
    limit: Limit = None,
    failed: Annotated[bool, typer.Option(
        "--failed", help="The failed videos instead, newest first, with why each failed "
                         "(agent or transfer: what `retry` would do).")] = False,
    every: Annotated[bool, typer.Option(
        "--all", help="Every video whatever its state (pending, ready, failed), newest "
                      "first; --limit 20 for the recent ones.")] = False,
    json: Json = False,
) -> None:
    """List the videos still waiting, oldest first (reads the store only).

    --failed lists the failed ones and --all every video, newest first; both add the cause
    of each failure (`cause` in JSON: agent or transfer, null unless failed).

    Examples:

      videopoll pending --json

      videopoll pending --failed

      videopoll pending --all --limit 20
    """
    from ..engine.redrive import cause_of
    from ..reports import RowList

    if failed and every:
        raise ConfigError("give --failed or --all, not both")
    session = Session.start(json=json)

    async def rows(rt: Runtime) -> RowList:
        now = datetime.now(UTC)
        if not (failed or every):
            return RowList(await rt.store.pending(limit), now)
        found = await rt.store.videos([Status.FAILED] if failed else None, limit)
        causes = {r.id: cause_of(r) for r in found if r.status is Status.FAILED}
        return RowList(found, now, "failed video(s)" if failed else "video(s), newest first",
                       causes)

    session.out.emit(session.run(STORE, rows))
