"""Permutations: lazy, shuffled, split, filtered, column-selected views of a table.

Build a permutation table with :class:`PermutationBuilder` (``permutation_builder(table)``):
it holds each chosen row's row id in the base table and its split id, in read order, laid out
as LanceDB lays out its own (either library reads the other's). A :class:`Permutation` reads
one split of it (split 0 unless told; or all rows, ``Permutation.identity``) as a PyTorch
map-style Dataset, in the output format asked for.

The permutation math (seeded shuffles, clumps, splits, hashing) runs in the Rust core; the same
seed gives the same order on every machine and every release. SQL (``filter``,
``split_calculated``) is evaluated by Lance's SQL engine, for memory tables too.
"""

from .builder import PermutationBuilder, permutation_builder
from .formats import Transforms
from .layout import ROW_ID, SPLIT_ID, split_names_of
from .splits import Permutations
from .view import DEFAULT_BATCH_SIZE, Permutation, ReadPlan

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "ROW_ID",
    "SPLIT_ID",
    "Permutation",
    "PermutationBuilder",
    "Permutations",
    "ReadPlan",
    "Transforms",
    "permutation_builder",
    "split_names_of",
]
