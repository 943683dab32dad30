"""Jobs without the optional tail ops, and with a plain DP all-reduce: known answers (SPEC §2.1.8).

Real traces (PyTorch profiler imports) often have no gc, layernorm or embedding all-reduce and no
clip, and reduce gradients with one all-reduce recorded as grads-reduce-scatter. The tail edges
then pass over the absent ops: the first tail op present depends on the last-ending compute
(gc's edge), and with overlapped DP the first one after gc on the last reduce-scatter
(layernorm's edge). The numbers below are worked out by hand.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from graphwia.analyses.standard import analyze
from graphwia.model.schedule import EDGE_KINDS, infer_schedule
from graphwia.trace.optable import Trace


def trace_of(rows: list[tuple], dp: int, pp: int = 1) -> Trace:
    """rows: (dp_rank, stage, optype, start, end[, seq_id, mc]) of one step."""
    frame = pd.DataFrame(
        [
            {
                "dp_rank": r[0],
                "stage": r[1],
                "rank": r[1] * dp + r[0],
                "step": 0,
                "optype": r[2],
                "start_ts": r[3],
                "duration": r[4] - r[3],
                "seq_id": r[5] if len(r) > 5 else 0,
                "mc": r[6] if len(r) > 6 else 0,
                "gmc": r[1],
                "mb_id": 0,
            }
            for r in rows
        ]
    )
    meta = {
        "trial_name": "t",
        "run_id": 0,
        "dp_size": dp,
        "pp_size": pp,
        "tp_size": 1,
        "dsp_size": 1,
        "vpp_size": 1,
        "world_size": dp * pp,
    }
    return Trace.from_frame(frame, meta)


def edges(trace: Trace, stage: int = 0) -> set[tuple[str, str, str]]:
    template = infer_schedule(trace).stages[stage]
    names = template.ops.labels("optype")
    return {(names[s], names[d], EDGE_KINDS[k]) for s, d, k in template.edges.tolist()}


def test_plain_dp_all_reduce_without_gc_layernorm_clip():
    """dp 2, pp 1: F, B, the DP all-reduce (as grads-reduce-scatter), optimizer; worker 1's B is slow.

    Observed: both F [0, 1]; B [1, 3] and [1, 5]; all-reduce ends at 6.5 on both (transfer
    6.5 − 5 = 1.5); optimizer [6.5, 7]. Ideal: B = mean 3, so the all-reduce starts at 4 on both
    and ends at 5.5, the optimizer at 6: S = 7 / 6. Without the edge B → all-reduce the
    all-reduce would float to the step start and S would be 7 / 2.
    """
    trace = trace_of(
        [
            (0, 0, "forward-compute", 0, 1),
            (0, 0, "backward-compute", 1, 3),
            (0, 0, "grads-reduce-scatter", 3, 6.5),
            (0, 0, "optimizer", 6.5, 7),
            (1, 0, "forward-compute", 0, 1),
            (1, 0, "backward-compute", 1, 5),
            (1, 0, "grads-reduce-scatter", 5, 6.5),
            (1, 0, "optimizer", 6.5, 7),
        ],
        dp=2,
    )
    assert edges(trace) == {
        ("forward-compute", "backward-compute", "compute-stream"),
        ("backward-compute", "grads-reduce-scatter", "tail"),
        ("grads-reduce-scatter", "optimizer", "tail"),
    }
    result = analyze(trace)
    assert math.isclose(result.step_time_observed[0], 7.0)
    assert math.isclose(result.slowdown, 7 / 6)
    assert math.isclose(result.blocking["dp_rank"].overall[1], 7 / 6)
    assert math.isclose(result.blocking["dp_rank"].overall[0], 1.0)


def test_only_the_optimizer_left_in_the_tail():
    """pp 2, dp 1, one microbatch: stage 0 F [0, 1] → send [1, 1.2] ... the optimizer of each stage
    follows that stage's last-ending compute; S = 1 with nothing slow, and the base simulation
    reproduces the observed step time 4.2."""
    rows = [
        (0, 0, "forward-compute", 0, 1),
        (0, 0, "forward-send", 1, 1.2),
        (0, 1, "forward-recv", 0.1, 1.2),
        (0, 1, "forward-compute", 1.2, 2.2),
        (0, 1, "backward-compute", 2.2, 3),
        (0, 1, "backward-send", 3, 3.2),
        (0, 0, "backward-recv", 1.2, 3.2),
        (0, 0, "backward-compute", 3.2, 4),
        (0, 0, "optimizer", 4, 4.2),
        (0, 1, "optimizer", 3.2, 3.4),
    ]
    trace = trace_of(rows, dp=1, pp=2)
    assert ("backward-compute", "optimizer", "tail") in edges(trace, 0)
    assert ("backward-compute", "optimizer", "tail") in edges(trace, 1)
    result = analyze(trace)
    assert math.isclose(result.step_time_observed[0], 4.2)
    assert math.isclose(result.slowdown, 1.0)


def test_overlapped_dp_without_gc_and_layernorm():
    """With separate-grads-all-reduce (overlapped DP), the op after the absent gc and layernorm
    depends on both the last compute and the last reduce-scatter."""
    rows = []
    for d in range(2):
        rows += [
            (d, 0, "params-all-gather", 0, 0.5),
            (d, 0, "forward-compute", 0.5, 1.5),
            (d, 0, "backward-compute", 1.5, 3.5),
            (d, 0, "grads-reduce-scatter", 3.5, 4.5),
            (d, 0, "separate-grads-all-reduce", 4.5, 5),
            (d, 0, "optimizer", 5, 5.5),
        ]
    trace = trace_of(rows, dp=2)
    got = edges(trace)
    assert ("backward-compute", "separate-grads-all-reduce", "tail") in got
    assert ("grads-reduce-scatter", "separate-grads-all-reduce", "tail") in got
    assert ("backward-compute", "grads-reduce-scatter", "grads-after-use") in got
    assert ("separate-grads-all-reduce", "optimizer", "tail") in got
    result = analyze(trace)
    assert math.isclose(result.step_time_observed[0], 5.5)
    assert math.isclose(result.slowdown, 1.0)


@pytest.mark.parametrize("missing", ["gc", "layernorm-grads-all-reduce", "optimizer-clip-main-grad"])
def test_each_optional_op_may_be_missing(missing):
    """One optional op absent from a full tail: its predecessor and successor are joined."""
    tail = ["gc", "layernorm-grads-all-reduce", "optimizer-clip-main-grad", "optimizer"]
    rows = [(0, 0, "forward-compute", 0, 1), (0, 0, "backward-compute", 1, 2)]
    t = 2.0
    for optype in tail:
        if optype != missing:
            rows.append((0, 0, optype, t, t + 0.25))
            t += 0.25
    trace = trace_of(rows, dp=1)
    present = ["backward-compute"] + [o for o in tail if o != missing]
    chain = set(zip(present[:-1], present[1:]))
    assert {(s, d) for s, d, k in edges(trace) if k == "tail"} == chain
    assert math.isclose(analyze(trace).step_time_observed[0], t)
