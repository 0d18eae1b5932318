"""Contract tests for the storage protocols, as base classes a test module subclasses.

Each ``*Contract`` class holds the tests for one protocol. Subclass it in a class whose name
starts with ``Test`` and say how to build the implementation under test, either by defining
``make_<thing>()`` or -- when it needs other fixtures or cleanup -- by overriding the
fixture of the same name (``accounts``, ``history``, ``ledger``, ``codes``,
``rate_limiter``). :class:`AccountWithHistoryContract` tests a bundle's ``with_history``
against its accounts and history (``make_storage()`` or the ``storage`` fixture).
:class:`StorageContract` runs them all against one :class:`~kaspi_identity.storage.Storage`.
Every test gets a fresh, empty implementation.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import TypeVar

import pytest

from kaspi_identity._errors import AccountNotFoundError, DuplicateAccountError, StorageError
from kaspi_identity.storage import (
    Account,
    AccountStore,
    AccountWithHistory,
    CodeAttempt,
    Contact,
    HistoryEntry,
    NewAccount,
    OneTimeCodeStore,
    OutboxChannel,
    OutboxMessage,
    OutboxStore,
    PasswordHistoryStore,
    RateLimiter,
    Storage,
    TokenLedger,
)
from kaspi_identity.storage._protocols import enqueues_together

__all__ = [
    "AccountStoreContract",
    "AccountWithHistoryContract",
    "OneTimeCodeStoreContract",
    "OutboxStoreContract",
    "PasswordHistoryStoreContract",
    "RateLimiterContract",
    "StorageContract",
    "TokenLedgerContract",
]

_T = TypeVar("_T")

#: The moment the contract tests start at; every other time is an offset from it.
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
_ALMATY = timezone(timedelta(hours=5))
_NAIVE = datetime(2025, 3, 1, 9, 0)  # deliberately naive
_US = timedelta(microseconds=1)
_HOUR = timedelta(hours=1)
_THREADS = 32
_HASH_A = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGFoYXNoYWhhc2g"
_HASH_B = "$argon2id$v=19$m=65536,t=3,p=4$b3RoZXJzYWx0$b3RoZXJoYXNob3RoZXI"
#: Valid IINs (check digit included): a man born 1988-01-01, a woman born 1999-02-02.
_IIN = "880101300123"
_OTHER_IIN = "990202400455"
_NAMES = ("Алия", "Нурланова")


def _race(count: int, action: Callable[[int], _T]) -> list[_T]:
    """Run ``action(i)`` for ``i`` in ``range(count)`` in threads released by one barrier.

    Returns the results in order; re-raises the first exception a thread raised.
    """
    barrier = threading.Barrier(count)
    results: dict[int, _T] = {}
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = action(index)
        except BaseException as exc:  # collected and re-raised in the caller
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise errors[0]
    assert len(results) == count, "a racing thread did not finish"
    return [results[i] for i in range(count)]


def _new(
    username: str | None = "aliya",
    email: str | None = "aliya@example.kz",
    phone: str | None = "+77011234567",
    password_hash: str | None = _HASH_A,
    iin: str | None = _IIN,
    names: tuple[str, ...] = _NAMES,
) -> NewAccount:
    return NewAccount(
        username=username,
        email=email,
        phone=phone,
        password_hash=password_hash,
        iin=iin,
        names=names,
    )


class AccountStoreContract:
    """The contract of :class:`~kaspi_identity.storage.AccountStore`.

    Define ``make_accounts()`` returning an empty store, or override the ``accounts`` fixture.
    """

    def make_accounts(self) -> AccountStore:
        """Return a new, empty account store (override this or the ``accounts`` fixture)."""
        raise NotImplementedError("define make_accounts() or override the accounts fixture")

    @pytest.fixture
    def accounts(self) -> AccountStore:
        """Return the account store under test."""
        return self.make_accounts()

    def test_create_returns_the_stored_account(self, accounts: AccountStore) -> None:
        """create() returns the account as stored, and get() returns the same record."""
        created = accounts.create(_new(), now=T0)
        assert isinstance(created.id, str)
        assert created.id
        assert (created.username, created.email, created.phone) == (
            "aliya",
            "aliya@example.kz",
            "+77011234567",
        )
        assert created.password_hash == _HASH_A
        assert created.email_confirmed is False
        assert created.failed_logins == 0
        assert created.last_failed_login_at is None
        assert created.last_login_at is None
        assert created.created_at == T0
        assert created.language == "en"
        assert (created.iin, created.names) == (_IIN, _NAMES)
        assert accounts.get(created.id) == created

    def test_create_keeps_language_and_confirmation(self, accounts: AccountStore) -> None:
        """The language and the e-mail confirmation flag of a new account are stored."""
        new = NewAccount(email="bolat@example.kz", email_confirmed=True, language="kk")
        created = accounts.create(new, now=T0)
        stored = accounts.get(created.id)
        assert stored is not None
        assert (stored.language, stored.email_confirmed) == ("kk", True)
        assert (stored.username, stored.phone, stored.password_hash) == (None, None, None)
        assert (stored.iin, stored.names) == (None, ())

    def test_create_assigns_distinct_ids(self, accounts: AccountStore) -> None:
        """Every account gets its own id."""
        ids = {accounts.create(NewAccount(username=f"user{i}"), now=T0).id for i in range(5)}
        assert len(ids) == 5

    def test_times_come_back_in_utc(self, accounts: AccountStore) -> None:
        """An aware time in another zone is stored as the same instant and returned in UTC."""
        created = accounts.create(_new(), now=T0.astimezone(_ALMATY))
        stored = accounts.get(created.id)
        assert stored is not None
        assert stored.created_at == T0
        assert stored.created_at.utcoffset() == timedelta(0)

    def test_times_keep_microseconds(self, accounts: AccountStore) -> None:
        """Stored times keep microsecond precision."""
        moment = T0 + timedelta(microseconds=123457)
        created = accounts.create(_new(), now=moment)
        accounts.record_login_success(created.id, now=moment + _US)
        stored = accounts.get(created.id)
        assert stored is not None
        assert (stored.created_at, stored.last_login_at) == (moment, moment + _US)

    def test_get_unknown_id_returns_none(self, accounts: AccountStore) -> None:
        """get() finds nothing for ids no account has, however odd the string."""
        accounts.create(_new(), now=T0)
        for unknown in ("no-such-id", "", "x" * 10_000, "\x00", "\ud800"):
            assert accounts.get(unknown) is None

    def test_get_rejects_non_str(self, accounts: AccountStore) -> None:
        """get(None) is a programming error: TypeError."""
        with pytest.raises(TypeError):
            accounts.get(None)  # type: ignore[arg-type]

    def test_find_by_username_ignores_case(self, accounts: AccountStore) -> None:
        """User names match case-insensitively, Cyrillic included."""
        latin = accounts.create(NewAccount(username="Aliya"), now=T0)
        cyrillic = accounts.create(NewAccount(username="Айгерим"), now=T0)
        assert accounts.find_by_login("username", "aliya") == latin
        assert accounts.find_by_login("username", "ALIYA") == latin
        assert accounts.find_by_login("username", "АЙГЕРИМ") == cyrillic
        assert accounts.find_by_login("username", "айгерим") == cyrillic
        stored = accounts.find_by_login("username", "aliya")
        assert stored is not None
        assert stored.username == "Aliya"

    def test_find_by_email_ignores_case(self, accounts: AccountStore) -> None:
        """E-mails match case-insensitively; the stored spelling is kept."""
        created = accounts.create(NewAccount(email="Aliya.N@Example.KZ"), now=T0)
        assert accounts.find_by_login("email", "aliya.n@example.kz") == created
        assert accounts.find_by_login("email", "ALIYA.N@EXAMPLE.KZ") == created
        assert created.email == "Aliya.N@Example.KZ"

    def test_find_by_phone_is_exact(self, accounts: AccountStore) -> None:
        """Phones match only in the exact E.164 form."""
        created = accounts.create(NewAccount(phone="+77011234567"), now=T0)
        assert accounts.find_by_login("phone", "+77011234567") == created
        assert accounts.find_by_login("phone", "77011234567") is None
        assert accounts.find_by_login("phone", "+7 701 123 4567") is None

    def test_find_does_not_cross_kinds(self, accounts: AccountStore) -> None:
        """A user name is not found as an e-mail, nor the other way round."""
        accounts.create(NewAccount(username="a@b.kz", email="c@d.kz"), now=T0)
        assert accounts.find_by_login("email", "a@b.kz") is None
        assert accounts.find_by_login("username", "c@d.kz") is None

    def test_find_unknown_returns_none(self, accounts: AccountStore) -> None:
        """Values no account has -- empty, huge, NUL, lone surrogate -- find nothing."""
        accounts.create(_new(), now=T0)
        for kind in ("username", "email", "phone", "iin"):
            for value in ("nobody", "", "x" * 10_000, "a\x00", "\udfff"):
                assert accounts.find_by_login(kind, value) is None

    def test_find_rejects_unknown_kind(self, accounts: AccountStore) -> None:
        """An unknown login kind is a ValueError."""
        with pytest.raises(ValueError, match="kind"):
            accounts.find_by_login("id", "x")  # type: ignore[arg-type]

    def test_find_rejects_non_str_value(self, accounts: AccountStore) -> None:
        """A non-str login value is a TypeError."""
        with pytest.raises(TypeError):
            accounts.find_by_login("email", None)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("field", "clash"),
        [
            ("username", NewAccount(username="ALIYA", email="other@example.kz")),
            ("email", NewAccount(username="other", email="ALIYA@EXAMPLE.KZ")),
            ("phone", NewAccount(username="other", phone="+77011234567")),
            ("iin", NewAccount(username="other", iin=_IIN)),
        ],
    )
    def test_duplicates_are_refused(
        self, accounts: AccountStore, field: str, clash: NewAccount
    ) -> None:
        """A taken user name, e-mail (any case), phone or IIN: DuplicateAccountError(field)."""
        accounts.create(_new(), now=T0)
        with pytest.raises(DuplicateAccountError) as caught:
            accounts.create(clash, now=T0)
        assert caught.value.field == field
        assert accounts.find_by_login("username", "other") is None
        assert accounts.find_by_login("email", "other@example.kz") is None

    def test_duplicate_check_order(self, accounts: AccountStore) -> None:
        """With several clashes: the user name first, then the e-mail, the phone, the IIN."""
        accounts.create(_new(), now=T0)
        with pytest.raises(DuplicateAccountError) as caught:
            accounts.create(_new(username="Aliya"), now=T0)
        assert caught.value.field == "username"
        with pytest.raises(DuplicateAccountError) as caught:
            accounts.create(_new(username="new"), now=T0)
        assert caught.value.field == "email"
        with pytest.raises(DuplicateAccountError) as caught:
            accounts.create(_new(username="new", email="new@example.kz"), now=T0)
        assert caught.value.field == "phone"
        with pytest.raises(DuplicateAccountError) as caught:
            accounts.create(
                _new(username="new", email="new@example.kz", phone="+77019999999"), now=T0
            )
        assert caught.value.field == "iin"
        assert accounts.find_by_login("username", "new") is None

    def test_none_identifiers_never_clash(self, accounts: AccountStore) -> None:
        """Many accounts may lack a user name, an e-mail or a phone."""
        accounts.create(NewAccount(username="one"), now=T0)
        accounts.create(NewAccount(username="two"), now=T0)
        accounts.create(NewAccount(email="x@example.kz"), now=T0)
        accounts.create(NewAccount(phone="+77770000000"), now=T0)
        accounts.create(NewAccount(iin=_IIN), now=T0)
        accounts.create(NewAccount(iin=_OTHER_IIN, names=_NAMES), now=T0)

    def test_create_rejects_naive_now(self, accounts: AccountStore) -> None:
        """A naive ``now`` is a ValueError and stores nothing."""
        with pytest.raises(ValueError, match="aware"):
            accounts.create(_new(), now=_NAIVE)
        assert accounts.find_by_login("username", "aliya") is None

    def test_create_rejects_non_record(self, accounts: AccountStore) -> None:
        """create() takes a NewAccount, not a mapping: TypeError."""
        with pytest.raises(TypeError):
            accounts.create({"username": "aliya"}, now=T0)  # type: ignore[arg-type]

    def test_concurrent_creates_with_one_name(self, accounts: AccountStore) -> None:
        """16 threads creating the same user name: exactly one succeeds."""

        def create(index: int) -> str:
            try:
                accounts.create(NewAccount(username="Aliya" if index % 2 else "ALIYA"), now=T0)
            except DuplicateAccountError as exc:
                return exc.field
            return "created"

        outcomes = Counter(_race(16, create))
        assert outcomes == Counter({"created": 1, "username": 15})

    def test_password_cas_wins_with_the_expected_hash(self, accounts: AccountStore) -> None:
        """set_password_hash() writes when ``expected`` is the stored hash."""
        created = accounts.create(_new(), now=T0)
        assert accounts.set_password_hash(created.id, expected=_HASH_A, new=_HASH_B) is True
        stored = accounts.get(created.id)
        assert stored is not None
        assert stored.password_hash == _HASH_B

    def test_password_cas_loses_with_a_stale_hash(self, accounts: AccountStore) -> None:
        """With any other ``expected`` nothing is written."""
        created = accounts.create(_new(), now=T0)
        assert accounts.set_password_hash(created.id, expected=_HASH_B, new="new") is False
        assert accounts.set_password_hash(created.id, expected=None, new="new") is False
        stored = accounts.get(created.id)
        assert stored is not None
        assert stored.password_hash == _HASH_A

    def test_password_cas_from_no_password(self, accounts: AccountStore) -> None:
        """``expected=None`` matches an account without a password, and only that."""
        created = accounts.create(_new(password_hash=None), now=T0)
        assert accounts.set_password_hash(created.id, expected=_HASH_A, new=_HASH_B) is False
        assert accounts.set_password_hash(created.id, expected=None, new=_HASH_B) is True
        assert accounts.set_password_hash(created.id, expected=None, new=_HASH_A) is False

    def test_password_cas_unknown_account(self, accounts: AccountStore) -> None:
        """An unknown id is simply a lost compare-and-set."""
        assert accounts.set_password_hash("no-such-id", expected=None, new=_HASH_A) is False
        assert accounts.set_password_hash("", expected=_HASH_A, new=_HASH_B) is False

    def test_password_cas_rejects_bad_new_hash(self, accounts: AccountStore) -> None:
        """The new hash must be a non-empty str: ValueError or TypeError, nothing written."""
        created = accounts.create(_new(), now=T0)
        with pytest.raises(ValueError, match="new"):
            accounts.set_password_hash(created.id, expected=_HASH_A, new="")
        with pytest.raises(TypeError):
            accounts.set_password_hash(created.id, expected=_HASH_A, new=None)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            accounts.set_password_hash(created.id, expected=b"x", new="n")  # type: ignore[arg-type]
        stored = accounts.get(created.id)
        assert stored is not None
        assert stored.password_hash == _HASH_A

    @pytest.mark.parametrize("racers", [2, 16])
    def test_racing_password_changes(self, accounts: AccountStore, racers: int) -> None:
        """Racing changes from the same old hash: exactly one wins, and its hash is stored."""
        created = accounts.create(_new(), now=T0)
        wins = _race(
            racers,
            lambda i: accounts.set_password_hash(created.id, expected=_HASH_A, new=f"new-{i}"),
        )
        assert wins.count(True) == 1
        stored = accounts.get(created.id)
        assert stored is not None
        assert stored.password_hash == f"new-{wins.index(True)}"

    def test_set_email(self, accounts: AccountStore) -> None:
        """set_email() replaces the e-mail: the new one is found, the old one is free."""
        created = accounts.create(_new(), now=T0)
        accounts.set_email(created.id, "New@Example.KZ", confirmed=True)
        found = accounts.find_by_login("email", "new@example.kz")
        assert found is not None
        assert (found.id, found.email, found.email_confirmed) == (
            created.id,
            "New@Example.KZ",
            True,
        )
        assert accounts.find_by_login("email", "aliya@example.kz") is None
        accounts.create(NewAccount(email="aliya@example.kz"), now=T0)

    def test_set_email_unconfirms_by_default(self, accounts: AccountStore) -> None:
        """A new e-mail is unconfirmed unless the caller says otherwise."""
        created = accounts.create(NewAccount(email="a@example.kz", email_confirmed=True), now=T0)
        accounts.set_email(created.id, "b@example.kz")
        stored = accounts.get(created.id)
        assert stored is not None
        assert stored.email_confirmed is False

    def test_set_email_to_own_address_in_other_case(self, accounts: AccountStore) -> None:
        """Changing only the case of one's own e-mail is not a duplicate."""
        created = accounts.create(_new(), now=T0)
        accounts.set_email(created.id, "ALIYA@example.kz")
        stored = accounts.get(created.id)
        assert stored is not None
        assert stored.email == "ALIYA@example.kz"

    def test_set_email_duplicate(self, accounts: AccountStore) -> None:
        """Another account's e-mail (any case) raises DuplicateAccountError("email")."""
        accounts.create(_new(), now=T0)
        other = accounts.create(NewAccount(email="other@example.kz"), now=T0)
        with pytest.raises(DuplicateAccountError) as caught:
            accounts.set_email(other.id, "Aliya@Example.kz")
        assert caught.value.field == "email"
        assert accounts.get(other.id) == other

    def test_racing_set_email_for_one_address(self, accounts: AccountStore) -> None:
        """16 accounts setting one address (in different cases) at once: one gets it.

        Every other one is DuplicateAccountError("email") and keeps its own address.
        """
        made = [accounts.create(NewAccount(email=f"user{i}@example.kz"), now=T0) for i in range(16)]

        def take(index: int) -> str:
            try:
                accounts.set_email(
                    made[index].id, "Wanted@example.kz" if index % 2 else "WANTED@example.kz"
                )
            except DuplicateAccountError as exc:
                return exc.field
            return "set"

        outcomes = _race(16, take)
        assert Counter(outcomes) == Counter({"set": 1, "email": 15})
        owner = accounts.find_by_login("email", "wanted@example.kz")
        assert owner is not None
        assert owner.id == made[outcomes.index("set")].id
        for index, account in enumerate(made):
            if outcomes[index] == "email":
                assert accounts.get(account.id) == account

    def test_set_email_unknown_account(self, accounts: AccountStore) -> None:
        """set_email() on an unknown id raises AccountNotFoundError."""
        with pytest.raises(AccountNotFoundError):
            accounts.set_email("no-such-id", "x@example.kz")

    def test_set_email_rejects_bad_input(self, accounts: AccountStore) -> None:
        """An empty or non-str e-mail is refused before anything is written."""
        created = accounts.create(_new(), now=T0)
        with pytest.raises(ValueError, match="email"):
            accounts.set_email(created.id, "")
        with pytest.raises(TypeError):
            accounts.set_email(created.id, None)  # type: ignore[arg-type]
        assert accounts.get(created.id) == created

    def test_mark_email_confirmed(self, accounts: AccountStore) -> None:
        """A matching address (any case) is marked: True, and nothing else changes."""
        created = accounts.create(_new(), now=T0)
        assert accounts.mark_email_confirmed(created.id, email="ALIYA@Example.KZ", now=T0) is True
        stored = accounts.get(created.id)
        assert stored is not None
        assert stored.email_confirmed is True
        assert stored == replace(created, email_confirmed=True)
        # Marking a confirmed address again still finds it equal: True, nothing changes.
        assert accounts.mark_email_confirmed(created.id, email="aliya@example.kz", now=T0)
        assert accounts.get(created.id) == stored

    def test_mark_email_confirmed_refuses_an_old_address(self, accounts: AccountStore) -> None:
        """After set_email to another address, a mark with the old one is False, not marked."""
        created = accounts.create(_new(), now=T0)
        accounts.set_email(created.id, "new@example.kz")
        changed = accounts.get(created.id)
        assert changed is not None
        assert accounts.mark_email_confirmed(created.id, email="aliya@example.kz", now=T0) is False
        assert accounts.get(created.id) == changed
        assert accounts.mark_email_confirmed(created.id, email="New@Example.kz", now=T0) is True
        stored = accounts.get(created.id)
        assert stored is not None
        assert (stored.email, stored.email_confirmed) == ("new@example.kz", True)

    def test_mark_email_confirmed_without_an_address(self, accounts: AccountStore) -> None:
        """An account without an e-mail has nothing to mark: False."""
        created = accounts.create(NewAccount(username="aliya"), now=T0)
        assert accounts.mark_email_confirmed(created.id, email="aliya@example.kz", now=T0) is False
        assert accounts.get(created.id) == created

    def test_mark_email_confirmed_unknown_or_garbage(self, accounts: AccountStore) -> None:
        """Unknown ids and addresses no account can have -- empty, huge, NUL -- are False."""
        created = accounts.create(_new(), now=T0)
        for unknown in ("no-such-id", "", "x" * 10_000, "\x00", "\ud800"):
            assert accounts.mark_email_confirmed(unknown, email="aliya@example.kz", now=T0) is False
        for garbage in ("", "x" * 10_000, "aliya@example.kz\x00", "\udfff", "aliya"):
            assert accounts.mark_email_confirmed(created.id, email=garbage, now=T0) is False
        assert accounts.get(created.id) == created

    def test_mark_email_confirmed_rejects_bad_arguments(self, accounts: AccountStore) -> None:
        """A non-str address or id: TypeError; a naive ``now``: ValueError; nothing marked."""
        created = accounts.create(_new(), now=T0)
        for bad in (None, b"aliya@example.kz", 1):
            with pytest.raises(TypeError):
                accounts.mark_email_confirmed(created.id, email=bad, now=T0)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            accounts.mark_email_confirmed(None, email="aliya@example.kz", now=T0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="aware"):
            accounts.mark_email_confirmed(created.id, email="aliya@example.kz", now=_NAIVE)
        assert accounts.get(created.id) == created

    def test_mark_racing_an_address_change(self, accounts: AccountStore) -> None:
        """Marks of the old address racing set_email never confirm the new address."""
        created = accounts.create(_new(), now=T0)
        addresses = ("aliya@example.kz", "new@example.kz")
        for round_ in range(4):
            old, new = addresses[round_ % 2], addresses[(round_ + 1) % 2]

            def act(index: int, old: str = old, new: str = new) -> bool:
                if index == 0:
                    accounts.set_email(created.id, new)
                    return False
                return accounts.mark_email_confirmed(created.id, email=old, now=T0)

            _race(16, act)
            stored = accounts.get(created.id)
            assert stored is not None
            assert (stored.email, stored.email_confirmed) == (new, False)

    def test_reserve_counts_an_attempt(self, accounts: AccountStore) -> None:
        """Each reserve with the current count adds one and stamps the time; success resets."""
        created = accounts.create(_new(), now=T0)
        assert accounts.reserve_login_attempt(created.id, expected_failures=0, now=T0 + _US)
        assert accounts.reserve_login_attempt(created.id, expected_failures=1, now=T0 + 2 * _US)
        stored = accounts.get(created.id)
        assert stored == replace(created, failed_logins=2, last_failed_login_at=T0 + 2 * _US)
        accounts.record_login_success(created.id, now=T0 + _HOUR)
        stored = accounts.get(created.id)
        assert stored is not None
        assert (stored.failed_logins, stored.last_login_at) == (0, T0 + _HOUR)
        assert stored.last_failed_login_at == T0 + 2 * _US
        assert accounts.reserve_login_attempt(
            created.id, expected_failures=0, now=(T0 + 2 * _HOUR).astimezone(_ALMATY)
        )
        stored = accounts.get(created.id)
        assert stored is not None
        assert (stored.failed_logins, stored.last_failed_login_at) == (1, T0 + 2 * _HOUR)
        assert stored.security_stamp == created.security_stamp

    def test_reserve_with_a_stale_count_writes_nothing(self, accounts: AccountStore) -> None:
        """A count other than the stored one -- lower, higher, huge -- is False, no write."""
        created = accounts.create(_new(), now=T0)
        assert accounts.reserve_login_attempt(created.id, expected_failures=0, now=T0)
        counted = accounts.get(created.id)
        assert counted is not None
        for stale in (0, 2, 3, 2**31, 2**63 - 1, 2**63, 2**100):
            assert (
                accounts.reserve_login_attempt(created.id, expected_failures=stale, now=T0 + _HOUR)
                is False
            )
        assert accounts.get(created.id) == counted

    def test_reserve_unknown_account(self, accounts: AccountStore) -> None:
        """An id no account has, however odd the string, is False and writes nothing."""
        created = accounts.create(_new(), now=T0)
        for unknown in ("no-such-id", "", "x" * 10_000, "\x00", "\ud800"):
            assert accounts.reserve_login_attempt(unknown, expected_failures=0, now=T0) is False
        assert accounts.get(created.id) == created

    def test_reserve_rejects_bad_arguments(self, accounts: AccountStore) -> None:
        """A non-int, bool or negative count, a naive or non-datetime ``now``: refused."""
        created = accounts.create(_new(), now=T0)
        for bad in ("0", 0.0, None, True, False):
            with pytest.raises(TypeError):
                accounts.reserve_login_attempt(created.id, expected_failures=bad, now=T0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="expected_failures"):
            accounts.reserve_login_attempt(created.id, expected_failures=-1, now=T0)
        with pytest.raises(ValueError, match="aware"):
            accounts.reserve_login_attempt(created.id, expected_failures=0, now=_NAIVE)
        with pytest.raises(TypeError):
            accounts.reserve_login_attempt(created.id, expected_failures=0, now="now")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            accounts.reserve_login_attempt(None, expected_failures=0, now=T0)  # type: ignore[arg-type]
        assert accounts.get(created.id) == created

    def test_racing_reservations_with_one_count(self, accounts: AccountStore) -> None:
        """32 threads reserving with the same expected count: exactly one True."""
        created = accounts.create(_new(), now=T0)
        wins = _race(
            _THREADS,
            lambda i: accounts.reserve_login_attempt(
                created.id, expected_failures=0, now=T0 + i * _US
            ),
        )
        assert wins.count(True) == 1
        stored = accounts.get(created.id)
        assert stored is not None
        assert stored.failed_logins == 1
        assert stored.last_failed_login_at == T0 + wins.index(True) * _US

    def test_racing_read_then_reserve_loops(self, accounts: AccountStore) -> None:
        """32 threads each reading the count and reserving until one wins: 1..32 once each."""
        created = accounts.create(_new(), now=T0)

        def reserve_once(_: int) -> int:
            while True:
                account = accounts.get(created.id)
                assert account is not None
                seen = account.failed_logins
                if accounts.reserve_login_attempt(created.id, expected_failures=seen, now=T0):
                    return seen + 1

        won = _race(_THREADS, reserve_once)
        assert sorted(won) == list(range(1, _THREADS + 1))
        stored = accounts.get(created.id)
        assert stored is not None
        assert stored.failed_logins == _THREADS

    def test_clear_login_failures_keeps_the_times(self, accounts: AccountStore) -> None:
        """Clearing failures (a recovered account) sets the count to 0 and nothing else."""
        created = accounts.create(_new(), now=T0)
        accounts.reserve_login_attempt(created.id, expected_failures=0, now=T0 + _US)
        accounts.reserve_login_attempt(created.id, expected_failures=1, now=T0 + 2 * _US)
        accounts.clear_login_failures(created.id)
        stored = accounts.get(created.id)
        assert stored == replace(created, last_failed_login_at=T0 + 2 * _US)
        with pytest.raises(AccountNotFoundError):
            accounts.clear_login_failures("no-such-id")

    def test_login_records_unknown_or_naive(self, accounts: AccountStore) -> None:
        """record_login_success: unknown id AccountNotFoundError; naive ``now`` ValueError."""
        created = accounts.create(_new(), now=T0)
        with pytest.raises(AccountNotFoundError):
            accounts.record_login_success("no-such-id", now=T0)
        with pytest.raises(ValueError, match="aware"):
            accounts.record_login_success(created.id, now=_NAIVE)
        assert accounts.get(created.id) == created

    def test_create_gives_a_security_stamp(self, accounts: AccountStore) -> None:
        """Every new account has a non-empty stamp of at most 64 characters, its own."""
        created = [
            accounts.create(NewAccount(username=f"user{i}", password_hash=_HASH_A), now=T0)
            for i in range(5)
        ]
        stamps = {account.security_stamp for account in created}
        assert len(stamps) == 5
        for account in created:
            assert isinstance(account.security_stamp, str)
            assert 1 <= len(account.security_stamp) <= 64
            stored = accounts.get(account.id)
            assert stored is not None
            assert stored.security_stamp == account.security_stamp

    def test_password_change_rotates_the_stamp(self, accounts: AccountStore) -> None:
        """Each won password CAS gives a new stamp, even back to an earlier hash: never reused."""
        created = accounts.create(_new(), now=T0)
        seen = [created.security_stamp]
        for expected, new in ((_HASH_A, _HASH_B), (_HASH_B, _HASH_A), (_HASH_A, _HASH_B)):
            assert accounts.set_password_hash(created.id, expected=expected, new=new) is True
            stored = accounts.get(created.id)
            assert stored is not None
            assert stored.password_hash == new
            assert stored.security_stamp not in seen
            assert stored == replace(
                created, password_hash=new, security_stamp=stored.security_stamp
            )
            seen.append(stored.security_stamp)
        without = accounts.create(NewAccount(username="nopass"), now=T0)
        assert accounts.set_password_hash(without.id, expected=None, new=_HASH_A) is True
        stored = accounts.get(without.id)
        assert stored is not None
        assert stored.security_stamp not in (*seen, without.security_stamp)

    def test_rehash_keeps_the_stamp(self, accounts: AccountStore) -> None:
        """With ``rotate_stamp=False`` the hash changes and the stamp stays."""
        created = accounts.create(_new(), now=T0)
        assert accounts.set_password_hash(
            created.id, expected=_HASH_A, new=_HASH_B, rotate_stamp=False
        )
        assert accounts.get(created.id) == replace(created, password_hash=_HASH_B)

    def test_lost_password_cas_keeps_the_stamp(self, accounts: AccountStore) -> None:
        """A lost compare-and-set writes nothing: hash and stamp stay."""
        created = accounts.create(_new(), now=T0)
        assert accounts.set_password_hash(created.id, expected=_HASH_B, new="new") is False
        assert accounts.set_password_hash(created.id, expected=None, new="new") is False
        assert (
            accounts.set_password_hash(created.id, expected=_HASH_B, new="new", rotate_stamp=True)
            is False
        )
        assert accounts.get(created.id) == created

    def test_racing_password_changes_rotate_once(self, accounts: AccountStore) -> None:
        """Of 16 racing changes from one hash, the winner's write holds a new stamp."""
        created = accounts.create(_new(), now=T0)
        wins = _race(
            16, lambda i: accounts.set_password_hash(created.id, expected=_HASH_A, new=f"new-{i}")
        )
        assert wins.count(True) == 1
        stored = accounts.get(created.id)
        assert stored is not None
        assert stored.security_stamp != created.security_stamp
        assert stored == replace(
            created, password_hash=f"new-{wins.index(True)}", security_stamp=stored.security_stamp
        )

    def test_set_email_rotates_the_stamp(self, accounts: AccountStore) -> None:
        """Every set_email gives a new stamp -- back to the earlier address too."""
        created = accounts.create(_new(), now=T0)
        seen = [created.security_stamp]
        for address in ("new@example.kz", "aliya@example.kz", "ALIYA@example.kz"):
            accounts.set_email(created.id, address, confirmed=True)
            stored = accounts.get(created.id)
            assert stored is not None
            assert stored.security_stamp not in seen
            assert stored == replace(
                created, email=address, email_confirmed=True, security_stamp=stored.security_stamp
            )
            seen.append(stored.security_stamp)

    def test_other_writes_keep_the_stamp(self, accounts: AccountStore) -> None:
        """Marking, reserving, succeeding and clearing never touch the stamp."""
        created = accounts.create(_new(), now=T0)
        accounts.mark_email_confirmed(created.id, email="aliya@example.kz", now=T0)
        accounts.reserve_login_attempt(created.id, expected_failures=0, now=T0)
        accounts.clear_login_failures(created.id)
        accounts.record_login_success(created.id, now=T0 + _HOUR)
        stored = accounts.get(created.id)
        assert stored is not None
        assert stored.security_stamp == created.security_stamp
        for kind, value in (("username", "aliya"), ("email", "aliya@example.kz")):
            found = accounts.find_by_login(kind, value)  # type: ignore[arg-type]
            assert found == stored

    def test_password_hash_not_in_repr(self, accounts: AccountStore) -> None:
        """An account's repr never shows its password hash."""
        created = accounts.create(_new(), now=T0)
        assert _HASH_A not in repr(created)
        assert _HASH_A not in repr(accounts.get(created.id))

    def test_security_stamp_not_in_repr(self, accounts: AccountStore) -> None:
        """An account's repr never shows its security stamp."""
        created = accounts.create(_new(), now=T0)
        stored = accounts.get(created.id)
        for account in (created, stored):
            assert created.security_stamp not in repr(account)
            assert "security_stamp" not in repr(account)

    # -- the password's age --

    def test_create_records_when_the_password_was_set(self, accounts: AccountStore) -> None:
        """A new account with a hash has ``password_changed_at=now``; without one, ``None``."""
        with_hash = accounts.create(_new(), now=T0)
        without = accounts.create(
            NewAccount(username="nopass", must_change_password=True), now=T0 + _US
        )
        assert with_hash.password_changed_at == T0
        assert (with_hash.must_change_password, with_hash.grace_logins_used) == (False, 0)
        assert without.password_changed_at is None
        assert without.must_change_password is True
        assert accounts.get(with_hash.id) == with_hash
        assert accounts.get(without.id) == without

    def test_new_password_resets_the_age(self, accounts: AccountStore) -> None:
        """With ``now``: changed time set, must-change cleared, grace count 0, in one write."""
        created = accounts.create(replace(_new(), must_change_password=True), now=T0)
        assert accounts.use_grace_login(created.id, expected=0)
        later = T0 + timedelta(days=400, microseconds=3)
        assert accounts.set_password_hash(created.id, expected=_HASH_A, new=_HASH_B, now=later)
        stored = accounts.get(created.id)
        assert stored is not None
        assert stored.password_changed_at == later
        assert (stored.must_change_password, stored.grace_logins_used) == (False, 0)

    def test_write_without_now_keeps_the_age(self, accounts: AccountStore) -> None:
        """A rehash (no ``now``) or a lost compare-and-set leaves the three age fields alone."""
        created = accounts.create(replace(_new(), must_change_password=True), now=T0)
        assert accounts.use_grace_login(created.id, expected=0)
        assert accounts.set_password_hash(
            created.id, expected=_HASH_A, new=_HASH_B, rotate_stamp=False
        )
        assert not accounts.set_password_hash(
            created.id, expected=_HASH_A, new=_HASH_A, now=T0 + _US
        )
        stored = accounts.get(created.id)
        assert stored is not None
        assert stored.password_changed_at == T0
        assert (stored.must_change_password, stored.grace_logins_used) == (True, 1)

    def test_set_must_change_password(self, accounts: AccountStore) -> None:
        """The flag is set and cleared; nothing else changes (the stamp is kept)."""
        created = accounts.create(_new(), now=T0)
        accounts.set_must_change_password(created.id, True)
        assert accounts.get(created.id) == replace(created, must_change_password=True)
        accounts.set_must_change_password(created.id, False)
        assert accounts.get(created.id) == created

    def test_set_must_change_password_bad_input(self, accounts: AccountStore) -> None:
        """Unknown or garbage ids: AccountNotFoundError; a non-bool flag: TypeError."""
        created = accounts.create(_new(), now=T0)
        for garbage in ("no-such-id", "", "\x00", "\ud800", "x" * 100_000):
            with pytest.raises(AccountNotFoundError):
                accounts.set_must_change_password(garbage, True)
        for flag in (1, None, "yes"):
            with pytest.raises(TypeError):
                accounts.set_must_change_password(created.id, flag)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            accounts.set_must_change_password(None, True)  # type: ignore[arg-type]
        assert accounts.get(created.id) == created

    def test_use_grace_login_counts_once_per_expected(self, accounts: AccountStore) -> None:
        """Counts up from the read value; a stale value or unknown id writes nothing."""
        created = accounts.create(_new(), now=T0)
        assert accounts.use_grace_login(created.id, expected=0)
        assert accounts.use_grace_login(created.id, expected=1)
        assert not accounts.use_grace_login(created.id, expected=1)
        assert not accounts.use_grace_login(created.id, expected=0)
        assert not accounts.use_grace_login(created.id, expected=2**70)
        for garbage in ("no-such-id", "", "\x00", "\ud800", "x" * 100_000):
            assert accounts.use_grace_login(garbage, expected=0) is False
        assert accounts.get(created.id) == replace(created, grace_logins_used=2)

    def test_use_grace_login_bad_input(self, accounts: AccountStore) -> None:
        """A negative or non-int count raises; nothing is written."""
        created = accounts.create(_new(), now=T0)
        with pytest.raises(ValueError, match="expected"):
            accounts.use_grace_login(created.id, expected=-1)
        for count in (None, 1.0, True, "0"):
            with pytest.raises(TypeError):
                accounts.use_grace_login(created.id, expected=count)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            accounts.use_grace_login(None, expected=0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="aware"):
            accounts.set_password_hash(created.id, expected=_HASH_A, new=_HASH_B, now=_NAIVE)
        assert accounts.get(created.id) == created

    def test_racing_grace_logins_with_one_count(self, accounts: AccountStore) -> None:
        """32 threads using a grace log-in with the same count: exactly one wins."""
        created = accounts.create(_new(), now=T0)
        wins = _race(_THREADS, lambda i: accounts.use_grace_login(created.id, expected=0))
        assert wins.count(True) == 1
        stored = accounts.get(created.id)
        assert stored is not None
        assert stored.grace_logins_used == 1

    def test_find_by_iin_is_exact(self, accounts: AccountStore) -> None:
        """An IIN is found by exactly its 12 ASCII digits, nothing else."""
        created = accounts.create(NewAccount(iin=_IIN), now=T0)
        assert created.iin == _IIN
        assert accounts.get(created.id) == created
        assert accounts.find_by_login("iin", _IIN) == created
        fullwidth = _IIN.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
        arabic_indic = _IIN.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
        for other in (
            _OTHER_IIN,
            _IIN[:-1],
            _IIN + "0",
            f" {_IIN}",
            f"{_IIN}\n",
            "880101 300123",
            f"+{_IIN}",
            fullwidth,
            arabic_indic,
            f"{_IIN}\x00",
        ):
            assert accounts.find_by_login("iin", other) is None

    def test_iin_and_digit_logins_never_cross(self, accounts: AccountStore) -> None:
        """A user name or phone made of the same digits is another login: each finds its own."""
        by_name = accounts.create(NewAccount(username=_IIN), now=T0)
        by_iin = accounts.create(NewAccount(iin=_IIN), now=T0)
        by_phone = accounts.create(NewAccount(phone=f"+{_IIN}"), now=T0)
        assert accounts.find_by_login("username", _IIN) == by_name
        assert accounts.find_by_login("iin", _IIN) == by_iin
        assert accounts.find_by_login("phone", f"+{_IIN}") == by_phone
        assert accounts.find_by_login("phone", _IIN) is None
        assert accounts.find_by_login("iin", f"+{_IIN}") is None
        assert accounts.find_by_login("username", f"+{_IIN}") is None

    def test_racing_creates_with_one_iin(self, accounts: AccountStore) -> None:
        """16 threads creating accounts with the same IIN: exactly one succeeds."""

        def create(index: int) -> str:
            try:
                accounts.create(NewAccount(username=f"user{index}", iin=_IIN), now=T0)
            except DuplicateAccountError as exc:
                return exc.field
            return "created"

        outcomes = Counter(_race(16, create))
        assert outcomes == Counter({"created": 1, "iin": 15})

    def test_names_round_trip_in_order(self, accounts: AccountStore) -> None:
        """Names come back as given, in order: 8 of them, repeats, 128 characters, quotes."""
        names = (
            "Нұрсұлтан",
            "Aliya",
            "Aliya",
            'O\'Brien "Jr", [x] \\ {y}',
            "𝔸" * 128,  # outside the BMP: 128 characters, 512 bytes of UTF-8
            "ә" * 128,
            "张伟",
            "a",
        )
        created = accounts.create(NewAccount(username="aliya", names=names), now=T0)
        assert created.names == names
        for stored in (accounts.get(created.id), accounts.find_by_login("username", "ALIYA")):
            assert stored is not None
            assert stored.names == names
            assert isinstance(stored.names, tuple)
        reordered = accounts.create(NewAccount(username="bolat", names=names[::-1]), now=T0)
        assert accounts.get(reordered.id) == reordered
        assert reordered.names == names[::-1]

    def test_record_refuses_bad_names(self, accounts: AccountStore) -> None:
        """Nine names, one of 129 characters, an empty one, NUL or a bare str: refused."""
        too_many = tuple(f"name{i}" for i in range(9))
        for bad in (too_many, ("x" * 129,), ("",), ("a\x00b",), ("\ud800",)):
            with pytest.raises(ValueError, match="name"):
                NewAccount(username="aliya", names=bad)
        with pytest.raises(TypeError, match="names"):
            NewAccount(username="aliya", names="Aliya")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            NewAccount(username="aliya", names=(1,))  # type: ignore[arg-type]
        assert accounts.find_by_login("username", "aliya") is None

    def test_every_write_keeps_iin_and_names(self, accounts: AccountStore) -> None:
        """No write of the protocol touches the IIN or the names."""
        created = accounts.create(_new(), now=T0)
        accounts.set_password_hash(created.id, expected=_HASH_A, new=_HASH_B)
        accounts.set_password_hash(created.id, expected=_HASH_B, new=_HASH_A, rotate_stamp=False)
        accounts.set_email(created.id, "new@example.kz")
        accounts.mark_email_confirmed(created.id, email="new@example.kz", now=T0)
        accounts.reserve_login_attempt(created.id, expected_failures=0, now=T0)
        accounts.record_login_success(created.id, now=T0 + _HOUR)
        accounts.reserve_login_attempt(created.id, expected_failures=0, now=T0 + _HOUR)
        accounts.clear_login_failures(created.id)
        stored = accounts.find_by_login("iin", _IIN)
        assert stored is not None
        assert (stored.id, stored.iin, stored.names) == (created.id, _IIN, _NAMES)

    def test_iin_and_names_not_in_repr(self, accounts: AccountStore) -> None:
        """An account's repr shows neither its IIN (it encodes the birth date) nor its names."""
        created = accounts.create(_new(), now=T0)
        for account in (created, accounts.get(created.id)):
            text = repr(account)
            assert _IIN not in text
            assert "iin=" not in text
            assert "names=" not in text
            assert all(name not in text for name in _NAMES)
        assert _IIN not in repr(_new())
        assert "Нурланова" not in repr(_new())

    # -- contact details (update_contact) ---------------------------------------------------

    def test_create_keeps_phone_verified_and_time_zone(self, accounts: AccountStore) -> None:
        """``phone_verified`` and ``time_zone`` of the new account come back; the rest empty."""
        made = accounts.create(
            replace(_new(), phone_verified=True, time_zone="Asia/Almaty"), now=T0
        )
        plain = accounts.create(_new("other", "other@example.kz", None, iin=None), now=T0)
        for account, verified, zone in ((made, True, "Asia/Almaty"), (plain, False, None)):
            for stored in (account, accounts.get(account.id)):
                assert stored is not None
                assert (stored.phone_verified, stored.time_zone) == (verified, zone)
                assert stored.pending_email is None
                assert stored.pending_phone is None
                assert stored.previous_email is None
                assert stored.email_changed_at is None

    def test_update_contact_writes_every_field(self, accounts: AccountStore) -> None:
        """Every field of the contact is written as given and read back."""
        created = accounts.create(_new(), now=T0)
        contact = Contact(
            email="New.Address@example.kz",
            email_confirmed=True,
            phone="+77021234567",
            phone_verified=True,
            pending_email="next@example.kz",
            pending_phone="+77031234567",
            previous_email="aliya@example.kz",
            email_changed_at=(T0 + _US).astimezone(_ALMATY),
            time_zone="Asia/Aqtobe",
        )
        written = accounts.update_contact(
            created.id, expected_stamp=created.security_stamp, contact=contact
        )
        stored = accounts.get(created.id)
        assert written is not None
        assert written == stored
        assert stored.contact == contact
        assert stored.email_changed_at == T0 + _US
        assert stored.email_changed_at.utcoffset() == timedelta(0)
        assert (stored.username, stored.iin, stored.names) == ("aliya", _IIN, _NAMES)
        assert stored.password_hash == _HASH_A

    def test_update_contact_moves_the_logins(self, accounts: AccountStore) -> None:
        """The new e-mail and phone find the account; the old ones and pending ones do not."""
        created = accounts.create(_new(), now=T0)
        contact = replace(
            created.contact,
            email="new@example.kz",
            phone="+77021234567",
            pending_email="pending@example.kz",
            pending_phone="+77031234567",
        )
        accounts.update_contact(created.id, expected_stamp=created.security_stamp, contact=contact)
        assert accounts.find_by_login("email", "NEW@example.kz") is not None
        assert accounts.find_by_login("phone", "+77021234567") is not None
        for kind, value in (
            ("email", "aliya@example.kz"),
            ("phone", "+77011234567"),
            ("email", "pending@example.kz"),
            ("phone", "+77031234567"),
        ):
            assert accounts.find_by_login(kind, value) is None  # type: ignore[arg-type]
        # The freed address and phone can be taken by a new account.
        other = accounts.create(_new("other", "aliya@example.kz", "+77011234567", iin=None), now=T0)
        assert other.id != created.id

    def test_update_contact_can_remove_the_phone_and_address(self, accounts: AccountStore) -> None:
        """``None`` removes a login; the account keeps its other identifiers."""
        created = accounts.create(_new(), now=T0)
        contact = replace(created.contact, email=None, email_confirmed=False, phone=None)
        stored = accounts.update_contact(
            created.id, expected_stamp=created.security_stamp, contact=contact
        )
        assert stored is not None
        assert (stored.email, stored.phone) == (None, None)
        assert accounts.find_by_login("phone", "+77011234567") is None
        assert accounts.find_by_login("username", "aliya") is not None

    def test_update_contact_stamp(self, accounts: AccountStore) -> None:
        """A fresh stamp by default (never an earlier one); the same with rotate_stamp=False."""
        created = accounts.create(_new(), now=T0)
        kept = accounts.update_contact(
            created.id,
            expected_stamp=created.security_stamp,
            contact=replace(created.contact, time_zone="UTC"),
            rotate_stamp=False,
        )
        assert kept is not None
        assert kept.security_stamp == created.security_stamp
        seen = {created.security_stamp}
        current = kept
        for _ in range(3):
            changed = accounts.update_contact(
                created.id, expected_stamp=current.security_stamp, contact=created.contact
            )
            assert changed is not None
            assert changed.security_stamp not in seen
            seen.add(changed.security_stamp)
            current = changed

    def test_update_contact_with_a_stale_stamp_writes_nothing(self, accounts: AccountStore) -> None:
        """A stamp that is not the current one (or an unknown account) answers ``None``."""
        created = accounts.create(_new(), now=T0)
        accounts.set_password_hash(created.id, expected=_HASH_A, new=_HASH_B)
        contact = replace(created.contact, email="new@example.kz")
        assert (
            accounts.update_contact(
                created.id, expected_stamp=created.security_stamp, contact=contact
            )
            is None
        )
        stored = accounts.get(created.id)
        assert stored is not None
        assert stored.email == "aliya@example.kz"
        for account_id, stamp in (
            ("no-such-account", stored.security_stamp),
            ("", stored.security_stamp),
            ("x" * 100_000, stored.security_stamp),
            ("bad\x00id", stored.security_stamp),
            ("bad\ud800id", stored.security_stamp),
            (created.id, ""),
            (created.id, "s" * 100_000),
            (created.id, "bad\x00stamp"),
            (created.id, "bad\udfffstamp"),
        ):
            assert (
                accounts.update_contact(account_id, expected_stamp=stamp, contact=contact) is None
            )
        assert accounts.get(created.id) == stored

    def test_update_contact_duplicates(self, accounts: AccountStore) -> None:
        """Another account's e-mail (any case) or phone is refused; its own is not."""
        created = accounts.create(_new(), now=T0)
        accounts.create(_new("other", "other@example.kz", "+77021234567", iin=None), now=T0)
        for contact, field_name in (
            (replace(created.contact, email="OTHER@example.kz"), "email"),
            (replace(created.contact, phone="+77021234567"), "phone"),
        ):
            with pytest.raises(DuplicateAccountError) as caught:
                accounts.update_contact(
                    created.id, expected_stamp=created.security_stamp, contact=contact
                )
            assert caught.value.field == field_name
            assert accounts.get(created.id) == created
        same = accounts.update_contact(
            created.id,
            expected_stamp=created.security_stamp,
            contact=replace(created.contact, email="ALIYA@example.kz"),
        )
        assert same is not None
        assert same.email == "ALIYA@example.kz"
        pending = accounts.update_contact(
            created.id,
            expected_stamp=same.security_stamp,
            contact=replace(
                same.contact, pending_email="other@example.kz", pending_phone="+77021234567"
            ),
        )
        assert pending is not None
        assert pending.pending_email == "other@example.kz"

    def test_update_contact_clears_the_password(self, accounts: AccountStore) -> None:
        """``clear_password`` removes the password and its age in the same write."""
        created = accounts.create(replace(_new(), must_change_password=True), now=T0)
        stored = accounts.update_contact(
            created.id,
            expected_stamp=created.security_stamp,
            contact=created.contact,
            clear_password=True,
        )
        assert stored is not None
        assert stored.password_hash is None
        assert stored.password_changed_at is None
        assert not stored.must_change_password
        assert stored.grace_logins_used == 0
        assert accounts.get(created.id) == stored
        assert accounts.set_password_hash(created.id, expected=None, new=_HASH_B, now=T0)

    def test_update_contact_rejects_bad_arguments(self, accounts: AccountStore) -> None:
        """Wrong types raise TypeError before anything is written."""
        created = accounts.create(_new(), now=T0)
        stamp, contact = created.security_stamp, created.contact
        bad: list[dict[str, object]] = [
            {"account_id": None},
            {"account_id": b"id"},
            {"expected_stamp": None},
            {"expected_stamp": b"stamp"},
            {"contact": None},
            {"contact": {"email": "x@example.kz"}},
            {"rotate_stamp": "yes"},
            {"clear_password": 1},
        ]
        for override in bad:
            arguments: dict[str, object] = {
                "account_id": created.id,
                "expected_stamp": stamp,
                "contact": contact,
            }
            arguments.update(override)
            account_id = arguments.pop("account_id")
            with pytest.raises(TypeError):
                accounts.update_contact(account_id, **arguments)  # type: ignore[arg-type]
        assert accounts.get(created.id) == created

    def test_contact_record_refuses_bad_fields(self) -> None:
        """A malformed contact cannot be built, so it can never reach a store."""
        good = _new()
        base = Contact(
            email=good.email, email_confirmed=False, phone=good.phone, phone_verified=False
        )
        for change in (
            {"phone": "87011234567"},
            {"pending_phone": "+7 701"},
            {"phone": None, "phone_verified": True},
            {"email": ""},
            {"pending_email": "x" * 100_000},
            {"previous_email": "old@example.kz"},  # without email_changed_at
            {"email_changed_at": T0},  # without previous_email
            {"previous_email": "old@example.kz", "email_changed_at": _NAIVE},
            {"time_zone": "Not a zone!"},
            {"time_zone": "x" * 200},
            {"email_confirmed": 1},
        ):
            with pytest.raises((TypeError, ValueError)):
                replace(base, **change)
        for text in (repr(base), repr(replace(base, pending_email="p@example.kz"))):
            assert "aliya@example.kz" not in text
            assert "p@example.kz" not in text
            assert "+77011234567" not in text

    @pytest.mark.parametrize("racers", [2, _THREADS])
    def test_racing_contact_updates_from_one_stamp(
        self, accounts: AccountStore, racers: int
    ) -> None:
        """Of many updates read from one stamp, exactly one writes."""
        created = accounts.create(_new(), now=T0)

        def change(index: int) -> Account | None:
            contact = replace(created.contact, email=f"racer{index}@example.kz")
            return accounts.update_contact(
                created.id, expected_stamp=created.security_stamp, contact=contact
            )

        won = [result for result in _race(racers, change) if result is not None]
        assert len(won) == 1
        assert accounts.get(created.id) == won[0]
        assert accounts.find_by_login("email", won[0].email or "") is not None

    def test_racing_accounts_for_one_address(self, accounts: AccountStore) -> None:
        """Many accounts taking one address at once: exactly one gets it."""
        made = [
            accounts.create(_new(f"user{i}", f"user{i}@example.kz", None, iin=None), now=T0)
            for i in range(_THREADS)
        ]

        def take(index: int) -> bool:
            account = made[index]
            contact = replace(account.contact, email="wanted@example.kz", phone="+77021234567")
            try:
                accounts.update_contact(
                    account.id, expected_stamp=account.security_stamp, contact=contact
                )
            except DuplicateAccountError:
                return False
            return True

        assert sum(_race(_THREADS, take)) == 1
        owner = accounts.find_by_login("email", "wanted@example.kz")
        assert owner is not None
        assert owner == accounts.find_by_login("phone", "+77021234567")


