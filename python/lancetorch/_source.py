"""The side columns of a Loader's batches (token lists, strings, bytes, decode specs, a
Permutation's transform), made ahead on Python threads beside the Rust prefetcher of the
number columns: ``_Source`` hands out each batch's two halves in order."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from . import _native
from .util import _decode_checked, _keep_rows


class _Source:
    """A prefetcher of an epoch (or a window), with the side columns of its batches made
    ahead on ``workers`` Python threads (the takes and decodes release the GIL, so they run at
    once): batch ``k`` is rows ``k * size`` to ``(k + 1) * size`` of ``rows``, as the
    prefetcher cuts them, made by thread ``k % workers``, which keeps up to ``depth`` batches
    ready; the batches are read back in order."""

    def __init__(
        self,
        prefetcher: _native.Prefetcher,
        store: Any = None,
        rows: np.ndarray | None = None,
        columns: list[int] | None = None,
        keys: list[str] | None = None,
        decode: dict | None = None,
        size: int = 0,
        depth: int = 1,
        epoch: int = 0,
        workers: int = 1,
        transform: Any = None,
    ) -> None:
        self.prefetcher = prefetcher
        self.from_memory = False  # whether its rows come from memory (else from a window)
        self.threads: list[threading.Thread] = []
        # What the batches handed out cost on the side threads: take and decode seconds
        # (summed over the threads), and the bytes delivered.
        self.cost = {"take_s": 0.0, "decode_s": 0.0, "bytes": 0}
        if not columns or rows is None:
            return
        self.store, self.rows, self.columns, self.keys = store, rows, columns, keys
        self.decode, self.size, self.epoch = decode, size, epoch
        self.transform = transform
        batches = -(-len(rows) // size) if size else 0
        workers = max(1, min(workers, batches))
        self.ready: list[queue.Queue[Any]] = [
            queue.Queue(maxsize=max(1, depth)) for _ in range(workers)
        ]
        self.stop = threading.Event()
        self.taken = 0  # batches handed out by side()
        for w in range(workers):
            thread = threading.Thread(
                target=self._produce, args=(w,), daemon=True, name=f"lancetorch-side-{w}"
            )
            thread.start()
            self.threads.append(thread)

    def _produce(self, worker: int) -> None:
        """Make batches ``worker``, ``worker + workers``, ... in turn; an error is handed
        over in its batch's place."""
        step = len(self.ready) * self.size
        for start in range(worker * self.size, len(self.rows), step):
            try:
                item: Any = self._make(self.rows[start : start + self.size])
            except BaseException as e:  # raised in the loop, where the batch is asked for
                item = _Failed(e)
            while not self.stop.is_set():
                try:
                    self.ready[worker].put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if self.stop.is_set() or isinstance(item, _Failed):
                return

    def _make(self, part: np.ndarray) -> tuple[Any, tuple | None, tuple[float, float, int]]:
        """The side values of one batch (with a transform, its output), when a spec skipped
        rows the rows kept and the batch's size, and the batch's cost: take and decode
        seconds, bytes delivered."""
        t0 = time.perf_counter()
        batch = self.store.take(pa.array(part.astype(np.int64, copy=False)), self.columns)
        batch = batch.rename_columns(self.keys)
        t1 = time.perf_counter()
        if self.transform is not None:
            out = self.transform(batch)
            return out, None, (t1 - t0, time.perf_counter() - t1, batch.nbytes)
        values, keep = _decode_checked(batch, self.decode or {}, epoch=self.epoch)
        skipped = None
        if keep is not None:
            values = {k: _keep_rows(v, keep) for k, v in values.items()}
            skipped = (keep, len(part))
        return values, skipped, (t1 - t0, time.perf_counter() - t1, _bytes_of(values, batch))

    def next(self) -> Any:
        return self.prefetcher.next()

    def side(self) -> tuple[Any, tuple | None] | None:
        """The side values of the batch ``next`` last returned, and the rows a spec kept (see
        ``_make``); its cost is counted as it is handed out."""
        if not self.threads:
            return None
        item = self.ready[self.taken % len(self.ready)].get()
        self.taken += 1
        if isinstance(item, _Failed):
            raise item.error
        values, skipped, (take_s, decode_s, size) = item
        self.cost["take_s"] += take_s
        self.cost["decode_s"] += decode_s
        self.cost["bytes"] += size
        return values, skipped

    def close(self) -> None:
        self.prefetcher.close()
        if self.threads:
            self.stop.set()
            for thread in self.threads:
                thread.join()

    def stats(self) -> dict[str, float]:
        return self.prefetcher.stats()


class _Failed(NamedTuple):
    error: BaseException


def _bytes_of(values: dict[str, Any], batch: pa.RecordBatch) -> int:
    """The bytes of a batch's side values: a tensor's own, and for other values (strings,
    bytes, a tokenizer's output) those of the Arrow column they were made from."""
    total = 0
    for name, value in values.items():
        if hasattr(value, "untyped_storage") and hasattr(value, "nbytes"):
            total += int(value.nbytes)
        elif name in batch.schema.names:
            total += batch.column(name).nbytes
    return total
