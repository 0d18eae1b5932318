"""``PasswordPolicy``: a validated, frozen set of password rules."""

from __future__ import annotations

import difflib
import hmac
import os
import random
import string
import sys
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final

from kaspi_identity._errors import PolicyConfigError
from kaspi_identity._normalize import normalize_password
from kaspi_identity.i18n import get_catalog
from kaspi_identity.policy._blocklist import BlocklistError, builtin_blocklist, load_blocklist
from kaspi_identity.policy._deviations import Deviation, deviations_of
from kaspi_identity.policy._document import policy_document
from kaspi_identity.policy._frozen import FrozenMap
from kaspi_identity.policy._presets import PRESETS
from kaspi_identity.policy._result import PolicyResult, Violation
from kaspi_identity.policy._rules import (
    CLASS_NAMES,
    Alphabet,
    Blocklist,
    Classes,
    Context,
    Length,
    MaxRepeat,
    PersonalInfo,
    Rule,
    Strength,
)
from kaspi_identity.policy._text import ASCII_PRINTABLE, DIGITS, LATIN_ALNUM, LOWER, UPPER
from kaspi_identity.policy._userinfo import UserInfo

__all__ = ["PRESET_NAMES", "PasswordPolicy"]

#: The names :meth:`PasswordPolicy.preset` accepts.
PRESET_NAMES: Final[tuple[str, ...]] = tuple(PRESETS)

_ALPHABET_NAMES: Final = ("any", "ascii", "latin_alnum")
_DEFAULT_SPECIAL: Final = string.punctuation
# A few familiar special characters to show in messages, in the order users expect them.
_EXAMPLE_SPECIAL: Final = "%$@&*#^!"
# NFKC never merges more than four code points into one, so input longer than four times the
# limit is too long whatever its normal form; it is rejected before normalisation runs.
_NFKC_MAX_SHRINK: Final = 4
# No deployment needs longer passwords; the bound keeps construction's example cheap. It is
# also the hard cap of a policy with ``max_length=None``: no password longer than this is ever
# accepted (nor hashed: kaspi_identity.hashing.MAX_PASSWORD_LENGTH is the same number).
_MAX_LIMIT: Final = 4096


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _off(value: object) -> bool:
    """``None``, ``False`` and ``0`` switch a rule off."""
    return value is None or value is False or (_is_int(value) and value == 0)


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) in ("Cc", "Cs") for c in text)


