"""The ORIGINAL system, re-implemented faithfully so videopoll can be measured against it.

The original was a Supabase edge function plus shell scripts. For each pending row, one after
the other, it:

1. asked OpenHands for that one conversation (V1 has no single GET, so the closest call is
   `GET /api/v1/app-conversations?ids=<one id>`);
2. if the conversation had finished, fetched the file from GitHub's contents API with the raw
   media type (`Accept: application/vnd.github.raw`: large files answer `encoding: "none"`
   in JSON) and read the whole body into memory (`response.content`). A Git LFS file gives the
   pointer there, which the original could never fetch; here it follows the LFS batch API the
   simple way, reading the whole object into memory too;
3. uploaded the bytes in one request (`POST /storage/v1/object/{bucket}/{key}`, `x-upsert`);
4. set the row's `storage_path` (`PATCH /rest/v1/lesson_assets?id=eq.<id>`);
5. for a conversation that failed, wrote that on its row: issue 14 counts the original as "one
   query plus one write per decided row plus one upload per video". The app's own columns
   have no status, so the write puts the agent's status under `metadata.error`, keeping the
   rest of the metadata the select already read (one `PATCH`, like the ready mark).

Same stand-ins, same store, same data and the same httpx library as videopoll; plain
sequential code, one keep-alive client.

Run as `python -m benchmarks.baseline` with videopoll's environment variables (or
`VIDEOPOLL_STORE=local` + `VIDEOPOLL_HOME`); prints one JSON summary.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sqlite3
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

LFS_POINTER = re.compile(rb"version https://git-lfs\.github\.com/spec/v1\noid sha256:"
                         rb"(?P<oid>[0-9a-f]{64})\nsize (?P<size>[0-9]+)\n?\Z")
LFS_JSON = "application/vnd.git-lfs+json"


class SupabaseTables:
    """The edge function's Supabase calls: one select, one upload and one update per video."""

    def __init__(self, http: httpx.Client, url: str, key: str, bucket: str) -> None:
        self.http, self.url, self.bucket = http, url.rstrip("/"), bucket
        self.headers = {"apikey": key, "Authorization": f"Bearer {key}"}

    def pending(self) -> list[dict[str, Any]]:
        response = self.http.get(
            f"{self.url}/rest/v1/lesson_assets", headers=self.headers,
            params={"select": "id,lesson_id,conversation_id,metadata", "kind": "eq.video",
                    "storage_path": "is.null", "conversation_id": "not.is.null",
                    "order": "created_at.asc"})
        response.raise_for_status()
        return list(response.json())

    def upload(self, key: str, data: bytes) -> None:
        response = self.http.post(
            f"{self.url}/storage/v1/object/{self.bucket}/{key}", content=data,
            headers={**self.headers, "Content-Type": "video/mp4", "x-upsert": "true"})
        response.raise_for_status()

    def mark_ready(self, asset_id: str, key: str) -> None:
        self._patch(asset_id, {"storage_path": key})

    def mark_failed(self, asset_id: str, metadata: dict[str, Any], error: str) -> None:
        self._patch(asset_id, {"metadata": {**metadata, "error": error}})

    def _patch(self, asset_id: str, changes: dict[str, Any]) -> None:
        response = self.http.patch(
            f"{self.url}/rest/v1/lesson_assets", params={"id": f"eq.{asset_id}"},
            json=changes, headers={**self.headers, "Prefer": "return=minimal"})
        response.raise_for_status()


class LocalTables:
    """The same three operations on the local store (SQLite file + bucket folder)."""

    def __init__(self, home: Path, bucket: str) -> None:
        self.db = sqlite3.connect(home / "videopoll.db", timeout=30)
        self.bucket_dir = home / "storage" / bucket

    def pending(self) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "select id, lesson_id, conversation_id, metadata from lesson_assets where "
            "kind = 'video' and storage_path is null and conversation_id is not null "
            "order by created_at").fetchall()
        return [{"id": r[0], "lesson_id": r[1], "conversation_id": r[2],
                 "metadata": json.loads(r[3])} for r in rows]

    def upload(self, key: str, data: bytes) -> None:
        target = self.bucket_dir / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def mark_ready(self, asset_id: str, key: str) -> None:
        with self.db:
            self.db.execute("update lesson_assets set storage_path = ? where id = ?",
                            (key, asset_id))

    def mark_failed(self, asset_id: str, metadata: dict[str, Any], error: str) -> None:
        with self.db:
            self.db.execute("update lesson_assets set metadata = ? where id = ?",
                            (json.dumps({**metadata, "error": error}), asset_id))


