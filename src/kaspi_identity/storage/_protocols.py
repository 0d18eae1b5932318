"""The storage protocols a host application implements, and the bundle that carries them.

Common rules for every protocol here:

* Every time is passed in by the caller (``now=``, ``expires_at=``) as a timezone-aware
  datetime; a store never reads the clock. A naive datetime raises ``ValueError``, a
  non-datetime ``TypeError``. Callers pass a ``now`` that does not go backwards.
* "Atomic" means atomic for every caller of the same backing store at once: threads of one
  process, several processes, several app servers. A lock in the Python process is not
  enough unless the data lives only in that process.
* A failure of the backend raises :class:`~kaspi_identity.StorageError` and leaves the
  stored data as it was before the call. Stored data that cannot be interpreted raises
  :class:`~kaspi_identity.CorruptRecordError`; nothing is overwritten.
* No exception message carries a password, hash, token, code or key.
* Bad arguments fail before anything is written: ``TypeError`` for a wrong type,
  ``ValueError`` for a wrong value. :func:`require_utc` and :func:`require_key` do the
  checks the contract suite (:mod:`kaspi_identity.testing`) expects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from ._async import AsyncStorage

from ._outbox import OutboxEntry, OutboxMessage, OutboxStatus
from ._records import Account, CodeAttempt, Contact, HistoryEntry, NewAccount, RateLimitResult

__all__ = [
    "AccountStore",
    "AccountWithHistory",
    "LoginKind",
    "OneTimeCodeStore",
    "OutboxStore",
    "PasswordHistoryStore",
    "RateLimiter",
    "Storage",
    "TokenLedger",
]

#: Which identifier :meth:`AccountStore.find_by_login` looks an account up by.
LoginKind = Literal["username", "email", "phone", "iin"]


class AccountStore(Protocol):
    """Accounts; user name, e-mail and phone unique; password changes by compare-and-set.

    Promises:

    * ``username`` and ``email`` are unique compared with :meth:`str.casefold` ("Aliya" and
      "ALIYA" are the same user name); ``phone`` (an exact E.164 string) and ``iin`` (12
      digits) are unique as exact strings. ``names`` are stored as given, in order.
      Uniqueness holds atomically under concurrent :meth:`create` and :meth:`set_email`
      calls (unique indexes, or checks made inside a transaction that holds the write
      lock -- never a check in one transaction and the insert in another).
    * :meth:`set_password_hash` is a compare-and-set: the write happens only if the stored
      hash equals ``expected`` at the moment of the write (one ``UPDATE ... WHERE`` or a
      locked transaction, never a read followed by a write). Of several concurrent callers
      with the same ``expected``, exactly one wins.
    * :meth:`reserve_login_attempt` is a compare-and-set on the consecutive failure count
      (one ``UPDATE ... WHERE failed_logins = :expected``): of several concurrent callers
      that read the same count, exactly one wins. The services reserve an attempt *before*
      verifying a password, so no more than ``lockout_after`` verifications can ever run for
      one account between two successes, however many requests arrive at once.
    * Every account carries a **security stamp**: an opaque random string (at most 64
      characters) that :meth:`create` sets and that :meth:`set_password_hash` (unless told
      ``rotate_stamp=False``) and :meth:`set_email` replace with a fresh random value in the
      same write. A stamp is never reused, so a link or session bound to an old stamp stays
      dead even when the password or address later comes back to an earlier value.
    * Account ids are opaque strings (at most 256 characters) chosen by the store; a host
      with integer keys returns ``str(pk)``. Any ``str`` that is no account's id or
      identifier -- empty, huge, with NUL or a lone surrogate -- simply finds nothing
      (``None``, ``False`` or :class:`~kaspi_identity.AccountNotFoundError`).
    """

    def create(self, new: NewAccount, *, now: datetime) -> Account:
        """Store ``new`` with a fresh id and ``created_at=now``; return the stored account.

        Raises:
            DuplicateAccountError: the user name, e-mail, phone or IIN is taken (checked in
                that order; ``field`` names the first clash). Nothing is stored.

        """
        ...

    def get(self, account_id: str) -> Account | None:
        """Return the account with id ``account_id``, or ``None``."""
        ...

    def find_by_login(self, kind: LoginKind, value: str) -> Account | None:
        """Return the account whose ``kind`` identifier equals ``value``, or ``None``.

        ``username`` and ``email`` compare case-insensitively (casefold); ``phone`` and
        ``iin`` exactly.

        Raises:
            ValueError: ``kind`` is not "username", "email", "phone" or "iin".

        """
        ...

    def set_password_hash(
        self,
        account_id: str,
        *,
        expected: str | None,
        new: str,
        rotate_stamp: bool = True,
        now: datetime | None = None,
    ) -> bool:
        """Replace the hash with ``new`` only if it currently equals ``expected``.

        ``expected=None`` matches an account without a password. Returns ``True`` if this
        call wrote, ``False`` if the stored hash differed or the account does not exist.
        The same write gives the account a fresh security stamp, except with
        ``rotate_stamp=False`` (a rehash of the same password on log-in). With ``now``
        (a new password, not a rehash) the same write also sets ``password_changed_at`` to
        ``now``, clears ``must_change_password`` and sets ``grace_logins_used`` to 0;
        without it those three are left as they are.

        Raises:
            ValueError: ``now`` is naive.

        """
        ...

    def set_email(self, account_id: str, email: str, *, confirmed: bool = False) -> None:
        """Set the account's e-mail and whether it is confirmed; give it a fresh stamp.

        Raises:
            DuplicateAccountError: another account has this e-mail (``field="email"``).
            AccountNotFoundError: no account has id ``account_id``.

        """
        ...

    def update_contact(
        self,
        account_id: str,
        *,
        expected_stamp: str,
        contact: Contact,
        rotate_stamp: bool = True,
        clear_password: bool = False,
    ) -> Account | None:
        """Write ``contact`` only if the account's security stamp still equals ``expected_stamp``.

        A compare-and-set on the stamp (one ``UPDATE ... WHERE security_stamp = :expected``
        or a locked transaction): of several concurrent callers that read the same stamp,
        at most one writes, however they differ. Every field of :class:`Contact` is written
        as given; with ``rotate_stamp`` (the default: a change of address or phone) the same
        write gives a fresh security stamp, and with ``clear_password`` it also removes the
        password (``password_hash`` and ``password_changed_at`` become ``None``,
        ``must_change_password`` ``False``, ``grace_logins_used`` 0), so only a reset can
        give the account one again. Returns the account as written, or ``None`` (nothing
        written) when the stamp differs or the account does not exist -- including for any
        ``account_id`` or ``expected_stamp`` no account can have.

        ``email`` and ``phone`` stay unique exactly as at :meth:`create`; ``pending_email``
        and ``pending_phone`` are not logins and need not be unique.

        Raises:
            TypeError: ``contact`` is not a :class:`Contact`, a flag not a ``bool``, or
                ``account_id`` / ``expected_stamp`` not a ``str``.
            DuplicateAccountError: another account has ``contact.email`` (``field="email"``)
                or ``contact.phone`` (``field="phone"``); nothing is written.

        """
        ...

    def mark_email_confirmed(self, account_id: str, *, email: str, now: datetime) -> bool:
        """Mark the e-mail confirmed, only if the account's address still equals ``email``.

        A compare-and-set: the address is compared with :meth:`str.casefold` in the same
        write (one ``UPDATE ... WHERE email_key = :key``), so a link sent to an old address
        can never confirm a new one. Returns ``True`` if this call marked the address,
        ``False`` if the address differs or the account does not exist. The stamp is kept.
        """
        ...

    def reserve_login_attempt(
        self, account_id: str, *, expected_failures: int, now: datetime
    ) -> bool:
        """Count one log-in attempt before it is verified, if the count is still as read.

        If the account's consecutive failure count equals ``expected_failures``, add one
        and set ``last_failed_login_at`` to ``now`` in one atomic write and return ``True``;
        otherwise (another attempt was counted first, or no such account) write nothing
        and return ``False``. A verified success then resets the count with
        :meth:`record_login_success`; a failure needs no further write.

        Raises:
            TypeError: ``expected_failures`` is not an ``int``.
            ValueError: ``expected_failures`` is negative, or ``now`` is naive.

        """
        ...

    def record_login_success(self, account_id: str, *, now: datetime) -> None:
        """Reset the consecutive failures to 0 and set ``last_login_at`` to ``now``.

        Raises:
            AccountNotFoundError: no account has id ``account_id``.

        """
        ...

    def clear_login_failures(self, account_id: str) -> None:
        """Reset the consecutive failures to 0 without recording a login.

        Called when a password reset recovers the account (a locked account needs exactly
        that). ``last_login_at`` and ``last_failed_login_at`` are left as they are.

        Raises:
            AccountNotFoundError: no account has id ``account_id``.

        """
        ...

    def set_must_change_password(self, account_id: str, required: bool) -> None:
        """Set whether the next log-in must choose a new password; the stamp is kept.

        A new password (:meth:`set_password_hash` with ``now``) clears the flag again.

        Raises:
            TypeError: ``required`` is not a ``bool``.
            AccountNotFoundError: no account has id ``account_id``.

        """
        ...

    def use_grace_login(self, account_id: str, *, expected: int) -> bool:
        """Count one log-in with an expired password, if the count is still as read.

        A compare-and-set like :meth:`reserve_login_attempt`: if ``grace_logins_used``
        equals ``expected``, add one in one atomic write and return ``True``; otherwise
        (another log-in counted first, or no such account) write nothing and return
        ``False``. Of several concurrent callers that read the same count, exactly one wins.

        Raises:
            TypeError: ``expected`` is not an ``int``.
            ValueError: ``expected`` is negative.

        """
        ...


class PasswordHistoryStore(Protocol):
    """The newest ``keep`` past passwords per account; appending and trimming are one step.

    Promises:

    * :meth:`append` adds the entry and deletes all but the newest ``keep`` entries of the
      account in one atomic step: however many appends race for one account, it never holds
      more than ``keep`` entries, and the ones it holds are the newest.
    * "Newest" means most recently appended, whatever the entries' ``created_at``.
    * ``account_id`` is an opaque key (1 to 256 characters); the store does not check that
      the account exists, so history can live in a different backend than the accounts.
    """

    def append(self, account_id: str, entry: HistoryEntry, *, keep: int) -> None:
        """Append ``entry`` and keep only the newest ``keep`` entries (``keep >= 1``).

        Raises:
            ValueError: ``keep`` is below 1, or ``account_id`` is empty or too long.

        """
        ...

    def recent(self, account_id: str, limit: int) -> list[HistoryEntry]:
        """Return at most ``limit`` entries (``limit >= 1``), newest first.

        Raises:
            ValueError: ``limit`` is below 1, or ``account_id`` is empty or too long.

        """
        ...


class TokenLedger(Protocol):
    """Single-use token ids: :meth:`consume` returns ``True`` exactly once per id, ever.

    Promises:

    * Of all calls with the same ``token_id`` -- from any thread, process or server --
      at most one returns ``True`` (an atomic insert-if-absent, such as a primary key
      insert or Redis ``SET NX``).
    * A token whose ``expires_at`` is not after ``now`` is dead: :meth:`consume` returns
      ``False`` for it without recording anything. Therefore an implementation may forget
      an id once its ``expires_at`` has passed (the token's signature check rejects an
      expired token anyway) and should purge such ids so the ledger does not grow without
      bound. The bundled adapters purge opportunistically, keeping ids 5 minutes past expiry
      to absorb clock skew between servers.
    * Token ids are opaque strings of 1 to 128 characters; the same id always comes with
      the same ``expires_at`` (both are read from the signed token).
    """

    def consume(self, token_id: str, expires_at: datetime, *, now: datetime) -> bool:
        """Record ``token_id`` as used; ``True`` only for its first use before expiry.

        Raises:
            TypeError: ``token_id`` is not a ``str``.
            ValueError: ``token_id`` is empty, longer than 128 characters or holds NUL.

        """
        ...


class OneTimeCodeStore(Protocol):
    """Short-lived codes (SMS) stored as keyed hashes, with an attempt counter per key.

    Promises:

    * Only ``code_hash`` (an HMAC of the code, computed by the caller) is stored; the
      comparison uses :func:`hmac.compare_digest`. An attempt brings one candidate hash per
      configured key (newest first), so a code stored under the previous key still
      verifies after a key rotation; it is still **one** counted attempt.
    * :meth:`attempt` is one atomic step -- increment, then compare: with a live code, the
      counter goes up first; past ``max_attempts`` the code is deleted and the answer is
      :attr:`CodeAttempt.EXHAUSTED` even if this attempt was right. Of any number of
      concurrent attempts with the right code, exactly one gets :attr:`CodeAttempt.OK`.
    * The counter belongs to the key, not the code: :meth:`put` replaces the code but keeps
      the counter (NIST SP 800-63B: asking for a new code must not reset failed attempts).
      The counter is reset by an ``OK`` attempt, or when its failure window has passed.
      The window opens at the first counted attempt and lasts the ``failure_window`` given
      to the latest :meth:`put` before it opened.
    * A code is live while ``now < expires_at``.
    """

    def put(
        self,
        key: str,
        code_hash: bytes,
        *,
        expires_at: datetime,
        now: datetime,
        failure_window: timedelta,
    ) -> None:
        """Store ``code_hash`` for ``key`` until ``expires_at``, replacing any earlier code.

        Raises:
            ValueError: ``expires_at`` is not after ``now``, ``failure_window`` is not
                positive, ``code_hash`` is empty, or ``key`` is empty or too long.

        """
        ...

    def attempt(
        self, key: str, candidates: Sequence[bytes], *, now: datetime, max_attempts: int
    ) -> CodeAttempt:
        """Count one attempt for ``key``; right if the stored hash equals any candidate.

        ``candidates`` holds 1 to 8 non-empty hashes of the typed code (one per key).

        Returns :attr:`~CodeAttempt.MISSING` (no live code; nothing counted),
        :attr:`~CodeAttempt.EXHAUSTED` (the count now exceeds ``max_attempts``; the code is
        deleted), :attr:`~CodeAttempt.OK` (right; code deleted, count reset) or
        :attr:`~CodeAttempt.MISMATCH`.

        Raises:
            TypeError: ``candidates`` is not a sequence of ``bytes`` (a bare ``bytes`` too).
            ValueError: ``max_attempts`` is below 1, ``candidates`` is empty, holds more
                than 8 or an empty hash, or ``key`` is empty or too long.

        """
        ...


class RateLimiter(Protocol):
    """Fixed-window hit counters per key: at most ``limit`` allowed hits per window.

    Promises:

    * The first hit on a key opens a window ``[now, now + window)``. Each hit in it counts,
      allowed or not; a hit is allowed while the count is at most ``limit``. The first hit at
      or after the window's end opens a new window. Denied hits never move the window, so a
      client that keeps knocking is let in again when the window ends.
    * Counting is atomic (one upsert, ``INCR``, or a locked transaction): of any number of
      concurrent hits in one window, exactly ``limit`` are allowed.
    * Edge behaviour: up to ``2 * limit`` hits can be allowed within one window length
      around a window's end. Use one ``(limit, window)`` per key; a window already open
      keeps the length it was opened with.
    """

    def hit(self, key: str, *, limit: int, window: timedelta, now: datetime) -> RateLimitResult:
        """Count a hit on ``key`` and say whether it is allowed.

        Raises:
            ValueError: ``limit`` is below 1, ``window`` is not positive, or ``key`` is
                empty or too long.

        """
        ...


class OutboxStore(Protocol):
    """Letters and SMS waiting for the worker: enqueue, claim under a lease, settle.

    Promises:

    * :meth:`enqueue` stores a message once per id: a second message with the same id
      changes nothing and answers ``False``. A message with ``deliver=False`` is stored
      ``void`` and never claimed.
    * :meth:`claim` is atomic: it picks due ``pending`` entries (``next_attempt_at <= now``,
      earliest first), counts one attempt on each and moves ``next_attempt_at`` to
      ``now + lease`` in the same step. Of any number of concurrent claims, each entry goes
      to one of them; after the lease it may be claimed again (a worker that died mid-send
      is replaced: delivery is at-least-once, and the id tells a duplicate apart).
    * :meth:`complete` and :meth:`fail` are compare-and-set on the attempt number: only the
      holder of the latest claim settles an entry; a stale one answers ``False``.
    * Nothing in an entry is secret in clear: the payload holds what the text is rendered
      from (see :class:`~kaspi_identity.storage.OutboxMessage`).
    """

    def enqueue(self, message: OutboxMessage, *, now: datetime) -> bool:
        """Store ``message`` (due at ``now``); ``False`` if its id is already stored."""
        ...

    def claim(self, *, now: datetime, lease: timedelta, limit: int) -> list[OutboxEntry]:
        """Lease up to ``limit`` (1 to 1000) due pending entries; return them as leased.

        Raises:
            ValueError: ``lease`` is not positive or ``limit`` is out of range.

        """
        ...

    def complete(self, message_id: str, *, attempt: int, now: datetime) -> bool:
        """Mark the entry sent if its latest claim is ``attempt``; ``True`` if this call did."""
        ...

    def fail(
        self,
        message_id: str,
        *,
        attempt: int,
        now: datetime,
        retry_at: datetime | None,
        error: str,
    ) -> bool:
        """Record a failed attempt: due again at ``retry_at``, or ``dead`` when ``None``.

        Only if the entry's latest claim is ``attempt``; ``True`` if this call wrote.
        ``error`` is a short label (an exception's class name), never a message text.
        """
        ...

    def get(self, message_id: str) -> OutboxEntry | None:
        """Return the entry with this id, or ``None``."""
        ...

    def list(self, *, status: OutboxStatus | None = None, limit: int = 100) -> list[OutboxEntry]:
        """Up to ``limit`` entries (of ``status``, or all), oldest first."""
        ...

    def retry(self, message_id: str, *, now: datetime) -> bool:
        """Make a ``dead`` entry pending again, due at ``now``, its attempts reset to 0.

        Returns ``False`` (nothing written) when the entry is missing or not dead.
        """
        ...

    def purge(
        self, *, before: datetime, statuses: tuple[OutboxStatus, ...] = ("sent", "void")
    ) -> int:
        """Delete entries of ``statuses`` last changed before ``before``; how many went.

        A ``pending`` entry is never purged.
        """
        ...


class AccountWithHistory(Protocol):
    """Account writes that change the password history in the same unit of work.

    Offered by a backend that keeps accounts and history in one database (the bundled SQLite
    and SQLAlchemy factories, and the memory one), through :attr:`Storage.with_history`.

    Promises:

    * Each method is one transaction: the account write and the history append both take
      effect, or neither does (a failure of either raises
      :class:`~kaspi_identity.StorageError` and leaves both as they were).
    * The account write keeps every promise of the :class:`AccountStore` method it extends
      (uniqueness, compare-and-set, a fresh security stamp); the append keeps those of
      :meth:`PasswordHistoryStore.append` (at most ``keep`` entries, the newest).
    * A unit of work made with the bundle's outbox (the bundled factories with
      ``outbox=True``) also enqueues the ``messages`` it is given in the same transaction:
      the letter that tells of a change exists exactly when the change does. Its
      ``outbox_store`` attribute is that outbox; one without (``None`` or no such
      attribute) raises ``ValueError`` when given messages.
    """

    def create_with_history(
        self,
        new: NewAccount,
        *,
        now: datetime,
        entry: Callable[[Account], HistoryEntry] | None,
        keep: int,
        messages: Callable[[Account], Sequence[OutboxMessage]] | None = None,
    ) -> Account:
        """:meth:`AccountStore.create`, then append ``entry(account)`` to its history.

        ``entry`` is called with the account as it will be stored (the history fingerprints
        are bound to its id) -- inside the transaction, or just before the one statement
        that writes it all, when the store chooses the id itself -- and must not do I/O;
        if it (or the write) raises, nothing is stored. ``None`` appends nothing.
        ``messages(account)`` (the same rules) are enqueued in the bundle's outbox in the
        same step; only a unit of work made with that outbox takes them.

        Raises:
            DuplicateAccountError: as :meth:`AccountStore.create`; nothing is stored.
            ValueError: ``keep`` is below 1.

        """
        ...

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
        """:meth:`AccountStore.set_password_hash` (a new stamp; ``now`` as there), then append.

        ``entry`` is appended to the history in the same transaction. Returns ``False``,
        having written nothing, when the compare-and-set loses; ``entry=None`` appends
        nothing. ``messages`` are enqueued in the bundle's outbox in the same transaction
        (only by a unit of work made with that outbox).

        Raises:
            ValueError: ``keep`` is below 1, or ``now`` is naive.

        """
        ...

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
        """:meth:`AccountStore.update_contact`, with ``messages`` enqueued in the same step.

        The notices of a change of address or phone exist exactly when the change does:
        when the compare-and-set loses (``None``) or raises, nothing is enqueued. Only a
        unit of work made with the bundle's outbox takes messages.

        Raises:
            As :meth:`AccountStore.update_contact`; ``ValueError`` for messages given to a
            unit of work without an outbox.

        """
        ...


@runtime_checkable
class _Covers(Protocol):
    def covers(self, accounts: object, history: object) -> bool: ...


def _unwrap(component: object) -> object:
    from kaspi_identity._bridge import Face

    while isinstance(component, Face):
        component = component.target
    return component


def check_units(bundle: Storage | AsyncStorage) -> None:
    """Refuse a bundle whose ``with_history`` writes to stores other than the bundle's own.

    ``dataclasses.replace(sqlite_storage(...), accounts=mine)`` would keep a unit of work
    that writes passwords into the bundled accounts table, not into ``mine``; the same for
    an outbox swapped under a unit of work that enqueues into its own.

    Raises:
        ValueError: the unit of work covers other stores.
    """
    together = bundle.with_history
    if isinstance(together, _Covers) and not together.covers(bundle.accounts, bundle.history):
        raise ValueError(
            "with_history writes to other stores than this bundle's accounts and history;"
            " pass with_history=None (or one made for these stores)"
        )
    own = getattr(together, "outbox_store", None)
    if own is not None and bundle.outbox is not None and _unwrap(own) is not _unwrap(bundle.outbox):
        raise ValueError(
            "with_history enqueues into another outbox than this bundle's;"
            " pass with_history=None (or one made for these stores)"
        )


def enqueues_together(bundle: Storage | AsyncStorage) -> bool:
    """Whether the bundle's ``with_history`` enqueues messages into the bundle's own outbox."""
    own = getattr(bundle.with_history, "outbox_store", None)
    return own is not None and bundle.outbox is not None and _unwrap(own) is _unwrap(bundle.outbox)


@runtime_checkable
class _Closeable(Protocol):
    def close(self) -> None: ...


def distinct_components(bundle: Storage | AsyncStorage) -> list[object]:
    """A bundle's stores (and ``with_history``), each object once, in field order."""
    seen: dict[int, object] = {}
    for component in (
        bundle.accounts,
        bundle.history,
        bundle.ledger,
        bundle.codes,
        bundle.rate_limits,
        bundle.with_history,
        bundle.outbox,
    ):
        if component is not None:
            seen.setdefault(id(component), component)
    return list(seen.values())


