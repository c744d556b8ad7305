"""Packed tokens against a plain-Python reference: fixed (blocks, max_length) batches, the
varlen-attention metadata (positions, cu_seqlens, max_seqlen), and the Loader's carry across
batch boundaries and across a resume."""

from __future__ import annotations

import itertools

import lancetorch
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lancetorch.decode import Tokens
from lancetorch.loader import Loader
from lancetorch.permutation import Permutation
from lancetorch.util import to_batch

PROPS = settings(max_examples=40, deadline=None)
ROWS = st.lists(st.none() | st.lists(st.integers(0, 1000), max_size=15), max_size=25)


def reference_meta(documents: list[list[int]]) -> tuple[list[list[int]], list[int], int]:
    """Plain Python: positions (restarting at each document and each block), cu_seqlens over
    the flattened blocks (padding, -1, in no segment) and the longest segment."""
    positions, cu, longest, at = [], [0], 0, 0
    for block in documents:
        row = []
        for doc, run in itertools.groupby(block):
            n = len(list(run))
            row += [0] * n if doc == -1 else list(range(n))
            if doc != -1:
                at += n
                cu.append(at)
                longest = max(longest, n)
            else:
                at += n  # padding ends the tokens: nothing after it
        positions.append(row)
    return positions, cu, longest


def check_meta(out: dict, column: str = "t") -> None:
    documents = out[f"{column}_document"].tolist()
    positions, cu, longest = reference_meta(documents)
    assert out[f"{column}_position"].tolist() == positions
    assert str(out[f"{column}_position"].dtype) == "torch.int32"
    assert out[f"{column}_cu_seqlens"].tolist() == cu
    assert str(out[f"{column}_cu_seqlens"].dtype) == "torch.int32"
    assert int(out[f"{column}_max_seqlen"]) == longest
    # The segments' lengths are the runs of one document within a block.
    lengths = np.diff(cu).tolist()
    runs = [len(list(r)) for b in documents for d, r in itertools.groupby(b) if d != -1]
    assert lengths == runs


