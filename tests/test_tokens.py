"""Signed link tokens and link URLs (issue 4): ``kaspi_identity.tokens``.

Every failure of a token is one exception type, :class:`InvalidTokenError`; expiry is the
subclass :class:`ExpiredTokenError`, used only for the message shown to the user.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer

from kaspi_identity._errors import ExpiredTokenError, InvalidTokenError
from kaspi_identity.tokens import (
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
SALT_PREFIX = "kaspi-identity.token."


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


def _same_key_serializer(purpose: str, key: bytes = KEY_NEW) -> URLSafeSerializer:
    """A serializer that signs exactly as TokenService does (SHA-256, HMAC, same salt)."""
    return URLSafeSerializer(
        key,
        salt=SALT_PREFIX + purpose,
        signer_kwargs={"digest_method": hashlib.sha256, "key_derivation": "hmac"},
    )


def _valid_payload(purpose: str = "reset") -> dict[str, Any]:
    token = _issue(purpose=purpose)  # type: ignore[arg-type]
    loaded: dict[str, Any] = _same_key_serializer(purpose).loads(token)
    return loaded


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
        assert set(token) <= set(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."
        )
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


class TestSha256:
    """Tokens are signed with HMAC-SHA-256, never itsdangerous's SHA-1 default."""

    def test_signature_is_a_sha256_digest(self) -> None:
        """The signature decodes to 32 bytes: a SHA-256 HMAC, not a 20-byte SHA-1."""
        signature = _issue().rsplit(".", 1)[1]
        assert len(_b64decode(signature)) == hashlib.sha256().digest_size

    def test_matches_a_sha256_hmac_serializer(self) -> None:
        """A serializer configured for SHA-256 and HMAC derivation reads the token."""
        payload = _same_key_serializer("reset").loads(_issue())
        assert payload["a"] == ACCOUNT

    @pytest.mark.parametrize("key_derivation", ["hmac", "django-concat"])
    def test_sha1_signed_token_with_the_same_key_is_refused(self, key_derivation: str) -> None:
        """A genuine payload signed with SHA-1 and the right key and salt is refused."""
        sha1 = URLSafeSerializer(
            KEY_NEW,
            salt=SALT_PREFIX + "reset",
            signer_kwargs={"digest_method": hashlib.sha1, "key_derivation": key_derivation},
        )
        forged = sha1.dumps(_valid_payload())
        with pytest.raises(InvalidTokenError):
            _service().verify(forged, "reset", now=T0)


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

    def test_payload_purpose_must_match_the_salt(self) -> None:
        """Even signed under the reset salt, a payload saying "confirm" is refused."""
        payload = _valid_payload("reset")
        payload["p"] = "confirm"
        forged = _same_key_serializer("reset").dumps(payload)
        with pytest.raises(InvalidTokenError):
            _service().verify(forged, "reset", now=T0)

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
        resigned = _same_key_serializer("reset", KEY_RETIRED).dumps(_valid_payload())
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

    @pytest.mark.parametrize("nonce", [b"", b"\x00" * 15, b"\x00" * 17])
    def test_short_or_long_ids_are_refused(self, nonce: bytes) -> None:
        """A payload whose id is not exactly 16 bytes is refused, even when signed."""
        payload = _valid_payload()
        payload["n"] = base64.urlsafe_b64encode(nonce).decode().rstrip("=")
        forged = _same_key_serializer("reset").dumps(payload)
        with pytest.raises(InvalidTokenError):
            _service().verify(forged, "reset", now=T0)


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

    @pytest.mark.parametrize("expiry", ["1767261600", 1.5, True, None, 10**30, -(10**30)])
    def test_malformed_expiry_in_a_signed_payload_is_refused(self, expiry: object) -> None:
        """A signed payload whose expiry is not a sane int is refused, never a crash."""
        payload = _valid_payload()
        payload["e"] = expiry
        forged = _same_key_serializer("reset").dumps(payload)
        with pytest.raises(InvalidTokenError):
            _service().verify(forged, "reset", now=T0)


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
        token_b = _issue(service, account="account-B")
        payload = _same_key_serializer("reset").loads(_issue(service))
        payload["s"] = _same_key_serializer("reset").loads(token_b)["s"]
        claims = service.verify(_same_key_serializer("reset").dumps(payload), "reset", now=T0)
        with pytest.raises(InvalidTokenError):
            service.check_state(claims, STATE)
        confirm = _same_key_serializer("confirm").loads(_issue(service, "confirm"))
        payload["s"] = confirm["s"]
        claims = service.verify(_same_key_serializer("reset").dumps(payload), "reset", now=T0)
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
    "signature only": _GOOD.rsplit(".", 1)[1],
    "payload only": _GOOD.rsplit(".", 1)[0],
    "no signature": _GOOD.rsplit(".", 1)[0] + ".",
    "flipped in payload": _flip(_GOOD, 5),
    "flipped in signature": _flip(_GOOD, len(_GOOD) - 3),
    "two dots": _GOOD + ".x",
    "compressed marker": "." + _GOOD,
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
        "payload",
        [
            [],
            "reset",
            42,
            None,
            {},
            {"p": "reset"},
            {"p": "reset", "a": ACCOUNT, "n": "x", "e": 1},
        ],
        ids=["list", "str", "int", "null", "empty", "purpose only", "no state"],
    )
    def test_wrong_payload_shape_with_a_valid_signature(self, payload: object) -> None:
        """A serializer with the same key and salt signing a wrong shape is refused."""
        forged = _same_key_serializer("reset").dumps(payload)
        with pytest.raises(InvalidTokenError):
            _service().verify(forged, "reset", now=T0)

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("a", ""),
            ("a", 7),
            ("a", None),
            ("n", 7),
            ("n", "!!!!"),
            ("s", 7),
            ("s", "AAAA"),
            ("s", "é"),
        ],
    )
    def test_wrong_field_in_a_signed_payload(self, field: str, value: object) -> None:
        """One wrong field in an otherwise genuine signed payload is refused."""
        payload = _valid_payload()
        payload[field] = value
        forged = _same_key_serializer("reset").dumps(payload)
        with pytest.raises(InvalidTokenError):
            _service().verify(forged, "reset", now=T0)

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
    body, _, signature = genuine.rpartition(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    other: TokenPurpose = "reset" if purpose != "reset" else "confirm"
    wrong_purpose = _issue(service, other)
    bad_json = _same_key_serializer(purpose).dumps(["not", "a", "dict"])
    for presented in (
        body + "." + flipped,  # a bad signature: itsdangerous raises BadSignature inside
        "garbage",
        "a.b.c",
        "",
        "é" * 10,
        genuine + "x",
        wrong_purpose,
        bad_json,
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
