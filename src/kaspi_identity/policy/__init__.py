"""The password policy engine: rules, presets, results. Pure: no I/O but reading config."""

from __future__ import annotations

from kaspi_identity.policy._breached import FILTER_VERSION, BreachCheck, BreachedFilter
from kaspi_identity.policy._breached_build import (
    BreachedBuild,
    BuildProgress,
    build_breached_filter,
)
from kaspi_identity.policy._deviations import (
    DEVIATION_STANDARDS,
    NIST_800_63B_4,
    OWASP_ASVS_5,
    Deviation,
)
from kaspi_identity.policy._document import POLICY_DOCUMENT_VERSION
from kaspi_identity.policy._policy import CONFIG_KEYS, PRESET_NAMES, PasswordPolicy
from kaspi_identity.policy._result import (
    STRENGTH_FEEDBACK_CODES,
    STRENGTH_FEEDBACK_KINDS,
    VIOLATION_CODES,
    Hint,
    PolicyResult,
    StrengthFeedback,
    Violation,
)
from kaspi_identity.policy._rules import STRENGTH_WINDOW, strength_window
from kaspi_identity.policy._userinfo import USERINFO_LIMITS, UserInfo

__all__ = [
    "CONFIG_KEYS",
    "DEVIATION_STANDARDS",
    "FILTER_VERSION",
    "NIST_800_63B_4",
    "OWASP_ASVS_5",
    "POLICY_DOCUMENT_VERSION",
    "PRESET_NAMES",
    "STRENGTH_FEEDBACK_CODES",
    "STRENGTH_FEEDBACK_KINDS",
    "STRENGTH_WINDOW",
    "USERINFO_LIMITS",
    "VIOLATION_CODES",
    "BreachCheck",
    "BreachedBuild",
    "BreachedFilter",
    "BuildProgress",
    "Deviation",
    "Hint",
    "PasswordPolicy",
    "PolicyResult",
    "StrengthFeedback",
    "UserInfo",
    "Violation",
    "build_breached_filter",
    "strength_window",
]
