"""kaspi_identity.contrib.django through Django's test client: every flow, sessions, the JSON."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("django")

import _django_setup

_django_setup.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.core import mail  # noqa: E402
from django.core.exceptions import ValidationError  # noqa: E402
from django.core.management import CommandError, call_command  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone, translation  # noqa: E402

from kaspi_identity.contrib.django.models import Identity, PasswordHistoryEntry  # noqa: E402
from kaspi_identity.contrib.django.service import get_service, sms_sender  # noqa: E402
from kaspi_identity.contrib.django.validators import KaspiPasswordValidator  # noqa: E402
from kaspi_identity.delivery import Outbox, extract_code  # noqa: E402
from kaspi_identity.testing import mark_phone_verified  # noqa: E402

User: Any = get_user_model()
PASSWORD = "Qz7!kaspi-Portal"
NEW_PASSWORD = "Wm4#Almaty-Steppe"
SMS_PASSWORD = "Hx9$Tulpar-Sky"
EMAIL = "aliya@example.kz"
PHONE = "+77011234567"


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    """An empty database, an empty mail outbox and SMS outbox for every test."""
    _django_setup.empty()
    mail.outbox = []
    outbox = sms_sender()
    assert isinstance(outbox, Outbox)
    outbox.clear()
    yield
    _django_setup.empty()


def _link(path_prefix: str) -> str:
    """The path and query of the last letter's link (the letter's host is SITE_URL's)."""
    found = re.search(r"https://portal\.example\.kz(/\S+)", str(mail.outbox[-1].body))
    assert found is not None, "the letter has no link"
    assert found.group(1).startswith(path_prefix)
    return found.group(1)


def _register(client: Client, **extra: str) -> Any:
    return client.post(
        "/accounts/register/",
        {"email": EMAIL, "password": PASSWORD, "confirmation": PASSWORD, **extra},
    )


def _confirm(client: Client) -> None:
    link = _link("/accounts/confirm/")
    moved = client.get(link)
    assert moved.status_code == 302
    assert moved["Location"] == "/accounts/confirm/"  # the token left the URL
    assert client.get("/accounts/confirm/").status_code == 200
    done = client.post("/accounts/confirm/")
    assert done.status_code == 200


def _log_in(identifier: str = EMAIL, password: str = PASSWORD) -> Client:
    client = Client()
    answer = client.post("/accounts/login/", {"identifier": identifier, "password": password})
    assert answer.status_code == 302, answer.content.decode()
    return client


def _logged_in(client: Client) -> bool:
    return client.get("/accounts/password/change/").status_code == 200


class TestEndToEnd:
    """Register -> confirm -> log in -> forgot -> reset -> the other session rejected."""

    def test_email_flow(self) -> None:
        """Every step through the test client, the letters read from Django's outbox."""
        visitor = Client()
        assert visitor.get("/accounts/register/").status_code == 200
        assert _register(visitor).status_code == 200
        assert mail.outbox[-1].to == [EMAIL]
        _confirm(visitor)
        assert Identity.objects.get(email_key=EMAIL).email_confirmed is True
        first, second = _log_in(), _log_in()
        assert _logged_in(first)
        assert _logged_in(second)

        stranger = Client()
        sent = stranger.post("/accounts/password/forgot/", {"identifier": EMAIL})
        assert sent.status_code == 200
        link = _link("/accounts/password/reset/")
        moved = stranger.get(link)
        assert (moved.status_code, moved["Location"]) == (302, "/accounts/password/reset/")
        assert moved["Referrer-Policy"] == "no-referrer"
        assert stranger.get("/accounts/password/reset/").status_code == 200
        done = stranger.post(
            "/accounts/password/reset/", {"password": NEW_PASSWORD, "confirmation": NEW_PASSWORD}
        )
        assert done.status_code == 200

        assert not _logged_in(first)
        assert not _logged_in(second)
        again = Client().post("/accounts/login/", {"identifier": EMAIL, "password": PASSWORD})
        assert again.status_code == 200  # the old password is refused
        assert _logged_in(_log_in(password=NEW_PASSWORD))
        used = Client()
        assert used.get(link).status_code == 302
        reuse = used.post(
            "/accounts/password/reset/", {"password": SMS_PASSWORD, "confirmation": SMS_PASSWORD}
        )
        assert reuse.status_code == 400  # the link worked once

    def test_sms_flow(self) -> None:
        """Reset by an SMS code to the phone given at registration; sessions end."""
        visitor = Client()
        assert _register(visitor, phone="8 701 123 45 67").status_code == 200
        _confirm(visitor)
        # Only a verified phone receives reset codes: the set-up proves it.
        mark_phone_verified(get_service().storage.accounts, str(User.objects.get(email=EMAIL).pk))
        session = _log_in(PHONE)
        assert _logged_in(session)
        stranger = Client()
        asked = stranger.post("/accounts/password/sms/", {"phone": "+7 701 123 4567"})
        assert (asked.status_code, asked["Location"]) == (302, "/accounts/password/sms/code/")
        outbox = sms_sender()
        assert isinstance(outbox, Outbox)
        code = extract_code(outbox.last_sms(PHONE))
        wrong = stranger.post(
            "/accounts/password/sms/code/", {"code": "000000" if code != "000000" else "111111"}
        )
        assert wrong.status_code == 200
        assert b"code" in wrong.content
        verified = stranger.post("/accounts/password/sms/code/", {"code": code})
        assert (verified.status_code, verified["Location"]) == (302, "/accounts/password/reset/")
        done = stranger.post(
            "/accounts/password/reset/", {"password": SMS_PASSWORD, "confirmation": SMS_PASSWORD}
        )
        assert done.status_code == 200
        assert not _logged_in(session)
        assert _logged_in(_log_in(EMAIL, SMS_PASSWORD))

    def test_change_keeps_this_session_and_ends_the_others(self) -> None:
        """A change of password: this session lives on, the other one ends."""
        _register(Client())
        this, other = _log_in(), _log_in()
        changed = this.post(
            "/accounts/password/change/",
            {"current": PASSWORD, "password": NEW_PASSWORD, "confirmation": NEW_PASSWORD},
        )
        assert changed.status_code == 200
        assert _logged_in(this)
        assert not _logged_in(other)

    def test_reset_to_a_recent_password_is_refused(self) -> None:
        """The preset keeps 6 passwords: the reset cannot bring the current one back."""
        _register(Client())
        Client().post("/accounts/password/forgot/", {"identifier": EMAIL})
        client = Client()
        client.get(_link("/accounts/password/reset/"))
        refused = client.post(
            "/accounts/password/reset/", {"password": PASSWORD, "confirmation": PASSWORD}
        )
        assert refused.status_code == 200
        assert refused.context["form"].errors["password"]
        assert client.get("/accounts/password/reset/").status_code == 200  # link kept


