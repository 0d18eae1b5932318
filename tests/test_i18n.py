"""Tests of kaspi_identity.i18n: catalogs, plural rules, language tags and the .po parser."""

from __future__ import annotations

import string
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

import kaspi_identity.i18n as i18n
from kaspi_identity._errors import KaspiIdentityError, UnknownLanguageError
from kaspi_identity.i18n import (
    DEFAULT_LANGUAGE,
    SUPPORTED_LANGUAGES,
    Catalog,
    CatalogError,
    _catalog,
    get_catalog,
    normalize_language,
    render,
)
from kaspi_identity.i18n._po import PoFile, parse_po

# The message keys of the strength feedback sub-codes (``strength.<key>``).
STRENGTH_FEEDBACK_KEYS = (
    "common_password.top10",
    "common_password.top100",
    "common_password.very_common",
    "common_password.similar",
    "common_word",
    "names.alone",
    "names.common",
    "personal_data",
    "keyboard_pattern.straight_row",
    "keyboard_pattern.short",
    "repeats.character",
    "repeats.group",
    "sequence",
    "recent_year",
    "dates",
    "capitalization",
    "all_uppercase",
    "reversed_word",
    "substitutions",
    "add_word",
)
# The stable message keys: the policy engine and host front ends rely on every one of them.
SINGULAR_KEYS = frozenset(
    {
        "violation.missing_upper",
        "violation.missing_lower",
        "violation.missing_digit",
        "violation.missing_special",
        "violation.disallowed_character.ascii",
        "violation.disallowed_character.latin_alnum",
        "violation.disallowed_character.custom",
        "violation.disallowed_character.control",
        "violation.contains_personal_info.username",
        "violation.contains_personal_info.email",
        "violation.contains_personal_info.phone",
        "violation.contains_personal_info.name",
        "violation.too_weak",
        "violation.too_weak.feedback",
        *(f"strength.{key}" for key in STRENGTH_FEEDBACK_KEYS),
        "violation.too_common",
        "violation.confirmation_mismatch",
        "hint.keyboard_layout",
        "requirement.upper",
        "requirement.lower",
        "requirement.digit",
        "requirement.special",
        "requirement.alphabet.ascii",
        "requirement.alphabet.latin_alnum",
        "requirement.alphabet.custom",
        "requirement.personal_info",
        "requirement.min_strength",
        "requirement.blocklist",
    }
)
# Plural keys, with the parameter that ``count`` stands for.
PLURAL_KEYS = {
    "violation.too_short": "min_length",
    "violation.too_long": "max_length",
    "violation.too_few_classes": "min_classes",
    "violation.repeated_characters": "max_repeat",
    "violation.reused": "history",
    "violation.similar_to_previous": "history",
    "requirement.min_length": "min_length",
    "requirement.max_length": "max_length",
    "requirement.length_range": "max_length",
    "requirement.min_classes": "min_classes",
    "requirement.max_repeat": "max_repeat",
    "requirement.history": "history",
    "requirement.history_similar": "history",
}
ALL_KEYS = SINGULAR_KEYS | frozenset(PLURAL_KEYS)

SAMPLE_PARAMS: dict[str, object] = {
    "min_length": 8,
    "max_length": 64,
    "min_classes": 3,
    "max_repeat": 2,
    "history": 6,
    "examples": "% $ @ & *",
    "allowed": "A-Z a-z 0-9 _ -",
}
SAMPLE_COUNTS = (1, 2, 5, 21)

RU_HEADER = (
    'msgid ""\n'
    'msgstr ""\n'
    '"Language: ru\\n"\n'
    '"Content-Type: text/plain; charset=UTF-8\\n"\n'
    '"Plural-Forms: nplurals=3; plural=(n%10==1 && n%100!=11 ? 0 : '
    'n%10>=2 && n%10<=4 && (n%100<10 || n%100>=20) ? 1 : 2);\\n"\n'
    "\n"
)


def placeholders(text: str) -> set[str]:
    """Return the ``{name}`` fields of a format string."""
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def shipped(*parts: str) -> PoFile:
    """Parse a file shipped in the package, read the way the library reads it."""
    text, source = _catalog._read_resource(*parts)
    return parse_po(text, source=source)


def template() -> PoFile:
    """The .pot template."""
    return shipped("locale", "kaspi_identity.pot")


def translation(language: str) -> PoFile:
    """The shipped .po file of ``language``."""
    return shipped("locale", language, "LC_MESSAGES", "kaspi_identity.po")


@pytest.fixture
def fresh_cache() -> Iterator[None]:
    """Start and end the test with no catalog loaded."""
    _catalog._clear_cache()
    yield
    _catalog._clear_cache()


