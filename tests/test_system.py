"""What this machine lets graphwia use: memory to bound requests, CPUs to size pools (containers included)."""

from __future__ import annotations

import os

import pytest

from graphwia.utils import system


def _cgroup_v2(root, text):
    root.mkdir(exist_ok=True)
    (root / "cpu.max").write_text(text)
    return root


def _cgroup_v1(root, quota, period="100000"):
    (root / "cpu").mkdir(parents=True, exist_ok=True)
    (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


@pytest.mark.parametrize(
    "text,limit", [("200000 100000\n", 2.0), ("150000 100000", 1.5), ("max 100000\n", None), ("garbage\n", None)]
)
def test_cgroup_v2_cpu_limit(tmp_path, text, limit):
    assert system.cgroup_cpu_limit(_cgroup_v2(tmp_path / "cg", text)) == limit


@pytest.mark.parametrize("quota,limit", [("400000", 4.0), ("-1", None), ("x", None)])
def test_cgroup_v1_cpu_limit(tmp_path, quota, limit):
    assert system.cgroup_cpu_limit(_cgroup_v1(tmp_path / "cg", quota)) == limit


def test_no_cgroup_no_limit(tmp_path):
    assert system.cgroup_cpu_limit(tmp_path / "absent") is None


def test_usable_cpus_is_the_affinity_within_the_quota_rounded_up(tmp_path):
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    assert system.usable_cpus(cgroup_root=tmp_path / "absent") == affinity
    assert system.usable_cpus(cgroup_root=_cgroup_v2(tmp_path / "half", "50000 100000")) == 1
    assert system.usable_cpus(cgroup_root=_cgroup_v2(tmp_path / "many", "100000000 100000")) == affinity
    if affinity >= 2:
        assert system.usable_cpus(cgroup_root=_cgroup_v2(tmp_path / "one-and-a-half", "150000 100000")) == 2


def test_the_kernel_uses_no_more_threads_than_usable_cpus(monkeypatch):
    from graphwia.engine import kernels

    monkeypatch.setattr(kernels, "usable_cpus", lambda: 1)
    assert kernels._n_threads() == 1
    monkeypatch.setattr(kernels, "usable_cpus", lambda: 10_000)
    import numba

    assert kernels._n_threads() == numba.get_num_threads()


def test_a_fleet_sizes_its_pool_by_usable_cpus(monkeypatch, tmp_path):
    from graphwia.fleet import run

    class Sized(Exception):
        pass

    def pool(pending, out_dir, plots, time_unit, workers, *rest):
        raise Sized(workers)

    monkeypatch.setattr(run, "usable_cpus", lambda: 3)
    monkeypatch.setattr(run, "_run_local", pool)
    with pytest.raises(Sized) as sized:
        run.run_fleet([run.Job(name="a", trace=tmp_path / "trace-a.parquet", meta=None)], tmp_path / "out")
    assert sized.value.args == (3,)  # not os.cpu_count(): a container's CPU limit counts


def test_physical_memory_is_known_here():
    memory = system.physical_memory()
    assert memory is None or memory > 2**27  # more than 128 MB wherever the OS says
