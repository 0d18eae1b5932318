"""The stateless password rules.

Each rule is a small object made by the policy from its configuration. ``check`` appends the
rule's violations for one password; ``requirements`` yields the lines ``describe`` shows. Rules
never see storage: history rules live with the history store.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final, Protocol

from kaspi_identity.policy._breached import BreachSources
from kaspi_identity.policy._result import Hint, StrengthFeedback, Violation
from kaspi_identity.policy._strength import (
    EXACT_LENGTH,
    MAX_L33T_TABLES,
    assess,
    l33t_tables,
)
from kaspi_identity.policy._text import (
    CYRILLIC,
    DIGITS,
    LOWER,
    UPPER,
    from_russian_layout,
    transliterate,
)
from kaspi_identity.policy._userinfo import UserInfo

__all__ = [
    "CLASS_NAMES",
    "STRENGTH_WINDOW",
    "Context",
    "Requirement",
    "Rule",
    "strength_window",
]

#: The character classes ``require`` and ``min_classes`` speak of, in canonical order.
CLASS_NAMES: Final = ("upper", "lower", "digit", "special")

#: The longest password zxcvbn itself scores (see :func:`strength_window`); longer ones, and
#: those whose l33t characters would make zxcvbn try more than twelve substitution tables, are
#: scored by a sound lower bound of zxcvbn's score (see ``_strength``).
STRENGTH_WINDOW: Final = EXACT_LENGTH
_MIN_FRAGMENT: Final = 3
_PHONE_SEPARATORS: Final = str.maketrans("", "", " -().+")

#: A line ``describe`` shows: the catalog key, the plural count, the parameters.
Requirement = tuple[str, int | None, dict[str, object]]


@dataclass(slots=True)
class Context:
    """One password under check, with what rules share about it."""

    password: str
    user: UserInfo | None
    violations: list[Violation] = field(default_factory=list)
    hints: list[Hint] = field(default_factory=list)
    _folded: str | None = None

    @property
    def folded(self) -> str:
        """The password casefolded (computed once)."""
        if self._folded is None:
            self._folded = self.password.casefold()
        return self._folded

    def add(self, code: str, **params: object) -> None:
        """Record a violation."""
        self.violations.append(Violation(code, params))


class Rule(Protocol):
    """A configured stateless rule."""

    def check(self, ctx: Context) -> None:
        """Append this rule's violations (and hints) for ``ctx.password``."""

    def requirements(self) -> Iterator[Requirement]:
        """The positive requirement lines of this rule."""


def strength_window(password: str) -> str:
    """The text of ``password`` that pure-Python zxcvbn scores itself: all of it, or nothing.

    A password of at most :data:`STRENGTH_WINDOW` characters whose l33t characters make
    zxcvbn's l33t matcher try at most twelve substitution tables (which bounds its cost) is
    scored by zxcvbn, whole; for any other, ``""``: the strength rule then uses a lower bound
    of zxcvbn's score of the whole password, never a prefix of it (a strong prefix can be part
    of a weak repeat).
    """
    if len(password) > STRENGTH_WINDOW or l33t_tables(password) > MAX_L33T_TABLES:
        return ""
    return password


@dataclass(frozen=True, slots=True)
class Length:
    """``too_short`` below ``min_length``; ``too_long`` is decided by the policy up front."""

    min_length: int | None
    max_length: int | None
    hard_cap: int  # the limit when max_length is None

    def check(self, ctx: Context) -> None:
        if self.min_length is not None and len(ctx.password) < self.min_length:
            ctx.add("too_short", min_length=self.min_length)

    def requirements(self) -> Iterator[Requirement]:
        lo, hi = self.min_length, self.max_length
        if lo is None and hi is None:
            # Nothing else bounds the length: the hard cap is the one length rule there is.
            hi = self.hard_cap
        if lo is not None and hi is not None:
            yield ("requirement.length_range", hi, {"min_length": lo, "max_length": hi})
        elif lo is not None:
            yield ("requirement.min_length", lo, {"min_length": lo})
        elif hi is not None:
            yield ("requirement.max_length", hi, {"max_length": hi})


def _has_control(password: str) -> bool:
    # isprintable() is False for every control and surrogate code point (and for a few harmless
    # ones), so the exact scan runs only on the rare password that fails it.
    if password.isprintable():
        return False
    return any(
        c in "\x00\x7f" or c < " " or "\x80" <= c <= "\x9f" or "\ud800" <= c <= "\udfff"
        for c in password
    )


