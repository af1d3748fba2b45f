"""The package's shape (issue 13): the command line is whole wherever it is imported, the
rooms import each other without cycles, and the engine never reaches the network layer."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import videopoll

ROOT = Path(videopoll.__file__).parent
COMMANDS = {"poll", "watch", "status", "pending", "generate", "retry", "doctor", "schema",
            "demo"}


def test_importing_the_app_gives_every_command() -> None:
    """In a fresh interpreter, as CliRunner or a docs generator would import it (no run())."""
    code = ("import json, typer.main; from videopoll.cli import app; "
            "print(json.dumps(sorted(typer.main.get_command(app).commands)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert set(json.loads(out)) == COMMANDS


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path) -> set[str]:
    """videopoll modules `path` imports when it runs (inside functions too; TYPE_CHECKING
    blocks aside), resolved to module names."""
    tree = ast.parse(path.read_text())
    here = _module(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("videopoll"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            if not stem.startswith("videopoll"):
                continue
            for alias in node.names:  # `from . import poll` names a module
                found.add(f"{stem}.{alias.name}")
            found.add(stem)
    return found


def graph(exclude: tuple[str, ...] = ("videopoll.sandbox", "videopoll.testing")
          ) -> dict[str, set[str]]:
    modules = {_module(p): p for p in ROOT.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        if name.startswith(exclude):
            continue
        targets = {t for t in _runtime_imports(path) if t in modules and t != name
                   and not t.startswith(exclude)}
        # a package's own __init__ is imported on the way to its modules: not an edge back
        edges[name] = {t for t in targets if not name.startswith(t + ".")}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_outside_the_stand_ins_and_fakes() -> None:
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_engine_never_imports_the_network_layer() -> None:
    for path in (ROOT / "engine").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {m for m in names if m.split(".")[0] in ("httpx", "supabase", "postgrest",
                                                             "storage3")}, path
        assert not any("services" in m for m in names), path


def test_a_json_pass_loads_only_what_it_needs(tmp_path: Path) -> None:
    """`poll --json` over an empty local store (cron's everyday case) in a fresh interpreter:
    no drawing library, no .env parser, no Supabase client, no CA bundle — each costs start-up
    time that such a pass has no use for (issue 14). What the libraries load on their own
    when imported (an older typer imports rich itself) is theirs, not the pass's."""
    code = ("import json, sys; import httpx, typer; theirs = set(sys.modules)\n"
            "from videopoll.cli import run\n"
            "try:\n    run(['poll', '--json'])\nexcept SystemExit:\n    pass\n"
            "import videopoll.services.http as h\n"
            "print(json.dumps({'modules': sorted(set(sys.modules) - theirs), "
            "'cas': h.tls_context().cert_store_stats()['x509_ca']}), file=sys.stderr)")
    env = {"PATH": "/usr/bin:/bin", "VIDEOPOLL_STORE": "local",
           "VIDEOPOLL_HOME": str(tmp_path), "VIDEOPOLL_ENV_FILE": "/dev/null",
           "OPENHANDS_API_KEY": "k", "GITHUB_TOKEN": "t", "VIDEOPOLL_GITHUB_REPO": "o/r"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60)
    assert json.loads(done.stdout.splitlines()[-1])["checked"] == 0, done.stderr
    seen = json.loads(done.stderr.splitlines()[-1])
    loaded = {m.split(".")[0] for m in seen["modules"]}
    assert loaded & {"rich", "dotenv", "supabase", "postgrest", "storage3"} == set()
    assert seen["cas"] == 0
