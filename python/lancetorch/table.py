"""Tables: Arrow data in memory (held by the Rust column store) or a Lance dataset on disk.

A Table is a ``torch.utils.data.Dataset``: ``len(table)`` rows, ``table.__getitems__(indices)``
gives a ``pyarrow.Table`` of those rows in the order asked, which
``lancetorch.util.tbl_to_tensor`` turns into one ``(columns, rows)`` tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from multiprocessing.reduction import ForkingPickler
from typing import Any

import numpy as np
import pyarrow as pa

from . import _native
from ._arrow import as_offsets, as_offsets_unsigned, as_table, conform
from ._backends import _LanceBackend, _MemoryBackend
from ._shared import _to_ipc
from .query import ScanQuery, TakeQuery


class Table:
    """A named table: a PyTorch map-style Dataset over its rows.

    Made by a :class:`~lancetorch.Connection` (``create_table``, ``open_table``), not directly.

    Parameters
    ----------
    name : str
        The table's name.
    backend : _MemoryBackend or _LanceBackend
        What holds the rows: the Rust column store, or a Lance dataset.

    Examples
    --------
    >>> import lancetorch, pyarrow as pa
    >>> db = lancetorch.connect("memory://")
    >>> t = db.create_table("t", pa.table({"x": [10, 20, 30]}))
    >>> t.__getitems__([2, 0]).column("x").to_pylist()
    [30, 10]
    """

    def __init__(self, name: str, backend: _MemoryBackend | _LanceBackend) -> None:
        if not isinstance(name, str):
            raise TypeError(f"name={name!r} is {type(name).__name__}; a table's name is a string")
        if not isinstance(backend, (_MemoryBackend, _LanceBackend)):
            raise TypeError(
                f"backend is {type(backend).__name__}; tables are made by "
                "connect(uri).create_table(...) or open_table(...)"
            )
        self._name = name
        self._backend = backend
        # The schema the column positions below were worked out for, and the positions.
        self._positions: tuple[pa.Schema | None, dict[tuple[str, ...], tuple[int, ...]]] = (
            None,
            {},
        )

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
        """Append rows.

        Parameters
        ----------
        data : Any
            The rows, anything :meth:`Connection.create_table` takes. They must have the table's
            fields (in any order; types that cast without loss are cast).

        Raises
        ------
        ValueError
            Naming the field that is missing, extra or does not cast; nothing is written.
        """
        new = conform(as_table(data, self.schema), self.schema, self._name)
        if new.num_rows:
            self._backend.append(new)

    # -- reading --------------------------------------------------------------------------------
    def _column_positions(self, columns: Sequence[str] | None) -> list[int] | None:
        """Positions of ``columns`` in the schema (None: every column), worked out once per
        selection and schema: a view reading the same columns batch after batch asks again."""
        if columns is None:
            return None
        columns = (columns,) if isinstance(columns, str) else tuple(columns)  # read once
        schema = self.schema
        if self._positions[0] is not schema:
            self._positions = (schema, {})
        known = self._positions[1]
        key: tuple[str, ...] | None = columns
        try:
            hit = known.get(columns)
        except TypeError:  # an unhashable name: the checks below explain it
            key, hit = None, None
        if hit is not None:
            return list(hit)
        names = schema.names
        index = {n: i for i, n in enumerate(names)}
        seen: set[Any] = set()
        positions = []
        for c in columns:
            if not isinstance(c, str) or c not in index:
                raise ValueError(
                    f"column '{c}' is not in table '{self._name}'; its columns are {names}"
                )
            if c in seen:
                raise ValueError(f"column '{c}' is named twice in {list(columns)}")
            seen.add(c)
            positions.append(index[c])
        if key is not None and len(known) < 64:
            known[key] = tuple(positions)
        return positions

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
        """The rows at ``offsets`` in the order given, duplicates kept, as a query:
        ``.select([...])``, ``.with_row_id()``, then ``.to_arrow()``, ``.to_batches()``,
        ``.to_pandas()``, ``.to_polars()`` or ``.to_list()``.

        Parameters
        ----------
        offsets : list, range, np.ndarray, torch.Tensor or pa.Array of int
            Row offsets, 0 to ``len(table) - 1``; negative counts from the end.
        columns : sequence of str or dict[str, str], optional
            The same as ``.select(columns)``.

        Returns
        -------
        TakeQuery
            Nothing is read until one of its ``to_*`` methods runs; an offset out of range raises
            IndexError there.
        """
        query = TakeQuery(self, offsets)
        return query if columns is None else query.select(columns)

    def take_row_ids(self, row_ids: Any) -> TakeQuery:
        """The rows with these Lance row ids (the ``_rowid`` column; on a table of several
        fragments or with deleted rows they are not row offsets), as a query like
        :meth:`take_offsets`.

        Parameters
        ----------
        row_ids : list, np.ndarray, torch.Tensor or pa.Array of int
            Row ids, not negative.

        Returns
        -------
        TakeQuery

        Raises
        ------
        ValueError
            For an id not in the table.
        """
        return TakeQuery(self, self._offsets_of_row_ids(row_ids))

    def search(self, query: Any = None, **kwargs: Any) -> ScanQuery:
        """A full scan (``search()`` or ``search(None)``): ``.select``, ``.limit``,
        ``.offset``, ``.with_row_id``, then ``.to_arrow()`` and the like. Vector and text
        search are LanceDB's, not lancetorch's.

        Parameters
        ----------
        query : None, optional
            Only ``None``; any other query raises ValueError.
        **kwargs : Any
            LanceDB's search options; any raises ValueError.

        Returns
        -------
        ScanQuery

        Raises
        ------
        ValueError
            For a query or an option.
        """
        if query is not None or kwargs:
            raise ValueError(
                "lancetorch's search() is a full scan only (search() or search(None)); vector "
                "and full-text search are LanceDB features"
            )
        return ScanQuery(self)

    def head(self, n: int = 5) -> pa.Table:
        """The first ``n`` rows.

        Parameters
        ----------
        n : int, default 5
            How many rows (fewer when the table has fewer).

        Returns
        -------
        pa.Table
        """
        return self.search().limit(n).to_arrow()

    def to_pandas(self, **kwargs: Any) -> Any:
        """The table as a pandas DataFrame.

        Parameters
        ----------
        **kwargs : Any
            Passed to ``pyarrow.Table.to_pandas``.

        Returns
        -------
        pandas.DataFrame
        """
        return self.to_arrow().to_pandas(**kwargs)

    def to_polars(self, **kwargs: Any) -> Any:
        """The table as a polars LazyFrame (as LanceDB's ``to_polars``).

        Parameters
        ----------
        **kwargs : Any
            Passed to ``polars.from_arrow``.

        Returns
        -------
        polars.LazyFrame
        """
        import polars as pl

        frame = pl.from_arrow(self.to_arrow(), **kwargs)
        assert isinstance(frame, pl.DataFrame)  # a table gives a DataFrame, never a Series
        return frame.lazy()

    def __getitems__(self, indices: Any) -> pa.Table:
        """The rows at ``indices`` in the order given, as one pyarrow Table of one chunk
        (what LanceDB returns); ``tbl_to_tensor`` turns it into a tensor without a copy.

        Parameters
        ----------
        indices : list, range, np.ndarray, torch.Tensor or pa.Array of int
            Row offsets; negative counts from the end.

        Returns
        -------
        pa.Table

        Raises
        ------
        IndexError
            For an offset out of range.
        TypeError
            For offsets that are not integers.
        """
        return _native.table_of_batch(self._take(indices))

    def __getitem__(self, index: Any) -> pa.Table:
        """Row ``index``, a slice of rows or a list of offsets, as a pyarrow Table.

        Parameters
        ----------
        index : int, slice, list, np.ndarray or torch.Tensor
            One row offset (negative counts from the end), a slice, or offsets.

        Returns
        -------
        pa.Table

        Raises
        ------
        IndexError
            For an offset out of range.
        TypeError
            For an index of another kind (a bool, a float, a string).
        """
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
    def __getattr__(self, name: str) -> Any:
        # Only names that are not attributes reach here: a LanceDB table method lancetorch
        # does not have says so and what to use; any other name fails as usual.
        advice = _LANCEDB_TABLE.get(name)
        if advice is None:
            raise AttributeError(f"'Table' object has no attribute {name!r}")
        raise AttributeError(f"lancetorch's Table has no {name} (a LanceDB Table has): {advice}")

    def __reduce__(self) -> tuple:
        if isinstance(self._backend, _LanceBackend):
            # The version read here: rows appended or deleted later do not shift the offsets.
            return (Table._lance, (self._name, *self._backend.location()))
        return (_unpickle_memory_table, (self._name, _to_ipc(self._backend.store)))


_WRITE = (
    "lancetorch reads tables for training and writes only by add(); change the dataset with "
    "lancedb or pylance (lance.dataset(table.uri)) and open the table again"
)
_INDEX = (
    "lancetorch reads every row and builds no index (vector and full-text search are "
    "LanceDB's); use lancedb for indexes"
)
_VERSION = (
    "lancetorch reads the version the table was opened at; open it again with "
    "connect(uri).open_table(name) for the latest, or use lancedb for versions"
)
_MAINTAIN = "maintain the dataset with lancedb or pylance (lance.dataset(table.uri))"
_LSM = "LanceDB's LSM writes are not in lancetorch; use lancedb"
_BLOB = "read blob columns as binary with take_offsets([...]).to_arrow()"
# LanceDB 0.40 Table attributes lancetorch does not have, and what to use instead.
_LANCEDB_TABLE = {
    **dict.fromkeys(
        [
            "add_columns",
            "alter_columns",
            "drop_columns",
            "delete",
            "update",
            "merge",
            "merge_insert",
            "replace_field_metadata",
            "update_field_metadata",
            "refresh_column",
            "refresh_column_async",
            "set_unenforced_primary_key",
        ],
        _WRITE,
    ),
    **dict.fromkeys(
        [
            "create_index",
            "create_index_async",
            "create_fts_index",
            "create_scalar_index",
            "drop_index",
            "list_indices",
            "index_stats",
            "wait_for_index",
            "prewarm_index",
            "infer_tokenizer_configs",
            "tokenize",
            "embedding_functions",
        ],
        _INDEX,
    ),
    **dict.fromkeys(
        [
            "version",
            "checkout",
            "checkout_latest",
            "restore",
            "list_versions",
            "tags",
            "branches",
            "current_branch",
        ],
        _VERSION,
    ),
    **dict.fromkeys(
        [
            "optimize",
            "compact_files",
            "cleanup_old_versions",
            "migrate_v2_manifest_paths",
            "uses_v2_manifest_paths",
            "prewarm_data",
        ],
        _MAINTAIN,
    ),
    **dict.fromkeys(
        [
            "checkpoint_lsm",
            "close_lsm_writers",
            "compact_lsm",
            "flush_lsm",
            "get_lsm_stats",
            "get_lsm_write_spec",
            "set_lsm_write_spec",
            "unset_lsm_write_spec",
        ],
        _LSM,
    ),
    **dict.fromkeys(
        ["blob_columns", "fetch_blobs", "fetch_blob_files", "fetch_blob_ranges"], _BLOB
    ),
    "to_lance": "open the dataset with pylance: lance.dataset(table.uri) (a disk table)",
    "stats": "len(table) counts the rows and table.schema describes the columns",
    "create": "make a table with connect(uri).create_table(name, data)",
    "open": "open a table with connect(uri).open_table(name)",
    "from_inner": "open a table with connect(uri).open_table(name)",
    "id": "a table is named by table.name",
    "namespace": "namespaces are LanceDB's; lancetorch tables live directly in a connection",
    "function_errors": "lancetorch has no embedding functions",
    "initial_storage_options": "storage options are given to connect(uri, storage_options=...)",
    "latest_storage_options": "storage options are given to connect(uri, storage_options=...)",
}


def as_lancetorch_table(table: Any) -> Table:
    """``table`` as a lancetorch Table: itself, or a LanceDB table read through its Lance
    dataset (a LanceDB memory table, which has no dataset on disk, by value).

    Parameters
    ----------
    table : Table or lancedb.table.Table
        A lancetorch Table, or a LanceDB one (one on a local disk is read at its current
        version; any other is copied into memory).

    Returns
    -------
    Table

    Raises
    ------
    TypeError
        For anything else.
    """
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


def _open_shared_table(name: str, path: str) -> Table:
    """A memory table in a worker process, mapped from the parent's shared-memory file:
    every worker reads the same pages, none holds a copy of its own."""
    try:
        source = pa.memory_map(path)
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"the shared memory of memory table '{name}' ({path}) is gone: the process that "
            "created the table has ended or dropped it. Send memory tables only to workers of "
            "a live process, or use a table on disk"
        ) from err
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


def _unpickle_memory_table(name: str, ipc: bytes) -> Table:
    return Table._memory(name, pa.ipc.open_stream(ipc).read_all())
