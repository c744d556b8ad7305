"""BatchSampler: index batches made in Rust, reshuffled per epoch from (seed, epoch)."""

from __future__ import annotations

import lancetorch
import numpy as np
import pyarrow as pa
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lancetorch import _native
from lancetorch.sampler import BatchSampler, Windows
from lancetorch.util import tbl_to_tensor
from test_windows import reference_order, reference_windows


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 300), bs=st.integers(1, 50), drop=st.booleans(), seed=st.integers(0, 2**64 - 1)
)
def test_every_position_once_per_epoch(n, bs, drop, seed):
    s = BatchSampler(n, bs, seed=seed, drop_last=drop)
    batches = list(s)
    assert len(batches) == len(s)
    assert all(b.dtype == np.int64 for b in batches)
    got = np.concatenate(batches) if batches else np.array([], dtype=np.int64)
    if drop:
        assert all(len(b) == bs for b in batches)
        assert len(got) == n - n % bs
        assert len(set(got.tolist())) == len(got)
    else:
        assert sorted(got.tolist()) == list(range(n))


def test_orders_follow_seed_and_epoch():
    a, b = BatchSampler(1000, 100, seed=3), BatchSampler(1000, 100, seed=3)
    first = np.concatenate(list(a))
    assert np.array_equal(first, np.concatenate(list(b)))
    second = np.concatenate(list(a))  # the next pass is the next epoch
    assert not np.array_equal(first, second)
    a.set_epoch(0)
    assert np.array_equal(np.concatenate(list(a)), first)
    assert not np.array_equal(first, np.concatenate(list(BatchSampler(1000, 100, seed=4))))


def test_golden_epoch_orders():
    """Locked: a release that changes these reorders every seeded epoch of every user."""
    s = BatchSampler(8, 8, seed=42)
    assert s.order(0).tolist() == [2, 5, 3, 6, 4, 0, 1, 7]
    assert s.order(1).tolist() == [1, 3, 4, 7, 5, 2, 0, 6]


def test_unshuffled_and_unseeded():
    assert np.concatenate(list(BatchSampler(7, 3, shuffle=False))).tolist() == list(range(7))
    x, y = BatchSampler(500, 500), BatchSampler(500, 500)
    assert not np.array_equal(next(iter(x)), next(iter(y)))


@pytest.mark.parametrize("bad", [dict(batch_size=0), dict(batch_size=-1)])
def test_bad_arguments(bad):
    with pytest.raises(ValueError, match="batch_size"):
        BatchSampler(10, **bad)


def test_dataloader_with_batch_sampler_gives_every_row_once():
    n = 5000
    table = lancetorch.connect("memory://").create_table(
        "t", pa.table({"id": np.arange(n), "x": np.arange(n, dtype=np.float32)})
    )
    loader = torch.utils.data.DataLoader(
        table, batch_sampler=BatchSampler(table, 512, seed=1), collate_fn=tbl_to_tensor
    )
    for _ in range(2):
        batches = list(loader)
        ids = torch.cat([b[0] for b in batches]).long()
        assert sorted(ids.tolist()) == list(range(n))
        assert all(torch.equal(b[0], b[1]) for b in batches), "id and x come from the same row"


# ---- the bijection order ------------------------------------------------------------------------
def bijection(n, seed, epoch, positions=None):
    positions = np.arange(n, dtype=np.int64) if positions is None else np.asarray(positions)
    return _native.bijection_rows(n, seed, epoch, pa.array(positions, pa.int64())).to_numpy()


def test_golden_bijection_orders():
    """Locked, as the Fisher-Yates orders are: resumed runs depend on them."""
    assert bijection(10, 42, 0).tolist() == [4, 2, 9, 6, 8, 0, 3, 5, 1, 7]
    assert bijection(10, 42, 1).tolist() == [4, 1, 9, 0, 8, 7, 5, 3, 6, 2]
    # A table of three billion rows: no index array, any position at once.
    assert bijection(3_000_000_000, 7, 2, [0, 1, 2_999_999_999]).tolist() == [
        2_968_442_575,
        695_869_406,
        2_328_829_011,
    ]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 5000), seed=st.integers(0, 2**64 - 1), epoch=st.integers(0, 1000))
