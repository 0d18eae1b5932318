"""Every storage protocol over the Django ORM, accounts on the host's ``AUTH_USER_MODEL``.

:func:`django_storage` returns the five stores (and ``with_history``) on one database alias.
An account is a row of the user model plus its :class:`~.models.Identity`; the account id
is ``str(user.pk)``. The user row keeps the user name (``USERNAME_FIELD``, unless that is
the e-mail field), the e-mail, the password and ``last_login``; the identity row keeps the
rest. A password hash of this library (``$argon2id$...``) is stored as Django writes
argon2 hashes (``argon2$argon2id$...``), so Django's ``check_password``, the admin and the
``ModelBackend`` accept it; a hash of another Django hasher is handed to the services as it
is (:class:`~kaspi_identity.contrib.django.hashers.DjangoCompatibleHasher` verifies and
upgrades it).

How each promise is kept:

* the compare-and-sets are each one ``UPDATE ... WHERE`` judged by its row count (the
  password with ``password = :expected``, a log-in reservation with ``failed_logins =
  :expected``, a confirmation with ``email_key = :key``); the new stamp of a password change
  is written in the same transaction, after the user row is locked by the ``UPDATE``;
* a contact update locks the user row, then the identity (``SELECT ... FOR UPDATE``, the
  order a password change takes them in), compares the stamp it read, checks the new
  e-mail and phone and writes both rows in the same transaction;
* uniqueness of casefolded user names and e-mails, phones and IINs rests on unique indexes
  of the identity table, checked in one ``SELECT``; a violation raised by a racing insert
  runs the transaction again, whose check then names the identifier;
* one-time codes and rate-limit windows are read ``FOR UPDATE`` (PostgreSQL), changed by
  the pure functions the in-memory reference uses and written back in one transaction; a
  history append takes an advisory lock on the account first; the ledger's ``consume`` is a
  primary-key insert;
* on SQLite every transaction must take the write lock at once: set the database's
  ``OPTIONS`` to ``{"transaction_mode": "IMMEDIATE", "timeout": 30}`` (Django 5.1+);
  ``manage.py kaspi_identity_check`` says so when it is missing.

Database errors raise :class:`~kaspi_identity.StorageError` (the transaction rolled back)
with only the first line of the driver's message: the rest may quote row values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import itertools
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.hashers import make_password
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, connections, models, transaction
from django.db.models import Q

from kaspi_identity._errors import (
    AccountNotFoundError,
    CorruptRecordError,
    DuplicateAccountError,
    StorageError,
)
from kaspi_identity.storage import (
    Account,
    CodeAttempt,
    Contact,
    HistoryEntry,
    NewAccount,
    Storage,
)
from kaspi_identity.storage._checks import (
    HASH_MAX_LENGTH,
    LEDGER_GRACE,
    check_account_id,
    check_expected_hash,
    check_login,
    is_storable_text,
    new_security_stamp,
    require_utc,
    to_microseconds,
)
from kaspi_identity.storage._logic import (
    CodeState,
    WindowState,
    attempt_code,
    check_append,
    check_attempt,
    check_changed_at,
    check_consume,
    check_create,
    check_create_with_history,
    check_entry,
    check_grace,
    check_hit,
    check_mark_email,
    check_must_change,
    check_put,
    check_recent,
    check_replace_password,
    check_reserve,
    check_rotate_stamp,
    check_set_email,
    check_update_contact,
    contact_keys,
    hit_window,
    login_keys,
    put_code,
)
from kaspi_identity.storage._outbox import OutboxMessage, check_messages, check_messages_callable
from kaspi_identity.storage._protocols import LoginKind
from kaspi_identity.storage._records import RateLimitResult
from kaspi_identity.storage._rows import corrupt, decode_history_entry

from .models import ConsumedToken, Identity, OneTimeCode, PasswordHistoryEntry, RateLimitWindow

__all__ = [
    "DjangoAccountStore",
    "DjangoAccountWithHistory",
    "DjangoOneTimeCodeStore",
    "DjangoPasswordHistoryStore",
    "DjangoRateLimiter",
    "DjangoTokenLedger",
    "django_storage",
    "from_django_password",
    "to_django_password",
]

_T = TypeVar("_T")
_US = timedelta(microseconds=1)
_KEY_FIELDS = {"username": "username_key", "email": "email_key", "phone": "phone", "iin": "iin"}
# How often a transaction that a racing insert broke is run again.
_TRIES = 8
_SWEEP_EVERY = 256
_SWEEP_BATCH = 1024
#: Django's prefix of an argon2 hash: ``argon2`` + the PHC string this library makes.
_DJANGO_ARGON2 = "argon2"


def to_django_password(password_hash: str | None) -> str:
    """The ``password`` column value for ``password_hash`` (``None``: an unusable password).

    This library's ``$argon2id$...`` becomes Django's ``argon2$argon2id$...``; any other
    string (a hash of another Django hasher) is stored as it is.
    """
    if password_hash is None:
        return make_password(None)
    if password_hash.startswith("$argon2"):
        return _DJANGO_ARGON2 + password_hash
    return password_hash


def from_django_password(stored: str | None) -> str | None:
    """The account's ``password_hash`` for a ``password`` column value.

    ``None`` for an empty or unusable password (Django's ``!`` prefix), the PHC string for
    Django's ``argon2$argon2...`` form, and any other hash as it is.
    """
    if not stored or stored.startswith("!"):
        return None
    if stored.startswith(_DJANGO_ARGON2 + "$argon2"):
        return stored[len(_DJANGO_ARGON2) :]
    return stored


def _aware(value: object, name: str) -> datetime | None:
    """A time read from a DateTimeField, in UTC (a naive one, with ``USE_TZ=False``, is UTC)."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise corrupt("account", f"{name} is not a time")
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _to_db_time(moment: datetime) -> datetime:
    """A UTC time as a DateTimeField takes it (naive UTC when ``USE_TZ`` is off)."""
    from django.conf import settings

    return moment if settings.USE_TZ else moment.replace(tzinfo=None)


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 200 else f"{line[:200]}..."


def _lock_key(*parts: str) -> int:
    """A signed 64-bit advisory lock key for ``parts``."""
    digest = hashlib.blake2b(
        "\x00".join(("kaspi_identity", *parts)).encode("utf-8"), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


class _Clash(Exception):
    """A unique index refused a row; raised inside ``atomic`` so that it rolls back."""


class _Store:
    """What every Django store shares: the database alias and how it runs a step."""

    def __init__(self, using: str = "default") -> None:
        if not isinstance(using, str) or using not in connections:
            raise ValueError(f"using must name a database in DATABASES, not {using!r}")
        self._using = using
        self._writes = itertools.count(1)

    @property
    def using(self) -> str:
        """The database alias the store reads and writes."""
        return self._using

    @property
    def _postgresql(self) -> bool:
        return connections[self._using].vendor == "postgresql"

    def _error(self, exc: DatabaseError) -> StorageError:
        vendor = connections[self._using].vendor
        return StorageError(
            f"Django {vendor} storage failed ({type(exc).__name__}): {_first_line(str(exc))}"
        )

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        try:
            yield
        except DatabaseError as exc:
            raise self._error(exc) from exc

    def _atomic(self, operation: Callable[[], _T]) -> _T:
        """Run ``operation`` in one transaction; again while a racing insert breaks it."""
        for attempt in range(_TRIES):
            try:
                with self._mapped(), transaction.atomic(using=self._using):
                    return operation()
            except _Clash as clash:
                if attempt == _TRIES - 1:
                    cause = clash.__cause__
                    raise StorageError(
                        "Django storage failed: a unique index kept refusing the row"
                    ) from (cause)
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, operation: Callable[[], _T]) -> _T:
        with self._mapped():
            return operation()

    def _sweep_due(self) -> bool:
        return next(self._writes) % _SWEEP_EVERY == 0

    def _advisory_lock(self, *parts: str) -> None:
        if self._postgresql:
            with connections[self._using].cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_lock_key(*parts)])

    def covers_database(self, other: object) -> bool:
        """Whether ``other`` is a Django store on the same database alias."""
        return isinstance(other, _Store) and other._using == self._using


