"""Tables: Arrow data in memory (held by the Rust column store) or a Lance dataset on disk.

A Table is a ``torch.utils.data.Dataset``: ``len(table)`` rows, ``table.__getitems__(indices)``
gives a ``pyarrow.Table`` of those rows in the order asked, which
``lancetorch.util.tbl_to_tensor`` turns into one ``(columns, rows)`` tensor.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
import uuid
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.reduction import ForkingPickler
from typing import Any

import numpy as np
import pyarrow as pa

from . import _native
from ._arrow import as_offsets, as_offsets_unsigned, as_table, conform
from ._objectstore import is_corrupt_data, is_io_error, read_failure, within
from .query import ScanQuery, TakeQuery


class _SharedCopy:
    """A column store's rows as an Arrow IPC file in shared memory, for worker processes to map.

    Written on first use and again when the store changes (the old file is removed; workers
    that mapped it keep their mapping). Removed when this object goes or the process exits,
    and only by the process that wrote it (a forked child exiting leaves it alone); in
    /dev/shm, by multiprocessing's resource tracker if the process is killed.
    """

    def __init__(self, store: _native.ColumnStore | None = None, path: str | None = None) -> None:
        self._store = store  # a worker's copy of a parent's file: known, not owned
        self._path = path
        self._release: weakref.finalize | None = None

    def path_for(self, store: _native.ColumnStore) -> str:
        if self._store is not store or self._path is None:
            if self._release is not None:
                self._release()
            path = _write_shared(store)
            self._release = weakref.finalize(self, _unlink_if_owner, path, os.getpid())
            self._store, self._path = store, path
        return self._path


class _MemoryBackend:
    """Rows held by the Rust column store; appends make a new store that shares the old chunks."""

    def __init__(self, store: _native.ColumnStore, shared_file: str | None = None) -> None:
        self.store = store
        self._shared = _SharedCopy(store, shared_file)

    def shared_file(self) -> str:
        """The path of a shared-memory copy of the rows, written on first use."""
        return self._shared.path_for(self.store)

    @property
    def schema(self) -> pa.Schema:
        return self.store.schema

    def count_rows(self) -> int:
        return self.store.num_rows

    def take(self, offsets: list[int] | pa.Array, columns: list[int] | None) -> pa.RecordBatch:
        return self.store.take(offsets, columns)

    def to_arrow(self) -> pa.Table:
        return pa.Table.from_batches(self.store.batches(), schema=self.schema)

    def read_columns(self, columns: list[str]) -> pa.Table:
        positions = [self.schema.get_field_index(c) for c in columns]
        if -1 in positions:
            return self.to_arrow().select(columns)  # pyarrow's error names the column
        schema = pa.schema([self.schema.field(i) for i in positions])
        return pa.Table.from_batches(self.store.batches(positions), schema=schema)

    def append(self, data: pa.Table) -> None:
        self.store = self.store.appended(data)


def available_memory() -> int:
    """Bytes of memory the kernel says are available now."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _estimated_bytes(schema: pa.Schema, names: Sequence[str], rows: int) -> int:
    """Bytes the columns take in memory (variable-width columns guessed at 64 bytes a row)."""
    total = 0
    for name in names:
        t = schema.field(name).type
        try:
            if pa.types.is_fixed_size_list(t):
                total += rows * t.list_size * max(t.value_type.bit_width // 8, 1)
            else:
                total += rows * max(t.bit_width // 8, 1)
        except ValueError:  # variable width
            total += rows * 64
    return total


def _fixed_width(t: pa.DataType) -> bool:
    """Whether the row-major block can hold a column of type ``t`` (numbers up to 8 bytes)."""
    numeric = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
    timely = pa.types.is_temporal(t) and not pa.types.is_interval(t)
    return (numeric or timely) and t.bit_width <= 64


def _scan_at(rows: int) -> str:
    return f"a sequential scan, after {rows} rows (row offset {rows} was next)"


def _take_of(rows: np.ndarray) -> str:
    """A take, described by its size and first row (rows in the order they were asked)."""
    if not len(rows):
        return "a take of no rows"
    return f"a take of {len(rows)} rows starting at row offset {int(rows[0])}"


class _Count:
    """Rows read, where no progress bar is shown."""

    n = 0

    def update(self, rows: int) -> None:
        self.n += rows

    def __enter__(self) -> _Count:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def _progress(total: int, desc: str) -> Any:
    """A tqdm progress bar on a terminal or in a notebook; elsewhere a plain count (and tqdm
    is not imported at all)."""
    if (sys.stderr is not None and sys.stderr.isatty()) or "ipykernel" in sys.modules:
        from tqdm.auto import tqdm

        return tqdm(total=total, unit="rows", desc=desc, leave=False)
    return _Count()


_OPEN: weakref.WeakSet[_LanceBackend] = weakref.WeakSet()


def _fill_before_fork() -> None:
    """Before this process forks (DataLoader workers under ``fork``), fill the cache of every
    open disk table where the cache allows, so that forked workers read memory and never
    Lance. A table whose cache is off, or over its budget, is left as it is: a forked worker
    reading it raises a RuntimeError saying so."""
    for backend in list(_OPEN):
        try:
            backend.fill_cache()
        except Exception:  # a store that fails now fails again, named, where it is read
            pass


def _track_open(backend: _LanceBackend) -> None:
    """Register ``backend`` for the fill before a fork. pylance warns at every fork of a
    process that imported it, because a Lance handle used across a fork is unsafe;
    lancetorch never uses one there (see ``_LanceBackend.dataset``), so that warning is
    silenced once lancetorch opens a dataset (code that imports lance alone still gets it)."""
    _OPEN.add(backend)
    warnings.filterwarnings(
        "ignore", message="lance is not fork-safe", category=UserWarning, module="lance"
    )


os.register_at_fork(before=_fill_before_fork)


class _LanceBackend:
    """A Lance dataset read through pylance.

    With ``cache`` on (``"auto"``: when the columns read fit ``cache_budget`` bytes, default
    half the available memory; ``True``: always; ``False``: never) the columns a take needs are
    read once by sequential scan into the Rust column store, and random batches are served from
    memory from then on. Without it, random takes go to Lance sorted and are reordered in Rust.
    """

    def __init__(
        self,
        name: str,
        uri: str,
        storage_options: dict[str, str] | None,
        cache: bool | str = "auto",
        cache_budget: int | None = None,
        version: int | None = None,
        read_timeout: float | None = None,
    ) -> None:
        import lance

        if cache not in (True, False, "auto"):
            raise ValueError(f"cache must be True, False or 'auto', got {cache!r}")
        self.name = name
        self.uri = uri
        self.storage_options = storage_options
        self.cache = cache
        self.cache_budget = cache_budget
        self.read_timeout = read_timeout
        self._open(
            self.call(
                "opening the dataset",
                lance.dataset,
                uri,
                version=version,
                storage_options=storage_options,
            )
        )
        # (column names, their rows in the column store) once read; per column selection
        # asked for, the store serving it and the positions of the columns there.
        self._cached: tuple[list[str], _native.ColumnStore] | None = None
        self._served: dict[tuple[int, ...] | None, tuple[_native.ColumnStore, list[int]]] = {}
        self._refused: set[frozenset[str]] = set()  # column sets over the cache budget
        self._shared = _SharedCopy()
        self._row_ids: tuple[int, np.ndarray] | None = None  # (version, row ids)
        self._filling = threading.RLock()
        # Live Permutations over this table and the columns each reads (for the fork fill).
        self.views: weakref.WeakKeyDictionary[object, tuple[str, ...]] = weakref.WeakKeyDictionary()
        _track_open(self)

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, a read through Lance of ``what`` (words for the message):
        a storage error, or no answer within ``read_timeout`` seconds, becomes one
        StorageReadError naming the table, what was read and the limits."""
        try:
            if self.read_timeout is None:
                return fn(*args, **kwargs)
            return within(self.read_timeout, fn, *args, **kwargs)
        except BaseException as e:  # a panic in Lance's reader is a BaseException
            if not (is_io_error(e) or is_corrupt_data(e)):
                raise
            raise read_failure(e, self.name, self.uri, what, self.storage_options) from e

    def _open(self, dataset: Any) -> None:
        self._dataset = dataset
        self._pid = os.getpid()
        self._schema = dataset.schema
        self.version = dataset.version

    def location(self, cache: bool | str | None = None) -> tuple:
        """Arguments of ``Table._lance`` that reopen this version of the dataset elsewhere."""
        cache = self.cache if cache is None else cache
        return (
            self.uri,
            self.storage_options,
            cache,
            self.cache_budget,
            self.version,
            self.read_timeout,
        )

    @property
    def dataset(self) -> Any:
        """The pylance dataset, refused in a process forked from the one that opened it:
        Lance is not fork-safe, and using it there can crash the process (even through a
        handle opened anew in the child). A forked worker reads the cache instead, which the
        parent fills before it forks (see ``_fill_before_fork``)."""
        if self._pid != os.getpid():
            raise RuntimeError(
                f"the Lance dataset {self.uri} was opened before this process was forked, and "
                "Lance cannot be used across fork. This table's cache was not filled before the "
                "fork (cache=False, or its columns do not fit cache_budget): use DataLoader(..., "
                "multiprocessing_context='spawn') or 'forkserver', or allow the cache"
            )
        return self._dataset

    def fill_cache(self) -> None:
        """Before a fork: read into the cache the columns the live views of this table read
        (all of them together where the budget allows, else the newest view's, else every
        column), and the row ids; nothing when the cache is off."""
        if self._pid != os.getpid():
            return
        with contextlib.suppress(Exception):
            self.row_ids()  # one column of 8 bytes a row: a _rowid selection needs no Lance
        if self.cache is False:
            return
        views = [list(v) for v in self.views.values()]
        union = [n for n in self.schema.names if any(n in v for v in views)]
        for names in [union, *reversed(views), self.schema.names]:
            if names and self._cache_for(names) is not None:
                return

    def note_view(self, view: object, columns: list[str]) -> None:
        """A Permutation over this table that reads ``columns`` (kept while it lives)."""
        self.views[view] = tuple(columns)

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def count_rows(self) -> int:
        if self._cached is not None:
            return self._cached[1].num_rows
        return self.dataset.count_rows()

    def _cache_for(self, names: list[str]) -> tuple[list[str], _native.ColumnStore] | None:
        """The cached columns covering ``names``, reading them now if the budget allows (one
        thread at a time: the threads of a streaming read ask at once, and one scan serves
        them all)."""
        if self.cache is False:
            return None
        with self._filling:
            return self._cache_for_locked(names)

    def _cache_for_locked(self, names: list[str]) -> tuple[list[str], _native.ColumnStore] | None:
        if self._cached is not None and set(names) <= set(self._cached[0]):
            return self._cached
        have = set(names) | set(self._cached[0] if self._cached else ())
        wanted = [n for n in self.schema.names if n in have]
        if frozenset(wanted) in self._refused:
            return None
        rows = self.dataset.count_rows()
        budget = self.cache_budget if self.cache_budget is not None else available_memory() // 2
        if self.cache == "auto" and _estimated_bytes(self.schema, wanted, rows) > budget:
            self._refused.add(frozenset(wanted))  # asked again each batch: answer from memory
            return None
        # Each scanned batch goes into the store as it arrives: its fixed-width columns into
        # the row-major block (their Lance buffers are then let go), the others kept as they
        # are, so the columns are never held twice.
        schema = pa.schema([self.schema.field(n) for n in wanted])
        builder = _native.ColumnStoreBuilder(schema, rows)
        # Lance's own batch size where every column can go into the row-major block (larger
        # batches make Lance join its pages into new buffers); large batches otherwise, as each
        # one stays a chunk of the columns kept as Arrow.
        size = None if all(_fixed_width(f.type) for f in schema) else 1 << 18
        with _progress(rows, f"reading {os.path.basename(self.uri)}") as progress:
            scan = iter(self.dataset.to_batches(columns=wanted, batch_size=size))
            while (batch := self.call(_scan_at(progress.n), next, scan, None)) is not None:
                builder.push(batch)
                progress.update(batch.num_rows)
        self._cached = (wanted, builder.finish())
        return self._cached

    def take(self, offsets: list[int] | pa.Array, columns: list[int] | None) -> pa.RecordBatch:
        key = None if columns is None else tuple(columns)
        hit = self._served.get(key)
        if hit is not None and self._cached is not None and hit[0] is self._cached[1]:
            return hit[0].take(offsets, hit[1])
        names = self.schema.names if columns is None else [self.schema.names[c] for c in columns]
        if not names:  # no column to read: the rows are only counted, as in a memory table
            n = len(_native.normalize_offsets(offsets, self.count_rows()))
            return pa.record_batch({"_": pa.nulls(n)}).select([])
        cached = self._cache_for(names)
        if cached is not None:
            positions = [cached[0].index(n) for n in names]
            self._served[key] = (cached[1], positions)
            return cached[1].take(offsets, positions)
        rows = _native.normalize_offsets(offsets, self.count_rows()).to_numpy()
        unique, inverse = np.unique(rows, return_inverse=True)
        fetched = self.call(_take_of(rows), self.dataset.take, unique, columns=names)
        store = _native.ColumnStore(fetched, row_major=False)
        return store.take(pa.array(inverse.astype(np.int64)))

    def shared_cache(self, names: list[str] | None = None) -> tuple[list[str], str] | None:
        """The cache written to shared memory for workers: the columns ``names`` (all when
        None) with any read so far, when the cache allows, else the columns read so far;
        None when nothing is cached."""
        wanted = self.schema.names if names is None else names
        cached = (self._cache_for(wanted) if wanted else None) or self._cached
        if cached is None:
            return None
        return cached[0], self._shared.path_for(cached[1])

    def row_ids(self) -> np.ndarray:
        """Lance's row id of every row, in row-offset order (read once per version): on a
        table with several fragments or deleted rows a row id is not a row offset."""
        if self._row_ids is None or self._row_ids[0] != self.version:
            ids = self.call(
                "a scan of the row ids", self.dataset.to_table, columns=[], with_row_id=True
            ).column("_rowid")
            self._row_ids = (self.version, ids.to_numpy().astype(np.uint64, copy=False))
        return self._row_ids[1]

    def to_arrow(self) -> pa.Table:
        return self.call("a scan of every row", self.dataset.to_table)

    def read_columns(self, columns: list[str]) -> pa.Table:
        return self.call(f"a scan of columns {columns}", self.dataset.to_table, columns=columns)

    def append(self, data: pa.Table) -> None:
        import lance

        # Appended to the latest version, which must still be this table: Lance would create
        # a dropped one anew, and refuse a replaced one's new columns without saying why.
        try:
            latest = lance.dataset(self.uri, storage_options=self.storage_options)
        except ValueError as e:  # Lance's "was not found" (a store that fails is an OSError)
            raise FileNotFoundError(
                f"table at {self.uri} no longer exists (dropped since this handle opened it); "
                "create it again to add rows"
            ) from e
        if not latest.schema.equals(self.schema, check_metadata=False):
            raise ValueError(
                f"table at {self.uri} was replaced since this handle opened it; its fields are "
                f"now {latest.schema.names}: open it again to add rows"
            )
        lance.write_dataset(data, self.uri, mode="append", storage_options=self.storage_options)
        self._open(lance.dataset(self.uri, storage_options=self.storage_options))
        self._cached = None
        self._refused.clear()


class Table:
    """A named table: a PyTorch map-style Dataset over its rows.

    >>> import lancetorch, pyarrow as pa
    >>> db = lancetorch.connect("memory://")
    >>> t = db.create_table("t", pa.table({"x": [10, 20, 30]}))
    >>> t.__getitems__([2, 0]).column("x").to_pylist()
    [30, 10]
    """

    def __init__(self, name: str, backend: _MemoryBackend | _LanceBackend) -> None:
        self._name = name
        self._backend = backend

    # -- construction (used by Connection and unpickling) --------------------------------------
    @classmethod
    def _memory(cls, name: str, data: pa.Table) -> Table:
        return cls(name, _MemoryBackend(_native.ColumnStore(data)))

    @classmethod
    def _lance(
        cls,
        name: str,
        uri: str,
        storage_options: dict[str, str] | None,
        cache: bool | str = "auto",
        cache_budget: int | None = None,
        version: int | None = None,
        read_timeout: float | None = None,
    ) -> Table:
        return cls(
            name,
            _LanceBackend(name, uri, storage_options, cache, cache_budget, version, read_timeout),
        )

    # -- description ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def uri(self) -> str | None:
        """Where the table's Lance dataset lives, or ``None`` for a memory table."""
        return self._backend.uri if isinstance(self._backend, _LanceBackend) else None

    @property
    def schema(self) -> pa.Schema:
        return self._backend.schema

    def count_rows(self) -> int:
        return self._backend.count_rows()

    def __len__(self) -> int:
        return self._backend.count_rows()

    def __repr__(self) -> str:
        where = self.uri or "memory"
        return f"Table({self._name!r}, {where}, {len(self)} rows, columns={self.schema.names})"

    def to_arrow(self) -> pa.Table:
        return self._backend.to_arrow()

    def _read_columns(self, columns: list[str]) -> pa.Table:
        """Some columns of every row, reading only those."""
        return self._backend.read_columns(columns)

    # -- writing --------------------------------------------------------------------------------
    def add(self, data: Any) -> None:
        """Append rows. The data must have the table's fields (in any order; types that cast
        without loss are cast); otherwise ValueError names the field and nothing is written."""
        new = conform(as_table(data, self.schema), self.schema, self._name)
        if new.num_rows:
            self._backend.append(new)

    # -- reading --------------------------------------------------------------------------------
    def _column_positions(self, columns: Sequence[str] | None) -> list[int] | None:
        if columns is None:
            return None
        if isinstance(columns, str):
            columns = [columns]
        dup = next((c for c in columns if list(columns).count(c) > 1), None)
        if dup is not None:
            raise ValueError(f"column '{dup}' is named twice in {list(columns)}")
        names = self.schema.names
        missing = [c for c in columns if c not in names]
        if missing:
            raise ValueError(
                f"column '{missing[0]}' is not in table '{self._name}'; its columns are {names}"
            )
        return [names.index(c) for c in columns]

    def _take(self, offsets: Any, columns: Sequence[str] | None = None) -> pa.RecordBatch:
        """Rows at ``offsets`` (list, numpy or torch integers; negative counts from the end)
        in the order given, duplicates kept, as one RecordBatch: the take every read path
        shares."""
        positions = self._column_positions(columns)
        if type(offsets) is list:  # the DataLoader's batch: read by Rust without conversion
            try:
                return self._backend.take(offsets, positions)
            except TypeError:
                pass  # not all plain ints: as_offsets accepts numpy ints or explains the problem
        return self._backend.take(as_offsets(offsets), positions)

    def take_offsets(self, offsets: Any, *, columns: Sequence[str] | None = None) -> TakeQuery:
        """The rows at ``offsets`` (0 to ``len(table) - 1``; negative counts from the end), in
        the order given, duplicates kept, as a query: ``.select([...])``, ``.with_row_id()``,
        then ``.to_arrow()``, ``.to_batches()``, ``.to_pandas()``, ``.to_polars()`` or
        ``.to_list()``. ``columns=`` is ``.select(columns)``."""
        query = TakeQuery(self, offsets)
        return query if columns is None else query.select(columns)

    def take_row_ids(self, row_ids: Any) -> TakeQuery:
        """The rows with these Lance row ids (the ``_rowid`` column; on a table of several
        fragments or with deleted rows they are not row offsets), as a query like
        :meth:`take_offsets`. An id not in the table raises ValueError."""
        return TakeQuery(self, self._offsets_of_row_ids(row_ids))

    def search(self, query: Any = None, **kwargs: Any) -> ScanQuery:
        """A full scan (``search()`` or ``search(None)``): ``.select``, ``.limit``,
        ``.offset``, ``.with_row_id``, then ``.to_arrow()`` and the like. Vector and text
        search are LanceDB's, not lancetorch's: any other query raises ValueError."""
        if query is not None or kwargs:
            raise ValueError(
                "lancetorch's search() is a full scan only (search() or search(None)); vector "
                "and full-text search are LanceDB features"
            )
        return ScanQuery(self)

    def head(self, n: int = 5) -> pa.Table:
        """The first ``n`` rows."""
        return self.search().limit(n).to_arrow()

    def to_pandas(self, **kwargs: Any) -> Any:
        return self.to_arrow().to_pandas(**kwargs)

    def to_polars(self, **kwargs: Any) -> Any:
        """The table as a polars LazyFrame (as LanceDB's ``to_polars``)."""
        import polars as pl

        frame = pl.from_arrow(self.to_arrow(), **kwargs)
        assert isinstance(frame, pl.DataFrame)  # a table gives a DataFrame, never a Series
        return frame.lazy()

    def __getitems__(self, indices: Any) -> pa.Table:
        """The rows at ``indices`` in the order given, as one pyarrow Table of one chunk
        (what LanceDB returns); ``tbl_to_tensor`` turns it into a tensor without a copy."""
        batch = self._take(indices)
        return pa.Table.from_batches([batch])

    def __getitem__(self, index: Any) -> pa.Table:
        """Row ``index``, a slice of rows or a list of offsets, as a pyarrow Table."""
        if isinstance(index, slice):
            return self.__getitems__(range(*index.indices(len(self))))
        if isinstance(index, (list, np.ndarray)) or type(index).__module__.startswith("torch"):
            return self.__getitems__(index)
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"a row index must be an integer, a slice or a list, got {index!r}")
        return self.__getitems__([int(index)])

    # -- row ids ----------------------------------------------------------------------------------
    def _row_ids(self, offsets: np.ndarray) -> np.ndarray:
        """The row ids (uint64) of rows at non-negative offsets: in a memory table, the
        offsets; in a Lance dataset, Lance's ``_rowid``."""
        offsets = np.asarray(offsets, dtype=np.int64)
        if isinstance(self._backend, _LanceBackend):
            return self._backend.row_ids()[offsets]
        return offsets.astype(np.uint64)

    def _offsets_of_row_ids(self, row_ids: Any) -> np.ndarray:
        """Row offsets (int64) of these row ids; ValueError names an id not in the table."""
        ids = np.asarray(as_offsets_unsigned(row_ids), dtype=np.uint64)
        if isinstance(self._backend, _LanceBackend):
            all_ids = self._backend.row_ids()
            if len(all_ids):
                order = np.argsort(all_ids, kind="stable")
                at = np.searchsorted(all_ids, ids, sorter=order).clip(0, len(order) - 1)
                offsets = order[at]
                found = all_ids[offsets] == ids
            else:
                offsets, found = np.zeros(len(ids), np.int64), np.zeros(len(ids), bool)
        else:
            found = ids < len(self)
            offsets = ids
        if not found.all():
            bad = int(ids[np.argmin(found)])
            raise ValueError(
                f"row id {bad} is not in table '{self._name}' (deleted, or from another "
                "table or version); row ids come from the _rowid column"
            )
        return np.asarray(offsets, dtype=np.int64)

    # -- pickling -------------------------------------------------------------------------------
    # Plain pickle: a disk table as its location, a memory table by value. To multiprocessing
    # workers a memory table travels as shared memory instead (see _reduce_for_workers).
    def __reduce__(self) -> tuple:
        if isinstance(self._backend, _LanceBackend):
            # The version read here: rows appended or deleted later do not shift the offsets.
            return (Table._lance, (self._name, *self._backend.location()))
        return (_unpickle_memory_table, (self._name, _to_ipc(self._backend.store)))


def as_lancetorch_table(table: Any) -> Table:
    """``table`` as a lancetorch Table: itself, or a LanceDB table read through its Lance
    dataset (a LanceDB memory table, which has no dataset on disk, by value)."""
    if isinstance(table, Table):
        return table
    if type(table).__module__.startswith("lancedb") and hasattr(table, "to_arrow"):
        name = str(getattr(table, "name", "table"))
        try:
            dataset = table.to_lance()
            uri = dataset.uri
        except Exception:  # a memory table: no dataset on disk
            uri = None
        local = uri is not None and ("://" not in uri or uri.startswith("file://"))
        if local:
            return Table._lance(name, uri.removeprefix("file://"), None, version=dataset.version)
        return Table._memory(name, table.to_arrow())
    raise TypeError(
        f"expected a lancetorch Table (or a LanceDB table), got {type(table).__name__}; open "
        "one with lancetorch.connect(uri).open_table(name) or create_table(name, data)"
    )


def _shared_dir(nbytes: int) -> str:
    """/dev/shm when it has room (page cache, never written to disk), else the temp dir."""
    shm = "/dev/shm"
    try:
        stat = os.statvfs(shm)
        if stat.f_bavail * stat.f_frsize > 2 * nbytes:
            return shm
    except OSError:
        pass
    return tempfile.gettempdir()


_SHARED_NAME = re.compile(r"^lancetorch-(\d+)-[0-9a-f]{32}\.arrow$")
_swept: set[str] = set()


def _sweep(directory: str) -> None:
    """Remove shared copies left by processes that died before cleaning up (once a process)."""
    if directory in _swept:
        return
    _swept.add(directory)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    uid = os.getuid()
    for name in names:
        match = _SHARED_NAME.match(name)
        if not match:
            continue
        path = os.path.join(directory, name)
        try:
            if os.lstat(path).st_uid != uid:
                continue  # another user's: never touched
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                os.unlink(path)
        except OSError:
            pass  # gone already, or alive and someone else's


def _write_shared(store: _native.ColumnStore) -> str:
    """The store's rows written to a new shared file, a slice at a time."""
    directory = _shared_dir(store.nbytes)
    _sweep(directory)
    path = os.path.join(directory, f"lancetorch-{os.getpid()}-{uuid.uuid4().hex}.arrow")
    # Created new and owner-only: on a shared node no other user reads the training data
    # (pyarrow's OSFile then truncates the file it finds, keeping its mode).
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    _track(path, True)
    try:
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, store.schema) as writer:
            for batch in _slices(store):
                writer.write_batch(batch)
    except BaseException:
        _unlink_if_owner(path, os.getpid())
        raise
    return path


