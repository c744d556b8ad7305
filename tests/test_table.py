"""Tables as map-style Datasets: length, schema, append, random takes, pickling."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
import textwrap

import lancetorch
import numpy as np
import pyarrow as pa
import pytest
import torch
from conftest import NUMERIC_TYPES, sample_table
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.fixture
def table(any_db):
    return any_db.create_table("t", sample_table(10))


def ids(batch: pa.Table) -> list[int]:
    return batch.column("id").to_pylist()


def assert_rows(batch: pa.Table, rows: list[int]) -> None:
    """Every column of `batch` (a pyarrow Table of one chunk, what a take returns, as in
    LanceDB) holds exactly the sample_table rows `rows`, in order."""
    assert isinstance(batch, pa.Table)
    assert all(c.num_chunks == 1 for c in batch.columns)
    assert batch.num_rows == len(rows)
    assert batch.column("id").to_pylist() == rows
    assert batch.column("x").to_pylist() == [r * 0.5 for r in rows]
    assert batch.column("s").to_pylist() == [f"row{r}" for r in rows]


# -- description --------------------------------------------------------------------------------


def test_len_count_rows_schema(table):
    assert len(table) == 10
    assert table.count_rows() == 10
    assert table.schema == sample_table().schema
    assert table.name == "t"


def test_column_positions_are_worked_out_once_and_read_any_iterable(table):
    names = table.schema.names
    want = [names.index("s"), names.index("id")]
    assert table._column_positions(c for c in ["s", "id"]) == want  # read once, kept right
    assert table._column_positions(["s", "id"]) == want
    assert table._take([3], ["s", "id"]).schema.names == ["s", "id"]
    with pytest.raises(ValueError, match="column 'id' is named twice"):
        table._column_positions(["id", "s", "id"])
    with pytest.raises(ValueError, match=r"column '\['id'\]' is not in table 't'"):
        table._column_positions([["id"]])


def test_to_arrow(table):
    assert table.to_arrow().equals(sample_table(10))


def test_uri(mem_db, dir_db, tmp_path):
    assert mem_db.create_table("t", sample_table(3)).uri is None
    assert dir_db.create_table("t", sample_table(3)).uri == str(tmp_path / "t.lance")


def test_repr(table):
    r = repr(table)
    assert "'t'" in r and "10 rows" in r


def test_is_a_torch_dataset_shape(table):
    # DataLoader only needs __len__ and __getitem__/__getitems__
    assert len(table) == 10
    assert_rows(table.__getitems__([0]), [0])


# -- add ----------------------------------------------------------------------------------------


def test_add_appends(table):
    table.add(pa.table({"id": [10, 11], "x": [5.0, 5.5], "s": ["row10", "row11"]}))
    assert len(table) == 12
    assert table.count_rows() == 12
    assert table.to_arrow().equals(sample_table(12))
    assert_rows(table.__getitems__([11, 0, 10, 9]), [11, 0, 10, 9])


def test_add_many_times_and_take_across_chunks(table):
    full = sample_table(40)
    for start in range(10, 40, 10):
        table.add(full.slice(start, 10))
    assert len(table) == 40
    assert table.to_arrow().equals(full)
    assert_rows(table.__getitems__([39, 5, 25, 15, -1, 10]), [39, 5, 25, 15, 39, 10])


def test_add_reordered_fields_and_safe_cast(table):
    table.add(
        {"s": ["row10"], "x": pa.array([5.0], pa.float32()), "id": pa.array([10], pa.int32())}
    )
    assert table.schema == sample_table().schema
    assert table.to_arrow().equals(sample_table(11))


def test_add_list_of_dicts(table):
    table.add([{"id": 10, "x": 5.0, "s": "row10"}])
    assert table.to_arrow().equals(sample_table(11))


def test_add_overwrite_replaces_every_row_in_a_new_version(any_db):
    """LanceDB's add(mode="overwrite"): the rows given in place of all, a new version; what
    was made over the old rows (a Permutation) reads the old rows to its end."""
    from lancetorch.permutation import Permutation

    table = any_db.create_table("t", sample_table(10))
    before = Permutation.identity(table).with_format("arrow")
    table.add(sample_table(14).slice(10), mode="overwrite")
    assert table.to_arrow().equals(sample_table(14).slice(10))
    assert len(table) == 4 and table.count_rows() == 4 and table.version == 2
    assert before[0:10]["id"].to_pylist() == list(range(10))
    table.add(sample_table(15).slice(14))
    assert table.to_arrow().column("id").to_pylist() == [10, 11, 12, 13, 14]
    table.add(sample_table(0), mode="overwrite")  # no rows: an empty table, not no change
    assert table.count_rows() == 0 and table.version == 4
    with pytest.raises(ValueError, match="mode must be one of 'append', 'overwrite'"):
        table.add(sample_table(1), mode="replace")
    with pytest.raises(ValueError, match="field"):
        table.add(pa.table({"other": [1]}), mode="overwrite")
    assert table.count_rows() == 0 and table.version == 4


def test_count_rows_of_a_filter(any_db):
    table = any_db.create_table("t", sample_table(10))
    assert table.count_rows("id >= 7") == 3
    assert table.count_rows(filter="id % 2 = 0 AND x < 2") == 2
    assert table.count_rows("s IS NULL") == 0
    with pytest.raises(ValueError, match="not true/false"):
        table.count_rows("id + 1")
    with pytest.raises(ValueError, match="exactly one SQL expression"):
        table.count_rows("id > 1, id < 3")
    with pytest.raises(TypeError, match="filter"):
        table.count_rows(5)


def test_add_bad_vectors_as_create_table_does(any_db):
    table = any_db.create_table("t", {"vector": [[1.0, 2.0]], "i": [0]})
    rows = {"vector": [[3.0, float("nan")], [4.0, 5.0], [6.0]], "i": [1, 2, 3]}
    with pytest.raises(ValueError, match="row 0 holds NaN"):
        table.add(rows)
    assert table.count_rows() == 1
    table.add(rows, on_bad_vectors="drop")
    assert table.to_arrow().column("i").to_pylist() == [0, 2]
    table.add(rows, on_bad_vectors="fill", fill_value=9.0)
    assert table.to_arrow().column("vector").to_pylist()[2:] == [[3.0, 9.0], [4.0, 5.0], [6.0, 9.0]]


def test_add_null_for_vectors_of_another_fixed_size(any_db):
    """A fixed-size list of another size than the table's: every row bad; "null" stores
    them as null vectors, "fill" cuts or pads them to the table's size."""
    wide = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(20, dtype=np.float32)), 10)
    table = any_db.create_table("t", {"e": wide, "i": [0, 1]})
    longer = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(12, dtype=np.float32)), 12)
    with pytest.raises(ValueError, match="row 0 has 12 values, not 10"):
        table.add({"e": longer, "i": [2]})
    table.add({"e": longer, "i": [2]}, on_bad_vectors="null")
    table.add({"e": longer, "i": [3]}, on_bad_vectors="fill")
    got = table.to_arrow()
    assert got.schema.field("e").type == pa.list_(pa.float32(), 10)
    assert got.column("e").to_pylist()[2:] == [None, list(range(10))]


