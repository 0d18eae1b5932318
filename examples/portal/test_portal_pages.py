"""The portal's pages without a browser: forms, CSRF, bad input, links, modes, the CLI.

FastAPI's test client posts the forms exactly as a browser without JavaScript would.
"""

from __future__ import annotations

import io
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from kaspi_portal import PortalConfig, create_app
from kaspi_portal._app import _linkify, _local
from kaspi_portal._text import TEXT, text

from kaspi_identity import PasswordPolicy
from kaspi_identity.cli import main as cli_main
from kaspi_identity.delivery import Outbox
from kaspi_identity.hashing import TESTS_ONLY, PasswordHasher
from kaspi_identity.services import RateLimit

BASE = "http://127.0.0.1:8000"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


GOOD = "Tengri-Sky-2026!"


def config(tmp_path: Path, **changes: object) -> PortalConfig:
    values: dict[str, object] = {
        "db": str(tmp_path / "portal.sqlite3"),
        "dev": True,
        "hasher": PasswordHasher(TESTS_ONLY),
    }
    values.update(changes)
    return PortalConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(config(tmp_path)), base_url=BASE) as browser:
        yield browser


def csrf(client: TestClient, path: str) -> str:
    page = client.get(path)
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def post(client: TestClient, path: str, form: dict[str, str], page: str | None = None) -> object:
    return client.post(
        path, data={"csrf": csrf(client, page or path), **form}, follow_redirects=False
    )


def codes(html: str, where: str = "") -> list[str]:
    scope = html
    if where:
        start = html.index(f'id="{where}"')
        scope = html[start : html.index("</div>", start)]
    return re.findall(r'data-code="([^"]+)"', scope)


class TestTheText:
    def test_every_line_is_in_every_language(self) -> None:
        """Each of the portal's lines has kk, ru and en, and none is empty."""
        for key, lines in TEXT.items():
            assert set(lines) == {"kk", "ru", "en"}, key
            assert all(line.strip() for line in lines.values()), key

    def test_the_seed_portals_words(self) -> None:
        """The words of the source portals: "Forgot password?", "Send code", "Save"."""
        assert text("forgot_link", "kk") == "Құпиясөзді ұмыттыңыз ба?"
        assert text("forgot_link", "ru") == "Забыли пароль?"
        assert text("send_code", "ru") == "Отправить код"
        assert text("code", "ru") == "Код подтверждения"


