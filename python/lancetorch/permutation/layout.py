"""The permutation table's layout, as LanceDB writes it: either library reads the other's."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

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