def test_bijection_reads_every_row_once(n, seed, epoch):
    rows = bijection(n, seed, epoch)
    assert np.array_equal(np.sort(rows), np.arange(n))
    some = np.array([0, n // 2, n - 1])
    assert np.array_equal(bijection(n, seed, epoch, some), rows[some]), "position by position"


def test_bijection_is_uniform_enough():
    """Which row comes first, over 20000 seeds: each of 10 rows about 2000 times."""
    first = [int(bijection(10, s, 0, [0])[0]) for s in range(20000)]
    counts = np.bincount(first, minlength=10)
    assert counts.min() > 1800 and counts.max() < 2200, counts
    assert (bijection(1000, 1, 0) == bijection(1000, 1, 1)).sum() < 10, "epochs unrelated"


def test_bijection_refuses_positions_outside():
    with pytest.raises(IndexError, match="position 5"):
        bijection(5, 1, 0, [0, 5])


def test_sampler_order_choice():
    assert BatchSampler(10, 2, seed=1).order_kind == "fisher-yates"
    big = BatchSampler(10**10, 4096, seed=1)
    assert big.order_kind == "bijection"
    first = next(iter(big))
    assert first.dtype == np.int64 and len(first) == 4096 and len(set(first.tolist())) == 4096
    assert first.min() >= 0 and first.max() < 10**10
    s = BatchSampler(100, 7, seed=5, order="bijection")
    assert sorted(np.concatenate(list(s)).tolist()) == list(range(100))
    assert s.order(0).tolist() == bijection(100, 5, 0).tolist()
    with pytest.raises(ValueError, match="clump_size needs order='fisher-yates'"):
        BatchSampler(100, 7, order="bijection", clump_size=4)
    with pytest.raises(ValueError, match="order must be one of"):
        BatchSampler(100, 7, order="random")


# ---- sharding across ranks -----------------------------------------------------------------
def shards(n, bs, world, **kw):
    return [
        np.concatenate(
            list(BatchSampler(n, bs, rank=r, world_size=world, **kw))
            or [np.array([], dtype=np.int64)]
        )
        for r in range(world)
    ]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 400),
    bs=st.integers(1, 40),
    world=st.integers(1, 5),
    seed=st.integers(0, 2**64 - 1),
    order=st.sampled_from(["fisher-yates", "bijection"]),
)
def test_ranks_split_every_epoch(n, bs, world, seed, order):
    padded = shards(n, bs, world, seed=seed, order=order)
    assert len({len(s) for s in padded}) == 1, "every rank reads as many rows"
    every = np.concatenate(padded)
    assert len(every) == -(-n // world) * world
    assert sorted(set(every.tolist())) == list(range(n))
    full = BatchSampler(n, bs, seed=seed, order=order, world_size=1).order(0)
    for r, s in enumerate(padded):  # rank r reads positions r, r + W, ... of the one order
        positions = np.arange(r, len(s) * world, world) % max(n, 1)
        assert np.array_equal(s, full[positions])
    dropped = shards(n, bs, world, seed=seed, order=order, uneven="drop")
    every = np.concatenate(dropped)
    assert len(every) == n - n % world and len(set(every.tolist())) == len(every)


def test_rank_and_world_from_the_environment(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    s = BatchSampler(30, 5, seed=9)
    assert (s.rank, s.world_size) == (1, 3) and len(s) == 2
    assert BatchSampler(30, 5, seed=9, world_size=1, rank=0).world_size == 1
    alone = BatchSampler(30, 5, seed=9, world_size=1)  # rank 1 of 3 asks for every row
    assert (alone.rank, alone.world_size) == (0, 1) and len(alone) == 6
    assert BatchSampler(30, 5, seed=9, world_size=3).rank == 1, "the found rank, same world"
    with pytest.raises(ValueError, match="same seed on every rank"):
        BatchSampler(30, 5)
    assert BatchSampler(30, 5, shuffle=False).world_size == 3, "in order: no seed needed"
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two' is not an integer"):
        BatchSampler(30, 5, seed=1)
    with pytest.raises(ValueError, match="rank=3 with world_size=3"):
        BatchSampler(30, 5, seed=1, rank=3, world_size=3)


def test_dataloader_workers_within_a_rank_do_not_overlap():
    n = 3000
    table = lancetorch.connect("memory://").create_table("t", pa.table({"id": np.arange(n)}))
    seen = []
    for rank in range(2):
        sampler = BatchSampler(table, 128, seed=11, rank=rank, world_size=2)
        loader = torch.utils.data.DataLoader(
            table,
            batch_sampler=sampler,
            collate_fn=tbl_to_tensor,
            num_workers=2,
            multiprocessing_context="spawn",
        )
        ids = torch.cat([b[0] for b in loader]).tolist()
        assert len(ids) == len(set(ids)) == n // 2
        assert ids == sampler.shard_rows(0).tolist(), "in the sampler's order"
        seen += ids
    assert sorted(seen) == list(range(n))


# ---- resuming ------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 300),
    bs=st.integers(1, 30),
    stop=st.integers(0, 40),
    world=st.integers(1, 4),
    later=st.integers(1, 4),
    seed=st.integers(0, 2**63),
    order=st.sampled_from(["fisher-yates", "bijection"]),
)
def test_resume_reads_exactly_the_rest(n, bs, stop, world, later, seed, order):
    """Stop every rank after ``stop`` batches, resume on ``later`` ranks: the epoch's rows not
    yet read come once each (padding aside) and nothing read before comes again."""
    kw = dict(seed=seed, order=order)
    first = [BatchSampler(n, bs, rank=r, world_size=world, **kw) for r in range(world)]
    iters = [iter(s) for s in first]
    before = []
    for it in iters:
        for _ in range(stop):
            batch = next(it, None)
            if batch is not None:
                before.append(batch)
    states = [s.state_dict() for s in first]
    assert all(st_ == states[0] for st_ in states), "every rank saves the same state"
    state = states[0]
    resumed = [BatchSampler(n, bs, rank=r, world_size=later, **kw) for r in range(later)]
    for s in resumed:
        s.load_state_dict(state)
    after = [np.concatenate(list(s) or [np.array([], dtype=np.int64)]) for s in resumed]
    read_before = set(np.concatenate(before).tolist()) if before else set()
    if state["epoch"] == 1:  # the first run had finished the epoch
        assert state["position"] == 0 and read_before == set(range(n))
        return
    rest = np.concatenate(after)
    order = first[0].order(0)
    assert len(read_before) == state["position"] and read_before == set(
        order[: state["position"]].tolist()
    )
    assert set(rest.tolist()) == set(order[state["position"] :].tolist())
    assert len(rest) == -(-(n - state["position"]) // later) * later
    assert [s.epoch for s in resumed] == [1] * later, "then the next epoch"


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 200),
    bs=st.integers(1, 30),
    world=st.integers(1, 3),
    drop=st.booleans(),
    counts=st.lists(st.integers(0, 4), max_size=6),
)
def test_begin_epoch_and_record_are_what_iterating_does(n, bs, world, drop, counts):
    """A reader that reads the sampler's rows itself (begin_epoch, then record per batch)
    leaves the sampler in the state iterating it leaves: the same positions, epochs, len."""
    kw = dict(seed=9, rank=world - 1, world_size=world, drop_last=drop)
    iterated, counted = BatchSampler(n, bs, **kw), BatchSampler(n, bs, **kw)
    total = len(counted)
    it = iter(iterated)
    assert counted.begin_epoch() == (0, 0)
    handed = 0
    for k in counts:
        k = min(k, total - handed)
        for _ in range(k):
            next(it)
        counted.record(k)
        handed += k
        if handed:  # (a generator begins its pass at its first batch)
            assert counted.state_dict() == iterated.state_dict()
    with pytest.raises(ValueError, match="handed out already"):
        counted.record(total - handed + 1)
    assert counted.begin_epoch() == (1, 0), "the next pass reads the next epoch"
    assert len(counted) == total


