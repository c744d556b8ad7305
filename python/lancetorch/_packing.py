"""The Loader's fixed-shape packing: ``Tokens(pack=True, blocks=B)`` batches of exactly
``(B, max_length)`` tokens, whatever the row batches hold.

The carry lives here, in the Loader's pass, and only here: the row batches read but not yet
wholly handed out (their Arrow columns, shared, not copied) and the tokens of the first of
them already handed out, both held in Rust (``_native.TokenPacker``), which copies each
packed batch straight from those Arrow buffers. The carry is never saved: a rank's state names
the row batch the carry starts at and, by global position, the tokens of its rows beyond it
already handed out (``pack_done``: whole rows and at most one partial row of that batch, and
any a resume left); a resumed pass reads from that row batch again, leaving those tokens out.
:func:`merge_states` makes one state of every rank's, which any number of ranks resumes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from . import _checks, _native
from .decode import Tokens, _torch


class ArrowColumn:
    """A spec that hands a column on as a one-column Arrow batch (the side threads' part of
    fixed-shape packing: the take; the packing itself runs in order, as batches are handed
    out, since each starts where the one before stopped)."""

    rows = "each"

    def outputs(self, column: str) -> list[str]:
        """``[column]``.

        Parameters
        ----------
        column : str
            The column.

        Returns
        -------
        list[str]
        """
        return [column]

    def decode(self, batch: pa.RecordBatch, column: str, epoch: int = 0) -> dict[str, Any]:
        """``{column: the column as a one-column batch}``.

        Parameters
        ----------
        batch : pa.RecordBatch
            The batch.
        column : str
            The column.
        epoch : int, default 0
            Not used.

        Returns
        -------
        dict[str, pa.RecordBatch]
        """
        return {column: batch.select([column])}


#: ``pack_done``'s count for a row handed out whole.
WHOLE = -1


@dataclass(frozen=True)
class Shard:
    """One rank's rows of a pass: its row ``i`` at global position ``start + i * world +
    rank`` of an epoch of ``n`` positions (past ``n``: the padding), the first ``rows`` of
    them cut into row batches of ``batch_size``."""

    start: int
    rank: int
    world: int
    n: int
    rows: int
    batch_size: int


class Packer:
    """Packs one rank's pass, its row batches fed in order, into batches of exactly
    ``spec.blocks * spec.max_length`` tokens, carrying what does not fit into the next.

    The carry is Rust's (``_native.TokenPacker``): it holds the pending row batches' Arrow
    columns, each imported and its rows found once, and copies each packed batch from them.

    Parameters
    ----------
    column : str
        The token column.
    spec : Tokens
        A ``Tokens(pack=True, blocks=B)`` spec.
    shard : Shard
        The rows of the pass.
    done : dict[int, int], optional
        ``{global position: tokens}`` of this rank's rows handed out before the pass (a
        resumed one; :data:`WHOLE`: all of them), left out.
    skip : int, default 0
        Tokens of the first row batch fed already handed out (a state of a lancetorch that
        saved ``pack_skip``).
    """

    def __init__(
        self,
        column: str,
        spec: Tokens,
        shard: Shard,
        done: dict[int, int] | None = None,
        skip: int = 0,
    ) -> None:
        assert spec.blocks is not None and spec.max_length is not None
        self.column, self.names = column, spec.outputs(column)
        self._carry = _native.TokenPacker(column, spec, skip)
        self._skip = skip
        self._from_dlpack = _torch().from_dlpack
        self._shard, self._fed = shard, 0
        # The rows handed out before, as rows of this rank's share, in order.
        done = done or {}
        positions = np.fromiter(done, dtype=np.int64, count=len(done))
        order = np.argsort(positions)
        self._done_rows = (positions[order] - shard.start - shard.rank) // shard.world
        self._done_tokens = np.fromiter(done.values(), dtype=np.int64, count=len(done))[order]

    def _batch(self, capsules: tuple[object, ...]) -> dict[str, Any]:
        return dict(zip(self.names, map(self._from_dlpack, capsules)))

    def _done(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Of this rank's rows ``lo..hi``, those handed out before the pass, and their
        tokens."""
        a, b = np.searchsorted(self._done_rows, [lo, hi])
        return self._done_rows[a:b], self._done_tokens[a:b]

    def feed(self, batch: pa.RecordBatch) -> Iterator[dict[str, Any]]:
        """Take the next row batch; yield the packed batches that are now full.

        Parameters
        ----------
        batch : pa.RecordBatch
            The token column of the next row batch, as a one-column batch.

        Yields
        ------
        dict[str, torch.Tensor]
            Each of the spec's outputs.
        """
        carry = self._carry
        lo = self._fed * self._shard.batch_size
        self._fed += 1
        if len(self._done_rows):
            rows, tokens = self._done(lo, lo + batch.num_rows)
            handed = [
                (r - lo, sys.maxsize if t == WHOLE else t)
                for r, t in zip(rows.tolist(), tokens.tolist())
            ]
            carry.push(batch, 0, handed)
        else:
            carry.push(batch, 0)
        while carry.full():  # one at a time: the state follows each batch handed out
            yield self._batch(carry.take())

    def finish(self) -> Iterator[dict[str, Any]]:
        """The pass is over: yield what is left, the last batch padded.

        Yields
        ------
        dict[str, torch.Tensor]
            Each of the spec's outputs.
        """
        carry = self._carry
        while carry.available() > 0:
            yield self._batch(carry.take())

    def state(self) -> tuple[int, list[list[int]], int]:
        """``(row batches of the pass before the carry, pack_done, pack_skip)``: where a
        resumed pass starts, ``[position, tokens]`` of each row past it already handed out
        (in the epoch: the padding's are left out), and, until a row batch is fed, the
        ``pack_skip`` of an earlier lancetorch's state this pass was resumed from (0 if
        none)."""
        first, _ = self._carry.state()
        shard = self._shard
        lo = first * shard.batch_size
        if lo >= shard.rows:  # the pass is over
            return first, [], 0
        if self._fed * shard.batch_size >= shard.rows and not self._carry.available():
            # Every row fed and every token handed out: over too, though row batches with
            # no tokens left (empty rows, rows handed out before a resume) stay in the carry
            # until a take that never comes.
            return self._fed, [], 0
        if not self._fed and self._skip:
            return 0, [], self._skip
        whole, part = self._carry.progress()
        rows, tokens = self._done(lo, sys.maxsize)
        done = dict(zip(rows.tolist(), tokens.tolist()))
        for row in range(lo, lo + whole):
            done[row] = WHOLE
        if part:
            done[lo + whole] = done.get(lo + whole, 0) + part
        pairs = []
        for row in sorted(done):
            position = shard.start + row * shard.world + shard.rank
            if position < shard.n:
                pairs.append([position, done[row]])
        return first, pairs, 0


