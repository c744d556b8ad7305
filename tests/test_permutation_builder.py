"""Building permutation tables: splits, shuffles, filters, their errors, saving and golden
orders."""

from __future__ import annotations

import datetime
import json
import math
import operator
import re
from collections.abc import Callable

import lancetorch
import numpy as np
import pyarrow as pa
import pytest
from conftest import sample_table
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from lancetorch import _native
from lancetorch.permutation import (
    Permutation,
    PermutationBuilder,
    Permutations,
    permutation_builder,
    split_names_of,
)

PROPS = settings(max_examples=30, deadline=None)


@pytest.fixture
def table(any_db):
    return any_db.create_table("t", sample_table(10))


@pytest.fixture
def big(any_db):
    return any_db.create_table("big", sample_table(100))


def rows_of(perm: pa.Table) -> list[int]:
    return perm.column("row_id").to_pylist()


def splits_of(perm: pa.Table) -> dict[int, list[int]]:
    """split id -> its row offsets, in permutation order."""
    out: dict[int, list[int]] = {}
    for r, s in zip(perm.column("row_id").to_pylist(), perm.column("split_id").to_pylist()):
        out.setdefault(s, []).append(r)
    return out


def names_of(perm: pa.Table) -> list[str]:
    """The split names in LanceDB's metadata key; none when the builder gave none."""
    meta = perm.schema.metadata or {}
    return json.loads(meta[b"split_names"]) if b"split_names" in meta else []


def assert_clumps_whole(order: list[int], base: list[int], clump: int) -> None:
    """`order` is the chunks of `base` of `clump` entries (the last may be shorter), each chunk
    whole and in its inner order, the chunks in some order."""
    chunks = {base[i]: base[i : i + clump] for i in range(0, len(base), clump)}
    pos, used = 0, set()
    while pos < len(order):
        head = order[pos]
        assert head in chunks, f"{head} at position {pos} does not start a clump: {order}"
        assert head not in used
        chunk = chunks[head]
        assert order[pos : pos + len(chunk)] == chunk, f"clump {chunk} broken in {order}"
        used.add(head)
        pos += len(chunk)
    assert used == set(chunks)


# -- execute(): the permutation table -------------------------------------------------------------


def test_execute_schema_and_default_split(table):
    executed = PermutationBuilder(table).execute()
    assert isinstance(executed, lancetorch.Table) and executed.name == "permutation"
    assert executed.count_rows() == 10
    assert executed.search(None).to_arrow().equals(executed.to_arrow())
    perm = executed.to_arrow()
    # LanceDB's layout: row_id (uint64), split_id (uint64, not null), no names unless given.
    assert perm.schema.names == ["row_id", "split_id"]
    assert perm.schema.field("row_id").type == pa.uint64()
    assert perm.schema.field("split_id").type == pa.uint64()
    assert not perm.schema.field("split_id").nullable
    assert rows_of(perm) == list(range(10))
    assert perm.column("split_id").to_pylist() == [0] * 10
    assert names_of(perm) == [] and split_names_of(perm) == []
    assert permutation_builder(table).execute().to_arrow().equals(perm)


def test_builder_steps_are_chainable(table):
    b = PermutationBuilder(table)
    assert b.filter("id > 1") is b
    assert b.split_random(ratios=[0.5, 0.5], seed=1) is b
    assert b.shuffle(seed=2) is b


# -- split_random ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "how, sizes",
    [
        ({"ratios": [0.8, 0.2]}, [8, 2]),
        ({"ratios": [0.5, 0.3]}, [5, 3]),
        ({"counts": [3, 4]}, [3, 4]),
        ({"counts": [10]}, [10]),
        ({"fixed": 3}, [3, 3, 3]),  # rounded down, as LanceDB's
    ],
)
def test_split_random_sizes(table, how, sizes):
    perm = PermutationBuilder(table).split_random(seed=5, **how).execute().to_arrow()
    groups = splits_of(perm)
    assert [len(groups[i]) for i in range(len(sizes))] == sizes
    assert sorted(groups) == list(range(len(sizes)))
    everything = [r for g in groups.values() for r in g]
    assert len(set(everything)) == len(everything) == sum(sizes)
    assert set(everything) <= set(range(10))
    assert perm.column("split_id").to_pylist() == sorted(perm.column("split_id").to_pylist())


def test_splits_have_names_only_when_given(table):
    """As in LanceDB: no names are made up; splits are read by number."""
    for k in (1, 2, 3, 4):
        perm = PermutationBuilder(table).split_random(fixed=k, seed=1).execute().to_arrow()
        assert names_of(perm) == [] and perm.schema.metadata is None
    named = PermutationBuilder(table).split_random(counts=[2, 3], seed=1, split_names=["a", "b"])
    assert names_of(named.execute().to_arrow()) == ["a", "b"]


def test_split_random_seed_determinism(big):
    def build(seed):
        return (
            PermutationBuilder(big).split_random(ratios=[0.6, 0.4], seed=seed).execute().to_arrow()
        )

    assert build(11).equals(build(11))
    assert rows_of(build(11)) != rows_of(build(12))


def test_split_random_without_seed_differs(big):
    a = PermutationBuilder(big).split_random(ratios=[0.5, 0.5]).execute().to_arrow()
    b = PermutationBuilder(big).split_random(ratios=[0.5, 0.5]).execute().to_arrow()
    assert sorted(rows_of(a)) == sorted(rows_of(b)) == list(range(100))
    assert rows_of(a) != rows_of(b)  # 1 in C(100, 50) to be equal


def test_split_random_same_on_memory_and_disk(tmp_path):
    mem = lancetorch.connect("memory://").create_table("t", sample_table(50))
    disk = lancetorch.connect(tmp_path).create_table("t", sample_table(50))
    a = (
        PermutationBuilder(mem)
        .split_random(ratios=[0.7, 0.3], seed=9)
        .shuffle(seed=3)
        .execute()
        .to_arrow()
    )
    b = (
        PermutationBuilder(disk)
        .split_random(ratios=[0.7, 0.3], seed=9)
        .shuffle(seed=3)
        .execute()
        .to_arrow()
    )
    assert a.equals(b)


