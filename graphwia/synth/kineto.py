"""Per-rank PyTorch profiler (Kineto) traces of a job: what ``torch.profiler`` writes on GPUs.

:func:`write_kineto` turns a validated op table (e.g. a synthetic job from
:func:`~graphwia.synth.generate.synthesize`) into one Chrome trace JSON per traced rank,
``rank{R}.json`` (``.json.gz`` with ``compress``), shaped like a GPU training job's:

* every op instance is a CPU ``user_annotation`` range on the rank's main thread named by
  graphwia's convention (``forward-compute mb=3``, ``backward-recv``, ``grads-reduce-scatter
  chunk=1`` ...); the records the generator writes with one start and end (a batched p2p
  exchange) are nested ranges around one launch;
* its GPU side spans exactly the op's ``[start_ts, start_ts + duration]``: compute ops launch
  ``kernels`` kernels on the compute stream (the backward's from the autograd thread, as
  PyTorch does), communication ops a ``record_param_comms`` CPU op with its process-group
  arguments and one NCCL kernel (names of the ``ncclKernel_*`` or ``ncclDevKernel_*``
  generation), preceded by a small copy kernel on a side stream; every launch is a
  ``cuda_runtime`` event linked to its kernel by a correlation id and an ``ac2g`` flow, and
  every annotation has its ``gpu_user_annotation`` (1 ns wider on each side, as Kineto writes);
* ``gc`` launches nothing: its CPU range is its span;
* ``ProfilerStep#N`` ranges (N = the table's step), ``distributedInfo`` with Megatron's group
  descriptions in ``pg_config``, per-rank ``baseTimeNanoseconds`` with ``ts`` relative to it
  (µs, 3 decimals), ``host_name`` (``ranks_per_host`` ranks per host).

Times are whole nanoseconds: importing the files gives back the op table with every time
rounded to 1 ns and shifted by one common origin. ``clock_skew`` (host → seconds) adds a
constant to every time written on a host, to try clock-offset estimation.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graphwia import optypes as T
from graphwia.errors import ArgumentError, UsageError
from graphwia.trace.optable import Trace
from graphwia.utils.io import atomic_path

#: NCCL kernel names of the two generations (NCCL < 2.19 ``ncclKernel_*``, later ``ncclDevKernel_*``).
NCCL_KERNELS = {
    "ncclKernel": {
        "AllGather": "ncclKernel_AllGather_RING_LL_Sum_int8_t",
        "ReduceScatter": "ncclKernel_ReduceScatter_RING_LL_Sum_bf16",
        "AllReduce": "ncclKernel_AllReduce_RING_LL_Sum_float",
        "SendRecv": "ncclKernel_SendRecv_RING_SIMPLE_Sum_int8_t",
    },
    "ncclDevKernel": {
        "AllGather": "ncclDevKernel_AllGather_RING_LL",
        "ReduceScatter": "ncclDevKernel_ReduceScatter_Sum_bf16_RING_LL",
        "AllReduce": "ncclDevKernel_AllReduce_Sum_f32_RING_LL",
        "SendRecv": "ncclDevKernel_SendRecv",
    },
}
#: Collective, c10d name and Megatron process group of each communication optype.
COLLECTIVE = {
    T.PARAMS_ALL_GATHER: ("AllGather", "all_gather_into_tensor", "DATA_PARALLEL_GROUP"),
    T.GRADS_REDUCE_SCATTER: ("ReduceScatter", "reduce_scatter_tensor", "DATA_PARALLEL_GROUP"),
    T.SEPARATE_GRADS_ALL_REDUCE: ("AllReduce", "allreduce", "DATA_PARALLEL_GROUP"),
    T.LAYERNORM: ("AllReduce", "allreduce", "TENSOR_MODEL_PARALLEL_GROUP"),
    T.EMBEDDING: ("AllReduce", "allreduce", "EMBEDDING_GROUP"),
    T.CLIP: ("AllReduce", "allreduce", "default_pg"),
    **{
        t: ("SendRecv", "send" if t.endswith("send") else "recv", "PIPELINE_MODEL_PARALLEL_GROUP")
        for t in T.P2P_OPTYPES
    },
}
#: Elements and dtype of each communication optype's message (a reduce-scatter's output and an
#: all-gather's input are that buffer divided among the group), as ``record_param_comms`` gives them.
MESSAGES = {
    **{t: (1 << 20, "BFloat16") for t in T.P2P_OPTYPES},
    **{t: (1 << 22, "BFloat16") for t in T.DP_COLLECTIVES},
    T.LAYERNORM: (1 << 16, "BFloat16"),
    T.EMBEDDING: (1 << 18, "BFloat16"),
    T.CLIP: (1, "Float"),
}
#: Bytes of every p2p message and of every DP collective's buffer written.
ACTIVATION_BYTES = MESSAGES[T.FORWARD_SEND][0] * 2
GRAD_BYTES = MESSAGES[T.GRADS_REDUCE_SCATTER][0] * 2
COMPUTE_KERNELS = {
    T.FORWARD_COMPUTE: ("aten::mm", "ampere_bf16_s16816gemm_bf16_128x128_ldg8_f2f_stages_64x3_tn"),
    T.BACKWARD_COMPUTE: (
        "autograd::engine::evaluate_function: MmBackward0",
        "ampere_bf16_s16816gemm_bf16_128x256_ldg8_f2f_stages_64x3_nt",
    ),
    T.OPTIMIZER: ("aten::_foreach_add_", "void at::native::(anonymous namespace)::multi_tensor_apply_kernel"),
}
COPY_KERNEL = "void at::native::elementwise_kernel<128, 2>"
#: GPU streams: compute, DP collectives, tail collectives, p2p, copies.
STREAM = {"compute": 7, "dp": 17, "tail": 19, "p2p": 21, "copy": 99}
#: Epoch of the job's time 0 (ns since 1970): 2024-01-01.
JOB_EPOCH_NS = 1_704_067_200_000_000_000
LAUNCH_US = 4.0  # CPU time of one launch unit (cpu op around a cudaLaunchKernel)
LEAD_US = 20.0  # the CPU issues an op at least this long before its GPU work starts
COPY_US = (12.0, 2.0)  # the copy kernel of a communication op runs this long before its start


@dataclass
class _Writer:
    """Events of one rank, as JSON lines, with the rank's id counters."""

    rank: int
    pid: int
    device: int
    base_ns: int
    lines: list[str] = field(default_factory=list)
    next_external: int = 1
    next_correlation: int = 1

    def ts(self, ns: int) -> str:
        rel = ns - self.base_ns
        return f"{rel // 1000}.{rel % 1000:03d}"

    def external(self) -> int:
        self.next_external += 1
        return self.next_external - 1

    def complete(self, cat: str, name: str, pid: int, tid: int, start_ns: int, dur_ns: int, args: str) -> None:
        self.lines.append(
            f'{{"ph": "X", "cat": "{cat}", "name": {json.dumps(name)}, "pid": {pid}, "tid": {tid}, '
            f'"ts": {self.ts(start_ns)}, "dur": {dur_ns // 1000}.{dur_ns % 1000:03d}, '
            f'"args": {{{args}}}}}'
        )

    def annotation(self, name: str, tid: int, start_ns: int, end_ns: int) -> int:
        ext = self.external()
        self.complete(
            "user_annotation",
            name,
            self.pid,
            tid,
            start_ns,
            end_ns - start_ns,
            f'"External id": {ext}, "Record function id": 0',
        )
        return ext

    def launch(
        self,
        cpu_op: str,
        cpu_args: str,
        tid: int,
        at_ns: int,
        kernel: str,
        kernel_args: str,
        stream: int,
        k_start: int,
        k_end: int,
    ) -> None:
        """A CPU op launching one kernel: cpu_op > cudaLaunchKernel ~> kernel, with the ac2g flow."""
        ext = self.external()
        corr = self.next_correlation
        self.next_correlation += 1
        self.complete("cpu_op", cpu_op, self.pid, tid, at_ns, 3500, f'"External id": {ext}{cpu_args}')
        self.complete(
            "cuda_runtime",
            "cudaLaunchKernel",
            self.pid,
            tid,
            at_ns + 1000,
            2000,
            f'"External id": {ext}, "cbid": 211, "correlation": {corr}',
        )
        self.complete(
            "kernel",
            kernel,
            self.device,
            stream,
            k_start,
            k_end - k_start,
            f'"External id": {ext}, "device": {self.device}, "stream": {stream}, "correlation": {corr}, '
            f'"registers per thread": 128, "grid": [132, 1, 1], "block": [256, 1, 1]{kernel_args}',
        )
        self.lines.append(
            f'{{"ph": "s", "id": {corr}, "pid": {self.pid}, "tid": {tid}, "ts": {self.ts(at_ns + 1000)}, '
            f'"cat": "ac2g", "name": "ac2g"}}'
        )
        self.lines.append(
            f'{{"ph": "f", "id": {corr}, "pid": {self.device}, "tid": {stream}, '
            f'"ts": {self.ts(k_start)}, "cat": "ac2g", "name": "ac2g", "bp": "e"}}'
        )

    def gpu_annotation(self, name: str, ext: int, stream: int, start_ns: int, end_ns: int) -> None:
        self.complete(
            "gpu_user_annotation",
            name,
            self.device,
            stream,
            start_ns - 1,
            end_ns - start_ns + 2,
            f'"External id": {ext}',
        )


