"""An in-process loader that prepares the next batches on Rust threads.

``Loader(table_or_permutation, batch_size=1024)`` yields ``(columns, rows)`` tensors (as the
``torch_col`` format and ``tbl_to_tensor`` do) for one epoch per ``for`` loop; with
``per_column=True`` it yields a dict of one tensor per column instead (embeddings as
``(rows, size)``). Rust threads (one by default) gather and convert the following batches
while the model trains on the current one, with the GIL released: no worker processes,
nothing pickled. ``stats()`` says where the time went.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from . import _checks, _native
from ._packing import ArrowColumn, Packer
from .decode import Tokens, check_specs
from .permutation import Permutation
from .sampler import _ORDERS, BatchSampler, Windows
from .table import Table, as_lancetorch_table
from .util import _decode_checked, _keep_rows, _torch

# Bounds on what is made ahead of the loop (each a buffer or a thread allocated up front).
_MAX_PREFETCH = 1024
_MAX_THREADS = 256


def _dense(kind: pa.DataType) -> bool:
    """Whether the Rust threads convert a column of this type (numbers, bools, fixed-size
    lists of numbers); the others are made into values by ``to_batch`` on Python threads."""
    if isinstance(kind, pa.ExtensionType):
        return False
    if pa.types.is_fixed_size_list(kind):
        return _dense(kind.value_type)
    return not (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_string_view(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_binary_view(kind)
        or pa.types.is_list(kind)
        or pa.types.is_large_list(kind)
        or pa.types.is_list_view(kind)
        or pa.types.is_large_list_view(kind)
        or pa.types.is_struct(kind)
        or pa.types.is_map(kind)
    )


class _Source:
    """A prefetcher of an epoch (or a window), with the side columns of its batches made
    ahead on ``workers`` Python threads (the takes and decodes release the GIL, so they run at
    once): batch ``k`` is rows ``k * size`` to ``(k + 1) * size`` of ``rows``, as the
    prefetcher cuts them, made by thread ``k % workers``, which keeps up to ``depth`` batches
    ready; the batches are read back in order."""

    def __init__(
        self,
        prefetcher: _native.Prefetcher,
        store: Any = None,
        rows: np.ndarray | None = None,
        columns: list[int] | None = None,
        keys: list[str] | None = None,
        decode: dict | None = None,
        size: int = 0,
        depth: int = 1,
        epoch: int = 0,
        workers: int = 1,
        transform: Any = None,
    ) -> None:
        self.prefetcher = prefetcher
        self.from_memory = False  # whether its rows come from memory (else from a window)
        self.threads: list[threading.Thread] = []
        # What the batches handed out cost on the side threads: take and decode seconds
        # (summed over the threads), and the bytes delivered.
        self.cost = {"take_s": 0.0, "decode_s": 0.0, "bytes": 0}
        if not columns or rows is None:
            return
        self.store, self.rows, self.columns, self.keys = store, rows, columns, keys
        self.decode, self.size, self.epoch = decode, size, epoch
        self.transform = transform
        batches = -(-len(rows) // size) if size else 0
        workers = max(1, min(workers, batches))
        self.ready: list[queue.Queue[Any]] = [
            queue.Queue(maxsize=max(1, depth)) for _ in range(workers)
        ]
        self.stop = threading.Event()
        self.taken = 0  # batches handed out by side()
        for w in range(workers):
            thread = threading.Thread(
                target=self._produce, args=(w,), daemon=True, name=f"lancetorch-side-{w}"
            )
            thread.start()
            self.threads.append(thread)

    def _produce(self, worker: int) -> None:
        """Make batches ``worker``, ``worker + workers``, ... in turn; an error is handed
        over in its batch's place."""
        step = len(self.ready) * self.size
        for start in range(worker * self.size, len(self.rows), step):
            try:
                item: Any = self._make(self.rows[start : start + self.size])
            except BaseException as e:  # raised in the loop, where the batch is asked for
                item = _Failed(e)
            while not self.stop.is_set():
                try:
                    self.ready[worker].put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if self.stop.is_set() or isinstance(item, _Failed):
                return

    def _make(self, part: np.ndarray) -> tuple[Any, tuple | None, tuple[float, float, int]]:
        """The side values of one batch (with a transform, its output), when a spec skipped
        rows the rows kept and the batch's size, and the batch's cost: take and decode
        seconds, bytes delivered."""
        t0 = time.perf_counter()
        batch = self.store.take(pa.array(part.astype(np.int64, copy=False)), self.columns)
        batch = batch.rename_columns(self.keys)
        t1 = time.perf_counter()
        if self.transform is not None:
            out = self.transform(batch)
            return out, None, (t1 - t0, time.perf_counter() - t1, batch.nbytes)
        values, keep = _decode_checked(batch, self.decode or {}, epoch=self.epoch)
        skipped = None
        if keep is not None:
            values = {k: _keep_rows(v, keep) for k, v in values.items()}
            skipped = (keep, len(part))
        return values, skipped, (t1 - t0, time.perf_counter() - t1, _bytes_of(values, batch))

    def next(self) -> Any:
        return self.prefetcher.next()

    def side(self) -> tuple[Any, tuple | None] | None:
        """The side values of the batch ``next`` last returned, and the rows a spec kept (see
        ``_make``); its cost is counted as it is handed out."""
        if not self.threads:
            return None
        item = self.ready[self.taken % len(self.ready)].get()
        self.taken += 1
        if isinstance(item, _Failed):
            raise item.error
        values, skipped, (take_s, decode_s, size) = item
        self.cost["take_s"] += take_s
        self.cost["decode_s"] += decode_s
        self.cost["bytes"] += size
        return values, skipped

    def close(self) -> None:
        self.prefetcher.close()
        if self.threads:
            self.stop.set()
            for thread in self.threads:
                thread.join()

    def stats(self) -> dict[str, float]:
        return self.prefetcher.stats()


def _on_a_terminal() -> bool:
    """Whether a line for the user is seen: stderr a terminal, or a notebook."""
    return (sys.stderr is not None and sys.stderr.isatty()) or "ipykernel" in sys.modules