def test_record_needs_a_pass_begun():
    s = BatchSampler(100, 10, seed=1, world_size=1)
    with pytest.raises(ValueError, match="begin_epoch"):
        s.record()
    s.begin_epoch()
    s.record(3)
    assert s.state_dict()["position"] == 30
    s.set_epoch(4)
    with pytest.raises(ValueError, match="begin_epoch"):
        s.record()
    with pytest.raises(ValueError, match="batches"):
        BatchSampler(100, 10, seed=1, world_size=1).record(-1)


@pytest.mark.parametrize("drop", [False, True])
def test_batch_count_is_the_one_cut(drop):
    s = BatchSampler(103, 10, seed=1, world_size=1, drop_last=drop)
    assert s.batch_count(103) == len(s) == len(list(BatchSampler(103, 10, seed=1, drop_last=drop)))
    assert s.batched_rows(103) == (100 if drop else 103)
    assert s.batched_rows(9) == (0 if drop else 9) and s.batch_count(0) == 0


def test_resume_continues_in_the_same_order():
    a = BatchSampler(1000, 64, seed=3, world_size=1)
    whole = list(a)
    b = BatchSampler(1000, 64, seed=3, world_size=1)
    it = iter(b)
    head = [next(it) for _ in range(5)]
    state = b.state_dict()
    assert state["position"] == 5 * 64 and state["epoch"] == 0
    c = BatchSampler(1000, 64, seed=3, world_size=1)
    c.load_state_dict(state)
    assert len(c) == len(whole) - 5
    assert all(np.array_equal(x, y) for x, y in zip(head + list(c), whole))
    assert b.state_dict(batches=2)["position"] == 2 * 64, "a loop behind the sampler says so"
    with pytest.raises(ValueError, match="only 5 batches"):
        b.state_dict(batches=6)