@dataclass(frozen=True)
class _Topology:
    """Megatron's rank layout (order tp-dp-pp, tp fastest) and the process groups of a rank."""

    dp: int
    pp: int
    tp: int

    @property
    def world(self) -> int:
        return self.dp * self.pp * self.tp

    def rank(self, t: int, d: int, s: int) -> int:
        return t + self.tp * (d + self.dp * s)

    def groups(self, d: int, s: int) -> list[dict]:
        """pg_config of rank (tp 0, dp d, stage s): the groups it belongs to, Megatron's names."""
        dp, pp, tp = self.dp, self.pp, self.tp
        kinds = [  # (description, index of this group among its kind, number of such groups, ranks)
            ("TENSOR_MODEL_PARALLEL_GROUP", d + dp * s, dp * pp, [self.rank(t, d, s) for t in range(tp)]),
            ("DATA_PARALLEL_GROUP", s, pp * tp, [self.rank(0, e, s) for e in range(dp)]),
            ("PIPELINE_MODEL_PARALLEL_GROUP", d, dp * tp, [self.rank(0, d, q) for q in range(pp)]),
            ("MODEL_PARALLEL_GROUP", d, dp, [self.rank(t, d, q) for q in range(pp) for t in range(tp)]),
        ]
        if pp > 1:
            kinds.append(("EMBEDDING_GROUP", d, dp * tp, [self.rank(0, d, 0), self.rank(0, d, pp - 1)]))
        configs = [
            {
                "pg_name": "0",
                "pg_desc": "default_pg",
                "backend_config": "cuda:nccl",
                "pg_size": self.world,
                "ranks": list(range(self.world)),
            }
        ]
        offset = 1
        for desc, index, count, ranks in kinds:
            if desc != "EMBEDDING_GROUP" or s in (0, pp - 1):
                configs.append(
                    {
                        "pg_name": str(offset + index),
                        "pg_desc": desc,
                        "backend_config": "cuda:nccl",
                        "pg_size": len(ranks),
                        "ranks": ranks,
                    }
                )
            offset += count
        return configs


