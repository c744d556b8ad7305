"""The windowed order of :class:`lancetorch.sampler.BatchSampler`: an epoch for a table too
large for memory, read ``window_rows`` rows at a time.

The rows are cut into clumps of ``clump_size`` neighbours; the clumps are shuffled from
``(seed, epoch)`` and taken ``window_rows // clump_size`` at a time into windows, one after
another in the epoch's global order. A window's rows, in storage order, are laid out for the
``W`` ranks reading it: cut into ``W`` contiguous stretches, stretch ``j`` (shuffled on its own)
at the window's positions ``j, j + W, ...``, which rank ``j`` reads. So a rank reads one stretch
of the table a window, and with one rank a window is its rows shuffled whole.

A run resumed on another number of ranks lays out anew only the rows of the current window not
yet read: the window's *layouts* are ``(first global position, ranks)`` pairs, the first at
the window's start; the sampler's state records them as ``window_layout``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _checks, _native

_SEED_MASK = (1 << 64) - 1
# Between the seeds of two ranks' stretches of one window (an odd constant, 2**64 / golden ratio).
_SLOT_STEP = 0x9E3779B97F4A7C15

Layouts = list[tuple[int, int]]


def _window(starts: np.ndarray, position: int) -> int:
    """The window holding global position ``position``, given where the windows start."""
    return int(np.searchsorted(starts, position, side="right")) - 1


def _from(saved: Layouts, position: int, world: int) -> Layouts:
    """The layouts of the window a pass from ``position`` on ``world`` ranks reads: those of
    ``saved`` before ``position``, then one for ``world`` ranks where the number changed."""
    layouts = [(q, w) for q, w in saved if q < position]
    if not layouts or layouts[-1][1] != world:
        layouts.append((position, world))
    return layouts


@dataclass(frozen=True)
class Windows:
    """The windowed order, an ``order`` of :class:`lancetorch.sampler.BatchSampler`: clumps of
    ``clump_size`` neighbouring rows in shuffled order, ``window_rows`` rows at a time, rows
    shuffled within each window (for each rank, within its stretch of it). What the Loader
    reads a disk table that does not fit its cache in.

    Parameters
    ----------
    clump_size : int, default 16384
        Neighbouring rows that stay together, 1 or more.
    window_rows : int, default 262144
        Rows a window, 1 or more (rounded down to whole clumps, one clump at least).

    Raises
    ------
    TypeError
        For a size that is not an integer.
    ValueError
        For a size under 1.

    Examples
    --------
    >>> from lancetorch.sampler import BatchSampler, Windows
    >>> s = BatchSampler(10, 5, seed=0, world_size=1, order=Windows(clump_size=2, window_rows=4))
    >>> sorted(s.order(0).tolist())
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    """

    clump_size: int = 16384
    window_rows: int = 1 << 18

    def __post_init__(self) -> None:
        clump = _checks.integer("clump_size", self.clump_size)
        window = _checks.integer("window_rows", self.window_rows)
        if clump < 1 or window < 1:
            raise ValueError(f"clump_size={clump} and window_rows={window} must be 1 or more")
        object.__setattr__(self, "clump_size", clump)
        object.__setattr__(self, "window_rows", window)

    def __str__(self) -> str:
        return f"windows(clump_size={self.clump_size}, window_rows={self.window_rows})"


class WindowedOrder:
    """The windowed order of ``n`` positions from ``seed`` (made again when the seed changes),
    with the layouts of the window a pass starts in (see the module)."""

    def __init__(self, spec: Windows, n: int, seed: int, shuffle: bool) -> None:
        self.spec, self.n, self.seed, self.shuffle = spec, n, seed, shuffle
        # The windows of the last epoch asked for, and the last window's order (both read
        # from a background thread too: each is replaced whole, never changed in place).
        self._windows: tuple[int, list[np.ndarray], np.ndarray] | None = None
        self._order: tuple[int, int, tuple, np.ndarray] | None = None
        # The layouts of the window a pass started in, (epoch, window, layouts), and those of
        # a loaded state, (epoch, position, layouts), until a pass starts from them.
        self._pass: tuple[int, int, Layouts] | None = None
        self._resume: tuple[int, int, Layouts] | None = None

    def forget(self) -> None:
        """Drop the kept windows and window order (made again if asked for)."""
        self._windows = self._order = None

    def windows(self, epoch: int) -> tuple[list[np.ndarray], np.ndarray]:
        """The windows of ``epoch``: each one's clumps, and the global position each starts at
        (the last entry is the number of rows)."""
        kept = self._windows
        if kept is not None and kept[0] == epoch:
            return kept[1], kept[2]
        n, clump = self.n, self.spec.clump_size
        clumps = -(-n // clump)
        if self.shuffle:
            clump_order = _native.epoch_order(clumps, self.seed, epoch).to_numpy()
        else:
            clump_order = np.arange(clumps)
        per_window = max(1, self.spec.window_rows // clump)
        groups = [np.sort(clump_order[i : i + per_window]) for i in range(0, clumps, per_window)]
        sizes = [int(np.minimum((g + 1) * clump, n).sum() - (g * clump).sum()) for g in groups]
        starts = np.cumsum([0] + sizes)
        self._windows = (epoch, groups, starts)
        return groups, starts

    def starts(self, epoch: int) -> np.ndarray:
        """The global position each window of ``epoch`` starts at, and ``n``."""
        return self.windows(epoch)[1]

    def _laid_out(self, epoch: int, k: int, positions: np.ndarray, world: int) -> np.ndarray:
        """``positions`` (sorted: in storage order) laid out for ``world`` ranks from a
        window's first global position on: slot ``j`` (the positions ``j, j + world, ...``
        after it, which one rank reads) takes the ``j``-th contiguous run of them, shuffled
        from ``(seed, epoch, window, slot)``."""
        if len(positions) <= 1 or (world == 1 and not self.shuffle):
            return positions
        if world == 1:
            seed = (self.seed + 1 + k) & _SEED_MASK
            return positions[_native.epoch_order(len(positions), seed, epoch).to_numpy()]
        out = np.empty(len(positions), dtype=np.int64)
        begin = 0
        for j in range(min(world, len(positions))):
            count = len(range(j, len(positions), world))
            part = positions[begin : begin + count]
            begin += count
            if self.shuffle:
                seed = (self.seed + 1 + k + j * _SLOT_STEP) & _SEED_MASK
                part = part[_native.epoch_order(count, seed, epoch).to_numpy()]
            out[j::world] = part
        return out

    def window_order(self, epoch: int, k: int, layouts: Layouts) -> np.ndarray:
        """The positions of window ``k`` in global order: each layout's part (from its first
        global position to the next layout's) laid out for its ranks, over the rows the
        layouts before it had not reached."""
        key = tuple(layouts)
        kept = self._order
        if kept is not None and kept[:3] == (epoch, k, key):
            return kept[3]
        groups, _ = self.windows(epoch)
        n, clump = self.n, self.spec.clump_size
        positions = np.concatenate(
            [np.arange(c * clump, min((c + 1) * clump, n), dtype=np.int64) for c in groups[k]]
        )
        parts = []
        for i, (q, world) in enumerate(layouts):
            order = self._laid_out(epoch, k, positions, world)
            if i + 1 == len(layouts):
                parts.append(order)
                break
            read = order[: layouts[i + 1][0] - q]
            parts.append(read)
            positions = np.setdiff1d(positions, read, assume_unique=True)
        whole = np.concatenate(parts) if len(parts) > 1 else parts[0]
        self._order = (epoch, k, key, whole)
        return whole

    def layouts_of(self, epoch: int, k: int, world: int) -> Layouts:
        """Window ``k``'s layouts: the pass's where it started in that window, else the one
        for ``world`` ranks."""
        if self._pass is not None and self._pass[:2] == (epoch, k):
            return self._pass[2]
        return [(int(self.starts(epoch)[k]), world)]

    def rows_at(self, epoch: int, places: np.ndarray, world: int) -> np.ndarray:
        """The positions at global positions ``places`` of the windowed order."""
        out = np.empty(len(places), dtype=np.int64)
        _, starts = self.windows(epoch)
        windows = np.searchsorted(starts, places, side="right") - 1
        for k in np.unique(windows):
            here = windows == k
            order = self.window_order(epoch, int(k), self.layouts_of(epoch, int(k), world))
            out[here] = order[places[here] - starts[k]]
        return out

    # -- passes and their state -------------------------------------------------------------
    def begin(self, epoch: int, position: int, world: int) -> None:
        """A pass from ``position`` starts: its window's layouts are those of the run it
        resumes (a loaded state's) while they cover the rows read, and one for ``world``
        ranks from ``position`` on where the number of ranks changed."""
        starts = self.starts(epoch)
        if position < starts[-1]:
            k = _window(starts, position)
            saved = [(int(starts[k]), world)]
            if self._resume is not None and self._resume[:2] == (epoch, position):
                saved = self._resume[2]
            self._pass = (epoch, k, _from(saved, position, world))
        self._resume = None

    def moved(self, places: np.ndarray, saved: int, world: int) -> np.ndarray:
        """Where the rows at global ``places`` (at or past the position of the state last
        loaded) of a run on ``saved`` ranks are in the pass that resumes it on ``world``:
        the window of the position and the windows after it laid out for each run's ranks
        (``begin``'s layouts), the rows of each window staying in it."""
        if saved == world or not len(places):
            return places
        if self._resume is None:
            raise ValueError(
                "resumed_positions() places the rows of the state load_state_dict() loaded, "
                "before its pass begins: load the state first"
            )
        epoch, position, loaded = self._resume
        starts = self.starts(epoch)
        k = _window(starts, position)
        windows = np.searchsorted(starts, places, side="right") - 1
        out = np.empty(len(places), dtype=np.int64)
        for j in np.unique(windows).tolist():
            first, base = (position, loaded) if j == k else (int(starts[j]), [])
            before = self.window_order(epoch, j, _from(base, first, saved))
            after = self.window_order(epoch, j, _from(base, first, world))
            rows = before[places[windows == j] - starts[j]]
            by_row = np.argsort(after)
            out[windows == j] = starts[j] + by_row[np.searchsorted(after[by_row], rows)]
        return out

    def state(self, epoch: int, position: int, world: int) -> list[list[int]]:
        """``window_layout`` of a state at ``position``: how its window was laid out, up to
        that position."""
        starts = self.starts(epoch)
        k = _window(starts, position)
        layouts = [(int(starts[k]), world)]
        if self._resume is not None and self._resume[:2] == (epoch, position):
            layouts = self._resume[2]
        elif self._pass is not None and self._pass[:2] == (epoch, k):
            layouts = self._pass[2]
        return [[q, w] for q, w in layouts if q <= position]

    def saved_layouts(
        self, state: dict[str, Any], epoch: int, position: int, world: int
    ) -> Layouts:
        """A state's ``window_layout``, checked against the windows of its position (a state
        at the epoch's end resumes on ``world`` ranks)."""
        starts = self.starts(epoch)
        if position >= starts[-1]:  # nothing of the epoch left to read
            return [(position, world)]
        k = _window(starts, position)
        s = int(starts[k])
        saved = state.get("window_layout")
        if saved is None:
            world = state.get("world_size", 1)
            if position > s and world != 1:
                raise ValueError(
                    f"the state was saved at position {position}, inside a window, on "
                    f"{world} ranks, and has no 'window_layout': the lancetorch that saved it "
                    "laid windows out for several ranks otherwise, so the rows read cannot be "
                    "known; resume from the start of the epoch (position 0)"
                )
            return [(s, world if isinstance(world, int) else 1)]
        try:
            layouts = [(int(q), int(w)) for q, w in saved]
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"state['window_layout']={saved!r} is not a list of [position, ranks] pairs; "
                "give what state_dict() returned"
            ) from err
        qs = [q for q, _ in layouts]
        if (
            not layouts
            or qs[0] != s
            or any(b <= a for a, b in zip(qs, qs[1:]))
            or qs[-1] > position
            or any(w < 1 for _, w in layouts)
        ):
            raise ValueError(
                f"state['window_layout']={saved!r} does not fit position {position} of epoch "
                f"{epoch}, in the window of positions {s} to {int(starts[k + 1])}: give what "
                "state_dict() returned, with the same clump_size and window_rows"
            )
        return layouts

    def resume(self, layouts: Layouts, epoch: int, position: int) -> None:
        """The next pass from ``(epoch, position)`` continues a run laid out as ``layouts``."""
        self._resume = (epoch, position, layouts)
