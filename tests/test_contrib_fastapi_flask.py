"""The FastAPI router and the Flask blueprint, case by case: one test, both frameworks.

Each test gets a ``portal``: the framework's app over a service of its own face
(``AsyncIdentityService`` on async memory stores for FastAPI, ``IdentityService`` on memory
stores for Flask), driven by that framework's own test client, so every answer — status,
JSON body, headers, cookies — is checked to be the same on both. The shared web layer
(``contrib._web``) is tested here too, where it is used.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.middleware.sessions import SessionMiddleware

from kaspi_identity import StorageError
from kaspi_identity.contrib import _web
from kaspi_identity.contrib.fastapi import CurrentAccount, identity_router
from kaspi_identity.contrib.flask import KaspiIdentity, login_required
from kaspi_identity.contrib.flask import current_account as flask_current_account
from kaspi_identity.delivery import Outbox, extract_code, extract_link
from kaspi_identity.hashing import TESTS_ONLY, PasswordHasher
from kaspi_identity.i18n import SUPPORTED_LANGUAGES
from kaspi_identity.policy import PasswordPolicy
from kaspi_identity.services import (
    AsyncIdentityService,
    IdentityService,
    IdentitySettings,
    ManualClock,
    RateLimit,
)
from kaspi_identity.storage._async import coroutining
from kaspi_identity.storage.memory import async_memory_storage, memory_storage
from kaspi_identity.testing import mark_phone_verified

ORIGIN = "https://portal.test"
EMAIL = "aliya@example.kz"
PHONE = "+77011234567"
GOOD, BETTER, BAD = "Tengri-Sky-2026!", "Altyn-Orda-1465!", "wrong"
SCHEMA = json.loads((Path(__file__).parent.parent / "docs" / "policy.schema.json").read_text())
FRAMEWORKS = ("fastapi", "flask")
SETTINGS = IdentitySettings(
    secret_keys=(b"0123456789abcdef0123456789abcdef",),
    confirm_url=f"{ORIGIN}/auth/confirm",
    reset_url=f"{ORIGIN}/auth/password/reset",
    email_change_url=f"{ORIGIN}/auth/email/confirm",
    email_undo_url=f"{ORIGIN}/auth/email/undo",
    site_name="portal.test",
)
NEW_EMAIL, TAKEN_EMAIL = "aliya.new@example.kz", "bolat@example.kz"
NEW_PHONE = "+77021234567"


@dataclass
class Reply:
    """What a test client answered, the same shape for both frameworks."""

    status: int
    body: Any
    headers: Mapping[str, str]
    set_cookies: list[str]
    url: str

    def cookie(self, name: str) -> SimpleCookie:
        jar: SimpleCookie = SimpleCookie()
        for header in self.set_cookies:
            if header.startswith(f"{name}="):
                jar.load(header)
        return jar


@dataclass
class Browser:
    """One browser (its own cookies) on a portal."""

    framework: str
    client: Any

    def get(self, path: str, *, lang: str | None = None, follow: bool = False) -> Reply:
        headers = {"Accept-Language": lang} if lang else {}
        if self.framework == "fastapi":
            answer = self.client.get(path, headers=headers, follow_redirects=follow)
            return self._httpx(answer)
        answer = self.client.get(path, headers=headers, follow_redirects=follow, base_url=ORIGIN)
        return self._werkzeug(answer)

    def post(
        self,
        path: str,
        body: object = None,
        *,
        lang: str | None = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> Reply:
        headers = {"Content-Type": content_type, **({"Accept-Language": lang} if lang else {})}
        data = raw if raw is not None else json.dumps({} if body is None else body).encode()
        if self.framework == "fastapi":
            return self._httpx(self.client.post(path, content=data, headers=headers))
        answer = self.client.post(path, data=data, headers=headers, base_url=ORIGIN)
        return self._werkzeug(answer)

    @staticmethod
    def _httpx(answer: Any) -> Reply:
        try:
            body = answer.json()
        except ValueError:
            body = None
        cookies = answer.headers.get_list("set-cookie")
        return Reply(answer.status_code, body, answer.headers, cookies, str(answer.url))

    @staticmethod
    def _werkzeug(answer: Any) -> Reply:
        cookies = answer.headers.getlist("Set-Cookie")
        url = answer.request.url
        return Reply(answer.status_code, answer.get_json(silent=True), answer.headers, cookies, url)


@dataclass
class Portal:
    """One framework's app over a fresh service; ``browser()`` opens another browser."""

    framework: str
    service: Any
    outbox: Outbox
    clock: ManualClock
    app: Any
    browsers: list[Browser] = field(default_factory=list)

    def browser(self) -> Browser:
        if self.framework == "fastapi":
            client: Any = TestClient(self.app, base_url=ORIGIN)
        else:
            client = self.app.test_client()
        browser = Browser(self.framework, client)
        self.browsers.append(browser)
        return browser

    def account(self, identifier: str) -> Any:
        """The stored account (read through the synchronous stores)."""
        return self.sync_storage.accounts.find_by_login("email", identifier)

    sync_storage: Any = None


def build_portal(
    framework: str,
    settings: IdentitySettings = SETTINGS,
    policy: PasswordPolicy | None = None,
    **app_options: Any,
) -> Portal:
    outbox, clock = Outbox(), ManualClock()
    kwargs: dict[str, Any] = {
        "email_sender": outbox,
        "sms_sender": outbox,
        "hasher": PasswordHasher(TESTS_ONLY),
        "clock": clock,
        "policy": policy,
    }
    sync_storage = memory_storage()  # the very stores, read directly by the tests
    app: Any
    if framework == "fastapi":
        service: Any = AsyncIdentityService(coroutining(sync_storage), settings, **kwargs)
        app = fastapi_app(service, **app_options)
    else:
        service = IdentityService(sync_storage, settings, **kwargs)
        app = flask_app(service, **app_options)
    return Portal(framework, service, outbox, clock, app, sync_storage=sync_storage)


def fastapi_app(service: AsyncIdentityService, **options: Any) -> FastAPI:
    """The router on an app with a session, and a host view that needs a live session."""
    app = FastAPI()
    app.state.kaspi_identity = service
    app.add_middleware(SessionMiddleware, secret_key="test-session-key", https_only=True)
    app.include_router(identity_router(**options), prefix="/auth")

    @app.get("/cabinet")
    async def cabinet(account_id: CurrentAccount) -> dict[str, str]:
        return {"account": account_id}

    return app


