"""In-memory storage: thread-safe, one process, gone when the process ends.

Use it in tests and single-process demos. It is the reference the other adapters are
compared with. Every store guards its data with one lock, so each call is atomic for the
threads of the process -- and only for them.
"""

from __future__ import annotations

import contextlib
import heapq
import secrets
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from .._errors import AccountNotFoundError, DuplicateAccountError
from ._async import AsyncStorage, coroutining
from ._checks import (
    LEDGER_GRACE,
    TOKEN_ID_MAX_LENGTH,
    check_account_id,
    check_expected_hash,
    check_login,
    new_security_stamp,
    require_key,
    require_utc,
    utc_microseconds,
)
from ._logic import (
    CodeState,
    WindowState,
    attempt_code,
    check_append,
    check_attempt,
    check_changed_at,
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
    code_is_dead,
    contact_keys,
    fresh_account,
    hit_window,
    login_keys,
    put_code,
    window_is_dead,
)
from ._outbox import (
    OutboxEntry,
    OutboxMessage,
    OutboxState,
    OutboxStatus,
    check_claim,
    check_enqueue,
    check_list,
    check_message_id,
    check_messages,
    check_messages_callable,
    check_purge,
    check_settle,
    claim_state,
    complete_state,
    entry_of,
    fail_state,
    initial_state,
    retry_at_microseconds,
    retry_state,
)
from ._protocols import LoginKind, Storage
from ._records import (
    Account,
    CodeAttempt,
    Contact,
    HistoryEntry,
    NewAccount,
    RateLimitResult,
)

__all__ = [
    "MemoryAccountStore",
    "MemoryAccountWithHistory",
    "MemoryOneTimeCodeStore",
    "MemoryOutboxStore",
    "MemoryPasswordHistoryStore",
    "MemoryRateLimiter",
    "MemoryTokenLedger",
    "async_memory_storage",
    "memory_storage",
]

# Expired entries are swept after this many writes, so a sweep's cost is spread thin.
_SWEEP_EVERY = 256


