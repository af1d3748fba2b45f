"""The pinned real tus server (servers/tus_server.mjs) as a test fixture.

It serves TUS 1.0.0 at `{url}/storage/v1/upload/resumable`, where Supabase Storage serves
it, so a `TusClient` built on `{url}/storage/v1` talks to it as to Supabase. `log()` is its
request log (method, upload id, Upload-Offset, Content-Length per request).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).parent / "servers" / "tus_server.mjs"


class RealTus:
    def __init__(self, modules: Path, work: Path) -> None:
        self.modules, self.work = modules, work
        self.data = work / "uploads"
        self.key = "tus-" + secrets.token_hex(12)
        self.url = ""
        self.process: subprocess.Popen[str] | None = None
        self._lines: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._port = threading.Event()
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 30) -> RealTus:
        self.data.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["node", str(SCRIPT), str(self.modules), str(self.data), self.key],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=self.work)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._port.wait(timeout):
            self.stop()
            raise RuntimeError(f"the tus server did not start in {timeout:.0f} s: {self._lines}")
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            try:
                entry = json.loads(line)
            except ValueError:
                entry = {"text": line.rstrip()}
            if "port" in entry and not self.url:
                self.url = f"http://127.0.0.1:{entry['port']}"
                self._port.set()
            else:
                with self._lock:
                    self._lines.append(entry)

    def log(self, method: str | None = None) -> list[dict[str, Any]]:
        time.sleep(0.05)  # the reader thread may be a line behind the last answer
        with self._lock:
            return [e for e in self._lines if method is None or e.get("method") == method]

    def stored(self, upload_url: str) -> bytes:
        """What the server holds for an upload (its file store: one file per upload id)."""
        return (self.data / upload_url.rstrip("/").rsplit("/", 1)[1]).read_bytes()

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        if self._reader is not None:
            self._reader.join(5)  # it ends at the pipe's end of file
        if self.process.stdout is not None:
            self.process.stdout.close()
