"""Analyses on a compiled DAG: the standard what-if analysis, custom what-ifs, critical paths.

* :mod:`~graphwia.analyses.standard`: :func:`analyze`, SPEC §5 (S, attribution, M_S, M_W);
* :mod:`~graphwia.analyses.whatif`: user scenarios (:func:`run_whatif`);
* :mod:`~graphwia.analyses.critical_path`: the chain of ops that sets each step's time.
* :mod:`~graphwia.analyses.causes`: why a job straggles, the causes ranked by the share each explains.

Analyses return typed results; they neither print nor write files.
"""

from graphwia.analyses.standard import Analysis, analyze
from graphwia.analyses.whatif import ScenarioError, load_scenarios, run_whatif

__all__ = ["Analysis", "ScenarioError", "analyze", "load_scenarios", "run_whatif"]
