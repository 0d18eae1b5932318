"""``run_compliance``: prove a deployment's policy with property checks and print a report."""

from __future__ import annotations

import functools
import string
import unicodedata
from collections.abc import Callable
from typing import Final, TextIO

from hypothesis import HealthCheck, Verbosity, assume, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import FailedHealthCheck, InvalidArgument, Unsatisfiable

from kaspi_identity.i18n import SUPPORTED_LANGUAGES
from kaspi_identity.policy import (
    DEVIATION_STANDARDS,
    Hint,
    PasswordPolicy,
    PolicyResult,
    UserInfo,
    Violation,
)
from kaspi_identity.testing._strategies import built_to_violate, passwords, well_formed

__all__ = ["run_compliance"]

#: The person whose data the personal-information checks use.
_USER: Final = UserInfo(
    username="aliya.nurlanova",
    email="aliya.nurlanova@example.kz",
    phone="+7 701 123 45 67",
    names=("Алия", "Нурланова"),
)

# The setting that turns on the rule behind each single-password code.
_SETTING: Final[dict[str, Callable[[PasswordPolicy], object]]] = {
    "too_short": lambda p: p.min_length,
    "too_long": lambda p: p.max_length,
    "disallowed_character": lambda p: True,
    "missing_upper": lambda p: "upper" in p.require,
    "missing_lower": lambda p: "lower" in p.require,
    "missing_digit": lambda p: "digit" in p.require,
    "missing_special": lambda p: "special" in p.require,
    "too_few_classes": lambda p: p.min_classes,
    "repeated_characters": lambda p: p.max_repeat,
    "contains_personal_info": lambda p: p.forbid_personal_info,
    "too_common": lambda p: p.blocklist,
    "too_weak": lambda p: p.min_strength,
}


# The codes a password built to the rules by construction must never get.
_STRUCTURAL: Final = frozenset(_SETTING) - {"contains_personal_info", "too_common", "too_weak"}


class _Broken(AssertionError):
    """A property did not hold for one example."""


class _Report:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.passed = 0
        self.failed = 0

    def line(self, status: str, name: str, detail: str) -> None:
        if status == "PASS":
            self.passed += 1
        elif status == "FAIL":
            self.failed += 1
        self.out.write(f"{status:<5} {name:<31} {detail}\n")


class _Seen:
    """What the checks saw, for the message check: one violation per message, the hints."""

    def __init__(self) -> None:
        self.violations: dict[str, Violation] = {}
        self.hints: set[Hint] = set()

    def record(self, result: PolicyResult) -> None:
        for violation in result.violations:
            self.violations.setdefault(violation.message_key, violation)
        self.hints.update(result.hints)


def _prove(
    strategy: st.SearchStrategy[str],
    problem: Callable[[str], str | None],
    *,
    examples: int,
    seed: int | None,
) -> tuple[int, str | None, str]:
    """Run ``problem`` on examples of ``strategy``: ``(count, failure or None, an example)``."""
    count = 0
    last = ""
    simplest: str | None = None

    @settings(
        database=None,
        derandomize=seed is not None,
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
    )
    @given(strategy)
    def prop(password: str) -> None:
        nonlocal count, last, simplest
        count += 1
        last = password
        found = problem(password)
        if found is not None:
            raise _Broken(found)
        if simplest is None or (len(password), password) < (len(simplest), simplest):
            simplest = password

    test = hypothesis_seed(seed)(prop) if seed is not None else prop
    try:
        test()
    except _Broken as exc:
        # Hypothesis replays the minimal failing example last, so ``last`` is that one.
        return count, f"{exc} for {_short(last)}", last
    except (FailedHealthCheck, Unsatisfiable):
        return count, "could not generate enough examples for this policy", last
    except Exception as exc:  # a crash is a failed check, reported and not raised
        return count, f"{type(exc).__name__}: {exc} (on {_short(last)})", last
    return count, None, simplest if simplest is not None else last


