"""The node tier (lancetorch._tier): pieces fetched once per node by real processes, pieces
that do not check out fetched again, versions, the disk budget, the folder's permissions,
and no secret in any name or file."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path

import lancetorch
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lancetorch import _lance_reads
from lancetorch._tier import NodeTier, PieceKey, default_root

ROWS = 5_000  # rows of a piece


def piece_rows(i: int) -> pa.Table:
    """Piece ``i``: rows whose every value says which row it is."""
    ids = np.arange(i * ROWS, (i + 1) * ROWS, dtype=np.int64)
    return pa.table({"id": ids, "x": ids.astype(np.float32) * 0.5, "s": [f"r{v:08d}" for v in ids]})


def key(i: int, version: int = 1, location: str = "/data/t.lance") -> PieceKey:
    return PieceKey(
        location,
        version,
        f"2026-01-0{version}T00:00:00",
        ("id", "x", "s"),
        i * ROWS,
        (i + 1) * ROWS,
    )


def logged_fetch(log: str, i: int, pause: float = 0.0):
    """A fetch of piece ``i`` that notes itself (pid and piece) in ``log``, then waits."""

    def fetch() -> pa.Table:
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {i}\n")
        time.sleep(pause)
        return piece_rows(i)

    return fetch


def fetches(log: Path) -> list[int]:
    if not log.exists():
        return []
    return [int(line.split()[1]) for line in log.read_text().splitlines()]


# -- several processes --------------------------------------------------------------------------


def _reader(root: str, log: str, order: list[int]) -> list[bool]:
    """A process's gets of the pieces in ``order``: whether each equals the piece."""
    tier = NodeTier(root, budget_bytes=1 << 30)
    return [tier.get(key(i), logged_fetch(log, i, pause=0.2)).equals(piece_rows(i)) for i in order]


