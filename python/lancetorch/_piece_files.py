"""The node tier's piece files: their format, their writing and their checks, and the checks
of the folders that hold them (``_tier.py`` keeps the pieces, their locks and their budget).

A piece file is an uncompressed Arrow IPC file followed by a 24-byte trailer: the magic
``LTTIER01``, the IPC file's length (u64) and its CRC-32 (u32, zlib's, taken by the native
``crc32_of_file``), little-endian, then four zero bytes. The file is whole or absent (written
to a temporary file in the same folder, renamed); a file whose length, trailer, checksum or
IPC does not check out (a disk fault, a crash before the kernel wrote it out, a hand that
edited it) is removed and fetched again, never read. A process checks a file once (by
device, inode and size) the first time it maps it, so nothing is fsynced: a piece torn by a
crash is found by the first process that maps it after, and a process that wrote a piece
reads it from the page cache it wrote to.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import struct
import threading
from collections import OrderedDict
from pathlib import Path

import pyarrow as pa

from ._native import crc32_of_file

_MAGIC = b"LTTIER01"
_TRAILER = struct.Struct("<8sQI4x")  # magic, IPC length, CRC-32 of the IPC bytes


class CorruptPiece(Exception):
    """A piece file that does not check out (internal: it is removed and fetched again)."""


# Files this process has checked, by (path, device, inode, size): checked once a process.
_checked: set[tuple[str, int, int, int]] = set()

# Pieces this process has mapped, by path, with the (device, inode, size) of the file mapped:
# a read of a few rows of a piece maps it once, not each time (a map and its IPC footer cost
# more than a take of a batch's rows). At most _KEPT, the least recently used dropped first.
# A piece removed from the tier keeps its disk space while a process maps it: each mapping
# made drops those whose file has gone or been replaced since.
_KEPT = 16
_kept: OrderedDict[str, tuple[tuple[int, int, int], pa.Table]] = OrderedDict()
_keeping = threading.Lock()


def _keep_none_in_child() -> None:
    """In a forked child: a fresh lock (a thread of the parent may have held it at the fork),
    and no mapping kept (the child maps what it reads itself)."""
    global _keeping
    _keeping = threading.Lock()
    _kept.clear()


os.register_at_fork(after_in_child=_keep_none_in_child)


def _check_folder(path: Path) -> None:
    """Refuse a folder that is not a directory owned by this user, or that others may write."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise PermissionError(
            f"the lancetorch cache folder {path} cannot be used ({e.strerror}); pass another "
            "cache_dir (or set LANCETORCH_CACHE_DIR), or cache_dir=False to turn the node "
            "tier off"
        ) from e
    if not stat.S_ISDIR(st.st_mode):
        raise ValueError(
            f"the lancetorch cache folder {path} is not a directory; pass another cache_dir "
            "(or set LANCETORCH_CACHE_DIR)"
        )
    if st.st_uid != os.geteuid():
        raise PermissionError(
            f"the lancetorch cache folder {path} belongs to user id {st.st_uid}, not to this "
            f"user ({os.geteuid()}): another user could change the pieces read from it. Pass a "
            "folder of your own as cache_dir (or set LANCETORCH_CACHE_DIR)"
        )
    if st.st_mode & 0o022:
        raise PermissionError(
            f"the lancetorch cache folder {path} may be written by other users (mode "
            f"{stat.S_IMODE(st.st_mode):o}): `chmod 700 {path}`, or pass another cache_dir"
        )


def _make_folder(path: Path) -> None:
    """``path`` and its missing parents made, the new ones 0700 (``os.makedirs`` gives the
    parents it makes the umask's mode)."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o700)


def _checked_table(table: object) -> pa.Table:
    """What a fetch returned: a ``pyarrow.Table``, else a TypeError."""
    if not isinstance(table, pa.Table):
        raise TypeError(
            f"a node tier's fetch must return a pyarrow.Table, got {type(table).__name__}"
        )
    return table


def _write_piece(path: Path, table: pa.Table) -> int:
    """``table`` as an uncompressed Arrow IPC file at ``path`` (made 0600, no file there),
    its trailer after it; the IPC file's length."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        crc = crc32_of_file(f.fileno(), size)
        f.seek(size)
        f.write(_TRAILER.pack(_MAGIC, size, crc))
    return size


def _trust(path: Path) -> None:
    """The piece this process has just written at ``path`` (its checksum taken from the
    file's bytes, under its lock) is not checked again when this process maps it."""
    _checked.add((str(path), *_identity(os.stat(path))))


def _map_kept(path: Path) -> pa.Table | None:
    """``_map_checked(path)``, served from this process's kept mappings while the file at
    ``path`` is the one mapped (see ``_KEPT``)."""
    key = str(path)
    now = _identity_at(key)
    with _keeping:
        kept = _kept.get(key)
        if kept is not None and now is not None and kept[0] == now:
            _kept.move_to_end(key)
            return kept[1]
        _kept.pop(key, None)
    if now is None:
        return None
    mapped = _map_and_check(path)
    if mapped is None:
        return None
    table, identity = mapped
    with _keeping:
        held = [(k, ident) for k, (ident, _) in _kept.items()]
    gone = [k for k, ident in held if _identity_at(k) != ident]
    with _keeping:
        for k in gone:
            _kept.pop(k, None)
        _kept[key] = (identity, table)
        while len(_kept) > _KEPT:
            _kept.popitem(last=False)
    return table


def _identity_at(path: str) -> tuple[int, int, int] | None:
    try:
        return _identity(os.stat(path))
    except OSError:
        return None


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_dev, st.st_ino, st.st_size


def _map_checked(path: Path) -> pa.Table | None:
    """The piece at ``path`` mapped (its buffers point into the mapping), None when there is
    no file; raises CorruptPiece when it does not check out."""
    mapped = _map_and_check(path)
    return None if mapped is None else mapped[0]


def _map_and_check(path: Path) -> tuple[pa.Table, tuple[int, int, int]] | None:
    """``_map_checked``, with the (device, inode, size) of the file mapped."""
    try:
        source = pa.memory_map(str(path), "r")
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ENOENT:
            return None
        raise CorruptPiece(f"{path}: {e}") from e
    try:
        st = os.fstat(source.fileno())
        whole = source.read_buffer()
        if whole.size < _TRAILER.size:
            raise CorruptPiece(f"{path}: {whole.size} bytes, shorter than a trailer")
        magic, size, crc = _TRAILER.unpack(whole.slice(whole.size - _TRAILER.size).to_pybytes())
        if magic != _MAGIC or size != whole.size - _TRAILER.size:
            raise CorruptPiece(f"{path}: its trailer does not match its length ({whole.size})")
        body = whole.slice(0, size)
        seen = (str(path), *_identity(st))
        if seen not in _checked:
            if crc32_of_file(source.fileno(), size) != crc:
                raise CorruptPiece(f"{path}: its checksum does not match its bytes")
            table = pa.ipc.open_file(body).read_all()
            _checked.add(seen)
            return table, _identity(st)
        return pa.ipc.open_file(body).read_all(), _identity(st)
    except CorruptPiece:
        raise
    except (pa.ArrowException, OSError, ValueError, struct.error) as e:
        raise CorruptPiece(f"{path}: {e}") from e
    finally:
        source.close()
