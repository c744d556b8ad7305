"""Arrow to torch: tbl_to_tensor / batch_to_tensor, DLPack hand-over, passthrough."""

from __future__ import annotations

import functools
import gc
import os
import pickle

import lancetorch
import numpy as np
import pyarrow as pa
import pytest
import torch
from conftest import NUMERIC_TYPES
from hypothesis import given, settings
from hypothesis import strategies as st
from lancetorch import _native
from lancetorch.util import batch_to_tensor, column_to_tensor, passthrough, tbl_to_tensor

TORCH = {
    "bool": torch.bool,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "uint8": torch.uint8,
    "uint16": torch.uint16,
    "uint32": torch.uint32,
    "uint64": torch.uint64,
    "float16": torch.float16,
    "float32": torch.float32,
    "float64": torch.float64,
}


def reference(data: pa.RecordBatch | pa.Table) -> torch.Tensor:
    """What the tensor should be: the columns through numpy, stacked (always a copy)."""
    cols = [np.array(c.to_numpy()) for c in data.columns]  # np.array: writable copies
    return torch.stack([torch.from_numpy(c) for c in cols])


def random_values(rng: np.random.Generator, dtype: str, n: int) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, size=n, dtype=dt, endpoint=True)
    if dt.kind == "b":
        return rng.random(n) < 0.5
    return (rng.standard_normal(n) * 1000).astype(dt)


# -- shape and layout ---------------------------------------------------------------------------


def test_shape_is_columns_by_rows():
    batch = pa.record_batch({"a": [1, 2, 3], "b": [10, 20, 30]})
    t = tbl_to_tensor(batch)
    assert t.shape == (2, 3)
    assert t.dtype == torch.int64
    assert t.tolist() == [[1, 2, 3], [10, 20, 30]]
    assert t.is_contiguous()
    assert t.device.type == "cpu"


