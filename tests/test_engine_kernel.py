"""The compiled kernel against the numpy one: the same numbers, bit for bit (issue 14).

Both kernels, and the change-propagating one for swap families, must give
identical start/end times, step times and spans on the three real traces and
on synthetic jobs of every shape, with launch delays and ``times=True``.
A Simulation owns its arrays: evaluating again never changes an earlier result.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from conftest import real_trace, requires_data
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import graphwia
from graphwia.engine import evaluate as engine
from graphwia.engine import kernels
from graphwia.engine.scenarios import Dense, Swap, parts
from graphwia.model.weights import ideal_weight, weighted_dag
from graphwia.synth.generate import synthesize

FIELDS = ("start", "end", "step_time", "span")

SYNTH_SHAPES = {
    "1f1b": dict(dp=3, pp=4, microbatches=6, steps=3),
    "interleaved": dict(dp=2, pp=2, vpp=2, microbatches=4, steps=2),
    "no-pp": dict(dp=4, pp=1, microbatches=3, steps=2),
    "no-dp": dict(dp=1, pp=3, microbatches=5, steps=2),
    "dp-not-overlapped": dict(dp=2, pp=2, microbatches=3, steps=2, dp_overlap=False),
    "slow-worker": dict(dp=4, pp=2, microbatches=4, steps=3, slow_workers=[(1, 1, 1.5)]),
}


def _weighted(trace):
    dag, weights, typical = weighted_dag(trace)
    return dag, dag.compile(), weights, ideal_weight(dag, typical)


def _worker_codes(dag) -> np.ndarray:
    return dag.table["dp_rank"].astype(np.int64) * dag.meta.pp_size + dag.table["stage"]


def _assert_same(a, b, fields=FIELDS):
    for field in fields:
        x, y = getattr(a, field), getattr(b, field)
        assert x is not None and y is not None, field
        assert np.array_equal(x, y), f"{field} differs by up to {np.nanmax(np.abs(x - y))}"


def _check_kernels(dag, compiled, weights, ideal, seed=0):
    """Dense with delays and times, and both swap forms, on all three kernels."""
    rng = np.random.default_rng(seed)
    n = dag.n_ops
    dense_weight = np.column_stack([weights.weight, weights.weight, ideal, weights.weight * rng.uniform(0.5, 1.5, n)])
    dense_delay = np.column_stack([weights.delay, np.zeros(n), np.zeros(n), rng.uniform(0, 0.01, n)])
    by_numpy = compiled.evaluate(dense_weight, dense_delay, kernel="numpy")
    by_kernel = compiled.evaluate(dense_weight, dense_delay, kernel="compiled")
    _assert_same(by_numpy, by_kernel)
    steps_only = compiled.evaluate(dense_weight, dense_delay, kernel="numpy", times=False)
    _assert_same(by_numpy, steps_only, fields=("step_time", "span"))

    codes = _worker_codes(dag)
    n_groups = int(codes.max()) + 1
    families = [
        Swap(ideal, codes, n_groups, chosen_weight=weights.weight),
        Swap(weights.weight, codes, n_groups, delay=np.zeros(n), chosen_delay=weights.delay),
    ]
    for family in families:
        expected = compiled.evaluate_family(family, kernel="numpy", times=True)
        _assert_same(expected, compiled.evaluate_family(family, kernel="compiled", times=True))
        # Without times, the numpy kernel writes the swap columns straight into its layout and takes
        # the step maxima a block of rows at a time: still the same numbers.
        steps_only = compiled.evaluate_family(family, kernel="numpy", times=False)
        _assert_same(expected, steps_only, fields=("step_time", "span"))
        chosen_delay = None if family.delay is None else family.chosen_delays[:, None]
        step_time, span = kernels.propagate(
            compiled.plan,
            compiled.n_steps,
            n_groups,
            family.weight[:, None],
            None if family.delay is None else family.delay[:, None],
            family.chosen_weights[:, None],
            chosen_delay,
            codes,
        )
        assert np.array_equal(step_time, expected.step_time) and np.array_equal(span, expected.span)


@requires_data
@pytest.mark.parametrize("name", ["ST", "SE", "AR"])
def test_kernels_agree_on_real_traces(name):
    _check_kernels(*_weighted(real_trace(name)))


@pytest.mark.parametrize("shape", sorted(SYNTH_SHAPES))
def test_kernels_agree_on_synthetic_jobs(shape):
    frame, meta = synthesize(seed=3, **SYNTH_SHAPES[shape])
    _check_kernels(*_weighted(graphwia.Trace.from_frame(frame, meta)), seed=len(shape))


def test_every_analysis_family_agrees_whatever_the_kernel():
    """The full analysis is the same number for number when every family runs on the compiled kernel."""
    frame, meta = synthesize(dp=4, pp=2, microbatches=4, steps=2, seed=2, slow_workers=[(2, 1, 1.4)])
    trace = graphwia.Trace.from_frame(frame, meta)
    by_numpy = graphwia.analyze(trace)
    from graphwia.engine import kernels as loaded  # noqa: F401  (once loaded, "auto" takes the compiled kernel)

    assert "graphwia.engine.kernels" in __import__("sys").modules
    again = graphwia.analyze(trace)
    assert again.slowdown == by_numpy.slowdown and again.launch_slowdown == by_numpy.launch_slowdown
    assert again.blocking == by_numpy.blocking and again.launch == by_numpy.launch
    assert again.ms == by_numpy.ms and again.mw == by_numpy.mw


def test_plan_order_is_topological_and_keeps_every_edge(job_dag):
    dag, compiled = job_dag
    plan = compiled.plan
    target = plan.n_sources + np.repeat(np.arange(len(plan.ptr) - 1), np.diff(plan.ptr))
    assert np.all(plan.src // 2 < target)  # every value is read after it is written
    assert len(plan.src) == len(compiled._src) and plan.n_nodes == compiled.n_step_nodes
    assert sorted(plan.op_at[plan.op_at >= 0]) == list(range(compiled.per_step))


@pytest.fixture
def job_dag():
    frame, meta = synthesize(dp=2, pp=3, microbatches=4, steps=2, seed=1)
    dag = graphwia.build_dag(graphwia.Trace.from_frame(frame, meta))
    return dag, dag.compile()


@pytest.mark.parametrize("kernel", ["numpy", "compiled"])
def test_a_result_owns_its_times(job_dag, kernel):
    """Issue 18 item 7: evaluating again used to overwrite the previous result's start times."""
    dag, compiled = job_dag
    weights = graphwia.observed_weights(dag)
    first = compiled.evaluate(weights.weight, weights.delay, kernel=kernel)
    compiled.evaluate(weights.weight * 3, weights.delay + 1, kernel=kernel)
    fresh = dag.compile().evaluate(weights.weight, weights.delay, kernel=kernel)
    _assert_same(first, fresh)
    single_step = dag.select_steps(dag.steps[:1]).compile()  # one step: no reshape copy to hide behind
    w = weights.weight[: single_step.n_ops]
    first = single_step.evaluate(w, None, kernel=kernel)
    start = first.start.copy()
    single_step.evaluate(w * 2, None, kernel=kernel)
    assert np.array_equal(first.start, start)


