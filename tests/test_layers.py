"""The package's shape: imports flow one way, no cycles, small modules and functions, no torch where numpy suffices.

The import graph is read from the source (every ``import`` statement, also those inside
functions), so a lazy import counts as an edge like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "hardneg"

# Lowest first. A module may import from its own group (same top-level name) or from a lower layer.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("atomic",),  # atomic file writes, for every layer that writes files
    ("text", "choices"),
    ("execute",),  # who computes shards: this process or Ray (only its ray_engine imports ray)
    ("store", "runtime", "data", "gradcache"),
    ("candidates",),
    ("formats", "select", "retrieve", "evaluate", "teacher"),
    ("report",),
    ("neighbourhood",),  # telling queries' maps, drawn by both reports
    ("report_html",),
    ("mine", "export"),
    ("train",),
    ("integrations",),  # adapters to other libraries' trainers
    ("cli",),
)
# numpy-only layers: they never import a model library, not even lazily.
NO_TORCH = (
    "errors", "atomic", "text", "choices", "execute", "store", "data", "candidates", "formats", "select", "evaluate", "report",
)
HEAVY = ("torch", "transformers", "sentence_transformers", "faiss")
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60  # body lines, docstring excluded


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The hardneg modules ``path`` imports (``from pkg import submodule`` counts as the submodule)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in known}


def external_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
    return found


def group(module: str) -> str:
    """``hardneg.select.stages`` -> ``select``; the root package is ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer(module: str) -> int:
    for rank, names in enumerate(LAYERS):
        if group(module) in names:
            return rank
    raise AssertionError(f"{module} is in no layer of tests/test_layers.py: add its group to LAYERS")


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) - {name} for name, path in known.items()}


def test_every_module_has_a_layer():
    for name in modules():
        if name != "hardneg":
            layer(name)


def test_imports_flow_downward_only():
    upward = []
    for source, targets in graph().items():
        if source == "hardneg":  # the public API re-exports from everywhere, lazily
            continue
        for target in targets:
            if target == "hardneg":
                upward.append(f"{source} -> hardneg (import the defining module instead)")
            elif group(target) != group(source) and layer(target) >= layer(source):
                upward.append(f"{source} -> {target}")
    assert not upward, "imports against the layer order:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_teacher_sits_below_mining_and_training():
    for source, targets in graph().items():
        if group(source) == "teacher":
            assert not {group(t) for t in targets} & {"mine", "train", "cli", "report", "report_html"}, source


@pytest.mark.parametrize("name", NO_TORCH)
def test_numpy_layers_import_no_model_library(name):
    for module, path in modules().items():
        if group(module) == name:
            assert not external_imports(path) & set(HEAVY), f"{module} imports {external_imports(path) & set(HEAVY)}"


def test_modules_and_functions_stay_small():
    too_long = []
    for module, path in modules().items():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{module}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
                    body = body[1:]
                if body and body[-1].end_lineno - body[0].lineno + 1 > MAX_FUNCTION_LINES:
                    too_long.append(f"{module}.{node.name}: {body[-1].end_lineno - body[0].lineno + 1} lines")
    assert not too_long, "over the size limits:\n" + "\n".join(too_long)
