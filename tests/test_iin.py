"""Tests of the IIN/BIN part of kaspi_identity.phone: parse_iin, Iin and InvalidIinError."""

from __future__ import annotations

import dataclasses
import pickle
import re
from datetime import date
from pathlib import Path
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

import kaspi_identity
import kaspi_identity.phone as phone
from kaspi_identity._errors import KaspiIdentityError
from kaspi_identity.i18n import SUPPORTED_LANGUAGES, get_catalog
from kaspi_identity.phone import (
    IIN_ERROR_REASONS,
    IIN_KINDS,
    IIN_MAX_LENGTH,
    Iin,
    InvalidIinError,
    InvalidPhoneError,
    parse_iin,
    parse_phone,
)

DIGITS = "0123456789"
DOCS_PHONE = Path(__file__).resolve().parent.parent / "docs" / "phone.md"

# The reference check digit, written out from the standard independently of the library:
# weights 1..11 over the first eleven digits, sum mod 11; on 10 a second pass with weights
# 3..11, 1, 2; on 10 again no number exists.
FIRST_WEIGHTS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
SECOND_WEIGHTS = [3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2]


def first_pass(first_eleven: str) -> int:
    """The remainder of the first pass alone."""
    return sum(int(c) * w for c, w in zip(first_eleven, FIRST_WEIGHTS, strict=True)) % 11


def reference_check_digit(first_eleven: str) -> int | None:
    """The twelfth digit for ``first_eleven`` by the standard, or None when none exists."""
    remainder = first_pass(first_eleven)
    if remainder == 10:
        remainder = sum(int(c) * w for c, w in zip(first_eleven, SECOND_WEIGHTS, strict=True)) % 11
    return None if remainder == 10 else remainder


def reference_is_valid(digits: str) -> bool:
    """Whether 12 ASCII digits are a valid IIN or BIN, by a second, separate reading."""
    check = reference_check_digit(digits[:11])
    if check is None or str(check) != digits[11]:
        return False
    month = int(digits[2:4])
    if digits[4] in "456":  # a BIN: YYMM of registration
        return 1 <= month <= 12
    centuries = {"1": 18, "2": 18, "3": 19, "4": 19, "5": 20, "6": 20}
    if digits[6] not in centuries:
        return False
    try:
        date(centuries[digits[6]] * 100 + int(digits[:2]), month, int(digits[4:6]))
    except ValueError:
        return False
    return True


def complete(head: str) -> str:
    """Twelve digits starting with ``head`` (6 to 11 digits), with a check digit that exists.

    The serial digits after ``head`` are filled from "00123"; the last of the eleven is
    changed where the first eleven have no check digit at all.
    """
    assert 6 <= len(head) <= 11
    first_eleven = (head + "00123")[:11]
    for last in [first_eleven[-1], *DIGITS]:
        candidate = first_eleven[:-1] + last if len(head) < 11 else first_eleven
        check = reference_check_digit(candidate)
        if check is not None:
            return candidate + str(check)
    raise AssertionError(f"no check digit for any completion of {head!r}")


def outcome(text: str) -> Iin | InvalidIinError:
    """What parse_iin gives for ``text``: the Iin, or the InvalidIinError it raised."""
    try:
        return parse_iin(text)
    except InvalidIinError as error:
        return error


def reason_of(text: str) -> str:
    """The reason parse_iin gives for refusing ``text``."""
    with pytest.raises(InvalidIinError) as info:
        parse_iin(text)
    return info.value.reason


# Examples built by hand with the reference above (none is a real person's number).
# 880101300123: born 1 January 1988, male; its first pass gives 10, the second pass 3.
IIN_1988 = "880101300123"
IIN_1996 = "960101300127"  # 1 January 1996, first pass 7
IIN_LEAP_2000 = "000229500127"  # 29 February 2000, born in the 2000s
IIN_SECOND_PASS = "900515400502"  # 15 May 1990, female; first pass 10, second pass 2
BIN_RESIDENT = "971240001315"  # registered December 1997, resident legal entity (4), head office
BIN_NON_RESIDENT = "150850000121"  # August 2015, non-resident (5)
BIN_ENTREPRENEUR = "200561000073"  # May 2020, individual entrepreneur (6)
NEVER_ISSUED_PREFIX = "88010130010"  # both passes give 10: no twelfth digit is valid


