"""Custom what-if scenarios: "what if these ops took that long?".

The analyses of SPEC §5 ask one question each (what if nothing straggled, what
if a group of ops were typical). This module asks the user's questions. A
scenario file names a *baseline* and a list of *scenarios*; a scenario selects
op instances and changes their weights::

    baseline: nodelay              # nodelay (default) | base | ideal
    scenarios:
      - name: no-pp-comm
        where: {optype: [forward-pp-comm, backward-pp-comm]}
        set: {transfer: 0}
      - name: last-stage-faster
        where: {stage: [last], optype: [forward-compute, backward-compute]}
        scale: {duration: 0.8}
      - name: healthy-worker-0-0
        where: {dp_rank: [0], stage: [0]}
        healthy: true

Contract:

* Every scenario starts from the baseline's weights: ``base`` = observed
  weights and launch delays, ``nodelay`` = observed weights without launch
  delays, ``ideal`` = typical weights (SPEC §5.3) without launch delays.
  Under ``base`` a recorded launch delay is kept as it was, even where it was
  time a worker spent waiting for an op the scenario speeds up; so when a
  scenario changes weights under ``base``, the same weight changes are also
  simulated without launch delays, and a warning says so when the recorded
  delays absorb most of the effect (see :data:`MASKED_SHARE`).
* Typical values are taken over the analysed steps, or with
  ``typical_from="all"`` over every step of the trace (see
  :mod:`graphwia.model.weights`).
* ``where`` keeps the ops matching every key (values of one key are
  alternatives): ``optype`` (an optype, or ``forward-pp-comm`` /
  ``backward-pp-comm`` for both p2p optypes of a direction), ``stage``
  (numbers or ``last``), ``dp_rank``, ``rank``, ``step``, ``mb_id``. Without
  ``where`` a scenario selects every op.
* Actions on the selected ops, applied in this order: ``ideal: true`` (their
  weights become the typical weight of their optype over the whole job) or
  ``healthy: true`` (the typical weight of their optype among their *peers*:
  the ops of that optype on the same stage that the scenario does not select,
  e.g. the other workers of the stage; same statistic as SPEC §5.3, so a
  straggler's own ops do not pull up the value it is healed to); launch delays
  stay. Then ``set`` then ``scale`` of ``duration`` (weight of a local op),
  ``transfer`` (weight of a group member: its end − the latest start in its
  group) and ``launch_delay``. A ``set`` value is a number of seconds from 0
  to :data:`MAX_SECONDS`; a ``scale`` factor is 0 or from :data:`MIN_SCALE`
  to :data:`MAX_SCALE`.
* Speedup = mean span of the simulated baseline / mean simulated step time of
  the scenario (SPEC §4), overall and per step. Every step time, mean and
  speedup a result reports is a finite, positive number: a scenario whose
  numbers are not (its times overflow, every op on a path takes 0 s, a
  ratio overflows or underflows) raises :class:`ScenarioError` naming it.
* All scenarios and the baseline are evaluated as one batch
  (:class:`WhatIfBatch`, the engine's :class:`~graphwia.engine.scenarios.Edited`
  family: each scenario's changes kept apart from the baseline's weights, and
  applied by the compiled kernel itself), here or split over a dask cluster
  (``scheduler``, ``workers``) with the same results.
  Every op's simulated start and end are kept only when asked for
  (``times``: timelines, critical paths); step times always.

Anything a file gets wrong (an unknown key or value, a selector matching no
op, an action that changes no selected op's value) raises
:class:`ScenarioError` naming the file, the scenario and the key.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from graphwia.engine.evaluate import CompiledDag, Simulation
from graphwia.engine.scenarios import DELAY, SCALE, SET, VALUES, WEIGHT, ColumnBuffers, Dense, Edited
from graphwia.errors import ArgumentError, UsageError
from graphwia.model.dag import Dag
from graphwia.model.weights import (
    DEFAULT_TYPICAL_FROM,
    TypicalFrom,
    Weights,
    check_typical_from,
    healthy_weight,
    ideal_weight,
    stage_typical_weights,
    typical_source,
    weighted_dag,
)
from graphwia.optypes import ALL_OPTYPES, ATTRIBUTION_GROUP, OPTYPE_CODE
from graphwia.trace.optable import Trace
from graphwia.trace.steps import Steps, format_ranges
from graphwia.utils.io import read_yaml
from graphwia.utils.names import check_name

if TYPE_CHECKING:  # pragma: no cover
    from graphwia.analyses.standard import Analysis

__all__ = [
    "ACTIONS",
    "BASELINES",
    "CHUNK_BYTES",
    "ChosenScenario",
    "DEFAULT_BASELINE",
    "LAST",
    "MASKED_SHARE",
    "MASK_MIN_EFFECT",
    "MAX_SCALE",
    "MAX_SECONDS",
    "MIN_CHUNK_COLUMNS",
    "MIN_SCALE",
    "OPTYPE_GROUPS",
    "QUANTITIES",
    "SCENARIO_KEYS",
    "SELECTORS",
    "Scenario",
    "ScenarioError",
    "ScenarioSet",
    "TOP_KEYS",
    "WhatIfBatch",
    "WhatIfResult",
    "choose_scenario",
    "load_scenarios",
    "masked",
    "parse_scenarios",
    "run_whatif",
    "select_ops",
]

BASELINES = ("nodelay", "base", "ideal")
DEFAULT_BASELINE = "nodelay"
#: Selector keys; all but optype are integer columns of the op table.
SELECTORS = ("optype", "stage", "dp_rank", "rank", "step", "mb_id")
QUANTITIES = ("duration", "transfer", "launch_delay")
ACTIONS = ("set", "scale", "ideal", "healthy")
SCENARIO_KEYS = ("name", "where") + ACTIONS
TOP_KEYS = ("baseline", "scenarios")
LAST = "last"
#: Names ``where.optype`` accepts besides the optypes: the attribution groups of SPEC §5.4 that
#: stand for several optypes (``forward-pp-comm``: forward-send and forward-recv; likewise backward).
OPTYPE_GROUPS = {
    group: tuple(t for t in ALL_OPTYPES if ATTRIBUTION_GROUP[t] == group)
    for group in dict.fromkeys(ATTRIBUTION_GROUP.values())
    if group not in ALL_OPTYPES
}
#: Under baseline ``base``, a scenario whose weight changes move the mean step time by at least
#: MASK_MIN_EFFECT (relative) without launch delays, but by less than MASKED_SHARE of that
#: (same direction) with the recorded delays, gets a warning: the delays mask the change.
MASK_MIN_EFFECT = 0.01
MASKED_SHARE = 0.5
#: A ``scale`` factor is 0 or from MIN_SCALE to MAX_SCALE: a factor of 1e308 or 1e-320 models no
#: job, and its step times or speedups would overflow or underflow.
MIN_SCALE, MAX_SCALE = 1e-6, 1e6
#: A ``set`` value is a number of seconds from 0 to MAX_SECONDS (about 32 years).
MAX_SECONDS = 1e9


class ScenarioError(UsageError):
    """A scenario file or scenario that is malformed or does not fit the trace."""


@dataclass(frozen=True)
class Scenario:
    """One what-if: the ops ``where`` selects get ``ideal`` or ``healthy`` weights, then ``set``, then ``scale``.

    (See the module docstring for what each action means.)

    ``where`` maps a selector key to the accepted values (``stage`` may hold
    ``"last"``, ``optype`` a name of :data:`OPTYPE_GROUPS`); ``set`` / ``scale``
    map a quantity to a value / factor. ``ideal`` and ``healthy`` exclude each other.
    """

    name: str
    where: dict[str, tuple] = field(default_factory=dict)
    set: dict[str, float] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)
    ideal: bool = False
    healthy: bool = False


@dataclass(frozen=True)
class ScenarioSet:
    """A baseline and the scenarios measured against it."""

    scenarios: tuple[Scenario, ...]
    baseline: str = DEFAULT_BASELINE
    source: str = "<scenarios>"

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.scenarios]


# -- reading and validating -----------------------------------------------------------


def load_scenarios(path: str | Path) -> ScenarioSet:
    """Read and validate a scenario YAML file (see module docstring)."""
    return parse_scenarios(read_yaml(path, ScenarioError, "scenario"), source=str(path))


def parse_scenarios(raw: object, *, source: str = "<scenarios>") -> ScenarioSet:
    """Validate a scenario mapping (the parsed YAML) into a :class:`ScenarioSet`."""
    if not isinstance(raw, dict):
        raise ScenarioError(f"{source}: expected a mapping with keys {', '.join(TOP_KEYS)}")
    _reject_unknown(raw, TOP_KEYS, source)
    baseline = raw.get("baseline", DEFAULT_BASELINE)
    if baseline not in BASELINES:
        raise ScenarioError(f"{source}: baseline {baseline!r} is not one of {', '.join(BASELINES)}")
    entries = raw.get("scenarios")
    if not isinstance(entries, list) or not entries:
        raise ScenarioError(f"{source}: 'scenarios' must be a non-empty list")
    scenarios = tuple(_parse_scenario(entry, i, source) for i, entry in enumerate(entries))
    seen: set[str] = set()
    for scenario in scenarios:
        if scenario.name in seen:
            raise ScenarioError(f"{source}: scenario name {scenario.name!r} is used twice")
        seen.add(scenario.name)
    return ScenarioSet(scenarios=scenarios, baseline=baseline, source=source)


def _parse_scenario(raw: object, index: int, source: str) -> Scenario:
    where = f"{source}: scenario #{index + 1}"
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: expected a mapping with keys {', '.join(SCENARIO_KEYS)}")
    name = check_name(raw.get("name"), what="name", source=where, error=ScenarioError)  # it names timeline files
    where = f"{source}: scenario {name!r}"
    _reject_unknown(raw, SCENARIO_KEYS, where)
    selectors = _parse_where(raw.get("where"), where)  # first: an action misplaced under where is named
    ideal, healthy = (_parse_flag(raw.get(key, False), key, where) for key in ("ideal", "healthy"))
    if ideal and healthy:
        raise ScenarioError(f"{where}: 'ideal' and 'healthy' are both true; keep one")
    set_, scale = (_parse_action(raw.get(key), key, where) for key in ("set", "scale"))
    both = sorted(set(set_) & set(scale))
    if both:
        raise ScenarioError(f"{where}: {', '.join(both)} is both set and scaled; keep one")
    if not (ideal or healthy or set_ or scale):
        raise ScenarioError(f"{where}: no action; give 'set', 'scale', 'ideal: true' or 'healthy: true'")
    return Scenario(name=name, where=selectors, set=set_, scale=scale, ideal=ideal, healthy=healthy)


def _parse_flag(value: object, key: str, where: str) -> bool:
    if not isinstance(value, bool):
        raise ScenarioError(f"{where}: '{key}' must be true or false, got {value!r}")
    return value


def _parse_where(raw: object, where: str) -> dict[str, tuple]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: 'where' must be a mapping of {', '.join(SELECTORS)}")
    _reject_unknown(raw, SELECTORS, f"{where}: where")
    selectors = {}
    for key, values in raw.items():
        values = tuple(values) if isinstance(values, list) else (values,)
        if not values:
            raise ScenarioError(f"{where}: where.{key} is an empty list")
        for value in values:
            _check_selector_value(key, value, where)
        selectors[key] = values
    return selectors


def _check_selector_value(key: str, value: object, where: str) -> None:
    if key == "optype":
        if not isinstance(value, str) or (value not in ALL_OPTYPES and value not in OPTYPE_GROUPS):
            raise ScenarioError(
                f"{where}: where.optype: unknown optype {value!r}; valid: {', '.join((*ALL_OPTYPES, *OPTYPE_GROUPS))}"
            )
        return
    if key == "stage" and value == LAST:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        also = " or 'last'" if key == "stage" else ""
        raise ScenarioError(f"{where}: where.{key}: {value!r} is not a non-negative integer{also}")


def _parse_action(raw: object, action: str, where: str) -> dict[str, float]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        raise ScenarioError(f"{where}: '{action}' must be a mapping of {', '.join(QUANTITIES)} to numbers")
    _reject_unknown(raw, QUANTITIES, f"{where}: {action}")
    parsed = {}
    for quantity, value in raw.items():
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:20]}… ({len(repr(value))} characters)"
        # comparisons, not float(): an int too large for a float is out of range, not an OverflowError
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
            what = "factor" if action == "scale" else "value (seconds)"
            raise ScenarioError(f"{where}: {action}.{quantity}: {shown} is not a non-negative {what}")
        if action == "scale" and value != 0 and not MIN_SCALE <= value <= MAX_SCALE:
            raise ScenarioError(
                f"{where}: scale.{quantity}: {shown} is out of range; a factor is 0 or from {MIN_SCALE:g} to {MAX_SCALE:g}"
            )
        if action == "set" and value > MAX_SECONDS:
            raise ScenarioError(
                f"{where}: set.{quantity}: {shown} is out of range; a value is from 0 to {MAX_SECONDS:g} s"
            )
        parsed[quantity] = float(value)
    return parsed


def _reject_unknown(raw: dict, known: tuple, where: str) -> None:
    unknown = [str(k) for k in raw if k not in known]
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; expected {', '.join(known)}")


# -- evaluating -------------------------------------------------------------------------

#: For the numpy kernel, a local run builds and simulates a batch about this many bytes of weights
#: and launch delays at a time: a whole batch takes 8 bytes per op instance and column (0.94 GB
#: for 1,000 scenarios on AR), and runs no faster at once than in slices of this size ...
CHUNK_BYTES = 64 << 20
#: ... in a whole number of this many columns, at least one (the block of the compiled kernel,
#: :data:`graphwia.engine.kernels.BLOCK`).
MIN_CHUNK_COLUMNS = 8


#: A what-if batch: the baseline and every scenario as columns of edits on the baseline (the engine's
#: :class:`~graphwia.engine.scenarios.Edited` family).
WhatIfBatch = Edited


@dataclass
class WhatIfResult:
    """Step times and speedups of scenarios against a baseline.

    ``baseline_span`` (n_steps,) is the simulated baseline's span per step;
    ``step_time`` (n_steps, n_scenarios) each scenario's simulated step time.
    ``simulation`` holds column 0 = baseline, then the scenarios in order: their
    step times and spans, and every op's start and end when :func:`run_whatif`
    was asked for ``times``. ``batch`` builds any column's weights
    (:meth:`column_weight`, :attr:`weight`). ``warnings`` are one line each
    (e.g. launch delays masking a scenario under ``base``); ``typical_from``
    says which steps the typical values came from.
    """

    scenarios: ScenarioSet
    steps: list[int]
    baseline_span: np.ndarray
    step_time: np.ndarray
    dag: Dag
    simulation: Simulation
    batch: WhatIfBatch
    warnings: list[str] = field(default_factory=list)
    typical_from: TypicalFrom = DEFAULT_TYPICAL_FROM

    @property
    def names(self) -> list[str]:
        return self.scenarios.names

    @property
    def baseline(self) -> str:
        return self.scenarios.baseline

    @property
    def baseline_step_time(self) -> float:
        """Mean span of the simulated baseline: the numerator of every speedup."""
        return float(self.baseline_span.mean())

    @property
    def speedup(self) -> dict[str, float]:
        """Scenario name → mean baseline span / mean scenario step time."""
        means = self.step_time.mean(axis=0)
        return {name: self.baseline_step_time / float(means[i]) for i, name in enumerate(self.names)}

    @property
    def step_speedup(self) -> np.ndarray:
        """Per step (n_steps, n_scenarios): baseline span / scenario step time."""
        return self.baseline_span[:, None] / self.step_time

    def column_weight(self, column: int) -> np.ndarray:
        """Weights (n_ops,) of column ``column`` of :attr:`simulation` (0: the baseline), built alone."""
        return self.batch.columns(column, column + 1)[0][:, 0]

    @functools.cached_property
    def weight(self) -> np.ndarray:
        """Weights (n_ops, 1 + n_scenarios) of every column of :attr:`simulation`, built on first use."""
        return self.batch.columns(0, 1 + len(self.names))[0]

    @functools.cached_property
    def frame(self):
        """One row per scenario (a pandas DataFrame, built on first use): ``scenario``, mean ``step_time``,
        ``speedup``."""
        import pandas as pd

        return pd.DataFrame(
            {"scenario": self.names, "step_time": self.step_time.mean(axis=0), "speedup": list(self.speedup.values())}
        )

    @functools.cached_property
    def step_frame(self):
        """One row per (scenario, step) (a pandas DataFrame, built on first use): ``step_time``,
        ``baseline_step_time``, ``speedup``."""
        import pandas as pd

        n_steps, n_scen = self.step_time.shape
        return pd.DataFrame(
            {
                "scenario": np.repeat(self.names, n_steps),
                "step": np.tile(self.steps, n_scen),
                "step_time": self.step_time.T.ravel(),
                "baseline_step_time": np.tile(self.baseline_span, n_scen),
                "speedup": self.step_speedup.T.ravel(),
            }
        )


@dataclass
class _Inputs:
    """What scenarios are built from: the DAG, its compiled form, observed and typical weights."""

    dag: Dag
    compiled: CompiledDag
    weights: Weights
    ideal: np.ndarray
    typical_from: TypicalFrom

    @functools.cached_property
    def typical_source(self) -> tuple[Dag, Weights]:
        """The DAG and weights typical values are taken from (see :func:`~graphwia.model.weights.typical_source`)."""
        return typical_source(self.dag, self.weights, self.typical_from)

    @functools.cached_property
    def selector(self) -> _Selector:
        """Selections of the analysed ops."""
        return _Selector(self.dag)

    @functools.cached_property
    def typical_selector(self) -> _Selector:
        """Selections of the ops typical values come from."""
        dag, _ = self.typical_source
        return self.selector if dag is self.dag else _Selector(dag)

    def healthy(self, selectors: dict[str, tuple], ops: np.ndarray, where: str) -> np.ndarray:
        """Healthy weights (see the module docstring) of the ops ``selectors`` select (``ops``, their indices)."""
        dag, weights = self.typical_source
        among = np.ones(dag.n_ops, dtype=bool)
        among[ops if dag is self.dag else self.typical_selector.ops(selectors, where)] = False
        values = healthy_weight(self.dag, stage_typical_weights(dag, weights, among=among))[ops]
        if np.isnan(values).any():
            op = ops[np.argmax(np.isnan(values))]
            stage, optype = int(self.dag.table["stage"][op]), ALL_OPTYPES[self.dag.table["optype"][op]]
            raise ScenarioError(
                f"{where}: healthy: it selects every {optype} of stage {stage}, leaving no peer "
                f"to take a typical weight from (ideal: true takes the job-wide one)"
            )
        return values


def run_whatif(
    source: Trace | Analysis,
    scenarios: ScenarioSet,
    *,
    steps: Steps | None = None,
    typical_from: TypicalFrom | None = None,
    times: bool = False,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> WhatIfResult:
    """Evaluate ``scenarios`` on a trace (or an existing analysis) as one batch.

    ``steps`` limits a trace to some steps (one step number or several);
    typical values come from those steps, or with ``typical_from="all"`` from
    every step of the trace, as in :func:`graphwia.analyze`. An
    :class:`~graphwia.Analysis` is reused as is, with the steps it analysed and
    its ``typical_from``.

    With ``times``, the result's ``simulation`` keeps every op's start and end
    in every scenario (16 bytes per op instance and scenario: what timelines
    and critical paths are drawn from); without, step times and spans only.

    ``scheduler``, ``workers``: evaluate the batch on the dask.distributed
    cluster at this address (``tcp://host:port``), or on this many local worker
    processes, as :func:`graphwia.analyze` does; the results are the same as
    without. At most one of the two, and not with ``times`` (a cluster returns
    step times and spans only).

    ``progress`` is called with a short label when a phase worth a word
    starts: today, compiling the evaluation kernel, on the first run after
    installing.
    """
    on_cluster = scheduler is not None or workers is not None
    if times and on_cluster:
        raise ArgumentError(
            "times", None, "every op's times come from a local run only (a cluster returns step times and spans)"
        )
    inputs = _inputs(source, steps=steps, typical_from=typical_from)
    batch, checks = _scenario_batch(inputs, scenarios)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowing scenario is named just below
        if not on_cluster:
            sim = _simulate_batch(inputs.compiled, batch, times=times, progress=progress)
        else:
            from graphwia.engine.distributed import ClusterEvaluator  # dask only when asked for

            with ClusterEvaluator(scheduler=scheduler, workers=workers) as cluster:
                sim = _in_column_order(cluster.evaluate(inputs.compiled, batch), batch.order)
    chosen = sim.select(range(1 + len(scenarios.scenarios))) if checks else sim
    result = WhatIfResult(
        scenarios=scenarios,
        steps=[int(s) for s in inputs.dag.steps],
        baseline_span=chosen.span[:, 0],
        step_time=chosen.step_time[:, 1:],
        dag=inputs.dag,
        simulation=chosen,
        batch=batch,
        typical_from=inputs.typical_from,
    )
    _check_result(result)
    if checks:
        result.warnings = _masking_warnings(sim, checks, scenarios)
    return result


def _simulate_batch(
    compiled: CompiledDag,
    batch: WhatIfBatch,
    *,
    times: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Simulation:
    """Every column of ``batch`` simulated here, in column order.

    The compiled kernel (when the batch calls for it:
    :meth:`~graphwia.engine.evaluate.CompiledDag.use_compiled`) takes the
    whole batch and applies its edits itself; for the numpy kernel, the
    columns are built :data:`CHUNK_BYTES` at a time, in the batch's
    :attr:`~graphwia.engine.scenarios.Edited.order`. ``times`` as in
    :func:`run_whatif`, and ``progress``, told of a kernel compiled first.
    """
    if compiled.use_compiled("auto", batch.n_scenarios):
        compiled.load_compiled_kernel(progress)
        return compiled.evaluate_family(batch, times=times, kernel="compiled")
    column_bytes = 8 * compiled.n_ops * (1 if batch.delay is None else 2)
    width = max(1, CHUNK_BYTES // column_bytes // MIN_CHUNK_COLUMNS) * MIN_CHUNK_COLUMNS
    buffers = ColumnBuffers()
    simulations = []
    for lo in range(0, batch.n_scenarios, width):
        family = Dense(*batch.take(batch.order[lo : lo + width], into=buffers))
        simulations.append(compiled.evaluate_family(family, times=times, kernel="numpy"))
    return _in_column_order(Simulation.concatenate(simulations), batch.order)


def _in_column_order(sim: Simulation, order: np.ndarray) -> Simulation:
    """``sim`` of columns ``order`` put back in column order, its arrays C-ordered as the engine's are (a mean
    over steps adds in memory order: the same numbers laid out otherwise can give another last digit)."""
    if np.array_equal(order, np.arange(len(order))):
        return sim
    inverse = np.argsort(order)

    def reordered(times: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(times[:, inverse])

    return Simulation(
        None if sim.start is None else reordered(sim.start),
        None if sim.end is None else reordered(sim.end),
        reordered(sim.step_time),
        reordered(sim.span),
    )


def _check_result(result: WhatIfResult) -> None:
    """Every number ``result`` reports must be finite and positive, else a one-line ScenarioError naming the
    scenario (or the baseline).

    In this order: each simulated step time (speedups divide by it) and the
    baseline's span per step; their means over the steps (a mean of finite
    numbers can overflow, or underflow to 0); the speedups, overall and per
    step (a ratio of finite numbers can overflow or underflow). Each is
    computed here as the result's properties compute it, so what passes here
    is what the outputs print.
    """
    source, names = result.scenarios.source, [result.baseline, *result.names]
    steps = np.asarray(result.steps)
    _check_step_times(result.simulation.step_time, names, steps, source)

    def bad(values: np.ndarray) -> np.ndarray:
        return ~(np.isfinite(values) & (values > 0))

    with np.errstate(all="ignore"):  # what overflows or underflows is named below
        base_span = result.baseline_span
        if bad(base_span).any():
            step = int(np.argmax(bad(base_span)))
            raise ScenarioError(
                f"{source}: baseline {result.baseline!r} simulates step {int(steps[step])} to a span of "
                f"{base_span[step]} s; a speedup needs a positive, finite span"
            )
        means = {f"baseline {result.baseline!r}": result.baseline_step_time}
        means.update(zip((f"scenario {name!r}" for name in result.names), result.step_time.mean(axis=0).tolist()))
        for who, mean in means.items():
            if bad(np.float64(mean)):
                why = "the step times add up to more than a float holds" if mean else "it underflows"
                raise ScenarioError(
                    f"{source}: {who}: the mean step time over {len(steps)} step(s) is {mean:g} s ({why}); "
                    f"a speedup needs a positive, finite mean"
                )
        speedup, step_speedup, mean_step_time = result.speedup, result.step_speedup, result.step_time.mean(axis=0)
        for i, name in enumerate(result.names):
            if bad(np.float64(speedup[name])):
                ratio, what = speedup[name], f"mean baseline span {result.baseline_step_time:g} s / mean step time"
                time = mean_step_time[i]
            elif bad(step_speedup[:, i]).any():
                step = int(np.argmax(bad(step_speedup[:, i])))
                ratio, time = step_speedup[step, i], result.step_time[step, i]
                what = f"in step {int(steps[step])}: baseline span {base_span[step]:g} s / step time"
            else:
                continue
            raise ScenarioError(
                f"{source}: scenario {name!r}: its speedup ({what} {time:g} s) is {ratio:g}; a speedup must be "
                f"a positive, finite number: scale or set the ops to times a job could take"
            )


def _check_step_times(step_time: np.ndarray, names: list[str], steps: np.ndarray, source: str) -> None:
    """Every simulated step time must be positive and finite: speedups divide by it (a ScenarioError otherwise)."""
    bad = ~(np.isfinite(step_time) & (step_time > 0))
    if bad.any():
        step, column = (int(i) for i in np.argwhere(bad)[0])
        value = step_time[step, column]
        why = "every op on its path takes 0 s" if value == 0 else "its times overflow"
        raise ScenarioError(
            f"{source}: scenario {names[column]!r} simulates step {int(steps[step])} to {value} s "
            f"({why}); a speedup needs a positive, finite step time"
        )


def _masking_warnings(sim: Simulation, checks: list[tuple[int, int]], scenarios: ScenarioSet) -> list[str]:
    """A warning per scenario whose weight changes the recorded launch delays mask.

    ``checks`` holds (scenario index, its first check column) per scenario
    that changes weights (see :func:`_scenario_batch`). A scenario's weight
    changes move the mean step time by ``with_delays`` with the recorded delays
    and by ``without`` with none; :func:`masked` judges the two.
    """
    warnings = []
    with np.errstate(all="ignore"):  # a change or share that is not a finite number warns of nothing
        span = sim.span.mean(axis=0)
        step_time = sim.step_time.mean(axis=0)
        nodelay_span = span[sim.n_scenarios - 1]
        for index, check in checks:
            with_delays = step_time[check] - span[0]  # change of the mean step time, seconds
            without = step_time[check + 1] - nodelay_span
            shares = (with_delays / span[0], without / nodelay_span)
            if not np.isfinite([with_delays, without, *shares]).all() or not masked(with_delays, without, nodelay_span):
                continue
            warnings.append(
                f"{scenarios.source}: scenario {scenarios.names[index]!r}: under baseline base the recorded launch "
                f"delays mask its change: the mean step time changes by {with_delays + 0.0:+.3f} s "
                f"({shares[0]:+.1%}) with them but by {without:+.3f} s ({shares[1]:+.1%}) "
                f"without (as under baseline nodelay); a recorded delay stays as it was, even where it was time "
                f"spent waiting for the ops this scenario changes"
            )
    return warnings


def masked(with_delays: float, without: float, step_time: float) -> bool:
    """Whether launch delays mask a change of the mean step time.

    True when the change ``without`` launch delays (seconds) is at least
    :data:`MASK_MIN_EFFECT` of ``step_time`` (the mean step time without
    delays) and the change ``with_delays`` goes less than :data:`MASKED_SHARE`
    of the way in the same direction (a change the other way counts as none).
    """
    if abs(without) < MASK_MIN_EFFECT * step_time:
        return False
    return math.copysign(with_delays, with_delays * without) < MASKED_SHARE * abs(without)


def _inputs(source, *, steps, typical_from) -> _Inputs:
    if isinstance(source, Trace):
        typical_from = check_typical_from(DEFAULT_TYPICAL_FROM if typical_from is None else typical_from)
        dag, weights, typical = weighted_dag(source, steps=steps, typical_from=typical_from)
        return _Inputs(
            dag=dag,
            compiled=dag.compile(),
            weights=weights,
            ideal=ideal_weight(dag, typical),
            typical_from=typical_from,
        )
    for option, value in (("steps", steps), ("typical_from", typical_from)):
        if value is not None:
            raise UsageError(f"{option} cannot be chosen for an existing analysis; analyse with that {option} instead")
    return _Inputs(
        dag=source.dag,
        compiled=source.compiled,
        weights=source.weights,
        ideal=source.ideal,
        typical_from=source.typical_from,
    )


@dataclass
class ChosenScenario:
    """One named scenario's ``weight`` and launch ``delay`` (n_ops,) on ``dag``."""

    name: str
    dag: Dag
    compiled: CompiledDag
    weight: np.ndarray
    delay: np.ndarray


