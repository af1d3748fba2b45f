"""The events of a stand-in conversation, shaped and ordered as the real app server's.

Read off OpenHands 1.11.0 (agent server 1.34) by the `real` test tier: a conversation whose
agent finishes at its first step records the eleven events of `SHORT_RUN_KINDS["finished"]`,
one that fails the eight of `["error"]`. Status changes are `ConversationStateUpdateEvent`s
with `key: "execution_status"`; `full_state` snapshots (the whole state, `execution_status`
included) open the log and close it once the agent stops. The error event follows the status
change. Events reach the app server through webhooks, so its log trails the live status.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

# `kind`, or `kind:key` for state updates, in order (tests/real checks them on the server).
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

_lock = threading.Lock()
_last = datetime.min


def event_time() -> str:
    """Event timestamps as the SDK writes them: naive `datetime.now().isoformat()`.

    Agent servers run in UTC containers, hence UTC without an offset. Strictly increasing so
    newest-first sorting is unambiguous even for events recorded in the same microsecond.
    """
    global _last
    with _lock:
        _last = max(datetime.now(UTC).replace(tzinfo=None), _last + timedelta(microseconds=1))
        return _last.isoformat()


def new_event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "id": str(uuid.uuid4()), "timestamp": event_time(),
            "source": "environment", "parent_id": None, **fields}


def state_event(key: str, value: Any, parent: str | None = None) -> dict[str, Any]:
    return new_event("ConversationStateUpdateEvent", key=key, value=value, parent_id=parent)


def snapshot(conversation_id: str, status: str) -> dict[str, Any]:
    """A `full_state` event: the agent's whole state (here its id and status)."""
    return state_event("full_state", {"id": str(uuid.UUID(conversation_id)),
                                      "execution_status": status})


def stats() -> dict[str, Any]:
    return state_event("stats", {"usage_to_metrics": {}})


def error_event(code: str, detail: str) -> dict[str, Any]:
    """As agent server 1.34 writes it: `code` (e.g. LLMBadRequestError) and `detail`."""
    return new_event("ConversationErrorEvent", code=code, detail=detail)


def opening(conversation_id: str, prompt: str) -> list[dict[str, Any]]:
    """What a conversation logs before its agent's status first changes."""
    first = snapshot(conversation_id, "idle")
    system = new_event("SystemPromptEvent", source="agent",
                       system_prompt={"type": "text", "text": "You are OpenHands agent."},
                       tools=[], dynamic_context=None)
    message = new_event("MessageEvent", source="user", parent_id=system["id"],
                        llm_message={"role": "user",
                                     "content": [{"type": "text", "text": prompt}]},
                        activated_skills=[], extended_content=[], sender=None)
    return [first, system, message,
            state_event("last_user_message_id", message["id"], message["id"])]


def finishing(message: str = "The video is committed.") -> list[dict[str, Any]]:
    """The agent's last step before `finished`: the LLM call and its `finish` tool."""
    usage, call = stats(), "call_" + uuid.uuid4().hex[:24]  # built in log order: timestamps
    action = new_event("ActionEvent", source="agent", tool_name="finish", tool_call_id=call,
                       action={"message": message, "kind": "FinishAction"},
                       summary=f'finish: {{"message": "{message}"}}')
    observation = new_event("ObservationEvent", parent_id=action["id"], tool_name="finish",
                            tool_call_id=call, action_id=action["id"],
                            observation={"content": [{"type": "text", "text": message}]})
    return [usage, action, observation]
