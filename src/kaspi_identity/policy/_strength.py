"""zxcvbn's strength score, proven: never above what zxcvbn says of the whole password.

Pure-Python zxcvbn is too slow to run on every password a policy accepts (its l33t matcher makes
one pass over every dictionary per *substitution table*, and their number grows exponentially
with the distinct l33t characters; every pass is quadratic in the length), and scoring a prefix
instead is unsound: zxcvbn's repeat and sequence matchers see the whole string, so a prefix that
is strong alone can be part of a weak repeat (``"batterystaple" * 3`` scores 2, its first 32
characters 4). :func:`proven_score` is sound instead — for every password, its answer is at most
``zxcvbn(password, user_inputs=inputs)["score"]`` — and costs milliseconds:

1. **Exact** — a password of at most :data:`EXACT_LENGTH` characters whose l33t characters make
   zxcvbn try at most :data:`MAX_L33T_TABLES` substitution tables is scored by zxcvbn itself.
2. **Bound** — otherwise zxcvbn's own search is re-run over a *superset* of its matches with
   guesses never above its own (its dictionary, reversed, spatial, sequence, regex, date and
   repeat matches exactly; its l33t matches by a projection that finds every word any of its
   tables could, each at the lowest guesses a substitution can give), and the exact minimum of
   its guess formula ``l! * prod(guesses) + 10000 ** (l - 1)`` over sequences of at most three
   matches is taken. zxcvbn's answer is that formula for *one* such sequence, so the minimum is
   a lower bound of it. Three is enough: a sequence of four or more matches already costs
   ``10000 ** 3 = 1e12`` guesses, above every score threshold (``1e10 + 5`` for a 4).
3. **Long** — past :data:`LONG_FROM` characters, at least one of at most three matches covering
   the password is longer than a dictionary word (23 characters; user inputs are cut to 32),
   a date (10) or a brute-force piece worth less than ``1e10`` guesses (10): it must be a
   repeat, a sequence or a keyboard walk. When no periodic stretch, constant-step run or run of
   adjacent keys that long exists (three linear scans), the score is 4. Otherwise the bound
   (2.) runs up to :data:`BOUND_LENGTH` characters, and a longer password is judged 0: refused,
   never guessed at.
"""

from __future__ import annotations

import functools
import math
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

__all__ = [
    "BOUND_LENGTH",
    "EXACT_LENGTH",
    "LONG_FROM",
    "MAX_INPUT_LENGTH",
    "MAX_L33T_TABLES",
    "assess",
    "feedback_of",
    "l33t_tables",
    "lower_bound",
    "proven_score",
    "zxcvbn_score",
]

#: zxcvbn itself scores passwords of at most this many characters (with few l33t tables).
EXACT_LENGTH: Final = 32
# Each l33t table is one more pass over every dictionary; 12 bound zxcvbn's cost on 32
# characters to ~20 ms (benchmarks/bench_policy.py --sweep), 8 distinct l33t characters still
# allowed 69 tables and 180 ms.
MAX_L33T_TABLES: Final = 12
#: User inputs (personal-data fragments) are cut to this many characters for zxcvbn.
MAX_INPUT_LENGTH: Final = 32
#: zxcvbn's longest dictionary word, and so the longest dictionary match with user inputs.
_MAX_WORD: Final = 23
#: Past this length the three linear scans of step 3 decide most passwords.
LONG_FROM: Final = 3 * max(_MAX_WORD, MAX_INPUT_LENGTH)
#: The longest password the bound of step 2 is computed for (its repeat search is quadratic).
BOUND_LENGTH: Final = 256

# zxcvbn's score thresholds (time_estimates.guesses_to_score, delta 5): score t needs
# guesses >= _THRESHOLD[t].
_THRESHOLD: Final = {1: 1e3 + 5, 2: 1e6 + 5, 3: 1e8 + 5, 4: 1e10 + 5}
_D: Final = 10_000.0  # scoring.MIN_GUESSES_BEFORE_GROWING_SEQUENCE
# The bound is floating point, zxcvbn's sum Decimal: a relative margin far above either
# rounding keeps "bound >= threshold" from ever being decided by rounding alone.
_MARGIN: Final = 1 - 1e-9
_L33T_CHARS: Final = frozenset("!$%(+0123456789<@[{|")
_BRUTEFORCE_MAX: Final = 10  # 10 ** 11 guesses is past every threshold
_DATE_MIN_GUESSES: Final = 20 * 365  # scoring.date_guesses: MIN_YEAR_SPACE years
_GREEDY: Final = re.compile(r"(.+)\1+")  # zxcvbn's repeat_match, verbatim
_LAZY: Final = re.compile(r"(.+?)\1+")
_LAZY_ANCHORED: Final = re.compile(r"^(.+?)\1+$")
_DATE_PLAIN: Final = re.compile(r"^\d{4,8}$")  # zxcvbn's date_match, verbatim
_DATE_SEPARATED: Final = re.compile(r"^(\d{1,4})([\s/\\_.-])(\d{1,2})\2(\d{1,4})$")

