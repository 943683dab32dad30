"""Families of weight scenarios, the unit :class:`~graphwia.engine.evaluate.CompiledDag` evaluates.

A family is ``n_scenarios`` columns of (weight, launch delay) per op instance
(SPEC §4). Three forms:

* :class:`Dense`: the columns themselves, arrays of shape (n_ops, n_scenarios);
* :class:`Swap`: scenario ``k`` gives the ops of group ``first + k`` their
  ``chosen`` weights and keeps ``weight`` elsewhere. Attribution (SPEC §5.4,
  §5.5) is this form, and the compiled kernel evaluates it without ever
  building the (n_ops, n_scenarios) matrices;
* :class:`Edited`: each column is a baseline with some ops' weights or
  delays set, scaled or replaced (a what-if batch); the compiled kernel
  applies the edits itself.

Each can be cut into parts (:meth:`part`) that evaluate to the matching columns
of the whole, which is how a family is spread over processes or a cluster.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = [
    "DELAY",
    "SCALE",
    "SET",
    "VALUES",
    "WEIGHT",
    "ColumnBuffers",
    "Dense",
    "Divisible",
    "EditTable",
    "Edited",
    "Family",
    "Swap",
    "parts",
]


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


#: The arrays an edit of an :class:`Edited` column changes.
WEIGHT, DELAY = 0, 1
#: Kinds of edit: the ops take values of their own, are set to a number, are scaled by one.
VALUES, SET, SCALE = 0, 1, 2


@dataclass(frozen=True)
class EditTable:
    """An :class:`Edited` family's edits as flat arrays, the way the compiled kernel reads them.

    The edits of column ``c`` are ``column_ptr[c] … column_ptr[c+1]−1``, those of
    kind :data:`VALUES` first; edit ``e`` changes array ``array[e]`` of the ops
    ``targets[target_ptr[t] … target_ptr[t+1]−1]`` (``t = target[e]``,
    ascending op indices) by ``kind[e]`` with ``value[e]``, or to
    ``values[value_ptr[source[e]] …]`` (one per target op). ``zero_delay``
    as in :class:`Edited`.
    """

    column_ptr: np.ndarray
    array: np.ndarray
    kind: np.ndarray
    value: np.ndarray
    target: np.ndarray
    source: np.ndarray
    targets: np.ndarray
    target_ptr: np.ndarray
    values: np.ndarray
    value_ptr: np.ndarray
    zero_delay: np.ndarray


class ColumnBuffers:
    """Reusable memory for the weight and delay columns :meth:`Edited.take` builds.

    A batch is built slice by slice; writing each slice into the memory of the
    one before saves a fresh page per 4 KiB (on AR, 1,000 scenarios
    are 0.94 GB of new pages, about 0.2 s). :meth:`array` gives a C-ordered view
    of a buffer, grown when too small.
    """

    def __init__(self) -> None:
        self._flat: dict[int, np.ndarray] = {}

    def array(self, which: int, shape: tuple[int, int]) -> np.ndarray:
        """A C-ordered (rows, columns) view of buffer ``which`` (:data:`WEIGHT` or :data:`DELAY`); contents undefined."""
        size = shape[0] * shape[1]
        if which not in self._flat or len(self._flat[which]) < size:
            self._flat[which] = np.empty(size)
        return self._flat[which][:size].reshape(shape)


@dataclass(frozen=True)
class Edited:
    """Columns of weights and launch delays, each its baseline's with some ops changed.

    Column ``c`` starts from ``weight`` and ``delay`` (n_ops,) (``delay`` None:
    no launch delays), or from no launch delays at all where ``zero_delay[c]``.
    Then its edits apply, those of kind :data:`VALUES` first: edit ``e``
    changes, in column ``column[e]``, the ``array[e]`` (:data:`WEIGHT` or
    :data:`DELAY`) of the ops ``targets[target[e]]`` (ascending op indices) to
    ``values[source[e]]`` (:data:`VALUES`, one value per target op), to
    ``value[e]`` (:data:`SET`), or to themselves times ``value[e]``
    (:data:`SCALE`). The other edits of a column change disjoint sets of ops.

    The form of what-if batches (:mod:`graphwia.analyses.whatif`). A family
    of this form is small: a few numbers per column, and the ops each distinct
    selection picks. The compiled kernel applies the edits itself, one work
    item at a time (:attr:`kernel_edits`), and never builds the columns; for
    the numpy kernel they are built on demand (:meth:`columns`, :meth:`take`),
    a slice at a time. Its parts (:meth:`part`, what
    :class:`~graphwia.engine.distributed.ClusterEvaluator` splits and sends to
    its workers) take the columns in :attr:`order`.
    """

    weight: np.ndarray
    delay: np.ndarray | None
    zero_delay: np.ndarray
    targets: tuple[np.ndarray, ...]
    values: tuple[np.ndarray, ...]
    column: np.ndarray
    array: np.ndarray
    target: np.ndarray
    kind: np.ndarray
    source: np.ndarray
    value: np.ndarray

    @property
    def n_scenarios(self) -> int:
        """Columns of the batch (named as the engine's families name theirs)."""
        return len(self.zero_delay)

    @functools.cached_property
    def order(self) -> np.ndarray:
        """The columns, those with the same kinds of edit on the same ops next to each other (else in order).

        A slice of this order is built with one numpy operation per kind of
        edit on contiguous columns, several times faster than on scattered ones.
        """
        edit_key = np.stack([self.array, self.target, self.kind, self.source], axis=1)
        _, edit_id = np.unique(edit_key, axis=0, return_inverse=True)
        by_column = np.lexsort((edit_id, self.column))
        rank = np.arange(len(by_column)) - np.searchsorted(self.column[by_column], self.column[by_column])
        signature = np.full((self.n_scenarios, int(rank.max(initial=-1)) + 2), -1)  # edit ids, then zero_delay
        signature[self.column[by_column], rank] = edit_id.ravel()[by_column]
        signature[:, -1] = self.zero_delay
        _, group = np.unique(signature, axis=0, return_inverse=True)
        return np.argsort(group.ravel(), kind="stable")

    def part(self, lo: int, hi: int) -> Edited:
        """Columns ``order[lo:hi]`` as a family of their own (see :meth:`select`)."""
        return self.select(self.order[lo:hi])

    def select(self, columns: np.ndarray) -> Edited:
        """Columns ``columns`` (indices) as a family of their own, numbered 0 … in that order."""
        columns = np.asarray(columns, dtype=np.int64)
        position = np.full(self.n_scenarios, -1)
        position[columns] = np.arange(len(columns))
        kept = np.flatnonzero(position[self.column] >= 0)
        return dataclasses.replace(
            self,
            zero_delay=self.zero_delay[columns],
            column=position[self.column[kept]],
            array=self.array[kept],
            target=self.target[kept],
            kind=self.kind[kept],
            source=self.source[kept],
            value=self.value[kept],
        )

    @property
    def has_delay(self) -> bool:
        """Whether any column has a launch delay that is not 0 everywhere by construction."""
        return bool((self.delay is not None and not self.zero_delay.all()) or np.any(self.array == DELAY))

    @functools.cached_property
    def kernel_edits(self) -> EditTable:
        """The edits as flat arrays, by column, those of kind :data:`VALUES` first (what the compiled kernel reads)."""
        by_column = np.lexsort((self.kind != VALUES, self.column))
        target_ptr = np.cumsum([0] + [len(t) for t in self.targets])
        value_ptr = np.cumsum([0] + [len(v) for v in self.values])

        def joined(arrays: tuple[np.ndarray, ...], dtype) -> np.ndarray:
            return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype=dtype)

        return EditTable(
            column_ptr=np.searchsorted(self.column[by_column], np.arange(self.n_scenarios + 1)).astype(np.int64),
            array=self.array[by_column].astype(np.int64),
            kind=self.kind[by_column].astype(np.int64),
            value=self.value[by_column].astype(np.float64),
            target=self.target[by_column].astype(np.int64),
            source=self.source[by_column].astype(np.int64),
            targets=joined(self.targets, np.int64),
            target_ptr=target_ptr.astype(np.int64),
            values=joined(self.values, np.float64),
            value_ptr=value_ptr.astype(np.int64),
            zero_delay=self.zero_delay.astype(np.bool_),
        )

    def columns(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(weight, delay) of columns lo … hi−1: see :meth:`take`."""
        return self.take(np.arange(lo, hi))

    def take(self, columns: np.ndarray, *, into: ColumnBuffers | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """(weight, delay) of ``columns`` (indices), each of shape (n_ops, len(columns)).

        ``delay`` is None when every one of these columns is without launch
        delays. Edits of one kind on the same ops are one numpy operation for
        all the columns they are in. With ``into``, the arrays are views of its
        buffers (valid until its next use), not new ones.
        """
        columns = np.asarray(columns, dtype=np.int64)
        into = ColumnBuffers() if into is None else into
        position = np.full(self.n_scenarios, -1)
        position[columns] = np.arange(len(columns))
        edits = np.flatnonzero(position[self.column] >= 0)
        weight = into.array(WEIGHT, (len(self.weight), len(columns)))
        weight[:] = self.weight[:, None]
        arrays = [weight]  # indexed by WEIGHT, DELAY
        delayed = ~self.zero_delay[columns] if self.delay is not None else np.zeros(len(columns), dtype=bool)
        if delayed.any() or np.any(self.array[edits] == DELAY):
            delay = into.array(DELAY, weight.shape)
            delay[:] = 0.0
            if self.delay is not None:
                delay[:, delayed] = self.delay[:, None]
            arrays.append(delay)
        keys = np.stack(
            [
                position[self.column[edits]],
                self.source[edits],
                self.kind[edits],
                self.target[edits],
                self.array[edits],
                self.kind[edits] != VALUES,
            ]
        )
        order = np.lexsort(keys)
        keys, edits = keys[1:, order], edits[order]
        starts = np.flatnonzero(np.any(keys[:, 1:] != keys[:, :-1], axis=0)) + 1
        for group in np.split(edits, starts) if len(edits) else []:
            first, cols, rows = group[0], position[self.column[group]], self.targets[self.target[group[0]]]
            if cols[-1] - cols[0] == len(cols) - 1:  # contiguous columns: a slice, not an index array
                index = (rows, slice(cols[0], cols[-1] + 1))
            else:
                index = (rows[:, None], cols)
            array, kind = arrays[self.array[first]], self.kind[first]
            if kind == VALUES:
                array[index] = self.values[self.source[first]][:, None]
            elif kind == SET:
                array[index] = self.value[group]
            else:
                array[index] *= self.value[group]
        return weight, arrays[DELAY] if len(arrays) > DELAY else None


Family = Dense | Swap | Edited


class Divisible(Protocol):
    """Scenarios that come in parts, each a :data:`Family`: what
    :class:`~graphwia.engine.distributed.ClusterEvaluator` splits over its workers.

    Every family is one.
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
