"""Tests of building a PasswordPolicy: keywords, mappings, TOML, validation, round trips."""

from __future__ import annotations

import dataclasses
import os
import string
from pathlib import Path
from typing import Any

import pytest

from kaspi_identity import (
    CONFIG_KEYS,
    PRESET_NAMES,
    KaspiIdentityError,
    PasswordPolicy,
    PolicyConfigError,
)

ALL_CLASSES = ["upper", "lower", "digit", "special"]


def config_errors(**config: Any) -> dict[str, str]:
    """The ``errors`` of the PolicyConfigError that ``from_mapping(config)`` raises."""
    with pytest.raises(PolicyConfigError) as info:
        PasswordPolicy.from_mapping(config)
    return info.value.errors


def write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` as UTF-8 and return the path."""
    path.write_text(text, encoding="utf-8")
    return path


class TestKeywordConstruction:
    """``PasswordPolicy(**keywords)``: validated, canonical, frozen."""

    def test_keywords_are_kept(self) -> None:
        """Every keyword lands on its attribute."""
        policy = PasswordPolicy(
            min_length=10,
            max_length=40,
            require=["digit", "upper"],
            min_classes=3,
            special_characters="!?",
            alphabet="ascii",
            max_repeat=2,
            forbid_personal_info=False,
            min_strength=2,
            blocklist=False,
            history=5,
            history_similar=True,
        )
        assert 10 == policy.min_length
        assert 40 == policy.max_length
        assert {"upper": 1, "digit": 1} == policy.require  # canonical order, a mapping
        assert ["upper", "digit"] == list(policy.require)
        assert 3 == policy.min_classes
        assert "!?" == policy.special_characters
        assert "ascii" == policy.alphabet
        assert 2 == policy.max_repeat
        assert policy.forbid_personal_info is False
        assert 2 == policy.min_strength
        assert policy.blocklist is False
        assert 5 == policy.history
        assert policy.history_similar is True

    def test_frozen(self) -> None:
        """A policy cannot be changed in place."""
        policy = PasswordPolicy()
        with pytest.raises(dataclasses.FrozenInstanceError):
            policy.min_length = 4  # type: ignore[misc]

    def test_equal_configs_are_equal(self) -> None:
        """Two policies built from the same settings compare equal."""
        assert PasswordPolicy(require=["upper", "digit"]) == PasswordPolicy(
            require=("digit", "upper")
        )

    def test_unknown_keyword(self) -> None:
        """An unknown keyword is a TypeError, as for any Python call."""
        with pytest.raises(TypeError):
            PasswordPolicy(min_lenght=8)  # type: ignore[call-arg]

    def test_duplicate_characters_are_collapsed(self) -> None:
        """Special characters and an explicit alphabet keep each character once, in order."""
        policy = PasswordPolicy(special_characters="!!??!", alphabet="abcabc123!")
        assert "!?" == policy.special_characters
        assert "abc123!" == policy.alphabet

    def test_blocklist_pathlike(self, tmp_path: Path) -> None:
        """A ``PathLike`` blocklist is stored as its string path."""
        path = write(tmp_path / "b.txt", "abc\n")
        assert str(path) == PasswordPolicy(blocklist=path).blocklist


class TestFromMapping:
    """``PasswordPolicy.from_mapping``."""

    def test_empty_mapping_is_the_default(self) -> None:
        """No keys: the default policy."""
        assert PasswordPolicy() == PasswordPolicy.from_mapping({})

    def test_keys(self) -> None:
        """Given keys are used, missing keys keep their defaults."""
        policy = PasswordPolicy.from_mapping({"min_length": 12, "require": ["digit"]})
        assert PasswordPolicy(min_length=12, require=["digit"]) == policy

    def test_not_a_mapping(self) -> None:
        """A list or a string is a TypeError."""
        for value in ([("min_length", 8)], "min_length=8", None):
            with pytest.raises(TypeError, match="mapping"):
                PasswordPolicy.from_mapping(value)  # type: ignore[arg-type]

    def test_relative_blocklist_with_base_dir(self, tmp_path: Path) -> None:
        """A relative blocklist path is resolved against ``base_dir``."""
        write(tmp_path / "words.txt", "kaspi2024\n")
        policy = PasswordPolicy.from_mapping({"blocklist": "words.txt"}, base_dir=tmp_path)
        assert str(tmp_path / "words.txt") == policy.blocklist
        assert ("too_common",) == policy.check("Kaspi2024").codes

    def test_relative_blocklist_against_cwd(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without ``base_dir`` a relative path is relative to the current directory."""
        write(tmp_path / "words.txt", "kaspi2024\n")
        monkeypatch.chdir(tmp_path)
        policy = PasswordPolicy.from_mapping({"blocklist": "words.txt"})
        assert ("too_common",) == policy.check("kaspi2024").codes

    def test_missing_blocklist_file(self, tmp_path: Path) -> None:
        """A blocklist path that does not exist is a config error naming ``blocklist``."""
        errors = config_errors(blocklist=str(tmp_path / "nope.txt"))
        assert ["blocklist"] == list(errors)
        assert "not found" in errors["blocklist"]

    def test_blocklist_not_utf8(self, tmp_path: Path) -> None:
        """A blocklist that is not UTF-8 is a config error."""
        path = tmp_path / "latin1.txt"
        path.write_bytes("пароль\n".encode("cp1251"))
        assert "UTF-8" in config_errors(blocklist=str(path))["blocklist"]

    @pytest.mark.parametrize("value", [1, 2.5, "", ["a.txt"]])
    def test_blocklist_wrong_type(self, value: object) -> None:
        """A blocklist that is neither a bool nor a path is a config error."""
        assert "blocklist" in config_errors(blocklist=value)


class TestFromToml:
    """``PasswordPolicy.from_toml``: a ``[password]`` table or the top level."""

    def test_password_table(self, tmp_path: Path) -> None:
        """The ``[password]`` table of a larger file is read; other tables are ignored."""
        path = write(
            tmp_path / "app.toml",
            '[server]\nport = 8000\n\n[password]\nmin_length = 10\nrequire = ["digit"]\n'
            "max_repeat = 0\nhistory = 3\nhistory_similar = true\n",
        )
        expected = PasswordPolicy(min_length=10, require=["digit"], history=3, history_similar=True)
        assert expected == PasswordPolicy.from_toml(path)

    def test_top_level(self, tmp_path: Path) -> None:
        """Without a ``[password]`` table the top level is the policy."""
        path = write(tmp_path / "policy.toml", 'min_length = 6\nalphabet = "latin_alnum"\n')
        policy = PasswordPolicy.from_toml(str(path))
        assert PasswordPolicy(min_length=6, alphabet="latin_alnum") == policy

    def test_false_and_zero_switch_rules_off(self, tmp_path: Path) -> None:
        """TOML has no null: ``false`` and ``0`` switch rules off."""
        path = write(
            tmp_path / "p.toml",
            "min_length = 0\nmax_length = false\nblocklist = false\nforbid_personal_info = false\n",
        )
        policy = PasswordPolicy.from_toml(path)
        assert policy.min_length is None
        assert policy.max_length is None
        assert policy.check("")

    def test_relative_blocklist_against_the_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A relative blocklist path is resolved against the TOML file's directory."""
        conf = tmp_path / "conf"
        conf.mkdir()
        write(conf / "words.txt", "kaspi2024\n")
        path = write(conf / "policy.toml", '[password]\nblocklist = "words.txt"\n')
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        policy = PasswordPolicy.from_toml(os.path.relpath(path, elsewhere))
        assert ("too_common",) == policy.check("kaspi2024").codes
        assert Path(str(policy.blocklist)).resolve() == (conf / "words.txt").resolve()

    def test_absolute_blocklist_is_kept(self, tmp_path: Path) -> None:
        """An absolute blocklist path is used as it is."""
        words = write(tmp_path / "words.txt", "kaspi2024\n")
        sub = tmp_path / "sub"
        sub.mkdir()
        path = write(sub / "p.toml", f"blocklist = {str(words)!r}\n")
        assert str(words) == PasswordPolicy.from_toml(path).blocklist

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is a PolicyConfigError."""
        with pytest.raises(PolicyConfigError, match="cannot read"):
            PasswordPolicy.from_toml(tmp_path / "missing.toml")

    def test_directory(self, tmp_path: Path) -> None:
        """A directory is not a policy file."""
        with pytest.raises(PolicyConfigError):
            PasswordPolicy.from_toml(tmp_path)

    def test_invalid_toml(self, tmp_path: Path) -> None:
        """Malformed TOML is a PolicyConfigError."""
        path = write(tmp_path / "bad.toml", "[password\nmin_length = = 8\n")
        with pytest.raises(PolicyConfigError, match="invalid TOML"):
            PasswordPolicy.from_toml(path)

    def test_not_utf8(self, tmp_path: Path) -> None:
        """A file that is not UTF-8 is a PolicyConfigError."""
        path = tmp_path / "cp1251.toml"
        path.write_bytes('alphabet = "абв"\n'.encode("cp1251"))
        with pytest.raises(PolicyConfigError, match="UTF-8"):
            PasswordPolicy.from_toml(path)

    def test_password_not_a_table(self, tmp_path: Path) -> None:
        """``password = "x"`` at the top level is not a table."""
        path = write(tmp_path / "p.toml", 'password = "hunter2"\n')
        with pytest.raises(PolicyConfigError) as info:
            PasswordPolicy.from_toml(path)
        assert ["password"] == list(info.value.errors)
        assert "hunter2" not in str(info.value)

    def test_bad_keys_in_the_file(self, tmp_path: Path) -> None:
        """Bad keys in a TOML file are all reported."""
        path = write(tmp_path / "p.toml", '[password]\nmin_lenght = 8\nrequire = "upper"\n')
        with pytest.raises(PolicyConfigError) as info:
            PasswordPolicy.from_toml(path)
        assert {"min_lenght", "require"} == set(info.value.errors)


class TestToMapping:
    """``to_mapping`` round-trips through ``from_mapping``."""

    def test_every_key(self) -> None:
        """The mapping holds every config key, in CONFIG_KEYS order."""
        assert list(CONFIG_KEYS) == list(PasswordPolicy().to_mapping())

    def test_default_round_trip(self) -> None:
        """The default policy survives a round trip."""
        policy = PasswordPolicy()
        assert policy == PasswordPolicy.from_mapping(policy.to_mapping())

    @pytest.mark.parametrize("name", PRESET_NAMES)
    def test_preset_round_trip(self, name: str) -> None:
        """Every preset survives a round trip."""
        policy = PasswordPolicy.preset(name)
        again = PasswordPolicy.from_mapping(policy.to_mapping())
        assert policy == again
        assert policy.to_mapping() == again.to_mapping()

    @pytest.mark.parametrize(
        "config",
        [
            {"min_length": None, "max_length": None, "blocklist": False},
            {"require": ["special", "upper"], "special_characters": "!@#", "max_repeat": 2},
            {"alphabet": "0123456789abcdef", "min_length": 6, "max_length": 6},
            {"min_classes": 3, "alphabet": "ascii", "min_strength": 3, "history": 4},
            {"history": 10, "history_similar": True, "forbid_personal_info": False},
        ],
    )
    def test_custom_round_trip(self, config: dict[str, Any]) -> None:
        """Custom policies survive a round trip."""
        policy = PasswordPolicy.from_mapping(config)
        assert policy == PasswordPolicy.from_mapping(policy.to_mapping())

    def test_file_blocklist_round_trip(self, tmp_path: Path) -> None:
        """A file blocklist round-trips as its path."""
        path = write(tmp_path / "b.txt", "abc\n")
        policy = PasswordPolicy.from_mapping({"blocklist": path})
        assert str(path) == policy.to_mapping()["blocklist"]
        assert policy == PasswordPolicy.from_mapping(policy.to_mapping())

    def test_mapping_is_a_copy(self) -> None:
        """Changing the returned mapping does not change the policy."""
        policy = PasswordPolicy(require=["digit"])
        mapping = policy.to_mapping()
        mapping["require"].append("upper")
        mapping["min_length"] = 1
        assert {"digit": 1} == policy.require
        assert 8 == policy.min_length

    def test_require_is_a_list(self) -> None:
        """``require`` comes out as a list (what TOML and JSON write)."""
        assert ["upper", "digit"] == PasswordPolicy(require=["digit", "upper"]).to_mapping()[
            "require"
        ]


class TestPolicyConfigError:
    """One exception, a ValueError, naming every bad key."""

    def test_is_a_value_error(self) -> None:
        """PolicyConfigError is a ValueError and a KaspiIdentityError."""
        assert issubclass(PolicyConfigError, ValueError)
        assert issubclass(PolicyConfigError, KaspiIdentityError)
        with pytest.raises(ValueError, match="min_length"):
            PasswordPolicy(min_length=-1)

    def test_every_bad_key_at_once(self) -> None:
        """A mapping with three mistakes reports three keys."""
        errors = config_errors(min_lenght=8, require="upper", min_classes=5)
        assert {"min_lenght", "require", "min_classes"} == set(errors)

    def test_every_bad_value_at_once(self) -> None:
        """Known keys with bad values are all reported together."""
        errors = config_errors(
            min_length="8",
            max_repeat=-1,
            alphabet=7,
            forbid_personal_info="yes",
            history=1000,
            min_strength=9,
        )
        expected = {"min_length", "max_repeat", "alphabet", "forbid_personal_info"}
        assert expected | {"history", "min_strength"} == set(errors)

    def test_keyword_construction_reports_all(self) -> None:
        """Keyword construction reports every bad key too."""
        with pytest.raises(PolicyConfigError) as info:
            PasswordPolicy(min_length=True, require=["cyrillic"], special_characters=1)  # type: ignore[arg-type]
        assert {"min_length", "require", "special_characters"} == set(info.value.errors)

    def test_message_lists_every_key(self) -> None:
        """The message names every key."""
        with pytest.raises(PolicyConfigError) as info:
            PasswordPolicy.from_mapping({"min_lenght": 8, "max_lenght": 9})
        assert "min_lenght" in str(info.value)
        assert "max_lenght" in str(info.value)

    @pytest.mark.parametrize(
        ("key", "near"),
        [
            ("min_lenght", "min_length"),
            ("max_len", "max_length"),
            ("requires", "require"),
            ("blacklist", "blocklist"),
            ("special_chars", "special_characters"),
        ],
    )
    def test_near_miss(self, key: str, near: str) -> None:
        """An unknown key names the known key it is closest to."""
        assert f"{key} → {near}?" in config_errors(**{key: 1})[key]

    def test_far_miss_lists_the_keys(self) -> None:
        """An unknown key close to nothing lists the known keys."""
        reason = config_errors(colour="blue")["colour"]
        assert all(key in reason for key in CONFIG_KEYS)

    def test_unknown_key_plus_bad_values(self) -> None:
        """An unknown key does not hide the bad values of known keys."""
        errors = config_errors(min_lenght=8, max_length="x")
        assert {"min_lenght", "max_length"} == set(errors)


class TestWrongTypes:
    """Values of the wrong type or out of range."""

    @pytest.mark.parametrize(
        "key", ["min_length", "max_length", "min_classes", "max_repeat", "min_strength", "history"]
    )
    @pytest.mark.parametrize("value", [True, "8", 8.0, [8]])
    def test_integers(self, key: str, value: object) -> None:
        """Integer keys refuse bools (True is not 1 here), strings, floats and lists."""
        assert [key] == list(config_errors(**{key: value}))

    @pytest.mark.parametrize("value", [-1, -100])
    def test_negative_lengths(self, value: int) -> None:
        """Negative lengths are errors (0 switches the rule off)."""
        assert "min_length" in config_errors(min_length=value)

    @pytest.mark.parametrize(
        "value",
        [
            "upper",
            "upper,digit",
            b"upper",
            bytearray(b"digit"),
            ["upper", "cyrillic"],
            ["Upper"],
            {"upper": 0},
            {"Upper": 2},
            4,
        ],
    )
    def test_require(self, value: object) -> None:
        """``require`` must be a list of the four class names."""
        assert ["require"] == list(config_errors(require=value))

    def test_unknown_class_is_named(self) -> None:
        """The unknown class is named in the reason."""
        assert "'cyrillic'" in config_errors(require=["upper", "cyrillic"])["require"]

    @pytest.mark.parametrize("value", [0, 5, -1])
    def test_min_classes_range(self, value: int) -> None:
        """``min_classes`` is 1 to 4 (0 switches it off)."""
        if value == 0:
            assert PasswordPolicy(min_classes=0).min_classes is None
        else:
            assert ["min_classes"] == list(config_errors(min_classes=value))

    @pytest.mark.parametrize("value", [5, -1])
    def test_min_strength_range(self, value: int) -> None:
        """``min_strength`` is a zxcvbn score, 1 to 4."""
        assert ["min_strength"] == list(config_errors(min_strength=value))

    @pytest.mark.parametrize("value", ["abc!", "!1", "!\n", "!\x00", "!№", 5])
    def test_special_characters(self, value: object) -> None:
        """Specials hold no Latin letters, digits, controls, whitespace but space, NFKC changes."""
        assert ["special_characters"] == list(config_errors(special_characters=value))

    @pytest.mark.parametrize("value", ["latin_alnm", "asci", "abc\x00", "ａｂｃ", 3, ["a"]])
    def test_alphabet(self, value: object) -> None:
        """Alphabet: a name (near misses named), or a string free of controls and NFKC changes."""
        assert ["alphabet"] == list(config_errors(alphabet=value))

    def test_alphabet_near_miss(self) -> None:
        """A misspelled alphabet name names the intended one."""
        assert "latin_alnm → latin_alnum?" in config_errors(alphabet="latin_alnm")["alphabet"]

    @pytest.mark.parametrize("key", ["forbid_personal_info", "history_similar"])
    @pytest.mark.parametrize("value", [1, "true", "yes"])
    def test_flags(self, key: str, value: object) -> None:
        """Flags must be real booleans."""
        config: dict[str, object] = {key: value}
        if key == "history_similar":
            config["history"] = 3
        assert [key] == list(config_errors(**config))

    @pytest.mark.parametrize("value", [65, 1000])
    def test_history_range(self, value: int) -> None:
        """``history`` is at most 64."""
        assert ["history"] == list(config_errors(history=value))


class TestMinAboveMax:
    """``min_length`` greater than ``max_length``."""

    def test_min_above_max(self) -> None:
        """min 10, max 5 is an error naming ``min_length``."""
        errors = config_errors(min_length=10, max_length=5)
        assert ["min_length"] == list(errors)
        assert "max_length" in errors["min_length"]

    def test_min_equal_max(self) -> None:
        """min = max is a fixed length, which is fine."""
        policy = PasswordPolicy(min_length=6, max_length=6, blocklist=False)
        assert policy.check("abcdef")
        assert not policy.check("abcde")
        assert not policy.check("abcdefg")

    def test_default_min_above_small_max(self) -> None:
        """The default min_length 8 is checked against a small max_length."""
        assert "min_length" in config_errors(max_length=5)


class TestUnsatisfiable:
    """A policy no password could satisfy is refused, naming the key to change."""

    def test_max_length_below_required_classes(self) -> None:
        """Four required classes do not fit in three characters."""
        errors = config_errors(min_length=None, max_length=3, require=ALL_CLASSES)
        assert ["max_length"] == list(errors)

    def test_max_length_below_min_classes(self) -> None:
        """``min_classes=4`` does not fit in three characters."""
        assert "max_length" in config_errors(min_length=2, max_length=3, min_classes=4)

    def test_exactly_enough_room(self) -> None:
        """Four classes fit in four characters."""
        policy = PasswordPolicy(min_length=4, max_length=4, require=ALL_CLASSES, blocklist=False)
        assert policy.check("aB3!")

    @pytest.mark.parametrize(
        ("alphabet", "klass"),
        [
            ("latin_alnum", "special"),
            ("0123456789", "upper"),
            ("abcdef!", "digit"),
            ("абвгд123", "lower"),
        ],
    )
    def test_required_class_outside_alphabet(self, alphabet: str, klass: str) -> None:
        """A required class the alphabet cannot provide is refused, naming ``require``."""
        errors = config_errors(alphabet=alphabet, require=[klass], min_length=4)
        assert ["require"] == list(errors)
        assert repr(klass) in errors["require"]

    def test_special_outside_ascii_alphabet(self) -> None:
        """Specials that are all non-ASCII cannot appear under alphabet "ascii"."""
        errors = config_errors(alphabet="ascii", require=["special"], special_characters="§¶")
        assert ["require"] == list(errors)

    def test_min_classes_above_alphabet(self) -> None:
        """latin_alnum allows three classes: ``min_classes=4`` is refused, 3 is fine."""
        assert ["min_classes"] == list(config_errors(alphabet="latin_alnum", min_classes=4))
        assert PasswordPolicy(alphabet="latin_alnum", min_classes=3)

    def test_single_char_alphabet_with_max_repeat(self) -> None:
        """Alphabet "a" with ``max_repeat`` below ``min_length`` cannot be met."""
        errors = config_errors(alphabet="a", max_repeat=3, min_length=8, blocklist=False)
        assert ["max_repeat"] == list(errors)

    def test_single_char_alphabet_with_room(self) -> None:
        """Alphabet "a" with ``max_repeat`` at ``min_length`` is satisfiable."""
        policy = PasswordPolicy(
            alphabet="a", max_repeat=4, min_length=4, blocklist=False, max_length=4
        )
        assert policy.check("aaaa")

    def test_two_char_alphabet_with_max_repeat_one(self) -> None:
        """Alphabet "ab" with ``max_repeat=1`` alternates: satisfiable."""
        policy = PasswordPolicy(alphabet="ab", max_repeat=1, min_length=8, blocklist=False)
        assert policy.check("abababab")

    def test_several_problems_together(self) -> None:
        """Both the require and the min_classes problem are named."""
        errors = config_errors(alphabet="0123456789", require=["upper"], min_classes=2)
        assert {"require", "min_classes"} == set(errors)


class TestSwitchingOff:
    """``None``, ``False`` and ``0`` switch a rule off."""

    @pytest.mark.parametrize("off", [None, False, 0])
    @pytest.mark.parametrize(
        "key", ["min_length", "max_length", "min_classes", "max_repeat", "min_strength", "history"]
    )
    def test_integer_rules(self, key: str, off: object) -> None:
        """Every integer rule is switched off by None, False and 0 (stored as None)."""
        policy = PasswordPolicy.from_mapping({key: off})
        assert getattr(policy, key) is None

    @pytest.mark.parametrize("off", [None, False, 0, ()])
    def test_require(self, off: object) -> None:
        """``require`` is off when empty or null."""
        assert {} == PasswordPolicy.from_mapping({"require": off}).require

    @pytest.mark.parametrize("off", [None, False])
    def test_blocklist(self, off: object) -> None:
        """The blocklist is off for None and False."""
        policy = PasswordPolicy.from_mapping({"blocklist": off})
        assert policy.blocklist is False
        assert policy.check("password")

    @pytest.mark.parametrize("off", [None, False])
    def test_personal_info(self, off: object) -> None:
        """The personal-info rule is off for None and False."""
        assert (
            PasswordPolicy.from_mapping({"forbid_personal_info": off}).forbid_personal_info is False
        )

    @pytest.mark.parametrize("off", [None, False, 0, ""])
    def test_alphabet_and_specials_default(self, off: object) -> None:
        """An empty or null alphabet is "any"; empty or null specials are ASCII punctuation."""
        policy = PasswordPolicy.from_mapping({"alphabet": off, "special_characters": off})
        assert "any" == policy.alphabet
        assert string.punctuation == policy.special_characters

    def test_everything_off_accepts_anything_printable(self) -> None:
        """With every rule off, any password without control characters passes, up to the
        hard cap of 4096 characters that no policy lifts."""
        policy = PasswordPolicy.from_mapping(dict.fromkeys(CONFIG_KEYS))
        for password in ("", "a", "password", "пароль", "a" * 4096):
            assert policy.check(password), password
        assert not policy.check("\x00")
        assert ("too_long",) == policy.check("a" * 4097).codes


class TestHistory:
    """``history`` and ``history_similar``: settings only, checked with storage."""

    def test_similar_needs_history(self) -> None:
        """``history_similar`` without ``history`` is an error naming ``history_similar``."""
        assert ["history_similar"] == list(config_errors(history_similar=True))
        assert ["history_similar"] == list(config_errors(history_similar=True, history=0))

    def test_history_alone(self) -> None:
        """``history`` without similarity is fine."""
        policy = PasswordPolicy(history=6)
        assert 6 == policy.history
        assert policy.history_similar is False

    def test_history_does_not_affect_check(self) -> None:
        """The stateless check never reports reused/similar: those need storage."""
        policy = PasswordPolicy(history=6, history_similar=True)
        assert policy.check("a fine passphrase")


class TestReplace:
    """``dataclasses.replace`` makes validated variants."""

    def test_replace_builds_a_variant(self) -> None:
        """A replaced field takes effect in checks; the original is unchanged."""
        base = PasswordPolicy()
        longer = dataclasses.replace(base, min_length=12)
        assert 12 == longer.min_length
        assert 8 == base.min_length
        assert ("too_short",) == longer.check("abcdefghij").codes
        assert base.check("abcdefghij")

    def test_replace_validates(self) -> None:
        """An invalid replacement raises PolicyConfigError."""
        with pytest.raises(PolicyConfigError) as info:
            dataclasses.replace(PasswordPolicy(), min_length=200)
        assert ["min_length"] == list(info.value.errors)

    def test_replace_checks_satisfiability(self) -> None:
        """A replacement that makes the policy unsatisfiable is refused."""
        policy = PasswordPolicy(require=["special"])
        with pytest.raises(PolicyConfigError):
            dataclasses.replace(policy, alphabet="latin_alnum")

    def test_replace_preset(self) -> None:
        """A preset can be tightened with replace."""
        policy = dataclasses.replace(PasswordPolicy.preset("kz-procurement"), min_length=12)
        assert ("too_short",) == policy.check("Abc123!xyz").codes


class TestPresetLookup:
    """``PasswordPolicy.preset`` by name."""

    @pytest.mark.parametrize("name", PRESET_NAMES)
    def test_known(self, name: str) -> None:
        """Each named preset builds."""
        assert isinstance(PasswordPolicy.preset(name), PasswordPolicy)

    def test_names(self) -> None:
        """The three presets of the design."""
        assert {"kz-procurement", "utility-cabinet", "nist"} == set(PRESET_NAMES)

    def test_unknown_with_near_miss(self) -> None:
        """An unknown preset is a PolicyConfigError naming the near miss."""
        with pytest.raises(PolicyConfigError, match="did you mean nist"):
            PasswordPolicy.preset("nsit")

    @pytest.mark.parametrize("name", ["", "NIST-800", None, 1])
    def test_unknown(self, name: object) -> None:
        """Anything else is a PolicyConfigError listing the presets."""
        with pytest.raises(PolicyConfigError, match="kz-procurement"):
            PasswordPolicy.preset(name)  # type: ignore[arg-type]