@dataclass(frozen=True, slots=True)
class Alphabet:
    """``disallowed_character``: control characters and surrogates always, then the alphabet."""

    alphabet: str  # "any", "ascii", "latin_alnum" or the explicit allowed characters
    allowed: frozenset[str] | None

    @property
    def kind(self) -> str:
        return self.alphabet if self.allowed is None else "custom"

    def check(self, ctx: Context) -> None:
        pw = ctx.password
        if _has_control(pw):
            ctx.add("disallowed_character", reason="control")
            return
        if self.alphabet == "ascii":
            bad = not (pw.isascii() and pw.isprintable())
        elif self.alphabet == "latin_alnum":
            bad = not (pw.isascii() and (pw.isalnum() or not pw))
        elif self.allowed is not None:
            bad = not self.allowed.issuperset(pw)
        else:
            bad = False
        if bad:
            if self.allowed is not None:
                ctx.add("disallowed_character", reason="custom", allowed=self.alphabet)
            else:
                ctx.add("disallowed_character", reason=self.alphabet)

    def requirements(self) -> Iterator[Requirement]:
        if self.allowed is not None:
            yield ("requirement.alphabet.custom", None, {"allowed": self.alphabet})
        elif self.alphabet != "any":
            yield (f"requirement.alphabet.{self.alphabet}", None, {})


@dataclass(frozen=True, slots=True)
class Classes:
    """``missing_<class>`` for each required class; ``too_few_classes`` below ``min_classes``.

    ``require`` pairs each required class with how many of its characters must appear; the
    ``missing_<class>`` violation carries that ``count``.
    """

    require: tuple[tuple[str, int], ...]
    min_classes: int | None
    special: frozenset[str]
    examples: str
    layout_hint: bool

    def present(self, password: str) -> dict[str, bool]:
        """Which of the four classes ``password`` holds."""
        return {
            "upper": not UPPER.isdisjoint(password),
            "lower": not LOWER.isdisjoint(password),
            "digit": not DIGITS.isdisjoint(password),
            "special": not self.special.isdisjoint(password),
        }

    def _pool(self, name: str) -> frozenset[str]:
        return {"upper": UPPER, "lower": LOWER, "digit": DIGITS}.get(name, self.special)

    def check(self, ctx: Context) -> None:
        present = self.present(ctx.password)
        for name, count in self.require:
            if count == 1:
                enough = present[name]
            else:
                pool = self._pool(name)
                enough = sum(1 for c in ctx.password if c in pool) >= count
            if not enough:
                if name == "special":
                    ctx.add("missing_special", count=count, examples=self.examples)
                else:
                    ctx.add(f"missing_{name}", count=count)
        if self.min_classes is not None:
            have = sum(present.values())
            if have < self.min_classes:
                ctx.add("too_few_classes", min_classes=self.min_classes)
        if self.layout_hint and CYRILLIC.search(ctx.password):
            ctx.hints.append(Hint("keyboard_layout"))

    def requirements(self) -> Iterator[Requirement]:
        for name, count in self.require:
            params: dict[str, object] = {"examples": self.examples} if name == "special" else {}
            if count == 1:
                yield (f"requirement.{name}", None, params)
            else:
                yield (f"requirement.{name}.count", count, {**params, "class_count": count})
        if self.min_classes is not None:
            yield ("requirement.min_classes", self.min_classes, {"min_classes": self.min_classes})


@dataclass(frozen=True, slots=True)
class MaxRepeat:
    """``repeated_characters``: a run of one character longer than ``max_repeat``."""

    max_repeat: int
    pattern: re.Pattern[str]

    @classmethod
    def make(cls, max_repeat: int) -> MaxRepeat:
        """Build the rule with its run-detecting pattern."""
        return cls(max_repeat, re.compile(rf"(.)\1{{{max_repeat}}}", re.DOTALL))

    def check(self, ctx: Context) -> None:
        if self.pattern.search(ctx.password):
            ctx.add("repeated_characters", max_repeat=self.max_repeat)

    def requirements(self) -> Iterator[Requirement]:
        yield ("requirement.max_repeat", self.max_repeat, {"max_repeat": self.max_repeat})


@functools.lru_cache(maxsize=1024)
def personal_fragments(user: UserInfo) -> tuple[tuple[str, str], ...]:
    """``(field, casefolded fragment)`` pairs a password must not contain, in report order.

    Cached per :class:`UserInfo` (frozen, hashable): a form checked on every keystroke
    computes them once. The data is NFKC-normalised like the password.
    """
    out: list[tuple[str, str]] = []

    def add(field_name: str, text: str) -> None:
        text = unicodedata.normalize("NFKC", text).strip().casefold()
        if len(text) >= _MIN_FRAGMENT:
            out.append((field_name, text))
            for latin in transliterate(text):
                if len(latin) >= _MIN_FRAGMENT:
                    out.append((field_name, latin))

    if user.username:
        add("username", user.username)
        for part in re.split(r"[._\-+\s]+", user.username):
            add("username", part)
    if user.email:
        local = user.email.rpartition("@")[0] or user.email
        add("email", local)
        for part in re.split(r"[._\-+]+", local):
            add("email", part)
    if user.phone:
        digits = "".join(c for c in user.phone if c.isdigit())
        if len(digits) >= 7:
            # The whole number, the national number and the subscriber part: a password
            # holding any of them holds the phone number.
            for tail in dict.fromkeys((digits, digits[-10:], digits[-7:])):
                out.append(("phone", tail))
    for name in user.names:
        for part in re.split(r"[\s\-]+", name):
            add("name", part)
    if user.iin:
        out.extend(_iin_fragments(user.iin))
    return tuple(dict.fromkeys(out))


