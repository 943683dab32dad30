"""The synthetic trace generator: schema, schedule shape, SPEC consistency, injected causes, CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import typer
import yaml
from typer.testing import CliRunner

from graphwia.synth.generate import COLUMNS, SynthArgumentError, synthesize, write_synth

EPS = 5e-5  # SPEC §2.1.3 slack
FWD, BWD = "forward-compute", "backward-compute"
DP_OPTYPES = {"params-all-gather", "grads-reduce-scatter", "separate-grads-all-reduce"}

_cache: dict = {}


def synth(**kwargs) -> tuple[pd.DataFrame, dict]:
    """synthesize() with a per-session cache: many tests look at the same small layouts."""
    key = repr(sorted(kwargs.items()))
    if key not in _cache:
        _cache[key] = synthesize(**kwargs)
    return _cache[key]


def worker(trace: pd.DataFrame, dp_rank: int, stage: int, step: int) -> pd.DataFrame:
    """One worker's ops in one step, in the SPEC's sample order (start_ts, seq_id, optype)."""
    ops = trace[(trace.dp_rank == dp_rank) & (trace.stage == stage) & (trace.step == step)]
    return ops.sort_values(["start_ts", "seq_id", "optype"]).reset_index(drop=True)


def compute_order(ops: pd.DataFrame) -> str:
    kinds = ops[ops.optype.isin([FWD, BWD])].optype
    return "".join("F" if kind == FWD else "B" for kind in kinds)


def counts(trace: pd.DataFrame) -> pd.DataFrame:
    """Ops per worker-step, optype x stage (NaN where a stage has none)."""
    per_worker_step = trace.dp_rank.nunique() * trace.step.nunique()
    table = trace.groupby(["optype", "stage"], observed=True).size().unstack("stage")
    return table / per_worker_step


def matched_p2p(ops: pd.DataFrame, optype: str, n_chunks: int) -> list[tuple[int, int]]:
    """SPEC §2.1.3 on one worker: (gmc, mb_id) of the compute each non-no-op ``optype`` record
    is matched to, in order."""
    direction, kind = optype.split("-")
    computes = ops[ops.optype == f"{direction}-compute"].sort_values("seq_id")
    records = ops[ops.optype == optype]
    if kind == "recv":
        records = records[records.start_ts <= computes.start_ts.max() + EPS]
    else:
        records = records[records.start_ts + records.duration >= (computes.start_ts + computes.duration).min() - EPS]
    skipped = len(computes) - len(records)
    assert skipped in (0, 1) or len(records) == 0, f"{optype}: {len(records)} records for {len(computes)} computes"
    matched = computes.iloc[skipped : skipped + len(records)]
    peer_offset = {"forward-send": 1, "forward-recv": -1, "backward-send": -1, "backward-recv": 1}[optype]
    return [(g, mb) for g, mb in zip(matched.gmc, matched.mb_id) if 0 <= g + peer_offset < n_chunks]


# -- schema and determinism -----------------------------------------------------------------


def test_schema_dtypes_and_metadata():
    trace, meta = synth(dp=2, pp=4, vpp=1, microbatches=4, steps=2, tp=2, name="x")
    assert list(trace.columns) == list(COLUMNS)
    for column, dtype in COLUMNS.items():
        if dtype is None:
            assert isinstance(trace[column].dtype, pd.CategoricalDtype)
        else:
            assert trace[column].dtype == dtype, column
    assert meta == {
        "trial_name": "x",
        "run_id": 0,
        "dp_size": 2,
        "pp_size": 4,
        "tp_size": 2,
        "dsp_size": 1,
        "vpp_size": 1,
        "world_size": 16,
    }
    ranks = trace.drop_duplicates(["dp_rank", "stage"])
    assert (ranks["rank"] == (ranks.stage * 2 + ranks.dp_rank) * 2).all()
    assert (trace.duration > 0).all()
    assert not trace.duplicated(["step", "dp_rank", "stage", "optype", "seq_id"]).any()


def test_ids_follow_the_real_traces_conventions():
    trace, _ = synth(dp=2, pp=4, vpp=1, microbatches=4, steps=2, dp_overlap=False)
    by_optype = trace.groupby("optype", observed=True)
    computes = trace[trace.optype.isin([FWD, BWD])]
    assert (computes.gmc == computes.stage).all() and (computes.mc == 0).all()
    assert (computes.mb_id == computes.seq_id).all()
    for optype in ("forward-send", "backward-recv", "optimizer", "optimizer-clip-main-grad"):
        assert (by_optype.get_group(optype)[["mc", "gmc", "mb_id"]] == -1).all().all()
    assert (by_optype.get_group("gc").mb_id == 0).all()
    assert (by_optype.get_group("params-all-gather")[["mc", "gmc"]].to_numpy() == [0, -1]).all()


def test_same_seed_same_trace_other_seed_other_times():
    kwargs = dict(dp=2, pp=2, vpp=1, microbatches=4, steps=2, seqlen_cv=0.2, gc_pauses=[(0.5, 0.1)])
    first, _ = synthesize(seed=7, **kwargs)
    pd.testing.assert_frame_equal(first, synthesize(seed=7, **kwargs)[0])
    other, _ = synthesize(seed=8, **kwargs)
    assert not np.allclose(first.duration, other.duration)


def test_steps_laid_end_to_end():
    trace, _ = synth(dp=2, pp=4, vpp=1, microbatches=4, steps=2)
    bounds = (
        trace.assign(end=trace.start_ts + trace.duration).groupby("step").agg(lo=("start_ts", "min"), hi=("end", "max"))
    )
    assert bounds.lo.iloc[0] >= 0
    assert bounds.hi.iloc[0] < bounds.lo.iloc[1]


# -- schedule shape ---------------------------------------------------------------------------


def test_op_counts_per_stage_mirror_a_real_1f1b_trace():
    # the layout of the published ST trace: dp 2, pp 4, 4 microbatches, reduce-scatter in the tail
    table = counts(synth(dp=2, pp=4, vpp=1, microbatches=4, steps=2, dp_overlap=False)[0])
    expected = {
        "forward-compute": [4, 4, 4, 4],
        "backward-compute": [4, 4, 4, 4],
        "forward-recv": [None, 4, 4, 4],
        "forward-send": [4, 4, 4, None],
        "backward-recv": [4, 4, 4, None],
        "backward-send": [None, 4, 4, 4],
        "embedding-grads-all-reduce": [1, None, None, 1],
        **{
            t: [1, 1, 1, 1]
            for t in (
                "gc",
                "grads-reduce-scatter",
                "layernorm-grads-all-reduce",
                "optimizer",
                "optimizer-clip-main-grad",
                "params-all-gather",
            )
        },
    }
    assert set(table.index) == set(expected)
    for optype, per_stage in expected.items():
        got = [None if np.isnan(v) else v for v in table.loc[optype]]
        assert got == per_stage, optype


def test_interleaved_records_every_p2p_slot():
    pp, vpp, m = 4, 2, 8
    table = counts(synth(dp=2, pp=pp, vpp=vpp, microbatches=m, steps=1)[0])
    total = m * vpp
    for stage in range(pp):
        assert table.loc[FWD, stage] == table.loc[BWD, stage] == total
        assert table.loc["forward-send", stage] == total
        # one extra recv after the last compute of each direction: a type-1 no-op
        assert table.loc["forward-recv", stage] == table.loc["backward-recv", stage] == total + 1
        # the last warm-up call also carries an empty backward-send (type-1)
        assert table.loc["backward-send", stage] == total + 1
        assert table.loc["params-all-gather", stage] == table.loc["grads-reduce-scatter", stage] == vpp


@pytest.mark.parametrize("stage, pp, m", [(0, 4, 8), (1, 4, 8), (3, 4, 8), (0, 4, 2), (2, 3, 5)])
def test_1f1b_warmup_steady_cooldown(stage, pp, m):
    ops = worker(synth(dp=1, pp=pp, vpp=1, microbatches=m, steps=1)[0], 0, stage, 0)
    warmup = min(pp - stage - 1, m)
    assert compute_order(ops) == "F" * warmup + "FB" * (m - warmup) + "B" * warmup
    for kind in (FWD, BWD):
        assert list(ops[ops.optype == kind].mb_id) == list(range(m))


def test_interleaved_order_and_chunks():
    pp, vpp, m = 4, 2, 8
    trace, _ = synth(dp=2, pp=pp, vpp=vpp, microbatches=m, steps=1)
    ops = worker(trace, 0, 0, 0)
    warmup = (pp - 1) * 2 + (vpp - 1) * pp
    total = m * vpp
    assert compute_order(ops) == "F" * warmup + "FB" * (total - warmup) + "B" * warmup
    forwards, backwards = ops[ops.optype == FWD], ops[ops.optype == BWD]
    assert list(forwards.mc) == [0] * 4 + [1] * 4 + [0] * 4 + [1] * 4
    assert list(backwards.mc) == [1] * 4 + [0] * 4 + [1] * 4 + [0] * 4
    assert list(forwards.mb_id) == [0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7]
    computes = trace[trace.optype.isin([FWD, BWD])]
    assert (computes.gmc == computes.stage + computes.mc * pp).all()


def test_seq_id_is_start_order_per_optype_worker_step():
    trace, _ = synth(dp=2, pp=4, vpp=2, microbatches=8, steps=2)
    ordered = trace.sort_values(["step", "dp_rank", "stage", "optype", "start_ts"])
    expected = ordered.groupby(["step", "dp_rank", "stage", "optype"], observed=True).cumcount()
    assert (ordered.seq_id.to_numpy() == expected.to_numpy()).all()


@pytest.mark.parametrize("pp, vpp, m", [(4, 1, 4), (4, 1, 2), (4, 2, 8), (3, 3, 6), (2, 2, 2)])
def test_p2p_pairs_match_across_peer_stages(pp, vpp, m):
    trace, _ = synth(dp=2, pp=pp, vpp=vpp, microbatches=m, steps=2)
    n_chunks = pp * vpp
    sample = {stage: worker(trace, 0, stage, 0) for stage in range(pp)}
    for stage in range(pp):
        fwd_sends = matched_p2p(sample[stage], "forward-send", n_chunks)
        fwd_recvs = matched_p2p(sample[(stage + 1) % pp], "forward-recv", n_chunks)
        assert [(g + 1, mb) for g, mb in fwd_sends] == fwd_recvs
        bwd_sends = matched_p2p(sample[stage], "backward-send", n_chunks)
        bwd_recvs = matched_p2p(sample[(stage - 1) % pp], "backward-recv", n_chunks)
        assert [(g - 1, mb) for g, mb in bwd_sends] == bwd_recvs
    if vpp == 1:  # like the real traces: the boundary stages do not record the missing direction
        assert not sample[0].optype.isin(["forward-recv", "backward-send"]).any()
        assert not sample[pp - 1].optype.isin(["forward-send", "backward-recv"]).any()


def test_p2p_pair_members_overlap_in_time():
    # SPEC §3: a pair's transfer time (end - latest start of the pair) is >= 0 for both members
    trace, _ = synth(dp=2, pp=4, vpp=1, microbatches=4, steps=2)
    ends = trace.assign(end=trace.start_ts + trace.duration)
    key = ["dp_rank", "step", "seq_id"]
    for stage in range(3):
        sends = ends[(ends.stage == stage) & (ends.optype == "forward-send")].set_index(key)
        recvs = ends[(ends.stage == stage + 1) & (ends.optype == "forward-recv")].set_index(key)
        latest_start = np.maximum(sends.start_ts, recvs.start_ts.reindex(sends.index))
        assert (sends.end >= latest_start).all() and (recvs.end.reindex(sends.index) >= latest_start).all()


def test_dp_collectives_overlapped_and_in_the_tail():
    pp, vpp, m = 2, 2, 4
    overlapped = worker(synth(dp=2, pp=pp, vpp=vpp, microbatches=m, steps=1)[0], 0, 1, 0)
    gc_start = overlapped[overlapped.optype == "gc"].start_ts.iloc[0]
    scatters = overlapped[overlapped.optype == "grads-reduce-scatter"].sort_values("seq_id")
    assert list(scatters.mc) == [1, 0]  # chunk 1's backwards finish first
    assert scatters.start_ts.iloc[0] < gc_start  # overlapped with the remaining backwards
    assert (overlapped.optype == "separate-grads-all-reduce").sum() == 1
    assert list(overlapped[overlapped.optype == "params-all-gather"].mc) == [0, 1]

    tail = worker(synth(dp=2, pp=pp, vpp=vpp, microbatches=m, steps=1, dp_overlap=False)[0], 0, 0, 0)
    assert "separate-grads-all-reduce" not in set(tail.optype)
    order = list(tail.optype[tail.start_ts >= tail[tail.optype == "gc"].start_ts.iloc[0]])
    assert order == [
        "gc",
        "layernorm-grads-all-reduce",
        "embedding-grads-all-reduce",
        "grads-reduce-scatter",
        "grads-reduce-scatter",
        "optimizer-clip-main-grad",
        "optimizer",
    ]


@pytest.mark.parametrize("dp, pp", [(1, 1), (3, 1), (1, 3)])
def test_small_layouts(dp, pp):
    trace, meta = synth(dp=dp, pp=pp, vpp=1, microbatches=3, steps=2)
    assert meta["world_size"] == dp * pp
    optypes = set(trace.optype)
    assert ("embedding-grads-all-reduce" in optypes) == (pp > 1)
    assert bool(optypes & DP_OPTYPES) == (dp > 1)
    assert bool(optypes & {"forward-send", "forward-recv", "backward-send", "backward-recv"}) == (pp > 1)
    if pp == 1:
        assert compute_order(worker(trace, 0, 0, 1)) == "FB" * 3


# -- injected causes --------------------------------------------------------------------------


def test_slow_worker_and_slow_stage_scale_compute():
    trace, _ = synth(dp=4, pp=2, vpp=1, microbatches=4, steps=4, slow_workers=[(1, 1, 1.6)], slow_stage=(0, 1.3))
    fwd = trace[trace.optype == FWD]
    median = fwd.groupby(["dp_rank", "stage"]).duration.median().unstack("stage")
    normal_stage1 = median.loc[[0, 2, 3], 1].mean()
    assert median.loc[1, 1] / normal_stage1 == pytest.approx(1.6, rel=0.05)
    assert median.loc[:, 0].mean() / normal_stage1 == pytest.approx(1.3, rel=0.05)
    # communication is not scaled
    sends = trace[trace.optype == "forward-send"]
    assert sends.duration.median() < 0.01


def test_seqlen_imbalance_is_shared_by_the_stages_of_a_dp_rank():
    trace, _ = synth(dp=4, pp=2, vpp=1, microbatches=16, steps=4, seqlen_cv=0.3)
    fwd = trace[trace.optype == FWD].set_index(["dp_rank", "step", "mb_id", "stage"]).duration.unstack("stage")
    assert np.corrcoef(fwd[0], fwd[1])[0, 1] > 0.95
    assert 0.2 < fwd[0].std() / fwd[0].mean() < 0.4


def test_gc_pauses_hit_with_their_probability():
    trace, _ = synth(dp=8, pp=2, vpp=1, microbatches=2, steps=50, gc_pauses=[(0.2, 0.5)])
    gc = trace[trace.optype == "gc"].duration
    assert len(gc) == 800
    assert (gc > 0.4).mean() == pytest.approx(0.2, abs=0.05)
    assert gc[gc < 0.4].max() < 0.01


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(dp=0), "dp"),
        (dict(vpp=2, microbatches=6), "microbatches"),
        (dict(vpp=2, pp=1), "vpp"),
        (dict(slow_workers=[(2, 0, 1.5)]), "slow_workers"),
        (dict(slow_stage=(4, 1.5)), "slow_stage"),
        (dict(slow_stage=(0, 0.0)), "slow_stage"),
        (dict(seqlen_cv=-1), "seqlen_cv"),
        (dict(gc_pauses=[(1.5, 1.0)]), "gc_pauses"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, argument):
    args = dict(dp=2, pp=4, microbatches=4, steps=1) | kwargs
    with pytest.raises(ValueError) as caught:
        synthesize(**args)
    assert isinstance(caught.value, SynthArgumentError) and caught.value.argument == argument


# -- files and CLI ----------------------------------------------------------------------------


def test_write_synth_writes_both_files_whole(tmp_path):
    trace_path, meta_path = write_synth(tmp_path / "out", "demo", dp=2, pp=2, microbatches=2, steps=1, seed=3)
    assert trace_path.name == "trace-demo.parquet" and meta_path.name == "meta-demo.yaml"
    assert sorted(p.name for p in trace_path.parent.iterdir()) == ["meta-demo.yaml", "trace-demo.parquet"]
    expected, meta = synthesize(dp=2, pp=2, microbatches=2, steps=1, seed=3, name="demo")
    pd.testing.assert_frame_equal(pd.read_parquet(trace_path), expected)
    assert yaml.safe_load(meta_path.read_text()) == meta


def synth_command(out, name: str = "c", *, dp: int = 2, pp: int = 2, microbatches: int = 2, steps: int = 1, **more):
    """The arguments of ``graphwia synth`` writing a small job to ``out``; each of ``more`` is one
    more ``--option value`` (``slow_link=...`` is ``--slow-link ...``)."""
    args = ["synth", "--out", str(out), "--name", name, "--dp", str(dp), "--pp", str(pp)]
    args += ["--microbatches", str(microbatches), "--steps", str(steps)]
    for option, value in more.items():
        args += [f"--{option.replace('_', '-')}", str(value)]
    return args


def cli_app() -> typer.Typer:
    from graphwia.cli.synth import register

    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """A stand-in for cli.main with only the synth command."""

    register(app)
    return app


def test_cli_writes_a_trace(tmp_path):
    result = CliRunner().invoke(
        cli_app(),
        [
            "synth",
            "--out",
            str(tmp_path),
            "--name",
            "c",
            "--dp",
            "2",
            "--pp",
            "2",
            "--microbatches",
            "2",
            "--steps",
            "1",
            "--seed",
            "1",
            "--slow-worker",
            "1:0:1.5",
            "--slow-worker",
            "0:1:1.2",
            "--slow-stage",
            "1:1.1",
            "--seqlen-cv",
            "0.1",
            "--gc-pause",
            "0.5:0.2",
            "--no-dp-overlap",
        ],
    )
    assert result.exit_code == 0, result.output
    expected, _ = synthesize(
        dp=2,
        pp=2,
        microbatches=2,
        steps=1,
        seed=1,
        slow_workers=[(1, 0, 1.5), (0, 1, 1.2)],
        slow_stage=(1, 1.1),
        seqlen_cv=0.1,
        gc_pauses=[(0.5, 0.2)],
        dp_overlap=False,
        name="c",
    )
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "trace-c.parquet"), expected)


@pytest.mark.parametrize(
    "extra, option",
    [
        (["--slow-worker", "1:0"], "--slow-worker"),
        (["--slow-worker", "a:0:2"], "--slow-worker"),
        (["--slow-worker", "5:0:2"], "--slow-worker"),
        (["--slow-stage", "1"], "--slow-stage"),
        (["--gc-pause", "0.1"], "--gc-pause"),
        (["--gc-pause", "2:1"], "--gc-pause"),
        (["--vpp", "2", "--microbatches", "3"], "--microbatches"),
        (["--dp", "0"], "--dp"),
    ],
)
def test_cli_malformed_values_give_one_line(tmp_path, extra, option):
    result = CliRunner().invoke(cli_app(), synth_command(tmp_path) + extra)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and option in lines[0] and "Traceback" not in result.output
    assert not list(tmp_path.iterdir())


# -- the engine accepts the traces and its base simulation reproduces them ---------------------


def analyze(**kwargs):
    graphwia = pytest.importorskip("graphwia")
    if not hasattr(graphwia, "analyze"):
        pytest.skip("graphwia.analyze not available")
    trace, meta = synth(**kwargs)
    return graphwia.analyze(graphwia.Trace.from_frame(trace, meta), per_worker=False)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(dp=2, pp=4, vpp=1, microbatches=4, steps=2, dp_overlap=False),
        dict(dp=2, pp=4, vpp=1, microbatches=2, steps=2),
        dict(dp=2, pp=4, vpp=2, microbatches=8, steps=2),
        dict(dp=2, pp=3, vpp=3, microbatches=3, steps=2, dp_overlap=False),
        dict(dp=2, pp=2, vpp=2, microbatches=2, steps=2),
        dict(dp=1, pp=1, vpp=1, microbatches=3, steps=2),
        dict(dp=3, pp=1, vpp=1, microbatches=2, steps=2),
    ],
)
def test_base_simulation_reproduces_observed_step_times(kwargs):
    analysis = analyze(**kwargs)
    observed = analysis.step_time_observed
    simulated = analysis.simulations["base"].step_time[:, 0]
    np.testing.assert_allclose(simulated, observed, rtol=1e-9)
    assert analysis.warnings == []


def test_analysis_finds_the_injected_causes():
    slow_worker = analyze(dp=4, pp=4, vpp=1, microbatches=8, steps=3, slow_workers=[(1, 2, 1.5)])
    top = slow_worker.workers.sort_values("score", ascending=False).iloc[0]
    assert (top.dp_rank, top.stage) == (1, 2)
    assert slow_worker.Mw > 0.8
    slow_stage = analyze(dp=4, pp=4, vpp=1, microbatches=8, steps=3, slow_stage=(3, 2.0))
    assert slow_stage.Ms > 0.8