class TestPublicSurface:
    def test_all_is_sorted_and_exact(self) -> None:
        """__all__ lists every public name of kaspi_identity.i18n, in isort order."""
        public = {
            name for name in vars(i18n) if not name.startswith(("_", "@")) and name != "annotations"
        }
        assert public == set(i18n.__all__)
        constants = sorted(n for n in i18n.__all__ if n.isupper())
        classes = sorted(n for n in i18n.__all__ if n[0].isupper() and not n.isupper())
        functions = sorted(n for n in i18n.__all__ if n[0].islower())
        assert constants + classes + functions == i18n.__all__

    def test_constants(self) -> None:
        """The three languages ship, English is the documented default."""
        assert SUPPORTED_LANGUAGES == ("en", "ru", "kk")
        assert DEFAULT_LANGUAGE == "en"
        assert DEFAULT_LANGUAGE in SUPPORTED_LANGUAGES

    def test_catalog_error_is_in_the_error_tree(self) -> None:
        """CatalogError is a KaspiIdentityError and a ValueError."""
        assert issubclass(CatalogError, KaspiIdentityError)
        assert issubclass(CatalogError, ValueError)


class TestShippedCatalogs:
    def test_template_has_every_stable_key(self) -> None:
        """The .pot holds every policy key, plural exactly where documented.

        Other modules (CLI, letters, SMS, phone errors) add keys of their own; the
        completeness tests below cover those in every language.
        """
        entries = {e.msgctxt: e for e in template().entries}
        assert set(ALL_KEYS) <= set(entries)
        policy_entries = {k: e for k, e in entries.items() if k in ALL_KEYS}
        plural = {k for k, e in policy_entries.items() if e.msgid_plural is not None}
        assert plural == set(PLURAL_KEYS)

    def test_template_is_untranslated(self) -> None:
        """Every msgstr of the .pot is empty, as a template's should be."""
        for entry in template().entries:
            assert {""} == set(entry.msgstr), entry.msgctxt

    @pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
    def test_po_matches_template(self, language: str) -> None:
        """Each .po has the .pot's keys, msgids and plural-ness: no missing or extra entry."""
        expected = {e.msgctxt: (e.msgid, e.msgid_plural, e.flags) for e in template().entries}
        actual = {
            e.msgctxt: (e.msgid, e.msgid_plural, e.flags) for e in translation(language).entries
        }
        assert expected == actual

    @pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
    def test_po_is_complete(self, language: str) -> None:
        """No entry is fuzzy or has an empty msgstr, and plural entries have nplurals forms."""
        po = translation(language)
        nplurals = get_catalog(language)._rule.nplurals
        for entry in po.entries:
            assert "fuzzy" not in entry.flags, entry.msgctxt
            assert all(form.strip() == form and form for form in entry.msgstr), entry.msgctxt
            expected = nplurals if entry.msgid_plural is not None else 1
            assert expected == len(entry.msgstr), entry.msgctxt

    @pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
    def test_loaded_catalog_has_every_key(self, language: str) -> None:
        """The loaded catalog's keys are exactly the template's keys."""
        assert get_catalog(language).keys() == {e.msgctxt for e in template().entries}

    @pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
    def test_placeholders_match_the_source(self, language: str) -> None:
        """Every translation uses exactly the placeholders of its msgid: none lost, none new."""
        for entry in translation(language).entries:
            source = placeholders(entry.msgid)
            if entry.msgid_plural is not None:
                assert source == placeholders(entry.msgid_plural), entry.msgctxt
            for form in entry.msgstr:
                assert source == placeholders(form), (entry.msgctxt, form)

    def test_brace_format_flag(self) -> None:
        """Entries with placeholders are flagged python-brace-format for translation tools."""
        for entry in template().entries:
            flagged = "python-brace-format" in entry.flags
            assert bool(placeholders(entry.msgid)) == flagged, entry.msgctxt

    def test_plural_entries_mention_their_count_parameter(self) -> None:
        """Each plural msgid shows the parameter that count stands for."""
        for entry in template().entries:
            if entry.msgctxt in PLURAL_KEYS:
                assert PLURAL_KEYS[entry.msgctxt] in placeholders(entry.msgid)

    @pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
    def test_header(self, language: str) -> None:
        """Each .po declares its language and UTF-8."""
        header = translation(language).header
        assert language == header["Language"]
        assert header["Content-Type"] == "text/plain; charset=UTF-8"