def test_two_whatif_runs_on_one_analysis_keep_their_own_times():
    from graphwia.analyses.whatif import parse_scenarios, run_whatif

    frame, meta = synthesize(dp=2, pp=2, microbatches=3, steps=2, seed=4)
    analysis = graphwia.analyze(graphwia.Trace.from_frame(frame, meta), per_worker=False)
    faster = parse_scenarios({"scenarios": [{"name": "fast", "scale": {"duration": 0.5}}]})
    slower = parse_scenarios({"scenarios": [{"name": "slow", "scale": {"duration": 2.0}}]})
    first = run_whatif(analysis, faster, times=True)
    expected = first.simulation.start.copy(), first.simulation.end.copy()
    run_whatif(analysis, slower, times=True)
    assert np.array_equal(first.simulation.start, expected[0]) and np.array_equal(first.simulation.end, expected[1])


def test_kernel_choice(job_dag):
    _, compiled = job_dag
    assert compiled.use_compiled("compiled", 1) and not compiled.use_compiled("numpy", 10**9)
    assert compiled.use_compiled("auto", engine.COMPILED_MIN_WORK // compiled.n_ops + 1)
    with pytest.raises(ValueError, match="kernel 'fast' is not one of auto, numpy, compiled"):
        compiled.use_compiled("fast", 1)


def test_family_parts_cover_the_family_and_evaluate_to_its_columns(job_dag):
    dag, compiled = job_dag
    weights = graphwia.observed_weights(dag)
    codes = _worker_codes(dag)
    family = Swap(weights.weight * 0.5, codes, int(codes.max()) + 1, chosen_weight=weights.weight)
    assert parts(7, 3) == [(0, 2), (2, 5), (5, 7)] and parts(2, 5) == [(0, 1), (1, 2)]
    whole = compiled.evaluate_family(family, kernel="numpy")
    pieces = [compiled.evaluate_family(family.part(lo, hi), kernel="compiled") for lo, hi in parts(6, 4)]
    assert np.array_equal(np.hstack([p.step_time for p in pieces]), whole.step_time)
    dense = Dense(np.column_stack([weights.weight, weights.weight * 2]))
    assert np.array_equal(
        compiled.evaluate_family(dense.part(1, 2)).span[:, 0], compiled.evaluate_family(dense).span[:, 1]
    )


def test_a_detached_compiled_dag_pickles_and_evaluates_the_same(job_dag):
    dag, compiled = job_dag
    weights = graphwia.observed_weights(dag)
    twin = pickle.loads(pickle.dumps(compiled.detached()))
    assert twin.dag is None and compiled.dag is dag
    _assert_same(twin.evaluate(weights.weight, weights.delay), compiled.evaluate(weights.weight, weights.delay))


def _python(code: str, **environment: str) -> subprocess.CompletedProcess:
    """``code`` run by a fresh interpreter (this one's), with ``environment`` added to this process's."""
    env = dict(os.environ, **environment)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


def test_a_small_analysis_never_imports_numba():
    """numba costs 0.3-0.4 s to import: more than analysing a trace of 10^5 ops takes."""
    code = (
        "import sys\nimport graphwia\nfrom graphwia.synth.generate import synthesize\n"
        "graphwia.analyze(graphwia.Trace.from_frame(*synthesize(dp=4, pp=4, microbatches=8, steps=4, seed=1)))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numba', 'llvmlite', 'distributed')))"
    )
    result = _python(code)
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr


def test_the_disk_cache_is_known_to_be_empty_before_the_first_compile(tmp_path):
    """An empty numba cache (the first run after installing): is_compiled says so, without compiling."""
    result = _python("from graphwia.engine import kernels\nprint(kernels.is_compiled())", NUMBA_CACHE_DIR=str(tmp_path))
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, "False", "")
    assert not list(tmp_path.rglob("*.nbi")), "asking compiled something"