class MemoryAccountStore:
    """An :class:`~kaspi_identity.storage.AccountStore` held in a dict, guarded by a lock."""

    def __init__(self) -> None:
        """Create an empty store."""
        self._lock = threading.Lock()
        self._accounts: dict[str, Account] = {}
        self._by_username: dict[str, str] = {}
        self._by_email: dict[str, str] = {}
        self._by_phone: dict[str, str] = {}
        self._by_iin: dict[str, str] = {}

    def create(self, new: NewAccount, *, now: datetime) -> Account:
        """Store ``new`` under a fresh random id; see the protocol."""
        now = check_create(new, now)
        with self._lock:
            return self._insert(new, now)

    def _indexes(self) -> dict[str, dict[str, str]]:
        return {
            "username": self._by_username,
            "email": self._by_email,
            "phone": self._by_phone,
            "iin": self._by_iin,
        }

    def _insert(self, new: NewAccount, now: datetime) -> Account:
        """Check the unique keys and store ``new``; the caller holds the lock."""
        keys = login_keys(new)
        indexes = self._indexes()
        for kind, key in keys.items():  # in the order the protocol checks them
            if key is not None and key in indexes[kind]:
                raise DuplicateAccountError(kind)
        account_id = secrets.token_hex(16)
        account = fresh_account(new, account_id, now)
        self._accounts[account_id] = account
        for kind, key in keys.items():
            if key is not None:
                indexes[kind][key] = account_id
        return account

    def _remove(self, account: Account) -> None:
        """Undo :meth:`_insert` of ``account``; the caller holds the lock."""
        del self._accounts[account.id]
        keys = login_keys(account)
        indexes = self._indexes()
        for kind, key in keys.items():
            if key is not None:
                del indexes[kind][key]

    def _swap_hash(
        self,
        key: str,
        expected: str | None,
        new: str,
        *,
        rotate_stamp: bool,
        changed_at: datetime | None,
    ) -> Account | None:
        """The compare-and-set; return the account as it was if it won. The caller locks."""
        account = self._accounts.get(key)
        if account is None or account.password_hash != expected:
            return None
        stamp = new_security_stamp() if rotate_stamp else account.security_stamp
        updated = replace(account, password_hash=new, security_stamp=stamp)
        if changed_at is not None:
            updated = replace(
                updated,
                password_changed_at=changed_at,
                must_change_password=False,
                grace_logins_used=0,
            )
        self._accounts[key] = updated
        return account

    def get(self, account_id: str) -> Account | None:
        """Return the account with this id, or ``None``."""
        key = check_account_id(account_id)
        if key is None:
            return None
        with self._lock:
            return self._accounts.get(key)

    def find_by_login(self, kind: LoginKind, value: str) -> Account | None:
        """Return the account with this user name, e-mail, phone or IIN, or ``None``."""
        key = check_login(kind, value)
        if key is None:
            return None
        index = self._indexes()[kind]
        with self._lock:
            account_id = index.get(key)
            return None if account_id is None else self._accounts[account_id]

    def set_password_hash(
        self,
        account_id: str,
        *,
        expected: str | None,
        new: str,
        rotate_stamp: bool = True,
        now: datetime | None = None,
    ) -> bool:
        """Compare-and-set the password hash (and a fresh stamp); see the protocol."""
        can_match = check_expected_hash(expected, new)
        check_rotate_stamp(rotate_stamp)
        changed_at = check_changed_at(now)
        key = check_account_id(account_id)
        if key is None or not can_match:
            return False
        with self._lock:
            swapped = self._swap_hash(
                key, expected, new, rotate_stamp=rotate_stamp, changed_at=changed_at
            )
            return swapped is not None

    def set_email(self, account_id: str, email: str, *, confirmed: bool = False) -> None:
        """Set the e-mail and its confirmation flag; see the protocol."""
        check_set_email(email, confirmed)
        key = check_account_id(account_id)
        with self._lock:
            account = None if key is None else self._accounts.get(key)
            if account is None:
                raise AccountNotFoundError("no account has this id")
            email_key = email.casefold()
            owner = self._by_email.get(email_key)
            if owner is not None and owner != account.id:
                raise DuplicateAccountError("email")
            if account.email is not None:
                del self._by_email[account.email.casefold()]
            self._by_email[email_key] = account.id
            self._accounts[account.id] = replace(
                account,
                email=email,
                email_confirmed=confirmed,
                security_stamp=new_security_stamp(),
            )

    def update_contact(
        self,
        account_id: str,
        *,
        expected_stamp: str,
        contact: Contact,
        rotate_stamp: bool = True,
        clear_password: bool = False,
    ) -> Account | None:
        """Write ``contact`` if the stamp is still ``expected_stamp``; see the protocol."""
        key = check_update_contact(
            account_id,
            expected_stamp,
            contact,
            ("rotate_stamp", rotate_stamp),
            ("clear_password", clear_password),
        )
        if key is None:
            return None
        with self._lock:
            swapped = self._swap_contact(
                key, expected_stamp, contact, rotate_stamp=rotate_stamp, clear=clear_password
            )
            return None if swapped is None else self._accounts[key]

    def _swap_contact(
        self, key: str, expected_stamp: str, contact: Contact, *, rotate_stamp: bool, clear: bool
    ) -> Account | None:
        """The compare-and-set; return the account as it was if it won. The caller locks."""
        account = self._accounts.get(key)
        if account is None or account.security_stamp != expected_stamp:
            return None
        indexes = self._indexes()
        new_keys, old_keys = contact_keys(contact), login_keys(account)
        for kind, value in new_keys.items():  # e-mail first, then phone, as at create
            owner = None if value is None else indexes[kind].get(value)
            if owner is not None and owner != key:
                raise DuplicateAccountError(kind)
        for kind, value in new_keys.items():
            old = old_keys[kind]
            if old is not None:
                del indexes[kind][old]
            if value is not None:
                indexes[kind][value] = key
        updated = replace(
            account,
            email=contact.email,
            email_confirmed=contact.email_confirmed,
            phone=contact.phone,
            phone_verified=contact.phone_verified,
            pending_email=contact.pending_email,
            pending_phone=contact.pending_phone,
            previous_email=contact.previous_email,
            email_changed_at=contact.email_changed_at,
            time_zone=contact.time_zone,
            security_stamp=new_security_stamp() if rotate_stamp else account.security_stamp,
        )
        if clear:
            updated = replace(
                updated,
                password_hash=None,
                password_changed_at=None,
                must_change_password=False,
                grace_logins_used=0,
            )
        self._accounts[key] = updated
        return account

    def _restore(self, before: Account) -> None:
        """Undo :meth:`_swap_contact` (the account as it was); the caller holds the lock."""
        current = self._accounts[before.id]
        indexes = self._indexes()
        for kind, value in login_keys(current).items():
            if value is not None and kind in ("email", "phone"):
                del indexes[kind][value]
        for kind, value in login_keys(before).items():
            if value is not None and kind in ("email", "phone"):
                indexes[kind][value] = before.id
        self._accounts[before.id] = before

    def mark_email_confirmed(self, account_id: str, *, email: str, now: datetime) -> bool:
        """Mark the e-mail confirmed if it still equals ``email``; see the protocol."""
        email_key, _ = check_mark_email(email, now)
        key = check_account_id(account_id)
        if key is None or email_key is None:
            return False
        with self._lock:
            account = self._accounts.get(key)
            if account is None or account.email is None or account.email.casefold() != email_key:
                return False
            self._accounts[key] = replace(account, email_confirmed=True)
            return True

    def reserve_login_attempt(
        self, account_id: str, *, expected_failures: int, now: datetime
    ) -> bool:
        """Count an attempt if the failure count is still ``expected_failures``."""
        at = check_reserve(account_id, expected_failures, now)
        key = check_account_id(account_id)
        if key is None:
            return False
        with self._lock:
            account = self._accounts.get(key)
            if account is None or account.failed_logins != expected_failures:
                return False
            self._accounts[key] = replace(
                account, failed_logins=expected_failures + 1, last_failed_login_at=at
            )
            return True

    def record_login_success(self, account_id: str, *, now: datetime) -> None:
        """Reset the failure count and set the last login time."""
        self._update(
            account_id, now, lambda account, at: replace(account, failed_logins=0, last_login_at=at)
        )

    def clear_login_failures(self, account_id: str) -> None:
        """Reset the failure count without recording a login."""
        key = check_account_id(account_id)
        with self._lock:
            account = None if key is None else self._accounts.get(key)
            if account is None:
                raise AccountNotFoundError("no account has this id")
            self._accounts[account.id] = replace(account, failed_logins=0)

    def set_must_change_password(self, account_id: str, required: bool) -> None:
        """Set or clear the must-change flag; see the protocol."""
        check_must_change(account_id, required)
        key = check_account_id(account_id)
        with self._lock:
            account = None if key is None else self._accounts.get(key)
            if account is None:
                raise AccountNotFoundError("no account has this id")
            self._accounts[account.id] = replace(account, must_change_password=required)

    def use_grace_login(self, account_id: str, *, expected: int) -> bool:
        """Count a grace log-in if the count is still ``expected``; see the protocol."""
        check_grace(account_id, expected)
        key = check_account_id(account_id)
        if key is None:
            return False
        with self._lock:
            account = self._accounts.get(key)
            if account is None or account.grace_logins_used != expected:
                return False
            self._accounts[key] = replace(account, grace_logins_used=expected + 1)
            return True

    def _update(
        self, account_id: str, now: datetime, change: Callable[[Account, datetime], Account]
    ) -> Account:
        now = require_utc(now)
        key = check_account_id(account_id)
        with self._lock:
            account = None if key is None else self._accounts.get(key)
            if account is None:
                raise AccountNotFoundError("no account has this id")
            updated = change(account, now)
            self._accounts[account.id] = updated
            return updated


