"""Connections: where tables live. ``memory://`` keeps them in this process; a directory
holds one Lance dataset per table, ``<uri>/<name>.lance``."""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

import pyarrow as pa

from ._arrow import as_table
from .table import Table

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_MODES = ("create", "overwrite")


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"invalid table name {name!r}: use letters, digits, '_', '-' and '.', not starting "
            "with '.' or '-' (no path separators)"
        )


class Connection:
    """A place that holds tables. Make one with :func:`lancetorch.connect`."""

    def __init__(self, uri: str, storage_options: dict[str, str] | None = None) -> None:
        self._uri = uri
        self._storage_options = dict(storage_options) if storage_options else None
        self._memory: dict[str, Table] | None = {} if uri == "memory://" else None

    @property
    def uri(self) -> str:
        return self._uri

    def __repr__(self) -> str:
        return f"Connection({self._uri!r})"

    def _path(self, name: str) -> str:
        return os.path.join(self._uri, f"{name}.lance")

    def table_names(self) -> list[str]:
        """Names of the tables here, sorted."""
        if self._memory is not None:
            return sorted(self._memory)
        if not os.path.isdir(self._uri):
            return []
        return sorted(
            entry.name[: -len(".lance")]
            for entry in os.scandir(self._uri)
            if entry.is_dir() and entry.name.endswith(".lance")
        )

    def __contains__(self, name: str) -> bool:
        return name in self.table_names()

    def _missing(self, name: str) -> FileNotFoundError:
        return FileNotFoundError(
            f"table '{name}' does not exist in {self._uri}; tables here: {self.table_names()}"
        )

    def create_table(
        self,
        name: str,
        data: Any = None,
        *,
        schema: pa.Schema | None = None,
        mode: str = "create",
        exist_ok: bool = False,
    ) -> Table:
        """Create table ``name`` from ``data`` (anything Arrow-like) or an empty one of ``schema``.

        ``mode="overwrite"`` replaces an existing table; with ``exist_ok=True`` an existing
        table is opened as it is. Otherwise an existing name raises ValueError.
        """
        _check_name(name)
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if mode == "create" and name in self.table_names():
            if exist_ok:
                return self.open_table(name)
            raise ValueError(
                f"table '{name}' already exists in {self._uri}; pass mode='overwrite' to replace "
                "it or exist_ok=True to open it"
            )
        if data is None:
            if schema is None:
                raise ValueError("create_table needs data or a schema")
            table = schema.empty_table()
        else:
            table = as_table(data, schema)
            if schema is not None:
                table = table.cast(schema)
        if self._memory is not None:
            created = Table._memory(name, table)
            self._memory[name] = created
            return created
        import lance

        os.makedirs(self._uri, exist_ok=True)
        exists = name in self.table_names()
        lance.write_dataset(
            table,
            self._path(name),
            mode="overwrite" if exists else "create",
            storage_options=self._storage_options,
        )
        return self.open_table(name)

    def open_table(
        self, name: str, *, cache: bool | str = "auto", cache_budget: int | None = None
    ) -> Table:
        """Open table ``name``. For tables on disk, ``cache`` says whether the columns a read
        needs are read once into memory and served from there: ``"auto"`` when they fit
        ``cache_budget`` bytes (default: half the available memory), ``True`` always,
        ``False`` never (every random read goes to Lance)."""
        _check_name(name)
        if self._memory is not None:
            if name not in self._memory:
                raise self._missing(name)
            return self._memory[name]
        if name not in self.table_names():
            raise self._missing(name)
        return Table._lance(name, self._path(name), self._storage_options, cache, cache_budget)

    def drop_table(self, name: str) -> None:
        _check_name(name)
        if self._memory is not None:
            if self._memory.pop(name, None) is None:
                raise self._missing(name)
            return
        if name not in self.table_names():
            raise self._missing(name)
        shutil.rmtree(self._path(name))


def connect(uri: str | os.PathLike, *, storage_options: dict[str, str] | None = None) -> Connection:
    """Connect to ``"memory://"`` or a local directory (created when the first table is).

    ``storage_options`` are passed to Lance for every dataset opened or written.
    """
    uri = os.fspath(uri)
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    if "://" in uri and uri != "memory://":
        raise ValueError(
            f"{uri!r}: only 'memory://' and local directories are supported in this release"
        )
    if uri != "memory://":
        uri = os.path.abspath(os.path.expanduser(uri))
    return Connection(uri, storage_options)
