r"""A small, strict reader of gettext ``.po`` / ``.pot`` text.

Only what our catalogs use is understood, and anything else is an error naming the source and
line, never a guess:

- comments: ``#`` (translator), ``#.`` (extracted), ``#:`` (reference), ``#|`` (previous),
  ``#,`` (flags, kept on the entry) and ``#~`` (obsolete entries, skipped);
- keywords ``msgctxt``, ``msgid``, ``msgid_plural``, ``msgstr`` and ``msgstr[N]``, in that
  order, each followed by a double-quoted string, continued by lines holding only a string;
- escapes ``\\ \" \n \t \r \a \b \f \v`` (any other escape is rejected);
- the header entry (``msgid ""`` without context), first in the file, as ``Name: value`` lines.

Blank lines separate entries. A duplicate (context, msgid) pair is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kaspi_identity._errors import CatalogError

__all__ = ["CatalogError", "PoEntry", "PoFile", "parse_po"]


@dataclass(frozen=True, slots=True)
class PoEntry:
    """One message of a ``.po`` file.

    ``msgstr`` holds one string for a singular entry and one per plural form (``msgstr[0]``,
    ``msgstr[1]``, ...) for an entry with ``msgid_plural``. ``line`` is where the entry's first
    keyword stands.
    """

    msgctxt: str | None
    msgid: str
    msgid_plural: str | None
    msgstr: tuple[str, ...]
    flags: frozenset[str]
    line: int


@dataclass(frozen=True, slots=True)
class PoFile:
    """A parsed ``.po`` file: its header fields and its entries (the header entry excluded)."""

    source: str
    header: dict[str, str]
    header_line: int | None
    entries: tuple[PoEntry, ...]


_KEYWORD = re.compile(r"(msgctxt|msgid_plural|msgid|msgstr)(?:\[(\d+)\])?[ \t]+(.*)")
_ESCAPES = {
    "\\": "\\",
    '"': '"',
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
}
_HEADER_FIELD = re.compile(r"([A-Za-z][A-Za-z0-9-]*):[ \t]*(.*)")


def _unquote(literal: str, source: str, line: int) -> str:
    """Return the value of a C-style double-quoted string literal, or raise CatalogError."""
    if len(literal) < 2 or literal[0] != '"' or literal[-1] != '"':
        raise CatalogError(source, line, f"expected a double-quoted string, got {literal!r}")
    body = literal[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            if i + 1 >= len(body):
                raise CatalogError(source, line, "string ends with a lone backslash")
            escaped = body[i + 1]
            if escaped not in _ESCAPES:
                raise CatalogError(source, line, f"unsupported escape sequence '\\{escaped}'")
            out.append(_ESCAPES[escaped])
            i += 2
        elif char == '"':
            raise CatalogError(source, line, "unescaped '\"' inside a string (write \\\")")
        else:
            out.append(char)
            i += 1
    return "".join(out)


class _Builder:
    """The entry being read: keywords seen so far and their (possibly continued) strings."""

    def __init__(self) -> None:
        self.line: int | None = None
        self.flags: set[str] = set()
        self.msgctxt: list[str] | None = None
        self.msgid: list[str] | None = None
        self.msgid_plural: list[str] | None = None
        self.msgstr: list[str] | None = None
        self.msgstr_plural: list[list[str]] = []
        self.last: list[str] | None = None  # where a continuation line appends

    @property
    def started(self) -> bool:
        return self.line is not None

    @property
    def complete(self) -> bool:
        return self.msgstr is not None or bool(self.msgstr_plural)


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.header: dict[str, str] | None = None
        self.header_line: int | None = None
        self.entries: list[PoEntry] = []
        self.seen: dict[tuple[str | None, str], int] = {}
        self.current = _Builder()

    def error(self, line: int | None, reason: str) -> CatalogError:
        return CatalogError(self.source, line, reason)

    def finish_entry(self, lineno: int) -> None:
        cur = self.current
        if not cur.started:
            # Flags with no entry after them (e.g. before a blank line) belong to nothing.
            cur.flags.clear()
            return
        if not cur.complete or cur.msgid is None or cur.line is None:
            raise self.error(lineno, f"entry starting on line {cur.line} has no msgstr")
        msgctxt = None if cur.msgctxt is None else "".join(cur.msgctxt)
        msgid = "".join(cur.msgid)
        if cur.msgstr is not None:
            msgstr: tuple[str, ...] = ("".join(cur.msgstr),)
        else:
            msgstr = tuple("".join(parts) for parts in cur.msgstr_plural)
        if msgctxt is None and msgid == "":
            self.add_header(cur.line, cur.msgid_plural is not None, msgstr)
        else:
            previous = self.seen.get((msgctxt, msgid))
            if previous is not None:
                raise self.error(cur.line, f"duplicate entry (first defined on line {previous})")
            self.seen[(msgctxt, msgid)] = cur.line
            plural = None if cur.msgid_plural is None else "".join(cur.msgid_plural)
            self.entries.append(
                PoEntry(msgctxt, msgid, plural, msgstr, frozenset(cur.flags), cur.line)
            )
        self.current = _Builder()

    def add_header(self, line: int, plural: bool, msgstr: tuple[str, ...]) -> None:
        if self.header is not None:
            raise self.error(line, f"second header entry (first on line {self.header_line})")
        if self.entries:
            raise self.error(line, 'the header entry (msgid "") must come first')
        if plural:
            raise self.error(line, "the header entry cannot have msgid_plural")
        fields: dict[str, str] = {}
        for field in msgstr[0].split("\n"):
            if not field.strip():
                continue
            match = _HEADER_FIELD.fullmatch(field)
            if match is None:
                raise self.error(line, f"malformed header field {field!r} (want 'Name: value')")
            fields[match.group(1)] = match.group(2).strip()
        self.header = fields
        self.header_line = line

    def keyword(self, lineno: int, name: str, index: str | None, literal: str) -> None:
        value = [_unquote(literal, self.source, lineno)]
        cur = self.current
        if index is not None and name != "msgstr":
            raise self.error(lineno, f"{name} takes no [index]")
        if name in ("msgctxt", "msgid") and cur.complete:
            self.finish_entry(lineno)
            cur = self.current
        if name == "msgctxt":
            if cur.msgctxt is not None or cur.msgid is not None:
                raise self.error(lineno, "msgctxt must come first in an entry, and only once")
            cur.msgctxt = value
        elif name == "msgid":
            if cur.msgid is not None:
                raise self.error(lineno, "second msgid in one entry (missing msgstr?)")
            cur.msgid = value
        elif name == "msgid_plural":
            if cur.msgid is None or cur.msgid_plural is not None or cur.complete:
                raise self.error(lineno, "msgid_plural must follow msgid, once, before msgstr")
            cur.msgid_plural = value
        elif index is None:
            if cur.msgid is None or cur.complete:
                raise self.error(lineno, "msgstr must follow msgid, once")
            if cur.msgid_plural is not None:
                raise self.error(lineno, "an entry with msgid_plural needs msgstr[N], not msgstr")
            cur.msgstr = value
        else:
            if cur.msgid_plural is None:
                raise self.error(lineno, "msgstr[N] needs msgid_plural (use plain msgstr)")
            expected = len(cur.msgstr_plural)
            if int(index) != expected:
                raise self.error(lineno, f"expected msgstr[{expected}], got msgstr[{index}]")
            cur.msgstr_plural.append(value)
        if cur.line is None:
            cur.line = lineno
        cur.last = value

    def feed(self, lineno: int, raw: str) -> None:
        line = raw.strip()
        cur = self.current
        if not line:
            self.finish_entry(lineno)
        elif line.startswith("#"):
            if cur.started:
                if not cur.complete:
                    raise self.error(lineno, "comment inside an unfinished entry")
                self.finish_entry(lineno)
            if line.startswith("#,"):
                self.current.flags.update(f.strip() for f in line[2:].split(",") if f.strip())
            # Other comments (and obsolete "#~" entries) carry nothing we use.
        elif line.startswith('"'):
            if cur.last is None:
                raise self.error(lineno, "string continuation without a keyword before it")
            cur.last.append(_unquote(line, self.source, lineno))
        else:
            match = _KEYWORD.fullmatch(line)
            if match is None:
                raise self.error(lineno, f"unexpected text {line[:40]!r}")
            self.keyword(lineno, match.group(1), match.group(2), match.group(3))


def parse_po(text: str, *, source: str = "<string>") -> PoFile:
    """Parse the text of a ``.po`` or ``.pot`` file.

    ``source`` names the text in error messages (a file path, or a label).

    Raises:
        CatalogError: the text is not well-formed; the message names ``source`` and the line.

    """
    if text.startswith("\ufeff"):
        text = text[1:]
    parser = _Parser(source)
    lines = text.split("\n")
    for lineno, raw in enumerate(lines, start=1):
        parser.feed(lineno, raw)
    parser.finish_entry(len(lines))
    return PoFile(
        source=source,
        header=parser.header if parser.header is not None else {},
        header_line=parser.header_line,
        entries=tuple(parser.entries),
    )