class TestPublicSurface:
    def test_exported_from_the_package(self) -> None:
        """parse_iin, Iin and InvalidIinError are importable from kaspi_identity."""
        assert kaspi_identity.parse_iin is parse_iin
        assert kaspi_identity.Iin is Iin
        assert kaspi_identity.InvalidIinError is InvalidIinError
        assert {"Iin", "InvalidIinError", "parse_iin"} <= set(kaspi_identity.__all__)

    def test_error_is_in_the_tree(self) -> None:
        """InvalidIinError is a KaspiIdentityError and a ValueError, and no phone error."""
        assert issubclass(InvalidIinError, KaspiIdentityError)
        assert issubclass(InvalidIinError, ValueError)
        assert not issubclass(InvalidIinError, InvalidPhoneError)

    def test_constants(self) -> None:
        """The documented reasons, kinds and length limit."""
        assert ("bad_date", "check_digit", "empty", "not_digits", "wrong_length") == (
            IIN_ERROR_REASONS
        )
        assert ("bin", "iin") == IIN_KINDS
        assert 64 == IIN_MAX_LENGTH


class TestReferenceExamples:
    def test_the_examples_follow_the_reference(self) -> None:
        """The hand-built examples are what the reference says they are."""
        for value in (IIN_1988, IIN_1996, IIN_LEAP_2000, IIN_SECOND_PASS, BIN_RESIDENT):
            assert reference_is_valid(value), value
        for value in (BIN_NON_RESIDENT, BIN_ENTREPRENEUR):
            assert reference_is_valid(value), value
        assert 10 == first_pass(IIN_1988[:11])
        assert 10 == first_pass(IIN_SECOND_PASS[:11])
        assert 7 == first_pass(IIN_1996[:11])
        assert reference_check_digit(NEVER_ISSUED_PREFIX) is None


class TestParseIin:
    @pytest.mark.parametrize(
        ("value", "born"),
        [
            (IIN_1988, date(1988, 1, 1)),
            (IIN_1996, date(1996, 1, 1)),
            (IIN_LEAP_2000, date(2000, 2, 29)),
            (IIN_SECOND_PASS, date(1990, 5, 15)),
        ],
    )
    def test_individuals(self, value: str, born: date) -> None:
        """An IIN gives its twelve digits, kind "iin" and the birth date it encodes."""
        iin = parse_iin(value)
        assert (value, "iin", born) == (iin.value, iin.kind, iin.birth_date)

    @pytest.mark.parametrize("value", [BIN_RESIDENT, BIN_NON_RESIDENT, BIN_ENTREPRENEUR])
    def test_businesses(self, value: str) -> None:
        """A BIN (fifth digit 4, 5 or 6) gives kind "bin" and no birth date."""
        iin = parse_iin(value)
        assert (value, "bin", None) == (iin.value, iin.kind, iin.birth_date)

    @pytest.mark.parametrize(
        "text",
        [f" {IIN_1988}", f"{IIN_1988}\n", f"\t{IIN_1988} \r\n", f"\u00a0{IIN_1988}\u202f"],
    )
    def test_surrounding_whitespace_is_ignored(self, text: str) -> None:
        """Whitespace around the digits (also no-break spaces, line ends) is stripped."""
        assert IIN_1988 == parse_iin(text).value

    @pytest.mark.parametrize(
        ("century_digit", "year"),
        [("1", 1888), ("2", 1888), ("3", 1988), ("4", 1988), ("5", 2088), ("6", 2088)],
    )
    def test_century_digit(self, century_digit: str, year: int) -> None:
        """The seventh digit gives the century: 1-2 the 1800s, 3-4 the 1900s, 5-6 the 2000s."""
        iin = parse_iin(complete("880101" + century_digit))
        assert date(year, 1, 1) == iin.birth_date

    @pytest.mark.parametrize(
        ("head", "born"),
        [
            ("000229" + "5", date(2000, 2, 29)),  # 2000 is a leap year
            ("880229" + "3", date(1988, 2, 29)),
            ("991231" + "3", date(1999, 12, 31)),
            ("000101" + "1", date(1800, 1, 1)),
            ("991231" + "6", date(2099, 12, 31)),
            ("880131" + "3", date(1988, 1, 31)),
            ("880430" + "4", date(1988, 4, 30)),
        ],
    )
    def test_date_boundaries_accepted(self, head: str, born: date) -> None:
        """The first and last days of months, leap days and centuries are real dates."""
        assert born == parse_iin(complete(head)).birth_date

    @pytest.mark.parametrize("month", ["01", "12"])
    def test_bin_month_boundaries(self, month: str) -> None:
        """A BIN's month of registration may be 01 to 12."""
        assert "bin" == parse_iin(complete(f"97{month}40")).kind

    def test_constructor_checks_like_parse_iin(self) -> None:
        """Iin(value) is the same as parse_iin(value), and refuses what it refuses."""
        assert parse_iin(IIN_1988) == Iin(IIN_1988)
        assert hash(parse_iin(IIN_1988)) == hash(Iin(IIN_1988))
        with pytest.raises(InvalidIinError) as info:
            Iin(IIN_1988[:-1] + "4")
        assert "check_digit" == info.value.reason
        with pytest.raises(InvalidIinError) as info:
            Iin(f" {IIN_1988}")  # the constructor strips nothing
        assert "not_digits" == info.value.reason

    def test_parse_iin_is_no_phone_number(self) -> None:
        """Twelve digits that are an IIN are refused by parse_phone, never read as a number."""
        for value in (IIN_1988, IIN_1996, IIN_SECOND_PASS, BIN_RESIDENT):
            parse_iin(value)
            with pytest.raises(InvalidPhoneError) as info:
                parse_phone(value)
            assert "too_long" == info.value.reason