def _entry(index: int, *, created_at: datetime = T0) -> HistoryEntry:
    return HistoryEntry(
        password_hash=f"$argon2id$hash-{index}",
        fingerprint=bytes([index % 256]) * 32,
        created_at=created_at + index * timedelta(days=1),
    )


class PasswordHistoryStoreContract:
    """The contract of :class:`~kaspi_identity.storage.PasswordHistoryStore`.

    Define ``make_history()`` returning an empty store, or override the ``history`` fixture.
    """

    def make_history(self) -> PasswordHistoryStore:
        """Return a new, empty history store (override this or the ``history`` fixture)."""
        raise NotImplementedError("define make_history() or override the history fixture")

    @pytest.fixture
    def history(self) -> PasswordHistoryStore:
        """Return the password history store under test."""
        return self.make_history()

    def test_empty_history(self, history: PasswordHistoryStore) -> None:
        """An account without history has an empty list."""
        assert history.recent("acct-1", 6) == []

    def test_recent_is_newest_first(self, history: PasswordHistoryStore) -> None:
        """Entries come back newest first, exactly as appended."""
        for index in range(3):
            history.append("acct-1", _entry(index), keep=6)
        assert history.recent("acct-1", 6) == [_entry(2), _entry(1), _entry(0)]

    def test_keep_trims_to_the_newest(self, history: PasswordHistoryStore) -> None:
        """After 8 appends with keep=6 only the newest 6 remain."""
        for index in range(8):
            history.append("acct-1", _entry(index), keep=6)
        assert history.recent("acct-1", 100) == [_entry(i) for i in range(7, 1, -1)]

    def test_keep_one(self, history: PasswordHistoryStore) -> None:
        """keep=1 holds only the last entry."""
        for index in range(3):
            history.append("acct-1", _entry(index), keep=1)
        assert history.recent("acct-1", 6) == [_entry(2)]

    def test_smaller_keep_trims_older_entries(self, history: PasswordHistoryStore) -> None:
        """An append with a smaller keep trims what earlier, larger keeps left."""
        for index in range(6):
            history.append("acct-1", _entry(index), keep=6)
        history.append("acct-1", _entry(6), keep=2)
        assert history.recent("acct-1", 6) == [_entry(6), _entry(5)]

    def test_limit_bounds_the_answer(self, history: PasswordHistoryStore) -> None:
        """recent(limit) returns the newest ``limit`` entries; limit=1 the newest only."""
        for index in range(5):
            history.append("acct-1", _entry(index), keep=6)
        assert history.recent("acct-1", 2) == [_entry(4), _entry(3)]
        assert history.recent("acct-1", 1) == [_entry(4)]

    def test_newest_means_last_appended(self, history: PasswordHistoryStore) -> None:
        """Order follows appending, not ``created_at``."""
        late, early = _entry(9), _entry(1)
        history.append("acct-1", late, keep=6)
        history.append("acct-1", early, keep=6)
        assert history.recent("acct-1", 6) == [early, late]
        history.append("acct-1", _entry(5), keep=2)
        assert history.recent("acct-1", 6) == [_entry(5), early]

    def test_accounts_are_separate(self, history: PasswordHistoryStore) -> None:
        """One account's appends and trims never touch another's entries."""
        history.append("acct-1", _entry(1), keep=6)
        history.append("acct-2", _entry(2), keep=1)
        history.append("acct-2", _entry(3), keep=1)
        assert history.recent("acct-1", 6) == [_entry(1)]
        assert history.recent("acct-2", 6) == [_entry(3)]

    def test_fields_round_trip(self, history: PasswordHistoryStore) -> None:
        """Hash, fingerprint bytes (all 256 values, or empty) and time come back exactly."""
        full = HistoryEntry(
            password_hash=_HASH_A,
            fingerprint=bytes(range(256)),
            created_at=T0.astimezone(_ALMATY) + timedelta(microseconds=7),
        )
        empty = HistoryEntry(password_hash=_HASH_B, fingerprint=b"", created_at=T0)
        history.append("acct-1", full, keep=6)
        history.append("acct-1", empty, keep=6)
        newest, oldest = history.recent("acct-1", 6)
        assert newest == empty
        assert oldest == full
        assert oldest.created_at.utcoffset() == timedelta(0)

    def test_history_bad_arguments(self, history: PasswordHistoryStore) -> None:
        """keep/limit below 1, empty or over-long ids: ValueError; wrong types: TypeError."""
        with pytest.raises(ValueError, match="keep"):
            history.append("acct-1", _entry(0), keep=0)
        with pytest.raises(ValueError, match="limit"):
            history.recent("acct-1", 0)
        with pytest.raises(ValueError, match="account_id"):
            history.append("", _entry(0), keep=6)
        with pytest.raises(ValueError, match="account_id"):
            history.recent("x" * 257, 6)
        with pytest.raises(TypeError):
            history.append(None, _entry(0), keep=6)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            history.append("acct-1", "hash", keep=6)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            history.append("acct-1", _entry(0), keep=True)
        assert history.recent("acct-1", 6) == []

    def test_concurrent_appends_never_exceed_keep(self, history: PasswordHistoryStore) -> None:
        """16 racing appends with keep=6 (and a reader): never more than 6 stored."""
        seen: list[int] = []
        stop = threading.Event()

        def read() -> None:
            while not stop.is_set():
                seen.append(len(history.recent("acct-1", 100)))

        reader = threading.Thread(target=read)
        reader.start()
        try:
            _race(16, lambda i: history.append("acct-1", _entry(i), keep=6))
        finally:
            stop.set()
            reader.join()
        stored = history.recent("acct-1", 100)
        assert len(stored) == 6
        assert len(set(stored)) == 6
        assert all(entry in {_entry(i) for i in range(16)} for entry in stored)
        assert max(seen, default=0) <= 6

    def test_secrets_not_in_repr(self) -> None:
        """An entry's repr shows neither the hash nor the fingerprint."""
        entry = HistoryEntry(password_hash=_HASH_A, fingerprint=b"\xde\xad", created_at=T0)
        assert repr(entry) == f"HistoryEntry(created_at={T0!r})"


