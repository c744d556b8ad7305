"""The outside-in conformance matrix (issue 22): every reading path, checked against numpy."""

from __future__ import annotations

import pytest

from .cases import Case, cases
from .engine import check

CASES = cases()


# Known items of issue 22 being fixed in parallel: the lead removes a mark once its fix is in.
ITEM_2 = "issue 22 item 2: Loader drops <column>_document of Tokens(pack=True)"


def _marks(case: Case) -> list:
    marks = [pytest.mark.slow] if case.workers != "0" else []
    if case.path == "loader" and case.decode == "pack":
        marks.append(pytest.mark.xfail(strict=True, reason=ITEM_2))
    return marks


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=_marks(c)) for c in CASES])
def test_case(case, workspace, reference_orders):
    check(workspace, case, reference_orders)
