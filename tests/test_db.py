"""Connections: connect, create/open/drop tables, names, and Lance interop."""

from __future__ import annotations

import os

import lance
import lancetorch
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from conftest import sample_table
from hypothesis import given, settings
from hypothesis import strategies as st

EXPECTED = pa.table({"a": pa.array([1, 2, 3], pa.int64()), "b": pa.array(["x", "y", "z"])})


def test_connect_memory():
    db = lancetorch.connect("memory://")
    assert db.uri == "memory://"
    assert db.table_names() == []


def test_connect_directory_not_created_until_first_table(tmp_path):
    root = tmp_path / "sub" / "db"
    db = lancetorch.connect(root)
    assert db.uri == str(root)
    assert db.table_names() == []
    assert not root.exists()
    db.create_table("t", EXPECTED)
    assert (root / "t.lance").is_dir()
    assert db.table_names() == ["t"]


def test_connect_str_and_file_uri(tmp_path):
    lancetorch.connect(str(tmp_path)).create_table("t", EXPECTED)
    assert lancetorch.connect(f"file://{tmp_path}").open_table("t").to_arrow().equals(EXPECTED)


def _reader():
    return pa.RecordBatchReader.from_batches(EXPECTED.schema, EXPECTED.to_batches())


SOURCES = {
    "pyarrow_table": lambda: EXPECTED,
    "record_batch": lambda: EXPECTED.combine_chunks().to_batches()[0],
    "record_batch_reader": _reader,
    "polars": lambda: pl.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}),
    "pandas": lambda: pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}),
    "list_of_dicts": lambda: [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}, {"a": 3, "b": "z"}],
    "dict_of_columns": lambda: {"a": [1, 2, 3], "b": ["x", "y", "z"]},
}


def _normalize(tbl: pa.Table) -> pa.Table:
    # polars writes large_string/string_view and pandas may too; compare values by type family
    return tbl.cast(pa.schema([("a", pa.int64()), ("b", pa.string())]))


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_create_table_from(any_db, source):
    table = any_db.create_table("t", SOURCES[source]())
    assert table.name == "t"
    assert len(table) == 3
    assert table.schema.names == ["a", "b"]
    assert _normalize(table.to_arrow()).equals(EXPECTED)
    assert _normalize(table.__getitems__([2, 0])).to_pydict() == {
        "a": [3, 1],
        "b": ["z", "x"],
    }
    assert any_db.table_names() == ["t"]
    assert _normalize(any_db.open_table("t").to_arrow()).equals(EXPECTED)


def test_create_table_from_polars_uses_capsule(mem_db):
    df = pl.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    assert hasattr(df, "__arrow_c_stream__")
    table = mem_db.create_table("t", df)
    assert _normalize(table.to_arrow()).equals(EXPECTED)


def test_create_table_from_schema_only(any_db):
    schema = pa.schema([("a", pa.int64()), ("b", pa.string())])
    table = any_db.create_table("t", schema=schema)
    assert len(table) == 0
    assert table.schema.names == ["a", "b"]
    assert table.schema.field("a").type == pa.int64()


def test_create_table_without_data_or_schema(any_db):
    with pytest.raises(ValueError, match="data or a schema"):
        any_db.create_table("t")


def test_create_existing_raises_naming_it(any_db):
    any_db.create_table("things", EXPECTED)
    with pytest.raises(ValueError, match="'things'.*already exists"):
        any_db.create_table("things", sample_table(5))
    # the original is untouched
    assert any_db.open_table("things").to_arrow().equals(EXPECTED)


def test_overwrite_replaces(any_db):
    any_db.create_table("t", EXPECTED)
    new = sample_table(7)
    table = any_db.create_table("t", new, mode="overwrite")
    assert len(table) == 7
    assert table.to_arrow().equals(new)
    assert any_db.open_table("t").to_arrow().equals(new)
    assert any_db.table_names() == ["t"]


def test_overwrite_of_missing_table_creates_it(any_db):
    table = any_db.create_table("t", EXPECTED, mode="overwrite")
    assert table.to_arrow().equals(EXPECTED)


def test_exist_ok_returns_existing(any_db):
    any_db.create_table("t", EXPECTED)
    table = any_db.create_table("t", sample_table(5), exist_ok=True)
    assert len(table) == 3
    assert table.to_arrow().equals(EXPECTED)


def test_invalid_mode(any_db):
    with pytest.raises(ValueError, match="mode"):
        any_db.create_table("t", EXPECTED, mode="append")


