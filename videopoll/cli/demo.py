"""`videopoll demo`: the whole job on the embedded default, with time compressed.

Three lessons get videos through the real `generate` path; the stand-in agent renders two
and fails the third; `watch --until-done` carries them to the end over real HTTP.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated

import typer

from ..model import PassSummary, Service, Status
from ..ui.console import Output
from .options import Json
from .session import Session, finish, run_async

LESSONS = ("Photosynthesis in five minutes", "The Pythagorean theorem",
           "Thermodynamics of black holes")
FAILS = LESSONS[2]
REASON = "render failed: the scene needs more memory than the sandbox has"
SPEED = {  # a day's waiting squeezed into seconds
    "VIDEOPOLL_INTERVAL": "0.5",
    "VIDEOPOLL_MAX_GENERATION": "120",
    "VIDEOPOLL_ARTIFACT_GRACE": "20",
    "VIDEOPOLL_LEASE": "30",
}


def demo(
    json: Json = False,
    home: Annotated[Path | None, typer.Option(
        "--home", help="Where to keep the demo's store [default: ./.videopoll/demo].")] = None,
) -> None:
    """Run the whole job on the embedded default: local store, local stand-ins of
    OpenHands and GitHub, three lessons generated and watched to the end.

    Needs no configuration and no network; --json prints one summary per pass (JSON Lines).

    Example:

      videopoll demo
    """
    out = Session.start(json=json).out
    finish(run_async(run_demo(out, home or Path(".videopoll") / "demo")))


def _fail_when(title: str | None, prompt: str) -> str | None:
    return REASON if FAILS in prompt else None


async def run_demo(out: Output, home: Path) -> int:
    """Run the demo in `home` (wiped first); exit 0 when 2 are stored and 1 failed."""
    from ..engine.generate import generate
    from ..reports import DemoResult
    from ..runtime import Runtime
    from ..sandbox.stack import Sandbox
    from ..services.local.store import LocalStore
    from ..settings import from_env
    from .watch import watch_view

    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    summaries: list[PassSummary] = []
    with Sandbox(step=0.1, run=1.5, fail_when=_fail_when) as sandbox:
        env = {**sandbox.env(home), **SPEED, "VIDEOPOLL_ENV_FILE": os.devnull}
        settings = from_env(env)
        out.say(f"stand-ins: OpenHands {sandbox.openhands.url}, GitHub {sandbox.github.url}, "
                f"repo {sandbox.repo}; local store in {home}")
        async with Runtime(settings, need=frozenset(Service)) as rt:
            local = rt.store
            assert isinstance(local, LocalStore)  # the demo always runs on the local store
            lessons = [local.add_lesson(title) for title in LESSONS]
            rows = []
            for lesson in lessons:
                row = await generate(rt.store, rt.agent, settings, lesson.id)
                rows.append(row)
                out.say(f"generate: {lesson.title!r} -> asset {row.id[:8]} "
                        f"(start task {row.start_task_id[:8] if row.start_task_id else '-'})")
            code = await watch_view(rt, out, interval=settings.interval, until_done=True,
                                    timeout=60, limit=None, collect=summaries)
            final = [await rt.store.get(row.id) or row for row in rows]
    result = DemoResult([(lesson.title, row) for lesson, row in zip(lessons, final, strict=True)],
                        len(summaries), sum(s.processed for s in summaries),
                        sum(s.failed for s in summaries))
    if not out.json_mode:  # --json: the summaries, one a pass, were the output
        out.emit(result)
        out.say(f"stored videos are in {(home / 'storage' / settings.bucket).resolve()}/videos/")
    ok = (result.processed, result.failed) == (2, 1) and \
        sum(r.status is Status.READY for r in final) == 2
    return code if ok else 1
