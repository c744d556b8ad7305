"""Tables larger than the cache, read by windows: the read of a window's rows through Lance
(ranges and takes), each rank's share of a window, and what an epoch cost."""

from __future__ import annotations

import io
import sys
import threading

import lance
import lancetorch
import numpy as np
import pyarrow as pa
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lancetorch import _backends, _lance, _native
from lancetorch.loader import Loader
from lancetorch.permutation import Permutation

N = 900


@pytest.fixture(scope="module")
def fragmented(tmp_path_factory):
    """A Lance table of N rows in several fragments, some rows deleted: row offsets are not
    row ids, and a fragment's offsets count only the rows it still holds."""
    path = tmp_path_factory.mktemp("fragments") / "t.lance"
    ids = np.arange(N, dtype=np.int64)
    vec = pa.FixedSizeListArray.from_arrays(pa.array((ids[:, None] * 4 + np.arange(4)).ravel()), 4)
    lance.write_dataset(pa.table({"id": ids, "vec": vec}), path, max_rows_per_file=250)
    lance.dataset(path).delete("id % 11 = 5")
    live = lance.dataset(path).to_table().column("id").to_numpy()
    backend = _lance._LanceBackend(
        _backends.LanceLocation.of("t", str(path)), _backends.CacheSettings(False)
    )
    assert len(backend.dataset.get_fragments()) > 2
    return backend, live


@settings(max_examples=40, deadline=None)
@given(
    runs=st.lists(st.tuples(st.integers(0, 2000), st.integers(1, 300)), min_size=0, max_size=8),
    scattered=st.lists(st.integers(0, 2000), max_size=40),
    repeats=st.integers(0, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_read_rows_matches_numpy_fancy_indexing(fragmented, runs, scattered, repeats, seed):
    """Runs of neighbouring rows (read as ranges across fragment ends), scattered rows (one
    take) and repeats, in any order: each asked row is the row at its offset."""
    backend, live = fragmented
    n = len(live)
    parts = [np.arange(a, a + k) % n for a, k in runs] + [np.array(scattered) % n]
    rows = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])
    rng = np.random.default_rng(seed)
    if len(rows):
        rows = np.concatenate([rows, rng.choice(rows, repeats)])
        rows = rows[rng.permutation(len(rows))]
    store, places = backend.read_rows(rows, ["vec", "id"])
    got = store.take(pa.array(places, pa.int64()))
    assert got.column(1).to_numpy().tolist() == live[rows].tolist()
    vec = np.stack(got.column(0).to_numpy(zero_copy_only=False)) if len(rows) else []
    assert np.array_equal(vec, (live[rows][:, None] * 4 + np.arange(4)) if len(rows) else [])


def test_read_rows_reads_long_runs_as_ranges(fragmented, monkeypatch):
    """A window's clumps go to Lance as range reads, not as a take of every row."""
    backend, live = fragmented
    taken = []
    real = backend.dataset.take
    monkeypatch.setattr(
        type(backend.dataset),
        "take",
        lambda ds, rows, **kw: taken.append(len(rows)) or real(rows, **kw),
    )
    rows = np.concatenate([np.arange(10, 200), np.arange(400, 700), [5, 800]])
    store, places = backend.read_rows(rows, ["id"])
    assert store.take(pa.array(places)).column(0).to_numpy().tolist() == live[rows].tolist()
    assert taken == [2], "only the two scattered rows go to a take"


# -- a rank's share of each window ------------------------------------------------------------

ROWS = 700


@pytest.fixture(scope="module")
def uncached(tmp_path_factory):
    db = lancetorch.connect(tmp_path_factory.mktemp("windows"))
    db.create_table("t", pa.table({"id": np.arange(ROWS)}))
    return db.open_table("t", cache=False)


def ids_of(batches) -> list[int]:
    return torch.cat([b[0] for b in batches]).long().tolist() if batches else []