def test_split_random_clumps_stay_whole_when_sizes_align(any_db):
    t = any_db.create_table("t", sample_table(30))
    for seed in range(5):
        perm = PermutationBuilder(t).split_random(counts=[12, 9, 9], clump_size=3, seed=seed)
        groups = splits_of(perm.execute().to_arrow())
        for split, rows in groups.items():
            for r in rows:  # each split holds whole clumps, contiguous and in order
                start = r - r % 3
                i = rows.index(start)
                assert rows[i : i + 3] == [start, start + 1, start + 2], (split, rows)


def test_split_random_clumps_stay_whole_but_at_split_boundaries(table):
    """Split sizes are exact, so a cut may fall inside a clump: at most one clump per boundary
    between splits is shared by two splits (as the README says); every other clump is whole."""
    for seed in range(20):
        perm = (
            PermutationBuilder(table)
            .split_random(ratios=[0.5, 0.5], clump_size=3, seed=seed)
            .execute()
            .to_arrow()
        )
        split_of = dict(zip(rows_of(perm), perm.column("split_id").to_pylist()))
        shared = [
            start
            for start in range(0, 10, 3)
            if len({split_of[r] for r in range(start, min(start + 3, 10))}) > 1
        ]
        assert len(shared) <= 1, (seed, shared, splits_of(perm))


# -- split_sequential -----------------------------------------------------------------------------


def test_split_sequential(table):
    perm = PermutationBuilder(table).split_sequential(counts=[3, 4]).execute().to_arrow()
    assert rows_of(perm) == list(range(7))
    assert perm.column("split_id").to_pylist() == [0] * 3 + [1] * 4
    perm = PermutationBuilder(table).split_sequential(ratios=[0.8, 0.2]).execute().to_arrow()
    assert splits_of(perm) == {0: list(range(8)), 1: [8, 9]}
    perm = (
        PermutationBuilder(table)
        .split_sequential(fixed=3, split_names=["a", "b", "c"])
        .execute()
        .to_arrow()
    )
    assert splits_of(perm) == {0: [0, 1, 2], 1: [3, 4, 5], 2: [6, 7, 8]}  # row 9 left out
    assert names_of(perm) == ["a", "b", "c"]


def test_split_sequential_after_filter(table):
    perm = (
        PermutationBuilder(table)
        .filter("id % 2 = 1")
        .split_sequential(fixed=2)
        .execute()
        .to_arrow()
    )
    assert splits_of(perm) == {0: [1, 3], 1: [5, 7]}


# -- split_hash -----------------------------------------------------------------------------------


def _id_table(ids) -> pa.Table:
    ids = list(ids)
    return pa.table(
        {
            "id": pa.array(ids, type=pa.int64()),
            "x": pa.array([i * 0.5 for i in ids], type=pa.float64()),
            "s": pa.array([f"row{i}" for i in ids], type=pa.string()),
        }
    )


def _hash_splits(db, name, ids, **kw) -> dict[int, int]:
    """id -> split id of a hash split of a table holding these ids, in this order."""
    t = db.create_table(name, _id_table(ids))
    perm = PermutationBuilder(t).split_hash(["id"], [3, 1], **kw).execute().to_arrow()
    id_col = t.to_arrow().column("id").to_pylist()
    return {id_col[r]: s for r, s in zip(rows_of(perm), perm.column("split_id").to_pylist())}


def test_split_hash_row_keeps_its_split_when_rows_come_and_go(any_db):
    base = _hash_splits(any_db, "base", range(400))
    assert set(base) == set(range(400))  # no discard: every row is in a split
    assert set(base.values()) == {0, 1}
    more = _hash_splits(any_db, "more", list(range(1000, 1300)) + list(range(400)))
    fewer = _hash_splits(any_db, "fewer", [i for i in range(400) if i % 3])
    shuffled = _hash_splits(any_db, "shuffled", list(reversed(range(400))))
    for other in (more, fewer, shuffled):
        common = set(base) & set(other)
        assert len(common) >= 250
        assert {i: base[i] for i in common} == {i: other[i] for i in common}


def test_split_hash_proportions_and_names(any_db):
    t = any_db.create_table("t", _id_table(range(4000)))
    perm = (
        PermutationBuilder(t)
        .split_hash(["id", "s"], [3, 1], split_names=["tr", "te"])
        .execute()
        .to_arrow()
    )
    groups = splits_of(perm)
    assert names_of(perm) == ["tr", "te"]
    assert len(groups[0]) + len(groups[1]) == 4000
    assert not set(groups[0]) & set(groups[1])
    assert 0.70 < len(groups[0]) / 4000 < 0.80


def test_split_hash_discard_weight_drops_a_fraction(any_db):
    t = any_db.create_table("t", _id_table(range(4000)))
    perm = PermutationBuilder(t).split_hash("id", [1, 1], discard_weight=2).execute().to_arrow()
    rows = rows_of(perm)
    assert len(set(rows)) == len(rows)
    assert 0.40 < len(rows) / 4000 < 0.60  # 2 of 4 parts are discarded
    groups = splits_of(perm)
    assert 0.20 < len(groups[0]) / 4000 < 0.30
    assert 0.20 < len(groups[1]) / 4000 < 0.30


# Split ids of keys 0..31 (int64, and the strings "k0".."k31") under split_hash(..., [1, 1]):
# a row's split must not move between versions of lancetorch.
GOLDEN_HASH_SPLITS = {
    ("k",): [
        1,
        1,
        1,
        1,
        0,
        1,
        0,
        0,
        1,
        0,
        1,
        1,
        0,
        1,
        0,
        1,
        1,
        1,
        0,
        1,
        0,
        1,
        0,
        1,
        0,
        0,
        0,
        1,
        0,
        1,
        1,
        1,
    ],
    ("s",): [
        0,
        0,
        0,
        1,
        0,
        1,
        0,
        0,
        0,
        1,
        1,
        0,
        1,
        0,
        1,
        0,
        1,
        0,
        1,
        1,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        1,
        0,
        1,
        1,
        1,
    ],
    ("k", "s"): [
        1,
        0,
        1,
        1,
        1,
        1,
        1,
        0,
        0,
        1,
        0,
        1,
        1,
        1,
        1,
        0,
        1,
        1,
        0,
        1,
        1,
        0,
        1,
        0,
        1,
        1,
        0,
        1,
        0,
        1,
        1,
        1,
    ],
}


