"""``PermutationBuilder``: splits (random, sequential, hash, SQL-calculated), shuffles and
filters of a table, written as a permutation table; the SQL checks and the split math."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .. import _checks, _native
from .._objectstore import StorageReadError, is_io_error
from ..table import Table, as_lancetorch_table
from .layout import _NAMES_KEY, ROW_ID, SPLIT_ID


def _sql_column(table: Table, expression: str, what: str) -> pa.ChunkedArray:
    """Evaluate a SQL expression for every row of ``table``, in row order."""
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError(f"{what} must be a non-empty SQL expression, got {expression!r}")

    def run(dataset: Any) -> pa.ChunkedArray:
        try:
            try:
                return dataset.to_table(columns={"value": expression}).column("value")
            except ValueError as e:
                if "at least one column" not in str(e):
                    raise
                # Lance folded the expression to a constant (`NOT (a IN (0) AND NOT a IN
                # (0))` is true) and refuses a scan of no column: read one beside it.
                first = dataset.schema.names[0].replace("`", "``")
                columns = {"value": expression, "lancetorch_any": f"`{first}`"}
                return dataset.to_table(columns=columns).column("value")
        except BaseException as e:
            # Lance's errors, and its panics: pyo3's PanicException is a BaseException, and
            # nothing else that is one (an interrupt, running out of memory) is the SQL's.
            if not isinstance(e, Exception) and type(e).__name__ != "PanicException":
                raise
            if isinstance(e, MemoryError):
                raise
            detail = str(e).split(", /")[0]
            if is_io_error(e):  # the storage failed, not the SQL (a panic is the SQL's)
                raise StorageReadError(
                    f"reading table '{table.name}' failed while evaluating {what} "
                    f"{expression!r}: {detail}"
                ) from e
            raise ValueError(
                f"{what} {expression!r} cannot be evaluated on table '{table.name}' "
                f"(columns {table.schema.names}): {detail}"
            ) from e

    # Lance evaluates it against the table's dataset; rows held in memory are written to a
    # scratch dataset of only the columns the expression names (an embedding column it does
    # not use is never copied), or, where a column it uses went unrecognised, of every one.
    backend = table._backend
    names = backend.schema.names
    named = [n for n in names if re.search(rf"(?<![\w$]){re.escape(n)}(?![\w$])", expression, re.I)]
    complete = False  # whether the dataset tried held every column
    try:
        with backend.sql_dataset(named) as (dataset, complete):
            return run(dataset)
    except ValueError:
        if complete:
            raise
    with backend.sql_dataset(names) as (dataset, _):
        return run(dataset)


def _one_expression(expression: str, what: str, kind: str) -> None:
    """Refuse SQL that is not exactly one expression. Lance reads a filter as
    ``SELECT 1 FROM t WHERE <filter>`` and keeps the first expression it finds, dropping the
    rest without a word (``a > 5, a < 3``, ``a > 5 LIMIT 3`` and ``a > 5)`` would all filter on
    ``a > 5``): the text is parsed here, by the parser Lance uses, and must end where the
    expression ends. Comments are refused too: text after ``--`` is never read."""
    try:
        _native.check_sql_expression(expression)
    except ValueError as err:
        raise ValueError(
            f"{what} {expression!r} is not exactly one SQL expression: {err}; give exactly one "
            f"{kind} expression (join conditions with AND / OR, and leave out comments)"
        ) from err


def _check_names(names: Sequence[str] | None, k: int | None) -> list[str] | None:
    if names is None:
        return None
    if isinstance(names, (str, bytes)) or not isinstance(names, (list, tuple)):
        raise TypeError(
            f"split_names={names!r} is {type(names).__name__}; give a list of names, one per "
            "split (a string is not a list of its letters)"
        )
    names = list(names)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"split name {name!r} is {type(name).__name__}; names are strings")
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ValueError(f"split name {dup!r} is used twice in {names}")
    if k is not None and len(names) != k:
        raise ValueError(
            f"{len(names)} split names {names} for {k} splits; give one name per split"
        )
    return names


_ONE_OF = (
    "Exactly one of 'ratios', 'counts', or 'fixed' must be provided (ratios= for fractions of "
    "the rows, counts= for numbers of rows, fixed= for a number of equal splits)"
)


def _check_clump(clump_size: int | None) -> None:
    _checks.optional_integer("clump_size", clump_size, low=1)


def _seed(seed: int | None) -> int:
    if seed is None:
        return secrets.randbits(64)
    seed = _checks.integer("seed", seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed={seed} must be between 0 and 2**64 - 1")
    return seed


class PermutationBuilder:
    """Chainable description of a permutation table; nothing is read until :meth:`execute`.

    Steps run in this order whatever the call order: ``filter``, then the split, then
    ``shuffle``. Without a split every row is in split 0. Splits have names only when
    ``split_names`` gives them; they can always be read by number.

    Parameters
    ----------
    table : Table
        The base table (a LanceDB table too, read as
        :func:`lancetorch.table.as_lancetorch_table` gives it).

    Raises
    ------
    TypeError
        For a ``table`` that is neither; and in every step, for an argument of the wrong type
        (a count, seed, weight or ``clump_size`` that is not an integer, a ratio that is not a
        number), which is refused, never converted.
    """

    def __init__(self, table: Any) -> None:
        self._table = as_lancetorch_table(table)._pinned_view()  # one version throughout
        self._filter: str | None = None
        self._split: tuple[str, dict[str, Any]] | None = None
        self._shuffle: tuple[int, int | None] | None = None

    def _set_split(self, kind: str, **args: Any) -> PermutationBuilder:
        if self._split is not None:
            raise ValueError(f"this builder already splits ({self._split[0]}); use one split step")
        self._split = (kind, args)
        return self

    def _sizes_args(self, ratios, counts, fixed) -> dict[str, Any]:
        given = [x is not None for x in (ratios, counts, fixed)]
        if sum(given) != 1:
            raise ValueError(_ONE_OF)
        for name, value in (("ratios", ratios), ("counts", counts)):
            if value is not None and (
                isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, range))
            ):
                raise TypeError(
                    f"{name}={value!r} is {type(value).__name__}; {name} takes a list, one "
                    "value per split"
                )
        args: dict[str, Any] = {
            "ratios": None if ratios is None else [_checks.number("ratios", r) for r in ratios],
            "counts": None if counts is None else [_checks.integer("counts", c) for c in counts],
            "fixed": _checks.optional_integer("fixed", fixed),
        }
        if self._filter is None:  # the row count is known: check sizes now, before any work
            _native.split_sizes(len(self._table), **args)
        return args

    def split_random(
        self,
        *,
        ratios: Sequence[float] | None = None,
        counts: Sequence[int] | None = None,
        fixed: int | None = None,
        seed: int | None = None,
        clump_size: int | None = None,
        split_names: Sequence[str] | None = None,
    ) -> PermutationBuilder:
        """Rows go to splits at random (in clumps of contiguous rows when ``clump_size`` is
        set); each split keeps the random order its rows were dealt in, as LanceDB's does.

        Exactly one of ``ratios``, ``counts`` and ``fixed`` gives the split sizes, by LanceDB's
        rules.

        Parameters
        ----------
        ratios : sequence of float, optional
            Each split's fraction of the rows (rounded; where the ratios add up to 1, every row
            goes to a split).
        counts : sequence of int, optional
            Each split's number of rows.
        fixed : int, optional
            A number of equal splits (``rows // fixed`` rows each; the rest are left out).
        seed : int, optional
            The seed, 0 to 2**64 - 1; by default one drawn at random here.
        clump_size : int, optional
            Runs of this many contiguous rows go to a split together (1 or more).
        split_names : sequence of str, optional
            One distinct name per split.

        Returns
        -------
        PermutationBuilder
            This builder.

        Raises
        ------
        ValueError
            For none or more than one of ``ratios``, ``counts`` and ``fixed``, sizes the rows
            cannot meet (checked here when there is no filter), a seed or ``clump_size`` out of
            range, names that are not one per split or repeat, or a second split step.
        """
        args = self._sizes_args(ratios, counts, fixed)
        _check_clump(clump_size)
        k = len(args["ratios"] or args["counts"] or []) or args["fixed"]
        names = _check_names(split_names, k)
        return self._set_split(
            "random", sizes=args, seed=_seed(seed), clump_size=clump_size, names=names
        )

    def split_sequential(
        self,
        *,
        ratios: Sequence[float] | None = None,
        counts: Sequence[int] | None = None,
        fixed: int | None = None,
        split_names: Sequence[str] | None = None,
    ) -> PermutationBuilder:
        """The first rows go to split 0, the next to split 1, and so on.

        Exactly one of ``ratios``, ``counts`` and ``fixed`` gives the split sizes, as for
        :meth:`split_random`.

        Parameters
        ----------
        ratios : sequence of float, optional
            Each split's fraction of the rows.
        counts : sequence of int, optional
            Each split's number of rows.
        fixed : int, optional
            A number of equal splits.
        split_names : sequence of str, optional
            One distinct name per split.

        Returns
        -------
        PermutationBuilder
            This builder.

        Raises
        ------
        ValueError
            As for :meth:`split_random`.
        """
        args = self._sizes_args(ratios, counts, fixed)
        k = len(args["ratios"] or args["counts"] or []) or args["fixed"]
        return self._set_split("sequential", sizes=args, names=_check_names(split_names, k))

    def split_hash(
        self,
        columns: Sequence[str],
        split_weights: Sequence[int],
        *,
        discard_weight: int | None = None,
        split_names: Sequence[str] | None = None,
    ) -> PermutationBuilder:
        """Each row's split is a stable hash of its ``columns`` values, so a row never changes
        split when other rows come or go.

        Parameters
        ----------
        columns : sequence of str
            The columns hashed (one name is a list of one); at least one.
        split_weights : sequence of int
            Split ``i`` gets ``split_weights[i]`` parts out of
            ``sum(split_weights) + discard_weight``; each above 0.
        discard_weight : int, optional
            Parts whose rows are left out; by default none.
        split_names : sequence of str, optional
            One distinct name per split.

        Returns
        -------
        PermutationBuilder
            This builder.

        Raises
        ------
        ValueError
            For no column or one not in the table, a weight that is not above 0, a negative
            ``discard_weight``, names that are not one per split or repeat, or a second split step.
        """
        if isinstance(columns, str):
            columns = [columns]
        columns = list(columns)
        if not columns:
            raise ValueError("split_hash needs at least one column to hash")
        names = self._table.schema.names
        for c in columns:
            if c not in names:
                raise ValueError(
                    f"split_hash column '{c}' is not in the table; columns are {names}"
                )
        if isinstance(split_weights, (str, bytes)) or not isinstance(
            split_weights, (list, tuple, range)
        ):
            raise TypeError(
                f"split_weights={split_weights!r} is {type(split_weights).__name__}; give a "
                "list of integer weights, one per split"
            )
        weights = [_checks.integer("split_weights", w) for w in split_weights]
        if not weights or any(w <= 0 for w in weights):
            raise ValueError(f"split_weights {list(split_weights)} must be weights above 0")
        discard = _checks.optional_integer("discard_weight", discard_weight) or 0
        if discard < 0:
            raise ValueError(f"discard_weight={discard_weight} must not be negative")
        return self._set_split(
            "hash",
            columns=columns,
            weights=weights,
            discard=discard,
            names=_check_names(split_names, len(weights)),
        )

    def split_calculated(
        self, calculation: str, split_names: Sequence[str] | None = None
    ) -> PermutationBuilder:
        """A SQL expression gives each row's split number (0, 1, ...); rows where it is null
        or negative are left out.

        Parameters
        ----------
        calculation : str
            One SQL expression of integer type, evaluated by Lance when :meth:`execute` runs.
        split_names : sequence of str, optional
            Distinct names of splits 0, 1, ...; the expression must not give a split past them.

        Returns
        -------
        PermutationBuilder
            This builder.

        Raises
        ------
        ValueError
            For an empty expression or text that is not exactly one SQL expression (a second
            expression, a clause, a comment or unbalanced brackets), repeated names, or a second
            split step.
        """
        if not isinstance(calculation, str) or not calculation.strip():
            raise ValueError(f"split_calculated needs a SQL expression, got {calculation!r}")
        _one_expression(calculation, "split_calculated", "integer")
        return self._set_split(
            "calculated", expression=calculation, names=_check_names(split_names, None)
        )

    def shuffle(
        self, *, seed: int | None = None, clump_size: int | None = None
    ) -> PermutationBuilder:
        """Shuffle the rows of each split (clumps of ``clump_size`` neighbouring rows move as
        one). Without a seed one is drawn at random here: each builder's order differs, and
        executing the same builder again repeats it.

        Parameters
        ----------
        seed : int, optional
            The seed, 0 to 2**64 - 1.
        clump_size : int, optional
            Rows that move as one (1 or more).

        Returns
        -------
        PermutationBuilder
            This builder.

        Raises
        ------
        ValueError
            For a seed or ``clump_size`` out of range.
        """
        _check_clump(clump_size)
        self._shuffle = (_seed(seed), clump_size)
        return self

    def filter(self, filter: str) -> PermutationBuilder:
        """Keep the rows where the SQL predicate is true (null counts as false).

        Parameters
        ----------
        filter : str
            One SQL predicate, evaluated by Lance when :meth:`execute` runs (ValueError there
            when it cannot be evaluated or is not true/false).

        Returns
        -------
        PermutationBuilder
            This builder.

        Raises
        ------
        ValueError
            For an empty predicate or text that is not exactly one SQL expression (a second
            expression after a ``,`` or ``;``, a clause such as ``LIMIT``, a comment, or
            unbalanced brackets).
        """
        if not isinstance(filter, str) or not filter.strip():
            raise ValueError(f"filter needs a SQL predicate, got {filter!r}")
        _one_expression(filter, "filter", "boolean")
        self._filter = filter
        return self

    def execute(self) -> Table:
        """The permutation table, a memory table named ``permutation`` with LanceDB's layout:
        ``row_id`` (uint64, the base table's row ids) and ``split_id`` (uint64) in read order,
        the split names (when given) as JSON in its schema metadata under ``split_names``.
        Save it with ``db.create_table(name, perm.to_arrow())``."""
        rows, ids, names = self._rows_and_splits()
        metadata = {}
        if names is not None:
            metadata[_NAMES_KEY] = json.dumps(names, separators=(",", ":")).encode()
        # A calculated split's ids keep the expression's type (int64) as LanceDB's do.
        calculated = self._split is not None and self._split[0] == "calculated"
        id_field = (
            pa.field(SPLIT_ID, pa.int64()) if calculated else pa.field(SPLIT_ID, pa.uint64(), False)
        )
        schema = pa.schema([pa.field(ROW_ID, pa.uint64()), id_field], metadata=metadata)
        row_ids = pa.array(self._table._row_ids(rows.to_numpy()), pa.uint64())
        split_ids = ids.cast(id_field.type)
        return Table._memory(
            "permutation", pa.Table.from_arrays([row_ids, split_ids], schema=schema)
        )

    def _rows_and_splits(self) -> tuple[pa.Array, pa.Array, list[str] | None]:
        """Row offsets (uint64) and split ids (uint32) in read order, and the split names."""
        n = len(self._table)
        if self._filter is not None:
            mask = _sql_column(self._table, self._filter, "filter")
            if not pa.types.is_boolean(mask.type):
                raise ValueError(
                    f"filter {self._filter!r} gives {mask.type} values, not true/false"
                )
            keep = mask.fill_null(False).to_numpy(zero_copy_only=False)
            rows = np.flatnonzero(keep).astype(np.uint64)
        else:
            rows = np.arange(n, dtype=np.uint64)
        rows_arr = pa.array(rows, type=pa.uint64())
        names: list[str] | None = None
        if self._split is None:
            ids_arr = pa.array(np.zeros(len(rows), dtype=np.uint32))
        else:
            kind, args = self._split
            names = args["names"]
            if kind in ("random", "sequential"):
                sizes = _native.split_sizes(len(rows), **args["sizes"])
                if kind == "random":
                    rows_arr, ids_arr = _native.random_split(
                        rows_arr, sizes, args["seed"], args["clump_size"]
                    )
                else:
                    rows_arr, ids_arr = _native.sequential_split(rows_arr, sizes)
            elif kind == "hash":
                keys = self._table._read_columns(args["columns"]).take(pa.array(rows))
                rows_arr, ids_arr = _native.hash_split(
                    rows_arr, keys.to_batches(), args["weights"], args["discard"]
                )
            else:
                rows_arr, ids_arr = self._calculated(rows, args["expression"], names)
        if self._shuffle is not None:
            seed, clump = self._shuffle
            rows_arr, ids_arr = _native.shuffle_splits(rows_arr, ids_arr, seed, clump)
        return rows_arr, ids_arr, names

    def _calculated(
        self, rows: np.ndarray, expression: str, names: list[str] | None
    ) -> tuple[pa.Array, pa.Array]:
        """Rows and split ids from a SQL expression; null or negative ids leave the row out."""
        values = _sql_column(self._table, expression, "split_calculated")
        if not pa.types.is_integer(values.type):
            raise ValueError(
                f"split_calculated {expression!r} gives {values.type} values, not split numbers"
            )
        split = values.to_numpy(zero_copy_only=False)
        valid = ~np.asarray(values.is_null().to_numpy(zero_copy_only=False))
        split = np.where(valid, split, -1).astype(np.int64)[rows.astype(np.int64)]
        keep = split >= 0
        top = int(split.max()) if keep.any() else -1
        if top >= 2**32:
            raise ValueError(
                f"split_calculated {expression!r} gives split {top}; split numbers go up to "
                f"{2**32 - 1}"
            )
        if names is not None and top >= len(names):
            raise ValueError(
                f"split_calculated {expression!r} gives split {top} but only {len(names)} "
                f"names were given: {names}"
            )
        return (
            pa.array(rows[keep], type=pa.uint64()),
            pa.array(split[keep].astype(np.uint32)),
        )


def permutation_builder(table: Any) -> PermutationBuilder:
    """A :class:`PermutationBuilder` of ``table`` (LanceDB's name for making one).

    Parameters
    ----------
    table : Table
        The base table (a LanceDB table too).

    Returns
    -------
    PermutationBuilder
    """
    return PermutationBuilder(table)
