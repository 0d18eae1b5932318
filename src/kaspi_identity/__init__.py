"""kaspi-identity: password rules, argon2id hashing and account recovery for portals.

The names here are the public surface; subpackages ``kaspi_identity.i18n``,
``kaspi_identity.storage`` and ``kaspi_identity.testing`` have their own. Nothing is imported
from an underscore module by users.
"""

from __future__ import annotations

from kaspi_identity._errors import (
    AccountNotFoundError,
    BreachCheckUnavailableError,
    BreachedFilterError,
    BreachedSourceError,
    CorruptRecordError,
    DuplicateAccountError,
    ExpiredTokenError,
    HashingError,
    InvalidCodeError,
    InvalidHashError,
    InvalidIdentifierError,
    InvalidPasswordError,
    InvalidTokenError,
    KaspiIdentityError,
    PasswordMismatchError,
    PolicyConfigError,
    StorageError,
    UnknownLanguageError,
)
from kaspi_identity.delivery import DeliveryError
from kaspi_identity.hashing import (
    OWASP_MINIMUM,
    PROFILES,
    RFC_9106_LOW_MEMORY,
    TESTS_ONLY,
    HashProfile,
    PasswordHasher,
    calibrate,
)
from kaspi_identity.history import PasswordHistory
from kaspi_identity.i18n import CatalogError
from kaspi_identity.phone import Iin, InvalidIinError, InvalidPhoneError, parse_iin
from kaspi_identity.policy import (
    CONFIG_KEYS,
    PRESET_NAMES,
    STRENGTH_FEEDBACK_CODES,
    VIOLATION_CODES,
    BreachCheck,
    BreachedFilter,
    Deviation,
    Hint,
    PasswordPolicy,
    PolicyResult,
    StrengthFeedback,
    UserInfo,
    Violation,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "CONFIG_KEYS",
    "OWASP_MINIMUM",
    "PRESET_NAMES",
    "PROFILES",
    "RFC_9106_LOW_MEMORY",
    "STRENGTH_FEEDBACK_CODES",
    "TESTS_ONLY",
    "VIOLATION_CODES",
    "AccountNotFoundError",
    "BreachCheck",
    "BreachCheckUnavailableError",
    "BreachedFilter",
    "BreachedFilterError",
    "BreachedSourceError",
    "CatalogError",
    "CorruptRecordError",
    "DeliveryError",
    "Deviation",
    "DuplicateAccountError",
    "ExpiredTokenError",
    "HashProfile",
    "HashingError",
    "Hint",
    "Iin",
    "InvalidCodeError",
    "InvalidHashError",
    "InvalidIdentifierError",
    "InvalidIinError",
    "InvalidPasswordError",
    "InvalidPhoneError",
    "InvalidTokenError",
    "KaspiIdentityError",
    "PasswordHasher",
    "PasswordHistory",
    "PasswordMismatchError",
    "PasswordPolicy",
    "PolicyConfigError",
    "PolicyResult",
    "StorageError",
    "StrengthFeedback",
    "UnknownLanguageError",
    "UserInfo",
    "Violation",
    "__version__",
    "calibrate",
    "parse_iin",
]
