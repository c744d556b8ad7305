"""Runs one conformance case and checks what came out against a plain reference.

Every table has an ``id`` column (the row's identity, 0..N-1 before deletes and filters) and
``x = 2 * id``; a decoded column holds values made from the id too (tokens ``[id] * (1 + id %
4)``, text ``f"row{id}"``, an image whose color is the id), so each property is checked
against numpy and pyarrow alone: which ids came, in what order, and whether each output is
the one its row should give.

The readers take a ``Lib`` (the functions a run calls), so ``run_lancedb.py`` runs the same
matrix on lancedb 0.40 where its API overlaps.
"""

from __future__ import annotations

import functools
import io
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader, default_collate

from .cases import Case, simplified

N = 600
FILTER = "id % 3 <> 1"
DELETE = "id % 5 = 2"
PACK_LENGTH = 8
STREAM_SPLITS = 12
STREAM_PACK = 16
EOS, PAD = 100_000, 100_001
# A disk table read by windows: small windows and clumps, so an epoch crosses many windows.
WINDOW_ROWS, CLUMP = 64, 2
DECODED = {"pad": "tokens", "pack": "tokens", "text": "text", "image": "image"}


def filtered(ids: np.ndarray) -> np.ndarray:
    """The reference for FILTER."""
    return ids[ids % 3 != 1]


def undeleted(ids: np.ndarray) -> np.ndarray:
    """The reference for DELETE."""
    return ids[ids % 5 != 2]


