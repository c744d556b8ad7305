"""Loader benchmark: rows/s and peak resident memory of one epoch, many ways of serving rows.

One command, one run (``make bench`` runs it with ``--scaling``). Every workload runs in a
process of its own (this script again, with ``--workload KEY``), so the process's peak resident
memory is the workload's. The workloads, grouped as the printed table groups them:

* shuffled: ``--rows`` rows (1M) of 16 float32 features f0..f15 and an int64 ``label`` in
  0..9, one shuffled epoch through ``torch.utils.data.DataLoader(batch_size, shuffle=True)`` in
  the main process: a plain-Python loader, a numpy loader, HuggingFace ``datasets`` (torch
  format, only where installed), lancetorch memory and disk tables, Permutations, two spawned
  workers, lancetorch's BatchSampler and Loader, and two limits: the DataLoader machinery
  alone and numpy ``take`` with every index ready;
* sequential: the same table read in order (``shuffle=False``), beside ``lance.torch``'s
  LanceDataset and pylance's own sequential scan;
* beyond the cache budget: the same table on disk opened with ``cache_budget=1`` byte, so the
  cache is refused: lancetorch's clumped BatchSampler (runs of 4096 neighbouring rows) beside
  a per-batch random take through Lance (``cache=False``);
* embeddings: ``--emb-rows`` (200K) rows of a ``fixed_size_list<float32, 768>`` column
  ``emb`` + int64 label, shuffled, to ``(rows, 768)`` tensors (through the DataLoader with a
  column collate, and through ``Loader(per_column=True)``), beside the limit: a memcpy of the
  same bytes (contiguous 1024-row slices of a row-major array into one buffer);
* scaling (``--scaling``): seconds per epoch of the lancetorch memory table (DataLoader +
  ``tbl_to_tensor``), of ``lancetorch.loader.Loader`` and of the DataLoader machinery alone
  from 1e5 to 1e7 rows.

Each workload is timed after one warm-up batch (iterator and worker start-up, the first
take); slow ones time a bounded number of batches and say so. The cached disk table's first
read (its scan into the cache) happens in set-up, timed on its own and set beside pylance's
sequential scan.

    python benches/bench_loaders.py --scaling          # what `make bench` runs
    python benches/bench_loaders.py --rows 50000 --emb-rows 20000 --scaling-sizes 10000,30000

Results go to benches/results/bench_loaders.json (every figure) and bench_loaders.png. To add
a workload, write a function that takes the ``Context`` and returns a ``(loader,
rows_in_batch)`` pair and add it to ``WORKLOADS``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lancetorch
import numpy as np
import pyarrow as pa
import torch
from lancetorch.loader import Loader as PrefetchLoader
from lancetorch.permutation import Permutation
from lancetorch.sampler import BatchSampler
from lancetorch.util import passthrough, tbl_to_tensor
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _memory  # noqa: E402  (benches/_memory.py)
from demo import RowDictDataset  # noqa: E402  (benches/demo.py)

N_FEATURES = 16
EMB_DIM = 768
CLUMP_SIZE = 4096
RESULTS = Path(__file__).resolve().parent / "results" / "bench_loaders.json"
CHART = RESULTS.with_suffix(".png")


# -- the data the workloads read -----------------------------------------------------------------
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


@dataclass
class EmbData:
    emb: np.ndarray  # (rows, 768) float32, row-major
    labels: np.ndarray  # (rows,) int64
    batch_size: int

    def arrow(self) -> pa.Table:
        flat = pa.array(self.emb.reshape(-1))  # no copy
        emb = pa.FixedSizeListArray.from_arrays(flat, EMB_DIM)
        return pa.table({"emb": emb, "label": self.labels})


def make_emb_data(rows: int, batch_size: int, seed: int = 0) -> EmbData:
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((rows, EMB_DIM), dtype=np.float32)
    labels = rng.integers(0, 10, size=rows, dtype=np.int64)
    return EmbData(emb, labels, batch_size)


BYTES_PER_ROW = {"main": N_FEATURES * 4 + 8, "emb": EMB_DIM * 4 + 8}


class Skip(Exception):
    """A workload that cannot run here (a package not installed); the message says why."""


@dataclass
class Context:
    """What a workload's set-up gets: the options, and the data made on first use."""

    args: argparse.Namespace
    tmpdir: str
    _data: Data | None = None
    _emb: EmbData | None = None
    info: dict = field(default_factory=dict)  # anything the workload wants in its result

    def data(self) -> Data:
        if self._data is None:
            self._data = make_data(self.args.rows, self.args.batch_size, self.tmpdir)
        return self._data

    def emb(self) -> EmbData:
        if self._emb is None:
            self._emb = make_emb_data(self.args.emb_rows, self.args.batch_size)
        return self._emb

    def drop_data(self) -> None:
        """Forget the source arrays, so only what the loader holds stays resident: pyarrow's
        pool keeps freed memory for reuse, and is asked to give it back to the system."""
        self._data = self._emb = None
        gc.collect()
        pa.default_memory_pool().release_unused()