class _Checker:
    """Collects every problem of a configuration before one exception reports them all."""

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}

    def bad(self, key: str, reason: str) -> None:
        self.errors.setdefault(key, reason)

    def optional_int(
        self, key: str, value: object, *, low: int, high: int | None = None
    ) -> int | None:
        if _off(value):
            return None
        if not _is_int(value):
            self.bad(key, f"must be an integer or null/false, not {type(value).__name__}")
            return None
        assert isinstance(value, int)  # narrowed above; not a security check
        if value < low or (high is not None and value > high):
            span = f"from {low} to {high}" if high is not None else f"at least {low}"
            self.bad(key, f"must be {span}, not {value}")
            return None
        return value

    def flag(self, key: str, value: object) -> bool:
        if value is None:
            return False
        if not isinstance(value, bool):
            self.bad(key, f"must be true or false, not {type(value).__name__}")
            return False
        return value


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    """A validated, immutable set of password rules.

    Build one with keyword arguments, :meth:`from_mapping`, :meth:`from_toml` or
    :meth:`preset`. Every rule is optional; ``None``, ``False`` or ``0`` switches it off.
    ``PasswordPolicy()`` is the default: 8 to 128 characters, any characters, not a common
    password, not containing the user's personal data — the NIST SP 800-63B / OWASP ASVS
    baseline without composition rules. Change it with :func:`dataclasses.replace`.

    Args:
        min_length: fewest characters (code points after NFKC normalisation).
        max_length: most characters; longer input is rejected, never truncated. ``None``
            leaves the hard cap of 4096 characters, the most any policy allows.
        require: classes that must appear: ``"upper"`` and ``"lower"`` (Latin A–Z, a–z),
            ``"digit"`` (0–9), ``"special"`` (one of ``special_characters``). A list asks for
            one character of each; a mapping such as ``{"digit": 2, "upper": 1}`` for that
            many. Stored as a read-only mapping of class to count, in canonical order.
        min_classes: at least this many of the four classes must appear.
        special_characters: what counts as a special character (default: ASCII punctuation).
        alphabet: allowed characters: ``"any"``, ``"ascii"`` (printable ASCII and space),
            ``"latin_alnum"`` (A–Z, a–z, 0–9) or an explicit string of allowed characters.
            Control characters and lone surrogates are never allowed.
        max_repeat: the longest allowed run of one character.
        forbid_personal_info: reject passwords holding the user's name, user name, e-mail
            local part or phone number (see :class:`UserInfo`).
        min_strength: lowest zxcvbn score (1–4) accepted.
        blocklist: ``True`` for the built-in list of common passwords, the path of a UTF-8
            file with one password per line, or ``{"builtin": True, "files": [path, ...]}``
            for the built-in list and the deployment's own files together.
        history: how many previous passwords may not be reused (checked with storage).
        history_similar: also reject passwords similar to those ``history`` passwords.
        max_age_days: a password expires this many days after it was set (1–3650), for
            regulators that still ask for periodic change (NIST SP 800-63B-4 and ASVS
            6.2.10 say not to: see :meth:`deviations`). Checked at log-in by the services.
        expiry_warning_days: this many days before it expires (fewer than
            ``max_age_days``), log-in says the password is expiring.
        grace_logins: log-ins still allowed with an expired password (1–100), each asking
            for a change; past them log-in is refused until the password is changed.
        min_age_hours: a changed password cannot be changed again by its user for this
            many hours (1–8760), so nobody cycles through ``history`` to get back an old
            one. A reset, a required change and an expired password are exempt.

    Raises:
        PolicyConfigError: any value is invalid, or no password could satisfy the rules;
            every problem is named at once.
    """

    min_length: int | None = 8
    max_length: int | None = 128
    require: Sequence[str] | Mapping[str, int] = ()
    min_classes: int | None = None
    special_characters: str = _DEFAULT_SPECIAL
    alphabet: str = "any"
    max_repeat: int | None = None
    forbid_personal_info: bool = True
    min_strength: int | None = None
    blocklist: bool | str | os.PathLike[str] | Mapping[str, Any] = True
    history: int | None = None
    history_similar: bool = False
    max_age_days: int | None = None
    expiry_warning_days: int | None = None
    grace_logins: int | None = None
    min_age_hours: int | None = None
    _rules: tuple[Rule, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        values, errors = _validate({f: getattr(self, f) for f in CONFIG_KEYS})
        if errors:
            raise PolicyConfigError(errors)
        for key, value in values.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "_rules", self._build_rules())
        errors = self._satisfiability()
        if errors:
            raise PolicyConfigError(errors)

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, Any], *, base_dir: str | os.PathLike[str] | None = None
    ) -> PasswordPolicy:
        """Build a policy from a mapping of config keys (e.g. parsed JSON, TOML or YAML).

        Keys left out keep their defaults. A relative ``blocklist`` path (or ``files`` entry) is
        resolved against ``base_dir`` (default: the current directory).

        Raises:
            PolicyConfigError: an unknown key (with the near miss: ``min_lenght → min_length?``),
                a wrong type or value, or an unsatisfiable policy; all problems at once.
            TypeError: ``mapping`` is not a mapping.
        """
        if not isinstance(mapping, Mapping):
            raise TypeError(f"policy config must be a mapping, not {type(mapping).__name__}")
        errors: dict[str, str] = {}
        known: dict[str, Any] = {}
        for key, value in mapping.items():
            if key in CONFIG_KEYS:
                known[key] = value
                continue
            near = difflib.get_close_matches(str(key), CONFIG_KEYS, n=1, cutoff=0.6)
            hint = f"{key} → {near[0]}?" if near else f"known keys: {', '.join(CONFIG_KEYS)}"
            errors[str(key)] = f"unknown key ({hint})"
        if base_dir is not None and "blocklist" in known:
            known["blocklist"] = _resolve_blocklist(known["blocklist"], base_dir)
        if errors:
            _, value_errors = _validate({**_defaults(), **known})
            raise PolicyConfigError({**errors, **value_errors})
        try:
            return cls(**known)
        except PolicyConfigError:
            raise
        except TypeError as exc:  # pragma: no cover - every key is known at this point
            raise PolicyConfigError({"config": str(exc)}) from None

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> PasswordPolicy:
        """Read a policy from a TOML file: its ``[password]`` table, or the top level.

        A relative ``blocklist`` path is resolved against the file's directory.

        Raises:
            PolicyConfigError: the file cannot be read or parsed, or its policy is invalid.
        """
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover
            import tomli as tomllib
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise PolicyConfigError({str(p): f"cannot read file ({exc.strerror})"}) from None
        except UnicodeDecodeError:
            raise PolicyConfigError({str(p): "file is not valid UTF-8"}) from None
        except tomllib.TOMLDecodeError as exc:
            raise PolicyConfigError({str(p): f"invalid TOML ({exc})"}) from None
        table = data.get("password", data)
        if not isinstance(table, dict):
            raise PolicyConfigError({"password": "must be a table"})
        return cls.from_mapping(table, base_dir=p.parent)

    @classmethod
    def preset(cls, name: str) -> PasswordPolicy:
        """The named policy: ``"kz-procurement"``, ``"utility-cabinet"`` or ``"nist"``.

        Raises:
            PolicyConfigError: no preset has that name.
        """
        mapping = PRESETS.get(name) if isinstance(name, str) else None
        if mapping is None:
            near = difflib.get_close_matches(str(name), PRESET_NAMES, n=1, cutoff=0.6)
            hint = f"did you mean {near[0]}? " if near else ""
            raise PolicyConfigError(
                {"preset": f"unknown preset {name!r}; {hint}known: {', '.join(PRESET_NAMES)}"}
            )
        return cls.from_mapping(mapping)

    def to_mapping(self) -> dict[str, Any]:
        """Every config key with its value; ``from_mapping`` of the result gives an equal policy.

        Switched-off rules are ``None`` (write ``false`` or ``0`` in TOML, which has no null).
        """
        out: dict[str, Any] = {key: getattr(self, key) for key in CONFIG_KEYS}
        counts = self._counts
        out["require"] = list(counts) if all(n == 1 for n in counts.values()) else dict(counts)
        if isinstance(self.blocklist, Mapping):
            out["blocklist"] = {
                "builtin": self.blocklist["builtin"],
                "files": list(self.blocklist["files"]),
            }
        return out

    # -- checking -------------------------------------------------------------------------

    def check(
        self,
        password: str,
        *,
        user: UserInfo | None = None,
        confirmation: str | None = None,
    ) -> PolicyResult:
        """Check ``password`` against every stateless rule.

        The password is NFKC-normalised first and lengths count its code points. Every broken
        rule is reported, in rule order. An over-long password is reported as ``too_long``
        alone: no other rule runs on it, and input longer than four times the limit is refused
        before it is normalised, so no input costs more than a few milliseconds. With
        ``max_length=None`` the limit is the hard cap, 4096. History (``reused``,
        ``similar_to_previous``) needs storage and is checked by the history store on top of
        this result.

        Args:
            password: the candidate password.
            user: personal data the password must not contain (and zxcvbn's dictionary).
            confirmation: the password typed a second time; ``confirmation_mismatch`` when the
                two differ (compared in constant time).

        Raises:
            TypeError: ``password`` or ``confirmation`` is not a ``str``, or ``user`` is not
                a :class:`UserInfo`.
        """
        if not isinstance(password, str):
            raise TypeError(f"password must be str, not {type(password).__name__}")
        if confirmation is not None and not isinstance(confirmation, str):
            raise TypeError(f"confirmation must be str, not {type(confirmation).__name__}")
        if user is not None and not isinstance(user, UserInfo):
            raise TypeError(f"user must be UserInfo, not {type(user).__name__}")
        limit = self._limit
        if len(password) > _NFKC_MAX_SHRINK * limit:
            return self._too_long(password, None, confirmation)
        normal = normalize_password(password)
        if len(normal) > limit:
            return self._too_long(password, normal, confirmation)
        ctx = Context(normal, user)
        for rule in self._rules:
            rule.check(ctx)
        if confirmation is not None and not self._same(normal, confirmation):
            ctx.add("confirmation_mismatch")
        return PolicyResult(tuple(ctx.violations), tuple(dict.fromkeys(ctx.hints)))

    def describe(self, lang: str = "en") -> list[str]:
        """The requirement lines a sign-up form shows under the password field, in ``lang``.

        Raises:
            UnknownLanguageError: ``lang`` has no catalog.
        """
        catalog = get_catalog(lang)
        return [
            catalog.message(key, count=count, **params)
            for key, count, params in self._requirements()
        ]

    def document(self, lang: str = "en") -> dict[str, Any]:
        """The policy as one JSON-ready document, its requirement lines rendered in ``lang``.

        What a front end's live checklist or a framework's policy endpoint serves: the
        version of the shape, the language, the normalisation, ``length`` (``min``, ``max``
        — the hard cap 4096 when ``max_length`` is off — and ``max_configured``),
        ``classes`` (each required class with its count and characters, ``min_classes``,
        ``special_characters``), ``alphabet`` (``kind`` and, for an explicit one, its
        ``characters``), ``max_repeat``, ``personal_info``, ``strength``, ``blocklist``
        (whether the built-in and own lists are used; never a path), ``history`` and
        ``requirements`` (``key``, rendered ``text`` and ``params`` of each line of
        :meth:`describe`). Off rules are ``null``. docs/policy.schema.json is its JSON Schema.

        Raises:
            UnknownLanguageError: ``lang`` has no catalog.
        """
        return policy_document(self, lang)

    def deviations(self, *, multi_factor: bool = False) -> tuple[Deviation, ...]:
        """Where this policy departs from NIST SP 800-63B-4 and OWASP ASVS 5.0, rule by rule.

        One :class:`Deviation` per rule and standard, in config-key order (NIST first): a
        minimum length below 15 (NIST, single factor) or 8 (NIST with ``multi_factor``, and
        ASVS 6.2.1), a maximum below 64 (NIST, ASVS 6.2.9), composition rules (``require``,
        ``min_classes``, ``max_repeat``: NIST, ASVS 6.2.5), a restricted ``alphabet`` (NIST,
        ASVS 6.2.5), no personal-data check (NIST, ASVS 6.2.11), no blocklist (NIST,
        ASVS 6.2.4 and 6.2.12) and a maximum age (``max_age_days``: NIST, ASVS 6.2.10).
        ``()`` for a policy that departs from neither, such as the ``nist`` preset. The
        texts are in English.

        Args:
            multi_factor: the password is used only together with a second factor, for which
                NIST SP 800-63B-4 allows a minimum of 8 characters instead of 15.

        Raises:
            TypeError: ``multi_factor`` is not a bool.
        """
        if not isinstance(multi_factor, bool):
            raise TypeError(f"multi_factor must be a bool, not {type(multi_factor).__name__}")
        return deviations_of(self, multi_factor=multi_factor)

    # -- internals ------------------------------------------------------------------------

    @property
    def _counts(self) -> Mapping[str, int]:
        """``require`` as a mapping of class to count (canonical after construction)."""
        require = self.require
        if isinstance(require, Mapping):
            return require
        return dict.fromkeys(require, 1)  # pragma: no cover - canonical after construction

    @property
    def _limit(self) -> int:
        """The most characters a password may have: ``max_length``, or the hard cap."""
        return self.max_length if self.max_length is not None else _MAX_LIMIT

    def _same(self, normal: str, confirmation: str) -> bool:
        if len(confirmation) > _NFKC_MAX_SHRINK * self._limit:
            return False
        other = normalize_password(confirmation)
        return hmac.compare_digest(
            normal.encode("utf-8", "surrogatepass"), other.encode("utf-8", "surrogatepass")
        )

    def _too_long(
        self, password: str, normal: str | None, confirmation: str | None
    ) -> PolicyResult:
        violations = [Violation("too_long", {"max_length": self._limit})]
        if confirmation is not None and not self._same_too_long(password, normal, confirmation):
            violations.append(Violation("confirmation_mismatch"))
        return PolicyResult(tuple(violations))

    def _same_too_long(self, password: str, normal: str | None, confirmation: str) -> bool:
        """Whether an over-long password and its confirmation match, at bounded cost.

        An exact retype always matches. Past four times the limit the password is never
        normalised (that could cost 18 times its length), so there only an exact retype matches.
        Both texts come from the one request being checked and the password is refused anyway,
        so they are compared with ``==`` (no copy of a 100 MB input, no secret to time).
        """
        if len(password) == len(confirmation) and password == confirmation:
            return True
        return normal is not None and self._same(normal, confirmation)

    def _special_examples(self) -> str:
        chars = [c for c in _EXAMPLE_SPECIAL if c in self.special_characters]
        chars += [c for c in self.special_characters if c not in chars]
        return " ".join(chars[:8])

    def _allowed(self) -> frozenset[str] | None:
        return None if self.alphabet in _ALPHABET_NAMES else frozenset(self.alphabet)

    def _class_pools(self) -> dict[str, frozenset[str]]:
        """The characters of each class that the alphabet allows."""
        pools = {
            "upper": UPPER,
            "lower": LOWER,
            "digit": DIGITS,
            "special": frozenset(self.special_characters),
        }
        allowed = self._allowed()
        if self.alphabet == "ascii":
            allowed = ASCII_PRINTABLE
        elif self.alphabet == "latin_alnum":
            allowed = LATIN_ALNUM
        if allowed is None:
            return pools
        return {name: pool & allowed for name, pool in pools.items()}

    def _build_rules(self) -> tuple[Rule, ...]:
        rules: list[Rule] = [
            Length(self.min_length, self.max_length, _MAX_LIMIT),
            Alphabet(self.alphabet, self._allowed()),
        ]
        latin_wanted = bool(
            set(self._counts) & {"upper", "lower"}
            or self.min_classes
            or self.alphabet in ("ascii", "latin_alnum")
        )
        if self.require or self.min_classes or latin_wanted:
            rules.append(
                Classes(
                    tuple(self._counts.items()),
                    self.min_classes,
                    frozenset(self.special_characters),
                    self._special_examples(),
                    layout_hint=latin_wanted,
                )
            )
        if self.max_repeat is not None:
            rules.append(MaxRepeat.make(self.max_repeat))
        if self.forbid_personal_info:
            rules.append(PersonalInfo())
        if self.blocklist:
            builtin, files = _blocklist_sources(self.blocklist)
            own = frozenset().union(*(load_blocklist(f) for f in files))  # validated in _validate
            if builtin and own:
                rules.append(Blocklist(lambda: builtin_blocklist() | own))
            elif builtin:
                rules.append(Blocklist(builtin_blocklist))
            else:
                rules.append(Blocklist(lambda: own))
        if self.min_strength is not None:
            rules.append(Strength(self.min_strength))
        return tuple(rules)

    def _requirements(self) -> Iterator[tuple[str, int | None, dict[str, object]]]:
        for rule in self._rules:
            yield from rule.requirements()
        if self.history:
            key = "requirement.history_similar" if self.history_similar else "requirement.history"
            yield (key, self.history, {"history": self.history})
        if self.max_age_days:
            yield ("requirement.max_age", self.max_age_days, {"max_age_days": self.max_age_days})
        if self.min_age_hours:
            yield (
                "requirement.min_age",
                self.min_age_hours,
                {"min_age_hours": self.min_age_hours},
            )

    def _example(self, rng: random.Random, length: int) -> str | None:
        """A password meeting the structural rules (length, classes, alphabet, runs), or None."""
        pools = {name: sorted(pool) for name, pool in self._class_pools().items()}
        needed = [name for name, count in self._counts.items() for _ in range(count)]
        for name in CLASS_NAMES:
            if len(set(needed)) >= (self.min_classes or 0):
                break
            if name not in needed and pools[name]:
                needed.append(name)
        if any(not pools[name] for name in needed) or len(set(needed)) < (self.min_classes or 0):
            return None
        if self.alphabet in _ALPHABET_NAMES:
            filler = sorted(set().union(*map(set, pools.values())))
        else:
            filler = sorted(set(self.alphabet))
        chars = [rng.choice(pools[name]) for name in needed]
        while len(chars) < length:
            chars.append(rng.choice(filler))
        rng.shuffle(chars)
        limit = self.max_repeat
        if limit is not None:
            for i in range(limit, len(chars)):
                if len(set(chars[i - limit : i + 1])) == 1:
                    others = [c for c in filler if c != chars[i]]
                    if not others:
                        return None
                    chars[i] = rng.choice(others)
        return "".join(chars)

    def _satisfiability(self) -> dict[str, str]:
        """Explain why no password could pass, or return no errors."""
        errors: dict[str, str] = {}
        pools = self._class_pools()
        counts = self._counts
        for name in counts:
            if not pools[name]:
                errors["require"] = (
                    f"{name!r} is required but the alphabet allows no such character"
                )
        available = sum(1 for pool in pools.values() if pool)
        if self.min_classes is not None and self.min_classes > available:
            errors["min_classes"] = (
                f"{self.min_classes} classes asked for but the alphabet allows only {available}"
            )
        # One character per count, and one more per class min_classes adds to them.
        needed = sum(counts.values()) + max(0, (self.min_classes or 0) - len(counts))
        if self.max_length is not None and needed > self.max_length:
            many = any(n > 1 for n in counts.values())
            what = "characters the class counts require" if many else "character classes required"
            errors["max_length"] = f"{self.max_length} is fewer than the {needed} {what}"
        if errors:
            return errors
        rng = random.Random(0x6B61)  # noqa: S311 - a deterministic example, not a secret
        low = max(self.min_length or 1, needed, 1)
        high = self.max_length if self.max_length is not None else max(low, 64)
        start = max(low, min(high, 24)) if self.min_strength else low
        lengths = [start]
        if self.min_strength:
            # zxcvbn's score is not monotonic in length (one more repetition of a pattern can
            # lower it), so shorter lengths are tried too once the longer ones have failed.
            lengths += [*range(start + 4, high + 1, 4), *range(start - 1, low - 1, -1)]
        for attempt in range(40 if self.min_strength else 20):
            example = self._example(rng, lengths[attempt % len(lengths)])
            if example is None:
                break
            if self.check(example):
                return {}
        if self.min_strength:
            errors["min_strength"] = f"no password of at most {high} allowed characters reached it"
        else:
            errors["max_repeat" if self.max_repeat else "alphabet"] = (
                "no password can satisfy this policy"
            )
        return errors