def test_batch_to_tensor_same_as_tbl_to_tensor():
    batch = pa.record_batch({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    assert torch.equal(batch_to_tensor(batch), tbl_to_tensor(batch))
    assert batch_to_tensor(batch).tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_single_column():
    t = tbl_to_tensor(pa.record_batch({"a": pa.array([5, 6, 7], pa.int32())}))
    assert t.shape == (1, 3)
    assert t.dtype == torch.int32
    assert t.tolist() == [[5, 6, 7]]


def test_empty_batch():
    t = tbl_to_tensor(
        pa.record_batch({"a": pa.array([], pa.float32()), "b": pa.array([], pa.float32())})
    )
    assert t.shape == (2, 0)
    assert t.dtype == torch.float32


def test_empty_table():
    t = tbl_to_tensor(pa.table({"a": pa.array([], pa.int16())}))
    assert t.shape == (1, 0)
    assert t.dtype == torch.int16


def test_sliced_batch_respects_offset():
    batch = pa.record_batch({"a": [1, 2, 3, 4], "b": [5.0, 6.0, 7.0, 8.0]}).slice(1, 2)
    assert tbl_to_tensor(batch).tolist() == [[2.0, 3.0], [6.0, 7.0]]


# -- zero copy / copies -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["int64", "float32", "uint8", "float16", "int16"])
def test_zero_copy_from_memory_take(mem_db, dtype):
    rng = np.random.default_rng(0)
    data = pa.table({f"c{i}": random_values(rng, dtype, 100) for i in range(3)})
    table = mem_db.create_table("t", data)
    idx = [5, 99, 0, 5, 42]
    batch = table.__getitems__(idx)
    t = tbl_to_tensor(batch)
    assert t.data_ptr() == batch.column(0).chunk(0).buffers()[1].address
    assert t.dtype == TORCH[dtype]
    assert t.shape == (3, 5)
    assert torch.equal(t, reference(data.take(pa.array(idx))))


def test_a_take_lends_its_memory_to_one_tensor_only(mem_db):
    """The first tensor made from a take's batch shares its memory (a change to the tensor
    shows in the batch, as with torch.from_numpy); converting again copies, so that tensors
    never write into each other."""
    data = pa.table({"a": np.arange(4, dtype=np.float32), "b": np.arange(4, 8, dtype=np.float32)})
    table = mem_db.create_table("t", data)
    batch = table.__getitems__([3, 1])
    first = tbl_to_tensor(batch)
    assert first.data_ptr() == batch.column(0).chunk(0).buffers()[1].address
    again, column = tbl_to_tensor(batch), column_to_tensor(batch, "b")
    assert again.data_ptr() != first.data_ptr() and column.data_ptr() != first[1].data_ptr()
    first.mul_(10)
    assert batch.column("a").to_pylist() == [30.0, 10.0]  # shared with the batch
    assert again.tolist() == [[3.0, 1.0], [7.0, 5.0]] and column.tolist() == [7.0, 5.0]

    other = table.__getitems__([0, 2])
    a = column_to_tensor(other, "a")
    assert a.data_ptr() == other.column(0).chunk(0).buffers()[1].address  # one column lent...
    b = column_to_tensor(other, "b")
    assert b.data_ptr() == other.column(1).chunk(0).buffers()[1].address  # ...and another
    whole = tbl_to_tensor(other)  # a column of it is lent already: a copy
    assert whole.data_ptr() not in (a.data_ptr(), b.data_ptr())
    assert column_to_tensor(other, "a").data_ptr() != a.data_ptr()

    cast_first = table.__getitems__([1, 2])
    assert tbl_to_tensor(cast_first, dtype=torch.float64).dtype == torch.float64  # a copy...
    shared = tbl_to_tensor(cast_first)  # ...which lent nothing
    assert shared.data_ptr() == cast_first.column(0).chunk(0).buffers()[1].address


def test_a_take_shares_its_memory_however_it_was_wrapped(mem_db):
    """What counts is where the buffers lie, not which Python object holds them: a renamed
    batch, a table around it, a column put in a batch of its own all share the take."""
    data = pa.table({"a": np.arange(6, dtype=np.float32), "b": np.arange(6, dtype=np.float32)})
    table = mem_db.create_table("t", data)

    def address(batch, i=0):
        column = batch.column(i)
        return (column.chunk(0) if hasattr(column, "chunk") else column).buffers()[1].address

    renamed = table.__getitems__([5, 0, 2]).rename_columns(["x", "y"])
    assert tbl_to_tensor(renamed).data_ptr() == address(renamed)
    rb = table.__getitems__([1, 2]).to_batches()[0]
    wrapped = pa.Table.from_batches([rb])
    assert tbl_to_tensor(wrapped).data_ptr() == address(rb)
    assert tbl_to_tensor(rb).data_ptr() != address(rb)  # lent once already: a copy
    taken = table.__getitems__([3, 4])
    alone = pa.record_batch({"b": taken.column("b").chunk(0)})
    assert column_to_tensor(alone, "b").data_ptr() == address(taken, 1)
    assert column_to_tensor(taken, "b").data_ptr() != address(taken, 1)
    assert column_to_tensor(taken, "a").data_ptr() == address(taken, 0)


def test_the_last_take_is_known_as_that_object_only(mem_db):
    """The object a take just returned is converted from the take's own batch; any other
    object (the same rows wrapped again, an earlier take) goes through pyarrow, and both
    ways give the same tensor and share the same way."""
    from lancetorch import _native

    data = pa.table({"a": np.arange(8, dtype=np.int32), "b": np.arange(8, 16, dtype=np.int32)})
    table = mem_db.create_table("t", data)
    earlier = table.__getitems__([7, 1, 4])
    taken = table.__getitems__([0, 6])
    assert _native.taken_to_tensor(pa.Table.from_batches(taken.to_batches())) is None
    assert _native.taken_to_tensor(earlier) is None  # no longer the last take
    assert _native.taken_to_tensor(pa.record_batch({"a": [1]})) is None
    shared = tbl_to_tensor(earlier)  # through pyarrow, still the take's memory
    assert shared.data_ptr() == address_of(earlier)
    assert shared.tolist() == [[7, 1, 4], [15, 9, 12]]
    last = torch.from_dlpack(_native.taken_to_tensor(taken))
    assert last.data_ptr() == address_of(taken) and last.tolist() == [[0, 6], [8, 14]]
    assert _native.taken_to_tensor(taken).__class__.__name__ == "PyCapsule"  # a copy now...
    assert tbl_to_tensor(taken).data_ptr() != last.data_ptr()  # ...as through pyarrow


def test_a_dropped_take_frees_its_memory(mem_db):
    """Remembering the last take keeps nothing alive: its memory goes with its object."""
    rows = 8 << 20  # 64 MiB of int64, an allocation of its own
    table = mem_db.create_table("t", pa.table({"a": np.arange(rows)}))

    def resident() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    before = resident()
    taken = table.__getitems__(np.arange(rows))
    held = resident()
    assert held - before > 48 << 20
    del taken
    assert held - resident() > 48 << 20


def test_two_threads_converting_one_take_never_both_share(mem_db):
    from concurrent.futures import ThreadPoolExecutor

    data = pa.table({"a": np.arange(10_000, dtype=np.float64)})
    table = mem_db.create_table("t", data)
    for _ in range(20):
        batch = table.__getitems__(np.arange(10_000))
        with ThreadPoolExecutor(4) as pool:
            tensors = list(pool.map(tbl_to_tensor, [batch] * 4))
        shared = [t for t in tensors if t.data_ptr() == address_of(batch)]
        assert len(shared) == 1
        assert all(torch.equal(t, tensors[0]) for t in tensors)


def address_of(batch) -> int:
    return batch.column(0).chunk(0).buffers()[1].address


def test_copy_for_user_made_batch():
    a = np.arange(6, dtype=np.float64)
    batch = pa.record_batch({"a": a, "b": a * 2})
    t = tbl_to_tensor(batch)
    assert t.data_ptr() != batch.column(0).buffers()[1].address
    assert t.tolist() == [[0, 1, 2, 3, 4, 5], [0, 2, 4, 6, 8, 10]]
    t[0, 0] = 100.0  # the tensor is its own memory
    assert batch.column(0)[0].as_py() == 0.0


def test_multi_chunk_table():
    tbl = pa.concat_tables(
        [
            pa.table({"a": [1, 2], "b": [10, 20]}),
            pa.table({"a": [3], "b": [30]}),
            pa.table({"a": pa.array([], pa.int64()), "b": pa.array([], pa.int64())}),
            pa.table({"a": [4, 5], "b": [40, 50]}),
        ]
    )
    assert tbl.column("a").num_chunks == 4
    t = tbl_to_tensor(tbl)
    assert t.tolist() == [[1, 2, 3, 4, 5], [10, 20, 30, 40, 50]]
    assert torch.equal(t, reference(tbl.combine_chunks()))


def test_list_of_batches():
    b1 = pa.record_batch({"a": [1, 2]})
    b2 = pa.record_batch({"a": [3]})
    assert tbl_to_tensor([b1, b2]).tolist() == [[1, 2, 3]]


def test_lancetorch_table_argument(mem_db):
    table = mem_db.create_table("t", pa.table({"a": [1, 2], "b": [3, 4]}))
    assert tbl_to_tensor(table).tolist() == [[1, 2], [3, 4]]


def test_not_arrow_raises():
    with pytest.raises(TypeError, match="Arrow"):
        tbl_to_tensor({"a": [1, 2]})


def test_disk_take_values(dir_db):
    data = pa.table(
        {"a": np.arange(50, dtype=np.float32), "b": np.arange(50, 100, dtype=np.float32)}
    )
    table = dir_db.create_table("t", data)
    t = tbl_to_tensor(table.__getitems__([49, 0, 7, 7]))
    assert t.tolist() == [[49, 0, 7, 7], [99, 50, 57, 57]]


# -- dtypes -------------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    dtype=st.sampled_from(NUMERIC_TYPES),
    ncols=st.integers(1, 4),
    chunks=st.lists(st.integers(0, 30), min_size=1, max_size=3),
    seed=st.integers(0, 2**32 - 1),
    via_take=st.booleans(),
)
def test_every_width_matches_numpy(dtype, ncols, chunks, seed, via_take):
    rng = np.random.default_rng(seed)
    tbl = pa.concat_tables(
        [pa.table({f"c{i}": random_values(rng, dtype, n) for i in range(ncols)}) for n in chunks]
    )
    if via_take:
        db = lancetorch.connect("memory://")
        n = tbl.num_rows
        idx = rng.integers(0, n, size=n).tolist() if n else []
        data = db.create_table("t", tbl).__getitems__(idx)
        expected = reference(tbl.take(pa.array(idx, pa.int64())))
    else:
        data = tbl
        expected = reference(tbl.combine_chunks())
    t = tbl_to_tensor(data)
    assert t.dtype == TORCH[dtype]
    assert t.shape == (ncols, tbl.num_rows if not via_take else len(idx))
    assert torch.equal(t, expected)


def test_bool_stays_bool():
    batch = pa.record_batch({"a": [True, False, True], "b": [False, False, True]})
    t = tbl_to_tensor(batch)
    assert t.dtype == torch.bool
    assert t.tolist() == [[True, False, True], [False, False, True]]


def test_bool_from_memory_take(mem_db):
    table = mem_db.create_table("t", pa.table({"a": [True, False, True, False]}))
    t = tbl_to_tensor(table.__getitems__([3, 2, 2, 0]))
    assert t.dtype == torch.bool
    assert t.tolist() == [[False, True, True, True]]


def _torch_result(types: list[str]) -> torch.dtype:
    tensors = [torch.zeros(1, dtype=TORCH[t]) for t in types]
    return functools.reduce(
        lambda a, b: torch.result_type(torch.zeros(1, dtype=a), b), tensors[1:], tensors[0].dtype
    )


@pytest.mark.parametrize(
    "types,expected",
    [
        (["float32", "int64"], torch.float32),
        (["uint8", "int8"], torch.int16),
        (["int64", "float16"], torch.float16),
        (["bool", "uint8"], torch.uint8),
        (["bool", "float64"], torch.float64),
        (["int8", "int32"], torch.int32),
        (["float16", "float32"], torch.float32),
        (["uint8", "int16", "float32"], torch.float32),
        (["bool", "int8"], torch.int8),
    ],
)
def test_mixed_types_examples(types, expected):
    assert _torch_result(types) == expected  # the table above is torch's own rule
    batch = pa.record_batch(
        {
            f"c{i}": pa.array([0, 1, 1], pa.from_numpy_dtype(np.dtype(t)))
            if t != "bool"
            else pa.array([False, True, True])
            for i, t in enumerate(types)
        }
    )
    t = tbl_to_tensor(batch)
    assert t.dtype == expected
    assert t.tolist() == [[0, 1, 1]] * len(types)  # False == 0, True == 1 for bool results


PROMOTABLE = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"]


@settings(max_examples=50, deadline=None)
@given(
    types=st.lists(st.sampled_from(PROMOTABLE), min_size=2, max_size=4),
    n=st.integers(0, 20),
    seed=st.integers(0, 2**32 - 1),
)
def test_mixed_types_follow_torch_result_type(types, n, seed):
    rng = np.random.default_rng(seed)
    cols = []
    for t in types:
        if t == "bool":
            cols.append(rng.random(n) < 0.5)
        else:  # small whole numbers: exact in every type, so values compare exactly
            cols.append(
                rng.integers(-100, 100, size=n).astype(t)
                if t[0] != "u"
                else rng.integers(0, 200, size=n).astype(t)
            )
    batch = pa.record_batch({f"c{i}": c for i, c in enumerate(cols)})
    expected_dtype = _torch_result(types)
    t = tbl_to_tensor(batch)
    assert t.dtype == expected_dtype
    expected = torch.stack([torch.from_numpy(c).to(expected_dtype) for c in cols])
    assert torch.equal(t, expected)


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float64, torch.int32, torch.int64, torch.float16, torch.int16]
)
def test_dtype_forces_type(dtype):
    batch = pa.record_batch(
        {
            "a": pa.array([1, 2, 3], pa.int64()),
            "b": pa.array([4.0, 5.0, 6.0], pa.float64()),
            "c": pa.array([True, False, True]),
        }
    )
    t = tbl_to_tensor(batch, dtype=dtype)
    assert t.dtype == dtype
    assert t.tolist() == [[1, 2, 3], [4, 5, 6], [1, 0, 1]]


