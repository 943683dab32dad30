"""Why a job straggles: the known causes of its slowdown, ranked by the share each explains.

Each cause leaves a *signature* in the trace, checked first, and is carried by
a set X of op instances. A cause whose signature is present gets its
**share**: the ``rem`` of SPEC §5.6 with that X, the fraction of
``t_ori − t_ideal`` that disappears when X's weights are made typical. The
shares of all found causes are simulated as one batch on the compiled DAG.

``worker``
    A worker computes slower than the other workers of its stage.
    X: every op of those workers.
``stage``
    The workers of a stage compute longer than the job's typical compute.
    X: every op of those stages, except the slow workers' ops.
``sequence-length``
    A microbatch's compute varies from microbatch to microbatch, alike on
    every stage of its pipeline replica (a long sequence is long everywhere).
    X: the compute of microbatches atypical on every stage of their replica.
``gc``
    Garbage-collection pauses, or compute outliers at random points.
    X: every gc op and the isolated compute outliers.
``communication``
    p2p transfers or collectives much slower than their typical time.
    X: those ops.
``launch``
    CPU-side launch delays. They are outside S by construction (S starts
    from the table without them, SPEC §5.3), so this share is taken from the
    trace as recorded: ``(t_recorded − t_nodelay) / (t_recorded − t_ideal)``.

Shares need not add up to 1: the sets overlap (a slow stage's X holds its
communication ops too), and a step's time is a longest path, so removing two
causes together can gain more or less than the sum of removing each alone
(two equally slow parallel paths: removing either alone gains nothing).

All statistics are numpy reductions over the op table (no loop over ops).
Compute is compared in *factors*: an op's weight over its optype's typical
weight; a worker's factor is its compute time over the typical time of the
same ops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from graphwia import optypes as T

if TYPE_CHECKING:  # pragma: no cover: Analysis.causes imports this module
    from graphwia.analyses.standard import Analysis

__all__ = [
    "CAUSES",
    "COMM_SLOW",
    "COMPUTE_SPIKE",
    "Cause",
    "Causes",
    "Examined",
    "GC_PAUSE",
    "LABELS",
    "LISTED",
    "NAMED_SHARE",
    "SEQLEN_ATYPICAL",
    "SEQLEN_CORRELATION",
    "SEQLEN_CV",
    "STAGE_EXCESS",
    "STRAGGLER_S",
    "Thresholds",
    "WORKER_EXCESS",
    "WORKER_STANDARD_ERRORS",
    "find_causes",
]

#: The causes this module looks for, in the order ties are ranked.
CAUSES = ("worker", "stage", "sequence-length", "gc", "communication", "launch")

#: A job with S at or above this is a straggling job (the paper's threshold).
STRAGGLER_S = 1.1
#: A cause is named (in the verdict, the fleet's cause column) when it explains at least this share.
#: Measured: the causes the paper names for ST, SE and AR explain 0.69–1.22 and every other cause found
#: there at most 0.02; on synthetic jobs with one injected cause (tests/test_causes.py, seeds 1–3) the
#: injected one explains ≥ 0.54 and any other ≤ 0.19; healthy synthetic jobs have no cause at all.
NAMED_SHARE = 0.3

# Signature thresholds. "Healthy synthetic" below: 35 jobs of graphwia.synth without an injected cause
# (7 shapes incl. pp = 1, dp = 1 and interleaved, seeds 1–5, 3 steps); "injected": the same generator
# with one cause (tests/test_causes.py).

#: A worker is slow when its compute factor is at least this much above the median of the other workers
#: of its stage, after setting aside what the other stages of its replica share (a replica given long
#: sequences is not a slow worker). Largest value of a worker not slowed: ST 1.009, AR 1.003, SE 1.025,
#: healthy synthetic 1.018; AR's slowed worker 2.34, injected slow workers their factor (1.5).
WORKER_EXCESS = 0.10
#: … and by at least this many standard errors of the difference between two workers' means: a worker's
#: compute factor averages its microbatches, whose own variation (random sequence lengths) can make a
#: worker look slow when it ran few of them. Injected sequence-length variation (CV 0.4, pp = 1, 12
#: microbatches per worker) put a worker at 1.29x, 2.1 standard errors; AR's slowed worker is ~1700 away,
#: and on SE (CV 0.38, 344 microbatches per worker) the margin stays below WORKER_EXCESS.
WORKER_STANDARD_ERRORS = 3.0
#: A stage is long when the median compute factor of its (not slow) workers is at least this much above
#: the job's typical compute. ST's last stage 1.41, SE's last stage 1.20; every other stage of the real
#: traces ≤ 0.95, of healthy synthetic jobs ≤ 1.011; an injected slow stage (x1.4 of 4) 1.17–1.27.
STAGE_EXCESS = 0.10
#: Sequence-length imbalance needs a microbatch's compute (over its worker's mean) to vary with a
#: coefficient of variation of at least this (median over stages). SE 0.38 / 0.26; ST ≤ 0.029,
#: AR ≤ 0.021, healthy synthetic ≤ 0.025 (the generator's 3% noise); injected (CV 0.4) 0.34–0.39.
SEQLEN_CV = 0.10
#: … and that variation must be shared along the replica: a mean correlation between neighbouring
#: stages of at least this. SE 0.999, injected 1.00; healthy synthetic ≤ 0.15 (independent noise).
#: (ST and AR reach 0.97 with a CV of 0.02: a shared per-microbatch pattern far too small to matter.)
SEQLEN_CORRELATION = 0.5
#: A microbatch is atypical when its compute factor (over its worker's mean) is off by at least this, in
#: the same direction, on every stage of its replica: 4–5 times the CV of ST, AR and the synthetic noise.
#: 64% of SE's microbatches are atypical by this measure, none of ST's or AR's.
SEQLEN_ATYPICAL = 0.10
#: A gc op is a pause when it lasts this fraction of a typical forward compute longer than the median gc.
#: The gc ops of ST, SE and AR last < 10 µs (forward compute 0.09–0.24 s); synthetic gc ops last 1 ms
#: against a 60 ms forward, injected pauses add whole seconds.
GC_PAUSE = 0.10
#: A compute op is an outlier when it takes at least (1 + this) times its worker's typical for it. None
#: on ST, SE, AR or healthy synthetic jobs (whose noise is clipped at +9%) once long sequences (shared
#: along the replica) and slow workers are set aside.
COMPUTE_SPIKE = 1.0
#: A communication channel (one p2p or collective op type on one worker) is slow when at least half of
#: its transfers (its median) take this many times its op type's typical (median) transfer time.
#: Largest share of a channel's transfers at 2x: ST 47% (median 1.46x), SE 21% (1.44x), healthy synthetic
#: 48% (1.70x: batched interleaved p2p); AR has 18 slow channels (its last stage's layernorm all-reduce,
#: 4.8x on average) explaining 0.02; injected slow links (x100) and collectives (x4): 100%.
COMM_SLOW = 2.0
#: At most this many workers or stages are listed in a cause's evidence.
LISTED = 10


@dataclass(frozen=True)
class Thresholds:
    """The signature thresholds (see the module constants for where each default comes from)."""

    worker_excess: float = WORKER_EXCESS
    worker_standard_errors: float = WORKER_STANDARD_ERRORS
    stage_excess: float = STAGE_EXCESS
    seqlen_cv: float = SEQLEN_CV
    seqlen_correlation: float = SEQLEN_CORRELATION
    seqlen_atypical: float = SEQLEN_ATYPICAL
    gc_pause: float = GC_PAUSE
    compute_spike: float = COMPUTE_SPIKE
    comm_slow: float = COMM_SLOW


@dataclass(frozen=True)
class Cause:
    """One cause examined: its id (one of :data:`CAUSES`), the share of the slowdown it explains
    (None when its signature is absent or cannot be measured) and the evidence, JSON-ready.

    ``evidence["applicable"]`` is False when the job's shape rules the cause out (e.g. ``stage`` with
    pp = 1); ``evidence["reason"]`` then names why.
    """

    cause: str
    share: float | None
    evidence: dict = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return self.share is not None


@dataclass(frozen=True)
class Causes:
    """The causes of a job's slowdown S: ``ranked`` (found, largest share first) and ``ruled_out``."""

    slowdown: float
    ranked: tuple[Cause, ...]
    ruled_out: tuple[Cause, ...]

    @property
    def named(self) -> tuple[Cause, ...]:
        """The causes a verdict names: the first, and the second, each when its share ≥ :data:`NAMED_SHARE`."""
        return tuple(c for c in self.ranked[:2] if c.share is not None and c.share >= NAMED_SHARE)

    @property
    def label(self) -> str:
        """One word for the job: the first named cause, else ``unexplained`` (S ≥ :data:`STRAGGLER_S`)
        or ``none``."""
        if self.named:
            return self.named[0].cause
        return "unexplained" if self.slowdown >= STRAGGLER_S else "none"

    def get(self, cause: str) -> Cause:
        """The examined cause ``cause``, found or ruled out."""
        return next(c for c in self.ranked + self.ruled_out if c.cause == cause)


