"""The checks of a StreamingDataset's arguments: their types first (a wrong one is refused,
never converted), then their values and how they fit together."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _checks
from .packing import check_packing

DEFAULT_READ_BATCH_SIZE = 64
DEFAULT_PREFETCH_BATCHES = 4
ERROR_MODES = ("raise", "skip", "warn")


def check_types(
    *,
    shuffle: Any,
    shuffle_seed: Any,
    epoch: Any,
    rank: Any,
    io_queue_depth: Any,
    counts: dict[str, Any],
    shuffle_clump_size: Any,
    columns: Any,
    filter: Any,
    functions: dict[str, Any],
    on_transform_error: Any,
    worker_info_override: Any,
) -> list[str] | None:
    """Refuse an argument of the wrong type (a TypeError naming it); ``counts``: the optional
    integers by name, ``functions``: the optional callables by name. Returns ``columns`` as
    a list of names."""
    _checks.flag("shuffle", shuffle)
    _checks.optional_integer("shuffle_seed", shuffle_seed)
    _checks.integer("epoch", epoch, low=0)
    _checks.integer("rank", rank)
    _checks.integer("io_queue_depth", io_queue_depth)
    for name, value in counts.items():
        _checks.optional_integer(name, value)
    _checks.optional_integer("shuffle_clump_size", shuffle_clump_size, low=1)
    if columns is not None:
        columns = _checks.names("columns", columns)
    if filter is not None:
        _checks.text("filter", filter)
    for name, function in functions.items():
        if function is not None and not callable(function):
            raise TypeError(f"{name}={function!r} is {type(function).__name__}; give a callable")
    if not isinstance(on_transform_error, str) and not callable(on_transform_error):
        raise TypeError(
            f"on_transform_error={on_transform_error!r} is "
            f"{type(on_transform_error).__name__}; give 'raise', 'skip', 'warn' or a callable"
        )
    if worker_info_override is not None:
        for name in ("id", "num_workers"):
            _checks.integer(
                f"worker_info_override.{name}", getattr(worker_info_override, name, None)
            )
    return columns


def check_values(
    table: Any,
    *,
    num_splits: int,
    rank: int,
    world_size: int,
    read_batch_size: int,
    io_queue_depth: int,
    transform_parallelism: int | None,
    transform_queue_depth: int | None,
    on_transform_error: str | Callable[[Exception], bool],
    pack_sequences: int | None,
    eos_id: int | None,
    pad_id: int | None,
    blocks_per_epoch: int | str | None,
    transform: Any,
    columns: list[str] | None,
    pack_blocks: int | None = None,
) -> None:
    """Refuse a value out of range, or arguments that do not fit together (a ValueError)."""
    _check_positive(world_size, "world_size")
    _check_positive(num_splits, "num_splits")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank ({rank}) must be between 0 and world_size - 1 ({world_size - 1})")
    if num_splits % world_size != 0:
        raise ValueError(
            f"num_splits ({num_splits}) must be divisible by world_size ({world_size})"
        )
    _check_positive(read_batch_size, "read_batch_size")
    if io_queue_depth <= 0:
        raise ValueError("io_queue_depth must be greater than 0")
    if transform_parallelism is not None and transform_parallelism <= 0:
        raise ValueError("transform_parallelism must be greater than 0")
    if transform_queue_depth is not None and transform_queue_depth <= 0:
        raise ValueError("transform_queue_depth must be greater than 0")
    if on_transform_error not in ERROR_MODES and not callable(on_transform_error):
        raise ValueError(
            "on_transform_error must be 'raise', 'skip', 'warn', or a callable, got "
            f"{on_transform_error!r}"
        )
    # An unknown column is refused when iteration starts, as LanceDB refuses it.
    if pack_sequences is not None:
        check_packing(
            table,
            pack_sequences,
            eos_id,
            pad_id,
            blocks_per_epoch,
            num_splits,
            transform,
            columns,
            pack_blocks,
        )
    elif blocks_per_epoch is not None:
        raise ValueError("blocks_per_epoch requires pack_sequences")
    elif pack_blocks is not None:
        raise ValueError(
            f"pack_blocks={pack_blocks} gives packed batches of that many blocks; it needs "
            "pack_sequences (and eos_id, pad_id, blocks_per_epoch)"
        )


def _check_positive(value: Any, name: str) -> None:
    if _checks.integer(name, value) <= 0:
        raise ValueError(f"{name} must be a whole number greater than 0, got {value!r}")