# -- accounts ------------------------------------------------------------------------------


class DjangoAccountStore(_Store):
    """An :class:`~kaspi_identity.storage.AccountStore` over ``AUTH_USER_MODEL`` and Identity.

    Args:
        using: the database alias (default ``"default"``).

    Raises:
        ValueError: ``using`` is not in ``DATABASES``.

    """

    def __init__(self, using: str = "default") -> None:
        super().__init__(using)
        self._user: type[AbstractBaseUser] = get_user_model()
        model: Any = self._user  # the stubs know AbstractBaseUser, not the host's model
        self._email_field: str = model.get_email_field_name()
        username_field = str(model.USERNAME_FIELD)
        self._username_field = None if username_field == self._email_field else username_field
        self._pk_field = self._user._meta.pk
        room = getattr(self._user._meta.get_field("password"), "max_length", None)
        self._password_room: int = room or HASH_MAX_LENGTH
        email_column = self._user._meta.get_field(self._email_field)
        # What the user row holds for an account without an e-mail: NULL where the column
        # allows it (a unique e-mail column must), else Django's usual "".
        self._no_email: str | None = None if getattr(email_column, "null", False) else ""
        self._email_required = self._no_email == "" and bool(getattr(email_column, "unique", False))

    @property
    def user_model(self) -> type[AbstractBaseUser]:
        """The user model accounts are stored in."""
        return self._user

    # -- helpers --

    def _users(self) -> models.QuerySet[AbstractBaseUser]:
        return self._user._default_manager.db_manager(self._using).all()

    def _identities(self) -> models.QuerySet[Identity]:
        return Identity.objects.using(self._using)

    def _pk(self, account_id: str) -> object | None:
        """The primary key ``account_id`` names, or ``None`` when no user can have it."""
        key = check_account_id(account_id)
        if key is None or self._pk_field is None:
            return None
        try:
            pk: object = self._pk_field.to_python(key)
        except (ValidationError, ValueError, TypeError, OverflowError):
            return None
        if pk is None or str(pk) != key:
            return None  # "007" is not user 7: ids are compared as the strings they are
        if isinstance(pk, int) and not -(2**63) <= pk < 2**63:
            return None
        return pk

    def _decode(self, identity: Identity) -> Account:
        user = identity.user
        names = identity.names
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise corrupt("account", "names is not a list of strings")
        try:
            created = _aware(identity.created_at, "created_at")
            if created is None:
                raise corrupt("account", "created_at is missing")
            return Account(
                id=str(user.pk),
                username=identity.username,
                email=identity.email,
                phone=identity.phone,
                password_hash=from_django_password(user.password),
                email_confirmed=identity.email_confirmed,
                failed_logins=identity.failed_logins,
                last_failed_login_at=_aware(identity.last_failed_login_at, "last_failed_login_at"),
                last_login_at=_aware(user.last_login, "last_login"),
                created_at=created,
                language=identity.language,
                security_stamp=identity.security_stamp,
                iin=identity.iin,
                names=tuple(names),
                password_changed_at=_aware(identity.password_changed_at, "password_changed_at"),
                must_change_password=identity.must_change_password,
                grace_logins_used=identity.grace_logins_used,
                phone_verified=identity.phone_verified,
                pending_email=identity.pending_email,
                pending_phone=identity.pending_phone,
                previous_email=identity.previous_email,
                email_changed_at=_aware(identity.email_changed_at, "email_changed_at"),
                time_zone=identity.time_zone,
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, CorruptRecordError):
                raise
            raise corrupt("account", str(exc)) from exc

    def _fetch(self, **where: object) -> Account | None:
        identity = self._identities().select_related("user").filter(**where).first()
        return None if identity is None else self._decode(identity)

    def _first_taken(self, keys: dict[str, str | None], *, other_than: object = None) -> str | None:
        """The first of ``keys``, in the protocol's order, another account already has.

        ``other_than`` is the primary key of the account whose own keys do not count.
        """
        present = {field: value for field, value in keys.items() if value is not None}
        if not present:
            return None
        match = Q()
        for field, value in present.items():
            match |= Q(**{_KEY_FIELDS[field]: value})
        holders = self._identities().filter(match)
        if other_than is not None:
            holders = holders.exclude(pk=other_than)
        rows = list(holders.values_list(*_KEY_FIELDS.values()))
        for field, value in present.items():
            column = list(_KEY_FIELDS).index(field)
            if any(row[column] == value for row in rows):
                return field
        return None

    def _require_room_for(self, email: str | None) -> None:
        """Refuse an account without an e-mail where the user model's column needs one."""
        if email is None and self._email_required:
            raise ValueError(
                f"the user model's {self._email_field!r} column is unique and NOT NULL:"
                " every account needs an e-mail (make the column null=True to allow none)"
            )

    def _user_row(self, new: NewAccount) -> AbstractBaseUser:
        self._require_room_for(new.email)
        values: dict[str, object] = {
            self._email_field: new.email if new.email is not None else self._no_email
        }
        if self._username_field is not None:
            # Django's user name column is NOT NULL and unique: an account without a user
            # name gets a random placeholder no log-in form accepts.
            values[self._username_field] = new.username or f"~{secrets.token_hex(12)}"
        user = self._user(**values)
        stored = to_django_password(new.password_hash)
        if len(stored) > self._password_room:
            raise ValueError(
                f"password_hash is too long for the user model's password column"
                f" ({self._password_room} characters)"
            )
        user.password = stored
        user._kaspi_identity_managed = True  # type: ignore[attr-defined]  # read by signals
        return user

    def _insert(self, new: NewAccount, at: datetime) -> Account:
        """Check the identifiers, insert the user and its identity (inside ``atomic``)."""
        keys = login_keys(new)
        taken = self._first_taken(keys)
        if taken is not None:
            raise DuplicateAccountError(taken)
        user = self._user_row(new)
        try:
            with transaction.atomic(using=self._using):
                user.save(using=self._using)
        except IntegrityError as exc:
            field = self._user_clash(new)
            if field is not None:
                raise DuplicateAccountError(field) from None
            raise _Clash() from exc
        identity = Identity(
            user=user,
            username=new.username,
            username_key=keys["username"],
            email=new.email,
            email_key=keys["email"],
            phone=new.phone,
            iin=new.iin,
            email_confirmed=new.email_confirmed,
            failed_logins=0,
            last_failed_login_at=None,
            created_at=_to_db_time(at),
            language=new.language,
            security_stamp=new_security_stamp(),
            names=list(new.names),
            password_changed_at=None if new.password_hash is None else _to_db_time(at),
            must_change_password=new.must_change_password,
            grace_logins_used=0,
            phone_verified=new.phone_verified,
            time_zone=new.time_zone,
        )
        try:
            with transaction.atomic(using=self._using):
                identity.save(using=self._using, force_insert=True)
        except IntegrityError as exc:
            raise _Clash() from exc
        return Account(
            id=str(user.pk),
            username=new.username,
            email=new.email,
            phone=new.phone,
            password_hash=new.password_hash,
            email_confirmed=new.email_confirmed,
            failed_logins=0,
            last_failed_login_at=None,
            last_login_at=None,
            created_at=at,
            language=new.language,
            security_stamp=identity.security_stamp,
            iin=new.iin,
            names=new.names,
            password_changed_at=None if new.password_hash is None else at,
            must_change_password=new.must_change_password,
            phone_verified=new.phone_verified,
            time_zone=new.time_zone,
        )

    def _user_clash(self, new: NewAccount) -> str | None:
        """Which identifier a user row without an identity already holds, if any."""
        users = self._users()
        if (
            self._username_field is not None
            and new.username is not None
            and users.filter(**{self._username_field: new.username}).exists()
        ):
            return "username"
        if new.email is not None and users.filter(**{self._email_field: new.email}).exists():
            return "email"
        return None

    def _set_hash(
        self,
        pk: object,
        expected: str | None,
        new: str,
        *,
        rotate_stamp: bool,
        changed_at: datetime | None,
    ) -> bool:
        """The password compare-and-set (inside ``atomic``); ``True`` if it wrote.

        One ``UPDATE`` of the user row alone (no join, so PostgreSQL re-checks the
        condition on the row it waited for), then the stamp; a user without an identity is
        no account, and its write is rolled back.
        """
        stored = to_django_password(new)
        if len(stored) > self._password_room:
            raise ValueError(
                f"new is too long for the user model's password column"
                f" ({self._password_room} characters)"
            )
        if expected is None:
            # Django's mark of an unusable password, not a secret.
            matches = Q(password="") | Q(password__startswith="!")  # noqa: S106
        else:
            matches = Q(password=to_django_password(expected))
        with transaction.atomic(using=self._using):
            if self._users().filter(Q(pk=pk) & matches).update(password=stored) != 1:
                return False
            identity = self._identities().filter(pk=pk)
            changes: dict[str, object] = {}
            if rotate_stamp:
                changes["security_stamp"] = new_security_stamp()
            if changed_at is not None:  # a new password: its age starts now
                changes.update(
                    password_changed_at=_to_db_time(changed_at),
                    must_change_password=False,
                    grace_logins_used=0,
                )
            found = identity.update(**changes) == 1 if changes else identity.exists()
            if not found:
                transaction.set_rollback(True, using=self._using)
            return found

    def _contact_target(
        self,
        account_id: str,
        expected_stamp: str,
        contact: Contact,
        rotate_stamp: bool,
        clear_password: bool,
    ) -> object | None:
        """Check ``update_contact``'s arguments; the primary key, or ``None`` if none can win."""
        key = check_update_contact(
            account_id,
            expected_stamp,
            contact,
            ("rotate_stamp", rotate_stamp),
            ("clear_password", clear_password),
        )
        self._require_room_for(contact.email)
        if key is None or not is_storable_text(expected_stamp):
            return None  # no stored stamp has a NUL or a lone surrogate
        return self._pk(key)

    def _swap_contact(
        self, pk: object, expected_stamp: str, contact: Contact, *, rotate_stamp: bool, clear: bool
    ) -> Account | None:
        """The stamp compare-and-set of ``update_contact`` (inside ``atomic``).

        The user row is locked first and the identity second, the order of a password
        change, so the two never wait on each other in a cycle; on SQLite the write lock
        taken at ``BEGIN`` already orders every writer.
        """
        if not self._users().select_for_update().filter(pk=pk).exists():
            return None
        identity = self._identities().select_for_update().select_related("user").filter(pk=pk)
        row = identity.first()
        if row is None or not hmac.compare_digest(
            row.security_stamp.encode("utf-8"), expected_stamp.encode("utf-8")
        ):
            return None
        before = self._decode(row)
        keys = contact_keys(contact)
        taken = self._first_taken(keys, other_than=pk)
        if taken is not None:
            raise DuplicateAccountError(taken)
        stamp = new_security_stamp() if rotate_stamp else before.security_stamp
        user_changes: dict[str, object] = {
            self._email_field: contact.email if contact.email is not None else self._no_email
        }
        changes: dict[str, object] = {
            "email": contact.email,
            "email_key": keys["email"],
            "email_confirmed": contact.email_confirmed,
            "phone": contact.phone,
            "phone_verified": contact.phone_verified,
            "pending_email": contact.pending_email,
            "pending_phone": contact.pending_phone,
            "previous_email": contact.previous_email,
            "email_changed_at": None
            if contact.email_changed_at is None
            else _to_db_time(contact.email_changed_at),
            "time_zone": contact.time_zone,
            "security_stamp": stamp,
        }
        after = dataclasses.replace(
            before,
            **{field.name: getattr(contact, field.name) for field in dataclasses.fields(contact)},
            security_stamp=stamp,
        )
        if clear:
            user_changes["password"] = to_django_password(None)
            changes.update(
                password_changed_at=None, must_change_password=False, grace_logins_used=0
            )
            after = dataclasses.replace(
                after,
                password_hash=None,
                password_changed_at=None,
                must_change_password=False,
                grace_logins_used=0,
            )
        try:
            with transaction.atomic(using=self._using):
                self._users().filter(pk=pk).update(**user_changes)
        except IntegrityError as exc:
            # A unique e-mail column of the host's: a user row without an identity (or one
            # a racing transaction just committed) holds the address.
            holders = self._users().filter(**{self._email_field: contact.email}).exclude(pk=pk)
            if contact.email is not None and holders.exists():
                raise DuplicateAccountError("email") from None
            raise _Clash() from exc
        try:
            with transaction.atomic(using=self._using):
                self._identities().filter(pk=pk).update(**changes)
        except IntegrityError as exc:
            raise _Clash() from exc  # a racing transaction took the e-mail or phone
        return after

    # -- the protocol --

    def create(self, new: NewAccount, *, now: datetime) -> Account:
        """Store ``new`` as a user and its identity; see the protocol."""
        at = check_create(new, now)
        return self._atomic(lambda: self._insert(new, at))

    def get(self, account_id: str) -> Account | None:
        """Return the account with this id, or ``None``."""
        pk = self._pk(account_id)
        if pk is None:
            return None
        return self._read(lambda: self._fetch(pk=pk))

    def find_by_login(self, kind: LoginKind, value: str) -> Account | None:
        """Return the account with this user name, e-mail, phone or IIN, or ``None``."""
        key = check_login(kind, value)
        if key is None:
            return None
        return self._read(lambda: self._fetch(**{_KEY_FIELDS[kind]: key}))

    def set_password_hash(
        self,
        account_id: str,
        *,
        expected: str | None,
        new: str,
        rotate_stamp: bool = True,
        now: datetime | None = None,
    ) -> bool:
        """Compare-and-set the password (a fresh stamp, with ``now`` its age); see the protocol."""
        can_match = check_expected_hash(expected, new)
        check_rotate_stamp(rotate_stamp)
        changed_at = check_changed_at(now)
        pk = self._pk(account_id)
        if pk is None or not can_match:
            return False
        return self._atomic(
            lambda: self._set_hash(
                pk, expected, new, rotate_stamp=rotate_stamp, changed_at=changed_at
            )
        )

    def set_must_change_password(self, account_id: str, required: bool) -> None:
        """Set or clear the must-change flag in one ``UPDATE``; see the protocol."""
        check_must_change(account_id, required)
        pk = self._pk(account_id)
        rows = self._identities().filter(pk=pk)
        if pk is None or self._read(lambda: rows.update(must_change_password=required)) != 1:
            raise AccountNotFoundError("no account has this id")

    def use_grace_login(self, account_id: str, *, expected: int) -> bool:
        """Count a grace log-in if the count is still ``expected``: one ``UPDATE``."""
        check_grace(account_id, expected)
        pk = self._pk(account_id)
        if pk is None or expected >= 2**63 - 1:
            return False
        rows = self._identities().filter(pk=pk, grace_logins_used=expected)
        return self._read(lambda: rows.update(grace_logins_used=expected + 1) == 1)

    def set_email(self, account_id: str, email: str, *, confirmed: bool = False) -> None:
        """Set the e-mail, its confirmation flag and a fresh stamp; see the protocol."""
        check_set_email(email, confirmed)
        pk = self._pk(account_id)
        if pk is None:
            raise AccountNotFoundError("no account has this id")
        key = email.casefold()

        def update() -> None:
            # The user row first, then the identity: the order of a password change and of
            # update_contact, so that none of them waits on another in a cycle (a deadlock).
            if not self._users().select_for_update().filter(pk=pk).exists():
                raise AccountNotFoundError("no account has this id")
            if not self._identities().select_for_update().filter(pk=pk).exists():
                raise AccountNotFoundError("no account has this id")
            if self._identities().filter(email_key=key).exclude(pk=pk).exists():
                raise DuplicateAccountError("email")
            try:
                with transaction.atomic(using=self._using):
                    self._users().filter(pk=pk).update(**{self._email_field: email})
                    self._identities().filter(pk=pk).update(
                        email=email,
                        email_key=key,
                        email_confirmed=confirmed,
                        security_stamp=new_security_stamp(),
                    )
            except IntegrityError as exc:
                raise _Clash() from exc

        self._atomic(update)

    def update_contact(
        self,
        account_id: str,
        *,
        expected_stamp: str,
        contact: Contact,
        rotate_stamp: bool = True,
        clear_password: bool = False,
    ) -> Account | None:
        """Write ``contact`` if the stamp is still ``expected_stamp``: one locked transaction.

        See the protocol. The user row's e-mail column follows ``contact.email`` (``NULL``
        or ``""`` without one, as at :meth:`create`), and ``clear_password`` gives it
        Django's unusable password.

        Raises:
            TypeError: as the protocol says.
            DuplicateAccountError: as the protocol says; also when a user row without an
                identity holds the e-mail in a unique e-mail column of the host's.
            ValueError: ``contact.email`` is ``None`` and the user model's e-mail column is
                unique and NOT NULL.

        """
        pk = self._contact_target(account_id, expected_stamp, contact, rotate_stamp, clear_password)
        if pk is None:
            return None
        return self._atomic(
            lambda: self._swap_contact(
                pk, expected_stamp, contact, rotate_stamp=rotate_stamp, clear=clear_password
            )
        )

    def mark_email_confirmed(self, account_id: str, *, email: str, now: datetime) -> bool:
        """Confirm the e-mail in one ``UPDATE ... WHERE email_key = :key``; see the protocol."""
        key, _ = check_mark_email(email, now)
        pk = self._pk(account_id)
        if pk is None or key is None:
            return False
        rows = self._identities().filter(pk=pk, email_key=key)
        return self._read(lambda: rows.update(email_confirmed=True) == 1)

    def reserve_login_attempt(
        self, account_id: str, *, expected_failures: int, now: datetime
    ) -> bool:
        """Count an attempt if the count is still ``expected_failures``: one ``UPDATE``."""
        moment = check_reserve(account_id, expected_failures, now)
        pk = self._pk(account_id)
        if pk is None or expected_failures >= 2**63 - 1:
            return False
        rows = self._identities().filter(pk=pk, failed_logins=expected_failures)
        changes = {
            "failed_logins": expected_failures + 1,
            "last_failed_login_at": _to_db_time(moment),
        }
        return self._read(lambda: rows.update(**changes) == 1)

    def record_login_success(self, account_id: str, *, now: datetime) -> None:
        """Reset the failure count and set ``last_login``."""
        at = _to_db_time(require_utc(now))
        pk = self._pk(account_id)
        if pk is None:
            raise AccountNotFoundError("no account has this id")

        def record() -> None:
            if self._users().filter(pk=pk).update(last_login=at) != 1:
                raise AccountNotFoundError("no account has this id")
            if self._identities().filter(pk=pk).update(failed_logins=0) != 1:
                raise AccountNotFoundError("no account has this id")

        self._atomic(record)

    def clear_login_failures(self, account_id: str) -> None:
        """Reset the failure count without recording a login."""
        pk = self._pk(account_id)
        if pk is None:
            raise AccountNotFoundError("no account has this id")
        if self._read(lambda: self._identities().filter(pk=pk).update(failed_logins=0)) != 1:
            raise AccountNotFoundError("no account has this id")


