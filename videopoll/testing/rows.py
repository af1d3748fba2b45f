"""`Row`: one video of the in-memory store: its `lesson_assets` columns and its bookkeeping
(the SQL stores keep the latter in `videopoll_assets`; here one object holds both)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..model import Status, VideoAsset


@dataclass
class Row:
    """One asset: the app's columns, the migration's, and videopoll's bookkeeping."""

    id: str
    lesson_id: str
    kind: str
    created_at: datetime
    updated_at: datetime
    status: Status = Status.GENERATING  # the migration's column default
    user_id: str | None = None
    storage_path: str | None = None
    mime_type: str | None = None
    conversation_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    attempts: int = 0
    finished_at: datetime | None = None
    start_task_id: str | None = None
    # videopoll_assets in the SQL stores: changing only these leaves updated_at alone.
    mismatches: int = 0
    claimed_by: str | None = None
    claimed_until: datetime | None = None
    retried_at: datetime | None = None

    def asset(self) -> VideoAsset:
        return VideoAsset(
            id=self.id, lesson_id=self.lesson_id, status=self.status,
            created_at=self.created_at, updated_at=self.updated_at,
            conversation_id=self.conversation_id, start_task_id=self.start_task_id,
            user_id=self.user_id, storage_path=self.storage_path, error=self.error,
            attempts=self.attempts, mismatches=self.mismatches,
            github_path=self.metadata.get("github_path"), finished_at=self.finished_at,
            claimed_by=self.claimed_by, claimed_until=self.claimed_until,
            retried_at=self.retried_at)

    def live(self, owner: str, now: datetime) -> bool:
        return (self.status is Status.TRANSFERRING and self.claimed_by == owner
                and self.claimed_until is not None and self.claimed_until > now)
