"""Tests of class counts (``require = {digit = 2}``) and of blocklists used together."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaspi_identity import PasswordPolicy, PolicyConfigError, Violation
from kaspi_identity.testing import violating_passwords

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: One character of each class, for building passwords with exact counts.
CHARS = {
    "upper": "ABCDEFGHJK",
    "lower": "abcdefghjk",
    "digit": "0123456789",
    "special": "!@#$%^&*?-",
}
SPECIAL = "!@#$%^&*?-"


def bare(**config: Any) -> PasswordPolicy:
    """A policy with only the given rules (no blocklist, no personal-data rule)."""
    return PasswordPolicy(**{"blocklist": False, "forbid_personal_info": False, **config})


def config_errors(**config: Any) -> dict[str, str]:
    """The ``errors`` of the PolicyConfigError that ``from_mapping(config)`` raises."""
    with pytest.raises(PolicyConfigError) as info:
        PasswordPolicy.from_mapping(config)
    return info.value.errors


def built(counts: dict[str, int], *, less: str | None = None) -> str:
    """A password with exactly ``counts`` characters per class (one fewer of ``less``)."""
    parts = []
    for name, count in counts.items():
        n = count - 1 if name == less else count
        parts.append("".join(CHARS[name][i % 10] for i in range(n)))
    return "".join(parts)


class TestCountsConfig:
    """``require`` as a mapping: canonical, validated, round-tripped."""

    def test_mapping_is_canonical(self) -> None:
        """The mapping is kept in canonical class order, each class with its count."""
        policy = bare(require={"special": 1, "digit": 2, "upper": 1})
        assert {"upper": 1, "digit": 2, "special": 1} == policy.require
        assert ["upper", "digit", "special"] == list(policy.require)

    def test_list_means_one_each(self) -> None:
        """The list form stays: each listed class once; equal to the mapping of ones."""
        assert bare(require=["upper", "digit"]) == bare(require={"digit": 1, "upper": 1})

    def test_policy_stays_hashable(self) -> None:
        """A policy with counts can be hashed, like every frozen policy."""
        policy = bare(require={"digit": 2})
        assert hash(policy) == hash(bare(require={"digit": 2}))

    @pytest.mark.parametrize(
        "require", [["upper", "digit"], {"digit": 2, "special": 3, "upper": 1}, {"lower": 1}, []]
    )
    def test_to_mapping_round_trips(self, require: Any) -> None:
        """``from_mapping(to_mapping())`` gives an equal policy, for both forms."""
        policy = bare(require=require)
        assert policy == PasswordPolicy.from_mapping(policy.to_mapping())

    def test_to_mapping_forms(self) -> None:
        """All ones come out as the list; any larger count as the mapping."""
        assert ["upper", "digit"] == bare(require={"digit": 1, "upper": 1}).to_mapping()["require"]
        assert {"digit": 2, "upper": 1} == bare(require={"digit": 2, "upper": 1}).to_mapping()[
            "require"
        ]

    def test_to_mapping_is_a_copy(self) -> None:
        """Changing the returned mapping does not change the policy."""
        policy = bare(require={"digit": 2})
        policy.to_mapping()["require"]["digit"] = 5
        assert {"digit": 2} == policy.require

    def test_toml(self, tmp_path: Path) -> None:
        """A TOML inline table of counts loads."""
        path = tmp_path / "policy.toml"
        path.write_text(
            "[password]\nblocklist = false\nrequire = {digit = 2, special = 1, upper = 1}\n",
            encoding="utf-8",
        )
        policy = PasswordPolicy.from_toml(path)
        assert {"upper": 1, "digit": 2, "special": 1} == policy.require

    def test_replace_keeps_counts(self) -> None:
        """``dataclasses.replace`` passes the canonical mapping back through validation."""
        policy = dataclasses.replace(bare(require={"digit": 3}), min_length=10)
        assert {"digit": 3} == policy.require

    @pytest.mark.parametrize(
        ("require", "fragment"),
        [
            ({"cyrillic": 1}, "'cyrillic'"),
            ({"Digit": 2}, "'Digit'"),
            ({"digit": 0}, "from 1 to 128"),
            ({"digit": -1}, "from 1 to 128"),
            ({"digit": 129}, "from 1 to 128"),
            ({"digit": True}, "bool"),
            ({"digit": "2"}, "str"),
            ({"digit": 2.0}, "float"),
            ({"digit": None}, "NoneType"),
        ],
    )
    def test_bad_counts(self, require: dict[str, Any], fragment: str) -> None:
        """An unknown class, a count out of 1..max_length, a non-int or a bool names ``require``."""
        errors = config_errors(require=require)
        assert ["require"] == list(errors)
        assert fragment in errors["require"]

    def test_count_bound_follows_max_length(self) -> None:
        """The bound is max_length; with no max_length, the hard cap of 4096."""
        assert "from 1 to 10" in config_errors(require={"digit": 11}, max_length=10)["require"]
        assert bare(require={"digit": 10}, min_length=1, max_length=10).check("0123456789")
        assert bare(require={"digit": 4096}, max_length=None).require == {"digit": 4096}

    def test_counts_must_fit_max_length(self) -> None:
        """Counts adding up past max_length make the policy unsatisfiable."""
        errors = config_errors(require={"digit": 5, "upper": 5}, max_length=9, min_length=1)
        assert ["max_length"] == list(errors)
        assert "10" in errors["max_length"]

    def test_counts_and_min_classes_must_fit(self) -> None:
        """min_classes adds one character per extra class to the counts."""
        errors = config_errors(require={"digit": 3}, min_classes=3, max_length=4, min_length=1)
        assert ["max_length"] == list(errors)
        assert bare(require={"digit": 3}, min_classes=3, max_length=5, min_length=1)

    def test_count_outside_alphabet(self) -> None:
        """A counted class the alphabet cannot give is refused, naming ``require``."""
        assert ["require"] == list(config_errors(require={"special": 2}, alphabet="latin_alnum"))

    def test_small_special_set_with_max_repeat(self) -> None:
        """Two specials from a one-character set need not stand side by side."""
        policy = bare(require={"special": 2}, special_characters="!", max_repeat=1)
        assert policy.check("a!b!cdef")

    def test_presets_unchanged(self) -> None:
        """The kz-procurement preset still asks one of each class (the list form)."""
        policy = PasswordPolicy.preset("kz-procurement")
        assert {"upper": 1, "lower": 1, "digit": 1, "special": 1} == policy.require
        assert ["upper", "lower", "digit", "special"] == policy.to_mapping()["require"]


class TestCountsCheck:
    """``missing_<class>`` with its ``count``: boundaries and messages."""

    @pytest.mark.parametrize("name", ["upper", "lower", "digit", "special"])
    @pytest.mark.parametrize("count", [1, 2, 3, 7])
    def test_boundary(self, name: str, count: int) -> None:
        """Exactly ``count`` passes; one fewer fails with the class's code and the count."""
        policy = bare(require={name: count}, min_length=1, special_characters=SPECIAL)
        other = "x" if name != "lower" else "X"
        assert policy.check(other + built({name: count}))
        result = policy.check(other + built({name: count}, less=name))
        assert (f"missing_{name}",) == result.codes
        assert count == result.violations[0].params["count"]

    def test_params(self) -> None:
        """Every class violation carries ``count``; special also its examples."""
        policy = bare(require={"digit": 2, "special": 3}, special_characters="!?")
        assert (
            Violation("missing_digit", {"count": 2}),
            Violation("missing_special", {"count": 3, "examples": "! ?"}),
        ) == policy.check("abcdefgh1!").violations

    def test_list_form_params(self) -> None:
        """The list form reports a count of one."""
        assert (Violation("missing_digit", {"count": 1}),) == bare(require=["digit"]).check(
            "abcdefgh"
        ).violations

    @pytest.mark.parametrize(
        ("lang", "count", "expected"),
        [
            ("en", 2, "Add at least 2 digits (0–9)."),
            ("en", 1, "Add a digit (0–9)."),
            ("ru", 2, "Добавьте не менее 2 цифр (0–9)."),
            ("ru", 21, "Добавьте не менее 21 цифры (0–9)."),
            ("ru", 5, "Добавьте не менее 5 цифр (0–9)."),
            ("kk", 2, "Кемінде 2 цифр (0–9) қосыңыз."),
        ],
    )
    def test_messages(self, lang: str, count: int, expected: str) -> None:
        """Plural forms for the count; a count of one keeps the classic message."""
        assert expected == Violation("missing_digit", {"count": count}).message(lang)

    def test_violation_without_count(self) -> None:
        """A host's ``Violation("missing_digit")`` (no count) still renders."""
        assert "Add a digit (0–9)." == Violation("missing_digit").message("en")

    @pytest.mark.parametrize(
        ("lang", "expected"),
        [
            (
                "en",
                [
                    "An uppercase Latin letter (A–Z)",
                    "At least 2 digits (0–9)",
                    "At least 3 special characters (for example ! ?)",
                ],
            ),
            (
                "ru",
                [
                    "Заглавная латинская буква (A–Z)",
                    "Не менее 2 цифр (0–9)",
                    "Не менее 3 специальных символов (например, ! ?)",
                ],
            ),
            (
                "kk",
                [
                    "Бас латын әрпі (A–Z)",
                    "Кемінде 2 цифр (0–9)",
                    "Кемінде 3 арнайы таңба (мысалы, ! ?)",
                ],
            ),
        ],
    )
    def test_describe(self, lang: str, expected: list[str]) -> None:
        """Requirement lines say the count, in each language."""
        policy = bare(
            require={"digit": 2, "special": 3, "upper": 1}, special_characters="!?", max_length=None
        )
        assert expected == policy.describe(lang)[1:]

    def test_ru_plural_lines(self) -> None:
        """Russian requirement lines follow one / few / many."""
        lines = [bare(require={"upper": n}).describe("ru")[1] for n in (2, 5, 21)]
        assert [
            "Не менее 2 заглавных латинских букв (A–Z)",
            "Не менее 5 заглавных латинских букв (A–Z)",
            "Не менее 21 заглавной латинской буквы (A–Z)",
        ] == lines