def _fixed_width(kind: pa.DataType) -> int | None:
    """Bytes a value of ``kind`` takes as Arrow holds it (a bool counted as one byte), or
    None for a variable-width type."""
    if pa.types.is_fixed_size_list(kind):
        inner = _fixed_width(kind.value_type)
        return None if inner is None else inner * kind.list_size
    try:
        return max(kind.bit_width // 8, 1)
    except ValueError:  # variable width
        return None


def _device(device: Any, torch: Any) -> Any:
    """``device`` as a ``torch.device`` (a name, an index as torch reads one, or a device),
    checked now rather than at the first batch."""
    if device is None:
        return None
    if isinstance(device, bool) or not isinstance(device, (str, int, torch.device)):
        raise TypeError(
            f"device={device!r} is {type(device).__name__}; give a torch.device or its name, "
            "such as 'cuda' or 'cpu'"
        )
    try:
        found = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device={device!r} is not a device torch knows: {err}") from err
    if found.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} is a CUDA device, and torch finds no CUDA here; leave device "
            "out (or pass 'cpu') on this machine"
        )
    return found


class _Failed(NamedTuple):
    error: BaseException


def _each_tensor(batch: Any, torch: Any, fn: Callable[[Any], Any]) -> Any:
    """``batch`` with ``fn`` applied to every tensor in it, however deep in dicts, lists and
    tuples (what a transform may return); other values stay as they are."""
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, dict):
        return {k: _each_tensor(v, torch, fn) for k, v in batch.items()}
    if not isinstance(batch, (list, tuple)) or not any(
        isinstance(v, (torch.Tensor, dict, list, tuple)) for v in batch
    ):
        return batch  # strings, bytes: as they are
    parts = [_each_tensor(v, torch, fn) for v in batch]
    if hasattr(batch, "_fields"):  # a named tuple
        return type(batch)(*parts)
    return type(batch)(parts)


def _bytes_of(values: dict[str, Any], batch: pa.RecordBatch) -> int:
    """The bytes of a batch's side values: a tensor's own, and for other values (strings,
    bytes, a tokenizer's output) those of the Arrow column they were made from."""
    total = 0
    for name, value in values.items():
        if hasattr(value, "untyped_storage") and hasattr(value, "nbytes"):
            total += int(value.nbytes)
        elif name in batch.schema.names:
            total += batch.column(name).nbytes
    return total


class _Plan(NamedTuple):
    """What a Loader reads of its ``data``: the table, the rows (an offset, or a view's row
    array), the rows' count where the view knows it, the columns and their output names, and
    how batches are made (decode specs, per column, a view's transform)."""

    table: Table
    offset: int
    length: int | None
    rows: np.ndarray | None
    columns: list[str] | None
    renames: dict[str, str]
    decode: dict[str, Any] | None
    per_column: bool
    transform: Any


def _plan_of(
    data: Any, decode: dict | None, per_column: bool, features: Any, dtype: Any, null_value: Any
) -> _Plan:
    """The :class:`_Plan` of a Table or Permutation (a Permutation's ``read_plan()``: its
    decode specs and transform, checked against the Loader's arguments)."""
    if isinstance(data, Permutation):
        plan = data.read_plan()
        # Positions map to table rows by an offset (an identity permutation's window) or
        # through the permutation's own row array (a view: nothing is copied here).
        offset, n, rows = plan.offset, plan.length, plan.rows
        columns, renames = plan.columns, plan.renames
        if plan.row_ids:
            raise ValueError(
                "the Loader does not read _rowid; leave it out of the permutation's "
                "select_columns, or read row ids through the permutation itself "
                "(a DataLoader over it)"
            )
        if plan.decode is not None:  # the view's torch_dict format says how to decode
            if decode is not None and dict(decode) != plan.decode:
                raise ValueError(
                    f"decode={decode!r} differs from the permutation's torch_dict decode "
                    f"{plan.decode!r}; give the specs in one place"
                )
            decode, per_column = plan.decode, True
        transform = plan.transform
        conflicting = [
            name
            for name, given in (
                ("decode", bool(decode)),
                ("features", features is not None),
                ("per_column", per_column),
                ("dtype", dtype is not None),
                ("null_value", null_value is not None),
            )
            if given
        ]
        if transform is not None and conflicting:
            raise ValueError(
                "the permutation has a with_transform function, which makes each batch "
                f"from its Arrow rows; {conflicting[0]}= says how the Loader would make "
                "them instead: do that in the transform, or drop with_transform"
            )
        return _Plan(plan.table, offset, n, rows, columns, renames, decode, per_column, transform)
    if isinstance(data, Table) or type(data).__module__.startswith("lancedb"):
        # The version the table reads now, for every epoch of this loader (its length
        # and order are that version's): make a new Loader to read a newer one.
        table = as_lancetorch_table(data)._pinned_view()
        return _Plan(table, 0, None, None, None, {}, decode, per_column, None)
    raise TypeError(f"Loader reads a lancetorch Table or Permutation, not {type(data).__name__}")


_NO_STATS: dict[str, float | int] = {
    "index_s": 0.0,
    "read_s": 0.0,
    "take_s": 0.0,
    "convert_s": 0.0,
    "pin_s": 0.0,
    "decode_s": 0.0,
    "wait_s": 0.0,
    "total_s": 0.0,
    "batches": 0,
    "rows": 0,
    "bytes": 0,
    "skipped": 0,
    "store_bytes": 0,
    "store_requests": 0,
    "tier_bytes": 0,
    "delivered_bytes": 0,
    "memory_bytes": 0,
    "shuffle_moved": 0.0,
    "shuffle_rows": 0,
}


def _fixed_packing(decode: dict, keys: list[str], features: bool) -> tuple[str, Tokens] | None:
    """The column and spec of a ``Tokens(pack=True, blocks=B)`` spec, which makes batches of
    tokens, not rows: the only column read then."""
    fixed = [(c, s) for c, s in decode.items() if isinstance(s, Tokens) and s.blocks is not None]
    if not fixed:
        return None
    column = fixed[0][0]
    others = [k for k in keys if k != column]
    if others or features:
        raise ValueError(
            f"decode['{column}'] packs tokens into fixed (blocks, max_length) batches, which "
            f"hold tokens, not rows, so no other column ('{(others or ['features'])[0]}') can "
            f"go with them: read only '{column}' (a Permutation's select_columns(['{column}'])"
            "), or pack without blocks= to keep the rows"
        )
    return fixed[0]