def _iin_fragments(text: str) -> list[tuple[str, str]]:
    """The IIN's digits, and for a valid IIN the birth date it encodes (three forms)."""
    from kaspi_identity.phone import InvalidIinError, parse_iin

    digits = "".join(c for c in text if c.isascii() and c.isdigit())
    try:
        iin = parse_iin(text)
    except InvalidIinError:
        return [("iin", digits)] if len(digits) >= 7 else []
    strings = iin.personal_strings()
    return [("iin" if s == iin.value else "birth_date", s) for s in strings]


@dataclass(frozen=True, slots=True)
class PersonalInfo:
    """``contains_personal_info``: user name, e-mail local part, phone digits or a name."""

    def check(self, ctx: Context) -> None:
        if ctx.user is None:
            return
        folded = ctx.folded
        compact = folded.translate(_PHONE_SEPARATORS)
        for field_name, fragment in personal_fragments(ctx.user):
            haystack = compact if field_name in ("phone", "iin", "birth_date") else folded
            if fragment in haystack:
                ctx.add("contains_personal_info", field=field_name)
                return

    def requirements(self) -> Iterator[Requirement]:
        yield ("requirement.personal_info", None, {})


def _strip(text: str) -> str:
    """``text`` without the white space and invisible format characters around it."""
    start, end = 0, len(text)
    while start < end and (text[start].isspace() or unicodedata.category(text[start]) == "Cf"):
        start += 1
    while end > start and (text[end - 1].isspace() or unicodedata.category(text[end - 1]) == "Cf"):
        end -= 1
    return text[start:end]


@dataclass(frozen=True, slots=True)
class Blocklist:
    """``too_common``: the password (or its QWERTY reading) is on the blocklist.

    The password is compared as typed and with the white space (and zero-width characters)
    around it removed, so `` password `` is as common as ``password``.
    """

    load: Callable[[], frozenset[str]]

    def check(self, ctx: Context) -> None:
        words = self.load()
        folded = ctx.folded
        for form in dict.fromkeys((folded, _strip(folded))):
            if form in words or (CYRILLIC.search(form) and from_russian_layout(form) in words):
                ctx.add("too_common")
                return

    def requirements(self) -> Iterator[Requirement]:
        yield ("requirement.blocklist", None, {})


@dataclass(frozen=True, slots=True)
class Breached:
    """``breached``: the password (or its QWERTY reading) is known from a data breach.

    ``reason`` is ``"found"``, or ``"unavailable"`` when the online source did not answer
    and the policy fails closed. The SHA-1 of the NFKC form is looked up exactly (breach
    corpora are case-sensitive), and so is that of its QWERTY reading when it holds Cyrillic
    letters: a password typed with the Russian layout switched on is stored that way.
    """

    sources: BreachSources

    def check(self, ctx: Context) -> None:
        found = self.sources.lookup(ctx.password)
        if found.breached:
            ctx.add("breached", reason="found")
        elif found.refuse:
            ctx.add("breached", reason="unavailable")

    def requirements(self) -> Iterator[Requirement]:
        yield ("requirement.breached", None, {})


@dataclass(frozen=True, slots=True)
class Strength:
    """``too_weak``: zxcvbn's score of the whole password is (or may be) below ``min_strength``.

    The score is :func:`~kaspi_identity.policy._strength.proven_score`'s: never above zxcvbn's
    own, so whatever this rule accepts, zxcvbn scores at least ``min_strength``. The violation's
    ``feedback`` says why, as :class:`StrengthFeedback` sub-codes.
    """

    min_strength: int

    def check(self, ctx: Context) -> None:
        inputs: list[str] = []
        if ctx.user is not None:
            inputs = [frag for _, frag in personal_fragments(ctx.user)][:32]
        score, feedback = assess(ctx.password, inputs, self.min_strength)
        if score < self.min_strength:
            ctx.add(
                "too_weak",
                min_strength=self.min_strength,
                score=score,
                feedback=tuple(StrengthFeedback(code, params) for code, params in feedback),
            )

    def requirements(self) -> Iterator[Requirement]:
        yield ("requirement.min_strength", None, {})
