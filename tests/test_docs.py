"""Every public name has a place in docs/, and every Python example in docs/ runs.

How a page's examples run (``TestDocsExamples``):

- Every ```` ```python ```` block of a page runs, in page order, in **one namespace**, so a
  block may use what an earlier block of the same page imported or built. Each page gets a
  fresh namespace (a module of its own) and a fresh temporary working directory, so
  examples that create ``identity.sqlite3`` or read ``identity.toml`` touch nothing else.
- A page declares what its examples need but a reader should not see in hidden blocks,
  HTML comments that mkdocs leaves out of the rendered page::

      <!-- docs-setup
      monkeypatch.setenv("SMTP_PASSWORD", "not-a-real-password")
      -->

  (``<!-- docs-setup`` and ``-->`` each on a line of their own). The Python inside runs
  at its place in the page, in the page's namespace, where
  ``monkeypatch`` and ``tmp_path`` (pytest's fixtures) are bound. Use it for stand-ins of
  what cannot exist here (a mail server, a Redis or PostgreSQL URL, a host's own module),
  bound visibly by name, and after a block to call what the block defined or to check
  what it claims.
- ``<!-- docs-file: PATH -->`` just before a fence (of any language) writes that block's
  text to ``PATH`` in the working directory before the page's first block runs: the
  ``identity.toml`` a page shows is the one its Python reads.
- ``<!-- docs-norun: WHY -->`` just before a ```` ```python ```` block keeps it from
  running (it is still compiled). Every such block is listed in ``NOT_RUN`` below with its
  reason, and there must stay few of them.
- A line ``--8<-- "PATH"`` (pymdownx.snippets) is replaced by the file it names, as mkdocs
  does; a block that is only such a line runs with ``__file__`` set to that file.

Any other ``<!-- docs-...`` comment is an error, so a misspelt marker cannot silently turn
an example off.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import linecache
import re
import sys
import traceback
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PUBLIC_MODULES = [
    "kaspi_identity",
    "kaspi_identity.contrib.fastapi",
    "kaspi_identity.contrib.flask",
    "kaspi_identity.delivery",
    "kaspi_identity.hashing",
    "kaspi_identity.history",
    "kaspi_identity.i18n",
    "kaspi_identity.phone",
    "kaspi_identity.policy",
    "kaspi_identity.services",
    "kaspi_identity.storage",
    "kaspi_identity.storage.memory",
    "kaspi_identity.storage.sqlite",
    "kaspi_identity.testing",
    "kaspi_identity.tokens",
]

#: The ```python blocks that do not run, by page and first code line, with why. Keep it short:
#: today every block of docs/ runs.
NOT_RUN: dict[tuple[str, str], str] = {}
MAX_NOT_RUN = 3


def _docs_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(DOCS.glob("*.md")))


class TestEveryPublicNameIsDocumented:
    @pytest.mark.parametrize("module_name", PUBLIC_MODULES)
    def test_names_appear_in_docs(self, module_name: str) -> None:
        """Each name in a public module's __all__ is mentioned on some page of docs/."""
        text = _docs_text()
        module = importlib.import_module(module_name)
        missing = [
            name
            for name in module.__all__
            if name != "__version__" and not re.search(rf"\b{re.escape(name)}\b", text)
        ]
        assert missing == []


class TestDocsSite:
    def test_every_page_is_in_the_nav(self) -> None:
        """mkdocs.yml lists every page, so none is orphaned (CI builds the site --strict)."""
        nav = (DOCS.parent / "mkdocs.yml").read_text(encoding="utf-8")
        pages = {p.name for p in DOCS.glob("*.md")}
        assert {page for page in pages if page not in nav} == set()


# --------------------------------------------------------------------------- the pages


@dataclasses.dataclass(frozen=True)
class Block:
    """A fenced block, or a hidden ``docs-setup`` block, of one page."""

    page: str
    line: int  # of the block's first line of code, 1-based
    kind: str  # "fence" or "setup"
    lang: str  # the fence's language; "python" for a setup block
    code: str
    file: str | None = None  # docs-file: where the block's text is written
    not_run: str | None = None  # docs-norun: why it does not run

    @property
    def first_line(self) -> str:
        return next((line for line in self.code.splitlines() if line.strip()), "")


