"""Faults that could lose data: a writer killed in the middle of appends, and several
processes appending at once. Real processes, real signals, a real Lance dataset on disk."""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
import time

import lancetorch
import numpy as np
import pyarrow as pa
import pytest
import torch

APPEND = """
import sys, numpy as np, pyarrow as pa, lancetorch
table = lancetorch.connect(sys.argv[1]).open_table("t")
writer, batches = int(sys.argv[2]), int(sys.argv[3])
print("ready", flush=True)
for i in range(batches):
    table.add(pa.table({"w": np.full(1000, writer, np.int64), "i": np.full(1000, i, np.int64)}))
print("done", flush=True)
"""


def _empty(path) -> lancetorch.Table:
    schema = pa.schema([("w", pa.int64()), ("i", pa.int64())])
    return lancetorch.connect(path).create_table("t", schema=schema)


def _appends(path) -> dict[tuple[int, int], int]:
    """Rows per (writer, append) in the table as it is on disk now."""
    data = lancetorch.connect(path).open_table("t").to_arrow()
    keys = zip(data.column("w").to_pylist(), data.column("i").to_pylist())
    counts: dict[tuple[int, int], int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_a_writer_killed_mid_append_leaves_whole_appends_only(tmp_path):
    _empty(tmp_path)
    for delay in (0.05, 0.3, 0.8):
        proc = subprocess.Popen(
            [sys.executable, "-c", APPEND, str(tmp_path), "1", "500"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        proc.stdout.close()
        counts = _appends(tmp_path)
        assert all(n in (1000, 2000, 3000) for n in counts.values()), counts
    assert counts, "the writer was killed before its first append: nothing was tested"
    # Still a table: it opens, takes and appends.
    table = lancetorch.connect(tmp_path).open_table("t")
    before = len(table)
    table.add(pa.table({"w": np.full(10, 9, np.int64), "i": np.zeros(10, np.int64)}))
    assert len(lancetorch.connect(tmp_path).open_table("t")) == before + 10


def test_three_processes_appending_at_once_keep_every_row(tmp_path):
    _empty(tmp_path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", APPEND, str(tmp_path), str(w), "8"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in (1, 2, 3)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and out.split() == ["ready", "done"], err[-2000:]
    counts = _appends(tmp_path)
    assert counts == {(w, i): 1000 for w in (1, 2, 3) for i in range(8)}


# A parent process reading a memory table through two spawned DataLoader workers, which map
# the table from a shared copy. argv: the folder for shared copies, then what to do once the
# epoch runs: "kill-worker" (SIGKILL one worker, read on) or "kill-self" (SIGKILL the parent).
READER = """
import glob, os, signal, sys
import numpy as np, pyarrow as pa, torch, lancetorch
import lancetorch._shared
from lancetorch.util import tbl_to_tensor

folder, action = sys.argv[1], sys.argv[2]
lancetorch._shared._shared_dir = lambda nbytes: folder  # the copies go where the test looks
t = lancetorch.connect("memory://").create_table(
    "t", pa.table({"x": np.arange(200_000, dtype=np.float32)}))
loader = torch.utils.data.DataLoader(
    t, batch_size=64, shuffle=True, num_workers=2, multiprocessing_context="spawn",
    collate_fn=tbl_to_tensor)
batches = iter(loader)
next(batches)
print("copies", *glob.glob(os.path.join(folder, f"lancetorch-{os.getpid()}-*")), flush=True)
print("workers", *(w.pid for w in batches._workers), flush=True)
if action == "kill-self":
    os.kill(os.getpid(), signal.SIGKILL)
try:  # the DataLoader's SIGCHLD handler may raise as soon as the worker dies
    os.kill(batches._workers[0].pid, signal.SIGKILL)
    for _ in batches:
        pass
    print("read on", flush=True)
except Exception as e:
    print("raised", type(e).__name__, str(e)[:200], flush=True)
"""


def _reader(folder, action: str) -> tuple[int, list[str], list[str]]:
    """Runs READER; its exit code, what it said, and its shared copies. Its output goes to a
    file, not a pipe: workers orphaned by a killed parent would hold a pipe open. Workers
    still alive once the parent is gone are killed here (PyTorch's own may wait forever on
    a full queue with no reader)."""
    out = folder / f"{action}.out"
    with open(out, "w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", READER, str(folder), action], stdout=sink, stderr=sink
        )
        code = proc.wait(timeout=300)
    lines = out.read_text().splitlines()
    for pid in next((line.split()[1:] for line in lines if line.startswith("workers")), []):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    copies = next((line.split()[1:] for line in lines if line.startswith("copies")), [])
    said = [line for line in lines if line.startswith(("raised", "read on"))]
    return code, said, copies


def test_a_worker_killed_mid_epoch_raises_and_the_shared_copy_goes(tmp_path):
    code, said, copies = _reader(tmp_path, "kill-worker")
    # PyTorch reports the lost worker as it notices it first: its SIGCHLD handler (a
    # RuntimeError naming the signal), the broken pipe to it (ConnectionResetError, or an
    # EOFError where the pipe's end is read first), or its check of the workers while
    # waiting for a batch (a RuntimeError: "exited unexpectedly").
    assert code == 0 and said, said
    reported = ("raised RuntimeError", "raised ConnectionResetError", "raised EOFError")
    assert said[0].startswith(reported), said
    noticed = ("ConnectionResetError", "EOFError", "killed by signal", "exited unexpectedly")
    assert any(n in said[0] for n in noticed), said
    assert copies, "the table was not sent to the workers through a shared copy"
    assert not any(os.path.exists(c) for c in copies), "the parent left its shared copy"


def test_a_copy_left_by_a_killed_parent_is_removed_by_the_next_run(tmp_path):
    code, _, copies = _reader(tmp_path, "kill-self")
    assert code == -signal.SIGKILL and copies
    assert all(os.path.exists(c) for c in copies), "nothing was left behind to clean up"
    code, _, _ = _reader(tmp_path, "kill-worker")  # the next run sweeps before its own copy
    assert code == 0
    assert not any(os.path.exists(c) for c in copies)


def test_a_disk_table_replaced_under_an_open_handle_reads_its_version_or_names_it(tmp_path):
    from lancetorch import StorageReadError
    from lancetorch.loader import Loader
    from lancetorch.permutation import Permutation

    db = lancetorch.connect(tmp_path)
    db.create_table("t", pa.table({"x": np.arange(1000)}))
    old = db.open_table("t")
    assert old.__getitems__([1, 2]).column(0).to_pylist() == [1, 2]
    replace = (
        "import sys, lancetorch, pyarrow as pa; db = lancetorch.connect(sys.argv[1]); "
        "db.drop_table('t'); db.create_table('t', pa.table({'y': ['a'] * 10}))"
    )
    subprocess.run([sys.executable, "-c", replace, str(tmp_path)], check=True)
    reads = {
        "__getitems__": lambda: old.__getitems__([5, 7]).column("x").to_pylist(),
        "head": lambda: old.head(3).column("x").to_pylist(),
        "to_arrow": lambda: old.to_arrow().column("x").to_pylist()[:3],
        "loader": lambda: sorted(v for b in Loader(old, 100, shuffle=False) for v in b[0].tolist()),
        "permutation": lambda: Permutation.identity(old).with_format("arrow")[0:2]["x"].to_pylist(),
    }
    want = {
        "__getitems__": [5, 7],
        "head": [0, 1, 2],
        "to_arrow": [0, 1, 2],
        "loader": list(range(1000)),
        "permutation": [0, 1],
    }
    for name, read in reads.items():
        try:
            got = read()
        except StorageReadError as e:  # the version's files are gone: named, not garbage
            assert "'t'" in str(e), (name, e)
        else:
            assert got == want[name], name  # the version the handle holds, never the new table
    assert lancetorch.connect(tmp_path).open_table("t").schema.names == ["y"]


# -- another process changes a table while this one reads it ------------------------------------

# argv[1]: the database folder. Each makes table 't' something this process did not write.
CHANGES = {
    # Dropped and made again with other rows, to the same version number (2) and length.
    "recreate": (
        "import sys, numpy as np, pyarrow as pa, lancetorch; db = lancetorch.connect(sys.argv[1]);"
        " db.drop_table('t'); t = db.create_table('t', pa.table({'x': np.arange(5000, 5500)}));"
        " t.add(pa.table({'x': np.arange(5500, 6000)}))"
    ),
    # Compacted to version 3, and every older version (and its data files) removed.
    "compact": (
        "import sys, datetime, lance; uri = sys.argv[1] + '/t.lance';"
        " lance.dataset(uri).optimize.compact_files();"
        " lance.dataset(uri).cleanup_old_versions(older_than=datetime.timedelta(0))"
    ),
    # Rows appended: version 3.
    "append": (
        "import sys, numpy as np, pyarrow as pa, lancetorch; t = lancetorch.connect(sys.argv[1])"
        ".open_table('t'); t.add(pa.table({'x': np.arange(1000, 1100)}))"
    ),
}


def _change(folder, change: str) -> None:
    subprocess.run([sys.executable, "-c", CHANGES[change], str(folder)], check=True, timeout=120)


def _two_fragments(folder, cache: bool, interval=None) -> lancetorch.Table:
    """Table 't' of x = 0..999 at version 2, in two fragments (so that compaction merges)."""
    db = lancetorch.connect(folder, read_consistency_interval=interval)
    db.create_table("t", pa.table({"x": np.arange(500)}))
    db.open_table("t").add(pa.table({"x": np.arange(500, 1000)}))
    return db.open_table("t", cache=cache)


def _xs(loader) -> list[int]:
    batches = iter(loader)
    try:
        return sorted(int(v) for batch in batches for v in batch[0].tolist())
    finally:
        # A worker's error leaves the iterator alive in its traceback. Collected later, its
        # queues' semaphores are unlinked before its __del__ joins a worker still starting,
        # which then dies on them inside whatever test runs then. Shut it down here instead.
        getattr(batches, "_shutdown_workers", lambda: None)()


def _loader(table, context: str | None) -> torch.utils.data.DataLoader:
    from lancetorch.util import tbl_to_tensor

    workers = {} if context is None else {"num_workers": 2, "multiprocessing_context": context}
    return torch.utils.data.DataLoader(
        table, batch_size=100, shuffle=True, collate_fn=tbl_to_tensor, **workers
    )


@pytest.mark.parametrize("change", ["recreate", "compact"])
@pytest.mark.parametrize(
    "context, cache", [("spawn", False), ("spawn", True), ("fork", True)], ids=str
)
def test_workers_of_a_table_another_process_changed(tmp_path, change, context, cache):
    """DataLoader workers read the version their table had when it was sent, or fail naming
    the table, the version, what changed and what to do: never the rows of a table made
    again, never a worker that dies without a word. Workers of a cached table hold the rows
    they read (the parent's cache), so they read on after the version is gone."""
    from lancetorch import StorageReadError

    table = _two_fragments(tmp_path, cache=cache)
    loader = _loader(table, context)
    assert _xs(loader) == list(range(1000))
    _change(tmp_path, change)
    if cache:
        assert _xs(loader) == list(range(1000))  # the version sent, from the rows held
        return
    with pytest.raises(StorageReadError) as info:
        _xs(loader)
    said = str(info.value)
    assert "table 't'" in said and "version 2" in said and "Open the table again" in said
    what = "dropped and created again" if change == "recreate" else "is gone"
    assert what in said and "DataLoader worker" in said, said


@pytest.mark.parametrize("change", ["recreate", "compact"])
def test_an_unpickled_handle_never_reads_a_table_made_again(tmp_path, change):
    from lancetorch import StorageReadError

    table = _two_fragments(tmp_path, cache=False)
    sent = pickle.dumps(table)
    assert pickle.loads(sent).__getitems__([0, 999]).column("x").to_pylist() == [0, 999]
    _change(tmp_path, change)
    back = pickle.loads(sent)  # unpickling needs no Lance: the first read does, and says why
    what = {"recreate": "table 't'.*dropped and created again", "compact": "version 2 .* is gone"}
    with pytest.raises(StorageReadError, match=f"{what[change]}.*Open the table again"):
        back.__getitems__([0, 999])
    back.checkout_latest()  # asked for: the table as it is now
    first = 5000 if change == "recreate" else 0
    assert back.__getitems__([0]).column("x").to_pylist() == [first]


@pytest.mark.parametrize("context", [None, "spawn"], ids=["in-process", "spawn"])
def test_an_epoch_reads_the_version_it_started_on(tmp_path, context):
    """With read_consistency_interval=timedelta(0), a DataLoader epoch (its workers too)
    reads one version although another process appends during it; a read of the table's API
    sees the new version without moving the epochs, and after checkout_latest() the next
    epoch reads the new rows."""
    from datetime import timedelta

    table = _two_fragments(tmp_path, False, timedelta(0))
    loader = _loader(table, context)
    seen = []
    for i, batch in enumerate(loader):
        if i == 1:
            _change(tmp_path, "append")
        seen += batch[0].tolist()
    assert sorted(seen) == list(range(1000)) and len(table) == 1000
    assert table.count_rows() == 1100  # looks: the table's API reads version 3
    assert _xs(loader) == list(range(1000))  # the Dataset protocol has not moved
    table.checkout_latest()
    assert _xs(loader) == list(range(1100))


def test_loaders_and_permutations_read_the_version_they_were_made_on(tmp_path):
    from datetime import timedelta

    from lancetorch.loader import Loader
    from lancetorch.permutation import Permutation

    table = _two_fragments(tmp_path, True, timedelta(0))
    loader = Loader(table, 128, seed=0)
    perm = Permutation.identity(table).with_format("arrow")
    before = [b.num_rows for b in perm]
    _change(tmp_path, "append")
    assert table.version == 3
    assert sorted(v for b in loader for v in b[0].tolist()) == list(range(1000))
    assert len(perm) == 1000 and [b.num_rows for b in perm] == before
    assert sorted(v for b in Loader(table, 128) for v in b[0].tolist()) == list(range(1100))
    assert len(Permutation.identity(table)) == 1100


def test_a_refresh_never_mixes_the_cached_rows_of_two_versions(tmp_path):
    """A cached table that moves to a version rewritten by another process serves that
    version's rows only; a reader made before keeps the old version's, from its own cache."""
    from datetime import timedelta

    from lancetorch.permutation import Permutation

    table = _two_fragments(tmp_path, True, timedelta(0))
    old = Permutation.identity(table).with_format("arrow")
    assert table.__getitems__([3, 998]).column("x").to_pylist() == [3, 998]  # cached now
    rewrite = (
        "import sys, numpy as np, pyarrow as pa, lancetorch; lancetorch.connect(sys.argv[1])"
        ".create_table('t', pa.table({'x': np.arange(1000) + 10_000}), mode='overwrite')"
    )
    subprocess.run([sys.executable, "-c", rewrite, str(tmp_path)], check=True, timeout=120)
    assert table.version == 3
    every = list(range(1000))
    assert table.take_offsets(every).to_arrow()["x"].to_pylist() == list(range(10_000, 11_000))
    assert table.__getitems__(every).column("x").to_pylist() == every  # not moved: version 2
    table.checkout_latest()
    assert table.__getitems__(every).column("x").to_pylist() == list(range(10_000, 11_000))
    assert old[0:1000]["x"].to_pylist() == every


def test_table_api_reads_during_an_epoch_leave_the_epoch_on_its_version(tmp_path):
    """With read_consistency_interval=timedelta(0), the table's own API reads during an
    in-process epoch see another writer's version, but the Dataset protocol the DataLoader
    reads stays on the version it holds for the whole epoch; checkout_latest() between
    epochs moves it."""
    from datetime import timedelta

    import lance
    from lancetorch.loader import Loader
    from lancetorch.permutation import Permutation

    db = lancetorch.connect(tmp_path, read_consistency_interval=timedelta(0))
    table = db.create_table("t", pa.table({"a": np.arange(40)}))
    loader = torch.utils.data.DataLoader(
        table, batch_size=10, shuffle=False, collate_fn=lambda b: b.column("a").to_pylist()
    )
    seen: list[int] = []
    for i, batch in enumerate(loader):
        seen += batch
        if i == 0:
            lance.dataset(table.uri).delete("a < 10")  # another writer: version 2
        # Every read of the table's API that looks for a newer version, mid-epoch.
        assert table.count_rows() == 30 and table.version == 2
        assert table.schema.names == ["a"]
        assert table.head(1).column("a").to_pylist() == [10]
        assert table.search().to_arrow().num_rows == 30
        assert table.take_offsets([0]).to_arrow().column("a").to_pylist() == [10]
        assert table.to_arrow().num_rows == 30
        assert len(Permutation.identity(table)) == 30
        assert sum(len(b[0]) for b in Loader(table, 16)) == 30
    assert seen == list(range(40)) and len(table) == 40
    assert [v for batch in loader for v in batch] == list(range(40))  # still not moved
    table.checkout_latest()
    assert len(table) == 30
    assert [v for batch in loader for v in batch] == list(range(10, 40))


@pytest.mark.parametrize("cache", [False, True], ids=["uncached", "cached"])
def test_a_data_file_deleted_under_a_table_is_a_storage_error_on_every_path(tmp_path, cache):
    """A data file removed behind the table's back is a storage failure naming the table and
    the file on every read path, never an Arrow error nor a complaint about the SQL."""
    from lancetorch import StorageReadError
    from lancetorch.loader import Loader
    from lancetorch.permutation import Permutation

    db = lancetorch.connect(tmp_path)
    db.create_table("t", pa.table({"x": np.arange(1000)}))
    (gone,) = (tmp_path / "t.lance" / "data").iterdir()
    gone.unlink()
    reads = {
        "__getitems__": lambda t: t.__getitems__([5, 7]),
        "to_arrow": lambda t: t.to_arrow(),
        "where": lambda t: t.search().where("x > 4").to_arrow(),
        "loader": lambda t: list(Loader(t, 100, shuffle=False)),
        "permutation": lambda t: list(Permutation.identity(t)),
    }
    for name, read in reads.items():
        with pytest.raises(StorageReadError) as info:
            read(db.open_table("t", cache=cache))
        said = str(info.value)
        assert "table 't'" in said and gone.name in said, (name, said)
