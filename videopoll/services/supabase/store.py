"""`Store` over Supabase: PostgREST for the rows, Storage for the bucket (DESIGN 8.3).

Everything goes through the run's own `httpx.AsyncClient` (its timeouts, User-Agent, retries
and call counters; never closed here). What a pass does on every run — read the pending rows
with what the last pass left (`videopoll_pending`), apply its decisions (`videopoll_apply`),
count an error — is a plain RPC POST sent here; the supabase-py family's PostgREST client
(table reads, the insert of `generate`) and Storage client (standard uploads, buckets) are
built the first time they are needed, so a pass that needs neither never imports them (with
pydantic, a tenth of a second). Every row transition goes through the migration's guarded
`videopoll_apply` (`videopoll/sql/schema.sql`), so a repeated or racing call is harmless.
Rows carry videopoll's bookkeeping (claims, leases, mismatches, retry time: `videopoll_assets`,
a table no app user can reach) embedded. Objects up to 6 MiB go through storage3's standard
upload from a temp file; larger ones through TUS in 6 MiB chunks, resumable after a crash
(`tus.py`). Errors become videopoll's exceptions here, with service=Service.STORE.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from ...errors import ConfigError, ContentMismatch, ProtocolError, VideopollError
from ...model import HEX, Lesson, Service, Status, VideoAsset
from ...states import Change, Transitions
from ..retry import idempotent
from ..translate import transport_error
from . import tus
from .checks import key_role, run_checks
from .errors import MIGRATION_HINT, rest_error, rpc_error, storage_answer, storage_error
from .rows import BOOKKEEPING, COLUMNS, asset_row, check_key, valid_uuid

if TYPE_CHECKING:
    from postgrest import AsyncPostgrestClient
    from storage3 import AsyncStorageClient

T = TypeVar("T")


def repeatable(request: httpx.Request) -> bool:
    """Supabase requests safe to send twice, for the one retry policy: reads; the migration's
    guarded functions (compare-and-set: a repeat after a lost answer matches nothing new);
    upserts to a fixed key (the state cache, an object with `x-upsert`). Inserts and TUS
    creates and PATCHes are not: they are sent again only when they never arrived."""
    if idempotent(request):
        return True
    path, method = request.url.path, request.method
    upsert = (request.headers.get("x-upsert") == "true"
              or "resolution=merge-duplicates" in request.headers.get("prefer", ""))
    return method == "POST" and ("/rest/v1/rpc/videopoll_" in path or (
        upsert and ("/storage/v1/object/" in path or "/rest/v1/videopoll_state" in path)))


PAGE = 1000  # rows a pending page carries (hosted Supabase's max_rows for plain reads)
_NOT_JSON = object()  # an answer whose body did not parse
_URL = re.compile(r"https?://[^\s/]+", re.IGNORECASE)


class SupabaseStore(Transitions):
    """`videopoll.ports.Store` over a Supabase project; build it with `connect()`."""

    def __init__(self, http: httpx.AsyncClient, *, url: str, key: str, bucket: str) -> None:
        self._http = http
        self.url = url.rstrip("/")
        self.bucket = bucket
        self._key = key
        self._auth = {"apikey": key, "Authorization": f"Bearer {key}"}
        self._role = key_role(key)
        self._tus = tus.TusClient(http, f"{self.url}/storage/v1", key, bucket)
        self._rest_client: AsyncPostgrestClient | None = None
        self._storage_client: AsyncStorageClient | None = None
        # videopoll_state as the last pending() read it, and what set_state() left to be
        # written with the next apply() (or flush()): the state costs no request of its own.
        self._state: dict[str, dict[str, Any]] | None = None
        self._state_out: dict[str, dict[str, Any]] = {}

    @classmethod
    async def connect(cls, client: httpx.AsyncClient, *, url: str, key: str, bucket: str
                      ) -> SupabaseStore:
        """A store sharing `client` (the caller's, never closed here); no request is sent."""
        if not _URL.match(url) or not key.strip():
            raise ConfigError("SUPABASE_URL or SUPABASE_SERVICE_ROLE_KEY is invalid: "
                              + ("Invalid URL" if not _URL.match(url) else "the key is empty"))
        return cls(client, url=url, key=key, bucket=bucket)

    async def close(self) -> None:
        """Nothing of ours to close: the httpx client belongs to the caller."""

    # -- the clients of the supabase-py family, built when first needed ---------------------
    @property
    def _rest(self) -> AsyncPostgrestClient:
        if self._rest_client is None:
            from postgrest import AsyncPostgrestClient

            # Retries are declared once, in the caller's client layer: postgrest-py's own
            # (GET only, fixed sleeps of 1-4 s) would hide an outage behind seconds of waiting.
            self._rest_client = AsyncPostgrestClient(
                f"{self.url}/rest/v1", headers={**self._auth, "Accept": "application/json",
                                                "Content-Type": "application/json"},
                http_client=self._http, retry_enabled=False)
        return self._rest_client

    @property
    def _storage(self) -> AsyncStorageClient:
        if self._storage_client is None:
            from storage3 import AsyncStorageClient

            self._storage_client = AsyncStorageClient(f"{self.url}/storage/v1/", self._auth,
                                                      http_client=self._http)
        return self._storage_client

    # -- the edge: every call goes through here ---------------------------------------------
    async def _call(self, what: str, op: Awaitable[T]) -> T:
        """A call through postgrest-py or storage3, their errors translated."""
        from postgrest.exceptions import APIError
        from storage3.exceptions import StorageApiError

        try:
            return await op
        except APIError as exc:
            raise rest_error(exc, what) from exc
        except StorageApiError as exc:
            raise storage_error(exc, what, self.bucket) from exc
        except httpx.RequestError as exc:
            raise transport_error(exc, Service.STORE, self.url) from exc

    async def _rpc(self, fn: str, **args: Any) -> Any:
        """One of the migration's functions, as PostgREST exposes it (POST /rpc/fn)."""
        return await self._rest_json(self._http.build_request(
            "POST", f"{self.url}/rest/v1/rpc/{fn}", content=json.dumps(args, default=str),
            headers={**self._auth, "Content-Type": "application/json",
                     "Accept": "application/json"}), fn)

    async def _rest_json(self, request: httpx.Request, fn: str) -> Any:
        """A PostgREST request over raw httpx (no postgrest-py to import on a pass's way),
        its answer's JSON, its errors read the way postgrest-py reads them."""
        try:
            response = await self._http.send(request)
        except httpx.RequestError as exc:
            raise transport_error(exc, Service.STORE, self.url) from exc
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = _NOT_JSON
        if response.status_code >= 400:
            raise rpc_error(response.status_code, None if body is _NOT_JSON else body,
                            response.text, fn)
        if body is _NOT_JSON:  # an HTML page from a proxy, say: never read as an answer
            raise ProtocolError(f"store: {fn}: the answer is not JSON", service=Service.STORE)
        return body

    async def _flag(self, fn: str, **args: Any) -> bool:
        """A guarded transition's answer; anything but a JSON boolean (an HTML page from a
        proxy, say) must never read as "matched"."""
        data = await self._rpc(fn, **args)
        if not isinstance(data, bool):
            raise ProtocolError(f"store: {fn}: expected true or false", service=Service.STORE)
        return data

    async def _rows(self, what: str, query: Any) -> list[dict[str, Any]]:
        response = await self._call(what, query.execute())
        data = response.data
        if not isinstance(data, list):
            raise ProtocolError(f"store: {what}: expected a JSON array", service=Service.STORE)
        return data

    def _assets(self) -> Any:
        return self._rest.table("lesson_assets").select(COLUMNS).eq("kind", "video")

    # -- rows ---------------------------------------------------------------------------------
    async def pending(self, limit: int | None = None) -> list[VideoAsset]:
        """Oldest first, a page (PAGE rows) a request, each after the last row of the one
        before (created_at, then id: a key, so no row is skipped or seen twice). The first
        page brings videopoll_state with it (what `get_state` then answers from)."""
        found: list[VideoAsset] = []
        after: VideoAsset | None = None
        first = True
        while limit is None or len(found) < limit:
            want = PAGE if limit is None else min(PAGE, limit - len(found))
            page = await self._rpc(
                "videopoll_pending", page_size=want, with_state=first,
                after_created=after.created_at.isoformat() if after else None,
                after_id=after.id if after else None)
            if not (isinstance(page, dict) and isinstance(page.get("rows"), list)):
                raise ProtocolError("store: videopoll_pending: expected rows",
                                    service=Service.STORE)
            if first:
                state = page.get("state")
                self._state = ({k: v for k, v in state.items() if isinstance(v, dict)}
                               if isinstance(state, dict) else {})
                first = False
            rows = [asset_row(r) for r in page["rows"]]
            found += rows
            if not page.get("more") or not rows:
                break
            after = rows[-1]
        return found

    async def get(self, asset_id: str) -> VideoAsset | None:
        if not valid_uuid(asset_id):
            return None
        rows = await self._rows("read row", self._assets().eq("id", asset_id).limit(1))
        return asset_row(rows[0]) if rows else None

    async def videos(self, statuses: Collection[Status] | None = None,
                     limit: int | None = None) -> list[VideoAsset]:
        """Newest first, page by page (as `pending`, the other way round)."""
        found: list[VideoAsset] = []
        after: VideoAsset | None = None
        while limit is None or len(found) < limit:
            want = PAGE if limit is None else min(PAGE, limit - len(found))
            query = self._assets()
            if statuses is not None:
                query = query.in_("status", [str(s) for s in statuses])
            query = query.order("created_at", desc=True).order("id", desc=True).limit(want)
            if after is not None:
                stamp = after.created_at.isoformat()
                query = query.or_(f'created_at.lt."{stamp}",and(created_at.eq."{stamp}",'
                                  f"id.lt.{after.id})")
            page = [asset_row(r) for r in await self._rows("video rows", query)]
            found += page
            if len(page) < want or not page:
                break
            after = page[-1]
        return found

    async def by_prefix(self, prefix: str, limit: int = 10) -> list[VideoAsset]:
        """uuid columns have no `like`: a prefix is the range of ids between it padded with
        0s and with fs; conversation ids are text, stored with or without dashes."""
        if not HEX.fullmatch(prefix) or len(prefix) > 32:
            return []

        def dashed(hex_: str) -> str:
            return "-".join(hex_[a:b] for a, b in ((0, 8), (8, 12), (12, 16), (16, 20),
                                                   (20, 32)) if hex_[a:b])

        low, high = dashed(prefix.ljust(32, "0")), dashed(prefix.ljust(32, "f"))
        either = [f"and({c}.gte.{low},{c}.lte.{high})" for c in ("id", "lesson_id")]
        either += [f"conversation_id.ilike.{p}*" for p in sorted({prefix, dashed(prefix)})]
        query = (self._assets().or_(",".join(either)).order("created_at", desc=True)
                 .order("id", desc=True).limit(max(limit, 0)))
        return [asset_row(r) for r in await self._rows("rows by id prefix", query)]

    async def by_conversation(self, conversation_id: str) -> list[VideoAsset]:
        forms = {conversation_id}
        if len(conversation_id) == 32:  # OpenHands ids are stored with or without dashes
            c = conversation_id
            forms.add(f"{c[:8]}-{c[8:12]}-{c[12:16]}-{c[16:20]}-{c[20:]}")
        query = self._assets().in_("conversation_id", sorted(forms)).order("created_at")
        return [asset_row(r) for r in await self._rows("rows by conversation", query)]

    async def apply(self, changes: Sequence[Change]) -> list[bool]:
        """Every change in one RPC, one transaction (`videopoll_apply`), and the state
        `set_state` left, with it."""
        state = dict(self._state_out)
        if not changes and not state:
            return []
        args: dict[str, Any] = {"changes": [c.to_json() for c in changes]}
        if state:
            args["state"] = state
        data = await self._rpc("videopoll_apply", **args)
        if not (isinstance(data, list) and len(data) == len(changes)
                and all(isinstance(d, bool) for d in data)):
            # An HTML page from a proxy, say: never read as "applied".
            raise ProtocolError("store: videopoll_apply: expected one true or false per change",
                                service=Service.STORE)
        for key in state:  # written; a newer value set meanwhile waits for the next write
            if self._state_out.get(key) is state[key]:
                del self._state_out[key]
        return data

    async def record_error(self, asset_id: str, error: str, *, mismatch: bool = False) -> int:
        count = await self._rpc("videopoll_record_error", asset_id=asset_id, error=error,
                                mismatch=mismatch)
        if not isinstance(count, int) or isinstance(count, bool):
            raise ProtocolError("store: videopoll_record_error: expected a number",
                                service=Service.STORE)
        return count

    async def retry(self, asset_ids: Sequence[str] | None, *, dry_run: bool = False,
                    restart: Mapping[str, str] | None = None) -> list[VideoAsset]:
        ids = None if asset_ids is None else [a for a in asset_ids if valid_uuid(a)]
        if ids is not None and not ids:
            return []
        # `restart` only when there is one: a retry of transfers still runs on a migration
        # from before the argument existed.
        again = {"restart": dict(restart)} if restart else {}
        rows = await self._rpc("videopoll_retry", ids=ids, dry_run=dry_run, **again)
        if not isinstance(rows, list):
            raise ProtocolError("store: videopoll_retry: expected a JSON array",
                                service=Service.STORE)
        return sorted((asset_row(r) for r in rows), key=lambda a: (a.created_at, a.id))

    async def lesson(self, lesson_id: str) -> Lesson | None:
        if not valid_uuid(lesson_id):
            return None
        query = self._rest.table("lessons").select("id,title,user_id").eq("id", lesson_id)
        rows = await self._rows("read lesson", query.limit(1))
        return Lesson(id=rows[0]["id"], title=rows[0]["title"], user_id=rows[0].get("user_id")
                      ) if rows else None

    async def open_video(self, lesson_id: str) -> VideoAsset | None:
        if not valid_uuid(lesson_id):
            return None
        query = (self._assets().eq("lesson_id", lesson_id).not_.in_("status", ["ready", "failed"])
                 .order("created_at").limit(1))
        rows = await self._rows("open video", query)
        return asset_row(rows[0]) if rows else None

    async def insert_asset(self, *, asset_id: str, lesson_id: str, user_id: str | None,
                           github_path: str, conversation_id: str | None = None,
                           start_task_id: str | None = None) -> VideoAsset:
        row = {"id": asset_id, "lesson_id": lesson_id, "user_id": user_id, "kind": "video",
               "mime_type": "video/mp4", "status": str(Status.STARTING),
               "conversation_id": conversation_id, "start_task_id": start_task_id,
               "metadata": {"github_path": github_path}}
        rows = await self._rows("insert row", self._rest.table("lesson_assets").insert(row))
        if len(rows) != 1:
            raise ProtocolError("store: insert returned no row", service=Service.STORE)
        return asset_row(rows[0])

    # -- state: read with the pending rows, written with the next row writes -----------------
    async def get_state(self, key: str) -> dict[str, Any] | None:
        if key in self._state_out:
            return dict(self._state_out[key])
        if self._state is None:  # no pass read it yet (status, say): one request
            page = await self._rpc("videopoll_pending", page_size=0, with_state=True)
            state = page.get("state") if isinstance(page, dict) else None
            self._state = ({k: v for k, v in state.items() if isinstance(v, dict)}
                           if isinstance(state, dict) else {})
        found = self._state.get(key)
        return dict(found) if found is not None else None

    async def set_state(self, key: str, value: dict[str, Any]) -> None:
        """Kept until the next `apply` (or `flush`) writes it along: a pass's state is worth
        a request only when the pass writes nothing else."""
        self._state_out[key] = value
        if self._state is not None:
            self._state[key] = value

    async def flush(self) -> None:
        if self._state_out:
            await self.apply([])

    # -- objects ------------------------------------------------------------------------------
    async def put(self, asset: VideoAsset, key: str, chunks: AsyncIterator[bytes], *,
                  size: int, digest: str, owner: str, content_type: str = "video/mp4") -> None:
        check_key(key)
        if size <= tus.CHUNK:
            await self._put_small(key, chunks, size, content_type)
            return
        # Read while the download starts (`tus.upload` awaits it beside the first bytes).
        saved = self._saved_upload(asset.id)

        async def save(url: str, offset: int, prefix: str) -> bool:
            return await self._flag(
                "videopoll_save_upload", asset_id=asset.id, owner=owner, url=url or None,
                digest=digest if url else None, upload_offset=offset if url else None,
                prefix_sha256=prefix or None)

        await tus.upload(self._tus, chunks, name=key, size=size, content_type=content_type,
                         digest=digest, saved=saved, save=save)

    async def _put_small(self, key: str, chunks: AsyncIterator[bytes], size: int,
                         content_type: str) -> None:
        """At most one TUS chunk (6 MiB): the verified bytes in memory, then one standard
        upload (an upsert to the fixed key, so the retry policy may send it again whole).
        Raw httpx rather than storage3: a pass that only uploads small videos never loads
        storage3 or postgrest (start-up, issue 14)."""
        body = bytearray()
        async for piece in chunks:
            body += piece
            if len(body) > size:
                break
        if len(body) != size:
            raise ContentMismatch(f"{key}: got {len(body)} bytes, expected {size}")
        await self._upload(key, bytes(body), content_type)

    async def _upload(self, key: str, body: bytes, content_type: str) -> None:
        """One standard upload, an upsert to `key`."""
        url = f"{self.url}/storage/v1/object/{self.bucket}/{key}"
        try:
            response = await self._http.post(url, content=body, headers={
                **self._auth, "Content-Type": content_type, "x-upsert": "true",
                "cache-control": "max-age=3600"})
        except httpx.RequestError as exc:
            raise transport_error(exc, Service.STORE, self.url) from exc
        if response.status_code >= 400:
            try:
                answer = response.json()
            except ValueError:
                answer = None
            raise storage_answer(response.status_code, answer, response.text, "upload",
                                 self.bucket)

    async def _saved_upload(self, asset_id: str) -> tus.Saved | None:
        rows = await self._rest_json(self._http.build_request(
            "GET", f"{self.url}/rest/v1/{BOOKKEEPING}", headers={
                **self._auth, "Accept": "application/json"}, params={
                "select": "upload_url,upload_digest,upload_offset,upload_prefix_sha256",
                "asset_id": f"eq.{asset_id}", "limit": "1"}), "read upload state")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ProtocolError("store: read upload state: expected a JSON array of objects",
                                service=Service.STORE)
        if not rows or not rows[0].get("upload_url"):
            return None
        row = rows[0]
        return tus.Saved(row["upload_url"], row.get("upload_digest") or "",
                         int(row.get("upload_offset") or 0),
                         row.get("upload_prefix_sha256") or "")

    # -- doctor -------------------------------------------------------------------------------
    async def create_bucket(self) -> bool:
        """doctor --fix: create the bucket, private; False when it already existed."""
        try:
            await self._call("create bucket", self._storage.create_bucket(
                self.bucket, options={"public": False}))
        except VideopollError as exc:
            if "already exists" in exc.message:
                return False
            raise
        return True

    async def ensure_bucket(self) -> list[tuple[str, bool, str]]:
        created = await self.create_bucket()
        return [("supabase bucket", True,
                 f"{self.bucket} " + ("created (private)" if created else "exists"))]

    async def check(self) -> list[tuple[str, bool, str]]:
        """API reachable, key accepted and a service-role key, bucket present, migration
        complete. Raises AuthError when the key is refused (doctor exits 3)."""
        return await run_checks(self, self._role)

    async def schema_report(self) -> dict[str, Any] | None:
        """videopoll_schema_check()'s report; None when the migration is not applied."""
        try:
            report = await self._rpc("videopoll_schema_check")
        except ConfigError as exc:
            if exc.hint != MIGRATION_HINT:  # e.g. SUPABASE_URL is not an API URL at all
                raise
            return None
        return dict(report) if isinstance(report, dict) else None

    async def bucket_info(self) -> dict[str, Any]:
        bucket = await self._call("read bucket", self._storage.get_bucket(self.bucket))
        return {"id": bucket.id, "public": bucket.public}

