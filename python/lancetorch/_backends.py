"""Where a Table's rows live, and the one interface every reader uses to read them.

``Backend`` is that interface: a Table, its Permutations, queries, the permutation builder
and the Loader read rows only through its members, and never ask which kind of backend they
hold. Two kinds implement it: ``_MemoryBackend`` (the Rust column store, here) and
``_LanceBackend`` (in ``_lance.py``: a Lance dataset at one version, on disk or in object
storage, with a memory cache within a budget of the available memory). Where a Lance table
lives travels as a ``LanceLocation``; its cache settings as ``CacheSettings``.

A ``_LanceBackend`` reads one version of its dataset for its whole life: a Table that moves
to another version (``checkout_latest``, a read after ``read_consistency_interval``, ``add``)
makes a new backend, so a reader still holding the old one (an epoch in progress, a
Permutation, a Loader) keeps reading the old version and its cache, never a mix."""

from __future__ import annotations

import contextlib
import datetime
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from . import _native
from ._shared import _SharedCopy, _to_ipc

# How a backend is made again in another process: a function and its arguments (picklable).
Recipe = tuple[Callable[..., "Backend"], tuple[Any, ...]]


@runtime_checkable
class Backend(Protocol):
    """What holds a Table's rows, at one version, as every reader reads them.

    Row offsets are 0-based positions in the version read; ``columns`` are positions in
    ``schema`` (None: every column), ``names`` column names."""

    version: int
    """The version read: 1 when the table was made, one more with each change."""

    @property
    def schema(self) -> pa.Schema:
        """The fields of every row."""
        ...

    @property
    def location(self) -> LanceLocation | None:
        """Where the rows are stored (a Lance dataset), or None for rows held in memory."""
        ...

    def count_rows(self) -> int:
        """The number of rows."""
        ...

    def take(self, offsets: list[int] | pa.Array, columns: list[int] | None) -> pa.RecordBatch:
        """The rows at ``offsets`` (any order, repeats allowed, negative from the end), the
        columns at ``columns``."""
        ...

    def read_rows(
        self, rows: np.ndarray, names: list[str]
    ) -> tuple[_native.ColumnStore, np.ndarray]:
        """Rows at checked, non-negative ``rows`` read from storage once each, as a store
        of the columns ``names`` and the place of each asked row in it (a Loader's window)."""
        ...

    def in_memory(self, names: list[str]) -> tuple[list[str], _native.ColumnStore] | None:
        """A column store in memory holding every column of ``names`` (and the names of
        the columns it holds, in its order), reading it now where a cache allows; None when
        the rows must be read from storage (``read_rows``)."""
        ...

    def row_ids(self) -> np.ndarray | None:
        """The row id (uint64) of every row in offset order, or None where a row's id is
        its offset."""
        ...

    def io_totals(self) -> tuple[int, int, int]:
        """Bytes and requests read from storage by this backend so far, and bytes of rows
        read from a node tier's copy of it (0, 0, 0 in memory)."""
        ...

    def to_arrow(self) -> pa.Table:
        """Every row."""
        ...

    def read_columns(self, columns: list[str]) -> pa.Table:
        """Some columns of every row, reading only those."""
        ...

    def append(
        self, data: pa.Table, known: Sequence[Backend] = (), *, overwrite: bool = False
    ) -> Backend:
        """Write ``data`` after the last row (or, ``overwrite``, in place of every row); the
        backend that reads what was written (this one for memory; of another version it is
        one of ``known`` or a new one)."""
        ...

    def follows_versions(self) -> bool:
        """Whether other writers can add versions that a reader should look for."""
        ...

    def at_version(self, version: int | str | None, known: Sequence[Backend] = ()) -> Backend:
        """The backend reading ``version`` (a number or tag; None: the latest): one of
        ``known`` where it reads that very version (sharing its cache), else a new one.
        ValueError for a version the table does not have."""
        ...

    def list_versions(self) -> list[dict[str, Any]]:
        """Every version there is: dicts of ``version``, ``timestamp`` and ``metadata``."""
        ...

    def pinned(self) -> Backend:
        """These rows for a reader that must not see later appends."""
        ...

    def note_view(self, view: object, columns: list[str]) -> None:
        """A live view that reads ``columns`` (a cache fills those before a fork)."""
        ...

    def sql_dataset(self, names: list[str]) -> contextlib.AbstractContextManager[tuple[Any, bool]]:
        """A Lance dataset SQL can run against, holding at least the columns ``names``, and
        whether it holds every column."""
        ...

    def reopen(self) -> Recipe:
        """How to make this backend in another process (plain pickle): the same version."""
        ...

    def reopen_in_workers(self, names: list[str] | None) -> Recipe:
        """How DataLoader workers that read the columns ``names`` (None: all) make this
        backend: sharing this process's memory where it can (no copy per worker)."""
        ...


