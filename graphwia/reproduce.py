"""Reproduce the published results of the three real traces (``make reproduce``).

:func:`reproduce` analyses each trace of the data directory, writes its
outputs, and compares *every* number of the published ``result-``, ``ms-``
and ``mw-<name>.json`` with ours (SPEC §6): result values to a relative
:data:`RESULT_RTOL`, the M values (rem, add, Ms, Mw) to an absolute
:data:`M_ATOL`, the t-values of ms/mw to a relative :data:`RESULT_RTOL`.
Every published key must exist in ours; keys we add (e.g.
``blocking_decompose_by_worker``) are not compared.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from graphwia.analyses.standard import Analysis, analyze
from graphwia.errors import ArgumentError, UsageError
from graphwia.outputs.job import write_outputs
from graphwia.outputs.results import KINDS, explanation_dict, result_dict
from graphwia.trace.optable import load_trace

__all__ = [
    "Closeness",
    "Comparison",
    "M_ATOL",
    "M_KEYS",
    "Mismatch",
    "RESULT_RTOL",
    "TRACES",
    "compare",
    "compare_published",
    "m_close",
    "read_all_published",
    "read_published",
    "relative_close",
    "reproduce",
    "table_lines",
]

#: The published traces, in the order the table lists them.
TRACES = ("ST", "SE", "AR")
RESULT_RTOL = 1e-4
M_ATOL = 2e-3
#: Keys of ms-/mw- files compared absolutely (the rest are times, compared relatively).
M_KEYS = frozenset({"rem", "add", "Ms", "Mw"})

#: The published files of a trace: ``<kind>-<name>.json``.


#: close(key, expected, actual) -> bool
Closeness = Callable[[str, float, float], bool]


@dataclass
class Mismatch:
    """One published value we do not reproduce (``actual`` None: the key is missing)."""

    file: str
    key: str
    expected: object
    actual: object

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: published {self.expected!r}, ours {self.actual!r}"


@dataclass
class Comparison:
    """Our headline numbers beside the published ones, and every disagreement."""

    name: str
    ours: dict[str, float]  # S, M_S, M_W
    published: dict[str, float]
    compared: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return not self.mismatches


def relative_close(key: str, expected: float, actual: float) -> bool:
    return math.isclose(actual, expected, rel_tol=RESULT_RTOL, abs_tol=1e-12)


def m_close(key: str, expected: float, actual: float) -> bool:
    """M values absolutely, their t-values relatively (SPEC §6)."""
    if key.rsplit(".", 1)[-1] in M_KEYS:
        return abs(actual - expected) <= M_ATOL
    return relative_close(key, expected, actual)


def compare(expected, actual, close: Closeness, file: str, *, key: str = "") -> tuple[int, list[Mismatch]]:
    """Compare every leaf of ``expected`` with ``actual``; return (numbers compared, mismatches)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return 1, [Mismatch(file, key or "(top)", "an object", actual)]
        count, found = 0, []
        for name, value in expected.items():
            path = f"{key}.{name}" if key else str(name)
            if name not in actual:
                count += 1
                found.append(Mismatch(file, path, value, None))
                continue
            n, more = compare(value, actual[name], close, file, key=path)
            count += n
            found += more
        return count, found
    if _is_number(expected) and _is_number(actual):
        ok = (math.isnan(expected) and math.isnan(actual)) or close(key, float(expected), float(actual))
        return 1, [] if ok else [Mismatch(file, key, expected, actual)]
    return 1, [] if expected == actual else [Mismatch(file, key, expected, actual)]


def compare_published(analysis: Analysis, data_dir: str | Path, *, name: str | None = None) -> Comparison:
    """Compare ``analysis`` with the published files of ``name`` (default: its trial name)."""
    name = name or analysis.name
    return _compare_with(analysis, name, read_all_published(data_dir, name))


