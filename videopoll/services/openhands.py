"""AgentAPI over the OpenHands V1 app-server API (DESIGN 8.1).

All pending conversations are asked about in batches of at most 99 ids, concurrently; only
conversations whose state alone is ambiguous (a PAUSED or MISSING sandbox) or that failed
(for the reason) cost one more request each, to their event log. A lookup that fails touches
only its own conversation: an ambiguous one is left undecided this pass, a failed one keeps
the batch's generic reason.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx

from ..errors import AuthError, ProtocolError, ServiceError
from ..model import AgentState, Service, StartTask, Status, normalise_id
from .http import send
from .pacing import RatePacer

SERVICE = Service.OPENHANDS
STATE_BATCH = 99  # GET /app-conversations answers 400 for 100 ids or more
TASK_BATCH = 99  # start-tasks?ids=: some versions enforce the same `< 100` as above
EVENT_PAGE = 100  # events/search answers at most 100 a page
EVENT_PAGES = 5  # pages read to find the newest execution status (stats events crowd it out)
# Requests in flight at once: as many as OpenHands' 10-a-second limit lets through together
# (Cloud and the self-hosted app server alike), so 1,000 pending rows (11 batches) cost two
# round trips rather than three; the pacer still holds them to the budget.
AT_ONCE = 10
REASONS_PER_PASS = 4  # error-event lookups a pass may spend; the rest keep a generic reason
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
    """The V1 app-server API: batched states, start, start-task progress, events.

    `pacer` is the rate budget the client's requests wait for (the same object the client's
    transport was made with); without one, `budget()` says unlimited.
    """

    ids_per_request = STATE_BATCH

    def __init__(self, client: httpx.AsyncClient, *, concurrency: int = AT_ONCE,
                 pacer: RatePacer | None = None) -> None:
        self.client = client
        self.pacer = pacer
        self._gate = asyncio.Semaphore(concurrency)

    def budget(self) -> int | None:
        """Requests that can be sent now without waiting for the budget (None: unlimited).
        A `states()` of n ids costs ceil(n / 99) of them, plus its follow-ups: up to
        REASONS_PER_PASS error lookups, and for each PAUSED or MISSING conversation (or a
        RUNNING one without a status) up to EVENT_PAGES events pages."""
        return None if self.pacer is None else self.pacer.available()

    async def _get(self, url: str, params: Any = None, *, what: str) -> Any:
        async with self._gate:
            request = self.client.build_request("GET", url, params=params)
            response = await send(self.client, request, service=SERVICE, what=what)
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

    async def states(self, conversation_ids: Sequence[str], *, explain_later: bool = False
                     ) -> dict[str, AgentState | None]:
        ids = list(dict.fromkeys(conversation_ids))
        batches = list(_batches(ids, STATE_BATCH))
        answers = await asyncio.gather(*(
            self._batch("/api/v1/app-conversations", batch, "conversation states")
            for batch in batches), return_exceptions=True)
        out: dict[str, AgentState | None] = {}
        items: list[tuple[str, Any]] = []
        for batch, answer in zip(batches, answers, strict=True):
            if isinstance(answer, ServiceError) and not isinstance(answer, AuthError):
                # This batch's ids only: undecided this pass, the others go on.
                out.update((i, AgentState(Status.GENERATING, lookup_error=answer.message))
                           for i in batch)
            elif isinstance(answer, BaseException):
                raise answer  # refused credentials end the pass; anything else is a bug
            else:
                items.extend(zip(batch, answer, strict=True))
        follow_ups = []
        reasons = REASONS_PER_PASS
        for conversation_id, item in items:
            if item is None:
                out[conversation_id] = None
                continue
            if not isinstance(item, dict):
                out[conversation_id] = AgentState(
                    Status.GENERATING, lookup_error="openhands: a conversation is not an object")
                continue
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
                state = out[conversation_id]
                if explain_later and not ambiguous and state is not None \
                        and state.state is Status.FAILED:
                    # Decided already; only the wording waits (`explain`), so the pass can
                    # write the other rows' decisions without waiting for this lookup.
                    out[conversation_id] = replace(state, unexplained=True)
                    continue
                follow_ups.append(self._explain(conversation_id, sandbox, execution, ambiguous,
                                                wanted))
        for conversation_id, explained in await asyncio.gather(*follow_ups):
            out[conversation_id] = explained
        return out

    async def explain(self, conversation_id: str, state: AgentState) -> AgentState:
        if not state.unexplained:
            return state
        _, explained = await self._explain(conversation_id, state.sandbox_status,
                                           state.execution_status, ambiguous=False)
        return explained

    async def _explain(self, conversation_id: str, sandbox: str | None, execution: str | None,
                       ambiguous: bool, reason_wanted: bool = True) -> tuple[str, AgentState]:
        newest = None
        if ambiguous:
            try:
                newest = await self._newest_execution(conversation_id)
            except AuthError:
                raise
            except ServiceError as exc:  # this conversation only: decide it next pass
                return conversation_id, AgentState(Status.GENERATING, sandbox, execution,
                                                   lookup_error=exc.message)
        decided = map_state(sandbox, execution, newest)
        if not reason_wanted or decided.state is not Status.FAILED or not (
                {execution, newest} & {"error", "stuck"}):
            return conversation_id, decided
        try:
            errors, _ = await self._events(conversation_id, "ConversationErrorEvent", 1)
            if errors:
                reason = " ".join(str(errors[0].get("detail") or errors[0].get("code")).split())
                return conversation_id, map_state(sandbox, execution, newest, reason[:200])
            if newest is None:
                # Events reach the app server through webhooks, a moment after the agent
                # server's live status. A log that has events but not yet this failure is
                # behind: wait a pass for the error's wording rather than fail the row
                # without it for good.
                logged, _ = await self._events(conversation_id, "ConversationStateUpdateEvent",
                                               EVENT_PAGE)
                if logged and newest_status(logged) not in ("error", "stuck"):
                    return conversation_id, AgentState(Status.GENERATING, sandbox, execution)
        except AuthError:
            raise
        except ServiceError:  # the failure is certain; only its wording is missing
            pass
        return conversation_id, decided

    async def _newest_execution(self, conversation_id: str) -> str | None:
        """The newest execution status in the event log, newest first: a state update of
        `execution_status` itself, or a `full_state` snapshot's. Every other field's update
        (stats after each LLM call, for one) is an event of the same kind, so a page may hold
        none: read up to EVENT_PAGES pages."""
        page: str | None = None
        for _ in range(EVENT_PAGES):
            events, page = await self._events(conversation_id, "ConversationStateUpdateEvent",
                                              EVENT_PAGE, page)
            if (found := newest_status(events)) is not None or page is None:
                return found
        return None

    async def _events(self, conversation_id: str, kind: str, limit: int,
                      page: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a conversation's events of `kind`, newest first, and the next page's id."""
        params: dict[str, Any] = {"kind__eq": kind, "sort_order": "TIMESTAMP_DESC",
                                  "limit": limit}
        if page is not None:
            params["page_id"] = page
        body = await self._get(f"/api/v1/conversation/{conversation_id}/events/search",
                               params, what="events")
        items = body.get("items") if isinstance(body, dict) else None
        following = body.get("next_page_id") if isinstance(body, dict) else None
        found = [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
        return found, str(following) if following else None

    async def start(self, *, prompt: str, repository: str, branch: str, title: str,
                    secrets: Mapping[str, str] | None = None,
                    conversation_id: str | None = None) -> StartTask:
        payload: dict[str, Any] = {
            "initial_message": {"content": [{"type": "text", "text": prompt}]},
            "selected_repository": repository,
            "selected_branch": branch,
            "title": title,
        }
        if conversation_id is not None:  # ours: a start that may have arrived can be asked for
            payload["conversation_id"] = str(uuid.UUID(conversation_id))
        if secrets:
            payload["secrets"] = dict(secrets)
        request = self.client.build_request("POST", "/api/v1/app-conversations", json=payload)
        # Not idempotent: a retry could start a second agent, so only connection failures
        # (the request never arrived) are retried.
        response = await send(self.client, request, service=SERVICE, idempotent=False,
                              what="start conversation")
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

    async def visible(self) -> bool:
        body = await self._get("/api/v1/app-conversations/search", {"limit": 1},
                               what="conversation search")
        items = body.get("items") if isinstance(body, dict) else None
        return bool(items)

    async def find_start(self, conversation_id: str, since: datetime) -> StartTask | None:
        """The start task of a start that asked for `conversation_id`, if one arrived: the
        task echoes its request, so recent tasks are searched (newest first) for it."""
        params: dict[str, Any] = {"created_at__gte": since.astimezone(UTC).isoformat(),
                                  "sort_order": "CREATED_AT_DESC", "limit": EVENT_PAGE}
        for _ in range(EVENT_PAGES):
            body = await self._get("/api/v1/app-conversations/start-tasks/search", params,
                                   what="start tasks")
            items = body.get("items") if isinstance(body, dict) else None
            for item in items if isinstance(items, list) else []:
                request = item.get("request") if isinstance(item, dict) else None
                asked = request.get("conversation_id") if isinstance(request, dict) else None
                made = item.get("app_conversation_id") if isinstance(item, dict) else None
                if conversation_id in (normalise_id(str(asked or "")),
                                       normalise_id(str(made or ""))):
                    return map_task(item)
            page = body.get("next_page_id") if isinstance(body, dict) else None
            if not page:
                return None
            params["page_id"] = page
        return None

    async def check(self) -> list[tuple[str, bool, str]]:
        """doctor: the API answers a batch query with our key."""
        probe = "0" * 32
        answer = await self._batch("/api/v1/app-conversations", [probe], "conversation states")
        detail = f"{self.client.base_url} reachable, key accepted"
        return [(Service.OPENHANDS, answer == [None], detail if answer == [None] else
                 f"unexpected answer for an unknown id: {str(answer)[:80]}")]