def test_open_missing_names_it_and_lists_existing(any_db):
    any_db.create_table("alpha", EXPECTED)
    any_db.create_table("beta", EXPECTED)
    with pytest.raises(FileNotFoundError) as info:
        any_db.open_table("gamma")
    msg = str(info.value)
    assert "'gamma'" in msg
    assert "alpha" in msg and "beta" in msg


def test_open_missing_on_empty_connection(any_db):
    with pytest.raises(FileNotFoundError, match="'nope'"):
        any_db.open_table("nope")


@pytest.mark.parametrize(
    "name", ["", "a/b", "..", "a\\b", ".", "../x", "/abs", "-x", "a b", 3, "abc\n", "abc\n\n"]
)
def test_invalid_names_refused_before_writing(tmp_path, name):
    root = tmp_path / "db"
    root.mkdir()
    db = lancetorch.connect(root)
    with pytest.raises(ValueError, match="invalid table name"):
        db.create_table(name, EXPECTED)
    with pytest.raises(ValueError, match="invalid table name"):
        db.create_table(name, EXPECTED, mode="overwrite")
    with pytest.raises(ValueError, match="invalid table name"):
        db.open_table(name)
    with pytest.raises(ValueError, match="invalid table name"):
        db.drop_table(name)
    assert list(root.iterdir()) == []
    assert [p for p in tmp_path.rglob("*") if p != root] == []


@pytest.mark.parametrize("name", ["", "a/b", "..", "a\\b"])
def test_invalid_names_refused_in_memory(mem_db, name):
    with pytest.raises(ValueError, match="invalid table name"):
        mem_db.create_table(name, EXPECTED)
    assert mem_db.table_names() == []


def test_valid_unusual_names(any_db):
    for name in ["a.b", "x-1", "_under", "T9"]:
        any_db.create_table(name, EXPECTED)
    assert any_db.table_names() == sorted(["a.b", "x-1", "_under", "T9"])
    assert any_db.open_table("a.b").to_arrow().equals(EXPECTED)


def test_table_names_sorted_and_contains(any_db):
    for name in ["c", "a", "b"]:
        any_db.create_table(name, EXPECTED)
    assert any_db.table_names() == ["a", "b", "c"]
    assert "b" in any_db
    assert "d" not in any_db


def test_table_names_pages_as_lancedb_calls_it(any_db):
    for name in ["c", "a", "d", "b"]:
        any_db.create_table(name, EXPECTED)
    assert any_db.table_names(limit=2) == ["a", "b"]
    assert any_db.table_names("b") == ["c", "d"]
    assert any_db.table_names(page_token="a", limit=2) == ["b", "c"]
    assert any_db.table_names(namespace_path=[]) == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="no namespaces"):
        any_db.table_names(namespace_path=["ns"])
    with pytest.raises(ValueError, match="limit"):
        any_db.table_names(limit=0)


def test_table_names_ignores_other_entries(tmp_path):
    db = lancetorch.connect(tmp_path)
    db.create_table("t", EXPECTED)
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "other_dir").mkdir()
    assert db.table_names() == ["t"]


def test_a_directory_without_versions_is_not_a_table(tmp_path):
    """A create killed before its first commit leaves data files and no versions: not a
    table, and its name can be created. A dataset named as no table can be is not listed."""
    import lance

    db = lancetorch.connect(tmp_path)
    (tmp_path / "half.lance" / "data").mkdir(parents=True)
    lance.write_dataset(EXPECTED, str(tmp_path / "my table.lance"))
    assert db.table_names() == [] and "half" not in db
    assert db.create_table("half", EXPECTED).to_arrow().equals(EXPECTED)
    assert db.table_names() == ["half"]


def test_a_stale_handle_does_not_bring_a_dropped_table_back(tmp_path):
    db = lancetorch.connect(tmp_path)
    db.create_table("t", EXPECTED)
    stale = db.open_table("t")
    db.drop_table("t")
    with pytest.raises(FileNotFoundError, match="no longer exists.*create it again"):
        stale.add(EXPECTED)
    assert "t" not in db and not (tmp_path / "t.lance").exists()


def test_a_stale_handle_of_a_replaced_table_says_so(tmp_path):
    db = lancetorch.connect(tmp_path)
    db.create_table("t", EXPECTED)
    stale = db.open_table("t")
    db.create_table("t", pa.table({"other": [1]}), mode="overwrite")
    with pytest.raises(ValueError, match="replaced since this handle opened it.*\\['other'\\]"):
        stale.add(EXPECTED)
    assert db.open_table("t").to_arrow().equals(pa.table({"other": [1]}))


