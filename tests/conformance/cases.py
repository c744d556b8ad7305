"""The conformance matrix: every reading path crossed with the settings that apply to it,
sampled with a fixed seed so the case list (and each case's id) is the same on every run.

``LANCETORCH_CONFORMANCE=full`` (``make conformance``) runs the large sample; the default
``pytest`` run takes a slice of it that still touches every path, storage, rank count and
decode spec.
"""

from __future__ import annotations

import itertools
import os
import random
import zlib
from dataclasses import dataclass, replace

FULL = os.environ.get("LANCETORCH_CONFORMANCE", "") == "full"

# Every output format a Permutation has (python/lancetorch/permutation/formats.py).
FORMATS = (
    "arrow",
    "python",
    "python_col",
    "numpy",
    "pandas",
    "polars",
    "torch",
    "torch_row",
    "torch_col",
    "torch_dict",
)

# Rank counts: a number, or "A>B" for a stop under A ranks and a resume under B.
RANKS = (1, 2, 3, "2>3", "3>2", "1>2")


@dataclass(frozen=True)
class Case:
    """One run of one reading path and what it is checked against.

    path: "dataloader" (a DataLoader over a Table), "perm" (a Permutation in ``fmt``, read by
    ``mode``), "sampler" (a DataLoader with a BatchSampler), "loader" (``Loader``),
    "streaming" (``StreamingDataset`` through ``StreamingDataLoader``).
    """

    path: str
    storage: str = "memory"  # memory, disk, or windows (a disk table beyond its cache budget)
    deleted: bool = False  # rows deleted from the disk table (lance) before the run
    filter: bool = False  # a SQL filter (permutation builder, or StreamingDataset's)
    workers: str = "0"  # "0", "spawn" or "fork": DataLoader worker processes (two)
    ranks: int | str = 1
    resume: bool = False  # stop at a random step, save the state, resume in fresh objects
    decode: str = "none"  # none, pad, pack, text, image
    shuffle: bool = True
    seed: int = 0
    batch_size: int = 32
    fmt: str = ""  # perm: the output format
    mode: str = ""  # perm: "dataloader", "iter" (Permutation.iter) or "for" (plain iteration)
    threads: int = 1  # loader
    per_column: bool = False  # loader
    uneven: str = "pad"  # sampler, loader, perm iter under several ranks
    drop_last: bool = False
    over: str = "table"  # loader: "table" or "perm" (a Permutation from the builder)
    split: bool = False  # perm: a random split in two, both splits read

    @property
    def id(self) -> str:
        parts = [self.path]
        if self.fmt:
            parts.append(self.fmt)
        if self.mode:
            parts.append(self.mode)
        if self.path == "loader":
            parts.append(f"over-{self.over}")
            parts.append(f"t{self.threads}")
            if self.per_column:
                parts.append("per_column")
        parts.append(self.storage + ("-deleted" if self.deleted else ""))
        if self.filter:
            parts.append("filter")
        if self.split:
            parts.append("split")
        parts.append(f"w{self.workers}")
        parts.append(f"r{self.ranks}".replace(">", "to"))
        if self.resume:
            parts.append("resume")
        if self.decode != "none":
            parts.append(self.decode)
        parts.append("shuffle" if self.shuffle else "ordered")
        if self.uneven != "pad":
            parts.append(self.uneven)
        if self.drop_last:
            parts.append("drop_last")
        parts.append(f"b{self.batch_size}")
        parts.append(f"s{self.seed}")
        return "-".join(parts)

    @property
    def rank_counts(self) -> tuple[int, int]:
        """(ranks before the stop, ranks after the resume)."""
        if isinstance(self.ranks, str):
            a, b = self.ranks.split(">")
            return int(a), int(b)
        return self.ranks, self.ranks

    def rng(self) -> random.Random:
        """A generator of this case's own, the same on every run (the resume step)."""
        return random.Random(zlib.crc32(self.id.encode()))


def _valid(case: Case) -> bool:
    """Whether a combination means something for its path."""
    a, b = case.rank_counts
    if a != b and not case.resume:
        return False  # a change of rank count happens between a stop and a resume
    if case.deleted and case.storage == "memory":
        return False
    if case.workers != "0" and (a > 1 or b > 1):
        return False  # worker cases stay few: one process group
    if case.workers != "0" and case.resume and case.path not in ("sampler", "streaming"):
        return False
    if case.drop_last and (a > 1 or b > 1):
        return False
    if case.uneven == "drop" and a == 1 and b == 1:
        return False
    if not case.shuffle and (a > 1 or b > 1 or case.resume) and case.path == "streaming":
        return False
    if case.split and (case.path != "perm" or case.mode == "iter"):
        return False
    if case.storage == "windows" and case.deleted and case.path != "loader":
        return False  # an uncached disk table elsewhere: deletes are covered on "disk"
    if case.path == "dataloader":
        return a == b == 1 and not case.resume and not case.filter
    if case.path == "perm":
        if case.mode != "iter" and (a > 1 or b > 1):
            return False
        if case.resume:
            return False  # a Permutation has no state; BatchSampler and Loader do
        if case.decode != "none" and case.fmt != "torch_dict":
            return False  # refusals of decode= with other formats are checked on their own
        if case.mode in ("iter", "for") and case.workers != "0":
            return False
        return True
    if case.path == "sampler":
        return not case.filter
    if case.path == "loader":
        if case.workers != "0":
            return False
        if case.decode != "none" and not case.per_column:
            return False
        if case.filter and case.over != "perm":
            return False
        if case.storage == "windows" and case.over == "perm" and case.filter:
            return True
        return True
    if case.path == "streaming":
        return case.decode in ("none", "pack") and case.uneven == "pad" and not case.drop_last
    return False


