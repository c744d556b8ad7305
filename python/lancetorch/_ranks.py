"""Which rank of how many this process is, and a seed every rank shares: what a sharded
read needs of ``torch.distributed`` (never imported here: used only when the user's script has
imported and initialised it) or of ``torchrun``'s environment."""

from __future__ import annotations

import os
import secrets
import sys
import time
from typing import Any

from . import _checks


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError as err:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from err


def _torch_distributed() -> Any:
    """``torch.distributed`` when it is imported and initialised (never imports torch)."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist
    return None


def distributed_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)`` of this process: as given; else ``torch.distributed``'s when it
    is initialised; else the ``RANK`` and ``WORLD_SIZE`` environment variables (set by
    ``torchrun``); else ``(0, 1)``.

    Parameters
    ----------
    rank : int, optional
        This process's rank. A ``world_size`` given without a rank takes the found rank when
        the found world has that size, else rank 0 (``world_size=1``: read everything,
        whichever rank this is).
    world_size : int, optional
        The number of ranks.

    Returns
    -------
    tuple[int, int]
        ``(rank, world_size)``.

    Raises
    ------
    ValueError
        For a world size under 1, a rank outside ``0..world_size - 1``, or a ``RANK`` or
        ``WORLD_SIZE`` that is not an integer.
    """
    _checks.optional_integer("rank", rank)
    _checks.optional_integer("world_size", world_size)
    if rank is None or world_size is None:
        dist = _torch_distributed()
        if dist is not None:
            found = (dist.get_rank(), dist.get_world_size())
        else:
            env_rank, env_world = _env_int("RANK"), _env_int("WORLD_SIZE")
            found = (env_rank or 0, env_world or 1)
        if rank is None:
            rank = found[0] if world_size is None or world_size == found[1] else 0
        world_size = found[1] if world_size is None else world_size
    rank, world_size = _checks.integer("rank", rank), _checks.integer("world_size", world_size)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"rank={rank} with world_size={world_size}: the world size must be 1 or more and "
            "the rank between 0 and world_size - 1"
        )
    return rank, world_size


def _shared_seed(seed: int | None, world_size: int) -> int:
    """The seed: as given; else a random one, the same on every rank of a sharded read."""
    if seed is not None:
        return _checks.integer("seed", seed) & ((1 << 64) - 1)
    if world_size == 1:
        return secrets.randbits(64)
    dist = _torch_distributed()
    if dist is None:
        raise ValueError(
            f"a shuffled read sharded across {world_size} ranks needs the same seed on every "
            "rank: pass seed=..., or initialise torch.distributed so that rank 0's is shared"
        )
    torch = sys.modules["torch"]
    nccl = "nccl" in str(dist.get_backend()) and "gloo" not in str(dist.get_backend())
    device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    chosen = secrets.randbits(64) if dist.get_rank() == 0 else 0
    box = torch.tensor([chosen - (1 << 64) if chosen >= 1 << 63 else chosen], device=device)
    dist.broadcast(box, src=0)
    _until_released(box)
    return int(box.item()) & ((1 << 64) - 1)


def _until_released(tensor: Any, limit_s: float = 5.0) -> None:
    """Wait (briefly) until a finished collective's worker thread has let go of ``tensor``.

    That thread drops its references a moment after the collective returns, and dropping a
    reference to a tensor that Python knows takes the GIL; if the interpreter is exiting by
    then (a sampler built just before the script ends), torch aborts the process with
    "terminate called without an active exception". Waiting here keeps that drop within the
    script's life."""
    use_count = getattr(tensor, "_use_count", None)
    if use_count is None:
        return
    deadline = time.monotonic() + limit_s
    while use_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.001)
