"""Writers: result JSON, text summary, timelines, heatmaps, the HTML report, DAG export.

* :mod:`~graphwia.outputs.results`: the published ``result-``, ``ms-``, ``mw-`` JSON;
* :mod:`~graphwia.outputs.causes`: ``causes-<trial>.json``, the causes of the slowdown ranked;
* :mod:`~graphwia.outputs.job`: every file ``analyze`` writes for one job, as one set;
* :mod:`~graphwia.outputs.summary`: the text summary, the verdict and the wording of causes;
* :mod:`~graphwia.outputs.timeline`: Perfetto (Chrome trace-event) timelines;
* :mod:`~graphwia.outputs.heatmap`: worker heatmaps;
* :mod:`~graphwia.outputs.report`: the self-contained HTML report;
* :mod:`~graphwia.outputs.dag_export`: the DAG as GraphML, GEXF, node-link JSON, DOT or parquet;
* :mod:`~graphwia.outputs.critical_path`: critical paths as JSON, CSV, a timeline and text;
* :mod:`~graphwia.outputs.whatif`: what-if results as JSON and per-scenario timelines;
* :mod:`~graphwia.outputs.chakra`: Chakra execution traces of a scenario, for network simulators
  (:mod:`~graphwia.outputs.chakra_schema` declares the protobuf messages).
"""
