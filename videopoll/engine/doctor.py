"""`doctor`'s checks: configuration, then each configured service's own checks (credentials,
reachability, the bucket, the migration), then whether the pending videos' conversations are
visible with this key. A refused credential or a dead service is a failed check, never an
exception: doctor always reports every check it could run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..errors import AuthError, VideopollError
from ..model import Service, normalise_id
from ..ports import AgentAPI, Rows
from ..reports import Check
from ..settings import Settings

SAMPLE = 99  # one batch: enough to tell a wrong account from a few lost conversations
Probe = Callable[[], Awaitable[list[tuple[str, bool, str]]]]


def config_checks(settings: Settings) -> list[Check]:
    checks = [Check("config: store", True, f"VIDEOPOLL_STORE={settings.store}")]
    for service in Service:
        missing = settings.missing(service)
        if missing:
            checks.append(Check(f"config: {service}", False,
                                f"{', '.join(missing)} not set (environment or .env)"))
    return checks


def refused(name: str, exc: AuthError, settings: Settings) -> Check:
    """A refused credential as a failed check, naming the variable to fix."""
    return Check(name, False, exc.message, refused=True,
                 hint=exc.hint or settings.refused_hint(exc.service))


async def run_check(name: str, probe: Probe, settings: Settings) -> list[Check]:
    """Await an adapter's checks; a refused credential or a dead service is one failed row."""
    try:
        return [Check(n, ok, detail) for n, ok, detail in await probe()]
    except AuthError as exc:
        return [refused(name, exc, settings)]
    except VideopollError as exc:
        return [Check(name, False, exc.message)]


async def visible(store: Rows, agent: AgentAPI) -> list[tuple[str, bool, str]]:
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