def test_add_empty_changes_nothing(table):
    table.add(sample_table(0))
    assert len(table) == 10
    assert table.to_arrow().equals(sample_table(10))


def _bad_adds():
    return {
        # type of another family: names field and both types
        "type": (
            pa.table({"id": ["a"], "x": [1.0], "s": ["q"]}),
            ["'id'", "int64", "string"],
        ),
        "type_other_field": (
            pa.table({"id": [10], "x": ["nope"], "s": ["q"]}),
            ["'x'", "double", "string"],
        ),
        # lossy cast in the same family
        "lossy": (
            pa.table({"id": [10], "x": [1.0], "s": pa.array([1], pa.int64())}),
            ["'s'", "string", "int64"],
        ),
        "extra": (
            pa.table({"id": [10], "x": [1.0], "s": ["q"], "extra": [1]}),
            ["'extra'"],
        ),
        "missing": (pa.table({"id": [10], "x": [1.0]}), ["'s'"]),
        # row dicts: checked key by key, their values cast like columns
        "row_missing": ([{"id": 10, "s": "q"}], ["row 0", "lacks 'x'", "None for a null"]),
        "row_misspelled": (
            [{"id": 10, "x": 1.0, "s": "q"}, {"id": 11, "X": 1.0, "s": "q"}],
            ["row 1", "lacks 'x'", "'X'"],
        ),
        "row_float_into_int": ([{"id": 10.5, "x": 1.0, "s": "q"}], ["'id'", "int64", "truncated"]),
        "duplicate": (
            pa.Table.from_arrays(
                [pa.array([10]), pa.array([1.0]), pa.array(["q"]), pa.array([1])],
                names=["id", "x", "s", "id"],
            ),
            ["two columns named 'id'"],
        ),
    }


@pytest.mark.parametrize("case", sorted(_bad_adds()))
def test_add_schema_mismatch_raises_and_changes_nothing(table, case):
    data, words = _bad_adds()[case]
    with pytest.raises(ValueError) as info:
        table.add(data)
    msg = str(info.value)
    for word in words:
        assert word in msg, (word, msg)
    assert len(table) == 10
    assert table.count_rows() == 10
    assert table.to_arrow().equals(sample_table(10))
    assert_rows(table.__getitems__(range(10)), list(range(10)))


def test_add_lossy_numeric_cast_refused(any_db):
    t = any_db.create_table("t", pa.table({"v": pa.array([1, 2], pa.int8())}))
    with pytest.raises(ValueError) as info:
        t.add(pa.table({"v": pa.array([1000], pa.int64())}))
    msg = str(info.value)
    assert "'v'" in msg and "int8" in msg and "int64" in msg
    assert t.to_arrow().column("v").to_pylist() == [1, 2]
    assert len(t) == 2
    # a value that fits casts fine
    t.add(pa.table({"v": pa.array([100], pa.int64())}))
    assert t.to_arrow().column("v").to_pylist() == [1, 2, 100]
    assert t.schema.field("v").type == pa.int8()


