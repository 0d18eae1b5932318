"""The FastAPI portal, end to end through FastAPI's test client, as a browser would use it.

register -> confirm from the captured letter -> log in -> forgot -> reset -> the other
session is refused; then the phone given at sign-up is proven by its code (only a proven
phone receives reset codes) and the reset by SMS code goes likewise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import fastapi_portal
import pytest
from fastapi.testclient import TestClient

from kaspi_identity.delivery import extract_code, extract_link

PORTAL = "https://portal.example.kz"
EMAIL = "aliya@example.kz"
PHONE = "+77011234567"
FIRST, SECOND, THIRD = "Tengri-Sky-2026!", "Altyn-Orda-1465!", "Baiterek-Astana-97"


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("PORTAL_DB", str(tmp_path / "portal.sqlite3"))
    # The test sends the phone's code and a reset code back to back; a person waits the
    # cooldown between two SMS to one number (60 seconds by default).
    quick = replace(fastapi_portal.SETTINGS, sms_cooldown=timedelta(milliseconds=1))
    monkeypatch.setattr(fastapi_portal, "SETTINGS", quick)
    fastapi_portal.OUTBOX.clear()
    with TestClient(fastapi_portal.app, base_url=PORTAL) as laptop:
        yield laptop


def browser(client: TestClient) -> TestClient:
    """Another browser on the same running portal: its own cookies."""
    return TestClient(client.app, base_url=PORTAL)


def test_every_flow_end_to_end(app: TestClient) -> None:
    """Register, confirm, log in on two browsers, reset by link: the other session ends."""
    laptop, phone = app, browser(app)
    form = {"email": EMAIL, "phone": PHONE, "password": FIRST, "confirmation": FIRST}
    assert laptop.post("/auth/register", json=form).status_code == 202

    opened = laptop.get(extract_link(fastapi_portal.OUTBOX.last_email(to=EMAIL)))
    assert opened.json() == {"link": "confirm", "pending": True}
    assert "token" not in str(opened.url)
    assert laptop.post("/auth/confirm", json={}).json()["ok"] is True

    for client in (laptop, phone):
        login = client.post("/auth/login", json={"identifier": EMAIL, "password": FIRST})
        assert login.json()["email_confirmed"] is True
    assert phone.get("/auth/me").status_code == 200

    assert laptop.post("/auth/password/forgot", json={"identifier": EMAIL}).status_code == 202
    laptop.get(extract_link(fastapi_portal.OUTBOX.last_email(to=EMAIL)))
    done = laptop.post("/auth/password/reset", json={"password": SECOND, "confirmation": SECOND})
    assert done.json()["ok"] is True

    assert phone.get("/auth/me").status_code == 401  # the other session ended
    assert laptop.get("/auth/me").status_code == 401  # and this one too: log in again
    fresh = laptop.post("/auth/login", json={"identifier": EMAIL, "password": SECOND})
    assert fresh.status_code == 200

    # The phone given at sign-up is proven by the code sent to it, then it can reset.
    asked = laptop.post("/auth/phone", json={"password": SECOND, "phone": PHONE})
    assert asked.status_code == 202
    proof = extract_code(fastapi_portal.OUTBOX.last_sms(to=PHONE))
    assert laptop.post("/auth/phone/verify", json={"code": proof}).json()["ok"] is True
    assert laptop.get("/auth/me").status_code == 200  # this session took the new stamp

    # The reset by SMS code, likewise.
    assert phone.post("/auth/login", json={"identifier": PHONE, "password": SECOND}).is_success
    assert laptop.post("/auth/password/forgot/sms", json={"phone": "8 701 123 45 67"}).is_success
    code = extract_code(fastapi_portal.OUTBOX.last_sms(to=PHONE))
    grant = laptop.post("/auth/password/verify-code", json={"phone": PHONE, "code": code})
    reset = {"token": grant.json()["grant"], "password": THIRD, "confirmation": THIRD}
    assert laptop.post("/auth/password/reset", json=reset).json()["ok"] is True
    assert phone.get("/auth/me").status_code == 401
    assert laptop.post("/auth/login", json={"identifier": PHONE, "password": THIRD}).is_success


def test_the_glue_is_at_most_15_lines() -> None:
    """Below the settings, the portal is at most 15 lines of code, its imports counted."""
    source = Path(fastapi_portal.__file__).read_text(encoding="utf-8")
    settings, glue = source.split("# -- the glue")
    imports = [
        line
        for line in settings.splitlines()
        if line.startswith(("from fastapi", "from starlette", "from kaspi_identity.contrib"))
    ]
    code = [line for line in glue.splitlines()[1:] if line.strip()]
    assert len(imports) + len(code) <= 15
