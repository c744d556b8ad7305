"""Decoding specs (token lists, text) through to_batch, the torch_dict format and the Loader,
checked against plain Python references; features/target batches."""

from __future__ import annotations

import functools
import pickle

import lancetorch
import numpy as np
import pyarrow as pa
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lancetorch.decode import DecodeSpec, Image, Text, Tokens
from lancetorch.loader import Loader
from lancetorch.permutation import Permutation
from lancetorch.util import to_batch

PROPS = settings(max_examples=60, deadline=None)

INT_TYPES = [
    pa.int8(),
    pa.int16(),
    pa.int32(),
    pa.int64(),
    pa.uint8(),
    pa.uint16(),
    pa.uint32(),
    pa.uint64(),
]


def reference_padding(rows, max_length, pad, to_max):
    """Plain Python: what Tokens must give."""
    lengths = [0 if r is None else len(r) for r in rows]
    longest = max(lengths, default=0)
    width = (max_length if to_max else min(longest, max_length)) if max_length else longest
    out = [((r or [])[:width] + [pad] * width)[:width] for r in rows]
    return out, [min(n, width) for n in lengths]


@PROPS
@given(
    kind=st.sampled_from(INT_TYPES),
    list_kind=st.sampled_from(["list", "large_list", "list_view"]),
    rows=st.lists(st.none() | st.lists(st.integers(0, 100), max_size=12), min_size=1, max_size=20),
    max_length=st.none() | st.integers(1, 15),
    to_max=st.booleans(),
    pad=st.integers(0, 127),
)
def test_tokens_pad_as_the_reference(kind, list_kind, rows, max_length, to_max, pad):
    if to_max and max_length is None:
        to_max = False
    list_type = {"list": pa.list_, "large_list": pa.large_list, "list_view": pa.list_view}
    array = pa.array(rows, list_type[list_kind](kind))
    out = to_batch(
        pa.record_batch({"t": array}),
        {"t": Tokens(max_length=max_length, pad_value=pad, pad_to_max_length=to_max)},
    )
    want, lengths = reference_padding(rows, max_length, pad, to_max)
    assert out["t"].shape == (len(rows), len(want[0]) if want else 0)
    assert out["t"].tolist() == want
    assert out["t_length"].tolist() == lengths
    assert str(out["t"].dtype) == f"torch.{kind}"