class TestRenderEveryMessage:
    @pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
    @pytest.mark.parametrize("key", sorted(SINGULAR_KEYS))
    def test_singular(self, language: str, key: str) -> None:
        """Every singular message renders with no leftover brace."""
        # count=None spelled out: mypy would match a **dict[str, object] against count.
        text = render(key, language, count=None, **SAMPLE_PARAMS)
        assert text
        assert "{" not in text
        assert "}" not in text

    @pytest.mark.parametrize("count", SAMPLE_COUNTS)
    @pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
    @pytest.mark.parametrize("key", sorted(PLURAL_KEYS))
    def test_plural(self, language: str, key: str, count: int) -> None:
        """Every plural message renders for counts 1, 2, 5 and 21 with its count shown."""
        params = dict(SAMPLE_PARAMS, **{PLURAL_KEYS[key]: count})
        text = render(key, language, count=count, **params)
        assert str(count) in text
        assert "{" not in text
        assert "}" not in text

    @pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
    def test_punctuation(self, language: str) -> None:
        """Requirement lines have no final period; violations and hints end with one."""
        catalog = get_catalog(language)
        for key in sorted(ALL_KEYS):
            text = catalog.message(key, count=5, **SAMPLE_PARAMS)
            if key.startswith("requirement."):
                assert not text.endswith("."), key
            elif key != "violation.disallowed_character.custom":  # ends with the list
                assert text.endswith("."), key

    @pytest.mark.parametrize("language", ["ru", "kk"])
    def test_translations_are_translated(self, language: str) -> None:
        """No ru/kk message is the English text left in place."""
        english = get_catalog("en")
        catalog = get_catalog(language)
        for key in sorted(ALL_KEYS):
            assert english.message(key, count=5, **SAMPLE_PARAMS) != catalog.message(
                key, count=5, **SAMPLE_PARAMS
            )


# The counts every plural message is rendered with: the Russian one/few/many boundaries
# (1, 21 one; 2, 22 few; 5, 11, 25, 111 many), zero, and the hundreds.
PLURAL_SWEEP = (0, 1, 2, 5, 11, 21, 22, 25, 100, 111)


def plural_entries() -> list[tuple[str, str, frozenset[str]]]:
    """(key, count parameter, placeholders) of every plural entry of the template.

    The count parameter is read from the translator comment ("count = minutes"), so a new
    plural message is swept without editing this test.
    """
    text = (Path(i18n.__file__).parent / "locale" / "kaspi_identity.pot").read_text("utf-8")
    counts: dict[str, str] = {}
    for chunk in text.split("\n\n"):
        ctx = [line for line in chunk.splitlines() if line.startswith("msgctxt ")]
        found = chunk.split("count = ")[1:]
        if ctx and found:
            counts[ctx[0].split('"')[1]] = found[0].split()[0].strip(".;()")
    entries = []
    for entry in template().entries:
        if entry.msgid_plural is not None and entry.msgctxt is not None:
            entries.append(
                (entry.msgctxt, counts[entry.msgctxt], frozenset(placeholders(entry.msgid)))
            )
    return entries


class TestEveryPluralMessage:
    def test_every_plural_entry_names_its_count(self) -> None:
        """Each plural entry's comment says which placeholder count stands for."""
        entries = plural_entries()
        assert len(entries) == sum(1 for e in template().entries if e.msgid_plural is not None)
        for key, count, names in entries:
            assert count in names, key

    @pytest.mark.parametrize("n", PLURAL_SWEEP)
    @pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
    def test_renders_for_every_count(self, language: str, n: int) -> None:
        """Every plural message (policy, CLI, letters, SMS) renders for n in PLURAL_SWEEP."""
        catalog = get_catalog(language)
        for key, count, names in plural_entries():
            params: dict[str, object] = {name: f"<{name}>" for name in names}
            params[count] = n
            text = catalog.message(key, count=n, **params)
            assert str(n) in text, (key, n)
            assert "{" not in text, (key, n)
            assert "}" not in text, (key, n)

    @pytest.mark.parametrize(
        ("n", "form"),
        [(0, 2), (1, 0), (2, 1), (5, 2), (11, 2), (21, 0), (22, 1), (25, 2), (100, 2), (111, 2)],
    )
    def test_russian_form_for_every_count(self, n: int, form: int) -> None:
        """Russian picks one / few / many as its grammar does, across the sweep."""
        assert form == get_catalog("ru").plural_index(n)
        expected = ["символ", "символа", "символов"][form]
        assert f"Минимум {n} {expected}" == render(
            "requirement.min_length", "ru", count=n, min_length=n
        )