class TestCheckDigit:
    @pytest.mark.parametrize(
        "value", [IIN_1988, IIN_1996, IIN_LEAP_2000, IIN_SECOND_PASS, BIN_RESIDENT]
    )
    def test_every_other_twelfth_digit_is_refused(self, value: str) -> None:
        """Of the ten possible twelfth digits only the check digit passes (off by one too)."""
        for digit in DIGITS:
            candidate = value[:-1] + digit
            if digit == value[-1]:
                assert value == parse_iin(candidate).value
            else:
                assert "check_digit" == reason_of(candidate), candidate

    def test_off_by_one(self) -> None:
        """The check digit plus or minus one is a check_digit refusal."""
        last = int(IIN_1996[-1])
        for digit in (last - 1, last + 1):
            assert "check_digit" == reason_of(IIN_1996[:-1] + str(digit))

    def test_second_pass_is_used(self) -> None:
        """Where the first pass gives 10, the second pass's remainder is the check digit."""
        assert 10 == first_pass(IIN_1988[:11])
        assert 10 == first_pass(IIN_SECOND_PASS[:11])
        assert IIN_1988 == parse_iin(IIN_1988).value
        # A 0 (10 mod 10) would be the naive reading of the first pass; it is refused.
        assert "check_digit" == reason_of(IIN_1988[:-1] + "0")

    def test_never_issued_when_both_passes_give_ten(self) -> None:
        """When both passes give 10 no twelfth digit makes a valid number."""
        for digit in DIGITS:
            assert "check_digit" == reason_of(NEVER_ISSUED_PREFIX + digit)

    def test_a_typo_in_the_eleventh_digit_can_pass(self) -> None:
        """The standard's blind spot, documented: weight 11 is 0 mod 11 in the first pass.

        So where the first pass decides, the eleventh digit does not change the check digit,
        and any value of it gives a valid number. A check digit is no proof of identity.
        """
        assert 7 == first_pass(IIN_1996[:11])
        for digit in DIGITS:
            assert "iin" == parse_iin(IIN_1996[:10] + digit + IIN_1996[11]).kind

    def test_a_changed_date_digit_is_caught(self) -> None:
        """A typo in the birth date of a real-format IIN is a check_digit refusal."""
        assert "check_digit" == reason_of("880102300123")
        assert "check_digit" == reason_of("890101300123")