def choose_scenario(
    source: Trace | Analysis,
    scenario: str = "base",
    *,
    scenarios: ScenarioSet | None = None,
    steps: Steps | None = None,
    typical_from: TypicalFrom | None = None,
) -> ChosenScenario:
    """The weights of one scenario of a trace or an analysis, by name.

    ``scenario`` is ``base``, ``nodelay`` or ``ideal`` (see the module
    docstring), or the name of a scenario in ``scenarios`` (applied to that
    set's baseline). ``steps`` and ``typical_from`` apply to a trace as in
    :func:`run_whatif`.
    """
    if scenarios is None:
        if scenario not in BASELINES:
            raise UsageError(
                f"scenario {scenario!r} is not one of {', '.join(BASELINES)} (a custom scenario needs a scenario file)"
            )
        scenarios = ScenarioSet(scenarios=(), baseline=scenario)
    names = [scenarios.baseline, *scenarios.names]
    if scenario not in names and scenario not in BASELINES:
        raise UsageError(f"scenario {scenario!r} is not in {scenarios.source}; choose one of: {', '.join(names)}")
    inputs = _inputs(source, steps=steps, typical_from=typical_from)
    if scenario not in scenarios.names or scenario == scenarios.baseline:
        weight, delay = _baseline_weights(inputs, scenario)
    else:
        chosen = scenarios.scenarios[scenarios.names.index(scenario)]
        batch, _ = _scenario_batch(
            inputs, ScenarioSet(scenarios=(chosen,), baseline=scenarios.baseline, source=scenarios.source), checks=False
        )
        weights, delays = batch.columns(1, 2)
        weight, delay = weights[:, 0], np.zeros(inputs.dag.n_ops) if delays is None else delays[:, 0]
    return ChosenScenario(name=scenario, dag=inputs.dag, compiled=inputs.compiled, weight=weight, delay=delay)


