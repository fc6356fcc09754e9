"""Rooms that do one job each, checked on the source: no import circle between Atelier's modules (imports inside
functions count: a lazy import is still a dependency, as in tests/unit/test_layers.py), SQLite pragmas set in one place
(memory/sqlite.py) and used by every SQLite connection, and one creation-id rule (memory/validation.py)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["models", "memory", "tools", "agent", "ui"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py")) if "node_modules" not in p.parts}


def _import_graph() -> dict[str, set[str]]:
    """module -> the Atelier modules it imports (a `from package import name` counts as the submodule when there is one)."""
    sources = _sources()
    graph: dict[str, set[str]] = {}
    for name, path in sources.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets.add(base)
                targets.update(f"{base}.{alias.name}" for alias in node.names)
        graph[name] = {t for t in targets if t in sources and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_memory_and_openfabric_modules_import_in_one_direction():
    """The store and its bulk paths, and the two Openfabric packages, once imported each other (lazily)."""
    graph = _import_graph()
    watched = ("memory.", "tools.openfabric", "tools.backends.openfabric", "agent.openfabric_node", "models.speech", "agent.speech")
    circles = [c for c in _cycles(graph) if any(m.startswith(watched) for m in c)]
    assert circles == []
    assert "memory.store" not in graph["memory.bulk"]
    assert not any(m.startswith(("tools.backends.openfabric", "agent")) for m in
                   set().union(*(graph[m] for m in graph if m.startswith("tools.openfabric"))))


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_sqlite_pragmas_are_written_in_one_place():
    pragma = re.compile(r"PRAGMA\s+\w+\s*=")
    writers = sorted(str(p.relative_to(ROOT)) for p in _sources().values() if pragma.search(p.read_text()))
    assert writers == ["memory/sqlite.py"]


def test_every_sqlite_connection_gets_the_pragmas(tmp_path):
    from sqlalchemy import text

    from memory.session import sqlite_checkpointer
    from memory.settings import MemorySettings
    from memory.store import MemoryStore
    from ui.datalayer import SQLiteDataLayer

    settings = MemorySettings(data_dir=str(tmp_path / "data"))
    saver = sqlite_checkpointer(settings)
    layer = SQLiteDataLayer(tmp_path / "chainlit.db")
    store = MemoryStore(settings)
    try:
        for conn in (saver.conn, layer._conn):
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
        with store.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
    finally:
        saver.conn.close()
        layer._conn.close()
        store.engine.dispose()


# ui/runner.py is being rebuilt around the tool/kind table (issue 18); it will use memory.validation.is_creation_id.
CREATION_ID_EXEMPT = {"ui/runner.py"}


def test_the_creation_id_rule_is_written_once():
    from memory.validation import CREATION_ID, is_creation_id

    written = sorted(str(p.relative_to(ROOT)) for p in _sources().values() if "[A-Za-z0-9]{1,64}" in p.read_text())
    assert [w for w in written if w not in CREATION_ID_EXEMPT] == ["memory/validation.py"]
    assert is_creation_id("0123abcdEF") and is_creation_id("a" * 64)
    for bad in ("", "a" * 65, "abc\n", "a-b", "../etc", "ab c", None, 12):
        assert not is_creation_id(bad), bad
    assert CREATION_ID.match("abc\n") is None  # \Z: .match is a full match too (the API server uses .match)