def test_add_refuses_what_a_cast_would_lose_and_keeps_what_rounds(any_db):
    t = any_db.create_table(
        "t",
        pa.table(
            {
                "f": pa.array([1.0], pa.float32()),
                "d": pa.array([1], pa.decimal128(5, 2)),
                "v": pa.array([[1.0, 2.0]], pa.list_(pa.float16(), 2)),
            }
        ),
    )
    bad = [
        ({"f": [1.0, 1e300], "d": [1.0, 1.0], "v": [[1.0, 2.0]] * 2}, "row 1: 1e+300 becomes inf"),
        ({"f": [1.0], "d": [1.234], "v": [[1.0, 2.0]]}, "row 0: 1.234 becomes Decimal('1.23')"),
        (
            {"f": [1.0, 2.0], "d": [1.0, 2.0], "v": [[1.0, 2.0], [3.0, 70000.0]]},
            "row 1: 70000.0 becomes inf",
        ),
    ]
    for data, words in bad:
        with pytest.raises(ValueError, match=re.escape(words)):
            t.add(data)
    assert len(t) == 1
    t.add({"f": [0.1], "d": [2.5], "v": [[0.1, 0.2]]})  # rounds to the nearest float: kept
    got = t.to_arrow()
    assert got.column("f").to_pylist()[1] == pytest.approx(0.1)
    assert [str(v) for v in got.column("d").to_pylist()] == ["1.00", "2.50"]


def test_add_nulls_into_a_field_that_takes_none_are_named(any_db):
    schema = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("s", pa.string())])
    t = any_db.create_table("t", pa.table({"id": [1], "s": ["a"]}, schema=schema))
    with pytest.raises(
        ValueError, match="'id' of table 't' takes no nulls.*has 2 \\(the first at row 1\\)"
    ):
        t.add({"id": [2, None, None], "s": ["b", "c", "d"]})
    assert t.to_arrow().column("id").to_pylist() == [1]
    t.add({"id": [2], "s": [None]})  # an all-null column of a field that takes nulls
    assert t.to_arrow().column("s").to_pylist() == ["a", None]


def test_create_with_a_schema_checks_the_data_against_it(any_db):
    with pytest.raises(ValueError, match="row 0: 1e\\+300 becomes inf"):
        any_db.create_table("t", {"a": [1e300]}, schema=pa.schema([("a", pa.float32())]))
    assert "t" not in any_db
    rows = [{"a": 1, "v": [0.5, 0.25]}]
    schema = pa.schema([("a", pa.int32()), ("v", pa.list_(pa.float32(), 2))])
    t = any_db.create_table("t", rows, schema=schema)
    assert t.schema == schema and t.to_arrow().to_pylist() == rows


def test_add_mismatch_leaves_reopened_disk_table_unchanged(dir_db):
    dir_db.create_table("t", sample_table(10))
    t = dir_db.open_table("t")
    with pytest.raises(ValueError):
        t.add(pa.table({"id": ["a"], "x": [1.0], "s": ["q"]}))
    reopened = dir_db.open_table("t")
    assert len(reopened) == 10
    assert reopened.to_arrow().equals(sample_table(10))


# -- __getitems__ -------------------------------------------------------------------------------


def test_getitems_list(table):
    assert_rows(table.__getitems__([3, 1, 4, 1, 5, 9, 2, 6]), [3, 1, 4, 1, 5, 9, 2, 6])


def test_getitems_tuple(table):
    assert_rows(table.__getitems__((7, 0)), [7, 0])


@pytest.mark.parametrize(
    "dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
)
def test_getitems_numpy(table, dtype):
    assert_rows(table.__getitems__(np.array([9, 0, 4, 4], dtype=dtype)), [9, 0, 4, 4])


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
def test_getitems_numpy_negative(table, dtype):
    assert_rows(table.__getitems__(np.array([-1, -10, 2], dtype=dtype)), [9, 0, 2])


def test_getitems_numpy_scalars_in_list(table):
    assert_rows(table.__getitems__([np.int32(3), np.uint8(1), np.int64(-1)]), [3, 1, 9])


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8])
def test_getitems_torch(table, dtype):
    assert_rows(table.__getitems__(torch.tensor([8, 2, 2, 0], dtype=dtype)), [8, 2, 2, 0])


def test_getitems_torch_negative(table):
    assert_rows(table.__getitems__(torch.tensor([-2, 1])), [8, 1])


def test_getitems_torch_randperm(table):
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    assert_rows(table.__getitems__(perm), perm.tolist())


def test_getitems_pyarrow_array(table):
    assert_rows(table.__getitems__(pa.array([5, 6], pa.int32())), [5, 6])


@pytest.mark.parametrize(
    "rng", [range(10), range(2, 8), range(0, 10, 3), range(9, -1, -1), range(5, 5)]
)
def test_getitems_range(table, rng):
    assert_rows(table.__getitems__(rng), list(rng))


def test_duplicates_kept(table):
    assert_rows(table.__getitems__([4] * 5 + [1, 4]), [4] * 5 + [1, 4])


def test_negative_indices(table):
    assert_rows(table.__getitems__([-1, -10, -5, 0]), [9, 0, 5, 0])


@pytest.mark.parametrize("bad", [[8], [-8], [0, 1, 25], [2**40], [-(2**40)], [3, -9, 1]])
def test_out_of_range(any_db, bad):
    t = any_db.create_table("t", sample_table(7))
    offender = next(b for b in bad if not -7 <= b < 7)
    with pytest.raises(IndexError) as info:
        t.__getitems__(bad)
    msg = str(info.value)
    assert re.search(rf"(?<![\d-]){offender}(?!\d)", msg), msg  # names the offset
    assert re.search(r"\b7\b", msg), msg  # and the table length


