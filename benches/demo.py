"""lancetorch demo: train a small model for one epoch straight from a table.

    python benches/demo.py                 # 1M rows (what `make demo` runs)
    python benches/demo.py --rows 50000    # a quick look

It builds a table of 16 float32 features (f0..f15) and an int64 ``label`` in 0..9, trains
Linear(16, 64) -> ReLU -> Linear(64, 10) for one shuffled epoch through a lancetorch table,
then trains the same model through a plain-Python loader (one dict per row, PyTorch's
default collate) and compares rows/s. Both numbers include the training step, run with
one torch thread unless --threads says otherwise.
"""

from __future__ import annotations

import argparse
import time

import lancetorch
import numpy as np
import pyarrow as pa
import torch
from lancetorch.util import tbl_to_tensor
from torch import nn
from torch.utils.data import DataLoader, Dataset

N_FEATURES = 16
N_CLASSES = 10


def make_data(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random features; the label is the argmax of a fixed random projection, so a model
    can learn it and the loss goes down."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((rows, N_FEATURES), dtype=np.float32)
    projection = rng.standard_normal((N_FEATURES, N_CLASSES), dtype=np.float32)
    labels = (features @ projection).argmax(axis=1).astype(np.int64)
    return features, labels


class RowDictDataset(Dataset):
    """The kind of loader many users have today: one dict per row."""

    def __init__(self, features: np.ndarray, labels: np.ndarray) -> None:
        self.features = features
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"features": self.features[i], "label": int(self.labels[i])}


def make_model() -> nn.Module:
    torch.manual_seed(0)  # the same starting weights for both runs
    return nn.Sequential(nn.Linear(N_FEATURES, 64), nn.ReLU(), nn.Linear(64, N_CLASSES))


def train_epoch(
    loader, to_xy, first: int, max_batches: int | None = None
) -> tuple[int, float, float]:
    """Train a fresh model over `loader`; returns (rows, seconds, mean loss of the first
    `first` batches: the one loss both loaders report over the same amount of training)."""
    torch.manual_seed(0)  # the same initial weights for both loaders
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    rows, total_loss, batches = 0, 0.0, 0
    start = time.perf_counter()
    for batch in loader:
        x, y = to_xy(batch)
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        rows += len(y)
        if batches < first:
            total_loss += loss.item()
        batches += 1
        if max_batches is not None and batches >= max_batches:
            break
    return rows, time.perf_counter() - start, total_loss / max(min(batches, first), 1)


def lancetorch_xy(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # tbl_to_tensor gives one (columns, rows) tensor: 16 feature rows, then the label row.
    return t[:N_FEATURES].T, t[N_FEATURES].long()


def plain_xy(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    return batch["features"], batch["label"]


def main() -> None:
    p = argparse.ArgumentParser(description="Train one epoch from a lancetorch table.")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument(
        "--plain-batches",
        type=int,
        default=100,
        help="batches to train through the plain-Python loader (it is slow); default 100",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: a model this small gains nothing from more, "
        "and extra threads make timings erratic on a busy machine)",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    # 1. A table in memory: 16 float32 feature columns and an int64 label.
    features, labels = make_data(args.rows)
    columns = {f"f{i}": features[:, i] for i in range(N_FEATURES)}
    columns["label"] = labels
    db = lancetorch.connect("memory://")
    table = db.create_table("demo", pa.table(columns), mode="overwrite")
    print(f"table: {len(table):,} rows, columns {table.schema.names[0]}..{table.schema.names[-1]}")

    # 2. One epoch through lancetorch: the table is the Dataset, tbl_to_tensor the collate.
    loader = DataLoader(table, batch_size=args.batch_size, shuffle=True, collate_fn=tbl_to_tensor)
    first = args.plain_batches
    rows, seconds, loss = train_epoch(loader, lancetorch_xy, first)
    fast = rows / seconds
    print(
        f"lancetorch:   {rows:>9,} rows in {seconds:6.2f} s = {fast:>11,.0f} rows/s, "
        f"mean loss of the first {first} batches {loss:.3f}"
    )

    # 3. The same training through a plain-Python loader, over its first --plain-batches.
    plain = DataLoader(RowDictDataset(features, labels), batch_size=args.batch_size, shuffle=True)
    rows, seconds, loss = train_epoch(plain, plain_xy, first, max_batches=first)
    slow = rows / seconds
    print(
        f"plain Python: {rows:>9,} rows in {seconds:6.2f} s = {slow:>11,.0f} rows/s, "
        f"mean loss of the first {first} batches {loss:.3f}  (it trains only those)"
    )

    print(f"lancetorch trains {fast / slow:.1f}x as many rows per second as plain Python")


if __name__ == "__main__":
    main()
