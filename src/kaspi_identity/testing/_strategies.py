"""Hypothesis strategies: policies, passwords a policy accepts, passwords it rejects on purpose.

Passwords are assembled from the policy's own character pools (the classes it requires,
the alphabet it allows), so they shrink to readable examples such as ``"Aaaaaa0!"``; a
final ``filter`` through :meth:`PasswordPolicy.check` makes every promise exact even where
NFKC normalisation, the blocklist, personal data or zxcvbn have the last word.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import string
from collections.abc import Callable, Sequence
from typing import Any, Final

from hypothesis import reject
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from kaspi_identity._errors import PolicyConfigError
from kaspi_identity.policy import PRESET_NAMES, VIOLATION_CODES, PasswordPolicy, UserInfo
from kaspi_identity.policy._rules import CLASS_NAMES, Blocklist, personal_fragments
from kaspi_identity.policy._text import ASCII_PRINTABLE, LATIN_ALNUM, from_russian_layout

__all__ = ["passwords", "policies", "violating_passwords"]

#: Codes that are not a property of one password, and the tool that tests them instead.
_NOT_SINGLE_PASSWORD: Final = {
    "reused": (
        "'reused' depends on the account's stored history, not on one password: test it with "
        "kaspi_identity.PasswordHistory (or the kaspi_identity_service fixture) by setting "
        "a password and then setting it again"
    ),
    "similar_to_previous": (
        "'similar_to_previous' depends on the account's stored history, not on one password: "
        "test it with kaspi_identity.PasswordHistory (or the kaspi_identity_service fixture) "
        "and a policy with history_similar=True"
    ),
    "confirmation_mismatch": (
        "'confirmation_mismatch' compares two inputs: draw two passwords(policy) and pass one "
        "as policy.check(password, confirmation=other)"
    ),
}

# Characters no alphabet ever allows; the first is what a failing example shrinks to.
_CONTROL: Final = ("\x00", "\x1b", "\t", "\n", "\x7f", "\x85", "\ud800")
# Printable characters that restricted alphabets may leave out (all NFKC-stable).
_OUTSIDE: Final = ("ж", " ", "é", "€", "-", "_", "!", "ә", "😀", "ß")
# Extra characters the "any" alphabet allows, drawn after the classes for variety.
_ANY_EXTRA: Final = (" ", "ж", "Ә", "қ", "é", "€", "😀")
# Characters zxcvbn's l33t matcher reads as letters (see policy._rules.strength_window).
_L33T: Final = frozenset("!$%(+0123456789<@[{|")
# Random Latin letters of this length reach the zxcvbn score (measured; two spare).
_STRONG_LENGTH: Final = {1: 10, 2: 10, 3: 12, 4: 14}
# How far past the bounds the "too long" passwords reach, and generated ones without a bound.
_OVERSHOOT: Final = 32
_COMMON_WORDS: Final = (
    "password",
    "qwerty",
    "astana",
    "almaty",
    "kazakhstan",
    "parol",
    "admin",
    "welcome",
    "football",
)
_SEQUENCES: Final = ("abcdefghijklmnopqrstuvwxyz", "12345678901234567890", "qwertyuiopasdfghjkl")
_TO_RUSSIAN_LAYOUT: Final = str.maketrans(
    {from_russian_layout(c): c for c in "йцукенгшщзхъфывапролджэячсмитьбю"}
)


class _InvalidArgument(InvalidArgument, ValueError):
    """A strategy was asked for something impossible (both a Hypothesis and a value error)."""


def _class_rank(policy: PasswordPolicy) -> Callable[[str], tuple[int, str]]:
    """Sort key putting lower, upper, digit, special, then the rest: readable shrinks."""
    special = frozenset(policy.special_characters)

    def rank(char: str) -> tuple[int, str]:
        if char in string.ascii_lowercase:
            return (0, char)
        if char in string.ascii_uppercase:
            return (1, char)
        if char in string.digits:
            return (2, char)
        return (3 if char in special else 4, char)

    return rank


class _Plan:
    """What one policy lets a generator use: class pools, filler, length bounds."""

    def __init__(self, policy: PasswordPolicy) -> None:
        self.policy = policy
        rank = _class_rank(policy)
        self.pools: dict[str, list[str]] = {
            name: sorted(pool, key=rank) for name, pool in policy._class_pools().items()
        }
        if policy.alphabet == "any":
            allowed = [c for pool in self.pools.values() for c in pool] + list(_ANY_EXTRA)
        elif policy.alphabet == "ascii":
            allowed = list(ASCII_PRINTABLE)
        elif policy.alphabet == "latin_alnum":
            allowed = list(LATIN_ALNUM)
        else:
            allowed = list(policy.alphabet)
        self.filler: list[str] = sorted(set(allowed), key=rank)
        self.allowed = frozenset(self.filler) if policy.alphabet != "any" else None
        # One entry per required character: a class asked for twice is needed twice.
        self.needed = [name for name, count in policy._counts.items() for _ in range(count)]
        for name in CLASS_NAMES:
            if len(set(self.needed)) >= (policy.min_classes or 0):
                break
            if name not in self.needed and self.pools[name]:
                self.needed.append(name)
        self.low = max(policy.min_length or 0, len(self.needed), 1)
        self.high = policy.max_length if policy.max_length is not None else self.low + _OVERSHOOT

    def in_class(self, char: str) -> bool:
        return any(char in pool for pool in self.pools.values())


@st.composite
def _assemble(
    draw: st.DrawFn,
    *,
    pools: dict[str, list[str]],
    needed: Sequence[str],
    filler: Sequence[str],
    low: int,
    high: int,
    max_repeat: int | None,
    exact: bool = True,
) -> str:
    """``needed`` class characters placed among ``filler`` characters, ``low..high`` in all.

    Upper and lower case letters shrink to the front, digits and specials to the back, so a
    minimal example reads like a password a person would type (``"Aaaaaa0!"``). Runs longer
    than ``max_repeat`` are broken up; when the alphabet is too small for that, an ``exact``
    draw is rejected and any other keeps its run.
    """
    high = max(high, 0)
    low = min(max(low, 0), high)  # never longer than ``high``: the caller's room is exact
    needed = list(needed)[:high]
    rest_low = max(low - len(needed), 0) if filler else 0
    rest_high = max(high - len(needed), rest_low) if filler else 0
    chars: list[tuple[str, bool]] = []
    if filler:
        rest = draw(st.lists(st.sampled_from(filler), min_size=rest_low, max_size=rest_high))
        chars = [(c, False) for c in rest]
    # Lower before upper: each goes to the front, so the upper-case letter ends up first.
    drawn: dict[str, list[str]] = {}
    for name in sorted(needed, key=("lower", "upper", "digit", "special").index):
        # Characters of one class differ while the pool lasts, so they never make a run.
        fresh = [c for c in pools[name] if c not in drawn.get(name, ())] or pools[name]
        char = draw(st.sampled_from(fresh))
        drawn.setdefault(name, []).append(char)
        offset = draw(st.integers(0, len(chars)))
        at = offset if name in ("upper", "lower") else len(chars) - offset
        chars.insert(at, (char, True))
    if max_repeat is not None and not _break_runs(chars, max_repeat, filler) and exact:
        reject()
    return "".join(c for c, _ in chars)


def _break_runs(chars: list[tuple[str, bool]], limit: int, filler: Sequence[str]) -> bool:
    """Replace characters so no run is longer than ``limit``, keeping the needed ones.

    A member of the run that is not needed is replaced (the last one); a run of needed
    characters only (one class asked for several times from a tiny pool) is left. Returns
    whether it worked: a tiny alphabet may leave no character to break a run with.
    """
    for i in range(limit, len(chars)):
        if len({c for c, _ in chars[i - limit : i + 1]}) != 1:
            continue
        free = [k for k in range(i, i - limit - 1, -1) if not chars[k][1]]
        if not free:
            continue
        j = free[0]
        left = chars[j - 1][0] if j > 0 else ""
        right = chars[j + 1][0] if j + 1 < len(chars) else ""
        # Best differs from both neighbours; else from the left one (the loop goes on right).
        choices = [c for c in filler if c not in (left, right)] or [
            c for c in filler if c != (right if j < i else left)
        ]
        if choices:
            chars[j] = (choices[0], False)
    longest = max((len(list(run)) for _, run in itertools.groupby(c for c, _ in chars)), default=0)
    return longest <= limit


def _check_policy(policy: object, user: object) -> PasswordPolicy:
    if not isinstance(policy, PasswordPolicy):
        raise _InvalidArgument(f"policy must be a PasswordPolicy, not {type(policy).__name__}")
    if user is not None and not isinstance(user, UserInfo):
        raise _InvalidArgument(f"user must be a UserInfo or None, not {type(user).__name__}")
    return policy


def passwords(
    policy: PasswordPolicy, *, user: UserInfo | None = None, max_size: int | None = None
) -> st.SearchStrategy[str]:
    """Passwords ``policy`` accepts: ``policy.check(p, user=user)`` is ok for every example.

    Every rule counts: length, required classes and ``min_classes``, the alphabet,
    ``max_repeat``, the blocklist, ``user``'s personal data and the zxcvbn strength.
    Examples draw from the policy's own character pools and shrink to readable passwords.

    Args:
        policy: the policy the passwords satisfy.
        user: the person choosing the password (personal-info rule and zxcvbn dictionary).
        max_size: the longest password to generate (default: ``max_length``, or 32 more
            than the shortest password when the policy sets no maximum).

    Raises:
        hypothesis.errors.InvalidArgument: (also a ``ValueError``) a wrong argument type, or
            ``max_size`` shorter than the shortest password the policy accepts.
    """
    policy = _check_policy(policy, user)
    return well_formed(policy, max_size=max_size).filter(lambda p: policy.check(p, user=user).ok)


def well_formed(policy: PasswordPolicy, *, max_size: int | None = None) -> st.SearchStrategy[str]:
    """Passwords meeting the structural rules by construction, before any check runs.

    Length, classes, alphabet and runs hold for every NFKC-stable example; the blocklist,
    personal data and strength are left to :func:`passwords`' filter.
    """
    plan = _Plan(policy)
    high = plan.high
    if max_size is not None:
        if not isinstance(max_size, int) or isinstance(max_size, bool):
            raise _InvalidArgument(f"max_size must be an int or None, not {max_size!r}")
        if max_size < plan.low:
            raise _InvalidArgument(
                f"max_size={max_size} is below the shortest password this policy accepts "
                f"({plan.low} characters)"
            )
        high = min(high, max_size)
    low, filler = plan.low, plan.filler
    if policy.min_strength is not None:
        # Long runs of letters score best; l33t characters cost the strength rule l33t tables.
        low = max(low, min(high, _STRONG_LENGTH[policy.min_strength]))
        plain = [c for c in filler if c not in _L33T]
        filler = plain if len(plain) >= 8 else filler
    return _assemble(
        pools=plan.pools,
        needed=plan.needed,
        filler=filler,
        low=low,
        high=high,
        max_repeat=policy.max_repeat,
    )


def _impossible(code: str, reason: str) -> _InvalidArgument:
    return _InvalidArgument(f"violating={code!r} is impossible: {reason}")


def violating_passwords(
    policy: PasswordPolicy, violating: str, *, user: UserInfo | None = None
) -> st.SearchStrategy[str]:
    """Passwords ``policy`` rejects with the code ``violating`` among their violations.

    Apart from the chosen violation, examples keep to the policy's pools where they can,
    so most break only that one rule. ``"disallowed_character"`` is always possible: a
    control character is never allowed, and a restricted alphabet is also left by a
    printable character. ``"too_short"`` with ``min_length=1`` yields only ``""``.

    Args:
        policy: the policy the passwords break.
        violating: a code of :data:`~kaspi_identity.VIOLATION_CODES`, e.g.
            ``"missing_digit"``.
        user: the person choosing the password; needed for ``"contains_personal_info"``.

    Raises:
        hypothesis.errors.InvalidArgument: (also a ``ValueError``) an unknown code, a code
            the policy makes impossible (``"missing_digit"`` when digits are not required,
            ``"too_short"`` without ``min_length``...), or a code that is not a property of
            one password (``"reused"``, ``"similar_to_previous"``,
            ``"confirmation_mismatch"``); the message names the reason.
    """
    candidates, _ = built_to_violate(policy, violating, user=user)
    return candidates.filter(lambda p: violating in policy.check(p, user=user).codes)


def built_to_violate(
    policy: PasswordPolicy, violating: str, *, user: UserInfo | None = None
) -> tuple[st.SearchStrategy[str], bool]:
    """Candidates for :func:`violating_passwords`, before the filter, and whether they are exact.

    Exact candidates break the rule by construction (for every NFKC-stable example); only
    ``too_weak`` candidates are guesses that zxcvbn has the last word on.
    """
    policy = _check_policy(policy, user)
    if not isinstance(violating, str) or violating not in VIOLATION_CODES:
        near = difflib.get_close_matches(str(violating), VIOLATION_CODES, n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise _InvalidArgument(
            f"unknown violation code {violating!r}; {hint}known: {', '.join(VIOLATION_CODES)}"
        )
    if violating in _NOT_SINGLE_PASSWORD:
        raise _InvalidArgument(_NOT_SINGLE_PASSWORD[violating])
    build = _VIOLATORS[violating]
    return build(_Plan(policy), violating, user), violating != "too_weak"


_Violator = Callable[[_Plan, str, UserInfo | None], st.SearchStrategy[str]]


def _structured(
    plan: _Plan,
    *,
    low: int,
    high: int,
    needed: Sequence[str] | None = None,
    filler: Sequence[str] | None = None,
) -> st.SearchStrategy[str]:
    """A password meeting the structural rules as far as ``low..high`` allows."""
    return _assemble(
        pools=plan.pools,
        needed=plan.needed if needed is None else needed,
        filler=plan.filler if filler is None else filler,
        low=max(low, 0),
        high=max(high, 0),
        max_repeat=plan.policy.max_repeat,
        exact=False,  # a run left in breaks another rule too, which a violator may
    )


def _inserted(base: st.SearchStrategy[str], part: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``part`` inserted into a ``base`` password at a drawn position."""

    @st.composite
    def insert(draw: st.DrawFn) -> str:
        text, piece = draw(base), draw(part)
        at = len(text) - draw(st.integers(0, len(text)))
        return text[:at] + piece + text[at:]

    return insert()


