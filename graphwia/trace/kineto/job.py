"""A job from its ranks' Kineto traces: :func:`import_kineto` and its :class:`ImportReport`.

The files are read in parallel (:func:`~graphwia.trace.kineto.ranks.read_rank` per file, on
local processes or a dask cluster), then assembled here:

1. topology: each file's rank → worker (dp_rank, stage) and the job's sizes
   (:mod:`~graphwia.trace.kineto.topology`, which also refuses files of several jobs by their
   ``distributedInfo``);
2. one run: on each host, the ranks' ``ProfilerStep#N`` ranges of a number they share lie within
   one step's length of each other (a rank may run a step ahead, not more), and every two ranks
   share a step number; otherwise the files look like different jobs or runs (an error);
3. steps: those every rank recorded (``ProfilerStep#N``, numbered as the profiler numbered
   them); a step recorded by only some ranks, or in which some worker's op counts differ from its
   stage's, is dropped and reported with the reason;
4. the ops a job needs: forward and backward computes on every worker and, with pp > 1, the p2p
   ops that link its stages;
5. clocks: offsets between hosts from p2p causality (:mod:`~graphwia.trace.kineto.clocks`); a recv
   ending before its send started on the same host (beyond the clocks' tolerance) is an error:
   such files look like different jobs or runs;
6. the SPEC §1 op table: ``seq_id`` = order of an optype's ops on a worker in a step by start;
   ``mc`` = chunk (0 when absent for compute, params-all-gather and grads-reduce-scatter), ``gmc``
   = stage + mc·pp, ``mb_id`` = the ``mb`` field (compute ops without one: their order),
   ``vpp_size`` = highest chunk + 1; times in seconds from the job's earliest op; the metadata's
   ``activation_bytes`` and ``grad_bytes`` = the most common size of the ``record_param_comms``
   messages inside p2p and DP collective ops, where the traces have them;
7. validation by :meth:`~graphwia.trace.optable.Trace.from_columns`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import current_process, get_context
from pathlib import Path

import numpy as np

from graphwia import optypes as T
from graphwia.errors import ArgumentError, TraceError, UsageError
from graphwia.trace.inputs import RANK_SUFFIXES
from graphwia.trace.kineto.classify import MB_OPTYPES, OpMapping
from graphwia.trace.kineto.clocks import CAUSALITY_TOLERANCE_NS, ClockReport, estimate_offsets
from graphwia.trace.kineto.ranks import MESSAGE_KINDS, RankOps, read_rank
from graphwia.trace.kineto.spans import SOURCES
from graphwia.trace.kineto.topology import Layout, Topology, resolve
from graphwia.trace.optable import Trace
from graphwia.trace.steps import format_ranges
from graphwia.utils.system import usable_cpus
from graphwia.utils.table import Table

__all__ = ["ImportReport", "PARALLEL_MIN_BYTES", "find_rank_files", "import_kineto"]

#: Below this many bytes in all, files are read in this process (starting workers costs more).
PARALLEL_MIN_BYTES = 64 << 20
_CHUNKED = {T.OPTYPE_CODE[t] for t in T.COMPUTE_STREAM + (T.PARAMS_ALL_GATHER, T.GRADS_REDUCE_SCATTER)}
_COMPUTE = {T.OPTYPE_CODE[t] for t in T.COMPUTE_STREAM}
_WITH_MB = {T.OPTYPE_CODE[t] for t in MB_OPTYPES}
#: With pp > 1 and no virtual stages: whether the first and the last stage need each p2p optype
#: (the others all do), the optype it pairs with and the stage of that one (+1: the next).
_P2P_NEEDS = {
    T.FORWARD_SEND: ((True, False), T.FORWARD_RECV, +1),
    T.FORWARD_RECV: ((False, True), T.FORWARD_SEND, -1),
    T.BACKWARD_SEND: ((False, True), T.BACKWARD_RECV, -1),
    T.BACKWARD_RECV: ((True, False), T.BACKWARD_SEND, +1),
}
#: What the message sizes of each kind are called in the report.
_MESSAGE_WORDS = {"activation_bytes": "p2p messages", "grad_bytes": "DP collective ops"}


@dataclass
class ImportReport:
    """What an import read, inferred and applied; :meth:`lines` words it for people."""

    source: str
    files: int
    bytes: int
    events: int
    method: dict[str, int]  # how ops were found → number of ranks
    topology: Topology
    steps: list[int]
    dropped_steps: dict[int, str]
    ops: dict[str, int]
    sources: dict[str, int]
    outside_steps: int
    nccl_kernels: dict[str, int]
    record_param_comms: int
    groups: dict[str, list[str]]
    clocks: ClockReport
    origin_ns: int
    seconds: dict[str, float] = field(default_factory=dict)
    message_bytes: dict[str, dict[int, int]] = field(default_factory=dict)  # kind → {bytes: count}

    def lines(self) -> list[str]:
        """A short human-readable account of the import."""
        t = self.topology
        out = [
            f"read {self.files} rank trace(s) from {self.source}: {self.bytes / 1e6:.1f} MB, "
            f"{self.events} events in {self.seconds.get('read', 0):.2f} s",
            f"ops found by: {', '.join(f'{k} ({v} rank(s))' for k, v in self.method.items())}",
            f"layout from {t.source}: dp {t.dp} x pp {t.pp} x tp {t.tp}"
            + (f" x cp {t.cp}" if t.cp > 1 else "")
            + f" = {t.world} ranks; "
            f"{len(t.workers)} traced worker(s)"
            + (f", ignored TP/CP peer rank(s) {format_ranges(t.ignored)}" if t.ignored else ""),
            f"steps {format_ranges(self.steps)}"
            + (
                f"; dropped {len(self.dropped_steps)}: "
                + "; ".join(f"{s} ({why})" for s, why in self.dropped_steps.items())
                if self.dropped_steps
                else ""
            ),
            f"{sum(self.ops.values())} op instances: " + ", ".join(f"{name} {n}" for name, n in self.ops.items()),
            "op spans from "
            + ", ".join(f"{k} {v}" for k, v in self.sources.items())
            + (f"; {self.outside_steps} op range(s) outside every ProfilerStep left out" if self.outside_steps else ""),
        ]
        if self.nccl_kernels:
            out.append("NCCL kernels: " + ", ".join(f"{k} {v}" for k, v in sorted(self.nccl_kernels.items())))
        if self.groups:
            out.append(
                "collectives (record_param_comms): " + "; ".join(f"{k}: {', '.join(v)}" for k, v in self.groups.items())
            )
        if self.message_bytes:
            out.append("message sizes (record_param_comms): " + "; ".join(_sizes_text(self.message_bytes)))
        c = self.clocks
        if len(c.offsets) > 1:
            shifts = ", ".join(f"{h or '?'} {v / 1e6:+.3f} ms" for h, v in c.offsets.items())
            out.append(
                f"clocks of {len(c.offsets)} hosts: {c.pairs} p2p pairs, {c.violations_before} with the recv "
                f"ending before its send started (worst {c.worst_before_ns / 1e6:.3f} ms); offsets applied: "
                f"{shifts}; {c.violations_after} violation(s) left"
            )
        else:
            out.append(
                f"one host: no clock offset applied ({c.pairs} p2p pairs, {c.violations_before} with the "
                f"recv ending before its send started)"
            )
        return out


def find_rank_files(inputs: str | Path | Iterable[str | Path]) -> list[Path]:
    """The rank trace files of ``inputs``: directories (their ``*.json``/``*.json.gz`` files,
    not recursively) and files, sorted by name; a UsageError when there are none."""
    paths = [Path(inputs)] if isinstance(inputs, (str, Path)) else [Path(p) for p in inputs]
    files: list[Path] = []
    for item in paths:
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and p.name.endswith(RANK_SUFFIXES))
            if not found:
                raise UsageError(f"{item}: no .json or .json.gz trace files in this directory")
            files.extend(found)
        elif item.is_file():
            files.append(item)
        else:
            raise UsageError(f"{item}: no such file or directory")
    return sorted(dict.fromkeys(files))


def import_kineto(
    inputs: str | Path | Sequence[str | Path],
    *,
    name: str | None = None,
    mapping: OpMapping | None = None,
    layout: Layout | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[Trace, ImportReport]:
    """Import a job from its ranks' PyTorch profiler traces: the validated trace and the report.

    Parameters
    ----------
    inputs:
        A directory of per-rank traces (``.json`` / ``.json.gz``), or files.
    name:
        ``trial_name`` of the metadata (default: the directory's or first file's name).
    mapping:
        Rules naming the ops of a trace not annotated by graphwia's convention
        (:func:`~graphwia.trace.kineto.classify.read_mapping`).
    layout:
        Sizes and rank order, when ``distributedInfo`` does not name the DP and PP groups.
    workers, scheduler:
        Local processes reading files (default: one per CPU, but none for less than 64 MB in all or
        inside a daemonic worker process), or the address of a dask scheduler whose workers read them.
    progress:
        Called with a short label as the import advances.

    One-line errors name the files at fault: among others (see the module docstring) files that
    look like several jobs or runs mixed (TraceError), and a mapping rule that does not fit an
    event (UsageError).
    """
    say = progress or (lambda label: None)
    files = find_rank_files(inputs)
    where = str(
        inputs if isinstance(inputs, (str, Path)) else (inputs[0] if len(inputs) == 1 else Path(files[0]).parent)
    )
    name = name or _default_name(inputs, files)
    clock = time.perf_counter()
    ranks = list(_read_all(files, mapping, workers, scheduler, say))
    read_s = time.perf_counter() - clock
    say("assembling the job")
    topology = resolve([r.info for r in ranks], layout, where)
    _check_one_run(ranks, where)
    trace, report = _assemble(ranks, topology, name, where)
    report.seconds = {"read": read_s, "assemble": time.perf_counter() - clock - read_s}
    return trace, report


def _default_name(inputs, files: list[Path]) -> str:
    single = Path(inputs) if isinstance(inputs, (str, Path)) else Path(inputs[0]) if len(inputs) == 1 else None
    if single is not None and single.is_dir():
        return single.resolve().name
    return files[0].resolve().parent.name


def _read_all(files: list[Path], mapping, workers: int | None, scheduler: str | None, say) -> Iterable[RankOps]:
    """read_rank of every file, in file order: here, on local processes, or on a dask cluster."""
    if scheduler:
        from graphwia.utils.cluster import connect

        with connect(scheduler) as client:
            say(f"reading {len(files)} rank trace(s) on {scheduler}")
            submitted = [client.submit(read_rank, str(path), mapping=mapping, pure=False) for path in files]
            return client.gather(submitted)
    if workers is None:  # a daemonic process (a dask or pool worker running a fleet job) may not start any
        total = sum(path.stat().st_size for path in files)
        workers = 1 if total < PARALLEL_MIN_BYTES or current_process().daemon else usable_cpus()
    if workers < 1:
        raise ArgumentError("workers", workers, "must be at least 1")
    if workers == 1 or len(files) == 1:
        out = []
        for i, path in enumerate(files):
            say(f"reading rank traces ({i}/{len(files)})")
            out.append(read_rank(path, mapping=mapping))
        return out
    results: dict[int, RankOps] = {}
    with ProcessPoolExecutor(max_workers=min(workers, len(files)), mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(read_rank, path, mapping=mapping): i for i, path in enumerate(files)}
        try:
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                say(f"reading rank traces ({len(results)}/{len(files)})")
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return [results[i] for i in range(len(files))]


def _check_one_run(ranks: list[RankOps], where: str) -> None:
    """On each host, every rank shares a ProfilerStep number with the host's lowest rank, and the
    ranges of each number they share lie within the longer of the two of each other; else an error
    names the two files: they look like different jobs or runs."""
    hosts: dict[str, list[RankOps]] = {}
    for r in ranks:
        hosts.setdefault(r.info.host, []).append(r)
    for members in hosts.values():
        first = min(members, key=lambda r: r.info.rank)
        for other in members:
            if other is first:
                continue
            names = (
                f"{first.info.path.name} (rank {first.info.rank}) and {other.info.path.name} (rank {other.info.rank})"
            )
            common, a, b = np.intersect1d(first.steps, other.steps, return_indices=True)
            if not len(common):
                raise TraceError(
                    f"{where}: {names} share no ProfilerStep number (steps {format_ranges(first.steps)} and "
                    f"{format_ranges(other.steps)}): they look like different jobs or runs"
                )
            gap = np.maximum(first.step_start[a], other.step_start[b]) - np.minimum(
                first.step_end[a], other.step_end[b]
            )
            length = np.maximum(first.step_end[a] - first.step_start[a], other.step_end[b] - other.step_start[b])
            if (gap > length).any():
                i = int(np.argmax(gap - length))
                raise TraceError(
                    f"{where}: {names} on one host record ProfilerStep#{int(common[i])} {gap[i] / 1e9:.3f} s apart "
                    f"(the step lasts {length[i] / 1e9:.3f} s): they look like different jobs or runs"
                )


def _assemble(ranks: list[RankOps], topology: Topology, name: str, where: str) -> tuple[Trace, ImportReport]:
    kept = [r for r in ranks if r.info.rank in topology.workers]
    ops = _concatenate(kept, topology)
    common, partial = _common_steps(kept)
    ops = {k: v[np.isin(ops["step"], common)] for k, v in ops.items()}
    if not len(ops["step"]):
        steps = ", ".join(f"rank {r.info.rank}: {format_ranges(r.steps)}" for r in kept[:4])
        raise TraceError(f"{where}: no op falls in a step that every rank recorded (steps per rank differ: {steps})")
    ops, incomplete = _complete_steps(ops, topology, where)
    dropped = dict(sorted({**partial, **incomplete}.items()))
    _check_required(ops, topology, where)
    vpp = _check_chunks(ops, where)
    _check_p2p(ops, topology, vpp, where)
    hosts = sorted({r.info.host for r in kept})
    host_of = {r.info.rank: hosts.index(r.info.host) for r in kept}
    ops["host"] = (
        np.array([host_of[int(r)] for r in ops["rank"]], dtype=np.int64)
        if len(hosts) > 1
        else np.zeros(len(ops["rank"]), dtype=np.int64)
    )
    reference = host_of[min(host_of)]
    clocks = estimate_offsets(ops, hosts, reference, topology.pp, vpp)
    # Only ranks known to share a host share a clock: files without host_name ("") may come from
    # several machines, whose offsets the report's violations show instead.
    if clocks.same_host_violation is not None and all(hosts):
        raise TraceError(_causality_message(ops, clocks, {r.info.rank: r.info.path.name for r in kept}, where))
    if topology.pp > 1 and not clocks.pairs:
        raise TraceError(
            f"{where}: no p2p send pairs with a recv of the neighbouring stage (same dp_rank, step and "
            f"microbatch, or the same count in the step): check the mb= of the p2p ops"
        )
    shift = np.array([clocks.offsets[h] for h in hosts], dtype=np.int64)[ops["host"]]
    ops["start"], ops["end"] = ops["start"] + shift, ops["end"] + shift
    columns, origin = _op_table(ops, topology, vpp)
    message_bytes = _merge_sizes(r.counts.get("message_bytes", {}) for r in kept)
    meta = {
        "trial_name": name,
        "run_id": 0,
        "dp_size": topology.dp,
        "pp_size": topology.pp,
        "tp_size": topology.tp,
        "dsp_size": topology.cp,
        "vpp_size": vpp,
        "world_size": topology.world,
        **{kind: _most_common(sizes) for kind, sizes in message_bytes.items()},
    }
    trace = Trace.from_columns(Table(columns, {"optype": T.ALL_OPTYPES}), meta, source=where)
    codes, counts = np.unique(ops["optype"], return_counts=True)
    sources, source_counts = np.unique(ops["source"], return_counts=True)
    report = ImportReport(
        source=where,
        files=len(ranks),
        bytes=sum(r.counts["bytes"] for r in ranks),
        events=sum(r.counts["events"] for r in ranks),
        method=_count(r.method for r in ranks),
        topology=topology,
        steps=[int(s) for s in np.unique(ops["step"])],
        dropped_steps=dropped,
        ops={T.ALL_OPTYPES[c]: int(n) for c, n in zip(codes, counts)},
        sources={SOURCES[c]: int(n) for c, n in zip(sources, source_counts)},
        outside_steps=sum(r.counts["outside_steps"] for r in kept),
        nccl_kernels=_sum_dicts(r.counts["nccl_kernels"] for r in kept),
        record_param_comms=sum(r.counts["record_param_comms"] for r in kept),
        groups=_merge_groups(r.counts.get("groups", {}) for r in kept),
        clocks=clocks,
        origin_ns=origin,
        message_bytes=message_bytes,
    )
    return trace, report


def _concatenate(ranks: list[RankOps], topology: Topology) -> dict[str, np.ndarray]:
    def column(attr: str) -> np.ndarray:
        return np.concatenate([getattr(r, attr) for r in ranks])

    n = [len(r.optype) for r in ranks]
    rank = np.repeat([r.info.rank for r in ranks], n).astype(np.int64)
    worker = np.array([topology.workers[r.info.rank] for r in ranks], dtype=np.int64).reshape(-1, 2)
    return {
        "rank": rank,
        "dp_rank": np.repeat(worker[:, 0], n),
        "stage": np.repeat(worker[:, 1], n),
        **{attr: column(attr) for attr in ("optype", "mb", "chunk", "step", "start", "end", "source")},
    }


def _common_steps(ranks: list[RankOps]) -> tuple[np.ndarray, dict[int, str]]:
    """The steps every rank recorded, and why each other step is left out (the ranks lacking it)."""
    common = ranks[0].steps
    for r in ranks[1:]:
        common = np.intersect1d(common, r.steps)
    every = np.unique(np.concatenate([r.steps for r in ranks]))
    partial = {}
    for step in np.setdiff1d(every, common).tolist():
        lacking = sorted(r.info.rank for r in ranks if step not in r.steps)
        partial[int(step)] = (
            f"recorded by {len(ranks) - len(lacking)} of {len(ranks)} ranks, not by rank(s) {format_ranges(lacking)}"
        )
    return common, partial


def _complete_steps(ops: dict, topology: Topology, where: str) -> tuple[dict, dict[int, str]]:
    """Drop the steps in which a worker's op counts differ from the usual counts of its stage."""
    steps, step_index = np.unique(ops["step"], return_inverse=True)
    n_workers = topology.dp * topology.pp
    worker = ops["stage"] * topology.dp + ops["dp_rank"]
    counts = np.zeros((n_workers, len(steps), len(T.ALL_OPTYPES)), dtype=np.int64)
    np.add.at(counts, (worker, step_index, ops["optype"].astype(np.int64)), 1)
    bad = np.zeros(len(steps), dtype=bool)
    why: dict[int, str] = {}
    for stage in range(topology.pp):
        block = counts[stage * topology.dp : (stage + 1) * topology.dp]  # (dp, steps, optypes)
        rows = block.reshape(-1, block.shape[-1])
        vectors, inverse, n = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
        usual = vectors[np.argmax(n)]
        off = (block != usual).any(axis=2)  # (dp, steps)
        for s in np.flatnonzero(off.any(axis=0) & ~bad):
            d = int(np.argmax(off[:, s]))
            code = int(np.argmax(block[d, s] != usual))
            rank = _rank_of(ops, d, stage)
            why[int(steps[s])] = (
                f"rank {rank} (dp_rank {d}, stage {stage}) has {block[d, s, code]} "
                f"{T.ALL_OPTYPES[code]} op(s), its stage usually {usual[code]}"
            )
        bad |= off.any(axis=0)
    if bad.all():
        first = next(iter(why.items()))
        raise TraceError(
            f"{where}: no step in which every worker ran the same ops as its stage's others; "
            f"step {first[0]}: {first[1]}"
        )
    keep = ~bad[step_index]
    return {k: v[keep] for k, v in ops.items()}, why


