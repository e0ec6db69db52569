"""The runtime package (plugins/clever, what Airflow loads) and the dev kit beside it
(devkit/clever_devkit): the runtime never imports the dev kit, and neither package has an
import cycle, not even one hidden by imports inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

from clever.paths import DEVKIT_DIR, PLUGINS_DIR

PACKAGES = {"clever": PLUGINS_DIR / "clever", "clever_devkit": DEVKIT_DIR / "clever_devkit"}


def imports_of(path: Path) -> set[str]:
    """Every project module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            if node.module in PACKAGES:  # from clever import pipeline
                found |= {f"{node.module}.{alias.name}" for alias in node.names}
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] in PACKAGES}
    return found


def import_graph() -> dict[str, set[str]]:
    return {f"{package}.{path.stem}": imports_of(path)
            for package, folder in PACKAGES.items() for path in sorted(folder.glob("*.py"))}


def test_the_runtime_never_imports_the_dev_kit():
    offenders = {module: sorted(i for i in imports if i.startswith("clever_devkit"))
                 for module, imports in import_graph().items() if module.startswith("clever.")}
    assert {m: i for m, i in offenders.items() if i} == {}


def test_no_import_cycles():
    graph = import_graph()
    cycles, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_plugins_folder_holds_only_the_runtime():
    python_files = {p.relative_to(PLUGINS_DIR).parts[0] for p in PLUGINS_DIR.rglob("*.py")}
    assert python_files == {"clever"}
    assert not (PLUGINS_DIR / "clever" / "sample_data").exists()


def test_the_cycle_check_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from clever_devkit.simulator import Page\n    from clever import pipeline\n")
    assert imports_of(module) == {"clever_devkit.simulator", "clever.pipeline"}
