"""Loader: batches prepared ahead on a Rust thread."""

from __future__ import annotations

import re

import lancetorch
import numpy as np
import pyarrow as pa
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lancetorch.loader import Loader
from lancetorch.permutation import Permutation, permutation_builder
from lancetorch.sampler import BatchSampler
from lancetorch.util import column_to_tensor, tbl_to_tensor
from test_windows import reference_order

N = 3000


def data(n: int = N) -> pa.Table:
    return pa.table(
        {
            "id": np.arange(n),
            "x": np.arange(n, dtype=np.float32) * 2,
            "label": (np.arange(n) % 7).astype(np.int8),
        }
    )


@pytest.fixture(params=["memory", "disk"])
def table(request, tmp_path):
    db = lancetorch.connect("memory://" if request.param == "memory" else tmp_path)
    return db.create_table("t", data())


def ids_of(batches):
    return torch.cat([b[0] for b in batches]).long().tolist()


def test_every_row_once_per_epoch_and_rows_intact(table):
    loader = Loader(table, 256, seed=5)
    assert len(loader) == -(-N // 256)
    for _ in range(2):
        batches = list(loader)
        assert len(batches) == len(loader)
        assert sorted(ids_of(batches)) == list(range(N))
        for b in batches:
            assert b.shape[0] == 3 and b.dtype == torch.float32
            assert torch.equal(b[1], b[0] * 2) and torch.equal(b[2], b[0] % 7)


def test_order_is_the_samplers(table):
    loader = Loader(table, 100, seed=9)
    want = BatchSampler(N, 100, seed=9).order(0)
    assert ids_of(list(loader)) == want.tolist()
    loader.set_epoch(0)
    assert ids_of(list(loader)) == want.tolist()
    assert ids_of(list(loader)) == BatchSampler(N, 100, seed=9).order(1).tolist()


def test_same_tensor_as_tbl_to_tensor(table):
    loader = Loader(table, 64, seed=2, drop_last=True)
    order = BatchSampler(N, 64, seed=2).order(0)
    for k, b in enumerate(loader):
        assert torch.equal(b, tbl_to_tensor(table.__getitems__(order[k * 64 : (k + 1) * 64])))
    assert k + 1 == N // 64 == len(loader)


@pytest.mark.parametrize("dtype", [None, torch.float64, torch.int32])
def test_large_table_batches_equal_take_then_tbl_to_tensor(dtype):
    """Tables of 65,536 rows or more are read from the row-major block, gathered and
    converted in one pass: the same tensors as a take and tbl_to_tensor."""
    n = 70_000
    rng = np.random.default_rng(4)
    t = lancetorch.connect("memory://").create_table(
        "big",
        pa.table(
            {
                "id": np.arange(n),
                "x": rng.standard_normal(n).astype(np.float32),
                "small": rng.integers(-100, 100, n).astype(np.int8),
                "half": rng.standard_normal(n).astype(np.float16),
            }
        ),
    )
    order = BatchSampler(n, 4096, seed=6).order(0)
    batches = list(Loader(t, 4096, seed=6, dtype=dtype))
    assert len(batches) == -(-n // 4096)
    for k, b in enumerate(batches):
        want = tbl_to_tensor(t.__getitems__(order[k * 4096 : (k + 1) * 4096]), dtype=dtype)
        assert b.dtype == want.dtype and torch.equal(b, want)


def test_unshuffled_and_dtype(table):
    batches = list(Loader(table, 1000, shuffle=False, dtype=torch.float64))
    assert ids_of(batches) == list(range(N))
    assert batches[0].dtype == torch.float64


def test_permutation_columns_and_split(table):
    perm_table = (
        permutation_builder(table)
        .split_sequential(counts=[1000, 500], split_names=["train", "test"])
        .execute()
    )
    test = Permutation.from_tables(table, perm_table, "test").select_columns(["x", "id"])
    batches = list(Loader(test, 128, seed=0))
    assert sorted(torch.cat([b[1] for b in batches]).long().tolist()) == list(range(1000, 1500))
    assert all(torch.equal(b[0], b[1] * 2) for b in batches)
    skipped = Permutation.identity(table).with_skip(10).with_take(20)
    assert sorted(ids_of(list(Loader(skipped, 7)))) == list(range(10, 30))


@settings(max_examples=20, deadline=None)
@given(
    skip=st.integers(0, 2000),
    take=st.integers(1, 1000),
    shuffled=st.booleans(),
    bs=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
    epoch=st.integers(0, 3),
)
def test_permutation_rows_in_the_samplers_order(skip, take, shuffled, bs, seed, epoch):
    """A Permutation's positions map to table rows by an offset (an identity window) or
    through its row array (a shuffled one): position p of the sampler's order is the
    permutation's row p, whichever the Loader uses inside."""
    t = lancetorch.connect("memory://").create_table("t", data())
    if shuffled:
        perm = permutation_builder(t).shuffle(seed=3).execute()
        view = Permutation.from_tables(t, perm)
    else:
        view = Permutation.identity(t)
    view = view.with_skip(skip).with_take(take)
    n = len(view)
    if n == 0:
        return
    rows = view.with_format("arrow").__getitems__(list(range(n))).column("id").to_numpy()
    loader = Loader(view, bs, seed=seed)
    loader.set_epoch(epoch)
    want = rows[BatchSampler(n, bs, seed=seed).order(epoch)]
    assert ids_of(list(loader)) == want.tolist()


def test_break_and_exceptions_stop_cleanly(table):
    loader = Loader(table, 10, seed=1, prefetch=2)
    for _ in loader:
        break
    with pytest.raises(RuntimeError, match="boom"):
        for _ in loader:
            raise RuntimeError("boom")
    assert sorted(ids_of(list(loader))) == list(range(N)), "still usable afterwards"


def test_stats_add_up(table):
    loader = Loader(table, 500, seed=0)
    list(loader)
    s = loader.stats()
    assert s["batches"] == len(loader) and s["rows"] == N
    assert s["bytes"] == N * 3 * 4
    assert 0.0 <= s["wait_fraction"] <= 1.0
    assert all(s[k] >= 0 for k in ("index_s", "take_s", "convert_s", "wait_s", "total_s"))


def test_stats_count_what_was_delivered_not_what_was_made_ahead(table):
    loader = Loader(table, 100, seed=0, prefetch=8)
    for _ in loader:
        break
    s = loader.stats()
    assert (s["batches"], s["rows"], s["bytes"]) == (1, 100, 100 * 3 * 4)


@pytest.mark.parametrize("where", ["memory", "windows"])
@pytest.mark.parametrize("world", [1, 2])
def test_drop_last_leaves_the_short_batch_out_of_the_side_columns_too(tmp_path, where, world):
    """The epoch is cut into batches once: with drop_last the rows of the short last batch
    go to no thread, the side columns' (a transform here) included, whichever way the table
    is read."""
    db = lancetorch.connect(tmp_path)
    db.create_table("t", data())
    table = db.open_table("t", cache=where == "memory")
    seen: list[list[int]] = []
    perm = Permutation.identity(table).with_transform(
        lambda b: seen.append(b.column("id").to_pylist()) or b.column("id").to_pylist()
    )
    kw = dict(seed=3, drop_last=True, prefetch=64, rank=0, world_size=world)
    loader = Loader(perm, 7, window_rows=500, clump_size=50, **kw)
    batches = list(loader)
    assert len(batches) == len(loader) == (N // world) // 7
    assert all(len(b) == 7 for b in batches)
    assert sorted(map(tuple, seen)) == sorted(map(tuple, batches)), "no batch made but those read"


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("drop_last", [False, True])
def test_a_permutations_transform_makes_every_batch(table, threads, drop_last):
    """A Permutation's with_transform is the batch: it gets each batch's Arrow rows (in the
    sampler's order, under the view's names) and the loop gets what it returns."""
    calls = []

    def transform(batch: pa.RecordBatch):
        calls.append(batch.num_rows)
        return {"ids": batch.column("key").to_pylist(), "names": batch.schema.names}

    perm = (
        Permutation.identity(table)
        .select_columns(["id", "label"])
        .rename_column("id", "key")
        .with_transform(transform)
    )
    loader = Loader(perm, 300, seed=4, threads=threads, drop_last=drop_last)
    batches = list(loader)
    want = BatchSampler(N, 300, seed=4, drop_last=drop_last).order(0).tolist()
    assert [i for b in batches for i in b["ids"]] == want[: len(batches) * 300]
    assert all(b["names"] == perm.column_names for b in batches)
    assert sorted(perm.column_names) == ["key", "label"]
    assert len(batches) == len(loader) and sum(calls) == sum(len(b["ids"]) for b in batches)


def test_a_permutations_decode_specs_are_the_loaders(mem_db):
    tokens = pa.array([[i] * (i % 4 + 1) for i in range(40)], pa.list_(pa.int32()))
    table = mem_db.create_table("tok", pa.table({"id": np.arange(40), "t": tokens}))
    spec = lancetorch.decode.Tokens(max_length=3, pad_value=-1)
    perm = Permutation.identity(table).with_format("torch_dict", decode={"t": spec})
    batch = next(iter(Loader(perm, 40, shuffle=False)))
    assert batch["t"].shape == (40, 3) and batch["t_length"].tolist() == [
        min(i % 4 + 1, 3) for i in range(40)
    ]
    with pytest.raises(ValueError, match="give the specs in one place"):
        Loader(perm, 4, decode={"t": lancetorch.decode.Tokens(max_length=9)})


def test_a_transforms_tensors_are_pinned_and_moved_wherever_they_are(table, monkeypatch):
    """device= and pin_memory= reach the tensors a transform returns in tuples and lists."""
    moved = []
    real_to = torch.Tensor.to

    def to(self, *args, **kw):
        moved.append(tuple(self.shape))
        return real_to(self, *args, **kw)

    monkeypatch.setattr(torch.Tensor, "to", to)
    perm = Permutation.identity(table).with_transform(
        lambda b: (torch.tensor(b.column("id").to_numpy()), [torch.zeros(2)], "label")
    )
    ids, extra, label = next(iter(Loader(perm, 10, device="cpu", shuffle=False)))
    assert ids.tolist() == list(range(10)) and label == "label"
    assert sorted(moved) == [(2,), (10,)]


def test_what_a_loader_cannot_honour_is_refused(table):
    perm = Permutation.identity(table).with_transform(lambda b: b)
    for kw in (
        {"per_column": True},
        {"features": ["x"]},
        {"dtype": "float16"},
        {"null_value": 0.0},
    ):
        with pytest.raises(ValueError, match="with_transform"):
            Loader(perm, 4, **kw)
    with pytest.raises(ValueError, match="_rowid"):
        Loader(Permutation.identity(table).select_columns(["id", "_rowid"]), 4)


def test_stats_count_decoded_columns():
    """The columns made on Python threads count in the bytes and seconds: an image epoch is
    not 8 bytes a row and no time."""
    import io

    from PIL import Image as PILImage

    def png(i):
        out = io.BytesIO()
        PILImage.fromarray(np.full((32, 32, 3), i, np.uint8)).save(out, format="PNG")
        return out.getvalue()

    db = lancetorch.connect("memory://")
    table = db.create_table(
        "img", pa.table({"id": np.arange(64), "img": pa.array([png(i) for i in range(64)])})
    )
    loader = Loader(
        table, 16, per_column=True, decode={"img": lancetorch.decode.Image(size=(24, 24))}
    )
    list(loader)
    s = loader.stats()
    assert s["rows"] == 64
    assert s["bytes"] == 64 * (8 + 3 * 24 * 24)
    assert s["decode_s"] > 0 and s["take_s"] > 0


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("drop_last", [False, True])
def test_disk_table_beyond_the_cache_is_read_by_windows(tmp_path, shuffle, drop_last):
    db = lancetorch.connect(tmp_path)
    db.create_table("t", data())
    table = db.open_table("t", cache=False)
    loader = Loader(
        table, 100, seed=4, shuffle=shuffle, drop_last=drop_last, window_rows=700, clump_size=64
    )
    assert table._backend._cached is None
    for _ in range(2):
        batches = list(loader)
        assert len(batches) == len(loader)
        assert all(b.shape[1] == 100 for b in batches[:-1])
        ids = ids_of(batches)
        if drop_last:
            assert len(ids) == N - N % 100 and len(set(ids)) == len(ids)
        else:
            assert sorted(ids) == list(range(N))
        assert all(torch.equal(b[1], b[0] * 2) for b in batches)
        if not shuffle:
            assert ids == list(range(len(ids)))
    assert loader.stats()["read_s"] > 0


def test_windowed_order_is_seeded_and_clumps_stay_in_their_window(tmp_path):
    db = lancetorch.connect(tmp_path)
    db.create_table("t", data())
    table = db.open_table("t", cache=False)
    first = ids_of(list(Loader(table, 50, seed=1, window_rows=256, clump_size=32)))
    again = ids_of(list(Loader(table, 50, seed=1, window_rows=256, clump_size=32)))
    other = ids_of(list(Loader(table, 50, seed=2, window_rows=256, clump_size=32)))
    assert first == again and first != other
    # A window holds 8 clumps: the rows of one clump all come within about one window.
    where = {row: i for i, row in enumerate(first)}
    for clump in range(0, N, 32):
        spots = [where[r] for r in range(clump, min(clump + 32, N))]
        assert max(spots) - min(spots) < 256 + 50


def _embedding_table(db, n: int = 500, dim: int = 4) -> lancetorch.Table:
    values = pa.array(np.arange(n * dim, dtype=np.float32))
    return db.create_table(
        "e",
        pa.table(
            {
                "id": np.arange(n),
                "emb": pa.FixedSizeListArray.from_arrays(values, dim),
                "odd": np.arange(n) % 2 == 1,
            }
        ),
    )


@pytest.mark.parametrize("where", ["memory", "disk", "disk beyond the cache"])
def test_per_column_batches_hold_embeddings_as_rows(tmp_path, where):
    db = lancetorch.connect("memory://" if where == "memory" else tmp_path)
    t = _embedding_table(db)
    if where == "disk beyond the cache":
        t = db.open_table("e", cache_budget=1)
    loader = Loader(t, 64, seed=3, per_column=True, window_rows=200, clump_size=50)
    with pytest.raises(TypeError, match="'emb' .* per_column=True"):
        Loader(t, 64)  # one (columns, rows) tensor cannot hold a list column
    seen = []
    for b in loader:
        assert list(b) == ["id", "emb", "odd"]
        rows = b["id"].shape[0]
        assert b["emb"].shape == (rows, 4) and b["emb"].dtype == torch.float32
        assert b["odd"].shape == (rows,) and b["odd"].dtype == torch.bool
        want = (b["id"][:, None] * 4 + torch.arange(4)).float()
        assert torch.equal(b["emb"], want)
        assert torch.equal(b["odd"], b["id"] % 2 == 1)
        seen += b["id"].tolist()
    assert sorted(seen) == list(range(500))
    s = loader.stats()
    assert s["rows"] == 500 and s["bytes"] == 500 * (8 + 4 * 4 + 1)


def test_per_column_order_and_dtype_match_the_plain_take():
    t = _embedding_table(lancetorch.connect("memory://"))
    order = BatchSampler(500, 100, seed=8).order(0)
    for k, b in enumerate(Loader(t, 100, seed=8, per_column=True, dtype=torch.float64)):
        taken = t.__getitems__(order[k * 100 : (k + 1) * 100])
        assert all(v.dtype == torch.float64 for v in b.values())
        assert b["id"].tolist() == taken.column("id").to_pylist()
        assert b["emb"].tolist() == taken.column("emb").to_pylist()


@pytest.mark.parametrize("where", ["memory", "disk beyond the cache"])
def test_per_column_keys_follow_a_permutations_selection_and_renames(tmp_path, where):
    db = lancetorch.connect("memory://" if where == "memory" else tmp_path)
    t = _embedding_table(db)
    if where == "disk beyond the cache":
        t = db.open_table("e", cache_budget=1)
    view = Permutation.identity(t).select_columns(["emb", "id"]).rename_column("emb", "vec")
    batches = list(Loader(view, 128, seed=1, per_column=True, window_rows=200, clump_size=50))
    assert all(list(b) == ["id", "vec"] for b in batches)  # a renamed column moves last
    for b in batches:
        assert torch.equal(b["vec"][:, 0], (b["id"] * 4).float())
    assert sorted(torch.cat([b["id"] for b in batches]).tolist()) == list(range(500))


def test_pinning_pins_every_column(monkeypatch):
    pinned = []

    def pin(tensor):
        pinned.append(tensor.data_ptr())
        return tensor.clone()

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.Tensor, "pin_memory", pin)
    t = _embedding_table(lancetorch.connect("memory://"))
    loader = Loader(t, 200, seed=0, per_column=True, pin_memory=True)
    batches = list(loader)
    assert len(pinned) == 3 * len(batches)
    assert all(b["emb"].shape[1] == 4 for b in batches)
    assert loader.stats()["pin_s"] > 0


def test_strings_refused_by_name():
    t = lancetorch.connect("memory://").create_table("s", pa.table({"a": [1], "name": ["x"]}))
    with pytest.raises(TypeError, match="'name'"):
        list(Loader(t, 1))


def test_not_a_table():
    with pytest.raises(TypeError, match="Table or Permutation"):
        Loader([1, 2, 3], 2)


def test_profiler_ranges(table):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        list(Loader(table, 1000, profile=True))
    names = {e.name for e in prof.events()}
    assert "lancetorch.loader.wait" in names


EXIT_SCRIPT = """
import numpy as np, pyarrow as pa, lancetorch
from lancetorch.loader import Loader
t = lancetorch.connect("memory://").create_table("t", pa.table({"a": np.arange(200_000)}))
it = iter(Loader(t, 10, prefetch=2))
next(it)
print("leaving with the loader mid-epoch")
"""


def test_interpreter_exits_with_a_loader_mid_epoch():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "leaving" in out.stdout


def test_loader_shards_by_rank(table):
    per_rank = [ids_of(list(Loader(table, 64, seed=5, rank=r, world_size=3))) for r in range(3)]
    assert len({len(ids) for ids in per_rank}) == 1
    every = sum(per_rank, [])
    assert sorted(set(every)) == list(range(N)) and len(every) == -(-N // 3) * 3
    sampler = BatchSampler(N, 64, seed=5, rank=1, world_size=3)
    assert per_rank[1] == sampler.shard_rows(0).tolist(), "the sampler's order"


def test_loader_resumes_mid_epoch(table):
    whole = Loader(table, 100, seed=8, world_size=1)
    first_epoch, second_epoch = ids_of(list(whole)), ids_of(list(whole))
    stopped = Loader(table, 100, seed=8, world_size=1)
    head = []
    for i, batch in enumerate(stopped):
        head += ids_of([batch])
        if i == 2:
            break
    state = stopped.state_dict()
    assert state["epoch"] == 0 and state["position"] == 300
    resumed = Loader(table, 100, seed=8, world_size=1)
    resumed.load_state_dict(state)
    assert len(resumed) == len(whole) - 3
    assert head + ids_of(list(resumed)) == first_epoch
    assert ids_of(list(resumed)) == second_epoch
    two = [Loader(table, 100, seed=8, rank=r, world_size=2) for r in range(2)]
    for loader in two:
        loader.load_state_dict(state)
    rest = sum((ids_of(list(loader)) for loader in two), [])
    assert set(rest) == set(first_epoch[300:]) and not set(rest) & set(head)


@pytest.mark.parametrize("world", [2, 3])
def test_windowed_reads_shard_and_resume(tmp_path, world):
    db = lancetorch.connect(tmp_path)
    db.create_table("t", data())
    table = db.open_table("t", cache=False)
    kw = dict(seed=1, window_rows=300, clump_size=50)
    glob = ids_of(list(Loader(table, 100, world_size=1, **kw)))  # the windowed global order
    assert glob == reference_order(N, 50, 300, 1, 0, 1).tolist()
    per_rank = [
        ids_of(list(Loader(table, 100, rank=r, world_size=world, **kw))) for r in range(world)
    ]
    laid = reference_order(N, 50, 300, 1, 0, world)  # each window laid out for the ranks
    shard = -(-N // world)
    for r, ids in enumerate(per_rank):
        expected = [laid[p % N] for p in range(r, shard * world, world)]
        assert ids == expected, "rank r reads positions r, r + W, ... of the laid-out order"
    stopped = Loader(table, 100, world_size=1, **kw)
    for i, _ in enumerate(stopped):
        if i == 2:
            break
    state = stopped.state_dict()
    assert state["position"] == 300 and state["order"].startswith("windows")
    resumed = Loader(table, 100, world_size=1, **kw)
    resumed.load_state_dict(state)
    assert ids_of(list(resumed)) == glob[300:]
    others = [Loader(table, 100, rank=r, world_size=world, **kw) for r in range(world)]
    for loader in others:
        loader.load_state_dict(state)
    rest = sum((ids_of(list(loader)) for loader in others), [])
    assert set(rest) == set(glob[300:]) and len(rest) == -(-(N - 300) // world) * world
    in_memory = Loader(db.open_table("t"), 100, world_size=1, **kw)
    with pytest.raises(ValueError, match="in the order 'windows"):
        in_memory.load_state_dict(state)


def test_set_epoch_keeps_a_resumed_position(table):
    """The usual loop calls set_epoch(e) every epoch: after load_state_dict it must not undo
    the resume, while moving to another epoch starts that one from its beginning."""
    first = Loader(table, 100, seed=8, world_size=1)
    whole = ids_of(list(first))
    stopped = Loader(table, 100, seed=8, world_size=1)
    for i, _ in enumerate(stopped):
        if i == 1:
            break
    state = stopped.state_dict()
    resumed = Loader(table, 100, seed=8, world_size=1)
    resumed.load_state_dict(state)
    resumed.set_epoch(state["epoch"])
    assert ids_of(list(resumed)) == whole[200:]
    resumed.load_state_dict(state)
    resumed.set_epoch(1)
    assert sorted(ids_of(list(resumed))) == list(range(N))


@pytest.fixture(scope="module")
def uncached(tmp_path_factory):
    db = lancetorch.connect(tmp_path_factory.mktemp("windows"))
    db.create_table("t", data())
    return db.open_table("t", cache=False)


@settings(max_examples=25, deadline=None)
@given(
    skip=st.integers(0, 500),
    n=st.integers(1, 700),
    bs=st.integers(1, 90),
    clump=st.integers(1, 64),
    window=st.integers(1, 300),
    world=st.integers(1, 3),
    later=st.integers(1, 3),
    stop=st.integers(0, 12),
    seed=st.integers(0, 2**32),
)
def test_windowed_shards_and_resumes_against_the_one_order(
    uncached, skip, n, bs, clump, window, world, later, stop, seed
):
    view = Permutation.identity(uncached).with_skip(skip).with_take(n)
    kw = dict(seed=seed, window_rows=window, clump_size=clump)
    order = ids_of(list(Loader(view, bs, world_size=1, **kw)))
    assert order == (skip + reference_order(n, clump, window, seed, 0, 1)).tolist()
    laid = skip + reference_order(n, clump, window, seed, 0, world)
    shard = -(-n // world)
    loaders = [Loader(view, bs, rank=r, world_size=world, **kw) for r in range(world)]
    for r, loader in enumerate(loaders):
        assert ids_of(list(loader)) == [laid[p % n] for p in range(r, shard * world, world)]
    read = []
    for loader in loaders:  # epoch 1: stop every rank after `stop` batches
        batches = []
        for b in loader if stop else []:
            batches.append(b)
            if len(batches) >= stop:
                break
        read += (ids_of(batches) if batches else [])[: len(range(loader._sampler.rank, n, world))]
    states = [loader.state_dict() for loader in loaders]
    assert all(s == states[0] for s in states)
    state = states[0]
    if state["epoch"] != 1:
        return  # the pass ended before the stop
    resumed = [Loader(view, bs, rank=r, world_size=later, **kw) for r in range(later)]
    for loader in resumed:
        loader.load_state_dict(state)
    rest = sum((ids_of(list(loader)) for loader in resumed), [])
    p = state["position"]
    assert len(rest) == -(-(n - p) // later) * later
    assert sorted(read + list(set(rest))) == list(range(skip, skip + n)), "every row once"


def test_more_threads_same_batches_in_the_same_order(table):
    one = [b.clone() for b in Loader(table, 64, seed=3, world_size=1)]
    for threads in (2, 3):
        many = list(Loader(table, 64, seed=3, world_size=1, threads=threads))
        assert len(many) == len(one) and all(torch.equal(a, b) for a, b in zip(one, many))
    loader = Loader(table, 64, seed=3, world_size=1, threads=2)
    for i, _ in enumerate(loader):
        if i == 3:
            break  # stops both threads
    assert loader.state_dict()["position"] == 4 * 64
    with pytest.raises(ValueError, match="threads=0"):
        Loader(table, 64, threads=0)


def test_prefetcher_takes_uint32_rows_as_they_are_and_checks_them():
    """An epoch's order reaches the prefetcher as uint32 where the table allows; those rows
    are checked against the table like int64 ones."""
    from lancetorch import _native

    store = _native.ColumnStore(pa.table({"a": pa.array(np.arange(5, dtype=np.int64))}))
    got = _native.Prefetcher(store, pa.array([4, 0, 2], pa.uint32()), [0], _native.Batching(2))
    batches = []
    while (capsule := got.next()) is not None:
        batches.append(torch.from_dlpack(capsule).flatten().tolist())
    assert batches == [[4, 0], [2]]
    with pytest.raises(IndexError, match="row offset 5 is out of range for a table of 5 rows"):
        _native.Prefetcher(store, pa.array([0, 5], pa.uint32()), [0], _native.Batching(2))


def test_batching_is_checked_once_and_keeps_what_it_was_given():
    """The prefetcher's batching crosses into Rust as one checked value: a bad batch size or
    dtype fails where it is made, and what it holds reads back."""
    from lancetorch import _native

    b = _native.Batching(3, drop_last=True, dtype="float32", null_value=-1.0, per_column=True)
    assert (b.batch_size, b.drop_last, b.dtype, b.null_value, b.per_column) == (
        3,
        True,
        "float32",
        -1.0,
        True,
    )
    with pytest.raises(ValueError, match="batch_size must be 1 or more"):
        _native.Batching(0)
    with pytest.raises(TypeError, match="dtype complex64 is not one a tensor can be built as"):
        _native.Batching(3, dtype="complex64")
    store = _native.ColumnStore(pa.table({"a": pa.array(np.arange(7, dtype=np.int64))}))
    rows = pa.array(np.arange(7, dtype=np.int64))
    got = _native.Prefetcher(store, rows, [0], _native.Batching(3, drop_last=True))
    sizes = []
    while (capsule := got.next()) is not None:
        sizes.append(torch.from_dlpack(capsule).shape[-1])
    assert sizes == [3, 3]


def test_sampler_orders_stay_int64_for_the_dataloader():
    from lancetorch.sampler import BatchSampler

    s = BatchSampler(1000, batch_size=64, shuffle=True, seed=3)
    batches = list(s)
    assert all(b.dtype == np.int64 for b in batches)
    assert s.order(0).dtype == np.int64
    assert np.array_equal(np.concatenate(batches), s.order(0))
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))


@pytest.mark.parametrize("keep", [True, False], ids=["batches-kept", "batches-dropped"])
def test_reused_batch_buffers_never_overwrite_a_live_batch(keep):
    """The loader makes batches in buffers it hands out again once a batch is gone: batches
    still held keep their rows, whether the epoch's batches are all kept or dropped at once."""
    db = lancetorch.connect("memory://")
    t = _embedding_table(db, n=3000, dim=16)
    held = []
    for epoch in range(2):
        loader = Loader(t, 100, seed=epoch, per_column=True, prefetch=2)
        seen = []
        for b in loader:
            if keep:
                held.append((b, b["id"].clone()))
            want = (b["id"][:, None] * 16 + torch.arange(16)).float()
            assert torch.equal(b["emb"], want)
            seen += b["id"].tolist()
        assert sorted(seen) == list(range(3000))
    for b, ids in held:  # every kept batch still holds its own rows after both epochs
        assert torch.equal(b["id"], ids)
        assert torch.equal(b["emb"], (b["id"][:, None] * 16 + torch.arange(16)).float())
        assert torch.equal(b["odd"], b["id"] % 2 == 1)


@pytest.mark.parametrize("keep", [True, False], ids=["batches-kept", "batches-dropped"])
def test_reused_tensor_buffers_never_overwrite_a_live_batch(keep):
    """The same for `(columns, rows)` tensors gathered and converted in one pass from the
    row-major block (a table of 65,536 rows or more)."""
    t = lancetorch.connect("memory://").create_table("big", data(70_000))
    held = []
    for epoch in range(2):
        seen = []
        for b in Loader(t, 4096, seed=epoch, prefetch=2):
            if keep:
                held.append((b, b.clone()))
            assert torch.equal(b[1], b[0] * 2) and torch.equal(b[2], b[0] % 7)
            seen += b[0].long().tolist()
        assert sorted(seen) == list(range(70_000))
    for b, copy in held:  # as received, though later batches came through the same pool
        assert torch.equal(b, copy)


def test_prefetcher_rows_changed_after_the_start_are_refused_not_read():
    """uint32 rows are shared with Python, not copied: an offset written into them after the
    epoch started is checked again when its batch is made, and the epoch ends with an error
    instead of a short epoch or a read outside the table."""
    from lancetorch import _native

    store = _native.ColumnStore(pa.table({"a": pa.array(np.arange(100, dtype=np.int64))}))
    rows = np.arange(100, dtype=np.uint32)
    got = _native.Prefetcher(store, pa.array(rows), [0], _native.Batching(10), depth=1)
    assert torch.from_dlpack(got.next()).flatten().tolist() == list(range(10))
    rows[50:] = 1000
    with pytest.raises(IndexError, match="row offset 1000 is out of range.*changed after"):
        while got.next() is not None:
            pass


FORKED_PREFETCHER_SCRIPT = """
import os, sys
import numpy as np, pyarrow as pa
from lancetorch import _native
store = _native.ColumnStore(pa.table({"a": pa.array(np.arange(1000, dtype=np.int64))}))
p = _native.Prefetcher(
    store, pa.array(np.arange(1000, dtype=np.uint32)), [0], _native.Batching(10), depth=2
)
p.next()
pid = os.fork()
if pid == 0:
    try:
        p.next()
        print("child: no error")
    except ValueError as e:
        print("child:", e)
    p.close()  # the producers are the parent's: nothing to join here
    del p
    sys.stdout.flush()
    os._exit(0)
os.waitpid(pid, 0)
n = 1
while p.next() is not None:
    n += 1
print("parent batches", n)
"""


def test_a_forked_child_cannot_read_the_parents_epoch_and_does_not_hang():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", FORKED_PREFETCHER_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("child: this epoch's batches are made by threads of the process"), (
        lines
    )
    assert lines[1] == "parent batches 100", lines


@pytest.mark.parametrize("rows", [1000, 70_000])
@pytest.mark.parametrize("b_type", [pa.int32(), pa.int64()])
def test_a_null_value_that_does_not_fit_is_refused_on_every_path(rows, b_type):
    """null_value=0.5 cannot stand in an int64 tensor: refused whether the batch is gathered
    straight from the row-major block, taken and then converted, or shares the take's memory
    (columns of one type), per column or not."""
    t = lancetorch.connect("memory://").create_table(
        "t", pa.table({"a": pa.array(np.arange(rows)), "b": pa.array(np.arange(rows), b_type)})
    )
    for batch_size in (100, 20_000):
        for per_column in (False, True):
            with pytest.raises(
                ValueError, match="null_value=0.5 cannot be stored in column 'a' as int64"
            ):
                next(iter(Loader(t, batch_size, null_value=0.5, per_column=per_column)))
    batch = t.__getitems__([0, 1])
    for _ in range(2):  # the same answer whether the batch's memory is lent yet or not
        with pytest.raises(ValueError, match="null_value=0.5 cannot be stored in column 'a'"):
            tbl_to_tensor(batch, null_value=0.5)
        with pytest.raises(ValueError, match="null_value=0.5 cannot be stored in column 'a'"):
            column_to_tensor(batch, "a", null_value=0.5)
    if b_type == pa.int64():  # one type: a conversion may share, and the refused ones lent nothing
        assert tbl_to_tensor(batch).data_ptr() == batch.column(0).chunk(0).buffers()[1].address


@pytest.mark.parametrize(
    "name, bad",
    [
        ("batch_size", 2.5),  # once read as 2
        ("batch_size", "64"),  # once read as 64
        ("batch_size", True),
        ("prefetch", 2.0),
        ("threads", "2"),
        ("window_rows", 1e3),
        ("clump_size", 16.0),
        ("seed", 1.5),
        ("rank", 0.0),
        ("shuffle", 0),
        ("drop_last", "False"),
        ("per_column", 1),
        ("null_value", "0"),
        ("dtype", 32),
    ],
)
def test_settings_of_another_type_are_refused_not_converted(mem_db, name, bad):
    table = mem_db.create_table("t", {"a": np.arange(10)})
    args = {"batch_size": 4, name: bad}
    if name == "rank":
        args["world_size"] = 2
    with pytest.raises(TypeError, match=rf"{name}={re.escape(repr(bad))} is {type(bad).__name__}"):
        Loader(table, **args)


def test_a_source_failing_on_its_first_read_is_closed_and_the_last_counted_once(
    mem_db, monkeypatch
):
    """A window (or any source of batches) whose first read fails is closed, and the source
    before it, finished and closed, is not closed or counted again."""
    table = mem_db.create_table("t", {"x": np.arange(64, dtype=np.float32)})
    loader = Loader(table, 16, shuffle=False)
    real = loader._epoch_in_memory
    closes: dict[str, int] = {"first": 0, "second": 0}

    def counted(source, name):
        close = source.close

        def close_and_count():
            closes[name] += 1
            close()

        source.close = close_and_count
        return source

    def fail() -> None:
        raise OSError("the store failed")

    def sources(epoch, position):
        yield counted(next(real(epoch, position)), "first")
        second = counted(next(real(epoch, position)), "second")
        second.next = fail
        yield second

    monkeypatch.setattr(loader, "_epoch_in_memory", sources)
    seen = []
    with pytest.raises(OSError, match="the store failed"):
        for batch in loader:
            seen += batch[0].tolist()
    assert seen == list(range(64))
    assert closes == {"first": 1, "second": 1}
