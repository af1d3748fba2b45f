"""The OpenHands V1 wire forms: request validation, FastAPI errors and the JSON of records.

Each check reproduces what FastAPI + pydantic answer for the real models
(`AppConversationStartRequest`, `TextContent | ImageContent`, query parameters): 422
`{"detail": [{"type", "loc", "msg", "input", "ctx"?}]}` with pydantic's types and messages.
Records serialise as `AppConversationStartTask` and `AppConversation` do.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterable
from typing import Any

from .openhands_state import Conversation, StartTask
from .server import Request, Response

_DICT = "Input should be a valid dictionary or object to extract fields from"
_UUID_CHARS = frozenset("0123456789abcdefABCDEF-")
_STRINGS = ("sandbox_id", "selected_repository", "selected_branch", "title", "llm_model",
            "system_message_suffix", "agent_profile_id")
_ENUMS = {
    "git_provider": ("github", "gitlab", "bitbucket", "bitbucket_data_center", "azure_devops",
                     "enterprise_sso"),
    "agent_type": ("default", "plan"),
    "trigger": ("resolver", "gui", "suggested_task", "openhands_api", "slack",
                "microagent_management", "jira", "jira_dc", "linear", "bitbucket", "automation"),
}
REQUEST_DEFAULTS: dict[str, Any] = {
    "sandbox_id": None, "conversation_id": None, "initial_message": None,
    "system_message_suffix": None, "processors": None, "llm_model": None,
    "agent_profile_id": None, "selected_repository": None, "selected_branch": None,
    "git_provider": None,
    "dependency_repos": [], "suggested_task": None, "title": None, "trigger": None,
    "pr_number": [], "parent_conversation_id": None, "agent_type": "default", "public": None,
    "plugins": None, "secrets": None,
}
EVENT_KINDS = (  # in the order the real 422 lists them
    "ACPToolCallEvent", "Condensation", "CondensationRequest", "CondensationSummaryEvent",
    "ConversationErrorEvent", "ConversationStateUpdateEvent", "HookExecutionEvent",
    "LLMCompletionLogEvent", "ActionEvent", "MessageEvent", "AgentErrorEvent",
    "ObservationEvent", "UserRejectObservation", "SystemPromptEvent", "StreamingDeltaEvent",
    "TokenEvent", "InterruptEvent", "PauseEvent",
)


def err(kind: str, loc: Iterable[Any], msg: str, value: Any,
         ctx: dict[str, Any] | None = None) -> dict[str, Any]:
    """One pydantic error as FastAPI's 422 lists it."""
    return {"type": kind, "loc": list(loc), "msg": msg, "input": value, **(
        {"ctx": ctx} if ctx else {})}


def _choices(allowed: Iterable[str]) -> str:
    quoted = [f"'{item}'" for item in allowed]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def choice_err(kind: str, loc: Iterable[Any], value: Any, allowed: Iterable[str]
                ) -> dict[str, Any]:
    expected = _choices(allowed)
    return err(kind, loc, f"Input should be {expected}", value, {"expected": expected})


def uuid_err(loc: Iterable[Any], value: Any) -> dict[str, Any] | None:
    """pydantic's UUID error as the real server words it: the first character that cannot be
    in a UUID, else a wrong length."""
    try:
        uuid.UUID(value)
        return None
    except (ValueError, TypeError, AttributeError):
        text = value if isinstance(value, str) else ""
        bad = next(((i, c) for i, c in enumerate(text) if c not in _UUID_CHARS), None)
        problem = (f"invalid character: found `{bad[1]}` at {bad[0]}" if bad is not None
                   else f"invalid length: found {len(text)}")
        return err("uuid_parsing", loc, f"Input should be a valid UUID, {problem}", value,
                    {"error": problem})