def kineto_name(optype: str, mb: int, chunk: int | None) -> str:
    """The convention's range name: optype, then ``mb=`` (compute and p2p) and ``chunk=`` when given."""
    name = optype
    if mb >= 0 and optype in T.COMPUTE_STREAM + T.P2P_OPTYPES:
        name += f" mb={mb}"
    if chunk is not None and chunk >= 0:
        name += f" chunk={chunk}"
    return name


def write_kineto(
    trace: Trace,
    out_dir: str | Path,
    *,
    nccl: str = "ncclDevKernel",
    kernels: int = 2,
    compress: bool = False,
    ranks_per_host: int = 8,
    clock_skew: Mapping[int, float] | None = None,
) -> list[Path]:
    """Write one Kineto trace per traced rank of ``trace`` into ``out_dir``; return the paths.

    Parameters
    ----------
    trace:
        A validated trace (one traced rank per worker; ``rank`` is the global rank).
    nccl:
        NCCL kernel name generation: ``"ncclDevKernel"`` (NCCL ≥ 2.19) or ``"ncclKernel"``.
    kernels:
        Kernels per forward/backward compute and optimizer op (≥ 1): more makes bigger files.
    compress:
        Write ``rank{R}.json.gz`` (gzip level 1) instead of ``rank{R}.json``.
    ranks_per_host:
        Consecutive global ranks sharing a ``host_name`` (and a clock).
    clock_skew:
        Host index → seconds added to every time written on that host.
    """
    if nccl not in NCCL_KERNELS:
        raise ArgumentError("nccl", repr(nccl), f"expected one of {', '.join(NCCL_KERNELS)}")
    if kernels < 1 or ranks_per_host < 1:
        raise UsageError("kernels and ranks_per_host must be positive")
    meta = trace.meta
    ops = trace.table
    skew = {int(h): int(round(s * 1e9)) for h, s in (clock_skew or {}).items()}
    topology = _Topology(dp=meta.dp_size, pp=meta.pp_size, tp=meta.tp_size)
    start_ns = np.round((ops["start_ts"] - ops["start_ts"].min()) * 1e9).astype(np.int64)
    end_ns = np.round((ops["end"] - ops["start_ts"].min()) * 1e9).astype(np.int64)
    worker = ops["stage"].astype(np.int64) * meta.dp_size + ops["dp_rank"]
    order = np.lexsort((ops["seq_id"], ops["optype"], end_ns, start_ns, worker))
    bounds = np.flatnonzero(np.diff(worker[order])) + 1
    paths = []
    for rows in np.split(order, bounds):
        rank = int(ops["rank"][rows[0]])
        host = rank // ranks_per_host
        writer = _Writer(
            rank=rank,
            pid=4000 + rank,
            device=rank % ranks_per_host,
            base_ns=JOB_EPOCH_NS - 5_000_000_000 - 1_000_003 * rank,
        )
        shift = JOB_EPOCH_NS + skew.get(host, 0)
        _write_rank_events(writer, ops, rows, start_ns + shift, end_ns + shift, meta.vpp_size, nccl, kernels, topology)
        dist = {
            "backend": "nccl",
            "rank": rank,
            "world_size": topology.world,
            "pg_count": len(topology.groups(int(ops["dp_rank"][rows[0]]), int(ops["stage"][rows[0]]))),
            "pg_config": topology.groups(int(ops["dp_rank"][rows[0]]), int(ops["stage"][rows[0]])),
            "nccl_version": "2.21.5" if nccl == "ncclDevKernel" else "2.18.3",
        }
        path = Path(out_dir) / f"rank{rank}.json{'.gz' if compress else ''}"
        _write_file(path, writer, dist, host, compress)
        paths.append(path)
    return paths


