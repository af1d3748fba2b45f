"""Every adapter and fake implements the ports it stands for.

mypy (strict, over `tests/` too) checks the assignments in `_typed`; the run-time test checks
the same thing by signature, so a method renamed or re-parametered on one implementation
fails here even where mypy is not run.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from videopoll.ports import (
    AgentAPI,
    ArtifactSource,
    Lessons,
    Objects,
    Rows,
    StateCache,
    Store,
    StoreChecks,
)
from videopoll.services.github import GitHubArtifacts
from videopoll.services.local.store import LocalStore
from videopoll.services.openhands import OpenHandsAgent
from videopoll.services.supabase.store import SupabaseStore
from videopoll.testing import FakeAgent, FakeArtifacts, InMemoryStore

IMPLEMENTATIONS: list[tuple[type[Any], type[Any]]] = [
    (Store, InMemoryStore), (Store, LocalStore), (Store, SupabaseStore),
    (AgentAPI, FakeAgent), (AgentAPI, OpenHandsAgent),
    (ArtifactSource, FakeArtifacts), (ArtifactSource, GitHubArtifacts),
]


def _typed(store: InMemoryStore, local: LocalStore, supabase: SupabaseStore, agent: FakeAgent,
           openhands: OpenHandsAgent, fake: FakeArtifacts, github: GitHubArtifacts) -> None:
    """Never called: mypy reads it."""
    stores: list[Store] = [store, local, supabase]
    agents: list[AgentAPI] = [agent, openhands]
    sources: list[ArtifactSource] = [fake, github]
    state: StateCache = local
    del stores, agents, sources, state


def members(protocol: type[Any]) -> dict[str, Callable[..., Any]]:
    """The methods a Protocol asks for, its bases' included."""
    found: dict[str, Callable[..., Any]] = {}
    for klass in reversed(protocol.__mro__):
        if klass in (object,) or klass.__name__ in ("Protocol", "Generic"):
            continue
        found.update({name: value for name, value in vars(klass).items()
                      if inspect.isfunction(value) and not name.startswith("_")})
    return found


@pytest.mark.parametrize(("protocol", "impl"), IMPLEMENTATIONS,
                         ids=[f"{i.__name__}-{p.__name__}" for p, i in IMPLEMENTATIONS])
def test_each_implementation_has_every_method_of_its_port(protocol: type[Any],
                                                          impl: type[Any]) -> None:
    wanted = members(protocol)
    assert wanted, protocol
    for name, spec in wanted.items():
        got = getattr(impl, name, None)
        assert callable(got), f"{impl.__name__} lacks {name}()"
        # async in the port means awaitable in the implementation (a plain def returning an
        # async iterator may be an async generator there)
        if inspect.iscoroutinefunction(spec):
            assert inspect.iscoroutinefunction(got), f"{impl.__name__}.{name} is not async"
        spec_params = list(inspect.signature(spec).parameters.values())[1:]
        got_params = inspect.signature(got).parameters
        for param in spec_params:
            assert param.name in got_params, f"{impl.__name__}.{name} has no {param.name!r}"
            theirs = got_params[param.name]
            if param.kind is inspect.Parameter.KEYWORD_ONLY:
                assert theirs.kind in (inspect.Parameter.KEYWORD_ONLY,
                                       inspect.Parameter.POSITIONAL_OR_KEYWORD), (impl, name)
            if param.default is not inspect.Parameter.empty:
                assert theirs.default == param.default, f"{impl.__name__}.{name}({param.name})"
        extra = [p for p in got_params.values() if p.name != "self"
                 and p.name not in {q.name for q in spec_params}
                 and p.default is inspect.Parameter.empty
                 and p.kind not in (inspect.Parameter.VAR_POSITIONAL,
                                    inspect.Parameter.VAR_KEYWORD)]
        assert not extra, f"{impl.__name__}.{name} requires {[p.name for p in extra]}"


def test_the_store_is_its_roles_and_nothing_more() -> None:
    """Store is the union of the role Protocols (plus close): a method added to Store alone
    belongs to no role, and a role the engine takes stays small."""
    roles = (Rows, Objects, StateCache, Lessons, StoreChecks)
    union: set[str] = set().union(*(members(r) for r in roles))
    assert set(members(Store)) - union == {"close"}
    owners: dict[str, list[str]] = {}
    for role in roles:
        for name in members(role):
            owners.setdefault(name, []).append(role.__name__)
    assert all(len(v) == 1 for v in owners.values()), owners


def test_a_missing_method_is_caught() -> None:
    """The check above can fail: a class lacking one method of the port does."""

    class Half(FakeArtifacts):
        find = None  # type: ignore[assignment]

    with pytest.raises(AssertionError, match="lacks find"):
        test_each_implementation_has_every_method_of_its_port(ArtifactSource, Half)
