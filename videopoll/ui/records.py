"""Log records of a pass on stderr: plain lines, or JSON Lines with `--log-format json`."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from ..model import Action, PassSummary, iso
from .console import LogStyle, Scrubber, write_record

__all__ = ["LogStyle", "PassLog", "summary_line"]

LEVEL = {Action.FAILED: "error", Action.DEFERRED: "warning"}


def summary_line(summary: PassSummary) -> str:
    """One plain line per pass, for logs and pipes."""
    counts = " ".join(f"{c.key}={n}" for c, n in summary.counts())
    return f"{iso(summary.timestamp)} {counts}"


class PassLog:
    """One record per video that changed (or was deferred) and per error; none otherwise."""

    def __init__(self, fmt: LogStyle | None, stream: TextIO | None = None, *,
                 scrub: Scrubber | None = None) -> None:
        self.fmt = fmt
        self.stream = stream
        self.scrub = scrub or Scrubber.from_environment()

    def emit(self, level: str, message: str, **fields: Any) -> None:
        if self.fmt is None:
            return
        write_record(self.stream or sys.stderr, self.fmt, self.scrub, level, message, **fields)

    def summary(self, summary: PassSummary) -> None:
        for item in summary.items:
            if item.action is Action.NONE:
                continue
            self.emit(LEVEL.get(item.action, "info"), f"{item.action}: {item.detail}",
                      asset_id=item.asset_id, lesson_id=item.lesson_id,
                      conversation_id=item.conversation_id, state=str(item.state))
        for error in summary.errors:
            self.emit("warning", error.detail, service=error.service, asset_id=error.asset_id)
        if summary.items or summary.errors:
            self.emit("info", "pass", checked=summary.checked,
                      stillGenerating=summary.still_generating, found=summary.found,
                      processed=summary.processed, failed=summary.failed,
                      durationMs=summary.duration_ms)
