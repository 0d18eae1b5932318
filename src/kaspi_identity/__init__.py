"""kaspi-identity: password rules, argon2id hashing and account recovery for portals.

The names here are the public surface; subpackages ``kaspi_identity.i18n``,
``kaspi_identity.storage`` and ``kaspi_identity.testing`` have their own. Nothing is imported
from an underscore module by users. Importing the package is cheap: only the exceptions
load at once, everything else on first use.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

from kaspi_identity._errors import (
    AccountNotFoundError,
    BreachCheckUnavailableError,
    BreachedFilterError,
    BreachedSourceError,
    CorruptRecordError,
    DeliveryError,
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

if _typing.TYPE_CHECKING:
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

#: Where each name that is loaded on first use lives. ``import kaspi_identity`` loads only
#: the exceptions; the policy engine, the hasher (argon2), the history and the phone and
#: IIN parsers are imported when one of their names is first looked up here (PEP 562), so a
#: process pays for what it uses.
_LAZY: dict[str, str] = {
    "OWASP_MINIMUM": "kaspi_identity.hashing",
    "PROFILES": "kaspi_identity.hashing",
    "RFC_9106_LOW_MEMORY": "kaspi_identity.hashing",
    "TESTS_ONLY": "kaspi_identity.hashing",
    "HashProfile": "kaspi_identity.hashing",
    "PasswordHasher": "kaspi_identity.hashing",
    "calibrate": "kaspi_identity.hashing",
    "PasswordHistory": "kaspi_identity.history",
    "CatalogError": "kaspi_identity.i18n",
    "Iin": "kaspi_identity.phone",
    "InvalidIinError": "kaspi_identity.phone",
    "InvalidPhoneError": "kaspi_identity.phone",
    "parse_iin": "kaspi_identity.phone",
    "CONFIG_KEYS": "kaspi_identity.policy",
    "PRESET_NAMES": "kaspi_identity.policy",
    "STRENGTH_FEEDBACK_CODES": "kaspi_identity.policy",
    "VIOLATION_CODES": "kaspi_identity.policy",
    "BreachCheck": "kaspi_identity.policy",
    "BreachedFilter": "kaspi_identity.policy",
    "Deviation": "kaspi_identity.policy",
    "Hint": "kaspi_identity.policy",
    "PasswordPolicy": "kaspi_identity.policy",
    "PolicyResult": "kaspi_identity.policy",
    "StrengthFeedback": "kaspi_identity.policy",
    "UserInfo": "kaspi_identity.policy",
    "Violation": "kaspi_identity.policy",
}

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


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # looked up once; later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
