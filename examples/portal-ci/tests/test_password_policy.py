"""Our portal proves its password rules in CI: the compliance report, then our own flows.

The ``kaspi_*`` fixtures come from the kaspi-identity pytest plugin, which pytest loads by
itself once kaspi-identity is installed.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from kaspi_identity import PasswordPolicy, UserInfo
from kaspi_identity.services import IdentityService
from kaspi_identity.testing import passwords, run_compliance, violating_passwords

POLICY = PasswordPolicy.from_toml(Path(__file__).parents[1] / "identity.toml")
#: Who is asking, for the rate limits (a web view would pass the client's IP address).
CLIENT = "192.0.2.10"
EMAIL = "aliya.nurlanova@example.kz"
ALIYA = UserInfo(email=EMAIL)

# The service fixture lives for one test; the examples of one test share it.
FLOWS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def kaspi_policy() -> PasswordPolicy:
    """The service under test enforces our policy, not the library default."""
    return POLICY


def test_compliance_report() -> None:
    """The checks of ``kaspi-identity compliance --policy identity.toml`` all pass."""
    out = io.StringIO()
    assert run_compliance(POLICY, out=out, examples=50) == 0, out.getvalue()


@FLOWS
@given(password=passwords(POLICY, user=ALIYA))
def test_registration_accepts_every_valid_password(
    kaspi_identity_service: IdentityService, password: str
) -> None:
    """Whatever password the rules allow, sign-up takes it."""
    result = kaspi_identity_service.register(
        email=EMAIL, password=password, confirmation=password, client_key=CLIENT
    )
    assert result.ok, result.policy.messages("en")


@FLOWS
@given(password=violating_passwords(POLICY, "missing_special"))
def test_registration_explains_a_missing_special_character_in_kazakh(
    kaspi_identity_service: IdentityService, password: str
) -> None:
    """A password without a special character is refused, and the form can say why in kk."""
    result = kaspi_identity_service.register(
        email=EMAIL, password=password, confirmation=password, language="kk", client_key=CLIENT
    )
    assert not result.ok
    assert "missing_special" in result.policy.codes
    assert all(message and "{" not in message for message in result.policy.messages("kk"))


@FLOWS
@given(password=violating_passwords(POLICY, "contains_personal_info", user=ALIYA))
def test_registration_refuses_the_users_own_name(
    kaspi_identity_service: IdentityService, password: str
) -> None:
    """A password holding the e-mail's local part ("aliya", "nurlanova") is refused."""
    result = kaspi_identity_service.register(
        email=EMAIL, password=password, confirmation=password, client_key=CLIENT
    )
    assert "contains_personal_info" in result.policy.codes
