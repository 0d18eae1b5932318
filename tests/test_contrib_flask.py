"""What only the Flask face has: the extension's set-up, config keys and the session hook.

The flows' answers are tested on both frameworks at once in test_contrib_fastapi_flask.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from kaspi_identity import UnknownLanguageError
from kaspi_identity.contrib.flask import (
    CONFIG_DEFAULTS,
    KaspiIdentity,
    current_account,
    login_required,
)
from kaspi_identity.delivery import Outbox, extract_link
from kaspi_identity.hashing import TESTS_ONLY, PasswordHasher
from kaspi_identity.services import IdentityService, IdentitySettings
from kaspi_identity.storage.memory import memory_storage

ORIGIN = "https://portal.test"
EMAIL = "aliya@example.kz"
GOOD, BETTER = "Tengri-Sky-2026!", "Altyn-Orda-1465!"
SETTINGS = IdentitySettings(
    secret_keys=(b"0123456789abcdef0123456789abcdef",),
    confirm_url=f"{ORIGIN}/auth/confirm",
    reset_url=f"{ORIGIN}/auth/password/reset",
)


def make_service(outbox: Outbox | None = None) -> IdentityService:
    outbox = outbox or Outbox()
    return IdentityService(
        memory_storage(),
        SETTINGS,
        email_sender=outbox,
        sms_sender=outbox,
        hasher=PasswordHasher(TESTS_ONLY),
    )


def make_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test-session-key", SESSION_COOKIE_SECURE=True, **config)

    @app.get("/cabinet")
    @login_required
    def cabinet() -> dict[str, str | None]:
        return {"account": current_account()}

    @app.get("/welcome")
    def welcome() -> dict[str, str | None]:
        return {"account": current_account()}

    return app


def outbox_of(service: IdentityService) -> Outbox:
    sender = service._plumbing.email_sender  # the Outbox the test gave it
    assert isinstance(sender, Outbox)
    return sender


def sign_up_and_log_in(client: FlaskClient, outbox: Outbox, prefix: str = "/auth") -> str:
    form = {"email": EMAIL, "password": GOOD, "confirmation": GOOD}
    assert client.post(f"{prefix}/register", json=form, base_url=ORIGIN).status_code == 202
    client.get(extract_link(outbox.last_email(to=EMAIL)), follow_redirects=True)
    client.post(f"{prefix}/confirm", json={}, base_url=ORIGIN)
    answer = client.post(
        f"{prefix}/login", json={"identifier": EMAIL, "password": GOOD}, base_url=ORIGIN
    )
    assert answer.json is not None
    account: str = answer.json["account_id"]
    return account


class TestSetUp:
    def test_one_extension_serves_many_apps(self) -> None:
        """``init_app`` per app, each with its own service: nothing leaks between them."""
        identity = KaspiIdentity()
        first, second = make_app(), make_app()
        first_outbox, second_outbox = Outbox(), Outbox()
        identity.init_app(first, service=make_service(first_outbox))
        identity.init_app(second, service=make_service(second_outbox))
        form = {"email": EMAIL, "password": GOOD, "confirmation": GOOD}
        first.test_client().post("/auth/register", json=form, base_url=ORIGIN)
        assert [m.to for m in first_outbox.emails] == [EMAIL]
        assert second_outbox.emails == []
        with second.app_context():
            assert identity.service.storage.accounts.find_by_login("email", EMAIL) is None

    def test_the_constructor_service_is_the_default(self) -> None:
        """``KaspiIdentity(service=...)`` then ``init_app(app)``: the app gets that service."""
        service = make_service()
        identity = KaspiIdentity(service=service)
        app = make_app()
        identity.init_app(app)
        with app.app_context():
            assert identity.service is service

    def test_config_defaults_are_set_and_prefixed(self) -> None:
        """Every key starts with ``KASPI_IDENTITY_``; the app keeps what it set itself."""
        app = make_app(KASPI_IDENTITY_URL_PREFIX="/account")
        KaspiIdentity(app, service=make_service())
        assert all(key.startswith("KASPI_IDENTITY_") for key in CONFIG_DEFAULTS)
        assert app.config["KASPI_IDENTITY_URL_PREFIX"] == "/account"
        assert app.config["KASPI_IDENTITY_DEFAULT_LANGUAGE"] == "en"
        client = app.test_client()
        assert client.get("/account/policy").status_code == 200
        assert client.get("/auth/policy").status_code == 404

    def test_without_a_service_init_app_fails(self) -> None:
        """No service anywhere: a ``TypeError`` that says what to pass."""
        with pytest.raises(TypeError, match="service="):
            KaspiIdentity(make_app())

    def test_a_default_language_without_catalog_fails_at_init(self) -> None:
        """A typo in ``KASPI_IDENTITY_DEFAULT_LANGUAGE`` fails when the app is set up."""
        with pytest.raises(UnknownLanguageError):
            KaspiIdentity(make_app(KASPI_IDENTITY_DEFAULT_LANGUAGE="de"), service=make_service())

    def test_client_key_decides_the_rate_limit_bucket(self) -> None:
        """A host's ``client_key`` (here a trusted proxy's header) keys the per-client limits."""
        from flask import request

        app = make_app()
        KaspiIdentity(app, service=make_service(), client_key=lambda: request.headers["X-Real-IP"])
        client = app.test_client()
        statuses = [
            client.post(
                "/auth/password/forgot",
                json={"identifier": f"user{n}@example.kz"},
                headers={"X-Real-IP": ip},
            ).status_code
            for n, ip in enumerate(["192.0.2.1"] * 21 + ["192.0.2.2"])
        ]
        assert statuses == [202] * 20 + [429, 202]


class TestSessionHook:
    @pytest.fixture
    def app(self) -> Flask:
        app = make_app()
        KaspiIdentity(app, service=make_service())
        return app

    @staticmethod
    def service(app: Flask) -> IdentityService:
        with app.app_context():
            return KaspiIdentity().service  # any instance reads the current app's

    def test_login_required_guards_a_host_view(self, app: Flask) -> None:
        """401 ``not_logged_in`` in the asked language without a session; the view with one."""
        client = app.test_client()
        refused = client.get("/cabinet", headers={"Accept-Language": "kk"}, base_url=ORIGIN)
        assert refused.status_code == 401
        assert refused.json is not None
        assert refused.json["message"] == "Алдымен жүйеге кіріңіз."
        account = sign_up_and_log_in(client, outbox_of(self.service(app)))
        assert client.get("/cabinet", base_url=ORIGIN).json == {"account": account}

    def test_before_request_clears_a_stale_session(self, app: Flask) -> None:
        """After a reset elsewhere, every view of the app sees no account, and the cookie goes."""
        laptop, phone = app.test_client(), app.test_client()
        outbox = outbox_of(self.service(app))
        sign_up_and_log_in(laptop, outbox)
        phone.post("/auth/password/forgot", json={"identifier": EMAIL}, base_url=ORIGIN)
        phone.get(extract_link(outbox.last_email(to=EMAIL)), follow_redirects=True)
        form = {"password": BETTER, "confirmation": BETTER}
        assert phone.post("/auth/password/reset", json=form, base_url=ORIGIN).status_code == 200
        answer = laptop.get("/welcome", base_url=ORIGIN)
        assert answer.json == {"account": None}
        assert any("session=;" in c for c in answer.headers.getlist("Set-Cookie"))
        assert laptop.get("/cabinet", base_url=ORIGIN).status_code == 401

    def test_one_store_read_per_request_with_a_session(
        self, app: Flask, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The hook reads the account once per request with a session, never without one."""
        client = app.test_client()
        service = self.service(app)
        sign_up_and_log_in(client, outbox_of(service))
        reads: list[str] = []
        accounts = service.storage.accounts
        real_get: Callable[[str], Any] = accounts.get

        def counting(account_id: str) -> Any:
            reads.append(account_id)
            return real_get(account_id)

        monkeypatch.setattr(accounts, "get", counting)
        client.get("/welcome", base_url=ORIGIN)
        client.get("/cabinet", base_url=ORIGIN)
        assert len(reads) == 2
        app.test_client().get("/welcome", base_url=ORIGIN)
        assert len(reads) == 2

    def test_with_the_hook_off_current_account_still_checks(self) -> None:
        """``KASPI_IDENTITY_CHECK_SESSIONS = False``: the check runs when a view asks."""
        app = make_app(KASPI_IDENTITY_CHECK_SESSIONS=False)
        service = make_service()
        KaspiIdentity(app, service=service)
        assert app.before_request_funcs == {}
        laptop, phone = app.test_client(), app.test_client()
        outbox = outbox_of(service)
        account = sign_up_and_log_in(laptop, outbox)
        assert laptop.get("/welcome", base_url=ORIGIN).json == {"account": account}
        phone.post("/auth/password/forgot", json={"identifier": EMAIL}, base_url=ORIGIN)
        phone.get(extract_link(outbox.last_email(to=EMAIL)), follow_redirects=True)
        form = {"password": BETTER, "confirmation": BETTER}
        phone.post("/auth/password/reset", json=form, base_url=ORIGIN)
        assert laptop.get("/welcome", base_url=ORIGIN).json == {"account": None}
