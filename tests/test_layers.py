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
    ("interfaces", {"cli", "ui", "alembic", "orm", "dask", "_demo", "_bench", "_models_bench"}),
    ("surface", {"rowver"}),
    ("facade", {"_database"}),
    ("operations", {"_models", "_model_dir", "_query", "_schema", "_training", "_write", "_follow", "_export",
                    "_iceberg"}),
    ("parts", {"_model_types", "_model_blobs", "_model_chunks", "_model_torch", "_frames", "_output",
               "_install", "_server", "_pgbench", "_refs", "_guards"}),
    ("base", {"_sql", "_retry", "errors"}),
]
RANK = {module: rank for rank, (_, modules) in enumerate(LAYERS) for module in modules}


def module_of(path: Path) -> str:
    """rowver/_write.py -> _write; rowver/cli/reads.py -> cli (a package is one module here)."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts == ("__init__",):
        return "rowver"
    return parts[0]


def imported(source: str, depth: int) -> set[str]:
    """The rowver modules a file imports, wherever in the file the import stands; ``depth``:
    1 for rowver/x.py, 2 for rowver/cli/x.py."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "rowver" or alias.name.startswith("rowver."):
                    found.add(alias.name.split(".")[1] if "." in alias.name else "rowver")
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and (node.module == "rowver" or node.module.startswith("rowver.")):
                    inner = node.module.split(".")[1:]
                    found.add(inner[0] if inner else "rowver")
                continue
            if node.level > depth:
                continue
            if node.level == depth:  # relative to rowver itself
                if node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.update(alias.name for alias in node.names)
            # (a relative import inside a subpackage stays in its module)
    return found


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_of(path)
        targets = imported(path.read_text(), len(path.relative_to(PACKAGE).parts))
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
    assert imported("from .. import _refs\nfrom ._common import app\n", 2) == {"_refs"}
