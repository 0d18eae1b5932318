"""A live portal for the browser tests: served by uvicorn in a thread on a free port."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

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
    # A user proves the phone and then resets by it: two SMS to one number within seconds,
    # where a person waits the cooldown (60 seconds by default).
    "sms_cooldown": timedelta(milliseconds=1),
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
