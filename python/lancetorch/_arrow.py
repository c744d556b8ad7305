"""Arrow plumbing shared by tables and permutations: user data to a pyarrow Table, user
indices to an int64 Arrow array, and new data conformed to a table's schema."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_INT64_MAX = np.iinfo(np.int64).max


def _is_table(data: Any) -> bool:
    """Whether ``data`` is a lancetorch Table (imported here, not at the top: the table
    module imports this one)."""
    from .table import Table

    return isinstance(data, Table)


def as_table(data: Any, schema: pa.Schema | None = None) -> pa.Table:
    """Turn anything Arrow-like into a pyarrow Table (no copy where the input allows it)."""
    if isinstance(data, pa.Table):
        table = data
    elif isinstance(data, pa.RecordBatch):
        table = pa.Table.from_batches([data])
    elif isinstance(data, pa.RecordBatchReader):
        table = data.read_all()
    elif type(data).__module__.startswith("lancedb") and hasattr(data, "to_arrow"):
        table = data.to_arrow()  # a LanceDB table
    elif type(data).__module__.startswith("lance") and hasattr(data, "to_table"):
        table = data.to_table()
    elif _is_table(data):
        table = data.to_arrow()
    elif hasattr(data, "__arrow_c_stream__"):
        table = pa.table(data)
    elif hasattr(data, "__arrow_c_array__"):
        table = pa.Table.from_batches([pa.record_batch(data)])
    elif type(data).__module__.startswith("pandas") and hasattr(data, "columns"):
        table = pa.Table.from_pandas(data, preserve_index=False)
    elif isinstance(data, dict):
        table = pa.table({k: _matrix_column(v) for k, v in data.items()})
    elif type(data).__module__.startswith("polars") and hasattr(data, "collect"):
        table = data.collect().to_arrow()  # a polars LazyFrame
    elif isinstance(data, (list, tuple)):
        table = _from_rows(list(data), schema)
    else:
        raise TypeError(
            f"cannot make a table from {type(data).__name__}; pass a pyarrow Table, RecordBatch "
            "or RecordBatchReader, a pandas or polars DataFrame, a dict of columns or a list "
            "of row dicts"
        )
    names = table.schema.names
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise ValueError(
            f"the data has two columns named '{twice}'; a table's columns need distinct names"
        )
    return table


def _matrix_column(values: Any) -> Any:
    """A 2-D numpy array, or a list of 1-D numpy arrays of one length and type, as a
    fixed-size list column (one row per line); anything else as it is."""
    if (
        isinstance(values, list)
        and values
        and all(isinstance(v, np.ndarray) and v.ndim == 1 for v in values)
        and len({(len(v), v.dtype) for v in values}) == 1
        and values[0].dtype.kind in "biuf"
    ):
        values = np.stack(values)
    if isinstance(values, np.ndarray) and values.ndim == 2:
        flat = pa.array(np.ascontiguousarray(values).reshape(-1))
        return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
    return values


def _from_rows(rows: list, schema: pa.Schema | None) -> pa.Table:
    """Row dicts as a table: every row with the same keys (those of the first row, or of
    ``schema`` when given), types inferred from the values (``conform`` casts them)."""
    bad = next((r for r in rows if not isinstance(r, dict)), None)
    if bad is not None:
        raise TypeError(
            "a list of rows must hold dicts (one per row, column name to value); "
            f"got {type(bad).__name__}"
        )
    if not rows:
        return schema.empty_table() if schema is not None else pa.table({})
    keys = list(schema.names) if schema is not None else list(rows[0])
    want = set(keys)
    for i, row in enumerate(rows):
        if row.keys() != want:
            missing = [k for k in keys if k not in row]
            extra = [k for k in row if k not in want]
            what = " and ".join(
                ([f"lacks '{missing[0]}'"] if missing else [])
                + ([f"has '{extra[0]}', which is not a field"] if extra else [])
            )
            raise ValueError(
                f"row {i} {what}; every row needs exactly the fields {keys}"
                + (" (use None for a null)" if missing else "")
            )
    columns = {}
    for k in keys:
        values = [row[k] for row in rows]
        field = schema.field(k) if schema is not None else None
        try:
            if field is None or _family(field.type) in _INFERRED:
                columns[k] = pa.array(values)  # conform checks the cast to the field's type
            else:
                columns[k] = pa.array(values, type=field.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as e:
            raise ValueError(f"the values of field '{k}' do not make one column ({e})") from e
    return pa.table(columns)


# Families whose row values are read as they are and then cast with the loss checks of
# `conform` (a typed read would truncate 1.5 into an int column without a word).
_INFERRED = ("number", "string", "binary", "list")


def conform(data: pa.Table, schema: pa.Schema, table_name: str) -> pa.Table:
    """`data` with the columns of `schema`, in its order and types; safe casts only.

    Raises ValueError naming the first field that is missing, extra, of a type that does not
    cast without loss, or null where the schema allows no nulls.
    """
    position = {n: i for i, n in enumerate(data.schema.names)}
    fields = set(schema.names)
    extra = [n for n in data.schema.names if n not in fields]
    if extra:
        raise ValueError(
            f"field '{extra[0]}' ({data.schema.field(extra[0]).type}) is not in table "
            f"'{table_name}', whose fields are {schema.names}"
        )
    columns = []
    for field in schema:
        if field.name not in position:
            raise ValueError(
                f"field '{field.name}' ({field.type}) of table '{table_name}' is missing from "
                "the new data"
            )
        column = data.column(position[field.name])
        if column.type != field.type:
            column = _cast(column, field, table_name)
        if not field.nullable and column.null_count:
            first = pc.index(pc.is_null(column), True).as_py()
            raise ValueError(
                f"field '{field.name}' of table '{table_name}' takes no nulls, but the new data "
                f"has {column.null_count} (the first at row {first}); fill or drop them first"
            )
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def _cast(column: pa.ChunkedArray, field: pa.Field, table_name: str) -> pa.ChunkedArray:
    """``column`` cast to ``field``'s type when no value is lost: a number may round to the
    nearest value of a narrower float, but not overflow it, nor lose digits a decimal keeps."""
    source = column.type
    if not pa.types.is_null(source) and _family(source) != _family(field.type):
        raise ValueError(
            f"field '{field.name}' is {field.type} in table '{table_name}' but {source} in the "
            f"new data; convert it to {field.type} first"
        )

    def refuse(why: str) -> ValueError:
        return ValueError(
            f"field '{field.name}' is {field.type} in table '{table_name}' but {source} in the "
            f"new data, and the values do not cast without loss ({why}); cast them to "
            f"{field.type} first"
        )

    try:
        cast = column.cast(field.type, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
        raise refuse(str(e)) from e
    if pa.types.is_null(source) or not len(column):
        return cast
    before, after, rows = column.combine_chunks(), cast.combine_chunks(), None
    if _family(source) == "list":  # compare the values; report the row holding them
        rows = pc.list_parent_indices(before)
        before, after = pc.list_flatten(before), pc.list_flatten(after)
    target = after.type
    if pa.types.is_floating(target):  # rounding is what storing a float means; overflow is not
        finite_before = pc.invert(pc.is_inf(before.cast(pa.float64(), safe=False)))
        lost = pc.and_(pc.is_inf(after), finite_before)
    elif pa.types.is_decimal(target):
        lost = pc.invert(pc.equal(after.cast(before.type, safe=False), before))
    else:
        return cast
    k = pc.index(pc.fill_null(lost, False), True).as_py()
    if k >= 0:
        row = k if rows is None else rows[k].as_py()
        raise refuse(f"row {row}: {before[k].as_py()!r} becomes {after[k].as_py()!r}")
    return cast


def _family(t: pa.DataType) -> str:
    """Types within one family cast into each other on append (when no value is lost)."""
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "binary"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return "list"
    return str(t)


def _as_int(v: Any) -> int | None:
    """An integer row offset (Python, numpy or a 0-d integer tensor) as an int; None for
    anything else, bools included."""
    if isinstance(v, (bool, np.bool_)) or str(getattr(v, "dtype", "")) in ("bool", "torch.bool"):
        return None
    if getattr(v, "ndim", 0) != 0:  # a one-element tensor or array is not one offset
        return None
    try:
        return operator.index(v)
    except TypeError:
        return None


def _offsets_from_values(values: list) -> pa.Array:
    """Row offsets given one by one, as int64; raises TypeError or IndexError naming the first
    that is not an integer or not an int64."""
    ints = []
    for pos, v in enumerate(values):
        i = _as_int(v)
        if i is None:
            raise TypeError(
                f"row offsets must be integers; position {pos} holds {v!r} ({type(v).__name__})"
            )
        if not -_INT64_MAX - 1 <= i <= _INT64_MAX:
            raise IndexError(f"row offset {i} (position {pos} of the request) is out of range")
        ints.append(i)
    return pa.array(ints, type=pa.int64())


def _from_numpy(arr: np.ndarray) -> pa.Array:
    if arr.ndim != 1:
        if arr.ndim == 0:
            arr = arr.reshape(1)
        else:
            raise TypeError(f"row offsets must be one-dimensional, got shape {arr.shape}")
    kind = arr.dtype.kind
    if kind == "i":
        return pa.array(arr.astype(np.int64, copy=False))
    if kind == "u":
        if arr.size and arr.max() > _INT64_MAX:
            pos = int(np.argmax(arr > _INT64_MAX))
            raise IndexError(
                f"row offset {arr[pos]} (position {pos} of the request) is out of range"
            )
        return pa.array(arr.astype(np.int64))
    raise TypeError(
        f"row offsets must be integers, got an array of {arr.dtype}; "
        "convert with .astype('int64') if the values are whole numbers"
    )


def as_offsets_unsigned(values: Any) -> np.ndarray:
    """Row ids (list, numpy, torch or Arrow integers, 0 to 2**64 - 1) as a uint64 array."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        if not pa.types.is_integer(values.type) or values.null_count:
            raise TypeError(f"row ids must be integers without nulls, got {values.type}")
        values = values.to_numpy(zero_copy_only=False)
    elif type(values).__module__.startswith("torch"):
        values = values.detach().cpu().numpy()
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "iu":
            raise TypeError(f"row ids must be integers, got an array of {values.dtype}")
        if values.dtype.kind == "i" and values.size and values.min() < 0:
            raise ValueError(f"row id {int(values.min())} is negative; row ids are 0 or more")
        return values.astype(np.uint64, copy=False)
    out = np.empty(len(values), dtype=np.uint64)
    for i, v in enumerate(values):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"row ids must be integers, got {v!r} at position {i}")
        if not 0 <= int(v) < 2**64:
            raise ValueError(f"row id {int(v)} at position {i} is outside 0 to 2**64 - 1")
        out[i] = int(v)
    return out