class TestRefused:
    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("", "empty"),
            ("   ", "empty"),
            ("\u00a0\t\r\n", "empty"),
            ("8" * 11, "wrong_length"),
            (IIN_1988[:-1], "wrong_length"),
            (IIN_1988 + "0", "wrong_length"),
            (IIN_1988 + IIN_1988, "wrong_length"),
            ("1", "wrong_length"),
            ("8" * IIN_MAX_LENGTH, "wrong_length"),
            ("8" * (IIN_MAX_LENGTH + 1), "wrong_length"),
            (" " * (IIN_MAX_LENGTH + 1), "wrong_length"),
            ("8" * 1_000_000, "wrong_length"),  # 1 MB
            ("x" * 1_000_000, "wrong_length"),  # refused on its length, never scanned
            ("880101 300123", "not_digits"),
            ("8801-0130-0123", "not_digits"),
            ("88010130012a", "not_digits"),
            ("IIN880101300123", "not_digits"),
            ("+880101300123", "not_digits"),
            ("880101300123.", "not_digits"),
            ("880101\x00300123", "not_digits"),
            (IIN_1988 + "\x00", "not_digits"),
            ("\x00", "not_digits"),
            ("88010130012\ud800", "not_digits"),
            ("\udfff" * 12, "not_digits"),
            ("８８０１０１３００１２３", "not_digits"),  # fullwidth digits
            ("٨٨٠١٠١٣٠٠١٢٣", "not_digits"),  # Arabic-Indic digits
            ("८८०१०१३००१२३", "not_digits"),  # Devanagari digits
            ("88010130012³", "not_digits"),  # a superscript three
            ("-88010130012", "not_digits"),
            ("８８０１０１３００１２", "not_digits"),  # wrong length, but not digits first
        ],
    )
    def test_reason(self, text: str, reason: str) -> None:
        """Each class of bad input is refused with its reason code."""
        assert reason == reason_of(text)

    @pytest.mark.parametrize("value", [None, IIN_1988.encode(), int(IIN_1988), 8.0, [IIN_1988]])
    def test_non_str_is_a_type_error(self, value: object) -> None:
        """Input that is not a str is a TypeError, not a refusal, for both entry points."""
        with pytest.raises(TypeError) as info:
            parse_iin(cast(str, value))
        assert not isinstance(info.value, InvalidIinError)
        with pytest.raises(TypeError):
            Iin(cast(str, value))

    def test_huge_input_is_refused_before_any_work(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Input over IIN_MAX_LENGTH never reaches the checks, nor is it stripped or scanned."""

        def fail(value: str) -> None:
            raise AssertionError("the number was examined")

        monkeypatch.setattr(phone, "_decode_iin", fail)
        assert "wrong_length" == reason_of(" " * 1_000_000 + IIN_1988)
        assert "wrong_length" == reason_of("\x00" * 1_000_000)

    def test_huge_value_in_the_constructor(self) -> None:
        """Iin() refuses a huge value on its length too."""
        with pytest.raises(InvalidIinError) as info:
            Iin("\ud800" * 1_000_000)
        assert "wrong_length" == info.value.reason


class TestDates:
    @pytest.mark.parametrize(
        "head",
        [
            "880001" + "3",  # month 00
            "881301" + "3",  # month 13
            "889901" + "3",  # month 99
            "880100" + "3",  # day 00
            "880132" + "3",  # day 32
            "880230" + "3",  # 30 February
            "890229" + "3",  # 29 February of a common year
            "000229" + "3",  # 29 February 1900: not a leap year
            "000229" + "1",  # 29 February 1800: not a leap year
            "880431" + "3",  # 31 April
            "881131" + "4",  # 31 November
        ],
    )
    def test_impossible_birth_dates(self, head: str) -> None:
        """A month 13, a day 32 or a day the month lacks is bad_date, with a right check digit."""
        assert "bad_date" == reason_of(complete(head))

    @pytest.mark.parametrize("century_digit", ["0", "7", "8", "9"])
    def test_unknown_century_digit(self, century_digit: str) -> None:
        """An IIN whose seventh digit is not 1-6 has no century, hence no date: bad_date."""
        assert "bad_date" == reason_of(complete("880101" + century_digit))

    @pytest.mark.parametrize("fifth", ["7", "8", "9"])
    def test_fifth_digit_neither_iin_nor_bin(self, fifth: str) -> None:
        """A fifth digit 7-9 is no BIN type and no day of birth (70th and later): bad_date."""
        assert "bad_date" == reason_of(complete(f"8801{fifth}13"))

    @pytest.mark.parametrize("month", ["00", "13", "99"])
    def test_impossible_bin_month(self, month: str) -> None:
        """A BIN's month of registration outside 01-12 is bad_date."""
        assert "bad_date" == reason_of(complete(f"97{month}40"))

    @pytest.mark.parametrize("seventh", DIGITS)
    def test_bin_seventh_digit_is_no_century(self, seventh: str) -> None:
        """In a BIN the seventh digit is part of the serial number, never a century."""
        assert "bin" == parse_iin(complete(f"971240{seventh}")).kind


class TestIin:
    def test_frozen_and_slotted(self) -> None:
        """An Iin cannot be changed, and has no __dict__."""
        iin = parse_iin(IIN_1988)
        with pytest.raises(dataclasses.FrozenInstanceError):
            iin.value = IIN_1996  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            iin.kind = "bin"  # type: ignore[misc]
        assert not hasattr(iin, "__dict__")

    def test_kind_and_birth_date_are_derived(self) -> None:
        """kind and birth_date come from the value; they cannot be passed in."""
        with pytest.raises(TypeError):
            Iin(IIN_1988, "bin", None)  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            Iin(value=IIN_1988, kind="bin")  # type: ignore[call-arg]

    def test_replace_derives_again(self) -> None:
        """dataclasses.replace with a new value checks it and derives kind and date anew."""
        iin = dataclasses.replace(parse_iin(IIN_1988), value=BIN_RESIDENT)
        assert ("bin", None) == (iin.kind, iin.birth_date)
        with pytest.raises(InvalidIinError):
            dataclasses.replace(iin, value=IIN_1988[:-1] + "4")

    @pytest.mark.parametrize(
        ("value", "masked"),
        [(IIN_1988, "8801******23"), (BIN_RESIDENT, "9712******15")],
    )
    def test_masked(self, value: str, masked: str) -> None:
        """The first four and last two digits stay, the six between are hidden."""
        assert masked == parse_iin(value).masked

    def test_repr_and_str_do_not_disclose_the_number(self) -> None:
        """repr, str, format and containers show only the masked form and the kind."""
        iin = parse_iin(IIN_1988)
        expected = "Iin(masked='8801******23', kind='iin')"
        assert expected == repr(iin)
        assert expected == str(iin)
        assert expected == f"{iin}"
        assert expected == format(iin, "")
        for shown in (repr(iin), str(iin), f"{iin}", repr([iin]), repr({"login": iin})):
            assert IIN_1988 not in shown
            assert "880101" not in shown  # YYMMDD, the birth date
            assert "1988" not in shown
            assert "300123" not in shown

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (IIN_1988, (IIN_1988, "880101", "010188", "01011988")),
            (IIN_SECOND_PASS, (IIN_SECOND_PASS, "900515", "150590", "15051990")),
            (IIN_LEAP_2000, (IIN_LEAP_2000, "000229", "290200", "29022000")),
            (BIN_RESIDENT, (BIN_RESIDENT,)),
            (BIN_ENTREPRENEUR, (BIN_ENTREPRENEUR,)),
        ],
    )
    def test_personal_strings(self, value: str, expected: tuple[str, ...]) -> None:
        """The digits, and for an individual the birth date as YYMMDD, DDMMYY, DDMMYYYY."""
        assert expected == parse_iin(value).personal_strings()

    def test_personal_strings_given_once(self) -> None:
        """A form equal to an earlier one is not repeated (1 January 2001: 010101 twice)."""
        value = complete("010101" + "5")
        assert (value, "010101", "01012001") == parse_iin(value).personal_strings()

    def test_personal_strings_of_the_1800s(self) -> None:
        """The four-digit year keeps its century: 1 January 1888 is 01011888."""
        value = complete("880101" + "1")
        assert (value, "880101", "010188", "01011888") == parse_iin(value).personal_strings()