def _links_to(to: str) -> list[str]:
    """The paths of the links in the letters to ``to``, oldest first."""
    found = []
    for message in mail.outbox:
        if to in message.to:
            match = re.search(r"https://portal\.example\.kz(/\S+)", str(message.body))
            if match:
                found.append(match.group(1))
    return found


NEW_EMAIL = "aliya.new@example.kz"


class TestLifecycle:
    """The account's own changes: e-mail by its link (and the undo), phone by its code."""

    def test_email_change_by_the_link_and_its_undo(self) -> None:
        """This session lives on after the change, the other ends; the undo ends all."""
        _register(Client())
        _confirm(Client())
        this, other = _log_in(), _log_in()
        assert this.get("/accounts/email/change/").status_code == 200
        wrong = this.post("/accounts/email/change/", {"email": NEW_EMAIL, "password": "wrong"})
        assert wrong.status_code == 200
        assert "password" in wrong.context["form"].errors
        assert Identity.objects.get(email_key=EMAIL).pending_email is None
        asked = this.post("/accounts/email/change/", {"email": NEW_EMAIL, "password": PASSWORD})
        assert asked.status_code == 200
        (link,) = _links_to(NEW_EMAIL)
        assert link.startswith("/accounts/email/confirm/?token=")
        moved = this.get(link)
        assert (moved.status_code, moved["Location"]) == (302, "/accounts/email/confirm/")
        assert this.get("/accounts/email/confirm/").status_code == 200
        assert this.post("/accounts/email/confirm/").status_code == 200
        assert User.objects.get(email=NEW_EMAIL)
        assert _logged_in(this)
        assert not _logged_in(other)

        undo = _links_to(EMAIL)[-1]  # the notice to the old address
        assert undo.startswith("/accounts/email/undo/?token=")
        owner = Client()
        owner.get(undo)
        assert owner.post("/accounts/email/undo/").status_code == 200
        assert User.objects.get(email=EMAIL)
        assert not _logged_in(this)
        assert _links_to(EMAIL)[-1].startswith("/accounts/password/reset/?token=")
        again = Client()
        again.get(undo)
        assert again.post("/accounts/email/undo/").status_code == 400  # the link worked once

    def test_the_confirmation_page_takes_a_new_address_link_too(self) -> None:
        """The letter's page for a new address may be the registration's (its default)."""
        _register(Client())
        _confirm(Client())
        this = _log_in()
        this.post("/accounts/email/change/", {"email": NEW_EMAIL, "password": PASSWORD})
        token = _links_to(NEW_EMAIL)[-1].split("token=")[1]
        this.get(f"/accounts/confirm/?token={token}")
        assert this.post("/accounts/confirm/").status_code == 200
        assert User.objects.get(email=NEW_EMAIL)
        assert _logged_in(this)

    def test_the_phone_proven_then_the_sms_reset_reaches_it(self) -> None:
        """A phone given at sign-up gets no reset code until proven by its code."""
        assert _register(Client(), phone=PHONE).status_code == 200
        _confirm(Client())
        this, other = _log_in(), _log_in()
        outbox = sms_sender()
        assert isinstance(outbox, Outbox)
        asked = this.post("/accounts/phone/", {"phone": "8 701 123 45 67", "password": PASSWORD})
        assert (asked.status_code, asked["Location"]) == (302, "/accounts/phone/verify/")
        code = extract_code(outbox.last_sms(PHONE))
        wrong = this.post(
            "/accounts/phone/verify/", {"code": "000000" if code != "000000" else "1"}
        )
        assert wrong.status_code == 200
        assert not Identity.objects.get(email_key=EMAIL).phone_verified
        assert this.post("/accounts/phone/verify/", {"code": code}).status_code == 200
        assert Identity.objects.get(email_key=EMAIL).phone_verified
        assert _logged_in(this)
        assert not _logged_in(other)
        removed = this.post("/accounts/phone/remove/", {"password": PASSWORD})
        assert removed.status_code == 200
        assert Identity.objects.get(email_key=EMAIL).phone is None
        assert _logged_in(this)
        none = this.post("/accounts/phone/remove/", {"password": PASSWORD})
        assert none.status_code == 200
        assert text_of(none) != text_of(removed)  # "the account has no phone number"

    @pytest.mark.parametrize(
        ("path", "form", "field"),
        [
            ("/accounts/email/change/", {"email": "not-an-address", "password": PASSWORD}, "email"),
            ("/accounts/email/change/", {"email": NEW_EMAIL, "password": "wrong"}, "password"),
            ("/accounts/phone/", {"phone": "12", "password": PASSWORD}, "phone"),
            ("/accounts/phone/", {"phone": "+7 727 250 00 00", "password": PASSWORD}, "phone"),
            ("/accounts/phone/", {"phone": PHONE, "password": "wrong"}, "password"),
            ("/accounts/phone/verify/", {"code": "123456"}, "code"),
            ("/accounts/phone/remove/", {"password": "wrong"}, "password"),
        ],
    )
    def test_refusals_are_form_errors_and_write_nothing(
        self, path: str, form: dict[str, str], field: str
    ) -> None:
        """Bad input or a wrong password: the form again with the error by its field."""
        _register(Client(), phone=PHONE)
        _confirm(Client())
        answer = _log_in().post(path, form)
        assert answer.status_code == 200
        errors = answer.context["form"].errors
        assert field in errors, errors
        identity = Identity.objects.get(email_key=EMAIL)
        assert (identity.pending_email, identity.pending_phone, identity.phone) == (
            None,
            None,
            PHONE,
        )

    @pytest.mark.parametrize(
        "path",
        ["/accounts/email/change/", "/accounts/phone/", "/accounts/phone/verify/",
         "/accounts/phone/remove/"],
    )  # fmt: skip
    def test_the_pages_need_a_log_in(self, path: str) -> None:
        """Without a session: to the log-in page."""
        answer = Client().get(path)
        assert answer.status_code == 302
        assert answer["Location"].startswith("/accounts/login/")

    @pytest.mark.parametrize("path", ["/accounts/email/confirm/", "/accounts/email/undo/"])
    @pytest.mark.parametrize("token", ["garbage", "x" * 5000, "a\x00b"])
    def test_bad_link_tokens_are_400(self, path: str, token: str) -> None:
        """A garbage token on the link's page: 400, nothing changes."""
        client = Client()
        client.get(f"{path}?token={token}")
        assert client.post(path).status_code == 400
        assert Client().get(path).status_code == 400  # no token at all


