"""Custom what-if scenarios: "what if these ops took that long?".

The analyses of SPEC §5 ask one question each (what if nothing straggled, what
if a group of ops were typical). This module asks the user's questions. A
scenario file names a *baseline* and a list of *scenarios*; a scenario selects
op instances and changes their weights::

    baseline: nodelay              # nodelay (default) | base | ideal
    scenarios:
      - name: no-pp-comm
        where: {optype: [forward-send, forward-recv, backward-send, backward-recv]}
        set: {transfer: 0}
      - name: last-stage-faster
        where: {stage: [last], optype: [forward-compute, backward-compute]}
        scale: {duration: 0.8}

Contract:

* Every scenario starts from the baseline's weights: ``base`` = observed
  weights and launch delays, ``nodelay`` = observed weights without launch
  delays, ``ideal`` = typical weights (SPEC §5.3, over the whole trace) without
  launch delays.
* ``where`` keeps the ops matching every key (values of one key are
  alternatives): ``optype``, ``stage`` (numbers or ``last``), ``dp_rank``,
  ``rank``, ``step``, ``mb_id``. Without ``where`` a scenario selects every op.
* Actions on the selected ops, applied in this order: ``ideal: true`` (their
  weights become typical ones; launch delays stay), ``set`` then ``scale`` of
  ``duration`` (weight of a local op), ``transfer`` (weight of a group member:
  its end − the latest start in its group) and ``launch_delay``.
* Speedup = mean span of the simulated baseline / mean simulated step time of
  the scenario (SPEC §4), overall and per step.
* All scenarios and the baseline are evaluated in one batched pass.

Anything a file gets wrong (an unknown key or value, a selector matching no
op, an action that changes no selected op) raises :class:`ScenarioError`
naming the file, the scenario and the key.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Union

import numpy as np

from graphwia.model.dag import Dag
from graphwia.errors import UsageError
from graphwia.engine.evaluate import CompiledDag, Simulation
from graphwia.utils.io import read_yaml
from graphwia.optypes import ALL_OPTYPES, OPTYPE_CODE
from graphwia.trace.steps import format_ranges
from graphwia.trace.optable import Trace
from graphwia.model.weights import Weights, ideal_weight, weighted_dag

if TYPE_CHECKING:  # pragma: no cover
    from graphwia.analyses.standard import Analysis

BASELINES = ("nodelay", "base", "ideal")
DEFAULT_BASELINE = "nodelay"
#: Selector keys; all but optype are integer columns of the op table.
SELECTORS = ("optype", "stage", "dp_rank", "rank", "step", "mb_id")
QUANTITIES = ("duration", "transfer", "launch_delay")
ACTIONS = ("set", "scale", "ideal")
SCENARIO_KEYS = ("name", "where") + ACTIONS
TOP_KEYS = ("baseline", "scenarios")
LAST = "last"
#: Scenario names become file names of timelines.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ScenarioError(UsageError):
    """A scenario file or scenario that is malformed or does not fit the trace."""


@dataclass(frozen=True)
class Scenario:
    """One what-if: the ops ``where`` selects get ``ideal`` weights, then ``set``, then ``scale``.

    ``where`` maps a selector key to the accepted values (``stage`` may hold
    ``"last"``); ``set`` / ``scale`` map a quantity to a value / factor.
    """

    name: str
    where: dict[str, tuple] = field(default_factory=dict)
    set: dict[str, float] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)
    ideal: bool = False


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
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ScenarioError(f"{where}: 'name' must be a word of letters, digits, '.', '_' or '-', got {name!r}")
    where = f"{source}: scenario {name!r}"
    _reject_unknown(raw, SCENARIO_KEYS, where)
    selectors = _parse_where(raw.get("where"), where)  # first: an action misplaced under where is named
    ideal = raw.get("ideal", False)
    if not isinstance(ideal, bool):
        raise ScenarioError(f"{where}: 'ideal' must be true or false, got {ideal!r}")
    set_, scale = (_parse_action(raw.get(key), key, where) for key in ("set", "scale"))
    both = sorted(set(set_) & set(scale))
    if both:
        raise ScenarioError(f"{where}: {', '.join(both)} is both set and scaled; keep one")
    if not (ideal or set_ or scale):
        raise ScenarioError(f"{where}: no action; give 'set', 'scale' or 'ideal: true'")
    return Scenario(name=name, where=selectors, set=set_, scale=scale, ideal=ideal)


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
        if value not in ALL_OPTYPES:
            raise ScenarioError(f"{where}: where.optype: unknown optype {value!r}")
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
    ``weight`` the weights it was run with (for timelines).
    """

    scenarios: ScenarioSet
    steps: list[int]
    baseline_span: np.ndarray
    step_time: np.ndarray
    dag: Dag
    simulation: Simulation
    weight: np.ndarray

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
    """What scenarios are built from: the DAG, its compiled form, observed and ideal weights."""

    dag: Dag
    compiled: CompiledDag
    weights: Weights
    ideal: np.ndarray


