"""Every public name has a place in docs/, and the docs' Python examples at least compile."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PUBLIC_MODULES = [
    "kaspi_identity",
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


def _python_blocks() -> list[tuple[str, int, str]]:
    blocks = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE):
            line = text.count("\n", 0, match.start()) + 1
            blocks.append((page.name, line, match.group(1)))
    return blocks


class TestDocsExamples:
    @pytest.mark.parametrize(("page", "line", "code"), _python_blocks(), ids=lambda v: str(v)[:40])
    def test_python_examples_compile(self, page: str, line: int, code: str) -> None:
        """Every ```python block in docs/ is valid Python syntax."""
        compile(code, f"{page}:{line}", "exec")
