"""The chainable options of a :class:`~lancetorch.permutation.Permutation`: each call gives a
new view with one thing changed (its columns, format, batch size, window, or how it reopens
its table) and leaves the view it was called on as it was."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .. import _checks
from .formats import _FORMATS, _TorchDict

if TYPE_CHECKING:
    from .view import Permutation

_ROW_ID_COLUMN = "_rowid"  # the pseudo-column of each row's row id


class ViewOptions:
    """The ``with_*``, ``select_columns``, ``remove_columns``, ``rename_*``, ``skip`` and
    ``take`` calls of :class:`~lancetorch.permutation.Permutation`, the class that reads
    the rows; each returns a copy of the view (``_copy``) with the option set."""

    selection: dict[str, str]
    offset: int | None
    limit: int | None

    if TYPE_CHECKING:  # the view's own, in view.py

        def _copy(self, **changes: Any) -> Permutation: ...

        def _total(self) -> int: ...

        @property
        def column_names(self) -> list[str]: ...

    def select_columns(self, columns: Sequence[str]) -> Permutation:
        """Only these columns, in this order (never adds back a removed one); ``_rowid``
        selects each row's row id. The others are never read.

        Parameters
        ----------
        columns : sequence of str
            Output names of this view (one name is a list of one), or ``_rowid``.

        Returns
        -------
        Permutation

        Raises
        ------
        ValueError
            For no column, or one not in the view.
        """
        if isinstance(columns, str):
            columns = [columns]
        if columns is None or len(columns) == 0:
            raise ValueError("Must select at least one column")
        selection = {}
        for name in columns:
            source = self.selection.get(name)
            if source is None:
                if name != _ROW_ID_COLUMN:
                    raise ValueError(
                        f"Cannot select column `{name}` because it does not exist; columns: "
                        f"{self.column_names}"
                    )
                source = _ROW_ID_COLUMN
            selection[name] = source
        return self._copy(selection=selection)

    def remove_columns(self, columns: Sequence[str]) -> Permutation:
        """Without these columns (names not in the view are ignored, as in LanceDB).

        Parameters
        ----------
        columns : sequence of str
            Output names (one name is a list of one).

        Returns
        -------
        Permutation

        Raises
        ------
        ValueError
            When no column would be left.
        """
        if isinstance(columns, str):
            columns = [columns]
        drop = set(columns)
        selection = {n: c for n, c in self.selection.items() if n not in drop}
        if not selection:
            raise ValueError("Cannot remove all columns")
        return self._copy(selection=selection)

    def rename_column(self, old_name: str, new_name: str) -> Permutation:
        """Show column ``old_name`` as ``new_name`` (it moves to the end, as in LanceDB).

        Parameters
        ----------
        old_name : str
            An output name of this view.
        new_name : str
            A name not in the view.

        Returns
        -------
        Permutation

        Raises
        ------
        ValueError
            For an ``old_name`` not in the view, or a ``new_name`` already there.
        """
        selection = dict(self.selection)
        _rename(selection, old_name, new_name)
        return self._copy(selection=selection)

    def rename_columns(self, column_map: dict[str, str]) -> Permutation:
        """Rename several columns, one after another as :meth:`rename_column` does.

        Parameters
        ----------
        column_map : dict[str, str]
            Old name to new name.

        Returns
        -------
        Permutation

        Raises
        ------
        TypeError
            For a ``column_map`` that is not a dict.
        ValueError
            As :meth:`rename_column`.
        """
        if not isinstance(column_map, dict):
            raise TypeError(
                f"rename_columns takes a dict of old name -> new name, got "
                f"{type(column_map).__name__}"
            )
        selection = dict(self.selection)  # one copy, however many columns are renamed
        for old_name, new_name in column_map.items():
            _rename(selection, old_name, new_name)
        return self._copy(selection=selection)

    def with_format(self, format: str, *, decode: dict[str, Any] | None = None) -> Permutation:
        """The rows in another output format.

        Parameters
        ----------
        format : str
            One of: arrow, python (default), python_col, polars, pandas, numpy, torch_col,
            torch, torch_row, torch_dict (see :class:`Transforms`).
        decode : dict[str, spec], optional
            ``{column: spec}`` (``lancetorch.decode``): for torch_dict, how token lists and text
            columns become values.

        Returns
        -------
        Permutation

        Raises
        ------
        ValueError
            For an unknown format, ``decode`` with another format than torch_dict, or a spec
            that packs tokens.
        TypeError
            For a ``decode`` that is not a dict of specs (a spec class, ``Image``, in place of
            ``Image(...)``).
        """
        if format not in _FORMATS:
            raise ValueError(f"Invalid format: {format}; choose one of {list(_FORMATS)}")
        if decode is not None:
            if format != "torch_dict":
                raise ValueError(f"decode= goes with the torch_dict format, not {format!r}")
            return self._copy(transform_fn=_TorchDict(decode), _format=format)
        return self._copy(transform_fn=_FORMATS[format], _format=format)

    def with_transform(self, transform: Callable[[pa.RecordBatch], Any]) -> Permutation:
        """Apply ``transform`` to each Arrow batch instead of a format.

        Parameters
        ----------
        transform : callable
            A function of a ``pyarrow.RecordBatch``.

        Returns
        -------
        Permutation

        Raises
        ------
        TypeError
            For a ``transform`` that is not callable.
        """
        if not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        return self._copy(transform_fn=transform, _format=None)

    def with_batch_size(self, batch_size: int) -> Permutation:
        """Read ``batch_size`` rows a batch when iterated (default 100).

        Parameters
        ----------
        batch_size : int
            1 or more.

        Returns
        -------
        Permutation

        Raises
        ------
        ValueError
            For a batch size under 1.
        """
        return self._copy(batch_size=_checks.integer("batch_size", batch_size, low=1))

    def with_skip(self, skip: int) -> Permutation:
        """Leave out the first ``skip`` rows of the split (a second call replaces the first,
        as in LanceDB); applied before :meth:`with_take`.

        Parameters
        ----------
        skip : int
            Rows to leave out, 0 or more.

        Returns
        -------
        Permutation

        Raises
        ------
        ValueError
            When the skip, or the skip and the take together, pass the end, or the skip is
            negative.
        TypeError
            For a skip that is not a whole number.
        """
        skip = _count(skip, "with_skip")
        self._check_window(skip, self.limit)
        return self._copy(offset=skip)

    def with_take(self, limit: int) -> Permutation:
        """Only ``limit`` rows, counted after any :meth:`with_skip` (a second call replaces
        the first).

        Parameters
        ----------
        limit : int
            Rows to read, 0 or more.

        Returns
        -------
        Permutation

        Raises
        ------
        ValueError
            When they pass the end, as in LanceDB, or the limit is negative.
        TypeError
            For a limit that is not a whole number.
        """
        limit = _count(limit, "with_take")
        self._check_window(self.offset, limit)
        return self._copy(limit=limit)

    def _check_window(self, offset: int | None, limit: int | None) -> None:
        total, skip = self._total(), offset or 0
        if skip > total:
            raise ValueError(
                "Offset is greater than the number of rows in the permutation table: "
                f"with_skip({skip}) of {total} rows"
            )
        if limit is not None and limit > total:
            raise ValueError(
                "Limit is greater than the number of rows in the permutation table: "
                f"with_take({limit}) of {total} rows"
            )
        if limit is not None and skip + limit > total:
            raise ValueError(
                "Offset + limit is greater than the number of rows in the permutation table: "
                f"with_skip({skip}) and with_take({limit}) of {total} rows"
            )

    def skip(self, skip: int) -> Permutation:
        """Deprecated: :meth:`with_skip`.

        Parameters
        ----------
        skip : int
            As :meth:`with_skip`.

        Returns
        -------
        Permutation
        """
        warnings.warn("skip() is deprecated; use with_skip()", DeprecationWarning, stacklevel=2)
        return self.with_skip(skip)

    def take(self, limit: int) -> Permutation:
        """Deprecated: :meth:`with_take`.

        Parameters
        ----------
        limit : int
            As :meth:`with_take`.

        Returns
        -------
        Permutation
        """
        warnings.warn("take() is deprecated; use with_take()", DeprecationWarning, stacklevel=2)
        return self.with_take(limit)

    def with_connection_factory(self, connection_factory: Callable[[str], Any]) -> Permutation:
        """Reopen the base table with ``connection_factory(table_name)`` wherever this
        permutation is unpickled (DataLoader workers); the table itself, and any credentials
        of its connection, are then left out of the pickle.

        Parameters
        ----------
        connection_factory : callable
            ``table_name -> table``; the rows are found again there by their row ids.

        Returns
        -------
        Permutation

        Raises
        ------
        TypeError
            For a factory that is not callable.
        """
        if not callable(connection_factory):
            raise TypeError(
                f"the connection factory must be callable, got {type(connection_factory).__name__}"
            )
        return self._copy(connection_factory=connection_factory)


def _rename(selection: dict[str, str], old_name: str, new_name: str) -> None:
    """Show ``old_name`` of ``selection`` as ``new_name``, moved to the end (in place)."""
    if old_name not in selection:
        raise ValueError(
            f"Cannot rename column `{old_name}` because it does not exist; columns: "
            f"{list(selection)}"
        )
    if new_name in selection:
        raise ValueError(
            f"Cannot rename column `{old_name}` to `{new_name}` because a column with "
            "that name already exists"
        )
    selection[new_name] = selection.pop(old_name)


def _count(value: Any, what: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what}({value!r}) takes a whole number of rows")
    if value < 0:
        raise ValueError(f"{what}({value}) must not be negative")
    return int(value)