def _baseline_weights(inputs: _Inputs, baseline: str) -> tuple[np.ndarray, np.ndarray]:
    """(weight, launch delay) of every op in the baseline ``base``, ``nodelay`` or ``ideal``."""
    zero = np.zeros(inputs.dag.n_ops)
    if baseline == "base":
        return inputs.weights.weight, inputs.weights.delay
    if baseline == "nodelay":
        return inputs.weights.weight, zero
    if baseline == "ideal":
        return inputs.ideal, zero
    raise ScenarioError(f"baseline {baseline!r} is not one of {', '.join(BASELINES)}")


def _scenario_batch(
    inputs: _Inputs, scenarios: ScenarioSet, *, checks: bool = True
) -> tuple[WhatIfBatch, list[tuple[int, int]]]:
    """The baseline (column 0) and ``scenarios`` (columns 1 …) as a :class:`WhatIfBatch`.

    Under baseline ``base`` (and with ``checks``), columns that measure how
    much recorded launch delays mask weight changes follow: for every scenario
    that changes weights, its weights with the baseline's delays (the weight
    changes alone) and its weights without delays; then the baseline's weights
    without delays. The second value lists (scenario index, first of its two
    columns) per such scenario (see :func:`_masking_warnings`).

    The first scenario (in file order) that does not fit the trace raises
    :class:`ScenarioError`: a selection that picks no op or names values the
    ops do not have, ``healthy`` without peers, or an action that leaves every
    op it selects as it was (saying why).
    """
    builder = _BatchBuilder(inputs, scenarios)
    failed = None
    for column, scenario in enumerate(scenarios.scenarios, start=1):
        try:
            builder.add(column, scenario)
        except ScenarioError as exc:
            failed = exc
            break
    builder.check()  # the scenarios before the one that failed come first
    if failed is not None:
        raise failed
    batch = builder.batch(1 + len(scenarios.scenarios))
    if not checks or scenarios.baseline != "base":
        return batch, []
    return _with_masking_columns(batch)