def _unlink_if_owner(path: str, owner: int) -> None:
    if os.getpid() != owner:
        return
    try:
        os.unlink(path)
    except OSError:
        pass
    _track(path, False)


_tracked: set[str] = set()


def _track(path: str, on: bool) -> None:
    """Have multiprocessing's resource tracker remove a file in /dev/shm if this process dies
    before it does (killed, out of memory), or stop that once the file is gone (only for a
    file this process registered). A file elsewhere is left to the sweep of a later process."""
    if os.path.dirname(path) != "/dev/shm" or (not on and path not in _tracked):
        return
    from multiprocessing import resource_tracker

    name = "/" + os.path.basename(path)  # the tracker removes it with shm_unlink
    try:
        if on:
            resource_tracker.register(name, "shared_memory")
            _tracked.add(path)
        else:
            _tracked.discard(path)
            resource_tracker.unregister(name, "shared_memory")
    except Exception:  # no tracker (a frozen or restricted interpreter): the sweep remains
        pass


def _open_shared_table(name: str, path: str) -> Table:
    """A memory table in a worker process, mapped from the parent's shared-memory file:
    every worker reads the same pages, none holds a copy of its own."""
    try:
        source = pa.memory_map(path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"the shared memory of memory table '{name}' ({path}) is gone: the process that "
            "created the table has ended or dropped it. Send memory tables only to workers of "
            "a live process, or use a table on disk"
        ) from None
    data = pa.ipc.open_file(source).read_all()
    return Table(name, _MemoryBackend(_native.ColumnStore(data, row_major=False), path))


