"""Serve the pinned OpenHands V1 app server on loopback, with three runtime patches.

Run by the real tier with the OpenHands venv's Python (3.12), never imported by videopoll:

    python openhands_app.py --port P --base-port B --work DIR

Each patch answers one way this machine differs from what OpenHands expects; re-check every
one when the pin moves (tests/real/PINS):

1. The machine looks like a container (Docker's marker file at the root), so OpenHands would
   rewrite `localhost` to `host.docker.internal` when it talks to its own agent servers.
   Here everything is one host: its `is_running_in_docker` helpers answer False.
2. The process sandbox counts a process as RUNNING only while psutil reports `running`; an
   idle agent server is `sleeping`, so start tasks would wait for it forever. Any live
   process that is not stopped (PAUSED) or a zombie (MISSING) counts as RUNNING.
3. Agent servers bind 0.0.0.0 unless told `--host 127.0.0.1`: they are started through
   `loopback_agent_server.py` next to this file, which adds that flag.

Everything else is configuration: the sandboxes' working folder, ports and tmux sockets are
kept under --work so that concurrent runs on one machine never share them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def patch_docker_detection() -> None:
    from openhands.app_server.utils import docker_utils, environment

    def not_in_docker() -> bool:
        return False

    # docker_utils imported the function by name, so both module attributes are replaced.
    environment.is_running_in_docker = not_in_docker
    docker_utils.is_running_in_docker = not_in_docker


def patch_process_status() -> None:
    import psutil
    from openhands.app_server.sandbox import process_sandbox_service as module
    from openhands.app_server.sandbox.sandbox_models import SandboxStatus

    def status(self: object, info: module.ProcessInfo) -> SandboxStatus:
        try:
            state = psutil.Process(info.pid).status()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return SandboxStatus.MISSING
        if state == psutil.STATUS_STOPPED:
            return SandboxStatus.PAUSED
        if state in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return SandboxStatus.MISSING
        return SandboxStatus.RUNNING

    module.ProcessSandboxService._get_process_status = status  # type: ignore[method-assign,unused-ignore]


def configure(work: Path, base_port: int) -> None:
    """Sandboxes as local processes started through our loopback wrapper, all under `work`."""
    from openhands.app_server import config
    from openhands.app_server.sandbox.process_sandbox_service import (
        ProcessSandboxServiceInjector,
    )
    from openhands.app_server.sandbox.process_sandbox_spec_service import (
        ProcessSandboxSpecServiceInjector,
        get_default_sandbox_specs,
    )

    specs = get_default_sandbox_specs()
    for spec in specs:
        # The default is one folder for every run on the machine.
        spec.initial_env["TMUX_TMPDIR"] = str(work / "tmux")
    settings = config.get_global_config()
    settings.sandbox_spec = ProcessSandboxSpecServiceInjector(specs=specs)
    settings.sandbox = ProcessSandboxServiceInjector(
        base_working_dir=str(work / "sandboxes"), base_port=base_port,
        python_executable=sys.executable, agent_server_module="loopback_agent_server")
    # The agent servers are this Python running `-m loopback_agent_server` from HERE.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    os.environ["PATH"] = os.pathsep.join((str(no_browser(work)), os.environ["PATH"]))


def no_browser(work: Path) -> Path:
    """A folder holding a `chromium` that refuses to run, for machines without one.

    The app server always gives the agent its browser tool (no setting turns it off in this
    version), and an agent server refuses to create a conversation unless a Chromium
    executable exists; it launches it only when the agent first browses, which the scripted
    LLM never asks for. A real Chromium (/usr/bin/chromium) is still found first.
    """
    folder = work / "bin"
    folder.mkdir(parents=True, exist_ok=True)
    stub = folder / "chromium"
    stub.write_text("#!/bin/sh\necho 'videopoll real tier: no browser on this machine' >&2\n"
                    "exit 1\n")
    stub.chmod(0o755)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--base-port", type=int, required=True)
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()
    patch_docker_detection()
    patch_process_status()
    configure(args.work, args.base_port)

    import uvicorn
    from openhands.app_server.app import app

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
