"""The conformance matrix on lancedb 0.40, where its API overlaps lancetorch's (not part of the
test run, nor of CI): a DataLoader over a Table, a Permutation in each format LanceDB has
(read by a DataLoader, by ``iter`` in order, by plain iteration) and ``StreamingDataset``.
BatchSampler, Loader, decode specs on torch_dict, windows and a shuffled or sharded
``Permutation.iter`` are lancetorch's own and left out.

Prints each case's outcome and, per property, how many cases failed it::

    python tests/conformance/run_lancedb.py [--slice] [--path streaming] [-v]
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conformance.cases import Case, cases  # noqa: E402
from conformance.engine import Lib, Workspace, check, scratch  # noqa: E402

# lancedb's names for lancetorch's formats (README "Coming from LanceDB").
_FORMATS = {"torch_dict": "torch", "torch": "torch_row"}


class LanceDB(Lib):
    """lancedb 0.40's functions, where lancetorch's engine calls them."""

    name = "lancedb"

    def connect(self, uri: str) -> Any:
        import lancedb

        return lancedb.connect(uri)

    def delete(self, db: Any, table: Any, name: str, where: str) -> Any:
        table.delete(where)
        return db.open_table(name)

    def format(self, fmt: str) -> str:
        return _FORMATS.get(fmt, fmt)

    def permutation_builder(self, table: Any) -> Any:
        from lancedb.permutation import permutation_builder

        return permutation_builder(table)

    @property
    def Permutation(self) -> Any:
        from lancedb.permutation import Permutation

        return Permutation

    @property
    def streaming(self) -> Any:
        import lancedb.streaming

        return lancedb.streaming


def overlaps(case: Case) -> bool:
    """Whether lancedb 0.40 has the API this case reads through."""
    if case.path in ("sampler", "loader") or case.storage == "windows":
        return False
    if case.path == "perm":
        if case.decode != "none":
            return False  # decode specs are lancetorch's
        if case.mode == "iter" and (case.shuffle or case.rank_counts != (1, 1)):
            return False  # lancedb's iter has no shuffle, seed or ranks
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slice", action="store_true", help="the default run's slice only")
    parser.add_argument("--path", help="only this path (dataloader, perm, streaming)")
    parser.add_argument("-v", action="store_true", help="print each failure's traceback")
    args = parser.parse_args()
    todo = [c for c in cases(full=not args.slice) if overlaps(c)]
    if args.path:
        todo = [c for c in todo if c.path == args.path]
    ws = Workspace(scratch(), LanceDB())
    refs: dict = {}
    failed: Counter = Counter()
    by_path: Counter = Counter()
    start = time.time()
    for case in todo:
        try:
            check(ws, case, refs)
            outcome = "ok"
        except Exception as err:  # every failure is a finding here, counted by its kind
            first = (str(err).splitlines() or [""])[0][:110]
            outcome = f"{type(err).__name__}: {first}"
            failed[f"{case.path}: {outcome}"] += 1
            if args.v:
                traceback.print_exc()
        by_path[(case.path, outcome == "ok")] += 1
        print(f"{outcome[:140]:<60} {case.id}", flush=True)
    print(f"\n{len(todo)} cases in {time.time() - start:.0f} s")
    for path in ("dataloader", "perm", "streaming"):
        print(f"  {path}: {by_path[(path, True)]} passed, {by_path[(path, False)]} failed")
    print("failures by kind:")
    for what, count in failed.most_common():
        print(f"  {count:4d}  {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
