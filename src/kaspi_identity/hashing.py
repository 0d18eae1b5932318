"""Argon2id password hashing: cost profiles, a hasher, and a calibration helper.

A :class:`PasswordHasher` turns a password into a self-describing argon2id string (the
PHC format, ``$argon2id$v=19$m=…,t=…,p=…$salt$tag``) and checks a password against one.
Its cost comes from a :class:`HashProfile`; named profiles are module constants and live in
:data:`PROFILES` by name. :func:`calibrate` measures this host and picks a ``time_cost`` for a
target duration.

Every password is NFKC-normalised first (see :func:`kaspi_identity._normalize`), so a
password typed with compatibility characters verifies the same as its plain form. A password
longer than :data:`MAX_PASSWORD_LENGTH` is never normalised nor hashed: :meth:`~PasswordHasher.hash`
refuses it and the verifying methods treat it as a mismatch, so no input costs more than a
few milliseconds besides argon2 itself.

Usage::

    hasher = PasswordHasher()                  # OWASP_MINIMUM
    stored = hasher.hash("correct horse")
    ok, new_hash = hasher.verify_and_update(stored, "correct horse")
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, TypeVar

from argon2.exceptions import HashingError as _Argon2HashingError
from argon2.exceptions import VerificationError, VerifyMismatchError
from argon2.low_level import Type, hash_secret, verify_secret

from kaspi_identity._errors import (
    HashingError,
    InvalidHashError,
    InvalidPasswordError,
    PasswordMismatchError,
)
from kaspi_identity._normalize import normalize_password

if TYPE_CHECKING:  # imported when first needed: they cost ~15 ms at import time
    from concurrent.futures import Future, ThreadPoolExecutor

__all__ = [
    "MAX_PASSWORD_LENGTH",
    "OWASP_MINIMUM",
    "PROFILES",
    "RFC_9106_LOW_MEMORY",
    "TESTS_ONLY",
    "HashProfile",
    "PasswordHasher",
    "calibrate",
]

# Limits of the argon2 reference implementation (argon2.h); a profile outside them could
# never hash, so it is refused when it is built rather than at the first login.
_MAX_U32: Final = 2**32 - 1
_MAX_PARALLELISM: Final = 2**24 - 1
_MIN_SALT_LEN: Final = 8
_MIN_HASH_LEN: Final = 4
# Far above any real need (RFC 9106: 16-byte salts, 32-byte tags) and low enough that a hash
# this library makes always fits _MAX_HASH_CHARS, the longest stored hash it reads.
_MAX_SALT_LEN: Final = 1024
_MAX_HASH_LEN: Final = 1024
_MAX_HASH_CHARS: Final = 4096

#: The most code points a password may have, after NFKC normalisation, to be hashed: the
#: largest ``max_length`` a :class:`~kaspi_identity.PasswordPolicy` allows. Input longer than
#: four times this is refused before it is normalised (NFKC never merges more than four code
#: points into one, and may expand one into eighteen).
MAX_PASSWORD_LENGTH: Final = 4096
_NFKC_MAX_SHRINK: Final = 4
_CURRENT_VERSION: Final = 19  # argon2 v1.3 (0x13)
_LEGACY_VERSION: Final = 16  # argon2 v1.0 (0x10); hashes without a "v=" field are this


@dataclasses.dataclass(frozen=True, slots=True)
class HashProfile:
    """Argon2id cost parameters; validated when built, immutable afterwards.

    Derive a variant with :func:`dataclasses.replace`, which validates again.

    Attributes:
        time_cost: Passes over memory (argon2 ``t``), at least 1.
        memory_cost: Memory per hash in KiB (argon2 ``m``), at least ``8 * parallelism``.
        parallelism: Lanes (argon2 ``p``), at least 1. It changes the resulting hash.
        hash_len: Length of the tag in bytes, 4 (argon2's minimum) to 1024.
        salt_len: Length of the random salt in bytes, 8 (argon2's minimum) to 1024.

    Raises:
        TypeError: A field is not an ``int`` (``bool`` included).
        ValueError: A field is out of range; the message names every offending field.

    """

    time_cost: int
    memory_cost: int
    parallelism: int
    hash_len: int = 32
    salt_len: int = 16

    def __post_init__(self) -> None:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        wrong_type = [
            f"{name}: must be int, not {type(value).__name__}"
            for name, value in fields.items()
            if not isinstance(value, int) or isinstance(value, bool)
        ]
        if wrong_type:
            raise TypeError(f"invalid hash profile: {'; '.join(wrong_type)}")

        problems: list[str] = []
        minimums = {
            "time_cost": 1,
            "parallelism": 1,
            "hash_len": _MIN_HASH_LEN,
            "salt_len": _MIN_SALT_LEN,
        }
        for name, minimum in minimums.items():
            if fields[name] < minimum:
                problems.append(f"{name}: must be at least {minimum}, got {fields[name]}")
        if self.parallelism > _MAX_PARALLELISM:
            problems.append(f"parallelism: must be at most {_MAX_PARALLELISM}")
        if self.memory_cost < 8 * max(self.parallelism, 1):
            problems.append(
                f"memory_cost: must be at least 8 KiB per lane (8 * parallelism = "
                f"{8 * max(self.parallelism, 1)}), got {self.memory_cost}"
            )
        for name in ("time_cost", "memory_cost"):
            if fields[name] > _MAX_U32:
                problems.append(f"{name}: must be at most {_MAX_U32}")
        for name, maximum in (("hash_len", _MAX_HASH_LEN), ("salt_len", _MAX_SALT_LEN)):
            if fields[name] > maximum:
                problems.append(f"{name}: must be at most {maximum}, got {fields[name]}")
        if problems:
            raise ValueError(f"invalid hash profile: {'; '.join(problems)}")

    @classmethod
    def named(cls, name: str) -> HashProfile:
        """Return the profile registered in :data:`PROFILES` under ``name``.

        Raises:
            TypeError: ``name`` is not a ``str``.
            ValueError: No profile has that name; the message lists the known names.

        """
        if not isinstance(name, str):
            raise TypeError(f"profile name must be str, not {type(name).__name__}")
        try:
            return PROFILES[name]
        except KeyError:
            known = ", ".join(sorted(PROFILES))
            raise ValueError(f"unknown hash profile {name!r}; known: {known}") from None


#: The default. OWASP Password Storage Cheat Sheet's argon2id floor: 19 MiB, 2 passes, 1 lane.
OWASP_MINIMUM: Final = HashProfile(time_cost=2, memory_cost=19456, parallelism=1)

#: RFC 9106 section 4, second recommended option: 64 MiB, 3 passes, 4 lanes.
#: Stronger than OWASP_MINIMUM; costs 64 MiB per concurrent hash or verify.
RFC_9106_LOW_MEMORY: Final = HashProfile(time_cost=3, memory_cost=65536, parallelism=4)

#: TESTS ONLY - NEVER USE IN PRODUCTION. The cheapest profile argon2 accepts (8 KiB,
#: 1 pass): it protects nothing, and exists so test suites can hash thousands of passwords.
TESTS_ONLY: Final = HashProfile(time_cost=1, memory_cost=8, parallelism=1)

#: Every named profile, by the name :meth:`HashProfile.named` and configuration files use.
PROFILES: Final[Mapping[str, HashProfile]] = MappingProxyType(
    {
        "owasp-minimum": OWASP_MINIMUM,
        "rfc9106-low-memory": RFC_9106_LOW_MEMORY,
        "tests-only": TESTS_ONLY,
    }
)


# --------------------------------------------------------------------------- parsing

_T = TypeVar("_T")
_TYPES: Final = {"argon2id": Type.ID, "argon2i": Type.I, "argon2d": Type.D}
_DECIMAL: Final = r"(0|[1-9][0-9]{0,9})"
_B64: Final = r"([A-Za-z0-9+/]+)"
_PHC: Final = re.compile(
    rf"\$(argon2id|argon2i|argon2d)(?:\$v={_DECIMAL})?"
    rf"\$m={_DECIMAL},t={_DECIMAL},p={_DECIMAL}\${_B64}\${_B64}"
)


@dataclasses.dataclass(frozen=True, slots=True)
class _ParsedHash:
    """A stored hash that passed the strict shape check, and what it says about itself."""

    encoded: bytes
    type: Type
    version: int
    memory_cost: int
    time_cost: int
    parallelism: int
    salt_len: int
    hash_len: int


def _b64_length(text: str) -> int | None:
    """Return the decoded length of unpadded canonical base64 ``text``, None if it isn't."""
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    # Rejects a length of 4k+1 and non-zero padding bits, exactly as libargon2 does.
    if base64.b64encode(raw).decode("ascii").rstrip("=") != text:
        return None
    return len(raw)


def _parse_hash(stored: object) -> _ParsedHash:
    """Check ``stored`` is a well-formed argon2 PHC string and return its parameters.

    Raises:
        InvalidHashError: It is not a ``str``, or not an argon2 hash argon2 could verify.
            The message never quotes the hash.

    """
    if not isinstance(stored, str):
        raise InvalidHashError(f"a stored hash must be str, not {type(stored).__name__}")
    if len(stored) > _MAX_HASH_CHARS:
        raise InvalidHashError(f"the stored hash is longer than {_MAX_HASH_CHARS} characters")
    match = _PHC.fullmatch(stored)
    if match is None:
        raise InvalidHashError("the stored hash is not a well-formed argon2 hash")
    name, version, memory, time_cost, lanes, salt, tag = match.groups()
    parsed_version = _LEGACY_VERSION if version is None else int(version)
    salt_len, hash_len = _b64_length(salt), _b64_length(tag)
    m, t, p = int(memory), int(time_cost), int(lanes)
    if (
        parsed_version not in (_LEGACY_VERSION, _CURRENT_VERSION)
        or salt_len is None
        or hash_len is None
        or salt_len < _MIN_SALT_LEN
        or hash_len < _MIN_HASH_LEN
        or not 1 <= t <= _MAX_U32
        or not 1 <= p <= _MAX_PARALLELISM
        or not 8 * p <= m <= _MAX_U32
    ):
        raise InvalidHashError("the stored hash has argon2 parameters out of range")
    return _ParsedHash(
        encoded=stored.encode("ascii"),
        type=_TYPES[name],
        version=parsed_version,
        memory_cost=m,
        time_cost=t,
        parallelism=p,
        salt_len=salt_len,
        hash_len=hash_len,
    )


def _normal_form(password: object) -> str | None:
    """The NFKC form of ``password``, or None when it is longer than MAX_PASSWORD_LENGTH.

    Input longer than four times the limit is not even normalised: NFKC cannot bring it
    under the limit, and could make it eighteen times longer first.

    Raises:
        TypeError: ``password`` is not a ``str``.
    """
    if not isinstance(password, str):
        raise TypeError(f"password must be str, not {type(password).__name__}")
    if len(password) > _NFKC_MAX_SHRINK * MAX_PASSWORD_LENGTH:
        return None
    normal = normalize_password(password)
    return normal if len(normal) <= MAX_PASSWORD_LENGTH else None


def _encode(password: str | None) -> bytes | None:
    """Return the UTF-8 bytes of a normalised password, None if it holds a lone surrogate."""
    if password is None:
        return None
    try:
        return password.encode("utf-8")
    except UnicodeEncodeError:
        # Returned, not raised from here: the UnicodeEncodeError holds the password, and it
        # must not ride along as the __context__ of the error the caller sees.
        return None


def _verify_encoded(encoded: bytes, secret: bytes, type_: Type) -> None:
    """Run the argon2 verification itself (the seam the tests wrap to observe concurrency)."""
    verify_secret(encoded, secret, type_)


def _matches(parsed: _ParsedHash, secret: bytes) -> bool:
    """Return whether ``secret`` matches ``parsed``; argon2 compares in constant time.

    Raises:
        InvalidHashError: argon2 refused the hash for a reason other than a mismatch.

    """
    try:
        _verify_encoded(parsed.encoded, secret, parsed.type)
    except VerifyMismatchError:
        return False
    except VerificationError as exc:
        # libargon2's fixed error text (e.g. "Memory allocation error"), never the input.
        raise InvalidHashError(f"argon2 could not verify the stored hash: {exc}") from None
    return True


# --------------------------------------------------------------------------- hasher


def _default_concurrency() -> int:
    return min(os.cpu_count() or 1, 4)


class PasswordHasher:
    """Hash passwords with argon2id and verify them; safe to share between threads.

    Args:
        profile: The cost of new hashes, and the parameters :meth:`needs_rehash` compares
            stored hashes against. Defaults to :data:`OWASP_MINIMUM`.
        max_concurrency: The most argon2 verifications :meth:`verify_any` runs at once,
            counted across every thread using this hasher. Each one holds the stored hash's
            ``m`` KiB of memory while it runs, so this bounds :meth:`verify_any`'s peak memory
            at ``max_concurrency * m`` KiB. Defaults to ``min(os.cpu_count(), 4)``.

    Raises:
        TypeError: ``profile`` is not a :class:`HashProfile`, or ``max_concurrency`` not an int.
        ValueError: ``max_concurrency`` is less than 1.

    """

    __slots__ = ("_executor", "_executor_pid", "_lock", "_max_concurrency", "_profile")

    def __init__(
        self, profile: HashProfile = OWASP_MINIMUM, *, max_concurrency: int | None = None
    ) -> None:
        if not isinstance(profile, HashProfile):
            raise TypeError(f"profile must be a HashProfile, not {type(profile).__name__}")
        if max_concurrency is None:
            max_concurrency = _default_concurrency()
        elif not isinstance(max_concurrency, int) or isinstance(max_concurrency, bool):
            raise TypeError(
                f"max_concurrency must be int or None, not {type(max_concurrency).__name__}"
            )
        elif max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self._profile = profile
        self._max_concurrency = max_concurrency
        self._lock = threading.Lock()
        # Created on the first verify_any, never at import or construction.
        self._executor: ThreadPoolExecutor | None = None
        self._executor_pid = 0

    @property
    def profile(self) -> HashProfile:
        """The profile new hashes are made with."""
        return self._profile

    @property
    def max_concurrency(self) -> int:
        """The most argon2 verifications :meth:`verify_any` runs at once."""
        return self._max_concurrency

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._profile!r})"

    def hash(self, password: str) -> str:
        """Return an argon2id hash of the NFKC-normalised ``password``, with a fresh salt.

        Any password of up to :data:`MAX_PASSWORD_LENGTH` code points (after NFKC) is
        accepted, NUL characters included.

        Raises:
            TypeError: ``password`` is not a ``str``.
            InvalidPasswordError: ``password`` is longer than :data:`MAX_PASSWORD_LENGTH`
                (refused before it is normalised or hashed), or holds a lone surrogate, so it
                has no UTF-8 form.
            HashingError: argon2 failed (for instance, memory could not be allocated).

        """
        normal = _normal_form(password)
        if normal is None:
            raise InvalidPasswordError(
                f"a password longer than {MAX_PASSWORD_LENGTH} characters cannot be hashed"
            )
        secret = _encode(normal)
        if secret is None:
            raise InvalidPasswordError(
                "the password contains a lone surrogate code point and cannot be hashed"
            )
        profile = self._profile
        try:
            encoded = hash_secret(
                secret=secret,
                salt=os.urandom(profile.salt_len),
                time_cost=profile.time_cost,
                memory_cost=profile.memory_cost,
                parallelism=profile.parallelism,
                hash_len=profile.hash_len,
                type=Type.ID,
                version=_CURRENT_VERSION,
            )
        except _Argon2HashingError as exc:
            raise HashingError(f"argon2 could not hash the password: {exc}") from None
        return encoded.decode("ascii")

    def verify(self, hash: str, password: str) -> None:
        """Check that ``password`` matches the stored ``hash``; return None if it does.

        Hashes of the argon2i and argon2d variants verify too (so a store migrated from
        another system keeps working), but :meth:`needs_rehash` reports them as due for a
        rehash to argon2id.

        Raises:
            TypeError: ``password`` is not a ``str``.
            InvalidHashError: ``hash`` is not a ``str`` or not a well-formed argon2 hash.
            PasswordMismatchError: The password does not match. A password holding a lone
                surrogate, or longer than :data:`MAX_PASSWORD_LENGTH`, cannot have been
                hashed, so it is a mismatch too (found without normalising or hashing it).

        """
        if not isinstance(password, str):
            raise TypeError(f"password must be str, not {type(password).__name__}")
        parsed = _parse_hash(hash)
        secret = _encode(_normal_form(password))
        if secret is None or not _matches(parsed, secret):
            raise PasswordMismatchError("the password does not match the stored hash")

    def verify_and_update(self, hash: str, password: str) -> tuple[bool, str | None]:
        """Verify ``password`` and, if it matches a hash made with other parameters, rehash it.

        This is the rehash-on-login step: store the new hash when one comes back.

        Returns:
            ``(False, None)`` on a mismatch (an over-long password included);
            ``(True, new_hash)`` when the password matches and :meth:`needs_rehash` is true;
            ``(True, None)`` when it matches and the hash is current.

        Raises:
            TypeError: ``password`` is not a ``str``.
            InvalidHashError: ``hash`` is not a ``str`` or not a well-formed argon2 hash.

        """
        try:
            self.verify(hash, password)
        except PasswordMismatchError:
            return False, None
        if self.needs_rehash(hash):
            return True, self.hash(password)
        return True, None

    def needs_rehash(self, hash: str) -> bool:
        """Return whether ``hash`` differs from what this hasher would make now.

        True for any argon2i/argon2d hash, any argon2 version before 1.3, and any
        difference in ``time_cost``, ``memory_cost``, ``parallelism``, ``hash_len`` or
        ``salt_len`` from :attr:`profile`, weaker or stronger.

        Raises:
            InvalidHashError: ``hash`` is not a ``str`` or not a well-formed argon2 hash.

        """
        parsed = _parse_hash(hash)
        profile = self._profile
        return (
            parsed.type is not Type.ID
            or parsed.version != _CURRENT_VERSION
            or parsed.time_cost != profile.time_cost
            or parsed.memory_cost != profile.memory_cost
            or parsed.parallelism != profile.parallelism
            or parsed.hash_len != profile.hash_len
            or parsed.salt_len != profile.salt_len
        )

    def verify_any(self, password: str, hashes: Sequence[str]) -> int | None:
        """Return the index of the first hash in ``hashes`` that ``password`` matches.

        Meant for password history ("was this one used before?"). The verifications run in
        worker threads (argon2 releases the GIL), at most ``max_concurrency`` at once across
        all callers of this hasher; each holds its hash's ``m`` KiB while it runs. Once a
        match is found, work on later hashes that has not started is cancelled. The threads
        are created on the first call and reused.

        Every hash is checked for well-formedness before any verification starts, so a
        malformed entry raises whatever its position and whether or not another matches.

        Returns:
            The lowest index whose hash matches, or None when none does, ``hashes`` is empty,
            or ``password`` holds a lone surrogate or is longer than
            :data:`MAX_PASSWORD_LENGTH` (it can never have been hashed).

        Raises:
            TypeError: ``password`` is not a ``str``, or ``hashes`` is a single ``str`` or
                ``bytes`` rather than a sequence of them.
            InvalidHashError: An entry is not a ``str`` or not a well-formed argon2 hash, or
                argon2 refused one while verifying.

        """
        if isinstance(hashes, (str, bytes)):
            raise TypeError("hashes must be a sequence of hash strings, not a single string")
        if not isinstance(password, str):
            raise TypeError(f"password must be str, not {type(password).__name__}")
        parsed = [_parse_hash(stored) for stored in hashes]
        secret = _encode(_normal_form(password))
        if not parsed or secret is None:
            return None
        executor = self._get_executor()
        futures = [executor.submit(_matches, entry, secret) for entry in parsed]
        try:
            return _lowest_match(futures)
        finally:
            for future in futures:
                future.cancel()

    def _get_executor(self) -> ThreadPoolExecutor:
        pid = os.getpid()
        with self._lock:
            # A forked child inherits the executor object but none of its threads.
            if self._executor is None or self._executor_pid != pid:
                from concurrent.futures import ThreadPoolExecutor

                self._executor = ThreadPoolExecutor(
                    max_workers=self._max_concurrency,
                    thread_name_prefix="kaspi-identity-verify",
                )
                self._executor_pid = pid
            return self._executor


