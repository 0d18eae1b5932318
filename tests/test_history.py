"""Password history: "not reused, not similar to the last N passwords" (issue 3).

Every test hashes with the TESTS_ONLY profile; the cost of the real profile is measured in
benchmarks/bench_history.py, never asserted here.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
import string
import threading
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaspi_identity import (
    VIOLATION_CODES,
    CorruptRecordError,
    InvalidHashError,
    InvalidPasswordError,
)
from kaspi_identity.hashing import TESTS_ONLY, PasswordHasher
from kaspi_identity.history import (
    MAX_ACCOUNT_ID_LENGTH,
    PasswordHistory,
    _skeletons,
    _within_distance,
    is_similar,
)
from kaspi_identity.policy import PasswordPolicy, PolicyResult, Violation
from kaspi_identity.storage import HistoryEntry, PasswordHistoryStore
from kaspi_identity.storage.memory import memory_storage
from kaspi_identity.storage.sqlite import sqlite_storage

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
KEY_A = hashlib.sha256(b"kaspi-identity tests: history key A").digest()
KEY_B = hashlib.sha256(b"kaspi-identity tests: history key B").digest()
HASHER = PasswordHasher(TESTS_ONLY)
ACCOUNT = "account-1"
OLD = "Summer2023!"
SIMILAR_TO_OLD = ("Summer2024!", "summer2023!", "Summer2023!!", "SUMMER2023?", "Summ3r2023!")
NOT_SIMILAR_TO_OLD = ("Winter2024!", "Tr0ub4dor&3x", "correct-horse-battery")
HISTORY_CODES = frozenset({"reused", "similar_to_previous"})
SIMILAR = PasswordPolicy(history=6, history_similar=True)
EXACT = PasswordPolicy(history=6)
# Seven passwords no two of which are similar (different words, shapes and letters).
SEVEN = (
    "Alpha#71kite",
    "bravo-Quartz-88",
    "Charlie!mango5",
    "delta9Violet$x",
    "Echo_plum_2718",
    "foxtrot*Zinc*4",
    "Golf+Nectar+63",
)


@dataclass
class Backend:
    """A history store under test, and the SQLite file behind it (None for memory)."""

    name: str
    store: PasswordHistoryStore
    path: Path | None


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each test that asks for a backend runs once on the memory and once on the SQLite store."""
    path = None if request.param == "memory" else tmp_path / "identity.sqlite3"
    storage = memory_storage() if path is None else sqlite_storage(path)
    try:
        yield Backend(request.param, storage.history, path)
    finally:
        storage.close()


def make_history(store: PasswordHistoryStore, keys: Sequence[bytes] = (KEY_A,)) -> PasswordHistory:
    """A PasswordHistory over ``store`` with the fast test hasher."""
    return PasswordHistory(store, secret_keys=keys, hasher=HASHER)


def record(
    history: PasswordHistory,
    password: str,
    *,
    account: str = ACCOUNT,
    keep: int = 6,
    at: datetime = T0,
) -> None:
    """Record ``password`` as the account's new password, as the reset flow does."""
    history.record(account, password, HASHER.hash(password), keep=keep, now=at)


def history_codes(result: PolicyResult) -> set[str]:
    """The history violations (reused, similar_to_previous) in ``result``."""
    return set(result.codes) & HISTORY_CODES


class UntouchableStore:
    """A history store that fails the test if it is called at all."""

    def append(self, account_id: str, entry: HistoryEntry, *, keep: int) -> None:
        """Fail: nothing may be appended."""
        raise AssertionError("the history store must not be called")

    def recent(self, account_id: str, limit: int) -> list[HistoryEntry]:
        """Fail: nothing may be read."""
        raise AssertionError("the history store must not be called")


class CountingStore:
    """A memory history store that counts its calls."""

    def __init__(self) -> None:
        self.inner = memory_storage().history
        self.recent_calls = 0

    def append(self, account_id: str, entry: HistoryEntry, *, keep: int) -> None:
        """Append to the inner store."""
        self.inner.append(account_id, entry, keep=keep)

    def recent(self, account_id: str, limit: int) -> list[HistoryEntry]:
        """Read from the inner store, counting the call."""
        self.recent_calls += 1
        return self.inner.recent(account_id, limit)


# --------------------------------------------------------------------------- the issue


class TestIssueExamples:
    """The issue's examples, in the reset flow: only the old hash and fingerprint are known."""

    @pytest.mark.parametrize("new", SIMILAR_TO_OLD)
    def test_similar_passwords_are_caught(self, backend: Backend, new: str) -> None:
        """Each variant of Summer2023! the issue lists is reported as similar_to_previous."""
        history = make_history(backend.store)
        record(history, OLD)
        result = history.validate(SIMILAR, ACCOUNT, new)
        assert result.codes == ("similar_to_previous",)
        assert result.violations == (Violation("similar_to_previous", {"history": 6}),)

    @pytest.mark.parametrize("new", NOT_SIMILAR_TO_OLD)
    def test_different_passwords_pass(self, backend: Backend, new: str) -> None:
        """The passwords the issue says must pass get no history violation (and no other)."""
        history = make_history(backend.store)
        record(history, OLD)
        result = history.validate(SIMILAR, ACCOUNT, new)
        assert history_codes(result) == set()
        assert result.ok

    def test_exact_reuse_is_reused_and_not_also_similar(self, backend: Backend) -> None:
        """Typing the old password again is `reused` only, not `similar_to_previous` as well."""
        history = make_history(backend.store)
        record(history, OLD)
        assert history.validate(SIMILAR, ACCOUNT, OLD).codes == ("reused",)
        assert history.validate(EXACT, ACCOUNT, OLD).codes == ("reused",)

    def test_exact_only_policy_ignores_similarity(self, backend: Backend) -> None:
        """Without history_similar a similar (but different) password passes."""
        history = make_history(backend.store)
        record(history, OLD)
        for new in SIMILAR_TO_OLD:
            assert history.validate(EXACT, ACCOUNT, new).ok

    def test_other_accounts_are_not_compared(self, backend: Backend) -> None:
        """One account's history never blocks another account's password."""
        history = make_history(backend.store)
        record(history, OLD, account="someone-else")
        assert history.validate(SIMILAR, ACCOUNT, OLD).ok
        assert history.validate(SIMILAR, ACCOUNT, "Summer2024!").ok

    def test_kz_procurement_preset(self, backend: Backend) -> None:
        """The e-procurement preset (similar to the last 6) catches the issue's examples."""
        policy = PasswordPolicy.preset("kz-procurement")
        history = make_history(backend.store)
        record(history, OLD)
        assert history.validate(policy, ACCOUNT, "Summer2024!").codes == ("similar_to_previous",)
        assert history.validate(policy, ACCOUNT, OLD).codes == ("reused",)
        assert history.validate(policy, ACCOUNT, "Winter2024!").ok


