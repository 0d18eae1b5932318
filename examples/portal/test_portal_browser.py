"""The seed portals' user paths, clicking real buttons in headless Chromium, in kk / ru / en.

Each test is one user's path on a live portal (uvicorn on 127.0.0.1, SQLite, the local SMTP
server): the link comes from the captured letter and the code from the captured SMS, both
read on ``/dev/mailbox`` as a developer would. The screenshots of each page are saved in
every language (see ``conftest.py``).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest
from kaspi_portal._text import text
from playwright.sync_api import expect
from portal_live import LivePortal

from kaspi_identity.i18n import render

LANGS = ("kk", "ru", "en")
_serial = itertools.count(1)


def unique(prefix: str) -> str:
    """A fresh user name or local part for this test run."""
    return f"{prefix}{next(_serial)}"


def new_page(browser: Any, **options: Any) -> Any:
    context = browser.new_context(viewport={"width": 760, "height": 640}, **options)
    context.set_default_timeout(15_000)
    return context.new_page()


def choose_language(page: Any, lang: str) -> None:
    """Click the language switcher's link."""
    page.locator(f'nav.langs a[hreflang="{lang}"]').click()
    assert page.locator("html").get_attribute("lang") == lang


def button(page: Any, key: str, lang: str) -> Any:
    return page.get_by_role("button", name=text(key, lang), exact=True)


def field(page: Any, key: str, lang: str) -> Any:
    return page.get_by_label(text(key, lang), exact=True)