class TestErrors:
    @pytest.mark.parametrize(
        "text",
        [
            IIN_1988[:-1] + "4",
            complete("881301" + "3"),
            IIN_1988 + "9",
            "88010130012x",
            f"{IIN_1988}\x00",
        ],
    )
    def test_error_does_not_echo_the_number(self, text: str) -> None:
        """Neither str(), repr() nor the args of the error contain digits of the number."""
        with pytest.raises(InvalidIinError) as info:
            parse_iin(text)
        shown = str(info.value) + repr(info.value) + repr(info.value.args)
        shown += "".join(info.value.message(lang) for lang in SUPPORTED_LANGUAGES)
        # No run of three digits at all (the only number in any text is the "12" of "12 digits").
        assert re.search(r"[0-9]{3}", shown) is None

    def test_no_chained_cause(self) -> None:
        """A bad date hides the datetime error it came from."""
        with pytest.raises(InvalidIinError) as info:
            parse_iin(complete("880132" + "3"))
        assert info.value.__cause__ is None
        assert info.value.__suppress_context__

    def test_str_names_the_reason(self) -> None:
        """The log text says what is wrong and gives the reason code."""
        assert "the IIN/BIN check digit does not match (check_digit)" == str(
            InvalidIinError("check_digit")
        )

    def test_unknown_reason_is_a_programming_error(self) -> None:
        """Building the error with a reason that does not exist is a ValueError."""
        with pytest.raises(ValueError, match="unknown reason"):
            InvalidIinError("too_long")

    @pytest.mark.parametrize("reason", IIN_ERROR_REASONS)
    def test_pickles(self, reason: str) -> None:
        """The error survives pickling (a task queue, a process pool) with its reason."""
        error = pickle.loads(pickle.dumps(InvalidIinError(reason)))  # noqa: S301
        assert (InvalidIinError, reason) == (type(error), error.reason)