def test_processes_asking_at_once_fetch_each_piece_once(tmp_path):
    root, log = tmp_path / "tier", tmp_path / "fetches.log"
    orders = [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.starmap(_reader, [(str(root), str(log), o) for o in orders])
    assert results == [[True] * 4] * 4
    assert sorted(fetches(log)) == [0, 1, 2, 3]


KILLED = """
import sys, time, pyarrow as pa
sys.path.insert(0, sys.argv[3])
from lancetorch._tier import NodeTier
from test_tier import key

def fetch():
    open(sys.argv[2], "w").close()  # the fetch has begun (the lock is held)
    time.sleep(600)
    return pa.table({})

NodeTier(sys.argv[1], budget_bytes=1 << 30).get(key(0), fetch)
"""


def test_a_process_killed_while_it_fetches_leaves_the_piece_to_the_others(tmp_path):
    root, log, started = tmp_path / "tier", tmp_path / "fetches.log", tmp_path / "started"
    tests = str(Path(__file__).parent)
    doomed = subprocess.Popen([sys.executable, "-c", KILLED, str(root), str(started), tests])
    try:
        while not started.exists():
            assert doomed.poll() is None, "the fetching process ended before it fetched"
            time.sleep(0.05)
        # A draft that a writer killed mid-write would leave behind: never read, replaced.
        path = NodeTier(root, budget_bytes=1 << 30).path_of(key(0))
        path.with_suffix(".tmp").write_bytes(b"half a piece")
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(2) as pool:
            waiting = pool.starmap_async(_reader, [(str(root), str(log), [0])] * 2)
            time.sleep(0.5)
            assert not waiting.ready()  # they wait on the killed one's lock...
            doomed.send_signal(signal.SIGKILL)
            assert waiting.get(timeout=120) == [[True], [True]]  # ...then one fetches it
    finally:
        doomed.kill()
        doomed.wait()
    assert fetches(log) == [0]
    assert not path.with_suffix(".tmp").exists()
    assert NodeTier(root).get(key(0), _never).equals(piece_rows(0))


def _never() -> pa.Table:
    raise AssertionError("fetched a piece the tier holds")


# -- pieces written behind ---------------------------------------------------------------------


def _asks(root: str, log: str, asked: str) -> tuple[bool, bool]:
    """Another process: whether ``get_now`` of piece 0 finds it busy (then ``asked`` is
    made), then whether the piece mapped after waiting for it is the piece (fetches
    logged)."""
    tier = NodeTier(root, budget_bytes=1 << 30)
    busy = tier.get_now(key(0), logged_fetch(log, 0)) is None
    Path(asked).touch()
    return busy, tier.get(key(0), logged_fetch(log, 0)).equals(piece_rows(0))


def _lock_is_free(root: str) -> bool:
    """Another process: whether piece 0's lock can be taken at once."""
    import fcntl

    path = NodeTier(root, budget_bytes=1 << 30).path_of(key(0)).with_suffix(".lock")
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


@pytest.fixture
def slow_writes(monkeypatch):
    """Writes of pieces that wait until the event returned is set."""
    import threading

    from lancetorch import _tier

    go, real = threading.Event(), _tier._write_piece
    monkeypatch.setattr(_tier, "_write_piece", lambda *a: go.wait(60) and real(*a))
    return go


def test_a_piece_written_behind_is_served_at_once_and_locked_until_written(tmp_path, slow_writes):
    """``get_behind`` returns the fetched piece from memory while it is written; another
    process finds it busy then (it does not fetch it too), and maps it once it is there."""
    from concurrent.futures import ThreadPoolExecutor

    root, log = tmp_path / "tier", tmp_path / "fetches.log"
    tier = NodeTier(root, budget_bytes=1 << 30)
    with ThreadPoolExecutor(1) as writer, multiprocessing.get_context("spawn").Pool(1) as pool:
        got = tier.get_behind(key(0), logged_fetch(str(log), 0), writer)
        assert got.equals(piece_rows(0)) and tier.pending(key(0)) is got
        assert not tier.path_of(key(0)).exists()
        marker = tmp_path / "asked"
        asked = pool.apply_async(_asks, (str(root), str(log), str(marker)))
        for _ in range(1200):  # the write goes on once the other process has asked
            if marker.exists() or asked.ready():
                break
            time.sleep(0.05)
        slow_writes.set()
        assert asked.get(60) == (True, True)
        tier.settle()
    assert tier.pending(key(0)) is None and fetches(log) == [0]
    assert tier.stats()["fetched_pieces"] == 1
    assert NodeTier(root).get(key(0), _never).equals(piece_rows(0))


def test_a_child_forked_during_a_write_behind_does_not_hold_its_lock(tmp_path, slow_writes):
    from concurrent.futures import ThreadPoolExecutor

    root = tmp_path / "tier"
    tier = NodeTier(root, budget_bytes=1 << 30)
    with ThreadPoolExecutor(1) as writer:
        tier.get_behind(key(0), lambda: piece_rows(0), writer)
        with warnings.catch_warnings():  # pylance's, where it is imported: no Lance here
            warnings.filterwarnings("ignore", message="lance is not fork-safe")
            child = os.fork()
        if child == 0:  # holds whatever it inherited until it is killed
            time.sleep(120)
            os._exit(0)
        try:
            slow_writes.set()
            tier.settle()
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                assert pool.apply(_lock_is_free, (str(root),))
        finally:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)


# -- pieces that do not check out ---------------------------------------------------------------


def test_a_truncated_piece_is_fetched_again(tmp_path):
    tier, log = NodeTier(tmp_path / "tier", budget_bytes=1 << 30), tmp_path / "fetches.log"
    tier.get(key(0), logged_fetch(str(log), 0))
    path = tier.path_of(key(0))
    for size in (path.stat().st_size - 1, 40, 0):
        with open(path, "r+b") as f:
            f.truncate(size)
        assert tier.get(key(0), logged_fetch(str(log), 0)).equals(piece_rows(0))
    assert fetches(log) == [0] * 4


FLIPPED = """
import sys
sys.path.insert(0, sys.argv[3])
from lancetorch._tier import NodeTier
from test_tier import key, logged_fetch, piece_rows
assert NodeTier(sys.argv[1]).get(key(0), logged_fetch(sys.argv[2], 0)).equals(piece_rows(0))
"""


@pytest.mark.parametrize("where", ["body", "trailer", "footer"])
def test_a_piece_with_a_flipped_byte_is_fetched_again(tmp_path, where):
    tier, log = NodeTier(tmp_path / "tier", budget_bytes=1 << 30), tmp_path / "fetches.log"
    tier.get(key(0), logged_fetch(str(log), 0))
    path = tier.path_of(key(0))
    size = path.stat().st_size
    at = {"body": size // 2, "trailer": size - 20, "footer": size - 30}[where]
    with open(path, "r+b") as f:  # in place: the same file, the same size
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0x10]))
    # A process that has not checked this file yet (this one has: it wrote it).
    tests = str(Path(__file__).parent)
    subprocess.run([sys.executable, "-c", FLIPPED, str(tier.root), str(log), tests], check=True)
    assert fetches(log) == [0, 0]
    assert tier.peek(key(0)) is not None  # the piece written again is sound