def _image_bytes(i: int) -> bytes:
    from PIL import Image as PILImage

    out = io.BytesIO()
    PILImage.new("RGB", (6, 6), (i % 256, i // 256, 77)).save(out, format="PNG")
    return out.getvalue()


@functools.cache
def source(decode: str) -> pa.Table:
    """The rows of a case's table: ``id``, ``x`` and the decoded column, if any."""
    ids = np.arange(N, dtype=np.int64)
    cols: dict[str, Any] = {"id": ids, "x": (ids * 2).astype(np.float32)}
    if decode in ("pad", "pack"):
        cols["tokens"] = pa.array([[i] * (1 + i % 4) for i in range(N)], pa.list_(pa.int32()))
    elif decode == "text":
        cols["text"] = pa.array([f"row{i}" for i in range(N)], pa.string())
    elif decode == "image":
        cols["image"] = pa.array([_image_bytes(i) for i in range(N)], pa.binary())
    return pa.table(cols)


def spec(decode: str) -> dict[str, Any]:
    """The decode= dict of a case (lancetorch.decode specs)."""
    from lancetorch.decode import Image, Text, Tokens

    if decode == "pad":
        return {"tokens": Tokens(pad_value=-1)}
    if decode == "pack":
        return {"tokens": Tokens(max_length=PACK_LENGTH, pad_value=-1, pack=True)}
    if decode == "text":
        return {"text": Text()}
    if decode == "image":
        return {"image": Image(size=(4, 4))}
    return {}


@dataclass
class Lib:
    """What a run calls: lancetorch's by default, lancedb's in run_lancedb.py."""

    name: str = "lancetorch"

    def connect(self, uri: str) -> Any:
        import lancetorch

        return lancetorch.connect(uri)

    def open_windows(self, db: Any, name: str) -> Any:
        return db.open_table(name, cache_budget=1)

    def delete(self, db: Any, table: Any, name: str, where: str) -> Any:
        import lance

        lance.dataset(table.uri).delete(where)
        return db.open_table(name)

    def format(self, fmt: str) -> str:
        """The name this library gives the output format lancetorch calls ``fmt``."""
        return fmt

    def permutation_builder(self, table: Any) -> Any:
        from lancetorch.permutation import permutation_builder

        return permutation_builder(table)

    @property
    def Permutation(self) -> Any:
        from lancetorch.permutation import Permutation

        return Permutation

    @property
    def streaming(self) -> Any:
        import lancetorch.streaming

        return lancetorch.streaming


class Workspace:
    """The tables of a session, made once each and read by many cases."""

    def __init__(self, root: Path, lib: Lib | None = None) -> None:
        self.root = Path(root)
        self.lib = lib or Lib()
        self._tables: dict[tuple, tuple[Any, np.ndarray]] = {}
        self._mem = None
        self._disk = None

    def table(self, case: Case) -> tuple[Any, np.ndarray]:
        """The case's table and its ids in storage order (after deletes)."""
        key = (case.storage, case.deleted, case.decode)
        if key not in self._tables:
            self._tables[key] = self._make(*key)
        return self._tables[key]

    def _make(self, storage: str, deleted: bool, decode: str) -> tuple[Any, np.ndarray]:
        data = source(decode)
        ids = data["id"].to_numpy()
        name = f"t_{decode}_{int(deleted)}_{storage}"
        if storage == "memory":
            if self._mem is None:
                self._mem = self.lib.connect("memory://")
            return self._mem.create_table(name, data), ids
        if self._disk is None:
            self._disk = self.lib.connect(str(self.root / "db"))
        table = self._disk.create_table(name, data)
        if deleted:
            table = self.lib.delete(self._disk, table, name, DELETE)
            ids = undeleted(ids)
        if storage == "windows":
            table = self.lib.open_windows(self._disk, name)
        return table, ids


# --------------------------------------------------------------------------------------------
# What a run gave


@dataclass
class Result:
    """Per phase (before the stop, after the resume), per rank, the ids of each batch; the
    ids the run should read (in storage or permutation order); the states saved."""

    phases: list[list[list[np.ndarray]]] = field(default_factory=list)
    expected: np.ndarray | None = None
    states: list[dict] = field(default_factory=list)
    tokens: Counter | None = None  # packed streaming: every token seen, by value
    split_sizes: list[int] | None = None  # perm: the rows of each split read
    second: list[np.ndarray] | None = None  # one rank, no resume: the next epoch's batches

    def flat(self) -> np.ndarray:
        return np.concatenate(
            [b for phase in self.phases for rank in phase for b in rank] or [np.zeros(0)]
        ).astype(np.int64)


def _ids(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().astype(np.int64)
    if isinstance(value, (pa.Array, pa.ChunkedArray)):
        return value.to_numpy().astype(np.int64)
    return np.asarray(value).astype(np.int64)


def _check_x(ids: np.ndarray, x: Any, where: str) -> None:
    x = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, np.float64)
    assert np.array_equal(x, ids * 2.0), f"{where}: column x is not 2 * id for the same rows"


def check_decoded(d: Any, ids: np.ndarray, decode: str, ref_keys: set[str] | None) -> None:
    """A batch as ``{column: value}``: the outputs a spec declares, each the value its row
    gives."""
    keys = set(d.keys())
    if ref_keys is not None:
        assert keys == ref_keys, (
            f"outputs {sorted(keys)} differ from to_batch's {sorted(ref_keys)} for this spec"
        )
    if decode == "pad":
        tokens, length = _ids(d["tokens"]), _ids(d["tokens_length"])
        assert np.array_equal(length, 1 + ids % 4), "tokens_length is not each row's length"
        for b, i in enumerate(ids):
            row = tokens[b]
            assert (row[: length[b]] == i).all() and (row[length[b] :] == -1).all(), (
                f"padded tokens of row id {i}: {row.tolist()}"
            )
    elif decode == "pack":
        tokens = _ids(d["tokens"])
        assert "tokens_document" in d, "Tokens(pack=True) declares tokens_document"
        doc = _ids(d["tokens_document"])
        real = doc >= 0
        assert (tokens[~real] == -1).all(), "padding in a packed block is not pad_value"
        assert np.array_equal(tokens[real], ids[doc[real]]), "a packed token is not its row's"
        counts = np.bincount(doc[real], minlength=len(ids))
        assert np.array_equal(counts, 1 + ids % 4), "a row's tokens are not each packed once"
    elif decode == "text":
        assert list(d["text"]) == [f"row{i}" for i in ids], "text is not each row's"
    elif decode == "image":
        img = d["image"]
        assert tuple(img.shape) == (len(ids), 3, 4, 4) and img.dtype == torch.uint8
        color = img[:, :, 2, 2].numpy().astype(np.int64)
        want = np.stack([ids % 256, ids // 256, np.full(len(ids), 77)], axis=1)
        assert np.array_equal(color, want), "a decoded image is not its row's"


def _from_dict(d: Any, case: Case, ref_keys: set[str] | None) -> np.ndarray:
    ids = _ids(d["id"])
    _check_x(ids, d["x"], case.id)
    check_decoded(d, ids, case.decode, ref_keys)
    return ids


def _from_tensor_cols(t: torch.Tensor) -> np.ndarray:
    """A (columns, rows) tensor of id, x."""
    assert t.dim() == 2 and t.shape[0] == 2, f"expected (2, rows), got {tuple(t.shape)}"
    ids = _ids(t[0])
    _check_x(ids, t[1], "tensor")
    return ids


def ref_keys(case: Case) -> set[str] | None:
    """The outputs to_batch gives for the case's columns and spec: what every path must give."""
    from lancetorch.util import to_batch

    if case.decode == "none":
        return {"id", "x"}
    return set(to_batch(source(case.decode).slice(0, 5), decode=spec(case.decode)).keys())


def _perm_batch(batch: Any, case: Case, collated: bool, keys: set[str] | None) -> np.ndarray:
    """The ids of a Permutation batch in its format (as the default collate left it when
    ``collated``)."""
    fmt = case.fmt
    if fmt == "arrow":
        assert isinstance(batch, pa.RecordBatch), type(batch)
        return _from_dict({c: batch[c].to_numpy() for c in batch.schema.names}, case, keys)
    if fmt == "python":
        if collated:
            return _from_dict(batch, case, keys)
        assert isinstance(batch, list) and all(isinstance(r, dict) for r in batch)
        return _from_dict(default_collate(batch), case, keys)
    if fmt == "python_col":
        assert isinstance(batch, dict) and isinstance(batch["id"], list)
        return _from_dict(batch, case, keys)
    if fmt == "numpy" and isinstance(batch, np.ndarray):  # lancedb: one (rows, columns) array
        return _from_tensor_cols(torch.from_numpy(np.ascontiguousarray(batch.T)))
    if fmt == "numpy":
        assert isinstance(batch, dict) and isinstance(batch["id"], np.ndarray)
        return _from_dict(batch, case, keys)
    if fmt in ("pandas", "polars"):
        return _from_dict({c: batch[c].to_numpy() for c in batch.columns}, case, keys)
    if fmt == "torch_col":
        return _from_tensor_cols(batch)
    if fmt in ("torch", "torch_row"):
        rows = batch if collated else torch.stack(list(batch))
        return _from_tensor_cols(rows.T)
    if fmt == "torch_dict":
        d = batch if collated else default_collate(list(batch))
        return _from_dict(d, case, keys)
    raise AssertionError(f"unknown format {fmt}")


# --------------------------------------------------------------------------------------------
# The readers


def _workers(case: Case) -> dict[str, Any]:
    if case.workers == "0":
        return {}
    return {"num_workers": 2, "multiprocessing_context": case.workers}


def _collate(case: Case) -> Any:
    from lancetorch.util import tbl_to_tensor, to_batch

    if case.decode == "none":
        return tbl_to_tensor
    return functools.partial(to_batch, decode=spec(case.decode))


def _batch_ids(b: Any, case: Case, keys: set[str] | None) -> np.ndarray:
    if isinstance(b, torch.Tensor):
        return _from_tensor_cols(b)
    return _from_dict(b, case, keys)


def read_dataloader(ws: Workspace, case: Case) -> Result:
    table, ids = ws.table(case)
    keys = ref_keys(case)
    loader = DataLoader(
        table,
        batch_size=case.batch_size,
        shuffle=case.shuffle,
        generator=torch.Generator().manual_seed(case.seed),
        drop_last=case.drop_last,
        collate_fn=_collate(case),
        **_workers(case),
    )
    batches = [_batch_ids(b, case, keys) for b in loader]
    return Result(phases=[[batches]], expected=ids)


def _permutations(ws: Workspace, case: Case, fmt: bool = True) -> tuple[list[Any], np.ndarray]:
    """The case's Permutations (both splits of a split case, else one) and the ids of their
    rows in storage order."""
    table, ids = ws.table(case)
    lib = ws.lib
    builder_shuffle = case.mode == "for" and case.shuffle
    if case.filter or builder_shuffle or case.split:
        builder = lib.permutation_builder(table)
        if case.filter:
            builder = builder.filter(FILTER)
            ids = filtered(ids)
        if case.split:
            builder = builder.split_random(ratios=[0.6, 0.4], seed=case.seed + 11)
        if builder_shuffle:
            builder = builder.shuffle(seed=case.seed)
        perm_table = builder.execute()
        splits = [0, 1] if case.split else [None]
        perms = [
            lib.Permutation.from_tables(table, perm_table, **({} if s is None else {"split": s}))
            for s in splits
        ]
    else:
        perms = [lib.Permutation.identity(table)]
    if not fmt:
        return perms, ids
    if case.decode != "none":
        perms = [p.with_format(case.fmt, decode=spec(case.decode)) for p in perms]
    else:
        perms = [p.with_format(lib.format(case.fmt)) for p in perms]
    return perms, ids


def _permutation(ws: Workspace, case: Case, fmt: bool = True) -> tuple[Any, np.ndarray]:
    perms, ids = _permutations(ws, case, fmt)
    assert len(perms) == 1
    return perms[0], ids


_COLLATED = ("python", "torch", "torch_row", "torch_dict")


def read_perm(ws: Workspace, case: Case) -> Result:
    perms, ids = _permutations(ws, case)
    result = Result(expected=ids, split_sizes=[len(p) for p in perms])
    for perm in perms:
        result.phases.append(_read_one_perm(perm, case))
    if len(perms) > 1:  # the splits one after another: one read of every row
        result.phases = [[[b for phase in result.phases for b in phase[0]]]]
    return result


def _read_one_perm(perm: Any, case: Case) -> list[list[np.ndarray]]:
    from lancetorch.util import passthrough

    keys = ref_keys(case)
    a, _ = case.rank_counts
    if case.mode == "dataloader":
        collated = case.fmt in _COLLATED
        loader = DataLoader(
            perm,
            batch_size=case.batch_size,
            shuffle=case.shuffle,
            generator=torch.Generator().manual_seed(case.seed),
            collate_fn=None if collated else passthrough,
            **_workers(case),
        )
        ranks = [[_perm_batch(b, case, collated, keys) for b in loader]]
    elif case.mode == "iter":
        ranks = [
            [
                _perm_batch(b, case, False, keys)
                for b in perm.iter(
                    case.batch_size,
                    shuffle=case.shuffle,
                    seed=case.seed,
                    rank=r,
                    world_size=a,
                )
            ]
            for r in range(a)
        ]
    else:
        ranks = [[_perm_batch(b, case, False, keys) for b in perm.with_batch_size(case.batch_size)]]
    return ranks


def _sampler_loader(table: Any, case: Case, sampler: Any) -> DataLoader:
    return DataLoader(table, batch_sampler=sampler, collate_fn=_collate(case), **_workers(case))


def read_sampler(ws: Workspace, case: Case) -> Result:
    from lancetorch.sampler import BatchSampler

    table, ids = ws.table(case)
    keys = ref_keys(case)
    a, b = case.rank_counts

    def sampler(rank: int, world: int) -> BatchSampler:
        return BatchSampler(
            table,
            case.batch_size,
            shuffle=case.shuffle,
            seed=case.seed,
            drop_last=case.drop_last,
            rank=rank,
            world_size=world,
            uneven=case.uneven,
        )

    result = Result(expected=ids)
    state = None
    if case.resume:
        step = _resume_step(case, len(sampler(0, a)))
        phase = []
        for r in range(a):
            s = sampler(r, a)
            got = []
            for batch in _sampler_loader(table, case, s):
                got.append(_batch_ids(batch, case, keys))
                if len(got) == step:
                    break
            result.states.append(s.state_dict(batches=step))
            phase.append(got)
        result.phases.append(phase)
        state = result.states[0]
    phase = []
    for r in range(b):
        s = sampler(r, b)
        if state is not None:
            s.load_state_dict(state)
        loader = _sampler_loader(table, case, s)
        phase.append([_batch_ids(x, case, keys) for x in loader])
        if state is None and b == 1:  # a pass without set_epoch reads the next epoch
            result.second = [_batch_ids(x, case, keys) for x in loader]
    result.phases.append(phase)
    return result


def _resume_step(case: Case, batches: int) -> int:
    assert batches >= 2, f"{case.id}: too few batches ({batches}) to stop part way"
    return case.rng().randint(1, batches - 1)


def read_loader(ws: Workspace, case: Case) -> Result:
    from lancetorch.loader import Loader

    if case.over == "perm":
        data, ids = _permutation(ws, case, fmt=False)  # the Loader reads its rows itself
    else:
        data, ids = ws.table(case)
    keys = ref_keys(case) if case.per_column else None
    a, b = case.rank_counts

    def loader(rank: int, world: int) -> Loader:
        return Loader(
            data,
            case.batch_size,
            shuffle=case.shuffle,
            seed=case.seed,
            drop_last=case.drop_last,
            threads=case.threads,
            per_column=case.per_column,
            decode=spec(case.decode) or None,
            rank=rank,
            world_size=world,
            uneven=case.uneven,
            window_rows=WINDOW_ROWS,
            clump_size=CLUMP,
        )

    result = Result(expected=ids)
    state = None
    if case.resume:
        step = _resume_step(case, len(loader(0, a)))
        phase = []
        for r in range(a):
            lo = loader(r, a)
            got = []
            for batch in lo:
                got.append(_batch_ids(batch, case, keys))
                if len(got) == step:
                    break
            result.states.append(lo.state_dict())
            phase.append(got)
        result.phases.append(phase)
        state = result.states[0]
    phase = []
    for r in range(b):
        lo = loader(r, b)
        if state is not None:
            lo.load_state_dict(state)
        phase.append([_batch_ids(x, case, keys) for x in lo])
        if state is None and b == 1:  # a pass without set_epoch reads the next epoch
            result.second = [_batch_ids(x, case, keys) for x in lo]
    result.phases.append(phase)
    return result


def read_streaming(ws: Workspace, case: Case) -> Result:
    table, ids = ws.table(case)
    if case.filter:
        ids = filtered(ids)
    streaming = ws.lib.streaming
    a, b = case.rank_counts
    packed = case.decode == "pack"

    def dataset(rank: int, world: int) -> Any:
        kw: dict[str, Any] = {}
        if packed:
            kw = dict(
                columns=["tokens"],
                pack_sequences=STREAM_PACK,
                eos_id=EOS,
                pad_id=PAD,
                blocks_per_epoch=STREAM_SPLITS * 20,
            )
        else:
            kw = dict(columns=["id", "x"])
        return streaming.StreamingDataset(
            table,
            num_splits=STREAM_SPLITS,
            shuffle=case.shuffle,
            shuffle_seed=case.seed,
            rank=rank,
            world_size=world,
            filter=FILTER if case.filter else None,
            **kw,
        )

    def loader(ds: Any) -> Any:
        return streaming.StreamingDataLoader(ds, batch_size=case.batch_size, **_workers(case))

    tokens: Counter = Counter()
    first_seen: list[int] = []

    def batch_ids(batch: Any) -> np.ndarray:
        if not packed:
            got = _ids(batch["id"])
            _check_x(got, batch["x"], case.id)
            return got
        # Packed: each row's tokens are its id repeated, then EOS; count every token and
        # give the ids in the order their first token came.
        assert set(batch) == {"input_ids", "doc_ids"}, sorted(batch)
        values = _ids(batch["input_ids"]).ravel()
        real = values[(values != EOS) & (values != PAD)]
        new = [int(v) for v in dict.fromkeys(real.tolist()) if v not in tokens]
        tokens.update(real.tolist())
        first_seen.extend(new)
        return np.asarray(new, dtype=np.int64)

    result = Result(expected=ids)
    state = None
    if case.resume:
        per_rank = (len(ids) - len(ids) % STREAM_SPLITS) // a
        step = _resume_step(case, per_rank // case.batch_size - 1)
        phase = []
        for r in range(a):
            ds = dataset(r, a)
            got = []
            it = iter(loader(ds))
            for batch in it:
                got.append(batch_ids(batch))
                if len(got) == step:
                    break
            if case.workers != "0" and step % 2:
                # Documented: exact at a step boundary only, where every split of the rank
                # has given as many rows; two workers take turns, so an odd step is refused.
                try:
                    ds.state_dict()
                except RuntimeError as err:
                    assert "step boundary" in str(err), err
                else:
                    raise AssertionError("a state between step boundaries was given")
                got.append(batch_ids(next(it)))
            del it
            result.states.append(ds.state_dict())
            phase.append(got)
        result.phases.append(phase)
        state = streaming.StreamingDataset.merge_state_dicts(result.states)
    phase = []
    for r in range(b):
        ds = dataset(r, b)
        if state is not None:
            ds.load_state_dict(state)
        phase.append([batch_ids(x) for x in loader(ds)])
    result.phases.append(phase)
    if packed:
        result.tokens = tokens
    return result


READERS = {
    "dataloader": read_dataloader,
    "perm": read_perm,
    "sampler": read_sampler,
    "loader": read_loader,
    "streaming": read_streaming,
}


def run(ws: Workspace, case: Case) -> Result:
    return READERS[case.path](ws, case)


# --------------------------------------------------------------------------------------------
# The properties


def _interleave(ranks: list[list[np.ndarray]], case: Case) -> np.ndarray:
    """One global order from the ranks' streams: rank r holds positions r, r + W, ..."""
    streams = [np.concatenate(r) if r else np.zeros(0, np.int64) for r in ranks]
    lengths = {len(s) for s in streams}
    assert len(lengths) == 1, f"ranks read different numbers of rows: {[len(s) for s in streams]}"
    out = np.empty(len(streams[0]) * len(streams), dtype=np.int64)
    for r, s in enumerate(streams):
        out[r :: len(streams)] = s
    return out


def _sharded(case: Case) -> bool:
    """Paths whose ranks read positions r, r + W, ... of one global order."""
    return case.path in ("sampler", "loader") or (case.path == "perm" and case.mode == "iter")


def _windows(case: Case) -> bool:
    return case.path == "loader" and case.storage == "windows"


def check_rows(case: Case, result: Result) -> np.ndarray:
    """Every row once per epoch, or the documented uneven rule; returns the epoch's rows in
    global order (padding left out)."""
    expected = result.expected
    assert expected is not None
    n = len(expected)
    exp_set = set(expected.tolist())
    a, b = case.rank_counts
    bs = case.batch_size

    if case.path == "streaming":
        got = result.flat()
        dealt = n - n % STREAM_SPLITS
        if result.tokens is not None:
            extra = {v: c for v, c in result.tokens.items() if c != 1 + v % 4}
            assert not extra, f"packed tokens not once per row: {dict(list(extra.items())[:5])}"
        assert len(set(got.tolist())) == len(got), "a row came twice in one epoch"
        assert set(got.tolist()) <= exp_set, "a row came that the table/filter does not hold"
        assert len(got) == dealt, f"{len(got)} rows, expected {dealt} (rows past a multiple "
        f"of num_splits={STREAM_SPLITS} are left out)"
        return got

    if case.split:
        sizes = result.split_sizes or []
        assert sum(sizes) == n, f"splits of {sizes} rows do not hold the {n} rows"
    if case.path == "perm" and case.mode == "for":
        got = result.flat()
        want = sum(s - s % bs for s in result.split_sizes or [n])
        assert len(got) == want, f"{len(got)} rows, expected {want} (short last batch left out)"
        assert len(set(got.tolist())) == len(got) and set(got.tolist()) <= exp_set
        return got

    if not _sharded(case) or (a == b == 1 and not case.resume):
        got = result.flat()
        if case.drop_last:
            assert len(got) == n - n % bs, f"drop_last: {len(got)} rows, expected {n - n % bs}"
            assert len(set(got.tolist())) == len(got) and set(got.tolist()) <= exp_set
        else:
            assert sorted(got.tolist()) == sorted(expected.tolist()), _diff(got, expected)
        return got

    # Sharded: one global order, rank r positions r, r + W, ...
    start = 0
    before = np.zeros(0, np.int64)
    if case.resume:
        if not _windows(case):
            before = _interleave(result.phases[0], case)
        else:
            before = np.concatenate([np.concatenate(r) for r in result.phases[0]])
        start = len(before)
        states = result.states
        assert all(s == states[0] for s in states), f"ranks saved different states: {states}"
        assert states[0]["position"] == start, (
            f"state position {states[0]['position']}, but {start} rows were read"
        )
    rest = n - start
    after_ranks = result.phases[-1]
    if _windows(case):
        lengths = [sum(len(x) for x in r) for r in after_ranks]
        assert len(set(lengths)) == 1, f"ranks read different numbers of rows: {lengths}"
        after = np.concatenate([np.concatenate(r) for r in after_ranks if r])
    else:
        after = _interleave(after_ranks, case)
    if case.drop_last:  # one rank (drop_last cases have one): the short last batch goes
        assert len(after) == rest - rest % bs, f"drop_last: {len(after)} rows after the stop"
        whole = np.concatenate([before, after])
        assert len(set(whole.tolist())) == len(whole) and set(whole.tolist()) <= exp_set
        return whole
    if case.uneven == "pad":
        per_rank = -(-rest // b)
        assert len(after) == per_rank * b, f"{len(after)} rows after the stop, expected "
        f"{per_rank * b} ({rest} rows over {b} ranks, padded)"
        if _windows(case):
            whole = np.concatenate([before, after])
            counts = Counter(whole.tolist())
            assert set(counts) == exp_set, _diff(np.array(list(counts)), expected)
            assert sum(counts.values()) - n == per_rank * b - rest
            return np.array(list(dict.fromkeys(whole.tolist())))
        whole = np.concatenate([before, after[:rest]])
        assert sorted(whole.tolist()) == sorted(expected.tolist()), _diff(whole, expected)
        pad = after[rest:]
        assert np.array_equal(pad, after[: len(pad)]), "padding is not the first rows still to read"
        return whole
    per_rank = rest // b
    assert len(after) == per_rank * b, f"uneven=drop: {len(after)} rows, expected {per_rank * b}"
    whole = np.concatenate([before, after])
    assert len(set(whole.tolist())) == len(whole), "a row came twice"
    assert set(whole.tolist()) <= exp_set
    return whole


def _diff(got: np.ndarray, expected: np.ndarray) -> str:
    g, e = Counter(got.tolist()), Counter(expected.tolist())
    missing = sorted((e - g).elements())[:8]
    extra = sorted((g - e).elements())[:8]
    return (
        f"rows not once each: {len(got)} read of {len(expected)}; missing {missing}..., "
        f"extra {extra}..."
    )


def correlation(order: np.ndarray, expected: np.ndarray) -> float:
    """Correlation of read position with storage position (1.0: read in storage order)."""
    where = {int(v): i for i, v in enumerate(expected.tolist())}
    pos = np.array([where[int(v)] for v in order], dtype=np.float64)
    if len(pos) < 3:
        return 0.0
    return float(np.corrcoef(np.arange(len(pos)), pos)[0, 1])


def check_order(case: Case, result: Result, order: np.ndarray) -> None:
    """A shuffle where one was asked (position/row correlation near 0), storage order where
    none was."""
    expected = result.expected
    assert expected is not None
    if case.shuffle or case.split:  # a random split keeps the random order it dealt
        units = len(order) / (CLUMP if _windows(case) else 1)
        limit = min(0.35, 5 / np.sqrt(max(units, 1)))
        r = correlation(order, expected)
        assert abs(r) < limit, f"asked to shuffle, read order correlates {r:.3f} with storage"
        return
    if case.path == "streaming":
        # Table order: split s is the s-th contiguous block; each split's rows ascend.
        q = len(expected) // STREAM_SPLITS
        where = {int(v): i for i, v in enumerate(expected.tolist())}
        pos = np.array([where[int(v)] for v in order])
        for s in range(STREAM_SPLITS):
            mine = pos[(pos >= s * q) & (pos < (s + 1) * q)]
            assert (np.diff(mine) > 0).all(), f"shuffle=False: split {s} is not in table order"
        return
    if _windows(case) and case.rank_counts != (1, 1):
        return  # ranks take their positions window by window: checked once each above
    n = len(order)
    assert np.array_equal(order, expected[:n]), (
        f"shuffle=False: rows not in storage order: {order[:10]} vs {expected[:10]}"
    )


def promised_order(case: Case) -> bool:
    """Paths whose order is BatchSampler's for (seed, epoch) on one rank."""
    if case.path == "sampler":
        return True
    if case.path == "loader":
        return case.storage != "windows"
    return case.path == "perm" and case.mode == "iter"


def reference_order(case: Case, n: int, epoch: int = 0) -> np.ndarray:
    """BatchSampler's order of n positions for the case's seed: what the paths promise."""
    from lancetorch.sampler import BatchSampler

    return BatchSampler(n, 1, seed=case.seed, world_size=1).order(epoch)


def refused(case: Case) -> bool:
    """A forked worker over a disk table beyond its cache budget: refused, as documented."""
    return case.workers == "fork" and case.storage == "windows" and case.path != "loader"


def check(ws: Workspace, case: Case, refs: dict) -> None:
    """Run ``case`` and check every property."""
    if refused(case):
        # Documented: a forked worker never reads through Lance; a table it would have to
        # read that way raises RuntimeError in the worker, saying to use spawn.
        try:
            run(ws, case)
        except RuntimeError as err:
            assert "spawn" in str(err), f"refused without saying what to do: {err}"
            return
        raise AssertionError("a forked worker read an uncached disk table through Lance")
    result = run(ws, case)
    order = check_rows(case, result)
    check_order(case, result, order)
    if result.second is not None:
        second = check_rows(case, Result(phases=[[result.second]], expected=result.expected))
        check_order(case, Result(expected=result.expected), second)
        if case.shuffle:
            assert not np.array_equal(second, order), "the next epoch repeated the order"
            if promised_order(case):
                expected = result.expected
                assert expected is not None
                want = expected[reference_order(case, len(expected), epoch=1)]
                assert np.array_equal(second, want[: len(second)]), (
                    "the next epoch is not BatchSampler's order for (seed, 1)"
                )
    if not case.shuffle:
        return
    # The same seed gives the same order (fresh objects, this process), another seed another.
    key = simplified(case)
    if key not in refs:
        refs[key] = check_rows(key, run(ws, key))
        again = check_rows(key, run(ws, key))
        assert np.array_equal(refs[key], again), "the same seed gave another order"
        other = simplified(case, seed=case.seed + 1)
        other_order = check_rows(other, run(ws, other))
        assert not np.array_equal(refs[key], other_order), "another seed gave the same order"
        if promised_order(case):
            expected = result.expected
            assert expected is not None
            want = expected[reference_order(case, len(expected))]
            assert np.array_equal(refs[key], want[: len(refs[key])]), (
                "not BatchSampler's order for this seed"
            )
    ref = refs[key]
    # Worker processes, ranks and a resume read the same global order as one process does.
    if case.path == "streaming" or _windows(case) and case.rank_counts != (1, 1):
        return
    if case.workers != "0" or case.resume or case.rank_counts != (1, 1):
        m = min(len(order), len(ref))
        assert np.array_equal(order[:m], ref[:m]), (
            "the global order differs from one process's read of the same seed"
        )


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="lancetorch-conformance-"))