class TestForms:
    def test_a_form_without_this_sessions_token_is_refused(self, client: TestClient) -> None:
        """No CSRF token, or another one: 400 and nothing done."""
        for token in ("", "forged"):
            answer = client.post(
                "/login", data={"csrf": token, "identifier": "a@example.kz", "password": GOOD}
            )
            assert answer.status_code == 400
            assert codes(answer.text) == ["bad_form"]

    def test_registration_refused_then_accepted(self, client: TestClient) -> None:
        """Violations under their fields by code; the accepted form sends the letter."""
        weak = post(
            client,
            "/register",
            {"email": "aliya@example.kz", "password": "qwerty", "confirmation": "qwertz"},
        )
        assert weak.status_code == 422  # type: ignore[attr-defined]
        html = weak.text  # type: ignore[attr-defined]
        assert "too_short" in codes(html, "password-error")
        assert codes(html, "confirmation-error") == ["confirmation_mismatch"]
        assert 'value="aliya@example.kz"' in html
        assert "qwerty" not in html

        done = post(
            client,
            "/register",
            {"email": "aliya@example.kz", "password": GOOD, "confirmation": GOOD},
        )
        assert done.status_code == 200  # type: ignore[attr-defined]
        assert text("registered_title", "en") in done.text  # type: ignore[attr-defined]
        mail = client.app.state.portal_mail  # type: ignore[attr-defined]
        assert [letter.to for letter in mail.letters] == ["aliya@example.kz"]

    @pytest.mark.parametrize(
        "email", ["", "not-an-address", "a\x00@example.kz", "x" * 100_000 + "@example.kz"]
    )
    def test_a_bad_email_is_a_field_error_and_nothing_is_written(
        self, client: TestClient, email: str
    ) -> None:
        """Empty, malformed, NUL, huge: 422 under the e-mail field, no letter, no account."""
        answer = post(client, "/register", {"email": email, "password": GOOD, "confirmation": GOOD})
        assert answer.status_code == 422  # type: ignore[attr-defined]
        assert codes(answer.text, "email-error")  # type: ignore[attr-defined]
        assert client.app.state.portal_mail.letters == []  # type: ignore[attr-defined]

    @pytest.mark.parametrize(
        ("password", "code"),
        [("Tengri\x00Sky-2026!", "disallowed_character"), ("Aa1!" * 50_000, "too_long")],
    )
    def test_a_bad_password_is_a_violation_and_nothing_is_written(
        self, client: TestClient, password: str, code: str
    ) -> None:
        """NUL, 200 000 characters: a violation under the password field, no letter sent."""
        form = {"email": "bad@example.kz", "password": password, "confirmation": password}
        answer = post(client, "/register", form)
        assert answer.status_code == 422  # type: ignore[attr-defined]
        assert code in codes(answer.text, "password-error")  # type: ignore[attr-defined]
        assert client.app.state.portal_mail.letters == []  # type: ignore[attr-defined]

    def test_bytes_that_are_not_utf8_or_garbage_fields_never_crash(
        self, client: TestClient
    ) -> None:
        """Invalid UTF-8, NUL in a log-in, a code or a reset identifier: a clean answer."""
        token = csrf(client, "/login")
        raw = client.post(
            "/register",
            content=b"csrf=" + token.encode() + b"&email=\xff\xfe&password=a",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert raw.status_code == 422
        login = client.post("/login", data={"csrf": token, "identifier": "a\x00b", "password": "x"})
        assert login.status_code == 401
        assert codes(login.text, "problems") == ["login_failed"]
        code = client.post(
            "/password/code", data={"csrf": token, "phone": "+77011234567", "code": "\x00" * 9}
        )
        assert code.status_code == 422
        assert codes(code.text, "code-error")
        forgot = client.post("/password/forgot", data={"csrf": token, "identifier": "\x00"})
        assert forgot.status_code == 200  # the same answer as for any unknown identifier
        assert client.app.state.portal_mail.letters == []  # type: ignore[attr-defined]

    def test_a_form_over_a_megabyte_is_refused_before_any_flow(self, client: TestClient) -> None:
        """Starlette's form parser refuses a field over 1 MB with a 400; nothing is written."""
        huge = "Aa1!" * 300_000
        form = {"email": "huge@example.kz", "password": huge, "confirmation": huge}
        assert post(client, "/register", form).status_code == 400  # type: ignore[attr-defined]
        assert client.app.state.portal_mail.letters == []  # type: ignore[attr-defined]

    def test_a_rate_limit_says_how_long_to_wait(self, tmp_path: Path) -> None:
        """Past the per-client limit of log-ins: the page says rate_limited, in seconds."""
        tight = {"login_per_client": RateLimit(2, timedelta(minutes=1))}
        with TestClient(create_app(config(tmp_path, settings=tight)), base_url=BASE) as client:
            form = {"identifier": "nobody@example.kz", "password": GOOD}
            answers = [post(client, "/login", form) for _ in range(3)]
        assert [codes(a.text, "problems") for a in answers] == [  # type: ignore[attr-defined]
            ["login_failed"],
            ["login_failed"],
            ["rate_limited"],
        ]
        assert re.search(r"\b\d+ s\b", answers[2].text)  # type: ignore[attr-defined]

    def test_a_malformed_phone_is_a_field_error(self, client: TestClient) -> None:
        """The SMS reset of a number that is no mobile says so under the phone field."""
        answer = post(client, "/password/forgot/phone", {"phone": "12"})
        assert answer.status_code == 422  # type: ignore[attr-defined]
        assert codes(answer.text, "phone-error")  # type: ignore[attr-defined]

    def test_known_and_unknown_accounts_get_the_same_page(self, client: TestClient) -> None:
        """Asking to reset an unknown identifier answers exactly like a known one."""
        post(
            client,
            "/register",
            {"email": "known@example.kz", "password": GOOD, "confirmation": GOOD},
        )
        pages = []
        for who in ("known@example.kz", "nobody@example.kz"):
            answer = post(client, "/password/forgot", {"identifier": who})
            assert answer.status_code == 200  # type: ignore[attr-defined]
            pages.append(re.sub(r'value="[^"]+"', "", answer.text))  # type: ignore[attr-defined]
        assert pages[0] == pages[1]

    def test_a_garbage_link_or_grant_is_refused_and_its_cookie_cleared(
        self, client: TestClient
    ) -> None:
        """A forged reset cookie, or a forged grant: 400 invalid_link, the cookie dropped."""
        client.cookies.set("kaspi_identity_reset", "garbage", path="/auth/password/reset")
        form = {"password": GOOD, "confirmation": GOOD}
        answer = post(client, "/auth/password/reset/new", form)
        assert answer.status_code == 400  # type: ignore[attr-defined]
        assert codes(answer.text) == ["invalid_link"]  # type: ignore[attr-defined]
        assert "kaspi_identity_reset=" in answer.headers["set-cookie"]  # type: ignore[attr-defined]
        client.cookies.clear()
        forged = post(
            client, "/auth/password/reset/new", {**form, "grant": "x" * 5000}, page="/login"
        )
        assert forged.status_code == 400  # type: ignore[attr-defined]

    def test_a_link_opens_the_portals_page_without_its_token(self, client: TestClient) -> None:
        """The letter's link: 303 to the page, the token in an HttpOnly cookie on its path."""
        post(
            client,
            "/register",
            {"email": "link@example.kz", "password": GOOD, "confirmation": GOOD},
        )
        letter = client.app.state.portal_mail.letters[-1]  # type: ignore[attr-defined]
        link = re.search(r"http://\S+", letter.body)
        assert link
        moved = client.get(link.group(0), follow_redirects=False)
        assert moved.status_code == 303
        assert moved.headers["location"] == "/auth/confirm/email"
        assert "HttpOnly" in moved.headers["set-cookie"]
        page = client.get("/auth/confirm/email")
        assert page.status_code == 200
        assert text("confirm_title", "en") in page.text
        done = post(client, "/auth/confirm/email", {})
        assert done.headers["location"] == "/login"  # type: ignore[attr-defined]
        assert client.get("/auth/confirm/email").status_code == 400  # the cookie is gone


def link_in(letter: object) -> str:
    found = re.search(r"http://\S+", letter.body)  # type: ignore[attr-defined]
    assert found, letter
    return found.group(0)


def letters_to(client: TestClient, to: str) -> list[object]:
    return [m for m in client.app.state.portal_mail.letters if m.to == to]  # type: ignore[attr-defined]


def logged_in(client: TestClient, email: str = "me@example.kz", **more: str) -> TestClient:
    """Register, confirm from the letter and log in: the client is in the cabinet."""
    form = {"email": email, "password": GOOD, "confirmation": GOOD, **more}
    assert post(client, "/register", form).status_code == 200  # type: ignore[attr-defined]
    client.get(link_in(letters_to(client, email)[-1]))
    assert post(client, "/auth/confirm/email", {}).status_code == 303  # type: ignore[attr-defined]
    answer = post(client, "/login", {"identifier": email, "password": GOOD})
    assert answer.headers["location"] == "/cabinet"  # type: ignore[attr-defined]
    return client


class TestCabinet:
    def test_the_cabinet_shows_the_address_the_phone_and_the_forms(
        self, client: TestClient
    ) -> None:
        """The e-mail and phone sections, the unproven phone said so, every form with CSRF."""
        logged_in(client, phone="+77011234567")
        html = client.get("/cabinet").text
        assert '<code id="current-email">me@example.kz</code>' in html
        assert 'data-verified="no"' in html
        for form in ("email-form", "phone-form", "remove-form"):
            start = html.index(f'id="{form}"')
            assert 'name="csrf"' in html[start : html.index("</form>", start)]
        assert 'value="+77011234567"' in html  # the phone form offers the current number

    @pytest.mark.parametrize(
        ("form", "where", "expected"),
        [
            ({"email": "", "email_password": GOOD}, "email-error", ["missing"]),
            ({"email": "not-an-address", "email_password": GOOD}, "email-error", None),
            ({"email": "a\x00@example.kz", "email_password": GOOD}, "email-error", None),
            ({"email": "new@example.kz", "email_password": "wrong"}, "email_password-error",
             ["wrong_password"]),
            ({"email": "me@example.kz", "email_password": GOOD}, "email-error", ["unchanged"]),
        ],
    )  # fmt: skip
    def test_a_refused_change_of_address_says_why_under_its_field(
        self, client: TestClient, form: dict[str, str], where: str, expected: list[str] | None
    ) -> None:
        """Bad input or a wrong password: 422, the cabinet again, the reason by its field."""
        logged_in(client)
        sent = len(letters_to(client, "new@example.kz"))
        answer = post(client, "/cabinet/email", form, page="/cabinet")
        assert answer.status_code == 422  # type: ignore[attr-defined]
        found = codes(answer.text, where)  # type: ignore[attr-defined]
        assert found == expected if expected is not None else found
        assert text("email_section", "en") in answer.text  # type: ignore[attr-defined]
        assert GOOD not in answer.text  # type: ignore[attr-defined]
        assert len(letters_to(client, "new@example.kz")) == sent

    @pytest.mark.parametrize(
        ("path", "form", "where", "expected"),
        [
            ("/cabinet/phone", {"phone": "12", "phone_password": GOOD}, "phone-error", None),
            ("/cabinet/phone", {"phone": "+7 727 250 00 00", "phone_password": GOOD},
             "phone-error", ["not_mobile"]),
            ("/cabinet/phone", {"phone": "+77011234567", "phone_password": "wrong"},
             "phone_password-error", ["wrong_password"]),
            ("/cabinet/phone/verify", {"code": "123456"}, "code-error", ["expired"]),
            ("/cabinet/phone/remove", {"remove_password": "wrong"}, "remove_password-error",
             ["wrong_password"]),
        ],
    )  # fmt: skip
    def test_a_refused_phone_form_says_why_under_its_field(
        self,
        client: TestClient,
        path: str,
        form: dict[str, str],
        where: str,
        expected: list[str] | None,
    ) -> None:
        """A malformed number, a wrong password, a code with nothing waiting: by its field."""
        logged_in(client, phone="+77011234567")
        answer = post(client, path, form, page="/cabinet")
        assert answer.status_code == 422  # type: ignore[attr-defined]
        found = codes(answer.text, where)  # type: ignore[attr-defined]
        assert found == expected if expected is not None else found
        assert client.app.state.portal_sms.texts == []  # type: ignore[attr-defined]

    def test_the_forms_need_a_live_session(self, client: TestClient) -> None:
        """Without a log-in every cabinet form goes to the log-in page, nothing done."""
        for path in ("/cabinet/email", "/cabinet/phone", "/cabinet/phone/verify"):
            answer = post(client, path, {"email": "x@example.kz"}, page="/login")
            assert answer.headers["location"] == "/login"  # type: ignore[attr-defined]

    def test_the_change_of_address_by_its_links(self, client: TestClient) -> None:
        """Request, the new address's link, confirm; the old one's undo gives it back."""
        logged_in(client)
        asked = post(
            client, "/cabinet/email", {"email": "new@example.kz", "email_password": GOOD},
            page="/cabinet",
        )  # fmt: skip
        assert asked.headers["location"] == "/cabinet"  # type: ignore[attr-defined]
        assert "new@example.kz" in client.get("/cabinet").text  # waits as pending
        moved = client.get(
            link_in(letters_to(client, "new@example.kz")[-1]), follow_redirects=False
        )
        assert moved.headers["location"] == "/auth/email/confirm/new"
        assert text("email_change_title", "en") in client.get("/auth/email/confirm/new").text
        done = post(client, "/auth/email/confirm/new", {})
        assert done.headers["location"] == "/cabinet"  # type: ignore[attr-defined]
        cabinet = client.get("/cabinet").text
        assert '<code id="current-email">new@example.kz</code>' in cabinet
        assert text("email_changed", "en") in cabinet

        notice = letters_to(client, "me@example.kz")[-1]
        moved = client.get(link_in(notice), follow_redirects=False)
        assert moved.headers["location"] == "/auth/email/undo/back"
        assert text("undo_lead", "en") in client.get("/auth/email/undo/back").text
        undone = post(client, "/auth/email/undo/back", {})
        assert undone.headers["location"] == "/login"  # type: ignore[attr-defined]
        assert text("email_restored", "en") in client.get("/login").text
        assert client.get("/cabinet", follow_redirects=False).headers["location"] == "/login"
        reset = letters_to(client, "me@example.kz")[-1]
        assert "/auth/password/reset?token=" in link_in(reset)

    @pytest.mark.parametrize(
        ("page", "cookie", "path"),
        [
            ("/auth/email/confirm/new", "kaspi_identity_email_change", "/auth/email/confirm"),
            ("/auth/email/undo/back", "kaspi_identity_email_undo", "/auth/email/undo"),
        ],
    )
    def test_a_garbage_link_is_refused_and_its_cookie_cleared(
        self, client: TestClient, page: str, cookie: str, path: str
    ) -> None:
        """No cookie: the page says "invalid link"; a forged one: 400 and the cookie dropped."""
        assert client.get(page).status_code == 400
        client.cookies.set(cookie, "garbage", path=path)
        answer = post(client, page, {}, page="/login")
        assert answer.status_code == 400  # type: ignore[attr-defined]
        assert codes(answer.text) == ["invalid_link"]  # type: ignore[attr-defined]
        assert f"{cookie}=" in answer.headers["set-cookie"]  # type: ignore[attr-defined]


class TestLanguages:
    def test_the_switcher_sets_the_language_and_stays_on_the_site(self, client: TestClient) -> None:
        """/lang/kk?next=... sets the cookie and goes back; a foreign next goes home."""
        moved = client.get("/lang/kk?next=/login", follow_redirects=False)
        assert moved.headers["location"] == "/login"
        assert 'lang="kk"' in client.get("/login").text
        for target in ("//evil.example", "https://evil.example", "/\\evil.example", ""):
            assert _local(target) == "/"
        client.get("/lang/xx?next=/login")
        assert 'lang="kk"' in client.get("/login").text  # an unknown code changes nothing

    def test_without_a_choice_the_browsers_language(self, client: TestClient) -> None:
        """Accept-Language decides until the switcher is used."""
        page = client.get("/login", headers={"Accept-Language": "ru-KZ,ru;q=0.9,en;q=0.5"})
        assert 'lang="ru"' in page.text
        assert text("forgot_link", "ru") in page.text


class TestModes:
    def test_the_mailbox_exists_only_in_development(self, tmp_path: Path) -> None:
        """Outside development mode there is no /dev/mailbox, and the senders are the host's."""
        outbox = Outbox()
        app = create_app(
            config(tmp_path, dev=False, secret_key=b"k" * 32, session_key="s" * 32),
            email_sender=outbox,
            sms_sender=outbox,
        )
        with TestClient(app, base_url=BASE) as browser:
            assert browser.get("/dev/mailbox").status_code == 404
            assert "/dev/mailbox" not in browser.get("/login").text

    def test_production_needs_senders_and_keys(self, tmp_path: Path) -> None:
        """No silent defaults outside development mode."""
        with pytest.raises(ValueError, match="email_sender"):
            create_app(config(tmp_path, dev=False, secret_key=b"k" * 32, session_key="s" * 32))
        with pytest.raises(ValueError, match="secret_key"):
            create_app(config(tmp_path, dev=False), email_sender=Outbox(), sms_sender=Outbox())

    def test_the_policy_comes_from_a_setting(self, tmp_path: Path) -> None:
        """PORTAL_PRESET (or PORTAL_POLICY, a TOML file) chooses the rules the pages show."""
        chosen = PortalConfig.from_env({"PORTAL_PRESET": "utility-cabinet", "PORTAL_DEV": "1"})
        assert chosen.policy == PasswordPolicy.preset("utility-cabinet")
        assert chosen.dev
        toml = tmp_path / "rules.toml"
        toml.write_text("[password]\nmin_length = 12\n", encoding="utf-8")
        assert PortalConfig.from_env({"PORTAL_POLICY": str(toml)}).policy.min_length == 12
        app = create_app(config(tmp_path, policy=chosen.policy, policy_name="utility-cabinet"))
        with TestClient(app, base_url=BASE) as browser:
            page = browser.get("/register")
            for line in chosen.policy.describe("en"):
                assert line in page.text

    def test_the_mailbox_shows_text_never_markup(self) -> None:
        """A letter's body is escaped; only its links become anchors."""
        shown = str(_linkify("<script>x</script> http://127.0.0.1:8000/a?token=1&b=2"))
        assert "<script>" not in shown
        assert "&lt;script&gt;" in shown
        assert '<a href="http://127.0.0.1:8000/a?token=1&amp;b=2">' in shown


class TestCommand:
    def test_kaspi_identity_portal_refuses_a_bad_db_before_serving(self, tmp_path: Path) -> None:
        """A --db in a missing folder is a usage error (exit 2); no server starts."""
        err = io.StringIO()
        status = cli_main(
            ["portal", "--db", str(tmp_path / "none" / "p.db")], stdout=io.StringIO(), stderr=err
        )
        assert status == 2
        assert "does not exist" in err.getvalue()

    def test_kaspi_identity_portal_serves_the_pages(self, tmp_path: Path) -> None:
        """The one command starts the portal on SQLite with the mailbox; Ctrl-C stops it."""
        port = _free_port()
        db = tmp_path / "portal.sqlite3"
        command = [
            sys.executable,
            "-m",
            "kaspi_identity",
            "portal",
            "--port",
            str(port),
            "--db",
            str(db),
        ]
        server = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/login", timeout=5
                    ) as page:
                        html = page.read().decode()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            assert text("forgot_link", "en") in html
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/dev/mailbox", timeout=5) as box:
                assert box.status == 200
        finally:
            server.send_signal(signal.SIGINT)
            out, _ = server.communicate(timeout=30)
        assert server.returncode == 0
        assert f"http://127.0.0.1:{port}/" in out
        assert db.is_file()

    def test_help_names_the_options(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--preset, --policy, --host, --port and --db."""
        assert cli_main(["portal", "--help"]) == 0
        shown = capsys.readouterr().out
        for option in ("--preset", "--policy", "--host", "--port", "--db"):
            assert option in shown