@PROPS
@given(
    kind=st.sampled_from(INT_TYPES),
    list_kind=st.sampled_from(["list", "large_list", "list_view"]),
    rows=st.lists(st.none() | st.lists(st.integers(0, 100), max_size=12), max_size=20),
    width=st.integers(1, 9),
    pad=st.integers(0, 127),
    start=st.integers(0, 3),
)
def test_packed_tokens_hold_every_token_once_in_row_order(kind, list_kind, rows, width, pad, start):
    list_type = {"list": pa.list_, "large_list": pa.large_list, "list_view": pa.list_view}
    array = pa.array([[0]] * start + rows, list_type[list_kind](kind)).slice(start)
    out = to_batch(
        pa.record_batch({"t": array}), {"t": Tokens(max_length=width, pad_value=pad, pack=True)}
    )
    flat = [tok for r in rows for tok in (r or [])]
    docs = [i for i, r in enumerate(rows) for _ in (r or [])]
    blocks = -(-len(flat) // width)
    filler = blocks * width - len(flat)
    assert out["t"].shape == out["t_document"].shape == (blocks, width)
    assert out["t"].flatten().tolist() == flat + [pad] * filler
    assert out["t_document"].flatten().tolist() == docs + [-1] * filler
    assert str(out["t"].dtype) == f"torch.{kind}"


def test_packing_needs_a_length_and_rows():
    with pytest.raises(ValueError, match="pack=True needs max_length"):
        Tokens(pack=True)
    spec = {"t": Tokens(max_length=4, pack=True)}
    with pytest.raises(ValueError, match="torch_dict gives rows"):
        Permutation.identity(
            lancetorch.connect("memory://").create_table(
                "t", pa.table({"t": pa.array([[1]], pa.list_(pa.int32()))})
            )
        ).with_format("torch_dict", decode=spec)


def test_the_loader_packs_every_token_once_an_epoch(mem_db):
    rows = [list(range(i * 100, i * 100 + i % 7)) for i in range(50)]
    table = mem_db.create_table("tok", pa.table({"t": pa.array(rows, pa.list_(pa.int32()))}))
    loader = Loader(
        table,
        8,
        seed=3,
        per_column=True,
        decode={"t": Tokens(max_length=5, pad_value=-1, pack=True)},
    )
    for epoch in range(2):
        loader.set_epoch(epoch)
        seen = []
        for batch in loader:
            assert batch["t"].shape[1] == 5
            seen += [tok for tok in batch["t"].flatten().tolist() if tok != -1]
        assert sorted(seen) == sorted(tok for r in rows for tok in r)


def _png(i: int) -> bytes:
    import io

    from PIL import Image as PILImage

    out = io.BytesIO()
    PILImage.fromarray(np.full((6, 6, 3), i, np.uint8)).save(out, format="PNG")
    return out.getvalue()


SPECS = {
    "tokens": ("tok", Tokens(max_length=4, pad_value=-1)),
    "tokens-packed": ("tok", Tokens(max_length=4, pad_value=-1, pack=True)),
    "tokens-blocks": ("tok", Tokens(max_length=4, pad_value=-1, pack=True, blocks=6)),
    "text": ("txt", Text()),
    "text-tokenizer": ("txt", Text(tokenizer=lambda v: {"n": torch.tensor([len(s) for s in v])})),
    "image": ("img", Image(size=(4, 4))),
}


@pytest.mark.parametrize("path", ["to_batch", "loader", "loader-2-threads", "torch_dict"])
@pytest.mark.parametrize("kind", list(SPECS))
def test_every_declared_output_reaches_every_path(mem_db, kind, path):
    """A spec's outputs (``outputs(column)``) each reach the user, whatever path reads them:
    the Loader once kept only a column and its ``_length``, dropping ``_document``."""
    column, spec = SPECS[kind]
    n = 12
    table = mem_db.create_table(
        "specs",
        pa.table(
            {
                "id": pa.array(range(n), pa.int64()),
                "tok": pa.array([[i] * (i % 3 + 1) for i in range(n)], pa.list_(pa.int32())),
                "txt": pa.array([f"row {i}" for i in range(n)]),
                "img": pa.array([_png(i) for i in range(n)], pa.binary()),
            }
        ),
    )
    assert isinstance(spec, DecodeSpec)
    declared = spec.outputs(column)
    assert declared[0] == column
    # Fixed blocks hold tokens, not rows: read alone (with another column it is refused).
    columns = [column] if getattr(spec, "blocks", None) else ["id", column]
    read = Permutation.identity(table).select_columns(columns)
    if path == "to_batch":
        batches = [to_batch(table.to_arrow().select(columns), {column: spec})]
    elif path.startswith("loader"):
        threads = 2 if path == "loader-2-threads" else 1
        batches = list(Loader(read, 5, per_column=True, decode={column: spec}, threads=threads))
    else:
        if spec.rows == "packs":
            with pytest.raises(ValueError, match="packs its values into blocks"):
                read.with_format("torch_dict", decode={column: spec})
            return
        rows = read.with_format("torch_dict", decode={column: spec})
        batches = [torch.utils.data.default_collate(rows.__getitems__(list(range(n))))]
    for batch in batches:
        assert [k for k in batch if k != "id"] == declared
        if kind == "tokens-blocks":
            assert batch[column].shape == (6, 4)
    if kind == "tokens-blocks":
        tokens = [t for b in batches for t in b[column].flatten().tolist() if t != -1]
        assert sorted(tokens) == sorted(i for i in range(n) for _ in range(i % 3 + 1))
    if kind == "tokens-packed":  # the documents are the rows the tokens came from
        seen = {}
        for batch in batches:
            ids = batch["id"].tolist()
            for block, docs in zip(batch[column].tolist(), batch[f"{column}_document"].tolist()):
                for tok, doc in zip(block, docs):
                    if doc >= 0:
                        seen.setdefault(ids[doc], []).append(tok)
        assert seen == {i: [i] * (i % 3 + 1) for i in range(n)}


def test_a_spec_must_give_what_it_declares():
    class Liar(Text):
        def outputs(self, column):
            return [column, f"{column}_extra"]

    batch = pa.record_batch({"t": pa.array(["a"])})
    with pytest.raises(RuntimeError, match=r"declares \['t', 't_extra'\]"):
        to_batch(batch, {"t": Liar()})


def test_a_sliced_token_column_pads_its_own_rows():
    array = pa.array([[1], [2, 3], [4, 5, 6], [7]], pa.list_(pa.int64())).slice(1, 2)
    out = to_batch(pa.record_batch({"t": array}), {"t": Tokens()})
    assert out["t"].tolist() == [[2, 3, 0], [4, 5, 6]]


def test_token_errors_name_the_column_and_row():
    batch = pa.record_batch({"t": pa.array([[1, 2], [3, 4, 5]], pa.list_(pa.int32()))})
    with pytest.raises(
        ValueError, match="column 't': row 1 of the batch has 3 tokens, over max_length=2"
    ):
        to_batch(batch, {"t": Tokens(max_length=2, truncate=False)})
    with pytest.raises(ValueError, match="null token"):
        to_batch(
            pa.record_batch({"t": pa.array([[1, None]], pa.list_(pa.int32()))}), {"t": Tokens()}
        )
    with pytest.raises(ValueError, match="pad_value=-1 does not fit column 't'"):
        to_batch(
            pa.record_batch({"t": pa.array([[1]], pa.list_(pa.uint8()))}),
            {"t": Tokens(pad_value=-1)},
        )
    with pytest.raises(TypeError, match="token ids are integers"):
        to_batch(pa.record_batch({"t": pa.array([[1.5]])}), {"t": Tokens()})
    with pytest.raises(TypeError, match="name it in decode="):
        to_batch(batch)
    with pytest.raises(ValueError, match="max_length=0"):
        Tokens(max_length=0)
    with pytest.raises(ValueError, match="needs max_length"):
        Tokens(pad_to_max_length=True)
    with pytest.raises(ValueError, match="decode names column 'nope'"):
        to_batch(batch, {"nope": Tokens()})


def test_columns_of_every_kind():
    emb = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(6, dtype=np.float32)), 2)
    shaped = pa.ExtensionArray.from_storage(
        pa.fixed_shape_tensor(pa.int16(), (1, 2)),
        pa.FixedSizeListArray.from_arrays(pa.array(np.arange(6, dtype=np.int16)), 2),
    )
    batch = pa.record_batch(
        {
            "x": pa.array([1.5, 2.5, 3.5]),
            "n": pa.array([1, 2, 3], pa.int8()),
            "b": [True, False, True],
            "emb": emb,
            "img": shaped,
            "s": ["a", None, "c"],
            "raw": [b"\x00", b"", None],
        }
    )
    out = to_batch(batch, {"s": Text(tokenizer=lambda xs: [len(x or "") for x in xs])})
    assert out["x"].tolist() == [1.5, 2.5, 3.5] and out["n"].dtype == torch.int8
    assert out["b"].tolist() == [True, False, True]
    assert out["emb"].shape == (3, 2) and out["img"].shape == (3, 1, 2)
    assert out["img"][2].tolist() == [[4, 5]]
    assert out["s"] == [1, 0, 1] and out["raw"] == [b"\x00", b"", None]
    assert to_batch(batch.select(["s"]), {"s": Text()})["s"] == ["a", None, "c"]


