"""A local Supabase: PostgREST's REST API and the Storage API over real PostgreSQL.

One `StandIn` on 127.0.0.1 serves `/rest/v1/...` (see `postgrest.py`) and `/storage/v1/...`
(see `storage.py`, `storage_tus.py`) the way Supabase's gateway does: every request needs an
`apikey`; the `Authorization: Bearer` JWT (HS256, signed with the sandbox secret) picks the
database role, and each request is one transaction that runs `set_config('role', ...)` and
`set_config('request.jwt.claims', ...)` like PostgREST, so grants and row-level security apply.

    with fresh_database("demo") as dsn:
        bootstrap_supabase(dsn)
        with SupabaseStandIn(dsn, tmp_dir) as supa:
            client = await acreate_client(supa.url, supa.service_key, ...)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from . import postgrest, storage, storage_tus
from .postgrest_query import ApiError
from .postgrest_schema import SchemaCache
from .server import Request, Response, StandIn

ROLES = frozenset({"anon", "authenticated", "service_role"})
CHUNK = 6 * 1024 * 1024  # hosted Supabase's required TUS chunk size


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_jwt(claims: dict[str, Any], secret: str) -> str:
    """An HS256 JWT, as Supabase's legacy anon and service_role keys are."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    mac = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(mac)}"


