"""Hypothesis properties of the policy engine: each rule against a plain reimplementation."""

from __future__ import annotations

import itertools
import re
import string
import unicodedata
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaspi_identity import (
    CONFIG_KEYS,
    PRESET_NAMES,
    VIOLATION_CODES,
    PasswordPolicy,
    PolicyConfigError,
    PolicyResult,
    UserInfo,
)

FAST = settings(max_examples=200, deadline=None)
SLOW = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Any text at all, lone surrogates and controls included.
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=60)
#: Text dense in the characters the rules care about.
INTERESTING = st.text(
    st.sampled_from("aAzZ09!%. _-пПӘ\x00\x7f\ud800\udfffﬁ①ＡＢ１é\u0301\ufdfa😀"), max_size=40
)
PASSWORDS = st.one_of(ANY_TEXT, INTERESTING, st.text(max_size=40))
USERS = st.one_of(
    st.none(),
    st.builds(
        UserInfo,
        username=st.one_of(st.none(), ANY_TEXT),
        email=st.one_of(st.none(), ANY_TEXT),
        phone=st.one_of(st.none(), st.text("0123456789 +-()", max_size=16)),
        names=st.lists(ANY_TEXT, max_size=3).map(tuple),
    ),
)

ALL_CLASSES = ["upper", "lower", "digit", "special"]
#: Policies with only stateless rules that a plain reimplementation can mirror.
STRUCTURAL = [
    PasswordPolicy(
        min_length=8,
        max_length=20,
        require=ALL_CLASSES,
        min_classes=3,
        max_repeat=2,
        blocklist=False,
        forbid_personal_info=False,
    ),
    PasswordPolicy(
        min_length=5, max_length=10, alphabet="latin_alnum", blocklist=False, max_repeat=3
    ),
    PasswordPolicy(
        min_length=4,
        max_length=12,
        alphabet="ascii",
        min_classes=2,
        blocklist=False,
        forbid_personal_info=False,
    ),
    # No blocklist: the plain code does not model it ("000000" is on it).
    PasswordPolicy(
        min_length=None, max_length=30, require=["digit"], alphabet="0123456789ab", blocklist=False
    ),
    PasswordPolicy(require=["special"], special_characters="!§ ", max_repeat=1, blocklist=False),
]


def nfkc(text: str) -> str:
    """The NFKC form of ``text``."""
    return unicodedata.normalize("NFKC", text)


def plain_codes(policy: PasswordPolicy, password: str) -> list[str]:
    """The codes a plain reimplementation of the structural rules gives ``password``."""
    text = nfkc(password)
    if policy.max_length is not None and len(text) > policy.max_length:
        return ["too_long"]
    out: list[str] = []
    if policy.min_length is not None and len(text) < policy.min_length:
        out.append("too_short")
    control = any(unicodedata.category(c) in ("Cc", "Cs") for c in text)
    if control:
        out.append("disallowed_character")
    elif policy.alphabet == "latin_alnum":
        if not re.fullmatch(r"[A-Za-z0-9]*", text):
            out.append("disallowed_character")
    elif policy.alphabet == "ascii":
        if not re.fullmatch(r"[ -~]*", text):
            out.append("disallowed_character")
    elif policy.alphabet != "any" and any(c not in policy.alphabet for c in text):
        out.append("disallowed_character")
    has = {
        "upper": any(ord("A") <= ord(c) <= ord("Z") for c in text),
        "lower": any(ord("a") <= ord(c) <= ord("z") for c in text),
        "digit": any(ord("0") <= ord(c) <= ord("9") for c in text),
        "special": any(c in policy.special_characters for c in text),
    }
    for name in ALL_CLASSES:
        if name in policy.require and not has[name]:
            out.append(f"missing_{name}")
    if policy.min_classes is not None and sum(has.values()) < policy.min_classes:
        out.append("too_few_classes")
    if policy.max_repeat is not None and text:
        longest = max(len(list(run)) for _, run in itertools.groupby(text))
        if longest > policy.max_repeat:
            out.append("repeated_characters")
    return out


