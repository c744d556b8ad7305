"""A StreamingDataset's checkpoint state: the progress of each split, the state dict made of
it, the checks a state passes before it is loaded, and the merge of every rank's states."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class StateConfig:
    """What a state must match to resume a dataset: the dealing of the rows and, packed, the
    packing (the dataset's arguments of these names; the packing ones count only when
    ``pack_sequences`` is set).

    Parameters
    ----------
    shuffle_seed : int
        The shuffle's seed.
    num_splits : int
        The number of splits.
    epoch : int
        The epoch.
    pack_sequences : int or None
        The tokens of a packed block; ``None``: not packed.
    eos_id : int or None
        The token after each row when packing.
    pad_id : int or None
        The token that fills a split's blocks once it runs dry.
    blocks_per_epoch : int or None
        The blocks an epoch gives when packing.
    pack_blocks : int or None
        The blocks of one packed sample (``None``: LanceDB's one-block samples).
    """

    shuffle_seed: int
    num_splits: int
    epoch: int
    pack_sequences: int | None = None
    eos_id: int | None = None
    pad_id: int | None = None
    blocks_per_epoch: int | None = None
    pack_blocks: int | None = None

    @property
    def packed(self) -> bool:
        return self.pack_sequences is not None

    def pack_budget(self) -> int | None:
        """The blocks a split gives in an epoch when packing."""
        blocks = self.blocks_per_epoch
        return blocks // self.num_splits if isinstance(blocks, int) else None


@dataclass(frozen=True)
class Partial:
    """A split's partial item, packed: its tokens (each row's, then EOS), where each row
    starts in them and, with ``pack_blocks``, each row's document number. Its arrays are
    never written to once made, so progress and packer share them.

    A state saves it as lists (:meth:`saved`, ``{"tokens", "starts"[, "documents"]}``).
    """

    tokens: np.ndarray  # int64
    starts: np.ndarray  # int64, ascending
    documents: np.ndarray | None = None  # int64, one per start; None: LanceDB's blocks

    @classmethod
    def empty(cls, numbered: bool) -> Partial:
        none = np.zeros(0, dtype=np.int64)
        return cls(none, none, none if numbered else None)

    @classmethod
    def of(cls, saved: Mapping[str, Any]) -> Partial:
        """The partial item a state saved (checked by :func:`checked_state`)."""
        documents = saved.get("documents")
        return cls(
            np.array(saved["tokens"], dtype=np.int64),
            np.array(saved["starts"], dtype=np.int64),
            None if documents is None else np.array(documents, dtype=np.int64),
        )

    def saved(self) -> dict[str, list[int]]:
        """The form a state saves."""
        out = {"tokens": self.tokens.tolist(), "starts": self.starts.tolist()}
        if self.documents is not None:
            out["documents"] = self.documents.tolist()
        return out


class Progress:
    """What a dataset has handed over, per split, and whether a checkpoint of it holds.

    Unpacked: ``samples`` (rows given) and ``positions`` (positions read through, ahead of
    the samples where rows were skipped) per split; splits without an entry are at
    ``offset``, the count every split had reached at the last complete cycle. Packed:
    ``pack_consumed`` (positions read), ``pack_emitted`` (blocks given) and ``pack_buffers``
    (the partial item, saved as lists only when a state is made) of each split.

    Parameters
    ----------
    config : StateConfig
        What the dataset's states must match.
    """

    def __init__(self, config: StateConfig) -> None:
        self.config = config
        self.offset = 0
        self.samples: dict[int, int] = {}
        self.positions: dict[int, int] = {}
        self.pack_consumed = [0] * config.num_splits
        self.pack_emitted = [0] * config.num_splits
        self.pack_buffers: dict[int, Partial] = {}
        self.invalid_reason: str | None = None
        self.requires_uniform = False  # a StreamingDataLoader committed at complete steps

    def resume_points(self, splits: list[int]) -> tuple[list[int], list[int]]:
        """Unpacked: the rows given and the position to read from, of each of ``splits``."""
        samples = [self.samples.get(s, self.offset) for s in splits]
        starts = [self.positions.get(s, c) for s, c in zip(splits, samples)]
        return samples, starts

    def uneven(self, state: dict, splits: list[int], samples_too: bool) -> bool:
        """Whether ``splits`` stand at different counts in ``state`` (a :meth:`snapshot`):
        of blocks (packed) or, with ``samples_too``, of rows."""
        config = self.config
        if config.packed and config.pack_blocks is None:  # LanceDB's blocks: always
            key: str | None = "blocks_emitted_per_split"
        elif samples_too:
            key = "blocks_emitted_per_split" if config.packed else "samples_consumed_per_split"
        else:
            key = None
        return key is not None and len({state[key][s] for s in splits}) > 1

    def state_dict(self, rank_splits: list[int]) -> dict:
        """The state, refused when a failed batch spoilt it or, where the rank's splits must
        stand together, they do not."""
        if self.invalid_reason is not None:
            raise RuntimeError(
                "StreamingDataset checkpointing is invalid because "
                f"{self.invalid_reason}. Load the last valid checkpoint into a "
                "fresh dataset before continuing"
            )
        state = self.snapshot()
        if self.uneven(state, rank_splits, self.requires_uniform):
            raise RuntimeError(
                "checkpointing is only safe at a complete logical step boundary, when every "
                "split assigned to this rank has the same count; consume more batches before "
                "calling state_dict()"
            )
        return state

    def snapshot(self) -> dict:
        """The state now, unchecked."""
        config = self.config
        state: dict[str, Any] = {
            "shuffle_seed": config.shuffle_seed,
            "num_splits": config.num_splits,
            "epoch": config.epoch,
        }
        if config.packed:
            state.update(
                pack_sequences=config.pack_sequences,
                eos_id=config.eos_id,
                pad_id=config.pad_id,
                blocks_per_epoch=config.blocks_per_epoch,
                samples_consumed_per_split=list(self.pack_consumed),
                blocks_emitted_per_split=list(self.pack_emitted),
                pack_buffers={s: b.saved() for s, b in self.pack_buffers.items()},
            )
            if config.pack_blocks is not None:
                state["pack_blocks"] = config.pack_blocks
            return state
        n = config.num_splits
        samples = [self.samples.get(s, self.offset) for s in range(n)]
        state["samples_consumed_per_split"] = samples
        # A split's position is never behind its count (an older state's positions may be,
        # for a split this process did not read).
        state["positions_consumed_per_split"] = [
            max(self.positions.get(s, samples[s]), samples[s]) for s in range(n)
        ]
        return state

    def invalidate(self, reason: str) -> None:
        if self.invalid_reason is None:
            self.invalid_reason = reason

    def commit(self, state: dict, *, require_uniform: bool) -> None:
        """Take in the progress of a worker batch that reached the training loop."""
        for key in ("shuffle_seed", "num_splits", "epoch"):
            if state.get(key) != getattr(self.config, key):
                raise ValueError(
                    f"{key} mismatch in worker checkpoint: {state.get(key)} != "
                    f"{getattr(self.config, key)}"
                )
        self.requires_uniform |= require_uniform
        if self.config.packed:
            buffers = state["pack_buffers"]
            for split in range(self.config.num_splits):
                theirs = (
                    state["blocks_emitted_per_split"][split],
                    state["samples_consumed_per_split"][split],
                )
                if theirs > (self.pack_emitted[split], self.pack_consumed[split]):
                    self.pack_emitted[split], self.pack_consumed[split] = theirs
                    buffer = buffers.get(split, buffers.get(str(split)))
                    if buffer is None:
                        self.pack_buffers.pop(split, None)
                    else:
                        self.pack_buffers[split] = Partial.of(buffer)
            return
        samples = state["samples_consumed_per_split"]
        positions = state.get("positions_consumed_per_split", samples)
        for split, count in enumerate(samples):
            mine = self.samples.get(split, self.offset)
            self.samples[split] = max(mine, int(count))
        for split, position in enumerate(positions):
            mine = self.positions.get(split, self.samples[split])
            self.positions[split] = max(mine, int(position))
        self.offset = min(self.samples.values())

    def load(self, state: dict, sizes: list[int]) -> None:
        """Resume from ``state`` (see :meth:`StreamingDataset.load_state_dict`); ``sizes``:
        the rows of each split."""
        config = self.config
        checked = checked_state(state, "state", sizes, config.pack_budget())
        for key in ("num_splits", "shuffle_seed"):
            if state[key] != getattr(config, key):
                raise ValueError(
                    f"{key} mismatch: checkpoint has {state[key]}, current dataset has "
                    f"{getattr(config, key)}"
                )
        if state["epoch"] != config.epoch:
            raise ValueError(
                f"the state was saved in epoch {state['epoch']} and this dataset reads epoch "
                f"{config.epoch} (another order of the rows): make the dataset with "
                f"epoch={state['epoch']} to finish that epoch, or start epoch {config.epoch} "
                "fresh, without load_state_dict"
            )
        if ("pack_buffers" in state) != config.packed:
            raise ValueError(
                "a packed state (with pack_buffers) resumes only a dataset with "
                "pack_sequences, and an unpacked one only a dataset without: "
                f"this dataset has pack_sequences={config.pack_sequences}"
            )
        self.requires_uniform = False
        if config.packed:
            for key in ("pack_sequences", "eos_id", "pad_id", "blocks_per_epoch", "pack_blocks"):
                if state.get(key) != getattr(config, key):
                    raise ValueError(
                        f"{key} mismatch: checkpoint has {state.get(key)}, current dataset "
                        f"has {getattr(config, key)}"
                    )
            self.pack_consumed = checked["samples_consumed_per_split"]
            self.pack_emitted = checked["blocks_emitted_per_split"]
            buffers = checked["pack_buffers"]
            for split, buffer in buffers.items():
                if config.pack_blocks is not None and "documents" not in buffer:
                    raise ValueError(
                        f"state['pack_buffers'][{split}] has {sorted(buffer)}, no 'documents': "
                        "a pack_blocks state numbers each document of its partial item; pass "
                        "the state that state_dict() or merge_state_dicts() returned"
                    )
            self.pack_buffers = {s: Partial.of(b) for s, b in buffers.items()}
            return
        samples = checked["samples_consumed_per_split"]
        if isinstance(samples, list):
            self.offset = min(samples)
            self.samples = dict(enumerate(samples))
        else:  # one count for every split
            self.offset, self.samples = samples, {}
        positions = checked.get("positions_consumed_per_split")  # absent in older states
        self.positions = {} if positions is None else dict(enumerate(positions))


def merge_state_dicts(states: list[dict]) -> dict:
    """Per split, the furthest progress of ``states`` (see
    :meth:`StreamingDataset.merge_state_dicts`)."""
    if not states:
        raise ValueError("merge_state_dicts requires at least one state dict")
    checked = [checked_state(state, f"states[{k}]") for k, state in enumerate(states)]
    first = states[0]
    packed = "pack_buffers" in first
    keys = ["shuffle_seed", "num_splits", "epoch"]
    if packed:
        keys += ["pack_sequences", "eos_id", "pad_id", "blocks_per_epoch", "pack_blocks"]
    for state in states[1:]:
        if ("pack_buffers" in state) != packed:
            raise ValueError("cannot merge packed and unpacked state dicts")
        for key in keys:
            if state.get(key) != first.get(key):
                raise ValueError(
                    f"{key} mismatch across state dicts: {state.get(key)} != {first.get(key)}"
                )
    merged = dict(first)
    n = first["num_splits"]
    if not packed:

        def per_split(value: Any) -> list[int]:
            return value if isinstance(value, list) else [value] * n

        samples = [per_split(c["samples_consumed_per_split"]) for c in checked]
        positions = [
            per_split(c.get("positions_consumed_per_split", c["samples_consumed_per_split"]))
            for c in checked
        ]
        # Per split the furthest count and the furthest position: the state with the
        # largest count has a position at least as large, so the merged position is never
        # behind the merged count.
        merged["samples_consumed_per_split"] = [max(c) for c in zip(*samples)]
        merged["positions_consumed_per_split"] = [max(p) for p in zip(*positions)]
        return merged
    consumed, emitted, buffers = [], [], {}
    for split in range(n):
        owner = max(
            checked,
            key=lambda c: (
                c["blocks_emitted_per_split"][split],
                c["samples_consumed_per_split"][split],
            ),
        )
        consumed.append(owner["samples_consumed_per_split"][split])
        emitted.append(owner["blocks_emitted_per_split"][split])
        if split in owner["pack_buffers"]:
            buffers[split] = owner["pack_buffers"][split]
    # LanceDB's blocks resume at a global step only; pack_blocks samples resume the splits
    # behind first.
    if len(set(emitted)) > 1 and first.get("pack_blocks") is None:
        raise ValueError(
            "packed state dicts were not captured at the same global step or do not "
            "cover every rank"
        )
    merged.update(
        samples_consumed_per_split=consumed,
        blocks_emitted_per_split=emitted,
        pack_buffers=buffers,
    )
    return merged


def _whole(value: Any, what: str, low: int | None, high: int | None, unit: str) -> int:
    """``value`` as an int, refused unless it is a whole number from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(
            f"{what} must be a whole number, got {value!r} ({type(value).__name__}); pass the "
            "state that state_dict() or merge_state_dicts() returned"
        )
    number = int(value)
    if (low is not None and number < low) or (high is not None and number > high):
        bounds = f"at least {low}" if high is None else f"from {low} to {high}"
        raise ValueError(
            f"{what} is {number}, but it counts {unit}: {bounds}. The state is not of this "
            "dataset (another table, filter or num_splits) or was edited; pass the state that "
            "state_dict() or merge_state_dicts() returned"
        )
    return number


