"""The what-if analyses of SPEC §5 on one trace.

:func:`analyze` runs the whole method: base, no-delay and ideal simulations,
the slowdowns S and launch slowdown, their attribution to op types, DP ranks,
stages and single workers, and M_S / M_W. Every scenario family
(:mod:`graphwia.engine.scenarios`) is evaluated as one batch on one compiled
DAG, or split over a dask cluster or local processes (``scheduler``, ``workers``).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

import numpy as np

from graphwia import optypes as T
from graphwia.engine.evaluate import CompiledDag, Simulation
from graphwia.engine.scenarios import Dense, Family, Swap
from graphwia.model.dag import Dag
from graphwia.model.weights import DEFAULT_TYPICAL_FROM, TypicalFrom, Weights, ideal_weight, weighted_dag
from graphwia.trace.meta import JobMeta
from graphwia.trace.optable import Trace
from graphwia.utils.table import Table

if TYPE_CHECKING:  # pragma: no cover
    from graphwia.analyses.causes import Causes

__all__ = [
    "Analysis",
    "Attribution",
    "BASE_TOLERANCE",
    "DEFAULT_DECOMPOSE_THRESHOLD",
    "Explanation",
    "GROUPINGS",
    "GroupKey",
    "Progress",
    "TOP_WORKER_PERCENT",
    "analyze",
    "descending",
    "ranked_workers",
    "ratio_of_means",
]

DEFAULT_DECOMPOSE_THRESHOLD = 1.03
#: Share of workers M_W removes (SPEC §5.8).
TOP_WORKER_PERCENT = 3
#: A base simulation further than this (relative) from the observed step times gets a warning.
BASE_TOLERANCE = 1e-3

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Explanation:
    """How much of the slowdown a set of op instances X explains (SPEC §5.6).

    ``trem`` / ``tadd``: mean span with X's weights made ideal / given back;
    ``tori`` / ``tideal``: mean span of the no-delay and ideal tables.
    """

    trem: float
    tadd: float
    tori: float
    tideal: float

    @property
    def rem(self) -> float:
        """Share of the slowdown removed by making X ideal (M_S, M_W are this)."""
        return _ratio(self.tori - self.trem, self.tori - self.tideal)

    @property
    def add(self) -> float:
        """Share of the slowdown X alone adds to the ideal."""
        return _ratio(self.tadd - self.tideal, self.tori - self.tideal)


#: A group label: an op type or grouping name (str), a DP rank or stage (int), a worker ((dp_rank, stage)).
GroupKey = Union[str, int, "tuple[int, int]"]


@dataclass(frozen=True)
class Attribution:
    """A slowdown attributed to groups of op instances (SPEC §5.4, §5.5).

    ``overall[g]`` is S_g over the analysed steps and ``per_step[step][g]`` the
    same per step, each mapping ordered from the largest slowdown down.
    """

    overall: dict[GroupKey, float]
    per_step: dict[int, dict[GroupKey, float]]

    def top(self, n: int) -> list[tuple[GroupKey, float]]:
        """The ``n`` groups with the largest slowdown, largest first."""
        return list(self.overall.items())[:n]


#: The groupings of attribution (SPEC §5.4), in the order results list them; ``worker`` is exact S_w.
GROUPINGS = ("dp_rank", "stage", "optype")


@dataclass
class Analysis:
    """Everything :func:`analyze` computed for one trace, as typed fields.

    Per-step arrays are aligned with :attr:`steps`. ``blocking`` holds the
    attribution of S by ``optype``, ``dp_rank``, ``stage`` and (exact S_w,
    keys ``(dp_rank, stage)``) ``worker``; a grouping is absent when S is below
    the decomposition threshold (or S_w was not asked for). ``launch`` holds
    the attribution of the launch slowdown likewise. ``worker_table`` has one
    row per worker (dp_rank, stage, rank) with its S_dp_rank, S_stage, score =
    min of both, and exact S_worker (NaN when not computed), sorted by
    (dp_rank, stage); :attr:`workers` is the same as a DataFrame. The published
    JSON files are built from these fields by :mod:`graphwia.outputs.results`.
    """

    trace: Trace
    dag: Dag
    compiled: CompiledDag
    weights: Weights
    typical: dict[str, float]
    ideal: np.ndarray  # ideal weight of every op
    simulations: dict[str, Simulation]
    steps: np.ndarray
    step_time_observed: np.ndarray  # span of the trace per step (``step_t_base``)
    step_time_nodelay: np.ndarray  # span of the no-delay table (``step_t_nodelay``)
    step_time_ideal: np.ndarray  # span of the ideal table (``step_t_noblk``)
    slowdown: float  # S (SPEC §5.3, Eq. 1)
    step_slowdown: np.ndarray
    launch_slowdown: float
    launch_step_slowdown: np.ndarray
    blocking: dict[str, Attribution]
    launch: dict[str, Attribution]
    ms: Explanation
    mw: Explanation
    worker_table: Table
    decompose_threshold: float = DEFAULT_DECOMPOSE_THRESHOLD
    warnings: list[str] = field(default_factory=list)
    #: Steps the typical values (the ideal) come from: "selected" (the analysed ones) or "all" of the trace.
    typical_from: TypicalFrom = DEFAULT_TYPICAL_FROM

    @functools.cached_property
    def workers(self):
        """The worker table as a pandas DataFrame."""
        return self.worker_table.to_pandas()

    @functools.cached_property
    def causes(self) -> Causes:
        """The causes of the slowdown, ranked (:func:`graphwia.analyses.causes.find_causes`), found on first use."""
        from graphwia.analyses.causes import find_causes  # found on first use

        return find_causes(self)

    @property
    def meta(self) -> JobMeta:
        return self.trace.meta

    @property
    def name(self) -> str:
        return self.trace.meta.trial_name

    @property
    def Ms(self) -> float:  # noqa: N802 (the paper's name)
        """M_S: share of the slowdown explained by the last stage (SPEC §5.7)."""
        return self.ms.rem

    @property
    def Mw(self) -> float:  # noqa: N802 (the paper's name)
        """M_W: share of the slowdown explained by the top 3% of workers (SPEC §5.8)."""
        return self.mw.rem


def analyze(
    trace: Trace,
    *,
    steps: int | Iterable[int] | None = None,
    typical_from: TypicalFrom = DEFAULT_TYPICAL_FROM,
    decompose_threshold: float = DEFAULT_DECOMPOSE_THRESHOLD,
    per_worker: bool = True,
    progress: Progress | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
) -> Analysis:
    """Run the full what-if analysis of SPEC §5 on ``trace``.

    Parameters
    ----------
    steps:
        Analyse only these steps (one step number or several). The schedule
        comes from the trace's first step and the weights are as recorded;
        typical values and means are over the analysed steps (SPEC §5,
        "Analysing some steps only").
    typical_from:
        ``"selected"``: typical values from the analysed steps only (the
        default); ``"all"``: from every step of the trace, so a step's numbers
        do not depend on which other steps are analysed.
    decompose_threshold:
        Attribution runs only when the slowdown it decomposes reaches this.
    per_worker:
        Also attribute S to every single worker (one scenario per worker).
    progress:
        Called with a short label before each phase.
    scheduler, workers:
        Evaluate the scenario families (attribution, exact S_w, M_S, M_W) on
        the dask.distributed cluster at this address (``tcp://host:port``), or
        on this many local worker processes; the results are the same as
        without. At most one of the two.
    """
    say = progress or (lambda label: None)
    say("building the DAG")
    dag, weights, typical = weighted_dag(trace, steps=steps, typical_from=typical_from)
    say("compiling")
    compiled = dag.compile()
    # Every family on the compiled kernel when the run as a whole will load it anyway.
    n_workers = trace.meta.dp_size * trace.meta.pp_size
    n_scenarios = 3 + trace.meta.dp_size + trace.meta.pp_size + len(T.ALL_OPTYPES) + 4 + per_worker * n_workers
    kernel = "compiled" if compiled.use_compiled("auto", n_scenarios) else "auto"
    if kernel == "compiled":
        compiled.load_compiled_kernel(say)  # the first run after installing compiles it: say so
    with contextlib.ExitStack() as stack:
        if scheduler is None and workers is None:
            evaluate = functools.partial(compiled.evaluate_family, kernel=kernel)
        else:
            from graphwia.engine.distributed import ClusterEvaluator  # uuid and dask only when asked for

            say("connecting to the dask scheduler" if scheduler else f"starting {workers} local worker process(es)")
            cluster = stack.enter_context(ClusterEvaluator(scheduler=scheduler, workers=workers))
            evaluate = functools.partial(cluster.evaluate, compiled)
        analysis = _Analyzer(
            trace, dag, compiled, weights, typical, decompose_threshold, per_worker, say, evaluate, kernel
        ).run()
    analysis.typical_from = typical_from
    return analysis


class _Analyzer:
    """One analysis run; holds the arrays every phase shares."""

    def __init__(
        self,
        trace,
        dag,
        compiled,
        weights,
        typical,
        threshold,
        per_worker,
        say,
        evaluate: Callable[[Family], Simulation],
        kernel: str,
    ):
        self.trace, self.dag, self.compiled = trace, dag, compiled
        self.evaluate = evaluate  # step times and spans of a scenario family, here or on a cluster
        self.kernel = kernel  # of the base, no-delay and ideal simulations (always here: they keep times)
        self.weights, self.typical = weights, typical
        self.threshold, self.per_worker, self.say = threshold, per_worker, say
        self.ideal = ideal_weight(dag, typical)
        self.zero = np.zeros(dag.n_ops)
        self.steps = [int(s) for s in dag.steps]
        self.warnings: list[str] = []

    def run(self) -> Analysis:
        w, d = self.weights.weight, self.weights.delay
        self.say("simulating base, no-delay and ideal")
        sims = self._split(
            self.compiled.evaluate(
                np.column_stack([w, w, self.ideal]), np.column_stack([d, self.zero, self.zero]), kernel=self.kernel
            ),
            ["base", "nodelay", "ideal"],
        )
        self.sims = sims
        observed_span = self.compiled.spans(self.dag.table["start"][:, None], self.dag.table["end"][:, None])[:, 0]
        self._check_base(sims["base"], observed_span)
        nd_span = sims["nodelay"].span[:, 0]
        nd_time = sims["nodelay"].step_time[:, 0]
        ideal_time = sims["ideal"].step_time[:, 0]
        blocking = ratio_of_means(nd_span, ideal_time)
        launch = ratio_of_means(observed_span, nd_time)

        groupings = self._groupings()
        blocking_parts = {
            name: self._attribute(codes, labels, launch=False, name=name) for name, (codes, labels) in groupings.items()
        }
        launch_parts = {}
        if launch >= self.threshold:
            launch_groupings = dict(groupings, optype=self._optype_codes(first_op=True))
            launch_parts = {
                name: self._attribute(codes, labels, launch=True, name=name)
                for name, (codes, labels) in launch_groupings.items()
            }
        workers, by_worker = self._worker_table(blocking_parts)
        self.say("characterising: M_S and M_W")
        ms, mw = self._characterise(workers)

        keep_blocking = blocking >= self.threshold  # attribution is published only above the threshold
        blocking_kept = {name: blocking_parts[name] for name in GROUPINGS} if keep_blocking else {}
        if keep_blocking and by_worker is not None:
            blocking_kept["worker"] = by_worker
        return Analysis(
            trace=self.trace,
            dag=self.dag,
            compiled=self.compiled,
            weights=self.weights,
            typical=self.typical,
            ideal=self.ideal,
            simulations=sims,
            steps=np.asarray(self.steps),
            step_time_observed=observed_span,
            step_time_nodelay=nd_span,
            step_time_ideal=sims["ideal"].span[:, 0],
            slowdown=blocking,
            step_slowdown=nd_span / ideal_time,
            launch_slowdown=launch,
            launch_step_slowdown=observed_span / nd_time,
            blocking=blocking_kept,
            launch=launch_parts,
            ms=ms,
            mw=mw,
            worker_table=workers,
            decompose_threshold=self.threshold,
            warnings=self.warnings,
        )

    # -- scenarios ------------------------------------------------------------------
    def _attribute(self, codes: np.ndarray, labels: Sequence[GroupKey], launch: bool, name: str) -> Attribution:
        """Give each group back its original weights (or launch delays) on top of the reference."""
        self.say(f"attributing {'launch delays' if launch else 'the slowdown'} by {name} ({len(labels)} scenarios)")
        if launch:
            family = Swap(self.weights.weight, codes, len(labels), delay=self.zero, chosen_delay=self.weights.delay)
        else:
            family = Swap(self.ideal, codes, len(labels), chosen_weight=self.weights.weight)
        sim = self.evaluate(family)
        reference = self.sims["nodelay" if launch else "ideal"].step_time[:, 0]
        overall = {label: ratio_of_means(sim.step_time[:, i], reference) for i, label in enumerate(labels)}
        per_step_ratio = sim.step_time / reference[:, None]
        per_step = {
            step: descending({label: float(per_step_ratio[s, i]) for i, label in enumerate(labels)})
            for s, step in enumerate(self.steps)
        }
        return Attribution(overall=descending(overall), per_step=per_step)

    def _groupings(self) -> dict[str, tuple[np.ndarray, Sequence[GroupKey]]]:
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
        return (ops["seq_id"] == 0) & (
            ((stage == 0) & (optype == T.OPTYPE_CODE[T.FORWARD_COMPUTE]))
            | ((stage > 0) & (optype == T.OPTYPE_CODE[T.FORWARD_RECV]))
        )

    def _worker_key(self, ops: Table) -> np.ndarray:
        """dp_rank · pp + stage: one number per worker, in (dp_rank, stage) order."""
        return ops["dp_rank"].astype(np.int64) * self.trace.meta.pp_size + ops["stage"]

    def _worker_table(self, blocking_parts: dict[str, Attribution]) -> tuple[Table, Attribution | None]:
        """Score each worker by min(S_dp_rank, S_stage) and, optionally, attribute S to each worker exactly."""
        ops = self.dag.table
        first_step = ops.take(np.arange(self.dag.ops_per_step))  # every step holds every worker
        keys, first = np.unique(self._worker_key(first_step), return_index=True)
        dp_rank, stage = first_step["dp_rank"][first], first_step["stage"][first]
        s_dp = blocking_parts["dp_rank"].overall
        s_stage = blocking_parts["stage"].overall
        s_dp_rank = np.array([s_dp[int(d)] for d in dp_rank], dtype=np.float64)
        s_stage_of = np.array([s_stage[int(s)] for s in stage], dtype=np.float64)
        s_worker = np.full(len(keys), np.nan)
        by_worker = None
        if self.per_worker:
            codes, present = _codes_of(self._worker_key(ops))
            pp = self.trace.meta.pp_size
            by_worker = self._attribute(
                codes, [(int(k) // pp, int(k) % pp) for k in present], launch=False, name="worker"
            )
            exact = by_worker.overall
            s_worker = np.array([exact[(int(d), int(s))] for d, s in zip(dp_rank, stage)], dtype=np.float64)
        table = Table(
            {
                "dp_rank": dp_rank,
                "stage": stage,
                "rank": first_step["rank"][first],
                "S_dp_rank": s_dp_rank,
                "S_stage": s_stage_of,
                "score": np.minimum(s_dp_rank, s_stage_of),
                "S_worker": s_worker,
            }
        )
        return table, by_worker

    def _characterise(self, workers: Table) -> tuple[Explanation, Explanation]:
        ops = self.dag.table
        last_stage = ops["stage"] == self.trace.meta.pp_size - 1
        n_top = math.ceil(TOP_WORKER_PERCENT * len(workers) / 100)
        top = ranked_workers(workers)[:n_top]
        in_top = np.isin(self._worker_key(ops), self._worker_key(workers.take(top)))
        ms, mw = self._explain([last_stage, in_top])
        return ms, mw

    def _explain(self, masks: list[np.ndarray]) -> list[Explanation]:
        """rem/add for each set of op instances (SPEC §5.6), all in one batch."""
        w, ideal = self.weights.weight[:, None], self.ideal[:, None]
        mask = np.column_stack(masks)
        removed = np.where(mask, ideal, w)
        added = np.where(mask, w, ideal)
        sim = self.evaluate(Dense(np.hstack([removed, added])))
        t_ori = float(self.sims["nodelay"].span[:, 0].mean())
        t_ideal = float(self.sims["ideal"].span[:, 0].mean())
        means = sim.span.mean(axis=0)
        return [
            Explanation(trem=float(means[i]), tadd=float(means[len(masks) + i]), tori=t_ori, tideal=t_ideal)
            for i in range(len(masks))
        ]

    # -- helpers ----------------------------------------------------------------------
    def _check_base(self, base: Simulation, observed_span: np.ndarray) -> None:
        error = np.abs(base.step_time[:, 0] - observed_span) / np.maximum(observed_span, 1e-12)
        if error.max() > BASE_TOLERANCE:
            worst = [i for i in np.argsort(error)[::-1][:3] if error[i] > BASE_TOLERANCE]
            named = ", ".join(f"step {self.steps[i]} ({error[i]:.2%})" for i in worst)
            self.warnings.append(
                f"base simulation differs from the observed step time by more than "
                f"{BASE_TOLERANCE:.1%} in {(error > BASE_TOLERANCE).sum()} step(s); worst: {named}"
            )
        if self.weights.clamped_delay:
            self.warnings.append(
                f"{self.weights.clamped_delay} launch delay(s) <= -0.01 s set to 0 (clock skew); "
                f"worst: {self.weights.worst_delay}"
            )
        if self.weights.clamped_transfer:
            self.warnings.append(
                f"{self.weights.clamped_transfer} transfer time(s) <= -0.01 s set to 0 (clock skew); "
                f"worst: {self.weights.worst_transfer}"
            )

    def _split(self, sim: Simulation, names: list[str]) -> dict[str, Simulation]:
        return {name: sim.select([i]) for i, name in enumerate(names)}


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


def _grouping(values: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """A scenario family's groups: each op's group code and the groups' labels (the values)."""
    codes, present = _codes_of(values)
    return codes, [int(x) for x in present]


def descending(values: dict) -> dict:
    """The mapping ordered from the largest value down (stable for ties)."""
    return dict(sorted(values.items(), key=lambda kv: -kv[1]))


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator != 0 else float("nan")
