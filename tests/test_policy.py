"""Tests of PasswordPolicy.check: every rule, result semantics, messages and bad input."""

from __future__ import annotations

import itertools
import string
import threading
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from kaspi_identity import (
    PRESET_NAMES,
    VIOLATION_CODES,
    Hint,
    PasswordPolicy,
    PolicyResult,
    UnknownLanguageError,
    UserInfo,
    Violation,
)
from kaspi_identity.policy import USERINFO_LIMITS, StrengthFeedback, _blocklist, strength_window

LANGUAGES = ("en", "ru", "kk")
ALL_CLASSES = ("upper", "lower", "digit", "special")


def bare(**config: Any) -> PasswordPolicy:
    """A policy with only the given rules: no default blocklist, no personal-info check."""
    base: dict[str, Any] = {
        "min_length": None,
        "max_length": None,
        "blocklist": False,
        "forbid_personal_info": False,
    }
    return PasswordPolicy(**{**base, **config})


def codes(policy: PasswordPolicy, password: str, **kwargs: Any) -> tuple[str, ...]:
    """The violation codes of one check."""
    return policy.check(password, **kwargs).codes


def assert_rendered(result: PolicyResult) -> None:
    """Every violation and hint renders in every language, with no placeholder left."""
    for lang in LANGUAGES:
        messages = result.messages(lang)
        assert len(result.violations) + len(result.hints) == len(messages)
        for message in messages:
            assert message.strip()
            assert "{" not in message
            assert "}" not in message


class TestMinLength:
    """``too_short``: fewer code points than ``min_length``."""

    def test_one_below_the_limit_fails(self) -> None:
        """Seven characters under ``min_length=8`` are too short, with the limit as param."""
        result = bare(min_length=8).check("abcdefg")
        assert (Violation("too_short", {"min_length": 8}),) == result.violations

    def test_exactly_at_the_limit_passes(self) -> None:
        """Eight characters under ``min_length=8`` pass."""
        assert bare(min_length=8).check("abcdefgh")

    def test_empty_password_is_too_short(self) -> None:
        """The empty password is too short under any minimum."""
        assert ("too_short",) == codes(bare(min_length=1), "")

    def test_off_accepts_the_empty_password(self) -> None:
        """With ``min_length=None`` the empty password breaks no length rule."""
        assert bare(min_length=None).check("")

    @pytest.mark.parametrize(("count", "word"), [(1, "символ"), (2, "символа"), (5, "символов")])
    def test_russian_plural_forms(self, count: int, word: str) -> None:
        """The Russian message uses the plural form that matches the limit."""
        message = bare(min_length=count).check("").messages("ru")[0]
        assert f"{count} {word}" in message


class TestMaxLength:
    """``too_long``: more code points than ``max_length``; never truncated."""

    def test_exactly_at_the_limit_passes(self) -> None:
        """Ten characters under ``max_length=10`` pass."""
        assert bare(max_length=10).check("abcdefghij")

    def test_one_past_the_limit_fails(self) -> None:
        """Eleven characters under ``max_length=10`` are too long, with the limit as param."""
        result = bare(max_length=10).check("abcdefghijk")
        assert (Violation("too_long", {"max_length": 10}),) == result.violations

    def test_too_long_is_reported_alone(self) -> None:
        """An over-long password is not checked by any other rule."""
        policy = bare(max_length=10, require=ALL_CLASSES, max_repeat=1, blocklist=True)
        assert ("too_long",) == codes(policy, "a" * 11)

    def test_too_long_keeps_the_confirmation_mismatch(self) -> None:
        """A differing confirmation is still reported next to ``too_long``."""
        policy = bare(max_length=10)
        assert ("too_long", "confirmation_mismatch") == codes(
            policy, "a" * 11, confirmation="b" * 11
        )

    @pytest.mark.parametrize(
        "password",
        ["a" * 11, "a" * 100, "\ufdfa" * 1000, "e\u0301" * 20, "\u1f8f" * 50],
        ids=["just-over", "over-4x", "expanding-over-4x", "composing", "greek-4-to-1"],
    )
    def test_identical_confirmation_of_too_long_password_matches(self, password: str) -> None:
        """An exact retype of an over-long password is not reported as a mismatch."""
        assert ("too_long",) == codes(bare(max_length=10), password, confirmation=password)

    def test_nfkc_equal_confirmation_of_too_long_password_matches(self) -> None:
        """Within four times the limit, a confirmation equal after NFKC matches."""
        password = "é" * 11  # precomposed
        confirmation = "e\u0301" * 11  # decomposed: the same password after NFKC
        assert ("too_long",) == codes(bare(max_length=10), password, confirmation=confirmation)

    def test_length_counts_code_points_after_expansion(self) -> None:
        """U+FDFA expands to 18 code points under NFKC: 7 of them fit 128, 8 do not."""
        assert 18 == len(unicodedata.normalize("NFKC", "\ufdfa"))
        assert bare(max_length=128).check("\ufdfa" * 7)
        assert ("too_long",) == codes(bare(max_length=128), "\ufdfa" * 8)

    @pytest.mark.parametrize(
        "password",
        ["a" * 1_000_000, "\ufdfa" * 1_000_000, "\x00" * 1_000_000, "\ud800" * 1_000_000],
        ids=["ascii", "expanding", "nul", "surrogate"],
    )
    def test_megabyte_input_is_too_long(self, password: str) -> None:
        """A 1 MB password is rejected as too long (before any expensive rule runs)."""
        policy = PasswordPolicy(min_strength=3)
        assert (Violation("too_long", {"max_length": 128}),) == policy.check(password).violations

    def test_megabyte_input_under_every_preset(self) -> None:
        """Every preset rejects a 1 MB expanding password as too long."""
        for name in PRESET_NAMES:
            assert ("too_long",) == codes(PasswordPolicy.preset(name), "\ufdfa" * 1_000_000)

    def test_off_accepts_long_input(self) -> None:
        """With ``max_length=None`` the longest password any policy allows (4096) passes."""
        assert bare(max_length=None).check("ab" * 2048)
        assert bare(max_length=None).check("\ufdfa" * 227)  # 4086 code points after NFKC

    @pytest.mark.parametrize(
        "password",
        ["ab" * 5000, "a" * 4097, "\ufdfa" * 228, "\ufdfa" * 1_000_000, "x" * 100_000_000],
        ids=["10k", "just-over", "expanding-just-over", "1M-expanding", "100MB"],
    )
    def test_off_still_has_the_hard_cap(self, password: str) -> None:
        """``max_length=None`` keeps the hard cap: past 4096 code points it is ``too_long``."""
        result = bare(max_length=None).check(password, confirmation=password)
        assert (Violation("too_long", {"max_length": 4096}),) == result.violations


