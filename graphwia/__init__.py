"""graphwia: what-if analysis of stragglers in large-model training traces.

The data path runs one way, one subpackage per stage::

    trace/     open_trace (op table file, or a directory of PyTorch profiler traces) → Trace
    model/     infer_schedule → build_dag → Dag (+ observed and typical weights)
    engine/    Dag.compile → CompiledDag.evaluate → Simulation (batches of weight scenarios)
    analyses/  analyze → Analysis (S, attribution, M_S, M_W, causes); run_whatif; critical paths
    outputs/   write_results, timelines, heatmaps, the HTML report, DAG and Chakra export

>>> import graphwia
>>> trace = graphwia.open_trace("trace-AR.parquet")   # meta-AR.yaml beside it
>>> analysis = graphwia.analyze(trace)
>>> analysis.slowdown                                  # S (SPEC §5.3)
>>> analysis.causes.ranked[0].cause                    # 'worker'
>>> graphwia.write_results(analysis, "out/")           # result-AR.json, ms-AR.json, mw-AR.json
"""

from graphwia.analyses.standard import Analysis, analyze
from graphwia.analyses.whatif import ScenarioError, load_scenarios, run_whatif
from graphwia.engine.evaluate import CompiledDag, Simulation
from graphwia.errors import ArgumentError, GraphwiaError, MetaError, OutputError, ScheduleError, TraceError, UsageError
from graphwia.model.dag import Dag, build_dag
from graphwia.model.graph import dag_to_networkx
from graphwia.model.schedule import Schedule, infer_schedule
from graphwia.model.weights import Weights, observed_weights, typical_weights
from graphwia.outputs.results import write_results
from graphwia.trace.files import open_trace
from graphwia.trace.meta import JobMeta, load_meta
from graphwia.trace.optable import Trace, load_trace

__version__ = "0.2.0"

__all__ = [
    "Analysis",
    "ArgumentError",
    "CompiledDag",
    "Dag",
    "GraphwiaError",
    "JobMeta",
    "MetaError",
    "OutputError",
    "Schedule",
    "ScenarioError",
    "ScheduleError",
    "Simulation",
    "Trace",
    "TraceError",
    "UsageError",
    "Weights",
    "analyze",
    "build_dag",
    "dag_to_networkx",
    "infer_schedule",
    "load_meta",
    "load_scenarios",
    "load_trace",
    "observed_weights",
    "open_trace",
    "run_whatif",
    "typical_weights",
    "write_results",
]
