"""Step selections like ``12 20-23``: parse them and resolve them against a trace.

A single number must be a step of the trace; a range selects the steps of the
trace inside it (traces often sample sparse steps). Selecting nothing is an
error that lists the steps present.
"""

from __future__ import annotations

import re
from typing import Iterable

import numpy as np

from graphwia.errors import UsageError

_PART = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_step_spec(values: str | Iterable[str]) -> list[tuple[int, int]]:
    """``"12 20-23"`` or ``["12", "20-23,30"]`` → ``[(12, 12), (20, 23), (30, 30)]``."""
    if isinstance(values, str):
        values = [values]
    spans = []
    for value in values:
        for part in filter(None, re.split(r"[,\s]+", str(value))):
            match = _PART.match(part)
            if not match:
                raise UsageError(f"--steps: {part!r} is not a step number or a range like 20-23")
            low, high = int(match.group(1)), int(match.group(2) or match.group(1))
            if high < low:
                raise UsageError(f"--steps: range {part!r} is empty")
            spans.append((low, high))
    return spans


def resolve_steps(present: np.ndarray, spans: list[tuple[int, int]], source: str = "trace") -> list[int]:
    """The steps of ``present`` that ``spans`` selects (see module docstring)."""
    present = np.asarray(present)
    chosen: set[int] = set()
    for low, high in spans:
        inside = present[(present >= low) & (present <= high)]
        if low == high and not len(inside):
            raise UsageError(f"{source}: step {low} is not in the trace; steps present: {format_ranges(present)}")
        chosen.update(int(s) for s in inside)
    if not chosen:
        raise UsageError(f"{source}: --steps selects no step; steps present: {format_ranges(present)}")
    return sorted(chosen)


def checked_steps(steps: Iterable[int], present: np.ndarray, source: str, where: str = "in the trace") -> np.ndarray:
    """``steps`` sorted and unique, all of them among ``present``; else a UsageError listing those present."""
    wanted = np.unique(np.asarray(list(steps), dtype=np.int64))
    missing = np.setdiff1d(wanted, present)
    if len(wanted) == 0 or len(missing):
        what = "no steps were selected" if len(wanted) == 0 else f"step(s) {format_ranges(missing)} are not {where}"
        raise UsageError(f"{source}: {what}; steps present: {format_ranges(present)}")
    return wanted


def format_ranges(values) -> str:
    """Compact ``1-4, 7, 9-10`` form of sorted integers."""
    values = [int(v) for v in values]
    parts, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(parts)