class TestDisallowedCharacter:
    """``disallowed_character`` with reason control, ascii, latin_alnum or custom."""

    @pytest.mark.parametrize(
        "password",
        ["abc\x00defgh", "abc\ud800defgh", "\udfffabcdefgh", "abc\x7fdefgh", "abc\x85defgh", "\t"],
        ids=["nul", "high-surrogate", "low-surrogate", "del", "c1-control", "tab"],
    )
    def test_control_and_surrogates_are_never_allowed(self, password: str) -> None:
        """Control characters and lone surrogates are disallowed even with alphabet "any"."""
        result = bare(alphabet="any").check(password)
        assert (Violation("disallowed_character", {"reason": "control"}),) == result.violations
        assert_rendered(result)

    @pytest.mark.parametrize("name", PRESET_NAMES)
    @pytest.mark.parametrize("password", ["Ab1!\x00xyz", "Ab1!\ud800x", "\x00" * 5])
    def test_control_under_every_preset(self, name: str, password: str) -> None:
        """Every preset reports NUL and lone surrogates as "control", without crashing."""
        result = PasswordPolicy.preset(name).check(password, confirmation=password)
        assert Violation("disallowed_character", {"reason": "control"}) in result.violations
        assert "confirmation_mismatch" not in result.codes
        assert_rendered(result)

    def test_space_and_unicode_are_allowed_by_any(self) -> None:
        """Alphabet "any" allows spaces, Cyrillic, emoji and other printable text."""
        assert bare(alphabet="any").check("пароль мой 🔑 ∑")

    def test_ascii_allows_printable_ascii_and_space(self) -> None:
        """Alphabet "ascii" allows every printable ASCII character, space included."""
        assert bare(alphabet="ascii").check(string.printable[:95])

    @pytest.mark.parametrize("password", ["пароль", "naïve", "abc€def", "😀"])
    def test_ascii_rejects_non_ascii(self, password: str) -> None:
        """Alphabet "ascii" rejects anything outside printable ASCII, with reason "ascii"."""
        result = bare(alphabet="ascii").check(password)
        assert (Violation("disallowed_character", {"reason": "ascii"}),) == result.violations

    def test_latin_alnum_allows_letters_and_digits(self) -> None:
        """Alphabet "latin_alnum" allows A–Z, a–z and 0–9."""
        assert bare(alphabet="latin_alnum").check(string.ascii_letters + string.digits)

    @pytest.mark.parametrize("password", ["abc_12", "abc 12", "abc-12", "пароль1", "é1", "١٢٣"])
    def test_latin_alnum_rejects_everything_else(self, password: str) -> None:
        """Alphabet "latin_alnum" rejects punctuation, space, Cyrillic, accents, other digits."""
        result = bare(alphabet="latin_alnum").check(password)
        assert (Violation("disallowed_character", {"reason": "latin_alnum"}),) == result.violations

    def test_custom_alphabet(self) -> None:
        """An explicit alphabet allows exactly its characters and names them in params."""
        policy = bare(alphabet="0123456789")
        assert policy.check("4711")
        result = policy.check("47a11")
        expected = Violation("disallowed_character", {"reason": "custom", "allowed": "0123456789"})
        assert (expected,) == result.violations
        assert "0123456789" in result.messages("en")[0]

    def test_custom_alphabet_with_braces_renders_verbatim(self) -> None:
        """Braces in an explicit alphabet are shown as they are, not taken as placeholders."""
        message = bare(alphabet="{}abc123").check("x").messages("en")[0]
        assert "{}abc123" in message

    def test_control_is_reported_once_before_the_alphabet(self) -> None:
        """A control character hides the alphabet reason: one violation, reason "control"."""
        result = bare(alphabet="latin_alnum").check("пароль\x00")
        assert ("disallowed_character",) == result.codes
        assert "control" == result.violations[0].params["reason"]


