"""The output formats of a Permutation: each a function of the Arrow batch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from .._torch_rows import TorchRow, rows_of
from ..decode import check_specs
from ..util import tbl_to_tensor, to_batch


def _arrow_batch(batch: Any) -> None:
    """Refuse what is not the Arrow batch a Permutation hands its format."""
    if not isinstance(batch, (pa.RecordBatch, pa.Table)):
        raise TypeError(
            f"batch is {type(batch).__name__}; a format function takes a pyarrow RecordBatch"
        )


class Transforms:
    """The built-in output formats, as functions from a ``pyarrow.RecordBatch``."""

    @staticmethod
    def arrow2arrow(batch: pa.RecordBatch) -> pa.RecordBatch:
        """The ``arrow`` format: the batch as it is.

        Parameters
        ----------
        batch : pa.RecordBatch
            The rows read.

        Returns
        -------
        pa.RecordBatch
        """
        return batch

    @staticmethod
    def arrow2python(batch: pa.RecordBatch) -> list[dict[str, Any]]:
        """The ``python`` format: one dict per row.

        Parameters
        ----------
        batch : pa.RecordBatch
            The rows read.

        Returns
        -------
        list of dict
        """
        _arrow_batch(batch)
        return batch.to_pylist()

    @staticmethod
    def arrow2python_col(batch: pa.RecordBatch) -> dict[str, list[Any]]:
        """The ``python_col`` format: one list per column.

        Parameters
        ----------
        batch : pa.RecordBatch
            The rows read.

        Returns
        -------
        dict[str, list]
        """
        _arrow_batch(batch)
        return batch.to_pydict()

    @staticmethod
    def arrow2polars(batch: pa.RecordBatch) -> Any:
        """The ``polars`` format: a polars DataFrame.

        Parameters
        ----------
        batch : pa.RecordBatch
            The rows read.

        Returns
        -------
        polars.DataFrame
        """
        import polars as pl

        _arrow_batch(batch)
        return pl.from_arrow(batch)

    @staticmethod
    def arrow2pandas(batch: pa.RecordBatch) -> Any:
        """The ``pandas`` format: a pandas DataFrame.

        Parameters
        ----------
        batch : pa.RecordBatch
            The rows read.

        Returns
        -------
        pandas.DataFrame
        """
        _arrow_batch(batch)
        return batch.to_pandas()

    @staticmethod
    def arrow2numpy(batch: pa.RecordBatch) -> dict[str, np.ndarray]:
        """The ``numpy`` format: one array per column; fixed-width columns without nulls are not
        copied, fixed-size lists become 2-D ``(rows, size)`` arrays.

        Parameters
        ----------
        batch : pa.RecordBatch
            The rows read.

        Returns
        -------
        dict[str, np.ndarray]
        """
        _arrow_batch(batch)
        out = {}
        for name, column in zip(batch.schema.names, batch.columns):
            if pa.types.is_fixed_size_list(column.type) and column.null_count == 0:
                size = column.type.list_size
                values = column.flatten().to_numpy(zero_copy_only=False)
                out[name] = values.reshape(len(column), size)
            else:
                out[name] = column.to_numpy(zero_copy_only=False)
        return out

    @staticmethod
    def arrow2torch_col(batch: pa.RecordBatch) -> Any:
        """The ``torch_col`` format: one ``(columns, rows)`` tensor, as :func:`tbl_to_tensor`
        makes it.

        Parameters
        ----------
        batch : pa.RecordBatch
            The rows read (numbers and bools).

        Returns
        -------
        torch.Tensor
        """
        return tbl_to_tensor(batch)

    @staticmethod
    def arrow2torch(batch: pa.RecordBatch) -> list[Any]:
        """The ``torch`` and ``torch_row`` formats: per-row tensors, views into one
        ``(columns, rows)`` tensor from the Rust take.

        Parameters
        ----------
        batch : pa.RecordBatch
            The rows read (numbers and bools).

        Returns
        -------
        list of torch.Tensor
        """
        return list(tbl_to_tensor(batch).T.unbind(0))

    @staticmethod
    def arrow2torch_dict(batch: pa.RecordBatch) -> list[TorchRow]:
        """The ``torch_dict`` format: per-row mappings, numbers as 0-d tensors and fixed-size lists
        as ``(size,)`` tensors, views into one batched tensor per column made when read (the
        default collate gives the batched tensors back as they are), strings and bytes as they
        are. Columns that need a spec (token lists) go through
        ``with_format("torch_dict", decode=...)``.

        Parameters
        ----------
        batch : pa.RecordBatch
            The rows read.

        Returns
        -------
        list of TorchRow
        """
        _arrow_batch(batch)
        return _TorchDict()(batch)


class _TorchDict:
    """The torch_dict format with decode specs: ``to_batch`` of the batch, cut into rows."""

    def __init__(self, decode: dict[str, Any] | None = None) -> None:
        decode = check_specs(decode)
        packed = [c for c, spec in (decode or {}).items() if spec.rows == "packs"]
        if packed:
            raise ValueError(
                f"decode['{packed[0]}'] packs its values into blocks, and torch_dict gives rows; "
                "pack in a collate_fn (functools.partial(lancetorch.util.to_batch, decode=...)) "
                "or in the Loader"
            )
        self.decode = decode

    def __call__(self, batch: pa.RecordBatch) -> list[TorchRow]:
        columns = to_batch(batch, self.decode)
        sized = [v for v in columns.values() if not isinstance(v, dict)]
        return rows_of(columns, len(sized[0]) if sized else batch.num_rows)


_ROW_FORMATS = ("python", "torch", "torch_row", "torch_dict")


_FORMATS: dict[str, Callable[[pa.RecordBatch], Any]] = {
    "arrow": Transforms.arrow2arrow,
    "python": Transforms.arrow2python,
    "python_col": Transforms.arrow2python_col,
    "polars": Transforms.arrow2polars,
    "pandas": Transforms.arrow2pandas,
    "numpy": Transforms.arrow2numpy,
    "torch_col": Transforms.arrow2torch_col,
    "torch": Transforms.arrow2torch,
    "torch_row": Transforms.arrow2torch,
    "torch_dict": Transforms.arrow2torch_dict,
}
