"""Differential tests: the same calls on lancedb 0.40 (the reference) and on lancetorch, with
results and exception types compared.

Each test builds the same data in both libraries and runs one piece of code written against
LanceDB's API on each. Where the two differ on purpose, the README's "Differences from LanceDB"
lists it and the test says so.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import lancedb
import lancedb.permutation as ldb_perm
import lancetorch
import lancetorch.permutation as lt_perm
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lancetorch.util import tbl_to_tensor

N = 60
PROPS = settings(max_examples=25, deadline=None)


class Lib:
    """One library under test: its connect, its permutation module, its name."""

    def __init__(self, name: str, module: Any, perm: Any) -> None:
        self.name, self.module, self.perm = name, module, perm

    def connect(self, uri: Any = "memory://") -> Any:
        return self.module.connect(uri)

    def __repr__(self) -> str:
        return self.name


LANCEDB = Lib("lancedb", lancedb, ldb_perm)
LANCETORCH = Lib("lancetorch", lancetorch, lt_perm)


def sample(n: int = N) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "x": pa.array([i * 0.5 for i in range(n)], pa.float64()),
            "label": pa.array([i % 3 for i in range(n)], pa.int64()),
            "s": pa.array([f"row{i}" for i in range(n)]),
        }
    )


def outcome(fn: Callable[[], Any]) -> tuple:
    """("ok", value) or ("raise", exception type, message)."""
    try:
        return ("ok", fn())
    except Exception as e:  # the point is to compare them
        return ("raise", type(e), str(e))


def key_words(message: str) -> str:
    """The words of a LanceDB message that a test would match: without Lance's "Invalid
    input, " prefix, up to the first quoted name."""
    return message.removeprefix("Invalid input, ").split("`")[0].split("{")[0].strip()


def same(run: Callable[[Lib], Any], compare: Callable[[Any, Any], bool] | None = None) -> Any:
    """Run ``run`` on both libraries: both raise the same exception type with LanceDB's key
    words in lancetorch's message, or both return equal values. Returns lancetorch's value."""
    ref, got = outcome(lambda: run(LANCEDB)), outcome(lambda: run(LANCETORCH))
    if ref[0] == "raise":
        assert got[0] == "raise", (
            f"lancedb raised {ref[1].__name__}: {ref[2]}; lancetorch gave {got[1]!r}"
        )
        assert got[1] is ref[1], (
            f"lancedb raised {ref[1].__name__}, lancetorch {got[1].__name__}: {got[2]}"
        )
        assert key_words(ref[2]) in got[2], (ref[2], got[2])
        return None
    assert got[0] == "ok", f"lancedb gave {ref[1]!r}; lancetorch raised {got[1].__name__}: {got[2]}"
    equal = compare(ref[1], got[1]) if compare is not None else ref[1] == got[1]
    assert equal, f"lancedb: {ref[1]!r}\nlancetorch: {got[1]!r}"
    return got[1]


def tables_equal(a: pa.Table, b: pa.Table) -> bool:
    return a.combine_chunks().equals(b.combine_chunks())


# -- connections and tables -----------------------------------------------------------------------


@pytest.mark.parametrize("uri", ["memory://", "memory:///"])
def test_connect_and_create(uri):
    def run(lib):
        db = lib.module.connect(uri)
        t = db.create_table("t", sample())
        return (t.count_rows(), len(t), t.schema, db.list_tables().tables, t.to_arrow())

    same(run, lambda a, b: a[:4] == b[:4] and tables_equal(a[4], b[4]))


def test_connect_local_options(tmp_path):
    from datetime import timedelta

    same(
        lambda lib: (
            type(
                lib.module.connect(tmp_path / lib.name, read_consistency_interval=timedelta(0))
            ).__name__
            in ("LanceDBConnection", "Connection")
        )
    )
    assert isinstance(lancetorch.connect("memory://"), lancetorch.DBConnection)


