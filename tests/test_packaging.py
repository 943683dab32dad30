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


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules one source file imports (relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
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
