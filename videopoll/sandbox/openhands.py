"""A local OpenHands V1 app server, as strict as the real one (DESIGN section 8.1).

Routes, with their names in `counts`, as OpenHands' `openhands/app_server` routers have them:
`POST /api/v1/app-conversations` (start), `GET /api/v1/app-conversations?ids=` (conversations),
`GET .../app-conversations/search` (search), `GET .../app-conversations/start-tasks?ids=`
(start_tasks), `GET .../start-tasks/search` (start_tasks_search),
`GET /api/v1/conversation/{id}/events/search` (events) and `.../events/count` (events_count).

Where the real source differs from DESIGN 8.1 the source wins: a conversation's `title` is not
the request's (the server names it, then titles it from the first message); event timestamps
carry no `Z`; a malformed start-task id is a 422, not a 400; a malformed conversation id in the
events path is a 500 after which the connection is dropped; self-hosted servers
(`auth="session"`) answer 401 `{"detail": "Unauthorized"}`.

What the `real` test tier saw on OpenHands 1.11.0 is reproduced too (tests/real/README.md):
the event log a conversation writes (`openhands_events`), which reaches the server only
`event_lag` seconds after the live status (webhooks); the self-hosted rate limiter
(`rate_limit="self-hosted"`); a second start with the `conversation_id` of a running
conversation fails and loses the first (no `execution_status`, no more events), one of a
stopped conversation runs it again under the same id.

Tests script it with `add_conversation`, `set_state`, `add_error_event`, `add_event`, `remove`,
`add_start_task`, `set_start_task`, `reset` and `tick` (thread-safe; any enum value, even one
the real service lacks, so clients meet surprises), and read `started` and `counts`. The
simulated agent lives in `videopoll.sandbox.agent`, the records in `openhands_state`, request
validation and JSON shapes in `openhands_wire`.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from .agent import SimulatedAgent
from .openhands_state import Conversation, OpenHandsState, StartTask, as_hex
from .openhands_wire import (
    EVENT_KINDS,
    choice_err,
    conversation_json,
    err,
    json_body,
    page,
    page_args,
    start_request_errors,
    task_json,
    unprocessable,
    uuid_err,
)
from .server import Request, Response, StandIn

_V1 = "/api/v1/app-conversations"
_EVENTS = r"/api/v1/conversation/(?P<cid>[^/]+)/events"
_TASK_SORTS = ("CREATED_AT", "CREATED_AT_DESC", "UPDATED_AT", "UPDATED_AT_DESC")


CLOUD_LIMITS = (10, 100)  # per second, per minute: OpenHands Cloud's "10/second; 100/minute"


def _window_label(amount: int, seconds: float) -> str:
    """How the `limits` library names a window ("10 per 1 second", "100 per 1 minute")."""
    if seconds == 60.0:
        return f"{amount} per 1 minute"
    return f"{amount} per {seconds:g} second"


def _naive(raw: str) -> datetime:
    moment = datetime.fromisoformat(raw)
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


class OpenHandsStandIn(OpenHandsState, StandIn):
    """The OpenHands V1 app server: start tasks, conversations and their events.

    `api_key` is the accepted key (or keys); `auth="bearer"` is OpenHands Cloud (Authorization:
    Bearer, X-Session-API-Key accepted as its fallback), `auth="session"` a self-hosted server
    (X-Session-API-Key only). `rate_limit=(per_second, per_minute)` sets Cloud's per-user fixed
    windows, on by default at Cloud's own figures (`"cloud"`: 10 and 100, as OpenHands'
    enterprise server creates its limiter), so that a client which overspends meets the 429
    it would meet there; `rate_windows` shortens the two windows (seconds) for tests that
    cannot wait a minute; `None` turns the limiter off (a test or benchmark that legitimately
    sends more); `rate_limit="self-hosted"` is the open-source app server's limiter instead
    (per client: 10 requests a second served, the next 10 held for a second, more refused).
    `client_rate()` is the VIDEOPOLL_OPENHANDS_RATE that keeps a client within the limits
    configured. `agent` simulates the agent behind started tasks, whose events reach
    the server `event_lag` seconds after the live status.
    """

    name = "openhands"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 api_key: str | Iterable[str] = "test-key", auth: str = "bearer",
                 rate_limit: tuple[int, int] | str | None = "cloud",
                 rate_windows: tuple[float, float] = (1.0, 60.0),
                 agent: SimulatedAgent | None = None, event_lag: float = 0.0,
                 latency: float = 0.0, bandwidth: float | None = None) -> None:
        super().__init__(host, port, latency=latency, bandwidth=bandwidth)
        if auth not in ("bearer", "session"):
            raise ValueError(f"auth must be 'bearer' or 'session', not {auth!r}")
        self.keys = {api_key} if isinstance(api_key, str) else set(api_key)
        self.auth = auth
        self.agent = agent
        self.event_lag = event_lag
        self.user_id = str(uuid.uuid4())
        self.started: list[dict[str, Any]] = []  # start request bodies, secrets included
        if rate_limit == "cloud":
            rate_limit = CLOUD_LIMITS
        if rate_limit not in (None, "self-hosted") and not isinstance(rate_limit, tuple):
            raise ValueError(f"rate_limit must be (per_second, per_minute), 'cloud' or "
                             f"'self-hosted', not {rate_limit!r}")
        self.self_hosted_limit = rate_limit == "self-hosted"
        self.rate_limit = rate_limit if isinstance(rate_limit, tuple) else None
        self.rate_windows = rate_windows
        self._limits = [
            (amount, seconds, _window_label(amount, seconds))
            for amount, seconds in zip(rate_limit, rate_windows, strict=True)
        ] if isinstance(rate_limit, tuple) else []
        self.refused = 0  # requests the per-user limiter answered 429
        self._history: dict[str, list[float]] = {}
        self._windows: dict[tuple[str, float], list[float]] = {}
        self._tasks: dict[str, StartTask] = {}
        self._conversations: dict[str, Conversation] = {}
        for method, path, name, handler in (
            ("POST", _V1, "start", self._start),
            ("GET", _V1, "conversations", self._batch_conversations),
            ("GET", _V1 + "/search", "search", self._search),
            ("GET", _V1 + "/start-tasks", "start_tasks", self._batch_tasks),
            ("GET", _V1 + "/start-tasks/search", "start_tasks_search", self._search_tasks),
            ("GET", _EVENTS + "/search", "events", self._events),
            ("GET", _EVENTS + "/count", "events_count", self._count_events),
        ):
            self.route(method, path, name, handler)

    # -- auth, rate limit, routing -------------------------------------------------------------

    def set_rate_limit(self, rate_limit: tuple[int, int] | None,
                       windows: tuple[float, float] = (1.0, 60.0)) -> None:
        """Turn the per-user limiter on (per second, per minute) or off on a running stand-in
        (a benchmark's world serves several measurements, only one of them throttled)."""
        self.rate_limit = rate_limit
        self.rate_windows = windows
        self._limits = [] if rate_limit is None else [
            (amount, seconds, _window_label(amount, seconds))
            for amount, seconds in zip(rate_limit, windows, strict=True)]
        self._windows.clear()
        self.refused = 0
    def before(self, request: Request) -> Response | None:
        if self.self_hosted_limit and (refused := self._self_hosted_limit(request)):
            return refused
        if self.auth == "session":
            if request.route == "?":  # a router dependency there: unknown paths are just 404
                return None
            key = request.header("X-Session-API-Key") or ""
            if key not in self.keys:
                return Response.json({"detail": "Unauthorized"}, 401)
        else:
            header = request.header("Authorization") or ""
            key = (header.replace("Bearer ", "") if header.startswith("Bearer ")
                   else request.header("X-Session-API-Key") or "")
            if not key:
                return Response.json({"error": "NoCredentialsError"}, 401)
            if key not in self.keys:
                return Response.json({"error": "failed to authenticate"}, 401)
        limited = self._rate_limit(key)
        if limited is None:
            self.tick()
        return limited

    def _rate_limit(self, key: str) -> Response | None:
        """Fixed windows per user, hit in order like Cloud's limiter ("10/second; 100/minute")."""
        now = time.time()
        with self.lock:
            for amount, seconds, label in self._limits:
                window = self._windows.get((key, seconds))
                if window is None or now >= window[0] + seconds:
                    window = self._windows[(key, seconds)] = [now, 0.0]
                window[1] += 1
                if window[1] > amount:
                    self.refused += 1
                    reset = window[0] + seconds
                    return Response.json({"error": f"Rate limit exceeded: {label}"}, 429, {
                        "X-RateLimit-Limit": label, "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset": str(int(reset)),
                        # Truncated like the real handler: often "0" within a 1 s window.
                        "Retry-After": str(int(reset - now))})
        return None

    def client_rate(self) -> str | None:
        """The VIDEOPOLL_OPENHANDS_RATE that keeps a client within this server's limits
        (None: windows no setting can name; such a test builds its own pacer)."""
        if self.self_hosted_limit:
            return "10/s"
        if self.rate_limit is None:
            return "off"
        if self.rate_windows != (1.0, 60.0):
            return None
        return f"{self.rate_limit[1]}/min, {self.rate_limit[0]}/s"

    def _self_hosted_limit(self, request: Request) -> Response | None:
        """The open-source app server's `InMemoryRateLimiter(requests=10, seconds=1)`, a
        middleware in front of everything (auth included): per client address, a sliding
        second; requests 11-20 in it wait a second and are served, later ones get 429."""
        now = time.monotonic()
        with self.lock:
            history = [t for t in self._history.get(request.client, []) if t > now - 1.0]
            history.append(now)
            self._history[request.client] = history
            count = len(history)
        if count > 20:
            return Response.json({"message": "Too many requests"}, 429, {"Retry-After": "1"})
        if count > 10:
            time.sleep(1.0)
        return None

    def __enter__(self) -> OpenHandsStandIn:
        self.start()
        return self

    def reset(self) -> None:
        """Forget every task, conversation, start request, rate window, count and fault."""
        with self.lock:
            self._tasks.clear()
            self._conversations.clear()
            self._windows.clear()
            self._history.clear()
            self.started.clear()
            self.refused = 0
        self.reset_counts()
        self.clear_faults()

    def not_found(self, request: Request) -> Response:
        if request.route == "405":
            return Response.json({"detail": "Method Not Allowed"}, 405)
        return super().not_found(request)

    # -- handlers ------------------------------------------------------------------------------
    def _start(self, request: Request) -> Response:
        body, problem = json_body(request)
        if problem is not None:
            return problem
        if errors := start_request_errors(body):
            return unprocessable(errors)
        born = self.agent.clock() if self.agent is not None else None
        with self.lock:
            self.started.append(copy.deepcopy(body))
            task = StartTask(uuid.uuid4().hex, body, born=born)
            self._tasks[task.id] = task
            return Response.json(task_json(task, self.user_id))

    def _batch_tasks(self, request: Request) -> Response:
        ids = request.query.get("ids")
        if not ids:
            return unprocessable([err("missing", ["query", "ids"], "Field required", None)])
        if errors := [e for i, raw in enumerate(ids) if (e := uuid_err(["query", "ids", i], raw))]:
            return unprocessable(errors)
        if len(ids) > 100:
            return Response.json({"detail": "Cannot request more than 100 start tasks at once, "
                                            f"got {len(ids)}"}, 400)
        with self.lock:
            return Response.json([task_json(t, self.user_id)
                                  if (t := self._tasks.get(as_hex(raw))) else None
                                  for raw in ids])

    def _batch_conversations(self, request: Request) -> Response:
        ids = request.query.get("ids")
        if not ids:
            return unprocessable([err("missing", ["query", "ids"], "Field required", None)])
        if len(ids) >= 100:
            return Response.json({"detail": "Too many ids requested. Maximum is 99."}, 400)
        if invalid := [raw for raw in ids if uuid_err([], raw)]:
            return Response.json({"detail": f"Invalid UUID format for ids: {invalid}"}, 400)
        with self.lock:
            return Response.json([conversation_json(c, self.user_id, self.url)
                                  if (c := self._conversations.get(as_hex(raw))) else None
                                  for raw in ids])

    def _search(self, request: Request) -> Response:
        args = page_args(request)
        if isinstance(args, Response):
            return args
        needle = request.arg("title__contains")
        with self.lock:
            found = sorted(self._conversations.values(), key=lambda c: c.created_at, reverse=True)
            items = [conversation_json(c, self.user_id, self.url) for c in found
                     if needle is None or needle in c.title]
        return Response.json(page(items, args[0], args[1]))

    def _search_tasks(self, request: Request) -> Response:
        args = page_args(request, _TASK_SORTS, "CREATED_AT_DESC")
        if isinstance(args, Response):
            return args
        wanted = request.arg("conversation_id__eq")
        if wanted is not None and (problem := uuid_err(["query", "conversation_id__eq"], wanted)):
            return unprocessable([problem])
        offset, limit, sort = args
        with self.lock:
            tasks = [t for t in self._tasks.values()
                     if wanted is None or t.conversation_id == as_hex(wanted)]
            tasks.sort(key=lambda t: t.updated_at if sort.startswith("UPDATED") else t.created_at,
                       reverse=sort.endswith("_DESC"))
            return Response.json(page([task_json(t, self.user_id) for t in tasks], offset, limit))

    def _matching_events(self, request: Request) -> list[dict[str, Any]] | Response:
        kind = request.arg("kind__eq")
        if kind is not None and kind not in EVENT_KINDS:
            return unprocessable([choice_err("literal_error", ["query", "kind__eq"], kind,
                                             EVENT_KINDS)])
        bounds: dict[str, datetime] = {}
        for name in ("timestamp__gte", "timestamp__lt"):
            if (raw := request.arg(name)) is not None:
                try:
                    bounds[name] = _naive(raw)
                except ValueError:
                    return unprocessable([err("datetime_from_date_parsing", ["query", name],
                                              "Input should be a valid datetime or date", raw)])
        try:
            conversation_id = as_hex(request.params["cid"])
        except ValueError:  # the real router calls UUID() on the path unguarded; uvicorn
            # then drops the connection, which the client meets on its next request
            return Response(500, b"Internal Server Error",
                            {"Content-Type": "text/plain; charset=utf-8"}, close=True)
        with self.lock:
            found = self._conversations.get(conversation_id)
            events = found.visible() if found else []
        low, high = bounds.get("timestamp__gte"), bounds.get("timestamp__lt")
        return [e for e in events if (kind is None or e["kind"] == kind)
                and (low is None or _naive(e["timestamp"]) >= low)
                and (high is None or _naive(e["timestamp"]) < high)]

    def _events(self, request: Request) -> Response:
        args = page_args(request, ("TIMESTAMP", "TIMESTAMP_DESC"), "TIMESTAMP")
        if isinstance(args, Response):
            return args
        events = self._matching_events(request)
        if isinstance(events, Response):
            return events
        events.sort(key=lambda e: str(e["timestamp"]), reverse=args[2] == "TIMESTAMP_DESC")
        return Response.json(page(events, args[0], args[1]))

    def _count_events(self, request: Request) -> Response:
        events = self._matching_events(request)
        return events if isinstance(events, Response) else Response.json(len(events))
