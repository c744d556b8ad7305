"""Tables on S3-compatible object storage, against a real SeaweedFS server on 127.0.0.1."""

from __future__ import annotations

import glob
import os
import pickle
import tempfile
import time
import uuid

import lancetorch
import numpy as np
import pyarrow as pa
import pytest
import torch
from conftest import sample_table
from lancetorch.loader import Loader
from lancetorch.permutation import Permutation
from lancetorch.util import passthrough, tbl_to_tensor
from torch.utils.data import DataLoader


def numbers(n: int) -> pa.Table:
    return pa.table({"id": np.arange(n, dtype=np.int64), "x": np.arange(n, dtype=np.float32) * 2})


def test_create_list_open_read_drop(s3_db):
    assert s3_db.table_names() == []
    s3_db.create_table("a", sample_table(20))
    s3_db.create_table("b", sample_table(5))
    assert s3_db.table_names() == ["a", "b"] and "a" in s3_db
    t = s3_db.open_table("a")
    assert t.uri == f"{s3_db.uri}/a.lance"
    assert len(t) == 20 and t.__getitems__([19, 0]).column("s").to_pylist() == ["row19", "row0"]
    t.add(sample_table(3))
    assert len(s3_db.open_table("a")) == 23
    with pytest.raises(ValueError, match="already exists"):
        s3_db.create_table("a", sample_table(1))
    s3_db.create_table("a", sample_table(2), mode="overwrite")
    assert len(s3_db.open_table("a")) == 2
    s3_db.drop_table("a")
    assert s3_db.table_names() == ["b"]
    with pytest.raises(FileNotFoundError, match="table 'a' does not exist"):
        s3_db.open_table("a")


def test_a_second_connection_sees_the_tables(s3_db, s3_server):
    s3_db.create_table("t", sample_table(7))
    again = lancetorch.connect(s3_db.uri + "/", storage_options=s3_server.options)
    assert again.table_names() == ["t"] and len(again.open_table("t")) == 7


def test_credentials_from_the_environment(s3_server, monkeypatch):
    o = s3_server.options
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", o["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", o["aws_secret_access_key"])
    db = lancetorch.connect(
        f"s3://tests/{uuid.uuid4().hex}",
        storage_options={k: o[k] for k in ("aws_endpoint", "aws_region", "allow_http")},
    )
    db.create_table("t", sample_table(4))
    assert db.open_table("t").to_arrow().column("id").to_pylist() == [0, 1, 2, 3]


def test_missing_bucket_and_wrong_credentials_fail_at_connect(s3_server):
    with pytest.raises(FileNotFoundError, match="bucket 'no-such-bucket' does not exist"):
        lancetorch.connect("s3://no-such-bucket/x", storage_options=s3_server.options)
    wrong = {**s3_server.options, "aws_secret_access_key": "not-the-secret"}
    with pytest.raises(PermissionError, match="refused the credentials for bucket 'tests'"):
        lancetorch.connect("s3://tests/x", storage_options=wrong)
    plain = {k: v for k, v in s3_server.options.items() if k != "allow_http"}
    with pytest.raises(ValueError, match="allow_http"):
        lancetorch.connect("s3://tests/x", storage_options=plain)
    with pytest.raises(ValueError, match="names no bucket"):
        lancetorch.connect("s3:///x", storage_options=s3_server.options)


def test_dataloader_workers_reopen_the_table(s3_db):
    s3_db.create_table("t", numbers(3000))
    table = s3_db.open_table("t", cache=False)
    loader = DataLoader(
        table,
        batch_size=256,
        shuffle=True,
        num_workers=2,
        multiprocessing_context="spawn",
        collate_fn=tbl_to_tensor,
    )
    batches = list(loader)
    ids = torch.cat([b[0] for b in batches]).long()
    assert sorted(ids.tolist()) == list(range(3000))
    assert all(torch.equal(b[1], b[0] * 2) for b in batches)


def _open_with_env_credentials(name: str) -> lancetorch.Table:
    """A connection factory: the keys come from this process's environment."""
    db = lancetorch.connect(
        os.environ["LT_TEST_URI"],
        storage_options={
            "aws_endpoint": os.environ["LT_TEST_ENDPOINT"],
            "aws_region": "us-east-1",
            "allow_http": "true",
        },
    )
    return db.open_table(name)


