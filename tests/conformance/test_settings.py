"""Settings: each one changes the result as documented on every path that takes it, or is
refused. And a seed's order is the same in another process."""

from __future__ import annotations

import functools
import io
import json
import subprocess
import sys
from pathlib import Path

import lancetorch
import numpy as np
import pyarrow as pa
import pytest
import torch
from lancetorch.decode import Image, Text, Tokens
from lancetorch.loader import Loader
from lancetorch.permutation import Permutation, permutation_builder
from lancetorch.sampler import BatchSampler
from lancetorch.streaming import StreamingDataset
from lancetorch.util import to_batch
from torch.utils.data import DataLoader, default_collate

from .engine import N

ROWS = 120


def _gradient(i: int) -> bytes:
    """A 16x12 PNG: red is the row's id, green the column, blue the line, so a crop, a flip
    or a resize shows in the pixels."""
    from PIL import Image as PILImage

    pixels = np.zeros((12, 16, 3), np.uint8)
    pixels[..., 0] = i % 256
    pixels[..., 1] = np.arange(16)[None, :] * 16
    pixels[..., 2] = np.arange(12)[:, None] * 20
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def table():
    ids = np.arange(ROWS, dtype=np.int64)
    data = pa.table(
        {
            "id": ids,
            "tokens": pa.array([list(range(i % 7 + 1)) for i in ids], pa.list_(pa.int32())),
            "text": pa.array([f"row {i}" for i in ids]),
            "image": pa.array([_gradient(int(i)) for i in ids], pa.binary()),
        }
    )
    return lancetorch.connect("memory://").create_table("s", data)


def _upper(texts: list[str]) -> list[str]:
    return [t.upper() for t in texts]


# Each spec beside the default it departs from: the two must give different outputs.
SPECS = {
    "tokens-max_length": ({"tokens": Tokens(max_length=3)}, {"tokens": Tokens()}),
    "tokens-pad_to_max": (
        {"tokens": Tokens(max_length=9, pad_to_max_length=True)},
        {"tokens": Tokens(max_length=9)},
    ),
    "tokens-pad_value": ({"tokens": Tokens(pad_value=-5)}, {"tokens": Tokens()}),
    "tokens-pack": (
        {"tokens": Tokens(max_length=4, pack=True)},
        {"tokens": Tokens(max_length=4)},
    ),
    "text-tokenizer": ({"text": Text(tokenizer=_upper)}, {"text": Text()}),
    "image-nhwc": (
        {"image": Image(size=(4, 6), layout="NHWC")},
        {"image": Image(size=(4, 6))},
    ),
    "image-size": ({"image": Image(size=(3, 5))}, {"image": Image(size=(4, 6))}),
    "image-random": (
        {"image": Image(size=(4, 6), crop="random", seed=3)},
        {"image": Image(size=(4, 6))},
    ),
    "image-random-flip": (
        {"image": Image(size=(4, 6), crop="random", seed=3, flip=True)},
        {"image": Image(size=(4, 6), crop="random", seed=3)},
    ),
    "image-seed": (
        {"image": Image(size=(4, 6), crop="random", seed=4)},
        {"image": Image(size=(4, 6), crop="random", seed=3)},
    ),
}
PATHS = ["loader", "torch_dict", "collate"]


def _read(table, decode: dict, path: str) -> list[dict]:
    """The table's first 100 rows in order, as ``path`` gives them with ``decode``."""
    column = next(iter(decode))
    if path == "loader":
        perm = Permutation.identity(table).select_columns(["id", column])
        return list(Loader(perm, 50, shuffle=False, per_column=True, decode=decode, prefetch=1))[:2]
    if path == "torch_dict":
        perm = (
            Permutation.identity(table)
            .select_columns(["id", column])
            .with_format("torch_dict", decode=decode)
        )
        return [default_collate(list(b)) for b in perm.iter(50)][:2]
    collate = functools.partial(to_batch, decode=decode)
    perm = Permutation.identity(table).select_columns(["id", column]).with_format("arrow")
    from lancetorch.util import passthrough

    loader = DataLoader(perm, batch_size=50, collate_fn=passthrough)
    return [collate(b) for b in loader][:2]


