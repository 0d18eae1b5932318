"""Tests of kaspi_identity.phone: parsing to E.164, regions, mobile-only, masking, errors."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from typing import cast

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import kaspi_identity.phone as phone
from kaspi_identity._errors import KaspiIdentityError
from kaspi_identity.i18n import SUPPORTED_LANGUAGES, get_catalog, render
from kaspi_identity.phone import (
    PHONE_ERROR_REASONS,
    PHONE_KINDS,
    PHONE_MAX_LENGTH,
    InvalidPhoneError,
    PhoneNumber,
    mask_phone,
    parse_phone,
)

E164 = "+77011234567"
NBSP = "\u00a0"

# Every form of +7 701 123 45 67 a user in Kazakhstan may type or paste.
ACCEPTED_FORMS = [
    "+7 701 123 45 67",
    "8 (701) 123-45-67",
    "87011234567",
    "7011234567",
    "+77011234567",
    "+7-701-123-45-67",
    "8 701 1234567",
    "77011234567",  # the country code without "+": 11 digits cannot be a national number
    "+7 (701) 123 45 67",
    "+7 701 123-45-67",
    "8-701-123-45-67",
    "8.701.123.45.67",
    "8 701 123 4567",
    "(701) 123-45-67",
    "8 10 7 701 123 45 67",  # the CIS international prefix 8~10
    f"+7{NBSP}701{NBSP}123{NBSP}45{NBSP}67",
    "+7\u202f701\u202f123\u202f45\u202f67",
    "+7 701 123\u201345\u201367",
    f"  +7 701 123 45 67{NBSP} ",
    "\t87011234567\n",
]

# Prefixes of Kazakh mobile operators (Kcell, Beeline, Tele2/Altel, Activ, ...): every 7xx
# prefix phonenumbers' metadata gives the type MOBILE (703, 704 and 709 are unallocated,
# 751 is VoIP). TestDocumentedPrefixes keeps this list, docs/phone.md and phonenumbers agree.
KZ_MOBILE_PREFIXES = (
    "700",
    "701",
    "702",
    "705",
    "706",
    "707",
    "708",
    "747",
    "760",
    "761",
    "762",
    "763",
    "764",
    "771",
    "775",
    "776",
    "777",
    "778",
    "785",
)

ALMATY_LANDLINE = "+7 727 212 34 56"
ASTANA_LANDLINE = "8 7172 12 34 56"
MOSCOW_MOBILE = "+7 916 123 45 67"
KZ_AND_RU = ("KZ", "RU")
DOCS_PHONE = Path(__file__).resolve().parent.parent / "docs" / "phone.md"


def kz_formats(prefix: str, rest: str) -> list[str]:
    """The accepted ways to type the KZ number +7 ``prefix`` ``rest`` (7 digits)."""
    a, b, c = rest[:3], rest[3:5], rest[5:]
    return [
        f"+7 {prefix} {a} {b} {c}",
        f"8 ({prefix}) {a}-{b}-{c}",
        f"8{prefix}{rest}",
        f"{prefix}{rest}",
        f"+7{prefix}{rest}",
        f"+7-{prefix}-{a}-{b}-{c}",
        f"8 {prefix} {rest}",
        f"7{prefix}{rest}",
        f"{NBSP}+7{NBSP}{prefix}{NBSP}{a}{NBSP}{b}{NBSP}{c} ",
    ]


def reason_of(text: str, **kwargs: object) -> str:
    """The reason parse_phone gives for refusing ``text``."""
    with pytest.raises(InvalidPhoneError) as info:
        parse_phone(text, **kwargs)  # type: ignore[arg-type]
    return info.value.reason


class TestPublicSurface:
    def test_all_is_sorted_and_exact(self) -> None:
        """__all__ lists every public name of kaspi_identity.phone, in isort order."""
        imported = {"Collection", "Final", "KaspiIdentityError", "Literal", "TYPE_CHECKING"}
        imported |= {"annotations", "dataclass", "date", "field", "re", "get_catalog"}
        public = {name for name in vars(phone) if not name.startswith(("_", "@"))} - imported
        assert public == set(phone.__all__)
        constants = sorted(n for n in phone.__all__ if n.isupper())
        classes = sorted(n for n in phone.__all__ if n[0].isupper() and not n.isupper())
        functions = sorted(n for n in phone.__all__ if n[0].islower())
        assert constants + classes + functions == phone.__all__

    def test_every_public_name_has_a_docstring(self) -> None:
        """Every public class and function says what it is for."""
        names = ("InvalidPhoneError", "PhoneNumber", "mask_phone", "parse_phone")
        for name in (*names, "InvalidIinError", "Iin", "parse_iin"):
            assert getattr(phone, name).__doc__, name

    def test_error_is_in_the_tree(self) -> None:
        """InvalidPhoneError is a KaspiIdentityError and a ValueError."""
        assert issubclass(InvalidPhoneError, KaspiIdentityError)
        assert issubclass(InvalidPhoneError, ValueError)


class TestAcceptedFormats:
    @pytest.mark.parametrize("text", ACCEPTED_FORMS)
    def test_every_form_gives_the_same_e164(self, text: str) -> None:
        """Each accepted way of typing +7 701 123 45 67 gives +77011234567, KZ, mobile."""
        assert PhoneNumber(E164, "KZ", "mobile") == parse_phone(text)

    @pytest.mark.parametrize("prefix", KZ_MOBILE_PREFIXES)
    def test_every_kz_mobile_prefix(self, prefix: str) -> None:
        """Every Kazakh mobile operator prefix is a KZ mobile number."""
        number = parse_phone(f"8 {prefix} 555 66 77")
        assert (f"+7{prefix}5556677", "KZ", "mobile") == (
            number.e164,
            number.region,
            number.kind,
        )

    def test_str_is_e164(self) -> None:
        """str() of a parsed number is its E.164 form."""
        assert E164 == str(parse_phone("8 (701) 123-45-67"))

    def test_default_region_is_configurable(self) -> None:
        """A national number is read in the region given: 8 916 … is RU from RU and KZ alike."""
        both = ("KZ", "RU")
        from_ru = parse_phone("8 (916) 123-45-67", region="RU", allowed_regions=both)
        from_kz = parse_phone("8 (916) 123-45-67", region="KZ", allowed_regions=both)
        assert from_ru == from_kz == PhoneNumber("+79161234567", "RU", "mobile")

    def test_other_countries_with_plus(self) -> None:
        """A number with + is read in its own country, whatever the default region."""
        number = parse_phone("+380 50 123 4567", allowed_regions=("KZ", "UA"))
        assert PhoneNumber("+380501234567", "UA", "mobile") == number

    def test_region_codes_are_case_insensitive(self) -> None:
        """Region codes may be given in lower case."""
        assert E164 == parse_phone("87011234567", region="kz", allowed_regions=["kz"]).e164

    def test_fixed_line_or_mobile_is_accepted_for_sms(self) -> None:
        """Where the plan cannot tell mobile from landline (US), the number is accepted."""
        number = parse_phone("+1 202 555 0123", allowed_regions=("US",))
        assert ("US", "fixed_line_or_mobile") == (number.region, number.kind)


class TestCountryCodeWithoutPlus:
    """Eleven digits starting with 7, typed without "+", are +7 and the national number."""

    @pytest.mark.parametrize(
        "text",
        [
            "79161234567",
            "7 916 123 45 67",
            "7 (916) 123-45-67",
            "7-916-123-45-67",
            f"{NBSP}7{NBSP}916{NBSP}123{NBSP}45{NBSP}67 ",
        ],
    )
    def test_russian_mobile(self, text: str) -> None:
        """docs/phone.md: 79161234567 is the Russian +79161234567 when KZ and RU are allowed."""
        assert PhoneNumber("+79161234567", "RU", "mobile") == parse_phone(
            text, allowed_regions=KZ_AND_RU
        )

    @pytest.mark.parametrize("region", ["KZ", "RU", "kz", "ru"])
    def test_read_the_same_from_either_region(self, region: str) -> None:
        """Both regions of +7 read the eleven digits as country code + national number."""
        for text, expected in (
            ("79161234567", PhoneNumber("+79161234567", "RU", "mobile")),
            ("77011234567", PhoneNumber(E164, "KZ", "mobile")),
        ):
            assert expected == parse_phone(text, region=region, allowed_regions=KZ_AND_RU)

    def test_russian_mobile_refused_by_the_default_allow_list(self) -> None:
        """With ("KZ",) it is a valid Russian number of a region not allowed, not too long."""
        with pytest.raises(InvalidPhoneError) as info:
            parse_phone("79161234567")
        assert ("region_not_allowed", "RU") == (info.value.reason, info.value.region)

    def test_moscow_landline(self) -> None:
        """74951234567 is the Moscow landline +74951234567: not mobile, or accepted without."""
        with pytest.raises(InvalidPhoneError) as info:
            parse_phone("74951234567", allowed_regions=KZ_AND_RU)
        assert ("not_mobile", "RU", "fixed_line") == (
            info.value.reason,
            info.value.region,
            info.value.kind,
        )
        assert PhoneNumber("+74951234567", "RU", "fixed_line") == parse_phone(
            "7 495 123 45 67", allowed_regions=KZ_AND_RU, mobile_only=False
        )

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("71234567890", "invalid"),  # +7 123…: no number of either plan
            ("76001234567", "invalid"),
            ("7 727 123 45 67", "invalid"),  # Almaty numbers continue 727 2… or 3…
            ("7 701 123 45 678", "too_long"),
            ("7 916 123 45 678", "too_long"),
            ("7 701 123 45", "too_short"),
        ],
    )
    def test_reasons_otherwise(self, text: str, reason: str) -> None:
        """Eleven digits that are no +7 number are invalid; more or fewer, too long or short."""
        assert reason == reason_of(text, allowed_regions=KZ_AND_RU, mobile_only=False)

    def test_other_default_regions_are_not_affected(self) -> None:
        """Only in a region of +7 is a leading 7 the country code: from US it is no number."""
        with pytest.raises(InvalidPhoneError):
            parse_phone("79161234567", region="US", allowed_regions=("US", "RU"))

    @given(
        prefix=st.sampled_from(["700", "701", "747", "777", "7172", "727", "916", "495", "800"]),
        rest=st.text(alphabet="0123456789", min_size=7, max_size=7),
        mobile_only=st.booleans(),
    )
    def test_same_as_with_plus_and_with_trunk_prefix(
        self, prefix: str, rest: str, mobile_only: bool
    ) -> None:
        """7 + ten digits answers exactly as +7 + ten digits and 8 + ten digits do."""
        national = (prefix + rest)[:10]

        def outcome(text: str) -> object:
            try:
                return parse_phone(text, allowed_regions=KZ_AND_RU, mobile_only=mobile_only)
            except InvalidPhoneError as error:
                return (error.reason, error.region, error.kind)

        assert outcome("+7" + national) == outcome("7" + national) == outcome("8" + national)


class TestIinIsNoPhone:
    """A 12-digit IIN/BIN typed where a phone number may be is refused, never a number."""

    @pytest.mark.parametrize(
        "iin",
        [
            "880101300123",
            "960101300123",
            "000101500123",
            "700101300123",
            "770101300123",
            "790101300123",
            "810101300123",  # starts like the 8~10 international prefix
            "810915300123",
        ],
    )
    def test_iin_is_too_long(self, iin: str) -> None:
        """Twelve digits are more than any +7 number has, however typed: too_long."""
        for mobile_only in (True, False):
            assert "too_long" == reason_of(iin, allowed_regions=KZ_AND_RU, mobile_only=mobile_only)

    @example(digits="787000000000")  # +7, trunk prefix 8, then a KZ number: Hypothesis found it
    @given(digits=st.text(alphabet="0123456789", min_size=12, max_size=12))
    def test_no_twelve_digits_are_a_kz_or_ru_number(self, digits: str) -> None:
        """No 12-digit string is a Kazakh or Russian number; the reason says which way."""
        with pytest.raises(InvalidPhoneError) as info:
            parse_phone(digits, allowed_regions=KZ_AND_RU, mobile_only=False)
        # After the 8~10 prefix, nine digits may be a valid number of a small country
        # (the Faroes, +298 and six digits): that one is a region not allowed.
        expected = {"too_long", "region_not_allowed"} if digits[:3] == "810" else {"too_long"}
        assert info.value.reason in expected


class TestDocumentedPrefixes:
    @staticmethod
    def documented_kz_mobile() -> set[str]:
        """The three-digit prefixes docs/phone.md lists as KZ mobile."""
        rows = [
            line
            for line in DOCS_PHONE.read_text(encoding="utf-8").splitlines()
            if line.startswith("|") and line.endswith("| `KZ` | `mobile` |")
        ]
        assert len(rows) == 1, rows
        prefixes: set[str] = set()
        for first, last in re.findall(r"`\+7 (\d{3})(?:…(\d{3}))? …`", rows[0]):
            prefixes.update(str(p) for p in range(int(first), int(last or first) + 1))
        return prefixes

    def test_docs_list_every_allocated_kz_mobile_prefix(self) -> None:
        """docs/phone.md lists exactly the 7xx prefixes phonenumbers knows as KZ mobile."""
        import phonenumbers

        allocated = set()
        for prefix in range(700, 800):
            number = phonenumbers.parse(f"+7{prefix}5556677")
            if (
                phonenumbers.region_code_for_number(number) == "KZ"
                and phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.MOBILE
            ):
                allocated.add(str(prefix))
        assert allocated == self.documented_kz_mobile() == set(KZ_MOBILE_PREFIXES)

    @pytest.mark.parametrize("prefix", ["703", "704", "709"])
    def test_unallocated_prefixes_are_invalid(self, prefix: str) -> None:
        """Prefixes the plan does not allocate are no numbers at all."""
        assert "invalid" == reason_of(f"8 {prefix} 555 66 77", mobile_only=False)

    def test_751_is_voip(self) -> None:
        """+7 751 … is KZ VoIP: refused for SMS, accepted without mobile_only."""
        with pytest.raises(InvalidPhoneError) as info:
            parse_phone("+7 751 555 66 77")
        assert ("not_mobile", "KZ", "voip") == (
            info.value.reason,
            info.value.region,
            info.value.kind,
        )


class TestRegions:
    def test_kz_and_ru_are_told_apart_by_the_number(self) -> None:
        """Inside +7, +7 701 … is Kazakh and +7 916 … Russian."""
        both = ("KZ", "RU")
        assert "KZ" == parse_phone("+7 701 123 45 67", allowed_regions=both).region
        assert "RU" == parse_phone(MOSCOW_MOBILE, allowed_regions=both).region

    @pytest.mark.parametrize("text", [MOSCOW_MOBILE, "89161234567", "+79161234567"])
    def test_ru_refused_by_default(self, text: str) -> None:
        """With the default allow-list ("KZ",), a Russian mobile number is refused."""
        with pytest.raises(InvalidPhoneError) as info:
            parse_phone(text)
        error = info.value
        assert ("region_not_allowed", "RU", ("KZ",)) == (
            error.reason,
            error.region,
            error.allowed_regions,
        )

    def test_ru_accepted_when_allowed(self) -> None:
        """A deployment that allows ("KZ", "RU") accepts the Russian number."""
        number = parse_phone(MOSCOW_MOBILE, allowed_regions=("KZ", "RU"))
        assert PhoneNumber("+79161234567", "RU", "mobile") == number

    def test_kz_refused_when_only_ru_allowed(self) -> None:
        """The allow-list applies to Kazakh numbers too."""
        assert "region_not_allowed" == reason_of(E164, allowed_regions=("RU",))

    @pytest.mark.parametrize(
        "text", ["+1 202 555 0123", "+380 50 123 4567", "+49 1511 2345678", "8 10 1 202 555 0123"]
    )
    def test_other_countries_refused(self, text: str) -> None:
        """Valid numbers of countries outside the allow-list are refused."""
        assert "region_not_allowed" == reason_of(text)

    @pytest.mark.parametrize(
        ("lang", "names"),
        [("kk", "Қазақстан, Ресей"), ("ru", "Казахстан, Россия"), ("en", "Kazakhstan, Russia")],
    )
    def test_region_not_allowed_message_names_the_countries(self, lang: str, names: str) -> None:
        """The message names the accepted countries in the user's language, not ISO codes."""
        with pytest.raises(InvalidPhoneError) as info:
            parse_phone("+380501234567", allowed_regions=("KZ", "RU"))
        message = info.value.message(lang)
        assert f"{names}." in message
        assert "KZ" not in message
        assert "RU" not in message

    @pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
    def test_a_country_without_a_name_is_not_shown_as_a_code(self, lang: str) -> None:
        """An allowed country the catalog cannot name: the message lists no country at all."""
        with pytest.raises(InvalidPhoneError) as info:
            parse_phone("+380501234567", allowed_regions=("KZ", "FR"))
        message = info.value.message(lang)
        assert render("phone.region_not_allowed_unnamed", lang) == message
        assert "FR" not in message
        assert "KZ" not in message

    def test_str_keeps_the_iso_codes(self) -> None:
        """str() is for logs and developers: it keeps the ISO codes."""
        with pytest.raises(InvalidPhoneError) as info:
            parse_phone("+380501234567", allowed_regions=("KZ", "RU"))
        assert "allowed=KZ,RU" in str(info.value)

    @pytest.mark.parametrize(
        ("kwargs", "exception"),
        [
            ({"region": "XX"}, ValueError),
            ({"region": "KAZ"}, ValueError),
            ({"region": ""}, ValueError),
            ({"region": None}, TypeError),
            ({"allowed_regions": ()}, ValueError),
            ({"allowed_regions": ("KZ", "ZZ")}, ValueError),
            ({"allowed_regions": "KZ"}, TypeError),
            ({"allowed_regions": (7,)}, TypeError),
        ],
    )
    def test_bad_configuration(self, kwargs: dict[str, object], exception: type[Exception]) -> None:
        """An unknown region or a malformed allow-list is a programming error, not a refusal."""
        with pytest.raises(exception) as info:
            parse_phone(E164, **kwargs)  # type: ignore[arg-type]
        assert not isinstance(info.value, InvalidPhoneError)


