"""The pinned OpenHands V1 app server as a test fixture: started, configured, torn down.

`RealOpenHands(python, work).start()` runs `servers/openhands_app.py` with the OpenHands venv's
Python (scripts/real-setup), on loopback, in its own process group, with:

- RUNTIME=process (each conversation's agent server is a local process, ~350 MB);
- SESSION_API_KEY, so the API wants `X-Session-API-Key` (videopoll's OPENHANDS_AUTH=session);
- webhooks from the agent servers back to it, flushed at once (events otherwise arrive late
  or never), and ALLOW_INSECURE_GIT_ACCESS for the loopback git host (githost.py);
- its state (SQLite, settings, events, sandboxes, tmux sockets) under `work`.

Then the scripted LLM (llm.py) becomes the user's model and the git host its git provider.
`stop()` deletes every conversation and sandbox through the API, then ends the process group
and the agents' tmux server: no process outlives the test session.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from .githost import GitHost
from .llm import ScriptedLLM

LAUNCHER = Path(__file__).parent / "servers" / "openhands_app.py"
REPOSITORY = "demo-org/video-artifacts"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RealOpenHands:
    def __init__(self, python: str, work: Path) -> None:
        self.python, self.work = python, work
        self.key = "oh-session-" + secrets.token_hex(12)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.llm = ScriptedLLM()
        self.githost = GitHost("glpat-" + secrets.token_hex(8), {REPOSITORY})
        self.process: subprocess.Popen[bytes] | None = None
        self.log = work / "app-server.log"
        self.client = httpx.Client(base_url=self.url, headers={"X-Session-API-Key": self.key},
                                   timeout=60)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, timeout: float = 180) -> RealOpenHands:
        self.llm.start()
        self.githost.start()
        self.work.mkdir(parents=True, exist_ok=True)
        env = {name: value for name, value in os.environ.items()
               if not name.startswith(("VIDEOPOLL_", "OPENHANDS_", "GITHUB_", "SUPABASE_",
                                       "GEMINI_", "LLM_", "OH_", "SESSION_API_KEY"))}
        env.update({
            "HOME": str(self.work / "home"), "RUNTIME": "process", "SERVE_FRONTEND": "false",
            "OH_PERSISTENCE_DIR": str(self.work / "state"), "SESSION_API_KEY": self.key,
            "OH_WEBHOOKS_0_BASE_URL": f"{self.url}/api/v1/webhooks",
            "OH_WEBHOOKS_0_EVENT_BUFFER_SIZE": "1", "OH_WEBHOOKS_0_FLUSH_DELAY": "0.1",
            "ALLOW_INSECURE_GIT_ACCESS": "true",
            # litellm would fetch its model price list from GitHub at import.
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        })
        base_port = 20000 + secrets.randbelow(30000)  # agent servers count up from here
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [self.python, str(LAUNCHER), "--port", str(self.port), "--base-port",
                 str(base_port), "--work", str(self.work)],
                env=env, cwd=self.work, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)  # its agent servers join this process group
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the app server exited ({self.process.returncode}):\n"
                                   + self.tail())
            with contextlib.suppress(httpx.HTTPError):
                if self.client.get("/alive", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the app server did not answer /alive in {timeout:.0f} s:\n"
                                   + self.tail())
            time.sleep(0.5)
        self.configure()
        return self

    def configure(self) -> None:
        llm = {"model": "openai/scripted-agent", "base_url": self.llm.url,
               "api_key": "sk-scripted", "num_retries": 0}
        self.ok(self.client.post("/api/v1/settings", json={"agent_settings_diff": {"llm": llm}}))
        self.ok(self.client.post("/api/v1/secrets/git-providers", json={"provider_tokens": {
            "gitlab": {"token": self.githost.token, "host": self.githost.url}}}))

    def stop(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            self.delete_everything()
        if self.process is not None:
            for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(wait)
                    if not self._group_alive():
                        break
        # The agents' terminal tool runs tmux, which leaves our process group; its socket is
        # under our TMUX_TMPDIR, so this ends only ours.
        with contextlib.suppress(OSError):
            subprocess.run(["tmux", "-L", "openhands", "kill-server"], capture_output=True,
                           env={**os.environ, "TMUX_TMPDIR": str(self.work / "tmux")},
                           timeout=10)
        self.client.close()
        self.githost.stop()
        self.llm.stop()

    def _group_alive(self) -> bool:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def delete_everything(self) -> None:
        """Every conversation, then every sandbox left (a failed start leaves its own)."""
        for item in self.ok(self.client.get("/api/v1/app-conversations/search",
                                            params={"limit": 100}))["items"]:
            self.client.delete(f"/api/v1/app-conversations/{item['id']}")
        for item in self.ok(self.client.get("/api/v1/sandboxes/search",
                                            params={"limit": 100}))["items"]:
            self.client.delete(f"/api/v1/sandboxes/{item['id']}")

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- the API, raw --------------------------------------------------------------------------
    @staticmethod
    def ok(response: httpx.Response) -> Any:
        assert response.status_code < 400, f"{response.status_code}: {response.text[:300]}"
        return response.json()

    def start_conversation(self, text: str, **fields: Any) -> dict[str, Any]:
        body = {"initial_message": {"content": [{"type": "text", "text": text}]}, **fields}
        answer: dict[str, Any] = self.ok(self.client.post("/api/v1/app-conversations", json=body))
        return answer

    def task(self, task_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.ok(self.client.get(
            "/api/v1/app-conversations/start-tasks", params={"ids": task_id}))[0]
        return answer

    def wait_task(self, task_id: str, timeout: float = 120) -> dict[str, Any]:
        """The start task once READY or ERROR."""
        deadline = time.monotonic() + timeout
        while True:
            task = self.task(task_id)
            if task["status"] in ("READY", "ERROR") or time.monotonic() > deadline:
                return task
            time.sleep(0.5)

    def conversation(self, conversation_id: str) -> dict[str, Any] | None:
        answer: dict[str, Any] | None = self.ok(self.client.get(
            "/api/v1/app-conversations", params={"ids": conversation_id}))[0]
        return answer

    def wait_execution(self, conversation_id: str, wanted: set[str | None],
                       timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.conversation(conversation_id)
            if found is not None and found["execution_status"] in wanted:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{conversation_id} never reached {wanted}: {found}")
            time.sleep(0.5)

    def events(self, conversation_id: str, **params: Any) -> list[dict[str, Any]]:
        """Every event, oldest first, following `next_page_id`."""
        out: list[dict[str, Any]] = []
        page: str | None = None
        while True:
            query = {"limit": 100, **params, **({"page_id": page} if page else {})}
            body = self.ok(self.client.get(
                f"/api/v1/conversation/{uuid.UUID(conversation_id).hex}/events/search",
                params=query))
            out += body["items"]
            page = body["next_page_id"]
            if not page:
                return out

    def wait_events(self, conversation_id: str, kind: str, timeout: float = 30
                    ) -> list[dict[str, Any]]:
        """Events reach the app server through webhooks, a moment after the live status."""
        deadline = time.monotonic() + timeout
        while not (found := self.events(conversation_id, kind__eq=kind)):
            if time.monotonic() > deadline:
                break
            time.sleep(0.3)
        return found

    def agent_server_pid(self, conversation_id: str) -> int | None:
        """The process serving a conversation's sandbox (its port is in conversation_url)."""
        found = self.conversation(conversation_id)
        if not found or not found.get("conversation_url"):
            return None
        port = httpx.URL(found["conversation_url"]).port
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                if b"loopback_agent_server" in b" ".join(argv) and str(port).encode() in argv:
                    return int(proc.name)
        return None