_SNIPPET = re.compile(r'^--8<-- "([^"\n]+)"$', flags=re.MULTILINE)
_MARKER = re.compile(r"<!-- docs-(?P<name>file|norun): (?P<arg>\S.*?) -->")


def _closing(lines: list[str], start: int, closer: str) -> int:
    """The index of the first line from ``start`` that is exactly ``closer``."""
    end = next((j for j in range(start, len(lines)) if lines[j].rstrip() == closer), None)
    if end is None:
        raise AssertionError(f"line {start}: no closing {closer!r}")
    return end


def _parse_text(name: str, text: str) -> list[Block]:
    """The fenced blocks and hidden setup blocks of page ``name``, in order, with markers."""
    lines = text.splitlines(keepends=True)
    blocks: list[Block] = []
    pending: dict[str, str] = {}
    i = 0
    while i < len(lines):
        line, where = lines[i].rstrip("\n"), f"{name}:{i + 1}"
        if line.startswith("```"):
            end = _closing(lines, i + 1, "```")
            lang = line[3:].strip()
            if "not_run" in pending and lang != "python":
                raise AssertionError(f"{where}: docs-norun stands before a {lang or 'plain'} block")
            code = "".join(lines[i + 1 : end])
            blocks.append(Block(name, i + 2, "fence", lang, code, **pending))
            pending, i = {}, end + 1
        elif line.strip() and pending:
            raise AssertionError(f"{where}: a docs-file or docs-norun marker must precede a fence")
        elif line == "<!-- docs-setup":
            end = _closing(lines, i + 1, "-->")
            blocks.append(Block(name, i + 2, "setup", "python", "".join(lines[i + 1 : end])))
            i = end + 1
        elif "<!-- docs-" in line:
            marker = _MARKER.fullmatch(line.strip())
            if marker is None:
                raise AssertionError(f"{where}: not a docs marker: {line.strip()!r}")
            pending = {"file" if marker["name"] == "file" else "not_run": marker["arg"]}
            i += 1
        else:
            i += 1
    if pending:
        raise AssertionError(f"{name}: a docs marker with no fence after it")
    return blocks


def _parse(page: Path) -> list[Block]:
    return _parse_text(page.name, page.read_text(encoding="utf-8"))


def _pages_with_python() -> list[str]:
    return [
        page.name
        for page in sorted(DOCS.glob("*.md"))
        if any(block.lang == "python" for block in _parse(page))
    ]


def _python_source(block: Block) -> tuple[str, str]:
    """The code to compile and the file name its tracebacks show (``__file__`` of a snippet)."""
    only = _SNIPPET.fullmatch(block.code.strip())
    if only is not None:  # a whole file, shown as mkdocs includes it: run as that file
        path = ROOT / only[1]
        return path.read_text(encoding="utf-8"), str(path)
    code = _SNIPPET.sub(lambda m: (ROOT / m[1]).read_text(encoding="utf-8"), block.code)
    # Tracebacks show the block alone, not the whole page as one module.
    filename = f"docs/{block.page}:{block.line}"
    linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)
    return code, filename


def _where(block: Block, filename: str, exc: BaseException) -> str:
    """The page line ``exc`` was raised on (or the snippet's own file and line)."""
    lines = [
        frame.lineno
        for frame in traceback.extract_tb(exc.__traceback__)
        if frame.filename == filename and frame.lineno is not None
    ]
    if not lines:
        return f"the {block.kind} block at docs/{block.page}:{block.line}"
    if filename != f"docs/{block.page}:{block.line}":
        return f"{filename}:{lines[-1]}, included at docs/{block.page}:{block.line}"
    return f"docs/{block.page}:{block.line + lines[-1] - 1}, in a {block.kind} block"