def test_dtype_forces_type_on_memory_take(mem_db):
    table = mem_db.create_table("t", pa.table({"a": pa.array([1, 2, 3], pa.int64())}))
    t = batch_to_tensor(table.__getitems__([2, 0]), dtype=torch.float32)
    assert t.dtype == torch.float32
    assert t.tolist() == [[3.0, 1.0]]


def test_uint64_with_signed_needs_dtype():
    batch = pa.record_batch({"u": pa.array([1], pa.uint64()), "i": pa.array([-1], pa.int64())})
    with pytest.raises(TypeError, match="dtype"):
        tbl_to_tensor(batch)
    assert tbl_to_tensor(batch, dtype=torch.float64).tolist() == [[1.0], [-1.0]]


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "column,type_words",
    [
        (pa.array(["x", "y"]), ("utf8", "string")),
        (pa.array(["x", "y"], pa.large_string()), ("largeutf8", "large_string")),
        (pa.array([[1], [2, 3]]), ("list",)),
        (pa.array([[1, 2], [3, 4]], pa.list_(pa.int32(), 2)), ("list",)),
        (pa.array([{"x": 1}, {"x": 2}]), ("struct",)),
    ],
    ids=["string", "large_string", "list", "fixed_size_list", "struct"],
)
def test_non_numeric_columns_raise_typeerror(column, type_words):
    batch = pa.record_batch({"ok": [1, 2], "bad_col": column})
    with pytest.raises(TypeError) as info:
        tbl_to_tensor(batch)
    msg = str(info.value)
    assert "'bad_col'" in msg
    assert any(w in msg.lower() for w in type_words), msg