class JwtError(Exception):
    """kind: "parts", "signature" or "expired"."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def verify_jwt(token: str, secret: str, *, check_exp: bool = True) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtError("parts", f"Expected 3 parts in JWT; got {len(parts)}")
    try:
        expected = hmac.new(secret.encode(), f"{parts[0]}.{parts[1]}".encode(),
                            hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(parts[2])):
            raise JwtError("signature", "signature verification failed")
        claims = json.loads(_unb64(parts[1]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise JwtError("parts", "JWT couldn't be decoded") from exc
    if not isinstance(claims, dict):
        raise JwtError("parts", "JWT couldn't be decoded")
    if check_exp and isinstance(claims.get("exp"), int | float) and claims["exp"] < time.time():
        raise JwtError("expired", "JWT expired")
    return claims


class PoolTimeout(Exception):
    pass


class PgPool:
    """A small thread-safe pool (psycopg_pool is not a dependency): at most `size` autocommit
    connections; one is lent to a request thread for the length of its transaction."""

    def __init__(self, dsn: str, size: int = 16) -> None:
        self._dsn, self._size = dsn, size
        self._idle: list[psycopg.Connection[Any]] = []
        self._open = 0
        self._closed = False  # after close(), connections coming back are closed, not kept
        self._cond = threading.Condition()

    def _acquire(self, timeout: float) -> psycopg.Connection[Any]:
        with self._cond:
            deadline = time.monotonic() + timeout
            while not self._idle and self._open >= self._size:
                if not self._cond.wait(max(0.0, deadline - time.monotonic())):
                    raise PoolTimeout
            if self._idle:
                return self._idle.pop()
            self._open += 1
        try:
            return psycopg.connect(self._dsn, autocommit=True, options="-c TimeZone=UTC")
        except BaseException:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            raise

    def _release(self, conn: psycopg.Connection[Any]) -> None:
        healthy = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
        with self._cond:
            healthy = healthy and not self._closed
            if healthy:
                self._idle.append(conn)
            else:
                self._open -= 1
            self._cond.notify()
        if not healthy:
            conn.close()

    @contextmanager
    def connection(self, timeout: float = 10.0) -> Iterator[psycopg.Connection[Any]]:
        conn = self._acquire(timeout)
        try:
            yield conn
        finally:
            self._release(conn)

    def close(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._closed = True
        for conn in idle:
            conn.close()


@dataclass(frozen=True)
class Write:
    """One committed object write: which key, which bytes (sha256) and how many."""

    key: str
    sha256: str
    size: int
    via: str  # "upload", "update" or "tus"


class SupabaseStandIn(StandIn):
    """Supabase's REST (PostgREST) and Storage APIs on one local port, over real PostgreSQL.

    `service_key` / `anon_key` are JWTs signed with `jwt_secret`; `make_key()` mints others
    (expired, other roles). Tests read `writes[key]` (committed writes per "bucket/path"),
    `write_log` (the sha256 of every write) and `tus_received[key]` (bytes PATCHed per key).
    """

    name = "supabase"

    def __init__(self, dsn: str, storage_dir: str | Path, *, host: str = "127.0.0.1",
                 port: int = 0, jwt_secret: str | None = None,
                 file_size_limit: int = 50 * 1024 * 1024 * 1024, tus_expiry_s: float = 86400.0,
                 chunk_size: int = CHUNK, pool_size: int = 16, latency: float = 0.0,
                 bandwidth: float | None = None, max_rows: int | None = 1000) -> None:
        super().__init__(host, port, latency=latency, bandwidth=bandwidth)
        self.dsn = dsn
        self.max_rows = max_rows  # PostgREST's db-max-rows: 1,000 on hosted Supabase
        self.storage_dir = Path(storage_dir)
        self.jwt_secret = jwt_secret or secrets.token_hex(32)
        self.file_size_limit = file_size_limit  # the project-wide limit (plan limit)
        self.tus_expiry_s = tus_expiry_s
        self.chunk_size = chunk_size
        self.pool = PgPool(dsn, pool_size)
        self.schema = SchemaCache(self.pool)
        self.writes: Counter[str] = Counter()
        self.write_log: list[Write] = []
        self.tus_received: Counter[str] = Counter()
        self.tus_log: list[tuple[str, int, int]] = []  # (key, offset, length) of each PATCH
        self.uploads: dict[str, storage_tus.Upload] = {}
        # One thread writes and hashes what TUS PATCHes receive (storage_tus._store), so in
        # order per upload.
        self.tus_storing = ThreadPoolExecutor(1, thread_name_prefix="tus-store")
        self.service_key = self.make_key("service_role")
        self.anon_key = self.make_key("anon")
        postgrest.register(self)
        storage.register(self)
        storage_tus.register(self)

    def make_key(self, role: str, *, expires_in: float = 10 * 365 * 86400.0,
                 secret: str | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": "supabase-sandbox", "role": role, "iat": now,
                   "exp": int(now + expires_in), **claims}
        return sign_jwt(payload, secret or self.jwt_secret)

    def __enter__(self) -> SupabaseStandIn:
        self.start()
        return self

    def stop(self) -> None:
        super().stop()
        self.pool.close()
        self.tus_storing.shutdown(wait=False, cancel_futures=True)

    def record_write(self, key: str, sha256: str, size: int, via: str) -> None:
        with self.lock:
            self.writes[key] += 1
            self.write_log.append(Write(key, sha256, size, via))

    # -- the API gateway ------------------------------------------------------------------------
    def before(self, request: Request) -> Response | None:
        """Supabase's gateway refuses a request without a valid `apikey` before any service."""
        key = request.header("apikey") or request.arg("apikey")
        if not key:
            return Response.json({"message": "No API key found in request",
                                  "hint": "No `apikey` request header or url param was found."},
                                 401)
        try:
            verify_jwt(key, self.jwt_secret, check_exp=False)
        except JwtError:
            return Response.json({"message": "Invalid API key",
                                  "hint": "Double check your Supabase `anon` or `service_role` "
                                          "API key."}, 401)
        return None

    def not_found(self, request: Request) -> Response:
        return Response.json({"message": "no Route matched with those values"}, 404)

    def bearer(self, request: Request) -> dict[str, Any] | None:
        """The verified claims of the Bearer token; None when there is no Authorization."""
        raw = request.header("Authorization")
        if raw is None:
            return None
        token = raw[7:].strip() if raw[:7].lower() == "bearer " else raw.strip()
        if not token:
            raise JwtError("parts", "Empty JWT is sent in Authorization header")
        return verify_jwt(token, self.jwt_secret)

    @contextmanager
    def transaction(self, claims: dict[str, Any], *, read_only: bool = False,
                    method: str = "GET", path: str = "", rollback: bool = False
                    ) -> Iterator[psycopg.Connection[Any]]:
        """One request's transaction as `claims["role"]`, with the claims PostgREST sets;
        `rollback=True` only tests what the statements would do (Storage's permission check)."""
        role = str(claims.get("role") or "anon")
        if role not in ROLES:
            # PostgREST's authenticator may only become the API roles it was granted.
            raise ApiError(403, "42501", f'permission denied to set role "{role}"')
        with self.pool.connection() as conn, conn.transaction(force_rollback=rollback):
            if read_only:
                conn.execute("set transaction read only")
            conn.execute(
                "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true),"
                " set_config('request.method', %s, true), set_config('request.path', %s, true)",
                [role, json.dumps(claims), method, path])
            yield conn

    @contextmanager
    def superuser(self) -> Iterator[psycopg.Connection[Any]]:
        """Storage looks buckets up as its own superuser, before the caller's role applies."""
        with self.pool.connection() as conn, conn.transaction():
            yield conn