def test_table_reads():
    tables = {lib.name: lib.connect().create_table("t", sample()) for lib in (LANCEDB, LANCETORCH)}

    def t(lib):
        return tables[lib.name]

    got = same(lambda lib: t(lib).__getitems__([5, 1, 5, 0]), tables_equal)
    assert isinstance(got, pa.Table)  # LanceDB's __getitems__ gives a pyarrow Table
    same(lambda lib: t(lib).take_offsets([1, 4, 7]).to_arrow(), tables_equal)
    same(lambda lib: t(lib).take_offsets([1, 4, 7]).select(["s", "id"]).to_arrow(), tables_equal)
    same(lambda lib: t(lib).take_offsets([2, 3]).to_list())
    same(lambda lib: t(lib).take_offsets([2, 3]).to_pandas().to_dict("list"))
    same(lambda lib: t(lib).take_row_ids([3, 9]).to_arrow(), tables_equal)
    same(lambda lib: t(lib).head(4), tables_equal)
    same(lambda lib: t(lib).search(None).to_arrow(), tables_equal)
    same(lambda lib: t(lib).search().limit(3).to_arrow(), tables_equal)
    same(lambda lib: t(lib).to_pandas().to_dict("list"))
    same(lambda lib: type(t(lib).to_polars()).__name__)


@PROPS
@given(offsets=st.lists(st.integers(0, N - 1), max_size=30))
def test_getitems_matches(offsets):
    tables = [lib.connect().create_table("t", sample()) for lib in (LANCEDB, LANCETORCH)]
    if not offsets:
        return  # LanceDB's take of no offsets reads nothing to compare
    ref, got = (t.__getitems__(offsets) for t in tables)
    assert tables_equal(ref, got)


def test_dataloader_with_tbl_to_tensor():
    data = sample().select(["x"]).append_column("y", pa.array(np.arange(N) * 2.0))

    def run(lib):
        table = lib.connect().create_table("t", data)
        collate = lancedb.util.tbl_to_tensor if lib is LANCEDB else tbl_to_tensor
        loader = torch.utils.data.DataLoader(table, batch_size=16, collate_fn=collate)
        return [b.tolist() for b in loader]

    same(run)


def test_create_table_infers_an_embedding_column():
    df = pd.DataFrame({"vector": [[1.0, 2.0], [3.0, 4.0]], "id": [1, 2]})
    same(lambda lib: lib.connect().create_table("v", df).schema.field("vector").type)


# -- the permutation table ------------------------------------------------------------------------


BUILDS: dict[str, Callable[[Any], Any]] = {
    "identity": lambda b: b,
    "sequential counts": lambda b: b.split_sequential(counts=[40, 20]),
    "sequential ratios named": lambda b: b.split_sequential(
        ratios=[0.5, 0.3, 0.2], split_names=["train", "validation", "test"]
    ),
    "sequential fixed": lambda b: b.split_sequential(fixed=4),
    "filtered sequential": lambda b: b.filter("label != 1").split_sequential(counts=[30, 10]),
    "calculated": lambda b: b.split_calculated("id % 3", split_names=["a", "b", "c"]),
    "filtered calculated": lambda b: b.filter("id >= 10").split_calculated("label"),
}


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_permutation_tables_match(build):
    """Orders that depend on no seed come out the same, row for row, in LanceDB's layout."""

    def run(lib):
        base = lib.connect().create_table("t", sample())
        perm = BUILDS[build](lib.perm.permutation_builder(base)).execute()
        arrow = perm.to_arrow().select(["row_id", "split_id"])
        # LanceDB records the base version it read; lancetorch records none (a memory table
        # has no versions to pin).
        meta = {k: v for k, v in (perm.schema.metadata or {}).items() if k != b"base_version"}
        order = sorted(zip(arrow["split_id"].to_pylist(), range(arrow.num_rows)))
        rows = [(s, arrow["row_id"][i].as_py()) for s, i in order]
        return (perm.count_rows(), [(f.name, f.type, f.nullable) for f in arrow.schema], meta, rows)

    same(run)