# -- datasets for the baselines ----------------------------------------------------------------
# RowDictDataset (one dict per row, what many users write today) comes from demo.py.


class NumpyDataset(Dataset):
    """Rows of a row-major 2-d array, gathered with numpy fancy indexing."""

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


def _row_major(data: Data) -> np.ndarray:
    matrix = np.concatenate([data.features, data.labels[:, None].astype(np.float32)], axis=1)
    return np.ascontiguousarray(matrix)


# -- workloads -----------------------------------------------------------------------------------
# make_loader(ctx) -> (loader, rows_in(batch) -> int)
Loader = tuple[Any, Callable[[Any], int]]  # anything iterable, and the rows in one batch


def plain_python(ctx: Context) -> Loader:
    data = ctx.data()
    loader = DataLoader(
        RowDictDataset(data.features, data.labels), batch_size=data.batch_size, shuffle=True
    )
    return loader, lambda b: len(b["label"])


def numpy_fancy_index(ctx: Context) -> Loader:
    data = ctx.data()
    loader = DataLoader(
        NumpyDataset(_row_major(data)),
        batch_size=data.batch_size,
        shuffle=True,
        collate_fn=identity,
    )
    return loader, lambda b: b.shape[0]


def hf_datasets(ctx: Context) -> Loader:
    """HuggingFace ``datasets`` in the torch format: dicts of tensors, its own Arrow takes."""
    try:
        import datasets
    except ImportError:
        raise Skip("HuggingFace `datasets` is not installed (pip install datasets)") from None
    data = ctx.data()
    ds = datasets.Dataset(data.arrow()).with_format("torch")
    ctx.info["datasets_version"] = datasets.__version__
    loader = DataLoader(ds, batch_size=data.batch_size, shuffle=True)
    return loader, lambda b: len(b["label"])


def _memory_table(data: Data) -> lancetorch.Table:
    return lancetorch.connect("memory://").create_table("bench", data.arrow(), mode="overwrite")


def lancetorch_memory(ctx: Context) -> Loader:
    data = ctx.data()
    table = _memory_table(data)
    loader = DataLoader(table, batch_size=data.batch_size, shuffle=True, collate_fn=tbl_to_tensor)
    return loader, lambda b: b.shape[1]


def lancetorch_memory_sequential(ctx: Context) -> Loader:
    data = ctx.data()
    table = _memory_table(data)
    loader = DataLoader(table, batch_size=data.batch_size, shuffle=False, collate_fn=tbl_to_tensor)
    return loader, lambda b: b.shape[1]


def _disk_path(tmpdir: str) -> str:
    return os.path.join(tmpdir, "db")


def _disk_table(data: Data, **options: Any) -> lancetorch.Table:
    """The shared disk table (written by the first workload that needs it; not timed)."""
    db = lancetorch.connect(_disk_path(data.tmpdir))
    if "bench" not in db.table_names():
        db.create_table("bench", data.arrow())
    return db.open_table("bench", **options)


def lancetorch_disk(ctx: Context) -> Loader:
    """The first take reads the table into memory (the cache), timed on its own as the first
    read; the epoch then runs on the cache."""
    data = ctx.data()
    table = _disk_table(data)
    t0 = time.perf_counter()
    table.__getitems__([0])
    if table._backend._cached is not None:  # else the budget refused the cache: no scan to time
        ctx.info["first_read_s"] = time.perf_counter() - t0
    loader = DataLoader(table, batch_size=data.batch_size, shuffle=True, collate_fn=tbl_to_tensor)
    return loader, lambda b: b.shape[1]


def lancetorch_disk_uncached(ctx: Context) -> Loader:
    """Every batch is a random take through Lance (sorted, reordered in Rust)."""
    data = ctx.data()
    table = _disk_table(data, cache=False)
    loader = DataLoader(table, batch_size=data.batch_size, shuffle=True, collate_fn=tbl_to_tensor)
    return loader, lambda b: b.shape[1]


def lancetorch_disk_over_budget_clumped(ctx: Context) -> Loader:
    """Cache refused (a 1-byte budget); BatchSampler's clumped order: runs of 4096 neighbours."""
    data = ctx.data()
    table = _disk_table(data, cache_budget=1)
    sampler = BatchSampler(table, data.batch_size, seed=0, clump_size=CLUMP_SIZE)
    loader = DataLoader(table, batch_sampler=sampler, collate_fn=tbl_to_tensor)
    return loader, lambda b: b.shape[1]


def lancetorch_disk_over_budget_windows(ctx: Context) -> Loader:
    """Cache refused (a 1-byte budget); lancetorch's Loader reads windows of shuffled clumps,
    the next window on a background thread."""
    data = ctx.data()
    table = _disk_table(data, cache_budget=1)
    return PrefetchLoader(table, data.batch_size, seed=0), lambda b: b.shape[1]