def as_offsets(indices: Any) -> pa.Array:
    """User row indices (list, range, numpy array, torch tensor, Arrow array) as int64 Arrow.

    Bools, floats and other non-integers raise TypeError; bounds are checked by the take.
    """
    if isinstance(indices, np.ndarray):
        return _from_numpy(indices)
    if type(indices).__module__.startswith("torch"):
        if (
            indices.is_floating_point()
            or indices.is_complex()
            or str(indices.dtype) == "torch.bool"
        ):
            raise TypeError(f"row offsets must be integers, got a tensor of {indices.dtype}")
        return _from_numpy(indices.detach().cpu().numpy())
    if isinstance(indices, pa.Int64Array) and indices.null_count == 0:
        return indices
    if isinstance(indices, (pa.Array, pa.ChunkedArray)):
        if not pa.types.is_integer(indices.type):
            raise TypeError(f"row offsets must be integers, got an Arrow array of {indices.type}")
        if isinstance(indices, pa.ChunkedArray):
            indices = indices.combine_chunks()
        return _from_numpy(indices.to_numpy(zero_copy_only=False))
    if isinstance(indices, range):
        return pa.array(np.arange(indices.start, indices.stop, indices.step, dtype=np.int64))
    if isinstance(indices, (bool, np.bool_)) or isinstance(indices, (str, bytes, float)):
        raise TypeError(f"row offsets must be integers, got {indices!r}")
    values = indices if isinstance(indices, list) else list(indices)
    if not values:
        return pa.array([], type=pa.int64())
    try:
        arr = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        return _offsets_from_values(values)  # e.g. 0-d tensors, or a value past int64
    if arr.type == pa.int64() and arr.null_count == 0:
        return arr
    if pa.types.is_integer(arr.type) and arr.null_count == 0:  # numpy int32 or uint8 scalars
        return _from_numpy(arr.to_numpy())
    return _offsets_from_values(values)
