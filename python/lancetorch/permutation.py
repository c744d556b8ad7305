"""Permutations: lazy, shuffled, split, filtered, column-selected views of a table.

Build a permutation table with :class:`PermutationBuilder` (``permutation_builder(table)``):
it holds each chosen row's offset in the base table and its split id, in read order. A
:class:`Permutation` reads one split of it (or all rows, ``Permutation.identity``) as a PyTorch
map-style Dataset, in the output format asked for.

The permutation math (seeded shuffles, clumps, splits, hashing) runs in the Rust core; the same
seed gives the same order on every machine and every release. SQL (``filter``,
``split_calculated``) is evaluated by Lance's SQL engine, for memory tables too.
"""

from __future__ import annotations

import json
import re
import secrets
import tempfile
from multiprocessing.reduction import ForkingPickler
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa

from . import _native
from ._arrow import as_offsets
from .sampler import BatchSampler
from .table import Table, TableForWorkers
from .util import _torch, tbl_to_tensor

ROW_OFFSET = "row_offset"
SPLIT_ID = "split_id"
_NAMES_KEY = b"lancetorch.split_names"


# ---- SQL over a table ---------------------------------------------------------------------------
def _sql_column(table: Table, expression: str, what: str) -> pa.ChunkedArray:
    """Evaluate a SQL expression for every row of ``table``, in row order."""
    import lance

    if not isinstance(expression, str) or not expression.strip():
        raise ValueError(f"{what} must be a non-empty SQL expression, got {expression!r}")

    def run(dataset: Any) -> pa.ChunkedArray:
        try:
            return dataset.to_table(columns={"value": expression}).column("value")
        except (ValueError, OSError, RuntimeError) as e:
            detail = str(e).split(", /")[0]
            raise ValueError(
                f"{what} {expression!r} cannot be evaluated on table '{table.name}' "
                f"(columns {table.schema.names}): {detail}"
            ) from None

    backend = table._backend
    if hasattr(backend, "dataset"):
        return run(backend.dataset)
    # A memory table is written to a scratch dataset for Lance to evaluate: only the columns
    # the expression names (an embedding column it does not use is never copied), or, where
    # that fails, every column.
    def scratch(columns: list[str]) -> pa.ChunkedArray:
        with tempfile.TemporaryDirectory(prefix="lancetorch-sql-") as tmp:
            return run(lance.write_dataset(backend.read_columns(columns), f"{tmp}/t.lance"))

    names = table.schema.names
    named = [n for n in names if re.search(rf"(?<![\w$]){re.escape(n)}(?![\w$])", expression, re.I)]
    fewer = named or names[:1]  # Lance refuses a scan of no column
    if len(fewer) < len(names):
        try:
            return scratch(fewer)
        except ValueError:
            pass  # a column it uses went unrecognised: evaluate it with every column
    return scratch(names)


# ---- building ----------------------------------------------------------------------------------
def _default_names(k: int) -> list[str]:
    if k == 1:
        return ["train"]
    if k == 2:
        return ["train", "test"]
    if k == 3:
        return ["train", "validation", "test"]
    return [f"split_{i}" for i in range(k)]


def _check_names(names: Sequence[str] | None, k: int | None) -> list[str] | None:
    if names is None:
        return None
    names = list(names)
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ValueError(f"split name {dup!r} is used twice in {names}")
    if k is not None and len(names) != k:
        raise ValueError(f"{len(names)} split names {names} for {k} splits; give one name per split")
    return names


def _check_clump(clump_size: int | None) -> None:
    if clump_size is not None and (isinstance(clump_size, bool) or int(clump_size) < 1):
        raise ValueError(f"clump_size={clump_size} must be 1 or more rows")


def _seed(seed: int | None) -> int:
    if seed is None:
        return secrets.randbits(64)
    if not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed={seed} must be between 0 and 2**64 - 1")
    return int(seed)


