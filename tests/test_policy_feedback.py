"""Strength feedback: the ``too_weak`` violation says why, as stable sub-codes, in kk/ru/en.

zxcvbn's own feedback is English text about its longest match; the engine derives stable
sub-codes (:data:`STRENGTH_FEEDBACK_CODES`) from zxcvbn's match patterns instead and renders
them from the catalogs, so a Kazakh or Russian reader never sees zxcvbn's English.
"""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaspi_identity import (
    STRENGTH_FEEDBACK_CODES,
    PasswordPolicy,
    StrengthFeedback,
    UserInfo,
    Violation,
)
from kaspi_identity.i18n import SUPPORTED_LANGUAGES, get_catalog
from kaspi_identity.policy import STRENGTH_FEEDBACK_KINDS
from kaspi_identity.policy._strength import assess, feedback_of, proven_score

POLICIES = {
    t: PasswordPolicy(min_strength=t, max_length=4096, blocklist=False) for t in (1, 2, 3, 4)
}
USER = UserInfo(username="aigerim.n", email="aigerim.n@example.kz", names=("Айгерим",))

# Every (code, params) the engine can give: the codes, each with every kind it takes.
ALL_FEEDBACK = [
    StrengthFeedback(code, {"kind": kind})
    for code in STRENGTH_FEEDBACK_CODES
    for kind in STRENGTH_FEEDBACK_KINDS.get(code, ())
] + [
    StrengthFeedback(code)
    for code in STRENGTH_FEEDBACK_CODES
    if code not in STRENGTH_FEEDBACK_KINDS
]
# Two English words in a row: what a Kazakh or Russian sentence never holds (its examples,
# such as «qwerty», are single tokens).
ENGLISH_WORDS = re.compile(r"[A-Za-z]{2,}[ ,.;:]+[A-Za-z]{2,}")
# zxcvbn's own English feedback, as zxcvbn 4.5 words it: none of it is ever shown.
ZXCVBN_PHRASES = (
    "easy to guess",
    "Add another word",
    "Avoid",
    "common password",
    "Capitalization",
    "Predictable substitutions",
    "keyboard pattern",
)


def feedback_codes(
    password: str, *, target: int = 4, user: UserInfo | None = None
) -> list[tuple[str, dict[str, str]]]:
    """The (code, params) pairs of the too_weak violation of ``password`` ([] when strong)."""
    result = POLICIES[target].check(password, user=user)
    return [(f.code, dict(f.params)) for v in result.violations for f in v.feedback]


class TestCodes:
    def test_stable_list(self) -> None:
        """The sub-codes are exactly the documented ones, in the documented order."""
        expected = (
            "common_password",
            "common_word",
            "names",
            "personal_data",
            "keyboard_pattern",
            "repeats",
            "sequence",
            "recent_year",
            "dates",
            "capitalization",
            "all_uppercase",
            "reversed_word",
            "substitutions",
            "add_word",
        )
        assert expected == STRENGTH_FEEDBACK_CODES

    def test_kinds(self) -> None:
        """The codes that carry a kind, and the kinds each takes."""
        expected = {
            "common_password": ("top10", "top100", "very_common", "similar"),
            "names": ("alone", "common"),
            "keyboard_pattern": ("straight_row", "short"),
            "repeats": ("character", "group"),
        }
        assert expected == dict(STRENGTH_FEEDBACK_KINDS)

    @pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
    def test_every_feedback_has_a_message(self, language: str) -> None:
        """Every code with every kind has its own catalog entry, a full sentence."""
        keys = get_catalog(language).keys()
        for feedback in ALL_FEEDBACK:
            assert feedback.message_key in keys
            text = feedback.message(language)
            assert text.endswith("."), feedback
            assert "{" not in text, feedback

    @pytest.mark.parametrize("language", ["ru", "kk"])
    def test_no_english_in_kk_and_ru(self, language: str) -> None:
        """No Kazakh or Russian feedback sentence is English, or holds English phrases."""
        for feedback in ALL_FEEDBACK:
            text = feedback.message(language)
            assert text != feedback.message("en"), feedback
            assert ENGLISH_WORDS.search(text) is None, text

    def test_kazakh_spelling_and_address(self) -> None:
        """Kazakh writes құпиясөз as one word and addresses the reader as Сіз."""
        assert "Сіздің" in StrengthFeedback("personal_data").message("kk")
        assert "қосыңыз" in StrengthFeedback("add_word").message("kk")
        for feedback in ALL_FEEDBACK:
            assert "құпия сөз" not in feedback.message("kk").lower()

    def test_russian_address(self) -> None:
        """Russian addresses the reader as Вы, capitalised as in the letters."""
        assert "Ваши" in StrengthFeedback("personal_data").message("ru")
        assert "связанные с Вами" in StrengthFeedback("dates").message("ru")
        assert StrengthFeedback("add_word").message("ru").startswith("Добавьте")


