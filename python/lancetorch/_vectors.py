"""Embedding columns on write: which columns are vectors, what makes one of their rows bad
(null, NaN, or another length than the rest), what LanceDB's ``on_bad_vectors`` does with
such rows, and the fixed-size float32 type a ``vector`` column of lists is given."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import _checks

VECTOR = "vector"
ON_BAD_VECTORS = ("error", "drop", "fill", "null")
_LIKELY_SIZE = 10  # a fixed-size float list this long is an embedding, whatever its name


def _listlike(kind: pa.DataType) -> bool:
    return (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    )


def _is_vector(name: str, kind: pa.DataType) -> bool:
    """A column named ``vector`` of float lists, or a fixed-size list of floats of at least
    ten values (LanceDB's rule, so that the same data is refused or mended alike)."""
    if not _listlike(kind):
        return False
    value = kind.value_type
    if name == VECTOR:
        return pa.types.is_floating(value)
    return (
        pa.types.is_fixed_size_list(kind)
        and pa.types.is_floating(value)
        and kind.list_size >= _LIKELY_SIZE
    )


def check_policy(on_bad_vectors: Any, fill_value: Any) -> None:
    """Refuse a policy LanceDB does not name, or a fill value that is not a number."""
    _checks.choice("on_bad_vectors", on_bad_vectors, ON_BAD_VECTORS)
    if isinstance(fill_value, bool) or not isinstance(fill_value, (int, float)):
        raise TypeError(
            f"fill_value={fill_value!r} is {type(fill_value).__name__}; give the number that "
            "on_bad_vectors='fill' writes in place of a missing or NaN value, such as 0.0"
        )


def mend_vectors(
    data: pa.Table,
    schema: pa.Schema | None,
    table_name: str,
    on_bad_vectors: str = "error",
    fill_value: float = 0.0,
) -> pa.Table:
    """``data`` with the bad rows of its vector columns refused (``"error"``), left out
    (``"drop"``), stored as null (``"null"``) or mended (``"fill"``: NaN and missing values
    become ``fill_value``, values past the length are cut). A row is bad where its vector
    is null, holds a NaN, or has another length than the column's: the fixed size of the
    table's field, or else the most common length of the data. The columns are judged by
    their type in ``schema`` (the table's, on an append) where it has them."""
    for name in data.schema.names:
        kind = schema.field(name).type if schema is not None and name in schema.names else None
        kind = kind if kind is not None else data.schema.field(name).type
        if not _is_vector(name, kind):
            continue
        column = data.column(name).combine_chunks()
        size = _length(kind, column)
        if size is None:
            continue
        if pa.types.is_fixed_size_list(column.type) and column.type.list_size != size:
            column = column.cast(pa.list_(column.type.value_type))  # every row the wrong length
        bad, why = _bad_rows(column, size)
        if not bad.any():
            continue
        if on_bad_vectors == "error":
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"vector column '{name}' of table '{table_name}': row {first} {why(first)} "
                f"({int(bad.sum())} such rows of {len(bad)}); nothing was written. Pass "
                "on_bad_vectors='drop' to leave such rows out, 'fill' (with fill_value=) to "
                "mend them, or 'null' to store their vectors as null"
            )
        if on_bad_vectors == "drop":
            data = data.filter(pa.array(~bad))
            continue
        index = data.schema.get_field_index(name)
        if on_bad_vectors == "null":
            mended = pc.if_else(pa.array(bad), pa.scalar(None, column.type), column)
        else:
            mended = _filled(column, bad, size, float(fill_value))
        data = data.set_column(index, data.schema.field(index).with_type(mended.type), mended)
    return data


def _length(kind: pa.DataType, column: pa.Array) -> int | None:
    """The length every vector must have: the fixed size, or the most common one."""
    if pa.types.is_fixed_size_list(kind):
        return int(kind.list_size)
    lengths = pc.drop_null(pc.list_value_length(column))
    lengths = pc.filter(lengths, pc.greater(lengths, 0))
    if len(lengths) == 0:
        return None
    return int(pc.mode(lengths)[0]["mode"].as_py())


def _bad_rows(column: pa.Array, size: int) -> tuple[np.ndarray, Callable[[int], str]]:
    """Which rows are bad, and a function giving in words why a bad row is."""
    null = column.is_null().to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(column).fill_null(size).to_numpy(zero_copy_only=False)
    nan = np.zeros(len(column), dtype=bool)
    values = pc.list_flatten(column)
    if pa.types.is_floating(values.type) and len(values):
        floats = values.cast(pa.float32()) if pa.types.is_float16(values.type) else values
        parents = pc.list_parent_indices(column).to_numpy(zero_copy_only=False)
        nan[parents[pc.is_nan(floats).fill_null(False).to_numpy(zero_copy_only=False)]] = True

    def why(row: int) -> str:
        if null[row]:
            return "is null"
        if lengths[row] != size:
            return f"has {int(lengths[row])} values, not {size}"
        return "holds NaN"

    return null | (lengths != size) | nan, why


def _filled(column: pa.Array, bad: np.ndarray, size: int, fill_value: float) -> pa.Array:
    """The column with each bad vector mended to ``size`` values: NaN and missing values
    become ``fill_value``, values past ``size`` are cut; good rows as they were."""
    value = column.type.value_type
    if pa.types.is_fixed_size_list(column.type):
        kind = pa.list_(value, size)
    elif pa.types.is_large_list(column.type):
        kind = pa.large_list(value)
    else:
        kind = pa.list_(value)
    rows = np.flatnonzero(bad)
    mended = []
    for i in rows:
        got = column[int(i)].as_py() or []
        vector = np.full(size, fill_value, dtype=np.float64)
        kept = np.asarray(got[:size], dtype=np.float64)
        vector[: len(kept)] = np.where(np.isnan(kept), fill_value, kept)
        mended.append(vector)
    good = np.flatnonzero(~bad)
    parts = pa.concat_arrays(
        [column.filter(pa.array(~bad)).cast(kind), pa.array(mended, type=kind)]
    )
    order = np.argsort(np.concatenate([good, rows]), kind="stable")
    return parts.take(pa.array(order))


def infer_vectors(table: pa.Table) -> pa.Table:
    """As LanceDB infers on create: a column named ``vector`` of number lists, all of one
    length (nulls aside), becomes a fixed-size list of float32 (an embedding)."""
    if VECTOR not in table.schema.names:
        return table
    column = table.column(VECTOR)
    kind = column.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        return table
    value = kind.value_type
    if not (pa.types.is_floating(value) or pa.types.is_integer(value)):
        return table
    lengths = pc.unique(pc.drop_null(pc.list_value_length(column)))
    if len(lengths) != 1 or lengths[0].as_py() == 0:
        return table
    size = lengths[0].as_py()
    fixed = pc.list_slice(column, 0, size, return_fixed_size_list=True)
    fixed = fixed.cast(pa.list_(pa.float32(), size))
    index = table.schema.get_field_index(VECTOR)
    return table.set_column(index, pa.field(VECTOR, fixed.type), fixed)
