"""Real ``torchrun``: two processes on the gloo backend train with DistributedDataParallel from
a lancetorch table, each on its own shard of every epoch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import lancetorch
import numpy as np
import pyarrow as pa
import pytest
from lancetorch.sampler import BatchSampler

SCRIPT = Path(__file__).parent / "scripts" / "ddp_train.py"


def training_table(n: int) -> pa.Table:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return pa.table(
        {
            "id": np.arange(n, dtype=np.int64),
            **{f"f{i}": x[:, i] for i in range(4)},
            "label": (x @ np.array([1, -2, 0.5, 3], dtype=np.float32)).astype(np.float32),
        }
    )


def torchrun(uri: str, out: Path, options: dict | None) -> list[dict]:
    torchrun = Path(sys.executable).parent / "torchrun"
    command = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node=2",
        str(SCRIPT),
        uri,
        "train",
        str(out),
    ]
    if options:
        command.append(json.dumps(options))
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.parametrize("where", ["directory", "object storage"])
def test_two_ranks_train_on_disjoint_shards(where, tmp_path, request):
    n = 1001  # odd: the last round is padded with one repeated row
    if where == "directory":
        uri, options = str(tmp_path / "db"), None
    else:
        server = request.getfixturevalue("s3_server")
        uri, options = f"s3://tests/{uuid.uuid4().hex}", server.options
    lancetorch.connect(uri, storage_options=options).create_table("train", training_table(n))
    out = tmp_path / "out"
    out.mkdir()
    ranks = torchrun(uri, out, options)

    assert all(r["world_size"] == 2 for r in ranks)
    for epoch in range(2):
        shards = [r["seen"][epoch] for r in ranks]
        assert len(shards[0]) == len(shards[1]) == 501
        assert sorted(set(shards[0]) | set(shards[1])) == list(range(n)), "every row"
        assert len(set(shards[0]) & set(shards[1])) <= 1, "only the padding row repeats"
        for rank, shard in enumerate(shards):
            expected = BatchSampler(n, 64, seed=7, rank=rank, world_size=2).shard_rows(epoch)
            assert shard == expected.tolist(), "the documented order"
    assert ranks[0]["seen"][0] != ranks[0]["seen"][1], "reshuffled per epoch"
    assert [r["dataloader"] for r in ranks] == [r["seen"][1] for r in ranks]
    assert ranks[0]["weights"] == ranks[1]["weights"], "DDP kept the replicas in step"
    assert ranks[0]["unseeded"] == ranks[1]["unseeded"], "an unseeded shuffle agrees across ranks"


def test_ranks_on_one_machine_share_one_node_tier(s3_server, tmp_path):
    """Two torchrun ranks open one SeaweedFS table with the same node tier: together they
    read every row of the epoch once, and each piece of the table is fetched from the store
    by one of them only (the other maps it)."""
    from lancetorch import _lance_reads

    rows = 2 * _lance_reads.PIECE_ROWS + 1000  # three pieces
    uri = f"s3://tests/{uuid.uuid4().hex}"
    options = s3_server.options
    data = pa.table({"id": np.arange(rows, dtype=np.int64), "x": np.ones(rows, np.float32)})
    lancetorch.connect(uri, storage_options=options).create_table("t", data)
    out = tmp_path / "out"
    out.mkdir()
    command = [
        str(Path(sys.executable).parent / "torchrun"),
        "--standalone",
        "--nproc_per_node=2",
        str(Path(__file__).parent / "scripts" / "tier_ranks.py"),
        uri,
        str(tmp_path / "tier"),
        str(out),
        json.dumps(options),
    ]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    ids = ranks[0]["ids"] + ranks[1]["ids"]
    assert sorted(ids) == list(range(rows)), "every row once"
    assert ranks[0]["fetched_pieces"] + ranks[1]["fetched_pieces"] == 3, "each piece once"
    assert all(r["fetched_pieces"] + r["tier_pieces"] >= 3 for r in ranks), "both read all"
