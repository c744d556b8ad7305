"""Every public parameter is honoured or refused: a table with one row per public callable and
parameter, as tests/_public_api.py walks them.

Each row runs the call with the parameter at a baseline value (its default where it has
one), again with a value that must change what the call gives, and checks that the two differ;
then with a value of the wrong type (or, for a parameter that takes only one value, another
value) and checks that it is refused with TypeError or ValueError, not converted: ``2.5`` is
not 2 rows, ``"64"`` not 64, ``True`` not 1. A parameter the walk finds without a row fails
``test_every_public_parameter_has_a_row``, so a new one cannot go unchecked; parameters whose
effect cannot be seen in a result are listed in ``EXEMPT`` with the reason.
"""

from __future__ import annotations

import atexit
import datetime
import functools
import io
import itertools
import os
import pickle
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import lancetorch
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
import torch
from _public_api import entries, spelled
from lancetorch import util
from lancetorch.decode import Image, Text, Tokens
from lancetorch.loader import Loader
from lancetorch.permutation import (
    Permutation,
    PermutationBuilder,
    Permutations,
    permutation_builder,
    split_names_of,
)
from lancetorch.sampler import BatchSampler, Windows, distributed_rank
from lancetorch.streaming import StreamingDataLoader, StreamingDataset
from lancetorch.table import as_lancetorch_table
from PIL import Image as PILImage

N = 24  # rows of the test tables

_NOTHING = object()


@dataclass
class Case:
    """``run(value)`` is the call with the parameter at ``value``. ``changed`` must give
    another result than ``base``; ``wrong`` must be refused. Where one of them cannot be
    given, ``why`` says why."""

    run: Callable[[Any], Any]
    base: Any
    changed: Any = _NOTHING
    wrong: Any = _NOTHING
    why: str = ""


# -- data ----------------------------------------------------------------------------------------
def _png(i: int) -> bytes:
    pixels = np.zeros((6, 8, 3), np.uint8)
    pixels[:, : 1 + i % 7] = 40 * (i % 5) + 20  # a left part that differs from row to row
    pixels[:, :, 1] = (9 * i) % 256
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def _data(shift: int = 0) -> pa.Table:
    ids = np.arange(N, dtype=np.int64) + shift
    return pa.table(
        {
            "id": ids,
            "x": ids * 0.5,
            "s": [f"row {i}" for i in ids],
            "tok": pa.array([list(range(i, i + 1 + i % 4)) for i in ids], pa.list_(pa.int32())),
            "img": pa.array([_png(int(i)) for i in ids], pa.binary()),
        }
    )


@functools.cache
def _t() -> lancetorch.Table:
    return lancetorch.connect("memory://").create_table("t", _data())


@functools.cache
def _t2() -> lancetorch.Table:
    return lancetorch.connect("memory://").create_table("t", _data(100))


def _numbers(table: lancetorch.Table) -> Permutation:
    return Permutation.identity(table).select_columns(["id", "x"])


@functools.cache
def _perm_table(names: tuple[str, ...] | None = None, first: int = 12) -> lancetorch.Table:
    builder = permutation_builder(_t()).split_sequential(
        counts=[first, N - first], split_names=None if names is None else list(names)
    )
    return builder.execute()


_DIR = tempfile.mkdtemp(prefix="lancetorch-parameters-")
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)


@functools.cache
def _disk() -> lancetorch.Connection:
    db = lancetorch.connect(f"{_DIR}/disk")
    db.create_table("a", _data().select(["id", "x"]))
    db.create_table("b", _data(100).select(["id", "x"]))
    return db


@functools.cache
def _versions() -> lancetorch.Connection:
    """A disk table 'v' at version 2."""
    db = lancetorch.connect(f"{_DIR}/versions")
    db.create_table("v", {"a": [1]}).add({"a": [2]})
    return db


def _kept_in_tier(budget: Any) -> int:
    """Bytes a disk table's cache left in a fresh node tier kept within ``budget``."""
    from lancetorch._tier import NodeTier

    folder = tempfile.mkdtemp(dir=_DIR)
    table = _disk().open_table("a", cache=True, cache_dir=folder, cache_dir_budget=budget)
    table.__getitems__([0])
    return NodeTier(folder).held_bytes()


def _through_tier(cache_dir: Any) -> bool:
    """Whether a disk table's cache read with ``cache_dir`` went through a node tier (a
    relative folder lands in this module's temporary folder)."""
    here = os.getcwd()
    os.chdir(_DIR)
    try:
        table = _disk().open_table("a", cache=True, cache_dir=cache_dir)
        table.__getitems__([0])
        return any(table._backend.tier_stats().values())
    finally:
        os.chdir(here)


def _sees_appends(interval: Any) -> int:
    """Rows a handle with ``read_consistency_interval`` sees after another handle appends."""
    where = tempfile.mkdtemp(dir=_DIR)
    lancetorch.connect(where).create_table("a", {"a": [1]})
    table = lancetorch.connect(where, read_consistency_interval=interval).open_table("a")
    lancetorch.connect(where).open_table("a").add({"a": [2]})
    return table.count_rows()


def _two_versions() -> lancetorch.Table:
    db = lancetorch.connect(tempfile.mkdtemp(dir=_DIR))
    table = db.create_table("a", {"a": [1]})
    table.add({"a": [2]})
    return table


def _memory_db(*names: str) -> lancetorch.Connection:
    db = lancetorch.connect("memory://")
    for name in names:
        db.create_table(name, {"a": [1]})
    return db


def _drop_missing(ignore: Any) -> Any:
    """What dropping a table that is not there gives: the names left, or "refused"."""
    db = _memory_db("a")
    try:
        db.drop_table("gone", ignore_missing=ignore)
    except FileNotFoundError:
        return "refused"
    return db.table_names()


def _bad_vectors(**options: Any) -> Any:
    """The vectors a table keeps of two good rows, a NaN one and a short one."""
    rows = [[1.0, 2.0], [3.0, float("nan")], [1.0, 2.0], [5.0]]
    return _memory_db().create_table("a", {"vector": rows}, **options).to_arrow().to_pylist()


@functools.cache
def _big() -> lancetorch.Table:
    return lancetorch.connect("memory://").create_table("big", {"x": np.arange(300_000)})


def _timed(read: str, timeout: Any) -> Any:
    """A filtered scan of 300,000 rows read by ``read`` within ``timeout``: its first rows,
    or the TimeoutError of a timeout far shorter than the filter takes."""
    query = _big().search().where("x % 7 = 3").limit(3)
    return outcome(lambda: getattr(query, read)(timeout=timeout))


def _bad_vectors_added(**options: Any) -> Any:
    """The vectors a table keeps of a good row and of two good, a NaN and a short row added."""
    t = _memory_db().create_table("a", {"vector": [[0.0, 0.5]]})
    t.add({"vector": [[1.0, 2.0], [3.0, float("nan")], [1.0, 2.0], [5.0]]}, **options)
    return t.to_arrow().to_pylist()


def _batch(**columns: Any) -> pa.RecordBatch:
    return pa.record_batch(columns)


