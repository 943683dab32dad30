"""One job's scenario families spread over a dask.distributed cluster or local processes.

:class:`ClusterEvaluator` evaluates a family the way
:meth:`CompiledDag.evaluate_family <graphwia.engine.evaluate.CompiledDag.evaluate_family>`
does, but cut into parts (:meth:`~graphwia.engine.scenarios.Swap.part`, or that
of any :class:`~graphwia.engine.scenarios.Divisible`), one task per part. The
compiled DAG (without its trace) and each family's vectors are sent once to
every worker; a task returns the step times and spans of its columns, which
are put back in order. Every kernel gives the same numbers for a column
whatever batch it is in, so the result equals a local run's, number for number.

:func:`graphwia.utils.cluster.connect` reaches the scheduler; dask is an
optional extra (``graphwia[fleet]``), imported only when a cluster is used.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import numpy as np

from graphwia.engine.scenarios import Divisible, parts
from graphwia.errors import ArgumentError, UsageError
from graphwia.utils.cluster import INSTALL_HINT, connect
from graphwia.utils.system import usable_cpus

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client, LocalCluster

    from graphwia.engine.evaluate import CompiledDag, Simulation

__all__ = ["ClusterEvaluator", "PARTS_PER_WORKER"]

#: Tasks per worker and family: enough for an even spread when parts take unequal time.
PARTS_PER_WORKER = 2


class ClusterEvaluator:
    """Evaluates scenario families on a dask cluster: an existing one, or local worker processes.

    Use as a context manager: ``with ClusterEvaluator(scheduler=…) as cluster:``
    (or ``workers=N`` to start N local processes, stopped on exit), then
    :meth:`evaluate`. Workers of an existing cluster must be able to import
    graphwia; they need no access to the trace.
    """

    def __init__(self, *, scheduler: str | None = None, workers: int | None = None):
        if (scheduler is None) == (workers is None):
            raise UsageError("give either a scheduler address or a number of local workers")
        if workers is not None and workers < 1:
            raise ArgumentError("workers", workers, "local workers must be at least 1")
        self.scheduler, self.workers = scheduler, workers
        self._client: Client | None = None
        self._cluster: LocalCluster | None = None
        self._shipped: tuple[int, object] | None = None  # (id of the CompiledDag, its future)

    def __enter__(self) -> ClusterEvaluator:
        if self.scheduler is not None:
            self._client = connect(self.scheduler)
            return self
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise UsageError(f"local workers run on dask.distributed: {INSTALL_HINT}") from None
        self._cluster = LocalCluster(
            n_workers=self.workers, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=50
        )  # ":0": no fixed port to clash
        self._client = Client(self._cluster, set_as_default=False)
        return self

    def __exit__(self, *exc) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = self._shipped = None

    def _connected(self, what: str) -> Client:
        if self._client is None:
            raise RuntimeError(f"ClusterEvaluator.{what} outside its 'with' block")
        return self._client

    @property
    def n_workers(self) -> int:
        """Workers of the cluster now (at least 1)."""
        return max(1, len(self._connected("n_workers").scheduler_info(n_workers=-1).get("workers", {})))

    def evaluate(self, compiled: CompiledDag, family: Divisible) -> Simulation:
        """Step times and spans of every scenario of ``family`` (``start``/``end`` are not kept)."""
        from graphwia.engine.evaluate import Simulation

        client = self._connected("evaluate")
        n_workers = self.n_workers
        dag = self._ship(client, compiled)
        shared = client.scatter(family, broadcast=True, hash=False)
        threads = max(1, usable_cpus() // n_workers) if self._cluster is not None else None
        tag = uuid.uuid4().hex[:8]
        futures = [
            client.submit(
                _evaluate_part, dag, shared, lo, hi, threads, pure=False, key=f"graphwia-scenarios-{lo}-{hi}-{tag}"
            )
            for lo, hi in parts(family.n_scenarios, PARTS_PER_WORKER * n_workers)
        ]
        try:
            results = client.gather(futures)
        finally:
            client.cancel(futures + [shared])
        return Simulation(None, None, np.hstack([r[0] for r in results]), np.hstack([r[1] for r in results]))

    def _ship(self, client: Client, compiled: CompiledDag):
        """The compiled DAG on every worker (sent once per DAG)."""
        if self._shipped is None or self._shipped[0] != id(compiled):
            self._shipped = (id(compiled), client.scatter(compiled.detached(), broadcast=True, hash=False))
        return self._shipped[1]


def _evaluate_part(
    compiled: CompiledDag, family: Divisible, lo: int, hi: int, threads: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """On a worker: (step_time, span) of scenarios lo … hi−1 of ``family``."""
    if threads is not None and compiled.use_compiled("auto", hi - lo):
        import numba

        # NUMBA_NUM_THREADS is set in numba.config at import time, out of the type checker's sight.
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    sim = compiled.evaluate_family(family.part(lo, hi))
    return sim.step_time, sim.span
