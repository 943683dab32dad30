"""Shared fixtures: the published data (skipped with a reason when absent) and cached analyses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TRACES = ("ST", "AR", "SE")
NO_DATA = f"published traces not found at {DATA} (clone graphwia beside shared/ to run these tests)"

_cache: dict = {}


def has_data() -> bool:
    return (DATA / "trace-ST.parquet").is_file()


requires_data = pytest.mark.skipif(not has_data(), reason=NO_DATA)


def published(kind: str, name: str) -> dict:
    """A published expected output, e.g. published("result", "AR")."""
    return json.loads((DATA / f"{kind}-{name}.json").read_text())


def real_trace(name: str):
    """The loaded real trace ``name`` (cached for the session)."""
    from graphwia import load_trace

    key = ("trace", name)
    if key not in _cache:
        _cache[key] = load_trace(DATA / f"trace-{name}.parquet", DATA / f"meta-{name}.yaml")
    return _cache[key]


def real_analysis(name: str):
    """The full analysis of real trace ``name`` (cached for the session)."""
    from graphwia import analyze

    key = ("analysis", name)
    if key not in _cache:
        _cache[key] = analyze(real_trace(name))
    return _cache[key]


@pytest.fixture(params=TRACES)
def trace_name(request):
    if not has_data():
        pytest.skip(NO_DATA)
    return request.param
