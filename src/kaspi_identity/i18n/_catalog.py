"""Message catalogs: language tags, loading and caching of the shipped ``.po`` files, rendering."""

from __future__ import annotations

import re
import string
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

from kaspi_identity._errors import UnknownLanguageError
from kaspi_identity.i18n._po import CatalogError, PoFile, parse_po

__all__ = [
    "DEFAULT_LANGUAGE",
    "SUPPORTED_LANGUAGES",
    "Catalog",
    "get_catalog",
    "normalize_language",
    "render",
]

SUPPORTED_LANGUAGES: tuple[str, ...] = ("en", "ru", "kk")
"""The languages a catalog ships for: English, Russian and Kazakh (Cyrillic script)."""

DEFAULT_LANGUAGE = "en"
"""The language a host may choose when it knows nothing about the user; never applied silently."""

# The script each shipped catalog is written in: "kk-Latn" asks for something we do not have.
_SCRIPTS = {"en": "latn", "ru": "cyrl", "kk": "cyrl"}
# A BCP 47 tag or a POSIX locale name: "ru", "ru-RU", "kk_Cyrl_KZ", "ru_RU.UTF-8".
_TAG = re.compile(r"([A-Za-z]{2,3})((?:[-_][A-Za-z0-9]{1,8})*)(?:\.[A-Za-z0-9-]{1,20})?")
_PLURAL_FORMS = re.compile(r"nplurals\s*=\s*(\d+)\s*;\s*plural\s*=\s*([^;]+?)\s*;?\s*")
_CHARSET = re.compile(r"charset\s*=\s*([^\s;]+)", re.IGNORECASE)
# Plural rules are checked over this range when a catalog loads, so a rule that picks a
# form the catalog does not have fails at load time rather than when a user sees it.
_PLURAL_CHECK_RANGE = range(1001)
_PACKAGE = "kaspi_identity.i18n"
_DOMAIN = "kaspi_identity"
_FORMATTER = string.Formatter()


def normalize_language(lang: str) -> str:
    """Return the base tag (``"en"``, ``"ru"`` or ``"kk"``) of a language tag or locale name.

    Case and region do not matter, ``-`` and ``_`` both separate subtags and a POSIX codeset is
    ignored: ``"RU"``, ``"ru-RU"``, ``"ru_KZ"``, ``"kk-KZ"``, ``"kk_Cyrl_KZ"``, ``"en-US"`` and
    ``"ru_RU.UTF-8"`` are all accepted. A script subtag must name the script the catalog is
    written in, so ``"kk-Latn"`` is rejected: Kazakh ships in Cyrillic only.

    There is no silent fallback: a language without a catalog is an error, so the host
    decides what to show (for example :data:`DEFAULT_LANGUAGE`) instead of this library.

    Raises:
        UnknownLanguageError: ``lang`` is not a ``str``, is malformed, or names a language
            that has no catalog (``""``, ``"de"``, ``"fr-FR"``).

    """
    match = _TAG.fullmatch(lang) if isinstance(lang, str) else None
    if match is None:
        raise UnknownLanguageError(lang, SUPPORTED_LANGUAGES)
    base = match.group(1).lower()
    if base not in _SCRIPTS:
        raise UnknownLanguageError(lang, SUPPORTED_LANGUAGES)
    for subtag in re.split(r"[-_]", match.group(2))[1:]:
        if len(subtag) == 4 and subtag.isalpha() and subtag.lower() != _SCRIPTS[base]:
            raise UnknownLanguageError(lang, SUPPORTED_LANGUAGES)
    return base


@dataclass(frozen=True, slots=True)
class _PluralRule:
    nplurals: int
    expression: str
    select: Callable[[int], int]


@dataclass(frozen=True, slots=True)
class _Message:
    plural: bool
    forms: tuple[str, ...]