def _with_masking_columns(batch: WhatIfBatch) -> tuple[WhatIfBatch, list[tuple[int, int]]]:
    """``batch`` followed by the masking columns of :func:`_scenario_batch`, and their (scenario, column) pairs."""
    n_columns = batch.n_scenarios
    on_weight = batch.array == WEIGHT
    changes = np.zeros(n_columns, dtype=bool)
    changes[batch.column[on_weight]] = True
    # A column whose weights take values and are then set or scaled may have come back to the
    # baseline's (each action alone changed something): only its weights can tell.
    replaced = np.zeros(n_columns, dtype=bool)
    replaced[batch.column[on_weight & (batch.kind == VALUES)]] = True
    acted = np.zeros(n_columns, dtype=bool)
    acted[batch.column[on_weight & (batch.kind != VALUES)]] = True
    ambiguous = np.flatnonzero(replaced & acted)
    for lo in range(0, len(ambiguous), MIN_CHUNK_COLUMNS):
        columns = ambiguous[lo : lo + MIN_CHUNK_COLUMNS]
        weight, _ = batch.take(columns)
        changes[columns] = np.any(weight != batch.weight[:, None], axis=0)
    changing = np.flatnonzero(changes)
    if not len(changing):
        return batch, []
    first_check = np.full(n_columns, -1)
    first_check[changing] = n_columns + 2 * np.arange(len(changing))
    copied = np.flatnonzero(on_weight & (first_check[batch.column] >= 0))
    n_total = n_columns + 2 * len(changing) + 1
    zero_delay = np.zeros(n_total, dtype=bool)
    zero_delay[first_check[changing] + 1] = True  # each scenario's weights without delays
    zero_delay[-1] = True  # the baseline's weights without delays
    column = np.concatenate([batch.column, first_check[batch.column[copied]], first_check[batch.column[copied]] + 1])

    def three(values):
        return np.concatenate([values, values[copied], values[copied]])

    checked = WhatIfBatch(
        weight=batch.weight,
        delay=batch.delay,
        zero_delay=zero_delay,
        targets=batch.targets,
        values=batch.values,
        column=column,
        array=three(batch.array),
        target=three(batch.target),
        kind=three(batch.kind),
        source=three(batch.source),
        value=three(batch.value),
    )
    return checked, [(int(c) - 1, int(first_check[c])) for c in changing]