class MemoryPasswordHistoryStore:
    """A :class:`~kaspi_identity.storage.PasswordHistoryStore` of bounded deques."""

    def __init__(self) -> None:
        """Create an empty store."""
        self._lock = threading.Lock()
        self._entries: dict[str, deque[HistoryEntry]] = {}

    def append(self, account_id: str, entry: HistoryEntry, *, keep: int) -> None:
        """Append ``entry`` and keep the newest ``keep``; see the protocol."""
        check_append(account_id, entry, keep)
        with self._lock:
            self._append(account_id, entry, keep)

    def _append(self, account_id: str, entry: HistoryEntry, keep: int) -> None:
        """Append and trim; the caller holds the lock."""
        entries = self._entries.setdefault(account_id, deque())
        entries.append(entry)
        while len(entries) > keep:
            entries.popleft()

    def recent(self, account_id: str, limit: int) -> list[HistoryEntry]:
        """Return at most ``limit`` entries, newest first."""
        check_recent(account_id, limit)
        with self._lock:
            entries = self._entries.get(account_id, ())
            return list(reversed(entries))[:limit]


class MemoryAccountWithHistory:
    """An :class:`~kaspi_identity.storage.AccountWithHistory` over two memory stores.

    It works on a :class:`MemoryAccountStore` and a :class:`MemoryPasswordHistoryStore`.
    Each call holds both stores' locks (the account store's first), so no other call on
    either store sees the account written without its history entry; if the history
    write fails, the account write is undone before the error propagates.
    """

    def __init__(
        self,
        accounts: MemoryAccountStore,
        history: MemoryPasswordHistoryStore,
        outbox: MemoryOutboxStore | None = None,
    ) -> None:
        """Work on ``accounts`` and ``history`` (and ``outbox``) of one ``memory_storage()``."""
        if not isinstance(accounts, MemoryAccountStore):
            raise TypeError(f"accounts must be a MemoryAccountStore, not {type(accounts).__name__}")
        if not isinstance(history, MemoryPasswordHistoryStore):
            raise TypeError(
                f"history must be a MemoryPasswordHistoryStore, not {type(history).__name__}"
            )
        if outbox is not None and not isinstance(outbox, MemoryOutboxStore):
            raise TypeError(f"outbox must be a MemoryOutboxStore, not {type(outbox).__name__}")
        self._accounts = accounts
        self._history = history
        self._outbox = outbox

    @property
    def outbox_store(self) -> MemoryOutboxStore | None:
        """The outbox the messages given to each call are enqueued in, or ``None``."""
        return self._outbox

    def _outbox_lock(self) -> Any:
        return contextlib.nullcontext() if self._outbox is None else self._outbox._lock

    def _enqueue_all(self, messages: Sequence[OutboxMessage]) -> Callable[[], None]:
        """Enqueue ``messages`` (the caller holds the locks); return the undo of it."""
        outbox = self._outbox
        if outbox is None:
            return lambda: None
        added = outbox._insert_all(messages)
        return lambda: outbox._remove(added)

    def covers(self, accounts: object, history: object) -> bool:
        """Whether this unit of work writes to exactly these two stores."""
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
        """Create the account and append ``entry(account)``, both or neither; see the protocol."""
        now = check_create_with_history(new, now, entry, keep)
        check_messages_callable(messages, self._outbox)
        with self._accounts._lock, self._history._lock, self._outbox_lock():
            account = self._accounts._insert(new, now)
            try:
                queued = () if messages is None else check_messages(messages(account), self._outbox)
                undo = self._enqueue_all(queued)
                try:
                    if entry is not None:
                        self._history._append(account.id, check_entry(entry(account)), keep)
                except BaseException:
                    undo()
                    raise
            except BaseException:
                self._accounts._remove(account)
                raise
            return account

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
        """Compare-and-set the hash (a new stamp) and append ``entry``; see the protocol."""
        key = check_replace_password(account_id, expected, new, entry, keep)
        changed_at = check_changed_at(now)
        queued = check_messages(messages, self._outbox)
        if key is None:
            return False
        with self._accounts._lock, self._history._lock, self._outbox_lock():
            before = self._accounts._swap_hash(
                key, expected, new, rotate_stamp=True, changed_at=changed_at
            )
            if before is None:
                return False
            try:
                undo = self._enqueue_all(queued)
                try:
                    if entry is not None:
                        self._history._append(key, entry, keep)
                except BaseException:
                    undo()
                    raise
            except BaseException:
                self._accounts._accounts[key] = before
                raise
            return True

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
        """Write ``contact`` (compare-and-set) and enqueue ``messages``; see the protocol."""
        key = check_update_contact(
            account_id,
            expected_stamp,
            contact,
            ("rotate_stamp", rotate_stamp),
            ("clear_password", clear_password),
        )
        queued = check_messages(messages, self._outbox)
        if key is None:
            return None
        with self._accounts._lock, self._outbox_lock():
            before = self._accounts._swap_contact(
                key, expected_stamp, contact, rotate_stamp=rotate_stamp, clear=clear_password
            )
            if before is None:
                return None
            try:
                self._enqueue_all(queued)
            except BaseException:
                self._accounts._restore(before)
                raise
            return self._accounts._accounts[key]


