"""Which events are which op: graphwia's naming convention and user mapping files.

The convention (what :mod:`graphwia.record` emits): a CPU range (``record_function``, category
``user_annotation`` or ``cpu_op``) named by an optype of SPEC §1, optionally followed by
space-separated ``mb=<n>`` and ``chunk=<c>``: ``forward-compute mb=3``, ``backward-recv mb=2
chunk=1``, ``grads-reduce-scatter``, ``optimizer``.

A mapping file (YAML) handles traces instrumented otherwise: ordered rules, the first whose
regular expression matches an event's *whole* name (and whose ``category`` expression, if any,
its category) gives the optype; named groups ``mb`` and ``chunk`` give the microbatch and the
model chunk::

    rules:
      - match: 'send-forward mb=(?P<mb>\\d+)'
        optype: forward-send
      - match: 'dp-allreduce'
        optype: grads-reduce-scatter
      - match: 'optimizer-step'
        optype: optimizer
        category: user_annotation

Without ``category`` a rule looks at CPU ranges only (``user_annotation``, ``cpu_op``,
``python_function``), so the GPU copy of an annotation is not taken for a second op. Rules are
tried first; names they do not match still follow the convention.

``mb`` is read for the optypes that have microbatches (forward/backward compute and p2p ops): a
rule giving one to another optype is refused when the file is read; a group that captures
anything but a number is an error naming the file, the rule and the event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphwia.errors import TraceError, UsageError
from graphwia.optypes import ALL_OPTYPES, COMPUTE_STREAM, OPTYPE_CODE, P2P_OPTYPES
from graphwia.trace.kineto.events import CATEGORIES, CPU_RANGE_CATS, Events

__all__ = [
    "MB_OPTYPES",
    "Classified",
    "OpMapping",
    "Rule",
    "classify",
    "parse_convention",
    "profiler_steps",
    "read_mapping",
]

#: Optypes that carry a microbatch (``mb``).
MB_OPTYPES = COMPUTE_STREAM + P2P_OPTYPES
#: Largest mb or chunk number read (they are int32 columns).
_MAX_NUMBER = 2**31 - 1
_CONVENTION = re.compile(r"(?P<optype>[a-z-]+)(?: mb=(?P<mb>\d+))?(?: chunk=(?P<chunk>\d+))?")
_CONVENTION_CATS = ("user_annotation", "cpu_op")
_PROFILER_STEP = re.compile(r"ProfilerStep#(\d+)")
_RULE_KEYS = {"match", "optype", "category"}


@dataclass(frozen=True)
class Rule:
    """One mapping rule: ``pattern`` (whole name) and ``category`` (whole category, None: CPU ranges) → optype;
    ``number`` is its place in the file (from 1)."""

    pattern: re.Pattern
    optype: str
    category: re.Pattern | None = None
    number: int = 0

    def categories(self) -> list[int]:
        """Category codes this rule looks at."""
        if self.category is None:
            return list(CPU_RANGE_CATS)
        return [code for code, name in enumerate(CATEGORIES) if self.category.fullmatch(name)]


@dataclass(frozen=True)
class OpMapping:
    """Ordered rules read from a mapping file (see module docstring)."""

    rules: tuple[Rule, ...]
    source: str = "<mapping>"


def read_mapping(path: str | Path) -> OpMapping:
    """Read and check a mapping file; a UsageError names the file and the rule at fault."""
    from graphwia.utils.io import read_yaml

    path = Path(path)
    raw = read_yaml(path, UsageError, "mapping")
    rules = raw.get("rules") if isinstance(raw, dict) else raw
    if not isinstance(rules, list) or not rules:
        raise UsageError(f"{path}: a mapping file holds 'rules:', a list of {{match, optype[, category]}}")
    return OpMapping(tuple(_rule(path, number, rule) for number, rule in enumerate(rules, start=1)), str(path))


def _rule(path: Path, number: int, rule) -> Rule:
    where = f"{path}: rule {number}"
    if not isinstance(rule, dict) or not {"match", "optype"} <= set(rule):
        raise UsageError(f"{where}: expected a mapping with 'match' and 'optype', got {rule!r}")
    unknown = set(rule) - _RULE_KEYS
    if unknown:
        raise UsageError(
            f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} (a rule has match, optype and category)"
        )
    if rule["optype"] not in OPTYPE_CODE:
        raise UsageError(f"{where}: unknown optype {rule['optype']!r}; expected one of {', '.join(ALL_OPTYPES)}")
    pattern = _compile(where, "match", rule["match"])
    groups = set(pattern.groupindex) - {"mb", "chunk"}
    if groups:
        raise UsageError(
            f"{where}: named group(s) {', '.join(sorted(groups))} in {rule['match']!r}; "
            f"only (?P<mb>...) and (?P<chunk>...) are read"
        )
    if "mb" in pattern.groupindex and rule["optype"] not in MB_OPTYPES:
        raise UsageError(
            f"{where}: (?P<mb>...) in {rule['match']!r} gives a microbatch to {rule['optype']}, which has none "
            f"(only {', '.join(MB_OPTYPES)} ops do)"
        )
    category = _compile(where, "category", rule["category"]) if rule.get("category") is not None else None
    return Rule(pattern=pattern, optype=rule["optype"], category=category, number=number)


def _compile(where: str, key: str, text) -> re.Pattern:
    if not isinstance(text, str):
        raise UsageError(f"{where}: {key} must be a regular expression (text), got {text!r}")
    try:
        return re.compile(text)
    except re.error as exc:
        raise UsageError(f"{where}: invalid regular expression {text!r} in {key}: {exc}") from None


def parse_convention(name: str) -> tuple[str, int, int] | None:
    """``(optype, mb, chunk)`` (−1: absent) of a name that follows the convention, else None.

    A ValueError says so when ``mb`` or ``chunk`` is too large to be read (at least 2^31)."""
    match = _CONVENTION.fullmatch(name)
    if match is None or match["optype"] not in OPTYPE_CODE:
        return None
    return match["optype"], _group(match, "mb"), _group(match, "chunk")


def _group(match: re.Match, key: str) -> int:
    """The number named group ``key`` captured (−1: none, or empty); ValueError when it is no number
    below 2^31."""
    value = match.groupdict().get(key)
    if value in (None, ""):
        return -1
    if not value.isascii() or not value.isdigit() or int(value) > _MAX_NUMBER:
        raise ValueError(f"{key} {value!r} is not a number below 2^31")
    return int(value)


@dataclass
class Classified:
    """Events recognised as ops: index into the Events table, optype code, mb, chunk (−1: none);
    ``by_rule`` counts the ops each source gave (convention, mapping)."""

    index: np.ndarray
    optype: np.ndarray
    mb: np.ndarray
    chunk: np.ndarray
    by_rule: dict[str, int]


def classify(events: Events, mapping: OpMapping | None) -> Classified:
    """The events that are ops, by mapping rules first, then the convention.

    Work is per distinct (name, category) pair, then spread to the events with numpy.
    """
    n_cats = len(CATEGORIES)
    pair = events.name.astype(np.int64) * n_cats + events.cat
    present = np.zeros(len(events.names) * n_cats, dtype=bool)
    present[pair] = True
    pairs = np.flatnonzero(present)  # the distinct pairs, found without sorting the events
    slot = np.zeros(len(present), dtype=np.int64)
    slot[pairs] = np.arange(len(pairs))
    inverse = slot[pair]
    optype = np.full(len(pairs), -1, dtype=np.int16)
    mb = np.full(len(pairs), -1, dtype=np.int32)
    chunk = np.full(len(pairs), -1, dtype=np.int32)
    source = np.zeros(len(pairs), dtype=np.int8)  # 1 rule, 2 convention
    convention_cats = {CATEGORIES.index(c) for c in _CONVENTION_CATS}
    rule_cats = [set(rule.categories()) for rule in mapping.rules] if mapping else []
    for p, key in enumerate(pairs.tolist()):
        name, cat = events.names[key // n_cats], key % n_cats
        for rule, cats in zip(mapping.rules if mapping else (), rule_cats):
            if cat in cats:
                match = rule.pattern.fullmatch(name)
                if match is not None:
                    try:
                        numbers = _group(match, "mb"), _group(match, "chunk")
                    except ValueError as exc:
                        assert mapping is not None  # a rule matched
                        raise UsageError(
                            f"{mapping.source}: rule {rule.number} ({rule.pattern.pattern!r}) matches the event "
                            f"{name!r} of {events.path}, but its {exc}"
                        ) from None
                    optype[p], mb[p], chunk[p], source[p] = OPTYPE_CODE[rule.optype], *numbers, 1
                    break
        else:
            try:
                parsed = parse_convention(name) if cat in convention_cats else None
            except ValueError as exc:
                raise TraceError(f"{events.path}: the event {name!r} names an op, but its {exc}") from None
            if parsed is not None:
                optype[p], mb[p], chunk[p], source[p] = OPTYPE_CODE[parsed[0]], parsed[1], parsed[2], 2
    hit = optype[inverse] >= 0
    index = np.flatnonzero(hit)
    chosen = inverse[index]
    return Classified(
        index=index,
        optype=optype[chosen].astype(np.int8),
        mb=mb[chosen],
        chunk=chunk[chosen],
        by_rule={"mapping": int((source[chosen] == 1).sum()), "convention": int((source[chosen] == 2).sum())},
    )


def profiler_steps(events: Events) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``ProfilerStep#N`` ranges: (N, start, end), sorted by start."""
    numbers = {code: int(m.group(1)) for code, name in enumerate(events.names) if (m := _PROFILER_STEP.fullmatch(name))}
    if not numbers:
        return (np.zeros(0, np.int64),) * 3
    codes = np.array(list(numbers), dtype=np.int64)
    rows = np.flatnonzero(np.isin(events.name, codes) & np.isin(events.cat, list(CPU_RANGE_CATS)))
    lookup = dict(numbers)
    step = np.array([lookup[int(c)] for c in events.name[rows]], dtype=np.int64)
    order = np.argsort(events.start[rows], kind="stable")
    rows = rows[order]
    return step[order], events.start[rows], events.end[rows]
