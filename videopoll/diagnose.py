"""Runs doctor's checks against whichever services are configured."""

from __future__ import annotations

from .doctor import Check, config_checks, run_check
from .errors import VideopollError
from .runtime import Runtime
from .settings import Settings


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
            if "github" in ready:
                checks += await run_check("github", rt.artifacts.check)
    except VideopollError as exc:  # the store could not even be opened
        checks.append(Check("store", False, exc.message,
                            refused=exc.exit_code == 3))
    return checks
