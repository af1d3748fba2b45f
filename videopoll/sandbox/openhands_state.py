"""What the OpenHands stand-in knows: start tasks, conversations, their events, and the
scripting methods tests use to set them (thread-safe under the server's `lock`).

A conversation keeps the agent's own status (`agent_status`) apart from its sandbox's, as the
real server does: `execution_status` is reported only while the sandbox is RUNNING, yet every
change of it is a `ConversationStateUpdateEvent` that stays readable when the sandbox is
PAUSED or MISSING.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import EllipsisType
from typing import Any

from .agent import SimulatedAgent, fallback_title, prompt_of
from .openhands_events import (
    error_event,
    finishing,
    opening,
    snapshot,
    state_event,
    stats,
)

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def new_sandbox_id(conversation_id: Any = None) -> str:
    """The real server names a sandbox after the conversation a start request chose, else
    with 16 random bytes in base62."""
    if conversation_id:
        return as_hex(str(conversation_id))
    number = int.from_bytes(secrets.token_bytes(16))
    out = ""
    while number:
        number, digit = divmod(number, 62)
        out = _BASE62[digit] + out
    return out or "0"


def utc_iso() -> str:
    """Model timestamps as pydantic writes aware UTC datetimes."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def as_hex(raw: str) -> str:
    """A conversation or task id in the wire form (32 lowercase hex); raises ValueError."""
    return uuid.UUID(raw).hex


@dataclass
class StartTask:
    """A start task; `request` is the body as received (secrets included, never served)."""

    id: str
    request: dict[str, Any]
    status: str = "WORKING"
    detail: str | None = None
    conversation_id: str | None = None
    sandbox_id: str | None = None
    agent_server_url: str | None = None
    created_at: str = field(default_factory=utc_iso)
    updated_at: str = field(default_factory=utc_iso)
    born: float | None = None  # clock at the POST while the simulated agent walks it


@dataclass
class Conversation:
    """One app conversation; `agent_status` is what its agent server would report."""

    id: str
    title: str
    repository: str | None
    branch: str | None
    sandbox_status: str = "RUNNING"
    agent_status: str | None = None
    git_provider: str | None = None
    trigger: str | None = None
    sandbox_id: str = field(default_factory=new_sandbox_id)
    session_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    created_at: str = field(default_factory=utc_iso)
    updated_at: str = field(default_factory=utc_iso)
    events: list[dict[str, Any]] = field(default_factory=list)
    prompt: str = ""
    request_title: str | None = None
    run_until: float | None = None  # when the simulated agent finishes
    pause_at: float | None = None  # when the simulated sandbox goes idle
    busy: bool = False  # the simulated agent is committing right now
    # Events reach the app server through webhooks: each becomes visible at `arrive_at[id]`
    # (absent: at once), `lag` seconds after it is logged (None: held until released).
    clock: Callable[[], float] = time.monotonic
    lag: float | None = 0.0
    arrive_at: dict[str, float] = field(default_factory=dict)
    blind: bool = False  # the server lost touch with this agent: no execution_status

    def log(self, *events: dict[str, Any]) -> None:
        for event in events:
            self.events.append(event)
            if self.lag is None:
                self.arrive_at[event["id"]] = math.inf
            elif self.lag > 0:
                self.arrive_at[event["id"]] = self.clock() + self.lag

    def visible(self) -> list[dict[str, Any]]:
        """The events the app server has received by now."""
        now = self.clock()
        return [e for e in self.events if self.arrive_at.get(e["id"], now) <= now]

    def set_agent_status(self, status: str | None) -> None:
        """Like the agent server: every change of execution_status is an event."""
        if status != self.agent_status and status is not None:
            self.log(state_event("execution_status", status))
        self.agent_status = status
        self.updated_at = utc_iso()