def _check_required(ops: dict, topology: Topology, where: str) -> None:
    """Every worker runs forward and backward computes: the model's compute stream needs them."""
    for optype in T.COMPUTE_STREAM:
        have = np.zeros((topology.pp, topology.dp), dtype=bool)
        mine = ops["optype"] == T.OPTYPE_CODE[optype]
        have[ops["stage"][mine], ops["dp_rank"][mine]] = True
        if not have.all():
            stage, dp_rank = (int(v[0]) for v in np.nonzero(~have))
            raise TraceError(
                f"{where}: no {optype} op on rank {_rank_of(ops, dp_rank, stage)} (dp_rank {dp_rank}, "
                f"stage {stage}): every worker needs forward-compute and backward-compute ops "
                f"(annotate them, or name them in a mapping file)"
            )


def _check_p2p(ops: dict, topology: Topology, vpp: int, where: str) -> None:
    """With pp > 1 the stages are linked by p2p ops: every worker has those of its place in the
    pipeline (forward-send but on the last stage, forward-recv but on the first, ...; every one
    with virtual stages)."""
    pp = topology.pp
    if pp == 1:
        return
    present = [t for t in T.P2P_OPTYPES if (ops["optype"] == T.OPTYPE_CODE[t]).any()]
    if not present:
        raise TraceError(
            f"{where}: a job of {pp} pipeline stages without p2p ops ({', '.join(T.P2P_OPTYPES)}): they link "
            f"the stages (annotate them, or name them in a mapping file)"
        )
    for optype, ((first, last), peer, delta) in _P2P_NEEDS.items():
        have = np.zeros((pp, topology.dp), dtype=bool)
        mine = ops["optype"] == T.OPTYPE_CODE[optype]
        have[ops["stage"][mine], ops["dp_rank"][mine]] = True
        need = np.ones(pp, dtype=bool)
        if vpp == 1:
            need[0], need[-1] = first, last
        lacking = np.argwhere(~have & need[:, None])
        if len(lacking):
            stage, dp_rank = (int(v) for v in lacking[0])
            neighbour = (stage + delta) % pp
            found = f"; found only {', '.join(present)}" if len(present) < len(T.P2P_OPTYPES) else ""
            raise TraceError(
                f"{where}: no {optype} op on rank {_rank_of(ops, dp_rank, stage)} (dp_rank {dp_rank}, stage "
                f"{stage}) to pair with the {peer} ops of stage {neighbour}: a job of {pp} pipeline stages needs "
                f"them in the steps kept (annotate them, or name them in a mapping file{found})"
            )