@pytest.mark.parametrize("columns", list(GOLDEN_HASH_SPLITS), ids=str)
def test_golden_hash_splits(mem_db, columns):
    t = mem_db.create_table(
        "t", pa.table({"k": pa.array(range(32), pa.int64()), "s": [f"k{i}" for i in range(32)]})
    )
    perm = PermutationBuilder(t).split_hash(list(columns), [1, 1]).execute().to_arrow()
    split = dict(zip(rows_of(perm), perm.column("split_id").to_pylist()))
    assert [split[r] for r in range(32)] == GOLDEN_HASH_SPLITS[columns]


def test_split_hash_keys_by_value_not_by_column_width(mem_db):
    """A key keeps its split when its column is stored wider or narrower (int32 to int64,
    float32 to float64): no test row leaks into training after a schema change."""
    keys = list(range(100))

    def split_of(arrow_type):
        t = mem_db.create_table(
            f"t_{arrow_type}", pa.table({"k": pa.array(keys, arrow_type)}), mode="overwrite"
        )
        perm = PermutationBuilder(t).split_hash("k", [1, 1]).execute().to_arrow()
        return dict(zip(rows_of(perm), perm.column("split_id").to_pylist()))

    want = split_of(pa.int64())
    assert len(set(want.values())) == 2
    for other in (
        pa.int8(),
        pa.int16(),
        pa.int32(),
        pa.uint8(),
        pa.uint16(),
        pa.uint32(),
        pa.uint64(),
    ):
        assert split_of(other) == want, other
    floats = split_of(pa.float64())
    assert split_of(pa.float32()) == split_of(pa.float16()) == floats


def test_split_hash_same_on_memory_and_disk(tmp_path):
    mem = lancetorch.connect("memory://").create_table("t", _id_table(range(300)))
    disk = lancetorch.connect(tmp_path).create_table("t", _id_table(range(300)))
    a = PermutationBuilder(mem).split_hash(["s"], [1, 1, 1]).execute().to_arrow()
    b = PermutationBuilder(disk).split_hash(["s"], [1, 1, 1]).execute().to_arrow()
    assert a.equals(b)


# -- split_calculated -----------------------------------------------------------------------------


def test_split_calculated(table):
    perm = PermutationBuilder(table).split_calculated("id % 3").execute().to_arrow()
    assert dict(zip(rows_of(perm), perm.column("split_id").to_pylist())) == {
        i: i % 3 for i in range(10)
    }
    assert names_of(perm) == []
    named = PermutationBuilder(table).split_calculated("id % 2", split_names=["even", "odd"])
    perm = named.execute().to_arrow()
    assert names_of(perm) == ["even", "odd"]
    assert splits_of(perm) == {0: [0, 2, 4, 6, 8], 1: [1, 3, 5, 7, 9]}


def test_split_calculated_negative_leaves_rows_out(table):
    perm = PermutationBuilder(table).split_calculated("id - 7").execute().to_arrow()
    assert splits_of(perm) == {0: [7], 1: [8], 2: [9]}


def test_split_calculated_with_filter(table):
    perm = (
        PermutationBuilder(table).filter("id >= 4").split_calculated("id % 2").execute().to_arrow()
    )
    assert splits_of(perm) == {0: [4, 6, 8], 1: [5, 7, 9]}


# -- filter ---------------------------------------------------------------------------------------


def test_filter(table):
    perm = PermutationBuilder(table).filter("x > 2 AND s != 'row7'").execute().to_arrow()
    assert rows_of(perm) == [5, 6, 8, 9]
    assert perm.column("split_id").to_pylist() == [0] * 4


def test_memory_table_sql_reads_only_the_columns_it_names(mem_db, monkeypatch):
    """Lance evaluates SQL over a scratch copy of a memory table: of the columns the expression
    names, not of a wide embedding column it never uses."""
    import lance

    written = []
    real = lance.write_dataset

    def recording(data, *args, **kwargs):
        written.append(data.schema.names)
        return real(data, *args, **kwargs)

    monkeypatch.setattr(lance, "write_dataset", recording)
    emb = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(10 * 64, np.float32)), 64)
    t = mem_db.create_table(
        "t", pa.table({"id": range(10), "Tag Group": [i % 3 for i in range(10)], "emb": emb})
    )
    perm = (
        PermutationBuilder(t)
        .filter("`Tag Group` > 0")
        .split_calculated("ID % 2")
        .execute()
        .to_arrow()
    )
    assert written == [["Tag Group"], ["id"]]
    assert rows_of(perm) == [1, 2, 4, 5, 7, 8]
    assert perm.column("split_id").to_pylist() == [1, 0, 0, 1, 1, 0]
    written.clear()
    with pytest.raises(ValueError, match="'nope > 1'.*nope"):
        PermutationBuilder(t).filter("nope > 1").execute().to_arrow()
    assert written == [["id"], ["id", "Tag Group", "emb"]], "tried with every column before failing"


def test_filter_null_counts_as_false(any_db):
    t = any_db.create_table("t", pa.table({"id": [0, 1, 2, 3], "v": [1, None, 5, None]}))
    assert rows_of(PermutationBuilder(t).filter("v > 0").execute().to_arrow()) == [0, 2]


def test_filter_then_split_sizes_refer_to_filtered_rows(table):
    perm = PermutationBuilder(table).filter("id >= 4").split_random(ratios=[0.5, 0.5], seed=3)
    groups = splits_of(perm.execute().to_arrow())
    assert len(groups[0]) == len(groups[1]) == 3
    assert sorted(groups[0] + groups[1]) == [4, 5, 6, 7, 8, 9]


def test_steps_run_in_fixed_order_whatever_the_call_order(big):
    a = PermutationBuilder(big).filter("id % 4 != 0").split_random(fixed=2, seed=1).shuffle(seed=2)
    b = PermutationBuilder(big).shuffle(seed=2).split_random(fixed=2, seed=1).filter("id % 4 != 0")
    assert a.execute().to_arrow().equals(b.execute().to_arrow())


