"""The strength rule (``min_strength``) never accepts what zxcvbn rejects (issue 11, item 5).

Soundness: for every password on which pure-Python zxcvbn finishes, ``check`` accepting it at
``min_strength=t`` implies ``zxcvbn(password, user_inputs=...)["score"] >= t`` — zxcvbn run on
the *whole* password, with the user inputs the rule passes. Hypothesis compares the two on
repeats, keyboard walks, dictionary words with l33t substitutions, dates, sequences and random
text, at lengths where whole-password zxcvbn is affordable. The cost of the rule is measured in
benchmarks/bench_policy.py and benchmarks/bench_inputs.py, never asserted here.
"""

from __future__ import annotations

import itertools
import string
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaspi_identity import PasswordPolicy, UserInfo
from kaspi_identity.policy import STRENGTH_WINDOW, strength_window
from kaspi_identity.policy._rules import personal_fragments
from kaspi_identity.policy._strength import (
    BOUND_LENGTH,
    EXACT_LENGTH,
    LONG_FROM,
    MAX_INPUT_LENGTH,
    l33t_tables,
    lower_bound,
    proven_score,
    zxcvbn_score,
)

THRESHOLDS = {1: 1e3 + 5, 2: 1e6 + 5, 3: 1e8 + 5, 4: 1e10 + 5}
POLICIES = {t: PasswordPolicy(min_strength=t, max_length=4096) for t in (1, 2, 3, 4)}
USER = UserInfo(
    username="aigerim.nurlanova",
    email="aigerim.n@example.kz",
    phone="+7 701 234 5678",
    names=("Айгерим", "Нурланова"),
)


def inputs_of(user: UserInfo | None) -> list[str]:
    """The user inputs the rule gives zxcvbn for ``user`` (each cut to 32 characters)."""
    if user is None:
        return []
    return [fragment[:MAX_INPUT_LENGTH] for _, fragment in personal_fragments(user)][:32]


def zxcvbn_guesses(password: str, inputs: Sequence[str]) -> float:
    """Pure-Python zxcvbn's guesses for the whole password."""
    from zxcvbn import zxcvbn

    from kaspi_identity.policy import _strength

    with _strength._zxcvbn_lock:
        result = zxcvbn(password, user_inputs=list(inputs), max_length=len(password) + 1)
    return float(result["guesses"])


def assert_sound(password: str, user: UserInfo | None = None) -> None:
    """For every threshold, ``check`` accepts only what zxcvbn scores at least that."""
    score = zxcvbn_score(password, inputs_of(user))
    for threshold, policy in POLICIES.items():
        result = policy.check(password, user=user)
        if "too_weak" not in result.codes:
            assert score >= threshold, (password, threshold, score)