class AccountWithHistoryContract:
    """The contract of :class:`~kaspi_identity.storage.AccountWithHistory`.

    Tested through one :class:`~kaspi_identity.storage.Storage`: its ``with_history`` is
    checked against what its ``accounts`` and ``history`` then hold. Define
    ``make_storage()`` returning a fresh, empty bundle, or override the ``storage`` fixture.
    A bundle whose ``with_history`` is ``None`` skips these tests.

    The fault tests need a way to make the history writes fail: override
    :meth:`break_history_writes`. Without it they skip.
    """

    def make_storage(self) -> Storage:
        """Return a new, empty storage bundle (override this or the ``storage`` fixture)."""
        raise NotImplementedError("define make_storage() or override the storage fixture")

    @pytest.fixture
    def storage(self) -> Iterator[Storage]:
        """Yield the storage bundle under test, and close it afterwards."""
        with self.make_storage() as storage:
            yield storage

    @pytest.fixture
    def with_history(self, storage: Storage) -> AccountWithHistory:
        """Return the bundle's ``with_history``; skip the test if it has none."""
        if storage.with_history is None:
            pytest.skip("this storage has no with_history (AccountWithHistory)")
        return storage.with_history

    def break_history_writes(self, storage: Storage) -> None:
        """Make every later history write of ``storage`` fail, from inside its transaction.

        Override it for the fault tests: after the call every insert into (or trim of) the
        password history must fail with :class:`~kaspi_identity.StorageError` -- a trigger
        that aborts, a revoked permission, a test double -- while reads keep working and the
        account writes stay as they were. The default skips those tests.
        """
        pytest.skip("define break_history_writes(storage) to run the fault tests")

    @staticmethod
    def _recorder(seen: list[Account], entry: HistoryEntry) -> Callable[[Account], HistoryEntry]:
        def build(account: Account) -> HistoryEntry:
            seen.append(account)
            return entry

        return build

    def test_create_with_history_writes_both(
        self, storage: Storage, with_history: AccountWithHistory
    ) -> None:
        """The account is stored, entry() gets that very account, its entry is the history."""
        seen: list[Account] = []
        created = with_history.create_with_history(
            _new(), now=T0, entry=self._recorder(seen, _entry(1)), keep=6
        )
        assert seen == [created]
        assert storage.accounts.get(created.id) == created
        assert storage.accounts.find_by_login("iin", _IIN) == created
        assert (created.username, created.iin, created.names) == ("aliya", _IIN, _NAMES)
        assert (created.password_hash, created.failed_logins, created.created_at) == (
            _HASH_A,
            0,
            T0,
        )
        assert 1 <= len(created.security_stamp) <= 64
        assert storage.history.recent(created.id, 10) == [_entry(1)]

    def test_create_with_history_without_an_entry(
        self, storage: Storage, with_history: AccountWithHistory
    ) -> None:
        """``entry=None`` stores the account and appends nothing."""
        created = with_history.create_with_history(
            NewAccount(email="bolat@example.kz"), now=T0.astimezone(_ALMATY), entry=None, keep=1
        )
        assert created.created_at == T0
        assert storage.accounts.get(created.id) == created
        assert storage.history.recent(created.id, 10) == []

    def test_create_with_history_keeps_the_newest(
        self, storage: Storage, with_history: AccountWithHistory
    ) -> None:
        """The entry of a new account is its only one, whatever ``keep``; stamps are fresh."""
        stamps = set()
        for keep, username in ((1, "one"), (6, "six")):
            created = with_history.create_with_history(
                NewAccount(username=username),
                now=T0,
                entry=lambda _, index=keep: _entry(index),  # type: ignore[misc]
                keep=keep,
            )
            assert storage.history.recent(created.id, 10) == [_entry(keep)]
            stamps.add(created.security_stamp)
        assert len(stamps) == 2

    @pytest.mark.parametrize(
        ("field", "clash"),
        [
            ("username", NewAccount(username="ALIYA", email="other@example.kz")),
            ("email", NewAccount(username="other", email="ALIYA@EXAMPLE.KZ")),
            ("phone", NewAccount(username="other", phone="+77011234567")),
            ("iin", NewAccount(username="other", iin=_IIN)),
        ],
    )
    def test_create_with_history_duplicate_writes_neither(
        self, storage: Storage, with_history: AccountWithHistory, field: str, clash: NewAccount
    ) -> None:
        """A clash raises DuplicateAccountError(field): no account, no history entry."""
        first = with_history.create_with_history(_new(), now=T0, entry=lambda _: _entry(1), keep=6)
        seen: list[Account] = []
        with pytest.raises(DuplicateAccountError) as caught:
            with_history.create_with_history(
                clash, now=T0, entry=self._recorder(seen, _entry(2)), keep=6
            )
        assert caught.value.field == field
        assert storage.accounts.find_by_login("username", "other") is None
        assert storage.accounts.find_by_login("email", "other@example.kz") is None
        assert storage.accounts.get(first.id) == first
        assert storage.history.recent(first.id, 10) == [_entry(1)]
        for account in seen:  # if entry() ran at all, nothing of it was kept
            assert storage.accounts.get(account.id) is None
            assert storage.history.recent(account.id, 10) == []

    def test_create_with_history_entry_that_raises_stores_nothing(
        self, storage: Storage, with_history: AccountWithHistory
    ) -> None:
        """entry() raising (or returning no HistoryEntry) leaves no account behind."""
        seen: list[Account] = []

        def explode(account: Account) -> HistoryEntry:
            seen.append(account)
            raise RuntimeError("entry failed")

        with pytest.raises(RuntimeError, match="entry failed"):
            with_history.create_with_history(_new(), now=T0, entry=explode, keep=6)

        def not_an_entry(account: Account) -> HistoryEntry:
            seen.append(account)
            return _HASH_B  # type: ignore[return-value]

        with pytest.raises(TypeError, match="HistoryEntry"):
            with_history.create_with_history(_new(), now=T0, entry=not_an_entry, keep=6)
        assert len(seen) == 2
        for account in seen:
            assert storage.accounts.get(account.id) is None
            assert storage.history.recent(account.id, 10) == []
        for kind, value in (("username", "aliya"), ("phone", "+77011234567"), ("iin", _IIN)):
            assert storage.accounts.find_by_login(kind, value) is None  # type: ignore[arg-type]
        # Every unique key is free again.
        storage.accounts.create(_new(), now=T0)

    def test_create_with_history_rejects_bad_arguments(
        self, storage: Storage, with_history: AccountWithHistory
    ) -> None:
        """A keep below 1, naive ``now``, non-record or non-callable: refused, nothing stored."""
        entry = lambda _: _entry(1)  # noqa: E731
        with pytest.raises(ValueError, match="keep"):
            with_history.create_with_history(_new(), now=T0, entry=entry, keep=0)
        with pytest.raises(ValueError, match="keep"):
            with_history.create_with_history(_new(), now=T0, entry=None, keep=0)
        with pytest.raises(TypeError):
            with_history.create_with_history(_new(), now=T0, entry=entry, keep=True)
        with pytest.raises(ValueError, match="aware"):
            with_history.create_with_history(_new(), now=_NAIVE, entry=entry, keep=6)
        with pytest.raises(TypeError):
            with_history.create_with_history(
                {"username": "aliya"},  # type: ignore[arg-type]
                now=T0,
                entry=entry,
                keep=6,
            )
        with pytest.raises(TypeError, match="entry"):
            with_history.create_with_history(_new(), now=T0, entry=_entry(1), keep=6)  # type: ignore[arg-type]
        assert storage.accounts.find_by_login("username", "aliya") is None
        assert storage.accounts.find_by_login("iin", _IIN) is None

    def test_replace_password_writes_both(
        self, storage: Storage, with_history: AccountWithHistory
    ) -> None:
        """A won compare-and-set stores the hash and a new stamp, and appends the entry."""
        created = storage.accounts.create(_new(), now=T0)
        seen = [created.security_stamp]
        entries: list[HistoryEntry] = []
        for index, (expected, new) in enumerate(
            ((_HASH_A, _HASH_B), (_HASH_B, _HASH_A), (_HASH_A, _HASH_B))
        ):
            entries.insert(0, _entry(index))
            assert (
                with_history.replace_password(
                    created.id, expected=expected, new=new, entry=_entry(index), keep=6
                )
                is True
            )
            stored = storage.accounts.get(created.id)
            assert stored is not None
            assert stored.security_stamp not in seen
            seen.append(stored.security_stamp)
            assert stored == replace(
                created, password_hash=new, security_stamp=stored.security_stamp
            )
            assert storage.history.recent(created.id, 10) == entries

    def test_replace_password_resets_the_age(
        self, storage: Storage, with_history: AccountWithHistory
    ) -> None:
        """With ``now`` the new password's time is set and must-change and grace cleared."""
        created = storage.accounts.create(replace(_new(), must_change_password=True), now=T0)
        assert storage.accounts.use_grace_login(created.id, expected=0)
        later = T0 + timedelta(days=31)
        assert with_history.replace_password(
            created.id, expected=_HASH_A, new=_HASH_B, entry=_entry(1), keep=6, now=later
        )
        stored = storage.accounts.get(created.id)
        assert stored is not None
        assert stored.password_changed_at == later
        assert (stored.must_change_password, stored.grace_logins_used) == (False, 0)
        with pytest.raises(ValueError, match="aware"):
            with_history.replace_password(
                created.id, expected=_HASH_B, new=_HASH_A, entry=_entry(2), keep=6, now=_NAIVE
            )
        assert storage.accounts.get(created.id) == stored

    def test_replace_password_from_no_password(
        self, storage: Storage, with_history: AccountWithHistory
    ) -> None:
        """``expected=None`` matches an account without a password, and only that."""
        created = storage.accounts.create(_new(password_hash=None), now=T0)
        assert not with_history.replace_password(
            created.id, expected=_HASH_A, new=_HASH_B, entry=_entry(1), keep=6
        )
        assert with_history.replace_password(
            created.id, expected=None, new=_HASH_B, entry=_entry(2), keep=6
        )
        assert not with_history.replace_password(
            created.id, expected=None, new=_HASH_A, entry=_entry(3), keep=6
        )
        stored = storage.accounts.get(created.id)
        assert stored is not None
        assert stored.password_hash == _HASH_B
        assert storage.history.recent(created.id, 10) == [_entry(2)]

    def test_replace_password_without_an_entry(
        self, storage: Storage, with_history: AccountWithHistory
    ) -> None:
        """``entry=None`` changes the hash and the stamp and leaves the history alone."""
        created = storage.accounts.create(_new(), now=T0)
        storage.history.append(created.id, _entry(1), keep=6)
        assert with_history.replace_password(
            created.id, expected=_HASH_A, new=_HASH_B, entry=None, keep=6
        )
        stored = storage.accounts.get(created.id)
        assert stored is not None
        assert (stored.password_hash, stored.security_stamp != created.security_stamp) == (
            _HASH_B,
            True,
        )
        assert storage.history.recent(created.id, 10) == [_entry(1)]

    def test_replace_password_losing_writes_neither(
        self, storage: Storage, with_history: AccountWithHistory
    ) -> None:
        """A lost compare-and-set is False and writes nothing: hash, stamp, history stay."""
        created = storage.accounts.create(_new(), now=T0)
        storage.history.append(created.id, _entry(1), keep=6)
        for expected in (_HASH_B, None, "", "x" * 2000, "a\x00"):
            assert (
                with_history.replace_password(
                    created.id, expected=expected, new=_HASH_B, entry=_entry(2), keep=1
                )
                is False
            )
        for unknown in ("no-such-id", "", "x" * 10_000, "\x00", "\ud800"):
            assert (
                with_history.replace_password(
                    unknown, expected=_HASH_A, new=_HASH_B, entry=_entry(3), keep=1
                )
                is False
            )
        assert storage.history.recent("no-such-id", 10) == []
        assert storage.accounts.get(created.id) == created
        assert storage.history.recent(created.id, 10) == [_entry(1)]

    def test_replace_password_keeps_the_newest(
        self, storage: Storage, with_history: AccountWithHistory
    ) -> None:
        """The append trims to the newest ``keep``, older entries and smaller keeps alike."""
        created = storage.accounts.create(_new(), now=T0)
        for index in range(3):
            storage.history.append(created.id, _entry(index), keep=6)
        assert with_history.replace_password(
            created.id, expected=_HASH_A, new=_HASH_B, entry=_entry(3), keep=2
        )
        assert storage.history.recent(created.id, 10) == [_entry(3), _entry(2)]
        assert with_history.replace_password(
            created.id, expected=_HASH_B, new=_HASH_A, entry=_entry(4), keep=1
        )
        assert storage.history.recent(created.id, 10) == [_entry(4)]

    def test_replace_password_rejects_bad_arguments(
        self, storage: Storage, with_history: AccountWithHistory
    ) -> None:
        """Bad keep, entry or hashes raise before anything is written, though the CAS would win."""
        created = storage.accounts.create(_new(), now=T0)
        storage.history.append(created.id, _entry(1), keep=6)
        calls: list[tuple[type[Exception], dict[str, object]]] = [
            (ValueError, {"keep": 0}),
            (ValueError, {"keep": 0, "entry": None}),
            (TypeError, {"keep": True}),
            (TypeError, {"keep": 1.0}),
            (TypeError, {"entry": "hash"}),
            (TypeError, {"entry": lambda _: _entry(2)}),
            (ValueError, {"new": ""}),
            (TypeError, {"new": None}),
            (TypeError, {"expected": b"x"}),
            (TypeError, {"account_id": None}),
        ]
        for error, changes in calls:
            arguments: dict[str, object] = {
                "account_id": created.id,
                "expected": _HASH_A,
                "new": _HASH_B,
                "entry": _entry(2),
                "keep": 6,
                **changes,
            }
            with pytest.raises(error):
                with_history.replace_password(**arguments)  # type: ignore[arg-type]
        assert storage.accounts.get(created.id) == created
        assert storage.history.recent(created.id, 10) == [_entry(1)]

    def test_history_fault_at_replace_changes_nothing(
        self, storage: Storage, with_history: AccountWithHistory
    ) -> None:
        """The history write failing after the hash's UPDATE: StorageError, both as before."""
        created = storage.accounts.create(_new(), now=T0)
        for index in range(2):
            storage.history.append(created.id, _entry(index), keep=2)
        self.break_history_writes(storage)
        with pytest.raises(StorageError):
            with_history.replace_password(
                created.id, expected=_HASH_A, new=_HASH_B, entry=_entry(2), keep=2
            )
        assert storage.accounts.get(created.id) == created  # the old password still works
        assert storage.history.recent(created.id, 10) == [_entry(1), _entry(0)]

    def test_history_fault_at_create_leaves_no_account(
        self, storage: Storage, with_history: AccountWithHistory
    ) -> None:
        """The history write failing after the INSERT: StorageError, no half-made account."""
        self.break_history_writes(storage)
        seen: list[Account] = []
        with pytest.raises(StorageError):
            with_history.create_with_history(
                _new(), now=T0, entry=self._recorder(seen, _entry(1)), keep=6
            )
        for account in seen:
            assert storage.accounts.get(account.id) is None
            assert storage.history.recent(account.id, 10) == []
        for kind, value in (
            ("username", "aliya"),
            ("email", "aliya@example.kz"),
            ("phone", "+77011234567"),
            ("iin", _IIN),
        ):
            assert storage.accounts.find_by_login(kind, value) is None  # type: ignore[arg-type]
        # A retry can finish the registration: every unique key is free.
        assert storage.accounts.create(_new(), now=T0).username == "aliya"

    def test_racing_replacements_from_one_hash(
        self, storage: Storage, with_history: AccountWithHistory
    ) -> None:
        """16 racing replacements from one hash: one True, one new entry, the winner's."""
        created = storage.accounts.create(_new(), now=T0)
        storage.history.append(created.id, _entry(100), keep=6)
        wins = _race(
            16,
            lambda i: with_history.replace_password(
                created.id, expected=_HASH_A, new=f"new-{i}", entry=_entry(i), keep=6
            ),
        )
        assert wins.count(True) == 1
        winner = wins.index(True)
        stored = storage.accounts.get(created.id)
        assert stored is not None
        assert stored.password_hash == f"new-{winner}"
        assert stored.security_stamp != created.security_stamp
        assert storage.history.recent(created.id, 10) == [_entry(winner), _entry(100)]

    def test_racing_creates_with_history(
        self, storage: Storage, with_history: AccountWithHistory
    ) -> None:
        """16 racing creations of one user name: one account, and only its entry is kept."""
        seen: list[Account] = []
        lock = threading.Lock()

        def create(index: int) -> str:
            def build(account: Account) -> HistoryEntry:
                with lock:
                    seen.append(account)
                return _entry(index)

            try:
                with_history.create_with_history(
                    NewAccount(username="Aliya", iin=_IIN), now=T0, entry=build, keep=6
                )
            except DuplicateAccountError as exc:
                return exc.field
            return f"created-{index}"

        outcomes = _race(16, create)
        winners = [outcome for outcome in outcomes if outcome.startswith("created")]
        assert len(winners) == 1
        assert Counter(outcomes)["username"] == 15
        stored = storage.accounts.find_by_login("username", "aliya")
        assert stored is not None
        assert storage.history.recent(stored.id, 10) == [_entry(outcomes.index(winners[0]))]
        for account in seen:
            if account.id != stored.id:
                assert storage.accounts.get(account.id) is None
                assert storage.history.recent(account.id, 10) == []

    @staticmethod
    def _queue(storage: Storage) -> OutboxStore:
        """The bundle's outbox, if its unit of work enqueues into it; else skip."""
        if storage.outbox is None or not enqueues_together(storage):
            pytest.skip("this storage's with_history enqueues no messages (no outbox)")
        return storage.outbox

    def test_replace_password_enqueues_in_the_same_step(
        self, storage: Storage, with_history: AccountWithHistory
    ) -> None:
        """A won compare-and-set enqueues the messages; a lost one enqueues none."""
        queue = self._queue(storage)
        created = storage.accounts.create(_new(), now=T0)
        assert with_history.replace_password(
            created.id,
            expected=_HASH_A,
            new=_HASH_B,
            entry=_entry(1),
            keep=6,
            messages=[_message(1), _message(2, channel="sms")],
        )
        assert {e.id for e in queue.list()} == {_message(1).id, _message(2).id}
        assert not with_history.replace_password(
            created.id,
            expected=_HASH_A,
            new=_HASH_A,
            entry=_entry(2),
            keep=6,
            messages=[_message(3)],
        )
        assert queue.get(_message(3).id) is None

    def test_create_with_history_enqueues_for_the_new_account(
        self, storage: Storage, with_history: AccountWithHistory
    ) -> None:
        """``messages(account)`` is called with the stored account and enqueued with it."""
        queue = self._queue(storage)
        made = with_history.create_with_history(
            _new(),
            now=T0,
            entry=None,
            keep=6,
            messages=lambda account: [replace(_message(1), account_id=account.id)],
        )
        entry = queue.get(_message(1).id)
        assert entry is not None
        assert entry.message.account_id == made.id
        with pytest.raises(DuplicateAccountError):
            with_history.create_with_history(
                _new(), now=T0, entry=None, keep=6, messages=lambda _: [_message(2)]
            )
        assert queue.get(_message(2).id) is None

    def test_messages_that_raise_store_nothing(
        self, storage: Storage, with_history: AccountWithHistory
    ) -> None:
        """A ``messages`` callable that raises leaves no account and no message."""
        self._queue(storage)

        def broken(account: Account) -> list[OutboxMessage]:
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            with_history.create_with_history(_new(), now=T0, entry=None, keep=6, messages=broken)
        assert storage.accounts.find_by_login("username", "aliya") is None

    def test_unit_of_work_refuses_bad_messages(
        self, storage: Storage, with_history: AccountWithHistory
    ) -> None:
        """Messages that are not OutboxMessage records raise TypeError; nothing is written."""
        self._queue(storage)
        created = storage.accounts.create(_new(), now=T0)
        with pytest.raises(TypeError):
            with_history.replace_password(
                created.id,
                expected=_HASH_A,
                new=_HASH_B,
                entry=None,
                keep=6,
                messages=["letter"],  # type: ignore[list-item]
            )
        assert storage.accounts.get(created.id) == created

    def test_history_fault_enqueues_nothing(
        self, storage: Storage, with_history: AccountWithHistory
    ) -> None:
        """The history write failing: the password and the queue are both as before."""
        queue = self._queue(storage)
        created = storage.accounts.create(_new(), now=T0)
        self.break_history_writes(storage)
        with pytest.raises(StorageError):
            with_history.replace_password(
                created.id,
                expected=_HASH_A,
                new=_HASH_B,
                entry=_entry(1),
                keep=6,
                messages=[_message(1)],
            )
        assert storage.accounts.get(created.id) == created
        assert queue.list() == []

    def test_update_contact_enqueues_in_the_same_step(
        self, storage: Storage, with_history: AccountWithHistory
    ) -> None:
        """A won contact update enqueues its notices; a lost or refused one enqueues none."""
        queue = self._queue(storage)
        created = storage.accounts.create(_new(), now=T0)
        storage.accounts.create(_new("other", "other@example.kz", None, iin=None), now=T0)
        changed = with_history.update_contact(
            created.id,
            expected_stamp=created.security_stamp,
            contact=replace(created.contact, email="new@example.kz"),
            messages=[_message(1), _message(2, channel="sms")],
        )
        assert changed is not None
        assert storage.accounts.get(created.id) == changed
        assert changed.security_stamp != created.security_stamp
        assert {e.id for e in queue.list()} == {_message(1).id, _message(2).id}
        assert (
            with_history.update_contact(
                created.id,
                expected_stamp=created.security_stamp,
                contact=created.contact,
                messages=[_message(3)],
            )
            is None
        )
        with pytest.raises(DuplicateAccountError):
            with_history.update_contact(
                created.id,
                expected_stamp=changed.security_stamp,
                contact=replace(changed.contact, email="OTHER@example.kz"),
                messages=[_message(4)],
            )
        assert queue.get(_message(3).id) is None
        assert queue.get(_message(4).id) is None
        assert storage.accounts.get(created.id) == changed

    def test_update_contact_refuses_bad_messages(
        self, storage: Storage, with_history: AccountWithHistory
    ) -> None:
        """Messages that are not OutboxMessage records raise TypeError; nothing is written."""
        self._queue(storage)
        created = storage.accounts.create(_new(), now=T0)
        with pytest.raises(TypeError):
            with_history.update_contact(
                created.id,
                expected_stamp=created.security_stamp,
                contact=replace(created.contact, email="new@example.kz"),
                messages=["letter"],  # type: ignore[list-item]
            )
        assert storage.accounts.get(created.id) == created


