"""The conformance suite's fixtures: one workspace of tables for the session, and the
reference orders its cases share."""

from __future__ import annotations

import warnings

import pytest

from .engine import Workspace


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("conformance"))


@pytest.fixture(scope="session")
def reference_orders() -> dict:
    """Orders of one-process reads, by case: made once, compared by every case like it."""
    return {}


@pytest.fixture(autouse=True)
def _lancetorch_silences_the_fork_warning():
    """lancetorch silences pylance's fork warning for the process once it opens a dataset;
    pytest restores the warning filters after each test, and the session's tables were opened
    in an earlier one, so the filter is set again here as the process would hold it."""
    warnings.filterwarnings(
        "ignore", message="lance is not fork-safe", category=UserWarning, module="lance"
    )