# -- password history ----------------------------------------------------------------------


class DjangoPasswordHistoryStore(_Store):
    """A :class:`~kaspi_identity.storage.PasswordHistoryStore` in ``PasswordHistoryEntry``.

    An append inserts and trims in one transaction holding an advisory lock on the account
    (PostgreSQL; SQLite's write lock on SQLite).
    """

    def append(self, account_id: str, entry: HistoryEntry, *, keep: int) -> None:
        """Append ``entry`` and trim to the newest ``keep`` in one transaction."""
        check_append(account_id, entry, keep)
        self._atomic(lambda: self._append(account_id, entry, keep))

    def _append(self, account_id: str, entry: HistoryEntry, keep: int) -> None:
        """Lock, insert, trim; runs inside the caller's transaction (arguments checked)."""
        self._advisory_lock("history", account_id)
        rows = PasswordHistoryEntry.objects.using(self._using)
        rows.create(
            account_id=account_id,
            password_hash=entry.password_hash,
            fingerprint=entry.fingerprint,
            created_at=to_microseconds(entry.created_at),
        )
        newest = list(
            rows.filter(account_id=account_id).order_by("-seq").values_list("seq", flat=True)[:keep]
        )
        rows.filter(account_id=account_id, seq__lt=newest[-1]).delete()

    def recent(self, account_id: str, limit: int) -> list[HistoryEntry]:
        """Return at most ``limit`` entries, newest first."""
        check_recent(account_id, limit)
        query = (
            PasswordHistoryEntry.objects.using(self._using)
            .filter(account_id=account_id)
            .order_by("-seq")
            .values_list("password_hash", "fingerprint", "created_at")[:limit]
        )
        rows = self._read(lambda: list(query))
        return [
            decode_history_entry((stored, bytes(fp) if isinstance(fp, memoryview) else fp, created))
            for stored, fp, created in rows
        ]