def test_resume_refuses_a_state_of_another_order():
    state = BatchSampler(100, 10, seed=1, world_size=1).state_dict()
    with pytest.raises(ValueError, match="rows=100"):
        BatchSampler(101, 10, seed=1, world_size=1).load_state_dict(state)
    with pytest.raises(ValueError, match="shuffle=True"):
        BatchSampler(100, 10, shuffle=False).load_state_dict(state)
    with pytest.raises(ValueError, match="not a BatchSampler state"):
        BatchSampler(100, 10, seed=1).load_state_dict({"epoch": 0})
    other_seed = BatchSampler(100, 10, seed=2, world_size=1)
    other_seed.load_state_dict(state)
    assert other_seed.seed == 1, "the saved seed wins: the order is the saved one"


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(0, 300),
    world=st.integers(1, 5),
    data=st.data(),
    uneven=st.sampled_from(["pad", "drop"]),
    order=st.sampled_from(["fisher-yates", "bijection"]),
)
def test_shard_rows_is_the_batches_joined(n, world, data, uneven, order):
    """``shard_rows`` (what Loader reads) slices the order; the batches look each position
    up: both must give the same rows, resumed or not."""
    rank = data.draw(st.integers(0, world - 1))
    start = data.draw(st.integers(0, n))
    s = BatchSampler(n, 7, seed=5, rank=rank, world_size=world, uneven=uneven, order=order)
    size = s.shard_size(start)
    expected = s.rows_at(0, s.shard_positions(start, 0, size))
    assert s.shard_rows(0, start).tolist() == expected.tolist()
    full = s.order(0)
    positions = [start + i * world + rank for i in range(size)]
    wrapped = [p if p < n else start + (p - start) % (n - start) for p in positions]
    assert expected.tolist() == [int(full[p]) for p in wrapped]


FORKED_ORDER_SCRIPT = """
import os
import numpy as np, pyarrow as pa
from lancetorch import _native
positions = pa.array(np.arange(40_000, dtype=np.int64))
first = _native.bijection_rows(100_000, 1, 0, positions)  # large enough for the thread pool
pid = os.fork()
if pid == 0:
    again = _native.bijection_rows(100_000, 1, 0, positions)
    os._exit(0 if again.equals(first) else 1)
_, status = os.waitpid(pid, 0)
print("child exit", os.waitstatus_to_exitcode(status))
"""


