"""lancetorch: train PyTorch straight from Lance datasets and Arrow tables.

>>> import lancetorch, pyarrow as pa
>>> db = lancetorch.connect("memory://")
>>> table = db.create_table("t", pa.table({"a": range(4)}))
>>> len(table)
4
"""

import os as _os
import warnings as _warnings
from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from . import _native
from ._objectstore import StorageReadError
from .db import AsyncConnection, Connection, DBConnection, connect, connect_async
from .table import Table

try:
    __version__ = _version("lancetorch")
except _PackageNotFoundError:  # running from a source tree without metadata
    __version__ = "0+unknown"

if _native.DEBUG_BUILD:
    _warnings.warn(
        "lancetorch's native extension was built in debug mode and is many times slower; "
        "reinstall with `make install` or `pip install .` for a release build",
        RuntimeWarning,
        stacklevel=2,
    )

# A forked child has no thread-pool threads: keep the core on the calling thread there.
_os.register_at_fork(after_in_child=_native.mark_forked)

__all__ = [
    "AsyncConnection",
    "Connection",
    "DBConnection",
    "StorageReadError",
    "Table",
    "connect",
    "connect_async",
    "__version__",
]

# The modules users import from (``lancetorch.loader``, ``lancetorch.permutation``...).
_PUBLIC_MODULES = [
    "db",
    "decode",
    "loader",
    "permutation",
    "query",
    "sampler",
    "streaming",
    "table",
    "util",
]


def __dir__() -> list[str]:
    """The API: what ``__all__`` names and the public modules, not the imports made here."""
    return sorted(__all__ + _PUBLIC_MODULES)


def __getattr__(name: str) -> object:
    """A public module not imported yet (``lancetorch.loader``), imported when first named."""
    if name in _PUBLIC_MODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'lancetorch' has no attribute {name!r}")