class TestRequiredClasses:
    """``missing_upper/lower/digit/special``: the Latin classes named in ``require``."""

    @pytest.mark.parametrize(
        ("klass", "good", "bad"),
        [
            ("upper", "abcD", "abcd"),
            ("lower", "ABCd", "ABCD"),
            ("digit", "abc1", "abcd"),
            ("special", "abc!", "abc1"),
        ],
    )
    def test_each_class(self, klass: str, good: str, bad: str) -> None:
        """A required class passes when present and is reported missing when absent."""
        policy = bare(require=[klass])
        assert policy.check(good)
        assert (f"missing_{klass}",) == codes(policy, bad)

    def test_all_missing_reported_in_order(self) -> None:
        """Every missing class is reported, upper, lower, digit, special in that order."""
        policy = bare(require=["special", "digit", "lower", "upper"])
        expected = ("missing_upper", "missing_lower", "missing_digit", "missing_special")
        assert expected == codes(policy, "")

    @pytest.mark.parametrize("password", ["Пароль", "ПАРОЛЬ", "ÀÉÎ", "Ωω", "ＡＢ"])
    def test_upper_and_lower_mean_latin_only(self, password: str) -> None:
        """Cyrillic, accented and Greek letters satisfy neither ``upper`` nor ``lower``."""
        policy = bare(require=["upper", "lower"])
        expected: tuple[str, ...] = ("missing_upper", "missing_lower")
        if password == "ＡＢ":  # full-width Latin is Latin after NFKC
            expected = ("missing_lower",)
        assert expected == codes(policy, password)

    def test_digit_means_ascii_digits(self) -> None:
        """Arabic-Indic digits are not 0–9; a superscript two is "2" after NFKC."""
        policy = bare(require=["digit"])
        assert ("missing_digit",) == codes(policy, "abc١٢٣")
        assert policy.check("abc²")  # NFKC: "²" → "2"

    def test_missing_special_names_examples(self) -> None:
        """``missing_special`` carries familiar examples from the special set."""
        violation = bare(require=["special"]).check("abc").violations[0]
        assert "% $ @ & * # ^ !" == violation.params["examples"]

    def test_custom_special_set(self) -> None:
        """Only the configured special characters count as special."""
        policy = bare(require=["special"], special_characters="!?§")
        assert policy.check("abc§")
        assert policy.check("abc?")
        assert ("missing_special",) == codes(policy, "abc#")
        assert "! ? §" == policy.check("abc#").violations[0].params["examples"]

    def test_space_can_be_special(self) -> None:
        """A space counts as special when the special set holds it."""
        policy = bare(require=["special"], special_characters=" !")
        assert policy.check("abc def")


class TestMinClasses:
    """``too_few_classes``: fewer than ``min_classes`` of the four classes."""

    @pytest.mark.parametrize(
        ("password", "have"),
        [("abc", 1), ("abC", 2), ("aB1", 3), ("aB1!", 4), ("пароль", 0)],
    )
    def test_counts_classes(self, password: str, have: int) -> None:
        """Each of k=1..4 passes exactly when the password has at least k classes."""
        for k in range(1, 5):
            result = bare(min_classes=k).check(password)
            if have >= k:
                assert result
            else:
                assert (Violation("too_few_classes", {"min_classes": k}),) == result.violations

    def test_combined_with_require(self) -> None:
        """``require`` and ``min_classes`` are both reported when both fail."""
        policy = bare(require=["digit"], min_classes=3)
        assert ("missing_digit", "too_few_classes") == codes(policy, "abC")


class TestMaxRepeat:
    """``repeated_characters``: a run of one character longer than ``max_repeat``."""

    def test_run_at_the_limit_passes(self) -> None:
        """``max_repeat=3``: "aaa" passes."""
        assert bare(max_repeat=3).check("xaaay")

    def test_run_past_the_limit_fails(self) -> None:
        """``max_repeat=3``: "aaaa" is a violation carrying the limit."""
        result = bare(max_repeat=3).check("xaaaay")
        assert (Violation("repeated_characters", {"max_repeat": 3}),) == result.violations

    def test_max_repeat_one(self) -> None:
        """``max_repeat=1`` forbids any doubled character, whatever it is."""
        policy = bare(max_repeat=1)
        assert policy.check("abab")
        for password in ("aa", "\n\n", "пп", "😀😀", "  "):
            assert ("repeated_characters",) == codes(policy, password)[-1:]

    def test_runs_are_of_one_character_only(self) -> None:
        """ "abcabcabc" repeats a pattern, not a character: not a run."""
        assert bare(max_repeat=1).check("abcabcabc")

    def test_case_differs(self) -> None:
        """ "aAaA" is not a run of one character."""
        assert bare(max_repeat=1).check("aAaA")


PHONE_USER = UserInfo(phone="+7 701 123 45 67")


