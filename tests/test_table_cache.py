"""Disk tables read through the cache and through Lance directly, and tables sent to worker
processes through shared memory."""

from __future__ import annotations

import pickle
import sys
from multiprocessing.reduction import ForkingPickler

import lancetorch
import numpy as np
import pyarrow as pa
import pytest
from conftest import sample_table
from hypothesis import given, settings
from hypothesis import strategies as st
from lancetorch.util import tbl_to_tensor

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
    t.take_offsets([3], columns=["id"]).to_arrow()
    assert t._backend._cached[0] == ["id"]
    t.take_offsets([4], columns=["x", "id"]).to_arrow()
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


def test_a_permutation_sends_workers_only_the_columns_it_reads(disk):
    """Unselected columns are never read, with workers too: the parent caches and shares
    only what the permutation reads."""
    from lancetorch.permutation import Permutation

    t = disk.open_table("t")
    perm = Permutation.identity(t).select_columns(["id"]).rename_column("id", "key")
    back = _to_worker(perm)
    assert t._backend._cached[0] == ["id"]
    assert back._base()._backend._cached[0] == ["id"], "the worker maps the parent's cache"
    assert back[0:3] == perm[0:3] == [{"key": 0}, {"key": 1}, {"key": 2}]
    # A plain table sent afterwards still gets every column, the ones cached before included.
    assert _to_worker(t)._backend._cached[0] == t.schema.names


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


def test_pickled_disk_table_keeps_its_version(disk):
    t = disk.open_table("t", cache=False)
    blob = pickle.dumps(t)
    t.add(sample_table(5))
    assert len(pickle.loads(blob)) == N, "offsets keep meaning the rows they meant"
    assert len(pickle.loads(pickle.dumps(t))) == N + 5


def test_workers_do_not_each_cache_what_the_parent_could_not(disk):
    t = disk.open_table("t", cache="auto", cache_budget=1)
    back = _to_worker(t)
    assert back._backend.cache is False
    assert back.__getitems__([1]).column("id").to_pylist() == [1]


def _shared_files():
    import glob

    return set(glob.glob("/dev/shm/lancetorch-*.arrow"))


def test_shared_files_are_replaced_and_removed(mem_db):
    import gc

    before = _shared_files()
    t = mem_db.create_table("t", sample_table(5))
    _to_worker(t)
    first = _shared_files() - before
    assert len(first) == 1
    t.add(sample_table(2))
    _to_worker(t)
    second = _shared_files() - before
    assert len(second) == 1 and second != first, "the old copy goes when the rows change"
    mem_db.drop_table("t")
    del t
    gc.collect()
    assert _shared_files() - before == set()


FORK_SCRIPT = """
import os, sys, warnings
import pyarrow as pa
import lancetorch
t = lancetorch.connect("memory://").create_table("t", pa.table({"a": [1, 2, 3]}))
path = t._backend.shared_file()
pid = os.fork()
if pid == 0:
    sys.exit(0)  # a normal exit: exit hooks run in the child
os.waitpid(pid, 0)
print(os.path.exists(path))
"""


def test_a_forked_child_leaves_the_parents_shared_file():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