class TestMessages:
    @pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
    @pytest.mark.parametrize("reason", IIN_ERROR_REASONS)
    def test_every_reason_renders(self, reason: str, lang: str) -> None:
        """Every reason has a complete sentence in every language, with no placeholder left."""
        text = InvalidIinError(reason).message(lang)
        assert text.endswith(".")
        assert "{" not in text
        assert "}" not in text

    @pytest.mark.parametrize("lang", ["ru", "kk"])
    @pytest.mark.parametrize("reason", IIN_ERROR_REASONS)
    def test_messages_are_translated(self, reason: str, lang: str) -> None:
        """No Russian or Kazakh message is the English text."""
        error = InvalidIinError(reason)
        assert error.message("en") != error.message(lang)

    def test_catalog_keys(self) -> None:
        """Each reason has its iin.<reason> key in every shipped catalog."""
        keys = {f"iin.{reason}" for reason in IIN_ERROR_REASONS}
        for lang in SUPPORTED_LANGUAGES:
            assert keys <= get_catalog(lang).keys()

    def test_names_of_the_number(self) -> None:
        """Each language calls the numbers by their own names: ИИН/БИН, ЖСН/БСН."""
        error = InvalidIinError("empty")
        assert "IIN or BIN" in error.message("en")
        assert "ИИН или БИН" in error.message("ru")
        assert "ЖСН немесе БСН" in error.message("kk")

    def test_regional_language_tags(self) -> None:
        """Language tags are normalised as elsewhere in the library."""
        error = InvalidIinError("check_digit")
        assert error.message("kk") == error.message("kk-KZ")


class TestDocs:
    def test_docs_describe_every_reason(self) -> None:
        """docs/phone.md has an "IIN and BIN" section with a row per reason and message key."""
        text = DOCS_PHONE.read_text(encoding="utf-8")
        assert "## IIN and BIN" in text
        for reason in IIN_ERROR_REASONS:
            assert f"| `{reason}`" in text, reason
            assert f"`iin.{reason}`" in text, reason