class TestMobileOnly:
    @pytest.mark.parametrize("text", [ALMATY_LANDLINE, ASTANA_LANDLINE])
    def test_landline_refused(self, text: str) -> None:
        """With mobile_only (the default), a Kazakh landline is refused as not mobile."""
        with pytest.raises(InvalidPhoneError) as info:
            parse_phone(text)
        assert ("not_mobile", "KZ", "fixed_line") == (
            info.value.reason,
            info.value.region,
            info.value.kind,
        )

    def test_landline_accepted_without_mobile_only(self) -> None:
        """With mobile_only=False the landline is a fixed_line number."""
        number = parse_phone(ALMATY_LANDLINE, mobile_only=False)
        assert PhoneNumber("+77272123456", "KZ", "fixed_line") == number

    def test_toll_free_refused(self) -> None:
        """A toll-free number cannot receive SMS."""
        assert "not_mobile" == reason_of("8 800 123 45 67", allowed_regions=("KZ", "RU"))

    def test_nonexistent_almaty_number_is_invalid(self) -> None:
        """+7 727 1… is no number of the Almaty plan (those start 727 2/3…): invalid."""
        assert "invalid" == reason_of("+7 727 123 45 67", mobile_only=False)


class TestMasking:
    @pytest.mark.parametrize(
        ("e164", "masked"),
        [
            ("+77011234567", "+7 701 *** ** 67"),
            ("+77779876543", "+7 777 *** ** 43"),
            ("+79161234567", "+7 916 *** ** 67"),
            ("+77272123456", "+7 7272 ** ** 56"),
            ("+77172123456", "+7 7172 ** ** 56"),
            ("+380501234567", "+380 50 *** ** 67"),
            ("+33612345678", "+33 6 ** ** ** 78"),
            ("+12025550123", "+1 202 *** ** 23"),
        ],
    )
    def test_mask_phone(self, e164: str, masked: str) -> None:
        """Country code, operator or area code and the last two digits stay."""
        assert masked == mask_phone(e164)

    def test_masked_property(self) -> None:
        """PhoneNumber.masked is mask_phone of its e164."""
        assert "+7 701 *** ** 67" == parse_phone("87011234567").masked

    def test_repr_is_masked(self) -> None:
        """repr() of a number does not show it whole."""
        text = repr(parse_phone("87011234567"))
        assert "1234567" not in text
        assert "PhoneNumber(masked='+7 701 *** ** 67', region='KZ', kind='mobile')" == text

    def test_repr_of_an_unknown_country_code(self) -> None:
        """A hand-built number with a country code that does not exist still has a repr."""
        number = PhoneNumber("+9991234567", "ZZ", "unknown")
        assert "PhoneNumber(masked='+**********', region='ZZ', kind='unknown')" == repr(number)

    @pytest.mark.parametrize(
        "text", ["87011234567", "+7 701 123 45 67", "+0123456789", "+12", "+9991234567", ""]
    )
    def test_mask_needs_e164(self, text: str) -> None:
        """mask_phone takes only E.164 of a country code that exists."""
        with pytest.raises(InvalidPhoneError) as info:
            mask_phone(text)
        assert "invalid" == info.value.reason

    def test_mask_needs_str(self) -> None:
        """A non-str is a TypeError."""
        with pytest.raises(TypeError):
            mask_phone(cast(str, 77011234567))


