"""Tests of kaspi_identity.delivery without a network: records, outbox, console, templates, SMS."""

from __future__ import annotations

import dataclasses
import inspect
import io
import logging
import re
import threading
import typing
from datetime import datetime, timedelta, timezone
from typing import Any, cast

import pytest

import kaspi_identity.delivery as delivery
from kaspi_identity import KaspiIdentityError, UnknownLanguageError
from kaspi_identity.delivery import (
    EMAIL_KINDS,
    SMS_KINDS,
    ConsoleSender,
    DeliveryError,
    EmailMessage,
    EmailSender,
    Outbox,
    SmsMessage,
    SmsSender,
    SmtpEmailSender,
    extract_code,
    extract_link,
    render_email,
    render_sms,
    sms_encoding,
    sms_segments,
)
from kaspi_identity.i18n import SUPPORTED_LANGUAGES, Catalog, get_catalog

LINK = "https://portal.example.kz/reset/SECRET-TOKEN-0123456789"
RESET_PAGE = "https://portal.example.kz/forgot-password"
SITE = "goszakup.gov.kz"
CODE = "98765432"  # the longest code the services send: 8 digits
PHONE = "+77011234567"

# The parameters of every letter, as the services pass them.
EMAIL_PARAMS: dict[str, dict[str, Any]] = {
    "confirm_email": {"link": LINK, "hours": 24, "site": SITE},
    "already_registered": {"site": SITE, "reset_link": RESET_PAGE},
    "phone_already_registered": {"site": SITE, "reset_link": RESET_PAGE},
    "iin_already_registered": {"site": SITE, "reset_link": RESET_PAGE},
    "password_reset": {"link": LINK, "minutes": 60, "site": SITE},
    "password_changed": {"site": SITE, "time": "2026-11-23 16:00 UTC"},
    "password_was_reset": {"site": SITE, "time": "2026-11-23 16:00 UTC"},
    "email_change_confirm": {"link": LINK, "hours": 24, "site": SITE},
    "email_change_taken": {"site": SITE, "reset_link": RESET_PAGE},
    "email_changed": {"site": SITE, "time": "2026-11-23 16:00 UTC", "undo_link": LINK, "days": 3},
    "phone_changed": {"site": SITE, "time": "2026-11-23 16:00 UTC", "phone": "+7 701 *** ** 67"},
    "phone_removed": {"site": SITE, "time": "2026-11-23 16:00 UTC"},
}
# Links each letter must carry, by parameter name.
EMAIL_LINKS = {
    "confirm_email": LINK,
    "already_registered": RESET_PAGE,
    "phone_already_registered": RESET_PAGE,
    "iin_already_registered": RESET_PAGE,
    "password_reset": LINK,
    "email_change_confirm": LINK,
    "email_change_taken": RESET_PAGE,
    "email_changed": LINK,
}


def email(text: str = f"Open {LINK} now.", **changes: object) -> EmailMessage:
    """A valid letter, with some fields changed."""
    fields: dict[str, Any] = {
        "to": "aliya@example.kz",
        "subject": "Reset your password",
        "text": text,
        "kind": "password_reset",
        "language": "en",
    }
    fields.update(changes)
    return EmailMessage(**fields)


def sms(
    text: str = f"{CODE} is your code. It expires in 10 minutes.", **changes: object
) -> SmsMessage:
    """A valid SMS, with some fields changed."""
    fields: dict[str, Any] = {"to": PHONE, "text": text, "kind": "reset_code", "language": "en"}
    fields.update(changes)
    return SmsMessage(**fields)


class TestPublicSurface:
    def test_all_is_sorted_and_exact(self) -> None:
        """__all__ lists every public name of kaspi_identity.delivery, in isort order.

        The SMTP senders are imported on first use (smtplib, ssl and the email package; the
        async one also needs aiosmtplib), so they are in ``__all__`` and reachable, but not
        in the module's namespace.
        """
        public = {n for n in vars(delivery) if not n.startswith(("_", "@")) and n != "annotations"}
        lazy = {"AsyncSmtpEmailSender", "SmtpEmailSender", "SmtpSecurity"}
        assert public | lazy == set(delivery.__all__)
        assert not public & lazy
        senders = ("AsyncSmtpEmailSender", "SmtpEmailSender")
        assert all(getattr(delivery, name).__name__ == name for name in senders)
        assert set(typing.get_args(delivery.SmtpSecurity)) == {"starttls", "ssl", "none"}
        assert set(dir(delivery)) >= set(delivery.__all__)
        constants = sorted(n for n in delivery.__all__ if n.isupper())
        classes = sorted(n for n in delivery.__all__ if n[0].isupper() and not n.isupper())
        functions = sorted(n for n in delivery.__all__ if n[0].islower())
        assert constants + classes + functions == delivery.__all__

    def test_every_public_name_is_documented(self) -> None:
        """Every public class and function says what it is for."""
        for name in delivery.__all__:
            obj = getattr(delivery, name)
            if isinstance(obj, type) or inspect.isfunction(obj):
                assert obj.__doc__, name

    def test_delivery_error_is_in_the_error_tree(self) -> None:
        """DeliveryError is a KaspiIdentityError, so one except catches every library error."""
        assert issubclass(DeliveryError, KaspiIdentityError)
        assert DeliveryError("x").smtp_code is None
        assert 535 == DeliveryError("x", smtp_code=535).smtp_code

    def test_bundled_senders_implement_the_protocols(self) -> None:
        """Outbox and ConsoleSender are both senders; the SMTP sender sends e-mail only."""
        for sender in (Outbox(), ConsoleSender(io.StringIO())):
            assert isinstance(sender, EmailSender)
            assert isinstance(sender, SmsSender)
        smtp = SmtpEmailSender(
            "localhost", 25, sender="a@example.kz", security="none", local_hostname="h"
        )
        assert isinstance(smtp, EmailSender)
        assert not isinstance(smtp, SmsSender)

    def test_kinds(self) -> None:
        """The documented kinds of letter and SMS."""
        expected = (
            "confirm_email",
            "already_registered",
            "phone_already_registered",
            "iin_already_registered",
            "password_reset",
            "password_changed",
            "password_was_reset",
            "email_change_confirm",
            "email_change_taken",
            "email_changed",
            "phone_changed",
            "phone_removed",
        )
        assert expected == EMAIL_KINDS
        sms_kinds = (
            "reset_code",
            "password_changed",
            "password_was_reset",
            "phone_code",
            "phone_in_use",
            "email_changed",
            "phone_changed",
            "phone_removed",
        )
        assert sms_kinds == SMS_KINDS


