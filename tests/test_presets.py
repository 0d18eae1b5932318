"""The named presets behave exactly as the documents they come from describe.

Sources (see DESIGN.md, "Real deployments"): the Kazakh e-procurement portal's instructions,
a utility company's personal-cabinet rules (Russian) and NIST SP 800-63B-4 for passwords used
as a single factor. ``PasswordPolicy()`` is the documented default.
"""

from __future__ import annotations

import dataclasses
import re
import string

import pytest

from kaspi_identity import PRESET_NAMES, Hint, PasswordPolicy, UserInfo

LANGUAGES = ("en", "ru", "kk")


class TestKzProcurement:
    """E-procurement portal: ≥ 8, Latin upper+lower, digit, special, not like the last 6."""

    policy = PasswordPolicy.preset("kz-procurement")

    def test_valid_password(self) -> None:
        """Eight characters with every class pass."""
        assert self.policy.check("Abcdef1!")

    def test_seven_characters_fail(self) -> None:
        """Seven characters are too short, even with every class."""
        assert ("too_short",) == self.policy.check("Abcde1!").codes

    @pytest.mark.parametrize("special", list("%$@&*#^!."))
    def test_each_listed_special(self, special: str) -> None:
        """Each special character the instructions list (% $ @ & * # ^ ! .) counts."""
        assert self.policy.check(f"Abcdefg1{special}")

    @pytest.mark.parametrize("special", list("\"'()+,-/:;<=>?[\\]_`{|}~"))
    def test_other_ascii_punctuation(self, special: str) -> None:
        """ "etc.": the rest of ASCII punctuation counts as special too."""
        assert self.policy.check(f"Abcdefg1{special}")

    @pytest.mark.parametrize(
        ("password", "missing"),
        [
            ("abcdefg1!", "missing_upper"),
            ("ABCDEFG1!", "missing_lower"),
            ("Abcdefgh!", "missing_digit"),
            ("Abcdefgh1", "missing_special"),
            ("Abcdefg1 ", "missing_special"),  # a space is not special here
            ("Abcdefg1§", "missing_special"),  # nor is non-ASCII punctuation
        ],
    )
    def test_each_class_is_required(self, password: str, missing: str) -> None:
        """Each of the four classes is required on its own."""
        assert (missing,) == self.policy.check(password).codes

    def test_cyrillic_letters_do_not_count(self) -> None:
        """Cyrillic capitals and small letters are not Latin: both missing, plus the hint."""
        result = self.policy.check("Пароль12!")
        assert ("missing_upper", "missing_lower") == result.codes
        assert (Hint("keyboard_layout"),) == result.hints
        for lang in LANGUAGES:
            assert Hint("keyboard_layout").message(lang) == result.messages(lang)[-1]

    def test_cyrillic_is_allowed_next_to_latin(self) -> None:
        """Nothing forbids other characters: Cyrillic next to the Latin classes passes."""
        assert self.policy.check("Abc1!пароль")

    def test_nothing_more_is_asked(self) -> None:
        """No blocklist, no personal-info rule, no strength, no run limit: only the source."""
        user = UserInfo(username="Aigerim", names=("Айгерим",))
        assert self.policy.check("Password1!", user=user)
        assert self.policy.check("Aigerim1!", user=user)
        assert self.policy.check("Aaaaaaa1!")

    def test_history_six_with_similarity(self) -> None:
        """The last 6 passwords, similarity included, in the mapping and in describe."""
        mapping = self.policy.to_mapping()
        assert 6 == mapping["history"]
        assert mapping["history_similar"] is True
        assert 6 == self.policy.history
        assert self.policy.history_similar is True
        english = self.policy.describe("en")
        assert "Not similar to any of your last 6 passwords" == english[-1]
        for lang in LANGUAGES:
            assert "6" in self.policy.describe(lang)[-1]

    def test_describe(self) -> None:
        """The sign-up form lists length and the four classes, with familiar examples."""
        lines = self.policy.describe("en")
        assert "From 8 to 128 characters" == lines[0]
        assert 6 == len(lines)
        assert "% $ @ & * # ^ !" in lines[4]


