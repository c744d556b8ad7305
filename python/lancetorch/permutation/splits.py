"""``Permutations``: the splits of a permutation table over a base table, by name or number."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow.compute as pc

from ..table import as_lancetorch_table
from .layout import SPLIT_ID, _perm_arrow, split_names_of
from .view import Permutation


class Permutations:
    """The splits of a permutation table over a base table: ``perms["train"]``, ``perms[0]``.

    ``split_names`` lists the names the table defines ([] when none), ``split_dict`` maps
    each name to its split number.

    Parameters
    ----------
    base_table : Table
        The table read (a LanceDB table too).
    permutation_table : Table or pa.Table
        What :meth:`PermutationBuilder.execute` made (or LanceDB's, or its Arrow data).
    """

    def __init__(self, base_table: Any, permutation_table: Any) -> None:
        self.base_table = as_lancetorch_table(base_table)
        self.permutation_table = permutation_table
        self._arrow = _perm_arrow(permutation_table)
        self.split_names = split_names_of(self._arrow)
        self.split_dict = {name: i for i, name in enumerate(self.split_names)}

    def get_by_name(self, name: str) -> Permutation:
        """The split named ``name``.

        Parameters
        ----------
        name : str
            One of ``split_names``.

        Returns
        -------
        Permutation

        Raises
        ------
        ValueError
            For a name the table does not define.
        """
        index = self.split_dict.get(name)
        if index is None:
            raise ValueError(f"No split named `{name}` found; splits: {self.split_names}")
        return self.get_by_index(index)

    def get_by_index(self, index: int) -> Permutation:
        """Split number ``index``.

        Parameters
        ----------
        index : int
            The split's number.

        Returns
        -------
        Permutation

        Raises
        ------
        ValueError
            For a split with no rows.
        """
        return Permutation.from_tables(self.base_table, self._arrow, index)._copy(
            permutation_table=self.permutation_table
        )

    def __getitem__(self, split: str | int) -> Permutation:
        if isinstance(split, str):
            return self.get_by_name(split)
        if isinstance(split, (int, np.integer)) and not isinstance(split, (bool, np.bool_)):
            return self.get_by_index(int(split))
        raise TypeError(f"Invalid split name or index: {split!r}")

    def __len__(self) -> int:
        """The number of splits: the names given, or the highest split id plus one."""
        ids = self._arrow.column(SPLIT_ID) if SPLIT_ID in self._arrow.schema.names else None
        top = -1 if ids is None or not len(ids) else int(pc.max(ids).as_py())
        return max(len(self.split_names), top + 1, 1)

    def __iter__(self) -> Iterator[Permutation]:
        return (self[i] for i in range(len(self)))
