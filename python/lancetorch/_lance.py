"""``_LanceBackend``: a table's rows in a Lance dataset at one version, on disk or in object
storage, read through pylance (the ``Backend`` of ``_backends.py``): a memory cache within a
budget, filled through the node tier (``_tier.py``) where one is set; the fill of caches
before a fork. Its reads of rows outside the cache (windows as coalesced range reads, the
node tier's pieces) are ``_lance_reads.py``."""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa

from . import _native
from ._backends import (
    Backend,
    CacheSettings,
    LanceLocation,
    Recipe,
    SentVersion,
    _map_shared,
    available_memory,
)
from ._lance_reads import (
    _FORKING,
    _estimated_bytes,
    _LanceReads,
    _progress,
    _store_from_tier,
)
from ._objectstore import StorageReadError, is_corrupt_data, is_io_error, read_failure, within
from ._shared import _SharedCopy
from ._tier import NodeTier


def _scan_at(rows: int) -> str:
    return f"a sequential scan, after {rows} rows (row offset {rows} was next)"


_OPEN: weakref.WeakSet[_LanceBackend] = weakref.WeakSet()


def _fill_before_fork() -> None:
    """Before this process forks (DataLoader workers under ``fork``), fill the cache of every
    open disk table where the cache allows, so that forked workers read memory and never
    Lance. A table whose cache is off, or over its budget, is left as it is: a forked worker
    reading it raises a RuntimeError saying so. No thread pool is used meanwhile: a fork
    hook of ``concurrent.futures`` may hold the lock a submit takes (see ``_store_from_tier``)."""
    _FORKING.append(True)
    try:
        for backend in list(_OPEN):
            try:
                backend.fill_cache()
            except Exception:  # a store that fails now fails again, named, where it is read
                pass
    finally:
        _FORKING.pop()


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


