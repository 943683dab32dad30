"""graphwia.record's naming convention, and the recorded Kineto fixtures (issue 12).

Everything here runs without torch: the fixtures are read with json + gzip only. The one test
that opens a real ``record_function`` range is skipped where torch is absent (the test venv).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from graphwia.optypes import ALL_OPTYPES
from graphwia.record import MICROBATCH_OPTYPES, op_name, parse_op_name, record_op

KINETO = Path(__file__).parent / "data" / "kineto"
PP, DP, MICROBATCHES = 2, 2, 4
SLOW_RANK = 3
RECORDED_STEPS = {"annotated": [2, 3, 4, 5], "stack": [2, 3]}


# -- the naming convention ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("optype", "mb", "chunk", "name"),
    [
        ("optimizer", None, None, "optimizer"),
        ("grads-reduce-scatter", None, None, "grads-reduce-scatter"),
        ("forward-compute", 3, None, "forward-compute mb=3"),
        ("backward-recv", 2, 1, "backward-recv mb=2 chunk=1"),
        ("params-all-gather", None, 1, "params-all-gather chunk=1"),
    ],
)
def test_op_name(optype, mb, chunk, name):
    assert op_name(optype, mb=mb, chunk=chunk) == name
    assert parse_op_name(name) == (optype, mb, chunk)


@pytest.mark.parametrize(
    ("optype", "fields", "message"),
    [
        ("forward", {}, "unknown optype 'forward'; expected one of: forward-compute"),
        ("Optimizer", {}, "unknown optype 'Optimizer'"),
        ("optimizer", {"mb": 0}, "optimizer does not belong to a microbatch, so it takes no mb (got mb=0)"),
        ("forward-send", {"mb": -1}, "mb must be a non-negative integer, got -1"),
        ("forward-send", {"mb": True}, "mb must be a non-negative integer, got True"),
        ("forward-send", {"chunk": 1.0}, "chunk must be a non-negative integer, got 1.0"),
        ("forward-send", {"chunk": "1"}, "chunk must be a non-negative integer, got '1'"),
    ],
)
def test_op_name_rejects(optype, fields, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        op_name(optype, **fields)


def test_every_name_round_trips():
    for optype in ALL_OPTYPES:
        for mb in (None, 0, 12) if optype in MICROBATCH_OPTYPES else (None,):
            for chunk in (None, 0, 3):
                assert parse_op_name(op_name(optype, mb=mb, chunk=chunk)) == (optype, mb, chunk)


@pytest.mark.parametrize(
    "name",
    [
        "ProfilerStep#2",
        "Optimizer.step#SGD.step",
        "gloo:send",
        "forward",
        "optimizer state offload",
        "forward-compute mb=03",
        "forward-compute chunk=1 mb=2",
        "forward-compute mb=1 mb=2",
        "forward-compute mb=",
        "forward-compute mb=-1",
        "forward-compute mb=²",
        "forward-compute  mb=1",
        "optimizer mb=1",
        "forward-compute ",
    ],
)
def test_parse_op_name_takes_only_op_names(name):
    assert parse_op_name(name) is None


def test_import_does_not_import_torch():
    code = "import sys, graphwia.record; assert 'torch' not in sys.modules, 'graphwia.record imported torch'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_record_op_validates_before_importing_torch():
    with pytest.raises(ValueError, match="unknown optype 'fwd'"):
        with record_op("fwd"):
            pass


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed")
def test_record_op_without_torch_says_what_to_install():
    with pytest.raises(ModuleNotFoundError, match=re.escape("pip install 'graphwia[record]'")):
        with record_op("optimizer"):
            pass


def test_record_op_opens_a_profiler_range():
    torch = pytest.importorskip("torch")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with record_op("backward-send", mb=1, chunk=0):
            torch.ones(2).sum()
    names = [event.name for event in prof.events()]
    assert "backward-send mb=1 chunk=0" in names


# -- the recorded fixtures ------------------------------------------------------------------


def load(kind: str, rank: int) -> dict:
    with gzip.open(KINETO / kind / f"rank{rank}.json.gz", "rt") as f:
        return json.load(f)


def step_ranges(trace: dict) -> dict[int, tuple[float, float]]:
    """Step number → (start, end) of its ``ProfilerStep#N`` range, in µs."""
    return {
        int(e["name"].removeprefix("ProfilerStep#")): (e["ts"], e["ts"] + e["dur"])
        for e in trace["traceEvents"]
        if e.get("name", "").startswith("ProfilerStep#")
    }


