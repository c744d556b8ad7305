"""Index batches made in Rust, for ``DataLoader(dataset, batch_sampler=...)``, sharded across
the ranks of a ``torch.distributed`` job and resumable mid-epoch.

PyTorch's ``RandomSampler`` + ``BatchSampler`` build a Python list of ints for every batch,
which caps a shuffled epoch at a few million rows a second however fast the dataset is.
:class:`BatchSampler` orders the positions in Rust and yields slices of int64 numpy arrays; a
lancetorch Table or Permutation takes such an array without making a Python object per row.

An epoch is one global order of all ``n`` positions, a pure function of ``(seed, epoch)``.
Rank ``r`` of ``W`` reads global positions ``r, r + W, r + 2W, ...`` of it, so after every rank
has read ``k`` rows the first ``k * W`` positions of the order are read and nothing else: the
state to resume from is ``(seed, epoch, position)``, whatever the number of ranks.

The orders: a Fisher-Yates shuffle, a seeded bijection (no memory), both in ``_orders.py``,
and :class:`Windows` (``_windows.py``), for a table read a window at a time, whose windows are
laid out for the ranks (its state adds how the current window was: ``window_layout``).
Whatever the order, the rank stride, the padding, the cut into batches and the resume are this
module's, once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from . import _checks
from ._orders import bijection_rows, check_fisher_yates_fits, fisher_yates
from ._ranks import _shared_seed, distributed_rank
from ._windows import WindowedOrder, Windows

__all__ = ["FISHER_YATES_MAX_ROWS", "BatchSampler", "Windows", "distributed_rank"]

#: Up to this many rows an epoch's order is a Fisher-Yates shuffle held as one index array
#: (4 bytes a row); beyond it, a seeded bijection computed position by position.
FISHER_YATES_MAX_ROWS = 1 << 26
_ORDERS = ("auto", "fisher-yates", "bijection")
_UNEVEN = ("pad", "drop")


class BatchSampler:
    """Batches of positions ``0..n``: shuffled per epoch from ``(seed, epoch)``, or in order;
    this rank's share when the read is sharded.

    ``set_epoch(e)`` chooses the order of the next pass (as with ``DistributedSampler``); a
    pass that ends without a ``set_epoch`` moves on to the next epoch by itself. With the same
    seed and epoch the order is the same on every machine and every release.

    Sharding: every rank gets the same number of rows (see ``uneven``). A shuffled sampler
    built without a seed while ``torch.distributed`` runs is a collective: rank 0 picks the
    seed and broadcasts it, so every rank must build it at the same point (on NCCL, after
    ``torch.cuda.set_device``).

    ``state_dict()`` / ``load_state_dict()`` stop and resume mid-epoch; see there.

    Parameters
    ----------
    data_source : int or sized
        The number of rows ``n``, or anything with a ``len()`` (a Table, a Permutation).
    batch_size : int
        Positions a batch (1 or more); this rank's last batch of a pass may be shorter.
    shuffle : bool, default True
        Shuffle each epoch from ``(seed, epoch)``; ``False`` reads the positions in order.
    seed : int, optional
        The shuffle's seed; by default a random one (rank 0's, broadcast, in a sharded read).
    drop_last : bool, default False
        Leave out this rank's last batch of a pass when it is short.
    clump_size : int, optional
        Runs of this many neighbouring rows move together in the shuffle and keep their order
        (``order="fisher-yates"`` only).
    rank : int, optional
        This rank; by default that of ``torch.distributed`` (or ``RANK``), see
        :func:`distributed_rank`.
    world_size : int, optional
        The number of ranks; by default that of ``torch.distributed`` (or ``WORLD_SIZE``).
        ``world_size=1`` reads everything on every rank.
    uneven : {"pad", "drop"}, default "pad"
        ``"pad"`` (as ``DistributedSampler``) repeats the first rows still to read (from the
        start of the epoch, or of a resumed remainder) to fill the last round; ``"drop"``
        leaves out the last ``rows % world_size`` of them.
    order : {"auto", "fisher-yates", "bijection"} or Windows, default "auto"
        ``"fisher-yates"`` shuffles an index array (4 bytes a row); ``"bijection"`` computes
        each position's row from ``(seed, epoch, position)`` with no memory at all, for tables
        of billions of rows; ``"auto"`` picks Fisher-Yates up to
        :data:`FISHER_YATES_MAX_ROWS` rows. :class:`Windows` reads clumps of neighbouring
        rows a window at a time (what the Loader reads a table too large for memory in):
        each window's rows are laid out for the ranks so that a rank reads one stretch of
        the table a window; ``shuffle=False`` keeps the windows and stretches in storage
        order. Its state records ``window_layout``, see :meth:`state_dict`.

    Raises
    ------
    ValueError
        For a negative number of rows, a ``batch_size`` under 1, an unknown ``uneven`` or
        ``order``, a ``clump_size`` with the bijection or windowed order, or a shuffled read
        sharded without a seed when ``torch.distributed`` is not initialised.
    TypeError
        For an argument of the wrong type: a size, count, seed or rank that is not an integer
        (``2.5``, ``"64"``, ``True``), a flag that is not a bool.
    MemoryError
        For ``order="fisher-yates"`` when an epoch's order (4 bytes a row, 8 past 2**32 rows)
        is more than the memory free.

    Examples
    --------
    >>> s = BatchSampler(10, batch_size=4, seed=42, world_size=1)
    >>> [len(b) for b in s]
    [4, 4, 2]
    """

    def __init__(
        self,
        data_source: Any,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int | None = None,
        drop_last: bool = False,
        clump_size: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        uneven: str = "pad",
        order: str | Windows = "auto",
    ) -> None:
        if isinstance(data_source, (int, np.integer, bool, np.bool_)):
            n = _checks.integer("data_source", data_source, low=0)
        elif hasattr(data_source, "__len__"):
            n = len(data_source)
        else:
            raise TypeError(
                f"data_source={data_source!r} is {type(data_source).__name__}; give the number "
                "of rows (an int) or something with a len() (a Table, a Permutation)"
            )
        batch_size = _checks.integer("batch_size", batch_size, low=1)
        shuffle = _checks.flag("shuffle", shuffle)
        drop_last = _checks.flag("drop_last", drop_last)
        clump_size = _checks.optional_integer("clump_size", clump_size, low=1)
        _checks.choice("uneven", uneven, _UNEVEN)
        windows = order if isinstance(order, Windows) else None
        if windows is not None:
            if clump_size is not None:
                raise ValueError(
                    f"clump_size={clump_size} with order={windows}: the windowed order's clumps "
                    "are its own, give Windows(clump_size=...)"
                )
            order = str(windows)
        else:
            _checks.choice("order", order, _ORDERS)
        self.n = n
        if order == "auto":
            order = "fisher-yates" if self.n <= FISHER_YATES_MAX_ROWS else "bijection"
        if order == "bijection" and clump_size not in (None, 1):
            raise ValueError(
                "clump_size needs order='fisher-yates': the bijection order moves single rows"
            )
        if order == "fisher-yates" and shuffle:
            check_fisher_yates_fits(self.n)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.rank, self.world_size = distributed_rank(rank, world_size)
        self.seed = _shared_seed(seed, self.world_size if shuffle else 1)
        self.drop_last = drop_last
        self.clump_size = clump_size
        self.uneven = uneven
        self.order_kind = order  # a name, and the state's "order"
        self.epoch = 0  # the epoch the next pass reads
        self._start = 0  # and the global position it starts at
        self._progress: list[int] | None = None  # [epoch, start, batches] of the pass underway
        self._cached_order: tuple[int, np.ndarray] | None = None
        self._windows = None if windows is None else WindowedOrder(windows, n, self.seed, shuffle)

    # -- orders -----------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Read ``epoch`` next, from its start; or, when a loaded state stopped part way
        through that very epoch, from where it stopped.

        Parameters
        ----------
        epoch : int
            The epoch, 0 or more.

        Raises
        ------
        ValueError
            For a negative epoch.
        """
        epoch = _checks.integer("epoch", epoch, low=0)
        if epoch != self.epoch:
            self._start = 0
        self.epoch, self._progress = epoch, None

    def order(self, epoch: int | None = None) -> np.ndarray:
        """All positions of ``epoch`` (default: the current one) in global read order.

        Parameters
        ----------
        epoch : int, optional
            The epoch; by default the one the next pass reads.

        Returns
        -------
        np.ndarray
            The ``n`` positions, int64.
        """
        epoch = self.epoch if epoch is None else epoch
        return self.rows_at(epoch, np.arange(self.n, dtype=np.int64))

    def rows_at(self, epoch: int, positions: np.ndarray) -> np.ndarray:
        """The positions read at ``positions`` of ``epoch``'s global order.

        Parameters
        ----------
        epoch : int
            The epoch whose order is read.
        positions : np.ndarray
            Places in that order (int64); without shuffling they are returned as they are.

        Returns
        -------
        np.ndarray
            One position a place, int64.
        """
        epoch = _checks.integer("epoch", epoch, low=0)
        positions = np.asarray(positions)
        if positions.dtype.kind not in "iu":
            raise TypeError(
                f"positions of {positions.dtype} values; rows_at takes integer positions"
            )
        return self._rows_at(epoch, positions)

    def _rows_at(self, epoch: int, positions: np.ndarray) -> np.ndarray:
        """:meth:`rows_at` of arguments already checked (each batch of ``__iter__``)."""
        if self._windows is not None:
            return self._windows.rows_at(epoch, positions.astype(np.int64), self.world_size)
        if not self.shuffle:
            return positions
        if self.order_kind == "bijection":
            return bijection_rows(self.n, self.seed, epoch, positions)
        return self._fisher_yates(epoch)[positions].astype(np.int64)

    def _fisher_yates(self, epoch: int) -> np.ndarray:
        """The whole order of ``epoch``, kept for the epoch's later batches."""
        if self._cached_order is None or self._cached_order[0] != epoch:
            whole = fisher_yates(self.n, self.seed, epoch, self.clump_size)
            self._cached_order = (epoch, whole)
        return self._cached_order[1]

    def forget_order(self) -> None:
        """Drop the kept order of the current epoch (made again if asked for): for a reader
        that holds its own copy of the epoch's rows."""
        self._cached_order = None
        if self._windows is not None:
            self._windows.forget()

    # -- this rank's share --------------------------------------------------------------------
    def shard_size(self, start: int = 0) -> int:
        """Rows this rank reads in an epoch that starts at global position ``start``.

        Parameters
        ----------
        start : int, default 0
            The global position the epoch starts at (a resumed one's).

        Returns
        -------
        int
            Rounded up with ``uneven="pad"``, down with ``"drop"``.
        """
        start = _checks.integer("start", start, low=0)
        remaining = max(self.n - start, 0)
        if self.uneven == "pad":
            return -(-remaining // self.world_size)
        return remaining // self.world_size

    def shard_positions(self, start: int, lo: int, hi: int, step: int = 1) -> np.ndarray:
        """Global positions of this rank's rows ``lo..hi`` in an epoch started at ``start``.

        Parameters
        ----------
        start : int
            The global position the epoch starts at.
        lo : int
            This rank's first row, counted in its own share.
        hi : int
            One past its last row.
        step : int, default 1
            Every ``step``-th of those rows only (1 or more): a sample of a share.

        Returns
        -------
        np.ndarray
            int64; with ``uneven="pad"``, positions past the end wrap to the first after
            ``start``.

        Raises
        ------
        ValueError
            For ``lo`` or ``hi`` outside this rank's share (``0 <= lo <= hi <= shard_size``).
        """
        size = self.shard_size(start)  # checks start
        lo = _checks.integer("lo", lo, low=0, high=size)
        hi = _checks.integer("hi", hi, low=lo, high=size)
        step = _checks.integer("step", step, low=1)
        return self._shard_positions(start, lo, hi, step)

    def _shard_positions(self, start: int, lo: int, hi: int, step: int = 1) -> np.ndarray:
        """:meth:`shard_positions` of arguments already checked (each batch of ``__iter__``)."""
        positions = start + np.arange(lo, hi, step, dtype=np.int64) * self.world_size + self.rank
        if self.uneven == "pad" and hi > lo and positions[-1] >= self.n:
            positions = start + (positions - start) % (self.n - start)
        return positions

    def shard_windows(self, epoch: int, start: int = 0) -> list[tuple[int, int]]:
        """This rank's rows of an epoch started at ``start`` by window: for each window the
        epoch has from ``start`` on, the ``(lo, hi)`` of its rows there, counted in its own
        share as :meth:`shard_positions` counts them; the last reaches to
        :meth:`shard_size` (the padding, when there is some, is read with it). An order
        other than :class:`Windows` is one window.

        Parameters
        ----------
        epoch : int
            The epoch whose windows these are.
        start : int, default 0
            The global position the epoch starts at.

        Returns
        -------
        list[tuple[int, int]]
            One range a window, in read order; a window where this rank has no row gives an
            empty one; none when the epoch has nothing left from ``start``.
        """
        epoch = _checks.integer("epoch", epoch, low=0)
        size = self.shard_size(start)  # checks start
        if self._windows is None:
            return [(0, size)] if start < self.n else []
        starts = self._windows.starts(epoch)
        first = start + self.rank  # this rank's first global position

        def index(place: int) -> int:  # this rank's rows before global position ``place``
            return min(max(-(-(place - first) // self.world_size), 0), size)

        ranges = [
            (index(max(int(lo), start)), index(int(hi)))
            for lo, hi in zip(starts, starts[1:])
            if hi > start
        ]
        if ranges:
            ranges[-1] = (ranges[-1][0], size)
        return ranges

    def shard_rows(self, epoch: int, start: int = 0) -> np.ndarray:
        """Everything this rank reads in ``epoch`` from global position ``start``, in order
        (uint32 or int64).

        Parameters
        ----------
        epoch : int
            The epoch whose order is read.
        start : int, default 0
            The global position the read starts at.

        Returns
        -------
        np.ndarray
            :meth:`shard_size` rows.
        """
        epoch = _checks.integer("epoch", epoch, low=0)
        size = self.shard_size(start)
        if self.order_kind != "fisher-yates" or not self.shuffle:
            return self.rows_at(epoch, self.shard_positions(start, 0, size))
        # Fisher-Yates: a strided slice of the epoch's order, then the padding.
        whole = self._fisher_yates(epoch)
        mine = whole[
            start + self.rank : min(start + size * self.world_size, self.n) : self.world_size
        ]
        if len(mine) < size:
            mine = np.concatenate(
                [mine, self.rows_at(epoch, self.shard_positions(start, len(mine), size))]
            )
        return np.ascontiguousarray(mine)

    def batch_count(self, rows: int) -> int:
        """The batches ``rows`` of this rank's rows make: the one cut of an epoch into batches,
        which every reader of the sampler's rows follows.

        Parameters
        ----------
        rows : int
            Rows to cut, 0 or more.

        Returns
        -------
        int
            ``rows / batch_size`` rounded up, or down with ``drop_last`` (a short last batch
            left out).
        """
        rows = _checks.integer("rows", rows, low=0)
        return rows // self.batch_size if self.drop_last else -(-rows // self.batch_size)

    def batched_rows(self, rows: int) -> int:
        """Of ``rows`` rows of this rank, how many its batches hold (:meth:`batch_count`
        batches of ``batch_size``, the last one maybe short).

        Parameters
        ----------
        rows : int
            Rows to cut, 0 or more.

        Returns
        -------
        int
            ``rows``, or with ``drop_last`` the rows of the full batches.
        """
        return min(rows, self.batch_count(rows) * self.batch_size)

    def __len__(self) -> int:
        """Batches in the next pass (shorter when resuming mid-epoch)."""
        return self.batch_count(self.shard_size(self._start))

    def resumed_positions(self, positions: np.ndarray, world_size: int) -> np.ndarray:
        """Where the rows at global ``positions`` of the state last loaded (at or past its
        position; saved on ``world_size`` ranks) are read in the pass that resumes it on this
        sampler's ranks: at the same positions, but in the :class:`Windows` order, whose
        windows from the state's position on are laid out anew for the ranks there are now.

        Parameters
        ----------
        positions : np.ndarray
            Global positions (int64), at or past the loaded state's position.
        world_size : int
            The ranks of the run that saved the state.

        Returns
        -------
        np.ndarray
            One position each, int64.

        Raises
        ------
        TypeError
            For ``positions`` that are not a 1-d array of integers, a ``world_size`` that is
            not an integer.
        ValueError
            For a ``world_size`` under 1, or (the windowed order, on another number of
            ranks) no state loaded since the last pass began.
        """
        positions = np.asarray(positions)
        if positions.dtype.kind not in "iu" or positions.ndim != 1:
            raise TypeError(
                f"positions of {positions.dtype} values, {positions.ndim}-d; "
                "resumed_positions takes a 1-d array of integer positions"
            )
        positions = positions.astype(np.int64, copy=False)
        world_size = _checks.integer("world_size", world_size, low=1)
        if self._windows is None:
            return positions
        return self._windows.moved(positions, world_size, self.world_size)

    # -- passes and resuming ----------------------------------------------------------------
    def begin_epoch(self) -> tuple[int, int]:
        """Start a pass, as ``iter(sampler)`` does, for a reader that reads the sampler's rows
        itself (the Loader): the pass after it reads the next epoch; :meth:`record` counts the
        batches read, which :meth:`state_dict` resumes after.

        Returns
        -------
        tuple[int, int]
            ``(epoch, position)``: the epoch this pass reads and the global position it
            starts at (0, or a loaded state's).
        """
        epoch, start = self.epoch, self._start
        self.epoch, self._start = epoch + 1, 0
        self._progress = [epoch, start, 0]
        if self._windows is not None:
            self._windows.begin(epoch, start, self.world_size)
        return epoch, start

    def record(self, batches: int = 1) -> None:
        """Count ``batches`` more batches of the pass :meth:`begin_epoch` started as handed
        out.

        Parameters
        ----------
        batches : int, default 1
            Batches handed out since the last count, 0 or more.

        Raises
        ------
        ValueError
            When no pass has begun (since the sampler was made, or since ``set_epoch`` or
            ``load_state_dict``), or for more batches than the pass has.
        """
        batches = _checks.integer("batches", batches, low=0)
        if self._progress is None:
            raise ValueError(
                "record() counts the batches of a pass: call begin_epoch() (or iterate the "
                "sampler) first"
            )
        epoch, start, handed = self._progress
        total = self.batch_count(self.shard_size(start))
        if handed + batches > total:
            raise ValueError(
                f"batches={batches}: {handed} of this pass's {total} batches were handed out "
                "already"
            )
        self._progress[2] = handed + batches

    def __iter__(self) -> Iterator[np.ndarray]:
        epoch, start = self.begin_epoch()
        size, step = self.shard_size(start), self.batch_size
        progress = self._progress
        assert progress is not None  # set by begin_epoch
        for k in range(self.batch_count(size)):
            lo, hi = k * step, min((k + 1) * step, size)
            batch = self._rows_at(epoch, self._shard_positions(start, lo, hi))
            progress[2] = k + 1
            yield batch

    def state_dict(self, batches: int | None = None) -> dict[str, Any]:
        """Where reading stands: ``{"epoch", "position", "seed", ...}``, enough to resume.

        ``position`` counts the rows of the epoch's global order read by all ranks together.

        Parameters
        ----------
        batches : int, optional
            The number of batches of the current pass the training loop has finished. By default
            the batches this sampler has handed out count as read; a DataLoader with worker
            processes draws batches ahead of the training loop, so pass it there.

        Returns
        -------
        dict[str, Any]
            ``epoch``, ``position``, ``seed``, and ``rows``, ``shuffle``, ``order``,
            ``clump_size``, ``world_size`` for :meth:`load_state_dict`'s checks. The
            :class:`Windows` order adds ``window_layout``: how the window the position is in
            was laid out for the ranks (``[first global position, ranks]`` pairs), so that a
            resume on another number of ranks knows which of its rows were read.

        Raises
        ------
        ValueError
            For ``batches`` beyond those handed out in this pass (or negative).
        """
        if self._progress is None:
            epoch, position = self.epoch, self._start
        else:
            epoch, start, handed = self._progress
            done = handed if batches is None else _checks.integer("batches", batches)
            if batches is not None and not 0 <= done <= handed:
                raise ValueError(
                    f"batches={batches}: only {handed} batches of this pass were handed out"
                )
            if done >= self.batch_count(self.shard_size(start)):
                epoch, position = epoch + 1, 0  # the pass is complete
            else:
                position = start + done * self.batch_size * self.world_size
        state: dict[str, Any] = {
            "epoch": epoch,
            "position": position,
            "seed": self.seed,
            "rows": self.n,
            "shuffle": self.shuffle,
            "order": self.order_kind,
            "clump_size": self.clump_size,
            "world_size": self.world_size,
        }
        if self._windows is not None:
            state["window_layout"] = self._windows.state(epoch, position, self.world_size)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state_dict()``: the next pass reads the rest of that epoch, in the
        same order, then the epochs after it. The number of ranks (and the batch size) may
        differ from the run that saved the state: the remaining positions are shared among
        the ranks there are now, none read twice, none left out (beyond ``uneven`` padding).
        With the :class:`Windows` order, the rows of the current window not yet read are laid
        out anew for the ranks there are now.

        Parameters
        ----------
        state : dict[str, Any]
            What :meth:`state_dict` returned; its seed replaces this sampler's.

        Raises
        ------
        ValueError
            For a state without the keys of one, or saved by a sampler with other rows,
            ``shuffle``, ``order`` or ``clump_size``, a position outside the epoch, or (the
            windowed order) a ``window_layout`` that does not fit the position.
        """
        if not isinstance(state, dict):
            raise TypeError(
                f"state={state!r} is {type(state).__name__}; give what state_dict() returned"
            )
        for key, mine in (
            ("rows", self.n),
            ("shuffle", self.shuffle),
            ("order", self.order_kind),
            ("clump_size", self.clump_size),
        ):
            if key not in state:
                raise ValueError(f"not a BatchSampler state: it has no '{key}'")
            if state[key] != mine:
                raise ValueError(
                    f"the state was saved by a sampler with {key}={state[key]!r}, this one has "
                    f"{key}={mine!r}: its positions would name other rows; build the sampler "
                    "as it was built then"
                )
        for key in ("position", "seed", "epoch"):
            if key not in state:
                raise ValueError(f"not a BatchSampler state: it has no '{key}'")
        position = _checks.integer("state['position']", state["position"])
        if not 0 <= position <= self.n:
            raise ValueError(f"position {position} is outside the epoch's {self.n} rows")
        seed = _checks.integer("state['seed']", state["seed"], low=0, high=2**64 - 1)
        epoch = _checks.integer("state['epoch']", state["epoch"], low=0)
        if self._windows is not None:
            windows = WindowedOrder(self._windows.spec, self.n, seed, self.shuffle)
            windows.resume(
                windows.saved_layouts(state, epoch, position, self.world_size), epoch, position
            )
            self._windows = windows
        self.seed = seed
        self.epoch, self._start, self._progress = epoch, position, None
        self._cached_order = None