def test_a_failing_fetch_leaves_nothing_and_raises_as_it_was(tmp_path):
    tier = NodeTier(tmp_path / "tier", budget_bytes=1 << 30)
    err = OSError("table 't' (s3://bucket/t): the store refused the read")

    def failing() -> pa.Table:
        raise err

    with pytest.raises(OSError) as caught:
        tier.get(key(0), failing)
    assert caught.value is err
    assert tier.pieces() == [] and tier.peek(key(0)) is None
    assert tier.get(key(0), lambda: piece_rows(0)).equals(piece_rows(0))  # the lock was let go
    assert tier.stats()["fetched_pieces"] == 1


def test_counters_split_the_tier_from_the_fetches(tmp_path):
    tier = NodeTier(tmp_path / "tier", budget_bytes=1 << 30)
    for i in (0, 1, 0, 0, 1):
        tier.get(key(i), lambda i=i: piece_rows(i))
    n0, n1 = piece_rows(0).nbytes, piece_rows(1).nbytes
    assert tier.stats() == {
        "tier_bytes": 2 * n0 + n1,
        "tier_pieces": 3,
        "fetched_bytes": n0 + n1,
        "fetched_pieces": 2,
    }


def test_a_piece_is_mapped_not_copied(tmp_path):
    tier = NodeTier(tmp_path / "tier", budget_bytes=1 << 30)
    tier.get(key(0), lambda: piece_rows(0))
    mapped = tier.get(key(0), _never)
    address = mapped.column("id").chunk(0).buffers()[1].address
    maps = Path("/proc/self/maps").read_text().splitlines()
    (line,) = [m for m in maps if m.endswith(str(tier.path_of(key(0))))]
    lo, hi = (int(a, 16) for a in line.split()[0].split("-"))
    assert lo <= address < hi


# -- versions and the budget --------------------------------------------------------------------


def test_a_new_version_evicts_the_old_ones_pieces(tmp_path):
    tier = NodeTier(tmp_path / "tier", budget_bytes=1 << 30)
    old = [tier.get(key(i, version=1), lambda i=i: piece_rows(i)) for i in range(2)]
    tier.get(key(0, version=2), lambda: piece_rows(0).slice(0, 7))
    assert tier.peek(key(0, version=1)) is None and tier.peek(key(1, version=1)) is None
    assert not tier.path_of(key(0, version=1)).parent.exists()
    assert all(t.equals(piece_rows(i)) for i, t in enumerate(old))  # mapped: still readable
    # A reader of the old version fetches its own pieces, and leaves the newer ones be.
    assert tier.get(key(1, version=1), lambda: piece_rows(1)).equals(piece_rows(1))
    assert tier.get(key(0, version=2), _never).equals(piece_rows(0).slice(0, 7))
    # Another location is another table: untouched by this one's versions.
    tier.get(key(0, location="s3://b/other"), lambda: piece_rows(3))
    tier.get(key(0, version=3), lambda: piece_rows(0))
    assert tier.get(key(0, location="s3://b/other"), _never).equals(piece_rows(3))


def test_a_full_budget_evicts_the_least_recently_used(tmp_path):
    size = _piece_file_size(tmp_path)
    tier = NodeTier(tmp_path / "tier", budget_bytes=3 * size)
    log = tmp_path / "fetches.log"
    for i in range(3):
        tier.get(key(i), logged_fetch(str(log), i))
        time.sleep(0.02)  # file times are as fine as the kernel's clock tick
    tier.get(key(0), logged_fetch(str(log), 0))  # used again: piece 1 is now the oldest
    time.sleep(0.02)
    tier.get(key(3), logged_fetch(str(log), 3))
    assert [tier.peek(key(i)) is not None for i in range(4)] == [True, False, True, True]
    assert tier.held_bytes() <= tier.budget_bytes
    assert fetches(log) == [0, 1, 2, 3]


def test_a_piece_larger_than_the_budget_is_served_and_not_kept(tmp_path):
    tier = NodeTier(tmp_path / "tier", budget_bytes=100)
    held = [tier.get(key(i), lambda i=i: piece_rows(i)) for i in range(2)]
    assert [t.equals(piece_rows(i)) for i, t in enumerate(held)] == [True, True]
    assert tier.pieces() == []
    assert [p.name for p in tier.path_of(key(0)).parent.iterdir() if p.suffix == ".tmp"] == []