@dataclass(frozen=True)
class _Selection:
    """The ops a ``where`` selects, as target ids of a :class:`_BatchBuilder`: all, the local ones, the members."""

    ops: int
    local: int
    member: int


class _BatchBuilder:
    """Collects the edits of a :class:`WhatIfBatch`, scenario by scenario.

    Each distinct selection is made once, and its ideal or healthy weights
    taken once; each action's "changes nothing" check is one numpy operation
    per group of actions of one kind on the same ops (:meth:`check`).
    """

    def __init__(self, inputs: _Inputs, scenarios: ScenarioSet):
        self.inputs = inputs
        self.weight, delay = _baseline_weights(inputs, scenarios.baseline)
        self.delay = delay if scenarios.baseline == "base" else None
        self.source = scenarios.source
        self.targets: list[np.ndarray] = []
        self.values: list[tuple[np.ndarray, int]] = []  # (values, the target they are aligned with)
        self.edits: list[tuple[int, int, int, int, int, float, int]] = []  # see batch(); then `before`
        self.problems: list[tuple[str, list]] = []  # per column added: its name for errors, its checks in order
        self._selections: dict[tuple, _Selection] = {}
        self._replacements: dict[tuple, tuple[int, bool]] = {}

    def add(self, column: int, scenario: Scenario) -> None:
        """Add ``scenario`` as column ``column``; raise ScenarioError if its selection or ideal/healthy does not fit.

        Checks whose answer takes numbers (an action changing nothing) are kept for :meth:`check`.
        """
        where = f"{self.source}: scenario {scenario.name!r}"
        selection = self._selection(scenario.where, where)
        replaced = -1
        if scenario.ideal or scenario.healthy:  # not both (parse_scenarios checks)
            flag = "ideal" if scenario.ideal else "healthy"
            replaced, unchanged = self._replacement(scenario, selection, flag, where)
            if unchanged:
                raise ScenarioError(
                    f"{where}: {flag}: true changes nothing: the selected ops already have "
                    f"their {flag} weights in this baseline"
                )
            self.edits.append((column, WEIGHT, selection.ops, VALUES, replaced, math.nan, -1))
        checks: list = []
        targets = {"duration": selection.local, "transfer": selection.member, "launch_delay": selection.ops}
        for action, kind in (("set", SET), ("scale", SCALE)):
            for quantity, value in getattr(scenario, action).items():
                if not len(self.targets[targets[quantity]]):
                    checks.append(f"{where}: {action}.{quantity} changes nothing: {_why_untouched(quantity)}")
                    continue
                array = DELAY if quantity == "launch_delay" else WEIGHT
                checks.append((len(self.edits), action, quantity, value))
                self.edits.append(
                    (column, array, targets[quantity], kind, -1, value, replaced if array == WEIGHT else -1)
                )
        self.problems.append((where, checks))

    def check(self) -> None:
        """Raise the first problem of the columns added (in order): an action that changes nothing."""
        unchanged = self._unchanged()
        for where, checks in self.problems:
            for check in checks:
                if isinstance(check, str):
                    raise ScenarioError(check)
                edit, action, quantity, value = check
                if unchanged[edit]:
                    raise ScenarioError(
                        f"{where}: {action}.{quantity} changes nothing: "
                        f"{_why_unchanged(action, quantity, value, has_delays=self._has_delays)}"
                    )

    @property
    def _has_delays(self) -> bool:
        return self.delay is not None and bool(self.delay.any())

    def batch(self, n_columns: int) -> WhatIfBatch:
        """The batch of the baseline and the columns added."""
        column, array, target, kind, source, value, _ = (
            (list(field) for field in zip(*self.edits)) if self.edits else ([],) * 7
        )
        return WhatIfBatch(
            weight=self.weight,
            delay=self.delay,
            zero_delay=np.zeros(n_columns, dtype=bool),
            targets=tuple(self.targets),
            values=tuple(values for values, _ in self.values),
            column=np.array(column, dtype=np.int64),
            array=np.array(array, dtype=np.int8),
            target=np.array(target, dtype=np.int64),
            kind=np.array(kind, dtype=np.int8),
            source=np.array(source, dtype=np.int64),
            value=np.array(value, dtype=float),
        )

    def _target(self, ops: np.ndarray) -> int:
        self.targets.append(ops)
        return len(self.targets) - 1

    def _selection(self, selectors: dict[str, tuple], where: str) -> _Selection:
        key = _selection_key(selectors)
        if key not in self._selections:
            ops = self.inputs.selector.ops(selectors, where)
            member = self.inputs.dag.table["barrier"][ops] >= 0
            self._selections[key] = _Selection(self._target(ops), self._target(ops[~member]), self._target(ops[member]))
        return self._selections[key]

    def _replacement(self, scenario: Scenario, selection: _Selection, flag: str, where: str) -> tuple[int, bool]:
        """(values id, whether they are the baseline's) of the ideal or healthy weights of a selection."""
        key = (_selection_key(scenario.where), flag)
        if key not in self._replacements:
            ops = self.targets[selection.ops]
            new = self.inputs.ideal[ops] if flag == "ideal" else self.inputs.healthy(scenario.where, ops, where)
            self.values.append((new, selection.ops))
            self._replacements[key] = (len(self.values) - 1, bool(np.array_equal(new, self.weight[ops])))
        return self._replacements[key]

    def _unchanged(self) -> np.ndarray:
        """Per edit: whether it is a set or scale that leaves every op it changes as it was."""
        unchanged = np.zeros(len(self.edits), dtype=bool)
        groups: dict[tuple, list[int]] = {}  # edits of one kind on the same numbers
        for index, (_, array, target, kind, _, _, before) in enumerate(self.edits):
            if kind != VALUES:
                groups.setdefault((array, target, kind, before), []).append(index)
        for (array, target, kind, before), indices in groups.items():
            ops = self.targets[target]
            if before >= 0:  # the values it took first
                values, aligned = self.values[before]
                old = values[np.searchsorted(self.targets[aligned], ops)]
            elif array == WEIGHT:
                old = self.weight[ops]
            else:
                old = np.zeros(len(ops)) if self.delay is None else self.delay[ops]
            with np.errstate(over="ignore", invalid="ignore"):  # an overflow changes something
                unchanged[indices] = _unchanged(old, kind, np.array([self.edits[i][5] for i in indices]))
        return unchanged


