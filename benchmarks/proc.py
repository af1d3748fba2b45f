"""Subprocesses with their wall time and CPU time, and how a child reports its peak RSS.

Peak RSS is NOT taken from `wait4`/`getrusage(RUSAGE_CHILDREN)`: Linux keeps the larger of
the old and new memory's high-water mark across `exec`, so a child's `ru_maxrss` is at least
the benchmark process's own RSS when it forked. Each measured child instead reports its
own `VmHWM` (the high-water mark of its post-exec memory) from /proc/self/status at exit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
VIDEOPOLL = str(Path(sys.executable).with_name("videopoll"))


@dataclass
class Proc:
    code: int
    out: str
    err: str
    wall: float  # seconds from spawn to exit
    cpu: float  # user + system CPU seconds of this child

    def json(self) -> Any:
        lines = [line for line in self.out.splitlines() if line.strip()]
        if not lines:
            raise RuntimeError(f"no output (exit {self.code}): {self.err[-2000:]}")
        return json.loads(lines[-1])

    def check(self) -> Proc:
        if self.code != 0:
            raise RuntimeError(f"exit {self.code}: {self.err[-2000:]}")
        return self


class Running:
    """A started child; `finish()` reaps it with its own rusage (never RUSAGE_CHILDREN,
    which would report the largest child of the whole benchmark)."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], cwd: Path,
                 timeout: float) -> None:
        self._out = tempfile.TemporaryFile()
        self._err = tempfile.TemporaryFile()
        self.started = time.perf_counter()
        self.popen = subprocess.Popen(list(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                      stdout=self._out, stderr=self._err)
        self._timer = threading.Timer(timeout, self.kill)
        self._timer.daemon = True
        self._timer.start()

    def kill(self) -> None:
        if self.popen.returncode is None:
            self.popen.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        if self.popen.returncode is None:
            self.popen.send_signal(signal.SIGTERM)

    def finish(self) -> Proc:
        _, status, usage = os.wait4(self.popen.pid, 0)
        wall = time.perf_counter() - self.started
        self._timer.cancel()
        code = os.waitstatus_to_exitcode(status)
        self.popen.returncode = code  # reaped here: keep Popen from waiting again
        texts = []
        for handle in (self._out, self._err):
            handle.seek(0)
            texts.append(handle.read().decode("utf-8", "replace"))
            handle.close()
        return Proc(code, texts[0], texts[1], wall, usage.ru_utime + usage.ru_stime)


def vm_hwm(pid: int | str = "self") -> int:
    """A process's peak resident memory in bytes (VmHWM; this one by default), 0 where /proc
    is missing."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run(argv: Sequence[str], env: dict[str, str], cwd: Path, *, timeout: float = 900.0
        ) -> Proc:
    return Running(argv, env, cwd, timeout).finish()


def module(name: str, *args: str) -> list[str]:
    """argv for `python -m benchmarks.<name> ARGS` (benchmarks is importable from ROOT)."""
    return [PYTHON, "-m", f"benchmarks.{name}", *args]


def bench_env(env: dict[str, str]) -> dict[str, str]:
    """`env` plus PYTHONPATH so `python -m benchmarks.x` works from any directory."""
    path = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return {**env, "PYTHONPATH": path}
