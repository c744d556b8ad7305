"""Index batches made in Rust, for ``DataLoader(dataset, batch_sampler=...)``.

PyTorch's ``RandomSampler`` + ``BatchSampler`` build a Python list of ints for every batch,
which caps a shuffled epoch at a few million rows a second however fast the dataset is.
:class:`BatchSampler` shuffles the positions once per epoch in Rust and yields slices of one
int64 numpy array; a lancetorch Table or Permutation takes such an array without making a
Python object per row.
"""

from __future__ import annotations

import secrets
from typing import Any, Iterator

import numpy as np

from . import _native


class BatchSampler:
    """Batches of positions ``0..n``: shuffled per epoch from ``(seed, epoch)``, or in order.

    ``set_epoch(e)`` chooses the order of the next pass (as with ``DistributedSampler``); a
    pass that ends without a ``set_epoch`` moves on to the next epoch by itself. With the same
    seed and epoch the order is the same on every machine and every release.

    >>> s = BatchSampler(10, batch_size=4, seed=42)
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
    ) -> None:
        n = data_source if isinstance(data_source, (int, np.integer)) else len(data_source)
        if isinstance(n, bool) or int(n) < 0:
            raise ValueError(f"the number of rows must be 0 or more, got {n!r}")
        if isinstance(batch_size, bool) or int(batch_size) < 1:
            raise ValueError(f"batch_size={batch_size!r} must be 1 or more")
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = secrets.randbits(64) if seed is None else int(seed)
        self.drop_last = drop_last
        self.clump_size = clump_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        if int(epoch) < 0:
            raise ValueError(f"epoch must be 0 or more, got {epoch}")
        self.epoch = int(epoch)

    def order(self, epoch: int | None = None) -> np.ndarray:
        """All positions of ``epoch`` (default: the current one) in read order."""
        epoch = self.epoch if epoch is None else epoch
        if not self.shuffle:
            return np.arange(self.n, dtype=np.int64)
        return _native.epoch_order(self.n, self.seed, epoch, self.clump_size).to_numpy()

    def __len__(self) -> int:
        if self.drop_last:
            return self.n // self.batch_size
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        order = self.order()
        self.epoch += 1
        for i in range(len(self)):
            yield order[i * self.batch_size : (i + 1) * self.batch_size]