class TestEmailMessage:
    def test_fields(self) -> None:
        """A letter keeps what it was given; html defaults to None."""
        message = email()
        assert "aliya@example.kz" == message.to
        assert message.html is None
        assert "password_reset" == message.kind

    def test_repr_hides_subject_and_bodies(self) -> None:
        """The repr shows to, kind and language, never the body or HTML with the link."""
        message = email(html=f'<a href="{LINK}">reset</a>')
        text = repr(message)
        assert "EmailMessage(to='aliya@example.kz', kind='password_reset', language='en')" == text
        assert "SECRET" not in text

    def test_frozen_slotted_keyword_only(self) -> None:
        """A letter cannot be changed, has no __dict__, and takes keywords only."""
        message = email()
        with pytest.raises(dataclasses.FrozenInstanceError):
            message.to = "eve@example.kz"  # type: ignore[misc]
        assert not hasattr(message, "__dict__")
        with pytest.raises(TypeError):
            EmailMessage("a@example.kz", "s", "t", None, "k", "en")  # type: ignore[call-arg]

    @pytest.mark.parametrize(
        "subject",
        [
            "Reset\r\nBcc: eve@example.kz",
            "Reset\nBcc: eve@example.kz",
            "Reset\rX: y",
            "Reset\x00",
            "Reset\u2028password",
            "",
            "   ",
        ],
    )
    def test_subject_must_be_one_line(self, subject: str) -> None:
        """A line break or control character in the subject (header injection) is refused."""
        with pytest.raises(ValueError, match="subject") as info:
            email(subject=subject)
        assert "SECRET" not in str(info.value)

    @pytest.mark.parametrize(
        "to",
        [
            "aliya@example.kz\r\nBcc: eve@example.kz",
            "aliya@example.kz\nBcc: eve@example.kz",
            "aliya@example.kz, eve@example.kz",
            "Aliya <aliya@example.kz>",
            "aliya@@example.kz",
            "aliya example.kz",
            "aliya@example",
            "",
            "a" * 250 + "@example.kz",
        ],
    )
    def test_to_must_be_one_bare_address(self, to: str) -> None:
        """Line breaks, lists, display names and non-addresses are refused as recipients."""
        with pytest.raises(ValueError, match="to"):
            email(to=to)

    def test_international_address_is_accepted(self) -> None:
        """A Cyrillic address is still one address."""
        assert "алия@пример.қаз" == email(to="алия@пример.қаз").to

    @pytest.mark.parametrize(
        ("changes", "error"),
        [
            ({"to": None}, TypeError),
            ({"subject": b"Reset"}, TypeError),
            ({"text": b"body"}, TypeError),
            ({"html": 5}, TypeError),
            ({"kind": None}, TypeError),
            ({"text": ""}, ValueError),
            ({"text": "\n \n"}, ValueError),
            ({"html": ""}, ValueError),
            ({"kind": "Password Reset"}, ValueError),
            ({"language": "русский"}, ValueError),
            ({"language": ""}, ValueError),
        ],
    )
    def test_bad_fields(self, changes: dict[str, Any], error: type[Exception]) -> None:
        """Wrong types are TypeErrors, wrong values ValueErrors."""
        with pytest.raises(error):
            email(**changes)

    @pytest.mark.parametrize("bad", ["NUL \x00 in body", "lone \ud800 surrogate"])
    def test_unsendable_body_is_refused_without_quoting_it(self, bad: str) -> None:
        """A body with NUL or a lone surrogate is refused, and the error does not repeat it."""
        with pytest.raises(ValueError, match="text") as info:
            email(text=f"{LINK} {bad}")
        assert "SECRET" not in str(info.value)

    def test_language_tags_with_region(self) -> None:
        """A language tag may carry a region."""
        assert "ru-KZ" == email(language="ru-KZ").language


class TestSmsMessage:
    def test_repr_hides_text(self) -> None:
        """The repr shows to, kind and language, never the code."""
        text = repr(sms())
        assert "SmsMessage(to='+77011234567', kind='reset_code', language='en')" == text
        assert CODE not in text

    @pytest.mark.parametrize(
        "to", ["87011234567", "+7 701 123 45 67", "+0123456789", "+7701", "", "+7701123456789012"]
    )
    def test_to_must_be_e164(self, to: str) -> None:
        """Only an E.164 number is a recipient: normalise user input first."""
        with pytest.raises(ValueError, match=r"E\.164"):
            sms(to=to)

    @pytest.mark.parametrize(
        ("changes", "error"),
        [
            ({"to": 77011234567}, TypeError),
            ({"text": None}, TypeError),
            ({"text": ""}, ValueError),
            ({"text": "code \x00"}, ValueError),
            ({"kind": "RESET"}, ValueError),
        ],
    )
    def test_bad_fields(self, changes: dict[str, Any], error: type[Exception]) -> None:
        """Wrong types are TypeErrors, wrong values ValueErrors."""
        with pytest.raises(error):
            sms(**changes)