class TokenLedgerContract:
    """The contract of :class:`~kaspi_identity.storage.TokenLedger`.

    Define ``make_ledger()`` returning an empty ledger, or override the ``ledger`` fixture.
    """

    def make_ledger(self) -> TokenLedger:
        """Return a new, empty token ledger (override this or the ``ledger`` fixture)."""
        raise NotImplementedError("define make_ledger() or override the ledger fixture")

    @pytest.fixture
    def ledger(self) -> TokenLedger:
        """Return the token ledger under test."""
        return self.make_ledger()

    def test_consume_once(self, ledger: TokenLedger) -> None:
        """The first consume() of an id is True, every later one False."""
        assert ledger.consume("tok-1", T0 + _HOUR, now=T0) is True
        assert ledger.consume("tok-1", T0 + _HOUR, now=T0) is False
        assert ledger.consume("tok-1", T0 + _HOUR, now=T0 + timedelta(minutes=30)) is False

    def test_ids_are_independent(self, ledger: TokenLedger) -> None:
        """Consuming one id does not consume another."""
        assert ledger.consume("tok-1", T0 + _HOUR, now=T0) is True
        assert ledger.consume("tok-2", T0 + _HOUR, now=T0) is True
        assert ledger.consume("TOK-1", T0 + _HOUR, now=T0) is True

    def test_token_expiry_boundary(self, ledger: TokenLedger) -> None:
        """Expiring exactly at ``now`` is dead (False); one microsecond later is live (True)."""
        assert ledger.consume("tok-1", T0, now=T0) is False
        assert ledger.consume("tok-2", T0 + _US, now=T0) is True
        assert ledger.consume("tok-3", T0 - _US, now=T0) is False

    def test_expired_consume_is_not_recorded(self, ledger: TokenLedger) -> None:
        """A dead token stays dead: later calls with the same data are False as well."""
        assert ledger.consume("tok-1", T0, now=T0) is False
        assert ledger.consume("tok-1", T0, now=T0 + _US) is False

    def test_used_id_stays_used_after_its_expiry(self, ledger: TokenLedger) -> None:
        """After expiry (and any purge) a used id never returns True again."""
        assert ledger.consume("tok-1", T0 + _HOUR, now=T0) is True
        later = T0 + timedelta(days=2)
        for index in range(300):
            ledger.consume(f"other-{index}", later + _HOUR, now=later)
        assert ledger.consume("tok-1", T0 + _HOUR, now=later) is False

    def test_purging_keeps_live_ids(self, ledger: TokenLedger) -> None:
        """Ids still live survive whatever purging other consumes trigger."""
        assert ledger.consume("long-lived", T0 + timedelta(days=30), now=T0) is True
        for index in range(300):
            now = T0 + index * timedelta(hours=1)
            ledger.consume(f"short-{index}", now + timedelta(minutes=1), now=now)
        assert ledger.consume("long-lived", T0 + timedelta(days=30), now=T0 + _HOUR * 300) is False

    def test_id_length_limits(self, ledger: TokenLedger) -> None:
        """Ids of 1 and 128 characters work; empty or 129 characters raise ValueError."""
        assert ledger.consume("x", T0 + _HOUR, now=T0) is True
        assert ledger.consume("y" * 128, T0 + _HOUR, now=T0) is True
        with pytest.raises(ValueError, match="token_id"):
            ledger.consume("", T0 + _HOUR, now=T0)
        with pytest.raises(ValueError, match="token_id"):
            ledger.consume("z" * 129, T0 + _HOUR, now=T0)
        with pytest.raises(ValueError, match="token_id"):
            ledger.consume("a\x00b", T0 + _HOUR, now=T0)

    def test_non_str_ids(self, ledger: TokenLedger) -> None:
        """None, bytes or int ids raise TypeError."""
        for bad in (None, b"tok-1", 1):
            with pytest.raises(TypeError):
                ledger.consume(bad, T0 + _HOUR, now=T0)  # type: ignore[arg-type]

    def test_naive_times(self, ledger: TokenLedger) -> None:
        """Naive ``now`` or ``expires_at`` raises ValueError and consumes nothing."""
        with pytest.raises(ValueError, match="aware"):
            ledger.consume("tok-1", T0 + _HOUR, now=_NAIVE)
        with pytest.raises(ValueError, match="aware"):
            ledger.consume("tok-1", _NAIVE, now=T0)
        assert ledger.consume("tok-1", T0 + _HOUR, now=T0) is True

    def test_other_zones(self, ledger: TokenLedger) -> None:
        """Aware times in any zone compare as instants."""
        assert ledger.consume("tok-1", (T0 + _US).astimezone(_ALMATY), now=T0) is True
        assert ledger.consume("tok-2", T0.astimezone(_ALMATY), now=T0) is False

    def test_racing_consumers(self, ledger: TokenLedger) -> None:
        """32 threads consuming one id together: exactly one True."""
        results = _race(_THREADS, lambda _: ledger.consume("tok-1", T0 + _HOUR, now=T0))
        assert results.count(True) == 1

    def test_racing_distinct_ids(self, ledger: TokenLedger) -> None:
        """32 threads consuming 32 different ids: all True."""
        results = _race(_THREADS, lambda i: ledger.consume(f"tok-{i}", T0 + _HOUR, now=T0))
        assert all(results)