def _reference(table, decode: dict) -> list[dict]:
    column = next(iter(decode))
    arrow = table.to_arrow().select(["id", column])
    return [to_batch(arrow.slice(k * 50, 50), decode=decode) for k in range(2)]


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


@pytest.mark.parametrize(
    "name, path",
    [pytest.param(name, path, id=f"{name}-{path}") for name in SPECS for path in PATHS],
)
def test_a_decode_setting_gives_to_batch_s_output_on_every_path(table, name, path):
    decode, default = SPECS[name]
    if name == "tokens-pack" and path == "torch_dict":
        with pytest.raises(ValueError, match="packs its values into blocks"):
            _read(table, decode, path)
        return
    got, want = _read(table, decode, path), _reference(table, decode)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert sorted(g) == sorted(w), f"outputs {sorted(g)}, to_batch gives {sorted(w)}"
        for key in w:
            assert _same(g[key], w[key]), f"{key} differs from to_batch's"
    # And the setting changes the result: the default gives something else.
    assert not all(_same(g, d) for g, d in zip(got, _reference(table, default))), (
        f"{name} gives what the default gives"
    )


# --------------------------------------------------------------------------------------------
# Refused settings


def test_decode_goes_with_torch_dict_only(table):
    for fmt in ("arrow", "python", "python_col", "numpy", "pandas", "polars", "torch"):
        with pytest.raises(ValueError, match="torch_dict"):
            Permutation.identity(table).with_format(fmt, decode={"text": Text()})


def test_a_list_column_needs_per_column_in_the_loader(table):
    with pytest.raises(TypeError, match="per_column=True"):
        Loader(table, 10)


def test_a_decode_spec_must_name_a_column_read(table):
    with pytest.raises(ValueError, match="'nope'"):
        Loader(table, 10, per_column=True, decode={"nope": Text()})


@pytest.mark.parametrize("batch_size", [2.5, "64"], ids=["float", "str"])
def test_loader_refuses_a_batch_size_that_is_not_an_int(table, batch_size):
    perm = Permutation.identity(table).select_columns(["id"])
    with pytest.raises((TypeError, ValueError), match="batch_size"):
        Loader(perm, batch_size)


def test_a_spec_class_in_place_of_an_instance_is_refused_at_once(table):
    with pytest.raises(TypeError, match="Image"):
        Loader(table, 10, per_column=True, decode={"image": Image})


def test_image_size_as_one_int_is_honoured_or_refused_by_name():
    try:
        spec = Image(size=4)
    except (TypeError, ValueError) as err:
        assert "size" in str(err)
        return
    assert tuple(spec.size) == (4, 4)


def test_flip_with_the_center_crop_is_honoured_or_refused(table):
    try:
        flipped = {"image": Image(size=(4, 6), flip=True)}
    except ValueError:
        return
    batch = _reference(table, flipped)[0]["image"]
    plain = _reference(table, {"image": Image(size=(4, 6))})[0]["image"]
    assert not torch.equal(batch, plain), "flip=True with the center crop changed nothing"


def test_loader_over_a_permutation_applies_or_refuses_its_transform(table):
    calls = []

    def transform(batch):
        calls.append(batch.num_rows)
        return batch

    perm = Permutation.identity(table).select_columns(["id"]).with_transform(transform)
    try:
        batches = list(Loader(perm, 40, seed=0))
    except (TypeError, ValueError):
        return
    assert batches and calls, "with_transform's function was never called"


def test_loader_over_a_permutation_applies_or_refuses_its_decode(table):
    """The same cause as item 3: with_format(..., decode=) is the view's transform too."""
    perm = (
        Permutation.identity(table)
        .select_columns(["id", "text"])
        .with_format("torch_dict", decode={"text": Text(tokenizer=_upper)})
    )
    try:
        batch = next(iter(Loader(perm, 10, shuffle=False, per_column=True)))
    except (TypeError, ValueError):
        return
    assert batch["text"] == [f"ROW {i}" for i in range(10)], "the view's tokenizer was not run"