def test_drop_table(any_db):
    any_db.create_table("keep", EXPECTED)
    any_db.create_table("gone", EXPECTED)
    any_db.drop_table("gone")
    assert any_db.table_names() == ["keep"]
    with pytest.raises(FileNotFoundError, match="'gone'"):
        any_db.open_table("gone")
    with pytest.raises(FileNotFoundError, match="'gone'"):
        any_db.drop_table("gone")
    # the name is free again
    assert len(any_db.create_table("gone", sample_table(4))) == 4


def test_drop_table_ignore_missing_drops_nothing_else(any_db):
    any_db.create_table("keep", EXPECTED)
    any_db.drop_table("gone", ignore_missing=True)
    any_db.drop_table("keep", [], True)  # LanceDB's positional order
    assert any_db.table_names() == []
    with pytest.raises(ValueError, match="no namespaces"):
        any_db.drop_table("keep", namespace_path=["ns"], ignore_missing=True)
    with pytest.raises(TypeError, match="ignore_missing"):
        any_db.drop_table("keep", ignore_missing="yes")


def test_drop_table_removes_directory(tmp_path):
    db = lancetorch.connect(tmp_path)
    db.create_table("t", EXPECTED)
    db.drop_table("t")
    assert not (tmp_path / "t.lance").exists()


def test_memory_connections_are_independent():
    a = lancetorch.connect("memory://")
    b = lancetorch.connect("memory://")
    a.create_table("t", EXPECTED)
    assert b.table_names() == []


def test_unsupported_scheme():
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        lancetorch.connect("gs://bucket/path")


def test_a_misspelled_option_is_a_type_error(tmp_path):
    with pytest.raises(TypeError, match="unexpected keyword argument 'read_timout'"):
        lancetorch.connect(tmp_path, read_timout=5)


@pytest.mark.parametrize(
    "uri, options",
    [
        ("db://my-database", {"api_key": "sk-...", "region": "us-east-1"}),  # the spec's example
        ("db://my-database", {}),
        ("memory://", {"region": "eu-west-1"}),
        ("memory://", {"host_override": "http://localhost:1"}),
    ],
)
def test_enterprise_connections_are_explained(uri, options):
    with pytest.raises(ValueError, match="LanceDB Enterprise.*storage_options") as info:
        lancetorch.connect(uri, **options)
    assert "sk-" not in str(info.value), "a key is never echoed"
    for name, value in options.items():
        if (name, value) != ("region", "us-east-1"):  # LanceDB's default names no remote
            assert name in str(info.value)


@pytest.mark.parametrize("uri", ["memory://", "memory:///", "memory://scratch"])
def test_lancedb_local_spellings_and_options(uri, tmp_path):
    from datetime import timedelta

    options = dict(
        read_consistency_interval=timedelta(seconds=5),
        region="us-east-1",
        session=None,
        manifest_enabled=False,
    )
    db = lancetorch.connect(uri, **options)
    assert isinstance(db, lancetorch.DBConnection) and db.uri == "memory://"
    assert db.create_table("t", pa.table({"a": [1]})).to_arrow().to_pydict() == {"a": [1]}
    on_disk = lancetorch.connect(f"file://{tmp_path}", read_consistency_interval=timedelta(0))
    assert on_disk.uri == str(tmp_path)
    assert lancetorch.db.DBConnection is lancetorch.Connection
    with pytest.raises(TypeError, match="unexpected keyword argument 'read_consistency'"):
        lancetorch.connect(uri, read_consistency=1)


# -- interop with pylance ---------------------------------------------------------------------


def test_written_by_lancetorch_opens_with_lance(tmp_path):
    data = sample_table(100)
    lancetorch.connect(tmp_path).create_table("t", data)
    ds = lance.dataset(str(tmp_path / "t.lance"))
    assert ds.count_rows() == 100
    assert ds.to_table().equals(data)


def test_written_by_lance_opens_with_lancetorch(tmp_path):
    data = sample_table(100)
    lance.write_dataset(data, tmp_path / "w.lance")
    db = lancetorch.connect(tmp_path)
    assert db.table_names() == ["w"]
    table = db.open_table("w")
    assert len(table) == 100
    assert table.to_arrow().equals(data)
    got = table.__getitems__([99, 0, 50])
    assert got.column("id").to_pylist() == [99, 0, 50]
    assert got.column("s").to_pylist() == ["row99", "row0", "row50"]


