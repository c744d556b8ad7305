"""Arrow plumbing shared by tables and permutations: user data to a pyarrow Table, user
indices to an int64 Arrow array, and new data conformed to a table's schema."""

from __future__ import annotations

import operator
import weakref
from typing import Any

import numpy as np
import pyarrow as pa

_INT64_MAX = np.iinfo(np.int64).max


# Batches gathered by the core, by id, with a weak reference that proves identity and the
# Rust twin that becomes a tensor without reading the pyarrow batch back. An entry leaves when
# its batch is collected.
_TWINS: dict[int, tuple[weakref.ref, Any]] = {}


def remember_twin(batch: pa.RecordBatch, twin: Any) -> pa.RecordBatch:
    key = id(batch)
    _TWINS[key] = (weakref.ref(batch, lambda _, key=key: _TWINS.pop(key, None)), twin)
    return batch


def twin_of(batch: Any) -> Any:
    """The Rust twin of a batch the core gathered, or None."""
    entry = _TWINS.get(id(batch))
    if entry is not None and entry[0]() is batch:
        return entry[1]
    return None


def as_table(data: Any, schema: pa.Schema | None = None) -> pa.Table:
    """Turn anything Arrow-like into a pyarrow Table (no copy where the input allows it)."""
    if isinstance(data, pa.Table):
        table = data
    elif isinstance(data, pa.RecordBatch):
        table = pa.Table.from_batches([data])
    elif isinstance(data, pa.RecordBatchReader):
        table = data.read_all()
    elif type(data).__module__.startswith("lance") and hasattr(data, "to_table"):
        table = data.to_table()
    elif hasattr(data, "to_arrow") and hasattr(data, "_backend"):  # a lancetorch Table
        table = data.to_arrow()
    elif hasattr(data, "__arrow_c_stream__"):
        table = pa.table(data)
    elif hasattr(data, "__arrow_c_array__"):
        table = pa.Table.from_batches([pa.record_batch(data)])
    elif type(data).__module__.startswith("pandas") and hasattr(data, "columns"):
        table = pa.Table.from_pandas(data, preserve_index=False)
    elif isinstance(data, dict):
        table = pa.table(data)
    elif isinstance(data, (list, tuple)):
        if data and not all(isinstance(row, dict) for row in data):
            raise TypeError(
                "a list of rows must hold dicts (one per row, column name to value); "
                f"got {type(next(r for r in data if not isinstance(r, dict))).__name__}"
            )
        table = pa.Table.from_pylist(list(data), schema=schema)
    else:
        raise TypeError(
            f"cannot make a table from {type(data).__name__}; pass a pyarrow Table, RecordBatch "
            "or RecordBatchReader, a pandas or polars DataFrame, a dict of columns or a list "
            "of row dicts"
        )
    return table


def conform(data: pa.Table, schema: pa.Schema, table_name: str) -> pa.Table:
    """`data` with the columns of `schema`, in its order and types; safe casts only.

    Raises ValueError naming the first field that is missing, extra or of a type that does
    not cast without loss.
    """
    names = set(schema.names)
    extra = [n for n in data.schema.names if n not in names]
    if extra:
        raise ValueError(
            f"field '{extra[0]}' ({data.schema.field(extra[0]).type}) is not in table "
            f"'{table_name}', whose fields are {schema.names}"
        )
    columns = []
    for field in schema:
        if field.name not in data.schema.names:
            raise ValueError(
                f"field '{field.name}' ({field.type}) of table '{table_name}' is missing from "
                "the new data"
            )
        column = data.column(field.name)
        if column.type != field.type:
            if _family(column.type) != _family(field.type):
                raise ValueError(
                    f"field '{field.name}' is {field.type} in table '{table_name}' but "
                    f"{column.type} in the new data; convert it to {field.type} first"
                )
            try:
                column = column.cast(field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
                raise ValueError(
                    f"field '{field.name}' is {field.type} in table '{table_name}' but "
                    f"{data.schema.field(field.name).type} in the new data, and the values do "
                    f"not cast without loss ({e}); cast them to {field.type} first"
                ) from None
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


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
                f"row offsets must be integers; position {pos} holds {v!r} "
                f"({type(v).__name__})"
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


def as_offsets(indices: Any) -> pa.Array:
    """User row indices (list, range, numpy array, torch tensor, Arrow array) as int64 Arrow.

    Bools, floats and other non-integers raise TypeError; bounds are checked by the take.
    """
    if isinstance(indices, np.ndarray):
        return _from_numpy(indices)
    if type(indices).__module__.startswith("torch"):
        if indices.is_floating_point() or indices.is_complex() or str(indices.dtype) == "torch.bool":
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
