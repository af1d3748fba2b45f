"""`Store` over Supabase: PostgREST for the rows, Storage for the bucket (DESIGN 8.3).

Built on supabase-py's async client sharing the run's own `httpx.AsyncClient` (its timeouts,
User-Agent, retries and call counters; never closed here). Every row transition is one RPC to a
guarded function of the migration (`videopoll/sql/schema.sql`), so a repeated or racing call is
harmless. Rows are read from `lesson_assets` with videopoll's bookkeeping (claims, leases,
mismatches, retry time: `videopoll_assets`, a table no app user can reach) embedded. Objects
up to 6 MiB go through storage3's standard upload from a temp file; larger ones through TUS in
6 MiB chunks, resumable after a crash (`services/tus.py`). Errors from postgrest, storage3 and
httpx become videopoll's exceptions here, with service=Service.STORE.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Awaitable, Collection, Mapping, Sequence
from typing import Any, TypeVar

import httpx
from postgrest.exceptions import APIError
from postgrest.types import ReturnMethod
from storage3.exceptions import StorageApiError
from supabase import AsyncClient, AsyncClientOptions, SupabaseException, acreate_client

from ...errors import ConfigError, ContentMismatch, ProtocolError, VideopollError
from ...model import HEX, Lesson, Service, Status, VideoAsset
from ...states import Change, Transitions
from ..local.schema import disk
from ..retry import idempotent
from ..translate import transport_error
from . import tus
from .checks import key_role, run_checks
from .errors import MIGRATION_HINT, rest_error, storage_error
from .rows import BOOKKEEPING, COLUMNS, PENDING, asset_row, check_key, valid_uuid

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


PAGE = 1000  # hosted Supabase's default max_rows: no request answers more


class SupabaseStore(Transitions):
    """`videopoll.ports.Store` over a Supabase project; build it with `connect()`."""

    def __init__(self, client: AsyncClient, http: httpx.AsyncClient, *, url: str, key: str,
                 bucket: str) -> None:
        self._sb = client
        self.url = url.rstrip("/")
        self.bucket = bucket
        self._role = key_role(key)
        self._tus = tus.TusClient(http, f"{self.url}/storage/v1", key, bucket)

    @classmethod
    async def connect(cls, client: httpx.AsyncClient, *, url: str, key: str, bucket: str
                      ) -> SupabaseStore:
        """A store sharing `client` (the caller's, never closed here); no request is sent."""
        try:
            # Retries are declared once, in the caller's client layer: supabase-py's own
            # (GET only, fixed sleeps of 1-4 s) would hide an outage behind seconds of waiting.
            options = AsyncClientOptions(httpx_client=client, postgrest_client_retry=False)
            sb = await acreate_client(url, key, options=options)
        except SupabaseException as exc:  # a malformed URL or an empty key
            raise ConfigError(f"SUPABASE_URL or SUPABASE_SERVICE_ROLE_KEY is invalid: "
                              f"{exc.message}") from None
        return cls(sb, client, url=url, key=key, bucket=bucket)

    async def close(self) -> None:
        """Nothing of ours to close: the httpx client belongs to the caller."""

    # -- the edge: every call goes through here ---------------------------------------------
    async def _call(self, what: str, op: Awaitable[T]) -> T:
        try:
            return await op
        except APIError as exc:
            raise rest_error(exc, what) from exc
        except StorageApiError as exc:
            raise storage_error(exc, what, self.bucket) from exc
        except httpx.RequestError as exc:
            raise transport_error(exc, Service.STORE, self.url) from exc

    async def _rpc(self, fn: str, **args: Any) -> Any:
        response = await self._call(fn, self._sb.rpc(fn, args).execute())
        return response.data

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
        return self._sb.table("lesson_assets").select(COLUMNS).eq("kind", "video")

    # -- rows ---------------------------------------------------------------------------------
    async def pending(self, limit: int | None = None) -> list[VideoAsset]:
        """Oldest first, page by page: hosted Supabase answers at most `max_rows` (1,000) rows
        a request however many are asked for, so each page starts after the last row of the
        one before (created_at, then id: a key, so no row is skipped or seen twice)."""
        found: list[VideoAsset] = []
        after: VideoAsset | None = None
        while limit is None or len(found) < limit:
            want = PAGE if limit is None else min(PAGE, limit - len(found))
            query = (self._assets().is_("storage_path", "null").in_("status", PENDING)
                     .or_("conversation_id.not.is.null,start_task_id.not.is.null")
                     .order("created_at").order("id").limit(want))
            if after is not None:
                stamp = after.created_at.isoformat()
                query = query.or_(f'created_at.gt."{stamp}",and(created_at.eq."{stamp}",'
                                  f"id.gt.{after.id})")
            page = [asset_row(r) for r in await self._rows("pending rows", query)]
            found += page
            if len(page) < want or not page:
                break
            after = page[-1]
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
        """Every change in one RPC, one transaction (`videopoll_apply`)."""
        if not changes:
            return []
        data = await self._rpc("videopoll_apply", changes=[c.to_json() for c in changes])
        if not (isinstance(data, list) and len(data) == len(changes)
                and all(isinstance(d, bool) for d in data)):
            # An HTML page from a proxy, say: never read as "applied".
            raise ProtocolError("store: videopoll_apply: expected one true or false per change",
                                service=Service.STORE)
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
        query = self._sb.table("lessons").select("id,title,user_id").eq("id", lesson_id)
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
        rows = await self._rows("insert row", self._sb.table("lesson_assets").insert(row))
        if len(rows) != 1:
            raise ProtocolError("store: insert returned no row", service=Service.STORE)
        return asset_row(rows[0])

    async def get_state(self, key: str) -> dict[str, Any] | None:
        query = self._sb.table("videopoll_state").select("value").eq("key", key).limit(1)
        rows = await self._rows("read state", query)
        return dict(rows[0]["value"]) if rows else None

    async def set_state(self, key: str, value: dict[str, Any]) -> None:
        query = self._sb.table("videopoll_state").upsert({"key": key, "value": value},
                                                         returning=ReturnMethod.minimal)
        await self._call("write state", query.execute())

    # -- objects ------------------------------------------------------------------------------
    async def put(self, asset: VideoAsset, key: str, chunks: AsyncIterator[bytes], *,
                  size: int, digest: str, owner: str, content_type: str = "video/mp4") -> None:
        check_key(key)
        if size <= tus.CHUNK:
            await self._put_small(key, chunks, size, content_type)
            return
        saved = await self._saved_upload(asset.id)

        async def save(url: str, offset: int, prefix: str) -> bool:
            return await self._flag(
                "videopoll_save_upload", asset_id=asset.id, owner=owner, url=url or None,
                digest=digest if url else None, upload_offset=offset if url else None,
                prefix_sha256=prefix or None)

        await tus.upload(self._tus, chunks, name=key, size=size, content_type=content_type,
                         digest=digest, saved=saved, save=save)

    async def _put_small(self, key: str, chunks: AsyncIterator[bytes], size: int,
                         content_type: str) -> None:
        """Spool the verified bytes to an anonymous temp file (gone with the process, even
        a killed one), then let storage3 stream it through a reader of the same file."""
        with disk("spooling the upload"), tempfile.TemporaryFile(prefix="videopoll-") as spool:
            written = 0
            async for piece in chunks:
                written += len(piece)
                if written > size:
                    break
                spool.write(piece)
            if written != size:
                raise ContentMismatch(f"{key}: got {written} bytes, expected {size}")
            spool.flush()
            # storage3 streams a BufferedReader (anything else it takes for a path).
            with open(spool.fileno(), "rb", closefd=False) as reader:
                reader.seek(0)
                bucket = self._sb.storage.from_(self.bucket)
                await self._call("upload", bucket.upload(key, reader, {
                    "content-type": content_type, "upsert": "true", "cache-control": "3600"}))

    async def _saved_upload(self, asset_id: str) -> tus.Saved | None:
        query = (self._sb.table(BOOKKEEPING)
                 .select("upload_url,upload_digest,upload_offset,upload_prefix_sha256")
                 .eq("asset_id", asset_id).limit(1))
        rows = await self._rows("read upload state", query)
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
            await self._call("create bucket", self._sb.storage.create_bucket(
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
        bucket = await self._call("read bucket", self._sb.storage.get_bucket(self.bucket))
        return {"id": bucket.id, "public": bucket.public}
