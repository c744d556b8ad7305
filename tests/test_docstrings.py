"""Docstrings of the public API follow one convention, NumPy's: every function, class (its
constructor's parameters) and public method that takes parameters has a ``Parameters``
section naming each parameter of its signature once, as ``name : type`` with the description
indented below it, and no parameter the signature does not have; its sections come in NumPy's
order, examples last."""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest
from _public_api import documented

_HEADER = re.compile(r"^(\S.*)\n-+$", re.MULTILINE)
_ENTRY = re.compile(r"^(\*{0,2}[A-Za-z_][A-Za-z0-9_]*) : \S.*$")

DOCUMENTED = documented()


def parameter_section(doc: str | None) -> list[str] | None:
    """The names a NumPy ``Parameters`` section lists, in order (``None`` without one).
    Raises AssertionError for a line in it that is neither ``name : type`` nor a description
    indented 4 spaces, or for an entry with no description."""
    if not doc:
        return None
    text = inspect.cleandoc(doc)
    headers = list(_HEADER.finditer(text))
    found = [h for h in headers if h.group(1) == "Parameters"]
    if not found:
        return None
    assert len(found) == 1, "more than one Parameters section"
    start = found[0]
    after = [h.start() for h in headers if h.start() > start.start()]
    body = text[start.end() : after[0] if after else len(text)]
    names: list[str] = []
    described: dict[str, bool] = {}
    for line in body.splitlines():
        if not line.strip():
            continue
        if line.startswith("    "):
            assert names, f"description before the first parameter: {line.strip()!r}"
            described[names[-1]] = True
            continue
        entry = _ENTRY.match(line)
        assert entry, f"not a 'name : type' line in Parameters: {line!r}"
        names.append(entry.group(1))
        described.setdefault(entry.group(1), False)
    bare = [n for n, d in described.items() if not d]
    assert not bare, f"parameters without a description indented 4 spaces: {bare}"
    return names


# NumPy's order of the sections after the summary.
_ORDER = ["Parameters", "Returns", "Yields", "Raises", "Warns", "See Also", "Notes", "Examples"]


def section_order_problem(doc: str | None) -> str | None:
    """What is out of NumPy's order in ``doc``: a section after one that comes later, or an
    example (``>>>``) outside the ``Examples`` section; ``None`` when nothing is."""
    if not doc:
        return None
    text = inspect.cleandoc(doc)
    headers = [(h.group(1), h.start()) for h in _HEADER.finditer(text) if h.group(1) in _ORDER]
    for (first, _), (second, _) in zip(headers, headers[1:]):
        if _ORDER.index(first) >= _ORDER.index(second):
            return f"section {second} comes after {first}"
    examples = next((at for name, at in headers if name == "Examples"), len(text))
    if ">>>" in text[:examples]:
        return "an example (>>>) outside the Examples section"
    return None


def test_the_walk_finds_the_public_api() -> None:
    """The walk is not empty, and reaches functions, constructors and methods alike."""
    names = {name for name, _, _ in DOCUMENTED}
    for expected in [
        "lancetorch.connect",
        "lancetorch.Connection",
        "lancetorch.db.Connection.create_table",
        "lancetorch.query.TableQueries.take_offsets",
        "lancetorch.util.to_batch",
        "lancetorch.permutation.Permutation",
        "lancetorch.permutation.view.Permutation.identity",
        "lancetorch.permutation.formats.Transforms.arrow2torch",
        "lancetorch.sampler.BatchSampler",
        "lancetorch.loader.Loader",
        "lancetorch.streaming.StreamingDataset",
        "lancetorch.decode.Tokens",
        "lancetorch.query.ScanQuery.limit",
    ]:
        assert expected in names, f"{expected} is not in the walk"
    assert len(DOCUMENTED) > 80


@pytest.mark.parametrize(
    ("name", "obj", "params"), DOCUMENTED, ids=[name for name, _, _ in DOCUMENTED]
)
def test_parameters_section_names_each_parameter(name: str, obj: Any, params: list[str]) -> None:
    try:
        listed = parameter_section(obj.__doc__)
    except AssertionError as e:
        pytest.fail(f"{name}: {e}")
    assert listed is not None, (
        f"{name}: no NumPy 'Parameters\\n----------' section; it takes {params}"
    )
    problem = section_order_problem(obj.__doc__)
    assert problem is None, f"{name}: {problem}"
    missing = [p for p in params if p not in listed]
    extra = [p for p in listed if p not in params]
    twice = sorted({p for p in listed if listed.count(p) > 1})
    assert not (missing or extra or twice), (
        f"{name}: Parameters section does not match the signature {params}: "
        f"missing {missing}, not in the signature {extra}, listed more than once {twice}"
    )


def test_parameter_section_parser() -> None:
    """The parser reads NumPy sections and refuses what is not one."""
    doc = """Summary.

        Parameters
        ----------
        data : pa.Table
            The rows.
        **options : Any
            More.

        Returns
        -------
        int
            A count.
        """
    assert parameter_section(doc) == ["data", "**options"]
    assert parameter_section("Summary.\n\n    Args:\n        data: the rows.\n") is None
    with pytest.raises(AssertionError, match="without a description"):
        parameter_section("Summary.\n\nParameters\n----------\ndata : int\nmore : int\n    x\n")
    with pytest.raises(AssertionError, match="not a 'name : type' line"):
        parameter_section("Summary.\n\nParameters\n----------\ndata: int\n    x\n")
    assert section_order_problem(doc) is None
    assert section_order_problem("S.\n\n>>> 1\n1\n\nParameters\n----------\nx : int\n    x\n")
    assert section_order_problem("S.\n\nRaises\n------\nE\n    e\n\nReturns\n-------\nint\n")


def test_dir_of_the_package_shows_its_api_only() -> None:
    """``dir(lancetorch)`` lists what users call and the modules they import from, not the
    package's own imports; every name in it resolves in a fresh interpreter (a module on
    first use)."""
    import subprocess
    import sys

    script = (
        "import lancetorch; names = dir(lancetorch); "
        "[getattr(lancetorch, n) for n in names]; print(' '.join(names))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    names = set(out.stdout.split())
    assert {"connect", "Table", "StorageReadError", "loader", "permutation"} <= names
    assert not {"os", "warnings", "annotations", "version", "PackageNotFoundError"} & names
    assert not [n for n in names if n.startswith("_") and n != "__version__"]
