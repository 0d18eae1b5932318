"""Signed link tokens and link URLs (issue 4): ``kaspi_identity.tokens``.

Every failure of a token is one exception type, :class:`InvalidTokenError`; expiry is the
subclass :class:`ExpiredTokenError`, used only for the message shown to the user.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import json
import secrets
import unittest.mock
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaspi_identity import tokens as tokens_module
from kaspi_identity._errors import ExpiredTokenError, InvalidTokenError
from kaspi_identity.tokens import (
    ACCOUNT_ID_MAX_LENGTH,
    MAX_LIFETIME,
    TOKEN_MAX_LENGTH,
    LinkBuilder,
    TokenClaims,
    TokenPurpose,
    TokenService,
)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
KEY_NEW = hashlib.sha256(b"kaspi-identity tests: token key new").digest()
KEY_OLD = hashlib.sha256(b"kaspi-identity tests: token key old").digest()
KEY_RETIRED = hashlib.sha256(b"kaspi-identity tests: token key retired").digest()
ACCOUNT = "account-A"
STATE = "$argon2id$hash-of-A\x00aliya@example.kz"
PURPOSES: tuple[TokenPurpose, ...] = ("reset", "confirm", "sms_grant")
PURPOSE_INDEX = {"reset": 0, "confirm": 1, "sms_grant": 2}
KIND = {"text": 0, "hex": 1, "decimal": 2, "uuid": 3}
HEX_ID = "3f2a9c0d5e8b47a1b6c3d2e1f0a9b8c7"  # the shape of the built-in stores' ids
#: ``_issue(account=HEX_ID, state="stamp-1")`` with KEY_NEW, at T0, with the id 16 x 0x07.
KNOWN_ANSWER = "FABppA4gBwcHBwcHBwcHBwcHBwcHB4LV8S7wAyHQPyqcDV6LR6G2w9Lh8Km4x2F7knE8qaW0wmkvmW0cP3k"


def _service(*keys: bytes) -> TokenService:
    return TokenService(keys or (KEY_NEW,))


def _issue(
    service: TokenService | None = None,
    purpose: TokenPurpose = "reset",
    *,
    account: str = ACCOUNT,
    state: str = STATE,
    now: datetime = T0,
) -> str:
    return (service or _service()).issue(purpose, account, state=state, now=now)


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _derived(use: str, key: bytes = KEY_NEW) -> bytes:
    """The key the key ring derives for ``use``: HMAC(key, "kaspi-identity/derive/" + use)."""
    return hmac.new(key, b"kaspi-identity/derive/" + use.encode(), hashlib.sha256).digest()


def _state_digest(purpose: str, account: str, state: str, key: bytes = KEY_NEW) -> bytes:
    raw = account.encode()
    message = len(raw).to_bytes(2, "big") + raw + state.encode("utf-8", "surrogatepass")
    return hmac.new(_derived(f"token-state/{purpose}", key), message, hashlib.sha256).digest()[:8]


def _forge(
    purpose: str = "reset",
    *,
    key: bytes = KEY_NEW,
    signed_as: str | None = None,
    version: int = 1,
    kind: str = "text",
    expiry: int | None = None,
    nonce: bytes = b"\x07" * 16,
    state: bytes | None = None,
    account: bytes = ACCOUNT.encode(),
    tag_length: int = 16,
    digest: Any = hashlib.sha256,
) -> str:
    """A token written by hand from the documented layout, tagged with ``key``'s purpose key.

    This is an independent writer of the format (docs/security.md, tokens module docstring):
    a genuine token equals what it writes, and any field can be set to what the service
    must refuse, with a valid tag.
    """
    if expiry is None:
        expiry = int((T0 + timedelta(hours=1)).timestamp())
    if state is None:
        state = _state_digest(purpose, ACCOUNT, STATE, key)
    header = (version << 4) | (KIND[kind] << 2) | PURPOSE_INDEX[purpose]
    body = bytes([header]) + expiry.to_bytes(5, "big") + nonce + state + account
    tag_key = _derived(f"token/{signed_as or purpose}", key)
    return _b64encode(body + hmac.new(tag_key, body, digest).digest()[:tag_length])


def _fields(token: str) -> dict[str, Any]:
    raw = _b64decode(token)
    return {
        "header": raw[0],
        "expiry": int.from_bytes(raw[1:6], "big"),
        "nonce": raw[6:22],
        "state": raw[22:30],
        "account": raw[30:-16],
        "tag": raw[-16:],
    }


class TestRoundTrip:
    """A token issued for a purpose verifies for that purpose and says what it was for."""

    @pytest.mark.parametrize("purpose", PURPOSES)
    def test_issue_then_verify(self, purpose: TokenPurpose) -> None:
        """The claims name the purpose, the account and the expiry."""
        service = _service()
        token = service.issue(purpose, ACCOUNT, state=STATE, now=T0)
        claims = service.verify(token, purpose, now=T0)
        assert isinstance(claims, TokenClaims)
        assert claims.purpose == purpose
        assert claims.account_id == ACCOUNT
        assert claims.expires_at == T0 + service.lifetime(purpose)
        service.check_state(claims, STATE)

    def test_token_is_url_safe_ascii(self) -> None:
        """A token can go into a URL query unescaped."""
        token = _issue()
        assert token.isascii()
        assert set(token) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
        assert len(token) < TOKEN_MAX_LENGTH

    def test_str_keys_are_utf8_encoded(self) -> None:
        """A ``str`` key signs the same as its UTF-8 bytes."""
        text_key = "k" * 40
        token = TokenService([text_key]).issue("reset", ACCOUNT, state=STATE, now=T0)
        claims = TokenService([text_key.encode()]).verify(token, "reset", now=T0)
        assert claims.account_id == ACCOUNT

    def test_repr_shows_no_key_and_claims_hide_the_id(self) -> None:
        """Neither the service nor the claims show a key, a token id or a digest."""
        service = _service()
        claims = service.verify(_issue(service), "reset", now=T0)
        assert KEY_NEW.hex() not in repr(service)
        assert repr(KEY_NEW) not in repr(service)
        assert claims.token_id not in repr(claims)
        assert "state_digest" not in repr(claims)


class TestFormat:
    """The documented layout, HMAC-SHA-256 tags and a token of at most 100 characters."""

    def test_a_token_is_exactly_the_documented_record(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With the random id fixed, the service writes what the hand-written layout gives."""
        monkeypatch.setattr(secrets, "token_bytes", lambda n: b"\x07" * n)
        assert _issue() == _forge()

    def test_known_answer(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A fixed key, id, time and account give this token: the format does not drift.

        Outstanding links die whenever these bytes change, so a change here is a breaking
        change for every deployment and must be said in the CHANGELOG.
        """
        monkeypatch.setattr(secrets, "token_bytes", lambda n: b"\x07" * n)
        token = _issue(account=HEX_ID, state="stamp-1")
        assert token == KNOWN_ANSWER
        claims = _service().verify(token, "reset", now=T0)
        assert claims.account_id == HEX_ID
        assert claims.token_id == _b64encode(b"\x07" * 16)

    def test_tag_is_a_truncated_sha256_hmac_under_the_purpose_key(self) -> None:
        """The last 16 bytes are HMAC-SHA-256 of the rest under the key derived for the purpose."""
        raw = _b64decode(_issue())
        expected = hmac.new(_derived("token/reset"), raw[:-16], hashlib.sha256).digest()[:16]
        assert raw[-16:] == expected

    def test_sha1_tag_with_the_same_key_is_refused(self) -> None:
        """A genuine record tagged with HMAC-SHA-1 and the right key is refused."""
        with pytest.raises(InvalidTokenError):
            _service().verify(_forge(digest=hashlib.sha1), "reset", now=T0)

    def test_a_tag_cut_shorter_is_refused(self) -> None:
        """A record with a 12-byte tag (even a correct prefix) is refused."""
        with pytest.raises(InvalidTokenError):
            _service().verify(_forge(tag_length=12), "reset", now=T0)

    @pytest.mark.parametrize(
        ("account", "kind", "length"),
        [
            (HEX_ID, "hex", 83),
            (str(uuid.UUID(HEX_ID)), "uuid", 83),
            ("1234567", "decimal", 66),
            ("0", "decimal", 63),
            ("aliya@example.kz", "text", 83),
            ("unknown", "text", 71),
            ("a" * 29, "text", 100),
        ],
    )
    def test_length_and_packing_of_the_account_id(
        self, account: str, kind: str, length: int
    ) -> None:
        """Hex ids and UUIDs take 16 bytes, numbers their digits' bytes, other text its UTF-8."""
        token = _issue(account=account)
        assert len(token) == length
        assert (_fields(token)["header"] >> 2) & 3 == KIND[kind]
        assert _service().verify(token, "reset", now=T0).account_id == account

    def test_the_built_in_stores_ids_give_tokens_of_at_most_100_characters(self) -> None:
        """32 hex digits (the memory, SQLite and SQLAlchemy stores' ids) fit in 100 characters."""
        for purpose in PURPOSES:
            assert len(_issue(purpose=purpose, account=HEX_ID)) <= 100

    @given(
        st.one_of(
            st.text(
                st.characters(blacklist_categories=["Cs"]),
                min_size=1,
                max_size=ACCOUNT_ID_MAX_LENGTH,
            ),
            st.integers(0, 10**40).map(str),
            st.binary(min_size=1, max_size=64).map(bytes.hex),
            st.uuids().map(str),
            st.from_regex(r"0[0-9]{0,20}", fullmatch=True),
        )
    )
    def test_every_account_id_comes_back_exactly(self, account: str) -> None:
        """Whatever its form, the account id a token carries is the one it was issued for."""
        service = _service()
        token = service.issue("reset", account, state=STATE, now=T0)
        assert len(token) <= TOKEN_MAX_LENGTH
        claims = service.verify(token, "reset", now=T0)
        assert claims.account_id == account
        service.check_state(claims, STATE)

    def test_an_account_id_over_the_limit_is_refused(self) -> None:
        """256 characters are accepted, 257 are a programming error."""
        _issue(account="я" * ACCOUNT_ID_MAX_LENGTH)
        with pytest.raises(ValueError, match="account_id"):
            _issue(account="a" * (ACCOUNT_ID_MAX_LENGTH + 1))
        with pytest.raises(ValueError, match="account_id"):
            _issue(account="a\ud800")

    @given(
        st.binary(min_size=16, max_size=16),
        st.datetimes(
            min_value=datetime(1970, 1, 1),
            max_value=datetime(9999, 12, 30),
            timezones=st.just(timezone.utc),
        ),
        st.sampled_from([HEX_ID, "1234567", ACCOUNT, str(uuid.UUID(HEX_ID))]),
    )
    def test_claims_read_straight_from_the_token(
        self, nonce: bytes, now: datetime, account: str
    ) -> None:
        """The token id is the nonce in URL-safe base64 and the expiry its second in UTC,
        as the plain decoding of the record gives (verify reads both from the text)."""
        service = _service()
        with unittest.mock.patch.object(secrets, "token_bytes", return_value=nonce):
            token = service.issue("reset", account, state=STATE, now=now)
        claims = service.verify(token, "reset", now=now)
        fields = _fields(token)
        assert claims.token_id == _b64encode(nonce)
        assert claims.expires_at == datetime.fromtimestamp(fields["expiry"], tz=timezone.utc)

    @given(st.binary(min_size=1, max_size=200), st.binary(max_size=300))
    def test_the_mac_is_hmac_sha256(self, key: bytes, message: bytes) -> None:
        """The precomputed-state HMAC equals the standard library's for any key and message."""
        expected = hmac.digest(key, message, "sha256")
        assert tokens_module._Mac(key).digest(message) == expected


class TestPurposeSalt:
    """Each purpose has its own salt: a token for one is refused as any other."""

    @pytest.mark.parametrize("issued", PURPOSES)
    @pytest.mark.parametrize("used_as", PURPOSES)
    def test_wrong_purpose_is_refused(self, issued: TokenPurpose, used_as: TokenPurpose) -> None:
        """Confirm, reset and SMS-grant tokens only verify as themselves."""
        service = _service()
        token = service.issue(issued, ACCOUNT, state=STATE, now=T0)
        if issued == used_as:
            assert service.verify(token, used_as, now=T0).purpose == issued
        else:
            with pytest.raises(InvalidTokenError):
                service.verify(token, used_as, now=T0)

    def test_header_purpose_must_match_the_key(self) -> None:
        """A record saying "confirm" tagged with the reset key passes as neither."""
        forged = _forge("confirm", signed_as="reset")
        purposes: tuple[TokenPurpose, ...] = ("reset", "confirm")
        for purpose in purposes:
            with pytest.raises(InvalidTokenError):
                _service().verify(forged, purpose, now=T0)

    def test_each_purpose_has_its_own_key(self) -> None:
        """The reset, confirm and grant keys are three different keys."""
        assert len({_derived(f"token/{p}") for p in PURPOSES}) == 3

    def test_unknown_purpose_is_a_programming_error(self) -> None:
        """An unknown purpose raises ValueError at issue, verify and lifetime."""
        service = _service()
        with pytest.raises(ValueError, match="purpose"):
            service.issue("login", ACCOUNT, state=STATE, now=T0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="purpose"):
            service.verify(_issue(service), "login", now=T0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="purpose"):
            service.lifetime("login")  # type: ignore[arg-type]


class TestKeyRotation:
    """Keys are given newest first: the newest signs, every listed key verifies."""

    def test_newest_key_signs(self) -> None:
        """A token from a rotated service verifies with the newest key alone."""
        token = _issue(_service(KEY_NEW, KEY_OLD))
        assert _service(KEY_NEW).verify(token, "reset", now=T0).account_id == ACCOUNT
        with pytest.raises(InvalidTokenError):
            _service(KEY_OLD).verify(token, "reset", now=T0)

    def test_token_signed_with_an_old_key_still_verifies(self) -> None:
        """A link sent before the rotation keeps working, state binding included."""
        token = _issue(_service(KEY_OLD))
        rotated = _service(KEY_NEW, KEY_OLD)
        claims = rotated.verify(token, "reset", now=T0)
        rotated.check_state(claims, STATE)
        with pytest.raises(InvalidTokenError):
            rotated.check_state(claims, STATE + "changed")

    def test_resigned_with_a_key_beyond_rotation_is_refused(self) -> None:
        """A token signed with a key no longer listed fails like any other bad token."""
        token = _issue(_service(KEY_RETIRED))
        with pytest.raises(InvalidTokenError) as caught:
            _service(KEY_NEW, KEY_OLD).verify(token, "reset", now=T0)
        assert type(caught.value) is InvalidTokenError

    def test_payload_resigned_with_retired_key_is_refused(self) -> None:
        """Re-signing a genuine payload with a retired key does not make it valid."""
        resigned = _forge(key=KEY_RETIRED, state=_state_digest("reset", ACCOUNT, STATE))
        with pytest.raises(InvalidTokenError):
            _service(KEY_NEW, KEY_OLD).verify(resigned, "reset", now=T0)

    @pytest.mark.parametrize(
        ("keys", "error"),
        [
            ((), ValueError),
            ((b"short",), ValueError),
            ((KEY_NEW, b"x" * 31), ValueError),
            ((KEY_NEW, 42), TypeError),
        ],
    )
    def test_bad_keys_are_refused(self, keys: tuple[Any, ...], error: type[Exception]) -> None:
        """No keys, a key under 32 bytes or a non-bytes key fails at construction."""
        with pytest.raises(error):
            TokenService(keys)

    @pytest.mark.parametrize("keys", [KEY_NEW, KEY_NEW.hex()])
    def test_a_single_key_must_be_in_a_sequence(self, keys: Any) -> None:
        """A bare bytes/str key is refused (it would be read as a list of characters)."""
        with pytest.raises(ValueError, match="sequence"):
            TokenService(keys)


class TestRandomness:
    """Each token carries at least 128 random bits: its id for the single-use ledger."""

    def test_two_tokens_for_the_same_claims_differ(self) -> None:
        """Same account, state and time: different tokens and token ids."""
        service = _service()
        tokens = {_issue(service) for _ in range(50)}
        assert len(tokens) == 50
        ids = {service.verify(t, "reset", now=T0).token_id for t in tokens}
        assert len(ids) == 50

    def test_token_id_is_128_bits(self) -> None:
        """The token id decodes to 16 random bytes."""
        service = _service()
        claims = service.verify(_issue(service), "reset", now=T0)
        assert len(_b64decode(claims.token_id)) == 16

    def test_a_record_without_an_account_is_refused(self) -> None:
        """A tagged record that ends after the state digest (no account id) is refused."""
        with pytest.raises(InvalidTokenError):
            _service().verify(_forge(account=b""), "reset", now=T0)


class TestExpiry:
    """A token is valid up to and including its expiry second; one second later it is not."""

    @pytest.mark.parametrize("purpose", PURPOSES)
    def test_valid_at_the_expiry_second(self, purpose: TokenPurpose) -> None:
        """At exactly issue time + lifetime the token still verifies."""
        service = _service()
        token = service.issue(purpose, ACCOUNT, state=STATE, now=T0)
        boundary = T0 + service.lifetime(purpose)
        assert service.verify(token, purpose, now=boundary).expires_at == boundary

    @pytest.mark.parametrize("purpose", PURPOSES)
    def test_expired_one_second_past(self, purpose: TokenPurpose) -> None:
        """One second past the expiry the token raises ExpiredTokenError."""
        service = _service()
        token = service.issue(purpose, ACCOUNT, state=STATE, now=T0)
        with pytest.raises(ExpiredTokenError):
            service.verify(
                token, purpose, now=T0 + service.lifetime(purpose) + timedelta(seconds=1)
            )

    def test_expired_is_an_invalid_token(self) -> None:
        """Callers catching InvalidTokenError catch expiry too; the message holds no token."""
        service = _service()
        token = _issue(service)
        with pytest.raises(InvalidTokenError) as caught:
            service.verify(token, "reset", now=T0 + timedelta(days=2))
        assert isinstance(caught.value, ExpiredTokenError)
        assert token not in str(caught.value)

    def test_time_in_another_zone_is_the_same_instant(self) -> None:
        """An aware ``now`` in UTC+05:00 is compared as the same instant."""
        almaty = timezone(timedelta(hours=5))
        service = _service()
        token = service.issue("reset", ACCOUNT, state=STATE, now=T0.astimezone(almaty))
        boundary = (T0 + timedelta(hours=1)).astimezone(almaty)
        service.verify(token, "reset", now=boundary)
        with pytest.raises(ExpiredTokenError):
            service.verify(token, "reset", now=boundary + timedelta(seconds=1))

    def test_naive_time_is_refused(self) -> None:
        """A naive ``now`` is a programming error, not a token failure."""
        service = _service()
        with pytest.raises(ValueError, match="timezone-aware"):
            service.issue("reset", ACCOUNT, state=STATE, now=T0.replace(tzinfo=None))
        with pytest.raises(ValueError, match="timezone-aware"):
            service.verify(_issue(service), "reset", now=T0.replace(tzinfo=None))

    def test_expiry_beyond_what_a_datetime_holds_is_refused(self) -> None:
        """A tagged record expiring in the year 36812 is refused, never a crash."""
        with pytest.raises(InvalidTokenError) as caught:
            _service().verify(_forge(expiry=2**40 - 1), "reset", now=T0)
        assert type(caught.value) is InvalidTokenError

    def test_expiry_at_1970_is_expired(self) -> None:
        """A genuine record that expired at second 0 is expired."""
        with pytest.raises(ExpiredTokenError):
            _service().verify(_forge(expiry=0), "reset", now=T0)

    def test_a_time_before_1970_cannot_be_issued(self) -> None:
        """An expiry before 1970 does not fit the record: a programming error, not a token."""
        with pytest.raises(ValueError, match="range"):
            _issue(now=datetime(1969, 1, 1, tzinfo=timezone.utc))


class TestLifetimes:
    """Defaults: reset 1 hour, confirmation 24 hours; configurable; never over 24 hours."""

    def test_defaults(self) -> None:
        """Reset links live 1 hour, confirmation links 24 hours, SMS grants 10 minutes."""
        service = _service()
        assert service.lifetime("reset") == timedelta(hours=1)
        assert service.lifetime("confirm") == timedelta(hours=24)
        assert service.lifetime("sms_grant") == timedelta(minutes=10)
        assert timedelta(hours=24) == MAX_LIFETIME

    def test_configurable(self) -> None:
        """A configured lifetime sets the expiry; the others keep their defaults."""
        service = TokenService([KEY_NEW], lifetimes={"reset": timedelta(minutes=15)})
        assert service.lifetime("reset") == timedelta(minutes=15)
        assert service.lifetime("confirm") == timedelta(hours=24)
        token = service.issue("reset", ACCOUNT, state=STATE, now=T0)
        service.verify(token, "reset", now=T0 + timedelta(minutes=15))
        with pytest.raises(ExpiredTokenError):
            service.verify(token, "reset", now=T0 + timedelta(minutes=15, seconds=1))

    def test_exactly_24_hours_is_allowed(self) -> None:
        """The cap itself is a valid lifetime."""
        service = TokenService([KEY_NEW], lifetimes={"reset": MAX_LIFETIME})
        assert service.lifetime("reset") == MAX_LIFETIME

    @pytest.mark.parametrize(
        "lifetime",
        [
            timedelta(hours=24, seconds=1),
            timedelta(days=7),
            timedelta(0),
            timedelta(seconds=-1),
            3600,
        ],
    )
    @pytest.mark.parametrize("purpose", PURPOSES)
    def test_out_of_range_is_refused(self, purpose: str, lifetime: object) -> None:
        """Over 24 hours, zero, negative or not a timedelta: ValueError."""
        with pytest.raises(ValueError, match="24 hours"):
            TokenService([KEY_NEW], lifetimes={purpose: lifetime})  # type: ignore[dict-item]

    def test_unknown_purpose_lifetime_is_refused(self) -> None:
        """A lifetime for a purpose that does not exist is a configuration error."""
        with pytest.raises(ValueError, match="purpose"):
            TokenService([KEY_NEW], lifetimes={"login": timedelta(hours=1)})


class TestStateBinding:
    """A token is bound to the account state it was issued for (password hash + e-mail)."""

    def test_same_state_passes(self) -> None:
        """The state given at issue passes the check."""
        service = _service()
        claims = service.verify(_issue(service), "reset", now=T0)
        service.check_state(claims, STATE)

    @pytest.mark.parametrize(
        "state",
        [
            "",
            STATE + " ",
            "$argon2id$new-hash\x00aliya@example.kz",
            "$argon2id$hash-of-A\x00other@example.kz",
            "\ud800",
        ],
    )
    def test_changed_state_fails(self, state: str) -> None:
        """Any other state (new hash, new e-mail, empty, odd text) raises InvalidTokenError."""
        service = _service()
        claims = service.verify(_issue(service), "reset", now=T0)
        with pytest.raises(InvalidTokenError):
            service.check_state(claims, state)

    def test_digest_is_bound_to_account_and_purpose(self) -> None:
        """B's state digest does not pass for A's claims, nor a confirm digest for a reset."""
        service = _service()
        assert _forge() == _forge(state=_fields(_issue(service))["state"])
        b_digest = _fields(_issue(service, account="account-B"))["state"]
        claims = service.verify(_forge(state=b_digest), "reset", now=T0)
        with pytest.raises(InvalidTokenError):
            service.check_state(claims, STATE)
        confirm_digest = _fields(_issue(service, "confirm"))["state"]
        claims = service.verify(_forge(state=confirm_digest), "reset", now=T0)
        with pytest.raises(InvalidTokenError):
            service.check_state(claims, STATE)

    def test_state_with_a_lone_surrogate_can_be_issued_and_checked(self) -> None:
        """Odd state text is hashed, not crashed on."""
        service = _service()
        token = _issue(service, state="\ud800\x00x")
        service.check_state(service.verify(token, "reset", now=T0), "\ud800\x00x")

    @pytest.mark.parametrize(("account", "state"), [("", STATE), (None, STATE), (ACCOUNT, None)])
    def test_issue_refuses_bad_arguments(self, account: Any, state: Any) -> None:
        """An empty account id or a non-str state is a programming error."""
        with pytest.raises((ValueError, TypeError)):
            _service().issue("reset", account, state=state, now=T0)


def _flip(text: str, index: int) -> str:
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


_GOOD = _issue()
_BAD_SHAPES: dict[str, object] = {
    "empty": "",
    "space": " ",
    "10 KB": "a" * 10 * 1024,
    "10 KB of a real token": (_GOOD * 60)[: 10 * 1024],
    "just over the cap": "a" * (TOKEN_MAX_LENGTH + 1),
    "non-ASCII": _GOOD[:-2] + "é",
    "Cyrillic": "токен." + _GOOD,
    "lone surrogate": _GOOD + "\ud800",
    "NUL": _GOOD + "\x00",
    "whitespace around": f" {_GOOD}\n",
    "truncated by one": _GOOD[:-1],
    "truncated to half": _GOOD[: len(_GOOD) // 2],
    "tag only": _GOOD[-22:],
    "record without its tag": _GOOD[:-22],
    "flipped in the record": _flip(_GOOD, 5),
    "flipped in the tag": _flip(_GOOD, len(_GOOD) - 3),
    "a dot added": _GOOD + ".x",
    "a dot in front": "." + _GOOD,
    "padded": _GOOD + "=",
    "standard base64 alphabet": _GOOD.replace("-", "+").replace("_", "/") + "+/",
    "a character the decoder skips": _GOOD[:10] + "!" + _GOOD[10:],
    "the old itsdangerous format": "eyJwIjoicmVzZXQiLCJhIjoiYWNjb3VudC1BIn0.aGVsbG8",
    "bytes": _GOOD.encode("ascii"),
    "bytearray": bytearray(_GOOD.encode("ascii")),
    "None": None,
    "int": 12345,
    "list": [_GOOD],
    "garbage": "not-a-token-at-all",
    "unsigned JSON": base64.urlsafe_b64encode(json.dumps({"p": "reset"}).encode()).decode(),
}


class TestBadTokens:
    """Every malformed token, of any shape or type, raises exactly InvalidTokenError."""

    @pytest.mark.parametrize("token", list(_BAD_SHAPES.values()), ids=list(_BAD_SHAPES))
    @pytest.mark.parametrize("purpose", PURPOSES)
    def test_bad_token_raises_invalid_token(self, token: object, purpose: TokenPurpose) -> None:
        """Garbage, truncations, flips, wrong types: InvalidTokenError, never expiry or crash."""
        with pytest.raises(InvalidTokenError) as caught:
            _service().verify(token, purpose, now=T0)
        assert type(caught.value) is InvalidTokenError
        assert "invalid token" in str(caught.value)

    def test_every_single_character_flip_is_refused(self) -> None:
        """Changing any one character of a real token makes it invalid."""
        service = _service()
        token = _issue(service)
        for index in range(len(token)):
            with pytest.raises(InvalidTokenError):
                service.verify(_flip(token, index), "reset", now=T0)

    @pytest.mark.parametrize(
        "fields",
        [
            {"version": 0},
            {"version": 2},
            {"version": 15},
            {"kind": "decimal", "account": b"\x00\x05"},
            {"kind": "uuid", "account": b"\x01" * 15},
            {"kind": "uuid", "account": b"\x01" * 17},
            {"kind": "text", "account": b"\xff\xfe"},
            {"kind": "text", "account": b"\xed\xa0\x80"},
            {"kind": "text", "account": b"12"},
            {"kind": "text", "account": b"abcd"},
        ],
        ids=[
            "version 0",
            "version 2",
            "version 15",
            "decimal with a leading zero byte",
            "short UUID",
            "long UUID",
            "text not UTF-8",
            "text with an encoded surrogate",
            "text that is a number",
            "text that is hex",
        ],
    )
    def test_malformed_record_with_a_valid_tag(self, fields: dict[str, Any]) -> None:
        """A record tagged with the right key but not as the service writes one is refused."""
        with pytest.raises(InvalidTokenError) as caught:
            _service().verify(_forge(**fields), "reset", now=T0)
        assert type(caught.value) is InvalidTokenError

    def test_error_message_never_repeats_the_token(self) -> None:
        """The exception's message is generic."""
        token = _flip(_issue(), 10)
        with pytest.raises(InvalidTokenError) as caught:
            _service().verify(token, "reset", now=T0)
        assert token not in str(caught.value)
        assert token not in repr(caught.value)


class TestLinkBuilder:
    """Links are built from a configured https:// URL, never from a request."""

    def test_https_link_carries_the_token(self) -> None:
        """The token is the ``token`` query parameter of the configured page."""
        token = _issue()
        link = LinkBuilder("https://portal.example.kz/reset").link(token)
        parts = urlsplit(link)
        assert (parts.scheme, parts.hostname, parts.path) == (
            "https",
            "portal.example.kz",
            "/reset",
        )
        assert parse_qs(parts.query) == {"token": [token]}

    @pytest.mark.parametrize(
        "url",
        [
            "http://portal.example.kz/reset",
            "ftp://portal.example.kz/reset",
            "javascript:alert(1)",
            "//portal.example.kz/reset",
            "/reset",
            "portal.example.kz/reset",
            "https:///reset",
            "https://portal.example.kz/reset#frag",
            "",
        ],
    )
    def test_non_https_urls_are_refused(self, url: str) -> None:
        """Only absolute https:// URLs without a fragment are accepted."""
        with pytest.raises(ValueError, match="https"):
            LinkBuilder(url)

    def test_http_only_with_the_escape_hatch(self) -> None:
        """``allow_insecure_http`` admits http:// (local development), still not ftp://."""
        link = LinkBuilder("http://localhost:8000/reset", allow_insecure_http=True).link("t")
        assert link == "http://localhost:8000/reset?token=t"
        with pytest.raises(ValueError, match="https"):
            LinkBuilder("ftp://localhost/reset", allow_insecure_http=True)

    def test_non_str_url_is_a_type_error(self) -> None:
        """A bytes URL is refused with TypeError."""
        with pytest.raises(TypeError):
            LinkBuilder(b"https://portal.example.kz/reset")  # type: ignore[arg-type]

    def test_existing_query_is_kept(self) -> None:
        """Parameters already in the base URL stay, in order, before the token."""
        builder = LinkBuilder("https://portal.example.kz/reset?lang=kk&flow=email&empty=")
        pairs = parse_qsl(urlsplit(builder.link("abc")).query, keep_blank_values=True)
        assert pairs == [("lang", "kk"), ("flow", "email"), ("empty", ""), ("token", "abc")]

    def test_token_replaces_a_token_parameter(self) -> None:
        """A ``token`` already in the base URL is replaced, never duplicated."""
        builder = LinkBuilder("https://portal.example.kz/reset?token=stale&lang=ru")
        pairs = parse_qsl(urlsplit(builder.link("fresh")).query)
        assert pairs == [("lang", "ru"), ("token", "fresh")]

    def test_token_is_url_encoded(self) -> None:
        """Characters with a meaning in URLs are escaped."""
        link = LinkBuilder("https://portal.example.kz/reset").link("a&b=c#d")
        assert parse_qs(urlsplit(link).query) == {"token": ["a&b=c#d"]}
        assert "#" not in link

    def test_no_host_header_involved(self) -> None:
        """``link`` takes only the token: the host always comes from the configuration."""
        builder = LinkBuilder("https://portal.example.kz:8443/a/reset")
        assert list(inspect.signature(builder.link).parameters) == ["token"]
        for token in ("x", _issue()):
            parts = urlsplit(builder.link(token))
            assert parts.netloc == "portal.example.kz:8443"
            assert parts.path == "/a/reset"
        assert builder.base_url == "https://portal.example.kz:8443/a/reset"
        assert repr(builder) == "LinkBuilder('https://portal.example.kz:8443/a/reset')"


# -- no token material in exception chains (issue 10, item 7) ---------------------------


def _assert_bare(exc: BaseException) -> None:
    """The exception holds no chained exception that could carry the presented token."""
    assert exc.__cause__ is None
    assert exc.__context__ is None


@pytest.mark.parametrize("purpose", PURPOSES)
def test_failures_chain_nothing(purpose: TokenPurpose) -> None:
    service = _service()
    genuine = _issue(service, purpose)
    signature = genuine[-22:]
    flipped = genuine[:-2] + ("A" if genuine[-2] != "A" else "B") + genuine[-1]
    other: TokenPurpose = "reset" if purpose != "reset" else "confirm"
    wrong_purpose = _issue(service, other)
    bad_utf8 = _forge(purpose, account=b"\xff")
    for presented in (
        flipped,
        "garbage",
        "a.b.c",
        "",
        "é" * 10,
        genuine + "x",
        wrong_purpose,
        bad_utf8,
        _forge(purpose, expiry=2**40 - 1),
        _issue(_service(KEY_RETIRED), purpose),
    ):
        with pytest.raises(InvalidTokenError) as caught:
            service.verify(presented, purpose, now=T0)
        _assert_bare(caught.value)
        assert signature not in str(caught.value)


@given(st.text(max_size=300))
def test_arbitrary_text_fails_without_a_chain(text: str) -> None:
    with pytest.raises(InvalidTokenError) as caught:
        _service().verify(text, "reset", now=T0)
    _assert_bare(caught.value)
