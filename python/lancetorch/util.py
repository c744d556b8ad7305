"""Collate helpers: Arrow batches to torch tensors.

``tbl_to_tensor`` gives one ``(columns, rows)`` tensor built in Rust and handed to torch
through DLPack. Column types meet as ``torch.result_type`` would combine them: any float
column makes the result float (the widest float present), signed and unsigned integers meet
in a wider signed integer (uint8 with int8 gives int16), bool alone stays bool. ``dtype=``
forces a type instead. Batches from a lancetorch take whose columns share one type are
handed over without a copy; anything else costs exactly one copy.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from . import _checks, _native
from ._arrow import _is_table
from .decode import check_specs

if TYPE_CHECKING:  # torch is imported when a tensor is made, not with the package
    import torch


def _torch():
    try:
        import torch
    except ImportError as err:
        raise ImportError(
            "lancetorch.util needs PyTorch: pip install torch (or lancetorch[torch])"
        ) from err
    return torch


def _null(null_value: Any) -> float | None:
    """``null_value`` checked: a number or ``None`` (``True`` is not 1.0, ``"0"`` not 0)."""
    return None if null_value is None else _checks.number("null_value", null_value)


def _batches(data: Any) -> list[pa.RecordBatch]:
    if isinstance(data, pa.RecordBatch):
        return [data]
    if isinstance(data, (list, tuple)) and all(isinstance(b, pa.RecordBatch) for b in data):
        return list(data)
    if _is_table(data):
        data = data.to_arrow()
    if not isinstance(data, pa.Table):
        if hasattr(data, "__arrow_c_array__"):
            return [pa.record_batch(data)]
        if hasattr(data, "__arrow_c_stream__"):
            data = pa.table(data)
        else:
            raise TypeError(
                f"tbl_to_tensor takes Arrow data (a RecordBatch, a Table or a list of "
                f"RecordBatches), got {type(data).__name__}"
            )
    return data.to_batches() or [pa.RecordBatch.from_pylist([], schema=data.schema)]


def tbl_to_tensor(
    data: Any, *, dtype: torch.dtype | str | None = None, null_value: float | None = None
) -> torch.Tensor:
    """Numeric and bool columns of ``data`` as one ``torch.Tensor`` of shape ``(columns, rows)``.

    The first tensor made from a lancetorch take's memory shares it, as ``torch.from_numpy``
    does, however the batch was wrapped since (a rename, a table around it); a user's own Arrow
    data is copied.

    Parameters
    ----------
    data : pa.Table, pa.RecordBatch, list of pa.RecordBatch or Table
        A pyarrow Table (what a Table's ``__getitems__`` returns), a RecordBatch, a list of
        RecordBatches or a lancetorch Table (or an object with ``__arrow_c_array__`` or
        ``__arrow_c_stream__``).
    dtype : torch.dtype or str, optional
        The tensor's type (a torch dtype or its name, ``"float32"``) instead of the columns'
        common type.
    null_value : float, optional
        What a null becomes; without it a null raises ValueError.

    Returns
    -------
    torch.Tensor
        Shape ``(columns, rows)``.

    Raises
    ------
    TypeError
        For strings, lists and structs (naming the column), or ``data`` that is not Arrow data.
    ValueError
        For a null when ``null_value`` is not given.

    Examples
    --------
    >>> import pyarrow as pa
    >>> tbl_to_tensor(pa.record_batch({"a": [1, 2], "b": [0.5, 1.5]}))
    tensor([[1.0000, 2.0000],
            [0.5000, 1.5000]], dtype=torch.float64)
    """
    torch = _torch()
    name = _checks.dtype_name("dtype", dtype)
    null_value = _null(null_value)
    capsule = _native.taken_to_tensor(data, name, null_value)  # what a take just returned
    if capsule is None:
        capsule = _native.batches_to_tensor(_batches(data), name, null_value, capsule=True)
    return torch.from_dlpack(capsule)


def column_to_tensor(
    batch: pa.RecordBatch | pa.Table,
    column: str | int,
    *,
    dtype: torch.dtype | str | None = None,
    null_value: float | None = None,
) -> torch.Tensor:
    """One column of a batch as a tensor: ``(rows,)`` for a numeric or bool column, ``(rows,
    size)`` for a fixed-size list of numbers (an embedding). The first tensor made from a
    column whose memory a lancetorch take made shares it (an in-place change shows in the
    batch); any other data, or the same memory again, costs one copy.

    Parameters
    ----------
    batch : pa.RecordBatch or pa.Table
        The batch (a Table, what a Table's ``__getitems__`` returns, is combined into one).
    column : str or int
        The column's name, or its index (negative counts from the end, as in a list).
    dtype : torch.dtype or str, optional
        The tensor's type (a torch dtype or its name) instead of the column's own.
    null_value : float, optional
        What a null becomes; without it a null raises ValueError.

    Returns
    -------
    torch.Tensor
        ``(rows,)``, or ``(rows, size)`` for a fixed-size list.

    Raises
    ------
    TypeError
        For a ``batch`` that is not a RecordBatch or Table, or a ``column`` that is a bool.
    ValueError
        For a name not in the batch.
    IndexError
        For an index out of range.

    Examples
    --------
    >>> import pyarrow as pa
    >>> emb = pa.FixedSizeListArray.from_arrays(pa.array([1.0, 2.0, 3.0, 4.0], pa.float32()), 2)
    >>> column_to_tensor(pa.record_batch({"emb": emb}), "emb")
    tensor([[1., 2.],
            [3., 4.]])
    """
    torch = _torch()
    if isinstance(batch, pa.Table):  # what a Table's __getitems__ returns
        batch = _batches(batch.combine_chunks())[0]
    if not isinstance(batch, pa.RecordBatch):
        raise TypeError(
            f"column_to_tensor takes a pyarrow RecordBatch or Table, got {type(batch).__name__}"
        )
    names = batch.schema.names
    if isinstance(column, str):
        if column not in names:
            raise ValueError(f"column '{column}' is not in the batch; its columns are {names}")
        index = names.index(column)
    else:
        if isinstance(column, bool):
            raise TypeError(f"a column is a name or an integer index, got {column!r}")
        index = operator.index(column)
        if not -len(names) <= index < len(names):
            raise IndexError(
                f"column index {index} is out of range for a batch of {len(names)} columns"
            )
        index %= len(names)  # negative counts from the end, as in a list
    name = _checks.dtype_name("dtype", dtype)
    null_value = _null(null_value)
    return torch.from_dlpack(_native.batch_column_to_tensor(batch, index, name, null_value))


def _one_batch(data: Any) -> pa.RecordBatch:
    """Arrow data as one RecordBatch (a pyarrow Table of one chunk is read without a copy)."""
    if isinstance(data, pa.RecordBatch):
        return data
    batches = _batches(data)
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def _is_text(kind: pa.DataType) -> bool:
    return (
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    )


def _is_bytes(kind: pa.DataType) -> bool:
    return (
        pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind)
    )


def to_batch(
    data: Any,
    decode: dict[str, Any] | None = None,
    *,
    features: list[str] | None = None,
    target: str | None = None,
    dtype: Any = None,
    null_value: float | None = None,
    epoch: int = 0,
) -> Any:
    """A batch of Arrow data as training tensors, column by column.

    Returns ``{column: value}``: numbers and bools as ``(rows,)`` tensors of their own type,
    fixed-size lists (embeddings) as ``(rows, size)``, ``FixedShapeTensor`` columns as
    ``(rows, *shape)``, strings as ``list[str]``, binary as ``list[bytes]``, and each column
    named in ``decode`` as its spec gives it (:class:`lancetorch.decode.Tokens` adds
    ``<column>_length``). A column of lists without a spec raises TypeError naming the spec
    to use.

    With ``features=[...]`` (and ``target=``) the result is ``x``, a ``(rows, features)``
    tensor of those columns (their common type, or ``dtype``), or ``(x, y)`` with ``y`` the
    target column in its own type. As a DataLoader ``collate_fn``:
    ``functools.partial(to_batch, decode={...})`` (it pickles to spawned workers).

    Parameters
    ----------
    data : pa.RecordBatch, pa.Table or list of pa.RecordBatch
        The batch, as :func:`tbl_to_tensor` takes it.
    decode : dict[str, spec], optional
        ``{column: spec}`` with a :mod:`lancetorch.decode` spec (``Tokens``, ``Text``,
        ``Image``) for each column named; refused with ``features``.
    features : list of str, optional
        The columns of ``x`` (one name is a list of one); the result is then ``x`` or
        ``(x, y)`` instead of a dict.
    target : str, optional
        The column of ``y``; goes with ``features``.
    dtype : torch.dtype or str, optional
        The type the number columns are converted to (with ``features``, the type of ``x``).
    null_value : float, optional
        What a null in a number column becomes; without it a null raises ValueError.
    epoch : int, default 0
        Passed to the decode specs: it seeds random image crops.

    Returns
    -------
    dict[str, Any], torch.Tensor or tuple of torch.Tensor
        ``{column: value}``; with ``features``, ``x`` or ``(x, y)``.

    Raises
    ------
    ValueError
        For a column named in ``features``, ``target`` or ``decode`` that is not in the batch,
        ``target`` without ``features``, or ``decode`` with ``features``.
    TypeError
        For a column of lists without a spec, or a ``decode`` value that is not a spec.

    Examples
    --------
    >>> import pyarrow as pa
    >>> x, y = to_batch(pa.record_batch({"a": [1.0, 2.0], "b": [3.0, 4.0], "label": [0, 1]}),
    ...                 features=["a", "b"], target="label")
    >>> x, y
    (tensor([[1., 3.],
            [2., 4.]], dtype=torch.float64), tensor([0, 1]))
    """
    if features is None:
        if target is not None:
            raise ValueError("target= goes with features=: name the feature columns too")
        out, keep = decode_columns(data, decode, dtype=dtype, null_value=null_value, epoch=epoch)
        if keep is not None:  # rows a spec skipped (Image(on_error="skip")) leave every column
            out = {k: _keep_rows(v, keep) for k, v in out.items()}
        return out
    if decode:
        raise ValueError(
            "decode= does not go with features=: x is made of number columns; decode the "
            "other columns with to_batch(data, decode={...}) (no features=)"
        )
    batch = _one_batch(data)
    names = batch.schema.names
    if isinstance(features, str):
        features = [features]
    wanted = list(features) + ([] if target is None else [target])
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ValueError(f"column '{missing[0]}' is not in the batch; its columns are {names}")
    x = tbl_to_tensor(batch.select(list(features)), dtype=dtype, null_value=null_value)
    x = x.T.contiguous()
    if target is None:
        return x
    return x, _column_tensor(batch, names.index(target), None, null_value)


def _column_tensor(
    batch: pa.RecordBatch, index: int, convert: str | None, null_value: float | None
) -> Any:
    """Column ``index`` as a tensor, sharing a take's memory where it can."""
    torch = _torch()
    return torch.from_dlpack(_native.batch_column_to_tensor(batch, index, convert, null_value))


def decode_columns(
    data: Any,
    decode: dict[str, Any] | None = None,
    *,
    dtype: Any = None,
    null_value: float | None = None,
    epoch: int = 0,
) -> tuple[dict[str, Any], list[int] | None]:
    """``to_batch``'s values of every column, before rows a spec skipped are dropped, and the
    rows to keep when a spec skipped some (``None`` otherwise; the Loader drops the others
    from its own tensors too).

    Parameters
    ----------
    data : pa.RecordBatch, pa.Table or list of pa.RecordBatch
        The batch, as :func:`to_batch` takes it.
    decode : dict[str, spec], optional
        ``{column: spec}``, as for :func:`to_batch`.
    dtype : torch.dtype or str, optional
        The type the number columns are converted to.
    null_value : float, optional
        What a null in a number column becomes; without it a null raises ValueError.
    epoch : int, default 0
        Passed to the decode specs: it seeds random image crops.

    Returns
    -------
    tuple[dict[str, Any], list[int] | None]
        ``({column: value}, keep)``, ``keep`` the rows to keep or ``None``.

    Raises
    ------
    ValueError
        For a ``decode`` column not in the batch, or a spec that packs tokens beside one that
        skips rows (``on_error="skip"``).
    TypeError
        For a column of lists without a spec, or a ``decode`` value that is not a spec.
    """
    name = _checks.dtype_name("dtype", dtype)
    null_value = _null(null_value)
    epoch = _checks.integer("epoch", epoch)
    return _decode_checked(_one_batch(data), check_specs(decode), name, null_value, epoch)


def _decode_checked(
    batch: pa.RecordBatch,
    decode: dict[str, Any],
    name: str | None = None,
    null_value: float | None = None,
    epoch: int = 0,
) -> tuple[dict[str, Any], list[int] | None]:
    """:func:`decode_columns` of arguments already checked (the Loader checks its specs once,
    not every batch)."""
    torch = _torch()
    names = batch.schema.names
    unknown = sorted(set(decode) - set(names))
    if unknown:
        raise ValueError(f"decode names column '{unknown[0]}', which is not in the batch {names}")
    packed = [c for c, spec in decode.items() if spec.rows == "packs"]
    skipping = [c for c, spec in decode.items() if spec.rows == "skips"]
    if packed and skipping:
        raise ValueError(
            f"decode['{packed[0]}'] packs its values into blocks, which have no rows for "
            f"decode['{skipping[0]}'] to drop (with Image, use on_error='raise' there)"
        )
    out: dict[str, Any] = {}
    failed: set[int] = set()
    for index, (column, field) in enumerate(zip(names, batch.schema)):
        kind = field.type
        if column in decode:
            values, bad = _decoded(decode[column], batch, column, epoch)
            declared = decode[column].outputs(column)
            if list(values) != declared:
                raise RuntimeError(
                    f"decode['{column}'] ({type(decode[column]).__name__}) gave "
                    f"{list(values)}, but declares {declared}: a spec gives exactly its outputs"
                )
            out.update(values)
            failed.update(bad)
        elif isinstance(kind, pa.FixedShapeTensorType):
            storage = batch.column(index).storage
            flat = torch.from_dlpack(
                _native.batch_column_to_tensor(
                    pa.record_batch({column: storage}), 0, name, null_value
                )
            )
            out[column] = flat.reshape(batch.num_rows, *kind.shape)
        elif _is_text(kind) or _is_bytes(kind):
            out[column] = batch.column(index).to_pylist()
        elif (
            pa.types.is_list(kind)
            or pa.types.is_large_list(kind)
            or pa.types.is_list_view(kind)
            or pa.types.is_large_list_view(kind)
        ):
            raise TypeError(
                f"column '{column}' is {kind}, lists of varying length; name it in decode= "
                f"(decode={{'{column}': lancetorch.decode.Tokens(max_length=..., "
                "pad_value=...)} for token ids)"
            )
        else:
            out[column] = _column_tensor(batch, index, name, null_value)
    if not failed:
        return out, None
    return out, [i for i in range(batch.num_rows) if i not in failed]


def _decoded(spec: Any, batch: pa.RecordBatch, column: str, epoch: int) -> tuple[dict, list[int]]:
    """A spec's values for ``column`` and the rows it skipped."""
    if spec.rows == "skips":
        return spec.decode_rows(batch, column, epoch)
    return spec.decode(batch, column, epoch), []


def keep_rows(value: Any, keep: list[int]) -> Any:
    """``value`` (a tensor, a list, or a dict of them) with only the rows ``keep``.

    Parameters
    ----------
    value : torch.Tensor, list or dict
        The values, first dimension the rows; a dict's values are each cut the same way.
    keep : list of int
        The rows to keep, in the order given.

    Returns
    -------
    torch.Tensor, list or dict
        The same kind as ``value``.

    Raises
    ------
    TypeError
        For a value that is none of these.
    """
    if isinstance(keep, (str, bytes)) or not isinstance(keep, (list, tuple, range, np.ndarray)):
        raise TypeError(f"keep={keep!r} is {type(keep).__name__}; keep takes a list of rows")
    return _keep_rows(value, [_checks.integer("keep", k) for k in keep])


def _keep_rows(value: Any, keep: list[int]) -> Any:
    """:func:`keep_rows` of rows already checked (the Loader's and ``to_batch``'s own)."""
    if isinstance(value, dict):
        return {k: _keep_rows(v, keep) for k, v in value.items()}
    if isinstance(value, list):
        return [value[i] for i in keep]
    if hasattr(value, "index_select"):
        torch = _torch()
        return value.index_select(0, torch.tensor(keep, dtype=torch.int64))
    raise TypeError(
        f"rows were skipped but a value of type {type(value).__name__} cannot drop them; "
        "give the tokenizer's output as tensors, lists or a dict of them"
    )


def images_to_column(images: Any, *, format: str = "PNG", **save: Any) -> pa.Array:
    """A binary column (``Image`` decodes it) from encoded images (``bytes``), PIL images or
    ``(height, width[, channels])`` uint8 numpy arrays; the last two are encoded with PIL as
    ``format``. ``None`` stays a null. Over 2 GiB of bytes gives a ``large_binary`` column.

    Parameters
    ----------
    images : iterable
        Each an encoded image (``bytes``, ``bytearray``, ``memoryview``), a PIL image, a
        uint8 array or ``None``.
    format : str, default "PNG"
        PIL's format for the images it encodes: ``"PNG"`` (lossless), ``"JPEG"`` or ``"WEBP"``.
    **save : Any
        PIL's other ``save`` arguments, such as ``quality=``.

    Returns
    -------
    pa.Array
        ``binary``, or ``large_binary`` past 2 GiB.

    Raises
    ------
    TypeError
        For an array that is not uint8 with 2 or 3 dimensions.

    Examples
    --------
    >>> import numpy as np
    >>> images_to_column([np.zeros((4, 4, 3), np.uint8), None]).null_count
    1
    """
    _checks.text("format", format)
    out: list[bytes | None] = []
    for i, image in enumerate(images):
        if image is None or isinstance(image, bytes):
            out.append(image)
        elif isinstance(image, (bytearray, memoryview)):
            out.append(bytes(image))
        else:
            out.append(_encode_image(image, i, format, save))
    kind = pa.large_binary() if sum(len(b or b"") for b in out) >= 2**31 else pa.binary()
    return pa.array(out, kind)


def _encode_image(image: Any, index: int, format: str, save: dict[str, Any]) -> bytes:
    import io

    from PIL import Image as PILImage

    if not isinstance(image, PILImage.Image):
        array = np.asarray(image)
        if array.dtype != np.uint8 or array.ndim not in (2, 3):
            raise TypeError(
                f"image {index} is {type(image).__name__} of {array.dtype} with shape "
                f"{array.shape}; give bytes, a PIL image or a (height, width[, channels]) "
                "uint8 array"
            )
        image = PILImage.fromarray(array)
    buffer = io.BytesIO()
    image.save(buffer, format=format, **save)
    return buffer.getvalue()


def batch_to_tensor(
    batch: Any, *, dtype: torch.dtype | str | None = None, null_value: float | None = None
) -> torch.Tensor:
    """The same as :func:`tbl_to_tensor`, for one batch.

    Parameters
    ----------
    batch : pa.RecordBatch or pa.Table
        The batch (anything :func:`tbl_to_tensor` takes).
    dtype : torch.dtype or str, optional
        The tensor's type instead of the columns' common type.
    null_value : float, optional
        What a null becomes; without it a null raises ValueError.

    Returns
    -------
    torch.Tensor
        Shape ``(columns, rows)``.
    """
    return tbl_to_tensor(batch, dtype=dtype, null_value=null_value)


def passthrough(batch: Any) -> Any:
    """A collate function that returns the batch as it is; unlike ``lambda x: x`` it can be
    pickled to spawned DataLoader workers.

    Parameters
    ----------
    batch : Any
        Returned as it is.
    """
    return batch
