"""The rows of a StreamingDataset's owned splits, one per split in turn, each counted in the
dataset's progress right before it is handed over."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Any

from .pipeline import Pipeline
from .state import Progress


def take_turns(
    pipe: Pipeline,
    progress: Progress,
    splits: list[int],
    samples: list[int],
    offset_too: bool,
) -> Iterator[Any]:
    """The rows of ``splits`` from ``pipe`` (started), one per split in turn.

    Parameters
    ----------
    pipe : Pipeline
        Reads the splits, in this order.
    progress : Progress
        Where each row is counted.
    splits : list of int
        The splits read.
    samples : list of int
        The rows each split had given before.
    offset_too : bool
        Also move ``progress.offset``: the splits nobody iterates here count as far as the
        slowest of these (outside a DataLoader worker, whose progress travels with its
        batches instead).
    """
    counts = list(samples)  # rows given per split, these included
    last = len(splits) - 1
    # Each row is counted right before its ``yield``, with no call in between: a state taken
    # between two ``next()`` counts every row handed over and no other, as an interrupt
    # cannot fall between the count and the hand-over, and one raised before it (in ``pop``
    # or ``publish``) leaves the row uncounted.
    #
    # A state saved between two splits' turns resumes the splits behind first, so the rows
    # continue in the order they would have come.
    if len(set(samples)) > 1:
        target = max(samples)
        behind = [(c, s, i) for i, (c, s) in enumerate(zip(samples, splits)) if c < target]
        heapq.heapify(behind)
        while behind:
            count, split, i = heapq.heappop(behind)
            if not pipe.ready(i):
                return
            position, row = pipe.pop(i)
            if count + 1 < target:
                heapq.heappush(behind, (count + 1, split, i))
            counts[i] = count + 1
            offset = min(counts)
            pipe.publish()
            progress.samples[split] = count + 1
            progress.positions[split] = position + 1
            if offset_too:
                progress.offset = offset
            yield row
    # A cycle runs only when every split can give a row (they run dry together unless rows
    # were skipped).
    while all(pipe.ready(i) for i in range(len(splits))):
        for i, split in enumerate(splits):
            position, row = pipe.pop(i)
            counts[i] += 1
            if i == last:  # a whole cycle: every split is one further
                offset = counts[i]
                pipe.publish()
            progress.samples[split] = counts[i]
            progress.positions[split] = position + 1
            if i == last and offset_too:
                progress.offset = offset
            yield row
