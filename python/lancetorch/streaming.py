"""An elastic, resumable streaming dataset: LanceDB's ``StreamingDataset`` on lancetorch.

The rows (after an optional SQL ``filter``) are dealt into ``num_splits`` equal splits by a
seeded shuffle of lancetorch's Rust core (``shuffle_seed + epoch * 100003`` seeds it), each
split read in the random order it was dealt in; with ``shuffle=False`` both are in table order.
Rank ``r`` of ``world_size`` owns a contiguous block of splits; a DataLoader worker owns a
contiguous part of its rank's block. An iterator yields one
row per owned split in turn, so for a fixed ``(num_splits, shuffle_seed, epoch)`` the rows that
make up a global step are the same whatever the number of ranks or workers.

``state_dict()`` counts the rows each split has given; ``load_state_dict`` resumes there on
any topology whose ranks and workers divide ``num_splits`` (merge the states of all ranks with
:meth:`StreamingDataset.merge_state_dicts` first). :class:`StreamingDataLoader` is a
DataLoader that commits a worker's progress only when its batch reaches the training loop.

Rows are read a batch at a time per split (``read_batch_size`` rows, ``io_queue_depth``
batches ahead) by lancetorch's takes, and turned into samples by ``transform`` (a function of
a ``pyarrow.RecordBatch`` returning one sample per row; rows as dicts by default) on a
thread pool.
"""

from __future__ import annotations

import ctypes
import heapq
import logging
import numbers
import os
import random
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from copy import deepcopy
from multiprocessing import RawArray
from queue import Empty, SimpleQueue
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from . import _checks, _native
from .permutation import Permutation, Transforms, permutation_builder
from .permutation.layout import SPLIT_ID
from .table import as_lancetorch_table

logger = logging.getLogger(__name__)

DEFAULT_READ_BATCH_SIZE = 64
DEFAULT_PREFETCH_BATCHES = 4
_EPOCH_PRIME = 100003  # epoch e of seed s shuffles with seed s + e * _EPOCH_PRIME
_ERROR_MODES = ("raise", "skip", "warn")
_JOIN_SECONDS = 10.0  # how long the end of an iteration waits for its threads' running calls
_POLL_SECONDS = 1.0  # how often an idle thread looks whether its pipeline is closed

# Slots of the statistics shared with the process that made the dataset.
_UNSCANNED, _RAW, _COOKED, _CONSUMED, _BYTES, _FETCH_US, _TRANSFORM_US, _SKIPPED = range(8)


class _Sample(NamedTuple):
    """A row on its way through a StreamingDataLoader worker, with the dataset whose progress
    it is part of."""

    row: Any
    dataset: StreamingDataset


class _Batch(NamedTuple):
    """A collated batch and its worker's progress once the batch was made."""

    data: Any
    state: dict