def text_of(answer: Any) -> str:
    return str(answer.content.decode())


class TestAnswers:
    """What the pages answer to limits, bad links and bad input."""

    def test_login_throttle_is_429_with_retry_after(self) -> None:
        """Past the per-identifier limit: 429 and a Retry-After in seconds."""
        client = Client()
        statuses = [
            client.post("/accounts/login/", {"identifier": "x@example.kz", "password": "no"})
            for _ in range(11)
        ]
        assert [s.status_code for s in statuses[:10]] == [200] * 10
        assert statuses[10].status_code == 429
        assert int(statuses[10]["Retry-After"]) >= 1

    def test_unknown_and_known_accounts_get_one_answer(self) -> None:
        """A reset for an unknown identifier answers as for a known one; no letter goes out."""
        _register(Client())
        mail.outbox = []
        known = Client().post("/accounts/password/forgot/", {"identifier": EMAIL})
        letters = len(mail.outbox)
        unknown = Client().post("/accounts/password/forgot/", {"identifier": "no@example.kz"})
        assert known.status_code == unknown.status_code == 200
        assert known.content == unknown.content
        assert (letters, len(mail.outbox)) == (1, 1)

    @pytest.mark.parametrize(
        "token", ["", "garbage", "a" * 5000, "\x00", "..", "eyJ0eXAiOiJKV1QifQ.x.y"]
    )
    def test_bad_tokens_are_400(self, token: str) -> None:
        """A garbage reset or confirmation token: 400, nothing written."""
        for path in ("/accounts/password/reset/", "/accounts/confirm/"):
            client = Client()
            assert client.get(path, {"token": token}).status_code == 302
            if path.endswith("reset/"):
                answer = client.post(path, {"password": NEW_PASSWORD, "confirmation": NEW_PASSWORD})
            else:
                answer = client.post(path)
            assert answer.status_code == 400

    def test_pages_without_a_token_are_400(self) -> None:
        """The reset and confirmation pages opened bare: 400."""
        assert Client().get("/accounts/password/reset/").status_code == 400
        assert Client().get("/accounts/confirm/").status_code == 400

    @pytest.mark.parametrize(
        "fields",
        [
            {"email": "not-an-email"},
            {"email": "a\x00@example.kz"},
            {"email": "x" * 300 + "@example.kz"},
            {"phone": "12"},
            {"phone": "+7 727 123 45 67"},
            {"username": "77011234567"},
        ],
    )
    def test_bad_registrations_write_nothing(self, fields: dict[str, str]) -> None:
        """A malformed e-mail, phone or user name: the form again, no user, no letter."""
        answer = _register(Client(), **fields)
        assert answer.status_code == 200
        assert answer.context["form"].errors
        assert User.objects.count() == 0
        assert mail.outbox == []

    def test_weak_password_shows_the_violations_in_russian(self) -> None:
        """The policy's messages in the negotiated language, on the password field."""
        client = Client(headers={"accept-language": "ru"})
        answer = client.post(
            "/accounts/register/", {"email": EMAIL, "password": "abc", "confirmation": "abc"}
        )
        errors = answer.context["form"].errors["password"]
        assert any("Пароль" in e for e in errors)

    def test_bad_phone_for_sms_is_a_form_error(self) -> None:
        """A landline or garbage number for the SMS reset: the form again, no SMS."""
        for phone in ("+7 727 123 45 67", "abc", "\x00" * 10):
            answer = Client().post("/accounts/password/sms/", {"phone": phone})
            assert answer.status_code == 200
            assert answer.context["form"].errors["phone"]
        outbox = sms_sender()
        assert isinstance(outbox, Outbox)
        assert outbox.sms == []

    def test_sms_code_page_needs_a_request_first(self) -> None:
        """The code page without a requested code sends the user to ask for one."""
        answer = Client().post("/accounts/password/sms/code/", {"code": "123456"})
        assert (answer.status_code, answer["Location"]) == (302, "/accounts/password/sms/")


