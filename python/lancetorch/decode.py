"""How columns that are not plain numbers become training data.

A spec is a small picklable object, given per column in ``decode={column: spec}`` to
:func:`lancetorch.util.to_batch` (a DataLoader ``collate_fn`` through ``functools.partial``),
to ``Permutation.with_format("torch_dict", decode=...)`` and to
``Loader(..., per_column=True, decode=...)``; spawned workers receive it with the rest.

>>> import pyarrow as pa
>>> from lancetorch.util import to_batch
>>> batch = pa.record_batch({"ids": pa.array([[5, 6, 7], [8]], pa.list_(pa.int32()))})
>>> out = to_batch(batch, decode={"ids": Tokens(pad_value=0)})
>>> out["ids"], out["ids_length"]
(tensor([[5, 6, 7],
        [8, 0, 0]], dtype=torch.int32), tensor([3, 1]))
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable

import pyarrow as pa

from . import _native


def _torch() -> Any:
    import torch

    return torch


@dataclass(frozen=True)
class Tokens:
    """A column of token lists (``list``, ``large_list`` or ``list_view`` of integers) as a
    padded ``(rows, length)`` tensor of the tokens' own integer type, and ``<column>_length``,
    the ``(rows,)`` int64 count of real tokens in each row.

    ``length`` is the batch's longest row, capped at ``max_length``; with
    ``pad_to_max_length=True`` it is ``max_length`` itself. Rows over ``max_length`` are cut
    (``truncate=False`` refuses them with ValueError naming the row). Positions past a row's
    end hold ``pad_value``; a null list is an empty row. The padding is done in Rust, in one
    pass over the batch's token buffer.
    """

    max_length: int | None = None
    pad_value: int = 0
    truncate: bool = True
    pad_to_max_length: bool = False

    def __post_init__(self) -> None:
        limit = self.max_length
        if limit is not None and (isinstance(limit, bool) or operator.index(limit) < 1):
            raise ValueError(f"max_length={limit!r} must be 1 or more, or None")
        if isinstance(self.pad_value, bool) or not isinstance(self.pad_value, int):
            raise TypeError(f"pad_value={self.pad_value!r} must be an integer token id")
        if not -(2**63) <= self.pad_value < 2**63:
            raise ValueError(f"pad_value={self.pad_value} is outside the int64 range")
        if self.pad_to_max_length and self.max_length is None:
            raise ValueError("pad_to_max_length=True needs max_length")

    def decode(self, batch: pa.RecordBatch, column: str) -> dict[str, Any]:
        torch = _torch()
        index = batch.schema.get_field_index(column)
        tokens, lengths = _native.pad_tokens(
            batch, index, self.max_length, self.pad_value, self.truncate, self.pad_to_max_length
        )
        return {column: torch.from_dlpack(tokens), f"{column}_length": torch.from_dlpack(lengths)}


@dataclass(frozen=True)
class Text:
    """A string column as ``list[str]``, or, with ``tokenizer=``, whatever
    ``tokenizer(list_of_strings)`` returns for the batch (a tokenizer of the ``transformers``
    kind gives a dict of tensors). A null is ``None`` (the tokenizer sees it as it is)."""

    tokenizer: Callable[[list[str]], Any] | None = None

    def __post_init__(self) -> None:
        if self.tokenizer is not None and not callable(self.tokenizer):
            raise TypeError(f"tokenizer must be callable, got {type(self.tokenizer).__name__}")

    def decode(self, batch: pa.RecordBatch, column: str) -> dict[str, Any]:
        array = batch.column(column)
        kind = array.type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
                or pa.types.is_string_view(kind)):
            raise TypeError(f"column '{column}' is {kind}; Text reads string columns")
        values = array.to_pylist()
        return {column: values if self.tokenizer is None else self.tokenizer(values)}


Spec = Tokens | Text

__all__ = ["Spec", "Text", "Tokens"]
