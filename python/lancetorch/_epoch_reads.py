"""How a Loader's epoch is read into sources of batches (``_Source``): from memory in
the sampler's order, or by windows of a table too large for memory, read through the
backend on a background thread (the next epoch's first window read during the last one).
``_EpochReads`` is the Loader's half that does it; the attributes it reads are the
Loader's, declared below."""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import numpy as np
import pyarrow as pa

from . import _native
from ._source import _Source
from .sampler import BatchSampler
from .table import Table


class _EpochReads:
    """The reads of a :class:`~lancetorch.loader.Loader`'s epoch, a mixin of it: the rows of
    each epoch (or window) handed to a ``_Source`` that makes their batches."""

    # Set by the Loader's __init__ (see there).
    _table: Table
    _rows: np.ndarray | None
    _offset: int
    _sampler: BatchSampler
    _store: _native.ColumnStore | None
    _columns: list[int]
    _names: list[str]
    _keys: list[str]
    _side: list[int]
    _side_set: set[int]
    _side_specs: dict[str, Any]
    _side_threads: int
    _threads: int
    _prefetch: int
    _dtype: str | None
    _null_value: float | None
    _per_column: bool
    _transform: Any
    _stats: dict[str, Any]
    _ahead: tuple[int, tuple[int, int], np.ndarray, Any] | None

    def _store_io(self) -> tuple[int, int, int]:
        """Bytes and requests the table's store has served this process so far, and bytes
        its node tier has (a memory table has neither: none)."""
        return self._table._backend.io_totals()

    def _in_memory(self, names: list[str]) -> tuple[_native.ColumnStore | None, list[int]]:
        """The store holding the columns and their positions there; ``(None, [])`` for a disk
        table that does not fit its cache (read by windows)."""
        held_store = self._table._backend.in_memory(names)
        if held_store is None:
            return None, []
        held, store = held_store
        position = {n: i for i, n in enumerate(held)}
        return store, [position[n] for n in names]

    def _moved(self, positions: np.ndarray, places: np.ndarray) -> None:
        """Count how far the rows at ``positions`` (of what this loader reads: a table's
        storage offsets) moved to their global ``places`` in the epoch's order."""
        if len(positions):
            self._stats["shuffle_moved"] += float(np.abs(positions - places).sum())
            self._stats["shuffle_rows"] += len(positions)

    def _prefetcher(
        self,
        store: _native.ColumnStore,
        rows: np.ndarray,
        columns: list[int],
        epoch: int = 0,
    ) -> _Source:
        # The one cut of these rows into batches, the sampler's: with drop_last a short last
        # batch is left out here, for the Rust threads and the side columns alike (each then
        # cuts the rows it is given by batch_size).
        rows = rows[: self._sampler.batched_rows(len(rows))]
        # uint32 rows (an epoch's order where the table allows) are shared, not widened.
        dtype = np.uint32 if rows.dtype == np.uint32 else np.int64
        dense = [c for i, c in enumerate(columns) if i not in self._side_set]
        side = [columns[i] for i in self._side]
        prefetcher = _native.Prefetcher(
            store,
            pa.array(np.ascontiguousarray(rows, dtype=dtype)),
            dense,
            _native.Batching(
                self._sampler.batch_size,
                drop_last=False,  # the rows are cut to the sampler's batches above
                dtype=self._dtype,
                null_value=self._null_value,
                per_column=self._per_column,
            ),
            depth=self._prefetch,
            threads=self._threads,
        )
        if not side:
            return _Source(prefetcher)
        return _Source(
            prefetcher,
            store,
            rows,
            side,
            [self._keys[i] for i in self._side],
            self._side_specs,
            self._sampler.batch_size,
            self._prefetch,
            epoch,
            self._side_threads,
            self._transform,
        )

    def _table_rows(self, positions: np.ndarray) -> np.ndarray:
        """The table rows at ``positions`` of what this loader reads: uint32 where the
        positions are (an epoch's order of a table of at most 2**32 rows), so that the epoch's
        rows take 4 bytes each, as they do reading a whole table."""
        if self._rows is None and not self._offset:
            return positions
        narrow = (
            positions.dtype == np.uint32
            and self._store is not None
            and self._store.num_rows <= 1 << 32
        )
        if self._rows is None:
            return np.add(positions, self._offset, dtype=np.uint32 if narrow else np.int64)
        if not narrow:
            return self._rows[positions]
        out = np.empty(len(positions), dtype=np.uint32)
        step = 1 << 16  # int64 rows made a slice at a time, not for the whole epoch at once
        for i in range(0, len(positions), step):
            out[i : i + step] = self._rows[positions[i : i + step]]
        return out

    def _epoch_in_memory(self, epoch: int, position: int) -> Generator[_Source, None, None]:
        start = time.perf_counter()
        order = self._sampler.shard_rows(epoch, position)
        # How far rows move, from an even sample of the epoch's rows (at most 65536).
        step = max(1, len(order) >> 16)
        places = self._sampler.shard_positions(position, 0, len(order), step)
        self._moved(order[::step].astype(np.int64), places)
        rows = self._table_rows(order)
        self._stats["index_s"] += time.perf_counter() - start
        store = self._store
        assert store is not None  # read from memory
        prefetcher = self._prefetcher(store, rows, self._columns, epoch)
        prefetcher.from_memory = True
        # The prefetcher holds the epoch's rows (4 bytes each where they fit): no other copy
        # of them stays here (but the side columns' view), nor in the sampler, while the
        # epoch runs.
        del order, rows
        self._sampler.forget_order()
        yield prefetcher

    def _epoch_by_windows(self, epoch: int, position: int) -> Generator[_Source, None, None]:
        """A table too large for memory, in the sampler's windowed order (see
        :class:`~lancetorch.sampler.Windows`): this rank's rows of each window read through
        the backend, the next window on a background thread (and, while the last window's
        batches go out, the next epoch's first window: see ``_read_ahead``); its padding,
        when asked, is read with the last window. Rows a window leaves short of a full batch
        open the next."""
        from concurrent.futures import ThreadPoolExecutor

        size = self._sampler.batch_size
        todo = self._sampler.shard_windows(epoch, position)
        ahead, self._ahead = self._ahead, None
        first = self._ahead_for(ahead, epoch, position, todo)

        def read(i: int, carried: tuple[Any, np.ndarray]) -> tuple[Any, np.ndarray, tuple, dict]:
            """Window ``todo[i]`` read, after the rows the window before left short of a
            full batch (``carried``: its store and their places there, taken from memory,
            not read again): the store, the places of the full batches' rows, the rows left
            over for the next, and what the read cost (the stats to add)."""
            if i == 0 and first is not None:
                store, local, cost = first.result()
            else:
                store, local, cost = self._read_window(epoch, position, *todo[i])
            t0 = time.perf_counter()
            if len(carried[1]):
                rows = carried[0].take(pa.array(carried[1]), None)
                tables = [pa.Table.from_batches([rows])]
                if store is not None:
                    tables.append(pa.Table.from_batches(store.batches(), schema=rows.schema))
                store = _native.ColumnStore(pa.concat_tables(tables), row_major=False)
                local = np.concatenate(
                    [np.arange(len(carried[1]), dtype=np.int64), local + len(rows)]
                )
            last = i == len(todo) - 1
            keep = len(local) if last else len(local) - len(local) % size
            local, carry = local[:keep], (store, local[keep:])
            cost["read_s"] += time.perf_counter() - t0
            if not len(local):
                return None, local, carry, cost
            return store, local, carry, cost

        columns = list(range(len(self._names)))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lancetorch-window") as pool:
            nothing = (None, np.array([], dtype=np.int64))
            pending = pool.submit(read, 0, nothing) if todo else None
            for i in range(len(todo)):
                assert pending is not None  # submitted when there is a window to read
                store, local, carry, cost = pending.result()
                for key, value in cost.items():
                    self._stats[key] += value
                if i + 1 < len(todo):
                    pending = pool.submit(read, i + 1, carry)
                else:
                    self._read_ahead(epoch + 1)
                if store is not None:  # (only the last window's rows end short of a batch)
                    yield self._prefetcher(store, local, columns, epoch)

    def _read_window(
        self, epoch: int, position: int, lo: int, hi: int
    ) -> tuple[Any, np.ndarray, dict[str, float]]:
        """This rank's rows ``lo..hi`` of ``epoch`` from global position ``position`` read
        through the backend, in read order: the store, the place of each row there, and what
        the read cost (the stats to add: store and tier bytes, how far the rows moved)."""
        places = self._sampler.shard_positions(position, lo, hi)
        return self._read_positions(places, self._sampler.rows_at(epoch, places))

    def _read_positions(
        self, places: np.ndarray, positions: np.ndarray
    ) -> tuple[Any, np.ndarray, dict[str, float]]:
        """``_read_window`` of the rows at ``positions``, at global ``places`` of the order."""
        t0 = time.perf_counter()
        cost = {
            "shuffle_moved": float(np.abs(positions - places).sum()),
            "shuffle_rows": len(positions),
        }
        store, local = None, np.array([], dtype=np.int64)
        if len(positions):
            backend = self._table._backend
            before = backend.io_totals()
            store, local = backend.read_rows(self._table_rows(positions), self._names)
            spent = np.subtract(backend.io_totals(), before).tolist()
            cost.update(store_bytes=spent[0], store_requests=spent[1], tier_bytes=spent[2])
        cost["read_s"] = time.perf_counter() - t0
        return store, local, cost

    def _read_ahead(self, epoch: int) -> None:
        """Start reading this rank's first window of ``epoch`` from its start on a thread of
        its own: the next pass's, unless ``set_epoch`` or ``load_state_dict`` say otherwise
        before it begins (then it is dropped, see ``_ahead_for``). The last window's batches
        go out meanwhile; the window is held as the next window of an epoch is."""
        from concurrent.futures import ThreadPoolExecutor

        todo = self._sampler.shard_windows(epoch, 0)
        if not todo or todo[0][0] == todo[0][1]:
            return
        places = self._sampler.shard_positions(0, *todo[0])
        positions = self._sampler.rows_at(epoch, places)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lancetorch-ahead")
        future = pool.submit(self._read_positions, places, positions)
        pool.shutdown(wait=False)  # its thread ends with the read
        self._ahead = (epoch, todo[0], positions, future)

    def _ahead_for(self, ahead: Any, epoch: int, position: int, todo: list) -> Any:
        """The read of the first window the previous pass started, for the pass reading
        ``todo`` of ``epoch`` from ``position`` where it is that very window (the same epoch,
        start, rows in the same order: a seed loaded since changes them); else None, the
        read dropped once it ends (what it read from the store and the tier still counted)."""
        if ahead is None:
            return None
        read_epoch, window, positions, future = ahead
        if position == 0 and read_epoch == epoch and todo and todo[0] == window:
            places = self._sampler.shard_positions(0, *window)
            if np.array_equal(self._sampler.rows_at(epoch, places), positions):
                return future
        try:
            _, _, cost = future.result()
        except Exception:  # a failure of a read no one will use; the pass reads its own
            return None
        for key in ("store_bytes", "store_requests", "tier_bytes"):
            self._stats[key] += cost.get(key, 0)
        return None
