"""The torch_dict format's rows: values made when read, and PyTorch's default collate giving
the batched tensors back, checked against plain dicts collated the usual way."""

from __future__ import annotations

import pickle

import lancetorch
import numpy as np
import pyarrow as pa
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lancetorch._torch_rows import TorchRow
from lancetorch.decode import Text
from lancetorch.permutation import Permutation
from torch.utils.data import DataLoader, default_collate


def table(n: int = 50):
    rng = np.random.default_rng(0)
    return lancetorch.connect("memory://").create_table(
        "t",
        pa.table(
            {
                "x": rng.random(n, dtype=np.float32),
                "label": np.arange(n),
                "emb": pa.FixedSizeListArray.from_arrays(pa.array(rng.random(n * 3)), 3),
                "name": [f"row {i}" for i in range(n)],
            }
        ),
    )


def plain(row: TorchRow) -> dict:
    return {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in row.items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a
    )


def test_a_row_reads_as_the_dict_of_its_values():
    perm = Permutation.identity(table()).with_format("torch_dict")
    row = perm[7]
    assert isinstance(row, TorchRow) and list(row) == ["x", "label", "emb", "name"]
    assert row["label"].item() == 7 and row["name"] == "row 7" and row["emb"].shape == (3,)
    assert same(dict(row), plain(row)) and len(row) == 4
    back = pickle.loads(pickle.dumps(row))
    assert type(back) is dict and same(back, plain(row))
    assert "row 7" in repr(row)


@settings(max_examples=40, deadline=None)
@given(index=st.lists(st.integers(0, 49), min_size=1, max_size=30))
def test_the_default_collate_gives_what_it_gives_for_plain_dicts(index):
    perm = Permutation.identity(table()).with_format("torch_dict")
    rows = perm.__getitems__(index)
    assert same(default_collate(rows), default_collate([plain(r) for r in rows]))
    # Rows in another order, and rows of two batches together.
    mixed = rows[::-1] + perm.__getitems__([0, 1])
    assert same(default_collate(mixed), default_collate([plain(r) for r in mixed]))


def test_a_tokenizers_dict_is_cut_into_rows_and_collated_back():
    def tokenizer(texts):
        return {"ids": torch.tensor([[len(t), 0] for t in texts])}

    perm = Permutation.identity(table(6)).with_format(
        "torch_dict", decode={"name": Text(tokenizer=tokenizer)}
    )
    rows = perm.__getitems__([0, 1, 2])
    assert torch.equal(rows[1]["name"]["ids"], torch.tensor([5, 0]))
    assert torch.equal(default_collate(rows)["name"]["ids"], torch.tensor([[5, 0]] * 3))


@pytest.mark.parametrize("workers", [0, 2])
def test_a_dataloader_reads_every_row_once(workers):
    perm = Permutation.identity(table()).with_format("torch_dict")
    kw = dict(multiprocessing_context="spawn") if workers else {}
    loader = DataLoader(perm, batch_size=16, shuffle=True, num_workers=workers, **kw)
    seen = []
    for batch in loader:
        assert batch["x"].shape == batch["label"].shape and batch["emb"].shape[1] == 3
        assert batch["name"] == [f"row {i}" for i in batch["label"].tolist()]
        seen += batch["label"].tolist()
    assert sorted(seen) == list(range(50))
