"""Secrets never print: every command, through its error paths, with distinctive tokens."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from videopoll.sandbox.server import Fault, Request, Response, StandIn

from .conftest import Stack, SupabaseSeed

CANARY = {
    "OPENHANDS_API_KEY": "oh-CANARY-7f3a9c1e",
    "GITHUB_TOKEN": "ghp_CANARY4d2b8e6f0a",
    "GEMINI_API_KEY": "gem-CANARY-5c7e9a1b",
    "SUPABASE_SERVICE_ROLE_KEY": "sb-CANARY-3e5g7i9k",
}
COMMANDS = [
    ["poll", "--json", "--log-format", "json"],
    ["poll", "--log-format", "text"],
    ["watch", "--until-done", "--timeout", "0.3", "--interval", "0.1", "--json"],
    ["status", "a" * 32, "--json"],
    ["pending", "--json"],
    ["generate", "7d1f0c7e-1f52-4a53-9d0c-1b9e4c6f0a11", "--json"],
    ["retry", "--failed", "--json"],
    ["doctor", "--json"],
    ["doctor"],
]


def secrets_of(stack: Stack) -> list[str]:
    found = [stack.sandbox.openhands_key, stack.sandbox.github_token, *CANARY.values()]
    if isinstance(stack.seed, SupabaseSeed):
        found.append(stack.seed.standin.service_key)
    return found


def assert_clean(stack: Stack, text: str) -> None:
    for secret in secrets_of(stack):
        assert secret not in text, f"secret {secret[:6]}… printed"


class Pings(StandIn):
    """A dead-man's-switch endpoint that keeps every body it is sent."""

    name = "pings"

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[str] = []
        self.route("POST", r"/ping/.*", "ping", self._ping)

    def _ping(self, request: Request) -> Response:
        self.bodies.append(request.body().decode("utf-8", "replace"))
        return Response(200, b"OK")


@pytest.mark.parametrize("scenario", ["valid", "refused", "unreachable", "echoing", "agent"])
def test_no_command_prints_a_secret(stack: Stack, video: bytes, scenario: str,
                                    tmp_path: Path) -> None:
    """Every way out — stdout, stderr, --json, log records, the ping body, the step summary,
    annotations — stays free of every credential, even when services echo them back."""
    stack.video("RUNNING", "finished", commit=video)
    _, failing, _ = stack.video("RUNNING", "error")
    if scenario == "agent":  # the agent's own error quotes credentials it saw
        stack.sandbox.openhands.add_error_event(
            failing, "AgentError", f"push failed for {stack.sandbox.github_token} "
                                   f"and {stack.sandbox.openhands_key}")
    lesson = stack.seed.lesson()
    step_summary = tmp_path / "step-summary.md"
    pings = Pings().start()
    env: dict[str, str | None] = {"GEMINI_API_KEY": CANARY["GEMINI_API_KEY"],
                                  "GITHUB_ACTIONS": "true",
                                  "GITHUB_STEP_SUMMARY": str(step_summary),
                                  "VIDEOPOLL_PING_URL": f"{pings.url}/ping/check"}
    if scenario == "refused":
        env |= {"OPENHANDS_API_KEY": CANARY["OPENHANDS_API_KEY"],
                "GITHUB_TOKEN": CANARY["GITHUB_TOKEN"]}
    elif scenario == "unreachable":
        env |= {"OPENHANDS_BASE_URL": "http://127.0.0.1:9", "GITHUB_API_URL": "http://127.0.0.1:9"}
    elif scenario == "echoing":
        # A hostile or careless service that echoes our credentials in its error bodies.
        for standin, token in ((stack.sandbox.openhands, stack.sandbox.openhands_key),
                               (stack.sandbox.github, stack.sandbox.github_token)):
            body = json.dumps({"message": f"token {token} rejected", "detail": token,
                               "error": token}).encode()
            standin.inject("*", Fault("status", status=400, body=body, times=None))
        if isinstance(stack.seed, SupabaseSeed):
            # Storage and TUS quote error text verbatim; PostgREST quotes details.
            key = stack.seed.standin.service_key
            echo = json.dumps({"message": f"bad key {key}", "code": "P0001",
                               "details": key, "hint": key, "error": key,
                               "statusCode": "500"}).encode()
            stack.seed.standin.inject("*", Fault("status", status=500, body=echo, times=None))
    try:
        for command in [*COMMANDS, ["generate", lesson, "--json", "--wait"]]:
            result = stack.cli(*command, env=env)
            assert_clean(stack, result.out + result.err)
    finally:
        pings.stop()
    assert pings.bodies, "the ping was never sent"
    assert_clean(stack, "\n".join(pings.bodies))
    assert_clean(stack, step_summary.read_text() if step_summary.exists() else "")
    if scenario == "agent":  # the reason did travel every channel, with the key blanked out
        assert "push failed for ***" in step_summary.read_text()


def test_a_supabase_key_never_prints_even_when_the_url_is_dead(stack: Stack) -> None:
    env = {"VIDEOPOLL_STORE": "supabase", "SUPABASE_URL": "http://127.0.0.1:9",
           "SUPABASE_SERVICE_ROLE_KEY": CANARY["SUPABASE_SERVICE_ROLE_KEY"]}
    for command in COMMANDS:
        result = stack.cli(*command, env=env)
        assert_clean(stack, result.out + result.err)
        assert "Traceback" not in result.err


def test_tracebacks_of_a_real_process_carry_no_secret(stack: Stack, tmp_path: Path) -> None:
    """Even a crash deep inside a command prints no secret: the boundary scrubs, and Typer's
    locals-printing is off."""
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in CANARY.items()))
    code = ("import videopoll.runtime as r\n"
            "def boom(self, *a, **k):\n"
            "    raise RuntimeError('kaboom ' + self.settings.github_token.get())\n"
            "r.Runtime.poller = boom\n"
            "from videopoll.cli import main; main()\n")
    result = subprocess.run(
        [sys.executable, "-c", code, "poll"], capture_output=True, text=True, timeout=60,
        env={**stack.env(), "VIDEOPOLL_ENV_FILE": str(env_file), "PATH": "/usr/bin:/bin",
             "GITHUB_TOKEN": CANARY["GITHUB_TOKEN"], "VIDEOPOLL_DEBUG": "1"}, check=False)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "kaboom ***" in result.stderr
    assert_clean(stack, result.stdout + result.stderr)