# zxcvbn() stores the user inputs in a module-global dictionary its repeat matcher reads, so two
# threads scoring with different inputs at once would each see the other's.
_zxcvbn_lock = threading.Lock()


def _score_of(guesses: float) -> int:
    """The zxcvbn score of a guess count, decided with the rounding margin."""
    guesses *= _MARGIN
    return sum(1 for threshold in _THRESHOLD.values() if guesses >= threshold)


@functools.lru_cache(maxsize=4096)
def _tables(chars: frozenset[str]) -> int:
    from zxcvbn.matching import L33T_TABLE, enumerate_l33t_subs, relevant_l33t_subtable

    return len(enumerate_l33t_subs(relevant_l33t_subtable("".join(sorted(chars)), L33T_TABLE)))


def l33t_tables(password: str, limit: int = MAX_L33T_TABLES) -> int:
    """How many substitution tables zxcvbn's l33t matcher tries on ``password``.

    Counted up to the first count past ``limit``, so the enumeration itself stays cheap.
    """
    seen: frozenset[str] = frozenset()
    count = 1
    for char in password:
        if char in _L33T_CHARS and char not in seen:
            seen |= {char}
            count = _tables(seen)
            if count > limit:
                return count
    return count if seen else 0


def zxcvbn_score(password: str, inputs: Sequence[str]) -> int:
    """``zxcvbn(password, user_inputs=inputs)["score"]``, whatever the length (slow: tests)."""
    return int(_zxcvbn(password, inputs)["score"])


def _zxcvbn(password: str, inputs: Sequence[str]) -> dict[str, Any]:
    """``zxcvbn(password, user_inputs=inputs)``: its score and its match sequence."""
    from zxcvbn import zxcvbn

    # zxcvbn 4.5 refuses more than 72 characters unless told otherwise; 4.4 has no limit.
    limit: dict[str, int] = {"max_length": len(password)} if len(password) > 72 else {}
    with _zxcvbn_lock:
        result: dict[str, Any] = zxcvbn(password, user_inputs=list(inputs), **limit)
    return result


def proven_score(password: str, inputs: Sequence[str], target: int) -> int:
    """A zxcvbn score of ``password`` that zxcvbn's own never falls below.

    ``target`` (1–4) is the score the caller needs: the answer is exact up to it (an answer
    below ``target`` is the best lower bound found), and ``target`` itself once it is proven.
    ``inputs`` are zxcvbn's user inputs, each cut to :data:`MAX_INPUT_LENGTH` characters.
    """
    return _assess(password, inputs, target, explain=False)[0]


def assess(
    password: str, inputs: Sequence[str], target: int
) -> tuple[int, tuple[tuple[str, dict[str, str]], ...]]:
    """:func:`proven_score`, and when it is below ``target`` the feedback on why.

    The feedback is a tuple of ``(sub-code, params)`` pairs (the codes of
    ``kaspi_identity.policy.STRENGTH_FEEDBACK_CODES``), derived from the matches that explain
    the score: zxcvbn's own match sequence when zxcvbn scored the password, else the cheapest
    cover of the bound (or the long pattern found by the linear scans). It never holds any
    part of the password; it is ``()`` when the score reaches ``target``. The score is
    exactly :func:`proven_score`'s.
    """
    score, matches = _assess(password, inputs, target, explain=True)
    return score, (feedback_of(matches) if score < target else ())


