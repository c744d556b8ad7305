"""Reading permutations: views, indexing, output formats, DataLoader (in-process and workers)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap

import lancetorch
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
import torch
from conftest import sample_table
from hypothesis import given, settings
from hypothesis import strategies as st
from lancetorch import _native
from lancetorch.permutation import Permutation, PermutationBuilder, Permutations
from lancetorch.util import passthrough, tbl_to_tensor
from torch.utils.data import DataLoader

PROPS = settings(max_examples=30, deadline=None)
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def table(any_db):
    return any_db.create_table("t", sample_table(10))


@pytest.fixture
def shuffled(table):
    """All 10 rows in a seeded shuffled order, and that order."""
    perm = PermutationBuilder(table).shuffle(seed=42).execute()
    order = perm.to_arrow().column("row_id").to_pylist()
    assert sorted(order) == list(range(10)) and order != list(range(10))
    return Permutation.from_tables(table, perm), order


def row(i: int) -> dict:
    return {"id": i, "x": i * 0.5, "s": f"row{i}"}


def ids(perm: Permutation) -> list[int]:
    """The id of every row of the permutation, in order, read as Arrow."""
    return perm.with_format("arrow").take_offsets(range(len(perm))).column("id").to_pylist()


def embedding_table(n: int = 10) -> pa.Table:
    emb = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(n * 8, dtype=np.float32)), 8)
    return pa.table(
        {
            "id": pa.array(range(n), type=pa.int64()),
            "x": pa.array([i * 0.5 for i in range(n)], type=pa.float64()),
            "emb": emb,
        }
    )


# -- construction ---------------------------------------------------------------------------------


def test_identity(table):
    p = Permutation.identity(table)
    assert len(p) == p.num_rows == 10
    assert p.num_columns == 3
    assert p.column_names == ["id", "x", "s"]
    assert p.shape == (10, 3)
    assert p.schema == sample_table().schema
    assert p.take_offsets(range(10)) == [row(i) for i in range(10)]
    assert "Permutation(" in repr(p)


def test_from_tables_without_permutation_is_identity(table):
    p = Permutation.from_tables(table)
    assert ids(p) == list(range(10))
    with pytest.raises(ValueError, match="no permutation table is provided"):
        Permutation.from_tables(table, split="train")


def test_from_tables_with_splits(any_db):
    base = any_db.create_table("base", sample_table(20))
    perm = (
        PermutationBuilder(base)
        .split_random(counts=[12, 8], seed=3, split_names=["tr", "te"])
        .shuffle(seed=4)
        .execute()
    )
    rows = perm.to_arrow().column("row_id").to_pylist()
    split = perm.to_arrow().column("split_id").to_pylist()
    train = [r for r, s in zip(rows, split) if s == 0]
    test = [r for r, s in zip(rows, split) if s == 1]
    any_db.create_table("perm", perm)
    saved = any_db.open_table("perm")
    for source in (perm, saved, perm.to_arrow()):
        # No split named: split 0, never every split (the test rows stay out of training).
        assert ids(Permutation.from_tables(base, source)) == train
        assert ids(Permutation.from_tables(base, source, split="tr")) == train
        assert ids(Permutation.from_tables(base, source, split=0)) == train
        assert ids(Permutation.from_tables(base, source, split="te")) == test
        assert ids(Permutation.from_tables(base, source, split=1)) == test
        with pytest.raises(ValueError, match="split `nope` is not defined.*tr.*te"):
            Permutation.from_tables(base, source, split="nope")
        with pytest.raises(ValueError, match="No rows found"):
            Permutation.from_tables(base, source, split=2)
        with pytest.raises(TypeError, match="Invalid split"):
            Permutation.from_tables(base, source, split=1.0)


def test_unnamed_splits_are_read_by_number(mem_db):
    base = mem_db.create_table("base", sample_table(10))
    perm = PermutationBuilder(base).split_sequential(counts=[6, 4]).execute()
    assert perm.schema.metadata is None or b"split_names" not in perm.schema.metadata
    assert ids(Permutation.from_tables(base, perm)) == list(range(6))
    assert ids(Permutation.from_tables(base, perm, 1)) == list(range(6, 10))
    with pytest.raises(ValueError, match="no split names are defined"):
        Permutation.from_tables(base, perm, "train")
    perms = Permutations(base, perm)
    assert perms.split_names == [] and perms.split_dict == {}
    assert [ids(p) for p in perms] == [list(range(6)), list(range(6, 10))]


def test_from_tables_row_past_the_base_table(mem_db):
    big = mem_db.create_table("big", sample_table(20))
    small = mem_db.create_table("small", sample_table(5))
    perm = PermutationBuilder(big).execute()
    with pytest.raises(ValueError, match="row id 5 is not in table 'small'"):
        Permutation.from_tables(small, perm)
    old = pa.table({"row_offset": pa.array([0, 19], pa.uint64())})  # an older lancetorch's
    with pytest.raises(ValueError, match="refers to row 19 but table 'small' has 5 rows"):
        Permutation.from_tables(small, old)


def test_not_a_permutation_table(mem_db, table):
    with pytest.raises(ValueError, match="not a permutation table"):
        Permutation.from_tables(table, pa.table({"a": [1]}))


# -- Permutations ---------------------------------------------------------------------------------


def test_permutations(any_db):
    base = any_db.create_table("base", sample_table(30))
    perm = (
        PermutationBuilder(base)
        .split_sequential(counts=[20, 6, 4], split_names=["train", "validation", "test"])
        .execute()
    )
    perms = Permutations(base, perm)
    assert perms.split_names == ["train", "validation", "test"]
    assert perms.base_table is base and perms.permutation_table is perm
    assert len(perms) == 3
    assert ids(perms["train"]) == ids(perms[0]) == list(range(20))
    assert ids(perms["validation"]) == ids(perms[1]) == list(range(20, 26))
    assert ids(perms["test"]) == ids(perms[2]) == list(range(26, 30))
    assert perms.split_dict == {"train": 0, "validation": 1, "test": 2}
    assert ids(perms.get_by_name("test")) == ids(perms.get_by_index(2)) == list(range(26, 30))
    assert [len(p) for p in perms] == [20, 6, 4]


def test_permutations_unknown_split(table):
    perm = PermutationBuilder(table).split_sequential(fixed=2, split_names=["train", "test"])
    perms = Permutations(table, perm.execute())
    with pytest.raises(
        ValueError, match=r"No split named `valid` found; splits: \['train', 'test'\]"
    ):
        perms["valid"]
    with pytest.raises(ValueError, match="No rows found"):
        perms[2]
    with pytest.raises(ValueError, match="No rows found"):
        perms[-1]
    with pytest.raises(TypeError, match="Invalid split name or index"):
        perms[None]


# -- indexing -------------------------------------------------------------------------------------


def test_getitem(shuffled):
    p, order = shuffled
    for pos in range(10):
        assert p[pos] == row(order[pos])
        assert p[np.int64(pos)] == row(order[pos])
    assert p[-1] == row(order[-1])
    assert p[-10] == row(order[0])
    assert p[2:5] == [row(i) for i in order[2:5]]
    assert p[::-3] == [row(i) for i in order[::-3]]


def test_getitems_list_numpy_torch(shuffled):
    p, order = shuffled
    want = [row(order[i]) for i in [7, 0, 7, 3]]
    assert p.__getitems__([7, 0, 7, 3]) == want
    assert p.__getitems__(np.array([7, 0, 7, 3])) == want
    assert p.__getitems__(np.array([7, 0, 7, 3], dtype=np.uint32)) == want
    assert p.__getitems__(torch.tensor([7, 0, 7, 3])) == want
    assert p.take_offsets([7, 0, 7, 3]) == want
    assert p.take_offsets([-1, -10]) == [row(order[9]), row(order[0])]
    assert p.__getitems__([]) == []


@pytest.mark.parametrize("bad", ["a", 1.5, None, True, np.bool_(False), [1]])
def test_getitem_bad_type(shuffled, bad):
    p, _ = shuffled
    with pytest.raises(TypeError, match="must be an integer"):
        p[bad]


@pytest.mark.parametrize("bad", [["a"], [1.5], [0, None]])
def test_getitems_bad_type(shuffled, bad):
    p, _ = shuffled
    with pytest.raises(TypeError, match="must be integers"):
        p.__getitems__(bad)


def test_out_of_range(shuffled):
    p, _ = shuffled
    for bad in (10, -11, 1000):
        with pytest.raises(IndexError, match="out of range"):
            p[bad]
    with pytest.raises(IndexError, match="out of range"):
        p.__getitems__([0, 10])
    q = p.with_skip(3).with_take(4)  # a window of 4 rows
    with pytest.raises(IndexError, match="out of range"):
        q[4]
    with pytest.raises(IndexError, match="out of range"):
        q.take_offsets([-5])


# -- iteration ------------------------------------------------------------------------------------


def test_iter_batches(shuffled):
    p, order = shuffled
    batches = list(p.iter(batch_size=4))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert [r for b in batches for r in b] == [row(i) for i in order]
    batches = list(p.iter(batch_size=4, skip_last_batch=True))
    assert [r for b in batches for r in b] == [row(i) for i in order[:8]]
    assert [len(b) for b in p.iter(5, skip_last_batch=True)] == [5, 5]
    assert list(p.iter()) == [[row(i) for i in order]]  # default batch size 100
    assert list(p) == []  # iterating leaves out a short last batch, as in LanceDB
    assert [len(b) for b in p.with_batch_size(3)] == [3, 3, 3]
    arrow = list(p.with_format("arrow").iter(batch_size=6))
    assert [b.column("id").to_pylist() for b in arrow] == [order[:6], order[6:]]
    with pytest.raises(ValueError, match="batch_size=0"):
        list(p.iter(batch_size=0))


# -- views return new objects ---------------------------------------------------------------------


def test_views_leave_the_original_unchanged(shuffled):
    p, order = shuffled
    before = (p.take_offsets(range(10)), p.column_names, p.shape, list(p.iter()), p.selection)
    views = [
        p.select_columns(["s", "id"]),
        p.remove_columns(["x"]),
        p.rename_column("x", "value"),
        p.rename_columns({"x": "value", "s": "name"}),
        p.with_batch_size(3),
        p.with_format("arrow"),
        p.with_transform(lambda b: b.num_rows),
        p.with_skip(2),
        p.with_take(5),
        p.with_connection_factory(passthrough),
    ]
    for v in views:
        assert v is not p
        assert isinstance(v, Permutation)
    assert (
        p.take_offsets(range(10)),
        p.column_names,
        p.shape,
        list(p.iter()),
        p.selection,
    ) == before
    sel, rem, ren, rens, bs, arrow, tr, skip, take, _ = views
    assert sel.column_names == ["s", "id"]
    assert sel[0] == {"s": f"row{order[0]}", "id": order[0]}
    assert sel.schema.names == ["s", "id"]
    assert sel.shape == (10, 2)
    assert rem.column_names == ["id", "s"]
    assert rem[1] == {"id": order[1], "s": f"row{order[1]}"}
    # A renamed column moves to the end, as in LanceDB.
    assert ren.column_names == ["id", "s", "value"]
    assert ren.selection == {"id": "id", "s": "s", "value": "x"}
    assert ren[0] == {"id": order[0], "value": order[0] * 0.5, "s": f"row{order[0]}"}
    assert list(ren[0]) == ["id", "s", "value"]
    assert ren.schema.field("value").type == pa.float64()
    assert rens.column_names == ["id", "value", "name"]
    assert rens[3] == {"id": order[3], "value": order[3] * 0.5, "name": f"row{order[3]}"}
    assert [len(b) for b in bs.iter()] == [3, 3, 3, 1]
    assert isinstance(arrow[0], pa.RecordBatch)
    assert arrow[0].column("id").to_pylist() == [order[0]]
    assert tr.take_offsets([1, 2, 3]) == 3
    assert ids(skip) == order[2:]
    assert ids(take) == order[:5]


def test_views_chain(shuffled):
    p, order = shuffled
    q = p.select_columns(["id", "x"]).rename_column("x", "half").with_skip(1).with_take(3)
    assert q.column_names == ["id", "half"]
    assert q.take_offsets(range(3)) == [{"id": i, "half": i * 0.5} for i in order[1:4]]
    q2 = q.rename_column("half", "h").select_columns(["h"])
    assert q2.take_offsets([0, 2]) == [{"h": order[1] * 0.5}, {"h": order[3] * 0.5}]
    seen = []
    q.with_transform(lambda b: seen.append(b.schema.names)).take_offsets([0])
    assert seen == [["id", "half"]]  # only the selected columns reach the transform


def test_view_errors(shuffled):
    p, _ = shuffled
    with pytest.raises(ValueError, match="Cannot select column `nope` because it does not exist"):
        p.select_columns(["id", "nope"])
    assert p.remove_columns(["nope"]).column_names == p.column_names  # ignored, as in LanceDB
    with pytest.raises(ValueError, match="Cannot remove all columns"):
        p.remove_columns(["id", "x", "s"])
    with pytest.raises(ValueError, match="Must select at least one column"):
        p.select_columns([])
    with pytest.raises(ValueError, match="Cannot rename column `nope` because it does not exist"):
        p.rename_column("nope", "x2")
    with pytest.raises(ValueError, match="a column with that name already exists"):
        p.rename_column("x", "id")
    with pytest.raises(ValueError, match="Cannot select column `x`"):
        p.rename_column("x", "value").select_columns(["x"])
    with pytest.raises(ValueError, match="Invalid format: tensor"):
        p.with_format("tensor")
    with pytest.raises(TypeError, match="transform must be callable"):
        p.with_transform("arrow")
    with pytest.raises(TypeError, match="factory must be callable"):
        p.with_connection_factory(None)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="batch_size"):
            p.with_batch_size(bad)
    for bad in (True, 2.5, "64"):  # refused, not converted to 1, 2 or 64
        with pytest.raises(TypeError, match="batch_size"):
            p.with_batch_size(bad)
    with pytest.raises(ValueError, match="must not be negative"):
        p.with_skip(-1)
    with pytest.raises(ValueError, match="must not be negative"):
        p.with_take(-1)


def test_with_format_resets_transform(shuffled):
    p, order = shuffled
    q = p.with_transform(lambda b: "T").with_format("python")
    assert q[0] == row(order[0])


# -- skip / take compose as slices ----------------------------------------------------------------

_SHUFFLED: dict[int, tuple[Permutation, list[int]]] = {}


def shuffled_mem(n: int) -> tuple[Permutation, list[int]]:
    if n not in _SHUFFLED:
        t = lancetorch.connect("memory://").create_table("t", sample_table(n))
        perm = PermutationBuilder(t).shuffle(seed=n).execute()
        _SHUFFLED[n] = (
            Permutation.from_tables(t, perm),
            perm.to_arrow().column("row_id").to_pylist(),
        )
    return _SHUFFLED[n]


def test_skip_take_examples(shuffled):
    p, order = shuffled
    # As in LanceDB: the skip comes first whatever the call order, and a second call of
    # either replaces the first.
    assert ids(p.with_skip(3).with_take(4)) == order[3:7]
    assert ids(p.with_take(4).with_skip(3)) == order[3:7]
    assert ids(p.with_skip(10)) == [] and ids(p.with_take(10)) == order
    # Past the end is an error, not a shorter view, as in LanceDB.
    with pytest.raises(ValueError, match="Offset is greater than the number of rows"):
        p.with_skip(11)
    with pytest.raises(ValueError, match="Limit is greater than the number of rows"):
        p.with_take(11)
    with pytest.raises(ValueError, match=r"Offset \+ limit is greater than the number of rows"):
        p.with_skip(6).with_take(5)
    with pytest.raises(ValueError, match=r"Offset \+ limit is greater than the number of rows"):
        p.with_take(5).with_skip(6)
    assert ids(p.with_skip(2).with_skip(3)) == order[3:]
    assert ids(p.with_take(6).with_take(8)) == order[:8]
    assert (p.with_skip(2).with_take(3).offset, p.with_skip(2).with_take(3).limit) == (2, 3)
    assert [r["id"] for b in p.with_skip(7).iter() for r in b] == order[7:]
    with pytest.warns(DeprecationWarning, match="with_skip"):
        assert ids(p.skip(2)) == order[2:]
    with pytest.warns(DeprecationWarning, match="with_take"):
        assert ids(p.take(2)) == order[:2]


@PROPS
@given(
    n=st.integers(0, 40),
    ops=st.lists(st.tuples(st.sampled_from(["skip", "take"]), st.integers(0, 45)), max_size=5),
)
def test_skip_take_compose_as_slices(n, ops):
    if n == 0:
        t = lancetorch.connect("memory://").create_table("t", sample_table(0))
        p, order = Permutation.identity(t), []
    else:
        p, order = shuffled_mem(n)
    offset, limit = 0, None  # the last skip and the last take count; past the end refused
    for op, k in ops:
        new_offset, new_limit = (k, limit) if op == "skip" else (offset, k)
        if new_offset + (new_limit or 0) > len(order):
            with pytest.raises(ValueError, match="is greater than the number of rows"):
                p.with_skip(k) if op == "skip" else p.with_take(k)
            continue
        p = p.with_skip(k) if op == "skip" else p.with_take(k)
        offset, limit = new_offset, new_limit
    want = order[offset:][:limit]
    assert len(p) == p.num_rows == len(want)
    assert ids(p) == want
    assert [r["id"] for b in p.iter(batch_size=7) for r in b] == want
    if want:
        assert p[-1]["id"] == want[-1]
        assert p[0]["id"] == want[0]


@PROPS
@given(
    data=st.data(),
    size=st.integers(0, 30),
    ordered=st.booleans(),
)
def test_view_positions_map_to_table_offsets_as_numpy_indexing(data, size, ordered):
    """A view's positions become table offsets in one Rust pass: checked against the view's
    length (negative from the end), then read through its window of its order."""
    rows = np.random.default_rng(size).permutation(size).astype(np.int64)
    start = data.draw(st.integers(0, size))
    length = data.draw(st.integers(0, size - start))
    positions = data.draw(st.lists(st.integers(-length - 2, length + 1), max_size=12))
    window = rows[start : start + length] if ordered else np.arange(start, start + length)
    args = (length, start, pa.array(rows) if ordered else None)
    if all(-length <= p < length for p in positions):
        want = window[np.array(positions, dtype=np.int64)].tolist() if positions else []
        assert _native.view_offsets(positions, *args).to_pylist() == want
        assert _native.view_offsets(pa.array(positions, pa.int64()), *args).to_pylist() == want
    else:
        bad = next(p for p in positions if not -length <= p < length)
        with pytest.raises(IndexError, match=f"row offset {bad} .*out of range"):
            _native.view_offsets(positions, *args)


# -- output formats -------------------------------------------------------------------------------

FORMATS = [
    "python", "python_col", "arrow", "numpy", "pandas", "polars",
    "torch_col", "torch", "torch_row", "torch_dict",
]  # fmt: skip
TORCH_FORMATS = {"torch_col", "torch", "torch_row", "torch_dict"}


def as_rows(fmt: str, out, names: list[str]) -> list[dict]:
    """Any format's batch as a list of row dicts of plain Python values."""

    def plain(v):
        return v.item() if hasattr(v, "item") else v

    if fmt == "python":
        assert isinstance(out, list)
        return out
    if fmt == "python_col":
        assert isinstance(out, dict) and list(out) == names
        return [dict(zip(names, vals)) for vals in zip(*out.values())]
    if fmt == "arrow":
        assert isinstance(out, pa.RecordBatch)
        return out.to_pylist()
    if fmt == "numpy":
        assert isinstance(out, dict) and all(isinstance(a, np.ndarray) for a in out.values())
        n = len(next(iter(out.values())))
        return [{k: plain(out[k][i]) for k in names} for i in range(n)]
    if fmt == "pandas":
        assert isinstance(out, pd.DataFrame) and list(out.columns) == names
        return [{k: plain(v) for k, v in r.items()} for r in out.to_dict("records")]
    if fmt == "polars":
        assert isinstance(out, pl.DataFrame) and out.columns == names
        return out.to_dicts()
    if fmt == "torch_col":
        assert isinstance(out, torch.Tensor) and out.shape[0] == len(names)
        return [dict(zip(names, vals)) for vals in out.T.tolist()]
    if fmt in ("torch", "torch_row"):
        assert isinstance(out, list) and all(isinstance(t, torch.Tensor) for t in out)
        return [dict(zip(names, t.tolist())) for t in out]
    if fmt == "torch_dict":
        assert isinstance(out, list)
        return [{k: r[k].item() for k in names} for r in out]
    raise AssertionError(fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_gives_the_rows(shuffled, fmt):
    p, order = shuffled
    if fmt in TORCH_FORMATS:
        p = p.select_columns(["id", "x"])
    q = p.with_format(fmt)
    names = q.column_names
    want = [{k: row(order[i])[k] for k in names} for i in [4, 0, 9, 4]]
    assert as_rows(fmt, q.__getitems__([4, 0, 9, 4]), names) == want
    assert as_rows(fmt, q.take_offsets(np.array([4, 0, 9, 4])), names) == want
    first = q[4]  # one row: the row itself in row formats, a one-row batch otherwise
    if fmt in ("python", "torch", "torch_row", "torch_dict"):
        assert as_rows(fmt, [first], names) == want[:1]
    else:
        assert as_rows(fmt, first, names) == want[:1]


def test_format_shapes(shuffled):
    p, order = shuffled
    num = p.select_columns(["id", "x"])
    col = num.with_format("torch_col").take_offsets([0, 1, 2])
    assert col.shape == (2, 3) and col.dtype == torch.float64
    assert col[0].tolist() == order[:3]
    rows = num.with_format("torch").take_offsets([0, 1, 2])
    assert len(rows) == 3 and all(t.shape == (2,) for t in rows)
    assert [t[0].item() for t in rows] == order[:3]
    assert num.with_format("torch_row").take_offsets([5])[0].tolist() == [order[5], order[5] * 0.5]
    d = num.with_format("torch_dict").take_offsets([0, 1])
    assert d[1]["id"].dtype == torch.int64 and d[1]["id"].item() == order[1]
    assert d[1]["x"].dtype == torch.float64 and d[1]["x"].item() == order[1] * 0.5
    cols = p.with_format("python_col").take_offsets([2, 3])
    assert cols == {
        "id": order[2:4],
        "x": [i * 0.5 for i in order[2:4]],
        "s": [f"row{i}" for i in order[2:4]],
    }
    npy = p.with_format("numpy").take_offsets([2, 3])
    assert npy["id"].dtype == np.int64 and npy["id"].tolist() == order[2:4]
    assert npy["s"].tolist() == [f"row{i}" for i in order[2:4]]


def test_embedding_column_numpy_and_torch_dict(any_db):
    t = any_db.create_table("e", embedding_table(10))
    p = Permutation.identity(t)
    npy = p.with_format("numpy").take_offsets([3, 1, 7])
    assert npy["emb"].shape == (3, 8)
    assert npy["emb"].dtype == np.float32
    assert npy["emb"].tolist() == [list(range(r * 8, r * 8 + 8)) for r in (3, 1, 7)]
    assert npy["id"].tolist() == [3, 1, 7]
    rows = p.with_format("torch_dict").take_offsets([3, 1])
    assert rows[0]["emb"].shape == (8,)
    assert rows[1]["emb"].tolist() == list(range(8, 16))
    batch = next(iter(DataLoader(p.with_format("torch_dict"), batch_size=4)))
    assert set(batch) == {"id", "x", "emb"}
    assert batch["emb"].shape == (4, 8) and batch["emb"].dtype == torch.float32
    assert batch["emb"].tolist() == [list(range(r * 8, r * 8 + 8)) for r in range(4)]
    assert batch["id"].tolist() == [0, 1, 2, 3]
    assert batch["x"].tolist() == [0.0, 0.5, 1.0, 1.5]


# -- formats with the DataLoader's default collate ------------------------------------------------


def test_torch_col_with_default_collate_fails_and_passthrough_fixes_it(table):
    p = Permutation.identity(table).select_columns(["id", "x"]).with_format("torch_col")
    with pytest.raises(TypeError, match="must be tuple of Tensors, not Tensor"):
        next(iter(DataLoader(p, batch_size=4)))
    batches = list(DataLoader(p, batch_size=4, collate_fn=passthrough))
    assert [b.shape for b in batches] == [(2, 4), (2, 4), (2, 2)]
    assert torch.cat(batches, dim=1)[0].tolist() == list(range(10))
    assert torch.cat(batches, dim=1)[1].tolist() == [i * 0.5 for i in range(10)]
    assert pickle.loads(pickle.dumps(passthrough)) is passthrough


@pytest.mark.parametrize("fmt", ["torch", "torch_row"])
def test_torch_rows_default_collate_stacks(table, fmt):
    p = Permutation.identity(table).select_columns(["x", "id"]).with_format(fmt)
    batch = next(iter(DataLoader(p, batch_size=4)))
    assert batch.shape == (4, 2)
    assert batch.tolist() == [[i * 0.5, i] for i in range(4)]


def test_torch_dict_default_collate(table):
    p = Permutation.identity(table).select_columns(["id", "x"]).with_format("torch_dict")
    batches = list(DataLoader(p, batch_size=4))
    assert [set(b) for b in batches] == [{"id", "x"}] * 3
    assert torch.cat([b["id"] for b in batches]).tolist() == list(range(10))
    assert torch.cat([b["x"] for b in batches]).tolist() == [i * 0.5 for i in range(10)]
    assert batches[0]["id"].dtype == torch.int64


def test_python_default_collate(table):
    batch = next(iter(DataLoader(Permutation.identity(table), batch_size=3)))
    assert batch["id"].tolist() == [0, 1, 2]
    assert batch["x"].tolist() == [0.0, 0.5, 1.0]
    assert batch["s"] == ["row0", "row1", "row2"]


@PROPS
@given(
    n=st.integers(1, 40),
    picks=st.lists(st.integers(0, 10**6), max_size=15),
    negate=st.lists(st.booleans(), max_size=15),
)
def test_formats_agree(n, picks, negate):
    p, order = shuffled_mem(n)
    indices = [
        (k % n) - n if (i < len(negate) and negate[i]) else k % n for i, k in enumerate(picks)
    ]
    want = [row(order[i]) for i in indices]
    for fmt in FORMATS:
        q = p.with_format(fmt)
        if fmt in TORCH_FORMATS:
            q = q.select_columns(["id", "x"])
        names = q.column_names
        got = as_rows(fmt, q.__getitems__(indices), names) if indices else None
        if indices:
            assert got == [{k: w[k] for k in names} for w in want], fmt
        else:  # an empty request: no rows, whatever the container
            out = q.__getitems__(indices)
            assert (
                len(out) == 0
                or (fmt == "torch_col" and out.shape[1] == 0)
                or (fmt in ("python_col", "numpy") and all(len(v) == 0 for v in out.values()))
            ), fmt


# -- DataLoader in this process -------------------------------------------------------------------


def test_dataloader_shuffle_gives_each_row_once(any_db):
    t = any_db.create_table("t", sample_table(300))
    perm = PermutationBuilder(t).filter("id % 5 != 0").shuffle(seed=1).execute()
    p = Permutation.from_tables(t, perm)
    expected = [i for i in range(300) if i % 5]
    loader = DataLoader(p, batch_size=64, shuffle=True)
    epochs = []
    for _ in range(2):
        seen = []
        for batch in loader:
            assert batch["x"].tolist() == [i * 0.5 for i in batch["id"].tolist()]
            assert batch["s"] == [f"row{i}" for i in batch["id"].tolist()]
            seen.extend(batch["id"].tolist())
        assert sorted(seen) == expected
        epochs.append(seen)
    assert epochs[0] != epochs[1]


def test_pickle_round_trip(any_db):
    t = any_db.create_table("t", sample_table(20))
    perm = PermutationBuilder(t).split_random(
        ratios=[0.5, 0.5], seed=1, split_names=["train", "test"]
    )
    perm = perm.shuffle(seed=2).execute()
    p = Permutations(t, perm)["test"].select_columns(["id", "s"]).with_skip(2).with_format("arrow")
    back = pickle.loads(pickle.dumps(p))
    assert back.column_names == ["id", "s"]
    assert len(back) == len(p) == 8
    assert back.take_offsets(range(8)).equals(p.take_offsets(range(8)))


# -- DataLoader workers (spawned processes) -------------------------------------------------------


def _epochs(loader, column: str = "id", epochs: int = 2) -> list[list[int]]:
    out = []
    for _ in range(epochs):
        seen = []
        for batch in loader:
            if isinstance(batch, dict):
                values = batch[column].tolist()
                if "x" in batch:
                    assert batch["x"].tolist() == [v * 0.5 for v in values]
            elif isinstance(batch, torch.Tensor):  # tbl_to_tensor over (id, x)
                values = batch[0].long().tolist()
                assert batch[1].tolist() == [v * 0.5 for v in values]
            else:
                raise AssertionError(type(batch))
            seen.extend(values)
        out.append(seen)
    return out


def _workers(**kw) -> dict:
    return dict(num_workers=2, multiprocessing_context="spawn", persistent_workers=True, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_workers_every_row_once_per_epoch(tmp_path, kind):
    db = lancetorch.connect("memory://" if kind == "memory" else tmp_path)
    t = db.create_table("t", sample_table(400).select(["id", "x"]))
    perm = PermutationBuilder(t).split_random(ratios=[0.75, 0.25], seed=5).execute()
    train = Permutations(t, perm)[0]
    expected_train = sorted(ids(train))
    assert len(expected_train) == 300
    # a Permutation, shuffled by the DataLoader
    loader = DataLoader(train, batch_size=32, shuffle=True, **_workers())
    epochs = _epochs(loader)
    for seen in epochs:
        assert sorted(seen) == expected_train
    assert epochs[0] != epochs[1]
    del loader
    # the Table itself, in order, with the reference's collate
    loader = DataLoader(t, batch_size=50, shuffle=False, collate_fn=tbl_to_tensor, **_workers())
    for seen in _epochs(loader):
        assert seen == list(range(400))
    del loader


@pytest.mark.slow
def test_workers_with_connection_factory(tmp_path, monkeypatch):
    import _factories

    secret = "SECRET-XYZ-123"
    db = lancetorch.connect(tmp_path, storage_options={"secret_key": secret})
    base = db.create_table("base", sample_table(300).select(["id", "x"]))
    perm = PermutationBuilder(base).shuffle(seed=3).execute()
    p = Permutation.from_tables(base, perm)
    assert secret.encode() in pickle.dumps(p)  # without a factory the connection travels
    pf = p.with_connection_factory(_factories.open_table)
    assert secret.encode() not in pickle.dumps(pf)
    monkeypatch.setenv(_factories.DB_ENV, str(tmp_path))
    monkeypatch.setenv(_factories.SECRET_ENV, secret)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([TESTS_DIR, os.environ.get("PYTHONPATH", "")]))
    back = pickle.loads(pickle.dumps(pf))  # reopened through the factory
    assert back.take_offsets(range(300)) == p.take_offsets(range(300))
    loader = DataLoader(pf, batch_size=40, shuffle=True, **_workers())
    for seen in _epochs(loader):
        assert sorted(seen) == list(range(300))
    del loader


_FORK_CHILD = textwrap.dedent(
    """
    import sys, tempfile
    import pyarrow as pa, torch, lancetorch
    from lancetorch.permutation import Permutation, PermutationBuilder

    for kind, cache in (("memory", "auto"), ("disk", "auto"), ("disk", False)):
        db = lancetorch.connect("memory://" if kind == "memory" else tempfile.mkdtemp())
        t = db.create_table("t", pa.table({"id": pa.array(range(300), pa.int64())}))
        if kind == "disk":
            t = db.open_table("t", cache=cache)  # no read before the fork
        p = Permutation.from_tables(t, PermutationBuilder(t).shuffle(seed=1).execute())
        loader = torch.utils.data.DataLoader(
            p, batch_size=32, shuffle=True, num_workers=2, multiprocessing_context="fork"
        )
        try:
            for epoch in range(2):
                seen = sorted(i for b in loader for i in b["id"].tolist())
                assert seen == list(range(300)), (kind, epoch, seen[:10])
        except RuntimeError as e:
            print("ERR", kind, cache, str(e).replace("\\n", " "), flush=True)
        else:
            print("OK", kind, cache, flush=True)
    """
)


def test_fork_workers(tmp_path):
    """DataLoader workers under fork (Linux's default before Python 3.14): a memory table and a
    disk table (its cache filled before the fork) give every row once an epoch, with no fork
    warning; a disk table without a cache is refused with the reason, never read through
    Lance in a forked child (where it can crash the worker)."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _FORK_CHILD],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"fork DataLoader hung for 120 s; output so far: {e.stdout!r} {e.stderr!r}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["OK memory auto", "OK disk auto"], proc.stdout
    assert lines[2].startswith("ERR disk False") and "cache=False" in lines[2], lines[2]
    assert "not fork-safe" not in proc.stderr, proc.stderr[-3000:]


def test_rowid_pseudo_column(tmp_path):
    """``_rowid`` selects each row's row id: a Lance row id, not an offset, once a disk table
    has several fragments and deleted rows."""
    import lance

    db = lancetorch.connect(tmp_path)
    t = db.create_table("r", pa.table({"a": range(5)}))
    t.add(pa.table({"a": range(5, 10)}))
    lance.dataset(t.uri).delete("a = 2 OR a = 6")
    t = db.open_table("r")
    want = lance.dataset(t.uri).to_table(with_row_id=True).to_pydict()
    p = Permutation.identity(t).select_columns(["_rowid", "a"]).with_format("python_col")
    assert p.column_names == ["_rowid", "a"]  # in the order selected
    assert p.take_offsets(range(8)) == {"a": want["a"], "_rowid": want["_rowid"]}
    renamed = p.rename_column("_rowid", "rid").remove_columns(["a"])
    assert renamed.take_offsets([4]) == {"rid": [want["_rowid"][4]]}
    assert t.take_row_ids(want["_rowid"][3:5]).to_arrow()["a"].to_pylist() == want["a"][3:5]
    with pytest.raises(ValueError, match="row id 2 is not in table 'r'"):
        t.take_row_ids([2])


def test_selecting_a_column_twice_keeps_it_once(mem_db):
    t = mem_db.create_table("d", pa.table({"a": [1, 2], "b": [3, 4]}))
    assert Permutation.identity(t).select_columns(["a", "a"]).column_names == ["a"]
    with pytest.raises(ValueError, match="twice"):
        t.take_offsets([0], columns=["b", "b"])
    assert t.take_offsets([1], columns="b").to_arrow().to_pydict() == {"b": [4]}


@pytest.mark.parametrize(
    "bad", [pa.array([0, -1], pa.int64()), pa.array([0, 2**64 - 1], pa.uint64())]
)
def test_permutation_table_rows_outside_the_table_refused(mem_db, bad):
    t = mem_db.create_table("r", pa.table({"a": range(10)}))
    with pytest.raises(ValueError, match="refers to row"):
        Permutation.from_tables(t, pa.table({"row_offset": bad}))


@given(
    rows=st.lists(st.integers(0, 29), min_size=1, max_size=40),
    column=st.sampled_from(["row_id", "row_offset"]),
)
@settings(max_examples=60, deadline=None)
def test_a_split_that_lists_a_row_twice_is_refused(rows, column):
    """A hand-made permutation table listing a row twice would read it twice an epoch."""
    t = lancetorch.connect("memory://").create_table("r", pa.table({"a": range(30)}))
    perm = pa.table({column: pa.array(rows, pa.uint64()), "split_id": [0] * len(rows)})
    if len(set(rows)) == len(rows):
        got = Permutation.from_tables(t, perm).with_format("python_col")
        assert got.take_offsets(range(len(rows)))["a"] == rows
        return
    repeated = min(r for r in rows if rows.count(r) > 1)  # the message names the lowest
    with pytest.raises(ValueError, match=f"lists {column} {repeated} {rows.count(repeated)} times"):
        Permutation.from_tables(t, perm)


def test_a_row_in_two_splits_is_read_in_each(mem_db):
    t = mem_db.create_table("r", pa.table({"a": range(4)}))
    perm = pa.table({"row_id": pa.array([0, 1, 1, 2], pa.uint64()), "split_id": [0, 0, 1, 1]})
    rows = [
        Permutation.from_tables(t, perm, s).with_format("python_col").take_offsets([0, 1])["a"]
        for s in (0, 1)
    ]
    assert rows == [[0, 1], [1, 2]]


def test_iter_shuffled_follows_the_sampler(mem_db):
    from lancetorch.sampler import BatchSampler

    t = mem_db.create_table("it", pa.table({"id": range(250)}))
    p = Permutation.identity(t).with_skip(10).with_format("python_col")
    got = [v for b in p.iter(64, shuffle=True, seed=3, epoch=2) for v in b["id"]]
    want = (BatchSampler(240, 64, seed=3).order(2) + 10).tolist()
    assert got == want and sorted(got) == list(range(10, 250))
    kept = [len(b["id"]) for b in p.iter(64, skip_last_batch=True, shuffle=True, seed=3)]
    assert kept == [64, 64, 64]


def test_shuffled_iter_is_a_training_read_sharded_by_rank(mem_db, monkeypatch):
    perm = Permutation.identity(mem_db.create_table("t", sample_table(50))).with_format("arrow")
    monkeypatch.setenv("WORLD_SIZE", "2")
    seen = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        ids = [i for b in perm.iter(8, shuffle=True, seed=3) for i in b.column("id").to_pylist()]
        assert len(ids) == 25
        seen += ids
    assert sorted(seen) == list(range(50))
    in_order = [i for b in perm.iter(8) for i in b.column("id").to_pylist()]
    assert in_order == list(range(50)), "a read in order is not sharded unless asked"
    asked = [i for b in perm.iter(8, rank=0, world_size=2) for i in b.column("id").to_pylist()]
    assert asked == list(range(0, 50, 2))
    mine = [i for b in perm.iter(8, world_size=2) for i in b.column("id").to_pylist()]
    assert mine == list(range(1, 50, 2)), "the environment's rank, with the world size asked"


def _reopen(path: str, name: str):
    return lancetorch.connect(path).open_table(name)


def test_a_factory_finds_the_split_rows_again_after_the_table_changed(tmp_path):
    """A permutation reopened by its factory reads the same rows even when rows were deleted
    and added since (offsets shift; row ids do not)."""
    import functools

    import lance

    db = lancetorch.connect(tmp_path)
    t = db.create_table("t", pa.table({"x": list(range(10))}))
    perm = PermutationBuilder(t).split_sequential(counts=[5, 5]).execute()
    p = Permutation.from_tables(t, perm, 1).with_connection_factory(
        functools.partial(_reopen, str(tmp_path))
    )
    state = pickle.dumps(p)
    lance.dataset(t.uri).delete("x = 2")
    db.open_table("t").add(pa.table({"x": [10]}))
    back = pickle.loads(state)
    assert len(back) == 5
    assert back.with_format("python_col").take_offsets(range(5)) == {"x": [5, 6, 7, 8, 9]}
    lance.dataset(t.uri).delete("x = 7")
    gone = pickle.loads(state)
    with pytest.raises(ValueError, match="row id .* is not in table 't'"):
        len(gone)
