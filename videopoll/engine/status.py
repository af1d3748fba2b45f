"""`status <id>`: one video or conversation, explained from all three services.

The id may be a conversation id, an asset id, or a prefix of any id the tables show (asset,
lesson or conversation, as the 8 characters `watch` prints): the store says which row it
names, and a prefix that names more than one is refused with the candidates.
"""

from __future__ import annotations

import uuid

from ..errors import NotFound, ServiceError, UsageError
from ..model import HEX, Service, VideoAsset, normalise_id
from ..ports import AgentAPI, ArtifactSource, Rows
from ..reports import StatusReport

MIN_PREFIX = 4  # hex digits of an id prefix (git's minimum too)
CANDIDATES = 10  # an ambiguous prefix lists at most this many rows


def id_or_prefix(raw: str) -> str:
    """An id as `status` takes it: hex digits (dashes and case ignored), at least
    MIN_PREFIX of them, at most 32; anything else is a usage error (exit 2)."""
    bare = raw.strip().replace("-", "").lower()
    if not HEX.fullmatch(bare) or not MIN_PREFIX <= len(bare) <= 32:
        shown = raw.encode("unicode_escape").decode("ascii")[:80]
        raise UsageError(f"not an id: {shown}", hint="give a conversation or asset id, or at "
                          f"least {MIN_PREFIX} of its first characters as the tables show them")
    return bare


def _label(row: VideoAsset) -> str:
    return (f"asset {row.id} (lesson {row.lesson_id[:8]}, conversation "
            f"{(row.conversation_id or '-')[:8]}, {row.status})")


async def find(store: Rows, raw: str) -> tuple[str | None, VideoAsset | None]:
    """What `raw` names: (conversation id, the row asked about, if it was a row's id). A full
    id is an asset's when the store has that asset, else a conversation's (which the store
    may not track); a shorter one must be the prefix of one row's ids, or of rows that share
    one conversation."""
    bare = id_or_prefix(raw)
    if len(bare) == 32:
        row = await store.get(str(uuid.UUID(bare)))
        if row is not None:
            return (normalise_id(row.conversation_id) if row.conversation_id else None), row
    rows = await store.by_prefix(bare, limit=CANDIDATES + 1)
    if not rows and len(bare) == 32:
        return bare, None  # a conversation the store does not track: OpenHands may know it
    if not rows:
        raise NotFound(f"no video's asset, lesson or conversation id starts with {bare}")
    targets = {normalise_id(r.conversation_id or "") or r.id for r in rows}
    if len(targets) > 1:
        shown = "\n  ".join(_label(r) for r in rows[:CANDIDATES])
        more = "\n  …" if len(rows) > CANDIDATES else ""
        raise UsageError(f"{bare} is ambiguous; it starts the ids of:\n  {shown}{more}",
                          hint="give more characters of the id")
    row = rows[0]
    cid = normalise_id(row.conversation_id or "")
    return cid, (row if cid is None or len(rows) == 1 else None)


async def explain(store: Rows, agent: AgentAPI, artifacts: ArtifactSource, raw: str
                  ) -> StatusReport:
    """The agent's state, the rows that follow the conversation, and its file on GitHub."""
    cid, asked = await find(store, raw)
    state = (await agent.states([cid])).get(cid) if cid is not None else None
    if state is not None and state.lookup_error:
        # A pass defers such a row; a report would print "generating" it does not know.
        raise ServiceError(state.lookup_error, service=Service.OPENHANDS)
    assets = await store.by_conversation(cid) if cid is not None else []
    if asked is not None and all(a.id != asked.id for a in assets):
        assets = [asked, *assets]
    if state is None and not assets:
        raise NotFound(f"conversation {cid} is unknown to OpenHands and to the store")
    paths = [a.github_path for a in assets if a.github_path]
    artifact = None
    if paths:
        refs = await artifacts.find(paths)
        artifact = next((ref for ref in refs.values() if ref is not None), None)
    return StatusReport(cid, state, assets, artifact)
