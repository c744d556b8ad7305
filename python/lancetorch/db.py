"""Connections: where tables live. ``memory://`` keeps them in this process; a directory, or
a prefix on S3-compatible object storage (``s3://bucket/prefix``), holds one Lance dataset per
table, ``<uri>/<name>.lance``."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import re
import shutil
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from . import _checks, _objectstore
from ._arrow import as_table, conform
from ._lancedb import no_namespace, remote_options
from ._vectors import check_policy, infer_vectors, mend_vectors
from .table import Table

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_MODES = ("create", "overwrite")


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"invalid table name {name!r}: use letters, digits, '_', '-' and '.', not starting "
            "with '.' or '-' (no path separators)"
        )


@dataclasses.dataclass
class ListTablesResponse:
    """One page of :meth:`Connection.list_tables`: the names, and the token of the next page."""

    tables: list[str]
    page_token: str | None = None


class Connection:
    """A place that holds tables. Make one with :func:`lancetorch.connect`. (LanceDB's name
    for it, ``DBConnection``, is the same class.)

    Parameters
    ----------
    uri : str
        ``"memory://"``, a local directory or an object-storage prefix
        (``"s3://bucket/prefix"``), as :func:`lancetorch.connect` resolved it.
    storage_options : dict[str, str], optional
        Passed to Lance for every dataset opened or written; on object storage also the
        endpoint, region and keys of the store (see :func:`lancetorch.connect`).
    read_timeout : float, optional
        Seconds any one read of an object-store table may wait for an answer; ``None``: no
        limit.
    read_consistency_interval : datetime.timedelta, optional
        How long after a look for a newer version a read of a disk or object-store table
        opened here looks again (``timedelta(0)``: every read looks); ``None``: never, until
        the table's ``checkout_latest()`` (see :func:`lancetorch.connect`).

    Raises
    ------
    TypeError
        For a ``read_consistency_interval`` that is not a ``timedelta`` (or ``None``).
    ValueError
        For a negative ``read_consistency_interval``.
    """

    def __init__(
        self,
        uri: str,
        storage_options: dict[str, str] | None = None,
        read_timeout: float | None = None,
        read_consistency_interval: datetime.timedelta | None = None,
    ) -> None:
        _checks.text("uri", uri)
        interval = _checks.interval(read_consistency_interval)
        if storage_options is not None and not isinstance(storage_options, dict):
            raise TypeError(
                f"storage_options={storage_options!r} is {type(storage_options).__name__}; "
                "give a dict of option name to value, such as {'aws_region': 'us-east-1'}"
            )
        if read_timeout is not None:
            _checks.number("read_timeout", read_timeout)
        self._uri = uri
        self._read_timeout = read_timeout
        self._interval = interval  # seconds
        self._storage_options = dict(storage_options) if storage_options else None
        self._memory: dict[str, Table] | None = {} if uri == "memory://" else None
        self._store: _objectstore.ObjectStore | None = None
        if _objectstore.is_object_store(uri):
            self._store = _objectstore.ObjectStore(uri, self._storage_options)
            self._storage_options = _objectstore.lance_options(self._storage_options)

    @property
    def uri(self) -> str:
        return self._uri

    def __repr__(self) -> str:
        return f"Connection({self._uri!r})"

    def _path(self, name: str) -> str:
        if self._store is not None:
            return f"{self._store.uri}/{name}.lance"
        return os.path.join(self._uri, f"{name}.lance")

    def table_names(
        self,
        page_token: str | None = None,
        limit: int | None = None,
        *,
        namespace_path: list[str] | None = None,
    ) -> list[str]:
        """Names of the tables here, sorted (LanceDB's call, whose ``limit`` defaults to 10:
        here every name unless a limit is given).

        Parameters
        ----------
        page_token : str, optional
            The last name of the page before: the names start after it.
        limit : int, optional
            The most names (1 or more); ``None``: every name.
        namespace_path : list of str, optional
            LanceDB's namespace; only ``None`` or an empty list is accepted.

        Returns
        -------
        list of str

        Raises
        ------
        ValueError
            For a namespace, or a ``limit`` under 1.
        """
        if page_token is None and limit is None and not namespace_path:
            return self._names()
        return self.list_tables(namespace_path, page_token, limit).tables

    def _names(self) -> list[str]:
        if self._memory is not None:
            return sorted(self._memory)
        if self._store is not None:
            found = [d[: -len(".lance")] for d in self._store.datasets() if d.endswith(".lance")]
        elif not os.path.isdir(self._uri):
            return []
        else:
            found = [
                entry.name[: -len(".lance")]
                for entry in os.scandir(self._uri)
                if entry.name.endswith(".lance") and self._exists(entry.name[: -len(".lance")])
            ]
        # Only names a table can have (a dataset written as 'my table.lance' by other means
        # is not one of this connection's tables).
        return sorted(n for n in found if _NAME.fullmatch(n))

    def list_tables(
        self,
        namespace_path: list[str] | None = None,
        page_token: str | None = None,
        limit: int | None = None,
    ) -> ListTablesResponse:
        """Names of the tables here, sorted, a page at a time (LanceDB's call). lancetorch has no
        namespaces.

        Parameters
        ----------
        namespace_path : list of str, optional
            LanceDB's namespace; only ``None`` or an empty list is accepted.
        page_token : str, optional
            The last name of the page before: the page starts after it.
        limit : int, optional
            The most names in the page (1 or more); ``None``: every name.

        Returns
        -------
        ListTablesResponse
            ``tables``, the names, and ``page_token``, the token of the next page, ``None`` after
            the last.

        Raises
        ------
        ValueError
            For a namespace, or a ``limit`` under 1.
        """
        no_namespace(namespace_path)
        limit = _checks.optional_integer("limit", limit, low=1)
        if page_token is not None:
            _checks.text("page_token", page_token)
        names = [n for n in self._names() if page_token is None or n > page_token]
        page = names if limit is None else names[:limit]
        more = len(page) < len(names)
        return ListTablesResponse(tables=page, page_token=page[-1] if more else None)

    def __contains__(self, name: str) -> bool:
        return self._exists(name)

    def _exists(self, name: str) -> bool:
        """Whether table ``name`` is here (one request on object storage, not a listing)."""
        if self._memory is not None:
            return name in self._memory
        if self._store is not None:
            return self._store.has_dataset(f"{name}.lance")
        # A dataset has its versions; a directory a write left without them (killed before
        # its first commit) is not a table.
        return os.path.isdir(os.path.join(self._path(name), "_versions"))

    def _missing(self, name: str) -> FileNotFoundError:
        return FileNotFoundError(
            f"table '{name}' does not exist in {self._uri}; tables here: {self._names()}"
        )

    def create_table(
        self,
        name: str,
        data: Any = None,
        *,
        schema: pa.Schema | None = None,
        mode: str = "create",
        exist_ok: bool = False,
        on_bad_vectors: str = "error",
        fill_value: float = 0.0,
        embedding_functions: Any = None,
        namespace_path: list[str] | None = None,
    ) -> Table:
        """Create table ``name`` from ``data`` (anything Arrow-like) or an empty one of ``schema``.

        Parameters
        ----------
        name : str
            Letters, digits, ``_``, ``-`` and ``.``, not starting with ``.`` or ``-``.
        data : Any, optional
            The rows: a pyarrow Table or RecordBatch, a RecordBatchReader, a pandas or polars
            frame, a dict of columns, a list of row dicts, a LanceDB or Lance table, or anything
            with the Arrow C interfaces. A column named ``vector`` of number lists of one length
            becomes an embedding (float32), as LanceDB infers.
        schema : pa.Schema, optional
            The table's schema: ``data`` is cast to it (safe casts only), or without ``data`` the
            table is empty.
        mode : {"create", "overwrite"}, default "create"
            ``"overwrite"`` replaces an existing table.
        exist_ok : bool, default False
            With ``mode="create"``, open an existing table as it is instead of raising.
        on_bad_vectors : {"error", "drop", "fill", "null"}, default "error"
            What to do with a row whose vector (a ``vector`` column of number lists, or a
            fixed-size list of at least ten floats) is null, holds a NaN or has another
            length than the column's: refuse the data naming the row, leave the row out,
            mend the vector (NaN and missing values become ``fill_value``, values past the
            length are cut), or store it as null. As LanceDB.
        fill_value : float, default 0.0
            The value ``on_bad_vectors="fill"`` writes.
        embedding_functions : None
            LanceDB's embedding functions; lancetorch has none, only ``None`` is accepted.
        namespace_path : list of str, optional
            LanceDB's namespace; only ``None`` or an empty list is accepted.

        Returns
        -------
        Table
            The new table (or the existing one, with ``exist_ok``).

        Raises
        ------
        ValueError
            For an invalid name or mode, an existing name (without ``mode="overwrite"`` or
            ``exist_ok=True``), neither data nor schema, data that does not fit ``schema``, or
            two columns of one name.
        TypeError
            For ``data`` of a type a table cannot be made from.
        """
        _check_name(name)
        _checks.choice("mode", mode, _MODES)
        _checks.flag("exist_ok", exist_ok)
        check_policy(on_bad_vectors, fill_value)
        if embedding_functions is not None:
            raise ValueError(
                "lancetorch has no embedding functions: compute the embeddings first and give "
                "them as a column (a fixed-size list of floats)"
            )
        no_namespace(namespace_path)
        if schema is not None and not isinstance(schema, pa.Schema):
            raise TypeError(
                f"schema={schema!r} is {type(schema).__name__}; give a pyarrow Schema, such as "
                "pa.schema([('x', pa.float32())])"
            )
        if mode == "create" and self._exists(name):
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
            table = mend_vectors(as_table(data, schema), schema, name, on_bad_vectors, fill_value)
            if schema is not None:
                table = conform(table, schema, name)
            else:
                table = infer_vectors(table)
        if self._memory is not None:
            created = Table._memory(name, table)
            self._memory[name] = created
            return created
        import lance

        if self._store is None:
            os.makedirs(self._uri, exist_ok=True)
        exists = self._exists(name)
        with self._explained(f"write table '{name}'"):
            lance.write_dataset(
                table,
                self._path(name),
                mode="overwrite" if exists else "create",
                storage_options=self._storage_options,
            )
        return self.open_table(name)

    @contextlib.contextmanager
    def _explained(self, doing: str) -> Iterator[None]:
        """Storage errors of an object store said plainly (bucket, credentials, no answer)."""
        try:
            yield
        except Exception as e:
            if self._store is None or isinstance(e, _objectstore.StorageReadError):
                raise
            if not _objectstore.is_io_error(e):
                raise
            raise self._store.explain(e, doing) from e

    def open_table(
        self,
        name: str,
        *,
        cache: bool | str = "auto",
        cache_budget: int | None = None,
        cache_dir: str | os.PathLike[str] | bool | None = None,
        cache_dir_budget: int | None = None,
        version: int | str | None = None,
        storage_options: dict[str, str] | None = None,
        index_cache_size: int | None = None,
        branch: str | None = None,
        namespace_path: list[str] | None = None,
    ) -> Table:
        """Open table ``name``.

        Parameters
        ----------
        name : str
            The table's name.
        cache : bool or "auto", default "auto"
            For tables on disk, whether the columns a read needs are read once into memory and
            served from there: ``"auto"`` when they fit ``cache_budget``, ``True`` always,
            ``False`` never (every random read goes to Lance). Not used for memory tables.
        cache_budget : int, optional
            Bytes the cache may take with ``cache="auto"``; by default half the available memory.
        cache_dir : str or os.PathLike or False, optional
            For tables on disk or object storage, the node tier's folder: the cache is filled
            through it, in pieces kept there as files that every process of the machine maps
            (one copy in the page cache for all of them; read from the table's store once per
            machine). Default: ``$LANCETORCH_CACHE_DIR``, else ``lancetorch/tier`` in the
            user's cache folder. ``False``: no node tier (each process reads its own copy).
        cache_dir_budget : int, optional
            Bytes of pieces the node tier keeps in ``cache_dir`` (0 or more); past it the least
            recently used pieces are removed when this table writes one. By default half the
            space free on that file system when the tier is first used, plus what it holds.
        version : int or str, optional
            Open the table checked out at this version number or tag, as
            :meth:`Table.checkout` does (``add`` refused until ``checkout_latest()``). A
            memory table has only its latest version: naming it opens the table as it is.
        storage_options : dict[str, str], optional
            Options for this table's Lance dataset, over the connection's (LanceDB's).
        index_cache_size : int, optional
            LanceDB's cache of vector and scalar indexes. lancetorch reads no index, so it
            changes nothing here; it is checked and accepted so that LanceDB code runs.
        branch : str, optional
            LanceDB's branches; lancetorch reads the main branch only: only ``None``.
        namespace_path : list of str, optional
            LanceDB's namespace; only ``None`` or an empty list is accepted.

        Returns
        -------
        Table

        Raises
        ------
        FileNotFoundError
            For a table that does not exist here (the message lists those that do).
        ValueError
            For an invalid name, a ``cache_dir_budget`` with ``cache_dir=False``, a version
            the table does not have, a branch or a namespace.
        """
        _check_name(name)
        if isinstance(cache, str) and cache != "auto":
            raise ValueError(f"cache must be True, False or 'auto', got {cache!r}")
        if not isinstance(cache, (bool, str)):
            raise TypeError(
                f"cache={cache!r} is {type(cache).__name__}; cache takes True, False or 'auto'"
            )
        _checks.optional_integer("cache_budget", cache_budget, low=0)
        cache_dir_budget = _checks.optional_integer("cache_dir_budget", cache_dir_budget, low=0)
        if cache_dir is False and cache_dir_budget is not None:
            raise ValueError(
                f"cache_dir_budget={cache_dir_budget} with cache_dir=False: there is no node "
                "tier to budget. Drop cache_dir_budget, or give cache_dir a folder (or None)"
            )
        _checks.optional_integer("index_cache_size", index_cache_size, low=0)
        if storage_options is not None and not isinstance(storage_options, dict):
            raise TypeError(
                f"storage_options={storage_options!r} is {type(storage_options).__name__}; "
                "give a dict of option name to value"
            )
        if branch is not None:
            raise ValueError(f"lancetorch reads a table's main branch only; got branch={branch!r}")
        no_namespace(namespace_path)
        if self._memory is not None:
            if name not in self._memory:
                raise self._missing(name)
            table = self._memory[name]
            if version is not None:  # its only version, or the error saying so
                if not isinstance(version, str):
                    _checks.integer("version", version, low=1)
                table._current().at_version(version)
            return table
        if not self._exists(name):
            raise self._missing(name)
        options = {**(self._storage_options or {}), **(storage_options or {})} or None
        with self._explained(f"open table '{name}'"):
            opened = Table._lance(
                name,
                self._path(name),
                options,
                cache,
                cache_budget,
                read_timeout=self._read_timeout,
                read_consistency_interval=self._interval,
                cache_dir=cache_dir,
                cache_dir_budget=cache_dir_budget,
            )
        if version is not None:
            opened.checkout(version)
        return opened

    def drop_table(
        self, name: str, namespace_path: list[str] | None = None, ignore_missing: bool = False
    ) -> None:
        """Remove table ``name``: from memory, or its dataset from disk or the object store.

        Parameters
        ----------
        name : str
            The table's name.
        namespace_path : list of str, optional
            LanceDB's namespace; only ``None`` or an empty list is accepted.
        ignore_missing : bool, default False
            Whether a table that does not exist is no error (nothing is removed).

        Raises
        ------
        FileNotFoundError
            For a table that does not exist here, unless ``ignore_missing``.
        ValueError
            For an invalid name, or a namespace.
        """
        _check_name(name)
        _checks.flag("ignore_missing", ignore_missing)
        no_namespace(namespace_path)
        if self._memory is not None:
            if self._memory.pop(name, None) is None and not ignore_missing:
                raise self._missing(name)
            return
        if not self._exists(name):
            if ignore_missing:
                return
            raise self._missing(name)
        if self._store is not None:
            self._store.remove(f"{name}.lance")
        else:
            shutil.rmtree(self._path(name))


def connect(
    uri: str | os.PathLike,
    *,
    storage_options: dict[str, str] | None = None,
    read_timeout: float | None = 60.0,
    read_consistency_interval: datetime.timedelta | None = None,
    **enterprise: Any,
) -> Connection:
    """Connect to ``"memory://"``, a local directory (created when the first table is), or a
    prefix on S3-compatible object storage, ``"s3://bucket/prefix"``.

    Remote ``db://`` databases, and their ``api_key``, ``region`` and other options, are
    LanceDB Enterprise features: they raise an error saying what lancetorch connects to.

    Parameters
    ----------
    uri : str or os.PathLike
        ``"memory://"`` (or LanceDB's other spellings of it), a directory (``~`` expanded, a
        ``file://`` prefix dropped) or ``"s3://bucket/prefix"``.
    storage_options : dict[str, str], optional
        Passed to Lance for every dataset opened or written. For object storage they hold the
        endpoint, region, keys and ``allow_http`` (``aws_endpoint``, ``aws_region``,
        ``aws_access_key_id``, ``aws_secret_access_key``, ``allow_http``); whatever is absent
        comes from the ``AWS_*`` environment variables. Reads retry a bounded number of times
        (``client_max_retries``, default 3, within ``client_retry_timeout`` seconds, default
        20).
    read_timeout : float, default 60.0
        Seconds after which any one read of an object-store table that has no answer fails,
        naming the table and what was being read, rather than wait on a store that accepts
        connections and never answers; ``None``: no limit.
    read_consistency_interval : datetime.timedelta, optional
        How often a table on disk or object storage opened here looks for versions other
        processes wrote, as in LanceDB: ``None`` (the default) never, until its
        ``checkout_latest()``; ``timedelta(0)`` on every read; ``timedelta(seconds=s)`` on
        the first read ``s`` seconds or more after the last look. The reads that look are
        those of the table's own API (``count_rows``, ``schema``, ``version``,
        ``to_arrow``, ``search``, ``take_offsets``, ``head`` ...) and the making of a
        Permutation, Loader or StreamingDataset, each of which then reads that version to
        its end. The Dataset protocol (``len(t)``, ``t[i]``, ``__getitems__``) and pickling
        never look, and a read that looks does not move them: they read the version the
        handle holds for them, which only ``checkout``, ``checkout_latest`` and ``add``
        move, so a DataLoader epoch reads one version (call ``checkout_latest()`` between
        epochs to move it on). Memory tables are always at their latest version.
    **enterprise : Any
        LanceDB's options. Those for local databases that change nothing here
        (``session``, ``manifest_enabled``, ``region`` at its default) are accepted and
        ignored; remote ones given a value (``api_key``,
        ``host_override``, another ``region``, ...) raise ValueError; any other raises
        TypeError.

    Returns
    -------
    Connection

    Raises
    ------
    ValueError
        For a ``db://`` URI or a remote option, a scheme lancetorch does not connect to, a
        ``read_timeout`` that is not above 0, or a negative ``read_consistency_interval``.
    TypeError
        For an option LanceDB does not have either, or a ``read_consistency_interval`` that
        is not a ``timedelta``.
    FileNotFoundError
        On object storage, for a missing bucket (the bucket is checked now).
    PermissionError
        On object storage, for refused credentials.
    ConnectionError
        On object storage, for no answer.
    """
    if read_timeout is not None and not _checks.number("read_timeout", read_timeout) > 0:
        raise ValueError(
            f"read_timeout={read_timeout!r} must be a number of seconds above 0 or None"
        )
    _checks.interval(read_consistency_interval)  # checked before anything else
    enterprise = remote_options(enterprise)
    uri = os.fspath(uri)
    if uri.startswith("memory:/"):  # LanceDB's spellings: memory://, memory:///, memory://name
        uri = "memory://"
    if uri.startswith("db://") or enterprise:
        given = f" (given {', '.join(sorted(enterprise))})" if enterprise else ""
        raise ValueError(
            f"{uri!r}: remote db:// databases and their options{given} are LanceDB Enterprise "
            "features, which lancetorch does not connect to. It connects to 'memory://', local "
            f"directories and {', '.join(s + 'bucket/prefix' for s in _objectstore.SCHEMES)}, "
            "with storage_options={...} for an object store's endpoint and keys"
        )
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    if _objectstore.is_object_store(uri):
        connection = Connection(uri, storage_options, read_timeout, read_consistency_interval)
        assert connection._store is not None  # made for an object-store URI
        connection._store.check()
        return connection
    if "://" in uri and uri != "memory://":
        raise ValueError(
            f"{uri!r}: lancetorch connects to 'memory://', local directories and "
            f"{', '.join(s + 'bucket/prefix' for s in _objectstore.SCHEMES)}"
        )
    if uri != "memory://":
        uri = os.path.abspath(os.path.expanduser(uri))
    return Connection(uri, storage_options, read_consistency_interval=read_consistency_interval)


DBConnection = Connection


_SYNC_ONLY = (
    "lancetorch's API is synchronous (DataLoader workers read tables, not an event loop); use "
    "lancetorch.connect(uri), whose tables and permutations are what LanceDB's async ones "
    "return"
)


class AsyncConnection:
    """LanceDB's asynchronous connection. The name exists so that code naming it (a type
    annotation, an import) loads; making one raises NotImplementedError saying what to use.

    Parameters
    ----------
    *args : Any
        Not used.
    **kwargs : Any
        Not used.

    Raises
    ------
    NotImplementedError
        Always: use :func:`lancetorch.connect`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(_SYNC_ONLY)


async def connect_async(uri: str | os.PathLike, **kwargs: Any) -> AsyncConnection:
    """LanceDB's asynchronous connect: raises NotImplementedError (see :class:`AsyncConnection`).

    Parameters
    ----------
    uri : str or os.PathLike
        Not used.
    **kwargs : Any
        Not used.

    Raises
    ------
    NotImplementedError
        Always: use :func:`lancetorch.connect`.
    """
    raise NotImplementedError(_SYNC_ONLY)
