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
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final

from kaspi_identity._errors import CorruptRecordError
from kaspi_identity._normalize import normalize_password
from kaspi_identity.hashing import PasswordHasher
from kaspi_identity.policy import PasswordPolicy, PolicyResult, UserInfo, Violation
from kaspi_identity.storage import HistoryEntry, PasswordHistoryStore

__all__ = ["PasswordHistory", "is_similar"]

_VERSION: Final = 1
_KEY_ID_LEN: Final = 4
_TAG_LEN: Final = 16
_HEADER_LEN: Final = 1 + _KEY_ID_LEN + 1
_MIN_KEY_BYTES: Final = 32
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
    changed = True
    while changed:  # each pass reads at least one more character or stops
        changed = False
        for i, c in enumerate(chars):
            if c in _L33T_EDGE:
                before = i > 0 and chars[i - 1].isalpha()
                after = i + 1 < len(chars) and chars[i + 1].isalpha()
                if before or after:
                    chars[i] = _L33T[c]
                    changed = True
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

    Only the diagonal band of ``2 * limit + 1`` cells per row is computed, so the cost is
    O(len * limit) time and O(limit) memory, whatever the lengths (a full row per step would
    make two long inputs quadratic).
    """
    if abs(len(a) - len(b)) > limit:
        return False
    if len(a) > len(b):
        a, b = b, a
    big = limit + 1
    previous = {j: j for j in range(min(len(b), limit) + 1)}
    for i in range(1, len(a) + 1):
        current: dict[int, int] = {}
        for j in range(max(0, i - limit), min(len(b), i + limit) + 1):
            if j == 0:
                current[0] = i
                continue
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(
                previous.get(j, big) + 1,
                current.get(j - 1, big) + 1,
                previous.get(j - 1, big) + cost,
                big,
            )
        if min(current.values()) > limit:
            return False
        previous = current
    return previous.get(len(b), big) <= limit


def is_similar(new: str, old: str) -> bool:
    """Whether ``new`` is similar to ``old`` when both plaintexts are known.

    Similar means: an equal skeleton (see the module docstring), or — for passwords of six or
    more characters — a Levenshtein distance of at most two between the casefolded NFKC forms.
    Equal passwords are similar.
    """
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
        if isinstance(secret_keys, bytes | str) or not secret_keys:
            raise ValueError("secret_keys must be a non-empty sequence of keys, newest first")
        for key in secret_keys:
            if not isinstance(key, bytes):
                raise TypeError("each secret key must be bytes")
            if len(key) < _MIN_KEY_BYTES:
                raise ValueError(f"each secret key must be at least {_MIN_KEY_BYTES} bytes")
        self._store = store
        self._keys = {self._key_id(k): k for k in reversed(secret_keys)}
        self._signing_key = secret_keys[0]
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
        """
        if not isinstance(account_id, str):
            raise TypeError("account_id must be str")
        key = self._signing_key
        tags = [
            self._tag(key, account_id, kind, skeleton) for kind, skeleton in _skeletons(password)
        ]
        header = bytes([_VERSION]) + self._key_id(key) + bytes([len(tags)])
        return header + b"".join(tags)

    def entry(
        self, password: str, password_hash: str, *, account_id: str, now: datetime
    ) -> HistoryEntry:
        """A history entry for a password ``account_id`` has just taken."""
        return HistoryEntry(
            password_hash=password_hash,
            fingerprint=self.fingerprint(password, account_id=account_id),
            created_at=now,
        )

    def record(
        self, account_id: str, password: str, password_hash: str, *, keep: int, now: datetime
    ) -> None:
        """Append the password an account has just taken, keeping the newest ``keep`` entries."""
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

        Raises:
            TypeError: a password is not a ``str``.
            InvalidHashError: a stored hash is malformed.
            CorruptRecordError: a stored fingerprint is malformed.
        """
        if current_password is not None and not isinstance(current_password, str):
            raise TypeError("current_password must be str")
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
