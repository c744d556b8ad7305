"""StreamingDataset: the rows of a table dealt into seeded splits, read by a pipeline of
threads, handed over one per split in turn, with a checkpoint of every split's progress
(the package's description says more)."""

from __future__ import annotations

import ctypes
import logging
import random
import threading
from collections.abc import Callable, Iterator
from multiprocessing import RawArray
from typing import Any

import numpy as np
import pyarrow as pa
from torch.utils.data import IterableDataset, get_worker_info

from ..permutation import Permutation, Transforms, permutation_builder
from ..permutation.layout import SPLIT_ID
from ..table import as_lancetorch_table
from . import state as _state
from .arguments import DEFAULT_PREFETCH_BATCHES, DEFAULT_READ_BATCH_SIZE, check_types, check_values
from .packing import PackConfig, Packer, estimate_blocks_per_epoch
from .pipeline import (
    BYTES,
    CONSUMED,
    COOKED,
    FETCH_US,
    RAW,
    SKIPPED,
    TRANSFORM_US,
    UNSCANNED,
    Pipeline,
    ReadConfig,
    Totals,
)
from .rows import take_turns
from .state import Progress, StateConfig

# The package's logger: one name for all of its modules.
logger = logging.getLogger("lancetorch.streaming")

_EPOCH_PRIME = 100003  # epoch e of seed s shuffles with seed s + e * _EPOCH_PRIME


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
        ``{"input_ids", "doc_ids"}`` int64 tensors of one block (LanceDB's), or with
        ``pack_blocks`` batches of blocks.
    eos_id : int, optional
        The token after each row when packing; needed with ``pack_sequences``.
    pad_id : int, optional
        The token that fills a split's blocks once it runs dry; needed with
        ``pack_sequences``.
    pack_blocks : int, optional
        With ``pack_sequences=L``, each sample is a batch of exactly ``(pack_blocks, L)``
        tokens of one split, with the outputs of the Loader's
        ``Tokens(max_length=L, pack=True, blocks=pack_blocks)`` named after the token column
        ``c``: ``c`` (int64 tokens), ``c_document`` (int64, the row's place in the epoch's
        stream, ``position * num_splits + split``; -1 for padding), ``c_position`` (int32,
        restarting at each document and each block), ``c_cu_seqlens`` (int32, the segments'
        ends over the flattened batch, padding, only ever at the end, in none) and
        ``c_max_seqlen`` (0-d int32). A row's EOS is its document's last token. Read it with
        ``StreamingDataLoader(ds, batch_size=None)``; a state taken between any two samples
        resumes with every token of the epoch once. ``blocks_per_epoch`` must divide by
        ``num_splits * pack_blocks``.
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
        pack_blocks: int | None = None,
        on_transform_error: str | Callable[[Exception], bool] = "raise",
        transform_queue_depth: int | None = None,
        connection_factory: Callable[[str], Any] | None = None,
        worker_info_override: Any = None,
        prefetch_batches: int | None = None,
    ) -> None:
        # Long, as its 24 arguments are: each is checked (the two calls name them all) and
        # kept as an attribute; a split would only hand them all on once more.
        super().__init__()
        if prefetch_batches is not None:
            logger.warning("prefetch_batches is deprecated and will be removed; use io_queue_depth")
            io_queue_depth = prefetch_batches
        # The version read now, for the life of the dataset (its rows are dealt once, here).
        table = as_lancetorch_table(table)._pinned_view()
        columns = check_types(
            shuffle=shuffle,
            shuffle_seed=shuffle_seed,
            epoch=epoch,
            rank=rank,
            io_queue_depth=io_queue_depth,
            counts={
                "transform_parallelism": transform_parallelism,
                "transform_queue_depth": transform_queue_depth,
                "pack_sequences": pack_sequences,
                "eos_id": eos_id,
                "pad_id": pad_id,
                "num_splits": num_splits,
                "pack_blocks": pack_blocks,
            },
            shuffle_clump_size=shuffle_clump_size,
            columns=columns,
            filter=filter,
            functions={"transform": transform, "connection_factory": connection_factory},
            on_transform_error=on_transform_error,
            worker_info_override=worker_info_override,
        )
        num_splits = world_size if num_splits is None else num_splits
        check_values(
            table,
            num_splits=num_splits,
            rank=rank,
            world_size=world_size,
            read_batch_size=read_batch_size,
            io_queue_depth=io_queue_depth,
            transform_parallelism=transform_parallelism,
            transform_queue_depth=transform_queue_depth,
            on_transform_error=on_transform_error,
            pack_sequences=pack_sequences,
            eos_id=eos_id,
            pad_id=pad_id,
            blocks_per_epoch=blocks_per_epoch,
            transform=transform,
            columns=columns,
            pack_blocks=pack_blocks,
        )
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
        self._pack_blocks = pack_blocks
        self._on_transform_error = on_transform_error
        self._transform_queue_depth = transform_queue_depth
        self._connection_factory = connection_factory
        self._worker_info_override = worker_info_override

        self._sizes: list[int] | None = None  # the rows of each split, once asked for
        self._totals = Totals()
        # Shared with worker processes: whether a plain DataLoader's workers iterated (their
        # progress never reaches this process).
        self._untracked_worker_iteration = RawArray(ctypes.c_int64, 1)
        self._live: Pipeline | None = None  # the pipeline of an iteration in this process
        self._lock = threading.Lock()
        self._owner: object | None = None  # the token of the iterator that holds this dataset

        self._perm_table = _deal(
            table, filter, shuffle, num_splits, shuffle_seed, epoch, shuffle_clump_size
        )
        if self._blocks_per_epoch == "auto":
            assert pack_sequences is not None  # checked: "auto" only with packing
            self._blocks_per_epoch = estimate_blocks_per_epoch(
                self._split, num_splits, shuffle_seed, read_batch_size, pack_sequences, pack_blocks
            )
        blocks = self._blocks_per_epoch  # an int when packing, None otherwise
        blocks = blocks if isinstance(blocks, int) else None
        config = StateConfig(
            shuffle_seed, num_splits, epoch, pack_sequences, eos_id, pad_id, blocks, pack_blocks
        )
        self._progress = Progress(config)
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
                packer = Packer(self._pack_config(), self._progress, splits)
                yield from self._run(
                    splits, packer.starts, packer.rows, packer.blocks, batched=True
                )
            else:
                progress = self._progress
                samples, starts = progress.resume_points(splits)
                # Outside a DataLoader worker the splits nobody iterates here count as far as
                # the slowest of these (a worker's progress travels with its batches instead).
                offset_too = get_worker_info() is None
                yield from self._run(
                    splits,
                    starts,
                    self._transform or Transforms.arrow2python,
                    lambda pipe: take_turns(pipe, progress, splits, samples, offset_too),
                )
        finally:
            # A plain store (no call an interrupt could stop before it): the dataset is free.
            if token is not None and self._owner is token:
                self._owner = None

    def _run(
        self,
        splits: list[int],
        starts: list[int],
        transform: Callable[[pa.RecordBatch], Any],
        consume: Callable[[Pipeline], Iterator[Any]],
        batched: bool = False,
    ) -> Iterator[Any]:
        """What ``consume`` hands over of ``splits`` read from ``starts`` through a pipeline
        (``transform`` its transform, ``batched`` as the pipeline's), the pipeline closed
        however the iteration ends."""
        perms = []
        for split, start in zip(splits, starts):
            perm = self._split(split)
            perms.append(perm.with_skip(start) if start else perm)
        config = ReadConfig(
            self._read_batch_size,
            self._io_queue_depth,
            self._transform_parallelism,
            self._transform_queue_depth,
            self._on_transform_error,
        )
        pipe = Pipeline(config, self._totals, perms, starts, transform, batched)
        self._live = pipe
        try:
            pipe.start()
            yield from consume(pipe)
        finally:
            # Plain stores first, so that an interrupt in close() still leaves the dataset
            # free and the threads on their way out.
            self._live = None
            pipe.closed = True
            pipe.close()

    def _pack_config(self) -> PackConfig:
        return PackConfig.of(
            self._pack_sequences,
            self._eos_id,
            self._pad_id,
            self._blocks_per_epoch,
            self._num_splits,
            (self._columns or ["tokens"])[0],
            self._pack_blocks,
        )

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
    def _stat(self, slot: int, live: Callable[[Pipeline], float]) -> float:
        pipe = self._live
        return live(pipe) if pipe is not None else self._totals.shared[slot]

    @property
    def bytes_loaded(self) -> int:
        """Bytes of Arrow data read, before any transform, over every iteration."""
        return int(self._stat(BYTES, lambda p: self._totals.bytes_loaded))

    @property
    def fetch_time(self) -> float:
        """Seconds spent reading rows, over every iteration."""
        return self._stat(FETCH_US, lambda p: self._totals.fetch_time * 1e6) / 1e6

    @property
    def transform_time(self) -> float:
        """Seconds spent in the transform, over every iteration."""
        return self._stat(TRANSFORM_US, lambda p: self._totals.transform_time * 1e6) / 1e6

    @property
    def raw_queue_depth(self) -> int:
        """Rows read and waiting for the transform (0 when not iterating)."""
        return int(self._stat(RAW, lambda p: p.raw_rows()))

    @property
    def prefetch_queue_depth(self) -> int:
        """Rows transformed and waiting to be yielded (0 when not iterating)."""
        return int(self._stat(COOKED, lambda p: p.cooked_rows()))

    @property
    def unscanned_rows(self) -> int:
        """Rows not yet asked for in this iteration (0 when not iterating)."""
        return int(self._stat(UNSCANNED, lambda p: p.unscanned()))

    @property
    def rows_skipped(self) -> int:
        """Rows dropped because their transform failed, over every iteration."""
        return int(self._stat(SKIPPED, lambda p: self._totals.rows_skipped))

    @property
    def consumed_rows(self) -> int:
        """Rows yielded in this iteration (0 when not iterating)."""
        return int(self._stat(CONSUMED, lambda p: p.consumed()))

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
        ``blocks_emitted_per_split`` and ``pack_buffers`` too, and ``pack_blocks`` where set).
        It counts exactly the rows (blocks) the loop received, however the loop stopped;
        resumable on another topology at a step boundary (``pack_blocks``: between any two
        samples). Under a plain multi-worker DataLoader it is refused (use
        StreamingDataLoader)."""
        if self._untracked_worker_iteration[0] and get_worker_info() is None:
            raise RuntimeError(
                "StreamingDataset cannot checkpoint a standard DataLoader with num_workers > "
                "0: its workers read ahead of the training loop and their progress never "
                "comes back. Use StreamingDataLoader instead"
            )
        return self._progress.state_dict(self._rank_splits)

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
        self._progress.load(state, self._split_sizes())

    def _split_sizes(self) -> list[int]:
        """The rows of each split."""
        if self._sizes is None:
            splits = self._perm_table.to_arrow().column(SPLIT_ID)
            ids = splits.to_numpy().astype("int64", copy=False)
            self._sizes = np.bincount(ids, minlength=self._num_splits).tolist()
        return self._sizes

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
        return _state.merge_state_dicts(states)


def _deal(
    table: Any,
    filter: str | None,
    shuffle: bool,
    num_splits: int,
    seed: int,
    epoch: int,
    clump_size: int | None,
) -> Any:
    """The permutation table that deals the rows (those ``filter`` keeps) into
    ``num_splits`` splits: by a seeded shuffle, or in table order."""
    builder = permutation_builder(table)
    if filter is not None:
        builder = builder.filter(filter)
    if shuffle:
        # Each split keeps the random order its rows were dealt in: the stream is shuffled.
        return builder.split_random(
            fixed=num_splits, seed=seed + epoch * _EPOCH_PRIME, clump_size=clump_size
        ).execute()
    return builder.split_sequential(fixed=num_splits).execute()