def ops(trace: dict) -> list[tuple[int, str, int | None, float]]:
    """``(step, optype, mb, duration in µs)`` of every graphwia range, the step being the one around it."""
    steps = step_ranges(trace)
    found = []
    for e in trace["traceEvents"]:
        parsed = parse_op_name(e.get("name", ""))
        if parsed is None:
            continue
        assert e["ph"] == "X" and e["cat"] == "user_annotation" and e["tid"] == e["pid"], e
        (step,) = [n for n, (start, end) in steps.items() if start <= e["ts"] and e["ts"] + e["dur"] <= end]
        found.append((step, parsed[0], parsed[1], e["dur"]))
    return found


@pytest.mark.parametrize("kind", sorted(RECORDED_STEPS))
@pytest.mark.parametrize("rank", range(PP * DP))
def test_fixture_header(kind, rank):
    trace = load(kind, rank)
    info = trace["distributedInfo"]
    assert (info["backend"], info["rank"], info["world_size"]) == ("gloo", rank, PP * DP)
    stage, dp_rank = divmod(rank, DP)
    groups = {g["pg_desc"]: g["ranks"] for g in info["pg_config"]}
    assert groups == {
        "default_pg": [0, 1, 2, 3],
        "DATA_PARALLEL_GROUP": [stage * DP + d for d in range(DP)],
        "PIPELINE_MODEL_PARALLEL_GROUP": [s * DP + dp_rank for s in range(PP)],
    }
    assert sorted(step_ranges(trace)) == RECORDED_STEPS[kind]
    assert ("with_stack" in trace) == (kind == "stack")


@pytest.mark.parametrize("rank", range(PP * DP))
def test_annotated_fixture_has_every_op_of_1f1b(rank):
    stage = rank // DP
    p2p = ("forward-send", "backward-recv") if stage == 0 else ("forward-recv", "backward-send")
    per_microbatch = ("forward-compute", "backward-compute", *p2p)
    expected = Counter(
        {
            (step, optype, mb): 1
            for step in RECORDED_STEPS["annotated"]
            for optype in per_microbatch
            for mb in range(MICROBATCHES)
        }
    )
    expected.update(
        {
            (step, optype, None): 1
            for step in RECORDED_STEPS["annotated"]
            for optype in ("grads-reduce-scatter", "optimizer-clip-main-grad", "optimizer")
        }
    )
    assert Counter(op[:3] for op in ops(load("annotated", rank))) == expected


def test_annotated_fixture_has_the_straggler():
    """Rank 3 (dp_rank 1, stage 1) computes ~40 ms longer than the others (~5 ms)."""
    median_ms = {
        rank: statistics.median(
            dur for _, optype, _, dur in ops(load("annotated", rank)) if optype.endswith("-compute")
        )
        / 1000
        for rank in range(PP * DP)
    }
    assert median_ms[SLOW_RANK] > 40
    assert all(5 <= ms < 15 for rank, ms in median_ms.items() if rank != SLOW_RANK), median_ms


@pytest.mark.parametrize("rank", range(PP * DP))
def test_stack_fixture_has_python_stacks_and_no_annotation(rank):
    trace = load("stack", rank)
    assert ops(trace) == []
    names = Counter(e["name"] for e in trace["traceEvents"] if e.get("cat") == "python_function")
    steps = len(RECORDED_STEPS["stack"])
    assert names["nn.Module: Sequential_0"] == steps * MICROBATCHES  # one forward per microbatch
    backward = sum(
        n for name, n in names.items() if name.startswith("torch/_tensor.py(") and name.endswith("): backward")
    )
    assert backward == steps * MICROBATCHES  # Tensor.backward, once per microbatch