@pytest.mark.parametrize("bad", [[10], [-11]])
def test_out_of_range_just_past_the_ends(any_db, bad):
    t = any_db.create_table("t", sample_table(10))
    with pytest.raises(IndexError) as info:
        t.__getitems__([0] + bad)
    msg = str(info.value)
    assert str(bad[0]) in msg
    assert len(re.findall(r"\b10\b", msg)) >= (2 if bad[0] == 10 else 1), msg


@pytest.mark.parametrize("bad", [[2**63], [-(2**63) - 1]])
def test_offset_beyond_int64(table, bad):
    with pytest.raises(IndexError, match=str(bad[0])):
        table.__getitems__(bad)


def test_out_of_range_numpy_and_torch(table):
    with pytest.raises(IndexError, match=r"\b12\b"):
        table.__getitems__(np.array([1, 12]))
    with pytest.raises(IndexError, match=r"\b12\b"):
        table.__getitems__(torch.tensor([1, 12]))
    with pytest.raises(IndexError, match=str(2**64 - 1)):
        table.__getitems__(np.array([2**64 - 1], dtype=np.uint64))


@pytest.mark.parametrize(
    "bad",
    [
        [1.0],
        [0, 2.5],
        [True],
        [0, False],
        [np.bool_(True)],
        ["1"],
        [None],
        [0, None],
        [[0]],
        1.0,
        True,
        "0",
        np.array([0.0, 1.0]),
        np.array([1.0], dtype=np.float16),
        np.array([True, False]),
        np.array(["0"]),
        torch.tensor([0.0, 1.0]),
        torch.tensor([1.0], dtype=torch.float64),
        torch.tensor([True, False]),
        pa.array([0.0]),
        pa.array(["0"]),
        [torch.tensor(1.5)],
        [torch.tensor(True)],
        [0, torch.tensor([1])],
    ],
    ids=repr,
)
def test_non_integer_offsets_raise_typeerror(table, bad):
    with pytest.raises(TypeError):
        table.__getitems__(bad)


@pytest.mark.parametrize(
    "offsets",
    [
        [np.int32(3), np.int32(0)],
        [np.uint8(3), np.int64(0)],
        [np.uint64(3), 0],
        [torch.tensor(3), torch.tensor(0, dtype=torch.int16)],
        [3, torch.tensor(-10)],
    ],
    ids=repr,
)
def test_lists_of_numpy_and_tensor_integers(table, offsets):
    """What a ``Subset`` over numpy or torch indices hands the table: a list of scalars."""
    assert table.__getitems__(offsets).equals(table.__getitems__([3, 0]))


def test_subset_with_numpy_and_torch_indices(table):
    from torch.utils.data import DataLoader, Subset

    for indices in (np.arange(0, 10, 3, dtype=np.int32), torch.arange(0, 10, 3)):
        loader = DataLoader(Subset(table, indices), batch_size=4, collate_fn=lambda b: b)
        (batch,) = list(loader)
        assert batch.equals(table.__getitems__([0, 3, 6, 9]))


def test_two_dimensional_offsets_refused(table):
    with pytest.raises(TypeError, match="one-dimensional"):
        table.__getitems__(np.array([[0, 1]]))


@pytest.mark.parametrize(
    "empty",
    [[], (), range(0), np.array([], dtype=np.int64), torch.tensor([], dtype=torch.int64)],
    ids=["list", "tuple", "range", "numpy", "torch"],
)
def test_empty_request(table, empty):
    batch = table.__getitems__(empty)
    assert isinstance(batch, pa.Table)
    assert batch.num_rows == 0
    assert batch.schema == table.schema


# -- __getitem__ / take_offsets -----------------------------------------------------------------


def test_getitem_one_row(table):
    assert_rows(table[3], [3])
    assert_rows(table[-1], [9])
    assert_rows(table[np.int64(7)], [7])


def test_getitem_slice(table):
    assert_rows(table[2:5], [2, 3, 4])
    assert_rows(table[::-3], [9, 6, 3, 0])


def test_getitem_out_of_range(table):
    with pytest.raises(IndexError):
        table[10]


@pytest.mark.parametrize("bad", [1.0, True, "1", None, [1.5]], ids=repr)
def test_getitem_non_integer(table, bad):
    with pytest.raises(TypeError):
        table[bad]


def test_take_offsets(table):
    assert_rows(table.take_offsets([6, 6, -4]).to_arrow(), [6, 6, 6])


def test_take_offsets_columns(table):
    batch = table.take_offsets([2, 0], columns=["s", "id"]).to_arrow()
    assert batch.schema.names == ["s", "id"]
    assert batch.column("s").to_pylist() == ["row2", "row0"]
    assert batch.column("id").to_pylist() == [2, 0]


def test_take_offsets_of_no_columns_counts_the_rows(table):
    batch = table.take_offsets([2, 0, 2], columns=[]).to_arrow()
    assert (batch.num_rows, batch.num_columns) == (3, 0)
    with pytest.raises(IndexError, match=r"\b10\b"):
        table.take_offsets([10], columns=[]).to_arrow()


def test_take_offsets_unknown_column(table):
    with pytest.raises(ValueError, match="'nope'"):
        table.take_offsets([0], columns=["nope"])


