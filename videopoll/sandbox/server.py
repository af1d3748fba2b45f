"""A small threaded HTTP/1.1 server the stand-ins are built on.

Real sockets on 127.0.0.x with a random free port, keep-alive, streaming bodies in both
directions, per-route request counts, injected latency and bandwidth, and faults that tests
switch on per route (see `Fault`). Standard library only, so `videopoll demo` needs nothing
beyond the runtime dependencies.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

CHUNK = 64 * 1024


def _read_exactly(rfile: Any, remaining: int, piece_size: int = CHUNK) -> Iterator[bytes]:
    while remaining:
        piece = rfile.read(min(piece_size, remaining))
        if not piece:
            raise ConnectionError("client closed mid-body")
        remaining -= len(piece)
        yield piece


class Request:
    """One request; the body is read on demand so large uploads stream."""

    def __init__(self, handler: BaseHTTPRequestHandler, route: str, params: dict[str, str]):
        self._handler = handler
        self.method: str = handler.command
        split = urlsplit(handler.path)
        self.path = unquote(split.path)
        self.raw_path = split.path
        self.query: dict[str, list[str]] = parse_qs(split.query, keep_blank_values=True)
        self.raw_query = split.query
        self.headers = handler.headers
        self.route = route
        self.params = params
        self.client: str = handler.client_address[0]  # the caller's address, for rate limits
        self._consumed = False
        # The injected latency still owed, when the route takes it after the body (see
        # StandIn.route): slept once the body has been read to its end, before the answer.
        self.latency_due = 0.0

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def header(self, name: str, default: str | None = None) -> str | None:
        value = self.headers.get(name)
        return default if value is None else str(value)

    def stream(self, piece_size: int = CHUNK) -> Iterator[bytes]:
        """The request body in pieces of at most `piece_size` (Content-Length or chunked)."""
        if self._consumed:
            return
        self._consumed = True
        yield from self._body(piece_size)
        self.pay_latency()

    def pay_latency(self) -> None:
        if self.latency_due:
            time.sleep(self.latency_due)
            self.latency_due = 0.0

    def _body(self, piece_size: int) -> Iterator[bytes]:
        rfile = self._handler.rfile
        if (self.header("Transfer-Encoding") or "").lower() == "chunked":
            while True:
                size_line = rfile.readline(65537)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                yield from _read_exactly(rfile, size, piece_size)
                rfile.readline(3)
        else:
            yield from _read_exactly(rfile, int(self.header("Content-Length") or 0), piece_size)

    def body(self) -> bytes:
        return b"".join(self.stream())

    def json(self) -> Any:
        return json.loads(self.body() or b"null")

    def drain(self) -> None:
        for _ in self.stream():
            pass


@dataclass
class Response:
    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    length: int | None = None  # Content-Length for an iterable body; chunked when None
    close: bool = False  # drop the connection after answering (as some servers do on errors)

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        merged = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        return cls(status, json.dumps(data).encode(), merged)

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain") -> Response:
        return cls(status, text.encode(), {"Content-Type": f"{content_type}; charset=utf-8"})


@dataclass
class Fault:
    """A misbehaviour switched on for one route (or every route with route="*").

    kind: "status" (answer `status` with `headers`/`body`), "reset" (close the socket without
    an answer), "timeout" (hold the answer for `delay` seconds), "slow" (send the body in
    small pieces over `delay` seconds), "short" (promise Content-Length, send `keep` fraction,
    close), "html" (a 200 text/html page), "corrupt" (flip one byte of the body), or any
    name a stand-in handles itself. `times` is how many requests it hits (None: all);
    `match` narrows it to requests whose path contains the string.
    """

    kind: str
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    delay: float = 0.0
    keep: float = 0.5
    times: int | None = 1
    match: str | None = None
    hits: int = 0

    def take(self, path: str) -> bool:
        if self.match is not None and self.match not in path:
            return False
        if self.times is not None and self.hits >= self.times:
            return False
        self.hits += 1
        return True


Handler = Callable[[Request], Response]


class StandIn:
    """One HTTP server in a background thread with routes, counts, latency and faults."""

    name = "stand-in"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, latency: float = 0.0,
                 bandwidth: float | None = None) -> None:
        self.host = host
        self.port = port
        self.latency = latency
        self.bandwidth = bandwidth  # bytes per second for response bodies, None: unlimited
        self.counts: Counter[str] = Counter()
        self.log: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers)
        self.faults: dict[str, list[Fault]] = {}
        self.lock = threading.RLock()
        self._routes: list[tuple[str, re.Pattern[str], str, Handler, bool]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- wiring -----------------------------------------------------------------------------
    def route(self, method: str, pattern: str, name: str, handler: Handler, *,
              latency_after_body: bool = False) -> None:
        """`latency_after_body`: the injected latency starts once the request body has been
        read rather than when its headers arrive, so the client's upload streams into the
        server meanwhile instead of waiting in socket buffers and being read after the
        latency. On a network the body travels while the latency runs, and the answer comes
        a round trip after the last byte left: that is what this measures (the time to send
        the body, then the latency), where latency-first added the stand-in's own reading
        and writing of the body on top."""
        self._routes.append((method, re.compile(pattern + r"\Z"), name, handler,
                             latency_after_body))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        self._server = _Server((self.host, self.port), _make_handler(self))
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name=f"{self.name}:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting from tests ------------------------------------------------------------------
    def inject(self, route: str, fault: Fault) -> Fault:
        """Switch a fault on for `route` (a route name, or "*" for all)."""
        with self.lock:
            self.faults.setdefault(route, []).append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def reset_counts(self) -> None:
        with self.lock:
            self.counts.clear()
            self.log.clear()

    def total(self) -> int:
        return sum(self.counts.values())

    def fault_for(self, route: str, path: str) -> Fault | None:
        with self.lock:
            for key in (route, "*"):
                for fault in self.faults.get(key, []):
                    if fault.take(path):
                        return fault
        return None

    # -- hooks a stand-in may override ----------------------------------------------------------
    def before(self, request: Request) -> Response | None:
        """Runs before routing (authentication, rate limits); a Response short-circuits."""
        return None

    def not_found(self, request: Request) -> Response:
        return Response.json({"detail": "Not Found"}, 404)

    def fault_response(self, fault: Fault, request: Request) -> Response | None:
        """A stand-in's own fault kinds; None falls back to the generic ones."""
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that vanished (killed, timed out) is routine for a stand-in; say nothing.
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class _Reset(Exception):
    pass