COUNT_MAPS = st.dictionaries(
    st.sampled_from(["upper", "lower", "digit", "special"]), st.integers(1, 6), min_size=1
)


class TestCountsProperties:
    """For random count maps: exact counts pass, count − 1 of a class fails with its code."""

    @FAST
    @given(counts=COUNT_MAPS, data=st.data())
    def test_exact_and_one_fewer(self, counts: dict[str, int], data: st.DataObject) -> None:
        """Built with exactly the counts → accepted; one class short → that code and count."""
        policy = bare(require=counts, min_length=1, special_characters=SPECIAL)
        assert policy.check(built(counts))
        name = data.draw(st.sampled_from(sorted(counts)))
        result = policy.check("~" + built(counts, less=name))  # "~" keeps it non-empty
        assert (f"missing_{name}",) == result.codes
        assert counts[name] == result.violations[0].params["count"]

    @FAST
    @given(counts=COUNT_MAPS, data=st.data())
    def test_strategy_violates_a_count(self, counts: dict[str, int], data: st.DataObject) -> None:
        """``violating_passwords`` gives passwords one class short, with that code and count."""
        policy = bare(require=counts, special_characters=SPECIAL)
        name = data.draw(st.sampled_from(sorted(counts)))
        password = data.draw(violating_passwords(policy, f"missing_{name}"))
        violation = next(v for v in policy.check(password).violations if v.code.endswith(name))
        assert counts[name] == violation.params["count"]

    def test_strategy_reaches_count_minus_one(self) -> None:
        """The nearest miss is found: exactly count − 1 digits."""
        from hypothesis import find

        policy = bare(require={"digit": 3})
        found = find(
            violating_passwords(policy, "missing_digit"),
            lambda p: sum(c.isdigit() for c in p) == 2,
            settings=settings(max_examples=500, deadline=None),
        )
        assert 2 == sum(c.isdigit() for c in found)


