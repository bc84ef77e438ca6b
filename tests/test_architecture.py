"""The import arrows of docs/ARCHITECTURE.md, enforced: layers only import downwards, the library
never imports the CLI, internal imports sit at the top of each module, and nothing is installed
as a top-level ``envs`` or ``agents`` package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"worldmodels": ROOT / "worldmodels", "worldmodels.envs": ROOT / "envs", "worldmodels.agents": ROOT / "agents"}

# Lower layers never import higher ones (docs/ARCHITECTURE.md, "Import arrows"). A module's layer is
# that of the longest prefix listed here.
LAYERS = {
    "worldmodels.core": 0,
    "worldmodels.envs": 1,
    "worldmodels.models": 2,
    "worldmodels.runs": 3,
    # kernels and building blocks that agents and stages share
    "worldmodels.dream.imagine": 4,
    "worldmodels.planning.optimizers": 4,
    "worldmodels.planning.mpc": 4,
    "worldmodels.curiosity.normalize": 4,
    "worldmodels.curiosity.rewards": 4,
    "worldmodels.training.sequences": 4,
    "worldmodels.training.distributed": 4,
    "worldmodels.agents": 5,
    # stages
    "worldmodels.collect": 6,
    "worldmodels.training": 6,
    "worldmodels.dream": 6,
    "worldmodels.evaluation": 6,
    "worldmodels.planning": 6,
    "worldmodels.curiosity": 6,
    "worldmodels.report": 6,
    "worldmodels.play": 6,
    "worldmodels.pipeline": 7,
    "worldmodels.api": 7,
    "worldmodels.cli": 8,
    "worldmodels.__main__": 8,
    "worldmodels": 0,  # the package root: only __version__ and the public API re-exports
}
PUBLIC_API = "worldmodels"  # worldmodels/__init__.py may re-export from any layer below the CLI

# Arrows that the layer order alone would allow but that must not exist either.
FORBIDDEN = [
    ("worldmodels.dream", "worldmodels.agents"),  # the dream trains controllers; agents only use them
    ("worldmodels.agents", "worldmodels.dream.cma"),
    ("worldmodels.agents", "worldmodels.dream.sb3"),
]


def module_files() -> dict[str, Path]:
    out = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


def layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported worldmodels module, line, at module top level) for every import in ``path``."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if name.split(".")[0] in ("worldmodels", "envs", "agents"):
                found.append((name, node.lineno, id(node) in top))
    return found


MODULES = module_files()


def resolve(name: str) -> str | None:
    """The project module an imported name refers to (``pkg.mod.attr`` -> ``pkg.mod``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_layers(module):
    seen: set[tuple[str | None, int]] = set()
    problems = []
    for name, line, at_top in imports(MODULES[module]):
        target = resolve(name)
        if (target, line) in seen:
            continue
        seen.add((target, line))
        if name.split(".")[0] in ("envs", "agents"):
            problems.append(f"line {line}: imports top-level {name!r}; use worldmodels.{name}")
            continue
        if target is None or target == module:
            continue
        if not at_top:
            problems.append(f"line {line}: imports {target} inside a function; imports go at the top")
        if module != PUBLIC_API and layer(target) > layer(module):
            problems.append(f"line {line}: {module} (layer {layer(module)}) imports {target} (layer {layer(target)})")
        for source, forbidden in FORBIDDEN:
            if (module + ".").startswith(source + ".") and (target + ".").startswith(forbidden + "."):
                problems.append(f"line {line}: {module} must not import {target}")
    assert not problems, "\n".join(problems)


def test_no_import_cycles_between_modules():
    graph = {m: {resolve(n) for n, _, top in imports(p) if top} - {None, m} for m, p in MODULES.items()}
    graph = {m: {t for t in targets if not (m.startswith(t + ".") and MODULES[t].name == "__init__.py")}
             for m, targets in graph.items()}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_every_subpackage_is_installed_and_nothing_top_level_but_worldmodels():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    installed = set(config["packages"])
    packages = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    assert installed == packages
    assert all(p == "worldmodels" or p.startswith("worldmodels.") for p in installed)
    assert config["package-dir"] == {"worldmodels": "worldmodels", "worldmodels.envs": "envs",
                                     "worldmodels.agents": "agents"}


def test_nothing_in_the_project_links_outside_the_repository():
    texts = [p for p in ROOT.rglob("*") if p.suffix in (".md", ".py", ".toml") and ".venv" not in p.parts
             and ".git" not in p.parts and "runs" not in p.parts]
    offenders = [str(p.relative_to(ROOT)) for p in texts if "../shared" in p.read_text(errors="ignore")
                 and p.name != "test_architecture.py"]
    assert not offenders
