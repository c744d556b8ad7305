"""The outside-in conformance matrix (issue 22): every reading path, checked against numpy."""

from __future__ import annotations

import pytest

from .cases import Case, cases
from .engine import check

CASES = cases()


def _marks(case: Case) -> list:
    return [pytest.mark.slow] if case.workers != "0" else []


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=_marks(c)) for c in CASES])
def test_case(case, workspace, reference_orders):
    check(workspace, case, reference_orders)
