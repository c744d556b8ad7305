"""The Loader's fixed-shape packing: ``Tokens(pack=True, blocks=B)`` batches of exactly
``(B, max_length)`` tokens, whatever the row batches hold.

The carry lives here, in the Loader's pass, and only here: the row batches read but not yet
wholly handed out (their Arrow columns, shared, not copied) and the tokens of the first of
them already handed out, both held in Rust (``_native.TokenPacker``), which copies each
packed batch straight from those Arrow buffers. The carry is never saved: a state names the
row batch the carry starts at and the tokens of it already handed out (``pack_skip``), and a
resumed pass reads from that row batch again, leaving those tokens out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from . import _native
from .decode import Tokens, _torch


class ArrowColumn:
    """A spec that hands a column on as a one-column Arrow batch (the side threads' part of
    fixed-shape packing: the take; the packing itself runs in order, as batches are handed
    out, since each starts where the one before stopped)."""

    rows = "each"

    def outputs(self, column: str) -> list[str]:
        """``[column]``.

        Parameters
        ----------
        column : str
            The column.

        Returns
        -------
        list[str]
        """
        return [column]

    def decode(self, batch: pa.RecordBatch, column: str, epoch: int = 0) -> dict[str, Any]:
        """``{column: the column as a one-column batch}``.

        Parameters
        ----------
        batch : pa.RecordBatch
            The batch.
        column : str
            The column.
        epoch : int, default 0
            Not used.

        Returns
        -------
        dict[str, pa.RecordBatch]
        """
        return {column: batch.select([column])}


class Packer:
    """Packs one pass's row batches, fed in order, into batches of exactly
    ``spec.blocks * spec.max_length`` tokens, carrying what does not fit into the next.

    The carry is Rust's (``_native.TokenPacker``): it holds the pending row batches' Arrow
    columns, each imported and its rows found once, and copies each packed batch from them.

    Parameters
    ----------
    column : str
        The token column.
    spec : Tokens
        A ``Tokens(pack=True, blocks=B)`` spec.
    skip : int, default 0
        Tokens of the first row batch fed already handed out (a resumed pass).
    """

    def __init__(self, column: str, spec: Tokens, skip: int = 0) -> None:
        assert spec.blocks is not None and spec.max_length is not None
        self.column, self.names = column, spec.outputs(column)
        self._carry = _native.TokenPacker(column, spec, skip)
        self._from_dlpack = _torch().from_dlpack

    def _batch(self, capsules: tuple[object, ...]) -> dict[str, Any]:
        return dict(zip(self.names, map(self._from_dlpack, capsules)))

    def feed(self, batch: pa.RecordBatch) -> Iterator[dict[str, Any]]:
        """Take the next row batch; yield the packed batches that are now full.

        Parameters
        ----------
        batch : pa.RecordBatch
            The token column of the next row batch, as a one-column batch.

        Yields
        ------
        dict[str, torch.Tensor]
            Each of the spec's outputs.
        """
        carry = self._carry
        carry.push(batch, 0)
        while carry.full():  # one at a time: the state follows each batch handed out
            yield self._batch(carry.take())

    def finish(self) -> Iterator[dict[str, Any]]:
        """The pass is over: yield what is left, the last batch padded.

        Yields
        ------
        dict[str, torch.Tensor]
            Each of the spec's outputs.
        """
        carry = self._carry
        while carry.available() > 0:
            yield self._batch(carry.take())

    def state(self) -> tuple[int, int]:
        """``(row batches of the pass before the carry, tokens of the next already handed
        out)``: where a resumed pass starts."""
        first, skip = self._carry.state()
        return first, skip