class TestPersonalInfo:
    """``contains_personal_info``: user name, e-mail local part, phone digits, names."""

    policy = bare(forbid_personal_info=True)

    def field(self, password: str, user: UserInfo) -> str | None:
        """The ``field`` param of the personal-info violation, or None."""
        for violation in self.policy.check(password, user=user).violations:
            if violation.code == "contains_personal_info":
                return str(violation.params["field"])
        return None

    def test_username(self) -> None:
        """The user name, case-insensitively, and its parts are found."""
        user = UserInfo(username="Aigerim.K")
        assert "username" == self.field("xaigerim.kx", user)
        assert "username" == self.field("AIGERIM2024!", user)
        assert self.field("aiger1m2024", user) is None

    def test_email_local_part_and_pieces(self) -> None:
        """The e-mail local part and each of its pieces are found; the domain is not."""
        user = UserInfo(email="john.smith+kz@mail.kz")
        assert "email" == self.field("my-john.smith-pw", user)
        assert "email" == self.field("Smith1990!", user)
        assert "email" == self.field("JOHNny2024", user)
        assert self.field("mail.kz-2024", user) is None

    @pytest.mark.parametrize(
        "password",
        [
            "pw7011234567x",
            "pw701-123-45-67x",
            "pw+7 701 123 45 67",
            "pw+77011234567",
            "pw(701)123-45-67",
            "pw87011234567",
            "x1234567y",
            "x123-45-67y",
        ],
    )
    def test_phone_digits_in_any_format(self, password: str) -> None:
        """The phone number is found in its full, national or subscriber digits, any format."""
        assert "phone" == self.field(password, PHONE_USER)

    def test_phone_in_other_format_for_the_user(self) -> None:
        """A phone given as "8 (701) 123-45-67" is found as "7011234567" too."""
        assert "phone" == self.field("zz7011234567", UserInfo(phone="8 (701) 123-45-67"))

    def test_unrelated_digits_pass(self) -> None:
        """Digits that are not the phone number pass."""
        assert self.field("pw7011239999x", PHONE_USER) is None

    def test_short_phone_is_ignored(self) -> None:
        """A phone with fewer than seven digits matches nothing."""
        assert self.field("x123456y", UserInfo(phone="123456")) is None

    @pytest.mark.parametrize(
        "password",
        ["Айгерим1990", "aigerim1990", "AYGERIM_1990", "nurlan!!", "Нұрлан2000", "abishev99"],
    )
    def test_names_in_cyrillic_and_latin_transliteration(self, password: str) -> None:
        """A Cyrillic (Russian or Kazakh) name is found as typed and transliterated."""
        user = UserInfo(names=("Айгерим", "Нұрлан Әбішев"))
        assert "name" == self.field(password, user)

    def test_single_name_string(self) -> None:
        """``names`` given as one string is one name, not its letters."""
        user = UserInfo(names="Ivanov")  # type: ignore[arg-type]
        assert ("Ivanov",) == user.names
        assert "name" == self.field("ivanov2020", user)
        assert self.field("vino-2020", user) is None

    def test_short_fragments_are_ignored(self) -> None:
        """Fragments shorter than three characters (e.g. "al") are not searched for."""
        user = UserInfo(username="al", email="a.b@x.kz", names=("Ли",))
        assert self.field("almaty-ali-li-ab", user) is None

    def test_one_violation_naming_the_first_field(self) -> None:
        """Several matching fields give one violation, naming the first (username first)."""
        user = UserInfo(username="aigerim", email="aigerim@mail.kz", names=("Айгерим",))
        result = self.policy.check("aigerim1990", user=user)
        assert (Violation("contains_personal_info", {"field": "username"}),) == result.violations

    def test_without_user_nothing_is_checked(self) -> None:
        """Without ``user`` the rule has nothing to compare."""
        assert self.policy.check("aigerim1990")

    def test_switched_off(self) -> None:
        """``forbid_personal_info=False`` ignores the user's data."""
        user = UserInfo(username="aigerim")
        assert bare(forbid_personal_info=False).check("aigerim1990", user=user)

    @pytest.mark.parametrize("field", ["username", "email", "phone", "name"])
    def test_messages_per_field(self, field: str) -> None:
        """Each field has its own rendered message in every language."""
        result = PolicyResult((Violation("contains_personal_info", {"field": field}),))
        assert_rendered(result)


class TestBlocklist:
    """``too_common``: the built-in list or a file, case-insensitive, QWERTY reading too."""

    @pytest.mark.parametrize("password", ["password", "PassWord", "qwerty123", "1q2w3e4r"])
    def test_builtin_list(self, password: str) -> None:
        """Common passwords are rejected, whatever their case."""
        assert ("too_common",) == codes(bare(blocklist=True), password)

    @pytest.mark.parametrize("password", ["пароль", "Пароль123", "йцукен", "qazaqstan"])
    def test_builtin_cis_list(self, password: str) -> None:
        """The CIS additions (Cyrillic "пароль", "йцукен", city names) are rejected."""
        assert "too_common" in codes(bare(blocklist=True), password)

    @pytest.mark.parametrize("password", ["зфыыцщкв", "ЗФЫЫЦЩКВ", "йцукенгшщз"])
    def test_russian_layout_reading(self, password: str) -> None:
        """ "зфыыцщкв" is "password" typed in the Russian layout: rejected."""
        assert "too_common" in codes(bare(blocklist=True), password)

    def test_uncommon_password_passes(self) -> None:
        """A random-looking password is not on the list."""
        assert bare(blocklist=True).check("vq7-Ttm3-Lop2")

    @pytest.mark.parametrize(
        "password",
        [
            " godzilla ",
            "password ",
            "  Password",
            "\tqwerty123\t",
            "\u3000password\u00a0",  # ideographic and no-break spaces (NFKC: plain spaces)
            "\u200bpassword\ufeff",  # zero-width space and BOM around it
            " зфыыцщкв ",  # "password" in the Russian layout, with spaces
            " пароль ",
        ],
    )
    def test_surrounding_space_is_ignored(self, password: str) -> None:
        """A common password with white space (or zero-width characters) around it is as
        common as without: the stripped form is compared too."""
        assert "too_common" in codes(bare(blocklist=True), password)

    def test_inner_space_is_kept(self) -> None:
        """Only the edges are stripped: spaces inside a password are part of it."""
        assert bare(blocklist=True).check("pass word godzilla")

    def test_surrounding_space_against_a_file(self, tmp_path: Path) -> None:
        """A file entry is matched by the password with spaces around it."""
        path = tmp_path / "blocked.txt"
        path.write_text("mycompany\n", encoding="utf-8")
        assert ("too_common",) == codes(bare(blocklist=path), "  MyCompany ")

    def test_nfkc_form_is_compared(self) -> None:
        """Full-width "ｐａｓｓｗｏｒｄ" is "password" after NFKC: rejected."""
        assert ("too_common",) == codes(bare(blocklist=True), "ｐａｓｓｗｏｒｄ")

    def test_switched_off(self) -> None:
        """``blocklist=False`` accepts even "password"."""
        assert bare(blocklist=False).check("password")

    def test_file_blocklist(self, tmp_path: Path) -> None:
        """A file blocklist: one password per line, a "#" line is a password, blanks skipped."""
        path = tmp_path / "blocked.txt"
        path.write_text("#hashtag1\n\nCorrectHorse\r\nwith space \nпароль2024\n", encoding="utf-8")
        policy = bare(blocklist=str(path))
        for password in ("#hashtag1", "correcthorse", "CORRECTHORSE", "with space ", "ПАРОЛЬ2024"):
            assert ("too_common",) == codes(policy, password), password
        for password in ("hashtag1", "with space", "", "password"):
            assert "too_common" not in codes(policy, password), password

    def test_file_blocklist_replaces_the_builtin_one(self, tmp_path: Path) -> None:
        """A file blocklist is used instead of the built-in list."""
        path = tmp_path / "blocked.txt"
        path.write_text("mycompany\n", encoding="utf-8")
        policy = bare(blocklist=path)
        assert ("too_common",) == codes(policy, "MyCompany")
        assert policy.check("password")

    def test_file_blocklist_russian_layout(self, tmp_path: Path) -> None:
        """A file entry typed in the Russian layout is rejected too."""
        path = tmp_path / "blocked.txt"
        path.write_text("kaspi\n", encoding="utf-8")
        assert ("too_common",) == codes(bare(blocklist=path), "лфызш")


