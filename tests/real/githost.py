"""The git host the real app server checks a start request's repository against, on loopback.

OpenHands verifies `selected_repository` through a git provider's API before it clones
(no provider: the start task ends ERROR with an empty detail; a repository the provider does
not know: "Git provider authentication issue when getting remote URL"). With no internet,
the tier registers this server as a GitLab provider (GitLab is the provider whose API URL
may be plain http on loopback) that knows the artifacts repository. The clone that follows
fails, which OpenHands logs as a warning and carries on: the scripted agent needs no files,
and the tests commit the video to the GitHub stand-in themselves.

It answers the three GitLab calls OpenHands makes: `GET /api/v4/user` (token check),
`GET /api/v4/projects/{owner%2Fname}` and `GET /api/v4/groups` (404); everything else 404.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit


class GitHost:
    """Knows `repositories` ("owner/name") for requests carrying `token`."""

    def __init__(self, token: str, repositories: set[str]) -> None:
        self.token, self.repositories = token, repositories
        self.requests: list[str] = []
        handler = type("Handler", (_Handler,), {"host": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> GitHost:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    host: GitHost
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """Quiet."""

    def _answer(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        self.host.requests.append(path)
        if self.headers.get("Authorization") != f"Bearer {self.host.token}":
            self._answer(401, {"message": "401 Unauthorized"})
        elif path == "/api/v4/user":
            self._answer(200, {"id": 1, "username": "videopoll", "name": "videopoll",
                               "email": None, "avatar_url": None})
        elif path.startswith("/api/v4/projects/") and (
                name := unquote(path.removeprefix("/api/v4/projects/"))) in self.host.repositories:
            self._answer(200, {"id": 7, "path_with_namespace": name, "default_branch": "main",
                               "visibility": "private", "namespace": {"kind": "group"},
                               "star_count": 0})
        else:
            self._answer(404, {"message": "404 Not Found"})