def _summary(policy: PasswordPolicy) -> str:
    parts = []
    for key, value in policy.to_mapping().items():
        if value is None or value is False or value == []:
            continue
        if key == "special_characters" and value == string.punctuation:
            continue
        if isinstance(value, list):
            value = ",".join(value)
        parts.append(key if value is True else f"{key}={value}")
    return " ".join(parts)


def _accepts(policy: PasswordPolicy, seen: _Seen) -> Callable[[str], str | None]:
    """No structural rule rejects a password built to meet them (the other rules may)."""

    def problem(password: str) -> str | None:
        assume(unicodedata.normalize("NFKC", password) == password)
        result = policy.check(password, user=_USER)
        seen.record(result)
        wrong = [code for code in result.codes if code in _STRUCTURAL]
        return f"rejected with {', '.join(wrong)}" if wrong else None

    return problem


def _carries(policy: PasswordPolicy, code: str) -> Callable[[str], bool]:
    def carries(password: str) -> bool:
        return code in policy.check(password, user=_USER).codes

    return carries


def _rejects(
    policy: PasswordPolicy, code: str, seen: _Seen, *, exact: bool
) -> Callable[[str], str | None]:
    """A password built to break the rule behind ``code`` is reported with ``code``."""

    def problem(password: str) -> str | None:
        if exact:
            assume(unicodedata.normalize("NFKC", password) == password)
        result = policy.check(password, user=_USER)
        seen.record(result)
        if code not in result.codes:
            return f"not reported as {code} ({', '.join(result.codes) or 'accepted'})"
        return None

    return problem


def _render_problem(lang: str, key: str, render: Callable[[], str | list[str]]) -> str | None:
    try:
        value = render()
    except Exception as exc:  # a missing message or parameter is what this looks for
        return f"{lang}: {key} does not render ({type(exc).__name__}: {exc})"
    for text in value if isinstance(value, list) else [value]:
        if not text.strip() or "{" in text or "}" in text:
            return f"{lang}: {key} renders as {text!r}"
    return None


def _messages(policy: PasswordPolicy, seen: _Seen) -> tuple[str | None, str]:
    """Render every message this policy can show in every language; the first problem."""
    violations = dict(seen.violations)
    if policy.history:
        violations.setdefault("violation.reused", Violation("reused", {"history": policy.history}))
    if policy.history_similar:
        violations.setdefault(
            "violation.similar_to_previous",
            Violation("similar_to_previous", {"history": policy.history}),
        )
    violations.setdefault("violation.confirmation_mismatch", Violation("confirmation_mismatch"))
    hints = {f"hint.{h.code}": h for h in (*seen.hints, Hint("keyboard_layout"))}
    for lang in SUPPORTED_LANGUAGES:
        renderers: list[tuple[str, Callable[[], str | list[str]]]] = [
            *((key, functools.partial(v.message, lang)) for key, v in sorted(violations.items())),
            *((key, functools.partial(h.message, lang)) for key, h in sorted(hints.items())),
            ("describe()", functools.partial(policy.describe, lang)),
        ]
        for key, render in renderers:
            problem = _render_problem(lang, key, render)
            if problem is not None:
                return problem, ""
    lines = len(policy.describe("en"))
    detail = (
        f"{len(violations)} messages, {len(hints)} hint, {lines} requirement lines "
        f"in {', '.join(SUPPORTED_LANGUAGES)}"
    )
    return None, detail


def _deviations(policy: PasswordPolicy, report: _Report, *, multi_factor: bool) -> None:
    """A ``note`` line per deviation from NIST SP 800-63B-4 / OWASP ASVS 5.0 (not checks)."""
    deviations = policy.deviations(multi_factor=multi_factor)
    if not deviations:
        report.line("note", "deviations", f"none from {' and '.join(DEVIATION_STANDARDS)}")
    for deviation in deviations:
        where = f"{deviation.standard} {deviation.clause}"
        report.line("note", f"deviation {deviation.rule}", f"{where}: {deviation.policy_does}")


def _short(text: str) -> str:
    """``repr(text)``, cut to a report line's width."""
    shown = repr(text)
    return shown if len(shown) <= 40 else f"{shown[:36]}...{shown[0]} ({len(text)} chars)"


