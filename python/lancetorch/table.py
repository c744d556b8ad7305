"""Tables: Arrow data in memory (held by the Rust column store) or a Lance dataset on disk.

A Table is a ``torch.utils.data.Dataset``: ``len(table)`` rows, ``table.__getitems__(indices)``
gives a ``pyarrow.Table`` of those rows in the order asked, which
``lancetorch.util.tbl_to_tensor`` turns into one ``(columns, rows)`` tensor.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from multiprocessing.reduction import ForkingPickler
from typing import Any

import numpy as np
import pyarrow as pa

from . import _checks, _native
from ._arrow import as_offsets, as_offsets_unsigned, as_table, conform
from ._backends import Backend, CacheSettings, LanceLocation, Recipe, _MemoryBackend, is_backend
from ._lance import _LanceBackend
from ._lance_reads import tier_folder
from ._lancedb import lancedb_source, missing
from ._vectors import check_policy, mend_vectors
from .query import TableQueries


class Table(TableQueries):
    """A named table: a PyTorch map-style Dataset over its rows.

    Made by a :class:`~lancetorch.Connection` (``create_table``, ``open_table``), not directly.

    Parameters
    ----------
    name : str
        The table's name.
    backend : Backend
        What holds the rows (at one version): the Rust column store, or a Lance dataset.
    read_consistency_interval : float, optional
        Seconds after a check for a newer version (of a disk or object-store table) before
        a read checks again: ``0.0`` checks on every read, ``None`` never (until
        :meth:`checkout_latest`). See :func:`lancetorch.connect`.
    pinned : bool, default False
        Read ``backend``'s version only, never checking for a newer one (an unpickled table,
        a reader's epoch).

    Examples
    --------
    >>> import lancetorch, pyarrow as pa
    >>> db = lancetorch.connect("memory://")
    >>> t = db.create_table("t", pa.table({"x": [10, 20, 30]}))
    >>> t.__getitems__([2, 0]).column("x").to_pylist()
    [30, 10]
    """

    def __init__(
        self,
        name: str,
        backend: Backend,
        *,
        read_consistency_interval: float | None = None,
        pinned: bool = False,
    ) -> None:
        if not isinstance(name, str):
            raise TypeError(f"name={name!r} is {type(name).__name__}; a table's name is a string")
        if not is_backend(backend):
            raise TypeError(
                f"backend is {type(backend).__name__}; tables are made by "
                "connect(uri).create_table(...) or open_table(...)"
            )
        self._name = name
        # Two readers of the same versions: ``_backend`` is what the Dataset protocol (len,
        # [], __getitems__) and pickling read, moved only by checkout(), checkout_latest()
        # and add(), so that an epoch never reads two versions; ``_api`` is what the table's
        # own API reads, which also follows read_consistency_interval. They share a backend
        # (and its cache) while they read the same version.
        self._backend = backend
        self._api = backend
        self._interval = read_consistency_interval
        self._pinned = pinned
        self._checked_out: int | str | None = None  # the version checkout() asked for
        self._checked = time.monotonic()  # when a newer version was last looked for
        # The schema the column positions below were worked out for, and the positions.
        self._positions: tuple[pa.Schema | None, dict[tuple[str, ...], tuple[int, ...]]] = (
            None,
            {},
        )

    # -- construction (used by Connection and unpickling) --------------------------------------
    @classmethod
    def _memory(cls, name: str, data: pa.Table) -> Table:
        return cls(name, _MemoryBackend(_native.ColumnStore(data), name=name))

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
        read_consistency_interval: float | None = None,
        cache_dir: str | os.PathLike[str] | bool | None = None,
        cache_dir_budget: int | None = None,
    ) -> Table:
        return cls(
            name,
            _LanceBackend(
                LanceLocation.of(name, uri, storage_options, read_timeout),
                CacheSettings(cache, cache_budget, tier_folder(cache_dir), cache_dir_budget),
                version,
            ),
            read_consistency_interval=read_consistency_interval,
        )

    # -- versions -------------------------------------------------------------------------------
    def _current(self) -> Backend:
        """The backend a read of the table's API reads: the latest version where
        ``read_consistency_interval`` says a check is due (never for a pinned or checked-out
        handle, nor where the backend has no versions to follow). What the Dataset protocol
        reads does not move with it."""
        backend = self._api
        if (
            self._interval is None
            or self._pinned
            or self._checked_out is not None
            or not backend.follows_versions()
        ):
            return backend
        now = time.monotonic()
        if now - self._checked < self._interval:
            return backend
        self._checked = now
        self._api = backend.at_version(None, (self._api, self._backend))
        return self._api

    def _move_to(self, version: int | str | None) -> None:
        """Read ``version`` (None: the latest) from now on, in the Dataset protocol and the
        table's API alike (checkout, checkout_latest), sharing a backend either reader has
        at that version."""
        self._backend = self._api = self._backend.at_version(version, (self._api, self._backend))

    def _pinned_view(self) -> Table:
        """This table at the version a read now sees, for a reader that must read one
        version to its end (a Permutation, a Loader, a StreamingDataset, a query): a Table
        sharing this version's backend (and its cache) that never moves. Of a memory table,
        a Table over the rows it holds now (the same column store, no copy): rows appended
        later are not in it."""
        backend = self._current().pinned()
        # A view of its own even of a pinned or checked-out handle: that handle may move on
        # (checkout_latest), the view never does.
        return Table(self._name, backend, pinned=True)

    @property
    def version(self) -> int:
        """The version the table's API reads: Lance's version number of a disk table (1 when
        created, one more each change); for a memory table, 1 when created and one more each
        ``add``. The Dataset protocol (``len``, ``[]``, ``__getitems__``) reads the version
        the handle holds for it, older where ``read_consistency_interval`` has since found a
        newer one, until :meth:`checkout_latest`."""
        return self._current().version

    def checkout_latest(self) -> None:
        """Read the latest version from now on (after :meth:`checkout`, or where
        ``read_consistency_interval`` is ``None``), and follow
        ``read_consistency_interval`` again. A memory table always reads its latest.

        Raises
        ------
        FileNotFoundError
            For a table dropped since this handle opened it.
        """
        self._checked_out = None
        self._pinned = False
        self._checked = time.monotonic()
        self._move_to(None)

    def checkout(self, version: int | str) -> None:
        """Read ``version`` (a version number, or a tag of a disk table) until
        :meth:`checkout_latest`: no check for newer versions, and ``add`` is refused, as in
        LanceDB.

        Parameters
        ----------
        version : int or str
            A version number (1 or more) from :meth:`list_versions`, or a tag name.

        Raises
        ------
        TypeError
            For a version that is neither a number nor a tag name.
        ValueError
            For a version (or tag) the table does not have (never written, or removed by
            ``cleanup_old_versions``); a memory table keeps only its latest version.
        """
        if isinstance(version, bool) or not isinstance(version, (int, np.integer, str)):
            raise TypeError(
                f"version must be a version number (an int, 1 or more) or a tag name, got "
                f"{version!r}"
            )
        if not isinstance(version, str) and version < 0:  # as LanceDB: 0 is a missing one
            raise TypeError(f"version must be a version number from 1, got {version}")
        version = version if isinstance(version, str) else int(version)
        self._move_to(version)
        self._checked_out = version

    def list_versions(self) -> list[dict[str, Any]]:
        """Every version of the table there is now: dicts of ``version`` (int),
        ``timestamp`` (datetime) and ``metadata`` (Lance's summary of the version), as
        LanceDB gives them. A memory table has its latest version only.

        Returns
        -------
        list of dict
        """
        return self._backend.list_versions()

    # -- description ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def uri(self) -> str | None:
        """Where the table's Lance dataset lives, or ``None`` for a memory table."""
        location = self._backend.location
        return None if location is None else location.uri

    @property
    def schema(self) -> pa.Schema:
        return self._current().schema

    def count_rows(self, filter: str | None = None) -> int:
        """The number of rows (of the latest version, where ``read_consistency_interval``
        says a check is due), or of those where ``filter`` is true.

        Parameters
        ----------
        filter : str, optional
            One SQL predicate over the table's columns, evaluated by Lance as
            ``search().where`` evaluates it (null counts as false).

        Returns
        -------
        int

        Raises
        ------
        ValueError
            For an empty filter, more than one expression, or one Lance cannot evaluate or
            that is not true/false.
        """
        if filter is None:
            return self._current().count_rows()
        from .query import checked_predicate, predicate_mask

        checked_predicate("filter", filter)
        return int(np.count_nonzero(predicate_mask(self._pinned_view(), filter)))

    def __len__(self) -> int:
        # The Dataset protocol (len, [], __getitems__) reads the version the handle holds for
        # it and never checks for a newer one, nor moves when a read of the table's API does:
        # samplers ask len() during an epoch, and workers hold the version they were sent.
        return self._backend.count_rows()

    def __repr__(self) -> str:
        where = self.uri or "memory"
        backend = self._backend
        return (
            f"Table({self._name!r}, {where}, {backend.count_rows()} rows, "
            f"columns={backend.schema.names})"
        )

    def to_arrow(self) -> pa.Table:
        return self._current().to_arrow()

    def _read_columns(self, columns: list[str]) -> pa.Table:
        """Some columns of every row, reading only those."""
        return self._backend.read_columns(columns)

    # -- writing --------------------------------------------------------------------------------
    def add(
        self,
        data: Any,
        mode: str = "append",
        on_bad_vectors: str = "error",
        fill_value: float = 0.0,
    ) -> None:
        """Append rows, or replace them all.

        Parameters
        ----------
        data : Any
            The rows, anything :meth:`Connection.create_table` takes. They must have the table's
            fields (in any order; types that cast without loss are cast).
        mode : {"append", "overwrite"}, default "append"
            ``"overwrite"`` writes ``data`` in place of every row (a new version; a disk
            table keeps the old ones, for :meth:`checkout`).
        on_bad_vectors : {"error", "drop", "fill", "null"}, default "error"
            What to do with a row whose vector is null, holds a NaN or has another length
            than the column's, as :meth:`Connection.create_table` does.
        fill_value : float, default 0.0
            The value ``on_bad_vectors="fill"`` writes.

        Raises
        ------
        ValueError
            Naming the field that is missing, extra or does not cast, or the row of a bad
            vector; nothing is written. Or while a version is checked out (:meth:`checkout`).
        """
        _checks.choice("mode", mode, ("append", "overwrite"))
        check_policy(on_bad_vectors, fill_value)
        if self._checked_out is not None:
            raise ValueError(
                "table cannot be modified when a specific version is checked out: table "
                f"'{self._name}' reads version {self._checked_out}; call checkout_latest() first"
            )
        backend = self._backend
        new = mend_vectors(
            as_table(data, backend.schema), backend.schema, self._name, on_bad_vectors, fill_value
        )
        new = conform(new, backend.schema, self._name)
        if not new.num_rows and mode == "append":
            return
        self._checked = time.monotonic()
        known = (self._api, self._backend)
        self._backend = self._api = backend.append(new, known, overwrite=mode == "overwrite")

    # -- reading --------------------------------------------------------------------------------
    def _column_positions(self, columns: Sequence[str] | None) -> list[int] | None:
        """Positions of ``columns`` in the schema (None: every column), worked out once per
        selection and schema: a view reading the same columns batch after batch asks again."""
        if columns is None:
            return None
        columns = (columns,) if isinstance(columns, str) else tuple(columns)  # read once
        schema = self._backend.schema
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
        batch = self._take(indices)
        table = pa.Table.from_batches([batch])
        _native.remember_alias(table, batch)  # tbl_to_tensor(table) uses the take as it is
        return table

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
        all_ids = self._backend.row_ids()
        return offsets.astype(np.uint64) if all_ids is None else all_ids[offsets]

    def _offsets_of_row_ids(self, row_ids: Any) -> np.ndarray:
        """Row offsets (int64) of these row ids; ValueError names an id not in the table."""
        ids = np.asarray(as_offsets_unsigned(row_ids), dtype=np.uint64)
        all_ids = self._backend.row_ids()
        if all_ids is not None:
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
    def __getattr__(self, name: str) -> Any:
        # Only names that are not attributes reach here: a LanceDB table method lancetorch
        # does not have says so and what to use; any other name fails as usual.
        raise missing(name)

    # Plain pickle: a disk table as its location and version, a memory table by value. To
    # multiprocessing workers a memory table travels as shared memory instead (see
    # _reduce_for_workers). Pickling pins the version: the table unpickled reads the version
    # this handle holds (rows appended or deleted later do not shift the offsets), never
    # checks for a newer one until its checkout_latest(), and refuses to read a table dropped
    # and made again since.
    def __reduce__(self) -> tuple:
        return (_unpickled, (self._name, self._interval, *self._backend.reopen()))


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
    source = lancedb_source(table)
    if source is not None:
        name, path, version = source
        if path is not None:
            return Table._lance(name, path, None, version=version)
        return Table._memory(name, table.to_arrow())
    raise TypeError(
        f"expected a lancetorch Table (or a LanceDB table), got {type(table).__name__}; open "
        "one with lancetorch.connect(uri).open_table(name) or create_table(name, data)"
    )


def _unpickled(
    name: str, interval: float | None, make: Callable[..., Backend], args: tuple[Any, ...]
) -> Table:
    """A table in another process: its backend made again there, pinned at the version sent
    (a disk table opens Lance only when a read needs it)."""
    return Table(name, make(*args), read_consistency_interval=interval, pinned=True)


def _reduce_for_workers(table: Table, names: list[str] | None = None) -> tuple:
    """How a Table travels to multiprocessing workers (spawn, forkserver): a memory table, and
    a disk table's cache, as a shared-memory file that every worker maps; otherwise as with
    plain pickle. Workers that read only the columns ``names`` get only those cached."""
    recipe: Recipe = table._backend.reopen_in_workers(names)  # the version the handle holds
    return (_unpickled, (table.name, table._interval, *recipe))


ForkingPickler.register(Table, _reduce_for_workers)


class TableForWorkers:
    """A table on its way to workers that read only the columns ``names`` (a Permutation's):
    a disk table caches and shares just those. Arrives as the Table itself; only for pickling
    to multiprocessing workers."""

    def __init__(self, table: Table, names: list[str]) -> None:
        self.table, self.names = table, names

    def __reduce__(self) -> tuple:
        return _reduce_for_workers(self.table, self.names)
