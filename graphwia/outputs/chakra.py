"""Chakra execution traces of one scenario, for network simulators (ASTRA-sim and other Chakra consumers).

:func:`export_chakra` writes, for one scenario of a trace (``base``,
``nodelay``, ``ideal`` or a what-if scenario), into ``out_dir``:

* ``<name>.<rank>.et`` for every traced rank: a Chakra execution trace, the
  length-delimited protobuf stream of :mod:`graphwia.outputs.chakra_schema`
  (a ``GlobalMetadata``, then ``Node`` messages in a topological order, ids
  0, 1, … in file order);
* ``<name>.comm_groups.json``: the communicator groups the nodes' ``pg_name``
  attributes refer to, ``{"<id>": [rank, …]}`` as ASTRA-sim reads them;
* ``<name>.README.md``: what was exported and how to replay it.

The default ``<name>`` is ``<trial_name>-<scenario>``; names pass the name
rule of :mod:`graphwia.utils.names`. The files of one export are one output
set (:func:`graphwia.utils.io.output_set`): they replace an earlier export of
the same name together or not at all, and that export's files this one does
not write (ranks it had and this one lacks) are removed.

How the DAG maps to nodes
-------------------------
Every op instance of the analysed steps is one node in its worker's file:

* a local op (forward/backward compute, gc, optimizer, layernorm-grads-all-reduce,
  the DP ops of a job without DP, and p2p no-ops, which are groups of one
  without a peer, SPEC §2.1.3) → ``COMP_NODE`` whose duration is its weight;
* a member of a p2p pair → ``COMM_SEND_NODE`` / ``COMM_RECV_NODE`` with
  ``comm_src``, ``comm_dst`` (ranks), ``comm_tag`` (one per pair, the same on
  both ends) and ``comm_size``;
* a member of a DP collective, of the embedding pair or of the clip barrier →
  ``COMM_COLL_NODE`` with ``comm_type`` (all-gather, reduce-scatter or
  all-reduce), ``comm_size`` and ``pg_name`` (a group of the group file);
  the duration of a group member is its transfer time.

A launch delay of the scenario (``base`` has them; what-if scenarios keep
their baseline's or set them) that rounds to at least 1 µs is a ``COMP_NODE``
of its own in front of its op: it takes over the op's dependencies and the op
depends on it alone. Intra-worker edges of the DAG (SPEC §2.1) are
``data_deps``; what links workers is the matching of each send with its
receive and of each collective with its peers.

Steps follow one another in every file. Between two steps every rank has a
step-boundary ``COMM_COLL_NODE`` (an all-reduce of 0 bytes over all traced
ranks, duration 0) that depends on the rank's last ops of the step; the next
step's first ops depend on it. Every step thus starts on all ranks at once, as
in the model (SPEC §4), and replaying the files by duration gives the
scenario's step time for every step.

Durations are whole microseconds (rounded to nearest). The schema's durations
are unsigned: negative weights and launch delays (clock noise that SPEC §3
keeps down to −0.01 s) are written as 0, and :attr:`ChakraExport.notes` says
how many and what that does to the step time; a duration or time beyond what
an unsigned 64-bit count of µs holds (~1.8e13 s, or not a number) is an error
naming the op.

Message sizes are not in an op table: p2p messages get ``activation_bytes``,
DP collectives ``grad_bytes``, given as arguments or else taken from the
trace's metadata (the sizes an import of profiler traces read from their
``record_param_comms`` ops, :mod:`graphwia.trace.meta`);
:attr:`ChakraExport.message_sizes` says which. Without either, and for the
embedding and clip all-reduces, ``comm_size`` is 0 (noted too). The step
boundary carries no data (0 bytes by design).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from graphwia import optypes as T
from graphwia.analyses.whatif import ChosenScenario, ScenarioSet, choose_scenario
from graphwia.errors import ArgumentError, TraceError
from graphwia.model.dag import Dag
from graphwia.model.schedule import KIND_CODE, StageTemplate
from graphwia.model.weights import TypicalFrom
from graphwia.outputs import chakra_schema as C
from graphwia.trace.steps import Steps, format_ranges
from graphwia.utils.io import atomic_path, output_set, write_json, write_text
from graphwia.utils.names import check_name

if TYPE_CHECKING:  # pragma: no cover
    from graphwia.analyses.standard import Analysis
    from graphwia.trace.optable import Trace

__all__ = [
    "COMM_TYPE",
    "ChakraExport",
    "LAUNCH_DELAY",
    "STEP_BOUNDARY",
    "MAX_MICROS",
    "US",
    "export_chakra",
    "readme_text",
    "template_order",
]

US = 1e6
#: Durations and times are written as unsigned 64-bit counts of µs: at most this many.
MAX_MICROS = 2**64 - 1
#: Collective type of each optype that can be a collective group member.
COMM_TYPE = {
    T.PARAMS_ALL_GATHER: C.COLLECTIVE_TYPES["ALL_GATHER"],
    T.GRADS_REDUCE_SCATTER: C.COLLECTIVE_TYPES["REDUCE_SCATTER"],
    T.SEPARATE_GRADS_ALL_REDUCE: C.COLLECTIVE_TYPES["ALL_REDUCE"],
    T.EMBEDDING: C.COLLECTIVE_TYPES["ALL_REDUCE"],
    T.CLIP: C.COLLECTIVE_TYPES["ALL_REDUCE"],
}
STEP_BOUNDARY = "step-boundary"
LAUNCH_DELAY = "launch-delay"
_SEND_CODES = [T.OPTYPE_CODE[T.FORWARD_SEND], T.OPTYPE_CODE[T.BACKWARD_SEND]]
_COLLECTIVE_KINDS = {KIND_CODE["clip"]: 0, KIND_CODE["dp-collective"]: 1, KIND_CODE["embedding"]: 2}


@dataclass
class ChakraExport:
    """What :func:`export_chakra` wrote.

    ``ranks`` maps each file's rank to its worker ``(global rank, dp_rank,
    stage)``; ``groups`` each communicator group id to its ranks and
    ``group_uses`` to what uses it. ``step_time`` is the scenario's simulated
    step time per step (seconds), ``replay_step_time`` the same with the
    durations as written (whole µs, negatives at 0): what replaying the files
    by duration gives; ``makespan`` is the replayed time of all steps in
    sequence. ``message_sizes`` maps ``activation_bytes`` and ``grad_bytes``
    to the size written (None: unknown, 0 written) and where it came from:
    ``"given"`` (the argument), ``"metadata"`` (the trace's) or ``"unknown"``.
    ``notes`` are the caveats worth a warning.
    """

    out_dir: Path
    name: str
    scenario: str
    steps: list[int]
    files: list[Path]
    comm_groups: Path
    readme: Path
    ranks: dict[int, tuple[int, int, int]]
    groups: dict[int, list[int]]
    group_uses: dict[int, list[str]]
    n_nodes: int
    n_bytes: int
    step_time: np.ndarray = field(repr=False)
    replay_step_time: np.ndarray = field(repr=False)
    makespan: float
    notes: list[str]
    message_sizes: dict[str, tuple[int | None, str]] = field(default_factory=dict)


def export_chakra(
    source: Trace | Analysis,
    out_dir: str | Path,
    *,
    scenario: str = "base",
    scenarios: ScenarioSet | None = None,
    steps: Steps | None = None,
    typical_from: TypicalFrom | None = None,
    activation_bytes: int | None = None,
    grad_bytes: int | None = None,
    name: str | None = None,
    compact_ranks: bool = False,
) -> ChakraExport:
    """Write the Chakra execution traces of one scenario of a trace (or an analysis) to ``out_dir``.

    ``scenario`` and ``scenarios`` choose the weights, ``steps`` and
    ``typical_from`` the steps of a trace and where its typical weights come
    from, as :func:`graphwia.analyses.whatif.choose_scenario` does.
    ``activation_bytes`` is the size of every p2p message, ``grad_bytes`` of
    every DP collective op (None: the trace metadata's, if it has one; else
    unknown, 0). ``name`` prefixes the files (default
    ``<trial_name>-<scenario>``). Files are named by global rank, or with
    ``compact_ranks`` by 0 … n−1 in global-rank order (a simulator wants one
    file per NPU; TP peers are not traced).
    """
    for option, value in (("activation_bytes", activation_bytes), ("grad_bytes", grad_bytes)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < 1 << 63
        ):
            raise ArgumentError(option, repr(value), "must be a whole number of bytes in [0, 2^63)")
    where = f"Chakra traces in {out_dir}"
    if name is not None:
        check_name(name, what="name", source=where)
    chosen = choose_scenario(source, scenario, scenarios=scenarios, steps=steps, typical_from=typical_from)
    if name is None:
        trial = check_name(chosen.dag.meta.trial_name, what="trial name", source=where)
        name = f"{trial}-{check_name(scenario, what='scenario name', source=where)}"
    meta = chosen.dag.meta
    sizes: dict[str, tuple[int | None, str]] = {}
    for option, given, known in (
        ("activation_bytes", activation_bytes, meta.activation_bytes),
        ("grad_bytes", grad_bytes, meta.grad_bytes),
    ):
        sizes[option] = (
            (int(given), "given")
            if given is not None
            else (known, "metadata")
            if known is not None
            else (None, "unknown")
        )
    plan = _Plan(
        chosen,
        activation_bytes=sizes["activation_bytes"][0],
        grad_bytes=sizes["grad_bytes"][0],
        compact_ranks=compact_ranks,
    )
    n_nodes = n_bytes = 0
    with output_set(out_dir, key=f"chakra:{name}") as out_dir:
        files = [out_dir / f"{name}.{rank}.et" for rank in plan.file_ranks]
        groups_path, readme_path = out_dir / f"{name}.comm_groups.json", out_dir / f"{name}.README.md"
        for index, path in enumerate(files):
            payloads = plan.rank_messages(index)
            data = C.encode_delimited(payloads)
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
            n_nodes += len(payloads) - 1
            n_bytes += len(data)
        write_json(groups_path, {str(pg): ranks for pg, ranks in plan.groups.items()}, indent=2)
        export = ChakraExport(
            out_dir=out_dir,
            name=name,
            scenario=scenario,
            steps=[int(s) for s in chosen.dag.steps],
            files=files,
            comm_groups=groups_path,
            readme=readme_path,
            ranks=plan.rank_workers(),
            groups=plan.groups,
            group_uses=plan.group_uses,
            n_nodes=n_nodes,
            n_bytes=n_bytes,
            step_time=plan.step_time,
            replay_step_time=plan.replay_step_time,
            makespan=plan.makespan,
            notes=plan.notes(),
            message_sizes=sizes,
        )
        write_text(readme_path, readme_text(export, plan.dag))
    return export


class _Plan:
    """Everything the files hold, as arrays over the DAG's ops, and the nodes of one rank at a time."""

    def __init__(
        self, chosen: ChosenScenario, *, activation_bytes: int | None, grad_bytes: int | None, compact_ranks: bool
    ):
        self.chosen = chosen
        self.dag = dag = chosen.dag
        self.activation_bytes, self.grad_bytes = activation_bytes, grad_bytes
        table = dag.table
        self.n_steps = len(dag.steps)
        self.step_pos = np.arange(dag.n_ops) // dag.ops_per_step
        self._written_times()
        self._workers(compact_ranks)
        self._node_types()
        self._p2p_pairs()
        self._collective_groups()
        intra = dag.edges.via >= 0
        self.edge_src, self.edge_dst = dag.edges.via[intra], dag.edges.dst[intra]
        self.has_pred = np.zeros(dag.n_ops, dtype=bool)
        self.has_pred[self.edge_dst] = True
        self.has_succ = np.zeros(dag.n_ops, dtype=bool)
        self.has_succ[self.edge_src] = True
        by_worker = np.argsort(self.worker_of[self.edge_dst], kind="stable")
        self.edge_src, self.edge_dst = self.edge_src[by_worker], self.edge_dst[by_worker]
        self.edge_cuts = np.searchsorted(self.worker_of[self.edge_dst], np.arange(self.n_workers + 1))
        self.emission = self._emission_order()
        self.worker_cuts = np.concatenate([[0], np.cumsum(np.bincount(self.worker_of, minlength=self.n_workers))])
        names = table.categories["optype"]
        self.op_names = [
            f"{names[code]}[{seq}] step {step}"
            for code, seq, step in zip(table["optype"].tolist(), table["seq_id"].tolist(), table["step"].tolist())
        ]
        self._attributes: dict[tuple[str, object], object] = {}
        #: Per-op values the node loop reads, as Python lists.
        self.columns = (
            self.node_type.tolist(),
            self.duration_us.tolist(),
            self.delay_us.tolist(),
            self.start_us.tolist(),
        )
        self._comm = (
            self.comm_size.tolist(),
            self.comm_type.tolist(),
            self.pg.tolist(),
            self.peer_rank.tolist(),
            self.tag.tolist(),
        )

    # -- values -------------------------------------------------------------------------------

    def _micros(self, seconds: np.ndarray, what: str, label) -> np.ndarray:
        """``seconds`` as whole µs (negatives: 0) for the unsigned fields; a TraceError names the first
        value (``label(i)`` words its place) beyond them or not a number."""
        micros = np.rint(np.maximum(seconds, 0.0) * US)
        bad = ~(micros < 2.0**64)  # beyond MAX_MICROS (the next float is 2^64), or NaN
        if bad.any():
            i = int(np.argmax(bad))
            raise TraceError(
                f"{self.dag.trace.source}: {label(i)} has a {what} of {float(seconds[i]):.6g} s in scenario "
                f"{self.chosen.name}: beyond what a Chakra trace holds (at most 2^64 - 1 µs, ~1.8e13 s)"
            )
        return micros.astype(np.uint64)

    def _op_label(self, op: int) -> str:
        table = self.dag.table
        names = table.categories["optype"]
        return (
            f"{names[table['optype'][op]]}[{table['seq_id'][op]}] step {table['step'][op]} "
            f"(dp_rank {table['dp_rank'][op]}, stage {table['stage'][op]})"
        )

    def _written_times(self) -> None:
        """Durations and delays in whole µs, and the scenario simulated as computed and as written."""
        weight, delay = self.chosen.weight, self.chosen.delay
        self.duration_us = self._micros(weight, "duration", self._op_label)
        self.delay_us = self._micros(delay, "launch delay", self._op_label)
        self.has_delay = self.delay_us > 0
        self.negative = {"weight": weight[weight < 0], "launch delay": delay[delay < 0]}
        written = (self.duration_us / US, self.delay_us / US)
        sim = self.chosen.compiled.evaluate(np.column_stack([weight, written[0]]), np.column_stack([delay, written[1]]))
        self.step_time = sim.step_time[:, 0].copy()
        self.replay_step_time = sim.step_time[:, 1].copy()
        assert sim.start is not None and sim.end is not None  # evaluate keeps times by default
        # Written timeline: each step starts when the previous one has ended on every rank.
        end = sim.end[:, 1].reshape(self.n_steps, -1)
        step_end = np.maximum(end.max(axis=1), 0.0)
        offsets = np.concatenate([[0.0], np.cumsum(step_end)])
        self.makespan = float(offsets[-1])
        steps = self.dag.steps
        self.boundary_us = self._micros(offsets[1:], "end time", lambda i: f"the boundary after step {steps[i]}")
        start = sim.start[:, 1] + np.repeat(offsets[:-1], self.dag.ops_per_step)
        self.start_us = self._micros(start, "start time", self._op_label)

    def _workers(self, compact_ranks: bool) -> None:
        """One file per worker (dp_rank, stage); its rank, checked to be one per worker."""
        table, meta = self.dag.table, self.dag.meta
        self.worker_of = table["dp_rank"].astype(np.int64) * meta.pp_size + table["stage"]
        self.n_workers = meta.dp_size * meta.pp_size
        source = self.dag.trace.source
        rank = table["rank"].astype(np.int64)
        self.global_rank = np.zeros(self.n_workers, dtype=np.int64)  # by worker; every worker has ops
        self.global_rank[self.worker_of] = rank
        mixed = np.flatnonzero(self.global_rank[self.worker_of] != rank)
        if len(mixed):
            worker = int(self.worker_of[mixed[0]])
            raise TraceError(
                f"{source}: worker (dp_rank {worker // meta.pp_size}, stage {worker % meta.pp_size}) "
                f"has ops under more than one rank"
            )
        ranks, counts = np.unique(self.global_rank, return_counts=True)
        if (counts > 1).any():
            raise TraceError(f"{source}: rank {int(ranks[np.argmax(counts > 1)])} is the rank of several workers")
        if ranks[0] < 0:
            raise TraceError(f"{source}: rank {int(ranks[0])} is negative")
        self.compact = compact_ranks
        self.file_rank = np.searchsorted(ranks, self.global_rank) if compact_ranks else self.global_rank
        self.rank_of_op = self.file_rank[self.worker_of]
        by_rank = np.argsort(self.file_rank)
        self.file_ranks = self.file_rank[by_rank].tolist()
        self.worker_order = by_rank

    def rank_workers(self) -> dict[int, tuple[int, int, int]]:
        pp = self.dag.meta.pp_size
        return {
            int(self.file_rank[w]): (int(self.global_rank[w]), int(w) // pp, int(w) % pp) for w in self.worker_order
        }

    def _node_types(self) -> None:
        table = self.dag.table
        barrier = table["barrier"]
        member = barrier >= 0
        self.kind = np.full(self.dag.n_ops, -1, dtype=np.int64)
        self.kind[member] = self.dag.barrier_table["kind"][barrier[member] - self.dag.n_ops]
        self.node_type = np.full(self.dag.n_ops, C.COMP_NODE, dtype=np.int64)
        p2p = self.kind == KIND_CODE["p2p-pair"]
        sends = np.isin(table["optype"], _SEND_CODES)
        self.node_type[p2p & sends] = C.COMM_SEND_NODE
        self.node_type[p2p & ~sends] = C.COMM_RECV_NODE
        self.node_type[np.isin(self.kind, list(_COLLECTIVE_KINDS))] = C.COMM_COLL_NODE

    def _p2p_pairs(self) -> None:
        """Peer rank and tag of every p2p pair member (tags number the pairs 0, 1, … in DAG order)."""
        barrier = self.dag.table["barrier"]
        members = np.flatnonzero((self.node_type == C.COMM_SEND_NODE) | (self.node_type == C.COMM_RECV_NODE))
        # A pair is one send and one receive (SPEC §2.2): sorted by barrier, the send first.
        pairs = members[np.lexsort((self.node_type[members], barrier[members]))].reshape(-1, 2)
        self.peer_rank = np.full(self.dag.n_ops, -1, dtype=np.int64)
        self.peer_rank[pairs[:, 0]] = self.rank_of_op[pairs[:, 1]]
        self.peer_rank[pairs[:, 1]] = self.rank_of_op[pairs[:, 0]]
        self.tag = np.full(self.dag.n_ops, -1, dtype=np.int64)
        self.tag[pairs] = np.arange(len(pairs))[:, None]

    def _collective_groups(self) -> None:
        """Communicator groups: one per distinct set of ranks a collective spans, ids from 1.

        Every traced rank (the clip barrier, the step boundary) comes first,
        then the DP group of each stage, then the embedding pair of each dp_rank.
        """
        table, dag = self.dag.table, self.dag
        members = np.flatnonzero(self.node_type == C.COMM_COLL_NODE)
        members = members[np.lexsort((self.rank_of_op[members], table["barrier"][members]))]
        barriers, first = np.unique(table["barrier"][members], return_index=True)
        all_ranks = tuple(sorted(self.file_ranks))
        sort_key: dict[tuple[int, ...], tuple[int, int]] = {}  # rank set → (kind order, stage or dp_rank)
        uses: dict[tuple[int, ...], list[str]] = {}
        group_of_barrier = {}

        def use(ranks: tuple[int, ...], key: tuple[int, int], what: str) -> None:
            sort_key[ranks] = min(sort_key.get(ranks, key), key)
            if what not in uses.setdefault(ranks, []):
                uses[ranks].append(what)

        for b, ops in zip(barriers.tolist(), np.split(members, first[1:])):
            ranks = tuple(self.rank_of_op[ops].tolist())
            op = int(ops[0])
            stage, dp_rank = int(table["stage"][op]), int(table["dp_rank"][op])
            order = _COLLECTIVE_KINDS[int(self.kind[op])]
            if order == 0:
                use(ranks, (0, 0), "clip")
            elif order == 1:
                use(ranks, (1, stage), f"DP collectives of stage {stage}")
            else:
                use(ranks, (2, dp_rank), f"embedding all-reduce of dp_rank {dp_rank}")
            group_of_barrier[b] = ranks
        if self.n_steps > 1:
            use(all_ranks, (0, 0), "step boundary")
        ordered = sorted(sort_key, key=lambda ranks: (sort_key[ranks], ranks))
        pg_id = {ranks: i for i, ranks in enumerate(ordered, start=1)}
        self.groups = {pg_id[ranks]: list(ranks) for ranks in ordered}
        self.group_uses = {pg_id[ranks]: uses[ranks] for ranks in ordered}
        self.boundary_pg = pg_id.get(all_ranks, 0)
        self.pg = np.zeros(dag.n_ops, dtype=np.int64)
        self.pg[members] = [pg_id[group_of_barrier[b]] for b in table["barrier"][members].tolist()]
        code = table["optype"]
        self.comm_type = np.zeros(dag.n_ops, dtype=np.int64)
        for optype, comm_type in COMM_TYPE.items():
            self.comm_type[code == T.OPTYPE_CODE[optype]] = comm_type
        size = np.zeros(dag.n_ops, dtype=np.int64)
        p2p = (self.node_type == C.COMM_SEND_NODE) | (self.node_type == C.COMM_RECV_NODE)
        dp = np.isin(code, [T.OPTYPE_CODE[t] for t in T.DP_COLLECTIVES]) & (self.node_type == C.COMM_COLL_NODE)
        size[p2p] = self.activation_bytes or 0
        size[dp] = self.grad_bytes or 0
        self.comm_size = size
        self.unsized = {
            "p2p messages (activation_bytes)": bool(p2p.any()) and self.activation_bytes is None,
            "DP collectives (grad_bytes)": bool(dp.any()) and self.grad_bytes is None,
            "embedding and clip all-reduces": bool((self.node_type[~dp] == C.COMM_COLL_NODE).any()),
        }

    def _emission_order(self) -> np.ndarray:
        """Op ids sorted by worker, step, then a topological order of the stage's template."""
        table = self.dag.table
        templates = self.dag.schedule.stages
        rank_in_order = np.zeros((len(templates), max(t.size for t in templates)), dtype=np.int64)
        for tpl in templates:
            rank_in_order[tpl.stage, template_order(tpl)] = np.arange(tpl.size)
        key = rank_in_order[table["stage"], table["position"]]
        return np.lexsort((key, self.step_pos, self.worker_of))

    def notes(self) -> list[str]:
        """Caveats of this export, one line each."""
        notes = []
        for what, values in self.negative.items():
            if len(values):
                change = (self.replay_step_time - self.step_time).mean() * US
                notes.append(
                    f"{len(values)} negative {what}(s) (clock noise, down to {values.min() * US:.1f} µs) "
                    f"written as 0: Chakra durations are unsigned; the files replay a mean step time "
                    f"{change:+.1f} µs from the scenario's"
                )
        unsized = [what for what, missing in self.unsized.items() if missing]
        if unsized:
            notes.append(
                f"message sizes unknown, comm_size written as 0 for: {', '.join(unsized)}; "
                f"replaying by duration is unaffected"
            )
        meta = self.dag.meta
        if not self.compact and self.file_ranks != list(range(len(self.file_ranks))):
            notes.append(
                f"files are named by global rank ({len(self.file_ranks)} of {meta.world_size} ranks "
                f"traced): a simulator wants one file per NPU 0…n−1; compact ranks number them "
                f"0…{len(self.file_ranks) - 1}"
            )
        return notes

    # -- nodes of one rank ------------------------------------------------------------------------

    def rank_messages(self, index: int) -> list[bytes]:
        """Serialised GlobalMetadata and nodes of the ``index``-th file (files in rank order)."""
        worker = int(self.worker_order[index])
        node_op, is_delay, boundary, deps, starts = self._rank_graph(worker)
        rank = int(self.file_rank[worker])
        payloads = [self._metadata(worker).SerializeToString()]
        dep_list, starts = deps.tolist(), starts.tolist()
        names, node_type, duration, delay, start = self.op_names, *self.columns
        boundary_step = {node: i for i, node in enumerate(boundary.tolist())}
        steps, boundary_us = self.dag.steps.tolist(), self.boundary_us.tolist()
        for node, (op, delayed) in enumerate(zip(node_op.tolist(), is_delay.tolist())):
            data_deps = dep_list[starts[node] : starts[node + 1]]
            if op < 0:
                step = boundary_step[node]
                message = C.Node(
                    id=node,
                    name=f"{STEP_BOUNDARY} after step {steps[step]}",
                    type=C.COMM_COLL_NODE,
                    data_deps=data_deps,
                    start_time_micros=boundary_us[step],
                    attr=self._boundary_attributes(),
                )
            elif delayed:
                message = C.Node(
                    id=node,
                    name=f"{LAUNCH_DELAY} {names[op]}",
                    type=C.COMP_NODE,
                    data_deps=data_deps,
                    duration_micros=delay[op],
                    start_time_micros=max(start[op] - delay[op], 0),
                )
            else:
                message = C.Node(
                    id=node,
                    name=names[op],
                    type=node_type[op],
                    data_deps=data_deps,
                    duration_micros=duration[op],
                    start_time_micros=start[op],
                    attr=self._op_attributes(op, rank),
                )
            payloads.append(message.SerializeToString())
        return payloads

    def _rank_graph(self, worker: int):
        """Node layout and dependencies of one worker's file.

        Returns per node its op (−1: a step boundary) and whether it is the
        op's launch delay, the boundary node ids, and the data deps as a CSR
        (deps, starts: the deps of node k are deps[starts[k]:starts[k + 1]]).
        """
        ops = self.emission[self.worker_cuts[worker] : self.worker_cuts[worker + 1]]
        delayed = self.has_delay[ops]
        step = self.step_pos[ops]
        node_id = np.cumsum(1 + delayed.astype(np.int64)) - 1 + step  # one boundary before each later step
        last_of_step = np.searchsorted(step, np.arange(self.n_steps), side="right") - 1
        boundary = node_id[last_of_step[:-1]] + 1
        n_nodes = int(node_id[-1]) + 1
        node_op = np.full(n_nodes, -1, dtype=np.int64)
        node_op[node_id] = ops
        node_op[node_id[delayed] - 1] = ops[delayed]
        is_delay = np.zeros(n_nodes, dtype=bool)
        is_delay[node_id[delayed] - 1] = True

        local = np.full(self.dag.n_ops, -1, dtype=np.int64)  # op id → its node id in this file
        local[ops] = node_id
        entry = local - self.has_delay  # the node that waits for an op's dependencies
        lo, hi = self.edge_cuts[worker], self.edge_cuts[worker + 1]
        src, dst = self.edge_src[lo:hi], self.edge_dst[lo:hi]
        sinks = ops[~self.has_succ[ops] & (step < self.n_steps - 1)]
        sources = ops[~self.has_pred[ops] & (step > 0)]
        node = np.concatenate([entry[dst], local[ops[delayed]], boundary[self.step_pos[sinks]], entry[sources]])
        dep = np.concatenate([local[src], local[ops[delayed]] - 1, local[sinks], boundary[self.step_pos[sources] - 1]])
        order = np.lexsort((dep, node))
        node, dep = node[order], dep[order]
        starts = np.searchsorted(node, np.arange(n_nodes + 1))
        return node_op, is_delay, boundary, dep, starts

    def _metadata(self, worker: int):
        meta = self.dag.meta
        values = (
            ("trial_name", meta.trial_name),
            ("scenario", self.chosen.name),
            ("steps", format_ranges(self.dag.steps)),
            ("rank", int(self.file_rank[worker])),
            ("global_rank", int(self.global_rank[worker])),
            ("dp_rank", int(worker) // meta.pp_size),
            ("stage", int(worker) % meta.pp_size),
        )
        return C.GlobalMetadata(
            version=C.SCHEMA_VERSION,
            attr=[
                C.AttributeProto(name=key, string_val=value)
                if isinstance(value, str)
                else C.AttributeProto(name=key, int64_val=value)
                for key, value in values
            ],
        )

    def _attribute(self, name: str, kind: str, value):
        """An attribute message, made once per distinct (name, value)."""
        key = (name, value)
        attribute = self._attributes.get(key)
        if attribute is None:
            attribute = self._attributes[key] = C.AttributeProto(name=name, **{kind: value})
        return attribute

    def _op_attributes(self, op: int, rank: int) -> list:
        kind = self.columns[0][op]
        if kind == C.COMP_NODE:
            return []
        comm_size, comm_type, pg, peer_rank, tag = self._comm
        size = self._attribute("comm_size", "int64_val", comm_size[op])
        if kind == C.COMM_COLL_NODE:
            return [
                self._attribute("comm_type", "int64_val", comm_type[op]),
                size,
                self._attribute("pg_name", "string_val", str(pg[op])),
            ]
        peer = peer_rank[op]
        src, dst = (rank, peer) if kind == C.COMM_SEND_NODE else (peer, rank)
        return [
            self._attribute("comm_src", "int32_val", src),
            self._attribute("comm_dst", "int32_val", dst),
            C.AttributeProto(name="comm_tag", int32_val=tag[op]),
            size,
        ]

    def _boundary_attributes(self) -> list:
        return [
            self._attribute("comm_type", "int64_val", C.COLLECTIVE_TYPES["ALL_REDUCE"]),
            self._attribute("comm_size", "int64_val", 0),
            self._attribute("pg_name", "string_val", str(self.boundary_pg)),
        ]


def template_order(template: StageTemplate) -> np.ndarray:
    """Positions of a stage template in a topological order of its edges, sample order where free."""
    n = template.size
    successors: list[list[int]] = [[] for _ in range(n)]
    indegree = [0] * n
    for src, dst in template.edges[:, :2].tolist():
        successors[src].append(dst)
        indegree[dst] += 1
    ready = [p for p in range(n) if indegree[p] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        position = heapq.heappop(ready)
        order.append(position)
        for nxt in successors[position]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                heapq.heappush(ready, nxt)
    return np.array(order, dtype=np.int64)


#: The message sizes of an export and what they size.
_SIZED = (("activation_bytes", "p2p messages"), ("grad_bytes", "DP collective ops"))


def _size_text(what: str, size: int | None, source: str) -> str:
    origin = {"given": " (given)", "metadata": " (from the trace's metadata)"}.get(source, "")
    return f"{what} {'unknown, 0' if size is None else size}{origin}"


def readme_text(export: ChakraExport, dag: Dag) -> str:
    """The README written beside the files: what they hold and how to replay them."""
    meta = dag.meta
    n = len(export.files)
    rank_rows = "\n".join(f"| {rank} | {g} | {d} | {s} |" for rank, (g, d, s) in export.ranks.items())
    group_rows = "\n".join(
        f"| {pg} | {', '.join(map(str, ranks))} | {'; '.join(export.group_uses[pg])} |"
        for pg, ranks in export.groups.items()
    )
    notes = "\n".join(f"- {note}" for note in export.notes) or "- none"
    sizes = "; ".join(_size_text(what, *export.message_sizes.get(key, (None, "unknown"))) for key, what in _SIZED)
    return f"""# Chakra execution traces of {meta.trial_name}, scenario `{export.scenario}`

Written by graphwia: one Chakra execution trace per traced rank, `{export.name}.<rank>.et`
({n} files, {export.n_nodes} nodes), and the communicator groups `{export.name}.comm_groups.json`.

- Job: dp {meta.dp_size} × pp {meta.pp_size} × tp {meta.tp_size} (world size {meta.world_size}). TP peers
  are not traced: there is one file per (dp_rank, stage).
- Steps, in sequence: {format_ranges(export.steps)}. Between two steps every rank has a
  `step-boundary` all-reduce of 0 bytes over all ranks, so every step starts on all ranks at once.
- Replayed by duration (a node starts when its `data_deps` have ended; a send/receive pair or a
  collective ends on each member at the latest start among its members plus that member's
  duration), the files give a mean step time of {export.replay_step_time.mean():.6f} s (the scenario's
  simulated mean: {export.step_time.mean():.6f} s) and {export.makespan:.6f} s for all steps.

## Nodes
- Compute, gc, optimizer, layernorm-grads-all-reduce and p2p no-ops (recorded but never launched,
  without a peer): `COMP_NODE` with the scenario's duration.
- Pipeline sends and receives: `COMM_SEND_NODE` / `COMM_RECV_NODE` (`comm_src`, `comm_dst`, `comm_tag`
  equal on both ends, `comm_size`), duration = transfer time in the scenario.
- DP collectives, the embedding all-reduce and the clip all-reduce: `COMM_COLL_NODE` (`comm_type`,
  `comm_size`, `pg_name` = a group id below).
- A launch delay is a `COMP_NODE` named `launch-delay <op>` in front of its op.
- Names are `<optype>[<seq_id>] step <step>`; `data_deps` are the dependencies inside a worker.
- Durations are whole microseconds.
- `comm_size` in bytes: {sizes}.

## Ranks
| file rank | global rank | dp_rank | stage |
| --- | --- | --- | --- |
{rank_rows}

## Communicator groups
| pg_name | ranks | used by |
| --- | --- | --- |
{group_rows}

## Caveats
{notes}

## Replaying with ASTRA-sim
The simulator wants one file per NPU, numbered 0 … n−1: run it with {n} NPUs
(export with compact ranks when the global ranks are not 0 … {n - 1}), e.g. with the analytical backend:

    AstraSim_Analytical_Congestion_Unaware \\
        --workload-configuration={export.name} \\
        --comm-group-configuration={export.name}.comm_groups.json \\
        --system-configuration=SYSTEM.json \\
        --network-configuration=NETWORK.yml \\
        --remote-memory-configuration=MEMORY.json

from this folder. Compute nodes take their recorded durations (stragglers included) and
communication is simulated on the configured network with the given `comm_size` (0 where the size
was unknown: pass `--activation-bytes` / `--grad-bytes` to `graphwia export-chakra`), so the
job's step time can be asked of another network. The step boundary costs one small all-reduce per
step there. (With `"replay-only": 1` in the system configuration every node, communication
included, just takes its duration, without waiting for its peers.)
"""
