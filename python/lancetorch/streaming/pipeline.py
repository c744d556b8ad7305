"""The read pipeline of a StreamingDataset: takes on I/O threads, the transform on a second
set, and queues between them and the consumer.

Only queues pass between the threads and the consumer, which holds no lock they need: an
interrupt in the consumer cannot leave one held, and the end of an iteration drops the calls
not started and waits a bounded time for running ones.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing import RawArray
from queue import Empty, SimpleQueue
from typing import Any

import pyarrow as pa

from ..permutation import Permutation

# The package's logger: one name for all of its modules.
logger = logging.getLogger("lancetorch.streaming")

_JOIN_SECONDS = 10.0  # how long the end of an iteration waits for its threads' running calls
_POLL_SECONDS = 1.0  # how often an idle thread looks whether its pipeline is closed

# Slots of the statistics shared with the process that made the dataset.
UNSCANNED, RAW, COOKED, CONSUMED, BYTES, FETCH_US, TRANSFORM_US, SKIPPED = range(8)


@dataclass(frozen=True)
class ReadConfig:
    """What a pipeline reads by and transforms with (the dataset's arguments of those names).

    Parameters
    ----------
    read_batch_size : int
        Rows a take reads from a split.
    io_queue_depth : int
        Takes in flight per split.
    transform_parallelism : int or None
        Batches transformed at once; ``None``: the CPU count.
    transform_queue_depth : int or None
        Batches of transformed rows a split may hold; ``None``: no bound.
    on_transform_error : str or callable
        ``"raise"``, ``"skip"``, ``"warn"`` or ``handler(exc) -> bool``.
    """

    read_batch_size: int
    io_queue_depth: int
    transform_parallelism: int | None
    transform_queue_depth: int | None
    on_transform_error: str | Callable[[Exception], bool]


class Totals:
    """A dataset's running totals over every iteration, and the statistics shared with the
    process that made it (``shared``, by the ``UNSCANNED``... slots)."""

    def __init__(self) -> None:
        self.bytes_loaded = 0
        self.fetch_time = 0.0
        self.transform_time = 0.0
        self.rows_skipped = 0
        self.shared = RawArray(ctypes.c_int64, 8)


class _Call:
    """A function call for a :class:`_Threads` thread; ``done`` once ``value`` or ``error`` is
    set. ``slot``: a transform, which holds one of the pipeline's transform slots."""

    __slots__ = ("fn", "args", "slot", "done", "value", "error")

    def __init__(self, fn: Callable[..., Any], args: tuple, slot: bool) -> None:
        self.fn, self.args, self.slot = fn, args, slot
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self.fn(*self.args)
        except BaseException as exc:  # raised again in the consumer by result()
            self.error = exc
        self.done = True

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class _Threads:
    """Up to ``size`` daemon threads running the calls given to them, each finished call put
    on ``finished``.

    Only queues pass between them and the consumer, so the consumer never holds a lock they
    wait for, and an interrupt in the consumer cannot leave one held (as it can inside a
    ``ThreadPoolExecutor``, ``Future`` or ``Semaphore``, whose threads then wait forever).
    Once ``owner.closed`` is set they leave after the call in hand; calls not started are
    dropped."""

    def __init__(self, owner: Pipeline, size: int, finished: SimpleQueue, name: str) -> None:
        self.owner, self.size, self.finished, self.name = owner, size, finished, name
        self.todo: SimpleQueue[_Call | None] = SimpleQueue()
        self.threads: list[threading.Thread] = []

    def submit(self, fn: Callable[..., Any], *args: Any, slot: bool = False) -> _Call:
        call = _Call(fn, args, slot)
        self.todo.put(call)
        if len(self.threads) < self.size:
            name = f"{self.name}-{len(self.threads)}"
            thread = threading.Thread(target=self._work, name=name, daemon=True)
            self.threads.append(thread)
            thread.start()
        return call

    def _work(self) -> None:
        while not self.owner.closed:
            try:
                call = self.todo.get(timeout=_POLL_SECONDS)  # wakes to see ``closed``
            except Empty:
                continue
            if call is None or self.owner.closed:
                return
            call.run()
            self.finished.put(call)

    def wake(self) -> None:
        """Wake every idle thread (to see ``closed`` and leave)."""
        for _ in self.threads:
            self.todo.put(None)


class Pipeline:
    """Reads and transforms the rows of some splits ahead of the consumer.

    Per split: up to ``io_queue_depth`` takes of ``read_batch_size`` rows in flight on I/O
    threads; read batches wait (``raw``) for one of ``transform_parallelism`` transform slots;
    transformed rows wait (``cooked``) for the consumer, at most ``transform_queue_depth``
    batches of them. Each row carries its position in its split, counted from the split's
    start. The consumer takes the rows one at a time (:meth:`pop`) or, with ``batched``,
    a transformed batch's rows at once (:meth:`front`, :meth:`take`).

    The consumer starts it with :meth:`start` and, in a ``finally``, sets ``closed`` (a plain
    store, which no interrupt splits) before :meth:`close`, which waits for the threads a
    bounded time.

    Parameters
    ----------
    config : ReadConfig
        The batch size, queue depths and transform error mode.
    totals : Totals
        The running totals this pipeline adds to, and the shared statistics it publishes.
    perms : list of Permutation
        Each split's rows from where this iteration starts (``arrow`` format).
    starts : list of int
        Each split's position of the first of those rows.
    transform : callable
        A ``pyarrow.RecordBatch`` to one item per row or, with ``batched``, to one object
        of its rows (``len`` of it the rows).
    batched : bool
        ``transform`` gives one object for a batch's rows. Where it fails and fails are
        skipped, the rows it takes are found a row at a time and transformed again together.
    """

    def __init__(
        self,
        config: ReadConfig,
        totals: Totals,
        perms: list[Permutation],
        starts: list[int],
        transform: Callable[[pa.RecordBatch], Any],
        batched: bool = False,
    ) -> None:
        self.config, self.totals = config, totals
        self.perms = perms
        self.starts = starts
        self.sizes = [len(p) for p in perms]
        self.head = [0] * len(perms)  # rows asked for, per split
        self.reading: list[deque[tuple[int, _Call]]] = [deque() for _ in perms]
        self.raw: list[deque[tuple[int, pa.RecordBatch]]] = [deque() for _ in perms]
        self.transforming: list[deque[_Call]] = [deque() for _ in perms]
        # Transformed batches, each its rows' positions and its rows; ``first``: the rows of
        # the head one given, ``waiting``: the rows not given.
        self.cooked: list[deque[tuple[Sequence[int], Any]]] = [deque() for _ in perms]
        self.first = [0] * len(perms)
        self.waiting = [0] * len(perms)
        self.given = [0] * len(perms)
        self.transform, self.batched = transform, batched
        self.workers = config.transform_parallelism or os.cpu_count() or 1
        self.transforms = 0  # transforms started whose end the consumer has not seen yet
        depth = config.transform_queue_depth
        self.max_cooked = None if depth is None else depth * config.read_batch_size
        self.counting = threading.Lock()  # guards the running totals
        self.closed = False
        self.finished: SimpleQueue[_Call] = SimpleQueue()
        reads = len(perms) * config.io_queue_depth
        self.io = _Threads(self, reads, self.finished, "lancetorch-streaming-io")
        self.tx = _Threads(self, self.workers, self.finished, "lancetorch-streaming-transform")

    def start(self) -> None:
        for i in range(len(self.perms)):
            self._read_ahead(i)

    def close(self) -> None:
        """Stop the threads: calls not started are dropped, the running ones waited for at
        most ``_JOIN_SECONDS`` in all (a thread still busy then finishes on its own)."""
        self.closed = True
        self.publish(idle=True)
        for pool in (self.io, self.tx):
            pool.wake()
        deadline = time.monotonic() + _JOIN_SECONDS
        busy = 0
        for thread in self.io.threads + self.tx.threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
                busy += thread.is_alive()
        if busy:
            logger.warning(
                "%d read or transform threads were still busy %.0f s after the iteration "
                "ended; they finish their call on their own",
                busy,
                _JOIN_SECONDS,
            )

    # -- what finished ------------------------------------------------------------------------
    def _settle(self, call: _Call) -> None:
        """Note a call the threads finished (a transform gives its slot back)."""
        if call.slot:
            self.transforms -= 1

    def _drain(self) -> None:
        while not self.finished.empty():
            self._settle(self.finished.get())

    def _wait(self, call: _Call) -> Any:
        """The call's result, once it is done (its error raised here)."""
        while not call.done:
            self._settle(self.finished.get())  # interruptible, and holds no lock
        return call.result()

    # -- stages -------------------------------------------------------------------------------
    def _read(self, perm: Permutation, positions: list[int]) -> pa.RecordBatch:
        started = time.perf_counter()
        batch = perm.__getitems__(positions)
        with self.counting:  # the I/O threads add up at once
            self.totals.bytes_loaded += batch.nbytes
            self.totals.fetch_time += time.perf_counter() - started
        return batch

    def _read_ahead(self, i: int) -> None:
        size, depth = self.config.read_batch_size, self.config.io_queue_depth
        while len(self.reading[i]) < depth and self.head[i] < self.sizes[i]:
            start, n = self.head[i], min(size, self.sizes[i] - self.head[i])
            self.head[i] += n
            call = self.io.submit(self._read, self.perms[i], list(range(start, start + n)))
            self.reading[i].append((self.starts[i] + start, call))

    def _transformed(self, start: int, batch: pa.RecordBatch) -> tuple[Sequence[int], Any]:
        began = time.perf_counter()
        rows = self._apply(start, batch)
        with self.counting:
            self.totals.transform_time += time.perf_counter() - began
        return rows

    def _apply(self, start: int, batch: pa.RecordBatch) -> tuple[Sequence[int], Any]:
        """The positions and the transformed rows of ``batch``, whose first row is at
        ``start``."""
        try:
            out = self.transform(batch)
            if not self.batched:
                out = list(out)
        except Exception as exc:
            if not self._skips(exc):
                raise
            return self._row_by_row(start, batch, exc)
        # A wrong count is a bug in the transform, never a row to skip.
        return range(start, start + batch.num_rows), _one_per_row(out, batch.num_rows)

    def _row_by_row(
        self, start: int, batch: pa.RecordBatch, failure: Exception
    ) -> tuple[Sequence[int], Any]:
        """The batch transformed a row at a time, the failing rows dropped (``batched``: the
        rows kept then transformed together)."""
        kept, rows, skipped, first = [], [], 0, None
        for j in range(batch.num_rows):
            try:
                out = self.transform(batch.slice(j, 1))
                if not self.batched:
                    out = list(out)
            except Exception as exc:
                if not self._skips(exc):
                    raise
                skipped, first = skipped + 1, first or exc
                continue
            kept.append(j)
            rows.append(_one_per_row(out, 1))
        with self.counting:
            self.totals.rows_skipped += skipped
        if skipped and self.config.on_transform_error == "warn":
            logger.warning(
                "Skipped %d of %d rows whose transform failed (first error: %r)",
                skipped,
                batch.num_rows,
                first or failure,
            )
        positions = [start + j for j in kept]
        if not self.batched:
            return positions, [out[0] for out in rows]
        if not kept:
            return positions, rows
        kept_rows = batch.take(pa.array(kept, pa.int64()))
        return positions, _one_per_row(self.transform(kept_rows), len(kept))

    def _skips(self, exc: Exception) -> bool:
        mode = self.config.on_transform_error
        if callable(mode):
            return bool(mode(exc))
        return mode != "raise"

    def _room(self, i: int) -> bool:
        if self.max_cooked is None:
            return True
        size = self.config.read_batch_size
        queued = self.waiting[i] + len(self.transforming[i]) * size
        return queued + size <= self.max_cooked

    def _start_transform(self, i: int) -> None:
        start, batch = self.raw[i].popleft()
        self.transforms += 1
        self.transforming[i].append(self.tx.submit(self._transformed, start, batch, slot=True))

    def _cook(self, i: int, transformed: tuple[Sequence[int], Any]) -> None:
        """Queue a transformed batch of split ``i`` for the consumer (if it kept any rows)."""
        if transformed[0]:
            self.cooked[i].append(transformed)
            self.waiting[i] += len(transformed[0])

    def pump(self, i: int) -> None:
        """Move split ``i``'s finished work along without waiting (a failure raises here)."""
        self._drain()
        while self.reading[i] and self.reading[i][0][1].done:
            start, call = self.reading[i].popleft()
            self.raw[i].append((start, call.result()))
        while self.transforming[i] and self.transforming[i][0].done:
            self._cook(i, self.transforming[i].popleft().result())
        while self.raw[i] and self._room(i) and self.transforms < self.workers:
            self._start_transform(i)
        self._read_ahead(i)

    def ready(self, i: int) -> bool:
        """Whether split ``i`` has a row for the consumer, waiting for one if it comes."""
        self.pump(i)
        while not self.cooked[i]:
            if self.transforming[i]:
                transformed = self._wait(self.transforming[i][0])
                self.transforming[i].popleft()
                self._cook(i, transformed)
            elif self.raw[i]:
                while self.transforms >= self.workers:  # wait for a slot
                    self._settle(self.finished.get())
                self._start_transform(i)
            elif self.reading[i]:
                batch = self._wait(self.reading[i][0][1])
                start, _ = self.reading[i].popleft()
                self.raw[i].append((start, batch))
            else:
                return False  # the split is done
            self.pump(i)
        return True

    def pop(self, i: int) -> tuple[int, Any]:
        """The next row of split ``i`` (``ready`` said there is one) and its position."""
        positions, rows = self.cooked[i][0]
        k = self.first[i]
        entry = positions[k], rows[k]
        self.take(i, 1)
        return entry

    def front(self, i: int) -> tuple[Sequence[int], Any, int]:
        """Split ``i``'s next transformed batch (``ready`` said there is one): its rows'
        positions, its rows, and how many of them were given already."""
        positions, rows = self.cooked[i][0]
        return positions, rows, self.first[i]

    def take(self, i: int, n: int) -> None:
        """Give the next ``n`` rows of split ``i``'s :meth:`front` (at most those left)."""
        self.first[i] += n
        self.waiting[i] -= n
        if self.first[i] == len(self.cooked[i][0][0]):
            self.cooked[i].popleft()
            self.first[i] = 0
        self.pump(i)
        self.given[i] += n

    # -- statistics ---------------------------------------------------------------------------
    def raw_rows(self) -> int:
        return sum(b.num_rows for q in self.raw for _, b in q)

    def cooked_rows(self) -> int:
        return sum(self.waiting)

    def unscanned(self) -> int:
        return sum(s - h for s, h in zip(self.sizes, self.head))

    def consumed(self) -> int:
        return sum(self.given)

    def publish(self, idle: bool = False) -> None:
        """Copy the statistics where the process that made the dataset can read them."""
        stats, totals = self.totals.shared, self.totals
        stats[UNSCANNED] = self.unscanned()
        stats[RAW] = 0 if idle else self.raw_rows()
        stats[COOKED] = 0 if idle else self.cooked_rows()
        stats[CONSUMED] = self.consumed()
        stats[BYTES] = totals.bytes_loaded
        stats[FETCH_US] = int(totals.fetch_time * 1e6)
        stats[TRANSFORM_US] = int(totals.transform_time * 1e6)
        stats[SKIPPED] = totals.rows_skipped


def _one_per_row(rows: Any, n: int) -> Any:
    """``rows``, what the transform gave for a batch of ``n`` rows, refused unless it is
    ``n`` rows."""
    if len(rows) != n:
        raise ValueError(
            f"transform returned {len(rows)} rows for a batch of {n}; transforms must return "
            "exactly one output row per input row. To drop bad rows, raise inside the "
            "transform and pass on_transform_error='skip'"
        )
    return rows