def run_whatif(source: Union[Trace, "Analysis"], scenarios: ScenarioSet, *,
               steps: Iterable[int] | None = None) -> WhatIfResult:
    """Evaluate ``scenarios`` on a trace (or an existing analysis) in one batched pass.

    ``steps`` limits a trace to some steps (typical weights still come from the
    whole trace, as in :func:`graphwia.analyze`); an :class:`~graphwia.Analysis`
    is reused as is, with the steps it analysed.
    """
    inputs = _inputs(source, steps)
    base_weight, base_delay = baseline_weights(inputs, scenarios.baseline)
    columns = [(base_weight, base_delay)]
    columns += [scenario_weights(inputs, s, base_weight, base_delay, scenarios.source) for s in scenarios.scenarios]
    weight = np.column_stack([w for w, _ in columns])
    delay = np.column_stack([d for _, d in columns])
    sim = inputs.compiled.evaluate(weight, delay)
    return WhatIfResult(scenarios=scenarios, steps=[int(s) for s in inputs.dag.steps], baseline_span=sim.span[:, 0],
                        step_time=sim.step_time[:, 1:], dag=inputs.dag, simulation=sim, weight=weight)


def _inputs(source, steps) -> _Inputs:
    if isinstance(source, Trace):
        dag, weights, typical = weighted_dag(source, steps)
        return _Inputs(dag=dag, compiled=dag.compile(), weights=weights, ideal=ideal_weight(dag, typical))
    if steps is not None:
        raise UsageError("run_whatif: steps cannot be chosen for an existing analysis; analyse those steps instead")
    return _Inputs(dag=source.dag, compiled=source.compiled, weights=source.weights, ideal=source.ideal)


@dataclass
class ChosenScenario:
    """One named scenario's ``weight`` and launch ``delay`` (n_ops,) on ``dag``."""

    name: str
    dag: Dag
    compiled: CompiledDag
    weight: np.ndarray
    delay: np.ndarray


def choose_scenario(source: Union[Trace, "Analysis"], scenario: str = "base", *,
                    scenarios: ScenarioSet | None = None, steps: Iterable[int] | None = None) -> ChosenScenario:
    """The weights of one scenario of a trace or an analysis, by name.

    ``scenario`` is ``base``, ``nodelay`` or ``ideal`` (see the module
    docstring), or the name of a scenario in ``scenarios`` (applied to that
    set's baseline). ``steps`` limits a trace to those steps (as in :func:`run_whatif`).
    """
    if scenarios is None:
        if scenario not in BASELINES:
            raise UsageError(f"scenario {scenario!r} is not one of {', '.join(BASELINES)} "
                             f"(a custom scenario needs a scenario file)")
        scenarios = ScenarioSet(scenarios=(), baseline=scenario)
    names = [scenarios.baseline, *scenarios.names]
    if scenario not in names and scenario not in BASELINES:
        raise UsageError(f"scenario {scenario!r} is not in {scenarios.source}; choose one of: {', '.join(names)}")
    inputs = _inputs(source, steps)
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
    """The baseline's (weight, delay) with ``scenario``'s actions applied to the ops it selects."""
    where = f"{source}: scenario {scenario.name!r}"
    selected = select_ops(inputs.dag, scenario.where, where)
    member = inputs.dag.table["barrier"] >= 0
    targets = {"duration": selected & ~member, "transfer": selected & member, "launch_delay": selected}
    weight, delay = weight.copy(), delay.copy()
    if scenario.ideal:
        weight[selected] = inputs.ideal[selected]
    for action, values in (("set", scenario.set), ("scale", scenario.scale)):
        for quantity, value in values.items():
            target = targets[quantity]
            if not target.any():
                raise ScenarioError(f"{where}: {action}.{quantity} changes nothing: {_why_untouched(quantity)}")
            array = delay if quantity == "launch_delay" else weight
            array[target] = value if action == "set" else array[target] * value
    return weight, delay


def _why_untouched(quantity: str) -> str:
    if quantity == "duration":
        return "the selected ops are all group members, whose weight is a transfer time (use transfer)"
    return "the selected ops are all local ops, whose weight is a duration (use duration)"


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
            mask &= np.isin(ops["optype"], [OPTYPE_CODE[name] for name in values if name in OPTYPE_CODE])
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