@PROPS
@given(rows=ROWS, width=st.integers(1, 9), blocks=st.none() | st.integers(1, 12))
def test_one_batch_packs_as_the_reference(rows, width, blocks):
    array = pa.array(rows, pa.list_(pa.int64()))
    spec = Tokens(max_length=width, pad_value=-1, pack=True, blocks=blocks)
    flat = [tok for r in rows for tok in (r or [])]
    docs = [i for i, r in enumerate(rows) for _ in (r or [])]
    need = -(-len(flat) // width)
    if blocks is not None and need > blocks:
        with pytest.raises(ValueError, match=r"over blocks=.*lancetorch.Loader"):
            to_batch(pa.record_batch({"t": array}), {"t": spec})
        return
    out = to_batch(pa.record_batch({"t": array}), {"t": spec})
    n = need if blocks is None else blocks
    filler = n * width - len(flat)
    assert list(out) == spec.outputs("t")
    assert out["t"].shape == out["t_document"].shape == out["t_position"].shape == (n, width)
    assert out["t"].flatten().tolist() == flat + [-1] * filler
    assert out["t_document"].flatten().tolist() == docs + [-1] * filler
    check_meta(out)


def test_positions_restart_at_each_block_and_document():
    rows = [[1, 2, 3, 4, 5], [6, 7]]
    out = to_batch(
        pa.record_batch({"t": pa.array(rows, pa.list_(pa.int32()))}),
        {"t": Tokens(max_length=3, pack=True, blocks=3)},
    )
    # 1 2 3 | 4 5 6 | 7 - -: the second document goes on in the third block, from 0.
    assert out["t_position"].tolist() == [[0, 1, 2], [0, 1, 0], [0, 0, 0]]
    assert out["t_cu_seqlens"].tolist() == [0, 3, 5, 6, 7]
    assert int(out["t_max_seqlen"]) == 3


def test_blocks_are_checked():
    with pytest.raises(ValueError, match="needs pack=True"):
        Tokens(max_length=4, blocks=2)
    with pytest.raises(ValueError, match="blocks"):
        Tokens(max_length=4, pack=True, blocks=0)
    with pytest.raises(TypeError, match="blocks"):
        Tokens(max_length=4, pack=True, blocks=2.5)


def _table(rows, name="tok"):
    db = lancetorch.connect("memory://")
    return db.create_table(name, pa.table({"t": pa.array(rows, pa.list_(pa.int64()))}))


def _spec(width, blocks):
    return {"t": Tokens(max_length=width, pad_value=-1, pack=True, blocks=blocks)}


def _stream(batches):
    """Every token handed out, in order, and each batch's shape."""
    tokens, shapes = [], set()
    for b in batches:
        shapes.add(tuple(b["t"].shape))
        tokens += [t for t in b["t"].flatten().tolist() if t != -1]
    return tokens, shapes


LOADER_ROWS = st.lists(st.integers(0, 12), min_size=1, max_size=40)


@settings(max_examples=25, deadline=None)
@given(
    lengths=st.lists(st.none() | st.integers(0, 12), min_size=1, max_size=40),
    size=st.integers(1, 9),
    width=st.integers(1, 8),
    blocks=st.integers(1, 4),
)
def test_the_loader_gives_fixed_blocks_every_token_once_in_order(lengths, size, width, blocks):
    rows = [None if n is None else list(range(i * 100, i * 100 + n)) for i, n in enumerate(lengths)]
    loader = Loader(_table(rows), size, shuffle=False, per_column=True, decode=_spec(width, blocks))
    batches = list(loader)
    tokens, shapes = _stream(batches)
    assert tokens == [t for r in rows for t in r or []]  # every token once, in the rows' order
    assert shapes <= {(blocks, width)}
    for b in batches[:-1]:  # only the last batch of the epoch is padded
        assert (b["t_document"] >= 0).all()
    for b in batches:
        check_meta(b)
        # A document is the row its tokens came from, numbered in read order.
        for tok, doc in zip(b["t"].flatten().tolist(), b["t_document"].flatten().tolist()):
            assert doc == -1 or tok // 100 == doc


@settings(max_examples=20, deadline=None)
@given(
    lengths=LOADER_ROWS,
    size=st.integers(1, 7),
    width=st.integers(1, 8),
    blocks=st.integers(1, 3),
    seed=st.integers(0, 5),
    cut=st.integers(0, 50),
)
def test_a_resume_between_any_two_batches_gives_every_token_once(
    lengths, size, width, blocks, seed, cut
):
    rows = [list(range(i * 100, i * 100 + n)) for i, n in enumerate(lengths)]
    table = _table(rows)

    def loader():
        return Loader(table, size, seed=seed, per_column=True, decode=_spec(width, blocks))

    whole, _ = _stream(loader())
    first = loader()
    it = iter(first)
    head = []
    for _ in range(cut):
        batch = next(it, None)
        if batch is None:
            break
        head += _stream([batch])[0]
    state = first.state_dict()
    if state["epoch"] == 1:  # every token handed out: the state names the next epoch
        assert head == whole
        return
    resumed = loader()
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state  # a loaded state is the state until the pass starts
    tail, shapes = _stream(resumed)
    assert head + tail == whole
    assert shapes <= {(blocks, width)}


def test_each_rank_resumes_its_own_carry_and_other_rank_counts_are_refused():
    rng = np.random.default_rng(7)
    rows = [list(range(i * 100, i * 100 + int(rng.integers(0, 30)))) for i in range(60)]
    table = _table(rows)

    def loader(rank, world=2):
        return Loader(
            table,
            4,
            seed=1,
            rank=rank,
            world_size=world,
            uneven="drop",
            per_column=True,
            decode=_spec(5, 2),
        )

    everything = []
    for rank in range(2):
        whole, _ = _stream(loader(rank))
        it = iter(first := loader(rank))
        head = _stream([next(it) for _ in range(3)])[0]
        state = first.state_dict()
        assert state["pack_skip"] >= 0
        resumed = loader(rank)
        resumed.load_state_dict(state)
        assert head + _stream(resumed)[0] == whole
        everything += whole
        with pytest.raises(ValueError, match="as many ranks as saved it"):
            loader(0, world=1).load_state_dict(state)
    assert sorted(everything) == sorted(t for r in rows for t in r)


def test_fixed_blocks_read_only_the_token_column():
    db = lancetorch.connect("memory://")
    table = db.create_table(
        "two", pa.table({"id": [1, 2], "t": pa.array([[1], [2, 3]], pa.list_(pa.int32()))})
    )
    with pytest.raises(ValueError, match=r"select_columns\(\['t'\]\)"):
        Loader(table, 2, per_column=True, decode=_spec(4, 2))
    only = Permutation.identity(table).select_columns(["t"])
    (batch,) = list(Loader(only, 2, shuffle=False, per_column=True, decode=_spec(4, 2)))
    assert batch["t"].tolist() == [[1, 2, 3, -1], [-1, -1, -1, -1]]


def test_a_packing_state_needs_a_packing_loader():
    table = _table([[1, 2, 3]] * 10)
    packing = Loader(table, 2, per_column=True, decode=_spec(2, 1))
    next(iter(packing))
    state = packing.state_dict()
    assert state["pack_skip"] == 2
    plain = Loader(table, 2, per_column=True, decode={"t": Tokens(max_length=2, pack=True)})
    with pytest.raises(ValueError, match="pack_skip"):
        plain.load_state_dict(state)


def test_a_table_read_by_windows_packs_and_resumes_every_token_once(tmp_path):
    rng = np.random.default_rng(3)
    rows = [list(range(i * 100, i * 100 + int(rng.integers(0, 25)))) for i in range(300)]
    db = lancetorch.connect(str(tmp_path))
    db.create_table("t", pa.table({"t": pa.array(rows, pa.list_(pa.int64()))}))
    table = db.open_table("t", cache=False)

    def loader():
        return Loader(
            table, 16, seed=2, window_rows=64, clump_size=8, per_column=True, decode=_spec(7, 3)
        )

    whole, shapes = _stream(loader())
    assert sorted(whole) == sorted(t for r in rows for t in r)
    assert shapes == {(3, 7)}
    first = loader()
    it = iter(first)
    head = _stream([next(it) for _ in range(40)])[0]
    resumed = loader()
    resumed.load_state_dict(first.state_dict())
    assert head + _stream(resumed)[0] == whole
