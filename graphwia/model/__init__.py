"""The dependency model of SPEC §2–3: schedule, explicit DAG, weights.

* :mod:`~graphwia.model.schedule`: :func:`infer_schedule`, the per-stage template and groups;
* :mod:`~graphwia.model.dag`: :func:`build_dag`, the array-backed DAG of op instances;
* :mod:`~graphwia.model.observed`: the weights as recorded (durations, transfer times, launch delays);
* :mod:`~graphwia.model.weights`: typical and ideal weights (SPEC §5.3), and :func:`weighted_dag`;
* :mod:`~graphwia.model.graph`: the DAG as node and edge tables and as a networkx graph.
"""

from graphwia.model.dag import Dag, build_dag
from graphwia.model.schedule import Schedule, infer_schedule
from graphwia.model.weights import Weights, observed_weights, typical_weights

__all__ = ["Dag", "Schedule", "Weights", "build_dag", "infer_schedule", "observed_weights", "typical_weights"]