def test_the_disk_cache_is_known_to_hold_the_kernels_once_compiled(job_dag, monkeypatch):
    _, compiled = job_dag
    kernels.compile_all(compiled.plan)  # compiles them into the disk cache, or loads them from it
    result = _python("from graphwia.engine import kernels\nprint(kernels.is_compiled(), kernels._relax.signatures)")
    assert (result.returncode, result.stdout.strip()) == (0, "True []"), result.stderr  # on disk, not loaded yet
    # Loaded in this process: compiled, even where numba keeps no disk cache (nothing to say a second time).
    monkeypatch.setattr(kernels, "CACHING", False)
    assert kernels.is_compiled()


def test_without_a_writable_cache_the_kernels_compile_uncached_and_say_so(tmp_path):
    """numba refuses cache=True where no cache directory is writable (a read-only install and home, as in
    some containers): graphwia then compiles without the disk cache, and says that every run will."""
    code = (
        "from graphwia.engine import kernels\n"
        "print(kernels.CACHING, kernels.is_compiled(), type(kernels._relax._cache).__name__)"
    )
    unwritable = tmp_path / "file" / "cache"  # under a regular file: no directory can be made there
    (tmp_path / "file").write_text("")
    result = _python(code, NUMBA_CACHE_DIR=str(unwritable), NUMBA_CACHE_LOCATOR_CLASSES="UserProvidedCacheLocator")
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, "False False NullCache", "")


def test_compile_label_names_the_missing_cache(job_dag, monkeypatch, cold_cache):
    _, compiled = job_dag
    labels: list[str] = []
    monkeypatch.setattr(kernels, "CACHING", False)
    compiled.load_compiled_kernel(labels.append)
    assert labels == [engine.UNCACHED_LABEL] and "NUMBA_CACHE_DIR" in labels[0] and cold_cache == [compiled.plan]
    # A progress line of 80 columns keeps about 10 for the spinner and the elapsed time: the hint must fit.
    assert max(len(engine.COMPILING_LABEL), len(engine.UNCACHED_LABEL)) <= 70


