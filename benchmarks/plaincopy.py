"""The reference a transfer is compared with: a plain httpx stream copy, nothing else.

`python -m benchmarks.plaincopy SPEC_JSON` where the spec is
`{"url", "headers", "file"}` (download -> write to a file, then fsync, as the local store does)
or `{"url", "headers", "upload_url", "upload_headers"}` (download streamed straight into one
upload request). With `"lfs_batch": {"url", "headers", "json"}` instead of `url`, the Git LFS
batch request comes first (timed too) and the object is streamed from the href it names.
The same async httpx client videopoll uses; no verification, no retries. `"variant"` adds one
of videopoll's costs, to see what each one weighs: `rechunk` (`aiter_bytes(1 MiB)`, as
videopoll's GitHub adapter reads), `hash` (sha256 of every piece, on the event loop, as its
verification does) or `rechunk+hash`. Prints `{"seconds", "bytes"}`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any


async def copy(spec: dict[str, Any]) -> dict[str, Any]:
    import httpx

    done = 0
    variant = spec.get("variant", "")
    digest = hashlib.sha256()
    async with httpx.AsyncClient(timeout=httpx.Timeout(300.0), follow_redirects=True) as http:
        started = time.perf_counter()
        if batch := spec.get("lfs_batch"):
            answer = await http.post(batch["url"], headers=batch["headers"], json=batch["json"])
            answer.raise_for_status()
            action = answer.json()["objects"][0]["actions"]["download"]
            spec = {**spec, "url": action["href"], "headers": action.get("header") or {}}
        async with http.stream("GET", spec["url"], headers=spec.get("headers") or {}) as got:
            got.raise_for_status()
            pieces = got.aiter_bytes(1024 * 1024 if "rechunk" in variant else None)
            if "file" in spec:
                with open(spec["file"], "wb") as out:
                    async for piece in pieces:
                        if "hash" in variant:
                            digest.update(piece)
                        out.write(piece)
                        done += len(piece)
                    out.flush()
                    os.fsync(out.fileno())
            else:

                async def body() -> AsyncIterator[bytes]:
                    nonlocal done
                    async for piece in pieces:
                        done += len(piece)
                        yield piece

                sent = await http.post(spec["upload_url"], content=body(),
                                       headers=spec.get("upload_headers") or {})
                sent.raise_for_status()
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "bytes": done}


if __name__ == "__main__":
    result = asyncio.run(copy(json.loads(sys.argv[1])))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