_CODE = b"\x01" * 32
_WRONG = b"\x02" * 32
_OTHER = b"\x03" * 32
_PHONE = "+77011234567"
_WINDOW = timedelta(minutes=15)


class OneTimeCodeStoreContract:
    """The contract of :class:`~kaspi_identity.storage.OneTimeCodeStore`.

    Define ``make_codes()`` returning an empty store, or override the ``codes`` fixture.
    """

    def make_codes(self) -> OneTimeCodeStore:
        """Return a new, empty one-time code store (override this or the ``codes`` fixture)."""
        raise NotImplementedError("define make_codes() or override the codes fixture")

    @pytest.fixture
    def codes(self) -> OneTimeCodeStore:
        """Return the one-time code store under test."""
        return self.make_codes()

    @staticmethod
    def _put(
        codes: OneTimeCodeStore,
        code_hash: bytes = _CODE,
        *,
        now: datetime = T0,
        ttl: timedelta = timedelta(minutes=5),
        key: str = _PHONE,
    ) -> None:
        codes.put(key, code_hash, expires_at=now + ttl, now=now, failure_window=_WINDOW)

    def test_no_code(self, codes: OneTimeCodeStore) -> None:
        """Without a code every attempt is MISSING."""
        assert codes.attempt(_PHONE, (_CODE,), now=T0, max_attempts=5) is CodeAttempt.MISSING

    def test_right_code_once(self, codes: OneTimeCodeStore) -> None:
        """The right code is OK once; the code is then gone (single use)."""
        self._put(codes)
        assert codes.attempt(_PHONE, (_CODE,), now=T0, max_attempts=5) is CodeAttempt.OK
        assert codes.attempt(_PHONE, (_CODE,), now=T0, max_attempts=5) is CodeAttempt.MISSING

    def test_wrong_then_right(self, codes: OneTimeCodeStore) -> None:
        """A wrong code is MISMATCH and leaves the code usable."""
        self._put(codes)
        assert codes.attempt(_PHONE, (_WRONG,), now=T0, max_attempts=5) is CodeAttempt.MISMATCH
        assert codes.attempt(_PHONE, (_CODE,), now=T0, max_attempts=5) is CodeAttempt.OK

    def test_last_allowed_attempt(self, codes: OneTimeCodeStore) -> None:
        """With max 5: four wrong, then the right one as the fifth attempt is OK."""
        self._put(codes)
        for _ in range(4):
            assert codes.attempt(_PHONE, (_WRONG,), now=T0, max_attempts=5) is CodeAttempt.MISMATCH
        assert codes.attempt(_PHONE, (_CODE,), now=T0, max_attempts=5) is CodeAttempt.OK

    def test_one_attempt_too_many(self, codes: OneTimeCodeStore) -> None:
        """With max 5: five wrong, then the right one is EXHAUSTED; the code is then gone."""
        self._put(codes)
        for _ in range(5):
            assert codes.attempt(_PHONE, (_WRONG,), now=T0, max_attempts=5) is CodeAttempt.MISMATCH
        assert codes.attempt(_PHONE, (_CODE,), now=T0, max_attempts=5) is CodeAttempt.EXHAUSTED
        assert codes.attempt(_PHONE, (_CODE,), now=T0, max_attempts=5) is CodeAttempt.MISSING

    def test_max_attempts_one(self, codes: OneTimeCodeStore) -> None:
        """With max 1 a single wrong try burns the code."""
        self._put(codes)
        assert codes.attempt(_PHONE, (_WRONG,), now=T0, max_attempts=1) is CodeAttempt.MISMATCH
        assert codes.attempt(_PHONE, (_CODE,), now=T0, max_attempts=1) is CodeAttempt.EXHAUSTED

    def test_code_expiry_boundary(self, codes: OneTimeCodeStore) -> None:
        """A code is live one microsecond before ``expires_at`` and MISSING at it."""
        self._put(codes, ttl=timedelta(minutes=5))
        end = T0 + timedelta(minutes=5)
        assert codes.attempt(_PHONE, (_CODE,), now=end, max_attempts=5) is CodeAttempt.MISSING
        self._put(codes, now=T0 + _US, ttl=timedelta(minutes=5) - _US)
        assert codes.attempt(_PHONE, (_CODE,), now=end - _US, max_attempts=5) is CodeAttempt.OK

    def test_missing_is_not_counted(self, codes: OneTimeCodeStore) -> None:
        """Attempts without a live code use up nothing."""
        for _ in range(3):
            assert codes.attempt(_PHONE, (_WRONG,), now=T0, max_attempts=2) is CodeAttempt.MISSING
        self._put(codes)
        assert codes.attempt(_PHONE, (_WRONG,), now=T0, max_attempts=2) is CodeAttempt.MISMATCH
        assert codes.attempt(_PHONE, (_CODE,), now=T0, max_attempts=2) is CodeAttempt.OK

    def test_put_replaces_the_code(self, codes: OneTimeCodeStore) -> None:
        """After a new put() the old code is wrong and the new one works."""
        self._put(codes, _CODE)
        self._put(codes, _OTHER)
        assert codes.attempt(_PHONE, (_CODE,), now=T0, max_attempts=5) is CodeAttempt.MISMATCH
        assert codes.attempt(_PHONE, (_OTHER,), now=T0, max_attempts=5) is CodeAttempt.OK

    def test_new_code_keeps_the_failure_count(self, codes: OneTimeCodeStore) -> None:
        """Requesting a new code does not reset failed attempts (NIST SP 800-63B)."""
        self._put(codes, _CODE)
        for _ in range(3):
            assert codes.attempt(_PHONE, (_WRONG,), now=T0, max_attempts=3) is CodeAttempt.MISMATCH
        self._put(codes, _OTHER, now=T0 + _US)
        assert codes.attempt(_PHONE, (_OTHER,), now=T0 + _US, max_attempts=3) is (
            CodeAttempt.EXHAUSTED
        )

    def test_failure_window_boundary(self, codes: OneTimeCodeStore) -> None:
        """The count lives until the window (from the first failure) ends, not a µs less."""
        self._put(codes, _CODE)
        for _ in range(3):
            assert codes.attempt(_PHONE, (_WRONG,), now=T0, max_attempts=3) is CodeAttempt.MISMATCH
        just_before = T0 + _WINDOW - _US
        self._put(codes, _OTHER, now=just_before)
        assert codes.attempt(_PHONE, (_OTHER,), now=just_before, max_attempts=3) is (
            CodeAttempt.EXHAUSTED
        )
        self._put(codes, _OTHER, now=T0 + _WINDOW)
        assert codes.attempt(_PHONE, (_OTHER,), now=T0 + _WINDOW, max_attempts=3) is CodeAttempt.OK

    def test_window_does_not_slide(self, codes: OneTimeCodeStore) -> None:
        """Failures late in the window do not extend it."""
        self._put(codes, _CODE, ttl=_WINDOW * 3)
        assert codes.attempt(_PHONE, (_WRONG,), now=T0, max_attempts=2) is CodeAttempt.MISMATCH
        late = T0 + _WINDOW - _US
        assert codes.attempt(_PHONE, (_WRONG,), now=late, max_attempts=2) is CodeAttempt.MISMATCH
        assert codes.attempt(_PHONE, (_WRONG,), now=T0 + _WINDOW, max_attempts=2) is (
            CodeAttempt.MISMATCH
        )
        assert codes.attempt(_PHONE, (_CODE,), now=T0 + _WINDOW, max_attempts=2) is CodeAttempt.OK

    def test_success_resets_the_count(self, codes: OneTimeCodeStore) -> None:
        """After OK the next code starts with a fresh count."""
        self._put(codes, _CODE)
        for _ in range(2):
            codes.attempt(_PHONE, (_WRONG,), now=T0, max_attempts=3)
        assert codes.attempt(_PHONE, (_CODE,), now=T0, max_attempts=3) is CodeAttempt.OK
        self._put(codes, _OTHER)
        for _ in range(2):
            codes.attempt(_PHONE, (_WRONG,), now=T0, max_attempts=3)
        assert codes.attempt(_PHONE, (_OTHER,), now=T0, max_attempts=3) is CodeAttempt.OK

    def test_code_keys_are_separate(self, codes: OneTimeCodeStore) -> None:
        """Codes and counters of different keys never mix."""
        self._put(codes, _CODE, key="+77010000001")
        self._put(codes, _OTHER, key="+77010000002")
        assert codes.attempt("+77010000001", (_WRONG,), now=T0, max_attempts=1) is (
            CodeAttempt.MISMATCH
        )
        assert codes.attempt("+77010000002", (_CODE,), now=T0, max_attempts=5) is (
            CodeAttempt.MISMATCH
        )
        assert codes.attempt("+77010000002", (_OTHER,), now=T0, max_attempts=5) is CodeAttempt.OK

    def test_put_rejects_bad_arguments(self, codes: OneTimeCodeStore) -> None:
        """Dead-on-arrival expiry, non-positive window, bad hash or key, naive time: refused."""
        with pytest.raises(ValueError, match="expires_at"):
            codes.put(_PHONE, _CODE, expires_at=T0, now=T0, failure_window=_WINDOW)
        with pytest.raises(ValueError, match="failure_window"):
            codes.put(_PHONE, _CODE, expires_at=T0 + _HOUR, now=T0, failure_window=timedelta(0))
        with pytest.raises(ValueError, match="code_hash"):
            codes.put(_PHONE, b"", expires_at=T0 + _HOUR, now=T0, failure_window=_WINDOW)
        with pytest.raises(TypeError):
            codes.put(_PHONE, "123456", expires_at=T0 + _HOUR, now=T0, failure_window=_WINDOW)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="key"):
            codes.put("", _CODE, expires_at=T0 + _HOUR, now=T0, failure_window=_WINDOW)
        with pytest.raises(TypeError):
            codes.put(None, _CODE, expires_at=T0 + _HOUR, now=T0, failure_window=_WINDOW)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="aware"):
            codes.put(_PHONE, _CODE, expires_at=T0 + _HOUR, now=_NAIVE, failure_window=_WINDOW)
        with pytest.raises(ValueError, match="aware"):
            codes.put(_PHONE, _CODE, expires_at=_NAIVE, now=T0, failure_window=_WINDOW)
        assert codes.attempt(_PHONE, (_CODE,), now=T0, max_attempts=5) is CodeAttempt.MISSING

    def test_attempt_rejects_bad_arguments(self, codes: OneTimeCodeStore) -> None:
        """max_attempts below 1, bad hash or key, naive time: refused, nothing counted."""
        self._put(codes)
        with pytest.raises(ValueError, match="max_attempts"):
            codes.attempt(_PHONE, (_CODE,), now=T0, max_attempts=0)
        with pytest.raises(TypeError):
            codes.attempt(_PHONE, "123456", now=T0, max_attempts=5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="key"):
            codes.attempt("x" * 257, (_CODE,), now=T0, max_attempts=5)
        with pytest.raises(ValueError, match="aware"):
            codes.attempt(_PHONE, (_CODE,), now=_NAIVE, max_attempts=5)
        assert codes.attempt(_PHONE, (_WRONG,), now=T0, max_attempts=1) is CodeAttempt.MISMATCH

    def test_any_candidate_verifies(self, codes: OneTimeCodeStore) -> None:
        """A code stored under one key's hash verifies among other keys' hashes, any order."""
        self._put(codes, _CODE)
        assert codes.attempt(_PHONE, (_OTHER, _CODE), now=T0, max_attempts=5) is CodeAttempt.OK
        self._put(codes, _CODE)
        assert codes.attempt(_PHONE, [_CODE, _OTHER], now=T0, max_attempts=5) is CodeAttempt.OK
        self._put(codes, _CODE)
        eight = [bytes([index]) * 32 for index in range(4, 11)] + [_CODE]
        assert codes.attempt(_PHONE, eight, now=T0, max_attempts=5) is CodeAttempt.OK
        assert codes.attempt(_PHONE, eight, now=T0, max_attempts=5) is CodeAttempt.MISSING

    def test_wrong_candidates_count_as_one_attempt(self, codes: OneTimeCodeStore) -> None:
        """However many wrong candidates an attempt brings, it is one counted attempt."""
        self._put(codes, _CODE)
        wrong = [_WRONG, _OTHER, b"\x04" * 32]
        assert codes.attempt(_PHONE, wrong, now=T0, max_attempts=2) is CodeAttempt.MISMATCH
        assert codes.attempt(_PHONE, (_WRONG, _CODE), now=T0, max_attempts=2) is CodeAttempt.OK
        self._put(codes, _CODE)
        eight = [bytes([index]) * 32 for index in range(4, 12)]
        assert codes.attempt(_PHONE, eight, now=T0, max_attempts=1) is CodeAttempt.MISMATCH
        assert codes.attempt(_PHONE, [_CODE], now=T0, max_attempts=1) is CodeAttempt.EXHAUSTED

    def test_attempt_rejects_bad_candidates(self, codes: OneTimeCodeStore) -> None:
        """A bare bytes or str, none, nine, an empty or non-bytes hash: refused, not counted."""
        self._put(codes)
        for bare in (_CODE, bytearray(_CODE), memoryview(_CODE), "123456", None, 7):
            with pytest.raises(TypeError):
                codes.attempt(_PHONE, bare, now=T0, max_attempts=1)  # type: ignore[arg-type]
        for wrong_type in (["123456"], [_WRONG, bytearray(_CODE)], (None,), [_WRONG, 1]):
            with pytest.raises(TypeError):
                codes.attempt(_PHONE, wrong_type, now=T0, max_attempts=1)  # type: ignore[arg-type]
        for bad in ([], (), [_WRONG] * 8 + [_CODE], [b""], [_CODE, b""], [b"x" * 1025]):
            with pytest.raises(ValueError, match="candidate"):
                codes.attempt(_PHONE, bad, now=T0, max_attempts=1)
        assert codes.attempt(_PHONE, [_WRONG], now=T0, max_attempts=1) is CodeAttempt.MISMATCH
        assert codes.attempt(_PHONE, [_CODE], now=T0, max_attempts=1) is CodeAttempt.EXHAUSTED

    def test_bad_candidates_without_a_code(self, codes: OneTimeCodeStore) -> None:
        """The candidates are checked even when there is no code to compare with."""
        with pytest.raises(TypeError):
            codes.attempt(_PHONE, _CODE, now=T0, max_attempts=5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="candidate"):
            codes.attempt(_PHONE, [], now=T0, max_attempts=5)

    def test_racing_candidate_lists(self, codes: OneTimeCodeStore) -> None:
        """32 threads each bringing (wrong, right): exactly one OK, the rest MISSING."""
        self._put(codes)
        results = _race(
            _THREADS, lambda _: codes.attempt(_PHONE, (_WRONG, _CODE), now=T0, max_attempts=100)
        )
        assert Counter(results) == Counter({CodeAttempt.OK: 1, CodeAttempt.MISSING: 31})

    def test_racing_right_codes(self, codes: OneTimeCodeStore) -> None:
        """32 threads submitting the right code at once: exactly one OK, the rest MISSING."""
        self._put(codes)
        results = _race(
            _THREADS, lambda _: codes.attempt(_PHONE, (_CODE,), now=T0, max_attempts=100)
        )
        assert Counter(results) == Counter({CodeAttempt.OK: 1, CodeAttempt.MISSING: 31})

    def test_racing_wrong_codes(self, codes: OneTimeCodeStore) -> None:
        """32 racing wrong codes with max 5: exactly 5 MISMATCH, 1 EXHAUSTED, 26 MISSING."""
        self._put(codes)
        results = _race(
            _THREADS, lambda _: codes.attempt(_PHONE, (_WRONG,), now=T0, max_attempts=5)
        )
        assert Counter(results) == Counter(
            {CodeAttempt.MISMATCH: 5, CodeAttempt.EXHAUSTED: 1, CodeAttempt.MISSING: 26}
        )


