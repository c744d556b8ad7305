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
import sys
import time
from collections.abc import Generator, Iterator
from typing import Any

import numpy as np

from . import _checks, _packing
from ._delivery import _device, _each_tensor, _x_y
from ._epoch_reads import _EpochReads
from ._loader_stats import _NO_STATS, _on_a_terminal, summary, totals
from ._packing import ArrowColumn, Packer, Shard
from ._read_plan import _fixed_packing, _fixed_width, _Plan, _plan_of, _side_columns
from ._source import _Source
from .decode import check_specs
from .permutation import Permutation
from .sampler import _ORDERS, BatchSampler, Windows
from .table import Table
from .util import _keep_rows, _torch

# Bounds on what is made ahead of the loop (each a buffer or a thread allocated up front).
_MAX_PREFETCH = 1024
_MAX_THREADS = 256


class Loader(_EpochReads):
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
        only one read, and ``state_dict()`` adds ``rank`` and ``pack_done``, the tokens of
        this rank's rows already handed out past its position (resumed by the same rank, or
        on any number of ranks through :meth:`merge_state_dicts`).
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
        names, per_column = self._take_plan(plan, features, target)
        fill = self._open_store(names)
        n = plan.length
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
        self._batch_settings(
            prefetch, threads, pin_memory, device, non_blocking, per_column, dtype, null_value
        )
        self._profile = profile
        self._stats = {
            **_NO_STATS,
            "store_bytes": fill[0],
            "store_requests": fill[1],
            "tier_bytes": fill[2],
        }

    def _take_plan(self, plan: _Plan, features: Any, target: str | None) -> tuple[list[str], bool]:
        """The table, rows and columns of ``plan``, checked against the table, with
        ``features`` and ``target`` chosen among them; which columns go to Python threads,
        and fixed packing. The columns read, and whether batches are per column."""
        self._table, self._rows, self._offset = plan.table, plan.rows, plan.offset
        decode, per_column, transform = plan.decode, plan.per_column, plan.transform
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
        # A loaded packing state, until its pass begins: (epoch, position, pack_done of this
        # rank, pack_skip of an earlier lancetorch's state).
        self._resume: tuple[int, int, dict[int, int], int] | None = None
        self._packer: Packer | None = None  # the carry of the pass underway
        # The next epoch's first window, read while the last one's batches go out (see
        # _read_ahead): (epoch, its (lo, hi), its rows, the read's Future).
        self._ahead = None
        # With a transform, every column goes to it as Arrow rows.
        self._transform = transform
        self._side = _side_columns(
            self._table.schema, names, self._keys, self._decode, transform, per_column
        )
        self._side_set = set(self._side)
        self._names = names
        return names, per_column

    def _open_store(self, names: list[str]) -> list[int]:
        """The columns ``names`` held in memory where they fit (else read by windows), and
        the bytes a row of them takes; what holding them read from the store (bytes,
        requests, and bytes from the node tier)."""
        before = self._store_io()
        self._store, self._columns = self._in_memory(names)  # positions of every column read
        fill: list[int] = np.subtract(self._store_io(), before).tolist()  # the cache's fill
        # Bytes a row of the columns read takes as Arrow holds it, where every one is of
        # fixed width (else delivered bytes are the bytes of the values handed out).
        widths = [_fixed_width(self._table.schema.field(n).type) for n in names]
        self._row_bytes = None if None in widths else sum(w for w in widths if w is not None)
        return fill

    def _batch_settings(
        self,
        prefetch: int,
        threads: int,
        pin_memory: bool,
        device: Any,
        non_blocking: bool,
        per_column: bool,
        dtype: Any,
        null_value: float | None,
    ) -> None:
        """How batches are made and handed over: ``prefetch`` and ``threads`` (checked
        here), pinning, the device, the number type."""
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
        that a resume on another number of ranks knows which of its rows were read.

        Fixed packing (``Tokens(pack=True, blocks=B)``) adds this ``rank`` and ``pack_done``:
        its state's ``position`` is that of the row batch its carry starts at, and
        ``pack_done`` lists ``[position, tokens]`` for each of its rows past it already
        handed out (the first ``tokens`` of the row at that global position; -1: all of
        them): whole rows and at most one partial row of that batch, and any a resume left.
        The ranks' states differ: each loads its own, or every rank the state
        :meth:`merge_state_dicts` makes of them all."""
        sampler = self._sampler
        if self._pack is None:
            return sampler.state_dict()
        if self._packer is None:  # no pass underway: where the next one starts
            state = sampler.state_dict()
            resume = self._resume
            if resume is None or resume[:2] != (state["epoch"], state["position"]):
                resume = (0, 0, {}, 0)
            if resume[3]:
                return {**state, "pack_skip": resume[3]}
            done = [[q, t] for q, t in sorted(resume[2].items())]
            return {**state, "rank": sampler.rank, "pack_done": done}
        first, done, skip = self._packer.state()
        state = sampler.state_dict(batches=first)
        if skip:  # resumed from an earlier lancetorch's state, nothing of the pass read yet
            return {**state, "pack_skip": skip}
        return {**state, "rank": sampler.rank, "pack_done": done}

    @staticmethod
    def merge_state_dicts(states: list[dict[str, Any]]) -> dict[str, Any]:
        """One state of the states every rank of a run saved at one step, which every rank
        of the next run loads, whatever its number of ranks. With fixed packing
        (``Tokens(pack=True, blocks=B)``) each rank's state holds the tokens its own carry
        handed out; the merged one has the position of the rank furthest behind and, in
        ``pack_done``, every rank's rows past it already handed out, whole or in part (its
        ``rank`` is None). Without fixed packing every rank saves the same state, which this
        checks and returns.

        Parameters
        ----------
        states : list of dict
            The :meth:`state_dict` of every rank, in any order (as
            ``torch.distributed.all_gather_object`` gathers them, or as each rank saved its
            own).

        Returns
        -------
        dict
            A state for :meth:`load_state_dict`.

        Raises
        ------
        ValueError
            For no states, a rank's state missing or given twice, a state merged already or
            saved by a lancetorch that wrote ``pack_skip``, or states of different runs or
            steps: another ``seed``, ``rows``, ``order``, ``shuffle``, ``clump_size`` or
            ``world_size``, another epoch (but for a rank whose pass is over), positions that
            are not of one pass, or (without packing) states that differ at all.
        TypeError
            For ``states`` that is not a list of dicts.

        Examples
        --------
        Two ranks (in one process here) hand out a batch each, then one rank reads the rest:

        >>> import lancetorch, pyarrow as pa
        >>> from lancetorch.decode import Tokens
        >>> db = lancetorch.connect("memory://")
        >>> t = db.create_table("docs", pa.table({"t": [[1, 2, 3]] * 8}))
        >>> spec = {"t": Tokens(max_length=4, pack=True, blocks=1)}
        >>> def loader(rank, world):
        ...     return Loader(t, 2, seed=0, rank=rank, world_size=world, per_column=True,
        ...                   decode=spec)
        >>> ranks = [loader(r, 2) for r in range(2)]
        >>> firsts = [next(iter(each)) for each in ranks]  # 4 tokens each
        >>> merged = Loader.merge_state_dicts([each.state_dict() for each in ranks])
        >>> one = loader(0, 1)
        >>> one.load_state_dict(merged)
        >>> sum(int((b["t_document"] >= 0).sum()) for b in one)  # the rest of the 24 tokens
        16
        """
        return _packing.merge_states(states)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next ``for`` loop yields the rest of the saved epoch, in the same
        order, on as many ranks as there are now. A table read by windows resumes in its
        windowed order: the state must come from a Loader reading it the same way; on
        another number of ranks, the rows of the current window not yet read are laid out
        anew for the ranks there are now.

        With fixed packing, each rank loads the state it saved itself, on as many ranks; or
        every rank the state :meth:`merge_state_dicts` made of all of them, on any number of
        ranks: the rows from its position on are laid out for the ranks there are now, and
        the tokens ``pack_done`` names left out (rows handed out whole are skipped, a
        partial row starts after its tokens handed out), so that every token of the epoch
        comes once (``uneven="pad"``'s padding aside).

        Parameters
        ----------
        state : dict[str, Any]
            What :meth:`state_dict` (or :meth:`merge_state_dicts`) returned.

        Raises
        ------
        ValueError
            For a state saved reading in another order (the cache decision, ``clump_size`` and
            ``window_rows``), a ``window_layout`` that does not fit the saved position, one
            :meth:`lancetorch.sampler.BatchSampler.load_state_dict` refuses, a packing state
            for a loader without ``Tokens(blocks=...)``, a rank's own packing state on
            another number of ranks or another rank, or a ``pack_done`` that does not fit the
            state (positions outside it, or not of its rank).
        """
        if not isinstance(state, dict):
            raise TypeError(
                f"state={state!r} is {type(state).__name__}; give what state_dict() returned"
            )
        sampler = self._sampler
        order = sampler.order_kind
        if state.get("order") != order:
            raise ValueError(
                f"the state was saved reading in the order {state.get('order')!r}, this loader "
                f"reads table '{self._table.name}' in the order {order!r}: its positions would "
                "name other rows; read it as it was read then (the same cache decision, "
                "clump_size and window_rows)"
            )
        skip = _checks.integer("state['pack_skip']", state.get("pack_skip", 0), low=0)
        if (skip or "pack_done" in state) and self._pack is None:
            raise ValueError(
                "the state was saved packing tokens into fixed blocks (it has "
                f"'{'pack_skip' if skip else 'pack_done'}'); this loader has no "
                "Tokens(pack=True, blocks=...) spec: build it as it was built then"
            )
        world, rank = sampler.world_size, sampler.rank
        merged = "pack_done" in state and state.get("rank") is None
        if self._pack is not None and not merged:
            saved, owner = state.get("world_size"), state.get("rank", rank)
            if saved != world:
                raise ValueError(
                    f"the state is rank {owner}'s of {saved} ranks packing fixed blocks, this "
                    f"loader runs on {world}: a rank's state holds only the tokens its own "
                    "carry handed out; load Loader.merge_state_dicts(every rank's state) on "
                    "every rank instead"
                )
            if owner != rank:
                raise ValueError(
                    f"the state is rank {owner}'s, this loader is rank {rank} (of {world}): "
                    "each rank loads the state it saved itself (or every rank the one "
                    "Loader.merge_state_dicts makes of them all)"
                )
        done = _packing.done_of(state) if "pack_done" in state else {}
        saved = world
        if merged:
            saved = _checks.integer("state['world_size']", state.get("world_size"), low=1)
        elif done:
            _packing.check_own(done, state["position"], rank, world, "state")
        sampler.load_state_dict({k: v for k, v in state.items() if k not in _packing.STATE_KEYS})
        epoch, position = state["epoch"], state["position"]
        if merged and done:  # where its rows are read now, and which are this rank's
            before = np.fromiter(done, dtype=np.int64, count=len(done))
            now = sampler.resumed_positions(before, saved)
            mine = (now - position - rank) % world == 0
            tokens = np.fromiter(done.values(), dtype=np.int64, count=len(done))
            done = dict(zip(now[mine].tolist(), tokens[mine].tolist()))
        self._resume = (epoch, position, done, skip)
        self._packer = None

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
        held: list[_Source | None] = [None]  # the source being read, closed once, in finally
        packer = None
        if self._pack is not None:
            sampler, resume = self._sampler, self._resume
            if resume is None or resume[:2] != (epoch, position):
                resume = (epoch, position, {}, 0)  # a state loaded for another pass
            rows = sampler.batched_rows(sampler.shard_size(position))
            shard = Shard(
                position, sampler.rank, sampler.world_size, sampler.n, rows, sampler.batch_size
            )
            packer = self._packer = Packer(*self._pack, shard, resume[2], skip=resume[3])
            self._resume = None

        def deliver(batch: Any) -> Any:
            """The batch pinned, moved and split as asked."""
            return self._deliver(batch, torch, pin, pin_range)

        try:
            while True:
                t0 = time.perf_counter()
                with wait_range():
                    capsule = self._next_capsule(held, sources)
                self._stats["wait_s"] += time.perf_counter() - t0
                if capsule is None:
                    for packed in packer.finish() if packer is not None else ():
                        yield deliver(packed)
                    finished = True
                    return
                prefetcher = held[0]
                assert prefetcher is not None  # the capsule came from it
                batch = self._batch_of(capsule, prefetcher, torch)
                self._sampler.record()
                if packer is None:
                    yield deliver(batch)
                    continue
                for packed in packer.feed(batch[packer.column]):
                    yield deliver(packed)
        finally:
            if held[0] is not None:
                self._close(held[0])
            sources.close()
            self._stats["total_s"] += time.perf_counter() - start
            read = self._stats["store_bytes"] or self._stats["tier_bytes"]
            if finished and read and _on_a_terminal():
                line = summary(self._stats, before, epoch, self._table.name, self._sampler.n)
                print(line, file=sys.stderr, flush=True)

    def _next_capsule(self, held: list[_Source | None], sources: Iterator[_Source]) -> Any:
        """The next batch's capsule, from the source in ``held`` or, once it runs out (then
        closed), the next of ``sources``, which ``held`` then holds before it is read (so
        that one failing on its first read is closed, once, by the caller). None at the end
        of the epoch."""
        prefetcher = held[0]
        capsule = prefetcher.next() if prefetcher is not None else None
        while capsule is None:
            if prefetcher is not None:
                held[0] = None
                self._close(prefetcher)
            prefetcher = held[0] = next(sources, None)
            if prefetcher is None:
                break
            capsule = prefetcher.next()
        return capsule

    def _batch_of(self, capsule: Any, prefetcher: _Source, torch: Any) -> Any:
        """The batch of ``capsule``: a transform's output, ``{column: value}``, or one
        ``(columns, rows)`` tensor."""
        if self._transform is not None:
            side = prefetcher.side()
            assert side is not None  # every column is a side column
            return side[0]
        if self._per_column:
            return self._columns_of(capsule, prefetcher.side(), torch)
        return torch.from_dlpack(capsule)

    def _deliver(self, batch: Any, torch: Any, pin: bool, pin_range: Any) -> Any:
        """``batch`` pinned (when ``pin``, within ``pin_range``), moved and split as asked."""
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
            batch = _x_y(batch, torch, self._features, self._target, self._x_dtype)
        return batch

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
        return totals(self._stats, self._sampler.n)
