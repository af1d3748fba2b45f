"""Supabase Storage's `/storage/v1` (buckets and objects) over a directory and PostgreSQL.

Object bytes live under `storage_dir/objects/{bucket}/{name}`; their metadata rows live in
`storage.objects`, written as the caller's role so RLS applies (anon without a policy gets
Storage's "new row violates row-level security policy"). Errors follow supabase/storage:
HTTP 400 for everything but 500, the meaning in `{"statusCode","code","error","message"}`.
Route names for faults: storage.bucket.{list,get,create,delete},
storage.object.{upload,update,get,head,info,list,delete,delete_many}.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import psycopg

from .postgrest_query import ApiError
from .server import Request, Response
from .storage_io import (
    StorageError,
    access_denied,
    can_upload,
    check_key,
    check_mime,
    commit,
    find_bucket,
    from_db,
    no_such_bucket,
    no_such_key,
    object_path,
    read_file,
    receive,
    size_limit,
    temp_path,
    too_large,
)

if TYPE_CHECKING:
    from .supabase import SupabaseStandIn

_BUCKET_NAME = re.compile(r"[A-Za-z0-9_!.*'() &$=@;:+,?-]{1,100}\Z")  # storage's limits.ts
_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3}
_P = "/storage/v1"


def register(app: SupabaseStandIn) -> None:
    route = app.route
    route("GET", _P + "/bucket/?", "storage.bucket.list", guard(app, _list_buckets))
    route("POST", _P + "/bucket/?", "storage.bucket.create", guard(app, _create_bucket))
    route("GET", _P + "/bucket/(?P<bucket>[^/]+)", "storage.bucket.get", guard(app, _get_bucket))
    route("DELETE", _P + "/bucket/(?P<bucket>[^/]+)", "storage.bucket.delete",
          guard(app, _delete_bucket))
    route("POST", _P + "/object/list/(?P<bucket>[^/]+)", "storage.object.list",
          guard(app, _list_objects))
    route("GET", _P + "/object/info/(?:authenticated/)?(?P<bucket>[^/]+)/(?P<name>.+)",
          "storage.object.info", guard(app, _info))
    for method, name in (("GET", "storage.object.get"), ("HEAD", "storage.object.head")):
        route(method, _P + "/object/(?:authenticated/)?(?P<bucket>[^/]+)/(?P<name>.+)", name,
              guard(app, _download))
    route("POST", _P + "/object/(?P<bucket>[^/]+)/(?P<name>.+)", "storage.object.upload",
          guard(app, _upload))
    route("PUT", _P + "/object/(?P<bucket>[^/]+)/(?P<name>.+)", "storage.object.update",
          guard(app, _upload))
    route("DELETE", _P + "/object/(?P<bucket>[^/]+)/(?P<name>.+)", "storage.object.delete",
          guard(app, _delete_object))
    route("DELETE", _P + "/object/(?P<bucket>[^/]+)/?", "storage.object.delete_many",
          guard(app, _delete_many))


def claims_of(app: SupabaseStandIn, request: Request) -> dict[str, Any]:
    """Storage verifies the Bearer JWT itself; without a valid one it refuses."""
    from .supabase import JwtError

    try:
        claims = app.bearer(request)
    except JwtError as exc:
        message = '"exp" claim timestamp check failed' if exc.kind == "expired" else (
            "signature verification failed" if exc.kind == "signature" else "Invalid Compact JWS")
        raise access_denied(message) from None
    if claims is None:
        raise access_denied("Invalid Compact JWS")
    return claims


def storage_response(exc: StorageError) -> Response:
    return Response.json(exc.body(), 500 if exc.status == 500 else 400)


def guard(app: SupabaseStandIn, handler: Any) -> Any:
    def run(request: Request) -> Response:
        from .supabase import PoolTimeout

        try:
            result: Response = handler(app, request, claims_of(app, request))
            return result
        except StorageError as exc:
            return storage_response(exc)
        except ApiError as exc:  # a role the gateway cannot switch to
            return storage_response(access_denied(exc.message))
        except psycopg.Error as exc:
            return storage_response(from_db(exc))
        except PoolTimeout:
            return storage_response(StorageError(500, "DatabaseTimeout", "The connection to "
                                                 "the database timed out"))
        except ConnectionError:
            raise  # the client went away mid-body: the server closes the connection
        except Exception as exc:  # a sandbox bug must answer 500, not hang the client
            return storage_response(StorageError(500, "InternalError", f"{exc}",
                                                 type(exc).__name__))

    return run


def _bucket_json(row: tuple[Any, ...]) -> dict[str, Any]:
    keys = ("id", "name", "owner", "public", "file_size_limit", "allowed_mime_types",
            "created_at", "updated_at")
    out = dict(zip(keys, row, strict=True))
    out["owner"] = str(out["owner"] or "")
    for key in ("created_at", "updated_at"):
        out[key] = out[key].isoformat() if out[key] else None
    out["type"] = "STANDARD"
    return out


_BUCKET_COLUMNS = ("select id, name, owner, public, file_size_limit, allowed_mime_types, "
                   "created_at, updated_at from storage.buckets")


def _list_buckets(app: SupabaseStandIn, request: Request, claims: dict[str, Any]) -> Response:
    with app.transaction(claims, read_only=True) as conn:
        rows = conn.execute(_BUCKET_COLUMNS + " order by name").fetchall()
    return Response.json([_bucket_json(r) for r in rows])


def _get_bucket(app: SupabaseStandIn, request: Request, claims: dict[str, Any]) -> Response:
    with app.transaction(claims, read_only=True) as conn:
        row = conn.execute(_BUCKET_COLUMNS + " where id = %s",
                           [request.params["bucket"]]).fetchone()
    if row is None:
        raise no_such_bucket()
    return Response.json(_bucket_json(row))


def _parse_size(value: Any) -> int | None:
    if value is None or isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+)\s*([kmg]?b)\s*", str(value).lower())
    if not match:
        raise StorageError(400, "InvalidRequest", "Invalid file size format, hint: use 20GB / "
                           "20MB / 30KB / 3B")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _create_bucket(app: SupabaseStandIn, request: Request, claims: dict[str, Any]) -> Response:
    body = request.json() or {}
    name = str(body.get("name") or body.get("id") or "")
    bucket_id = str(body.get("id") or name)
    if not _BUCKET_NAME.match(bucket_id):
        raise StorageError(400, "InvalidBucketName", "Bucket name invalid", "Invalid Input")
    with app.transaction(claims, method="POST") as conn:
        conn.execute("insert into storage.buckets (id, name, owner, public, file_size_limit, "
                     "allowed_mime_types) values (%s, %s, %s, %s, %s, %s)",
                     [bucket_id, name, None, bool(body.get("public", False)),
                      _parse_size(body.get("file_size_limit")), body.get("allowed_mime_types")])
    return Response.json({"name": bucket_id})


def _delete_bucket(app: SupabaseStandIn, request: Request, claims: dict[str, Any]) -> Response:
    bucket_id = request.params["bucket"]
    with app.transaction(claims, method="DELETE") as conn:
        if conn.execute("select 1 from storage.objects where bucket_id = %s limit 1",
                        [bucket_id]).fetchone():
            raise StorageError(409, "ResourceNotEmpty",
                               "The bucket you tried to delete is not empty")
        if conn.execute("delete from storage.buckets where id = %s returning id",
                        [bucket_id]).fetchone() is None:
            raise no_such_bucket()
    return Response.json({"message": "Successfully deleted"})


def _upload(app: SupabaseStandIn, request: Request, claims: dict[str, Any]) -> Response:
    """POST creates (or overwrites with `x-upsert: true`); PUT always overwrites."""
    bucket_id, name = request.params["bucket"], check_key(request.params["name"])
    upsert = request.method == "PUT" or (request.header("x-upsert") or "").lower() == "true"
    bucket = find_bucket(app, bucket_id)
    limit = size_limit(app, bucket)
    declared = int(request.header("Content-Length") or 0)
    if declared > limit + 64 * 1024:  # a multipart envelope is a few hundred bytes
        raise too_large()
    can_upload(app, claims, bucket_id, name, upsert)
    tmp = temp_path(app)
    try:
        content_type, cache = receive(request, tmp, limit)
        check_mime(bucket, content_type)
        object_id = commit(app, claims, bucket_id, name, tmp, upsert=upsert,
                           content_type=content_type, cache_control=cache,
                           via="update" if request.method == "PUT" else "upload")
    finally:
        tmp.unlink(missing_ok=True)
    return Response.json({"Id": object_id, "Key": f"{bucket_id}/{name}"})


def _find_object(app: SupabaseStandIn, claims: dict[str, Any], bucket: str, name: str
                 ) -> tuple[Any, ...]:
    find_bucket(app, bucket)
    with app.transaction(claims, read_only=True) as conn:
        row = conn.execute("select id, name, version, bucket_id, metadata, created_at, "
                           "updated_at from storage.objects where bucket_id = %s and name = %s",
                           [bucket, name]).fetchone()
    if row is None or not object_path(app, bucket, name).exists():
        raise no_such_key()
    return tuple(row)


def _download(app: SupabaseStandIn, request: Request, claims: dict[str, Any]) -> Response:
    bucket, name = request.params["bucket"], check_key(request.params["name"])
    _id, _name, _version, _bucket, meta, _created, updated = _find_object(app, claims, bucket,
                                                                          name)
    path = object_path(app, bucket, name)
    size = path.stat().st_size
    headers = {"Content-Type": meta.get("mimetype") or "application/octet-stream",
               "ETag": meta.get("eTag") or "", "Cache-Control": meta.get("cacheControl") or "",
               "Last-Modified": updated.strftime("%a, %d %b %Y %H:%M:%S GMT")}
    if request.method == "HEAD":  # an empty iterable: the server sends only `length`
        return Response(200, iter(()), headers, length=size)
    return Response(200, read_file(path), headers, length=size)


def _info(app: SupabaseStandIn, request: Request, claims: dict[str, Any]) -> Response:
    bucket, name = request.params["bucket"], check_key(request.params["name"])
    object_id, obj_name, version, bucket_id, meta, created, updated = _find_object(
        app, claims, bucket, name)
    return Response.json({
        "id": str(object_id), "name": obj_name, "version": version, "bucket_id": bucket_id,
        "size": meta.get("size"), "content_type": meta.get("mimetype"),
        "cache_control": meta.get("cacheControl"), "etag": meta.get("eTag"), "metadata": None,
        "last_modified": updated.isoformat(), "created_at": created.isoformat()})


def _list_objects(app: SupabaseStandIn, request: Request, claims: dict[str, Any]) -> Response:
    """Immediate children of `prefix`: files with their metadata, folders with id null."""
    bucket = request.params["bucket"]
    find_bucket(app, bucket)
    body = request.json() or {}
    prefix = str(body.get("prefix") or "").strip("/")
    folder = f"{prefix}/" if prefix else ""
    search = str(body.get("search") or "")
    sort = body.get("sortBy") or {}
    with app.transaction(claims, read_only=True) as conn:
        rows = conn.execute("select name, id, updated_at, created_at, last_accessed_at, metadata"
                            " from storage.objects where bucket_id = %s and starts_with(name, %s)",
                            [bucket, folder]).fetchall()
    entries: dict[str, dict[str, Any]] = {}
    for name, object_id, updated, created, accessed, meta in rows:
        child, slash, _ = name[len(folder):].partition("/")
        if not child.startswith(search):
            continue
        if slash:
            entries.setdefault(child, {"name": child, "id": None, "updated_at": None,
                                       "created_at": None, "last_accessed_at": None,
                                       "metadata": None})
        else:
            entries[child] = {"name": child, "id": str(object_id),
                              "updated_at": updated.isoformat(), "created_at": created.isoformat(),
                              "last_accessed_at": accessed.isoformat(), "metadata": meta}
    column = sort.get("column") if sort.get("column") in ("name", "created_at",
                                                           "updated_at") else "name"
    listed = sorted(entries.values(), key=lambda e: (e[column] is None, str(e[column] or "")),
                    reverse=sort.get("order") == "desc")
    offset, limit = int(body.get("offset") or 0), int(body.get("limit") or 100)
    return Response.json(listed[offset:offset + limit])


def _delete_object(app: SupabaseStandIn, request: Request, claims: dict[str, Any]) -> Response:
    bucket, name = request.params["bucket"], check_key(request.params["name"])
    find_bucket(app, bucket)
    with app.transaction(claims, method="DELETE") as conn:
        gone = conn.execute("delete from storage.objects where bucket_id = %s and name = %s "
                            "returning id", [bucket, name]).fetchone()
    if gone is None:
        raise no_such_key()
    object_path(app, bucket, name).unlink(missing_ok=True)
    return Response.json({"message": "Successfully deleted"})


def _delete_many(app: SupabaseStandIn, request: Request, claims: dict[str, Any]) -> Response:
    bucket = request.params["bucket"]
    find_bucket(app, bucket)
    names = [check_key(str(n)) for n in (request.json() or {}).get("prefixes", [])]
    with app.transaction(claims, method="DELETE") as conn:
        rows = conn.execute("delete from storage.objects where bucket_id = %s and name = any(%s)"
                            " returning name, id, bucket_id, metadata", [bucket, names]).fetchall()
    out = []
    for name, object_id, bucket_id, meta in rows:
        object_path(app, bucket, name).unlink(missing_ok=True)
        out.append({"name": name, "id": str(object_id), "bucket_id": bucket_id,
                    "metadata": meta})
    return Response.json(out)
