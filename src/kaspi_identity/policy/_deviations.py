"""Where a policy departs from NIST SP 800-63B-4 and OWASP ASVS 5.0, declared rule by rule.

Deployments often must follow a regulator's rules (composition classes, short maximum
lengths) that the two standards advise against. :meth:`PasswordPolicy.deviations` says so
plainly, so an auditor reads the departures from the policy itself rather than guessing them.
The texts are in English: they quote standards written in English, for auditors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from kaspi_identity.policy._policy import PasswordPolicy

__all__ = ["DEVIATION_STANDARDS", "NIST_800_63B_4", "OWASP_ASVS_5", "Deviation", "deviations_of"]

#: NIST Special Publication 800-63B-4, *Digital Identity Guidelines: Authentication and
#: Authenticator Management* (2025).
NIST_800_63B_4: Final = "NIST SP 800-63B-4"
#: OWASP Application Security Verification Standard 5.0 (2025), chapter V6 Authentication.
OWASP_ASVS_5: Final = "OWASP ASVS 5.0"
#: The standards :meth:`PasswordPolicy.deviations` compares a policy with.
DEVIATION_STANDARDS: Final[tuple[str, ...]] = (NIST_800_63B_4, OWASP_ASVS_5)

_NIST_VERIFIERS: Final = "§3.1.1.2 (Password verifiers)"
_NIST_MINIMUM: Final = 15
_NIST_MINIMUM_MFA: Final = 8
_ASVS_MINIMUM: Final = 8
_LONGEST_ASKED: Final = 64
_HARD_CAP: Final = 4096  # PasswordPolicy's limit when max_length is off
_CLASS_WORDS: Final = {
    "upper": ("uppercase Latin letter", "uppercase Latin letters"),
    "lower": ("lowercase Latin letter", "lowercase Latin letters"),
    "digit": ("digit", "digits"),
    "special": ("special character", "special characters"),
}


@dataclass(frozen=True, slots=True)
class Deviation:
    """One place where a policy departs from a standard.

    Attributes:
        rule: the config key of the rule that departs (``"min_length"``, ``"require"``, ...).
        standard: :data:`NIST_800_63B_4` or :data:`OWASP_ASVS_5`.
        clause: where the standard says it (``"§3.1.1.2 (Password verifiers)"``, ``"6.2.9"``).
        standard_says: what the standard asks, in a sentence.
        policy_does: what the policy does instead, in a sentence.
    """

    rule: str
    standard: str
    clause: str
    standard_says: str
    policy_does: str

    def __str__(self) -> str:
        return (
            f"{self.rule}: {self.standard} {self.clause}: {self.standard_says} "
            f"This policy: {self.policy_does}"
        )

    def to_dict(self) -> dict[str, str]:
        """The five fields as a plain dict, ready for JSON."""
        return {
            "rule": self.rule,
            "standard": self.standard,
            "clause": self.clause,
            "standard_says": self.standard_says,
            "policy_does": self.policy_does,
        }


def _nist(rule: str, says: str, does: str) -> Deviation:
    return Deviation(rule, NIST_800_63B_4, _NIST_VERIFIERS, says, does)


def _asvs(rule: str, clause: str, says: str, does: str) -> Deviation:
    return Deviation(rule, OWASP_ASVS_5, clause, says, does)


def _composition(rule: str, does: str) -> list[Deviation]:
    return [
        _nist(
            rule,
            "Verifiers SHALL NOT impose composition rules, such as requiring mixtures of "
            "different character types.",
            does,
        ),
        _asvs(
            rule,
            "6.2.5",
            "Passwords of any composition can be used, without rules limiting the type of "
            "characters permitted and without a minimum number of upper- or lower-case "
            "characters, numbers or special characters.",
            does,
        ),
    ]


def _required(counts: dict[str, int]) -> str:
    parts = []
    for name, count in counts.items():
        one, many = _CLASS_WORDS[name]
        parts.append(f"at least one {one}" if count == 1 else f"at least {count} {many}")
    return "Requires " + ", ".join(parts) + "."


def deviations_of(policy: PasswordPolicy, *, multi_factor: bool = False) -> tuple[Deviation, ...]:
    """The deviations of ``policy``, in config-key order, NIST before ASVS for each rule.

    ``multi_factor`` says the password is used only together with a second factor, where
    NIST allows a minimum of 8 characters instead of 15.
    """
    out: list[Deviation] = []
    low = policy.min_length
    nist_minimum = _NIST_MINIMUM_MFA if multi_factor else _NIST_MINIMUM
    shortest = "Sets no minimum length." if low is None else f"Accepts {low}-character passwords."
    if (low or 0) < nist_minimum:
        out.append(
            _nist(
                "min_length",
                f"Passwords used as a single factor SHALL be at least {_NIST_MINIMUM} "
                f"characters long; passwords used only in multi-factor authentication at "
                f"least {_NIST_MINIMUM_MFA}.",
                shortest,
            )
        )
    if (low or 0) < _ASVS_MINIMUM:
        out.append(
            _asvs(
                "min_length",
                "6.2.1",
                f"User-set passwords are at least {_ASVS_MINIMUM} characters long "
                f"(a minimum of {_NIST_MINIMUM} is strongly recommended).",
                shortest,
            )
        )

    high = policy.max_length if policy.max_length is not None else _HARD_CAP
    if high < _LONGEST_ASKED:
        longest = f"Rejects passwords longer than {high} characters."
        out.append(
            _nist(
                "max_length",
                f"Verifiers SHOULD permit passwords of at least {_LONGEST_ASKED} characters.",
                longest,
            )
        )
        out.append(
            _asvs(
                "max_length",
                "6.2.9",
                f"Passwords of at least {_LONGEST_ASKED} characters are permitted.",
                longest,
            )
        )

    require = policy.require
    counts = dict(require) if isinstance(require, Mapping) else dict.fromkeys(require, 1)
    if counts:
        out += _composition("require", _required(counts))
    if policy.min_classes is not None:
        out += _composition(
            "min_classes",
            f"Requires at least {policy.min_classes} of the four classes uppercase Latin "
            "letters, lowercase Latin letters, digits and special characters.",
        )

    alphabet = policy.alphabet
    if alphabet != "any":
        allowed = {
            "ascii": "Accepts printable ASCII characters and the space only: no other Unicode "
            "character.",
            "latin_alnum": "Accepts only Latin letters A–Z, a–z and digits 0–9.",
        }.get(alphabet, f"Accepts only these characters: {alphabet}")
        out.append(
            _nist(
                "alphabet",
                "Verifiers SHOULD accept all printing ASCII characters and the space "
                "character, and SHOULD accept Unicode characters.",
                allowed,
            )
        )
        out.append(
            _asvs(
                "alphabet",
                "6.2.5",
                "Passwords of any composition can be used, without rules limiting the type of "
                "characters permitted.",
                allowed,
            )
        )

    if policy.max_repeat is not None:
        out += _composition(
            "max_repeat",
            f"Rejects a password that repeats one character more than {policy.max_repeat} "
            "times in a row.",
        )

    if not policy.forbid_personal_info:
        unchecked = "Does not check the password against the user's own data."
        out.append(
            _nist(
                "forbid_personal_info",
                "The blocklist holds expected passwords, among them context-specific words "
                "such as the user name and words derived from it.",
                unchecked,
            )
        )
        out.append(
            _asvs(
                "forbid_personal_info",
                "6.2.11",
                "A documented list of context-specific words is used to prevent easy-to-guess "
                "passwords.",
                unchecked,
            )
        )

    if not policy.blocklist:
        unchecked = "Checks the password against no blocklist of common or breached passwords."
        out.append(
            _nist(
                "blocklist",
                "Verifiers SHALL compare a new password against a blocklist of commonly used, "
                "expected or compromised passwords.",
                unchecked,
            )
        )
        out.append(
            _asvs(
                "blocklist",
                "6.2.4",
                "New passwords are checked against at least the top 3000 passwords that match "
                "the password policy.",
                unchecked,
            )
        )
        out.append(
            _asvs(
                "blocklist",
                "6.2.12",
                "New passwords are checked against a set of breached passwords.",
                unchecked,
            )
        )
    if policy.max_age_days is not None:
        expires = f"Expires a password {policy.max_age_days} days after it was set."
        out.append(
            _nist(
                "max_age_days",
                "Verifiers SHALL NOT require users to change passwords periodically; a change "
                "SHALL be forced only on evidence that the password was compromised.",
                expires,
            )
        )
        out.append(
            _asvs(
                "max_age_days",
                "6.2.10",
                "A password stays valid until it is discovered to be compromised or the user "
                "rotates it; the application must not require periodic credential rotation.",
                expires,
            )
        )
    return tuple(out)