def _product() -> dict[str, list[Case]]:
    # "windows" is a disk table over its cache budget: the Loader reads it by windows, the
    # other paths by random takes through Lance (and a forked worker refuses it).
    storages = [("memory", False), ("disk", False), ("disk", True), ("windows", False)]
    out: dict[str, list[Case]] = {}
    common = dict(shuffle=[True, False], seed=[0, 7])

    def grid(path: str, **dims: list) -> list[Case]:
        keys = list(dims)
        cases = []
        for values in itertools.product(*(dims[k] for k in keys)):
            kw = dict(zip(keys, values))
            storage, deleted = kw.pop("store")
            case = Case(path=path, storage=storage, deleted=deleted, **kw)
            if _valid(case):
                cases.append(case)
        return cases

    out["dataloader"] = grid(
        "dataloader",
        store=storages,
        workers=["0", "spawn", "fork"],
        decode=["none", "pad", "pack", "text", "image"],
        batch_size=[32, 50],
        drop_last=[False, True],
        **common,
    )
    out["perm"] = grid(
        "perm",
        fmt=list(FORMATS),
        mode=["dataloader", "iter", "for"],
        store=storages,
        filter=[False, True],
        split=[False, True],
        workers=["0", "spawn", "fork"],
        ranks=[1, 2, 3],
        decode=["none", "pad", "text", "image"],
        batch_size=[32, 50],
        **common,
    )
    out["sampler"] = grid(
        "sampler",
        store=storages,
        workers=["0", "spawn", "fork"],
        ranks=list(RANKS),
        resume=[False, True],
        decode=["none", "pad", "pack", "text", "image"],
        uneven=["pad", "drop"],
        drop_last=[False, True],
        batch_size=[32, 50],
        **common,
    )
    out["loader"] = grid(
        "loader",
        store=storages + [("windows", True)],
        over=["table", "perm"],
        filter=[False, True],
        threads=[1, 2],
        per_column=[False, True],
        ranks=list(RANKS),
        resume=[False, True],
        decode=["none", "pad", "pack", "text", "image"],
        uneven=["pad", "drop"],
        batch_size=[32, 50],
        **common,
    )
    out["streaming"] = grid(
        "streaming",
        store=storages,
        filter=[False, True],
        workers=["0", "spawn", "fork"],
        ranks=list(RANKS),
        resume=[False, True],
        decode=["none", "pack"],
        batch_size=[12],
        **common,
    )
    return out


# How many cases of each path the full run and the slice take; worker cases are capped
# separately (each starts processes).
_FULL = {"dataloader": 60, "perm": 160, "sampler": 110, "loader": 170, "streaming": 90}
_SLICE = {"dataloader": 8, "perm": 16, "sampler": 12, "loader": 16, "streaming": 10}
_FULL_WORKERS = 56
_SLICE_WORKERS = 6


def _sample(pool: list[Case], k: int, worker_cap: int, rng: random.Random) -> list[Case]:
    """k cases, spread over every value of every dimension: each draw prefers the case
    whose values have been seen least so far."""
    seen: dict[tuple[str, object], int] = {}
    chosen: list[Case] = []
    workers = 0
    left = list(pool)
    rng.shuffle(left)
    while left and len(chosen) < k:

        def score(c: Case) -> int:
            return sum(seen.get((f, getattr(c, f)), 0) for f in _DIMS)

        best = min(left[:200], key=score)
        left.remove(best)
        if best.workers != "0":
            if workers >= worker_cap:
                continue
            workers += 1
        chosen.append(best)
        for f in _DIMS:
            seen[(f, getattr(best, f))] = seen.get((f, getattr(best, f)), 0) + 1
    return chosen


_DIMS = (
    "storage",
    "deleted",
    "filter",
    "workers",
    "ranks",
    "resume",
    "decode",
    "shuffle",
    "seed",
    "fmt",
    "mode",
    "threads",
    "per_column",
    "uneven",
    "drop_last",
    "over",
    "split",
    "batch_size",
)


def cases(full: bool = FULL) -> list[Case]:
    """The sampled matrix: the same list on every run."""
    pools = _product()
    sizes = _FULL if full else _SLICE
    cap = _FULL_WORKERS if full else _SLICE_WORKERS
    out: list[Case] = []
    for path, pool in pools.items():
        share = round(cap * sizes[path] / sum(sizes.values()))
        out += _sample(pool, sizes[path], max(share, 1), random.Random(f"{path}-{full}"))
    return out


def simplified(case: Case, seed: int | None = None) -> Case:
    """The same read in this process on one rank, in one pass: the reference for its order."""
    return replace(
        case,
        workers="0",
        ranks=1,
        resume=False,
        uneven="pad",
        seed=case.seed if seed is None else seed,
    )
