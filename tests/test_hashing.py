"""Tests for kaspi_identity.hashing: profiles, the hasher, verify_any and calibration."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
from argon2.exceptions import VerificationError
from argon2.low_level import Type, hash_secret
from hypothesis import given, settings
from hypothesis import strategies as st

import kaspi_identity
from kaspi_identity import hashing
from kaspi_identity._errors import (
    HashingError,
    InvalidHashError,
    InvalidPasswordError,
    KaspiIdentityError,
    PasswordMismatchError,
)
from kaspi_identity.hashing import (
    MAX_PASSWORD_LENGTH,
    OWASP_MINIMUM,
    PROFILES,
    RFC_9106_LOW_MEMORY,
    TESTS_ONLY,
    HashProfile,
    PasswordHasher,
    calibrate,
)

FAST = PasswordHasher(TESTS_ONLY)
PASSWORD = "Correct-Horse-7"


def raw_hash(
    password: bytes = PASSWORD.encode(),
    *,
    type_: Type = Type.ID,
    version: int = 19,
    time_cost: int = 1,
    memory_cost: int = 8,
    parallelism: int = 1,
    salt_len: int = 16,
    hash_len: int = 32,
) -> str:
    """Build a hash directly with argon2-cffi, bypassing the hasher under test."""
    return hash_secret(
        secret=password,
        salt=os.urandom(salt_len),
        time_cost=time_cost,
        memory_cost=memory_cost,
        parallelism=parallelism,
        hash_len=hash_len,
        type=type_,
        version=version,
    ).decode("ascii")


VerifyFn = Callable[[bytes, bytes, Type], None]


@pytest.fixture
def wrap_verify(monkeypatch: pytest.MonkeyPatch) -> Callable[[VerifyFn], None]:
    """Replace the argon2 verification seam with a wrapper built from the real one."""

    def install(wrapper: VerifyFn) -> None:
        monkeypatch.setattr(hashing, "_verify_encoded", wrapper)

    return install


# --------------------------------------------------------------------------- profiles


class TestHashProfile:
    def test_defaults_for_lengths(self) -> None:
        """A profile built from the three costs gets a 32-byte tag and a 16-byte salt."""
        profile = HashProfile(time_cost=2, memory_cost=1024, parallelism=1)
        assert (profile.hash_len, profile.salt_len) == (32, 16)

    def test_named_constants(self) -> None:
        """The named constants carry the published parameters."""
        assert (
            OWASP_MINIMUM.time_cost,
            OWASP_MINIMUM.memory_cost,
            OWASP_MINIMUM.parallelism,
        ) == (2, 19456, 1)
        assert (
            RFC_9106_LOW_MEMORY.time_cost,
            RFC_9106_LOW_MEMORY.memory_cost,
            RFC_9106_LOW_MEMORY.parallelism,
        ) == (3, 65536, 4)
        assert (TESTS_ONLY.time_cost, TESTS_ONLY.memory_cost, TESTS_ONLY.parallelism) == (1, 8, 1)

    def test_profiles_mapping(self) -> None:
        """PROFILES holds every named profile by name and cannot be modified."""
        assert dict(PROFILES) == {
            "owasp-minimum": OWASP_MINIMUM,
            "rfc9106-low-memory": RFC_9106_LOW_MEMORY,
            "tests-only": TESTS_ONLY,
        }
        with pytest.raises(TypeError):
            PROFILES["mine"] = TESTS_ONLY  # type: ignore[index]

    @pytest.mark.parametrize("name", sorted(PROFILES))
    def test_named_known(self, name: str) -> None:
        """HashProfile.named returns the registered profile."""
        assert PROFILES[name] is HashProfile.named(name)

    def test_named_unknown_lists_names(self) -> None:
        """An unknown name raises ValueError listing every known name."""
        with pytest.raises(ValueError, match="unknown hash profile") as info:
            HashProfile.named("owasp")
        for name in PROFILES:
            assert name in str(info.value)

    def test_named_non_str(self) -> None:
        """A non-str name is a TypeError."""
        with pytest.raises(TypeError):
            HashProfile.named(None)  # type: ignore[arg-type]

    def test_frozen_and_slotted(self) -> None:
        """A profile cannot be changed and has no per-instance dict."""
        with pytest.raises(dataclasses.FrozenInstanceError):
            TESTS_ONLY.time_cost = 5  # type: ignore[misc]
        assert not hasattr(TESTS_ONLY, "__dict__")

    def test_replace_validates(self) -> None:
        """A variant made with dataclasses.replace is validated too."""
        with pytest.raises(ValueError, match="time_cost"):
            dataclasses.replace(OWASP_MINIMUM, time_cost=0)

    @pytest.mark.parametrize(
        ("changes", "field"),
        [
            ({"time_cost": 0}, "time_cost"),
            ({"time_cost": -3}, "time_cost"),
            ({"memory_cost": 7}, "memory_cost"),
            ({"memory_cost": 0}, "memory_cost"),
            ({"parallelism": 0}, "parallelism"),
            ({"parallelism": 2**24}, "parallelism"),
            ({"parallelism": 4, "memory_cost": 31}, "memory_cost"),
            ({"hash_len": 0}, "hash_len"),
            ({"hash_len": 3}, "hash_len"),
            ({"salt_len": 7}, "salt_len"),
            ({"salt_len": 0}, "salt_len"),
            ({"time_cost": 2**32}, "time_cost"),
            ({"memory_cost": 2**32}, "memory_cost"),
        ],
    )
    def test_out_of_range_names_field(self, changes: dict[str, int], field: str) -> None:
        """An out-of-range value raises ValueError naming the field."""
        arguments = {"time_cost": 1, "memory_cost": 64, "parallelism": 1, **changes}
        with pytest.raises(ValueError, match=field):
            HashProfile(**arguments)

    def test_every_problem_reported(self) -> None:
        """Several bad fields are reported together in one error."""
        with pytest.raises(ValueError, match="invalid hash profile") as info:
            HashProfile(time_cost=0, memory_cost=8, parallelism=1, salt_len=1, hash_len=1)
        for field in ("time_cost", "salt_len", "hash_len"):
            assert field in str(info.value)

    @pytest.mark.parametrize("value", [1.0, "2", None, True])
    def test_wrong_type(self, value: object) -> None:
        """A non-int field (a bool included) is a TypeError naming the field."""
        with pytest.raises(TypeError, match="time_cost"):
            HashProfile(time_cost=value, memory_cost=64, parallelism=1)  # type: ignore[arg-type]

    def test_minimum_memory_per_lane_is_accepted(self) -> None:
        """memory_cost equal to 8 * parallelism is the smallest valid value."""
        assert HashProfile(time_cost=1, memory_cost=32, parallelism=4).memory_cost == 32


# --------------------------------------------------------------------------- hasher


class TestPasswordHasherConstruction:
    def test_default_profile(self) -> None:
        """Without arguments the hasher uses OWASP_MINIMUM."""
        assert PasswordHasher().profile == OWASP_MINIMUM

    def test_profile_property(self) -> None:
        """The profile property returns the profile given."""
        assert TESTS_ONLY is PasswordHasher(TESTS_ONLY).profile

    def test_profile_type_checked(self) -> None:
        """A profile that is not a HashProfile is a TypeError."""
        with pytest.raises(TypeError):
            PasswordHasher("owasp-minimum")  # type: ignore[arg-type]

    @pytest.mark.parametrize("value", [0, -1])
    def test_max_concurrency_range(self, value: int) -> None:
        """max_concurrency below 1 is a ValueError."""
        with pytest.raises(ValueError, match="max_concurrency"):
            PasswordHasher(TESTS_ONLY, max_concurrency=value)

    @pytest.mark.parametrize("value", [1.5, "2", True])
    def test_max_concurrency_type(self, value: object) -> None:
        """A non-int max_concurrency is a TypeError."""
        with pytest.raises(TypeError, match="max_concurrency"):
            PasswordHasher(TESTS_ONLY, max_concurrency=value)  # type: ignore[arg-type]

    def test_repr_shows_profile_only(self) -> None:
        """The repr shows the profile and nothing a hasher has seen."""
        hasher = PasswordHasher(TESTS_ONLY)
        stored = hasher.hash(PASSWORD)
        hasher.verify(stored, PASSWORD)
        text = repr(hasher)
        assert f"PasswordHasher({TESTS_ONLY!r})" == text
        assert PASSWORD not in text
        assert stored not in text

    def test_no_threads_at_import_or_construction(self) -> None:
        """Importing the module and building a hasher start no thread; verify_any does."""
        source = Path(kaspi_identity.__file__).resolve().parent.parent
        code = (
            "import threading\n"
            "from kaspi_identity.hashing import PasswordHasher, TESTS_ONLY\n"
            "h = PasswordHasher(TESTS_ONLY)\n"
            "h.verify(h.hash('pw'), 'pw')\n"
            "before = threading.active_count()\n"
            "h.verify_any('pw', [h.hash('pw')])\n"
            "print(before, threading.active_count())\n"
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(source), *sys.path])}
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        before, after = map(int, result.stdout.split())
        assert before == 1
        assert after > before


class TestHash:
    def test_round_trip(self) -> None:
        """A hash verifies the password it was made from."""
        FAST.verify(FAST.hash(PASSWORD), PASSWORD)

    def test_format(self) -> None:
        """The hash is an argon2id v1.3 PHC string carrying the profile's parameters."""
        assert FAST.hash(PASSWORD).startswith("$argon2id$v=19$m=8,t=1,p=1$")

    def test_default_profile_parameters(self) -> None:
        """A default hasher writes OWASP_MINIMUM's parameters and needs no rehash."""
        hasher = PasswordHasher()
        stored = hasher.hash(PASSWORD)
        assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
        assert not hasher.needs_rehash(stored)
        hasher.verify(stored, PASSWORD)

    def test_fresh_salt_each_time(self) -> None:
        """Hashing the same password twice gives two different hashes."""
        assert FAST.hash(PASSWORD) != FAST.hash(PASSWORD)

    def test_nfkc_ligature(self) -> None:
        """A hash of the ligature "ﬁ" verifies the plain letters "fi", and back."""
        FAST.verify(FAST.hash("ﬁ"), "fi")
        FAST.verify(FAST.hash("fi"), "ﬁ")

    def test_nfkc_full_width_digits(self) -> None:
        """Full-width digits verify against their ASCII form."""
        FAST.verify(FAST.hash("Qwerty\uff11\uff12\uff13"), "Qwerty123")

    @pytest.mark.parametrize("value", [None, b"password", 42])
    def test_non_str_is_type_error(self, value: object) -> None:
        """A password that is not a str is a TypeError."""
        with pytest.raises(TypeError):
            FAST.hash(value)  # type: ignore[arg-type]

    def test_lone_surrogate(self) -> None:
        """A lone surrogate raises InvalidPasswordError without the password in it."""
        password = "secret-\ud800-value"
        with pytest.raises(InvalidPasswordError) as info:
            FAST.hash(password)
        assert isinstance(info.value, ValueError)
        assert isinstance(info.value, KaspiIdentityError)
        assert "secret" not in str(info.value)
        assert info.value.__context__ is None
        assert info.value.__cause__ is None

    def test_nul_inside(self) -> None:
        """A NUL inside a password is hashed like any other character."""
        stored = FAST.hash("abc\x00def")
        FAST.verify(stored, "abc\x00def")
        with pytest.raises(PasswordMismatchError):
            FAST.verify(stored, "abc")

    def test_longest_password(self) -> None:
        """A password of MAX_PASSWORD_LENGTH code points (8 KiB of UTF-8) hashes and
        verifies; one changed character does not."""
        password = "я" * (MAX_PASSWORD_LENGTH - 24) + "x" * 24
        stored = FAST.hash(password)
        FAST.verify(stored, password)
        with pytest.raises(PasswordMismatchError):
            FAST.verify(stored, password[:-1] + "y")

    def test_empty_password(self) -> None:
        """The hasher hashes an empty password; refusing it is the policy's job."""
        FAST.verify(FAST.hash(""), "")


