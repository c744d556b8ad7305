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
    return [e["rows_per_s"] for e in rank_epochs(uri, options, batch_size, "bench", {})]


def rank_epochs(
    uri: str, options: dict | None, batch_size: int, name: str, extra: dict
) -> list[dict[str, float]]:
    """Two epochs read by two ranks under torchrun: per epoch the rows/s of the node (rows of
    both / the slower rank) and the bytes and requests both ranks read from the store."""
    with tempfile.TemporaryDirectory() as out:
        command = [
            str(Path(sys.executable).parent / "torchrun"),
            "--standalone",
            "--nproc_per_node=2",
            str(HERE / "_rank_epochs.py"),
            uri,
            name,
            out,
            str(batch_size),
            json.dumps(options or {}),
            json.dumps(extra),
        ]
        env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
        subprocess.run(command, env=env, check=True, capture_output=True, timeout=1800)
        ranks = [json.loads((Path(out) / f"rank{r}.json").read_text()) for r in range(2)]
    return [
        {
            "rows_per_s": sum(r["rows"][e] for r in ranks) / max(r["seconds"][e] for r in ranks),
            "store_bytes": sum(r["store_bytes"][e] for r in ranks),
            "store_requests": sum(r["store_requests"][e] for r in ranks),
            "tier_bytes": sum(r.get("tier_bytes", [0, 0])[e] for r in ranks),
        }
        for e in range(2)
    ]


# -- beyond the cache budget -------------------------------------------------------------------


def make_wide(rows: int, dim: int = 128) -> pa.Table:
    """``rows`` rows of a ``dim``-float32 embedding and an int64 label."""
    rng = np.random.default_rng(0)
    values = pa.array(rng.random(rows * dim, dtype=np.float32))
    return pa.table(
        {
            "vec": pa.FixedSizeListArray.from_arrays(values, dim),
            "label": rng.integers(0, 10, rows),
        }
    )


def loader_epochs(table: lancetorch.Table, batch_size: int) -> list[dict[str, float]]:
    """Two shuffled epochs of one rank: rows/s (the first including the cache fill, where the
    table is cached) and what each read from the store and from the node tier."""
    start = time.perf_counter()
    loader = Loader(table, batch_size, seed=0, world_size=1, per_column=True)
    out = []
    for _ in range(2):
        before, rows = loader.stats(), 0
        for batch in loader:
            rows += len(batch["label"])
        after = loader.stats()
        out.append(
            {
                "rows_per_s": rows / (time.perf_counter() - start),
                # (0 where a lancetorch before these counts is measured)
                "store_bytes": after.get("store_bytes", 0)
                - (before.get("store_bytes", 0) if out else 0),
                "store_requests": after.get("store_requests", 0)
                - (before.get("store_requests", 0) if out else 0),
                "tier_bytes": after.get("tier_bytes", 0)
                - (before.get("tier_bytes", 0) if out else 0),
            }
        )
        start = time.perf_counter()
    return out


def beyond_budget(
    sources: dict[str, tuple[str, dict | None]], rows: int, batch_size: int
) -> dict[str, dict[str, dict[str, float]]]:
    """Per source, a table about 3x ``cache_budget`` read by windows (1 and 2 ranks) and the
    same table cached, epochs 1 and 2: rows/s, and the bytes and requests from the store."""
    data = make_wide(rows)
    # Warm-up, not timed: first-use costs (imports, Lance, the thread pools).
    loader_epochs(lancetorch.connect("memory://").create_table("w", make_wide(20_000)), 1024)
    selected = data.nbytes
    budget = selected // 3
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, (uri, options) in sources.items():
        print(f"beyond the budget: {name}", file=sys.stderr, flush=True)
        db = lancetorch.connect(uri, storage_options=options)
        db.create_table("wide", data, mode="overwrite")
        # Each way its own node tier, empty when it starts: its epoch 1 reads the store.
        tiers = Path(os.environ["LANCETORCH_CACHE_DIR"]) / name.replace(" ", "_")
        runs = {
            "cached": loader_epochs(
                db.open_table("wide", cache_dir=str(tiers / "cached")), batch_size
            ),
            "windows": loader_epochs(
                db.open_table("wide", cache_budget=budget, cache_dir=str(tiers / "windows")),
                batch_size,
            ),
            "windows, 2 ranks": rank_epochs(
                uri,
                options,
                batch_size,
                "wide",
                {
                    "open": {"cache_budget": budget, "cache_dir": str(tiers / "ranks")},
                    "loader": {"per_column": True},
                },
            ),
        }
        base = runs["cached"][1]["rows_per_s"]  # the cached rate: epoch 2, from memory
        results[name] = {
            f"{way}, epoch {e + 1}": {
                **epoch,
                "ratio_to_cached": epoch["rows_per_s"] / base,
                "store_bytes_per_table": epoch["store_bytes"] / selected,
                "tier_bytes_per_table": epoch["tier_bytes"] / selected,
            }
            for way, epochs_of in runs.items()
            for e, epoch in enumerate(epochs_of)
        }
    return results