def shot(page: Any, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def open_mailbox(page: Any, portal: LivePortal) -> None:
    page.goto(f"{portal.url}/dev/mailbox")


def click_newest_link(page: Any, portal: LivePortal, to: str) -> None:
    """On the dev mailbox, click the link of the newest letter with a link to ``to``."""
    open_mailbox(page, portal)
    page.locator(f'article.letter[data-to="{to}"]:has(a)').first.locator("a").first.click()


def newest_code(page: Any, portal: LivePortal, to: str) -> str:
    """The code of the newest SMS to ``to``, read on the dev mailbox in another tab."""
    phone = page.context.new_page()
    open_mailbox(phone, portal)
    body = phone.locator(f'article.sms[data-to="{to}"]').first.locator("pre").inner_text()
    phone.close()
    found = re.search(r"\b(\d{6,8})\b", body)
    assert found, body
    return found.group(1)


def register(
    page: Any,
    portal: LivePortal,
    lang: str,
    email: str,
    password: str,
    *,
    username: str | None = None,
    phone: str | None = None,
) -> None:
    """Fill in and send the registration form; the "check your e-mail" page follows."""
    page.goto(f"{portal.url}/register")
    field(page, "email", lang).fill(email)
    if username:
        page.get_by_label(re.compile("^" + re.escape(text("username", lang)))).fill(username)
    if phone:
        page.get_by_label(re.compile("^" + re.escape(text("phone", lang)))).fill(phone)
    field(page, "password", lang).fill(password)
    field(page, "repeat", lang).fill(password)
    button(page, "register_button", lang).click()
    expect(page.locator("h1")).to_have_text(text("registered_title", lang))


def confirm_from_letter(
    page: Any, portal: LivePortal, lang: str, email: str, folder: Path | None = None
) -> None:
    click_newest_link(page, portal, email)
    expect(page.locator("h1")).to_have_text(text("confirm_title", lang))
    assert "token" not in page.url  # the link's token left the address bar
    if folder is not None:
        shot(page, folder, f"confirm-{lang}")
    button(page, "confirm", lang).click()
    expect(page.locator("#notice")).to_have_text(text("confirmed", lang))


def log_in(page: Any, portal: LivePortal, lang: str, identifier: str, password: str) -> None:
    page.goto(f"{portal.url}/login")
    field(page, "identifier", lang).fill(identifier)
    field(page, "password", lang).fill(password)
    button(page, "login_button", lang).click()


def signed_up(page: Any, portal: LivePortal, lang: str, password: str, **who: str) -> str:
    """Register and confirm through the pages; the e-mail address."""
    email = f"{unique('user')}@example.kz"
    register(page, portal, lang, email, password, **who)
    confirm_from_letter(page, portal, lang, email)
    return email


def in_cabinet(page: Any, lang: str) -> bool:
    """Wait for the personal cabinet's page (``expect`` retries until the page is there)."""
    expect(page.locator("h1")).to_have_text(text("cabinet", lang))
    return True


def problem_codes(page: Any, where: str = "#problems") -> list[str]:
    """The codes of the refusals shown in ``where``, once the answer's page is there."""
    expect(page.locator(f"{where} [data-code]").first).to_be_attached()
    found = page.locator(f"{where} [data-code]").evaluate_all("n => n.map(e => e.dataset.code)")
    return [str(code) for code in found]


@pytest.fixture
def page_of(browser: Any) -> Any:
    pages: list[Any] = []

    def make(**options: Any) -> Any:
        page = new_page(browser, **options)
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.context.close()


@pytest.mark.parametrize("lang", LANGS)
def test_registration_in_the_utility_cabinet(
    lang: str, cabinet: LivePortal, page_of: Any, screenshots: Path
) -> None:
    """Register (5-10 letters and digits), live checklist, eye, resend, confirm, log in."""
    page = page_of()
    page.goto(cabinet.url)
    choose_language(page, lang)
    page.get_by_role("link", name=text("register", lang), exact=True).click()
    password = field(page, "password", lang)
    rules = page.locator("#password-rules")
    expect_ready(rules)

    password.press_sequentially("ab1")
    expect_met(rules, "requirement.length_range", "no")
    expect_met(rules, "requirement.alphabet.latin_alnum", "yes")
    password.press_sequentially("cd9")
    expect_met(rules, "requirement.length_range", "yes")
    password.press_sequentially("ф")  # the Cyrillic layout
    expect_met(rules, "requirement.alphabet.latin_alnum", "no")
    expect(page.locator("#password-layout")).to_have_text(render("hint.keyboard_layout", lang))
    password.press("Backspace")
    expect(page.locator("#password-layout")).to_have_text("")

    eye = page.locator('button.eye[aria-controls="password"]')
    assert eye.get_attribute("aria-label") == text("show_password", lang)
    eye.click()
    assert password.get_attribute("type") == "text"
    assert password.input_value() == "ab1cd9"
    assert eye.get_attribute("aria-pressed") == "true"
    assert eye.get_attribute("aria-label") == text("hide_password", lang)
    shot(page, screenshots, f"register-{lang}")
    eye.click()
    assert password.get_attribute("type") == "password"

    # A refusal first: too long, and the repeat differs (said live, then by the server).
    email = f"{unique('cabinet')}@example.kz"
    field(page, "email", lang).fill(email)
    password.fill("Tulip7Garden99")
    repeat = field(page, "repeat", lang)
    repeat.fill("Tulip7Garden")
    repeat.press("Tab")
    expect(page.locator('#confirmation-error [data-code="confirmation_mismatch"]')).to_have_count(1)
    button(page, "register_button", lang).click()
    assert "too_long" in problem_codes(page, "#password-error")
    assert "confirmation_mismatch" in problem_codes(page, "#confirmation-error")
    assert field(page, "email", lang).input_value() == email  # kept; the passwords are not
    assert password.input_value() == ""

    password.fill("Tulip7Gard")
    repeat.fill("Tulip7Gard")
    button(page, "register_button", lang).click()
    expect(page.locator("h1")).to_have_text(text("registered_title", lang))
    shot(page, screenshots, f"registered-{lang}")
    button(page, "resend", lang).click()
    expect(page.locator("#notice")).to_have_text(text("resent", lang))
    open_mailbox(page, cabinet)
    assert page.locator(f'article.letter[data-to="{email}"]').count() == 2
    if lang == "en":
        shot(page, screenshots, "mailbox-en")

    confirm_from_letter(page, cabinet, lang, email, screenshots)
    log_in(page, cabinet, lang, email, "Tulip7Gard")
    assert in_cabinet(page, lang)
    shot(page, screenshots, f"cabinet-{lang}")


def expect_ready(rules: Any) -> None:
    rules.page.wait_for_function(
        "() => document.getElementById('password-rules').dataset.ready === 'true'"
    )


def expect_met(rules: Any, key: str, state: str) -> None:
    """The checklist's line ``key`` says ``state`` (``yes``, ``no``)."""
    expect(rules.locator(f'li[data-key="{key}"]')).to_have_attribute("data-met", state)


def test_registration_by_keyboard_only(cabinet: LivePortal, page_of: Any) -> None:
    """Every step of the registration and the confirmation with the keyboard alone."""
    lang = "ru"
    page = page_of(extra_http_headers={"Accept-Language": "ru-KZ,ru;q=0.9"})
    page.goto(f"{cabinet.url}/register")
    assert page.locator("html").get_attribute("lang") == "ru"  # the browser's language
    email = f"{unique('keys')}@example.kz"
    keys = page.keyboard
    keys.type(email)  # the e-mail field has the focus
    keys.press("Tab")  # user name
    keys.press("Tab")  # phone
    keys.press("Tab")  # password
    keys.type("Steppe42Eg")
    keys.press("Tab")  # its eye
    keys.press("Enter")  # shows the password
    assert field(page, "password", lang).get_attribute("type") == "text"
    keys.press("Tab")  # the repeat
    keys.type("Steppe42Eg")
    keys.press("Enter")  # sends the form
    expect(page.locator("h1")).to_have_text(text("registered_title", lang))

    click_newest_link(page, cabinet, email)  # (the letter is opened in the mail program)
    expect(page.locator("h1")).to_have_text(text("confirm_title", lang))
    keys.press("Enter")  # the focused "Confirm"
    expect(page.locator("#notice")).to_have_text(text("confirmed", lang))
    keys.type(email)  # the log-in's identifier has the focus
    keys.press("Tab")
    keys.type("Steppe42Eg")
    keys.press("Enter")
    assert in_cabinet(page, lang)


@pytest.mark.parametrize("lang", LANGS)
def test_reset_by_user_name_or_email(
    lang: str, procurement: LivePortal, page_of: Any, screenshots: Path
) -> None:
    """Forgot password? -> user name -> Confirm -> letter -> new password twice -> Confirm.

    The new password logs in, the old one and the used link don't, and the session on the
    other browser has ended.
    """
    page, other = page_of(), page_of()
    page.goto(procurement.url)
    choose_language(page, lang)
    other.goto(procurement.url)
    choose_language(other, lang)
    old, new = "Tengri-Sky-2026!", "Altyn-Orda-1465!"
    username = unique(f"tender{lang}")
    email = signed_up(page, procurement, lang, old, username=username)
    log_in(other, procurement, lang, email, old)
    assert in_cabinet(other, lang)

    page.goto(f"{procurement.url}/login")
    shot(page, screenshots, f"login-{lang}")
    page.get_by_role("link", name=text("forgot_link", lang), exact=True).click()
    field(page, "username_or_email", lang).fill(username if lang != "en" else email)
    shot(page, screenshots, f"forgot-{lang}")
    button(page, "confirm", lang).click()
    expect(page.locator("#notice")).to_have_text(text("letter_sent", lang))

    click_newest_link(page, procurement, email)
    assert "token" not in page.url
    field(page, "new_password", lang).fill(new)
    field(page, "repeat", lang).fill(new)
    shot(page, screenshots, f"new-password-{lang}")
    button(page, "confirm", lang).click()
    expect(page.locator("#notice")).to_have_text(text("password_reset", lang))

    log_in(page, procurement, lang, email, old)
    assert problem_codes(page) == ["login_failed"]
    log_in(page, procurement, lang, username, new)
    assert in_cabinet(page, lang)

    click_newest_link(page, procurement, email)  # the used link again
    field(page, "new_password", lang).fill("Baiterek-Astana-97")
    field(page, "repeat", lang).fill("Baiterek-Astana-97")
    button(page, "confirm", lang).click()
    assert problem_codes(page) == ["invalid_link"]

    other.reload()  # the other browser's session ended with the reset
    expect(other.locator("h1")).to_have_text(text("login", lang))
    expect(other.locator("#notice")).to_have_text(text("session_ended", lang))


def prove_phone(
    page: Any, portal: LivePortal, lang: str, phone: str, password: str, folder: Path
) -> None:
    """In the cabinet: the phone is unproven; Send code, the SMS's code, Confirm the number."""
    state = page.locator("#phone-state")
    expect(state).to_have_attribute("data-verified", "no")
    form = page.locator("#phone-form")
    expect(form.get_by_label(text("phone_for_code", lang), exact=True)).to_have_value(phone)
    form.get_by_label(text("current_password", lang), exact=True).fill(password)
    form.get_by_role("button", name=text("send_code", lang), exact=True).click()
    expect(page.locator("#notice")).to_have_text(text("phone_code_sent", lang))
    code = newest_code(page, portal, phone)
    proof = page.locator("#code-form")
    proof.get_by_label(text("code", lang), exact=True).fill(code)
    shot(page, folder, f"cabinet-phone-{lang}")
    proof.get_by_role("button", name=text("verify_phone", lang), exact=True).click()
    expect(page.locator("#notice")).to_have_text(text("phone_verified", lang))
    expect(state).to_have_attribute("data-verified", "yes")


@pytest.mark.parametrize("lang", LANGS)
def test_change_of_email_and_its_undo(
    lang: str, procurement: LivePortal, page_of: Any, screenshots: Path
) -> None:
    """Cabinet -> new address + password -> the link in the new mailbox -> Confirm; the old
    address got the notice, and its undo link gives the address back and ends the session."""
    page = page_of()
    page.goto(procurement.url)
    choose_language(page, lang)
    old = signed_up(page, procurement, lang, "Tengri-Sky-2026!")
    new = f"{unique('moved')}@example.kz"
    log_in(page, procurement, lang, old, "Tengri-Sky-2026!")
    assert in_cabinet(page, lang)
    form = page.locator("#email-form")
    form.get_by_label(text("new_email", lang), exact=True).fill(new)
    form.get_by_label(text("current_password", lang), exact=True).fill("wrong-password")
    form.get_by_role("button", name=text("change_email", lang), exact=True).click()
    assert problem_codes(page, "#email_password-error") == ["wrong_password"]
    form.get_by_label(text("current_password", lang), exact=True).fill("Tengri-Sky-2026!")
    shot(page, screenshots, f"cabinet-email-{lang}")
    form.get_by_role("button", name=text("change_email", lang), exact=True).click()
    expect(page.locator("#notice")).to_have_text(text("email_change_sent", lang))
    expect(page.locator("#current-email")).to_have_text(old)  # nothing changed yet

    click_newest_link(page, procurement, new)
    expect(page.locator("h1")).to_have_text(text("email_change_title", lang))
    assert "token" not in page.url
    button(page, "confirm", lang).click()
    assert in_cabinet(page, lang)  # this browser's session lives on
    expect(page.locator("#notice")).to_have_text(text("email_changed", lang))
    expect(page.locator("#current-email")).to_have_text(new)

    open_mailbox(page, procurement)
    to_old = page.locator(f'article.letter[data-to="{old}"]')
    expect(to_old).to_have_count(2)  # the confirmation, then the notice with the undo link
    to_old.first.locator("a").first.click()
    expect(page.locator("h1")).to_have_text(text("undo_title", lang))
    shot(page, screenshots, f"undo-{lang}")
    button(page, "undo_button", lang).click()
    expect(page.locator("h1")).to_have_text(text("login", lang))
    expect(page.locator("#notice")).to_have_text(text("email_restored", lang))
    log_in(page, procurement, lang, old, "Tengri-Sky-2026!")  # the password was removed
    assert problem_codes(page) == ["login_failed"]
    open_mailbox(page, procurement)
    expect(page.locator(f'article.letter[data-to="{old}"]')).to_have_count(3)  # a reset link


@pytest.mark.parametrize(
    ("lang", "phone"), [("kk", "+77015550101"), ("ru", "+77015550102"), ("en", "+77015550103")]
)
def test_reset_by_phone(
    lang: str, phone: str, procurement: LivePortal, page_of: Any, screenshots: Path
) -> None:
    """Phone given at registration, proven in the cabinet by its code -> forgot -> Send code ->
    SMS -> Confirmation code -> new twice -> Save."""
    page = page_of()
    page.goto(procurement.url)
    choose_language(page, lang)
    email = signed_up(page, procurement, lang, "Steppe&Eagle42", phone=phone)
    log_in(page, procurement, lang, email, "Steppe&Eagle42")
    assert in_cabinet(page, lang)
    prove_phone(page, procurement, lang, phone, "Steppe&Eagle42", screenshots)
    page.locator("form[action='/logout'] button").click()
    page.goto(f"{procurement.url}/login")
    page.get_by_role("link", name=text("forgot_link", lang), exact=True).click()
    page.get_by_role("link", name=text("by_phone", lang), exact=True).click()
    local = "8 " + phone[2:5] + " " + phone[5:8] + " " + phone[8:10] + " " + phone[10:]
    field(page, "phone", lang).fill(local)  # as people type it
    shot(page, screenshots, f"phone-{lang}")
    button(page, "send_code", lang).click()
    expect(page.locator("#notice")).to_have_text(text("code_sent", lang))

    sms = newest_code(page, procurement, phone)
    wrong = "000000" if sms != "000000" else "111111"
    field(page, "code", lang).fill(wrong)
    button(page, "check_code", lang).click()
    assert problem_codes(page, "#code-error") == ["wrong"]
    field(page, "code", lang).fill(sms)
    shot(page, screenshots, f"code-{lang}")
    button(page, "check_code", lang).click()
    field(page, "new_password", lang).fill("Tulip#Garden7")
    field(page, "repeat", lang).fill("Tulip#Garden7")
    button(page, "save", lang).click()
    expect(page.locator("#notice")).to_have_text(text("password_reset", lang))
    log_in(page, procurement, lang, phone, "Tulip#Garden7")
    assert in_cabinet(page, lang)
    log_in(page, procurement, lang, email, "Steppe&Eagle42")
    assert problem_codes(page) == ["login_failed"]


@pytest.mark.parametrize("lang", LANGS)
def test_change_password_refuses_one_similar_to_the_last_six(
    lang: str, procurement: LivePortal, page_of: Any, screenshots: Path
) -> None:
    """Current + new twice; a new password like the current one is refused (kz-procurement)."""
    page = page_of()
    page.goto(procurement.url)
    choose_language(page, lang)
    email = signed_up(page, procurement, lang, "Tengri-Sky-2026!")
    log_in(page, procurement, lang, email, "Tengri-Sky-2026!")
    page.get_by_role("link", name=text("change_title", lang), exact=True).click()
    field(page, "current_password", lang).fill("Tengri-Sky-2026!")
    field(page, "new_password", lang).fill("Tengri-Sky-2027!")
    field(page, "repeat", lang).fill("Tengri-Sky-2027!")
    button(page, "save", lang).click()
    assert "similar_to_previous" in problem_codes(page, "#password-error")
    shot(page, screenshots, f"change-{lang}")

    field(page, "current_password", lang).fill("Tengri-Sky-2026!")
    field(page, "new_password", lang).fill("Altyn-Orda-1465!")
    field(page, "repeat", lang).fill("Altyn-Orda-1465!")
    button(page, "save", lang).click()
    assert in_cabinet(page, lang)
    expect(page.locator("#notice")).to_have_text(text("password_changed", lang))


def test_every_page_works_without_javascript(procurement: LivePortal, page_of: Any) -> None:
    """With scripts off: register, confirm, log in, reset by link; no eye, the list is static."""
    lang = "kk"
    page = page_of(java_script_enabled=False)
    page.goto(procurement.url)
    choose_language(page, lang)
    email = f"{unique('nojs')}@example.kz"
    register(page, procurement, lang, email, "Tengri-Sky-2026!")
    page.goto(f"{procurement.url}/register")
    assert page.locator("button.eye").count() == 0
    assert page.locator("#password-rules li").count() == len(
        procurement.app.state.kaspi_identity.policy.describe(lang)
    )
    confirm_from_letter(page, procurement, lang, email)
    page.goto(f"{procurement.url}/password/forgot")
    field(page, "username_or_email", lang).fill(email)
    button(page, "confirm", lang).click()
    click_newest_link(page, procurement, email)
    field(page, "new_password", lang).fill("Qwerty")
    field(page, "repeat", lang).fill("Qwerty")
    button(page, "confirm", lang).click()
    assert "too_short" in problem_codes(page, "#password-error")  # the link lives on
    field(page, "new_password", lang).fill("Altyn-Orda-1465!")
    field(page, "repeat", lang).fill("Altyn-Orda-1465!")
    button(page, "confirm", lang).click()
    log_in(page, procurement, lang, email, "Altyn-Orda-1465!")
    assert in_cabinet(page, lang)