def _make_handler(app: StandIn) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = app.name
        # Without this every keep-alive answer waits ~40 ms for a delayed ACK.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            return None

        def _dispatch(self) -> None:
            path = urlsplit(self.path).path
            route_name, handler, params, after_body = "?", None, {}, False
            for method, pattern, name, fn, late in app._routes:
                match = pattern.match(path)
                if match and method == self.command:
                    route_name, handler, params, after_body = name, fn, match.groupdict(), late
                    break
                if match and route_name == "?":
                    route_name = "405"
            request = Request(self, route_name, params)
            with app.lock:
                app.counts[route_name] += 1
                app.log.append((self.command, self.path, dict(self.headers.items())))
            fault = app.fault_for(route_name, self.path) if handler else None
            if after_body and fault is None:
                request.latency_due = app.latency
            elif app.latency:  # an injected fault keeps the plain order: latency, then it
                time.sleep(app.latency)
            try:
                if fault is not None and fault.kind in ("status", "reset", "timeout", "html"):
                    response = self._generic_fault(fault, request)
                elif fault is not None and (custom := app.fault_response(fault, request)):
                    response = custom
                else:
                    response = app.before(request) or (
                        handler(request) if handler else app.not_found(request))
                request.drain()
                request.pay_latency()  # a handler that answered without reading the body
                if fault is not None and fault.kind in ("slow", "short", "corrupt"):
                    self._send_faulty(response, fault)
                else:
                    self._send(response)
                if response.close:
                    self.close_connection = True
            except _Reset:
                self._reset()
            except (ConnectionError, BrokenPipeError):
                self.close_connection = True

        def _generic_fault(self, fault: Fault, request: Request) -> Response:
            if fault.kind == "reset":
                raise _Reset
            if fault.kind == "timeout":
                time.sleep(fault.delay or 30)
                raise _Reset
            if fault.kind == "html":
                page = b"<!DOCTYPE html><html><body><h1>Service unavailable</h1></body></html>"
                return Response(200, page, {"Content-Type": "text/html; charset=utf-8"})
            body = fault.body if fault.body is not None else json.dumps(
                {"message": "injected fault", "status": str(fault.status)}).encode()
            return Response(fault.status, body, {"Content-Type": "application/json",
                                                 **fault.headers})

        def _reset(self) -> None:
            # SO_LINGER 0 makes close() send RST: the client sees "connection reset".
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True

        def _head(self, response: Response, length: int | None) -> None:
            self.send_response(response.status)
            for key, value in response.headers.items():
                self.send_header(key, value)
            if length is not None:
                self.send_header("Content-Length", str(length))
            elif response.status not in (204, 304) and self.command != "HEAD":
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

        def _send(self, response: Response) -> None:
            body = response.body
            no_body = response.status in (204, 304) or self.command == "HEAD"
            if isinstance(body, bytes):
                self._head(response, None if response.status in (204, 304) else len(body))
                if not no_body:
                    self._write(body)
                return
            self._head(response, response.length)
            if no_body:
                return
            for piece in body:
                if response.length is None:
                    self._write(b"%x\r\n%s\r\n" % (len(piece), piece) if piece else b"")
                else:
                    self._write(piece)
            if response.length is None:
                self._write(b"0\r\n\r\n")

        def _write(self, data: bytes) -> None:
            if not data:
                return
            if app.bandwidth:
                for start in range(0, len(data), CHUNK):
                    piece = data[start:start + CHUNK]
                    self.wfile.write(piece)
                    time.sleep(len(piece) / app.bandwidth)
            else:
                self.wfile.write(data)

        def _send_faulty(self, response: Response, fault: Fault) -> None:
            data = response.body if isinstance(response.body, bytes) else b"".join(response.body)
            if fault.kind == "corrupt" and data:
                middle = len(data) // 2
                data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
            self._head(response, len(data))
            if fault.kind == "short":
                self.wfile.write(data[: int(len(data) * fault.keep)])
                self.wfile.flush()
                raise _Reset
            if fault.kind == "slow":
                pieces = max(1, min(len(data), 20))
                step = max(1, len(data) // pieces)
                for start in range(0, len(data), step):
                    self.wfile.write(data[start:start + step])
                    self.wfile.flush()
                    time.sleep(fault.delay / pieces)
                return
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._dispatch_safely()

        do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

        def _dispatch_safely(self) -> None:
            try:
                self._dispatch()
            except _Reset:
                self._reset()

    return _Handler