def _piece_file_size(tmp_path) -> int:
    probe = NodeTier(tmp_path / "probe", budget_bytes=1 << 30)
    probe.get(key(0), lambda: piece_rows(0))
    return probe.path_of(key(0)).stat().st_size


# -- the folder ---------------------------------------------------------------------------------


def test_the_folder_is_made_owner_only_and_its_files_too(tmp_path):
    root = tmp_path / "a" / "b" / "tier"
    tier = NodeTier(root, budget_bytes=1 << 30)
    tier.get(key(0), lambda: piece_rows(0))
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700


def test_a_folder_others_may_write_is_refused(tmp_path):
    root = tmp_path / "tier"
    root.mkdir()
    root.chmod(0o777)
    with pytest.raises(PermissionError, match=f"{root}.*chmod 700"):
        NodeTier(root)
    root.chmod(0o700)
    assert NodeTier(root, budget_bytes=10).root == root


def test_a_file_for_a_folder_is_refused(tmp_path):
    (tmp_path / "tier").write_text("")
    with pytest.raises(ValueError, match="is not a directory"):
        NodeTier(tmp_path / "tier")


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_folder_of_another_user_is_refused(tmp_path):
    root = tmp_path / "tier"
    root.mkdir(mode=0o700)
    os.chown(root, 12345, 12345)
    with pytest.raises(PermissionError, match="belongs to user id 12345"):
        NodeTier(root)


def test_the_default_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("LANCETORCH_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "lancetorch" / "tier"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_root() == tmp_path / "home" / ".cache" / "lancetorch" / "tier"
    monkeypatch.setenv("LANCETORCH_CACHE_DIR", str(tmp_path / "mine"))
    assert NodeTier(budget_bytes=0).root == tmp_path / "mine"
    assert (tmp_path / "mine").is_dir()


def test_the_default_budget_is_half_the_free_space(tmp_path):
    import shutil

    free = shutil.disk_usage(tmp_path).free
    budget = NodeTier(tmp_path / "tier").budget_bytes
    assert abs(budget - free // 2) < free // 100  # other writers may change the free space


@pytest.mark.parametrize("budget", [-1, 1.5, "1GB", True])
def test_a_budget_that_is_not_bytes_is_refused(tmp_path, budget):
    with pytest.raises(ValueError, match=f"budget_bytes.*{budget!r}"):
        NodeTier(tmp_path / "tier", budget_bytes=budget)


def test_no_secret_in_a_name_or_a_file(tmp_path):
    secrets = ["AKIDSECRETUSER", "hunter2pass", "SIGNATURE0123", "fragtoken"]
    location = (
        f"s3://{secrets[0]}:{secrets[1]}@bucket/tables/t.lance"
        f"?X-Amz-Signature={secrets[2]}#{secrets[3]}"
    )
    tier = NodeTier(tmp_path / "tier", budget_bytes=1 << 30)
    k = PieceKey(location, 4, "2026-02-03T04:05:06", ("id", "x", "s"), 0, ROWS)
    assert k.location == "s3://bucket/tables/t.lance"
    tier.get(k, lambda: piece_rows(0))
    assert tier.get(PieceKey("s3://bucket/tables/t.lance", *astuple_tail(k)), _never)
    for path in tier.root.rglob("*"):
        text = str(path).encode() + (path.read_bytes() if path.is_file() else b"")
        assert not any(s.encode() in text for s in secrets), path


def astuple_tail(k: PieceKey) -> tuple:
    return (k.version, k.written, k.columns, k.start, k.stop)


def test_a_piece_key_refuses_rows_out_of_order():
    with pytest.raises(ValueError, match="start=5, stop=2"):
        PieceKey("/t", 1, "", ("a",), 5, 2)


# -- disk tables through the tier ---------------------------------------------------------------

TABLE_ROWS = 300_000  # three pieces of a disk table's cache


def _disk_table(folder: Path) -> pa.Table:
    ids = np.arange(TABLE_ROWS, dtype=np.int64)
    data = pa.table({"id": ids, "x": (ids % 1000).astype(np.float32), "y": ids * 3})
    lancetorch.connect(folder / "db").create_table("t", data)
    return data


def _read_all(db: str, tier: str, rows: list[int]) -> tuple[list[int], dict[str, int]]:
    """A process's read of ``rows`` of table t through a cache over the tier ``tier``."""
    t = lancetorch.connect(db).open_table("t", cache=True, cache_dir=tier)
    got = t.__getitems__(rows).column("y").to_pylist()
    return got, t._backend.tier_stats()


def test_processes_reading_a_disk_table_fetch_each_piece_once(tmp_path):
    data = _disk_table(tmp_path)
    rows = [[5, 299_999, 131_072], [0, 131_071, 262_144, 7]]
    ctx = multiprocessing.get_context("spawn")
    args = [(str(tmp_path / "db"), str(tmp_path / "tier"), r) for r in rows]
    with ctx.Pool(2) as pool:
        results = pool.starmap(_read_all, args)
    for asked, (got, _) in zip(rows, results):
        assert got == data.column("y").take(asked).to_pylist()
    assert sum(stats["fetched_pieces"] for _, stats in results) == 3
    assert sum(stats["tier_pieces"] for _, stats in results) == 3
    assert len(NodeTier(tmp_path / "tier").pieces()) == 3


def test_a_disk_tables_cache_is_the_mapped_pieces(tmp_path):
    # An embedding and an id: columns few and wide enough to be read from the pieces.
    vec = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(TABLE_ROWS * 32, np.float32)), 32)
    data = pa.table({"id": np.arange(TABLE_ROWS), "vec": vec})
    lancetorch.connect(tmp_path / "db").create_table("t", data)
    t = lancetorch.connect(tmp_path / "db").open_table("t", cache=True, cache_dir=tmp_path / "tr")
    t.__getitems__([0])
    store = t._backend._cached[1]
    assert store.block_columns == []  # no row-major copy: the Arrow arrays over the files
    files = {str(p) for p, _ in NodeTier(tmp_path / "tr").pieces()}
    maps = [line.split() for line in Path("/proc/self/maps").read_text().splitlines()]
    mapped = {m[-1] for m in maps if len(m) == 6} & files
    assert mapped == files