_SECOND = timedelta(seconds=1)
_TEN = timedelta(seconds=10)


class RateLimiterContract:
    """The contract of :class:`~kaspi_identity.storage.RateLimiter`.

    Define ``make_rate_limiter()`` returning an empty limiter, or override the
    ``rate_limiter`` fixture.
    """

    def make_rate_limiter(self) -> RateLimiter:
        """Return a new, empty rate limiter (override this or the ``rate_limiter`` fixture)."""
        raise NotImplementedError("define make_rate_limiter() or override the rate_limiter fixture")

    @pytest.fixture
    def rate_limiter(self) -> RateLimiter:
        """Return the rate limiter under test."""
        return self.make_rate_limiter()

    def test_limit_then_denied(self, rate_limiter: RateLimiter) -> None:
        """Exactly ``limit`` hits are allowed; the next is denied with the window's rest."""
        for _ in range(3):
            result = rate_limiter.hit("ip:1", limit=3, window=_TEN, now=T0)
            assert (result.allowed, result.retry_after) == (True, timedelta(0))
        result = rate_limiter.hit("ip:1", limit=3, window=_TEN, now=T0)
        assert (result.allowed, result.retry_after) == (False, _TEN)

    def test_retry_after_counts_down(self, rate_limiter: RateLimiter) -> None:
        """retry_after is the time left in the window, measured from the first hit."""
        rate_limiter.hit("ip:1", limit=1, window=_TEN, now=T0)
        result = rate_limiter.hit("ip:1", limit=1, window=_TEN, now=T0 + 4 * _SECOND)
        assert (result.allowed, result.retry_after) == (False, 6 * _SECOND)

    def test_window_boundary(self, rate_limiter: RateLimiter) -> None:
        """One microsecond before the window ends: denied (1 µs to wait); at the end: allowed."""
        rate_limiter.hit("ip:1", limit=1, window=_TEN, now=T0)
        result = rate_limiter.hit("ip:1", limit=1, window=_TEN, now=T0 + _TEN - _US)
        assert (result.allowed, result.retry_after) == (False, _US)
        result = rate_limiter.hit("ip:1", limit=1, window=_TEN, now=T0 + _TEN)
        assert (result.allowed, result.retry_after) == (True, timedelta(0))

    def test_denied_hits_do_not_extend_the_window(self, rate_limiter: RateLimiter) -> None:
        """Knocking every second while denied does not push the window's end."""
        rate_limiter.hit("ip:1", limit=1, window=_TEN, now=T0)
        for second in range(1, 10):
            result = rate_limiter.hit("ip:1", limit=1, window=_TEN, now=T0 + second * _SECOND)
            assert not result.allowed
        assert rate_limiter.hit("ip:1", limit=1, window=_TEN, now=T0 + _TEN).allowed

    def test_new_window_opens_at_the_next_hit(self, rate_limiter: RateLimiter) -> None:
        """After a window ends the next hit opens a new one starting at that hit."""
        rate_limiter.hit("ip:1", limit=1, window=_TEN, now=T0)
        start = T0 + 13 * _SECOND
        assert rate_limiter.hit("ip:1", limit=1, window=_TEN, now=start).allowed
        result = rate_limiter.hit("ip:1", limit=1, window=_TEN, now=T0 + 2 * _TEN)
        assert (result.allowed, result.retry_after) == (False, 3 * _SECOND)
        assert rate_limiter.hit("ip:1", limit=1, window=_TEN, now=start + _TEN).allowed

    def test_rate_limit_keys_are_separate(self, rate_limiter: RateLimiter) -> None:
        """Hits on one key never count against another."""
        assert rate_limiter.hit("ip:1", limit=1, window=_TEN, now=T0).allowed
        assert rate_limiter.hit("ip:2", limit=1, window=_TEN, now=T0).allowed
        assert not rate_limiter.hit("ip:1", limit=1, window=_TEN, now=T0).allowed

    def test_rate_limit_bad_arguments(self, rate_limiter: RateLimiter) -> None:
        """A limit below 1, a non-positive window, bad key, naive time: refused, not counted."""
        with pytest.raises(ValueError, match="limit"):
            rate_limiter.hit("ip:1", limit=0, window=_TEN, now=T0)
        with pytest.raises(TypeError):
            rate_limiter.hit("ip:1", limit=True, window=_TEN, now=T0)
        with pytest.raises(ValueError, match="window"):
            rate_limiter.hit("ip:1", limit=1, window=timedelta(0), now=T0)
        with pytest.raises(ValueError, match="window"):
            rate_limiter.hit("ip:1", limit=1, window=-_TEN, now=T0)
        with pytest.raises(TypeError):
            rate_limiter.hit("ip:1", limit=1, window=10, now=T0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="key"):
            rate_limiter.hit("", limit=1, window=_TEN, now=T0)
        with pytest.raises(TypeError):
            rate_limiter.hit(None, limit=1, window=_TEN, now=T0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="aware"):
            rate_limiter.hit("ip:1", limit=1, window=_TEN, now=_NAIVE)
        assert rate_limiter.hit("ip:1", limit=1, window=_TEN, now=T0).allowed

    def test_racing_hits(self, rate_limiter: RateLimiter) -> None:
        """32 threads hitting a limit of 10 at once: exactly 10 allowed."""
        results = _race(_THREADS, lambda _: rate_limiter.hit("ip:1", limit=10, window=_TEN, now=T0))
        assert [r.allowed for r in results].count(True) == 10
        assert all(r.retry_after == _TEN for r in results if not r.allowed)


