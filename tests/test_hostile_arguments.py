"""Hostile arguments: every public parameter, called with the values a training script's typo
makes (0, -1, 2**31, 2**63 - 1, 2**64, 10**30, NaN, inf, -0.0, True, a string, None). Each call
must return, or raise one of the documented Python exceptions, within seconds; none may abort,
crash or hang the interpreter.

The entry points are found, not listed: tests/_public_api.py walks the public API and its
signatures (constructors included), and each parameter it finds is called through its row in
tests/test_parameters.py (which fails for a parameter without one), the others held at
baseline values; the few parameters that table exempts are called through ``EXEMPT_CALLS``
here (the walk fails for an exempt parameter without one). ``SCENARIOS`` adds calls a single
parameter does not reach: a value inside a state dict, a size beside another setting.

The calls run in child processes (a crash there fails the test, naming the call, instead of
ending the test run), each under an alarm. ``make fuzz`` (``LANCETORCH_FUZZ=long``) adds more
values: negatives past the int64 range, fractions, bytes, containers, other objects.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest
from _public_api import entries, spelled
from lancetorch.permutation import ReadPlan
from test_parameters import CASES, EXEMPT

VALUES = [
    "0",
    "1",
    "-1",
    "2**31",
    "2**32",
    "2**63 - 1",
    "2**64",
    "10**30",
    "float('nan')",
    "float('inf')",
    "-0.0",
    "True",
    "'7'",
    "None",
]
if os.environ.get("LANCETORCH_FUZZ") == "long":  # `make fuzz`: more values for every call
    VALUES += [
        "-2**31",
        "-2**63",
        "2**63",
        "-10**30",
        "float('-inf')",
        "1.5",
        "-1.5",
        "1e300",
        "False",
        "b'1'",
        "'-1'",
        "''",
        "[]",
        "{}",
        "(1, 2)",
        "[1, 'a']",
        "{'a': 1}",
        "complex(1, 1)",
        "object()",
    ]

# Calls a single parameter's row does not reach, each a line of Python (run with exec) over
# `v` (the hostile value), `t` (a 100-row memory table of id, x, tok (token lists), img (PNG
# bytes)), `p` (a Permutation of t) and `batch` (a take of t).
SCENARIOS = {
    # A hostile value inside a list, a tuple or an expression.
    "Table.__getitems__ [v]": "t.__getitems__([v])",
    "Table.take_row_ids [v]": "t.take_row_ids([v]).to_arrow()",
    "Table.take_offsets [v]": "t.take_offsets([v]).to_arrow()",
    "Permutation.take_offsets [v]": "p.take_offsets([v])",
    "split_random counts [v]": "permutation_builder(t).split_random(counts=[v]).execute()",
    "split_random ratios [v]": "permutation_builder(t).split_random(ratios=[v]).execute()",
    "split_random ratios [v, 0.5]": "permutation_builder(t).split_random(ratios=[v, 0.5]).execute()",
    "split_hash weights [v]": "permutation_builder(t).split_hash(['id'], [v]).execute()",
    "split_calculated id * v": "permutation_builder(t).split_calculated(f'id * {v!r}').execute()",
    "Image size (v, 4)": "to_batch(batch.select(['img']), {'img': Image(size=(v, 4))})",
    "Image scale (v, 1.0)": "Image(size=(4, 4), scale=(v, 1.0))",
    "Image ratio (v, 2.0)": "Image(size=(4, 4), ratio=(v, 2.0))",
    "images_to_column quality=v": "images_to_column([np.zeros((4, 4, 3), np.uint8)], format='JPEG', quality=v)",
    "Permutations[v]": "Permutations(t, perm)[v]",
    # A size beside another setting that changes how it is used.
    "Tokens max_length, padded to it": "to_batch(batch.select(['tok']), {'tok': Tokens(max_length=v, pad_to_max_length=True)})",
    "Tokens pack max_length": "to_batch(batch.select(['tok']), {'tok': Tokens(max_length=v, pack=True)})",
    "Tokens pack pad_value": "to_batch(batch.select(['tok']), {'tok': Tokens(max_length=4, pad_value=v, pack=True)})",
    "Tokens pack blocks": "to_batch(batch.select(['tok']), {'tok': Tokens(max_length=4, pack=True, blocks=v)})",
    "Loader batch_size, per_column": "next(iter(Loader(p.select_columns(['id', 'tok']), v, per_column=True, decode={'tok': Tokens()})))",
    "StreamingDataset num_splits, world_size 2": "next(iter(StreamingDataset(t, num_splits=v, world_size=2, columns=['id'])))",
    # A hostile value inside a state dict.
    "StreamingDataset load_state_dict samples": "StreamingDataset(t, num_splits=2).load_state_dict({'num_splits': 2, 'shuffle_seed': 0, 'epoch': 0, 'samples_consumed_per_split': [v, v]})",
    "BatchSampler load_state_dict epoch": "s = BatchSampler(100, 8, seed=0); s.load_state_dict({**s.state_dict(), 'epoch': v}); next(iter(s))",
    "BatchSampler load_state_dict position": "s = BatchSampler(100, 8, seed=0); s.load_state_dict({**s.state_dict(), 'position': v}); next(iter(s))",
    "BatchSampler load_state_dict seed": "s = BatchSampler(100, 8, seed=0); s.load_state_dict({**s.state_dict(), 'seed': v}); next(iter(s))",
    "BatchSampler load_state_dict shape": "BatchSampler(100, 8, seed=0).load_state_dict({'epoch': v})",
    "Loader load_state_dict position": "l = Loader(p.select_columns(['id']), 8, seed=0); l.load_state_dict({**l.state_dict(), 'position': v}); next(iter(l))",
    "Loader load_state_dict shape": "Loader(p.select_columns(['id']), 8, seed=0).load_state_dict({'position': v})",
    "Loader load_state_dict pack_done": "l = Loader(p.select_columns(['tok']), 8, seed=0, per_column=True, decode={'tok': Tokens(max_length=4, pack=True, blocks=2)}); l.load_state_dict({**l.state_dict(), 'rank': None, 'pack_done': [[v, v]]}); next(iter(l))",
    "Loader load_state_dict rank": "l = Loader(p.select_columns(['tok']), 8, seed=0, per_column=True, decode={'tok': Tokens(max_length=4, pack=True, blocks=2)}); l.load_state_dict({**l.state_dict(), 'rank': v}); next(iter(l))",
    "Loader merge_state_dicts pack_done": "l = Loader(p.select_columns(['tok']), 8, seed=0, per_column=True, decode={'tok': Tokens(max_length=4, pack=True, blocks=2)}); Loader.merge_state_dicts([{**l.state_dict(), 'pack_done': [[v, 1]], 'position': v}])",
    "connect read_consistency_interval": "lancetorch.connect('memory://', read_consistency_interval=v)",
    "Table.checkout": "lancetorch.connect('memory://').create_table('a', pa.table({'id': [1]})).checkout(v)",
    "Table.checkout disk": "import tempfile; lancetorch.connect(tempfile.mkdtemp()).create_table('a', pa.table({'id': [1]})).checkout(v)",
}

# The parameters tests/test_parameters.py exempts (no result shows them), called directly.
EXEMPT_CALLS = {
    "lancetorch.Connection:uri": "lancetorch.Connection(v).table_names()",
    "lancetorch.Connection:storage_options": "lancetorch.Connection('memory://', v).table_names()",
    "lancetorch.Connection:read_timeout": "lancetorch.Connection('memory://', None, v).table_names()",
    "lancetorch.Connection:read_consistency_interval": "lancetorch.Connection('memory://', None, None, v).table_names()",
    "lancetorch.Table:read_consistency_interval": "lancetorch.Table('t', t._backend, read_consistency_interval=v).head(2)",
    "lancetorch.Table:pinned": "lancetorch.Table('t', t._backend, pinned=v).head(2)",
    "lancetorch.Table:name": "lancetorch.Table(v, t._backend).head(2)",
    "lancetorch.Table:backend": "lancetorch.Table('t', v).head(2)",
    "lancetorch.query.TakeQuery:table": "TakeQuery(v, [0]).to_arrow()",
    "lancetorch.query.TakeQuery:offsets": "TakeQuery(t, v).to_arrow()",
    "lancetorch.query.ScanQuery:table": "ScanQuery(v).to_arrow()",
    "lancetorch.permutation.Permutation:base_table": "Permutation(v, None)[0]",
    "lancetorch.permutation.Permutation:rows": "Permutation(t, v)[0]",
    "lancetorch.permutation.Permutation:permutation_table": "Permutation(t, None, permutation_table=v)[0]",
    "lancetorch.permutation.Permutation:split": "Permutation(t, None, split=v)[0]",
    "lancetorch.permutation.Permutation:selection": "Permutation(t, None, selection=v)[0]",
    **{
        f"lancetorch.permutation.ReadPlan:{field}": (
            f"dataclasses.replace(p.read_plan(), {field}=v)"
        )
        for field in (f.name for f in dataclasses.fields(ReadPlan))
    },
    **{
        f"lancetorch.permutation.formats.Transforms.{name}:batch": f"Transforms.{name}(v)"
        for name in (
            "arrow2arrow",
            "arrow2python",
            "arrow2python_col",
            "arrow2polars",
            "arrow2pandas",
            "arrow2numpy",
            "arrow2torch_col",
            "arrow2torch",
            "arrow2torch_dict",
        )
    },
    "lancetorch.decode.Tokens.decode:epoch": "Tokens().decode(batch.to_batches()[0], 'tok', v)",
    "lancetorch.decode.Text.decode:epoch": "Text().decode(pa.record_batch({'s': ['a']}), 's', v)",
    "lancetorch.AsyncConnection:*args": "lancetorch.AsyncConnection(v)",
    "lancetorch.AsyncConnection:**kwargs": "lancetorch.AsyncConnection(option=v)",
    "lancetorch.connect_async:uri": "asyncio.run(lancetorch.connect_async(v))",
    "lancetorch.connect_async:**kwargs": "asyncio.run(lancetorch.connect_async('memory://', option=v))",
}


# For a walked ``**kwargs``: the keyword the hostile value is given as (default "option").
KEYWORDS = {
    "lancetorch.connect:**enterprise": "read_consistency_interval",
    "lancetorch.table.Table.to_pandas:**kwargs": "strings_to_categorical",
    "lancetorch.table.Table.to_polars:**kwargs": "rechunk",
    "lancetorch.query.TakeQuery.to_pandas:**kwargs": "strings_to_categorical",
    "lancetorch.query.TableQueries.search:**kwargs": "limit",
    "lancetorch.util.images_to_column:**save": "quality",
    "lancetorch.streaming.StreamingDataLoader:**kwargs": "batch_size",
}


def _walked() -> dict[str, str]:
    """A line of Python for each public parameter the walk finds: its row in
    test_parameters.py run with the hostile value (as one keyword or positional argument
    where the row takes ``**kwargs`` or ``*args`` whole), or its exempt call."""
    out = {}
    for entry in entries():
        for param in entry.params:
            key = f"{entry.name}:{spelled(param)}"
            if key in CASES:
                if param.kind is param.VAR_KEYWORD:
                    wrapped = f"{{{KEYWORDS.get(key, 'option')!r}: v}}"
                elif param.kind is param.VAR_POSITIONAL:
                    wrapped = "(v,)"
                else:
                    wrapped = "v"
                out[key] = f"CASES[{key!r}].run({wrapped})"
            else:
                out[key] = EXEMPT_CALLS.get(key, f"raise LookupError({key!r})")
    return out


WALKED = _walked()


def test_every_exempt_parameter_has_a_call():
    missing = sorted(set(EXEMPT) - set(EXEMPT_CALLS))
    stale = sorted(set(EXEMPT_CALLS) - set(EXEMPT))
    assert not missing, f"exempt parameters without a call in EXEMPT_CALLS: {missing}"
    assert not stale, f"calls in EXEMPT_CALLS for parameters no longer exempt: {stale}"


# What a call may raise: a documented, catchable refusal.
ALLOWED = {
    "ValueError",
    "TypeError",
    "IndexError",
    "OverflowError",
    "MemoryError",
    "KeyError",
    "StopIteration",
    "FileNotFoundError",  # a table name that names no table
    "NotImplementedError",  # LanceDB's asynchronous API, which says what to use
}

CHILD = textwrap.dedent(
    """
    import asyncio, dataclasses, io, json, signal, sys, warnings
    sys.path.insert(0, sys.argv[2])  # the tests folder: test_parameters' rows
    warnings.simplefilter("ignore")  # a debug build's warning, deprecations: not refusals
    import numpy as np, pyarrow as pa
    from PIL import Image as PILImage
    import lancetorch
    from lancetorch.decode import Image, Text, Tokens
    from lancetorch.loader import Loader
    from lancetorch.permutation import Permutation, Permutations, permutation_builder
    from lancetorch.permutation.formats import Transforms
    from lancetorch.query import ScanQuery, TakeQuery
    from lancetorch.sampler import BatchSampler
    from lancetorch.streaming import StreamingDataset
    from lancetorch.util import images_to_column, to_batch
    from test_parameters import CASES

    png = io.BytesIO()
    PILImage.fromarray(np.zeros((6, 6, 3), np.uint8)).save(png, format="PNG")
    t = lancetorch.connect("memory://").create_table("t", pa.table({
        "id": np.arange(100), "x": np.arange(100) * 0.5,
        "tok": pa.array([[1, 2, 3]] * 100, pa.list_(pa.int32())),
        "img": pa.array([png.getvalue()] * 100, pa.binary()),
    }))
    perm = permutation_builder(t).split_sequential(counts=[60, 40]).execute()
    p = Permutation.identity(t).with_format("arrow")
    batch = t.__getitems__([0, 1, 2])

    def alarm(*_):
        raise TimeoutError("no answer within 20 s")

    signal.signal(signal.SIGALRM, alarm)
    for name, expression, value in json.loads(sys.stdin.read()):
        v = eval(value)
        print(json.dumps(["start", name, value]), flush=True)
        signal.alarm(20)
        try:
            exec(expression)
            outcome = "ok"
        except BaseException as e:
            outcome = type(e).__name__ + ": " + str(e)[:200]
        signal.alarm(0)
        print(json.dumps(["done", name, value, outcome]), flush=True)
    """
)


def _group(key: str) -> str:
    """The module a walked parameter's callable is in (one child process runs each)."""
    return ".".join(key.split(":")[0].split(".")[:2])