class TestPhoneNumber:
    def test_frozen_and_slotted(self) -> None:
        """A PhoneNumber cannot be changed, and has no __dict__."""
        number = parse_phone(E164)
        with pytest.raises(dataclasses.FrozenInstanceError):
            number.e164 = "+77021234567"  # type: ignore[misc]
        assert not hasattr(number, "__dict__")

    @pytest.mark.parametrize(
        ("fields", "exception"),
        [
            (("87011234567", "KZ", "mobile"), ValueError),
            (("+77011234567", "KZ", "cellular"), ValueError),
            ((77011234567, "KZ", "mobile"), TypeError),
            (("+77011234567", None, "mobile"), TypeError),
        ],
    )
    def test_fields_are_checked(
        self, fields: tuple[object, object, object], exception: type[Exception]
    ) -> None:
        """A hand-built number must have an E.164 string and a known kind."""
        with pytest.raises(exception):
            PhoneNumber(*fields)  # type: ignore[arg-type]


class TestRefused:
    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("", "empty"),
            ("   ", "empty"),
            (f"{NBSP}\t\n", "empty"),
            ("+7 701 ABC", "invalid"),
            ("+7 701 ABC DE FG", "invalid"),
            ("8 (701) 123-45-6x", "invalid"),
            ("seven zero one", "invalid"),
            ("+7 701 123 45 67 ext. 5", "invalid"),
            ("+7 701 123 45 67#5", "invalid"),
            ("tel:+77011234567", "invalid"),
            ("+7 701\x00123 45 67", "invalid"),
            ("\x00", "invalid"),
            ("+7 701 123\ud80045 67", "invalid"),
            ("\udfff", "invalid"),
            ("+7 ٧٠١ 123 45 67", "invalid"),  # Arabic-Indic digits
            ("+7701123456７", "invalid"),  # a fullwidth digit
            ("+7 701 123\n45 67", "invalid"),
            ("++77011234567", "invalid"),
            ("7+7011234567", "invalid"),
            ("+", "invalid"),
            ("()", "invalid"),
            ("---", "invalid"),
            ("+999 123 45 67", "invalid"),
            ("+7 600 123 45 67", "invalid"),
            ("0000000000", "invalid"),
            ("+7 701 123 45", "too_short"),
            ("701 123 4", "too_short"),
            ("123 45 67", "too_short"),
            ("12", "too_short"),
            ("+7 701 123 45 678", "too_long"),
            ("+7 701 123 45 67 890", "too_long"),
            ("1" * 30, "too_long"),
            ("7" * (PHONE_MAX_LENGTH + 1), "too_long"),
            (" " * (PHONE_MAX_LENGTH + 1), "too_long"),
            ("+7 701 123 45 67" * 640, "too_long"),  # 10 KB
        ],
    )
    def test_reason(self, text: str, reason: str) -> None:
        """Each class of bad input is refused with its reason code."""
        assert reason == reason_of(text)

    @pytest.mark.parametrize("value", [None, b"+77011234567", 77011234567, 7.0, ["+77011234567"]])
    def test_non_str_is_a_type_error(self, value: object) -> None:
        """Input that is not a str is a TypeError, not a refusal."""
        with pytest.raises(TypeError) as info:
            parse_phone(cast(str, value))
        assert not isinstance(info.value, InvalidPhoneError)

    def test_huge_input_is_refused_before_phonenumbers(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Input over PHONE_MAX_LENGTH never reaches phonenumbers.parse."""
        import phonenumbers

        def fail(*args: object) -> None:
            raise AssertionError("phonenumbers.parse was called")

        monkeypatch.setattr(phonenumbers, "parse", fail)
        assert "too_long" == reason_of("8" * 10_000)
        assert "invalid" == reason_of("+7 701 ABC")

    @pytest.mark.parametrize(
        "text", ["+7 701 123 45 67 8", "87011234567 ext 12", "+7 916 123 45 67", ALMATY_LANDLINE]
    )
    def test_message_does_not_echo_the_number(self, text: str) -> None:
        """Neither str() nor the args of the error contain the digits typed."""
        with pytest.raises(InvalidPhoneError) as info:
            parse_phone(text)
        shown = str(info.value) + repr(info.value.args)
        assert "123" not in shown
        assert "4567" not in shown
        assert info.value.__cause__ is None

    def test_unknown_reason_is_a_programming_error(self) -> None:
        """Building the error with a reason that does not exist is a ValueError."""
        with pytest.raises(ValueError, match="unknown reason"):
            InvalidPhoneError("bad")


class TestMessages:
    @pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
    @pytest.mark.parametrize("reason", PHONE_ERROR_REASONS)
    def test_every_reason_renders(self, reason: str, lang: str) -> None:
        """Every reason has a complete sentence in every language, with no placeholder left."""
        error = InvalidPhoneError(reason, allowed_regions=("KZ", "RU"))
        text = error.message(lang)
        assert text.endswith(".")
        assert "{" not in text
        assert "}" not in text

    @pytest.mark.parametrize("lang", ["ru", "kk"])
    @pytest.mark.parametrize("reason", PHONE_ERROR_REASONS)
    def test_messages_are_translated(self, reason: str, lang: str) -> None:
        """No Russian or Kazakh message is the English text."""
        error = InvalidPhoneError(reason, allowed_regions=("KZ",))
        assert error.message("en") != error.message(lang)

    def test_catalog_keys(self) -> None:
        """Each reason has its phone.<reason> key in every shipped catalog."""
        keys = {f"phone.{reason}" for reason in PHONE_ERROR_REASONS}
        for lang in SUPPORTED_LANGUAGES:
            assert keys <= get_catalog(lang).keys()

    def test_not_mobile_in_kazakh(self) -> None:
        """Kazakh speaks of a mobile phone as gov portals do: ұялы телефон нөмірі."""
        with pytest.raises(InvalidPhoneError) as info:
            parse_phone(ALMATY_LANDLINE)
        assert "ұялы телефон нөмірі" in info.value.message("kk")
        assert "мобильного телефона" in info.value.message("ru")
        assert "mobile phone number" in info.value.message("en")

    def test_regional_language_tags(self) -> None:
        """Language tags are normalised as elsewhere in the library."""
        error = InvalidPhoneError("empty")
        assert error.message("ru") == error.message("ru-KZ")


class TestProperties:
    @given(
        prefix=st.sampled_from(KZ_MOBILE_PREFIXES),
        rest=st.text(alphabet="0123456789", min_size=7, max_size=7),
    )
    def test_kz_mobile_round_trips(self, prefix: str, rest: str) -> None:
        """Any KZ mobile number, typed in any accepted form, gives the same E.164."""
        expected = f"+7{prefix}{rest}"
        for text in kz_formats(prefix, rest):
            number = parse_phone(text)
            assert (expected, "KZ", "mobile") == (number.e164, number.region, number.kind)
            assert number == parse_phone(number.e164)
            assert mask_phone(expected) == f"+7 {prefix} *** ** {rest[-2:]}"

    @given(
        text=st.one_of(
            st.text(st.characters(codec=None, exclude_categories=())),
            st.text(alphabet="0123456789+-() 8\u00a0.x", max_size=30),
            st.from_regex(r"\+?[0-9]{0,20}", fullmatch=True),
        ),
        mobile_only=st.booleans(),
        allowed=st.sampled_from([("KZ",), ("KZ", "RU"), ("RU", "US", "UA")]),
    )
    def test_only_invalid_phone_error(
        self, text: str, mobile_only: bool, allowed: tuple[str, ...]
    ) -> None:
        """For any text, parse_phone returns a number or raises InvalidPhoneError."""
        error: InvalidPhoneError | None = None
        try:
            number = parse_phone(text, allowed_regions=allowed, mobile_only=mobile_only)
        except InvalidPhoneError as exc:
            error = exc
        if error is not None:
            assert error.reason in PHONE_ERROR_REASONS
            assert all(error.message(lang) for lang in SUPPORTED_LANGUAGES)
            return
        assert number.region in allowed
        assert number.kind in PHONE_KINDS
        assert number == parse_phone(number.e164, allowed_regions=allowed, mobile_only=mobile_only)


class TestLazyImport:
    def test_phonenumbers_loaded_on_first_parse_without_its_data(self) -> None:
        """phonenumbers loads at the first parse, and its geocoder/carrier/timezone never do."""
        code = (
            "import sys\n"
            "import kaspi_identity.phone as phone\n"
            "assert 'phonenumbers' not in sys.modules, 'imported too early'\n"
            "phone.parse_phone('+7 701 123 45 67').masked\n"
            "assert 'phonenumbers' in sys.modules\n"
            "try:\n"
            "    phone.parse_phone('+7 727 212 34 56')\n"
            "except phone.InvalidPhoneError as error:\n"
            "    error.message('kk')\n"
            "phone.mask_phone('+79161234567')\n"
            "heavy = ['phonenumbers.geocoder', 'phonenumbers.carrier', 'phonenumbers.timezone',"
            " 'phonenumbers.geodata', 'phonenumbers.carrierdata', 'phonenumbers.tzdata']\n"
            "print(','.join(m for m in heavy if m in sys.modules))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert "" == out.stdout.strip()
