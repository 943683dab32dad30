"""Who is who: rank, world size, DP and PP membership of every trace file.

Each file's ``distributedInfo`` gives its rank and the world size; its ``pg_config`` lists the
process groups *that rank* belongs to, with their ranks and, on Megatron-LM, a description
naming the group: ``DATA_PARALLEL_GROUP`` (dp_rank = position in it),
``PIPELINE_MODEL_PARALLEL_GROUP`` (stage = position), ``TENSOR_MODEL_PARALLEL_GROUP`` and
``CONTEXT_PARALLEL_GROUP`` (sizes). A :class:`Layout` (sizes pp, dp, tp and a rank order) replaces
them: ranks then follow Megatron's order, ``tp-cp-ep-dp-pp`` by default (first varies fastest).

The files must be of one job: they agree on the world size (and the backend and NCCL version
where they give them), no two are the same rank, and a group that several files list has the
same ranks and name in each (a rank's ``pg_config`` lists the groups it belongs to, so two files
of one job that list a group by the same description list the same group).

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
#: distributedInfo fields every rank of a job has alike (when given).
_SETTINGS = ("backend", "nccl_version")
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
    """What one file says about its process: rank, world size, process groups, host.

    ``groups`` maps the description (``pg_desc``) of each group that has one to its ranks (the
    first group of that description); ``listed`` holds every group with a description as
    (description, ranks, ``pg_name`` or None); ``settings`` holds ``backend`` and ``nccl_version``
    when given.
    """

    path: Path
    rank: int
    world_size: int
    groups: dict[str, list[int]]
    host: str
    listed: tuple[tuple[str, tuple[int, ...], str | None], ...] = ()
    settings: dict[str, str] = field(default_factory=dict)


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
    listed = []
    configs = distributed.get("pg_config")
    for config in configs if isinstance(configs, list) else []:
        if isinstance(config, dict) and isinstance(config.get("pg_desc"), str):
            ranks = _ranks(config.get("ranks"))
            if ranks is not None:
                groups.setdefault(config["pg_desc"], ranks)
                name = config.get("pg_name")
                shown = str(name) if isinstance(name, (str, int)) and not isinstance(name, bool) else None
                listed.append((config["pg_desc"], tuple(ranks), shown))
    settings = {key: str(distributed[key]) for key in _SETTINGS if isinstance(distributed.get(key), (str, int))}
    return RankInfo(
        path=path,
        rank=distributed["rank"],
        world_size=distributed["world_size"],
        groups=groups,
        host=host or "",
        listed=tuple(listed),
        settings=settings,
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
    """One job's files: one world size, backend and NCCL version, distinct ranks, the same groups."""
    first = infos[0]
    for info in infos[1:]:
        if info.world_size != first.world_size:
            raise TraceError(
                f"{where}: traces of two jobs: {first.path.name} is of a {first.world_size}-rank job, "
                f"{info.path.name} of a {info.world_size}-rank one"
            )
        for key in _SETTINGS:
            mine, theirs = first.settings.get(key), info.settings.get(key)
            if mine is not None and theirs is not None and mine != theirs:
                raise TraceError(
                    f"{where}: traces of two jobs: distributedInfo {key} is {mine!r} in {first.path.name} "
                    f"(rank {first.rank}) but {theirs!r} in {info.path.name} (rank {info.rank})"
                )
    seen: dict[int, RankInfo] = {}
    for info in infos:
        if not 0 <= info.rank < info.world_size:
            raise TraceError(f"{info.path}: rank {info.rank} outside world_size {info.world_size}")
        if info.rank in seen:
            raise TraceError(
                f"{where}: {seen[info.rank].path.name} and {info.path.name} are both rank {info.rank} "
                f"(traces of two jobs in one directory?)"
            )
        seen[info.rank] = info
    _check_groups(infos, seen, where)


def _check_groups(infos: list[RankInfo], by_rank: dict[int, RankInfo], where: str) -> None:
    """Every group a file lists is listed alike (same ranks; same pg_name where both give one) by the
    file of each of its members that lists groups of that description."""
    for info in infos:
        for desc, ranks, name in info.listed:
            for member in ranks:
                other = by_rank.get(member)
                if other is None or other is info or desc not in other.groups:
                    continue
                theirs = [(r, n) for d, r, n in other.listed if d == desc]
                if not any(r == ranks and (name is None or n is None or n == name) for r, n in theirs):
                    raise TraceError(
                        f"{where}: traces of two jobs or runs: {info.path.name} (rank {info.rank}) lists "
                        f"{desc} {_group_text(ranks, name)} holding rank {member}, but {other.path.name} "
                        f"(rank {member}) lists {desc} as {' and '.join(_group_text(r, n) for r, n in theirs)}"
                    )


def _group_text(ranks: tuple[int, ...], name: str | None) -> str:
    return f"{list(ranks)}" + (f" (pg_name {name})" if name is not None else "")


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
            f"which rank is which stage: give the layout (pp, dp and tp sizes) when importing these traces"
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
                    f"distributedInfo.pg_config; give the layout (pp, dp and tp sizes) instead"
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