def test_features_and_target_keep_their_own_types():
    batch = pa.record_batch({"a": pa.array([1, 2], pa.int32()), "b": [0.5, 1.5], "y": [3, 4]})
    x, y = to_batch(batch, features=["a", "b"], target="y")
    assert x.tolist() == [[1.0, 0.5], [2.0, 1.5]] and x.dtype == torch.float64
    assert x.is_contiguous() and y.dtype == torch.int64 and y.tolist() == [3, 4]
    x = to_batch(batch, features=["a", "b"], dtype=torch.float32)
    assert x.dtype == torch.float32
    with pytest.raises(ValueError, match="target= goes with features="):
        to_batch(batch, target="y")


def _token_table(db, n=500):
    toks = [list(range(i, i + i % 9)) for i in range(n)]
    return db.create_table(
        "tok",
        pa.table(
            {
                "id": np.arange(n),
                "tok": pa.array(toks, pa.list_(pa.int32())),
                "text": [f"row {i}" for i in range(n)],
                "f": np.arange(n, dtype=np.float32),
            }
        ),
    )


def _check_rows(batch):
    ids = batch["id"].tolist()
    assert batch["text"] == [f"row {i}" for i in ids]
    assert batch["tok_length"].tolist() == [min(i % 9, 6) for i in ids]
    for row, i in zip(batch["tok"].tolist(), ids):
        n = min(i % 9, 6)
        assert row[:n] == list(range(i, i + n)) and set(row[n:]) <= {-1}
    return ids


