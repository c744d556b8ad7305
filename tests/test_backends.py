"""The storage seam: every reader reads a table only through ``Backend``.

A backend written here, outside the package (rows in pyarrow, never cached in memory), is
read by a Table, a DataLoader, a Permutation, the permutation builder's SQL and the Loader's
windows as the package's own backends are: what a new storage tier needs is one class."""

from __future__ import annotations

import ast
import contextlib
import pickle
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lancetorch
import numpy as np
import pyarrow as pa
import pytest
import torch
from lancetorch import _native
from lancetorch._backends import Backend, CacheSettings, LanceLocation, Recipe
from lancetorch.loader import Loader
from lancetorch.permutation import Permutation, permutation_builder

PACKAGE = Path(lancetorch.__file__).parent
N = 500


def rows() -> pa.Table:
    ids = np.arange(N, dtype=np.int64)
    return pa.table({"id": ids, "x": ids * 2.0})


class ArrowBackend:
    """Rows in a pyarrow Table, read from it at every call: no memory cache, so the Loader
    reads it by windows, and every take goes through ``take`` or ``read_rows``."""

    location = None

    def __init__(self, data: pa.Table, windows: list[int] | None = None) -> None:
        self.data = data
        self.version = 1
        self.windows = [0] if windows is None else windows  # read_rows calls (shared by pins)

    @property
    def schema(self) -> pa.Schema:
        return self.data.schema

    def count_rows(self) -> int:
        return self.data.num_rows

    def take(self, offsets: Any, columns: list[int] | None) -> pa.RecordBatch:
        rows = _native.normalize_offsets(offsets, self.data.num_rows)
        data = self.data if columns is None else self.data.select(columns)
        return data.take(rows).combine_chunks().to_batches()[0]

    def read_rows(self, rows: np.ndarray, names: list[str]) -> tuple[Any, np.ndarray]:
        self.windows[0] += 1
        taken = self.data.select(names).take(pa.array(rows)).combine_chunks()
        return _native.ColumnStore(taken, row_major=False), np.arange(len(rows))

    def in_memory(self, names: list[str]) -> None:
        return None

    def row_ids(self) -> None:
        return None

    def io_totals(self) -> tuple[int, int, int]:
        return 0, 0, 0

    def to_arrow(self) -> pa.Table:
        return self.data

    def read_columns(self, columns: list[str]) -> pa.Table:
        return self.data.select(columns)

    def append(
        self, data: pa.Table, known: Sequence[Backend] = (), *, overwrite: bool = False
    ) -> Backend:
        self.data = data if overwrite else pa.concat_tables([self.data, data])
        self.version += 1
        return self

    def follows_versions(self) -> bool:
        return False

    def at_version(self, version: Any, known: Sequence[Backend] = ()) -> Backend:
        if version not in (None, self.version):
            raise ValueError(f"Version {version} no longer exists")
        return self

    def list_versions(self) -> list[dict[str, Any]]:
        return [{"version": self.version, "timestamp": None, "metadata": {}}]

    def pinned(self) -> ArrowBackend:
        return ArrowBackend(self.data, self.windows)

    def note_view(self, view: object, columns: list[str]) -> None:
        pass

    @contextlib.contextmanager
    def sql_dataset(self, names: list[str]) -> Iterator[tuple[Any, bool]]:
        import lance

        yield lance.write_dataset(self.data, "memory://sql"), True

    def reopen(self) -> Recipe:
        return ArrowBackend, (self.data,)

    def reopen_in_workers(self, names: list[str] | None) -> Recipe:
        return self.reopen()


def table() -> lancetorch.Table:
    return lancetorch.Table("arrow", ArrowBackend(rows()))


def test_a_backend_of_one_class_satisfies_the_protocol():
    assert isinstance(ArrowBackend(rows()), Backend)
    with pytest.raises(TypeError, match="tables are made by"):
        lancetorch.Table("t", object())  # type: ignore[arg-type]


def test_a_new_backend_is_read_as_a_dataset_and_pickled():
    t = table()
    assert len(t) == N and t.uri is None and t.version == 1
    loader = torch.utils.data.DataLoader(t, batch_size=64, shuffle=True, collate_fn=lambda b: b)
    seen = np.concatenate([b.column("id").to_numpy() for b in loader])
    assert sorted(seen.tolist()) == list(range(N))
    back = pickle.loads(pickle.dumps(t))
    assert back.__getitems__([3, 1]).column("x").to_pylist() == [6.0, 2.0]
    t.add(pa.table({"id": [N], "x": [0.5]}))
    assert len(t) == N + 1 and t.version == 2
    assert t.list_versions()[0]["version"] == 2
    with pytest.raises(ValueError, match="no longer exists"):
        t.checkout(1)


def test_a_new_backend_feeds_permutations_sql_and_row_ids():
    t = table()
    perm = Permutation.identity(t).select_columns(["x"])
    assert perm.__getitems__([0, 2]) == [{"x": 0.0}, {"x": 4.0}]
    built = permutation_builder(t).filter("id % 5 = 0").split_calculated("id % 2").execute()
    split = Permutation.from_tables(t, built, 0)
    assert split.with_format("arrow").__getitems__(list(range(len(split)))).column(
        "id"
    ).to_pylist() == list(range(0, N, 10))


@pytest.mark.parametrize("world", [1, 2])
def test_a_backend_without_memory_is_read_by_windows(world):
    backend = ArrowBackend(rows())
    t = lancetorch.Table("arrow", backend)
    ids: list[int] = []
    for rank in range(world):
        loader = Loader(t, 50, seed=3, rank=rank, world_size=world, window_rows=128, clump_size=16)
        for batch in loader:
            assert torch.equal(batch[1], batch[0] * 2)
            ids += batch[0].long().tolist()
    assert sorted(ids) == list(range(N))
    assert backend.windows[0] > 0


def test_the_lance_location_is_a_small_frozen_value():
    location = LanceLocation.of("t", "/data/t.lance", {"region": "x", "endpoint": "y"}, 5.0)
    assert location.storage_options == {"region": "x", "endpoint": "y"}
    assert location == LanceLocation.of("t", "/data/t.lance", {"endpoint": "y", "region": "x"}, 5.0)
    assert hash(location) == hash(
        LanceLocation.of("t", "/data/t.lance", {"endpoint": "y", "region": "x"}, 5.0)
    )
    with pytest.raises(AttributeError):
        location.uri = "elsewhere"  # type: ignore[misc]
    with pytest.raises(ValueError, match="cache must be True, False or 'auto'"):
        CacheSettings("sometimes")


def _type_tests_outside_backends() -> list[str]:
    """Where a module other than the backends' own asks which backend it holds: any use of a
    backend class but a call that makes one, and any hasattr/getattr probe of a backend."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in ("_backends.py", "_lance.py", "_lance_reads.py"):  # the backends' own
            continue
        tree = ast.parse(path.read_text(), str(path))
        made = {
            id(node.func)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Name)
                and node.id in ("_MemoryBackend", "_LanceBackend")
                and id(node) not in made
            ):
                found.append(f"{path.name}:{node.lineno} uses {node.id}")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("hasattr", "getattr")
                and "backend" in ast.unparse(node.args[0]).lower()
            ):
                found.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    return found


def test_no_reader_asks_which_backend_it_holds():
    assert _type_tests_outside_backends() == []
