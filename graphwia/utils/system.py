"""What this machine lets this process use: the bounds graphwia sizes its work by.

Memory bounds a request before it is allocated (:func:`physical_memory`);
CPUs size pools of worker processes and threads (:func:`usable_cpus`). In a
container the machine's own counts overstate both: ``os.cpu_count()`` is the
host's, whatever CPU limit the container has.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["CGROUP_ROOT", "cgroup_cpu_limit", "physical_memory", "usable_cpus"]

#: Where the kernel shows this process's control groups (in a container: the container's own).
CGROUP_ROOT = Path("/sys/fs/cgroup")


def physical_memory() -> int | None:
    """This machine's physical memory in bytes, or None where the operating system does not say.

    A request larger than this can never be met, whatever else runs; one
    that fits may still fail, so this bounds requests and promises nothing.
    """
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        return None
    return pages * page_size if pages > 0 and page_size > 0 else None


def usable_cpus(*, cgroup_root: Path | None = None) -> int:
    """The CPUs this process can keep busy: those its CPU affinity allows, or fewer where a CPU quota
    (a container's CPU limit, :func:`cgroup_cpu_limit`) allows less, rounded up; at least 1.

    A pool sized by ``os.cpu_count()`` in a container limited to 4 CPUs on a
    96-core host would start 96 processes or threads, each with its memory,
    to share 4 CPUs' worth of time.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity on this platform
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit(CGROUP_ROOT if cgroup_root is None else cgroup_root)
    if limit is not None:
        cpus = min(cpus, math.ceil(limit))
    return max(1, cpus)


def cgroup_cpu_limit(root: Path) -> float | None:
    """CPUs' worth of time the CPU controller under ``root`` grants per period (``quota / period``), or None
    without a limit (or without a readable controller).

    cgroup v2: ``cpu.max`` holds ``<quota> <period>``, or ``max <period>`` for
    none; cgroup v1: ``cpu/cpu.cfs_quota_us`` (−1 for none) and
    ``cpu/cpu.cfs_period_us``.
    """
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota == "max":
            return None
    except (OSError, ValueError):
        try:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None
