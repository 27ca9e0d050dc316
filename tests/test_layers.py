"""rowver's modules in layers (README, "Architecture"): each imports only from its own layer or
below, and nothing imports in a circle. Every import counts, also one deferred into a function
body or kept for type checking: a cycle hidden that way is still a cycle. No server needed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rowver"

# highest first; a module may import from its own layer and the ones after it
LAYERS: list[tuple[str, set[str]]] = [
    ("interfaces", {"cli", "ui", "alembic", "orm", "dask", "_demo", "bench"}),
    ("surface", {"rowver"}),
    ("facade", {"_database"}),
    ("operations", {"models", "models._store", "models._dir", "_query", "_schema", "_training", "_write",
                    "_follow", "_export", "_iceberg"}),
    ("parts", {"models._types", "models._blobs", "models._chunks", "models._torch", "_frames", "_output",
               "_install", "_server", "_refs", "_guards"}),
    ("base", {"_sql", "_retry", "errors"}),
]
RANK = {module: rank for rank, (_, modules) in enumerate(LAYERS) for module in modules}

# subpackages whose own modules are layered one by one (models._store above models._chunks);
# any other subpackage (cli, ui, bench) counts as one module
SPLIT = {"models"}


def module_of(path: Path) -> str:
    """rowver/_write.py -> _write; rowver/cli/reads.py -> cli; rowver/models/_store.py ->
    models._store; rowver/models/__init__.py -> models."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts == ("__init__",):
        return "rowver"
    if parts[0] in SPLIT and len(parts) == 2 and parts[1] != "__init__":
        return f"{parts[0]}.{parts[1]}"
    return parts[0]


def _named(dotted: str) -> str:
    """A module path below rowver ("_sql", "models._chunks.x", "cli.reads") as a module of the graph."""
    inner = dotted.split(".")
    return ".".join(inner[:2]) if inner[0] in SPLIT and len(inner) > 1 else inner[0]


def _is_module(dotted: str) -> bool:
    """Whether ``dotted`` (below rowver) names a module or subpackage, not a name defined in one."""
    path = PACKAGE.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or path.is_dir()


def imported(source: str, depth: int, package: str = "") -> set[str]:
    """The rowver modules a file imports, wherever in the file the import stands; ``depth``:
    1 for rowver/x.py, 2 for rowver/cli/x.py; ``package``: the subpackage a file at depth 2 is in."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "rowver" or alias.name.startswith("rowver."):
                    found.add(_named(alias.name.split(".", 1)[1]) if "." in alias.name else "rowver")
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and (node.module == "rowver" or node.module.startswith("rowver.")):
                    inner = node.module.split(".", 1)[1:]
                    found.add(_named(inner[0]) if inner else "rowver")
                continue
            if node.level > depth:
                continue
            if node.level == depth:  # relative to rowver itself
                if node.module:
                    found.add(_named(node.module))
                else:  # modules, or names of the package itself (from .. import Database)
                    found.update(alias.name if _is_module(alias.name) else "rowver" for alias in node.names)
            elif package in SPLIT:  # relative inside a split subpackage: its own modules
                if node.module:
                    found.add(_named(f"{package}.{node.module}"))
                else:
                    found.update(_named(f"{package}.{alias.name}") if _is_module(f"{package}.{alias.name}")
                                 else package for alias in node.names)
            # (a relative import inside any other subpackage stays in its module)
    return found


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_of(path)
        parts = path.relative_to(PACKAGE).parts
        targets = imported(path.read_text(), len(parts), parts[0] if len(parts) > 1 else "")
        edges.setdefault(module, set()).update(targets - {module})
    return edges


def test_every_module_has_a_layer() -> None:
    edges = graph()
    unplaced = sorted((set(edges) | {m for targets in edges.values() for m in targets}) - set(RANK))
    assert not unplaced, f"modules in no layer (add them to LAYERS and to README's Architecture): {unplaced}"


def test_imports_go_down_the_layers() -> None:
    upward = sorted(f"{source} ({LAYERS[RANK[source]][0]}) imports {target} ({LAYERS[RANK[target]][0]})"
                    for source, targets in graph().items() for target in targets
                    if source in RANK and target in RANK and RANK[target] < RANK[source])
    assert not upward, "\n".join(upward)


def test_no_import_cycles() -> None:
    edges = graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = path[path.index(module):] + [module]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for target in sorted(edges.get(module, ())):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(edges):
        visit(module, [])


def test_the_checks_see_deferred_and_type_only_imports() -> None:
    """The graph holds imports in function bodies and under TYPE_CHECKING, absolute and relative."""
    source = ("from typing import TYPE_CHECKING\n"
              "import rowver.orm\n"
              "if TYPE_CHECKING:\n    from ._database import Database\n"
              "def f():\n    from . import _write, _query\n    from ._models import Models\n")
    assert imported(source, 1) == {"orm", "_database", "_write", "_query", "_models"}
    assert imported("from .. import Database, _refs\nfrom ._common import app\n", 2) == {"rowver", "_refs"}
    assert imported("from .. import _sql\nfrom . import _chunks\nfrom ._types import Tensor\n", 2, "models") == {
        "_sql", "models._chunks", "models._types"}
    assert imported("from .models import Models\nfrom rowver.models._chunks import CHUNK_SIZE\n", 1) == {
        "models", "models._chunks"}