class TestReviewedWording:
    """The fixes of the kk/ru review (issue 18), pinned so they do not drift back."""

    @pytest.mark.parametrize(
        ("language", "expected"),
        [
            ("en", "Add a special character (for example % $ @ & * # ^ !)."),
            ("ru", "Добавьте специальный символ (например, % $ @ & * # ^ !)."),
            ("kk", "Арнайы таңба қосыңыз (мысалы, % $ @ & * # ^ !)."),
        ],
    )
    def test_special_examples_in_parentheses(self, language: str, expected: str) -> None:
        """A list ending in "!" no longer collides with the sentence's period."""
        assert expected == render("violation.missing_special", language, examples="% $ @ & * # ^ !")

    def test_kazakh(self) -> None:
        """Surname named, one e-mail form, simpler class counts, singular history for 1."""
        personal = render("requirement.personal_info", "kk")
        assert "тегіңізді" in personal
        assert "электрондық пошта мекенжайыңызды" in personal
        assert "Кемінде 3 таңба түрін пайдаланыңыз:" in render(
            "violation.too_few_classes", "kk", count=3, min_classes=3
        )
        assert render("requirement.min_classes", "kk", count=3, min_classes=3).startswith(
            "Кемінде 3 таңба түрі:"
        )
        assert "Соңғы 1 құпиясөзіңізді қайта қолданбаңыз." == render(
            "violation.reused", "kk", count=1, history=1
        )
        assert "ешқайсысын" in render("violation.reused", "kk", count=6, history=6)

    def test_russian(self) -> None:
        """too_common reads natively; the SMS field asks to enter the mobile phone number."""
        assert render("violation.too_common", "ru").endswith(
            "Придумайте менее предсказуемый пароль."
        )
        assert render("phone.not_mobile", "ru").endswith("Введите номер мобильного телефона.")

    @pytest.mark.parametrize("language", ["ru", "kk"])
    def test_one_spelling_of_password(self, language: str) -> None:
        """Russian never says "сброс"; Kazakh writes "құпиясөз" as one word everywhere."""
        for entry in translation(language).entries:
            for form in entry.msgstr:
                assert "сброс" not in form.lower(), entry.msgctxt
                assert "құпия сөз" not in form.lower(), entry.msgctxt


class TestPluralRules:
    @pytest.mark.parametrize(
        ("count", "word"),
        [
            (0, "символов"),
            (1, "символ"),
            (2, "символа"),
            (4, "символа"),
            (5, "символов"),
            (11, "символов"),
            (12, "символов"),
            (14, "символов"),
            (21, "символ"),
            (22, "символа"),
            (25, "символов"),
            (101, "символ"),
            (111, "символов"),
            (112, "символов"),
            (1001, "символ"),
        ],
    )
    def test_russian_word_forms(self, count: int, word: str) -> None:
        """Russian picks символ / символа / символов by the CLDR rule."""
        assert f"Минимум {count} {word}" == render(
            "requirement.min_length", "ru", count=count, min_length=count
        )
        assert f"Пароль должен содержать минимум {count} {word}." == render(
            "violation.too_short", "ru", count=count, min_length=count
        )

    @pytest.mark.parametrize(
        ("count", "expected"),
        [(0, "At least 0 characters"), (1, "At least 1 character"), (2, "At least 2 characters")],
    )
    def test_english(self, count: int, expected: str) -> None:
        """English has one and other."""
        assert expected == render("requirement.min_length", "en", count=count, min_length=count)

    def test_kazakh_noun_does_not_inflect(self) -> None:
        """Kazakh keeps the noun singular after a numeral."""
        assert render("requirement.min_length", "kk", count=1, min_length=1) == "Кемінде 1 таңба"
        assert render("requirement.min_length", "kk", count=8, min_length=8) == "Кемінде 8 таңба"

    @given(st.integers(min_value=0))
    def test_russian_index_matches_cldr(self, count: int) -> None:
        """For every count >= 0 the Russian form index agrees with a plain CLDR rule."""
        if count % 10 == 1 and count % 100 != 11:
            expected = 0  # one
        elif 2 <= count % 10 <= 4 and not 12 <= count % 100 <= 14:
            expected = 1  # few
        else:
            expected = 2  # many
        assert expected == get_catalog("ru").plural_index(count)

    @given(st.integers(min_value=0))
    def test_english_and_kazakh_index(self, count: int) -> None:
        """English and Kazakh use form 0 for one and form 1 otherwise."""
        expected = 0 if count == 1 else 1
        assert expected == get_catalog("en").plural_index(count)
        assert expected == get_catalog("kk").plural_index(count)

    @pytest.mark.parametrize("count", [True, 1.0, "1", None])
    def test_count_must_be_int(self, count: object) -> None:
        """A count that is not an int (bool included) is a TypeError."""
        with pytest.raises(TypeError, match="count must be an int"):
            get_catalog("ru").plural_index(cast(int, count))

    def test_negative_count(self) -> None:
        """A negative count is a ValueError."""
        with pytest.raises(ValueError, match="count must be >= 0"):
            render("requirement.min_length", "ru", count=-1, min_length=-1)