class StreamingDataset(IterableDataset):
    """An elastic, resumable IterableDataset over a table (see the module's description).

    Its parameters are LanceDB's.

    Parameters
    ----------
    table : Table
        A lancetorch Table, or a LanceDB table (read as
        :func:`lancetorch.table.as_lancetorch_table` gives it).
    num_splits : int, optional
        The number of splits the rows are dealt into; by default ``world_size``. Must divide
        by ``world_size``, and by ``world_size * num_workers`` under DataLoader workers; rows
        past a multiple of it are left out.
    shuffle : bool, default True
        Deal the rows by a seeded shuffle; ``False``: in table order.
    shuffle_seed : int or None, default 0
        The shuffle's seed (``shuffle_seed + epoch * 100003`` seeds it); ``None``: drawn once
        here.
    epoch : int, default 0
        The epoch, which changes the shuffle.
    rank : int, default 0
        This rank, ``0`` to ``world_size - 1``; it owns a contiguous block of splits.
    world_size : int, default 1
        The number of ranks.
    read_batch_size : int, default 64
        Rows a take reads from a split.
    io_queue_depth : int, default 4
        Takes in flight per split, ahead of the transform.
    columns : list of str, optional
        The columns read (an unknown one is refused when iteration starts); by default all.
    shuffle_clump_size : int, optional
        Runs of this many neighbouring rows move together in the shuffle.
    filter : str, optional
        An SQL filter, evaluated by Lance; only the rows it keeps are dealt into splits. It
        must be exactly one SQL expression (see :meth:`PermutationBuilder.filter`).
    transform : callable, optional
        A function of a ``pyarrow.RecordBatch`` returning one sample per row, run on a thread
        pool; by default each row as a dict. Not with ``pack_sequences``.
    transform_parallelism : int, optional
        Batches transformed at once; by default the CPU count.
    pack_sequences : int, optional
        Pack the token lists of ``columns`` (exactly one list column of integers) into blocks
        of this many tokens, each row followed by ``eos_id``; the samples are then
        ``{"input_ids", "doc_ids"}`` int64 tensors.
    eos_id : int, optional
        The token after each row when packing; needed with ``pack_sequences``.
    pad_id : int, optional
        The token that fills a split's blocks once it runs dry; needed with
        ``pack_sequences``.
    blocks_per_epoch : int or "auto", optional
        The blocks an epoch gives, divided among the splits (it must divide by
        ``num_splits``; tokens past the budget are left out); ``"auto"`` estimates it from a
        sample of rows, with a warning. Needed with ``pack_sequences``, refused without it.
    on_transform_error : {"raise", "skip", "warn"} or callable, default "raise"
        What a failing transform does: ``"raise"`` raises; otherwise the batch is transformed
        again row by row and only the failing rows are dropped (``"warn"`` logs them, a
        callable ``handler(exc) -> bool`` says whether to drop the row or raise).
    transform_queue_depth : int, optional
        Batches of transformed rows a split may hold waiting for the consumer; by default no
        bound.
    connection_factory : callable, optional
        ``name -> table``: reopens the table in workers, so a pickled dataset carries no
        table (without it, the table itself is pickled).
    worker_info_override : Any, optional
        Used instead of ``torch.utils.data.get_worker_info()`` (its ``id`` and
        ``num_workers``) to choose this iterator's splits.
    prefetch_batches : int, optional
        The old name of ``io_queue_depth`` (deprecated; logs a warning).

    Raises
    ------
    ValueError
        For a rank, world size, split count, batch size or queue depth out of range, a
        ``num_splits`` that does not divide by ``world_size``, an unknown
        ``on_transform_error``, packing arguments missing or inconsistent, or a ``filter``
        that is not exactly one SQL expression.
    TypeError
        For an argument of the wrong type (a count, seed or id that is not an integer, a flag
        that is not a bool, ``columns`` that is not a list of names).
    """

    def __init__(
        self,
        table: Any,
        *,
        num_splits: int | None = None,
        shuffle: bool = True,
        shuffle_seed: int | None = 0,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        read_batch_size: int = DEFAULT_READ_BATCH_SIZE,
        io_queue_depth: int = DEFAULT_PREFETCH_BATCHES,
        columns: list[str] | None = None,
        shuffle_clump_size: int | None = None,
        filter: str | None = None,
        transform: Callable[[pa.RecordBatch], Any] | None = None,
        transform_parallelism: int | None = None,
        pack_sequences: int | None = None,
        eos_id: int | None = None,
        pad_id: int | None = None,
        blocks_per_epoch: int | str | None = None,
        on_transform_error: str | Callable[[Exception], bool] = "raise",
        transform_queue_depth: int | None = None,
        connection_factory: Callable[[str], Any] | None = None,
        worker_info_override: Any = None,
        prefetch_batches: int | None = None,
    ) -> None:
        super().__init__()
        if prefetch_batches is not None:
            logger.warning("prefetch_batches is deprecated and will be removed; use io_queue_depth")
            io_queue_depth = prefetch_batches
        # The version read now, for the life of the dataset (its rows are dealt once, here).
        table = as_lancetorch_table(table)._pinned_view()
        # Types first: a wrong one is refused, never converted.
        _checks.flag("shuffle", shuffle)
        _checks.optional_integer("shuffle_seed", shuffle_seed)
        _checks.integer("epoch", epoch, low=0)
        _checks.integer("rank", rank)
        _checks.integer("io_queue_depth", io_queue_depth)
        for name, value in (
            ("transform_parallelism", transform_parallelism),
            ("transform_queue_depth", transform_queue_depth),
            ("pack_sequences", pack_sequences),
            ("eos_id", eos_id),
            ("pad_id", pad_id),
            ("num_splits", num_splits),
        ):
            _checks.optional_integer(name, value)
        _checks.optional_integer("shuffle_clump_size", shuffle_clump_size, low=1)
        if columns is not None:
            columns = _checks.names("columns", columns)
        if filter is not None:
            _checks.text("filter", filter)
        for name, function in (
            ("transform", transform),
            ("connection_factory", connection_factory),
        ):
            if function is not None and not callable(function):
                raise TypeError(
                    f"{name}={function!r} is {type(function).__name__}; give a callable"
                )
        if not isinstance(on_transform_error, str) and not callable(on_transform_error):
            raise TypeError(
                f"on_transform_error={on_transform_error!r} is "
                f"{type(on_transform_error).__name__}; give 'raise', 'skip', 'warn' or a callable"
            )
        if worker_info_override is not None:
            for name in ("id", "num_workers"):
                _checks.integer(
                    f"worker_info_override.{name}", getattr(worker_info_override, name, None)
                )
        num_splits = world_size if num_splits is None else num_splits
        _check_positive(world_size, "world_size")
        _check_positive(num_splits, "num_splits")
        if not 0 <= rank < world_size:
            raise ValueError(
                f"rank ({rank}) must be between 0 and world_size - 1 ({world_size - 1})"
            )
        if num_splits % world_size != 0:
            raise ValueError(
                f"num_splits ({num_splits}) must be divisible by world_size ({world_size})"
            )
        _check_positive(read_batch_size, "read_batch_size")
        if io_queue_depth <= 0:
            raise ValueError("io_queue_depth must be greater than 0")
        if transform_parallelism is not None and transform_parallelism <= 0:
            raise ValueError("transform_parallelism must be greater than 0")
        if transform_queue_depth is not None and transform_queue_depth <= 0:
            raise ValueError("transform_queue_depth must be greater than 0")
        if on_transform_error not in _ERROR_MODES and not callable(on_transform_error):
            raise ValueError(
                "on_transform_error must be 'raise', 'skip', 'warn', or a callable, got "
                f"{on_transform_error!r}"
            )
        # An unknown column is refused when iteration starts, as LanceDB refuses it.
        if pack_sequences is not None:
            _check_packing(
                table,
                pack_sequences,
                eos_id,
                pad_id,
                blocks_per_epoch,
                num_splits,
                transform,
                columns,
            )
        elif blocks_per_epoch is not None:
            raise ValueError("blocks_per_epoch requires pack_sequences")
        if shuffle_seed is None:
            shuffle_seed = random.randrange(2**32)

        self._table = table
        self._num_splits = num_splits
        self._shuffle = shuffle
        self._shuffle_seed = shuffle_seed
        self._epoch = epoch
        self._rank = rank
        self._world_size = world_size
        self._read_batch_size = read_batch_size
        self._io_queue_depth = io_queue_depth
        self._columns = None if columns is None else list(columns)
        self._shuffle_clump_size = shuffle_clump_size
        self._filter = filter
        self._transform = transform
        self._transform_parallelism = transform_parallelism
        self._pack_sequences = pack_sequences
        self._eos_id = eos_id
        self._pad_id = pad_id
        self._blocks_per_epoch = blocks_per_epoch
        self._on_transform_error = on_transform_error
        self._transform_queue_depth = transform_queue_depth
        self._connection_factory = connection_factory
        self._worker_info_override = worker_info_override

        # Progress, per split: rows given (samples) and positions read through (positions,
        # ahead of samples where rows were skipped). Splits without an entry are at
        # _resume_offset, the count every split had reached at the last complete cycle.
        self._resume_offset = 0
        self._resume_samples: dict[int, int] = {}
        self._resume_positions: dict[int, int] = {}
        # Packing: positions read, blocks given and the partial block of each split (sized
        # once the splits are built, which checks num_splits against the rows).
        self._pack_consumed: list[int] = []
        self._pack_blocks_emitted: list[int] = []
        self._pack_buffers: dict[int, dict[str, list[int]]] = {}
        self._sizes: list[int] | None = None  # the rows of each split, once asked for

        self._bytes_loaded = 0
        self._fetch_time = 0.0
        self._transform_time = 0.0
        self._rows_skipped = 0
        # Shared with worker processes: the statistics, and whether a plain DataLoader's
        # workers iterated (their progress never reaches this process).
        self._worker_stats = RawArray(ctypes.c_int64, 8)
        self._untracked_worker_iteration = RawArray(ctypes.c_int64, 1)
        self._live: _Pipeline | None = None  # the pipeline of an iteration in this process
        self._lock = threading.Lock()
        self._owner: object | None = None  # the token of the iterator that holds this dataset
        self._checkpoint_invalid_reason: str | None = None
        self._consumer_checkpoint_requires_uniform = False

        builder = permutation_builder(table)
        if filter is not None:
            builder = builder.filter(filter)
        if shuffle:
            # Each split keeps the random order its rows were dealt in: the stream is shuffled.
            builder = builder.split_random(
                fixed=num_splits,
                seed=shuffle_seed + epoch * _EPOCH_PRIME,
                clump_size=shuffle_clump_size,
            )
        else:
            builder = builder.split_sequential(fixed=num_splits)
        self._perm_table = builder.execute()
        self._pack_consumed = [0] * num_splits
        self._pack_blocks_emitted = [0] * num_splits
        if self._blocks_per_epoch == "auto":
            self._blocks_per_epoch = self._estimate_blocks_per_epoch()
        per_rank = num_splits // world_size
        self._rank_splits = list(range(rank * per_rank, (rank + 1) * per_rank))

    # -- which splits -------------------------------------------------------------------------
    def _resolve_my_splits(self) -> list[int]:
        """The splits this process reads: its rank's, or its worker's part of them."""
        real = get_worker_info()
        info = real
        if self._worker_info_override is not None:
            if real is not None:
                logger.warning(
                    "worker_info_override is set but get_worker_info() also returned a "
                    "non-None value; ignoring the real torch worker info and using the "
                    "override instead, which may duplicate or drop rows"
                )
            info = self._worker_info_override
        if info is None:
            return list(self._rank_splits)
        owned = len(self._rank_splits)
        if owned % info.num_workers != 0:
            raise ValueError(
                f"Number of rank splits ({owned}) must be divisible by num_workers "
                f"({info.num_workers}); choose num_splits divisible by world_size * num_workers"
            )
        per_worker = owned // info.num_workers
        return self._rank_splits[info.id * per_worker : (info.id + 1) * per_worker]

    def _split(self, split: int) -> Permutation:
        perm = Permutation.from_tables(self._table, self._perm_table, split=split)
        if self._columns is not None:
            perm = perm.select_columns(self._columns)
        return perm.with_format("arrow")

    # -- iteration ----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        return self._iter()

    def _iter(self, *, transport: bool = False) -> Iterator[Any]:
        """Rows (or packed blocks); with ``transport`` the iterator of a StreamingDataLoader,
        which holds this dataset already."""
        # The token is made before the dataset is taken, and the dataset taken inside the
        # ``try``: an interrupt at any point leaves it free again.
        token = None if transport else object()
        try:
            if token is not None:
                self._acquire(token)
            if get_worker_info() is not None and not transport:
                self._untracked_worker_iteration[0] = 1
            splits = self._resolve_my_splits()
            if not splits:
                return
            if self._pack_sequences is not None:
                yield from _Packer(self, splits).blocks()
            else:
                yield from self._rows(splits)
        finally:
            # A plain store (no call an interrupt could stop before it): the dataset is free.
            if token is not None and self._owner is token:
                self._owner = None

    def _rows(self, splits: list[int]) -> Iterator[Any]:
        samples = [self._resume_samples.get(s, self._resume_offset) for s in splits]
        starts = [self._resume_positions.get(s, c) for s, c in zip(splits, samples)]
        counts = list(samples)  # rows given per split, these included
        last = len(splits) - 1
        # Outside a DataLoader worker the splits nobody iterates here count as far as the
        # slowest of these (a worker's progress travels with its batches instead).
        offset_too = get_worker_info() is None
        pipe = _Pipeline(self, splits, starts, self._transform or Transforms.arrow2python)
        self._live = pipe
        try:
            pipe.start()
            # Each row is counted right before its ``yield``, with no call in between: a state
            # taken between two ``next()`` counts every row handed over and no other, as an
            # interrupt cannot fall between the count and the hand-over, and one raised
            # before it (in ``pop`` or ``publish``) leaves the row uncounted.
            #
            # A state saved between two splits' turns resumes the splits behind first, so the
            # rows continue in the order they would have come.
            if len(set(samples)) > 1:
                target = max(samples)
                behind = [(c, s, i) for i, (c, s) in enumerate(zip(samples, splits)) if c < target]
                heapq.heapify(behind)
                while behind:
                    count, split, i = heapq.heappop(behind)
                    if not pipe.ready(i):
                        return
                    position, row = pipe.pop(i)
                    if count + 1 < target:
                        heapq.heappush(behind, (count + 1, split, i))
                    counts[i] = count + 1
                    offset = min(counts)
                    pipe.publish()
                    self._resume_samples[split] = count + 1
                    self._resume_positions[split] = position + 1
                    if offset_too:
                        self._resume_offset = offset
                    yield row
            # A cycle runs only when every split can give a row (they run dry together
            # unless rows were skipped).
            while all(pipe.ready(i) for i in range(len(splits))):
                for i, split in enumerate(splits):
                    position, row = pipe.pop(i)
                    counts[i] += 1
                    if i == last:  # a whole cycle: every split is one further
                        offset = counts[i]
                        pipe.publish()
                    self._resume_samples[split] = counts[i]
                    self._resume_positions[split] = position + 1
                    if i == last and offset_too:
                        self._resume_offset = offset
                    yield row
        finally:
            # Plain stores first, so that an interrupt in close() still leaves the dataset
            # free and the threads on their way out.
            self._live = None
            pipe.closed = True
            pipe.close()

    # -- one iterator at a time ---------------------------------------------------------------
    def _acquire(self, token: object) -> None:
        """Make ``token`` the holder of this dataset (release it with ``_release`` in a
        ``finally`` that starts before this call)."""
        with self._lock:
            if self._owner is not None or self._live is not None:
                raise RuntimeError(
                    "StreamingDataset does not support concurrent iteration. Only one active "
                    "iterator per dataset instance is allowed; finish or close the other one"
                )
            self._owner = token

    def _release(self, token: object) -> None:
        if self._owner is token:  # plain stores: no lock an interrupt could leave held
            self._owner = None

    # -- statistics ---------------------------------------------------------------------------
    def _stat(self, slot: int, live: Callable[[_Pipeline], float]) -> float:
        pipe = self._live
        return live(pipe) if pipe is not None else self._worker_stats[slot]

    @property
    def bytes_loaded(self) -> int:
        """Bytes of Arrow data read, before any transform, over every iteration."""
        return int(self._stat(_BYTES, lambda p: self._bytes_loaded))

    @property
    def fetch_time(self) -> float:
        """Seconds spent reading rows, over every iteration."""
        return self._stat(_FETCH_US, lambda p: self._fetch_time * 1e6) / 1e6

    @property
    def transform_time(self) -> float:
        """Seconds spent in the transform, over every iteration."""
        return self._stat(_TRANSFORM_US, lambda p: self._transform_time * 1e6) / 1e6

    @property
    def raw_queue_depth(self) -> int:
        """Rows read and waiting for the transform (0 when not iterating)."""
        return int(self._stat(_RAW, lambda p: p.raw_rows()))

    @property
    def prefetch_queue_depth(self) -> int:
        """Rows transformed and waiting to be yielded (0 when not iterating)."""
        return int(self._stat(_COOKED, lambda p: p.cooked_rows()))

    @property
    def unscanned_rows(self) -> int:
        """Rows not yet asked for in this iteration (0 when not iterating)."""
        return int(self._stat(_UNSCANNED, lambda p: p.unscanned()))

    @property
    def rows_skipped(self) -> int:
        """Rows dropped because their transform failed, over every iteration."""
        return int(self._stat(_SKIPPED, lambda p: self._rows_skipped))

    @property
    def consumed_rows(self) -> int:
        """Rows yielded in this iteration (0 when not iterating)."""
        return int(self._stat(_CONSUMED, lambda p: p.consumed()))

    # -- pickling -----------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_table_name"] = self._table.name
        if self._connection_factory is not None:
            state["_table"] = None  # reopened by the factory: no connection state travels
        state["_live"] = None
        state["_lock"] = None
        state["_owner"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        name = state.pop("_table_name")
        self.__dict__.update(state)
        self._lock = threading.Lock()
        if self._table is None:
            factory = self._connection_factory
            if factory is None:
                raise RuntimeError(
                    f"this dataset holds no table '{name}' and has no connection_factory to "
                    "reopen it; pass connection_factory=(name -> table) when making it"
                )
            self._table = as_lancetorch_table(factory(name))._pinned_view()

    # -- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The progress of every split: ``shuffle_seed``, ``num_splits``, ``epoch``,
        ``samples_consumed_per_split`` and ``positions_consumed_per_split`` (packed:
        ``blocks_emitted_per_split`` and ``pack_buffers`` too). It counts exactly the rows
        (blocks) the loop received, however the loop stopped; resumable on another topology at
        a step boundary. Under a plain multi-worker DataLoader it is refused (use
        StreamingDataLoader)."""
        if self._untracked_worker_iteration[0] and get_worker_info() is None:
            raise RuntimeError(
                "StreamingDataset cannot checkpoint a standard DataLoader with num_workers > "
                "0: its workers read ahead of the training loop and their progress never "
                "comes back. Use StreamingDataLoader instead"
            )
        if self._checkpoint_invalid_reason is not None:
            raise RuntimeError(
                "StreamingDataset checkpointing is invalid because "
                f"{self._checkpoint_invalid_reason}. Load the last valid checkpoint into a "
                "fresh dataset before continuing"
            )
        state = self._checkpoint_snapshot()
        key = (
            "blocks_emitted_per_split"
            if self._pack_sequences is not None
            else "samples_consumed_per_split"
            if self._consumer_checkpoint_requires_uniform
            else None
        )
        if key is not None and len({state[key][s] for s in self._rank_splits}) > 1:
            raise RuntimeError(
                "checkpointing is only safe at a complete logical step boundary, when every "
                "split assigned to this rank has the same count; consume more batches before "
                "calling state_dict()"
            )
        return state

    def _checkpoint_snapshot(self) -> dict:
        state: dict[str, Any] = {
            "shuffle_seed": self._shuffle_seed,
            "num_splits": self._num_splits,
            "epoch": self._epoch,
        }
        if self._pack_sequences is not None:
            state.update(
                pack_sequences=self._pack_sequences,
                eos_id=self._eos_id,
                pad_id=self._pad_id,
                blocks_per_epoch=self._blocks_per_epoch,
                samples_consumed_per_split=list(self._pack_consumed),
                blocks_emitted_per_split=list(self._pack_blocks_emitted),
                pack_buffers=deepcopy(self._pack_buffers),
            )
            return state
        samples = [
            self._resume_samples.get(s, self._resume_offset) for s in range(self._num_splits)
        ]
        state["samples_consumed_per_split"] = samples
        # A split's position is never behind its count (an older state's positions may be,
        # for a split this process did not read).
        state["positions_consumed_per_split"] = [
            max(self._resume_positions.get(s, samples[s]), samples[s])
            for s in range(self._num_splits)
        ]
        return state

    def _invalidate_checkpoint(self, reason: str) -> None:
        if self._checkpoint_invalid_reason is None:
            self._checkpoint_invalid_reason = reason

    def _commit_worker_state(self, state: dict, *, require_uniform: bool) -> None:
        """Take in the progress of a worker batch that reached the training loop."""
        for key in ("shuffle_seed", "num_splits", "epoch"):
            if state.get(key) != getattr(self, f"_{key}"):
                raise ValueError(
                    f"{key} mismatch in worker checkpoint: {state.get(key)} != "
                    f"{getattr(self, f'_{key}')}"
                )
        self._consumer_checkpoint_requires_uniform |= require_uniform
        if self._pack_sequences is not None:
            buffers = state["pack_buffers"]
            for split in range(self._num_splits):
                theirs = (
                    state["blocks_emitted_per_split"][split],
                    state["samples_consumed_per_split"][split],
                )
                if theirs > (self._pack_blocks_emitted[split], self._pack_consumed[split]):
                    self._pack_blocks_emitted[split], self._pack_consumed[split] = theirs
                    buffer = buffers.get(split, buffers.get(str(split)))
                    if buffer is None:
                        self._pack_buffers.pop(split, None)
                    else:
                        self._pack_buffers[split] = deepcopy(buffer)
            return
        samples = state["samples_consumed_per_split"]
        positions = state.get("positions_consumed_per_split", samples)
        for split, count in enumerate(samples):
            mine = self._resume_samples.get(split, self._resume_offset)
            self._resume_samples[split] = max(mine, int(count))
        for split, position in enumerate(positions):
            mine = self._resume_positions.get(split, self._resume_samples[split])
            self._resume_positions[split] = max(mine, int(position))
        self._resume_offset = min(self._resume_samples.values())

    def load_state_dict(self, state: dict) -> None:
        """Resume from :meth:`state_dict` (of this topology, or merged from every rank's with
        :meth:`merge_state_dicts`).

        Parameters
        ----------
        state : dict
            What :meth:`state_dict` or :meth:`merge_state_dicts` returned.

        Raises
        ------
        ValueError
            When the splits, the seed or the epoch differ (packed: also the packing
            arguments), or the state does not hold together: a count per split, each a whole
            number from 0 to the split's rows, a split's position never behind its sample
            count (packed: at most ``blocks_per_epoch / num_splits`` blocks a split).
        TypeError
            For a state that is not a dict.
        """
        packed = self._pack_sequences is not None
        checked = _checked_state(state, "state", self._split_sizes(), self._pack_budget())
        for key in ("num_splits", "shuffle_seed"):
            if state[key] != getattr(self, f"_{key}"):
                raise ValueError(
                    f"{key} mismatch: checkpoint has {state[key]}, current dataset has "
                    f"{getattr(self, f'_{key}')}"
                )
        if state["epoch"] != self._epoch:
            raise ValueError(
                f"the state was saved in epoch {state['epoch']} and this dataset reads epoch "
                f"{self._epoch} (another order of the rows): make the dataset with "
                f"epoch={state['epoch']} to finish that epoch, or start epoch {self._epoch} "
                "fresh, without load_state_dict"
            )
        if ("pack_buffers" in state) != packed:
            raise ValueError(
                "a packed state (with pack_buffers) resumes only a dataset with "
                "pack_sequences, and an unpacked one only a dataset without: "
                f"this dataset has pack_sequences={self._pack_sequences}"
            )
        self._consumer_checkpoint_requires_uniform = False
        if packed:
            for key in ("pack_sequences", "eos_id", "pad_id", "blocks_per_epoch"):
                if state.get(key) != getattr(self, f"_{key}"):
                    raise ValueError(
                        f"{key} mismatch: checkpoint has {state.get(key)}, current dataset "
                        f"has {getattr(self, f'_{key}')}"
                    )
            self._pack_consumed = checked["samples_consumed_per_split"]
            self._pack_blocks_emitted = checked["blocks_emitted_per_split"]
            self._pack_buffers = checked["pack_buffers"]
            return
        samples = checked["samples_consumed_per_split"]
        if isinstance(samples, list):
            self._resume_offset = min(samples)
            self._resume_samples = dict(enumerate(samples))
        else:  # one count for every split
            self._resume_offset, self._resume_samples = samples, {}
        positions = checked.get("positions_consumed_per_split")  # absent in older states
        self._resume_positions = {} if positions is None else dict(enumerate(positions))

    def _split_sizes(self) -> list[int]:
        """The rows of each split."""
        if self._sizes is None:
            splits = self._perm_table.to_arrow().column(SPLIT_ID)
            ids = splits.to_numpy().astype("int64", copy=False)
            self._sizes = np.bincount(ids, minlength=self._num_splits).tolist()
        return self._sizes

    def _pack_budget(self) -> int | None:
        """The blocks a split gives in an epoch when packing."""
        blocks = self._blocks_per_epoch
        return blocks // self._num_splits if isinstance(blocks, int) else None

    @staticmethod
    def merge_state_dicts(states: list[dict]) -> dict:
        """One state from the states of every rank of a run (each knows its own splits
        exactly): per split, the furthest progress. Give the result to every rank of the next
        run, whatever its size.

        Parameters
        ----------
        states : list of dict
            The :meth:`state_dict` of every rank.

        Returns
        -------
        dict
            A state for :meth:`load_state_dict`.

        Raises
        ------
        ValueError
            When there are no states, a state does not hold together (as
            :meth:`load_state_dict` checks it, but for the split sizes), or the states are of
            different runs (or, packed, not of one global step).
        TypeError
            For a state that is not a dict.
        """
        if not states:
            raise ValueError("merge_state_dicts requires at least one state dict")
        checked = [_checked_state(state, f"states[{k}]") for k, state in enumerate(states)]
        first = states[0]
        packed = "pack_buffers" in first
        keys = ["shuffle_seed", "num_splits", "epoch"]
        if packed:
            keys += ["pack_sequences", "eos_id", "pad_id", "blocks_per_epoch"]
        for state in states[1:]:
            if ("pack_buffers" in state) != packed:
                raise ValueError("cannot merge packed and unpacked state dicts")
            for key in keys:
                if state.get(key) != first.get(key):
                    raise ValueError(
                        f"{key} mismatch across state dicts: {state.get(key)} != {first.get(key)}"
                    )
        merged = dict(first)
        n = first["num_splits"]
        if not packed:

            def per_split(value: Any) -> list[int]:
                return value if isinstance(value, list) else [value] * n

            samples = [per_split(c["samples_consumed_per_split"]) for c in checked]
            positions = [
                per_split(c.get("positions_consumed_per_split", c["samples_consumed_per_split"]))
                for c in checked
            ]
            # Per split the furthest count and the furthest position: the state with the
            # largest count has a position at least as large, so the merged position is never
            # behind the merged count.
            merged["samples_consumed_per_split"] = [max(c) for c in zip(*samples)]
            merged["positions_consumed_per_split"] = [max(p) for p in zip(*positions)]
            return merged
        consumed, emitted, buffers = [], [], {}
        for split in range(n):
            owner = max(
                checked,
                key=lambda c: (
                    c["blocks_emitted_per_split"][split],
                    c["samples_consumed_per_split"][split],
                ),
            )
            consumed.append(owner["samples_consumed_per_split"][split])
            emitted.append(owner["blocks_emitted_per_split"][split])
            if split in owner["pack_buffers"]:
                buffers[split] = owner["pack_buffers"][split]
        if len(set(emitted)) > 1:
            raise ValueError(
                "packed state dicts were not captured at the same global step or do not "
                "cover every rank"
            )
        merged.update(
            samples_consumed_per_split=consumed,
            blocks_emitted_per_split=emitted,
            pack_buffers=buffers,
        )
        return merged

    # -- packing ------------------------------------------------------------------------------
    def _estimate_blocks_per_epoch(self) -> int:
        """A block budget from the token count of a sample of rows (about 1% of each split, at
        most 100,000 rows in all)."""
        warnings.warn(
            "blocks_per_epoch='auto' uses an approximate token-count sample; pass an "
            "explicit value for exact epoch sizing",
            stacklevel=3,
        )
        rng = random.Random(self._shuffle_seed)
        cap = max(1, 100_000 // self._num_splits)
        tokens = sampled = rows = 0
        for split in range(self._num_splits):
            perm = self._split(split)
            n = len(perm)
            if n == 0:
                raise ValueError("blocks_per_epoch='auto' cannot estimate an empty dataset")
            picks = sorted(rng.sample(range(n), min(n, max(1, min((n + 99) // 100, cap)))))
            for start in range(0, len(picks), self._read_batch_size):
                lengths = pc.list_value_length(
                    perm.__getitems__(picks[start : start + self._read_batch_size]).column(0)
                )
                if lengths.null_count:
                    raise ValueError("pack_sequences does not support null token lists")
                tokens += int(pc.sum(lengths).as_py())
            sampled += len(picks)
            rows += n
        length = self._pack_sequences
        assert length is not None  # estimated only for packing
        blocks = (tokens + sampled) * rows // sampled // length  # + one EOS a row
        return max(self._num_splits, blocks - blocks % self._num_splits)


def _check_positive(value: Any, name: str) -> None:
    if _checks.integer(name, value) <= 0:
        raise ValueError(f"{name} must be a whole number greater than 0, got {value!r}")


def _within_memory(size: int, what: str) -> None:
    """Refuse, as a MemoryError, what would take more than the memory free now: torch and
    Python lists ask the kernel for it without a check, and an overcommitted allocation ends
    the process when it is filled."""
    free = _native.available_memory()
    if free is not None and size > free:
        raise MemoryError(f"{what} needs {size} bytes, more than the {free} free")


def _whole(value: Any, what: str, low: int | None, high: int | None, unit: str) -> int:
    """``value`` as an int, refused unless it is a whole number from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(
            f"{what} must be a whole number, got {value!r} ({type(value).__name__}); pass the "
            "state that state_dict() or merge_state_dicts() returned"
        )
    number = int(value)
    if (low is not None and number < low) or (high is not None and number > high):
        bounds = f"at least {low}" if high is None else f"from {low} to {high}"
        raise ValueError(
            f"{what} is {number}, but it counts {unit}: {bounds}. The state is not of this "
            "dataset (another table, filter or num_splits) or was edited; pass the state that "
            "state_dict() or merge_state_dicts() returned"
        )
    return number


def _checked_state(
    state: Any, name: str, sizes: list[int] | None = None, budget: int | None = None
) -> dict:
    """``state`` (called ``name`` in errors) with its counts checked and made ints.

    Every split has one count of each kind; each is a whole number from 0 up to the split's
    rows (``sizes``, where known), a split's position is never behind its sample count, and
    packed, its blocks are at most ``budget`` and its partial block is lists of whole numbers.
    """
    if not isinstance(state, Mapping):
        raise TypeError(
            f"{name} must be the dict that state_dict() or merge_state_dicts() returned, not "
            f"{type(state).__name__}"
        )
    packed = "pack_buffers" in state
    needed = ["shuffle_seed", "num_splits", "epoch", "samples_consumed_per_split"]
    if packed:
        needed.append("blocks_emitted_per_split")
    for key in needed:
        if key not in state:
            raise ValueError(
                f"{name} has no '{key}' (it has {sorted(map(str, state))}); pass the state "
                "that state_dict() or merge_state_dicts() returned"
            )
    n = _whole(state["num_splits"], f"{name}['num_splits']", 1, None, "splits")
    _whole(state["epoch"], f"{name}['epoch']", None, None, "epochs")

    def size(split: int) -> int | None:
        return None if sizes is None or len(sizes) != n else sizes[split]

    def per_split(key: str, high: Callable[[int], int | None], unit: str) -> list[int]:
        values = state[key]
        if not isinstance(values, (list, tuple)) or len(values) != n:
            got = f"{len(values)} entries" if isinstance(values, (list, tuple)) else repr(values)
            raise ValueError(
                f"{name}['{key}'] must hold one count per split, {n} (num_splits), got {got}; "
                "pass the state that state_dict() or merge_state_dicts() returned"
            )
        return [
            _whole(v, f"{name}['{key}'][{s}] (split {s})", 0, high(s), unit)
            for s, v in enumerate(values)
        ]

    out = dict(state)
    if packed:
        out["samples_consumed_per_split"] = per_split(
            "samples_consumed_per_split", size, "the rows of the split read"
        )
        out["blocks_emitted_per_split"] = per_split(
            "blocks_emitted_per_split", lambda s: budget, "the blocks the split gave"
        )
        out["pack_buffers"] = _checked_buffers(state["pack_buffers"], name, n)
        return out
    samples = state["samples_consumed_per_split"]
    if isinstance(samples, (list, tuple)):
        out["samples_consumed_per_split"] = per_split(
            "samples_consumed_per_split", size, "the rows the split gave"
        )
    else:  # an older state: one count for every split
        smallest = None if sizes is None else min(sizes, default=0)
        out["samples_consumed_per_split"] = _whole(
            samples, f"{name}['samples_consumed_per_split']", 0, smallest, "the rows a split gave"
        )
    if state.get("positions_consumed_per_split") is None:
        out.pop("positions_consumed_per_split", None)
        return out
    positions = per_split(
        "positions_consumed_per_split", size, "the rows of the split read through"
    )
    counts = out["samples_consumed_per_split"]
    for split, position in enumerate(positions):
        count = counts[split] if isinstance(counts, list) else counts
        if position < count:
            raise ValueError(
                f"{name} is inconsistent for split {split}: positions_consumed_per_split is "
                f"{position}, behind samples_consumed_per_split {count} (a split's position "
                "counts every row it gave, and the rows it skipped); resuming from it would "
                "read rows twice. Pass the state that state_dict() or merge_state_dicts() "
                "returned"
            )
    out["positions_consumed_per_split"] = positions
    return out


def _checked_buffers(buffers: Any, name: str, n: int) -> dict[int, dict[str, list[int]]]:
    """A packed state's partial blocks, keyed by split number, as fresh lists of ints."""
    where = f"{name}['pack_buffers']"
    if not isinstance(buffers, Mapping):
        raise ValueError(
            f"{where} must be a dict of split -> partial block, not {type(buffers).__name__}"
        )
    out: dict[int, dict[str, list[int]]] = {}
    for key, buffer in buffers.items():
        try:
            split = int(key)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where} has the key {key!r}, which is not a split number") from err
        if not 0 <= split < n or isinstance(key, bool):
            raise ValueError(f"{where} has the key {key!r}, not a split from 0 to {n - 1}")
        if not isinstance(buffer, Mapping) or not {"tokens", "starts"} <= set(buffer):
            raise ValueError(
                f"{where}[{key!r}] must be a dict with 'tokens' and 'starts', got {buffer!r}"
            )
        lists = {}
        for part in ("tokens", "starts"):
            values = buffer[part]
            if not isinstance(values, (list, tuple)) or not all(
                isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values
            ):
                raise ValueError(
                    f"{where}[{key!r}]['{part}'] (split {split}) must be a list of whole numbers"
                )
            lists[part] = [int(v) for v in values]
        if any(not 0 <= start < len(lists["tokens"]) for start in lists["starts"]):
            raise ValueError(
                f"{where}[{key!r}] (split {split}) has document starts {lists['starts']} "
                f"outside its {len(lists['tokens'])} tokens"
            )
        out[split] = lists
    return out


