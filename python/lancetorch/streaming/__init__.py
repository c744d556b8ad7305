"""An elastic, resumable streaming dataset: LanceDB's ``StreamingDataset`` on lancetorch.

The rows (after an optional SQL ``filter``) are dealt into ``num_splits`` equal splits by a
seeded shuffle of lancetorch's Rust core (``shuffle_seed + epoch * 100003`` seeds it), each
split read in the random order it was dealt in; with ``shuffle=False`` both are in table order.
Rank ``r`` of ``world_size`` owns a contiguous block of splits; a DataLoader worker owns a
contiguous part of its rank's block. An iterator yields one
row per owned split in turn, so for a fixed ``(num_splits, shuffle_seed, epoch)`` the rows that
make up a global step are the same whatever the number of ranks or workers.

``state_dict()`` counts the rows each split has given; ``load_state_dict`` resumes there on
any topology whose ranks and workers divide ``num_splits`` (merge the states of all ranks with
:meth:`StreamingDataset.merge_state_dicts` first). :class:`StreamingDataLoader` is a
DataLoader that commits a worker's progress only when its batch reaches the training loop.

Rows are read a batch at a time per split (``read_batch_size`` rows, ``io_queue_depth``
batches ahead) by lancetorch's takes, and turned into samples by ``transform`` (a function of
a ``pyarrow.RecordBatch`` returning one sample per row; rows as dicts by default) on a
thread pool.
"""

from __future__ import annotations

from .arguments import DEFAULT_PREFETCH_BATCHES as DEFAULT_PREFETCH_BATCHES
from .arguments import DEFAULT_READ_BATCH_SIZE as DEFAULT_READ_BATCH_SIZE
from .dataset import StreamingDataset
from .dataset import logger as logger
from .loader import StreamingDataLoader

# The classes say they are the package's: their pickles and documented names
# (``lancetorch.streaming.StreamingDataset``) are those a user imports, whichever module of
# the package holds them.
StreamingDataset.__module__ = __name__
StreamingDataLoader.__module__ = __name__

__all__ = ["StreamingDataLoader", "StreamingDataset"]