def test_nulls_raise_naming_column_and_count():
    batch = pa.record_batch(
        {"fine": [1, 2, 3, 4], "holes": pa.array([1, None, None, None], pa.int64())}
    )
    with pytest.raises(ValueError) as info:
        tbl_to_tensor(batch)
    msg = str(info.value)
    assert "'holes'" in msg
    assert "3" in msg
    assert "'fine'" not in msg


def test_nulls_from_memory_take_raise(mem_db):
    table = mem_db.create_table("t", pa.table({"a": pa.array([1.0, None, 3.0])}))
    assert tbl_to_tensor(table.__getitems__([0, 2])).tolist() == [[1.0, 3.0]]
    with pytest.raises(ValueError, match=r"'a'.*\b2\b"):
        tbl_to_tensor(table.__getitems__([1, 1, 0]))


def test_null_value_nan_fills():
    batch = pa.record_batch({"a": pa.array([1.5, None, 3.5]), "b": pa.array([None, 2.0, 4.0])})
    t = tbl_to_tensor(batch, null_value=float("nan"))
    assert t.dtype == torch.float64
    assert torch.isnan(t).tolist() == [[False, True, False], [True, False, False]]
    assert t[0, 0] == 1.5 and t[0, 2] == 3.5 and t[1, 1] == 2.0 and t[1, 2] == 4.0


