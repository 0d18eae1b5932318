"""The SQLite adapters agree with the in-memory reference on random operation sequences."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from kaspi_identity.storage import (
    Account,
    CodeAttempt,
    HistoryEntry,
    LoginKind,
    NewAccount,
    Storage,
)
from kaspi_identity.storage.memory import (
    MemoryAccountStore,
    MemoryAccountWithHistory,
    MemoryOneTimeCodeStore,
    MemoryPasswordHistoryStore,
    MemoryRateLimiter,
    MemoryTokenLedger,
    async_memory_storage,
    memory_storage,
)
from kaspi_identity.storage.sqlite import async_sqlite_storage, sqlite_storage
from kaspi_identity.testing import blocking_storage, make_comparison_machine

BOUNDED = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
#: For the machine hunting a planted bug: the same runs every time (derandomised, so never
#: flaky), no shrinking, no example database. The derandomised sequence changes with the
#: machine's source, and 300 runs were not always enough for the IIN-lookup and reused-stamp
#: bugs (an unrelated edit of _machine.py hid them); up to 1000 runs cost seconds, since a
#: hunt stops at the first failure.
HUNT = settings(
    BOUNDED,
    max_examples=1000,
    database=None,
    derandomize=True,
    print_blob=False,
    phases=[Phase.generate],
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


class _KeepsStampOnEmail(MemoryAccountStore):
    """Planted bug: set_email forgets to give a fresh stamp."""

    def set_email(self, account_id: str, email: str, *, confirmed: bool = False) -> None:
        before = self.get(account_id)
        super().set_email(account_id, email, confirmed=confirmed)
        if before is not None:
            with self._lock:
                account = self._accounts[before.id]
                self._accounts[before.id] = replace(account, security_stamp=before.security_stamp)


class _ReusesStamps(MemoryAccountStore):
    """Planted bug: a password change swaps between two stamps per account."""

    def set_password_hash(
        self,
        account_id: str,
        *,
        expected: str | None,
        new: str,
        rotate_stamp: bool = True,
        now: datetime | None = None,
    ) -> bool:
        before = self.get(account_id)
        won = super().set_password_hash(
            account_id, expected=expected, new=new, rotate_stamp=rotate_stamp, now=now
        )
        if won and rotate_stamp and before is not None:
            stamp = before.security_stamp
            swapped = stamp[:-1] + ("b" if stamp.endswith("a") else "a")
            with self._lock:
                account = self._accounts[before.id]
                self._accounts[before.id] = replace(account, security_stamp=swapped)
        return won


class _ReserveIgnoresTheCount(MemoryAccountStore):
    """Planted bug: reserve_login_attempt counts whatever count the caller read."""

    def reserve_login_attempt(
        self, account_id: str, *, expected_failures: int, now: datetime
    ) -> bool:
        account = self.get(account_id)
        if account is None:
            return False
        return super().reserve_login_attempt(
            account_id, expected_failures=account.failed_logins, now=now
        )


class _MarksAnyAddress(MemoryAccountStore):
    """Planted bug: mark_email_confirmed does not compare the address."""

    def mark_email_confirmed(self, account_id: str, *, email: str, now: datetime) -> bool:
        account = self.get(account_id)
        if account is None or account.email is None:
            return False
        return super().mark_email_confirmed(account_id, email=account.email, now=now)


class _FirstCandidateOnly(MemoryOneTimeCodeStore):
    """Planted bug: an attempt compares only the first candidate."""

    def attempt(
        self, key: str, candidates: Sequence[bytes], *, now: datetime, max_attempts: int
    ) -> CodeAttempt:
        return super().attempt(key, list(candidates)[:1], now=now, max_attempts=max_attempts)


class _AppendsOnALostChange(MemoryAccountWithHistory):
    """Planted bug: replace_password appends the entry even when the CAS lost."""

    def replace_password(
        self,
        account_id: str,
        *,
        expected: str | None,
        new: str,
        entry: HistoryEntry | None,
        keep: int,
        now: datetime | None = None,
    ) -> bool:
        won = super().replace_password(
            account_id, expected=expected, new=new, entry=entry, keep=keep, now=now
        )
        if not won and entry is not None and self._accounts.get(account_id) is not None:
            self._history.append(account_id, entry, keep=keep)
        return won


class _KeepsStampOnReplace(MemoryAccountWithHistory):
    """Planted bug: replace_password keeps the old security stamp."""

    def replace_password(
        self,
        account_id: str,
        *,
        expected: str | None,
        new: str,
        entry: HistoryEntry | None,
        keep: int,
        now: datetime | None = None,
    ) -> bool:
        before = self._accounts.get(account_id)
        won = super().replace_password(
            account_id, expected=expected, new=new, entry=entry, keep=keep, now=now
        )
        if won and before is not None:
            with self._accounts._lock:
                account = self._accounts._accounts[before.id]
                self._accounts._accounts[before.id] = replace(
                    account, security_stamp=before.security_stamp
                )
        return won


class _IgnoresKeepAtCreate(MemoryAccountWithHistory):
    """Planted bug: create_with_history appends its entry twice (an off-by-one keep)."""

    def create_with_history(
        self,
        new: NewAccount,
        *,
        now: datetime,
        entry: Callable[[Account], HistoryEntry] | None,
        keep: int,
    ) -> Account:
        account = super().create_with_history(new, now=now, entry=entry, keep=keep)
        if entry is not None:
            self._history.append(account.id, entry(account), keep=keep + 1)
        return account


class _ForgetsNames(MemoryAccountStore):
    """Planted bug: create stores the account without its names."""

    def create(self, new: NewAccount, *, now: datetime) -> Account:
        return super().create(replace(new, names=()), now=now)


class _IinFindsByUsername(MemoryAccountStore):
    """Planted bug: an IIN lookup falls back to the user names (issue 11, item 7)."""

    def find_by_login(self, kind: LoginKind, value: str) -> Account | None:
        found = super().find_by_login(kind, value)
        if found is None and kind == "iin":
            return super().find_by_login("username", value)
        return found


def _memory_with(
    accounts: type[MemoryAccountStore] = MemoryAccountStore,
    codes: type[MemoryOneTimeCodeStore] = MemoryOneTimeCodeStore,
    with_history: type[MemoryAccountWithHistory] = MemoryAccountWithHistory,
) -> Storage:
    account_store, history = accounts(), MemoryPasswordHistoryStore()
    return Storage(
        accounts=account_store,
        history=history,
        ledger=MemoryTokenLedger(),
        codes=codes(),
        rate_limits=MemoryRateLimiter(),
        with_history=with_history(account_store, history),
    )


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(lambda: _memory_with(accounts=_KeepsStampOnEmail), id="stamp-kept"),
        pytest.param(lambda: _memory_with(accounts=_ReusesStamps), id="stamp-reused"),
        pytest.param(lambda: _memory_with(accounts=_ReserveIgnoresTheCount), id="reserve"),
        pytest.param(lambda: _memory_with(accounts=_MarksAnyAddress), id="mark"),
        pytest.param(lambda: _memory_with(codes=_FirstCandidateOnly), id="candidates"),
        pytest.param(lambda: _memory_with(accounts=_ForgetsNames), id="names"),
        pytest.param(lambda: _memory_with(accounts=_IinFindsByUsername), id="iin-lookup"),
        pytest.param(
            lambda: _memory_with(with_history=_AppendsOnALostChange), id="append-on-lost-cas"
        ),
        pytest.param(
            lambda: _memory_with(with_history=_KeepsStampOnReplace), id="replace-keeps-stamp"
        ),
        pytest.param(lambda: _memory_with(with_history=_IgnoresKeepAtCreate), id="create-keep"),
    ],
)
def test_machine_finds_planted_bugs(broken: Callable[[], Storage]) -> None:
    """The machine fails a candidate with a planted stamp, reserve, mark, candidates, names,
    IIN lookup or with_history bug."""
    machine = make_comparison_machine(broken)
    with pytest.raises(AssertionError):
        run_state_machine_as_test(machine, settings=HUNT)


def test_async_sqlite_agrees_with_memory(tmp_path: Path) -> None:
    """The same random sequences through the async face of SQLite (worker threads)."""
    files = itertools.count()

    def candidate() -> Storage:
        path = tmp_path / f"async-{next(files)}.sqlite3"
        return blocking_storage(async_sqlite_storage(path, synchronous="NORMAL"))

    # Fewer runs than the sync face's: the store code is the same, only the hops are new.
    run_state_machine_as_test(
        make_comparison_machine(candidate), settings=settings(BOUNDED, max_examples=40)
    )


def test_async_memory_agrees_with_memory() -> None:
    """And through the async face of the memory adapter."""

    def candidate() -> Storage:
        return blocking_storage(async_memory_storage())

    run_state_machine_as_test(
        make_comparison_machine(candidate), settings=settings(BOUNDED, max_examples=40)
    )