_Bundle = TypeVar("_Bundle", "Storage", "AsyncStorage")


def remap(
    bundle: Storage | AsyncStorage, face: Callable[[Any], Any], into: type[_Bundle]
) -> _Bundle:
    """An ``into`` bundle of ``face(component)`` for each of ``bundle``'s components.

    One face per distinct object (a store serving two roles keeps one face, so it is closed
    once); ``with_history=None`` stays ``None``. The async, bridged and blocking bundles are
    all made this way.
    """
    faces: dict[int, Any] = {}

    def once(component: object) -> Any:
        if component is None:
            return None
        if id(component) not in faces:
            faces[id(component)] = face(component)
        return faces[id(component)]

    return into(
        accounts=once(bundle.accounts),
        history=once(bundle.history),
        ledger=once(bundle.ledger),
        codes=once(bundle.codes),
        rate_limits=once(bundle.rate_limits),
        with_history=once(bundle.with_history),
        outbox=once(bundle.outbox),
    )


@dataclass(frozen=True, slots=True)
class Storage:
    """The stores the services need, bundled.

    Mix freely: a host's own :class:`AccountStore` over its users table with the bundled
    adapters for the rest. :meth:`close` (also on leaving a ``with`` block) calls ``close()``
    on each distinct component that has one.

    ``with_history`` is set by the factories whose accounts and history share one database
    (:class:`AccountWithHistory`); the services then change a password and its history in
    one transaction. Left ``None`` (stores in different backends), the services append the
    history entry first and set the hash after, so a failure in between leaves the old
    password working (and at worst a spare history entry).

    ``outbox`` (set by the factories given ``outbox=True``) makes the services queue every
    letter and SMS for an :class:`~kaspi_identity.services.OutboxWorker` instead of sending
    it during the request; where ``with_history`` shares its database, a change and the
    letter telling of it are one transaction. Left ``None``, letters are sent in the request.
    """

    accounts: AccountStore
    history: PasswordHistoryStore
    ledger: TokenLedger
    codes: OneTimeCodeStore
    rate_limits: RateLimiter
    with_history: AccountWithHistory | None = None
    outbox: OutboxStore | None = None

    def __post_init__(self) -> None:
        check_units(self)

    def close(self) -> None:
        """Close every component that has a ``close()`` method, each once."""
        for component in distinct_components(self):
            if isinstance(component, _Closeable):
                component.close()

    def __enter__(self) -> Storage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