class TestDocumentedExamples:
    """The second example table of docs/security.md behaves as documented."""

    @pytest.mark.parametrize(
        ("new", "reset", "change"),
        [
            ("2023!Summer", True, True),
            ("$ummer2023", True, True),
            ("Sunmer2023!", False, True),
            ("Summer2023!x", False, True),
            ("Autumn2023!", False, False),
            ("Лето2023!", False, False),
            ("Su2023!", False, False),
            ("P@ssw0rd", False, False),
        ],
    )
    def test_reset_and_change_flow(self, new: str, reset: bool, change: bool) -> None:
        """Reset flow: fingerprints only; change flow: plus the direct comparison."""
        history = make_history(memory_storage().history)
        record(history, OLD)
        policy = PasswordPolicy(history=6, history_similar=True, min_length=6)
        reset_codes = history_codes(history.validate(policy, ACCOUNT, new))
        change_codes = history_codes(history.validate(policy, ACCOUNT, new, current_password=OLD))
        assert reset_codes == ({"similar_to_previous"} if reset else set())
        assert change_codes == ({"similar_to_previous"} if change else set())

    def test_leet_run_is_read_through_from_a_letter(self) -> None:
        """P@$$w0rd reads as password: a run of @ and $ touching a word is read through."""
        assert is_similar("P@ssw0rd", "password")
        assert is_similar("P@$$w0rd", "Password")
        assert not is_similar("h00k1234", "hook")  # digit runs inside words stay digits


# --------------------------------------------------------------------------- depth


class TestDepth:
    """Only the last ``policy.history`` passwords count, and the store keeps no more."""

    def test_seventh_oldest_is_no_longer_checked(self, backend: Backend) -> None:
        """After seven passwords with history=6, the first may be used again; the rest not."""
        history = make_history(backend.store)
        for i, password in enumerate(SEVEN):
            record(history, password, at=T0 + timedelta(days=i))
        assert history.validate(SIMILAR, ACCOUNT, SEVEN[0]).ok
        for password in SEVEN[1:]:
            assert history.validate(SIMILAR, ACCOUNT, password).codes == ("reused",)

    def test_seventh_oldest_is_no_longer_similar(self, backend: Backend) -> None:
        """A variant of the dropped password is not similar to anything left."""
        history = make_history(backend.store)
        for password in (OLD, *SEVEN[1:6]):
            record(history, password)
        assert history.validate(SIMILAR, ACCOUNT, "Summer2024!").codes == ("similar_to_previous",)
        record(history, SEVEN[6])
        assert history.validate(SIMILAR, ACCOUNT, "Summer2024!").ok

    def test_history_never_holds_more_than_keep(self, backend: Backend) -> None:
        """Ten recordings with keep=6 leave exactly the newest six, newest first."""
        history = make_history(backend.store)
        passwords = [f"Distinct{i}Word{'xyzqwertyu'[i]}" for i in range(10)]
        for password in passwords:
            record(history, password)
        entries = backend.store.recent(ACCOUNT, 64)
        assert len(entries) == 6
        newest_first = list(reversed(passwords))[:6]
        for entry, password in zip(entries, newest_first, strict=True):
            HASHER.verify(entry.password_hash, password)

    def test_policy_depth_smaller_than_kept(self, backend: Backend) -> None:
        """With six kept but history=2, only the two newest are compared."""
        history = make_history(backend.store)
        for password in SEVEN[:6]:
            record(history, password)
        policy = PasswordPolicy(history=2, history_similar=True)
        assert history.validate(policy, ACCOUNT, SEVEN[5]).codes == ("reused",)
        assert history.validate(policy, ACCOUNT, SEVEN[4]).codes == ("reused",)
        assert history.validate(policy, ACCOUNT, SEVEN[3]).ok

    def test_no_history_rule_means_no_lookup(self) -> None:
        """With history=None validate is the policy check alone: the store is never called."""
        history = make_history(UntouchableStore())
        policy = PasswordPolicy()
        assert history.validate(policy, ACCOUNT, OLD) == policy.check(OLD)
        assert history.validate(policy, ACCOUNT, "short").codes == ("too_short",)

    def test_empty_history_passes(self, backend: Backend) -> None:
        """An account with no recorded password has nothing to reuse or resemble."""
        history = make_history(backend.store)
        assert history.validate(SIMILAR, ACCOUNT, OLD).ok

    def test_reads_the_store_once(self) -> None:
        """One validate is one read of the store, whatever the number of entries."""
        store = CountingStore()
        history = make_history(store)
        for password in SEVEN:
            record(history, password)
        history.validate(SIMILAR, ACCOUNT, "Nothing-Like-Them-42")
        assert store.recent_calls == 1


# --------------------------------------------------------------------------- one result


