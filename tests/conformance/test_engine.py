"""The checks themselves: each property rejects a run that breaks it (a suite whose checks
cannot fail proves nothing)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .cases import Case, cases
from .engine import Result, check_decoded, check_order, check_rows

IDS = np.arange(100, dtype=np.int64)
SHUFFLED = np.random.default_rng(0).permutation(100)


def _result(*ranks: np.ndarray, before: list | None = None) -> Result:
    phases = [] if before is None else [[[b] for b in before]]
    return Result(phases=phases + [[[r] for r in ranks]], expected=IDS, states=[])


def test_a_row_twice_or_missing_fails():
    case = Case(path="dataloader")
    check_rows(case, _result(SHUFFLED))
    with pytest.raises(AssertionError, match="once"):
        check_rows(case, _result(np.concatenate([SHUFFLED[:-1], SHUFFLED[:1]])))
    with pytest.raises(AssertionError, match="once"):
        check_rows(case, _result(SHUFFLED[:-1]))


def test_padding_must_repeat_the_first_rows_to_read():
    case = Case(path="sampler", ranks=3)
    order = np.concatenate([SHUFFLED, SHUFFLED[:2]])  # 100 rows over 3 ranks: 34 each
    check_rows(case, _result(order[0::3], order[1::3], order[2::3]))
    wrong = np.concatenate([SHUFFLED, SHUFFLED[5:7]])
    with pytest.raises(AssertionError, match="padding"):
        check_rows(case, _result(wrong[0::3], wrong[1::3], wrong[2::3]))
    with pytest.raises(AssertionError, match="different numbers"):
        check_rows(case, _result(order[0::3], order[1::3], order[2::3][:-1]))


def test_a_resume_must_start_where_the_state_says():
    case = Case(path="sampler", ranks="2>3", resume=True)
    before = [SHUFFLED[:20:2], SHUFFLED[1:20:2]]
    rest = np.concatenate([SHUFFLED[20:], SHUFFLED[20:21]])  # 80 rows over 3 ranks: 27 each
    result = _result(rest[0::3], rest[1::3], rest[2::3], before=before)
    result.states = [{"position": 20}, {"position": 20}]
    check_rows(case, result)
    result.states = [{"position": 20}, {"position": 22}]
    with pytest.raises(AssertionError, match="different states"):
        check_rows(case, result)
    result.states = [{"position": 18}, {"position": 18}]
    with pytest.raises(AssertionError, match="position"):
        check_rows(case, result)


def test_an_unshuffled_read_fails_the_shuffle_check_and_back():
    with pytest.raises(AssertionError, match="correlates"):
        check_order(Case(path="dataloader"), _result(IDS), IDS)
    check_order(Case(path="dataloader"), _result(SHUFFLED), SHUFFLED)
    with pytest.raises(AssertionError, match="storage order"):
        check_order(Case(path="dataloader", shuffle=False), _result(SHUFFLED), SHUFFLED)


def test_a_declared_output_missing_or_wrong_fails():
    ids = np.array([3, 8])
    good = {
        "tokens": torch.tensor([[3, 3, 3, 3], [8, -1, -1, -1]]),  # row 3: 4 tokens, row 8: 1
        "tokens_document": torch.tensor([[0, 0, 0, 0], [1, -1, -1, -1]]),
    }
    check_decoded(good, ids, "pack", None)
    with pytest.raises(AssertionError, match="tokens_document"):
        check_decoded({"tokens": good["tokens"]}, ids, "pack", None)
    with pytest.raises(AssertionError, match="differ from to_batch"):
        check_decoded(good, ids, "pack", {"tokens", "tokens_document", "tokens_length"})
    wrong = {**good, "tokens_document": torch.tensor([[0, 0, 0, 1], [1, -1, -1, -1]])}
    with pytest.raises(AssertionError, match="packed token"):
        check_decoded(wrong, ids, "pack", None)
    with pytest.raises(AssertionError, match="text"):
        check_decoded({"text": ["row3", "row9"]}, ids, "text", None)


def test_the_case_list_is_stable_and_large_enough():
    full, again, part = cases(full=True), cases(full=True), cases(full=False)
    assert [c.id for c in full] == [c.id for c in again]
    assert len(full) >= 500 and len({c.id for c in full}) == len(full)
    assert 40 <= len(part) <= 80
    for c in part + full:
        assert c.path in ("dataloader", "perm", "sampler", "loader", "streaming")
    # The slice touches every path, storage, worker kind, decode spec and setting.
    for dim in ("path", "storage", "workers", "decode", "resume", "filter", "deleted", "split"):
        assert {getattr(c, dim) for c in full} == {getattr(c, dim) for c in part}, dim