class TestStrength:
    """``too_weak``: zxcvbn's score below ``min_strength``, the user's data as dictionary."""

    policy = bare(min_strength=3)

    def test_weak_password(self) -> None:
        """ "password1" scores 0: too weak, with the threshold, the score and the feedback."""
        result = self.policy.check("password1")
        common = StrengthFeedback("common_password", {"kind": "very_common"})
        feedback = (common, StrengthFeedback("add_word"))
        params = {"min_strength": 3, "score": 0, "feedback": feedback}
        assert (Violation("too_weak", params),) == result.violations

    @pytest.mark.parametrize("password", ["Xk9#mQ2$vL7pRt", "correct horse battery staple"])
    def test_strong_password(self, password: str) -> None:
        """Random-looking passwords and long passphrases are strong enough."""
        assert self.policy.check(password)

    def test_user_data_is_in_the_dictionary(self) -> None:
        """A password built from the user's name scores lower when the user is known."""
        user = UserInfo(username="zhanibekov")
        assert self.policy.check("zhanibekov1990")
        assert ("too_weak",) == codes(self.policy, "zhanibekov1990", user=user)

    def test_empty_password_scores_zero(self) -> None:
        """The empty password is too weak with score 0."""
        params = dict(self.policy.check("").violations[0].params)
        assert {
            "min_strength": 3,
            "score": 0,
            "feedback": (StrengthFeedback("add_word"),),
        } == params

    def test_long_crafted_input_is_checked(self) -> None:
        """A 128-character l33t-heavy password is checked (on a bounded prefix)."""
        password = ("!$%(+0123456789<@[{|" * 7)[:128]
        assert isinstance(self.policy.check(password).ok, bool)


class TestConfirmation:
    """``confirmation_mismatch``: the second typing differs, compared after NFKC."""

    policy = bare()

    def test_same_matches(self) -> None:
        """An identical confirmation passes."""
        assert self.policy.check("secret-pw", confirmation="secret-pw")

    def test_different_fails(self) -> None:
        """A different confirmation is reported, without params."""
        result = self.policy.check("secret-pw", confirmation="secret-pW")
        assert (Violation("confirmation_mismatch"),) == result.violations

    def test_empty_confirmation_differs(self) -> None:
        """An empty confirmation is a mismatch (None means "not asked")."""
        assert ("confirmation_mismatch",) == codes(self.policy, "abc", confirmation="")

    def test_nfkc_equal_matches(self) -> None:
        """Full-width and decomposed typings match their NFKC form."""
        assert self.policy.check("ABC123", confirmation="ＡＢＣ１２３")
        assert self.policy.check("é", confirmation="e\u0301")

    def test_overlong_confirmation_mismatches(self) -> None:
        """A 1 MB confirmation of a short password is a mismatch."""
        result = bare(max_length=128).check("abc", confirmation="abc" * 400_000)
        assert ("confirmation_mismatch",) == result.codes

    def test_confirmation_mismatch_comes_last(self) -> None:
        """The mismatch is reported after every other rule."""
        result = bare(min_length=8, require=["digit"]).check("abc", confirmation="abd")
        assert ("too_short", "missing_digit", "confirmation_mismatch") == result.codes


class TestKeyboardLayoutHint:
    """A Cyrillic password under a Latin policy gets the ``keyboard_layout`` hint."""

    @pytest.mark.parametrize(
        "config",
        [
            {"require": ["upper"]},
            {"require": ["lower"]},
            {"min_classes": 2},
            {"alphabet": "latin_alnum"},
            {"alphabet": "ascii"},
        ],
    )
    def test_hint_under_latin_policies(self, config: dict[str, Any]) -> None:
        """ "Пароль" gets the hint when the policy wants Latin letters."""
        result = bare(**config).check("Пароль")
        assert (Hint("keyboard_layout"),) == result.hints
        assert not result

    def test_hint_rendered_in_every_language(self) -> None:
        """The hint comes after the violations, in en, ru and kk."""
        result = bare(require=["upper", "lower"]).check("Пароль")
        assert ("missing_upper", "missing_lower") == result.codes
        assert_rendered(result)
        for lang in LANGUAGES:
            messages = result.messages(lang)
            assert Hint("keyboard_layout").message(lang) == messages[-1]
        assert "layout" in result.messages("en")[-1]

    def test_no_hint_without_latin_rules(self) -> None:
        """Alphabet "any" and no class rules: Cyrillic is a fine password, no hint."""
        assert () == bare(alphabet="any").check("Пароль").hints

    def test_no_hint_for_latin_password(self) -> None:
        """A Latin password never gets the hint."""
        assert () == bare(require=["upper"]).check("password").hints

    def test_hint_alone_does_not_reject(self) -> None:
        """A password that passes keeps its hint but is ok."""
        result = bare(min_classes=2).check("Passwordж")
        assert result
        assert (Hint("keyboard_layout"),) == result.hints