BCRYPT = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"


def invalid_hashes() -> list[tuple[str, object]]:
    """Malformed stored hashes of every shape, each with an id."""
    good = raw_hash()
    prefix, salt, tag = good.rsplit("$", 2)
    return [
        ("empty", ""),
        ("prefix only", "$argon2id$"),
        ("half", good[: len(good) // 2]),
        ("tag cut to 4k+1 chars", good[:-2]),
        ("no tag", f"{prefix}${salt}"),
        ("bcrypt", BCRYPT),
        ("pbkdf2", "pbkdf2_sha256$600000$c2FsdA$aGFzaA=="),
        ("random text", "not a hash at all"),
        ("trailing newline", good + "\n"),
        ("leading space", " " + good),
        ("unknown variant", good.replace("argon2id", "argon2x")),
        ("version 20", good.replace("v=19", "v=20")),
        ("m zero", good.replace("m=8,", "m=0,")),
        ("m below 8p", good.replace("m=8,", "m=7,")),
        ("t zero", good.replace("t=1,", "t=0,")),
        ("p zero", good.replace("p=1$", "p=0$")),
        ("m not a number", good.replace("m=8,", "m=abc,")),
        ("m leading zero", good.replace("m=8,", "m=08,")),
        ("m full-width digit", good.replace("m=8,", "m=\uff18,")),
        ("m over 32 bits", good.replace("m=8,", "m=4294967296,")),
        ("params reordered", good.replace("m=8,t=1,p=1", "t=1,m=8,p=1")),
        ("salt too short", f"{prefix}$c2FsdA${tag}"),
        ("tag too short", f"{prefix}${salt}$YWI"),
        ("padded salt", f"{prefix}${salt}==${tag}"),
        ("url-safe alphabet", f"{prefix}${salt[:-1]}-${tag}"),
        ("non-zero padding bits", f"{prefix}${salt}${tag[:-1]}B"),
        ("non-ascii", good + "é"),
        ("none", None),
        ("bytes", good.encode("ascii")),
        ("int", 42),
    ]


INVALID = invalid_hashes()


class TestVerify:
    def test_mismatch_raises(self) -> None:
        """A wrong password raises PasswordMismatchError, a HashingError."""
        stored = FAST.hash(PASSWORD)
        with pytest.raises(PasswordMismatchError) as info:
            FAST.verify(stored, PASSWORD + "!")
        assert isinstance(info.value, HashingError)
        assert PASSWORD not in str(info.value)
        assert stored not in str(info.value)

    def test_lone_surrogate_is_mismatch(self) -> None:
        """A password holding a lone surrogate is a mismatch, not a crash."""
        stored = FAST.hash("a")
        with pytest.raises(PasswordMismatchError) as info:
            FAST.verify(stored, "a\ud800")
        assert info.value.__context__ is None

    @pytest.mark.parametrize("value", [None, b"password", 42])
    def test_non_str_password(self, value: object) -> None:
        """A password that is not a str is a TypeError."""
        with pytest.raises(TypeError):
            FAST.verify(FAST.hash(PASSWORD), value)  # type: ignore[arg-type]

    @pytest.mark.parametrize(("case", "stored"), INVALID, ids=[case for case, _ in INVALID])
    def test_invalid_hash(self, case: str, stored: object) -> None:
        """A malformed, truncated, foreign or non-str hash is an InvalidHashError."""
        with pytest.raises(InvalidHashError) as info:
            FAST.verify(stored, PASSWORD)  # type: ignore[arg-type]
        assert isinstance(info.value, ValueError)
        if isinstance(stored, str) and len(stored) > 8:
            assert stored.strip() not in str(info.value)
        assert PASSWORD not in str(info.value)

    @pytest.mark.parametrize("type_", [Type.I, Type.D])
    def test_other_argon2_variants_verify(self, type_: Type) -> None:
        """argon2i and argon2d hashes from another system verify, and mismatch correctly."""
        stored = raw_hash(type_=type_)
        FAST.verify(stored, PASSWORD)
        with pytest.raises(PasswordMismatchError):
            FAST.verify(stored, "other")

    def test_legacy_version(self) -> None:
        """An argon2 v1.0 hash verifies, with or without its "v=16" field."""
        stored = raw_hash(version=16)
        assert "$v=16$" in stored
        FAST.verify(stored, PASSWORD)
        FAST.verify(stored.replace("$v=16", ""), PASSWORD)

    def test_hash_from_other_profile(self) -> None:
        """A hash made with other parameters still verifies."""
        stored = raw_hash(time_cost=2, memory_cost=64, parallelism=2, salt_len=8, hash_len=16)
        FAST.verify(stored, PASSWORD)

    def test_argon2_refusal_is_invalid_hash(self, wrap_verify: Callable[[VerifyFn], None]) -> None:
        """A hash argon2 refuses for a reason other than a mismatch is an InvalidHashError."""

        def refuse(encoded: bytes, secret: bytes, type_: Type) -> None:
            raise VerificationError("Memory allocation error")

        wrap_verify(refuse)
        with pytest.raises(InvalidHashError, match="Memory allocation error"):
            FAST.verify(FAST.hash(PASSWORD), PASSWORD)


class TestVerifyAndUpdate:
    def test_mismatch(self) -> None:
        """A wrong password gives (False, None)."""
        assert FAST.verify_and_update(FAST.hash(PASSWORD), "nope") == (False, None)

    def test_current_hash(self) -> None:
        """A match on a current hash gives (True, None)."""
        assert FAST.verify_and_update(FAST.hash(PASSWORD), PASSWORD) == (True, None)

    def test_other_profile_is_rehashed(self) -> None:
        """A match on a hash from another profile gives a new hash in the current profile."""
        old = PasswordHasher(HashProfile(time_cost=2, memory_cost=16, parallelism=1))
        ok, new_hash = FAST.verify_and_update(old.hash(PASSWORD), PASSWORD)
        assert ok
        assert new_hash is not None
        FAST.verify(new_hash, PASSWORD)
        assert not FAST.needs_rehash(new_hash)

    def test_argon2i_is_upgraded(self) -> None:
        """A match on an argon2i hash gives an argon2id replacement."""
        ok, new_hash = FAST.verify_and_update(raw_hash(type_=Type.I), PASSWORD)
        assert ok
        assert new_hash is not None
        assert new_hash.startswith("$argon2id$")

    def test_rehash_uses_normalised_form(self) -> None:
        """The replacement hash verifies both forms of an NFKC-equivalent password."""
        old = PasswordHasher(HashProfile(time_cost=2, memory_cost=16, parallelism=1))
        _, new_hash = FAST.verify_and_update(old.hash("ﬁx"), "ﬁx")
        assert new_hash is not None
        FAST.verify(new_hash, "fix")

    @pytest.mark.parametrize(("case", "stored"), INVALID[:6], ids=[c for c, _ in INVALID[:6]])
    def test_invalid_hash_still_raises(self, case: str, stored: object) -> None:
        """A malformed hash raises InvalidHashError rather than reporting a mismatch."""
        with pytest.raises(InvalidHashError):
            FAST.verify_and_update(stored, PASSWORD)  # type: ignore[arg-type]


class TestNeedsRehash:
    def test_current(self) -> None:
        """A hash made by this hasher needs no rehash."""
        assert not FAST.needs_rehash(FAST.hash(PASSWORD))

    @pytest.mark.parametrize(
        "changes",
        [
            {"time_cost": 2},
            {"memory_cost": 16},
            {"parallelism": 2, "memory_cost": 16},
            {"hash_len": 16},
            {"salt_len": 8},
        ],
    )
    def test_any_parameter_differs(self, changes: dict[str, int]) -> None:
        """A difference in any parameter, stronger or weaker, needs a rehash."""
        other = PasswordHasher(dataclasses.replace(TESTS_ONLY, **changes))
        stored = other.hash(PASSWORD)
        assert FAST.needs_rehash(stored)
        assert not other.needs_rehash(stored)

    @pytest.mark.parametrize("type_", [Type.I, Type.D])
    def test_other_variant(self, type_: Type) -> None:
        """argon2i and argon2d hashes need a rehash even with the same parameters."""
        assert FAST.needs_rehash(raw_hash(type_=type_))

    def test_old_version(self) -> None:
        """An argon2 v1.0 hash needs a rehash even with the same parameters."""
        assert FAST.needs_rehash(raw_hash(version=16))

    @pytest.mark.parametrize(("case", "stored"), INVALID, ids=[case for case, _ in INVALID])
    def test_invalid_hash(self, case: str, stored: object) -> None:
        """A malformed hash is an InvalidHashError, not a silent True."""
        with pytest.raises(InvalidHashError):
            FAST.needs_rehash(stored)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- verify_any


def history(hasher: PasswordHasher, count: int) -> list[str]:
    """Return ``count`` hashes of passwords other than PASSWORD."""
    return [hasher.hash(f"old-password-{index}") for index in range(count)]


class TestVerifyAny:
    def test_finds_index(self) -> None:
        """The index of the matching hash is returned."""
        hashes = history(FAST, 5)
        hashes[3] = FAST.hash(PASSWORD)
        assert FAST.verify_any(PASSWORD, hashes) == 3

    def test_no_match(self) -> None:
        """None when no hash matches."""
        assert FAST.verify_any(PASSWORD, history(FAST, 5)) is None

    def test_empty(self) -> None:
        """None for an empty sequence."""
        assert FAST.verify_any(PASSWORD, []) is None

    def test_lowest_index_of_duplicates(self) -> None:
        """When several hashes match, the lowest index wins."""
        hasher = PasswordHasher(TESTS_ONLY, max_concurrency=4)
        hashes = history(hasher, 8)
        for index in (2, 5, 7):
            hashes[index] = hasher.hash(PASSWORD)
        assert hasher.verify_any(PASSWORD, hashes) == 2

    def test_lowest_index_when_later_match_finishes_first(
        self, wrap_verify: Callable[[VerifyFn], None]
    ) -> None:
        """A later match finishing first does not win over an earlier one still running."""
        hasher = PasswordHasher(TESTS_ONLY, max_concurrency=2)
        first, second = hasher.hash(PASSWORD), hasher.hash(PASSWORD)
        second_done = threading.Event()
        real = hashing._verify_encoded

        def ordered(encoded: bytes, secret: bytes, type_: Type) -> None:
            if encoded == first.encode():
                second_done.wait(timeout=10)
            try:
                real(encoded, secret, type_)
            finally:
                if encoded == second.encode():
                    second_done.set()

        wrap_verify(ordered)
        assert hasher.verify_any(PASSWORD, [first, second]) == 0

    def test_tuple_accepted(self) -> None:
        """Any sequence works, a tuple included."""
        assert FAST.verify_any(PASSWORD, (FAST.hash(PASSWORD),)) == 0

    def test_nfkc(self) -> None:
        """The password is normalised before it is compared."""
        assert FAST.verify_any("ﬁ", [FAST.hash("x"), FAST.hash("fi")]) == 1

    def test_lone_surrogate_is_no_match(self) -> None:
        """A password with a lone surrogate matches nothing."""
        assert FAST.verify_any("a\ud800", [FAST.hash("a")]) is None

    @pytest.mark.parametrize("value", [None, b"password", 42])
    def test_non_str_password(self, value: object) -> None:
        """A password that is not a str is a TypeError."""
        with pytest.raises(TypeError):
            FAST.verify_any(value, [FAST.hash(PASSWORD)])  # type: ignore[arg-type]

    @pytest.mark.parametrize("value", ["$argon2id$v=19$m=8,t=1,p=1$x$y", b"abc"])
    def test_single_string_is_type_error(self, value: object) -> None:
        """A single str or bytes instead of a sequence of hashes is a TypeError."""
        with pytest.raises(TypeError, match="sequence"):
            FAST.verify_any(PASSWORD, value)  # type: ignore[arg-type]

    @pytest.mark.parametrize("position", [0, 3, 5])
    def test_malformed_raises_before_any_verification(
        self, position: int, wrap_verify: Callable[[VerifyFn], None]
    ) -> None:
        """A malformed entry raises InvalidHashError, wherever it is, before argon2 runs."""
        hashes: list[object] = [FAST.hash(PASSWORD), *history(FAST, 5)]
        hashes[position] = BCRYPT
        calls: list[bytes] = []

        def record(encoded: bytes, secret: bytes, type_: Type) -> None:
            calls.append(encoded)

        wrap_verify(record)
        with pytest.raises(InvalidHashError):
            FAST.verify_any(PASSWORD, hashes)  # type: ignore[arg-type]
        assert calls == []

    def test_argon2_refusal_raises(self, wrap_verify: Callable[[VerifyFn], None]) -> None:
        """A hash argon2 refuses while verifying raises InvalidHashError."""

        def refuse(encoded: bytes, secret: bytes, type_: Type) -> None:
            raise VerificationError("Memory allocation error")

        wrap_verify(refuse)
        with pytest.raises(InvalidHashError):
            FAST.verify_any(PASSWORD, history(FAST, 3))

    def test_concurrency_bound(self, wrap_verify: Callable[[VerifyFn], None]) -> None:
        """With max_concurrency=2, 8 verifications never run more than 2 at a time."""
        hasher = PasswordHasher(TESTS_ONLY, max_concurrency=2)
        hashes = history(hasher, 8)
        lock = threading.Lock()
        active = peak = 0
        two_running = threading.Event()
        real = hashing._verify_encoded

        def counting(encoded: bytes, secret: bytes, type_: Type) -> None:
            nonlocal active, peak
            with lock:
                active += 1
                peak = max(peak, active)
                if active >= 2:
                    two_running.set()
            try:
                # Hold each slot until two overlap, then linger: an unbounded pool would
                # let more in meanwhile. No timing is asserted.
                two_running.wait(timeout=10)
                time.sleep(0.005)
                real(encoded, secret, type_)
            finally:
                with lock:
                    active -= 1

        wrap_verify(counting)
        assert hasher.verify_any(PASSWORD, hashes) is None
        assert peak == 2

    def test_bound_is_shared_across_callers(self, wrap_verify: Callable[[VerifyFn], None]) -> None:
        """The bound holds for the hasher as a whole when many threads call at once."""
        hasher = PasswordHasher(TESTS_ONLY, max_concurrency=3)
        hashes = history(hasher, 4)
        lock = threading.Lock()
        active = peak = 0
        real = hashing._verify_encoded

        def counting(encoded: bytes, secret: bytes, type_: Type) -> None:
            nonlocal active, peak
            with lock:
                active += 1
                peak = max(peak, active)
            try:
                time.sleep(0.002)
                real(encoded, secret, type_)
            finally:
                with lock:
                    active -= 1

        wrap_verify(counting)
        callers = [
            threading.Thread(target=hasher.verify_any, args=(PASSWORD, hashes)) for _ in range(6)
        ]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
        assert peak <= 3

    def test_match_cancels_pending_work(self, wrap_verify: Callable[[VerifyFn], None]) -> None:
        """Once the first hash matches, hashes not yet started are never verified."""
        hasher = PasswordHasher(TESTS_ONLY, max_concurrency=1)
        hashes = [hasher.hash(PASSWORD), *history(hasher, 7)]
        index_of = {stored.encode(): index for index, stored in enumerate(hashes)}
        started: list[int] = []
        returned = threading.Event()
        real = hashing._verify_encoded

        def gated(encoded: bytes, secret: bytes, type_: Type) -> None:
            index = index_of.get(encoded)
            if index is not None:
                started.append(index)
                if index > 0:
                    # Keep the only worker busy until verify_any has returned.
                    returned.wait(timeout=10)
            real(encoded, secret, type_)

        wrap_verify(gated)
        assert hasher.verify_any(PASSWORD, hashes) == 0
        returned.set()
        # The single worker serves requests in order, so once this returns, anything of the
        # first call that was not cancelled has run.
        assert hasher.verify_any(PASSWORD, [hasher.hash("unrelated")]) is None
        assert set(started) <= {0, 1}

    def test_thread_safety(self) -> None:
        """Many threads calling verify_any on one hasher each get their own right answer."""
        hasher = PasswordHasher(TESTS_ONLY, max_concurrency=2)
        passwords = [f"password-{index}" for index in range(6)]
        hashes = [hasher.hash(password) for password in passwords]
        callers = 24
        results: list[int | None] = [None] * callers
        start = threading.Barrier(callers)

        def call(slot: int) -> None:
            start.wait(timeout=10)
            password = passwords[slot % 6] if slot % 7 else "matches nothing"
            results[slot] = hasher.verify_any(password, hashes)

        threads = [threading.Thread(target=call, args=(slot,)) for slot in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        expected = [slot % 6 if slot % 7 else None for slot in range(callers)]
        assert expected == results

    def test_threads_reused(self) -> None:
        """Repeated calls reuse the hasher's worker threads instead of starting new ones."""
        hasher = PasswordHasher(TESTS_ONLY, max_concurrency=2)
        hashes = history(hasher, 6)
        for _ in range(5):
            hasher.verify_any(PASSWORD, hashes)
        workers = {
            thread.ident
            for thread in threading.enumerate()
            if thread.name.startswith("kaspi-identity-verify")
        }
        executor = hasher._executor
        assert executor is not None
        assert len(executor._threads) <= 2
        assert {thread.ident for thread in executor._threads} <= workers


# --------------------------------------------------------------------------- calibrate


def linear_timer(per_pass: float, base: float = 0.0) -> Callable[[HashProfile], float]:
    """Return a fake timer where a hash takes ``base + per_pass * time_cost`` seconds."""

    def timer(profile: HashProfile) -> float:
        return base + per_pass * profile.time_cost

    return timer


class TestCalibrate:
    def test_linear(self) -> None:
        """With 0.1 s per pass and a 0.55 s target, five passes fit."""
        profile = calibrate(0.55, hasher_timer=linear_timer(0.1))
        assert dataclasses.replace(OWASP_MINIMUM, time_cost=5) == profile

    def test_boundary_is_inclusive(self) -> None:
        """A time exactly equal to the target fits."""
        assert calibrate(2.0, hasher_timer=linear_timer(0.5)).time_cost == 4

    def test_fixed_cost_shifts_estimate(self) -> None:
        """A fixed per-hash cost is accounted for, not extrapolated linearly."""
        assert calibrate(1.05, hasher_timer=linear_timer(0.1, base=0.4)).time_cost == 6

    def test_keeps_memory_and_lanes(self) -> None:
        """The result carries the memory_cost and parallelism asked for."""
        profile = calibrate(1.0, memory_cost=65536, parallelism=4, hasher_timer=linear_timer(0.01))
        assert (profile.memory_cost, profile.parallelism) == (65536, 4)

    def test_capped_by_max_time_cost(self) -> None:
        """However fast the host, time_cost never exceeds max_time_cost."""
        assert calibrate(1.0, max_time_cost=10, hasher_timer=linear_timer(1e-6)).time_cost == 10

    def test_zero_time_timer(self) -> None:
        """A timer reporting zero seconds yields max_time_cost rather than dividing by it."""
        assert calibrate(1.0, max_time_cost=7, hasher_timer=lambda _: 0.0).time_cost == 7

    def test_too_slow_raises(self) -> None:
        """If even one pass is over the target, ValueError says what to change."""
        with pytest.raises(ValueError, match="memory_cost"):
            calibrate(0.5, hasher_timer=linear_timer(1.0))

    def test_median_of_runs(self) -> None:
        """Each candidate is judged by the median of its runs, so one outlier is ignored."""
        spikes = iter(range(10_000))

        def spiky(profile: HashProfile) -> float:
            # Every third run is a 100x outlier.
            outlier = next(spikes) % 3 == 0
            return 0.1 * profile.time_cost * (100 if outlier else 1)

        assert calibrate(0.5, runs=3, hasher_timer=spiky).time_cost == 5

    def test_few_measurements(self) -> None:
        """The search times a handful of candidates, not every time_cost."""
        seen: list[int] = []

        def timer(profile: HashProfile) -> float:
            seen.append(profile.time_cost)
            return 0.013 * profile.time_cost

        assert calibrate(0.5, runs=1, hasher_timer=timer).time_cost == 38
        assert len(seen) <= 6

    @pytest.mark.parametrize(
        ("kwargs", "error"),
        [
            ({"target_seconds": 0}, ValueError),
            ({"target_seconds": -1.0}, ValueError),
            ({"target_seconds": float("nan")}, ValueError),
            ({"target_seconds": float("inf")}, ValueError),
            ({"target_seconds": "1"}, TypeError),
            ({"target_seconds": True}, TypeError),
            ({"max_time_cost": 0}, ValueError),
            ({"max_time_cost": 2.0}, TypeError),
            ({"runs": 0}, ValueError),
            ({"memory_cost": 4}, ValueError),
            ({"parallelism": 0}, ValueError),
        ],
    )
    def test_bad_arguments(self, kwargs: dict[str, object], error: type[Exception]) -> None:
        """Bad arguments are refused before anything is timed."""
        calls: list[HashProfile] = []

        def timer(profile: HashProfile) -> float:
            calls.append(profile)
            return 0.0

        with pytest.raises(error):
            calibrate(hasher_timer=timer, **kwargs)  # type: ignore[arg-type]
        assert calls == []

    def test_real_timer(self) -> None:
        """The default timer hashes for real; a generous target on tiny memory fits t=3."""
        assert calibrate(30.0, memory_cost=8, max_time_cost=3, runs=1).time_cost == 3

    @settings(max_examples=200, deadline=None)
    @given(
        steps=st.lists(
            st.floats(min_value=0.0, max_value=1.0, allow_nan=False), min_size=1, max_size=40
        ),
        target=st.floats(min_value=0.001, max_value=20.0),
    )
    def test_matches_exhaustive_search(self, steps: list[float], target: float) -> None:
        """For any non-decreasing timing curve, the answer is the largest t that fits."""
        times: list[float] = []
        total = 0.0
        for step in steps:
            total += step
            times.append(total)

        def timer(profile: HashProfile) -> float:
            return times[profile.time_cost - 1]

        fitting = [t for t, seconds in enumerate(times, start=1) if seconds <= target]
        if not fitting:
            with pytest.raises(ValueError, match="target"):
                calibrate(target, max_time_cost=len(times), hasher_timer=timer)
        else:
            profile = calibrate(target, max_time_cost=len(times), hasher_timer=timer)
            assert max(fitting) == profile.time_cost


# --------------------------------------------------------------------------- properties

# Any text UTF-8 can encode: everything but lone surrogates.
without_surrogates = st.text(st.characters(codec="utf-8"), max_size=64)


class TestProperties:
    @settings(max_examples=50, deadline=None)
    @given(password=without_surrogates)
    def test_round_trip_and_mismatch(self, password: str) -> None:
        """Any text verifies against its own hash, and the text plus "x" does not."""
        stored = FAST.hash(password)
        FAST.verify(stored, password)
        with pytest.raises(PasswordMismatchError):
            FAST.verify(stored, password + "x")


# --------------------------------------------------------------------------- huge input


def huge(kind: str) -> str:
    """A huge password, built when the test runs (so a 100 MB string lives only that long)."""
    return {
        "1MB": "x" * 1_000_000,
        "100MB": "x" * 100_000_000,
        "1M-U+FDFA": "\ufdfa" * 1_000_000,  # NFKC would make 18M code points of it
        "1MB-cyrillic": "я" * 500_000,
        "just-over": "я" * (MAX_PASSWORD_LENGTH + 1),
        "expands-over": "\ufdfa" * (MAX_PASSWORD_LENGTH // 18 + 1),
    }[kind]


HUGE_KINDS = ["1MB", "100MB", "1M-U+FDFA", "1MB-cyrillic", "just-over", "expands-over"]


class TestHugeInput:
    """Past MAX_PASSWORD_LENGTH a password is refused or fails to verify, before NFKC or argon2.

    The results are checked here; the time each call takes is measured in
    benchmarks/bench_inputs.py, never asserted.
    """

    stored = FAST.hash(PASSWORD)

    def test_limit_is_the_policy_hard_cap(self) -> None:
        """The hasher takes every password a policy can accept: 4096 code points."""
        from kaspi_identity.policy._policy import _MAX_LIMIT

        assert 4096 == MAX_PASSWORD_LENGTH == _MAX_LIMIT

    @pytest.mark.parametrize("kind", HUGE_KINDS)
    def test_hash_refuses(self, kind: str) -> None:
        """hash() raises InvalidPasswordError (a ValueError) that does not quote the input."""
        with pytest.raises(InvalidPasswordError, match="longer than 4096 characters") as info:
            FAST.hash(huge(kind))
        assert isinstance(info.value, ValueError)
        assert len(str(info.value)) < 100
        assert info.value.__context__ is None

    @pytest.mark.parametrize("kind", HUGE_KINDS)
    def test_verify_is_a_mismatch(self, kind: str) -> None:
        """verify() raises PasswordMismatchError: no stored hash can come from such input."""
        with pytest.raises(PasswordMismatchError):
            FAST.verify(self.stored, huge(kind))

    @pytest.mark.parametrize("kind", HUGE_KINDS)
    def test_verify_and_update_is_a_mismatch(self, kind: str) -> None:
        """verify_and_update() answers (False, None)."""
        assert (False, None) == FAST.verify_and_update(self.stored, huge(kind))

    @pytest.mark.parametrize("kind", HUGE_KINDS)
    def test_verify_any_finds_nothing(self, kind: str) -> None:
        """verify_any() answers None, even next to the hash of the input's own prefix."""
        password = huge(kind)
        prefix = FAST.hash(password[:200])
        assert FAST.verify_any(password, [self.stored, prefix]) is None

    def test_malformed_hash_still_wins(self) -> None:
        """A malformed stored hash is InvalidHashError whatever the password's length."""
        with pytest.raises(InvalidHashError):
            FAST.verify("not a hash", huge("1MB"))
        with pytest.raises(InvalidHashError):
            FAST.verify_any(huge("1MB"), ["not a hash"])

    def test_wrong_type_still_wins(self) -> None:
        """A non-str password is a TypeError, as before."""
        with pytest.raises(TypeError):
            FAST.verify(self.stored, b"x" * 1_000_000)  # type: ignore[arg-type]

    def test_at_the_limit_after_nfkc(self) -> None:
        """227 x U+FDFA is 4086 code points after NFKC: hashed and verified, NFKC-equal form too."""
        password = "\ufdfa" * 227
        stored = FAST.hash(password)
        FAST.verify(stored, unicodedata.normalize("NFKC", password))
        assert FAST.verify_any(password, [stored]) == 0

    @pytest.mark.parametrize("kind", ["1MB", "100MB"])
    def test_huge_stored_hash(self, kind: str) -> None:
        """A stored "hash" of 1 MB or 100 MB is InvalidHashError, for every method."""
        text = "$argon2id$v=19$m=8,t=1,p=1$" + huge(kind)
        with pytest.raises(InvalidHashError, match="longer than"):
            FAST.verify(text, PASSWORD)
        with pytest.raises(InvalidHashError):
            FAST.verify_and_update(text, PASSWORD)
        with pytest.raises(InvalidHashError):
            FAST.needs_rehash(text)
        with pytest.raises(InvalidHashError):
            FAST.verify_any(PASSWORD, [self.stored, text])

    def test_largest_profile_lengths_round_trip(self) -> None:
        """1024-byte salts and tags (the most a profile allows) make hashes that verify."""
        profile = dataclasses.replace(TESTS_ONLY, salt_len=1024, hash_len=1024)
        hasher = PasswordHasher(profile)
        stored = hasher.hash(PASSWORD)
        hasher.verify(stored, PASSWORD)
        assert not hasher.needs_rehash(stored)

    @pytest.mark.parametrize("field", ["salt_len", "hash_len"])
    def test_profile_lengths_are_bounded(self, field: str) -> None:
        """A salt or tag over 1024 bytes is refused when the profile is built, naming the field
        (its hashes would be longer than any stored hash the hasher reads)."""
        with pytest.raises(ValueError, match=field):
            dataclasses.replace(TESTS_ONLY, **{field: 1025})