def run_compliance(
    policy: PasswordPolicy,
    *,
    out: TextIO,
    examples: int = 200,
    seed: int | None = 0,
    multi_factor: bool = False,
) -> int:
    """Prove ``policy`` with property checks and write a short report to ``out``.

    The checks: the policy is satisfiable (:func:`passwords` finds passwords it accepts);
    it accepts what it should (no password built to the length, class, alphabet and repeat
    rules is rejected by one of them); each rule it turns on rejects what it should (every
    password built to break the rule is reported with its code, for a sample user with a
    name, e-mail and phone); and every message the policy can show, its requirement lines
    included, renders in kk, ru and en. A failed check names the smallest example
    Hypothesis found. The report ends with a ``note`` line for each of the policy's
    deviations from NIST SP 800-63B-4 and OWASP ASVS 5.0 (:meth:`PasswordPolicy.deviations`):
    declared, not failed.

    Args:
        policy: the deployment's policy (e.g. ``PasswordPolicy.from_toml("identity.toml")``).
        out: where the report goes (``sys.stdout``).
        examples: examples per check.
        seed: makes the run reproducible; ``None`` draws new examples each run.
        multi_factor: the password is used only with a second factor (passed to
            :meth:`PasswordPolicy.deviations`).

    Returns:
        0 when every check holds, 1 otherwise.

    Raises:
        TypeError: ``policy`` is not a :class:`PasswordPolicy`, ``examples`` or ``seed``
            is not an int, or ``multi_factor`` not a bool.
        ValueError: ``examples`` is less than 1.
    """
    if not isinstance(policy, PasswordPolicy):
        raise TypeError(f"policy must be a PasswordPolicy, not {type(policy).__name__}")
    if not isinstance(examples, int) or isinstance(examples, bool):
        raise TypeError(f"examples must be an int, not {type(examples).__name__}")
    if examples < 1:
        raise ValueError(f"examples must be at least 1, not {examples}")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise TypeError(f"seed must be an int or None, not {type(seed).__name__}")
    if not isinstance(multi_factor, bool):
        raise TypeError(f"multi_factor must be a bool, not {type(multi_factor).__name__}")

    report = _Report(out)
    seen = _Seen()
    out.write(f"kaspi-identity compliance: {_summary(policy)}\n")

    def prove(
        name: str, strategy: st.SearchStrategy[str], problem: Callable[[str], str | None], ok: str
    ) -> None:
        count, failure, example = _prove(strategy, problem, examples=examples, seed=seed)
        if failure is None:
            report.line("PASS", name, ok.format(count=count, example=_short(example)))
        else:
            report.line("FAIL", name, failure)

    prove(
        "satisfiable",
        passwords(policy),
        lambda password: None,
        "{count} accepted passwords generated, e.g. {example}",
    )
    prove(
        "accepts what it should",
        well_formed(policy),
        _accepts(policy, seen),
        "{count} passwords built to the rules, none rejected by a length, class, "
        "alphabet or repeat rule",
    )
    off: list[str] = []
    for code, setting in _SETTING.items():
        if not setting(policy):
            off.append(code)
            continue
        try:
            strategy, exact = built_to_violate(policy, code, user=_USER)
        except InvalidArgument as exc:
            report.line("n/a", code, str(exc).partition(": ")[2] or str(exc))
            continue
        if not exact:
            strategy = strategy.filter(_carries(policy, code))
        prove(
            f"rejects {code}",
            strategy,
            _rejects(policy, code, seen, exact=exact),
            "{count} examples, each reported as " + code + ", e.g. {example}",
        )
    if off:
        report.line("n/a", "rules off", ", ".join(off))
    failure, detail = _messages(policy, seen)
    report.line("FAIL" if failure else "PASS", "messages complete", failure or detail)
    if policy.history:
        report.line("note", "history", "reused/similar_to_previous need storage: PasswordHistory")
    _deviations(policy, report, multi_factor=multi_factor)
    total = report.passed + report.failed
    if report.failed:
        out.write(f"FAILED: {report.failed} of {total} checks failed\n")
        return 1
    out.write(f"OK: all {total} checks passed\n")
    return 0
