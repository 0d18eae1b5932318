"""The Django stores and pages on a user model of the host's own (run in its own process).

``members.Member`` logs in by e-mail (``USERNAME_FIELD == EMAIL_FIELD``), has a UUID key and
no user name column: the contract suite and the e-mail flow must work on it unchanged.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import django
import pytest

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core import mail  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

import _django_setup  # noqa: E402
from kaspi_identity._errors import DuplicateAccountError  # noqa: E402
from kaspi_identity.contrib.django.models import Identity  # noqa: E402
from kaspi_identity.contrib.django.storage import DjangoAccountStore, django_storage  # noqa: E402
from kaspi_identity.storage import NewAccount, Storage  # noqa: E402
from kaspi_identity.testing import StorageContract  # noqa: E402
from kaspi_identity.testing._contracts import T0  # noqa: E402

Member: Any = get_user_model()
PASSWORD, NEW = "Qz7!kaspi-Portal", "Wm4#Almaty-Steppe"


@pytest.fixture(scope="session", autouse=True)
def _database() -> Iterator[None]:
    setup_test_environment()
    name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    yield
    gc.collect()
    connection.creation.destroy_test_db(name, verbosity=0)


@pytest.fixture(autouse=True)
def _empty() -> Iterator[None]:
    _django_setup.empty()
    mail.outbox = []
    yield
    _django_setup.empty()


class TestStorageOnMember(StorageContract):
    """Every contract, with accounts on ``members.Member``."""

    @pytest.fixture
    def storage(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[Storage]:
        """The Django bundle; racing threads close their connections."""
        _django_setup.close_thread_connections(monkeypatch)
        yield django_storage()
        gc.collect()
        _django_setup.mend_history("default")

    def break_history_writes(self, storage: Storage) -> None:
        """A trigger that aborts every history write."""
        _django_setup.break_history(storage)


def test_the_member_row_holds_the_email_and_no_user_name() -> None:
    """The e-mail is the member's; the user name lives on the identity alone."""
    accounts = DjangoAccountStore()
    created = accounts.create(NewAccount(username="Aliya", email="A@example.kz"), now=T0)
    member = Member.objects.get(pk=created.id)
    assert member.email == "A@example.kz"
    assert Identity.objects.get(pk=member.pk).username == "Aliya"
    phone_only = accounts.create(NewAccount(phone="+77011234567"), now=T0)
    assert Member.objects.get(pk=phone_only.id).email is None  # NULL, so no clash
    assert accounts.create(NewAccount(phone="+77019999999"), now=T0).email is None


def test_update_contact_on_the_member_row() -> None:
    """The member's unique, nullable e-mail follows the contact: NULL for none; a bare
    member holding the address refuses it as a duplicate, and nothing is written."""
    accounts = DjangoAccountStore()
    created = accounts.create(NewAccount(email="a@example.kz", phone="+77011234567"), now=T0)
    phone_only = accounts.update_contact(
        created.id,
        expected_stamp=created.security_stamp,
        contact=replace(created.contact, email=None),
    )
    assert phone_only is not None
    assert Member.objects.get(pk=created.id).email is None
    assert accounts.create(NewAccount(phone="+77019999999"), now=T0).email is None
    bare = Member.objects.create_user("taken@example.kz")
    Identity.objects.filter(pk=bare.pk).delete()
    with pytest.raises(DuplicateAccountError) as caught:
        accounts.update_contact(
            created.id,
            expected_stamp=phone_only.security_stamp,
            contact=replace(phone_only.contact, email="taken@example.kz", time_zone="UTC"),
        )
    assert caught.value.field == "email"
    assert accounts.get(created.id) == phone_only
    assert Member.objects.get(pk=created.id).email is None


def _link() -> str:
    found = re.search(r"https://portal\.example\.kz(/\S+)", str(mail.outbox[-1].body))
    assert found is not None
    return found.group(1)


def test_register_confirm_log_in_reset() -> None:
    """The e-mail flow end to end; the other session ends."""
    visitor = Client()
    form = {"email": "aliya@example.kz", "password": PASSWORD, "confirmation": PASSWORD}
    assert visitor.post("/accounts/register/", form).status_code == 200
    visitor.get(_link())
    assert visitor.post("/accounts/confirm/").status_code == 200
    session = Client()
    answer = session.post(
        "/accounts/login/", {"identifier": "aliya@example.kz", "password": PASSWORD}
    )
    assert answer.status_code == 302
    assert session.get("/accounts/password/change/").status_code == 200
    Client().post("/accounts/password/forgot/", {"identifier": "aliya@example.kz"})
    stranger = Client()
    stranger.get(_link())
    done = stranger.post("/accounts/password/reset/", {"password": NEW, "confirmation": NEW})
    assert done.status_code == 200
    assert session.get("/accounts/password/change/").status_code == 302
