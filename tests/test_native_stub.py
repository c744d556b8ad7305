"""The type stub lancetorch/_native.pyi names exactly what the built extension has."""

from __future__ import annotations

import ast
from pathlib import Path

import lancetorch
from lancetorch import _native

STUB = ast.parse((Path(lancetorch.__file__).parent / "_native.pyi").read_text())


def _public(names):
    return {n for n in names if not n.startswith("__") or n in ("__dlpack__", "__dlpack_device__")}


def test_module_names_match_the_stub():
    stubbed = {n.name for n in STUB.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    stubbed |= {n.target.id for n in STUB.body if isinstance(n, ast.AnnAssign)}
    assert _public(dir(_native)) == stubbed


def test_class_methods_match_the_stub():
    for node in (n for n in STUB.body if isinstance(n, ast.ClassDef)):
        stubbed = {f.name for f in node.body if isinstance(f, ast.FunctionDef)} - {"__init__"}
        built = {n for n in _public(dir(getattr(_native, node.name))) if not n.startswith("_")}
        built |= _public(dir(getattr(_native, node.name))) & {"__dlpack__", "__dlpack_device__"}
        assert built == stubbed, node.name