class _LanceBackend(_LanceReads):
    """A Lance dataset read through pylance.

    With ``cache`` on (``"auto"``: when the columns read fit ``cache_budget`` bytes, default
    half the available memory; ``True``: always; ``False``: never) the columns a take needs are
    read once by sequential scan into the Rust column store, and random batches are served from
    memory from then on. Without it, random takes go to Lance sorted and are reordered in Rust.
    """

    def __init__(
        self,
        location: LanceLocation,
        cache: CacheSettings | None = None,
        version: int | str | None = None,
        *,
        sent: SentVersion | None = None,
        dataset: Any = None,
    ) -> None:
        self.location = location
        self.settings = cache if cache is not None else CacheSettings()
        self._dataset: Any = None
        self._rows: int | None = None  # this version's rows, counted once (Lance reads to count)
        self._pid = os.getpid()
        self._opening = threading.Lock()
        # The version's identity, where it was sent from another process: checked when the
        # dataset is opened here, so that a table dropped and made again is never read.
        self._identity: str | None = None
        if dataset is not None:
            self._open(dataset)
        elif sent is not None:
            # Reopened elsewhere (a pickle, a worker): the dataset is opened when a read needs
            # it, so a worker that reads its parent's cache never touches Lance.
            self.version, self._schema, self._identity = sent.number, sent.schema, sent.identity
        else:
            import lance

            self._open(
                self.call(
                    "opening the dataset",
                    lance.dataset,
                    location.uri,
                    version=version,
                    storage_options=location.storage_options,
                )
            )
        # (column names, their rows in the column store) once read; per column selection
        # asked for, the store serving it and the positions of the columns there.
        self._cached: tuple[list[str], _native.ColumnStore] | None = None
        self._served: dict[tuple[int, ...] | None, tuple[_native.ColumnStore, list[int]]] = {}
        self._refused: set[frozenset[str]] = set()  # column sets over the cache budget
        self._shared = _SharedCopy()
        self._row_ids: tuple[int, np.ndarray] | None = None  # (version, row ids)
        self._fragments: tuple[list[Any], np.ndarray] | None = None  # see _fragment_starts
        # Bytes and requests read from the store so far, bytes of rows read from the node
        # tier's pieces (see io_totals).
        self._io = [0, 0, 0]
        self._io_lock = threading.Lock()
        self._filling = threading.RLock()
        # Live Permutations over this table and the columns each reads (for the fork fill).
        self.views: weakref.WeakKeyDictionary[object, tuple[str, ...]] = weakref.WeakKeyDictionary()
        self._node_tier: NodeTier | None = None  # opened (its folder checked) when first used
        self._piece_rows: int | None = None  # see _LanceReads.piece_rows
        _track_open(self)

    @classmethod
    def with_shared_cache(
        cls,
        location: LanceLocation,
        cache: CacheSettings,
        sent: SentVersion,
        columns: list[str],
        path: str,
    ) -> _LanceBackend:
        """This version in a worker, its cache mapped from the parent's shared-memory file:
        the worker reads the cache, and opens the dataset only for what it does not hold."""
        backend = cls(location, cache, sent=sent)
        backend._cached = (columns, _map_shared(location.name, path))
        return backend

    @classmethod
    def with_tier_cache(
        cls,
        location: LanceLocation,
        cache: CacheSettings,
        sent: SentVersion,
        columns: list[str],
        rows: int,
        piece_rows: int,
    ) -> _LanceBackend:
        """This version in a worker, its cache of ``columns`` (``rows`` rows) mapped from the
        node tier's pieces of ``piece_rows`` rows, where the parent put them (a piece gone
        since is read again; the dataset is opened only then)."""
        backend = cls(location, cache, sent=sent)
        backend._piece_rows = piece_rows
        tier = backend.tier()
        assert tier is not None, "only a backend with a node tier is sent its pieces"
        backend._cached = (columns, _store_from_tier(backend, tier, columns, rows, False))
        return backend

    # The location's parts, as the messages and Lance's calls use them.
    @property
    def name(self) -> str:
        return self.location.name

    @property
    def uri(self) -> str:
        return self.location.uri

    @property
    def storage_options(self) -> dict[str, str] | None:
        return self.location.storage_options

    @property
    def read_timeout(self) -> float | None:
        return self.location.read_timeout

    @property
    def cache(self) -> bool | str:
        return self.settings.mode

    @property
    def cache_budget(self) -> int | None:
        return self.settings.budget

    def at(self, dataset: Any) -> _LanceBackend:
        """A backend like this one reading ``dataset`` (another version): its own cache."""
        return _LanceBackend(self.location, self.settings, dataset=dataset)

    def load(self, version: int | str | None = None) -> Any:
        """The dataset at ``version`` (a number or a tag; None: the latest), opened now."""
        import lance

        try:
            return self.call(
                "opening the dataset",
                lance.dataset,
                self.uri,
                version=version,
                storage_options=self.storage_options,
            )
        except ValueError as e:  # Lance's "was not found"
            if "not found" not in str(e).lower():
                raise
            if version is None:
                raise FileNotFoundError(
                    f"table '{self.name}' ({self.uri}) no longer exists: it was dropped since "
                    "this handle opened it; open it (or create it) again"
                ) from e
            raise

    def forked(self) -> bool:
        """Whether this process was forked from the one that made this backend."""
        return self._pid != os.getpid()

    def identity(self) -> str | None:
        """What tells this version from a version of the same number of another table of the
        same name (one dropped and made again): its number and the time it was written."""
        return self._identity

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
        self._rows = None
        self._schema = dataset.schema
        self.version = dataset.version
        self._identity = _identity_of(dataset)

    def sent(self) -> SentVersion:
        """This version as another process opens it: opened only when a read needs Lance,
        and checked to be this version of this table then."""
        return SentVersion(self.version, self._schema, self.identity())

    def reopen(self) -> Recipe:
        return _LanceBackend.in_process, (self.location, self.settings, self.sent())

    def reopen_in_workers(self, names: list[str] | None) -> Recipe:
        """Workers map this process's cache of the columns ``names`` (with any read so far)
        where the cache allows; else they read Lance, each without a cache of its own (the
        parent could not cache it: workers must not each try, and each hold a copy). A
        cache held in the node tier is not copied: workers map the tier's pieces."""
        tiered = self.tier_cache(names)
        if tiered is not None:
            return _LanceBackend.with_tier_cache, (
                self.location,
                self.settings,
                self.sent(),
                *tiered,
                self.piece_rows(),
            )
        shared = self.shared_cache(names)
        if shared is None:
            return _LanceBackend.in_process, (
                self.location,
                replace(self.settings, mode=False),
                self.sent(),
            )
        return _LanceBackend.with_shared_cache, (
            self.location,
            self.settings,
            self.sent(),
            *shared,
        )

    @classmethod
    def in_process(
        cls, location: LanceLocation, cache: CacheSettings, sent: SentVersion
    ) -> _LanceBackend:
        """The version sent, in the process it was sent to."""
        return cls(location, cache, sent=sent)

    def _open_sent(self) -> Any:
        """The dataset of a backend sent from another process: its version, opened now, and
        checked to be the version that was sent."""
        try:
            dataset = self.load(self.version)
        except ValueError as e:  # Lance's "was not found": the version, or the table, is gone
            if "not found" not in str(e).lower():
                raise
            raise StorageReadError(
                f"version {self.version} of table '{self.name}' ({self.uri}) is gone: the table "
                "was dropped, or its old versions were removed (cleanup_old_versions), after "
                "this handle was made for that version (a pickled table, and DataLoader "
                "workers, read the version their table had when it was sent). Open the table "
                "again, and make the DataLoader, Loader or Permutation again, to read its "
                "latest version"
            ) from e
        found = _identity_of(dataset)
        if self._identity is not None and found != self._identity:
            raise StorageReadError(
                f"table '{self.name}' ({self.uri}) was dropped and created again after this "
                f"handle was made for its version {self.version}: that version now holds other "
                f"rows (written {found.partition('@')[2]}, not {self._identity.partition('@')[2]})"
                ". Open the table again, and make the DataLoader, Loader or Permutation again, "
                "to read the new table"
            )
        return dataset

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
        dataset = self._dataset
        if dataset is None:
            with self._opening:
                if self._dataset is None:
                    dataset = self._open_sent()
                    self._dataset, self._identity = dataset, _identity_of(dataset)
                dataset = self._dataset
        return dataset

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
            if names and self.cache_for(names) is not None:
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
        if self._rows is None:
            self._rows = self.dataset.count_rows()
        return self._rows

    def cache_for(self, names: list[str]) -> tuple[list[str], _native.ColumnStore] | None:
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
        tier = self.tier()
        if tier is not None:
            self._cached = (wanted, _store_from_tier(self, tier, wanted, rows, True))
            return self._cached
        # Each scanned batch goes into the store as it arrives: its fixed-width columns into
        # the row-major block (their Lance buffers are then let go), the others kept as they
        # are, so the columns are never held twice.
        schema = pa.schema([self.schema.field(n) for n in wanted])
        builder = _native.ColumnStoreBuilder(schema, rows)
        # Lance's own batch size where every column can go into the row-major block (larger
        # batches make Lance join its pages into new buffers); large batches otherwise, as each
        # one stays a chunk of the columns kept as Arrow.
        size = None if len(builder.block_columns) == len(schema) else 1 << 18
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
        cached = self.cache_for(names)
        if cached is not None:
            positions = [cached[0].index(n) for n in names]
            self._served[key] = (cached[1], positions)
            return cached[1].take(offsets, positions)
        rows = _native.normalize_offsets(offsets, self.count_rows()).to_numpy()
        store, places = self.read_rows(rows, names)
        return store.take(pa.array(places))

    def io_totals(self) -> tuple[int, int, int]:
        """Bytes and requests this backend has read from its store so far (every read of its
        dataset: cache fills, takes, windows), as Lance counts them, and the bytes of rows it
        has read from pieces the node tier held (not fetched for that very read).
        Lance's counters reset as they are read, so they are read here only, under a lock,
        and summed."""
        with self._io_lock:
            dataset = self._dataset
            counter = getattr(dataset, "io_stats_incremental", None)  # an older pylance: none
            if counter is not None and not self.forked():
                stats = counter()
                self._io[0] += stats.read_bytes
                self._io[1] += stats.read_iops
            return self._io[0], self._io[1], self._io[2]

    def from_tier(self, nbytes: int) -> None:
        """Count ``nbytes`` of rows read from the node tier's pieces (see ``io_totals``)."""
        with self._io_lock:
            self._io[2] += nbytes

    def tier_stats(self) -> dict[str, int]:
        """This process's gets from the node tier (all zero when it is off): bytes and pieces
        served from it (``tier_bytes``, ``tier_pieces``) and fetched from the table's store
        into it (``fetched_bytes``, ``fetched_pieces``)."""
        if self._node_tier is None:  # off, or not used yet
            return dict.fromkeys(
                ("tier_bytes", "tier_pieces", "fetched_bytes", "fetched_pieces"), 0
            )
        return self._node_tier.stats()

    def tier_cache(self, names: list[str] | None = None) -> tuple[list[str], int] | None:
        """The columns and rows of the cache covering ``names`` (all when None) where the
        node tier holds it (filled now if the cache allows): a worker maps its pieces
        (``with_tier_cache``) and is sent no copy. None without a tier or a cache."""
        if self.tier() is None:
            return None
        wanted = self.schema.names if names is None else names
        cached = self.cache_for(wanted) if wanted else None
        return None if cached is None else (cached[0], cached[1].num_rows)

    def shared_cache(self, names: list[str] | None = None) -> tuple[list[str], str] | None:
        """The cache written to shared memory for workers: the columns ``names`` (all when
        None) with any read so far, when the cache allows, else the columns read so far;
        None when nothing is cached."""
        wanted = self.schema.names if names is None else names
        cached = (self.cache_for(wanted) if wanted else None) or self._cached
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

    def append(
        self, data: pa.Table, known: Sequence[Backend] = (), *, overwrite: bool = False
    ) -> Backend:
        """Write ``data`` after the latest version, or in its place (``overwrite``); the
        Table then reads a new backend at the version written: this one keeps reading its
        own."""
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
        mode = "overwrite" if overwrite else "append"
        lance.write_dataset(data, self.uri, mode=mode, storage_options=self.storage_options)
        # The handle reads what it wrote (and any version written since) from now on.
        return self.at_version(None, known)

    def follows_versions(self) -> bool:
        # Not in a process forked from the one that opened it: Lance is not used there.
        return not self.forked()

    def at_version(self, version: int | str | None, known: Sequence[Backend] = ()) -> Backend:
        try:
            dataset = self.load(version)
        except (ValueError, OverflowError) as e:  # none such (or past Lance's u64)
            if version is None:
                raise
            raise ValueError(
                f"Version {version} no longer exists. Was it cleaned up? Table "
                f"'{self.name}' has versions {[v['version'] for v in self.list_versions()]}"
            ) from e
        identity = _identity_of(dataset)
        for backend in known:
            if (
                isinstance(backend, _LanceBackend)
                and backend.location == self.location
                and backend.version == dataset.version
                and backend.identity() == identity
            ):
                return backend
        return self.at(dataset)

    def list_versions(self) -> list[dict[str, Any]]:
        return list(self.call("a list of the versions", self.dataset.versions))

    def pinned(self) -> _LanceBackend:
        return self  # it reads one version for its life already

    def in_memory(self, names: list[str]) -> tuple[list[str], _native.ColumnStore] | None:
        return self.cache_for(names)

    @contextlib.contextmanager
    def sql_dataset(self, names: list[str]) -> Iterator[tuple[Any, bool]]:
        yield self.dataset, True


def _identity_of(dataset: Any) -> str:
    """A version's number and the time it was written: a table dropped and made again has
    versions of the same numbers, written at other times."""
    try:
        written = dataset.get_version()["timestamp"]
    except Exception:  # a pylance without it: the number alone
        return str(dataset.version)
    return f"{dataset.version}@{written.isoformat()}"
