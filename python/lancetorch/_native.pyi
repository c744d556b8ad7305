"""Type stubs for lancetorch's Rust core (``lancetorch._native``)."""

from typing import final

import pyarrow as pa
from typing_extensions import Self

from lancetorch.decode import Image, Tokens

__all__ = [
    "DEBUG_BUILD",
    "ColumnStore",
    "ColumnStoreBuilder",
    "DLPackTensor",
    "Batching",
    "Prefetcher",
    "TokenPacker",
    "normalize_offsets",
    "view_offsets",
    "available_memory",
    "crc32_of_file",
    "batches_to_tensor",
    "taken_to_tensor",
    "remember_alias",
    "batch_column_to_tensor",
    "split_sizes",
    "random_split",
    "sequential_split",
    "hash_split",
    "shuffle_splits",
    "epoch_order",
    "bijection_rows",
    "mark_forked",
    "check_sql_expression",
    "decode_tokens",
    "pack_tokens",
    "decode_images",
]

DEBUG_BUILD: bool

@final
class ColumnStore:
    """A table's rows held in Rust and addressed by global row offset.

    A table of many rows keeps its fixed-width numeric columns in one row-major block (made
    when the store is, the only copy it holds of them) for shuffled reads; ``row_major=False``
    keeps the Arrow arrays as they are. ``batches()`` shares the Arrow columns and copies the
    block's columns out of it.
    """

    def __new__(cls, data: pa.Table | pa.RecordBatchReader, row_major: bool = True) -> Self: ...
    def appended(self, data: pa.Table | pa.RecordBatchReader) -> ColumnStore: ...
    @property
    def num_rows(self) -> int: ...
    @property
    def schema(self) -> pa.Schema: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def block_columns(self) -> list[int]: ...
    def take(
        self, offsets: list[int] | pa.Int64Array, columns: list[int] | None = None
    ) -> pa.RecordBatch: ...
    def slice(self, start: int, n: int) -> pa.RecordBatch: ...
    def batches(self, columns: list[int] | None = None) -> list[pa.RecordBatch]: ...

@final
class ColumnStoreBuilder:
    """A ColumnStore made from batches as a scan delivers them, for a table whose row count is
    known: each batch's fixed-width columns go into the row-major block at once."""

    def __new__(cls, schema: pa.Schema, rows: int) -> Self: ...
    @property
    def block_columns(self) -> list[int]: ...
    def push(self, batch: pa.RecordBatch) -> None: ...
    def finish(self) -> ColumnStore: ...

@final
class DLPackTensor:
    """A tensor waiting for one DLPack consumer, e.g. ``torch.from_dlpack``."""

    def __dlpack__(
        self,
        *,
        stream: object | None = None,
        max_version: tuple[int, int] | None = None,
        dl_device: tuple[int, int] | None = None,
        copy: bool | None = None,
    ) -> object: ...
    def __dlpack_device__(self) -> tuple[int, int]: ...
    @property
    def shape(self) -> list[int]: ...
    @property
    def dtype(self) -> str: ...

def normalize_offsets(offsets: list[int] | pa.Int64Array, num_rows: int) -> pa.Int64Array: ...
def available_memory() -> int | None: ...
def crc32_of_file(fd: int, length: int) -> int: ...
def view_offsets(
    positions: list[int] | pa.Int64Array,
    length: int,
    start: int = 0,
    rows: pa.Int64Array | None = None,
) -> pa.Int64Array: ...
def batches_to_tensor(
    batches: list[pa.RecordBatch],
    dtype: str | None = None,
    null_value: float | None = None,
    capsule: bool = False,
) -> DLPackTensor | object: ...
def taken_to_tensor(
    data: object, dtype: str | None = None, null_value: float | None = None
) -> object | None: ...
def remember_alias(alias: pa.Table, taken: pa.RecordBatch) -> None: ...
def batch_column_to_tensor(
    batch: pa.RecordBatch, index: int, dtype: str | None = None, null_value: float | None = None
) -> object: ...
def decode_tokens(batch: pa.RecordBatch, index: int, spec: Tokens) -> tuple[object, object]: ...
def pack_tokens(
    batches: list[pa.RecordBatch],
    index: int,
    spec: Tokens,
    *,
    skip: int = 0,
    first_document: int = 0,
    carry: bool = False,
) -> tuple[object, object, object, object, int, int]: ...
def decode_images(
    batch: pa.RecordBatch, index: int, spec: Image, epoch: int
) -> tuple[object, list[int]]: ...
def split_sizes(
    n: int,
    ratios: list[float] | None = None,
    counts: list[int] | None = None,
    fixed: int | None = None,
) -> list[int]: ...
def random_split(
    rows: pa.UInt64Array, sizes: list[int], seed: int, clump_size: int | None = None
) -> tuple[pa.UInt64Array, pa.UInt32Array]: ...
def sequential_split(
    rows: pa.UInt64Array, sizes: list[int]
) -> tuple[pa.UInt64Array, pa.UInt32Array]: ...
def hash_split(
    rows: pa.UInt64Array, keys: list[pa.RecordBatch], weights: list[int], discard: int
) -> tuple[pa.UInt64Array, pa.UInt32Array]: ...
def shuffle_splits(
    rows: pa.UInt64Array, ids: pa.UInt32Array, seed: int, clump_size: int | None = None
) -> tuple[pa.UInt64Array, pa.UInt32Array]: ...
def mark_forked() -> None: ...
def check_sql_expression(text: str) -> None: ...
def epoch_order(
    n: int, seed: int, epoch: int, clump_size: int | None = None, narrow: bool = False
) -> pa.Int64Array | pa.UInt32Array: ...
def bijection_rows(n: int, seed: int, epoch: int, positions: pa.Int64Array) -> pa.Int64Array: ...

@final
class Batching:
    """How an epoch's rows become batches: batch_size rows each (the last one shorter unless
    drop_last), one (columns, rows) tensor of dtype, or one tensor per column."""

    def __new__(
        cls,
        batch_size: int,
        *,
        drop_last: bool = False,
        dtype: str | None = None,
        null_value: float | None = None,
        per_column: bool = False,
    ) -> Self: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def drop_last(self) -> bool: ...
    @property
    def dtype(self) -> str | None: ...
    @property
    def null_value(self) -> float | None: ...
    @property
    def per_column(self) -> bool: ...

@final
class Prefetcher:
    """One epoch of batches prepared ahead on Rust threads, in order: each one (columns, rows)
    tensor, or with per_column=True a list of one tensor per column."""

    def __new__(
        cls,
        store: ColumnStore,
        rows: object,
        columns: list[int],
        batching: Batching,
        *,
        depth: int = 4,
        threads: int = 1,
    ) -> Self: ...
    def next(self) -> object | list[object] | None: ...
    def close(self) -> None: ...
    def stats(self) -> dict[str, float | int]: ...

@final
class TokenPacker:
    """Row batches fed in order, packed into batches of exactly (blocks, max_length) tokens of
    a Tokens(pack=True, blocks=B) spec, what does not fit carried into the next: each packed
    batch as (tokens, documents, positions, cu_seqlens, max_seqlen) DLPack capsules."""

    def __new__(cls, column: str, spec: Tokens, skip: int = 0) -> Self: ...
    def push(
        self, batch: pa.RecordBatch, index: int, handed: list[tuple[int, int]] = ...
    ) -> None: ...
    def available(self) -> int: ...
    def full(self) -> bool: ...
    def take(self) -> tuple[object, object, object, object, object]: ...
    def state(self) -> tuple[int, int]: ...
    def progress(self) -> tuple[int, int]: ...
