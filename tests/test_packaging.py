"""The built wheel: every package of the tree, graphwia.cli instead of a top-level ``cli``, py.typed."""

from __future__ import annotations

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
    if done.returncode != 0:
        pytest.skip(f"could not build the wheel here: {done.stderr.strip().splitlines()[-1:]}")
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