def lance_torch_dataset(ctx: Context) -> Loader:
    """pylance's own PyTorch dataset: an IterableDataset over a sequential scan (it has no
    shuffled epoch; ``samples=`` draws a sample, not a permutation)."""
    try:
        from lance.torch.data import LanceDataset
    except ImportError as e:
        raise Skip(f"lance.torch.data.LanceDataset is not importable ({e})") from None
    data = ctx.data()
    _disk_table(data)
    ds = LanceDataset(
        os.path.join(_disk_path(data.tmpdir), "bench.lance"),
        batch_size=data.batch_size,
        auto_detect_rank=False,
    )
    loader = DataLoader(ds, batch_size=None)  # the dataset batches; dicts of tensors
    return loader, lambda b: len(b["label"])


class LanceScan:
    """pylance's sequential scan, Arrow batches only (no tensors): the disk read reference."""

    def __init__(self, uri: str, batch_size: int) -> None:
        self.uri = uri
        self.batch_size = batch_size

    def __iter__(self):
        import lance

        yield from lance.dataset(self.uri).to_batches(batch_size=self.batch_size)


def pylance_scan(ctx: Context) -> Loader:
    data = ctx.data()
    _disk_table(data)
    scan = LanceScan(os.path.join(_disk_path(data.tmpdir), "bench.lance"), data.batch_size)
    return scan, lambda b: b.num_rows


def _permutation(data: Data, format: str) -> Permutation:
    return Permutation.identity(_memory_table(data)).with_format(format)


def permutation_torch_col(ctx: Context) -> Loader:
    data = ctx.data()
    perm = _permutation(data, "torch_col")
    loader = DataLoader(perm, batch_size=data.batch_size, shuffle=True, collate_fn=passthrough)
    return loader, lambda b: b.shape[1]


def permutation_torch(ctx: Context) -> Loader:
    data = ctx.data()
    perm = _permutation(data, "torch")
    loader = DataLoader(perm, batch_size=data.batch_size, shuffle=True)
    return loader, lambda b: b.shape[0]


def permutation_torch_dict(ctx: Context) -> Loader:
    data = ctx.data()
    perm = _permutation(data, "torch_dict")
    loader = DataLoader(perm, batch_size=data.batch_size, shuffle=True)
    return loader, lambda b: len(b["label"])


def permutation_python(ctx: Context) -> Loader:
    data = ctx.data()
    perm = _permutation(data, "python")
    loader = DataLoader(perm, batch_size=data.batch_size, shuffle=True)
    return loader, lambda b: len(b["label"])


def lancetorch_memory_2_workers(ctx: Context) -> Loader:
    """Two spawned workers, each mapping the table from shared memory (start-up not timed)."""
    data = ctx.data()
    table = _memory_table(data)
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


def lancetorch_batch_sampler(ctx: Context) -> Loader:
    """Index batches from lancetorch's BatchSampler: no Python int per row."""
    data = ctx.data()
    table = _memory_table(data)
    sampler = BatchSampler(table, data.batch_size, seed=0)
    loader = DataLoader(table, batch_sampler=sampler, collate_fn=tbl_to_tensor)
    return loader, lambda b: b.shape[1]


def lancetorch_prefetch_loader(ctx: Context) -> Loader:
    """lancetorch's Loader: batches gathered and converted ahead on a Rust thread."""
    data = ctx.data()
    return PrefetchLoader(_memory_table(data), data.batch_size, seed=0), lambda b: b.shape[1]


def lancetorch_prefetch_loader_2_threads(ctx: Context) -> Loader:
    """lancetorch's Loader with two Rust threads preparing batches (in order)."""
    data = ctx.data()
    loader = PrefetchLoader(_memory_table(data), data.batch_size, seed=0, threads=2)
    return loader, lambda b: b.shape[1]


def lancetorch_prefetch_loader_sequential(ctx: Context) -> Loader:
    data = ctx.data()
    loader = PrefetchLoader(_memory_table(data), data.batch_size, shuffle=False)
    return loader, lambda b: b.shape[1]


class ReadyIndexTake:
    """The memory limit: numpy ``take`` of row-major rows with every index ready, no loader."""

    def __init__(self, matrix: np.ndarray, batch_size: int) -> None:
        self.matrix = matrix
        self.order = np.random.default_rng(0).permutation(len(matrix))
        self.batch_size = batch_size

    def __iter__(self):
        for i in range(0, len(self.order), self.batch_size):
            yield self.matrix.take(self.order[i : i + self.batch_size], axis=0)


def numpy_ready_index(ctx: Context) -> Loader:
    data = ctx.data()
    return ReadyIndexTake(_row_major(data), data.batch_size), lambda b: b.shape[0]


def _dataloader_only(ctx: Context, shuffle: bool) -> Loader:
    data = ctx.data()
    loader = DataLoader(
        ConstantDataset(data.rows, data.batch_size),
        batch_size=data.batch_size,
        shuffle=shuffle,
        collate_fn=identity,
    )
    return loader, lambda b: b.shape[1]


