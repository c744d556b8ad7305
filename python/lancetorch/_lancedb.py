"""LanceDB's side of lancetorch: LanceDB tables read as lancetorch's, what of LanceDB's Table
API lancetorch has not (with what to use instead), and which of LanceDB's connect options
mean a remote database."""

from __future__ import annotations

from typing import Any


def lancedb_source(table: Any) -> tuple[str, str | None, int | None] | None:
    """Where a LanceDB table's rows are: its name, and the path and version of its Lance
    dataset where that is on a local disk (``None`` and ``None`` otherwise: a memory table,
    one in object storage); ``None`` for an object that is not a LanceDB table."""
    if not (type(table).__module__.startswith("lancedb") and hasattr(table, "to_arrow")):
        return None
    name = str(getattr(table, "name", "table"))
    try:
        dataset = table.to_lance()
        uri = dataset.uri
    except Exception:  # a memory table: no dataset on disk
        return name, None, None
    if "://" not in uri or uri.startswith("file://"):
        return name, uri.removeprefix("file://"), dataset.version
    return name, None, None


def missing(name: str) -> AttributeError:
    """The error for an attribute ``name`` a lancetorch Table does not have: for a LanceDB
    table method, that it is LanceDB's and what to use instead."""
    advice = _LANCEDB_TABLE.get(name)
    if advice is None:
        return AttributeError(f"'Table' object has no attribute {name!r}")
    return AttributeError(f"lancetorch's Table has no {name} (a LanceDB Table has): {advice}")


_WRITE = (
    "lancetorch reads tables for training and writes only by add(); change the dataset with "
    "lancedb or pylance (lance.dataset(table.uri)) and open the table again"
)
_INDEX = (
    "lancetorch reads every row and builds no index (vector and full-text search are "
    "LanceDB's); use lancedb for indexes"
)
_VERSION = (
    "lancetorch reads versions (checkout(version), checkout_latest(), list_versions()) but "
    "does not write them; use lancedb to restore, tag or branch"
)
_MAINTAIN = "maintain the dataset with lancedb or pylance (lance.dataset(table.uri))"
_LSM = "LanceDB's LSM writes are not in lancetorch; use lancedb"
_BLOB = "read blob columns as binary with take_offsets([...]).to_arrow()"
# LanceDB 0.40 Table attributes lancetorch does not have, and what to use instead.
_LANCEDB_TABLE = {
    **dict.fromkeys(
        [
            "add_columns",
            "alter_columns",
            "drop_columns",
            "delete",
            "update",
            "merge",
            "merge_insert",
            "replace_field_metadata",
            "update_field_metadata",
            "refresh_column",
            "refresh_column_async",
            "set_unenforced_primary_key",
        ],
        _WRITE,
    ),
    **dict.fromkeys(
        [
            "create_index",
            "create_index_async",
            "create_fts_index",
            "create_scalar_index",
            "drop_index",
            "list_indices",
            "index_stats",
            "wait_for_index",
            "prewarm_index",
            "infer_tokenizer_configs",
            "tokenize",
            "embedding_functions",
        ],
        _INDEX,
    ),
    **dict.fromkeys(["restore", "tags", "branches", "current_branch"], _VERSION),
    **dict.fromkeys(
        [
            "optimize",
            "compact_files",
            "cleanup_old_versions",
            "migrate_v2_manifest_paths",
            "uses_v2_manifest_paths",
            "prewarm_data",
        ],
        _MAINTAIN,
    ),
    **dict.fromkeys(
        [
            "checkpoint_lsm",
            "close_lsm_writers",
            "compact_lsm",
            "flush_lsm",
            "get_lsm_stats",
            "get_lsm_write_spec",
            "set_lsm_write_spec",
            "unset_lsm_write_spec",
        ],
        _LSM,
    ),
    **dict.fromkeys(
        ["blob_columns", "fetch_blobs", "fetch_blob_files", "fetch_blob_ranges"], _BLOB
    ),
    "to_lance": "open the dataset with pylance: lance.dataset(table.uri) (a disk table)",
    "stats": "len(table) counts the rows and table.schema describes the columns",
    "create": "make a table with connect(uri).create_table(name, data)",
    "open": "open a table with connect(uri).open_table(name)",
    "from_inner": "open a table with connect(uri).open_table(name)",
    "id": "a table is named by table.name",
    "namespace": "namespaces are LanceDB's; lancetorch tables live directly in a connection",
    "function_errors": "lancetorch has no embedding functions",
    "initial_storage_options": "storage options are given to connect(uri, storage_options=...)",
    "latest_storage_options": "storage options are given to connect(uri, storage_options=...)",
}


# LanceDB's options for remote databases: named in connect()'s error, not taken.
_ENTERPRISE_OPTIONS = frozenset(
    {
        "api_key",
        "host_override",
        "sql_host_override",
        "client_config",
        "request_thread_pool",
        "namespace_client_impl",
        "namespace_client_properties",
        "namespace_client_pushdown_operations",
    }
)
# LanceDB's options for local databases that change nothing here: accepted and ignored.
# `region` has its default unless a remote database is meant.
_LOCAL_OPTIONS = frozenset({"session", "manifest_enabled", "region"})


def remote_options(options: dict[str, Any]) -> dict[str, Any]:
    """Of LanceDB's connect ``options``, those that ask for a remote database (a remote
    option given a value, a region other than the default); TypeError for a name LanceDB
    does not have either."""
    unknown = sorted(set(options) - _ENTERPRISE_OPTIONS - _LOCAL_OPTIONS)
    if unknown:
        raise TypeError(f"connect() got an unexpected keyword argument {unknown[0]!r}")
    return {
        k: v
        for k, v in options.items()
        if (k == "region" and v != "us-east-1") or (k not in _LOCAL_OPTIONS and v is not None)
    }


def no_namespace(namespace_path: Any) -> None:
    """Refuse a LanceDB namespace: lancetorch has none (``None`` and ``[]`` are no namespace)."""
    if namespace_path:
        raise ValueError(f"lancetorch has no namespaces; got namespace_path={namespace_path!r}")
