"""Token batches: padded ``(batch, length)`` tensors of a token-list column, in one run.

A table of N rows (default 1M) of 16-512 random int32 tokens is read in shuffled batches of
256 rows, one epoch each way:

- ``python-collate``: the rows as Python lists (a Table's take, ``to_pylist``), each padded in
  Python and made a tensor, as ``DataCollatorWithPadding`` does per row;
- ``to_batch``: a Table's take, then ``to_batch(..., decode={"tokens": Tokens()})`` (the
  padding in Rust, one pass over the token buffer);
- ``loader``: ``Loader(..., per_column=True, decode={"tokens": Tokens()})``, the take and
  the padding made ahead on a background thread;
- ``numpy-gather`` (the limit): the same token bytes gathered by numpy with an index made
  before timing, no padding, no loader.

The Python collate runs ``--python-batches`` batches (default 200) and is scaled to the
epoch. Prints rows/s and each way's ratio to the Python collate and to the numpy gather.

    python benches/bench_tokens.py [--rows N] [--batch-size B]
"""

from __future__ import annotations

import argparse
import time

import lancetorch
import numpy as np
import pyarrow as pa
import torch
from lancetorch.decode import Tokens
from lancetorch.loader import Loader
from lancetorch.util import to_batch


def make_table(rows: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(16, 513, size=rows)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = rng.integers(0, 50_000, size=int(offsets[-1]), dtype=np.int32)
    tokens = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values))
    return pa.table({"tokens": tokens, "id": np.arange(rows)})


def python_collate(rows: list[list[int]]) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [0] * (width - len(r)) for r in rows])


def timed(fn, rows_done: int) -> float:
    start = time.perf_counter()
    fn()
    return rows_done / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--python-batches", type=int, default=200)
    args = p.parse_args()
    n, size = args.rows, args.batch_size
    data = make_table(n)
    table = lancetorch.connect("memory://").create_table("tokens", data)
    order = np.random.default_rng(1).permutation(n)
    batches = [order[i : i + size] for i in range(0, n, size)]
    spec = {"tokens": Tokens()}
    results = {}

    def python_way() -> None:
        for idx in batches[: args.python_batches]:
            python_collate(table.__getitems__(idx).column("tokens").to_pylist())

    done = min(args.python_batches, len(batches)) * size
    results["python-collate"] = timed(python_way, done)

    def rust_way() -> None:
        for idx in batches:
            to_batch(table.__getitems__(idx).select(["tokens"]), spec)

    results["to_batch"] = timed(rust_way, n)

    loader = Loader(table, size, seed=1, per_column=True, decode=spec)
    results["loader"] = timed(lambda: [b for b in loader], n)

    column = data.column("tokens").combine_chunks()
    offsets = column.offsets.to_numpy()
    values = column.values.to_numpy()
    index = [
        np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in idx]) for idx in batches
    ]

    def numpy_way() -> None:
        for ix in index:
            values.take(ix)

    results["numpy-gather"] = timed(numpy_way, n)
    tokens = len(values)
    print(f"{n:,} rows, {tokens:,} tokens ({tokens * 4 / 2**20:,.0f} MiB), batches of {size}")
    base, limit = results["python-collate"], results["numpy-gather"]
    for name, rate in results.items():
        print(
            f"  {name:<15} {rate:>12,.0f} rows/s   {rate / base:7.1f}x python   "
            f"{rate / limit:5.2f}x numpy gather"
        )


if __name__ == "__main__":
    main()