def checked_state(
    state: Any, name: str, sizes: list[int] | None = None, budget: int | None = None
) -> dict:
    """``state`` (called ``name`` in errors) with its counts checked and made ints.

    Every split has one count of each kind; each is a whole number from 0 up to the split's
    rows (``sizes``, where known), a split's position is never behind its sample count, and
    packed, its blocks are at most ``budget`` and its partial block is lists of whole numbers.
    """
    if not isinstance(state, Mapping):
        raise TypeError(
            f"{name} must be the dict that state_dict() or merge_state_dicts() returned, not "
            f"{type(state).__name__}"
        )
    packed = "pack_buffers" in state
    needed = ["shuffle_seed", "num_splits", "epoch", "samples_consumed_per_split"]
    if packed:
        needed.append("blocks_emitted_per_split")
    for key in needed:
        if key not in state:
            raise ValueError(
                f"{name} has no '{key}' (it has {sorted(map(str, state))}); pass the state "
                "that state_dict() or merge_state_dicts() returned"
            )
    n = _whole(state["num_splits"], f"{name}['num_splits']", 1, None, "splits")
    _whole(state["epoch"], f"{name}['epoch']", None, None, "epochs")

    def size(split: int) -> int | None:
        return None if sizes is None or len(sizes) != n else sizes[split]

    def per_split(key: str, high: Callable[[int], int | None], unit: str) -> list[int]:
        values = state[key]
        if not isinstance(values, (list, tuple)) or len(values) != n:
            got = f"{len(values)} entries" if isinstance(values, (list, tuple)) else repr(values)
            raise ValueError(
                f"{name}['{key}'] must hold one count per split, {n} (num_splits), got {got}; "
                "pass the state that state_dict() or merge_state_dicts() returned"
            )
        return [
            _whole(v, f"{name}['{key}'][{s}] (split {s})", 0, high(s), unit)
            for s, v in enumerate(values)
        ]

    out = dict(state)
    if packed:
        out["samples_consumed_per_split"] = per_split(
            "samples_consumed_per_split", size, "the rows of the split read"
        )
        out["blocks_emitted_per_split"] = per_split(
            "blocks_emitted_per_split", lambda s: budget, "the blocks the split gave"
        )
        out["pack_buffers"] = _checked_buffers(state["pack_buffers"], name, n)
        return out
    samples = state["samples_consumed_per_split"]
    if isinstance(samples, (list, tuple)):
        out["samples_consumed_per_split"] = per_split(
            "samples_consumed_per_split", size, "the rows the split gave"
        )
    else:  # an older state: one count for every split
        smallest = None if sizes is None else min(sizes, default=0)
        out["samples_consumed_per_split"] = _whole(
            samples, f"{name}['samples_consumed_per_split']", 0, smallest, "the rows a split gave"
        )
    if state.get("positions_consumed_per_split") is None:
        out.pop("positions_consumed_per_split", None)
        return out
    positions = per_split(
        "positions_consumed_per_split", size, "the rows of the split read through"
    )
    counts = out["samples_consumed_per_split"]
    for split, position in enumerate(positions):
        count = counts[split] if isinstance(counts, list) else counts
        if position < count:
            raise ValueError(
                f"{name} is inconsistent for split {split}: positions_consumed_per_split is "
                f"{position}, behind samples_consumed_per_split {count} (a split's position "
                "counts every row it gave, and the rows it skipped); resuming from it would "
                "read rows twice. Pass the state that state_dict() or merge_state_dicts() "
                "returned"
            )
    out["positions_consumed_per_split"] = positions
    return out