class TestUtilityCabinet:
    """Utility personal cabinet: any combination of English letters and digits, 5 to 10."""

    policy = PasswordPolicy.preset("utility-cabinet")

    @pytest.mark.parametrize(
        "password", ["abc12", "ABCDE", "abcde", "12345", "a1B2c3D4e5", "Zz9Zz", "0000000000"]
    )
    def test_any_combination_of_letters_and_digits(self, password: str) -> None:
        """Letters only, digits only or mixed: "any combination" passes."""
        assert self.policy.check(password)

    def test_four_characters_are_too_short(self) -> None:
        """ "abcd": four characters are too short."""
        assert ("too_short",) == self.policy.check("abcd").codes

    def test_ten_pass_eleven_fail(self) -> None:
        """Ten characters pass; eleven are too long (never truncated)."""
        assert self.policy.check("abcdefghij")
        assert ("too_long",) == self.policy.check("abcdefghijk").codes

    @pytest.mark.parametrize(
        "password", ["пароль1", "abc_12", "abc 12", "abc-12", "abc!2", "é1234"]
    )
    def test_only_english_letters_and_digits(self, password: str) -> None:
        """Anything else is a disallowed character (reason latin_alnum)."""
        result = self.policy.check(password)
        assert ("disallowed_character",) == result.codes
        assert "latin_alnum" == result.violations[0].params["reason"]

    def test_cyrillic_gets_the_layout_hint(self) -> None:
        """ "пароль1" is probably "gfhjkm1" with the wrong layout: hint in every language."""
        result = self.policy.check("пароль1")
        assert (Hint("keyboard_layout"),) == result.hints
        for lang in LANGUAGES:
            assert 2 == len(result.messages(lang))

    def test_nothing_more_is_asked(self) -> None:
        """No blocklist, personal-info rule or history: "12345" and the e-mail login pass."""
        user = UserInfo(email="ivanov@mail.kz", username="ivanov@mail.kz")
        assert self.policy.check("12345")
        assert self.policy.check("ivanov1", user=user)
        assert self.policy.history is None

    def test_describe(self) -> None:
        """The form says 5 to 10 characters, Latin letters and digits only."""
        assert ["From 5 to 10 characters", "Only Latin letters and digits"] == self.policy.describe(
            "en"
        )
        assert "От 5 до 10 символов" == self.policy.describe("ru")[0]


class TestNist:
    """NIST SP 800-63B-4 single factor: min 15, ≥ 64 allowed, blocklist, no composition."""

    policy = PasswordPolicy.preset("nist")

    def test_fourteen_fail_fifteen_pass(self) -> None:
        """Fourteen characters are too short; fifteen pass."""
        assert ("too_short",) == self.policy.check("vqmtrlkhsnbzdw").codes
        assert self.policy.check("vqmtrlkhsnbzdwx")

    def test_long_passwords_allowed(self) -> None:
        """64- and 128-character passwords are allowed (at least 64 must be)."""
        assert self.policy.check(("correct horse battery staple " * 3)[:64])
        assert self.policy.check(("tramvai zhazira kokpar shanyrak " * 5)[:128])

    @pytest.mark.parametrize(
        "password",
        [
            "aaaaaaaaaaaaaaab",
            "alllowercasepassphrase",
            "ALLUPPERCASEPASSPHRASE",
            "1234509876123450987",
            "қымыз пен бауырсақ",
            "пароль для портала",
            "   spaces  are  fine   ",
        ],
    )
    def test_no_composition_rules(self, password: str) -> None:
        """No class, alphabet or run rule: any long passphrase not on the blocklist passes."""
        assert self.policy.check(password)

    @pytest.mark.parametrize(
        "password", ["qwerty123456789", "1qaz2wsx3edc4rfv", "1234567890qwerty", "QWERTYUIOP12345"]
    )
    def test_common_passwords_rejected(self, password: str) -> None:
        """Long but common passwords are on the blocklist."""
        assert ("too_common",) == self.policy.check(password).codes

    def test_personal_info_rejected(self) -> None:
        """Context-specific words (the user's data) are rejected."""
        user = UserInfo(
            username="zhanibek", email="z.nurlanov@mail.kz", phone="+7 701 123 45 67",
            names=("Жанибек Нурланов",),
        )  # fmt: skip
        for password in (
            "zhanibek-is-my-name",
            "my surname is nurlanov",
            "call me on 7011234567",
            "Жанибек любит бешбармак",
        ):
            result = self.policy.check(password, user=user)
            assert ("contains_personal_info",) == result.codes, password

    def test_unicode_and_printing_ascii_allowed(self) -> None:
        """Every printing ASCII character and Unicode letters are allowed."""
        assert self.policy.check(string.printable[:95])
        assert self.policy.check("Алматы — 🍎 — Қазақстан")

    def test_no_strength_history_or_repeat_rule(self) -> None:
        """The preset adds nothing NIST does not ask for."""
        assert self.policy.min_strength is None
        assert self.policy.max_repeat is None
        assert {} == self.policy.require
        assert self.policy.min_classes is None
        assert self.policy.history is None

    def test_over_128_rejected(self) -> None:
        """Input past 128 characters is rejected, never truncated."""
        assert ("too_long",) == self.policy.check("x" * 129).codes