#: Every value of :attr:`Causes.label`.
LABELS = CAUSES + ("unexplained", "none")


def find_causes(analysis: Analysis, *, thresholds: Thresholds = Thresholds()) -> Causes:
    """Check every cause's signature on ``analysis`` and compute the share of each one found.

    Like attribution (SPEC §5.4), shares are computed only for a slowdown that reaches the
    analysis's decomposition threshold: S for the causes inside S, the launch slowdown for
    ``launch``. Below it, a cause whose signature is present is ruled out with
    ``evidence["below_threshold"]`` set.
    """
    facts = _Facts(analysis)
    worker = _worker(facts, thresholds)  # first: it marks the slow workers the stage and gc checks set aside
    seqlen = _sequence_length(facts, thresholds)
    examined = [
        worker,
        _stage(facts, thresholds),
        seqlen,
        _gc(facts, thresholds, seqlen[1]),
        _communication(facts, thresholds),
    ]
    t_ori, t_ideal = float(np.mean(analysis.step_time_nodelay)), float(np.mean(analysis.step_time_ideal))
    if analysis.slowdown >= analysis.decompose_threshold and t_ori > t_ideal:
        masks = [mask for _, mask, _ in examined if mask is not None]
        shares = iter(_rem(analysis, masks, t_ori, t_ideal)) if masks else iter(())
        causes = [Cause(name, None if mask is None else next(shares), evidence) for name, mask, evidence in examined]
    else:
        causes = [
            Cause(name, None, evidence if mask is None else dict(evidence, below_threshold=True))
            for name, mask, evidence in examined
        ]
    causes.append(_launch(analysis))
    ranked = sorted((c for c in causes if c.found), key=_ranking)
    return Causes(
        slowdown=float(analysis.slowdown), ranked=tuple(ranked), ruled_out=tuple(c for c in causes if not c.found)
    )


