"""What only the FastAPI face has: dependencies, OpenAPI, the router's options.

The flows' answers are tested on both frameworks at once in test_contrib_fastapi_flask.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.testclient import TestClient
from starlette.middleware.sessions import SessionMiddleware

from kaspi_identity import StorageError, UnknownLanguageError
from kaspi_identity.contrib.fastapi import (
    CurrentAccount,
    forget_link,
    get_identity_service,
    identity_lifespan,
    identity_router,
    keep_session,
    link_token,
    optional_account,
    start_session,
)
from kaspi_identity.delivery import Outbox, extract_link
from kaspi_identity.hashing import TESTS_ONLY, PasswordHasher
from kaspi_identity.services import AsyncIdentityService, IdentitySettings
from kaspi_identity.storage.memory import async_memory_storage

ORIGIN = "https://portal.test"
EMAIL = "aliya@example.kz"
GOOD, BETTER = "Tengri-Sky-2026!", "Altyn-Orda-1465!"
SETTINGS = IdentitySettings(
    secret_keys=(b"0123456789abcdef0123456789abcdef",),
    confirm_url=f"{ORIGIN}/auth/confirm",
    reset_url=f"{ORIGIN}/auth/password/reset",
)


def make_app(**router: Any) -> tuple[FastAPI, Outbox]:
    outbox = Outbox()
    app = FastAPI()
    app.state.kaspi_identity = AsyncIdentityService(
        async_memory_storage(),
        SETTINGS,
        email_sender=outbox,
        sms_sender=outbox,
        hasher=PasswordHasher(TESTS_ONLY),
    )
    app.add_middleware(SessionMiddleware, secret_key="test-session-key", https_only=True)
    app.include_router(identity_router(**router), prefix="/auth")

    @app.get("/cabinet")
    async def cabinet(account_id: CurrentAccount) -> dict[str, str]:
        return {"account": account_id}

    @app.get("/welcome")
    async def welcome(
        account_id: Annotated[str | None, Depends(optional_account)],
    ) -> dict[str, str | None]:
        return {"account": account_id}

    return app, outbox


@pytest.fixture
def app() -> tuple[FastAPI, Outbox]:
    return make_app()


@pytest.fixture
def client(app: tuple[FastAPI, Outbox]) -> Iterator[TestClient]:
    with TestClient(app[0], base_url=ORIGIN) as client:
        yield client


def sign_up_and_log_in(client: TestClient, outbox: Outbox) -> str:
    form = {"email": EMAIL, "password": GOOD, "confirmation": GOOD}
    assert client.post("/auth/register", json=form).status_code == 202
    client.get(extract_link(outbox.last_email(to=EMAIL)))
    client.post("/auth/confirm", json={})
    answer = client.post("/auth/login", json={"identifier": EMAIL, "password": GOOD})
    account: str = answer.json()["account_id"]
    return account


class TestDependencies:
    def test_current_account_guards_a_host_view(
        self, app: tuple[FastAPI, Outbox], client: TestClient
    ) -> None:
        """``CurrentAccount``: 401 without a session, the account id with one."""
        refused = client.get("/cabinet", headers={"Accept-Language": "ru"})
        assert refused.status_code == 401
        assert refused.json()["detail"]["error"] == "not_logged_in"
        assert refused.json()["detail"]["message"] == "Сначала войдите в систему."
        account = sign_up_and_log_in(client, app[1])
        assert client.get("/cabinet").json() == {"account": account}
        assert client.get("/welcome").json() == {"account": account}

    def test_a_reset_elsewhere_ends_the_session(self, app: tuple[FastAPI, Outbox]) -> None:
        """The stamp changed: the dependency clears the session, the view answers 401."""
        fastapi_app, outbox = app
        with (
            TestClient(fastapi_app, base_url=ORIGIN) as laptop,
            TestClient(fastapi_app, base_url=ORIGIN) as phone,
        ):
            sign_up_and_log_in(laptop, outbox)
            assert laptop.get("/cabinet").status_code == 200
            phone.post("/auth/password/forgot", json={"identifier": EMAIL})
            phone.get(extract_link(outbox.last_email(to=EMAIL)))
            form = {"password": BETTER, "confirmation": BETTER}
            assert phone.post("/auth/password/reset", json=form).status_code == 200
            assert laptop.get("/cabinet").status_code == 401
            assert laptop.get("/welcome").json() == {"account": None}

    def test_the_service_dependency_can_be_overridden(self, app: tuple[FastAPI, Outbox]) -> None:
        """``app.dependency_overrides[get_identity_service]`` swaps the service for a test."""
        fastapi_app, _ = app
        other_outbox = Outbox()
        other = AsyncIdentityService(
            async_memory_storage(),
            SETTINGS,
            email_sender=other_outbox,
            hasher=PasswordHasher(TESTS_ONLY),
        )
        fastapi_app.dependency_overrides[get_identity_service] = lambda: other
        with TestClient(fastapi_app, base_url=ORIGIN) as client:
            form = {"email": EMAIL, "password": GOOD, "confirmation": GOOD}
            assert client.post("/auth/register", json=form).status_code == 202
        assert [m.to for m in other_outbox.emails] == [EMAIL]

    def test_without_a_service_the_error_says_what_to_set(self) -> None:
        """A forgotten ``app.state.kaspi_identity`` is a clear error, not an AttributeError."""
        app = FastAPI()
        app.include_router(identity_router(), prefix="/auth")
        with (
            TestClient(app, raise_server_exceptions=True) as client,
            pytest.raises(RuntimeError, match=r"app\.state\.kaspi_identity"),
        ):
            client.get("/auth/policy")

    def test_without_session_middleware_the_error_says_what_to_add(self) -> None:
        """The log-in needs Starlette's SessionMiddleware, and says so."""
        app = FastAPI()
        app.state.kaspi_identity = AsyncIdentityService(
            async_memory_storage(),
            SETTINGS,
            email_sender=Outbox(),
            hasher=PasswordHasher(TESTS_ONLY),
        )
        app.include_router(identity_router(), prefix="/auth")
        with TestClient(app) as client, pytest.raises(RuntimeError, match="SessionMiddleware"):
            client.post("/auth/login", json={"identifier": EMAIL, "password": GOOD})


