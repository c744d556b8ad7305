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

Then packing, in tokens/s, into blocks of ``--length`` (default 8192) tokens:

- ``hf-flatten-collate``: the rows as Python lists, flattened in Python into one sequence
  with restarting ``position_ids`` (in the style of Hugging Face's
  ``DataCollatorWithFlattening``, written here, not imported), made tensors;
- ``pack``: ``Tokens(max_length=L, pack=True, blocks=B)`` packing the taken batches one after
  another, the tokens that do not fit carried into the next (``lancetorch._packing.Packer``,
  the Loader's carry, held in Rust, the step the Loader runs in order), with documents,
  positions and cu_seqlens;
- ``stream-pack``: ``StreamingDataset(pack_sequences=L, pack_blocks=B)``, one split, in
  table order, the same ``(B, L)`` outputs (each row then an EOS token), on the first
  ``--python-batches`` batches' worth of rows and scaled (a read batch's tokens taken as
  one array, the rows cut in numpy, each sample packed by Rust), each sample dropped once
  made, as the other ways' batches are;
- ``loader-pack``: ``Loader(..., decode={"tokens": Tokens(..., blocks=B)})``, the take and
  the packing of the whole epoch, every batch exactly ``(B, L)``;
- ``memcpy`` (the ceiling): a numpy copy of the same token bytes into a ``(B, L)`` buffer;
- ``memcpy-16B``: a numpy copy of as many bytes as packing writes (the tokens, 4 bytes each
  here, their documents, 8, and positions, 4), the ceiling of packing with its metadata.

