"""What each command answers, as typed results: built first, then rendered once — for people
(ui.render's `view`) or as JSON (`to_json`) — through `Output.emit`. A pass's own result is
`model.PassSummary`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from .model import AgentState, ArtifactRef, Cause, VideoAsset


class Report(Protocol):
    """Anything a command prints: its JSON form (its human form is ui.render's `view`)."""

    def to_json(self) -> Any: ...


@dataclass(frozen=True)
class StatusReport:
    """`status`: one conversation, from the agent, the store and GitHub (None: the row asked
    about has no conversation yet, only a start task)."""

    conversation_id: str | None
    agent: AgentState | None
    assets: list[VideoAsset]
    artifact: ArtifactRef | None

    def to_json(self) -> dict[str, Any]:
        return {"conversation_id": self.conversation_id,
                "agent": self.agent.to_json() if self.agent is not None else None,
                "assets": [a.to_json() for a in self.assets],
                "artifact": self.artifact.to_json() if self.artifact is not None else None}


@dataclass(frozen=True)
class RowList:
    """Rows of `lesson_assets` (`pending`: oldest first; `--failed`, `--all`: newest first),
    as of `now`. With `causes` (the listings that can hold failed rows), each row says why it
    failed (`cause`: agent or transfer, null unless failed)."""

    rows: list[VideoAsset]
    now: datetime
    title: str = "pending video(s)"
    causes: Mapping[str, Cause] | None = None

    def to_json(self) -> list[dict[str, Any]]:
        if self.causes is None:
            return [r.to_json() for r in self.rows]
        causes = self.causes
        return [{**r.to_json(), "cause": str(causes[r.id]) if r.id in causes else None}
                for r in self.rows]


@dataclass(frozen=True)
class Generated:
    """`generate`: the row it wrote (and whose conversation it started)."""

    row: VideoAsset

    def to_json(self) -> dict[str, Any]:
        return self.row.to_json()


@dataclass(frozen=True)
class Retried:
    """`retry`: the rows put back (or, with `dry_run`, that would be), each with the error it
    had failed with and its cause: `agent` (a new conversation) or `transfer` (the transfer
    again)."""

    rows: list[tuple[VideoAsset, str | None, Cause]]  # (row now, its old error, cause)
    dry_run: bool = False

    def to_json(self) -> list[dict[str, Any]]:
        return [{**row.to_json(), "cause": str(cause), "previous_error": error}
                for row, error, cause in self.rows]


@dataclass(frozen=True)
class Check:
    """One of doctor's checks."""

    name: str
    ok: bool
    detail: str
    refused: bool = False  # a service refused our credentials (exit 3)
    hint: str | None = None  # what to change (a refused credential: its variable)

    def to_json(self) -> dict[str, Any]:
        shown = {"name": self.name, "ok": self.ok, "detail": self.detail}
        return {**shown, "hint": self.hint} if self.hint else shown


@dataclass(frozen=True)
class DoctorReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """3 when a credential is refused, 1 when any check fails, else 0."""
        if any(c.refused for c in self.checks):
            return 3
        return 0 if all(c.ok for c in self.checks) else 1

    def to_json(self) -> dict[str, Any]:
        return {"checks": [c.to_json() for c in self.checks]}


@dataclass(frozen=True)
class Schema:
    """`schema`: the migration's SQL."""

    sql: str

    def to_json(self) -> dict[str, Any]:
        return {"sql": self.sql}


@dataclass(frozen=True)
class Skipped:
    """A pass that did not run, and why (`poll --lock` while another run holds it)."""

    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"skipped": True, "reason": self.reason}


@dataclass(frozen=True)
class DemoResult:
    """`demo`: each lesson's video as the run left it, and the passes it took."""

    videos: list[tuple[str, VideoAsset]]  # (lesson title, row)
    passes: int
    processed: int
    failed: int

    def to_json(self) -> dict[str, Any]:
        return {"videos": [{"lesson": title, **row.to_json()} for title, row in self.videos],
                "passes": self.passes, "processed": self.processed, "failed": self.failed}
