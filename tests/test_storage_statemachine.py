"""The SQLite adapters agree with the in-memory reference on random operation sequences."""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from kaspi_identity.storage import Storage
from kaspi_identity.storage.memory import memory_storage
from kaspi_identity.storage.sqlite import sqlite_storage
from kaspi_identity.testing import make_comparison_machine

BOUNDED = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_sqlite_agrees_with_memory(tmp_path: Path) -> None:
    """Random sequences on all five protocols give the same answers from SQLite and memory."""
    files = itertools.count()

    def candidate() -> Storage:
        return sqlite_storage(tmp_path / f"run-{next(files)}.sqlite3", synchronous="NORMAL")

    run_state_machine_as_test(make_comparison_machine(candidate), settings=BOUNDED)


def test_memory_agrees_with_itself() -> None:
    """The machine itself is sound: two memory storages always agree."""
    machine = make_comparison_machine(memory_storage)
    run_state_machine_as_test(machine, settings=settings(BOUNDED, max_examples=30))
