"""PostgREST's schema cache of `public`: tables with their columns and primary keys, the
foreign keys between them (for embedding), and functions with their named arguments, return
shape and volatility (read from pg_catalog)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .supabase import PgPool


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    pk: tuple[str, ...]


@dataclass(frozen=True)
class Relation:
    """A foreign key `child(child_cols) -> parent(parent_cols)`; `one_to_one` when the child's
    columns are also its primary key or a unique key (PostgREST then embeds an object)."""

    child: str
    child_cols: tuple[str, ...]
    parent: str
    parent_cols: tuple[str, ...]
    one_to_one: bool


@dataclass(frozen=True)
class Routine:
    name: str
    args: tuple[tuple[str, str], ...]  # (name, type) of the input arguments
    required: frozenset[str]  # arguments without a default
    setof: bool
    kind: str  # "void", "scalar" or "composite"
    read_only: bool  # STABLE or IMMUTABLE


class SchemaCache:
    """PostgREST's schema cache of `public`: reloaded once when a name is not found."""

    def __init__(self, pool: PgPool) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self.tables: dict[str, Table] = {}
        self.routines: dict[str, list[Routine]] = {}
        self.relations: list[Relation] = []

    def reload(self) -> None:
        with self._pool.connection() as conn:
            rows = conn.execute("""
                select c.relname, array_agg(a.attname::text order by a.attnum),
                       coalesce((select array_agg(k.attname::text order by k.attnum)
                                   from pg_index i join pg_attribute k
                                     on k.attrelid = i.indrelid and k.attnum = any (i.indkey)
                                  where i.indrelid = c.oid and i.indisprimary), '{}')
                  from pg_class c join pg_namespace n on n.oid = c.relnamespace
                  join pg_attribute a on a.attrelid = c.oid and a.attnum > 0
                                     and not a.attisdropped
                 where n.nspname = 'public' and c.relkind in ('r', 'v', 'm', 'p', 'f')
                 group by c.oid, c.relname""").fetchall()
            keys = conn.execute("""
                select child.relname,
                       array(select a.attname::text from unnest(c.conkey) with ordinality k(n, i)
                               join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.n
                              order by k.i),
                       parent.relname,
                       array(select a.attname::text from unnest(c.confkey) with ordinality k(n, i)
                               join pg_attribute a on a.attrelid = c.confrelid and a.attnum = k.n
                              order by k.i),
                       exists (select 1 from pg_index x
                                where x.indrelid = c.conrelid and x.indisunique
                                  and x.indpred is null
                                  and (select array_agg(n order by n)
                                         from unnest(x.indkey::int2[]) n)
                                    = (select array_agg(n order by n)
                                         from unnest(c.conkey) n))
                  from pg_constraint c
                  join pg_class child on child.oid = c.conrelid
                  join pg_class parent on parent.oid = c.confrelid
                 where c.contype = 'f'
                   and child.relnamespace = 'public'::regnamespace
                   and parent.relnamespace = 'public'::regnamespace""").fetchall()
            procs = conn.execute("""
                select p.proname, coalesce(p.proargnames, '{}'), coalesce(p.proargmodes::text[],
                       '{}'), array(select format_type(t, null) from unnest(p.proargtypes) t),
                       p.pronargdefaults, p.proretset, format_type(p.prorettype, null),
                       t.typtype, p.provolatile
                  from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                  join pg_type t on t.oid = p.prorettype
                 where n.nspname = 'public' and p.prokind = 'f'
                   and p.prorettype <> 'trigger'::regtype""").fetchall()
        tables = {name: Table(name, tuple(cols), tuple(pk)) for name, cols, pk in rows}
        routines: dict[str, list[Routine]] = {}
        for name, names, modes, types, ndefaults, setof, rettype, typtype, volatile in procs:
            modes = modes or ["i"] * len(names)
            inputs = [n for n, m in zip(names, modes, strict=False) if m in ("i", "b", "v")]
            if len(inputs) != len(types) or not all(inputs):
                continue  # unnamed arguments cannot be called with named JSON
            kind = ("void" if rettype == "void" else
                    "composite" if typtype == "c" or rettype == "record" else "scalar")
            required = frozenset(inputs[: len(inputs) - ndefaults])
            routines.setdefault(name, []).append(Routine(
                name, tuple(zip(inputs, types, strict=True)), required, setof, kind,
                volatile in ("s", "i")))
        relations = [Relation(child, tuple(ccols), parent, tuple(pcols), one)
                     for child, ccols, parent, pcols, one in keys]
        with self._lock:
            self.tables, self.routines, self.relations = tables, routines, relations

    def table(self, name: str) -> Table | None:
        if name not in self.tables:
            self.reload()
        return self.tables.get(name)

    def relations_between(self, table: str, other: str) -> list[tuple[Relation, bool]]:
        """Foreign keys joining `table` to `other`, each with whether `other` is the parent
        (many-to-one: one object) rather than the child."""
        if other not in self.tables:
            self.reload()
        found = [(r, r.parent == other) for r in self.relations
                 if (r.child, r.parent) in ((table, other), (other, table))]
        return found

    def routine(self, name: str, keys: set[str]) -> Routine | None:
        if name not in self.routines:
            self.reload()
        for routine in self.routines.get(name, []):
            names = {arg for arg, _ in routine.args}
            if keys <= names and routine.required <= keys:
                return routine
        return None
