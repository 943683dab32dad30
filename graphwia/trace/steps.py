"""Step selections like ``12 20-23``: parse them and resolve them against a trace.

A single number must be a step of the trace; a range selects the steps of the
trace inside it (traces often sample sparse steps). Selecting nothing is an
error that lists the steps present.

In the Python API, ``steps`` is one step number or an iterable of them
(:data:`Steps`); :func:`checked_steps` is the one place that reads it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from graphwia.errors import ArgumentError, UsageError

__all__ = ["Steps", "checked_steps", "format_ranges", "parse_step_spec", "resolve_steps", "step_numbers"]

#: Steps as the API takes them: one step number (``23``) or an iterable of them (``[23, 25]``).
Steps = int | Iterable[int]

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
                raise ArgumentError("steps", repr(part), "not a step number or a range like 20-23")
            low, high = int(match.group(1)), int(match.group(2) or match.group(1))
            if high < low:
                raise ArgumentError("steps", repr(part), "the range is empty")
            spans.append((low, high))
    return spans


def resolve_steps(present: np.ndarray, spans: list[tuple[int, int]], *, source: str = "trace") -> list[int]:
    """The steps of ``present`` that ``spans`` selects (see module docstring)."""
    present = np.asarray(present)
    chosen: set[int] = set()
    for low, high in spans:
        inside = present[(present >= low) & (present <= high)]
        if low == high and not len(inside):
            raise UsageError(f"{source}: step {low} is not in the trace; steps present: {format_ranges(present)}")
        chosen.update(int(s) for s in inside)
    if not chosen:
        raise ArgumentError("steps", None, f"selects no step; steps present: {format_ranges(present)}", source=source)
    return sorted(chosen)


def checked_steps(steps: Steps, present: np.ndarray, source: str, *, where: str = "in the trace") -> np.ndarray:
    """``steps`` sorted and unique, all of them among ``present``; else a UsageError listing those present."""
    wanted = np.unique(step_numbers(steps, source=source))
    missing = np.setdiff1d(wanted, present)
    if len(wanted) == 0 or len(missing):
        what = "no steps were selected" if len(wanted) == 0 else f"step(s) {format_ranges(missing)} are not {where}"
        raise UsageError(f"{source}: {what}; steps present: {format_ranges(present)}")
    return wanted


def step_numbers(steps: Steps, *, source: str = "steps") -> np.ndarray:
    """``steps`` (one step number or an iterable of them) as an int64 array, in the given order.

    Anything else (a string, a float, a bool) is a UsageError: a string's
    characters or a float's truncation would silently select other steps.
    """
    values = [steps] if isinstance(steps, (int, np.integer)) else steps
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise UsageError(f"{source}: steps must be a step number or a list of them, got {steps!r}")
    values = list(values)
    bad = [v for v in values if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer))]
    if bad:
        raise UsageError(f"{source}: steps must be step numbers (integers), got {bad[0]!r}")
    return np.asarray(values, dtype=np.int64)


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