def _write_rank_events(
    writer: _Writer,
    ops,
    rows: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    vpp: int,
    nccl: str,
    kernels: int,
    topology: _Topology,
) -> None:
    """All events of one rank: threads, steps, and one block of events per call (same start, end)."""
    main, autograd = writer.pid, writer.pid + 1
    _metadata(writer, main, autograd)
    optype = ops.labels("optype")[rows]
    keys = np.stack([ops["step"][rows], start[rows], end[rows]], axis=1)
    first = np.concatenate([[True], (keys[1:] != keys[:-1]).any(axis=1)])
    starts = np.flatnonzero(first)
    blocks = np.split(np.arange(len(rows)), starts[1:])
    cpu_only = np.array([optype[b[0]] == T.GC for b in blocks])
    durations = np.array([_cpu_duration_us(optype[b[0]], len(b), kernels) for b in blocks])
    gpu_start, gpu_end = start[rows][starts], end[rows][starts]
    durations = np.where(cpu_only, (gpu_end - gpu_start) / 1000, durations)  # a CPU-only op's range is its span
    cpu_start = _cpu_layout(gpu_start, gpu_end, durations, cpu_only)
    steps = ops["step"][rows][starts]
    _profiler_steps(writer, main, steps, cpu_start, cpu_start + (durations * 1000).astype(np.int64))
    d, s = int(ops["dp_rank"][rows[0]]), int(ops["stage"][rows[0]])
    groups = {g["pg_desc"]: g for g in topology.groups(d, s)}
    for b, members in enumerate(blocks):
        records = rows[members]
        _write_block(
            writer,
            ops,
            records,
            optype[members],
            int(start[records[0]]),
            int(end[records[0]]),
            int(cpu_start[b]),
            vpp,
            nccl,
            kernels,
            groups,
            main,
            autograd,
        )