def flask_app(service: IdentityService, **options: Any) -> Flask:
    """The extension on an app (options as config keys), and a host view that needs a session."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test-session-key", SESSION_COOKIE_SECURE=True)
    for key, value in options.items():
        app.config[f"KASPI_IDENTITY_{key.upper()}"] = value
    KaspiIdentity(app, service=service)

    @app.get("/cabinet")
    @login_required
    def cabinet() -> dict[str, str | None]:
        return {"account": flask_current_account()}

    return app


@pytest.fixture(params=FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def make_portal(framework: str) -> Iterator[Callable[..., Portal]]:
    made: list[Portal] = []

    def make(
        settings: IdentitySettings = SETTINGS, policy: PasswordPolicy | None = None, **options: Any
    ) -> Portal:
        portal = build_portal(framework, settings, policy, **options)
        made.append(portal)
        return portal

    yield make
    for portal in made:
        for browser in portal.browsers:
            if framework == "fastapi":
                browser.client.close()


@pytest.fixture
def portal(make_portal: Callable[..., Portal]) -> Portal:
    return make_portal()


def register(browser: Browser, email: str = EMAIL, password: str = GOOD, **extra: Any) -> Reply:
    form = {"email": email, "password": password, "confirmation": password, **extra}
    return browser.post("/auth/register", form)


def registered(
    portal: Portal, email: str = EMAIL, *, prove_phone: bool = True, **extra: Any
) -> Browser:
    """A browser whose user registered and confirmed ``email`` (and is not logged in).

    A phone given is marked verified (only a verified phone receives reset codes), unless
    ``prove_phone`` is false: then it waits to be proven by ``POST /phone``.
    """
    browser = portal.browser()
    assert register(browser, email, **extra).status == 202
    browser.get(extract_link(portal.outbox.last_email(to=email)), follow=True)
    assert browser.post("/auth/confirm").status == 200
    if extra.get("phone") and prove_phone:
        mark_phone_verified(portal.sync_storage.accounts, portal.account(email).id)
    return browser


def logged_in(portal: Portal, identifier: str = EMAIL, password: str = GOOD) -> Browser:
    browser = portal.browser()
    reply = browser.post("/auth/login", {"identifier": identifier, "password": password})
    assert reply.status == 200, reply.body
    return browser


# --------------------------------------------------------------------------- languages


class TestNegotiateLanguage:
    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ("kk-KZ,ru;q=0.9,en;q=0.8", "kk"),
            ("de-DE, ru;q=0.5, en;q=0.4", "ru"),
            ("en;q=0.2, ru-KZ;q=0.9", "ru"),
            ("ru;q=0, kk", "kk"),
            ("fr, de", "en"),
            ("", "en"),
            ("kk-Latn", "en"),  # Kazakh ships in Cyrillic only
            ("ru;q=1.5, kk;q=0.1", "kk"),  # a weight over 1 is malformed: that range is skipped
            ("ru;q=abc, kk", "kk"),
            ("*", "en"),
            ("en;q=0, *", "ru"),  # the wildcard: any language not named, and not English
            ("en;q=0, ru;q=0, *;q=0.5", "kk"),
            ("*;q=0.1, kk;q=0.5", "kk"),
            ("ru, ru;q=0", "ru"),  # the first range naming a language decides
            ("RU", "ru"),
        ],
    )
    def test_picks_the_best_supported(self, header: str, expected: str) -> None:
        """The highest weight among kk/ru/en wins; malformed ranges are skipped."""
        assert _web.negotiate_language(header) == expected

    def test_ties_keep_the_header_order(self) -> None:
        """Among equal weights the earlier range wins."""
        assert _web.negotiate_language("ru;q=0.5, kk;q=0.5") == "ru"
        assert _web.negotiate_language("kk;q=0.5, ru;q=0.5") == "kk"

    def test_default_is_the_hosts(self) -> None:
        """No match answers the host's default, itself normalised."""
        assert _web.negotiate_language(None, default="ru-KZ") == "ru"
        assert _web.negotiate_language("de", default="kk") == "kk"

    def test_a_default_without_catalog_is_an_error(self) -> None:
        """A host's mistake fails loudly, not per request."""
        with pytest.raises(ValueError, match="unknown language"):
            _web.negotiate_language("ru", default="de")

    @given(st.text(max_size=300) | st.binary(max_size=50))
    def test_any_header_gives_a_supported_language(self, header: object) -> None:
        """Whatever a client sends (NUL, surrogates, bytes, garbage), no error, a catalog."""
        assert _web.negotiate_language(header) in SUPPORTED_LANGUAGES

    def test_a_huge_header_is_read_only_so_far(self) -> None:
        """A 1 MB header costs at most the first kilobyte of parsing."""
        assert _web.negotiate_language("x-y;q=0.1," * 100_000 + "ru") == "en"
        assert _web.negotiate_language("ru," + "x" * 1_000_000) == "ru"

    def test_answers_come_in_the_negotiated_language(self, portal: Portal) -> None:
        """The message, Content-Language and Vary follow Accept-Language."""
        browser = portal.browser()
        body = {"identifier": "nobody@example.kz"}
        messages = {}
        for header, lang in [("kk-KZ", "kk"), ("ru;q=0.9, en;q=0.1", "ru"), ("de", "en")]:
            reply = browser.post("/auth/password/forgot", body, lang=header)
            assert reply.headers["Content-Language"] == lang
            assert "Accept-Language" in reply.headers["Vary"]
            messages[lang] = reply.body["message"]
            assert messages[lang] == _web.message("letter_sent", lang)
        assert len(set(messages.values())) == 3

    def test_the_default_language_is_configurable(self, make_portal: Callable[..., Portal]) -> None:
        """Without a supported Accept-Language, the integration's default language answers."""
        browser = make_portal(default_language="ru").browser()
        reply = browser.post("/auth/password/forgot", {"identifier": "x@example.kz"}, lang="de")
        assert reply.headers["Content-Language"] == "ru"


class TestWebCatalog:
    @pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
    def test_every_language_has_every_message(self, lang: str) -> None:
        """The three catalogs hold the same keys, each translated (not the English text)."""
        english = _web._catalog("en")
        catalog = _web._catalog(lang)
        assert catalog.keys() == english.keys()
        if lang != "en":
            same = [
                key
                for key in sorted(catalog.keys())
                if catalog.message(key, field="x") == english.message(key, field="x")
            ]
            assert same == []

    def test_retry_after_is_whole_seconds_rounded_up(self) -> None:
        """Retry-After is an integer number of seconds, at least one."""
        assert _web.retry_after_seconds(timedelta(seconds=59.2)) == 60
        assert _web.retry_after_seconds(timedelta(seconds=60)) == 60
        assert _web.retry_after_seconds(timedelta(0)) == 1
        assert _web.retry_after_seconds(None) == 1


# --------------------------------------------------------------------------- registration


class TestRegister:
    def test_accepted_is_202_and_sends_the_letter(self, portal: Portal) -> None:
        """A good form: 202, and the confirmation letter in the user's language."""
        reply = portal.browser().post(
            "/auth/register",
            {"email": EMAIL, "password": GOOD, "confirmation": GOOD},
            lang="ru-RU",
        )
        assert (reply.status, reply.body["ok"], reply.body["error"]) == (202, True, None)
        assert portal.outbox.last_email(to=EMAIL).language == "ru"

    def test_a_taken_address_gets_the_same_answer(self, portal: Portal) -> None:
        """A second registration of an address answers exactly like the first."""
        browser = portal.browser()
        first, second = register(browser), register(browser, password=BETTER)
        assert (first.status, first.body) == (second.status, second.body)
        assert [m.kind for m in portal.outbox.emails] == ["confirm_email", "already_registered"]

    def test_policy_violations_are_422_with_codes_and_messages(self, portal: Portal) -> None:
        """Every violation: its stable code, its params, its message in the asked language."""
        reply = portal.browser().post(
            "/auth/register",
            {"email": EMAIL, "password": "aliya", "confirmation": "aliyA"},
            lang="kk",
        )
        expected = portal.service.policy.check(
            "aliya", confirmation="aliyA", user=_user(EMAIL)
        ).violations
        assert reply.status == 422
        assert reply.body["error"] == "password_policy"
        assert [v["code"] for v in reply.body["violations"]] == [v.code for v in expected]
        assert [v["message"] for v in reply.body["violations"]] == [
            v.message("kk") for v in expected
        ]
        assert "confirmation_mismatch" in [v["code"] for v in reply.body["violations"]]
        assert portal.outbox.emails == []

    def test_username_taken_is_409(self, portal: Portal) -> None:
        """User names are public: the form may say one is taken."""
        browser = portal.browser()
        assert register(browser, username="aliya").status == 202
        reply = register(browser, "other@example.kz", username="aliya")
        assert (reply.status, reply.body["error"]) == (409, "username_taken")

    @pytest.mark.parametrize(
        ("extra", "error", "detail"),
        [
            ({"email": "not an address"}, "invalid_identifier", ("field", "email")),
            ({"email": "aliya\x00@example.kz"}, "invalid_identifier", ("field", "email")),
            ({"phone": "8 701 123"}, "invalid_phone", ("reason", "too_short")),
            ({"phone": "+7 727 250 00 00"}, "invalid_phone", ("reason", "not_mobile")),
            ({"phone": "☎" * 10_000}, "invalid_phone", ("reason", "too_long")),
            ({"iin": "123"}, "invalid_iin", ("reason", "wrong_length")),
        ],
    )
    def test_malformed_identifiers_are_422_and_write_nothing(
        self, portal: Portal, extra: dict[str, str], error: str, detail: tuple[str, str]
    ) -> None:
        """A typed error of the service becomes a 422 with its stable reason; no account."""
        form = {"email": EMAIL, "password": GOOD, "confirmation": GOOD, **extra}
        reply = portal.browser().post("/auth/register", form, lang="ru")
        assert (reply.status, reply.body["error"]) == (422, error)
        assert reply.body[detail[0]] == detail[1]
        assert reply.body["message"]
        assert portal.outbox.emails == []
        assert portal.account(EMAIL) is None

    @pytest.mark.parametrize(
        ("body", "field_name"),
        [
            ({"email": EMAIL, "password": 12345678, "confirmation": "x"}, "password"),
            ({"email": EMAIL, "confirmation": GOOD}, "password"),
            ({"email": EMAIL, "password": GOOD, "confirmation": None}, "confirmation"),
            ({"email": ["a"], "password": GOOD, "confirmation": GOOD}, "email"),
            ({"email": EMAIL, "password": GOOD, "confirmation": GOOD, "names": "x"}, "names"),
            ([1, 2], "body"),
        ],
    )
    def test_a_body_that_is_not_the_form_is_422(
        self, portal: Portal, body: object, field_name: str
    ) -> None:
        """Not text, missing or not a JSON object: ``invalid_request`` naming the field."""
        reply = portal.browser().post("/auth/register", body)
        assert (reply.status, reply.body["error"], reply.body["field"]) == (
            422,
            "invalid_request",
            field_name,
        )
        assert portal.account(EMAIL) is None

    def test_a_non_json_body_is_refused(self, portal: Portal) -> None:
        """A form post (what another site can make a browser send) is not read at all."""
        reply = portal.browser().post(
            "/auth/register",
            raw=b"email=a%40example.kz&password=x&confirmation=x",
            content_type="application/x-www-form-urlencoded",
        )
        assert reply.status == 422
        assert reply.body["error"] == "invalid_request"
        assert portal.account("a@example.kz") is None

    def test_a_huge_password_is_a_clean_violation(self, portal: Portal) -> None:
        """A 1 MB password is ``too_long``, quickly, and nothing is written."""
        huge = "Aa1!" * 250_000
        reply = register(portal.browser(), password=huge)
        assert reply.status == 422
        assert "too_long" in [v["code"] for v in reply.body["violations"]]

    def test_a_lone_surrogate_is_a_clean_422(self, portal: Portal) -> None:
        """JSON may carry a lone surrogate; the answer is a 422, never a crash."""
        raw = b'{"email": "aliya@example.kz", "password": "Ab1!\\ud800xyzw", "confirmation": "x"}'
        reply = portal.browser().post("/auth/register", raw=raw)
        assert (reply.status, reply.body["error"]) == (422, "password_policy")
        assert "disallowed_character" in [v["code"] for v in reply.body["violations"]]
        assert portal.account(EMAIL) is None

    def test_rate_limited_is_429_with_retry_after(self, make_portal: Callable[..., Portal]) -> None:
        """Over ``register_per_client``: 429, Retry-After in seconds, the same in the body."""
        portal = make_portal(
            replace(SETTINGS, register_per_client=RateLimit(2, timedelta(hours=1)))
        )
        browser = portal.browser()
        assert register(browser, "a@example.kz").status == 202
        assert register(browser, "b@example.kz").status == 202
        reply = register(browser, "c@example.kz")
        assert (reply.status, reply.body["error"]) == (429, "rate_limited")
        assert int(reply.headers["Retry-After"]) == reply.body["retry_after"]
        assert 1 <= reply.body["retry_after"] <= 3600


