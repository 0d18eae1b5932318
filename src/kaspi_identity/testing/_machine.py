"""A Hypothesis state machine that checks a storage implementation agrees with memory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import TypeVar

import pytest
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
)

from kaspi_identity._errors import AccountNotFoundError, DuplicateAccountError
from kaspi_identity.storage import Account, HistoryEntry, NewAccount, Storage
from kaspi_identity.storage.memory import memory_storage

__all__ = ["make_comparison_machine"]

_T = TypeVar("_T")
_START = datetime(2025, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)

_USERNAMES = st.sampled_from(
    [None, "aliya", "Aliya", "ALIYA", "bolat", "Айгерим", "айгерим", "880101300123"]
)
_EMAILS = st.sampled_from([None, "a@example.kz", "A@Example.KZ", "b@example.kz"])
_PHONES = st.sampled_from([None, "+77010000001", "+77010000002"])
_IINS = st.sampled_from([None, "880101300123", "990202400455"])
_NAMES = st.sampled_from([(), ("Алия",), ("Алия", "Нурланова"), ("Нурланова", "Алия"), ("A", "A")])
_FINGERPRINTS = st.sampled_from([b"", b"\x00", b"fp-1", bytes(range(32))])
_ANY_HASH = "hash-1"
_LANGUAGES = st.sampled_from(["en", "ru", "kk"])
_HASHES = st.sampled_from(["hash-1", "hash-2", "hash-3"])
_CURRENT = "<the stored hash>"  # set_password_hash reads the account's hash first
_SECOND, _MINUTE, _HOUR = timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1)
_STEPS = st.sampled_from([timedelta(0), _US, _SECOND, _MINUTE, 10 * _MINUTE, _HOUR, 24 * _HOUR])
_OFFSETS = st.sampled_from([-_SECOND, timedelta(0), _US, _SECOND, 5 * _MINUTE, _HOUR])
_HISTORY_KEYS = ("acct-1", "acct-2")
_CODES = (b"code-1", b"code-2")
# What one attempt brings: one candidate hash per configured key, b"code-3" never stored.
_CANDIDATES = st.lists(st.sampled_from((*_CODES, b"code-3")), min_size=1, max_size=3)
# Addresses a confirmation link may carry: the stored ones in any case, and garbage.
_MARK_EMAILS = st.sampled_from(["a@example.kz", "A@EXAMPLE.KZ", "b@example.kz", "c@example.kz", ""])
# One (limit, window) per key, as the RateLimiter protocol asks of its callers.
_LIMITS = {"ip:1": (2, _SECOND), "ip:2": (3, _MINUTE)}
# One attempt budget per key, as a service would use.
_MAX_ATTEMPTS = {"+77010000001": 2, "+77010000002": 3}


def _outcome(call: Callable[[], _T]) -> tuple[str, _T | str]:
    """Run ``call``; describe an expected storage error instead of raising it."""
    try:
        return "ok", call()
    except DuplicateAccountError as exc:
        return "duplicate", exc.field
    except AccountNotFoundError:
        return "not found", ""


def _both_have_with_history(machine: RuleBasedStateMachine) -> bool:
    return all(
        storage.with_history is not None
        for storage in (machine.reference, machine.candidate)  # type: ignore[attr-defined]
    )


def make_comparison_machine(
    candidate: Callable[[], Storage],
    *,
    reference: Callable[[], Storage] = memory_storage,
) -> type[RuleBasedStateMachine]:
    """Return a state machine class that runs random operations against two storages.

    Each run builds a fresh ``candidate()`` and ``reference()`` (the in-memory adapters by
    default), applies the same random sequence of calls on all five protocols to both, with
    a clock that only moves forward, and fails as soon as their answers differ (account
    ids, which each store picks itself, are mapped between the two). When both storages
    have ``with_history``, its two methods are called too, and every account's history is
    compared after each step. Security stamps are
    random, so their values are not compared; instead, after every step, each account's
    stamp must have changed in the candidate exactly when it changed in the reference, and
    a changed stamp must be one neither store has ever shown before. Both storages are
    closed at the end of each run.

    Run it with ``make_comparison_machine(factory).TestCase`` in a test module, or inside a
    test function (which can use fixtures) with
    :func:`hypothesis.stateful.run_state_machine_as_test`.
    """

    class StorageComparisonMachine(RuleBasedStateMachine):
        """Random operation sequences against a candidate storage and a reference."""

        accounts = Bundle("accounts")

        def __init__(self) -> None:
            super().__init__()
            self.reference = reference()
            self.candidate = candidate()
            self.now = _START
            # candidate account id -> reference account id
            self.ids: dict[str, str] = {}
            self.pairs: list[tuple[str, str]] = []
            self.token_expiry: dict[str, datetime] = {}
            # (reference id, candidate id) -> the stamps each store showed last
            self.stamps: dict[tuple[str, str], tuple[str, str]] = {}
            self.seen_stamps: tuple[set[str], set[str]] = (set(), set())

        def teardown(self) -> None:
            try:
                self.candidate.close()
            finally:
                self.reference.close()

        def _same_account(self, expected: Account | None, actual: Account | None) -> None:
            if expected is None or actual is None:
                assert expected is None
                assert actual is None
                return
            assert self.ids.get(actual.id) == expected.id
            # Stamps are random: compare everything else here, their changes in stamps_agree.
            assert replace(actual, id=expected.id, security_stamp=expected.security_stamp) == (
                expected
            )

        def _new_stamps(self, pair: tuple[str, str], expected: Account, actual: Account) -> None:
            """Record the stamps of a new account: fresh ones, never seen before."""
            stamps = (expected.security_stamp, actual.security_stamp)
            for seen, stamp in zip(self.seen_stamps, stamps, strict=True):
                assert stamp not in seen, "a new account got a stamp seen before"
                seen.add(stamp)
            self.stamps[pair] = stamps

        @rule(step=_STEPS)
        def advance_clock(self, step: timedelta) -> None:
            self.now += step

        @staticmethod
        def _new_account(
            username: str | None,
            email: str | None,
            phone: str | None,
            iin: str | None,
            names: tuple[str, ...],
            password_hash: str | None,
            confirmed: bool,
            language: str,
        ) -> NewAccount:
            assume(any(login is not None for login in (username, email, phone, iin)))
            return NewAccount(
                username=username,
                email=email,
                phone=phone,
                iin=iin,
                names=names,
                password_hash=password_hash,
                email_confirmed=confirmed,
                language=language,
            )

        @rule(
            target=accounts,
            username=_USERNAMES,
            email=_EMAILS,
            phone=_PHONES,
            iin=_IINS,
            names=_NAMES,
            password_hash=st.none() | _HASHES,
            confirmed=st.booleans(),
            language=_LANGUAGES,
        )
        def create(
            self,
            username: str | None,
            email: str | None,
            phone: str | None,
            iin: str | None,
            names: tuple[str, ...],
            password_hash: str | None,
            confirmed: bool,
            language: str,
        ) -> object:
            new = self._new_account(
                username, email, phone, iin, names, password_hash, confirmed, language
            )
            kind, expected = _outcome(lambda: self.reference.accounts.create(new, now=self.now))
            actual_kind, actual = _outcome(
                lambda: self.candidate.accounts.create(new, now=self.now)
            )
            return self._created(kind, expected, actual_kind, actual)

        @precondition(_both_have_with_history)
        @rule(
            target=accounts,
            with_entry=st.booleans(),
            fingerprint=_FINGERPRINTS,
            keep=st.integers(1, 4),
            username=_USERNAMES,
            email=_EMAILS,
            phone=_PHONES,
            iin=_IINS,
            names=_NAMES,
            password_hash=st.none() | _HASHES,
            confirmed=st.booleans(),
            language=_LANGUAGES,
        )
        def create_with_history(
            self,
            with_entry: bool,
            fingerprint: bytes,
            keep: int,
            username: str | None,
            email: str | None,
            phone: str | None,
            iin: str | None,
            names: tuple[str, ...],
            password_hash: str | None,
            confirmed: bool,
            language: str,
        ) -> object:
            new = self._new_account(
                username, email, phone, iin, names, password_hash, confirmed, language
            )
            seen: tuple[list[Account], list[Account]] = ([], [])

            def entry(into: list[Account]) -> Callable[[Account], HistoryEntry] | None:
                def build(account: Account) -> HistoryEntry:
                    into.append(account)
                    return HistoryEntry(
                        password_hash=account.password_hash or "no-hash",
                        fingerprint=fingerprint,
                        created_at=self.now,
                    )

                return build if with_entry else None

            reference, candidate = self.reference.with_history, self.candidate.with_history
            assert reference is not None
            assert candidate is not None
            kind, expected = _outcome(
                lambda: reference.create_with_history(
                    new, now=self.now, entry=entry(seen[0]), keep=keep
                )
            )
            actual_kind, actual = _outcome(
                lambda: candidate.create_with_history(
                    new, now=self.now, entry=entry(seen[1]), keep=keep
                )
            )
            result = self._created(kind, expected, actual_kind, actual)
            if kind == "ok" and with_entry:  # entry() got the account it stored
                assert seen[0][-1] == expected
                assert seen[1][-1] == actual
            return result

        def _created(
            self,
            kind: str,
            expected: Account | str,
            actual_kind: str,
            actual: Account | str,
        ) -> object:
            assert actual_kind == kind
            if kind != "ok":
                assert actual == expected
                return multiple()
            assert isinstance(expected, Account)
            assert isinstance(actual, Account)
            assert actual.id not in self.ids
            self.ids[actual.id] = expected.id
            self.pairs.append((expected.id, actual.id))
            self._same_account(expected, actual)
            self._new_stamps((expected.id, actual.id), expected, actual)
            return (expected.id, actual.id)

        @invariant()
        def accounts_agree(self) -> None:
            for reference_id, candidate_id in self.pairs:
                self._same_account(
                    self.reference.accounts.get(reference_id),
                    self.candidate.accounts.get(candidate_id),
                )

        @invariant()
        def stamps_agree(self) -> None:
            for pair in self.pairs:
                expected = self.reference.accounts.get(pair[0])
                actual = self.candidate.accounts.get(pair[1])
                assert expected is not None
                assert actual is not None
                now = (expected.security_stamp, actual.security_stamp)
                changed = [new != old for new, old in zip(now, self.stamps[pair], strict=True)]
                assert changed[1] == changed[0], (
                    "the candidate changed the stamp" if changed[1] else "the stamp did not change"
                )
                if changed[0]:
                    for seen, stamp in zip(self.seen_stamps, now, strict=True):
                        assert stamp not in seen, "a stamp was reused"
                        seen.add(stamp)
                self.stamps[pair] = now

        @invariant()
        def histories_agree(self) -> None:
            for account in _HISTORY_KEYS:
                expected = self.reference.history.recent(account, 10)
                assert self.candidate.history.recent(account, 10) == expected
            for reference_id, candidate_id in self.pairs:
                expected = self.reference.history.recent(reference_id, 10)
                assert self.candidate.history.recent(candidate_id, 10) == expected

        @rule(
            kind_value=st.one_of(
                st.tuples(st.just("username"), _USERNAMES.filter(bool)),
                st.tuples(st.just("email"), _EMAILS.filter(bool)),
                st.tuples(st.just("phone"), _PHONES.filter(bool)),
                st.tuples(st.just("iin"), _IINS.filter(bool)),
                # an IIN's digits as a user name or phone: another login, never a match
                st.tuples(st.sampled_from(["username", "phone"]), _IINS.filter(bool)),
            )
        )
        def find_by_login(self, kind_value: tuple[str, str]) -> None:
            kind, value = kind_value
            expected = self.reference.accounts.find_by_login(kind, value)  # type: ignore[arg-type]
            actual = self.candidate.accounts.find_by_login(kind, value)  # type: ignore[arg-type]
            self._same_account(expected, actual)

        @rule(
            pair=accounts,
            expected=st.none() | _HASHES | st.just(_CURRENT),
            new=_HASHES,
            rotate=st.sampled_from([True, True, False]),
        )
        def set_password_hash(
            self, pair: tuple[str, str], expected: str | None, new: str, rotate: bool
        ) -> None:
            if expected == _CURRENT:  # read, then compare-and-set: what a change does
                account = self.reference.accounts.get(pair[0])
                assert account is not None
                expected = account.password_hash
            won = self.reference.accounts.set_password_hash(
                pair[0], expected=expected, new=new, rotate_stamp=rotate
            )
            assert (
                self.candidate.accounts.set_password_hash(
                    pair[1], expected=expected, new=new, rotate_stamp=rotate
                )
                is won
            )

        @precondition(_both_have_with_history)
        @rule(
            pair=accounts,
            expected=st.none() | _HASHES | st.just(_CURRENT),
            new=_HASHES,
            with_entry=st.booleans(),
            fingerprint=_FINGERPRINTS,
            keep=st.integers(1, 4),
        )
        def replace_password(
            self,
            pair: tuple[str, str],
            expected: str | None,
            new: str,
            with_entry: bool,
            fingerprint: bytes,
            keep: int,
        ) -> None:
            if expected == _CURRENT:  # read, then compare-and-set: what a change does
                account = self.reference.accounts.get(pair[0])
                assert account is not None
                expected = account.password_hash
            entry = (
                HistoryEntry(password_hash=new, fingerprint=fingerprint, created_at=self.now)
                if with_entry
                else None
            )
            reference, candidate = self.reference.with_history, self.candidate.with_history
            assert reference is not None
            assert candidate is not None
            won = reference.replace_password(
                pair[0], expected=expected, new=new, entry=entry, keep=keep
            )
            assert (
                candidate.replace_password(
                    pair[1], expected=expected, new=new, entry=entry, keep=keep
                )
                is won
            )

        @rule(pair=accounts, email=_EMAILS.filter(bool), confirmed=st.booleans())
        def set_email(self, pair: tuple[str, str], email: str, confirmed: bool) -> None:
            expected = _outcome(
                lambda: self.reference.accounts.set_email(pair[0], email, confirmed=confirmed)
            )
            actual = _outcome(
                lambda: self.candidate.accounts.set_email(pair[1], email, confirmed=confirmed)
            )
            assert actual == expected

        @rule(pair=accounts, email=_MARK_EMAILS)
        def mark_email_confirmed(self, pair: tuple[str, str], email: str) -> None:
            marked = self.reference.accounts.mark_email_confirmed(
                pair[0], email=email, now=self.now
            )
            assert (
                self.candidate.accounts.mark_email_confirmed(pair[1], email=email, now=self.now)
                is marked
            )

        @rule(pair=accounts, expected=st.none() | st.integers(0, 3))
        def reserve_login_attempt(self, pair: tuple[str, str], expected: int | None) -> None:
            if expected is None:  # read, then reserve: what a log-in does
                account = self.reference.accounts.get(pair[0])
                assert account is not None
                expected = account.failed_logins
            won = self.reference.accounts.reserve_login_attempt(
                pair[0], expected_failures=expected, now=self.now
            )
            assert (
                self.candidate.accounts.reserve_login_attempt(
                    pair[1], expected_failures=expected, now=self.now
                )
                is won
            )

        @rule(pair=accounts)
        def record_login_success(self, pair: tuple[str, str]) -> None:
            self.reference.accounts.record_login_success(pair[0], now=self.now)
            self.candidate.accounts.record_login_success(pair[1], now=self.now)

        @rule(pair=accounts)
        def clear_login_failures(self, pair: tuple[str, str]) -> None:
            self.reference.accounts.clear_login_failures(pair[0])
            self.candidate.accounts.clear_login_failures(pair[1])

        @rule(unknown=st.sampled_from(["", "no-such-id", "0" * 32]))
        def unknown_account(self, unknown: str) -> None:
            for accounts in (self.reference.accounts, self.candidate.accounts):
                assert accounts.get(unknown) is None
                assert (
                    accounts.reserve_login_attempt(unknown, expected_failures=0, now=self.now)
                    is False
                )
                assert (
                    accounts.mark_email_confirmed(unknown, email="a@example.kz", now=self.now)
                    is False
                )
                with pytest.raises(AccountNotFoundError):
                    accounts.record_login_success(unknown, now=self.now)
                assert accounts.set_password_hash(unknown, expected=None, new="h") is False
            if _both_have_with_history(self):
                entry = HistoryEntry(password_hash=_ANY_HASH, created_at=self.now)
                for storage in (self.reference, self.candidate):
                    assert storage.with_history is not None
                    assert (
                        storage.with_history.replace_password(
                            unknown, expected=None, new="h", entry=entry, keep=1
                        )
                        is False
                    )

        @rule(
            account=st.sampled_from(_HISTORY_KEYS),
            password_hash=_HASHES,
            fingerprint=st.sampled_from([b"", b"\x00", b"fp-1", bytes(range(32))]),
            keep=st.integers(1, 4),
        )
        def history_append(
            self, account: str, password_hash: str, fingerprint: bytes, keep: int
        ) -> None:
            entry = HistoryEntry(
                password_hash=password_hash, fingerprint=fingerprint, created_at=self.now
            )
            self.reference.history.append(account, entry, keep=keep)
            self.candidate.history.append(account, entry, keep=keep)

        @rule(account=st.sampled_from(_HISTORY_KEYS), limit=st.integers(1, 5))
        def history_recent(self, account: str, limit: int) -> None:
            expected = self.reference.history.recent(account, limit)
            assert self.candidate.history.recent(account, limit) == expected

        # The rules below take a few calls per step, so that the sequences which matter
        # (consume twice, fail then ask for a new code, hit past a limit) come up often.

        @rule(
            tokens=st.lists(st.sampled_from(["tok-1", "tok-2", "tok-3"]), min_size=1, max_size=3),
            offset=_OFFSETS,
        )
        def consume(self, tokens: list[str], offset: timedelta) -> None:
            for token in tokens:
                # The same id always comes with the same expiry, as the protocol asks.
                expires_at = self.token_expiry.setdefault(token, self.now + offset)
                expected = self.reference.ledger.consume(token, expires_at, now=self.now)
                assert self.candidate.ledger.consume(token, expires_at, now=self.now) is expected

        @rule(
            key=st.sampled_from(sorted(_MAX_ATTEMPTS)),
            code=st.sampled_from(_CODES),
            ttl=st.sampled_from([_US, _MINUTE, 5 * _MINUTE, _HOUR]),
            window=st.sampled_from([_SECOND, 10 * _MINUTE]),
            attempts=st.lists(_CANDIDATES, max_size=4),
        )
        def code_put(
            self,
            key: str,
            code: bytes,
            ttl: timedelta,
            window: timedelta,
            attempts: list[list[bytes]],
        ) -> None:
            for storage in (self.reference, self.candidate):
                storage.codes.put(
                    key, code, expires_at=self.now + ttl, now=self.now, failure_window=window
                )
            self.code_attempts(key, attempts)

        @rule(
            key=st.sampled_from(sorted(_MAX_ATTEMPTS)),
            codes=st.lists(_CANDIDATES, min_size=1, max_size=4),
        )
        def code_attempts(self, key: str, codes: list[list[bytes]]) -> None:
            limit = _MAX_ATTEMPTS[key]
            for candidates in codes:
                expected = self.reference.codes.attempt(
                    key, candidates, now=self.now, max_attempts=limit
                )
                actual = self.candidate.codes.attempt(
                    key, tuple(candidates), now=self.now, max_attempts=limit
                )
                assert actual is expected

        @rule(key=st.sampled_from(sorted(_LIMITS)), hits=st.integers(1, 4))
        def hit(self, key: str, hits: int) -> None:
            limit, window = _LIMITS[key]
            for _ in range(hits):
                expected = self.reference.rate_limits.hit(
                    key, limit=limit, window=window, now=self.now
                )
                actual = self.candidate.rate_limits.hit(
                    key, limit=limit, window=window, now=self.now
                )
                assert actual == expected

    return StorageComparisonMachine
