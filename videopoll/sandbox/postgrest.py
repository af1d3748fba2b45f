"""PostgREST's `/rest/v1` over real PostgreSQL: tables (GET/HEAD/POST/PATCH/DELETE) and RPC.

Behaviour follows PostgREST 12-14 as supabase-py 2.x uses it: `Prefer: return=`, `count=exact`
(Content-Range), `resolution=merge-duplicates`, `Accept: application/vnd.pgrst.object+json`
(0 or >1 rows: 406 PGRST116, rolled back), an unfiltered PATCH/DELETE refused with 21000 as
Supabase's pg-safeupdate does, STABLE/IMMUTABLE functions in a READ ONLY transaction, and
errors as `{"code","details","hint","message"}` with PostgREST's status mapping.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from .postgrest_query import IDENT, ApiError, Embed, number, order_by, projection, where
from .postgrest_schema import Table
from .server import Request, Response

if TYPE_CHECKING:
    from .supabase import SupabaseStandIn

OBJECT = "application/vnd.pgrst.object+json"


def register(app: SupabaseStandIn) -> None:
    table = r"/rest/v1/(?P<table>[^/]+)"
    for method, name in (("GET", "rest.table.get"), ("HEAD", "rest.table.head"),
                         ("POST", "rest.table.post"), ("PATCH", "rest.table.patch"),
                         ("DELETE", "rest.table.delete")):
        app.route(method, table, name, _guard(app, _table))
    for method in ("POST", "GET"):
        app.route(method, r"/rest/v1/rpc/(?P<fn>[^/]+)", "rest.rpc", _guard(app, _rpc))
    app.route("GET", r"/rest/v1/?", "rest.root", lambda r: _error(
        ApiError(404, "PGRST126", "Root endpoint metadata is disabled")))


class _Singular(Exception):
    def __init__(self, rows: int) -> None:
        self.rows = rows


def _error(exc: ApiError) -> Response:
    headers = {"Proxy-Status": f"PostgREST; error={exc.code}", **exc.headers}
    return Response.json(exc.body(), exc.status, headers)


def pg_status(sqlstate: str, message: str, authed: bool) -> int:
    """PostgREST's mapping of SQLSTATE to HTTP status (docs: references/errors)."""
    exact = {"23503": 409, "23505": 409, "25006": 405, "53400": 500, "57P01": 503,
             "P0001": 400, "42883": 404, "42P01": 404, "42P17": 500}
    if sqlstate in exact:
        return exact[sqlstate]
    if sqlstate == "42501":
        return 403 if authed else 401
    if sqlstate == "22023" and message.startswith("role") and message.endswith("not exist"):
        return 401
    if sqlstate.startswith("PT") and sqlstate[2:].isdigit():
        return int(sqlstate[2:])
    prefixes = {"08": 503, "09": 500, "0L": 403, "0P": 403, "25": 500, "28": 403, "2D": 500,
                "38": 500, "39": 500, "3B": 500, "40": 500, "53": 503, "54": 500, "55": 500,
                "57": 500, "58": 500, "F0": 500, "HV": 500, "P0": 500, "XX": 500}
    return prefixes.get(sqlstate[:2], 400)