class TestStrengthFeedback:
    def test_value(self) -> None:
        """Equal by code and params, hashable, plain data for JSON."""
        a = StrengthFeedback("repeats", {"kind": "character"})
        assert StrengthFeedback("repeats", {"kind": "character"}) == a
        assert {a} == {StrengthFeedback("repeats", {"kind": "character"})}
        assert {"code": "repeats", "params": {"kind": "character"}} == a.to_dict()
        assert "strength.repeats.character" == a.message_key
        assert "strength.sequence" == StrengthFeedback("sequence").message_key
        assert "StrengthFeedback('repeats', {'kind': 'character'})" == repr(a)

    @pytest.mark.parametrize(
        ("code", "params", "reason"),
        [
            ("too_short", {}, "unknown strength feedback code 'too_short'"),
            ("repeats", {}, "takes a 'kind' param"),
            ("repeats", {"kind": "word"}, "kind must be one of character, group, not 'word'"),
            ("sequence", {"kind": "character"}, "takes no params"),
            ("repeats", {"kind": "character", "token": "aaa"}, "takes a 'kind' param"),
        ],
    )
    def test_bad_input(self, code: str, params: dict[str, str], reason: str) -> None:
        """An unknown code or params that do not fit it: a ValueError saying which."""
        with pytest.raises(ValueError, match=re.escape(reason)):
            StrengthFeedback(code, params)

    def test_feedback_only_on_too_weak(self) -> None:
        """Only a too_weak violation carries feedback, and only StrengthFeedback."""
        with pytest.raises(ValueError, match="on too_weak only"):
            Violation("too_short", {"min_length": 8, "feedback": (StrengthFeedback("add_word"),)})
        with pytest.raises(ValueError, match="a tuple of StrengthFeedback"):
            Violation("too_weak", {"feedback": ("add_word",)})
        assert () == Violation("too_short", {"min_length": 8}).feedback

    def test_violation_without_feedback_keeps_the_classic_message(self) -> None:
        """A too_weak built without feedback renders the one-sentence message as before."""
        violation = Violation("too_weak", {"min_strength": 3, "score": 1})
        assert "violation.too_weak" == violation.message_key
        assert violation.message("en") == (
            "This password is too easy to guess. Add another word or a few more characters."
        )


class TestExamples:
    """What the feedback says of typical weak passwords (zxcvbn scores them itself)."""

    @pytest.mark.parametrize(
        ("password", "expected"),
        [
            ("aaaaaaaaaaaa", [("repeats", {"kind": "character"})]),
            ("abcabcabc", [("repeats", {"kind": "group"})]),
            ("abcdefgh12", [("sequence", {})]),
            ("asdfghjkl;", [("keyboard_pattern", {"kind": "straight_row"})]),
            ("zxcvbnm", [("common_password", {"kind": "top100"})]),
            ("Elephant", [("common_password", {"kind": "very_common"}), ("capitalization", {})]),
            ("ELEPHANT", [("common_password", {"kind": "very_common"}), ("all_uppercase", {})]),
            ("tnahpele", [("common_password", {"kind": "similar"}), ("reversed_word", {})]),
            ("williamsjohnson", [("names", {"kind": "common"})]),
            ("smith", [("names", {"kind": "alone"})]),
            ("2019", [("recent_year", {})]),
            ("summer2019", [("common_password", {"kind": "similar"}), ("recent_year", {})]),
            ("19901231", [("dates", {})]),
            (
                "p@ssw0rd12",
                [
                    ("common_password", {"kind": "similar"}),
                    ("substitutions", {}),
                    ("sequence", {}),
                ],
            ),
        ],
    )
    def test_feedback(self, password: str, expected: list[tuple[str, dict[str, str]]]) -> None:
        """The sub-codes of the password's matches, longest first, then add_word."""
        assert [*expected, ("add_word", {})] == feedback_codes(password)

    def test_user_data(self) -> None:
        """The user's own data, in zxcvbn's extra dictionary, is named as personal data."""
        assert ("personal_data", {}) in feedback_codes("aigerim777", user=USER)
        assert ("personal_data", {}) not in feedback_codes("aigerim777")

    def test_random_looking_short_password(self) -> None:
        """A short random password has no pattern to name: only the advice to add a word."""
        assert [("add_word", {})] == feedback_codes("aB3$xQ9!")

    def test_empty_password(self) -> None:
        """The empty password (no length rule) gets the advice alone."""
        policy = PasswordPolicy(min_length=None, min_strength=2, blocklist=False)
        assert (StrengthFeedback("add_word"),) == policy.check("").violations[0].feedback

    def test_strong_password_has_no_violation(self) -> None:
        """No too_weak, no feedback."""
        assert [] == feedback_codes("correct horse battery staple")