def _user(email: str) -> Any:
    from kaspi_identity import UserInfo

    return UserInfo(email=email)


# --------------------------------------------------------------------------- links


class TestLinks:
    def test_the_link_page_moves_the_token_out_of_the_url(self, portal: Portal) -> None:
        """303 to the path without the token; the token in a strict, HttpOnly, Secure cookie."""
        browser = portal.browser()
        register(browser)
        link = extract_link(portal.outbox.last_email(to=EMAIL))
        reply = browser.get(link)
        assert reply.status == 303
        location = reply.headers["Location"]
        assert "token" not in location
        assert urlsplit(location).path == "/auth/confirm"
        assert reply.headers["Referrer-Policy"] == "no-referrer"
        assert reply.headers["Cache-Control"] == "no-store"
        morsel = reply.cookie("kaspi_identity_confirm")["kaspi_identity_confirm"]
        assert morsel.value == link.split("token=")[1]
        assert morsel["httponly"]
        assert morsel["secure"]
        assert morsel["samesite"].lower() == "strict"
        assert morsel["path"] == "/auth/confirm"
        assert int(morsel["max-age"]) == 24 * 3600

        page = browser.get("/auth/confirm")
        assert page.body == {"link": "confirm", "pending": True}
        assert page.headers["Referrer-Policy"] == "no-referrer"
        confirmed = browser.post("/auth/confirm")
        assert confirmed.status == 200
        assert confirmed.body["account_id"] == portal.account(EMAIL).id
        assert portal.account(EMAIL).email_confirmed
        assert browser.get("/auth/confirm").body == {"link": "confirm", "pending": False}

    def test_the_host_page_receives_the_browser(self, make_portal: Callable[..., Portal]) -> None:
        """With ``reset_page``, the link's page sends the browser to the host's form."""
        portal = make_portal(reset_page="/reset-password")
        registered(portal)
        browser = portal.browser()
        browser.post("/auth/password/forgot", {"identifier": EMAIL})
        reply = browser.get(extract_link(portal.outbox.last_email(to=EMAIL)))
        assert (reply.status, reply.headers["Location"].rsplit("/", 1)[-1]) == (
            303,
            "reset-password",
        )
        morsel = reply.cookie("kaspi_identity_reset")["kaspi_identity_reset"]
        assert morsel["path"] == "/auth/password/reset"
        assert int(morsel["max-age"]) == 3600

    def test_a_used_link_is_refused(self, portal: Portal) -> None:
        """The same reset link twice: the second answer is 400 ``invalid_link``."""
        registered(portal)
        browser = portal.browser()
        browser.post("/auth/password/forgot", {"identifier": EMAIL})
        token = extract_link(portal.outbox.last_email(to=EMAIL)).split("token=")[1]
        form = {"token": token, "password": BETTER, "confirmation": BETTER}
        assert browser.post("/auth/password/reset", form).status == 200
        again = browser.post("/auth/password/reset", form, lang="kk")
        assert (again.status, again.body["error"]) == (400, "invalid_link")
        assert again.body["message"] == _web.message("invalid_link", "kk")

    def test_a_refused_password_keeps_the_link(self, portal: Portal) -> None:
        """A password the policy refuses: 422, the cookie stays, the next try succeeds."""
        registered(portal)
        browser = portal.browser()
        browser.post("/auth/password/forgot", {"identifier": EMAIL})
        browser.get(extract_link(portal.outbox.last_email(to=EMAIL)), follow=True)
        weak = browser.post("/auth/password/reset", {"password": "x", "confirmation": "x"})
        assert (weak.status, weak.body["error"]) == (422, "password_policy")
        assert weak.set_cookies == []
        assert browser.get("/auth/password/reset").body["pending"] is True
        done = browser.post("/auth/password/reset", {"password": BETTER, "confirmation": BETTER})
        assert done.status == 200
        assert browser.get("/auth/password/reset").body["pending"] is False

    def test_an_expired_link_says_so(self, portal: Portal) -> None:
        """Past its hour, a reset link answers ``expired_link``."""
        registered(portal)
        browser = portal.browser()
        browser.post("/auth/password/forgot", {"identifier": EMAIL})
        browser.get(extract_link(portal.outbox.last_email(to=EMAIL)), follow=True)
        portal.clock.advance(timedelta(hours=1, seconds=2))
        reply = browser.post("/auth/password/reset", {"password": BETTER, "confirmation": BETTER})
        assert (reply.status, reply.body["error"]) == (400, "expired_link")

    @pytest.mark.parametrize("token", ["garbage", "", "a" * 5000, "\x00", "ey.J.x", "Ω" * 100])
    def test_garbage_tokens_are_400(self, portal: Portal, token: str) -> None:
        """Any garbage token: 400 ``invalid_link``, for a confirmation and a reset alike."""
        browser = portal.browser()
        confirm = browser.post("/auth/confirm", {"token": token})
        reset = browser.post(
            "/auth/password/reset", {"token": token, "password": BETTER, "confirmation": BETTER}
        )
        assert (confirm.status, confirm.body["error"]) == (400, "invalid_link")
        assert (reset.status, reset.body["error"]) == (400, "invalid_link")

    def test_a_huge_token_in_the_url_is_not_put_in_a_cookie(self, portal: Portal) -> None:
        """A token too long for a cookie is dropped; the form then says to open the link."""
        browser = portal.browser()
        reply = browser.get("/auth/password/reset?token=" + "a" * 3000)
        assert reply.status == 303
        assert reply.set_cookies == []
        form = browser.post("/auth/password/reset", {"password": BETTER, "confirmation": BETTER})
        assert (form.status, form.body["error"]) == (400, "invalid_link")
        assert form.body["message"] == _web.message("no_link", "en")

    def test_concurrent_redemption_succeeds_once(self, portal: Portal) -> None:
        """Eight browsers post the same reset token at once: exactly one 200."""
        registered(portal)
        portal.browser().post("/auth/password/forgot", {"identifier": EMAIL})
        token = extract_link(portal.outbox.last_email(to=EMAIL)).split("token=")[1]
        browsers = [portal.browser() for _ in range(8)]
        barrier = threading.Barrier(len(browsers))
        statuses: list[int] = []

        def redeem(browser: Browser) -> None:
            barrier.wait()
            form = {"token": token, "password": BETTER, "confirmation": BETTER}
            statuses.append(browser.post("/auth/password/reset", form).status)

        threads = [threading.Thread(target=redeem, args=(b,)) for b in browsers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses) == [200] + [400] * 7


# --------------------------------------------------------------------------- log-in, sessions


