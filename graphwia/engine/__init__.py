"""Longest-path evaluation of a levelled DAG for batches of weight scenarios (SPEC §4).

* :mod:`~graphwia.engine.evaluate`: :class:`CompiledDag` (levelled once), :class:`Simulation`,
  and the numpy kernel;
* :mod:`~graphwia.engine.scenarios`: scenario families, :class:`Dense` and :class:`Swap`;
* :mod:`~graphwia.engine.kernels`: the compiled (numba) kernel, imported only for large families;
* :mod:`~graphwia.engine.distributed`: families split over a dask cluster or local processes.

The engine works on the DAG's arrays; it knows nothing of traces, analyses or files.
"""

from graphwia.engine.evaluate import CompiledDag, Simulation
from graphwia.engine.scenarios import Dense, Swap

__all__ = ["CompiledDag", "Dense", "Simulation", "Swap"]