@dataclass(frozen=True)
class LanceLocation:
    """Where a Lance table lives: its name, its URI, the options of its store, and how long
    a read may take. Two tables at the same location are the same table."""

    name: str
    uri: str
    options: tuple[tuple[str, str], ...] | None = None  # storage options, sorted pairs
    read_timeout: float | None = None

    @classmethod
    def of(
        cls,
        name: str,
        uri: str,
        storage_options: Mapping[str, str] | None = None,
        read_timeout: float | None = None,
    ) -> LanceLocation:
        options = None if storage_options is None else tuple(sorted(storage_options.items()))
        return cls(name, uri, options, read_timeout)

    @property
    def storage_options(self) -> dict[str, str] | None:
        """The store's options as Lance takes them."""
        return None if self.options is None else dict(self.options)


@dataclass(frozen=True)
class CacheSettings:
    """How a disk table's memory cache is used: ``mode`` True (always), False (never) or
    "auto" (when the columns read fit ``budget`` bytes, default half the available memory);
    ``cache_dir``, the node tier's folder it is filled through (None: the default folder;
    False: no node tier; see ``tier_folder``); ``dir_budget``, the bytes of pieces kept in that
    folder (None: half the free disk space when the tier is opened, plus what it holds)."""

    mode: bool | str = "auto"
    budget: int | None = None
    cache_dir: str | bool | None = None
    dir_budget: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in (True, False, "auto"):
            raise ValueError(f"cache must be True, False or 'auto', got {self.mode!r}")


@dataclass(frozen=True)
class SentVersion:
    """A version as another process saw it: its number, its schema and its identity (its
    number and write time), checked when the dataset is opened here."""

    number: int
    schema: pa.Schema = field(compare=False)
    identity: str | None


def is_backend(obj: object) -> bool:
    """Whether ``obj`` implements ``Backend``: the package's own at once (a Table is made for
    every view and epoch), any other by the protocol's runtime check of its members."""
    from ._lance import _LanceBackend  # the module of the Lance backend imports this one

    return type(obj) in (_MemoryBackend, _LanceBackend) or isinstance(obj, Backend)


