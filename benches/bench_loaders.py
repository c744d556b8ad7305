"""Loader benchmark: rows/s of one shuffled DataLoader epoch, several ways of serving the rows.

Every workload reads the same data (``--rows`` rows of 16 float32 features f0..f15 and an
int64 ``label`` in 0..9) through ``torch.utils.data.DataLoader(batch_size, shuffle=True)``
in the main process (no workers). Each is measured after one warm-up batch; workloads that
are slow (plain Python, disk) time a bounded number of batches and say so.

    python benches/bench_loaders.py                  # 1M rows, batch 1024
    python benches/bench_loaders.py --rows 50000     # a quick check

Results go to benches/results/bench_loaders.json. To add a workload, write a function that
takes the shared ``Data`` and returns a ``(DataLoader, rows_in_batch)`` pair and add it to
``WORKLOADS``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader, Dataset

import lancetorch
from lancetorch.loader import Loader as PrefetchLoader
from lancetorch.permutation import Permutation
from lancetorch.sampler import BatchSampler
from lancetorch.util import passthrough, tbl_to_tensor

N_FEATURES = 16
RESULTS = Path(__file__).resolve().parent / "results" / "bench_loaders.json"


# -- the data every workload reads -------------------------------------------------------------
@dataclass
class Data:
    features: np.ndarray  # (rows, 16) float32
    labels: np.ndarray  # (rows,) int64
    batch_size: int
    tmpdir: str  # where disk tables go; removed at the end

    @property
    def rows(self) -> int:
        return len(self.labels)

    def arrow(self) -> pa.Table:
        columns = {f"f{i}": self.features[:, i] for i in range(N_FEATURES)}
        columns["label"] = self.labels
        return pa.table(columns)


def make_data(rows: int, batch_size: int, tmpdir: str, seed: int = 0) -> Data:
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((rows, N_FEATURES), dtype=np.float32)
    labels = rng.integers(0, 10, size=rows, dtype=np.int64)
    return Data(features, labels, batch_size, tmpdir)


# -- datasets for the baselines ----------------------------------------------------------------
class RowDictDataset(Dataset):
    """What many users write today: one dict per row, batched by PyTorch's default collate."""

    def __init__(self, features: np.ndarray, labels: np.ndarray) -> None:
        self.features = features
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"features": self.features[i], "label": int(self.labels[i])}


class NumpyDataset(Dataset):
    """Rows of a row-major (rows, 17) float32 array, gathered with numpy fancy indexing."""

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = matrix

    def __len__(self) -> int:
        return len(self.matrix)

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        return torch.from_numpy(self.matrix[indices])


class ConstantDataset(Dataset):
    """The DataLoader machinery alone: every batch is the same preallocated tensor."""

    def __init__(self, rows: int, batch_size: int) -> None:
        self.rows = rows
        self.batch = torch.zeros((N_FEATURES + 1, batch_size), dtype=torch.float32)

    def __len__(self) -> int:
        return self.rows

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        return self.batch[:, : len(indices)]


def identity(batch: Any) -> Any:
    """A collate function that hands the batch through (module level, so it pickles)."""
    return batch


# -- workloads: (name, make_loader, bounded?) ---------------------------------------------------
# make_loader(data) -> (DataLoader, rows_in(batch) -> int)
Loader = tuple[Any, Callable[[Any], int]]  # anything iterable, and the rows in one batch


def plain_python(data: Data) -> Loader:
    loader = DataLoader(
        RowDictDataset(data.features, data.labels), batch_size=data.batch_size, shuffle=True
    )
    return loader, lambda b: len(b["label"])


def numpy_fancy_index(data: Data) -> Loader:
    matrix = np.concatenate([data.features, data.labels[:, None].astype(np.float32)], axis=1)
    loader = DataLoader(
        NumpyDataset(np.ascontiguousarray(matrix)),
        batch_size=data.batch_size,
        shuffle=True,
        collate_fn=identity,
    )
    return loader, lambda b: b.shape[0]


def lancetorch_memory(data: Data) -> Loader:
    table = lancetorch.connect("memory://").create_table("bench", data.arrow(), mode="overwrite")
    loader = DataLoader(table, batch_size=data.batch_size, shuffle=True, collate_fn=tbl_to_tensor)
    return loader, lambda b: b.shape[1]


def _disk_table(data: Data, **options: Any) -> lancetorch.Table:
    db = lancetorch.connect(os.path.join(data.tmpdir, "db"))
    if "bench" not in db.table_names():
        db.create_table("bench", data.arrow())
    return db.open_table("bench", **options)


