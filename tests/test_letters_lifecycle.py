"""The letters and SMS of the account lifecycle: e-mail change (with undo) and phone changes.

tests/test_delivery.py renders every kind in every language; this module pins what the new
kinds say, their parameters, their plural forms and the SMS segment limits.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaspi_identity.delivery import (
    EMAIL_KINDS,
    SMS_KINDS,
    extract_code,
    extract_link,
    render_email,
    render_sms,
    sms_encoding,
    sms_segments,
)
from kaspi_identity.i18n import SUPPORTED_LANGUAGES, get_catalog
from kaspi_identity.phone import mask_phone

SITE = "goszakup.gov.kz"
TO = "aliya@example.kz"
PHONE = "+77011234567"
CONFIRM_LINK = "https://portal.example.kz/email/confirm/SECRET-TOKEN-0123456789"
UNDO_LINK = "https://portal.example.kz/email/undo/SECRET-TOKEN-9876543210"
RESET_PAGE = "https://portal.example.kz/forgot-password"
TIME = "2026-11-23 21:00 UTC+05:00"
MASKED = "+7 701 *** ** 67"

NEW_EMAIL_KINDS = (
    "email_change_confirm",
    "email_change_taken",
    "email_changed",
    "phone_changed",
    "phone_removed",
)
NEW_SMS_NOTICES = ("phone_in_use", "email_changed", "phone_changed", "phone_removed")

# The parameters of each new letter, as the services pass them.
PARAMS: dict[str, dict[str, Any]] = {
    "email_change_confirm": {"link": CONFIRM_LINK, "hours": 24, "site": SITE},
    "email_change_taken": {"site": SITE, "reset_link": RESET_PAGE},
    "email_changed": {"site": SITE, "time": TIME, "undo_link": UNDO_LINK, "days": 3},
    "phone_changed": {"site": SITE, "time": TIME, "phone": MASKED},
    "phone_removed": {"site": SITE, "time": TIME},
}
# The link each letter must show, by parameter name.
LINKS = {
    "email_change_confirm": "link",
    "email_change_taken": "reset_link",
    "email_changed": "undo_link",
}
# Parameters of the wrong type, for each kind of parameter.
WRONG_TYPES: dict[str, list[object]] = {
    "link": [None, b"https://portal.example.kz/x", 5],
    "reset_link": [None, b"https://portal.example.kz/x"],
    "undo_link": [None, b"https://portal.example.kz/x"],
    "site": [None, b"portal", 5],
    "time": [None, b"now", 1700000000],
    "phone": [None, b"+7 701 *** ** 67", 77011234567],
    "hours": [None, "24", 24.0, True],
    "days": [None, "3", 3.0, True],
}

# Sites of real length: none, short, a government domain, and an absurdly long one.
SITES = [None, "Kaspi.kz", "egov.kz", SITE, "e-procurement.portal.example.gov.kz"]
CODES = ["123456", "1234567", "12345678", "123456789", "1234567890"]


def letter(kind: str, language: str, **changes: Any) -> Any:
    """Render a new letter with its usual parameters, some changed."""
    params = dict(PARAMS[kind], **changes)
    return render_email(kind, language, to=TO, catalog=None, **params)


class TestKinds:
    def test_new_kinds_are_listed(self) -> None:
        """EMAIL_KINDS and SMS_KINDS end with the kinds of the lifecycle flows."""
        assert NEW_EMAIL_KINDS == EMAIL_KINDS[-len(NEW_EMAIL_KINDS) :]
        assert ("phone_code", *NEW_SMS_NOTICES) == SMS_KINDS[-5:]

    @pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
    def test_every_key_is_in_every_catalog(self, language: str) -> None:
        """Each new kind has a subject and body (letters) or both SMS variants."""
        keys = get_catalog(language).keys()
        for kind in NEW_EMAIL_KINDS:
            assert {f"email.{kind}.subject", f"email.{kind}.text"} <= keys
        for kind in ("phone_code", *NEW_SMS_NOTICES):
            assert {f"sms.{kind}.text", f"sms.{kind}.text_no_site"} <= keys

    def test_docstrings_name_every_kind(self) -> None:
        """render_email / render_sms document each kind they accept."""
        for kind in EMAIL_KINDS:
            assert f"``{kind}``" in (render_email.__doc__ or ""), kind
        for kind in SMS_KINDS:
            assert f"``{kind}``" in (render_sms.__doc__ or ""), kind


class TestLetters:
    @pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
    @pytest.mark.parametrize("kind", NEW_EMAIL_KINDS)
    def test_renders(self, kind: str, language: str) -> None:
        """Each letter renders: site in subject and body, link once on its own line, sign-off."""
        message = letter(kind, language)
        assert (kind, language, TO) == (message.kind, message.language, message.to)
        assert SITE in message.subject
        assert SITE in message.text
        for part in (message.subject, message.text):
            assert "{" not in part
            assert "}" not in part
        if kind in LINKS:
            link = PARAMS[kind][LINKS[kind]]
            assert link == extract_link(message)
            assert 1 == message.text.count(link)
            assert f"\n\n{link}\n\n" in message.text
        else:
            assert "https://" not in message.text
        if "time" in PARAMS[kind]:
            assert TIME in message.text
        sign_off = {"en": "Kind regards", "ru": "С уважением", "kk": "Құрметпен"}[language]
        assert message.text.endswith(f"\n\n{sign_off}, {SITE}")

    @pytest.mark.parametrize(
        ("language", "phrases"),
        [
            (
                "en",
                [
                    "Someone, hopefully you, asked to make this the e-mail address of their "
                    "goszakup.gov.kz account.",
                    "The link is valid for 24 hours.",
                    "If it was not you, ignore this letter: nothing will change.",
                ],
            ),
            (
                "ru",
                [
                    "Кто-то — надеемся, что Вы — указал этот адрес электронной почты как новый "
                    "адрес своей учётной записи на сайте goszakup.gov.kz.",
                    "перейдите по ссылке:",
                    "Ссылка действует 24 часа.",
                    "просто проигнорируйте это письмо: ничего не изменится.",
                ],
            ),
            (
                "kk",
                [
                    "Біреу (Сіз болар деп үміттенеміз) осы электрондық пошта мекенжайын "
                    "goszakup.gov.kz сайтындағы өз тіркелгісінің жаңа мекенжайы ретінде көрсетті.",
                    "Сілтеме 24 сағат бойы жарамды.",
                    "бұл хатты елемеңіз: ештеңе өзгермейді.",
                ],
            ),
        ],
    )
    def test_email_change_confirm_wording(self, language: str, phrases: list[str]) -> None:
        """The letter to the new address asks to confirm and says nothing changes otherwise."""
        text = letter("email_change_confirm", language).text
        for phrase in phrases:
            assert phrase in text

    @pytest.mark.parametrize(
        ("language", "subject", "phrases"),
        [
            (
                "en",
                "Your e-mail address was given for another goszakup.gov.kz account",
                [
                    "This address already belongs to an account, so nothing was changed.",
                    "If it was you and you have forgotten your password",
                    "your account and password stay unchanged.",
                ],
            ),
            (
                "ru",
                "goszakup.gov.kz: Ваш адрес электронной почты указали для другой учётной записи",
                [
                    "С этим адресом уже есть учётная запись, поэтому ничего не изменено.",
                    "Если это были Вы и Вы забыли пароль, задайте новый на этой странице:",
                    "Ваша учётная запись и пароль остались прежними.",
                ],
            ),
            (
                "kk",
                "goszakup.gov.kz: Сіздің электрондық пошта мекенжайыңыз басқа тіркелгіге "
                "көрсетілді",
                [
                    "Бұл мекенжаймен тіркелгі бұрыннан бар, сондықтан ештеңе өзгертілмеді.",
                    "құпиясөзіңізді ұмытып қалсаңыз",
                    "тіркелгіңіз бен құпиясөзіңіз өзгерген жоқ.",
                ],
            ),
        ],
    )
    def test_email_change_taken_wording(
        self, language: str, subject: str, phrases: list[str]
    ) -> None:
        """The letter to a new address that has its own account: nothing changed, reset link."""
        message = letter("email_change_taken", language)
        assert subject == message.subject
        for phrase in phrases:
            assert phrase in message.text

    @pytest.mark.parametrize(
        ("language", "phrases"),
        [
            (
                "en",
                [
                    "The e-mail address of your goszakup.gov.kz account was changed to another "
                    "one.",
                    f"\n\nDate and time: {TIME}\n\n",
                    "If it was not you, open this link:",
                    "It gives your account this address back and ends every session of your "
                    "account.",
                    'the "Forgot password?" link on the goszakup.gov.kz sign-in page',
                ],
            ),
            (
                "ru",
                [
                    "Адрес электронной почты Вашей учётной записи на сайте goszakup.gov.kz был "
                    "изменён на другой.",
                    f"\n\nДата и время: {TIME}\n\n",
                    "Если это были не Вы, перейдите по ссылке:",
                    "Она вернёт Вашей учётной записи этот адрес и завершит все её сеансы.",
                    "с помощью ссылки «Забыли пароль?»",
                ],
            ),
            (
                "kk",
                [
                    "goszakup.gov.kz сайтындағы тіркелгіңіздің электрондық пошта мекенжайы "
                    "басқасына өзгертілді.",
                    f"\n\nКүні мен уақыты: {TIME}\n\n",
                    "Егер бұл Сіз болмасаңыз, мына сілтемені ашыңыз:",
                    "Ол тіркелгіңізге осы мекенжайды қайтарады және оның барлық сеанстарын "
                    "аяқтайды.",
                    "«Құпиясөзді ұмыттыңыз ба?» сілтемесі арқылы жаңа құпиясөз орнатыңыз",
                ],
            ),
        ],
    )
    def test_email_changed_wording(self, language: str, phrases: list[str]) -> None:
        """The notice to the old address: when, the undo link, and what the link does."""
        text = letter("email_changed", language).text
        for phrase in phrases:
            assert phrase in text
        assert "@" not in text  # no address at all, least of all the new one

    def test_email_changed_has_no_parameter_for_the_new_address(self) -> None:
        """The new address cannot be put into the letter to the old one."""
        with pytest.raises(TypeError, match="unexpected new_email"):
            letter("email_changed", "en", new_email="eve@example.kz")

    @pytest.mark.parametrize(
        ("language", "phrases"),
        [
            (
                "en",
                [
                    f"Your goszakup.gov.kz account has a new mobile phone number: {MASKED}\n\n",
                    "reset your password at once",
                    "contact goszakup.gov.kz support.",
                ],
            ),
            (
                "ru",
                [
                    "У Вашей учётной записи на сайте goszakup.gov.kz новый номер мобильного "
                    f"телефона: {MASKED}\n\n",
                    "немедленно восстановите пароль",
                    "обратитесь в службу поддержки.",
                ],
            ),
            (
                "kk",
                [
                    "goszakup.gov.kz сайтындағы тіркелгіңізге жаңа ұялы телефон нөмірі "
                    f"орнатылды: {MASKED}\n\n",
                    "құпиясөзді дереу қалпына келтіріңіз",
                    "қолдау қызметіне хабарласыңыз.",
                ],
            ),
        ],
    )
    def test_phone_changed_wording(self, language: str, phrases: list[str]) -> None:
        """The notice of a new phone number shows it masked, then what to do if not you."""
        text = letter("phone_changed", language).text
        for phrase in phrases:
            assert phrase in text

    @pytest.mark.parametrize(
        ("language", "phrase"),
        [
            ("en", "The mobile phone number was removed from your goszakup.gov.kz account."),
            ("ru", "Номер мобильного телефона удалён из Вашей учётной записи на сайте "),
            ("kk", "goszakup.gov.kz сайтындағы тіркелгіңізден ұялы телефон нөмірі жойылды."),
        ],
    )
    def test_phone_removed_wording(self, language: str, phrase: str) -> None:
        """The notice of a removed phone number."""
        assert phrase in letter("phone_removed", language).text

    def test_phone_from_mask_phone(self) -> None:
        """The number the services mask is accepted as it comes from mask_phone."""
        message = letter("phone_changed", "en", phone=mask_phone(PHONE))
        assert MASKED in message.text
        assert "1234567" not in message.text

    @pytest.mark.parametrize("phone", [PHONE, "+7 701 123 45 67", "87011234567"])
    def test_unmasked_phone_is_refused_without_quoting_it(self, phone: str) -> None:
        """A full number is a programming error: refused, and the error does not repeat it."""
        with pytest.raises(ValueError, match="masked") as info:
            letter("phone_changed", "en", phone=phone)
        assert "1234567" not in str(info.value)
        assert "45 67" not in str(info.value)

    def test_aware_datetime(self) -> None:
        """A time given as an aware datetime is shown in its own offset, as for the others."""
        almaty = timezone(timedelta(hours=5))
        moment = datetime(2026, 11, 23, 21, 0, tzinfo=almaty)
        for kind in ("email_changed", "phone_changed", "phone_removed"):
            assert TIME in letter(kind, "kk", time=moment).text
            with pytest.raises(ValueError, match="timezone-aware"):
                letter(kind, "kk", time=moment.replace(tzinfo=None))

    @pytest.mark.parametrize("language", ["ru", "kk"])
    @pytest.mark.parametrize("kind", NEW_EMAIL_KINDS)
    def test_russian_and_kazakh_are_translated(self, kind: str, language: str) -> None:
        """No ru/kk letter is the English one, and Russian never says "сброс"."""
        english = letter(kind, "en")
        message = letter(kind, language)
        assert english.subject != message.subject
        assert english.text != message.text
        assert "сброс" not in (message.subject + message.text).lower()
        assert "құпия сөз" not in message.text.lower()


class TestPlurals:
    @pytest.mark.parametrize(
        ("language", "days", "phrase"),
        [
            ("en", 1, "The link is valid for 1 day."),
            ("en", 2, "The link is valid for 2 days."),
            ("en", 21, "The link is valid for 21 days."),
            ("ru", 1, "Ссылка действует 1 день."),
            ("ru", 2, "Ссылка действует 2 дня."),
            ("ru", 5, "Ссылка действует 5 дней."),
            ("ru", 7, "Ссылка действует 7 дней."),
            ("ru", 21, "Ссылка действует 21 день."),
            ("ru", 22, "Ссылка действует 22 дня."),
            ("kk", 1, "Сілтеме 1 күн бойы жарамды."),
            ("kk", 2, "Сілтеме 2 күн бойы жарамды."),
            ("kk", 5, "Сілтеме 5 күн бойы жарамды."),
            ("kk", 21, "Сілтеме 21 күн бойы жарамды."),
        ],
    )
    def test_days(self, language: str, days: int, phrase: str) -> None:
        """The undo link's lifetime follows each language's plural rule (kk: no inflection)."""
        assert phrase in letter("email_changed", language, days=days).text

    @pytest.mark.parametrize(
        ("language", "hours", "phrase"),
        [
            ("en", 1, "valid for 1 hour."),
            ("en", 24, "valid for 24 hours."),
            ("ru", 1, "действует 1 час."),
            ("ru", 2, "действует 2 часа."),
            ("ru", 5, "действует 5 часов."),
            ("ru", 21, "действует 21 час."),
            ("kk", 1, "1 сағат бойы жарамды."),
            ("kk", 24, "24 сағат бойы жарамды."),
        ],
    )
    def test_hours(self, language: str, hours: int, phrase: str) -> None:
        """The confirmation link's lifetime follows the plural rule."""
        assert phrase in letter("email_change_confirm", language, hours=hours).text

    @pytest.mark.parametrize("kind", ["email_changed", "email_change_confirm"])
    def test_negative_count_is_refused(self, kind: str) -> None:
        """A lifetime below zero is a ValueError."""
        count = "days" if kind == "email_changed" else "hours"
        with pytest.raises(ValueError, match=">= 0"):
            letter(kind, "ru", **{count: -1})


