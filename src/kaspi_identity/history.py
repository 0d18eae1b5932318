"""Password history: "not reused, and not similar to, the last N passwords".

:class:`PasswordHistory` sits on a :class:`~kaspi_identity.storage.PasswordHistoryStore`. It
records each password an account takes (its argon2 hash plus a keyed *fingerprint*) and
validates a new password against the policy and the last ``policy.history`` entries in one
call, so ``reused`` and ``similar_to_previous`` arrive in the same :class:`PolicyResult` as
every other violation.

**Reused** is decided by argon2: the new password is verified against each stored hash, in
parallel with bounded concurrency (:meth:`PasswordHasher.verify_any`).

**Similar** must work when no old plaintext is known (a reset), so each entry carries keyed
fingerprints of two *skeletons* of its password (see docs/security.md):

- the **shape**: casefolded, l33t characters inside words read as letters (``Summ3r`` →
  ``summer``, ``P@ss`` → ``pass``), every run of digits written as ``0`` and every run of
  other non-letters as ``!`` — ``Summer2023!``, ``SUMMER2024?`` and ``summer2023!!`` all have
  the shape ``summer0!``; used only when it holds at least three letters;
- the **letters**: the letters alone in order (``summer``); used only with four or more.

Two passwords are similar when either skeleton is equal. A fingerprint is
``HMAC-SHA256(server key, account id + skeleton)`` truncated to 128 bits, with a version byte
and the id of the key that made it: a database dump alone reveals nothing about the
skeletons, and the key never reaches the database. When the current password is known (a
change of password) it is also compared directly: equal skeletons, or an edit distance of at
most two.

Every text is bounded before any work is done on it: a password longer than
:data:`~kaspi_identity.hashing.MAX_PASSWORD_LENGTH` (the most any policy accepts) is refused with
:class:`~kaspi_identity.InvalidPasswordError` (``validate`` reports a new one as ``too_long``),
an account id longer than :data:`MAX_ACCOUNT_ID_LENGTH` with ``ValueError``, so each call costs
milliseconds whatever it is given.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final

from kaspi_identity._errors import CorruptRecordError, InvalidHashError, InvalidPasswordError
from kaspi_identity._keys import check_secret_keys
from kaspi_identity._normalize import normalize_password
from kaspi_identity.hashing import _MAX_HASH_CHARS, MAX_PASSWORD_LENGTH, PasswordHasher
from kaspi_identity.policy import PasswordPolicy, PolicyResult, UserInfo, Violation
from kaspi_identity.storage import HistoryEntry, PasswordHistoryStore

__all__ = ["MAX_ACCOUNT_ID_LENGTH", "PasswordHistory", "is_similar"]

#: The longest account id (in code points) the history accepts: far above a UUID, an integer
#: key or an e-mail address used as the id.
MAX_ACCOUNT_ID_LENGTH: Final = 1024

_VERSION: Final = 1
_KEY_ID_LEN: Final = 4
_TAG_LEN: Final = 16
_HEADER_LEN: Final = 1 + _KEY_ID_LEN + 1
_MIN_SHAPE_LETTERS: Final = 3
_MIN_LETTERS: Final = 4
_MAX_DISTANCE: Final = 2
_MAX_TAGS: Final = 2
# Characters read as the letter they stand for when they sit inside a word.
_L33T: Final[dict[str, str]] = {
    "0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
    "@": "a", "$": "s", "!": "i", "|": "i", "+": "t",
}  # fmt: skip
# ...and these also at the edge of a word ("$ummer", "p@ss"), where a digit is more likely a
# number than a letter.
_L33T_EDGE: Final = frozenset("@$")
_NFKC_MAX_SHRINK: Final = 4


def _bounded(password: object, name: str) -> str:
    """``password`` if it is a ``str`` of at most MAX_PASSWORD_LENGTH code points after NFKC.

    Input longer than four times the limit is refused before it is normalised (NFKC may
    expand a code point into eighteen, and cannot bring such input under the limit).

    Raises:
        TypeError: ``password`` is not a ``str``.
        InvalidPasswordError: it is longer than the limit (the message names ``name`` only).
    """
    if not isinstance(password, str):
        raise TypeError(f"{name} must be str, not {type(password).__name__}")
    if (
        len(password) > _NFKC_MAX_SHRINK * MAX_PASSWORD_LENGTH
        or len(normalize_password(password)) > MAX_PASSWORD_LENGTH
    ):
        raise InvalidPasswordError(f"{name} is longer than {MAX_PASSWORD_LENGTH} characters")
    return password


def _check_account_id(account_id: object) -> None:
    if not isinstance(account_id, str):
        raise TypeError("account_id must be str")
    if len(account_id) > MAX_ACCOUNT_ID_LENGTH:
        raise ValueError(f"account_id is longer than {MAX_ACCOUNT_ID_LENGTH} characters")


def _skeletons(password: str) -> list[tuple[bytes, str]]:
    """The (kind, skeleton) pairs of a password; empty when it has too few letters."""
    text = normalize_password(password).casefold()
    chars = list(text)
    # A digit or other l33t character is read only between two letters of the password as
    # typed. "@" and "$" are also read at the edge of a word, judging neighbours as read so
    # far, so a run of them touching a word is read through ("p@$$w0rd" -> "password").
    for i, c in enumerate(text):
        inside = 0 < i < len(text) - 1 and text[i - 1].isalpha() and text[i + 1].isalpha()
        if inside and c in _L33T and c not in _L33T_EDGE:
            chars[i] = _L33T[c]
    # Reading an edge character never changes a character that is not one, so a maximal run
    # of them is read through exactly when the character just before or just after it is a
    # letter: one pass over the runs, linear in the length (reading one character per pass
    # until nothing changes took seconds on "@" * 4000 + "a").
    i, n = 0, len(chars)
    while i < n:
        if chars[i] not in _L33T_EDGE:
            i += 1
            continue
        end = i
        while end < n and chars[end] in _L33T_EDGE:
            end += 1
        if (i > 0 and chars[i - 1].isalpha()) or (end < n and chars[end].isalpha()):
            for k in range(i, end):
                chars[k] = _L33T[chars[k]]
        i = end
    shape: list[str] = []
    for c in chars:
        mark = c if c.isalpha() else ("0" if c.isdigit() else "!")
        if mark in "0!" and shape and shape[-1] == mark:
            continue
        shape.append(mark)
    letters = "".join(c for c in chars if c.isalpha())
    out: list[tuple[bytes, str]] = []
    if len(letters) >= _MIN_SHAPE_LETTERS:
        out.append((b"shape", "".join(shape)))
    if len(letters) >= _MIN_LETTERS:
        out.append((b"letters", letters))
    return out


def _within_distance(a: str, b: str, limit: int) -> bool:
    """Whether the Levenshtein distance of ``a`` and ``b`` is at most ``limit``.

    The common prefix and suffix never change the distance, so they are dropped; then the
    first characters differ, and the first edit of any alignment substitutes, deletes or
    inserts there: three branches, each with one edit fewer to spend. That is at most
    ``3 ** limit`` string comparisons (done in C), whatever the lengths — linear in the length
    for the limit of two used here.
    """
    if abs(len(a) - len(b)) > limit:
        return False
    a, b = _strip_common(a, b)
    if not a or not b:
        return max(len(a), len(b)) <= limit
    if limit == 0:
        return False
    return (
        _within_distance(a[1:], b[1:], limit - 1)
        or _within_distance(a[1:], b, limit - 1)
        or _within_distance(a, b[1:], limit - 1)
    )


def _strip_common(a: str, b: str) -> tuple[str, str]:
    """``a`` and ``b`` without their longest common prefix and suffix (found by bisection)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    a, b = a[low:], b[low:]
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[len(a) - middle :] == b[len(b) - middle :]:
            low = middle
        else:
            high = middle - 1
    return a[: len(a) - low], b[: len(b) - low]


