"""How columns that are not plain numbers become training data.

A spec is a small picklable object, given per column in ``decode={column: spec}`` to
:func:`lancetorch.util.to_batch` (a DataLoader ``collate_fn`` through ``functools.partial``),
to ``Permutation.with_format("torch_dict", decode=...)`` and to
``Loader(..., per_column=True, decode=...)``; spawned workers receive it with the rest.

>>> import pyarrow as pa
>>> from lancetorch.util import to_batch
>>> batch = pa.record_batch({"ids": pa.array([[5, 6, 7], [8]], pa.list_(pa.int32()))})
>>> out = to_batch(batch, decode={"ids": Tokens(pad_value=0)})
>>> out["ids"], out["ids_length"]
(tensor([[5, 6, 7],
        [8, 0, 0]], dtype=torch.int32), tensor([3, 1]))
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

from . import _native


def _torch() -> Any:
    import torch

    return torch


@runtime_checkable
class DecodeSpec(Protocol):
    """What every reading path (``to_batch``, the Loader, the ``torch_dict`` rows) uses of a
    spec: the values it makes of a batch's column, and the names of those values, which each
    path hands on, all of them."""

    def decode(self, batch: pa.RecordBatch, column: str, epoch: int = 0) -> dict[str, Any]:
        """``{name: value}`` for the column of ``batch``, one entry per name of
        :meth:`outputs`."""
        ...

    def outputs(self, column: str) -> list[str]:
        """The names :meth:`decode` gives for ``column``, in order."""
        ...


@dataclass(frozen=True)
class Tokens:
    """A column of token lists (``list``, ``large_list`` or ``list_view`` of integers) as a
    padded ``(rows, length)`` tensor of the tokens' own integer type, and ``<column>_length``,
    the ``(rows,)`` int64 count of real tokens in each row.

    ``length`` is the batch's longest row, capped at ``max_length``. Positions past a row's
    end hold ``pad_value``; a null list is an empty row. The padding is done in Rust, in one
    pass over the batch's token buffer.

    ``pack=True`` packs instead, as pretraining does: the batch's rows, one after another, cut
    into ``(blocks, max_length)`` (the last block ends in ``pad_value``), every token once and
    none cut away, and ``<column>_document``, the ``(blocks, max_length)`` int64 row of the
    batch each token came from (-1 for padding), whose changes are the document boundaries.
    The block count follows the batch's tokens, not its rows, so the other columns keep their
    own row count.

    Parameters
    ----------
    max_length : int, optional
        The longest a row may be (1 or more); rows over it are cut. ``None``: no cap. Needed
        by ``pad_to_max_length`` and ``pack`` (the length of a block).
    pad_value : int, default 0
        The token id of the padding (within int64).
    truncate : bool, default True
        ``False`` refuses rows over ``max_length`` with ValueError naming the row.
    pad_to_max_length : bool, default False
        Pad every batch to ``max_length`` itself, not to its longest row.
    pack : bool, default False
        Pack the rows into blocks, as above, instead of padding each.

    Raises
    ------
    ValueError
        For a ``max_length`` under 1, a ``pad_value`` outside int64, or ``pad_to_max_length``
        or ``pack`` without ``max_length``.
    TypeError
        For a ``pad_value`` that is not an integer.
    """

    max_length: int | None = None
    pad_value: int = 0
    truncate: bool = True
    pad_to_max_length: bool = False
    pack: bool = False

    def __post_init__(self) -> None:
        limit = self.max_length
        if limit is not None and (isinstance(limit, bool) or operator.index(limit) < 1):
            raise ValueError(f"max_length={limit!r} must be 1 or more, or None")
        if isinstance(self.pad_value, bool) or not isinstance(self.pad_value, int):
            raise TypeError(f"pad_value={self.pad_value!r} must be an integer token id")
        if not -(2**63) <= self.pad_value < 2**63:
            raise ValueError(f"pad_value={self.pad_value} is outside the int64 range")
        if self.pad_to_max_length and self.max_length is None:
            raise ValueError("pad_to_max_length=True needs max_length")
        if self.pack and self.max_length is None:
            raise ValueError("pack=True needs max_length, the length of a packed block")

    def outputs(self, column: str) -> list[str]:
        """``[column, <column>_length]``, or packed ``[column, <column>_document]``.

        Parameters
        ----------
        column : str
            The column of token lists.

        Returns
        -------
        list[str]
        """
        return [column, f"{column}_document" if self.pack else f"{column}_length"]

    def decode(self, batch: pa.RecordBatch, column: str, epoch: int = 0) -> dict[str, Any]:
        """The column's padded (or packed) tokens, and their lengths (or documents).

        Parameters
        ----------
        batch : pa.RecordBatch
            The batch.
        column : str
            The column of token lists.
        epoch : int, default 0
            Not used (specs share one signature).

        Returns
        -------
        dict[str, torch.Tensor]
            ``{column, <column>_length}``, or with ``pack=True`` ``{column, <column>_document}``.
        """
        torch = _torch()
        index = batch.schema.get_field_index(column)
        if self.pack:
            length = self.max_length
            assert length is not None  # checked in __post_init__
            tokens, rows = _native.pack_tokens(batch, index, length, self.pad_value)
            return {
                column: torch.from_dlpack(tokens),
                f"{column}_document": torch.from_dlpack(rows),
            }
        tokens, lengths = _native.pad_tokens(
            batch, index, self.max_length, self.pad_value, self.truncate, self.pad_to_max_length
        )
        return {column: torch.from_dlpack(tokens), f"{column}_length": torch.from_dlpack(lengths)}


@dataclass(frozen=True)
class Text:
    """A string column as ``list[str]``, or, with ``tokenizer=``, whatever
    ``tokenizer(list_of_strings)`` returns for the batch (a tokenizer of the ``transformers``
    kind gives a dict of tensors). A null is ``None`` (the tokenizer sees it as it is).

    Parameters
    ----------
    tokenizer : callable, optional
        Called once a batch with the column's strings.

    Raises
    ------
    TypeError
        For a ``tokenizer`` that is not callable.
    """

    tokenizer: Callable[[list[str]], Any] | None = None

    def __post_init__(self) -> None:
        if self.tokenizer is not None and not callable(self.tokenizer):
            raise TypeError(f"tokenizer must be callable, got {type(self.tokenizer).__name__}")

    def outputs(self, column: str) -> list[str]:
        """``[column]``: the strings, or the tokenizer's output, under the column's name.

        Parameters
        ----------
        column : str
            The string column.

        Returns
        -------
        list[str]
        """
        return [column]

    def decode(self, batch: pa.RecordBatch, column: str, epoch: int = 0) -> dict[str, Any]:
        """The column's strings, or the tokenizer's output for them.

        Parameters
        ----------
        batch : pa.RecordBatch
            The batch.
        column : str
            A ``string``, ``large_string`` or ``string_view`` column.
        epoch : int, default 0
            Not used (specs share one signature).

        Returns
        -------
        dict[str, Any]
            ``{column: values}``.

        Raises
        ------
        TypeError
            For a column that is not strings.
        """
        array = batch.column(column)
        kind = array.type
        if not (
            pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or pa.types.is_string_view(kind)
        ):
            raise TypeError(f"column '{column}' is {kind}; Text reads string columns")
        values = array.to_pylist()
        return {column: values if self.tokenizer is None else self.tokenizer(values)}


@dataclass(frozen=True)
class Image:
    """A binary column of JPEG, PNG or WebP bytes as one uint8 tensor, ``(rows, 3, height, width)``
    (``layout="NCHW"``) or ``(rows, height, width, 3)`` (``"NHWC"``), decoded, cropped and
    resized (bilinear) in Rust on two threads with the GIL released.

    Random crops are seeded by ``(seed, epoch, the image's bytes)``, the same on every run and
    in every worker. The Loader gives its epoch, so the crops change each epoch there; through
    ``to_batch`` pass ``epoch=`` to change them, and through a Permutation's ``torch_dict``
    format (which knows no epoch) vary ``seed`` per epoch, or the crops repeat. Grayscale and
    alpha images become RGB. An image that cannot be read (corrupt, truncated, empty, null,
    another format, over 2**28 pixels, or a JPEG whose header claims more pixels than its bytes
    can code: at least two bits for each 8x8 block of each component baseline, one
    progressive) raises ValueError naming the column and its row in the batch, unless
    ``on_error="skip"``. Files are read strictly: one cut short is refused, not completed in
    gray.

    Parameters
    ----------
    size : tuple[int, int], default (224, 224)
        The output's ``(height, width)``, each 1 to 16384.
    layout : {"NCHW", "NHWC"}, default "NCHW"
        Channels first or last.
    crop : {"center", "random"}, default "center"
        ``"center"``: the largest centered crop of the output's aspect ratio (as ``Resize``
        then ``CenterCrop``). ``"random"``: torchvision's ``RandomResizedCrop``.
    scale : tuple[float, float], default (0.08, 1.0)
        With ``crop="random"``, the range the crop's area fraction is drawn from
        (``0 < low <= high <= 1``).
    ratio : tuple[float, float], default (3 / 4, 4 / 3)
        With ``crop="random"``, the range the crop's aspect ratio is drawn from, log-uniform.
    flip : bool, default False
        With ``crop="random"``, mirror the image half the time.
    seed : int, default 0
        Seeds the random crops and flips (0 to 2**64 - 1).
    on_error : {"raise", "skip"}, default "raise"
        ``"skip"``: an image that cannot be read takes its row out of the batch (every column
        of it; the Loader counts such rows in ``stats()["skipped"]``) instead of raising.

    Raises
    ------
    ValueError
        For a value out of the ranges above.
    """

    size: tuple[int, int] = (224, 224)  # (height, width)
    layout: str = "NCHW"
    crop: str = "center"
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = False
    seed: int = 0
    on_error: str = "raise"

    def __post_init__(self) -> None:
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"on_error={self.on_error!r} must be 'raise' or 'skip'")
        height, width = self.size
        if not all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 16384
            for v in (height, width)
        ):
            raise ValueError(f"size={self.size!r} must be (height, width), each 1 to 16384")
        if self.layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout={self.layout!r} must be 'NCHW' or 'NHWC'")
        if self.crop not in ("center", "random"):
            raise ValueError(f"crop={self.crop!r} must be 'center' or 'random'")
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"scale={self.scale!r} must be fractions 0 < low <= high <= 1")
        lo, hi = self.ratio
        if not 0 < lo <= hi:
            raise ValueError(f"ratio={self.ratio!r} must be aspect ratios 0 < low <= high")
        if not 0 <= self.seed < 2**64:
            raise ValueError(f"seed={self.seed} must be between 0 and 2**64 - 1")

    def outputs(self, column: str) -> list[str]:
        """``[column]``: the images under the column's name.

        Parameters
        ----------
        column : str
            The column of encoded images.

        Returns
        -------
        list[str]
        """
        return [column]

    def decode_rows(
        self, batch: pa.RecordBatch, column: str, epoch: int = 0
    ) -> tuple[dict[str, Any], list[int]]:
        """The images, and the rows skipped (``on_error="skip"``; black in the tensor).

        Parameters
        ----------
        batch : pa.RecordBatch
            The batch.
        column : str
            The column of encoded images.
        epoch : int, default 0
            Seeds the random crops with ``seed``.

        Returns
        -------
        tuple[dict[str, torch.Tensor], list[int]]
            ``({column: images}, skipped rows)``.

        Raises
        ------
        ValueError
            For an image that cannot be read, with ``on_error="raise"``.
        """
        torch = _torch()
        height, width = self.size
        capsule, failed = _native.decode_images(
            batch,
            batch.schema.get_field_index(column),
            width,
            height,
            self.layout == "NHWC",
            self.crop == "random",
            (float(self.scale[0]), float(self.scale[1])),
            (float(self.ratio[0]), float(self.ratio[1])),
            bool(self.flip),
            int(self.seed),
            int(epoch) % 2**64,
            self.on_error == "skip",
        )
        return {column: torch.from_dlpack(capsule)}, failed

    def decode(self, batch: pa.RecordBatch, column: str, epoch: int = 0) -> dict[str, Any]:
        """The images as one tensor (rows that failed under ``on_error="skip"`` dropped).

        Parameters
        ----------
        batch : pa.RecordBatch
            The batch.
        column : str
            The column of encoded images.
        epoch : int, default 0
            Seeds the random crops with ``seed``.

        Returns
        -------
        dict[str, torch.Tensor]
            ``{column: images}``.

        Raises
        ------
        ValueError
            For an image that cannot be read, with ``on_error="raise"``.
        """
        values, failed = self.decode_rows(batch, column, epoch)
        if failed:
            keep = [i for i in range(batch.num_rows) if i not in set(failed)]
            values = {column: values[column][keep]}
        return values


Spec = Tokens | Text | Image

__all__ = ["Image", "Spec", "Text", "Tokens"]
