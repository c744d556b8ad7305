"""The rows of the ``torch_dict`` format: read-only mappings over one batch's columns.

Making a 0-d tensor costs about as much as a microsecond or two of PyTorch's bookkeeping, so
a batch of per-row dicts of 16 tensor columns costs tens of milliseconds before any training
happens, and PyTorch's default collate then stacks them back into the tensors they were cut
from. A :class:`TorchRow` makes a value only when it is read, and the default collate,
through the hook PyTorch provides for it (``default_collate_fn_map``), gives rows of one batch
back as slices of that batch's tensors: the same dict of batched tensors, without the detour.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class TorchRow(Mapping):
    """Row ``index`` of ``columns`` (``{name: batched tensor or list}``): a mapping whose
    values are that row's 0-d (or ``(size,)``) tensor views, strings or bytes, made when read.
    ``dict(row)`` makes a plain dict, and a pickled row arrives as one."""

    __slots__ = ("_columns", "_index")

    def __init__(self, columns: dict[str, Any], index: int) -> None:
        self._columns = columns
        self._index = index

    def __getitem__(self, key: str) -> Any:
        return _at(self._columns[key], self._index)

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)

    def __repr__(self) -> str:
        return repr(dict(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return dict, (dict(self),)


def rows_of(columns: dict[str, Any], count: int) -> list[TorchRow]:
    """The ``count`` rows of a batch's columns (a value may be a dict of them, as a
    tokenizer gives)."""
    register()
    return [TorchRow(columns, i) for i in range(count)]


def _at(value: Any, i: int) -> Any:
    if isinstance(value, dict):
        return {k: _at(v, i) for k, v in value.items()}
    return value[i]


def collate_rows(batch: list[TorchRow], *, collate_fn_map: Any = None) -> Any:
    """The default collate of a list of rows: rows of one batch as that batch's tensors (a
    slice where the rows are in order, a gather otherwise); rows of several batches value by
    value, as PyTorch collates dicts."""
    first = batch[0]._columns
    if all(row._columns is first for row in batch):
        index = [row._index for row in batch]
        start = index[0]
        if index == list(range(start, start + len(index))):
            return {k: _gather(v, slice(start, start + len(index))) for k, v in first.items()}
        return {k: _gather(v, index) for k, v in first.items()}
    from torch.utils.data._utils.collate import collate

    return {k: collate([row[k] for row in batch], collate_fn_map=collate_fn_map) for k in first}


def _gather(values: Any, index: slice | list[int]) -> Any:
    """The rows ``index`` (a slice, or positions) of a column's values."""
    if isinstance(values, dict):
        return {k: _gather(v, index) for k, v in values.items()}
    if isinstance(index, slice):
        return values[index]
    if isinstance(values, list):
        return [values[i] for i in index]
    import torch

    return values.index_select(0, torch.tensor(index, dtype=torch.int64))


_registered = False


def register() -> None:
    """Teaches PyTorch's default collate to collate rows (once a process)."""
    global _registered
    if not _registered:
        from torch.utils.data._utils.collate import default_collate_fn_map

        default_collate_fn_map[TorchRow] = collate_rows
        _registered = True