class TestLogIn:
    def test_logged_in_session_is_checked_on_each_request(self, portal: Portal) -> None:
        """Log-in starts a session; ``/me`` answers the account; log-out ends it."""
        registered(portal)
        browser = logged_in(portal)
        me = browser.get("/auth/me")
        assert (me.status, me.body["account_id"]) == (200, portal.account(EMAIL).id)
        assert browser.post("/auth/logout").status == 200
        assert browser.get("/auth/me").status == 401

    def test_every_failure_is_the_same_401(self, make_portal: Callable[..., Portal]) -> None:
        """Wrong password, unknown account, back-off and lockout answer alike: no Retry-After."""
        settings = replace(SETTINGS, backoff_after=2, lockout_after=4)
        portal = make_portal(settings)
        registered(portal)
        browser = portal.browser()
        answers = []

        def attempt(identifier: str, password: str = BAD) -> None:
            before = len(portal.outbox.emails)
            reply = browser.post("/auth/login", {"identifier": identifier, "password": password})
            answers.append((reply.status, json.dumps(reply.body), "Retry-After" in reply.headers))
            assert len(portal.outbox.emails) == before

        attempt(EMAIL)
        attempt(EMAIL)  # two failures: the account backs off now
        attempt(EMAIL, GOOD)  # backing off: the right password is refused too
        for _ in range(2):
            portal.clock.advance(timedelta(minutes=20))
            attempt(EMAIL)  # the fourth failure locks the account
        attempt(EMAIL, GOOD)
        attempt("nobody@example.kz")
        attempt("nobody@example.kz", GOOD)
        assert len(set(answers)) == 1
        assert answers[0][0] == 401
        assert json.loads(answers[0][1])["error"] == "login_failed"
        assert portal.account(EMAIL).failed_logins == settings.lockout_after

    def test_the_rate_limit_is_429_for_known_and_unknown(
        self, make_portal: Callable[..., Portal]
    ) -> None:
        """Over ``login_per_identifier``: 429 with Retry-After, whoever the identifier is."""
        limit = RateLimit(2, timedelta(minutes=5))
        portal = make_portal(replace(SETTINGS, login_per_identifier=limit))
        registered(portal)
        browser = portal.browser()
        for identifier in (EMAIL, "nobody@example.kz"):
            replies = [
                browser.post("/auth/login", {"identifier": identifier, "password": "wrong"})
                for _ in range(3)
            ]
            assert [r.status for r in replies] == [401, 401, 429]
            assert int(replies[2].headers["Retry-After"]) == replies[2].body["retry_after"]
            assert 1 <= replies[2].body["retry_after"] <= 300

    def test_no_secret_in_the_answer(self, portal: Portal) -> None:
        """The log-in answer holds no password and no stamp."""
        registered(portal)
        reply = portal.browser().post("/auth/login", {"identifier": EMAIL, "password": GOOD})
        stamp = portal.account(EMAIL).security_stamp
        text = json.dumps(reply.body)
        assert GOOD not in text
        assert stamp not in text
        assert set(reply.body) == {"ok", "error", "message", "account_id", "email_confirmed"} | {
            "needs_password_change",
            "password_change_reason",
            "password_expires_at",
            "grace_logins_left",
            "password_violations",
            "password_message",
        }


class TestChangePassword:
    def test_change_keeps_this_session_and_ends_the_others(self, portal: Portal) -> None:
        """After a change, this browser goes on; the other browser's session is refused."""
        registered(portal)
        laptop, phone = logged_in(portal), logged_in(portal)
        form = {"current": GOOD, "password": BETTER, "confirmation": BETTER}
        reply = laptop.post("/auth/password/change", form, lang="ru")
        assert (reply.status, reply.body["message"]) == (
            200,
            _web.message("password_changed", "ru"),
        )
        assert laptop.get("/auth/me").status == 200
        assert phone.get("/auth/me").status == 401
        assert (
            phone.get("/auth/me").status == 401
        )  # the stale session was cleared, not only refused

    @pytest.mark.parametrize(
        ("form", "status", "error"),
        [
            (
                {"current": "wrong", "password": BETTER, "confirmation": BETTER},
                403,
                "wrong_password",
            ),
            ({"current": GOOD, "password": "x", "confirmation": "x"}, 422, "password_policy"),
            ({"current": GOOD, "password": BETTER, "confirmation": GOOD}, 422, "password_policy"),
        ],
    )
    def test_refusals(self, portal: Portal, form: dict[str, str], status: int, error: str) -> None:
        """Wrong current password 403; a refused new one (or a mismatched confirmation) 422."""
        registered(portal)
        reply = logged_in(portal).post("/auth/password/change", form)
        assert (reply.status, reply.body["error"]) == (status, error)

    def test_needs_a_session(self, portal: Portal) -> None:
        """Without a live session: 401 ``not_logged_in``, nothing changed."""
        registered(portal)
        form = {"current": GOOD, "password": BETTER, "confirmation": BETTER}
        reply = portal.browser().post("/auth/password/change", form, lang="kk")
        assert (reply.status, reply.body["error"]) == (401, "not_logged_in")
        assert reply.body["message"] == _web.message("not_logged_in", "kk")


# --------------------------------------------------------------------------- recovery


class TestRecovery:
    def test_known_and_unknown_get_the_same_answer(self, portal: Portal) -> None:
        """The reset requests answer byte for byte the same whether an account exists."""
        registered(portal, phone=PHONE)
        browser = portal.browser()
        for path, known, unknown in [
            ("/auth/password/forgot", {"identifier": EMAIL}, {"identifier": "no@example.kz"}),
            ("/auth/password/forgot/sms", {"phone": PHONE}, {"phone": "+77017654321"}),
            ("/auth/confirm/resend", {"identifier": EMAIL}, {"identifier": "no@example.kz"}),
        ]:
            a, b = browser.post(path, known), browser.post(path, unknown)
            assert (a.status, a.body, a.set_cookies) == (b.status, b.body, b.set_cookies)
            assert a.status == 202
            assert dict(a.headers).keys() == dict(b.headers).keys()

    def test_reset_requests_are_rate_limited(self, make_portal: Callable[..., Portal]) -> None:
        """Over ``reset_per_identifier``: 429 with Retry-After."""
        portal = make_portal(
            replace(SETTINGS, reset_per_identifier=RateLimit(1, timedelta(hours=1)))
        )
        browser = portal.browser()
        assert browser.post("/auth/password/forgot", {"identifier": EMAIL}).status == 202
        reply = browser.post("/auth/password/forgot", {"identifier": EMAIL})
        assert reply.status == 429
        assert 3500 <= int(reply.headers["Retry-After"]) <= 3600

    def test_sms_reset_ends_every_session(self, portal: Portal) -> None:
        """Code, grant, new password: the logged-in browser is logged out."""
        registered(portal, phone=PHONE)
        laptop = logged_in(portal)
        browser = portal.browser()
        assert browser.post("/auth/password/forgot/sms", {"phone": "87011234567"}).status == 202
        code = extract_code(portal.outbox.last_sms(to=PHONE))
        grant = browser.post("/auth/password/verify-code", {"phone": PHONE, "code": code})
        assert grant.status == 200
        form = {"token": grant.body["grant"], "password": BETTER, "confirmation": BETTER}
        assert browser.post("/auth/password/reset", form).status == 200
        assert laptop.get("/auth/me").status == 401
        logged_in(portal, PHONE, BETTER)

    def test_wrong_codes_then_exhausted(self, portal: Portal) -> None:
        """Wrong codes answer ``invalid_code``/``wrong``; after the limit, ``exhausted``."""
        registered(portal, phone=PHONE)
        browser = portal.browser()
        browser.post("/auth/password/forgot/sms", {"phone": PHONE})
        code = extract_code(portal.outbox.last_sms(to=PHONE))
        wrong = str((int(code) + 1) % 10**6).zfill(6)
        reasons = [
            browser.post("/auth/password/verify-code", {"phone": PHONE, "code": wrong}).body[
                "reason"
            ]
            for _ in range(portal.service.settings.sms_max_attempts)
        ]
        assert reasons == ["wrong"] * 5
        last = browser.post("/auth/password/verify-code", {"phone": PHONE, "code": code})
        assert (last.status, last.body["error"], last.body["reason"]) == (
            400,
            "invalid_code",
            "exhausted",
        )

    @pytest.mark.parametrize("phone", ["12", "+1 202 555 0100", "абв", "\x00", "8" * 5000])
    def test_malformed_phones_are_422(self, portal: Portal, phone: str) -> None:
        """A phone the service refuses: 422 ``invalid_phone`` with its reason, no SMS."""
        reply = portal.browser().post("/auth/password/forgot/sms", {"phone": phone}, lang="kk")
        assert (reply.status, reply.body["error"]) == (422, "invalid_phone")
        assert reply.body["reason"]
        assert portal.outbox.sms == []


# --------------------------------------------------------------------------- contact details


def token_of(link: str) -> str:
    return link.split("token=")[1]


def letters_to(portal: Portal, to: str) -> list[Any]:
    return [m for m in portal.outbox.emails if m.to == to]