class MemoryTokenLedger:
    """A :class:`~kaspi_identity.storage.TokenLedger` in a dict with an expiry heap."""

    def __init__(self) -> None:
        """Create an empty ledger."""
        self._lock = threading.Lock()
        self._used: dict[str, datetime] = {}
        self._expiries: list[tuple[datetime, str]] = []

    def consume(self, token_id: str, expires_at: datetime, *, now: datetime) -> bool:
        """Record ``token_id`` as used; ``True`` only the first time, before expiry."""
        require_key(token_id, "token_id", max_length=TOKEN_ID_MAX_LENGTH)
        expires_at = require_utc(expires_at, "expires_at")
        now = require_utc(now)
        if expires_at <= now:
            return False
        with self._lock:
            horizon = now - LEDGER_GRACE
            while self._expiries and self._expiries[0][0] <= horizon:
                _, stale = heapq.heappop(self._expiries)
                self._used.pop(stale, None)
            if token_id in self._used:
                return False
            self._used[token_id] = expires_at
            heapq.heappush(self._expiries, (expires_at, token_id))
            return True


class MemoryOneTimeCodeStore:
    """A :class:`~kaspi_identity.storage.OneTimeCodeStore` in a dict, guarded by a lock."""

    def __init__(self) -> None:
        """Create an empty store."""
        self._lock = threading.Lock()
        self._states: dict[str, CodeState] = {}
        self._writes = 0

    def put(
        self,
        key: str,
        code_hash: bytes,
        *,
        expires_at: datetime,
        now: datetime,
        failure_window: timedelta,
    ) -> None:
        """Store a new code for ``key``, keeping the failure counter; see the protocol."""
        expires, at, window = check_put(
            key, code_hash, expires_at=expires_at, now=now, failure_window=failure_window
        )
        with self._lock:
            self._sweep(at)
            self._states[key] = put_code(
                self._states.get(key), code_hash, expires_at=expires, now=at, failure_window=window
            )

    def attempt(
        self, key: str, candidates: Sequence[bytes], *, now: datetime, max_attempts: int
    ) -> CodeAttempt:
        """Count one attempt and compare with every candidate; see the protocol."""
        at, hashes = check_attempt(key, candidates, now=now, max_attempts=max_attempts)
        with self._lock:
            state, outcome = attempt_code(
                self._states.get(key), hashes, now=at, max_attempts=max_attempts
            )
            if state is None:
                self._states.pop(key, None)
            else:
                self._states[key] = state
            return outcome

    def _sweep(self, now: int) -> None:
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            for key in [k for k, state in self._states.items() if code_is_dead(state, now)]:
                del self._states[key]