def _causality_message(ops: dict, clocks: ClockReport, files: dict[int, str], where: str) -> str:
    """The error for a recv that ends before its send started on the same host."""
    assert clocks.same_host_violation is not None
    send, recv, ns, count = clocks.same_host_violation

    def op(row: int) -> str:
        rank = int(ops["rank"][row])
        mb = f" mb={int(ops['mb'][row])}" if ops["mb"][row] >= 0 else ""
        return f"{T.ALL_OPTYPES[ops['optype'][row]]}{mb} of rank {rank} ({files.get(rank, '?')})"

    return (
        f"{where}: in step {int(ops['step'][recv])}, the {op(recv)} ends {ns / 1e6:.3f} ms before the {op(send)} "
        f"started, on one host ({count} p2p pair(s) so, beyond the {CAUSALITY_TOLERANCE_NS / 1e6:g} ms allowed "
        f"for timer granularity): the files look like different jobs or runs"
    )


def _rank_of(ops: dict, dp_rank: int, stage: int) -> int | str:
    hit = np.flatnonzero((ops["dp_rank"] == dp_rank) & (ops["stage"] == stage))
    return int(ops["rank"][hit[0]]) if len(hit) else "?"


def _check_chunks(ops: dict, where: str) -> int:
    """vpp = highest chunk + 1; with chunks, every compute op must name its chunk."""
    chunk = ops["chunk"]
    vpp = int(chunk.max()) + 1 if len(chunk) and chunk.max() >= 0 else 1
    if vpp > 1:
        lacking = np.isin(ops["optype"], list(_COMPUTE)) & (chunk < 0)
        if lacking.any():
            i = int(np.argmax(lacking))
            raise TraceError(
                f"{where}: rank {ops['rank'][i]} step {ops['step'][i]}: a "
                f"{T.ALL_OPTYPES[ops['optype'][i]]} names no chunk= while other ops name chunks up to "
                f"{vpp - 1}; with virtual pipeline stages every compute op needs its chunk"
            )
    return vpp


