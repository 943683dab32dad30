"""Families of weight scenarios, the unit :class:`~graphwia.engine.evaluate.CompiledDag` evaluates.

A family is ``n_scenarios`` columns of (weight, launch delay) per op instance
(SPEC §4). Two forms:

* :class:`Dense`: the columns themselves, arrays of shape (n_ops, n_scenarios);
* :class:`Swap`: scenario ``k`` gives the ops of group ``first + k`` their
  ``chosen`` weights and keeps ``weight`` elsewhere. Attribution (SPEC §5.4,
  §5.5) is this form, and the compiled kernel evaluates it without ever
  building the (n_ops, n_scenarios) matrices.

Both can be cut into parts (:meth:`part`) that evaluate to the matching columns
of the whole, which is how a family is spread over processes or a cluster.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = ["Dense", "Divisible", "Family", "Swap", "parts"]


@dataclass(frozen=True)
class Dense:
    """Scenarios given column by column: ``weight`` (n_ops, n), ``delay`` the same shape or None (no delays)."""

    weight: np.ndarray
    delay: np.ndarray | None = None

    def __post_init__(self):
        if self.delay is not None and self.delay.shape != self.weight.shape:
            raise ValueError(f"weight {self.weight.shape} and delay {self.delay.shape} must have the same shape")

    @property
    def n_scenarios(self) -> int:
        return self.weight.shape[1]

    def columns(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(weight, delay) of scenarios lo … hi−1, each (n_ops, hi − lo)."""
        return self.weight[:, lo:hi], None if self.delay is None else self.delay[:, lo:hi]

    def part(self, lo: int, hi: int) -> Dense:
        """Scenarios lo … hi−1 as a family of their own."""
        weight, delay = self.columns(lo, hi)
        return Dense(np.ascontiguousarray(weight), None if delay is None else np.ascontiguousarray(delay))


@dataclass(frozen=True)
class Swap:
    """Scenario ``k`` gives the ops with ``group == first + k`` their chosen weights.

    ``weight`` / ``delay`` (n_ops,): every op's weight and launch delay outside
    the scenario's group (``delay`` None: no launch delays). ``chosen_weight`` /
    ``chosen_delay``: those of the group's ops (None: unchanged). ``group``
    (n_ops,) int: each op's group, −1 for none.
    """

    weight: np.ndarray
    group: np.ndarray
    n_scenarios: int
    chosen_weight: np.ndarray | None = None
    delay: np.ndarray | None = None
    chosen_delay: np.ndarray | None = None
    first: int = 0

    def __post_init__(self):
        if self.chosen_delay is not None and self.delay is None:
            raise ValueError("chosen_delay needs delay (the launch delays outside the group)")

    @property
    def n_groups(self) -> int:
        """Groups the ops fall into (of the whole family, also when this is a part of it)."""
        return int(self.group.max()) + 1 if len(self.group) else 0

    @property
    def chosen_weights(self) -> np.ndarray:
        return self.weight if self.chosen_weight is None else self.chosen_weight

    @property
    def chosen_delays(self) -> np.ndarray | None:
        return self.delay if self.chosen_delay is None else self.chosen_delay

    def columns(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(weight, delay) of scenarios lo … hi−1, each (n_ops, hi − lo), built from the vectors."""
        chosen = self.group[:, None] == self.first + np.arange(lo, hi)[None, :]
        weight = np.where(chosen, self.chosen_weights[:, None], self.weight[:, None])
        if self.delay is None:
            return weight, None
        chosen_delays = self.chosen_delays
        assert chosen_delays is not None  # the delays are set, so the chosen ones are too
        return weight, np.where(chosen, chosen_delays[:, None], self.delay[:, None])

    def part(self, lo: int, hi: int) -> Swap:
        """Scenarios lo … hi−1 as a family of their own (the same vectors)."""
        return dataclasses.replace(self, first=self.first + lo, n_scenarios=hi - lo)


Family = Dense | Swap


class Divisible(Protocol):
    """Scenarios that come in parts, each a :data:`Family`: what
    :class:`~graphwia.engine.distributed.ClusterEvaluator` splits over its workers.

    A family itself is one; so is a batch that builds its families on demand
    (:class:`graphwia.analyses.whatif.WhatIfBatch`).
    """

    @property
    def n_scenarios(self) -> int:
        """Scenarios in all."""
        ...

    def part(self, lo: int, hi: int) -> Family:
        """Scenarios lo … hi−1 as a family."""
        ...


def parts(n_scenarios: int, n_parts: int) -> list[tuple[int, int]]:
    """``n_parts`` (or fewer) contiguous (lo, hi) ranges of near-equal size covering 0 … n_scenarios−1."""
    n_parts = max(1, min(n_parts, n_scenarios))
    cuts = np.linspace(0, n_scenarios, n_parts + 1).round().astype(int)
    return [(int(lo), int(hi)) for lo, hi in zip(cuts[:-1], cuts[1:]) if hi > lo]