def test_null_value_nan_on_int_column_with_float_dtype():
    batch = pa.record_batch({"a": pa.array([1, None, 3], pa.int64())})
    t = tbl_to_tensor(batch, dtype=torch.float32, null_value=float("nan"))
    assert t.dtype == torch.float32
    assert torch.isnan(t).tolist() == [[False, True, False]]
    assert t[0, 0] == 1 and t[0, 2] == 3


def test_null_value_nan_on_int_column_without_dtype_is_refused():
    batch = pa.record_batch({"a": pa.array([1, None, 3], pa.int64())})
    with pytest.raises(ValueError, match="'a'"):
        tbl_to_tensor(batch, null_value=float("nan"))


def test_null_value_zero_on_int_column():
    batch = pa.record_batch({"a": pa.array([1, None, 3], pa.int64())})
    t = tbl_to_tensor(batch, null_value=0)
    assert t.dtype == torch.int64
    assert t.tolist() == [[1, 0, 3]]


# -- lifetime -----------------------------------------------------------------------------------


def test_tensor_outlives_table_batch_connection():
    db = lancetorch.connect("memory://")
    table = db.create_table(
        "t",
        pa.table(
            {"a": np.arange(1000, dtype=np.float32), "b": np.arange(1000, 2000, dtype=np.float32)}
        ),
    )
    batch = table.__getitems__(list(range(999, -1, -1)))
    t = tbl_to_tensor(batch)
    assert t.data_ptr() == batch.column(0).chunk(0).buffers()[1].address  # shares the take's memory
    db.drop_table("t")
    del table, batch, db
    gc.collect()
    # allocate a bit so freed memory would likely be reused
    junk = [np.full(1000, -1.0, dtype=np.float32) for _ in range(100)]
    assert t.shape == (2, 1000)
    assert t[0].tolist() == list(range(999, -1, -1))
    assert t[1].tolist() == list(range(1999, 999, -1))
    del junk