@PROPS
@given(
    how=st.one_of(
        st.builds(lambda c: {"counts": c}, st.lists(st.integers(1, 20), min_size=1, max_size=4)),
        st.builds(lambda k: {"fixed": k}, st.integers(1, 8)),
        st.builds(
            lambda r: {"ratios": r},
            st.lists(st.sampled_from([0.1, 0.2, 0.25, 0.5]), min_size=1, max_size=4),
        ),
    ),
    seed=st.integers(0, 2**32),
    shuffle=st.booleans(),
)
def test_random_splits_have_the_same_sizes(how, seed, shuffle):
    """Seeded orders differ (each library has its own generator); the sizes of the splits,
    and which rows a split could hold, do not."""
    if "ratios" in how and sum(how["ratios"]) > 1:
        how = {"ratios": how["ratios"][:1]}

    def run(lib):
        base = lib.connect().create_table("t", sample())
        builder = lib.perm.permutation_builder(base).split_random(seed=seed, **how)
        if shuffle:
            builder = builder.shuffle(seed=seed)
        arrow = builder.execute().to_arrow()
        ids = arrow["split_id"].to_pylist()
        rows = arrow["row_id"].to_pylist()
        return sorted((s, ids.count(s)) for s in set(ids)), len(set(rows)) == len(rows)

    same(run)


def _perm_pair(build: Callable[[Any], Any]) -> dict[str, tuple[Any, Any]]:
    out = {}
    for lib in (LANCEDB, LANCETORCH):
        base = lib.connect().create_table("t", sample())
        out[lib.name] = (base, build(lib.perm.permutation_builder(base)).execute())
    return out


def _ids(p: Any) -> list[int]:
    return [r["id"] for batch in p.iter(1000) for r in batch]


@pytest.mark.parametrize("writer", [LANCEDB, LANCETORCH], ids=repr)
def test_each_reads_the_others_permutation_table(writer, tmp_path):
    """A permutation table written by one library, saved and reopened, reads the same rows in
    the same order in the other: on a disk table of two fragments with deleted rows, where a
    row id is not a row offset."""
    import lance

    data_dir = tmp_path / "data"
    first = lancetorch.connect(data_dir).create_table("t", sample(30))
    first.add(sample(60).slice(30))
    lance.dataset(first.uri).delete("id % 7 = 3")
    bases = {lib.name: lib.connect(data_dir).open_table("t") for lib in (LANCEDB, LANCETORCH)}
    builder = writer.perm.permutation_builder(bases[writer.name])
    perm = (
        builder.split_random(ratios=[0.7, 0.3], seed=3, split_names=["tr", "te"])
        .shuffle(seed=4)
        .execute()
    )
    saved = lancedb.connect(tmp_path / "perms").create_table("p", perm.to_arrow())
    reads = {}
    for lib in (LANCEDB, LANCETORCH):
        perms = lib.perm.Permutations(bases[lib.name], saved)
        reads[lib.name] = (
            perms.split_names,
            perms.split_dict,
            _ids(perms["tr"]),
            _ids(perms[1]),
            _ids(lib.perm.Permutation.from_tables(bases[lib.name], saved)),
        )
    assert reads["lancedb"] == reads["lancetorch"]
    names, _, train, test, default = reads["lancetorch"]
    assert names == ["tr", "te"] and default == train, "no split named reads split 0 only"
    assert sorted(train + test) == [i for i in range(60) if i % 7 != 3]


# -- Permutation and Permutations -----------------------------------------------------------------


@pytest.fixture(scope="module")
def pairs():
    """Per library: a base table and a permutation table of three named splits, in an order
    both libraries make alike (seeded orders differ between them)."""
    return _perm_pair(
        lambda b: b.split_sequential(counts=[30, 20, 10], split_names=["train", "val", "test"])
    )


def _on(pairs: dict, fn: Callable[[Any, Any, Any], Any]) -> Callable[[Lib], Any]:
    return lambda lib: fn(lib.perm, *pairs[lib.name])