class OpenHandsState:
    """The stand-in's records and the methods that script them (mixed into the server)."""

    lock: threading.RLock
    agent: SimulatedAgent | None
    url: str
    event_lag: float  # seconds the simulated agent's events take to reach the server
    _tasks: dict[str, StartTask]
    _conversations: dict[str, Conversation]

    def _clock(self) -> float:
        return self.agent.clock() if self.agent is not None else time.monotonic()

    # -- scripting from tests ------------------------------------------------------------------
    def add_conversation(self, sandbox_status: str = "RUNNING",
                         execution_status: str | None = "running", *, title: str | None = None,
                         repository: str | None = None, branch: str | None = "main",
                         conversation_id: str | None = None) -> str:
        """A conversation in any state (values outside the real enums included); its id."""
        cid = as_hex(conversation_id) if conversation_id else uuid.uuid4().hex
        conversation = Conversation(cid, title or f"Conversation {cid[:5]}", repository, branch,
                                    sandbox_status, git_provider="github" if repository else None,
                                    sandbox_id=new_sandbox_id(cid), clock=self._clock)
        conversation.log(snapshot(cid, "idle"))
        conversation.set_agent_status(execution_status)
        with self.lock:
            self._conversations[cid] = conversation
        return cid

    def set_state(self, conversation_id: str, sandbox_status: str | None = None,
                  execution_status: str | None | EllipsisType = ...) -> None:
        """Change a conversation (the simulated agent stops driving it); an execution_status
        change is also recorded as an event."""
        with self.lock:
            conversation = self._conversations[as_hex(conversation_id)]
            if sandbox_status is not None:
                conversation.sandbox_status, conversation.updated_at = sandbox_status, utc_iso()
            if not isinstance(execution_status, EllipsisType):
                conversation.run_until = None
                conversation.set_agent_status(execution_status)

    def add_error_event(self, conversation_id: str, code: str, detail: str) -> None:
        self.add_event(conversation_id, error_event(code, detail))

    def add_event(self, conversation_id: str, event: dict[str, Any]) -> None:
        """Append any event (build it with `new_event(kind, **fields)`)."""
        with self.lock:
            self._conversations[as_hex(conversation_id)].log(event)

    def delay_events(self, conversation_id: str, seconds: float | None) -> None:
        """Events logged for the conversation from now on reach the server `seconds` later
        (None: not until this is called again); 0 also delivers every held one now."""
        with self.lock:
            conversation = self._conversations[as_hex(conversation_id)]
            conversation.lag = seconds
            if seconds == 0:
                now = self._clock()
                for event_id, due in conversation.arrive_at.items():
                    conversation.arrive_at[event_id] = min(due, now)

    def agent_status(self, conversation_id: str) -> str | None:
        """What the conversation's agent server itself says (the server may not know it)."""
        with self.lock:
            return self._conversations[as_hex(conversation_id)].agent_status

    def remove(self, conversation_id: str) -> None:
        """Forget a conversation: the batch answers `null` for it from now on."""
        with self.lock:
            self._conversations.pop(as_hex(conversation_id), None)

    def add_start_task(self, status: str = "WORKING", *, detail: str | None = None,
                       conversation_id: str | None = None, title: str | None = None,
                       repository: str | None = None, branch: str | None = None,
                       prompt: str = "") -> str:
        """A start task in any state; READY without `conversation_id` opens one. Its id."""
        request: dict[str, Any] = {
            "title": title, "selected_repository": repository, "selected_branch": branch,
            "initial_message": {"content": [{"type": "text", "text": prompt}]}}
        task = StartTask(uuid.uuid4().hex, request)
        with self.lock:
            self._tasks[task.id] = task
            self.set_start_task(task.id, status, detail=detail, conversation_id=conversation_id)
        return task.id

    def set_start_task(self, task_id: str, status: str, *, detail: str | None = None,
                       conversation_id: str | None = None) -> str | None:
        """Move a task (the simulated agent stops driving it); returns its conversation id."""
        with self.lock:
            task = self._tasks[as_hex(task_id)]
            task.born, task.detail = None, detail
            if status != "WORKING":
                task.sandbox_id = task.sandbox_id or new_sandbox_id(
                    task.request.get("conversation_id"))
            if status == "READY" and conversation_id is None and task.conversation_id is None \
                    and self._open(task, None) is None:
                return None  # that id is taken by a running conversation: the task failed
            task.status, task.updated_at = status, utc_iso()
            if conversation_id is not None:
                task.conversation_id = as_hex(conversation_id)
            return task.conversation_id

    # -- the simulated agent -------------------------------------------------------------------
    def tick(self) -> None:
        """Advance the simulated agent to now; every authorised request does this first."""
        agent = self.agent
        if agent is None:
            return
        now, due = agent.clock(), []
        with self.lock:
            for task in self._tasks.values():
                if task.born is None or task.status in ("READY", "ERROR"):
                    continue
                status, detail = agent.start_status(
                    task.born, task.request.get("selected_repository"), now)
                if status != "WORKING":
                    task.sandbox_id = task.sandbox_id or new_sandbox_id(
                        task.request.get("conversation_id"))
                if status in ("STARTING_CONVERSATION", "READY"):
                    task.agent_server_url = f"{self.url}/agent-server/{task.sandbox_id}"
                if status == "READY":
                    self._open(task, agent.ready_at(task.born) + agent.run)
                elif status != task.status:
                    task.status, task.detail, task.updated_at = status, detail, utc_iso()
            for conversation in self._conversations.values():
                if conversation.run_until is not None and not conversation.busy \
                        and now >= conversation.run_until:
                    conversation.busy = True
                    due.append(conversation)
                if conversation.pause_at is not None and now >= conversation.pause_at:
                    conversation.sandbox_status, conversation.pause_at = "PAUSED", None
                    conversation.updated_at = utc_iso()
        for conversation in due:
            # Unlocked: making and pushing a video takes time; `busy` keeps others off it.
            failure = agent.work(
                prompt=conversation.prompt, title=conversation.title,
                request_title=conversation.request_title, repository=conversation.repository,
                branch=conversation.branch)
            with self.lock:
                if agent.pause_after is not None and conversation.run_until is not None:
                    conversation.pause_at = conversation.run_until + agent.pause_after
                conversation.busy, conversation.run_until = False, None
                if failure is None:  # the LLM answered twice: a title, then `finish`
                    conversation.log(stats(), *finishing())
                    conversation.set_agent_status("finished")
                else:  # the status change first, then the error (as the real log has them)
                    conversation.set_agent_status("error")
                    conversation.log(error_event(*failure))
                conversation.log(snapshot(conversation.id, conversation.agent_status or "idle"))

    def _open(self, task: StartTask, run_until: float | None) -> Conversation | None:
        """The conversation a task becomes READY with (lock held); None when it fails."""
        request, prompt = task.request, prompt_of(task.request)
        wanted = request.get("conversation_id")  # the real API lets a client choose the id
        cid = as_hex(wanted) if wanted else uuid.uuid4().hex
        taken = self._conversations.get(cid)
        if taken is not None and taken.sandbox_status == "RUNNING":
            # The real server starts a second agent server under the same sandbox id, which
            # refuses the conversation; the first agent keeps running, unseen by the server:
            # no execution_status any more, and its webhooks (carrying the old sandbox's key)
            # are refused, so none of its later events arrive.
            task.status, task.updated_at = "ERROR", utc_iso()
            task.detail = (f"Server error '500 Internal Server Error' for url "
                           f"'{task.agent_server_url}/api/conversations'\nFor more information "
                           "check: https://developer.mozilla.org/en-US/docs/Web/HTTP/Status/500")
            taken.blind, taken.lag = True, None
            return None
        conversation = Conversation(
            cid, fallback_title(prompt, cid), request.get("selected_repository"),
            request.get("selected_branch"), git_provider=request.get("git_provider"),
            trigger=request.get("trigger"), prompt=prompt, request_title=request.get("title"),
            run_until=run_until if prompt else None,
            sandbox_id=task.sandbox_id or new_sandbox_id(cid), clock=self._clock,
            lag=self.event_lag)
        if taken is not None:  # a stopped conversation runs again, its log continuing
            conversation.events, conversation.arrive_at = taken.events, taken.arrive_at
        conversation.log(*opening(cid, prompt))
        conversation.set_agent_status("running" if prompt else "idle")
        self._conversations[cid] = conversation
        task.status, task.conversation_id, task.updated_at = "READY", cid, utc_iso()
        return conversation
