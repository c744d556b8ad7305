"""The shared copies that send a memory table to worker processes: Arrow IPC files in
/dev/shm (or the temp dir), created owner-only, removed by the process that wrote them (or,
if it was killed, by multiprocessing's resource tracker or the next run's sweep).

The process that writes a copy holds a shared ``flock`` on it for as long as it lives (the
kernel drops it when the process dies, however it ends). A later process's sweep removes a
copy only when it can take that lock exclusively and the pid in the name is not alive in its
own view: containers that share ``/dev/shm`` see each other's files but not each other's
pids, and a live owner anywhere holds its lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat as _stat
import tempfile
import uuid
import weakref
from collections.abc import Iterator

import pyarrow as pa

from . import _native


class _SharedCopy:
    """A column store's rows as an Arrow IPC file in shared memory, for worker processes to map.

    Written on first use and again when the store changes (the old file is removed; workers
    that mapped it keep their mapping). Removed when this object goes or the process exits,
    and only by the process that wrote it (a forked child exiting leaves it alone); in
    /dev/shm, by multiprocessing's resource tracker if the process is killed.
    """

    def __init__(self, store: _native.ColumnStore | None = None, path: str | None = None) -> None:
        self._store = store  # a worker's copy of a parent's file: known, not owned
        self._path = path
        self._release: weakref.finalize | None = None

    def path_for(self, store: _native.ColumnStore) -> str:
        if self._store is not store or self._path is None:
            if self._release is not None:
                self._release()
            path = _write_shared(store)
            self._release = weakref.finalize(self, _unlink_if_owner, path, os.getpid())
            self._store, self._path = store, path
        return self._path


def _shared_dir(nbytes: int) -> str:
    """/dev/shm when it has room (page cache, never written to disk), else the temp dir."""
    shm = "/dev/shm"
    try:
        stat = os.statvfs(shm)
        if stat.f_bavail * stat.f_frsize > 2 * nbytes:
            return shm
    except OSError:
        pass
    return tempfile.gettempdir()


# A copy, or the draft of one (a writer that died between creating and renaming it).
_SHARED_NAME = re.compile(r"^\.?lancetorch-(\d+)-[0-9a-f]{32}\.arrow(?:\.new)?$")


_swept: set[str] = set()


def _sweep(directory: str) -> None:
    """Remove shared copies left by processes that died before cleaning up (once a process).
    Whatever else the directory holds (any name, any kind of file) is left as it is."""
    if directory in _swept:
        return
    _swept.add(directory)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        match = _SHARED_NAME.match(name)
        if match is not None:
            with contextlib.suppress(OSError, ValueError, OverflowError):
                _remove_if_orphan(os.path.join(directory, name), int(match.group(1)))


def _remove_if_orphan(path: str, pid: int) -> None:
    """Remove the copy at ``path`` if no live process holds it: nobody holds its lock (an
    owner anywhere does) and its pid is not alive here."""
    info = os.lstat(path)
    if info.st_uid != os.getuid() or not _stat.S_ISREG(info.st_mode):
        return  # another user's, or not a file this module writes: never touched
    if _alive_here(pid):
        return
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # its owner lives, in this pid namespace or another
        if os.fstat(fd).st_ino == os.lstat(path).st_ino:  # still the file that was checked
            os.unlink(path)
    finally:
        os.close(fd)


def _alive_here(pid: int) -> bool:
    if pid <= 0:
        return True  # not a process's id: kill() would address a group; leave the file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # alive, another user's
    return True


def _write_shared(store: _native.ColumnStore) -> str:
    """The store's rows written to a new shared file, a slice at a time."""
    directory = _shared_dir(store.nbytes)
    _sweep(directory)
    name = f"lancetorch-{os.getpid()}-{uuid.uuid4().hex}.arrow"
    path = os.path.join(directory, name)
    # Created new and owner-only: on a shared node no other user reads the training data
    # (pyarrow's OSFile then truncates the file it finds, keeping its mode). Locked under a
    # name no sweep matches, then renamed: a sweep never meets it unlocked.
    draft = os.path.join(directory, f".{name}.new")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        os.rename(draft, path)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(draft)
        raise
    _locks[path] = fd
    _track(path, True)
    try:
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, store.schema) as writer:
            for batch in _slices(store):
                writer.write_batch(batch)
    except BaseException:
        _unlink_if_owner(path, os.getpid())
        raise
    return path


def _unlink_if_owner(path: str, owner: int) -> None:
    if os.getpid() != owner:
        return
    try:
        os.unlink(path)
    except OSError:
        pass
    fd = _locks.pop(path, None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)
    _track(path, False)


_locks: dict[str, int] = {}  # the lock this process holds on each copy it wrote


_tracked: set[str] = set()


def _track(path: str, on: bool) -> None:
    """Have multiprocessing's resource tracker remove a file in /dev/shm if this process dies
    before it does (killed, out of memory), or stop that once the file is gone (only for a
    file this process registered). A file elsewhere is left to the sweep of a later process."""
    if os.path.dirname(path) != "/dev/shm" or (not on and path not in _tracked):
        return
    from multiprocessing import resource_tracker

    name = "/" + os.path.basename(path)  # the tracker removes it with shm_unlink
    try:
        if on:
            resource_tracker.register(name, "shared_memory")
            _tracked.add(path)
        else:
            _tracked.discard(path)
            resource_tracker.unregister(name, "shared_memory")
    except Exception:  # no tracker (a frozen or restricted interpreter): the sweep remains
        pass


def _slices(store: _native.ColumnStore, rows: int = 1 << 16) -> Iterator[pa.RecordBatch]:
    """The store's rows a slice at a time: columns held only in the row-major block are
    copied out of it one slice ahead of whoever writes them."""
    n = store.num_rows
    for start in range(0, n, rows):
        yield store.slice(start, min(rows, n - start))


def _to_ipc(store: _native.ColumnStore) -> bytes:
    """The store's rows as an Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, store.schema) as writer:
        for batch in _slices(store):
            writer.write_batch(batch)
    return sink.getvalue().to_pybytes()