def _open_cached_lance_table(name: str, location: tuple, columns: list[str], path: str) -> Table:
    """A disk table in a worker, its cache mapped from the parent's shared-memory file."""
    table = Table._lance(name, *location)
    shared, backend = _open_shared_table(name, path)._backend, table._backend
    assert isinstance(shared, _MemoryBackend) and isinstance(backend, _LanceBackend)
    backend._cached = (columns, shared.store)
    return table


def _reduce_for_workers(table: Table, names: list[str] | None = None) -> tuple:
    """How a Table travels to multiprocessing workers (spawn, forkserver): a memory table, and
    a disk table's cache, as a shared-memory file that every worker maps; otherwise as with
    plain pickle. Workers that read only the columns ``names`` get only those cached."""
    backend = table._backend
    if isinstance(backend, _MemoryBackend):
        return (_open_shared_table, (table.name, backend.shared_file()))
    shared = backend.shared_cache(names)
    if shared is not None:
        return (_open_cached_lance_table, (table.name, backend.location(), *shared))
    # The parent could not cache it: workers must not each try (and each hold a copy).
    return (Table._lance, (table.name, *backend.location(cache=False)))


ForkingPickler.register(Table, _reduce_for_workers)


class TableForWorkers:
    """A table on its way to workers that read only the columns ``names`` (a Permutation's):
    a disk table caches and shares just those. Arrives as the Table itself; only for pickling
    to multiprocessing workers."""

    def __init__(self, table: Table, names: list[str]) -> None:
        self.table, self.names = table, names

    def __reduce__(self) -> tuple:
        return _reduce_for_workers(self.table, self.names)


def _slices(store: _native.ColumnStore, rows: int = 1 << 16) -> Iterator[pa.RecordBatch]:
    """The store's rows a slice at a time: columns held only in the row-major block are
    copied out of it one slice ahead of whoever writes them."""
    n = store.num_rows
    for start in range(0, n, rows):
        yield store.slice(start, min(rows, n - start))


def _to_ipc(store: _native.ColumnStore) -> bytes:
    """The store's rows as an Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, store.schema) as writer:
        for batch in _slices(store):
            writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def _unpickle_memory_table(name: str, ipc: bytes) -> Table:
    return Table._memory(name, pa.ipc.open_stream(ipc).read_all())
