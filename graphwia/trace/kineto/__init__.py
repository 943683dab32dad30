"""Import PyTorch profiler (Kineto) traces: one Chrome trace JSON per rank → a :class:`~graphwia.trace.optable.Trace`.

>>> from graphwia.trace.kineto import import_kineto
>>> trace, report = import_kineto("traces/", name="run1")   # rank0.json.gz, rank1.json.gz, ...
>>> print("\\n".join(report.lines()))

* :mod:`~graphwia.trace.kineto.events`: one file → numpy columns (msgspec, a chunk of events at a time);
* :mod:`~graphwia.trace.kineto.classify`: which events are ops (the naming convention, mapping files);
* :mod:`~graphwia.trace.kineto.stacks`: ops of unannotated traces from Python stacks (best effort);
* :mod:`~graphwia.trace.kineto.spans`: GPU-side spans, NCCL kernels, steps;
* :mod:`~graphwia.trace.kineto.ranks`: the per-file half, run in parallel;
* :mod:`~graphwia.trace.kineto.topology`: ranks → workers (``distributedInfo`` or a :class:`Layout`);
* :mod:`~graphwia.trace.kineto.clocks`: clock offsets between hosts;
* :mod:`~graphwia.trace.kineto.job`: assembly into the SPEC §1 op table and the :class:`ImportReport`.
"""

from graphwia.trace.inputs import is_rank_directory
from graphwia.trace.kineto.classify import OpMapping, parse_convention, read_mapping
from graphwia.trace.kineto.job import ImportReport, find_rank_files, import_kineto
from graphwia.trace.kineto.topology import DEFAULT_ORDER, Layout

__all__ = [
    "DEFAULT_ORDER",
    "ImportReport",
    "Layout",
    "OpMapping",
    "find_rank_files",
    "import_kineto",
    "is_rank_directory",
    "parse_convention",
    "read_mapping",
]
