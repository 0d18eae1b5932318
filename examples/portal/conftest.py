"""Fixtures of the portal's tests: live portals served by uvicorn, and one headless Chromium.

Playwright drives Debian's ``chromium`` (``KASPI_IDENTITY_CHROMIUM``, else ``chromium`` on
the PATH); browsers are never downloaded. Without one the browser tests skip, saying why;
with ``CI=true`` they fail. Screenshots go to ``KASPI_IDENTITY_SCREENSHOTS`` (default: a
``portal-screenshots`` folder in pytest's temporary directory).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from portal_live import LivePortal, start_portal


@pytest.fixture(scope="session")
def procurement(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePortal]:
    """The e-procurement / tender portal: ``kz-procurement``."""
    portal = start_portal("kz-procurement", tmp_path_factory.mktemp("procurement") / "p.db")
    yield portal
    portal.stop()


@pytest.fixture(scope="session")
def cabinet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePortal]:
    """The utility personal cabinet: ``utility-cabinet`` (the e-mail is the login)."""
    portal = start_portal("utility-cabinet", tmp_path_factory.mktemp("cabinet") / "c.db")
    yield portal
    portal.stop()


def chromium_path() -> str | None:
    """Debian's Chromium: ``KASPI_IDENTITY_CHROMIUM``, else ``chromium`` on the PATH."""
    given = os.environ.get("KASPI_IDENTITY_CHROMIUM")
    if given:
        return given if Path(given).is_file() else None
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the whole session (a fresh context per test)."""
    from playwright.sync_api import sync_playwright  # the [test] extra has it

    path = chromium_path()
    if path is None:
        reason = "no Chromium: apt-get install chromium, or set KASPI_IDENTITY_CHROMIUM"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"{reason} (CI=true: a missing browser is a failure)", pytrace=False)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=path, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests save their screenshots."""
    given = os.environ.get("KASPI_IDENTITY_SCREENSHOTS")
    folder = Path(given) if given else tmp_path_factory.mktemp("portal-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