def seen(value: Any) -> Any:
    """A result as plain Python values, to compare two results."""
    if isinstance(value, torch.Tensor):
        return ("tensor", str(value.dtype), str(value.device), value.shape, _listed(value))
    if isinstance(value, (pa.Table, pa.RecordBatch)):
        return (
            "arrow",
            value.schema.names,
            [str(t) for t in value.schema.types],
            value.to_pylist(),
        )
    if isinstance(value, pa.Array):
        return ("array", str(value.type), value.to_pylist())
    if isinstance(value, np.ndarray):
        return ("numpy", str(value.dtype), value.tolist())
    if isinstance(value, pd.DataFrame):
        return ("pandas", [str(t) for t in value.dtypes], value.to_dict("list"))
    if isinstance(value, (pl.DataFrame, pl.LazyFrame)):
        frame = value.collect() if isinstance(value, pl.LazyFrame) else value
        return ("polars", [str(t) for t in frame.dtypes], frame.to_dicts())
    if isinstance(value, dict):
        return {k: seen(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [seen(v) for v in value]
    if isinstance(value, pa.RecordBatchReader):
        return [seen(b) for b in value]
    return value


def _listed(tensor: torch.Tensor) -> Any:
    return None if tensor.device.type == "meta" else tensor.tolist()


def outcome(call: Callable[[], Any]) -> Any:
    """What ``call`` gives, or the type of exception it raises (for settings whose effect
    is to allow or refuse); a TypeError, the refusal of a wrong type, is raised."""
    try:
        return seen(call())
    except TypeError:
        raise
    except Exception as e:
        return ("raised", type(e).__name__)


# The most batches or rows a run reads: every table here has fewer, and a hostile value
# (tests/test_hostile_arguments.py runs these rows with 2**63 and the like) cannot make a
# run read forever.
_MOST = 256


def _ids(batches: Any) -> list:
    return [seen(b) for b in itertools.islice(batches, _MOST)]


# -- runners -------------------------------------------------------------------------------------
def _loader(**kw: Any) -> Any:
    data = kw.pop("data", _numbers(_t()))
    return _ids(Loader(data, kw.pop("batch_size", 5), **{"seed": 0, **kw}))


def _window_loader(**kw: Any) -> Any:
    table = _disk().open_table("a", cache=False)
    return _ids(Loader(table, 4, seed=0, **kw))


def _stream(**kw: Any) -> Any:
    kw = {"columns": ["id"], **kw}
    return _ids(StreamingDataset(kw.pop("table", _t()), **kw))


def _packed(**kw: Any) -> Any:
    args = {
        "columns": ["tok"],
        "pack_sequences": 4,
        "eos_id": 0,
        "pad_id": 0,
        "blocks_per_epoch": 16,
        **kw,
    }
    return _stream(**args)


def _sampler(**kw: Any) -> Any:
    args = {"data_source": N, "batch_size": 5, "seed": 0, **kw}
    return _ids(BatchSampler(args.pop("data_source"), **args))


def _iter(**kw: Any) -> Any:
    p = Permutation.identity(_t()).select_columns(["id"]).with_format("arrow")
    return _ids(p.iter(**{"batch_size": 5, **kw}))


def _build(step: Callable[[PermutationBuilder], PermutationBuilder]) -> Any:
    perm = step(permutation_builder(_t())).execute()
    return seen(perm.to_arrow()), split_names_of(perm)


def _image(spec_args: dict, batch: pa.RecordBatch | None = None, epoch: int = 0) -> Any:
    batch = batch if batch is not None else _t().__getitems__(list(range(N))).select(["img"])
    return seen(util.to_batch(batch, {"img": Image(**{"size": (4, 4), **spec_args})}, epoch=epoch))


def _jpeg_batch() -> pa.RecordBatch:
    """A JPEG 24 times the output's size a side: decoded at 1/8 scale with ``jpeg="crop"``."""
    rng = np.random.default_rng(0)
    out = io.BytesIO()
    PILImage.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(out, format="JPEG")
    return pa.record_batch({"img": pa.array([out.getvalue()], pa.binary())})


def _deprecated(method: Callable[[Any], Any], value: Any) -> Any:
    """A deprecated method's result (its warning is checked in test_permutation.py)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return method(value)


def _open_first(name: str) -> lancetorch.Table:
    """A connection factory (picklable): the first table."""
    return _t()


def _reopen(name: str) -> lancetorch.Table:
    """A connection factory (picklable): the second table, whatever the name."""
    return _t2()


def _fails_on_row_3(batch: pa.RecordBatch) -> list:
    if 3 in batch.column("id").to_pylist():
        raise RuntimeError("row 3")
    return batch.column("id").to_pylist()


def _mem_create(**kw: Any) -> Any:
    db = _memory_db("a")
    return outcome(lambda: db.create_table("a", {"a": [2]}, **kw).to_arrow())


def _stream_state(taken: int) -> dict:
    ds = StreamingDataset(_t(), columns=["id"], num_splits=2)
    rows = iter(ds)
    for _ in range(taken):
        next(rows)
    state = ds.state_dict()
    rows.close()
    return state


def _resumed(state: Any) -> Any:
    ds = StreamingDataset(_t(), columns=["id"], num_splits=2)
    ds.load_state_dict(state)
    return _ids(ds)


def _sampler_state(batches: int | None = None) -> dict:
    s = BatchSampler(N, 5, seed=0)
    it = iter(s)
    next(it)
    next(it)
    return s.state_dict(batches)


def _after(sampler_state: Any) -> Any:
    s = BatchSampler(N, 5, seed=0)
    s.load_state_dict(sampler_state)
    return _ids(s)


def _loader_after(state: Any) -> Any:
    loader = Loader(_numbers(_t()), 5, seed=0)
    loader.load_state_dict(state)
    return _ids(loader)


def _loader_state(batches: int) -> dict:
    loader = Loader(_numbers(_t()), 5, seed=0)
    it = iter(loader)
    for _ in range(batches):
        next(it)
    state = loader.state_dict()
    it.close()
    return state


def _relaid(positions: Any, world_size: int = 2) -> Any:
    s = _windowed()
    s.load_state_dict(s.state_dict())  # saved on 2 ranks
    return s.resumed_positions(positions, world_size).tolist()


def _with_epoch(epoch: Any) -> Any:
    loader = Loader(_numbers(_t()), 5, seed=0)
    loader.set_epoch(epoch)
    return _ids(loader)


def _sampler_epoch(epoch: Any) -> Any:
    s = BatchSampler(N, 5, seed=0)
    s.set_epoch(epoch)
    return _ids(s)


def _s() -> BatchSampler:
    return BatchSampler(N, 5, seed=0)


def _windowed() -> BatchSampler:
    return BatchSampler(N, 5, seed=0, rank=0, world_size=2, order=Windows(5, 10))


def _recorded(batches: Any) -> int:
    s = _s()
    s.begin_epoch()
    s.record(batches)
    return s.state_dict()["position"]


def _p() -> Permutation:
    return Permutation.identity(_t()).select_columns(["id", "x"]).with_format("arrow")


def _first(p: Permutation) -> Any:
    return seen(next(iter(p.iter(N))))


def _tokens(args: dict, column: str = "tok") -> Any:
    batch = _t().__getitems__([0, 1, 2, 3]).select(["tok"])
    return seen(util.to_batch(batch, {column: Tokens(**args)}))


def _bad_images() -> pa.RecordBatch:
    return pa.record_batch({"img": pa.array([_png(1), b"not an image"], pa.binary())})


_B1 = _batch(a=[1, 2], b=[3.0, 4.0])
_B2 = _batch(a=[5, 6], b=[7.0, 8.0])
_NULLS = _batch(a=pa.array([1.0, None]))
_STRINGS = _batch(s=["ab", "c"])


def _token_batch(shift: int = 0) -> pa.RecordBatch:
    return _t().__getitems__([shift, shift + 1]).select(["tok"]).to_batches()[0]


def _image_batch(shift: int = 0) -> pa.RecordBatch:
    return _t().__getitems__(list(range(shift, shift + 6))).select(["img"]).to_batches()[0]


CONN = "lancetorch.db.Connection"
TABLE = "lancetorch.table.Table"
QUERIES = "lancetorch.query.TableQueries"  # the Table methods that make queries
VIEW = "lancetorch.permutation.view.Permutation"
OPTIONS = "lancetorch.permutation.options.ViewOptions"  # the chainable half of a view
BUILDER = "lancetorch.permutation.builder.PermutationBuilder"
SAMPLER = "lancetorch.sampler.BatchSampler"
QUERY = "lancetorch.query"

CASES: dict[str, Case] = {
    # -- connect and Connection ------------------------------------------------------------------
    "lancetorch.connect:uri": Case(
        lambda v: _disk() and sorted(lancetorch.connect(v).table_names()),
        f"{_DIR}/disk",
        f"{_DIR}/empty",
        5,
    ),
    "lancetorch.connect:read_consistency_interval": Case(
        _sees_appends, None, datetime.timedelta(0), "0"
    ),
    f"{TABLE}.checkout:version": Case(
        lambda v: (t := _two_versions()).checkout(v) or len(t), 1, 2, 1.5
    ),
    "lancetorch.connect:read_timeout": Case(
        lambda v: lancetorch.connect("memory://", read_timeout=v).table_names(),
        60.0,
        wrong="7",
        why="bounds reads of object storage only (tests/test_objectstore.py times one out)",
    ),
    "lancetorch.connect:storage_options": Case(
        lambda v: lancetorch.connect("memory://", storage_options=v).table_names(),
        None,
        wrong="aws_region=x",
        why="passed to Lance for object storage (tests/test_objectstore.py reads through them)",
    ),
    "lancetorch.connect:**enterprise": Case(
        lambda v: lancetorch.connect("memory://", **v).table_names(),
        {},
        wrong={"no_such_option": 1},
        why="LanceDB's local options change nothing here; its remote ones are refused",
    ),
    f"{CONN}.list_tables:namespace_path": Case(
        lambda v: _memory_db("a").list_tables(namespace_path=v).tables,
        None,
        wrong=["ns"],
        why="lancetorch has no namespaces: only LanceDB's default is taken",
    ),
    f"{CONN}.list_tables:page_token": Case(
        lambda v: _memory_db("a", "b").list_tables(page_token=v).tables, None, "a", 5
    ),
    f"{CONN}.list_tables:limit": Case(
        lambda v: _memory_db("a", "b").list_tables(limit=v).tables, None, 1, 1.5
    ),
    f"{CONN}.table_names:namespace_path": Case(
        lambda v: _memory_db("a").table_names(namespace_path=v),
        None,
        wrong=["ns"],
        why="lancetorch has no namespaces: only LanceDB's default is taken",
    ),
    f"{CONN}.table_names:page_token": Case(
        lambda v: _memory_db("a", "b").table_names(page_token=v), None, "a", 5
    ),
    f"{CONN}.table_names:limit": Case(
        lambda v: _memory_db("a", "b").table_names(limit=v), None, 1, 1.5
    ),
    f"{CONN}.drop_table:namespace_path": Case(
        lambda v: _memory_db("a").drop_table("a", namespace_path=v),
        None,
        wrong=["ns"],
        why="lancetorch has no namespaces: only LanceDB's default is taken",
    ),
    f"{CONN}.drop_table:ignore_missing": Case(_drop_missing, True, False, "yes"),
    f"{CONN}.create_table:on_bad_vectors": Case(
        lambda v: _bad_vectors(on_bad_vectors=v), "drop", "null", "skip"
    ),
    f"{CONN}.create_table:fill_value": Case(
        lambda v: _bad_vectors(on_bad_vectors="fill", fill_value=v), 0.0, -1.0, "0"
    ),
    f"{CONN}.create_table:embedding_functions": Case(
        lambda v: _memory_db().create_table("a", {"a": [1]}, embedding_functions=v).name,
        None,
        wrong=[object()],
        why="lancetorch has no embedding functions: only LanceDB's default is taken",
    ),
    f"{CONN}.create_table:namespace_path": Case(
        lambda v: _memory_db().create_table("a", {"a": [1]}, namespace_path=v).name,
        None,
        wrong=["ns"],
        why="lancetorch has no namespaces: only LanceDB's default is taken",
    ),
    f"{CONN}.create_table:name": Case(
        lambda v: _memory_db().create_table(v, {"a": [1]}).name, "u", "v", 5
    ),
    f"{CONN}.create_table:data": Case(
        lambda v: seen(_memory_db().create_table("a", v).to_arrow()), {"a": [1]}, {"a": [2]}, 5
    ),
    f"{CONN}.create_table:schema": Case(
        lambda v: str(_memory_db().create_table("a", {"a": [1]}, schema=v).schema),
        None,
        pa.schema([("a", pa.float64())]),
        "a: double",
    ),
    f"{CONN}.create_table:mode": Case(lambda v: _mem_create(mode=v), "create", "overwrite", 5),
    f"{CONN}.create_table:exist_ok": Case(lambda v: _mem_create(exist_ok=v), False, True, 1),
    f"{CONN}.open_table:name": Case(lambda v: seen(_disk().open_table(v).to_arrow()), "a", "b", 5),
    f"{CONN}.open_table:cache": Case(
        lambda v: Loader(_disk().open_table("a", cache=v), 4, seed=0).state_dict()["order"],
        "auto",
        False,
        1,
    ),
    f"{CONN}.open_table:cache_budget": Case(
        lambda v: Loader(_disk().open_table("a", cache_budget=v), 4, seed=0).state_dict()["order"],
        None,
        0,
        1.5,
    ),
    f"{CONN}.open_table:cache_dir": Case(lambda v: _through_tier(v), None, False, 1),
    f"{CONN}.open_table:version": Case(
        lambda v: _versions().open_table("v", version=v).version, None, 1, 1.5
    ),
    f"{CONN}.open_table:storage_options": Case(
        lambda v: seen(_disk().open_table("a", storage_options=v).to_arrow()),
        None,
        wrong="x=1",
        why="passed to Lance for the table's dataset (tests/test_objectstore.py reads through "
        "the connection's)",
    ),
    f"{CONN}.open_table:index_cache_size": Case(
        lambda v: seen(_disk().open_table("a", index_cache_size=v).to_arrow()),
        None,
        wrong=1.5,
        why="LanceDB's index cache: lancetorch reads no index",
    ),
    f"{CONN}.open_table:branch": Case(
        lambda v: seen(_disk().open_table("a", branch=v).to_arrow()),
        None,
        wrong="dev",
        why="lancetorch reads the main branch only: only LanceDB's default is taken",
    ),
    f"{CONN}.open_table:namespace_path": Case(
        lambda v: seen(_disk().open_table("a", namespace_path=v).to_arrow()),
        None,
        wrong=["ns"],
        why="lancetorch has no namespaces: only LanceDB's default is taken",
    ),
    f"{CONN}.open_table:cache_dir_budget": Case(lambda v: _kept_in_tier(v), None, 0, 1.5),
    f"{CONN}.drop_table:name": Case(
        lambda v: (db := _memory_db("a", "b")).drop_table(v) or db.table_names(), "a", "b", 5
    ),
    # -- Table -----------------------------------------------------------------------------------
    f"{TABLE}.add:mode": Case(
        lambda v: (
            (t := _memory_db("a").open_table("a")).add({"a": [2]}, mode=v) or seen(t.to_arrow())
        ),
        "append",
        "overwrite",
        "replace",
    ),
    f"{TABLE}.add:on_bad_vectors": Case(
        lambda v: _bad_vectors_added(on_bad_vectors=v), "drop", "null", "skip"
    ),
    f"{TABLE}.add:fill_value": Case(
        lambda v: _bad_vectors_added(on_bad_vectors="fill", fill_value=v), 0.0, -1.0, "0"
    ),
    f"{TABLE}.count_rows:filter": Case(lambda v: _t().count_rows(v), None, "id > 20", 5),
    f"{TABLE}.add:data": Case(
        lambda v: (t := _memory_db("a").open_table("a")).add(v) or seen(t.to_arrow()),
        {"a": [2]},
        {"a": [3]},
        5,
    ),
    f"{QUERIES}.take_offsets:offsets": Case(
        lambda v: seen(_t().take_offsets(v, columns=["id"]).to_arrow()), [0], [1], ["a"]
    ),
    f"{QUERIES}.take_offsets:columns": Case(
        lambda v: seen(_t().take_offsets([0], columns=v).to_arrow()), ["id"], ["x"], 5
    ),
    f"{QUERIES}.take_row_ids:row_ids": Case(
        lambda v: seen(_t().take_row_ids(v).select(["id"]).to_arrow()), [0], [1], ["a"]
    ),
    f"{QUERIES}.search:query": Case(
        lambda v: seen(_t().search(v).select(["id"]).to_arrow()),
        None,
        wrong="a cat",
        why="vector and full-text search are LanceDB's: only a full scan (None) is taken",
    ),
    f"{QUERIES}.search:**kwargs": Case(
        lambda v: seen(_t().search(**v).select(["id"]).to_arrow()),
        {},
        wrong={"vector_column_name": "v"},
        why="LanceDB's search options: any is refused",
    ),
    f"{QUERIES}.head:n": Case(lambda v: seen(_t().head(v).select(["id"])), 5, 2, 2.5),
    f"{TABLE}.to_pandas:**kwargs": Case(
        lambda v: seen(_t().to_pandas(**v)[["id", "s"]]),
        {},
        {"strings_to_categorical": True},
        {"no_such_option": 1},
    ),
    f"{TABLE}.to_polars:**kwargs": Case(
        lambda v: seen(_t().to_polars(**v).select(["id"])),
        {},
        {"schema_overrides": {"id": pl.Float64}},
        {"no_such_option": 1},
    ),
    f"{TABLE}.__getitems__:indices": Case(
        lambda v: seen(_t().__getitems__(v).select(["id"])), [0], [1], ["a"]
    ),
    f"{TABLE}.__getitem__:index": Case(lambda v: seen(_t()[v].select(["id"])), 0, 1, "a"),
    "lancetorch.table.as_lancetorch_table:table": Case(
        lambda v: seen(as_lancetorch_table(v).to_arrow().select(["id"])), _t(), _t2(), 5
    ),
    # -- util ------------------------------------------------------------------------------------
    "lancetorch.util.tbl_to_tensor:data": Case(lambda v: seen(util.tbl_to_tensor(v)), _B1, _B2, 5),
    "lancetorch.util.tbl_to_tensor:dtype": Case(
        lambda v: seen(util.tbl_to_tensor(_B1, dtype=v)), None, "float32", 5
    ),
    "lancetorch.util.tbl_to_tensor:null_value": Case(
        lambda v: seen(util.tbl_to_tensor(_NULLS, null_value=v)), 0.0, 1.0, "0"
    ),
    "lancetorch.util.column_to_tensor:batch": Case(
        lambda v: seen(util.column_to_tensor(v, "a")), _B1, _B2, 5
    ),
    "lancetorch.util.column_to_tensor:column": Case(
        lambda v: seen(util.column_to_tensor(_B1, v)), "a", "b", 1.5
    ),
    "lancetorch.util.column_to_tensor:dtype": Case(
        lambda v: seen(util.column_to_tensor(_B1, "a", dtype=v)), None, "float32", 5
    ),
    "lancetorch.util.column_to_tensor:null_value": Case(
        lambda v: seen(util.column_to_tensor(_NULLS, "a", null_value=v)), 0.0, 1.0, True
    ),
    "lancetorch.util.batch_to_tensor:batch": Case(
        lambda v: seen(util.batch_to_tensor(v)), _B1, _B2, 5
    ),
    "lancetorch.util.batch_to_tensor:dtype": Case(
        lambda v: seen(util.batch_to_tensor(_B1, dtype=v)), None, "float32", 5
    ),
    "lancetorch.util.batch_to_tensor:null_value": Case(
        lambda v: seen(util.batch_to_tensor(_NULLS, null_value=v)), 0.0, 1.0, "0"
    ),
    "lancetorch.util.to_batch:data": Case(lambda v: seen(util.to_batch(v)), _B1, _B2, 5),
    "lancetorch.util.to_batch:decode": Case(
        lambda v: seen(util.to_batch(_STRINGS, v)),
        None,
        {"s": Text(tokenizer=lambda s: [len(x) for x in s])},
        {"s": Text},
    ),
    "lancetorch.util.to_batch:features": Case(
        lambda v: seen(util.to_batch(_B1, features=v)), None, ["a"], 5
    ),
    "lancetorch.util.to_batch:target": Case(
        lambda v: seen(util.to_batch(_B1, features=["a"], target=v)), None, "b", 5
    ),
    "lancetorch.util.to_batch:dtype": Case(
        lambda v: seen(util.to_batch(_B1, dtype=v)), None, "float32", 5
    ),
    "lancetorch.util.to_batch:null_value": Case(
        lambda v: seen(util.to_batch(_NULLS, null_value=v)), 0.0, 1.0, "0"
    ),
    "lancetorch.util.to_batch:epoch": Case(
        lambda v: _image({"crop": "random"}, epoch=v), 0, 1, 1.5
    ),
    "lancetorch.util.decode_columns:data": Case(
        lambda v: seen(util.decode_columns(v)), _B1, _B2, 5
    ),
    "lancetorch.util.decode_columns:decode": Case(
        lambda v: seen(util.decode_columns(_STRINGS, v)),
        None,
        {"s": Text(tokenizer=lambda s: [len(x) for x in s])},
        {"s": Text},
    ),
    "lancetorch.util.decode_columns:dtype": Case(
        lambda v: seen(util.decode_columns(_B1, dtype=v)), None, "float32", 5
    ),
    "lancetorch.util.decode_columns:null_value": Case(
        lambda v: seen(util.decode_columns(_NULLS, null_value=v)), 0.0, 1.0, "0"
    ),
    "lancetorch.util.decode_columns:epoch": Case(
        lambda v: seen(
            util.decode_columns(_image_batch(), {"img": Image(size=4, crop="random")}, epoch=v)
        ),
        0,
        1,
        "1",
    ),
    "lancetorch.util.keep_rows:value": Case(
        lambda v: seen(util.keep_rows(v, [0])), [1, 2], [3, 4], 5
    ),
    "lancetorch.util.keep_rows:keep": Case(
        lambda v: seen(util.keep_rows(torch.tensor([1, 2]), v)), [0], [1], [0.5]
    ),
    "lancetorch.util.images_to_column:images": Case(
        lambda v: seen(util.images_to_column(v)),
        [np.zeros((2, 2, 3), np.uint8)],
        [np.ones((2, 2, 3), np.uint8)],
        5,
    ),
    "lancetorch.util.images_to_column:format": Case(
        lambda v: seen(util.images_to_column([np.zeros((2, 2, 3), np.uint8)], format=v)),
        "PNG",
        "JPEG",
        5,
    ),
    "lancetorch.util.images_to_column:**save": Case(
        lambda v: seen(
            util.images_to_column(
                [np.arange(48, dtype=np.uint8).reshape(4, 4, 3)], format="JPEG", **v
            )
        ),
        {},
        {"quality": 5},
        {"quality": [1]},
    ),
    "lancetorch.util.passthrough:batch": Case(
        lambda v: seen(util.passthrough(v)),
        _B1,
        _B2,
        why="returns whatever it is given, as a DataLoader collate_fn that changes nothing",
    ),
    # -- Permutation -----------------------------------------------------------------------------
    f"{VIEW}.identity:table": Case(
        lambda v: _first(Permutation.identity(v).select_columns(["id"]).with_format("arrow")),
        _t(),
        _t2(),
        5,
    ),
    f"{VIEW}.from_tables:base_table": Case(
        lambda v: _first(Permutation.from_tables(v, _perm_table(), 0).with_format("arrow")),
        _t(),
        _t2(),
        5,
    ),
    f"{VIEW}.from_tables:permutation_table": Case(
        lambda v: _first(Permutation.from_tables(_t(), v, 0).with_format("arrow")),
        _perm_table(),
        _perm_table(first=6),
        5,
    ),
    f"{VIEW}.from_tables:split": Case(
        lambda v: _first(Permutation.from_tables(_t(), _perm_table(), v).with_format("arrow")),
        0,
        1,
        1.5,
    ),
    f"{OPTIONS}.select_columns:columns": Case(
        lambda v: _first(_p().select_columns(v)), ["id"], ["x"], 5
    ),
    f"{OPTIONS}.remove_columns:columns": Case(
        lambda v: _first(_p().remove_columns(v)), ["id"], ["x"], 5
    ),
    f"{OPTIONS}.rename_column:old_name": Case(
        lambda v: _first(_p().rename_column(v, "z")), "id", "x", 5
    ),
    f"{OPTIONS}.rename_column:new_name": Case(
        lambda v: _first(_p().rename_column("id", v)), "z", "w", 5
    ),
    f"{OPTIONS}.rename_columns:column_map": Case(
        lambda v: _first(_p().rename_columns(v)), {"id": "z"}, {"x": "z"}, 5
    ),
    f"{OPTIONS}.with_format:format": Case(
        lambda v: _first(_p().with_format(v)), "arrow", "python", 5
    ),
    f"{OPTIONS}.with_format:decode": Case(
        lambda v: [
            dict(r)
            for r in _first(
                Permutation.identity(_t()).select_columns(["s"]).with_format("torch_dict", decode=v)
            )
        ],
        None,
        {"s": Text(tokenizer=lambda s: [len(x) for x in s])},
        {"s": Text},
    ),
    f"{OPTIONS}.with_transform:transform": Case(
        lambda v: _first(_p().with_transform(v)),
        lambda b: b.num_rows,
        lambda b: b.num_columns,
        5,
    ),
    f"{OPTIONS}.with_batch_size:batch_size": Case(
        lambda v: _ids(_p().with_batch_size(v)), 5, 6, 2.5
    ),
    f"{OPTIONS}.with_skip:skip": Case(lambda v: _first(_p().with_skip(v)), 0, 2, 1.5),
    f"{OPTIONS}.with_take:limit": Case(lambda v: _first(_p().with_take(v)), 4, 2, 1.5),
    f"{OPTIONS}.skip:skip": Case(lambda v: _first(_deprecated(_p().skip, v)), 0, 2, 1.5),
    f"{OPTIONS}.take:limit": Case(lambda v: _first(_deprecated(_p().take, v)), 4, 2, 1.5),
    f"{OPTIONS}.with_connection_factory:connection_factory": Case(
        lambda v: _first(pickle.loads(pickle.dumps(_p().with_connection_factory(v)))),
        _open_first,
        _reopen,
        5,
    ),
    f"{VIEW}.take_offsets:offsets": Case(lambda v: seen(_p().take_offsets(v)), [0], [1], ["a"]),
    f"{VIEW}.__getitem__:index": Case(lambda v: seen(_p()[v]), 0, 1, "a"),
    f"{VIEW}.iter:batch_size": Case(lambda v: _iter(batch_size=v), 5, 6, 2.5),
    f"{VIEW}.iter:skip_last_batch": Case(lambda v: _iter(skip_last_batch=v), False, True, 1),
    f"{VIEW}.iter:shuffle": Case(lambda v: _iter(shuffle=v, seed=0), False, True, 1),
    f"{VIEW}.iter:seed": Case(lambda v: _iter(shuffle=True, seed=v), 0, 1, 1.5),
    f"{VIEW}.iter:epoch": Case(lambda v: _iter(shuffle=True, seed=0, epoch=v), 0, 1, 1.5),
    f"{VIEW}.iter:rank": Case(lambda v: _iter(rank=v, world_size=2), 0, 1, 1.5),
    f"{VIEW}.iter:world_size": Case(lambda v: _iter(rank=0, world_size=v), 1, 2, 1.5),
    "lancetorch.permutation.Permutations:base_table": Case(
        lambda v: _first(Permutations(v, _perm_table())[0].with_format("arrow")), _t(), _t2(), 5
    ),
    "lancetorch.permutation.Permutations:permutation_table": Case(
        lambda v: _first(Permutations(_t(), v)[0].with_format("arrow")),
        _perm_table(),
        _perm_table(first=6),
        5,
    ),
    "lancetorch.permutation.splits.Permutations.get_by_name:name": Case(
        lambda v: _first(
            Permutations(_t(), _perm_table(("train", "test"))).get_by_name(v).with_format("arrow")
        ),
        "train",
        "test",
        5,
    ),
    "lancetorch.permutation.splits.Permutations.get_by_index:index": Case(
        lambda v: _first(Permutations(_t(), _perm_table()).get_by_index(v).with_format("arrow")),
        0,
        1,
        1.5,
    ),
    "lancetorch.permutation.split_names_of:permutation_table": Case(
        split_names_of, _perm_table(), _perm_table(("train", "test")), 5
    ),
    # -- PermutationBuilder ----------------------------------------------------------------------
    "lancetorch.permutation.PermutationBuilder:table": Case(
        lambda v: seen(PermutationBuilder(v).filter("id > 10").execute().to_arrow()),
        _t(),
        _t2(),
        5,
    ),
    "lancetorch.permutation.permutation_builder:table": Case(
        lambda v: seen(permutation_builder(v).filter("id > 10").execute().to_arrow()),
        _t(),
        _t2(),
        5,
    ),
    f"{BUILDER}.split_random:ratios": Case(
        lambda v: _build(lambda b: b.split_random(ratios=v, seed=0)), [0.5, 0.5], [0.25, 0.75], 0.5
    ),
    f"{BUILDER}.split_random:counts": Case(
        lambda v: _build(lambda b: b.split_random(counts=v, seed=0)), [12, 12], [6, 18], 12
    ),
    f"{BUILDER}.split_random:fixed": Case(
        lambda v: _build(lambda b: b.split_random(fixed=v, seed=0)), 2, 3, 2.5
    ),
    f"{BUILDER}.split_random:seed": Case(
        lambda v: _build(lambda b: b.split_random(fixed=2, seed=v)), 0, 1, 1.5
    ),
    f"{BUILDER}.split_random:clump_size": Case(
        lambda v: _build(lambda b: b.split_random(fixed=2, seed=0, clump_size=v)), None, 4, 1.5
    ),
    f"{BUILDER}.split_random:split_names": Case(
        lambda v: _build(lambda b: b.split_random(fixed=2, seed=0, split_names=v)),
        None,
        ["a", "b"],
        "ab",
    ),
    f"{BUILDER}.split_sequential:ratios": Case(
        lambda v: _build(lambda b: b.split_sequential(ratios=v)), [0.5, 0.5], [0.25, 0.75], 0.5
    ),
    f"{BUILDER}.split_sequential:counts": Case(
        lambda v: _build(lambda b: b.split_sequential(counts=v)), [12, 12], [6, 18], 12
    ),
    f"{BUILDER}.split_sequential:fixed": Case(
        lambda v: _build(lambda b: b.split_sequential(fixed=v)), 2, 3, 2.5
    ),
    f"{BUILDER}.split_sequential:split_names": Case(
        lambda v: _build(lambda b: b.split_sequential(fixed=2, split_names=v)),
        None,
        ["a", "b"],
        "ab",
    ),
    f"{BUILDER}.split_hash:columns": Case(
        lambda v: _build(lambda b: b.split_hash(v, [1, 1])), ["id"], ["s"], 5
    ),
    f"{BUILDER}.split_hash:split_weights": Case(
        lambda v: _build(lambda b: b.split_hash(["id"], v)), [1, 1], [1, 3], [1.5, 1]
    ),
    f"{BUILDER}.split_hash:discard_weight": Case(
        lambda v: _build(lambda b: b.split_hash(["id"], [1, 1], discard_weight=v)), 0, 2, 1.5
    ),
    f"{BUILDER}.split_hash:split_names": Case(
        lambda v: _build(lambda b: b.split_hash(["id"], [1, 1], split_names=v)),
        None,
        ["a", "b"],
        "ab",
    ),
    f"{BUILDER}.split_calculated:calculation": Case(
        lambda v: _build(lambda b: b.split_calculated(v)), "id % 2", "id % 3", 5
    ),
    f"{BUILDER}.split_calculated:split_names": Case(
        lambda v: _build(lambda b: b.split_calculated("id % 2", split_names=v)),
        None,
        ["a", "b"],
        "ab",
    ),
    f"{BUILDER}.shuffle:seed": Case(lambda v: _build(lambda b: b.shuffle(seed=v)), 0, 1, 1.5),
    f"{BUILDER}.shuffle:clump_size": Case(
        lambda v: _build(lambda b: b.shuffle(seed=0, clump_size=v)), None, 4, 1.5
    ),
    f"{BUILDER}.filter:filter": Case(
        lambda v: _build(lambda b: b.filter(v)), "id > 3", "id > 5", 5
    ),
    # -- BatchSampler ----------------------------------------------------------------------------
    f"{SAMPLER}:data_source": Case(lambda v: _sampler(data_source=v), N, N - 4, 2.5),
    f"{SAMPLER}:batch_size": Case(lambda v: _sampler(batch_size=v), 5, 6, 2.5),
    f"{SAMPLER}:shuffle": Case(lambda v: _sampler(shuffle=v), True, False, 1),
    f"{SAMPLER}:seed": Case(lambda v: _sampler(seed=v), 0, 1, 1.5),
    f"{SAMPLER}:drop_last": Case(lambda v: _sampler(drop_last=v), False, True, 1),
    f"{SAMPLER}:clump_size": Case(lambda v: _sampler(clump_size=v), None, 4, 1.5),
    f"{SAMPLER}:rank": Case(lambda v: _sampler(rank=v, world_size=2), 0, 1, 1.5),
    f"{SAMPLER}:world_size": Case(lambda v: _sampler(rank=0, world_size=v), 1, 2, 1.5),
    f"{SAMPLER}:uneven": Case(lambda v: _sampler(uneven=v, rank=0, world_size=5), "pad", "drop", 5),
    f"{SAMPLER}:order": Case(lambda v: _sampler(order=v), "fisher-yates", "bijection", 5),
    f"{SAMPLER}.set_epoch:epoch": Case(_sampler_epoch, 0, 1, 1.5),
    f"{SAMPLER}.order:epoch": Case(lambda v: _s().order(v).tolist(), None, 1, 1.5),
    f"{SAMPLER}.rows_at:epoch": Case(lambda v: _s().rows_at(v, np.arange(4)).tolist(), 0, 1, 1.5),
    f"{SAMPLER}.rows_at:positions": Case(
        lambda v: _s().rows_at(0, v).tolist(), np.arange(4), np.arange(1, 5), ["a"]
    ),
    f"{SAMPLER}.shard_size:start": Case(lambda v: _s().shard_size(v), 0, 5, 1.5),
    f"{SAMPLER}.shard_positions:start": Case(
        lambda v: _s().shard_positions(v, 0, 4).tolist(), 0, 5, 1.5
    ),
    f"{SAMPLER}.shard_positions:lo": Case(
        lambda v: _s().shard_positions(0, v, 4).tolist(), 0, 2, 1.5
    ),
    f"{SAMPLER}.shard_positions:hi": Case(
        lambda v: _s().shard_positions(0, 0, v).tolist(), 4, 2, 1.5
    ),
    f"{SAMPLER}.shard_positions:step": Case(
        lambda v: _s().shard_positions(0, 0, 4, v).tolist(), 1, 2, 0
    ),
    f"{SAMPLER}.shard_windows:epoch": Case(lambda v: _windowed().shard_windows(v, 5), 0, 1, 1.5),
    f"{SAMPLER}.shard_windows:start": Case(lambda v: _windowed().shard_windows(0, v), 0, 5, 1.5),
    f"{SAMPLER}.batch_count:rows": Case(lambda v: _s().batch_count(v), 10, 11, 2.5),
    f"{SAMPLER}.batched_rows:rows": Case(lambda v: _s().batched_rows(v), 10, 11, -1),
    f"{SAMPLER}.record:batches": Case(_recorded, 1, 2, -1),
    f"{SAMPLER}.shard_rows:epoch": Case(lambda v: _s().shard_rows(v).tolist(), 0, 1, 1.5),
    f"{SAMPLER}.shard_rows:start": Case(lambda v: _s().shard_rows(0, v).tolist(), 0, 5, 1.5),
    f"{SAMPLER}.resumed_positions:positions": Case(
        _relaid, np.array([0, 1, 2]), np.array([3, 4, 5]), [0.5]
    ),
    f"{SAMPLER}.resumed_positions:world_size": Case(lambda v: _relaid(np.arange(10), v), 2, 1, 1.5),
    f"{SAMPLER}.state_dict:batches": Case(lambda v: _sampler_state(v)["position"], None, 1, 1.5),
    f"{SAMPLER}.load_state_dict:state": Case(_after, _sampler_state(0), _sampler_state(1), 5),
    "lancetorch.sampler.Windows:clump_size": Case(
        lambda v: _sampler(order=Windows(v, 12)), 4, 6, 0
    ),
    "lancetorch.sampler.Windows:window_rows": Case(
        lambda v: _sampler(order=Windows(4, v)), 12, 8, 2.5
    ),
    "lancetorch.sampler.distributed_rank:rank": Case(lambda v: distributed_rank(v, 2), 0, 1, 1.5),
    "lancetorch.sampler.distributed_rank:world_size": Case(
        lambda v: distributed_rank(0, v), 1, 2, 1.5
    ),
    # -- Loader ----------------------------------------------------------------------------------
    "lancetorch.loader.Loader:data": Case(
        lambda v: _loader(data=v), _numbers(_t()), _numbers(_t2()), 5
    ),
    "lancetorch.loader.Loader:batch_size": Case(lambda v: _loader(batch_size=v), 5, 6, 2.5),
    "lancetorch.loader.Loader:shuffle": Case(lambda v: _loader(shuffle=v), True, False, 1),
    "lancetorch.loader.Loader:seed": Case(lambda v: _loader(seed=v), 0, 1, 1.5),
    "lancetorch.loader.Loader:drop_last": Case(lambda v: _loader(drop_last=v), False, True, 1),
    "lancetorch.loader.Loader:prefetch": Case(
        lambda v: _loader(prefetch=v),
        4,
        wrong=1.5,
        why="how many batches are made ahead: the batches are the same",
    ),
    "lancetorch.loader.Loader:pin_memory": Case(
        lambda v: _loader(pin_memory=v),
        False,
        wrong=1,
        why="pins only where CUDA is present; the values are the same",
    ),
    "lancetorch.loader.Loader:dtype": Case(lambda v: _loader(dtype=v), None, "float32", 5),
    "lancetorch.loader.Loader:null_value": Case(
        lambda v: _ids(
            Loader(
                lancetorch.connect("memory://").create_table("n", pa.table({"a": [1.0, None]})),
                2,
                shuffle=False,
                null_value=v,
            )
        ),
        0.0,
        1.0,
        "0",
    ),
    "lancetorch.loader.Loader:profile": Case(
        lambda v: _loader(profile=v),
        False,
        wrong=1,
        why="marks torch.profiler ranges only; the batches are the same",
    ),
    "lancetorch.loader.Loader:window_rows": Case(
        lambda v: _window_loader(window_rows=v, clump_size=4), 1 << 18, 8, 1.5
    ),
    "lancetorch.loader.Loader:clump_size": Case(
        lambda v: _window_loader(clump_size=v, window_rows=8), 16384, 4, 1.5
    ),
    "lancetorch.loader.Loader:rank": Case(lambda v: _loader(rank=v, world_size=2), 0, 1, 1.5),
    "lancetorch.loader.Loader:world_size": Case(lambda v: _loader(rank=0, world_size=v), 1, 2, 1.5),
    "lancetorch.loader.Loader:uneven": Case(
        lambda v: _loader(uneven=v, rank=0, world_size=5), "pad", "drop", 5
    ),
    "lancetorch.loader.Loader:order": Case(
        lambda v: _loader(order=v), "fisher-yates", "bijection", 5
    ),
    "lancetorch.loader.Loader:threads": Case(
        lambda v: _loader(threads=v),
        1,
        wrong=1.5,
        why="batches come in order whatever the number of threads",
    ),
    "lancetorch.loader.Loader:per_column": Case(lambda v: _loader(per_column=v), False, True, 1),
    "lancetorch.loader.Loader:decode": Case(
        lambda v: _loader(
            data=Permutation.identity(_t()).select_columns(["s"]), per_column=True, decode=v
        ),
        None,
        {"s": Text(tokenizer=lambda s: [len(x) for x in s])},
        {"s": Text},
    ),
    "lancetorch.loader.Loader:features": Case(lambda v: _loader(features=v), None, ["x"], 5),
    "lancetorch.loader.Loader:target": Case(
        lambda v: _loader(features=["x"], target=v), None, "id", 5
    ),
    "lancetorch.loader.Loader:device": Case(lambda v: _loader(device=v), None, "meta", 1.5),
    "lancetorch.loader.Loader:non_blocking": Case(
        lambda v: _loader(non_blocking=v),
        True,
        wrong=1,
        why="lets a copy to a CUDA device overlap the loop; the values are the same",
    ),
    "lancetorch.loader.Loader.set_epoch:epoch": Case(_with_epoch, 0, 1, 1.5),
    "lancetorch.loader.Loader.load_state_dict:state": Case(
        _loader_after, _loader_state(0), _loader_state(2), 5
    ),
    "lancetorch.loader.Loader.merge_state_dicts:states": Case(
        lambda v: Loader.merge_state_dicts(v)["position"],
        [_loader_state(0)],
        [_loader_state(2)],
        5,
    ),
    # -- StreamingDataset ------------------------------------------------------------------------
    "lancetorch.streaming.StreamingDataset:table": Case(lambda v: _stream(table=v), _t(), _t2(), 5),
    "lancetorch.streaming.StreamingDataset:num_splits": Case(
        lambda v: _stream(num_splits=v), None, 2, 2.5
    ),
    "lancetorch.streaming.StreamingDataset:shuffle": Case(
        lambda v: _stream(num_splits=2, shuffle=v), True, False, 1
    ),
    "lancetorch.streaming.StreamingDataset:shuffle_seed": Case(
        lambda v: _stream(num_splits=2, shuffle_seed=v), 0, 1, 1.5
    ),
    "lancetorch.streaming.StreamingDataset:epoch": Case(
        lambda v: _stream(num_splits=2, epoch=v), 0, 1, 1.5
    ),
    "lancetorch.streaming.StreamingDataset:rank": Case(
        lambda v: _stream(rank=v, world_size=2), 0, 1, 1.5
    ),
    "lancetorch.streaming.StreamingDataset:world_size": Case(
        lambda v: _stream(world_size=v), 1, 2, 1.5
    ),
    "lancetorch.streaming.StreamingDataset:read_batch_size": Case(
        lambda v: _stream(read_batch_size=v),
        64,
        wrong=1.5,
        why="rows a take reads: the rows and their order are the same",
    ),
    "lancetorch.streaming.StreamingDataset:io_queue_depth": Case(
        lambda v: _stream(io_queue_depth=v),
        4,
        wrong=1.5,
        why="takes in flight ahead of the consumer: the rows are the same",
    ),
    "lancetorch.streaming.StreamingDataset:columns": Case(
        lambda v: _stream(columns=v), ["id"], ["x"], 5
    ),
    "lancetorch.streaming.StreamingDataset:shuffle_clump_size": Case(
        lambda v: _stream(num_splits=2, shuffle_clump_size=v), None, 4, 1.5
    ),
    "lancetorch.streaming.StreamingDataset:filter": Case(
        lambda v: _stream(filter=v), None, "id > 5", 5
    ),
    "lancetorch.streaming.StreamingDataset:transform": Case(
        lambda v: _stream(transform=v), None, lambda b: b.column("id").to_pylist(), 5
    ),
    "lancetorch.streaming.StreamingDataset:transform_parallelism": Case(
        lambda v: _stream(transform_parallelism=v),
        None,
        wrong=1.5,
        why="batches transformed at once: the rows and their order are the same",
    ),
    "lancetorch.streaming.StreamingDataset:pack_sequences": Case(
        lambda v: _packed(pack_sequences=v), 4, 8, 2.5
    ),
    "lancetorch.streaming.StreamingDataset:pack_blocks": Case(
        lambda v: _packed(pack_blocks=v), None, 2, 2.5
    ),
    "lancetorch.streaming.StreamingDataset:eos_id": Case(lambda v: _packed(eos_id=v), 0, 99, 1.5),
    "lancetorch.streaming.StreamingDataset:pad_id": Case(
        lambda v: _packed(pad_id=v, blocks_per_epoch=64), 0, 98, 1.5
    ),
    "lancetorch.streaming.StreamingDataset:blocks_per_epoch": Case(
        lambda v: _packed(blocks_per_epoch=v), 16, 8, 2.5
    ),
    "lancetorch.streaming.StreamingDataset:on_transform_error": Case(
        lambda v: outcome(lambda: _stream(transform=_fails_on_row_3, on_transform_error=v)),
        "raise",
        "skip",
        5,
    ),
    "lancetorch.streaming.StreamingDataset:transform_queue_depth": Case(
        lambda v: _stream(transform_queue_depth=v),
        None,
        wrong=1.5,
        why="transformed batches a split may hold: the rows are the same",
    ),
    "lancetorch.streaming.StreamingDataset:connection_factory": Case(
        lambda v: _stream(connection_factory=v),
        None,
        wrong=5,
        why="only a pickled dataset (a worker's) reopens its table through it "
        "(tests/test_streaming.py)",
    ),
    "lancetorch.streaming.StreamingDataset:worker_info_override": Case(
        lambda v: _stream(num_splits=2, worker_info_override=v),
        None,
        SimpleNamespace(id=1, num_workers=2),
        5,
    ),
    "lancetorch.streaming.StreamingDataset:prefetch_batches": Case(
        lambda v: _stream(prefetch_batches=v),
        None,
        wrong=1.5,
        why="the old name of io_queue_depth (takes in flight): the rows are the same",
    ),
    "lancetorch.streaming.StreamingDataset.load_state_dict:state": Case(
        _resumed, _stream_state(0), _stream_state(3), 5
    ),
    "lancetorch.streaming.StreamingDataset.merge_state_dicts:states": Case(
        lambda v: StreamingDataset.merge_state_dicts(v),
        [_stream_state(0)],
        [_stream_state(3)],
        5,
    ),
    "lancetorch.streaming.StreamingDataLoader:dataset": Case(
        lambda v: _ids(StreamingDataLoader(v, batch_size=4)),
        StreamingDataset(_t(), columns=["id"]),
        StreamingDataset(_t2(), columns=["id"]),
        5,
    ),
    "lancetorch.streaming.StreamingDataLoader:*args": Case(
        lambda v: _ids(StreamingDataLoader(StreamingDataset(_t(), columns=["id"]), *v)),
        (4,),
        (5,),
        ("4",),
    ),
    "lancetorch.streaming.StreamingDataLoader:**kwargs": Case(
        lambda v: _ids(StreamingDataLoader(StreamingDataset(_t(), columns=["id"]), **v)),
        {"batch_size": 4},
        {"batch_size": 5},
        {"batch_size": "4"},
    ),
    # -- decode specs ----------------------------------------------------------------------------
    "lancetorch.decode.Tokens:max_length": Case(lambda v: _tokens({"max_length": v}), None, 2, 2.5),
    "lancetorch.decode.Tokens:pad_value": Case(lambda v: _tokens({"pad_value": v}), 0, -1, 1.5),
    "lancetorch.decode.Tokens:truncate": Case(
        lambda v: outcome(lambda: _tokens({"max_length": 2, "truncate": v})), True, False, 1
    ),
    "lancetorch.decode.Tokens:pad_to_max_length": Case(
        lambda v: _tokens({"max_length": 8, "pad_to_max_length": v}), False, True, 1
    ),
    "lancetorch.decode.Tokens:pack": Case(
        lambda v: _tokens({"max_length": 3, "pack": v}), False, True, 1
    ),
    "lancetorch.decode.Tokens:blocks": Case(
        lambda v: _tokens({"max_length": 3, "pack": True, "blocks": v}), None, 8, 2.5
    ),
    "lancetorch.decode.Tokens.decode:batch": Case(
        lambda v: seen(Tokens().decode(v, "tok")), _token_batch(), _token_batch(2), 5
    ),
    "lancetorch.decode.Tokens.decode:column": Case(
        lambda v: seen(
            Tokens().decode(_token_batch().append_column("t2", pa.array([[9], [8]])), v)
        ),
        "tok",
        "t2",
        1.5,
    ),
    "lancetorch.decode.Tokens.outputs:column": Case(lambda v: Tokens().outputs(v), "tok", "ids", 5),
    "lancetorch.decode.Text.outputs:column": Case(lambda v: Text().outputs(v), "s", "t", 5),
    "lancetorch.decode.Image.outputs:column": Case(lambda v: Image().outputs(v), "img", "i", 5),
    "lancetorch.decode.Text:tokenizer": Case(
        lambda v: seen(util.to_batch(_STRINGS, {"s": Text(tokenizer=v)})), None, len, 5
    ),
    "lancetorch.decode.Text.decode:batch": Case(
        lambda v: seen(Text().decode(v, "s")), _STRINGS, _batch(s=["d"]), 5
    ),
    "lancetorch.decode.Text.decode:column": Case(
        lambda v: seen(Text().decode(_batch(s=["a"], t=["b"]), v)), "s", "t", 1.5
    ),
    "lancetorch.decode.Image:size": Case(lambda v: _image({"size": v}), 4, (4, 6), 4.0),
    "lancetorch.decode.Image:layout": Case(lambda v: _image({"layout": v}), "NCHW", "NHWC", 5),
    "lancetorch.decode.Image:crop": Case(lambda v: _image({"crop": v}), "center", "random", 5),
    "lancetorch.decode.Image:scale": Case(
        lambda v: _image({"crop": "random", "scale": v}), (0.08, 1.0), (0.3, 0.4), "0.5"
    ),
    "lancetorch.decode.Image:ratio": Case(
        lambda v: _image({"crop": "random", "ratio": v}), (3 / 4, 4 / 3), (0.5, 0.6), ("1", "2")
    ),
    "lancetorch.decode.Image:flip": Case(lambda v: _image({"flip": v}), False, True, 1),
    "lancetorch.decode.Image:seed": Case(
        lambda v: _image({"crop": "random", "seed": v}), 0, 1, 1.5
    ),
    "lancetorch.decode.Image:jpeg": Case(
        lambda v: _image({"jpeg": v}, batch=_jpeg_batch()), "crop", "full", 5
    ),
    "lancetorch.decode.Image:on_error": Case(
        lambda v: outcome(lambda: _image({"on_error": v}, _bad_images())), "raise", "skip", 5
    ),
    "lancetorch.decode.Image.decode_rows:batch": Case(
        lambda v: seen(Image(size=4).decode_rows(v, "img")), _image_batch(), _image_batch(3), 5
    ),
    "lancetorch.decode.Image.decode_rows:column": Case(
        lambda v: seen(
            Image(size=4).decode_rows(
                _image_batch().append_column("i2", _image_batch(3).column(0)), v
            )
        ),
        "img",
        "i2",
        1.5,
    ),
    "lancetorch.decode.Image.decode_rows:epoch": Case(
        lambda v: seen(Image(size=4, crop="random").decode_rows(_image_batch(), "img", v)),
        0,
        1,
        1.5,
    ),
    "lancetorch.decode.Image.decode:batch": Case(
        lambda v: seen(Image(size=4).decode(v, "img")), _image_batch(), _image_batch(3), 5
    ),
    "lancetorch.decode.Image.decode:column": Case(
        lambda v: seen(
            Image(size=4).decode(_image_batch().append_column("i2", _image_batch(3).column(0)), v)
        ),
        "img",
        "i2",
        1.5,
    ),
    "lancetorch.decode.Image.decode:epoch": Case(
        lambda v: seen(Image(size=4, crop="random").decode(_image_batch(), "img", v)),
        0,
        1,
        1.5,
    ),
    # -- queries ---------------------------------------------------------------------------------
    f"{QUERY}.TakeQuery.select:columns": Case(
        lambda v: seen(_t().take_offsets([0]).select(v).to_arrow()), ["id"], ["x"], 5
    ),
    f"{QUERY}.TakeQuery.with_row_id:with_row_id": Case(
        lambda v: seen(_t().take_offsets([1]).select(["id"]).with_row_id(v).to_arrow()),
        False,
        True,
        1,
    ),
    f"{QUERY}.TakeQuery.to_batches:max_batch_length": Case(
        lambda v: seen(_t().take_offsets([0, 1, 2]).select(["id"]).to_batches(max_batch_length=v)),
        None,
        2,
        1.5,
    ),
    **{
        f"{QUERY}.TakeQuery.{read}:timeout": Case(
            functools.partial(_timed, read), None, datetime.timedelta(microseconds=1), 5
        )
        for read in ("to_arrow", "to_batches", "to_list", "to_pandas", "to_polars")
    },
    f"{QUERY}.ScanQuery.to_batches:timeout": Case(
        functools.partial(_timed, "to_batches"), None, datetime.timedelta(microseconds=1), 5
    ),
    f"{QUERY}.ScanQuery.to_batches:batch_size": Case(
        lambda v: [b.num_rows for b in _t().search().to_batches(v)], None, 5, 1.5
    ),
    f"{QUERY}.ScanQuery.to_batches:max_batch_length": Case(
        lambda v: [b.num_rows for b in _t().search().to_batches(max_batch_length=v)], None, 5, "5"
    ),
    f"{QUERY}.TakeQuery.to_pandas:**kwargs": Case(
        lambda v: seen(_t().take_offsets([0]).select(["s"]).to_pandas(**v)),
        {},
        {"strings_to_categorical": True},
        {"no_such_option": 1},
    ),
    f"{QUERY}.ScanQuery.limit:limit": Case(
        lambda v: seen(_t().search().select(["id"]).limit(v).to_arrow()), None, 2, 2.5
    ),
    f"{QUERY}.ScanQuery.offset:offset": Case(
        lambda v: seen(_t().search().select(["id"]).offset(v).to_arrow()), 0, 2, 2.5
    ),
    f"{QUERY}.ScanQuery.where:where": Case(
        lambda v: seen(_t().search().select(["id"]).where(v).to_arrow()), "id > 3", "id > 5", 5
    ),
    f"{QUERY}.ScanQuery.where:prefilter": Case(
        lambda v: seen(_t().search().select(["id"]).where("id > 3", prefilter=v).to_arrow()),
        True,
        wrong="no",
        why="a scan has no vector limit to filter after: both values filter every row first, "
        "as LanceDB's scan does",
    ),
}

# Parameters whose effect no call result shows, and why; each is checked elsewhere.
EXEMPT: dict[str, str] = {
    # Made by connect(), whose rows above check the same arguments.
    "lancetorch.Connection:uri": "made by connect(uri)",
    "lancetorch.Connection:storage_options": "made by connect(storage_options=)",
    "lancetorch.Connection:read_timeout": "made by connect(read_timeout=)",
    "lancetorch.Connection:read_consistency_interval": "made by connect()",
    "lancetorch.Table:read_consistency_interval": "made by Connection.open_table",
    "lancetorch.Table:pinned": "made by Connection.open_table and pickling",
    # Made by a Connection, not by users.
    "lancetorch.Table:name": "made by Connection.create_table / open_table",
    "lancetorch.Table:backend": "made by Connection.create_table / open_table",
    "lancetorch.query.TakeQuery:table": "made by Table.take_offsets / take_row_ids",
    "lancetorch.query.TakeQuery:offsets": "made by Table.take_offsets / take_row_ids",
    "lancetorch.query.ScanQuery:table": "made by Table.search",
    # LanceDB's constructor signature; identity / from_tables (rows above) make them.
    "lancetorch.permutation.Permutation:base_table": "made by identity / from_tables",
    "lancetorch.permutation.Permutation:rows": "made by identity / from_tables",
    "lancetorch.permutation.Permutation:permutation_table": "made by identity / from_tables",
    "lancetorch.permutation.Permutation:split": "made by identity / from_tables",
    "lancetorch.permutation.Permutation:selection": "made by select_columns / rename_column",
    # A record the Loader reads from a Permutation: plain fields, no behaviour of their own.
    **{
        f"lancetorch.permutation.ReadPlan:{field}": "a record of Permutation.read_plan()"
        for field in (
            "table",
            "rows",
            "offset",
            "length",
            "columns",
            "renames",
            "transform",
            "decode",
            "row_ids",
        )
    },
    # Format functions a Permutation calls with its own Arrow batches: one argument, the batch.
    **{
        f"lancetorch.permutation.formats.Transforms.{name}:batch": "called by a Permutation "
        "with its own batches (tests/test_permutation.py checks each format)"
        for name in (
            "arrow2arrow",
            "arrow2python",
            "arrow2python_col",
            "arrow2polars",
            "arrow2pandas",
            "arrow2numpy",
            "arrow2torch_col",
            "arrow2torch",
            "arrow2torch_dict",
        )
    },
    # Specs share one signature; Tokens and Text draw nothing at random.
    "lancetorch.decode.Tokens.decode:epoch": "not used by Tokens (specs share one signature)",
    "lancetorch.decode.Text.decode:epoch": "not used by Text (specs share one signature)",
    # LanceDB's asynchronous API: every call raises NotImplementedError saying what to use.
    "lancetorch.AsyncConnection:*args": "always NotImplementedError (use connect)",
    "lancetorch.AsyncConnection:**kwargs": "always NotImplementedError (use connect)",
    "lancetorch.connect_async:uri": "always NotImplementedError (use connect)",
    "lancetorch.connect_async:**kwargs": "always NotImplementedError (use connect)",
}


def _walked() -> list[str]:
    return [f"{e.name}:{spelled(p)}" for e in entries() for p in e.params]


def test_every_public_parameter_has_a_row():
    walked = _walked()
    missing = [k for k in walked if k not in CASES and k not in EXEMPT]
    assert not missing, f"public parameters with no row in CASES or EXEMPT: {missing}"
    stale = sorted(set(CASES) - set(walked)) + sorted(set(EXEMPT) - set(walked))
    assert not stale, f"rows for parameters the public API no longer has: {stale}"
    both = sorted(set(CASES) & set(EXEMPT))
    assert not both, f"parameters both checked and exempt: {both}"


def test_each_row_checks_something():
    for key, case in CASES.items():
        assert case.changed is not _NOTHING or case.wrong is not _NOTHING, key
        if case.changed is _NOTHING or case.wrong is _NOTHING:
            assert case.why, f"{key}: say why it has no changing value or no wrong one"


@pytest.mark.parametrize("key", [k for k, c in CASES.items() if c.changed is not _NOTHING])
def test_a_setting_changes_the_result(key):
    case = CASES[key]
    base, changed = case.run(case.base), case.run(case.changed)
    assert seen(base) != seen(changed), f"{key}: {case.changed!r} gives what {case.base!r} gives"


@pytest.mark.parametrize("key", [k for k, c in CASES.items() if c.wrong is not _NOTHING])
def test_a_wrong_value_is_refused(key):
    case = CASES[key]
    case.run(case.base)  # the baseline runs: the refusal below is the wrong value's
    with pytest.raises((TypeError, ValueError)):
        case.run(case.wrong)
