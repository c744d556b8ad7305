"""``Permutation``, a lazy view of a table (its rows read: order, window, format;
``options.py`` holds its chainable options), and ``ReadPlan``, what a reader of a view
reads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.reduction import ForkingPickler
from typing import Any

import numpy as np
import pyarrow as pa

from .. import _checks, _native
from .._arrow import as_offsets
from ..sampler import BatchSampler
from ..table import Table, TableForWorkers, as_lancetorch_table
from .formats import _ROW_FORMATS, Transforms, _TorchDict
from .layout import _perm_arrow, _rows_of_split, _split_number, split_names_of
from .options import _ROW_ID_COLUMN, ViewOptions


@dataclass(frozen=True)
class ReadPlan:
    """The rows and columns of a Permutation, as a reader takes them: position ``i`` of the
    view is base-table row ``rows[i]`` (or ``offset + i`` where ``rows`` is None, a window of
    the table itself); ``columns`` are base columns, shown as ``renames.get(c, c)``.

    Made by :meth:`Permutation.read_plan`.

    Parameters
    ----------
    table : Table
        The base table.
    rows : np.ndarray or None
        The base-table row of each position, or ``None`` for a window of the table itself.
    offset : int
        The first position's row where ``rows`` is ``None``.
    length : int
        The number of positions.
    columns : list of str
        The base columns read, in output order.
    renames : dict[str, str]
        Base column to output name, for the columns shown under another name.
    transform : callable or None, default None
        The view's :meth:`Permutation.with_transform` function, which a reader applies to
        each batch's Arrow rows (under their output names); ``None`` where the view has a
        format instead.
    decode : dict[str, spec] or None, default None
        The decode specs of the view's ``torch_dict`` format, where it has them.
    row_ids : bool, default False
        Whether the view selects ``_rowid`` (each row's row id), which is not a base column.
    """

    table: Table
    rows: np.ndarray | None
    offset: int
    length: int
    columns: list[str]
    renames: dict[str, str]
    transform: Callable[[pa.RecordBatch], Any] | None = None
    decode: dict[str, Any] | None = None
    row_ids: bool = False


DEFAULT_BATCH_SIZE = 100


class Permutation(ViewOptions):
    """A lazy view of a table's rows in a given order, as a PyTorch map-style Dataset.

    Every ``with_*``, ``select_columns``, ``remove_columns`` and ``rename_*`` call returns a new
    Permutation and leaves this one as it was. Its attributes are LanceDB's:
    ``base_table``, ``permutation_table``, ``split`` (a number), ``selection`` (output name to
    base column), ``batch_size``, ``transform_fn``, ``offset`` and ``limit`` (``with_skip`` and
    ``with_take``), ``connection_factory``. Make one with :meth:`identity` or
    :meth:`from_tables`.

    Parameters
    ----------
    base_table : Table
        The table read.
    rows : np.ndarray or None
        The base table's row offset of each position, in read order; ``None``: every row in
        table order.
    permutation_table : Any, optional
        The permutation table the rows came from (kept as the ``permutation_table``
        attribute).
    split : int, default 0
        The split the rows are (the ``split`` attribute).
    selection : dict[str, str], optional
        Output name to base column; by default every column under its own name.
    """

    def __init__(
        self,
        base_table: Table,
        rows: np.ndarray | None,
        *,
        permutation_table: Any = None,
        split: int = 0,
        selection: dict[str, str] | None = None,
    ) -> None:
        if not isinstance(base_table, Table):
            raise TypeError(
                f"base_table is {type(base_table).__name__}; make a Permutation with "
                "Permutation.identity(table) or Permutation.from_tables(table, permutation_table)"
            )
        if rows is not None and not (isinstance(rows, np.ndarray) and rows.dtype.kind in "iu"):
            raise TypeError(f"rows is {type(rows).__name__}; give an integer numpy array or None")
        split = _checks.integer("split", split, low=0)
        if selection is not None and not (
            isinstance(selection, dict)
            and all(isinstance(k, str) and isinstance(c, str) for k, c in selection.items())
        ):
            raise TypeError(f"selection={selection!r}: give a dict of shown name to column name")
        # The version the base table reads now, for the life of the view: its rows are
        # that version's offsets (a newer version may have moved them).
        self._table: Table | None = base_table._pinned_view()
        self._table_name = base_table.name
        self._rows = rows
        self.permutation_table = permutation_table
        self.split = split
        self.selection = (
            selection if selection is not None else {n: n for n in self._table.schema.names}
        )
        self.batch_size = DEFAULT_BATCH_SIZE
        self.transform_fn: Callable[[pa.RecordBatch], Any] = Transforms.arrow2python
        self._format: str | None = "python"
        self.offset: int | None = None
        self.limit: int | None = None
        self.connection_factory: Callable[[str], Any] | None = None
        self._note()

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def identity(cls, table: Any) -> Permutation:
        """All rows of ``table`` in table order.

        Parameters
        ----------
        table : Table
            The table (a LanceDB table too).

        Returns
        -------
        Permutation
        """
        return cls(as_lancetorch_table(table), None)

    @classmethod
    def from_tables(
        cls, base_table: Any, permutation_table: Any = None, split: str | int | None = None
    ) -> Permutation:
        """One split of ``permutation_table`` (by name or number; split 0 when not given)
        over ``base_table``; without a permutation table, all rows in order.

        Split 0 by default, never every split: reading a permutation table without naming a
        split must not mix the test rows into training.

        Parameters
        ----------
        base_table : Table
            The table read (a LanceDB table too).
        permutation_table : Table or pa.Table, optional
            What :meth:`PermutationBuilder.execute` made (or LanceDB's, or its Arrow data):
            ``row_id`` and ``split_id`` columns.
        split : str or int, optional
            The split's name (from the table's split names) or number; only with a permutation
            table.

        Returns
        -------
        Permutation

        Raises
        ------
        ValueError
            For a split with no rows ("No rows found"), a split name the table does not define,
            a split without a permutation table, or a table that is not a permutation table.
        TypeError
            For a split that is neither a name nor a number.
        """
        base = as_lancetorch_table(base_table)._pinned_view()  # the rows found in it
        if permutation_table is None:
            if split is not None:
                raise ValueError(
                    f"Cannot create a permutation on split `{split}` because no permutation "
                    "table is provided"
                )
            return cls(base, None)
        arrow = _perm_arrow(permutation_table)
        number = 0 if split is None else _split_number(split, split_names_of(arrow))
        rows = _rows_of_split(base, arrow, number)
        if not len(rows):
            raise ValueError(
                f"No rows found in the permutation table for the given split ({split!r}, "
                f"number {number}) over table '{base.name}'"
            )
        return cls(base, rows, permutation_table=permutation_table, split=number)

    def _copy(self, **changes: Any) -> Permutation:
        new = object.__new__(Permutation)
        new.__dict__.update(self.__dict__)
        new.__dict__.pop("_whole_columns", None)
        new.__dict__.update(changes)
        new._note()
        return new

    def _note(self) -> None:
        """Tell a disk table which columns this view reads: before a fork it caches those."""
        if self._table is not None:
            self._table._backend.note_view(self, self._base_columns())

    def _base(self) -> Table:
        if self._table is None:
            factory = self.connection_factory
            if factory is None:
                raise RuntimeError(
                    f"this permutation holds no table '{self._table_name}' and has no "
                    "connection_factory to reopen it; give one with "
                    "with_connection_factory(name -> table) before pickling it"
                )
            table = as_lancetorch_table(factory(self._table_name))._pinned_view()
            ids = self.__dict__.pop("_row_ids", None)
            if ids is not None:
                # The factory opens the table as it is now: rows added or deleted since shift
                # offsets, so the rows are found again by their row ids (a row deleted since
                # is a ValueError naming it, never another row read in its place).
                self._rows = table._offsets_of_row_ids(ids)
            self._table = table
        return self._table

    @property
    def base_table(self) -> Table:
        return self._base()

    # -- shape --------------------------------------------------------------------------------
    def _total(self) -> int:
        base = self._base()  # first: a reopened table finds its rows again
        return len(base) if self._rows is None else len(self._rows)

    @property
    def _window(self) -> tuple[int, int]:
        """The positions of the underlying rows this view reads: ``offset`` and ``limit``."""
        total = self._total()
        lo = min(self.offset or 0, total)
        hi = total if self.limit is None else min(lo + self.limit, total)
        return lo, hi

    def __len__(self) -> int:
        lo, hi = self._window
        return hi - lo

    @property
    def num_rows(self) -> int:
        return len(self)

    @property
    def column_names(self) -> list[str]:
        """Output names, in the selection's order."""
        return list(self.selection)

    def read_plan(self) -> ReadPlan:
        """What a reader of this view reads (the Loader's way in: it reads nothing else of
        the view): the base table, and the base columns under their output names."""
        base = self._base()  # first: a reopened table finds its rows again
        lo, hi = self._window
        decode = self.transform_fn.decode if isinstance(self.transform_fn, _TorchDict) else None
        return ReadPlan(
            table=base,
            rows=None if self._rows is None else self._rows[lo:hi],
            offset=lo,
            length=hi - lo,
            columns=self._base_columns(),
            renames=self._renames,
            transform=self.transform_fn if self._format is None else None,
            decode=decode,
            row_ids=_ROW_ID_COLUMN in self.selection.values(),
        )

    def _base_columns(self) -> list[str]:
        """The base table's columns this view reads (``_rowid`` is not one)."""
        return [c for c in self.selection.values() if c != _ROW_ID_COLUMN]

    @property
    def _renames(self) -> dict[str, str]:
        """Base column -> output name, for the columns shown under another name."""
        return {c: n for n, c in self.selection.items() if n != c and c != _ROW_ID_COLUMN}

    @property
    def num_columns(self) -> int:
        return len(self.selection)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_rows, self.num_columns)

    @property
    def schema(self) -> pa.Schema:
        schema = self._base().schema
        return pa.schema(
            [
                (schema.field(c) if c != _ROW_ID_COLUMN else pa.field(n, pa.uint64())).with_name(n)
                for n, c in self.selection.items()
            ]
        )

    def __repr__(self) -> str:
        return (
            f"Permutation(table={self._table_name!r}, rows={len(self)}, "
            f"columns={self.column_names}, format={self._format or 'custom'!r})"
        )

    # -- reading ------------------------------------------------------------------------------
    def _offsets(self, indices: Any) -> pa.Array:
        """Row offsets in the base table of positions of this view (a list of ints or
        anything ``as_offsets`` takes; negative counts from the end), checked against the
        view and mapped through its order and window in one pass in Rust."""
        lo, hi = self._window  # (reopens the base table first, where it was left behind)
        rows = self._rows_array()
        if type(indices) is list:  # the DataLoader's batch: read by Rust without conversion
            try:
                return _native.view_offsets(indices, hi - lo, lo, rows)
            except TypeError:
                pass  # not all plain ints: as_offsets accepts numpy ints or explains why
        return _native.view_offsets(as_offsets(indices), hi - lo, lo, rows)

    def _rows_array(self) -> pa.Array | None:
        """The view's order as an int64 Arrow array over the same memory, made once per
        order (a reopened table finds its rows again, a new order)."""
        if self._rows is None:
            return None
        made = self.__dict__.get("_rows_arrow")
        if made is None or made[0] is not self._rows:
            made = (self._rows, pa.array(self._rows, pa.int64()))
            self.__dict__["_rows_arrow"] = made
        return made[1]

    def _arrow(self, indices: Any) -> pa.RecordBatch:
        """Rows at positions of this view (negative counts from the end), as Arrow."""
        offsets = self._offsets(indices)
        base = self._base()
        batch = base._take(offsets, None if self._whole(base) else self._base_columns())
        names = self.column_names
        if _ROW_ID_COLUMN in self.selection.values():
            ids = pa.array(base._row_ids(offsets.to_numpy()), pa.uint64())
            taken = iter(batch.columns)
            columns = [ids if c == _ROW_ID_COLUMN else next(taken) for c in self.selection.values()]
            return pa.RecordBatch.from_arrays(columns, names=names)
        if names != batch.schema.names:
            return batch.rename_columns(names)
        return batch

    def _output(self, batch: pa.RecordBatch) -> Any:
        return self.transform_fn(batch)

    def take_offsets(self, offsets: Any) -> Any:
        """Rows at these positions of the permutation, in the output format.

        Parameters
        ----------
        offsets : list, range, np.ndarray, torch.Tensor or pa.Array of int
            Positions in this view; negative counts from the end.

        Returns
        -------
        Any
            What the format (or transform) makes of the rows.

        Raises
        ------
        IndexError
            For a position out of range.
        """
        base = self._base()
        if self._rows is None and not self.offset and self.limit is None and self._whole(base):
            # Every row and column in table order: positions are row offsets, checked by
            # the take itself (the DataLoader's hot path).
            return self._output(base._take(offsets))
        return self._output(self._arrow(offsets))

    def _whole(self, base: Table) -> bool:
        """Whether this view shows the table's columns as they are, all of them in order
        (worked out once a view: ``_copy`` forgets it)."""
        whole = self.__dict__.get("_whole_columns")
        if whole is None:
            names = base.schema.names
            whole = len(self.selection) == len(names) and all(
                k == c == n for (k, c), n in zip(self.selection.items(), names)
            )
            self.__dict__["_whole_columns"] = whole
        return whole

    def __getitems__(self, indices: Any) -> Any:
        return self.take_offsets(indices)

    def __getitem__(self, index: Any) -> Any:
        """One row: a dict, or a tensor, in the row formats (python, torch, torch_row,
        torch_dict), a one-row batch in the others; a slice gives those rows. (LanceDB gives
        a list of one row here; see the README's differences.)

        Parameters
        ----------
        index : int or slice
            A position (negative counts from the end), or a slice of positions.

        Returns
        -------
        Any

        Raises
        ------
        TypeError
            For an index that is not an integer or a slice.
        IndexError
            For a position out of range.
        """
        if isinstance(index, slice):
            return self.take_offsets(range(*index.indices(len(self))))
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"a row index must be an integer, got {index!r}")
        out = self.take_offsets([int(index)])
        if self._format in _ROW_FORMATS:
            return out[0]
        return out

    def iter(
        self,
        batch_size: int | None = None,
        skip_last_batch: bool = False,
        *,
        shuffle: bool = False,
        seed: int | None = None,
        epoch: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> Iterator[Any]:
        """Batches of ``batch_size`` rows: in order, or with ``shuffle=True`` in the order
        :class:`lancetorch.sampler.BatchSampler` gives for ``(seed, epoch)``.

        A shuffled read is a training read: under ``torch.distributed`` (or ``RANK`` and
        ``WORLD_SIZE``) each rank gets its own share of the epoch, as with ``BatchSampler``.
        A read in order gives every row unless ``rank`` and ``world_size`` are passed.

        Parameters
        ----------
        batch_size : int, optional
            Rows a batch; by default the view's (``with_batch_size``, 100).
        skip_last_batch : bool, default False
            Leave out a short last batch.
        shuffle : bool, default False
            Read in a seeded shuffled order.
        seed : int, optional
            The shuffle's seed, as ``BatchSampler`` takes it.
        epoch : int, default 0
            The epoch whose order is read.
        rank : int, optional
            This rank, as ``BatchSampler`` takes it.
        world_size : int, optional
            The number of ranks, as ``BatchSampler`` takes it.

        Yields
        ------
        Any
            Each batch in the output format.
        """
        size = self.batch_size if batch_size is None else batch_size
        if not shuffle and rank is None and world_size is None:
            rank, world_size = 0, 1
        sampler = BatchSampler(
            len(self),
            size,
            shuffle=shuffle,
            seed=seed,
            drop_last=skip_last_batch,
            rank=rank,
            world_size=world_size,
        )
        sampler.set_epoch(epoch)
        for positions in sampler:
            yield self._output(self._arrow(positions))

    def __iter__(self) -> Iterator[Any]:
        """Batches of ``batch_size`` rows, the last one left out when it is short (as in
        LanceDB)."""
        return self.iter(self.batch_size, skip_last_batch=True)

    # -- pickling -----------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_rows_arrow", None)  # made again from the rows where it is needed
        if self.connection_factory is not None:
            state["_table"] = None  # reopened by the factory; no connection state travels
            if self._rows is not None and "_row_ids" not in state:
                state["_row_ids"] = self._base()._row_ids(self._rows)
                state["_rows"] = None  # found again from the row ids where it is reopened
        perm = state["permutation_table"]
        if perm is not None and not isinstance(perm, (Table, pa.Table)):
            state["permutation_table"] = _perm_arrow(perm)  # a LanceDB table, say
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def _restore(state: dict[str, Any]) -> Permutation:
    permutation = object.__new__(Permutation)
    permutation.__setstate__(state)
    return permutation


def _reduce_for_workers(permutation: Permutation) -> tuple:
    """How a Permutation travels to multiprocessing workers: its table caches and shares only
    the columns the permutation reads."""
    state = permutation.__getstate__()
    if state["_table"] is not None:
        state["_table"] = TableForWorkers(state["_table"], permutation._base_columns())
    return (_restore, (state,))


ForkingPickler.register(Permutation, _reduce_for_workers)