def dataloader_only(ctx: Context) -> Loader:
    return _dataloader_only(ctx, shuffle=True)


def dataloader_only_sequential(ctx: Context) -> Loader:
    return _dataloader_only(ctx, shuffle=False)


# embeddings
def _find_column_to_tensor() -> Callable[[Any, str], Any] | None:
    """``lancetorch.util.column_to_tensor`` where this build has it (and it works)."""
    try:
        from lancetorch.util import column_to_tensor
    except ImportError:
        return None
    try:
        probe = pa.record_batch(
            {
                "emb": pa.FixedSizeListArray.from_arrays(
                    pa.array([1.0, 2.0, 3.0, 4.0], pa.float32()), 2
                )
            }
        )
        if tuple(column_to_tensor(probe, "emb").shape) != (2, 2):
            return None
    except Exception:  # a Python layer ahead of the built extension
        return None
    return column_to_tensor


_COLUMN_TO_TENSOR = _find_column_to_tensor()
EMB_COLLATE = (
    "lancetorch.util.column_to_tensor(batch, 'emb')"
    if _COLUMN_TO_TENSOR is not None
    else "torch.from_numpy(batch.column('emb').flatten().to_numpy().reshape(-1, 768)) "
    "(lancetorch.util.column_to_tensor not available)"
)


def emb_collate(batch: pa.RecordBatch) -> torch.Tensor:
    """The ``emb`` column of a batch as a ``(rows, 768)`` float32 tensor."""
    if _COLUMN_TO_TENSOR is not None:
        return _COLUMN_TO_TENSOR(batch, "emb")
    return torch.from_numpy(batch.column("emb").flatten().to_numpy().reshape(-1, EMB_DIM))


def emb_lancetorch(ctx: Context) -> Loader:
    emb = ctx.emb()
    table = lancetorch.connect("memory://").create_table("emb", emb.arrow())
    ctx.info["collate"] = EMB_COLLATE
    loader = DataLoader(table, batch_size=emb.batch_size, shuffle=True, collate_fn=emb_collate)

    def rows_in(b: torch.Tensor) -> int:
        assert b.shape[1] == EMB_DIM and b.dtype == torch.float32, (b.shape, b.dtype)
        return b.shape[0]

    return loader, rows_in


def emb_loader(ctx: Context) -> Loader:
    """lancetorch's Loader, one tensor per column: the ``(rows, 768)`` embedding tensor shares
    the gather's output; the next batches are gathered on a Rust thread meanwhile."""
    emb = ctx.emb()
    table = lancetorch.connect("memory://").create_table("emb", emb.arrow())
    loader = PrefetchLoader(table, emb.batch_size, seed=0, per_column=True)

    def rows_in(b: dict) -> int:
        assert b["emb"].shape[1] == EMB_DIM and b["emb"].dtype == torch.float32
        return b["emb"].shape[0]

    return loader, rows_in


def emb_numpy_fancy_index(ctx: Context) -> Loader:
    emb = ctx.emb()
    loader = DataLoader(
        NumpyDataset(emb.emb), batch_size=emb.batch_size, shuffle=True, collate_fn=identity
    )
    return loader, lambda b: b.shape[0]


class MemcpyEpoch:
    """The limit for embeddings: each batch's bytes (a contiguous 1024-row slice of the
    row-major array) copied with ``np.copyto`` into one preallocated buffer."""

    def __init__(self, emb: np.ndarray, batch_size: int) -> None:
        self.emb = emb
        self.buffer = np.empty((batch_size, emb.shape[1]), dtype=emb.dtype)

    def __iter__(self):
        n = self.buffer.shape[0]
        for i in range(0, len(self.emb), n):
            src = self.emb[i : i + n]
            dst = self.buffer[: len(src)]
            np.copyto(dst, src)
            yield dst


def emb_memcpy(ctx: Context) -> Loader:
    emb = ctx.emb()
    return MemcpyEpoch(emb.emb, emb.batch_size), lambda b: b.shape[0]


# scaling (run with --rows N by the --scaling pass)
def scale_dataloader(ctx: Context) -> Loader:
    return lancetorch_memory(ctx)


def scale_loader(ctx: Context) -> Loader:
    return lancetorch_prefetch_loader(ctx)


@dataclass
class Workload:
    key: str  # for --workload
    name: str
    make_loader: Callable[[Context], Loader]
    group: str = "shuffled"
    bound: str | None = None  # name of the option that bounds the timed batches, if any
    data: str = "main"  # "main" (rows x 16 float32 + label) or "emb"
    ref: bool = False  # the reference of its group's "vs ref" column


GROUPS = {
    "shuffled": "shuffled epoch, {rows:,} rows x 16 float32 + int64 label ({mib:.1f} MiB Arrow)",
    "sequential": "sequential epoch (shuffle=False), the same table",
    "beyond": "disk table beyond the cache budget (cache refused); vs ref: to the per-batch "
    "random Lance take",
    "emb": "embeddings, shuffled: {emb_rows:,} rows x fixed_size_list<float32, 768> + int64 "
    "label ({emb_mib:.1f} MiB Arrow); vs ref: to the memcpy limit",
}