def test_loader_over_a_permutation_gives_its_rowid_or_refuses(table):
    """select_columns([..., "_rowid"]) adds each row's row id (README "Permutations"); the
    DataLoader over the view gives it, so the Loader must too, or say it cannot."""
    perm = Permutation.identity(table).select_columns(["id", "_rowid"])
    assert perm.with_format("arrow").take_offsets([3]).column_names == ["id", "_rowid"]
    try:
        batch = next(iter(Loader(perm, 10, shuffle=False, per_column=True)))
    except (TypeError, ValueError) as err:
        assert "_rowid" in str(err)
        return
    assert list(batch) == ["id", "_rowid"], f"the Loader gave {list(batch)}"
    assert batch["_rowid"].tolist() == list(range(10))


def test_a_permutation_table_with_a_row_twice_is_refused(table):
    dup = lancetorch.connect("memory://").create_table(
        "p",
        pa.table(
            {
                "row_id": pa.array([0, 0, 1], pa.uint64()),
                "split_id": pa.array([0, 0, 0], pa.uint64()),
            }
        ),
    )
    with pytest.raises(ValueError, match="row"):
        Permutation.from_tables(table, dup)


def test_a_streaming_state_from_another_epoch_is_refused(table):
    ds = StreamingDataset(table, num_splits=2, shuffle_seed=1, epoch=0, columns=["id"])
    it = iter(ds)
    for _ in range(10):
        next(it)
    state = ds.state_dict()
    del it
    later = StreamingDataset(table, num_splits=2, shuffle_seed=1, epoch=1, columns=["id"])
    with pytest.raises(ValueError, match="epoch"):
        later.load_state_dict(state)


def test_a_sampler_state_over_other_rows_is_refused():
    s = BatchSampler(100, 10, seed=0, world_size=1)
    next(iter(s))
    with pytest.raises(ValueError):
        BatchSampler(90, 10, seed=0, world_size=1).load_state_dict(s.state_dict())


def test_a_windowed_state_does_not_resume_a_read_from_memory(tmp_path):
    db = lancetorch.connect(tmp_path)
    db.create_table("w", pa.table({"id": np.arange(400), "x": np.arange(400) * 2.0}))
    windows = Loader(db.open_table("w", cache_budget=1), 50, seed=0, window_rows=64, clump_size=2)
    it = iter(windows)
    next(it)
    state = windows.state_dict()
    del it
    with pytest.raises(ValueError):
        Loader(db.open_table("w"), 50, seed=0).load_state_dict(state)


def test_streaming_splits_must_divide_among_ranks(table):
    with pytest.raises(ValueError, match="num_splits"):
        StreamingDataset(table, num_splits=5, world_size=2)


@pytest.mark.slow
def test_fork_over_an_uncached_disk_table_is_refused_in_the_worker(tmp_path):
    db = lancetorch.connect(tmp_path)
    db.create_table("f", pa.table({"id": np.arange(100)}))
    t = db.open_table("f", cache=False)
    from lancetorch.util import tbl_to_tensor

    loader = DataLoader(
        t, batch_size=10, collate_fn=tbl_to_tensor, num_workers=1, multiprocessing_context="fork"
    )
    with pytest.raises(RuntimeError, match="spawn"):
        list(loader)


# --------------------------------------------------------------------------------------------
# Orders are the same in another process


def _orders(n: int) -> dict:
    """Three seeded orders over an n-row memory table: BatchSampler's, the builder's shuffle,
    StreamingDataset's stream."""
    t = lancetorch.connect("memory://").create_table("o", pa.table({"id": np.arange(n)}))
    perm = permutation_builder(t).shuffle(seed=7).execute()
    stream = StreamingDataset(t, num_splits=3, shuffle_seed=7, epoch=3)
    return {
        "sampler": BatchSampler(n, 1, seed=7, world_size=1).order(3).tolist(),
        "builder": perm.to_arrow()["row_id"].to_pylist(),
        "streaming": [int(r["id"]) for r in stream],
    }


_CHILD = (
    "import json, sys; sys.path.insert(0, sys.argv[1]); "
    "from conformance.test_settings import _orders; "
    "print(json.dumps(_orders(int(sys.argv[2]))))"
)


def test_a_seed_gives_the_same_order_in_another_process():
    tests = str(Path(__file__).resolve().parents[1])
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, tests, str(N)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    theirs = json.loads(child.stdout.strip().splitlines()[-1])
    ours = _orders(N)
    for key in ours:
        assert ours[key] == theirs[key], f"{key}: another process read another order"
        assert sorted(ours[key]) == list(range(N if key != "streaming" else N - N % 3))