def _required_params() -> list[tuple[str, str]]:
    return [(kind, name) for kind in NEW_EMAIL_KINDS for name in PARAMS[kind]]


def _wrong_types() -> list[tuple[str, str, object]]:
    return [
        (kind, name, value)
        for kind in NEW_EMAIL_KINDS
        for name in PARAMS[kind]
        for value in WRONG_TYPES[name]
    ]


class TestLetterParameters:
    @pytest.mark.parametrize(("kind", "name"), _required_params())
    def test_missing(self, kind: str, name: str) -> None:
        """Every parameter is required: leaving one out is a TypeError naming it."""
        params = {k: v for k, v in PARAMS[kind].items() if k != name}
        with pytest.raises(TypeError, match=f"missing {name}"):
            render_email(kind, "en", to=TO, catalog=None, **params)

    @pytest.mark.parametrize("kind", NEW_EMAIL_KINDS)
    @pytest.mark.parametrize("extra", ["code", "minutes", "phone", "link", "email"])
    def test_unexpected(self, kind: str, extra: str) -> None:
        """A parameter the kind does not take is a TypeError naming it."""
        if extra in PARAMS[kind]:
            return
        with pytest.raises(TypeError, match=f"unexpected {extra}"):
            letter(kind, "en", **{extra: "x"})

    @pytest.mark.parametrize(("kind", "name", "value"), _wrong_types())
    def test_wrong_type(self, kind: str, name: str, value: object) -> None:
        """None, bytes, numbers for text and non-ints (bool too) for counts are TypeErrors."""
        with pytest.raises(TypeError, match=name):
            letter(kind, "en", **{name: value})

    @pytest.mark.parametrize("kind", NEW_EMAIL_KINDS)
    @pytest.mark.parametrize(
        ("value", "match"),
        [("", "empty"), ("   ", "empty"), ("a\x00b", "NUL|control"), ("a\ud800b", "surrogate")],
    )
    def test_unsendable_site(self, kind: str, value: str, match: str) -> None:
        """Empty, NUL and a lone surrogate give a ValueError, and no letter."""
        with pytest.raises(ValueError, match=match):
            letter(kind, "en", site=value)

    @pytest.mark.parametrize("kind", NEW_EMAIL_KINDS)
    def test_site_cannot_inject_headers(self, kind: str) -> None:
        """A site with CR/LF would break the subject: refused."""
        with pytest.raises(ValueError, match="subject"):
            letter(kind, "en", site="portal\r\nBcc: eve@example.kz")

    @pytest.mark.parametrize("kind", list(LINKS))
    @pytest.mark.parametrize(
        "link",
        [
            "http://portal.example.kz/SECRET",
            "javascript:alert('SECRET')",
            "https://portal.example.kz/SECRET more",
            "https://portal.example.kz/\nSECRET",
            "https://portal.example.kz/«SECRET»",
            "ftp://portal.example.kz/SECRET",
        ],
    )
    def test_links_must_be_https(self, kind: str, link: str) -> None:
        """Each link must be one https URL; the error does not repeat it."""
        name = LINKS[kind]
        with pytest.raises(ValueError, match=name) as info:
            letter(kind, "en", **{name: link})
        assert "SECRET" not in str(info.value)

    def test_http_only_in_development(self) -> None:
        """allow_insecure_http=True lets an http undo link through, as for the other links."""
        link = "http://127.0.0.1:8000/email/undo/abc"
        message = render_email(
            "email_changed",
            "en",
            to=TO,
            allow_insecure_http=True,
            **dict(PARAMS["email_changed"], undo_link=link),
        )
        assert link == extract_link(message)

    def test_huge_link_is_shown_once(self) -> None:
        """A 1 MB link is no reason to fail: it is shown once, whole."""
        link = "https://portal.example.kz/email/confirm/" + "A" * 1_000_000
        message = letter("email_change_confirm", "kk", link=link)
        assert 1 == message.text.count(link)


