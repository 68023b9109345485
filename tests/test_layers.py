"""Layers only point down (docs/design.md, "Map"): every import of every module, function-level
ones included, read with `ast` (nothing is imported, so an import hidden in a function or behind
`try` counts exactly like one at the top of the file).

The layers, bottom first; a package may import only packages below it:
    board:  tpu_driver < kv_window < runtime < keyboard_ui < board_tests.onboard
    host:   measure < model_export < firmware < board_tests (the harness)
Hence: no import cycle between packages, no board package imports a host-only one, and tpu_driver
imports no other package of ours. Inside a package no two modules import each other either.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# bottom first; `board_tests.onboard` ships to the board, the rest of `board_tests` does not
LAYERS = ("tpu_driver", "kv_window", "runtime", "keyboard_ui", "board_tests.onboard",
          "measure", "model_export", "firmware", "board_tests")
BOARD_PACKAGES = frozenset(LAYERS[:5])
HOST_PACKAGES = frozenset(LAYERS[5:])
TOP_LEVEL = frozenset(name.split(".")[0] for name in LAYERS)


def package_of(module: str) -> str | None:
    """The layer a dotted module name belongs to (None: not ours, e.g. numpy)."""
    parts = module.split(".")
    if parts[0] not in TOP_LEVEL:
        return None
    if parts[:2] == ["board_tests", "onboard"]:
        return "board_tests.onboard"
    return parts[0]


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path = REPO, modules_too: bool = False) -> list[tuple[str, int]]:
    """(imported dotted name, line) for every import in the file: module level, inside functions,
    classes, `try` and `if` blocks, relative ones resolved, and `importlib.import_module("x")`
    with a literal name. `from a import b` yields `a.b` (b may be a module: `from board_tests
    import onboard` is board_tests.onboard); with `modules_too` also `a` itself."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module_name(path, root).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[:len(package) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [alias.name for alias in node.names if alias.name != "*"]
            if base and (modules_too or not names):
                found.append((base, node.lineno))
            found += [(f"{base}.{name}" if base else name, node.lineno) for name in names]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) or getattr(node.func, "id", None)) == "import_module"):
            found.append((node.args[0].value, node.lineno))
    return found


def our_modules(root: Path = REPO) -> dict[str, Path]:
    modules = {}
    for top in sorted(TOP_LEVEL):
        for path in sorted((root / top).rglob("*.py")):
            modules[module_name(path, root)] = path
    return modules


def import_edges(root: Path = REPO) -> list[tuple[str, str, str, int]]:
    """(from package, to package, 'file:line', imported name) for every import between packages."""
    edges = []
    for module, path in our_modules(root).items():
        source = package_of(module)
        for name, line in imports_of(path, root):
            target = package_of(name)
            if target is not None and target != source:
                edges.append((source, target, f"{path.relative_to(root)}:{line}", name))
    return edges


def layer_violations(root: Path = REPO) -> list[str]:
    rank = {name: i for i, name in enumerate(LAYERS)}
    bad = {}
    for source, target, where, name in import_edges(root):
        if (where, target) in bad:  # `from a import b, c`: one line per statement and package
            continue
        if source in BOARD_PACKAGES and target in HOST_PACKAGES:
            bad[where, target] = f"{where}: board package {source} imports host-only {name}"
        elif source == "tpu_driver":
            bad[where, target] = f"{where}: tpu_driver (the bottom layer) imports {name}"
        elif rank[target] > rank[source]:
            bad[where, target] = f"{where}: {source} imports {name}, a layer above it"
    return list(bad.values())


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index, low, on_stack, stack, result, counter = {}, {}, set(), [], [], [0]
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    result.append(sorted(component))
    return result


def package_cycles(root: Path = REPO) -> list[list[str]]:
    graph = {name: set() for name in LAYERS}
    for source, target, _where, _name in import_edges(root):
        graph[source].add(target)
    return cycles(graph)


def module_cycles(root: Path = REPO) -> list[list[str]]:
    modules = our_modules(root)
    graph = {module: set() for module in modules}
    for module, path in modules.items():
        for name, _line in imports_of(path, root, modules_too=True):
            # `import a.b.c` also runs a and a.b: only the named module is the edge that matters
            if name in modules and name != module and not module.startswith(name + "."):
                graph[module].add(name)
    return cycles(graph)