def test_big_random_take_disk_and_memory(any_db):
    data = sample_table(5000)
    t = any_db.create_table("big", data)
    rng = np.random.default_rng(1)
    idx = rng.integers(-5000, 5000, size=2000)
    got = t.__getitems__(idx)
    norm = np.where(idx < 0, idx + 5000, idx)
    assert got.equals(data.take(pa.array(norm)))


# -- pickling -----------------------------------------------------------------------------------


def test_pickle_disk_table_holds_no_data(dir_db):
    t = dir_db.create_table("t", sample_table(10_000))
    blob = pickle.dumps(t)
    assert len(blob) < 1000
    back = pickle.loads(blob)
    assert len(back) == 10_000
    assert back.name == "t"
    assert back.uri == t.uri
    assert_rows(back.__getitems__([9999, 0, 1234]), [9999, 0, 1234])
    assert back.to_arrow().equals(t.to_arrow())


def test_pickle_disk_table_sees_appends_made_before_pickling(dir_db):
    t = dir_db.create_table("t", sample_table(10))
    t.add(sample_table(12).slice(10))
    back = pickle.loads(pickle.dumps(t))
    assert back.to_arrow().equals(sample_table(12))


def test_pickle_memory_table_by_value(mem_db):
    t = mem_db.create_table("t", sample_table(10_000))
    blob = pickle.dumps(t)
    assert len(blob) > 10_000 * 8  # the int64 column alone
    mem_db.drop_table("t")
    del t
    back = pickle.loads(blob)
    assert back.name == "t"
    assert back.uri is None
    assert back.to_arrow().equals(sample_table(10_000))
    assert_rows(back.__getitems__([5, -1]), [5, 9999])


def test_pickle_memory_table_after_add(mem_db):
    t = mem_db.create_table("t", sample_table(5))
    t.add(sample_table(8).slice(5))
    back = pickle.loads(pickle.dumps(t))
    assert back.to_arrow().equals(sample_table(8))