def _assess(
    password: str, inputs: Sequence[str], target: int, *, explain: bool
) -> tuple[int, list[dict[str, Any]]]:
    """The proven score and, with ``explain`` and below ``target``, the matches behind it."""
    inputs = [text[:MAX_INPUT_LENGTH] for text in inputs]
    n = len(password)
    if n == 0:
        return 0, []
    if n <= EXACT_LENGTH and l33t_tables(password) <= MAX_L33T_TABLES:
        try:
            result = _zxcvbn(password, inputs)
        except ValueError:
            pass  # zxcvbn cannot parse "12345\n" as a date; the bound below does not raise
        else:
            score = min(int(result["score"]), target)
            return score, list(result["sequence"]) if explain and score < target else []
    if n > LONG_FROM:
        kind = _long_pattern(password, -(-n // 3))
        if kind is None:
            return target, []
        if n > BOUND_LENGTH:
            if not explain:
                return 0, []
            # A repeat is the likelier reading of a long pattern ("1234567890" * 30).
            kind = _long_pattern(password, -(-n // 3), repeat_first=True) or kind
            return 0, [_long_match(password, kind)]
    cap = _THRESHOLD[target]
    search = _search(inputs)
    if not explain:
        guesses = _bound(password, cap, search)
        return (target if guesses >= cap else min(_score_of(guesses), target - 1)), []
    guesses, cover = _cheapest(password, _pieces(password, cap, search), cap)
    if guesses >= cap:
        return target, []
    return min(_score_of(guesses), target - 1), _cover_matches(password, cover, search)


# -- step 3: the linear scans ------------------------------------------------------------


@functools.cache
def _adjacent_pairs() -> frozenset[str]:
    """Every two-character string zxcvbn's spatial matcher can step along, in any graph."""
    from zxcvbn.adjacency_graphs import ADJACENCY_GRAPHS

    pairs: set[str] = set()
    for graph in ADJACENCY_GRAPHS.values():
        for key, neighbours in graph.items():
            for group in neighbours:
                pairs.update(key + char for char in group or "")
    return frozenset(pairs)


def _long_pattern(password: str, length: int, *, repeat_first: bool = False) -> str | None:
    """The kind of zxcvbn match at least ``length`` long ``password`` may hold, or None.

    ``"spatial"``, ``"sequence"`` or ``"repeat"``: the first the scans meet (the repeat scan
    runs last, or first with ``repeat_first``). A superset: a kind when in doubt, never None
    when such a match of at least ``length`` characters exists.
    """
    if repeat_first and _long_repeat(password, length):
        return "repeat"
    n = len(password)
    pairs = _adjacent_pairs()
    walk = step_run = 0
    last_delta = None
    for k in range(1, n):
        # A spatial match steps from key to adjacent key; a sequence keeps one step of at
        # most 5 code points.
        walk = walk + 1 if password[k - 1 : k + 1] in pairs else 0
        delta = ord(password[k]) - ord(password[k - 1])
        step_run = step_run + 1 if delta == last_delta and 0 < abs(delta) <= 5 else 1
        last_delta = delta
        if walk + 1 >= length:
            return "spatial"
        if 0 < abs(delta) <= 5 and step_run + 1 >= length:
            return "sequence"
    return "repeat" if not repeat_first and _long_repeat(password, length) else None


def _long_repeat(password: str, length: int) -> bool:
    """Whether ``password`` may hold a zxcvbn repeat match at least ``length`` long."""
    # A repeat u * k (k >= 2) of ``length`` characters with period q = len(u) <= length / 2
    # has password[i] == password[i + q] over ceil(length / 2) consecutive i, so it holds an
    # aligned block of ``block`` characters that recurs q <= n / 2 characters later.
    n = len(password)
    block = (-(-length // 2) + 1) // 2
    for start in range(0, n - block, block):
        piece = password[start : start + block]
        if password.find(piece, start + 1, min(n, start + n // 2 + block)) != -1:
            return True
    return False


# -- step 2: the bound -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Dictionaries:
    """Ranked dictionaries (zxcvbn's own), indexed for the scans of the bound.

    ``buckets`` maps a projected word to the words (lowest rank first) that project onto it,
    for every word its projection changes (the others are found as their own projection);
    ``prefixes`` holds every 3- and 4-character prefix of a word, ``projected_prefixes`` those
    of every projected word, so a scan from a position stops as soon as no word can follow.
    """

    ranks: dict[str, int]  # each word at its lowest rank in any of the dictionaries
    buckets: dict[str, str | tuple[str, ...]]
    prefixes: frozenset[str]
    projected_prefixes: frozenset[str]

    @classmethod
    def of(cls, ranked: Iterable[Mapping[str, int]]) -> _Dictionaries:
        """Index the ranked dictionaries ``ranked``."""
        projection = _l33t_classes()[1]
        ranks: dict[str, int] = {}
        for dictionary in ranked:
            for word, rank in dictionary.items():
                if rank < ranks.get(word, rank + 1):
                    ranks[word] = rank
        grouped: dict[str, list[str]] = {}
        projected: set[str] = set()
        for word in sorted(ranks, key=ranks.__getitem__):
            key = word.translate(projection)
            projected.add(key)
            if key != word and len(word) > 1:
                grouped.setdefault(key, []).append(word)
        buckets = {k: v[0] if len(v) == 1 else tuple(v) for k, v in grouped.items()}
        return cls(ranks, buckets, _prefixes(ranks), _prefixes(projected))

    def projecting_onto(self, projected: str) -> tuple[str, ...]:
        """The words that project onto ``projected``, lowest rank first."""
        found = self.buckets.get(projected, ())
        words = (found,) if isinstance(found, str) else found
        rank = self.ranks.get(projected)
        if rank is None:
            return words
        # A word with no l33t-able letter is its own projection.
        return tuple(sorted((*words, projected), key=self.ranks.__getitem__))


# The l33t characters of zxcvbn's table and the letters each may stand for; letters joined by
# a shared character ("1" is i or l, "7" is l or t) fall into one class, and projecting every
# character onto its class makes a word and any l33t spelling of it equal.
@functools.cache
def _l33t_classes() -> tuple[dict[str, frozenset[str]], dict[int, str]]:
    from zxcvbn.matching import L33T_TABLE

    letters_of: dict[str, set[str]] = {}
    for letter, subs in L33T_TABLE.items():
        for sub in subs:
            letters_of.setdefault(sub, set()).add(letter)
    groups: list[set[str]] = []
    for letter, subs in L33T_TABLE.items():
        group = {letter, *subs}
        for other in [g for g in groups if g & group]:
            group |= other
            groups.remove(other)
        groups.append(group)
    projection: dict[int, str] = {}
    for group in groups:
        representative = min(c for c in group if c.isalpha())
        projection.update({ord(c): representative for c in group})
    projection[ord("ς")] = "σ"  # str.lower() picks the final sigma by context
    return {sub: frozenset(ls) for sub, ls in letters_of.items()}, projection


@functools.cache
def _dictionaries() -> _Dictionaries:
    from zxcvbn.matching import RANKED_DICTIONARIES

    # zxcvbn() replaces the "user_inputs" entry on every call; the frequency lists stay.
    return _Dictionaries.of(
        tuple(d for name, d in RANKED_DICTIONARIES.items() if name != "user_inputs")
    )


def _prefixes(words: Iterable[str]) -> frozenset[str]:
    return frozenset(word[:k] for word in words for k in (3, 4) if len(word) >= k)


def _l33t_substitution(token: str, word: str, may_stay: frozenset[str]) -> dict[str, str] | None:
    """The substitution some zxcvbn l33t table makes to turn ``token`` into ``word``, or None.

    A table maps each l33t character to at most one letter and gives each letter at most one
    l33t character. A character it does not map stays as it is, which happens only when
    another l33t character of the password took its letter (``may_stay``: see
    :func:`_may_stay`). The answer holds only the characters that change (zxcvbn's ``sub`` of
    the match); None when no table fits, or none is needed (``token == word`` is a plain
    dictionary match).
    """
    letters_of = _l33t_classes()[0]
    chosen: dict[str, str] = {}
    for a, b in zip(token, word, strict=True):
        if a in letters_of:
            if chosen.setdefault(a, b) != b:
                return None
            if b not in letters_of[a] and (b != a or a not in may_stay):
                return None
        elif a != b and {a, b} != {"σ", "ς"}:
            return None
    sub = {char: letter for char, letter in chosen.items() if char != letter}
    if not sub or len(set(sub.values())) < len(sub):
        return None
    return sub


def _may_stay(text: str) -> frozenset[str]:
    """The l33t characters of ``text`` that some zxcvbn table leaves as they are.

    zxcvbn's tables give every letter one of its l33t characters present in the password, so a
    character is left alone only when another present character shares a letter with it ("4"
    and "@" both stand for a; "1" and "|" for i and l). "2" alone is always read as z.
    """
    letters_of = _l33t_classes()[0]
    present = _L33T_CHARS.intersection(text)
    return frozenset(
        char
        for char in present
        if any(other != char and letters_of[other] & letters_of[char] for other in present)
    )


@dataclass(slots=True)
class _Search:
    """What one bound computation shares: the dictionaries, the user inputs and a memo."""

    words: _Dictionaries
    inputs: _Dictionaries
    longest: int
    memo: dict[tuple[str, float], float]
    # Repetitive text asks the same questions at every position: answer each once.
    l33t_memo: dict[tuple[str, str, bool, frozenset[str]], float] = field(default_factory=dict)
    variations_memo: dict[str, float] = field(default_factory=dict)

    def rank(self, word: str) -> float:
        """The lowest rank of ``word`` in any dictionary (inf: in none)."""
        return min(self.words.ranks.get(word, math.inf), self.inputs.ranks.get(word, math.inf))

    def may_start(self, text: str, projected: bool) -> bool:
        """Whether a word of more than len(text) characters may start with ``text`` (3 or 4)."""
        if projected:
            return text in self.words.projected_prefixes or text in self.inputs.projected_prefixes
        return text in self.words.prefixes or text in self.inputs.prefixes

    def l33t_guesses(
        self, token: str, original: str, projected: str, exact: bool, may_stay: frozenset[str]
    ) -> float:
        """The fewest guesses zxcvbn gives ``original`` as a l33t spelling of a word.

        Uppercase variations aside; inf when it is no l33t spelling of a word. ``token`` is
        ``original`` lowercased (as zxcvbn slices it). With ``exact``, the l33t
        variations are zxcvbn's own for the substitution found; without (lower() changed the
        text's length, so zxcvbn's token may miss the substituted character), 1.
        """
        from zxcvbn.scoring import l33t_variations

        best = math.inf
        for words in (self.words, self.inputs):
            for word in words.projecting_onto(projected):
                rank = words.ranks[word]
                if rank * (2 if exact else 1) >= best:
                    break  # buckets are sorted by rank; variations are at least 2
                if len(word) != len(token):
                    continue
                sub = _l33t_substitution(token, word, may_stay)
                if sub is not None:
                    match = {"l33t": True, "sub": sub, "token": original}
                    best = min(best, rank * (float(l33t_variations(match)) if exact else 1.0))
        return best


def lower_bound(password: str, inputs: Sequence[str], cap: float) -> float:
    """A lower bound of zxcvbn's guesses for ``password``, or ``cap`` once it is at least that.

    ``min(zxcvbn_guesses, cap) >= lower_bound(...)``, and when the answer is below ``cap`` it
    is the exact minimum of zxcvbn's guess formula over every sequence of at most three
    matches from a superset of zxcvbn's matches (see the module docstring).
    """
    return _bound(password, cap, _search(inputs))


def _search(inputs: Sequence[str]) -> _Search:
    """The search state of one bound computation with the user inputs ``inputs``."""
    from zxcvbn.matching import build_ranked_dict

    user = build_ranked_dict([text.lower() for text in inputs])  # as zxcvbn() builds it
    longest = max([_MAX_WORD, *map(len, user)])
    return _Search(_dictionaries(), _Dictionaries.of((user,)), longest, {})


def _bound(password: str, cap: float, search: _Search) -> float:
    key = (password, cap)
    found = search.memo.get(key)
    if found is None:
        found = _cheapest(password, _pieces(password, cap, search), cap)[0]
        search.memo[key] = found
    return found


# What kind of match a piece of the bound is, for the feedback: ("bruteforce",),
# ("dictionary", word or projected word, reversed, l33t), ("spatial", turns), ("sequence",),
# ("regex", name), ("date",) or ("repeat", base length).
_Kind = tuple[object, ...]
_BRUTEFORCE: Final[_Kind] = ("bruteforce",)
# A piece of the cheapest cover: (start, end, guesses, kind).
_Piece = tuple[int, int, float, _Kind]


def _cheapest(
    password: str, pieces: list[list[tuple[int, float, _Kind]]], cap: float
) -> tuple[float, tuple[_Piece, ...]]:
    """The least ``l! * prod + 10000 ** (l - 1)`` over tilings by at most three pieces.

    And the tiling that reaches it (``()`` when none is below ``cap``).
    """
    n = len(password)
    best, best_cover = cap, cast("tuple[_Piece, ...]", ())
    # where the next piece starts -> least product of the pieces before, and those pieces
    layer: dict[int, tuple[float, tuple[_Piece, ...]]] = {0: (1.0, ())}
    length = 1
    while layer and _D ** (length - 1) < cap:
        factor, extra = math.factorial(length), _D ** (length - 1)
        following: dict[int, tuple[float, tuple[_Piece, ...]]] = {}
        for start, (product, cover) in layer.items():
            for end, guesses, kind in pieces[start]:
                total = product * guesses
                value = factor * total + extra
                if value >= best:
                    continue  # longer sequences from here only cost more
                if end == n:
                    best, best_cover = value, (*cover, (start, end, guesses, kind))
                elif total < following.get(end, (math.inf,))[0]:
                    following[end] = (total, (*cover, (start, end, guesses, kind)))
        layer = following
        length += 1
    return best, best_cover


def _pieces(password: str, cap: float, search: _Search) -> list[list[tuple[int, float, _Kind]]]:
    """Every match (of the superset) worth fewer than ``cap`` guesses, by start.

    Each as ``(end, guesses, kind)``.
    """
    from zxcvbn import matching, scoring

    n = len(password)
    pieces: list[list[tuple[int, float, _Kind]]] = [[] for _ in range(n + 1)]

    def add(i: int, j: int, guesses: float, kind: _Kind) -> None:
        """Record the match [i, j] (inclusive), at least zxcvbn's minimum for its length."""
        if j - i + 1 < n:
            guesses = max(guesses, 10.0 if i == j else 50.0)
        if guesses < cap:
            pieces[i].append((j + 1, guesses, kind))

    def estimated(match: dict[str, Any]) -> float:
        return float(scoring.estimate_guesses(match, password))

    def variations(i: int, j: int) -> float:
        token = password[i : j + 1]
        found = search.variations_memo.get(token)
        if found is None:
            found = float(scoring.uppercase_variations({"token": token}))
            search.variations_memo[token] = found
        return found

    # Brute force: 10 ** length (at least 11 or 51), as zxcvbn's own.
    longest = min(_BRUTEFORCE_MAX, max(1, math.ceil(math.log10(cap))))
    for i in range(n):
        for length in range(1, min(longest, n - i) + 1):
            add(i, i + length - 1, max(10.0**length, 11.0 if length == 1 else 51.0), _BRUTEFORCE)

    # Dictionary words, forwards (also l33t spellings) and reversed. zxcvbn slices its
    # lowercased text with the indices of the original (they differ only where lower()
    # changes a length: "İ"), so this does the same.
    letters_of, projection = _l33t_classes()
    may_stay = _may_stay(password)
    ranks, buckets = search.words.ranks, search.words.buckets
    user_ranks, user_buckets = search.inputs.ranks, search.inputs.buckets
    for text, backwards in ((password, False), (password[::-1], True)):
        low = text.lower()
        exact = len(low) == n  # else zxcvbn's l33t tokens are shifted (see l33t_guesses)
        projected = low.translate(projection)
        l33t_at = [0]
        for char in low[:n]:
            l33t_at.append(l33t_at[-1] + (char in letters_of))
        for i in range(n):
            plain, l33t = True, not backwards
            for length in range(1, min(search.longest, n - i) + 1):
                j = i + length - 1
                if length in (3, 4):
                    plain = plain and search.may_start(low[i : j + 1], projected=False)
                    l33t = l33t and search.may_start(projected[i : j + 1], projected=True)
                if not (plain or l33t):
                    break
                word = low[i : j + 1]
                if plain and (word in ranks or word in user_ranks):
                    a, b = (n - 1 - j, n - 1 - i) if backwards else (i, j)
                    rank = search.rank(word)
                    guesses = rank * variations(a, b) * (2.0 if backwards else 1.0)
                    add(a, b, guesses, ("dictionary", word, backwards, False))
                if not (l33t and length > 1 and l33t_at[j + 1] > l33t_at[i]):
                    continue
                key = projected[i : j + 1]
                if key in ranks or key in buckets or key in user_ranks or key in user_buckets:
                    original = password[i : j + 1]
                    asked = (word, original, exact, may_stay)
                    guesses = search.l33t_memo.get(asked, -1.0)
                    if guesses < 0:
                        guesses = search.l33t_guesses(word, original, key, exact, may_stay)
                        search.l33t_memo[asked] = guesses
                    if guesses < math.inf:
                        add(i, j, guesses * variations(i, j), ("dictionary", key, False, True))

    for match in matching.spatial_match(password):
        add(match["i"], match["j"], _spatial_guesses(match, cap), ("spatial", match["turns"]))
    for match in matching.sequence_match(password):
        add(match["i"], match["j"], estimated(match), ("sequence",))
    for match in matching.regex_match(password):
        add(match["i"], match["j"], estimated(match), ("regex", match["regex_name"]))

    if cap > _DATE_MIN_GUESSES:
        for (i, j), guesses in _dates(password).items():
            add(i, j, guesses, ("date",))

    for i, j, base, count in _repeats(password):
        base_guesses = _bound(base, cap / count, search)
        add(i, j, base_guesses * count, ("repeat", len(base)))
    return pieces


def _spatial_guesses(match: dict[str, Any], cap: float) -> float:
    """The ``spatial_guesses`` of zxcvbn, computed only as far as ``cap``.

    Its sum has a term per length and turn count, each a binomial coefficient: on a long walk
    with a turn at every key ("rtrtrt...") that is millions of steps, though the first few
    terms already pass every threshold. The terms are positive and the shift factor at least
    1, so a partial sum at or above ``cap`` proves the whole is; below ``cap`` the result is
    zxcvbn's, term by term.
    """
    from zxcvbn import scoring

    if match["graph"] in ("qwerty", "dvorak"):
        starts, degree = scoring.KEYBOARD_STARTING_POSITIONS, scoring.KEYBOARD_AVERAGE_DEGREE
    else:
        starts, degree = scoring.KEYPAD_STARTING_POSITIONS, scoring.KEYPAD_AVERAGE_DEGREE
    guesses: float = 0
    length, turns = len(match["token"]), match["turns"]
    for i in range(2, length + 1):
        for j in range(1, min(turns, i - 1) + 1):
            guesses += scoring.nCk(i - 1, j - 1) * starts * pow(degree, j)
            if guesses >= cap:
                return cap
    shifted = match["shifted_count"]
    if shifted:
        unshifted = length - shifted
        if unshifted == 0:
            guesses *= 2
        else:
            variations: float = 0
            for i in range(1, min(shifted, unshifted) + 1):
                variations += scoring.nCk(shifted + unshifted, i)
                if guesses * variations >= cap:
                    return cap
            guesses *= variations
    return guesses


def _dates(password: str) -> dict[tuple[int, int], float]:
    """The date candidates of zxcvbn, each span at its fewest guesses: (i, j) -> guesses.

    zxcvbn then drops the dates inside a longer one; keeping them only adds matches.
    """
    n = len(password)
    out: dict[tuple[int, int], float] = {}
    known: dict[str, float] = {}  # per call: no part of a password outlives the check
    # zxcvbn's own loops (a date has 4 to 8 digits, or 6 to 10 characters with separators)
    for i in range(n - 3):
        for j in range(i + 3, min(i + 10, n)):
            token = password[i : j + 1]
            guesses = known.get(token)
            if guesses is None:
                guesses = known[token] = _date_guesses(token)
            if guesses < math.inf:
                out[i, j] = guesses
    return out


def _date_guesses(token: str) -> float:
    """The fewest guesses zxcvbn gives ``token`` as a date (inf: it is none).

    zxcvbn's own patterns and splits, quirks included ("$" also matches before a final
    newline; an int() it cannot parse makes zxcvbn itself raise, so it is skipped here).
    """
    from zxcvbn.matching import DATE_SPLITS, map_ints_to_dmy
    from zxcvbn.scoring import date_guesses

    found: list[tuple[list[int], str]] = []
    if len(token) <= 8 and _DATE_PLAIN.match(token):
        for k, m in DATE_SPLITS[len(token)]:
            try:
                found.append(([int(token[0:k]), int(token[k:m]), int(token[m:])], ""))
            except ValueError:
                continue
    if len(token) >= 6:
        separated = _DATE_SEPARATED.match(token)
        if separated:
            try:
                ints = [int(separated.group(g)) for g in (1, 3, 4)]
                found.append((ints, separated.group(2)))
            except ValueError:
                pass
    best = math.inf
    for ints, separator in found:
        dmy = map_ints_to_dmy(ints)
        if dmy:
            best = min(best, float(date_guesses({"year": dmy["year"], "separator": separator})))
    return best


def _repeats(password: str) -> list[tuple[int, int, str, float]]:
    """The repeat matches of zxcvbn, found as it finds them: (i, j, base token, count)."""
    out: list[tuple[int, int, str, float]] = []
    last = 0
    while last < len(password):
        greedy = _GREEDY.search(password, pos=last)
        lazy = _LAZY.search(password, pos=last)
        if not greedy or not lazy:
            break
        if len(greedy.group(0)) > len(lazy.group(0)):
            match = greedy
            anchored = _LAZY_ANCHORED.search(match.group(0))
            assert anchored is not None  # a greedy match is a repetition; not a security check
            base = anchored.group(1)
        else:
            match = lazy
            base = match.group(1)
        i, j = match.span()[0], match.span()[1] - 1
        out.append((i, j, base, len(match.group(0)) / len(base)))
        last = j + 1
    return out


# -- feedback ------------------------------------------------------------------------------

_NAME_DICTIONARIES: Final = frozenset({"surnames", "male_names", "female_names"})
_WORD_DICTIONARIES: Final = frozenset({"english_wikipedia", "us_tv_and_film"})
_START_UPPER: Final = re.compile(r"^[A-Z][^A-Z]+$")  # zxcvbn's scoring.START_UPPER
_ALL_UPPER: Final = re.compile(r"^[^a-z]+$")  # zxcvbn's scoring.ALL_UPPER


def feedback_of(matches: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, dict[str, str]], ...]:
    """The feedback sub-codes of a zxcvbn match sequence, longest match first, ``add_word`` last.

    zxcvbn's own feedback (``zxcvbn.feedback``) speaks of the longest match only, in English;
    this speaks of every match that is not brute force, with zxcvbn's rules for each (a
    common password, a word or a name alone, a keyboard row, a repeat, a sequence, a recent
    year, a date; capitals, reversal and l33t substitutions of a word), as stable codes with
    categorical params. Each ``(code, params)`` pair appears once.
    """
    sole = len(matches) == 1
    out: list[tuple[str, dict[str, str]]] = []
    for match in sorted(matches, key=lambda m: -len(m["token"])):
        out.extend(_match_feedback(match, sole))
    out.append(("add_word", {}))
    unique: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[str, dict[str, str]]] = {}
    for code, params in out:
        unique.setdefault((code, tuple(sorted(params.items()))), (code, params))
    return tuple(unique.values())


def _match_feedback(match: Mapping[str, Any], sole: bool) -> list[tuple[str, dict[str, str]]]:
    """The sub-codes of one match, following ``zxcvbn.feedback.get_match_feedback``."""
    pattern = match["pattern"]
    if pattern == "spatial":
        return [("keyboard_pattern", {"kind": "straight_row" if match["turns"] == 1 else "short"})]
    if pattern == "repeat":
        single = len(match["base_token"]) == 1
        return [("repeats", {"kind": "character" if single else "group"})]
    if pattern == "sequence":
        return [("sequence", {})]
    if pattern == "regex":
        return [("recent_year", {})] if match.get("regex_name") == "recent_year" else []
    if pattern == "date":
        return [("dates", {})]
    if pattern != "dictionary":
        return []  # brute force
    out: list[tuple[str, dict[str, str]]] = []
    name = match["dictionary_name"]
    l33t, backwards = bool(match.get("l33t")), bool(match.get("reversed"))
    if name == "passwords":
        if sole and not l33t and not backwards:
            rank = match["rank"]
            kind = "top10" if rank <= 10 else "top100" if rank <= 100 else "very_common"
            out.append(("common_password", {"kind": kind}))
        elif match["guesses_log10"] <= 4:
            out.append(("common_password", {"kind": "similar"}))
    elif name in _WORD_DICTIONARIES:
        if sole:
            out.append(("common_word", {}))
    elif name in _NAME_DICTIONARIES:
        out.append(("names", {"kind": "alone" if sole else "common"}))
    elif name == "user_inputs":
        out.append(("personal_data", {}))
    token = match["token"]
    if _START_UPPER.search(token):
        out.append(("capitalization", {}))
    elif _ALL_UPPER.search(token) and token.lower() != token:
        out.append(("all_uppercase", {}))
    if backwards and len(token) >= 4:
        out.append(("reversed_word", {}))
    if l33t:
        out.append(("substitutions", {}))
    return out


def _long_match(password: str, kind: str) -> dict[str, Any]:
    """The match a long pattern found by the linear scans stands for (its details unknown)."""
    if kind == "spatial":
        return {"pattern": "spatial", "token": password, "turns": 2}
    if kind == "sequence":
        return {"pattern": "sequence", "token": password}
    return {"pattern": "repeat", "token": password, "base_token": password[:2]}


def _cover_matches(password: str, cover: Sequence[_Piece], search: _Search) -> list[dict[str, Any]]:
    """The pieces of the bound's cheapest cover as zxcvbn-style matches, for the feedback."""
    matches: list[dict[str, Any]] = []
    for start, end, guesses, kind in cover:
        token = password[start:end]
        match: dict[str, Any] = {"pattern": kind[0], "token": token}
        if kind[0] == "spatial":
            match["turns"] = kind[1]
        elif kind[0] == "regex":
            match["regex_name"] = kind[1]
        elif kind[0] == "repeat":
            length = kind[1]
            assert isinstance(length, int)  # narrowed for mypy; not a security check
            match["base_token"] = token[:length]
        elif kind[0] == "dictionary":
            word, backwards, l33t = kind[1], kind[2], kind[3]
            assert isinstance(word, str)  # narrowed for mypy; not a security check
            name, rank = _dictionary_of(word, bool(l33t), search)
            match.update(
                dictionary_name=name,
                rank=rank,
                reversed=backwards,
                l33t=l33t,
                guesses_log10=math.log10(max(guesses, 1.0)),
            )
        matches.append(match)
    return matches


def _dictionary_of(word: str, l33t: bool, search: _Search) -> tuple[str, float]:
    """The zxcvbn dictionary that ranks ``word`` lowest (a projected word with ``l33t``)."""
    from zxcvbn.matching import RANKED_DICTIONARIES

    candidates = [word]
    if l33t:
        candidates = [*search.words.projecting_onto(word), *search.inputs.projecting_onto(word)]
    best: tuple[float, str] = (math.inf, "passwords")
    for candidate in candidates:
        user_rank = search.inputs.ranks.get(candidate)
        if user_rank is not None:
            best = min(best, (float(user_rank), "user_inputs"))
        for name, ranked in RANKED_DICTIONARIES.items():
            rank = ranked.get(candidate) if name != "user_inputs" else None
            if rank is not None:
                best = min(best, (float(rank), name))
    return best[1], best[0]