# -- shuffle --------------------------------------------------------------------------------------


def test_shuffle_seeded(big):
    a = PermutationBuilder(big).shuffle(seed=1).execute().to_arrow()
    assert a.equals(PermutationBuilder(big).shuffle(seed=1).execute().to_arrow())
    assert sorted(rows_of(a)) == list(range(100))
    assert rows_of(a) != list(range(100))
    assert rows_of(a) != rows_of(PermutationBuilder(big).shuffle(seed=2).execute().to_arrow())


def test_shuffle_without_seed_differs(big):
    a = rows_of(PermutationBuilder(big).shuffle().execute().to_arrow())
    b = rows_of(PermutationBuilder(big).shuffle().execute().to_arrow())
    assert sorted(a) == sorted(b) == list(range(100))
    assert a != b


def test_shuffle_clumped(big):
    order = rows_of(PermutationBuilder(big).shuffle(seed=4, clump_size=8).execute().to_arrow())
    assert order != list(range(100))
    assert_clumps_whole(order, list(range(100)), 8)


def test_shuffle_keeps_splits_grouped(big):
    perm = (
        PermutationBuilder(big)
        .split_random(ratios=[0.7, 0.3], seed=1)
        .shuffle(seed=2)
        .execute()
        .to_arrow()
    )
    unshuffled = (
        PermutationBuilder(big).split_random(ratios=[0.7, 0.3], seed=1).execute().to_arrow()
    )
    assert perm.column("split_id").to_pylist() == [0] * 70 + [1] * 30
    shuffled, plain = splits_of(perm), splits_of(unshuffled)
    for s in (0, 1):
        assert sorted(shuffled[s]) == sorted(plain[s])
    assert shuffled[0] != plain[0]


def test_shuffle_after_filter_clumps_filtered_rows(big):
    perm = (
        PermutationBuilder(big)
        .filter("id % 2 = 0")
        .shuffle(seed=5, clump_size=4)
        .execute()
        .to_arrow()
    )
    assert_clumps_whole(rows_of(perm), list(range(0, 100, 2)), 4)


# -- golden vectors: seeded orders never change --------------------------------------------------

GOLDEN_SEED_42 = [5, 3, 1, 0, 9, 6, 4, 7, 2, 8]
GOLDEN_SEED_7_CLUMP_3 = [6, 7, 8, 3, 4, 5, 9, 0, 1, 2]


def test_golden_shuffle(table):
    order = rows_of(PermutationBuilder(table).shuffle(seed=42).execute().to_arrow())
    assert sorted(order) == list(range(10))
    assert order == GOLDEN_SEED_42  # the same vector as the Rust core's golden_shuffle test


def test_golden_random_split(table):
    """A random split keeps the order its rows were dealt in (LanceDB's too): the seed's
    shuffle, cut into splits. Never ascending row order, which would read unshuffled."""
    perm = PermutationBuilder(table).split_random(fixed=2, seed=42).execute().to_arrow()
    assert splits_of(perm) == {0: GOLDEN_SEED_42[:5], 1: GOLDEN_SEED_42[5:]}
    perm = PermutationBuilder(table).split_random(counts=[4], seed=7, clump_size=3).execute()
    assert rows_of(perm.to_arrow()) == GOLDEN_SEED_7_CLUMP_3[:4]


def test_golden_clumped_shuffle(table):
    order = rows_of(PermutationBuilder(table).shuffle(seed=7, clump_size=3).execute().to_arrow())
    assert sorted(order) == list(range(10))
    assert_clumps_whole(order, list(range(10)), 3)
    assert order == GOLDEN_SEED_7_CLUMP_3


# -- saving and reopening -------------------------------------------------------------------------


def _ids(perm: Permutation) -> list[int]:
    return perm.with_format("arrow").take_offsets(range(len(perm))).column("id").to_pylist()


def test_save_and_reopen_permutation_table(any_db):
    base = any_db.create_table("base", sample_table(40))
    perm = (
        PermutationBuilder(base)
        .split_random(ratios=[0.5, 0.25, 0.25], seed=8, split_names=["a", "b", "c"])
        .shuffle(seed=3)
        .execute()
        .to_arrow()
    )
    any_db.create_table("perm", perm)
    reopened = any_db.open_table("perm")
    assert reopened.to_arrow().equals(perm)
    assert split_names_of(reopened.to_arrow()) == ["a", "b", "c"]
    direct, saved = Permutations(base, perm), Permutations(base, reopened)
    assert saved.split_names == ["a", "b", "c"]
    expected = splits_of(perm)
    for i, name in enumerate(["a", "b", "c"]):
        assert _ids(saved[name]) == _ids(direct[name]) == expected[i]
        assert _ids(saved[i]) == expected[i]


def test_save_in_another_connection(tmp_path):
    base = lancetorch.connect("memory://").create_table("base", sample_table(20))
    perm = (
        PermutationBuilder(base)
        .split_sequential(counts=[15, 5])
        .shuffle(seed=1)
        .execute()
        .to_arrow()
    )
    db = lancetorch.connect(tmp_path)
    db.create_table("perm", perm)
    again = lancetorch.connect(tmp_path).open_table("perm")
    assert _ids(Permutations(base, again)[1]) == splits_of(perm)[1]
    assert sorted(_ids(Permutations(base, again)[1])) == list(range(15, 20))


# -- errors: ValueError saying which and why, before any work -------------------------------------


@pytest.mark.parametrize("step", ["split_random", "split_sequential"])
@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"ratios": [0.5], "counts": [1]},
        {"counts": [1], "fixed": 2},
        {"ratios": [0.5], "fixed": 2},
    ],
)
def test_exactly_one_of_ratios_counts_fixed(table, step, kw):
    with pytest.raises(ValueError, match="Exactly one of 'ratios', 'counts', or 'fixed' must be"):
        getattr(PermutationBuilder(table), step)(**kw)