def _too_short(plan: _Plan, code: str, user: UserInfo | None) -> st.SearchStrategy[str]:
    lo = plan.policy.min_length
    if lo is None:
        raise _impossible(code, "the policy sets no min_length")
    return _structured(plan, low=0, high=lo - 1)


def _too_long(plan: _Plan, code: str, user: UserInfo | None) -> st.SearchStrategy[str]:
    hi = plan.policy.max_length
    if hi is None:
        raise _impossible(code, "the policy sets no max_length")
    # A short well-formed password repeated past the limit: cheap to draw however long.
    base = _structured(plan, low=plan.low, high=min(plan.high, plan.low + 8))
    return st.builds(
        lambda text, size: (text * (size // len(text) + 1))[:size],
        base,
        st.integers(hi + 1, hi + 1 + _OVERSHOOT),
    )


def _disallowed(plan: _Plan, code: str, user: UserInfo | None) -> st.SearchStrategy[str]:
    bad = list(_CONTROL)
    if plan.allowed is not None:
        bad[1:1] = [c for c in _OUTSIDE if c not in plan.allowed]
    base = _structured(plan, low=plan.low - 1, high=plan.high - 1)
    return _inserted(base, st.sampled_from(bad))


def _missing(plan: _Plan, code: str, user: UserInfo | None) -> st.SearchStrategy[str]:
    name = code.removeprefix("missing_")
    if name not in plan.policy.require:
        required = ", ".join(plan.policy.require) or "nothing"
        raise _impossible(
            code,
            f"the policy does not require {name!r} (it requires {required}); "
            "use 'too_few_classes' for min_classes",
        )
    pool = frozenset(plan.pools[name])
    count = plan.policy._counts[name]
    filler = [c for c in plan.filler if c not in pool]

    @st.composite
    def fewer(draw: st.DrawFn) -> str:
        # Shrinks towards count - 1 characters of the class, the nearest miss.
        kept = count - 1 - draw(st.integers(0, count - 1))
        needed = [n for n in plan.needed if n != name]
        present = set(needed) | ({name} if kept else set())
        others = [n for n in CLASS_NAMES if n not in present and n != name and plan.pools[n]]
        needed += others[: max(0, (plan.policy.min_classes or 0) - len(present))]
        needed += [name] * kept
        return draw(_structured(plan, low=plan.low, high=plan.high, needed=needed, filler=filler))

    return fewer()


def _too_few_classes(plan: _Plan, code: str, user: UserInfo | None) -> st.SearchStrategy[str]:
    wanted = plan.policy.min_classes
    if wanted is None:
        raise _impossible(code, "the policy sets no min_classes")
    order = [*plan.policy.require, *(n for n in CLASS_NAMES if n not in plan.policy.require)]
    order = [n for n in order if plan.pools[n]]
    loose = [c for c in plan.filler if not plan.in_class(c)]
    rank = _class_rank(plan.policy)

    @st.composite
    def fewer(draw: st.DrawFn) -> str:
        # Shrinks towards one class short of the minimum, the nearest miss.
        count = min(wanted - 1, len(order)) - draw(st.integers(0, min(wanted - 1, len(order))))
        chosen = order[:count]
        filler = sorted({*loose, *(c for n in chosen for c in plan.pools[n])}, key=rank)
        return draw(_structured(plan, low=plan.low, high=plan.high, needed=chosen, filler=filler))

    return fewer()


def _repeated(plan: _Plan, code: str, user: UserInfo | None) -> st.SearchStrategy[str]:
    limit = plan.policy.max_repeat
    if limit is None:
        raise _impossible(code, "the policy sets no max_repeat")
    run = limit + 1
    if run > plan.high:
        raise _impossible(code, f"a run of {run} characters does not fit in max_length={plan.high}")
    spare = min(plan.high - run, 4)
    runs = st.builds(
        lambda char, extra: char * (run + extra),
        st.sampled_from(plan.filler),
        st.integers(0, spare),
    )
    base = _structured(plan, low=plan.low - run, high=plan.high - run - spare)
    return _inserted(base, runs)


def _personal(plan: _Plan, code: str, user: UserInfo | None) -> st.SearchStrategy[str]:
    if not plan.policy.forbid_personal_info:
        raise _impossible(code, "the policy has forbid_personal_info=False")
    if user is None:
        raise _impossible(code, "pass user=UserInfo(...) with the data to put in the password")
    limit = plan.policy.max_length
    fragments = [f for _, f in personal_fragments(user) if limit is None or len(f) <= limit]
    if not fragments:
        fits = f" that fits in max_length={limit}" if limit is not None else ""
        raise _impossible(
            code,
            f"the user has no name, user name, e-mail or phone of 3 or more characters{fits}",
        )
    pieces = st.builds(
        lambda fragment, case: case(fragment),
        st.sampled_from(fragments),
        st.sampled_from([str, str.capitalize, str.upper]),
    )
    longest = max(map(len, fragments))
    room = plan.high - longest if limit is not None else plan.high
    base = _structured(plan, low=plan.low - longest, high=room)
    return _inserted(base, pieces)


@functools.lru_cache(maxsize=32)
def _blocked_words(
    words: frozenset[str], lo: int, hi: int | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The words that fit ``hi``: those of ``lo`` or more characters, then the shorter ones."""
    fitting = sorted((w for w in words if hi is None or len(w) <= hi), key=lambda w: (len(w), w))
    return tuple(w for w in fitting if len(w) >= lo), tuple(w for w in fitting if len(w) < lo)


def _policy_blocklist(policy: PasswordPolicy) -> frozenset[str]:
    """The very words ``policy`` checks against (loaded when it was built)."""
    for rule in policy._rules:
        if isinstance(rule, Blocklist):
            return rule.load()
    return frozenset()


def _too_common(plan: _Plan, code: str, user: UserInfo | None) -> st.SearchStrategy[str]:
    if not plan.policy.blocklist:
        raise _impossible(code, "the policy has blocklist=False")
    policy = plan.policy
    near, short = _blocked_words(
        _policy_blocklist(policy), policy.min_length or 0, policy.max_length
    )
    if not near and not short:
        raise _impossible(code, f"no blocklisted password fits in max_length={plan.high}")
    words = st.one_of([st.sampled_from(ws) for ws in (near, short) if ws])
    spellings: list[Callable[[str], str]] = [
        str,
        str.capitalize,
        str.upper,
        lambda w: w.translate(_TO_RUSSIAN_LAYOUT),  # typed with the Russian layout on
    ]
    return st.builds(lambda word, spell: spell(word), words, st.sampled_from(spellings))


def _weak_candidates(plan: _Plan) -> st.SearchStrategy[str]:
    """Low-entropy passwords: a decorated common word, a repeated character, a sequence."""
    low, high = plan.low, min(plan.high, 32)
    pools = plan.pools

    def decorate(word: str, year: str) -> str:
        if pools["upper"] and ("upper" in plan.needed or not pools["lower"]):
            word = word.capitalize()
        if pools["digit"] and "digit" in plan.needed:
            word += year
        if pools["special"] and "special" in plan.needed:
            word += pools["special"][0]
        while len(word) < low:
            word += year or word
        return word[:high]

    decorated = st.builds(
        decorate, st.sampled_from(_COMMON_WORDS), st.sampled_from(["1", "123", "2024"])
    )
    repeated = st.builds(
        lambda char, size: char * size,
        st.sampled_from(plan.filler or ["a"]),
        st.integers(min(low, high), high),
    )
    sequence = st.builds(
        lambda seq, size: seq[:size], st.sampled_from(_SEQUENCES), st.integers(min(low, high), high)
    )
    return st.one_of(decorated, repeated, sequence)


def _too_weak(plan: _Plan, code: str, user: UserInfo | None) -> st.SearchStrategy[str]:
    if plan.policy.min_strength is None:
        raise _impossible(code, "the policy sets no min_strength")
    return _weak_candidates(plan)


_VIOLATORS: Final[dict[str, _Violator]] = {
    "too_short": _too_short,
    "too_long": _too_long,
    "disallowed_character": _disallowed,
    "missing_upper": _missing,
    "missing_lower": _missing,
    "missing_digit": _missing,
    "missing_special": _missing,
    "too_few_classes": _too_few_classes,
    "repeated_characters": _repeated,
    "contains_personal_info": _personal,
    "too_common": _too_common,
    "too_weak": _too_weak,
}


# -- policies -------------------------------------------------------------------------------

_SPECIALS: Final = "!@#$%^&*.-_§₸ "
_CUSTOM_CHARS: Final = "abcxyzABCXYZ0189!@#.-жқә "


@st.composite
def _policy_mapping(draw: st.DrawFn, *, strength: bool) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    special = draw(st.one_of(st.none(), st.text(st.sampled_from(_SPECIALS), min_size=1)))
    special_set = frozenset(special or string.punctuation)
    alphabet = draw(st.sampled_from(["any", "ascii", "latin_alnum", "custom"]))
    if alphabet == "custom":
        alphabet = "".join(
            draw(st.lists(st.sampled_from(_CUSTOM_CHARS), min_size=2, max_size=12, unique=True))
        )
    allowed = {
        "any": None,
        "ascii": ASCII_PRINTABLE,
        "latin_alnum": LATIN_ALNUM,
    }.get(alphabet, frozenset(alphabet))
    pools = {
        "upper": frozenset(string.ascii_uppercase),
        "lower": frozenset(string.ascii_lowercase),
        "digit": frozenset(string.digits),
        "special": special_set,
    }
    available = [n for n in CLASS_NAMES if allowed is None or pools[n] & allowed]
    names = draw(st.lists(st.sampled_from(available), unique=True)) if available else []
    counts = {name: draw(st.integers(1, 3)) for name in names}
    # The list form, or the mapping of counts (``{"digit": 2}``) now and then.
    require: list[str] | dict[str, int] = counts if draw(st.booleans()) else names
    if isinstance(require, list):
        counts = dict.fromkeys(names, 1)
    min_classes = draw(st.one_of(st.none(), st.integers(1, max(len(available), 1))))
    if not available:
        min_classes = None
    needed = max(sum(counts.values()) + max(0, (min_classes or 0) - len(counts)), 1)
    min_length = draw(st.one_of(st.none(), st.integers(1, 16)))
    floor = max(min_length or 1, needed)
    max_length = draw(st.one_of(st.none(), st.integers(floor, floor + 48)))
    use_strength = (
        strength
        and alphabet in ("any", "ascii", "latin_alnum")
        and (max_length is None or max_length >= 24)
        and draw(st.booleans())
    )
    history = draw(st.one_of(st.none(), st.integers(1, 12)))
    mapping.update(
        min_length=min_length,
        max_length=max_length,
        require=require,
        min_classes=min_classes,
        alphabet=alphabet,
        max_repeat=draw(st.one_of(st.none(), st.integers(1, 4))),
        forbid_personal_info=draw(st.booleans()),
        min_strength=draw(st.integers(1, 4)) if use_strength else None,
        blocklist=draw(st.booleans()),
        history=history,
        history_similar=bool(history) and draw(st.booleans()),
    )
    max_age = draw(st.one_of(st.none(), st.integers(1, 3650)))
    if max_age is not None:
        mapping.update(
            max_age_days=max_age,
            expiry_warning_days=draw(st.one_of(st.none(), st.integers(1, min(max_age - 1, 365))))
            if max_age > 1
            else None,
            grace_logins=draw(st.one_of(st.none(), st.integers(1, 100))),
        )
    mapping["min_age_hours"] = draw(
        st.one_of(st.none(), st.integers(1, min(8760, max_age * 24 - 1) if max_age else 8760))
    )
    if special is not None:
        mapping["special_characters"] = special
    return mapping


@st.composite
def _built_policy(draw: st.DrawFn, *, strength: bool) -> PasswordPolicy:
    mapping = draw(_policy_mapping(strength=strength))
    try:
        return PasswordPolicy.from_mapping(mapping)
    except PolicyConfigError:
        reject()


def policies(*, strength: bool = True, presets: bool = True) -> st.SearchStrategy[PasswordPolicy]:
    """Valid :class:`PasswordPolicy` objects: every rule on or off, custom alphabets included.

    Useful to a host whose own code takes any policy (a form rendering ``describe()``, an
    API mapping violation codes).

    Args:
        strength: also draw ``min_strength`` (each check then runs zxcvbn: slower).
        presets: also draw the named presets (:data:`~kaspi_identity.PRESET_NAMES`).

    Raises:
        hypothesis.errors.InvalidArgument: (also a ``ValueError``) a flag is not a ``bool``.
    """
    for name, flag in (("strength", strength), ("presets", presets)):
        if not isinstance(flag, bool):
            raise _InvalidArgument(f"{name} must be a bool, not {type(flag).__name__}")
    built = _built_policy(strength=strength)
    if not presets:
        return built
    named = st.sampled_from(PRESET_NAMES).map(PasswordPolicy.preset)
    return st.one_of(built, named)
