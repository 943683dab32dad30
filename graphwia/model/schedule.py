"""Infer a job's schedule: the dependency model of SPEC §2 at template level.

The schedule is a property of the program, not of timing, so it is read once
per stage from one sample worker (dp_rank 0 in the trace's first step) and
then holds for every worker of that stage in every step. A :class:`Schedule`
describes one step of one worker per stage (the *template*: named ops and the
edges between them) plus the synchronising groups that tie templates of
different stages and DP ranks together. :mod:`graphwia.model.dag` replicates it over
steps and DP ranks into the explicit DAG.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graphwia import optypes as T
from graphwia.errors import ScheduleError, TraceError
from graphwia.trace.optable import Trace
from graphwia.utils.table import Table

__all__ = ["EDGE_KINDS", "GroupTemplate", "KIND_CODE", "NOOP_EPSILON", "Schedule", "StageTemplate", "infer_schedule"]

#: Slack when deciding whether a p2p record was really launched (SPEC §2.1.3).
NOOP_EPSILON = 5e-5

#: Edge kinds, in code order. Intra-worker kinds first, then cross-worker ones.
EDGE_KINDS = (
    "compute-stream",
    "p2p-stream",
    "p2p-match",
    "first-backward-p2p",
    "dp-stream",
    "params-before-use",
    "grads-after-use",
    "tail",
    "step-start",
    "p2p-pair",
    "dp-collective",
    "embedding",
    "clip",
)
KIND_CODE = {kind: code for code, kind in enumerate(EDGE_KINDS)}

#: No-op classes of p2p records (SPEC §2.1.3).
NOOP_NONE, NOOP_UNLAUNCHED, NOOP_NO_PEER = 0, 1, 2

#: Rank of each optype code in alphabetical order of the names (the last tie-break of sample order).
_NAME_RANK = np.argsort(np.argsort(np.array(T.ALL_OPTYPES)))


@dataclass
class StageTemplate:
    """The named ops of one stage, in sample order, and the edges between them.

    ``ops`` has columns optype (codes into ALL_OPTYPES), seq_id, mc, gmc, mb_id
    (sample values; a matched p2p op takes the gmc of its compute) and noop (0, 1 or 2).
    ``edges`` is an (n, 3) int array of (from position, to position, kind code).
    """

    stage: int
    ops: Table
    edges: np.ndarray

    @property
    def size(self) -> int:
        return len(self.ops)

    def position(self, optype: str, seq_id: int) -> int | None:
        """Position of a named op in the template, or None if the stage lacks it."""
        hit = np.flatnonzero((self.ops["optype"] == T.OPTYPE_CODE[optype]) & (self.ops["seq_id"] == seq_id))
        return int(hit[0]) if len(hit) else None


@dataclass
class GroupTemplate:
    """Synchronising groups at template level (SPEC §2.2).

    ``per_worker``: groups whose members share a dp_rank (p2p pairs, embedding);
    ``across_dp``: groups spanning every dp_rank of a step (DP collectives, clip).
    Each is a table of members with columns group, stage, pos, kind, ordered by group.
    """

    per_worker: Table
    across_dp: Table


@dataclass
class Schedule:
    """Templates of every stage plus the group structure: one step of the job."""

    stages: list[StageTemplate]
    groups: GroupTemplate
    sample_step: int
    notes: list[str] = field(default_factory=list)


def infer_schedule(trace: Trace) -> Schedule:
    """Infer the per-stage templates and groups of ``trace`` (SPEC §2)."""
    try:
        return _infer_schedule(trace)
    except ScheduleError as exc:  # say which file, and where the schedule was read from
        step = int(trace.table["step"].min())
        raise ScheduleError(f"{trace.source}: {exc} (schedule read from dp_rank 0 in step {step})") from None


def _infer_schedule(trace: Trace) -> Schedule:
    ops = trace.table
    sample_step = int(ops["step"].min())
    sample = np.flatnonzero((ops["step"] == sample_step) & (ops["dp_rank"] == 0))
    has_separate_reduce = bool((ops["optype"] == T.OPTYPE_CODE[T.SEPARATE_GRADS_ALL_REDUCE]).any())
    pp, vpp = trace.meta.pp_size, trace.meta.vpp_size
    stages = []
    for stage in range(pp):
        rows = sample[ops["stage"][sample] == stage]
        if len(rows) == 0:
            raise TraceError(f"{trace.source}: worker (dp_rank 0, stage {stage}) has no ops in step {sample_step}")
        stages.append(_stage_template(ops.take(rows), stage, pp, vpp, trace.meta.uses_dp, has_separate_reduce))
    groups = _group_template(stages, trace.meta)
    return Schedule(stages=stages, groups=groups, sample_step=sample_step)


# ----------------------------------------------------------------------------
# One stage's template


def _stage_template(
    rows: Table, stage: int, pp: int, vpp: int, uses_dp: bool, has_separate_reduce: bool
) -> StageTemplate:
    # Sample order: by start, ties by seq_id, then by optype name.
    order = np.lexsort((_NAME_RANK[rows["optype"]], rows["seq_id"], rows["start_ts"]))
    ordered = rows.take(order)
    builder = _EdgeBuilder(ordered, stage, pp, vpp)
    builder.compute_stream()
    builder.p2p_streams()
    for direction in ("forward", "backward"):
        builder.match_p2p(direction)
    builder.first_backward_p2p()
    if uses_dp:
        builder.dp_stream()
        builder.params_before_use()
        if has_separate_reduce:
            builder.grads_after_last_use()
    builder.tail(uses_dp, has_separate_reduce)
    return StageTemplate(stage=stage, ops=builder.template(), edges=builder.edge_array())


class _EdgeBuilder:
    """Collects the intra-worker edges of one stage template (SPEC §2.1)."""

    def __init__(self, rows: Table, stage: int, pp: int, vpp: int):
        """``rows``: the sample worker's ops of this stage, in sample order."""
        self.rows = rows
        self.stage = stage
        self.pp = pp
        self.vpp = vpp
        self.edges: dict[tuple[int, int], int] = {}  # first kind given to an edge wins
        self.optype = rows.labels("optype")  # names: the rules below speak of optypes by name
        self.seq = rows["seq_id"]
        self.start = rows["start_ts"]
        self.end = rows["end"]
        self.mc = rows["mc"].copy()
        self.gmc = rows["gmc"].copy()
        self.noop = np.zeros(len(rows), dtype=np.int8)

    # -- helpers ---------------------------------------------------------------
    def positions(self, *optypes: str) -> np.ndarray:
        """Positions (in sample order) of the ops of the given optypes."""
        return np.flatnonzero(np.isin(self.optype, optypes))

    def named(self, optype: str, seq_id: int) -> int | None:
        hit = np.flatnonzero((self.optype == optype) & (self.seq == seq_id))
        return int(hit[0]) if len(hit) else None

    def add(self, src: int | None, dst: int | None, kind: str) -> None:
        if src is not None and dst is not None and src != dst:
            self.edges.setdefault((int(src), int(dst)), KIND_CODE[kind])

    def chain(self, positions, kind: str) -> None:
        for src, dst in zip(positions[:-1], positions[1:]):
            self.add(src, dst, kind)

    def template(self) -> Table:
        """The template ops with matched chunks and no-op classes filled in."""
        rows = self.rows
        return Table(
            {
                "optype": rows["optype"],
                "seq_id": rows["seq_id"],
                "mc": self.mc,
                "gmc": self.gmc,
                "mb_id": rows["mb_id"],
                "noop": self.noop,
            },
            rows.categories,
        )

    def edge_array(self) -> np.ndarray:
        if not self.edges:
            return np.zeros((0, 3), dtype=np.int64)
        return np.array([(s, d, k) for (s, d), k in self.edges.items()], dtype=np.int64)

    def op_name(self, pos: int) -> str:
        return f"{self.optype[pos]} seq_id {self.seq[pos]} on stage {self.stage}"

    # -- SPEC §2.1 rules ---------------------------------------------------------
    def compute_stream(self) -> None:
        self.chain(self.positions(*T.COMPUTE_STREAM), "compute-stream")

    def p2p_streams(self) -> None:
        for optype in T.P2P_OPTYPES:
            self.chain(self.positions(optype), "p2p-stream")

    def match_p2p(self, direction: str) -> None:
        compute = self.positions(f"{direction}-compute")
        if len(compute) == 0:
            return
        start, end = self.start, self.end
        last_start = start[compute].max()
        first_end = end[compute].min()
        compute_by_seq = {int(self.seq[p]): int(p) for p in compute}
        recvs = self.positions(f"{direction}-recv")
        sends = self.positions(f"{direction}-send")
        self._mark_noop(recvs[start[recvs] > last_start + NOOP_EPSILON], NOOP_UNLAUNCHED)
        self._mark_noop(sends[end[sends] < first_end - NOOP_EPSILON], NOOP_UNLAUNCHED)
        live_recvs = recvs[self.noop[recvs] == NOOP_NONE]
        live_sends = sends[self.noop[sends] == NOOP_NONE]
        for p2p, is_recv in ((live_recvs, True), (live_sends, False)):
            first_seq = self._first_matched_seq(len(p2p), len(compute), direction, is_recv)
            for k, pos in enumerate(p2p):
                comp = compute_by_seq.get(first_seq + k)
                if comp is None:
                    raise ScheduleError(
                        f"stage {self.stage}: {self.op_name(pos)} has no {direction}-compute seq_id {first_seq + k} to match"
                    )
                self._match(pos, comp, compute_by_seq, direction, is_recv)

    def _first_matched_seq(self, n_p2p: int, n_compute: int, direction: str, is_recv: bool) -> int:
        """seq_id of the compute the first live p2p op matches, or raise on a bad count."""
        if n_p2p == n_compute:
            return 0
        at_edge = self.stage in (0, self.pp - 1)
        if at_edge and n_p2p == 0:
            return 0
        if at_edge and n_p2p == n_compute - 1:
            return 1 if is_recv else 0
        kind = f"{direction}-{'recv' if is_recv else 'send'}"
        raise ScheduleError(
            f"stage {self.stage}: {n_p2p} launched {kind} op(s) for {n_compute} {direction}-compute op(s); "
            f"a {kind} is missing in the middle of the pipeline"
        )

    def _match(self, pos: int, comp: int, compute_by_seq: dict, direction: str, is_recv: bool) -> None:
        gmc = int(self.gmc[comp])
        self.gmc[pos] = gmc
        self.mc[pos] = self.mc[comp]
        if is_recv:
            self.add(pos, comp, "p2p-match")
            self.add(compute_by_seq.get(int(self.seq[comp]) - 1), pos, "p2p-match")
            peer = gmc - 1 if direction == "forward" else gmc + 1
        else:
            self.add(comp, pos, "p2p-match")
            peer = gmc + 1 if direction == "forward" else gmc - 1
        if not 0 <= peer < self.vpp * self.pp:
            self._mark_noop([pos], NOOP_NO_PEER)

    def _mark_noop(self, positions, kind: int) -> None:
        self.noop[np.asarray(positions, dtype=np.int64)] = kind

    def first_backward_p2p(self) -> None:
        order = self.positions(*T.COMPUTE_STREAM)
        is_backward = self.optype[order] == T.BACKWARD_COMPUTE
        if not is_backward.any():
            return
        i = int(np.argmax(is_backward))
        if i < 2:
            return
        anchor = int(order[i - 2])
        if self.optype[anchor] != T.FORWARD_COMPUTE:
            raise ScheduleError(
                f"stage {self.stage}: {self.op_name(anchor)} precedes the first backward compute "
                f"by two places but is not a forward compute"
            )
        for optype in (T.BACKWARD_RECV, T.BACKWARD_SEND):
            self.add(anchor, self.named(optype, 0), "first-backward-p2p")

    def dp_stream(self) -> None:
        self.chain(self.positions(T.PARAMS_ALL_GATHER, T.GRADS_REDUCE_SCATTER), "dp-stream")

    def params_before_use(self) -> None:
        mc = self.mc
        gathers = self.positions(T.PARAMS_ALL_GATHER)
        forwards = self.positions(T.FORWARD_COMPUTE)
        for chunk in np.unique(mc[gathers]):
            of_chunk = gathers[mc[gathers] == chunk]
            last_gather = of_chunk[np.argmax(self.seq[of_chunk])]
            chunk_forwards = forwards[mc[forwards] == chunk]
            if len(chunk_forwards):
                self.add(last_gather, chunk_forwards[0], "params-before-use")

    def grads_after_last_use(self) -> None:
        mc, end = self.mc, self.end
        scatters = self.positions(T.GRADS_REDUCE_SCATTER)
        backwards = self.positions(T.BACKWARD_COMPUTE)
        for chunk in np.unique(mc[scatters]):
            of_chunk = scatters[mc[scatters] == chunk]
            first_scatter = of_chunk[np.argmin(self.seq[of_chunk])]
            chunk_backwards = backwards[mc[backwards] == chunk]
            if len(chunk_backwards):
                self.add(chunk_backwards[np.argmax(end[chunk_backwards])], first_scatter, "grads-after-use")

    def tail(self, uses_dp: bool, has_separate_reduce: bool) -> None:
        """SPEC §2.1.8 with the ops the trace has: an absent op's edges pass to the next one present.

        The first tail op present takes gc's edge from the last-ending compute; with overlapped DP
        the first one after gc takes layernorm's edge from the last grads-reduce-scatter.
        """
        end = self.end
        compute = self.positions(*T.COMPUTE_STREAM)
        gc = self.named(T.GC, 0)
        layernorm = self.named(T.LAYERNORM, 0)
        embedding = self.named(T.EMBEDDING, 0)
        clip = self.named(T.CLIP, 0)
        optimizer = self.named(T.OPTIMIZER, 0)
        scatters = self.positions(T.GRADS_REDUCE_SCATTER)
        scatters = scatters[np.argsort(self.seq[scatters], kind="stable")]
        overlapped = uses_dp and has_separate_reduce
        if overlapped:
            middle = [self.named(T.SEPARATE_GRADS_ALL_REDUCE, 0)]
        elif uses_dp:
            middle = [int(p) for p in scatters]
        else:
            middle = []
        chain = [p for p in [gc, layernorm, embedding, *middle, clip, optimizer] if p is not None]
        if not chain:
            return
        if len(compute):
            self.add(int(compute[np.argmax(end[compute])]), chain[0], "tail")
        after_gc = chain[1:] if chain[0] == gc else chain
        if overlapped and len(scatters) and after_gc:
            self.add(int(scatters[-1]), after_gc[0], "tail")
        self.chain(chain, "tail")


