"""Custom what-if scenarios: parsing, semantics on synthetic traces, the ST numbers, the CLI."""

from __future__ import annotations

import gzip
import json
import re
import textwrap

import numpy as np
import pytest
from conftest import published, real_trace, requires_data
from typer.testing import CliRunner

import graphwia
from graphwia import optypes as T
from graphwia.analyses import whatif
from graphwia.analyses.critical_path import scenario_critical_path, whatif_critical_path
from graphwia.analyses.whatif import ScenarioError, load_scenarios, masked, parse_scenarios, run_whatif
from graphwia.outputs.whatif import whatif_dict, write_whatif_timelines
from graphwia.synth.generate import synthesize, write_synth
from graphwia.utils import io

COMPUTE = ["forward-compute", "backward-compute"]
P2P = ["forward-send", "forward-recv", "backward-send", "backward-recv"]
DP_COMM = ["params-all-gather", "grads-reduce-scatter", "separate-grads-all-reduce"]
SLOW = (1, 0, 1.5)  # dp_rank 1, stage 0 computes 1.5x slower


@pytest.fixture(scope="module")
def trace():
    """A small 2 x 2 job, one slow worker, overlapped DP."""
    frame, meta = synthesize(dp=2, pp=2, microbatches=4, steps=3, seed=7, slow_workers=[SLOW], seqlen_cv=0.1)
    return graphwia.Trace.from_frame(frame, meta)


@pytest.fixture(scope="module")
def analysis(trace):
    return graphwia.analyze(trace, per_worker=False)


def scenarios(*entries, baseline="nodelay"):
    return parse_scenarios({"baseline": baseline, "scenarios": list(entries)})


def one(trace, entry, baseline="nodelay"):
    """Speedup and result of a single scenario."""
    result = run_whatif(trace, scenarios(entry, baseline=baseline))
    return result.speedup[entry["name"]], result


# -- parsing ------------------------------------------------------------------------------

GOOD = {"name": "x", "where": {"optype": COMPUTE}, "scale": {"duration": 0.5}}


@pytest.mark.parametrize(
    "raw, named",
    [
        ([GOOD], "expected a mapping"),
        ({"scenarios": [GOOD], "baseline": "fastest"}, "'fastest'"),
        ({"scenarios": [GOOD], "extra": 1}, "'extra'"),
        ({"scenarios": []}, "'scenarios'"),
        ({"scenarios": [dict(GOOD, colour="red")]}, "'colour'"),
        ({"scenarios": [dict(GOOD, where={"worker": 3})]}, "'worker'"),
        ({"scenarios": [dict(GOOD, where={"optype": ["forward-compute", "fwd"]})]}, "'fwd'"),
        ({"scenarios": [dict(GOOD, where={"stage": ["first"]})]}, "'first'"),
        ({"scenarios": [dict(GOOD, where={"dp_rank": [-1]})]}, "where.dp_rank"),
        ({"scenarios": [dict(GOOD, where={"step": []})]}, "where.step"),
        ({"scenarios": [dict(GOOD, where=["stage"])]}, "'where'"),
        ({"scenarios": [dict(GOOD, scale={"time": 0.5})]}, "'time'"),
        ({"scenarios": [dict(GOOD, scale={"duration": -1})]}, "scale.duration"),
        ({"scenarios": [dict(GOOD, scale={"duration": True})]}, "scale.duration"),
        ({"scenarios": [dict(GOOD, scale={"duration": "fast"})]}, "scale.duration"),
        ({"scenarios": [dict(GOOD, set={"duration": 0.1})]}, "duration is both set and scaled"),
        ({"scenarios": [{"name": "x", "where": {"stage": [0]}}]}, "no action"),
        ({"scenarios": [dict(GOOD, ideal="yes")]}, "'ideal'"),
        ({"scenarios": [dict(GOOD, healthy=1)]}, "'healthy'"),
        ({"scenarios": [dict(GOOD, ideal=True, healthy=True)]}, "'ideal' and 'healthy' are both true"),
        ({"scenarios": [dict(GOOD, where={"optype": [["forward-compute"]]})]}, "unknown optype"),
        ({"scenarios": [dict(GOOD, name="two words")]}, "'two words'"),
        ({"scenarios": [{k: v for k, v in GOOD.items() if k != "name"}]}, "scenario #1"),
        ({"scenarios": [GOOD, GOOD]}, "used twice"),
        # factors and values a job cannot have (their times or speedups would overflow or underflow)
        ({"scenarios": [dict(GOOD, scale={"duration": 1e308})]}, "scale.duration: 1e+308 is out of range"),
        ({"scenarios": [dict(GOOD, scale={"duration": 1e-320})]}, "scale.duration: 1e-320 is out of range"),
        ({"scenarios": [dict(GOOD, scale={"transfer": 1.000001e6})]}, "scale.transfer: 1000001.0 is out of range"),
        ({"scenarios": [dict(GOOD, scale={"launch_delay": 9e-7})]}, "scale.launch_delay: 9e-07 is out of range"),
        (
            {"scenarios": [dict(GOOD, scale={"duration": 10**400})]},
            "scale.duration: 10000000000000000000… (401 characters)",
        ),
        ({"scenarios": [dict(GOOD, scale={"duration": float("inf")})]}, "scale.duration: inf"),
        ({"scenarios": [dict(GOOD, scale={"duration": float("nan")})]}, "scale.duration: nan"),
        ({"scenarios": [{"name": "x", "set": {"duration": 1e9 + 1}}]}, "set.duration: 1000000001.0 is out of range"),
        ({"scenarios": [{"name": "x", "set": {"launch_delay": 10**40}}]}, "set.launch_delay"),
    ],
)
def test_invalid_scenarios_name_the_culprit(raw, named):
    with pytest.raises(ScenarioError) as err:
        parse_scenarios(raw, source="s.yaml")
    message = str(err.value)
    assert named in message and message.startswith("s.yaml") and "\n" not in message