def _check_count(count: object) -> int:
    if isinstance(count, bool) or not isinstance(count, int):
        raise TypeError(f"count must be an int, not {type(count).__name__}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return count


class Catalog:
    """The messages of one language, found by their stable key (the ``.po`` ``msgctxt``).

    Get the shipped catalogs with :func:`get_catalog`; build your own (or override a few
    messages of a shipped one) with :meth:`from_po_text`. A catalog is immutable and safe to
    share between threads.
    """

    __slots__ = ("_language", "_messages", "_rule")

    def __init__(
        self, *, language: str, messages: Mapping[str, _Message], rule: _PluralRule
    ) -> None:
        """Private: use :func:`get_catalog` or :meth:`Catalog.from_po_text`."""
        self._language = language
        self._messages: Mapping[str, _Message] = MappingProxyType(dict(messages))
        self._rule = rule

    @classmethod
    def from_po_text(
        cls, text: str, /, *, base: Catalog | None = None, source: str = "<string>"
    ) -> Catalog:
        """Build a catalog from the text of a ``.po`` file.

        Without ``base`` the text is the whole catalog: its header must give ``Language`` and
        ``Plural-Forms``. With ``base`` (for example ``get_catalog("ru")``) the text overrides
        only the messages it translates and every other key comes from ``base``; each key in
        the text must exist in ``base`` with the same plural-ness, and the base's plural rule
        is kept (a ``Plural-Forms`` header, if any, must have the same ``nplurals``).

        As in gettext, fuzzy entries and entries with an empty ``msgstr`` are skipped.
        ``source`` names the text in error messages.

        Raises:
            CatalogError: the text is malformed or does not fit ``base``; the message names
                ``source`` and the line.
            TypeError: ``text`` is not a ``str``.

        """
        if not isinstance(text, str):
            raise TypeError(
                f"text must be str (decode the file as UTF-8), not {type(text).__name__}"
            )
        po = parse_po(text, source=source)
        language = po.header.get("Language", "")
        if base is not None:
            if language and re.split(r"[-_.@]", language)[0].lower() != base.language:
                raise CatalogError(
                    source,
                    po.header_line,
                    f"Language {language!r} does not match the base catalog's {base.language!r}",
                )
            language = base.language
        elif not language:
            raise CatalogError(source, po.header_line, "the header has no Language field")
        return _build(po, language=language, base=base)

    @property
    def language(self) -> str:
        """The language of the messages, for example ``"ru"``."""
        return self._language

    def keys(self) -> frozenset[str]:
        """Return the key of every message in this catalog."""
        return frozenset(self._messages)

    def plural_index(self, count: int) -> int:
        """Return which plural form (``msgstr[N]``) this language uses for ``count``.

        Raises:
            TypeError: ``count`` is not an ``int`` (``bool`` is refused too).
            ValueError: ``count`` is negative.

        """
        return self._rule.select(_check_count(count))

    def message(self, key: str, /, *, count: int | None = None, **params: object) -> str:
        """Render the message ``key`` with ``params`` filled in.

        A plural message needs ``count``: it picks the plural form and is also available to
        the text as ``{count}``. Parameters the message does not use are ignored.

        Raises:
            KeyError: no message has this key, or the message needs a parameter that was not
                passed (both are programming errors; the message names key and parameter).
            TypeError: a plural message was rendered without ``count``, or ``count`` is not
                an ``int``.
            ValueError: ``count`` is negative.

        """
        try:
            entry = self._messages[key]
        except KeyError:
            raise KeyError(
                f"no message with key {key!r} in the {self._language!r} catalog"
            ) from None
        if count is not None:
            params["count"] = _check_count(count)
        if entry.plural:
            if count is None:
                raise TypeError(f"message {key!r} is a plural message: pass count=")
            text = entry.forms[self._rule.select(count)]
        else:
            text = entry.forms[0]
        try:
            return text.format_map(params)
        except KeyError as exc:
            raise KeyError(
                f"message {key!r} needs the parameter {exc.args[0]!r}; pass it as a keyword"
            ) from None

    def __repr__(self) -> str:
        return f"<Catalog {self._language!r}: {len(self._messages)} messages>"


def _placeholders(text: str, source: str, line: int, key: str) -> frozenset[str]:
    """Return the ``{name}`` fields of ``text``; anything but a plain name is an error."""
    try:
        parsed = list(_FORMATTER.parse(text))
    except ValueError as exc:
        raise CatalogError(source, line, f"message {key!r}: bad braces ({exc})") from None
    names: set[str] = set()
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise CatalogError(
                source, line, f"message {key!r}: a placeholder must be a plain {{name}}"
            )
        names.add(field)
    return frozenset(names)


def _parse_plural_forms(value: str, source: str, line: int | None) -> _PluralRule:
    match = _PLURAL_FORMS.fullmatch(value.strip())
    if match is None:
        raise CatalogError(
            source, line, f"malformed Plural-Forms {value!r} (want 'nplurals=N; plural=EXPR;')"
        )
    nplurals = int(match.group(1))
    expression = match.group(2)
    try:
        import gettext  # only to compile a Plural-Forms rule, once per catalog

        select = gettext.c2py(expression)
    except ValueError as exc:
        raise CatalogError(source, line, f"bad plural expression {expression!r}: {exc}") from None
    if nplurals < 1:
        raise CatalogError(source, line, "Plural-Forms needs nplurals >= 1")
    for n in _PLURAL_CHECK_RANGE:
        index = select(n)
        if not 0 <= index < nplurals:
            raise CatalogError(
                source, line, f"plural expression gives form {index} for n={n}, nplurals={nplurals}"
            )
    return _PluralRule(nplurals, expression, select)


def _build(po: PoFile, *, language: str, base: Catalog | None) -> Catalog:
    source, header_line = po.source, po.header_line
    charset = _CHARSET.search(po.header.get("Content-Type", ""))
    if charset is not None and charset.group(1).lower().replace("-", "") != "utf8":
        raise CatalogError(source, header_line, f"charset must be UTF-8, not {charset.group(1)}")
    plural_forms = po.header.get("Plural-Forms")
    if base is not None:
        rule = base._rule
        if plural_forms is not None:
            own = _parse_plural_forms(plural_forms, source, header_line)
            if own.nplurals != rule.nplurals:
                raise CatalogError(
                    source,
                    header_line,
                    f"nplurals={own.nplurals} differs from the base catalog's {rule.nplurals}",
                )
        messages = dict(base._messages)
    elif plural_forms is None:
        raise CatalogError(source, header_line, "the header has no Plural-Forms field")
    else:
        rule = _parse_plural_forms(plural_forms, source, header_line)
        messages = {}

    seen: dict[str, int] = {}
    for entry in po.entries:
        key = entry.msgctxt
        if key is None:
            raise CatalogError(source, entry.line, "entry has no msgctxt (its message key)")
        if key in seen:
            raise CatalogError(
                source, entry.line, f"duplicate key {key!r} (first on line {seen[key]})"
            )
        seen[key] = entry.line
        plural = entry.msgid_plural is not None
        if base is not None:
            if key not in base._messages:
                raise CatalogError(source, entry.line, f"unknown key {key!r}: not in the base")
            if base._messages[key].plural != plural:
                raise CatalogError(
                    source, entry.line, f"message {key!r}: plural-ness differs from the base"
                )
        if "fuzzy" in entry.flags or not all(entry.msgstr):
            continue  # untranslated: skipped, as gettext's msgfmt does
        allowed = _placeholders(entry.msgid, source, entry.line, key)
        if entry.msgid_plural is not None:
            allowed |= _placeholders(entry.msgid_plural, source, entry.line, key)
        for form in entry.msgstr:
            unknown = _placeholders(form, source, entry.line, key) - allowed
            if unknown:
                raise CatalogError(
                    source,
                    entry.line,
                    f"message {key!r}: unknown placeholder(s) {', '.join(sorted(unknown))}",
                )
        if plural and len(entry.msgstr) != rule.nplurals:
            raise CatalogError(
                source,
                entry.line,
                f"message {key!r} has {len(entry.msgstr)} plural forms, nplurals={rule.nplurals}",
            )
        messages[key] = _Message(plural, entry.msgstr)
    return Catalog(language=language, messages=messages, rule=rule)


def _read_resource(*parts: str) -> tuple[str, str]:
    """Return ``(text, source)`` of a file under the package, wherever it is installed."""
    source = "/".join(("kaspi_identity", "i18n", *parts))
    resource = resources.files(_PACKAGE)
    for part in parts:
        resource = resource / part
    try:
        data = resource.read_bytes()
    except FileNotFoundError:
        raise CatalogError(source, None, "file is missing from the installed package") from None
    try:
        return data.decode("utf-8"), source
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CatalogError(source, line, "not valid UTF-8") from None


def _load_builtin(language: str) -> Catalog:
    """Read and parse the shipped catalog of ``language`` (a normalised tag)."""
    text, source = _read_resource("locale", language, "LC_MESSAGES", f"{_DOMAIN}.po")
    po = parse_po(text, source=source)
    if po.header.get("Language") != language:
        raise CatalogError(source, po.header_line, f"header Language must be {language!r}")
    return _build(po, language=language, base=None)


_cache: dict[str, Catalog] = {}
_cache_lock = threading.Lock()


def get_catalog(lang: str) -> Catalog:
    """Return the shipped catalog of ``lang``, parsed on first use and cached.

    ``lang`` goes through :func:`normalize_language` first, so ``"ru-KZ"`` gives the Russian
    catalog. Safe to call from many threads: each file is parsed once.

    Raises:
        UnknownLanguageError: no catalog for ``lang`` (there is no fallback).
        CatalogError: the shipped file is damaged (a packaging bug).

    """
    language = normalize_language(lang)
    catalog = _cache.get(language)
    if catalog is None:
        with _cache_lock:
            catalog = _cache.get(language)
            if catalog is None:
                catalog = _load_builtin(language)
                _cache[language] = catalog
    return catalog


def _clear_cache() -> None:
    """Forget every loaded catalog (for tests)."""
    with _cache_lock:
        _cache.clear()


def render(key: str, lang: str, /, *, count: int | None = None, **params: object) -> str:
    """Render message ``key`` in language ``lang``: ``get_catalog(lang).message(...)``.

    Raises:
        UnknownLanguageError: no catalog for ``lang``.
        KeyError: unknown ``key`` or a missing parameter.
        TypeError: a plural message without ``count``.

    """
    return get_catalog(lang).message(key, count=count, **params)