def _guard(app: SupabaseStandIn, handler: Any) -> Any:
    """Authentication, schema headers and error translation around a handler."""

    def run(request: Request) -> Response:
        from .supabase import JwtError, PoolTimeout

        authed = False
        try:
            profile = request.header("Accept-Profile") or request.header("Content-Profile")
            if profile not in (None, "public"):
                raise ApiError(406, "PGRST106", f"Invalid schema: {profile}",
                               hint="Only the following schemas are exposed: public")
            try:
                claims = app.bearer(request) or {"role": "anon"}
            except JwtError as exc:
                code = "PGRST303" if exc.kind == "expired" else "PGRST301"
                message = str(exc) if exc.kind != "signature" else \
                    "No suitable key or wrong key type"
                raise ApiError(401, code, message, headers={
                    "WWW-Authenticate": f'Bearer error="invalid_token", '
                                        f'error_description="{message}"'}) from None
            authed = claims.get("role") != "anon"
            result: Response = handler(app, request, claims)
            return result
        except ApiError as exc:
            return _error(exc)
        except _Singular as exc:
            return _error(ApiError(406, "PGRST116", "Cannot coerce the result to a single JSON "
                                   "object", f"The result contains {exc.rows} rows"))
        except PoolTimeout:
            return _error(ApiError(504, "PGRST003", "Timed out acquiring connection from "
                                   "connection pool."))
        except psycopg.Error as exc:
            if exc.sqlstate is None:  # no server answer at all: PostgREST's connection error
                return _error(ApiError(503, "PGRST001", "Database client error. Retrying the "
                                       "connection."))
            diag = exc.diag
            message = diag.message_primary or str(exc)
            return _error(ApiError(pg_status(exc.sqlstate, message, authed), exc.sqlstate,
                                   message, diag.message_detail, diag.message_hint))
        except ConnectionError:
            raise  # the client went away mid-body: the server closes the connection
        except Exception as exc:  # a sandbox bug must answer 500, not hang the client
            return _error(ApiError(500, "PGRSTX00", f"{type(exc).__name__}: {exc}"))

    return run