WORKLOADS = [
    Workload(
        "plain", "plain python (row dicts + default collate)", plain_python, bound="max_batches"
    ),
    Workload("numpy", "numpy fancy indexing", numpy_fancy_index),
    Workload("hf-datasets", "HuggingFace datasets, torch format", hf_datasets, bound="max_batches"),
    Workload("memory", "lancetorch memory table", lancetorch_memory),
    Workload("disk-cached", "lancetorch disk table, cached", lancetorch_disk),
    Workload("perm-torch-col", "Permutation torch_col + passthrough", permutation_torch_col),
    Workload("perm-torch", "Permutation torch + default collate", permutation_torch),
    Workload(
        "perm-torch-dict",
        "Permutation torch_dict + default collate",
        permutation_torch_dict,
        bound="max_batches",
    ),
    Workload(
        "perm-python",
        "Permutation python + default collate",
        permutation_python,
        bound="max_batches",
    ),
    Workload("2-workers", "lancetorch memory table, 2 spawn workers", lancetorch_memory_2_workers),
    Workload("batch-sampler", "lancetorch BatchSampler + DataLoader", lancetorch_batch_sampler),
    Workload("loader", "lancetorch Loader (Rust prefetch)", lancetorch_prefetch_loader),
    Workload(
        "loader-2-threads", "lancetorch Loader, threads=2", lancetorch_prefetch_loader_2_threads
    ),
    Workload("limit-dataloader", "DataLoader machinery alone (limit)", dataloader_only),
    Workload("limit-numpy-take", "numpy take, ready index, no loader (limit)", numpy_ready_index),
    Workload(
        "seq-memory",
        "lancetorch memory table, shuffle=False",
        lancetorch_memory_sequential,
        group="sequential",
    ),
    Workload(
        "seq-loader",
        "lancetorch Loader, shuffle=False",
        lancetorch_prefetch_loader_sequential,
        group="sequential",
    ),
    Workload(
        "seq-lance-torch",
        "lance.torch LanceDataset (sequential scan)",
        lance_torch_dataset,
        group="sequential",
    ),
    Workload(
        "seq-pylance-scan",
        "pylance to_batches scan, Arrow only (reference)",
        pylance_scan,
        group="sequential",
    ),
    Workload(
        "seq-limit-dataloader",
        "DataLoader machinery alone, shuffle=False (limit)",
        dataloader_only_sequential,
        group="sequential",
    ),
    Workload(
        "disk-random",
        "lancetorch disk, cache=False, shuffle=True (random take)",
        lancetorch_disk_uncached,
        group="beyond",
        bound="disk_batches",
        ref=True,
    ),
    Workload(
        "disk-clumped",
        f"lancetorch disk, budget 1 B, BatchSampler clump {CLUMP_SIZE}",
        lancetorch_disk_over_budget_clumped,
        group="beyond",
        bound="clump_batches",
    ),
    Workload(
        "disk-windows",
        "lancetorch Loader, budget 1 B, windows of shuffled clumps",
        lancetorch_disk_over_budget_windows,
        group="beyond",
    ),
    Workload(
        "emb-memcpy",
        "emb: memcpy of the same bytes (limit)",
        emb_memcpy,
        group="emb",
        data="emb",
        ref=True,
    ),
    Workload(
        "emb-lancetorch",
        "emb: lancetorch DataLoader + column collate",
        emb_lancetorch,
        group="emb",
        data="emb",
    ),
    Workload(
        "emb-loader",
        "emb: lancetorch Loader(per_column=True)",
        emb_loader,
        group="emb",
        data="emb",
    ),
    Workload(
        "emb-numpy", "emb: numpy fancy indexing", emb_numpy_fancy_index, group="emb", data="emb"
    ),
]

SCALING = [
    Workload(
        "scale-dataloader",
        "lancetorch memory table, DataLoader + tbl_to_tensor",
        scale_dataloader,
        group="scaling",
        bound="scaling_max_batches",
    ),
    Workload(
        "scale-loader",
        "lancetorch Loader (Rust prefetch)",
        scale_loader,
        group="scaling",
        bound="scaling_max_batches",
    ),
    # The DataLoader's own cost per row grows with the table: a Python list of every row's
    # index at each epoch's start (and, in some torch releases, a second one at its end).
    Workload(
        "scale-machinery",
        "DataLoader machinery alone (limit)",
        dataloader_only,
        group="scaling",
        bound="scaling_max_batches",
    ),
]
BY_KEY = {w.key: w for w in WORKLOADS + SCALING}