class TestPolicyEndpoint:
    """``policy.json`` is ``PasswordPolicy.document(lang)``, valid against the schema."""

    def test_document_matches_the_schema(self) -> None:
        """The JSON validates against docs/policy.schema.json and is the service's policy."""
        jsonschema = pytest.importorskip("jsonschema")
        schema = json.loads(
            (Path(__file__).parent.parent / "docs" / "policy.schema.json").read_text("utf-8")
        )
        answer = Client().get("/accounts/policy.json")
        assert answer.status_code == 200
        document = answer.json()
        jsonschema.validate(document, schema)
        assert document == get_service().policy.document("en")

    @pytest.mark.parametrize("lang", ["kk", "ru", "en"])
    def test_language_from_the_query_or_accept_language(self, lang: str) -> None:
        """``?lang=`` or ``Accept-Language`` pick the language of the requirement lines."""
        expected = get_service().policy.document(lang)
        by_query = Client().get("/accounts/policy.json", {"lang": lang})
        by_header = Client(headers={"accept-language": lang}).get("/accounts/policy.json")
        assert by_query.json() == by_header.json() == expected
        assert by_header["Content-Language"] == lang
        assert "Accept-Language" in by_header["Vary"]

    @pytest.mark.parametrize("lang", ["de", "", "x" * 1000, "kk-Latn", "\x00"])
    def test_unknown_language_is_400(self, lang: str) -> None:
        """An unknown ``?lang=`` is a 400 naming the languages there are."""
        answer = Client().get("/accounts/policy.json", {"lang": lang})
        assert answer.status_code == 400
        assert answer.json()["languages"] == ["kk", "ru", "en"]