def test_directory_create_table_from_lance_dataset(tmp_path):
    data = sample_table(20)
    ds = lance.write_dataset(data, tmp_path / "src.lance")
    db = lancetorch.connect(tmp_path / "db")
    table = db.create_table("copy", ds)
    assert table.to_arrow().equals(data)
    assert os.path.isdir(tmp_path / "db" / "copy.lance")


def test_create_from_numpy_backed_dict(mem_db):
    table = mem_db.create_table("t", {"a": np.arange(5, dtype=np.int32)})
    assert table.schema.field("a").type == pa.int32()
    assert table.to_arrow().column("a").to_pylist() == [0, 1, 2, 3, 4]


# -- versions and read_consistency_interval ------------------------------------------------------


def _versions_run(module, root, interval):
    """One LanceDB-API script on a disk table another writer appends to; what it saw."""
    import datetime

    db = module.connect(root, read_consistency_interval=interval)
    t = db.create_table("t", EXPECTED)
    uri = os.path.join(str(root), "t.lance")
    seen: list = [t.version, t.count_rows()]
    lance.write_dataset(EXPECTED, uri, mode="append")  # another writer: version 2
    seen += [t.count_rows(), t.version]
    t.checkout_latest()
    seen += [t.count_rows(), t.version]
    t.checkout(1)
    lance.write_dataset(EXPECTED, uri, mode="append")  # version 3, unseen while checked out
    seen += [t.count_rows(), t.version, t.to_arrow().num_rows]
    bad_ones = (lambda: t.add(EXPECTED), lambda: t.checkout(99), lambda: t.checkout(0))
    for bad in (*bad_ones, lambda: t.checkout(-1), lambda: t.checkout(1.0)):
        try:
            bad()
        except Exception as e:
            seen.append(type(e).__name__)
    t.checkout_latest()
    seen += [t.count_rows(), t.version, [v["version"] for v in t.list_versions()]]
    assert all(isinstance(v["timestamp"], datetime.datetime) for v in t.list_versions())
    t.checkout(2)
    seen += [t.count_rows(), t.version]
    return seen


@pytest.mark.parametrize("interval", [None, 0, 3600], ids=["none", "zero", "hour"])
def test_versions_and_read_consistency_as_lancedb(tmp_path, interval):
    """The same script against lancedb 0.40 and lancetorch sees the same versions and rows:
    None and a long interval never look for another writer's versions until
    checkout_latest(), timedelta(0) on every read; checkout(v) reads v and refuses writes."""
    from datetime import timedelta

    import lancedb

    every = None if interval is None else timedelta(seconds=interval)
    want = _versions_run(lancedb, tmp_path / "lancedb", every)
    got = _versions_run(lancetorch, tmp_path / "lancetorch", every)
    assert got == want
    later = 6 if interval == 0 else 3  # the append is seen at once, or after checkout_latest
    assert got[2] == later and got[6:14] == [3, 1, 3, *["ValueError"] * 3, "TypeError", "TypeError"]


def test_a_read_after_the_interval_sees_the_latest_version(tmp_path):
    import time
    from datetime import timedelta

    every = timedelta(seconds=0.2)
    t = lancetorch.connect(tmp_path, read_consistency_interval=every).create_table("t", EXPECTED)
    lance.write_dataset(EXPECTED, t.uri, mode="append")
    time.sleep(0.25)  # the interval has passed: the next read looks
    assert (t.count_rows(), t.version) == (6, 2)
    lance.write_dataset(EXPECTED, t.uri, mode="append")
    time.sleep(0.25)
    assert t.schema == EXPECTED.schema and t.version == 3  # schema is a read that looks too


@pytest.mark.parametrize(
    "bad, error, words",
    [
        (5, TypeError, "must be a datetime.timedelta"),
        ("0", TypeError, "must be a datetime.timedelta"),
        (-1.0, TypeError, "must be a datetime.timedelta"),
        ("negative", ValueError, "must not be negative"),
    ],
)
@pytest.mark.parametrize("make", ["connect", "Connection", "DBConnection"])
def test_read_consistency_interval_checked(tmp_path, bad, error, words, make):
    from datetime import timedelta

    value = timedelta(seconds=-1) if bad == "negative" else bad
    with pytest.raises(error, match=words):
        getattr(lancetorch, make)(str(tmp_path), read_consistency_interval=value)