CONFIG_KEYS: Final[tuple[str, ...]] = tuple(
    f.name for f in fields(PasswordPolicy) if not f.name.startswith("_")
)


def _defaults() -> dict[str, Any]:
    return {f.name: f.default for f in fields(PasswordPolicy) if not f.name.startswith("_")}


def _validate(values: Mapping[str, object]) -> tuple[dict[str, Any], dict[str, str]]:
    """Canonical values and the errors of every key, checked independently."""
    c = _Checker()
    out: dict[str, Any] = {}
    out["min_length"] = c.optional_int("min_length", values["min_length"], low=1, high=_MAX_LIMIT)
    out["max_length"] = c.optional_int("max_length", values["max_length"], low=1, high=_MAX_LIMIT)
    lo, hi = out["min_length"], out["max_length"]
    if lo is not None and hi is not None and lo > hi:
        c.bad("min_length", f"{lo} is greater than max_length {hi}")

    out["require"] = _validate_require(c, values["require"], out["max_length"])

    out["min_classes"] = c.optional_int("min_classes", values["min_classes"], low=1, high=4)

    special = values["special_characters"]
    if _off(special) or special == "":
        special = _DEFAULT_SPECIAL
    if not isinstance(special, str):
        c.bad("special_characters", f"must be a string, not {type(special).__name__}")
        special = _DEFAULT_SPECIAL
    elif set(special) & LATIN_ALNUM:
        c.bad("special_characters", "must not contain Latin letters or digits")
    elif _has_control(special) or any(ch.isspace() and ch != " " for ch in special):
        c.bad("special_characters", "must not contain control or whitespace characters")
    elif unicodedata.normalize("NFKC", special) != special:
        c.bad("special_characters", "holds characters that NFKC normalisation changes")
    out["special_characters"] = "".join(dict.fromkeys(special))

    alphabet = values["alphabet"]
    if _off(alphabet) or alphabet == "":
        alphabet = "any"
    if not isinstance(alphabet, str):
        c.bad("alphabet", f"must be a string, not {type(alphabet).__name__}")
        alphabet = "any"
    elif alphabet not in _ALPHABET_NAMES:
        near = difflib.get_close_matches(alphabet, _ALPHABET_NAMES, n=1, cutoff=0.75)
        if near:
            c.bad(
                "alphabet", f"{alphabet} → {near[0]}? (an explicit alphabet needs more characters)"
            )
        elif _has_control(alphabet):
            c.bad("alphabet", "must not contain control characters")
        elif unicodedata.normalize("NFKC", alphabet) != alphabet:
            c.bad("alphabet", "holds characters that NFKC normalisation changes")
        else:
            alphabet = "".join(dict.fromkeys(alphabet))
    out["alphabet"] = alphabet

    out["max_repeat"] = c.optional_int("max_repeat", values["max_repeat"], low=1)
    out["forbid_personal_info"] = c.flag("forbid_personal_info", values["forbid_personal_info"])
    out["min_strength"] = c.optional_int("min_strength", values["min_strength"], low=1, high=4)

    out["blocklist"] = _validate_blocklist(c, values["blocklist"])

    out["history"] = c.optional_int("history", values["history"], low=1, high=64)
    out["history_similar"] = c.flag("history_similar", values["history_similar"])
    if out["history_similar"] and not out["history"]:
        c.bad("history_similar", "needs history (how many previous passwords to compare)")
    _validate_age(c, values, out)
    return out, c.errors


