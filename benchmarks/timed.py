"""`python -m benchmarks.timed poll --json` = `videopoll poll --json`, with instruments.

The real CLI (`videopoll.cli.run`) in its own process, plus, when asked through the
environment:

- `BENCH_PUT_TIMES=file`: the store's `put` (the streamed GitHub -> verification -> Storage
  copy of one video, from the download request to the committed object) is timed; one JSON
  line per video;
- `BENCH_TRACE=file`: every request the poller's httpx clients send, with its kind and when
  it left and when its answer's headers came back; one JSON line per request;
- `BENCH_PROFILE=file`: the whole command under cProfile;
- `BENCH_HWM=file`: the process's peak RSS (VmHWM) written there at exit.

Nothing else changes, so the process's peak RSS is the poller's.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from videopoll.model import Service


def _time_put(cls: Any, sink: str) -> None:
    original = cls.put

    @functools.wraps(original)
    async def put(self: Any, asset: Any, key: str, chunks: Any, **kw: Any) -> None:
        started = time.perf_counter()
        await original(self, asset, key, chunks, **kw)
        with open(sink, "a", encoding="utf-8") as out:
            out.write(json.dumps({"key": key, "size": kw.get("size"),
                                  "seconds": time.perf_counter() - started}) + "\n")

    cls.put = put


def kind_of(service: str, method: str, path: str) -> str:
    """A request's kind, for grouping a trace."""
    if service == "openhands":
        return "OpenHands: events (error reason)" if "/events/" in path else \
            "OpenHands: conversation states (batched)"
    if service == "github":
        for part, name in (("/git/trees/", "tree listing (conditional)"),
                           ("/contents/", "contents by path (small files inline)"),
                           ("/git/blobs/", "blob download"),
                           ("/lfs/objects/batch", "LFS batch"), ("/lfs/", "LFS object")):
            if part in path:
                return f"GitHub: {name}"
        return f"GitHub: {method} other"
    if (rpc := re.search(r"/rest/v1/rpc/(\w+)", path)) is not None:
        return f"REST: rpc {rpc[1]}"
    if (table := re.search(r"/rest/v1/(\w+)", path)) is not None:
        return f"REST: {method} {table[1]}"
    if "/upload/resumable" in path:
        return f"Storage: TUS {method}"
    if "/storage/v1/object" in path:
        return f"Storage: {method} object"
    return f"{service}: {method}"


def _trace(sink: str) -> None:
    """Record every request's kind and timing: each client `Runtime.client` opens gets two
    event hooks (the client and its retries stay the ones a user runs)."""
    from videopoll.runtime import Runtime

    original = Runtime.client

    def client(self: Runtime, service: Service, base_url: str, *args: Any, **kw: Any) -> Any:
        made = original(self, service, base_url, *args, **kw)

        async def sent(request: Any) -> None:
            request.extensions["bench_started"] = time.perf_counter()

        async def answered(response: Any) -> None:
            request = response.request
            record = {"kind": kind_of(service, request.method, request.url.path),
                      "start": request.extensions.get("bench_started", 0.0),
                      "end": time.perf_counter(), "status": response.status_code}
            with open(sink, "a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")

        made.event_hooks["request"].append(sent)
        made.event_hooks["response"].append(answered)
        return made

    Runtime.client = client  # type: ignore[method-assign]


def main() -> int:
    if target := os.environ.get("BENCH_HWM"):
        import atexit

        from .proc import vm_hwm

        def report(path: str = target) -> None:
            with open(path, "w", encoding="ascii") as out:
                out.write(str(vm_hwm()))

        atexit.register(report)
    if sink := os.environ.get("BENCH_PUT_TIMES"):
        if os.environ.get("VIDEOPOLL_STORE") == "local":
            from videopoll.services.local.store import LocalStore

            _time_put(LocalStore, sink)
        else:
            from videopoll.services.supabase.store import SupabaseStore

            _time_put(SupabaseStore, sink)
    if sink := os.environ.get("BENCH_TRACE"):
        _trace(sink)
    from videopoll.cli import run

    if target := os.environ.get("BENCH_PROFILE"):
        import cProfile

        profiler = cProfile.Profile()
        try:
            return profiler.runcall(run, sys.argv[1:])
        finally:
            profiler.dump_stats(target)
    return run(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
