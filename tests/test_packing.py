"""Packed tokens against a plain-Python reference: fixed (blocks, max_length) batches, the
varlen-attention metadata (positions, cu_seqlens, max_seqlen), and the Loader's carry across
batch boundaries and across a resume."""

from __future__ import annotations

import collections
import itertools
from collections import Counter

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

    everything, states = [], []
    for rank in range(2):
        whole, _ = _stream(loader(rank))
        it = iter(first := loader(rank))
        head = _stream([next(it) for _ in range(3)])[0]
        state = first.state_dict()
        assert state["rank"] == rank and state["pack_done"]  # a row batch part way
        resumed = loader(rank)
        resumed.load_state_dict(state)
        assert resumed.state_dict() == state
        assert head + _stream(resumed)[0] == whole
        everything += whole
        states.append(state)
        with pytest.raises(ValueError, match=r"of 2 ranks.*on 1.*merge_state_dicts"):
            loader(0, world=1).load_state_dict(state)
        with pytest.raises(ValueError, match=f"rank {rank}'s, this loader is rank {1 - rank}"):
            loader(1 - rank).load_state_dict(state)
    assert sorted(everything) == sorted(t for r in rows for t in r)
    merged = Loader.merge_state_dicts(states)
    assert merged["rank"] is None
    assert merged == Loader.merge_state_dicts(states[::-1])  # in any order
    assert merged["position"] == min(s["position"] for s in states)
    for rank in range(2):  # each rank's own rows past its position, as it said
        mine = dict(map(tuple, states[rank]["pack_done"]))
        assert {q: t for q, t in merged["pack_done"] if q in mine} == mine


def _tokens_of(rows: list) -> collections.Counter:
    return collections.Counter(t for r in rows for t in r or [])


def _run(loaders: list, cut: int | None, shape: tuple[int, int]) -> tuple[list, Counter, Counter]:
    """Each loader (rank r of their number) read for ``cut`` batches (all of its pass: None):
    the ranks' states then, and the tokens handed out, those of the epoch and those of the
    padding apart. Every token must sit in the row its document names: document ``d`` is row
    ``d`` of the rank's pass, at global position ``start + d * world + rank``, wrapped past
    the epoch's end (``uneven="pad"``)."""
    world, real, padding, states = len(loaders), Counter(), Counter(), []
    for rank, loader in enumerate(loaders):
        sampler = loader._sampler  # the pass's layout: which row each position holds
        before = loader.state_dict()
        epoch, start, n = before["epoch"], before["position"], before["rows"]
        if epoch:  # its own state: this rank's pass was over
            states.append(before)
            continue
        it = iter(loader)
        batches = list(it if cut is None else itertools.islice(it, cut))
        states.append(loader.state_dict())
        it.close()
        over = states[-1]["epoch"] != epoch
        for i, b in enumerate(batches):
            assert tuple(b["t"].shape) == shape
            check_meta(b)
            docs = b["t_document"].flatten().numpy()
            tokens = b["t"].flatten().numpy()[docs >= 0]
            docs = docs[docs >= 0]
            if i + 1 < len(batches) or not over:
                assert len(docs) == shape[0] * shape[1]  # only a pass's last batch is padded
            at = start + docs * world + rank
            pad = at >= n
            at[pad] = start + (at[pad] - start) % (n - start)
            assert (tokens // 1000 == sampler.rows_at(epoch, at)).all(), "the row of the place"
            real.update(tokens[~pad].tolist())
            padding.update(tokens[pad].tolist())
    return states, real, padding


def _hops(make, rows, worlds, cuts, own, uneven):
    """Read on ``worlds[0]`` ranks for ``cuts[0]`` batches each, merge the states, resume on
    ``worlds[1]`` for ``cuts[1]``, then either each rank its own state (``own``) or the merged
    states on ``worlds[2]`` to the end of the epoch: every token of the epoch once (at most
    once where ``uneven="drop"`` leaves rows out)."""
    epoch = _tokens_of(rows)
    real, padding = Counter(), Counter()
    states: list = []
    for hop, world in enumerate(worlds):
        if hop == 2 and own:
            world = worlds[1]
        loaders = [make(rank, world) for rank in range(world)]
        if hop:
            merged = Loader.merge_state_dicts(states[::-1])
            if merged["epoch"] == 1:  # every rank's pass was over
                break
            for rank, loader in enumerate(loaders):
                loader.load_state_dict(states[rank] if hop == 2 and own else merged)
        cut = cuts[hop] if hop < 2 else None
        states, got, pads = _run(loaders, cut, make.shape)
        real += got
        padding += pads
    assert max(real.values(), default=1) == 1, "no token twice"
    if uneven == "pad":
        assert real == epoch, "every token of the epoch once"
    else:
        assert not padding and not real - epoch
    assert set(padding) <= set(epoch)  # the padding repeats rows of the epoch


HOPS = dict(
    size=st.integers(1, 6),
    width=st.integers(1, 6),
    blocks=st.integers(1, 3),
    worlds=st.lists(st.integers(1, 4), min_size=3, max_size=3),
    cuts=st.lists(st.integers(0, 12), min_size=2, max_size=2),
    own=st.booleans(),
    seed=st.integers(0, 2**32),
)


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.none() | st.integers(0, 12), min_size=1, max_size=40),
    order=st.sampled_from(["fisher-yates", "bijection"]),
    uneven=st.sampled_from(["pad", "drop"]),
    **HOPS,
)
def test_a_resume_on_any_number_of_ranks_gives_every_token_once(
    lengths, order, uneven, size, width, blocks, worlds, cuts, own, seed
):
    rows = [None if k is None else [i * 1000 + j for j in range(k)] for i, k in enumerate(lengths)]
    table = _table(rows)

    def make(rank, world):
        return Loader(
            table,
            size,
            seed=seed,
            rank=rank,
            world_size=world,
            order=order,
            uneven=uneven,
            per_column=True,
            decode=_spec(width, blocks),
        )

    make.shape = (blocks, width)
    _hops(make, rows, worlds, cuts, own, uneven)


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory):
    """A table too large for its cache (read by windows) and its rows."""
    rng = np.random.default_rng(11)
    rows = [list(range(i * 1000, i * 1000 + int(rng.integers(0, 13)))) for i in range(70)]
    db = lancetorch.connect(str(tmp_path_factory.mktemp("packing")))
    db.create_table("t", pa.table({"t": pa.array(rows, pa.list_(pa.int64()))}))
    return db.open_table("t", cache=False), rows


