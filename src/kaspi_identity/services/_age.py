"""The password's age: when it expires, when log-in warns, when it may be changed again.

Pure functions of the policy's age keys (``max_age_days``, ``expiry_warning_days``,
``grace_logins``, ``min_age_hours``) and the account's ``password_changed_at``,
``must_change_password`` and ``grace_logins_used``; the log-in and change flows act on
what they say. An account whose store keeps no change time (``password_changed_at is
None``) has no known age: no maximum or minimum age applies to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from kaspi_identity.policy import PasswordPolicy
from kaspi_identity.storage import Account

__all__ = ["PasswordAge", "age_of", "changeable_at"]


@dataclass(frozen=True, slots=True)
class PasswordAge:
    """Where an account's password stands against the policy's maximum age at ``now``.

    ``expires_at`` is ``None`` without a maximum age (or a known change time).
    ``expired``: on or past ``expires_at``. ``expiring``: inside the warning window.
    ``grace_left``: the log-ins an expired password still has (0 when it has none).
    """

    expires_at: datetime | None = None
    expired: bool = False
    expiring: bool = False
    grace_left: int = 0


def age_of(policy: PasswordPolicy, account: Account, now: datetime) -> PasswordAge:
    """The age verdict of ``account``'s password under ``policy`` at ``now``."""
    changed = account.password_changed_at
    if policy.max_age_days is None or changed is None:
        return PasswordAge()
    expires_at = changed + timedelta(days=policy.max_age_days)
    if now >= expires_at:
        left = max((policy.grace_logins or 0) - account.grace_logins_used, 0)
        return PasswordAge(expires_at, expired=True, grace_left=left)
    warning = policy.expiry_warning_days
    expiring = warning is not None and now >= expires_at - timedelta(days=warning)
    return PasswordAge(expires_at, expiring=expiring)


def changeable_at(policy: PasswordPolicy, account: Account, now: datetime) -> datetime | None:
    """When the account's user may change the password again, or ``None`` if now.

    ``min_age_hours`` keeps a new password for a while, so nobody changes it ``history``
    times in a row to get an old one back. A change the account must make (the
    must-change flag, an expired password) is never held back.
    """
    changed = account.password_changed_at
    if policy.min_age_hours is None or changed is None or account.must_change_password:
        return None
    if age_of(policy, account, now).expired:
        return None
    until = changed + timedelta(hours=policy.min_age_hours)
    return until if now < until else None
