"""The reads of a Lance table's rows outside its memory cache: a window's rows read as
coalesced range reads (``_LanceReads.read_rows_from_store``, several in flight), or from
the node tier's pieces (``_rows_from_tier``: the pieces a window lacks fetched into the
tier); the cache filled over the tier's mapped pieces (``_store_from_tier``), the threads
these reads share, and the progress bar of a fill. ``_LanceReads`` is the half of
``_LanceBackend`` (``_lance.py``) that reads rows; the attributes it uses are the backend's,
declared below."""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pyarrow as pa

from . import _native
from ._backends import CacheSettings
from ._objectstore import StorageReadError
from ._tier import NodeTier, PieceKey, default_root

if TYPE_CHECKING:
    from ._lance import _LanceBackend


def _estimated_bytes(schema: pa.Schema, names: Sequence[str], rows: int) -> int:
    """Bytes the columns take in memory (variable-width columns guessed at 64 bytes a row)."""
    total = 0
    for name in names:
        t = schema.field(name).type
        try:
            if pa.types.is_fixed_size_list(t):
                total += rows * t.list_size * max(t.value_type.bit_width // 8, 1)
            else:
                total += rows * max(t.bit_width // 8, 1)
        except ValueError:  # variable width
            total += rows * 64
    return total


# Uncached reads of rows (a Loader's windows): runs of this many neighbouring rows or more are
# read as ranges, each at most _RANGE_ROWS rows, _IN_FLIGHT of them at once.
_MIN_RUN = 32
_RANGE_ROWS = 1 << 14
_IN_FLIGHT = 8
# Pieces of the node tier a window lacks, fetched (read, written, checked) this many at once:
# each holds a piece's bytes in memory while it is read.
_PIECES_IN_FLIGHT = 4
# Pieces a window fetched, written to the tier this many at once while their rows are served
# from memory (see NodeTier.get_behind).
_WRITES = 2


_POOLS: dict[str, Any] = {}  # the threads of the range reads and piece fetches, made when needed
_POOL_LOCK = threading.Lock()


def _pool(kind: str) -> Any:
    """The threads of ``kind`` ("range": ``_IN_FLIGHT`` range reads; "piece":
    ``_PIECES_IN_FLIGHT`` piece fetches; "write": ``_WRITES`` writes of pieces), shared
    by every table of this process, made when first needed (and again in a forked child,
    which has no threads)."""
    pool = _POOLS.get(kind)
    if pool is None:
        from concurrent.futures import ThreadPoolExecutor

        with _POOL_LOCK:
            pool = _POOLS.get(kind)
            if pool is None:
                size = {"range": _IN_FLIGHT, "piece": _PIECES_IN_FLIGHT}.get(kind, _WRITES)
                pool = ThreadPoolExecutor(size, thread_name_prefix=f"lancetorch-{kind}")
                _POOLS[kind] = pool
    return pool


os.register_at_fork(after_in_child=_POOLS.clear)


def _runs(unique: np.ndarray, shortest: int) -> list[tuple[int, int]]:
    """``(first place, rows)`` of each run of at least ``shortest`` consecutive values of
    the sorted, distinct ``unique``."""
    breaks = np.flatnonzero(np.diff(unique) != 1) + 1
    firsts = np.concatenate([[0], breaks])
    counts = np.diff(np.concatenate([firsts, [len(unique)]]))
    long = counts >= shortest
    return list(zip(firsts[long].tolist(), counts[long].tolist()))


def _take_of(rows: np.ndarray) -> str:
    """A take, described by its size and first row (rows in the order they were asked)."""
    if not len(rows):
        return "a take of no rows"
    return f"a take of {len(rows)} rows starting at row offset {int(rows[0])}"


class _Count:
    """Rows read, where no progress bar is shown."""

    n = 0

    def update(self, rows: int) -> None:
        self.n += rows

    def __enter__(self) -> _Count:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def _progress(total: int, desc: str) -> Any:
    """A tqdm progress bar on a terminal or in a notebook; elsewhere a plain count (and tqdm
    is not imported at all)."""
    if (sys.stderr is not None and sys.stderr.isatty()) or "ipykernel" in sys.modules:
        from tqdm.auto import tqdm

        return tqdm(total=total, unit="rows", desc=desc, leave=False)
    return _Count()


class _LanceReads:
    """Rows of a Lance dataset read outside the memory cache: from the store in ranges,
    or through the node tier's pieces; a mixin of ``_LanceBackend``."""

    # The backend's (see _LanceBackend).
    settings: CacheSettings
    version: int
    _node_tier: NodeTier | None
    _fragments: tuple[list[Any], np.ndarray] | None
    _piece_rows: int | None
    call: Callable[..., Any]
    identity: Callable[[], str | None]

    if TYPE_CHECKING:

        @property
        def name(self) -> str: ...
        @property
        def uri(self) -> str: ...
        @property
        def cache(self) -> bool | str: ...
        @property
        def dataset(self) -> Any: ...
        @property
        def schema(self) -> pa.Schema: ...
        def count_rows(self) -> int: ...

    def read_rows(
        self, rows: np.ndarray, names: list[str]
    ) -> tuple[_native.ColumnStore, np.ndarray]:
        """The rows at ``rows`` (checked, non-negative offsets; repeats allowed) read once
        each, as a store of the columns ``names`` in that order, and the place of each asked
        row in it (int64): what an uncached take and a Loader window both read. Through the
        node tier's pieces where there is one (``_rows_from_tier``), else from the store."""
        tier = self.tier()
        if tier is not None:
            unique, places = np.unique(rows, return_inverse=True)
            backend = cast("_LanceBackend", self)  # the one class this is a mixin of
            return _rows_from_tier(backend, tier, unique, places, names)
        return self.read_rows_from_store(rows, names)

    def read_rows_from_store(
        self, rows: np.ndarray, names: list[str]
    ) -> tuple[_native.ColumnStore, np.ndarray]:
        """``read_rows`` through Lance: the rows at ``rows`` read once each, as a store of
        the columns ``names`` and the place of each asked row in it (int64).

        Runs of at least ``_MIN_RUN`` neighbouring rows (a window's clumps) are read as
        ranges, a scan of one fragment from an offset, cut at ``_RANGE_ROWS`` rows and
        ``_IN_FLIGHT`` at once (Lance reads them with the GIL released); the scattered rest
        goes to Lance as one take. A range read fetches the pages of its rows and nothing
        around them; a take of the same rows measured several times slower.
        """
        unique, places = np.unique(rows, return_inverse=True)
        places = places.astype(np.int64, copy=False)
        runs = _runs(unique, _MIN_RUN) if len(unique) >= _MIN_RUN else []
        if not runs:
            fetched = self.call(_take_of(rows), self.dataset.take, unique, columns=names)
            fetched = fetched.select(names)  # in the order asked for, whatever Lance gives
            return _native.ColumnStore(fetched, row_major=False), places
        pieces = self._ranges(unique, runs)
        in_ranges = np.zeros(len(unique), dtype=bool)
        for first, _, _, count in pieces:
            in_ranges[first : first + count] = True
        scattered = np.flatnonzero(~in_ranges)

        def read(piece: int) -> pa.Table:
            if piece == len(pieces):
                few = unique[scattered]
                return self.call(_take_of(few), self.dataset.take, few, columns=names)
            first, fragment, offset, count = pieces[piece]
            what = f"a range read of {count} rows starting at row offset {int(unique[first])}"
            return self.call(what, fragment.to_table, columns=names, offset=offset, limit=count)

        jobs = len(pieces) + (1 if len(scattered) else 0)
        parts = list(_pool("range").map(read, range(jobs)))
        fetched = pa.concat_tables([p.select(names) for p in parts])
        if len(scattered):
            # The ranges' rows come first, in offset order, then the scattered rows'.
            place = np.empty(len(unique), dtype=np.int64)
            place[np.flatnonzero(in_ranges)] = np.arange(len(unique) - len(scattered))
            place[scattered] = np.arange(len(unique) - len(scattered), len(unique))
            places = place[places]
        return _native.ColumnStore(fetched, row_major=False), places

    def _ranges(
        self, unique: np.ndarray, runs: list[tuple[int, int]]
    ) -> list[tuple[int, Any, int, int]]:
        """The range reads of ``runs`` (``(first, count)`` of neighbouring rows of
        ``unique``), cut at fragment ends and every ``_RANGE_ROWS`` rows: ``(first place in
        unique, fragment, offset in the fragment, rows)`` each."""
        fragments, starts = self._fragment_starts()
        out = []
        for first, count in runs:
            row, end = int(unique[first]), int(unique[first]) + count
            while row < end:
                f = int(np.searchsorted(starts, row, side="right")) - 1
                stop = min(end, int(starts[f + 1]), row + _RANGE_ROWS)
                out.append((first, fragments[f], row - int(starts[f]), stop - row))
                first += stop - row
                row = stop
        return out

    def _fragment_starts(self) -> tuple[list[Any], np.ndarray]:
        """The version's fragments and the row offset each starts at (the last entry: the
        rows), counting the rows each holds now (deleted rows are not offsets)."""
        if self._fragments is None:
            fragments = self.call("the list of fragments", self.dataset.get_fragments)
            self._fragments = (fragments, np.cumsum([0, *map(self._live_rows, fragments)]))
        return self._fragments

    def _live_rows(self, fragment: Any) -> int:
        """The rows ``fragment`` holds now: from its metadata where it says (no read: a
        table of thousands of fragments on object storage), else counted by Lance."""
        try:
            meta = fragment.metadata
            deleted = meta.deletion_file.num_deleted_rows if meta.deletion_file else 0
            if deleted is not None:
                return int(meta.physical_rows) - int(deleted)
        except AttributeError:  # a pylance without these fields
            pass
        return int(self.call("a fragment's row count", fragment.count_rows))

    def tier(self) -> NodeTier | None:
        """The node tier this backend reads through, opened and its folder checked on first
        use; None when its ``cache_dir`` is False, or its cache is (``cache=False`` keeps no
        copy of any kind: every read goes to Lance)."""
        folder = self.settings.cache_dir
        if folder is False or self.cache is False:
            return None
        if self._node_tier is None:
            self._node_tier = node_tier(tier_folder(folder), self.settings.dir_budget)
        return self._node_tier

    def piece_rows(self) -> int:
        """The rows of each of this version's node tier pieces (see ``_PIECE_BYTES``), from
        the bytes a row of its columns takes: the fixed-width ones' own, or the bytes of its
        data files a row where more (variable-width columns: text, images; the sizes are in
        the manifest, nothing is read). The same in every process, so that the ranks of a
        node share the pieces."""
        if self._piece_rows is None:
            files = sum(
                d.file_size_bytes or 0
                for fragment in self.dataset.get_fragments()
                for d in fragment.data_files()
            )
            self._piece_rows = piece_rows(self.schema, files // max(self.count_rows(), 1))
        return self._piece_rows

    def piece_key(self, names: Sequence[str], start: int, stop: int) -> PieceKey:
        """The node tier's key of the rows ``[start, stop)`` of the columns ``names`` of this
        version (its location is the URI alone: never the storage options)."""
        identity = self.identity() or ""
        written = identity.partition("@")[2]
        return PieceKey(self.uri, self.version, written, tuple(names), start, stop)

    def read_range(self, names: list[str], start: int, stop: int) -> pa.Table:
        """The rows ``[start, stop)`` of the columns ``names``, read through Lance (a piece of
        the node tier), as one chunk."""
        data = self.call(
            f"a sequential scan of row offsets {start} to {stop - 1}",
            self.dataset.to_table,
            columns=names,
            offset=start,
            limit=stop - start,
            # One batch: the piece is written to the tier as it comes, and a table of Lance's
            # small batches wrote several times slower (joined first, slower again).
            batch_size=max(stop - start, 1),
        )
        if data.num_rows != stop - start:
            raise StorageReadError(
                f"table '{self.name}' ({self.uri}) gave {data.num_rows} rows for rows {start} "
                f"to {stop} of its version {self.version}: its files do not hold the rows its "
                "manifest counts. Open the table again; if it persists the dataset is damaged"
            )
        return data.select(names).combine_chunks()


# A node tier's piece of a disk table: half _PIECE_BYTES to _PIECE_BYTES of the table's rows
# (all its columns, so that a piece of fewer columns has the same rows), a power of two from
# _FEWEST_PIECE_ROWS to PIECE_ROWS rows. Large reads and few files, while the memory of the
# pieces in flight stays bounded: Lance's read of a piece holds about twice its bytes, and its
# allocator keeps some.
PIECE_ROWS = 1 << 17
_FEWEST_PIECE_ROWS = 1 << 4
_PIECE_BYTES = 32 << 20


def piece_rows(schema: pa.Schema, stored: int = 0) -> int:
    """The rows of each node tier piece of a table of ``schema`` whose rows take ``stored``
    bytes each in its files (see ``_PIECE_BYTES``): the larger of that and the fixed-width
    columns' bytes counts."""
    per_row = max(_estimated_bytes(schema, schema.names, 1), stored, 1)
    fit = 1 << max((_PIECE_BYTES // per_row).bit_length() - 1, 0)
    return min(PIECE_ROWS, max(_FEWEST_PIECE_ROWS, fit))


def tier_folder(cache_dir: str | os.PathLike[str] | bool | None) -> str | bool:
    """``open_table``'s ``cache_dir`` as a backend keeps it: the folder (None: the default
    one, resolved now so that worker processes use the same), or False (no tier)."""
    if cache_dir is False:
        return False
    if cache_dir is None:
        return str(default_root())
    if not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(
            f"cache_dir={cache_dir!r} is {type(cache_dir).__name__}; cache_dir takes a folder "
            "(str or os.PathLike), None for the default one, or False to keep no node tier"
        )
    return os.fspath(cache_dir)


# One per folder and budget in a process: its counters are the process's.
_TIERS: dict[tuple[str, int | None], NodeTier] = {}


def node_tier(folder: str | bool, budget: int | None = None) -> NodeTier | None:
    """The node tier in ``folder`` keeping ``budget`` bytes of pieces (None: half the free
    disk space; see ``NodeTier``), opened, and its folder checked, on first use."""
    if folder is False:
        return None
    assert isinstance(folder, str)
    tier = _TIERS.get((folder, budget))
    if tier is None:
        tier = _TIERS[(folder, budget)] = NodeTier(folder, budget)
    return tier


# Non-empty while this process fills caches before a fork (_lance._fill_before_fork).
_FORKING: list[bool] = []


def _store_from_tier(
    backend: _LanceBackend, tier: NodeTier, names: list[str], rows: int, shown: bool
) -> _native.ColumnStore:
    """A cache of the columns ``names`` over the node tier's pieces of them, each mapped
    (fetched first by the node's first process to need it, ``_PIECES_IN_FLIGHT`` at once;
    a piece another process is fetching is waited for after the others): the processes of
    a node share one copy of the rows in the page cache, none holds its own. A progress bar
    when ``shown`` (and on a terminal)."""
    size = backend.piece_rows()
    starts = list(range(0, rows, size))
    pieces: list[pa.Table | None] = [None] * len(starts)

    def get(i: int, wait: bool) -> tuple[pa.Table | None, bool]:
        start = starts[i]
        return _piece(backend, tier, names, start, min(start + size, rows), wait)

    bar = _progress(rows, f"reading {os.path.basename(backend.uri)}") if shown else _Count()
    with bar as progress:
        todo = list(range(len(starts)))
        # One piece after another before a fork: concurrent.futures' own fork hook may hold
        # the lock every submit takes by then (whether it does depends on the import order).
        each = map if _FORKING else _pool("piece").map
        for wait in (False, True):  # the pieces others are fetching now, waited for last
            busy = []
            got = each(functools.partial(get, wait=wait), todo)
            for i, (piece, fetched) in zip(todo, got):
                if piece is None:
                    busy.append(i)
                    continue
                if not fetched:
                    backend.from_tier(piece.nbytes)
                pieces[i] = piece
                progress.update(piece.num_rows)
            todo = busy
        assert not todo  # a get that waits always has the piece
    schema = pa.schema([backend.schema.field(n) for n in names])
    batches = [b for piece in pieces if piece is not None for b in piece.to_batches()]
    table = pa.Table.from_batches(batches, schema=schema)
    return _native.ColumnStore(table, row_major=_row_major_pays(schema))


def _piece(
    backend: _LanceBackend,
    tier: NodeTier,
    names: list[str],
    start: int,
    stop: int,
    wait: bool,
    writer: Any = None,
) -> tuple[pa.Table | None, bool]:
    """The node tier's piece of the rows ``[start, stop)`` of the columns ``names`` (None
    where ``wait`` is False and another process is fetching it now), and whether this call
    fetched it from the store; with a ``writer``, a piece fetched is returned from memory
    and written on it (``NodeTier.get_behind``)."""
    fetched = []

    def read() -> pa.Table:
        fetched.append(True)
        return backend.read_range(names, start, stop)

    key = backend.piece_key(names, start, stop)
    if wait:
        piece = tier.get(key, read)
    elif writer is not None:
        piece = tier.get_behind(key, read, writer)
    else:
        piece = tier.get_now(key, read)
    return piece, bool(fetched)


def _row_major_pays(schema: pa.Schema) -> bool:
    """Whether a random take reads these columns several times faster from a row-major copy
    than from the mapped pieces, column after column: where the fixed-width columns are more
    than twice the cache lines a row of them spans (16 float32 features and a label: 17
    columns in 2 lines, about ten times faster row-major), the cache keeps a copy of its own
    in each process, as it does without the tier; a few wide columns (an embedding and a
    label) read as fast from the shared pieces, which then stay the only copy on the node."""
    widths = []
    for field in schema:
        t = field.type
        if pa.types.is_fixed_size_list(t) and pa.types.is_primitive(t.value_type):
            widths.append(t.list_size * max(t.value_type.bit_width // 8, 1))
        elif pa.types.is_primitive(t) and not pa.types.is_boolean(t):
            widths.append(t.bit_width // 8)
    lines = -(-sum(widths) // 64)
    return len(widths) > 2 * lines


def _rows_from_tier(
    backend: _LanceBackend,
    tier: NodeTier,
    unique: np.ndarray,
    places: np.ndarray,
    names: list[str],
) -> tuple[_native.ColumnStore, np.ndarray]:
    """``read_rows`` with a node tier: the rows ``unique`` (sorted, distinct) taken from the
    tier's pieces (of the columns ``names``, or of every column), the pieces the tier lacks
    fetched into it whole when the columns fit half its budget (once per node, up to
    ``_PIECES_IN_FLIGHT`` at once: a piece another process is fetching is read after the
    others), else those rows through Lance. Runs of neighbouring rows (a window's clumps) are
    slices of the mapped pieces, not copies."""
    columns = [n for n in backend.schema.names if n in names]  # as the cache's pieces hold them
    rows = backend.count_rows()
    fill = _estimated_bytes(backend.schema, columns, rows) <= tier.budget_bytes // 2
    parts: list[pa.RecordBatch] = []
    order: list[np.ndarray] = []  # the places in ``unique`` of each part's rows

    def taken(
        piece: pa.Table, at: np.ndarray, start: int, fetched: bool = False, copy: bool = False
    ) -> None:
        """The rows ``unique[at]`` of ``piece`` (rows ``start`` on): slices of a mapped
        piece, one take (a copy) of those of a piece in memory (which goes once it is
        written)."""
        local = unique[at] - start
        if copy:
            rows = piece.select(names).take(pa.array(local)).combine_chunks().to_batches()
        else:
            rows = _gather(piece.select(names), local)
        if not fetched:
            backend.from_tier(sum(b.nbytes for b in rows))
        parts.extend(rows)
        order.append(at)

    def fetch(job: tuple[np.ndarray, PieceKey], wait: bool) -> tuple[pa.Table | None, bool]:
        if wait:
            return _piece(backend, tier, columns, job[1].start, job[1].stop, True)
        return _piece(backend, tier, columns, job[1].start, job[1].stop, False, _pool("write"))

    held, wanted, missing = _pieces_of(backend, tier, unique, columns, rows, fill)
    for piece, at, start, copy in held:
        taken(piece, at, start, copy=copy)
    # Fetched together (Lance reads, Arrow writes and the checksum release the GIL); the
    # pieces other processes are fetching now, waited for after the others.
    busy = []
    for job, (piece, fetched) in zip(
        wanted, _pool("piece").map(functools.partial(fetch, wait=False), wanted)
    ):
        if piece is None:
            busy.append(job)
        else:  # in memory where this process fetched it (written to the tier behind)
            taken(piece, job[0], job[1].start, fetched, copy=fetched)
    for job, (piece, fetched) in zip(
        busy, _pool("piece").map(functools.partial(fetch, wait=True), busy)
    ):
        assert piece is not None  # a get that waits always has the piece
        taken(piece, job[0], job[1].start, fetched)
    if missing:  # read as the store reads a window (ranges where the rows run together)
        at = np.concatenate(missing)
        store, local = backend.read_rows_from_store(unique[at], names)
        parts.extend(pa.Table.from_batches([store.take(pa.array(local))]).to_batches())
        order.append(at)
    schema = pa.schema([backend.schema.field(n) for n in names])
    if not order:
        return _native.ColumnStore(schema.empty_table(), row_major=False), places
    where = np.empty(len(unique), dtype=np.int64)
    where[np.concatenate(order)] = np.arange(len(unique), dtype=np.int64)
    data = pa.Table.from_batches([b for b in parts if b.num_rows], schema=schema)
    return _native.ColumnStore(data, row_major=False), where[places].astype(np.int64)


def _pieces_of(
    backend: _LanceBackend,
    tier: NodeTier,
    unique: np.ndarray,
    columns: list[str],
    rows: int,
    fill: bool,
) -> tuple[
    list[tuple[pa.Table, np.ndarray, int, bool]],
    list[tuple[np.ndarray, PieceKey]],
    list[np.ndarray],
]:
    """Where ``_rows_from_tier`` finds the rows ``unique`` (of a table of ``rows`` rows):
    the pieces the tier holds (each with the places in ``unique`` of its rows, its first
    row, and whether it is in memory, still being written: its rows then copied), the
    pieces to fetch where ``fill`` (the places of their rows, their keys), and the places
    of the rows to read from the store."""
    held: list[tuple[pa.Table, np.ndarray, int, bool]] = []
    wanted: list[tuple[np.ndarray, PieceKey]] = []  # pieces to fetch, and their rows
    missing: list[np.ndarray] = []
    size = backend.piece_rows()
    first = unique // size
    for at in np.split(np.arange(len(unique)), np.flatnonzero(np.diff(first)) + 1):
        if not len(at):
            continue
        start = int(first[at[0]]) * size
        stop = min(start + size, rows)
        key = backend.piece_key(columns, start, stop)
        piece = tier.pending(key)
        if piece is not None:  # fetched for a window before, still being written
            held.append((piece, at, start, True))
            continue
        piece = tier.peek(key)
        if piece is None and columns != backend.schema.names:
            piece = tier.peek(backend.piece_key(backend.schema.names, start, stop))
        if piece is not None:
            held.append((piece, at, start, False))
        elif fill:
            wanted.append((at, key))
        else:
            missing.append(at)
    return held, wanted, missing


def _gather(piece: pa.Table, local: np.ndarray) -> list[pa.RecordBatch]:
    """The rows ``local`` (sorted, distinct) of ``piece``, in that order: runs of at least
    ``_MIN_RUN`` neighbours as slices of it (no copy), the rows between them taken."""
    out: list[pa.RecordBatch] = []
    done = 0
    for first, count in _runs(local, _MIN_RUN) if len(local) >= _MIN_RUN else []:
        if first > done:
            out.extend(piece.take(pa.array(local[done:first])).to_batches())
        out.extend(piece.slice(int(local[first]), count).to_batches())
        done = first + count
    if done < len(local):
        out.extend(piece.take(pa.array(local[done:])).to_batches())
    return out
