"""PostgREST's URL grammar, parsed into safe SQL (the subset supabase-py sends).

Identifiers are checked against a strict pattern and always quoted with `sql.Identifier`;
values always become `sql.Literal`s (unknown-typed, so PostgreSQL casts them to the column's
type, as PostgREST's own parameters are). Nothing from a request is interpolated as text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg import sql

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TYPE = re.compile(r"[a-z_][a-z0-9_]*(\[\])?\Z")
_ARROW = re.compile(r"(->>|->)")
OPERATORS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=",
             "like": "like", "ilike": "ilike"}
IS_VALUES = {"null": "null", "not_null": "not null", "true": "true", "false": "false",
             "unknown": "unknown"}
RESERVED = {"select", "order", "limit", "offset", "on_conflict", "columns", "and", "or",
            "not.and", "not.or"}


class ApiError(Exception):
    """An error PostgREST itself reports, with its HTTP status and JSON body."""

    def __init__(self, status: int, code: str, message: str, details: str | None = None,
                 hint: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details, self.hint = details, hint
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "details": self.details, "hint": self.hint,
                "message": self.message}


def parse_error(what: str, text: str, why: str) -> ApiError:
    return ApiError(400, "PGRST100", f'"failed to parse {what} ({text})"', why)


@dataclass(frozen=True)
class Field:
    """A column, optionally followed by JSON arrows: `metadata->>github_path`."""

    column: str
    path: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        """The output key: PostgREST names an arrow expression after its last element."""
        return self.path[-1][1] if self.path else self.column

    def sql(self, qualifier: str | None = None) -> sql.Composable:
        out: sql.Composable = (sql.Identifier(qualifier, self.column) if qualifier
                               else sql.Identifier(self.column))
        for arrow, key in self.path:
            out = sql.SQL("{}{}{}").format(
                out, sql.SQL(arrow), sql.Literal(int(key) if key.isdigit() else key))
        return out


def parse_field(text: str, what: str = "field") -> Field:
    parts = _ARROW.split(text.strip())
    column, rest = parts[0], parts[1:]
    if not IDENT.match(column):
        raise parse_error(what, text, f"unexpected column name {column!r}")
    path = []
    for arrow, key in zip(rest[::2], rest[1::2], strict=True):
        if not (IDENT.match(key) or key.isdigit()):
            raise parse_error(what, text, f"unexpected JSON key {key!r}")
        path.append((arrow, key))
    return Field(column, tuple(path))


# Builds the SQL of an embedded resource `name(select)` (see postgrest.embedder).
Embed = Callable[[str, str], sql.Composable]
_EMBED = re.compile(r"(?:(?P<alias>[A-Za-z_][A-Za-z0-9_]*):)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                    r"\((?P<inner>.*)\)\Z", re.S)


def projection(select: str | None, *, qualifier: str | None = None,
               embed: Embed | None = None) -> sql.Composable:
    """The select list: `*`, columns, `alias:column`, JSON arrows, `::type` casts and, when
    `embed` is given, one level of embedded resources `[alias:]table(columns)`. Columns are
    qualified by `qualifier` when given (inside an embed, so that a name the embedded table
    lacks is an error rather than the outer row's column)."""
    star = sql.SQL("{}.*").format(sql.Identifier(qualifier)) if qualifier else sql.SQL("*")
    if not select or select.strip() == "*":
        return star
    items: list[sql.Composable] = []
    for raw in split_top(select):
        item = raw.strip()
        if item == "*":
            items.append(star)
            continue
        if "(" in item:
            found = _EMBED.match(item)
            if embed is None or found is None:
                raise parse_error("select parameter", select, "only one level of embedded "
                                  "resources, `[alias:]table(columns)`, is supported by the "
                                  "sandbox")
            name = found["name"]
            items.append(sql.SQL("{} as {}").format(
                embed(name, found["inner"]), sql.Identifier(found["alias"] or name)))
            continue
        alias = None
        if ":" in item.replace("::", "\0"):
            alias, item = item.replace("::", "\0").split(":", 1)
            item = item.replace("\0", "::")
            if not IDENT.match(alias):
                raise parse_error("select parameter", select, f"bad alias {alias!r}")
        cast = None
        if "::" in item:
            item, cast = item.split("::", 1)
            if not _TYPE.match(cast):
                raise parse_error("select parameter", select, f"bad cast {cast!r}")
        field = parse_field(item, "select parameter")
        expr = field.sql(qualifier)
        if cast:
            expr = sql.SQL("({})::{}").format(expr, sql.SQL(cast))
        items.append(sql.SQL("{} as {}").format(expr, sql.Identifier(alias or field.name)))
    return sql.SQL(", ").join(items)


def split_top(text: str) -> list[str]:
    """Split on commas outside parentheses and double quotes."""
    parts: list[str] = []
    current: list[str] = []
    depth, quoted = 0, False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0 and char == ",":
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p != ""]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def condition(field_text: str, expr: str, *, in_logic: bool = False) -> sql.Composable:
    """One filter: `column=[not.]op.value` (or `column.[not.]op.value` inside or=/and=)."""
    field = parse_field(field_text, "filter")
    negate = expr.startswith("not.")
    if negate:
        expr = expr[4:]
    op, dot, value = expr.partition(".")
    if not dot:
        raise parse_error("filter", f"{field_text}={expr}", "expected operator.value")
    if in_logic:
        value = _unquote(value)
    target = field.sql()
    cond: sql.Composable
    if op in OPERATORS:
        if op in ("like", "ilike"):
            value = value.replace("*", "%")
        cond = sql.SQL("{} {} {}").format(target, sql.SQL(OPERATORS[op]), sql.Literal(value))
    elif op == "is":
        if value.lower() not in IS_VALUES:
            raise parse_error("filter", f"{field_text}={expr}", "is takes null, not_null, "
                              "true, false or unknown")
        cond = sql.SQL("{} is {}").format(target, sql.SQL(IS_VALUES[value.lower()]))
    elif op == "in":
        if not (value.startswith("(") and value.endswith(")")):
            raise parse_error("filter", f"{field_text}={expr}", "in takes (a,b,...)")
        members = [_unquote(v.strip()) for v in split_top(value[1:-1])]
        if not members:
            cond = sql.SQL("false")
        else:
            cond = sql.SQL("{} in ({})").format(
                target, sql.SQL(", ").join(sql.Literal(m) for m in members))
    else:
        raise parse_error("filter", f"{field_text}={expr}", f"unknown operator {op!r}")
    return sql.SQL("not ({})").format(cond) if negate else cond


