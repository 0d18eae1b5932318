"""The portal end to end through Django's test client: ``python manage.py test portal``.

Register -> confirm from the captured letter -> log in -> forgot -> reset -> the other
session rejected; and the reset by SMS likewise, once the phone given at sign-up is proven
by its code (only a proven phone receives reset codes). Letters land in ``django.core.mail.outbox``
(Django's test runner switches to the locmem backend); SMS in the library's ``Outbox``.
"""

import re
from datetime import timedelta

from django.conf import settings
from django.core import mail
from django.test import Client, TestCase, override_settings

from kaspi_identity.contrib.django.service import sms_sender
from kaspi_identity.delivery import extract_code

PASSWORD, NEW, SMS = "Qz7!kaspi-Portal", "Wm4#Almaty-Steppe", "Hx9$Tulpar-Sky"
EMAIL, PHONE = "aliya@example.kz", "+77011234567"


@override_settings(
    KASPI_IDENTITY={
        **settings.KASPI_IDENTITY,
        "SMS_SENDER": "kaspi_identity.delivery.Outbox",
        "HASH_PROFILE": "tests-only",
        # The tests send the phone's code and a reset code back to back; a person waits
        # the cooldown between two SMS to one number (60 seconds by default).
        "SETTINGS": {"sms_cooldown": timedelta(milliseconds=1)},
    }
)
class PortalTests(TestCase):
    """Every flow of the portal, as a browser would go through it."""

    def link(self) -> str:
        """The path of the last letter's link."""
        found = re.search(r"https://portal\.example\.kz(/\S+)", mail.outbox[-1].body)
        assert found is not None
        return found.group(1)

    def log_in(self, login: str, password: str) -> Client:
        """A new client logged in with ``login`` and ``password``."""
        client = Client()
        answer = client.post("/accounts/login/", {"identifier": login, "password": password})
        assert answer.status_code == 302
        return client

    def assert_logged_in(self, client: Client, expected: bool) -> None:
        """Whether ``client``'s session still opens the change-of-password page."""
        page = client.get("/accounts/password/change/")
        assert (page.status_code == 200) == expected

    def register_and_confirm(self) -> None:
        """Register with an e-mail and a phone, then confirm from the letter."""
        visitor = Client()
        form = {"email": EMAIL, "phone": "8 701 123 45 67", "password": PASSWORD}
        answer = visitor.post("/accounts/register/", {**form, "confirmation": PASSWORD})
        assert answer.status_code == 200
        self.assertRedirects(
            visitor.get(self.link()), "/accounts/confirm/", fetch_redirect_response=False
        )
        assert visitor.post("/accounts/confirm/").status_code == 200

    def test_reset_by_email(self) -> None:
        """The link in the letter resets the password and ends the other session."""
        self.register_and_confirm()
        other = self.log_in(EMAIL, PASSWORD)
        Client().post("/accounts/password/forgot/", {"identifier": EMAIL})
        stranger = Client()
        self.assertRedirects(
            stranger.get(self.link()), "/accounts/password/reset/", fetch_redirect_response=False
        )
        done = stranger.post("/accounts/password/reset/", {"password": NEW, "confirmation": NEW})
        assert done.status_code == 200
        self.assert_logged_in(other, False)
        self.assert_logged_in(self.log_in(EMAIL, NEW), True)

    def test_reset_by_sms(self) -> None:
        """The code in the SMS resets the password and ends the other session."""
        self.register_and_confirm()
        # Only a proven number receives reset codes: the owner proves it on the phone page.
        owner = self.log_in(EMAIL, PASSWORD)
        self.assertRedirects(
            owner.post("/accounts/phone/", {"phone": PHONE, "password": PASSWORD}),
            "/accounts/phone/verify/",
            fetch_redirect_response=False,
        )
        proof = extract_code(sms_sender().last_sms(PHONE))  # type: ignore[union-attr]
        assert owner.post("/accounts/phone/verify/", {"code": proof}).status_code == 200
        other = self.log_in(PHONE, PASSWORD)
        stranger = Client()
        stranger.post("/accounts/password/sms/", {"phone": PHONE})
        code = extract_code(sms_sender().last_sms(PHONE))  # type: ignore[union-attr]
        self.assertRedirects(
            stranger.post("/accounts/password/sms/code/", {"code": code}),
            "/accounts/password/reset/",
            fetch_redirect_response=False,
        )
        done = stranger.post("/accounts/password/reset/", {"password": SMS, "confirmation": SMS})
        assert done.status_code == 200
        self.assert_logged_in(other, False)
        self.assert_logged_in(self.log_in(EMAIL, SMS), True)

    def test_policy_json_and_admin_login(self) -> None:
        """The policy endpoint answers in Kazakh; the admin's log-in uses the same rules."""
        self.register_and_confirm()
        policy = Client().get("/accounts/policy.json", headers={"accept-language": "kk"})
        assert policy["Content-Language"] == "kk"
        assert policy.json()["requirements"]
        client = Client()
        assert client.login(username=EMAIL, password=PASSWORD)