class PermutationBuilder:
    """Chainable description of a permutation table; nothing is read until :meth:`execute`.

    Steps run in this order whatever the call order: ``filter``, then the split, then
    ``shuffle``. Without a split every row is in one split named ``"train"``.
    """

    def __init__(self, table: Table) -> None:
        self._table = table
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
            raise ValueError("give exactly one of ratios=, counts= or fixed= to say how to split")
        args = {
            "ratios": None if ratios is None else [float(r) for r in ratios],
            "counts": None if counts is None else [int(c) for c in counts],
            "fixed": None if fixed is None else int(fixed),
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
        set); each split keeps ascending row order until :meth:`shuffle`."""
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
        """The first rows go to split 0, the next to split 1, and so on."""
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
        split when other rows come or go. Split ``i`` gets ``split_weights[i]`` parts out of
        ``sum(split_weights) + discard_weight``; rows hashed into the discard part are left out."""
        if isinstance(columns, str):
            columns = [columns]
        columns = list(columns)
        if not columns:
            raise ValueError("split_hash needs at least one column to hash")
        names = self._table.schema.names
        for c in columns:
            if c not in names:
                raise ValueError(f"split_hash column '{c}' is not in the table; columns are {names}")
        weights = [int(w) for w in split_weights]
        if not weights or any(w <= 0 for w in weights):
            raise ValueError(f"split_weights {list(split_weights)} must be weights above 0")
        discard = int(discard_weight or 0)
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
        self, sql_expression: str, split_names: Sequence[str] | None = None
    ) -> PermutationBuilder:
        """A SQL expression gives each row's split number (0, 1, ...); rows where it is null
        or negative are left out."""
        if not isinstance(sql_expression, str) or not sql_expression.strip():
            raise ValueError(f"split_calculated needs a SQL expression, got {sql_expression!r}")
        return self._set_split(
            "calculated", expression=sql_expression, names=_check_names(split_names, None)
        )

    def shuffle(self, *, seed: int | None = None, clump_size: int | None = None) -> PermutationBuilder:
        """Shuffle the rows of each split (clumps of ``clump_size`` neighbouring rows move as
        one). Without a seed one is drawn at random here: each builder's order differs, and
        executing the same builder again repeats it."""
        _check_clump(clump_size)
        self._shuffle = (_seed(seed), clump_size)
        return self

    def filter(self, sql_predicate: str) -> PermutationBuilder:
        """Keep the rows where the SQL predicate is true (null counts as false)."""
        if not isinstance(sql_predicate, str) or not sql_predicate.strip():
            raise ValueError(f"filter needs a SQL predicate, got {sql_predicate!r}")
        self._filter = sql_predicate
        return self

    def execute(self) -> pa.Table:
        """The permutation table: ``row_offset`` (uint64) and ``split_id`` (uint32) in read
        order, split names in its schema metadata. Save it with ``db.create_table(name, t)``."""
        n = len(self._table)
        if self._filter is not None:
            mask = _sql_column(self._table, self._filter, "filter")
            if not pa.types.is_boolean(mask.type):
                raise ValueError(f"filter {self._filter!r} gives {mask.type} values, not true/false")
            keep = mask.fill_null(False).to_numpy(zero_copy_only=False)
            rows = np.flatnonzero(keep).astype(np.uint64)
        else:
            rows = np.arange(n, dtype=np.uint64)
        rows_arr = pa.array(rows, type=pa.uint64())
        names: list[str]
        if self._split is None:
            ids_arr = pa.array(np.zeros(len(rows), dtype=np.uint32))
            names = ["train"]
        else:
            kind, args = self._split
            if kind in ("random", "sequential"):
                sizes = _native.split_sizes(len(rows), **args["sizes"])
                if kind == "random":
                    rows_arr, ids_arr = _native.random_split(
                        rows_arr, sizes, args["seed"], args["clump_size"]
                    )
                else:
                    rows_arr, ids_arr = _native.sequential_split(rows_arr, sizes)
                k = len(sizes)
            elif kind == "hash":
                keys = self._table._read_columns(args["columns"]).take(pa.array(rows))
                rows_arr, ids_arr = _native.hash_split(
                    rows_arr, keys.to_batches(), args["weights"], args["discard"]
                )
                k = len(args["weights"])
            else:
                values = _sql_column(self._table, args["expression"], "split_calculated")
                if not pa.types.is_integer(values.type):
                    raise ValueError(
                        f"split_calculated {args['expression']!r} gives {values.type} values, "
                        "not split numbers"
                    )
                split = values.to_numpy(zero_copy_only=False)
                valid = ~np.asarray(values.is_null().to_numpy(zero_copy_only=False))
                split = np.where(valid, split, -1).astype(np.int64)[rows.astype(np.int64)]
                keep = split >= 0
                k = int(split.max()) + 1 if keep.any() else 0
                if args["names"] is not None:
                    if k > len(args["names"]):
                        raise ValueError(
                            f"split_calculated {args['expression']!r} gives split {k - 1} but "
                            f"only {len(args['names'])} names were given: {args['names']}"
                        )
                    k = len(args["names"])
                rows_arr = pa.array(rows[keep], type=pa.uint64())
                ids_arr = pa.array(split[keep].astype(np.uint32))
            names = args["names"] or _default_names(k)
        if self._shuffle is not None:
            seed, clump = self._shuffle
            rows_arr, ids_arr = _native.shuffle_splits(rows_arr, ids_arr, seed, clump)
        schema = pa.schema(
            [pa.field(ROW_OFFSET, pa.uint64(), False), pa.field(SPLIT_ID, pa.uint32(), False)],
            metadata={_NAMES_KEY: json.dumps(names).encode()},
        )
        return pa.Table.from_arrays([rows_arr, ids_arr], schema=schema)


