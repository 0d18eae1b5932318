"""``kaspi-identity demo``: the whole account lifecycle on the embedded SQLite default.

Every step runs through :class:`~kaspi_identity.services.IdentityService` exactly as a portal
would call it, against a SQLite file with a durable outbox: each letter and SMS is queued with
the change it tells of, and an :class:`~kaspi_identity.services.OutboxWorker` thread delivers
it to a console sender that prints it.
Each step checks its outcome; the demo exits 0 only if every one behaved as expected.
"""

from __future__ import annotations

import os
import random
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TextIO
from urllib.parse import parse_qs, urlsplit

from kaspi_identity._errors import InvalidTokenError
from kaspi_identity.delivery import (
    ConsoleSender,
    EmailMessage,
    Outbox,
    SmsMessage,
    extract_code,
    extract_link,
)
from kaspi_identity.i18n import render
from kaspi_identity.policy import PasswordPolicy, UserInfo
from kaspi_identity.services import IdentityService, IdentitySettings, OutboxWorker
from kaspi_identity.storage import Storage
from kaspi_identity.storage.sqlite import sqlite_storage

__all__ = ["run_demo"]

# Candidate passwords for each step; the first one the chosen policy accepts is used, so the
# demo runs under any preset (kz-procurement wants specials, utility-cabinet forbids them,
# nist wants 15 characters).
_WEAK = ("summer", "sum", "1")
_FIRST = ("Summer2023!", "Summer2023", "Summer-rain-2023!", "Summer rain over Almaty 2023!")
_BY_EMAIL = ("Tulip#Garden7", "Tulip7Gard", "Tulip-garden-by-the-steppe-47")
_BY_SMS = ("Steppe&Eagle42", "Steppe42Eg", "Steppe-eagle-above-Altai-42")
_DEMO_SMS_COOLDOWN = timedelta(milliseconds=200)
_AFTER_UNDO = ("Charyn@Canyon9", "Charyn9Cny", "Charyn-canyon-after-the-rain-9")


class _Tee:
    """Prints every message (ConsoleSender) and keeps it (Outbox) so the demo can use it."""

    def __init__(self, stream: TextIO, language: str = "en") -> None:
        self.console = ConsoleSender(stream, language=language)
        self.outbox = Outbox()

    def send_email(self, message: EmailMessage) -> None:
        self.console.send_email(message)
        self.outbox.send_email(message)

    def send_sms(self, message: SmsMessage) -> None:
        self.console.send_sms(message)
        self.outbox.send_sms(message)


class _StepFailed(Exception):
    """A step did not behave as the demo expected."""


def _pick(policy: PasswordPolicy, candidates: Sequence[str], user: UserInfo, seed: int) -> str:
    for candidate in candidates:
        if policy.check(candidate, user=user):
            return candidate
    # An unusual policy file: fall back to a password built to meet its rules.
    rng = random.Random(seed)  # noqa: S311 - demo data, not a secret
    low = policy.min_length or 12
    for _ in range(50):
        example = policy._example(
            rng, max(low, 16 if policy.max_length is None else min(16, policy.max_length))
        )
        if example is not None and policy.check(example, user=user):
            return example
    raise _StepFailed("no demo password satisfies this policy")


def _token(message: EmailMessage) -> str:
    link = extract_link(message)
    if link is None:
        raise _StepFailed("the letter holds no link")
    tokens = parse_qs(urlsplit(link).query).get("token")
    if not tokens:
        raise _StepFailed("the link holds no token")
    return tokens[0]


@contextmanager
def _database(db: str | os.PathLike[str] | None) -> Iterator[Path]:
    if db is not None:
        yield Path(db)
        return
    with tempfile.TemporaryDirectory(prefix="kaspi-identity-demo-") as tmp:
        yield Path(tmp, "identity.sqlite3")


def run_demo(
    *,
    policy: PasswordPolicy,
    policy_name: str,
    lang: str,
    out: TextIO,
    db: str | os.PathLike[str] | None = None,
) -> int:
    """Run the lifecycle, narrating to ``out`` in ``lang``; 0 if every step behaved, else 1."""
    with _database(db) as path:
        storage = sqlite_storage(path, outbox=True)
        try:
            _lifecycle(
                storage_path=path,
                storage=storage,
                policy=policy,
                name=policy_name,
                lang=lang,
                out=out,
            )
        except _StepFailed as exc:
            print(render("demo.failure", lang, step=str(exc)), file=out)
            return 1
        finally:
            storage.close()
    print(render("demo.success", lang), file=out)
    return 0