class TestRouterOptions:
    def test_a_default_language_without_catalog_fails_at_once(self) -> None:
        """A typo in ``default_language`` fails when the router is built."""
        with pytest.raises(UnknownLanguageError):
            identity_router(default_language="de")

    def test_client_key_decides_the_rate_limit_bucket(self) -> None:
        """A host's ``client_key`` (here a trusted proxy's header) keys the per-client limits."""

        def from_proxy(request: Request) -> str:
            return request.headers["X-Real-IP"]

        app, _ = make_app(client_key=from_proxy)
        with TestClient(app, base_url=ORIGIN) as client:
            statuses: list[int] = []
            for ip in ["192.0.2.1"] * 21 + ["192.0.2.2"]:
                answer = client.post(
                    "/auth/password/forgot",
                    json={"identifier": f"user{len(statuses)}@example.kz"},
                    headers={"X-Real-IP": ip},
                )
                statuses.append(answer.status_code)
        assert statuses == [202] * 20 + [429, 202]


class TestOpenApi:
    def test_every_answer_is_documented(self, client: TestClient) -> None:
        """Each endpoint lists its refusals with the Problem model; 429 names Retry-After."""
        spec = client.get("/openapi.json").json()
        paths = spec["paths"]
        expected = {
            ("/auth/register", "post"): {"202", "409", "422", "429"},
            ("/auth/confirm", "post"): {"200", "400", "409", "422"},
            ("/auth/confirm", "get"): {"200", "303", "422"},
            ("/auth/email/change", "post"): {"202", "401", "403", "409", "422", "429"},
            ("/auth/email/confirm", "post"): {"200", "400", "409", "422"},
            ("/auth/email/confirm", "get"): {"200", "303", "422"},
            ("/auth/email/undo", "post"): {"200", "400", "422"},
            ("/auth/email/undo", "get"): {"200", "303", "422"},
            ("/auth/phone", "post"): {"202", "401", "403", "409", "422", "429"},
            ("/auth/phone/verify", "post"): {"200", "400", "401", "403", "409", "422"},
            ("/auth/phone/remove", "post"): {"200", "401", "403", "409", "422", "429"},
            ("/auth/time-zone", "post"): {"200", "401", "403", "422"},
            ("/auth/confirm/resend", "post"): {"202", "422", "429"},
            ("/auth/login", "post"): {"200", "401", "403", "422", "429"},
            ("/auth/logout", "post"): {"200"},
            ("/auth/me", "get"): {"200", "401"},
            ("/auth/password/change", "post"): {"200", "401", "403", "409", "422", "429"},
            ("/auth/password/forgot", "post"): {"202", "422", "429"},
            ("/auth/password/forgot/sms", "post"): {"202", "422", "429"},
            ("/auth/password/verify-code", "post"): {"200", "400", "422"},
            ("/auth/password/reset", "post"): {"200", "400", "422"},
            ("/auth/password/reset", "get"): {"200", "303", "422"},
            ("/auth/policy", "get"): {"200"},
        }
        found = {
            (path, method): set(operation["responses"])
            for path, methods in paths.items()
            if path.startswith("/auth/")
            for method, operation in methods.items()
        }
        assert found == expected
        problem = "#/components/schemas/Problem"
        for (path, method), statuses in expected.items():
            responses = paths[path][method]["responses"]
            for status in statuses - {"200", "202", "303"}:
                schema = responses[status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": problem}, (path, method, status)
            if "429" in statuses:
                assert "Retry-After" in responses["429"]["headers"]
        assert {
            "RegisterForm",
            "LoginAnswer",
            "GrantAnswer",
            "ViolationOut",
            "EmailChangeForm",
            "PhoneChangeForm",
            "PhoneCodeForm",
            "PasswordForm",
            "TimeZoneForm",
        } <= set(spec["components"]["schemas"])


class TestLifespan:
    def test_builds_the_service_and_closes_its_stores(self, tmp_path: Any) -> None:
        """The service is on ``app.state`` while the app runs; its SQLite file is closed after."""
        from kaspi_identity.storage.sqlite import async_sqlite_storage

        built: list[AsyncIdentityService] = []

        def build() -> AsyncIdentityService:
            service = AsyncIdentityService(
                async_sqlite_storage(tmp_path / "portal.sqlite3"),
                SETTINGS,
                email_sender=Outbox(),
                hasher=PasswordHasher(TESTS_ONLY),
            )
            built.append(service)
            return service

        app = FastAPI(lifespan=identity_lifespan(build))
        app.include_router(identity_router(), prefix="/auth")
        with TestClient(app) as client:
            assert app.state.kaspi_identity is built[0]
            assert client.get("/auth/policy").status_code == 200
        # Its worker threads are stopped: no store call can run any more.
        with pytest.raises(StorageError, match="closed"):
            asyncio.run(built[0].storage.accounts.get("anyone"))

    def test_build_must_give_the_async_service(self) -> None:
        """A synchronous service (or anything else) is refused at start-up."""
        from kaspi_identity.services import IdentityService
        from kaspi_identity.storage.memory import memory_storage

        def build() -> Any:
            return IdentityService(memory_storage(), SETTINGS, email_sender=Outbox())

        app = FastAPI(lifespan=identity_lifespan(build))
        with pytest.raises(TypeError, match="AsyncIdentityService"), TestClient(app):
            pass


HostService = Annotated[AsyncIdentityService, Depends(get_identity_service)]


class TestHooksForAHostsOwnPages:
    """The hooks a host's own form pages use: start/keep_session, link_token, forget_link."""

    @staticmethod
    def host_app() -> tuple[FastAPI, Outbox]:
        app, outbox = make_app(reset_page="/auth/password/reset/new")

        @app.post("/form/login")
        async def form_login(request: Request, service: HostService) -> dict[str, bool]:
            form = await request.json()
            result = await service.authenticate(
                form["identifier"], form["password"], client_key="test"
            )
            start_session(request, result)
            return {"ok": result.ok}

        @app.post("/form/change")
        async def form_change(
            request: Request, service: HostService, account_id: CurrentAccount
        ) -> dict[str, bool]:
            form = await request.json()
            result = await service.change_password(
                account_id, form["current"], form["password"], form["password"], client_key="t"
            )
            keep_session(request, result)
            return {"ok": result.ok}

        @app.post("/auth/password/reset/new")
        async def form_reset(request: Request, service: HostService) -> Response:
            token = link_token(request, "reset")
            if token is None:
                return JSONResponse({"ok": False, "token": False}, status_code=400)
            result = await service.reset_password(token, BETTER, BETTER)
            answer = JSONResponse({"ok": result.ok, "token": True})
            forget_link(answer, request, "reset", path="/auth/password/reset")
            return answer

        return app, outbox

    def test_a_form_log_in_is_a_session_the_dependencies_accept(self) -> None:
        """start_session: CurrentAccount accepts it; a wrong password leaves no session."""
        app, outbox = self.host_app()
        with TestClient(app, base_url=ORIGIN) as client:
            sign_up_and_log_in(client, outbox)
            client.post("/auth/logout")
            wrong = client.post("/form/login", json={"identifier": EMAIL, "password": "nope"})
            assert wrong.json() == {"ok": False}
            assert client.get("/cabinet").status_code == 401
            client.post("/form/login", json={"identifier": EMAIL, "password": GOOD})
            assert client.get("/cabinet").status_code == 200

    def test_keep_session_keeps_this_one_and_ends_the_others(self) -> None:
        """After a change through keep_session, this session lives; another one ends."""
        app, outbox = self.host_app()
        with (
            TestClient(app, base_url=ORIGIN) as laptop,
            TestClient(app, base_url=ORIGIN) as phone,
        ):
            sign_up_and_log_in(laptop, outbox)
            phone.post("/form/login", json={"identifier": EMAIL, "password": GOOD})
            changed = laptop.post("/form/change", json={"current": GOOD, "password": BETTER})
            assert changed.json() == {"ok": True}
            assert laptop.get("/cabinet").status_code == 200
            assert phone.get("/cabinet").status_code == 401

    def test_the_link_cookie_reaches_a_form_below_the_links_path(self) -> None:
        """link_token reads the cookie below the link's path; forget_link clears it."""
        app, outbox = self.host_app()
        with TestClient(app, base_url=ORIGIN) as client:
            sign_up_and_log_in(client, outbox)
            assert client.post("/auth/password/reset/new").json() == {"ok": False, "token": False}
            client.post("/auth/password/forgot", json={"identifier": EMAIL})
            moved = client.get(extract_link(outbox.last_email(to=EMAIL)), follow_redirects=False)
            assert moved.headers["location"] == "/auth/password/reset/new"
            client.cookies.update(moved.cookies)
            done = client.post("/auth/password/reset/new")
            assert done.json() == {"ok": True, "token": True}
            assert 'kaspi_identity_reset=""' in done.headers["set-cookie"]
            assert "Path=/auth/password/reset" in done.headers["set-cookie"]
