"""One rank of ``torchrun``: read a shuffled epoch of a table through a node tier every rank
of the machine shares, and write the ids read and the tier's counts to ``rank<r>.json``.

    torchrun --standalone --nproc_per_node=2 tier_ranks.py URI TIER OUT [OPTIONS_JSON]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lancetorch
from lancetorch.loader import Loader


def main() -> None:
    uri, tier, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    options = json.loads(sys.argv[4]) if len(sys.argv) > 4 else None
    table = lancetorch.connect(uri, storage_options=options).open_table(
        "t", cache=True, cache_dir=tier
    )
    loader = Loader(table, 100, seed=3, per_column=True)  # rank and world from torchrun
    ids = [int(i) for batch in loader for i in batch["id"]]
    rank = loader._sampler.rank
    result = {"rank": rank, "ids": ids, **table._backend.tier_stats()}
    (out / f"rank{rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