def _prefer(request: Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for token in (request.header("Prefer") or "").split(","):
        key, _, value = token.strip().partition("=")
        if key:
            out[key] = value
    return out


def _table(app: SupabaseStandIn, request: Request, claims: dict[str, Any]) -> Response:
    name = request.params["table"]
    table = app.schema.table(name) if IDENT.match(name) else None
    if table is None:
        raise ApiError(404, "PGRST205", f"Could not find the table 'public.{name}' in the "
                       "schema cache")
    ident = sql.SQL("public.{}").format(sql.Identifier(name))
    prefer = _prefer(request)
    single = OBJECT in (request.header("Accept") or "")
    filters = where(request.query)
    cond = sql.SQL(" where {}").format(filters) if filters is not None else sql.SQL("")
    # The outer row is `_m` in both shapes below (the table itself, or the CTE of the rows a
    # write returned), which is what an embedded resource's join refers to.
    proj = projection(request.arg("select"), embed=embedder(app, table, "_m"))
    method = request.method
    if method in ("GET", "HEAD"):
        limit, offset = number(request.query, "limit"), number(request.query, "offset")
        # db-max-rows, as hosted Supabase sets it: never more rows, whatever was asked for.
        if app.max_rows is not None:
            limit = app.max_rows if limit is None else min(limit, app.max_rows)
        order = order_by(request.arg("order"))
        source = sql.SQL("select {} from {} as _m{}{}{}{}").format(
            proj, ident, cond,
            sql.SQL(" order by {}").format(order) if order is not None else sql.SQL(""),
            sql.SQL(" limit {}").format(limit) if limit is not None else sql.SQL(""),
            sql.SQL(" offset {}").format(offset) if offset is not None else sql.SQL(""))
        with app.transaction(claims, read_only=True, method=method, path=request.path) as conn:
            rows, body = _aggregate(conn, source, single)
            total = None
            if prefer.get("count") in ("exact", "planned", "estimated"):
                counted = conn.execute(sql.SQL("select count(*) from {}{}").format(
                    ident, cond)).fetchone()
                total = counted[0] if counted else 0
        start = offset or 0
        span = f"{start}-{start + rows - 1}" if rows else "*"
        headers = {"Content-Range": f"{span}/{'*' if total is None else total}"}
        return _respond(200, body, single, headers)
    data = _body(request)
    if method == "DELETE":
        if filters is None:
            raise ApiError(400, "21000", "DELETE requires a WHERE clause")
        change = sql.SQL("delete from {}{} returning *").format(ident, cond)
    elif method == "PATCH":
        if not isinstance(data, dict):
            raise ApiError(400, "PGRST102", "Empty or invalid json")
        if filters is None:
            raise ApiError(400, "21000", "UPDATE requires a WHERE clause")
        cols = _columns(table, data.keys())
        change = sql.SQL("update {} set ({}) = (select {} from json_populate_record(null::{}, "
                         "{}::json)){} returning *").format(
            ident, cols, cols, ident, sql.Literal(json.dumps(data)), cond)
    else:
        rowset = data if isinstance(data, list) else [data]
        if not rowset or not all(isinstance(r, dict) for r in rowset):
            raise ApiError(400, "PGRST102", "Empty or invalid json")
        keys: dict[str, None] = {}
        explicit = request.arg("columns")
        for key in (explicit.split(",") if explicit else (k for r in rowset for k in r)):
            keys[key.strip().strip('"')] = None
        cols = _columns(table, keys)
        change = sql.SQL("insert into {} ({}) select {} from json_populate_recordset(null::{}, "
                         "{}::json){} returning *").format(
            ident, cols, cols, ident, sql.Literal(json.dumps(rowset)),
            _conflict(table, list(keys), prefer, request.arg("on_conflict")))
    source = sql.SQL("select {} from _m").format(proj)
    with app.transaction(claims, method=method, path=request.path) as conn:
        rows, body = _aggregate(conn, source, single, change)
    if prefer.get("return") != "representation":
        return Response(201 if method == "POST" else 204, b"",
                        {"Content-Range": f"*/{rows}" if method == "POST" else f"0-{rows - 1}/*"})
    return _respond(201 if method == "POST" else 200, body, single, {})


def embedder(app: SupabaseStandIn, table: Table, outer: str) -> Embed:
    """Resource embedding along a foreign key, as PostgREST does it: a to-one relationship
    (our key points at the other table, or the other table's key is also its unique key) is
    one JSON object or null, a to-many one a JSON array. The subquery runs as the caller's
    role, so a table the role may not read answers 42501 like a plain select would."""

    def build(name: str, inner: str) -> sql.Composable:
        found = app.schema.relations_between(table.name, name)
        if not found:
            raise ApiError(400, "PGRST200", f"Could not find a relationship between "
                           f"'{table.name}' and '{name}' in the schema cache",
                           f"Searched for a foreign key relationship between '{table.name}' "
                           f"and '{name}' in the schema 'public', but no matches were found.")
        if len(found) > 1:
            raise ApiError(300, "PGRST201", f"Could not embed because more than one "
                           f"relationship was found for '{table.name}' and '{name}'")
        relation, other_is_parent = found[0]
        ours, theirs = ((relation.child_cols, relation.parent_cols) if other_is_parent
                        else (relation.parent_cols, relation.child_cols))
        join = sql.SQL(" and ").join(
            sql.SQL("{} = {}").format(sql.Identifier("_x", t), sql.Identifier(outer, o))
            for o, t in zip(ours, theirs, strict=True))
        rows = sql.SQL("select {} from public.{} as _x where {}").format(
            projection(inner, qualifier="_x"), sql.Identifier(name), join)
        if other_is_parent or relation.one_to_one:
            return sql.SQL("(select row_to_json(_e) from ({}) as _e)").format(rows)
        return sql.SQL("(select coalesce(json_agg(_e), '[]') from ({}) as _e)").format(rows)

    return build


def _aggregate(conn: psycopg.Connection[Any], source: sql.Composable, single: bool,
               change: sql.Composable | None = None) -> tuple[int, str]:
    """Run `source` (after the data-modifying `change`, as CTE `_m`); its rows as one JSON
    text, computed by PostgreSQL as PostgREST does."""
    head = sql.SQL("with _m as ({}) ").format(change) if change is not None else sql.SQL("")
    row = conn.execute(sql.SQL("{}select count(*)::int, coalesce(json_agg(_p), '[]')::text, "
                               "(json_agg(_p) -> 0)::text from ({}) _p").format(head, source)
                       ).fetchone()
    assert row is not None
    if single and row[0] != 1:
        raise _Singular(row[0])  # raised inside the transaction: everything rolls back
    return row[0], row[2] if single else row[1]


def _respond(status: int, body: str, single: bool, headers: dict[str, str]) -> Response:
    kind = OBJECT if single else "application/json"
    return Response(status, body.encode(), {"Content-Type": f"{kind}; charset=utf-8", **headers})


def _body(request: Request) -> Any:
    raw = request.body()
    if request.method == "DELETE" and not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise ApiError(400, "PGRST102", "Empty or invalid json") from None


def _columns(table: Table, keys: Any) -> sql.Composable:
    names = list(keys)
    for key in names:
        if not IDENT.match(key) or key not in table.columns:
            raise ApiError(400, "PGRST204", f"Could not find the '{key}' column of "
                           f"'{table.name}' in the schema cache")
    if not names:
        raise ApiError(400, "PGRST102", "Empty or invalid json")
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _conflict(table: Table, cols: list[str], prefer: dict[str, str], on: str | None
              ) -> sql.Composable:
    resolution = prefer.get("resolution")
    if resolution not in ("merge-duplicates", "ignore-duplicates"):
        return sql.SQL("")
    keys = [k.strip() for k in on.split(",")] if on else list(table.pk)
    for key in keys:
        if key not in table.columns:
            raise ApiError(400, "PGRST204", f"Could not find the '{key}' column of "
                           f"'{table.name}' in the schema cache")
    target = sql.SQL(", ").join(sql.Identifier(k) for k in keys)
    rest = [c for c in cols if c not in keys]
    if resolution == "ignore-duplicates" or not rest:
        return sql.SQL(" on conflict ({}) do nothing").format(target)
    sets = sql.SQL(", ").join(sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c))
                              for c in rest)
    return sql.SQL(" on conflict ({}) do update set {}").format(target, sets)