def reference_windows(n, clump, window, seed, epoch, world, shuffle=True) -> list[np.ndarray]:
    """The windowed global order, in numpy: clumps shuffled, cut into windows, each window's
    rows sorted and cut into ``world`` contiguous stretches (stretch ``j`` at the window's
    positions ``j, j + world, ...``), each stretch shuffled on its own."""
    clumps = -(-n // clump)
    co = _native.epoch_order(clumps, seed, epoch).to_numpy() if shuffle else np.arange(clumps)
    per = max(1, window // clump)
    out = []
    for k, i in enumerate(range(0, clumps, per)):
        group = np.sort(co[i : i + per])
        rows = np.concatenate([np.arange(c * clump, min((c + 1) * clump, n)) for c in group])
        laid, begin = np.empty(len(rows), dtype=np.int64), 0
        for j in range(min(world, len(rows))):
            count = len(range(j, len(rows), world))
            part = rows[begin : begin + count]
            begin += count
            if shuffle and count > 1:
                s = (seed + 1 + k + j * 0x9E3779B97F4A7C15) % 2**64
                part = part[_native.epoch_order(count, s, epoch).to_numpy()]
            laid[j::world] = part
        out.append(laid)
    return out


def reference_order(*args, **kwargs) -> np.ndarray:
    return np.concatenate(reference_windows(*args, **kwargs))


def test_one_rank_keeps_the_windowed_order_of_before(uncached):
    """Golden vectors of the one-rank windowed order (as lancetorch read it before windows
    were laid out per rank): an upgrade must not reorder a user's epoch."""
    view = Permutation.identity(uncached).with_take(500)
    loader = Loader(view, 64, seed=7, world_size=1, window_rows=120, clump_size=16)
    first = ids_of(list(loader))
    assert first[:12] == [114, 140, 147, 325, 323, 328, 391, 158, 393, 115, 143, 150]
    assert first[200:206] == [285, 342, 95, 283, 91, 241]
    second = ids_of(list(loader))
    assert second[:12] == [425, 112, 426, 281, 30, 302, 114, 20, 19, 418, 296, 147]
    assert first == reference_order(500, 16, 120, 7, 0, 1).tolist()


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, ROWS),
    bs=st.integers(1, 70),
    clump=st.integers(1, 40),
    window=st.integers(1, 250),
    world=st.integers(1, 4),
    seed=st.integers(0, 2**32),
    shuffle=st.booleans(),
)
def test_each_rank_reads_its_stretch_of_every_window(
    uncached, n, bs, clump, window, world, seed, shuffle
):
    """Rank r reads positions r, r + W, ... of the order laid out for W ranks; its rows of a
    window are one contiguous stretch of that window's rows in storage order; the ranks
    together read every row once (and, padded, the first positions again)."""
    view = Permutation.identity(uncached).with_take(n)
    kw = dict(seed=seed, window_rows=window, clump_size=clump, shuffle=shuffle)
    order = reference_order(n, clump, window, seed, 0, world, shuffle)
    assert sorted(order.tolist()) == list(range(n))
    shard = -(-n // world)
    seen = []
    for r in range(world):
        ids = ids_of(list(Loader(view, bs, rank=r, world_size=world, **kw)))
        assert ids == [int(order[p % n]) for p in range(r, shard * world, world)]
        seen += ids[: len(range(r, n, world))]
    assert sorted(seen) == list(range(n))
    for laid in reference_windows(n, clump, window, seed, 0, world, shuffle):
        rows = np.sort(laid)
        for r in range(world):
            mine = np.sort(laid[r::world])
            at = np.searchsorted(rows, mine[0]) if len(mine) else 0
            assert np.array_equal(rows[at : at + len(mine)], mine), "one stretch a rank"


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, ROWS),
    bs=st.integers(1, 70),
    clump=st.integers(1, 40),
    window=st.integers(1, 250),
    world=st.integers(1, 4),
    later=st.integers(1, 4),
    again=st.integers(1, 4),
    stops=st.tuples(st.integers(0, 12), st.integers(0, 12)),
    seed=st.integers(0, 2**32),
)
def test_resume_on_other_ranks_reads_every_row_once(
    uncached, n, bs, clump, window, world, later, again, stops, seed
):
    """An epoch stopped on ``world`` ranks, resumed on ``later`` ranks, stopped again and
    resumed on ``again`` ranks: the rows of the passes are every row once, beyond padding
    (a pass's first positions again, after a rank's last row)."""
    view = Permutation.identity(uncached).with_take(n)
    kw = dict(seed=seed, window_rows=window, clump_size=clump)
    read: list[int] = []
    state = None
    for ranks, stop in ((world, stops[0]), (later, stops[1]), (again, None)):
        loaders = [Loader(view, bs, rank=r, world_size=ranks, **kw) for r in range(ranks)]
        if state is not None:
            for loader in loaders:
                loader.load_state_dict(state)
        start = 0 if state is None else state["position"]
        for loader in loaders:
            batches = []
            for b in loader if stop != 0 else []:
                batches.append(b)
                if stop is not None and len(batches) >= stop:
                    break
            # Past the rank's last row, padding repeats rows.
            read += ids_of(batches)[: len(range(start + loader._sampler.rank, n, ranks))]
        states = [loader.state_dict() for loader in loaders]
        assert all(s == states[0] for s in states)
        state = states[0]
        if state["epoch"] == 1:  # the epoch is complete
            break
    assert sorted(read) == list(range(n))


