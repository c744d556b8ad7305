"""Sequence packing for a StreamingDataset: the token lists of each owned split cut into
blocks of ``pack_sequences`` tokens (or, with ``pack_blocks=B``, batches of ``B`` such
blocks with what variable-length attention takes), one per split in turn, and the checks and
the estimate of the block budget that packing needs."""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from .. import _native
from ..decode import Tokens
from ..permutation import Permutation
from .pipeline import Pipeline
from .state import Partial, Progress


@dataclass(frozen=True)
class PackConfig:
    """How blocks are packed (the dataset's ``pack_sequences``, ``eos_id`` and ``pad_id``)
    and how many a split gives (``blocks_per_epoch / num_splits``).

    Parameters
    ----------
    length : int
        Tokens a block holds.
    eos : int
        The token after each row.
    pad : int
        The token that fills a split's blocks once it runs dry.
    budget : int
        The blocks a split gives in an epoch.
    column : str
        The token column, the prefix of the outputs with ``per_item``.
    num_splits : int
        The number of splits (a document's number is its place in the epoch's stream).
    per_item : int or None
        ``pack_blocks``: the blocks of one item, given as the Loader's packed ``Tokens``
        outputs; ``None``: one block an item, as ``{"input_ids", "doc_ids"}`` (LanceDB's).
    """

    length: int
    eos: int
    pad: int
    budget: int
    column: str = "tokens"
    num_splits: int = 1
    per_item: int | None = None

    @classmethod
    def of(
        cls,
        length: Any,
        eos: Any,
        pad: Any,
        blocks: Any,
        num_splits: int,
        column: str,
        per_item: int | None,
    ) -> PackConfig:
        """The config of a dataset's packing arguments (checked when it was made)."""
        if length is None or not isinstance(blocks, int) or eos is None or pad is None:
            raise RuntimeError("packing runs once pack_sequences and blocks_per_epoch are set")
        return cls(length, eos, pad, blocks // num_splits, column, num_splits, per_item)

    @property
    def item_blocks(self) -> int:
        """The blocks of one item."""
        return self.per_item or 1

    @property
    def cells(self) -> int:
        """The tokens of one item."""
        return self.length * self.item_blocks


@dataclass(frozen=True)
class TokenRows:
    """The token lists of a read batch, as the packer takes them: every row's tokens and
    then EOS, one after another (``stream``, int64), and where each row starts in that
    (``bounds``, one more than the rows: the last is the stream's end)."""

    stream: np.ndarray
    bounds: np.ndarray

    def __len__(self) -> int:
        return len(self.bounds) - 1


def token_rows(batch: pa.RecordBatch, eos: int) -> TokenRows:
    """The pipeline's transform when packing: a batch's token lists, each followed by
    ``eos`` (nulls refused). Made on the transform threads, off the consumer's."""
    column = batch.column(0)
    values = pc.list_flatten(column)
    if column.null_count or values.null_count:
        raise ValueError("pack_sequences does not support null token lists or values")
    tokens = values.to_numpy(zero_copy_only=False)
    if tokens.dtype == np.uint64 and len(tokens) and tokens.max() > np.iinfo(np.int64).max:
        raise ValueError(
            f"column '{batch.schema.names[0]}' holds the token {tokens.max()}, past int64, "
            "the type packed tokens are given in"
        )
    bounds = np.zeros(len(column) + 1, dtype=np.int64)
    np.cumsum(pc.list_value_length(column).to_numpy() + 1, out=bounds[1:])
    stream = np.empty(bounds[-1], dtype=np.int64)
    eos_at = bounds[1:] - 1
    kept = np.ones(len(stream), dtype=bool)
    kept[eos_at] = False
    stream[kept] = tokens
    stream[eos_at] = eos
    return TokenRows(stream, bounds)


class Packer:
    """Token lists of the owned splits packed into blocks of ``length`` tokens, one item (a
    block, or ``pack_blocks`` of them) per split in turn, ``budget`` blocks per split (padded
    with ``pad`` once a split runs dry; tokens past the budget are left out).

    The partial item of each split is checkpoint state (``pack_buffers``) that must stand
    between any two items: a :class:`Partial` of numpy arrays, given to the progress with
    each item (it is never written to) and saved as lists only when a state is made. The
    pipeline hands over a read batch's rows at once (:class:`TokenRows`, made on its
    transform threads with the EOS tokens in place); an item takes the rows it needs of them
    in a few numpy calls, and each ``pack_blocks`` item is packed by
    Rust's ``tokens::pack_lists`` (``_native.pack_tokens``), the Loader's packer, for the
    same positions and cu_seqlens. LanceDB's one-block samples are cut here: their
    ``doc_ids`` (counted from 0 in each block, padding keeping the last document's) are not
    what the Rust packer gives.

    Parameters
    ----------
    config : PackConfig
        The block length, the EOS and pad tokens, the blocks a split gives.
    progress : Progress
        The dataset's progress, from which the splits resume and to which each item is
        committed right before it is handed over.
    splits : list of int
        The splits read. LanceDB's blocks need them at one count of blocks; ``pack_blocks``
        items resume the splits behind first.

    Raises
    ------
    ValueError
        When ``splits`` stand at different counts of blocks (LanceDB's blocks).
    """

    def __init__(self, config: PackConfig, progress: Progress, splits: list[int]) -> None:
        self.config, self.progress, self.splits = config, progress, splits
        if config.per_item is None and len({progress.pack_emitted[s] for s in splits}) > 1:
            raise ValueError(
                "Packed checkpoint is not aligned across the splits owned by this iterator; "
                "merge every rank state with merge_state_dicts before resuming on a different "
                "topology"
            )
        self.consumed = list(progress.pack_consumed)
        self.buffers = dict(progress.pack_buffers)
        self.starts = [self.consumed[s] for s in splits]  # the positions the splits read from
        self.spec = None
        if config.per_item is not None:
            self.spec = Tokens(
                max_length=config.length, pack=True, blocks=config.per_item, pad_value=config.pad
            )

    def rows(self, batch: pa.RecordBatch) -> TokenRows:
        """The pipeline's transform (:func:`token_rows`, with this packing's EOS)."""
        return token_rows(batch, self.config.eos)

    def _fill(self, pipe: Pipeline, i: int) -> Partial:
        """Split ``i``'s partial item, with rows added until it holds an item's tokens or the
        split runs dry."""
        split, config = self.splits[i], self.config
        numbered = config.per_item is not None
        buffer = self.buffers.get(split)
        if buffer is None:
            buffer = Partial.empty(numbered)
        have = len(buffer.tokens)
        tokens, starts = [buffer.tokens], [buffer.starts]
        documents = [] if buffer.documents is None else [buffer.documents]
        while have < config.cells and pipe.ready(i):
            positions, rows, first = pipe.front(i)
            bounds = rows.bounds[first:] - rows.bounds[first]
            # The rows up to the first that fills the item, all where none does.
            k = min(int(np.searchsorted(bounds[1:], config.cells - have)) + 1, len(rows) - first)
            tokens.append(rows.stream[rows.bounds[first] : rows.bounds[first + k]])
            starts.append(have + bounds[:k])
            if numbered:  # each row's place in the epoch's stream
                read = _array(positions[first : first + k])
                documents.append(read * config.num_splits + split)
            have += int(bounds[k])
            self.consumed[split] = positions[first + k - 1] + 1
            pipe.take(i, k)
        if len(tokens) > 1:
            buffer = Partial(
                np.concatenate(tokens),
                np.concatenate(starts),
                np.concatenate(documents) if numbered else None,
            )
        self.buffers[split] = buffer
        return buffer

    def _cut(self, split: int, buffer: Partial) -> dict[str, Any]:
        """The item at the head of split ``split``'s ``buffer`` (padded), the rest left as its
        partial item."""
        if self.config.per_item is not None:
            return self._cut_item(split, buffer)
        length, tokens, starts = self.config.length, buffer.tokens, buffer.starts
        block = tokens[:length]
        if len(block) < length:
            block = np.concatenate([block, np.full(length - len(block), self.config.pad)])
        doc_ids = np.zeros(length, dtype=np.int64)
        doc_ids[starts[(0 < starts) & (starts < length)]] = 1
        item = {
            "input_ids": torch.from_numpy(block.copy()),
            "doc_ids": torch.from_numpy(doc_ids.cumsum()),
        }
        self.buffers[split] = Partial(tokens[length:], starts[starts >= length] - length)
        return item

    def _cut_item(self, split: int, buffer: Partial) -> dict[str, Any]:
        """The ``pack_blocks`` item at the head of ``buffer`` (padded at its end), the rest
        left as split ``split``'s partial item: the documents' runs of it packed by Rust,
        each document numbered as read."""
        cells, config = self.config.cells, self.config
        tokens, starts, documents = buffer.tokens, buffer.starts, buffer.documents
        assert documents is not None and self.spec is not None  # made with per_item
        used = min(cells, len(tokens))
        runs = starts[starts < used]  # starts[0] == 0 whenever there are tokens
        column = pa.LargeListArray.from_arrays(
            pa.array(np.append(runs, used)), pa.array(tokens[:used])
        )
        batch = pa.record_batch([column], names=[config.column])
        item, _ = self.spec._packed([batch], 0, config.column)
        # Rust numbers the runs 0, 1, ...: each run's tokens get its document's number
        # instead, the padding after them -1, as Rust's.
        numbers = np.append(documents[: len(runs)], -1)
        counts = np.diff(np.append(runs, [used, cells]))
        name = f"{config.column}_document"
        item[name] = torch.from_numpy(np.repeat(numbers, counts).reshape(item[name].shape))
        rest = Partial.empty(True)
        if used < len(tokens):  # the document cut at the item's end goes on, from the start
            later = starts >= used
            rest_starts, rest_documents = starts[later] - used, documents[later]
            if not len(rest_starts) or rest_starts[0] > 0:
                rest_starts = np.concatenate(([0], rest_starts))
                rest_documents = np.concatenate(
                    (documents[len(runs) - 1 : len(runs)], rest_documents)
                )
            rest = Partial(tokens[used:], rest_starts, rest_documents)
        self.buffers[split] = rest
        return item

    def _item(self, i: int, buffer: Partial, pipe: Pipeline) -> Iterator[Any]:
        """Split ``i``'s next item, committed to the progress right before it is handed
        over."""
        progress, split = self.progress, self.splits[i]
        item = self._cut(split, buffer)
        # The progress with this item, made first; it is committed right before the
        # ``yield`` with no call in between, so a state counts exactly the items handed over
        # (a StreamingDataLoader sends it with the item).
        now_consumed, now_buffers = list(self.consumed), dict(self.buffers)
        now_emitted = progress.pack_emitted[split] + self.config.item_blocks
        pipe.publish()
        progress.pack_consumed = now_consumed
        progress.pack_buffers = now_buffers
        progress.pack_emitted[split] = now_emitted
        yield item

    def blocks(self, pipe: Pipeline) -> Iterator[dict[str, Any]]:
        """The items, read through ``pipe`` (started, its splits at :attr:`starts`)."""
        splits, emitted = self.splits, self.progress.pack_emitted
        # A state saved between two splits' turns (``pack_blocks``): the splits behind go
        # first, so the items continue in the order they would have come.
        target = max(emitted[s] for s in splits)
        for i, split in enumerate(splits):
            while emitted[split] < target:
                yield from self._item(i, self._fill(pipe, i), pipe)
        # Each split filled right before its cut: the partial items copied into each
        # progress are the others' leftovers, not whole items waiting.
        while emitted[splits[0]] < self.config.budget:
            for i in range(len(splits)):
                yield from self._item(i, self._fill(pipe, i), pipe)


def _array(positions: Sequence[int]) -> np.ndarray:
    """Row positions (a ``range``, or a list where rows were skipped) as int64."""
    if isinstance(positions, range):
        return np.arange(positions.start, positions.stop, dtype=np.int64)
    return np.array(positions, dtype=np.int64)


def estimate_blocks_per_epoch(
    split: Callable[[int], Permutation],
    num_splits: int,
    seed: int,
    read_batch_size: int,
    length: int,
    per_item: int | None = None,
) -> int:
    """A block budget from the token count of a sample of rows (about 1% of each split, at
    most 100,000 rows in all), a multiple of ``num_splits * per_item``; ``split(s)``: split
    ``s``'s rows in ``arrow`` format. Warns at the caller of the caller (the dataset's
    maker)."""
    warnings.warn(
        "blocks_per_epoch='auto' uses an approximate token-count sample; pass an "
        "explicit value for exact epoch sizing",
        stacklevel=3,
    )
    rng = random.Random(seed)
    cap = max(1, 100_000 // num_splits)
    tokens = sampled = rows = 0
    for s in range(num_splits):
        perm = split(s)
        n = len(perm)
        if n == 0:
            raise ValueError("blocks_per_epoch='auto' cannot estimate an empty dataset")
        picks = sorted(rng.sample(range(n), min(n, max(1, min((n + 99) // 100, cap)))))
        for start in range(0, len(picks), read_batch_size):
            lengths = pc.list_value_length(
                perm.__getitems__(picks[start : start + read_batch_size]).column(0)
            )
            if lengths.null_count:
                raise ValueError("pack_sequences does not support null token lists")
            tokens += int(pc.sum(lengths).as_py())
        sampled += len(picks)
        rows += n
    blocks = (tokens + sampled) * rows // sampled // length  # + one EOS a row
    unit = num_splits * (per_item or 1)
    return max(unit, blocks - blocks % unit)


def _within_memory(size: int, what: str) -> None:
    """Refuse, as a MemoryError, what would take more than the memory free now: torch and
    Python lists ask the kernel for it without a check, and an overcommitted allocation ends
    the process when it is filled."""
    free = _native.available_memory()
    if free is not None and size > free:
        raise MemoryError(f"{what} needs {size} bytes, more than the {free} free")


def check_packing(
    table: Any,
    length: int,
    eos_id: Any,
    pad_id: Any,
    blocks: Any,
    num_splits: int,
    transform: Any,
    columns: list[str] | None,
    per_item: int | None = None,
) -> None:
    if length <= 0:
        raise ValueError("pack_sequences must be greater than 0")
    _within_memory(length * 16, f"pack_sequences={length} (blocks of int64 tokens and ids)")
    if eos_id is None:
        raise ValueError("eos_id is required when pack_sequences is set")
    if pad_id is None:
        raise ValueError("pad_id is required when pack_sequences is set")
    if blocks is None:
        raise ValueError("blocks_per_epoch is required when pack_sequences is set")
    if blocks != "auto":
        if isinstance(blocks, bool) or not isinstance(blocks, int):
            raise ValueError("blocks_per_epoch must be a positive integer or 'auto'")
        if blocks <= 0:
            raise ValueError("blocks_per_epoch must be greater than 0")
        if blocks % num_splits != 0:
            raise ValueError(
                f"blocks_per_epoch ({blocks}) must be divisible by num_splits ({num_splits})"
            )
    if per_item is not None:
        if per_item <= 0:
            raise ValueError(f"pack_blocks must be greater than 0, got {per_item}")
        _within_memory(
            length * per_item * 24,
            f"pack_blocks={per_item} of pack_sequences={length} (int64 tokens and documents, "
            "int32 positions, and the partial item)",
        )
        if blocks != "auto" and blocks % (num_splits * per_item) != 0:
            raise ValueError(
                f"blocks_per_epoch ({blocks}) must be divisible by num_splits * pack_blocks "
                f"({num_splits} * {per_item}): each split gives whole items of pack_blocks "
                f"blocks; pass blocks_per_epoch={blocks - blocks % (num_splits * per_item)} "
                f"or {blocks + (num_splits * per_item) - blocks % (num_splits * per_item)}"
            )
    if transform is not None:
        raise ValueError("transform cannot be combined with pack_sequences")
    if columns is None or len(columns) != 1:
        raise ValueError(
            "pack_sequences requires columns to name exactly one list-typed column of token ids"
        )
    kind = table.schema.field(columns[0]).type
    if not (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    ):
        raise ValueError(
            f"pack_sequences requires a list-typed token column; {columns[0]} has type {kind}"
        )
    if not pa.types.is_integer(kind.value_type):
        raise ValueError(
            "pack_sequences requires a token column with integer values; "
            f"{columns[0]} has value type {kind.value_type}"
        )