def test_tensor_outlives_copied_source():
    batch = pa.record_batch({"a": np.arange(100, dtype=np.int32)})
    t = tbl_to_tensor(batch)
    del batch
    gc.collect()
    assert t.tolist() == [list(range(100))]


# -- DLPack -------------------------------------------------------------------------------------


def _dl(values=(1.5, 2.5, 3.5)):
    return _native.batches_to_tensor(
        [pa.record_batch({"a": list(values), "b": [v * 2 for v in values]})]
    )


def test_dlpack_object_properties():
    d = _dl()
    assert list(d.shape) == [2, 3]
    assert d.dtype == "float64"
    assert tuple(d.__dlpack_device__()) == (1, 0)  # kDLCPU, device 0


def test_dlpack_legacy_capsule():
    capsule = _dl().__dlpack__()
    assert '"dltensor"' in repr(capsule)
    t = torch.utils.dlpack.from_dlpack(capsule)
    assert t.tolist() == [[1.5, 2.5, 3.5], [3.0, 5.0, 7.0]]


def test_dlpack_versioned_capsule():
    capsule = _dl().__dlpack__(max_version=(1, 0))
    assert '"dltensor_versioned"' in repr(capsule)
    t = torch.utils.dlpack.from_dlpack(capsule)
    assert t.tolist() == [[1.5, 2.5, 3.5], [3.0, 5.0, 7.0]]


def test_torch_from_dlpack_protocol():
    t = torch.from_dlpack(_dl())
    assert t.dtype == torch.float64
    assert t.tolist() == [[1.5, 2.5, 3.5], [3.0, 5.0, 7.0]]


def test_numpy_from_dlpack():
    arr = np.from_dlpack(_dl())
    assert arr.dtype == np.float64
    assert arr.tolist() == [[1.5, 2.5, 3.5], [3.0, 5.0, 7.0]]


@pytest.mark.parametrize("first", [{}, {"max_version": (1, 0)}], ids=["legacy", "versioned"])
def test_dlpack_consumed_once(first):
    d = _dl()
    capsule = d.__dlpack__(**first)
    with pytest.raises(BufferError):
        d.__dlpack__()
    with pytest.raises(BufferError):
        d.__dlpack__(max_version=(1, 0))
    with pytest.raises(BufferError):
        torch.from_dlpack(d)
    # the first capsule is still good
    assert torch.utils.dlpack.from_dlpack(capsule).tolist() == [[1.5, 2.5, 3.5], [3.0, 5.0, 7.0]]


