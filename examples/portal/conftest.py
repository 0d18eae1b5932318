"""Fixtures of the portal's tests: live portals served by uvicorn, and one headless Chromium.

Playwright drives Debian's ``chromium`` (``KASPI_IDENTITY_CHROMIUM``, else ``chromium`` on
the PATH); browsers are never downloaded. Without one the browser tests skip, saying why;
with ``CI=true`` they fail. Screenshots go to ``KASPI_IDENTITY_SCREENSHOTS`` (default: a
``portal-screenshots`` folder in pytest's temporary directory).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from kaspi_identity import PasswordPolicy
from kaspi_identity.hashing import TESTS_ONLY, PasswordHasher
from kaspi_identity.services import RateLimit

#: The browser tests come from one address: the per-client limits are set wide for them.
WIDE = RateLimit(10_000, timedelta(minutes=1))
TEST_SETTINGS: dict[str, Any] = {
    "login_per_client": WIDE,
    "register_per_client": WIDE,
    "reset_per_client": WIDE,
    "sms_per_client_daily": 10_000,
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class LivePortal:
    """A portal served by uvicorn in a thread: ``url`` and the app."""

    url: str
    app: Any
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        """Ask uvicorn to stop and wait for it."""
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_portal(preset: str, db: Path) -> LivePortal:
    """Serve a development-mode portal under ``preset`` on a free port of 127.0.0.1."""
    import uvicorn
    from kaspi_portal import PortalConfig, create_app

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    config = PortalConfig(
        policy=PasswordPolicy.preset(preset),
        policy_name=preset,
        base_url=url,
        db=str(db),
        dev=True,
        hasher=PasswordHasher(TESTS_ONLY),
        settings=TEST_SETTINGS,
    )
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="none")
    )
    thread = threading.Thread(target=server.run, name=f"portal-{preset}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the {preset} portal did not start")
        time.sleep(0.05)
    return LivePortal(url, app, server, thread)


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
