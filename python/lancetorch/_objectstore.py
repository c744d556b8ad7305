"""Tables on S3-compatible object storage: the options Lance is given, listing and removing
table directories under a prefix (through pyarrow's S3 filesystem), and errors that say what
went wrong (no such bucket, refused credentials, no answer).

Lance reads and writes the datasets itself; this module only does what Lance has no call for.
Credentials come from ``storage_options`` or, where absent, the standard ``AWS_*``
environment variables, read in the process that uses them (never written anywhere).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from typing import Any

SCHEMES = ("s3://",)

# Bounded retries by default: a store that stops answering fails a read in seconds, not
# minutes. Each can be set in storage_options.
DEFAULT_OPTIONS = {
    "client_max_retries": "3",
    "client_retry_timeout": "20",
    "connect_timeout": "5s",
}

# storage_options keys, in Lance's spelling, and the environment variables behind them.
_KEYS = {
    "access_key": (("aws_access_key_id", "access_key_id"), ("AWS_ACCESS_KEY_ID",)),
    "secret_key": (("aws_secret_access_key", "secret_access_key"), ("AWS_SECRET_ACCESS_KEY",)),
    "session_token": (("aws_session_token", "session_token", "token"), ("AWS_SESSION_TOKEN",)),
    "region": (("aws_region", "region"), ("AWS_REGION", "AWS_DEFAULT_REGION")),
    "endpoint": (
        ("aws_endpoint", "endpoint", "aws_endpoint_url", "endpoint_url"),
        ("AWS_ENDPOINT_URL", "AWS_ENDPOINT"),
    ),
    "allow_http": (("allow_http", "aws_allow_http"), ("AWS_ALLOW_HTTP",)),
}


def is_object_store(uri: str) -> bool:
    return uri.startswith(SCHEMES)


def lance_options(storage_options: dict[str, str] | None) -> dict[str, str]:
    """What Lance is given: the user's options over the bounded-retry defaults."""
    return {**DEFAULT_OPTIONS, **(storage_options or {})}


def _setting(options: dict[str, str], name: str) -> str | None:
    keys, env = _KEYS[name]
    for key in keys:
        if options.get(key) not in (None, ""):
            return str(options[key])
    for var in env:
        if os.environ.get(var):
            return os.environ[var]
    return None


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``."""
    bucket, _, prefix = uri.split("://", 1)[1].rstrip("/").partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket: write s3://BUCKET/PREFIX")
    return bucket, prefix


class ObjectStore:
    """The directory of a connection on object storage: ``s3://bucket/prefix``."""

    def __init__(self, uri: str, storage_options: dict[str, str] | None) -> None:
        from pyarrow import fs

        self.uri = uri.rstrip("/")
        self.bucket, self.prefix = split_uri(uri)
        options = dict(storage_options or {})
        endpoint = _setting(options, "endpoint")
        self.endpoint = endpoint or "AWS S3"
        scheme = "https"
        if endpoint and "://" in endpoint:
            scheme, endpoint = endpoint.split("://", 1)
        allow_http = (_setting(options, "allow_http") or "").lower() in ("1", "true", "yes")
        if scheme == "http" and not allow_http:
            raise ValueError(
                f"the endpoint {self.endpoint} is plain http: add allow_http='true' to "
                "storage_options (or AWS_ALLOW_HTTP=true) to use it"
            )
        self.fs = fs.S3FileSystem(
            access_key=_setting(options, "access_key"),
            secret_key=_setting(options, "secret_key"),
            session_token=_setting(options, "session_token"),
            region=_setting(options, "region"),  # unset: the AWS SDK finds the bucket's
            endpoint_override=endpoint,
            scheme=scheme,
            connect_timeout=5,
            request_timeout=30,
            retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=3),
            allow_bucket_creation=False,
            allow_bucket_deletion=False,
        )

    def _key(self, name: str = "") -> str:
        return "/".join(p for p in (self.bucket, self.prefix, name) if p)

    def datasets(self) -> list[str]:
        """Names of the Lance datasets directly under the prefix: directories with a file in
        ``_versions`` (a store with real directories can keep emptied ones)."""
        from pyarrow import fs

        try:
            infos = self.fs.get_file_info(fs.FileSelector(self._key(), allow_not_found=True))
            names = [i.base_name for i in infos if i.type == fs.FileType.Directory]
            return [n for n in names if self.has_dataset(n)]
        except OSError as e:
            raise self.explain(e, "list tables") from e

    def has_dataset(self, name: str) -> bool:
        """Whether directory ``name`` under the prefix holds a Lance dataset (a file in its
        ``_versions``)."""
        from pyarrow import fs

        selector = fs.FileSelector(self._key(f"{name}/_versions"), allow_not_found=True)
        try:
            return any(i.type == fs.FileType.File for i in self.fs.get_file_info(selector))
        except OSError as e:
            raise self.explain(e, f"look for {name}") from e

    def check(self) -> None:
        """The bucket exists and the credentials are accepted, or an error that says which."""
        from pyarrow import fs

        try:
            bucket = self.fs.get_file_info(self.bucket)
            if bucket.type == fs.FileType.NotFound:
                raise OSError("NoSuchBucket")
            # One listing of the prefix: the credentials are good for reading it.
            self.fs.get_file_info(fs.FileSelector(self._key(), allow_not_found=True))
        except OSError as e:
            raise self.explain(e, "open the connection") from e

    def remove(self, name: str) -> None:
        try:
            self.fs.delete_dir(self._key(name))
        except OSError as e:
            raise self.explain(e, f"remove {name}") from e

    def explain(self, error: BaseException, doing: str) -> OSError:
        """An error that says which of the usual causes this is, with what to do."""
        return explain(error, doing, self.bucket, self.endpoint)