@pytest.fixture
def cold_cache(monkeypatch):
    """The kernels as if not cached yet; the plans compile_all is asked to compile are recorded."""
    compiled_plans = []
    monkeypatch.setattr(kernels, "is_compiled", lambda: False)
    monkeypatch.setattr(kernels, "compile_all", compiled_plans.append)
    return compiled_plans


@pytest.mark.parametrize("cached", [False, True])
def test_analyze_says_when_it_compiles_the_kernel(job_dag, monkeypatch, cold_cache, cached):
    """The first run after installing compiles the kernel for 30-50 s: the progress callback hears of it first."""
    dag, _ = job_dag
    if cached:
        monkeypatch.setattr(kernels, "is_compiled", lambda: True)
    labels: list[str] = []
    graphwia.analyze(dag.trace, per_worker=False, progress=labels.append)  # kernels loaded: "auto" is compiled
    assert (engine.COMPILING_LABEL in labels) is not cached and len(cold_cache) == (not cached)
    if not cached:
        assert labels.index(engine.COMPILING_LABEL) < labels.index("simulating base, no-delay and ideal")


def test_whatif_says_when_it_compiles_the_kernel(job_dag, cold_cache):
    from graphwia.analyses.whatif import parse_scenarios, run_whatif

    dag, _ = job_dag
    labels: list[str] = []
    scenarios = parse_scenarios({"scenarios": [{"name": "fast", "scale": {"duration": 0.5}}]})
    result = run_whatif(dag.trace, scenarios, progress=labels.append)
    assert labels == [engine.COMPILING_LABEL] and len(cold_cache) == 1
    assert result.speedup["fast"] > 1