class TestBeyondZxcvbn:
    """Passwords zxcvbn does not score itself get feedback from the bound or the scans."""

    def test_l33t_heavy(self) -> None:
        """Too many l33t tables for zxcvbn: the bound's cheapest cover names the repeat."""
        codes = [code for code, _ in feedback_codes("p4$$w0rd" * 4)]
        assert "repeats" in codes
        assert "add_word" == codes[-1]

    def test_bound(self) -> None:
        """33 to 256 characters: the bound's cheapest cover."""
        assert [("repeats", {"kind": "group"}), ("add_word", {})] == feedback_codes("zxcvbnm" * 20)

    @pytest.mark.parametrize("password", ["1234567890" * 30, "qwertyuiop" * 30, "ab" * 150])
    def test_beyond_the_bound(self, password: str) -> None:
        """Past 256 characters a long pattern is read as a repeat."""
        assert [("repeats", {"kind": "group"}), ("add_word", {})] == feedback_codes(password)

    def test_score_is_unchanged(self) -> None:
        """assess() gives proven_score()'s score on every path."""
        for password in ["password1", "p4$$w0rd" * 4, "zxcvbnm" * 20, "ab" * 150, ""]:
            for target in (1, 2, 3, 4):
                assert proven_score(password, [], target) == assess(password, [], target)[0]

    def test_no_feedback_when_strong_enough(self) -> None:
        """A score reaching the target has no feedback."""
        assert (4, ()) == assess("correct horse battery staple", [], 4)

    def test_feedback_of_an_empty_sequence(self) -> None:
        """No match at all still gives the advice."""
        assert (("add_word", {}),) == feedback_of([])


# Text with the patterns zxcvbn names: words, years, dates, repeats, walks, l33t, capitals.
_PIECES = st.sampled_from(
    [
        "password",
        "Summer",
        "qwerty",
        "asdf",
        "2019",
        "1990",
        "12.05.1988",
        "abc",
        "p@ss",
        "ЙЦУКЕН",
        "aigerim",
        "smith",
        "drowssap",
        "!!!",
        "zzz",
        "Kaspi",
        "1q2w3e",
    ]
)
_TEXT = st.text(
    alphabet=string.ascii_letters + string.digits + string.punctuation + "йцукен", max_size=12
)
PASSWORDS = st.one_of(
    st.lists(st.one_of(_PIECES, _TEXT), min_size=1, max_size=4).map("".join),
    st.tuples(_PIECES, st.integers(2, 40)).map(lambda t: t[0] * t[1]),
    _TEXT,
)


class TestProperties:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(password=PASSWORDS, target=st.integers(1, 4), with_user=st.booleans())
    def test_only_known_codes_rendered_in_every_language(
        self, password: str, target: int, with_user: bool
    ) -> None:
        """Every too_weak carries only known sub-codes, add_word last, and renders natively.

        In every language the message is the verdict followed by one sentence per feedback,
        all from that language's catalog: ru and kk never show zxcvbn's English.
        """
        result = POLICIES[target].check(password, user=USER if with_user else None)
        for violation in result.violations:
            if violation.code != "too_weak":
                continue
            feedback = violation.feedback
            assert feedback
            assert feedback[-1] == StrengthFeedback("add_word")
            assert len(set(feedback)) == len(feedback)
            for item in feedback:
                assert item.code in STRENGTH_FEEDBACK_CODES
                kinds = STRENGTH_FEEDBACK_KINDS.get(item.code)
                assert (kinds is not None) == ("kind" in item.params)
                if kinds is not None:
                    assert item.params["kind"] in kinds
            for language in SUPPORTED_LANGUAGES:
                text = violation.message(language)
                assert text.startswith(get_catalog(language).message("violation.too_weak.feedback"))
                for item in feedback:
                    assert item.message(language) in text
                if language != "en":
                    assert ENGLISH_WORDS.search(text) is None, text
                    assert not any(phrase in text for phrase in ZXCVBN_PHRASES), text

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(password=PASSWORDS, target=st.integers(1, 4))
    def test_feedback_never_changes_the_score(self, password: str, target: int) -> None:
        """The strength rule's semantics are kept: assess() scores as proven_score() does."""
        score, feedback = assess(password, [], target)
        assert proven_score(password, [], target) == score
        assert (score < target) == bool(feedback)
