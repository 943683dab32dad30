"""synth → Kineto GPU traces → import → analyze equals synth → analyze (the GPU path, exactly).

Every published number (result-, ms-, mw- files) of the imported job agrees with the synthetic
job's within a relative 1e-6: the importer recovers every op's GPU span from the kernels its
annotation launched (NCCL kernels of either name generation for communication ops), its step,
seq_id, chunk and worker, and the layout from ``distributedInfo``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from graphwia.analyses.standard import analyze
from graphwia.outputs.results import explanation_dict, result_dict
from graphwia.synth.generate import synthesize
from graphwia.synth.kineto import ACTIVATION_BYTES, GRAD_BYTES, write_kineto
from graphwia.trace.kineto import import_kineto
from graphwia.trace.optable import Trace

CASES = {
    "1f1b-8": (dict(dp=2, pp=4, microbatches=8, steps=3), "ncclDevKernel"),
    "1f1b-8-old-nccl": (dict(dp=2, pp=4, microbatches=8, steps=3, dp_overlap=False), "ncclKernel"),
    "interleaved-16": (dict(dp=2, pp=4, vpp=2, microbatches=8, steps=3), "ncclKernel"),
    "interleaved-16-new-nccl": (dict(dp=2, pp=4, vpp=2, microbatches=8, steps=2), "ncclDevKernel"),
    "pp1-8": (dict(dp=8, pp=1, microbatches=4, steps=3), "ncclDevKernel"),
    "pp1-8-old-nccl": (dict(dp=8, pp=1, microbatches=4, steps=2), "ncclKernel"),
    "1f1b-64": (dict(dp=8, pp=8, microbatches=8, steps=2), "ncclDevKernel"),
    "interleaved-32-tp2": (dict(dp=2, pp=8, vpp=2, microbatches=8, steps=2, tp=2), "ncclKernel"),
}


def published(analysis) -> dict:
    return {
        "result": result_dict(analysis),
        "ms": explanation_dict(analysis.ms, "Ms"),
        "mw": explanation_dict(analysis.mw, "Mw"),
    }


def assert_close(expected, got, path="") -> None:
    """Same structure; numbers within a relative 1e-6 (absolute 1e-9 near 0)."""
    if isinstance(expected, dict):
        assert list(expected) == list(got) or set(expected) == set(got), f"{path}: keys {list(expected)} != {list(got)}"
        for key in expected:
            assert_close(expected[key], got[key], f"{path}/{key}")
    elif isinstance(expected, (int, float)) and not isinstance(expected, bool):
        assert isinstance(got, (int, float)), f"{path}: {got!r}"
        assert math.isclose(expected, got, rel_tol=1e-6, abs_tol=1e-9), f"{path}: {expected} != {got}"
    else:
        assert expected == got, f"{path}: {expected!r} != {got!r}"


@pytest.mark.parametrize("case", list(CASES))
def test_roundtrip_equals_direct_analysis(case, tmp_path):
    layout, nccl = CASES[case]
    frame, meta = synthesize(name="rt", seed=3, slow_workers=[(1, layout["pp"] - 1, 1.5)], seqlen_cv=0.1, **layout)
    direct = Trace.from_frame(frame, meta)
    paths = write_kineto(direct, tmp_path, nccl=nccl, compress=case.endswith("nccl"))
    assert len(paths) == layout["dp"] * layout["pp"]
    imported, report = import_kineto(tmp_path, name="rt")

    sizes = {"activation_bytes": ACTIVATION_BYTES if layout["pp"] > 1 else None, "grad_bytes": GRAD_BYTES}
    assert dataclasses.asdict(imported.meta) == dataclasses.asdict(direct.meta) | sizes
    assert report.sources.get("kernels", 0) == len(direct.table) - int((direct.ops.optype == "gc").sum())
    assert report.nccl_kernels and all(k.startswith(nccl + "_") for k in report.nccl_kernels)
    key = ["step", "dp_rank", "stage", "optype", "seq_id"]
    a = direct.ops.sort_values(key).reset_index(drop=True)
    b = imported.ops.sort_values(key).reset_index(drop=True)
    for column in ("rank", "step", "dp_rank", "stage", "seq_id", "mb_id"):
        compute = a.optype.isin(["forward-compute", "backward-compute"])
        assert (a[column][compute] == b[column][compute]).all(), column
    assert (a.optype.astype(str) == b.optype.astype(str)).all()
    np.testing.assert_allclose(b.duration, a.duration, atol=2e-9)  # whole nanoseconds
    np.testing.assert_allclose(b.start_ts - b.start_ts.min(), a.start_ts - a.start_ts.min(), atol=2e-9)

    expected = published(analyze(direct, per_worker=False))
    got = published(analyze(imported, per_worker=False))
    got["result"]["job_meta"]["trial_name"] = expected["result"]["job_meta"]["trial_name"]
    assert {k: got["result"]["job_meta"].pop(k) for k in sizes if k in got["result"]["job_meta"]} == {
        k: v for k, v in sizes.items() if v is not None
    }  # the sizes read are published with the job's metadata
    assert_close(expected, got)


def test_both_nccl_generations_matter(tmp_path):
    """Communication ops take their NCCL kernel, not the copy kernel their annotation launched first:
    were NCCL names not recognised, p2p and collective spans would start 12 µs early."""
    frame, meta = synthesize(name="rt", dp=2, pp=2, microbatches=4, steps=2)
    direct = Trace.from_frame(frame, meta)
    for nccl in ("ncclKernel", "ncclDevKernel"):
        out = tmp_path / nccl
        write_kineto(direct, out, nccl=nccl)
        imported, _ = import_kineto(out)
        comm = ~imported.ops.optype.isin(["forward-compute", "backward-compute", "optimizer", "gc"])
        assert comm.any()
        a = direct.ops.sort_values(["step", "dp_rank", "stage", "optype", "seq_id"]).reset_index(drop=True)
        b = imported.ops.sort_values(["step", "dp_rank", "stage", "optype", "seq_id"]).reset_index(drop=True)
        np.testing.assert_allclose(b.duration, a.duration, atol=2e-9)