@pytest.mark.parametrize("where", ["memory", "disk", "disk beyond the cache"])
def test_loader_decodes_side_columns(tmp_path, where):
    db = lancetorch.connect("memory://" if where == "memory" else tmp_path)
    table = _token_table(db)
    if where == "disk beyond the cache":
        table = db.open_table("tok", cache_budget=1)
    loader = Loader(
        table,
        64,
        seed=3,
        per_column=True,
        window_rows=100,
        clump_size=16,
        decode={"tok": Tokens(max_length=6, pad_value=-1)},
    )
    seen = []
    for batch in loader:
        assert list(batch) == ["id", "tok", "tok_length", "text", "f"]
        seen += _check_rows(batch)
        assert batch["f"].tolist() == [float(i) for i in batch["id"].tolist()]
    assert sorted(seen) == list(range(500))


def test_loader_of_a_permutation_with_renames_and_drop_last(mem_db):
    table = _token_table(mem_db)
    view = Permutation.identity(table).rename_column("tok", "ids").select_columns(["id", "ids"])
    batches = list(
        Loader(
            view, 64, seed=0, per_column=True, drop_last=True, decode={"ids": Tokens(max_length=3)}
        )
    )
    assert len(batches) == 500 // 64 and all(b["ids"].shape == (64, 3) for b in batches)
    with pytest.raises(ValueError, match="decode names column 'tok'"):
        Loader(view, 64, per_column=True, decode={"tok": Tokens()})


def test_loader_features_and_target(mem_db):
    table = mem_db.create_table(
        "f",
        pa.table(
            {
                "f0": np.arange(100, dtype=np.float32),
                "f1": np.arange(100, dtype=np.int16) * 2,
                "label": np.arange(100) % 4,
            }
        ),
    )
    seen = []
    for x, y in Loader(table, 32, seed=1, features=["f0", "f1"], target="label"):
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1] == 2
        assert torch.equal(x[:, 1], 2 * x[:, 0]) and torch.equal(y, x[:, 0].long() % 4)
        seen += x[:, 0].long().tolist()
    assert sorted(seen) == list(range(100))
    x = next(iter(Loader(table, 8, features=["f1"], dtype=torch.float64)))
    assert x.shape == (8, 1) and x.dtype == torch.float64


def test_torch_dict_with_decode_and_specs_pickle(mem_db):
    table = _token_table(mem_db, 20)
    spec = {"tok": Tokens(max_length=6, pad_value=-1)}
    p = Permutation.identity(table).with_format("torch_dict", decode=spec)
    rows = p.take_offsets([5, 2])
    assert rows[0]["tok"].tolist() == [5, 6, 7, 8, 9] and rows[0]["text"] == "row 5"
    assert rows[1]["tok_length"].item() == 2
    back = pickle.loads(pickle.dumps(p))
    assert back.take_offsets([5])[0]["tok"].tolist() == rows[0]["tok"].tolist()
    collated = torch.utils.data.default_collate(rows)
    assert collated["tok"].tolist() == [[5, 6, 7, 8, 9], [2, 3, -1, -1, -1]]
    assert collated["text"] == ["row 5", "row 2"]
    with pytest.raises(ValueError, match="decode= goes with the torch_dict format"):
        Permutation.identity(table).with_format("arrow", decode=spec)
    collate = functools.partial(to_batch, decode=spec)
    assert pickle.loads(pickle.dumps(collate))(table.__getitems__([3]))["tok_length"].tolist() == [
        3
    ]


def test_equal_length_arrays_become_an_embedding_column(mem_db):
    t = mem_db.create_table(
        "e",
        {
            "emb": [np.full(3, i, np.float32) for i in range(4)],
            "matrix": np.arange(8, dtype=np.int16).reshape(4, 2),
            "ragged": [np.ones(2), np.ones(3), np.ones(1), np.ones(2)],
        },
    )
    assert t.schema.field("emb").type == pa.list_(pa.float32(), 3)
    assert t.schema.field("matrix").type == pa.list_(pa.int16(), 2)
    assert pa.types.is_list(t.schema.field("ragged").type)  # lengths differ: a list column
    out = to_batch(t.__getitems__([3, 0]).select(["emb", "matrix"]))
    assert out["emb"].tolist() == [[3.0] * 3, [0.0] * 3] and out["matrix"].tolist() == [
        [6, 7],
        [0, 1],
    ]


def test_loader_device_moves_every_tensor(mem_db):
    table = _token_table(mem_db, 50)
    loader = Loader(table, 16, per_column=True, decode={"tok": Tokens()}, device="cpu")
    for batch in loader:
        assert all(v.device.type == "cpu" for v in batch.values() if isinstance(v, torch.Tensor))
        assert isinstance(batch["text"], list)
    if torch.cuda.is_available():
        batch = next(
            iter(Loader(table, 16, per_column=True, decode={"tok": Tokens()}, device="cuda"))
        )
        assert batch["tok"].is_cuda and batch["f"].is_cuda


