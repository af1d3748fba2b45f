"""Commands that look without changing anything: `status` and `pending`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from ..reports import RowList
from .options import Json, Limit
from .session import ALL, STORE, Session

if TYPE_CHECKING:
    from ..runtime import Runtime  # imported to run, not for --help (httpx)


def status(
    conversation: Annotated[str, typer.Argument(help="OpenHands conversation id.")],
    json: Json = False,
) -> None:
    """Explain one conversation: the agent's state, its row(s), and the file on GitHub.

    Example:

      videopoll status 4f9c2a0e5b7d4c1e9a8b7c6d5e4f3a2b
    """
    from ..engine.status import conversation_id, explain

    conversation_id(conversation)  # a malformed id is a usage error before any request
    session = Session.start(json=json)
    session.out.emit(session.run(ALL, lambda rt: explain(rt.store, rt.agent, rt.artifacts,
                                                         conversation)))


def pending(limit: Limit = None, json: Json = False) -> None:
    """List the videos still waiting, oldest first (reads the store only).

    Example:

      videopoll pending --json
    """
    session = Session.start(json=json)

    async def rows(rt: Runtime) -> RowList:
        return RowList(await rt.store.pending(limit), datetime.now(UTC))

    session.out.emit(session.run(STORE, rows))