class TestEmailChange:
    def test_the_link_changes_it_this_session_lives_on_the_others_end(self, portal: Portal) -> None:
        """Request, open the link from the new mailbox, confirm: the other browser is out."""
        registered(portal)
        laptop, phone = logged_in(portal), logged_in(portal)
        form = {"password": GOOD, "email": NEW_EMAIL}
        asked = laptop.post("/auth/email/change", form, lang="kk")
        assert (asked.status, asked.body) == (
            202,
            {"ok": True, "error": None, "message": _web.message("email_change_sent", "kk")},
        )
        assert portal.account(EMAIL).pending_email == NEW_EMAIL  # nothing changed yet
        link = extract_link(portal.outbox.last_email(to=NEW_EMAIL))
        moved = laptop.get(link)
        assert moved.status == 303
        assert urlsplit(moved.headers["Location"]).path == "/auth/email/confirm"
        morsel = moved.cookie("kaspi_identity_email_change")["kaspi_identity_email_change"]
        assert (morsel["path"], morsel["samesite"].lower()) == ("/auth/email/confirm", "strict")
        assert morsel["httponly"]
        page = laptop.get("/auth/email/confirm")
        assert page.body == {"link": "email_change", "pending": True}
        done = laptop.post("/auth/email/confirm", lang="ru")
        assert done.status == 200, done.body
        assert done.body["message"] == _web.message("email_changed", "ru")
        account = portal.sync_storage.accounts.find_by_login("email", NEW_EMAIL)
        assert done.body["account_id"] == account.id
        assert laptop.get("/auth/me").status == 200
        assert phone.get("/auth/me").status == 401
        assert laptop.get("/auth/email/confirm").body["pending"] is False  # cookie cleared
        assert letters_to(portal, EMAIL)[-1].kind == "email_changed"  # the old one is told
        logged_in(portal, NEW_EMAIL, GOOD)

    def test_the_default_confirm_page_takes_the_link_too(
        self, make_portal: Callable[..., Portal]
    ) -> None:
        """Without ``email_change_url`` the link lands on ``/confirm``, which confirms it."""
        portal = make_portal(replace(SETTINGS, email_change_url=None))
        registered(portal)
        laptop = logged_in(portal)
        assert (
            laptop.post("/auth/email/change", {"password": GOOD, "email": NEW_EMAIL}).status == 202
        )
        link = extract_link(portal.outbox.last_email(to=NEW_EMAIL))
        assert urlsplit(link).path == "/auth/confirm"
        laptop.get(link, follow=True)
        done = laptop.post("/auth/confirm")
        assert (done.status, done.body["message"]) == (200, _web.message("email_changed", "en"))
        assert laptop.get("/auth/me").status == 200
        assert portal.sync_storage.accounts.find_by_login("email", NEW_EMAIL) is not None

    def test_the_undo_link_gives_the_old_address_back_and_ends_every_session(
        self, portal: Portal
    ) -> None:
        """The old mailbox's undo: the address is back, no session, no password, a reset link."""
        registered(portal)
        laptop = logged_in(portal)
        laptop.post("/auth/email/change", {"password": GOOD, "email": NEW_EMAIL})
        laptop.post(
            "/auth/email/confirm",
            {"token": token_of(extract_link(portal.outbox.last_email(to=NEW_EMAIL)))},
        )
        owner = portal.browser()
        undo = extract_link(portal.outbox.last_email(to=EMAIL))
        moved = owner.get(undo)
        assert urlsplit(moved.headers["Location"]).path == "/auth/email/undo"
        assert owner.get("/auth/email/undo").body == {"link": "email_undo", "pending": True}
        done = owner.post("/auth/email/undo", lang="kk")
        assert done.status == 200, done.body
        assert done.body["message"] == _web.message("email_restored", "kk")
        assert portal.account(EMAIL) is not None
        assert laptop.get("/auth/me").status == 401
        refused = owner.post("/auth/login", {"identifier": EMAIL, "password": GOOD})
        assert refused.status == 401  # the password is gone: only the reset link gets in
        assert letters_to(portal, EMAIL)[-1].kind == "password_reset"
        again = owner.post("/auth/email/undo", {"token": token_of(undo)})
        assert (again.status, again.body["error"]) == (400, "invalid_link")

    def test_undo_ends_the_browsers_own_session(self, portal: Portal) -> None:
        """The browser that undoes is logged out too (every session of the account ended)."""
        registered(portal)
        laptop = logged_in(portal)
        laptop.post("/auth/email/change", {"password": GOOD, "email": NEW_EMAIL})
        token = token_of(extract_link(portal.outbox.last_email(to=NEW_EMAIL)))
        assert laptop.post("/auth/email/confirm", {"token": token}).status == 200
        undo = token_of(extract_link(portal.outbox.last_email(to=EMAIL)))
        assert laptop.post("/auth/email/undo", {"token": undo}).status == 200
        assert laptop.get("/auth/me").status == 401

    def test_a_taken_address_gets_the_same_answer(self, portal: Portal) -> None:
        """202 and the same body whether the address is free or another account's."""
        registered(portal)
        registered(portal, TAKEN_EMAIL)
        browser = logged_in(portal)
        free = browser.post("/auth/email/change", {"password": GOOD, "email": NEW_EMAIL})
        taken = browser.post("/auth/email/change", {"password": GOOD, "email": TAKEN_EMAIL})
        assert (free.status, free.body) == (taken.status, taken.body)
        assert letters_to(portal, TAKEN_EMAIL)[-1].kind == "email_change_taken"

    @pytest.mark.parametrize(
        ("form", "status", "error"),
        [
            ({"password": BAD, "email": NEW_EMAIL}, 403, "wrong_password"),
            ({"password": GOOD, "email": EMAIL}, 409, "unchanged"),
            ({"password": GOOD, "email": "not-an-address"}, 422, "invalid_identifier"),
            ({"password": GOOD, "email": "a\x00@example.kz"}, 422, "invalid_identifier"),
            ({"password": GOOD, "email": "\ud800@example.kz"}, 422, "invalid_identifier"),
            ({"password": GOOD, "email": "a" * 100_000 + "@example.kz"}, 422, "invalid_identifier"),
            ({"password": GOOD}, 422, "invalid_request"),
            ({"password": GOOD, "email": 7}, 422, "invalid_request"),
        ],
    )
    def test_refusals_write_nothing(
        self, portal: Portal, form: dict[str, Any], status: int, error: str
    ) -> None:
        """Wrong password 403, the same address 409, bad input 422: nothing waits, no letter."""
        registered(portal)
        browser = logged_in(portal)
        sent = len(portal.outbox.emails)
        reply = browser.post("/auth/email/change", form)
        assert (reply.status, reply.body["error"]) == (status, error)
        assert portal.account(EMAIL).pending_email is None
        assert len(portal.outbox.emails) == sent
        assert browser.get("/auth/me").status == 200

    def test_rate_limited_is_429_with_retry_after(self, make_portal: Callable[..., Portal]) -> None:
        """Over ``reset_per_identifier`` requests for the account: 429 and Retry-After."""
        portal = make_portal(
            replace(SETTINGS, reset_per_identifier=RateLimit(1, timedelta(hours=1)))
        )
        registered(portal)
        browser = logged_in(portal)
        assert (
            browser.post("/auth/email/change", {"password": GOOD, "email": NEW_EMAIL}).status == 202
        )
        again = browser.post("/auth/email/change", {"password": GOOD, "email": "x@example.kz"})
        assert (again.status, again.body["error"]) == (429, "rate_limited")
        assert 3500 <= int(again.headers["Retry-After"]) <= 3600

    def test_needs_a_live_session(self, portal: Portal) -> None:
        """Without one: 401 and nothing asked."""
        registered(portal)
        reply = portal.browser().post("/auth/email/change", {"password": GOOD, "email": NEW_EMAIL})
        assert (reply.status, reply.body["error"]) == (401, "not_logged_in")
        assert portal.account(EMAIL).pending_email is None

    @pytest.mark.parametrize("path", ["/auth/email/confirm", "/auth/email/undo", "/auth/confirm"])
    @pytest.mark.parametrize("token", ["garbage", "", "x" * 100_000, "a\x00b", "\ud800"])
    def test_garbage_tokens_are_400(self, portal: Portal, path: str, token: str) -> None:
        """A token that is no link of the page's kind: 400 ``invalid_link``, nothing changes."""
        registered(portal)
        reply = portal.browser().post(path, {"token": token})
        assert (reply.status, reply.body["error"]) == (400, "invalid_link")
        assert portal.account(EMAIL).email == EMAIL

    def test_links_of_the_other_kind_are_refused(self, portal: Portal) -> None:
        """A change link is no undo link, and a reset link neither: 400, nothing changes."""
        registered(portal)
        browser = logged_in(portal)
        browser.post("/auth/email/change", {"password": GOOD, "email": NEW_EMAIL})
        change = token_of(extract_link(portal.outbox.last_email(to=NEW_EMAIL)))
        browser.post("/auth/password/forgot", {"identifier": EMAIL})
        reset = token_of(extract_link(portal.outbox.last_email(to=EMAIL)))
        for path, token in [("/auth/email/undo", change), ("/auth/email/confirm", reset)]:
            reply = browser.post(path, {"token": token})
            assert (reply.status, reply.body["error"]) == (400, "invalid_link")
        assert portal.account(EMAIL).email == EMAIL

    def test_an_expired_link_says_so(self, portal: Portal) -> None:
        """Past ``email_change_link_lifetime``: 400 ``expired_link``, on either page."""
        registered(portal)
        browser = logged_in(portal)
        browser.post("/auth/email/change", {"password": GOOD, "email": NEW_EMAIL})
        token = token_of(extract_link(portal.outbox.last_email(to=NEW_EMAIL)))
        portal.clock.advance(portal.service.settings.email_change_link_lifetime + timedelta(1))
        for path in ("/auth/email/confirm", "/auth/confirm"):
            reply = browser.post(path, {"token": token})
            assert (reply.status, reply.body["error"]) == (400, "expired_link")

    def test_a_form_without_the_token_is_400(self, portal: Portal) -> None:
        """No token in the body and no cookie: 400, the page asks to open the link first."""
        for path in ("/auth/email/confirm", "/auth/email/undo"):
            reply = portal.browser().post(path, lang="ru")
            assert (reply.status, reply.body["error"]) == (400, "invalid_link")
            assert reply.body["message"] == _web.message("no_link", "ru")

    def test_concurrent_confirmation_succeeds_once(self, portal: Portal) -> None:
        """Eight browsers post the same change link at once: exactly one 200."""
        registered(portal)
        logged_in(portal).post("/auth/email/change", {"password": GOOD, "email": NEW_EMAIL})
        token = token_of(extract_link(portal.outbox.last_email(to=NEW_EMAIL)))
        browsers = [portal.browser() for _ in range(8)]
        barrier = threading.Barrier(len(browsers))
        statuses: list[int] = []

        def redeem(browser: Browser) -> None:
            barrier.wait()
            statuses.append(browser.post("/auth/email/confirm", {"token": token}).status)

        threads = [threading.Thread(target=redeem, args=(b,)) for b in browsers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses) == [200] + [400] * 7