class TestIssueExamples:
    """The repeats the issue found accepted."""

    @pytest.mark.parametrize(
        ("password", "rejected_at"),
        [
            ("batterystaple" * 3, (3, 4)),  # zxcvbn: 2
            ("Tr0ub4dour&3" * 3, (3, 4)),  # zxcvbn: 2
            ("qwerty" * 6, (1, 2, 3, 4)),  # zxcvbn: 0
        ],
    )
    def test_weak_repeats_are_too_weak(self, password: str, rejected_at: tuple[int, ...]) -> None:
        """Each is ``too_weak`` at the thresholds zxcvbn's whole-password score is below."""
        for threshold in rejected_at:
            assert "too_weak" in POLICIES[threshold].check(password).codes, threshold
        assert_sound(password)

    def test_score_param_is_zxcvbns_or_lower(self) -> None:
        """The ``score`` reported is never above zxcvbn's score of the whole password."""
        result = POLICIES[4].check("qwerty" * 6)
        assert {"min_strength": 4, "score": 0} == {
            k: v for k, v in result.violations[0].params.items() if k != "feedback"
        }
        result = POLICIES[4].check("batterystaple" * 3)
        score = dict(result.violations[0].params)["score"]
        assert isinstance(score, int)
        assert score <= 2

    def test_constructed_repeats(self) -> None:
        """The probe of the issue: strong-looking bases repeated two to six times.

        Every decision at every threshold agrees with zxcvbn on the whole password or is more
        conservative.
        """
        bases = [
            "batterystaple",
            "Tr0ub4dour&3",
            "qwerty",
            "correcthorse",
            "P@ssw0rd!",
            "Zx9!kLm2",
            "1qaz2wsx",
            "Almaty2024",
            "kaspi.kz",
            "xK7#",
            "abc123",
            "Nurlan!90",
        ]
        for base, count in itertools.product(bases, range(2, 7)):
            password = (base * count)[:72]
            assert_sound(password)
            assert_sound(password, USER)

    def test_strong_passwords_still_pass(self) -> None:
        """Strong passwords, short and long, are accepted at 4 (and zxcvbn agrees)."""
        for password in (
            "Tr0ub4dor&3x!Kq",
            "vq7-Ttm3-Lop2-Zrw9",
            "correct horse battery staple under the blue sky of Almaty, 2024!",
            "Kazakh steppe wind carries 7 red kites past Baikonur at dusk; tea is ready",
        ):
            assert POLICIES[4].check(password, user=USER), password
            assert zxcvbn_score(password, inputs_of(USER)) == 4


class TestLongPasswords:
    """Past ``LONG_FROM`` characters: linear scans, then the bound, then a refusal."""

    def test_long_passphrase_is_accepted(self) -> None:
        """A 150-character passphrase with no long repeat, sequence or walk scores 4."""
        password = (
            "the quiet lake near Burabay mirrors granite cliffs, pine forests and a sky of "
            "slow white clouds while 3 herons fish at dawn beside an old wooden jetty"
        )
        assert len(password) > LONG_FROM
        assert POLICIES[4].check(password)
        assert zxcvbn_score(password, []) == 4

    @pytest.mark.parametrize(
        "password",
        [
            ("Tr0ub4dour&3" * 20)[:200],
            "a" * 200,
            ("abcdefghijklmnopqrstuvwxyz" * 8)[:200],
            ("qwertyuiopasdfghjklzxcvbnm" * 8)[:200],
            "Kx9#mPq2Lz" + "0123456789" * 19,
        ],
        ids=["repeat", "one-character", "sequence", "keyboard", "strong-head-digit-tail"],
    )
    def test_long_weak_patterns_are_judged(self, password: str) -> None:
        """A long repeat, sequence or walk goes to the bound, which zxcvbn never beats."""
        assert LONG_FROM < len(password) <= BOUND_LENGTH
        assert_sound(password)

    def test_beyond_the_bound_a_long_pattern_is_refused(self) -> None:
        """Past BOUND_LENGTH a password holding a long repeat is ``too_weak`` with score 0
        (zxcvbn scores this one 1: a repeated base)."""
        password = ("correct horse battery staple " * 12)[:300]
        result = POLICIES[1].check(password)
        assert {"min_strength": 1, "score": 0} == {
            k: v for k, v in result.violations[0].params.items() if k != "feedback"
        }
        assert ("repeats", "add_word") == tuple(f.code for f in result.violations[0].feedback)

    def test_beyond_the_bound_no_pattern_is_strong(self) -> None:
        """Past BOUND_LENGTH a password with no long pattern is accepted at 4, in linear time.

        Any cover of a 400-character password by at most three zxcvbn matches needs a match
        of 134 characters, which only a repeat, a sequence or a walk can be.
        """
        words = "granite pine heron jetty lake cloud steppe kite tea dusk wind river"
        password = " ".join(f"{w}{i}" for i, w in enumerate(words.split() * 6))[:400]
        assert len(password) == 400
        assert POLICIES[4].check(password)