# -- token ledger --------------------------------------------------------------------------


class DjangoTokenLedger(_Store):
    """A :class:`~kaspi_identity.storage.TokenLedger`: one primary-key insert per use.

    Ids are kept 5 minutes past their expiry, then swept.
    """

    def consume(self, token_id: str, expires_at: datetime, *, now: datetime) -> bool:
        """Record ``token_id`` as used; ``True`` only for its first use before expiry."""
        expires, at = check_consume(token_id, expires_at, now)
        if expires <= at:
            return False
        rows = ConsumedToken.objects.using(self._using)
        if self._sweep_due():
            grace = LEDGER_GRACE // _US
            doomed = rows.filter(expires_at__lt=at - grace).values_list("token_id", flat=True)
            self._read(lambda: rows.filter(token_id__in=list(doomed[:_SWEEP_BATCH])).delete())

        def insert() -> bool:
            try:
                with transaction.atomic(using=self._using):
                    rows.create(token_id=token_id, expires_at=expires + LEDGER_GRACE // _US)
            except IntegrityError:
                return False
            return True

        return self._read(insert)


# -- one-time codes and rate limits --------------------------------------------------------


class DjangoOneTimeCodeStore(_Store):
    """A :class:`~kaspi_identity.storage.OneTimeCodeStore`: each step on a locked row."""

    def _load(self, key: str) -> tuple[OneTimeCode | None, CodeState | None]:
        row = OneTimeCode.objects.using(self._using).select_for_update().filter(pk=key).first()
        if row is None:
            return None, None
        code_hash = row.code_hash
        state = CodeState(
            bytes(code_hash) if isinstance(code_hash, memoryview) else code_hash,
            row.expires_at,
            row.failure_window,
            row.failures,
            row.window_ends_at,
        )
        return row, state

    def _store(self, key: str, row: OneTimeCode | None, state: CodeState | None) -> None:
        values = {
            "code_hash": None if state is None else state.code_hash,
            "expires_at": None if state is None else state.expires_at,
            "failure_window": 0 if state is None else state.failure_window,
            "failures": 0 if state is None else state.failures,
            "window_ends_at": None if state is None else state.window_ends_at,
        }
        rows = OneTimeCode.objects.using(self._using)
        if state is None:
            rows.filter(pk=key).delete()
        elif row is not None:
            rows.filter(pk=key).update(**values)
        else:
            try:
                with transaction.atomic(using=self._using):
                    rows.create(code_key=key, **values)
            except IntegrityError as exc:
                raise _Clash() from exc  # another caller inserted the key's first row

    def put(
        self,
        key: str,
        code_hash: bytes,
        *,
        expires_at: datetime,
        now: datetime,
        failure_window: timedelta,
    ) -> None:
        """Store ``code_hash`` for ``key``, keeping its attempt counter; see the protocol."""
        expires, at, window = check_put(
            key, code_hash, expires_at=expires_at, now=now, failure_window=failure_window
        )

        def put() -> None:
            row, state = self._load(key)
            fresh = put_code(state, code_hash, expires_at=expires, now=at, failure_window=window)
            self._store(key, row, fresh)

        self._atomic(put)

    def attempt(
        self, key: str, candidates: Any, *, now: datetime, max_attempts: int
    ) -> CodeAttempt:
        """Count one attempt and compare; see the protocol."""
        at, found = check_attempt(key, candidates, now=now, max_attempts=max_attempts)

        def attempt() -> CodeAttempt:
            row, state = self._load(key)
            after, outcome = attempt_code(state, found, now=at, max_attempts=max_attempts)
            if outcome is not CodeAttempt.MISSING:
                self._store(key, row, after)
            return outcome

        return self._atomic(attempt)


class DjangoRateLimiter(_Store):
    """A :class:`~kaspi_identity.storage.RateLimiter`: each hit on a locked row."""

    def hit(self, key: str, *, limit: int, window: timedelta, now: datetime) -> RateLimitResult:
        """Count a hit on ``key`` and say whether it is allowed."""
        length, at = check_hit(key, limit=limit, window=window, now=now)
        rows = RateLimitWindow.objects.using(self._using)
        if self._sweep_due():
            dead = rows.filter(window_start__lt=at - models.F("window_length"))
            doomed = list(dead.values_list("limit_key", flat=True)[:_SWEEP_BATCH])
            self._read(lambda: rows.filter(limit_key__in=doomed).delete())

        def hit() -> RateLimitResult:
            row = rows.select_for_update().filter(pk=key).first()
            state = (
                None if row is None else WindowState(row.window_start, row.window_length, row.hits)
            )
            after, result = hit_window(state, now=at, limit=limit, window=length)
            values = {
                "window_start": after.start,
                "window_length": after.length,
                "hits": after.hits,
            }
            if row is not None:
                rows.filter(pk=key).update(**values)
            else:
                try:
                    with transaction.atomic(using=self._using):
                        rows.create(limit_key=key, **values)
                except IntegrityError as exc:
                    raise _Clash() from exc
            return result

        return self._atomic(hit)


# -- accounts and history together ---------------------------------------------------------


class DjangoAccountWithHistory(_Store):
    """An :class:`~kaspi_identity.storage.AccountWithHistory` on one database alias.

    Each call is one transaction running the very steps of :class:`DjangoAccountStore`
    and :class:`DjangoPasswordHistoryStore`; a failure of any rolls the whole call back.

    Args:
        accounts: the account store it writes through.
        history: the history store it appends to (on the same alias).

    Raises:
        ValueError: the two stores are on different database aliases.

    """

    def __init__(self, accounts: DjangoAccountStore, history: DjangoPasswordHistoryStore) -> None:
        if not accounts.covers_database(history):
            raise ValueError("accounts and history must be on the same database alias")
        super().__init__(accounts.using)
        self._accounts = accounts
        self._history = history

    def covers(self, accounts: object, history: object) -> bool:
        """Whether ``accounts`` and ``history`` are the stores this writes through."""
        return accounts is self._accounts and history is self._history

    def create_with_history(
        self,
        new: NewAccount,
        *,
        now: datetime,
        entry: Callable[[Account], HistoryEntry] | None,
        keep: int,
        messages: Callable[[Account], Sequence[OutboxMessage]] | None = None,
    ) -> Account:
        """Create the account and append ``entry(account)`` in one transaction.

        This unit of work has no outbox (``outbox_store`` is ``None``): ``messages``
        raises ``ValueError``, and the services then queue letters after the change.
        """
        check_messages_callable(messages, None)
        at = check_create_with_history(new, now, entry, keep)

        def create() -> Account:
            account = self._accounts._insert(new, at)
            if entry is not None:
                self._history._append(account.id, check_entry(entry(account)), keep)
            return account

        return self._atomic(create)

    def replace_password(
        self,
        account_id: str,
        *,
        expected: str | None,
        new: str,
        entry: HistoryEntry | None,
        keep: int,
        now: datetime | None = None,
        messages: Sequence[OutboxMessage] = (),
    ) -> bool:
        """Compare-and-set the hash (a new stamp) and append ``entry`` in one transaction.

        No outbox here either: any ``messages`` raise ``ValueError``.
        """
        check_messages(messages, None)
        key = check_replace_password(account_id, expected, new, entry, keep)
        changed_at = check_changed_at(now)
        pk = None if key is None else self._accounts._pk(key)
        if pk is None:
            return False

        def replace() -> bool:
            if not self._accounts._set_hash(
                pk, expected, new, rotate_stamp=True, changed_at=changed_at
            ):
                return False
            if entry is not None:
                self._history._append(account_id, entry, keep)
            return True

        return self._atomic(replace)

    def update_contact(
        self,
        account_id: str,
        *,
        expected_stamp: str,
        contact: Contact,
        rotate_stamp: bool = True,
        clear_password: bool = False,
        messages: Sequence[OutboxMessage] = (),
    ) -> Account | None:
        """:meth:`DjangoAccountStore.update_contact`, in this unit of work's transaction.

        No outbox here either: any ``messages`` raise ``ValueError`` (after the other
        arguments are checked, before anything is read); the services then queue the
        notices after the change.
        """
        pk = self._accounts._contact_target(
            account_id, expected_stamp, contact, rotate_stamp, clear_password
        )
        check_messages(messages, None)
        if pk is None:
            return None
        return self._atomic(
            lambda: self._accounts._swap_contact(
                pk, expected_stamp, contact, rotate_stamp=rotate_stamp, clear=clear_password
            )
        )


def django_storage(using: str = "default") -> Storage:
    """Return the five stores, and ``with_history``, on the database alias ``using``.

    The tables are the app's (``INSTALLED_APPS`` needs ``"kaspi_identity.contrib.django"``
    and ``manage.py migrate``); accounts live on ``AUTH_USER_MODEL``.

    Raises:
        ValueError: ``using`` is not in ``DATABASES``.

    """
    accounts = DjangoAccountStore(using)
    history = DjangoPasswordHistoryStore(using)
    return Storage(
        accounts=accounts,
        history=history,
        ledger=DjangoTokenLedger(using),
        codes=DjangoOneTimeCodeStore(using),
        rate_limits=DjangoRateLimiter(using),
        with_history=DjangoAccountWithHistory(accounts, history),
    )