def test_a_failing_decode_surfaces_at_its_batch_and_stops_the_thread(mem_db):
    import threading

    from lancetorch.decode import Image

    rows = 64
    images = [b"\xff\xd8 not really"] * rows  # every image refused
    table = mem_db.create_table(
        "bad", pa.table({"id": np.arange(rows), "img": pa.array(images, pa.binary())})
    )
    loader = Loader(table, 16, shuffle=False, per_column=True, decode={"img": Image(size=(4, 4))})
    with pytest.raises(ValueError, match="column 'img': the image at row 0 of the batch"):
        next(iter(loader))
    assert not [t for t in threading.enumerate() if t.name == "lancetorch-side"]


_INVALID_LIST_VIEW = """
import pyarrow as pa
from lancetorch.decode import Tokens
from lancetorch.util import to_batch
values = pa.array([1, 2, 3], pa.int32())
bad = pa.ListViewArray.from_arrays(
    pa.array([0, 100], pa.int32()), pa.array([2, 1], pa.int32()), values
)
try:
    to_batch(pa.record_batch({"t": bad}), {"t": Tokens()})
except ValueError as e:
    print(e)
"""


def test_list_offsets_past_the_values_are_refused_not_read():
    """pyarrow builds such an array without validating it (and aborts printing it): run in a
    child, so that no traceback of this test ever shows it."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _INVALID_LIST_VIEW], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "row 1 of the batch points past its 3 token values" in out.stdout


def test_a_spec_of_ones_own_works_on_every_path(mem_db):
    """Any object with DecodeSpec's members is a spec, one that skips rows too; one without
    outputs() is refused, and the message says what it lacks."""

    class Doubled:
        rows = "each"

        def outputs(self, column):
            return [column]

        def decode(self, batch, column, epoch=0):
            return {column: torch.tensor(batch.column(column).to_numpy() * 2)}

    table = mem_db.create_table("own", pa.table({"v": pa.array(range(6))}))
    got = to_batch(table.to_arrow(), {"v": Doubled()})["v"].tolist()
    assert got == [0, 2, 4, 6, 8, 10]
    loaded = next(iter(Loader(table, 6, shuffle=False, per_column=True, decode={"v": Doubled()})))
    assert loaded["v"].tolist() == got

    class OddOnly(Doubled):
        rows = "skips"

        def decode_rows(self, batch, column, epoch=0):
            values = batch.column(column).to_numpy()
            skipped = [i for i, v in enumerate(values) if v % 2 == 0]
            return {column: torch.tensor(values)}, skipped  # every row; skipped ones go

    both = pa.table({"v": pa.array(range(6)), "w": pa.array(range(10, 16))})
    out = to_batch(both, {"v": OddOnly()})
    assert out["v"].tolist() == [1, 3, 5] and out["w"].tolist() == [11, 13, 15]

    class NoOutputs:
        rows = "each"

        def decode(self, batch, column, epoch=0):
            return {column: []}

    with pytest.raises(TypeError, match=r"outputs\(column\)"):
        to_batch(table.to_arrow(), {"v": NoOutputs()})

    class NoRows(Doubled):
        rows = "some"

    with pytest.raises(TypeError, match="rows='some'"):
        to_batch(table.to_arrow(), {"v": NoRows()})

    class SkipsWithoutSaying(Doubled):
        rows = "skips"

    with pytest.raises(TypeError, match="no decode_rows"):
        to_batch(table.to_arrow(), {"v": SkipsWithoutSaying()})


def test_a_spec_crosses_into_rust_as_the_object_itself():
    """decode_tokens and decode_images read the spec object's fields: anything else is refused
    by the field it lacks, and a field value the core has no meaning for by its name."""
    import dataclasses

    from lancetorch import _native

    batch = pa.record_batch({"t": pa.array([[1, 2]]), "img": pa.array([b""], pa.binary())})
    with pytest.raises(AttributeError, match="max_length"):
        _native.decode_tokens(batch, 0, object())
    with pytest.raises(IndexError):
        _native.decode_tokens(batch, 5, Tokens())
    # A frozen spec cannot be made with a bad layout; a copy with its checks skipped can.
    spec = Image(size=4)
    fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
    odd = type("Odd", (), {**fields, "layout": "CHWN"})()
    with pytest.raises(ValueError, match="layout='CHWN'|layout=\"CHWN\""):
        _native.decode_images(batch, 1, odd, 0)