def _replay_registers(plan) -> None:
    """Walk ``plan`` as the kernel does, each register holding the slot last written to it: every edge must
    find the slot it reads (sources: register 0) still there."""
    held = np.full(plan.n_registers, -1)
    held[0] = -2  # the sources' time
    for i in range(len(plan.ptr) - 1):
        node = plan.n_sources + i
        edges = range(plan.ptr[i], plan.ptr[i + 1])
        for e in edges:
            expected = -2 if plan.src[e] < 2 * plan.n_sources else plan.src[e]
            assert held[plan.reg_src[e]] == expected, f"edge {e} into node {node}: register overwritten"
        held[plan.reg_time[i]] = 2 * node
        if plan.target_op[i] >= 0:
            if plan.local[i]:
                held[plan.reg_end[i]] = 2 * node + 1
        else:
            for e in edges:
                assert plan.member_op[e] == plan.op_at[plan.src[e] // 2]
                held[plan.reg_member[e]] = plan.src[e] | 1
        assert held[0] == -2, "register 0 (time 0) was reused"


@pytest.mark.parametrize("shape", ["1f1b", "interleaved", "no-pp", "dp-not-overlapped"])
def test_registers_are_never_overwritten_while_still_to_be_read(shape):
    frame, meta = synthesize(**SYNTH_SHAPES[shape], seed=2)
    plan = graphwia.build_dag(graphwia.Trace.from_frame(frame, meta)).compile().plan
    _replay_registers(plan)
    assert plan.n_registers < plan.n_nodes  # fewer registers than nodes, let alone slots (two per node)


def test_registers_grow_with_the_frontier_not_with_the_step():
    frame, meta = synthesize(dp=16, pp=4, microbatches=8, steps=1, seed=0)
    plan = graphwia.build_dag(graphwia.Trace.from_frame(frame, meta)).compile().plan
    _replay_registers(plan)
    assert plan.n_registers * 10 < 2 * plan.n_nodes, (plan.n_registers, plan.n_nodes)


EDITED_SCENARIOS = {
    "baseline": "base",
    "scenarios": [
        {"name": "faster-last-stage", "where": {"stage": ["last"]}, "scale": {"duration": 0.5}},
        {"name": "typical", "ideal": True, "scale": {"launch_delay": 0.5}},
        {"name": "healthy-dp-0", "where": {"dp_rank": [0]}, "healthy": True},
        {"name": "no-comm", "set": {"transfer": 0}},
        {"name": "no-launch", "set": {"launch_delay": 0}, "scale": {"duration": 1.25}},
        {"name": "slower-backward", "where": {"optype": ["backward-compute"]}, "scale": {"duration": 2}},
    ],
}


def _check_edited(result, *, every_kind: bool = True) -> None:
    """A what-if result's batch (an Edited family, its masking columns included) on both kernels, and in
    parts; with ``every_kind``, first that it holds every kind of edit, launch delays and masking columns."""
    batch, compiled = result.batch, result.dag.compile()
    if every_kind:
        assert batch.has_delay and batch.zero_delay.any() and len(set(batch.kind.tolist())) == 3
    expected = compiled.evaluate_family(batch, kernel="numpy", times=True)
    _assert_same(expected, compiled.evaluate_family(batch, kernel="compiled", times=True))
    order = batch.order
    for lo, hi in parts(batch.n_scenarios, 3):
        part = compiled.evaluate_family(batch.part(lo, hi), kernel="compiled")
        assert np.array_equal(part.step_time, expected.step_time[:, order[lo:hi]])


@pytest.mark.parametrize("shape", ["1f1b", "interleaved", "slow-worker"])
def test_edited_families_agree_on_both_kernels(shape):
    from graphwia.analyses.whatif import parse_scenarios, run_whatif

    frame, meta = synthesize(seed=5, **SYNTH_SHAPES[shape])
    _check_edited(run_whatif(graphwia.Trace.from_frame(frame, meta), parse_scenarios(EDITED_SCENARIOS)))


@requires_data
def test_edited_families_agree_on_both_kernels_on_a_real_trace():
    from graphwia.analyses.whatif import parse_scenarios, run_whatif

    _check_edited(run_whatif(real_trace("ST"), parse_scenarios(EDITED_SCENARIOS)))


@st.composite
def _whatif_cases(draw) -> tuple[dict, dict]:
    """A small synthetic job (synthesize() arguments) and a what-if file of 1-5 random scenarios for it.

    Each scenario selects at random and acts at random, never setting and scaling one quantity, and
    touching launch delays only where the baseline has them; a scenario may still change nothing
    (run_whatif refuses it, and the case is skipped).
    """
    shape = dict(
        dp=draw(st.integers(1, 3)),
        pp=draw(st.integers(1, 3)),
        microbatches=draw(st.integers(1, 4)),
        steps=draw(st.integers(1, 3)),
        seed=draw(st.integers(0, 3)),
    )
    baseline = draw(st.sampled_from(["nodelay", "base", "ideal"]))
    quantities = ["duration", "transfer"] + (["launch_delay"] if baseline == "base" else [])
    scenarios = []
    for i in range(draw(st.integers(1, 5))):
        where = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "optype": st.lists(
                        st.sampled_from(["forward-compute", "backward-compute", "optimizer"]), min_size=1
                    ),
                    "stage": st.lists(st.sampled_from([0, "last"]), min_size=1),
                    "dp_rank": st.lists(st.integers(0, shape["dp"] - 1), min_size=1),
                },
            )
        )
        # Transfer times belong to communication ops, which the optype choices below never are.
        chosen = draw(st.permutations([q for q in quantities if q != "transfer" or "optype" not in where]))
        n_set = draw(st.integers(0, len(chosen)))
        n_scale = draw(st.integers(0 if n_set else 1, len(chosen) - n_set))
        scenario = {"name": f"s{i}", "where": where}
        if n_set:  # (a duration of 0 could make a whole step take 0 s, which run_whatif refuses)
            scenario["set"] = {q: draw(st.sampled_from([1e-4, 0.01] + [0] * (q != "duration"))) for q in chosen[:n_set]}
        if n_scale:
            factors = {q: [0.5, 1.25, 2.0] + [0] * (q != "duration") for q in chosen}
            scenario["scale"] = {q: draw(st.sampled_from(factors[q])) for q in chosen[n_set : n_set + n_scale]}
        if baseline != "ideal" and draw(st.booleans()):
            scenario["ideal"] = True
        scenarios.append(scenario)
    return shape, {"baseline": baseline, "scenarios": scenarios}


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(case=_whatif_cases())
def test_random_what_if_batches_agree_on_both_kernels(case):
    """Any what-if batch (random selections, actions and baseline on a random small job): both kernels
    give the same times, bit for bit, and so do its parts."""
    from graphwia.analyses.whatif import ScenarioError, parse_scenarios, run_whatif

    shape, document = case
    frame, meta = synthesize(**shape)
    try:
        result = run_whatif(graphwia.Trace.from_frame(frame, meta), parse_scenarios(document))
    except ScenarioError:
        assume(False)  # a scenario that changes nothing, or selects no op: refused, as it should be
    _check_edited(result, every_kind=False)