def test_workers_map_the_tier_instead_of_a_shared_copy(tmp_path):
    from multiprocessing.reduction import ForkingPickler

    _disk_table(tmp_path)
    t = lancetorch.connect(tmp_path / "db").open_table("t", cache_dir=tmp_path / "tier")
    blob = bytes(ForkingPickler.dumps(t))
    assert t._backend._shared._path is None  # no shared-memory copy was written
    back = pickle.loads(blob)
    assert back._backend._cached is not None and back._backend._cached[1].num_rows == TABLE_ROWS
    assert back.__getitems__([299_998]).to_pydict() == t.__getitems__([299_998]).to_pydict()


FORKS = """
import multiprocessing, sys
import lancetorch
import concurrent.futures.thread  # its fork hook registered after lancetorch's: it runs first

table = lancetorch.connect(sys.argv[1]).open_table("t", cache_dir=sys.argv[2])
child = multiprocessing.get_context("fork").Process(target=print, args=("child",))
child.start()  # lancetorch fills the cache through the tier before the fork
child.join()
print(table._backend._cached is not None)
"""


def test_a_fork_fills_a_cache_through_the_tier_without_a_hang(tmp_path):
    """The fill before a fork takes the tier's pieces one after another: a submit to a
    thread pool there waits for a lock concurrent.futures' own fork hook holds."""
    _disk_table(tmp_path)
    run = subprocess.run(
        [sys.executable, "-c", FORKS, str(tmp_path / "db"), str(tmp_path / "tier")],
        capture_output=True,
        text=True,
        timeout=120,  # (it hung for good)
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["child", "True"]
    assert len(NodeTier(tmp_path / "tier").pieces()) == 3


def test_cache_dir_false_keeps_no_tier(tmp_path, monkeypatch):
    monkeypatch.setenv("LANCETORCH_CACHE_DIR", str(tmp_path / "default"))
    _disk_table(tmp_path)
    t = lancetorch.connect(tmp_path / "db").open_table("t", cache=True, cache_dir=False)
    assert t.__getitems__([3]).column("y").to_pylist() == [9]
    assert not (tmp_path / "default").exists()
    assert set(t._backend.tier_stats().values()) == {0}
    # cache=False keeps no copy of any kind, the tier's included: every read goes to Lance.
    off = lancetorch.connect(tmp_path / "db").open_table("t", cache=False, cache_dir=tmp_path / "f")
    assert off.__getitems__([4, 299_999]).column("y").to_pylist() == [12, 3 * 299_999]
    assert not (tmp_path / "f").exists()
    on = lancetorch.connect(tmp_path / "db").open_table("t", cache=True)  # the default folder
    assert on.__getitems__([3]).column("y").to_pylist() == [9]
    assert len(NodeTier(tmp_path / "default").pieces()) == 3


def test_cache_dir_of_another_type_is_refused(tmp_path):
    _disk_table(tmp_path)
    with pytest.raises(TypeError, match="cache_dir=3 is int"):
        lancetorch.connect(tmp_path / "db").open_table("t", cache_dir=3)


def _small_table(folder: Path) -> lancetorch.Connection:
    db = lancetorch.connect(folder / "small")
    db.create_table("t", {"id": list(range(10))})
    return db


@pytest.mark.parametrize(
    ("budget", "error", "says"),
    [
        (-1, ValueError, "cache_dir_budget=-1 must be 0 or more"),
        (1.5, TypeError, "cache_dir_budget=1.5 is float"),
        ("1000", TypeError, "cache_dir_budget='1000' is str"),
        (True, TypeError, "cache_dir_budget=True is bool"),
    ],
)
def test_a_cache_dir_budget_that_is_not_bytes_is_refused(tmp_path, budget, error, says):
    with pytest.raises(error, match=says):
        _small_table(tmp_path).open_table("t", cache_dir_budget=budget)


def test_a_cache_dir_budget_without_a_tier_is_refused(tmp_path):
    with pytest.raises(ValueError, match="cache_dir_budget=100 with cache_dir=False"):
        _small_table(tmp_path).open_table("t", cache_dir=False, cache_dir_budget=100)


def test_a_cache_dir_budget_evicts_the_least_recently_used_pieces(tmp_path):
    """A budget of one and a half full pieces: the cache's fill (its pieces fetched
    together) keeps the tier within it (the pieces removed stay readable while mapped),
    every row read right; another handle fetches again what was removed, and keeps within
    it too."""
    data = _disk_table(tmp_path)
    piece = 131_072 * 20  # bytes of a full piece's rows: int64, float32 and int64
    budget = piece * 3 // 2
    db = lancetorch.connect(tmp_path / "db")
    t = db.open_table("t", cache=True, cache_dir=tmp_path / "tier", cache_dir_budget=budget)
    rows = [0, 131_071, 131_072, 299_999]
    assert t.__getitems__(rows).column("y").to_pylist() == data.column("y").take(rows).to_pylist()
    tier = NodeTier(tmp_path / "tier")
    held = tier.pieces()
    assert tier.held_bytes() <= budget
    assert 1 <= len(held) < 3, "a piece went to make room for the others"
    before = t._backend.tier_stats()["fetched_pieces"]  # (one tier a folder and budget here)
    again = db.open_table("t", cache=True, cache_dir=tmp_path / "tier", cache_dir_budget=budget)
    assert again.__getitems__(rows).to_pydict() == t.__getitems__(rows).to_pydict()
    assert again._backend.tier_stats()["fetched_pieces"] > before, "the first piece, again"
    assert tier.held_bytes() <= budget


def _budget_in_worker(blob: bytes) -> tuple[int, list[int]]:
    """In another process: the table unpickled, the budget of its node tier and rows read."""
    table = pickle.loads(blob)
    got = table.__getitems__([1, 299_998]).column("id").to_pylist()
    tier = table._backend.tier()
    return tier.budget_bytes, got


def test_a_cache_dir_budget_travels_to_other_processes(tmp_path):
    _disk_table(tmp_path)
    budget = 123_456_789
    db = lancetorch.connect(tmp_path / "db")
    t = db.open_table("t", cache_budget=1, cache_dir=tmp_path / "tier", cache_dir_budget=budget)
    assert t._backend.tier().budget_bytes == budget
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(_budget_in_worker, (pickle.dumps(t),)) == (budget, [1, 299_998])


def test_a_new_version_of_a_disk_table_is_a_new_key(tmp_path):
    _disk_table(tmp_path)
    db = lancetorch.connect(tmp_path / "db")
    old = db.open_table("t", cache=True, cache_dir=tmp_path / "tier")
    assert len(old.__getitems__(list(range(10)))) == 10
    writer = db.open_table("t", cache=False, cache_dir=False)
    writer.add({"id": [TABLE_ROWS], "x": [0.5], "y": [-1]})
    new = db.open_table("t", cache=True, cache_dir=tmp_path / "tier")
    assert new.__getitems__([-1, 0]).column("y").to_pylist() == [-1, 0]
    tier = NodeTier(tmp_path / "tier")
    versions = {p.parent for p, _ in tier.pieces()}
    assert len(versions) == 1 and len(tier.pieces()) == 3  # the old version's pieces went
    assert old.__getitems__([-1]).column("y").to_pylist() == [3 * (TABLE_ROWS - 1)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.integers(0, 999), max_size=300),
    held=st.sets(st.integers(0, 9)),
    fill=st.booleans(),
)
def test_windowed_reads_take_from_the_tier_as_lance_would(tmp_path_factory, rows, held, fill):
    """``read_rows`` with pieces of 100 rows, some held by the tier: the rows of a take."""
    folder = tmp_path_factory.mktemp("windows")
    ids = np.arange(1000, dtype=np.int64)
    data = pa.table({"id": ids, "s": [f"s{i}" for i in ids], "z": ids * 2})
    lancetorch.connect(folder / "db").create_table("t", data)
    db = lancetorch.connect(folder / "db")  # a budget no cache fits: rows are read by windows
    t = db.open_table("t", cache_budget=0, cache_dir=folder / "tier")
    backend = t._backend
    # Too small a budget for the columns: pieces held are read, no piece is fetched.
    tier = NodeTier(folder / "tier", budget_bytes=1 << 30 if fill else 1000)
    saved = _lance_reads.PIECE_ROWS
    _lance_reads.PIECE_ROWS = 100
    try:
        for p in held:
            key = backend.piece_key(["id", "s", "z"], 100 * p, 100 * p + 100)
            NodeTier(folder / "tier", budget_bytes=1 << 30).get(
                key, lambda p=p: data.slice(100 * p, 100)
            )
        backend._node_tier = tier
        store, places = backend.read_rows(np.array(rows, dtype=np.int64), ["z", "id"])
    finally:
        _lance_reads.PIECE_ROWS = saved
    got = store.take(pa.array(places))
    want = data.select(["z", "id"]).take(pa.array(rows, type=pa.int64()))
    assert got.to_pydict() == want.to_pydict()
    touched = {r // 100 for r in rows}
    stats = tier.stats()
    assert stats["tier_pieces"] == len(touched & held)
    # Every piece touched comes from the tier, fetched once if it was not there (with room).
    assert stats["fetched_pieces"] == (len(touched - held) if fill else 0)


def test_no_secret_of_a_tables_storage_options_reaches_the_tier(tmp_path):
    _disk_table(tmp_path)
    secret = "Sup3rSecretValue42"
    db = lancetorch.connect(tmp_path / "db", storage_options={"secret_key": secret})
    t = db.open_table("t", cache=True, cache_dir=tmp_path / "tier")
    t.__getitems__([1, 2])
    files = list((tmp_path / "tier").rglob("*"))
    assert any(p.suffix == ".arrow" for p in files)
    for path in files:
        assert secret not in str(path)
        assert not path.is_file() or secret.encode() not in path.read_bytes()


def test_a_store_that_fails_while_the_tier_fills_is_a_named_error_and_leaves_no_piece(tmp_path):
    from lancetorch import StorageReadError

    # (A data file gone under a larger table surfaces from Lance as an ArrowInvalid that
    # lancetorch does not yet take for a storage error, with or without the tier.)
    db = lancetorch.connect(tmp_path / "db")
    db.create_table("t", {"id": list(range(1000))})
    t = db.open_table("t", cache=True, cache_dir=tmp_path / "tr")
    for data_file in (tmp_path / "db" / "t.lance" / "data").iterdir():
        data_file.unlink()
    with pytest.raises(StorageReadError, match="table 't'.*sequential scan of row offsets 0 to"):
        t.__getitems__([1])
    assert NodeTier(tmp_path / "tr").pieces() == []
    assert not [p for p in (tmp_path / "tr").rglob("*.tmp")]


def test_windowed_epochs_after_the_first_read_the_node_tier_not_the_store(tmp_path):
    """A table over its memory budget, read by windows through the tier: the first epoch
    fetches each piece once, later epochs nothing from the store; every row once an epoch
    either way."""
    from lancetorch.loader import Loader

    _disk_table(tmp_path)
    db = lancetorch.connect(tmp_path / "db")
    table = db.open_table("t", cache_budget=1, cache_dir=tmp_path / "tier")
    loader = Loader(table, 4096, seed=1, per_column=True, window_rows=50_000, clump_size=512)
    epochs = []
    for _ in range(2):
        ids = sorted(int(v) for batch in loader for v in batch["id"].tolist())
        assert ids == list(range(TABLE_ROWS))
        epochs.append(loader.stats()["store_bytes"])
    assert epochs[0] > 0  # Lance's encoded bytes of the pieces: fewer than the Arrow ones
    assert epochs[1] == epochs[0], "the second epoch read nothing from the store"
    assert table._backend.tier_stats()["fetched_pieces"] == 3


def test_a_cache_of_many_narrow_columns_keeps_a_row_major_copy(tmp_path):
    """Sixteen float32 columns and a label are read about ten times faster from a row-major
    block than column after column from the mapped pieces: such a cache keeps its own block
    (the tier still spares the store); an embedding and a label stay in the shared pieces."""
    rng = np.random.default_rng(0)
    ROWS = 1 << 16  # the least a row-major block is made for
    narrow = {f"f{i}": rng.random(ROWS, dtype=np.float32) for i in range(16)}
    narrow["label"] = np.arange(ROWS)
    vec = pa.FixedSizeListArray.from_arrays(pa.array(rng.random(ROWS * 64, dtype=np.float32)), 64)
    db = lancetorch.connect(tmp_path / "db")
    db.create_table("narrow", pa.table(narrow))
    db.create_table("wide", pa.table({"vec": vec, "label": np.arange(ROWS)}))
    blocks = {}
    for name in ("narrow", "wide"):
        t = db.open_table(name, cache_dir=tmp_path / "tier")
        assert t.__getitems__([ROWS - 1, 7]).column("label").to_pylist() == [ROWS - 1, 7]
        blocks[name] = t._backend._cached[1].block_columns
    assert blocks == {"narrow": list(range(17)), "wide": []}


def test_a_kept_mapping_goes_with_its_file_and_at_most_sixteen_are_kept(tmp_path):
    """A process keeps the pieces it mapped, each while the file at its path is the one it
    mapped: a piece removed (evicted) is not served from the mapping kept, nor kept past the
    next mapping made; one written anew is mapped anew; no more than 16 are kept."""
    from lancetorch import _piece_files

    tier = NodeTier(tmp_path / "tier", budget_bytes=1 << 30)
    tier.get(key(0), lambda: piece_rows(0))
    assert tier.peek(key(0)).equals(piece_rows(0))
    path = str(tier.path_of(key(0)))
    assert path in _piece_files._kept
    os.unlink(path)
    assert tier.peek(key(0)) is None
    tier.get(key(0), lambda: piece_rows(7))  # the same key written anew (other rows)
    assert tier.peek(key(0)).equals(piece_rows(7))
    tier.peek(key(0))
    os.unlink(path)
    tier.get(key(1), lambda: piece_rows(1))
    tier.peek(key(1))  # a mapping made: the removed piece's is dropped
    assert path not in _piece_files._kept
    for i in range(2, 22):
        tier.get(key(i), lambda i=i: piece_rows(i))
        assert tier.peek(key(i)).equals(piece_rows(i))
    assert len(_piece_files._kept) == _piece_files._KEPT == 16


def test_the_native_file_checksum_is_zlibs(tmp_path):
    import zlib

    from lancetorch._native import crc32_of_file

    data = np.random.default_rng(0).integers(0, 256, (3 << 20) + 5, dtype=np.uint8).tobytes()
    path = tmp_path / "f"
    path.write_bytes(data + b"tail")
    with open(path, "rb") as f:
        assert crc32_of_file(f.fileno(), len(data)) == zlib.crc32(data)
        with pytest.raises(OSError):
            crc32_of_file(f.fileno(), len(data) + 5)  # past its end


def test_pieces_hold_16_to_32_mib_of_a_tables_rows():
    """Pieces are sized by a row's bytes: the fixed-width columns', or what the table's files
    store a row where more (text, images); 16 to 131,072 rows, a power of two."""
    wide = pa.schema([("v", pa.list_(pa.float32(), 128)), ("label", pa.int64())])  # 520 B
    rows = _lance_reads.piece_rows(wide)
    assert rows == 1 << 15 and 16 << 20 < rows * 520 <= 32 << 20
    assert _lance_reads.piece_rows(pa.schema([("x", pa.int8())])) == 1 << 17
    images = pa.schema([("image", pa.binary()), ("label", pa.int64())])
    assert _lance_reads.piece_rows(images, stored=100_000) == 256  # 25.6 MB
    assert _lance_reads.piece_rows(images, stored=50 << 20) == 16
    assert _lance_reads.piece_rows(wide, stored=1) == rows  # the fixed width counts
