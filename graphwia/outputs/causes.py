"""``causes-<trial>.json``: the causes of a job's slowdown, ranked.

Schema::

    {"slowdown": S,
     "causes": [{"cause": id, "share": x, "evidence": {...}}, ...],   # found, largest share first
     "ruled_out": [{"cause": id, "evidence": {...}}, ...]}             # examined, not found

``id`` is one of :data:`graphwia.analyses.causes.CAUSES`; ``share`` is the
``rem`` of SPEC §5.6 with X = the ops that carry the cause (for ``launch``: the
share of the recorded step time above the ideal); the evidence holds the
numbers that identified or ruled out the cause, with the thresholds they were
compared with. Shares need not add up to 1.
"""

from __future__ import annotations

from pathlib import Path

from graphwia.analyses.causes import Causes
from graphwia.utils.io import write_json

__all__ = ["causes_dict", "causes_path", "write_causes"]


def causes_dict(causes: Causes) -> dict:
    """The ``causes-<trial>.json`` content."""
    return {
        "slowdown": causes.slowdown,
        "causes": [{"cause": c.cause, "share": c.share, "evidence": c.evidence} for c in causes.ranked],
        "ruled_out": [{"cause": c.cause, "evidence": c.evidence} for c in causes.ruled_out],
    }


def causes_path(out_dir: str | Path, trial: str) -> Path:
    """Where :func:`write_causes` puts the file of ``trial``."""
    return Path(out_dir) / f"causes-{trial}.json"


def write_causes(path: str | Path, causes: Causes) -> Path:
    """Write :func:`causes_dict` to ``path`` as strict JSON, atomically."""
    return write_json(path, causes_dict(causes))