class TestBlocklistsTogether:
    """``blocklist = {builtin = true, files = [...]}``: the built-in list and one's own."""

    @pytest.fixture
    def own(self, tmp_path: Path) -> Path:
        path = tmp_path / "ours.txt"
        path.write_text("Astana2024!x\nkaspi-portal\n", encoding="utf-8")
        return path

    def test_both_sources_refuse(self, own: Path) -> None:
        """A word of the built-in list and a word of the file are both ``too_common``."""
        policy = PasswordPolicy(blocklist={"builtin": True, "files": [own]})
        assert ("too_common",) == policy.check("password123").codes
        assert ("too_common",) == policy.check("astana2024!X").codes
        assert ("too_common",) == policy.check("kaspi-portal").codes
        assert policy.check("a quiet green lamp")

    def test_file_alone_is_unchanged(self, own: Path) -> None:
        """A path alone still means that file only."""
        policy = PasswordPolicy(blocklist=str(own))
        assert policy.check("password123")
        assert ("too_common",) == policy.check("kaspi-portal").codes

    def test_builtin_false(self, own: Path) -> None:
        """``builtin = false`` with files uses the files only."""
        policy = PasswordPolicy(blocklist={"builtin": False, "files": [own]})
        assert policy.check("password123")
        assert ("too_common",) == policy.check("kaspi-portal").codes

    def test_several_files(self, own: Path, tmp_path: Path) -> None:
        """Every file of ``files`` counts."""
        second = tmp_path / "more.txt"
        second.write_text("almaty-secret\n", encoding="utf-8")
        policy = PasswordPolicy(blocklist={"files": [own, second]})
        assert ("too_common",) == policy.check("kaspi-portal").codes
        assert ("too_common",) == policy.check("almaty-secret").codes
        assert ("too_common",) == policy.check("password123").codes  # builtin defaults to true

    def test_empty_table_is_off(self) -> None:
        """A table naming no list switches the rule off, as ``false`` does."""
        assert PasswordPolicy(blocklist={"builtin": False, "files": []}).blocklist is False

    def test_accepted_values_unchanged(self, own: Path) -> None:
        """``true``, ``false`` and a path keep their canonical values."""
        assert PasswordPolicy(blocklist=True).blocklist is True
        assert PasswordPolicy(blocklist=False).blocklist is False
        assert str(own) == PasswordPolicy(blocklist=own).blocklist

    def test_round_trip(self, own: Path) -> None:
        """``to_mapping`` writes the table with a list of files; it loads back equal."""
        policy = PasswordPolicy(blocklist={"builtin": True, "files": [own, own]})
        mapping = policy.to_mapping()
        assert {"builtin": True, "files": [str(own)]} == mapping["blocklist"]
        assert policy == PasswordPolicy.from_mapping(mapping)
        assert hash(policy) == hash(PasswordPolicy.from_mapping(mapping))

    def test_toml_relative_files(self, own: Path, tmp_path: Path) -> None:
        """Relative ``files`` are resolved against the TOML file's directory."""
        path = tmp_path / "policy.toml"
        path.write_text(
            '[password]\nblocklist = {builtin = true, files = ["ours.txt"]}\n', encoding="utf-8"
        )
        policy = PasswordPolicy.from_toml(path)
        assert ("too_common",) == policy.check("kaspi-portal").codes
        assert ("too_common",) == policy.check("password123").codes

    def test_strategy_uses_both(self, own: Path) -> None:
        """``violating_passwords(..., "too_common")`` knows the words of both sources."""
        from hypothesis import find

        from kaspi_identity.testing._strategies import _policy_blocklist

        policy = PasswordPolicy(blocklist={"builtin": True, "files": [own]})
        words = _policy_blocklist(policy)
        assert {"kaspi-portal", "password123"} <= words
        ours = PasswordPolicy(blocklist={"builtin": False, "files": [own]})
        found = find(
            violating_passwords(ours, "too_common"),
            lambda p: p.casefold() == "kaspi-portal",
            settings=settings(max_examples=500, deadline=None),
        )
        assert "kaspi-portal" == found.casefold()

    @pytest.mark.parametrize(
        ("value", "fragment"),
        [
            ({"builtin": "yes"}, "builtin must be true or false"),
            ({"files": "ours.txt"}, "files must be a list"),
            ({"files": [3]}, "each entry must be a path"),
            ({"files": ["missing.txt"]}, "file not found"),
            ({"builtin": True, "file": []}, "unknown key 'file'"),
            (3, "must be true, false, the path of a file or a table"),
        ],
    )
    def test_bad_values(self, value: object, fragment: str) -> None:
        """Each bad shape names ``blocklist`` and says what is wrong."""
        errors = config_errors(blocklist=value)
        assert ["blocklist"] == list(errors)
        assert fragment in errors["blocklist"]