def _check_packing(
    table: Any,
    length: int,
    eos_id: Any,
    pad_id: Any,
    blocks: Any,
    num_splits: int,
    transform: Any,
    columns: list[str] | None,
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


class _Call:
    """A function call for a :class:`_Threads` thread; ``done`` once ``value`` or ``error`` is
    set. ``slot``: a transform, which holds one of the pipeline's transform slots."""

    __slots__ = ("fn", "args", "slot", "done", "value", "error")

    def __init__(self, fn: Callable[..., Any], args: tuple, slot: bool) -> None:
        self.fn, self.args, self.slot = fn, args, slot
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self.fn(*self.args)
        except BaseException as exc:  # raised again in the consumer by result()
            self.error = exc
        self.done = True

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class _Threads:
    """Up to ``size`` daemon threads running the calls given to them, each finished call put
    on ``finished``.

    Only queues pass between them and the consumer, so the consumer never holds a lock they
    wait for, and an interrupt in the consumer cannot leave one held (as it can inside a
    ``ThreadPoolExecutor``, ``Future`` or ``Semaphore``, whose threads then wait forever).
    Once ``owner.closed`` is set they leave after the call in hand; calls not started are
    dropped."""

    def __init__(self, owner: _Pipeline, size: int, finished: SimpleQueue, name: str) -> None:
        self.owner, self.size, self.finished, self.name = owner, size, finished, name
        self.todo: SimpleQueue[_Call | None] = SimpleQueue()
        self.threads: list[threading.Thread] = []

    def submit(self, fn: Callable[..., Any], *args: Any, slot: bool = False) -> _Call:
        call = _Call(fn, args, slot)
        self.todo.put(call)
        if len(self.threads) < self.size:
            name = f"{self.name}-{len(self.threads)}"
            thread = threading.Thread(target=self._work, name=name, daemon=True)
            self.threads.append(thread)
            thread.start()
        return call

    def _work(self) -> None:
        while not self.owner.closed:
            try:
                call = self.todo.get(timeout=_POLL_SECONDS)  # wakes to see ``closed``
            except Empty:
                continue
            if call is None or self.owner.closed:
                return
            call.run()
            self.finished.put(call)

    def wake(self) -> None:
        """Wake every idle thread (to see ``closed`` and leave)."""
        for _ in self.threads:
            self.todo.put(None)


class _Pipeline:
    """Reads and transforms the rows of some splits ahead of the consumer.

    Per split: up to ``io_queue_depth`` takes of ``read_batch_size`` rows in flight on I/O
    threads; read batches wait (``raw``) for one of ``transform_parallelism`` transform slots;
    transformed rows wait (``cooked``) for the consumer, at most ``transform_queue_depth``
    batches of them. Each row carries its position in its split, counted from the split's
    start.

    The consumer starts it with :meth:`start` and, in a ``finally``, sets ``closed`` (a plain
    store, which no interrupt splits) before :meth:`close`, which waits for the threads a
    bounded time."""

    def __init__(
        self,
        dataset: StreamingDataset,
        splits: list[int],
        starts: list[int],
        transform: Callable[[pa.RecordBatch], Any],
    ) -> None:
        self.ds = dataset
        self.splits = splits
        self.perms = []
        for split, start in zip(splits, starts):
            perm = dataset._split(split)
            self.perms.append(perm.with_skip(start) if start else perm)
        self.starts = starts
        self.sizes = [len(p) for p in self.perms]
        self.head = [0] * len(splits)  # rows asked for, per split
        self.reading: list[deque[tuple[int, _Call]]] = [deque() for _ in splits]
        self.raw: list[deque[tuple[int, pa.RecordBatch]]] = [deque() for _ in splits]
        self.transforming: list[deque[_Call]] = [deque() for _ in splits]
        self.cooked: list[deque[tuple[int, Any]]] = [deque() for _ in splits]
        self.given = [0] * len(splits)
        self.transform = transform
        self.workers = dataset._transform_parallelism or os.cpu_count() or 1
        self.transforms = 0  # transforms started whose end the consumer has not seen yet
        depth = dataset._transform_queue_depth
        self.max_cooked = None if depth is None else depth * dataset._read_batch_size
        self.counting = threading.Lock()  # guards the dataset's running totals
        self.closed = False
        self.finished: SimpleQueue[_Call] = SimpleQueue()
        reads = len(splits) * dataset._io_queue_depth
        self.io = _Threads(self, reads, self.finished, "lancetorch-streaming-io")
        self.tx = _Threads(self, self.workers, self.finished, "lancetorch-streaming-transform")

    def start(self) -> None:
        for i in range(len(self.splits)):
            self._read_ahead(i)

    def close(self) -> None:
        """Stop the threads: calls not started are dropped, the running ones waited for at
        most ``_JOIN_SECONDS`` in all (a thread still busy then finishes on its own)."""
        self.closed = True
        self.publish(idle=True)
        for pool in (self.io, self.tx):
            pool.wake()
        deadline = time.monotonic() + _JOIN_SECONDS
        busy = 0
        for thread in self.io.threads + self.tx.threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
                busy += thread.is_alive()
        if busy:
            logger.warning(
                "%d read or transform threads were still busy %.0f s after the iteration "
                "ended; they finish their call on their own",
                busy,
                _JOIN_SECONDS,
            )

    # -- what finished ------------------------------------------------------------------------
    def _settle(self, call: _Call) -> None:
        """Note a call the threads finished (a transform gives its slot back)."""
        if call.slot:
            self.transforms -= 1

    def _drain(self) -> None:
        while not self.finished.empty():
            self._settle(self.finished.get())

    def _wait(self, call: _Call) -> Any:
        """The call's result, once it is done (its error raised here)."""
        while not call.done:
            self._settle(self.finished.get())  # interruptible, and holds no lock
        return call.result()

    # -- stages -------------------------------------------------------------------------------
    def _read(self, perm: Permutation, positions: list[int]) -> pa.RecordBatch:
        started = time.perf_counter()
        batch = perm.__getitems__(positions)
        with self.counting:  # the I/O threads add up at once
            self.ds._bytes_loaded += batch.nbytes
            self.ds._fetch_time += time.perf_counter() - started
        return batch

    def _read_ahead(self, i: int) -> None:
        size = self.ds._read_batch_size
        while len(self.reading[i]) < self.ds._io_queue_depth and self.head[i] < self.sizes[i]:
            start, n = self.head[i], min(size, self.sizes[i] - self.head[i])
            self.head[i] += n
            call = self.io.submit(self._read, self.perms[i], list(range(start, start + n)))
            self.reading[i].append((self.starts[i] + start, call))

    def _transformed(self, start: int, batch: pa.RecordBatch) -> list[tuple[int, Any]]:
        began = time.perf_counter()
        rows = self._apply(start, batch)
        with self.counting:
            self.ds._transform_time += time.perf_counter() - began
        return rows

    def _apply(self, start: int, batch: pa.RecordBatch) -> list[tuple[int, Any]]:
        try:
            out = list(self.transform(batch))
        except Exception as exc:
            if not self._skips(exc):
                raise
            return self._row_by_row(start, batch, exc)
        # A wrong count is a bug in the transform, never a row to skip.
        return [(start + j, row) for j, row in enumerate(_one_per_row(out, batch.num_rows))]

    def _row_by_row(self, start: int, batch: pa.RecordBatch, failure: Exception) -> list:
        """The batch transformed a row at a time, the failing rows dropped."""
        kept, skipped, first = [], 0, None
        for j in range(batch.num_rows):
            try:
                out = list(self.transform(batch.slice(j, 1)))
            except Exception as exc:
                if not self._skips(exc):
                    raise
                skipped, first = skipped + 1, first or exc
                continue
            kept.append((start + j, _one_per_row(out, 1)[0]))
        with self.counting:
            self.ds._rows_skipped += skipped
        if skipped and self.ds._on_transform_error == "warn":
            logger.warning(
                "Skipped %d of %d rows whose transform failed (first error: %r)",
                skipped,
                batch.num_rows,
                first or failure,
            )
        return kept

    def _skips(self, exc: Exception) -> bool:
        mode = self.ds._on_transform_error
        if callable(mode):
            return bool(mode(exc))
        return mode != "raise"

    def _room(self, i: int) -> bool:
        if self.max_cooked is None:
            return True
        size = self.ds._read_batch_size
        queued = len(self.cooked[i]) + len(self.transforming[i]) * size
        return queued + size <= self.max_cooked

    def _start_transform(self, i: int) -> None:
        start, batch = self.raw[i].popleft()
        self.transforms += 1
        self.transforming[i].append(self.tx.submit(self._transformed, start, batch, slot=True))

    def pump(self, i: int) -> None:
        """Move split ``i``'s finished work along without waiting (a failure raises here)."""
        self._drain()
        while self.reading[i] and self.reading[i][0][1].done:
            start, call = self.reading[i].popleft()
            self.raw[i].append((start, call.result()))
        while self.transforming[i] and self.transforming[i][0].done:
            self.cooked[i].extend(self.transforming[i].popleft().result())
        while self.raw[i] and self._room(i) and self.transforms < self.workers:
            self._start_transform(i)
        self._read_ahead(i)

    def ready(self, i: int) -> bool:
        """Whether split ``i`` has a row for the consumer, waiting for one if it comes."""
        self.pump(i)
        while not self.cooked[i]:
            if self.transforming[i]:
                rows = self._wait(self.transforming[i][0])
                self.transforming[i].popleft()
                self.cooked[i].extend(rows)
            elif self.raw[i]:
                while self.transforms >= self.workers:  # wait for a slot
                    self._settle(self.finished.get())
                self._start_transform(i)
            elif self.reading[i]:
                batch = self._wait(self.reading[i][0][1])
                start, _ = self.reading[i].popleft()
                self.raw[i].append((start, batch))
            else:
                return False  # the split is done
            self.pump(i)
        return True

    def pop(self, i: int) -> tuple[int, Any]:
        """The next row of split ``i`` (``ready`` said there is one) and its position."""
        entry = self.cooked[i].popleft()
        self.pump(i)
        self.given[i] += 1
        return entry

    # -- statistics ---------------------------------------------------------------------------
    def raw_rows(self) -> int:
        return sum(b.num_rows for q in self.raw for _, b in q)

    def cooked_rows(self) -> int:
        return sum(len(q) for q in self.cooked)

    def unscanned(self) -> int:
        return sum(s - h for s, h in zip(self.sizes, self.head))

    def consumed(self) -> int:
        return sum(self.given)

    def publish(self, idle: bool = False) -> None:
        """Copy the statistics where the process that made the dataset can read them."""
        stats, ds = self.ds._worker_stats, self.ds
        stats[_UNSCANNED] = self.unscanned()
        stats[_RAW] = 0 if idle else self.raw_rows()
        stats[_COOKED] = 0 if idle else self.cooked_rows()
        stats[_CONSUMED] = self.consumed()
        stats[_BYTES] = ds._bytes_loaded
        stats[_FETCH_US] = int(ds._fetch_time * 1e6)
        stats[_TRANSFORM_US] = int(ds._transform_time * 1e6)
        stats[_SKIPPED] = ds._rows_skipped


def _one_per_row(out: Any, n: int) -> list:
    rows = list(out)
    if len(rows) != n:
        raise ValueError(
            f"transform returned {len(rows)} rows for a batch of {n}; transforms must return "
            "exactly one output row per input row. To drop bad rows, raise inside the "
            "transform and pass on_transform_error='skip'"
        )
    return rows


class _Packer:
    """Token lists of the owned splits packed into blocks of ``pack_sequences`` tokens, one
    block per split in turn, ``blocks_per_epoch / num_splits`` blocks per split (padded with
    ``pad_id`` once a split runs dry; tokens past the budget are left out)."""

    def __init__(self, dataset: StreamingDataset, splits: list[int]) -> None:
        self.ds, self.splits = dataset, splits
        length, blocks = dataset._pack_sequences, dataset._blocks_per_epoch
        eos, pad = dataset._eos_id, dataset._pad_id
        if length is None or not isinstance(blocks, int) or eos is None or pad is None:
            raise RuntimeError("packing runs once pack_sequences and blocks_per_epoch are set")
        self.length, self.eos, self.pad = length, eos, pad
        self.budget = blocks // dataset._num_splits

    def blocks(self) -> Iterator[dict[str, Any]]:
        import torch

        ds, splits = self.ds, self.splits
        emitted = ds._pack_blocks_emitted
        if len({emitted[s] for s in splits}) > 1:
            raise ValueError(
                "Packed checkpoint is not aligned across the splits owned by this iterator; "
                "merge every rank state with merge_state_dicts before resuming on a different "
                "topology"
            )
        consumed = list(ds._pack_consumed)
        buffers = deepcopy(ds._pack_buffers)
        starts = [consumed[s] for s in splits]
        last = len(splits) - 1
        pipe = _Pipeline(ds, splits, starts, _token_lists)
        ds._live = pipe
        try:
            pipe.start()

            def fill(i: int) -> dict[str, list[int]]:
                buffer = buffers.setdefault(splits[i], {"tokens": [], "starts": []})
                while len(buffer["tokens"]) < self.length and pipe.ready(i):
                    position, tokens = pipe.pop(i)
                    buffer["starts"].append(len(buffer["tokens"]))
                    buffer["tokens"].extend(tokens)
                    buffer["tokens"].append(self.eos)
                    consumed[splits[i]] = position + 1
                return buffer

            while emitted[splits[0]] < self.budget:
                full = [fill(i) for i in range(len(splits))]
                for i, buffer in enumerate(full):
                    tokens = buffer["tokens"]
                    tokens.extend([self.pad] * (self.length - len(tokens)))
                    doc_ids = torch.zeros(self.length, dtype=torch.int64)
                    doc_ids[[s for s in buffer["starts"] if 0 < s < self.length]] = 1
                    block = {
                        "input_ids": torch.tensor(tokens[: self.length], dtype=torch.int64),
                        "doc_ids": doc_ids.cumsum(0),
                    }
                    del tokens[: self.length]
                    buffer["starts"] = [
                        s - self.length for s in buffer["starts"] if s >= self.length
                    ]
                    # The progress with this block, made first; it is committed right before
                    # the ``yield`` with no call in between, so a state counts exactly the
                    # blocks handed over (a StreamingDataLoader sends it with the block).
                    now_consumed, now_buffers = list(consumed), deepcopy(buffers)
                    now_emitted = emitted[splits[i]] + 1
                    if i == last:
                        pipe.publish()
                    ds._pack_consumed = now_consumed
                    ds._pack_buffers = now_buffers
                    emitted[splits[i]] = now_emitted
                    yield block
        finally:
            # Plain stores first, so that an interrupt in close() still leaves the dataset
            # free and the threads on their way out.
            ds._live = None
            pipe.closed = True
            pipe.close()


def _token_lists(batch: pa.RecordBatch) -> list[list[int]]:
    column = batch.column(0)
    if column.null_count or pc.list_flatten(column).null_count:
        raise ValueError("pack_sequences does not support null token lists or values")
    return column.to_pylist()


# ---- the DataLoader ----------------------------------------------------------------------------
class _Collate:
    """A collate function that also carries the worker's progress once the batch is made."""

    def __init__(self, collate_fn: Callable[[list], Any]) -> None:
        self.collate_fn = collate_fn

    def __call__(self, samples: Any) -> _Batch:
        try:
            if isinstance(samples, list):
                if not samples:
                    return _Batch(self.collate_fn(samples), {})
                data = self.collate_fn([s.row for s in samples])
                dataset = samples[-1].dataset
            else:  # batch_size=None: one sample at a time
                data, dataset = self.collate_fn(samples.row), samples.dataset
        except StopIteration as exc:
            raise RuntimeError("collate_fn raised StopIteration before returning a batch") from exc
        return _Batch(data, dataset._checkpoint_snapshot())


class _Adapter(IterableDataset):
    """What a StreamingDataLoader iterates: the dataset's rows, each with the dataset."""

    def __init__(self, dataset: StreamingDataset) -> None:
        super().__init__()
        self.dataset = dataset

    def __iter__(self) -> Iterator[_Sample]:
        for row in self.dataset._iter(transport=True):
            yield _Sample(row, self.dataset)


class _Committing:
    """A StreamingDataLoader's iterator: a batch's progress is committed to the dataset as
    the batch is returned, and a batch that fails on the way spoils the checkpoint."""

    def __init__(self, inner: Any, dataset: StreamingDataset, token: object, uniform: bool) -> None:
        self._inner, self._dataset, self._token, self._uniform = inner, dataset, token, uniform
        self._done = False

    def __iter__(self) -> _Committing:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        try:
            batch = next(self._inner)
        except StopIteration:
            self._finish()
            raise
        except BaseException as exc:
            self._dataset._invalidate_checkpoint(
                f"a DataLoader batch failed before it was returned: {exc}"
            )
            raise
        try:
            self._dataset._commit_worker_state(batch.state, require_uniform=self._uniform)
        except BaseException as exc:
            self._dataset._invalidate_checkpoint(
                f"a DataLoader batch failed before it was returned: {exc}"
            )
            raise
        return batch.data

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._dataset._release(self._token)

    def _shutdown_workers(self) -> None:
        if self._done:
            return
        shutdown = getattr(self._inner, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        self._finish()

    def __del__(self) -> None:
        try:
            self._shutdown_workers()
        except BaseException:
            pass

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__.get("_inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)


class StreamingDataLoader(DataLoader):
    """A DataLoader over a :class:`StreamingDataset` whose checkpoints count only the batches
    the training loop received (workers read ahead; their progress comes back with each
    batch). With more than one worker, ``state_dict()`` works at complete steps (every split
    of the rank at one count).

    Parameters
    ----------
    dataset : StreamingDataset
        The dataset read (not a subclass that overrides ``__iter__``).
    *args : Any
        DataLoader's arguments.
    **kwargs : Any
        DataLoader's arguments; ``persistent_workers=True``, ``drop_last=True`` and
        ``in_order=False`` are refused, as they would make a checkpoint wrong.

    Raises
    ------
    TypeError
        For a dataset that is not a StreamingDataset, or overrides ``__iter__``.
    ValueError
        For ``persistent_workers=True``, ``drop_last=True`` or ``in_order=False``, or a
        ``batch_size`` past both the samples an epoch gives and 2**20.
    """

    def __init__(self, dataset: StreamingDataset, *args: Any, **kwargs: Any) -> None:
        if not isinstance(dataset, StreamingDataset):
            raise TypeError("StreamingDataLoader requires a StreamingDataset")
        if type(dataset).__iter__ is not StreamingDataset.__iter__:
            raise TypeError(
                "StreamingDataLoader does not support StreamingDataset subclasses that "
                "override __iter__: they cannot report their progress with each batch"
            )
        if kwargs.get("in_order", True) is False:
            raise ValueError("StreamingDataLoader requires in_order=True for exact checkpoints")
        if kwargs.get("persistent_workers", False):
            raise ValueError(
                "StreamingDataLoader does not support persistent_workers=True: a kept worker "
                "would go on from where it was, not from the dataset's checkpoint"
            )
        size = kwargs.get("batch_size", args[0] if args else 1)
        blocks = dataset._blocks_per_epoch  # an int once the dataset is made
        samples = max(len(dataset._table), blocks if isinstance(blocks, int) else 0)
        if isinstance(size, int) and not isinstance(size, bool) and size > max(samples, 1 << 20):
            # DataLoader fills a list of batch_size slots one by one in Python before the
            # first batch: a size far past the data would run for minutes, or fill memory.
            raise ValueError(
                f"batch_size={size} is more than the {samples} samples an epoch of this dataset "
                "gives (and than 2**20); a batch holds at most all of them: pass a smaller one"
            )
        self._streaming_dataset = dataset
        super().__init__(_Adapter(dataset), *args, **kwargs)
        if self.drop_last:
            raise ValueError(
                "StreamingDataLoader does not support drop_last=True: each worker drops its "
                "own short tail, which no topology-independent checkpoint can describe"
            )
        self.collate_fn = _Collate(self.collate_fn)

    def __iter__(self) -> _Committing:  # type: ignore[override]  # yields as DataLoader's does
        dataset = self._streaming_dataset
        token = object()
        try:
            dataset._acquire(token)
            state = dataset._checkpoint_snapshot()
            packed = dataset._pack_sequences is not None
            key = (
                "blocks_emitted_per_split"
                if packed
                else "samples_consumed_per_split"
                if self.num_workers > 1
                else None
            )
            if key is not None and len({state[key][s] for s in dataset._rank_splits}) > 1:
                raise RuntimeError(
                    "StreamingDataLoader cannot start from a partial logical step; resume from "
                    "a checkpoint whose splits assigned to this rank have equal counts"
                )
            return _Committing(super().__iter__(), dataset, token, self.num_workers > 1 or packed)
        except BaseException:
            dataset._release(token)
            raise


__all__ = ["StreamingDataLoader", "StreamingDataset"]