class TestValidateResult:
    """Policy and history violations arrive in one PolicyResult, ordered and localised."""

    def test_policy_and_history_violations_together_in_rule_order(self, backend: Backend) -> None:
        """A policy violation, a history one and a mismatch, in VIOLATION_CODES order."""
        policy = PasswordPolicy(require=["upper", "digit"], history=6, history_similar=True)
        history = make_history(backend.store)
        record(history, OLD)
        result = history.validate(policy, ACCOUNT, "summer2024!", confirmation="summer2024?")
        assert result.codes == ("missing_upper", "similar_to_previous", "confirmation_mismatch")
        order = [VIOLATION_CODES.index(code) for code in result.codes]
        assert order == sorted(order)

    def test_reused_with_policy_violations(self, backend: Backend) -> None:
        """A reused password that now also breaks a stricter policy reports both."""
        history = make_history(backend.store)
        record(history, "password-long-enough")
        policy = PasswordPolicy(require=["upper"], history=6, history_similar=True)
        result = history.validate(policy, ACCOUNT, "password-long-enough")
        assert result.codes == ("missing_upper", "reused")

    def test_hints_survive(self, backend: Backend) -> None:
        """The policy's hints (e.g. the keyboard-layout one) are kept by the merge."""
        policy = PasswordPolicy(require=["upper", "lower"], history=6, history_similar=True)
        history = make_history(backend.store)
        expected = policy.check("Пароль2024!")
        result = history.validate(policy, ACCOUNT, "Пароль2024!")
        assert result.hints == expected.hints

    @pytest.mark.parametrize("depth", [1, 6])
    @pytest.mark.parametrize("code", ["reused", "similar_to_previous"])
    def test_messages_in_every_language(self, backend: Backend, depth: int, code: str) -> None:
        """Both history messages render in en/ru/kk with the plural form for 1 and for 6."""
        policy = PasswordPolicy(history=depth, history_similar=True)
        history = make_history(backend.store)
        record(history, OLD)
        new = OLD if code == "reused" else "Summer2024!"
        result = history.validate(policy, ACCOUNT, new)
        assert result.violations == (Violation(code, {"history": depth}),)
        en, ru, kk = (result.messages(lang)[0] for lang in ("en", "ru", "kk"))
        assert len({en, ru, kk}) == 3
        if depth == 1:
            assert en.endswith("1 password.")
            assert "из 1 последнего пароля." in ru
        else:
            assert en.endswith("6 passwords.")
            assert "из 6 последних паролей." in ru
        assert f"{depth} құпиясөз" in kk
        for text in (en, ru, kk):
            assert OLD not in text
            assert new not in text


# --------------------------------------------------------------------------- current password


class TestCurrentPassword:
    """In a change of password the current plaintext is known and compared directly."""

    def test_edit_distance_two_caught_only_directly(self, backend: Backend) -> None:
        """Two changed letters slip past the fingerprints but not the direct comparison."""
        history = make_history(backend.store)
        current, new = "Kx9#mPq2Lz", "Kx9#mPr2Lw"
        record(history, current)
        assert history.validate(SIMILAR, ACCOUNT, new).ok
        result = history.validate(SIMILAR, ACCOUNT, new, current_password=current)
        assert result.codes == ("similar_to_previous",)

    def test_edit_distance_one(self, backend: Backend) -> None:
        """One changed letter (Kx9#mPq2Lz → Kx9#mPq2Lw) is caught directly too."""
        history = make_history(backend.store)
        result = history.validate(SIMILAR, ACCOUNT, "Kx9#mPq2Lw", current_password="Kx9#mPq2Lz")
        assert result.codes == ("similar_to_previous",)

    def test_edit_distance_three_passes(self, backend: Backend) -> None:
        """Three changed letters are not similar."""
        history = make_history(backend.store)
        result = history.validate(SIMILAR, ACCOUNT, "Kx9#mPr2Mw", current_password="Kx9#mPq2Lz")
        assert result.ok

    def test_current_password_ignored_without_history_similar(self, backend: Backend) -> None:
        """With exact checking only, a near-copy of the current password is allowed."""
        history = make_history(backend.store)
        result = history.validate(EXACT, ACCOUNT, "Kx9#mPq2Lw", current_password="Kx9#mPq2Lz")
        assert result.ok

    def test_current_password_must_be_str(self, backend: Backend) -> None:
        """A current_password that is bytes is a TypeError under any policy, not a silent pass."""
        history = make_history(backend.store)
        for policy in (SIMILAR, EXACT, PasswordPolicy()):
            with pytest.raises(TypeError):
                history.validate(policy, ACCOUNT, "Winter2024!", current_password=b"Kx9#mPq2Lz")  # type: ignore[arg-type]

    def test_long_current_password_is_cheap(self) -> None:
        """The longest current and new passwords (no max_length: the hard cap) are compared.

        The edit distance is linear in the length; 4096 characters would take seconds with a
        full dynamic-programming row per character.
        """
        policy = PasswordPolicy(max_length=None, history=6, history_similar=True)
        history = make_history(memory_storage().history)
        current = "ab" * 2048
        result = history.validate(policy, ACCOUNT, current[:-2] + "x!", current_password=current)
        assert result.codes == ("similar_to_previous",)

    def test_huge_current_password_is_refused(self) -> None:
        """A current password past the hard cap cannot be any account's: InvalidPasswordError,
        before the store is read."""
        policy = PasswordPolicy(max_length=None, history=6, history_similar=True)
        history = make_history(UntouchableStore())
        for current in ("ab" * 100_000, "\ufdfa" * 1_000_000):
            with pytest.raises(InvalidPasswordError):
                history.validate(policy, ACCOUNT, "Winter2024!", current_password=current)


class TestIsSimilar:
    """is_similar: the comparison used when both plaintexts are known."""

    @pytest.mark.parametrize("new", SIMILAR_TO_OLD)
    def test_issue_examples_similar(self, new: str) -> None:
        """The issue's similar examples are similar by plaintext too."""
        assert is_similar(new, OLD)

    @pytest.mark.parametrize("new", NOT_SIMILAR_TO_OLD)
    def test_issue_examples_not_similar(self, new: str) -> None:
        """The issue's passing examples are not similar to Summer2023!."""
        assert not is_similar(new, OLD)

    @pytest.mark.parametrize(
        ("a", "b", "similar"),
        [
            ("Kx9#mPq2Lz", "Kx9#mPq2Lz", True),  # equal
            ("Kx9#mPq2Lz", "kX9#MpQ2lZ", True),  # case only
            ("Kx9#mPq2Lz", "Kx9#mPq2Lw", True),  # distance 1
            ("Kx9#mPq2Lz", "Kx9#mPr2Lw", True),  # distance 2
            ("Kx9#mPq2Lz", "Kx9#mPr2Mw", False),  # distance 3
            ("Kx9#mPq2Lz", "Kx9#mPq2Lzab", True),  # two appended
            ("Kx9#mPq2Lz", "Kx9#mPq2Lzabc", False),  # three appended
            ("Kx9#mPq2Lz", "x9#mPq2L", True),  # two deleted
            ("qwzxcv", "qwzxab", True),  # length 6, distance 2
            ("qwzxcv", "qwzabc", False),  # length 6, distance 3
            ("qwzxc", "qwzab", False),  # length 5: no edit-distance rule, letters differ
            ("qwzxc", "qwzxv", False),  # length 5, distance 1: still not similar
            ("ab", "ab", True),  # equal short strings
            ("ab", "ac", False),  # short, no skeleton
            ("", "", True),  # two empty strings are equal
            ("", "abcdef", False),
            ("abc1", "abc2", True),  # equal shape "abc0"
            ("ab1", "ab2", False),  # two letters: no skeleton, too short for distance
        ],
    )
    def test_boundaries(self, a: str, b: str, similar: bool) -> None:
        """Distance 2 is similar and 3 is not (length >= 6); short strings need equal skeletons."""
        assert is_similar(a, b) is similar
        assert is_similar(b, a) is similar

    def test_nfkc_and_case(self) -> None:
        """Full-width characters and case do not hide a copy."""
        assert is_similar("Ｓｕｍｍｅｒ２０２３！", OLD)
        assert is_similar("STRASSE-blau-7", "straße-BLAU-7")

    def test_letters_skeleton_ignores_digits_and_symbols(self) -> None:
        """Same letters in the same order, with other digits and symbols, are similar."""
        assert is_similar("9Summer!!!", "Summer2023!")
        assert is_similar("P@ssw0rd", "password")

    def test_types(self) -> None:
        """None and bytes are TypeErrors."""
        with pytest.raises(TypeError):
            is_similar(None, OLD)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            is_similar(OLD, b"Summer2023!")  # type: ignore[arg-type]

    def test_lone_surrogate_and_nul(self) -> None:
        """Unencodable and control characters are compared, never a crash."""
        assert is_similar("Summer\ud8002023!", "Summer\ud8002023!")
        assert is_similar("Summer\x002023!", "Summer2023!")
        assert not is_similar("\ud800\udfff", "zz")