_MINUTE = timedelta(minutes=1)


def _message(
    index: int = 0,
    *,
    created_at: datetime = T0,
    deliver: bool = True,
    account_id: str | None = "acct-1",
    channel: OutboxChannel = "email",
) -> OutboxMessage:
    return OutboxMessage(
        id=f"{index:032x}",
        channel=channel,
        kind="password_reset",
        to="алия@example.kz" if channel == "email" else "+77011234567",
        language="kk",
        payload='{"minutes": 60, "link": {"purpose": "reset", "body": "eyJ"}}',
        account_id=account_id,
        created_at=created_at,
        deliver=deliver,
    )


class OutboxStoreContract:
    """The contract of :class:`~kaspi_identity.storage.OutboxStore`.

    Define ``make_outbox()`` returning an empty outbox, or override the ``outbox`` fixture.
    """

    def make_outbox(self) -> OutboxStore:
        """Return a new, empty outbox store (override this or the ``outbox`` fixture)."""
        raise NotImplementedError("define make_outbox() or override the outbox fixture")

    @pytest.fixture
    def outbox(self) -> OutboxStore:
        """Return the outbox store under test."""
        return self.make_outbox()

    def test_enqueue_then_get(self, outbox: OutboxStore) -> None:
        """A new message is pending, due now, with no attempt; every field round-trips."""
        message = _message(1)
        assert outbox.enqueue(message, now=T0) is True
        entry = outbox.get(message.id)
        assert entry is not None
        assert entry.message == message
        assert (entry.status, entry.attempts, entry.last_error) == ("pending", 0, None)
        assert (entry.next_attempt_at, entry.updated_at) == (T0, T0)
        assert entry.next_attempt_at.tzinfo is not None

    def test_enqueue_is_once_per_id(self, outbox: OutboxStore) -> None:
        """A second message with the same id changes nothing and answers False."""
        assert outbox.enqueue(_message(1), now=T0) is True
        other = replace(_message(1), kind="confirm_email")
        assert outbox.enqueue(other, now=T0 + _HOUR) is False
        entry = outbox.get(_message(1).id)
        assert entry is not None
        assert (entry.message.kind, entry.next_attempt_at) == ("password_reset", T0)

    def test_outbox_fields_round_trip(self, outbox: OutboxStore) -> None:
        """SMS, no account, a non-UTC creation time: stored and read back as given (in UTC)."""
        message = _message(
            2,
            channel="sms",
            account_id=None,
            created_at=datetime(2025, 3, 1, 14, 0, tzinfo=_ALMATY),
        )
        outbox.enqueue(message, now=T0)
        entry = outbox.get(message.id)
        assert entry is not None
        assert entry.message == message
        assert entry.message.created_at == T0
        assert entry.message.created_at.utcoffset() == timedelta(0)

    def test_void_is_stored_never_claimed(self, outbox: OutboxStore) -> None:
        """An unknown account's twin (deliver=False) is stored void and never claimed."""
        outbox.enqueue(_message(1, deliver=False), now=T0)
        assert outbox.claim(now=T0 + _HOUR, lease=_MINUTE, limit=10) == []
        entry = outbox.get(_message(1).id)
        assert entry is not None
        assert entry.status == "void"

    def test_claim_leases_due_entries(self, outbox: OutboxStore) -> None:
        """A claim counts an attempt and moves the entry to the lease's end."""
        outbox.enqueue(_message(1), now=T0)
        (entry,) = outbox.claim(now=T0, lease=_MINUTE, limit=10)
        assert (entry.id, entry.status, entry.attempts) == (_message(1).id, "pending", 1)
        assert entry.next_attempt_at == T0 + _MINUTE
        assert outbox.get(entry.id) == entry

    def test_claim_due_boundary(self, outbox: OutboxStore) -> None:
        """Due at ``now`` is claimed; due one microsecond later is not."""
        outbox.enqueue(_message(1), now=T0)
        outbox.enqueue(_message(2), now=T0 + _US)
        claimed = outbox.claim(now=T0, lease=_MINUTE, limit=10)
        assert [e.id for e in claimed] == [_message(1).id]

    def test_claim_in_the_lease_gets_nothing(self, outbox: OutboxStore) -> None:
        """Within the lease an entry is not claimed again; at its end it is (attempt 2)."""
        outbox.enqueue(_message(1), now=T0)
        outbox.claim(now=T0, lease=_MINUTE, limit=10)
        assert outbox.claim(now=T0 + _MINUTE - _US, lease=_MINUTE, limit=10) == []
        (again,) = outbox.claim(now=T0 + _MINUTE, lease=_MINUTE, limit=10)
        assert again.attempts == 2

    def test_claim_order_and_limit(self, outbox: OutboxStore) -> None:
        """Earliest due first; at most ``limit`` per claim."""
        for index in (3, 1, 2):
            outbox.enqueue(_message(index), now=T0 + index * _US)
        first = outbox.claim(now=T0 + _HOUR, lease=_MINUTE, limit=2)
        assert [e.id for e in first] == [_message(1).id, _message(2).id]
        rest = outbox.claim(now=T0 + _HOUR, lease=_MINUTE, limit=2)
        assert [e.id for e in rest] == [_message(3).id]

    def test_complete_by_the_latest_claim_only(self, outbox: OutboxStore) -> None:
        """Only the holder of the latest claim marks an entry sent; a stale one is refused."""
        outbox.enqueue(_message(1), now=T0)
        outbox.claim(now=T0, lease=_MINUTE, limit=1)
        outbox.claim(now=T0 + _MINUTE, lease=_MINUTE, limit=1)  # the first worker's lease ran out
        key = _message(1).id
        assert outbox.complete(key, attempt=1, now=T0 + _MINUTE) is False
        assert outbox.complete(key, attempt=2, now=T0 + _MINUTE) is True
        entry = outbox.get(key)
        assert entry is not None
        assert (entry.status, entry.attempts, entry.updated_at) == ("sent", 2, T0 + _MINUTE)
        assert outbox.complete(key, attempt=2, now=T0 + _MINUTE) is False
        assert outbox.claim(now=T0 + _HOUR, lease=_MINUTE, limit=1) == []

    def test_complete_unknown_is_false(self, outbox: OutboxStore) -> None:
        """Settling an id that is not stored writes nothing and answers False."""
        assert outbox.complete("f" * 32, attempt=1, now=T0) is False
        assert outbox.fail("f" * 32, attempt=1, now=T0, retry_at=None, error="X") is False
        assert outbox.get("f" * 32) is None

    def test_fail_then_retry_later(self, outbox: OutboxStore) -> None:
        """A failed attempt with ``retry_at`` stays pending, due then, with the error label."""
        outbox.enqueue(_message(1), now=T0)
        outbox.claim(now=T0, lease=_MINUTE, limit=1)
        key = _message(1).id
        assert outbox.fail(key, attempt=1, now=T0, retry_at=T0 + _HOUR, error="DeliveryError")
        entry = outbox.get(key)
        assert entry is not None
        assert (entry.status, entry.attempts, entry.last_error) == ("pending", 1, "DeliveryError")
        assert entry.next_attempt_at == T0 + _HOUR
        assert outbox.claim(now=T0 + _HOUR - _US, lease=_MINUTE, limit=1) == []
        assert len(outbox.claim(now=T0 + _HOUR, lease=_MINUTE, limit=1)) == 1

    def test_fail_without_retry_is_dead(self, outbox: OutboxStore) -> None:
        """``retry_at=None`` moves the entry to dead; a stale attempt is refused."""
        outbox.enqueue(_message(1), now=T0)
        outbox.claim(now=T0, lease=_MINUTE, limit=1)
        key = _message(1).id
        assert outbox.fail(key, attempt=2, now=T0, retry_at=None, error="X") is False
        assert outbox.fail(key, attempt=1, now=T0, retry_at=None, error="SMTPError") is True
        entry = outbox.get(key)
        assert entry is not None
        assert (entry.status, entry.last_error) == ("dead", "SMTPError")
        assert outbox.claim(now=T0 + _HOUR, lease=_MINUTE, limit=1) == []

    def test_retry_a_dead_entry(self, outbox: OutboxStore) -> None:
        """retry() makes a dead entry pending, due now, attempts reset; others are refused."""
        outbox.enqueue(_message(1), now=T0)
        outbox.enqueue(_message(2), now=T0)
        key = _message(1).id
        assert outbox.retry(key, now=T0) is False  # pending, not dead
        outbox.claim(now=T0, lease=_MINUTE, limit=1)
        outbox.fail(key, attempt=1, now=T0, retry_at=None, error="X")
        assert outbox.retry(key, now=T0 + _HOUR) is True
        entry = outbox.get(key)
        assert entry is not None
        assert (entry.status, entry.attempts, entry.next_attempt_at) == ("pending", 0, T0 + _HOUR)
        assert outbox.retry("e" * 32, now=T0) is False

    def test_list_by_status_oldest_first(self, outbox: OutboxStore) -> None:
        """list() answers entries of one status (or all), oldest first, at most ``limit``."""
        for index in (2, 1, 3):
            outbox.enqueue(_message(index, created_at=T0 + index * _US), now=T0)
        outbox.enqueue(_message(4, deliver=False, created_at=T0), now=T0)
        assert [e.id for e in outbox.list()] == [_message(i).id for i in (4, 1, 2, 3)]
        assert [e.id for e in outbox.list(status="pending", limit=2)] == [
            _message(1).id,
            _message(2).id,
        ]
        assert [e.id for e in outbox.list(status="void")] == [_message(4).id]
        assert outbox.list(status="dead") == []

    def test_purge(self, outbox: OutboxStore) -> None:
        """purge() deletes settled entries changed before ``before``, never pending ones."""
        for index in range(1, 5):
            outbox.enqueue(_message(index, deliver=index != 4), now=T0)
        outbox.claim(now=T0, lease=_MINUTE, limit=2)
        outbox.complete(_message(1).id, attempt=1, now=T0)
        outbox.fail(_message(2).id, attempt=1, now=T0, retry_at=None, error="X")
        assert outbox.purge(before=T0) == 0  # changed at T0: not before it
        assert outbox.purge(before=T0 + _US) == 2  # the sent one and the void one
        assert outbox.get(_message(1).id) is None
        assert outbox.get(_message(4).id) is None
        assert outbox.get(_message(3).id) is not None  # pending: kept
        assert outbox.purge(before=T0 + _HOUR, statuses=("dead",)) == 1
        assert [e.id for e in outbox.list()] == [_message(3).id]

    def test_outbox_bad_arguments(self, outbox: OutboxStore) -> None:
        """Wrong types and values raise before anything is written."""
        with pytest.raises(TypeError):
            outbox.enqueue("message", now=T0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="aware"):
            outbox.enqueue(_message(1), now=_NAIVE)
        with pytest.raises(ValueError, match="lease"):
            outbox.claim(now=T0, lease=timedelta(0), limit=1)
        with pytest.raises(ValueError, match="limit"):
            outbox.claim(now=T0, lease=_MINUTE, limit=0)
        with pytest.raises(ValueError, match="limit"):
            outbox.claim(now=T0, lease=_MINUTE, limit=1001)
        with pytest.raises(TypeError):
            outbox.claim(now=T0, lease=_MINUTE, limit=True)
        for bad in ("", "g" * 32, "A" * 32, "a" * 33, "a\x00" * 16, "\udc80" * 32):
            with pytest.raises(ValueError, match="message_id"):
                outbox.get(bad)
        with pytest.raises(TypeError):
            outbox.get(None)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            outbox.complete("a" * 32, attempt=True, now=T0)
        with pytest.raises(ValueError, match="attempt"):
            outbox.complete("a" * 32, attempt=0, now=T0)
        with pytest.raises(ValueError, match="error"):
            outbox.fail("a" * 32, attempt=1, now=T0, retry_at=None, error="x" * 201)
        with pytest.raises(ValueError, match="status"):
            outbox.list(status="queued")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="statuses"):
            outbox.purge(before=T0, statuses=("pending",))
        with pytest.raises(ValueError, match="statuses"):
            outbox.purge(before=T0, statuses=())
        with pytest.raises(TypeError):
            outbox.purge(before=T0, statuses="sent")  # type: ignore[arg-type]
        assert outbox.list() == []

    def test_message_records_refuse_bad_fields(self) -> None:
        """An OutboxMessage checks its fields; the repr holds neither address nor payload."""
        good = _message(1)
        for change in (
            {"id": "x"},
            {"channel": "fax"},
            {"kind": "Password Reset"},
            {"to": ""},
            {"to": "a\x00b"},
            {"language": "k"},
            {"payload": "[]"},
            {"payload": "{"},
            {"payload": '{"a": "' + "x" * 8200 + '"}'},
            {"account_id": ""},
        ):
            with pytest.raises(ValueError, match="must"):
                replace(good, **change)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="aware"):
            replace(good, created_at=_NAIVE)
        with pytest.raises(TypeError):
            replace(good, deliver=1)  # type: ignore[arg-type]
        assert "алия" not in repr(good)
        assert "eyJ" not in repr(good)

    def test_racing_claims_share_out_entries(self, outbox: OutboxStore) -> None:
        """32 threads claiming one entry each from 20: every entry goes to exactly one."""
        for index in range(20):
            outbox.enqueue(_message(index), now=T0)
        results = _race(_THREADS, lambda _: outbox.claim(now=T0, lease=_MINUTE, limit=1))
        claimed = Counter(entry.id for result in results for entry in result)
        assert len(claimed) == 20
        assert set(claimed.values()) == {1}

    def test_racing_settles_one_wins(self, outbox: OutboxStore) -> None:
        """Racing complete() and fail() of one claim: exactly one writes."""
        outbox.enqueue(_message(1), now=T0)
        outbox.claim(now=T0, lease=_MINUTE, limit=1)
        key = _message(1).id

        def settle(index: int) -> bool:
            if index % 2:
                return outbox.complete(key, attempt=1, now=T0)
            return outbox.fail(key, attempt=1, now=T0, retry_at=None, error="X")

        assert _race(_THREADS, settle).count(True) == 1