def assert_in_rule_order(result: PolicyResult) -> None:
    """The codes are a strictly increasing subsequence of VIOLATION_CODES."""
    positions = [VIOLATION_CODES.index(code) for code in result.codes]
    assert sorted(set(positions)) == positions


class TestEveryPassword:
    """Properties of ``check`` over any text."""

    @FAST
    @given(password=PASSWORDS, user=USERS, confirmation=st.one_of(st.none(), PASSWORDS))
    def test_never_raises_and_ok_iff_no_violations(
        self, password: str, user: UserInfo | None, confirmation: str | None
    ) -> None:
        """Any ``str`` gives a result; it is truthy exactly when it has no violations."""
        result = PasswordPolicy().check(password, user=user, confirmation=confirmation)
        assert bool(result) == result.ok == (not result.violations)
        assert_in_rule_order(result)

    @FAST
    @given(password=PASSWORDS, name=st.sampled_from(PRESET_NAMES))
    def test_presets_never_raise(self, password: str, name: str) -> None:
        """Every preset checks any text, in rule order, and renders every finding."""
        result = PasswordPolicy.preset(name).check(password, confirmation=password)
        assert "confirmation_mismatch" not in result.codes
        assert_in_rule_order(result)
        for lang in ("en", "ru", "kk"):
            assert all("{" not in m for m in result.messages(lang))

    @FAST
    @given(password=PASSWORDS, policy=st.sampled_from(STRUCTURAL))
    def test_structural_rules_agree_with_plain_code(
        self, password: str, policy: PasswordPolicy
    ) -> None:
        """Length, alphabet, classes and runs agree with a plain reimplementation."""
        assert plain_codes(policy, password) == list(policy.check(password).codes)

    @FAST
    @given(password=PASSWORDS, user=USERS)
    def test_idempotent_under_nfkc(self, password: str, user: UserInfo | None) -> None:
        """Checking the NFKC form gives the same result as checking the password."""
        policy = PasswordPolicy(require=["upper"], max_repeat=2)
        assert policy.check(password, user=user) == policy.check(nfkc(password), user=user)

    @FAST
    @given(password=PASSWORDS)
    def test_confirmation_of_itself_matches(self, password: str) -> None:
        """The password as its own confirmation, or its NFKC form, never mismatches."""
        policy = PasswordPolicy(max_length=10)
        assert "confirmation_mismatch" not in policy.check(password, confirmation=password).codes
        assert "confirmation_mismatch" not in policy.check(nfkc(password)).codes

    @SLOW
    @given(password=PASSWORDS, user=USERS)
    def test_strength_never_raises(self, password: str, user: UserInfo | None) -> None:
        """zxcvbn runs on any text; too_weak carries the score, an int in 0..3."""
        result = PasswordPolicy(min_strength=4, max_length=64).check(password, user=user)
        assert_in_rule_order(result)
        for violation in result.violations:
            if violation.code == "too_weak":
                assert violation.params["score"] in range(4)


class TestParamsHoldNoSecret:
    """Violation params never contain the password."""

    @FAST
    @given(
        password=st.one_of(PASSWORDS, st.text(string.punctuation + " ", min_size=3, max_size=12)),
        policy=st.sampled_from(
            [
                *STRUCTURAL,
                PasswordPolicy(alphabet="abc!", require=["special"], max_length=None),
                PasswordPolicy(min_strength=2, require=ALL_CLASSES, alphabet="ascii"),
                *(PasswordPolicy.preset(name) for name in PRESET_NAMES),
            ]
        ),
    )
    def test_no_param_contains_the_password(self, password: str, policy: PasswordPolicy) -> None:
        """For passwords of three or more characters no string param holds them."""
        if len(password) < 3 or len(nfkc(password)) < 3:
            return
        for violation in policy.check(password, confirmation=password[::-1]).violations:
            for value in violation.params.values():
                if isinstance(value, str):
                    assert password not in value
                    assert nfkc(password) not in value