# --------------------------------------------------------------------------- key rotation


class TestKeyRotation:
    """Fingerprints are keyed; keys can be rotated without losing reuse checks."""

    def test_old_key_listed_after_new_still_checks_similarity(self, backend: Backend) -> None:
        """Entries made with key A are checked when the keys are [B, A]."""
        record(make_history(backend.store, [KEY_A]), OLD)
        rotated = make_history(backend.store, [KEY_B, KEY_A])
        assert rotated.validate(SIMILAR, ACCOUNT, "Summer2024!").codes == ("similar_to_previous",)
        assert rotated.validate(SIMILAR, ACCOUNT, OLD).codes == ("reused",)

    def test_new_entries_use_the_first_key(self, backend: Backend) -> None:
        """After rotation new fingerprints are made with B, so dropping A later keeps them."""
        record(make_history(backend.store, [KEY_B, KEY_A]), OLD)
        only_b = make_history(backend.store, [KEY_B])
        assert only_b.validate(SIMILAR, ACCOUNT, "Summer2024!").codes == ("similar_to_previous",)
        only_a = make_history(backend.store, [KEY_A])
        assert only_a.validate(SIMILAR, ACCOUNT, "Summer2024!").ok

    def test_dropped_key_skips_similarity_but_catches_reuse(self, backend: Backend) -> None:
        """With key A gone, A's entries are still checked for reuse, not for similarity."""
        record(make_history(backend.store, [KEY_A]), OLD)
        only_b = make_history(backend.store, [KEY_B])
        assert only_b.validate(SIMILAR, ACCOUNT, "Summer2024!").ok
        assert only_b.validate(SIMILAR, ACCOUNT, OLD).codes == ("reused",)

    def test_mixed_entries(self, backend: Backend) -> None:
        """Entries under a dropped key and under the live key sit side by side."""
        record(make_history(backend.store, [KEY_A]), OLD)
        record(make_history(backend.store, [KEY_B]), "Winter2024!")
        only_b = make_history(backend.store, [KEY_B])
        assert only_b.validate(SIMILAR, ACCOUNT, "winter2025?").codes == ("similar_to_previous",)
        assert only_b.validate(SIMILAR, ACCOUNT, "Summer2024!").ok

    def test_fingerprint_of_key_a_is_useless_with_key_b(self) -> None:
        """Relabelled with B's key id, A's tags match nothing: no false match across keys."""
        fingerprint_a = make_history(memory_storage().history, [KEY_A]).fingerprint(
            OLD, account_id=ACCOUNT
        )
        fingerprint_b = make_history(memory_storage().history, [KEY_B]).fingerprint(
            OLD, account_id=ACCOUNT
        )
        assert fingerprint_a != fingerprint_b
        assert fingerprint_a[1:5] != fingerprint_b[1:5]
        assert fingerprint_a[6:] != fingerprint_b[6:]
        forged = fingerprint_a[:1] + fingerprint_b[1:5] + fingerprint_a[5:]
        store = memory_storage().history
        store.append(
            ACCOUNT,
            HistoryEntry(password_hash=HASHER.hash(OLD), fingerprint=forged, created_at=T0),
            keep=6,
        )
        history = make_history(store, [KEY_B])
        for new in SIMILAR_TO_OLD:
            assert history.validate(SIMILAR, ACCOUNT, new).ok

    def test_entry_without_fingerprint_checks_reuse_only(self, backend: Backend) -> None:
        """An entry with an empty fingerprint (e.g. imported hashes) still catches reuse."""
        backend.store.append(
            ACCOUNT, HistoryEntry(password_hash=HASHER.hash(OLD), created_at=T0), keep=6
        )
        history = make_history(backend.store)
        assert history.validate(SIMILAR, ACCOUNT, OLD).codes == ("reused",)
        assert history.validate(SIMILAR, ACCOUNT, "Summer2024!").ok


# --------------------------------------------------------------------------- secrets


def unkeyed_digests(text: str) -> list[bytes]:
    """Hex and raw md5/sha1/sha256 digests of ``text`` and of its casefolded form."""
    out: list[bytes] = []
    for variant in {text, text.casefold()}:
        data = variant.encode()
        for name in ("md5", "sha1", "sha256"):
            digest = hashlib.new(name, data)
            out += [digest.digest(), digest.hexdigest().encode()]
    return out


FORBIDDEN = [
    piece
    for text in (OLD, "summer0!", "summer")
    for piece in (text.encode(), *unkeyed_digests(text))
]


