"""Disk tables read through the cache and through Lance directly, and tables sent to worker
processes through shared memory."""

from __future__ import annotations

import pickle
from multiprocessing.reduction import ForkingPickler

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lancetorch
from lancetorch.util import tbl_to_tensor

from conftest import sample_table

N = 300


@pytest.fixture
def disk(tmp_path):
    db = lancetorch.connect(tmp_path)
    db.create_table("t", sample_table(N))
    return db


@pytest.fixture(scope="module")
def shared_disk(tmp_path_factory):
    db = lancetorch.connect(tmp_path_factory.mktemp("cache"))
    db.create_table("t", sample_table(N))
    return db


@pytest.mark.parametrize(
    "options",
    [{"cache": False}, {"cache": True}, {"cache": "auto"}, {"cache": "auto", "cache_budget": 1}],
    ids=["no-cache", "cache", "auto", "auto-over-budget"],
)
@settings(max_examples=25, deadline=None)
@given(idx=st.lists(st.integers(-N, N - 1), max_size=60))
def test_disk_takes_match_pyarrow_with_and_without_cache(shared_disk, options, idx):
    table = shared_disk.open_table("t", **options)
    want = sample_table(N).take(pa.array([i % N for i in idx], type=pa.int64()))
    got = table.__getitems__(idx)
    assert got.to_pydict() == want.to_pydict()


def test_cache_off_and_over_budget_read_from_lance(disk):
    for options in ({"cache": False}, {"cache": "auto", "cache_budget": 1}):
        t = disk.open_table("t", **options)
        t.__getitems__([3, 1])
        assert t._backend._cached is None
    t = disk.open_table("t")
    t.take_offsets([3], columns=["id"])
    assert t._backend._cached[0] == ["id"]
    t.take_offsets([4], columns=["x", "id"])
    assert t._backend._cached[0] == ["id", "x"]


def test_add_to_a_cached_disk_table_is_seen(disk):
    t = disk.open_table("t", cache=True)
    t.__getitems__([0])
    t.add({"id": [N], "x": [0.25], "s": ["new"]})
    assert len(t) == N + 1
    assert t.__getitems__([-1]).to_pydict() == {"id": [N], "x": [0.25], "s": ["new"]}


def test_bad_cache_value(disk):
    with pytest.raises(ValueError, match="cache"):
        disk.open_table("t", cache="sometimes")


def _to_worker(obj):
    """What multiprocessing does to send an object to a spawned worker."""
    return pickle.loads(ForkingPickler.dumps(obj))


def test_memory_table_reaches_workers_through_shared_memory(mem_db):
    t = mem_db.create_table("t", sample_table(10_000))
    blob = bytes(ForkingPickler.dumps(t))
    assert len(blob) < 2_000, "the rows travel as shared memory, not in the pickle"
    back = pickle.loads(blob)
    assert back.__getitems__([7, -1]).column("id").to_pylist() == [7, 9_999]
    assert back.to_arrow().equals(sample_table(10_000))


def test_shared_memory_follows_appends(mem_db):
    t = mem_db.create_table("t", sample_table(5))
    first = _to_worker(t)
    t.add(sample_table(3))
    second = _to_worker(t)
    assert len(first) == 5 and len(second) == 8
    assert second.__getitems__([-1]).column("s").to_pylist() == ["row2"]


def test_disk_table_cache_reaches_workers(disk):
    t = disk.open_table("t")
    back = _to_worker(t)
    assert back.uri == t.uri
    assert back._backend._cached is not None, "the worker maps the parent's cache"
    idx = list(np.random.default_rng(0).integers(0, N, 50))
    assert back.__getitems__(idx).to_pydict() == t.__getitems__(idx).to_pydict()


def test_uncached_disk_table_travels_as_location(disk):
    t = disk.open_table("t", cache=False)
    blob = bytes(ForkingPickler.dumps(t))
    assert len(blob) < 1_000
    assert pickle.loads(blob).__getitems__([2]).column("id").to_pylist() == [2]


def test_worker_tensor_from_shared_table(mem_db):
    data = pa.table({f"f{i}": np.arange(100, dtype=np.float32) + i for i in range(4)})
    back = _to_worker(mem_db.create_table("f", data))
    batch = back.__getitems__([5, 0])
    assert tbl_to_tensor(batch).tolist() == [[5.0, 0.0], [6.0, 1.0], [7.0, 2.0], [8.0, 3.0]]