class MemoryRateLimiter:
    """A fixed-window :class:`~kaspi_identity.storage.RateLimiter` in a dict."""

    def __init__(self) -> None:
        """Create a limiter with no windows open."""
        self._lock = threading.Lock()
        self._windows: dict[str, WindowState] = {}
        self._writes = 0

    def hit(self, key: str, *, limit: int, window: timedelta, now: datetime) -> RateLimitResult:
        """Count a hit on ``key``; see the protocol."""
        length, at = check_hit(key, limit=limit, window=window, now=now)
        with self._lock:
            self._writes += 1
            if self._writes % _SWEEP_EVERY == 0:
                for stale in [k for k, w in self._windows.items() if window_is_dead(w, at)]:
                    del self._windows[stale]
            state, result = hit_window(self._windows.get(key), now=at, limit=limit, window=length)
            self._windows[key] = state
            return result


class MemoryOutboxStore:
    """An :class:`~kaspi_identity.storage.OutboxStore` in a dict, guarded by a lock."""

    def __init__(self) -> None:
        """Create an empty outbox."""
        self._lock = threading.Lock()
        self._messages: dict[str, OutboxMessage] = {}
        self._states: dict[str, OutboxState] = {}

    def _insert_all(self, messages: Sequence[OutboxMessage]) -> list[str]:
        """Store each new message, due at its ``created_at``; the ids added (lock held)."""
        added = []
        for message in messages:
            if message.id not in self._messages:
                at = utc_microseconds(message.created_at, "created_at")
                self._messages[message.id] = message
                self._states[message.id] = initial_state(message, at)
                added.append(message.id)
        return added

    def _remove(self, ids: Sequence[str]) -> None:
        for key in ids:
            self._messages.pop(key, None)
            self._states.pop(key, None)

    def enqueue(self, message: OutboxMessage, *, now: datetime) -> bool:
        """Store ``message``, due at ``now``; see the protocol."""
        at = check_enqueue(message, now)
        with self._lock:
            if message.id in self._messages:
                return False
            self._messages[message.id] = message
            self._states[message.id] = initial_state(message, at)
            return True

    def claim(self, *, now: datetime, lease: timedelta, limit: int) -> list[OutboxEntry]:
        """Lease up to ``limit`` due pending entries; see the protocol."""
        at, length, count = check_claim(now, lease, limit)
        with self._lock:
            due = sorted(
                (state.next_at, self._messages[key].created_at, key)
                for key, state in self._states.items()
                if state.status == "pending" and state.next_at <= at
            )[:count]
            claimed = []
            for _, _, key in due:
                state = claim_state(self._states[key], at, length)
                assert state is not None  # chosen as due above, under the lock
                self._states[key] = state
                claimed.append(entry_of(self._messages[key], state))
            return claimed

    def complete(self, message_id: str, *, attempt: int, now: datetime) -> bool:
        """Mark the entry sent if ``attempt`` is its latest claim; see the protocol."""
        key, count, at, _ = check_settle(message_id, attempt, now)
        with self._lock:
            state = self._states.get(key)
            new = None if state is None else complete_state(state, count, at)
            if new is None:
                return False
            self._states[key] = new
            return True

    def fail(
        self,
        message_id: str,
        *,
        attempt: int,
        now: datetime,
        retry_at: datetime | None,
        error: str,
    ) -> bool:
        """Record a failed attempt; see the protocol."""
        key, count, at, label = check_settle(message_id, attempt, now, error)
        again = retry_at_microseconds(retry_at)
        with self._lock:
            state = self._states.get(key)
            new = None if state is None else fail_state(state, count, at, again, label)
            if new is None:
                return False
            self._states[key] = new
            return True

    def get(self, message_id: str) -> OutboxEntry | None:
        """Return the entry with this id, or ``None``."""
        key = check_message_id(message_id)
        with self._lock:
            state = self._states.get(key)
            return None if state is None else entry_of(self._messages[key], state)

    def list(self, *, status: OutboxStatus | None = None, limit: int = 100) -> list[OutboxEntry]:
        """Up to ``limit`` entries of ``status`` (or all), oldest first."""
        wanted, count = check_list(status, limit)
        with self._lock:
            chosen = sorted(
                (self._messages[key].created_at, key)
                for key, state in self._states.items()
                if wanted is None or state.status == wanted
            )[:count]
            return [entry_of(self._messages[key], self._states[key]) for _, key in chosen]

    def retry(self, message_id: str, *, now: datetime) -> bool:
        """Make a dead entry pending again; see the protocol."""
        key = check_message_id(message_id)
        at = utc_microseconds(now)
        with self._lock:
            state = self._states.get(key)
            new = None if state is None else retry_state(state, at)
            if new is None:
                return False
            self._states[key] = new
            return True

    def purge(
        self, *, before: datetime, statuses: tuple[OutboxStatus, ...] = ("sent", "void")
    ) -> int:
        """Delete settled entries last changed before ``before``; see the protocol."""
        at, chosen = check_purge(before, statuses)
        with self._lock:
            gone = [
                key
                for key, state in self._states.items()
                if state.status in chosen and state.updated_at < at
            ]
            self._remove(gone)
            return len(gone)