def _validate_age(c: _Checker, values: Mapping[str, object], out: dict[str, Any]) -> None:
    """The password-age keys: each checked alone, then against ``max_age_days``."""
    max_days = c.optional_int("max_age_days", values["max_age_days"], low=1, high=3650)
    warn = c.optional_int("expiry_warning_days", values["expiry_warning_days"], low=1, high=365)
    grace = c.optional_int("grace_logins", values["grace_logins"], low=1, high=100)
    min_hours = c.optional_int("min_age_hours", values["min_age_hours"], low=1, high=8760)
    out.update(
        max_age_days=max_days,
        expiry_warning_days=warn,
        grace_logins=grace,
        min_age_hours=min_hours,
    )
    expiring = "needs max_age_days (the age at which a password expires)"
    if warn is not None and max_days is None and "max_age_days" not in c.errors:
        c.bad("expiry_warning_days", expiring)
    elif warn is not None and max_days is not None and warn >= max_days:
        c.bad("expiry_warning_days", f"{warn} must be fewer than max_age_days {max_days}")
    if grace is not None and max_days is None and "max_age_days" not in c.errors:
        c.bad("grace_logins", expiring)
    if min_hours is not None and max_days is not None and min_hours >= max_days * 24:
        c.bad("min_age_hours", f"{min_hours} hours is not less than max_age_days {max_days}")