class _FromBundle:
    """The stores under test, taken from one bundle (``make_storage()`` or ``storage``).

    Listed first among a test class's bases, its fixtures stand in for each contract's own
    ``make_<thing>()``: :class:`StorageContract` uses it for all five stores, and a bundle
    that keeps only some (the Redis adapters: no accounts) for the contracts it runs.
    """

    def make_storage(self) -> Storage:
        """Return a new, empty storage bundle (override this or the ``storage`` fixture)."""
        raise NotImplementedError("define make_storage() or override the storage fixture")

    @pytest.fixture
    def storage(self) -> Iterator[Storage]:
        """Yield the storage bundle under test, and close it afterwards."""
        with self.make_storage() as storage:
            yield storage

    @pytest.fixture
    def accounts(self, storage: Storage) -> AccountStore:
        """Return the bundle's account store."""
        return storage.accounts

    @pytest.fixture
    def history(self, storage: Storage) -> PasswordHistoryStore:
        """Return the bundle's password history store."""
        return storage.history

    @pytest.fixture
    def ledger(self, storage: Storage) -> TokenLedger:
        """Return the bundle's token ledger."""
        return storage.ledger

    @pytest.fixture
    def codes(self, storage: Storage) -> OneTimeCodeStore:
        """Return the bundle's one-time code store."""
        return storage.codes

    @pytest.fixture
    def rate_limiter(self, storage: Storage) -> RateLimiter:
        """Return the bundle's rate limiter."""
        return storage.rate_limits

    @pytest.fixture
    def outbox(self, storage: Storage) -> OutboxStore:
        """Return the bundle's outbox; skip the test if it has none."""
        if storage.outbox is None:
            pytest.skip("this storage has no outbox (made without outbox=True)")
        return storage.outbox


class StorageContract(
    _FromBundle,
    AccountStoreContract,
    PasswordHistoryStoreContract,
    AccountWithHistoryContract,
    TokenLedgerContract,
    OneTimeCodeStoreContract,
    RateLimiterContract,
    OutboxStoreContract,
):
    """Every contract against the components of one :class:`~kaspi_identity.storage.Storage`.

    Define ``make_storage()`` returning a fresh, empty bundle, or override the ``storage``
    fixture (for example to close it afterwards). The :class:`AccountWithHistoryContract`
    tests skip when the bundle's ``with_history`` is ``None``; override
    :meth:`~AccountWithHistoryContract.break_history_writes` to run its fault tests.
    """
