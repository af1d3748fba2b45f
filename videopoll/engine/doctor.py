"""`doctor`: configuration, credentials and reachability of each service, as checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import AuthError, ServiceError, VideopollError
from ..settings import Settings

SERVICES = ("store", "openhands", "github")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    refused: bool = False  # a service refused our credentials (exit 3)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def config_checks(settings: Settings) -> list[Check]:
    checks = [Check("config: store", True, f"VIDEOPOLL_STORE={settings.store}")]
    for service in SERVICES:
        missing = settings.missing(service)
        if missing:
            checks.append(Check(f"config: {service}", False,
                                f"{', '.join(missing)} not set (environment or .env)"))
    return checks


async def run_check(name: str, probe: Any) -> list[Check]:
    """Await an adapter's `check()`; a refused credential or a dead service is one row."""
    try:
        return [Check(n, ok, detail) for n, ok, detail in await probe()]
    except AuthError as exc:
        return [Check(name, False, exc.message, refused=True)]
    except ServiceError as exc:
        return [Check(name, False, exc.message)]
    except VideopollError as exc:
        return [Check(name, False, exc.message)]


def exit_code(checks: list[Check]) -> int:
    if any(c.refused for c in checks):
        return 3
    return 0 if all(c.ok for c in checks) else 1
