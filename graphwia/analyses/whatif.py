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
  group) and ``launch_delay``.
* Speedup = mean span of the simulated baseline / mean simulated step time of
  the scenario (SPEC §4), overall and per step.
* All scenarios and the baseline are evaluated in one batched pass.

Anything a file gets wrong (an unknown key or value, a selector matching no
op, an action that changes no selected op's value) raises
:class:`ScenarioError` naming the file, the scenario and the key.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from graphwia.model.dag import Dag
from graphwia.errors import UsageError
from graphwia.engine.evaluate import CompiledDag, Simulation
from graphwia.utils.io import read_yaml
from graphwia.utils.names import check_name
from graphwia.optypes import ALL_OPTYPES, ATTRIBUTION_GROUP, OPTYPE_CODE
from graphwia.trace.steps import Steps, format_ranges
from graphwia.trace.optable import Trace
from graphwia.model.weights import (DEFAULT_TYPICAL_FROM, TypicalFrom, Weights, check_typical_from, healthy_weight,
                                    ideal_weight, stage_typical_weights, typical_source, weighted_dag)

if TYPE_CHECKING:  # pragma: no cover
    from graphwia.analyses.standard import Analysis

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
OPTYPE_GROUPS = {group: tuple(t for t in ALL_OPTYPES if ATTRIBUTION_GROUP[t] == group)
                 for group in dict.fromkeys(ATTRIBUTION_GROUP.values()) if group not in ALL_OPTYPES}
#: Under baseline ``base``, a scenario whose weight changes move the mean step time by at least
#: MASK_MIN_EFFECT (relative) without launch delays, but by less than MASKED_SHARE of that
#: (same direction) with the recorded delays, gets a warning: the delays mask the change.
MASK_MIN_EFFECT = 0.01
MASKED_SHARE = 0.5


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


def parse_scenarios(raw: object, source: str = "<scenarios>") -> ScenarioSet:
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
            raise ScenarioError(f"{where}: where.optype: unknown optype {value!r}; "
                                f"valid: {', '.join((*ALL_OPTYPES, *OPTYPE_GROUPS))}")
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
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            what = "factor" if action == "scale" else "value (seconds)"
            raise ScenarioError(f"{where}: {action}.{quantity}: {value!r} is not a non-negative {what}")
        parsed[quantity] = float(value)
    return parsed


def _reject_unknown(raw: dict, known: tuple, where: str) -> None:
    unknown = [str(k) for k in raw if k not in known]
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; expected {', '.join(known)}")


# -- evaluating -------------------------------------------------------------------------

@dataclass
class WhatIfResult:
    """Step times and speedups of scenarios against a baseline.

    ``baseline_span`` (n_steps,) is the simulated baseline's span per step;
    ``step_time`` (n_steps, n_scenarios) each scenario's simulated step time.
    ``simulation`` holds column 0 = baseline, then the scenarios in order, and
    ``weight`` the weights it was run with (for timelines). ``warnings`` are
    one line each (e.g. launch delays masking a scenario under ``base``);
    ``typical_from`` says which steps the typical values came from.
    """

    scenarios: ScenarioSet
    steps: list[int]
    baseline_span: np.ndarray
    step_time: np.ndarray
    dag: Dag
    simulation: Simulation
    weight: np.ndarray
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

    def to_frame(self):
        """One row per scenario (a pandas DataFrame): ``scenario``, mean ``step_time``, ``speedup``."""
        import pandas as pd

        return pd.DataFrame({"scenario": self.names, "step_time": self.step_time.mean(axis=0),
                             "speedup": list(self.speedup.values())})

    def per_step_frame(self):
        """One row per (scenario, step) (a pandas DataFrame): ``step_time``, ``baseline_step_time``, ``speedup``."""
        import pandas as pd

        n_steps, n_scen = self.step_time.shape
        return pd.DataFrame({
            "scenario": np.repeat(self.names, n_steps),
            "step": np.tile(self.steps, n_scen),
            "step_time": self.step_time.T.ravel(),
            "baseline_step_time": np.tile(self.baseline_span, n_scen),
            "speedup": self.step_speedup.T.ravel(),
        })


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

    def healthy(self, scenario: Scenario, selected: np.ndarray, where: str) -> np.ndarray:
        """Weights of the ``selected`` ops of ``scenario`` made healthy (see the module docstring)."""
        dag, weights = self.typical_source
        among = ~(selected if dag is self.dag else select_ops(dag, scenario.where, where))
        values = healthy_weight(self.dag, stage_typical_weights(dag, weights, among=among))[selected]
        if np.isnan(values).any():
            op = np.flatnonzero(selected)[np.argmax(np.isnan(values))]
            stage, optype = int(self.dag.table["stage"][op]), ALL_OPTYPES[self.dag.table["optype"][op]]
            raise ScenarioError(f"{where}: healthy: it selects every {optype} of stage {stage}, leaving no peer "
                                f"to take a typical weight from (ideal: true takes the job-wide one)")
        return values


def run_whatif(source: Union[Trace, "Analysis"], scenarios: ScenarioSet, *, steps: Steps | None = None,
               typical_from: TypicalFrom | None = None) -> WhatIfResult:
    """Evaluate ``scenarios`` on a trace (or an existing analysis) in one batched pass.

    ``steps`` limits a trace to some steps (one step number or several);
    typical values come from those steps, or with ``typical_from="all"`` from
    every step of the trace, as in :func:`graphwia.analyze`. An
    :class:`~graphwia.Analysis` is reused as is, with the steps it analysed and
    its ``typical_from``.
    """
    inputs = _inputs(source, steps, typical_from)
    base_weight, base_delay = baseline_weights(inputs, scenarios.baseline)
    columns = [(base_weight, base_delay)]
    columns += [scenario_weights(inputs, s, base_weight, base_delay, scenarios.source) for s in scenarios.scenarios]
    checks = _masking_columns(columns) if scenarios.baseline == "base" else []
    weight = np.column_stack([w for w, _ in columns + checks])
    delay = np.column_stack([d for _, d in columns + checks])
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowing scenario is named just below
        sim = inputs.compiled.evaluate(weight, delay)
    _check_step_times(sim.step_time[:, :len(columns)], [scenarios.baseline, *scenarios.names], inputs.dag.steps,
                      scenarios.source)
    warnings = []
    if checks:
        warnings = _masking_warnings(sim, columns, scenarios)
        sim, weight = sim.select(range(len(columns))), weight[:, :len(columns)]
    return WhatIfResult(scenarios=scenarios, steps=[int(s) for s in inputs.dag.steps], baseline_span=sim.span[:, 0],
                        step_time=sim.step_time[:, 1:], dag=inputs.dag, simulation=sim, weight=weight,
                        warnings=warnings, typical_from=inputs.typical_from)


def _check_step_times(step_time: np.ndarray, names: list[str], steps: np.ndarray, source: str) -> None:
    """Every simulated step time must be positive and finite: speedups divide by it (a ScenarioError otherwise)."""
    bad = ~(np.isfinite(step_time) & (step_time > 0))
    if bad.any():
        step, column = (int(i) for i in np.argwhere(bad)[0])
        value = step_time[step, column]
        why = "every op on its path takes 0 s" if value == 0 else "its times overflow"
        raise ScenarioError(f"{source}: scenario {names[column]!r} simulates step {int(steps[step])} to {value} s "
                            f"({why}); a speedup needs a positive, finite step time")


def _masking_columns(columns: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Extra scenarios that measure how much recorded launch delays mask weight changes under ``base``.

    For every scenario that changes weights (columns[1:], baseline columns[0]):
    its weights with the baseline's delays (the weight changes alone) and its
    weights without delays; then the baseline's weights without delays. Scenarios
    that change only launch delays get no columns. See :func:`_masking_warnings`.
    """
    base_weight, base_delay = columns[0]
    zero = np.zeros_like(base_delay)
    checks = []
    for weight, _ in columns[1:]:
        if np.array_equal(weight, base_weight):
            continue
        checks += [(weight, base_delay), (weight, zero)]
    return checks + [(base_weight, zero)] if checks else []


def _masking_warnings(sim: Simulation, columns: list, scenarios: ScenarioSet) -> list[str]:
    """A warning per scenario whose weight changes the recorded launch delays mask.

    ``sim`` ran ``columns`` and then :func:`_masking_columns`. A scenario's
    weight changes move the mean step time by ``with_delays`` with the recorded
    delays and by ``without`` with none; :func:`masked` judges the two.
    """
    span = sim.span.mean(axis=0)
    step_time = sim.step_time.mean(axis=0)
    base_weight = columns[0][0]
    nodelay_column = sim.n_scenarios - 1
    nodelay_span = span[nodelay_column]
    warnings = []
    check = len(columns)
    for scenario, (weight, _) in zip(scenarios.scenarios, columns[1:]):
        if np.array_equal(weight, base_weight):
            continue
        with_delays = step_time[check] - span[0]  # change of the mean step time, seconds
        without = step_time[check + 1] - nodelay_span
        check += 2
        if not masked(with_delays, without, nodelay_span):
            continue
        warnings.append(
            f"{scenarios.source}: scenario {scenario.name!r}: under baseline base the recorded launch delays mask "
            f"its change: the mean step time changes by {with_delays + 0.0:+.3f} s ({with_delays / span[0]:+.1%}) "
            f"with them but by {without:+.3f} s ({without / nodelay_span:+.1%}) without (as under baseline "
            f"nodelay); a recorded delay stays as it was, even where it was time spent waiting for the ops this "
            f"scenario changes")
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


def _inputs(source, steps, typical_from) -> _Inputs:
    if isinstance(source, Trace):
        typical_from = check_typical_from(DEFAULT_TYPICAL_FROM if typical_from is None else typical_from)
        dag, weights, typical = weighted_dag(source, steps, typical_from=typical_from)
        return _Inputs(dag=dag, compiled=dag.compile(), weights=weights, ideal=ideal_weight(dag, typical),
                       typical_from=typical_from)
    for option, value in (("steps", steps), ("typical_from", typical_from)):
        if value is not None:
            raise UsageError(f"{option} cannot be chosen for an existing analysis; analyse with that {option} instead")
    return _Inputs(dag=source.dag, compiled=source.compiled, weights=source.weights, ideal=source.ideal,
                   typical_from=source.typical_from)


@dataclass
class ChosenScenario:
    """One named scenario's ``weight`` and launch ``delay`` (n_ops,) on ``dag``."""

    name: str
    dag: Dag
    compiled: CompiledDag
    weight: np.ndarray
    delay: np.ndarray


def choose_scenario(source: Union[Trace, "Analysis"], scenario: str = "base", *,
                    scenarios: ScenarioSet | None = None, steps: Steps | None = None,
                    typical_from: TypicalFrom | None = None) -> ChosenScenario:
    """The weights of one scenario of a trace or an analysis, by name.

    ``scenario`` is ``base``, ``nodelay`` or ``ideal`` (see the module
    docstring), or the name of a scenario in ``scenarios`` (applied to that
    set's baseline). ``steps`` and ``typical_from`` apply to a trace as in
    :func:`run_whatif`.
    """
    if scenarios is None:
        if scenario not in BASELINES:
            raise UsageError(f"scenario {scenario!r} is not one of {', '.join(BASELINES)} "
                             f"(a custom scenario needs a scenario file)")
        scenarios = ScenarioSet(scenarios=(), baseline=scenario)
    names = [scenarios.baseline, *scenarios.names]
    if scenario not in names and scenario not in BASELINES:
        raise UsageError(f"scenario {scenario!r} is not in {scenarios.source}; choose one of: {', '.join(names)}")
    inputs = _inputs(source, steps, typical_from)
    if scenario not in scenarios.names or scenario == scenarios.baseline:
        weight, delay = baseline_weights(inputs, scenario)
    else:
        weight, delay = baseline_weights(inputs, scenarios.baseline)
        chosen = scenarios.scenarios[scenarios.names.index(scenario)]
        weight, delay = scenario_weights(inputs, chosen, weight, delay, scenarios.source)
    return ChosenScenario(name=scenario, dag=inputs.dag, compiled=inputs.compiled, weight=weight, delay=delay)


def baseline_weights(inputs: _Inputs, baseline: str) -> tuple[np.ndarray, np.ndarray]:
    """(weight, launch delay) of every op in the baseline ``base``, ``nodelay`` or ``ideal``."""
    zero = np.zeros(inputs.dag.n_ops)
    if baseline == "base":
        return inputs.weights.weight, inputs.weights.delay
    if baseline == "nodelay":
        return inputs.weights.weight, zero
    if baseline == "ideal":
        return inputs.ideal, zero
    raise ScenarioError(f"baseline {baseline!r} is not one of {', '.join(BASELINES)}")


def scenario_weights(inputs: _Inputs, scenario: Scenario, weight: np.ndarray, delay: np.ndarray,
                     source: str = "<scenarios>") -> tuple[np.ndarray, np.ndarray]:
    """The baseline's (weight, delay) with ``scenario``'s actions applied to the ops it selects.

    An action that leaves every selected op's value as it was raises
    :class:`ScenarioError` saying why.
    """
    where = f"{source}: scenario {scenario.name!r}"
    selected = select_ops(inputs.dag, scenario.where, where)
    member = inputs.dag.table["barrier"] >= 0
    targets = {"duration": selected & ~member, "transfer": selected & member, "launch_delay": selected}
    weight, delay = weight.copy(), delay.copy()
    if scenario.ideal or scenario.healthy:  # not both (parse_scenarios checks)
        flag = "ideal" if scenario.ideal else "healthy"
        new = inputs.ideal[selected] if scenario.ideal else inputs.healthy(scenario, selected, where)
        if np.array_equal(new, weight[selected]):
            raise ScenarioError(f"{where}: {flag}: true changes nothing: the selected ops already have "
                                f"their {flag} weights in this baseline")
        weight[selected] = new
    for action, values in (("set", scenario.set), ("scale", scenario.scale)):
        for quantity, value in values.items():
            target = targets[quantity]
            if not target.any():
                raise ScenarioError(f"{where}: {action}.{quantity} changes nothing: {_why_untouched(quantity)}")
            array = delay if quantity == "launch_delay" else weight
            old = array[target]
            new = np.full(len(old), value) if action == "set" else old * value
            if np.array_equal(new, old):
                raise ScenarioError(f"{where}: {action}.{quantity} changes nothing: "
                                    f"{_why_unchanged(action, quantity, value, delay)}")
            array[target] = new
    return weight, delay


def _why_untouched(quantity: str) -> str:
    if quantity == "duration":
        return "the selected ops are all group members, whose weight is a transfer time (use transfer)"
    return "the selected ops are all local ops, whose weight is a duration (use duration)"


def _why_unchanged(action: str, quantity: str, value: float, delay: np.ndarray) -> str:
    noun = quantity.replace("_", " ")
    if action == "scale" and value == 1:
        return "a factor of 1"
    if quantity == "launch_delay" and not delay.any():
        return "this baseline has no launch delays (only baseline base keeps the recorded ones)"
    if action == "scale":
        return f"every selected op's {noun} is 0"
    return f"every selected op's {noun} is already {value:g}"


def select_ops(dag: Dag, selectors: dict[str, tuple], where: str = "scenario") -> np.ndarray:
    """Boolean mask of the ops matching every selector (see module docstring).

    A number that no analysed op has, or a selection matching no op, raises
    :class:`ScenarioError`. Optypes absent from this trace are allowed (a
    scenario file may serve jobs with and without, e.g., overlapped DP), as
    long as the selection as a whole matches something.
    """
    ops = dag.table
    mask = np.ones(dag.n_ops, dtype=bool)
    for key, values in selectors.items():
        if key == "optype":
            names = [name for value in values for name in OPTYPE_GROUPS.get(value, (value,))]
            mask &= np.isin(ops["optype"], [OPTYPE_CODE[name] for name in names if name in OPTYPE_CODE])
            continue
        column = ops[key]
        if key == "stage":
            values = tuple(dag.meta.pp_size - 1 if v == LAST else v for v in values)
        _check_present(key, values, column, where)
        mask &= np.isin(column, list(values))
    if not mask.any():
        described = "; ".join(f"{k} {', '.join(map(str, v))}" for k, v in selectors.items())
        raise ScenarioError(f"{where}: where selects no op ({described})")
    return mask


def _check_present(key: str, values: tuple, column: np.ndarray, where: str) -> None:
    present = np.unique(column[column >= 0])  # mb_id is -1 on ops without a microbatch
    missing = [v for v in values if v not in present]
    if missing:
        raise ScenarioError(f"{where}: where.{key}: {', '.join(map(str, missing))} not in the analysed ops "
                            f"(present: {format_ranges(present)})")