class TestPolicyResult:
    """The result: truthy iff ok, every violation in rule order, messages per language."""

    def test_truthiness(self) -> None:
        """A result is truthy exactly when it has no violations."""
        assert PolicyResult()
        assert PolicyResult().ok
        bad = PolicyResult((Violation("too_short", {"min_length": 8}),))
        assert not bad
        assert not bad.ok
        assert PolicyResult((), (Hint("keyboard_layout"),))

    def test_every_violation_in_rule_order(self, tmp_path: Path) -> None:
        """A password breaking every stateless rule gets every code, in VIOLATION_CODES order."""
        path = tmp_path / "blocked.txt"
        path.write_text("йцукеннн\n", encoding="utf-8")
        policy = PasswordPolicy(
            min_length=12,
            max_length=64,
            alphabet="ascii",
            require=ALL_CLASSES,
            min_classes=4,
            max_repeat=2,
            forbid_personal_info=True,
            blocklist=path,
            min_strength=4,
        )
        user = UserInfo(names=("Йцукен",))
        result = policy.check("йцукеннн", user=user, confirmation="йцукен")
        expected = (
            "too_short",
            "disallowed_character",
            "missing_upper",
            "missing_lower",
            "missing_digit",
            "missing_special",
            "too_few_classes",
            "repeated_characters",
            "contains_personal_info",
            "too_common",
            "too_weak",
            "confirmation_mismatch",
        )
        assert expected == result.codes
        assert [c for c in VIOLATION_CODES if c in expected] == list(result.codes)
        assert (Hint("keyboard_layout"),) == result.hints
        assert_rendered(result)

    def test_codes_are_stable(self) -> None:
        """The sixteen stable codes, none renamed (``breached`` came last, with issue 16)."""
        expected = {
            "too_short",
            "too_long",
            "missing_upper",
            "missing_lower",
            "missing_digit",
            "missing_special",
            "too_few_classes",
            "disallowed_character",
            "repeated_characters",
            "contains_personal_info",
            "too_weak",
            "too_common",
            "breached",
            "reused",
            "similar_to_previous",
            "confirmation_mismatch",
        }
        assert expected == set(VIOLATION_CODES)
        assert len(expected) == len(VIOLATION_CODES)

    def test_every_code_renders(self) -> None:
        """Every code (history ones included) renders in en, ru and kk with params filled."""
        violations = (
            Violation("too_short", {"min_length": 8}),
            Violation("too_long", {"max_length": 64}),
            *(Violation("disallowed_character", {"reason": r}) for r in ("control", "ascii")),
            Violation("disallowed_character", {"reason": "latin_alnum"}),
            Violation("disallowed_character", {"reason": "custom", "allowed": "abc"}),
            Violation("missing_upper"),
            Violation("missing_lower"),
            Violation("missing_digit"),
            Violation("missing_special", {"examples": "! ?"}),
            Violation("too_few_classes", {"min_classes": 3}),
            Violation("repeated_characters", {"max_repeat": 2}),
            Violation("contains_personal_info", {"field": "email"}),
            Violation("too_common"),
            Violation("breached", {"reason": "found"}),
            Violation("breached", {"reason": "unavailable"}),
            Violation("too_weak", {"min_strength": 3, "score": 1}),
            Violation("reused", {"history": 6}),
            Violation("similar_to_previous", {"history": 6}),
            Violation("confirmation_mismatch"),
        )
        assert set(VIOLATION_CODES) == {v.code for v in violations}
        assert_rendered(PolicyResult(violations, (Hint("keyboard_layout"),)))

    @pytest.mark.parametrize("lang", ["de", "", "kk-Latn", "english"])
    def test_unknown_language(self, lang: str) -> None:
        """An unknown language raises UnknownLanguageError (a ValueError)."""
        result = bare(min_length=8).check("abc")
        with pytest.raises(UnknownLanguageError):
            result.messages(lang)
        with pytest.raises(ValueError, match="unknown language"):
            result.violations[0].message(lang)
        with pytest.raises(UnknownLanguageError):
            Hint("keyboard_layout").message(lang)

    def test_unknown_language_even_when_ok(self) -> None:
        """A passing result with nothing to render still rejects an unknown language."""
        result = bare().check("fine")
        assert [] == result.messages("en")
        with pytest.raises(UnknownLanguageError):
            result.messages("de")

    def test_region_tags_are_accepted(self) -> None:
        """ "ru-RU" and "kk_KZ" render as "ru" and "kk"."""
        result = bare(min_length=8).check("abc")
        assert result.messages("ru") == result.messages("ru-RU")
        assert result.messages("kk") == result.messages("kk_KZ")

    def test_unknown_violation_code_is_refused(self) -> None:
        """A Violation with an unknown code cannot be made."""
        with pytest.raises(ValueError, match="unknown violation code"):
            Violation("too_short_ish")

    def test_violation_params_are_read_only(self) -> None:
        """A violation's params cannot be changed after the fact."""
        violation = bare(min_length=8).check("abc").violations[0]
        with pytest.raises(TypeError):
            violation.params["min_length"] = 1  # type: ignore[index]

    def test_violation_equality_and_hash(self) -> None:
        """Violations compare and hash by code and params."""
        a = Violation("too_short", {"min_length": 8})
        b = Violation("too_short", {"min_length": 8})
        assert a == b
        assert hash(a) == hash(b)
        assert a != Violation("too_short", {"min_length": 9})
        assert 1 == len({a, b})

    def test_params_never_hold_the_password(self, tmp_path: Path) -> None:
        """Over a busy check, no param value holds the password or a piece of the user data."""
        password = "ivanov-пароль\x00"
        user = UserInfo(username="ivanov", email="ivanov@x.kz", phone="+77011234567")
        result = PasswordPolicy(
            require=ALL_CLASSES, alphabet="ascii", min_strength=4, max_repeat=1
        ).check(password, user=user, confirmation=password + "x")
        assert result.violations
        for violation in result.violations:
            for value in violation.params.values():
                assert "ivanov" not in str(value)
                assert "пароль" not in str(value)


