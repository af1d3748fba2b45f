"""A scripted OpenAI-compatible chat-completions server on loopback: the real tier's "LLM".

The agent asks it what to do next; it answers with the agent's `finish` tool call, so a real
conversation ends `finished` in seconds without any model. What it does is decided by the
conversation's first user message (videopoll's prompt, which carries the lesson title):

- a message containing `FAIL_MARKER` is refused with HTTP 400 and `REFUSAL` as the error
  message, so the agent ends in `error` with that wording in its ConversationErrorEvent;
- a message containing `hold(name)` is answered only after `release(name)`, so a test can
  see the conversation running first (`HOLD_MARKER` is `hold("default")`); a message that
  is held and refused is refused once released;
- anything else is answered at once.

Requests without tools (the server titling a conversation, for instance) get a short text
answer. Streaming (`stream: true`, as OpenHands asks) and plain answers are both served.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAIL_MARKER = "[scripted:fail]"


def hold(name: str) -> str:
    return f"[scripted:hold:{name}]"


HOLD_MARKER = hold("default")
_HOLD = re.compile(r"\[scripted:hold:([\w-]+)\]")
REFUSAL = "scripted refusal: this lesson cannot be rendered"
MODEL = "scripted-agent"


def _first_user_text(body: dict[str, Any]) -> str:
    for message in body.get("messages") or []:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):
            return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        return str(content or "")
    return ""


class ScriptedLLM:
    """The server; `url` is its OpenAI base URL (…/v1), `requests` the bodies it received."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._gates: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"llm": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> ScriptedLLM:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            for gate in self._gates.values():
                gate.set()
        self._server.shutdown()
        self._server.server_close()

    def gate(self, name: str) -> threading.Event:
        with self._lock:
            return self._gates.setdefault(name, threading.Event())

    def release(self, name: str = "default") -> None:
        """Let the conversations held under `name` go on."""
        self.gate(name).set()

    def record(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(body)



class _Handler(BaseHTTPRequestHandler):
    llm: ScriptedLLM
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """Quiet: the agent servers' retries would flood the test output."""

    def _json(self, status: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        else:
            self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._json(400, {"error": {"message": "bad JSON", "type": "invalid_request_error"}})
            return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
            return
        self.llm.record(body)
        prompt = _first_user_text(body)
        tools = {t.get("function", {}).get("name") for t in body.get("tools") or []}
        if "finish" in tools and (held := _HOLD.search(prompt)):
            self.llm.gate(held.group(1)).wait(timeout=300)
        if FAIL_MARKER in prompt:
            self._json(400, {"error": {"message": REFUSAL, "type": "invalid_request_error",
                                       "code": "scripted_refusal", "param": None}})
            return
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if "finish" in tools:
            message["tool_calls"] = [{
                "id": "call_" + uuid.uuid4().hex[:24], "type": "function",
                "function": {"name": "finish",
                             "arguments": json.dumps({"message": "The video is committed."})}}]
            reason = "tool_calls"
        else:
            message["content"] = "Lesson video"
            reason = "stop"
        if body.get("stream"):
            self._stream(message, reason)
        else:
            self._json(200, {"id": "chatcmpl-" + uuid.uuid4().hex, "object": "chat.completion",
                             "created": int(time.time()), "model": MODEL,
                             "choices": [{"index": 0, "message": message,
                                          "finish_reason": reason}],
                             "usage": {"prompt_tokens": 10, "completion_tokens": 5,
                                       "total_tokens": 15}})

    def _stream(self, message: dict[str, Any], reason: str) -> None:
        ident, created = "chatcmpl-" + uuid.uuid4().hex, int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> bytes:
            data = {"id": ident, "object": "chat.completion.chunk", "created": created,
                    "model": MODEL, "choices": [{"index": 0, "delta": delta,
                                                 "finish_reason": finish}], **extra}
            return f"data: {json.dumps(data)}\n\n".encode()

        delta: dict[str, Any] = {"role": "assistant", "content": message["content"]}
        if "tool_calls" in message:
            delta["tool_calls"] = [{"index": 0, **call} for call in message["tool_calls"]]
        parts = [chunk(delta, None), chunk({}, reason, usage={
            "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}), b"data: [DONE]\n\n"]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Content-Length", str(sum(len(p) for p in parts)))
        self.end_headers()
        for part in parts:
            self.wfile.write(part)
