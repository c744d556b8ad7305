"""lancetorch: train PyTorch straight from Lance datasets and Arrow tables.

>>> import lancetorch, pyarrow as pa
>>> db = lancetorch.connect("memory://")
>>> table = db.create_table("t", pa.table({"a": range(4)}))
>>> len(table)
4
"""

from __future__ import annotations

import os
import warnings
from importlib.metadata import PackageNotFoundError, version

from . import _native
from ._objectstore import StorageReadError
from .db import AsyncConnection, Connection, DBConnection, connect, connect_async
from .table import Table

try:
    __version__ = version("lancetorch")
except PackageNotFoundError:  # running from a source tree without metadata
    __version__ = "0+unknown"

if _native.DEBUG_BUILD:
    warnings.warn(
        "lancetorch's native extension was built in debug mode and is many times slower; "
        "reinstall with `make install` or `pip install .` for a release build",
        RuntimeWarning,
        stacklevel=2,
    )

# A forked child has no thread-pool threads: keep the core on the calling thread there.
os.register_at_fork(after_in_child=_native.mark_forked)

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