def _content_errors(part: Any, at: tuple[Any, ...]) -> list[dict[str, Any]]:
    """`TextContent | ImageContent`: errors only when neither member accepts the part."""
    if not isinstance(part, dict):
        return [err("model_attributes_type", (*at, kind), _DICT, part)
                for kind in ("TextContent", "ImageContent")]
    text, image = (*at, "TextContent"), (*at, "ImageContent")
    as_text = [err("extra_forbidden", (*text, key), "Extra inputs are not permitted", value)
               for key, value in part.items()
               if key not in ("type", "text", "cache_prompt", "enable_truncation")]
    if part.get("type", "text") != "text":
        as_text.append(choice_err("literal_error", (*text, "type"), part["type"], ["text"]))
    if not isinstance(part.get("text"), str):
        as_text.append(err("missing", (*text, "text"), "Field required", part) if "text" not in
                       part else err("string_type", (*text, "text"),
                                      "Input should be a valid string", part["text"]))
    as_image = [] if part.get("type") == "image" else [
        choice_err("literal_error", (*image, "type"), part.get("type", "text"), ["image"])]
    if not isinstance(part.get("image_urls"), list):
        as_image.append(err("missing", (*image, "image_urls"), "Field required", part))
    return as_text + as_image if as_text and as_image else []


def start_request_errors(body: Any) -> list[dict[str, Any]]:
    """Validate like `AppConversationStartRequest`: every field optional, unknown ones ignored."""
    if not isinstance(body, dict):
        return [err("model_attributes_type", ["body"], _DICT, body)]
    errors = [err("string_type", ["body", name], "Input should be a valid string", body[name])
              for name in _STRINGS if body.get(name) is not None
              and not isinstance(body[name], str)]
    errors += [e for name in ("conversation_id", "parent_conversation_id")
               if body.get(name) is not None and (e := uuid_err(["body", name], body[name]))]
    errors += [choice_err("enum", ["body", name], body[name], allowed)
               for name, allowed in _ENUMS.items()
               if body.get(name) is not None and body[name] not in allowed]
    secrets = body.get("secrets")
    if secrets is not None and not isinstance(secrets, dict):
        errors.append(err("dict_type", ["body", "secrets"], "Input should be a valid dictionary",
                           secrets))
    elif secrets:
        errors += [err("string_type", ["body", "secrets", name], "Input should be a valid "
                        "string", value) for name, value in secrets.items()
                   if not isinstance(value, str)]
    message, at = body.get("initial_message"), ("body", "initial_message")
    if message is not None and not isinstance(message, dict):
        errors.append(err("model_attributes_type", at, _DICT, message))
    elif message is not None:
        if message.get("role", "user") not in ("user", "system", "assistant", "tool"):
            errors.append(choice_err("literal_error", (*at, "role"), message["role"],
                                      ["user", "system", "assistant", "tool"]))
        content = message.get("content", [])
        if not isinstance(content, list):
            errors.append(err("list_type", (*at, "content"), "Input should be a valid list",
                               content))
        else:
            for index, part in enumerate(content):
                errors += _content_errors(part, (*at, "content", index))
    return errors


def unprocessable(errors: list[dict[str, Any]]) -> Response:
    return Response.json({"detail": errors}, 422)


def json_body(request: Request) -> tuple[Any, Response | None]:
    """The body as FastAPI hands it to a model parameter, or the 422 it answers instead."""
    raw = request.body()
    kind = (request.header("Content-Type") or "application/json").split(";")[0].strip().lower()
    if raw and kind != "application/json" and not (
            kind.startswith("application/") and kind.endswith("+json")):
        # FastAPI validates a non-JSON body as its raw text, which no model accepts. It would
        # echo that text as `input`; this stand-in does not, as it may hold secrets.
        return None, unprocessable([err("model_attributes_type", ["body"], _DICT,
                                        f"<{len(raw)} bytes of {kind}, not echoed>")])
    try:
        body = json.loads(raw) if raw else None
    except json.JSONDecodeError as exc:
        return None, unprocessable([err("json_invalid", ["body", exc.pos], "JSON decode error",
                                        {}, {"error": exc.msg})])
    except ValueError:  # not UTF-8: FastAPI's generic body error
        return None, Response.json({"detail": "There was an error parsing the body"}, 400)
    if body is None:
        return None, unprocessable([err("missing", ["body"], "Field required", None)])
    return body, None


