"""The public API as a user imports it, walked: every public callable and its parameters.

The docstring test, the parameter table (test_parameters.py) and the hostile-argument test
all walk this one list, so that a new public function or parameter is checked by each
without being listed by hand.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import lancetorch
from lancetorch import decode, loader, permutation, query, sampler, streaming, table, util

# What a user imports: the modules and the names in them that make up the public API.
PUBLIC: list[tuple[Any, list[str]]] = [
    (lancetorch, [n for n in lancetorch.__all__ if n != "__version__"]),
    (
        util,
        [
            "tbl_to_tensor",
            "column_to_tensor",
            "to_batch",
            "decode_columns",
            "keep_rows",
            "images_to_column",
            "batch_to_tensor",
            "passthrough",
        ],
    ),
    (permutation, list(permutation.__all__)),
    (sampler, ["BatchSampler", "Windows", "distributed_rank"]),
    (loader, ["Loader"]),
    (streaming, ["StreamingDataset", "StreamingDataLoader"]),
    (decode, ["Tokens", "Text", "Image"]),
    (query, ["TakeQuery", "ScanQuery"]),
    (table, ["as_lancetorch_table"]),
]

# Made by the constructor, documented in the class's docstring.
_CONSTRUCTION = {"__init__", "__new__", "__post_init__"}


def _ours(obj: Any) -> bool:
    return (getattr(obj, "__module__", None) or "").startswith("lancetorch")


def _methods(cls: type) -> Iterator[tuple[str, Callable[..., Any], bool]]:
    """``(name, function, bound)`` for each public method a lancetorch class in ``cls``'s
    MRO defines (``bound``: its first parameter is self or cls); dunder methods only where
    they have a docstring of their own."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not _ours(klass):
            continue
        for name, raw in vars(klass).items():
            if name in seen:
                continue
            seen.add(name)
            dunder = name.startswith("__") and name.endswith("__")
            if name in _CONSTRUCTION or (name.startswith("_") and not dunder):
                continue
            if isinstance(raw, staticmethod):
                func, bound = raw.__func__, False
            elif isinstance(raw, classmethod):
                func, bound = raw.__func__, True
            elif inspect.isfunction(raw):
                func, bound = raw, True
            else:  # properties, attributes: no parameters to document
                continue
            if not _ours(func) or (dunder and not func.__doc__):
                continue
            yield f"{klass.__module__}.{klass.__qualname__}.{name}", func, bound


class Entry(NamedTuple):
    """A public callable: ``name`` as the docstring test reports it, ``obj`` the function or
    class, ``params`` its parameters (self and cls left out), ``owner`` the class of a method
    (``None`` for a function or a constructor), ``bound`` whether a method takes self/cls."""

    name: str
    obj: Any
    params: list[inspect.Parameter]
    owner: type | None
    bound: bool


def entries() -> list[Entry]:
    """Every public callable with parameters, once each (a method inherited by another
    public class is listed under the class that defines it)."""
    out: list[Entry] = []
    seen: set[int] = set()

    def add(entry: Entry) -> None:
        if id(entry.obj) in seen:
            return
        seen.add(id(entry.obj))
        if entry.params:
            out.append(entry)

    for module, names in PUBLIC:
        for attr in names:
            obj = getattr(module, attr)
            qualified = f"{module.__name__}.{attr}"
            if inspect.isclass(obj):
                init = next(
                    (k for k in obj.__mro__ if "__init__" in vars(k) or "__new__" in vars(k)),
                    object,
                )
                if _ours(init):  # a constructor of lancetorch's own
                    params = list(inspect.signature(obj).parameters.values())
                    add(Entry(qualified, obj, params, None, False))
                else:
                    seen.add(id(obj))
                for name, func, bound in _methods(obj):
                    params = list(inspect.signature(func).parameters.values())
                    owner = next(k for k in obj.__mro__ if func.__name__ in vars(k))
                    add(Entry(name, func, params[1:] if bound else params, owner, bound))
            elif callable(obj):
                params = list(inspect.signature(obj).parameters.values())
                add(Entry(qualified, obj, params, None, False))
    return out


def spelled(param: inspect.Parameter) -> str:
    """A parameter's name, ``*args`` and ``**kwargs`` with their stars."""
    if param.kind is param.VAR_POSITIONAL:
        return "*" + param.name
    if param.kind is param.VAR_KEYWORD:
        return "**" + param.name
    return param.name


def documented() -> list[tuple[str, Any, list[str]]]:
    """``(qualified name, object, parameter names)`` for every public callable with
    parameters (self and cls left out; ``*args`` and ``**kwargs`` spelled with their stars)."""
    return [(e.name, e.obj, [spelled(p) for p in e.params]) for e in entries()]