class TestPhone:
    def test_an_unproven_phone_gets_no_reset_code_until_proven(self, portal: Portal) -> None:
        """Sign-up with a phone, prove it by its code, then the SMS reset reaches it."""
        registered(portal, phone=PHONE, prove_phone=False)
        laptop, other = logged_in(portal), logged_in(portal)
        stranger = portal.browser()
        assert stranger.post("/auth/password/forgot/sms", {"phone": PHONE}).status == 202
        assert portal.outbox.sms == []  # not proven: no reset code
        portal.clock.advance(timedelta(minutes=2))  # the request counted for the cooldown
        asked = laptop.post("/auth/phone", {"password": GOOD, "phone": "8 701 123 45 67"})
        assert (asked.status, asked.body["message"]) == (
            202,
            _web.message("phone_code_sent", "en"),
        )
        code = extract_code(portal.outbox.last_sms(to=PHONE))
        done = laptop.post("/auth/phone/verify", {"code": code}, lang="kk")
        assert (done.status, done.body["message"]) == (200, _web.message("phone_verified", "kk"))
        assert portal.account(EMAIL).phone_verified
        assert laptop.get("/auth/me").status == 200
        assert other.get("/auth/me").status == 401
        portal.clock.advance(timedelta(minutes=2))  # past the SMS cooldown
        assert stranger.post("/auth/password/forgot/sms", {"phone": PHONE}).status == 202
        assert portal.outbox.last_sms(to=PHONE).kind == "reset_code"

    def test_a_change_of_number(self, portal: Portal) -> None:
        """A new number by its code; the old verified one is told; log-in by the new one."""
        registered(portal, phone=PHONE)
        browser = logged_in(portal)
        assert browser.post("/auth/phone", {"password": GOOD, "phone": NEW_PHONE}).status == 202
        code = extract_code(portal.outbox.last_sms(to=NEW_PHONE))
        assert browser.post("/auth/phone/verify", {"code": code}).status == 200
        assert portal.account(EMAIL).phone == NEW_PHONE
        assert portal.outbox.last_sms(to=PHONE).kind == "phone_changed"
        logged_in(portal, NEW_PHONE, GOOD)

    @pytest.mark.parametrize("code", ["000000", "", "\x00", "x" * 10_000, "\ud800"])
    def test_a_wrong_code_is_400_and_the_number_waits(self, portal: Portal, code: str) -> None:
        """A wrong or garbage code: 400 ``invalid_code`` (``wrong``), nothing set."""
        registered(portal, phone=PHONE, prove_phone=False)
        browser = logged_in(portal)
        browser.post("/auth/phone", {"password": GOOD, "phone": PHONE})
        right = extract_code(portal.outbox.last_sms(to=PHONE))
        wrong = code if code != right else "999999"
        reply = browser.post("/auth/phone/verify", {"code": wrong}, lang="ru")
        assert (reply.status, reply.body["error"], reply.body["reason"]) == (
            400,
            "invalid_code",
            "wrong",
        )
        assert not portal.account(EMAIL).phone_verified
        assert browser.get("/auth/me").status == 200

    def test_too_many_wrong_codes(self, portal: Portal) -> None:
        """After ``sms_max_attempts`` wrong codes even the right one is ``exhausted``."""
        registered(portal, phone=PHONE, prove_phone=False)
        browser = logged_in(portal)
        browser.post("/auth/phone", {"password": GOOD, "phone": PHONE})
        code = extract_code(portal.outbox.last_sms(to=PHONE))
        wrong = str((int(code) + 1) % 10**6).zfill(6)
        for _ in range(portal.service.settings.sms_max_attempts):
            browser.post("/auth/phone/verify", {"code": wrong})
        last = browser.post("/auth/phone/verify", {"code": code})
        assert (last.status, last.body["reason"]) == (400, "exhausted")

    def test_a_code_without_a_request_is_400(self, portal: Portal) -> None:
        """Nothing waits for a code: 400 ``invalid_code`` (``expired``)."""
        registered(portal)
        reply = logged_in(portal).post("/auth/phone/verify", {"code": "123456"})
        assert (reply.status, reply.body["reason"]) == (400, "expired")

    @pytest.mark.parametrize(
        "phone", ["12", "+1 202 555 0100", "+7 727 250 00 00", "\x00", "8" * 5000]
    )
    def test_malformed_phones_are_422_and_write_nothing(self, portal: Portal, phone: str) -> None:
        """422 ``invalid_phone`` with its reason; no code, nothing waits."""
        registered(portal)
        reply = logged_in(portal).post("/auth/phone", {"password": GOOD, "phone": phone}, lang="kk")
        assert (reply.status, reply.body["error"]) == (422, "invalid_phone")
        assert reply.body["reason"]
        assert portal.account(EMAIL).pending_phone is None
        assert portal.outbox.sms == []

    def test_wrong_password_is_403(self, portal: Portal) -> None:
        """A wrong password to ask for a code or to remove the phone: 403, nothing changes."""
        registered(portal, phone=PHONE)
        browser = logged_in(portal)
        for path, form in [
            ("/auth/phone", {"password": BAD, "phone": NEW_PHONE}),
            ("/auth/phone/remove", {"password": BAD}),
        ]:
            reply = browser.post(path, form)
            assert (reply.status, reply.body["error"]) == (403, "wrong_password")
        account = portal.account(EMAIL)
        assert (account.phone, account.pending_phone) == (PHONE, None)
        assert portal.outbox.sms == []

    def test_the_verified_number_again_is_409_unchanged(self, portal: Portal) -> None:
        """Asking to prove a number that is verified already: 409 ``unchanged``, no SMS."""
        registered(portal, phone=PHONE)
        reply = logged_in(portal).post("/auth/phone", {"password": GOOD, "phone": PHONE})
        assert (reply.status, reply.body["error"]) == (409, "unchanged")
        assert portal.outbox.sms == []

    def test_the_cooldown_is_429_with_retry_after(self, portal: Portal) -> None:
        """A second code within ``sms_cooldown``: 429 and Retry-After."""
        registered(portal)
        browser = logged_in(portal)
        assert browser.post("/auth/phone", {"password": GOOD, "phone": PHONE}).status == 202
        again = browser.post("/auth/phone", {"password": GOOD, "phone": PHONE})
        assert (again.status, again.body["error"]) == (429, "rate_limited")
        assert 1 <= int(again.headers["Retry-After"]) <= 60

    def test_removal_keeps_this_session_and_ends_the_others(self, portal: Portal) -> None:
        """Removed with the password; the other browser is out; a second removal is 409."""
        registered(portal, phone=PHONE)
        laptop, other = logged_in(portal), logged_in(portal)
        done = laptop.post("/auth/phone/remove", {"password": GOOD}, lang="ru")
        assert (done.status, done.body["message"]) == (200, _web.message("phone_removed", "ru"))
        assert portal.account(EMAIL).phone is None
        assert laptop.get("/auth/me").status == 200
        assert other.get("/auth/me").status == 401
        again = laptop.post("/auth/phone/remove", {"password": GOOD})
        assert (again.status, again.body["error"]) == (409, "no_phone")

    @pytest.mark.parametrize(
        ("path", "form"),
        [
            ("/auth/phone", {"password": GOOD, "phone": PHONE}),
            ("/auth/phone/verify", {"code": "123456"}),
            ("/auth/phone/remove", {"password": GOOD}),
            ("/auth/time-zone", {"time_zone": "Asia/Almaty"}),
        ],
    )
    def test_needs_a_live_session(self, portal: Portal, path: str, form: dict[str, str]) -> None:
        """Without one: 401, with a session that must change its password first: 403."""
        registered(portal, phone=PHONE)
        assert portal.browser().post(path, form).status == 401
        portal.sync_storage.accounts.set_must_change_password(portal.account(EMAIL).id, True)
        reply = logged_in(portal).post(path, form)
        assert (reply.status, reply.body["error"]) == (403, "password_change_required")