# A packing state's keys beside the sampler's: this rank (None: merged, for every rank), the
# tokens handed out past its position, and (saved by an earlier lancetorch) the tokens of the
# carry's row batch handed out.
STATE_KEYS = ("rank", "pack_done", "pack_skip")
# What every rank's state of one run shares.
_SAME = ("rows", "shuffle", "order", "clump_size", "seed", "world_size")


def done_of(state: dict[str, Any], name: str = "state") -> dict[int, int]:
    """``state['pack_done']`` checked (``name`` in errors): ``{position: tokens}``, each
    position from the state's position into its rows, each count :data:`WHOLE` or 0 or more."""
    for key in ("position", "rows"):
        if key not in state:
            raise ValueError(f"{name} is not a Loader state: it has no '{key}'")
    position = _checks.integer(f"{name}['position']", state["position"], low=0)
    rows = _checks.integer(f"{name}['rows']", state["rows"], low=0)
    pairs = state["pack_done"]
    if not isinstance(pairs, (list, tuple)):
        raise TypeError(
            f"{name}['pack_done'] is {type(pairs).__name__}; it holds [position, tokens] "
            "pairs: give what state_dict() returned"
        )
    done: dict[int, int] = {}
    for i, pair in enumerate(pairs):
        entry = f"{name}['pack_done'][{i}]"
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(
                f"{entry}={pair!r} is not a [position, tokens] pair: give what state_dict() "
                "returned"
            )
        at = _checks.integer(f"{entry}[0]", pair[0], low=position, high=rows - 1)
        if at in done:
            raise ValueError(f"{name}['pack_done'] names position {at} twice")
        done[at] = _checks.integer(f"{entry}[1]", pair[1], low=WHOLE, high=2**63 - 1)
    return done


def check_own(done: dict[int, int], position: int, rank: int, world: int, name: str) -> None:
    """Refuse a rank's ``pack_done`` naming a position that rank does not read from
    ``position`` on."""
    stray = [q for q in done if (q - position - rank) % world]
    if stray:
        raise ValueError(
            f"{name}['pack_done'] names position {stray[0]}, which rank {rank} of {world} "
            f"does not read from position {position}: give what state_dict() returned"
        )