class TestValidator:
    """``KaspiPasswordValidator`` in ``AUTH_PASSWORD_VALIDATORS``."""

    def test_codes_params_and_language(self) -> None:
        """Each violation is a ValidationError with the stable code and params."""
        validator = KaspiPasswordValidator(preset="kz-procurement")
        with translation.override("kk"), pytest.raises(ValidationError) as caught:
            validator.validate("abc")
        codes = [error.code for error in caught.value.error_list]
        assert "too_short" in codes
        short = next(e for e in caught.value.error_list if e.code == "too_short")
        assert short.params is not None
        assert short.params["min_length"] == 8
        assert caught.value.messages[0] == validator.policy.check("abc").violations[0].message("kk")

    def test_user_fields_are_personal_data(self) -> None:
        """The user's user name and names may not be in the password."""
        user = User(username="nurlanova", first_name="Aigerim", email="ai@example.kz")
        validator = KaspiPasswordValidator(policy={"forbid_personal_info": True})
        validator.validate("Nurlanova!2024x")  # without the user: nothing personal
        with pytest.raises(ValidationError) as caught:
            validator.validate("Nurlanova!2024x", user)
        assert "contains_personal_info" in [e.code for e in caught.value.error_list]

    @pytest.mark.parametrize("lang", ["kk", "ru", "en"])
    def test_help_text_is_describe(self, lang: str) -> None:
        """get_help_text() is the policy's describe() in the active language."""
        validator = KaspiPasswordValidator(preset="utility-cabinet")
        with translation.override(lang):
            assert validator.get_help_text() == " ".join(validator.policy.describe(lang))

    def test_an_unknown_language_falls_back_to_english(self) -> None:
        """A Django language the catalog lacks: English."""
        validator = KaspiPasswordValidator(preset="nist")
        with translation.override("de"):
            assert validator.get_help_text() == " ".join(validator.policy.describe("en"))

    def test_percent_signs_survive(self) -> None:
        """A message that lists '%' among the special characters is not %-formatted."""
        validator = KaspiPasswordValidator(policy={"require": ["special"], "min_length": 4})
        with pytest.raises(ValidationError) as caught:
            validator.validate("abcd")
        assert any("%" in message for message in caught.value.messages)

    def test_one_option_at_most(self) -> None:
        """Two options at once are a configuration error."""
        from django.core.exceptions import ImproperlyConfigured

        with pytest.raises(ImproperlyConfigured):
            KaspiPasswordValidator(preset="nist", policy={"min_length": 8})
        with pytest.raises(ImproperlyConfigured):
            KaspiPasswordValidator(policy={"min_lenght": 8})

    def test_set_password_then_save_records_history(self) -> None:
        """Django's own set_password + save: password_changed records the entry, reuse refused."""
        user = User.objects.create_user("bolat", "bolat@example.kz")
        validator = KaspiPasswordValidator(preset="kz-procurement")
        user.set_password(PASSWORD)
        user.save()  # Django calls password_changed of the configured validators...
        validator.password_changed(PASSWORD, user)  # ...this test calls it directly
        assert PasswordHistoryEntry.objects.filter(account_id=str(user.pk)).count() == 1
        with pytest.raises(ValidationError) as caught:
            validator.validate(PASSWORD, user)
        assert "reused" in [e.code for e in caught.value.error_list]


class TestDjangoPaths:
    """Users and passwords made by Django itself, not by the flows."""

    def test_createsuperuser_gets_an_identity(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """``createsuperuser --noinput`` makes a user whose identity the flows can use."""
        monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)
        call_command(
            "createsuperuser", "--noinput", username="Admin", email="admin@example.kz", verbosity=0
        )
        identity = Identity.objects.get(username_key="admin")
        assert identity.email_key == "admin@example.kz"
        assert _logged_in(_log_in("admin", PASSWORD))

    def test_set_password_and_save_end_sessions(self) -> None:
        """A password set with Django's own ``set_password`` + ``save`` ends every session."""
        _register(Client())
        session = _log_in()
        user = User.objects.get(email=EMAIL)
        user.set_password(NEW_PASSWORD)
        user.save()
        assert not _logged_in(session)
        assert _logged_in(_log_in(password=NEW_PASSWORD))

    def test_email_change_in_django_ends_sessions(self) -> None:
        """A new e-mail saved through the model (the admin's way) is unconfirmed; sessions end."""
        _register(Client())
        _confirm(Client())
        session = _log_in()
        user = User.objects.get(email=EMAIL)
        user.email = "new@example.kz"
        user.save()
        identity = Identity.objects.get(pk=user.pk)
        assert (identity.email, identity.email_confirmed) == ("new@example.kz", False)
        assert not _logged_in(session)
        assert _logged_in(_log_in("new@example.kz"))

    def test_email_change_in_django_ends_any_undo_window(self) -> None:
        """An operator's new address clears a pending change and the window to undo one."""
        _register(Client())
        user = User.objects.get(email=EMAIL)
        Identity.objects.filter(pk=user.pk).update(
            pending_email="pending@example.kz",
            previous_email="before@example.kz",
            email_changed_at=timezone.now(),
        )
        user.email = "operator@example.kz"
        user.save()
        identity = Identity.objects.get(pk=user.pk)
        assert (identity.pending_email, identity.previous_email, identity.email_changed_at) == (
            None,
            None,
            None,
        )

    def test_old_django_hash_is_verified_and_upgraded(self) -> None:
        """A PBKDF2 hash from before kaspi-identity logs in, and becomes argon2id."""
        user = User.objects.create_user("legacy", "legacy@example.kz")
        User.objects.filter(pk=user.pk).update(
            password=make_password(PASSWORD, hasher="pbkdf2_sha256")
        )
        assert _logged_in(_log_in("legacy", PASSWORD))
        user.refresh_from_db()
        assert user.password.startswith("argon2$argon2id$")
        assert user.check_password(PASSWORD)  # Django reads the upgraded hash too

    def test_admin_can_check_a_flow_password(self) -> None:
        """A password the flows set is one Django's check_password accepts."""
        _register(Client())
        user = User.objects.get(email=EMAIL)
        assert user.password.startswith("argon2$argon2id$")
        assert user.check_password(PASSWORD)
        assert not user.check_password(NEW_PASSWORD)


def test_links_point_at_site_url() -> None:
    """The letters' links are built from SITE_URL's settings, never from the request."""
    Client(HTTP_HOST="evil.example.com").post(
        "/accounts/register/", {"email": EMAIL, "password": PASSWORD, "confirmation": PASSWORD}
    )
    assert urlsplit(re.findall(r"https?://\S+", str(mail.outbox[-1].body))[0]).hostname == (
        "portal.example.kz"
    )