def test_dlpack_capsule_dropped_unconsumed_is_fine():
    d = _dl()
    capsule = d.__dlpack__()
    del capsule, d
    gc.collect()
    assert torch.from_dlpack(_dl((7.0,))).tolist() == [[7.0], [14.0]]


# -- passthrough --------------------------------------------------------------------------------


def test_passthrough_returns_argument():
    batch = pa.record_batch({"a": [1, 2]})
    assert passthrough(batch) is batch
    obj = object()
    assert passthrough(obj) is obj


def test_passthrough_pickles():
    back = pickle.loads(pickle.dumps(passthrough))
    assert back is passthrough
    assert back([1, 2]) == [1, 2]


def test_sliced_bool_batch():
    values = [True, False, True, True, False, False, True, False, True, True, False]
    batch = pa.record_batch({"b": values}).slice(3, 7)
    t = tbl_to_tensor(batch)
    assert t.dtype == torch.bool
    assert t.tolist() == [values[3:10]]


def test_multi_chunk_sliced_bool_table():
    tbl = pa.concat_tables(
        [pa.table({"b": [True, False, True]}).slice(1), pa.table({"b": [False, True]})]
    )
    assert tbl_to_tensor(tbl).tolist() == [[False, True, False, True]]


def test_nulls_sliced_away_are_not_nulls():
    col = pa.array([None, 1.0, 2.0]).slice(1)
    assert tbl_to_tensor(pa.record_batch({"x": col})).tolist() == [[1.0, 2.0]]


def test_zero_copy_with_selected_columns(mem_db):
    table = mem_db.create_table(
        "t", pa.table({"a": np.arange(5.0), "s": list("abcde"), "b": np.arange(10.0, 15.0)})
    )
    batch = table.take_offsets([4, 1], columns=["a", "b"]).to_arrow()
    t = tbl_to_tensor(batch)
    assert t.tolist() == [[4.0, 1.0], [14.0, 11.0]]
    assert t.data_ptr() == batch.column(0).chunk(0).buffers()[1].address


def test_mixed_memory_take_is_a_correct_copy(mem_db):
    table = mem_db.create_table(
        "t",
        pa.table(
            {"a": pa.array([1, 2, 3], pa.int32()), "b": pa.array([0.5, 1.5, 2.5], pa.float32())}
        ),
    )
    batch = table.__getitems__([2, 0])
    t = tbl_to_tensor(batch)
    assert t.dtype == torch.float32
    assert t.tolist() == [[3.0, 1.0], [2.5, 0.5]]


def test_user_batches_are_copied_even_when_their_columns_touch(tmp_path):
    """Columns that happen to lie back to back (an Arrow IPC file, a memory map) are not
    handed out as a writable tensor over memory lancetorch does not own."""
    path = str(tmp_path / "t.arrow")
    data = pa.table({"a": np.arange(8, dtype=np.float32), "b": np.arange(8, dtype=np.float32)})
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, data.schema) as w:
        w.write_table(data)
    mapped = pa.ipc.open_file(pa.memory_map(path)).read_all()
    t = tbl_to_tensor(mapped)
    assert t.data_ptr() != mapped.column(0).chunks[0].buffers()[1].address
    t.mul_(2)  # writing to the copy is fine and leaves the mapped data alone
    assert mapped.column("a").to_pylist() == list(range(8))
    assert t[0].tolist() == [2.0 * i for i in range(8)]


def test_batches_of_different_columns_refused():
    a = pa.record_batch({"x": pa.array([1, 2], pa.int64())})
    b = pa.record_batch({"x": pa.array([0.5, 2.7], pa.float64())})
    with pytest.raises(TypeError, match="batch 1"):
        tbl_to_tensor([a, b])
    with pytest.raises(TypeError, match="batch 1"):
        tbl_to_tensor([a, pa.record_batch({"x": ["s", "t"]})])