# ----------------------------------------------------------------------------
# Groups across workers


def _group_template(stages: list[StageTemplate], meta) -> GroupTemplate:
    per_worker_groups: list[list[tuple[int, int]]] = []
    per_worker_kinds: list[int] = []
    pp = meta.pp_size
    for stage in range(pp):
        for direction, peer_stage in (("forward", (stage + 1) % pp), ("backward", (stage - 1) % pp)):
            sends = _live(stages[stage], f"{direction}-send")
            recvs = _live(stages[peer_stage], f"{direction}-recv")
            if len(sends) != len(recvs):
                raise ScheduleError(
                    f"stage {stage}: {len(sends)} launched {direction}-send op(s) but stage {peer_stage} has "
                    f"{len(recvs)} launched {direction}-recv op(s); the p2p records cannot be paired"
                )
            for send, recv in zip(sends, recvs):
                per_worker_groups.append([(stage, int(send)), (peer_stage, int(recv))])
                per_worker_kinds.append(KIND_CODE["p2p-pair"])
    if pp > 1:
        first = stages[0].position(T.EMBEDDING, 0)
        last = stages[pp - 1].position(T.EMBEDDING, 0)
        if first is not None and last is not None:
            per_worker_groups.append([(0, first), (pp - 1, last)])
            per_worker_kinds.append(KIND_CODE["embedding"])
        elif (first is None) != (last is None):
            have, lack = (0, pp - 1) if first is not None else (pp - 1, 0)
            raise ScheduleError(f"stage {have} has {T.EMBEDDING} but stage {lack} does not; they cannot be paired")

    across_groups: list[list[tuple[int, int]]] = []
    across_kinds: list[int] = []
    if meta.uses_dp and meta.dp_size > 1:
        for tpl in stages:
            for pos in np.flatnonzero(np.isin(tpl.ops["optype"], [T.OPTYPE_CODE[t] for t in T.DP_COLLECTIVES])):
                across_groups.append([(tpl.stage, int(pos))])
                across_kinds.append(KIND_CODE["dp-collective"])
    clip_positions = [(tpl.stage, tpl.position(T.CLIP, 0)) for tpl in stages]
    clip_members = [(s, p) for s, p in clip_positions if p is not None]
    if clip_members and len(clip_members) * meta.dp_size > 1:
        across_groups.append(clip_members)
        across_kinds.append(KIND_CODE["clip"])
    return GroupTemplate(
        per_worker=_members_table(per_worker_groups, per_worker_kinds),
        across_dp=_members_table(across_groups, across_kinds),
    )


def _live(tpl: StageTemplate, optype: str) -> np.ndarray:
    """Positions of the launched, peered ops of an optype, in sample order."""
    ops = tpl.ops
    return np.flatnonzero((ops["optype"] == T.OPTYPE_CODE[optype]) & (ops["noop"] == NOOP_NONE))


def _members_table(groups: list[list[tuple[int, int]]], kinds: list[int]) -> Table:
    rows = np.array(
        [(g, stage, pos, kinds[g]) for g, members in enumerate(groups) for stage, pos in members], dtype=np.int64
    ).reshape(-1, 4)
    return Table({name: rows[:, i] for i, name in enumerate(("group", "stage", "pos", "kind"))})