# KiB x passes at or below which the async face hashes on the loop: TESTS_ONLY's 8 x 1.
_INLINE_COST: Final = 64


class _OffLoop(PasswordHasher):
    """The flows' hasher on the async face: argon2 never runs on the event loop.

    Each computation goes to the wrapped hasher's own pool of ``max_concurrency`` threads
    (the one :meth:`PasswordHasher.verify_any` fans out on), so the memory bound -- at most
    that many argon2 computations at once, each holding ``m`` KiB -- is the sync face's,
    shared by both faces. Its methods may be called only inside
    ``kaspi_identity._bridge.run_flow``.
    """

    __slots__ = ("_inline", "_inner")

    def __init__(self, inner: PasswordHasher) -> None:
        super().__init__(inner.profile, max_concurrency=inner.max_concurrency)
        self._inner = inner
        # A profile as cheap as TESTS_ONLY (a few microseconds) costs less than the hop to
        # a thread and back; it runs inline. Every real profile (MiB of memory) goes off.
        profile = inner.profile
        self._inline = profile.memory_cost * profile.time_cost <= _INLINE_COST

    def __repr__(self) -> str:
        return repr(self._inner)

    def hash(self, password: str) -> str:
        return self._off_loop(self._inner.hash, password)

    def verify(self, hash: str, password: str) -> None:
        self._off_loop(self._inner.verify, hash, password)

    def needs_rehash(self, hash: str) -> bool:
        return self._inner.needs_rehash(hash)

    def verify_any(self, password: str, hashes: Sequence[str]) -> int | None:
        # The fan-out runs on the pool; only the wait for it takes another thread.
        import asyncio

        from kaspi_identity._bridge import await_

        if self._inline:
            return self._inner.verify_any(password, hashes)
        return await_(asyncio.to_thread(self._inner.verify_any, password, hashes))

    def _off_loop(self, fn: Callable[..., _T], *args: object) -> _T:
        import asyncio

        from kaspi_identity._bridge import await_

        if self._inline:
            return fn(*args)

        future = self._inner._get_executor().submit(fn, *args)
        return await_(asyncio.wrap_future(future))


