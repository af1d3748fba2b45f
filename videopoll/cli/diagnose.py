"""Runs doctor's checks against whichever services are configured."""

from __future__ import annotations

from ..engine.doctor import Check, config_checks, run_check
from ..errors import VideopollError
from ..model import normalise_id
from ..ports import AgentAPI, Store
from ..runtime import Runtime
from ..settings import Settings

SAMPLE = 99  # one batch: enough to tell a wrong account from a few lost conversations


async def visible(store: Store, agent: AgentAPI) -> list[tuple[str, bool, str]]:
    """Are the pending rows' conversations visible with this key? None of them is the mark
    of a key of another account or another server (a pass then fails nothing)."""
    rows = [r for r in await store.pending(SAMPLE) if r.conversation_id]
    ids = [cid for r in rows if (cid := normalise_id(r.conversation_id or ""))]
    if not ids:
        return [("openhands: pending conversations", True, "none pending")]
    states = await agent.states(ids)
    known = sum(1 for cid in ids if states.get(cid) is not None)
    detail = f"{known} of {len(ids)} visible with this key"
    if known == 0:
        detail += ("; the key may belong to another account, or OPENHANDS_BASE_URL points "
                   "at another server")
    return [("openhands: pending conversations", known > 0, detail)]


async def diagnose(settings: Settings, *, fix: bool = False) -> list[Check]:
    checks = config_checks(settings)
    ready = frozenset(s for s in ("store", "openhands", "github") if not settings.missing(s))
    if "store" not in ready:
        return checks
    try:
        async with Runtime(settings, need=ready) as rt:
            if fix:
                checks += await run_check("store: bucket", rt.store.ensure_bucket)
            checks += await run_check("store", rt.store.check)
            if "openhands" in ready:
                checks += await run_check("openhands", rt.agent.check)
                checks += await run_check("openhands: pending conversations",
                                          lambda: visible(rt.store, rt.agent))
            if "github" in ready:
                checks += await run_check("github", rt.artifacts.check)
    except VideopollError as exc:  # the store could not even be opened
        checks.append(Check("store", False, exc.message,
                            refused=exc.exit_code == 3))
    return checks
