"""What a Loader does to each batch before the loop gets it: pinned, moved to a device
(checked when the Loader is made: ``_device``), cut into ``x`` and ``y`` (``_x_y``); a
transform's output walked for its tensors (``_each_tensor``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _device(device: Any, torch: Any) -> Any:
    """``device`` as a ``torch.device`` (a name, an index as torch reads one, or a device),
    checked now rather than at the first batch."""
    if device is None:
        return None
    if isinstance(device, bool) or not isinstance(device, (str, int, torch.device)):
        raise TypeError(
            f"device={device!r} is {type(device).__name__}; give a torch.device or its name, "
            "such as 'cuda' or 'cpu'"
        )
    try:
        found = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device={device!r} is not a device torch knows: {err}") from err
    if found.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} is a CUDA device, and torch finds no CUDA here; leave device "
            "out (or pass 'cpu') on this machine"
        )
    return found


def _each_tensor(batch: Any, torch: Any, fn: Callable[[Any], Any]) -> Any:
    """``batch`` with ``fn`` applied to every tensor in it, however deep in dicts, lists and
    tuples (what a transform may return); other values stay as they are."""
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, dict):
        return {k: _each_tensor(v, torch, fn) for k, v in batch.items()}
    if not isinstance(batch, (list, tuple)) or not any(
        isinstance(v, (torch.Tensor, dict, list, tuple)) for v in batch
    ):
        return batch  # strings, bytes: as they are
    parts = [_each_tensor(v, torch, fn) for v in batch]
    if hasattr(batch, "_fields"):  # a named tuple
        return type(batch)(*parts)
    return type(batch)(parts)


def _x_y(
    batch: dict, torch: Any, features: list[str], target: str | None, x_dtype: str | None
) -> Any:
    """``x``, the ``(rows, features)`` tensor of the ``features`` columns of ``batch`` in
    ``x_dtype`` (None: their common type), or ``(x, y)`` with the ``target`` column."""
    parts = [batch[f] for f in features]
    common = getattr(torch, x_dtype) if x_dtype else None
    if common is None:
        common = parts[0].dtype
        for t in parts[1:]:
            common = torch.promote_types(common, t.dtype)
    x = torch.stack([t.to(common) for t in parts], dim=1)
    return x if target is None else (x, batch[target])