def _lifecycle(
    *,
    storage_path: Path,
    storage: Storage,
    policy: PasswordPolicy,
    name: str,
    lang: str,
    out: TextIO,
) -> None:
    step = iter(range(1, 100))

    def say(key: str, **params: object) -> None:
        _delivered(storage)  # the worker thread's letters print before the next line
        print(f"\n[{next(step)}] " + render(key, lang, count=None, **params), file=out)

    def bullets(lines: Sequence[str]) -> None:
        for line in lines:
            print(f"    - {line}", file=out)

    tee = _Tee(out, lang)
    settings = IdentitySettings(
        secret_keys=(secrets.token_bytes(32),),
        confirm_url="https://portal.example.kz/confirm",
        reset_url="https://portal.example.kz/reset",
        email_change_url="https://portal.example.kz/email/confirm",
        email_undo_url="https://portal.example.kz/email/undo",
        site_name="portal.example.kz",
        # One SMS per number per cooldown, whichever flow sends it: the demo proves the
        # phone and then resets by SMS within seconds, so its cooldown is short.
        sms_cooldown=_DEMO_SMS_COOLDOWN,
    )
    service = IdentityService(storage, settings, email_sender=tee, sms_sender=tee, policy=policy)
    worker = OutboxWorker(service)
    worker.start(poll=0.02)
    try:
        _steps(service, storage, policy, name, lang, out, tee, say, bullets, storage_path)
    finally:
        worker.stop()


def _delivered(storage: Storage) -> None:
    """Wait (10 s at most) until the worker thread has sent everything queued."""
    queue = storage.outbox
    assert queue is not None  # the demo's storage has one; not a security check
    deadline = time.monotonic() + 10
    while queue.list(status="pending", limit=1) and time.monotonic() < deadline:
        time.sleep(0.01)
    if queue.list(status="pending", limit=1):
        raise _StepFailed("the outbox worker did not deliver the queued letters")


