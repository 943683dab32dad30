"""The engine on tiny hand-written traces whose times are worked out by hand.

Job A: pp = 2, dp = 2, 2 microbatches, 1F1B, non-overlapped DP, one step.
Every op has its typical duration (forward 1, backward 2, tail and DP ops
0.5, optimizer 1, p2p transfer 0) except stage 1's first forward on dp_rank 1,
which takes 2. The observed times below are the SPEC §4 simulation with zero
launch delays, derived by hand edge by edge (see the comments).

Job B: pp = 1, dp = 1, two steps, no DP: a single chain per step.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import graphwia
from graphwia import UsageError
from graphwia.model.schedule import KIND_CODE
from graphwia.optypes import ALL_OPTYPES
from graphwia.outputs.results import result_dict

F, B = "forward-compute", "backward-compute"
FS, FR, BS, BR = "forward-send", "forward-recv", "backward-send", "backward-recv"
PAG, RS = "params-all-gather", "grads-reduce-scatter"
GC, LN, EMB, CLIP, OPT = (
    "gc",
    "layernorm-grads-all-reduce",
    "embedding-grads-all-reduce",
    "optimizer-clip-main-grad",
    "optimizer",
)

# (stage, optype, seq_id, start, end) per dp_rank. dp_rank 1 differs from dp_rank 0
# from stage 1's slow F0 (1.5-3.5) onwards; the DP collectives and the clip
# barrier then hold dp_rank 0 back to dp_rank 1's pace.
TIMES = {
    0: [
        (0, PAG, 0, 0.0, 0.5),  # no predecessor; DP group transfer 0.5
        (0, F, 0, 0.5, 1.5),  # after its params all-gather
        (0, FS, 0, 1.5, 1.5),  # pairs with stage 1 FR0 (started at 0): ends at 1.5
        (0, F, 1, 1.5, 2.5),
        (0, FS, 1, 2.5, 2.5),  # stage 1 FR1 starts at 2.5
        (0, BR, 0, 1.5, 4.5),  # first-backward rule: after F0; pairs with stage 1 BS0 (starts 4.5)
        (0, B, 0, 4.5, 6.5),
        (0, BR, 1, 6.5, 7.5),  # after B0; pairs with BS1 (starts 7.5)
        (0, B, 1, 7.5, 9.5),
        (0, GC, 0, 9.5, 10.0),
        (0, LN, 0, 10.0, 10.5),
        (0, EMB, 0, 10.5, 11.0),  # pairs with stage 1 EMB (started 8.5): 10.5 + 0.5
        (0, RS, 0, 11.0, 12.5),  # DP group: latest start 12.0 (dp_rank 1) + 0.5
        (0, CLIP, 0, 12.5, 13.0),  # global barrier: everyone starts 12.5
        (0, OPT, 0, 13.0, 14.0),
        (1, PAG, 0, 0.0, 0.5),
        (1, FR, 0, 0.0, 1.5),  # no predecessor: waits for stage 0 FS0
        (1, F, 0, 1.5, 2.5),
        (1, FR, 1, 2.5, 2.5),  # after F0
        (1, B, 0, 2.5, 4.5),
        (1, BS, 0, 4.5, 4.5),
        (1, F, 1, 4.5, 5.5),
        (1, B, 1, 5.5, 7.5),
        (1, BS, 1, 7.5, 7.5),
        (1, GC, 0, 7.5, 8.0),
        (1, LN, 0, 8.0, 8.5),
        (1, EMB, 0, 8.5, 11.0),
        (1, RS, 0, 11.0, 12.5),
        (1, CLIP, 0, 12.5, 13.0),
        (1, OPT, 0, 13.0, 14.0),
    ],
    1: [
        (0, PAG, 0, 0.0, 0.5),
        (0, F, 0, 0.5, 1.5),
        (0, FS, 0, 1.5, 1.5),
        (0, F, 1, 1.5, 2.5),
        (0, FS, 1, 2.5, 3.5),  # stage 1 FR1 starts only at 3.5 (after the slow F0)
        (0, BR, 0, 1.5, 5.5),
        (0, B, 0, 5.5, 7.5),
        (0, BR, 1, 7.5, 8.5),
        (0, B, 1, 8.5, 10.5),
        (0, GC, 0, 10.5, 11.0),
        (0, LN, 0, 11.0, 11.5),
        (0, EMB, 0, 11.5, 12.0),
        (0, RS, 0, 12.0, 12.5),
        (0, CLIP, 0, 12.5, 13.0),
        (0, OPT, 0, 13.0, 14.0),
        (1, PAG, 0, 0.0, 0.5),
        (1, FR, 0, 0.0, 1.5),
        (1, F, 0, 1.5, 3.5),  # the straggler: 2 instead of 1
        (1, FR, 1, 3.5, 3.5),
        (1, B, 0, 3.5, 5.5),
        (1, BS, 0, 5.5, 5.5),
        (1, F, 1, 5.5, 6.5),
        (1, B, 1, 6.5, 8.5),
        (1, BS, 1, 8.5, 8.5),
        (1, GC, 0, 8.5, 9.0),
        (1, LN, 0, 9.0, 9.5),
        (1, EMB, 0, 9.5, 12.0),
        (1, RS, 0, 12.0, 12.5),
        (1, CLIP, 0, 12.5, 13.0),
        (1, OPT, 0, 13.0, 14.0),
    ],
}

# The ideal: forward compute takes its mean 9/8 = 1.125 everywhere, every other
# weight is already typical. Derived by hand with the same edges as above.
IDEAL_STAGE0 = {
    (F, 0): (0.5, 1.625),
    (F, 1): (1.625, 2.75),
    (B, 0): (4.75, 6.75),
    (B, 1): (7.875, 9.875),
    (EMB, 0): (10.875, 11.375),
    (RS, 0): (11.375, 11.875),
    (OPT, 0): (12.375, 13.375),
}
IDEAL_STEP_TIME = 13.375


def frame(times: dict, step: int = 7, epoch: float = 0.0, dtype=np.float64) -> pd.DataFrame:
    rows = []
    for dp_rank, ops in times.items():
        for stage, optype, seq, start, end in ops:
            compute = optype in (F, B)
            rows.append(
                {
                    "dp_rank": dp_rank,
                    "stage": stage,
                    "rank": dp_rank * 2 + stage,
                    "step": step,
                    "optype": optype,
                    "start_ts": epoch + start,
                    "duration": end - start,
                    "seq_id": seq,
                    "mc": 0 if compute or optype in (PAG, RS) else -1,
                    "gmc": stage if compute else -1,
                    "mb_id": seq if compute else -1,
                }
            )
    df = pd.DataFrame(rows)
    df["start_ts"] = df["start_ts"].astype(dtype)
    df["duration"] = df["duration"].astype(dtype)
    return df


META_A = {
    "trial_name": "A",
    "run_id": 0,
    "dp_size": 2,
    "pp_size": 2,
    "tp_size": 1,
    "dsp_size": 1,
    "vpp_size": 1,
    "world_size": 4,
}


@pytest.fixture(scope="module")
def job_a():
    return graphwia.Trace.from_frame(frame(TIMES), META_A)


def op_index(dag, dp_rank, stage, optype, seq):
    ops = dag.ops
    hit = ops.index[(ops.dp_rank == dp_rank) & (ops.stage == stage) & (ops.optype == optype) & (ops.seq_id == seq)]
    assert len(hit) == 1
    return int(hit[0])


def test_dag_has_the_hand_derived_edges(job_a):
    dag = graphwia.build_dag(job_a)
    edges = dag.edges.to_pandas()
    intra = edges[edges.via >= 0]
    pairs = {(int(v), int(d), k) for v, d, k in zip(intra.via, intra.dst, intra.kind)}

    def has(src, dst, kind, dp_rank=0):
        u = op_index(dag, dp_rank, *src)
        v = op_index(dag, dp_rank, *dst)
        return (u, v, kind) in pairs

    assert has((0, F, 0), (0, F, 1), "compute-stream")
    assert has((1, B, 0), (1, F, 1), "compute-stream")
    assert has((0, F, 0), (0, FS, 0), "p2p-match")
    assert has((1, FR, 1), (1, F, 1), "p2p-match")
    assert has((1, F, 0), (1, FR, 1), "p2p-match")
    assert has((0, F, 0), (0, BR, 0), "first-backward-p2p")
    assert has((0, PAG, 0), (0, F, 0), "params-before-use")
    assert has((0, PAG, 0), (0, RS, 0), "dp-stream")
    assert has((0, B, 1), (0, GC, 0), "tail")
    assert has((0, EMB, 0), (0, RS, 0), "tail")
    assert has((0, RS, 0), (0, CLIP, 0), "tail")
    # Groups: 2 fwd + 2 bwd p2p pairs and 1 embedding pair per dp_rank; PAG and RS per stage; one clip.
    kinds = dag.barriers["kind"].value_counts()
    assert kinds["p2p-pair"] == 8 and kinds["embedding"] == 2 and kinds["dp-collective"] == 4 and kinds["clip"] == 1
    assert dag.barriers.loc[dag.barriers.kind == "clip", "size"].item() == 4


def test_observed_weights_are_transfer_times_and_zero_delays(job_a):
    dag = graphwia.build_dag(job_a)
    w = graphwia.observed_weights(dag)
    assert np.allclose(w.delay, 0.0)
    assert w.weight[op_index(dag, 0, 0, FS, 0)] == 0.0  # p2p transfer 0
    assert w.weight[op_index(dag, 0, 1, EMB, 0)] == 0.5  # 11.0 - max(10.5, 8.5)
    assert w.weight[op_index(dag, 0, 0, RS, 0)] == 0.5  # 12.5 - 12.0
    assert w.weight[op_index(dag, 1, 1, F, 0)] == 2.0  # local: its duration
    typical = graphwia.typical_weights(dag, w)
    assert typical[F] == pytest.approx(9 / 8)
    assert typical[FS] == 0.0 and typical[CLIP] == 0.5


def test_base_simulation_reproduces_every_hand_derived_time(job_a):
    dag = graphwia.build_dag(job_a)
    w = graphwia.observed_weights(dag)
    sim = dag.compile().evaluate(w.weight, w.delay)
    assert np.allclose(sim.start[:, 0], dag.ops["start"])
    assert np.allclose(sim.end[:, 0], dag.ops["end"])
    assert sim.step_time[0, 0] == pytest.approx(14.0)


def test_ideal_simulation_matches_hand_derivation(job_a):
    analysis = graphwia.analyze(job_a)
    ideal = analysis.simulations["ideal"]
    for (optype, seq), (start, end) in IDEAL_STAGE0.items():
        i = op_index(analysis.dag, 0, 0, optype, seq)
        assert ideal.start[i, 0] == pytest.approx(start)
        assert ideal.end[i, 0] == pytest.approx(end)
    assert ideal.step_time[0, 0] == pytest.approx(IDEAL_STEP_TIME)
    assert analysis.slowdown == pytest.approx(14.0 / IDEAL_STEP_TIME)
    assert analysis.launch_slowdown == pytest.approx(1.0)
    assert list(analysis.steps) == [7] and analysis.step_time_ideal == pytest.approx([IDEAL_STEP_TIME])
    # Only the slow forward deviates: giving forward compute back its weights is all of S.
    by_optype = analysis.blocking["optype"].overall
    assert by_optype["forward-compute"] == pytest.approx(14.0 / IDEAL_STEP_TIME)
    assert by_optype["backward-compute"] == pytest.approx(1.0)


def test_row_order_float32_and_epoch_do_not_matter(job_a):
    shuffled = frame(TIMES, epoch=1.7e9).sample(frac=1.0, random_state=3)
    reference = graphwia.analyze(job_a).slowdown
    other = graphwia.analyze(graphwia.Trace.from_frame(shuffled, META_A)).slowdown
    assert other == pytest.approx(reference, rel=1e-9)
    as_float32 = frame(TIMES, dtype=np.float32)
    other32 = graphwia.analyze(graphwia.Trace.from_frame(as_float32, META_A)).slowdown
    assert other32 == pytest.approx(reference, rel=1e-6)


# ---------------------------------------------------------------------------
# Job B: pp = 1, no DP. A chain per step: F0 F1 B0 B1 gc layernorm clip optimizer.


def chain_step(step, forward1, f1_delay):
    """Observed ops of one step; F1 is launched ``f1_delay`` after F0 ends."""
    durations = [
        (F, 0, 1.0),
        (F, 1, forward1),
        (B, 0, 2.0),
        (B, 1, 2.0),
        (GC, 0, 0.5),
        (LN, 0, 0.25),
        (CLIP, 0, 0.25),
        (OPT, 0, 1.0),
    ]
    rows, t = [], 100.0 * step
    for optype, seq, duration in durations:
        if (optype, seq) == (F, 1):
            t += f1_delay
        compute = optype in (F, B)
        rows.append(
            {
                "dp_rank": 0,
                "stage": 0,
                "rank": 0,
                "step": step,
                "optype": optype,
                "start_ts": t,
                "duration": duration,
                "seq_id": seq,
                "mc": 0 if compute else -1,
                "gmc": 0 if compute else -1,
                "mb_id": seq if compute else -1,
            }
        )
        t += duration
    return rows


META_B = {
    "trial_name": "B",
    "run_id": 0,
    "dp_size": 1,
    "pp_size": 1,
    "tp_size": 1,
    "dsp_size": 1,
    "vpp_size": 1,
    "world_size": 1,
}


def job_b():
    return graphwia.Trace.from_frame(pd.DataFrame(chain_step(1, 1.0, 0.5) + chain_step(2, 3.0, 0.5)), META_B)


def test_single_chain_hand_derived():
    analysis = graphwia.analyze(job_b())
    assert list(analysis.steps) == [1, 2]
    # Observed spans: 8.5 and 10.5; without the 0.5 s launch gap: 8 and 10.
    assert analysis.step_time_observed == pytest.approx([8.5, 10.5])
    assert analysis.step_time_nodelay == pytest.approx([8.0, 10.0])
    # Forward's typical duration is mean(1, 1, 1, 3) = 1.5: ideal step 1.5+1.5+2+2+0.5+0.25+0.25+1 = 9.
    assert analysis.step_time_ideal == pytest.approx([9.0, 9.0])
    # A single chain with mean weights: S is exactly 1; per step 8/9 and 10/9.
    assert analysis.slowdown == pytest.approx(1.0)
    assert analysis.step_slowdown == pytest.approx([8 / 9, 10 / 9])
    assert analysis.launch_slowdown == pytest.approx(9.5 / 9.0)
    # Launch attribution runs (1.056 >= 1.03): F1's gap is the only delay.
    assert analysis.launch["optype"].overall["forward-compute"] == pytest.approx(9.5 / 9.0)
    # S < 1.03: no blocking attribution; the published file says null.
    assert analysis.blocking == {}
    assert result_dict(analysis)["blocking_decompose_by_optype"] is None


def test_steps_subset_and_unknown_steps():
    trace = job_b()
    subset = graphwia.analyze(trace, steps=[2])
    assert list(subset.steps) == [2] and subset.typical_from == "selected"
    # Typical weights come from the analysed step only: forward mean(1, 3) = 2, so the
    # ideal step is 2+2+2+2+0.5+0.25+0.25+1 = 10, the no-delay step time: S = 1.
    assert subset.typical[F] == pytest.approx(2.0)
    assert subset.step_time_ideal == pytest.approx([10.0])
    assert subset.slowdown == pytest.approx(1.0)
    # typical_from="all": from both steps (forward mean 1.5), so step 2 keeps its full-run ideal, 9.
    everywhere = graphwia.analyze(trace, steps=[2], typical_from="all")
    assert everywhere.typical_from == "all" and everywhere.step_time_ideal == pytest.approx([9.0])
    with pytest.raises(UsageError, match="step.*3.*steps present: 1-2"):
        graphwia.analyze(trace, steps=[3])


def test_edge_kinds_are_labelled(job_a):
    dag = graphwia.build_dag(job_a)
    kinds = set(dag.edges.to_pandas()["kind"].astype(str))
    assert {
        "compute-stream",
        "p2p-stream",
        "p2p-match",
        "tail",
        "step-start",
        "p2p-pair",
        "dp-collective",
        "embedding",
        "clip",
    } <= kinds
    assert set(np.unique(dag.edges.kind)) <= set(KIND_CODE.values())


def test_batch_evaluation_equals_one_by_one(job_a):
    dag = graphwia.build_dag(job_a)
    compiled = dag.compile()
    w = graphwia.observed_weights(dag)
    rng = np.random.default_rng(0)
    weights = w.weight[:, None] * rng.uniform(0.5, 1.5, size=(dag.n_ops, 5))
    delays = rng.uniform(0, 0.1, size=(dag.n_ops, 5))
    batch = compiled.evaluate(weights, delays)
    for i in range(5):
        single = compiled.evaluate(weights[:, i], delays[:, i])
        assert np.array_equal(single.end[:, 0], batch.end[:, i])
        assert np.array_equal(single.step_time[:, 0], batch.step_time[:, i])
    chunked = compiled.evaluate(weights, delays, chunk_bytes=1)  # one scenario per chunk
    assert np.array_equal(chunked.end, batch.end)


def test_categorical_optype_in_any_category_order(job_a):
    """Parquet files store optype as a categorical; its category order must not matter."""
    reference = graphwia.analyze(job_a).slowdown
    frame_a = frame(TIMES)
    categories = sorted(ALL_OPTYPES, reverse=True)  # the canonical set, in another order (as synth writes)
    frame_a["optype"] = pd.Categorical(frame_a["optype"], categories=categories)
    trace = graphwia.Trace.from_frame(frame_a, META_A)
    assert graphwia.analyze(trace).slowdown == pytest.approx(reference, rel=1e-12)


def test_times_that_cannot_fit_in_memory_are_refused_up_front(job_a, monkeypatch):
    """Every op's start and end take 16 bytes per op instance and scenario: a batch whose times exceed the
    machine's memory is an ArgumentError on ``times`` before anything is allocated, not an OOM kill later."""
    from graphwia.engine import evaluate as engine

    compiled = graphwia.build_dag(job_a).compile()
    weights = np.ones((compiled.n_ops, 3))
    need = engine.TIMES_BYTES * compiled.n_ops * 3
    monkeypatch.setattr(engine, "physical_memory", lambda: need - 1)
    with pytest.raises(graphwia.ArgumentError, match=r"^times: every op's start and end in 3 scenario\(s\) of "):
        compiled.evaluate(weights, None, times=True)
    assert compiled.evaluate(weights, None, times=False).start is None  # step times only: nothing refused
    monkeypatch.setattr(engine, "physical_memory", lambda: need)
    assert compiled.evaluate(weights, None, times=True).start.shape == (compiled.n_ops, 3)
    monkeypatch.setattr(engine, "physical_memory", lambda: None)  # the OS does not say: no bound
    assert compiled.evaluate(weights, None, times=True).end.shape == (compiled.n_ops, 3)
