"""The row events as methods, written once for every store.

A store implements `apply(changes)`: each change is one event for one row, allowed or not by
`model.TRANSITIONS` on the store's own clock, all of them in one guarded call (one SQL
transaction, one RPC). These methods are that call for a single change, named as the engine
and `generate` speak of them; `METHODS` names each event's method for call logs and faults.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from .model import Change, Event

METHODS = {Event.START: "record_start", Event.RESOLVE: "resolve_start",
           Event.FINISH: "mark_finished", Event.REOPEN: "mark_generating",
           Event.CLAIM: "claim", Event.RENEW: "renew", Event.RELEASE: "release",
           Event.READY: "mark_ready", Event.FAIL: "mark_failed"}


class Transitions(ABC):
    @abstractmethod
    async def apply(self, changes: Sequence[Change]) -> list[bool]:
        """Apply each change that TRANSITIONS allows, atomically, in one call; whether
        each one did (a refused change is not an error: another poller got there first)."""

    async def _one(self, change: Change) -> bool:
        return (await self.apply([change]))[0]

    async def record_start(self, asset_id: str, task_id: str) -> bool:
        """starting: the start task `generate` was given (the row was written first)."""
        return await self._one(Change(asset_id, Event.START, value=task_id))

    async def resolve_start(self, asset_id: str, conversation_id: str | None = None) -> bool:
        """starting -> generating (with the conversation id, when it was not known yet)."""
        return await self._one(Change(asset_id, Event.RESOLVE, value=conversation_id))

    async def mark_finished(self, asset_id: str) -> bool:
        """generating -> finished, stamping finished_at."""
        return await self._one(Change(asset_id, Event.FINISH))

    async def mark_generating(self, asset_id: str, owner: str | None = None) -> bool:
        """finished -> generating (the agent went back to work); clears finished_at. A
        transferring row too, by its holder or once its lease ran out: the claim goes."""
        return await self._one(Change(asset_id, Event.REOPEN, owner=owner))

    async def claim(self, asset_id: str, owner: str, lease_s: float) -> bool:
        """finished (or transferring with a lease run out) -> transferring, held by owner."""
        return await self._one(Change(asset_id, Event.CLAIM, owner=owner, lease_s=lease_s))

    async def renew(self, asset_id: str, owner: str, lease_s: float) -> bool:
        """Extend a live lease; False when owner no longer holds it."""
        return await self._one(Change(asset_id, Event.RENEW, owner=owner, lease_s=lease_s))

    async def release(self, asset_id: str, owner: str) -> bool:
        """transferring -> finished, by the holder (or anyone once the lease ran out)."""
        return await self._one(Change(asset_id, Event.RELEASE, owner=owner))

    async def mark_ready(self, asset_id: str, owner: str, storage_path: str) -> bool:
        """transferring -> ready, only while owner holds a live lease."""
        return await self._one(Change(asset_id, Event.READY, owner=owner, value=storage_path))

    async def mark_failed(self, asset_id: str, reason: str, owner: str | None = None) -> bool:
        """Any pending state -> failed; a transferring row by its holder, or by anyone once
        its lease ran out (a killed poller's row must not stay transferring forever)."""
        return await self._one(Change(asset_id, Event.FAIL, owner=owner, value=reason))