def permutation_builder(table: Table) -> PermutationBuilder:
    return PermutationBuilder(table)


def split_names_of(permutation_table: Any) -> list[str]:
    """The split names stored in a permutation table's metadata."""
    schema = permutation_table.schema
    meta = schema.metadata or {}
    if _NAMES_KEY not in meta:
        if ROW_OFFSET not in schema.names:
            raise ValueError(
                f"not a permutation table: it has no '{ROW_OFFSET}' column (columns "
                f"{schema.names}); build one with permutation_builder(table).execute()"
            )
        return ["train"]
    return json.loads(meta[_NAMES_KEY])


# ---- output formats -----------------------------------------------------------------------------
class Transforms:
    """The built-in output formats, as functions from a ``pyarrow.RecordBatch``."""

    @staticmethod
    def arrow2arrow(batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch

    @staticmethod
    def arrow2python(batch: pa.RecordBatch) -> list[dict[str, Any]]:
        return batch.to_pylist()

    @staticmethod
    def arrow2python_col(batch: pa.RecordBatch) -> dict[str, list[Any]]:
        return batch.to_pydict()

    @staticmethod
    def arrow2polars(batch: pa.RecordBatch) -> Any:
        import polars as pl

        return pl.from_arrow(batch)

    @staticmethod
    def arrow2pandas(batch: pa.RecordBatch) -> Any:
        return batch.to_pandas()

    @staticmethod
    def arrow2numpy(batch: pa.RecordBatch) -> dict[str, np.ndarray]:
        """One array per column; fixed-width columns without nulls are not copied, fixed-size
        lists become 2-D ``(rows, size)`` arrays."""
        out = {}
        for name, column in zip(batch.schema.names, batch.columns):
            if pa.types.is_fixed_size_list(column.type) and column.null_count == 0:
                size = column.type.list_size
                values = column.flatten().to_numpy(zero_copy_only=False)
                out[name] = values.reshape(len(column), size)
            else:
                out[name] = column.to_numpy(zero_copy_only=False)
        return out

    @staticmethod
    def arrow2torch_col(batch: pa.RecordBatch) -> Any:
        return tbl_to_tensor(batch)

    @staticmethod
    def arrow2torch(batch: pa.RecordBatch) -> list[Any]:
        """Per-row tensors: views into one ``(columns, rows)`` tensor from the Rust take."""
        return list(tbl_to_tensor(batch).T.unbind(0))

    @staticmethod
    def arrow2torch_dict(batch: pa.RecordBatch) -> list[dict[str, Any]]:
        """Per-row dicts of tensors, views into one tensor per column; fixed-size list columns
        give ``(size,)`` rows, which the default collate stacks into ``(rows, size)``."""
        torch = _torch()
        names = batch.schema.names
        columns = []
        for name, column in zip(names, batch.columns):
            if pa.types.is_fixed_size_list(column.type):
                if column.null_count:
                    raise ValueError(f"column '{name}' has {column.null_count} null lists")
                size = column.type.list_size
                flat = tbl_to_tensor(pa.record_batch({name: column.flatten()}))[0]
                columns.append(flat.view(len(column), size).unbind(0))
            else:
                columns.append(tbl_to_tensor(pa.record_batch({name: column}))[0].unbind(0))
        return [dict(zip(names, values)) for values in zip(*columns)] if names else []


_FORMATS: dict[str, Callable[[pa.RecordBatch], Any]] = {
    "arrow": Transforms.arrow2arrow,
    "python": Transforms.arrow2python,
    "python_col": Transforms.arrow2python_col,
    "polars": Transforms.arrow2polars,
    "pandas": Transforms.arrow2pandas,
    "numpy": Transforms.arrow2numpy,
    "torch_col": Transforms.arrow2torch_col,
    "torch": Transforms.arrow2torch,
    "torch_row": Transforms.arrow2torch,
    "torch_dict": Transforms.arrow2torch_dict,
}
_ROW_FORMATS = ("python", "torch", "torch_row", "torch_dict")


# ---- reading -----------------------------------------------------------------------------------
class Permutation:
    """A lazy view of a table's rows in a given order, as a PyTorch map-style Dataset.

    Every ``with_*``, ``select_columns``, ``remove_columns`` and ``rename_*`` call returns a new
    Permutation and leaves this one as it was.
    """

    def __init__(
        self,
        table: Table,
        rows: np.ndarray | None,
        *,
        columns: list[str] | None = None,
        renames: dict[str, str] | None = None,
        format: str = "python",
        transform: Callable[[pa.RecordBatch], Any] | None = None,
        batch_size: int = 100,
        window: tuple[int, int] | None = None,
        factory: Callable[[str], Table] | None = None,
    ) -> None:
        self._table: Table | None = table
        self._table_name = table.name
        self._rows = rows
        self._columns = columns
        self._renames = renames or {}
        self._format = format
        self._transform = transform
        self._batch_size = batch_size
        total = len(table) if rows is None else len(rows)
        self._window = window if window is not None else (0, total)
        self._factory = factory

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def identity(cls, table: Table) -> Permutation:
        """All rows of ``table`` in table order."""
        return cls(table, None)

    @classmethod
    def from_tables(
        cls, base_table: Table, permutation_table: Any = None, split: str | int | None = None
    ) -> Permutation:
        """The rows of ``permutation_table`` (all, or one split by name or number) over
        ``base_table``; without a permutation table, all rows in order."""
        if permutation_table is None:
            if split is not None:
                raise ValueError("split= needs a permutation_table")
            return cls.identity(base_table)
        arrow = permutation_table.to_arrow() if isinstance(permutation_table, Table) else permutation_table
        arrow = pa.table(arrow) if not isinstance(arrow, pa.Table) else arrow
        names = split_names_of(arrow)
        offsets = arrow.column(ROW_OFFSET)
        if not pa.types.is_integer(offsets.type) or offsets.null_count:
            raise ValueError(
                f"the permutation table's '{ROW_OFFSET}' column must hold integers without "
                f"nulls, not {offsets.type} with {offsets.null_count} nulls"
            )
        raw = offsets.to_numpy()
        if raw.size and (raw.min() < 0 or raw.max() >= len(base_table)):
            bad = raw.min() if raw.min() < 0 else raw.max()
            raise ValueError(
                f"the permutation table refers to row {int(bad)} but table "
                f"'{base_table.name}' has {len(base_table)} rows; rebuild the permutation"
            )
        rows = raw.astype(np.int64)
        if split is not None:
            split_id = _split_index(split, names)
            if SPLIT_ID in arrow.schema.names:
                ids = arrow.column(SPLIT_ID).to_numpy()
                rows = rows[ids == split_id]
        return cls(base_table, rows)

    def _copy(self, **changes: Any) -> Permutation:
        new = object.__new__(Permutation)
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new

    def _base(self) -> Table:
        if self._table is None:
            self._table = self._factory(self._table_name)
        return self._table

    # -- shape --------------------------------------------------------------------------------
    def __len__(self) -> int:
        lo, hi = self._window
        return hi - lo

    @property
    def num_rows(self) -> int:
        return len(self)

    def _base_columns(self) -> list[str]:
        """The base table's names of the columns this view reads."""
        return self._columns if self._columns is not None else self._base().schema.names

    @property
    def column_names(self) -> list[str]:
        return [self._renames.get(c, c) for c in self._base_columns()]

    @property
    def num_columns(self) -> int:
        return len(self.column_names)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_rows, self.num_columns)

    @property
    def schema(self) -> pa.Schema:
        schema = self._base().schema
        fields = [schema.field(c) for c in self._base_columns()]
        return pa.schema([f.with_name(self._renames.get(f.name, f.name)) for f in fields])

    def __repr__(self) -> str:
        return (
            f"Permutation(table={self._table_name!r}, rows={len(self)}, "
            f"columns={self.column_names}, format={self._format!r})"
        )

    # -- views --------------------------------------------------------------------------------
    def _check_columns(self, columns: Sequence[str]) -> list[str]:
        if isinstance(columns, str):
            columns = [columns]
        current = self.column_names
        missing = [c for c in columns if c not in current]
        if missing:
            raise ValueError(f"column '{missing[0]}' is not in this permutation; columns: {current}")
        dup = next((c for c in columns if list(columns).count(c) > 1), None)
        if dup is not None:
            raise ValueError(f"column '{dup}' is named twice in {list(columns)}")
        back = {self._renames.get(c, c): c for c in self._base_columns()}
        return [back[c] for c in columns]

    def select_columns(self, columns: Sequence[str]) -> Permutation:
        """Only these columns, in this order; the others are never read."""
        return self._copy(_columns=self._check_columns(columns))

    def remove_columns(self, columns: Sequence[str]) -> Permutation:
        drop = set(self._check_columns(columns))
        keep = [c for c in self._base_columns() if c not in drop]
        return self._copy(_columns=keep)

    def rename_column(self, old: str, new: str) -> Permutation:
        return self.rename_columns({old: new})

    def rename_columns(self, mapping: dict[str, str]) -> Permutation:
        base = self._check_columns(list(mapping))
        renames = dict(self._renames)
        for b, new in zip(base, mapping.values()):
            renames[b] = new
        names = [renames.get(c, c) for c in self._base_columns()]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ValueError(f"renaming would give two columns named {dup!r}")
        return self._copy(_renames=renames)

    def with_format(self, format: str) -> Permutation:
        """One of: arrow, python (default), python_col, polars, pandas, numpy, torch_col,
        torch, torch_row, torch_dict."""
        if format not in _FORMATS:
            raise ValueError(f"unknown format {format!r}; choose one of {list(_FORMATS)}")
        return self._copy(_format=format, _transform=None)

    def with_transform(self, transform: Callable[[pa.RecordBatch], Any]) -> Permutation:
        """Apply ``transform`` to each Arrow batch instead of a format."""
        if not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        return self._copy(_transform=transform)

    def with_batch_size(self, batch_size: int) -> Permutation:
        if isinstance(batch_size, bool) or int(batch_size) < 1:
            raise ValueError(f"batch_size={batch_size} must be 1 or more")
        return self._copy(_batch_size=int(batch_size))

    def with_skip(self, skip: int) -> Permutation:
        """Leave out the first ``skip`` rows (as ``rows[skip:]``)."""
        if int(skip) < 0:
            raise ValueError(f"with_skip({skip}) must not be negative")
        lo, hi = self._window
        return self._copy(_window=(min(lo + int(skip), hi), hi))

    def with_take(self, take: int) -> Permutation:
        """Keep at most the first ``take`` rows (as ``rows[:take]``)."""
        if int(take) < 0:
            raise ValueError(f"with_take({take}) must not be negative")
        lo, hi = self._window
        return self._copy(_window=(lo, min(lo + int(take), hi)))

    def with_connection_factory(self, factory: Callable[[str], Table]) -> Permutation:
        """Reopen the base table with ``factory(table_name)`` wherever this permutation is
        unpickled (DataLoader workers); the table itself, and any credentials of its
        connection, are then left out of the pickle."""
        if not callable(factory):
            raise TypeError(f"the connection factory must be callable, got {type(factory).__name__}")
        return self._copy(_factory=factory)

    # -- reading ------------------------------------------------------------------------------
    def _arrow(self, positions: pa.Array) -> pa.RecordBatch:
        """Rows at (checked, non-negative) positions of this view, as Arrow."""
        lo = self._window[0]
        if self._rows is None:
            rows = positions if lo == 0 else pa.array(positions.to_numpy() + lo)
        else:
            rows = pa.array(self._rows[positions.to_numpy() + lo])
        batch = self._base().take_offsets(rows, columns=self._columns)
        if self._renames:
            batch = batch.rename_columns([self._renames.get(c, c) for c in batch.schema.names])
        return batch

    def _output(self, batch: pa.RecordBatch) -> Any:
        if self._transform is not None:
            return self._transform(batch)
        return _FORMATS[self._format](batch)

    def _positions(self, indices: Any) -> pa.Array:
        """Indices checked against this view's length, negative ones counted from the end."""
        if type(indices) is list:  # the DataLoader's batch: read by Rust without conversion
            try:
                return _native.normalize_offsets(indices, len(self))
            except TypeError:
                pass  # not all plain ints: as_offsets accepts numpy ints or explains why
        return _native.normalize_offsets(as_offsets(indices), len(self))

    def take_offsets(self, offsets: Any) -> Any:
        """Rows at these positions of the permutation, in the output format."""
        base = self._base()
        if self._rows is None and self._window == (0, len(base)) and not self._renames:
            # All rows in table order: positions are row offsets, checked by the take itself.
            return self._output(base.take_offsets(offsets, columns=self._columns))
        return self._output(self._arrow(self._positions(offsets)))

    def __getitems__(self, indices: Any) -> Any:
        return self.take_offsets(indices)

    def __getitem__(self, index: Any) -> Any:
        """One row (a dict, or a tensor, in the row formats; a one-row batch otherwise)."""
        if isinstance(index, slice):
            return self.take_offsets(range(*index.indices(len(self))))
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"a row index must be an integer, got {index!r}")
        out = self.take_offsets([int(index)])
        if self._transform is None and self._format in _ROW_FORMATS:
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
        """Batches of ``batch_size`` rows (default: ``with_batch_size``, 100): in order, or
        with ``shuffle=True`` in the order :class:`lancetorch.sampler.BatchSampler` gives for
        ``(seed, epoch)``.

        A shuffled read is a training read: under ``torch.distributed`` (or ``RANK`` and
        ``WORLD_SIZE``) each rank gets its own share of the epoch, as with ``BatchSampler``.
        A read in order gives every row unless ``rank`` and ``world_size`` are passed."""
        size = self._batch_size if batch_size is None else batch_size
        if not shuffle and rank is None and world_size is None:
            rank, world_size = 0, 1
        sampler = BatchSampler(
            len(self), size, shuffle=shuffle, seed=seed, drop_last=skip_last_batch, rank=rank,
            world_size=world_size,
        )
        sampler.set_epoch(epoch)
        for positions in sampler:
            yield self._output(self._arrow(pa.array(positions)))

    def __iter__(self) -> Iterator[Any]:
        return self.iter()

    # -- pickling -----------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self._factory is not None:
            state["_table"] = None  # reopened by the factory; no connection state travels
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


def _split_index(split: str | int, names: list[str]) -> int:
    if isinstance(split, (int, np.integer)) and not isinstance(split, bool):
        if not 0 <= int(split) < len(names):
            raise KeyError(f"split {split} does not exist; splits: {dict(enumerate(names))}")
        return int(split)
    if split not in names:
        raise KeyError(f"split {split!r} does not exist; splits: {names}")
    return names.index(split)


class Permutations:
    """The splits of a permutation table over a base table: ``perms["train"]``, ``perms[0]``."""

    def __init__(self, base_table: Table, permutation_table: Any) -> None:
        self._base = base_table
        self._perm = permutation_table.to_arrow() if isinstance(permutation_table, Table) else permutation_table
        self._names = split_names_of(self._perm)

    @property
    def split_names(self) -> list[str]:
        return list(self._names)

    @property
    def split_dict(self) -> dict[str, Permutation]:
        return {name: self[name] for name in self._names}

    def __getitem__(self, split: str | int) -> Permutation:
        return Permutation.from_tables(self._base, self._perm, split)

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self) -> Iterator[Permutation]:
        return (self[i] for i in range(len(self._names)))
