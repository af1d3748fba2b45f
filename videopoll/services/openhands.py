"""AgentAPI over the OpenHands V1 app-server API (DESIGN 8.1).

All pending conversations are asked about in batches of at most 99 ids, concurrently; only
conversations whose state alone is ambiguous (a PAUSED or MISSING sandbox) or that failed
(for the reason) cost one more request each, to their event log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import httpx

from ..errors import ProtocolError
from ..model import AgentState, StartTask, Status, normalise_id
from .http import Budget, Pacer, send

SERVICE = "openhands"
STATE_BATCH = 99  # GET /app-conversations answers 400 for 100 ids or more
TASK_BATCH = 100
REASONS_PER_PASS = 4  # error-event lookups a pass may spend; the rest keep a generic reason
RATE = 10  # requests a second (OpenHands Cloud's per-user limit)
SANDBOX = frozenset({"STARTING", "RUNNING", "PAUSED", "ERROR", "MISSING"})
EXECUTION = frozenset({"idle", "running", "paused", "waiting_for_confirmation", "finished",
                       "error", "stuck", "deleting"})
TASK_STARTING = frozenset({"WORKING", "WAITING_FOR_SANDBOX", "PREPARING_REPOSITORY",
                           "RUNNING_SETUP_SCRIPT", "SETTING_UP_GIT_HOOKS", "SETTING_UP_SKILLS",
                           "STARTING_CONVERSATION"})


def auth_headers(key: str, mode: str = "bearer") -> dict[str, str]:
    if mode == "session":
        return {"X-Session-API-Key": key}
    return {"Authorization": f"Bearer {key}"}


def map_state(sandbox: str | None, execution: str | None,
              newest_execution: str | None = None, reason: str | None = None) -> AgentState:
    """DESIGN 8.1's table: what a conversation's two statuses mean for its video.

    `newest_execution` is the newest execution status the events record (asked for only when
    `execution_status` is null although the sandbox has been up: PAUSED, MISSING, or RUNNING
    with an agent server that does not answer for it); `reason` the newest error event's
    detail.
    """

    def state(status: Status, why: str | None = None, warning: str | None = None) -> AgentState:
        return AgentState(status, sandbox, execution, why, warning)

    if sandbox not in SANDBOX:
        return state(Status.GENERATING, warning=f"unknown sandbox_status {sandbox!r}")
    if sandbox == "ERROR":
        return state(Status.FAILED, reason or "agent sandbox failed")
    # A RUNNING sandbox without a status: the server could not get it from the agent server
    # (it lost track of it, or the agent server did not answer); the events may still tell.
    lost = sandbox == "RUNNING" and execution is None and newest_execution is not None
    if sandbox in ("PAUSED", "MISSING") or lost:
        if newest_execution == "finished":
            return state(Status.FINISHED)
        if newest_execution in ("error", "stuck"):
            return state(Status.FAILED, reason or f"agent {newest_execution}")
        if sandbox == "MISSING":
            return state(Status.FAILED, "agent sandbox is gone before the agent finished")
        return state(Status.GENERATING)
    if execution is None or execution in ("idle", "running", "paused"):
        return state(Status.GENERATING)
    if sandbox == "STARTING":
        return state(Status.GENERATING)
    if execution == "finished":
        return state(Status.FINISHED)
    if execution in ("error", "stuck"):
        return state(Status.FAILED, reason or f"agent {execution}")
    if execution == "waiting_for_confirmation":
        return state(Status.FAILED, "agent needs a human (waiting for confirmation)")
    if execution == "deleting":
        return state(Status.FAILED, "conversation is being deleted")
    return state(Status.GENERATING, warning=f"unknown execution_status {execution!r}")


def newest_status(events: Sequence[Mapping[str, Any]]) -> str | None:
    """The execution status the newest of these (newest first) state events records: an
    `execution_status` change, or a `full_state` snapshot's, which the real server writes
    when a conversation starts and again once its agent stops."""
    for event in events:
        if event.get("key") == "execution_status" and event.get("value") is not None:
            return str(event["value"])
        if event.get("key") == "full_state" and isinstance(snapshot := event.get("value"), dict) \
                and snapshot.get("execution_status") is not None:
            return str(snapshot["execution_status"])
    return None


def map_task(item: Mapping[str, Any]) -> StartTask:
    status = str(item.get("status"))
    conversation = item.get("app_conversation_id")
    conversation_id = normalise_id(str(conversation)) if conversation else None
    if status == "READY" and conversation_id:
        return StartTask(str(item["id"]), status, Status.GENERATING, conversation_id)
    if status == "ERROR":
        detail = str(item.get("detail") or "agent could not start")
        return StartTask(str(item["id"]), status, Status.FAILED, None, detail)
    return StartTask(str(item["id"]), status, Status.STARTING)


def _batches(ids: Sequence[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(ids), size):
        yield list(ids[start:start + size])


class OpenHandsAgent:
    """The V1 app-server API: batched states, start, start-task progress, events."""

    def __init__(self, client: httpx.AsyncClient, budget: Budget, *, concurrency: int = 4
                 ) -> None:
        self.client = client
        self.budget = budget
        self._gate = asyncio.Semaphore(concurrency)
        self._pace = Pacer(RATE)
        client.event_hooks["response"].append(self._pace.watch)

    async def _get(self, url: str, params: Any = None, *, what: str) -> Any:
        async with self._gate:
            await self._pace.wait()
            request = self.client.build_request("GET", url, params=params)
            response = await send(self.client, request, service=SERVICE, budget=self.budget,
                                  what=what)
        try:
            return response.json()
        except ValueError:
            raise ProtocolError(f"openhands: {what} answer is not JSON",
                                service=SERVICE) from None

    async def _batch(self, url: str, ids: list[str], what: str) -> list[Any]:
        body = await self._get(url, [("ids", i) for i in ids], what=what)
        if not isinstance(body, list) or len(body) != len(ids):
            raise ProtocolError(f"openhands: {what} answer is not a list of {len(ids)}",
                                service=SERVICE)
        return body

    async def states(self, conversation_ids: Sequence[str]) -> dict[str, AgentState | None]:
        ids = list(dict.fromkeys(conversation_ids))
        answers = await asyncio.gather(*(
            self._batch("/api/v1/app-conversations", batch, "conversation states")
            for batch in _batches(ids, STATE_BATCH)))
        items = [item for answer in answers for item in answer]
        out: dict[str, AgentState | None] = {}
        follow_ups = []
        reasons = REASONS_PER_PASS
        for conversation_id, item in zip(ids, items, strict=True):
            if item is None:
                out[conversation_id] = None
                continue
            if not isinstance(item, dict):
                raise ProtocolError("openhands: a conversation is not an object", service=SERVICE)
            sandbox, execution = item.get("sandbox_status"), item.get("execution_status")
            out[conversation_id] = map_state(sandbox, execution)
            # PAUSED/MISSING (and RUNNING without a status) need their events to be decided at
            # all; an agent's error only for its wording, so those lookups are rationed
            # (`status` always shows it).
            ambiguous = sandbox in ("PAUSED", "MISSING") or (sandbox == "RUNNING"
                                                             and execution is None)
            if ambiguous or (execution in ("error", "stuck") and reasons > 0):
                wanted = reasons > 0
                reasons -= wanted
                follow_ups.append(self._explain(conversation_id, sandbox, execution, ambiguous,
                                                wanted))
        for conversation_id, explained in await asyncio.gather(*follow_ups):
            out[conversation_id] = explained
        return out

    async def _explain(self, conversation_id: str, sandbox: str | None, execution: str | None,
                       ambiguous: bool, reason_wanted: bool = True) -> tuple[str, AgentState]:
        newest = None
        if ambiguous:
            newest = newest_status(await self._events(conversation_id,
                                                      "ConversationStateUpdateEvent"))
        decided = map_state(sandbox, execution, newest)
        if not reason_wanted or decided.state is not Status.FAILED or not (
                {execution, newest} & {"error", "stuck"}):
            return conversation_id, decided
        errors = await self._events(conversation_id, "ConversationErrorEvent", limit=1)
        if errors:
            reason = " ".join(str(errors[0].get("detail") or errors[0].get("code")).split())
            return conversation_id, map_state(sandbox, execution, newest, reason[:200])
        if newest is None:
            # Events reach the app server through webhooks, a moment after the agent server's
            # live status. A log that has events but not yet this failure is behind: wait a
            # pass for the error's wording rather than fail the row without it for good.
            logged = await self._events(conversation_id, "ConversationStateUpdateEvent")
            if logged and newest_status(logged) not in ("error", "stuck"):
                return conversation_id, AgentState(Status.GENERATING, sandbox, execution)
        return conversation_id, decided

    async def _events(self, conversation_id: str, kind: str, limit: int = 20
                      ) -> list[dict[str, Any]]:
        body = await self._get(
            f"/api/v1/conversation/{conversation_id}/events/search",
            {"kind__eq": kind, "sort_order": "TIMESTAMP_DESC", "limit": limit}, what="events")
        items = body.get("items") if isinstance(body, dict) else None
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []

    async def start(self, *, prompt: str, repository: str, branch: str, title: str,
                    secrets: Mapping[str, str] | None = None) -> StartTask:
        payload: dict[str, Any] = {
            "initial_message": {"content": [{"type": "text", "text": prompt}]},
            "selected_repository": repository,
            "selected_branch": branch,
            "title": title,
        }
        if secrets:
            payload["secrets"] = dict(secrets)
        request = self.client.build_request("POST", "/api/v1/app-conversations", json=payload)
        # Not idempotent: a retry could start a second agent, so only connection failures
        # (the request never arrived) are retried.
        response = await send(self.client, request, service=SERVICE, budget=self.budget,
                              idempotent=False, what="start conversation")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or "id" not in body:
            raise ProtocolError("openhands: start answer has no task id", service=SERVICE)
        return map_task(body)

    async def resolve(self, start_ids: Sequence[str]) -> dict[str, StartTask | None]:
        ids = list(dict.fromkeys(start_ids))
        answers = await asyncio.gather(*(
            self._batch("/api/v1/app-conversations/start-tasks", batch, "start tasks")
            for batch in _batches(ids, TASK_BATCH)))
        items = [item for answer in answers for item in answer]
        return {i: map_task(item) if isinstance(item, dict) else None
                for i, item in zip(ids, items, strict=True)}

    async def check(self) -> list[tuple[str, bool, str]]:
        """doctor: the API answers a batch query with our key."""
        probe = "0" * 32
        answer = await self._batch("/api/v1/app-conversations", [probe], "conversation states")
        detail = f"{self.client.base_url} reachable, key accepted"
        return [("openhands", answer == [None], detail if answer == [None] else
                 f"unexpected answer for an unknown id: {str(answer)[:80]}")]