@pytest.mark.parametrize(
    "name, fn",
    [
        (
            "from_tables default split",
            lambda m, b, p: sorted(_ids(m.Permutation.from_tables(b, p))),
        ),
        ("split by name", lambda m, b, p: sorted(_ids(m.Permutation.from_tables(b, p, "val")))),
        ("split by number", lambda m, b, p: sorted(_ids(m.Permutation.from_tables(b, p, 2)))),
        ("unknown split name", lambda m, b, p: m.Permutation.from_tables(b, p, "nope")),
        ("empty split", lambda m, b, p: m.Permutation.from_tables(b, p, 7)),
        ("split without a table", lambda m, b, p: m.Permutation.from_tables(b, None, 0)),
        ("identity", lambda m, b, p: _ids(m.Permutation.identity(b))),
        ("split names", lambda m, b, p: m.Permutations(b, p).split_names),
        ("split dict", lambda m, b, p: m.Permutations(b, p).split_dict),
        ("get_by_name", lambda m, b, p: sorted(_ids(m.Permutations(b, p).get_by_name("test")))),
        ("get_by_index", lambda m, b, p: sorted(_ids(m.Permutations(b, p).get_by_index(1)))),
        ("unknown name", lambda m, b, p: m.Permutations(b, p)["nope"]),
        ("float split", lambda m, b, p: m.Permutations(b, p)[1.0]),
        (
            "attributes",
            lambda m, b, p: (
                lambda q: (
                    q.split,
                    q.selection,
                    q.batch_size,
                    q.offset,
                    q.limit,
                    q.connection_factory,
                    q.num_rows,
                    q.num_columns,
                    q.column_names,
                    q.shape,
                )
            )(m.Permutation.from_tables(b, p, "val")),
        ),
        ("schema", lambda m, b, p: m.Permutation.identity(b).schema),
    ],
)
def test_permutation_calls(pairs, name, fn):
    same(_on(pairs, fn))


VIEWS: dict[str, Callable[[Any], Any]] = {
    "select": lambda p: p.select_columns(["s", "id"]),
    "select none": lambda p: p.select_columns([]),
    "select missing": lambda p: p.select_columns(["id", "nope"]),
    "select _rowid": lambda p: p.select_columns(["_rowid", "id"]),
    "remove": lambda p: p.remove_columns(["x"]),
    "remove missing": lambda p: p.remove_columns(["nope"]),
    "remove all": lambda p: p.remove_columns(["id", "x", "label", "s"]),
    "rename": lambda p: p.rename_column("x", "half"),
    "rename _rowid": lambda p: p.select_columns(["_rowid", "id"]).rename_column("_rowid", "rid"),
    "rename missing": lambda p: p.rename_column("nope", "y"),
    "rename onto another": lambda p: p.rename_column("x", "id"),
    "rename many": lambda p: p.rename_columns({"x": "half", "s": "name"}),
    "skip": lambda p: p.with_skip(4),
    "take": lambda p: p.with_take(7),
    "skip take": lambda p: p.with_skip(3).with_take(5),
    "take skip": lambda p: p.with_take(5).with_skip(3),
    "skip twice": lambda p: p.with_skip(3).with_skip(1),
    "skip past the end": lambda p: p.with_skip(31),
    "take past the end": lambda p: p.with_take(31),
    "skip and take past the end": lambda p: p.with_skip(20).with_take(20),
    "batch size": lambda p: p.with_batch_size(7),
    "bad format": lambda p: p.with_format("nope"),
}


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_views(pairs, view):
    def run(m, b, p):
        q = VIEWS[view](m.Permutation.from_tables(b, p, "train"))
        rows = [r for batch in q.iter(8) for r in batch]
        return (
            q.column_names,
            q.num_rows,
            q.selection,
            q.offset,
            q.limit,
            q.batch_size,
            sorted(rows, key=lambda r: sorted(r.items(), key=str)),
            [len(batch) for batch in q],
        )

    same(_on(pairs, run))


@pytest.mark.parametrize(
    "fmt", ["python", "python_col", "arrow", "pandas", "polars", "torch_col", "torch_row"]
)
def test_formats(pairs, fmt):
    def run(m, b, p):
        q = m.Permutation.from_tables(b, p, "train").select_columns(["id", "x"]).with_format(fmt)
        out = q.take_offsets([3, 0, 3])
        if fmt in ("arrow",):
            return out.to_pylist()
        if fmt in ("pandas", "polars"):
            return out.to_dict(**({"orient": "list"} if fmt == "pandas" else {"as_series": False}))
        if fmt == "torch_col":
            return out.tolist()
        if fmt == "torch_row":
            return [t.tolist() for t in out]
        return out

    same(_on(pairs, run))


