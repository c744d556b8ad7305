"""Permutations: lazy, shuffled, split, filtered, column-selected views of a table.

Build a permutation table with :class:`PermutationBuilder` (``permutation_builder(table)``):
it holds each chosen row's row id in the base table and its split id, in read order, laid out
as LanceDB lays out its own (either library reads the other's). A :class:`Permutation` reads
one split of it (split 0 unless told; or all rows, ``Permutation.identity``) as a PyTorch
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
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.reduction import ForkingPickler
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import _native
from ._arrow import as_offsets
from ._torch_rows import TorchRow, rows_of
from .sampler import BatchSampler
from .table import Table, TableForWorkers, as_lancetorch_table
from .util import tbl_to_tensor, to_batch

# A permutation table's columns and metadata, as LanceDB writes them: either library reads the
# other's. Row ids are Lance row ids (in a memory table, row offsets).
ROW_ID = "row_id"
SPLIT_ID = "split_id"
_NAMES_KEY = b"split_names"
# Written by lancetorch before it wrote LanceDB's layout: still read.
_OLD_ROW_OFFSET = "row_offset"
_OLD_NAMES_KEY = b"lancetorch.split_names"


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


def _one_expression(expression: str, what: str) -> None:
    """Refuse SQL that holds more than one statement: Lance's parser reads up to the first
    ``;`` and drops the rest without a word (``a > 5; a < 3`` would filter on ``a > 5``)."""
    quote = None
    for i, ch in enumerate(expression):
        if quote is not None:
            if ch == quote:
                quote = None  # a doubled quote ('it''s') closes and reopens: the same state
        elif ch in ("'", '"'):
            quote = ch
        elif ch == ";":
            raise ValueError(
                f"{what} {expression!r} holds more than one statement (a ';' at offset {i}); "
                "give exactly one SQL expression"
            )


# ---- building ----------------------------------------------------------------------------------
def _check_names(names: Sequence[str] | None, k: int | None) -> list[str] | None:
    if names is None:
        return None
    names = list(names)
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
    ``shuffle``. Without a split every row is in split 0. Splits have names only when
    ``split_names`` gives them; they can always be read by number.
    """

    def __init__(self, table: Any) -> None:
        self._table = as_lancetorch_table(table)
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
        args: dict[str, Any] = {
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
                raise ValueError(
                    f"split_hash column '{c}' is not in the table; columns are {names}"
                )
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
        self, calculation: str, split_names: Sequence[str] | None = None
    ) -> PermutationBuilder:
        """A SQL expression gives each row's split number (0, 1, ...); rows where it is null
        or negative are left out."""
        if not isinstance(calculation, str) or not calculation.strip():
            raise ValueError(f"split_calculated needs a SQL expression, got {calculation!r}")
        _one_expression(calculation, "split_calculated")
        return self._set_split(
            "calculated", expression=calculation, names=_check_names(split_names, None)
        )

    def shuffle(
        self, *, seed: int | None = None, clump_size: int | None = None
    ) -> PermutationBuilder:
        """Shuffle the rows of each split (clumps of ``clump_size`` neighbouring rows move as
        one). Without a seed one is drawn at random here: each builder's order differs, and
        executing the same builder again repeats it."""
        _check_clump(clump_size)
        self._shuffle = (_seed(seed), clump_size)
        return self

    def filter(self, filter: str) -> PermutationBuilder:
        """Keep the rows where the SQL predicate is true (null counts as false)."""
        if not isinstance(filter, str) or not filter.strip():
            raise ValueError(f"filter needs a SQL predicate, got {filter!r}")
        _one_expression(filter, "filter")
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
    return PermutationBuilder(table)


def _perm_arrow(permutation_table: Any) -> pa.Table:
    """A permutation table (lancetorch's, LanceDB's, or Arrow data) as a pyarrow Table."""
    if isinstance(permutation_table, pa.Table):
        return permutation_table
    if hasattr(permutation_table, "to_arrow"):
        return permutation_table.to_arrow()
    return pa.table(permutation_table)


def split_names_of(permutation_table: Any) -> list[str]:
    """The split names stored in a permutation table's metadata ([] when it names none)."""
    meta = permutation_table.schema.metadata or {}
    raw = meta.get(_NAMES_KEY, meta.get(_OLD_NAMES_KEY))
    return [] if raw is None else list(json.loads(raw))


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
    def arrow2torch_dict(batch: pa.RecordBatch) -> list[TorchRow]:
        """Per-row mappings: numbers as 0-d tensors and fixed-size lists as ``(size,)``
        tensors, views into one batched tensor per column made when read (the default collate
        gives the batched tensors back as they are), strings and bytes as they are. Columns
        that need a spec (token lists) go through ``with_format("torch_dict", decode=...)``."""
        return _TorchDict()(batch)