GROUPS: dict[str, list[tuple[str, str]]] = defaultdict(list)
for _key, _expression in WALKED.items():
    GROUPS[_group(_key)].append((_key, _expression))
for _key, _expression in SCENARIOS.items():
    GROUPS["scenarios"].append((_key, _expression))


def _run(calls: list[tuple[str, str]]) -> list[str]:
    """Run every call with every value in child processes; what went wrong, one line each.
    A child that dies is reported and a new one goes on from the next call."""
    cases = [(name, expression, value) for name, expression in calls for value in VALUES]
    problems: list[str] = []
    while cases:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, "", str(Path(__file__).parent)],
            input=json.dumps(cases),
            capture_output=True,
            text=True,
            timeout=900,
        )
        lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("[")]
        started = [line for line in lines if line[0] == "start"]
        done = [line for line in lines if line[0] == "done"]
        # lancetorch's own panics print nothing; pylance's (its planner has todo!()s that
        # some SQL reaches, caught and raised as errors) print from its own binary, out of
        # our reach.
        problems += [
            f"a Rust panic reached stderr: {line}"
            for line in proc.stderr.splitlines()
            if "panicked at" in line and "/rust/lance" not in line
        ]
        problems += [
            f"{name} with v={value}: undocumented {outcome}"
            for _, name, value, outcome in done
            if outcome != "ok" and outcome.split(":")[0] not in ALLOWED
        ]
        if proc.returncode == 0:
            assert len(done) == len(cases), proc.stderr[-2000:]
            break
        if not started:
            problems.append(f"the child did not start (exit {proc.returncode}): {proc.stderr}")
            break
        _, name, value = started[-1]
        problems.append(
            f"the interpreter died (exit {proc.returncode}) in {name} with v={value}: "
            f"{proc.stderr[-1500:]}"
        )
        cases = cases[len(started) :]
    return problems