_CHILD = textwrap.dedent(
    """
    import pickle, sys
    table = pickle.loads(sys.stdin.buffer.read())
    batch = table.__getitems__([7, 0, -1, 7])
    out = {"len": len(table), "name": table.name, "rows": batch.to_pydict(),
           "schema": str(table.schema)}
    sys.stdout.buffer.write(pickle.dumps(out))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_unpickle_in_another_process(tmp_path, kind):
    db = lancetorch.connect("memory://" if kind == "memory" else tmp_path)
    t = db.create_table("t", sample_table(10))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input=pickle.dumps(t),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    out = pickle.loads(proc.stdout)
    assert out["len"] == 10
    assert out["name"] == "t"
    assert out["schema"] == str(t.schema)
    assert out["rows"] == t.__getitems__([7, 0, -1, 7]).to_pydict()
    assert out["rows"]["id"] == [7, 0, 9, 7]
    assert out["rows"]["s"] == ["row7", "row0", "row9", "row7"]


# -- property test: takes agree with pyarrow ----------------------------------------------------


def _chunk(rng: np.random.Generator, n: int, start: int) -> pa.RecordBatch:
    cols = {}
    for name in NUMERIC_TYPES:
        dt = np.dtype(name)
        if dt.kind in "iu":
            info = np.iinfo(dt)
            values = rng.integers(info.min, info.max, size=n, dtype=dt, endpoint=True)
        else:
            values = (rng.standard_normal(n) * 100).astype(dt)
        cols[name] = pa.array(values)
    cols["bool"] = pa.array(rng.random(n) < 0.5)
    cols["string"] = pa.array([f"s{start + i}" * (i % 3) for i in range(n)], pa.string())
    mask = rng.random(n) < 0.3
    cols["null_int32"] = pa.array(rng.integers(-1000, 1000, n).astype(np.int32), mask=mask)
    cols["null_float64"] = pa.array(rng.standard_normal(n), mask=rng.random(n) < 0.3)
    cols["null_string"] = pa.array(
        [None if m else f"n{start + i}" for i, m in enumerate(rng.random(n) < 0.3)],
        pa.string(),
    )
    cols["null_bool"] = pa.array(rng.random(n) < 0.5, mask=rng.random(n) < 0.3)
    cols["row"] = pa.array(np.arange(start, start + n, dtype=np.int64))
    return pa.record_batch(cols)


@st.composite
def table_and_indices(draw):
    sizes = draw(st.lists(st.integers(0, 40), min_size=1, max_size=5).filter(lambda s: sum(s) > 0))
    seed = draw(st.integers(0, 2**32 - 1))
    n = sum(sizes)
    idx = draw(st.lists(st.integers(-n, n - 1), max_size=3 * n))
    if idx and draw(st.booleans()):
        idx = idx + draw(st.lists(st.sampled_from(idx), max_size=10))  # more duplicates
    as_type = draw(st.sampled_from(["list", "numpy", "torch"]))
    use_concat = draw(st.booleans())
    return sizes, seed, idx, as_type, use_concat


@settings(max_examples=50, deadline=None)
@given(table_and_indices())
def test_getitems_matches_pyarrow_take(case):
    sizes, seed, idx, as_type, use_concat = case
    rng = np.random.default_rng(seed)
    batches, start = [], 0
    for size in sizes:
        batches.append(_chunk(rng, size, start))
        start += size
    if use_concat:
        pt = pa.concat_tables([pa.Table.from_batches([b]) for b in batches])
    else:
        pt = pa.Table.from_batches(batches)
    n = pt.num_rows
    assert pt.num_columns == len(NUMERIC_TYPES) + 7

    db = lancetorch.connect("memory://")
    t = db.create_table("t", pt)
    assert len(t) == n
    arg = {
        "list": idx,
        "numpy": np.array(idx, dtype=np.int64),
        "torch": torch.tensor(idx, dtype=torch.int64),
    }[as_type]
    got = t.__getitems__(arg)

    norm = [i + n if i < 0 else i for i in idx]
    expected = pt.take(pa.array(norm, pa.int64()))
    assert got.schema == pt.schema
    assert got.num_rows == len(idx)
    assert got.column("row").to_pylist() == norm
    assert got.equals(expected)


def test_sliced_input_chunks_with_nulls(any_db):
    """Chunks that are slices (non-zero offsets, bit-packed validity/bools) take correctly."""
    rng = np.random.default_rng(7)
    n = 100
    base = pa.table(
        {
            "i": pa.array(np.arange(n), mask=rng.random(n) < 0.3),
            "b": pa.array(rng.random(n) < 0.5, mask=rng.random(n) < 0.2),
            "s": pa.array([str(i) if i % 4 else None for i in range(n)]),
            "f16": pa.array(np.arange(n).astype(np.float16)),
        }
    )
    pt = pa.concat_tables([base.slice(3, 20), base.slice(37, 41), base.slice(90, 5)])
    t = any_db.create_table("t", pt)
    idx = rng.integers(-len(pt), len(pt), 300)
    norm = np.where(idx < 0, idx + len(pt), idx)
    got = t.__getitems__(idx)
    assert got.equals(pt.take(pa.array(norm)))


def test_disk_take_every_type(dir_db):
    rng = np.random.default_rng(3)
    pt = pa.Table.from_batches([_chunk(rng, 30, 0), _chunk(rng, 25, 30)])
    t = dir_db.create_table("t", pt)
    idx = [54, 0, -1, 3, 3, 31, -55, 29, 30]
    norm = [i + 55 if i < 0 else i for i in idx]
    got = t.__getitems__(idx)
    assert got.column("row").to_pylist() == norm
    assert got.equals(pt.take(pa.array(norm)))


def test_empty_table_take(any_db):
    t = any_db.create_table("e", pa.table({"a": pa.array([], pa.int64())}))
    assert len(t) == 0
    assert t.__getitems__([]).num_rows == 0
    with pytest.raises(IndexError, match=r"\b0 rows"):
        t.__getitems__([0])
    with pytest.raises(IndexError):
        t.__getitems__([-1])
    assert len(pickle.loads(pickle.dumps(t))) == 0


def test_create_with_schema_casts_data(any_db):
    t = any_db.create_table("t", {"a": [1, 2]}, schema=pa.schema([("a", pa.float32())]))
    assert t.schema.field("a").type == pa.float32()
    assert t.__getitems__([1, 0]).column("a").to_pylist() == [2.0, 1.0]


# -- tables of many rows: fixed-width columns held once, in the row-major block --------------

_WIDE_SIZES = [1, 40_000, 29_999, 7]  # 70,007 rows: past the block's 65,536-row threshold


def _temporal(n: int, start: int) -> dict[str, pa.Array]:
    r = np.arange(start, start + n, dtype=np.int64)
    return {
        "date": pa.array(r.astype(np.int32), pa.date32()),
        "ts": pa.array(r * 1_000_003, pa.timestamp("us", tz="UTC")),
        "time": pa.array(r * 1_000, pa.time64("us")),
        "dur": pa.array(r - 35_000, pa.duration("ms")),
    }


@pytest.fixture(scope="module")
def wide_data() -> pa.Table:
    rng = np.random.default_rng(11)
    batches, start = [], 0
    for n in _WIDE_SIZES:
        chunk = _chunk(rng, n, start)
        extra = _temporal(n, start)
        batches.append(
            pa.record_batch(
                chunk.columns + list(extra.values()), names=chunk.schema.names + list(extra)
            )
        )
        start += n
    return pa.Table.from_batches(batches)


@pytest.fixture(scope="module")
def wide_table(wide_data):
    return lancetorch.connect("memory://").create_table("wide", wide_data)


def test_wide_table_exports_what_went_in(wide_table, wide_data):
    from multiprocessing.reduction import ForkingPickler

    assert wide_table.to_arrow().equals(wide_data)
    assert pickle.loads(pickle.dumps(wide_table)).to_arrow().equals(wide_data)
    # To a worker, through the shared file written a slice at a time.
    assert pickle.loads(ForkingPickler.dumps(wide_table)).to_arrow().equals(wide_data)
    names = ["float16", "string", "date", "int8"]
    assert wide_table._backend.read_columns(names).equals(wide_data.select(names))


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_wide_takes_match_pyarrow(wide_table, wide_data, data):
    n = wide_data.num_rows
    edges = st.sampled_from([0, 1, 40_000, 40_001, 69_999, 70_000, n - 1])
    idx = data.draw(st.lists(st.integers(-n, n - 1) | edges, max_size=600))
    names = data.draw(
        st.lists(st.sampled_from(wide_data.schema.names), min_size=1, max_size=8, unique=True)
    )
    norm = [i + n if i < 0 else i for i in idx]
    got = wide_table.take_offsets(idx, columns=names).to_arrow()
    expected = wide_data.select(names).take(pa.array(norm, pa.int64()))
    assert got.equals(expected)


def test_wide_table_add_keeps_every_row(mem_db, wide_data):
    t = mem_db.create_table("w", wide_data)
    more = wide_data.slice(100, 50)
    t.add(more)
    assert t.to_arrow().equals(pa.concat_tables([wide_data, more]))
    n = wide_data.num_rows
    idx = [n + 49, 0, n, 40_000, n - 1, 150]
    got = t.__getitems__(idx)
    assert got.equals(pa.concat_tables([wide_data, more]).take(pa.array(idx)))


def _pool_table(n: int, columns: int) -> pa.Table:
    """Numeric columns whose buffers pyarrow allocated (numpy-backed arrays would not count)."""
    import pyarrow.compute as pc

    base = pa.array(np.arange(n, dtype=np.float32))
    return pa.table({f"c{i}": pc.add(base, float(i)) for i in range(columns)})


def test_wide_memory_table_holds_its_numbers_once(mem_db):
    """Once the user drops their data, the table's fixed-width columns live only in the
    row-major block: none of pyarrow's buffers stay referenced."""
    import gc

    from lancetorch import _native

    gc.collect()  # earlier tests' garbage freed now, not between the two readings below
    before = pa.total_allocated_bytes()
    data = _pool_table(100_000, 8)
    held = pa.total_allocated_bytes() - before
    assert held >= data.nbytes
    kept = _native.ColumnStore(data, row_major=False)  # the Arrow arrays as they are
    t = mem_db.create_table("once", data)
    del data
    gc.collect()
    assert pa.total_allocated_bytes() - before >= held  # `kept` still holds them
    del kept
    gc.collect()
    assert pa.total_allocated_bytes() - before < held // 10
    assert t.__getitems__([99_999, 3]).column("c7").to_pylist() == [99_999 + 7.0, 10.0]


def test_store_columns_out_of_range_are_named():
    from lancetorch import _native

    store = _native.ColumnStore(pa.table({"a": [1, 2]}))
    with pytest.raises(IndexError, match="column index 5 is out of range for a table of 1 columns"):
        store.batches([5])
    with pytest.raises(IndexError, match="column index 3 is out of range"):
        store.take([0], [3])


# -- search().where() and LanceDB's names --------------------------------------------------------
@pytest.fixture(scope="module")
def scan_tables(tmp_path_factory):
    """The same 40 rows (a null among them) in memory and on disk in two fragments."""
    data = pa.table(
        {
            "id": pa.array(range(40), pa.int64()),
            "x": pa.array([None if i == 7 else (i * 37) % 11 for i in range(40)], pa.int64()),
        }
    )
    disk = lancetorch.connect(tmp_path_factory.mktemp("scan"))
    on_disk = disk.create_table("t", data.slice(0, 25))
    on_disk.add(data.slice(25))
    return data, [lancetorch.connect("memory://").create_table("t", data), on_disk]


@settings(max_examples=40, deadline=None)
@given(
    threshold=st.integers(-1, 11),
    offset=st.integers(0, 45),
    limit=st.one_of(st.none(), st.integers(0, 45)),
)
def test_where_filters_before_offset_and_limit(scan_tables, threshold, offset, limit):
    data, tables = scan_tables
    kept = [r["id"] for r in data.to_pylist() if r["x"] is not None and r["x"] > threshold]
    want = kept[offset:] if limit is None else kept[offset : offset + limit]
    for table in tables:
        query = table.search().where(f"x > {threshold}").offset(offset).limit(limit)
        assert ids(query.select(["id"]).to_arrow()) == want
        # the order of the calls does not matter: the filter always comes first
        again = table.search().limit(limit).offset(offset).where(f"x > {threshold}")
        assert ids(again.to_arrow()) == want


def test_where_takes_lancedbs_names_and_both_prefilters(mem_db):
    """LanceDB's scan: ``where(where=...)``; a scan has no vector limit, so ``prefilter``
    changes nothing there (LanceDB gives the same rows for both)."""
    table = mem_db.create_table("t", sample_table(10))
    first = table.search().where(where="id > 5").to_arrow()
    assert first.column("id").to_pylist() == [6, 7, 8, 9]
    late = table.search().where("id > 5", prefilter=False).limit(2).to_arrow()
    assert late.column("id").to_pylist() == [6, 7]


def test_where_refuses_what_it_cannot_honour(mem_db):
    table = mem_db.create_table("t", sample_table(5))
    with pytest.raises(TypeError, match="where=5 is int"):
        table.search().where(5)
    with pytest.raises(ValueError, match="not exactly one SQL expression"):
        table.search().where("id > 1; id < 3")
    with pytest.raises(ValueError, match="not exactly one SQL expression"):
        table.search().where("id > 1 LIMIT 2")
    with pytest.raises(ValueError, match="empty"):
        table.search().where("  ")
    with pytest.raises(TypeError, match="prefilter"):
        table.search().where("id > 1", prefilter="no")
    with pytest.raises(ValueError, match="not true/false"):
        table.search().where("id + 1").to_arrow()


def test_lancedb_table_methods_lancetorch_lacks_say_what_to_use(table):
    lancedb_table = pytest.importorskip("lancedb.table")
    lacking = sorted(
        name
        for name in dir(lancedb_table.LanceTable)
        if not name.startswith("_") and not hasattr(lancetorch.Table, name)
    )
    assert "delete" in lacking and "create_index" in lacking
    for name in lacking:
        with pytest.raises(AttributeError, match=f"lancetorch's Table has no {name} ") as err:
            getattr(table, name)
        assert len(str(err.value).split(": ", 1)[1]) > 20  # what to use instead
        assert not hasattr(table, name)
    with pytest.raises(AttributeError, match="^'Table' object has no attribute 'no_such_name'$"):
        table.no_such_name  # noqa: B018
    with pytest.raises(AttributeError, match="lancetorch's ScanQuery has no to_df.*to_pandas"):
        table.search().to_df  # noqa: B018


def test_readers_keep_their_version_when_a_checked_out_handle_moves_on(dir_db):
    """A Permutation, a Loader and a query made over a handle read that handle's version to
    their end, also where the handle was checked out and then moves to the latest."""
    from lancetorch.loader import Loader
    from lancetorch.permutation import Permutation

    t = dir_db.create_table("t", sample_table(10))
    t.add(sample_table(15).slice(10))
    t.checkout(1)
    perm = Permutation.identity(t).with_format("arrow")
    loader = Loader(t, 4, shuffle=False, per_column=True)
    query = t.take_offsets([9, 0])
    t.checkout_latest()
    assert (t.version, len(t)) == (2, 15)
    assert len(perm) == 10 and perm[0:10]["id"].to_pylist() == list(range(10))
    assert sorted(v for b in loader for v in b["id"].tolist()) == list(range(10))
    assert query.to_arrow()["id"].to_pylist() == [9, 0]
    assert Permutation.identity(t)[14]["id"] == 14


def test_readers_of_a_memory_table_keep_its_rows_when_it_grows(mem_db):
    """A Permutation (identity, from_tables, builder-made), a Loader and a query over a memory
    table read the rows it had when they were made, as over a disk table: rows appended
    later are not in them."""
    from lancetorch.loader import Loader
    from lancetorch.permutation import Permutation, Permutations, permutation_builder

    t = mem_db.create_table("t", sample_table(10))
    perm = Permutation.identity(t).with_format("arrow")
    split = permutation_builder(t).split_sequential(counts=[6, 4]).execute()
    parts = Permutations(t, split)
    first, second = parts[0].with_format("arrow"), parts[1].with_format("arrow")
    plain = Permutation.from_tables(t).with_format("arrow")
    loader = Loader(t, 4, shuffle=False, per_column=True)
    query, scan = t.take_offsets([9, 0]), t.search()
    t.add(sample_table(15).slice(10))
    assert (len(t), t.count_rows(), t.version) == (15, 15, 2)
    assert len(perm) == 10 and perm[0:10]["id"].to_pylist() == list(range(10))
    with pytest.raises(IndexError):
        perm[10]  # noqa: B018
    assert len(plain) == 10 and ids(plain[0:10]) == list(range(10))
    assert (ids(first[0:10]), ids(second[0:10])) == (list(range(6)), list(range(6, 10)))
    assert sorted(v for b in loader for v in b["id"].tolist()) == list(range(10))
    assert query.to_arrow()["id"].to_pylist() == [9, 0]
    assert scan.to_arrow()["id"].to_pylist() == list(range(10))
    assert len(Permutation.identity(t)) == 15  # made again: the rows there are now


@pytest.mark.slow
def test_workers_of_a_permutation_over_a_memory_table_read_its_rows(mem_db):
    """Sent to workers before and after the table grows, a Permutation over a memory table
    reads the rows it was made over: the table's shared copy while it holds them, then one
    of its own."""
    from lancetorch.permutation import Permutation

    t = mem_db.create_table("t", sample_table(10).select(["id"]))
    perm = Permutation.identity(t)
    loader = torch.utils.data.DataLoader(
        perm, batch_size=4, num_workers=2, multiprocessing_context="spawn"
    )

    def epoch() -> list[int]:
        return sorted(v for b in loader for v in b["id"].tolist())

    assert epoch() == list(range(10))
    t.add(sample_table(15).select(["id"]).slice(10))
    assert epoch() == list(range(10))
    assert sorted(
        v
        for b in torch.utils.data.DataLoader(
            Permutation.identity(t), batch_size=4, num_workers=2, multiprocessing_context="spawn"
        )
        for v in b["id"].tolist()
    ) == list(range(15))


def test_checkout_reads_that_version_and_caches_it_alone(dir_db):
    dir_db.create_table("t", sample_table(10))
    t = dir_db.open_table("t", cache=True)
    t.add(sample_table(12).slice(10))
    assert ids(t[[11, 0]]) == [11, 0]  # version 2, cached
    t.checkout(1)
    assert len(t) == 10 and ids(t[:]) == list(range(10))
    with pytest.raises(IndexError):
        t[[10]]
    t.checkout_latest()
    assert ids(t[[11]]) == [11]