class _TorchDict:
    """The torch_dict format with decode specs: ``to_batch`` of the batch, cut into rows."""

    def __init__(self, decode: dict[str, Any] | None = None) -> None:
        packed = [c for c, spec in (decode or {}).items() if getattr(spec, "pack", False)]
        if packed:
            raise ValueError(
                f"decode['{packed[0]}'] packs tokens into blocks, and torch_dict gives rows; "
                "pack in a collate_fn (functools.partial(lancetorch.util.to_batch, decode=...)) "
                "or in the Loader"
            )
        self.decode = decode

    def __call__(self, batch: pa.RecordBatch) -> list[TorchRow]:
        columns = to_batch(batch, self.decode)
        sized = [v for v in columns.values() if not isinstance(v, dict)]
        return rows_of(columns, len(sized[0]) if sized else batch.num_rows)


_ROW_FORMATS = ("python", "torch", "torch_row", "torch_dict")
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


# ---- reading -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReadPlan:
    """The rows and columns of a Permutation, as a reader takes them: position ``i`` of the
    view is base-table row ``rows[i]`` (or ``offset + i`` where ``rows`` is None, a window of
    the table itself); ``columns`` are base columns, shown as ``renames.get(c, c)``."""

    table: Table
    rows: np.ndarray | None
    offset: int
    length: int
    columns: list[str]
    renames: dict[str, str]


DEFAULT_BATCH_SIZE = 100
_ROW_ID_COLUMN = "_rowid"  # the pseudo-column of each row's row id


def _rows_of_split(base: Table, arrow: pa.Table, split: int) -> np.ndarray:
    """Row offsets in ``base`` of one split of a permutation table, in read order."""
    names = arrow.schema.names
    column = ROW_ID if ROW_ID in names else _OLD_ROW_OFFSET if _OLD_ROW_OFFSET in names else None
    if column is None:
        raise ValueError(
            f"not a permutation table: it has no '{ROW_ID}' column (columns {names}); build "
            "one with permutation_builder(table).execute()"
        )
    values = arrow.column(column)
    if not pa.types.is_integer(values.type) or values.null_count:
        raise ValueError(
            f"the permutation table's '{column}' column must hold integers without nulls, not "
            f"{values.type} with {values.null_count} nulls"
        )
    raw = values.to_numpy()
    if SPLIT_ID in names:
        raw = raw[arrow.column(SPLIT_ID).to_numpy(zero_copy_only=False) == split]
    elif split != 0:
        raw = raw[:0]  # one split only: split 0
    if column == ROW_ID:
        return base._offsets_of_row_ids(raw)
    if raw.size and (raw.min() < 0 or raw.max() >= len(base)):
        bad = raw.min() if raw.min() < 0 else raw.max()
        raise ValueError(
            f"the permutation table refers to row {int(bad)} but table '{base.name}' has "
            f"{len(base)} rows; rebuild the permutation"
        )
    return raw.astype(np.int64)


def _split_number(split: Any, names: list[str]) -> int:
    if isinstance(split, str):
        if not names:
            raise ValueError(
                f"Cannot create a permutation on split `{split}` because no split names are "
                "defined in the permutation table; read its splits by number (0, 1, ...)"
            )
        if split not in names:
            raise ValueError(
                f"Cannot create a permutation on split `{split}` because split `{split}` is not "
                f"defined in the permutation table; its splits are {names}"
            )
        return names.index(split)
    if isinstance(split, (int, np.integer)) and not isinstance(split, (bool, np.bool_)):
        return int(split)
    raise TypeError(f"Invalid split: {split!r}; give a split name or number")


