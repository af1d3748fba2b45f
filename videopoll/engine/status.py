"""`status <conversation>`: one conversation, explained from all three services."""

from __future__ import annotations

from ..errors import NotFound, UsageError
from ..model import normalise_id
from ..ports import AgentAPI, ArtifactSource, Rows
from ..reports import StatusReport


def conversation_id(raw: str) -> str:
    """32 hex chars, dashed or not; anything else is a usage error (exit 2)."""
    normal = normalise_id(raw)
    if normal is None:
        shown = raw.encode("unicode_escape").decode("ascii")[:80]
        raise UsageError(f"not a conversation id (32 hex characters, dashes allowed): {shown}")
    return normal


async def explain(store: Rows, agent: AgentAPI, artifacts: ArtifactSource, raw: str
                  ) -> StatusReport:
    """The agent's state, the rows that follow the conversation, and its file on GitHub."""
    cid = conversation_id(raw)
    state = (await agent.states([cid])).get(cid)
    assets = await store.by_conversation(cid)
    if state is None and not assets:
        raise NotFound(f"conversation {cid} is unknown to OpenHands and to the store")
    paths = [a.github_path for a in assets if a.github_path]
    artifact = None
    if paths:
        refs = await artifacts.find(paths)
        artifact = next((ref for ref in refs.values() if ref is not None), None)
    return StatusReport(cid, state, assets, artifact)