@pytest.mark.parametrize(
    "type_, fill", [(pa.int8(), 1000), (pa.uint8(), -1), (pa.int16(), 0.5), (pa.bool_(), 2)]
)
def test_fill_values_that_do_not_fit_are_refused(type_, fill):
    first = True if pa.types.is_boolean(type_) else 1
    batch = pa.record_batch({"v": pa.array([first, None], type_)})
    with pytest.raises(ValueError, match="null_value"):
        tbl_to_tensor(batch, null_value=fill)


def test_fill_values_at_the_edges_fit():
    assert tbl_to_tensor(pa.record_batch({"v": pa.array([1, None], pa.int8())}), null_value=-128)[
        0
    ].tolist() == [1, -128]
    assert tbl_to_tensor(pa.record_batch({"v": pa.array([1, None], pa.uint8())}), null_value=255)[
        0
    ].tolist() == [1, 255]


def _embedding_table(n=50, dim=8):
    values = pa.array(np.arange(n * dim, dtype=np.float32))
    emb = pa.FixedSizeListArray.from_arrays(values, dim)
    return pa.table({"id": np.arange(n), "emb": emb})


def test_column_to_tensor_embeddings_share_the_take(mem_db):
    t = mem_db.create_table("e", _embedding_table())
    batch = t.__getitems__([7, 2, 7])
    x = column_to_tensor(batch, "emb")
    assert x.shape == (3, 8) and x.dtype == torch.float32
    assert x[:, 0].tolist() == [56.0, 16.0, 56.0] and x[1].tolist() == list(range(16, 24))
    assert x.data_ptr() == batch.column(1).chunk(0).values.buffers()[1].address
    assert column_to_tensor(batch, 0).tolist() == [7, 2, 7]
    assert column_to_tensor(batch, "emb", dtype=torch.float64).dtype == torch.float64


def test_column_to_tensor_user_batches_copy(mem_db):
    data = _embedding_table(10, 4)
    batch = data.to_batches()[0].slice(3, 4)
    x = column_to_tensor(batch, "emb")
    assert x.tolist() == [[float(v) for v in range(r * 4, r * 4 + 4)] for r in range(3, 7)]
    assert x.data_ptr() != batch.column(1).values.buffers()[1].address


def test_column_to_tensor_errors():
    strings = pa.record_batch({"s": ["a"]})
    with pytest.raises(TypeError, match="'s'"):
        column_to_tensor(strings, "s")
    with pytest.raises(ValueError, match="'nope'"):
        column_to_tensor(strings, "nope")
    lists = pa.FixedSizeListArray.from_arrays(pa.array(["a", "b"]), 2)
    with pytest.raises(TypeError, match="list of"):
        column_to_tensor(pa.record_batch({"l": lists}), "l")
    holes = pa.FixedSizeListArray.from_arrays(pa.array([1.0, None], pa.float32()), 2)
    with pytest.raises(ValueError, match="null"):
        column_to_tensor(pa.record_batch({"h": holes}), "h")
    assert column_to_tensor(pa.record_batch({"h": holes}), "h", null_value=0).tolist() == [
        [1.0, 0.0]
    ]


@pytest.mark.parametrize("user_batch", [True, False])
def test_column_to_tensor_by_index_negative_counts_from_the_end(mem_db, user_batch):
    data = pa.table({"a": [1, 2], "b": [3.0, 4.0]})
    batch = (
        data.to_batches()[0] if user_batch else mem_db.create_table("t", data).__getitems__([0, 1])
    )
    assert column_to_tensor(batch, -1).tolist() == [3.0, 4.0]
    assert column_to_tensor(batch, np.int64(-2)).tolist() == [1, 2]
    for bad in (2, -3):
        with pytest.raises(
            IndexError, match=f"column index {bad} is out of range for a batch of 2"
        ):
            column_to_tensor(batch, bad)
    with pytest.raises(TypeError, match="name or an integer index"):
        column_to_tensor(batch, True)
