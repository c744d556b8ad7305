"""Errors keep their cause: no ``raise ... from None`` in the package, so a wrapped failure
(Lance's, pyarrow's, the OS's) stays in the traceback under the message that names what to
do."""

from __future__ import annotations

import ast
from pathlib import Path

import lancetorch
import pyarrow as pa
import pytest

PACKAGE = Path(lancetorch.__file__).parent


def _raises_from_none(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Raise)
        and isinstance(node.cause, ast.Constant)
        and node.cause.value is None
    ]


def test_no_error_hides_its_cause():
    found = {
        str(p.relative_to(PACKAGE)): lines
        for p in sorted(PACKAGE.rglob("*.py"))
        if (lines := _raises_from_none(p))
    }
    assert found == {}, f"raise ... from None hides the cause at {found}: use 'from err'"


def test_the_scan_finds_a_hidden_cause(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("try:\n    pass\nexcept OSError:\n    raise ValueError('x') from None\n")
    assert _raises_from_none(sample) == [4]


def test_a_filter_lances_cannot_evaluate_keeps_lances_error(mem_db):
    from lancetorch.permutation import permutation_builder

    table = mem_db.create_table("t", pa.table({"a": [1, 2, 3]}))
    with pytest.raises(ValueError, match="cannot be evaluated") as info:
        permutation_builder(table).filter("no_such_column > 1").execute()
    assert info.value.__cause__ is not None