class TestStrengthWindow:
    """``strength_window``: the text zxcvbn scores itself, whole or nothing."""

    def test_short_cheap_password_is_scored_whole(self) -> None:
        """At most 32 characters and twelve l33t tables: the password itself."""
        assert STRENGTH_WINDOW == EXACT_LENGTH == 32
        assert "correct-Horse-7" == strength_window("correct-Horse-7")
        assert "x" * 32 == strength_window("x" * 32)

    def test_longer_or_l33t_heavy_is_bounded(self) -> None:
        """Past 32 characters, or past twelve l33t tables, zxcvbn never sees it: ``""``."""
        assert "" == strength_window("x" * 33)
        l33t_heavy = "!$%(+0123456789<@[{|"
        assert l33t_tables(l33t_heavy) > 12
        assert "" == strength_window(l33t_heavy)

    def test_no_prefix_is_ever_scored(self) -> None:
        """A strong prefix of a weak repeat does not make it strong (it did: 32 characters
        of ``batterystaple * 3`` score 4)."""
        password = "batterystaple" * 3
        assert zxcvbn_score(password[:32], []) == 4
        assert "" == strength_window(password)
        assert "too_weak" in POLICIES[3].check(password).codes


class TestOddInput:
    """Input zxcvbn itself chokes on gets a clean result."""

    @pytest.mark.parametrize("password", ["Pw12345\nxyz", "19901\n", "0" * 40 + "\n1"])
    def test_newline_after_five_digits(self, password: str) -> None:
        """zxcvbn raises ValueError on five digits and a newline; ``check`` reports the
        control character and never raises."""
        result = POLICIES[1].check(password)
        assert "disallowed_character" in result.codes

    def test_lone_surrogates_and_nul(self) -> None:
        """Lone surrogates and NUL reach the rule without a crash."""
        for password in ("\ud800" * 40, "\x00" * 40, "a\udfffb" * 20):
            assert "disallowed_character" in POLICIES[2].check(password).codes

    def test_dotted_capital_i(self) -> None:
        """ "İ" lowercases to two code points; the bound still never beats zxcvbn."""
        assert_sound("İstanbul" * 5)
        assert_sound("İ1stanbul!" * 4)


