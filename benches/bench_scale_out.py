"""Scale-out benchmark: the same shuffled epochs from a local directory, from S3-compatible
object storage, and on two ranks under ``torchrun``, as ratios to the local-disk run.

One command, one run (``make bench-scale``):

* local disk and object storage: ``--rows`` rows (1M) of 16 float32 features and an int64
  label, written once to a directory and once to a SeaweedFS server started here on
  127.0.0.1 (the one the tests use). Each is opened fresh and read by
  ``lancetorch.loader.Loader`` (batch ``--batch-size``, shuffled) for two epochs: the first
  includes reading the columns into the cache, the second runs from memory. A per-batch
  random take through Lance (``cache=False``) is timed for a bounded number of batches beside
  them;
* two ranks: ``torchrun --standalone --nproc_per_node=2`` runs ``_rank_epochs.py`` on each
  source; every rank reads its half of each epoch, and the rows of both ranks over the
  slower rank's time give the rows/s.

Every figure is rows/s, and its ratio to the same phase of the local-disk run. Results go to
benches/results/bench_scale_out.json.

    python benches/bench_scale_out.py                  # what `make bench-scale` runs
    python benches/bench_scale_out.py --rows 100000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lancetorch
import numpy as np
import pyarrow as pa
from lancetorch.loader import Loader

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))
from _seaweed import SeaweedServer  # noqa: E402  (the tests' S3 server)


def make_table(rows: int) -> pa.Table:
    rng = np.random.default_rng(0)
    features = rng.random((rows, 16), dtype=np.float32)
    columns = {f"f{i}": features[:, i] for i in range(16)}
    columns["label"] = rng.integers(0, 10, rows)
    return pa.table(columns)


def epochs(table: lancetorch.Table, batch_size: int) -> list[float]:
    """Rows/s of two shuffled epochs of ``Loader`` (the first reads the cache)."""
    loader = Loader(table, batch_size, seed=0, world_size=1)
    out = []
    for _ in range(2):
        start, rows = time.perf_counter(), 0
        for batch in loader:
            rows += batch.shape[1]
        out.append(rows / (time.perf_counter() - start))
    return out


def random_takes(table: lancetorch.Table, batch_size: int, batches: int) -> float:
    """Rows/s of per-batch random takes through Lance (no cache)."""
    rng = np.random.default_rng(1)
    n = len(table)
    start = time.perf_counter()
    for _ in range(batches):
        table.__getitems__(rng.integers(0, n, batch_size))
    return batches * batch_size / (time.perf_counter() - start)


def two_ranks(uri: str, options: dict | None, batch_size: int) -> list[float]:
    """Rows/s of two epochs read by two ranks together (rows of both / the slower rank)."""
    with tempfile.TemporaryDirectory() as out:
        command = [
            str(Path(sys.executable).parent / "torchrun"),
            "--standalone",
            "--nproc_per_node=2",
            str(HERE / "_rank_epochs.py"),
            uri,
            "bench",
            out,
            str(batch_size),
            json.dumps(options or {}),
        ]
        env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
        subprocess.run(command, env=env, check=True, capture_output=True, timeout=1800)
        ranks = [json.loads((Path(out) / f"rank{r}.json").read_text()) for r in range(2)]
    return [
        sum(r["rows"][e] for r in ranks) / max(r["seconds"][e] for r in ranks) for e in range(2)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--take-batches", type=int, default=20)
    parser.add_argument("--out", default=str(HERE / "results" / "bench_scale_out.json"))
    args = parser.parse_args()

    data = make_table(args.rows)
    # Warm-up, not timed: imports and first-use costs (tqdm, Lance, the thread pool).
    epochs(lancetorch.connect("memory://").create_table("w", make_table(70_000)), args.batch_size)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        server = SeaweedServer(Path(tmp) / "seaweed")
        server.start()
        try:
            server.create_bucket("bench")
            sources = {
                "local disk": (str(Path(tmp) / "db"), None),
                "object storage": ("s3://bench/db", server.options),
            }
            for name, (uri, options) in sources.items():
                db = lancetorch.connect(uri, storage_options=options)
                db.create_table("bench", data, mode="overwrite")
                first, second = epochs(db.open_table("bench"), args.batch_size)
                take = random_takes(
                    db.open_table("bench", cache=False), args.batch_size, args.take_batches
                )
                rank_first, rank_second = two_ranks(uri, options, args.batch_size)
                results[name] = {
                    "first epoch (reads the cache)": first,
                    "second epoch (from memory)": second,
                    "per-batch random take, no cache": take,
                    "2 ranks, first epoch": rank_first,
                    "2 ranks, second epoch": rank_second,
                }
        finally:
            server.stop()

    base = results["local disk"]
    print(f"\n{args.rows:,} rows x 16 float32 + int64 label, batch {args.batch_size}, shuffled")
    print(f"{'source':<16}{'phase':<34}{'rows/s':>14}{'vs local disk':>16}")
    for name, phases in results.items():
        for phase, value in phases.items():
            print(f"{name:<16}{phase:<34}{value:>14,.0f}{value / base[phase]:>15.2f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "rows": args.rows,
                "batch_size": args.batch_size,
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "rows_per_s": results,
                "ratio_to_local_disk": {
                    n: {p: v / base[p] for p, v in phases.items()} for n, phases in results.items()
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