@settings(max_examples=30, deadline=None)
@given(clump=st.integers(1, 12), window=st.integers(1, 40), **HOPS)
def test_a_table_read_by_windows_resumes_on_any_number_of_ranks(
    on_disk, clump, window, size, width, blocks, worlds, cuts, own, seed
):
    table, rows = on_disk

    def make(rank, world):
        return Loader(
            table,
            size,
            seed=seed,
            rank=rank,
            world_size=world,
            window_rows=window,
            clump_size=clump,
            per_column=True,
            decode=_spec(width, blocks),
        )

    make.shape = (blocks, width)
    _hops(make, rows, worlds, cuts, own, "pad")


def _states(world=2, cut=2, seed=4):
    """Every rank's state after ``cut`` batches of a run on ``world`` ranks."""
    table = _table([list(range(i * 1000, i * 1000 + 5)) for i in range(30)])
    loaders = [
        Loader(table, 3, seed=seed, rank=r, world_size=world, per_column=True, decode=_spec(4, 1))
        for r in range(world)
    ]
    return table, loaders, _run(loaders, cut, (1, 4))[0]


def _unpacked(table, **kw):
    """A Loader of ``table``'s tokens, padded, not packed."""
    return Loader(table, 3, seed=4, per_column=True, decode={"t": Tokens(max_length=4)}, **kw)


def test_merging_refuses_states_that_are_not_one_step_of_one_run():
    table, loaders, states = _states(world=3)
    with pytest.raises(ValueError, match=r"rank\(s\) \[1\] of the 3 are missing"):
        Loader.merge_state_dicts([states[0], states[2]])
    with pytest.raises(ValueError, match="states\\[0\\] and states\\[2\\] are both rank 0's"):
        Loader.merge_state_dicts([states[0], states[1], states[0]])
    with pytest.raises(ValueError, match="none"):
        Loader.merge_state_dicts([])
    with pytest.raises(TypeError, match="all_gather_object"):
        Loader.merge_state_dicts(states[0])
    other_seed = _states(world=3, seed=5)[2]
    with pytest.raises(ValueError, match="disagree on 'seed'"):
        Loader.merge_state_dicts([states[0], states[1], other_seed[2]])
    later = _states(world=3, cut=6)[2]
    with pytest.raises(ValueError, match="not of one pass|multiple of world_size=3"):
        Loader.merge_state_dicts([states[0], states[1], {**later[2], "position": 7}])
    with pytest.raises(ValueError, match="epoch 1, position 9"):
        ahead = {**states[2], "epoch": 1, "position": 9, "pack_done": []}
        Loader.merge_state_dicts([states[0], states[1], ahead])
    merged = Loader.merge_state_dicts(states)
    with pytest.raises(ValueError, match="merged already"):
        Loader.merge_state_dicts([merged, states[1], states[2]])
    with pytest.raises(ValueError, match="'pack_done'.*does not"):
        Loader.merge_state_dicts([states[0], states[1], _unpacked(table).state_dict()])
    legacy = {k: v for k, v in states[0].items() if k not in ("rank", "pack_done")}
    for skip in (2, 0):  # pack_skip 0 too: such a state is an earlier lancetorch's
        with pytest.raises(ValueError, match="pack_skip .*earlier lancetorch"):
            Loader.merge_state_dicts([{**legacy, "pack_skip": skip}, states[1], states[2]])
    stray = {**states[1], "pack_done": [[states[1]["position"], 1]]}
    with pytest.raises(ValueError, match="does not read from position"):
        Loader.merge_state_dicts([states[0], stray, states[2]])
    # Without packing every rank's state is the same: merging checks and returns it.
    plain = [_unpacked(table, rank=r, world_size=2) for r in range(2)]
    its = [iter(p) for p in plain]
    for it in its:
        next(it)
    same = [p.state_dict() for p in plain]
    assert Loader.merge_state_dicts(same) == same[0]
    with pytest.raises(ValueError, match="differ in 'position'"):
        Loader.merge_state_dicts([same[0], {**same[1], "position": 0}])
    for it in its:
        it.close()