def _unchanged(old: np.ndarray, kind: int, values: np.ndarray) -> np.ndarray:
    """Per value: whether setting the numbers ``old`` to it (SET) or scaling them by it (SCALE) leaves each as it was.

    What comparing every new number with its old one says, but a scale
    factor is first tried on the largest old number alone: a change there
    decides, and only factors that leave it as it was (1, within a rounding
    of 1, or an infinite number) are tried on every number.
    """
    if kind == SET:
        return (values == old.min()) & (values == old.max())  # a NaN in old: never unchanged, as NaN != NaN
    largest = old[np.argmax(np.abs(old))]  # a NaN if old has one
    if largest == 0:  # every number is ±0
        return np.ones(len(values), dtype=bool)
    unchanged = largest * values == largest  # False decides; True (a factor of 1, or an infinite number) may not
    for i in np.flatnonzero(unchanged):
        unchanged[i] = np.array_equal(old * values[i], old)
    return unchanged


def _why_untouched(quantity: str) -> str:
    if quantity == "duration":
        return "the selected ops are all group members, whose weight is a transfer time (use transfer)"
    return "the selected ops are all local ops, whose weight is a duration (use duration)"


def _why_unchanged(action: str, quantity: str, value: float, *, has_delays: bool) -> str:
    noun = quantity.replace("_", " ")
    if action == "scale" and value == 1:
        return "a factor of 1"
    if quantity == "launch_delay" and not has_delays:
        return "this baseline has no launch delays (only baseline base keeps the recorded ones)"
    if action == "scale":
        return f"every selected op's {noun} is 0"
    return f"every selected op's {noun} is already {value:g}"