class TestSecrets:
    """Nothing stored or printed reveals the password without the server key."""

    def test_fingerprint_layout(self) -> None:
        """Version 1, a 4-byte key id, the tag count, then 16-byte tags."""
        history = make_history(memory_storage().history)
        fingerprint = history.fingerprint(OLD, account_id=ACCOUNT)
        assert len(fingerprint) == 1 + 4 + 1 + 2 * 16
        assert fingerprint[0] == 1
        assert fingerprint[5] == 2
        assert (
            history.fingerprint("xyz12345", account_id=ACCOUNT)[5] == 1
        )  # three letters: the shape only
        assert history.fingerprint("xy123456", account_id=ACCOUNT)[5] == 0  # two letters: nothing
        assert len(history.fingerprint("xy123456", account_id=ACCOUNT)) == 6

    def test_fingerprint_and_entry_hold_no_plain_or_unkeyed_hash(self) -> None:
        """No plaintext, and no md5/sha1/sha256 of the password or its skeletons."""
        history = make_history(memory_storage().history)
        fingerprint = history.fingerprint(OLD, account_id=ACCOUNT)
        for piece in FORBIDDEN:
            assert piece not in fingerprint
        entry = history.entry(OLD, HASHER.hash(OLD), account_id=ACCOUNT, now=T0)
        stored = entry.password_hash.encode() + entry.fingerprint
        for piece in FORBIDDEN:
            assert piece not in stored
        assert entry.password_hash.startswith("$argon2id$")

    def test_sqlite_row_holds_no_secret(self, tmp_path: Path) -> None:
        """The raw SQLite row and the database files hold no plaintext or unkeyed digest."""
        path = tmp_path / "identity.sqlite3"
        with sqlite_storage(path) as storage:
            record(make_history(storage.history), OLD)
            with sqlite3.connect(path) as raw:
                rows = raw.execute("SELECT * FROM password_history").fetchall()
            raw.close()
            assert len(rows) == 1
            row_bytes = b"\x00".join(
                value if isinstance(value, bytes) else str(value).encode() for value in rows[0]
            )
            for piece in FORBIDDEN:
                assert piece not in row_bytes
            assert b"summer" not in row_bytes.lower()
            files = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
            assert OLD.encode() not in files
            assert b"summer0!" not in files.lower()

    def test_key_never_stored(self, backend: Backend) -> None:
        """Neither the key nor its hex form reaches the stored entry."""
        history = make_history(backend.store)
        record(history, OLD)
        (entry,) = backend.store.recent(ACCOUNT, 6)
        stored = entry.password_hash.encode() + entry.fingerprint
        assert KEY_A not in stored
        assert KEY_A.hex().encode() not in stored
        assert KEY_A[:4] not in stored  # the key id is an HMAC of the key, not a prefix

    def test_reprs_hold_nothing_secret(self) -> None:
        """repr of PasswordHistory and HistoryEntry holds no key, hash or fingerprint."""
        history = make_history(memory_storage().history, [KEY_A, KEY_B])
        entry = history.entry(OLD, HASHER.hash(OLD), account_id=ACCOUNT, now=T0)
        for text in (repr(history), str(history), repr(entry), str(entry)):
            for secret in (KEY_A, KEY_B):
                assert secret.hex() not in text
                assert repr(secret) not in text
            assert entry.password_hash not in text
            assert "argon2" not in text
            assert repr(entry.fingerprint) not in text
            assert entry.fingerprint.hex() not in text
            assert OLD not in text

    def test_errors_hold_nothing_secret(self) -> None:
        """A corrupt record's error message names the problem, not the data."""
        store = memory_storage().history
        bad = bytes([9]) + b"SECRETBYTES" * 3
        store.append(
            ACCOUNT,
            HistoryEntry(password_hash=HASHER.hash(OLD), fingerprint=bad, created_at=T0),
            keep=6,
        )
        with pytest.raises(CorruptRecordError) as caught:
            make_history(store).validate(SIMILAR, ACCOUNT, "Summer2024!")
        assert "SECRETBYTES" not in str(caught.value)
        assert "Summer" not in str(caught.value)


# --------------------------------------------------------------------------- bad input


def store_with(fingerprint: bytes, password_hash: str | None = None) -> PasswordHistoryStore:
    """A memory store holding one entry with the given fingerprint (and hash)."""
    store = memory_storage().history
    entry = HistoryEntry(
        password_hash=password_hash if password_hash is not None else HASHER.hash(OLD),
        fingerprint=fingerprint,
        created_at=T0,
    )
    store.append(ACCOUNT, entry, keep=6)
    return store