class TestBadInput:
    """Non-``str`` input is a TypeError; odd ``str`` input is a clean violation."""

    @pytest.mark.parametrize("value", [None, b"password", 12345678, ["password"], 1.5])
    def test_password_must_be_str(self, value: object) -> None:
        """None, bytes, int, list, float as password raise TypeError."""
        with pytest.raises(TypeError, match="password must be str"):
            PasswordPolicy().check(value)  # type: ignore[arg-type]

    @pytest.mark.parametrize("value", [b"password", 12345678, ["password"]])
    def test_confirmation_must_be_str(self, value: object) -> None:
        """Bytes, int, list as confirmation raise TypeError (None means none given)."""
        with pytest.raises(TypeError, match="confirmation must be str"):
            PasswordPolicy().check("password", confirmation=value)  # type: ignore[arg-type]

    @pytest.mark.parametrize("value", ["alice", {"username": "alice"}, ("alice",)])
    def test_user_must_be_userinfo(self, value: object) -> None:
        """A user that is not a UserInfo raises TypeError."""
        with pytest.raises(TypeError, match="user must be UserInfo"):
            PasswordPolicy().check("password", user=value)  # type: ignore[arg-type]

    def test_type_error_does_not_echo_the_password(self) -> None:
        """The TypeError names the type, never the value."""
        with pytest.raises(TypeError) as info:
            PasswordPolicy().check(b"hunter2-secret")  # type: ignore[arg-type]
        assert "hunter2" not in str(info.value)

    @pytest.mark.parametrize(
        "kwargs",
        [{"username": b"alice"}, {"email": 1}, {"phone": 77011234567}, {"names": ("a", 1)}],
    )
    def test_userinfo_fields_must_be_str(self, kwargs: dict[str, Any]) -> None:
        """UserInfo refuses non-str fields with TypeError."""
        with pytest.raises(TypeError):
            UserInfo(**kwargs)

    def test_lone_surrogates_everywhere(self) -> None:
        """Surrogates in the password, confirmation and user data never crash a check."""
        user = UserInfo(username="\ud800al\udfff", email="\ud800@x", names=("\udc00",))
        policy = PasswordPolicy(min_strength=2, require=["upper"], max_repeat=2)
        result = policy.check("\ud800\ud800\ud800abc", user=user, confirmation="\udfff")
        assert "disallowed_character" in result.codes
        assert "confirmation_mismatch" in result.codes
        assert_rendered(result)


def huge(kind: str) -> str:
    """A huge input, built when the test runs (so a 100 MB string lives only that long)."""
    return {
        "1MB": "x" * 1_000_000,
        "100MB": "x" * 100_000_000,
        "1M-U+FDFA": "\ufdfa" * 1_000_000,  # NFKC would make 18M code points of it
        "1MB-cyrillic": "я" * 500_000,
    }[kind]


HUGE_KINDS = ["1MB", "100MB", "1M-U+FDFA", "1MB-cyrillic"]
#: Policies of every shape, the strength rule and no length limit included.
HUGE_POLICIES = {
    "default": PasswordPolicy(),
    "strength": PasswordPolicy(min_strength=4, max_length=4096),
    "no-limit": PasswordPolicy(max_length=None, min_strength=3, history=6, history_similar=True),
    "kz-procurement": PasswordPolicy.preset("kz-procurement"),
}