def test_the_walk_finds_the_public_api():
    # Every public callable the docstring test knows is walked here, constructors included.
    assert len(WALKED) == sum(len(e.params) for e in entries())
    assert "lancetorch.sampler.BatchSampler:data_source" in WALKED
    assert "lancetorch.loader.Loader:batch_size" in WALKED
    assert not [k for k, e in WALKED.items() if e.startswith("raise LookupError")]


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_no_hostile_value_crashes_or_hangs(group):
    problems = _run(GROUPS[group])
    assert not problems, "\n".join(problems)


_REPEATED_WIDE_ROWS = """
import numpy as np, pyarrow as pa, lancetorch

width = 1 << 20  # 4 MiB a row
emb = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(2 * width, np.float32)), width)
t = lancetorch.connect("memory://").create_table("t", pa.table({"id": [0, 1], "emb": emb}))
offsets = np.zeros(10**7, np.int64)  # row 0 ten million times: 42 TB
for what, call in [
    ("take_offsets", lambda: t.take_offsets(offsets).to_arrow()),
    ("__getitems__", lambda: t.__getitems__(offsets)),
]:
    try:
        call()
        print(what, "returned")
    except MemoryError as e:
        print(what, "MemoryError", e)
"""


def test_a_take_larger_than_memory_is_a_memory_error():
    """Offsets repeating a wide row ask for more than the rows held (row 0 of a 4 MiB column
    ten million times); the take's buffer was allocated unchecked and failed as a "bug to
    report" RuntimeError from the allocator. Run in a child, where an abort fails this test."""
    proc = subprocess.run(
        [sys.executable, "-c", _REPEATED_WIDE_ROWS], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert [line.split(" ")[:2] for line in lines] == [
        ["take_offsets", "MemoryError"],
        ["__getitems__", "MemoryError"],
    ], proc.stdout
    assert all("a take of 10000000 rows would take 41943" in line for line in lines), lines
