"""One rank of bench_scale_out.py's two-rank run (under torchrun): two shuffled epochs of this
rank's shard through ``Loader``, rows and seconds written to ``<out>/rank<r>.json``.

    torchrun --standalone --nproc_per_node=2 _rank_epochs.py URI TABLE OUT BATCH OPTIONS_JSON
"""

import json
import sys
import time

import lancetorch
import torch.distributed as dist
from lancetorch.loader import Loader


def main() -> None:
    uri, name, out, batch_size, options = sys.argv[1:6]
    dist.init_process_group("gloo")
    table = lancetorch.connect(uri, storage_options=json.loads(options) or None).open_table(name)
    loader = Loader(table, int(batch_size), seed=0)
    rows, seconds = [], []
    for _ in range(2):
        dist.barrier()
        start, n = time.perf_counter(), 0
        for batch in loader:
            n += batch.shape[1]
        seconds.append(time.perf_counter() - start)
        rows.append(n)
    with open(f"{out}/rank{dist.get_rank()}.json", "w") as f:
        json.dump({"rows": rows, "seconds": seconds}, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