@pytest.fixture(scope="module")
def small_pairs():
    return _perm_pair(lambda b: b.split_sequential(counts=[30, 30]).shuffle(seed=2))


@PROPS
@given(
    skip=st.one_of(st.none(), st.integers(0, 35)),
    take=st.one_of(st.none(), st.integers(0, 35)),
    batch=st.integers(1, 12),
    last=st.booleans(),
)
def test_skip_take_iter(small_pairs, skip, take, batch, last):
    pairs = small_pairs

    def run(m, b, p):
        q = m.Permutation.from_tables(b, p, "train")
        if skip is not None:
            q = q.with_skip(skip)
        if take is not None:
            q = q.with_take(take)
        return [[r["id"] for r in batch_] for batch_ in q.iter(batch, skip_last_batch=last)]

    # The orders differ (seeded by each library); positions are compared, not ids.
    def positions(lib):
        m, (b, p) = lib.perm, pairs[lib.name]
        order = [r["id"] for r in m.Permutation.from_tables(b, p, "train").take_offsets(range(30))]
        return [[order.index(i) for i in ids] for ids in run(m, b, p)]

    same(positions)


def test_pickle_round_trip(pairs):
    def run(m, b, p):
        q = m.Permutation.from_tables(b, p, "val").select_columns(["id", "s"]).with_skip(2)
        back = pickle.loads(pickle.dumps(q))
        return (
            back.column_names,
            back.num_rows,
            back.selection,
            back.offset,
            _ids(back) == _ids(q),
        )

    same(_on(pairs, run))


# -- a LanceDB table handed to lancetorch ---------------------------------------------------------


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_a_lancedb_table_works_in_lancetorch(where, tmp_path):
    db = lancedb.connect("memory://" if where == "memory" else tmp_path)
    ldb_table = db.create_table("t", sample())
    assert _ids(lt_perm.Permutation.identity(ldb_table)) == list(range(N))
    perm = lt_perm.permutation_builder(ldb_table).split_sequential(counts=[50, 10]).execute()
    assert _ids(lt_perm.Permutation.from_tables(ldb_table, perm, 1)) == list(range(50, 60))
    copy = lancetorch.connect("memory://").create_table("copy", ldb_table)
    assert tables_equal(copy.to_arrow(), ldb_table.to_arrow())
    from lancetorch.loader import Loader

    numbers = db.create_table("numbers", sample().select(["id", "x"]))
    seen = [i for b in Loader(numbers, 16, seed=0, per_column=True) for i in b["id"].tolist()]
    assert sorted(seen) == list(range(N))


# -- StreamingDataset -----------------------------------------------------------------------------


@PROPS
@given(num_splits=st.sampled_from([1, 2, 3, 4, 6]), rows=st.integers(6, 50), data=st.data())
def test_streaming_in_table_order_matches(num_splits, rows, data):
    """Without a shuffle both libraries deal the same rows to the same splits: every rank
    gives the same rows in the same order, and the same state after the same steps."""
    import lancedb.streaming
    import lancetorch.streaming

    world = data.draw(st.sampled_from([w for w in (1, 2, 3) if num_splits % w == 0]))
    steps = data.draw(st.integers(0, rows // num_splits))
    modules = {"lancedb": lancedb.streaming, "lancetorch": lancetorch.streaming}

    def run(lib):
        table = lib.connect().create_table("t", sample(rows).select(["id", "x"]))
        out = []
        for rank in range(world):
            ds = modules[lib.name].StreamingDataset(
                table,
                num_splits=num_splits,
                shuffle=False,
                rank=rank,
                world_size=world,
                read_batch_size=4,
            )
            it = iter(ds)
            head = [next(it)["id"] for _ in range(steps * (num_splits // world))]
            state = ds.state_dict()
            out.append((head + [r["id"] for r in it], state))
        return out

    same(run)
