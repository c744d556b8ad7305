"""StreamingDataset and StreamingDataLoader: elastic determinism, resumption on another
topology, transform errors, statistics, packing, and worker processes.

The reference for every order is the permutation table itself: split ``s`` of the table the
dataset builds holds the rows that split gives, in order, and global step ``k`` (one row per
split) is row ``k`` of every split.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import inspect
import logging
import random
import subprocess
import sys
import textwrap
import threading

import lancetorch
import pyarrow as pa
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lancetorch.permutation import Permutation, permutation_builder
from lancetorch.streaming import StreamingDataLoader, StreamingDataset

PROPS = settings(max_examples=20, deadline=None)


def ids_table(n: int, db=None):
    db = db or lancetorch.connect("memory://")
    return db.create_table("t", pa.table({"id": pa.array(range(n), pa.int64())}))


def splits_of(ds: StreamingDataset) -> list[list[int]]:
    """The rows of every split of the dataset's permutation table, in order (the reference)."""
    out = []
    for s in range(ds._num_splits):
        perm = Permutation.from_tables(ds._table, ds._perm_table, s).with_format("python_col")
        out.append(perm.take_offsets(range(len(perm)))["id"])
    return out


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


class Worker:
    def __init__(self, id: int, num_workers: int) -> None:
        self.id, self.num_workers = id, num_workers


# -- elastic determinism --------------------------------------------------------------------------


