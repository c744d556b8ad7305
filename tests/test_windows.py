"""Tables larger than the cache, read by windows: the read of a window's rows through Lance
(ranges and takes), each rank's share of a window, and what an epoch cost."""

from __future__ import annotations

import lance
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lancetorch import _backends

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
    backend = _backends._LanceBackend("t", str(path), None, cache=False)
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
