"""The records of the durable outbox, its argument checks and its state transitions.

An :class:`OutboxMessage` is what a flow hands over: who gets which letter or SMS, in which
language, and a JSON ``payload`` the worker renders the text from at send time (no link, code
or other secret in clear). An :class:`OutboxEntry` is that message with its delivery state.

Every adapter loads an entry's :class:`OutboxState`, applies one of the pure transitions
below and writes the result back in one atomic step, so all of them answer as the in-memory
reference does. Each transition's guard and values are stated once, as a :class:`Lease` or
a :class:`Settlement`: the pure transitions apply them, and the SQLAlchemy adapter on
PostgreSQL writes them in one guarded statement. Times are integer microseconds since the
Unix epoch, as the SQL adapters store them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import ClassVar, Final, Literal, get_args

from ._checks import (
    from_microseconds,
    is_storable_text,
    require_count,
    require_duration,
    require_key,
    require_text,
    require_utc,
    to_microseconds,
    utc_microseconds,
)

__all__ = [
    "MESSAGE_ID_LENGTH",
    "OUTBOX_COLUMNS",
    "OUTBOX_STATUSES",
    "PAYLOAD_MAX_LENGTH",
    "Lease",
    "OutboxChannel",
    "OutboxEntry",
    "OutboxMessage",
    "OutboxState",
    "OutboxStatus",
    "Settlement",
    "check_claim",
    "check_enqueue",
    "check_list",
    "check_message_id",
    "check_messages",
    "check_messages_callable",
    "check_purge",
    "check_settle",
    "claim_state",
    "complete_settlement",
    "complete_state",
    "decode_outbox",
    "entry_of",
    "fail_settlement",
    "fail_state",
    "initial_state",
    "lease_of",
    "outbox_row",
    "retry_at_microseconds",
    "retry_settlement",
    "retry_state",
]

#: Where a message goes: a letter or an SMS.
OutboxChannel = Literal["email", "sms"]
#: ``pending`` (waiting or leased), ``sent``, ``dead`` (gave up; an operator may retry) or
#: ``void`` (the twin of an unknown account's message: stored, never delivered).
OutboxStatus = Literal["pending", "sent", "dead", "void"]
#: Every status, in the order the CLI lists them.
OUTBOX_STATUSES: Final[tuple[OutboxStatus, ...]] = get_args(OutboxStatus)
#: A message id is 32 lower-case hex digits (128 random bits): the idempotency key.
MESSAGE_ID_LENGTH: Final = 32
#: The longest JSON payload a message may carry.
PAYLOAD_MAX_LENGTH: Final = 8192
#: The longest error label a failed attempt records (an exception's class name).
ERROR_MAX_LENGTH: Final = 200
#: Most entries one claim, list or purge handles.
BATCH_MAX: Final = 1000

_MESSAGE_ID = re.compile(r"[0-9a-f]{32}")
_KIND = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_LANGUAGE = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*")


def check_message_id(value: object) -> str:
    """``value`` if it is a message id: 32 lower-case hex digits.

    Raises:
        TypeError: ``value`` is not a ``str``.
        ValueError: it is not 32 lower-case hex digits.
    """
    if not isinstance(value, str):
        raise TypeError(f"message_id must be str, not {type(value).__name__}")
    if not _MESSAGE_ID.fullmatch(value):
        raise ValueError("message_id must be 32 lower-case hex digits")
    return value


def _check_payload(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"payload must be str, not {type(value).__name__}")
    if len(value) > PAYLOAD_MAX_LENGTH:
        raise ValueError(f"payload must be at most {PAYLOAD_MAX_LENGTH} characters")
    if not is_storable_text(value):
        raise ValueError("payload must not contain NUL or lone surrogates")
    try:
        decoded = json.loads(value)
    except ValueError:
        raise ValueError("payload must be a JSON object") from None
    if not isinstance(decoded, dict):
        raise ValueError("payload must be a JSON object")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxMessage:
    """One letter or SMS handed to the outbox, to be rendered and sent by the worker.

    Attributes:
        id: 32 lower-case hex digits, unique: the idempotency key every delivery attempt
            of this message carries (a duplicate send after a crash can be recognised).
        channel: ``"email"`` or ``"sms"``.
        kind: the template (``"password_reset"``, ``"reset_code"``).
        to: the address or the E.164 number (at most 254 characters).
        language: the language tag the text is written in.
        payload: a JSON object (at most 8192 characters) the text is rendered from at send
            time. It holds no secret in clear: a link is stored as its unsigned token body
            and a code as a nonce, both turned into the secret only with the service's keys.
        account_id: the account the message is about, or ``None``.
        created_at: when it was handed over (aware; UTC on the way out of a store).
        deliver: ``False`` for the twin of an unknown account's message: stored (so both
            paths do the same work) as ``void``, never sent.

    ``to`` and ``payload`` are left out of the repr.

    Raises:
        TypeError: a field has the wrong type.
        ValueError: a field is malformed (the message names the field, never its value).
    """

    id: str
    channel: OutboxChannel
    kind: str
    to: str = field(repr=False)
    language: str
    payload: str = field(repr=False)
    account_id: str | None = None
    created_at: datetime
    deliver: bool = True

    def __post_init__(self) -> None:
        check_message_id(self.id)
        if self.channel not in ("email", "sms"):
            raise ValueError("channel must be 'email' or 'sms'")
        if not isinstance(self.kind, str) or not _KIND.fullmatch(self.kind):
            raise ValueError("kind must be a short lower-case label like 'password_reset'")
        require_text(self.to, "to", max_length=254)
        if not isinstance(self.language, str) or not _LANGUAGE.fullmatch(self.language):
            raise ValueError("language must be a language tag such as 'kk', 'ru' or 'en'")
        _check_payload(self.payload)
        if self.account_id is not None:
            require_key(self.account_id, "account_id")
        object.__setattr__(self, "created_at", require_utc(self.created_at, "created_at"))
        if not isinstance(self.deliver, bool):
            raise TypeError(f"deliver must be bool, not {type(self.deliver).__name__}")


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxEntry:
    """A queued message with its delivery state, as an :class:`OutboxStore` returns it.

    Attributes:
        message: the message as handed over.
        status: ``pending``, ``sent``, ``dead`` or ``void``.
        attempts: delivery attempts claimed so far (a claim counts one, before it is sent).
        next_attempt_at: when a pending message may be claimed next (a claim moves it to
            the end of its lease); for the other statuses, the time it reached that status.
        updated_at: the time of the last change.
        last_error: the label of the last failure (an exception's class name), or ``None``.
    """

    message: OutboxMessage
    status: OutboxStatus
    attempts: int
    next_attempt_at: datetime
    updated_at: datetime
    last_error: str | None = None

    @property
    def id(self) -> str:
        """The message id (the idempotency key)."""
        return self.message.id


@dataclass(frozen=True, slots=True)
class OutboxState:
    """The mutable part of an entry, in microseconds: what a transition reads and writes."""

    status: OutboxStatus
    attempts: int
    next_at: int
    updated_at: int
    error: str | None


def entry_of(message: OutboxMessage, state: OutboxState) -> OutboxEntry:
    """The :class:`OutboxEntry` of ``message`` in ``state``."""
    return OutboxEntry(
        message=message,
        status=state.status,
        attempts=state.attempts,
        next_attempt_at=from_microseconds(state.next_at),
        updated_at=from_microseconds(state.updated_at),
        last_error=state.error,
    )


# -- argument checks -------------------------------------------------------------------


def check_enqueue(message: object, now: object) -> int:
    """Check the arguments of ``OutboxStore.enqueue``; ``now`` in microseconds.

    Raises:
        TypeError: ``message`` is not an :class:`OutboxMessage`, or ``now`` not a datetime.
        ValueError: ``now`` is naive.
    """
    if not isinstance(message, OutboxMessage):
        raise TypeError(f"message must be an OutboxMessage, not {type(message).__name__}")
    return utc_microseconds(now)


def _check_limit(limit: object) -> int:
    count = require_count(limit, "limit", minimum=1)
    if count > BATCH_MAX:
        raise ValueError(f"limit must be at most {BATCH_MAX}")
    return count


def check_claim(now: object, lease: object, limit: object) -> tuple[int, int, int]:
    """Check ``claim``'s arguments; ``(now, lease, limit)`` with times in microseconds.

    Raises:
        TypeError: a wrong type.
        ValueError: naive ``now``, a lease that is not positive, ``limit`` outside 1..1000.
    """
    at = utc_microseconds(now)
    length = require_duration(lease, "lease") // timedelta(microseconds=1)
    return at, length, _check_limit(limit)


def check_settle(
    message_id: object, attempt: object, now: object, error: object = None
) -> tuple[str, int, int, str | None]:
    """Check ``complete`` / ``fail``; ``(id, attempt, now, error)``, ``now`` in microseconds.

    Raises:
        TypeError: a wrong type.
        ValueError: a malformed id, an attempt below 1, naive ``now``, an empty or too long
            ``error``.
    """
    key = check_message_id(message_id)
    count = require_count(attempt, "attempt", minimum=1)
    at = utc_microseconds(now)
    label = None if error is None else require_text(error, "error", max_length=ERROR_MAX_LENGTH)
    return key, count, at, label


def check_list(status: object, limit: object) -> tuple[OutboxStatus | None, int]:
    """Check ``list``'s arguments.

    Raises:
        TypeError: ``limit`` is not an ``int``.
        ValueError: an unknown status or ``limit`` outside 1..1000.
    """
    if status is not None and status not in OUTBOX_STATUSES:
        raise ValueError(f"status must be one of {', '.join(OUTBOX_STATUSES)} or None")
    return status, _check_limit(limit)


def check_purge(before: object, statuses: object) -> tuple[int, tuple[OutboxStatus, ...]]:
    """Check ``purge``'s arguments; ``before`` in microseconds.

    Raises:
        TypeError: ``statuses`` is not a tuple or list of statuses.
        ValueError: naive ``before``, an empty tuple, an unknown status or ``pending``
            (a pending message is never purged: retry or let it die first).
    """
    at = utc_microseconds(before, "before")
    if isinstance(statuses, str) or not isinstance(statuses, tuple | list):
        raise TypeError("statuses must be a tuple of statuses")
    chosen = tuple(dict.fromkeys(statuses))
    if not chosen:
        raise ValueError("statuses must name at least one status")
    for status in chosen:
        if status not in ("sent", "dead", "void"):
            raise ValueError("statuses may hold only 'sent', 'dead' and 'void'")
    return at, chosen


def check_messages(messages: object, outbox: object) -> tuple[OutboxMessage, ...]:
    """The messages a unit of work is to enqueue, checked.

    Raises:
        TypeError: ``messages`` is not a sequence of :class:`OutboxMessage`.
        ValueError: there are messages but the unit of work has no outbox (``outbox`` is
            ``None``), or two of them share an id.
    """
    if isinstance(messages, str | bytes) or not isinstance(messages, tuple | list):
        raise TypeError("messages must be a sequence of OutboxMessage")
    for message in messages:
        if not isinstance(message, OutboxMessage):
            raise TypeError(f"messages must hold OutboxMessage, not {type(message).__name__}")
    if messages and outbox is None:
        raise ValueError("this unit of work has no outbox to enqueue messages in")
    if len({message.id for message in messages}) != len(messages):
        raise ValueError("messages must have distinct ids")
    return tuple(messages)


def check_messages_callable(messages: object, outbox: object) -> None:
    """Check ``create_with_history``'s ``messages``: ``None`` or a callable, and an outbox.

    Raises:
        TypeError: ``messages`` is neither ``None`` nor callable.
        ValueError: it is given but the unit of work has no outbox.
    """
    if messages is None:
        return
    if not callable(messages):
        raise TypeError("messages must be a callable of the account, or None")
    if outbox is None:
        raise ValueError("this unit of work has no outbox to enqueue messages in")


# -- transitions -----------------------------------------------------------------------


def initial_state(message: OutboxMessage, now: int) -> OutboxState:
    """The state a message is stored in: pending and due now, or void."""
    return OutboxState("pending" if message.deliver else "void", 0, now, now, None)


@dataclass(frozen=True, slots=True)
class Lease:
    """A claim's rule, stated once for :func:`claim_state` and the SQL ``UPDATE``.

    It applies to a ``pending`` entry due at or before ``due_by``, and writes one more
    attempt, ``next_at = until`` (the lease's end) and ``updated_at = at``.
    """

    #: The status a claimed entry has (and keeps).
    STATUS: ClassVar[OutboxStatus] = "pending"
    #: The attempts a claim counts.
    STEP: ClassVar[int] = 1

    due_by: int
    until: int
    at: int

    def applies(self, status: object, next_at: int) -> bool:
        """Whether an entry of ``status``, due at ``next_at``, is claimed."""
        return status == self.STATUS and next_at <= self.due_by

    def apply(self, state: OutboxState) -> OutboxState | None:
        """The state after the claim; ``None`` if the entry is not due."""
        if not self.applies(state.status, state.next_at):
            return None
        return replace(
            state, attempts=state.attempts + self.STEP, next_at=self.until, updated_at=self.at
        )


def lease_of(now: int, lease: int) -> Lease:
    """The rule of a claim at ``now`` for ``lease`` microseconds."""
    return Lease(now, now + lease, now)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settlement:
    """A settle's rule (complete, fail, retry), stated once for transitions and SQL.

    The pure transitions below apply it, and the SQL adapter's one ``UPDATE ... WHERE
    <guard>`` on PostgreSQL writes its values. The guard: the entry's status is ``status``
    and, unless ``attempt`` is ``None``, its attempts are ``attempt``. What it writes:
    ``to``, ``next_at``, ``updated_at``; the ``attempts`` unless that is ``None`` (kept);
    ``error`` if ``sets_error`` (else kept).
    """

    status: OutboxStatus
    attempt: int | None
    to: OutboxStatus
    next_at: int
    updated_at: int
    attempts: int | None = None
    sets_error: bool = False
    error: str | None = None

    def applies(self, status: object, attempts: object) -> bool:
        """Whether an entry of ``status`` at ``attempts`` attempts is settled by this."""
        return status == self.status and (self.attempt is None or attempts == self.attempt)

    def apply(self, state: OutboxState) -> OutboxState | None:
        """The state after the settle; ``None`` if the guard does not hold."""
        if not self.applies(state.status, state.attempts):
            return None
        return OutboxState(
            self.to,
            state.attempts if self.attempts is None else self.attempts,
            self.next_at,
            self.updated_at,
            self.error if self.sets_error else state.error,
        )


def complete_settlement(attempt: int, now: int) -> Settlement:
    """A delivery confirmed by attempt ``attempt``: pending at that attempt -> sent."""
    return Settlement(status="pending", attempt=attempt, to="sent", next_at=now, updated_at=now)


def fail_settlement(attempt: int, now: int, retry_at: int | None, error: str | None) -> Settlement:
    """Attempt ``attempt`` failed: due again at ``max(retry_at, now)``, or dead (``None``)."""
    if retry_at is None:
        to: OutboxStatus = "dead"
        next_at = now
    else:
        to, next_at = "pending", max(retry_at, now)
    return Settlement(
        status="pending",
        attempt=attempt,
        to=to,
        next_at=next_at,
        updated_at=now,
        sets_error=True,
        error=error,
    )


def retry_settlement(now: int) -> Settlement:
    """A dead entry made pending again, due ``now``, its attempts reset, its error kept."""
    return Settlement(
        status="dead", attempt=None, to="pending", next_at=now, updated_at=now, attempts=0
    )


def claim_state(state: OutboxState, now: int, lease: int) -> OutboxState | None:
    """The state after a claim at ``now``; ``None`` if the entry is not due."""
    return lease_of(now, lease).apply(state)


def complete_state(state: OutboxState, attempt: int, now: int) -> OutboxState | None:
    """The state after a delivery confirmed by attempt ``attempt``; ``None`` if stale."""
    return complete_settlement(attempt, now).apply(state)


def fail_state(
    state: OutboxState, attempt: int, now: int, retry_at: int | None, error: str | None
) -> OutboxState | None:
    """The state after attempt ``attempt`` failed: retry at ``retry_at``, or dead (``None``)."""
    return fail_settlement(attempt, now, retry_at, error).apply(state)


def retry_state(state: OutboxState, now: int) -> OutboxState | None:
    """A dead entry made pending again with its attempts reset; ``None`` if not dead."""
    return retry_settlement(now).apply(state)


def retry_at_microseconds(value: object) -> int | None:
    """``fail``'s ``retry_at`` in microseconds (``None`` stays ``None``: the entry dies)."""
    return None if value is None else to_microseconds(require_utc(value, "retry_at"))


# -- rows (the SQLite and SQLAlchemy adapters) -----------------------------------------

#: The outbox table's columns, in the order :func:`outbox_row` and :func:`decode_outbox` use.
OUTBOX_COLUMNS: Final = (
    "id",
    "channel",
    "kind",
    "recipient",
    "language",
    "payload",
    "account_id",
    "created_at",
    "status",
    "attempts",
    "next_attempt_at",
    "updated_at",
    "last_error",
)


def outbox_row(message: OutboxMessage, state: OutboxState) -> tuple[object, ...]:
    """The row of ``message`` in ``state``, in :data:`OUTBOX_COLUMNS` order."""
    return (
        message.id,
        message.channel,
        message.kind,
        message.to,
        message.language,
        message.payload,
        message.account_id,
        to_microseconds(message.created_at),
        state.status,
        state.attempts,
        state.next_at,
        state.updated_at,
        state.error,
    )


def _corrupt(reason: str) -> Exception:
    from .._errors import CorruptRecordError

    return CorruptRecordError(f"a stored outbox row is invalid: {reason}")


def _int(value: object, column: str) -> int:
    if type(value) is not int:
        raise _corrupt(f"{column} is not an integer")
    return value


def decode_outbox(row: tuple[object, ...] | None) -> tuple[OutboxMessage, OutboxState] | None:
    """The message and state of a stored row (``None`` for no row).

    Raises:
        CorruptRecordError: the row holds something no adapter writes.
    """
    if row is None:
        return None
    if len(row) != len(OUTBOX_COLUMNS):
        raise _corrupt("wrong number of columns")
    (key, channel, kind, to, language, payload, account_id, created) = row[:8]
    status, attempts, next_at, updated, error = row[8:]
    if status not in OUTBOX_STATUSES:
        raise _corrupt("status is unknown")
    if error is not None and not isinstance(error, str):
        raise _corrupt("last_error is not text")
    try:
        message = OutboxMessage(
            id=key,  # type: ignore[arg-type]
            channel=channel,  # type: ignore[arg-type]
            kind=kind,  # type: ignore[arg-type]
            to=to,  # type: ignore[arg-type]
            language=language,  # type: ignore[arg-type]
            payload=payload,  # type: ignore[arg-type]
            account_id=account_id,  # type: ignore[arg-type]
            created_at=from_microseconds(_int(created, "created_at")),
            deliver=status != "void",
        )
        state = OutboxState(
            status,
            _int(attempts, "attempts"),
            _int(next_at, "next_attempt_at"),
            _int(updated, "updated_at"),
            error,
        )
        from_microseconds(state.next_at)
        from_microseconds(state.updated_at)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _corrupt(type(exc).__name__) from None
    if state.attempts < 0:
        raise _corrupt("attempts is negative")
    return message, state
