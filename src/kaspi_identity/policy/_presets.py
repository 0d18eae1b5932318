"""Named policies for the deployments kaspi-identity was built for.

Each preset is the exact rule set of its source; the test suite shows each behaving as
described (tests/test_presets.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

__all__ = ["PRESETS"]

PRESETS: Final[Mapping[str, Mapping[str, object]]] = MappingProxyType(
    {
        # E-procurement portal (instructions in Kazakh): at least 8 characters, upper- and
        # lower-case Latin letters, digits and special characters (% $ @ & * # ^ ! . etc.),
        # not similar to any of the last 6 passwords. Nothing more is asked.
        "kz-procurement": {
            "min_length": 8,
            "max_length": 128,
            "require": ["upper", "lower", "digit", "special"],
            "min_classes": None,
            "alphabet": "any",
            "max_repeat": None,
            "forbid_personal_info": False,
            "min_strength": None,
            "blocklist": False,
            "history": 6,
            "history_similar": True,
        },
        # Utility personal cabinet (Russian): any combination of English letters and digits,
        # from 5 to 10 characters. Nothing more is asked.
        "utility-cabinet": {
            "min_length": 5,
            "max_length": 10,
            "require": [],
            "min_classes": None,
            "alphabet": "latin_alnum",
            "max_repeat": None,
            "forbid_personal_info": False,
            "min_strength": None,
            "blocklist": False,
            "history": 0,
            "history_similar": False,
        },
        # NIST SP 800-63B-4, password used as a single factor: at least 15 characters, at
        # least 64 allowed, every printing ASCII and Unicode character allowed, no composition
        # rules, checked against a blocklist of common passwords and context-specific words.
        "nist": {
            "min_length": 15,
            "max_length": 128,
            "require": [],
            "min_classes": None,
            "alphabet": "any",
            "max_repeat": None,
            "forbid_personal_info": True,
            "min_strength": None,
            "blocklist": True,
            "history": 0,
            "history_similar": False,
        },
    }
)