# -- measuring ---------------------------------------------------------------------------------
def measure(loader: Any, rows_in: Callable[[Any], int], max_batches: int | None) -> dict:
    """Time the loader's epoch after one warm-up batch; stop after ``max_batches`` if given."""
    t0 = time.perf_counter()
    it = iter(loader)
    first = next(
        it
    )  # warm-up: first batch (iterator and worker set-up, first take, cache) not timed
    warmup = time.perf_counter() - t0
    warmup_rows = rows_in(first)
    del first
    batches = rows = 0
    start = time.perf_counter()
    for batch in it:
        rows += rows_in(batch)
        batches += 1
        if max_batches is not None and batches >= max_batches:
            break
    seconds = time.perf_counter() - start
    del it
    return {
        "warmup_s": warmup,
        "warmup_rows": warmup_rows,
        "batches_timed": batches,
        "rows_timed": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds if seconds > 0 else float("nan"),
        "whole_epoch": max_batches is None or batches < max_batches,
    }


def run_workload(args: argparse.Namespace) -> dict:
    """Set up and measure one workload in this process, with its memory figures."""
    w = BY_KEY[args.workload]
    base = _memory.rss_mib()
    ctx = Context(args, args.tmpdir)
    rows = args.emb_rows if w.data == "emb" else args.rows
    t0 = time.perf_counter()
    try:
        loader, rows_in = w.make_loader(ctx)
    except Skip as e:
        return {"skipped": str(e)}
    setup = time.perf_counter() - t0
    ctx.drop_data()
    setup_peak = _memory.hwm_mib()
    before = _memory.rss_mib()
    reset = _memory.reset_peak()
    bound = getattr(args, w.bound) if w.bound else None
    r = measure(loader, rows_in, bound)
    epoch_peak = _memory.hwm_mib() if reset else None
    after = _memory.rss_mib()
    del loader  # shuts spawned workers down, so RUSAGE_CHILDREN counts them
    gc.collect()
    out = {
        "rows": rows,
        "table_mib": rows * BYTES_PER_ROW[w.data] / _memory.MIB,
        "bytes_per_row": BYTES_PER_ROW[w.data],
        "setup_s": setup,
        **r,
        "mib_per_s": r["rows_per_s"] * BYTES_PER_ROW[w.data] / _memory.MIB,
        "base_rss_mib": base,  # after imports, before any data
        "setup_peak_mib": setup_peak,
        "rss_before_epoch_mib": before,
        "epoch_peak_mib": epoch_peak,  # VmHWM reset after set-up: warm-up batch + timed batches
        "rss_after_epoch_mib": after,
        "peak_rss_mib": _memory.self_peak_mib(),  # getrusage(RUSAGE_SELF).ru_maxrss
        **ctx.info,
    }
    if epoch_peak is not None and base is not None:
        out["epoch_peak_over_base_mib"] = epoch_peak - base
    if w.key == "2-workers":
        out["workers_peak_mib"] = _memory.children_peak_mib()
    if rows and r["rows_timed"]:
        out["seconds_per_epoch"] = r["seconds"] / r["rows_timed"] * rows  # extrapolated if bounded
    return out


def spawn_workload(
    w: Workload, args: argparse.Namespace, tmpdir: str, rows: int | None = None
) -> dict:
    """Run one workload in a fresh process of this script and read back its result."""
    result_file = os.path.join(tmpdir, f"result-{w.key}-{rows or args.rows}.json")
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--workload",
        w.key,
        "--result-file",
        result_file,
        "--tmpdir",
        tmpdir,
        "--rows",
        str(rows or args.rows),
        "--batch-size",
        str(args.batch_size),
        "--emb-rows",
        str(args.emb_rows),
        "--max-batches",
        str(args.max_batches),
        "--disk-batches",
        str(args.disk_batches),
        "--clump-batches",
        str(args.clump_batches),
    ]
    if args.scaling_max_batches is not None:
        cmd += ["--scaling-max-batches", str(args.scaling_max_batches)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not os.path.exists(result_file):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"error": f"exit status {proc.returncode}: " + " | ".join(tail), "process_s": wall}
    result = json.loads(Path(result_file).read_text())
    result["process_s"] = wall
    return result