def lancetorch_disk(data: Data) -> Loader:
    """The warm-up batch reads the table into memory (the cache); the epoch then runs on it."""
    table = _disk_table(data)
    loader = DataLoader(table, batch_size=data.batch_size, shuffle=True, collate_fn=tbl_to_tensor)
    return loader, lambda b: b.shape[1]


def lancetorch_disk_uncached(data: Data) -> Loader:
    """Every batch is a random take through Lance (sorted, reordered in Rust)."""
    table = _disk_table(data, cache=False)
    loader = DataLoader(table, batch_size=data.batch_size, shuffle=True, collate_fn=tbl_to_tensor)
    return loader, lambda b: b.shape[1]


def _permutation(data: Data, format: str) -> Permutation:
    table = lancetorch.connect("memory://").create_table("bench", data.arrow())
    return Permutation.identity(table).with_format(format)


def permutation_torch_col(data: Data) -> Loader:
    perm = _permutation(data, "torch_col")
    loader = DataLoader(perm, batch_size=data.batch_size, shuffle=True, collate_fn=passthrough)
    return loader, lambda b: b.shape[1]


def permutation_torch(data: Data) -> Loader:
    perm = _permutation(data, "torch")
    loader = DataLoader(perm, batch_size=data.batch_size, shuffle=True)
    return loader, lambda b: b.shape[0]


def permutation_torch_dict(data: Data) -> Loader:
    perm = _permutation(data, "torch_dict")
    loader = DataLoader(perm, batch_size=data.batch_size, shuffle=True)
    return loader, lambda b: len(b["label"])


def permutation_python(data: Data) -> Loader:
    perm = _permutation(data, "python")
    loader = DataLoader(perm, batch_size=data.batch_size, shuffle=True)
    return loader, lambda b: len(b["label"])


def lancetorch_memory_2_workers(data: Data) -> Loader:
    """Two spawned workers, each mapping the table from shared memory (start-up not timed)."""
    table = lancetorch.connect("memory://").create_table("bench", data.arrow())
    loader = DataLoader(
        table,
        batch_size=data.batch_size,
        shuffle=True,
        collate_fn=tbl_to_tensor,
        num_workers=2,
        multiprocessing_context="spawn",
        persistent_workers=True,
    )
    return loader, lambda b: b.shape[1]


def lancetorch_batch_sampler(data: Data) -> Loader:
    """Index batches from lancetorch's BatchSampler: no Python int per row."""
    table = lancetorch.connect("memory://").create_table("bench", data.arrow())
    sampler = BatchSampler(table, data.batch_size, seed=0)
    loader = DataLoader(table, batch_sampler=sampler, collate_fn=tbl_to_tensor)
    return loader, lambda b: b.shape[1]


def lancetorch_prefetch_loader(data: Data) -> Loader:
    """lancetorch's Loader: batches gathered and converted ahead on a Rust thread."""
    table = lancetorch.connect("memory://").create_table("bench", data.arrow())
    return PrefetchLoader(table, data.batch_size, seed=0), lambda b: b.shape[1]


class ReadyIndexTake:
    """The memory limit: numpy ``take`` of row-major rows with every index ready, no loader."""

    def __init__(self, matrix: np.ndarray, batch_size: int) -> None:
        self.matrix = matrix
        self.order = np.random.default_rng(0).permutation(len(matrix))
        self.batch_size = batch_size

    def __iter__(self):
        for i in range(0, len(self.order), self.batch_size):
            yield self.matrix.take(self.order[i : i + self.batch_size], axis=0)


def numpy_ready_index(data: Data) -> Loader:
    matrix = np.concatenate([data.features, data.labels[:, None].astype(np.float32)], axis=1)
    return ReadyIndexTake(np.ascontiguousarray(matrix), data.batch_size), lambda b: b.shape[0]


def dataloader_only(data: Data) -> Loader:
    loader = DataLoader(
        ConstantDataset(data.rows, data.batch_size),
        batch_size=data.batch_size,
        shuffle=True,
        collate_fn=identity,
    )
    return loader, lambda b: b.shape[1]


@dataclass
class Workload:
    name: str
    make_loader: Callable[[Data], Loader]
    bound: str | None = None  # name of the option that bounds the timed batches, if any


