"""The built wheel: every package of the tree, graphwia.cli instead of a top-level ``cli``, py.typed."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]


def declared_packages() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(config["tool"]["setuptools"]["packages"])


def tree_packages() -> set[str]:
    """Every folder of graphwia/ (and cli/, installed as graphwia.cli) with an __init__.py."""
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "graphwia").rglob("__init__.py")}
    return found | {"graphwia.cli"}


def test_every_package_of_the_tree_is_declared():
    assert declared_packages() == tree_packages()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(out)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:  # e.g. no index for an isolated build: build with the installed setuptools
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                str(ROOT),
                "--no-deps",
                "--no-build-isolation",
                "-q",
                "-w",
                str(out),
            ],
            capture_output=True,
            text=True,
        )
    assert done.returncode == 0, f"could not build the wheel: {done.stderr.strip()}"
    return zipfile.ZipFile(next(out.glob("graphwia-*.whl")))


def test_wheel_installs_only_graphwia(wheel):
    top = {name.split("/")[0] for name in wheel.namelist()}
    assert {t for t in top if not t.endswith(".dist-info")} == {"graphwia"}
    assert "graphwia/cli/main.py" in wheel.namelist()
    assert "graphwia/py.typed" in wheel.namelist()


def test_wheel_holds_every_module_of_the_tree(wheel):
    names = set(wheel.namelist())
    sources = [p.relative_to(ROOT).as_posix() for p in (ROOT / "graphwia").rglob("*.py")]
    sources += ["graphwia/cli/" + p.name for p in (ROOT / "cli").glob("*.py")]
    assert [s for s in sources if s not in names] == []


def test_console_script_points_into_the_package(wheel):
    entry_points = next(n for n in wheel.namelist() if n.endswith("entry_points.txt"))
    assert "graphwia = graphwia.cli.main:app" in wheel.read(entry_points).decode()


def module_name(path: Path, root: Path) -> str:
    """``graphwia/trace/__init__.py`` → ``graphwia.trace``; ``graphwia/trace/files.py`` → ``graphwia.trace.files``."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, *, root: Path | None = None, run_time_only: bool = False) -> set[str]:
    """Absolute names one source file imports (relative imports resolved; ``from a import b``
    gives ``a`` and ``a.b``), lazy imports inside functions included; with ``run_time_only``,
    imports under ``if TYPE_CHECKING:`` left out."""
    root = root or ROOT
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped: set[int] = set()
    if run_time_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped.update(id(n) for n in ast.walk(node))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def cli_imports(root: Path) -> list[str]:
    """``file: module`` for every import of the command line (``graphwia.cli`` or ``cli``) under ``root``."""
    return [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted(root.rglob("*.py"))
        for name in sorted(imported_modules(path))
        if name.split(".")[0] == "cli" or name == "graphwia.cli" or name.startswith("graphwia.cli.")
    ]


def test_the_library_never_imports_the_command_line():
    """import-linter sees cli/ as its own package, so it would miss ``graphwia.cli``: checked here."""
    assert cli_imports(ROOT / "graphwia") == []


def test_a_planted_cli_import_is_found(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    module = tmp_path / "graphwia" / "analyses" / "planted.py"
    module.parent.mkdir(parents=True)
    module.write_text("from graphwia.cli.common import State\nfrom ..cli import main\nimport numpy\n")
    assert cli_imports(tmp_path / "graphwia") == [
        "graphwia/analyses/planted.py: graphwia.cli",
        "graphwia/analyses/planted.py: graphwia.cli.common",
        "graphwia/analyses/planted.py: graphwia.cli.common.State",
        "graphwia/analyses/planted.py: graphwia.cli.main",
    ]


def import_cycles(root: Path) -> list[list[str]]:
    """Cycles among the modules under ``root/graphwia`` through run-time imports, lazy ones included.

    A module importing its own parent package (``from graphwia import optypes``) is not an edge:
    a package's ``__init__`` gathers its modules by design.
    """
    import networkx as nx

    modules = {module_name(p, root): p for p in (root / "graphwia").rglob("*.py")}
    graph = nx.DiGraph()
    for name, path in modules.items():
        for target in imported_modules(path, root=root, run_time_only=True):
            if target in modules and target != name and not name.startswith(target + "."):
                graph.add_edge(name, target)
    return sorted(sorted(cycle) for cycle in nx.simple_cycles(graph))


def test_no_import_cycles():
    """The data path runs one way inside a layer too: no module reaches back, not even lazily."""
    assert import_cycles(ROOT) == []


def test_a_planted_lazy_cycle_is_found(tmp_path):
    package = tmp_path / "graphwia" / "model"
    package.mkdir(parents=True)
    (tmp_path / "graphwia" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "dag.py").write_text("def view():\n    from graphwia.model.graph import draw\n")
    (package / "graph.py").write_text(
        "from typing import TYPE_CHECKING\nfrom .weights import w\nif TYPE_CHECKING:\n    from .dag import Dag\n"
    )
    (package / "weights.py").write_text("from graphwia.model.dag import view\n")
    assert import_cycles(tmp_path) == [["graphwia.model.dag", "graphwia.model.graph", "graphwia.model.weights"]]
    (package / "weights.py").write_text("")
    assert import_cycles(tmp_path) == []
