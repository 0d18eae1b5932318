"""Results of a policy check: violations, hints and their rendered messages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from kaspi_identity.i18n import get_catalog, render
from kaspi_identity.policy._frozen import FrozenMap

__all__ = [
    "STRENGTH_FEEDBACK_CODES",
    "STRENGTH_FEEDBACK_KINDS",
    "VIOLATION_CODES",
    "Hint",
    "PolicyResult",
    "StrengthFeedback",
    "Violation",
]

#: Every violation code the engine can report, in rule order. Codes are stable: a front end
#: may map them to its own texts, so a code is never renamed or reused.
VIOLATION_CODES: Final[tuple[str, ...]] = (
    "too_short",
    "too_long",
    "disallowed_character",
    "missing_upper",
    "missing_lower",
    "missing_digit",
    "missing_special",
    "too_few_classes",
    "repeated_characters",
    "contains_personal_info",
    "too_common",
    "breached",
    "too_weak",
    "reused",
    "similar_to_previous",
    "confirmation_mismatch",
)

#: The sub-codes of a ``too_weak`` violation's feedback (``violation.feedback``), derived from
#: zxcvbn's match patterns and feedback rules. Stable like :data:`VIOLATION_CODES`; each is
#: rendered from the catalog key ``strength.<code>`` (``strength.<code>.<kind>`` for the codes
#: of :data:`STRENGTH_FEEDBACK_KINDS`).
STRENGTH_FEEDBACK_CODES: Final[tuple[str, ...]] = (
    "common_password",
    "common_word",
    "names",
    "personal_data",
    "keyboard_pattern",
    "repeats",
    "sequence",
    "recent_year",
    "dates",
    "capitalization",
    "all_uppercase",
    "reversed_word",
    "substitutions",
    "add_word",
)

#: The codes of :data:`STRENGTH_FEEDBACK_CODES` that carry a ``kind`` param, with its values.
STRENGTH_FEEDBACK_KINDS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "common_password": ("top10", "top100", "very_common", "similar"),
        "names": ("alone", "common"),
        "keyboard_pattern": ("straight_row", "short"),
        "repeats": ("character", "group"),
    }
)

# The parameter whose value picks the plural form of a message.
_COUNT_PARAM: Final[Mapping[str, str]] = {
    "too_short": "min_length",
    "too_long": "max_length",
    "missing_upper": "count",
    "missing_lower": "count",
    "missing_digit": "count",
    "missing_special": "count",
    "too_few_classes": "min_classes",
    "repeated_characters": "max_repeat",
    "reused": "history",
    "similar_to_previous": "history",
}

# The parameter whose value picks a message variant (``violation.<code>.<variant>``).
_VARIANT_PARAM: Final[Mapping[str, str]] = {
    "disallowed_character": "reason",
    "contains_personal_info": "field",
    "breached": "reason",
}


# The codes of the required classes; their ``count`` param says how many characters are asked.
_CLASS_CODES: Final = frozenset(
    {"missing_upper", "missing_lower", "missing_digit", "missing_special"}
)


def _frozen(params: Mapping[str, object] | None) -> Mapping[str, object]:
    return MappingProxyType(dict(params or {}))


@dataclass(frozen=True, slots=True)
class StrengthFeedback:
    """One reason a password is weak: a stable ``code`` and its categorical ``params``.

    The ``feedback`` of a ``too_weak`` violation is a tuple of these, the most telling first
    and ``add_word`` last. ``params`` is ``{"kind": ...}`` for the codes of
    :data:`STRENGTH_FEEDBACK_KINDS` (``StrengthFeedback("repeats", {"kind": "character"})``)
    and empty for the others; it never holds any part of the password.

    Raises:
        ValueError: an unknown ``code``, or ``params`` that do not fit it.
    """

    code: str
    params: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in STRENGTH_FEEDBACK_CODES:
            raise ValueError(f"unknown strength feedback code {self.code!r}")
        params = dict(self.params or {})
        kinds = STRENGTH_FEEDBACK_KINDS.get(self.code)
        expected = {"kind"} if kinds is not None else set()
        if set(params) != expected:
            want = "a 'kind' param" if kinds is not None else "no params"
            raise ValueError(f"strength feedback {self.code!r} takes {want}, not {params!r}")
        if kinds is not None and params["kind"] not in kinds:
            raise ValueError(
                f"strength feedback {self.code!r}: kind must be one of {', '.join(kinds)}, "
                f"not {params['kind']!r}"
            )
        object.__setattr__(self, "params", FrozenMap(params))

    @property
    def message_key(self) -> str:
        """The catalog key of this feedback's sentence, e.g. ``"strength.repeats.character"``."""
        kind = self.params.get("kind")
        return f"strength.{self.code}" if kind is None else f"strength.{self.code}.{kind}"

    def message(self, lang: str = "en") -> str:
        """Render this feedback in ``lang`` ("en", "ru" or "kk").

        Raises:
            UnknownLanguageError: ``lang`` has no catalog.
        """
        return render(self.message_key, lang)

    def to_dict(self) -> dict[str, object]:
        """``{"code": ..., "params": {...}}``: plain data, ready for JSON."""
        return {"code": self.code, "params": dict(self.params)}

    def __repr__(self) -> str:
        return f"StrengthFeedback({self.code!r}, {dict(self.params)!r})"


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: a stable ``code`` and the ``params`` its message needs.

    ``params`` never holds any part of the password: only the rule's settings (for example
    ``{"min_length": 8, "length": 5}``, or ``{"count": 2}`` for ``missing_digit`` when two
    digits are required), so a violation may be logged or sent to a front end. A
    ``too_weak`` violation's ``"feedback"`` param is a tuple of :class:`StrengthFeedback`
    (see :attr:`feedback`); its message says each of them after the verdict.
    """

    code: str
    params: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in VIOLATION_CODES:
            raise ValueError(f"unknown violation code {self.code!r}")
        params = dict(self.params or {})
        if "feedback" in params:
            feedback = params["feedback"]
            if (
                self.code != "too_weak"
                or not isinstance(feedback, tuple | list)
                or not all(isinstance(f, StrengthFeedback) for f in feedback)
            ):
                raise ValueError(
                    "the 'feedback' param is a tuple of StrengthFeedback, on too_weak only"
                )
            params["feedback"] = tuple(feedback)
        object.__setattr__(self, "params", _frozen(params))

    @property
    def feedback(self) -> tuple[StrengthFeedback, ...]:
        """Why the password is weak: a ``too_weak`` violation's feedback (else ``()``)."""
        feedback = self.params.get("feedback", ())
        assert isinstance(feedback, tuple)  # checked at construction; not a security check
        return feedback

    @property
    def message_key(self) -> str:
        """The catalog key of this violation's message, e.g. ``"violation.too_short"``.

        A ``too_weak`` violation with feedback has ``"violation.too_weak.feedback"``: the
        verdict alone, which :meth:`message` follows with the feedback's sentences.
        """
        if self.feedback:
            return "violation.too_weak.feedback"
        variant = _VARIANT_PARAM.get(self.code)
        if self.code in _CLASS_CODES and self.params.get("count", 1) != 1:
            # "Add at least 2 digits": a plural message of its own; one is the classic text.
            return f"violation.{self.code}.count"
        if variant is not None:
            return f"violation.{self.code}.{self.params[variant]}"
        return f"violation.{self.code}"

    def message(self, lang: str = "en") -> str:
        """Render this violation in ``lang`` ("en", "ru" or "kk").

        A ``too_weak`` violation with feedback renders as the verdict and then each
        feedback's sentence, all from the catalog of ``lang``.

        Raises:
            UnknownLanguageError: ``lang`` has no catalog.
        """
        count_param = _COUNT_PARAM.get(self.code)
        count = self.params.get(count_param) if count_param is not None else None
        params = {k: v for k, v in self.params.items() if k not in ("count", "feedback")}
        if self.code in _CLASS_CODES:
            params["class_count"] = count  # the catalog's name for it ({count} is taken)
        text = render(
            self.message_key,
            lang,
            count=count if isinstance(count, int) else None,
            **params,
        )
        return " ".join([text, *(f.message(lang) for f in self.feedback)])

    def __hash__(self) -> int:
        return hash((self.code, tuple(sorted(self.params.items(), key=lambda kv: kv[0]))))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Violation):
            return NotImplemented
        return self.code == other.code and dict(self.params) == dict(other.params)

    def __repr__(self) -> str:
        return f"Violation({self.code!r}, {dict(self.params)!r})"


