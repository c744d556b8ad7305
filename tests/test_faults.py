"""Faults that could lose data: a writer killed in the middle of appends, and several
processes appending at once. Real processes, real signals, a real Lance dataset on disk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import lancetorch
import numpy as np
import pyarrow as pa

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