# -- what an epoch cost ----------------------------------------------------------------------

WIDE = 20000


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """A table of 32 float32 features and an int64 id a row (136 bytes)."""
    db = lancetorch.connect(tmp_path_factory.mktemp("wide"))
    rng = np.random.default_rng(0)
    vec = pa.FixedSizeListArray.from_arrays(pa.array(rng.random(WIDE * 32, np.float32)), 32)
    db.create_table("t", pa.table({"id": np.arange(WIDE), "vec": vec}))
    return db


def _epoch(loader) -> dict:
    for _ in loader:
        pass
    return loader.stats()


def test_windowed_epochs_count_the_store_bytes_they_read(wide):
    table = wide.open_table("t", cache_budget=1, cache_dir=False)  # by windows, from the store
    loader = Loader(table, 500, seed=1, per_column=True, window_rows=4096, clump_size=512)
    assert loader.stats()["store_bytes"] == 0, "nothing read yet"
    first = _epoch(loader)
    assert first["delivered_bytes"] == WIDE * 136
    assert first["store_bytes"] >= WIDE * 136 * 0.9 and first["store_requests"] > 0
    assert first["read_amplification"] == first["store_bytes"] / first["delivered_bytes"]
    assert first["memory_bytes"] == 0
    second = _epoch(loader)
    assert second["store_bytes"] >= 1.8 * first["store_bytes"], "every epoch reads again"
    assert second["delivered_bytes"] == 2 * WIDE * 136


def test_a_rank_reads_its_share_of_the_store(wide):
    """Two ranks by windows each read about half the bytes one rank reads."""
    kw = dict(seed=1, per_column=True, window_rows=4096, clump_size=512)
    one = _epoch(
        Loader(wide.open_table("t", cache_budget=1, cache_dir=False), 500, world_size=1, **kw)
    )
    for r in range(2):
        table = wide.open_table("t", cache_budget=1, cache_dir=False)
        half = _epoch(Loader(table, 500, rank=r, world_size=2, **kw))
        assert half["store_bytes"] < 0.65 * one["store_bytes"]
        assert half["delivered_bytes"] == WIDE // 2 * 136


def test_cached_epochs_read_the_store_once(wide):
    table = wide.open_table("t", cache_dir=False)  # fits the cache: filled when the loader is made
    loader = Loader(table, 500, seed=1, per_column=True)
    filled = loader.stats()["store_bytes"]
    assert filled >= WIDE * 136 * 0.9
    first, second = _epoch(loader), _epoch(loader)
    assert first["store_bytes"] == second["store_bytes"] == filled
    assert second["memory_bytes"] == second["delivered_bytes"] == 2 * WIDE * 136
    assert second["read_amplification"] == filled / (2 * WIDE * 136)


@pytest.mark.parametrize("budget", [None, 1], ids=["memory", "windows"])
def test_shuffle_distance_against_a_full_shuffle(wide, budget):
    table = wide.open_table("t", cache_budget=budget)
    kw = dict(per_column=True, window_rows=4096, clump_size=512)
    ordered = _epoch(Loader(table, 500, shuffle=False, **kw))
    assert ordered["shuffle_distance"] == 0 and ordered["shuffle_ratio"] == 0
    shuffled = _epoch(Loader(table, 500, seed=3, **kw))
    assert 0.9 < shuffled["shuffle_ratio"] < 1.1
    assert shuffled["shuffle_ratio"] == 3 * shuffled["shuffle_distance"]


