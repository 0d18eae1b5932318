"""Settings of the account and recovery services."""

from __future__ import annotations

import functools
import zoneinfo
from dataclasses import dataclass, field
from datetime import timedelta, tzinfo
from typing import Final

from kaspi_identity._keys import check_secret_keys
from kaspi_identity.tokens import (
    _DEFAULT_LIFETIMES,
    UNDO_MAX_LIFETIME,
    LinkBuilder,
    _check_lifetime,
)

__all__ = ["IdentitySettings", "RateLimit"]

#: NIST SP 800-63B-4 (RL-2): no more than 100 consecutive failed attempts on one account.
NIST_MAX_FAILURES: Final = 100
#: NIST SP 800-63B-4 (OBV-3): an out-of-band secret lives at most 10 minutes.
SMS_CODE_MAX_LIFETIME: Final = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` events per ``window``."""

    limit: int
    window: timedelta

    def __post_init__(self) -> None:
        if not isinstance(self.limit, int) or isinstance(self.limit, bool) or self.limit < 1:
            raise ValueError("RateLimit.limit must be a positive integer")
        if not isinstance(self.window, timedelta) or self.window <= timedelta(0):
            raise ValueError("RateLimit.window must be a positive timedelta")


@functools.lru_cache(maxsize=32)
def _zone(name: str) -> tzinfo:
    """The :class:`zoneinfo.ZoneInfo` called ``name``.

    Raises:
        ValueError: ``name`` is no IANA time zone this system (or ``tzdata``) knows.
    """
    if not isinstance(name, str) or not name or len(name) > 64:
        raise ValueError("time_zone must be an IANA zone name such as 'Asia/Almaty'")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"time_zone {name!r} is not a known IANA zone (on a system without zone data"
            " install tzdata: pip install tzdata)"
        ) from None


@dataclass(frozen=True, slots=True)
class IdentitySettings:
    """Everything the services need to know about the deployment.

    Args:
        secret_keys: server-side keys, **newest first**, at least 32 bytes each. They sign
            link tokens and key the history fingerprints, rate-limit keys and SMS code
            hashes (each use derives its own key). Keep them out of the database. To
            rotate, put a new key first and keep the old ones for at least the longest
            rate-limit window (24 hours with the defaults): links, codes and rate-limit
            counts made under an older key keep working until it is dropped. At most 8.
        confirm_url: the ``https://`` page that opens e-mail confirmation links.
        reset_url: the ``https://`` page that opens password-reset links.
        site_name: the portal's name, used in letters and SMS.
        reset_link_lifetime: how long a reset link works (default 1 hour, at most 24).
        confirm_link_lifetime: how long a confirmation link works (default 24 hours, at most 24).
        backoff_after: consecutive failed logins before each further attempt must wait.
        backoff_base: the first wait; it doubles with each further failure...
        backoff_max: ...up to this.
        lockout_after: consecutive failed logins after which the account can only be
            recovered by a password reset (at most 100, NIST SP 800-63B-4).
        reset_per_identifier: reset requests allowed per identifier (the normalised user
            name, e-mail or phone typed) and, separately, per account found.
        reset_per_client: reset requests allowed per client key (e.g. an IP address).
        login_per_client: log-in attempts (and current-password checks of a change of
            password) allowed per client key. Every attempt counts, before its password is
            verified, so parallel requests cannot exceed it. Default 20 a minute: allauth's
            ``login_failed`` 10 a minute counts only failures, and this counts successes too.
        login_per_identifier: log-in attempts allowed per normalised identifier, known or
            not (the account's own back-off and lockout come on top). Default 10 per 5
            minutes (allauth: 5 failures per 5 minutes).
        register_per_client: registrations allowed per client key (default 20 an hour).
        register_per_identifier: registrations allowed per normalised e-mail, phone or user
            name (default 5 an hour).
        allow_insecure_http: accept ``http://`` link URLs — local development only.
        phone_region: the region a phone number without ``+`` is read in (default "KZ").
        phone_regions: the regions whose numbers may receive SMS (default only "KZ").
        sms_code_digits: digits of an SMS code, 6 to 8 (default 6).
        sms_code_lifetime: how long a code works (default 5 minutes, at most 10 — NIST
            SP 800-63B-4 OBV-3).
        sms_max_attempts: wrong codes after which the code is dead (default 5).
        sms_failure_window: how long wrong attempts are remembered; requesting a new code
            does not reset them (NIST OBV-7). Default 24 hours.
        sms_cooldown: the wait between two codes to one phone (default 60 seconds).
        sms_per_phone_daily: codes one phone may receive per day (default 5).
        sms_per_client_daily: codes one client key may request per day (default 20).
        sms_grant_lifetime: how long the grant from a verified code works (default 10 minutes).
        breach_recheck_interval: how often a successful log-in checks the password against
            the policy's ``breached`` sources again (at most once per interval and account;
            default 24 hours). A password found there makes the log-in ask for a change.
        time_zone: the IANA zone times in letters are written in (default ``"Asia/Almaty"``;
            read with :mod:`zoneinfo`, from the operating system's zone data or the
            ``tzdata`` package where the system has none, as on Windows). An account's own
            ``time_zone`` wins over it.
        email_change_url: the page that takes the token of a change-of-address link
            (``?token=`` is added); default: ``confirm_url`` (one page can tell the purposes
            apart by trying :meth:`~IdentityService.confirm_email_change` after
            :meth:`~IdentityService.confirm_email`).
        email_undo_url: the page that takes the token of an undo link sent to the old
            address (it calls :meth:`~IdentityService.undo_email_change`). Required for the
            change of address: without it :meth:`~IdentityService.request_email_change`
            raises, since a reset page cannot take an undo token (each purpose has its own
            key) and the old address would get a way back that does not work.
        email_change_link_lifetime: how long a link to confirm a new address works
            (default 24 hours, at most 24).
        email_undo_lifetime: how long the old address can undo a change (default 3 days;
            from 1 to 7 days: the letter says it in whole days, rounded down).
    """

    secret_keys: tuple[bytes, ...] = field(repr=False)
    confirm_url: str
    reset_url: str
    site_name: str = "kaspi-identity"
    reset_link_lifetime: timedelta = _DEFAULT_LIFETIMES["reset"]
    confirm_link_lifetime: timedelta = _DEFAULT_LIFETIMES["confirm"]
    backoff_after: int = 5
    backoff_base: timedelta = timedelta(seconds=1)
    backoff_max: timedelta = timedelta(minutes=15)
    lockout_after: int = 50
    reset_per_identifier: RateLimit = RateLimit(5, timedelta(hours=1))
    reset_per_client: RateLimit = RateLimit(20, timedelta(hours=1))
    login_per_client: RateLimit = RateLimit(20, timedelta(minutes=1))
    login_per_identifier: RateLimit = RateLimit(10, timedelta(minutes=5))
    register_per_client: RateLimit = RateLimit(20, timedelta(hours=1))
    register_per_identifier: RateLimit = RateLimit(5, timedelta(hours=1))
    allow_insecure_http: bool = False
    phone_region: str = "KZ"
    phone_regions: tuple[str, ...] = ("KZ",)
    sms_code_digits: int = 6
    sms_code_lifetime: timedelta = timedelta(minutes=5)
    sms_max_attempts: int = 5
    sms_failure_window: timedelta = timedelta(hours=24)
    sms_cooldown: timedelta = timedelta(seconds=60)
    sms_per_phone_daily: int = 5
    sms_per_client_daily: int = 20
    sms_grant_lifetime: timedelta = _DEFAULT_LIFETIMES["sms_grant"]
    breach_recheck_interval: timedelta = timedelta(hours=24)
    time_zone: str = "Asia/Almaty"
    email_change_url: str | None = None
    email_undo_url: str | None = None
    email_change_link_lifetime: timedelta = _DEFAULT_LIFETIMES["email_change"]
    email_undo_lifetime: timedelta = _DEFAULT_LIFETIMES["email_undo"]

    def __post_init__(self) -> None:
        try:
            normal = check_secret_keys(self.secret_keys, text=True)
        except TypeError:  # a settings mistake like any other: ValueError, as it always was
            raise ValueError("each secret key must be at least 32 bytes") from None
        if len(normal) > 8:
            raise ValueError("at most 8 secret keys: drop the oldest once rotated out")
        object.__setattr__(self, "secret_keys", normal)
        for name in ("confirm_url", "reset_url", "email_change_url", "email_undo_url"):
            url = getattr(self, name)
            if url is not None or name in ("confirm_url", "reset_url"):
                LinkBuilder(url, allow_insecure_http=self.allow_insecure_http)
        for name in ("reset_link_lifetime", "confirm_link_lifetime", "email_change_link_lifetime"):
            _check_lifetime(getattr(self, name), name)
        _check_lifetime(self.email_undo_lifetime, "email_undo_lifetime", longest=UNDO_MAX_LIFETIME)
        if self.email_undo_lifetime < timedelta(days=1):  # the letter counts it in days
            raise ValueError("email_undo_lifetime must be at least 1 day and at most 7 days")
        if not 1 <= self.lockout_after <= NIST_MAX_FAILURES:
            raise ValueError(f"lockout_after must be from 1 to {NIST_MAX_FAILURES}")
        if not 1 <= self.backoff_after <= self.lockout_after:
            raise ValueError("backoff_after must be from 1 to lockout_after")
        if self.backoff_base <= timedelta(0) or self.backoff_max < self.backoff_base:
            raise ValueError("backoff_base must be positive and at most backoff_max")
        if not isinstance(self.site_name, str) or not self.site_name.strip():
            raise ValueError("site_name must be a non-empty string")
        if not 6 <= self.sms_code_digits <= 8:
            raise ValueError("sms_code_digits must be from 6 to 8")
        if not timedelta(0) < self.sms_code_lifetime <= SMS_CODE_MAX_LIFETIME:
            raise ValueError("sms_code_lifetime must be positive and at most 10 minutes")
        if not 1 <= self.sms_max_attempts <= 10:
            raise ValueError("sms_max_attempts must be from 1 to 10")
        _check_lifetime(self.sms_grant_lifetime, "sms_grant_lifetime")
        for name in ("sms_failure_window", "sms_cooldown", "breach_recheck_interval"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be positive")
        for name in ("sms_per_phone_daily", "sms_per_client_daily"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if isinstance(self.phone_regions, str):  # tuple("KZ") would be ("K", "Z")
            raise TypeError("phone_regions must be a tuple of region codes such as ('KZ',)")
        object.__setattr__(self, "phone_regions", tuple(self.phone_regions))
        _zone(self.time_zone)

    @property
    def zone(self) -> tzinfo:
        """:attr:`time_zone` as a :class:`zoneinfo.ZoneInfo` (letters show times in it)."""
        return _zone(self.time_zone)

    def backoff(self, failures: int) -> timedelta:
        """How long to wait after ``failures`` consecutive failures (zero below the threshold)."""
        if failures < self.backoff_after:
            return timedelta(0)
        steps = min(failures - self.backoff_after, 32)
        wait: timedelta = min(self.backoff_base * (2**steps), self.backoff_max)
        return wait
