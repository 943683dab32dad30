"""The what-if analyses of SPEC §5 on one trace.

:func:`analyze` runs the whole method: base, no-delay and ideal simulations,
the slowdowns S and launch slowdown, their attribution to op types, DP ranks,
stages and single workers, and M_S / M_W. Every scenario family is evaluated
as one batch on one compiled DAG.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from graphwia import optypes as T
from graphwia.model.dag import Dag
from graphwia.engine.evaluate import CompiledDag, Simulation
from graphwia.utils.table import Table
from graphwia.trace.optable import Trace
from graphwia.model.weights import Weights, ideal_weight, weighted_dag

DEFAULT_DECOMPOSE_THRESHOLD = 1.03
#: Share of workers M_W removes (SPEC §5.8).
TOP_WORKER_PERCENT = 3
#: A base simulation further than this (relative) from the observed step times gets a warning.
BASE_TOLERANCE = 1e-3

Progress = Callable[[str], None]


@dataclass
class Explanation:
    """How much of the slowdown a set of op instances explains (SPEC §5.6)."""

    trem: float
    tadd: float
    tori: float
    tideal: float

    @property
    def rem(self) -> float:
        return _ratio(self.tori - self.trem, self.tori - self.tideal)

    @property
    def add(self) -> float:
        return _ratio(self.tadd - self.tideal, self.tori - self.tideal)

    def to_dict(self, name: str) -> dict:
        """The published ``ms-``/``mw-`` schema with the metric called ``name``."""
        return {"trem": self.trem, "tadd": self.tadd, "tori": self.tori, "tideal": self.tideal,
                "rem": self.rem, "add": self.add, name: self.rem}


@dataclass
class Attribution:
    """Slowdown attributed to groups: overall and per step, plus step times."""

    overall: dict[str, float]
    per_step: dict[int, dict[str, float]]


@dataclass
class Analysis:
    """Everything :func:`analyze` computed for one trace.

    ``result`` is the published ``result-<trial>.json`` content (plus
    ``blocking_decompose_by_worker`` when per-worker attribution ran); ``ms``
    and ``mw`` the published M_S / M_W dicts; ``worker_table`` one row per
    worker (dp_rank, stage, rank) with its S_dp_rank, S_stage, score = min of
    both, and exact S_worker (NaN when not computed), sorted by (dp_rank,
    stage); :attr:`workers` is the same as a DataFrame.
    """

    trace: Trace
    dag: Dag
    compiled: CompiledDag
    weights: Weights
    typical: dict[str, float]
    ideal: np.ndarray  # ideal weight of every op
    simulations: dict[str, Simulation]
    result: dict
    ms: dict
    mw: dict
    worker_table: Table
    warnings: list[str] = field(default_factory=list)

    @functools.cached_property
    def workers(self):
        """The worker table as a pandas DataFrame."""
        return self.worker_table.to_pandas()

    @property
    def name(self) -> str:
        return self.trace.meta.trial_name

    @property
    def slowdown(self) -> float:
        return self.result["blocking_slowdown"]


def analyze(trace: Trace, *, steps: Iterable[int] | None = None,
            decompose_threshold: float = DEFAULT_DECOMPOSE_THRESHOLD, per_worker: bool = True,
            progress: Progress | None = None) -> Analysis:
    """Run the full what-if analysis of SPEC §5 on ``trace``.

    Parameters
    ----------
    steps:
        Analyse only these steps. The schedule and the typical op weights are
        always taken from the whole trace, so a step's numbers do not depend on
        which other steps are analysed.
    decompose_threshold:
        Attribution runs only when the slowdown it decomposes reaches this.
    per_worker:
        Also attribute S to every single worker (one scenario per worker).
    progress:
        Called with a short label before each phase.
    """
    say = progress or (lambda label: None)
    say("building the DAG")
    dag, weights, typical = weighted_dag(trace, steps)
    say("compiling")
    compiled = dag.compile()
    return _Analyzer(trace, dag, compiled, weights, typical, decompose_threshold, per_worker, say).run()


class _Analyzer:
    """One analysis run; holds the arrays every phase shares."""

    def __init__(self, trace, dag, compiled, weights, typical, threshold, per_worker, say):
        self.trace, self.dag, self.compiled = trace, dag, compiled
        self.weights, self.typical = weights, typical
        self.threshold, self.per_worker, self.say = threshold, per_worker, say
        self.ideal = ideal_weight(dag, typical)
        self.zero = np.zeros(dag.n_ops)
        self.steps = [int(s) for s in dag.steps]
        self.warnings: list[str] = []

    def run(self) -> Analysis:
        w, d = self.weights.weight, self.weights.delay
        self.say("simulating base, no-delay and ideal")
        sims = self._split(self.compiled.evaluate(np.column_stack([w, w, self.ideal]),
                                                  np.column_stack([d, self.zero, self.zero])),
                           ["base", "nodelay", "ideal"])
        self.sims = sims
        observed_span = self.compiled.spans(self.dag.table["start"][:, None], self.dag.table["end"][:, None])[:, 0]
        self._check_base(sims["base"], observed_span)
        nd_span = sims["nodelay"].span[:, 0]
        nd_time = sims["nodelay"].step_time[:, 0]
        ideal_time = sims["ideal"].step_time[:, 0]
        blocking = ratio_of_means(nd_span, ideal_time)
        launch = ratio_of_means(observed_span, nd_time)

        groupings = self._groupings()
        blocking_parts = {name: self._attribute(codes, labels, launch=False, name=name)
                          for name, (codes, labels) in groupings.items()}
        launch_parts = {}
        if launch >= self.threshold:
            launch_groupings = dict(groupings, optype=self._optype_codes(first_op=True))
            launch_parts = {name: self._attribute(codes, labels, launch=True, name=name)
                            for name, (codes, labels) in launch_groupings.items()}
        workers = self._worker_table(blocking_parts)
        self.say("characterising: M_S and M_W")
        ms, mw = self._characterise(workers)

        result = {
            "job_meta": self.trace.meta.to_dict(),
            "step_t_base": self._by_step(observed_span),
            "step_t_nodelay": self._by_step(nd_span),
            "step_t_noblk": self._by_step(sims["ideal"].span[:, 0]),
            "launch_slowdown": launch,
            "blocking_slowdown": blocking,
            "blocking_step_slowdown": _sorted_desc(self._by_step(nd_span / ideal_time)),
            "launch_step_slowdown": _sorted_desc(self._by_step(observed_span / nd_time)),
        }
        keep_blocking = blocking >= self.threshold  # attribution is published only above the threshold
        for name in ("dp_rank", "stage", "optype"):
            b, l_ = blocking_parts[name], launch_parts.get(name)
            result[f"blocking_decompose_by_{name}"] = b.overall if keep_blocking else None
            result[f"launch_decompose_by_{name}"] = l_.overall if l_ else None
            result[f"blocking_decompose_by_{name}_per_step"] = _str_keys(b.per_step) if keep_blocking else None
            result[f"launch_decompose_by_{name}_per_step"] = _str_keys(l_.per_step) if l_ else None
        if self.per_worker:
            by_worker = {f"{d},{s}": float(v) for d, s, v in zip(workers["dp_rank"], workers["stage"],
                                                                    workers["S_worker"])}
            result["blocking_decompose_by_worker"] = _sorted_desc(by_worker) if keep_blocking else None
        return Analysis(trace=self.trace, dag=self.dag, compiled=self.compiled, weights=self.weights,
                        typical=self.typical, ideal=self.ideal, simulations=sims, result=result,
                        ms=ms.to_dict("Ms"), mw=mw.to_dict("Mw"), worker_table=workers, warnings=self.warnings)

    # -- scenarios ------------------------------------------------------------------
    def _attribute(self, codes: np.ndarray, labels: list[str], launch: bool, name: str) -> Attribution:
        """Give each group back its original weights (or launch delays) on top of the reference."""
        self.say(f"attributing {'launch delays' if launch else 'the slowdown'} by {name} ({len(labels)} scenarios)")
        weight, delay, ideal = self.weights.weight[:, None], self.weights.delay[:, None], self.ideal[:, None]

        def columns(lo: int, hi: int):
            mask = codes[:, None] == np.arange(lo, hi)[None, :]
            if launch:
                return np.broadcast_to(weight, mask.shape), np.where(mask, delay, 0.0)
            return np.where(mask, weight, ideal), None

        sim = self.compiled.evaluate_columns(len(labels), columns)
        reference = self.sims["nodelay" if launch else "ideal"].step_time[:, 0]
        overall = {label: ratio_of_means(sim.step_time[:, i], reference) for i, label in enumerate(labels)}
        per_step_ratio = sim.step_time / reference[:, None]
        per_step = {step: _sorted_desc({label: float(per_step_ratio[s, i]) for i, label in enumerate(labels)})
                    for s, step in enumerate(self.steps)}
        return Attribution(overall=_sorted_desc(overall), per_step=per_step)

    def _groupings(self) -> dict[str, tuple[np.ndarray, list[str]]]:
        ops = self.dag.table
        return {
            "dp_rank": _grouping(ops["dp_rank"]),
            "stage": _grouping(ops["stage"]),
            "optype": self._optype_codes(first_op=False),
        }

    def _optype_codes(self, first_op: bool) -> tuple[np.ndarray, list[str]]:
        """Attribution group of every op (p2p merged per direction; optionally ``first-op``)."""
        group_of_category = np.array([T.ATTRIBUTION_GROUP[name] for name in T.ALL_OPTYPES] + [T.FIRST_OP])
        group_codes = self.dag.table["optype"].astype(np.int64)
        if first_op:
            group_codes = np.where(self._first_ops(), len(group_of_category) - 1, group_codes)
        codes, present = _codes_of(group_codes)
        names = group_of_category[present]
        labels, label_codes = np.unique(names, return_inverse=True)  # merge p2p optypes sharing a group
        return label_codes[codes], [str(x) for x in labels]

    def _first_ops(self) -> np.ndarray:
        """The first forward compute on stage 0 and the first forward-recv on later stages."""
        ops = self.dag.table
        stage, optype = ops["stage"], ops["optype"]
        return (ops["seq_id"] == 0) & (((stage == 0) & (optype == T.OPTYPE_CODE[T.FORWARD_COMPUTE]))
                                       | ((stage > 0) & (optype == T.OPTYPE_CODE[T.FORWARD_RECV])))

    def _worker_key(self, ops: Table) -> np.ndarray:
        """dp_rank · pp + stage: one number per worker, in (dp_rank, stage) order."""
        return ops["dp_rank"].astype(np.int64) * self.trace.meta.pp_size + ops["stage"]

    def _worker_table(self, blocking_parts: dict[str, Attribution]) -> Table:
        """Score each worker by min(S_dp_rank, S_stage) and, optionally, its exact S_w."""
        ops = self.dag.table
        first_step = ops.take(np.arange(self.dag.ops_per_step))  # every step holds every worker
        keys, first = np.unique(self._worker_key(first_step), return_index=True)
        dp_rank, stage = first_step["dp_rank"][first], first_step["stage"][first]
        s_dp = blocking_parts["dp_rank"].overall
        s_stage = blocking_parts["stage"].overall
        s_dp_rank = np.array([s_dp[str(d)] for d in dp_rank], dtype=np.float64)
        s_stage_of = np.array([s_stage[str(s)] for s in stage], dtype=np.float64)
        s_worker = np.full(len(keys), np.nan)
        if self.per_worker:
            codes, labels = _grouping(self._worker_key(ops))
            exact = self._attribute(codes, labels, launch=False, name="worker").overall
            s_worker = np.array([exact[str(k)] for k in keys], dtype=np.float64)
        return Table({"dp_rank": dp_rank, "stage": stage, "rank": first_step["rank"][first],
                      "S_dp_rank": s_dp_rank, "S_stage": s_stage_of, "score": np.minimum(s_dp_rank, s_stage_of),
                      "S_worker": s_worker})

    def _characterise(self, workers: Table) -> tuple[Explanation, Explanation]:
        ops = self.dag.table
        last_stage = ops["stage"] == self.trace.meta.pp_size - 1
        n_top = math.ceil(TOP_WORKER_PERCENT * len(workers) / 100)
        top = ranked_workers(workers)[:n_top]
        in_top = np.isin(self._worker_key(ops), self._worker_key(workers.take(top)))
        return self._explain([last_stage, in_top])

    def _explain(self, masks: list[np.ndarray]) -> list[Explanation]:
        """rem/add for each set of op instances (SPEC §5.6), all in one batch."""
        w, ideal = self.weights.weight[:, None], self.ideal[:, None]
        mask = np.column_stack(masks)
        removed = np.where(mask, ideal, w)
        added = np.where(mask, w, ideal)
        both = np.hstack([removed, added])
        sim = self.compiled.evaluate_columns(both.shape[1], lambda lo, hi: (both[:, lo:hi], None))
        t_ori = float(self.sims["nodelay"].span[:, 0].mean())
        t_ideal = float(self.sims["ideal"].span[:, 0].mean())
        means = sim.span.mean(axis=0)
        return [Explanation(trem=float(means[i]), tadd=float(means[len(masks) + i]), tori=t_ori, tideal=t_ideal)
                for i in range(len(masks))]

    # -- helpers ----------------------------------------------------------------------
    def _check_base(self, base: Simulation, observed_span: np.ndarray) -> None:
        error = np.abs(base.step_time[:, 0] - observed_span) / np.maximum(observed_span, 1e-12)
        if error.max() > BASE_TOLERANCE:
            worst = [i for i in np.argsort(error)[::-1][:3] if error[i] > BASE_TOLERANCE]
            named = ", ".join(f"step {self.steps[i]} ({error[i]:.2%})" for i in worst)
            self.warnings.append(f"base simulation differs from the observed step time by more than "
                                 f"{BASE_TOLERANCE:.1%} in {(error > BASE_TOLERANCE).sum()} step(s); worst: {named}")
        if self.weights.clamped_delay:
            self.warnings.append(f"{self.weights.clamped_delay} launch delay(s) <= -0.01 s set to 0 (clock skew); "
                                 f"worst: {self.weights.worst_delay}")
        if self.weights.clamped_transfer:
            self.warnings.append(f"{self.weights.clamped_transfer} transfer time(s) <= -0.01 s set to 0 (clock skew); "
                                 f"worst: {self.weights.worst_transfer}")

    def _split(self, sim: Simulation, names: list[str]) -> dict[str, Simulation]:
        return {name: sim.select([i]) for i, name in enumerate(names)}

    def _by_step(self, values: np.ndarray) -> dict[str, float]:
        return {str(step): float(v) for step, v in zip(self.steps, values)}


def ratio_of_means(numerator: np.ndarray, denominator: np.ndarray) -> float:
    """mean(numerator) / mean(denominator): the slowdown of SPEC §5 (Eq. 1)."""
    return float(np.mean(numerator) / np.mean(denominator))


def ranked_workers(workers: Table) -> np.ndarray:
    """Rows of a worker table from the highest score down; ties go to the lower rank (M_W's order)."""
    return np.lexsort((workers["rank"], -workers["score"]))


def _codes_of(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes 0..k-1 of non-negative integer ``values``, in value order, and the k distinct values.

    Counting instead of sorting: linear in the number of ops.
    """
    values = np.asarray(values, dtype=np.int64)
    present = np.zeros(int(values.max()) + 1, dtype=bool)
    present[values] = True
    code_of = np.cumsum(present) - 1
    return code_of[values], np.flatnonzero(present)


def _grouping(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """A scenario family's groups: each op's group code and the groups' labels."""
    codes, present = _codes_of(values)
    return codes, [str(x) for x in present]


def _sorted_desc(values: dict[str, float]) -> dict[str, float]:
    return dict(sorted(values.items(), key=lambda kv: -kv[1]))


def _str_keys(per_step: dict[int, dict]) -> dict[str, dict]:
    return {str(k): v for k, v in per_step.items()}


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator != 0 else float("nan")
