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

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from . import _checks, _native


def _pair(name: str, value: Any) -> tuple[float, float]:
    """``(low, high)``: two numbers, as a tuple or a list."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name}={value!r} is {type(value).__name__}; {name} takes (low, high)")
    return _checks.number(name, value[0]), _checks.number(name, value[1])


def _checked(batch: Any, column: Any) -> int:
    """The position of ``column`` in ``batch``: TypeError for a batch that is not a pyarrow
    RecordBatch or a column name that is not a string, ValueError for a name not in it."""
    if not isinstance(batch, pa.RecordBatch):
        raise TypeError(
            f"batch is {type(batch).__name__}; a spec decodes a pyarrow RecordBatch (to_batch "
            "takes tables and lists of batches)"
        )
    _checks.text("column", column)
    index = batch.schema.get_field_index(column)
    if index < 0:
        raise ValueError(
            f"column '{column}' is not in the batch; its columns are {batch.schema.names}"
        )
    return index


def _torch() -> Any:
    import torch

    return torch


@runtime_checkable
class DecodeSpec(Protocol):
    """What every reading path (``to_batch``, the Loader, the ``torch_dict`` rows) uses of a
    spec: the values it makes of a batch's column, the names of those values, which each
    path hands on, all of them, and what it does to the batch's rows.

    ``rows`` is ``"each"`` for a spec that gives a value for every row; ``"skips"`` for one
    that may leave rows out (they leave every column of the batch): it has
    ``decode_rows(batch, column, epoch) -> (values, skipped rows)``, whose values still
    have a row for each row of the batch, and ``decode`` gives the values without them;
    ``"packs"`` for one whose values are not per row (token blocks), which the
    ``torch_dict`` rows refuse."""

    @property
    def rows(self) -> str:
        """``"each"``, ``"skips"`` or ``"packs"``."""
        ...

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
    none cut away. Beside the tokens, what variable-length attention takes, made in Rust from
    the Arrow offsets:

    - ``<column>_document``: ``(blocks, max_length)`` int64, the row each token came from
      (the row of the batch; in the Loader with ``blocks=``, the row's place in the rank's
      epoch), -1 for padding;
    - ``<column>_position``: ``(blocks, max_length)`` int32, each token's position in its
      document, 0 at each document's first token and at each block's first (a document cut
      by a block boundary goes on from 0 in the next block), 0 for padding;
    - ``<column>_cu_seqlens``: ``(segments + 1,)`` int32, the cumulative lengths of the
      segments (a document's run within one block) over the flattened ``blocks * max_length``
      tokens, from 0 to the tokens used (padding, always at the end, is in none), as
      ``flash_attn_varlen_func(cu_seqlens_q=...)`` and
      ``torch.nested.nested_tensor_from_jagged(offsets=...)`` take them;
    - ``<column>_max_seqlen``: a 0-d int32 tensor, the longest segment (``max_seqlen_q``).

    The block count follows the batch's tokens, not its rows, so the other columns keep their
    own row count. ``blocks=B`` fixes it: every batch is exactly ``(B, max_length)``. The
    Loader then carries the tokens that do not fit into the next batch, and makes batches of
    tokens, not of rows (see :class:`lancetorch.loader.Loader`); a single call
    (``to_batch``, ``decode_columns``) cannot carry, so there a batch whose tokens need more
    than ``B`` blocks is refused and one that needs fewer is padded.

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
    blocks : int, optional
        With ``pack=True``, exactly this many blocks a batch (1 or more), as above.

    Raises
    ------
    ValueError
        For a ``max_length`` or ``blocks`` under 1, a ``pad_value`` outside int64,
        ``pad_to_max_length`` or ``pack`` without ``max_length``, or ``blocks`` without
        ``pack``.
    TypeError
        For a ``max_length`` or ``pad_value`` that is not an integer, or a flag that is not a
        bool.
    """

    max_length: int | None = None
    pad_value: int = 0
    truncate: bool = True
    pad_to_max_length: bool = False
    pack: bool = False
    blocks: int | None = None

    def __post_init__(self) -> None:
        # Frozen: the checked values are set through object.__setattr__ (NumPy ints as ints).
        limit = _checks.optional_integer("max_length", self.max_length, low=1)
        object.__setattr__(self, "max_length", limit)
        pad = _checks.integer("pad_value", self.pad_value)
        if not -(2**63) <= pad < 2**63:
            raise ValueError(f"pad_value={pad} is outside the int64 range")
        object.__setattr__(self, "pad_value", pad)
        for name in ("truncate", "pad_to_max_length", "pack"):
            object.__setattr__(self, name, _checks.flag(name, getattr(self, name)))
        if self.pad_to_max_length and self.max_length is None:
            raise ValueError("pad_to_max_length=True needs max_length")
        if self.pack and self.max_length is None:
            raise ValueError("pack=True needs max_length, the length of a packed block")
        blocks = _checks.optional_integer("blocks", self.blocks, low=1)
        object.__setattr__(self, "blocks", blocks)
        if blocks is not None and not self.pack:
            raise ValueError(
                f"blocks={blocks} fixes the number of packed blocks a batch; it needs pack=True"
            )

    @property
    def rows(self) -> str:
        """``"packs"`` with ``pack=True`` (blocks, not rows), else ``"each"``."""
        return "packs" if self.pack else "each"

    def outputs(self, column: str) -> list[str]:
        """``[column, <column>_length]``, or packed ``[column, <column>_document,
        <column>_position, <column>_cu_seqlens, <column>_max_seqlen]``.

        Parameters
        ----------
        column : str
            The column of token lists.

        Returns
        -------
        list[str]
        """
        _checks.text("column", column)
        if not self.pack:
            return [column, f"{column}_length"]
        return [column] + [f"{column}_{s}" for s in _PACKED]

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
            Each of :meth:`outputs`.

        Raises
        ------
        ValueError
            With ``blocks=``, for a batch whose tokens need more blocks than that.
        """
        index = _checked(batch, column)
        torch = _torch()
        if not self.pack:
            tokens, lengths = _native.decode_tokens(batch, index, self)
            return {
                column: torch.from_dlpack(tokens),
                f"{column}_length": torch.from_dlpack(lengths),
            }
        return self._packed([batch], index, column)[0]

    def _packed(
        self,
        batches: list[pa.RecordBatch],
        index: int,
        column: str,
        *,
        skip: int = 0,
        first_document: int = 0,
        carry: bool = False,
    ) -> tuple[dict[str, Any], int]:
        """Column ``index`` of ``batches``, one after another, packed (``pack=True``), and
        the tokens placed; what the Loader's carry is made of.

        Parameters
        ----------
        batches : list[pa.RecordBatch]
            The batches, each with the token column at ``index``.
        index : int
            The token column's position in each batch.
        column : str
            Its name, the outputs' prefix.
        skip : int, default 0
            Tokens at the start of the first batch already handed out.
        first_document : int, default 0
            The document number of the first batch's first row.
        carry : bool, default False
            With ``blocks``, leave the tokens past ``blocks * max_length`` (the caller
            passes them again) instead of refusing the batch.

        Returns
        -------
        tuple[dict[str, torch.Tensor], int]
            Each of :meth:`outputs`, and the tokens placed.
        """
        torch = _torch()
        tokens, documents, positions, cu, longest, used = _native.pack_tokens(
            batches, index, self, skip=skip, first_document=first_document, carry=carry
        )
        values = [torch.from_dlpack(c) for c in (tokens, documents, positions, cu)]
        values.append(torch.tensor(longest, dtype=torch.int32))
        return dict(zip(self.outputs(column), values)), used


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

    @property
    def rows(self) -> str:
        """``"each"``: a value for every row."""
        return "each"

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
        _checks.text("column", column)
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
        index = _checked(batch, column)
        array = batch.column(index)
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

    A JPEG is decoded only where its crop lies (``jpeg="crop"``, the default): the crop is
    drawn from the header's size exactly as for a full decode, then only the rows and columns
    around it are decoded, and where the crop has at least twice the output's pixels a side,
    at 1/2, 1/4 or 1/8 of the size by a scaled inverse DCT (the largest that still covers the
    output), as libjpeg-turbo and PIL's ``draft()`` do. The pixels then differ slightly from a
    full decode with the same crop and resize: within a mean of 2 levels of 255 on photos,
    single pixels at sharp edges by more (up to about 50). The scaled DCT keeps the crop's low
    frequencies, where the bilinear resize of a full decode aliases a little; a crop no scale
    helps, when small enough to decode alone, takes libjpeg's fast integer DCT and box
    (merged) chroma upsampling, for speed. Damage to a JPEG's image data outside its crop may
    then go unseen (a file cut short is still refused). ``jpeg="full"`` decodes every pixel,
    as earlier versions did.

    Parameters
    ----------
    size : int or tuple[int, int], default (224, 224)
        The output's ``(height, width)``, each 1 to 16384; one int is a square (as
        torchvision's ``size=224``).
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
        Mirror the image left to right half the time, after the crop (either crop), as
        torchvision's ``RandomHorizontalFlip``; seeded as the random crops are.
    seed : int, default 0
        Seeds the random crops and flips (0 to 2**64 - 1).
    on_error : {"raise", "skip"}, default "raise"
        ``"skip"``: an image that cannot be read takes its row out of the batch (every column
        of it; the Loader counts such rows in ``stats()["skipped"]``) instead of raising.
    jpeg : {"crop", "full"}, default "crop"
        ``"crop"``: decode a JPEG's crop only, DCT-scaled where the crop allows (above).
        ``"full"``: decode every pixel at full size, then crop and resize (exact, slower on
        large photos). PNG and WebP are always decoded whole.

    Raises
    ------
    ValueError
        For a value out of the ranges above.
    TypeError
        For a value of another type (a ``size`` that is not an int or a pair of ints, a
        ``flip`` that is not a bool, a ``seed`` that is not an integer).
    """

    size: int | tuple[int, int] = (224, 224)  # (height, width) once made
    layout: str = "NCHW"
    crop: str = "center"
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = False
    seed: int = 0
    on_error: str = "raise"
    jpeg: str = "crop"

    def __post_init__(self) -> None:
        # Frozen: the checked values are set through object.__setattr__ (size=224 as
        # (224, 224), NumPy numbers as Python's).
        _checks.choice("on_error", self.on_error, ("raise", "skip"))
        _checks.choice("jpeg", self.jpeg, ("crop", "full"))
        size = self.size
        if isinstance(size, (bool, np.bool_)) or not isinstance(
            size, (int, np.integer, tuple, list)
        ):
            raise TypeError(
                f"size={size!r} is {type(size).__name__}; size takes an int (a square) or "
                "(height, width)"
            )
        if isinstance(size, (int, np.integer)):
            size = (size, size)
        if len(size) != 2:
            raise ValueError(
                f"size={self.size!r} has {len(size)} values; give (height, width) or one int "
                "for a square"
            )
        height, width = (_checks.integer("size", v, low=1, high=16384) for v in size)
        object.__setattr__(self, "size", (height, width))
        _checks.choice("layout", self.layout, ("NCHW", "NHWC"))
        _checks.choice("crop", self.crop, ("center", "random"))
        lo, hi = _pair("scale", self.scale)
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"scale={self.scale!r} must be fractions 0 < low <= high <= 1")
        object.__setattr__(self, "scale", (lo, hi))
        lo, hi = _pair("ratio", self.ratio)
        if not 0 < lo <= hi < math.inf:
            raise ValueError(f"ratio={self.ratio!r} must be aspect ratios 0 < low <= high")
        object.__setattr__(self, "ratio", (lo, hi))
        object.__setattr__(self, "flip", _checks.flag("flip", self.flip))
        seed = _checks.integer("seed", self.seed)
        if not 0 <= seed < 2**64:
            raise ValueError(f"seed={seed} must be between 0 and 2**64 - 1")
        object.__setattr__(self, "seed", seed)

    @property
    def rows(self) -> str:
        """``"skips"`` with ``on_error="skip"`` (unreadable rows leave the batch), else
        ``"each"``."""
        return "skips" if self.on_error == "skip" else "each"

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
        _checks.text("column", column)
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
        index = _checked(batch, column)
        torch = _torch()
        epoch = _checks.integer("epoch", epoch) % 2**64
        capsule, failed = _native.decode_images(batch, index, self, epoch)
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