class TestBadInput:
    """Bad input gets a clear typed error or a clean violation, never a crash."""

    @pytest.mark.parametrize("password", [None, b"Summer2024!", 12345678])
    def test_password_not_str(self, backend: Backend, password: object) -> None:
        """validate, fingerprint, entry and record refuse a non-str password."""
        history = make_history(backend.store)
        with pytest.raises(TypeError):
            history.validate(SIMILAR, ACCOUNT, password)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            history.fingerprint(password, account_id=ACCOUNT)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            history.record(ACCOUNT, password, HASHER.hash(OLD), keep=6, now=T0)  # type: ignore[arg-type]
        assert backend.store.recent(ACCOUNT, 6) == []

    @pytest.mark.parametrize("password", ["Summer\ud8002024!", "Summer\x002024!", "\ud800" * 9])
    def test_unstorable_characters_are_a_violation(self, backend: Backend, password: str) -> None:
        """A lone surrogate or NUL in the new password is a policy violation, not a crash."""
        history = make_history(backend.store)
        record(history, OLD)
        result = history.validate(SIMILAR, ACCOUNT, password)
        assert "disallowed_character" in result.codes
        assert "reused" not in result.codes

    def test_nul_in_old_and_new(self, backend: Backend) -> None:
        """A recorded password with NUL (permissive host) is compared like any other."""
        history = make_history(backend.store)
        record(history, "Summer\x002023!")
        result = history.validate(SIMILAR, ACCOUNT, "Summer\x002023!")
        assert result.codes == ("disallowed_character", "reused")

    @pytest.mark.parametrize(
        ("keys", "error"),
        [
            ([], ValueError),
            ((), ValueError),
            ("k" * 40, ValueError),
            (b"k" * 40, ValueError),
            ([b"k" * 31], ValueError),
            ([KEY_A, b"short"], ValueError),
            ([KEY_A, "k" * 40], TypeError),
            ([bytearray(KEY_A)], TypeError),
            ([None], TypeError),
        ],
    )
    def test_bad_secret_keys(self, keys: object, error: type[Exception]) -> None:
        """Empty, a single str or bytes, a short key or a non-bytes key are refused."""
        with pytest.raises(error) as caught:
            PasswordHistory(memory_storage().history, secret_keys=keys)  # type: ignore[arg-type]
        assert "k" * 31 not in str(caught.value)

    def test_key_of_exactly_32_bytes(self) -> None:
        """32 bytes is the minimum and is accepted."""
        history = PasswordHistory(memory_storage().history, secret_keys=[b"k" * 32])
        assert len(history.fingerprint(OLD, account_id=ACCOUNT)) == 38

    @pytest.mark.parametrize(
        "mangle",
        [
            pytest.param(lambda f: f[:3], id="truncated-header"),
            pytest.param(lambda f: f[:-1], id="truncated-tag"),
            pytest.param(lambda f: bytes([2]) + f[1:], id="wrong-version"),
            pytest.param(lambda f: bytes([0]) + f[1:], id="version-zero"),
            pytest.param(lambda f: f[:5] + bytes([3]) + f[6:], id="count-too-big"),
            pytest.param(lambda f: f[:5] + bytes([1]) + f[6:], id="count-too-small"),
            pytest.param(lambda f: f + b"\x00", id="trailing-byte"),
        ],
    )
    def test_corrupt_fingerprint(self, mangle: Callable[[bytes], bytes]) -> None:
        """A malformed stored fingerprint raises CorruptRecordError; nothing is written."""
        good = make_history(memory_storage().history).fingerprint(OLD, account_id=ACCOUNT)
        store = store_with(mangle(good))
        before = store.recent(ACCOUNT, 6)
        with pytest.raises(CorruptRecordError):
            make_history(store).validate(SIMILAR, ACCOUNT, "Winter2024!")
        assert store.recent(ACCOUNT, 6) == before

    def test_corrupt_fingerprint_in_sqlite_row(self, tmp_path: Path) -> None:
        """A fingerprint truncated in the SQLite file itself raises CorruptRecordError."""
        path = tmp_path / "identity.sqlite3"
        with sqlite_storage(path) as storage:
            history = make_history(storage.history)
            record(history, OLD)
            raw = sqlite3.connect(path)
            with raw:
                raw.execute("UPDATE password_history SET fingerprint = substr(fingerprint, 1, 7)")
            raw.close()
            with pytest.raises(CorruptRecordError):
                history.validate(SIMILAR, ACCOUNT, "Winter2024!")

    def test_exact_check_does_not_read_fingerprints(self) -> None:
        """Without history_similar a corrupt fingerprint is never parsed: reuse still works."""
        store = store_with(b"\x07garbage")
        history = make_history(store)
        assert history.validate(EXACT, ACCOUNT, OLD).codes == ("reused",)
        assert history.validate(EXACT, ACCOUNT, "Winter2024!").ok

    @pytest.mark.parametrize(
        "bad_hash",
        [
            "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ",  # truncated: no tag
            "$bcrypt$2b$12$abcdefghijklmnopqrstuv",
            "not a hash at all",
        ],
    )
    def test_malformed_stored_hash(self, bad_hash: str) -> None:
        """A malformed stored hash raises InvalidHashError, whatever the new password."""
        fingerprint = make_history(memory_storage().history).fingerprint(OLD, account_id=ACCOUNT)
        history = make_history(store_with(fingerprint, bad_hash))
        for new in (OLD, "Winter2024!"):
            with pytest.raises(InvalidHashError):
                history.validate(SIMILAR, ACCOUNT, new)

    def test_too_long_skips_the_store(self) -> None:
        """An over-long password is `too_long` alone and never reaches the store."""
        history = make_history(UntouchableStore())
        result = history.validate(SIMILAR, ACCOUNT, "Summer2023!" * 100_000)
        assert result.codes == ("too_long",)
        result = history.validate(SIMILAR, ACCOUNT, "x" * 129, current_password="x" * 129)
        assert result.codes == ("too_long",)

    def test_unknown_account_id_shapes(self, backend: Backend) -> None:
        """An empty account id is refused by the store with ValueError."""
        history = make_history(backend.store)
        with pytest.raises(ValueError, match="account_id"):
            history.validate(SIMILAR, "", "Winter2024!")


# --------------------------------------------------------------------------- concurrency


def huge(kind: str) -> str:
    """A huge input, built when the test runs (so a 100 MB string lives only that long)."""
    return {
        "1MB": "a" * 1_000_000,
        "100MB": "a" * 100_000_000,
        "1M-U+FDFA": "\ufdfa" * 1_000_000,  # NFKC would make 18M code points of it
        "just-over": "Summer2023!" * 373,  # 4103 characters
        "expands-over": "\ufdfa" * 228,  # 4104 code points after NFKC
    }[kind]


HUGE_KINDS = ["1MB", "100MB", "1M-U+FDFA", "just-over", "expands-over"]


