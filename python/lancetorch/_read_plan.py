"""What a Loader reads of its data: the table, rows and columns of a Table or Permutation
(``_plan_of``), which columns the Rust threads convert (``_dense``) and which go to Python
threads, a fixed-width row's bytes, and fixed token packing (``_fixed_packing``)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from .decode import Tokens
from .permutation import Permutation
from .table import Table, as_lancetorch_table


def _dense(kind: pa.DataType) -> bool:
    """Whether the Rust threads convert a column of this type (numbers, bools, fixed-size
    lists of numbers); the others are made into values by ``to_batch`` on Python threads."""
    if isinstance(kind, pa.ExtensionType):
        return False
    if pa.types.is_fixed_size_list(kind):
        return _dense(kind.value_type)
    return not (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_string_view(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_binary_view(kind)
        or pa.types.is_list(kind)
        or pa.types.is_large_list(kind)
        or pa.types.is_list_view(kind)
        or pa.types.is_large_list_view(kind)
        or pa.types.is_struct(kind)
        or pa.types.is_map(kind)
    )


def _fixed_width(kind: pa.DataType) -> int | None:
    """Bytes a value of ``kind`` takes as Arrow holds it (a bool counted as one byte), or
    None for a variable-width type."""
    if pa.types.is_fixed_size_list(kind):
        inner = _fixed_width(kind.value_type)
        return None if inner is None else inner * kind.list_size
    try:
        return max(kind.bit_width // 8, 1)
    except ValueError:  # variable width
        return None


class _Plan(NamedTuple):
    """What a Loader reads of its ``data``: the table, the rows (an offset, or a view's row
    array), the rows' count where the view knows it, the columns and their output names, and
    how batches are made (decode specs, per column, a view's transform)."""

    table: Table
    offset: int
    length: int | None
    rows: np.ndarray | None
    columns: list[str] | None
    renames: dict[str, str]
    decode: dict[str, Any] | None
    per_column: bool
    transform: Any


def _plan_of(
    data: Any, decode: dict | None, per_column: bool, features: Any, dtype: Any, null_value: Any
) -> _Plan:
    """The :class:`_Plan` of a Table or Permutation (a Permutation's ``read_plan()``: its
    decode specs and transform, checked against the Loader's arguments)."""
    if isinstance(data, Permutation):
        plan = data.read_plan()
        # Positions map to table rows by an offset (an identity permutation's window) or
        # through the permutation's own row array (a view: nothing is copied here).
        offset, n, rows = plan.offset, plan.length, plan.rows
        columns, renames = plan.columns, plan.renames
        if plan.row_ids:
            raise ValueError(
                "the Loader does not read _rowid; leave it out of the permutation's "
                "select_columns, or read row ids through the permutation itself "
                "(a DataLoader over it)"
            )
        if plan.decode is not None:  # the view's torch_dict format says how to decode
            if decode is not None and dict(decode) != plan.decode:
                raise ValueError(
                    f"decode={decode!r} differs from the permutation's torch_dict decode "
                    f"{plan.decode!r}; give the specs in one place"
                )
            decode, per_column = plan.decode, True
        transform = plan.transform
        conflicting = [
            name
            for name, given in (
                ("decode", bool(decode)),
                ("features", features is not None),
                ("per_column", per_column),
                ("dtype", dtype is not None),
                ("null_value", null_value is not None),
            )
            if given
        ]
        if transform is not None and conflicting:
            raise ValueError(
                "the permutation has a with_transform function, which makes each batch "
                f"from its Arrow rows; {conflicting[0]}= says how the Loader would make "
                "them instead: do that in the transform, or drop with_transform"
            )
        return _Plan(plan.table, offset, n, rows, columns, renames, decode, per_column, transform)
    if isinstance(data, Table) or type(data).__module__.startswith("lancedb"):
        # The version the table reads now, for every epoch of this loader (its length
        # and order are that version's): make a new Loader to read a newer one.
        table = as_lancetorch_table(data)._pinned_view()
        return _Plan(table, 0, None, None, None, {}, decode, per_column, None)
    raise TypeError(f"Loader reads a lancetorch Table or Permutation, not {type(data).__name__}")


def _fixed_packing(decode: dict, keys: list[str], features: bool) -> tuple[str, Tokens] | None:
    """The column and spec of a ``Tokens(pack=True, blocks=B)`` spec, which makes batches of
    tokens, not rows: the only column read then."""
    fixed = [(c, s) for c, s in decode.items() if isinstance(s, Tokens) and s.blocks is not None]
    if not fixed:
        return None
    column = fixed[0][0]
    others = [k for k in keys if k != column]
    if others or features:
        raise ValueError(
            f"decode['{column}'] packs tokens into fixed (blocks, max_length) batches, which "
            f"hold tokens, not rows, so no other column ('{(others or ['features'])[0]}') can "
            f"go with them: read only '{column}' (a Permutation's select_columns(['{column}'])"
            "), or pack without blocks= to keep the rows"
        )
    return fixed[0]


def _side_columns(
    schema: pa.Schema,
    names: list[str],
    keys: list[str],
    decode: dict[str, Any],
    transform: Any,
    per_column: bool,
) -> list[int]:
    """The places in ``names`` (output names ``keys``) of the columns made on Python threads,
    not converted by the Rust threads: every column with a ``transform``, those with a
    ``decode`` spec, and those ``_dense`` refuses; a column one ``(columns, rows)`` tensor
    cannot hold needs ``per_column``."""
    # Columns the Rust threads convert (numbers, bools, fixed-size lists), and the rest
    # (decode specs, text, bytes, token lists), made into values on Python threads ahead.
    side = [
        i
        for i, (n, k) in enumerate(zip(names, keys))
        if transform is not None or k in decode or not _dense(schema.field(n).type)
    ]
    if side and not per_column and transform is None:
        first = names[side[0]]
        raise TypeError(
            f"column '{first}' is {schema.field(first).type}, which one (columns, rows) "
            "tensor cannot hold; pass per_column=True (with decode={...} for token lists), "
            "or leave it out with a Permutation's select_columns"
        )
    lists = [n for n in names if pa.types.is_fixed_size_list(schema.field(n).type)]
    if lists and not per_column and transform is None:
        raise TypeError(
            f"column '{lists[0]}' is {schema.field(lists[0]).type}, which one (columns, rows) "
            "tensor cannot hold; pass per_column=True for one tensor per column (this one "
            "as (rows, size)), or leave it out with a Permutation's select_columns"
        )
    return side