def _op_table(ops: dict, topology: Topology, vpp: int) -> tuple[dict[str, np.ndarray], int]:
    """The SPEC §1 columns (seq_id, mc, gmc, mb_id derived) and the time origin (ns)."""
    order = np.lexsort((ops["mb"], ops["end"], ops["start"], ops["optype"], ops["step"], ops["rank"]))
    ops = {k: v[order] for k, v in ops.items()}
    group = np.stack([ops["rank"], ops["step"], ops["optype"].astype(np.int64)], axis=1)
    first = np.concatenate([[True], (group[1:] != group[:-1]).any(axis=1)]) if len(group) else np.zeros(0, bool)
    starts = np.flatnonzero(first)
    seq = np.arange(len(first)) - np.repeat(starts, np.diff(np.append(starts, len(first))))
    optype = ops["optype"].astype(np.int64)
    chunked = np.isin(optype, list(_CHUNKED))
    mc = np.where(ops["chunk"] >= 0, ops["chunk"], np.where(chunked, 0, -1))
    gmc = np.where(mc >= 0, ops["stage"] + mc * topology.pp, -1)
    compute = np.isin(optype, list(_COMPUTE))
    mb = np.where(np.isin(optype, list(_WITH_MB)), ops["mb"], -1)
    mb = np.where(compute & (mb < 0), seq, mb)
    origin = int(ops["start"].min())
    columns = {
        "dp_rank": ops["dp_rank"],
        "stage": ops["stage"],
        "rank": ops["rank"],
        "step": ops["step"],
        "optype": optype,
        "start_ts": (ops["start"] - origin) / 1e9,
        "duration": (ops["end"] - ops["start"]) / 1e9,
        "seq_id": seq,
        "mc": mc,
        "gmc": gmc,
        "mb_id": mb,
    }
    return columns, origin