class Loader:
    """Shuffled (or ordered) batches of a Table or Permutation, prepared ahead on Rust threads.

    Each batch is one ``(columns, rows)`` tensor; with ``per_column=True`` it is
    ``{column: tensor}`` (a Permutation's renamed columns under their new names), each as
    :func:`lancetorch.util.column_to_tensor` gives it: ``(rows,)`` for a number or bool
    column, ``(rows, size)`` for a fixed-size list of numbers (an embedding); number columns
    of their own type share the gathered memory (bools, and columns that ``dtype`` converts,
    are copied once). Columns the Rust threads cannot convert (token lists, strings, bytes)
    come with ``per_column=True`` as :func:`lancetorch.util.to_batch` gives them; two Python
    threads (``threads`` of them where more) take and decode them ahead, batches taking turns
    (their work releases the GIL). ``set_epoch`` / ``len`` / ``drop_last`` behave as with
    :class:`lancetorch.sampler.BatchSampler`, which also gives the order. Breaking out of the
    loop, an exception, or the loader being collected stops the threads.

    Under ``torch.distributed`` (or with ``rank``/``world_size`` given) each rank reads its
    share of every epoch, as :class:`lancetorch.sampler.BatchSampler` with the same
    ``uneven`` and ``order`` arguments gives it. ``state_dict()`` / ``load_state_dict()``
    resume mid-epoch from the last batch the loop received.

    A memory table, or a disk table whose columns fit its cache, is read from memory in the
    order of ``BatchSampler(seed=...)``. A disk table that does not fit is read by windows:
    clumps of ``clump_size`` neighbouring rows in shuffled order, ``window_rows`` rows in
    memory at a time (the next window read on a background thread, its clumps as range reads,
    several in flight; the next epoch's first window read during the last one), rows
    shuffled within each window; with several ranks each reads one stretch of each window's
    rows, its share, not the whole window. Every row still comes once per epoch; a row's
    neighbours within its clump share its window, and two rows of different clumps share a
    window with probability about ``window_rows / rows``.

    Parameters
    ----------
    data : Table or Permutation
        What is read (a LanceDB table too, read as :func:`lancetorch.table.as_lancetorch_table`
        gives it); a Permutation's columns, names and rows, its ``with_transform`` function
        (applied on Python threads to each batch's Arrow rows, under their output names: the
        loop gets what it returns) and its ``torch_dict`` format's decode specs. Its other
        formats are not applied: the Loader yields tensors. ``_rowid`` is refused.
    batch_size : int, default 1024
        Rows a batch.
    shuffle : bool, default True
        Shuffle each epoch; ``False`` reads in order.
    seed : int, optional
        The shuffle's seed, as :class:`~lancetorch.sampler.BatchSampler` takes it.
    drop_last : bool, default False
        Leave out a short last batch.
    prefetch : int, default 4
        Batches prepared ahead of the loop, 1 to 1024 (each held in memory).
    pin_memory : bool, default False
        Pin each batch for fast copies to a GPU when CUDA is present.
    dtype : torch.dtype or str, optional
        The type every number column is converted to; with ``features``, the type of ``x``.
    null_value : float, optional
        What a null in a number column becomes.
    profile : bool, default False
        Mark the waits and the pinning as ``torch.profiler`` ranges
        (``lancetorch.loader.wait``, ``lancetorch.loader.pin``).
    window_rows : int, default 262144
        Rows in memory at a time when a disk table is read by windows (1 or more).
    clump_size : int, default 16384
        Neighbouring rows that stay together when a disk table is read by windows (1 or more).
    rank : int, optional
        This rank, as :class:`~lancetorch.sampler.BatchSampler` takes it.
    world_size : int, optional
        The number of ranks, as :class:`~lancetorch.sampler.BatchSampler` takes it.
    uneven : {"pad", "drop"}, default "pad"
        How ranks get the same number of rows, as :class:`~lancetorch.sampler.BatchSampler`.
    order : {"auto", "fisher-yates", "bijection"}, default "auto"
        The shuffle of a read from memory, as :class:`~lancetorch.sampler.BatchSampler`.
    threads : int, default 1
        Rust threads that gather and convert batches, 1 to 256; more help where cores are idle
        while the model trains, and batches still come in order.
    per_column : bool, default False
        Yield ``{column: value}`` instead of one tensor (set by ``features``).
    decode : dict[str, spec], optional
        ``{column: spec}`` (:class:`lancetorch.decode.Tokens`, ``Text``, ``Image``) for columns
        read with ``per_column=True``. ``Tokens(pack=True, blocks=B)`` makes batches of tokens,
        not rows: exactly ``(B, max_length)`` each, the tokens that do not fit carried into the
        next (every token of the epoch once; the last batch padded); that column is then the
        only one read, and ``state_dict()`` adds ``pack_skip``, the tokens of the row batch
        the carry starts at already handed out (resumed on as many ranks as saved it).
    features : list of str, optional
        Yield ``x``, the ``(rows, features)`` tensor of these columns in their common type (or
        ``dtype``), or ``(x, y)`` with ``target``.
    target : str, optional
        The column of ``y``, in its own type; goes with ``features``.
    device : torch.device or str, optional
        Move every batch there (``"cuda"``: pinned first).
    non_blocking : bool, default True
        Copy to ``device`` with ``non_blocking``, so the copy overlaps the loop's work when
        CUDA is present.

    Raises
    ------
    TypeError
        For ``data`` that is not a Table or Permutation, a column one ``(columns, rows)``
        tensor cannot hold without ``per_column=True``, an argument of the wrong type (a size
        or count that is not an integer: ``2.5``, ``"64"``, ``True``; a flag that is not a
        bool), or a ``decode`` spec class in place of an instance (``Image`` for
        ``Image(...)``).
    ValueError
        For a ``Tokens(blocks=...)`` column read beside another column or ``features``.
        For a column (in ``features``, ``target``, ``decode`` or a Permutation) that is not
        read, ``target`` without ``features``, ``prefetch``, ``threads``, ``clump_size`` or
        ``window_rows`` out of range, a ``device`` torch does not know (or a CUDA one where
        there is no CUDA), and the sampler's arguments as BatchSampler checks them.
    """

    def __init__(
        self,
        data: Table | Permutation,
        batch_size: int = 1024,
        *,
        shuffle: bool = True,
        seed: int | None = None,
        drop_last: bool = False,
        prefetch: int = 4,
        pin_memory: bool = False,
        dtype: Any = None,
        null_value: float | None = None,
        profile: bool = False,
        window_rows: int = 1 << 18,
        clump_size: int = 16384,
        rank: int | None = None,
        world_size: int | None = None,
        uneven: str = "pad",
        order: str = "auto",
        threads: int = 1,
        per_column: bool = False,
        decode: dict[str, Any] | None = None,
        features: list[str] | None = None,
        target: str | None = None,
        device: Any = None,
        non_blocking: bool = True,
    ) -> None:
        # Arguments are checked before anything is read: a wrong type is refused, not
        # converted (batch_size=2.5 is not 2 rows, "64" is not 64).
        batch_size = _checks.integer("batch_size", batch_size, low=1)
        prefetch = _checks.integer("prefetch", prefetch)
        threads = _checks.integer("threads", threads)
        windows = Windows(clump_size, window_rows)  # the order of a table read by windows
        _checks.choice("order", order, _ORDERS)  # that of a table read from memory
        for name, value in (
            ("shuffle", shuffle),
            ("drop_last", drop_last),
            ("pin_memory", pin_memory),
            ("profile", profile),
            ("per_column", per_column),
            ("non_blocking", non_blocking),
        ):
            _checks.flag(name, value)
        null_value = None if null_value is None else _checks.number("null_value", null_value)
        decode = None if decode is None else check_specs(decode)
        if features is not None and not isinstance(features, str):
            features = _checks.names("features", features)
        if target is not None:
            _checks.text("target", target)
        plan = _plan_of(data, decode, per_column, features, dtype, null_value)
        self._table, self._rows, self._offset = plan.table, plan.rows, plan.offset
        decode, per_column, transform, n = plan.decode, plan.per_column, plan.transform, plan.length
        schema = self._table.schema
        held = set(schema.names)
        names = list(plan.columns) if plan.columns is not None else schema.names
        missing = [c for c in names if c not in held]
        if missing:
            raise ValueError(f"column '{missing[0]}' is not in table '{self._table.name}'")
        # What per_column batches are keyed by.
        self._keys = [plan.renames.get(n, n) for n in names]
        self._decode = dict(decode or {})
        names, per_column = self._choose_columns(names, features, target, per_column)
        self._pack = _fixed_packing(self._decode, self._keys, features is not None)
        # The side threads take a fixed-shape packed column as Arrow; it is packed in order,
        # as batches are handed out (the carry is in _packing.Packer).
        self._side_specs = dict(self._decode)
        if self._pack is not None:
            self._side_specs[self._pack[0]] = ArrowColumn()
        self._resume_skip = 0
        self._packer: Packer | None = None  # the carry of the pass underway
        # The next epoch's first window, read while the last one's batches go out (see
        # _read_ahead): (epoch, its (lo, hi), its rows, the read's Future).
        self._ahead: tuple[int, tuple[int, int], np.ndarray, Any] | None = None
        self._sort_columns(names, transform, per_column)
        before = self._store_io()
        self._store, self._columns = self._in_memory(names)  # positions of every column read
        fill = np.subtract(self._store_io(), before).tolist()  # the cache's fill, if it read
        # Bytes a row of the columns read takes as Arrow holds it, where every one is of
        # fixed width (else delivered bytes are the bytes of the values handed out).
        widths = [_fixed_width(schema.field(n).type) for n in names]
        self._row_bytes = None if None in widths else sum(w for w in widths if w is not None)
        if n is None:
            n = len(self._table) if self._store is None else self._store.num_rows
        self._sampler = BatchSampler(
            n,
            batch_size,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
            rank=rank,
            world_size=world_size,
            uneven=uneven,
            order=order if self._store is not None else windows,
        )
        if not 1 <= prefetch <= _MAX_PREFETCH:
            raise ValueError(
                f"prefetch={prefetch} must be 1 to {_MAX_PREFETCH} batches (each is held in "
                "memory ahead of the loop)"
            )
        if not 1 <= threads <= _MAX_THREADS:
            raise ValueError(f"threads={threads!r} must be 1 to {_MAX_THREADS}")
        self._threads = threads
        # Side columns are taken and decoded on Python threads whose work releases the GIL:
        # two at least, so that a take and a decode overlap where there are two cores.
        self._side_threads = max(self._threads, min(2, os.cpu_count() or 1))
        self._prefetch = prefetch
        self._pin = pin_memory
        torch = _torch()
        self._device = _device(device, torch)
        if self._device is not None and self._device.type != "cpu":
            self._pin = True  # copies to an accelerator start from pinned memory
        self._non_blocking = non_blocking
        self._per_column = per_column
        self._dtype = _checks.dtype_name("dtype", dtype)
        self._x_dtype = self._dtype if self._features is not None else None
        if self._features is not None:
            self._dtype = None  # the target keeps its own type; dtype= applies to x
        self._null_value = null_value
        self._profile = profile
        self._stats = {
            **_NO_STATS,
            "store_bytes": fill[0],
            "store_requests": fill[1],
            "tier_bytes": fill[2],
        }

    def _choose_columns(
        self, names: list[str], features: Any, target: str | None, per_column: bool
    ) -> tuple[list[str], bool]:
        """The columns read (with ``features``, those and ``target``, in that order) and
        whether batches are per column; ``decode`` must name columns read."""
        self._features = None if features is None else list(features)
        self._target = target
        if self._features is not None:
            if isinstance(features, str):
                self._features = [features]
            wanted = self._features + ([] if target is None else [target])
            position = {k: i for i, k in enumerate(self._keys)}
            unknown = [c for c in wanted if c not in position]
            if unknown:
                raise ValueError(
                    f"column '{unknown[0]}' is not read by this loader; columns: {self._keys}"
                )
            names = [names[position[c]] for c in wanted]
            self._keys = wanted
            per_column = True  # one tensor a column inside, (x, y) outside
        elif target is not None:
            raise ValueError("target= goes with features=: name the feature columns too")
        unknown = sorted(set(self._decode) - set(self._keys))
        if unknown:
            raise ValueError(
                f"decode names column '{unknown[0]}', which this loader does not read; "
                f"columns: {self._keys}"
            )
        return names, per_column

    def _sort_columns(self, names: list[str], transform: Any, per_column: bool) -> None:
        """Which columns the Rust threads convert and which are made on Python threads
        (``_side``); a column one ``(columns, rows)`` tensor cannot hold needs
        ``per_column``."""
        schema = self._table.schema
        # Columns the Rust threads convert (numbers, bools, fixed-size lists), and the rest
        # (decode specs, text, bytes, token lists), made into values on Python threads ahead.
        # With a transform, every column goes to it as Arrow rows.
        self._transform = transform
        self._side = [
            i
            for i, (n, k) in enumerate(zip(names, self._keys))
            if transform is not None or k in self._decode or not _dense(schema.field(n).type)
        ]
        self._side_set = set(self._side)
        if self._side and not per_column and transform is None:
            first = names[self._side[0]]
            raise TypeError(
                f"column '{first}' is {schema.field(first).type}, which one (columns, rows) "
                "tensor cannot hold; pass per_column=True (with decode={...} for token lists), "
                "or leave it out with a Permutation's select_columns"
            )
        self._names = names
        lists = [n for n in names if pa.types.is_fixed_size_list(schema.field(n).type)]
        if lists and not per_column and transform is None:
            raise TypeError(
                f"column '{lists[0]}' is {schema.field(lists[0]).type}, which one (columns, rows) "
                "tensor cannot hold; pass per_column=True for one tensor per column (this one "
                "as (rows, size)), or leave it out with a Permutation's select_columns"
            )

    def _store_io(self) -> tuple[int, int, int]:
        """Bytes and requests the table's store has served this process so far, and bytes
        its node tier has (a memory table has neither: none)."""
        return self._table._backend.io_totals()

    def _moved(self, positions: np.ndarray, places: np.ndarray) -> None:
        """Count how far the rows at ``positions`` (of what this loader reads: a table's
        storage offsets) moved to their global ``places`` in the epoch's order."""
        if len(positions):
            self._stats["shuffle_moved"] += float(np.abs(positions - places).sum())
            self._stats["shuffle_rows"] += len(positions)

    def _in_memory(self, names: list[str]) -> tuple[_native.ColumnStore | None, list[int]]:
        """The store holding the columns and their positions there; ``(None, [])`` for a disk
        table that does not fit its cache (read by windows)."""
        held_store = self._table._backend.in_memory(names)
        if held_store is None:
            return None, []
        held, store = held_store
        position = {n: i for i, n in enumerate(held)}
        return store, [position[n] for n in names]

    def __len__(self) -> int:
        return len(self._sampler)

    def set_epoch(self, epoch: int) -> None:
        """Read ``epoch`` next, as :meth:`lancetorch.sampler.BatchSampler.set_epoch`.

        Parameters
        ----------
        epoch : int
            The epoch, 0 or more.
        """
        self._sampler.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        """Where reading stands, counting the batches this loader's loop has received; see
        :meth:`lancetorch.sampler.BatchSampler.state_dict`. A table read by windows is read in
        the sampler's :class:`~lancetorch.sampler.Windows` order, whose state adds
        ``window_layout``: how the window the position is in was laid out for the ranks, so
        that a resume on another number of ranks knows which of its rows were read. Fixed
        packing adds ``pack_skip``."""
        if self._packer is None:  # no pass underway: where the next one starts
            state = self._sampler.state_dict()
            if self._pack is not None:
                state["pack_skip"] = self._resume_skip
            return state
        first, skip = self._packer.state()
        return {**self._sampler.state_dict(batches=first), "pack_skip": skip}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next ``for`` loop yields the rest of the saved epoch, in the same
        order, on as many ranks as there are now. A table read by windows resumes in its
        windowed order: the state must come from a Loader reading it the same way; on
        another number of ranks, the rows of the current window not yet read are laid out
        anew for the ranks there are now.

        Parameters
        ----------
        state : dict[str, Any]
            What :meth:`state_dict` returned.

        Raises
        ------
        ValueError
            For a state saved reading in another order (the cache decision, ``clump_size`` and
            ``window_rows``), a ``window_layout`` that does not fit the saved position, one
            :meth:`lancetorch.sampler.BatchSampler.load_state_dict` refuses, one with
            ``pack_skip`` for a loader without ``Tokens(blocks=...)``, or a fixed-packing state
            saved on another number of ranks.
        """
        if not isinstance(state, dict):
            raise TypeError(
                f"state={state!r} is {type(state).__name__}; give what state_dict() returned"
            )
        order = self._sampler.order_kind
        if state.get("order") != order:
            raise ValueError(
                f"the state was saved reading in the order {state.get('order')!r}, this loader "
                f"reads table '{self._table.name}' in the order {order!r}: its positions would "
                "name other rows; read it as it was read then (the same cache decision, "
                "clump_size and window_rows)"
            )
        skip = _checks.integer("state['pack_skip']", state.get("pack_skip", 0), low=0)
        if skip and self._pack is None:
            raise ValueError(
                "the state was saved packing tokens into fixed blocks (pack_skip="
                f"{skip}); this loader has no Tokens(pack=True, blocks=...) spec: build it as "
                "it was built then"
            )
        if self._pack is not None and state.get("world_size") != self._sampler.world_size:
            raise ValueError(
                f"the state was saved on {state.get('world_size')} ranks packing fixed blocks, "
                f"this loader runs on {self._sampler.world_size}: each rank's carry starts at "
                "its own row, so a packing state resumes on as many ranks as saved it (each "
                "rank loading its own state)"
            )
        self._sampler.load_state_dict({k: v for k, v in state.items() if k != "pack_skip"})
        self._resume_skip = skip
        self._packer = None

    def _prefetcher(
        self,
        store: _native.ColumnStore,
        rows: np.ndarray,
        columns: list[int],
        epoch: int = 0,
    ) -> _Source:
        # The one cut of these rows into batches, the sampler's: with drop_last a short last
        # batch is left out here, for the Rust threads and the side columns alike (each then
        # cuts the rows it is given by batch_size).
        rows = rows[: self._sampler.batched_rows(len(rows))]
        # uint32 rows (an epoch's order where the table allows) are shared, not widened.
        dtype = np.uint32 if rows.dtype == np.uint32 else np.int64
        dense = [c for i, c in enumerate(columns) if i not in self._side_set]
        side = [columns[i] for i in self._side]
        prefetcher = _native.Prefetcher(
            store,
            pa.array(np.ascontiguousarray(rows, dtype=dtype)),
            dense,
            _native.Batching(
                self._sampler.batch_size,
                drop_last=False,  # the rows are cut to the sampler's batches above
                dtype=self._dtype,
                null_value=self._null_value,
                per_column=self._per_column,
            ),
            depth=self._prefetch,
            threads=self._threads,
        )
        if not side:
            return _Source(prefetcher)
        return _Source(
            prefetcher,
            store,
            rows,
            side,
            [self._keys[i] for i in self._side],
            self._side_specs,
            self._sampler.batch_size,
            self._prefetch,
            epoch,
            self._side_threads,
            self._transform,
        )

    def _table_rows(self, positions: np.ndarray) -> np.ndarray:
        """The table rows at ``positions`` of what this loader reads: uint32 where the
        positions are (an epoch's order of a table of at most 2**32 rows), so that the epoch's
        rows take 4 bytes each, as they do reading a whole table."""
        if self._rows is None and not self._offset:
            return positions
        narrow = (
            positions.dtype == np.uint32
            and self._store is not None
            and self._store.num_rows <= 1 << 32
        )
        if self._rows is None:
            return np.add(positions, self._offset, dtype=np.uint32 if narrow else np.int64)
        if not narrow:
            return self._rows[positions]
        out = np.empty(len(positions), dtype=np.uint32)
        step = 1 << 16  # int64 rows made a slice at a time, not for the whole epoch at once
        for i in range(0, len(positions), step):
            out[i : i + step] = self._rows[positions[i : i + step]]
        return out

    def _epoch_in_memory(self, epoch: int, position: int) -> Generator[_Source, None, None]:
        start = time.perf_counter()
        order = self._sampler.shard_rows(epoch, position)
        # How far rows move, from an even sample of the epoch's rows (at most 65536).
        step = max(1, len(order) >> 16)
        places = self._sampler.shard_positions(position, 0, len(order), step)
        self._moved(order[::step].astype(np.int64), places)
        rows = self._table_rows(order)
        self._stats["index_s"] += time.perf_counter() - start
        store = self._store
        assert store is not None  # read from memory
        prefetcher = self._prefetcher(store, rows, self._columns, epoch)
        prefetcher.from_memory = True
        # The prefetcher holds the epoch's rows (4 bytes each where they fit): no other copy
        # of them stays here (but the side columns' view), nor in the sampler, while the
        # epoch runs.
        del order, rows
        self._sampler.forget_order()
        yield prefetcher

    def _epoch_by_windows(self, epoch: int, position: int) -> Generator[_Source, None, None]:
        """A table too large for memory, in the sampler's windowed order (see
        :class:`~lancetorch.sampler.Windows`): this rank's rows of each window read through
        the backend, the next window on a background thread (and, while the last window's
        batches go out, the next epoch's first window: see ``_read_ahead``); its padding,
        when asked, is read with the last window. Rows a window leaves short of a full batch
        open the next."""
        from concurrent.futures import ThreadPoolExecutor

        size = self._sampler.batch_size
        todo = self._sampler.shard_windows(epoch, position)
        ahead, self._ahead = self._ahead, None
        first = self._ahead_for(ahead, epoch, position, todo)

        def read(i: int, carried: tuple[Any, np.ndarray]) -> tuple[Any, np.ndarray, tuple, dict]:
            """Window ``todo[i]`` read, after the rows the window before left short of a
            full batch (``carried``: its store and their places there, taken from memory,
            not read again): the store, the places of the full batches' rows, the rows left
            over for the next, and what the read cost (the stats to add)."""
            if i == 0 and first is not None:
                store, local, cost = first.result()
            else:
                store, local, cost = self._read_window(epoch, position, *todo[i])
            t0 = time.perf_counter()
            if len(carried[1]):
                rows = carried[0].take(pa.array(carried[1]), None)
                tables = [pa.Table.from_batches([rows])]
                if store is not None:
                    tables.append(pa.Table.from_batches(store.batches(), schema=rows.schema))
                store = _native.ColumnStore(pa.concat_tables(tables), row_major=False)
                local = np.concatenate(
                    [np.arange(len(carried[1]), dtype=np.int64), local + len(rows)]
                )
            last = i == len(todo) - 1
            keep = len(local) if last else len(local) - len(local) % size
            local, carry = local[:keep], (store, local[keep:])
            cost["read_s"] += time.perf_counter() - t0
            if not len(local):
                return None, local, carry, cost
            return store, local, carry, cost

        columns = list(range(len(self._names)))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lancetorch-window") as pool:
            nothing = (None, np.array([], dtype=np.int64))
            pending = pool.submit(read, 0, nothing) if todo else None
            for i in range(len(todo)):
                assert pending is not None  # submitted when there is a window to read
                store, local, carry, cost = pending.result()
                for key, value in cost.items():
                    self._stats[key] += value
                if i + 1 < len(todo):
                    pending = pool.submit(read, i + 1, carry)
                else:
                    self._read_ahead(epoch + 1)
                if store is not None:  # (only the last window's rows end short of a batch)
                    yield self._prefetcher(store, local, columns, epoch)

    def _read_window(
        self, epoch: int, position: int, lo: int, hi: int
    ) -> tuple[Any, np.ndarray, dict[str, float]]:
        """This rank's rows ``lo..hi`` of ``epoch`` from global position ``position`` read
        through the backend, in read order: the store, the place of each row there, and what
        the read cost (the stats to add: store and tier bytes, how far the rows moved)."""
        places = self._sampler.shard_positions(position, lo, hi)
        return self._read_positions(places, self._sampler.rows_at(epoch, places))

    def _read_positions(
        self, places: np.ndarray, positions: np.ndarray
    ) -> tuple[Any, np.ndarray, dict[str, float]]:
        """``_read_window`` of the rows at ``positions``, at global ``places`` of the order."""
        t0 = time.perf_counter()
        cost = {
            "shuffle_moved": float(np.abs(positions - places).sum()),
            "shuffle_rows": len(positions),
        }
        store, local = None, np.array([], dtype=np.int64)
        if len(positions):
            backend = self._table._backend
            before = backend.io_totals()
            store, local = backend.read_rows(self._table_rows(positions), self._names)
            spent = np.subtract(backend.io_totals(), before).tolist()
            cost.update(store_bytes=spent[0], store_requests=spent[1], tier_bytes=spent[2])
        cost["read_s"] = time.perf_counter() - t0
        return store, local, cost

    def _read_ahead(self, epoch: int) -> None:
        """Start reading this rank's first window of ``epoch`` from its start on a thread of
        its own: the next pass's, unless ``set_epoch`` or ``load_state_dict`` say otherwise
        before it begins (then it is dropped, see ``_ahead_for``). The last window's batches
        go out meanwhile; the window is held as the next window of an epoch is."""
        from concurrent.futures import ThreadPoolExecutor

        todo = self._sampler.shard_windows(epoch, 0)
        if not todo or todo[0][0] == todo[0][1]:
            return
        places = self._sampler.shard_positions(0, *todo[0])
        positions = self._sampler.rows_at(epoch, places)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lancetorch-ahead")
        future = pool.submit(self._read_positions, places, positions)
        pool.shutdown(wait=False)  # its thread ends with the read
        self._ahead = (epoch, todo[0], positions, future)

    def _ahead_for(self, ahead: Any, epoch: int, position: int, todo: list) -> Any:
        """The read of the first window the previous pass started, for the pass reading
        ``todo`` of ``epoch`` from ``position`` where it is that very window (the same epoch,
        start, rows in the same order: a seed loaded since changes them); else None, the
        read dropped once it ends (what it read from the store and the tier still counted)."""
        if ahead is None:
            return None
        read_epoch, window, positions, future = ahead
        if position == 0 and read_epoch == epoch and todo and todo[0] == window:
            places = self._sampler.shard_positions(0, *window)
            if np.array_equal(self._sampler.rows_at(epoch, places), positions):
                return future
        try:
            _, _, cost = future.result()
        except Exception:  # a failure of a read no one will use; the pass reads its own
            return None
        for key in ("store_bytes", "store_requests", "tier_bytes"):
            self._stats[key] += cost.get(key, 0)
        return None

    def __iter__(self) -> Iterator[Any]:
        torch = _torch()
        start = time.perf_counter()
        epoch, position = self._sampler.begin_epoch()
        before, finished = dict(self._stats), False
        sources: Generator[_Source, None, None] = (
            self._epoch_in_memory(epoch, position)
            if self._store is not None
            else self._epoch_by_windows(epoch, position)
        )
        pin = self._pin and torch.cuda.is_available()
        if self._profile:
            wait_range = lambda: torch.profiler.record_function("lancetorch.loader.wait")  # noqa: E731
            pin_range = lambda: torch.profiler.record_function("lancetorch.loader.pin")  # noqa: E731
        else:
            wait_range = pin_range = contextlib.nullcontext
        prefetcher: _Source | None = None
        batch: Any
        packer = None
        if self._pack is not None:
            packer = self._packer = Packer(*self._pack, skip=self._resume_skip)
            self._resume_skip = 0

        def deliver(batch: Any) -> Any:
            """The batch pinned, moved and split as asked."""
            if pin:
                t = time.perf_counter()
                with pin_range():
                    batch = _each_tensor(batch, torch, lambda t: t.pin_memory())
                self._stats["pin_s"] += time.perf_counter() - t
            if self._device is not None:
                batch = _each_tensor(
                    batch,
                    torch,
                    lambda t: t.to(self._device, non_blocking=self._non_blocking),
                )
            if self._features is not None:
                batch = self._x_y(batch, torch)
            return batch

        try:
            while True:
                t0 = time.perf_counter()
                with wait_range():
                    capsule = prefetcher.next() if prefetcher is not None else None
                    while capsule is None:
                        if prefetcher is not None:
                            self._close(prefetcher)
                        prefetcher = next(sources, None)
                        if prefetcher is None:
                            break
                        capsule = prefetcher.next()
                t1 = time.perf_counter()
                self._stats["wait_s"] += t1 - t0
                if capsule is None:
                    for packed in packer.finish() if packer is not None else ():
                        yield deliver(packed)
                    finished = True
                    return
                assert prefetcher is not None  # the capsule came from it
                if self._transform is not None:
                    side = prefetcher.side()
                    assert side is not None  # every column is a side column
                    batch = side[0]
                elif self._per_column:
                    batch = self._columns_of(capsule, prefetcher.side(), torch)
                else:
                    batch = torch.from_dlpack(capsule)
                self._sampler.record()
                if packer is None:
                    yield deliver(batch)
                    continue
                for packed in packer.feed(batch[packer.column]):
                    yield deliver(packed)
        finally:
            if prefetcher is not None:
                self._close(prefetcher)
            sources.close()
            self._stats["total_s"] += time.perf_counter() - start
            read = self._stats["store_bytes"] or self._stats["tier_bytes"]
            if finished and read and _on_a_terminal():
                print(self._summary(epoch, before), file=sys.stderr, flush=True)

    def _columns_of(self, capsules: list, side: tuple | None, torch: Any) -> dict:
        """One batch's ``{column: value}`` in the order read: the Rust threads' tensors, and
        the side columns' values (every output a spec declares, in its order); rows a spec
        skipped leave the Rust threads' tensors too."""
        values, skipped = side if side is not None else ({}, None)
        keep = None
        if skipped is not None:
            keep, rows = skipped
            self._stats["skipped"] += rows - len(keep)
        dense = iter(capsules)
        out: dict[str, Any] = {}
        for i, key in enumerate(self._keys):
            if i in self._side_set:
                spec = self._side_specs.get(key)
                for name in [key] if spec is None else spec.outputs(key):
                    out[name] = values[name]
            else:
                tensor = torch.from_dlpack(next(dense))
                out[key] = tensor if keep is None else _keep_rows(tensor, keep)
        return out

    def _x_y(self, batch: dict, torch: Any) -> Any:
        assert self._features is not None  # called only with features=
        parts = [batch[f] for f in self._features]
        common = getattr(torch, self._x_dtype) if self._x_dtype else None
        if common is None:
            common = parts[0].dtype
            for t in parts[1:]:
                common = torch.promote_types(common, t.dtype)
        x = torch.stack([t.to(common) for t in parts], dim=1)
        return x if self._target is None else (x, batch[self._target])

    def _close(self, prefetcher: _Source) -> None:
        prefetcher.close()
        made = prefetcher.stats()
        for key, value in made.items():
            self._stats[key] += value
        for key, value in prefetcher.cost.items():
            self._stats[key] += value
        delivered = made.get("bytes", 0) + prefetcher.cost["bytes"]
        if self._row_bytes is not None:
            delivered = made.get("rows", 0) * self._row_bytes
        self._stats["delivered_bytes"] += delivered
        if prefetcher.from_memory:
            self._stats["memory_bytes"] += delivered

    def _summary(self, epoch: int, before: dict[str, Any]) -> str:
        """One line on what epoch ``epoch`` cost: the stats since ``before``."""
        d = {k: self._stats[k] - before[k] for k in self._stats}
        mb = 1e6
        amplification = d["store_bytes"] / d["delivered_bytes"] if d["delivered_bytes"] else 0
        line = (
            f"lancetorch: epoch {epoch} of table '{self._table.name}': {d['rows']:,} rows in "
            f"{d['total_s']:.1f}s; {d['store_bytes'] / mb:,.0f} MB from the store in "
            f"{d['store_requests']:,} requests ({amplification:.2f}x the bytes delivered), "
            f"{d['tier_bytes'] / mb:,.0f} MB from the node tier, "
            f"{d['memory_bytes'] / mb:,.0f} MB from memory"
        )
        if d["shuffle_rows"] and self._sampler.n:
            ratio = 3 * d["shuffle_moved"] / d["shuffle_rows"] / self._sampler.n
            line += f"; rows moved {ratio:.2f}x as far as a full shuffle moves them"
        return line

    def stats(self) -> dict[str, float]:
        """Totals over finished epochs: seconds spent making the index (``index_s``), reading
        windows of a table too large for memory (``read_s``, on a background thread), in the
        take and the conversion on the Rust threads (``take_s``, ``convert_s``, summed over the
        threads; a batch gathered and converted in one pass from the row-major block counts
        as take), taking and decoding the columns made on Python threads (their takes in
        ``take_s`` too; ``decode_s`` for the decode specs or a Permutation's transform, summed
        over the threads), pinning (``pin_s``), and waiting for a batch (``wait_s``); the
        batches, rows and bytes delivered to the loop (not those made ahead and dropped at a
        ``break``; a decoded column counts its tensors' bytes, strings and a transform's
        output the Arrow bytes they were made from);
        rows and bytes per second of the loop; ``skipped``, the rows an
        ``Image(on_error="skip")`` left out of their batches; and ``wait_fraction``, the share
        of the loop's time the consumer spent waiting for data.

        What the reads cost: ``store_bytes`` and ``store_requests``, what Lance read from the
        table's store (a disk or object storage) for this loader, its cache fill included
        (reads of the same table by others in this process at the same time count too);
        ``tier_bytes``, the bytes of rows read from the node tier's copy of the table, for its
        windows and its cache fill (the rows of a piece fetched from the store for a window
        count in ``store_bytes`` for that window, and here for the windows after it);
        ``delivered_bytes``, the bytes of the columns read handed to the loop, as Arrow holds
        them (the values' own where a column is of variable width); ``memory_bytes``, those
        of them served from memory (a memory table, or the cache of a disk table);
        ``read_amplification``, ``store_bytes / delivered_bytes`` (about 1 for an epoch by
        windows, 0 for epochs from memory after the fill). ``shuffle_distance`` says how far
        the order moves rows: the mean over the rows read (from memory, an even sample of
        65536 of them an epoch) of ``|place in the table -
        place in the epoch's order| / rows`` (the place in what the loader reads: for a
        Permutation, its positions); a full shuffle moves a row ``1/3`` of the table on
        average, so ``shuffle_ratio``, ``3 * shuffle_distance``, is about 1 for a full
        shuffle (and for windows, whose clumps go anywhere) and 0 for ``shuffle=False``. On
        a terminal or in a notebook, each finished epoch of a table read from storage prints
        one line on stderr with that epoch's figures."""
        s = dict(self._stats)
        total = s["total_s"]
        s["rows_per_s"] = s["rows"] / total if total else 0.0
        s["bytes_per_s"] = s["bytes"] / total if total else 0.0
        s["wait_fraction"] = s["wait_s"] / total if total else 0.0
        delivered = s["delivered_bytes"]
        s["read_amplification"] = s["store_bytes"] / delivered if delivered else 0.0
        moved, counted = s.pop("shuffle_moved"), s.pop("shuffle_rows")
        n = self._sampler.n
        s["shuffle_distance"] = moved / counted / n if counted and n else 0.0
        s["shuffle_ratio"] = 3 * s["shuffle_distance"]
        return s