def _compare_with(analysis: Analysis, name: str, expected: dict[str, dict]) -> Comparison:
    """Compare ``analysis`` with ``expected`` (:func:`read_all_published`)."""
    comparison = Comparison(
        name=name,
        ours={"S": analysis.slowdown, "M_S": analysis.Ms, "M_W": analysis.Mw},
        published={
            "S": expected["result"]["blocking_slowdown"],
            "M_S": expected["ms"]["Ms"],
            "M_W": expected["mw"]["Mw"],
        },
    )
    ours = {
        "result": result_dict(analysis),
        "ms": explanation_dict(analysis.ms, "Ms"),
        "mw": explanation_dict(analysis.mw, "Mw"),
    }
    for kind, close in (("result", relative_close), ("ms", m_close), ("mw", m_close)):
        count, found = compare(expected[kind], ours[kind], close, f"{kind}-{name}.json")
        comparison.compared += count
        comparison.mismatches += found
    return comparison


def read_published(data_dir: str | Path, kind: str, name: str) -> dict:
    """A published ``<kind>-<name>.json``, or a one-line error naming the file."""
    path = Path(data_dir) / f"{kind}-{name}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ArgumentError(
            "data_dir", data_dir, f"{path.name} not found (the directory must hold the published results)"
        ) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read the published file ({exc})") from None


def read_all_published(data_dir: str | Path, name: str) -> dict[str, dict]:
    """Every published file of ``name``, by kind (:data:`KINDS`)."""
    return {kind: read_published(data_dir, kind, name) for kind in KINDS}


def reproduce(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    names: Iterable[str] = TRACES,
    plots: bool = True,
    progress: Callable[[str], None] | None = None,
) -> list[Comparison]:
    """Analyse each published trace, write its outputs to ``out_dir``, compare with the published files."""
    say = progress or (lambda label: None)
    data_dir = Path(data_dir)
    comparisons = []
    for name in names:
        expected = read_all_published(data_dir, name)  # before the long analysis: a missing file fails fast
        say(f"{name}: loading")
        trace = load_trace(data_dir / f"trace-{name}.parquet", data_dir / f"meta-{name}.yaml")

        def step_progress(label: str, n: str = name) -> None:
            say(f"{n}: {label}")

        analysis = analyze(trace, progress=step_progress)
        say(f"{name}: writing outputs")
        written = write_outputs(analysis, out_dir, plots=plots)
        comparison = _compare_with(analysis, name, expected)
        comparison.written = written
        comparisons.append(comparison)
    return comparisons


def table_lines(comparisons: list[Comparison], *, max_mismatches: int = 5) -> list[str]:
    """The reproduction table, the first disagreements of each trace, and a final verdict."""
    header = (
        f"{'trace':<6} {'S ours':>9} {'published':>9}  {'M_S ours':>9} {'published':>9}  "
        f"{'M_W ours':>9} {'published':>9}  {'numbers':>7}  agree"
    )
    lines = [header, "-" * len(header)]
    for c in comparisons:
        cells = "  ".join(f"{c.ours[k]:>9.4f} {c.published[k]:>9.4f}" for k in ("S", "M_S", "M_W"))
        verdict = "yes" if c.agrees else f"NO ({len(c.mismatches)} differ)"
        lines.append(f"{c.name:<6} {cells}  {c.compared:>7}  {verdict}")
    for c in comparisons:
        lines += [f"  {m}" for m in c.mismatches[:max_mismatches]]
        if len(c.mismatches) > max_mismatches:
            lines.append(f"  … and {len(c.mismatches) - max_mismatches} more in {c.name}")
    total = sum(c.compared for c in comparisons)
    bad = sum(len(c.mismatches) for c in comparisons)
    tolerance = f"(result: relative {RESULT_RTOL:g}; rem, add, M_S, M_W: absolute {M_ATOL:g})"
    lines.append(
        f"all {total} published numbers agree {tolerance}"
        if not bad
        else f"{bad} of {total} published numbers disagree {tolerance}"
    )
    return lines


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