def merge_states(states: Any) -> dict[str, Any]:
    """One state of every rank's (see :meth:`lancetorch.loader.Loader.merge_state_dicts`)."""
    if not isinstance(states, (list, tuple)):
        raise TypeError(
            f"states is {type(states).__name__}; give a list of every rank's state_dict() "
            "(as torch.distributed.all_gather_object gathers them)"
        )
    if not states:
        raise ValueError("merge_state_dicts needs the state of every rank; it got none")
    for i, state in enumerate(states):
        if not isinstance(state, dict):
            raise TypeError(
                f"states[{i}] is {type(state).__name__}; give what state_dict() returned on "
                "each rank"
            )
    packed = ["pack_done" in state for state in states]
    old = [i for i, state in enumerate(states) if "pack_skip" in state]
    if old:
        raise ValueError(
            f"states[{old[0]}] has pack_skip (saved by an earlier lancetorch): the tokens of "
            "its carry's row batch handed out, not which rows they were, so it cannot be "
            "merged; resume on as many ranks as saved it, each rank loading its own state"
        )
    if not any(packed):  # without fixed packing every rank saves the same state
        for i, state in enumerate(states[1:], 1):
            if state != states[0]:
                key = next(
                    k
                    for k in sorted(set(states[0]) | set(state))
                    if states[0].get(k) != state.get(k)
                )
                raise ValueError(
                    f"states[0] and states[{i}] differ in '{key}' ({states[0].get(key)!r} and "
                    f"{state.get(key)!r}): a Loader without fixed packing saves the same state "
                    "on every rank, so these are not of one run at one step"
                )
        return dict(states[0])
    if not all(packed):
        raise ValueError(
            f"states[{packed.index(True)}] packs tokens into fixed blocks (it has "
            f"'pack_done'), states[{packed.index(False)}] does not: merge the states of one "
            "run, every rank's"
        )
    for i, state in enumerate(states):
        for key in (*_SAME, "epoch", "position", "rank"):
            if key not in state:
                raise ValueError(
                    f"states[{i}] is not a Loader state: it has no '{key}'; give what "
                    "state_dict() returned"
                )
        for key in _SAME:
            if state[key] != states[0][key]:
                raise ValueError(
                    f"states[0] and states[{i}] disagree on '{key}' ({states[0][key]!r} and "
                    f"{state[key]!r}): they come from different runs, or from Loaders built "
                    "otherwise; merge the states of one run, every rank's"
                )
    world = _checks.integer("states[0]['world_size']", states[0]["world_size"], low=1)
    owner: dict[int, int] = {}
    for i, state in enumerate(states):
        if state["rank"] is None:
            raise ValueError(
                f"states[{i}] is merged already (its rank is None): merge the states the "
                "ranks saved, each its own"
            )
        rank = _checks.integer(f"states[{i}]['rank']", state["rank"], low=0, high=world - 1)
        if rank in owner:
            raise ValueError(
                f"states[{owner[rank]}] and states[{i}] are both rank {rank}'s: give each "
                "rank's state once"
            )
        owner[rank] = i
    missing = sorted(set(range(world)) - set(owner))
    if missing:
        raise ValueError(
            f"the states of rank(s) {missing} of the {world} are missing: give every rank's "
            "state (torch.distributed.all_gather_object gathers them); each rank's carry "
            "handed out tokens no other rank knows of"
        )
    epochs = [
        _checks.integer(f"states[{i}]['epoch']", s["epoch"], low=0) for i, s in enumerate(states)
    ]
    dones = [done_of(s, f"states[{i}]") for i, s in enumerate(states)]
    positions = [s["position"] for s in states]  # checked by done_of
    epoch = min(epochs)
    # A rank whose pass is over names the next epoch, from its start, with nothing done.
    over = [e == epoch + 1 and p == 0 and not d for e, p, d in zip(epochs, positions, dones)]
    going = [i for i, e in enumerate(epochs) if e == epoch]
    base = min(going, key=lambda i: positions[i])
    start = positions[base]
    for i, (e, p) in enumerate(zip(epochs, positions)):
        if e != epoch and not over[i]:
            raise ValueError(
                f"states[{i}] is at epoch {e}, position {p}, states[{base}] at epoch {epoch}: "
                "a rank is an epoch on only when its pass is over (position 0, nothing "
                "handed out); merge the states the ranks saved at one step"
            )
        if not over[i] and (p - start) % world:
            raise ValueError(
                f"states[{i}] is at position {p}, states[{base}] at {start}: the ranks of one "
                f"pass stand a multiple of world_size={world} apart; merge the states the "
                "ranks saved at one step"
            )
    rows = states[0]["rows"]
    done: dict[int, int] = {}
    for i, state in enumerate(states):
        rank = state["rank"]
        check_own(dones[i], positions[i], rank, world, f"states[{i}]")
        # The rank handed out its rows before its own position whole: all, when over.
        end = rows if over[i] else min(positions[i] + rank, rows)
        done.update(dict.fromkeys(range(start + rank, end, world), WHOLE))
        done.update(dones[i])
    merged = {k: v for k, v in states[base].items() if k not in STATE_KEYS}
    merged.update(rank=None, pack_done=[[q, done[q]] for q in sorted(done)])
    return merged
