"""The permutation table's layout, as LanceDB writes it: either library reads the other's;
and the rows of one of its splits, read from it."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from ..table import Table

# A permutation table's columns and metadata, as LanceDB writes them: either library reads the
# other's. Row ids are Lance row ids (in a memory table, row offsets).
ROW_ID = "row_id"
SPLIT_ID = "split_id"
_NAMES_KEY = b"split_names"
# Written by lancetorch before it wrote LanceDB's layout: still read.
_OLD_ROW_OFFSET = "row_offset"
_OLD_NAMES_KEY = b"lancetorch.split_names"


def _perm_arrow(permutation_table: Any) -> pa.Table:
    """A permutation table (lancetorch's, LanceDB's, or Arrow data) as a pyarrow Table."""
    if isinstance(permutation_table, pa.Table):
        return permutation_table
    if hasattr(permutation_table, "to_arrow"):
        return permutation_table.to_arrow()
    return pa.table(permutation_table)


def split_names_of(permutation_table: Any) -> list[str]:
    """The split names stored in a permutation table's metadata ([] when it names none).

    Parameters
    ----------
    permutation_table : Table or pa.Table
        Anything with a ``schema`` (lancetorch's, LanceDB's, or Arrow data); LanceDB's
        metadata key and lancetorch's older one are both read.

    Returns
    -------
    list of str
    """
    schema = getattr(permutation_table, "schema", None)
    if not isinstance(schema, pa.Schema):
        raise TypeError(
            f"permutation_table={permutation_table!r} is {type(permutation_table).__name__}; "
            "give a permutation table (what PermutationBuilder.execute() returns, or Arrow data)"
        )
    meta = schema.metadata or {}
    raw = meta.get(_NAMES_KEY, meta.get(_OLD_NAMES_KEY))
    return [] if raw is None else list(json.loads(raw))


def _rows_of_split(base: Table, arrow: pa.Table, split: int) -> np.ndarray:
    """Row offsets in ``base`` of one split of a permutation table, in read order."""
    names = arrow.schema.names
    column = ROW_ID if ROW_ID in names else _OLD_ROW_OFFSET if _OLD_ROW_OFFSET in names else None
    if column is None:
        raise ValueError(
            f"not a permutation table: it has no '{ROW_ID}' column (columns {names}); build "
            "one with permutation_builder(table).execute()"
        )
    values = arrow.column(column)
    if not pa.types.is_integer(values.type) or values.null_count:
        raise ValueError(
            f"the permutation table's '{column}' column must hold integers without nulls, not "
            f"{values.type} with {values.null_count} nulls"
        )
    raw = values.to_numpy()
    if SPLIT_ID in names:
        raw = raw[arrow.column(SPLIT_ID).to_numpy(zero_copy_only=False) == split]
    elif split != 0:
        raw = raw[:0]  # one split only: split 0
    if column == ROW_ID:
        offsets = base._offsets_of_row_ids(raw)
    else:
        if raw.size and (raw.min() < 0 or raw.max() >= len(base)):
            bad = raw.min() if raw.min() < 0 else raw.max()
            raise ValueError(
                f"the permutation table refers to row {int(bad)} but table '{base.name}' has "
                f"{len(base)} rows; rebuild the permutation"
            )
        offsets = raw.astype(np.int64)
    _refuse_repeats(offsets, raw, column, split)
    return offsets


def _refuse_repeats(offsets: np.ndarray, raw: np.ndarray, column: str, split: int) -> None:
    """A split names each row once: a row listed twice would be read twice an epoch."""
    if offsets.size < 2:
        return
    seen = np.zeros(int(offsets.max()) + 1, dtype=bool)  # one byte a row, one pass
    seen[offsets] = True
    if int(np.count_nonzero(seen)) == offsets.size:
        return
    order = np.argsort(offsets, kind="stable")
    repeats = np.flatnonzero(offsets[order][1:] == offsets[order][:-1])
    first = order[repeats[0] + 1]
    times = int(np.count_nonzero(offsets == offsets[first]))
    raise ValueError(
        f"split {split} of the permutation table lists {column} {int(raw[first])} {times} "
        f"times ({offsets.size - int(np.count_nonzero(seen))} repeated entries in all): it "
        "would be read that many times an epoch; a permutation lists each row once, so "
        "rebuild it with permutation_builder(table)...execute()"
    )


def _split_number(split: Any, names: list[str]) -> int:
    """The number of ``split``, a split's name (one of ``names``) or its number."""
    if isinstance(split, str):
        if not names:
            raise ValueError(
                f"Cannot create a permutation on split `{split}` because no split names are "
                "defined in the permutation table; read its splits by number (0, 1, ...)"
            )
        if split not in names:
            raise ValueError(
                f"Cannot create a permutation on split `{split}` because split `{split}` is not "
                f"defined in the permutation table; its splits are {names}"
            )
        return names.index(split)
    if isinstance(split, (int, np.integer)) and not isinstance(split, (bool, np.bool_)):
        return int(split)
    raise TypeError(f"Invalid split: {split!r}; give a split name or number")
