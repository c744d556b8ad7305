"""StreamingDataLoader: a DataLoader over a StreamingDataset whose checkpoints count only the
batches the training loop received (each worker's progress comes back with its batches)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, NamedTuple

from torch.utils.data import DataLoader, IterableDataset

from .dataset import StreamingDataset
from .state import Progress


class _Sample(NamedTuple):
    """A row on its way through a StreamingDataLoader worker, with the progress of the
    dataset it is part of."""

    row: Any
    progress: Progress


class _Batch(NamedTuple):
    """A collated batch and its worker's progress once the batch was made."""

    data: Any
    state: dict


class _Collate:
    """A collate function that also carries the worker's progress once the batch is made."""

    def __init__(self, collate_fn: Callable[[list], Any]) -> None:
        self.collate_fn = collate_fn

    def __call__(self, samples: Any) -> _Batch:
        try:
            if isinstance(samples, list):
                if not samples:
                    return _Batch(self.collate_fn(samples), {})
                data = self.collate_fn([s.row for s in samples])
                progress = samples[-1].progress
            else:  # batch_size=None: one sample at a time
                data, progress = self.collate_fn(samples.row), samples.progress
        except StopIteration as exc:
            raise RuntimeError("collate_fn raised StopIteration before returning a batch") from exc
        return _Batch(data, progress.snapshot())


class _Adapter(IterableDataset):
    """What a StreamingDataLoader iterates: the dataset's rows, each with its progress."""

    def __init__(self, dataset: StreamingDataset) -> None:
        super().__init__()
        self.dataset = dataset

    def __iter__(self) -> Iterator[_Sample]:
        for row in self.dataset._iter(transport=True):
            yield _Sample(row, self.dataset._progress)


class _Committing:
    """A StreamingDataLoader's iterator: a batch's progress is committed to the dataset as
    the batch is returned, and a batch that fails on the way spoils the checkpoint.

    Parameters
    ----------
    inner : Any
        The DataLoader's own iterator.
    progress : Progress
        The dataset's progress, which each batch's is committed to.
    release : callable
        Frees the dataset for another iterator, once.
    uniform : bool
        The progress is committed at complete steps only (several workers, or packing).
    """

    def __init__(
        self, inner: Any, progress: Progress, release: Callable[[], None], uniform: bool
    ) -> None:
        self._inner, self._progress = inner, progress
        self._release, self._uniform = release, uniform
        self._done = False

    def __iter__(self) -> _Committing:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        try:
            batch = next(self._inner)
        except StopIteration:
            self._finish()
            raise
        except BaseException as exc:
            self._progress.invalidate(f"a DataLoader batch failed before it was returned: {exc}")
            raise
        try:
            self._progress.commit(batch.state, require_uniform=self._uniform)
        except BaseException as exc:
            self._progress.invalidate(f"a DataLoader batch failed before it was returned: {exc}")
            raise
        return batch.data

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._release()

    def _shutdown_workers(self) -> None:
        if self._done:
            return
        shutdown = getattr(self._inner, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        self._finish()

    def __del__(self) -> None:
        try:
            self._shutdown_workers()
        except BaseException:
            pass

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__.get("_inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)


class StreamingDataLoader(DataLoader):
    """A DataLoader over a :class:`StreamingDataset` whose checkpoints count only the batches
    the training loop received (workers read ahead; their progress comes back with each
    batch). With more than one worker, ``state_dict()`` works at complete steps (every split
    of the rank at one count).

    Parameters
    ----------
    dataset : StreamingDataset
        The dataset read (not a subclass that overrides ``__iter__``).
    *args : Any
        DataLoader's arguments.
    **kwargs : Any
        DataLoader's arguments; ``persistent_workers=True``, ``drop_last=True`` and
        ``in_order=False`` are refused, as they would make a checkpoint wrong.

    Raises
    ------
    TypeError
        For a dataset that is not a StreamingDataset, or overrides ``__iter__``.
    ValueError
        For ``persistent_workers=True``, ``drop_last=True`` or ``in_order=False``, or a
        ``batch_size`` past both the samples an epoch gives and 2**20.
    """

    def __init__(self, dataset: StreamingDataset, *args: Any, **kwargs: Any) -> None:
        if not isinstance(dataset, StreamingDataset):
            raise TypeError("StreamingDataLoader requires a StreamingDataset")
        if type(dataset).__iter__ is not StreamingDataset.__iter__:
            raise TypeError(
                "StreamingDataLoader does not support StreamingDataset subclasses that "
                "override __iter__: they cannot report their progress with each batch"
            )
        if kwargs.get("in_order", True) is False:
            raise ValueError("StreamingDataLoader requires in_order=True for exact checkpoints")
        if kwargs.get("persistent_workers", False):
            raise ValueError(
                "StreamingDataLoader does not support persistent_workers=True: a kept worker "
                "would go on from where it was, not from the dataset's checkpoint"
            )
        size = kwargs.get("batch_size", args[0] if args else 1)
        blocks = dataset._blocks_per_epoch  # an int once the dataset is made
        samples = max(len(dataset._table), blocks if isinstance(blocks, int) else 0)
        if isinstance(size, int) and not isinstance(size, bool) and size > max(samples, 1 << 20):
            # DataLoader fills a list of batch_size slots one by one in Python before the
            # first batch: a size far past the data would run for minutes, or fill memory.
            raise ValueError(
                f"batch_size={size} is more than the {samples} samples an epoch of this dataset "
                "gives (and than 2**20); a batch holds at most all of them: pass a smaller one"
            )
        self._streaming_dataset = dataset
        super().__init__(_Adapter(dataset), *args, **kwargs)
        if self.drop_last:
            raise ValueError(
                "StreamingDataLoader does not support drop_last=True: each worker drops its "
                "own short tail, which no topology-independent checkpoint can describe"
            )
        self.collate_fn = _Collate(self.collate_fn)

    def __iter__(self) -> _Committing:  # type: ignore[override]  # yields as DataLoader's does
        dataset = self._streaming_dataset
        token = object()
        try:
            dataset._acquire(token)
            progress = dataset._progress
            state = progress.snapshot()
            # LanceDB's one-block samples commit at complete steps; pack_blocks samples
            # resume between any two.
            packed = progress.config.packed and progress.config.pack_blocks is None
            if progress.uneven(state, dataset._rank_splits, self.num_workers > 1):
                raise RuntimeError(
                    "StreamingDataLoader cannot start from a partial logical step; resume from "
                    "a checkpoint whose splits assigned to this rank have equal counts"
                )
            return _Committing(
                super().__iter__(),
                progress,
                partial(dataset._release, token),
                self.num_workers > 1 or packed,
            )
        except BaseException:
            dataset._release(token)
            raise
