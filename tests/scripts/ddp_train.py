"""Trained by tests/test_distributed.py under ``torchrun --nproc_per_node=2``: a small model,
DistributedDataParallel on gloo, two epochs from a lancetorch table; each rank writes the rows
it saw and its final weights to ``<out>/rank<r>.json``.

    torchrun --standalone --nproc_per_node=2 ddp_train.py URI TABLE OUT [STORAGE_OPTIONS_JSON]
"""

import json
import sys

import lancetorch
import torch
import torch.distributed as dist
from lancetorch.loader import Loader
from lancetorch.sampler import BatchSampler
from lancetorch.util import tbl_to_tensor
from torch.nn.parallel import DistributedDataParallel


def main() -> None:
    uri, name, out = sys.argv[1:4]
    options = json.loads(sys.argv[4]) if len(sys.argv) > 4 else None
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    table = lancetorch.connect(uri, storage_options=options).open_table(name)
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Linear(4, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    loader = Loader(table, batch_size=64, seed=7)  # rank and world size from torch.distributed
    seen = []
    for epoch in range(2):
        loader.set_epoch(epoch)
        rows = []
        for batch in loader:  # (columns, rows): id, four features, label
            x, y = batch[1:5].T, batch[5:6].T
            loss = torch.nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            rows += batch[0].long().tolist()
        seen.append(rows)

    # The same shards through the DataLoader, with the Rust batch sampler.
    sampler = BatchSampler(table, 64, seed=7)
    sampler.set_epoch(1)
    loader = torch.utils.data.DataLoader(table, batch_sampler=sampler, collate_fn=tbl_to_tensor)
    via_dataloader = torch.cat([b[0] for b in loader]).long().tolist()

    unseeded = BatchSampler(table, 64)  # rank 0 chooses a seed and shares it

    weights = [p.detach().flatten().tolist() for p in model.parameters()]
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(
            {
                "seen": seen,
                "dataloader": via_dataloader,
                "weights": weights,
                "unseeded": unseeded.seed,
                "world_size": dist.get_world_size(),
            },
            f,
        )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
