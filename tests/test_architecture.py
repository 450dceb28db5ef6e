"""The rules of the floors (ARCHITECTURE.md), checked on the source: imports point one way, no cycles, small modules.

Floors, bottom to top: core (losses, objectives, hmc, train, presgan, predictor, checkpoints, errors) <- parts (nets,
data, metrics, viz, video) <- experiments <- app / course. A module imports from its own floor or below, function-level
imports included; app and course do not import each other; ``__main__`` only dispatches by name.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "minilib"
CORE = {"losses", "objectives", "hmc", "train", "presgan", "predictor", "checkpoints", "errors"}
FLOORS = {"core": 0, "parts": 1, "experiments": 2, "app": 3, "course": 3}
MAX_LINES = 420  # "about 400": a module reads in one sitting


def _module(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _room(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "init"
    top = parts[1]
    if top in CORE:
        return "core"
    if top in ("nets", "data", "metrics", "viz", "video"):
        return "parts"
    if top in ("experiments", "app", "course"):
        return top
    if top == "__main__":
        return "main"
    raise AssertionError(f"{module}: not on any floor; add it to the map in ARCHITECTURE.md and here")


def _imports(path: Path, module: str | None = None) -> set[str]:
    """Every minilib module ``path`` (the module ``module``) imports, at module level or inside functions."""
    module = module or _module(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "minilib"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "minilib":
                continue
            for a in node.names:  # `from minilib.x import y` may name a submodule y
                sub = f"{target}.{a.name}"
                out.add(sub if _exists(sub) else target)
    return out


def _exists(module: str) -> bool:
    rel = Path(*module.split("."))
    return (PKG.parent / rel).with_suffix(".py").is_file() or (PKG.parent / rel / "__init__.py").is_file()


SOURCES = sorted(PKG.rglob("*.py"))
GRAPH = {_module(p): _imports(p) for p in SOURCES}


def test_every_module_is_on_a_floor():
    for module in GRAPH:
        _room(module)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down_the_floors(module):
    room = _room(module)
    if room in ("init", "main"):
        return
    for target in GRAPH[module]:
        other = _room(target)
        if other == "init":
            continue
        assert other != "main", f"{module} imports {target}"
        assert FLOORS[other] <= FLOORS[room], f"{module} ({room}) imports {target} ({other}), a floor above it"
        if room in ("app", "course"):
            assert other == room or FLOORS[other] < 3, f"{module} ({room}) imports {target} ({other}): app and course are apart"


def test_no_import_cycles():
    graph = {m: {t for t in ts if t in GRAPH and t != m} for m, ts in GRAPH.items()}
    # a package's __init__ re-exporting its submodules is not a cycle with them
    for m in graph:
        if (PKG.parent / Path(*m.split(".")) / "__init__.py").is_file():
            graph[m] = {t for t in graph[m] if not t.startswith(m + ".")}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in graph[m]:
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(t):] + [t]) if t in path else t)
            if t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PKG.parent)))
def test_modules_stay_small(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(PKG.parent)} has {n} lines (aim: about 400); split it by concept"


def test_the_checker_sees_function_level_imports_and_would_catch_an_upward_import(tmp_path):
    """The rule is enforced on real code: a core module importing the app from inside a function is found."""
    src = tmp_path / "losses.py"
    src.write_text("def f():\n    from .app import engine\n    import minilib.experiments.toys\n")
    found = _imports(src, "minilib.losses")
    assert {"minilib.app.engine", "minilib.experiments.toys"} <= found
    assert any(FLOORS[_room(t)] > FLOORS[_room("minilib.losses")] for t in found)