def page_args(request: Request, sorts: Iterable[str] | None = None, default_sort: str = ""
               ) -> tuple[int, int, str] | Response:
    """`limit` (0 < limit <= 100), `page_id` (an offset) and `sort_order`, FastAPI-checked."""
    raw, errors = request.arg("limit", "100") or "", []
    limit = int(raw) if raw.strip().lstrip("-").isdigit() else None
    if limit is None:
        errors.append(err("int_parsing", ["query", "limit"], "Input should be a valid integer, "
                           "unable to parse string as an integer", raw))
    elif not 0 < limit <= 100:
        errors.append(err("greater_than", ["query", "limit"], "Input should be greater than 0",
                           raw, {"gt": 0}) if limit <= 0 else err(
            "less_than_equal", ["query", "limit"], "Input should be less than or equal to 100",
            raw, {"le": 100}))
    sort = request.arg("sort_order", default_sort) or default_sort
    if sorts is not None and sort not in sorts:
        errors.append(choice_err("enum", ["query", "sort_order"], sort, sorts))
    if errors:
        return unprocessable(errors)
    page = request.arg("page_id") or "0"
    return (int(page) if page.isdigit() else 0), limit or 100, sort


def page(items: list[Any], offset: int, limit: int) -> dict[str, Any]:
    more = len(items) > offset + limit
    return {"items": items[offset:offset + limit],
            "next_page_id": str(offset + limit) if more else None}


def task_json(task: StartTask, user_id: str) -> dict[str, Any]:
    echoed = {**REQUEST_DEFAULTS, **copy.deepcopy(
        {k: v for k, v in task.request.items() if k in REQUEST_DEFAULTS})}
    for name in ("conversation_id", "parent_conversation_id"):  # UUIDs serialise dashed
        if echoed[name]:
            echoed[name] = str(uuid.UUID(echoed[name]))
    if isinstance(echoed["secrets"], dict):  # SecretStr values serialise masked
        echoed["secrets"] = dict.fromkeys(echoed["secrets"], "**********")
    if isinstance(message := echoed["initial_message"], dict):
        echoed["initial_message"] = {
            "role": message.get("role", "user"), "run": message.get("run", False),
            "content": [{"cache_prompt": False, "type": "text", **part}
                        for part in message.get("content", [])]}
    return {"id": task.id, "created_by_user_id": user_id, "status": task.status,
            "detail": task.detail, "app_conversation_id": task.conversation_id,
            "sandbox_id": task.sandbox_id, "agent_server_url": task.agent_server_url,
            "dependency_repos_cloned": [], "request": echoed,
            "created_at": task.created_at, "updated_at": task.updated_at}


def conversation_json(c: Conversation, user_id: str, base_url: str) -> dict[str, Any]:
    running = c.sandbox_status == "RUNNING"  # only a running sandbox is asked for its status
    tags = {"archiveworkspacepath": ".", **{key: value for key, value in (
        ("repo_name", c.repository), ("git_provider", c.git_provider),
        ("selected_branch", c.branch)) if value}}
    return {
        "id": c.id, "created_by_user_id": user_id, "sandbox_id": c.sandbox_id,
        "selected_repository": c.repository, "selected_branch": c.branch,
        "git_provider": c.git_provider, "title": c.title, "trigger": c.trigger,
        "pr_number": [], "llm_model": "litellm_proxy/claude-sonnet-4-5-20250929",
        "agent_kind": "openhands", "metrics": None, "parent_conversation_id": None,
        "sub_conversation_ids": [], "public": None, "tags": tags,
        "created_at": c.created_at, "updated_at": c.updated_at, "acp_server": None,
        "sandbox_status": c.sandbox_status,
        # A blind conversation's agent server is not the one the server asks any more.
        "execution_status": c.agent_status if running and not c.blind else None,
        # The agent server's own URL; this stand-in does not serve it.
        "conversation_url": (f"{base_url}/agent-server/{c.sandbox_id}/api/conversations/{c.id}"
                             if running else None),
        "session_api_key": c.session_key if running else None,
        "launched_agent_profile": None,
    }