class TestCommands:
    """The management commands and the system checks."""

    def test_describe(self) -> None:
        """The requirement lines, or the JSON document, in the asked language."""
        out = io.StringIO()
        call_command("kaspi_identity_describe", "--lang", "ru", stdout=out)
        for line in get_service().policy.describe("ru"):
            assert line in out.getvalue()
        out = io.StringIO()
        call_command("kaspi_identity_describe", "--json", "--lang", "kk", stdout=out)
        assert json.loads(out.getvalue()) == get_service().policy.document("kk")

    def test_check_reads_the_password_from_stdin(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Accepted: exit 0; refused: every violation and exit 1; history with --user."""
        monkeypatch.setattr("sys.stdin", io.StringIO(NEW_PASSWORD + "\n"))
        out = io.StringIO()
        call_command("kaspi_identity_check", stdout=out)
        monkeypatch.setattr("sys.stdin", io.StringIO("abc\n"))
        with pytest.raises(SystemExit) as exited:
            call_command("kaspi_identity_check", "--lang", "kk", stdout=out)
        assert exited.value.code == 1
        _register(Client())
        monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        with pytest.raises(SystemExit):
            call_command("kaspi_identity_check", "--user", EMAIL, stdout=out)
        assert "abc" not in out.getvalue()
        assert PASSWORD not in out.getvalue()

    def test_unlock(self) -> None:
        """A locked account logs in again after kaspi_identity_unlock."""
        _register(Client())
        Identity.objects.filter(email_key=EMAIL).update(failed_logins=50)
        refused = Client().post("/accounts/login/", {"identifier": EMAIL, "password": PASSWORD})
        assert refused.status_code == 200
        out = io.StringIO()
        call_command("kaspi_identity_unlock", EMAIL, stdout=out)
        assert "50 failed log-ins cleared" in out.getvalue()
        assert _logged_in(_log_in())
        with pytest.raises(CommandError):
            call_command("kaspi_identity_unlock", "nobody@example.kz")

    def test_backfill(self) -> None:
        """Users without an identity get one; a second run makes none."""
        user = User.objects.create_user("early", "early@example.kz", PASSWORD)
        Identity.objects.filter(pk=user.pk).delete()
        out = io.StringIO()
        call_command("kaspi_identity_backfill", stdout=out)
        call_command("kaspi_identity_backfill", stdout=out)
        assert out.getvalue().split("\n")[:2] == ["1 identities created", "0 identities created"]
        assert Identity.objects.get(pk=user.pk).email_key == "early@example.kz"

    def test_system_checks(self) -> None:
        """The test settings pass; a DEFERRED SQLite and a missing hasher are reported."""
        from django.test import override_settings

        from kaspi_identity.contrib.django.checks import check_setup

        assert check_setup() == []
        with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
            assert [m.id for m in check_setup()] == ["kaspi_identity.W004"]
        with override_settings(KASPI_IDENTITY={"SITE_URL": "ftp://x"}):
            assert [m.id for m in check_setup()] == ["kaspi_identity.E001"]
        assert check_setup() == []


class TestPasswordAge:
    """What the pages do with the password's age (docs/policy.md "Password age")."""

    def test_a_required_change_comes_before_anything_else(self) -> None:
        """After kaspi_identity_require_change the log-in leads to the change page only."""
        _register(Client())
        call_command("kaspi_identity_require_change", EMAIL, stdout=io.StringIO())
        client = Client()
        answer = client.post("/accounts/login/", {"identifier": EMAIL, "password": PASSWORD})
        assert (answer.status_code, answer["Location"]) == (302, "/accounts/password/change/")
        page = client.get("/accounts/password/change/")
        assert page.context["notice"]
        forced = client.get("/accounts/policy.json")
        assert (forced.status_code, forced["Location"]) == (302, "/accounts/password/change/")
        changed = client.post(
            "/accounts/password/change/",
            {"current": PASSWORD, "password": NEW_PASSWORD, "confirmation": NEW_PASSWORD},
        )
        assert changed.status_code == 200
        assert client.get("/accounts/policy.json").status_code == 200
        assert Identity.objects.get(email_key=EMAIL).must_change_password is False

    def test_clear_lifts_the_requirement(self) -> None:
        """``--clear`` takes the flag off again."""
        _register(Client())
        call_command("kaspi_identity_require_change", EMAIL, stdout=io.StringIO())
        call_command("kaspi_identity_require_change", EMAIL, "--clear", stdout=io.StringIO())
        answer = Client().post("/accounts/login/", {"identifier": EMAIL, "password": PASSWORD})
        assert answer["Location"] == "/accounts/profile/"

    def test_an_expired_password_is_changed_before_the_log_in(self) -> None:
        """Past max_age_days with no grace log-in: no session; the change page, then log in."""
        from datetime import timedelta

        from django.test import override_settings
        from django.utils import timezone

        from kaspi_identity.contrib.django.service import _config

        config = {**_config(), "POLICY": {"max_age_days": 90, "grace_logins": 0}}
        with override_settings(KASPI_IDENTITY=config):
            _register(Client())
            old = timezone.now() - timedelta(days=91)
            Identity.objects.filter(email_key=EMAIL).update(password_changed_at=old)
            client = Client()
            answer = client.post("/accounts/login/", {"identifier": EMAIL, "password": PASSWORD})
            assert (answer.status_code, answer["Location"]) == (302, "/accounts/password/change/")
            page = client.get("/accounts/password/change/")
            expired = get_service().authenticate(EMAIL, PASSWORD, client_key="other")
            assert expired.reason == "password_expired"
            assert page.context["notice"] == expired.password_change_message("en")
            assert "_auth_user_id" not in client.session  # nobody is logged in
            changed = client.post(
                "/accounts/password/change/",
                {"current": PASSWORD, "password": NEW_PASSWORD, "confirmation": NEW_PASSWORD},
            )
            assert changed.status_code == 200
            assert client.get("/accounts/password/change/").status_code == 302  # done here
            assert _logged_in(_log_in(password=NEW_PASSWORD))

    def test_an_expiring_password_is_said_once(self) -> None:
        """Inside the warning window: logged in as usual, the days left in a message."""
        from datetime import timedelta

        from django.contrib.messages import get_messages
        from django.test import override_settings
        from django.utils import timezone

        from kaspi_identity.contrib.django.service import _config

        policy = {"max_age_days": 90, "expiry_warning_days": 14}
        with override_settings(KASPI_IDENTITY={**_config(), "POLICY": policy}):
            _register(Client())
            old = timezone.now() - timedelta(days=80)
            Identity.objects.filter(email_key=EMAIL).update(password_changed_at=old)
            client = Client()
            answer = client.post("/accounts/login/", {"identifier": EMAIL, "password": PASSWORD})
            assert (answer.status_code, answer["Location"]) == (302, "/accounts/profile/")
            said = [str(m) for m in get_messages(answer.wsgi_request)]
            assert len(said) == 1
            assert "10 days" in said[0]
            assert _logged_in(client)

    def test_the_change_page_is_closed_to_strangers(self) -> None:
        """Without a log-in (or an expired one), the change page sends to the log-in."""
        answer = Client().get("/accounts/password/change/")
        assert answer.status_code == 302
        assert answer["Location"].startswith("/accounts/login/")


class TestTokenStash:
    """A link's token leaves the URL and is stored nowhere in clear."""

    def test_no_stored_row_holds_the_token(self) -> None:
        """Neither the session row nor the cookie holds the token; the two together do."""
        from django.contrib.sessions.models import Session

        _register(Client())
        Client().post("/accounts/password/forgot/", {"identifier": EMAIL})
        link = _link("/accounts/password/reset/")
        token = link.split("token=", 1)[1]
        client = Client()
        moved = client.get(link)
        pad = moved.cookies["kaspi_identity_pad_kaspi_identity_reset_token"]
        assert (pad["httponly"], pad["path"], pad["samesite"]) == (
            True,
            "/accounts/password/reset/",
            "Lax",
        )
        assert token not in pad.value
        for row in Session.objects.all():
            assert token not in row.session_data
            assert token not in json.dumps(row.get_decoded())
        assert client.get("/accounts/password/reset/").status_code == 200

    @pytest.mark.parametrize("garbage", ["", "!!!", "A" * 10, "x" * 20000])
    def test_a_missing_or_garbage_cookie_half_is_a_bad_link(self, garbage: str) -> None:
        """Without the right cookie half the session half is worth nothing: 400."""
        _register(Client())
        Client().post("/accounts/password/forgot/", {"identifier": EMAIL})
        client = Client()
        client.get(_link("/accounts/password/reset/"))
        client.cookies["kaspi_identity_pad_kaspi_identity_reset_token"] = garbage
        assert client.get("/accounts/password/reset/").status_code == 400
        done = client.post(
            "/accounts/password/reset/", {"password": NEW_PASSWORD, "confirmation": NEW_PASSWORD}
        )
        assert done.status_code == 400

    def test_racing_redemptions_of_one_link(self) -> None:
        """Eight browsers with one link, posting at once: exactly one reset succeeds."""
        import threading

        from django.db import connections

        _register(Client())
        Client().post("/accounts/password/forgot/", {"identifier": EMAIL})
        link = _link("/accounts/password/reset/")
        clients = [Client() for _ in range(8)]
        for client in clients:
            client.get(link)
        barrier = threading.Barrier(len(clients))
        statuses: list[int] = []
        lock = threading.Lock()

        def redeem(client: Client) -> None:
            try:
                barrier.wait(timeout=30)
                answer = client.post(
                    "/accounts/password/reset/",
                    {"password": NEW_PASSWORD, "confirmation": NEW_PASSWORD},
                )
                with lock:
                    statuses.append(answer.status_code)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=redeem, args=(c,)) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert sorted(statuses) == [200] + [400] * 7
        assert PasswordHistoryEntry.objects.count() == 2  # the first password and this one


