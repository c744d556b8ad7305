"""Costs grow with the work: making a Loader, a Permutation or a StreamingDataset over a table
of many columns takes work in proportion to the columns named, not their square.

The checks run in a child process under a time limit that linear work meets by two orders of
magnitude (about a second for 20,000 columns) and work growing with the square of the
columns misses by as much (the Loader once looked each column up in a list of all of them:
minutes at this width). Each also checks what it built is right."""

from __future__ import annotations

import subprocess
import sys

import pytest

WIDE = r"""
import numpy as np, pyarrow as pa, lancetorch
from lancetorch.loader import Loader
from lancetorch.permutation import Permutation
from lancetorch.streaming import StreamingDataset

k = 20_000
names = [f"c{i}" for i in range(k)]
t = lancetorch.connect("memory://").create_table(
    "w", pa.table({n: np.full(4, i, dtype=np.float32) for i, n in enumerate(names)})
)
view = Permutation.identity(t).select_columns(names[::-1]).rename_columns(
    {n: n + "_x" for n in names}
)
assert view.column_names == [n + "_x" for n in names]  # each rename moves to the end
batch = next(iter(Loader(view, 4, per_column=True, shuffle=False)))
assert list(batch) == view.column_names
assert all(int(batch[f"c{i}_x"][0]) == i for i in (0, 1, k // 2, k - 1))
x = next(iter(Loader(t, 4, features=names[:3] + names[-3:])))
assert x.shape == (4, 6)
row = next(iter(StreamingDataset(t, columns=names[::-1], shuffle=False)))
assert list(row) == names[::-1] and row["c7"] == 7.0
print("ok")
"""


@pytest.mark.slow
def test_twenty_thousand_columns_in_linear_time():
    out = subprocess.run([sys.executable, "-c", WIDE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"