@pytest.mark.parametrize("step", ["split_random", "split_sequential"])
@pytest.mark.parametrize(
    "kw, words",
    [
        # LanceDB's words first, then which split and why.
        ({"ratios": [0.8, 0.3]}, r"Split percentages must sum to 1.0 or less: ratios \[0.8, 0.3\]"),
        ({"counts": [8, 3]}, r"Split counts specified 11 rows but only 10 are available"),
        ({"ratios": [0.99, 0.01]}, r"One of the splits has 1% of 10 rows which rounds to 0 rows"),
        ({"counts": [5, 0]}, "Split counts must be greater than 0: split 1 would be empty"),
        ({"fixed": 11}, "Split fixed config specified 11 splits but only 10 rows are available"),
        ({"fixed": 0}, "fixed= must be at least 1"),
        ({"ratios": [0.5, -0.1]}, "Split percentages must be between 0.0 and 1.0: ratio -0.1"),
    ],
)
def test_bad_sizes_raise_at_the_call(table, step, kw, words):
    with pytest.raises(ValueError, match=words):
        getattr(PermutationBuilder(table), step)(**kw)  # not execute(): before any work


def test_sizes_checked_against_filtered_rows_at_execute(table):
    b = PermutationBuilder(table).filter("id >= 6").split_random(counts=[3, 3], seed=1)
    with pytest.raises(ValueError, match="Split counts specified 6 rows but only 4 are available"):
        b.execute().to_arrow()


@pytest.mark.parametrize("clump", [0, -1, -5])
def test_bad_clump_size(table, clump):
    with pytest.raises(ValueError, match=f"clump_size={clump} must be 1 or more"):
        PermutationBuilder(table).split_random(ratios=[0.5, 0.5], seed=1, clump_size=clump)
    with pytest.raises(ValueError, match=f"clump_size={clump} must be 1 or more"):
        PermutationBuilder(table).shuffle(seed=1, clump_size=clump)


def test_split_hash_unknown_column(table):
    with pytest.raises(ValueError, match="split_hash column 'nope' is not in the table.*'id'"):
        PermutationBuilder(table).split_hash(["id", "nope"], [1, 1])


@pytest.mark.parametrize("weights", [[], [1, 0], [-1, 2]])
def test_split_hash_bad_weights(table, weights):
    with pytest.raises(ValueError, match="split_weights"):
        PermutationBuilder(table).split_hash(["id"], weights)


def test_split_hash_negative_discard(table):
    with pytest.raises(ValueError, match="discard_weight=-1 must not be negative"):
        PermutationBuilder(table).split_hash(["id"], [1], discard_weight=-1)


@pytest.mark.parametrize(
    "build",
    [
        lambda b: b.split_random(counts=[2, 2, 2], seed=1, split_names=["a", "b", "a"]),
        lambda b: b.split_sequential(fixed=2, split_names=["x", "x"]),
        lambda b: b.split_hash(["id"], [1, 1], split_names=["x", "x"]),
        lambda b: b.split_calculated("id % 2", split_names=["x", "x"]),
    ],
)
def test_duplicate_split_names(table, build):
    with pytest.raises(ValueError, match="split name '(a|x)' is used twice"):
        build(PermutationBuilder(table))


def test_wrong_number_of_split_names(table):
    with pytest.raises(ValueError, match="2 split names .* for 3 splits"):
        PermutationBuilder(table).split_random(fixed=3, seed=1, split_names=["a", "b"])
    b = PermutationBuilder(table).split_calculated("id % 3", split_names=["a", "b"])
    with pytest.raises(ValueError, match="gives split 2 but only 2 names"):
        b.execute().to_arrow()


def test_one_split_step_only(table):
    with pytest.raises(ValueError, match="already splits"):
        PermutationBuilder(table).split_random(fixed=2, seed=1).split_sequential(fixed=2)


@pytest.mark.parametrize(
    "expression, words",
    [
        ("x >>> 5", "Expected: an expression, found: > at offset 4"),
        ("nope > 5", "nope"),
        ("s = 'row1' AND", "Expected: an expression, found: EOF at offset 14"),
    ],
)
def test_filter_sql_errors_quote_the_expression(table, expression, words):
    with pytest.raises(ValueError) as info:
        PermutationBuilder(table).filter(expression).execute().to_arrow()
    message = str(info.value)
    assert f"filter {expression!r}" in message
    assert re.search(words, message)


@pytest.mark.parametrize(
    "expression, words", [("id %% 3", "found: % at offset 4"), ("nope % 3", "nope")]
)
def test_split_calculated_sql_errors_quote_the_expression(table, expression, words):
    with pytest.raises(ValueError) as info:
        PermutationBuilder(table).split_calculated(expression).execute().to_arrow()
    message = str(info.value)
    assert f"split_calculated {expression!r}" in message
    assert re.search(words, message)


def test_filter_not_boolean(table):
    with pytest.raises(ValueError, match="filter 'id \\+ 1' gives int64 values, not true/false"):
        PermutationBuilder(table).filter("id + 1").execute().to_arrow()


@pytest.mark.parametrize("bad", ["", "   ", None])
def test_empty_sql(table, bad):
    with pytest.raises(ValueError):
        PermutationBuilder(table).filter(bad)
    with pytest.raises(ValueError):
        PermutationBuilder(table).split_calculated(bad)


def test_bad_seed(table):
    with pytest.raises(ValueError, match="seed=-1"):
        PermutationBuilder(table).shuffle(seed=-1)
    with pytest.raises(ValueError, match="seed="):
        PermutationBuilder(table).split_random(fixed=2, seed=2**64)


# -- property tests -------------------------------------------------------------------------------

_TABLES: dict[int, lancetorch.Table] = {}


def mem_table(n: int) -> lancetorch.Table:
    if n not in _TABLES:
        _TABLES[n] = lancetorch.connect("memory://").create_table(f"t{n}", sample_table(n))
    return _TABLES[n]


