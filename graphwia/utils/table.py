"""Column tables: the array-backed op, node and worker tables of graphwia.

A :class:`Table` is a mapping of column name → 1-D numpy array, all of one
length. The analysis path works on these arrays directly; :meth:`Table.to_pandas`
gives the same table as a pandas DataFrame for inspection and for the modules
that read it as one. pandas is imported only then: it costs more to import
(~0.3 s) than a whole analysis of a small trace takes.

A categorical column (e.g. ``optype``) holds integer codes into a tuple of
category names given at construction; pandas sees it as a ``Categorical``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

__all__ = ["Table"]


class Table:
    """Equal-length numpy columns, some of them categorical codes.

    Parameters
    ----------
    columns:
        Column name → 1-D array; every array has the same length.
    categories:
        Column name → category names, for the columns holding codes into them.
    """

    def __init__(self, columns: Mapping[str, np.ndarray], categories: Mapping[str, Sequence[str]] | None = None):
        self._columns = {name: np.asarray(values) for name, values in columns.items()}
        lengths = {len(values) for values in self._columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of unequal lengths {sorted(lengths)}")
        self._length = lengths.pop() if lengths else 0
        self.categories = {name: tuple(names) for name, names in (categories or {}).items() if name in self._columns}

    def __getitem__(self, name: str) -> np.ndarray:
        return self._columns[name]

    def __contains__(self, name: object) -> bool:
        return name in self._columns

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return self._length

    def __repr__(self) -> str:
        return f"Table({self._length} rows: {', '.join(self._columns)})"

    @property
    def names(self) -> list[str]:
        """Column names, in order."""
        return list(self._columns)

    def labels(self, name: str) -> np.ndarray:
        """A categorical column as category names (an object array; None for a code < 0)."""
        names = np.array(list(self.categories[name]) + [None], dtype=object)
        return names[self._columns[name]]  # code −1 picks the trailing None

    def label(self, name: str, row: int):
        """One cell, with a categorical column's code turned into its name (None for a code < 0)."""
        value = self._columns[name][int(row)]
        if name not in self.categories:
            return value
        return self.categories[name][int(value)] if value >= 0 else None

    def take(self, rows: np.ndarray) -> Table:
        """The rows at ``rows`` (integer positions or a boolean mask), in that order."""
        return Table({name: values[rows] for name, values in self._columns.items()}, self.categories)

    def with_columns(
        self, columns: Mapping[str, np.ndarray], *, categories: Mapping[str, Sequence[str]] | None = None
    ) -> Table:
        """A new table with ``columns`` added (or replaced)."""
        return Table({**self._columns, **columns}, {**self.categories, **(categories or {})})

    def to_pandas(self):
        """The table as a pandas DataFrame; categorical columns become ``pandas.Categorical``."""
        import pandas as pd

        return pd.DataFrame(
            {
                name: pd.Categorical.from_codes(values, categories=list(self.categories[name]))
                if name in self.categories
                else values
                for name, values in self._columns.items()
            }
        )