# A strategy over policy mappings: mostly well-typed values (some unsatisfiable together),
# now and then an ill-typed one.
_ints = st.one_of(st.none(), st.just(False), st.integers(min_value=0, max_value=40))
_junk = st.sampled_from([True, "8", 2.5, [1], {"a": 1}, b"x", -3])
CONFIG_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "min_length": _ints,
    "max_length": st.one_of(_ints, st.integers(min_value=40, max_value=200)),
    "require": st.one_of(
        st.none(), st.lists(st.sampled_from(ALL_CLASSES), unique=True).map(sorted)
    ),
    "min_classes": st.one_of(st.none(), st.integers(min_value=0, max_value=4)),
    "special_characters": st.one_of(
        st.none(), st.text(st.sampled_from("!@#$%^&*.,;§ "), min_size=1, max_size=6)
    ),
    "alphabet": st.one_of(
        st.sampled_from(["any", "ascii", "latin_alnum"]),
        st.text(st.sampled_from("abcAB01!§ пф"), min_size=1, max_size=8),
    ),
    "max_repeat": st.one_of(st.none(), st.integers(min_value=0, max_value=5)),
    "forbid_personal_info": st.booleans(),
    "min_strength": st.one_of(st.none(), st.just(0), st.just(1)),
    "blocklist": st.booleans(),
    "history": st.one_of(st.none(), st.integers(min_value=0, max_value=64)),
    "history_similar": st.booleans(),
    "max_age_days": st.one_of(st.none(), st.integers(min_value=0, max_value=4000)),
    "expiry_warning_days": st.one_of(st.none(), st.integers(min_value=0, max_value=400)),
    "grace_logins": st.one_of(st.none(), st.integers(min_value=0, max_value=120)),
    "min_age_hours": st.one_of(st.none(), st.integers(min_value=0, max_value=10_000)),
}
CONFIGS = st.fixed_dictionaries(
    {},
    optional={
        key: st.one_of(values, _junk) if key != "min_strength" else values
        for key, values in CONFIG_VALUES.items()
    },
)


def build(config: dict[str, Any]) -> PasswordPolicy | PolicyConfigError:
    """The policy of ``config``, or the PolicyConfigError it raises (any other error escapes)."""
    try:
        return PasswordPolicy.from_mapping(config)
    except PolicyConfigError as exc:
        return exc


class TestGeneratedPolicies:
    """Random configurations: construction succeeds or raises PolicyConfigError."""

    def test_strategy_covers_every_key(self) -> None:
        """The configuration strategy speaks of every config key."""
        assert set(CONFIG_KEYS) == set(CONFIG_VALUES)

    @SLOW
    @given(config=CONFIGS, password=PASSWORDS)
    def test_build_round_trip_and_check(self, config: dict[str, Any], password: str) -> None:
        """Valid configs round-trip through to_mapping; invalid ones raise PolicyConfigError."""
        built = build(config)
        if isinstance(built, PolicyConfigError):
            assert built.errors
            assert all(isinstance(reason, str) and reason for reason in built.errors.values())
            return
        policy = built
        mapping = policy.to_mapping()
        again = PasswordPolicy.from_mapping(mapping)
        assert policy == again
        assert mapping == again.to_mapping()
        result = policy.check(password)
        assert bool(result) == (not result.violations)
        assert_in_rule_order(result)
        assert policy.describe("kk")

    @FAST
    @given(
        config=CONFIGS,
        key=st.text(string.ascii_lowercase + "_", min_size=1, max_size=20).filter(
            lambda k: k not in CONFIG_KEYS
        ),
    )
    def test_unknown_key_is_always_named(self, config: dict[str, Any], key: str) -> None:
        """An unknown key is always among the errors, next to any other problem."""
        with pytest.raises(PolicyConfigError) as info:
            PasswordPolicy.from_mapping({**config, key: 1})
        assert info.value.errors[key].startswith("unknown key")