@st.composite
def sizes_request(draw, n: int):
    kind = draw(st.sampled_from(["ratios", "counts", "fixed"]))
    k = draw(st.integers(1, min(4, n)))
    if kind == "fixed":
        return {"fixed": k}, [n // k] * k  # rounded down, as LanceDB's
    if kind == "counts":
        counts = draw(st.lists(st.integers(1, n // k), min_size=k, max_size=k))
        return {"counts": counts}, counts
    parts = draw(st.lists(st.integers(1, 20), min_size=k, max_size=k))
    whole = draw(st.booleans())
    total = sum(parts) if whole else sum(parts) + draw(st.integers(1, 20))
    ratios = [p / total for p in parts]
    assume(all(r * n >= 1 for r in ratios))
    # What the sizes must be (LanceDB's rule): each rounded half away from zero; rows over
    # the total come off the splits in turn from the first; rows short of ratios that sum to
    # one go to them in turn.
    sizes = [math.floor(r * n + 0.5) for r in ratios]
    excess, i = sum(sizes) - n, 0
    while excess > 0:
        if sizes[i] > 0:
            sizes[i] -= 1
            excess -= 1
        i = (i + 1) % k
    i = 0
    while abs(n - sum(ratios) * n) < 0.5 and excess < 0:
        sizes[i] += 1
        excess += 1
        i = (i + 1) % k
    assume(all(s > 0 for s in sizes))
    return {"ratios": ratios}, sizes


@PROPS
@given(
    n=st.integers(4, 60),
    data=st.data(),
    kind=st.sampled_from(["random", "sequential"]),
    modulus=st.integers(1, 4),
    seed=st.integers(0, 2**64 - 1),
    clump=st.none() | st.integers(1, 5),
    shuffle=st.booleans(),
)
def test_splits_partition_filtered_rows(n, data, kind, modulus, seed, clump, shuffle):
    table = mem_table(n)
    kept = [i for i in range(n) if i % modulus != 1] if modulus > 1 else list(range(n))
    builder = PermutationBuilder(table)
    if modulus > 1:
        builder.filter(f"id % {modulus} != 1")
    how, sizes = data.draw(sizes_request(len(kept)))
    if kind == "random":
        builder.split_random(seed=seed, clump_size=clump, **how)
    else:
        builder.split_sequential(**how)
    if shuffle:
        builder.shuffle(seed=seed ^ 1)
    perm = builder.execute().to_arrow()
    groups = splits_of(perm)
    assert sorted(groups) == list(range(len(sizes)))
    assert [len(groups[i]) for i in range(len(sizes))] == sizes
    everything = [r for i in range(len(sizes)) for r in groups[i]]
    assert len(set(everything)) == len(everything)  # disjoint
    assert set(everything) <= set(kept)  # only filtered rows
    if sum(sizes) == len(kept):
        assert sorted(everything) == kept  # complete
    if kind == "sequential":
        assert sorted(everything) == kept[: sum(sizes)]
        if not shuffle:
            assert everything == kept[: sum(sizes)]


@PROPS
@given(
    n=st.integers(1, 80),
    weights=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    discard=st.integers(0, 3),
    modulus=st.integers(1, 3),
)
def test_hash_split_partitions_and_is_stable_under_filtering(n, weights, discard, modulus):
    table = mem_table(n)
    full = (
        PermutationBuilder(table)
        .split_hash(["id"], weights, discard_weight=discard)
        .execute()
        .to_arrow()
    )
    split_of = dict(zip(rows_of(full), full.column("split_id").to_pylist()))
    assert len(split_of) == full.num_rows  # disjoint
    if discard == 0:
        assert sorted(split_of) == list(range(n))  # complete
    assert set(split_of.values()) <= set(range(len(weights)))
    filtered = (
        PermutationBuilder(table)
        .filter(f"id % {modulus} = 0")
        .split_hash(["id"], weights, discard_weight=discard)
        .execute()
        .to_arrow()
    )
    sub = dict(zip(rows_of(filtered), filtered.column("split_id").to_pylist()))
    assert sub == {r: s for r, s in split_of.items() if r % modulus == 0}


@PROPS
@given(
    n=st.integers(1, 80),
    clump=st.integers(1, 12),
    seed=st.integers(0, 2**64 - 1),
    splits=st.integers(1, 3),
)
def test_clumped_shuffles_keep_clumps_contiguous(n, clump, seed, splits):
    table = mem_table(max(n, splits))
    n = len(table)
    perm = (
        PermutationBuilder(table)
        .split_sequential(fixed=splits)
        .shuffle(seed=seed, clump_size=clump)
        .execute()
        .to_arrow()
    )
    unshuffled = splits_of(
        PermutationBuilder(table).split_sequential(fixed=splits).execute().to_arrow()
    )
    for s, order in splits_of(perm).items():
        assert_clumps_whole(order, unshuffled[s], clump)


_HUGE_SPLITS = """
import pyarrow as pa, lancetorch
from lancetorch.permutation import permutation_builder
t = lancetorch.connect("memory://").create_table("t", pa.table({"a": range(1000)}))
for step in ("split_random", "split_sequential"):
    try:
        getattr(permutation_builder(t), step)(fixed=10**12).execute()
    except ValueError as e:
        print(step, e)
"""


def test_a_huge_split_count_is_refused_before_anything_is_allocated():
    """fixed=10**12 once asked for 8 TB and aborted the interpreter; run in a child so that an
    abort fails this test rather than the test run."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _HUGE_SPLITS], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and all("ask for at most 1000 splits" in line for line in lines), lines


def test_split_numbers_past_uint32_are_refused_without_naming_splits(mem_db):
    """A calculated split of 10**11 once made a name for every split and never returned."""
    t = mem_db.create_table("t", pa.table({"a": range(1000)}))
    with pytest.raises(ValueError, match=r"gives split 99900000000; split numbers go up to"):
        permutation_builder(t).split_calculated("a * 100000000").execute()
    perm = permutation_builder(t).split_calculated("a * 1000000").execute().to_arrow()
    assert perm.num_rows == 1000 and names_of(perm) == []


# Text Lance reads in part: it wraps a filter as `SELECT 1 FROM t WHERE <filter>` and keeps
# the first expression, so each of these would filter on `id > 5` alone. The offset is where
# the expression stops being one.
NOT_ONE_EXPRESSION = [
    ("id > 5; DROP TABLE t", "ends before ';' at offset 6"),
    ("id > 5; id < 3", "ends before ';' at offset 6"),
    ("id > 5;", "ends before ';' at offset 6"),
    ("s = 'a'; id > 1", "ends before ';' at offset 7"),
    ("id > 5, id < 3", "ends before ',' at offset 6"),
    ("id > 5 LIMIT 3", "ends before 'LIMIT' at offset 7"),
    ("id > 5 ORDER BY id", "ends before 'ORDER' at offset 7"),
    ("id > 5 GROUP BY id", "ends before 'GROUP' at offset 7"),
    ("id > 5)", "ends before ')' at offset 6"),
    ("(id > 5) OR id < 3)", "ends before ')' at offset 18"),
    ("id > 5 id < 3", "ends before 'id' at offset 7"),
    ("id > 5\n  LIMIT 3", "ends before 'LIMIT' at offset 9"),
    ("(id > 5", "found: EOF at offset 7"),
    ("id > 5 -- , id < 3", "comment, whose text would not be read, at offset 7"),
    ("id > 5 /* LIMIT 3 */", "comment, whose text would not be read, at offset 7"),
    ("id > 5 --", "comment, whose text would not be read, at offset 7"),
    ("s = 'open", "Unterminated string literal at offset 4"),
]


@pytest.mark.parametrize("sql, where", NOT_ONE_EXPRESSION)
def test_sql_that_is_not_exactly_one_expression_is_refused(table, sql, where):
    for step, kind in (("filter", "boolean"), ("split_calculated", "integer")):
        with pytest.raises(ValueError) as info:
            getattr(PermutationBuilder(table), step)(sql)
        message = str(info.value)
        assert message.startswith(f"{step} {sql!r} is not exactly one SQL expression: "), message
        assert where in message, message
        assert f"give exactly one {kind} expression" in message
        assert isinstance(info.value.__cause__, ValueError), "the parser's error is kept"


@settings(max_examples=300, deadline=None)
@given(text=st.text(st.sampled_from("ab1 ;,()[]'\"`-/*<>=.\nNOTANDLIMIT"), max_size=40))
def test_any_text_is_checked_without_a_crash(text):
    """The parser answers any text: one expression, or a ValueError saying where it is not."""
    try:
        _native.check_sql_expression(text)
    except ValueError as err:
        assert str(err), text


def test_text_after_a_filter_is_refused_where_lance_drops_it(dir_db):
    """What the check guards against: Lance itself reads `id > 5, id < 3` as `id > 5`."""
    import lance

    t = dir_db.create_table("t", sample_table(10))
    dataset = lance.dataset(t._backend.dataset.uri)
    assert dataset.to_table(filter="id > 5, id < 3").num_rows == 4, "Lance changed: recheck"
    with pytest.raises(ValueError, match="not exactly one SQL expression"):
        PermutationBuilder(t).filter("id > 5, id < 3")


def _filter_table() -> pa.Table:
    """Columns of the kinds a filter meets: strings holding SQL's own punctuation, a name with
    a space, a struct, a timestamp, a date, a list, nulls."""
    names = ["a;b", "a)b", "a -- b", "it's", "x", "abc", "ab", None, "Zz", "q"]
    return pa.table(
        {
            "id": pa.array(range(10), pa.int64()),
            "name": pa.array(names, pa.string()),
            "my col": pa.array([i * 0.5 for i in range(10)], pa.float64()),
            "s": pa.array([{"b": i % 4} for i in range(10)]),
            "ts": pa.array(
                [datetime.datetime(2024, 1, i + 1) for i in range(10)], pa.timestamp("us")
            ),
            "d": pa.array([datetime.date(2024, 1, i + 1) for i in range(10)], pa.date32()),
            "tags": pa.array([["x"] if i % 3 == 0 else ["y", "z"] for i in range(10)]),
        }
    )


_ROWS = _filter_table().to_pylist()

# Filters Lance reads, with the rows each keeps worked out here in Python.
VALID_FILTERS = [
    ("id IN (1, 3, 5)", lambda r: r["id"] in (1, 3, 5)),
    ("id NOT IN (1, 3, 5)", lambda r: r["id"] not in (1, 3, 5)),
    ("id BETWEEN 2 AND 4", lambda r: 2 <= r["id"] <= 4),
    ("id == 4", lambda r: r["id"] == 4),
    ("id <> 4 AND id != 5", lambda r: r["id"] not in (4, 5)),
    ("name LIKE 'a%'", lambda r: (r["name"] or "").startswith("a")),
    ("name NOT LIKE 'a%'", lambda r: r["name"] is not None and not r["name"].startswith("a")),
    ("name IS NULL", lambda r: r["name"] is None),
    ("name IS NOT NULL", lambda r: r["name"] is not None),
    ("NOT (id > 5)", lambda r: not r["id"] > 5),
    ("((id > 5) AND ((id < 8) OR (id = 1)))", lambda r: 5 < r["id"] < 8),
    ("CAST(id AS BIGINT) % 2 = 0", lambda r: r["id"] % 2 == 0),
    ("regexp_match(name, '^a.') IS NOT NULL", lambda r: re.match("^a.", r["name"] or "")),
    ("regexp_like(name, 'b$')", lambda r: (r["name"] or "").endswith("b")),
    ("array_has_any(tags, make_array('x'))", lambda r: "x" in r["tags"]),
    ("lower(name) = 'zz'", lambda r: r["name"] == "Zz"),
    ("name = 'a;b'", lambda r: r["name"] == "a;b"),
    ("name = 'a)b'", lambda r: r["name"] == "a)b"),
    ("name = 'a -- b'", lambda r: r["name"] == "a -- b"),
    ("name = 'it''s'", lambda r: r["name"] == "it's"),
    ("`my col` >= 3.5", lambda r: r["my col"] >= 3.5),
    ("s.b = 3", lambda r: r["s"]["b"] == 3),
    ("ts > timestamp '2024-01-05 00:00:00'", lambda r: r["ts"] > datetime.datetime(2024, 1, 5)),
    ("d < date '2024-01-04'", lambda r: r["d"] < datetime.date(2024, 1, 4)),
    ("`my col` < 2.5e0", lambda r: r["my col"] < 2.5),
    ("`my col` > 15E-1", lambda r: r["my col"] > 1.5),
    ("id > 5\nAND id < 8", lambda r: 5 < r["id"] < 8),
    ("  id >= 8  ", lambda r: r["id"] >= 8),
    ("id IS DISTINCT FROM 3", lambda r: r["id"] != 3),
    ("id::bigint > 6", lambda r: r["id"] > 6),
]


@pytest.mark.parametrize("sql, keeps", VALID_FILTERS, ids=[f for f, _ in VALID_FILTERS])
def test_valid_filters_are_accepted_and_filter_as_lance_does(any_db, sql, keeps):
    t = any_db.create_table("t", _filter_table())
    perm = PermutationBuilder(t).filter(sql).execute().to_arrow()
    assert rows_of(perm) == [r["id"] for r in _ROWS if keeps(r)]


def _where() -> st.SearchStrategy[tuple[str, Callable[[dict], bool]]]:
    """Boolean SQL over integer columns `a` and `b` and a string column `s`, with the Python
    predicate it means."""
    column = st.sampled_from(["a", "b"])
    number = st.integers(-5, 15)
    ops: dict[str, Callable[[int, int], bool]] = {
        "=": operator.eq,
        "!=": operator.ne,
        "<": operator.lt,
        "<=": operator.le,
        ">": operator.gt,
        ">=": operator.ge,
    }
    comparison = st.builds(
        lambda c, o, n: (f"{c} {o} {n}", lambda r: ops[o](r[c], n)),
        column,
        st.sampled_from(sorted(ops)),
        number,
    )
    within = st.builds(
        lambda c, ns: (f"{c} IN ({', '.join(map(str, ns))})", lambda r: r[c] in ns),
        column,
        st.lists(number, min_size=1, max_size=4),
    )
    between = st.builds(
        lambda c, lo, hi: (f"{c} BETWEEN {lo} AND {hi}", lambda r: lo <= r[c] <= hi),
        column,
        number,
        number,
    )
    text = st.text(st.sampled_from("ab;)(-'*/ ,"), max_size=6)
    equal_text = st.builds(
        lambda v: ("s = '" + v.replace("'", "''") + "'", lambda r: r["s"] == v), text
    )

    def combine(children):
        pair = st.tuples(children, children)
        both = pair.map(
            lambda p: (f"({p[0][0]}) AND ({p[1][0]})", lambda r: p[0][1](r) and p[1][1](r))
        )
        either = pair.map(
            lambda p: (f"({p[0][0]}) OR ({p[1][0]})", lambda r: p[0][1](r) or p[1][1](r))
        )
        negated = children.map(lambda c: (f"NOT ({c[0]})", lambda r: not c[1](r)))
        return both | either | negated

    leaf = comparison | within | between | equal_text
    return st.recursive(leaf, combine, max_leaves=6)


@PROPS
@given(
    where=_where(),
    values=st.lists(st.text(st.sampled_from("ab;)(-'*/ ,"), max_size=6), min_size=3, max_size=3),
)
def test_generated_filters_are_accepted_and_keep_the_rows_they_mean(where, values):
    sql, keeps = where
    rows = [{"a": i, "b": (7 * i) % 11, "s": values[i % 3]} for i in range(12)]
    t = lancetorch.connect("memory://").create_table("t", pa.Table.from_pylist(rows))
    perm = PermutationBuilder(t).filter(sql).execute().to_arrow()
    assert rows_of(perm) == [i for i, r in enumerate(rows) if keeps(r)]
    # The same expression with text after it is refused.
    for tail in [", a < 3", " LIMIT 3", ")", "; a < 3", " -- a < 3"]:
        with pytest.raises(ValueError, match="not exactly one SQL expression"):
            PermutationBuilder(t).filter(sql + tail)


_DEEP_SQL = """
import sys, threading
import pyarrow as pa, lancetorch
from lancetorch.permutation import PermutationBuilder

t = lancetorch.connect("memory://").create_table("t", pa.table({"id": [1, 2]}))
texts = ["(" * 10**5 + "id > 1" + ")" * 10**5, "NOT " * 10**5 + "id > 1", "- " * 10**5 + "1",
         "f(" * 10**5 + "id", "[" * 10**5 + "1"]
def run():
    for text in texts:
        try:
            PermutationBuilder(t).filter(text)
        except ValueError as e:
            print("refused", str(e)[-60:])
threading.stack_size(256 * 1024)  # a small thread stack: the parser must not run on it
thread = threading.Thread(target=run)
thread.start()
thread.join()
"""


def test_deeply_nested_sql_is_refused_without_overflowing_a_small_stack():
    """The parser recurses for each level of nesting: past its limit of 50 levels the text is
    refused; the check runs on a stack of its own, so a small caller stack cannot overflow
    (an overflow aborts the interpreter: run in a child, where it fails this test)."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _DEEP_SQL], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert len(lines) == 5 and all(line.startswith("refused") for line in lines), lines


def test_a_semicolon_inside_a_string_is_part_of_the_expression(table):
    perm = PermutationBuilder(table).filter(filter="s != 'a;b' AND id < 3").execute().to_arrow()
    assert rows_of(perm) == [0, 1, 2]
    perm = PermutationBuilder(table).split_calculated(calculation="id % 2").execute().to_arrow()
    assert perm.num_rows == 10


def test_a_panic_in_lance_is_a_value_error(mem_db):
    """Lance panics on some expressions it parses (a bytes literal in arithmetic); the panic is
    not an Exception, so it once escaped every handler."""
    t = mem_db.create_table("p", pa.table({"id": [1, 2]}))
    with pytest.raises(ValueError, match="cannot be evaluated") as info:
        PermutationBuilder(t).split_calculated("id * b'1'").execute()
    assert info.value.__cause__ is not None


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_a_filter_lance_folds_to_a_constant_keeps_all_rows_or_none(where, tmp_path):
    """Lance simplifies a predicate that is always true (or false) to a literal and then
    refuses a scan of no column; the filter still keeps every row (or none)."""
    db = lancetorch.connect("memory://" if where == "memory" else tmp_path)
    t = db.create_table("c", pa.table({"a": [0, 1, 2], "b": [5, 6, 7]}))
    always = "NOT ((a IN (0)) AND (NOT (a IN (0))))"
    assert rows_of(PermutationBuilder(t).filter(always).execute().to_arrow()) == [0, 1, 2]
    assert rows_of(PermutationBuilder(t).filter("1 = 2").execute().to_arrow()) == []
