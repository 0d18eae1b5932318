"""The policy as one JSON-ready document: what a front end's live sign-up checklist needs.

docs/policy.schema.json is its JSON Schema; the test suite validates the document of every
preset and of random policies against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from kaspi_identity.i18n import get_catalog

if TYPE_CHECKING:
    from kaspi_identity.policy._policy import PasswordPolicy

__all__ = ["POLICY_DOCUMENT_VERSION", "policy_document"]

#: The version of the document's shape; it changes only when a field changes meaning or goes
#: (a new field, such as ``age``, keeps it).
POLICY_DOCUMENT_VERSION: Final = 1

_CLASS_CHARACTERS: Final = {
    "upper": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "lower": "abcdefghijklmnopqrstuvwxyz",
    "digit": "0123456789",
}
_NAMED_ALPHABETS: Final = ("any", "ascii", "latin_alnum")


def policy_document(policy: PasswordPolicy, lang: str) -> dict[str, Any]:
    """The JSON-ready document of ``policy`` with its requirement lines in ``lang``.

    Only ``dict``, ``list``, ``str``, ``int``, ``bool`` and ``None``: ``json.dumps`` takes
    it as it is. No file path of a blocklist appears (the server's layout is not the front
    end's business), only whether the built-in list and own lists are used.
    """
    catalog = get_catalog(lang)  # UnknownLanguageError before any work
    require = policy.require
    counts = dict(require) if isinstance(require, Mapping) else dict.fromkeys(require, 1)
    special = policy.special_characters
    pool = policy._class_pools()["special"]  # the special characters the alphabet allows
    allowed_special = "".join(c for c in special if c in pool)
    alphabet = policy.alphabet
    blocklist: dict[str, bool] | None = None
    if isinstance(policy.blocklist, Mapping):
        blocklist = {
            "builtin": bool(policy.blocklist["builtin"]),
            "custom": bool(policy.blocklist["files"]),
        }
    elif isinstance(policy.blocklist, str):
        blocklist = {"builtin": False, "custom": True}
    elif policy.blocklist:
        blocklist = {"builtin": True, "custom": False}
    return {
        "version": POLICY_DOCUMENT_VERSION,
        "lang": catalog.language,
        "normalization": "NFKC",
        "length": {
            "min": policy.min_length,
            "max": policy._limit,
            "max_configured": policy.max_length is not None,
        },
        "classes": {
            "required": [
                {
                    "class": name,
                    "count": count,
                    "characters": _CLASS_CHARACTERS.get(name, allowed_special),
                }
                for name, count in counts.items()
            ],
            "min_classes": policy.min_classes,
            "special_characters": special,
        },
        "alphabet": {
            "kind": alphabet if alphabet in _NAMED_ALPHABETS else "custom",
            "characters": None if alphabet in _NAMED_ALPHABETS else alphabet,
        },
        "max_repeat": policy.max_repeat,
        "personal_info": policy.forbid_personal_info,
        "strength": (
            None
            if policy.min_strength is None
            else {"estimator": "zxcvbn", "min_score": policy.min_strength, "max_score": 4}
        ),
        "blocklist": blocklist,
        "history": (
            None
            if not policy.history
            else {"count": policy.history, "similar": policy.history_similar}
        ),
        "age": (
            None
            if policy.max_age_days is None and policy.min_age_hours is None
            else {
                "max_days": policy.max_age_days,
                "warning_days": policy.expiry_warning_days,
                "grace_logins": policy.grace_logins,
                "min_hours": policy.min_age_hours,
            }
        ),
        "requirements": [
            {
                "key": key,
                "text": catalog.message(key, count=count, **params),
                "params": dict(params),
            }
            for key, count, params in policy._requirements()
        ],
    }