def run_blocks(
    name: str, blocks: list[Block], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> list[Block]:
    """Run the Python blocks of page ``name`` in one namespace; return those not run."""
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    for block in blocks:
        if block.file is not None:
            target = workdir / block.file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code, encoding="utf-8")

    module = types.ModuleType(f"docs_{Path(name).stem.replace('-', '_')}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    namespace.update(monkeypatch=monkeypatch, tmp_path=tmp_path)
    not_run = []
    try:
        for block in (b for b in blocks if b.lang == "python"):
            code, filename = _python_source(block)
            compiled = compile(code, filename, "exec", dont_inherit=True)
            if block.not_run is not None:
                not_run.append(block)
                continue
            is_file = not filename.startswith("docs/")
            namespace["__file__"] = filename if is_file else str(DOCS / name)
            try:
                exec(compiled, namespace)  # noqa: S102 - the docs' own examples
            except BaseException as exc:
                exc.add_note(f"raised at {_where(block, filename, exc)}")
                raise
    finally:
        namespace.clear()
        # What an example left open is collected now, so a ResourceWarning names this
        # page rather than whichever test happens to run next.
        gc.collect()
    return not_run


class TestDocsExamples:
    @pytest.mark.parametrize("page", _pages_with_python())
    def test_page_examples_run(
        self, page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every ```python block of the page runs, in order, with the page's declared setup."""
        not_run = run_blocks(page, _parse(DOCS / page), tmp_path, monkeypatch)
        expected = {key: why for key, why in NOT_RUN.items() if key[0] == page}
        assert {(b.page, b.first_line): b.not_run for b in not_run} == expected

    def test_blocks_not_run_are_few_and_listed(self) -> None:
        """Each docs-norun block is in NOT_RUN with its reason, and there are few of them."""
        found = {
            (block.page, block.first_line): block.not_run
            for page in sorted(DOCS.glob("*.md"))
            for block in _parse(page)
            if block.not_run is not None
        }
        assert found == NOT_RUN
        assert len(NOT_RUN) <= MAX_NOT_RUN

    def test_markers_stay_out_of_the_shown_code(self) -> None:
        """A docs marker inside a fence would be shown to readers and do nothing."""
        for page in sorted(DOCS.glob("*.md")):
            for block in _parse(page):
                assert "<!-- docs-" not in block.code, f"{page.name}:{block.line}"


_SAMPLE = """\
<!-- docs-setup
monkeypatch.setenv("DOCS_SAMPLE", "secret")
-->

<!-- docs-file: conf/app.toml -->
```toml
x = 1
```

```python
import os
from pathlib import Path

seen = (os.environ["DOCS_SAMPLE"], Path("conf/app.toml").read_text())
```

<!-- docs-norun: talks to a server -->
```python
connect_to_the_server()
```

<!-- docs-setup
assert seen == ("secret", "x = 1\\n")
-->
"""


class TestTheConvention:
    """The page runner itself, on small pages of its own."""

    def test_blocks_share_a_namespace_setup_files_and_not_run(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        blocks = _parse_text("sample.md", _SAMPLE)
        assert [(b.kind, b.lang) for b in blocks] == [
            ("setup", "python"),
            ("fence", "toml"),
            ("fence", "python"),
            ("fence", "python"),
            ("setup", "python"),
        ]
        not_run = run_blocks("sample.md", blocks, tmp_path, monkeypatch)
        assert [(b.first_line, b.not_run) for b in not_run] == [
            ("connect_to_the_server()", "talks to a server")
        ]

    def test_a_failing_block_names_its_page_line(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        page = "Text.\n\n```python\nx = 1\n\nundefined_name\n```\n"
        with pytest.raises(NameError) as caught:
            run_blocks("p.md", _parse_text("p.md", page), tmp_path, monkeypatch)
        assert caught.value.__notes__ == ["raised at docs/p.md:6, in a fence block"]

    @pytest.mark.parametrize(
        "page",
        [
            "<!-- docs-skip: typo -->\n```python\nx\n```\n",  # an unknown marker
            "<!-- docs-norun -->\n```python\nx\n```\n",  # no reason given
            "<!-- docs-norun: why -->\nText.\n```python\nx\n```\n",  # not before its fence
            "<!-- docs-norun: why -->\n```toml\nx = 1\n```\n",  # not a Python block
            "<!-- docs-setup\nx = 1\n",  # never closed
            "<!-- docs-file: a.txt -->\n",  # no fence after it
        ],
    )
    def test_a_malformed_marker_is_an_error(self, page: str) -> None:
        """A misspelt or misplaced marker fails; it cannot silently turn an example off."""
        with pytest.raises(AssertionError):
            _parse_text("p.md", page)