class LatencyProxy:
    """``s3_latency_proxy.py`` (the shared tools') in front of an S3 endpoint."""

    def __init__(self, upstream: str, latency_ms: int) -> None:
        self.upstream, self.latency_ms = upstream, latency_ms
        self.process: subprocess.Popen | None = None
        self.endpoint = ""

    def __enter__(self) -> LatencyProxy:
        script = HERE.parent.parent / "shared" / "tools" / "s3_latency_proxy.py"
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(script),
                "--upstream",
                self.upstream.removeprefix("http://"),
                "--latency-ms",
                str(self.latency_ms),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None  # piped
        line = self.process.stdout.readline()
        self.endpoint = line.strip().rsplit(" ", 1)[-1]
        if not self.endpoint.startswith("http://"):
            raise RuntimeError(f"the latency proxy did not start: {line!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--take-batches", type=int, default=20)
    parser.add_argument("--out", default=str(HERE / "results" / "bench_scale_out.json"))
    parser.add_argument(
        "--beyond-rows",
        type=int,
        default=1_000_000,
        help="rows (128 float32 + label) of the table read beyond the cache budget; 0: skip",
    )
    parser.add_argument(
        "--beyond-only", action="store_true", help="run the beyond-the-budget group alone"
    )
    parser.add_argument(
        "--latency-ms", type=int, default=30, help="the latency proxy's delay per response"
    )
    args = parser.parse_args()
    if args.beyond_only:
        out = Path(args.out).with_name("bench_scale_out_beyond.json")
        report_beyond(beyond_group(args), args, out)
        return

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
    if args.beyond_rows:
        out = Path(args.out).with_name("bench_scale_out_beyond.json")
        report_beyond(beyond_group(args), args, out)


def beyond_group(args: argparse.Namespace) -> dict:
    """The beyond-the-budget group on local disk, SeaweedFS, and SeaweedFS behind the latency
    proxy (where its script is found)."""
    with tempfile.TemporaryDirectory() as tmp:
        # The node tier in this run's folder (ranks started from here inherit it): nothing
        # from an earlier run is found there, and nothing is left behind.
        os.environ["LANCETORCH_CACHE_DIR"] = str(Path(tmp) / "tier")
        sources: dict[str, tuple[str, dict | None]] = {"local disk": (str(Path(tmp) / "db"), None)}
        server = SeaweedServer(Path(tmp) / "seaweed")
        server.start()
        try:
            server.create_bucket("beyond")
            sources["SeaweedFS"] = ("s3://beyond/db", server.options)
            proxy_script = HERE.parent.parent / "shared" / "tools" / "s3_latency_proxy.py"
            if not proxy_script.exists():
                return beyond_budget(sources, args.beyond_rows, args.batch_size)
            with LatencyProxy(server.endpoint, args.latency_ms) as proxy:
                slow = {**server.options, "aws_endpoint": proxy.endpoint}
                sources[f"SeaweedFS + {args.latency_ms} ms"] = ("s3://beyond/slow", slow)
                return beyond_budget(sources, args.beyond_rows, args.batch_size)
        finally:
            server.stop()


def report_beyond(results: dict, args: argparse.Namespace, out: Path) -> None:
    print(
        f"\n{args.beyond_rows:,} rows x 128 float32 + int64 label, cache_budget 1/3 of the "
        f"columns, batch {args.batch_size}, shuffled; ratios to the same source cached"
    )
    print(
        f"{'source':<22}{'way, epoch':<26}{'rows/s':>12}{'vs cached':>11}"
        f"{'store/table':>13}{'requests':>10}{'tier/table':>12}"
    )
    for name, ways in results.items():
        for way, e in ways.items():
            print(
                f"{name:<22}{way:<26}{e['rows_per_s']:>12,.0f}{e['ratio_to_cached']:>10.3f}x"
                f"{e['store_bytes_per_table']:>12.3f}x{e['store_requests']:>10,}"
                f"{e['tier_bytes_per_table']:>11.3f}x"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "rows": args.beyond_rows,
                "batch_size": args.batch_size,
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "beyond_budget": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
