"""graphwia: what-if analysis of stragglers in large-model training traces.

The data path runs one way::

    load_trace → build_dag → Dag.compile → CompiledDag.evaluate → analyze → writers

>>> import graphwia
>>> trace = graphwia.load_trace("trace-AR.parquet", "meta-AR.yaml")
>>> analysis = graphwia.analyze(trace)
>>> analysis.slowdown                             # S (SPEC §5.3)
>>> graphwia.write_results(analysis, "out/")      # result-AR.json, ms-AR.json, mw-AR.json
"""

from graphwia.analyses.standard import Analysis, analyze
from graphwia.model.dag import Dag, build_dag
from graphwia.errors import GraphwiaError, MetaError, OutputError, ScheduleError, TraceError, UsageError
from graphwia.engine.evaluate import CompiledDag, Simulation
from graphwia.outputs.results import write_results
from graphwia.model.schedule import Schedule, infer_schedule
from graphwia.trace.meta import JobMeta, load_meta
from graphwia.trace.optable import Trace, load_trace
from graphwia.model.weights import Weights, observed_weights, typical_weights
from graphwia.analyses.whatif import ScenarioError, load_scenarios, run_whatif

__version__ = "0.1.0"

__all__ = [
    "Analysis", "CompiledDag", "Dag", "GraphwiaError", "JobMeta", "MetaError", "OutputError", "Schedule",
    "ScheduleError", "Simulation", "Trace", "TraceError", "UsageError", "Weights", "analyze", "build_dag",
    "infer_schedule", "load_meta", "load_trace", "load_scenarios", "observed_weights", "run_whatif", "ScenarioError",
    "typical_weights", "write_results",
]