def test_factors_and_values_at_their_bounds_are_accepted():
    parsed = parse_scenarios(
        {
            "scenarios": [
                {"name": "low", "scale": {"duration": whatif.MIN_SCALE, "transfer": 0, "launch_delay": 1e-6}},
                {"name": "high", "scale": {"duration": whatif.MAX_SCALE, "transfer": 10**6}},
                {"name": "set", "set": {"duration": whatif.MAX_SECONDS, "transfer": 0, "launch_delay": 10**9}},
            ]
        }
    )
    assert parsed.scenarios[0].scale == {"duration": 1e-6, "transfer": 0.0, "launch_delay": 1e-6}
    assert parsed.scenarios[1].scale == {"duration": 1e6, "transfer": 1e6}
    assert parsed.scenarios[2].set == {"duration": 1e9, "transfer": 0.0, "launch_delay": 1e9}
    assert (whatif.MIN_SCALE, whatif.MAX_SCALE, whatif.MAX_SECONDS) == (1e-6, 1e6, 1e9)  # as the README says


def test_errors_inside_a_scenario_name_it():
    with pytest.raises(ScenarioError, match="scenario 'slow'"):
        parse_scenarios({"scenarios": [GOOD, {"name": "slow", "scale": {"launch_dely": 2}}]})


def test_load_scenarios_reads_yaml_and_defaults(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        textwrap.dedent("""\
        scenarios:
          - name: last-stage-faster
            where: {stage: last, optype: [forward-compute, backward-compute]}
            scale: {duration: 0.8}
          - name: typical
            ideal: true
          - name: healthy
            where: {optype: forward-pp-comm}
            healthy: true
    """)
    )
    loaded = load_scenarios(path)
    assert loaded.baseline == "nodelay"
    assert loaded.names == ["last-stage-faster", "typical", "healthy"]
    assert loaded.scenarios[0].where == {"stage": ("last",), "optype": tuple(COMPUTE)}
    assert loaded.scenarios[1].ideal and loaded.scenarios[1].where == {}
    assert loaded.scenarios[2].healthy and not loaded.scenarios[2].ideal
    assert loaded.scenarios[2].where == {"optype": ("forward-pp-comm",)}


def test_unknown_optype_lists_the_valid_ones():
    with pytest.raises(ScenarioError) as err:
        parse_scenarios({"scenarios": [dict(GOOD, where={"optype": ["forward-p2p"]})]})
    valid = str(err.value).split("valid: ")[1].split(", ")
    assert valid == [*T.ALL_OPTYPES, "forward-pp-comm", "backward-pp-comm"]


