"""One rank of bench_scale_out.py's two-rank runs (under torchrun): two shuffled epochs of this
rank's shard through ``Loader``, rows, seconds and what each epoch read from the store and the
node tier written to ``<out>/rank<r>.json``.

    torchrun --standalone --nproc_per_node=2 _rank_epochs.py URI TABLE OUT BATCH OPTIONS_JSON \
        [EXTRA_JSON]

``EXTRA_JSON`` holds ``{"open": {...}, "loader": {...}}``: arguments of ``open_table``
(``{"cache_budget": ...}`` reads by windows) and of ``Loader`` (``{"per_column": true}``).
"""

import json
import sys
import time

import lancetorch
import torch.distributed as dist
from lancetorch.loader import Loader


def main() -> None:
    uri, name, out, batch_size, options = sys.argv[1:6]
    extra = json.loads(sys.argv[6]) if len(sys.argv) > 6 else {}
    dist.init_process_group("gloo")
    db = lancetorch.connect(uri, storage_options=json.loads(options) or None)
    table = db.open_table(name, **extra.get("open", {}))
    loader = Loader(table, int(batch_size), seed=0, **extra.get("loader", {}))
    rows, seconds, store_bytes, store_requests, tier_bytes = [], [], [], [], []
    for _ in range(2):
        before = loader.stats()
        dist.barrier()
        start, n = time.perf_counter(), 0
        for batch in loader:
            n += len(next(iter(batch.values()))) if isinstance(batch, dict) else batch.shape[1]
        seconds.append(time.perf_counter() - start)
        rows.append(n)
        after = loader.stats()
        # (0 where a lancetorch before these counts is measured)
        store_bytes.append(after.get("store_bytes", 0) - before.get("store_bytes", 0))
        store_requests.append(after.get("store_requests", 0) - before.get("store_requests", 0))
        tier_bytes.append(after.get("tier_bytes", 0) - before.get("tier_bytes", 0))
    with open(f"{out}/rank{dist.get_rank()}.json", "w") as f:
        json.dump(
            {
                "rows": rows,
                "seconds": seconds,
                "store_bytes": store_bytes,
                "store_requests": store_requests,
                "tier_bytes": tier_bytes,
            },
            f,
        )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
