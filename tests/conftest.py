"""Shared fixtures: a memory connection and a connection to a fresh directory."""

from __future__ import annotations

import lancetorch
import pyarrow as pa
import pytest

# The Arrow number types a tensor column can have, for tests that run over each.
NUMERIC_TYPES = [
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
]


@pytest.fixture(autouse=True)
def _one_process_world(monkeypatch):
    """Tests run as a single process unless they say otherwise: a RANK / WORLD_SIZE in the
    environment that runs them must not shard their reads."""
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)


@pytest.fixture
def mem_db() -> lancetorch.Connection:
    return lancetorch.connect("memory://")


@pytest.fixture
def dir_db(tmp_path) -> lancetorch.Connection:
    return lancetorch.connect(tmp_path)


@pytest.fixture(params=["memory", "disk"])
def any_db(request, tmp_path) -> lancetorch.Connection:
    """Each test using it runs once on a memory connection and once on a directory."""
    if request.param == "memory":
        return lancetorch.connect("memory://")
    return lancetorch.connect(tmp_path / "db")


def sample_table(n: int = 10) -> pa.Table:
    """Rows whose every column identifies the row, so a wrong row shows up in any column."""
    return pa.table(
        {
            "id": pa.array(range(n), type=pa.int64()),
            "x": pa.array([i * 0.5 for i in range(n)], type=pa.float64()),
            "s": pa.array([f"row{i}" for i in range(n)], type=pa.string()),
        }
    )


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One SeaweedFS server for the session, with a bucket 'tests'."""
    from _seaweed import SeaweedServer

    server = SeaweedServer(tmp_path_factory.mktemp("seaweed"))
    try:
        server.start()
        server.create_bucket("tests")
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_db(s3_server, request) -> lancetorch.Connection:
    """A connection to a prefix of its own in the server's bucket."""
    import uuid

    return lancetorch.connect(f"s3://tests/{uuid.uuid4().hex}", storage_options=s3_server.options)


@pytest.fixture(autouse=True, scope="session")
def _node_tier_in_a_temporary_folder(tmp_path_factory):
    """Disk tables' node tier (on by default) in a folder of the test session, not the user's
    cache folder; spawned workers inherit it through the environment."""
    import os

    os.environ["LANCETORCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("node-tier"))