def _validate_require(c: _Checker, require: object, max_length: int | None) -> FrozenMap[int]:
    """``require`` as a read-only mapping of class to count, in canonical order."""
    choose = f"choose from {', '.join(CLASS_NAMES)}"
    if _off(require) or require == ():
        return FrozenMap({})
    if isinstance(require, Mapping):
        counts: dict[str, int] = {}
        high = max_length if max_length is not None else _MAX_LIMIT
        for name, count in require.items():
            if name not in CLASS_NAMES:
                c.bad("require", f"unknown class {name!r}; {choose}")
            elif not _is_int(count):
                c.bad(
                    "require", f"{name}: the count must be an integer, not {type(count).__name__}"
                )
            elif not 1 <= count <= high:
                c.bad("require", f"{name}: the count must be from 1 to {high}, not {count}")
            else:
                counts[name] = count
        return FrozenMap({n: counts[n] for n in CLASS_NAMES if n in counts})
    if isinstance(require, str | bytes | bytearray) or not isinstance(
        require, Sequence | set | frozenset
    ):
        c.bad(
            "require", f"must be a list of {', '.join(CLASS_NAMES)} or a mapping of them to counts"
        )
        return FrozenMap({})
    unknown = [r for r in require if r not in CLASS_NAMES]
    if unknown:
        c.bad("require", f"unknown class {unknown[0]!r}; {choose}")
    return FrozenMap({n: 1 for n in CLASS_NAMES if n in require})


