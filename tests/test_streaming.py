"""StreamingDataset and StreamingDataLoader: elastic determinism, resumption on another
topology, transform errors, statistics, packing, and worker processes.

The reference for every order is the permutation table itself: split ``s`` of the table the
dataset builds holds the rows that split gives, in order, and global step ``k`` (one row per
split) is row ``k`` of every split.
"""

from __future__ import annotations

import logging

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