def test_a_merged_state_loads_on_any_rank_and_a_bad_one_is_refused():
    table, loaders, states = _states(world=2)
    merged = Loader.merge_state_dicts(states)
    one = Loader(table, 3, seed=4, rank=0, world_size=1, per_column=True, decode=_spec(4, 1))
    one.load_state_dict(merged)
    again = one.state_dict()  # rank 0 of 1 now, every row past the position its own
    assert again["rank"] == 0 and again["world_size"] == 1
    assert again["pack_done"] == merged["pack_done"]
    with pytest.raises(ValueError, match=r"pack_done'\]\[0\]\[0\]=0 must be"):
        one.load_state_dict({**merged, "position": 3, "pack_done": [[0, 1]]})
    with pytest.raises(ValueError, match="names position .* twice"):
        one.load_state_dict({**merged, "pack_done": merged["pack_done"][:1] * 2})
    with pytest.raises(ValueError, match="not a \\[position, tokens\\] pair"):
        one.load_state_dict({**merged, "pack_done": [[merged["position"]]]})
    plain = _unpacked(table, world_size=1)
    with pytest.raises(ValueError, match="'pack_done'.*no Tokens"):
        plain.load_state_dict(merged)


def test_a_state_of_an_earlier_lancetorch_still_resumes_on_as_many_ranks():
    rows = [list(range(i * 100, i * 100 + 3)) for i in range(10)]
    table = _table(rows)
    packing = Loader(table, 2, shuffle=False, per_column=True, decode=_spec(2, 1))
    state = {k: v for k, v in packing.state_dict().items() if k not in ("rank", "pack_done")}
    legacy = {**state, "pack_skip": 2}  # one packed batch of row batch 0 handed out
    resumed = Loader(table, 2, shuffle=False, per_column=True, decode=_spec(2, 1))
    resumed.load_state_dict(legacy)
    assert resumed.state_dict() == legacy
    assert _stream(resumed)[0] == [t for r in rows for t in r][2:]


@pytest.mark.parametrize("tail", [[[], []], [[]], []])
def test_a_full_pass_ends_its_epoch_though_row_batches_without_tokens_close_it(tail):
    """Row batches that bring no token after the last packed batch stay in the carry; the
    state after the pass still says the next epoch, and a resume from it reads that epoch
    whole."""
    rows = [[1, 2], [3, 4], *tail]
    loader = Loader(_table(rows), 2, shuffle=False, per_column=True, decode=_spec(2, 1))
    for epoch in range(2):
        assert _stream(loader)[0] == [1, 2, 3, 4]
        state = loader.state_dict()
        assert (state["epoch"], state["position"], state["pack_done"]) == (epoch + 1, 0, [])
    resumed = Loader(_table(rows), 2, shuffle=False, per_column=True, decode=_spec(2, 1))
    resumed.load_state_dict(state)
    assert _stream(resumed)[0] == [1, 2, 3, 4]


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
    packing = Loader(table, 2, per_column=True, decode=_spec(2, 1), world_size=1)
    next(iter(packing))
    state = packing.state_dict()
    assert state["pack_done"] == [[0, 2]]  # two tokens of the row at position 0
    plain = Loader(table, 2, per_column=True, decode={"t": Tokens(max_length=2, pack=True)})
    with pytest.raises(ValueError, match="pack_done"):
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


def test_a_pass_resumed_from_pack_skip_keeps_it_until_its_first_row_batch():
    """A state taken after such a resume but before its pass read anything (its first read
    failed, say) still says what the loaded one said; once a row batch is fed, the rows."""
    from lancetorch._packing import Packer, Shard

    spec = Tokens(max_length=2, pad_value=-1, pack=True, blocks=1)
    packer = Packer("t", spec, Shard(0, 0, 1, 4, 4, 2), skip=2)
    assert packer.state() == (0, [], 2)
    batch = pa.record_batch([pa.array([[1, 2, 3], [4]], pa.list_(pa.int64()))], names=["t"])
    handed = [b["t"].flatten().tolist() for b in packer.feed(batch)]
    assert handed == [[3, 4]]  # the first two tokens were handed out before
    assert packer.state() == (1, [], 0)
