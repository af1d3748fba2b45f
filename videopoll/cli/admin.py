"""Commands that set up and check: `doctor` and `schema`."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import AuthError, VideopollError
from ..model import Service
from ..settings import Settings
from .options import Json
from .session import Session, finish, run_async

if TYPE_CHECKING:
    from ..reports import DoctorReport


def doctor(
    fix: Annotated[bool, typer.Option("--fix", help="Create the bucket if it is missing.")
                   ] = False,
    json: Json = False,
) -> None:
    """Check configuration, credentials and reachability of each service.

    Exit 0 when every check passes, 1 when one fails, 3 when a credential is refused.

    Example:

      videopoll doctor --json
    """
    session = Session.start(json=json)
    report = run_async(diagnose(session.settings, fix=fix))
    session.out.emit(report)
    finish(report.exit_code)


def schema(json: Json = False) -> None:
    """Print the SQL migration a Supabase project applies (idempotent).

    Example:

      videopoll schema | psql -v ON_ERROR_STOP=1 --single-transaction "$DATABASE_URL"
    """
    from ..reports import Schema
    from ..sql import schema_sql

    Session.start(json=json).out.emit(Schema(schema_sql()))


async def diagnose(settings: Settings, *, fix: bool = False) -> DoctorReport:
    """Every check that can run with what is configured; a missing setting, or a store that
    cannot be opened, is a failed check, not an early exit. Without `fix` nothing is
    created: a local home without a store is reported, not made."""
    from ..engine.doctor import config_checks, refused, run_check, visible
    from ..reports import Check, DoctorReport
    from ..runtime import Runtime

    checks = config_checks(settings)
    ready = frozenset(s for s in Service if not settings.missing(s))
    async with AsyncExitStack() as stack:
        try:
            rt = await stack.enter_async_context(Runtime(settings, need=ready,
                                                         create_store=fix))
        except VideopollError as exc:
            if Service.STORE not in ready:
                raise
            checks.append(refused(Service.STORE, exc, settings) if isinstance(exc, AuthError)
                          else Check(Service.STORE, False, exc.message, hint=exc.hint))
            ready -= {Service.STORE}
            rt = await stack.enter_async_context(Runtime(settings, need=ready))
        if Service.STORE in ready:
            if fix:
                checks += await run_check("store: bucket", rt.store.ensure_bucket, settings)
            checks += await run_check(Service.STORE, rt.store.check, settings)
        if Service.OPENHANDS in ready:
            checks += await run_check(Service.OPENHANDS, rt.agent.check, settings)
            if Service.STORE in ready:
                checks += await run_check("openhands: pending conversations",
                                          lambda: visible(rt.store, rt.agent), settings)
        if Service.GITHUB in ready:
            checks += await run_check(Service.GITHUB, rt.artifacts.check, settings)
    return DoctorReport(checks)
