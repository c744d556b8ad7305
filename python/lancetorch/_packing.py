"""The Loader's fixed-shape packing: ``Tokens(pack=True, blocks=B)`` batches of exactly
``(B, max_length)`` tokens, whatever the row batches hold.

The carry lives here, on the Python side of the Loader, and only here: the row batches read
but not yet wholly handed out (their Arrow columns, shared, not copied) and the tokens of the
first of them already handed out. Rust (``_native.pack_tokens``) copies each packed batch
straight from those Arrow buffers. The carry is never saved: a state names the row batch the
carry starts at and the tokens of it already handed out (``pack_skip``), and a resumed pass
reads from that row batch again, leaving those tokens out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .decode import Tokens


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


def _tokens(batch: pa.RecordBatch) -> int:
    """The tokens in a one-column batch of token lists (a null list holds none)."""
    column = batch.column(0)
    if isinstance(column, (pa.ListArray, pa.LargeListArray)) and column.null_count == 0:
        if not len(column):
            return 0
        offsets = column.offsets  # the rows' own, however the array is sliced
        return int(offsets[-1].as_py() - offsets[0].as_py())
    return int(pc.sum(pc.list_value_length(column)).as_py() or 0)


class Packer:
    """Packs one pass's row batches, fed in order, into batches of exactly
    ``spec.blocks * spec.max_length`` tokens, carrying what does not fit into the next.

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
        self.column, self.spec = column, spec
        self.cells = spec.blocks * spec.max_length
        self.pending: list[pa.RecordBatch] = []
        self.counts: list[int] = []  # the tokens of each pending batch
        self.skip = skip  # tokens of pending[0] handed out
        self.first = 0  # the pass's row batches before pending[0]
        self.document = 0  # the pass's rows before pending[0]

    def _available(self) -> int:
        return sum(self.counts) - self.skip

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
        self.pending.append(batch)
        self.counts.append(_tokens(batch))
        while self._available() >= self.cells:
            yield self._take()

    def finish(self) -> Iterator[dict[str, Any]]:
        """The pass is over: yield what is left, the last batch padded.

        Yields
        ------
        dict[str, torch.Tensor]
            Each of the spec's outputs.
        """
        while self._available() > 0:
            yield self._take()

    def _take(self) -> dict[str, Any]:
        values, used = self.spec._packed(
            self.pending,
            0,
            self.column,
            skip=self.skip,
            first_document=self.document,
            carry=True,
        )
        done = self.skip + used
        while self.pending and done >= self.counts[0]:
            done -= self.counts.pop(0)
            self.document += self.pending.pop(0).num_rows
            self.first += 1
        self.skip = done
        return values

    def state(self) -> tuple[int, int]:
        """``(row batches of the pass before the carry, tokens of the next already handed
        out)``: where a resumed pass starts."""
        return self.first, self.skip
