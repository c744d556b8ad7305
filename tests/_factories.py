"""Connection factories for DataLoader worker tests. They live in a module of their own so that
spawned workers can import them by name (tests/ must be on the workers' path: PYTHONPATH)."""

from __future__ import annotations

import os

import lancetorch

DB_ENV = "LANCETORCH_TEST_FACTORY_DB"
SECRET_ENV = "LANCETORCH_TEST_FACTORY_SECRET"


def open_table(name: str) -> lancetorch.Table:
    """Reopen `name` from the directory in $LANCETORCH_TEST_FACTORY_DB, loading the storage
    credentials from the environment inside the worker (they never travel in a pickle)."""
    db = lancetorch.connect(
        os.environ[DB_ENV], storage_options={"secret_key": os.environ[SECRET_ENV]}
    )
    return db.open_table(name)
