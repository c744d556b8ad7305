"""Collate helpers: Arrow batches to torch tensors.

``tbl_to_tensor`` gives one ``(columns, rows)`` tensor built in Rust and handed to torch
through DLPack. Column types meet as ``torch.result_type`` would combine them: any float
column makes the result float (the widest float present), signed and unsigned integers meet
in a wider signed integer (uint8 with int8 gives int16), bool alone stays bool. ``dtype=``
forces a type instead. Batches from a lancetorch take whose columns share one type are
handed over without a copy; anything else costs exactly one copy.
"""

from __future__ import annotations

import operator
from typing import Any

import pyarrow as pa

from . import _native
from ._arrow import twin_of


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError(
            "lancetorch.util needs PyTorch: pip install torch (or lancetorch[torch])"
        ) from None
    return torch


def _batches(data: Any) -> list[pa.RecordBatch]:
    if isinstance(data, pa.RecordBatch):
        return [data]
    if isinstance(data, (list, tuple)) and all(isinstance(b, pa.RecordBatch) for b in data):
        return list(data)
    if hasattr(data, "to_arrow") and hasattr(data, "_backend"):  # a lancetorch Table
        data = data.to_arrow()
    if not isinstance(data, pa.Table):
        if hasattr(data, "__arrow_c_array__"):
            return [pa.record_batch(data)]
        if hasattr(data, "__arrow_c_stream__"):
            data = pa.table(data)
        else:
            raise TypeError(
                f"tbl_to_tensor takes Arrow data (a RecordBatch, a Table or a list of "
                f"RecordBatches), got {type(data).__name__}"
            )
    return data.to_batches() or [pa.RecordBatch.from_pylist([], schema=data.schema)]


def tbl_to_tensor(data: Any, *, dtype: Any = None, null_value: float | None = None) -> Any:
    """Numeric and bool columns of ``data`` as one ``torch.Tensor`` of shape ``(columns, rows)``.

    ``data`` is a pyarrow Table (what a Table's ``__getitems__`` returns), a RecordBatch, a
    list of RecordBatches or a lancetorch Table. A batch a lancetorch take returned may lend
    its memory to the first tensor made from it, as ``torch.from_numpy`` does. Strings, lists
    and structs raise TypeError naming the column; nulls raise ValueError unless
    ``null_value`` says what to put there.

    >>> import pyarrow as pa
    >>> tbl_to_tensor(pa.record_batch({"a": [1, 2], "b": [0.5, 1.5]}))
    tensor([[1.0000, 2.0000],
            [0.5000, 1.5000]], dtype=torch.float64)
    """
    torch = _torch()
    name = None if dtype is None else str(dtype).removeprefix("torch.")
    twin = twin_of(data)
    if twin is not None:  # gathered by the core: convert its Rust twin, no crossing back
        return torch.from_dlpack(twin.tensor(name, null_value))
    capsule = _native.batches_to_tensor(_batches(data), name, null_value, capsule=True)
    return torch.from_dlpack(capsule)


def column_to_tensor(
    batch: pa.RecordBatch, column: str | int, *, dtype: Any = None, null_value: float | None = None
) -> Any:
    """One column of a batch as a tensor: ``(rows,)`` for a numeric or bool column, ``(rows,
    size)`` for a fixed-size list of numbers (an embedding). The first tensor made from a
    column of a batch a lancetorch take returned shares its memory (an in-place change shows
    in the batch); any other batch, or the same column again, costs one copy.

    >>> import pyarrow as pa
    >>> emb = pa.FixedSizeListArray.from_arrays(pa.array([1.0, 2.0, 3.0, 4.0], pa.float32()), 2)
    >>> column_to_tensor(pa.record_batch({"emb": emb}), "emb")
    tensor([[1., 2.],
            [3., 4.]])
    """
    torch = _torch()
    twin = twin_of(batch)
    if isinstance(batch, pa.Table):  # what a Table's __getitems__ returns
        batch = _batches(batch.combine_chunks())[0]
    if not isinstance(batch, pa.RecordBatch):
        raise TypeError(
            f"column_to_tensor takes a pyarrow RecordBatch or Table, got {type(batch).__name__}"
        )
    names = batch.schema.names
    if isinstance(column, str):
        if column not in names:
            raise ValueError(f"column '{column}' is not in the batch; its columns are {names}")
        index = names.index(column)
    else:
        if isinstance(column, bool):
            raise TypeError(f"a column is a name or an integer index, got {column!r}")
        index = operator.index(column)
        if not -len(names) <= index < len(names):
            raise IndexError(
                f"column index {index} is out of range for a batch of {len(names)} columns"
            )
        index %= len(names)  # negative counts from the end, as in a list
    name = None if dtype is None else str(dtype).removeprefix("torch.")
    if twin is not None:
        return torch.from_dlpack(twin.column(index, name, null_value))
    return torch.from_dlpack(_native.batch_column_to_tensor(batch, index, name, null_value))


def batch_to_tensor(batch: Any, *, dtype: Any = None, null_value: float | None = None) -> Any:
    """The same as :func:`tbl_to_tensor`, for one batch."""
    return tbl_to_tensor(batch, dtype=dtype, null_value=null_value)


def passthrough(batch: Any) -> Any:
    """A collate function that returns the batch as it is; unlike ``lambda x: x`` it can be
    pickled to spawned DataLoader workers."""
    return batch