class TestOutbox:
    def test_records_in_order(self) -> None:
        """Letters and SMS are kept separately, oldest first."""
        outbox = Outbox()
        first, second = email(to="a@example.kz"), email(to="b@example.kz")
        outbox.send_email(first)
        outbox.send_sms(sms())
        outbox.send_email(second)
        assert [first, second] == outbox.emails
        assert [sms()] == outbox.sms

    def test_lists_are_copies(self) -> None:
        """Changing a returned list does not change the outbox."""
        outbox = Outbox()
        outbox.send_email(email())
        outbox.emails.clear()
        outbox.sms.append(sms())
        assert 1 == len(outbox.emails)
        assert [] == outbox.sms

    def test_last_email_and_sms(self) -> None:
        """The newest message, optionally the newest to one recipient."""
        outbox = Outbox()
        a1, b1, a2 = email(to="a@example.kz"), email(to="b@example.kz"), email(to="a@example.kz")
        for message in (a1, b1, a2):
            outbox.send_email(message)
        assert outbox.last_email() is a2
        assert outbox.last_email(to="b@example.kz") is b1
        assert outbox.last_email(to="a@example.kz") is a2
        other = sms(to="+77017654321")
        outbox.send_sms(sms())
        outbox.send_sms(other)
        assert outbox.last_sms() is other
        assert PHONE == outbox.last_sms(to=PHONE).to

    def test_last_raises_when_nothing_matches(self) -> None:
        """Asking for a message that was never sent is a LookupError."""
        outbox = Outbox()
        with pytest.raises(LookupError, match="no e-mail"):
            outbox.last_email()
        with pytest.raises(LookupError, match="no SMS"):
            outbox.last_sms()
        outbox.send_email(email())
        with pytest.raises(LookupError, match=r"nobody@example\.kz"):
            outbox.last_email(to="nobody@example.kz")

    def test_clear(self) -> None:
        """clear() forgets every message."""
        outbox = Outbox()
        outbox.send_email(email())
        outbox.send_sms(sms())
        outbox.clear()
        assert ([], []) == (outbox.emails, outbox.sms)

    def test_fail_next(self) -> None:
        """The next n sends of either kind fail and are not recorded; then sending works."""
        outbox = Outbox()
        outbox.fail_next(2)
        with pytest.raises(DeliveryError, match="simulated"):
            outbox.send_email(email())
        with pytest.raises(DeliveryError):
            outbox.send_sms(sms())
        outbox.send_email(email())
        assert (1, 0, 2) == (len(outbox.emails), len(outbox.sms), outbox.failures)

    def test_fail_next_with_a_given_exception(self) -> None:
        """fail_next raises the exception it was given; calls add up."""
        outbox = Outbox()
        outbox.fail_next(exc=TimeoutError("gateway timed out"))
        outbox.fail_next(1)
        with pytest.raises(TimeoutError, match="gateway"):
            outbox.send_sms(sms())
        with pytest.raises(DeliveryError):
            outbox.send_sms(sms())
        outbox.send_sms(sms())
        assert 1 == len(outbox.sms)

    def test_fail_next_checks_its_arguments(self) -> None:
        """n must be a non-negative int and exc an exception instance."""
        outbox = Outbox()
        with pytest.raises(ValueError, match="n must be"):
            outbox.fail_next(-1)
        with pytest.raises(TypeError):
            outbox.fail_next(True)
        with pytest.raises(TypeError):
            outbox.fail_next(exc=cast(Exception, DeliveryError))
        outbox.fail_next(0)
        outbox.send_email(email())

    def test_failing_switch(self) -> None:
        """While failing is on, every send fails; switching it off restores delivery."""
        outbox = Outbox()
        outbox.failing = True
        assert outbox.failing
        for _ in range(3):
            with pytest.raises(DeliveryError):
                outbox.send_email(email())
        outbox.failing = False
        outbox.send_email(email())
        assert (1, 3) == (len(outbox.emails), outbox.failures)
        with pytest.raises(TypeError):
            outbox.failing = 1  # type: ignore[assignment]

    def test_wrong_message_type(self) -> None:
        """An SMS is not a letter, and the other way round."""
        outbox = Outbox()
        with pytest.raises(TypeError, match="EmailMessage"):
            outbox.send_email(cast(EmailMessage, sms()))
        with pytest.raises(TypeError, match="SmsMessage"):
            outbox.send_sms(cast(SmsMessage, email()))

    def test_repr_counts_and_hides_bodies(self) -> None:
        """The repr counts messages and shows none of them."""
        outbox = Outbox()
        outbox.send_email(email())
        outbox.send_sms(sms())
        assert "<Outbox: 1 e-mails, 1 SMS>" == repr(outbox)

    def test_sixteen_threads_sending(self) -> None:
        """16 threads sending letters and SMS at once lose nothing and keep each one's order."""
        outbox = Outbox()
        per_thread = 200
        barrier = threading.Barrier(16)

        def work(n: int) -> None:
            barrier.wait()
            for i in range(per_thread):
                outbox.send_email(email(to=f"user{n}@example.kz", subject=f"{i}"))
                outbox.send_sms(sms(text=f"{n} {i}"))
                outbox.last_email()
                assert outbox.emails

        threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert 16 * per_thread == len(outbox.emails)
        assert 16 * per_thread == len(outbox.sms)
        for n in range(16):
            mine = [m.subject for m in outbox.emails if m.to == f"user{n}@example.kz"]
            assert [str(i) for i in range(per_thread)] == mine

    def test_sixteen_threads_share_the_failures(self) -> None:
        """Simulated failures are handed out exactly once each under contention."""
        outbox = Outbox()
        outbox.fail_next(100)
        failed = []
        lock = threading.Lock()

        def work() -> None:
            for _ in range(20):
                try:
                    outbox.send_email(email())
                except DeliveryError:
                    with lock:
                        failed.append(1)

        threads = [threading.Thread(target=work) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert (100, 100, 220) == (len(failed), outbox.failures, len(outbox.emails))


class TestExtract:
    def test_link(self) -> None:
        """The first https link, without the sentence's closing punctuation."""
        message = email(text=f"See http://old.example.kz and {LINK}. Then {RESET_PAGE}.")
        assert LINK == extract_link(message)

    @pytest.mark.parametrize("end", [".", ",", ")", "!", "\n", ""])
    def test_link_ends(self, end: str) -> None:
        """Punctuation or the end of the text closes the link."""
        assert LINK == extract_link(email(text=f"Link: {LINK}{end}"))

    def test_no_link(self) -> None:
        """A letter without an https link is a ValueError that does not quote the letter."""
        with pytest.raises(ValueError, match="holds no link") as info:
            extract_link(email(text="Your password was changed. SECRET-NOTE"))
        assert "SECRET" not in str(info.value)

    def test_code(self) -> None:
        """The first run of 6 to 10 digits, not the number of minutes."""
        assert CODE == extract_code(sms(text=f"Kaspi2024: code {CODE}. 10 min."))
        assert "123456" == extract_code(sms(text="123456 is your code"))

    def test_no_code(self) -> None:
        """An SMS without a code is a ValueError that does not quote the SMS."""
        with pytest.raises(ValueError, match="no code") as info:
            extract_code(sms(text="Code 12345, valid 10 minutes"))
        assert "12345" not in str(info.value)

    def test_wrong_types(self) -> None:
        """Each helper takes its own kind of message."""
        with pytest.raises(TypeError):
            extract_link(cast(EmailMessage, sms()))
        with pytest.raises(TypeError):
            extract_code(cast(SmsMessage, email()))


class TestConsoleSender:
    def test_prints_letter_to_stdout(self, capsys: pytest.CaptureFixture[str]) -> None:
        """By default the letter, link included, goes to sys.stdout as it is at send time."""
        ConsoleSender().send_email(email(subject="Құпиясөзді қалпына келтіру"))
        out = capsys.readouterr().out
        assert "To:      aliya@example.kz" in out
        assert "Subject: Құпиясөзді қалпына келтіру" in out
        assert LINK in out
        assert "E-MAIL (password_reset, en)" in out
        assert "not sent" in out

    def test_prints_sms_to_a_stream(self) -> None:
        """An SMS goes to the given stream with its code."""
        stream = io.StringIO()
        ConsoleSender(stream).send_sms(sms())
        out = stream.getvalue()
        assert "SMS (reset_code, en)" in out
        assert "To: +77011234567" in out
        assert CODE in out

    def test_html_is_mentioned_not_printed(self) -> None:
        """An HTML alternative is announced by its size only."""
        stream = io.StringIO()
        ConsoleSender(stream).send_email(email(html="<p>hello</p>"))
        assert "[HTML alternative: 12 characters, not shown]" in stream.getvalue()
        assert "<p>" not in stream.getvalue()

    @pytest.mark.parametrize(
        ("language", "header", "to"),
        [
            ("kk", "ХАТ (password_reset, en)", "Кімге:"),
            ("ru", "ПИСЬМО (password_reset, en)", "Кому:"),
        ],
    )
    def test_frame_follows_the_language(self, language: str, header: str, to: str) -> None:
        """The demo's frames follow --lang: the console speaks the reader's language."""
        stream = io.StringIO()
        ConsoleSender(stream, language=language).send_email(email())
        out = stream.getvalue()
        assert header in out
        assert f"{to} aliya@example.kz" in out.replace("  ", " ").replace("  ", " ")
        assert "printed by" not in out

    def test_unknown_frame_language_is_refused(self) -> None:
        from kaspi_identity import UnknownLanguageError

        with pytest.raises(UnknownLanguageError):
            ConsoleSender(io.StringIO(), language="de")

    def test_never_logs(self, caplog: pytest.LogCaptureFixture) -> None:
        """Nothing goes through logging, at any level: the link stays out of log handlers."""
        caplog.set_level(logging.DEBUG)
        sender = ConsoleSender(io.StringIO())
        sender.send_email(email())
        sender.send_sms(sms())
        assert [] == caplog.records

    def test_threads_do_not_interleave(self) -> None:
        """Each message is printed whole, even from many threads at once."""
        stream = io.StringIO()
        sender = ConsoleSender(stream)

        def work() -> None:
            for _ in range(20):
                sender.send_sms(sms())

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        block = stream.getvalue().split("=" * 72 + "\n")
        assert 160 == stream.getvalue().count("SMS (reset_code, en)")
        assert all(part in ("", "\n") or part.startswith("SMS (") for part in block)

    def test_repr_and_types(self) -> None:
        """The repr names the stream; a wrong message type is a TypeError."""
        assert "ConsoleSender(stream=sys.stdout)" == repr(ConsoleSender())
        assert "ConsoleSender(stream=StringIO)" == repr(ConsoleSender(io.StringIO()))
        with pytest.raises(TypeError):
            ConsoleSender(io.StringIO()).send_email(cast(EmailMessage, sms()))
        with pytest.raises(TypeError):
            ConsoleSender(io.StringIO()).send_sms(cast(SmsMessage, email()))


class TestRenderEmail:
    @pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
    @pytest.mark.parametrize("kind", EMAIL_KINDS)
    def test_every_kind_renders(self, kind: str, language: str) -> None:
        """Every letter renders in every language, placeholders filled, link and site shown."""
        message = render_email(
            kind, language, to="aliya@example.kz", catalog=None, **EMAIL_PARAMS[kind]
        )
        assert (kind, language, "aliya@example.kz") == (message.kind, message.language, message.to)
        assert message.html is None
        for part in (message.subject, message.text):
            assert "{" not in part
            assert "}" not in part
            assert SITE in part
        if kind in EMAIL_LINKS:
            assert EMAIL_LINKS[kind] == extract_link(message)
        if "time" in EMAIL_PARAMS[kind]:
            assert "2026-11-23 16:00 UTC" in message.text
        assert kind in EMAIL_LINKS or "time" in EMAIL_PARAMS[kind]

    @pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
    @pytest.mark.parametrize("kind", EMAIL_KINDS)
    def test_every_letter_signs_off(self, kind: str, language: str) -> None:
        """Every letter ends with the portal's sign-off on a line of its own."""
        message = render_email(kind, language, to="aliya@example.kz", **EMAIL_PARAMS[kind])
        sign_off = {"en": "Kind regards", "ru": "С уважением", "kk": "Құрметпен"}[language]
        assert message.text.endswith(f"\n\n{sign_off}, {SITE}")

    @pytest.mark.parametrize("kind", EMAIL_KINDS)
    def test_the_reader_is_addressed_with_a_capital(self, kind: str) -> None:
        """Russian and Kazakh letters write "Вы"/"Сіз" and their forms capitalised."""
        lower = {
            "ru": re.compile(r"\b(?:вы|вас|вам|ваш|ваша|ваше|вашей|вашего|вашу|ваши)\b"),
            "kk": re.compile(r"\b(?:сіз|сізде|сіздің|сізге|сізді)\b"),
        }
        for language, pattern in lower.items():
            message = render_email(kind, language, to="aliya@example.kz", **EMAIL_PARAMS[kind])
            assert pattern.search(message.subject + "\n" + message.text) is None, language

    def test_password_changed_wording(self) -> None:
        """The time has its own line; kk uses the past conditional; the link is named."""
        params = EMAIL_PARAMS["password_changed"]
        ru = render_email("password_changed", "ru", to="a@example.kz", **params).text
        kk = render_email("password_changed", "kk", to="a@example.kz", **params).text
        assert "\n\nДата и время: 2026-11-23 16:00 UTC\n\n" in ru
        assert "с помощью ссылки «Забыли пароль?»" in ru
        assert "\n\nКүні мен уақыты: 2026-11-23 16:00 UTC\n\n" in kk
        assert "Егер мұны Сіз жасаған болсаңыз" in kk
        assert "«Құпиясөзді ұмыттыңыз ба?» сілтемесі арқылы" in kk
        assert "кезінде" not in kk

    @pytest.mark.parametrize("kind", ["confirm_email", "password_reset"])
    def test_russian_says_vosstanovlenie_and_follow_the_link(self, kind: str) -> None:
        """Russian uses one term ("восстановление") and "перейдите по ссылке"."""
        message = render_email(kind, "ru", to="a@example.kz", **EMAIL_PARAMS[kind])
        assert "сброс" not in (message.subject + message.text).lower()
        assert "откройте ссылку" not in message.text
        assert "перейдите по ссылке:" in message.text

    @pytest.mark.parametrize("language", ["ru", "kk"])
    @pytest.mark.parametrize("kind", EMAIL_KINDS)
    def test_translated(self, kind: str, language: str) -> None:
        """Russian and Kazakh letters are not the English text, and they are Cyrillic."""
        english = render_email(kind, "en", to="a@example.kz", catalog=None, **EMAIL_PARAMS[kind])
        message = render_email(
            kind, language, to="a@example.kz", catalog=None, **EMAIL_PARAMS[kind]
        )
        assert english.subject != message.subject
        assert english.text != message.text
        assert any("а" <= char <= "я" for char in message.text.lower())

    @pytest.mark.parametrize(
        ("kind", "word"),
        [
            ("confirm_email", "электрондық пошта"),
            ("confirm_email", "сілтеме"),
            ("password_reset", "құпиясөз"),
            ("password_reset", "сілтеме"),
            ("password_changed", "құпиясөз"),
            ("password_was_reset", "құпиясөз"),
            ("already_registered", "құпиясөз"),
            ("phone_already_registered", "құпиясөз"),
            ("phone_already_registered", "тіркелгі"),
            ("iin_already_registered", "құпиясөз"),
            ("iin_already_registered", "тіркелгі"),
            ("iin_already_registered", "жсн/бсн"),
        ],
    )
    def test_kazakh_terms(self, kind: str, word: str) -> None:
        """Kazakh letters use the terms of the government portals."""
        message = render_email(kind, "kk", to="a@example.kz", catalog=None, **EMAIL_PARAMS[kind])
        assert word in message.text.lower()

    @pytest.mark.parametrize(
        ("hours", "phrase"),
        [(1, "1 час."), (2, "2 часа."), (5, "5 часов."), (21, "21 час."), (24, "24 часа.")],
    )
    def test_russian_hours(self, hours: int, phrase: str) -> None:
        """The confirmation letter's validity follows the Russian plural rule."""
        message = render_email(
            "confirm_email", "ru", to="a@example.kz", link=LINK, hours=hours, site=SITE
        )
        assert f"Ссылка действует {phrase}" in message.text

    @pytest.mark.parametrize(
        ("minutes", "phrase"),
        [(1, "1 минуту"), (3, "3 минуты"), (15, "15 минут"), (60, "60 минут")],
    )
    def test_russian_minutes(self, minutes: int, phrase: str) -> None:
        """The reset letter's validity follows the Russian plural rule."""
        message = render_email(
            "password_reset", "ru", to="a@example.kz", link=LINK, minutes=minutes, site=SITE
        )
        assert f"Ссылка действует {phrase} " in message.text

    @pytest.mark.parametrize(("hours", "phrase"), [(1, "1 hour."), (24, "24 hours.")])
    def test_english_hours(self, hours: int, phrase: str) -> None:
        """English has one and other."""
        message = render_email(
            "confirm_email", "en", to="a@example.kz", link=LINK, hours=hours, site=SITE
        )
        assert f"The link is valid for {phrase}" in message.text

    def test_texts(self) -> None:
        """The English reset letter reads as agreed."""
        message = render_email(
            "password_reset",
            "en-GB",
            to="a@example.kz",
            catalog=None,
            **EMAIL_PARAMS["password_reset"],
        )
        assert "Reset your goszakup.gov.kz password" == message.subject
        assert "en" == message.language
        assert message.text.startswith("Hello,\n\n")
        assert "ignore this letter: your password stays unchanged." in message.text

    @pytest.mark.parametrize(
        ("language", "subject", "phrases"),
        [
            (
                "en",
                "Your phone number was used in a sign-up for goszakup.gov.kz",
                [
                    "gave the mobile phone number of your account when signing up for "
                    "goszakup.gov.kz.",
                    "the new account was created without it.",
                    "your account, phone number and password stay unchanged.",
                ],
            ),
            (
                "ru",
                "goszakup.gov.kz: Ваш номер телефона указали при регистрации",
                [
                    "при регистрации на сайте goszakup.gov.kz.",
                    "новая учётная запись создана без него.",
                    "Ваша учётная запись, номер телефона и пароль остались прежними.",
                ],
            ),
            (
                "kk",
                "goszakup.gov.kz: тіркелу кезінде Сіздің телефон нөміріңіз көрсетілді",
                [
                    "goszakup.gov.kz сайтында тіркелу кезінде",
                    "жаңа тіркелгі бұл нөмірсіз ашылды.",
                    "тіркелгіңіз, телефон нөміріңіз және құпиясөзіңіз өзгерген жоқ.",
                ],
            ),
        ],
    )
    def test_phone_already_registered(
        self, language: str, subject: str, phrases: list[str]
    ) -> None:
        """The letter to a phone number's owner: site named, link shown once on its own line."""
        message = render_email(
            "phone_already_registered",
            language,
            to="aliya@example.kz",
            site=SITE,
            reset_link=RESET_PAGE,
        )
        assert ("phone_already_registered", language) == (message.kind, message.language)
        assert subject == message.subject
        assert RESET_PAGE == extract_link(message)
        assert 1 == message.text.count(RESET_PAGE)
        assert f"\n\n{RESET_PAGE}\n\n" in message.text
        assert SITE in message.text
        for phrase in phrases:
            assert phrase in message.text
        with pytest.raises(TypeError, match="missing reset_link"):
            render_email("phone_already_registered", language, to="a@example.kz", site=SITE)

    @pytest.mark.parametrize(
        ("language", "subject", "phrases"),
        [
            (
                "en",
                "Your IIN/BIN was used in a sign-up for goszakup.gov.kz",
                [
                    "gave the IIN/BIN of your account when signing up for goszakup.gov.kz.",
                    "so no account was created with it.",
                    "your account and password stay unchanged.",
                ],
            ),
            (
                "ru",
                "goszakup.gov.kz: Ваш ИИН/БИН указали при регистрации",
                [
                    "указал ИИН/БИН Вашей учётной записи при регистрации на сайте goszakup.gov.kz.",
                    "поэтому учётная запись с этим номером не создана.",
                    "Ваша учётная запись и пароль остались прежними.",
                ],
            ),
            (
                "kk",
                "goszakup.gov.kz: тіркелу кезінде Сіздің ЖСН/БСН нөміріңіз көрсетілді",
                [
                    "goszakup.gov.kz сайтында тіркелу кезінде тіркелгіңіздің ЖСН/БСН "
                    "нөмірін көрсетті.",
                    "бұл нөмірмен ешбір тіркелгі ашылмады.",
                    "тіркелгіңіз бен құпиясөзіңіз өзгерген жоқ.",
                ],
            ),
        ],
    )
    def test_iin_already_registered(self, language: str, subject: str, phrases: list[str]) -> None:
        """The letter to an IIN/BIN's owner: site named, link shown once on its own line."""
        message = render_email(
            "iin_already_registered",
            language,
            to="aliya@example.kz",
            site=SITE,
            reset_link=RESET_PAGE,
        )
        assert ("iin_already_registered", language) == (message.kind, message.language)
        assert subject == message.subject
        assert RESET_PAGE == extract_link(message)
        assert 1 == message.text.count(RESET_PAGE)
        assert f"\n\n{RESET_PAGE}\n\n" in message.text
        assert SITE in message.text
        for phrase in phrases:
            assert phrase in message.text
        with pytest.raises(TypeError, match="missing reset_link"):
            render_email("iin_already_registered", language, to="a@example.kz", site=SITE)

    def test_aware_datetime(self) -> None:
        """A time given as an aware datetime is shown in its own offset."""
        almaty = timezone(timedelta(hours=5))
        message = render_email(
            "password_changed",
            "ru",
            to="a@example.kz",
            site=SITE,
            time=datetime(2026, 11, 23, 21, 5, tzinfo=almaty),
        )
        assert "\n\nДата и время: 2026-11-23 21:05 UTC+05:00\n\n" in message.text
        utc = render_email(
            "password_changed",
            "en",
            to="a@example.kz",
            site=SITE,
            time=datetime(2026, 11, 23, 16, 5, tzinfo=timezone.utc),
        )
        assert "\n\nDate and time: 2026-11-23 16:05 UTC\n\n" in utc.text

    def test_naive_datetime_is_refused(self) -> None:
        """A naive datetime has no meaning for the reader."""
        with pytest.raises(ValueError, match="timezone-aware"):
            render_email(
                "password_changed", "en", to="a@example.kz", site=SITE, time=datetime(2026, 1, 1)
            )

    def test_unknown_kind(self) -> None:
        """An unknown kind is a ValueError listing the known ones."""
        with pytest.raises(ValueError, match="known: confirm_email"):
            render_email("welcome", "en", to="a@example.kz", site=SITE)

    @pytest.mark.parametrize(
        ("params", "match"),
        [
            ({"link": LINK, "site": SITE}, "missing hours"),
            ({"link": LINK, "hours": 24, "site": SITE, "hour": 1}, "unexpected hour"),
            ({"link": LINK, "hours": "24", "site": SITE}, "hours must be an int"),
            ({"link": LINK, "hours": True, "site": SITE}, "hours must be an int"),
            ({"link": LINK, "hours": 24, "site": 5}, "site must be str"),
        ],
    )
    def test_parameter_errors(self, params: dict[str, Any], match: str) -> None:
        """Missing, unexpected and mistyped parameters are TypeErrors naming them."""
        with pytest.raises(TypeError, match=match):
            render_email("confirm_email", "en", to="a@example.kz", catalog=None, **params)

    @pytest.mark.parametrize(
        "link",
        [
            "http://portal.example.kz/reset/SECRET",
            "javascript:alert('SECRET')",
            "https://portal.example.kz/reset/SECRET more",
            "https://portal.example.kz/\nSECRET",
            "",
        ],
    )
    def test_link_must_be_https(self, link: str) -> None:
        """A link that is not one https URL is refused, and the error does not repeat it."""
        with pytest.raises(ValueError, match="link") as info:
            render_email(
                "password_reset", "en", to="a@example.kz", link=link, minutes=60, site=SITE
            )
        assert "SECRET" not in str(info.value)

    def test_site_with_a_line_break_cannot_inject_headers(self) -> None:
        """A site name with CR/LF would break the subject: the letter is refused."""
        with pytest.raises(ValueError, match="subject"):
            render_email(
                "password_changed",
                "en",
                to="a@example.kz",
                site="portal\r\nBcc: eve@example.kz",
                time="now",
            )

    def test_unknown_language(self) -> None:
        """No silent fallback to English."""
        with pytest.raises(UnknownLanguageError):
            render_email("password_changed", "de", to="a@example.kz", site=SITE, time="now")

    def test_catalog_of_another_language(self) -> None:
        """Passing a Russian catalog for a Kazakh letter is a mistake."""
        with pytest.raises(ValueError, match="does not match"):
            render_email(
                "password_changed",
                "kk",
                to="a@example.kz",
                catalog=get_catalog("ru"),
                site=SITE,
                time="now",
            )
        with pytest.raises(TypeError, match="Catalog"):
            render_email(
                "password_changed",
                "kk",
                to="a@example.kz",
                catalog=cast(Catalog, {}),
                site=SITE,
                time="now",
            )


# A host's override file. Its msgids are normally copied from kaspi_identity.pot; the catalog
# only checks that each translation uses no placeholder its msgid lacks.
HOST_OVERRIDE = """
msgctxt "email.password_reset.subject"
msgid "Reset your {site} password"
msgstr "Восстановление доступа к порталу {site}"

msgctxt "email.password_reset.text"
msgid "{link} {minutes} {site}"
msgid_plural "{link} {minutes} {site}"
msgstr[0] "Ссылка для нового пароля (действует {minutes} минуту): {link}"
msgstr[1] "Ссылка для нового пароля (действует {minutes} минуты): {link}"
msgstr[2] "Ссылка для нового пароля (действует {minutes} минут): {link}"
"""


class TestHostOverride:
    def test_override_via_from_po_text(self) -> None:
        """A host replaces a template with its own .po text; other templates stay shipped."""
        ru = Catalog.from_po_text(HOST_OVERRIDE, base=get_catalog("ru"), source="host.po")
        message = render_email(
            "password_reset",
            "ru",
            to="a@example.kz",
            catalog=ru,
            link=LINK,
            minutes=30,
            site=SITE,
        )
        assert "Восстановление доступа к порталу goszakup.gov.kz" == message.subject
        assert f"Ссылка для нового пароля (действует 30 минут): {LINK}" == message.text
        shipped = render_email(
            "password_changed", "ru", to="a@example.kz", catalog=ru, site=SITE, time="now"
        )
        assert (
            shipped.text
            == render_email("password_changed", "ru", to="a@example.kz", site=SITE, time="now").text
        )

    def test_override_that_drops_the_link_is_refused(self) -> None:
        """A template that forgets {link} would send a useless letter: refused at render."""
        po = (
            'msgctxt "email.confirm_email.text"\n'
            'msgid "{link} {hours} {site}"\nmsgid_plural "{link} {hours} {site}"\n'
            'msgstr[0] "Подтвердите адрес."\nmsgstr[1] "Подтвердите адрес."\n'
            'msgstr[2] "Подтвердите адрес."\n'
        )
        ru = Catalog.from_po_text(po, base=get_catalog("ru"))
        with pytest.raises(ValueError, match=r"must show \{link\}") as info:
            render_email(
                "confirm_email", "ru", to="a@example.kz", catalog=ru, link=LINK, hours=1, site=SITE
            )
        assert "SECRET" not in str(info.value)

    def test_sms_override(self) -> None:
        """SMS templates are overridden the same way."""
        po = (
            'msgctxt "sms.reset_code.text_no_site"\n'
            'msgid "{code} {minutes}"\nmsgid_plural "{code} {minutes}"\n'
            'msgstr[0] "Код: {code}"\nmsgstr[1] "Код: {code}"\n'
        )
        kk = Catalog.from_po_text(po, base=get_catalog("kk"))
        message = render_sms("reset_code", "kk", to=PHONE, catalog=kk, code=CODE, minutes=5)
        assert f"Код: {CODE}" == message.text


# Site names of real length: none, short, a government domain, and an absurdly long one.
SITES = [None, "Kaspi.kz", "egov.kz", "goszakup.gov.kz", "e-procurement.portal.example.gov.kz"]
# Every code render_sms accepts (6 to 10 digits) and every lifetime the services can ask for
# (IdentitySettings.sms_code_lifetime is at most 10 minutes), plus longer ones a host may pass.
CODES = ["123456", "1234567", "12345678", "123456789", "1234567890"]
LIFETIMES = [*range(1, 11), 15, 30, 60, 100, 999]
# Characters of the 70 (UCS-2) or 160 (GSM-7) that the worst case must leave free.
SPARE = 4


def segment_size(text: str) -> int:
    """Characters one SMS segment holds for this text's encoding."""
    return 160 if "GSM-7" == sms_encoding(text) else 70


class TestRenderSms:
    @pytest.mark.parametrize("site", SITES)
    @pytest.mark.parametrize("minutes", LIFETIMES)
    @pytest.mark.parametrize("code", CODES)
    @pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
    def test_every_code_and_lifetime_is_one_segment(
        self, language: str, code: str, minutes: int, site: str | None
    ) -> None:
        """Every allowed code length and lifetime, with or without a site: one segment, sent."""
        message = render_sms(
            "reset_code", language, to=PHONE, code=code, minutes=minutes, site=site
        )
        assert 1 == sms_segments(message.text)
        assert code == extract_code(message)
        assert f"{minutes} " in message.text
        assert "{" not in message.text
        assert (PHONE, "reset_code", language) == (message.to, message.kind, message.language)

    @pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
    def test_worst_case_leaves_room(self, language: str) -> None:
        """10 digits and the services' longest lifetime (10 minutes) leave SPARE characters free."""
        for minutes in range(1, 11):
            text = get_catalog(language).message(
                "sms.reset_code.text_no_site", count=minutes, code="1234567890", minutes=minutes
            )
            assert len(text) <= segment_size(text) - SPARE, text

    @pytest.mark.parametrize("minutes", [1, 5, 10])
    @pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
    def test_validity_is_stated(self, language: str, minutes: int) -> None:
        """The text says how long the code works, in words a reader expects."""
        message = render_sms("reset_code", language, to=PHONE, code=CODE, minutes=minutes)
        phrase = {
            "en": f"Valid for {minutes} minute",
            "ru": f"действует {minutes} мин.",
            "kk": f"{minutes} мин жарамды.",
        }[language]
        assert phrase in message.text

    def test_english_is_gsm7_and_keeps_the_site(self) -> None:
        """English stays in the 7-bit alphabet (160 characters) and names the site first."""
        message = render_sms("reset_code", "en", to=PHONE, code=CODE, minutes=10, site=SITE)
        expected = (
            f"{SITE}: {CODE} is your password reset code. Valid for 10 minutes. Do not share it."
        )
        assert expected == message.text
        assert "GSM-7" == sms_encoding(message.text)

    @pytest.mark.parametrize("language", ["ru", "kk"])
    def test_cyrillic_keeps_a_short_site_and_drops_a_long_one(self, language: str) -> None:
        """With a 6-digit code and 5 minutes "egov.kz" fits, "goszakup.gov.kz" does not."""
        short = render_sms(
            "reset_code", language, to=PHONE, code="123456", minutes=5, site="egov.kz"
        )
        long = render_sms("reset_code", language, to=PHONE, code="123456", minutes=5, site=SITE)
        assert short.text.startswith("egov.kz: ")
        assert SITE not in long.text
        assert "UCS-2" == sms_encoding(long.text)

    def test_texts(self) -> None:
        """The Russian and Kazakh texts read as agreed."""
        ru = render_sms("reset_code", "ru", to=PHONE, code=CODE, minutes=10)
        kk = render_sms("reset_code", "kk", to=PHONE, code=CODE, minutes=10)
        assert f"Код восстановления {CODE} действует 10 мин. Не сообщайте его." == ru.text
        assert f"Қалпына келтіру коды {CODE}, 10 мин жарамды. Ешкімге айтпаңыз." == kk.text
        kaspi = render_sms("reset_code", "ru", to=PHONE, code="123456", minutes=5, site="Kaspi.kz")
        assert (
            "Kaspi.kz: код восстановления 123456 действует 5 мин. Не сообщайте его." == kaspi.text
        )

    @pytest.mark.parametrize(
        ("minutes", "phrase"), [(1, "1 minute."), (2, "2 minutes."), (10, "10 minutes.")]
    )
    def test_english_minutes(self, minutes: int, phrase: str) -> None:
        """The English lifetime follows the plural rule (Russian and Kazakh write "мин")."""
        message = render_sms("reset_code", "en", to=PHONE, code=CODE, minutes=minutes)
        assert f"Valid for {phrase}" in message.text

    def test_site_none_is_absent(self) -> None:
        """site=None is the same as no site."""
        with_none = render_sms("reset_code", "en", to=PHONE, code=CODE, minutes=5, site=None)
        without = render_sms("reset_code", "en", to=PHONE, code=CODE, minutes=5)
        assert with_none == without

    def test_max_segments_none_keeps_a_long_site(self) -> None:
        """Without the one-segment limit the site stays, even in two segments."""
        message = render_sms(
            "reset_code", "ru", to=PHONE, code=CODE, minutes=10, site=SITE, max_segments=None
        )
        assert SITE in message.text
        assert 2 == sms_segments(message.text)

    def test_too_long_template_is_refused_without_the_code(self) -> None:
        """A host template that cannot fit is an error at render time, not a costly SMS."""
        long = "Ваш одноразовый код для восстановления пароля: {code}. Никому его не сообщайте."
        po = (
            'msgctxt "sms.reset_code.text_no_site"\n'
            'msgid "{code} {minutes}"\nmsgid_plural "{code} {minutes}"\n'
            f'msgstr[0] "{long}"\nmsgstr[1] "{long}"\nmsgstr[2] "{long}"\n'
        )
        ru = Catalog.from_po_text(po, base=get_catalog("ru"))
        with pytest.raises(ValueError, match="needs 2 SMS segments") as info:
            render_sms("reset_code", "ru", to=PHONE, catalog=ru, code=CODE, minutes=10)
        assert CODE not in str(info.value)
        message = render_sms(
            "reset_code", "ru", to=PHONE, catalog=ru, code=CODE, minutes=10, max_segments=2
        )
        assert CODE == extract_code(message)

    @pytest.mark.parametrize("code", ["12345", "12 345 678", "1234567890123", "١٢٣٤٥٦", ""])
    def test_code_must_be_digits(self, code: str) -> None:
        """A code is 6 to 10 ASCII digits; the error does not repeat it."""
        with pytest.raises(ValueError, match="code") as info:
            render_sms("reset_code", "en", to=PHONE, code=code, minutes=5)
        assert code not in str(info.value) or not code

    @pytest.mark.parametrize(
        ("params", "error"),
        [
            ({"code": 12345678, "minutes": 5}, TypeError),
            ({"code": CODE}, TypeError),
            ({"code": CODE, "minutes": 5, "link": LINK}, TypeError),
            ({"code": CODE, "minutes": 5, "max_segments": 0}, ValueError),
            ({"code": CODE, "minutes": 5, "max_segments": True}, ValueError),
        ],
    )
    def test_parameter_errors(self, params: dict[str, object], error: type[Exception]) -> None:
        """Wrong or missing parameters are refused."""
        with pytest.raises(error):
            render_sms("reset_code", "en", to=PHONE, **params)  # type: ignore[arg-type]

    def test_unknown_kind_and_bad_number(self) -> None:
        """Unknown kinds and non-E.164 numbers are ValueErrors."""
        with pytest.raises(ValueError, match="unknown SMS kind"):
            render_sms("login_code", "en", to=PHONE, code=CODE, minutes=5)
        with pytest.raises(ValueError, match=r"E\.164"):
            render_sms("reset_code", "en", to="87011234567", code=CODE, minutes=5)


class TestSmsSegments:
    """Known answers from 3GPP TS 23.038 (alphabet) and TS 23.040 (153/67 per part)."""

    @pytest.mark.parametrize(
        ("text", "segments"),
        [
            ("", 1),
            ("a" * 160, 1),
            ("a" * 161, 2),
            ("a" * 306, 2),
            ("a" * 307, 3),
            ("€" * 80, 1),  # 160 septets: the euro sign is escape + character
            ("€" * 81, 2),
            ("a" * 159 + "€", 2),  # 161 septets
            ("{}" * 40, 1),
            ("a" * 152 + "€" + "a" * 152, 3),  # 306 septets, but € never splits from its escape
            ("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ!\"#¤%&'()*+,-./:;<=>?¡ÄÖÑÜ§¿äöñüà\n\r", 1),
        ],
    )
    def test_gsm7(self, text: str, segments: int) -> None:
        """GSM-7: 160 septets, then parts of 153; extension characters count two."""
        assert "GSM-7" == sms_encoding(text)
        assert segments == sms_segments(text)

    @pytest.mark.parametrize(
        ("text", "segments"),
        [
            ("ж" * 70, 1),
            ("ж" * 71, 2),
            ("ж" * 134, 2),
            ("ж" * 135, 3),
            ("a" * 69 + "ә", 1),
            ("a" * 70 + "ә", 2),  # one Kazakh letter turns the whole text into UCS-2
            ("😀" * 35, 1),  # an emoji is a surrogate pair: two code units
            ("😀" * 36, 2),
            ("ж" * 66 + "😀" + "ж" * 66, 3),  # 134 units, but a pair never splits
            ("ç", 1),  # lower-case c-cedilla is not in the GSM alphabet
        ],
    )
    def test_ucs2(self, text: str, segments: int) -> None:
        """UCS-2: 70 code units, then parts of 67."""
        assert "UCS-2" == sms_encoding(text)
        assert segments == sms_segments(text)

    @pytest.mark.parametrize("char", ["’", "—", "«", "`", "ą", "\t"])
    def test_lookalikes_are_not_gsm7(self, char: str) -> None:
        """Typographic quotes, dashes and a backtick force UCS-2: keep them out of Latin SMS."""
        assert "UCS-2" == sms_encoding(f"Code {CODE}{char}")

    def test_type(self) -> None:
        """Only str is measured."""
        with pytest.raises(TypeError):
            sms_segments(cast(str, b"abc"))
        with pytest.raises(TypeError):
            sms_encoding(cast(str, None))