def test_rows_carried_to_the_next_window_are_not_read_again(wide, monkeypatch):
    """A window whose rows end short of a full batch hands them to the next one from
    memory: one rank's epoch reads every row in range reads, none by a take."""
    table = wide.open_table("t", cache_budget=1)
    loader = Loader(table, 500, seed=2, per_column=True, window_rows=4096, clump_size=512)
    taken = []
    real = type(table._backend.dataset).take
    monkeypatch.setattr(
        type(table._backend.dataset),
        "take",
        lambda ds, rows, **kw: taken.append(len(rows)) or real(ds, rows, **kw),
    )
    ids = [int(i) for b in loader for i in b["id"]]
    assert sorted(ids) == list(range(WIDE))
    assert taken == []


def test_a_state_with_a_wrong_window_layout_is_refused(uncached):
    kw = dict(seed=5, window_rows=200, clump_size=50)
    loader = Loader(uncached, 64, rank=0, world_size=2, **kw)
    for i, _ in enumerate(loader):
        if i == 1:
            break
    state = loader.state_dict()
    assert state["position"] == 256 and state["window_layout"] == [[200, 2]]
    for bad in ([[0, 2]], [[200, 0]], [[200, 2], [300, 1]], [["a", 2]], [[200]]):
        with pytest.raises(ValueError, match=r"state\['window_layout'\]"):
            Loader(uncached, 64, world_size=1, **kw).load_state_dict(
                {**state, "window_layout": bad}
            )
    old = {k: v for k, v in state.items() if k != "window_layout"}
    with pytest.raises(ValueError, match="no 'window_layout'"):
        Loader(uncached, 64, world_size=1, **kw).load_state_dict(old)
    resumed = Loader(uncached, 16, world_size=3, rank=1, **kw)
    resumed.load_state_dict(state)
    assert resumed.state_dict()["window_layout"] == [[200, 2]]  # nothing read since
    next(iter(resumed))
    again = resumed.state_dict()
    assert again["position"] == 256 + 3 * 16 and again["window_layout"] == [[200, 2], [256, 3]]


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal, and keeps what is written to it."""

    def isatty(self) -> bool:
        return True


def test_an_epoch_on_a_terminal_ends_with_a_line_on_what_it_cost(wide, monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    table = wide.open_table("t", cache_budget=1, cache_dir=False)
    loader = Loader(table, 500, seed=1, per_column=True, window_rows=4096, clump_size=512)
    for i, _ in enumerate(loader):
        if i == 2:
            break  # an epoch not finished: no line
    assert terminal.getvalue() == ""
    list(loader)
    line = terminal.getvalue()
    assert line.startswith("lancetorch: epoch 1 of table 't': 20,000 rows in ")
    assert "MB from the store in" in line and "0 MB from memory" in line
    assert "0 MB from the node tier" in line  # (cache_dir=False)
    assert "as far as a full shuffle" in line and line.count("\n") == 1
    memory = lancetorch.connect("memory://").create_table("m", pa.table({"a": np.arange(10)}))
    list(Loader(memory, 5, seed=0))
    assert terminal.getvalue() == line, "a memory table reads no store: no line"


def test_an_epoch_read_from_the_tier_alone_has_its_line(wide, tmp_path, monkeypatch):
    """An epoch whose rows all come from the node tier (filled by another handle) read
    nothing from the store, and still says what it cost."""
    kw = dict(seed=1, per_column=True, window_rows=4096, clump_size=512)
    _epoch(Loader(wide.open_table("t", cache_budget=1, cache_dir=tmp_path / "tier"), 500, **kw))
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    table = wide.open_table("t", cache_budget=1, cache_dir=tmp_path / "tier")
    list(Loader(table, 500, **kw))
    line = terminal.getvalue()
    assert "0 MB from the store in 0 requests (0.00x the bytes delivered)" in line
    assert f"{WIDE * 136 / 1e6:,.0f} MB from the node tier" in line


def test_windowed_epochs_through_the_tier_count_the_bytes_it_served(wide, tmp_path):
    """The first window fetches the table's piece into the node tier (its rows are store
    bytes), the windows after it read the piece (tier bytes), as does every window of the
    next epoch and of another handle on the same tier; the read amplification stays store
    bytes over delivered bytes."""
    kw = dict(seed=1, per_column=True, window_rows=4096, clump_size=512)
    table = wide.open_table("t", cache_budget=1, cache_dir=tmp_path / "tier")
    loader = Loader(table, 500, **kw)
    first = _epoch(loader)
    assert first["store_bytes"] > 0
    # All but the first window's rows: 8 clumps of 512, or 7 and the last one, of 32 rows.
    assert WIDE * 136 - first["tier_bytes"] in (4096 * 136, (7 * 512 + WIDE % 512) * 136)
    second = _epoch(loader)
    assert second["store_bytes"] == first["store_bytes"], "nothing more from the store"
    assert second["tier_bytes"] - first["tier_bytes"] == WIDE * 136
    assert second["read_amplification"] == first["store_bytes"] / (2 * WIDE * 136)
    assert second["memory_bytes"] == 0
    other = _epoch(
        Loader(wide.open_table("t", cache_budget=1, cache_dir=tmp_path / "tier"), 500, **kw)
    )
    assert other["store_bytes"] == 0 and other["tier_bytes"] == WIDE * 136


def test_a_cache_filled_from_the_tier_counts_its_bytes(wide, tmp_path):
    """A cache filled from pieces another handle put in the node tier reads them, not the
    store: its fill counts tier bytes (the columns' Arrow bytes), and no store bytes."""
    first = Loader(wide.open_table("t", cache_dir=tmp_path / "tier"), 500, seed=1, per_column=True)
    assert first.stats()["store_bytes"] > 0 and first.stats()["tier_bytes"] == 0
    again = Loader(wide.open_table("t", cache_dir=tmp_path / "tier"), 500, seed=1, per_column=True)
    assert again.stats()["store_bytes"] == 0
    assert again.stats()["tier_bytes"] == WIDE * 136


def _ids(loader) -> list[int]:
    return [int(i) for b in loader for i in b["id"]]


def _reads_ahead_done() -> None:
    """Wait for the reads of a next epoch's first window still under way."""
    for thread in threading.enumerate():
        if thread.name.startswith("lancetorch-ahead"):
            thread.join()


@pytest.mark.parametrize("tier", [False, True], ids=["store", "tier"])
def test_the_next_epochs_first_window_is_read_while_the_last_goes_out(
    wide, tmp_path, monkeypatch, tier
):
    """The end of an epoch reads the next epoch's first window: that epoch reads it no
    more, and gives the rows a loader starting at that epoch gives, in the same order."""
    folder = tmp_path / "tier" if tier else False
    table = wide.open_table("t", cache_budget=1, cache_dir=folder)
    reads: list[int] = []
    real = type(table._backend).read_rows
    monkeypatch.setattr(
        type(table._backend),
        "read_rows",
        lambda backend, rows, names: reads.append(len(rows)) or real(backend, rows, names),
    )
    kw = dict(seed=4, per_column=True, window_rows=4096, clump_size=512)
    loader = Loader(table, 500, **kw)
    first = _ids(loader)
    _reads_ahead_done()
    windows = len(reads) - 1  # and the next epoch's first
    assert windows == 5 and sorted(first) == list(range(WIDE))
    second = _ids(loader)
    _reads_ahead_done()
    assert len(reads) == 2 * windows + 1, "the second epoch read its first window no more"
    fresh = Loader(table, 500, **kw)
    fresh.set_epoch(1)
    assert _ids(fresh) == second != first
    assert loader.stats()["delivered_bytes"] == 2 * WIDE * 136


def test_a_window_read_ahead_that_the_next_pass_does_not_read_is_dropped(wide):
    """set_epoch, or a state of another seed loaded, after an epoch: the window read at its
    end is not the next pass's first, which reads its own."""
    kw = dict(per_column=True, window_rows=4096, clump_size=512)
    table = wide.open_table("t", cache_budget=1, cache_dir=False)
    loader = Loader(table, 500, seed=4, **kw)
    _ids(loader)
    loader.set_epoch(7)
    fresh = Loader(table, 500, seed=4, **kw)
    fresh.set_epoch(7)
    assert _ids(loader) == _ids(fresh)
    state = {**loader.state_dict(), "seed": 11}  # epoch 8 from its start, another seed
    loader.load_state_dict(state)
    other = Loader(table, 500, seed=11, **kw)
    other.set_epoch(8)
    got = _ids(loader)
    assert got == _ids(other) and sorted(got) == list(range(WIDE))