def _ranking(cause: Cause) -> tuple[float, int]:
    """Order of found causes: largest share first, then as in :data:`CAUSES`."""
    assert cause.share is not None  # found
    return -cause.share, CAUSES.index(cause.cause)


def _rem(analysis: Analysis, masks: list[np.ndarray], t_ori: float, t_ideal: float) -> list[float]:
    """``rem`` (SPEC §5.6) of each set of op instances, as one batch of scenarios."""
    weight, ideal = analysis.weights.weight[:, None], analysis.ideal[:, None]
    scenarios = np.where(np.column_stack(masks), ideal, weight)
    sim = analysis.compiled.evaluate(scenarios, None, times=False)
    return [float((t_ori - t_rem) / (t_ori - t_ideal)) for t_rem in sim.span.mean(axis=0)]


# -- what every cause looks at --------------------------------------------------------------
class _Facts:
    """Compute factors of one analysis, shared by the signature checks."""

    def __init__(self, analysis: Analysis):
        self.analysis = analysis
        ops = analysis.dag.table
        self.ops, self.n_ops = ops, analysis.dag.n_ops
        self.pp = int(analysis.meta.pp_size)
        self.n_dp = int(ops["dp_rank"].max()) + 1
        self.n_steps = len(analysis.steps)
        code = ops["optype"]
        self.compute = np.flatnonzero(
            (code == T.OPTYPE_CODE[T.FORWARD_COMPUTE]) | (code == T.OPTYPE_CODE[T.BACKWARD_COMPUTE])
        )
        c = self.compute
        self.weight, self.typical = analysis.weights.weight[c], analysis.ideal[c]
        self.worker_of_compute = ops["dp_rank"][c].astype(np.int64) * self.pp + ops["stage"][c]
        n_workers = self.n_dp * self.pp
        with np.errstate(invalid="ignore", divide="ignore"):
            factor = np.bincount(self.worker_of_compute, self.weight, n_workers) / np.bincount(
                self.worker_of_compute, self.typical, n_workers
            )
        #: compute factor of worker (dp_rank, stage), NaN for a worker without compute
        self.worker_factor = factor.reshape(self.n_dp, self.pp)
        self.slow_worker = np.zeros((self.n_dp, self.pp), dtype=bool)  # set by the worker check
        self.microbatches = self._microbatch_table()

    def _microbatch_table(self) -> _Microbatches | None:
        """Compute factor of every microbatch on every stage, over its worker's (None: no microbatch ids)."""
        ops, c = self.ops, self.compute
        microbatch = ops["mb_id"][c].astype(np.int64)
        if microbatch.size == 0 or microbatch.min() < 0:
            return None
        n_mb, pp = int(microbatch.max()) + 1, self.pp
        step_index = c // self.analysis.dag.ops_per_step
        row = (step_index * self.n_dp + ops["dp_rank"][c]) * n_mb + microbatch  # a microbatch of a replica
        key = row * pp + ops["stage"][c]
        n_rows = self.n_steps * self.n_dp * n_mb
        typical = np.bincount(key, self.typical, n_rows * pp).reshape(n_rows, pp)
        weight = np.bincount(key, self.weight, n_rows * pp).reshape(n_rows, pp)
        own = self.worker_factor[(np.arange(n_rows) // n_mb) % self.n_dp]  # each row's workers' factors
        with np.errstate(invalid="ignore", divide="ignore"):
            factor = weight / typical / own
        complete = np.asarray((typical > 0).all(axis=1) & np.isfinite(factor).all(axis=1))  # seen on every stage
        values = factor[complete]
        if len(values) < 2:
            return None
        cv = values.std(axis=0) / values.mean(axis=0)
        return _Microbatches(
            row_of_compute=row, factor=factor, complete=complete, cv=cv, per_worker=int(complete.sum()) / self.n_dp
        )

    def op_mask(self, rows: np.ndarray) -> np.ndarray:
        mask = np.zeros(self.n_ops, dtype=bool)
        mask[rows] = True
        return mask

    def worker_key(self) -> np.ndarray:
        """dp_rank · pp + stage of every op."""
        return self.ops["dp_rank"].astype(np.int64) * self.pp + self.ops["stage"]

    def in_slow_worker(self) -> np.ndarray:
        """Which ops belong to a slow worker."""
        return self.slow_worker.ravel()[self.worker_key()]


@dataclass(frozen=True)
class _Microbatches:
    """Compute of each microbatch of each replica (rows) on each stage (columns), over its worker's mean.

    ``row_of_compute``: the row of every compute op; ``complete``: rows seen on every stage;
    ``cv``: coefficient of variation per stage over the complete rows; ``per_worker``: complete
    rows per DP rank (the microbatches each worker's mean averages).
    """

    row_of_compute: np.ndarray
    factor: np.ndarray
    complete: np.ndarray
    cv: np.ndarray
    per_worker: float


#: What a signature check returns: (cause, which ops carry it (None: not found), evidence).
Examined = tuple[str, "np.ndarray | None", dict]


def _worker(facts: _Facts, limits: Thresholds) -> Examined:
    """Workers computing longer than the other workers of their stage (and than their replica's other stages)."""
    if facts.n_dp < 2:
        return "worker", None, {"applicable": False, "reason": "dp = 1: a worker has no peers on its stage"}
    ratio = facts.worker_factor / _median_of_others(facts.worker_factor)
    if facts.pp > 1:  # what the other stages of its replica share (e.g. its data) is not the worker's own
        ratio = ratio / np.maximum(1.0, _median_of_others(ratio.T).T)
    margin = limits.worker_excess
    table = facts.microbatches
    if table is not None:  # two workers' means differ by chance within √2 standard errors of one
        standard_error = float(table.cv.max()) / np.sqrt(table.per_worker)
        margin = max(margin, limits.worker_standard_errors * np.sqrt(2) * standard_error)
    slow = np.nan_to_num(ratio) >= 1 + margin
    facts.slow_worker = slow
    order = np.argsort(-np.nan_to_num(ratio, nan=-np.inf), axis=None)
    evidence: dict[str, object] = {
        "threshold": 1 + margin,
        "of_workers": int(np.isfinite(ratio).sum()),
        "slow_workers": int(slow.sum()),
    }
    if not slow.any():
        evidence["largest_vs_stage_peers"] = float(np.nanmax(ratio))
        return "worker", None, evidence
    listed = [int(i) for i in order[: min(int(slow.sum()), LISTED)]]
    evidence["workers"] = [
        {"dp_rank": i // facts.pp, "stage": i % facts.pp, "compute_vs_stage_peers": float(ratio.flat[i])}
        for i in listed
    ]
    others = ratio[~slow & np.isfinite(ratio)]
    evidence["largest_other_vs_stage_peers"] = float(others.max()) if others.size else None
    return "worker", facts.in_slow_worker(), evidence


def _stage(facts: _Facts, limits: Thresholds) -> Examined:
    """Stages whose (not slow) workers compute longer than the job's typical compute."""
    if facts.pp < 2:
        return "stage", None, {"applicable": False, "reason": "pp = 1: the job has one stage"}
    healthy = np.where(facts.slow_worker, np.nan, facts.worker_factor)
    counted = np.isfinite(healthy).any(axis=0)
    factor = np.full(facts.pp, np.nan)
    factor[counted] = np.nanmedian(healthy[:, counted], axis=0)
    long = np.nan_to_num(factor) >= 1 + limits.stage_excess
    evidence: dict[str, object] = {
        "threshold": 1 + limits.stage_excess,
        "stage_compute_vs_typical": [_finite(f) for f in factor],
    }
    if not long.any():
        return "stage", None, evidence
    stages = np.flatnonzero(long)
    evidence["stages"] = [int(s) for s in stages[np.argsort(-factor[stages])][:LISTED]]
    evidence["last_stage_only"] = bool(stages.tolist() == [facts.pp - 1])
    mask = np.isin(facts.ops["stage"], stages) & ~facts.in_slow_worker()
    return "stage", mask, evidence


def _sequence_length(facts: _Facts, limits: Thresholds) -> Examined:
    """Microbatch compute that varies, alike along each replica; X: the microbatches atypical everywhere."""
    table = facts.microbatches
    if table is None:
        return (
            "sequence-length",
            None,
            {"applicable": False, "reason": "compute ops carry no microbatch id (or too few microbatches)"},
        )
    correlation = _neighbour_correlation(table.factor[table.complete]) if facts.pp > 1 else None
    evidence: dict[str, object] = {
        "cv_per_stage": [_finite(x) for x in table.cv],
        "cross_stage_correlation": correlation,
        "thresholds": {
            "cv": limits.seqlen_cv,
            "correlation": limits.seqlen_correlation,
            "atypical": limits.seqlen_atypical,
        },
    }
    shared = correlation is None or correlation >= limits.seqlen_correlation
    if not (np.median(table.cv) >= limits.seqlen_cv and shared):
        return "sequence-length", None, evidence
    deviation = np.where(table.complete[:, None], table.factor - 1, 0.0)
    atypical = table.complete & (
        ((deviation >= limits.seqlen_atypical).all(axis=1)) | ((deviation <= -limits.seqlen_atypical).all(axis=1))
    )
    evidence.update(atypical_microbatches=int(atypical.sum()), of_microbatches=int(table.complete.sum()))
    if not atypical.any():
        return "sequence-length", None, evidence
    return "sequence-length", facts.op_mask(facts.compute[atypical[table.row_of_compute]]), evidence


def _gc(facts: _Facts, limits: Thresholds, seqlen_mask: np.ndarray | None) -> Examined:
    """gc pauses, and compute outliers that are neither a long microbatch nor a slow worker's."""
    ops, analysis = facts.ops, facts.analysis
    gc = np.flatnonzero(ops["optype"] == T.OPTYPE_CODE[T.GC])
    forward = analysis.typical.get(T.FORWARD_COMPUTE, 0.0)
    pause = np.zeros(0, dtype=bool)
    excess = np.zeros(0)
    if gc.size:
        excess = analysis.weights.weight[gc] - np.median(analysis.weights.weight[gc])
        pause = (excess > 0) & (excess >= limits.gc_pause * forward)
    # compute outliers: far above the worker's usual, not a long microbatch, not on a slow worker
    c = facts.compute
    usual = facts.typical * facts.worker_factor.ravel()[facts.worker_of_compute]
    with np.errstate(invalid="ignore", divide="ignore"):
        spike = facts.weight >= (1 + limits.compute_spike) * usual
    spike &= ~facts.in_slow_worker()[c]
    if seqlen_mask is not None:
        spike &= ~seqlen_mask[c]
    evidence: dict[str, object] = {
        "gc_pauses": int(pause.sum()),
        "of_gc_ops": int(gc.size),
        "compute_outliers": int(spike.sum()),
        "thresholds": {"pause_s": limits.gc_pause * forward, "outlier": 1 + limits.compute_spike},
    }
    if pause.any():
        evidence["mean_pause_s"] = float(excess[pause].mean())
    if not (pause.any() or spike.any()):
        return "gc", None, evidence
    return "gc", facts.op_mask(np.concatenate([gc, c[spike]])), evidence


def _communication(facts: _Facts, limits: Thresholds) -> Examined:
    """Channels (one p2p or collective op type on one worker) whose median transfer is slow."""
    analysis, ops = facts.analysis, facts.ops
    codes = [T.OPTYPE_CODE[name] for name in T.COMMUNICATION_OPTYPES]
    # a p2p no-op transfers nothing: its duration is the wait of the call it was batched in
    comm = np.flatnonzero(np.isin(ops["optype"], codes) & (ops["noop"] == 0) & (analysis.ideal > 0))
    n_types = len(T.ALL_OPTYPES)
    channel = facts.worker_key()[comm] * n_types + ops["optype"][comm]  # one op type on one worker
    ratio = analysis.weights.weight[comm] / analysis.ideal[comm]
    count = np.bincount(channel, minlength=facts.n_dp * facts.pp * n_types)
    slow_share = np.bincount(channel, ratio >= limits.comm_slow, len(count)) / np.maximum(count, 1)
    slow = slow_share >= 0.5  # the channel's median transfer takes ≥ comm_slow times the typical
    evidence: dict[str, object] = {
        "threshold": limits.comm_slow,
        "slow_channels": int(slow.sum()),
        "of_channels": int((count > 0).sum()),
    }
    if not slow.any():
        evidence["largest_slow_share"] = float(slow_share.max()) if comm.size else None
        return "communication", None, evidence
    mean_ratio = np.bincount(channel, ratio, len(count)) / np.maximum(count, 1)
    listed = np.flatnonzero(slow)[np.argsort(-mean_ratio[slow], kind="stable")][:LISTED]
    evidence["channels"] = [
        {
            "dp_rank": int(c // n_types // facts.pp),
            "stage": int(c // n_types % facts.pp),
            "optype": T.ALL_OPTYPES[c % n_types],
            "mean_vs_typical": float(mean_ratio[c]),
            "slow_share": float(slow_share[c]),
        }
        for c in listed
    ]
    return "communication", facts.op_mask(comm[slow[channel]]), evidence


def _launch(analysis: Analysis) -> Cause:
    """Launch delays, measured from the trace as recorded (they are outside S)."""
    evidence: dict[str, object] = {
        "launch_slowdown": float(analysis.launch_slowdown),
        "threshold": analysis.decompose_threshold,
    }
    t_recorded = float(np.mean(analysis.step_time_observed))
    t_nodelay, t_ideal = float(np.mean(analysis.step_time_nodelay)), float(np.mean(analysis.step_time_ideal))
    if not (analysis.launch_slowdown >= analysis.decompose_threshold and t_recorded > t_ideal):
        return Cause("launch", None, evidence)
    by_optype = analysis.launch.get("optype")
    if by_optype is not None:
        ((name, value),) = by_optype.top(1)
        evidence["top_optype"] = {"optype": str(name), "launch_slowdown": float(value)}
    return Cause("launch", (t_recorded - t_nodelay) / (t_recorded - t_ideal), evidence)


# -- helpers ----------------------------------------------------------------------------------
def _median_of_others(values: np.ndarray) -> np.ndarray:
    """For every cell of a (rows ≥ 2, columns) array, the median of the other cells of its column."""
    n = values.shape[0]
    order = np.argsort(values, axis=0)
    ordered = np.take_along_axis(values, order, axis=0)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(n)[:, None], order.shape), axis=0)

    def others(j: int) -> np.ndarray:  # the j-th smallest of the other cells
        return np.where(j < rank, ordered[j][None, :], ordered[min(j + 1, n - 1)][None, :])

    return (others((n - 2) // 2) + others((n - 1) // 2)) / 2


def _neighbour_correlation(values: np.ndarray) -> float | None:
    """Mean Pearson correlation of neighbouring columns (stages s and s + 1) of ``values``."""
    centred = values - values.mean(axis=0)
    norm = np.sqrt((centred**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        pairs = (centred[:, :-1] * centred[:, 1:]).sum(axis=0) / (norm[:-1] * norm[1:])
    return _finite(float(np.nanmean(pairs))) if np.isfinite(pairs).any() else None


def _finite(value: float) -> float | None:
    """``value`` as a float, or None when it is NaN or infinite (strict JSON)."""
    value = float(value)
    return value if np.isfinite(value) else None