@pytest.mark.parametrize("make", ["Connection", "DBConnection"])
def test_a_connection_made_directly_takes_a_timedelta(tmp_path, make):
    """LanceDB's LanceDBConnection takes read_consistency_interval as a timedelta, and
    lancetorch's DBConnection is its Connection: made directly, it looks as connect()'s."""
    from datetime import timedelta

    db = getattr(lancetorch, make)(str(tmp_path), read_consistency_interval=timedelta(0))
    t = db.create_table("t", EXPECTED)
    lance.write_dataset(EXPECTED, t.uri, mode="append")  # another writer: version 2
    assert (t.count_rows(), t.version) == (6, 2)
    never = getattr(lancetorch, make)(str(tmp_path), read_consistency_interval=None)
    t = never.open_table("t")
    lance.write_dataset(EXPECTED, t.uri, mode="append")
    assert (t.count_rows(), t.version) == (6, 2)


def test_memory_table_versions(mem_db):
    t = mem_db.create_table("t", EXPECTED)
    assert t.version == 1
    t.add(EXPECTED)
    assert t.version == 2 and [v["version"] for v in t.list_versions()] == [2]
    t.checkout(2)
    with pytest.raises(ValueError, match="cannot be modified when a specific version"):
        t.add(EXPECTED)
    with pytest.raises(ValueError, match="Version 1 no longer exists.*only its latest"):
        t.checkout(1)
    t.checkout_latest()
    t.add(EXPECTED)
    assert (t.version, len(t)) == (3, 9)
    with pytest.raises(TypeError, match="version number"):
        t.checkout(2.0)


def test_read_consistency_on_object_storage(s3_server, s3_db):
    from datetime import timedelta

    s3_db.create_table("t", EXPECTED)
    looks = lancetorch.connect(
        s3_db.uri, storage_options=s3_server.options, read_consistency_interval=timedelta(0)
    ).open_table("t")
    never = s3_db.open_table("t")
    s3_db.open_table("t").add(EXPECTED)  # another handle writes: version 2
    assert (looks.count_rows(), looks.version) == (6, 2)
    assert (never.count_rows(), never.version) == (3, 1)
    never.checkout_latest()
    assert never.to_arrow().num_rows == 6
    never.checkout(1)
    assert never.to_arrow().equals(EXPECTED)


@pytest.mark.parametrize("change", ["recreate", "compact"])
def test_an_unpickled_object_storage_table_refuses_a_changed_table(s3_server, s3_db, change):
    import datetime
    import pickle

    from lancetorch import StorageReadError

    s3_db.create_table("t", EXPECTED)
    s3_db.open_table("t").add(EXPECTED)
    sent = pickle.dumps(s3_db.open_table("t", cache=False))
    if change == "recreate":
        s3_db.drop_table("t")
        s3_db.create_table("t", EXPECTED)
        s3_db.open_table("t").add(EXPECTED)  # version 2 again, other rows' files
        what = "table 't'.*dropped and created again"
    else:
        options = s3_db._storage_options
        lance.dataset(f"{s3_db.uri}/t.lance", storage_options=options).optimize.compact_files()
        lance.dataset(f"{s3_db.uri}/t.lance", storage_options=options).cleanup_old_versions(
            older_than=datetime.timedelta(0)
        )
        what = "version 2 of table 't'.*is gone"
    with pytest.raises(StorageReadError, match=f"{what}.*Open the table again"):
        pickle.loads(sent).__getitems__([0])


def test_a_read_that_looks_finds_a_dropped_table_gone(tmp_path):
    from datetime import timedelta

    t = lancetorch.connect(tmp_path, read_consistency_interval=timedelta(0)).create_table(
        "t", EXPECTED
    )
    lancetorch.connect(tmp_path).drop_table("t")
    with pytest.raises(FileNotFoundError, match="table 't' .* no longer exists"):
        t.count_rows()
    with pytest.raises(FileNotFoundError, match="no longer exists"):
        t.checkout_latest()