class _MemoryBackend:
    """Rows held by the Rust column store; appends make a new store that shares the old chunks."""

    location = None  # held in memory: nowhere to reopen them from

    def __init__(
        self,
        store: _native.ColumnStore,
        shared_file: str | None = None,
        version: int = 1,
        name: str = "table",
    ) -> None:
        self.store = store
        self.name = name  # the table's, for messages
        self.version = version  # 1 when made, one more each append (as LanceDB counts)
        self.written = time.time()  # when this version was made (its timestamp)
        self._shared = _SharedCopy(store, shared_file)
        self._schema = store.schema  # made from the store's once: it changes only with it
        self._source: _MemoryBackend | None = None  # the backend a pinned one was made from

    @classmethod
    def from_ipc(cls, name: str, ipc: bytes, version: int) -> _MemoryBackend:
        """The rows of an Arrow IPC stream (a memory table unpickled)."""
        store = _native.ColumnStore(pa.ipc.open_stream(ipc).read_all())
        return cls(store, version=version, name=name)

    @classmethod
    def from_shared(cls, name: str, path: str, version: int) -> _MemoryBackend:
        """The rows of a shared-memory file another process wrote, mapped: every process
        that maps it reads the same pages, none holds a copy of its own."""
        return cls(_map_shared(name, path), path, version, name)

    def pinned(self) -> _MemoryBackend:
        """These rows, for a reader that must not see later appends: the same store (no
        copy; an append to this backend makes a new store and leaves it as it is)."""
        view = _MemoryBackend(self.store, version=self.version, name=self.name)
        view.written = self.written
        view._source = self
        return view

    def shared_file(self) -> str:
        """The path of a shared-memory copy of the rows, written on first use: a pinned
        backend's is its source's while that still holds the same rows."""
        source = self._source
        if source is not None and source.store is self.store:
            return source.shared_file()
        return self._shared.path_for(self.store)

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def count_rows(self) -> int:
        return self.store.num_rows

    def take(self, offsets: list[int] | pa.Array, columns: list[int] | None) -> pa.RecordBatch:
        return self.store.take(offsets, columns)

    def read_rows(
        self, rows: np.ndarray, names: list[str]
    ) -> tuple[_native.ColumnStore, np.ndarray]:
        positions = [self.schema.get_field_index(n) for n in names]
        taken = self.store.take(pa.array(rows, pa.int64()), positions)
        return _native.ColumnStore(taken, row_major=False), np.arange(len(rows), dtype=np.int64)

    def in_memory(self, names: list[str]) -> tuple[list[str], _native.ColumnStore] | None:
        return self.schema.names, self.store

    def row_ids(self) -> np.ndarray | None:
        return None

    def to_arrow(self) -> pa.Table:
        return pa.Table.from_batches(self.store.batches(), schema=self.schema)

    def read_columns(self, columns: list[str]) -> pa.Table:
        positions = [self.schema.get_field_index(c) for c in columns]
        if -1 in positions:
            return self.to_arrow().select(columns)  # pyarrow's error names the column
        schema = pa.schema([self.schema.field(i) for i in positions])
        return pa.Table.from_batches(self.store.batches(positions), schema=schema)

    def io_totals(self) -> tuple[int, int, int]:
        """Bytes and requests read from a store, bytes from a node tier: none, the rows are
        in memory."""
        return 0, 0, 0

    def append(
        self, data: pa.Table, known: Sequence[Backend] = (), *, overwrite: bool = False
    ) -> Backend:
        if overwrite:
            self.store = _native.ColumnStore(data)
        else:
            self.store = self.store.appended(data)
        self._schema = self.store.schema
        self.version += 1
        self.written = time.time()
        return self

    def follows_versions(self) -> bool:
        return False  # only this process writes it, through this backend

    def at_version(self, version: int | str | None, known: Sequence[Backend] = ()) -> Backend:
        if version is None or version == self.version:
            return self
        raise ValueError(
            f"Version {version} no longer exists. A memory table keeps only its latest "
            f"version ({self.version}); use a table on disk to read older ones"
        )

    def list_versions(self) -> list[dict[str, Any]]:
        return [
            {
                "version": self.version,
                "timestamp": datetime.datetime.fromtimestamp(self.written),
                "metadata": {"total_rows": str(self.count_rows())},
            }
        ]

    def note_view(self, view: object, columns: list[str]) -> None:
        pass  # nothing to fill before a fork: the rows are in memory already

    @contextlib.contextmanager
    def sql_dataset(self, names: list[str]) -> Iterator[tuple[Any, bool]]:
        """A scratch Lance dataset of the columns ``names`` (the first column where none is
        named: Lance refuses a scan of no column), removed afterwards: a column SQL does not
        use (an embedding) is never copied."""
        import lance

        names = names or self.schema.names[:1]
        with tempfile.TemporaryDirectory(prefix="lancetorch-sql-") as tmp:
            dataset = lance.write_dataset(self.read_columns(names), f"{tmp}/t.lance")
            yield dataset, len(names) == len(self.schema)

    def reopen(self) -> Recipe:
        return _MemoryBackend.from_ipc, (self.name, _to_ipc(self.store), self.version)

    def reopen_in_workers(self, names: list[str] | None) -> Recipe:
        return _MemoryBackend.from_shared, (self.name, self.shared_file(), self.version)


def _map_shared(name: str, path: str) -> _native.ColumnStore:
    """The column store of a shared-memory file, mapped (not copied)."""
    try:
        source = pa.memory_map(path)
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"the shared memory of table '{name}' ({path}) is gone: the process that "
            "created the table has ended or dropped it. Send memory tables only to workers of "
            "a live process, or use a table on disk"
        ) from err
    return _native.ColumnStore(pa.ipc.open_file(source).read_all(), row_major=False)


def available_memory() -> int:
    """Bytes of memory the kernel says are available now (read where the core reads them)."""
    free = _native.available_memory()
    if free is not None:
        return free
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