class TestHugeInput:
    """1 MB and 100 MB inputs at every entry point: a clean violation or a typed error.

    The result is checked, never the time (benchmarks/bench_inputs.py measures that).
    """

    @pytest.mark.parametrize("kind", HUGE_KINDS)
    def test_is_similar_refuses(self, kind: str) -> None:
        """is_similar() raises InvalidPasswordError for a huge new or old password."""
        with pytest.raises(InvalidPasswordError, match="new is longer than 4096"):
            is_similar(huge(kind), OLD)
        with pytest.raises(InvalidPasswordError, match="old is longer than 4096"):
            is_similar(OLD, huge(kind))

    @pytest.mark.parametrize("kind", HUGE_KINDS)
    def test_fingerprint_entry_record_refuse(self, kind: str) -> None:
        """fingerprint(), entry() and record() raise InvalidPasswordError; nothing is written."""
        store = memory_storage().history
        history = make_history(store)
        with pytest.raises(InvalidPasswordError):
            history.fingerprint(huge(kind), account_id=ACCOUNT)
        with pytest.raises(InvalidPasswordError):
            history.entry(huge(kind), HASHER.hash(OLD), account_id=ACCOUNT, now=T0)
        with pytest.raises(InvalidPasswordError):
            history.record(ACCOUNT, huge(kind), HASHER.hash(OLD), keep=6, now=T0)
        assert [] == store.recent(ACCOUNT, 6)

    @pytest.mark.parametrize("kind", HUGE_KINDS)
    def test_validate_new_password_is_too_long(self, kind: str) -> None:
        """validate() reports a huge new password as too_long without reading the store,
        under a policy with no max_length too (its hard cap is 4096)."""
        history = make_history(UntouchableStore())
        for policy in (SIMILAR, PasswordPolicy(max_length=None, history=6, history_similar=True)):
            result = history.validate(policy, ACCOUNT, huge(kind), current_password=OLD)
            assert ("too_long",) == result.codes

    @pytest.mark.parametrize("kind", HUGE_KINDS)
    def test_validate_current_password_refused(self, kind: str) -> None:
        """validate() raises InvalidPasswordError for a huge current password."""
        history = make_history(UntouchableStore())
        with pytest.raises(InvalidPasswordError, match="current_password"):
            history.validate(SIMILAR, ACCOUNT, "Winter2024!", current_password=huge(kind))

    @pytest.mark.parametrize("kind", ["1MB", "100MB"])
    def test_account_id_refused(self, kind: str) -> None:
        """A huge account id is a ValueError at every method; nothing is read or written."""
        history = make_history(UntouchableStore())
        with pytest.raises(ValueError, match="account_id is longer than 1024"):
            history.validate(SIMILAR, huge(kind), "Winter2024!")
        with pytest.raises(ValueError, match="account_id"):
            history.fingerprint(OLD, account_id=huge(kind))
        with pytest.raises(ValueError, match="account_id"):
            history.record(huge(kind), OLD, HASHER.hash(OLD), keep=6, now=T0)
        assert MAX_ACCOUNT_ID_LENGTH == 1024

    @pytest.mark.parametrize("kind", ["1MB", "100MB"])
    def test_huge_password_hash_refused(self, kind: str) -> None:
        """entry() and record() refuse a password hash longer than any hash the library makes."""
        store = memory_storage().history
        history = make_history(store)
        with pytest.raises(InvalidHashError):
            history.record(ACCOUNT, OLD, huge(kind), keep=6, now=T0)
        assert [] == store.recent(ACCOUNT, 6)

    def test_at_the_limit(self) -> None:
        """4096 characters (the most a policy accepts) are fingerprinted and compared."""
        history = make_history(memory_storage().history)
        password = "Summer2023!" * 372 + "Summ"
        assert 4096 == len(password)
        assert len(history.fingerprint(password, account_id=ACCOUNT)) == 38
        assert is_similar(password, password[:-1] + "r")

    def test_edge_characters_are_linear(self) -> None:
        """A long run of "@" or "$" next to a letter is read through in one pass (it took
        seconds one character per pass): the skeleton is the letters it stands for."""
        assert is_similar("@" * 4000 + "b", "a" * 4000 + "b")
        assert is_similar("b" + "$" * 4000, "B" + "s" * 4000)


class TestConcurrency:
    """One PasswordHistory and store, shared by many threads, answers as it does alone."""

    def test_sixteen_threads_agree_with_sequential(self, backend: Backend) -> None:
        """16 threads validating at once get exactly the sequential answers."""
        history = make_history(backend.store)
        for password in (*SEVEN[:5], OLD):
            record(history, password)
        candidates = [*SIMILAR_TO_OLD, *NOT_SIMILAR_TO_OLD, OLD, *SEVEN]
        expected = [history.validate(SIMILAR, ACCOUNT, p).codes for p in candidates]
        barrier = threading.Barrier(16)
        answers: dict[int, list[tuple[str, ...]]] = {}
        errors: list[BaseException] = []

        def work(worker: int) -> None:
            try:
                barrier.wait()
                order = list(range(len(candidates)))
                random.Random(worker).shuffle(order)
                got: dict[int, tuple[str, ...]] = {}
                for index in order:
                    got[index] = history.validate(SIMILAR, ACCOUNT, candidates[index]).codes
                answers[worker] = [got[i] for i in range(len(candidates))]
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(answers) == 16
        for got in answers.values():
            assert got == expected


# --------------------------------------------------------------------------- properties

STRONG_ALPHABET = string.ascii_letters + string.digits + string.punctuation
PROPERTY_HISTORY = PasswordHistory(memory_storage().history, secret_keys=[KEY_A], hasher=HASHER)
OTHER_KEY_HISTORY = PasswordHistory(memory_storage().history, secret_keys=[KEY_B], hasher=HASHER)
SMALL = "aAbB1!@3$ "
passwords = st.text(max_size=40)
ascii_passwords = st.text(alphabet=string.printable, max_size=40)


def strong_password(rng: random.Random) -> str:
    """A 16-character password drawn uniformly from the 94 printable ASCII symbols."""
    return "".join(rng.choice(STRONG_ALPHABET) for _ in range(16))


