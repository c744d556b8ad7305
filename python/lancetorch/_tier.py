"""The node tier: pieces of tables kept on a node's local disk, as files that every process
of the node memory-maps, so that the page cache holds one copy of a piece for all of them.

Layout under the root (a 0700 folder owned by this user; every file in it is 0600)::

    <root>/<location hash>/<version hash>/version          the version's number and write time
    <root>/<location hash>/<version hash>/<piece hash>.arrow  a piece
    <root>/<location hash>/<version hash>/<piece hash>.lock   its lock (flock)

Names are SHA-256 hashes of a canonical text of the key; the location in it is the table's URI
without its user info, query or fragment (where a store's URI may carry a token): storage
options never reach a key, a name or a file.

A piece file's format, its writing and its checks are in ``_piece_files.py``.

The first process that needs a piece fetches it, holding an exclusive ``flock`` on the
piece's lock file; the others wait on that lock and map the finished file. A process killed
while it fetches drops its lock with its life (the kernel releases it), and the next one
fetches the piece again, removing the dead one's temporary file. ``get_behind`` hands the
fetched piece to its caller from memory at once and writes it on another thread, the lock
held until the file is there (a process forked meanwhile closes its copy of the lock).

Eviction: the tier keeps its pieces within ``budget_bytes``, least recently used first (a get
touches the file's mtime). A piece mapped by a process stays readable after it is removed:
on Linux an unlinked file lives until its last mapping goes (its disk space too, until then).
A version newer than the ones kept for a location (by write time, then number) removes the
older ones' pieces when it writes its first; a piece is never served for another version.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import threading
import warnings
import weakref
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa

from ._piece_files import (
    CorruptPiece,
    _check_folder,
    _checked_table,
    _make_folder,
    _map_checked,
    _map_kept,
    _trust,
    _write_piece,
)

_SUFFIX = ".arrow"


def default_root() -> Path:
    """The tier's folder when none is given: ``$LANCETORCH_CACHE_DIR``, else ``lancetorch/tier``
    under ``$XDG_CACHE_HOME`` (``~/.cache`` when that is unset)."""
    chosen = os.environ.get("LANCETORCH_CACHE_DIR")
    if chosen:
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lancetorch" / "tier"


def location_of(uri: str) -> str:
    """``uri`` without what may carry a secret (user info, query, fragment): what a key holds."""
    try:
        parts = urlsplit(str(uri))
    except ValueError:
        return str(uri)
    if not parts.scheme or len(parts.scheme) == 1:  # a path (a Windows drive letter too)
        return os.path.abspath(str(uri))
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass(frozen=True)
class PieceKey:
    """What names a piece: the table's location (a URI; never its storage options), the
    version (number and write time), the columns, and the rows ``[start, stop)``.

    Parameters
    ----------
    location : str
        The table's URI; user info, query and fragment are dropped (see ``location_of``).
    version : int
        The version's number.
    written : str
        The version's write time as text ("" where unknown): tells apart versions of one
        number of a table dropped and made again.
    columns : tuple of str
        The columns the piece holds, in order.
    start, stop : int
        The rows of the piece, ``[start, stop)`` in row-offset order.
    """

    location: str
    version: int
    written: str
    columns: tuple[str, ...]
    start: int
    stop: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "location", location_of(self.location))
        object.__setattr__(self, "columns", tuple(self.columns))
        if not 0 <= self.start <= self.stop:
            raise ValueError(
                f"a piece's rows are [start, stop) with 0 <= start <= stop, got "
                f"start={self.start}, stop={self.stop}"
            )

    def folders(self) -> tuple[str, str]:
        """The location's folder name and the version's, under the root."""
        return _digest("location", self.location), _digest("version", self.version, self.written)

    def file_name(self) -> str:
        """The piece's file name in its version's folder."""
        return _digest("piece", list(self.columns), self.start, self.stop) + _SUFFIX


def _digest(kind: str, *parts: object) -> str:
    text = json.dumps([kind, *parts], separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


class NodeTier:
    """Pieces of tables on local disk, shared by the processes of a node through mapped files.

    Parameters
    ----------
    root : str or os.PathLike, optional
        The folder (made 0700 if absent; refused when another user owns it or others may
        write it). Default: ``$LANCETORCH_CACHE_DIR``, else ``lancetorch/tier`` in the user's
        cache folder (``$XDG_CACHE_HOME`` or ``~/.cache``).
    budget_bytes : int, optional
        The bytes of pieces kept; past it the least recently used are removed. Default: half
        the space free on the folder's file system when the tier is opened, plus what the
        tier holds then.
    """

    def __init__(
        self, root: str | os.PathLike[str] | None = None, budget_bytes: int | None = None
    ) -> None:
        if budget_bytes is not None and (
            isinstance(budget_bytes, bool) or not isinstance(budget_bytes, int) or budget_bytes < 0
        ):
            raise ValueError(
                f"budget_bytes must be a number of bytes >= 0 (or None for half the free disk "
                f"space), got {budget_bytes!r}"
            )
        self.root = Path(root).expanduser() if root is not None else default_root()
        if not self.root.exists():
            try:
                _make_folder(self.root)
            except OSError as e:
                raise PermissionError(
                    f"cannot make the lancetorch cache folder {self.root} ({e.strerror}); pass "
                    "another cache_dir (or set LANCETORCH_CACHE_DIR), or cache_dir=False"
                ) from e
        _check_folder(self.root)
        if budget_bytes is None:
            budget_bytes = shutil.disk_usage(self.root).free // 2 + self.held_bytes()
        self.budget_bytes = budget_bytes
        self.tier_bytes = 0  # bytes of pieces served from the tier
        self.tier_pieces = 0
        self.fetched_bytes = 0  # bytes of pieces fetched (by this process) and written
        self.fetched_pieces = 0
        self._counting = threading.Lock()  # pieces are fetched on several threads at once
        # Pieces fetched by this process and still being written (see get_behind), and the
        # room for more.
        self._pending: dict[Path, pa.Table] = {}
        self._room = threading.BoundedSemaphore(_PENDING)
        _TIERS.add(self)
        self._warned = False

    def __repr__(self) -> str:
        return f"NodeTier({str(self.root)!r}, budget_bytes={self.budget_bytes})"

    def stats(self) -> dict[str, int]:
        """What this process's gets cost: bytes and pieces served from the tier, and fetched."""
        return {
            "tier_bytes": self.tier_bytes,
            "tier_pieces": self.tier_pieces,
            "fetched_bytes": self.fetched_bytes,
            "fetched_pieces": self.fetched_pieces,
        }

    def path_of(self, key: PieceKey) -> Path:
        """Where the piece of ``key`` lives (whether or not it is there)."""
        location, version = key.folders()
        return self.root / location / version / key.file_name()

    def peek(self, key: PieceKey) -> pa.Table | None:
        """The piece of ``key`` when the tier holds a sound copy, else None (nothing fetched)."""
        path = self.path_of(key)
        try:
            table = _map_kept(path)
        except CorruptPiece:
            return None
        if table is not None:
            self._served(path, table)
        return table

    def get(self, key: PieceKey, fetch: Callable[[], pa.Table]) -> pa.Table:
        """The piece of ``key``, mapped from the tier; fetched with ``fetch()`` and written
        there first when absent (by one process of the node: the others wait for it).

        Parameters
        ----------
        key : PieceKey
            The piece.
        fetch : callable
            Called with no arguments, returns the piece as a ``pyarrow.Table``. What it raises
            propagates as it is, and leaves nothing in the tier.
        """
        table = self._get(key, fetch, wait=True)
        assert table is not None  # only a get that does not wait finds the piece busy
        return table

    def get_now(self, key: PieceKey, fetch: Callable[[], pa.Table]) -> pa.Table | None:
        """As ``get``, but None at once where another process is fetching the piece now (for
        a reader with other pieces to read meanwhile).

        Parameters
        ----------
        key : PieceKey
            The piece.
        fetch : callable
            As for ``get``.
        """
        return self._get(key, fetch, wait=False)

    def get_behind(
        self, key: PieceKey, fetch: Callable[[], pa.Table], writer: Executor
    ) -> pa.Table | None:
        """As ``get_now``, but a piece this call fetches is returned at once, as ``fetch()``
        gave it (in memory), and written to the tier on ``writer``: its lock stays held until
        the file is there (the node's other processes wait for it and map it), and
        ``pending`` serves it to this process meanwhile. At most ``_PENDING`` pieces wait
        for their write at once (a fetch waits for room first: their memory is bounded).

        Parameters
        ----------
        key : PieceKey
            The piece.
        fetch : callable
            As for ``get``.
        writer : concurrent.futures.Executor
            Where the piece is written.
        """
        return self._get(key, fetch, wait=False, writer=writer)

    def pending(self, key: PieceKey) -> pa.Table | None:
        """The piece of ``key`` this process fetched and is writing to the tier now (see
        ``get_behind``), in memory; else None."""
        path = self.path_of(key)
        with self._counting:
            table = self._pending.get(path)
            if table is not None:
                self.tier_pieces += 1
                self.tier_bytes += table.nbytes
        return table

    def _get(
        self,
        key: PieceKey,
        fetch: Callable[[], pa.Table],
        wait: bool,
        writer: Executor | None = None,
    ) -> pa.Table | None:
        path = self.path_of(key)
        try:
            table = _map_kept(path)
        except CorruptPiece:
            table = None  # checked again, and removed, under the lock
        if table is not None:
            self._served(path, table)
            return table
        fd = self._lock(key, path, wait)
        if fd is None:
            return None
        if fd is False:  # the folder went (a newer version's eviction), or cannot be made
            return self._fetched(fetch(), None)
        handed = False
        try:
            try:
                table = _map_checked(path)
            except CorruptPiece:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                table = None
            if table is not None:  # another process wrote it while this one waited
                self._served(path, table)
                return table
            if writer is None:
                return self._fetched(fetch(), path)
            self._room.acquire()
            try:
                table = _checked_table(fetch())
                with self._counting:
                    self.fetched_pieces += 1
                    self.fetched_bytes += table.nbytes
                    self._pending[path] = table
                writer.submit(self._write_behind, table, path, fd)
                handed = True
            finally:
                if not handed:
                    self._room.release()
            return table
        finally:
            if not handed:
                _unlock(fd)

    def settle(self) -> None:
        """Wait until the pieces this process is writing behind (``get_behind``) are
        written."""
        for _ in range(_PENDING):
            self._room.acquire()
        for _ in range(_PENDING):
            self._room.release()

    def _write_behind(self, table: pa.Table, path: Path, fd: int) -> None:
        """``get_behind``'s write of a piece fetched, under its lock ``fd``, dropped after."""
        try:
            self._write(table, path)
        finally:
            with self._counting:
                self._pending.pop(path, None)
            self._room.release()
            _unlock(fd)

    def _served(self, path: Path, table: pa.Table) -> None:
        with contextlib.suppress(OSError):
            os.utime(path)  # its last use, for the least-recently-used order
        with self._counting:
            self.tier_pieces += 1
            self.tier_bytes += table.nbytes

    def _lock(self, key: PieceKey, path: Path, wait: bool = True) -> int | bool | None:
        """The piece's lock taken: its file descriptor (``_unlock`` drops it); False when
        its folder cannot be made or kept; None when ``wait`` is False and another process
        (or another thread of this one) holds it."""
        lock_path = path.with_suffix(".lock")
        fd = -1
        for _ in range(3):
            try:
                self._version_folder(key)
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                break
            except FileNotFoundError:  # removed between making it and opening: again
                continue
            except OSError as e:
                self._warn(e)
                break
        if fd < 0:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        _HELD.add(fd)
        return fd

    def _version_folder(self, key: PieceKey) -> None:
        """Make the key's version folder (with its ``version`` note) if absent."""
        location, version = key.folders()
        folder = self.root / location / version
        if folder.is_dir():
            return
        _make_folder(folder)
        note = folder / "version"
        fd = os.open(note, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"version": key.version, "written": key.written}, f)

    def _fetched(self, table: pa.Table, path: Path | None) -> pa.Table:
        """``table`` just fetched: written to ``path`` and mapped from it (or served from
        memory when the disk refuses it, or from an unlinked file when over the budget)."""
        _checked_table(table)
        with self._counting:
            self.fetched_pieces += 1
            self.fetched_bytes += table.nbytes
        if path is None:
            return table
        return self._write(table, path)

    def _write(self, table: pa.Table, path: Path) -> pa.Table:
        """``table`` written to ``path`` and mapped from it (see ``_fetched``)."""
        tmp = path.with_suffix(".tmp")
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)  # the draft of a process killed while it wrote this piece
            size = _write_piece(tmp, table)
            if size > self.budget_bytes:  # served once, from a file no one else will find
                _trust(tmp)
                mapped = _map_checked(tmp)
                os.unlink(tmp)
                return mapped if mapped is not None else table
            os.rename(tmp, path)
            _trust(path)
            mapped = _map_checked(path)
        except (OSError, CorruptPiece) as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if not isinstance(e, FileNotFoundError):  # not the folder of an evicted version
                self._warn(e)
            return table
        self._evict(keep=path)
        return mapped if mapped is not None else table

    def _warn(self, err: BaseException) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"the lancetorch node tier in {self.root} could not write a piece ({err}); "
                "pieces are read from the table's store instead. Free space there, or pass "
                "another cache_dir",
                RuntimeWarning,
                stacklevel=4,
            )

    def pieces(self) -> list[tuple[Path, os.stat_result]]:
        """The piece files the tier holds, with their stat."""
        found = []
        for location in _listdir(self.root):
            for version in _listdir(self.root / location):
                folder = self.root / location / version
                for name in _listdir(folder):
                    if name.endswith(_SUFFIX):
                        with contextlib.suppress(FileNotFoundError):
                            found.append((folder / name, os.stat(folder / name)))
        return found

    def held_bytes(self) -> int:
        """Bytes of the piece files the tier holds now."""
        return sum(st.st_size for _, st in self.pieces())

    def _evict(self, keep: Path) -> None:
        """Remove the versions of ``keep``'s location older than its own, then the least
        recently used pieces until the tier is within its budget (``keep`` stays). One thread
        of a process at a time: two that list the pieces together would each remove the
        other's."""
        with _EVICTING:
            self._evict_older_versions(keep.parent)
            held = sorted(self.pieces(), key=lambda p: p[1].st_mtime_ns)
            total = sum(st.st_size for _, st in held)
            for path, st in held:
                if total <= self.budget_bytes:
                    break
                if path == keep:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    total -= st.st_size

    def _evict_older_versions(self, folder: Path) -> None:
        mine = _version_note(folder)
        if mine is None:
            return
        for name in _listdir(folder.parent):
            other = folder.parent / name
            if other == folder:
                continue
            theirs = _version_note(other)
            if theirs is not None and theirs < mine:
                shutil.rmtree(other, ignore_errors=True)


_EVICTING = threading.Lock()  # see NodeTier._evict

# Pieces of a process waiting for their write to the tier (see NodeTier.get_behind), at most.
_PENDING = 8

# The lock files this process holds (their descriptors): a process forked meanwhile closes its
# copies at once, else the lock would stay held until that child exits.
_HELD: set[int] = set()


def _unlock(fd: int) -> None:
    _HELD.discard(fd)
    os.close(fd)  # drops the lock


def _close_held_in_child() -> None:
    """In a forked child: no lock held, nothing waiting for a write (the threads that
    write are the parent's)."""
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()
    for tier in list(_TIERS):
        tier._pending = {}
        tier._room = threading.BoundedSemaphore(_PENDING)


_TIERS: weakref.WeakSet[NodeTier] = weakref.WeakSet()  # every tier of this process


os.register_at_fork(after_in_child=_close_held_in_child)


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _version_note(folder: Path) -> tuple[str, int] | None:
    """A version folder's order: (write time, number); None when it has no readable note."""
    try:
        with open(folder / "version") as f:
            note = json.load(f)
        return str(note["written"]), int(note["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