KILLED_SCRIPT = """
import os, signal
import pyarrow as pa
import lancetorch
t = lancetorch.connect("memory://").create_table("t", pa.table({"a": list(range(1000))}))
print(t._backend.shared_file(), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/dev/shm")
def test_a_killed_process_leaves_no_shared_file():
    """A job killed outright (out of memory, a scheduler's time limit) runs no exit hooks:
    multiprocessing's resource tracker removes its file in /dev/shm."""
    import os
    import subprocess
    import time

    out = subprocess.run(
        [sys.executable, "-c", KILLED_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == -9, out.stderr
    path = out.stdout.strip()
    assert path.startswith("/dev/shm/lancetorch-"), path
    deadline = time.monotonic() + 30
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(path)


def test_files_of_dead_processes_are_swept(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys

    from lancetorch import _shared as table_module

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = tmp_path / f"lancetorch-{int(dead.stdout)}-{'0' * 32}.arrow"
    stale.write_bytes(b"x")
    mine = tmp_path / f"lancetorch-{os.getpid()}-{'1' * 32}.arrow"
    mine.write_bytes(b"x")
    # A dead process's file of another user is left alone (only root can make one here).
    others = tmp_path / f"lancetorch-{int(dead.stdout)}-{'2' * 32}.arrow"
    others.write_bytes(b"x")
    as_root = os.getuid() == 0
    if as_root:
        os.chown(others, 4242, 4242)
    monkeypatch.setattr(table_module, "_shared_dir", lambda nbytes: str(tmp_path))
    monkeypatch.setattr(table_module, "_swept", set())
    path = table_module._write_shared(lancetorch._native.ColumnStore(sample_table(3)))
    assert not stale.exists() and mine.exists()
    assert others.exists() == as_root
    assert pa.ipc.open_file(pa.memory_map(path)).read_all().equals(sample_table(3))
    table_module._unlink_if_owner(path, os.getpid())


def _dead_pid() -> int:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)


def test_a_live_owner_in_another_pid_namespace_keeps_its_copy(tmp_path, monkeypatch):
    """Containers share /dev/shm but not pids: a copy whose pid is dead *here* but whose
    owner lives (it holds the copy's lock) is kept; once that owner ends it is swept."""
    import os
    import subprocess
    import sys

    from lancetorch import _shared

    copy = tmp_path / f"lancetorch-{_dead_pid()}-{'3' * 32}.arrow"
    copy.write_bytes(b"x")
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); "
            "fcntl.flock(fd, fcntl.LOCK_SH); print('locked', flush=True); sys.stdin.read()",
            str(copy),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout.readline().strip() == "locked"
        monkeypatch.setattr(_shared, "_swept", set())
        _shared._sweep(str(tmp_path))
        assert copy.exists()
    finally:
        owner.communicate("")
    monkeypatch.setattr(_shared, "_swept", set())
    _shared._sweep(str(tmp_path))
    assert not copy.exists()
    assert os.listdir(tmp_path) == []


def test_the_sweep_survives_any_name_it_meets(tmp_path, monkeypatch):
    import os

    from lancetorch import _shared

    dead = _dead_pid()
    odd = {
        f"lancetorch-{'9' * 40}-{'0' * 32}.arrow": "file",  # a pid past any integer kill takes
        f"lancetorch-0-{'1' * 32}.arrow": "file",  # kill(0) would name a process group
        f"lancetorch-{dead}-{'2' * 32}.arrow": "dir",  # the pattern, but a directory
        f"lancetorch-{dead}-{'4' * 32}.arrow": "link",  # the pattern, but a symlink
        "lancetorch-\udcff-x.arrow": "file",  # not UTF-8
        "lancetorch--.arrow": "file",
        "lancetorch": "file",
    }
    target = tmp_path / "target"
    target.write_bytes(b"keep me")
    for name, kind in odd.items():
        path = os.path.join(os.fsencode(tmp_path), os.fsencode(name))
        if kind == "dir":
            os.mkdir(path)
        elif kind == "link":
            os.symlink(os.fsencode(target), path)
        else:
            with open(path, "wb") as f:
                f.write(b"x")
    draft = tmp_path / f".lancetorch-{dead}-{'5' * 32}.arrow.new"  # a writer died mid-way
    draft.write_bytes(b"")
    monkeypatch.setattr(_shared, "_swept", set())
    _shared._sweep(str(tmp_path))
    left = set(os.listdir(tmp_path))
    assert left == {*odd, "target"} and target.read_bytes() == b"keep me"


def test_shared_files_are_owner_only(mem_db):
    import os
    import stat

    t = mem_db.create_table("t", sample_table(5))
    path = t._backend.shared_file()
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o600, oct(mode)


def test_progress_bar_only_where_someone_sees_it(monkeypatch):
    import io

    from lancetorch._lance_reads import _Count, _progress

    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    counter = _progress(10, "reading t")
    assert isinstance(counter, _Count)
    with counter as c:
        c.update(4)
        c.update(6)
    assert c.n == 10

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    with _progress(10, "reading t") as bar:
        bar.update(10)
    assert type(bar).__module__.startswith("tqdm") and bar.n == 10


def _wide(start: int, n: int, nulls: bool) -> pa.Table:
    r = np.arange(start, start + n)
    return pa.table(
        {
            "id": pa.array(r, pa.int64()),
            "f": pa.array(r * 0.5, pa.float32(), mask=(r % 7 == 0) if nulls else None),
            "h": pa.array(r % 65_000, pa.uint16()),
            "s": pa.array([f"r{i}" for i in r], pa.string()),
        }
    )


@pytest.mark.parametrize("strings", [True, False], ids=["with-strings", "numbers-only"])
@pytest.mark.parametrize("nulls", [False, True], ids=["no-nulls", "nulls-in-a-later-fragment"])
def test_a_wide_cached_table_serves_the_dataset_rows(tmp_path, nulls, strings):
    """Scanned into the row-major block batch by batch (a column with nulls in a later
    fragment is given back to Arrow); takes, exports and workers all see the dataset's rows.
    Numbers only, the scan goes at Lance's own batch size: many small chunks."""
    db = lancetorch.connect(tmp_path)
    parts = [_wide(0, 40_000, False), _wide(40_000, 30_000, nulls), _wide(70_000, 5, False)]
    if not strings:
        parts = [p.drop_columns(["s"]) for p in parts]
    t = db.create_table("w", parts[0])
    for part in parts[1:]:
        t.add(part)
    want = pa.concat_tables(parts)
    t = db.open_table("w", cache=True, cache_dir=False)  # the row-major fill (no node tier)
    idx = np.random.default_rng(5).integers(-len(want), len(want), 3000)
    got = t.__getitems__(idx)
    assert got.equals(want.take(pa.array(np.where(idx < 0, idx + len(want), idx))))
    cached = t._backend._cached[1]
    # Every fixed-width column is in the block, but for one with nulls.
    assert cached.block_columns == ([0, 2] if nulls else [0, 1, 2])
    assert pa.Table.from_batches(cached.batches()).equals(want)
    back = _to_worker(t)
    assert back.__getitems__(idx[:100]).to_pydict() == t.__getitems__(idx[:100]).to_pydict()


_CORRUPT = """
import glob, os, sys
import numpy as np, pyarrow as pa, lancetorch
from lancetorch._objectstore import StorageReadError
d = sys.argv[1]
db = lancetorch.connect(d)
db.create_table("t", pa.table({"x": np.arange(100_000), "s": [f"row {i}" for i in range(100_000)]}))
path = glob.glob(f"{d}/t.lance/data/*")[0]
size = os.path.getsize(path)
with open(path, "r+b") as f:  # the middle third of the data file overwritten
    f.seek(size // 3)
    f.write(b"\\xff" * (size // 3))
for cache in (False, True):
    table = db.open_table("t", cache=cache)
    try:
        table.__getitems__(list(range(0, 100_000, 97)))
        print("read")
    except StorageReadError as e:
        print("refused", e)
"""


def test_an_overwritten_data_file_is_a_named_read_error(tmp_path):
    """Bytes overwritten in a Lance data file: a take through Lance and the scan into the
    cache both raise StorageReadError naming the table and what was read (Lance's decoder
    panics or reports corruption underneath; its panic text still reaches stderr)."""
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", _CORRUPT, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert len(lines) == 2, out.stdout
    for line in lines:
        assert line.startswith("refused reading table 't'"), line
    assert "row offset" in lines[0] and "sequential scan" in lines[1]