class TestConcurrency:
    """zxcvbn keeps the user inputs in a global; the rule serialises its calls."""

    def test_threads_with_different_users_agree_with_sequential(self) -> None:
        """32 threads checking passwords made of the *other* user's name get the answers a
        single thread gets."""
        users = [UserInfo(username="qzxwvaiger"), UserInfo(username="plmoknijbu")]
        passwords = ["qzxwvaiger19", "plmoknijbu19"]
        policy = POLICIES[2]
        expected = {(u, p): policy.check(p, user=users[u]).codes for u in (0, 1) for p in passwords}
        barrier = threading.Barrier(8)

        def work(index: int) -> bool:
            barrier.wait()
            u, p = index % 2, passwords[(index // 2) % 2]
            return all(policy.check(p, user=users[u]).codes == expected[(u, p)] for _ in range(20))

        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(work, range(32)))


# --------------------------------------------------------------------------- properties

_WORDS = [
    "password", "dragon", "almaty", "astana", "summer", "monkey", "love", "battery",
    "staple", "correct", "horse", "sunshine", "admin", "baurzhan", "kasym", "trustno",
    "football", "princess", "welcome", "shadow", "master", "letmein", "starwars", "aigerim",
]  # fmt: skip
_L33T = {"a": "4@", "e": "3", "i": "1!|", "o": "0", "s": "$5", "t": "7+", "l": "1|", "b": "8",
         "g": "96", "c": "(<", "z": "2", "x": "%"}  # fmt: skip
_WALKS = ["qwertyuiop", "asdfghjkl", "zxcvbnm", "1qaz2wsx3edc", "1234567890", "!@#$%^&*()"]


@st.composite
def l33t_words(draw: st.DrawFn) -> str:
    """A dictionary word, maybe capitalised, with some letters swapped for l33t characters."""
    word = draw(st.sampled_from(_WORDS))
    chars = [
        draw(st.sampled_from(_L33T[c])) if c in _L33T and draw(st.booleans()) else c for c in word
    ]
    text = "".join(chars)
    return text.capitalize() if draw(st.booleans()) else text


def dates() -> st.SearchStrategy[str]:
    """Dates as people type them."""
    return st.builds(
        lambda d, m, y, sep, order: sep.join(
            [f"{d:02d}", f"{m:02d}", str(y)] if order else [str(y), f"{m:02d}", f"{d:02d}"]
        ),
        st.integers(1, 28),
        st.integers(1, 12),
        st.integers(1950, 2030),
        st.sampled_from(["", ".", "/", "-"]),
        st.booleans(),
    )


def sequences() -> st.SearchStrategy[str]:
    """Runs of a constant code-point step (abcd, 9753, ACEG)."""
    return st.builds(
        lambda start, step, length: "".join(chr(start + step * k) for k in range(length)),
        st.integers(ord("0"), ord("Z")),
        st.sampled_from([1, 2, -1, -2, 3]),
        st.integers(3, 12),
    )


PIECES = st.one_of(
    l33t_words(),
    dates(),
    sequences(),
    st.sampled_from(_WALKS).map(lambda w: w[: len(w)]),
    st.text(string.ascii_letters + string.digits + string.punctuation, min_size=1, max_size=12),
    st.text(st.sampled_from("!$%(+0123456789<@[{|aeiolstbgxz"), min_size=1, max_size=10),
)


@st.composite
def passwords(draw: st.DrawFn, max_size: int = 72, min_size: int = 0) -> str:
    """Pieces joined, or one piece repeated, cut to ``max_size``."""
    text = ""
    while len(text) < max(min_size, 1):
        if draw(st.booleans()):
            text += draw(PIECES) * draw(st.integers(2, 8))
        else:
            text += "".join(draw(st.lists(PIECES, min_size=1, max_size=6)))
    return text[:max_size]


def affordable(password: str) -> bool:
    """Whether whole-password zxcvbn finishes in a fraction of a second on it."""
    return l33t_tables(password, 48) <= 48


SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class TestSoundness:
    """accept ⇒ zxcvbn score ≥ threshold, on generated passwords."""

    @SETTINGS
    @given(password=passwords(), with_user=st.booleans())
    def test_accept_implies_zxcvbn_score(self, password: str, with_user: bool) -> None:
        """``check`` at min_strength 1–4 accepts only what zxcvbn scores at least that."""
        if not affordable(password):
            return
        user = USER if with_user else None
        score = zxcvbn_score(password, inputs_of(user))
        for threshold in (1, 2, 3, 4):
            # Exact up to the threshold, and never above zxcvbn's score.
            assert proven_score(password, inputs_of(user), threshold) <= score
            if "too_weak" not in POLICIES[threshold].check(password, user=user).codes:
                assert score >= threshold

    @SETTINGS
    @given(password=passwords(max_size=60))
    def test_the_bound_never_exceeds_zxcvbns_guesses(self, password: str) -> None:
        """The lower bound alone (used past 32 characters or twelve l33t tables), on short
        passwords too: below the cap it is at most zxcvbn's guesses."""
        if not password or not affordable(password):
            return
        guesses = zxcvbn_guesses(password, [])
        for cap in THRESHOLDS.values():
            bound = lower_bound(password, [], cap)
            assert bound <= cap
            if bound < cap:
                assert bound <= guesses * (1 + 1e-9)
            else:
                assert guesses >= cap * (1 - 1e-9)

    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(password=passwords(max_size=200, min_size=LONG_FROM + 1))
    def test_long_passwords(self, password: str) -> None:
        """Past LONG_FROM characters too (zxcvbn takes up to a second there)."""
        if l33t_tables(password, 16) > 16:
            return
        assert_sound(password)
