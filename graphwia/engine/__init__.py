"""Longest-path evaluation of a levelled DAG for batches of weight scenarios (SPEC §4).

* :mod:`~graphwia.engine.evaluate`: :class:`CompiledDag` (levelled once) and :class:`Simulation`.

The engine works on the DAG's arrays; it knows nothing of traces, analyses or files.
"""

from graphwia.engine.evaluate import CompiledDag, Simulation

__all__ = ["CompiledDag", "Simulation"]