class TestPasswordForms:
    """``to_django_password`` and ``from_django_password`` as properties."""

    @given(
        st.text(min_size=1, max_size=200).filter(lambda h: not h.startswith(("!", "argon2$argon2")))
    )
    def test_round_trip(self, stored: str) -> None:
        """Whatever the services store comes back as it was."""
        from kaspi_identity.contrib.django.storage import from_django_password, to_django_password

        assert from_django_password(to_django_password(stored)) == stored

    @given(st.text(alphabet="abcdef0123456789$=,", min_size=1, max_size=80))
    def test_ours_are_djangos_argon2(self, tail: str) -> None:
        """An argon2 PHC string is stored in Django's ``argon2$`` form, nothing else is."""
        from kaspi_identity.contrib.django.storage import to_django_password

        assert to_django_password("$argon2id$" + tail) == "argon2$argon2id$" + tail


class FailingBackend:
    """A Django mail backend whose server is down."""

    def __init__(self, **_: object) -> None:
        pass

    def send_messages(self, messages: object) -> int:
        raise ConnectionRefusedError("smtp.example.kz:587 refused; letter to aliya@example.kz")


class TestFaults:
    """A failing mail backend and odd bytes change no answer and leak nothing."""

    def test_a_failing_mail_backend_changes_no_answer(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Registration and a reset request answer as always; the log names no address."""
        from django.test import override_settings

        with override_settings(EMAIL_BACKEND=f"{__name__}.FailingBackend"):
            assert _register(Client()).status_code == 200
            sent = Client().post("/accounts/password/forgot/", {"identifier": EMAIL})
            assert sent.status_code == 200
        assert User.objects.filter(email=EMAIL).exists()
        assert EMAIL not in caplog.text
        assert "refused" not in caplog.text

    def test_the_sender_raises_delivery_error(self) -> None:
        """DjangoEmailSender turns the backend's exception into DeliveryError, message-free."""
        from django.test import override_settings

        from kaspi_identity.contrib.django.service import DjangoEmailSender
        from kaspi_identity.delivery import DeliveryError, EmailMessage

        letter = EmailMessage(
            to=EMAIL,
            subject="s",
            text="https://x/reset?token=secret",
            kind="password_reset",
            language="en",
        )
        failing = override_settings(EMAIL_BACKEND=f"{__name__}.FailingBackend")
        with failing, pytest.raises(DeliveryError) as caught:
            DjangoEmailSender().send_email(letter)
        assert "secret" not in str(caught.value)
        assert caught.value.__cause__ is None
        assert caught.value.__suppress_context__

    @pytest.mark.parametrize(
        "body",
        [
            b"identifier=%FF%FE&password=x",
            b"identifier=a%00b&password=%00",
            b"identifier=" + b"x" * 100_000 + b"&password=y",
            b"password=only",
            b"\xff\xfe\xfd",
        ],
    )
    def test_odd_bytes_at_the_login(self, body: bytes) -> None:
        """Invalid UTF-8, NUL, huge or missing fields: a page, never a server error."""
        answer = Client().post(
            "/accounts/login/", data=body, content_type="application/x-www-form-urlencoded"
        )
        assert answer.status_code in (200, 429)
        assert get_user_model().objects.count() == 0


def test_the_backend_carries_a_required_change_into_the_session() -> None:
    """Django's own ``login()`` through KaspiIdentityBackend: the change page comes first."""
    _register(Client())
    get_service().require_password_change(str(User.objects.get(email=EMAIL).pk))
    from django.test import override_settings

    client = Client()
    backend = "kaspi_identity.contrib.django.backends.KaspiIdentityBackend"
    with override_settings(AUTHENTICATION_BACKENDS=[backend]):
        assert client.login(username=EMAIL, password=PASSWORD)
        answer = client.get("/accounts/policy.json")
    assert (answer.status_code, answer["Location"]) == (302, "/accounts/password/change/")


def test_registering_a_taken_email_answers_as_a_new_one() -> None:
    """The same page for a new and a taken e-mail; the owner gets an "already" letter."""
    first = _register(Client())
    letters = len(mail.outbox)
    second = _register(Client())
    assert first.content == second.content
    assert len(mail.outbox) == letters + 1
    assert mail.outbox[-1].to == [EMAIL]
    assert User.objects.count() == 1


@pytest.mark.parametrize(
    "module_name",
    [
        "kaspi_identity.contrib.django.backends",
        "kaspi_identity.contrib.django.checks",
        "kaspi_identity.contrib.django.hashers",
        "kaspi_identity.contrib.django.middleware",
        "kaspi_identity.contrib.django.models",
        "kaspi_identity.contrib.django.service",
        "kaspi_identity.contrib.django.storage",
        "kaspi_identity.contrib.django.validators",
        "kaspi_identity.contrib.django.views",
    ],
)
def test_every_public_name_is_in_the_docs(module_name: str) -> None:
    """As tests/test_docs.py asks of the library's modules (they need Django set up first)."""
    import importlib

    docs = "\n".join(
        page.read_text("utf-8") for page in (Path(__file__).parent.parent / "docs").glob("*.md")
    )
    module = importlib.import_module(module_name)
    missing = [name for name in module.__all__ if not re.search(rf"\b{re.escape(name)}\b", docs)]
    assert missing == []