class TestContactWebLayer:
    """The shared pieces of the lifecycle endpoints (``contrib._web``), framework-free."""

    @given(
        first_expired=st.booleans(),
        second_expired=st.booleans(),
    )
    def test_an_expired_link_says_expired_whichever_purpose(
        self, first_expired: bool, second_expired: bool
    ) -> None:
        """``token_refusal`` is "expired" when either purpose found the token expired."""
        from kaspi_identity import ExpiredTokenError, InvalidTokenError

        first = ExpiredTokenError("expired") if first_expired else InvalidTokenError("invalid")
        second = ExpiredTokenError("expired") if second_expired else InvalidTokenError("invalid")
        chosen = _web.token_refusal(first, second)
        assert isinstance(chosen, ExpiredTokenError) == (first_expired or second_expired)
        assert chosen is (first if first_expired or not second_expired else second)

    @given(
        held=st.sampled_from(["acc-1", "acc-2", None]),
        ok=st.booleans(),
        ends=st.booleans(),
    )
    def test_keep_session_renews_only_the_changed_accounts_session(
        self, held: str | None, ok: bool, ends: bool
    ) -> None:
        """The new stamp goes into a session only of that account, after a change that took."""
        from kaspi_identity.services import ContactChangeResult

        session: dict[str, Any] = {}
        if held is not None:
            session = {_web.SESSION_ACCOUNT: held, _web.SESSION_STAMP: "old"}
        result = ContactChangeResult(
            ok,
            "ok" if ok else "conflict",
            end_other_sessions=ends,
            security_stamp="new",
            account_id="acc-1",
        )
        before = dict(session)
        _web.keep_session(session, result)
        if held == "acc-1" and ok and ends:
            assert session == {**before, _web.SESSION_STAMP: "new"}
        else:
            assert session == before

    def test_the_new_link_cookies_live_as_long_as_their_links(self) -> None:
        """The cookie of a new address's link and of an undo link: their settings' lifetimes."""
        change = _web.link_cookie("email_change", "/auth/email/confirm", SETTINGS)
        undo = _web.link_cookie("email_undo", "/auth/email/undo", SETTINGS)
        assert change.max_age == SETTINGS.email_change_link_lifetime.total_seconds()
        assert undo.max_age == SETTINGS.email_undo_lifetime.total_seconds()
        assert (change.name, undo.name) == (
            "kaspi_identity_email_change",
            "kaspi_identity_email_undo",
        )

    def test_a_failing_store_leaves_the_phone_and_the_session_as_they_were(
        self, make_portal: Callable[..., Portal], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The store fails at the write of a proven code: a 500, nothing set, the session
        and the other browser's session still live with the old stamp."""
        from kaspi_identity.storage.memory import MemoryAccountStore, MemoryAccountWithHistory

        failing = {"on": False}
        for cls in (MemoryAccountStore, MemoryAccountWithHistory):
            original = cls.update_contact

            def update_contact(self: Any, *args: Any, _original: Any = original, **kw: Any) -> Any:
                if failing["on"]:
                    raise StorageError("the database went away")
                return _original(self, *args, **kw)

            # On the class, before the portal is built: the async face wraps what it finds.
            monkeypatch.setattr(cls, "update_contact", update_contact)
        portal = make_portal()
        registered(portal, phone=PHONE, prove_phone=False)
        laptop, other = logged_in(portal), logged_in(portal)
        laptop.post("/auth/phone", {"password": GOOD, "phone": PHONE})
        code = extract_code(portal.outbox.last_sms(to=PHONE))
        failing["on"] = True
        if portal.framework == "fastapi":
            client: Any = TestClient(portal.app, base_url=ORIGIN, raise_server_exceptions=False)
            client.cookies = laptop.client.cookies
            status = client.post("/auth/phone/verify", json={"code": code}).status_code
            client.close()
        else:
            portal.app.testing = False  # a 500 answer, as in production
            status = laptop.post("/auth/phone/verify", {"code": code}).status
        assert status == 500
        failing["on"] = False
        assert not portal.account(EMAIL).phone_verified
        assert laptop.get("/auth/me").status == 200
        assert other.get("/auth/me").status == 200


class TestTimeZone:
    def test_set_and_clear(self, portal: Portal) -> None:
        """A zone is kept on the account; ``null`` gives the site's back; sessions live on."""
        registered(portal)
        laptop, other = logged_in(portal), logged_in(portal)
        done = laptop.post("/auth/time-zone", {"time_zone": "Asia/Aqtobe"}, lang="kk")
        assert (done.status, done.body["message"]) == (200, _web.message("time_zone_set", "kk"))
        assert portal.account(EMAIL).time_zone == "Asia/Aqtobe"
        assert other.get("/auth/me").status == 200  # not a security change
        assert laptop.post("/auth/time-zone", {"time_zone": None}).status == 200
        assert portal.account(EMAIL).time_zone is None

    @pytest.mark.parametrize(
        "zone", ["Mars/Olympus", "", "../etc/passwd", "a\x00b", "\ud800", "x" * 100_000]
    )
    def test_an_unknown_zone_is_422(self, portal: Portal, zone: str) -> None:
        """422 ``invalid_time_zone`` on the field; nothing stored."""
        registered(portal)
        reply = logged_in(portal).post("/auth/time-zone", {"time_zone": zone}, lang="ru")
        assert (reply.status, reply.body["error"], reply.body["field"]) == (
            422,
            "invalid_time_zone",
            "time_zone",
        )
        assert reply.body["message"] == _web.message("invalid_time_zone", "ru")
        assert portal.account(EMAIL).time_zone is None

    @pytest.mark.parametrize("body", [{}, {"time_zone": 3}, {"time_zone": ["Asia/Almaty"]}])
    def test_a_missing_or_untyped_field_is_422(self, portal: Portal, body: dict[str, Any]) -> None:
        """``time_zone`` must be given, as a string or null: else ``invalid_request``."""
        registered(portal)
        reply = logged_in(portal).post("/auth/time-zone", body)
        assert (reply.status, reply.body["error"], reply.body["field"]) == (
            422,
            "invalid_request",
            "time_zone",
        )


# --------------------------------------------------------------------------- policy


class TestPolicyEndpoint:
    @pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
    def test_serves_the_document(self, portal: Portal, lang: str) -> None:
        """``GET /policy`` is ``PasswordPolicy.document(lang)``, valid against the schema."""
        reply = portal.browser().get("/auth/policy", lang=lang)
        assert reply.status == 200
        assert reply.body == portal.service.policy.document(lang)
        jsonschema.validate(reply.body, SCHEMA)
        assert reply.headers["Content-Language"] == lang

    def test_serves_the_services_own_policy(self, framework: str) -> None:
        """A preset's rules and requirement lines, as the service checks them."""
        policy = PasswordPolicy.preset("kz-procurement")
        outbox = Outbox()
        if framework == "fastapi":
            app: Any = FastAPI()
            app.state.kaspi_identity = AsyncIdentityService(
                async_memory_storage(), SETTINGS, email_sender=outbox, policy=policy
            )
            app.include_router(identity_router(), prefix="/auth")
            body = TestClient(app).get("/auth/policy", headers={"Accept-Language": "kk"}).json()
        else:
            flask_app = Flask(__name__)
            service = IdentityService(
                memory_storage(), SETTINGS, email_sender=outbox, policy=policy
            )
            KaspiIdentity(flask_app, service=service)
            body = (
                flask_app.test_client().get("/auth/policy", headers={"Accept-Language": "kk"}).json
            )
        assert body == policy.document("kk")
        assert body["history"] is not None


# --------------------------------------------------------------------------- any input, faults

#: What each endpoint may answer, as docs/fastapi.md lists it.
DOCUMENTED = {
    "/auth/register": {202, 409, 422, 429},
    "/auth/confirm": {200, 400, 409, 422},
    "/auth/confirm/resend": {202, 422, 429},
    "/auth/login": {200, 401, 403, 422, 429},
    "/auth/password/change": {401, 422},  # no session here
    "/auth/password/forgot": {202, 422, 429},
    "/auth/password/forgot/sms": {202, 422, 429},
    "/auth/password/verify-code": {200, 400, 422},
    "/auth/password/reset": {200, 400, 422},
    "/auth/email/change": {401, 422},  # no session here
    "/auth/email/confirm": {200, 400, 409, 422},
    "/auth/email/undo": {200, 400, 422},
    "/auth/phone": {401, 422},
    "/auth/phone/verify": {401, 422},
    "/auth/phone/remove": {401, 422},
    "/auth/time-zone": {401, 422},
}
FIELDS = [
    "email", "username", "phone", "iin", "names", "password", "confirmation", "token",
    "identifier", "current", "code", "time_zone",
]  # fmt: skip
VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from([EMAIL, PHONE, "87011234567", GOOD, "000000", "+7 727 250 00 00"]),
    st.none(),
    st.integers(),
    st.lists(st.text(max_size=8), max_size=2),
)