def _lowest_match(futures: Sequence[Future[bool]]) -> int | None:
    """Wait for ``futures`` (in index order of the hashes) until the lowest match is known."""
    from concurrent.futures import FIRST_COMPLETED, wait

    position = {future: index for index, future in enumerate(futures)}
    pending = set(futures)
    best: int | None = None
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            if future.result() and (best is None or position[future] < best):
                best = position[future]
        if best is not None:
            # Only hashes before the match can still change the answer.
            for future in [f for f in pending if position[f] > best]:
                future.cancel()
                pending.discard(future)
    return best


# --------------------------------------------------------------------------- calibration


def _time_one_hash(profile: HashProfile) -> float:
    """Return the seconds one argon2id hash with ``profile`` takes on this host."""
    salt = os.urandom(profile.salt_len)
    start = time.perf_counter()
    hash_secret(
        secret=b"kaspi-identity calibration probe",
        salt=salt,
        time_cost=profile.time_cost,
        memory_cost=profile.memory_cost,
        parallelism=profile.parallelism,
        hash_len=profile.hash_len,
        type=Type.ID,
        version=_CURRENT_VERSION,
    )
    return time.perf_counter() - start


def calibrate(
    target_seconds: float = 0.5,
    *,
    memory_cost: int = OWASP_MINIMUM.memory_cost,
    parallelism: int = OWASP_MINIMUM.parallelism,
    max_time_cost: int = 64,
    runs: int = 3,
    hasher_timer: Callable[[HashProfile], float] = _time_one_hash,
) -> HashProfile:
    """Return the profile with the largest ``time_cost`` that hashes within the target here.

    Memory is the first lever (set ``memory_cost`` as high as the host can give every
    concurrent login); this picks the number of passes for that memory. Each candidate is
    timed ``runs`` times and judged by the median. The search starts from an estimate made
    from ``time_cost=1`` and probes around it, so it times a handful of candidates, not all.
    Run it on the production host, not a laptop.

    Args:
        target_seconds: The most one hash may take, in seconds.
        memory_cost: Memory per hash in KiB, kept fixed.
        parallelism: Lanes, kept fixed.
        max_time_cost: The largest ``time_cost`` returned, however fast the host.
        runs: Timings per candidate; the median counts.
        hasher_timer: Returns the seconds one hash with the given profile takes. The default
            hashes a fixed probe with argon2id; tests pass a fake.

    Returns:
        A :class:`HashProfile` with the given memory and lanes, default lengths, and the
        largest ``time_cost`` in ``1..max_time_cost`` whose median time is <= the target.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: An argument is out of range, or even ``time_cost=1`` takes longer than
            ``target_seconds`` (lower ``memory_cost`` or raise the target).

    """
    import statistics

    if isinstance(target_seconds, bool) or not isinstance(target_seconds, (int, float)):
        raise TypeError(f"target_seconds must be a number, not {type(target_seconds).__name__}")
    if not (math.isfinite(target_seconds) and target_seconds > 0):
        raise ValueError(f"target_seconds must be positive and finite, got {target_seconds}")
    for name, value in (("max_time_cost", max_time_cost), ("runs", runs)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be int, not {type(value).__name__}")
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    base = HashProfile(time_cost=1, memory_cost=memory_cost, parallelism=parallelism)
    dataclasses.replace(base, time_cost=max_time_cost)  # validates the upper end too

    medians: dict[int, float] = {}

    def seconds(time_cost: int) -> float:
        if time_cost not in medians:
            candidate = dataclasses.replace(base, time_cost=time_cost)
            medians[time_cost] = statistics.median(hasher_timer(candidate) for _ in range(runs))
        return medians[time_cost]

    def fits(time_cost: int) -> bool:
        return seconds(time_cost) <= target_seconds

    if not fits(1):
        raise ValueError(
            f"one hash with time_cost=1 and memory_cost={memory_cost} KiB takes "
            f"{seconds(1):.3f}s, over the {target_seconds}s target; lower memory_cost "
            "or raise target_seconds"
        )
    # Invariant: fits(good) and (bad > max_time_cost or not fits(bad)).
    good, bad = 1, max_time_cost + 1
    one = seconds(1)
    ratio = target_seconds / one if one > 0 else math.inf
    guess = max_time_cost if ratio >= max_time_cost else max(int(ratio), 1)
    step = 1
    if guess > good and fits(guess):
        good = guess
        while good + step < bad and fits(good + step):
            good += step
            step *= 2
        bad = min(bad, good + step)
    elif guess > good:
        bad = guess
        while bad - step > good and not fits(bad - step):
            bad -= step
            step *= 2
        good = max(good, bad - step)
    while bad - good > 1:
        middle = (good + bad) // 2
        if fits(middle):
            good = middle
        else:
            bad = middle
    return dataclasses.replace(base, time_cost=good)
