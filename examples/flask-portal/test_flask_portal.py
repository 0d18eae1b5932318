"""The Flask portal, end to end through Flask's test client, as a browser would use it.

register -> confirm from the captured letter -> log in -> forgot -> reset -> the other
session is refused; then the phone given at sign-up is proven by its code (only a proven
phone receives reset codes) and the reset by SMS code goes likewise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import flask_portal
import pytest
from flask import Flask
from flask.testing import FlaskClient

from kaspi_identity.delivery import extract_code, extract_link

EMAIL = "aliya@example.kz"
PHONE = "+77011234567"
FIRST, SECOND, THIRD = "Tengri-Sky-2026!", "Altyn-Orda-1465!", "Baiterek-Astana-97"
PORTAL = "https://portal.example.kz"


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    monkeypatch.setenv("PORTAL_DB", str(tmp_path / "portal.sqlite3"))
    # The test sends the phone's code and a reset code back to back; a person waits the
    # cooldown between two SMS to one number (60 seconds by default).
    quick = replace(flask_portal.SETTINGS, sms_cooldown=timedelta(milliseconds=1))
    monkeypatch.setattr(flask_portal, "SETTINGS", quick)
    flask_portal.OUTBOX.clear()
    app = flask_portal.create_app()
    yield app
    with app.app_context():
        flask_portal.identity.service.storage.close()


def post(client: FlaskClient, path: str, body: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """POST JSON over https, as the browser's front end does: the status and the answer."""
    answer = client.post(path, json=body, base_url=PORTAL)
    data = answer.get_json()
    assert isinstance(data, dict)
    return answer.status_code, data


def me(client: FlaskClient) -> int:
    """The status of ``/auth/me``: 200 while the session is live."""
    return client.get("/auth/me", base_url=PORTAL).status_code


def open_link(client: FlaskClient, link: str) -> dict[str, object]:
    """Follow a letter's link as a browser does: the redirect leaves the token behind."""
    opened = client.get(link, follow_redirects=True)
    assert "token" not in opened.request.url
    data = opened.get_json()
    assert isinstance(data, dict)
    return data


def test_every_flow_end_to_end(app: Flask) -> None:
    """Register, confirm, log in on two browsers, reset by link: the other session ends."""
    laptop, phone = app.test_client(), app.test_client()
    form = {"email": EMAIL, "phone": PHONE, "password": FIRST, "confirmation": FIRST}
    assert post(laptop, "/auth/register", form)[0] == 202

    link = extract_link(flask_portal.OUTBOX.last_email(to=EMAIL))
    assert open_link(laptop, link) == {"link": "confirm", "pending": True}
    status, confirmed = post(laptop, "/auth/confirm", {})
    assert (status, confirmed["message"]) == (200, "The e-mail address is confirmed.")

    for client in (laptop, phone):
        status, login = post(client, "/auth/login", {"identifier": EMAIL, "password": FIRST})
        assert (status, login["account_id"]) == (200, confirmed["account_id"])
    assert me(phone) == 200

    assert post(laptop, "/auth/password/forgot", {"identifier": EMAIL})[0] == 202
    open_link(laptop, extract_link(flask_portal.OUTBOX.last_email(to=EMAIL)))
    status, _ = post(laptop, "/auth/password/reset", {"password": SECOND, "confirmation": SECOND})
    assert status == 200

    assert me(phone) == 401  # the other session ended
    assert me(laptop) == 401  # and this one: log in again
    assert post(laptop, "/auth/login", {"identifier": EMAIL, "password": SECOND})[0] == 200

    # The phone given at sign-up is proven by the code sent to it, then it can reset.
    assert post(laptop, "/auth/phone", {"password": SECOND, "phone": PHONE})[0] == 202
    proof = extract_code(flask_portal.OUTBOX.last_sms(to=PHONE))
    assert post(laptop, "/auth/phone/verify", {"code": proof})[0] == 200
    assert me(laptop) == 200  # this session took the new stamp

    # The reset by SMS code, likewise.
    assert post(phone, "/auth/login", {"identifier": PHONE, "password": SECOND})[0] == 200
    assert post(laptop, "/auth/password/forgot/sms", {"phone": "8 701 123 45 67"})[0] == 202
    code = extract_code(flask_portal.OUTBOX.last_sms(to=PHONE))
    status, grant = post(laptop, "/auth/password/verify-code", {"phone": PHONE, "code": code})
    reset = {"token": grant["grant"], "password": THIRD, "confirmation": THIRD}
    assert post(laptop, "/auth/password/reset", reset)[0] == 200
    assert me(phone) == 401
    assert post(laptop, "/auth/login", {"identifier": PHONE, "password": THIRD})[0] == 200


def test_the_glue_is_at_most_15_lines() -> None:
    """Below the settings, the portal is at most 15 lines of code, its imports counted."""
    source = Path(flask_portal.__file__).read_text(encoding="utf-8")
    settings, glue = source.split("# -- the glue")
    imports = [
        line
        for line in settings.splitlines()
        if line.startswith(("from flask", "from starlette", "from kaspi_identity.contrib"))
    ]
    code = [line for line in glue.splitlines()[1:] if line.strip()]
    assert len(imports) + len(code) <= 15