class TestDefaultPolicy:
    """``PasswordPolicy()``: 8 to 128, any characters, blocklist, personal info (docstring)."""

    policy = PasswordPolicy()

    def test_documented_defaults(self) -> None:
        """The values the docstring promises."""
        assert 8 == self.policy.min_length
        assert 128 == self.policy.max_length
        assert {} == self.policy.require
        assert "any" == self.policy.alphabet
        assert self.policy.blocklist is True
        assert self.policy.forbid_personal_info is True
        assert self.policy.min_strength is None
        assert self.policy.history is None
        doc = PasswordPolicy.__doc__ or ""
        assert "8 to 128 characters" in re.sub(r"\s+", " ", doc)

    def test_behaviour(self) -> None:
        """Length 8–128, no composition, common and personal passwords rejected."""
        assert self.policy.check("vqmtrlkh")
        assert ("too_short",) == self.policy.check("vqmtrlk").codes
        assert self.policy.check("v" * 128)
        assert ("too_long",) == self.policy.check("v" * 129).codes
        assert ("too_common",) == self.policy.check("password").codes
        assert ("too_common",) == self.policy.check("зфыыцщкв").codes
        user = UserInfo(username="aigerim")
        assert ("contains_personal_info",) == self.policy.check("aigerim1990", user=user).codes
        assert self.policy.check("пароль-для-меня")
        assert () == self.policy.check("пароль-для-меня").hints

    def test_describe(self) -> None:
        """The default's requirement lines."""
        assert [
            "From 8 to 128 characters",
            "Does not contain your name, user name, e-mail or phone number",
            "Not a commonly used password",
        ] == self.policy.describe()


class TestDescribe:
    """``describe(lang)`` for every preset and the default, in every language."""

    @pytest.mark.parametrize("lang", LANGUAGES)
    @pytest.mark.parametrize("name", [*PRESET_NAMES, None])
    def test_lines_are_rendered(self, name: str | None, lang: str) -> None:
        """Non-empty lines, no placeholder left, as many in each language."""
        policy = PasswordPolicy() if name is None else PasswordPolicy.preset(name)
        lines = policy.describe(lang)
        assert lines
        assert len(policy.describe("en")) == len(lines)
        for line in lines:
            assert line.strip()
            assert "{" not in line
            assert "}" not in line

    def test_every_requirement_renders(self) -> None:
        """A policy using every rule renders a line per rule in every language."""
        policy = PasswordPolicy(
            min_length=10,
            require=["upper", "lower", "digit", "special"],
            min_classes=4,
            alphabet="ascii",
            max_repeat=2,
            min_strength=3,
            history=5,
        )
        for lang in LANGUAGES:
            lines = policy.describe(lang)
            assert 12 == len(lines)
            assert not any("{" in line for line in lines)

    def test_russian_plurals(self) -> None:
        """Russian requirement lines agree with their numbers."""
        assert (
            "Минимум 21 символ" == PasswordPolicy(min_length=21, max_length=None).describe("ru")[0]
        )
        assert (
            "Минимум 22 символа" == PasswordPolicy(min_length=22, max_length=None).describe("ru")[0]
        )

    def test_no_rule_at_all_shows_the_hard_cap(self) -> None:
        """A policy with every rule off still has one requirement: at most 4096 characters
        (Hypothesis found describe() empty for it)."""
        policy = PasswordPolicy(
            min_length=None, max_length=None, blocklist=False, forbid_personal_info=False
        )
        assert ["At most 4096 characters"] == policy.describe("en")
        assert ["Минимум 21 символ"] == PasswordPolicy(
            min_length=21, max_length=None, blocklist=False, forbid_personal_info=False
        ).describe("ru")

    def test_unknown_language(self) -> None:
        """An unknown language is an error."""
        with pytest.raises(ValueError, match="unknown language"):
            PasswordPolicy().describe("de")

    def test_describe_is_stable_under_replace(self) -> None:
        """A variant made with replace describes its own rules."""
        policy = dataclasses.replace(PasswordPolicy.preset("utility-cabinet"), max_length=12)
        assert "From 5 to 12 characters" == policy.describe("en")[0]
