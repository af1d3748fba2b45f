"""`videopoll demo`: the whole job on the embedded default, with time compressed.

Three lessons get videos through the real `generate` path; the stand-in agent renders two
and fails the third; `watch --until-done` carries them to the end over real HTTP.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rich.table import Table
from rich.text import Text

from ..engine.generate import generate
from ..model import PassSummary, Status
from ..runtime import Runtime
from ..sandbox.stack import Sandbox
from ..services.local.store import LocalStore
from ..settings import from_env
from ..ui.console import Output
from ..ui.render import STATE_STYLE
from .watch import watch_view

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


def _fail_when(title: str | None, prompt: str) -> str | None:
    return REASON if FAILS in prompt else None


async def run_demo(out: Output, home: Path) -> int:
    """Run the demo in `home` (wiped first); exit 0 when 2 are stored and 1 failed."""
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    summaries: list[PassSummary] = []
    with Sandbox(step=0.1, run=1.5, fail_when=_fail_when) as sandbox:
        env = {**sandbox.env(home), **SPEED, "VIDEOPOLL_ENV_FILE": os.devnull}
        settings = from_env(env)
        out.say(f"stand-ins: OpenHands {sandbox.openhands.url}, GitHub {sandbox.github.url}, "
                f"repo {sandbox.repo}; local store in {home}")
        async with Runtime(settings, need=frozenset({"store", "openhands", "github"})) as rt:
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
    processed = sum(s.processed for s in summaries)
    failed = sum(s.failed for s in summaries)
    if not out.json_mode:
        table = Table(title="demo result", title_justify="left")
        for column in ("lesson", "status", "stored as / reason"):
            table.add_column(column, overflow="fold")
        for lesson, row in zip(lessons, final, strict=True):
            table.add_row(lesson.title, Text(str(row.status), style=STATE_STYLE[row.status]),
                          row.storage_path or row.error or "")
        out.show(table)
        out.line(f"{len(summaries)} passes: {processed} processed, {failed} failed")
        bucket = home / "storage" / settings.bucket
        out.say(f"stored videos are in {bucket.resolve()}/videos/")
    ok = (processed, failed) == (2, 1) and sum(r.status is Status.READY for r in final) == 2
    return code if ok else 1