_BLOCKLIST_KEYS: Final = ("builtin", "files")
_BLOCKLIST_SHAPE: Final = (
    "must be true, false, the path of a file or a table {builtin = true, files = [PATH, ...]}"
)


def _resolve_blocklist(value: object, base_dir: str | os.PathLike[str]) -> object:
    """``value`` with its relative file paths resolved against ``base_dir``."""
    if isinstance(value, str | os.PathLike) and not isinstance(value, bool):
        return str(Path(base_dir, value))
    if isinstance(value, Mapping):
        files = value.get("files")
        if isinstance(files, Sequence) and not isinstance(files, str | bytes):
            resolved = [
                str(Path(base_dir, f)) if isinstance(f, str | os.PathLike) else f for f in files
            ]
            return {**value, "files": resolved}
    return value


def _blocklist_sources(blocklist: object) -> tuple[bool, tuple[str, ...]]:
    """Whether a canonical ``blocklist`` value uses the built-in list, and its files."""
    if isinstance(blocklist, Mapping):
        return bool(blocklist["builtin"]), tuple(blocklist["files"])
    if isinstance(blocklist, str):
        return False, (blocklist,)
    return bool(blocklist), ()


def _validate_blocklist(c: _Checker, blocklist: object) -> bool | str | FrozenMap[Any]:
    """``True``, ``False``, one path, or ``{"builtin": bool, "files": (path, ...)}``.

    A table is kept as a table (its files once each, in order); one naming no list is ``False``.
    """
    if blocklist is None:
        return False
    if isinstance(blocklist, bool):
        return blocklist
    if isinstance(blocklist, os.PathLike):
        blocklist = os.fspath(blocklist)
    if isinstance(blocklist, str) and blocklist:
        try:
            load_blocklist(blocklist)
        except BlocklistError as exc:
            c.bad("blocklist", f"{blocklist}: {exc}")
            return False
        return blocklist
    if not isinstance(blocklist, Mapping):
        c.bad("blocklist", _BLOCKLIST_SHAPE)
        return False
    unknown = [str(k) for k in blocklist if k not in _BLOCKLIST_KEYS]
    if unknown:
        c.bad("blocklist", f"unknown key {unknown[0]!r} (known: builtin, files)")
        return False
    builtin = blocklist.get("builtin", True)
    if not isinstance(builtin, bool):
        c.bad("blocklist", f"builtin must be true or false, not {type(builtin).__name__}")
        return False
    raw = blocklist.get("files", ())
    if isinstance(raw, str | bytes | os.PathLike) or not isinstance(raw, Sequence):
        c.bad("blocklist", "files must be a list of paths")
        return False
    files: list[str] = []
    for f in raw:
        path = os.fspath(f) if isinstance(f, os.PathLike) else f
        if not isinstance(path, str) or not path:
            c.bad("blocklist", f"files: each entry must be a path, not {path!r}")
            return False
        try:
            load_blocklist(path)
        except BlocklistError as exc:
            c.bad("blocklist", f"{path}: {exc}")
            return False
        files.append(path)
    if not builtin and not files:
        return False  # no list at all: the rule is off, as with ``false``
    return FrozenMap({"builtin": builtin, "files": tuple(dict.fromkeys(files))})