class TestSms:
    @pytest.mark.parametrize("site", SITES)
    @pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
    def test_every_code_length_and_lifetime_is_one_segment(
        self, language: str, site: str | None
    ) -> None:
        """phone_code: every code of 6-10 digits and lifetime 0-999 fits one SMS, code once."""
        for code in CODES:
            for minutes in range(1000):
                message = render_sms(
                    "phone_code", language, to=PHONE, code=code, minutes=minutes, site=site
                )
                assert 1 == sms_segments(message.text), message.text
                assert 1 == message.text.count(code)
                assert code == extract_code(message)
                assert f"{minutes} " in message.text
                assert "{" not in message.text

    @pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
    def test_worst_case_leaves_room(self, language: str) -> None:
        """10 digits and 10 minutes (the services' longest) leave 4 characters free."""
        for minutes in range(1, 11):
            text = get_catalog(language).message(
                "sms.phone_code.text_no_site", count=minutes, code="1234567890", minutes=minutes
            )
            size = 160 if "GSM-7" == sms_encoding(text) else 70
            assert len(text) <= size - 4, text

    @pytest.mark.parametrize(
        ("language", "expected"),
        [
            (
                "en",
                "12345678 is your code to add this phone number to your account. Valid for "
                "10 minutes. Do not share it.",
            ),
            ("ru", "Код привязки номера 12345678 действует 10 мин. Не сообщайте его."),
            ("kk", "Нөмірді қосу коды 12345678, 10 мин жарамды. Ешкімге айтпаңыз."),
        ],
    )
    def test_phone_code_text(self, language: str, expected: str) -> None:
        """The code says what it is for (adding the number) and not to share it."""
        message = render_sms("phone_code", language, to=PHONE, code="12345678", minutes=10)
        assert expected == message.text
        assert ("phone_code", language, PHONE) == (message.kind, message.language, message.to)

    @pytest.mark.parametrize(
        ("minutes", "word"), [(1, "minute."), (2, "minutes."), (5, "minutes.")]
    )
    def test_english_minutes(self, minutes: int, word: str) -> None:
        """English follows the plural rule; Russian and Kazakh write "мин"."""
        message = render_sms("phone_code", "en", to=PHONE, code="123456", minutes=minutes)
        assert f"Valid for {minutes} {word}" in message.text

    def test_site_prefix(self) -> None:
        """English keeps the site in front; Cyrillic keeps only a very short one."""
        en = render_sms("phone_code", "en", to=PHONE, code="123456", minutes=5, site=SITE)
        assert en.text.startswith(f"{SITE}: 123456 is your code")
        assert "GSM-7" == sms_encoding(en.text)
        ru = render_sms("phone_code", "ru", to=PHONE, code="123456", minutes=5, site="egov.kz")
        assert "egov.kz: код привязки номера 123456 действует 5 мин. Не сообщайте его." == ru.text
        long = render_sms("phone_code", "kk", to=PHONE, code="123456", minutes=5, site=SITE)
        assert SITE not in long.text

    @pytest.mark.parametrize("code", ["12345", "1234567890123", "12 345 678", "١٢٣٤٥٦", ""])
    def test_bad_code_is_refused_without_quoting_it(self, code: str) -> None:
        """A code is 6 to 10 ASCII digits; the error does not repeat it."""
        with pytest.raises(ValueError, match="code") as info:
            render_sms("phone_code", "ru", to=PHONE, code=code, minutes=5)
        assert not code or code not in str(info.value)

    @pytest.mark.parametrize(
        "params",
        [
            {"code": 12345678, "minutes": 5},
            {"code": b"12345678", "minutes": 5},
            {"code": None, "minutes": 5},
            {"code": "12345678"},
            {"minutes": 5},
            {"code": "12345678", "minutes": "5"},
            {"code": "12345678", "minutes": True},
            {"code": "12345678", "minutes": 5, "link": "https://portal.example.kz/"},
            {"code": "12345678", "minutes": 5, "site": b"portal"},
        ],
    )
    def test_phone_code_parameter_errors(self, params: dict[str, object]) -> None:
        """Missing, unexpected and mistyped parameters are TypeErrors."""
        with pytest.raises(TypeError):
            render_sms("phone_code", "en", to=PHONE, catalog=None, max_segments=1, **params)

    @pytest.mark.parametrize(
        ("kind", "texts"),
        [
            (
                "phone_in_use",
                (
                    "Someone tried to add this phone number to another account. Nothing was "
                    "changed; if it was you, ignore this SMS.",
                    "Номер пытались привязать к другой учётной записи. Ничего не изменено.",
                    "Біреу бұл нөмірді басқа тіркелгіге қоспақ болды. Ештеңе өзгерген жоқ.",
                ),
            ),
            (
                "email_changed",
                (
                    "The e-mail address of your account was changed. Not you? See the letter "
                    "sent to your old address.",
                    "Адрес эл. почты изменён. Если это не Вы, см. письмо на прежний адрес.",
                    "Эл. пошта өзгертілді. Сіз болмасаңыз, бұрынғы поштаңызды қараңыз.",
                ),
            ),
            (
                "phone_changed",
                (
                    "This phone number was replaced by another one on your account. Not you? "
                    "Contact support.",
                    "Номер в учётной записи заменён другим. Не Вы? Обратитесь в поддержку.",
                    "Нөмір басқасына ауыстырылды. Сіз болмасаңыз, қолдау қызметіне жазыңыз.",
                ),
            ),
            (
                "phone_removed",
                (
                    "This phone number was removed from your account. Not you? Contact support.",
                    "Номер отвязан от учётной записи. Не Вы? Обратитесь в поддержку.",
                    "Нөмір тіркелгіден жойылды. Сіз болмасаңыз, қолдау қызметіне жазыңыз.",
                ),
            ),
        ],
    )
    def test_notice_texts(self, kind: str, texts: tuple[str, str, str]) -> None:
        """Each notice reads as agreed, in one segment, and says what to do if it was not you."""
        for language, expected in zip(("en", "ru", "kk"), texts, strict=True):
            message = render_sms(kind, language, to=PHONE)
            assert expected == message.text
            assert 1 == sms_segments(message.text)
            assert (kind, language) == (message.kind, message.language)

    @pytest.mark.parametrize("site", SITES)
    @pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
    @pytest.mark.parametrize("kind", NEW_SMS_NOTICES)
    def test_notice_with_site_is_one_segment(
        self, kind: str, language: str, site: str | None
    ) -> None:
        """With a site the notice has it in front when it fits, else it is text_no_site."""
        message = render_sms(kind, language, to=PHONE, site=site)
        no_site = get_catalog(language).message(f"sms.{kind}.text_no_site")
        assert 1 == sms_segments(message.text)
        assert message.text == no_site or (
            site is not None and message.text.startswith(f"{site}: ")
        )
        if language == "en" and site is not None:
            assert message.text.startswith(f"{site}: ")

    @pytest.mark.parametrize("kind", NEW_SMS_NOTICES)
    def test_notices_take_only_site(self, kind: str) -> None:
        """A notice carries no code, link or number: such a parameter is a TypeError."""
        for extra in ("code", "minutes", "phone", "link"):
            with pytest.raises(TypeError, match=f"unexpected {extra}"):
                render_sms(kind, "en", to=PHONE, **{extra: "x"})  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="site must be str"):
            render_sms(kind, "en", to=PHONE, site=b"portal")

    @given(
        kind=st.sampled_from(NEW_SMS_NOTICES),
        language=st.sampled_from(SUPPORTED_LANGUAGES),
        site=st.text(min_size=1, max_size=300).filter(lambda s: s.strip() and "\x00" not in s),
    )
    def test_any_site_gives_one_segment(self, kind: str, language: str, site: str) -> None:
        """Whatever the site name, a notice is one segment: the name is dropped if too long."""
        message = render_sms(kind, language, to=PHONE, site=site)
        assert 1 == sms_segments(message.text)

    @given(
        language=st.sampled_from(SUPPORTED_LANGUAGES),
        code=st.from_regex(r"[0-9]{6,10}", fullmatch=True),
        minutes=st.integers(min_value=0, max_value=999),
        site=st.none() | st.text(max_size=100).filter(lambda s: s.strip() and "\x00" not in s),
    )
    def test_any_code_is_sent_once(
        self, language: str, code: str, minutes: int, site: str | None
    ) -> None:
        """Every valid code is sent in one segment, shown exactly once when the site has none."""
        message = render_sms(
            "phone_code", language, to=PHONE, code=code, minutes=minutes, site=site
        )
        assert 1 == sms_segments(message.text)
        if site is None or code not in site:
            assert 1 == message.text.count(code)
