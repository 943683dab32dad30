"""Who is who: rank, world size, DP and PP membership of every trace file.

Each file's ``distributedInfo`` gives its rank and the world size; its ``pg_config`` lists the
process groups *that rank* belongs to, with their ranks and, on Megatron-LM, a description
naming the group: ``DATA_PARALLEL_GROUP`` (dp_rank = position in it),
``PIPELINE_MODEL_PARALLEL_GROUP`` (stage = position), ``TENSOR_MODEL_PARALLEL_GROUP`` and
``CONTEXT_PARALLEL_GROUP`` (sizes). A :class:`Layout` (``--pp --dp --tp [--order]``) replaces
them: ranks then follow Megatron's order, ``tp-cp-ep-dp-pp`` by default (first varies fastest).

One worker per (dp_rank, stage) is analysed: when several files map to one (TP or CP peers),
the lowest rank is kept and the others are reported as ignored.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

from graphwia.errors import ArgumentError, TraceError, UsageError

__all__ = ["DEFAULT_ORDER", "DIMENSIONS", "GROUP_DESC", "Layout", "RankInfo", "Topology", "rank_info", "resolve"]

DIMENSIONS = ("tp", "cp", "ep", "dp", "pp")
DEFAULT_ORDER = "tp-cp-ep-dp-pp"
GROUP_DESC = {
    "dp": "DATA_PARALLEL_GROUP",
    "pp": "PIPELINE_MODEL_PARALLEL_GROUP",
    "tp": "TENSOR_MODEL_PARALLEL_GROUP",
    "cp": "CONTEXT_PARALLEL_GROUP",
}


@dataclass(frozen=True)
class Layout:
    """Parallel sizes and rank order of a job (Megatron's ``RankGenerator`` convention)."""

    pp: int
    dp: int
    tp: int = 1
    order: str = DEFAULT_ORDER

    def __post_init__(self):
        for name in ("pp", "dp", "tp"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArgumentError(name, repr(value), "must be a positive integer")
        dims = self.order.split("-")
        if sorted(dims) != sorted(set(dims)) or not set(dims) <= set(DIMENSIONS) or not {"tp", "dp", "pp"} <= set(dims):
            raise ArgumentError(
                "order",
                repr(self.order),
                f"expected the dimensions tp, dp, pp (and cp, ep) once each, joined by '-', e.g. {DEFAULT_ORDER}",
            )

    @property
    def world(self) -> int:
        return self.pp * self.dp * self.tp

    def coordinates(self, rank: int) -> dict[str, int]:
        """Index of ``rank`` along each dimension (cp and ep have size 1)."""
        sizes = {"tp": self.tp, "dp": self.dp, "pp": self.pp, "cp": 1, "ep": 1}
        out = {}
        for dim in self.order.split("-"):
            rank, out[dim] = divmod(rank, sizes[dim])
        return out


@dataclass(frozen=True)
class RankInfo:
    """What one file says about its process: rank, world size, process groups, host."""

    path: Path
    rank: int
    world_size: int
    groups: dict[str, list[int]]  # pg_desc → ranks, for the groups that name themselves
    host: str


@dataclass
class Topology:
    """The job's sizes and the worker (dp_rank, stage) of every analysed rank."""

    dp: int
    pp: int
    tp: int
    cp: int
    world: int
    workers: dict[int, tuple[int, int]]  # rank → (dp_rank, stage)
    source: str
    ignored: list[int] = field(default_factory=list)


def rank_info(path: Path, distributed, host: str | None) -> RankInfo:
    """Read ``distributedInfo``; a TraceError names the file when rank or world size is missing."""
    if (
        not isinstance(distributed, dict)
        or not isinstance(distributed.get("rank"), int)
        or not isinstance(distributed.get("world_size"), int)
    ):
        raise TraceError(
            f"{path}: no distributedInfo with rank and world_size (start torch.distributed "
            f"before the profiler, so that the trace records them)"
        )
    groups: dict[str, list[int]] = {}
    for config in distributed.get("pg_config") or []:
        if isinstance(config, dict) and isinstance(config.get("pg_desc"), str):
            ranks = _ranks(config.get("ranks"))
            if ranks is not None:
                groups.setdefault(config["pg_desc"], ranks)
    return RankInfo(
        path=path, rank=distributed["rank"], world_size=distributed["world_size"], groups=groups, host=host or ""
    )


def _ranks(value) -> list[int] | None:
    """A pg_config ``ranks`` entry: a list, or its text form ``"[0, 1]"`` (Kineto's own writer)."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return None
    if isinstance(value, (list, tuple)) and all(isinstance(r, int) for r in value):
        return sorted(value)
    return None


def resolve(infos: list[RankInfo], layout: Layout | None, where: str) -> Topology:
    """Sizes and workers of the job whose files gave ``infos``; one-line errors name the files."""
    if len(infos) == 1:
        info = infos[0]
        raise TraceError(
            f"{info.path}: a single rank's trace (rank {info.rank} of {info.world_size}); graphwia "
            f"compares the ranks of a job: give every rank's file, or their directory"
        )
    _check_one_job(infos, where)
    world = infos[0].world_size
    if layout is not None:
        if layout.world != world:
            raise ArgumentError(
                "layout",
                f"pp {layout.pp} dp {layout.dp} tp {layout.tp}",
                f"makes {layout.world} ranks but the traces in {where} are of a {world}-rank job",
            )
        coords = {info.rank: layout.coordinates(info.rank) for info in infos}
        workers = {rank: (c["dp"], c["pp"]) for rank, c in coords.items()}
        topology = Topology(
            dp=layout.dp,
            pp=layout.pp,
            tp=layout.tp,
            cp=1,
            world=world,
            workers=workers,
            source=f"layout options (order {layout.order})",
        )
    else:
        topology = _from_groups(infos, world, where)
    return _one_per_worker(topology, infos, where, layout)


def _check_one_job(infos: list[RankInfo], where: str) -> None:
    first = infos[0]
    for info in infos[1:]:
        if info.world_size != first.world_size:
            raise TraceError(
                f"{where}: traces of two jobs: {first.path.name} is of a {first.world_size}-rank job, "
                f"{info.path.name} of a {info.world_size}-rank one"
            )
    seen: dict[int, Path] = {}
    for info in infos:
        if not 0 <= info.rank < info.world_size:
            raise TraceError(f"{info.path}: rank {info.rank} outside world_size {info.world_size}")
        if info.rank in seen:
            raise TraceError(
                f"{where}: {seen[info.rank].name} and {info.path.name} are both rank {info.rank} "
                f"(traces of two jobs in one directory?)"
            )
        seen[info.rank] = info.path


def _from_groups(infos: list[RankInfo], world: int, where: str) -> Topology:
    def size(dim: str) -> int | None:
        sizes = {len(info.groups[GROUP_DESC[dim]]) for info in infos if GROUP_DESC[dim] in info.groups}
        if len(sizes) > 1:
            raise TraceError(
                f"{where}: the files disagree on the size of {GROUP_DESC[dim]} ({sorted(sizes)}): traces of two jobs?"
            )
        return sizes.pop() if sizes else None

    dp, pp, tp, cp = size("dp"), size("pp"), size("tp"), size("cp") or 1
    if tp is None:
        tp = 1
    if dp is None and pp is not None and pp * tp * cp == world:
        dp = 1
    if pp is None and dp is not None and dp * tp * cp == world:
        pp = 1
    if dp is None or pp is None:
        raise UsageError(
            f"{where}: distributedInfo names no {GROUP_DESC['dp']} / {GROUP_DESC['pp']} groups to tell "
            f"which rank is which stage: pass the layout (graphwia import kineto --pp P --dp D [--tp T])"
        )
    if dp * pp * tp * cp != world:
        tp = world // (dp * pp * cp) if world % (dp * pp * cp) == 0 else tp
        if dp * pp * tp * cp != world:
            raise TraceError(
                f"{where}: groups of sizes dp {dp}, pp {pp}, tp {tp}, cp {cp} do not make the world size {world}"
            )
    workers = {}
    for info in infos:
        position = []
        for dim, n in (("dp", dp), ("pp", pp)):
            ranks = info.groups.get(GROUP_DESC[dim])
            if ranks is None and n == 1:
                position.append(0)
            elif ranks is None or info.rank not in ranks:
                raise TraceError(
                    f"{info.path}: rank {info.rank} lists no {GROUP_DESC[dim]} holding it in "
                    f"distributedInfo.pg_config; pass the layout options instead"
                )
            else:
                position.append(ranks.index(info.rank))
        workers[info.rank] = (position[0], position[1])
    return Topology(dp=dp, pp=pp, tp=tp, cp=cp, world=world, workers=workers, source="distributedInfo process groups")


def _one_per_worker(topology: Topology, infos: list[RankInfo], where: str, layout: Layout | None) -> Topology:
    """Keep the lowest rank of each (dp_rank, stage); every worker must have one."""
    chosen: dict[tuple[int, int], int] = {}
    for rank in sorted(topology.workers):
        chosen.setdefault(topology.workers[rank], rank)
    ignored = sorted(set(topology.workers) - set(chosen.values()))
    missing = [(d, s) for s in range(topology.pp) for d in range(topology.dp) if (d, s) not in chosen]
    if missing:
        d, s = missing[0]
        expected = _expected_rank(infos, topology, layout, d, s)
        which = f"rank {expected} (dp_rank {d}, stage {s})" if expected is not None else f"dp_rank {d}, stage {s}"
        raise TraceError(
            f"{where}: the trace of {which} is missing ({len(missing)} of {topology.dp * topology.pp} "
            f"workers have no file)"
        )
    topology.workers = {rank: worker for worker, rank in chosen.items()}
    topology.ignored = ignored
    return topology


def _expected_rank(infos: list[RankInfo], topology: Topology, layout: Layout | None, d: int, s: int) -> int | None:
    """The rank a missing worker would have: from the layout, or read from a peer's DP or PP group."""
    if layout is not None:
        return next(
            (
                r
                for r in range(layout.world)
                if layout.coordinates(r) == {**layout.coordinates(r), "dp": d, "pp": s, "tp": 0}
            ),
            None,
        )
    by_rank = {info.rank: info for info in infos}
    for rank, (dp_rank, stage) in topology.workers.items():
        groups = by_rank[rank].groups
        if stage == s and GROUP_DESC["dp"] in groups and len(groups[GROUP_DESC["dp"]]) > d:
            return groups[GROUP_DESC["dp"]][d]
        if dp_rank == d and GROUP_DESC["pp"] in groups and len(groups[GROUP_DESC["pp"]]) > s:
            return groups[GROUP_DESC["pp"]][s]
    return None