class TestNormalizeLanguage:
    @pytest.mark.parametrize(
        ("tag", "expected"),
        [
            ("en", "en"),
            ("ru", "ru"),
            ("kk", "kk"),
            ("RU", "ru"),
            ("ru-RU", "ru"),
            ("ru_KZ", "ru"),
            ("kk-KZ", "kk"),
            ("kk_Cyrl_KZ", "kk"),
            ("kk-cyrl", "kk"),
            ("en-US", "en"),
            ("en-Latn-GB", "en"),
            ("ru_RU.UTF-8", "ru"),
        ],
    )
    def test_accepted(self, tag: str, expected: str) -> None:
        """Case, region, script, separators and a POSIX codeset reduce to the base tag."""
        assert expected == normalize_language(tag)

    @pytest.mark.parametrize(
        "tag",
        [
            *(None, 5, b"ru", "", "de", "fr-FR", "kk-Latn", "ru-Latn", " ru", "ru ", "ru\n"),
            "\u0440\u0443",  # "ru" typed in Cyrillic letters
            *("r", "ru-", "ru--RU", "C", "ru@latin", "english", "x" * 10_000),
        ],
    )
    def test_rejected(self, tag: object) -> None:
        """Anything without a shipped catalog is an UnknownLanguageError, never a fallback."""
        with pytest.raises(UnknownLanguageError) as info:
            normalize_language(cast(str, tag))
        assert tag == info.value.language
        assert info.value.supported == SUPPORTED_LANGUAGES

    def test_error_is_a_value_error(self) -> None:
        """UnknownLanguageError is caught by except ValueError and names the supported tags."""
        with pytest.raises(ValueError, match="supported: en, ru, kk"):
            normalize_language("de")


class TestCatalog:
    def test_language(self) -> None:
        """A catalog knows its language and says so in its repr."""
        catalog = get_catalog("kk-KZ")
        assert catalog.language == "kk"
        assert f"<Catalog 'kk': {len(template().entries)} messages>" == repr(catalog)

    def test_unknown_key(self) -> None:
        """An unknown key is a KeyError naming it."""
        with pytest.raises(KeyError, match=r"violation\.nope"):
            get_catalog("en").message("violation.nope")

    def test_missing_parameter(self) -> None:
        """A missing placeholder parameter is a KeyError naming key and parameter."""
        with pytest.raises(KeyError, match=r"violation\.missing_special.*examples"):
            get_catalog("ru").message("violation.missing_special")

    def test_plural_needs_count(self) -> None:
        """A plural message without count is a TypeError saying so."""
        with pytest.raises(TypeError, match=r"violation\.too_short.*count="):
            get_catalog("ru").message("violation.too_short", min_length=8)

    def test_extra_parameters_are_ignored(self) -> None:
        """Parameters a message does not use are ignored, so callers can pass them all."""
        expected = "Пароли не совпадают."
        actual = get_catalog("ru").message("violation.confirmation_mismatch", count=3, junk=1)
        assert expected == actual

    def test_parameter_values_are_not_reinterpreted(self) -> None:
        """Braces inside a parameter value are printed as they are."""
        expected = "Only these characters: {x}"
        assert expected == render("requirement.alphabet.custom", "en", allowed="{x}")

    def test_keyboard_layout_hint(self) -> None:
        """The Russian keyboard hint reads as agreed."""
        expected = (
            "Пароль содержит кириллические буквы — проверьте, что включена английская "
            "раскладка клавиатуры."
        )
        assert expected == render("hint.keyboard_layout", "ru")


