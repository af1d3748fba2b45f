"""Supabase's errors as videopoll's exception tree.

A PostgREST error body carries a `code` (a SQLSTATE, a PGRST code) but the caller may not
have the HTTP status (postgrest-py's `APIError` drops it), so the code decides; when the body
was not PostgREST's, the HTTP status stands in for it. storage3's `StorageApiError` carries
the body's `statusCode` (Storage answers HTTP 400 for everything but 500) and its legacy
`error` string as `code`. Messages name the operation and the server's short reason, never a
key or a header value. Neither postgrest nor storage3 is imported here (they load pydantic:
a tenth of a second a `poll` that reads and writes rows over RPC does not need).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from postgrest.exceptions import APIError
    from storage3.exceptions import StorageApiError

from ...errors import (
    AuthError,
    ConfigError,
    RateLimited,
    RequestRejected,
    ServerError,
    VideopollError,
)
from ...model import Service

SERVICE = Service.STORE
MIGRATION_HINT = "apply the migration `videopoll schema` prints (Supabase SQL editor)"
# JWT refused, anonymous access, insufficient privilege; plain HTTP codes when the body was
# not PostgREST's (postgrest-py then uses the status as the code).
_AUTH = {"PGRST301", "PGRST302", "PGRST303", "42501", "28000", "28P01", "401", "403"}
# Unknown function, table or column: the migration is missing or older than this client.
# PGRST200: no relationship to embed (videopoll_assets is missing: an older migration).
_SCHEMA = {"PGRST200", "PGRST202", "PGRST204", "PGRST205", "42883", "42P01", "42703"}
_TRANSIENT_PREFIXES = ("08", "40", "53", "57", "58", "XX", "PGRST00")


def _short(text: object) -> str:
    return " ".join(str(text or "").split())[:200]


def rest_error(exc: APIError, what: str) -> VideopollError:
    """postgrest-py's APIError as videopoll's exception."""
    return rest_failure(str(exc.code or ""), exc.message, what)


def rpc_error(status: int, body: Any, text: str, what: str) -> VideopollError:
    """An RPC answer of HTTP `status` >= 400 (its JSON `body`, or None) as videopoll's
    exception, read the way postgrest-py reads it: the body's code, else the status."""
    if isinstance(body, dict) and ("code" in body or "message" in body):
        return rest_failure(str(body.get("code") or ""), body.get("message"), what)
    return rest_failure(str(status), text, what)


def rest_failure(code: str, raw_message: object, what: str) -> VideopollError:
    """A PostgREST (or API gateway) error, by its code and message."""
    message = _short(raw_message)
    text = f"store: {what}: {message}" + (f" ({code})" if code else "")
    # Supabase's gateway answers a missing or unknown apikey itself, without a code.
    if code in _AUTH or message.startswith(("Invalid API key", "No API key found")):
        return AuthError(text, service=SERVICE, status=401)
    if code in _SCHEMA:
        return ConfigError(f"{text}; the videopoll migration is missing or outdated",
                           hint=MIGRATION_HINT)
    if code == "429" or "rate limit" in message.lower():
        return RateLimited(text, service=SERVICE, status=429)
    if not code:
        # PostgREST always sends a code: a JSON error without one came from something in front
        # of it (gateway, proxy), and APIError does not keep the HTTP status.
        if "no Route matched" in message:
            return ConfigError(f"{text}; is SUPABASE_URL the project's API URL?")
        return ServerError(f"{text} (from the API gateway)", service=SERVICE)
    # An HTTP status stands in for the code only when the body was not PostgREST's; a
    # SQLSTATE is five characters (23505 is a unique violation, not a server error).
    http = int(code) if len(code) == 3 and code.isdigit() else None
    transient = http is None and code.startswith(_TRANSIENT_PREFIXES)  # "400" is not class 40
    if transient or (http is not None and http >= 500):
        return ServerError(text, service=SERVICE, status=http or 503)
    if code in ("23505", "23503"):  # a unique key (the row or an open video of the lesson
        # exists) or a missing parent (no such lesson): the write conflicts with the data
        return RequestRejected(text, service=SERVICE, status=409)
    return RequestRejected(text, service=SERVICE, status=http or 400)


def storage_error(exc: StorageApiError, what: str, bucket: str) -> VideopollError:
    """A Storage error from storage3 as videopoll's exception."""
    return storage_failure(str(exc.status), str(exc.code), exc.message, what, bucket)


def storage_answer(status: int, body: Any, text: str, what: str, bucket: str
                   ) -> VideopollError:
    """A Storage answer of HTTP `status` >= 400 (its JSON `body`, or None), read the way
    storage3 reads it: the body's statusCode, error and message, else the HTTP status."""
    if isinstance(body, dict):
        return storage_failure(str(body.get("statusCode") or status),
                               str(body.get("error") or ""), body.get("message") or text,
                               what, bucket)
    return storage_failure(str(status), "", text, what, bucket)


def storage_failure(status: str, code: str, raw_message: object, what: str, bucket: str
                    ) -> VideopollError:
    """A Storage error as videopoll's exception (a missing bucket is a configuration error)."""
    message = _short(raw_message)
    text = f"store: {what}: {message} (status {status})"
    if status == "404" and (code == "Bucket not found" or "Bucket not found" in message):
        return ConfigError(f"storage bucket {bucket!r} does not exist",
                           hint="set VIDEOPOLL_BUCKET or run `videopoll doctor --fix`")
    if status in ("401", "403") or code in ("Unauthorized", "InvalidJWT", "AccessDenied"):
        return AuthError(text, service=SERVICE, status=int(status) if status.isdigit() else 403)
    if status == "429":
        return RateLimited(text, service=SERVICE, status=429)
    if status.isdigit() and int(status) >= 500:
        return ServerError(text, service=SERVICE, status=int(status))
    return RequestRejected(text, service=SERVICE,
                           status=int(status) if status.isdigit() else 400)