def _count(items: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def _sum_dicts(dicts: Iterable[dict]) -> dict:
    """Key → the sum of its values over ``dicts``."""
    out: dict = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def _merge_sizes(dicts: Iterable[dict[str, dict[int, int]]]) -> dict[str, dict[int, int]]:
    """Message sizes of all ranks: kind → {bytes: count}, kinds in MESSAGE_KINDS order, sizes by count."""
    dicts = list(dicts)
    return {
        kind: dict(sorted(merged.items(), key=lambda item: (-item[1], item[0])))
        for kind in MESSAGE_KINDS
        if (merged := _sum_dicts(d[kind] for d in dicts if kind in d))
    }


def _most_common(sizes: dict[int, int]) -> int:
    """The size most messages have (the smallest of those, on a tie)."""
    return min(sizes, key=lambda size: (-sizes[size], size))


def _sizes_text(message_bytes: dict[str, dict[int, int]]) -> list[str]:
    out = []
    for kind, sizes in message_bytes.items():
        n = sum(sizes.values())
        chosen = _most_common(sizes)
        spread = f", the most common of {len(sizes)} sizes ({min(sizes)}-{max(sizes)} B)" if len(sizes) > 1 else ""
        out.append(f"{_MESSAGE_WORDS[kind]} {chosen} B ({kind}; {n} message(s){spread})")
    return out


def _merge_groups(dicts: Iterable[dict]) -> dict[str, list[str]]:
    out: dict[str, set] = {}
    for d in dicts:
        for k, v in d.items():
            out.setdefault(k, set()).update(v)
    return {k: sorted(v) for k, v in sorted(out.items())}