def _metadata(writer: _Writer, main: int, autograd: int) -> None:
    def meta(name: str, pid: int, tid: int, key: str, value) -> None:
        writer.lines.append(
            f'{{"ph": "M", "name": "{name}", "ts": 0.000, "pid": {pid}, "tid": {tid}, '
            f'"args": {{"{key}": {json.dumps(value)}}}}}'
        )

    meta("process_name", writer.pid, 0, "name", "python")
    meta("thread_name", writer.pid, main, "name", f"thread {main} (python)")
    meta("thread_name", writer.pid, autograd, "name", f"thread {autograd} (pt_autograd_0)")
    meta("process_name", writer.device, 0, "name", "python")
    meta("process_labels", writer.device, 0, "labels", f"GPU {writer.device}")
    for stream in STREAM.values():
        meta("thread_name", writer.device, stream, "name", f"stream {stream}")


def _cpu_duration_us(optype: str, records: int, kernels: int) -> float:
    """CPU time of one block: nested annotations around its launch units."""
    units = kernels if optype in COMPUTE_KERNELS else 0 if optype == T.GC else 2
    return 2.0 + records + LAUNCH_US * units


def _cpu_layout(
    gpu_start: np.ndarray, gpu_end: np.ndarray, durations_us: np.ndarray, cpu_only: np.ndarray
) -> np.ndarray:
    """CPU start (ns) of every block on the main thread: one after the other, each issued at
    least LEAD_US before its GPU work when it can be; a CPU-only block sits at its own span."""
    duration = (durations_us * 1000).astype(np.int64)
    cpu_start = np.where(cpu_only, gpu_start, 0)
    fixed = np.flatnonzero(cpu_only)
    fixed_start, fixed_end = gpu_start[fixed], gpu_end[fixed]
    cursor = None
    for b in np.flatnonzero(~cpu_only):
        at = int(gpu_start[b] - duration[b] - LEAD_US * 1000)
        if cursor is not None:
            at = max(at, cursor)
        k = int(np.searchsorted(fixed_end, at, side="right"))  # the first CPU-only block ending after `at`
        while k < len(fixed) and at + duration[b] > fixed_start[k]:
            at = int(fixed_end[k]) + 1000
            k += 1
        cpu_start[b] = at
        cursor = at + int(duration[b]) + 500
    return cpu_start


def _profiler_steps(writer: _Writer, main: int, steps: np.ndarray, cpu_start: np.ndarray, cpu_end: np.ndarray) -> None:
    """Back-to-back ``ProfilerStep#N`` ranges, each around its step's blocks."""
    present = np.unique(steps)
    first = np.array([cpu_start[steps == n].min() for n in present]) - 10_000
    last = int(cpu_end.max()) + 10_000
    ends = np.concatenate([first[1:], [last]])
    for n, a, b in zip(present, first, ends):
        writer.annotation(f"ProfilerStep#{int(n)}", main, int(a), int(b))