def _checked_buffers(buffers: Any, name: str, n: int) -> dict[int, dict[str, list[int]]]:
    """A packed state's partial blocks, keyed by split number, as fresh lists of ints."""
    where = f"{name}['pack_buffers']"
    if not isinstance(buffers, Mapping):
        raise ValueError(
            f"{where} must be a dict of split -> partial block, not {type(buffers).__name__}"
        )
    out: dict[int, dict[str, list[int]]] = {}
    for key, buffer in buffers.items():
        try:
            split = int(key)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where} has the key {key!r}, which is not a split number") from err
        if not 0 <= split < n or isinstance(key, bool):
            raise ValueError(f"{where} has the key {key!r}, not a split from 0 to {n - 1}")
        if not isinstance(buffer, Mapping) or not {"tokens", "starts"} <= set(buffer):
            raise ValueError(
                f"{where}[{key!r}] must be a dict with 'tokens' and 'starts', got {buffer!r}"
            )
        lists = {}
        for part in ("tokens", "starts"):
            values = buffer[part]
            if not _int64s(values):
                raise ValueError(
                    f"{where}[{key!r}]['{part}'] (split {split}) must be a list of whole numbers "
                    "(int64)"
                )
            lists[part] = [int(v) for v in values]
        if any(not 0 <= start < len(lists["tokens"]) for start in lists["starts"]):
            raise ValueError(
                f"{where}[{key!r}] (split {split}) has document starts {lists['starts']} "
                f"outside its {len(lists['tokens'])} tokens"
            )
        if "documents" in buffer:  # pack_blocks: the number of each document started
            documents = buffer["documents"]
            if not _int64s(documents):
                raise ValueError(
                    f"{where}[{key!r}]['documents'] (split {split}) must be a list of whole "
                    "numbers (int64)"
                )
            starts = lists["starts"]
            if len(documents) != len(starts) or (lists["tokens"] and starts[:1] != [0]):
                raise ValueError(
                    f"{where}[{key!r}] (split {split}) must number each document it starts "
                    f"({len(starts)} starts, {len(documents)} documents), the first at 0; "
                    "pass the state that state_dict() or merge_state_dicts() returned"
                )
            lists["documents"] = [int(v) for v in documents]
        out[split] = lists
    return out


def _int64s(values: Any) -> bool:
    """Whether ``values`` is a list (or tuple) of whole numbers that int64 holds."""
    return isinstance(values, (list, tuple)) and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and -(2**63) <= int(v) < 2**63
        for v in values
    )