class Permutation:
    """A lazy view of a table's rows in a given order, as a PyTorch map-style Dataset.

    Every ``with_*``, ``select_columns``, ``remove_columns`` and ``rename_*`` call returns a new
    Permutation and leaves this one as it was. Its attributes are LanceDB's:
    ``base_table``, ``permutation_table``, ``split`` (a number), ``selection`` (output name to
    base column), ``batch_size``, ``transform_fn``, ``offset`` and ``limit`` (``with_skip`` and
    ``with_take``), ``connection_factory``.
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
        self._table: Table | None = base_table
        self._table_name = base_table.name
        self._rows = rows
        self.permutation_table = permutation_table
        self.split = split
        self.selection = (
            selection if selection is not None else {n: n for n in base_table.schema.names}
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
        """All rows of ``table`` in table order."""
        return cls(as_lancetorch_table(table), None)

    @classmethod
    def from_tables(
        cls, base_table: Any, permutation_table: Any = None, split: str | int | None = None
    ) -> Permutation:
        """One split of ``permutation_table`` (by name or number; split 0 when not given)
        over ``base_table``; without a permutation table, all rows in order.

        Split 0 by default, never every split: reading a permutation table without naming a
        split must not mix the test rows into training. A split with no rows raises
        ValueError ("No rows found"), as does a split name the table does not define.
        """
        base = as_lancetorch_table(base_table)
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
        note = getattr(getattr(self._table, "_backend", None), "note_view", None)
        if note is not None:
            note(self, self._base_columns())

    def _base(self) -> Table:
        if self._table is None:
            factory = self.connection_factory
            if factory is None:
                raise RuntimeError(
                    f"this permutation holds no table '{self._table_name}' and has no "
                    "connection_factory to reopen it"
                )
            table = as_lancetorch_table(factory(self._table_name))
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
        return ReadPlan(
            table=base,
            rows=None if self._rows is None else self._rows[lo:hi],
            offset=lo,
            length=hi - lo,
            columns=self._base_columns(),
            renames=self._renames,
        )

    def _base_columns(self) -> list[str]:
        """The base table's columns this view reads (``_rowid`` is not one)."""
        return [c for c in self.selection.values() if c != _ROW_ID_COLUMN]

    @property
    def _columns(self) -> list[str]:
        return self._base_columns()

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

    # -- views --------------------------------------------------------------------------------
    def select_columns(self, columns: Sequence[str]) -> Permutation:
        """Only these columns, in this order (never adds back a removed one); ``_rowid``
        selects each row's row id. The others are never read."""
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
        """Without these columns (names not in the view are ignored, as in LanceDB)."""
        if isinstance(columns, str):
            columns = [columns]
        drop = set(columns)
        selection = {n: c for n, c in self.selection.items() if n not in drop}
        if not selection:
            raise ValueError("Cannot remove all columns")
        return self._copy(selection=selection)

    def rename_column(self, old_name: str, new_name: str) -> Permutation:
        """Show column ``old_name`` as ``new_name`` (it moves to the end, as in LanceDB)."""
        if old_name not in self.selection:
            raise ValueError(
                f"Cannot rename column `{old_name}` because it does not exist; columns: "
                f"{self.column_names}"
            )
        if new_name in self.selection:
            raise ValueError(
                f"Cannot rename column `{old_name}` to `{new_name}` because a column with "
                "that name already exists"
            )
        selection = dict(self.selection)
        selection[new_name] = selection.pop(old_name)
        return self._copy(selection=selection)

    def rename_columns(self, column_map: dict[str, str]) -> Permutation:
        new = self
        for old_name, new_name in column_map.items():
            new = new.rename_column(old_name, new_name)
        return new

    def with_format(self, format: str, *, decode: dict[str, Any] | None = None) -> Permutation:
        """One of: arrow, python (default), python_col, polars, pandas, numpy, torch_col,
        torch, torch_row, torch_dict. ``decode={column: spec}`` (``lancetorch.decode``) says,
        for torch_dict, how token lists and text columns become values."""
        if format not in _FORMATS:
            raise ValueError(f"Invalid format: {format}; choose one of {list(_FORMATS)}")
        if decode is not None:
            if format != "torch_dict":
                raise ValueError(f"decode= goes with the torch_dict format, not {format!r}")
            return self._copy(transform_fn=_TorchDict(dict(decode)), _format=format)
        return self._copy(transform_fn=_FORMATS[format], _format=format)

    def with_transform(self, transform: Callable[[pa.RecordBatch], Any]) -> Permutation:
        """Apply ``transform`` to each Arrow batch instead of a format."""
        if not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        return self._copy(transform_fn=transform, _format=None)

    def with_batch_size(self, batch_size: int) -> Permutation:
        if isinstance(batch_size, bool) or int(batch_size) < 1:
            raise ValueError(f"batch_size={batch_size} must be 1 or more")
        return self._copy(batch_size=int(batch_size))

    def with_skip(self, skip: int) -> Permutation:
        """Leave out the first ``skip`` rows of the split (a second call replaces the first,
        as in LanceDB); applied before :meth:`with_take`. ValueError when the skip, or the
        skip and the take together, pass the end."""
        skip = _count(skip, "with_skip")
        self._check_window(skip, self.limit)
        return self._copy(offset=skip)

    def with_take(self, limit: int) -> Permutation:
        """Only ``limit`` rows, counted after any :meth:`with_skip` (a second call replaces
        the first). ValueError when they pass the end, as in LanceDB."""
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
        """Deprecated: :meth:`with_skip`."""
        warnings.warn("skip() is deprecated; use with_skip()", DeprecationWarning, stacklevel=2)
        return self.with_skip(skip)

    def take(self, limit: int) -> Permutation:
        """Deprecated: :meth:`with_take`."""
        warnings.warn("take() is deprecated; use with_take()", DeprecationWarning, stacklevel=2)
        return self.with_take(limit)

    def with_connection_factory(self, connection_factory: Callable[[str], Any]) -> Permutation:
        """Reopen the base table with ``connection_factory(table_name)`` wherever this
        permutation is unpickled (DataLoader workers); the table itself, and any credentials
        of its connection, are then left out of the pickle."""
        if not callable(connection_factory):
            raise TypeError(
                f"the connection factory must be callable, got {type(connection_factory).__name__}"
            )
        return self._copy(connection_factory=connection_factory)

    # -- reading ------------------------------------------------------------------------------
    def _offsets(self, positions: pa.Array) -> pa.Array:
        """Row offsets in the base table of (checked, non-negative) positions of this view."""
        lo = self._window[0]  # (reopens the base table first, where it was left behind)
        if self._rows is None:
            return positions if lo == 0 else pa.array(positions.to_numpy() + lo)
        return pa.array(self._rows[positions.to_numpy() + lo])

    def _arrow(self, positions: pa.Array) -> pa.RecordBatch:
        """Rows at (checked, non-negative) positions of this view, as Arrow."""
        offsets = self._offsets(positions)
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
        if self._rows is None and not self.offset and self.limit is None and self._whole(base):
            # Every row and column in table order: positions are row offsets, checked by
            # the take itself (the DataLoader's hot path).
            return self._output(base._take(offsets))
        return self._output(self._arrow(self._positions(offsets)))

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
        a list of one row here; see the README's differences.)"""
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
        """Batches of ``batch_size`` rows (default: ``with_batch_size``, 100): in order, or
        with ``shuffle=True`` in the order :class:`lancetorch.sampler.BatchSampler` gives for
        ``(seed, epoch)``.

        A shuffled read is a training read: under ``torch.distributed`` (or ``RANK`` and
        ``WORLD_SIZE``) each rank gets its own share of the epoch, as with ``BatchSampler``.
        A read in order gives every row unless ``rank`` and ``world_size`` are passed."""
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
            yield self._output(self._arrow(pa.array(positions)))

    def __iter__(self) -> Iterator[Any]:
        """Batches of ``batch_size`` rows, the last one left out when it is short (as in
        LanceDB)."""
        return self.iter(self.batch_size, skip_last_batch=True)

    # -- pickling -----------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
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