def run(args: argparse.Namespace) -> dict:
    results, scaling = [], []
    keys = args.only.split(",") if args.only else None
    with tempfile.TemporaryDirectory(prefix="lancetorch-bench-") as tmpdir:
        for w in WORKLOADS:
            if keys is not None and w.key not in keys:
                continue
            r = spawn_workload(w, args, tmpdir)
            results.append({"key": w.key, "name": w.name, "group": w.group, "bound": w.bound, **r})
            _progress(w.name, r)
        if args.scaling:
            for rows in args.scaling_sizes:
                for w in SCALING:
                    r = spawn_workload(w, args, tmpdir, rows=rows)
                    scaling.append({"key": w.key, "name": w.name, **r, "rows": rows})
                    _progress(f"{w.name}, {rows:,} rows", r)
    _ratios(results)
    return {
        "benchmark": "one epoch per workload, rows/s and peak resident memory, "
        "each workload in its own process (main process reads, no workers unless said)",
        "rows": args.rows,
        "columns": f"{N_FEATURES} float32 + int64 label",
        "emb_rows": args.emb_rows,
        "emb_columns": f"fixed_size_list<float32, {EMB_DIM}> + int64 label",
        "emb_collate": EMB_COLLATE,
        "batch_size": args.batch_size,
        "max_batches": args.max_batches,
        "disk_batches": args.disk_batches,
        "clump_batches": args.clump_batches,
        "clump_size": CLUMP_SIZE,
        "scaling_sizes": args.scaling_sizes if args.scaling else [],
        "scaling_max_batches": args.scaling_max_batches,
        "memory_notes": {
            "peak_rss_mib": "getrusage(RUSAGE_SELF).ru_maxrss of the workload's process: "
            "imports, data generation and set-up included",
            "epoch_peak_mib": "VmHWM after the epoch, reset (/proc/self/clear_refs) after set-up "
            "and after the source arrays were dropped (and pyarrow's pool had returned the memory "
            "they freed): the peak of the warm-up and timed batches",
            "workers_peak_mib": "getrusage(RUSAGE_CHILDREN).ru_maxrss: the largest worker's peak, "
            "shared-memory pages it touched included",
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "pyarrow": pa.__version__,
            "numpy": np.__version__,
            "lancetorch": lancetorch.__version__,
            "pylance": _version("lance"),
            "datasets": _version("datasets"),
        },
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "results": results,
        "scaling": scaling,
    }


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:
        return None


def _progress(name: str, r: dict) -> None:
    if "skipped" in r:
        msg = f"skipped: {r['skipped']}"
    elif "error" in r:
        msg = f"FAILED: {r['error']}"
    else:
        msg = f"{r['rows_per_s']:,.0f} rows/s, epoch peak {_mib(r.get('epoch_peak_mib'))} MiB"
    print(f"  {name}: {msg} ({r.get('process_s', 0):.1f} s)", file=sys.stderr, flush=True)


def _ratios(results: list[dict]) -> None:
    ok = [r for r in results if "rows_per_s" in r]
    plain = next((r["rows_per_s"] for r in ok if r["key"] == "plain"), None)
    refs = {r["group"]: r["rows_per_s"] for r in ok if BY_KEY[r["key"]].ref}
    for r in ok:
        if plain and BY_KEY[r["key"]].data == "main":
            r["ratio_to_plain_python"] = r["rows_per_s"] / plain
        if r["group"] in refs:
            r["ratio_to_group_ref"] = r["rows_per_s"] / refs[r["group"]]


def _over_base(r: dict) -> float | None:
    """The epoch's peak beyond what the process held with its imports alone."""
    if r.get("epoch_peak_mib") is None or r.get("base_rss_mib") is None:
        return None
    return r["epoch_peak_mib"] - r["base_rss_mib"]