def _steps(
    service: IdentityService,
    storage: Storage,
    policy: PasswordPolicy,
    name: str,
    lang: str,
    out: TextIO,
    tee: _Tee,
    say: Callable[..., None],
    bullets: Callable[[Sequence[str]], None],
    storage_path: Path,
) -> None:
    suffix = secrets.randbelow(10**4)
    email = f"aigerim.{suffix:04d}@example.kz"
    phone = f"8 (701) {secrets.randbelow(10**3):03d}-{suffix // 100:02d}-{suffix % 100:02d}"
    user = UserInfo(email=email, phone=phone, names=("Айгерим",))

    print(render("demo.title", lang, db=str(storage_path)), file=out)
    print(render("demo.outbox", lang), file=out)
    print("\n" + render("demo.policy", lang, name=name), file=out)
    bullets(policy.describe(lang))

    weak = next((p for p in _WEAK if not policy.check(p, user=user)), None)
    if weak is not None:
        rejected = service.register(
            email=email,
            phone=phone,
            password=weak,
            confirmation=weak,
            language=lang,
            client_key="demo",
        )
        if rejected.ok:
            raise _StepFailed("a weak password was accepted at registration")
        say("demo.register_rejected", email=email, password=weak)
        bullets(rejected.policy.messages(lang))

    first = _pick(policy, _FIRST, user, 1)
    say("demo.register_accepted", password=first)
    registered = service.register(
        email=email,
        phone=phone,
        password=first,
        confirmation=first,
        language=lang,
        names=("Айгерим",),
        client_key="demo",
    )
    if not registered.ok:
        raise _StepFailed(
            "registration was refused: " + "; ".join(registered.policy.messages(lang))
        )
    _delivered(storage)
    letter = tee.outbox.last_email(to=email)
    if letter is None or letter.kind != "confirm_email":
        raise _StepFailed("no confirmation letter was sent")
    service.confirm_email(_token(letter))
    say("demo.confirmed")

    login = service.authenticate(email, first, client_key="demo")
    if not (login.ok and login.email_confirmed):
        raise _StepFailed("log-in with the registration password failed")
    say("demo.login_ok", login=email)
    account_id = login.account_id
    assert account_id is not None  # a successful log-in names the account; not a security check
    current = first

    # A number given at sign-up is unproven: it receives reset codes once a code proves it.
    if not service.request_phone_change(account_id, current, phone, client_key="demo"):
        raise _StepFailed("the request to prove the phone was refused")
    _delivered(storage)
    sms = tee.outbox.last_sms()
    proof = extract_code(sms) if sms is not None and sms.kind == "phone_code" else None
    if proof is None or not service.verify_phone(account_id, proof):
        raise _StepFailed("the phone could not be proven by its code")
    say("demo.phone_proved", phone=phone)

    similar = first.replace("2023", "2024")
    change = service.change_password(account_id, current, similar, similar, client_key="demo")
    if policy.history_similar:
        if change.ok or "similar_to_previous" not in change.policy.codes:
            raise _StepFailed("a password similar to the old one was accepted")
        say("demo.change_refused", password=similar)
        bullets(change.policy.messages(lang))
    elif change.ok:
        say("demo.change_accepted", password=similar)
        current = similar
    else:
        raise _StepFailed(
            "a change of password was refused: " + "; ".join(change.policy.messages(lang))
        )

    say("demo.reset_requested", login=email)
    if not service.request_password_reset(email, client_key="demo"):
        raise _StepFailed("the reset request was refused")
    _delivered(storage)
    letter = tee.outbox.last_email(to=email)
    if letter is None or letter.kind != "password_reset":
        raise _StepFailed("no reset letter was sent")
    token = _token(letter)
    by_email = _pick(policy, _BY_EMAIL, user, 2)
    say("demo.reset_done", password=by_email)
    reset = service.reset_password(token, by_email, by_email)
    if not reset.ok:
        raise _StepFailed(
            "the reset by link was refused: " + "; ".join(reset.policy.messages(lang))
        )
    current = by_email
    try:
        service.reset_password(token, by_email, by_email)
    except InvalidTokenError:
        say("demo.link_reused")
    else:
        raise _StepFailed("a used reset link worked a second time")

    say("demo.sms_requested", phone=phone)
    time.sleep(_DEMO_SMS_COOLDOWN.total_seconds())  # the proof's SMS went to this number
    if not service.request_sms_reset(phone, client_key="demo"):
        raise _StepFailed("the SMS request was refused")
    _delivered(storage)
    sms = tee.outbox.last_sms()
    code = extract_code(sms) if sms is not None else None
    if code is None:
        raise _StepFailed("no SMS code was sent")
    grant = service.verify_sms_code(phone, code)
    by_sms = _pick(policy, _BY_SMS, user, 3)
    say("demo.sms_verified", password=by_sms)
    reset = service.reset_password(grant, by_sms, by_sms)
    if not reset.ok:
        raise _StepFailed("the reset by SMS was refused: " + "; ".join(reset.policy.messages(lang)))

    _delivered(storage)  # the "password changed" notices
    by_phone = service.authenticate(phone, by_sms, client_key="demo")
    if not by_phone.ok or service.authenticate(email, current, client_key="demo").ok:
        raise _StepFailed("log-in after the resets did not behave")
    say("demo.login_final")
    _email_change(service, storage, tee, say, account_id, email, by_sms, policy, user)


def _email_change(
    service: IdentityService,
    storage: Storage,
    tee: _Tee,
    say: Callable[..., None],
    account_id: str,
    email: str,
    password: str,
    policy: PasswordPolicy,
    user: UserInfo,
) -> None:
    """Change the address by its link, then undo it from the old mailbox and reset."""
    new_email = "new." + email
    say("demo.email_change_requested", email=new_email)
    if not service.request_email_change(account_id, password, new_email, client_key="demo"):
        raise _StepFailed("the change of address was refused")
    _delivered(storage)
    letter = tee.outbox.last_email(to=new_email)
    if letter is None or letter.kind != "email_change_confirm":
        raise _StepFailed("no confirmation letter went to the new address")
    say("demo.email_changed", old=email, new=new_email)
    if not service.confirm_email_change(_token(letter)):
        raise _StepFailed("the change-of-address link did not work")
    _delivered(storage)
    notice = tee.outbox.last_email(to=email)
    if notice is None or notice.kind != "email_changed":
        raise _StepFailed("the old address was not told of the change")
    say("demo.email_undone", email=email)
    if not service.undo_email_change(_token(notice)):
        raise _StepFailed("the undo link did not work")
    _delivered(storage)
    reset = tee.outbox.last_email(to=email)
    if reset is None or reset.kind != "password_reset":
        raise _StepFailed("no reset link went to the restored address")
    if service.authenticate(email, password, client_key="demo").ok:
        raise _StepFailed("the password still worked after the undo")
    fresh = _pick(policy, _AFTER_UNDO, user, 4)
    if not service.reset_password(_token(reset), fresh, fresh).ok:
        raise _StepFailed("the reset after the undo was refused")
    if not service.authenticate(email, fresh, client_key="demo").ok:
        raise _StepFailed("log-in after the undo and reset failed")
    say("demo.undo_reset_done", password=fresh)
