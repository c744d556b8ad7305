"""Worker memory: what each DataLoader worker holds of a memory table it reads.

Two spawned workers read a shuffled epoch of a memory table (1M rows x 16 float32 + int64
label by default). Each batch carries the worker's memory counters from /proc/self/status:
RssAnon (private memory: a copy of the table would show here), RssShmem (shared-memory pages
it has touched: the table's Arrow IPC file, the same pages in every worker) and VmRSS. A worker
that imported torch and lancetorch but reads no table gives the baseline.

    python benches/bench_worker_memory.py [--rows N]
"""

from __future__ import annotations

import argparse

import lancetorch
import numpy as np
import pyarrow as pa
from lancetorch.util import tbl_to_tensor
from torch.utils.data import DataLoader, Dataset


def memory_kb() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssShmem"):
                out[key] = int(value.split()[0])
    return out


def collate_with_memory(batch):
    return tbl_to_tensor(batch).shape[1], memory_kb()


class Nothing(Dataset):
    """The baseline: a worker with torch and lancetorch imported and no table."""

    def __len__(self) -> int:
        return 2048

    def __getitems__(self, indices):
        return len(indices)


def baseline_collate(n):
    return n, memory_kb()


def last_memory(loader: DataLoader) -> tuple[int, dict[str, int]]:
    rows, last = 0, {}
    for n, mem in loader:
        rows, last = rows + n, mem
    return rows, last


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    columns = {f"f{i}": rng.standard_normal(args.rows, dtype=np.float32) for i in range(16)}
    columns["label"] = rng.integers(0, 10, args.rows)
    data = pa.table(columns)
    table = lancetorch.connect("memory://").create_table("t", data)
    options = dict(batch_size=1024, num_workers=2, multiprocessing_context="spawn")
    base_rows, base = last_memory(DataLoader(Nothing(), collate_fn=baseline_collate, **options))
    rows, mem = last_memory(
        DataLoader(table, shuffle=True, collate_fn=collate_with_memory, **options)
    )
    assert rows == args.rows, (rows, args.rows)
    mb = 1024
    print(f"table: {args.rows:,} rows, {data.nbytes / 2**20:.1f} MiB of Arrow data")
    print(f"{'worker':<28}{'RssAnon MiB':>12}{'RssShmem MiB':>14}{'VmRSS MiB':>11}")
    print(
        f"{'baseline (no table)':<28}{base['RssAnon'] / mb:>12.1f}{base['RssShmem'] / mb:>14.1f}"
        f"{base['VmRSS'] / mb:>11.1f}"
    )
    print(
        f"{'after a shuffled epoch':<28}{mem['RssAnon'] / mb:>12.1f}{mem['RssShmem'] / mb:>14.1f}"
        f"{mem['VmRSS'] / mb:>11.1f}"
    )
    extra = (mem["RssAnon"] - base["RssAnon"]) / mb
    print(
        f"private memory per worker beyond the baseline: {extra:.1f} MiB "
        f"({extra / (data.nbytes / 2**20):.0%} of the table); the table itself is shared"
    )


if __name__ == "__main__":
    main()