def _rpc(app: SupabaseStandIn, request: Request, claims: dict[str, Any]) -> Response:
    name = request.params["fn"]
    if request.method == "GET":
        args: Any = {k: v[-1] for k, v in request.query.items()}
    else:
        raw = request.body()
        try:
            args = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise ApiError(400, "PGRST102", "Empty or invalid json") from None
        if not isinstance(args, dict):
            raise ApiError(400, "PGRST102", "Empty or invalid json")
    routine = app.schema.routine(name, set(args)) if IDENT.match(name) else None
    if routine is None:
        shown = f"({', '.join(sorted(args))})" if args else " without parameters"
        raise ApiError(404, "PGRST202", f"Could not find the function public.{name}{shown} in "
                       "the schema cache", hint="If a new function was created in the "
                       "database with this name and parameters, try reloading the schema cache.")
    given = [(arg, typ) for arg, typ in routine.args if arg in args]
    call = sql.SQL("public.{}({})").format(sql.Identifier(name), sql.SQL(", ").join(
        sql.SQL("{0} := _r.{0}").format(sql.Identifier(arg)) for arg, _ in given))
    # Types come from pg_catalog, never from the request.
    record = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(arg), sql.SQL(typ))
                                for arg, typ in given)
    source = (sql.SQL("json_to_record({}::json) as _r({})").format(
        sql.Literal(json.dumps(args)), record) if given else sql.SQL("(select) _r"))
    if routine.setof or routine.kind == "composite":
        query = sql.SQL("select count(*)::int, coalesce(json_agg(_f), '[]')::text, "
                        "(json_agg(_f) -> 0)::text from {}, lateral {} _f").format(source, call)
    else:
        query = sql.SQL("select 1, to_json({})::text, null from {}").format(call, source)
    single = OBJECT in (request.header("Accept") or "")
    read_only = routine.read_only or request.method == "GET"
    with app.transaction(claims, read_only=read_only, method=request.method,
                         path=request.path) as conn:
        row = conn.execute(query).fetchone()
        assert row is not None
        count, many, first = row
        if routine.setof and single and count != 1:
            raise _Singular(count)
    if routine.kind == "void":
        return Response(204, b"", {})
    if routine.setof:
        return _respond(200, first if single else many, single, {})
    return _respond(200, first if routine.kind == "composite" else many, single, {})