# -- bad vectors (LanceDB's on_bad_vectors) -------------------------------------------------------
def _mended(rows: list, policy: str, fill: float) -> list | str:
    """A plain reference: what create_table keeps of a ``vector`` column, or "refused"."""
    lengths = [len(r) for r in rows if r]
    if not lengths:  # no vector has a value: no length to hold them to
        return [None if r is None else [float(v) for v in r] for r in rows]
    size = max(sorted(set(lengths)), key=lengths.count)
    out = []
    for r in rows:
        bad = r is None or len(r) != size or any(v != v for v in r)
        if not bad:
            out.append([float(v) for v in r])
        elif policy == "error":
            return "refused"
        elif policy == "null":
            out.append(None)
        elif policy == "fill":
            kept = [fill if v != v else float(v) for v in (r or [])[:size]]
            out.append(kept + [fill] * (size - len(kept)))
    return out


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.none()
        | st.lists(st.sampled_from([0.5, -2.0, 3.25, float("nan")]), min_size=1, max_size=4),
        min_size=1,
        max_size=12,
    ),
    policy=st.sampled_from(["error", "drop", "fill", "null"]),
)
def test_bad_vectors_as_lancedb_handles_them(rows, policy):
    """A row whose vector is null, holds NaN or has another length than most is refused,
    dropped, mended or nulled; the rest are written as they are (float32)."""
    expected = _mended(rows, policy, -1.0)
    db = lancetorch.connect("memory://")
    data = {"vector": pa.array(rows, pa.list_(pa.float64())), "i": np.arange(len(rows))}
    if expected == "refused":
        with pytest.raises(ValueError, match="vector column 'vector' of table 't': row"):
            db.create_table("t", data, on_bad_vectors=policy)
        assert "t" not in db
        return
    got = db.create_table("t", data, on_bad_vectors=policy, fill_value=-1.0).to_arrow()
    values = got.column("vector").to_pylist()
    assert [None if v is None else [x if x == x else "nan" for x in v] for v in values] == [
        None if v is None else [x if x == x else "nan" for x in v] for v in expected
    ]


def test_bad_vectors_name_the_row_and_what_to_do(tmp_path):
    db = lancetorch.connect(tmp_path)
    rows = [{"vector": [1.0, 2.0]}, {"vector": [1.0, float("nan")]}]
    with pytest.raises(ValueError, match=r"row 1 holds NaN \(1 such rows of 2\).*'drop'"):
        db.create_table("t", rows)
    ragged = [{"vector": [1.0, 2.0]}, {"vector": [1.0, 2.0]}, {"vector": [1.0]}]
    with pytest.raises(ValueError, match="row 2 has 1 values, not 2"):
        db.create_table("t", ragged)
    assert db.table_names() == []
    wide = pa.table({"e": pa.FixedSizeListArray.from_arrays(pa.array([float("nan")] * 10), 10)})
    with pytest.raises(ValueError, match="vector column 'e'.*row 0 holds NaN"):
        db.create_table("t", wide)  # a fixed-size float list of 10 is an embedding too
    narrow = pa.table({"e": pa.FixedSizeListArray.from_arrays(pa.array([float("nan")] * 3), 3)})
    assert db.create_table("t", narrow).count_rows() == 1  # a short one is not
    with pytest.raises(ValueError, match="on_bad_vectors"):
        db.create_table("u", rows, on_bad_vectors="skip")
    with pytest.raises(TypeError, match="fill_value"):
        db.create_table("u", rows, on_bad_vectors="fill", fill_value="0")
    with pytest.raises(ValueError, match="no embedding functions"):
        db.create_table("u", rows, embedding_functions=[object()])


def test_open_table_as_lancedb_calls_it(any_db):
    """version= opens the table checked out there (add refused); storage_options= and
    index_cache_size= are taken; a branch or a namespace is refused."""
    table = any_db.create_table("t", {"x": [1, 2]})
    table.add({"x": [3]})
    assert any_db.open_table("t", version=2).to_arrow().column("x").to_pylist() == [1, 2, 3]
    if any_db.uri == "memory://":
        with pytest.raises(ValueError, match="keeps only its latest version"):
            any_db.open_table("t", version=1)
    else:
        old = any_db.open_table("t", version=1)
        assert old.to_arrow().column("x").to_pylist() == [1, 2] and old.version == 1
        with pytest.raises(ValueError, match="checked out"):
            old.add({"x": [4]})
    with pytest.raises(TypeError, match="version"):
        any_db.open_table("t", version=1.5)
    assert any_db.open_table("t", storage_options={}, index_cache_size=256).count_rows() == 3
    with pytest.raises(ValueError, match="main branch only"):
        any_db.open_table("t", branch="dev")
    with pytest.raises(ValueError, match="no namespaces"):
        any_db.open_table("t", namespace_path=["ns"])
    with pytest.raises(TypeError, match="index_cache_size"):
        any_db.open_table("t", index_cache_size="256")
