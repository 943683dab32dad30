"""The Python API on the embedded example: load, analyse, look at the numbers, write results.

Run: .venv/bin/python examples/analyze_api.py
"""

from pathlib import Path

import graphwia

HERE = Path(__file__).parent

trace = graphwia.load_trace(HERE / "data" / "trace-demo.parquet", HERE / "data" / "meta-demo.yaml")
analysis = graphwia.analyze(trace)

print(f"S = {analysis.slowdown:.3f}, launch slowdown = {analysis.launch_slowdown:.3f}")
print(f"M_S = {analysis.Ms:.2f}, M_W = {analysis.Mw:.2f}")

# One row per worker: S of its DP rank, of its stage, the min of both (M_W's score) and its exact S_w.
print(analysis.workers.sort_values("S_worker", ascending=False).head(3).to_string(index=False))

# The explicit DAG: node and edge tables, and a networkx view of one step of one worker.
dag = analysis.dag
print(f"{dag.n_ops} op instances, {dag.n_nodes} nodes, {len(dag.edges)} edges")
print(dag.edges.to_pandas()["kind"].value_counts().to_string())

# Evaluate your own weights: every backward compute 10% faster, no launch delays.
faster = analysis.weights.weight.copy()
faster[(dag.ops["optype"] == "backward-compute").to_numpy()] *= 0.9
sim = analysis.compiled.evaluate(faster, 0 * faster)
print(
    f"mean step time with 10% faster backward: {sim.step_time.mean():.3f} s "
    f"(no-delay: {analysis.simulations['nodelay'].step_time.mean():.3f} s)"
)

paths = graphwia.write_results(analysis, HERE.parent / "out" / "api")
print("wrote", ", ".join(str(p) for p in paths.values()))