@PROPS
@given(
    rows=st.integers(1, 80),
    num_splits=st.sampled_from([1, 2, 3, 4, 6]),
    seed=st.integers(0, 2**32 - 1),
    epoch=st.integers(0, 3),
    shuffle=st.booleans(),
    data=st.data(),
)
def test_global_steps_are_the_same_on_every_topology(rows, num_splits, seed, epoch, shuffle, data):
    if rows < num_splits:
        with pytest.raises(ValueError, match="at least 1 row per split"):
            StreamingDataset(ids_table(rows), num_splits=num_splits)
        return
    table = ids_table(rows)
    world = data.draw(st.sampled_from(divisors(num_splits)), label="world_size")
    workers = data.draw(st.sampled_from(divisors(num_splits // world)), label="num_workers")
    datasets = [
        [
            StreamingDataset(
                table,
                num_splits=num_splits,
                shuffle=shuffle,
                shuffle_seed=seed,
                epoch=epoch,
                rank=r,
                world_size=world,
                read_batch_size=3,
                worker_info_override=Worker(w, workers) if workers > 1 else None,
            )
            for w in range(workers)
        ]
        for r in range(world)
    ]
    reference = splits_of(datasets[0][0])
    steps = rows // num_splits
    assert [len(s) for s in reference] == [steps] * num_splits  # the surplus is left out
    got = [[list(ds) for ds in rank] for rank in datasets]
    # Each (rank, worker) gives its own splits' rows, one per split in turn.
    per_process = num_splits // world // workers
    for r in range(world):
        for w in range(workers):
            first = (r * workers + w) * per_process
            mine = range(first, first + per_process)
            want = [reference[s][k] for k in range(steps) for s in mine]
            assert [row["id"] for row in got[r][w]] == want
    seen = sorted(row["id"] for rank in got for rows_ in rank for row in rows_)
    assert len(seen) == len(set(seen)) == steps * num_splits
    if not shuffle:
        assert reference == [list(range(s * steps, (s + 1) * steps)) for s in range(num_splits)]


def test_epochs_and_seeds_change_the_order():
    table = ids_table(60)

    def order(**kw):
        return [r["id"] for r in StreamingDataset(table, num_splits=3, **kw)]

    base = order(shuffle_seed=1, epoch=0)
    assert order(shuffle_seed=1, epoch=0) == base
    assert order(shuffle_seed=1, epoch=1) != base
    assert order(shuffle_seed=2, epoch=0) != base
    assert sorted(base) == list(range(60))


@pytest.mark.parametrize("num_splits", [1, 4])
def test_a_shuffled_stream_is_not_in_table_order(num_splits):
    """Each split is read in the random order its rows were dealt in: the stream position says
    nothing of the row (LanceDB's stream, too, is shuffled), and seeds and epochs differ."""
    import numpy as np

    table = ids_table(4000)

    def order(**kw):
        return [r["id"] for r in StreamingDataset(table, num_splits=num_splits, **kw)]

    orders = [order(shuffle_seed=s, epoch=e) for s, e in [(0, 0), (1, 0), (0, 1)]]
    for ids in orders:
        assert sorted(ids) == list(range(4000))
        assert abs(np.corrcoef(np.arange(len(ids)), ids)[0, 1]) < 0.1
    assert len({tuple(ids) for ids in orders}) == 3
    if num_splits == 1:
        assert order(shuffle=False) == list(range(4000))  # asked for: table order


def test_packing_a_shuffled_stream_starts_at_a_random_row():
    docs = [[i, i] for i in range(200)]
    table = lancetorch.connect("memory://").create_table(
        "docs", pa.table({"tokens": pa.array(docs, pa.list_(pa.int32()))})
    )

    def first_token(seed):
        ds = StreamingDataset(
            table,
            shuffle_seed=seed,
            columns=["tokens"],
            pack_sequences=6,
            eos_id=-1,
            pad_id=-2,
            blocks_per_epoch=4,
        )
        return int(next(iter(ds))["input_ids"][0])

    firsts = {first_token(seed) for seed in range(6)}
    assert len(firsts) > 1 and firsts != {0}


def test_filter_keeps_its_rows_and_refuses_text_after_its_expression():
    table = ids_table(30)
    ds = StreamingDataset(table, num_splits=3, shuffle_seed=3, filter="id % 3 = 0 AND id < 25")
    assert sorted(r["id"] for r in ds) == list(range(0, 25, 3))
    # Lance would read each of these as `id % 3 = 0` and stream its rows without a word.
    for bad in ["id % 3 = 0, id < 25", "id % 3 = 0 LIMIT 2", "id % 3 = 0)", "id % 3 = 0 -- x"]:
        with pytest.raises(ValueError, match=r"^filter .* is not exactly one SQL expression"):
            StreamingDataset(table, num_splits=2, filter=bad)


# -- resumption -----------------------------------------------------------------------------------


@PROPS
@given(num_splits=st.sampled_from([2, 4, 6]), seed=st.integers(0, 1000), data=st.data())
def test_resume_on_another_topology_gives_every_row_once(num_splits, seed, data):
    table = ids_table(60)
    before = data.draw(st.sampled_from(divisors(num_splits)), label="world before")
    after = data.draw(st.sampled_from(divisors(num_splits)), label="world after")
    steps = data.draw(st.integers(0, 60 // num_splits), label="steps")

    def make(world):
        return [
            StreamingDataset(
                table,
                num_splits=num_splits,
                shuffle_seed=seed,
                rank=r,
                world_size=world,
                read_batch_size=4,
            )
            for r in range(world)
        ]

    first = make(before)
    iters = [iter(ds) for ds in first]
    seen = []
    for _ in range(steps):  # a global step: num_splits / world rows from every rank
        for it in iters:
            seen += [next(it)["id"] for _ in range(num_splits // before)]
    merged = StreamingDataset.merge_state_dicts([ds.state_dict() for ds in first])
    assert merged["samples_consumed_per_split"] == [steps] * num_splits
    second = make(after)
    for ds in second:
        ds.load_state_dict(merged)
    rest = [row["id"] for ds in second for row in ds]
    assert sorted(seen + rest) == sorted(i for s in splits_of(first[0]) for i in s)


def test_state_between_splits_resumes_the_lagging_splits_first():
    table = ids_table(40)
    ds = StreamingDataset(table, num_splits=4, shuffle=False)
    it = iter(ds)
    got = [next(it)["id"] for _ in range(6)]  # one cycle and a half
    state = ds.state_dict()
    assert state["samples_consumed_per_split"] == [2, 2, 1, 1]
    again = StreamingDataset(table, num_splits=4, shuffle=False)
    again.load_state_dict(state)
    assert got + [r["id"] for r in again] == [
        r["id"] for r in StreamingDataset(table, num_splits=4, shuffle=False)
    ]


def test_state_dicts_are_checked():
    ds = StreamingDataset(ids_table(20), num_splits=2, shuffle_seed=3)
    state = ds.state_dict()
    with pytest.raises(ValueError, match="num_splits mismatch"):
        StreamingDataset(ids_table(20), num_splits=4, shuffle_seed=3).load_state_dict(state)
    with pytest.raises(ValueError, match="shuffle_seed mismatch"):
        StreamingDataset(ids_table(20), num_splits=2, shuffle_seed=4).load_state_dict(state)
    with pytest.raises(ValueError, match="at least one"):
        StreamingDataset.merge_state_dicts([])
    other = dict(state, epoch=1)
    with pytest.raises(ValueError, match="epoch mismatch"):
        StreamingDataset.merge_state_dicts([state, other])


# -- transforms and errors ------------------------------------------------------------------------


def test_skipped_rows_leave_the_others_and_are_counted(caplog):
    bad = {3, 17, 41}

    def transform(batch):
        ids = batch.column("id").to_pylist()
        if bad & set(ids):
            raise KeyError(f"bad row in {ids}")
        return [{"id": i, "twice": 2 * i} for i in ids]

    table = ids_table(60)
    ds = StreamingDataset(
        table,
        num_splits=1,
        shuffle=False,
        transform=transform,
        on_transform_error="warn",
        read_batch_size=8,
    )
    with caplog.at_level(logging.WARNING, logger="lancetorch.streaming"):
        rows = list(ds)
    assert [r["id"] for r in rows] == [i for i in range(60) if i not in bad]
    assert all(r["twice"] == 2 * r["id"] for r in rows)
    assert ds.rows_skipped == 3 and "Skipped" in caplog.text and "KeyError" in caplog.text
    state = ds.state_dict()
    assert state["samples_consumed_per_split"] == [57] and state[
        "positions_consumed_per_split"
    ] == [60]
    strict = StreamingDataset(table, num_splits=1, shuffle=False, transform=transform)
    with pytest.raises(KeyError, match="bad row"):
        list(strict)
    picky = StreamingDataset(
        table,
        num_splits=1,
        shuffle=False,
        transform=transform,
        on_transform_error=lambda e: isinstance(e, ValueError),
    )
    with pytest.raises(KeyError):
        list(picky)


def test_a_transform_that_loses_rows_is_an_error_even_when_skipping():
    ds = StreamingDataset(
        ids_table(10), num_splits=1, transform=lambda b: [1], on_transform_error="skip"
    )
    with pytest.raises(ValueError, match="one output row per input row"):
        list(ds)


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"num_splits": 3, "world_size": 2}, "must be divisible by world_size"),
        ({"io_queue_depth": 0}, "io_queue_depth must be greater than 0"),
        ({"transform_parallelism": 0}, "transform_parallelism must be greater than 0"),
        ({"transform_queue_depth": 0}, "transform_queue_depth must be greater than 0"),
        ({"on_transform_error": "ignore"}, "on_transform_error must be"),
        ({"blocks_per_epoch": 4}, "blocks_per_epoch requires pack_sequences"),
        ({"rank": 2, "world_size": 2}, "rank"),
        ({"read_batch_size": 0}, "read_batch_size"),
    ],
)
def test_bad_arguments_are_named(kw, words):
    with pytest.raises(ValueError, match=words):
        StreamingDataset(ids_table(12), **kw)


def test_unknown_columns_and_concurrent_iteration():
    ds = StreamingDataset(ids_table(12), num_splits=2, columns=["nope"])
    with pytest.raises(ValueError, match="Cannot select column `nope`"):
        list(ds)
    ds = StreamingDataset(ids_table(12), num_splits=2)
    it = iter(ds)
    next(it)
    with pytest.raises(RuntimeError, match="concurrent iteration"):
        next(iter(ds))
    assert len(list(it)) == 11


def test_statistics():
    ds = StreamingDataset(ids_table(48), num_splits=4, read_batch_size=4)
    assert (ds.bytes_loaded, ds.fetch_time, ds.rows_skipped, ds.raw_queue_depth) == (0, 0, 0, 0)
    it = iter(ds)
    next(it)
    assert ds.consumed_rows == 1 and ds.unscanned_rows < 48
    list(it)
    assert ds.bytes_loaded >= 48 * 8 and ds.fetch_time > 0 and ds.transform_time > 0
    assert (ds.prefetch_queue_depth, ds.raw_queue_depth, ds.unscanned_rows) == (0, 0, 0)


# -- packing --------------------------------------------------------------------------------------


def test_packed_blocks_hold_every_document_in_order():
    docs = [[i] * (i % 5 + 1) for i in range(20)]
    table = lancetorch.connect("memory://").create_table(
        "docs", pa.table({"tokens": pa.array(docs, pa.list_(pa.int32()))})
    )
    ds = StreamingDataset(
        table,
        num_splits=1,
        shuffle=False,
        columns=["tokens"],
        pack_sequences=8,
        eos_id=-1,
        pad_id=-2,
        blocks_per_epoch=11,
    )
    blocks = list(ds)  # 80 tokens with the separators: 10 blocks, then one of padding
    assert len(blocks) == 11 and all(b["input_ids"].shape == (8,) for b in blocks)
    stream = torch.cat([b["input_ids"] for b in blocks]).tolist()
    want = [t for d in docs for t in d + [-1]]
    assert stream[: len(want)] == want and set(stream[len(want) :]) == {-2}
    first = blocks[0]
    assert first["doc_ids"].tolist() == [0, 0, 1, 1, 1, 2, 2, 2]  # documents 0, 1, 2


# -- the DataLoader -------------------------------------------------------------------------------


def test_streaming_dataloader_checkpoints_what_the_loop_received():
    table = ids_table(40)
    ds = StreamingDataset(table, num_splits=2, shuffle=False)
    loader = StreamingDataLoader(ds, batch_size=4, num_workers=0)
    it = iter(loader)
    first = [next(it)["id"].tolist() for _ in range(3)]
    state = ds.state_dict()
    del it
    resumed = StreamingDataset(table, num_splits=2, shuffle=False)
    resumed.load_state_dict(state)
    rest = [b["id"].tolist() for b in StreamingDataLoader(resumed, batch_size=4)]
    assert sorted(sum(first + rest, [])) == list(range(40))


@pytest.mark.slow
def test_streaming_dataloader_with_spawned_workers(tmp_path):
    table = ids_table(48, lancetorch.connect(tmp_path))
    ds = StreamingDataset(table, num_splits=4, shuffle_seed=5)
    loader = StreamingDataLoader(ds, batch_size=3, num_workers=2, multiprocessing_context="spawn")
    it = iter(loader)
    taken = [next(it)["id"].tolist() for _ in range(4)]  # each worker: two batches
    state = ds.state_dict()
    it._shutdown_workers()
    assert sum(state["samples_consumed_per_split"]) == 12
    resumed = StreamingDataset(table, num_splits=4, shuffle_seed=5)
    resumed.load_state_dict(state)
    rest = [i for row in resumed for i in [row["id"]]]
    assert sorted(sum(taken, []) + rest) == list(range(48))
    with pytest.raises(ValueError, match="persistent_workers=True"):
        StreamingDataLoader(ds, batch_size=1, num_workers=2, persistent_workers=True)
    with pytest.raises(ValueError, match="drop_last=True"):
        StreamingDataLoader(ds, batch_size=2, drop_last=True)


@pytest.mark.slow
def test_a_plain_dataloader_with_workers_cannot_checkpoint(tmp_path):
    table = ids_table(24, lancetorch.connect(tmp_path))
    ds = StreamingDataset(table, num_splits=2)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=4, num_workers=2, multiprocessing_context="spawn"
    )
    assert sorted(i for b in loader for i in b["id"].tolist()) == list(range(24))
    with pytest.raises(RuntimeError, match="Use StreamingDataLoader"):
        ds.state_dict()


def test_the_permutation_is_lancetorchs_own(mem_db):
    """The splits come from lancetorch's seeded order (the same builder a user calls)."""
    table = ids_table(30, mem_db)
    ds = StreamingDataset(table, num_splits=3, shuffle_seed=7, epoch=2)
    direct = permutation_builder(table).split_random(fixed=3, seed=7 + 2 * 100003).execute()
    assert ds._perm_table.to_arrow().equals(direct.to_arrow())


# -- interrupts and states ------------------------------------------------------------------------
#
# A state taken between two ``next()`` counts every row the loop received and no other, however
# the loop stopped; an interrupt never leaves a lock held nor the process hanging.


def failing_on(ids: set[int]):
    """A transform that fails for the batches holding ``ids`` (rows to skip)."""

    def transform(batch):
        got = batch.column("id").to_pylist()
        if ids & set(got):
            raise ValueError(f"bad rows in {got}")
        return [{"id": i} for i in got]

    return transform


def stop_after(ds, k: int, how: str) -> list:
    """The first ``k`` items of ``ds``, the loop stopped as ``how`` says; the iterator of a
    ``break`` is left open (the state is taken while it waits)."""
    got: list = []
    if how == "break":
        it = iter(ds)
        stop_after.open = it  # kept open until the caller took the state
        if k == 0:
            return got
        for item in it:
            got.append(item)
            if len(got) == k:
                break
        return got
    if how == "throw":
        it = iter(ds)
        got = [next(it) for _ in range(k)]
        with pytest.raises(KeyboardInterrupt):
            it.throw(KeyboardInterrupt)
        return got
    try:  # "raise": an interrupt in the loop's body, caught outside the loop
        for item in ds:
            got.append(item)
            if len(got) == k:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    return got


@pytest.fixture(scope="module")
def hang_guard():
    """Ends the test run, with every thread's stack, should the tests of this module that ask
    for it hang (a lock an interrupt left held waits forever): a failure, not a stopped run."""
    faulthandler.dump_traceback_later(600, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


class InterruptAt:
    """A trace function that raises KeyboardInterrupt at its ``n``-th event where CPython may
    run a signal handler in this thread: a function entered or a generator resumed, and a
    function's return (a generator's ``yield`` excepted: no handler runs between a ``yield``
    and the ``next()`` that receives its value)."""

    def __init__(self, n: int) -> None:
        self.n, self.seen = n, 0

    def __call__(self, frame, event, arg):
        if event == "call":
            frame.f_trace_lines = False
            if frame.f_code.co_filename == threading.__file__:
                # Not inside CPython's own threading code: an interrupt there, between a
                # Condition's release and re-acquire in Event.wait (Thread.start waits on
                # one), makes CPython's `with` raise "release unlocked lock" whoever calls it.
                return None
        if event == "call" or (
            event == "return" and not frame.f_code.co_flags & inspect.CO_GENERATOR
        ):
            self.seen += 1
            if self.seen == self.n:
                raise KeyboardInterrupt(f"interrupt {self.n}")
        return self


@contextlib.contextmanager
def traced(tracer):
    """``tracer`` on this thread's Python code, and no garbage collection meanwhile: a
    collection would run the finalizers of other tests' objects in the traced span."""
    gc.collect()
    gc.disable()
    sys.settrace(tracer)
    try:
        yield tracer
    finally:
        sys.settrace(None)
        gc.enable()


def events(make) -> int:
    """The events (see InterruptAt) of a whole epoch of the dataset ``make()`` returns."""
    with traced(InterruptAt(0)) as count:
        list(make())
    return count.seen


def interrupted(ds, n: int) -> tuple[list, bool]:
    """The items of ``ds`` received before an interrupt at the ``n``-th event (see
    InterruptAt), and whether it came."""
    got: list = []
    try:
        with traced(InterruptAt(n)):
            for item in ds:
                got.append(item)
    except KeyboardInterrupt:
        return got, True
    return got, False


ROWS_KW = st.fixed_dictionaries(
    {
        "num_splits": st.sampled_from([1, 2, 3, 4]),
        "shuffle": st.booleans(),
        "shuffle_seed": st.integers(0, 2**32 - 1),
        "read_batch_size": st.integers(1, 5),
        "io_queue_depth": st.integers(1, 3),
        "transform_parallelism": st.integers(1, 3),
    }
)


@PROPS
@given(
    rows=st.integers(4, 60),
    kw=ROWS_KW,
    bad=st.sets(st.integers(0, 59), max_size=4),
    how=st.sampled_from(["break", "raise", "throw"]),
    data=st.data(),
)
def test_a_state_after_k_rows_resumes_with_exactly_the_rest(rows, kw, bad, how, data, hang_guard):
    table = ids_table(rows)
    kw = dict(kw, transform=failing_on(bad), on_transform_error="skip")
    full = [r["id"] for r in StreamingDataset(table, **kw)]
    if not full and how != "break":
        return  # every row was skipped: no row to stop at
    k = data.draw(st.integers(0 if how == "break" else 1, len(full)), label="k")
    ds = StreamingDataset(table, **kw)
    head = [r["id"] for r in stop_after(ds, k, how)]
    state = ds.state_dict()
    assert head == full[:k]
    assert sum(state["samples_consumed_per_split"]) == k
    resumed = StreamingDataset(table, **kw)
    resumed.load_state_dict(state)
    rest = [r["id"] for r in resumed]
    assert head + rest == full  # every row once, in the order of an uninterrupted epoch
    stop_after.open = None  # a break's iterator closes: the dataset itself goes on too
    assert [r["id"] for r in ds] == rest


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(4, 40),
    kw=ROWS_KW,
    bad=st.sets(st.integers(0, 39), max_size=3),
    at=st.floats(0, 1, exclude_max=True),
)
def test_an_interrupt_anywhere_leaves_a_state_of_the_rows_received(rows, kw, bad, at, hang_guard):
    """An interrupt at any point of the iteration's own thread (the transform's threads run
    on): the state counts exactly the rows the loop received, and the dataset goes on."""
    table = ids_table(rows)
    kw = dict(kw, transform=failing_on(bad), on_transform_error="skip")
    full = [r["id"] for r in StreamingDataset(table, **kw)]
    seen = events(lambda: StreamingDataset(table, **kw))
    ds = StreamingDataset(table, **kw)  # the threads' timing varies the events a little
    head, _ = interrupted(ds, 1 + int(at * seen))
    head = [r["id"] for r in head]
    state = ds.state_dict()
    assert head == full[: len(head)]
    resumed = StreamingDataset(table, **kw)
    resumed.load_state_dict(state)
    rest = [r["id"] for r in resumed]
    assert head + rest == full
    assert [r["id"] for r in ds] == rest  # the interrupted dataset is free and goes on


def docs_table(n: int, seed: int, nulls: frozenset[int] = frozenset()):
    """Rows ``id`` and ``tokens`` (:func:`docs_of`: row ``i``'s tokens are ``i``), the rows
    ``nulls`` without tokens."""
    docs = docs_of(n, seed, nulls)
    return lancetorch.connect("memory://").create_table(
        "docs",
        pa.table(
            {"id": pa.array(range(n), pa.int64()), "tokens": pa.array(docs, pa.list_(pa.int32()))}
        ),
    )


PACK_KW = st.fixed_dictionaries(
    {
        "num_splits": st.sampled_from([1, 2, 3]),
        "shuffle": st.booleans(),
        "shuffle_seed": st.integers(0, 2**32 - 1),
        "read_batch_size": st.integers(1, 4),
        "pack_sequences": st.integers(2, 9),
    }
)


def packing(kw: dict, blocks_per_split: int) -> dict:
    return dict(
        kw,
        columns=["tokens"],
        eos_id=-1,
        pad_id=-2,
        blocks_per_epoch=blocks_per_split * kw["num_splits"],
    )


@PROPS
@given(
    rows=st.integers(3, 40),
    kw=PACK_KW,
    blocks=st.integers(1, 12),
    how=st.sampled_from(["break", "raise", "throw", "trace"]),
    at=st.floats(0, 1, exclude_max=True),
)
def test_a_packed_state_resumes_with_exactly_the_rest(rows, kw, blocks, how, at, hang_guard):
    table = docs_table(rows, kw["shuffle_seed"])
    kw = packing(kw, blocks)
    if rows < kw["num_splits"]:
        return
    full = [b["input_ids"].tolist() for b in StreamingDataset(table, **kw)]
    n = kw["num_splits"]
    ds = StreamingDataset(table, **kw)
    if how == "trace":
        seen = events(lambda: StreamingDataset(table, **kw))
        got, _ = interrupted(ds, 1 + int(at * seen))
    else:
        steps = int(at * (blocks + 1)) if how == "break" else 1 + int(at * blocks)
        got = stop_after(ds, steps * n, how)
    head = [b["input_ids"].tolist() for b in got]
    assert head == full[: len(head)]
    if len(head) % n:  # mid-step: refused, as documented
        with pytest.raises(RuntimeError, match="step boundary"):
            ds.state_dict()
        return
    state = ds.state_dict()
    assert state["blocks_emitted_per_split"] == [len(head) // n] * n
    resumed = StreamingDataset(table, **kw)
    resumed.load_state_dict(state)
    rest = [b["input_ids"].tolist() for b in resumed]
    assert head + rest == full
    stop_after.open = None


@PROPS
@given(
    rows=st.integers(3, 40),
    kw=PACK_KW,
    blocks=st.integers(1, 12),
    nulls=st.frozensets(st.integers(0, 39), max_size=3),
)
def test_packed_blocks_against_a_plain_reference(rows, kw, blocks, nulls):
    """LanceDB's blocks of a whole epoch, in plain Python from the permutation table: each
    split's rows one after another, each followed by EOS (rows without tokens skipped), cut
    into blocks of L (padded once the split runs dry), one block per split in turn;
    ``doc_ids`` count the documents started in the block after its first token."""
    table = docs_table(rows, kw["shuffle_seed"], nulls)
    docs = docs_of(rows, kw["shuffle_seed"], nulls)
    kw = dict(packing(kw, blocks), on_transform_error="skip")
    if rows < kw["num_splits"]:
        return
    ds = StreamingDataset(table, **kw)
    got = [{k: v.tolist() for k, v in b.items()} for b in ds]
    length, n = kw["pack_sequences"], kw["num_splits"]
    per_split = []
    for split_rows in splits_of(ds):
        stream: list[int] = []
        starts = set()
        for row in split_rows:
            if docs[row] is not None:
                starts.add(len(stream))
                stream += docs[row] + [kw["eos_id"]]
        out = []
        for j in range(blocks):
            part = stream[j * length : (j + 1) * length]
            doc_ids, doc = [], 0
            for t in range(length):
                doc += t > 0 and j * length + t in starts
                doc_ids.append(doc)
            out.append(
                {"input_ids": part + [kw["pad_id"]] * (length - len(part)), "doc_ids": doc_ids}
            )
        per_split.append(out)
    assert got == [per_split[s][j] for j in range(blocks) for s in range(n)]


# -- pack_blocks: the Loader's packed outputs, fixed (B, L) ------------------------------------


def packed_reference(ds, docs, kw) -> list[dict]:
    """The samples of a whole epoch of a ``pack_blocks`` dataset on one rank, in plain Python
    from the permutation table: each split's rows, one after another, each followed by EOS
    and numbered ``position * num_splits + split``, cut into items of B blocks of L (padded
    once the split runs dry, cut at the budget), one item per split in turn."""
    n, length, per = kw["num_splits"], kw["pack_sequences"], kw["pack_blocks"]
    cells, items = length * per, kw["blocks_per_epoch"] // n // per
    per_split = []
    for s, rows in enumerate(splits_of(ds)):
        stream = [
            (t, k * n + s)
            for k, row in enumerate(rows)
            if docs[row] is not None  # skipped: its position is not reused
            for t in docs[row] + [kw["eos_id"]]
        ]
        per_split.append(
            [reference_item(stream[j * cells : (j + 1) * cells], kw) for j in range(items)]
        )
    return [per_split[s][j] for j in range(items) for s in range(n)]


def reference_item(part: list[tuple[int, int]], kw) -> dict:
    """One item from its (token, document) pairs: positions restart at each document and
    each block; cu_seqlens end each run (a document within a block), padding in none."""
    length, per, c = kw["pack_sequences"], kw["pack_blocks"], "tokens"
    pad = length * per - len(part)
    positions, cu, run = [], [0], 0
    for i, (_, doc) in enumerate(part):
        if i and (i % length == 0 or doc != part[i - 1][1]):
            cu.append(i)
            run = 0
        positions.append(run)
        run += 1
    if part:
        cu.append(len(part))
    return {
        c: [t for t, _ in part] + [kw["pad_id"]] * pad,
        f"{c}_document": [d for _, d in part] + [-1] * pad,
        f"{c}_position": positions + [0] * pad,
        f"{c}_cu_seqlens": cu,
        f"{c}_max_seqlen": max((b - a for a, b in zip(cu, cu[1:])), default=0),
    }


def plain(item: dict, kw) -> dict:
    """An item's tensors as lists, each checked for its shape and type."""
    per, length, c = kw["pack_blocks"], kw["pack_sequences"], "tokens"
    want = {c: torch.int64, f"{c}_document": torch.int64, f"{c}_position": torch.int32}
    for name, dtype in want.items():
        assert item[name].shape == (per, length) and item[name].dtype == dtype, name
    assert item[f"{c}_cu_seqlens"].dtype == item[f"{c}_max_seqlen"].dtype == torch.int32
    assert item[f"{c}_max_seqlen"].shape == ()
    return {k: v.flatten().tolist() if v.dim() else int(v) for k, v in item.items()}


BLOCKS_KW = st.fixed_dictionaries(
    {
        "num_splits": st.sampled_from([1, 2, 4]),
        "shuffle": st.booleans(),
        "shuffle_seed": st.integers(0, 2**32 - 1),
        "read_batch_size": st.integers(1, 4),
        "pack_sequences": st.integers(1, 9),
        "pack_blocks": st.integers(1, 3),
    }
)


def blocks_kw(kw: dict, items: int) -> dict:
    per = kw["num_splits"] * kw["pack_blocks"]
    return dict(kw, columns=["tokens"], eos_id=-1, pad_id=-2, blocks_per_epoch=items * per)


def docs_of(n: int, seed: int, nulls: frozenset[int] = frozenset()) -> list[list[int] | None]:
    rng = random.Random(seed)
    docs: list[list[int] | None] = [[i] * rng.randint(1, 7) for i in range(n)]
    return [None if i in nulls else d for i, d in enumerate(docs)]


@PROPS
@given(
    rows=st.integers(4, 40),
    kw=BLOCKS_KW,
    items=st.integers(1, 8),
    nulls=st.frozensets(st.integers(0, 39), max_size=3),
)
def test_pack_blocks_gives_the_loaders_outputs_against_a_plain_reference(rows, kw, items, nulls):
    """Rows without tokens (``nulls``) are skipped: the others keep their numbers."""
    table = docs_table(rows, kw["shuffle_seed"], nulls)
    docs = docs_of(rows, kw["shuffle_seed"], nulls)
    kw = dict(blocks_kw(kw, items), on_transform_error="skip")
    ds = StreamingDataset(table, **kw)
    got = [plain(item, kw) for item in ds]
    assert got == packed_reference(ds, docs, kw)


def test_pack_blocks_with_room_gives_every_token_once_and_the_loaders_meaning():
    """A budget with room: every token of the table once (then padding), and the outputs mean
    what the Loader's packed Tokens outputs mean (the same Rust packer)."""
    docs = docs_of(30, 3)
    table = docs_table(30, 3)
    kw = {"num_splits": 2, "shuffle": True, "shuffle_seed": 3, "pack_sequences": 8}
    kw = blocks_kw(dict(kw, pack_blocks=2), items=12)
    items = list(StreamingDataset(table, **kw))
    tokens = torch.cat([i["tokens"].flatten() for i in items])
    real = tokens[(tokens != -1) & (tokens != -2)]
    assert sorted(real.tolist()) == sorted(t for d in docs for t in d)
    assert int((tokens == -1).sum()) == len(docs)  # one EOS a document
    rows_of: dict[int, set] = {}
    for item in items:
        doc, pos = item["tokens_document"].flatten(), item["tokens_position"].flatten()
        cu = item["tokens_cu_seqlens"].long()
        used = int(cu[-1])
        assert (doc[used:] == -1).all() and (doc[:used] >= 0).all()  # padding at the end
        lengths = cu.diff()
        if len(lengths):
            assert int(item["tokens_max_seqlen"]) == int(lengths.max())
        # Each segment is one document within one block, numbered 0, 1, ... in it.
        for a, b in zip(cu[:-1].tolist(), cu[1:].tolist()):
            assert len(set(doc[a:b].tolist())) == 1 and a // 8 == (b - 1) // 8
            assert pos[a:b].tolist() == list(range(b - a))
        # A document's tokens are one row's (the table's tokens name the row).
        for t, d in zip(item["tokens"].flatten()[:used].tolist(), doc[:used].tolist()):
            if t != -1:
                rows_of.setdefault(d, set()).add(t)
    assert len(rows_of) == len(docs) and all(len(r) == 1 for r in rows_of.values())


def split_of(item: dict, n: int) -> int | None:
    """The split an item came from (``None``: all padding, which every split gives alike)."""
    real = [d for d in item["tokens_document"] if d >= 0]
    return real[0] % n if real else None


def by_split(items: list[dict], n: int) -> dict:
    out: dict = {}
    for item in items:
        out.setdefault(split_of(item, n), []).append(item)
    return out


@PROPS
@given(rows=st.integers(4, 40), kw=BLOCKS_KW, items=st.integers(1, 6), data=st.data())
def test_pack_blocks_resume_between_any_two_samples_on_any_number_of_ranks(rows, kw, items, data):
    """Every rank stops after the same number of samples, mid-step or not; the merged state
    resumes on another (or the same) number of ranks with exactly the rest of every split."""
    table = docs_table(rows, kw["shuffle_seed"])
    kw = blocks_kw(kw, items)
    n = kw["num_splits"]
    if rows < n:
        return
    full = [plain(i, kw) for i in StreamingDataset(table, **kw)]
    before = data.draw(st.sampled_from(divisors(n)), label="world_before")
    after = data.draw(st.sampled_from(divisors(n)), label="world_after")
    stop = data.draw(st.integers(0, items * n // before), label="samples_per_rank")
    head, states = [], []
    for r in range(before):
        ds = StreamingDataset(table, rank=r, world_size=before, **kw)
        it = iter(ds)
        head += [plain(next(it), kw) for _ in range(stop)]
        states.append(ds.state_dict())
        it.close()
    state = StreamingDataset.merge_state_dicts(states) if before > 1 else states[0]
    rest = []
    for r in range(after):
        ds = StreamingDataset(table, rank=r, world_size=after, **kw)
        ds.load_state_dict(state)
        rest += [plain(i, kw) for i in ds]
    whole, heads, rests = by_split(full, n), by_split(head, n), by_split(rest, n)
    # Each split's samples in its order; all-padding samples, alike, as many as in the epoch.
    for split, samples in whole.items():
        got = heads.get(split, []) + rests.get(split, [])
        assert got == samples if split is not None else len(got) == len(samples)
    assert set(heads) | set(rests) == set(whole)


def test_pack_blocks_through_a_streaming_dataloader_resumes_between_any_two_batches():
    table = docs_table(24, 5)
    kw = {"num_splits": 2, "shuffle": True, "shuffle_seed": 5, "pack_sequences": 4}
    kw = blocks_kw(dict(kw, pack_blocks=3), items=6)

    def loader(ds):
        return StreamingDataLoader(ds, batch_size=None)

    full = [plain(b, kw) for b in loader(StreamingDataset(table, **kw))]
    assert len(full) == 12
    for cut in (1, 3, 6):
        ds = StreamingDataset(table, **kw)
        it = iter(loader(ds))
        head = [plain(next(it), kw) for _ in range(cut)]
        state = ds.state_dict()
        del it
        resumed = StreamingDataset(table, **kw)
        resumed.load_state_dict(state)
        rest = [plain(b, kw) for b in loader(resumed)]
        assert head + rest == full


# Golden: states saved by the packer that carried its stream in Python lists (before the
# partial items were numpy arrays), and the two items that followed each; the saved form is
# the same since.
GOLDEN_STATES = [
    (
        {"pack_sequences": 4, "pack_blocks": 2, "blocks_per_epoch": 12},
        3,
        {
            "samples_consumed_per_split": [3, 2],
            "blocks_emitted_per_split": [4, 2],
            "pack_buffers": {
                0: {"tokens": [2, 2, 2, 2, -1], "starts": [0], "documents": [4]},
                1: {"tokens": [7, 7, -1], "starts": [0], "documents": [3]},
            },
            "pack_blocks": 2,
        },
        [
            {
                "tokens": [[7, 7, -1, 8], [8, 8, 8, -1]],
                "tokens_document": [[3, 3, 3, 5], [5, 5, 5, 5]],
                "tokens_position": [[0, 1, 2, 0], [0, 1, 2, 3]],
                "tokens_cu_seqlens": [0, 3, 4, 8],
                "tokens_max_seqlen": 4,
            },
            {
                "tokens": [[2, 2, 2, 2], [-1, 3, 3, 3]],
                "tokens_document": [[4, 4, 4, 4], [4, 6, 6, 6]],
                "tokens_position": [[0, 1, 2, 3], [0, 0, 1, 2]],
                "tokens_cu_seqlens": [0, 4, 5, 8],
                "tokens_max_seqlen": 4,
            },
        ],
    ),
    (
        {"pack_sequences": 5, "blocks_per_epoch": 8},
        2,
        {
            "samples_consumed_per_split": [1, 1],
            "blocks_emitted_per_split": [1, 1],
            "pack_buffers": {
                0: {"tokens": [0, 0, -1], "starts": []},
                1: {"tokens": [-1], "starts": []},
            },
        },
        [
            {"input_ids": [0, 0, -1, 1, 1], "doc_ids": [0, 0, 0, 1, 1]},
            {"input_ids": [-1, 7, 7, 7, 7], "doc_ids": [0, 1, 1, 1, 1]},
        ],
    ),
]


@pytest.mark.parametrize("packing_kw, after, saved, then", GOLDEN_STATES)
def test_packed_states_keep_their_saved_form_and_resume_as_before(packing_kw, after, saved, then):
    table = docs_table(12, 0)
    kw = dict(packing_kw, num_splits=2, shuffle=False, columns=["tokens"], eos_id=-1, pad_id=-2)
    state = dict(saved, shuffle_seed=0, num_splits=2, epoch=0, pack_sequences=kw["pack_sequences"])
    state.update(eos_id=-1, pad_id=-2, blocks_per_epoch=kw["blocks_per_epoch"])
    ds = StreamingDataset(table, **kw)
    it = iter(ds)
    for _ in range(after):
        next(it)
    assert ds.state_dict() == state
    resumed = StreamingDataset(table, **kw)
    resumed.load_state_dict(state)
    got = [{k: v.tolist() for k, v in item.items()} for item in resumed]
    assert got[:2] == then == [{k: v.tolist() for k, v in next(it).items()} for _ in range(2)]


@pytest.mark.parametrize("per", [None, 2])
def test_packed_tokens_past_int64_are_refused(per):
    tokens = pa.array([[1, 2], [2**63]], pa.list_(pa.uint64()))
    table = lancetorch.connect("memory://").create_table("t", pa.table({"tokens": tokens}))
    kw = blocks_kw({"num_splits": 1, "pack_sequences": 4, "pack_blocks": per or 1}, 1)
    ds = StreamingDataset(table, shuffle=False, **dict(kw, pack_blocks=per))
    with pytest.raises(ValueError, match=r"column 'tokens' holds the token 9223372036854775808"):
        list(ds)


def test_pack_blocks_arguments_are_checked():
    table = docs_table(20, 0)
    kw = blocks_kw({"num_splits": 2, "pack_sequences": 4, "pack_blocks": 3}, 2)
    with pytest.raises(ValueError, match=r"num_splits \* pack_blocks"):
        StreamingDataset(table, **dict(kw, blocks_per_epoch=8))
    with pytest.raises(ValueError, match="needs pack_sequences"):
        StreamingDataset(table, num_splits=2, columns=["tokens"], pack_blocks=2)
    with pytest.raises(TypeError, match="pack_blocks"):
        StreamingDataset(table, **dict(kw, pack_blocks=2.5))
    with pytest.raises(ValueError, match="pack_blocks"):
        StreamingDataset(table, **dict(kw, pack_blocks=0))
    ds = StreamingDataset(table, **kw)
    state = saved_after(ds, 1)
    assert state["blocks_emitted_per_split"] == [3, 0]  # between the splits' turns
    lancedb = dict(kw)
    del lancedb["pack_blocks"]
    with pytest.raises(ValueError, match="pack_blocks mismatch"):
        StreamingDataset(table, **lancedb).load_state_dict(state)
    broken = {0: dict(state["pack_buffers"][0], documents=[])}
    with pytest.raises(ValueError, match="number each document"):
        StreamingDataset(table, **kw).load_state_dict(dict(state, pack_buffers=broken))
    unnumbered = {0: {k: v for k, v in state["pack_buffers"][0].items() if k != "documents"}}
    with pytest.raises(ValueError, match=r"\[0\] has \['starts', 'tokens'\], no 'documents'"):
        StreamingDataset(table, **kw).load_state_dict(dict(state, pack_buffers=unnumbered))


HAMMER = textwrap.dedent(
    """
    import _thread, random, signal, sys, threading, time
    import pyarrow as pa
    import lancetorch
    from lancetorch.streaming import StreamingDataset

    rows, interrupts = int(sys.argv[1]), int(sys.argv[2])
    table = lancetorch.connect("memory://").create_table(
        "t", pa.table({"id": pa.array(range(rows), pa.int64())})
    )

    def slow(batch):  # keeps the pipeline's threads busy
        time.sleep(0.0002)
        return [{"id": i} for i in batch.column("id").to_pylist()]

    def make():
        return StreamingDataset(
            table, num_splits=8, shuffle_seed=1, read_batch_size=2, transform=slow,
            transform_parallelism=2,
        )

    armed = False

    def handler(signum, frame):  # an interrupt only while the loop runs
        if armed:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    sent = 0

    def pester():
        global sent
        r = random.Random(0)
        while sent < interrupts:
            time.sleep(r.choice([0.0005, 0.002, 0.004, 0.02]))
            sent += 1
            _thread.interrupt_main()

    threading.Thread(target=pester, daemon=True).start()
    got, caught, state, kept = [], 0, None, []
    while True:
        ds = make()
        kept.append(ds)  # none freed while armed (a freed RawArray is not interrupt-safe)
        if state is not None:
            ds.load_state_dict(state)
        armed = True
        try:
            for row in ds:
                got.append(row["id"])
            armed = False
            break
        except KeyboardInterrupt:
            armed = False
            caught += 1
            state = ds.state_dict()
    for _ in range(600):  # the threads of every iteration leave
        if not any(t.name.startswith("lancetorch-streaming") for t in threading.enumerate()):
            break
        time.sleep(0.05)
    left = sum(t.name.startswith("lancetorch-streaming") for t in threading.enumerate())
    exact = sorted(got) == list(range(rows))
    print("caught", caught, "rows", len(got), "exact", exact, "left", left)
    """
)


@pytest.mark.slow
def test_repeated_interrupts_never_hang_nor_lose_a_row():
    """Interrupts sent to the main thread while the pipeline is busy (the transform sleeps):
    each iteration stops, its state resumes the next, every row comes once, the threads
    leave and the process ends (a hang fails at the timeout instead of hanging pytest)."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", HAMMER, "20000", "1500"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"the process hung under repeated interrupts: {str(err.stderr)[-2000:]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    words = proc.stdout.split()
    assert words[words.index("exact") + 1] == "True", proc.stdout
    assert words[words.index("left") + 1] == "0", proc.stdout
    assert int(words[words.index("caught") + 1]) > 0, proc.stdout


def saved_after(ds, k: int) -> dict:
    it = iter(ds)
    for _ in range(k):
        next(it)
    state = ds.state_dict()
    it.close()
    return state


@pytest.mark.parametrize(
    "change, error, words",
    [
        ({"epoch": 1}, ValueError, r"saved in epoch 1 and this dataset reads epoch 0.*epoch=1"),
        (
            {"positions_consumed_per_split": [1, 1]},
            ValueError,
            r"split 0: positions_consumed_per_split is 1, behind samples_consumed_per_split 2",
        ),
        ({"samples_consumed_per_split": [2]}, ValueError, r"one count per split, 2 .*got 1"),
        ({"positions_consumed_per_split": [2, 1, 0]}, ValueError, r"one count per split"),
        ({"samples_consumed_per_split": [-1, 1]}, ValueError, r"\[0\] \(split 0\) is -1"),
        (
            {"samples_consumed_per_split": [2, 11], "positions_consumed_per_split": [2, 11]},
            ValueError,
            r"\[1\] \(split 1\) is 11.*from 0 to 10",
        ),
        ({"positions_consumed_per_split": [2, 12]}, ValueError, r"split 1\) is 12.*from 0 to 10"),
        ({"samples_consumed_per_split": [1.5, 1]}, ValueError, r"whole number, got 1.5"),
        ({"samples_consumed_per_split": ["2", 1]}, ValueError, r"whole number, got '2'"),
        ({"positions_consumed_per_split": [True, 1]}, ValueError, r"whole number, got True"),
        ({"samples_consumed_per_split": 11}, ValueError, r"is 11.*from 0 to 10"),
        ({"epoch": None}, ValueError, r"\['epoch'\] must be a whole number"),
        ({"pack_buffers": {}}, ValueError, r"blocks_emitted_per_split"),
    ],
)
def test_inconsistent_states_are_refused(change, error, words):
    table = ids_table(20)
    ds = StreamingDataset(table, num_splits=2, shuffle=False)
    state = saved_after(ds, 3)
    assert state["samples_consumed_per_split"] == [2, 1]
    fresh = StreamingDataset(table, num_splits=2, shuffle=False)
    with pytest.raises(error, match=words):
        fresh.load_state_dict(dict(state, **change))
    if "epoch" not in change:  # merging checks the counts the same way (not the split sizes)
        bad = dict(state, **change)
        if "from 0 to 10" not in words:
            with pytest.raises(error, match=r"states\[1\]"):
                StreamingDataset.merge_state_dicts([state, bad])
    fresh.load_state_dict(state)  # the good one is taken
    full = [r["id"] for r in StreamingDataset(table, num_splits=2, shuffle=False)]
    assert [r["id"] for r in fresh] == full[3:]


def test_a_state_of_another_epoch_is_refused_and_says_what_to_do():
    table = ids_table(30)
    state = saved_after(StreamingDataset(table, num_splits=3, shuffle_seed=4, epoch=2), 5)
    with pytest.raises(ValueError) as err:
        StreamingDataset(table, num_splits=3, shuffle_seed=4, epoch=3).load_state_dict(state)
    message = str(err.value)
    assert "epoch 2" in message and "epoch 3" in message
    assert "epoch=2" in message and "fresh" in message
    again = StreamingDataset(table, num_splits=3, shuffle_seed=4, epoch=2)
    again.load_state_dict(state)
    assert len(list(again)) == 30 - 5


def test_missing_keys_and_other_things_than_a_dict_are_refused():
    ds = StreamingDataset(ids_table(10), num_splits=2)
    state = ds.state_dict()
    for key in ("epoch", "num_splits", "shuffle_seed", "samples_consumed_per_split"):
        with pytest.raises(ValueError, match=f"has no '{key}'"):
            ds.load_state_dict({k: v for k, v in state.items() if k != key})
    with pytest.raises(TypeError, match="must be the dict"):
        ds.load_state_dict([1, 2])
    with pytest.raises(TypeError, match=r"states\[0\] must be the dict"):
        StreamingDataset.merge_state_dicts([None])


def test_inconsistent_packed_states_are_refused():
    table = docs_table(20, 0)
    kw = packing({"num_splits": 2, "shuffle": False, "pack_sequences": 4}, 5)
    ds = StreamingDataset(table, **kw)
    state = saved_after(ds, 4)
    assert state["blocks_emitted_per_split"] == [2, 2]
    cases = [
        ({"epoch": 4}, r"saved in epoch 4"),
        ({"blocks_emitted_per_split": [6, 6]}, r"split 0\) is 6.*from 0 to 5"),
        ({"blocks_emitted_per_split": [2]}, r"one count per split"),
        ({"samples_consumed_per_split": [11, 3]}, r"split 0\) is 11.*from 0 to 10"),
        ({"pack_buffers": {"7": {"tokens": [], "starts": []}}}, r"key '7', not a split"),
        ({"pack_buffers": {0: {"tokens": [1, 2]}}}, r"'tokens' and 'starts'"),
        ({"pack_buffers": {0: {"tokens": [1, 2], "starts": [2]}}}, r"starts \[2\] outside"),
        ({"pack_buffers": {0: {"tokens": [1, 0.5], "starts": [0]}}}, r"list of whole numbers"),
        ({"pack_buffers": {0: {"tokens": [2**63], "starts": [0]}}}, r"whole numbers \(int64\)"),
    ]
    for change, words in cases:
        with pytest.raises(ValueError, match=words):
            StreamingDataset(table, **kw).load_state_dict(dict(state, **change))
    unpacked = StreamingDataset(table, num_splits=2, columns=["tokens"])
    with pytest.raises(ValueError, match="packed state"):
        unpacked.load_state_dict(state)
    resumed = StreamingDataset(table, **kw)
    resumed.load_state_dict(state)
    assert len(list(resumed)) == 10 - 4