def is_similar(new: str, old: str) -> bool:
    """Whether ``new`` is similar to ``old`` when both plaintexts are known.

    Similar means: an equal skeleton (see the module docstring), or — for passwords of six or
    more characters — a Levenshtein distance of at most two between the casefolded NFKC forms.
    Equal passwords are similar.

    Raises:
        TypeError: ``new`` or ``old`` is not a ``str``.
        InvalidPasswordError: either is longer than
            :data:`~kaspi_identity.hashing.MAX_PASSWORD_LENGTH` (no password that long is ever
            accepted or stored); it is refused before it is normalised.
    """
    new, old = _bounded(new, "new"), _bounded(old, "old")
    a, b = normalize_password(new).casefold(), normalize_password(old).casefold()
    if hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass")):
        return True
    if dict(_skeletons(a)).items() & dict(_skeletons(b)).items():
        return True
    return min(len(a), len(b)) >= 6 and _within_distance(a, b, _MAX_DISTANCE)


class PasswordHistory:
    """Records past passwords and checks new ones against them.

    Args:
        store: where the entries live.
        secret_keys: server-side keys for the similarity fingerprints, newest first; each at
            least 32 bytes. The first makes new fingerprints; all are tried when reading, so a
            key can be rotated. Keep them out of the database (environment, secret manager).
            An entry made with a key no longer listed can still be checked for reuse, not for
            similarity.
        hasher: verifies the new password against the stored argon2 hashes.

    Raises:
        TypeError: a key is not ``bytes``.
        ValueError: no keys, or a key shorter than 32 bytes.
    """

    def __init__(
        self,
        store: PasswordHistoryStore,
        *,
        secret_keys: Sequence[bytes],
        hasher: PasswordHasher | None = None,
    ) -> None:
        keys = check_secret_keys(secret_keys, text=False)
        self._store = store
        self._keys = {self._key_id(k): k for k in reversed(keys)}
        self._signing_key = keys[0]
        self._hasher = hasher if hasher is not None else PasswordHasher()

    def __repr__(self) -> str:
        return f"<PasswordHistory keys={len(self._keys)} hasher={self._hasher!r}>"

    @staticmethod
    def _key_id(key: bytes) -> bytes:
        return hmac.new(key, b"kaspi-identity/history/key-id", hashlib.sha256).digest()[
            :_KEY_ID_LEN
        ]

    @staticmethod
    def _tag(key: bytes, account_id: str, kind: bytes, skeleton: str) -> bytes:
        # The account id is in the message, so equal skeletons of two accounts give unrelated
        # tags: a dump does not even show which accounts share a password pattern.
        message = b"kaspi-identity/history/v1\x00" + account_id.encode("utf-8", "surrogatepass")
        message += b"\x00" + kind + b"\x00" + skeleton.encode("utf-8", "surrogatepass")
        return hmac.new(key, message, hashlib.sha256).digest()[:_TAG_LEN]

    def fingerprint(self, password: str, *, account_id: str) -> bytes:
        """The keyed fingerprint of ``password`` for ``account_id`` (opaque bytes, ≤ 38).

        Raises:
            TypeError: ``password`` or ``account_id`` is not a ``str``.
            InvalidPasswordError: ``password`` is longer than
                :data:`~kaspi_identity.hashing.MAX_PASSWORD_LENGTH`.
            ValueError: ``account_id`` is longer than :data:`MAX_ACCOUNT_ID_LENGTH`.
        """
        _check_account_id(account_id)
        password = _bounded(password, "password")
        key = self._signing_key
        tags = [
            self._tag(key, account_id, kind, skeleton) for kind, skeleton in _skeletons(password)
        ]
        header = bytes([_VERSION]) + self._key_id(key) + bytes([len(tags)])
        return header + b"".join(tags)

    def entry(
        self, password: str, password_hash: str, *, account_id: str, now: datetime
    ) -> HistoryEntry:
        """A history entry for a password ``account_id`` has just taken.

        Raises:
            TypeError: an argument is not a ``str``.
            InvalidPasswordError: ``password`` is longer than
                :data:`~kaspi_identity.hashing.MAX_PASSWORD_LENGTH`.
            InvalidHashError: ``password_hash`` is longer than any hash this library makes.
            ValueError: ``account_id`` is longer than :data:`MAX_ACCOUNT_ID_LENGTH`.
        """
        if not isinstance(password_hash, str):
            raise TypeError("password_hash must be str")
        if len(password_hash) > _MAX_HASH_CHARS:
            raise InvalidHashError(f"password_hash is longer than {_MAX_HASH_CHARS} characters")
        return HistoryEntry(
            password_hash=password_hash,
            fingerprint=self.fingerprint(password, account_id=account_id),
            created_at=now,
        )

    def record(
        self, account_id: str, password: str, password_hash: str, *, keep: int, now: datetime
    ) -> None:
        """Append the password an account has just taken, keeping the newest ``keep`` entries.

        Raises:
            TypeError, InvalidPasswordError, InvalidHashError, ValueError: as :meth:`entry`
                (nothing is written).
        """
        entry = self.entry(password, password_hash, account_id=account_id, now=now)
        self._store.append(account_id, entry, keep=keep)

    def _stored_tags(self, fingerprint: bytes) -> tuple[bytes | None, list[bytes]]:
        """The key and tags of a stored fingerprint; key ``None`` when it was retired."""
        if not fingerprint:
            return None, []
        if not isinstance(fingerprint, bytes) or len(fingerprint) < _HEADER_LEN:
            raise CorruptRecordError("history fingerprint is truncated")
        version, key_id, count = fingerprint[0], fingerprint[1 : _HEADER_LEN - 1], fingerprint[5]
        if version != _VERSION:
            raise CorruptRecordError(f"history fingerprint has unknown version {version}")
        body = fingerprint[_HEADER_LEN:]
        if count > _MAX_TAGS or len(body) != count * _TAG_LEN:
            raise CorruptRecordError("history fingerprint has the wrong length")
        tags = [body[i : i + _TAG_LEN] for i in range(0, len(body), _TAG_LEN)]
        return self._keys.get(key_id), tags

    def _similar_to_entries(
        self, account_id: str, password: str, entries: Iterable[HistoryEntry]
    ) -> bool:
        skeletons = _skeletons(password)
        tags_by_key: dict[bytes, list[bytes]] = {}
        found = False
        for entry in entries:
            key, stored = self._stored_tags(entry.fingerprint)
            if key is None or not skeletons:
                continue
            if key not in tags_by_key:  # one HMAC per skeleton and key, not per entry
                tags_by_key[key] = [self._tag(key, account_id, k, s) for k, s in skeletons]
            # Every comparison runs, so the time does not tell which entry matched.
            for tag in tags_by_key[key]:
                for other in stored:
                    found |= hmac.compare_digest(tag, other)
        return found

    def validate(
        self,
        policy: PasswordPolicy,
        account_id: str,
        password: str,
        *,
        user: UserInfo | None = None,
        confirmation: str | None = None,
        current_password: str | None = None,
    ) -> PolicyResult:
        """Check a new password for an account: the policy's rules plus its history.

        Runs ``policy.check`` and, when ``policy.history`` is set, compares the password with
        the account's last ``policy.history`` entries: ``reused`` when it verifies against one
        of their hashes; with ``policy.history_similar``, ``similar_to_previous`` when it is
        similar to one of them or to ``current_password`` (pass it in a change of password,
        where the user has just typed it). Everything arrives in one result, in rule order.

        An over-long ``password`` is reported as ``too_long`` (its policy's limit, or the hard
        cap of 4096 characters) without touching the store.

        Raises:
            TypeError: a password is not a ``str``.
            InvalidPasswordError: ``current_password`` is longer than
                :data:`~kaspi_identity.hashing.MAX_PASSWORD_LENGTH`: no account can have it.
            ValueError: ``account_id`` is longer than :data:`MAX_ACCOUNT_ID_LENGTH`.
            InvalidHashError: a stored hash is malformed.
            CorruptRecordError: a stored fingerprint is malformed.
        """
        if current_password is not None:
            current_password = _bounded(current_password, "current_password")
        if isinstance(account_id, str) and len(account_id) > MAX_ACCOUNT_ID_LENGTH:
            raise ValueError(f"account_id is longer than {MAX_ACCOUNT_ID_LENGTH} characters")
        result = policy.check(password, user=user, confirmation=confirmation)
        depth = policy.history
        if not depth or "too_long" in result.codes:
            return result
        entries = self._store.recent(account_id, depth)
        found: list[Violation] = []
        if self._hasher.verify_any(password, [e.password_hash for e in entries]) is not None:
            found.append(Violation("reused", {"history": depth}))
        elif policy.history_similar and (
            self._similar_to_entries(account_id, password, entries)
            or (current_password is not None and is_similar(password, current_password))
        ):
            found.append(Violation("similar_to_previous", {"history": depth}))
        return result.merged(PolicyResult(tuple(found)))
