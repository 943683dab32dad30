"""Custom what-if scenarios through the Python API.

    python examples/whatif_api.py                      # a synthetic job, generated on the fly
    python examples/whatif_api.py TRACE META           # your own trace
    python examples/whatif_api.py TRACE META --scenarios my.yaml

Runs the scenarios of ``examples/scenarios.yaml`` plus one built in Python, all
in one batched simulation, and prints each scenario's mean step time and
speedup over the baseline, then the steps where the best scenario helps most.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import graphwia
from graphwia.analyses.whatif import ScenarioSet, load_scenarios, parse_scenarios, run_whatif
from graphwia.synth.generate import synthesize

HERE = Path(__file__).resolve().parent


def synthetic_trace() -> graphwia.Trace:
    """A 4 x 4 job whose worker (dp 2, stage 1) computes 1.6x slower and whose last stage is long."""
    frame, meta = synthesize(
        dp=4, pp=4, microbatches=8, steps=4, seed=3, name="example", slow_workers=[(2, 1, 1.6)], slow_stage=(3, 1.3)
    )
    return graphwia.Trace.from_frame(frame, meta)


def with_python_scenario(scenarios: ScenarioSet) -> ScenarioSet:
    """The file's scenarios plus one written as a dict: "what if worker (2, 1) were healthy?".

    ``healthy: true`` gives its ops the typical weights of stage 1's workers, not the job-wide
    ones (``ideal: true``): stage 3 is slow in this job, and worker (2, 1) should not inherit that.
    """
    extra = {"name": "healthy-worker-2-1", "where": {"dp_rank": [2], "stage": [1]}, "healthy": True}
    raw = {"baseline": scenarios.baseline, "scenarios": [extra]}
    return ScenarioSet(
        scenarios=scenarios.scenarios + parse_scenarios(raw).scenarios,
        baseline=scenarios.baseline,
        source=scenarios.source,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", nargs="?", help="trace file (default: a synthetic job)")
    parser.add_argument("meta", nargs="?", help="metadata YAML")
    parser.add_argument("--scenarios", default=HERE / "scenarios.yaml", help="scenario YAML")
    args = parser.parse_args()

    trace = graphwia.load_trace(args.trace, args.meta) if args.trace else synthetic_trace()
    scenarios = load_scenarios(args.scenarios)
    if not args.trace:  # the Python-built scenario names a worker of the synthetic job
        scenarios = with_python_scenario(scenarios)

    result = run_whatif(trace, scenarios)
    for warning in result.warnings:
        print(f"warning: {warning}")
    print(f"{trace.meta.trial_name}: baseline {result.baseline}, mean step time {result.baseline_step_time:.4f} s")
    print(result.frame.sort_values("speedup", ascending=False).to_string(index=False, float_format="%.4f"))

    best = max(result.speedup, key=result.speedup.get)
    per_step = result.step_frame
    top = per_step[per_step["scenario"] == best].nlargest(3, "speedup")
    print(f"\nsteps where {best} helps most:")
    print(top[["step", "baseline_step_time", "step_time", "speedup"]].to_string(index=False, float_format="%.4f"))


if __name__ == "__main__":
    main()