class TestProperties:
    """Hypothesis properties of is_similar and fingerprint."""

    @given(passwords)
    def test_reflexive(self, password: str) -> None:
        """Every password is similar to itself."""
        assert is_similar(password, password)

    @given(passwords, passwords)
    def test_symmetric(self, a: str, b: str) -> None:
        """is_similar(a, b) == is_similar(b, a)."""
        assert is_similar(a, b) == is_similar(b, a)

    @given(st.text(alphabet=SMALL, max_size=12), st.text(alphabet=SMALL, max_size=12))
    def test_symmetric_on_collisions(self, a: str, b: str) -> None:
        """Symmetric also on a tiny alphabet, where skeletons and distances often collide."""
        assert is_similar(a, b) == is_similar(b, a)

    @given(passwords)
    def test_fingerprint_deterministic(self, password: str) -> None:
        """The same key and password give the same fingerprint every time."""
        assert PROPERTY_HISTORY.fingerprint(
            password, account_id=ACCOUNT
        ) == PROPERTY_HISTORY.fingerprint(password, account_id=ACCOUNT)

    @given(ascii_passwords)
    def test_fingerprint_ignores_case(self, password: str) -> None:
        """p, p.upper() and p.lower() share their skeletons, so their fingerprints."""
        fingerprint = PROPERTY_HISTORY.fingerprint(password, account_id=ACCOUNT)
        assert PROPERTY_HISTORY.fingerprint(password.upper(), account_id=ACCOUNT) == fingerprint
        assert PROPERTY_HISTORY.fingerprint(password.lower(), account_id=ACCOUNT) == fingerprint

    @given(ascii_passwords, st.integers(min_value=0, max_value=9))
    def test_fingerprint_ignores_digit_values(self, password: str, digit: int) -> None:
        """Every digit outside a word may change: the shape writes each run of digits as 0."""
        other = "".join(
            str(digit) if c.isdigit() and not _inside_word(password, i) else c
            for i, c in enumerate(password)
        )
        assert PROPERTY_HISTORY.fingerprint(
            other, account_id=ACCOUNT
        ) == PROPERTY_HISTORY.fingerprint(password, account_id=ACCOUNT)

    @given(st.text(alphabet=SMALL, max_size=12), st.text(alphabet=SMALL, max_size=12))
    def test_equal_fingerprint_iff_similar_by_skeleton(self, a: str, b: str) -> None:
        """Equal non-empty fingerprints mean similar passwords; key B never matches key A."""
        fa, fb = (
            PROPERTY_HISTORY.fingerprint(a, account_id=ACCOUNT),
            PROPERTY_HISTORY.fingerprint(b, account_id=ACCOUNT),
        )
        if fa == fb and fa[5] > 0:
            assert is_similar(a, b)
        tags_a = {fa[6 + 16 * i : 22 + 16 * i] for i in range(fa[5])}
        if tags_a & {fb[6 + 16 * i : 22 + 16 * i] for i in range(fb[5])}:
            assert is_similar(a, b)
        fb_other = OTHER_KEY_HISTORY.fingerprint(b, account_id=ACCOUNT)
        assert not tags_a & {fb_other[6 + 16 * i : 22 + 16 * i] for i in range(fb_other[5])}

    @settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
    @given(st.integers(min_value=0, max_value=2**64))
    def test_independent_strong_passwords_are_not_similar(self, seed: int) -> None:
        """Two independent random 16-character passwords are (practically) never similar."""
        rng = random.Random(seed)
        a, b = strong_password(rng), strong_password(rng)
        assert not is_similar(a, b)

    def test_false_positive_rate_on_a_large_sample(self) -> None:
        """2000 pairs of random strong passwords: no similar pair, fingerprints all differ."""
        rng = random.Random(20250301)
        pairs = [(strong_password(rng), strong_password(rng)) for _ in range(2000)]
        assert sum(is_similar(a, b) for a, b in pairs) == 0
        fingerprints = {PROPERTY_HISTORY.fingerprint(a, account_id=ACCOUNT) for a, _ in pairs}
        assert len(fingerprints) == len(pairs)


def _inside_word(text: str, index: int) -> bool:
    """Whether ``text[index]`` sits between two letters (where l33t digits read as letters)."""
    before = index > 0 and text[index - 1].isalpha()
    after = index + 1 < len(text) and text[index + 1].isalpha()
    return before and after


def reference_skeletons(password: str) -> list[tuple[bytes, str]]:
    """The skeletons as first written (one edge character read per pass), for comparison.

    Fingerprints are stored, so the linear rewrite must give exactly these skeletons.
    """
    l33t = {
        "0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
        "@": "a", "$": "s", "!": "i", "|": "i", "+": "t",
    }  # fmt: skip
    text = unicodedata.normalize("NFKC", password).casefold()
    chars = list(text)
    for i, c in enumerate(text):
        inside = 0 < i < len(text) - 1 and text[i - 1].isalpha() and text[i + 1].isalpha()
        if inside and c in l33t and c not in "@$":
            chars[i] = l33t[c]
    changed = True
    while changed:
        changed = False
        for i, c in enumerate(chars):
            if c in "@$":
                before = i > 0 and chars[i - 1].isalpha()
                after = i + 1 < len(chars) and chars[i + 1].isalpha()
                if before or after:
                    chars[i] = l33t[c]
                    changed = True
    shape: list[str] = []
    for c in chars:
        mark = c if c.isalpha() else ("0" if c.isdigit() else "!")
        if mark in "0!" and shape and shape[-1] == mark:
            continue
        shape.append(mark)
    letters = "".join(c for c in chars if c.isalpha())
    out: list[tuple[bytes, str]] = []
    if len(letters) >= 3:
        out.append((b"shape", "".join(shape)))
    if len(letters) >= 4:
        out.append((b"letters", letters))
    return out


def levenshtein(a: str, b: str) -> int:
    """The full dynamic-programming edit distance."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


EDGE_HEAVY = st.text(alphabet="a@$b1!0 3sS.$@", max_size=24)


class TestLinearHelpers:
    """The linear skeleton and edit-distance helpers agree with their plain definitions."""

    @settings(max_examples=500, deadline=None)
    @given(st.one_of(EDGE_HEAVY, passwords))
    def test_skeletons_as_first_written(self, password: str) -> None:
        """_skeletons gives exactly the skeletons of the one-character-per-pass version."""
        assert reference_skeletons(password) == _skeletons(password)

    @settings(max_examples=500, deadline=None)
    @given(
        st.text(alphabet="abc", max_size=10),
        st.text(alphabet="abc", max_size=10),
        st.integers(0, 3),
    )
    def test_within_distance(self, a: str, b: str, limit: int) -> None:
        """_within_distance(a, b, k) is levenshtein(a, b) <= k."""
        assert (levenshtein(a, b) <= limit) == _within_distance(a, b, limit)


class TestFingerprintsAreBoundToTheAccount:
    def test_same_password_in_two_accounts_gives_unrelated_tags(self) -> None:
        """Equal skeletons in two accounts do not show as equal in a dump."""
        history = make_history(memory_storage().history)
        a = history.fingerprint(OLD, account_id="account-a")
        b = history.fingerprint(OLD, account_id="account-b")
        assert a[:6] == b[:6]  # same version, key id and tag count
        assert a[6:22] != b[6:22]
        assert a[22:] != b[22:]

    def test_entries_of_another_account_never_match(self) -> None:
        """A fingerprint copied from account A into B's history is not similar for B."""
        store = memory_storage().history
        history = make_history(store)
        foreign = history.entry(OLD, HASHER.hash("Unrelated#Pass9"), account_id="a", now=T0)
        store.append("b", foreign, keep=6)
        policy = PasswordPolicy(history=6, history_similar=True, min_length=6)
        assert "similar_to_previous" not in history.validate(policy, "b", "Summer2024!").codes
