"""Queries of a table's rows: :meth:`Table.take_offsets` and :meth:`Table.take_row_ids` pick
rows, :meth:`Table.search` (a full scan) reads them all. Nothing is read until a ``to_*``
method runs; each runs the take afresh. ``TableQueries`` holds the Table methods that make
them.

>>> import lancetorch, pyarrow as pa
>>> t = lancetorch.connect("memory://").create_table("t", pa.table({"x": [10, 20, 30]}))
>>> t.take_offsets([2, 0]).with_row_id().to_list()
[{'x': 30, '_rowid': 2}, {'x': 10, '_rowid': 0}]
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from . import _checks, _native
from ._arrow import as_offsets
from ._objectstore import ReadTimeout, within

if TYPE_CHECKING:
    from .table import Table

ROW_ID = "_rowid"


class TakeQuery:
    """Rows of a table at given offsets, in the order given (duplicates kept).

    Made by :meth:`Table.take_offsets` and :meth:`Table.take_row_ids`.

    Parameters
    ----------
    table : Table
        The table read.
    offsets : list, range, np.ndarray, torch.Tensor or pa.Array of int
        Row offsets; negative counts from the end. Checked when a ``to_*`` method runs.
    """

    def __init__(self, table: Any, offsets: Any) -> None:
        from .table import Table

        if not isinstance(table, Table):
            raise TypeError(
                f"table is {type(table).__name__}; queries are made by a Table's "
                "take_offsets, take_row_ids and search"
            )
        self._table = table
        self._offsets = offsets
        self._selection: dict[str, str] | None = None  # output name -> column name
        self._with_row_id = False

    def select(self, columns: Sequence[str] | dict[str, str]) -> TakeQuery:
        """Only these columns, in this order. SQL expressions are LanceDB's.

        Parameters
        ----------
        columns : list of str or dict[str, str]
            A list of names (``"_rowid"`` among them if wanted; one name is a list of one), or a
            dict of output name to column name.

        Returns
        -------
        TakeQuery
            This query.

        Raises
        ------
        ValueError
            For a name given twice or a column not in the table.
        """
        if isinstance(columns, str):
            columns = [columns]
        selection = dict(columns) if isinstance(columns, dict) else {c: c for c in columns}
        if not isinstance(columns, dict) and len(selection) != len(columns):
            twice = next(c for c in columns if list(columns).count(c) > 1)
            raise ValueError(f"column '{twice}' is named twice in {list(columns)}")
        names = self._table.schema.names
        for source in selection.values():
            if source != ROW_ID and source not in names:
                raise ValueError(
                    f"column '{source}' is not in table '{self._table.name}'; its columns are "
                    f"{names} (lancetorch selects columns by name, not by SQL expression)"
                )
        self._selection = selection
        return self

    def with_row_id(self, with_row_id: bool = True) -> TakeQuery:
        """Add the ``_rowid`` column (uint64) after the others.

        Parameters
        ----------
        with_row_id : bool, default True
            ``False`` takes it away again.

        Returns
        -------
        TakeQuery
            This query.
        """
        self._with_row_id = _checks.flag("with_row_id", with_row_id)
        return self

    def _positions(self) -> pa.Array:
        return _native.normalize_offsets(as_offsets(self._offsets), len(self._table))

    def _batch(self) -> pa.RecordBatch:
        positions = self._positions()
        selection = self._selection
        if selection is None:
            selection = {n: n for n in self._table.schema.names}
        columns = [c for c in selection.values() if c != ROW_ID]
        # Each column read once, even when selected under two names.
        distinct = list(dict.fromkeys(columns))
        batch = self._table._take(positions, distinct)
        wants_id = self._with_row_id or ROW_ID in selection.values()
        ids = (
            pa.array(self._table._row_ids(positions.to_numpy()), pa.uint64()) if wants_id else None
        )
        arrays, names = [], []
        for out, source in selection.items():
            arrays.append(ids if source == ROW_ID else batch.column(distinct.index(source)))
            names.append(out)
        if self._with_row_id and ROW_ID not in names:
            arrays.append(ids)
            names.append(ROW_ID)
        if not arrays:
            return batch
        if ids is None and len(distinct) == len(names):  # the take's columns, maybe renamed
            if names == batch.schema.names:
                return batch
            return batch.rename_columns(names)
        return pa.RecordBatch.from_arrays(arrays, names=names)

    def output_schema(self) -> pa.Schema:
        """The schema of the result, without reading any row."""
        return self._empty().schema

    def _empty(self) -> pa.RecordBatch:
        query = TakeQuery(self._table, [])
        query._selection, query._with_row_id = self._selection, self._with_row_id
        return query._batch()

    def _read(self, timeout: datetime.timedelta | None) -> pa.RecordBatch:
        """The rows, given up with TimeoutError once ``timeout`` has passed (LanceDB's)."""
        if timeout is None:
            return self._batch()
        if not isinstance(timeout, datetime.timedelta):
            raise TypeError(
                f"timeout={timeout!r} is {type(timeout).__name__}; give a datetime.timedelta, "
                "such as timedelta(seconds=30), or None to wait as long as the read takes"
            )
        if timeout <= datetime.timedelta(0):
            raise ValueError(f"timeout={timeout!r} must be longer than zero")
        try:
            return within(timeout.total_seconds(), self._batch)
        except ReadTimeout as e:
            raise TimeoutError(
                f"the query of table '{self._table.name}' did not finish within {timeout}; "
                "pass a longer timeout, or None"
            ) from e

    def to_arrow(self, *, timeout: datetime.timedelta | None = None) -> pa.Table:
        """The rows as a pyarrow Table of one chunk (``tbl_to_tensor`` converts it without a
        copy where the take allows).

        Parameters
        ----------
        timeout : datetime.timedelta, optional
            How long to wait for the rows; past it, TimeoutError. ``None``: as long as it
            takes.

        Returns
        -------
        pa.Table
        """
        return pa.Table.from_batches([self._read(timeout)])

    def to_batches(
        self,
        *,
        max_batch_length: int | None = None,
        timeout: datetime.timedelta | None = None,
    ) -> pa.RecordBatchReader:
        """The rows as a RecordBatchReader.

        Parameters
        ----------
        max_batch_length : int, optional
            The most rows a batch (1 or more); by default all rows come as one batch.
        timeout : datetime.timedelta, optional
            How long to wait for the rows; past it, TimeoutError.

        Returns
        -------
        pa.RecordBatchReader

        Raises
        ------
        TypeError
            For a ``max_batch_length`` that is not an integer.
        ValueError
            For a ``max_batch_length`` under 1.
        """
        longest = _checks.optional_integer("max_batch_length", max_batch_length, low=1)
        batch = self._read(timeout)
        if longest is None or batch.num_rows <= longest:
            parts = [batch]
        else:
            parts = [batch.slice(i, longest) for i in range(0, batch.num_rows, longest)]
        return pa.RecordBatchReader.from_batches(batch.schema, parts)

    def to_list(self, *, timeout: datetime.timedelta | None = None) -> list[dict[str, Any]]:
        """The rows as a list of dicts.

        Parameters
        ----------
        timeout : datetime.timedelta, optional
            How long to wait for the rows; past it, TimeoutError.

        Returns
        -------
        list of dict
        """
        return self._read(timeout).to_pylist()

    def to_pandas(self, *, timeout: datetime.timedelta | None = None, **kwargs: Any) -> Any:
        """The rows as a pandas DataFrame.

        Parameters
        ----------
        timeout : datetime.timedelta, optional
            How long to wait for the rows; past it, TimeoutError.
        **kwargs : Any
            Passed to ``pyarrow.Table.to_pandas``.

        Returns
        -------
        pandas.DataFrame
        """
        return self.to_arrow(timeout=timeout).to_pandas(**kwargs)

    def to_polars(self, *, timeout: datetime.timedelta | None = None) -> Any:
        """The rows as a polars DataFrame.

        Parameters
        ----------
        timeout : datetime.timedelta, optional
            How long to wait for the rows; past it, TimeoutError.

        Returns
        -------
        polars.DataFrame
        """
        import polars as pl

        return pl.from_arrow(self.to_arrow(timeout=timeout))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(table={self._table.name!r})"

    def __getattr__(self, name: str) -> Any:
        advice = _LANCEDB_QUERY.get(name)
        if advice is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        raise AttributeError(
            f"lancetorch's {type(self).__name__} has no {name}() (LanceDB's query has): {advice}"
        )


_SEARCH = "lancetorch reads every row; vector and full-text search are LanceDB's: use lancedb"
# LanceDB 0.40 query methods lancetorch does not have, and what to write instead.
_LANCEDB_QUERY = {
    "to_df": "use to_pandas()",
    "vector": _SEARCH,
    "text": _SEARCH,
    "rerank": _SEARCH,
    "order_by": "sort after reading: to_arrow().sort_by([...])",
    "with_row_address": "use with_row_id() for the rows' ids",
    "explain_plan": "there is no plan: a scan reads the table's rows in order",
    "analyze_plan": "there is no plan: a scan reads the table's rows in order",
    "with_fragments": "read rows by offset with table.take_offsets([...])",
    "fragment_ids": "read rows by offset with table.take_offsets([...])",
    "to_pydantic": "use to_list() for dicts of the rows",
    "to_query_object": "there is no query object: call to_arrow() or to_batches()",
}


class ScanQuery(TakeQuery):
    """Every row of a table in table order, after ``offset`` and up to ``limit`` of them.

    Made by :meth:`Table.search`.

    Parameters
    ----------
    table : Table
        The table read.
    """

    def __init__(self, table: Any) -> None:
        super().__init__(table, None)
        self._limit: int | None = None
        self._skip = 0
        self._filter: str | None = None

    def to_batches(  # type: ignore[override]  # LanceDB's scan adds batch_size first
        self,
        batch_size: int | None = None,
        *,
        max_batch_length: int | None = None,
        timeout: datetime.timedelta | None = None,
    ) -> pa.RecordBatchReader:
        """The rows as a RecordBatchReader.

        Parameters
        ----------
        batch_size : int, optional
            The most rows a batch (1 or more), LanceDB's scan's name for it; by default all
            rows come as one batch.
        max_batch_length : int, optional
            The same, by the name of a take's ``to_batches``; give one of the two.
        timeout : datetime.timedelta, optional
            How long to wait for the rows; past it, TimeoutError.

        Returns
        -------
        pa.RecordBatchReader

        Raises
        ------
        TypeError
            For a batch size that is not an integer.
        ValueError
            For a batch size under 1, or both names given.
        """
        if batch_size is not None and max_batch_length is not None:
            raise ValueError(
                f"batch_size={batch_size!r} and max_batch_length={max_batch_length!r} are one "
                "setting: give one of them"
            )
        if batch_size is not None:
            _checks.integer("batch_size", batch_size, low=1)
            max_batch_length = batch_size
        return super().to_batches(max_batch_length=max_batch_length, timeout=timeout)

    def limit(self, limit: int | None) -> ScanQuery:
        """Read at most ``limit`` rows.

        Parameters
        ----------
        limit : int or None
            0 or more; ``None``: every row.

        Returns
        -------
        ScanQuery
            This query.

        Raises
        ------
        ValueError
            For a negative limit.
        """
        self._limit = _checks.optional_integer("limit", limit, low=0)
        return self

    def offset(self, offset: int) -> ScanQuery:
        """Start after the first ``offset`` rows.

        Parameters
        ----------
        offset : int
            0 or more.

        Returns
        -------
        ScanQuery
            This query.

        Raises
        ------
        ValueError
            For a negative offset.
        """
        self._skip = _checks.integer("offset", offset, low=0)
        return self

    def where(self, where: str, prefilter: bool = True) -> ScanQuery:
        """Only the rows where the SQL predicate is true (null counts as false), evaluated by
        Lance as :meth:`PermutationBuilder.filter` evaluates it; ``offset`` and ``limit``
        count the rows it keeps. LanceDB's names: ``where(where, prefilter)``.

        Parameters
        ----------
        where : str
            One SQL predicate over the table's columns.
        prefilter : bool, default True
            LanceDB's choice of filtering before or after a vector search's limit; a scan has
            no such limit, so both filter every row before ``offset`` and ``limit`` (as
            LanceDB's scan does).

        Returns
        -------
        ScanQuery
            This query.

        Raises
        ------
        TypeError
            For a predicate that is not a string, or a ``prefilter`` that is not a bool.
        ValueError
            For an empty predicate or more than one expression; when the rows are read, for a
            predicate Lance cannot evaluate or that is not true/false.
        """
        self._filter = checked_predicate("where", where)
        _checks.flag("prefilter", prefilter)
        return self

    def _positions(self) -> pa.Array:
        if self._filter is None:
            n = len(self._table)
            lo = min(self._skip, n)
            hi = n if self._limit is None else min(lo + self._limit, n)
            return pa.array(np.arange(lo, hi, dtype=np.int64))
        kept = np.flatnonzero(predicate_mask(self._table, self._filter))
        end = None if self._limit is None else self._skip + self._limit
        return pa.array(kept[self._skip : end].astype(np.int64))


def checked_predicate(name: str, predicate: Any) -> str:
    """``predicate``, one SQL expression, else TypeError or ValueError naming ``name``."""
    from .permutation.builder import _one_expression

    _checks.text(name, predicate)
    if not predicate.strip():
        raise ValueError(f"{name}={predicate!r} is empty: give a SQL predicate such as 'x > 3'")
    _one_expression(predicate, name, "boolean")
    return predicate


def predicate_mask(table: Any, predicate: str) -> np.ndarray:
    """Where ``predicate`` is true over every row of ``table`` (null counts as false),
    evaluated by Lance; ValueError where it gives values other than true/false."""
    from .permutation.builder import _sql_column

    mask = _sql_column(table, predicate, "filter")
    if not pa.types.is_boolean(mask.type):
        raise ValueError(
            f"filter {predicate!r} gives {mask.type} values, not true/false: write a "
            "predicate such as 'x > 3'"
        )
    return np.asarray(mask.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


class TableQueries:
    """The methods of :class:`~lancetorch.Table` that make queries of its rows (a Table is
    the one class that has them): each query reads the version the table reads when it is
    made."""

    if TYPE_CHECKING:  # the table's own, in table.py

        def _pinned_view(self) -> Table: ...

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
        query = TakeQuery(self._pinned_view(), offsets)
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
        table = self._pinned_view()  # the ids found in the version the take reads
        return TakeQuery(table, table._offsets_of_row_ids(row_ids))

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
        return ScanQuery(self._pinned_view())

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