def run(env: dict[str, str]) -> dict[str, Any]:
    oh_url = env["OPENHANDS_BASE_URL"].rstrip("/")
    oh_headers = {"Authorization": f"Bearer {env['OPENHANDS_API_KEY']}"}
    gh_url, repo = env["GITHUB_API_URL"].rstrip("/"), env["VIDEOPOLL_GITHUB_REPO"]
    token, ref = env["GITHUB_TOKEN"], env.get("VIDEOPOLL_GITHUB_REF", "main")
    gh_headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github.raw",
                  "X-GitHub-Api-Version": "2022-11-28"}
    bucket = env.get("VIDEOPOLL_BUCKET", "lesson-assets")
    counts: Counter[str] = Counter()
    summary = Counter[str]()
    copy_s = 0.0

    with httpx.Client(timeout=httpx.Timeout(300.0), follow_redirects=True,
                      headers={"User-Agent": "video-poller-baseline"}) as http:
        store: SupabaseTables | LocalTables
        if env.get("VIDEOPOLL_STORE", "supabase") == "supabase":
            store = SupabaseTables(http, env["SUPABASE_URL"], env["SUPABASE_SERVICE_ROLE_KEY"],
                                   bucket)
        else:
            store = LocalTables(Path(env["VIDEOPOLL_HOME"]), bucket)
        started = time.perf_counter()
        rows = store.pending()
        counts["store"] += 1
        for row in rows:
            summary["checked"] += 1
            cid = row["conversation_id"]
            answer = http.get(f"{oh_url}/api/v1/app-conversations", params={"ids": cid},
                              headers=oh_headers)
            counts["openhands"] += 1
            answer.raise_for_status()
            item = answer.json()[0] or {}
            sandbox, status = item.get("sandbox_status"), item.get("execution_status")
            if sandbox == "ERROR" or status in ("error", "stuck"):
                store.mark_failed(row["id"], row.get("metadata") or {},
                                  str(status or sandbox))
                counts["store"] += 1
                summary["failed"] += 1
                continue
            if status != "finished":
                summary["stillGenerating"] += 1
                continue
            path = (row.get("metadata") or {}).get("github_path")
            copy_started = time.perf_counter()
            response = http.get(f"{gh_url}/repos/{repo}/contents/{path}", params={"ref": ref},
                                headers=gh_headers)
            counts["github"] += 1
            if response.status_code == 404:  # finished, but the file is not pushed yet
                summary["stillGenerating"] += 1
                continue
            response.raise_for_status()
            data = response.content  # the whole video in memory, as the edge function did
            if (pointer := LFS_POINTER.match(data)) is not None:
                data = _lfs(http, env, repo, token, pointer["oid"].decode(),
                            int(pointer["size"]), counts)
            summary["found"] += 1
            key = f"videos/{row['lesson_id']}/{row['id']}.mp4"
            store.upload(key, data)
            del data
            copy_s += time.perf_counter() - copy_started
            store.mark_ready(row["id"], key)
            counts["store"] += 2
            summary["processed"] += 1
        duration = time.perf_counter() - started
    return {**{k: summary[k] for k in ("checked", "stillGenerating", "found", "processed",
                                       "failed")},
            "durationMs": round(duration * 1000), "copyS": round(copy_s, 4),
            "calls": dict(counts)}


def _lfs(http: httpx.Client, env: dict[str, str], repo: str, token: str, oid: str, size: int,
         counts: Counter[str]) -> bytes:
    """The LFS batch API the simple way: one batch call, then the whole object in memory."""
    server = env.get("VIDEOPOLL_GITHUB_LFS_URL") or env["GITHUB_API_URL"]
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    batch = http.post(f"{server.rstrip('/')}/{repo}.git/info/lfs/objects/batch",
                      json={"operation": "download", "transfers": ["basic"],
                            "objects": [{"oid": oid, "size": size}]},
                      headers={"Accept": LFS_JSON, "Content-Type": LFS_JSON,
                               "Authorization": f"Basic {basic}"})
    counts["github"] += 1
    batch.raise_for_status()
    action = batch.json()["objects"][0]["actions"]["download"]
    response = http.get(action["href"], headers=action.get("header") or {})
    counts["github"] += 1
    response.raise_for_status()
    return response.content


if __name__ == "__main__":
    from .proc import vm_hwm

    json.dump({**run(dict(os.environ)), "vmHWM": vm_hwm()}, sys.stdout)
    sys.stdout.write("\n")