def _write_block(
    writer: _Writer,
    ops,
    records: np.ndarray,
    optypes,
    start: int,
    end: int,
    cpu: int,
    vpp: int,
    nccl: str,
    kernels: int,
    groups: dict,
    main: int,
    autograd: int,
) -> None:
    """One call: nested annotations, its launches and kernels, GPU annotations."""
    n = len(records)
    if optypes[0] == T.GC:  # CPU work only: the range is the op
        writer.annotation(kineto_name(T.GC, -1, None), main, start, end)
        return
    names = [
        kineto_name(
            optypes[i], int(ops["mb_id"][r]), int(ops["mc"][r]) if vpp > 1 or optypes[i] in T.DP_COLLECTIVES else None
        )
        for i, r in enumerate(records)
    ]
    duration_ns = int(_cpu_duration_us(optypes[0], n, kernels) * 1000)
    externals = [
        writer.annotation(name, main, cpu + 500 * i, cpu + duration_ns - 500 * i) for i, name in enumerate(names)
    ]
    inner = cpu + 500 * n + 500
    optype = optypes[0]
    if optype in COMPUTE_KERNELS:
        cpu_op, kernel = COMPUTE_KERNELS[optype]
        tid = autograd if optype == T.BACKWARD_COMPUTE else main
        cuts = start + np.linspace(0, end - start, kernels + 1).round().astype(np.int64)  # exact: offsets, not epoch ns
        for k in range(kernels):
            gap = 0 if k == kernels - 1 else min(500, int(cuts[k + 1] - cuts[k]) // 4)  # idle between kernels
            writer.launch(
                cpu_op,
                "",
                tid,
                inner + int(LAUNCH_US * 1000) * k,
                kernel,
                "",
                STREAM["compute"],
                int(cuts[k]),
                int(cuts[k + 1]) - gap,
            )
        spans = [(STREAM["compute"], start, end)]
    else:
        collective, c10d, desc = COLLECTIVE[optype]
        group = groups.get(desc, groups["default_pg"])
        stream = (
            STREAM["p2p"] if optype in T.P2P_OPTYPES else STREAM["dp"] if optype in T.DP_COLLECTIVES else STREAM["tail"]
        )
        copy = (start - int(COPY_US[0] * 1000), start - int(COPY_US[1] * 1000))
        writer.launch("aten::copy_", "", main, inner, COPY_KERNEL, "", STREAM["copy"], *copy)
        nelems, dtype = MESSAGES[optype]
        shard = max(nelems // group["pg_size"], 1)
        n_in, n_out = {"ReduceScatter": (nelems, shard), "AllGather": (shard, nelems)}.get(collective, (nelems, nelems))
        comms = (
            f'"Collective name": "{c10d}", "dtype": "{dtype}", "In msg nelems": {n_in}, '
            f'"Out msg nelems": {n_out}, "Group size": {group["pg_size"]}, '
            f'"Process Group Name": "{group["pg_name"]}", "Process Group Description": "{desc}", '
            f'"Process Group Ranks": "{group["ranks"]}"'
        )
        writer.launch(
            "record_param_comms",
            f', "Rank": {writer.rank}, {comms}',
            main,
            inner + int(LAUNCH_US * 1000),
            NCCL_KERNELS[nccl][collective],
            ", " + comms,
            stream,
            start,
            end,
        )
        spans = [(STREAM["copy"], copy[0], copy[1]), (stream, start, end)]
    for name, ext in zip(names, externals):
        for stream, a, b in spans:
            writer.gpu_annotation(name, ext, stream, a, b)


def _write_file(path: Path, writer: _Writer, dist: dict, host: int, compress: bool) -> None:
    head = {
        "schemaVersion": 1,
        "deviceProperties": [
            {
                "id": writer.device,
                "name": "Synthetic GPU",
                "totalGlobalMem": 85899345920,
                "computeMajor": 9,
                "computeMinor": 0,
            }
        ],
        "distributedInfo": dist,
        "host_name": f"synth-node{host}",
        "displayTimeUnit": "ms",
        "baseTimeNanoseconds": writer.base_ns,
    }
    text = (
        json.dumps(head)[:-1]
        + ', "traceEvents": [\n'
        + ",\n".join(writer.lines)
        + f'\n], "traceName": "{path.name}"}}\n'
    )
    with atomic_path(path) as tmp:
        if compress:
            with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=1) as handle:
                handle.write(text)
        else:
            tmp.write_text(text)


def synth_kineto(
    out_dir: str | Path,
    name: str,
    *,
    nccl: str = "ncclDevKernel",
    kernels: int = 2,
    compress: bool = True,
    ranks_per_host: int = 8,
    clock_skew: Mapping[int, float] | None = None,
    **synth_args,
) -> tuple[Path, list[Path]]:
    """Synthesize a job (``synth_args`` as for :func:`~graphwia.synth.generate.synthesize`) and write
    its Kineto traces into ``out_dir/NAME/``; return that directory and the files."""
    from graphwia.synth.generate import synthesize

    frame, meta = synthesize(name=name, **synth_args)
    trace = Trace.from_frame(frame, meta, source=f"synthetic job {name}")
    directory = Path(out_dir) / name
    return directory, write_kineto(
        trace,
        directory,
        nccl=nccl,
        kernels=kernels,
        compress=compress,
        ranks_per_host=ranks_per_host,
        clock_skew=clock_skew,
    )


__all__ = ["ACTIVATION_BYTES", "GRAD_BYTES", "MESSAGES", "NCCL_KERNELS", "kineto_name", "synth_kineto", "write_kineto"]
