"""The reference Quickstart, run as written (lancetorch in place of lancedb), and DataLoaders."""

from __future__ import annotations

import collections

import lancetorch
import numpy as np
import pyarrow as pa
import pytest
import torch


def test_quickstart_as_written(capsys):
    import lancetorch
    import pyarrow as pa
    import torch
    from lancetorch.util import tbl_to_tensor

    mem_db = lancetorch.connect("memory://")
    table = mem_db.create_table("test_table", pa.table({"a": range(1000)}))

    # Any LanceDB table can be used as a PyTorch Dataset
    dataloader = torch.utils.data.DataLoader(
        table, batch_size=1024, shuffle=True, collate_fn=tbl_to_tensor
    )

    for batch in dataloader:
        print(batch)

    assert "tensor(" in capsys.readouterr().out

    torch.manual_seed(0)
    orders = []
    for _epoch in range(2):
        batches = list(dataloader)
        assert len(batches) == 1  # 1000 rows, batch_size 1024
        (batch,) = batches
        assert isinstance(batch, torch.Tensor)
        assert batch.shape == (1, 1000)
        assert batch.dtype == torch.int64
        values = batch[0].tolist()
        assert sorted(values) == list(range(1000))  # every row exactly once
        orders.append(values)
    assert orders[0] != list(range(1000))  # shuffled
    assert orders[0] != orders[1]  # reshuffled each epoch


def _epoch_rows(dataloader) -> list[int]:
    rows = []
    for batch in dataloader:
        assert isinstance(batch, torch.Tensor)
        rows.extend(batch[0].tolist())
        # the other columns belong to the same rows
        assert batch[1].tolist() == [2 * r for r in batch[0].tolist()]
    return rows


def _two_column_table(db, n=1000):
    return db.create_table(
        "t", pa.table({"id": np.arange(n, dtype=np.int64), "twice": np.arange(0, 2 * n, 2)})
    )


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_dataloader_batch_100(tmp_path, kind):
    from lancetorch.util import tbl_to_tensor

    db = lancetorch.connect("memory://" if kind == "memory" else tmp_path)
    table = _two_column_table(db)
    loader = torch.utils.data.DataLoader(
        table,
        batch_size=100,
        shuffle=True,
        collate_fn=tbl_to_tensor,
        generator=torch.Generator().manual_seed(1),
    )
    assert len(loader) == 10
    epochs = []
    for _ in range(2):
        shapes = [b.shape for b in loader]
        assert shapes == [(2, 100)] * 10
        rows = _epoch_rows(loader)
        assert collections.Counter(rows) == collections.Counter(range(1000))
        epochs.append(rows)
    assert epochs[0] != list(range(1000))
    assert epochs[0] != epochs[1]


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_dataloader_sequential_with_remainder(tmp_path, kind):
    from lancetorch.util import tbl_to_tensor

    db = lancetorch.connect("memory://" if kind == "memory" else tmp_path)
    table = _two_column_table(db, n=1050)
    loader = torch.utils.data.DataLoader(table, batch_size=100, collate_fn=tbl_to_tensor)
    batches = list(loader)
    assert [b.shape[1] for b in batches] == [100] * 10 + [50]
    assert torch.cat(batches, dim=1)[0].tolist() == list(range(1050))
    assert torch.cat(batches, dim=1)[1].tolist() == list(range(0, 2100, 2))


def test_quickstart_on_disk(tmp_path):
    from lancetorch.util import tbl_to_tensor

    db = lancetorch.connect(tmp_path)
    table = db.create_table("test_table", pa.table({"a": range(1000)}))
    reopened = lancetorch.connect(tmp_path).open_table("test_table")
    for t in (table, reopened):
        dataloader = torch.utils.data.DataLoader(
            t,
            batch_size=1024,
            shuffle=True,
            collate_fn=tbl_to_tensor,
            generator=torch.Generator().manual_seed(2),
        )
        for _epoch in range(2):
            (batch,) = list(dataloader)
            assert batch.shape == (1, 1000)
            assert sorted(batch[0].tolist()) == list(range(1000))


def test_dataloader_passthrough_gives_arrow(mem_db):
    from lancetorch.util import passthrough

    table = _two_column_table(mem_db, n=250)
    loader = torch.utils.data.DataLoader(table, batch_size=100, collate_fn=passthrough)
    batches = list(loader)
    assert all(isinstance(b, pa.Table) for b in batches)  # as LanceDB's __getitems__ gives
    assert [b.num_rows for b in batches] == [100, 100, 50]
    assert pa.concat_tables(batches).equals(table.to_arrow())


def test_dataloader_after_add(mem_db):
    from lancetorch.util import tbl_to_tensor

    table = mem_db.create_table("t", pa.table({"a": range(500)}))
    table.add(pa.table({"a": range(500, 1000)}))
    loader = torch.utils.data.DataLoader(
        table,
        batch_size=128,
        shuffle=True,
        collate_fn=tbl_to_tensor,
        generator=torch.Generator().manual_seed(3),
    )
    rows = [r for b in loader for r in b[0].tolist()]
    assert sorted(rows) == list(range(1000))