# ---------------------------------------------------------------------------------------------
# the tree as it is

def test_no_import_points_up_and_tpu_driver_imports_nothing_of_ours():
    assert layer_violations() == []


def test_no_import_cycle_between_packages():
    assert package_cycles() == []


# A cycle listed here is a known defect with an owner, not an allowed design: the test below fails
# as soon as it is gone (remove the entry then) and on every other cycle.
KNOWN_MODULE_CYCLES: set = set()


def test_no_import_cycle_between_modules():
    found = {tuple(cycle) for cycle in module_cycles()}
    assert found - KNOWN_MODULE_CYCLES == set()
    assert KNOWN_MODULE_CYCLES - found == set(), "a known cycle is fixed: remove it from KNOWN_MODULE_CYCLES"


def test_every_top_level_package_has_a_layer():
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")}
    assert packages == set(TOP_LEVEL), "add the new package to LAYERS and to docs/design.md's map"


def test_pyproject_installs_every_package():
    """A package folder missing from pyproject's list is absent from an installed edgetype."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {module_name(p) for top in TOP_LEVEL for p in (REPO / top).rglob("__init__.py")}
    assert folders - listed == set()


def test_the_cli_offers_host_commands_only_as_optional_modules():
    """runtime/cli.py (a board module) loads the host packages' commands by name, when present:
    every host-package module it names must be in HOST_ONLY_MODULES, and only those."""
    from runtime import cli

    host = {m for m in cli._SUBCOMMAND_MODULES if package_of(m) in HOST_PACKAGES}
    assert host == set(cli.HOST_ONLY_MODULES)


def test_design_doc_map_names_every_layer_in_order():
    text = (REPO / "docs" / "design.md").read_text(encoding="utf-8")
    head = text[:text.index("\n## ", text.index("## Map") + 1)]
    positions = [head.find(f"`{name.replace('.', '/')}/`") for name in LAYERS]
    assert -1 not in positions, "docs/design.md's map must name every folder of LAYERS"
    assert positions == sorted(positions), "docs/design.md's map lists the layers bottom first"


# ---------------------------------------------------------------------------------------------
# the checker itself, on small trees: each rule must fail on its bug

def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for top in TOP_LEVEL:
        (tmp_path / top).mkdir(exist_ok=True)
        (tmp_path / top / "__init__.py").touch()
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize("files, expected", [
    ({"tpu_driver/x.py": "def f():\n    from runtime.errors import UserError\n"}, "tpu_driver (the bottom layer)"),
    ({"kv_window/x.py": "import measure.evaluate\n"}, "board package kv_window imports host-only"),
    ({"board_tests/onboard/t.py": "def f():\n    from board_tests import cli, onboard\n"},
     "board package board_tests.onboard imports host-only board_tests.cli"),
    ({"runtime/x.py": "try:\n    import keyboard_ui.app\nexcept ImportError:\n    pass\n"}, "above it"),
    ({"measure/x.py": "import importlib\nimportlib.import_module('model_export.toolchain')\n"}, "above it"),
])
def test_checker_catches_an_upward_import_wherever_it_hides(tmp_path, files, expected):
    bad = layer_violations(_tree(tmp_path, files))
    assert len(bad) == 1 and expected in bad[0], bad


def test_checker_catches_cycles(tmp_path):
    root = _tree(tmp_path, {"measure/a.py": "def f():\n    from measure import b\n",
                            "measure/b.py": "from measure.a import f\n",
                            "model_export/x.py": "import firmware.y\n",
                            "firmware/y.py": "def g():\n    import model_export.x\n"})
    assert sorted(module_cycles(root)) == [["firmware.y", "model_export.x"], ["measure.a", "measure.b"]]
    assert package_cycles(root) == [["firmware", "model_export"]]


def test_checker_allows_downward_and_relative_imports(tmp_path):
    root = _tree(tmp_path, {"runtime/x.py": "from . import y\nfrom tpu_driver.errors import UserError\n",
                            "runtime/y.py": "import numpy\n",
                            "board_tests/cli.py": "from board_tests.onboard import runner\nimport model_export\n"})
    assert layer_violations(root) == [] and package_cycles(root) == [] and module_cycles(root) == []