@dataclass(frozen=True, slots=True)
class Hint:
    """Advice shown after the violations, never a reason to reject on its own.

    The only hint so far is ``"keyboard_layout"``: the password holds Cyrillic letters where
    the policy wants Latin ones, so the keyboard layout is probably switched.
    """

    code: str

    def message(self, lang: str = "en") -> str:
        """Render this hint in ``lang``.

        Raises:
            UnknownLanguageError: ``lang`` has no catalog.
        """
        return render(f"hint.{self.code}", lang)


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """The outcome of :meth:`PasswordPolicy.check`.

    Truthy when the password is acceptable. ``violations`` holds **every** broken rule in rule
    order (see :data:`VIOLATION_CODES`); ``hints`` holds extra advice.
    """

    violations: tuple[Violation, ...] = ()
    hints: tuple[Hint, ...] = ()

    @property
    def ok(self) -> bool:
        """True when no rule is broken."""
        return not self.violations

    @property
    def codes(self) -> tuple[str, ...]:
        """The codes of the violations, in rule order."""
        return tuple(v.code for v in self.violations)

    def __bool__(self) -> bool:
        return self.ok

    def messages(self, lang: str = "en") -> list[str]:
        """Every violation's message, then every hint's, rendered in ``lang``.

        Raises:
            UnknownLanguageError: ``lang`` has no catalog, even when there is nothing to render.
        """
        get_catalog(lang)  # fail on the first call, not on the first failing password
        return [v.message(lang) for v in self.violations] + [h.message(lang) for h in self.hints]

    def merged(self, other: PolicyResult) -> PolicyResult:
        """A result holding this result's findings and then ``other``'s, in rule order."""
        order = {code: i for i, code in enumerate(VIOLATION_CODES)}
        violations = sorted(self.violations + other.violations, key=lambda v: order[v.code])
        hints = self.hints + tuple(h for h in other.hints if h not in self.hints)
        return PolicyResult(tuple(violations), hints)