def test_a_forked_child_computes_large_orders_on_its_own_thread():
    """A child forked after the pool started has none of its threads: a large order made
    there runs on the calling thread instead of waiting forever."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", FORKED_ORDER_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "child exit 0"


def test_split_ids_must_match_the_rows():
    with pytest.raises(ValueError, match="one split id per row: got 3 rows and 2 ids"):
        _native.shuffle_splits(pa.array([0, 1, 2], pa.uint64()), pa.array([0, 1], pa.uint32()), 1)


_HUGE_ORDER = """
from lancetorch import _native
from lancetorch.sampler import BatchSampler

def attempt(what, call):
    try:
        call()
        print(what, "returned")
    except MemoryError as e:
        print(what, "MemoryError", e)

attempt("constructor", lambda: BatchSampler(10**12, 4, seed=0, order="fisher-yates"))
attempt(
    "constructor clumps",
    lambda: BatchSampler(10**12, 4, seed=0, order="fisher-yates", clump_size=8),
)
attempt("native wide", lambda: _native.epoch_order(10**12, 0, 0))
attempt("native clumps", lambda: _native.epoch_order(10**12, 0, 0, 3, narrow=True))
# The first batch, where the free memory is not known when the sampler is made.
_native.available_memory = lambda: None
sampler = BatchSampler(10**12, 4, seed=0, order="fisher-yates")
attempt("first batch", lambda: next(iter(sampler)))
"""


def test_an_order_larger_than_memory_is_a_memory_error_not_an_abort():
    """BatchSampler(10**12, order='fisher-yates') once asked for 8 TB outside the memory
    check and aborted the interpreter: run in a child, so that an abort fails this test. The
    machines the tests run on have less than the 4 TB these orders need."""
    import subprocess
    import sys

    free = _native.available_memory()
    if free is None or free >= 4 * 10**12:
        pytest.skip("the memory free is unknown, or enough for an order of 10**12 rows")
    out = subprocess.run(
        [sys.executable, "-c", _HUGE_ORDER], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    by_call = {}
    for line in out.stdout.splitlines():
        for what in (
            "constructor clumps",
            "constructor",
            "native wide",
            "native clumps",
            "first batch",
        ):
            if line.startswith(what + " "):
                by_call.setdefault(what, line[len(what) + 1 :])
    assert set(by_call) == {
        "constructor",
        "constructor clumps",
        "native wide",
        "native clumps",
        "first batch",
    }, out.stdout
    for what, said in by_call.items():
        assert said.startswith("MemoryError"), (what, said)
    for what in ("constructor", "constructor clumps", "first batch"):
        assert "BatchSampler of 1000000000000 rows" in by_call[what]
        assert "use order='bijection'" in by_call[what]
    assert "8000000000000 bytes (8 a row)" in by_call["constructor"]
    assert "of 1000000000000 positions" in by_call["native wide"]
    assert "of 1000000000000 positions" in by_call["native clumps"]
    assert "of 1000000000000 positions" in by_call["first batch"], "the core's size is kept"


# ---- the windowed order ----------------------------------------------------------------------
def test_windowed_order_keeps_the_golden_vectors_of_the_loader():
    """The one-rank windowed order as the Loader read it (tests/test_windows.py), from the
    sampler alone."""
    s = BatchSampler(500, 64, seed=7, world_size=1, order=Windows(clump_size=16, window_rows=120))
    assert s.order_kind == "windows(clump_size=16, window_rows=120)"
    first = s.order(0)
    assert first[:12].tolist() == [114, 140, 147, 325, 323, 328, 391, 158, 393, 115, 143, 150]
    assert first[200:206].tolist() == [285, 342, 95, 283, 91, 241]
    assert s.order(1)[:12].tolist() == [425, 112, 426, 281, 30, 302, 114, 20, 19, 418, 296, 147]


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 400),
    bs=st.integers(1, 40),
    clump=st.integers(1, 30),
    window=st.integers(1, 150),
    world=st.integers(1, 4),
    seed=st.integers(0, 2**32),
    shuffle=st.booleans(),
    uneven=st.sampled_from(["pad", "drop"]),
)
def test_windowed_shards_are_the_loaders_of_before(
    n, bs, clump, window, world, seed, shuffle, uneven
):
    """Each rank's batches of the windowed order are positions r, r + W, ... of the order the
    Loader read before (each window laid out for W ranks: tests/test_windows.py's reference),
    padded or dropped as the other orders are; shard_windows cuts them by window."""
    laid = reference_order(n, clump, window, seed, 0, world, shuffle)
    for r in range(world):
        s = BatchSampler(
            n,
            bs,
            seed=seed,
            shuffle=shuffle,
            rank=r,
            world_size=world,
            uneven=uneven,
            order=Windows(clump, window),
        )
        size = s.shard_size()
        want = [int(laid[p % n]) for p in range(r, size * world, world)]
        assert s.shard_rows(0).tolist() == want
        batches = list(s)
        assert len(batches) == s.batch_count(size)
        assert (np.concatenate(batches).tolist() if batches else []) == want
        ranges = s.shard_windows(0)
        assert [lo for lo, _ in ranges[1:]] == [hi for _, hi in ranges[:-1]]
        assert (ranges[0][0], ranges[-1][1]) == ((0, size) if ranges else (0, 0))
        windows = reference_windows(n, clump, window, seed, 0, 1, shuffle)
        starts = np.cumsum([0] + [len(w) for w in windows])
        for k, (lo, hi) in enumerate(ranges[:-1]):
            places = s.shard_positions(0, lo, hi)
            assert ((places >= starts[k]) & (places < starts[k + 1])).all(), "in window k"


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 300),
    bs=st.integers(1, 30),
    clump=st.integers(1, 30),
    window=st.integers(1, 120),
    world=st.integers(1, 4),
    later=st.integers(1, 4),
    stop=st.integers(0, 12),
    seed=st.integers(0, 2**32),
)
def test_windowed_resume_on_other_ranks_reads_the_rest_once(
    n, bs, clump, window, world, later, stop, seed
):
    """Stopped on ``world`` ranks, resumed on ``later``: the sampler alone re-lays the unread
    rows of the current window (window_layout) so that every row comes once."""
    kw = dict(seed=seed, order=Windows(clump, window))
    first = [BatchSampler(n, bs, rank=r, world_size=world, **kw) for r in range(world)]
    read: list[int] = []
    for s in first:
        it = iter(s)
        got = [b for _, b in zip(range(stop), it)]
        mine = np.concatenate(got).tolist() if got else []
        read += mine[: len(range(s.rank, n, world))]  # padding aside
    states = [s.state_dict() for s in first]
    assert all(st_ == states[0] for st_ in states)
    state = states[0]
    assert "window_layout" in state
    if state["epoch"] == 1:
        assert sorted(read) == list(range(n))
        return
    resumed = [BatchSampler(n, bs, rank=r, world_size=later, **kw) for r in range(later)]
    for s in resumed:
        s.load_state_dict(state)
    rest = [i for s in resumed for b in s for i in b.tolist()]
    assert len(rest) == -(-(n - state["position"]) // later) * later
    assert sorted(read + sorted(set(rest))) == list(range(n)), "every row once"


def test_windowed_order_refuses_what_does_not_fit():
    with pytest.raises(ValueError, match="Windows\\(clump_size=...\\)"):
        BatchSampler(10, 2, seed=0, clump_size=2, order=Windows(2, 4))
    with pytest.raises(ValueError, match="clump_size=0 and window_rows=4"):
        Windows(0, 4)
    with pytest.raises(TypeError, match="window_rows"):
        Windows(2, 4.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="order"):
        BatchSampler(10, 2, seed=0, order="windows")
    s = BatchSampler(100, 10, seed=0, world_size=1, order=Windows(10, 30))
    with pytest.raises(ValueError, match="order="):
        BatchSampler(100, 10, seed=0, world_size=1).load_state_dict(s.state_dict())
    with pytest.raises(ValueError, match=r"state\['window_layout'\]"):
        s.load_state_dict({**s.state_dict(), "position": 35, "window_layout": [[0, 2]]})