# A typed value the fuzzer may draw that is also a word of some answer's text.
_WORDS_OF_ANSWERS = {"000000"} - {"000000"}


class TestAnyInput:
    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        path=st.sampled_from(sorted(DOCUMENTED)),
        body=st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=7),
    )
    def test_any_body_gets_a_documented_answer(
        self, portal: Portal, path: str, body: dict[str, object]
    ) -> None:
        """Whatever the fields hold (garbage, NUL, surrogates, wrong types): a documented
        status, the answer's shape, and nothing typed echoed back."""
        reply = portal.browser().post(path, body, lang="ru")
        assert reply.status in DOCUMENTED[path], (reply.status, reply.body)
        assert reply.body["ok"] is (reply.status < 300)
        assert isinstance(reply.body["message"], str)
        assert reply.body["message"]
        if reply.status == 429:
            assert int(reply.headers["Retry-After"]) >= 1
        text = json.dumps(reply.body, ensure_ascii=False)
        typed = {v for v in body.values() if isinstance(v, str) and len(v) >= 6}
        assert {v for v in typed if v in text} <= _WORDS_OF_ANSWERS


class TestFaults:
    def test_a_failing_store_starts_no_session(
        self, portal: Portal, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The store fails half-way through a log-in: a 500, and no session is started."""
        registered(portal)

        def broken(*args: object, **kwargs: object) -> None:
            raise StorageError("the database went away")

        monkeypatch.setattr(portal.sync_storage.accounts, "record_login_success", broken)
        if portal.framework == "fastapi":
            client: Any = TestClient(portal.app, base_url=ORIGIN, raise_server_exceptions=False)
            answer = client.post("/auth/login", json={"identifier": EMAIL, "password": GOOD})
            status, cookies = answer.status_code, answer.headers.get_list("set-cookie")
            me = client.get("/auth/me").status_code
            client.close()
        else:
            flask_client = portal.app.test_client()
            answer = flask_client.post(
                "/auth/login", json={"identifier": EMAIL, "password": GOOD}, base_url=ORIGIN
            )
            status, cookies = answer.status_code, answer.headers.getlist("Set-Cookie")
            me = flask_client.get("/auth/me", base_url=ORIGIN).status_code
        assert status == 500
        assert cookies == []
        assert me == 401


# --------------------------------------------------------------------------- password age


def aged(make_portal: Callable[..., Portal], **rules: Any) -> Portal:
    """A portal whose policy has the age rules given (docs/policy.md, "Password age")."""
    return make_portal(policy=PasswordPolicy(**rules))


class TestPasswordAge:
    def test_an_expired_password_with_a_grace_log_in(
        self, make_portal: Callable[..., Portal]
    ) -> None:
        """Logged in, told why and how many grace log-ins are left; host views wait for a change."""
        portal = aged(make_portal, max_age_days=30, grace_logins=2)
        registered(portal)
        portal.clock.advance(timedelta(days=31))
        browser = portal.browser()
        login = browser.post("/auth/login", {"identifier": EMAIL, "password": GOOD}, lang="ru")
        assert login.status == 200
        assert login.body["needs_password_change"] is True
        assert login.body["password_change_reason"] == "expired"
        assert login.body["grace_logins_left"] == 1
        assert login.body["password_message"]
        assert login.body["password_expires_at"].startswith("2026-01-31")
        me = browser.get("/auth/me")
        assert (me.status, me.body["needs_password_change"]) == (200, True)
        blocked = browser.get("/cabinet")
        assert blocked.status == 403
        assert "password_change_required" in json.dumps(blocked.body)
        form = {"current": GOOD, "password": BETTER, "confirmation": BETTER}
        assert browser.post("/auth/password/change", form).status == 200
        assert browser.get("/cabinet").status == 200
        assert browser.get("/auth/me").body["needs_password_change"] is False

    def test_an_expired_password_without_grace_is_changed_on_the_spot(
        self, make_portal: Callable[..., Portal]
    ) -> None:
        """403 ``password_expired`` and no session; the change form works, then a log-in."""
        portal = aged(make_portal, max_age_days=30)
        registered(portal)
        portal.clock.advance(timedelta(days=31))
        browser = portal.browser()
        login = browser.post("/auth/login", {"identifier": EMAIL, "password": GOOD}, lang="kk")
        assert (login.status, login.body["error"]) == (403, "password_expired")
        assert login.body["message"] == login.body["password_message"]
        assert browser.get("/auth/me").status == 401
        assert browser.get("/cabinet").status == 401
        wrong = {"current": BAD, "password": BETTER, "confirmation": BETTER}
        assert browser.post("/auth/password/change", wrong).body["error"] == "wrong_password"
        form = {"current": GOOD, "password": BETTER, "confirmation": BETTER}
        assert browser.post("/auth/password/change", form).status == 200
        assert browser.get("/auth/me").status == 401  # not logged in by the change
        again = browser.post("/auth/login", {"identifier": EMAIL, "password": BETTER})
        assert (again.status, again.body["needs_password_change"]) == (200, False)

    def test_a_wrong_password_never_says_expired(self, make_portal: Callable[..., Portal]) -> None:
        """``password_expired`` needs the right password: a wrong one is the usual 401."""
        portal = aged(make_portal, max_age_days=30)
        registered(portal)
        portal.clock.advance(timedelta(days=31))
        reply = portal.browser().post("/auth/login", {"identifier": EMAIL, "password": BAD})
        assert (reply.status, reply.body["error"]) == (401, "login_failed")

    def test_expiring_is_advice_only(self, make_portal: Callable[..., Portal]) -> None:
        """Inside the warning window the log-in says so and every view stays open."""
        portal = aged(make_portal, max_age_days=30, expiry_warning_days=5)
        registered(portal)
        portal.clock.advance(timedelta(days=27))
        browser = portal.browser()
        login = browser.post("/auth/login", {"identifier": EMAIL, "password": GOOD})
        assert login.body["needs_password_change"] is False
        assert login.body["password_change_reason"] == "expiring"
        assert login.body["password_message"]
        assert browser.get("/cabinet").status == 200

    def test_an_operators_must_change_flag(self, portal: Portal) -> None:
        """``require_password_change``: the next log-in asks for a change before anything else."""
        registered(portal)
        portal.sync_storage.accounts.set_must_change_password(portal.account(EMAIL).id, True)
        browser = logged_in(portal)
        assert browser.get("/auth/me").body["password_change_reason"] == "must_change"
        assert browser.get("/cabinet").status == 403

    def test_too_soon_is_403_with_retry_after(self, make_portal: Callable[..., Portal]) -> None:
        """Under ``min_age_hours`` a second change waits: 403 ``too_soon`` and Retry-After."""
        portal = aged(make_portal, min_age_hours=24)
        registered(portal)
        browser = logged_in(portal)
        portal.clock.advance(timedelta(hours=25))  # the password set at registration is old enough
        first = {"current": GOOD, "password": BETTER, "confirmation": BETTER}
        assert browser.post("/auth/password/change", first).status == 200
        portal.clock.advance(timedelta(hours=1))
        second = {
            "current": BETTER,
            "password": "Baiterek-Astana-97",
            "confirmation": "Baiterek-Astana-97",
        }
        reply = browser.post("/auth/password/change", second, lang="ru")
        assert (reply.status, reply.body["error"]) == (403, "too_soon")
        assert int(reply.headers["Retry-After"]) == reply.body["retry_after"] == 23 * 3600
        assert "23" in reply.body["message"]