def _mib(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def print_table(report: dict) -> None:
    results = report["results"]
    print(
        f"one epoch per workload, batch {report['batch_size']}, {report['cpu_count']} CPUs, "
        f"each workload in its own process"
    )
    width = max([len(r["name"]) for r in results] + [30])
    head = (
        f"  {'loader':<{width}}  {'rows/s':>12}  {'vs plain':>8}  {'vs ref':>7}  {'peak MiB':>8}  "
        f"{'epoch MiB':>9}  {'over base':>9}  {'warm-up s':>9}  timed"
    )
    fmt = dict(
        rows=report["rows"],
        mib=report["rows"] * BYTES_PER_ROW["main"] / _memory.MIB,
        emb_rows=report["emb_rows"],
        emb_mib=report["emb_rows"] * BYTES_PER_ROW["emb"] / _memory.MIB,
    )
    notes = []
    for group, title in GROUPS.items():
        rows = [r for r in results if r["group"] == group]
        if not rows:
            continue
        print()
        print(title.format(**fmt))
        print(head)
        for r in rows:
            if "rows_per_s" not in r:
                why = r.get("skipped") or r.get("error")
                state = "skipped" if "skipped" in r else "FAILED"
                print(f"  {r['name']:<{width}}  {state:>12}  ({why})")
                continue
            timed = "whole epoch" if r["whole_epoch"] else f"first {r['batches_timed']} batches"
            plain = r.get("ratio_to_plain_python")
            ref = r.get("ratio_to_group_ref")
            print(
                f"  {r['name']:<{width}}  {r['rows_per_s']:>12,.0f}  "
                f"{'' if plain is None else f'{plain:.1f}x':>8}  "
                f"{'' if ref is None else f'{ref:.2f}x':>7}  {_mib(r['peak_rss_mib']):>8}  "
                f"{_mib(r.get('epoch_peak_mib')):>9}  {_mib(_over_base(r)):>9}  "
                f"{r['warmup_s']:>9.2f}  "
                f"{timed}"
            )
            if "workers_peak_mib" in r:
                print(
                    f"  {'':<{width}}  workers peak {r['workers_peak_mib']:,.0f} MiB "
                    "(largest worker, RUSAGE_CHILDREN; shared-memory pages included)"
                )
            if r["key"] == "emb-lancetorch":
                notes.append(f"embeddings collate: {r.get('collate')}")
            if r["key"] == "disk-cached" and "first_read_s" in r:
                seconds = r["first_read_s"]
                scan = next((x for x in results if x["key"] == "seq-pylance-scan"), {})
                versus = (
                    f", {report['rows'] / seconds / scan['rows_per_s']:.2f}x pylance's scan"
                    if scan.get("rows_per_s")
                    else ""
                )
                notes.append(
                    f"disk table, cached: first read (the first take, which scans the table "
                    f"into the cache) {seconds:.3f} s = {report['rows'] / seconds:,.0f} rows/s"
                    + versus
                )
    bases = [r["base_rss_mib"] for r in results if r.get("base_rss_mib")]
    print()
    print(
        "peak MiB: the workload process's ru_maxrss (imports, data generation and set-up "
        "included); epoch MiB: its peak during the warm-up batch and the timed batches "
        "(VmHWM reset after set-up, source arrays dropped); over base: epoch MiB less the "
        "process's resident memory after its imports, before any data"
        + (f" (about {statistics.median(bases):,.0f} MiB, mostly torch)" if bases else "")
        + "."
    )
    for n in notes:
        print(n)
    if report["scaling"]:
        print_scaling(report)


def print_scaling(report: dict) -> None:
    print()
    print(
        "scaling: seconds per shuffled epoch (after the warm-up batch), memory table, batch "
        f"{report['batch_size']}"
    )
    names = list(dict.fromkeys(r["name"] for r in report["scaling"]))
    sizes = sorted({r["rows"] for r in report["scaling"]})
    width = max(len(n) for n in names)
    print(f"  {'loader':<{width}}" + "".join(f"{s:>12,}" for s in sizes))
    extrapolated = False
    for name in names:
        cells = []
        for s in sizes:
            r = next((r for r in report["scaling"] if r["name"] == name and r["rows"] == s), None)
            if r is None or "seconds_per_epoch" not in r:
                cells.append(f"{'-':>12}")
                continue
            mark = "" if r["whole_epoch"] else "*"
            extrapolated |= not r["whole_epoch"]
            cells.append(f"{r['seconds_per_epoch']:>11.3f}{mark or ' '}")
        print(f"  {name:<{width}}" + "".join(cells))
        per_row = [
            r["seconds_per_epoch"] / r["rows"] * 1e9
            for r in report["scaling"]
            if r["name"] == name and "seconds_per_epoch" in r
        ]
        if per_row:
            print(f"  {'  ns per row':<{width}}" + "".join(f"{x:>12.1f}" for x in per_row))
    if extrapolated:
        print("  * timed on the first --scaling-max-batches batches, extrapolated to the epoch")


def write_json(report: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(RESULTS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--emb-rows", type=int, default=200_000, help="rows of the embedding table")
    p.add_argument(
        "--max-batches",
        type=int,
        default=100,
        help="batches timed for the slow Python-object loaders (plain Python, the python and "
        "torch_dict Permutation formats, HuggingFace datasets; default 100)",
    )
    p.add_argument(
        "--disk-batches",
        type=int,
        default=20,
        help="batches timed for the uncached disk table, whose takes go through Lance (default 20)",
    )
    p.add_argument(
        "--clump-batches",
        type=int,
        default=200,
        help="batches timed for the clumped read of a disk table beyond the cache budget "
        "(default 200)",
    )
    p.add_argument("--scaling", action="store_true", help="also run the 1e5..1e7-row scaling pass")
    p.add_argument(
        "--scaling-sizes",
        default="100000,300000,1000000,3000000,10000000",
        help="table sizes of the scaling pass (comma-separated rows)",
    )
    p.add_argument(
        "--scaling-max-batches",
        type=int,
        default=None,
        help="bound the timed batches of each scaling run and extrapolate (default: whole epochs)",
    )
    p.add_argument("--only", help="comma-separated workload keys to run (default: all)")
    p.add_argument("--list", action="store_true", help="list the workload keys and exit")
    p.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    # one workload in this process (what the main run spawns)
    p.add_argument("--workload", help=argparse.SUPPRESS)
    p.add_argument("--result-file", help=argparse.SUPPRESS)
    p.add_argument("--tmpdir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.list:
        for w in WORKLOADS + SCALING:
            print(f"{w.key:<22} {w.name}")
        return
    if args.workload:
        result = run_workload(args)
        Path(args.result_file).write_text(json.dumps(result))
        return
    args.scaling_sizes = [int(float(s)) for s in args.scaling_sizes.split(",")]
    report = run(args)
    print_table(report)
    write_json(report)
    shown = RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS
    print(f"\nresults written to {shown}")
    if not args.no_chart:
        try:
            import _chart

            _chart.write_chart(report, CHART)
            print(f"chart written to {os.path.relpath(CHART)}")
        except ImportError as e:
            print(f"no chart: {e} (pip install matplotlib)")


if __name__ == "__main__":
    main()