class TestHugeInput:
    """1 MB and 100 MB inputs at every entry point: a clean violation or a typed error.

    The result is checked, never the time (benchmarks/bench_inputs.py measures that).
    """

    @pytest.mark.parametrize("name", list(HUGE_POLICIES))
    @pytest.mark.parametrize("kind", HUGE_KINDS)
    def test_password(self, kind: str, name: str) -> None:
        """A huge password is ``too_long`` alone under every policy."""
        policy = HUGE_POLICIES[name]
        limit = policy.max_length or 4096
        result = policy.check(huge(kind), user=USER_AT_LIMITS)
        assert (Violation("too_long", {"max_length": limit}),) == result.violations

    @pytest.mark.parametrize("kind", HUGE_KINDS)
    def test_confirmation(self, kind: str) -> None:
        """A huge confirmation of a good password is a mismatch; an exact retype of a huge
        password is not."""
        policy = HUGE_POLICIES["no-limit"]
        text = huge(kind)
        assert ("confirmation_mismatch",) == policy.check(
            "Kx9#mPq2Lz-vault", confirmation=text
        ).codes
        assert ("too_long",) == policy.check(text, confirmation=text).codes

    @pytest.mark.parametrize("field", ["username", "email", "phone"])
    @pytest.mark.parametrize("kind", HUGE_KINDS)
    def test_userinfo_field_refused(self, kind: str, field: str) -> None:
        """A huge user name, e-mail or phone is a ValueError naming the field, not its value."""
        kwargs: dict[str, Any] = {field: huge(kind)}
        with pytest.raises(ValueError, match=f"UserInfo.{field} is longer than") as info:
            UserInfo(**kwargs)
        assert len(str(info.value)) < 80

    @pytest.mark.parametrize("kind", HUGE_KINDS)
    def test_userinfo_name_refused(self, kind: str) -> None:
        """A huge name is a ValueError naming its position."""
        with pytest.raises(ValueError, match=r"UserInfo.names\[1\] is longer than 256"):
            UserInfo(names=("Айгерим", huge(kind)))

    def test_userinfo_name_count_refused(self) -> None:
        """More than 16 names is a ValueError, even from an endless iterator (never read
        past the seventeenth)."""
        with pytest.raises(ValueError, match="more than 16 names"):
            UserInfo(names=("a",) * 1_000_000)
        with pytest.raises(ValueError, match="more than 16 names"):
            UserInfo(names=itertools.repeat("Айгерим"))  # type: ignore[arg-type]

    def test_userinfo_at_the_limits(self) -> None:
        """Fields exactly at USERINFO_LIMITS are accepted and checked."""
        assert USER_AT_LIMITS.names[-1] == "Нұрлан"
        policy = bare(forbid_personal_info=True, min_strength=4, max_length=None)
        result = policy.check("nurlan-" + "Kx9#mPq2Lz" * 3, user=USER_AT_LIMITS)
        assert "contains_personal_info" in result.codes
        assert policy.check("ab" * 2048, user=USER_AT_LIMITS).codes == ("too_weak",)

    def test_limits_are_published(self) -> None:
        """USERINFO_LIMITS says what UserInfo accepts."""
        assert {
            "username": 254,
            "email": 320,
            "phone": 64,
            "iin": 64,
            "names": 256,
            "names_count": 16,
        } == dict(USERINFO_LIMITS)

    @pytest.mark.parametrize("kind", HUGE_KINDS)
    def test_strength_window(self, kind: str) -> None:
        """strength_window() of a huge text is empty: zxcvbn never sees it."""
        assert "" == strength_window(huge(kind))


#: A user whose every field is as long as UserInfo allows.
USER_AT_LIMITS = UserInfo(
    username="u" * 254,
    email="e" * 64 + "@" + "d" * 255,
    phone="+7 701 234 56 78" + " " * 48,
    names=("Айгерим" * 36 + "abcd",) * 15 + ("Нұрлан",),
)


class TestNormalisation:
    """The password is NFKC-normalised before every rule."""

    def test_full_width_counts_as_latin_and_digits(self) -> None:
        """Full-width "ＡＢＣ１２３" is "ABC123": upper and digit, allowed by latin_alnum."""
        policy = bare(require=["upper", "digit"], alphabet="latin_alnum", min_length=6)
        result = policy.check("ＡＢＣ１２３")
        assert result
        assert () == result.hints

    def test_ligature_counts_two(self) -> None:
        """ "ﬁ" is "fi" after NFKC: two code points."""
        assert bare(min_length=2, max_length=2).check("ﬁ")
        assert ("too_short",) == codes(bare(min_length=3), "ﬁ")
        assert ("too_long",) == codes(bare(max_length=1), "ﬁ")

    def test_decomposed_counts_as_composed(self) -> None:
        """ "e" + combining acute is one code point after NFKC."""
        assert bare(max_length=1).check("e\u0301")

    def test_runs_after_normalisation(self) -> None:
        """Full-width and plain "a" are one character after NFKC: a run."""
        assert ("repeated_characters",) == codes(bare(max_repeat=1), "aａ")


class TestConcurrency:
    """A policy is immutable and safe to share between threads."""

    def test_sixteen_threads_agree_with_sequential(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """16 threads checking different passwords at once get the sequential results."""
        policy = PasswordPolicy(require=["upper", "digit"], max_repeat=3, min_strength=2)
        user = UserInfo(username="aigerim", phone="+7 701 123 45 67", names=("Айгерим",))
        base = [
            "password",
            "Password1",
            "Aigerim1990",
            "Xk9#mQ2$vL7pRt",
            "зфыыцщкв",
            "AAAAbbbb1",
            "abc",
            "a" * 200,
            "\ud800Abc12345",
            "Pw7011234567",
        ]
        passwords = [f"{p}{i}" if i % 3 else p for i in range(16) for p in base]
        expected = [policy.check(p, user=user, confirmation=p[::-1]) for p in passwords]
        # Make the built-in blocklist load lazily under contention too.
        monkeypatch.setattr(_blocklist, "_builtin", None)
        barrier = threading.Barrier(16, timeout=60)

        def work(offset: int) -> list[tuple[int, PolicyResult]]:
            barrier.wait()
            out = []
            for i in range(offset, len(passwords), 16):
                out.append(
                    (i, policy.check(passwords[i], user=user, confirmation=passwords[i][::-1]))
                )
            return out

        with ThreadPoolExecutor(max_workers=16) as pool:
            chunks = list(pool.map(work, range(16)))
        actual = dict(pair for chunk in chunks for pair in chunk)
        assert expected == [actual[i] for i in range(len(passwords))]