def test_load_scenarios_file_errors(tmp_path):
    with pytest.raises(ScenarioError, match="not found"):
        load_scenarios(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenarios: [\n")
    with pytest.raises(ScenarioError, match="bad.yaml: not a readable YAML"):
        load_scenarios(bad)


# -- run-time errors: the scenario does not fit the trace -------------------------------------


@pytest.mark.parametrize(
    "entry, named",
    [
        ({"name": "far", "where": {"stage": [5]}, "scale": {"duration": 2}}, "where.stage: 5 not in the analysed ops"),
        ({"name": "late", "where": {"step": [99]}, "scale": {"duration": 2}}, "where.step: 99"),
        (
            {"name": "none", "where": {"optype": ["forward-recv"], "stage": [0]}, "scale": {"duration": 2}},
            "where selects no op",
        ),
        ({"name": "p2p", "where": {"optype": P2P}, "set": {"duration": 0}}, "set.duration changes nothing"),
        ({"name": "fwd", "where": {"optype": COMPUTE}, "scale": {"transfer": 0}}, "scale.transfer changes nothing"),
    ],
)
def test_scenarios_that_do_not_fit_the_trace(trace, entry, named):
    with pytest.raises(ScenarioError) as err:
        run_whatif(trace, scenarios(entry))
    assert named in str(err.value) and f"scenario {entry['name']!r}" in str(err.value)


@pytest.mark.parametrize(
    "entry, baseline, why",
    [
        (
            {"name": "same", "scale": {"duration": 1, "transfer": 1}},
            "nodelay",
            "scale.duration changes nothing: a factor of 1",
        ),
        ({"name": "no-delay", "set": {"launch_delay": 0}}, "nodelay", "this baseline has no launch delays"),
        ({"name": "no-delay", "where": {"stage": [1]}, "scale": {"launch_delay": 0.5}}, "ideal", "no launch delays"),
        ({"name": "typical", "ideal": True}, "ideal", "ideal: true changes nothing"),
        (
            {"name": "late", "set": {"launch_delay": 0.001}, "scale": {"transfer": 1}},
            "base",
            "scale.transfer changes nothing: a factor of 1",
        ),
    ],
)
def test_an_action_that_changes_nothing_is_an_error(trace, entry, baseline, why):
    """The README's promise: an action leaving every selected value as it was stops with an error."""
    with pytest.raises(ScenarioError) as err:
        run_whatif(trace, scenarios(entry, baseline=baseline))
    assert why in str(err.value) and f"scenario {entry['name']!r}" in str(err.value)
    assert "\n" not in str(err.value)


def test_optypes_absent_from_the_trace_are_allowed(trace):
    frame, meta = synthesize(dp=2, pp=2, microbatches=4, steps=2, seed=1, dp_overlap=False)
    no_overlap = graphwia.Trace.from_frame(frame, meta)
    assert "separate-grads-all-reduce" not in set(frame["optype"].astype(str))
    speedup, _ = one(no_overlap, {"name": "no-dp-comm", "where": {"optype": DP_COMM}, "set": {"transfer": 0}})
    assert speedup > 1


# -- semantics --------------------------------------------------------------------------------


def test_steps_a_scenario_leaves_alone_have_speedup_one(trace):
    for baseline in ("nodelay", "base", "ideal"):
        _, result = one(
            trace, {"name": "step-0", "where": {"step": [0]}, "scale": {"duration": 2, "transfer": 2}}, baseline
        )
        assert result.step_speedup[0, 0] < 0.9
        np.testing.assert_allclose(result.step_speedup[1:, 0], 1.0, atol=1e-12)


def test_all_ideal_reproduces_the_slowdown_S(trace, analysis):
    speedup, result = one(trace, {"name": "ideal", "ideal": True})
    assert speedup == pytest.approx(analysis.slowdown, rel=1e-12)
    assert list(result.steps) == list(analysis.steps)
    assert result.step_speedup[:, 0] == pytest.approx(analysis.step_slowdown, rel=1e-12)


def test_no_launch_delay_from_base_reproduces_the_launch_slowdown(trace, analysis):
    speedup, _ = one(trace, {"name": "no-delay", "set": {"launch_delay": 0}}, baseline="base")
    # synthetic traces follow the timing model exactly: simulated base span = observed span
    assert speedup == pytest.approx(analysis.launch_slowdown, rel=1e-9)


def test_healing_the_slow_worker_helps_more_than_a_healthy_one(trace):
    dp, stage, factor = SLOW
    heal = {"where": {"dp_rank": [dp], "stage": [stage], "optype": COMPUTE}, "scale": {"duration": 1 / factor}}
    result = run_whatif(
        trace,
        scenarios(dict(heal, name="slow"), dict(heal, name="healthy", where=dict(heal["where"], dp_rank=[1 - dp]))),
    )
    assert result.speedup["slow"] > 1.05
    assert result.speedup["slow"] > result.speedup["healthy"] + 0.05


def test_actions_touch_only_what_they_select(trace):
    member_transfer = {"name": "pp", "where": {"optype": P2P, "stage": [0]}, "set": {"transfer": 0}}
    slower = {"name": "slower", "where": {"stage": "last", "optype": COMPUTE}, "scale": {"duration": 2}}
    late = {"name": "late", "where": {"optype": ["optimizer"]}, "set": {"launch_delay": 0.25}}
    result = run_whatif(trace, scenarios(member_transfer, slower, late))
    ops, base = result.dag.ops, result.weight[:, 0]
    changed = result.weight[:, 1:] != base[:, None]
    p2p_stage0 = ops["optype"].astype(str).isin(P2P).to_numpy() & (ops["stage"].to_numpy() == 0)
    assert np.array_equal(changed[:, 0], p2p_stage0 & (base != 0))
    assert np.all(result.weight[p2p_stage0, 1] == 0)
    last_compute = ops["optype"].astype(str).isin(COMPUTE).to_numpy() & (ops["stage"].to_numpy() == 1)
    np.testing.assert_allclose(result.weight[last_compute, 2], 2 * base[last_compute])
    assert np.array_equal(changed[:, 1], last_compute)
    assert not changed[:, 2].any()  # a launch delay is no weight
    assert result.speedup["slower"] < 1 and result.speedup["late"] < 1
    # every step's optimizer starts 0.25 s after its predecessors end, so the step is at most that much longer
    assert np.all(result.step_time[:, 2] <= result.baseline_span + 0.25 + 1e-9)


def test_steps_subset_with_typical_weights_from_all_steps_matches_the_full_run(trace):
    entries = scenarios(
        {"name": "ideal", "ideal": True}, {"name": "pp", "where": {"optype": P2P}, "set": {"transfer": 0}}
    )
    full = run_whatif(trace, entries)
    part = run_whatif(trace, entries, steps=[1, 2], typical_from="all")
    rows = [full.steps.index(s) for s in part.steps]
    np.testing.assert_allclose(part.step_time, full.step_time[rows], rtol=1e-12)
    np.testing.assert_allclose(part.baseline_span, full.baseline_span[rows], rtol=1e-12)
    assert part.typical_from == "all"


def test_steps_subset_takes_typical_weights_from_those_steps(trace):
    """By default a subset is simulated as the trace cut down to it would be (SPEC §5)."""
    entries = scenarios(
        {"name": "ideal", "ideal": True}, {"name": "healthy", "where": {"dp_rank": [1]}, "healthy": True}
    )
    part = run_whatif(trace, entries, steps=[0, 2])
    cut = graphwia.Trace.from_frame(trace.ops.drop(columns="end").query("step in [0, 2]"), trace.meta.to_dict())
    np.testing.assert_array_equal(part.weight, run_whatif(cut, entries).weight)
    np.testing.assert_array_equal(part.step_time, run_whatif(cut, entries).step_time)
    all_steps = run_whatif(trace, entries, steps=[0, 2], typical_from="all")
    assert not np.allclose(part.step_time, all_steps.step_time, rtol=1e-9)


def test_a_single_step_number_is_a_step_selection(trace):
    entries = scenarios({"name": "ideal", "ideal": True})
    assert run_whatif(trace, entries, steps=1).steps == [1]
    np.testing.assert_array_equal(
        run_whatif(trace, entries, steps=1).step_time, run_whatif(trace, entries, steps=[1]).step_time
    )
    assert scenario_critical_path(trace, "ideal", steps=np.int64(1)).steps == [1]
    with pytest.raises(graphwia.UsageError, match="steps must be"):
        run_whatif(trace, entries, steps="1")


def test_attribution_groups_select_both_p2p_optypes_of_a_direction(trace):
    result = run_whatif(
        trace,
        scenarios(
            {"name": "group", "where": {"optype": ["forward-pp-comm"]}, "set": {"transfer": 0}},
            {"name": "both", "where": {"optype": ["forward-send", "forward-recv"]}, "set": {"transfer": 0}},
            {"name": "backward", "where": {"optype": ["backward-pp-comm"]}, "set": {"transfer": 0}},
        ),
    )
    ops = result.dag.ops["optype"].astype(str)
    np.testing.assert_array_equal(result.weight[:, 1], result.weight[:, 2])
    changed = result.weight[:, 1] != result.weight[:, 0]
    assert changed.any() and set(ops[changed]) <= {"forward-send", "forward-recv"}
    changed = result.weight[:, 3] != result.weight[:, 0]
    assert changed.any() and set(ops[changed]) <= {"backward-send", "backward-recv"}


# -- healthy: typical among the op's peers on its own stage ---------------------------------------


@pytest.fixture(scope="module")
def slow_stage_trace():
    """A 2 x 2 job whose stage 1 computes 1.6x slower on every worker."""
    frame, meta = synthesize(dp=2, pp=2, microbatches=4, steps=3, seed=11, slow_stage=(1, 1.6), dp_overlap=False)
    return graphwia.Trace.from_frame(frame, meta)


def column(result, name: str) -> np.ndarray:
    values = result.dag.ops[name]
    return (values.astype(str) if name == "optype" else values).to_numpy()


def test_healthy_gives_the_typical_weight_of_the_op_s_peers_on_its_stage(slow_stage_trace):
    worker = {"dp_rank": [0], "stage": [1]}
    result = run_whatif(
        slow_stage_trace,
        scenarios(
            {"name": "healthy", "where": worker, "healthy": True}, {"name": "ideal", "where": worker, "ideal": True}
        ),
    )
    optype, stage = column(result, "optype"), column(result, "stage")
    selected = (column(result, "dp_rank") == 0) & (stage == 1)
    for name in np.unique(optype[selected]):
        peers = (stage == 1) & (optype == name) & ~selected  # the other workers of stage 1
        values = result.weight[peers, 0]
        expected = np.mean(values) if name in T.COMPUTE_OPTYPES else np.median(values)
        np.testing.assert_allclose(result.weight[selected & (optype == name), 1], expected, rtol=1e-12)
    np.testing.assert_array_equal(result.weight[~selected, 1], result.weight[~selected, 0])
    # Stage 1 is slow everywhere: a healthy worker of it computes as slowly as its peers, while the
    # job-wide typical weight (ideal) makes it faster than any of them.
    forward = selected & (optype == "forward-compute")
    assert np.all(result.weight[forward, 2] < 0.9 * result.weight[forward, 1])
    assert result.speedup["healthy"] == pytest.approx(1.0, abs=0.01)
    assert result.speedup["ideal"] > result.speedup["healthy"]


def test_healthy_heals_a_slow_worker_like_its_peers(trace):
    dp, stage, factor = SLOW
    worker = {"dp_rank": [dp], "stage": [stage]}
    result = run_whatif(
        trace,
        scenarios(
            {"name": "healthy", "where": worker, "healthy": True},
            {"name": "healed", "where": dict(worker, optype=COMPUTE), "scale": {"duration": 1 / factor}},
            {"name": "healthy-peer", "where": {"dp_rank": [1 - dp], "stage": [stage]}, "healthy": True},
        ),
    )
    # its own slow ops do not count in the typical weight it gets: it is healed all the way
    assert result.speedup["healthy"] == pytest.approx(result.speedup["healed"], rel=0.02)
    assert result.speedup["healthy"] > result.speedup["healthy-peer"] + 0.05


def test_healthy_needs_peers(trace):
    with pytest.raises(ScenarioError, match="'stage-0': healthy: it selects every [a-z-]+ of stage 0, leaving no peer"):
        run_whatif(trace, scenarios({"name": "stage-0", "where": {"stage": [0]}, "healthy": True}))


def test_healthy_takes_typical_weights_from_the_analysed_steps(slow_stage_trace):
    entry = {"name": "healthy", "where": {"dp_rank": [0], "stage": [0], "optype": ["forward-compute"]}, "healthy": True}
    ops = slow_stage_trace.ops
    peers = (ops["stage"] == 0) & (ops["dp_rank"] == 1) & (ops["optype"].astype(str) == "forward-compute")
    for typical_from, steps in (("selected", [2]), ("all", [0, 1, 2])):
        result = run_whatif(slow_stage_trace, scenarios(entry), steps=[2], typical_from=typical_from)
        forward = (
            (column(result, "dp_rank") == 0)
            & (column(result, "stage") == 0)
            & (column(result, "optype") == "forward-compute")
        )
        expected = ops.loc[peers & ops["step"].isin(steps), "duration"].mean()
        np.testing.assert_allclose(result.weight[forward, 1], expected, rtol=1e-12)


# -- baseline base: recorded launch delays can mask a change -------------------------------------


def blocked_peer_trace():
    """pp = 1, dp = 2; worker (1, 0) computes 1.5x slower and worker (0, 0), instead of waiting
    inside the first grads-reduce-scatter, launches it only when (1, 0) does: its wait for the
    straggler is recorded as a launch delay."""
    frame, meta = synthesize(dp=2, pp=1, microbatches=4, steps=3, seed=5, slow_workers=[(1, 0, 1.5)], dp_overlap=False)
    first_rs = frame.index[(frame["optype"] == "grads-reduce-scatter") & (frame["seq_id"] == 0)]
    rs = frame.loc[first_rs]
    slow_start = rs[rs["dp_rank"] == 1].set_index("step")["start_ts"]
    waiting = rs.index[rs["dp_rank"] == 0]
    late = slow_start.loc[frame.loc[waiting, "step"]].to_numpy()
    end = (frame.loc[waiting, "start_ts"] + frame.loc[waiting, "duration"]).to_numpy()
    frame.loc[waiting, "start_ts"], frame.loc[waiting, "duration"] = late, end - late
    return graphwia.Trace.from_frame(frame, meta)


HEAL = {"name": "heal", "where": {"dp_rank": [1], "optype": COMPUTE}, "scale": {"duration": 1 / 1.5}}


def test_base_warns_when_recorded_launch_delays_mask_a_change():
    blocked = blocked_peer_trace()
    under_base = run_whatif(blocked, scenarios(HEAL, {"name": "late", "set": {"launch_delay": 0.01}}, baseline="base"))
    under_nodelay = run_whatif(blocked, scenarios(HEAL))
    assert under_base.speedup["heal"] == pytest.approx(1.0, abs=1e-9)  # the recorded delay holds the step back
    assert under_nodelay.speedup["heal"] > 1.2 and not under_nodelay.warnings
    [warning] = under_base.warnings  # one, and none for the scenario that changes launch delays only
    assert "scenario 'heal'" in warning and "+0.000 s (+0.0%)" in warning and "\n" not in warning
    # the extra simulations behind the warning are not part of the result
    assert under_base.simulation.n_scenarios == 3 and under_base.weight.shape[1] == 3


def test_base_does_not_warn_when_delays_mask_nothing(trace):
    result = run_whatif(
        trace, scenarios(dict(HEAL, where={"dp_rank": [1], "stage": [0], "optype": COMPUTE}), baseline="base")
    )
    assert result.speedup["heal"] > 1.05 and not result.warnings


@pytest.mark.parametrize(
    "with_delays, without, expected",
    [
        (-0.01, -1.0, True),
        (-0.6, -1.0, False),
        (0.2, -1.0, True),
        (-0.001, -0.005, False),
        (0.4, 1.0, True),
    ],
)
def test_masked_criterion(with_delays, without, expected):
    assert masked(with_delays, without, step_time=10.0) is expected


def test_analysis_input_gives_the_same_result(trace, analysis):
    entries = scenarios({"name": "ideal", "ideal": True}, baseline="base")
    from_trace, from_analysis = run_whatif(trace, entries), run_whatif(analysis, entries)
    np.testing.assert_array_equal(from_trace.step_time, from_analysis.step_time)
    with pytest.raises(graphwia.UsageError, match="steps"):
        run_whatif(analysis, entries, steps=[0])
    with pytest.raises(graphwia.UsageError, match="typical_from"):
        run_whatif(analysis, entries, typical_from="all")


def test_outputs_json_frames_and_timelines(trace, tmp_path):
    result = run_whatif(
        trace,
        scenarios({"name": "ideal", "ideal": True}, {"name": "pp", "where": {"optype": P2P}, "set": {"transfer": 0}}),
        times=True,
    )
    plain = whatif_dict(result)
    assert set(plain) == {"baseline", "baseline_step_time", "scenarios"}
    assert [set(s) for s in plain["scenarios"]] == [{"name", "step_time", "speedup"}] * 2
    assert plain["scenarios"][0]["speedup"] == pytest.approx(
        plain["baseline_step_time"] / plain["scenarios"][0]["step_time"]
    )
    detailed = json.loads(json.dumps(whatif_dict(result, per_step=True)))
    assert list(detailed["baseline_per_step"]) == ["0", "1", "2"]
    assert detailed["scenarios"][1]["per_step"]["2"]["speedup"] == pytest.approx(result.step_speedup[2, 1])
    assert list(result.frame["scenario"]) == ["ideal", "pp"]
    per_step = result.step_frame
    assert (
        len(per_step) == 6
        and per_step.set_index(["scenario", "step"]).loc[("pp", 1), "speedup"] == result.step_speedup[1, 1]
    )

    paths = write_whatif_timelines(result, tmp_path / "tl")
    assert [p.name for p in paths] == ["whatif-ideal-synth.json.gz", "whatif-pp-synth.json.gz"]
    events = json.loads(gzip.open(paths[1], "rt").read())
    bars = [e for e in events if e["ph"] == "X"]
    assert len(bars) == result.dag.n_ops
    p2p_bars = [e for e in bars if e["name"] in P2P]
    assert p2p_bars and all(e["dur"] == 0 for e in p2p_bars)  # free transfers are drawn with no length


# -- one batch: built from each scenario's edits, a slice at a time; times only when asked ---------

MIXED = [
    {"name": "ideal-dp1", "where": {"dp_rank": [1]}, "ideal": True},
    {"name": "slow-last", "where": {"stage": ["last"], "optype": COMPUTE}, "scale": {"duration": 1.25}},
    {"name": "healthy-1-0", "where": {"dp_rank": [1], "stage": [0]}, "healthy": True, "scale": {"transfer": 0.5}},
    {"name": "free-pp", "where": {"optype": ["forward-pp-comm", "backward-pp-comm"]}, "set": {"transfer": 0}},
    {"name": "slow-last-2", "where": {"stage": ["last"], "optype": COMPUTE}, "scale": {"duration": 1.5}},
    {"name": "ideal-set", "where": {"stage": [0]}, "ideal": True, "set": {"duration": 0.001}},
    {"name": "late-optimizer", "where": {"optype": ["optimizer"]}, "set": {"launch_delay": 0.01}},
    {"name": "mb-0", "where": {"mb_id": [0, 1], "step": [1]}, "set": {"launch_delay": 0.002}, "scale": {"duration": 2}},
]


@pytest.mark.parametrize("baseline", ["nodelay", "base", "ideal"])
def test_a_batch_gives_each_scenario_the_numbers_it_has_alone(trace, baseline, monkeypatch):
    """Scenarios share selections, are simulated in another order and in slices of a few columns: no column
    sees another's changes, and each has the numbers (weights, step times, warnings) of a run of its own."""
    entries = [e for e in MIXED if not (baseline == "ideal" and e.get("ideal"))]
    monkeypatch.setattr(whatif, "CHUNK_BYTES", 1)  # slices of MIN_CHUNK_COLUMNS columns
    result = run_whatif(trace, scenarios(*entries, baseline=baseline))
    assert not np.array_equal(result.batch.order, np.arange(result.batch.n_scenarios))  # shared edits side by side
    warned = []
    for k, entry in enumerate(entries, start=1):
        alone = run_whatif(trace, scenarios(entry, baseline=baseline))
        np.testing.assert_array_equal(result.column_weight(k), alone.column_weight(1))
        np.testing.assert_array_equal(result.weight[:, k], alone.weight[:, 1])
        np.testing.assert_array_equal(result.step_time[:, k - 1], alone.step_time[:, 0])
        assert result.speedup[entry["name"]] == alone.speedup[entry["name"]]
        warned += alone.warnings
        chosen = whatif.choose_scenario(trace, entry["name"], scenarios=scenarios(*entries, baseline=baseline))
        np.testing.assert_array_equal(chosen.weight, result.column_weight(k))
    np.testing.assert_array_equal(result.baseline_span, alone.baseline_span)
    assert result.warnings == warned


def test_a_batch_holds_edits_not_columns(trace):
    """What a batch keeps (and a cluster is sent) grows with the distinct selections, not with ops × scenarios."""
    many = [
        {"name": f"s{i}", "where": {"optype": [COMPUTE[i % 2]]}, "scale": {"duration": 0.5 + i / 200}}
        for i in range(100)
    ]
    batch = run_whatif(trace, scenarios(*many)).batch
    held = sum(a.nbytes for a in (batch.weight, batch.column, batch.value, *batch.targets, *batch.values))
    assert batch.n_scenarios == 101 and len(batch.targets) == 2 * 3  # two selections: all, local, members
    assert held < 0.1 * 8 * len(batch.weight) * batch.n_scenarios


def test_times_are_kept_only_when_asked(trace, tmp_path):
    entries = scenarios(
        {"name": "ideal", "ideal": True}, {"name": "pp", "where": {"optype": P2P}, "set": {"transfer": 0}}
    )
    lean, full = run_whatif(trace, entries), run_whatif(trace, entries, times=True)
    assert lean.simulation.start is None and lean.simulation.end is None
    assert full.simulation.start.shape == full.simulation.end.shape == (lean.dag.n_ops, 3)
    np.testing.assert_array_equal(lean.step_time, full.step_time)
    np.testing.assert_array_equal(lean.baseline_span, full.baseline_span)
    with pytest.raises(graphwia.UsageError, match="times=True"):
        write_whatif_timelines(lean, tmp_path / "tl")
    with pytest.raises(graphwia.UsageError, match="times=True"):
        whatif_critical_path(lean, "pp")
    paths = whatif_critical_path(full, "pp")
    alone = scenario_critical_path(trace, "pp", scenarios=entries)
    assert paths.step_time == alone.step_time and paths.elements.equals(alone.elements)
    with pytest.raises(graphwia.ArgumentError, match="times: every op's times come from a local run"):
        run_whatif(trace, entries, times=True, workers=2)


def test_the_cli_keeps_times_for_timelines_only(files, tmp_path, monkeypatch):
    asked = []
    real = whatif.run_whatif

    def spy(*args, **kwargs):
        asked.append(kwargs["times"])
        return real(*args, **kwargs)

    monkeypatch.setattr(whatif, "run_whatif", spy)
    for extra in ([], ["--timelines", tmp_path / "tl"]):
        run = invoke("whatif", files / "trace-job.parquet", "--scenarios", files / "good.yaml", "--json", *extra)
        assert run.exit_code == 0, run.output
    assert asked == [False, True]


def test_the_cli_refuses_timelines_that_cannot_fit_in_memory(files, tmp_path, monkeypatch):
    from graphwia.engine import evaluate as engine

    monkeypatch.setattr(engine, "physical_memory", lambda: 1000)
    args = ("whatif", files / "trace-job.parquet", "--scenarios", files / "good.yaml", "--timelines", tmp_path / "tl")
    run = invoke(*args)
    assert run.exit_code == 2 and run.stdout == "", run.output
    assert re.fullmatch(
        r"graphwia: error: --timelines: every op's start and end in 3 scenario\(s\) of [\d,]+ op instances take "
        r"[\d.]+ GB, more than this machine's 0\.0 GB of memory: simulate fewer scenarios or steps\n",
        run.stderr,
    ), run.stderr


def many_scenarios(n: int) -> str:
    """A scenario file of ``n`` scenarios, as the benchmark writes it."""
    import yaml

    entries = [
        {
            "name": f"s{i}",
            "where": {"optype": [COMPUTE[i % 2]], **({"stage": ["last"]} if i % 3 == 0 else {})},
            "scale": {"duration": round(0.5 + (i + 0.5) / n, 6)},
        }
        for i in range(n)
    ]
    return yaml.safe_dump({"baseline": "nodelay", "scenarios": entries}, sort_keys=False)


def test_a_thousand_scenario_file_loads_with_every_yaml_guard_on(tmp_path):
    """libyaml parses a large scenario file (when PyYAML has it); the guards still refuse aliases, deep
    nesting and long integers, anywhere in the file, with the messages PyYAML's own loader gives."""
    import yaml

    text = many_scenarios(1000)
    path = tmp_path / "many.yaml"
    path.write_text(text)
    loaded = load_scenarios(path)
    assert len(loaded.scenarios) == 1000 and loaded.scenarios[999].scale == {"duration": 1.4995}
    *fast, reference = io._loader_classes()
    assert len(fast) == int(yaml.__with_libyaml__)
    for loader in (*fast, reference):
        assert io._load_yaml(loader, text) == yaml.safe_load(text)
    end = text.count("\n") + 1  # the line a tail starts on
    for tail, culprit in [
        ("extra: &a [1]\nagain: *a\n", f"line {end + 1}, column 8: aliases (*name) are not allowed"),
        ("extra: " + "[" * 40 + "]" * 40 + "\n", f"line {end}, column 39: nested deeper than 32"),
        ("extra: " + "7" * 50 + "\n", f"line {end}, column 8: integer of 50 characters is too long"),
        (
            "extra: 1\nextra: 2\n",
            f"line {end + 1}, column 1: key 'extra' appears twice in one mapping (first on line {end})",
        ),
    ]:
        path.write_text(text + tail)
        with pytest.raises(ScenarioError, match=f"many.yaml: not a readable YAML file \\({re.escape(culprit)}"):
            load_scenarios(path)
        for loader in fast:  # refused by the fast loader itself, not only by the reference one
            with pytest.raises(yaml.YAMLError):
                io._load_yaml(loader, text + tail)


@pytest.mark.parametrize(
    "text",
    [
        "scenarios: [\n",  # libyaml: "did not find expected ',' or ']'"
        "scenarios:\n\t- name: x\n",  # libyaml: "found character that cannot start any token"
        'scenarios:\n  - name: "bad\\udc80"\n    ideal: true\n',  # libyaml refuses an escaped lone surrogate
        "scenarios:\n  - name: a\x07\n",  # a control character
    ],
)
def test_yaml_errors_and_data_are_pyyaml_s_own(tmp_path, text):
    """Where libyaml words an error differently or refuses what PyYAML reads, read_yaml says what PyYAML says."""
    import yaml

    path = tmp_path / "s.yaml"
    path.write_text(text, errors="surrogatepass")
    reference = io._loader_classes()[-1]
    try:
        expected = io._load_yaml(reference, text)
    except yaml.YAMLError as exc:
        with pytest.raises(ScenarioError) as err:
            io.read_yaml(path, ScenarioError, "scenario")
        problem = io._yaml_problem(exc) if isinstance(exc, yaml.MarkedYAMLError) else str(exc).splitlines()[0]
        assert str(err.value) == f"{path}: not a readable YAML file ({problem})"
    else:
        assert io.read_yaml(path, ScenarioError, "scenario") == expected


@pytest.mark.parametrize(
    "text, culprit",
    [
        (
            "scenarios:\n  - name: x\n    scale: {duration: 0.5}\n    scale: {transfer: 0.5}\n",
            "line 4, column 5: key 'scale' appears twice in one mapping (first on line 3)",
        ),
        (
            "scenarios:\n  - {name: x, ideal: true, name: y}\n",
            "line 2, column 28: key 'name' appears twice in one mapping (first on line 2)",
        ),
        (
            "baseline: base\nscenarios:\n  - {name: x, ideal: true}\nbaseline: nodelay\n",
            "line 4, column 1: key 'baseline' appears twice in one mapping (first on line 1)",
        ),
        (
            "scenarios:\n  - name: x\n    where:\n      stage: [0]\n      stage: [1]\n    ideal: true\n",
            "line 5, column 7: key 'stage' appears twice in one mapping (first on line 4)",
        ),
    ],
)
def test_a_key_twice_in_one_mapping_is_refused_with_its_lines(tmp_path, text, culprit):
    """PyYAML keeps the last of two equal keys silently; read_yaml refuses them, with both lines."""
    import yaml

    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as err:
        load_scenarios(path)
    assert str(err.value) == f"{path}: not a readable YAML file ({culprit})"
    for loader in io._loader_classes():  # the fast loader refuses it too
        with pytest.raises(yaml.YAMLError):
            io._load_yaml(loader, text)


def test_one_key_in_different_mappings_and_a_merged_key_overridden_are_fine(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("a: {x: 1}\nb: {x: 2}\nc:\n  <<: {x: 3, y: 4}\n  x: 5\n")
    assert io.read_yaml(path, ScenarioError, "scenario") == {"a": {"x": 1}, "b": {"x": 2}, "c": {"x": 5, "y": 4}}


# -- the published trace ST ------------------------------------------------------------------


@requires_data
def test_st_communication_what_ifs():
    result = run_whatif(
        real_trace("ST"),
        scenarios(
            {"name": "no-pp-comm", "where": {"optype": P2P}, "set": {"transfer": 0}},
            {"name": "no-dp-comm", "where": {"optype": DP_COMM}, "set": {"transfer": 0}},
            {"name": "all-ideal", "ideal": True},
        ),
    )
    assert result.speedup["no-pp-comm"] == pytest.approx(1.0012517, abs=1e-6)
    assert result.speedup["no-dp-comm"] == pytest.approx(1.0392969, abs=1e-6)
    assert result.speedup["all-ideal"] == pytest.approx(published("result", "ST")["blocking_slowdown"], rel=1e-4)


@requires_data
def test_st_healthy_worker_unlike_ideal_does_not_slow_the_job():
    worker = {"dp_rank": [0], "stage": [0]}
    result = run_whatif(
        real_trace("ST"),
        scenarios(
            {"name": "ideal", "where": worker, "ideal": True}, {"name": "healthy", "where": worker, "healthy": True}
        ),
    )
    # Stage 0's forwards (0.067 s) are faster than the job-wide mean (0.085 s): ideal slows (0, 0) down.
    assert result.speedup["ideal"] < 0.995
    # (0, 0) is a healthy worker: making it typical of its stage changes the job by less than 0.1%
    # (the residue is the variation of its op times, replaced by a constant).
    assert result.speedup["healthy"] == pytest.approx(1.0, abs=1e-3)


@requires_data
def test_ar_healing_the_straggler_under_base_warns():
    entry = {"name": "heal-0-0", "where": {"dp_rank": [0], "stage": [0]}, "healthy": True}
    under_base = run_whatif(real_trace("AR"), scenarios(entry, baseline="base"))
    under_nodelay = run_whatif(real_trace("AR"), scenarios(entry))
    assert under_base.speedup["heal-0-0"] < 1.05 and under_nodelay.speedup["heal-0-0"] > 1.5
    assert len(under_base.warnings) == 1 and "scenario 'heal-0-0'" in under_base.warnings[0]
    assert not under_nodelay.warnings


# -- the command line --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp("whatif-cli")
    write_synth(out, "job", dp=2, pp=2, microbatches=4, steps=3, seed=7, slow_workers=[SLOW])
    good = out / "good.yaml"
    good.write_text(
        "scenarios:\n  - {name: ideal, ideal: true}\n"
        "  - {name: no-pp, where: {optype: [forward-send, forward-recv]}, set: {transfer: 0}}\n"
    )
    bad = out / "bad.yaml"
    bad.write_text("scenarios:\n  - {name: oops, where: {optype: [fwd]}, set: {transfer: 0}}\n")
    return out


def invoke(*args):
    from graphwia.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_json_and_table(files, tmp_path):
    trace_path, meta_path = files / "trace-job.parquet", files / "meta-job.yaml"
    run = invoke("whatif", trace_path, "--meta", meta_path, "--scenarios", files / "good.yaml", "--json")
    assert run.exit_code == 0, run.output
    data = json.loads(run.stdout)
    assert data["baseline"] == "nodelay" and [s["name"] for s in data["scenarios"]] == ["ideal", "no-pp"]
    expected = run_whatif(graphwia.load_trace(trace_path, meta_path), load_scenarios(files / "good.yaml"))
    assert data["scenarios"][0]["speedup"] == pytest.approx(expected.speedup["ideal"], rel=1e-12)

    run = invoke(
        "whatif",
        trace_path,
        "--scenarios",
        files / "good.yaml",
        "--per-step",
        "--steps",
        "1-2",
        "--timelines",
        tmp_path / "tl",
    )
    assert run.exit_code == 0, run.output
    assert "no-pp" in run.stdout and "speedup per step" in run.stdout
    assert sorted(p.name for p in (tmp_path / "tl").iterdir() if not p.name.startswith(".graphwia")) == [
        "whatif-ideal-job.json.gz",
        "whatif-no-pp-job.json.gz",
    ]


def test_cli_prints_warnings_on_stderr_one_line_each(tmp_path):
    blocked = blocked_peer_trace()
    trace_path, meta_path = tmp_path / "trace-blocked.parquet", tmp_path / "meta-blocked.yaml"
    blocked.ops.drop(columns="end").to_parquet(trace_path)
    meta_path.write_text(json.dumps(blocked.meta.to_dict()))
    spec = tmp_path / "heal.yaml"
    spec.write_text(json.dumps({"baseline": "base", "scenarios": [HEAL, dict(HEAL, name="heal-too")]}))
    run = invoke("whatif", trace_path, "--scenarios", spec, "--json")
    assert run.exit_code == 0, run.output
    warnings = run.stderr.strip().splitlines()
    assert len(warnings) == 2 and all(w.startswith("graphwia: warning: ") for w in warnings)
    assert "'heal'" in warnings[0] and "'heal-too'" in warnings[1]
    assert [s["name"] for s in json.loads(run.stdout)["scenarios"]] == ["heal", "heal-too"]


def test_cli_typical_from_and_steps(files):
    trace_path = files / "trace-job.parquet"
    run = invoke("whatif", trace_path, "--scenarios", files / "good.yaml", "--steps", "1-2")
    assert run.exit_code == 0, run.output
    assert "(typical weights from these steps)" in run.stdout
    run = invoke("whatif", trace_path, "--scenarios", files / "good.yaml", "--steps", "1-2", "--typical-from", "all")
    assert run.exit_code == 0, run.output
    assert "(typical weights from all 3 steps)" in run.stdout
    run = invoke("whatif", trace_path, "--scenarios", files / "good.yaml", "--typical-from", "some")
    assert run.exit_code == 2 and "'some' is not one of" in run.output


def test_cli_bad_scenario_file_is_one_line(files):
    run = invoke("whatif", files / "trace-job.parquet", "--scenarios", files / "bad.yaml")
    assert run.exit_code == 2
    assert "unknown optype 'fwd'" in run.stderr and "scenario 'oops'" in run.stderr
    assert "Traceback" not in run.output and len(run.stderr.strip().splitlines()) == 1