def individual_heads() -> st.SearchStrategy[str]:
    """The first eleven digits of an IIN: a real birth date, its century digit, a serial."""

    def build(born: date, female: bool, serial: str) -> str:
        century_digit = {18: 1, 19: 3, 20: 5}[born.year // 100] + female
        return f"{born:%y%m%d}{century_digit}{serial}"

    return st.builds(
        build,
        st.dates(min_value=date(1800, 1, 1), max_value=date(2099, 12, 31)),
        st.booleans(),
        st.text(alphabet=DIGITS, min_size=4, max_size=4),
    )


def business_heads() -> st.SearchStrategy[str]:
    """The first eleven digits of a BIN: year, month, type 4-6, attribute, serial."""
    return st.builds(
        lambda yy, mm, kind, rest: f"{yy:02d}{mm:02d}{kind}{rest}",
        st.integers(0, 99),
        st.integers(1, 12),
        st.sampled_from("456"),
        st.text(alphabet=DIGITS, min_size=6, max_size=6),
    )


class TestProperties:
    @given(first_eleven=st.text(alphabet=DIGITS, min_size=11, max_size=11))
    def test_at_most_one_twelfth_digit(self, first_eleven: str) -> None:
        """For any 11 digits, every twelfth digit but the check digit is check_digit.

        The check digit itself (when the first or second pass gives less than 10) is
        accepted or refused only for its date; with no check digit, all ten are refused.
        """
        check = reference_check_digit(first_eleven)
        accepted = set()
        for digit in DIGITS:
            result = outcome(first_eleven + digit)
            if isinstance(result, Iin):
                accepted.add(digit)
            else:
                expected = {"bad_date"} if str(check) == digit else {"check_digit"}
                assert result.reason in expected
        assert accepted <= {str(check)}

    @given(first_eleven=individual_heads())
    def test_every_individual_with_a_check_digit_is_accepted(self, first_eleven: str) -> None:
        """Eleven digits with a real birth date and a check digit give exactly one IIN."""
        check = reference_check_digit(first_eleven)
        accepted = {d for d in DIGITS if reference_is_valid(first_eleven + d)}
        assert accepted == ({str(check)} if check is not None else set())
        for digit in accepted:
            iin = parse_iin(first_eleven + digit)
            assert "iin" == iin.kind
            assert iin.birth_date is not None
            assert first_eleven[:6] == f"{iin.birth_date:%y%m%d}"
            centuries = {"1": 18, "2": 18, "3": 19, "4": 19, "5": 20, "6": 20}
            assert centuries[first_eleven[6]] == iin.birth_date.year // 100

    @given(first_eleven=business_heads())
    def test_every_business_with_a_check_digit_is_accepted(self, first_eleven: str) -> None:
        """Eleven digits of a BIN with a check digit give exactly one BIN."""
        check = reference_check_digit(first_eleven)
        for digit in DIGITS:
            if str(check) == digit:
                iin = parse_iin(first_eleven + digit)
                assert ("bin", None) == (iin.kind, iin.birth_date)
            else:
                assert "check_digit" == reason_of(first_eleven + digit)

    @given(digits=st.text(alphabet=DIGITS, min_size=12, max_size=12))
    def test_agrees_with_the_reference(self, digits: str) -> None:
        """Any twelve digits are accepted exactly when the separate reading accepts them."""
        result = outcome(digits)
        assert isinstance(result, Iin) == reference_is_valid(digits)
        if isinstance(result, Iin):
            assert ("bin" if digits[4] in "456" else "iin") == result.kind
        else:
            assert result.reason in ("check_digit", "bad_date")

    @given(
        text=st.one_of(
            st.text(st.characters(codec=None, exclude_categories=())),
            st.text(alphabet="0123456789 \t\n\u00a0x\x00８", max_size=20),
            st.from_regex(r"\s*[0-9]{10,14}\s*", fullmatch=True),
        )
    )
    def test_only_invalid_iin_error(self, text: str) -> None:
        """For any text, parse_iin returns an Iin or raises InvalidIinError, nothing else."""
        iin = outcome(text)
        if isinstance(iin, InvalidIinError):
            assert iin.reason in IIN_ERROR_REASONS
            assert all(iin.message(lang) for lang in SUPPORTED_LANGUAGES)
            return
        assert text.strip() == iin.value
        assert iin.kind in IIN_KINDS
        assert iin == parse_iin(iin.value) == Iin(iin.value)
        assert iin.value not in repr(iin)
        assert iin.value == iin.personal_strings()[0]
        assert (iin.kind == "iin") == (iin.birth_date is not None)