def test_connection_factory_keeps_the_secret_out_of_pickles_and_files(
    s3_db, s3_server, monkeypatch
):
    s3_db.create_table("t", numbers(2000))
    o = s3_server.options
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", o["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", o["aws_secret_access_key"])
    monkeypatch.setenv("LT_TEST_URI", s3_db.uri)
    monkeypatch.setenv("LT_TEST_ENDPOINT", o["aws_endpoint"])
    secret = o["aws_secret_access_key"].encode()
    before = _library_files()

    table = _open_with_env_credentials("t")
    perm = (
        Permutation.identity(table)
        .with_connection_factory(_open_with_env_credentials)
        .with_format("torch_col")
    )
    blob = pickle.dumps(perm)
    assert secret not in blob
    assert pickle.loads(blob).__getitems__([5, 1])[0].tolist() == [5, 1]
    loader = DataLoader(
        perm,
        batch_size=500,
        shuffle=True,
        num_workers=2,
        multiprocessing_context="spawn",
        collate_fn=passthrough,
    )
    ids = torch.cat([b[0] for b in loader]).long()
    assert sorted(ids.tolist()) == list(range(2000))
    for path in _library_files() - before:
        with open(path, "rb") as f:
            assert secret not in f.read(), path
    # Without a factory the connection state travels, as the reference says it does.
    assert secret in pickle.dumps(s3_db.open_table("t"))


def _library_files() -> set[str]:
    """Files lancetorch writes: shared-memory copies of tables and caches."""
    found = set()
    for d in ("/dev/shm", tempfile.gettempdir()):
        found |= {p for p in glob.glob(os.path.join(d, "lancetorch-*")) if os.path.isfile(p)}
    return found


def test_the_cache_serves_later_epochs_from_memory(s3_db):
    s3_db.create_table("t", numbers(5000))
    table = s3_db.open_table("t")  # cache="auto": small enough
    loader = Loader(table, 500, seed=2, world_size=1)
    for _ in range(2):
        ids = torch.cat([b[0] for b in loader]).long()
        assert sorted(ids.tolist()) == list(range(5000))
    assert table._backend._cached is not None


def test_beyond_the_cache_reads_windows_from_the_store(s3_db):
    s3_db.create_table("t", numbers(3000))
    table = s3_db.open_table("t", cache=False)
    loader = Loader(table, 100, seed=3, window_rows=1000, clump_size=100, world_size=1)
    batches = list(loader)
    assert sorted(torch.cat([b[0] for b in batches]).long().tolist()) == list(range(3000))
    assert all(torch.equal(b[1], b[0] * 2) for b in batches)


def test_server_stopping_mid_epoch_is_a_clear_error(tmp_path):
    from _seaweed import SeaweedServer

    server = SeaweedServer(tmp_path)
    server.start()
    try:
        server.create_bucket("faults")
        options = {**server.options, "client_max_retries": "1", "client_retry_timeout": "3"}
        db = lancetorch.connect("s3://faults/db", storage_options=options)
        db.create_table("events", numbers(20000))
        table = db.open_table("events", cache=False)
        perm = Permutation.identity(table).with_format("arrow")
        seen = 0
        started = None
        with pytest.raises(OSError) as raised:
            for batch in perm.iter(1000):
                seen += batch.num_rows
                if seen == 5000:
                    server.stop()
                    started = time.monotonic()
        assert seen == 5000 and time.monotonic() - started < 60, "an error, not a hang"
        message = str(raised.value)
        assert "table 'events'" in message and "row offset 5000" in message
        assert "client_max_retries=1" in message
    finally:
        server.stop()


def test_a_store_that_never_answers_is_a_clear_error_not_a_hang(tmp_path):
    """The server is frozen (SIGSTOP): it accepts connections and answers nothing."""
    import signal

    from _seaweed import SeaweedServer

    server = SeaweedServer(tmp_path)
    server.start()
    try:
        server.create_bucket("frozen")
        db = lancetorch.connect("s3://frozen/db", storage_options=server.options, read_timeout=3)
        db.create_table("events", numbers(20000))
        table = db.open_table("events", cache=False)
        assert table.__getitems__([1]).column("id").to_pylist() == [1]
        os.killpg(server.process.pid, signal.SIGSTOP)
        started = time.monotonic()
        try:
            with pytest.raises(OSError, match=r"table 'events'.*row offset 7000.*read_timeout=3s"):
                table.__getitems__([7000, 19999])
            assert time.monotonic() - started < 30
        finally:
            os.killpg(server.process.pid, signal.SIGCONT)
    finally:
        server.stop()
    with pytest.raises(ValueError, match="read_timeout=0"):
        lancetorch.connect("s3://frozen/db", read_timeout=0)


def test_ranks_reading_windows_from_the_store_fetch_their_share(s3_db):
    """Two ranks by windows over S3 fetch about half the bytes each, and together every
    row once; a later epoch fetches again (no cache)."""
    s3_db.create_table("t", numbers(6000))
    kw = dict(seed=3, window_rows=2000, clump_size=250)
    whole = Loader(s3_db.open_table("t", cache=False), 100, world_size=1, **kw)
    list(whole)
    one = whole.stats()["store_bytes"]
    assert one >= 6000 * 12 * 0.9  # an int64 and a float32 a row
    seen = []
    for r in range(2):
        loader = Loader(s3_db.open_table("t", cache=False), 100, rank=r, world_size=2, **kw)
        seen += torch.cat([b[0] for b in loader]).long().tolist()
        stats = loader.stats()
        assert 0 < stats["store_bytes"] < 0.65 * one and stats["store_requests"] > 0
    assert sorted(seen) == list(range(6000))