# What a packing Tokens spec gives beside the tokens, each ``<column>_<name>``.
_PACKED = ("document", "position", "cu_seqlens", "max_seqlen")


def check_specs(decode: Any) -> dict[str, Any]:
    """``decode`` as a dict of column name to spec instance, checked before any row is read:
    a spec class in place of an instance (``{"img": Image}``), a value that is no spec, or a
    name that is not a string raises TypeError saying what to write.

    Parameters
    ----------
    decode : dict[str, spec] or None
        ``{column: spec}``; ``None`` is no spec.

    Returns
    -------
    dict[str, spec]
        A copy of it.

    Raises
    ------
    TypeError
        For a ``decode`` that is not a dict, or an entry as above.
    """
    if decode is None:
        return {}
    if not isinstance(decode, dict):
        raise TypeError(
            f"decode={decode!r} is {type(decode).__name__}; decode takes a dict of column name "
            "to spec, such as {'img': Image(size=224)}"
        )
    for column, spec in decode.items():
        if not isinstance(column, str):
            raise TypeError(f"decode key {column!r} is {type(column).__name__}; name a column")
        if isinstance(spec, type):
            raise TypeError(
                f"decode['{column}'] is the class {spec.__name__}, not a spec: write "
                f"{spec.__name__}(...), e.g. decode={{'{column}': {spec.__name__}()}}"
            )
        if not isinstance(spec, DecodeSpec):
            raise TypeError(
                f"decode['{column}'] is {type(spec).__name__}; give a lancetorch.decode spec "
                "(Tokens(...), Text(...), Image(...)), or an object with DecodeSpec's "
                "decode(batch, column, epoch), outputs(column) and rows ('each', 'skips' "
                "or 'packs')"
            )
        if spec.rows not in ("each", "skips", "packs"):
            raise TypeError(
                f"decode['{column}'] ({type(spec).__name__}) says rows={spec.rows!r}; a spec's "
                "rows is 'each', 'skips' (with decode_rows) or 'packs'"
            )
        if spec.rows == "skips" and not callable(getattr(spec, "decode_rows", None)):
            raise TypeError(
                f"decode['{column}'] ({type(spec).__name__}) skips rows but has no "
                "decode_rows(batch, column, epoch) -> (values, skipped rows)"
            )
    return dict(decode)


__all__ = ["DecodeSpec", "Image", "Spec", "Text", "Tokens", "check_specs"]