def memory_storage(*, outbox: bool = False) -> Storage:
    """Return a :class:`~kaspi_identity.storage.Storage` of fresh in-memory stores.

    Its ``with_history`` is a :class:`MemoryAccountWithHistory` over its accounts and history.
    With ``outbox=True`` the bundle has a :class:`MemoryOutboxStore` too (letters and SMS
    are queued for a worker), which ``with_history`` enqueues into in the same step.
    """
    accounts = MemoryAccountStore()
    history = MemoryPasswordHistoryStore()
    queue = MemoryOutboxStore() if _flag(outbox) else None
    return Storage(
        accounts=accounts,
        history=history,
        ledger=MemoryTokenLedger(),
        codes=MemoryOneTimeCodeStore(),
        rate_limits=MemoryRateLimiter(),
        with_history=MemoryAccountWithHistory(accounts, history, queue),
        outbox=queue,
    )


def async_memory_storage(*, outbox: bool = False) -> AsyncStorage:
    """Return an :class:`~kaspi_identity.storage.AsyncStorage` of fresh in-memory stores.

    The very stores of :func:`memory_storage` (``outbox`` as there), each method a
    coroutine that runs right away on the event loop (they never block).
    """
    return coroutining(memory_storage(outbox=outbox))


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"outbox must be bool, not {type(value).__name__}")
    return value
