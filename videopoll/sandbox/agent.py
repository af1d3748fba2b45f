"""The simulated agent behind the OpenHands stand-in.

It stands in for a real OpenHands agent making a lesson video:

1. A start task walks through `START_STEPS`, one step every `step` seconds after the
   POST, then is READY with a new conversation (sandbox RUNNING, execution `running`).
2. After `run` more seconds the agent finishes: it commits an MP4 through
   `commit(repository, branch, path, data)` and the conversation becomes
   RUNNING/`finished`, with a `ConversationStateUpdateEvent` recording it.
3. When `fail_when(title, prompt)` returns a reason, the conversation ends RUNNING/`error`
   with a `ConversationErrorEvent` carrying that reason instead, and nothing is committed
   (`title` is the start request's `title`, possibly None).
4. With `pause_after`, the sandbox of a finished (or failed) conversation is PAUSED that many
   seconds later, so `execution_status` reads null and only the events tell the outcome.

**Prompt contract**: the agent commits to the first backquoted token of the initial
message's text that ends in `.mp4` (for example "commit the video to `videos/l1/a1.mp4`"), on
`selected_branch` (default `main`) of `selected_repository`. A prompt without such a path, or
a start request without a repository, ends the conversation in `error`; a
`selected_repository` that is not `owner/name` fails the start task at PREPARING_REPOSITORY.
The video is `make_video(title)` (`title` is the start request's title, else the
conversation's), or by default a tiny placeholder ISO-BMFF file.

Time is read from `clock` lazily on every request (`OpenHandsStandIn.tick`), so no background
thread runs and a fake clock makes tests deterministic.
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

START_STEPS = (
    "WORKING", "WAITING_FOR_SANDBOX", "PREPARING_REPOSITORY", "RUNNING_SETUP_SCRIPT",
    "SETTING_UP_GIT_HOOKS", "SETTING_UP_SKILLS", "STARTING_CONVERSATION", "READY",
)
_MP4_PATH = re.compile(r"`([^`\s]+\.mp4)`")
_REPOSITORY = re.compile(r"[\w.-]+/[\w.-]+")

Commit = Callable[[str, str, str, bytes], None]


def prompt_of(request: dict[str, Any]) -> str:
    """The text of a start request's initial message."""
    message = request.get("initial_message") or {}
    return "\n".join(str(part.get("text", "")) for part in message.get("content") or []
                     if isinstance(part, dict) and part.get("type", "text") == "text")


def fallback_title(prompt: str, conversation_id: str) -> str:
    """The title the real server ends up with: the SDK's fallback title of the first message.

    The request's `title` is ignored there: a conversation starts as "Conversation <5 hex>"
    and the title processor renames it from the first message.
    """
    title = prompt.strip()
    if not title:
        return f"Conversation {conversation_id[:5]}"
    return title if len(title) <= 50 else title[:47] + "..."


def placeholder_mp4(title: str) -> bytes:
    """A tiny well-formed ISO-BMFF file: ftyp, moov holding an mvhd, and an mdat."""
    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", 8 + len(payload)) + kind + payload
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    mvhd = struct.pack(">IIIIIIH", 0, 0, 0, 1000, 1000, 0x10000, 0x100)
    mvhd += bytes(10) + matrix + bytes(24) + struct.pack(">I", 2)
    return (box(b"ftyp", b"isom" + struct.pack(">I", 0x200) + b"isomiso2mp41")
            + box(b"moov", box(b"mvhd", mvhd)) + box(b"mdat", title.encode()))


@dataclass
class SimulatedAgent:
    """Walks started conversations to a committed video (see the module docstring)."""

    commit: Commit | None = None
    step: float = 0.2
    run: float = 1.0
    fail_when: Callable[[str | None, str], str | None] | None = None
    make_video: Callable[[str], bytes] | None = None
    clock: Callable[[], float] = time.monotonic
    pause_after: float | None = None  # then an idle sandbox is PAUSED, as Cloud does

    def start_status(self, born: float, repository: Any, now: float) -> tuple[str, str | None]:
        """A start task's status `now - born` seconds after the POST, and the error detail."""
        index = min(int((now - born) / self.step), len(START_STEPS) - 1)
        if index >= 2 and repository is not None and not _REPOSITORY.fullmatch(str(repository)):
            # What OpenHands says when its git provider does not know the repository.
            return "ERROR", "Git provider authentication issue when getting remote URL"
        return START_STEPS[index], None

    def ready_at(self, born: float) -> float:
        return born + self.step * (len(START_STEPS) - 1)

    def work(self, *, prompt: str, title: str, request_title: str | None,
             repository: str | None, branch: str | None) -> tuple[str, str] | None:
        """Do the job: None when the video is committed, else (error code, detail)."""
        if self.fail_when is not None and (reason := self.fail_when(request_title, prompt)):
            return "AgentError", reason
        match = _MP4_PATH.search(prompt)
        if match is None:
            return "AgentError", "no `.mp4` path to commit the video to in the task"
        if not repository:
            return "AgentError", "no repository selected to commit the video to"
        name = request_title or title
        data = self.make_video(name) if self.make_video else placeholder_mp4(name)
        try:
            if self.commit is not None:
                self.commit(repository, branch or "main", match.group(1), data)
        except Exception as exc:  # a real agent reports any failed push as its error
            return type(exc).__name__, f"git push failed: {exc}"
        return None
