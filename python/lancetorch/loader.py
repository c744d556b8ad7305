"""An in-process loader that prepares the next batches on a Rust thread.

``Loader(table_or_permutation, batch_size=1024)`` yields ``(columns, rows)`` tensors (as the
``torch_col`` format and ``tbl_to_tensor`` do) for one epoch per ``for`` loop. A Rust thread
gathers and converts the following batches while the model trains on the current one, with
the GIL released: no worker processes, nothing pickled. ``stats()`` says where the time went.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from . import _native
from .permutation import Permutation
from .sampler import BatchSampler
from .table import Table, _LanceBackend, _MemoryBackend
from .util import _torch


class Loader:
    """Shuffled (or ordered) batches of a Table or Permutation, prepared ahead on a Rust thread.

    ``prefetch`` batches are prepared ahead. ``pin_memory=True`` pins each batch for fast
    copies to a GPU when CUDA is present. ``profile=True`` marks the waits and the pinning as
    ``torch.profiler`` ranges (``lancetorch.loader.wait``, ``lancetorch.loader.pin``). ``set_epoch`` / ``len`` / ``drop_last`` behave as
    with :class:`lancetorch.sampler.BatchSampler`, which also gives the order. Breaking out of
    the loop, an exception, or the loader being collected stops the thread.

    The rows must be in memory: a memory table, or a disk table whose columns fit its cache.
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
    ) -> None:
        if isinstance(data, Permutation):
            self._table = data._base()
            lo, hi = data._window
            rows = np.arange(lo, hi, dtype=np.int64) if data._rows is None else data._rows[lo:hi]
            columns = data._columns
        elif isinstance(data, Table):
            self._table = data
            rows = None
            columns = None
        else:
            raise TypeError(f"Loader reads a lancetorch Table or Permutation, not {type(data).__name__}")
        self._rows = rows
        names = list(columns) if columns is not None else self._table.schema.names
        self._store, self._columns = self._in_memory(names)
        n = len(rows) if rows is not None else self._store.num_rows
        self._sampler = BatchSampler(n, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
        if int(prefetch) < 1:
            raise ValueError(f"prefetch={prefetch} must be 1 or more")
        self._prefetch = int(prefetch)
        self._pin = bool(pin_memory)
        self._dtype = None if dtype is None else str(dtype).removeprefix("torch.")
        self._null_value = null_value
        self._profile = bool(profile)
        self._stats = {"index_s": 0.0, "take_s": 0.0, "convert_s": 0.0, "pin_s": 0.0,
                       "wait_s": 0.0, "total_s": 0.0, "batches": 0, "rows": 0, "bytes": 0}

    def _in_memory(self, names: list[str]) -> tuple[_native.ColumnStore, list[int]]:
        backend = self._table._backend
        if isinstance(backend, _MemoryBackend):
            store, held = backend.store, backend.schema.names
        elif isinstance(backend, _LanceBackend) and (cached := backend._cache_for(names)):
            held, store = cached
        else:
            raise ValueError(
                f"Loader needs table '{self._table.name}' in memory, but its columns do not fit "
                "the cache (or cache=False): open it with cache=True, a larger cache_budget, or "
                "read it with torch.utils.data.DataLoader"
            )
        missing = [n for n in names if n not in held]
        if missing:
            raise ValueError(f"column '{missing[0]}' is not in table '{self._table.name}'")
        return store, [held.index(n) for n in names]

    def __len__(self) -> int:
        return len(self._sampler)

    def set_epoch(self, epoch: int) -> None:
        self._sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:
        torch = _torch()
        start = time.perf_counter()
        order = self._sampler.order()
        self._sampler.set_epoch(self._sampler.epoch + 1)
        rows = order if self._rows is None else self._rows[order]
        self._stats["index_s"] += time.perf_counter() - start
        prefetcher = _native.Prefetcher(
            self._store,
            pa.array(np.ascontiguousarray(rows, dtype=np.int64)),
            self._columns,
            self._sampler.batch_size,
            drop_last=self._sampler.drop_last,
            depth=self._prefetch,
            dtype=self._dtype,
            null_value=self._null_value,
        )
        pin = self._pin and torch.cuda.is_available()
        if self._profile:
            wait_range = lambda: torch.profiler.record_function("lancetorch.loader.wait")  # noqa: E731
            pin_range = lambda: torch.profiler.record_function("lancetorch.loader.pin")  # noqa: E731
        else:
            wait_range = pin_range = contextlib.nullcontext
        try:
            while True:
                t0 = time.perf_counter()
                with wait_range():
                    capsule = prefetcher.next()
                t1 = time.perf_counter()
                self._stats["wait_s"] += t1 - t0
                if capsule is None:
                    return
                batch = torch.from_dlpack(capsule)
                if pin:
                    with pin_range():
                        batch = batch.pin_memory()
                    self._stats["pin_s"] += time.perf_counter() - t1
                yield batch
        finally:
            prefetcher.close()
            for key, value in prefetcher.stats().items():
                self._stats[key] += value
            self._stats["total_s"] += time.perf_counter() - start

    def stats(self) -> dict[str, float]:
        """Totals over finished epochs: seconds spent making the index (``index_s``), in the
        take and the conversion on the Rust thread (``take_s``, ``convert_s``), pinning
        (``pin_s``), and waiting for a batch (``wait_s``); batches, rows and bytes delivered;
        rows and bytes per second of the loop; and ``wait_fraction``, the share of the loop's
        time the consumer spent waiting for data."""
        s = dict(self._stats)
        total = s["total_s"]
        s["rows_per_s"] = s["rows"] / total if total else 0.0
        s["bytes_per_s"] = s["bytes"] / total if total else 0.0
        s["wait_fraction"] = s["wait_s"] / total if total else 0.0
        return s
