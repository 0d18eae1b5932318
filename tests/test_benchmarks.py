"""The benchmarks still run against the library as it is (their figures are never asserted).

A benchmark is only run by hand, so a change of behaviour can break one unnoticed: issue
15's "reset codes go only to verified phones" made ``bench_flows.py`` fail on its first SMS
until its set-up verified the phones. These smoke tests run each benchmark's measured calls
a few times on the embedded backends and check that they do what they measure.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType

import pytest

from kaspi_identity.storage.sqlite import sqlite_storage

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def benchmarks() -> Iterator[None]:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield
    finally:
        sys.path.remove(str(BENCHMARKS))


def _module(name: str) -> ModuleType:
    __import__(name)
    return sys.modules[name]


@pytest.mark.usefixtures("benchmarks")
class TestBenchmarksRun:
    def test_flows_on_both_faces(self) -> None:
        """bench_flows: a registration, a reset request, an SMS code proven, a wrong
        log-in, on the sync and the async face; each rate is a positive number."""
        flows = _module("bench_flows")
        adapter = flows.sqlite_adapter()
        for rates in (
            flows.run_sync(adapter, 2, 1),
            asyncio.run(flows.run_async(adapter, 2)),
        ):
            assert set(rates) == {"reset", "sms", "login"}
            assert all(rate > 0 for rate in rates.values())

    def test_every_round_trip_operation(self, tmp_path: Path) -> None:
        """bench_storage: every operation of the round-trip table runs on a SQLite bundle
        with its outbox (the warm-up calls, then two counted ones), none unsupported."""
        storage_bench = _module("bench_storage")
        now = datetime.now(timezone.utc)
        operations = storage_bench._rt_operations(now)
        with sqlite_storage(tmp_path / "rt.sqlite3", outbox=True) as storage:
            for name, call in operations:
                for i in range(-3, 2):
                    assert call(storage, i) is not storage_bench._UNSUPPORTED, name

    def test_one_statement_writes(self, tmp_path: Path) -> None:
        """bench_storage: each write it times against its fallback runs repeatedly."""
        storage_bench = _module("bench_storage")
        now = datetime.now(timezone.utc)
        with sqlite_storage(tmp_path / "writes.sqlite3") as storage:
            for _, operation in storage_bench._ONE_STATEMENT_WRITES:
                call = operation(storage, 0, now)
                for _ in range(3):
                    call()
