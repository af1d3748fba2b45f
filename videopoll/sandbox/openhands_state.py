"""What the OpenHands stand-in knows: start tasks, conversations, their events, and the
scripting methods tests use to set them (thread-safe under the server's `lock`).

A conversation keeps the agent's own status (`agent_status`) apart from its sandbox's, as the
real server does: `execution_status` is reported only while the sandbox is RUNNING, yet every
change of it is a `ConversationStateUpdateEvent` that stays readable when the sandbox is
PAUSED or MISSING.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import EllipsisType
from typing import Any

from .agent import SimulatedAgent, fallback_title, prompt_of


def new_sandbox_id() -> str:
    return "sb-" + secrets.token_hex(8)


def utc_iso() -> str:
    """Model timestamps as pydantic writes aware UTC datetimes."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def as_hex(raw: str) -> str:
    """A conversation or task id in the wire form (32 lowercase hex); raises ValueError."""
    return uuid.UUID(raw).hex


# The event log of a conversation whose agent finished (or failed) at its first step, as the
# real app server (OpenHands 1.11.0) records it: `kind` or `kind:key` for state updates.
# The stand-in writes the same sequence; tests/real checks it against the real server.
_START = ("ConversationStateUpdateEvent:full_state", "SystemPromptEvent", "MessageEvent",
          "ConversationStateUpdateEvent:last_user_message_id",
          "ConversationStateUpdateEvent:execution_status")
SHORT_RUN_KINDS = {
    "finished": (*_START, "ConversationStateUpdateEvent:stats",
                 "ConversationStateUpdateEvent:stats", "ActionEvent", "ObservationEvent",
                 "ConversationStateUpdateEvent:execution_status",
                 "ConversationStateUpdateEvent:full_state"),
    "error": (*_START, "ConversationStateUpdateEvent:execution_status", "ConversationErrorEvent",
              "ConversationStateUpdateEvent:full_state"),
}

_event_lock = threading.Lock()
_last_event = datetime.min


def event_time() -> str:
    """Event timestamps as the SDK writes them: naive `datetime.now().isoformat()`.

    Agent servers run in UTC containers, hence UTC without an offset. Strictly increasing so
    newest-first sorting is unambiguous even for events recorded in the same microsecond.
    """
    global _last_event
    with _event_lock:
        _last_event = max(datetime.now(UTC).replace(tzinfo=None),
                          _last_event + timedelta(microseconds=1))
        return _last_event.isoformat()


def new_event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "id": str(uuid.uuid4()), "timestamp": event_time(),
            "source": "environment", "parent_id": None, **fields}


def error_event(code: str, detail: str) -> dict[str, Any]:
    # The SDK classifies every error; codes it does not know land in this bucket.
    classification = {"kind": "unknown", "retryable": False, "user_action": "none",
                      "error_id": None}
    return new_event("ConversationErrorEvent", code=code, detail=detail,
                     classification=classification)


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

    def set_agent_status(self, status: str | None) -> None:
        """Like the agent server: every change of execution_status is an event."""
        if status != self.agent_status and status is not None:
            self.events.append(new_event("ConversationStateUpdateEvent",
                                         key="execution_status", value=status))
        self.agent_status = status
        self.updated_at = utc_iso()


class OpenHandsState:
    """The stand-in's records and the methods that script them (mixed into the server)."""

    lock: threading.RLock
    agent: SimulatedAgent | None
    url: str
    _tasks: dict[str, StartTask]
    _conversations: dict[str, Conversation]

    # -- scripting from tests ------------------------------------------------------------------
    def add_conversation(self, sandbox_status: str = "RUNNING",
                         execution_status: str | None = "running", *, title: str | None = None,
                         repository: str | None = None, branch: str | None = "main",
                         conversation_id: str | None = None) -> str:
        """A conversation in any state (values outside the real enums included); its id."""
        cid = as_hex(conversation_id) if conversation_id else uuid.uuid4().hex
        conversation = Conversation(cid, title or f"Conversation {cid[:5]}", repository, branch,
                                    sandbox_status, git_provider="github" if repository else None)
        conversation.events.append(new_event("ConversationStateUpdateEvent", key="full_state",
                                             value={"id": cid, "execution_status": "idle"}))
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
            self._conversations[as_hex(conversation_id)].events.append(event)

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
                task.sandbox_id = task.sandbox_id or new_sandbox_id()
            if status == "READY" and conversation_id is None and task.conversation_id is None:
                self._open(task, None)
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
                    task.sandbox_id = task.sandbox_id or new_sandbox_id()
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
                conversation.events.append(new_event(
                    "ConversationStateUpdateEvent", key="stats", value={"usage_to_metrics": {}}))
                if failure is not None:
                    conversation.events.append(error_event(*failure))
                conversation.set_agent_status("error" if failure else "finished")

    def _open(self, task: StartTask, run_until: float | None) -> Conversation:
        """The conversation a task becomes READY with (lock held)."""
        request, prompt = task.request, prompt_of(task.request)
        wanted = request.get("conversation_id")  # the real API lets a client choose the id
        cid = as_hex(wanted) if wanted else uuid.uuid4().hex
        conversation = Conversation(
            cid, fallback_title(prompt, cid), request.get("selected_repository"),
            request.get("selected_branch"), git_provider=request.get("git_provider"),
            trigger=request.get("trigger"), prompt=prompt, request_title=request.get("title"),
            run_until=run_until if prompt else None,
            sandbox_id=task.sandbox_id or new_sandbox_id())
        conversation.events.append(new_event("ConversationStateUpdateEvent", key="full_state",
                                             value={"id": cid, "execution_status": "idle"}))
        conversation.set_agent_status("running" if prompt else "idle")
        self._conversations[cid] = conversation
        task.status, task.conversation_id, task.updated_at = "READY", cid, utc_iso()
        return conversation