class TestGetCatalog:
    def test_cached(self) -> None:
        """The same language, however spelled, gives the same object."""
        assert get_catalog("ru") is get_catalog("RU")
        assert get_catalog("ru") is get_catalog("ru_KZ")

    def test_unknown_language(self) -> None:
        """An unknown language raises rather than falling back to English."""
        with pytest.raises(UnknownLanguageError):
            get_catalog("de")
        with pytest.raises(UnknownLanguageError):
            render("violation.too_weak", "uz")

    def test_render_is_get_catalog_message(self) -> None:
        """render() is get_catalog(lang).message()."""
        expected = get_catalog("kk").message("violation.reused", count=6, history=6)
        assert expected == render("violation.reused", "kk-KZ", count=6, history=6)

    def test_missing_file_is_a_catalog_error(self) -> None:
        """A catalog file missing from the package is a CatalogError naming it."""
        with pytest.raises(CatalogError, match=r"kaspi_identity/i18n/locale/xx/.*missing"):
            _catalog._read_resource("locale", "xx", "LC_MESSAGES", "kaspi_identity.po")

    @pytest.mark.usefixtures("fresh_cache")
    def test_parsed_once_under_concurrency(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """16 threads asking for fresh languages at once cause one parse per language."""
        loads: list[str] = []
        real_load = _catalog._load_builtin

        def slow_load(language: str) -> Catalog:
            loads.append(language)
            time.sleep(0.02)  # widen the window in which a second parse could start
            return real_load(language)

        monkeypatch.setattr(_catalog, "_load_builtin", slow_load)
        barrier = threading.Barrier(16)
        tags = ["ru", "ru-RU", "kk", "en-US"] * 4

        def worker(tag: str) -> Catalog:
            barrier.wait()
            return get_catalog(tag)

        with ThreadPoolExecutor(max_workers=16) as pool:
            catalogs = list(pool.map(worker, tags))

        assert sorted(loads) == ["en", "kk", "ru"]
        by_language: dict[str, set[int]] = {}
        for catalog in catalogs:
            by_language.setdefault(catalog.language, set()).add(id(catalog))
        assert {k: len(v) for k, v in by_language.items()} == {"en": 1, "kk": 1, "ru": 1}

    @pytest.mark.usefixtures("fresh_cache")
    def test_failed_load_is_not_cached(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A load that fails is retried on the next call."""

        def broken(language: str) -> Catalog:
            raise CatalogError(language, 1, "broken")

        monkeypatch.setattr(_catalog, "_load_builtin", broken)
        with pytest.raises(CatalogError):
            get_catalog("ru")
        monkeypatch.undo()
        assert get_catalog("ru").language == "ru"


class TestParser:
    def test_escapes(self) -> None:
        r"""\\ \" \n \t \r \a \b \f \v decode to their characters."""
        po = parse_po(r'msgid "a"' + "\n" + r'msgstr "\\ \" \n \t \r \a \b \f \v"' + "\n")
        assert po.entries[0].msgstr == ('\\ " \n \t \r \a \b \f \v',)

    @pytest.mark.parametrize("escape", [r"\x41", r"\101", r"\u0041", r"\q"])
    def test_unsupported_escape(self, escape: str) -> None:
        """An escape outside the supported set is an error, not passed through."""
        with pytest.raises(CatalogError, match=r"<string>:2: unsupported escape"):
            parse_po(f'msgid "a"\nmsgstr "{escape}"\n')

    def test_multi_line_strings(self) -> None:
        """Continuation lines join without separators, for every keyword."""
        text = (
            'msgctxt ""\n"a.b"\n'
            'msgid "Hello, "\n"world"\n'
            'msgid_plural ""\n"Worlds"\n'
            'msgstr[0] "Привет, "\n  "мир"\n'
            'msgstr[1] "Миры"\n'
        )
        (entry,) = parse_po(text).entries
        assert entry.msgctxt == "a.b"
        assert entry.msgid == "Hello, world"
        assert entry.msgid_plural == "Worlds"
        assert entry.msgstr == ("Привет, мир", "Миры")
        assert entry.line == 1

    def test_comments_flags_and_header(self) -> None:
        """Comments are skipped, flags kept, the header split into fields."""
        text = (
            "\ufeff# translator comment\n"
            'msgid ""\n'
            'msgstr ""\n'
            '"Language: kk\\n"\n'
            '"Plural-Forms: nplurals=2; plural=(n != 1);\\n"\n'
            "\n"
            "#. extracted\n"
            "#: src/x.py:1\n"
            "#, fuzzy, python-brace-format\n"
            '#| msgid "old"\n'
            'msgctxt "k"\n'
            'msgid "{a}"\n'
            'msgstr "{a}!"\n'
            "\n"
            '#~ msgid "obsolete"\n'
            '#~ msgstr "obsolete"\n'
        )
        po = parse_po(text, source="x.po")
        assert po.header == {"Language": "kk", "Plural-Forms": "nplurals=2; plural=(n != 1);"}
        assert po.header_line == 2
        (entry,) = po.entries
        assert frozenset({"fuzzy", "python-brace-format"}) == entry.flags
        assert entry.line == 11

    def test_entries_without_blank_lines_and_crlf(self) -> None:
        """Entries may follow each other directly, and CRLF line ends are accepted."""
        text = 'msgid "a"\r\nmsgstr "A"\r\nmsgid "b"\r\nmsgstr "B"\r\n'
        assert [(e.msgid, e.msgstr) for e in parse_po(text).entries] == [
            ("a", ("A",)),
            ("b", ("B",)),
        ]

    def test_empty_text(self) -> None:
        """Empty text is a file with no header and no entries."""
        po = parse_po("")
        assert (po.header, po.header_line, po.entries) == ({}, None, ())

    @pytest.mark.parametrize(
        ("text", "line", "reason"),
        [
            ('msgid "a"\n\nmsgstr "b"\n', 2, "has no msgstr"),
            ('msgid "a"\n', 2, "entry starting on line 1 has no msgstr"),
            ('msgid "a\nmsgstr "b"\n', 1, "expected a double-quoted string"),
            ('msgid "a" x\nmsgstr "b"\n', 1, "expected a double-quoted string"),
            ('msgid "a"\nmsgstr "b\\"\n', 2, "lone backslash"),
            ('msgid "a"\nmsgstr "b"\n"c" "d"\n', 3, "unescaped"),
            ('msgid "a"\nmsgid_plural "as"\nmsgstr[1] "b"\n', 3, r"expected msgstr\[0\]"),
            ('msgid "a"\nmsgid_plural "as"\nmsgstr "b"\n', 3, r"needs msgstr\[N\]"),
            ('msgid "a"\nmsgstr[0] "b"\n', 2, "needs msgid_plural"),
            ('msgid "a"\nmsgstr "b"\nmsgstr "c"\n', 3, "msgstr must follow msgid, once"),
            ('msgid "a"\nmsgctxt "k"\nmsgstr "b"\n', 2, "msgctxt must come first"),
            ('msgid "a"\nmsgid "b"\n', 2, "second msgid"),
            ('msgstr "b"\n', 1, "msgstr must follow msgid"),
            ('msgid_plural "b"\n', 1, "msgid_plural must follow msgid"),
            ('msgid[0] "a"\nmsgstr "b"\n', 1, r"msgid takes no \[index\]"),
            ('"orphan"\n', 1, "continuation without a keyword"),
            ('msgid "a"\nmsgstr "b"\n\n"orphan"\n', 4, "continuation without a keyword"),
            ('msgid "a"\n# note\nmsgstr "b"\n', 2, "comment inside an unfinished entry"),
            ('msgkey "a"\n', 1, "unexpected text"),
            ("msgid\n", 1, "unexpected text"),
            ('msgid "a"\nmsgstr "b"\n\nmsgid "a"\nmsgstr "c"\n', 4, "duplicate entry"),
            ('msgid "a"\nmsgstr "b"\n\nmsgid ""\nmsgstr ""\n', 4, "must come first"),
            ('msgid ""\nmsgstr ""\n\nmsgid ""\nmsgstr ""\n', 4, "second header"),
            ('msgid ""\nmsgstr "Language ru\\n"\n', 1, "malformed header field"),
        ],
    )
    def test_malformed(self, text: str, line: int, reason: str) -> None:
        """Malformed text is a CatalogError naming the source and the line."""
        with pytest.raises(CatalogError, match=rf"^bad\.po:{line}: .*{reason}") as info:
            parse_po(text, source="bad.po")
        assert ("bad.po", line) == (info.value.source, info.value.line)

    def test_malformed_file(self, tmp_path: Path) -> None:
        """A broken file on disk is reported with its path and line."""
        path = tmp_path / "kaspi_identity.po"
        path.write_text(RU_HEADER + 'msgctxt "k"\nmsgid "a"\nmsgstr "\\z"\n', encoding="utf-8")
        with pytest.raises(CatalogError) as info:
            Catalog.from_po_text(path.read_text(encoding="utf-8"), source=str(path))
        assert f"{path}:9: unsupported escape sequence '\\z'" == str(info.value)


class TestFromPoText:
    def test_whole_catalog(self) -> None:
        """A complete .po text becomes a catalog; {count} is available in plural messages."""
        text = RU_HEADER + (
            'msgctxt "files"\n'
            'msgid "{n} file"\n'
            'msgid_plural "{n} files"\n'
            'msgstr[0] "{count} файл"\n'
            'msgstr[1] "{count} файла"\n'
            'msgstr[2] "{count} файлов"\n'
        )
        with pytest.raises(CatalogError, match="unknown placeholder"):
            Catalog.from_po_text(text)
        catalog = Catalog.from_po_text(text.replace("{count}", "{n}"))
        assert catalog.language == "ru"
        assert frozenset({"files"}) == catalog.keys()
        assert catalog.message("files", count=22, n=22) == "22 файла"

    def test_override_some_messages(self) -> None:
        """With base=, the text replaces only the keys it translates."""
        base = get_catalog("ru")
        text = RU_HEADER + (
            'msgctxt "violation.too_common"\n'
            'msgid "This password is too common."\n'
            'msgstr "Этот пароль есть в списке популярных."\n'
            "\n"
            "#, fuzzy\n"
            'msgctxt "violation.too_weak"\n'
            'msgid "x"\n'
            'msgstr "Нечётко."\n'
            "\n"
            'msgctxt "requirement.min_length"\n'
            'msgid "At least {min_length} character"\n'
            'msgid_plural "At least {min_length} characters"\n'
            'msgstr[0] ""\n'
            'msgstr[1] ""\n'
            'msgstr[2] ""\n'
        )
        catalog = Catalog.from_po_text(text, base=base)
        assert catalog.message("violation.too_common") == "Этот пароль есть в списке популярных."
        assert base.message("violation.too_weak") == catalog.message("violation.too_weak")
        assert (
            catalog.message("requirement.min_length", count=5, min_length=5) == "Минимум 5 символов"
        )
        assert base.keys() == catalog.keys()
        assert base.message("violation.confirmation_mismatch") == "Пароли не совпадают."

    def test_override_without_header(self) -> None:
        """An override may omit the header: language and plural rule come from the base."""
        text = 'msgctxt "violation.too_weak"\nmsgid "x"\nmsgstr "Слабый пароль."\n'
        catalog = Catalog.from_po_text(text, base=get_catalog("ru"))
        assert (catalog.language, catalog.message("violation.too_weak")) == ("ru", "Слабый пароль.")

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ('msgctxt "violation.too_wek"\nmsgid "x"\nmsgstr "y"\n', "unknown key"),
            (
                'msgctxt "violation.too_weak"\nmsgid "x"\nmsgid_plural "xs"\n'
                'msgstr[0] "a"\nmsgstr[1] "b"\nmsgstr[2] "c"\n',
                "plural-ness differs",
            ),
            (
                'msgid ""\nmsgstr "Plural-Forms: nplurals=2; plural=(n != 1);\\n"\n',
                "nplurals=2 differs",
            ),
            ('msgid ""\nmsgstr "Language: kk\\n"\n', "does not match the base"),
            (
                'msgctxt "requirement.min_length"\nmsgid "{min_length}"\n'
                'msgid_plural "{min_length}"\nmsgstr[0] "a {min_length}"\nmsgstr[1] "b"\n',
                "has 2 plural forms, nplurals=3",
            ),
        ],
    )
    def test_override_must_fit_base(self, text: str, reason: str) -> None:
        """An override with a typo, a plural mismatch or another language is refused."""
        with pytest.raises(CatalogError, match=reason):
            Catalog.from_po_text(text, base=get_catalog("ru"), source="override.po")

    @pytest.mark.parametrize(
        ("header", "entry", "reason"),
        [
            ("Plural-Forms: nplurals=2; plural=(n != 1);", "", "no Language"),
            ("Language: ru", "", "no Plural-Forms"),
            ("Language: ru\\nPlural-Forms: nplurals=2", "", "malformed Plural-Forms"),
            ("Language: ru\\nPlural-Forms: nplurals=2; plural=(n !!= 1);", "", "bad plural"),
            ("Language: ru\\nPlural-Forms: nplurals=2; plural=n;", "", "gives form 2 for n=2"),
            ("Language: ru\\nPlural-Forms: nplurals=0; plural=0;", "", "nplurals >= 1"),
            (
                "Language: ru\\nContent-Type: text/plain; charset=CP1251\\n"
                "Plural-Forms: nplurals=1; plural=0;",
                "",
                "charset must be UTF-8",
            ),
            (
                "Language: ru\\nPlural-Forms: nplurals=1; plural=0;",
                'msgid "a"\nmsgstr "b"\n',
                "no msgctxt",
            ),
            (
                "Language: ru\\nPlural-Forms: nplurals=1; plural=0;",
                'msgctxt "k"\nmsgid "a"\nmsgstr "b"\n\nmsgctxt "k"\nmsgid "c"\nmsgstr "d"\n',
                "duplicate key 'k'",
            ),
            (
                "Language: ru\\nPlural-Forms: nplurals=1; plural=0;",
                'msgctxt "k"\nmsgid "{a}"\nmsgstr "{0}"\n',
                r"plain \{name\}",
            ),
            (
                "Language: ru\\nPlural-Forms: nplurals=1; plural=0;",
                'msgctxt "k"\nmsgid "{a}"\nmsgstr "{a!r}"\n',
                r"plain \{name\}",
            ),
            (
                "Language: ru\\nPlural-Forms: nplurals=1; plural=0;",
                'msgctxt "k"\nmsgid "{a}"\nmsgstr "{a.__class__}"\n',
                r"plain \{name\}",
            ),
            (
                "Language: ru\\nPlural-Forms: nplurals=1; plural=0;",
                'msgctxt "k"\nmsgid "{a}"\nmsgstr "{a"\n',
                "bad braces",
            ),
        ],
    )
    def test_invalid_catalog(self, header: str, entry: str, reason: str) -> None:
        """Header and message problems are CatalogErrors naming the problem."""
        text = f'msgid ""\nmsgstr "{header}\\n"\n\n{entry}'
        with pytest.raises(CatalogError, match=reason):
            Catalog.from_po_text(text, source="mine.po")

    def test_text_must_be_str(self) -> None:
        """Bytes are refused with a hint to decode them."""
        with pytest.raises(TypeError, match="decode the file as UTF-8"):
            Catalog.from_po_text(cast(str, b'msgid ""'))