WORKLOADS = [
    Workload("plain python (row dicts + default collate)", plain_python, bound="max_batches"),
    Workload("numpy fancy indexing", numpy_fancy_index),
    Workload("lancetorch memory table", lancetorch_memory),
    Workload("lancetorch disk table, cached", lancetorch_disk),
    Workload("lancetorch disk table, cache=False", lancetorch_disk_uncached, bound="disk_batches"),
    Workload("Permutation torch_col + passthrough", permutation_torch_col),
    Workload("Permutation torch + default collate", permutation_torch),
    Workload("Permutation torch_dict + default collate", permutation_torch_dict),
    Workload("Permutation python + default collate", permutation_python, bound="max_batches"),
    Workload("lancetorch memory table, 2 spawn workers", lancetorch_memory_2_workers),
    Workload("lancetorch BatchSampler + DataLoader", lancetorch_batch_sampler),
    Workload("lancetorch Loader (Rust prefetch)", lancetorch_prefetch_loader),
    Workload("DataLoader machinery alone (limit)", dataloader_only),
    Workload("numpy take, ready index, no loader (limit)", numpy_ready_index),
]


# -- measuring ---------------------------------------------------------------------------------
def measure(loader: Any, rows_in: Callable[[Any], int], max_batches: int | None) -> dict:
    """Time the loader's epoch after one warm-up batch; stop after ``max_batches`` if given."""
    t0 = time.perf_counter()
    it = iter(loader)
    next(it)  # warm-up: first batch (iterator and worker set-up, first take, cache) not timed
    warmup = time.perf_counter() - t0
    batches = rows = 0
    start = time.perf_counter()
    for batch in it:
        rows += rows_in(batch)
        batches += 1
        if max_batches is not None and batches >= max_batches:
            break
    seconds = time.perf_counter() - start
    return {
        "warmup_s": warmup,
        "batches_timed": batches,
        "rows_timed": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds if seconds > 0 else float("nan"),
        "whole_epoch": max_batches is None or batches < max_batches,
    }


def run(args: argparse.Namespace) -> dict:
    results = []
    with tempfile.TemporaryDirectory(prefix="lancetorch-bench-") as tmpdir:
        data = make_data(args.rows, args.batch_size, tmpdir)
        for w in WORKLOADS:
            t0 = time.perf_counter()
            loader, rows_in = w.make_loader(data)
            setup = time.perf_counter() - t0
            bound = getattr(args, w.bound) if w.bound else None
            r = measure(loader, rows_in, bound)
            results.append({"name": w.name, "setup_s": setup, **r})
            print(f"  measured {w.name}: {r['rows_per_s']:,.0f} rows/s", file=sys.stderr)
            del loader
    base = results[0]["rows_per_s"]
    for r in results:
        r["ratio_to_plain_python"] = r["rows_per_s"] / base
    return {
        "benchmark": "shuffled DataLoader epoch, rows/s (main process, no workers)",
        "rows": args.rows,
        "columns": f"{N_FEATURES} float32 + int64 label",
        "batch_size": args.batch_size,
        "max_batches": args.max_batches,
        "disk_batches": args.disk_batches,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "pyarrow": pa.__version__,
            "numpy": np.__version__,
            "lancetorch": lancetorch.__version__,
        },
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "results": results,
    }


def print_table(report: dict) -> None:
    print(
        f"shuffled epoch over {report['rows']:,} rows x {report['columns']}, "
        f"batch {report['batch_size']}, {report['cpu_count']} CPUs"
    )
    width = max(len(r["name"]) for r in report["results"])
    print(f"{'loader':<{width}}  {'rows/s':>13}  {'vs plain':>8}  {'warm-up s':>9}  timed")
    for r in report["results"]:
        timed = "whole epoch" if r["whole_epoch"] else f"first {r['batches_timed']} batches"
        print(
            f"{r['name']:<{width}}  {r['rows_per_s']:>13,.0f}  "
            f"{r['ratio_to_plain_python']:>7.1f}x  {r['warmup_s']:>9.2f}  {timed}"
        )


def write_json(report: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(RESULTS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument(
        "--max-batches", type=int, default=100,
        help="batches timed for the plain-Python loader (default 100)",
    )
    p.add_argument(
        "--disk-batches", type=int, default=20,
        help="batches timed for the uncached disk table, whose takes go through Lance "
        "(default 20)",
    )
    args = p.parse_args()
    report = run(args)
    print_table(report)
    write_json(report)
    print("results written to benches/results/bench_loaders.json")


if __name__ == "__main__":
    main()