def logic(op: str, value: str) -> sql.Composable:
    """`or=(a.eq.1,b.not.is.null,and(c.gt.2,d.lt.3))`, also `and=` and `not.or=`."""
    negate = op.startswith("not.")
    joiner = " or " if op.endswith("or") else " and "
    if not (value.startswith("(") and value.endswith(")")):
        raise parse_error("logic tree", value, "expected (...)")
    parts: list[sql.Composable] = []
    for item in split_top(value[1:-1]):
        item = item.strip()
        head = item.split("(", 1)[0]
        if head in ("and", "or", "not.and", "not.or") and item.endswith(")"):
            parts.append(logic(head, item[len(head):]))
            continue
        field_text, dot, rest = item.partition(".")
        if not dot:
            raise parse_error("logic tree", value, f"bad element {item!r}")
        parts.append(condition(field_text, rest, in_logic=True))
    tree = sql.SQL("({})").format(sql.SQL(joiner).join(parts))
    return sql.SQL("not {}").format(tree) if negate else tree


def where(query: dict[str, list[str]]) -> sql.Composable | None:
    """Every filter in the query string, ANDed; None when there is none."""
    conds: list[sql.Composable] = []
    for key, values in query.items():
        for value in values:
            if key in ("or", "and", "not.or", "not.and"):
                conds.append(logic(key, value))
            elif key not in RESERVED:
                conds.append(condition(key, value))
    return sql.SQL(" and ").join(conds) if conds else None


def order_by(text: str | None) -> sql.Composable | None:
    if not text:
        return None
    terms: list[sql.Composable] = []
    for raw in split_top(text):
        bits = raw.strip().split(".")
        field = parse_field(bits[0], "order")
        words = []
        for bit in bits[1:]:
            if bit not in ("asc", "desc", "nullsfirst", "nullslast"):
                raise parse_error("order", text, f"unexpected {bit!r}")
            words.append({"nullsfirst": "nulls first", "nullslast": "nulls last"}.get(bit, bit))
        terms.append(sql.SQL(" ").join([field.sql(), *map(sql.SQL, words)]))
    return sql.SQL(", ").join(terms)


def number(query: dict[str, list[str]], key: str) -> int | None:
    values = query.get(key)
    if not values:
        return None
    if not values[-1].isdigit():
        raise parse_error(key, values[-1], "expected a non-negative integer")
    return int(values[-1])