def _count(value: Any, what: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what}({value!r}) takes a whole number of rows")
    if value < 0:
        raise ValueError(f"{what}({value}) must not be negative")
    return int(value)


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


class Permutations:
    """The splits of a permutation table over a base table: ``perms["train"]``, ``perms[0]``.

    ``split_names`` lists the names the table defines ([] when none), ``split_dict`` maps
    each name to its split number.
    """

    def __init__(self, base_table: Any, permutation_table: Any) -> None:
        self.base_table = as_lancetorch_table(base_table)
        self.permutation_table = permutation_table
        self._arrow = _perm_arrow(permutation_table)
        self.split_names = split_names_of(self._arrow)
        self.split_dict = {name: i for i, name in enumerate(self.split_names)}

    def get_by_name(self, name: str) -> Permutation:
        index = self.split_dict.get(name)
        if index is None:
            raise ValueError(f"No split named `{name}` found; splits: {self.split_names}")
        return self.get_by_index(index)

    def get_by_index(self, index: int) -> Permutation:
        return Permutation.from_tables(self.base_table, self._arrow, index)._copy(
            permutation_table=self.permutation_table
        )

    def __getitem__(self, split: str | int) -> Permutation:
        if isinstance(split, str):
            return self.get_by_name(split)
        if isinstance(split, (int, np.integer)) and not isinstance(split, (bool, np.bool_)):
            return self.get_by_index(int(split))
        raise TypeError(f"Invalid split name or index: {split!r}")

    def __len__(self) -> int:
        """The number of splits: the names given, or the highest split id plus one."""
        ids = self._arrow.column(SPLIT_ID) if SPLIT_ID in self._arrow.schema.names else None
        top = -1 if ids is None or not len(ids) else int(pc.max(ids).as_py())
        return max(len(self.split_names), top + 1, 1)

    def __iter__(self) -> Iterator[Permutation]:
        return (self[i] for i in range(len(self)))
