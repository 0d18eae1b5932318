"""The Flask portal, end to end through Flask's test client, as a browser would use it.

register -> confirm from the captured letter -> log in -> forgot -> reset -> the other
session is refused; then the reset by SMS code likewise.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import flask_portal
import pytest
from flask import Flask
from flask.testing import FlaskClient

from kaspi_identity.delivery import extract_code, extract_link

EMAIL = "aliya@example.kz"
PHONE = "+77011234567"
FIRST, SECOND, THIRD = "Tengri-Sky-2026!", "Altyn-Orda-1465!", "Baiterek-Astana-97"
HTTPS = {"base_url": "https://portal.example.kz"}


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    monkeypatch.setenv("PORTAL_DB", str(tmp_path / "portal.sqlite3"))
    flask_portal.OUTBOX.clear()
    app = flask_portal.create_app()
    yield app
    with app.app_context():
        flask_portal.identity.service.storage.close()


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
    assert laptop.post("/auth/register", json=form, **HTTPS).status_code == 202

    link = extract_link(flask_portal.OUTBOX.last_email(to=EMAIL))
    assert open_link(laptop, link) == {"link": "confirm", "pending": True}
    confirmed = laptop.post("/auth/confirm", json={}, **HTTPS).json
    assert confirmed["message"] == "The e-mail address is confirmed."
    login = laptop.post("/auth/login", json={"identifier": EMAIL, "password": FIRST}, **HTTPS)
    assert login.json["account_id"] == confirmed["account_id"]
    login = phone.post("/auth/login", json={"identifier": EMAIL, "password": FIRST}, **HTTPS)
    assert login.json["email_confirmed"] is True
    assert phone.get("/auth/me", **HTTPS).status_code == 200

    assert (
        laptop.post("/auth/password/forgot", json={"identifier": EMAIL}, **HTTPS).status_code == 202
    )
    open_link(laptop, extract_link(flask_portal.OUTBOX.last_email(to=EMAIL)))
    reset = {"password": SECOND, "confirmation": SECOND}
    assert laptop.post("/auth/password/reset", json=reset, **HTTPS).json["ok"] is True

    assert phone.get("/auth/me", **HTTPS).status_code == 401  # the other session ended
    assert laptop.get("/auth/me", **HTTPS).status_code == 401  # and this one: log in again
    again = {"identifier": EMAIL, "password": SECOND}
    assert laptop.post("/auth/login", json=again, **HTTPS).status_code == 200

    # The reset by SMS code, likewise.
    by_phone = {"identifier": PHONE, "password": SECOND}
    assert phone.post("/auth/login", json=by_phone, **HTTPS).status_code == 200
    asked = laptop.post("/auth/password/forgot/sms", json={"phone": "8 701 123 45 67"}, **HTTPS)
    assert asked.status_code == 202
    code = extract_code(flask_portal.OUTBOX.last_sms(to=PHONE))
    grant = laptop.post("/auth/password/verify-code", json={"phone": PHONE, "code": code}, **HTTPS)
    reset = {"token": grant.json["grant"], "password": THIRD, "confirmation": THIRD}
    assert laptop.post("/auth/password/reset", json=reset, **HTTPS).json["ok"] is True
    assert phone.get("/auth/me", **HTTPS).status_code == 401
    final = {"identifier": PHONE, "password": THIRD}
    assert laptop.post("/auth/login", json=final, **HTTPS).status_code == 200