``B`` is the rows of a batch times their mean length over ``L``, rounded down (8 at the
defaults). ``pack``, ``memcpy`` and ``memcpy-16B`` take turns ``--rounds`` times (default 3),
each the best of its rounds, so that a busy machine's noise falls on all three alike. Prints
each way's ratio to the Python collate and to the memcpy, and the padding fraction of the
Loader's packed epoch (only its last batch is padded) beside that of packing each batch on its
own (``blocks`` unset: every batch's last block is padded).

    python benches/bench_tokens.py [--rows N] [--batch-size B] [--length L] [--rounds R]
"""

from __future__ import annotations

import argparse
import time

import lancetorch
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from lancetorch.decode import Tokens
from lancetorch.loader import Loader
from lancetorch.permutation import Permutation
from lancetorch.streaming import StreamingDataset
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


def flatten_collate(features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
    """One ``(1, tokens)`` sequence of the rows, as ``DataCollatorWithFlattening`` makes it:
    the ids one after another, ``position_ids`` restarting at each row, labels -100 at each
    row's first token."""
    ids: list[int] = []
    positions: list[int] = []
    labels: list[int] = []
    for feature in features:
        row = feature["input_ids"]
        ids += row
        positions += list(range(len(row)))
        labels += [-100] + row[1:]
    return {
        "input_ids": torch.tensor([ids]),
        "position_ids": torch.tensor([positions]),
        "labels": torch.tensor([labels]),
    }


def timed(fn, rows_done: int) -> float:
    start = time.perf_counter()
    fn()
    return rows_done / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--python-batches", type=int, default=200)
    p.add_argument("--length", type=int, default=8192)
    p.add_argument("--rounds", type=int, default=3)
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
    packing(args, table, data, batches, values)


def packing(args, table, data, batches, values) -> None:
    """Packing into fixed (B, L) batches against the Python flattening collate and a memcpy
    of the same token bytes; the padding fraction."""
    n, size, length = args.rows, args.batch_size, args.length
    tokens = len(values)
    blocks = max(1, int(size * tokens / n) // length)
    spec = Tokens(max_length=length, pack=True, blocks=blocks)
    results = {}

    def hf_way() -> int:
        done = 0
        for idx in batches[: args.python_batches]:
            rows = table.__getitems__(idx).column("tokens").to_pylist()
            out = flatten_collate([{"input_ids": r} for r in rows])
            done += out["input_ids"].shape[1]
        return done

    start = time.perf_counter()
    done = hf_way()
    results["hf-flatten-collate"] = done / (time.perf_counter() - start)

    taken = [
        table.__getitems__(idx).select(["tokens"]).combine_chunks().to_batches()[0]
        for idx in batches
    ]

    def pack_way() -> None:
        # The Loader's in-order step alone, on batches taken before timing.
        from lancetorch._packing import Packer, Shard

        packer = Packer("tokens", spec, Shard(0, 0, 1, n, n, size))
        for batch in taken:
            for _ in packer.feed(batch):
                pass
        for _ in packer.finish():
            pass

    out = np.empty(blocks * length, dtype=values.dtype)
    step = blocks * length

    def memcpy_way() -> None:
        for i in range(0, tokens, step):
            part = values[i : i + step]
            np.copyto(out[: len(part)], part)

    # The bytes packing writes, not only the tokens: each token's document (int64) and
    # position (int32) too, 16 bytes a token here.
    wide = values.view(np.uint8)
    out_all = np.empty(step * 16, dtype=np.uint8)

    def memcpy_all_way() -> None:
        for i in range(0, tokens, step):
            part = wide[i * 4 : (i + step) * 4]
            for k in range(4):
                np.copyto(out_all[k * len(part) : (k + 1) * len(part)], part)

    # Taking turns, the best of each over the rounds: a busy machine's noise falls on all.
    ways = {"pack": pack_way, "memcpy": memcpy_way, "memcpy-16B": memcpy_all_way}
    best = dict.fromkeys(ways, 0.0)
    for _ in range(args.rounds):
        for name, way in ways.items():
            best[name] = max(best[name], timed(way, tokens))
    results["pack"] = best["pack"]
    taken.clear()
    part = data.slice(0, min(n, args.python_batches * size))
    part_tokens = int(pc.sum(pc.list_value_length(part.column("tokens"))).as_py())
    budget = -(-(part_tokens + len(part)) // (blocks * length)) * blocks  # room for every token
    stream = StreamingDataset(
        lancetorch.connect("memory://").create_table("part", part),
        num_splits=1,
        shuffle=False,
        columns=["tokens"],
        pack_sequences=length,
        pack_blocks=blocks,
        eos_id=-1,
        pad_id=-2,
        blocks_per_epoch=budget,
    )

    def stream_way() -> None:
        for _ in stream:
            pass

    results["stream-pack"] = timed(stream_way, part_tokens)
    read = Permutation.identity(table).select_columns(["tokens"])
    loader = Loader(read, size, seed=1, per_column=True, decode={"tokens": spec})
    cells = padding = 0
    start = time.perf_counter()
    for batch in loader:
        assert batch["tokens"].shape == (blocks, length)
        cells += batch["tokens"].numel()
    results["loader-pack"] = tokens / (time.perf_counter() - start)
    padding = cells - tokens
    # Packing each batch on its own: every batch's last block padded.
    cells_alone = sum(
        -(-int(pc.sum(pc.list_value_length(c)).as_py()) // length) * length
        for c in (table.__getitems__(idx).column("tokens") for idx in batches)
    )
    results["memcpy"], results["memcpy-16B"] = best["memcpy"], best["memcpy-16B"]
    print(
        f"packing {tokens:,} tokens into ({blocks}, {length}) batches "
        f"(batches of {size} rows, {tokens / n:.0f} tokens a row on average)"
    )
    base, limit = results["hf-flatten-collate"], results["memcpy"]
    for name, rate in results.items():
        print(
            f"  {name:<19} {rate:>14,.0f} tokens/s   {rate / base:7.1f}x python   "
            f"{rate / limit:5.2f}x memcpy"
        )
    print(
        f"  padding at L={length}: {padding / cells:.4%} of the Loader's packed epoch "
        f"({padding:,} of {cells:,}); {(cells_alone - tokens) / cells_alone:.2%} packing "
        "each batch on its own"
    )


if __name__ == "__main__":
    main()