def select_ops(dag: Dag, selectors: dict[str, tuple], *, where: str = "scenario") -> np.ndarray:
    """Boolean mask of the ops matching every selector (see module docstring).

    A number that no analysed op has, or a selection matching no op, raises
    :class:`ScenarioError`. Optypes absent from this trace are allowed (a
    scenario file may serve jobs with and without, e.g., overlapped DP), as
    long as the selection as a whole matches something.
    """
    mask = np.zeros(dag.n_ops, dtype=bool)
    mask[_Selector(dag).ops(selectors, where)] = True
    return mask


def _selection_key(selectors: dict) -> tuple:
    """``selectors`` as a dictionary key (in their order: an error message lists them so)."""
    return tuple((key, tuple(values)) for key, values in selectors.items())


class _Selector:
    """The ops of a DAG that ``where`` selectors select (as :func:`select_ops` does), as ascending indices.

    Each selector key's column is sorted once, so a selection costs about as
    much as the ops its most selective key picks, not a pass over every op; a
    selection asked for again is not made again.
    """

    def __init__(self, dag: Dag):
        self.dag = dag
        self._sorted: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # key → (ops in the order of its column, column)
        self._made: dict[tuple, np.ndarray | str] = {}  # selectors → ops, or why none (message without its prefix)

    def ops(self, selectors: dict[str, tuple], where: str) -> np.ndarray:
        """Indices of the ops ``selectors`` select; :class:`ScenarioError` starting with ``where`` if none."""
        key = _selection_key(selectors)
        if key not in self._made:
            self._made[key] = self._select(selectors)
        made = self._made[key]
        if isinstance(made, str):
            raise ScenarioError(f"{where}: {made}")
        return made

    def _select(self, selectors: dict[str, tuple]) -> np.ndarray | str:
        if not selectors:
            return np.arange(self.dag.n_ops)
        picks = []
        for key, values in selectors.items():
            wanted = self._codes(key, values)
            order, column = self._column(key)
            if key != "optype":
                present = np.unique(column[np.searchsorted(column, 0) :])  # mb_id is -1 on ops without a microbatch
                missing = [v for v in wanted if v not in present]
                if missing:
                    return (
                        f"where.{key}: {', '.join(map(str, missing))} not in the analysed ops "
                        f"(present: {format_ranges(present)})"
                    )
            codes = np.unique(np.asarray(wanted, dtype=np.int64))
            picks.append((key, codes, order, np.searchsorted(column, codes), np.searchsorted(column, codes, "right")))
        # the most selective key picks the candidates, the other keys keep some of them
        key, codes, order, lo, hi = min(picks, key=lambda pick: int(np.sum(pick[4] - pick[3])))
        ops = np.sort(np.concatenate([order[a:b] for a, b in zip(lo, hi)] or [np.zeros(0, dtype=np.int64)]))
        for other, codes, *_ in picks:
            if other != key:
                ops = ops[np.isin(self.dag.table[other][ops], codes)]
        if not len(ops):
            described = "; ".join(f"{k} {', '.join(map(str, v))}" for k, v in selectors.items())
            return f"where selects no op ({described})"
        return ops

    def _codes(self, key: str, values: tuple) -> list[int]:
        """The column values a selector's values stand for (optypes and their groups: codes; ``last``: a stage)."""
        if key == "optype":
            names = [name for value in values for name in OPTYPE_GROUPS.get(value, (value,))]
            return [OPTYPE_CODE[name] for name in names if name in OPTYPE_CODE]
        if key == "stage":
            return [self.dag.meta.pp_size - 1 if v == LAST else v for v in values]
        return list(values)

    def _column(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        if key not in self._sorted:
            column = self.dag.table[key]
            order = np.argsort(column, kind="stable")
            self._sorted[key] = (order, column[order])
        return self._sorted[key]
