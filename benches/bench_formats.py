"""Output formats: rows/s of every Permutation format through a DataLoader, one run.

A memory table of N rows (default 200,000) of 16 float32 columns f0..f15 is read in one
shuffled epoch per format, as ``DataLoader(Permutation.identity(table).with_format(fmt),
batch_size=1024, shuffle=True)`` in the main process, the way the README's format table has
it: the row formats (``python``, ``torch``, ``torch_row``, ``torch_dict``) with the default
collate, which stacks their rows into tensors; the batch formats (``arrow``, ``python_col``,
``polars``, ``pandas``, ``numpy``, ``torch_col``) with ``collate_fn=passthrough``, the batch
as the format made it. Each format is timed after its first batch. Prints rows/s, what one
batch is after the collate, and each format's ratio to ``torch_col`` (the Rust take straight
to one tensor: the fastest way to tensors; ``arrow`` and ``numpy`` stop short of them).

    python benches/bench_formats.py [--rows N] [--batch-size B] [--write]

``--write`` also writes the printed table to benches/results/bench_formats.txt.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import lancetorch
import numpy as np
import pyarrow as pa
import torch
from lancetorch.permutation import Permutation
from lancetorch.util import passthrough
from torch.utils.data import DataLoader

FORMATS = [
    "arrow",
    "python",
    "python_col",
    "polars",
    "pandas",
    "numpy",
    "torch_col",
    "torch",
    "torch_row",
    "torch_dict",
]
ROW_FORMATS = {"python", "torch", "torch_row", "torch_dict"}  # the default collate stacks them
N_COLUMNS = 16
RESULTS = Path(__file__).resolve().parent / "results" / "bench_formats.txt"


def make_table(rows: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((N_COLUMNS, rows), dtype=np.float32)
    return pa.table({f"f{i}": values[i] for i in range(N_COLUMNS)})


def describe(batch: Any) -> str:
    """What one batch is, in a few words."""
    if isinstance(batch, torch.Tensor):
        return f"tensor {tuple(batch.shape)}"
    if isinstance(batch, dict):
        first = next(iter(batch.values()))
        kind = type(first).__name__
        if isinstance(first, (torch.Tensor, np.ndarray)):
            kind += f" {tuple(first.shape)} {str(first.dtype).replace('torch.', '')}"
        return f"dict of {len(batch)} {kind}"
    return type(batch).__name__


def rows_of(fmt: str, batch: Any) -> int:
    if fmt == "torch_col":
        return batch.shape[1]  # (columns, rows)
    if isinstance(batch, dict):
        return len(next(iter(batch.values())))
    return len(batch)


def rate(fmt: str, table: Any, size: int) -> tuple[float, str]:
    perm = Permutation.identity(table).with_format(fmt)
    collate = None if fmt in ROW_FORMATS else passthrough
    loader = iter(DataLoader(perm, batch_size=size, shuffle=True, collate_fn=collate))
    what = describe(next(loader))
    start, done = time.perf_counter(), 0
    for batch in loader:
        done += rows_of(fmt, batch)
    return done / (time.perf_counter() - start), what


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--write", action="store_true", help=f"also write {RESULTS.name}")
    args = p.parse_args()
    n, size = args.rows, args.batch_size
    if n <= size:
        p.error("--rows must be more than one batch: the first batch is not timed")
    torch.manual_seed(0)
    table = lancetorch.connect("memory://").create_table("t", make_table(n))
    results = {}
    for fmt in FORMATS:
        results[fmt] = rate(fmt, table, size)
        print(f"  {fmt}: {results[fmt][0]:,.0f} rows/s", flush=True)

    best = results["torch_col"][0]
    lines = [
        (
            f"{n:,} rows of {N_COLUMNS} float32 columns, shuffled, batches of {size} through a "
            "DataLoader (the default collate for row formats, passthrough for the rest)"
        ),
        f"  {'format':<11} {'collate':<11} {'rows/s':>11}   {'vs torch_col':>12}   one batch is",
    ]
    for fmt, (value, what) in results.items():
        collate = "default" if fmt in ROW_FORMATS else "passthrough"
        lines.append(f"  {fmt:<11} {collate:<11} {value:>11,.0f}   {value / best:>11.3f}x   {what}")
    print("\n".join(lines))
    if args.write:
        RESULTS.write_text("\n".join(lines) + "\n")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
