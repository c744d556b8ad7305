"""The node's memory for a cached disk table read by two processes: each with its own cache
(``cache_dir=False``) against the node tier (one copy of the pieces, mapped by both), the
tier's pieces fetched by the run, then already there.

Two spawned processes open the same Lance table (``--rows`` x ``--dim`` float32 and an int64
label) with ``cache=True`` and read every row once in shuffled batches of 1024, at once. Each
samples its memory from /proc/self every 50 ms: private memory (RssAnon), its proportional
share of every page it maps (Pss: a page two processes map counts half in each), and VmHWM.
The node's memory is the peak of the two processes' Pss summed at one instant (the parent
reads both processes' /proc/<pid>/smaps_rollup together, every 50 ms); its ratio to the
table's bytes (also net of two processes that open the table and read nothing) and between
the two ways is printed, with the sum of the two processes' own peaks (which may come at
different times: a process that maps a piece first holds all of its pages until the other
maps it too) and the runs' rows/s.

    python benches/bench_node_tier.py [--rows N] [--dim D]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import tempfile
import threading
import time

import numpy as np
import pyarrow as pa


def _kib(path: str, keys: tuple[str, ...]) -> dict[str, int]:
    out = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in keys:
                out[key] = int(value.split()[0])
    return out


def _idle(uri: str, out) -> None:
    """The baseline: a process that opens the table and reads nothing."""
    import lancetorch

    lancetorch.connect(os.path.dirname(uri)).open_table("t", cache=True, cache_dir=False)
    out.put(_kib("/proc/self/smaps_rollup", ("Pss",))["Pss"])


def _read(uri: str, cache_dir: str | bool, barrier, out) -> None:
    import lancetorch

    peaks = {"RssAnon": 0, "Pss": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            now = _kib("/proc/self/status", ("RssAnon",)) | _kib(
                "/proc/self/smaps_rollup", ("Pss",)
            )
            for k in peaks:
                peaks[k] = max(peaks[k], now[k])
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    table = lancetorch.connect(os.path.dirname(uri)).open_table(
        "t", cache=True, cache_dir=cache_dir
    )
    barrier.wait()
    t0 = time.perf_counter()
    order = np.random.default_rng(os.getpid()).permutation(len(table))
    total = 0.0
    for i in range(0, len(order), 1024):
        batch = table.__getitems__(order[i : i + 1024])
        total += float(pa.compute.sum(batch.column("label")).as_py())
    seconds = time.perf_counter() - t0
    barrier.wait()  # both alive, both holding their caches: the shared pages count half each
    time.sleep(0.2)
    done.set()
    sampler.join()
    hwm = _kib("/proc/self/status", ("VmHWM",))["VmHWM"]
    out.put({**peaks, "VmHWM": hwm, "rows_s": len(order) / seconds, "sum": total})


def run(uri: str, cache_dir: str | bool) -> list[dict]:
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_read, args=(uri, cache_dir, barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    node = [0]  # KiB, the peak of the processes' Pss summed at one instant
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            now = 0
            for p in procs:
                try:
                    now += _kib(f"/proc/{p.pid}/smaps_rollup", ("Pss",)).get("Pss", 0)
                except OSError:  # not started yet, or gone
                    pass
            node[0] = max(node[0], now)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    results = [out.get(timeout=1800) for _ in procs]
    done.set()
    sampler.join()
    for p in procs:
        p.join()
    return [{**r, "node_pss": node[0]} for r in results]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=128)
    args = p.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-node-tier-")
    try:
        measure(folder, args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def measure(folder: str, args: argparse.Namespace) -> None:
    import lance

    uri = os.path.join(folder, "db", "t.lance")
    rng = np.random.default_rng(0)
    values = rng.random((args.rows, args.dim), dtype=np.float32)
    data = pa.table(
        {
            "v": pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), args.dim),
            "label": np.arange(args.rows, dtype=np.int64),
        }
    )
    table_mib = data.nbytes / 2**20
    lance.write_dataset(data, uri)
    del data, values
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    idle = ctx.Process(target=_idle, args=(uri, out))
    idle.start()
    baseline = out.get(timeout=600) / 1024
    idle.join()
    tier = os.path.join(folder, "tier")
    ways = {
        "own cache each (cache_dir=False)": False,
        "node tier, pieces fetched": tier,
        "node tier, pieces already there": tier,
    }
    node = {}
    print(f"table: {args.rows} rows x {args.dim} float32 + label = {table_mib:.0f} MiB")
    print(f"a process that opens the table and reads nothing: Pss {baseline:.0f} MiB")
    for name, cache_dir in ways.items():
        results = run(uri, cache_dir)
        pss = results[0]["node_pss"] / 1024
        own_peaks = sum(r["Pss"] for r in results) / 1024
        node[name] = pss
        print(
            f"{name}: node peak Pss {pss:.0f} MiB ({pss / table_mib:.2f}x the table; "
            f"{(pss - 2 * baseline) / table_mib:.2f}x over two idle processes; the processes' "
            f"own peaks sum to {own_peaks / table_mib:.2f}x); per process peak RssAnon "
            f"{[round(r['RssAnon'] / 1024) for r in results]} MiB, "
            f"VmHWM {[round(r['VmHWM'] / 1024) for r in results]} MiB, "
            f"{[round(r['rows_s']) for r in results]} rows/s"
        )
    own, fetched, there = node.values()
    print(
        f"node memory, node tier / own caches: {fetched / own:.2f} (pieces fetched), "
        f"{there / own:.2f} (pieces already there)"
    )


if __name__ == "__main__":
    main()
