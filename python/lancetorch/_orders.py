"""The shuffled orders of :class:`lancetorch.sampler.BatchSampler`, beside the windowed one
(``_windows.py``): a Fisher-Yates shuffle held as one index array, with the check that it fits
in memory, and the seeded bijection, which holds nothing. Each is a pure function of
``(seed, epoch)``; the sampler keeps the rank stride, the padding and the batches."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import _native


def bijection_rows(n: int, seed: int, epoch: int, positions: np.ndarray) -> np.ndarray:
    """The rows at ``positions`` of the bijection order of ``n`` rows for ``(seed, epoch)``."""
    return _native.bijection_rows(n, seed, epoch, pa.array(positions, pa.int64())).to_numpy()


def fisher_yates(n: int, seed: int, epoch: int, clump_size: int | None) -> np.ndarray:
    """The whole Fisher-Yates order of ``n`` rows for ``(seed, epoch)``, in uint32 where the
    rows allow: 4 bytes a row beside the table."""
    try:
        order = _native.epoch_order(n, seed, epoch, clump_size, narrow=True)
    except MemoryError as err:
        raise MemoryError(_too_large(n, str(err))) from err
    return order.to_numpy()


def check_fisher_yates_fits(n: int) -> None:
    """MemoryError now, rather than at the first batch, when an epoch's Fisher-Yates order of
    ``n`` rows is more than the memory the kernel reports free."""
    per_row = 4 if n <= 2**32 else 8
    free = _native.available_memory()
    if free is not None and n * per_row > free:
        raise MemoryError(
            _too_large(n, f"{n * per_row} bytes ({per_row} a row), more than the {free} free")
        )


def _too_large(n: int, detail: str) -> str:
    return (
        f"BatchSampler of {n} rows with order='fisher-yates' holds each epoch's order "
        f"in memory: {detail}; use order='bijection' (or the default order='auto'), which "
        "computes each position's row without holding the order"
    )