_NO_BUCKET = ("NO_SUCH_BUCKET", "NoSuchBucket")
_REFUSED = (
    "SIGNATURE_DOES_NOT_MATCH",
    "SignatureDoesNotMatch",
    "INVALID_ACCESS_KEY_ID",
    "InvalidAccessKeyId",
    "ACCESS_DENIED",
    "AccessDenied",
    "403 Forbidden",
)
_UNREACHABLE = (
    "Connection refused",
    "connection refused",
    "error sending request",
    "tcp connect",
    "timed out",
    "Timeout",
    "NETWORK_CONNECTION",
    "Couldn't connect",
    "error trying to connect",
)


def explain(error: BaseException, doing: str, bucket: str, endpoint: str) -> OSError:
    text = str(error)
    if any(m in text for m in _NO_BUCKET):
        return FileNotFoundError(
            f"cannot {doing}: bucket '{bucket}' does not exist at {endpoint}. Create it first "
            "(lancetorch does not create buckets), or fix the bucket in the URI"
        )
    if any(m in text for m in _REFUSED):
        return PermissionError(
            f"cannot {doing}: {endpoint} refused the credentials for bucket '{bucket}'. Check "
            "aws_access_key_id / aws_secret_access_key in storage_options, or "
            "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the environment"
        )
    if isinstance(error, ReadTimeout) or any(m in text for m in _UNREACHABLE):
        return ConnectionError(
            f"cannot {doing}: no answer from {endpoint} for bucket '{bucket}' ({_first_line(text)})"
        )
    return OSError(f"cannot {doing} in bucket '{bucket}' at {endpoint}: {_first_line(text)}")


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else text
    line = line.split(", /")[0]  # the source path of the Rust code that raised
    return line if len(line) <= 400 else line[:400] + "..."


def is_corrupt_data(error: BaseException) -> bool:
    """Whether Lance failed on bytes it read (a data file overwritten or cut): its decoder
    says the file is corrupt, or panics on it."""
    text = str(error)
    return type(error).__name__ == "PanicException" or "corrupt file" in text or "panicked" in text


def is_io_error(error: BaseException) -> bool:
    """Whether a Lance or Arrow error came from storage (not from a bad argument). Through a
    stream of batches Lance's IO errors lose their kind and arrive as ArrowInvalid naming
    the data file that could not be found."""
    text = str(error)
    return (
        isinstance(error, OSError)
        or "LanceError(IO)" in text
        or "S3 error" in text
        or re.search(r"Not found: \S+\.lance(?=[\s,]|$)", text) is not None
    )


class ReadTimeout(TimeoutError):
    """A read that did not finish in its time; the call may still be running, abandoned."""


def within(seconds: float, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` on a thread of its own, given up after ``seconds``: a store
    that accepts connections and never answers cannot hang the reader."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, fn(*args, **kwargs)))
        except BaseException as e:  # handed to the caller
            outcome.append((False, e))

    worker = threading.Thread(target=run, name="lancetorch-read", daemon=True)
    worker.start()
    worker.join(seconds)
    if not outcome:
        raise ReadTimeout(f"no answer within read_timeout={seconds:g}s")
    ok, value = outcome[0]
    if ok:
        return value
    raise value


class StorageReadError(OSError):
    """A read of a table that storage failed: the message names the table, what was being
    read and the limits that applied."""


def read_failure(
    error: BaseException, table: str, uri: str, what: str, options: dict[str, Any] | None
) -> StorageReadError:
    """A read that failed: the table, ``what`` was being read (for example "a take of 1024
    rows starting at row offset 5000"), the cause and, on object storage, the limits."""
    if not is_object_store(uri):
        return StorageReadError(
            f"reading table '{table}' ({uri}) failed in {what}: {_first_line(str(error))}"
        )
    opts = options or {}
    limits = ", ".join(f"{k}={opts.get(k, DEFAULT_OPTIONS[k])}" for k in DEFAULT_OPTIONS)
    bucket = split_uri(uri)[0]
    endpoint = _setting(dict(opts), "endpoint") or "AWS S3"
    cause = str(explain(error, "read", bucket, endpoint))
    timeout = f"; {error} (connect(..., read_timeout=))" if isinstance(error, ReadTimeout) else ""
    return StorageReadError(
        f"reading table '{table}' ({uri}) failed in {what}: {cause}. Retries were bounded by "
        f"{limits} (settable in storage_options){timeout}"
    )
