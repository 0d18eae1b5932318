"""The portal's own words in kk / ru / en: labels, buttons, headings and outcomes.

The password rules, violations, hints and the errors of bad input come from the library's
catalogs (``violation.message(lang)``, ``exc.message(lang)``); this table holds only what a
portal team writes for its own pages, and is the file a team edits first.
"""

from __future__ import annotations

from typing import Final

LANGUAGES: Final = ("kk", "ru", "en")
LANGUAGE_NAMES: Final = {"kk": "Қазақша", "ru": "Русский", "en": "English"}

TEXT: Final[dict[str, dict[str, str]]] = {
    "portal": {"kk": "Портал", "ru": "Портал", "en": "Portal"},
    "skip": {"kk": "Мазмұнға өту", "ru": "К содержанию", "en": "Skip to content"},
    "language": {"kk": "Тіл", "ru": "Язык", "en": "Language"},
    "home": {"kk": "Басты бет", "ru": "Главная", "en": "Home"},
    "welcome": {
        "kk": "Жеке кабинетке кіріңіз немесе тіркеліңіз.",
        "ru": "Войдите в личный кабинет или зарегистрируйтесь.",
        "en": "Log in to your personal cabinet or register.",
    },
    # registration
    "register": {"kk": "Тіркелу", "ru": "Регистрация", "en": "Registration"},
    "register_button": {"kk": "Тіркелу", "ru": "Зарегистрироваться", "en": "Register"},
    "email": {"kk": "Электрондық пошта", "ru": "Электронная почта", "en": "E-mail"},
    "email_is_login": {
        "kk": "Электрондық пошта — сіздің логиніңіз.",
        "ru": "Электронная почта — ваш логин.",
        "en": "Your e-mail is your login.",
    },
    "username": {"kk": "Пайдаланушы аты", "ru": "Имя пользователя", "en": "User name"},
    "phone": {"kk": "Ұялы телефон", "ru": "Мобильный телефон", "en": "Mobile phone"},
    "optional": {"kk": "міндетті емес", "ru": "необязательно", "en": "optional"},
    "phone_help": {
        "kk": "Құпиясөзді SMS арқылы қалпына келтіру үшін, мысалы +7 701 123 45 67.",
        "ru": "Для восстановления пароля по SMS, например +7 701 123 45 67.",
        "en": "To reset the password by SMS, e.g. +7 701 123 45 67.",
    },
    "password": {"kk": "Құпиясөз", "ru": "Пароль", "en": "Password"},
    "new_password": {"kk": "Жаңа құпиясөз", "ru": "Новый пароль", "en": "New password"},
    "repeat": {
        "kk": "Құпиясөзді қайталаңыз",
        "ru": "Повторите пароль",
        "en": "Repeat the password",
    },
    "current_password": {
        "kk": "Ағымдағы құпиясөз",
        "ru": "Текущий пароль",
        "en": "Current password",
    },
    "requirements": {
        "kk": "Құпиясөзге қойылатын талаптар",
        "ru": "Требования к паролю",
        "en": "Password requirements",
    },
    "met": {"kk": "орындалды", "ru": "выполнено", "en": "met"},
    "not_met": {"kk": "орындалмады", "ru": "не выполнено", "en": "not met"},
    "server_checks": {"kk": "сервер тексереді", "ru": "проверит сервер", "en": "checked on saving"},
    "show_password": {"kk": "Құпиясөзді көрсету", "ru": "Показать пароль", "en": "Show password"},
    "hide_password": {"kk": "Құпиясөзді жасыру", "ru": "Скрыть пароль", "en": "Hide password"},
    "registered_title": {
        "kk": "Поштаңызды тексеріңіз",
        "ru": "Проверьте почту",
        "en": "Check your e-mail",
    },
    "registered": {
        "kk": "Біз {email} мекенжайына растау хатын жібердік."
        " Тіркелуді растау үшін хаттағы сілтемені ашыңыз.",
        "ru": "Мы отправили письмо на {email}."
        " Откройте ссылку в письме, чтобы подтвердить регистрацию.",
        "en": "We sent a letter to {email}. Open the link in it to confirm the registration.",
    },
    "resend": {
        "kk": "Хатты қайта жіберу",
        "ru": "Отправить письмо ещё раз",
        "en": "Send the letter again",
    },
    "resent": {
        "kk": "Егер бұл мекенжай тіркелген болса, хат қайта жіберілді.",
        "ru": "Если этот адрес зарегистрирован, письмо отправлено ещё раз.",
        "en": "If this address is registered, the letter was sent again.",
    },
    "confirm_title": {
        "kk": "Тіркелуді растау",
        "ru": "Подтверждение регистрации",
        "en": "Confirm the registration",
    },
    "confirm_lead": {
        "kk": "Электрондық пошта мекенжайын растау үшін батырманы басыңыз.",
        "ru": "Нажмите кнопку, чтобы подтвердить адрес электронной почты.",
        "en": "Press the button to confirm your e-mail address.",
    },
    "confirm": {"kk": "Растау", "ru": "Подтвердить", "en": "Confirm"},
    "confirmed": {
        "kk": "Тіркелу расталды. Енді жүйеге кіре аласыз.",
        "ru": "Регистрация подтверждена. Теперь вы можете войти.",
        "en": "The registration is confirmed. You can log in now.",
    },
    # log-in
    "login": {"kk": "Кіру", "ru": "Вход", "en": "Log in"},
    "login_button": {"kk": "Кіру", "ru": "Войти", "en": "Log in"},
    "identifier": {
        "kk": "Электрондық пошта, пайдаланушы аты немесе телефон",
        "ru": "Электронная почта, имя пользователя или телефон",
        "en": "E-mail, user name or phone",
    },
    "forgot_link": {
        "kk": "Құпиясөзді ұмыттыңыз ба?",
        "ru": "Забыли пароль?",
        "en": "Forgot password?",
    },
    "no_account": {
        "kk": "Тіркелгіңіз жоқ па?",
        "ru": "Нет учётной записи?",
        "en": "No account yet?",
    },
    "have_account": {
        "kk": "Тіркелгіңіз бар ма?",
        "ru": "Уже зарегистрированы?",
        "en": "Already registered?",
    },
    "login_failed": {
        "kk": "Логин немесе құпиясөз қате.",
        "ru": "Неверный логин или пароль.",
        "en": "The login or the password is wrong.",
    },
    "password_expired": {
        "kk": "Құпиясөздің мерзімі өтті: оны қалпына келтіріңіз.",
        "ru": "Срок действия пароля истёк: восстановите его.",
        "en": "The password has expired: reset it.",
    },
    "logout": {"kk": "Шығу", "ru": "Выйти", "en": "Log out"},
    "logged_out": {
        "kk": "Сіз жүйеден шықтыңыз.",
        "ru": "Вы вышли из системы.",
        "en": "You are logged out.",
    },
    "session_ended": {
        "kk": "Сеанс аяқталды. Қайта кіріңіз.",
        "ru": "Сеанс завершён. Войдите снова.",
        "en": "The session has ended. Please log in again.",
    },
    # forgot by e-mail
    "forgot_title": {
        "kk": "Құпиясөзді қалпына келтіру",
        "ru": "Восстановление пароля",
        "en": "Reset the password",
    },
    "forgot_lead": {
        "kk": "Пайдаланушы атын немесе электрондық поштаны енгізіңіз:"
        " біз сілтемесі бар хат жібереміз.",
        "ru": "Введите имя пользователя или электронную почту: мы пришлём письмо со ссылкой.",
        "en": "Enter your user name or e-mail: we will send a letter with a link.",
    },
    "username_or_email": {
        "kk": "Пайдаланушы аты немесе электрондық пошта",
        "ru": "Имя пользователя или электронная почта",
        "en": "User name or e-mail",
    },
    "letter_sent": {
        "kk": "Егер мұндай тіркелгі болса, біз сілтемесі бар хат жібердік. Поштаңызды тексеріңіз.",
        "ru": "Если такая учётная запись есть, мы отправили письмо со ссылкой. Проверьте почту.",
        "en": "If such an account exists, we sent a letter with a link. Check your e-mail.",
    },
    "by_phone": {
        "kk": "Телефон арқылы қалпына келтіру",
        "ru": "Восстановить по телефону",
        "en": "Reset by phone",
    },
    "by_email": {
        "kk": "Электрондық пошта арқылы қалпына келтіру",
        "ru": "Восстановить по электронной почте",
        "en": "Reset by e-mail",
    },
    # forgot by phone
    "phone_title": {
        "kk": "Телефон арқылы қалпына келтіру",
        "ru": "Восстановление по телефону",
        "en": "Reset by phone",
    },
    "phone_lead": {
        "kk": "Тіркелу кезінде көрсетілген ұялы телефон нөмірін енгізіңіз.",
        "ru": "Введите номер мобильного телефона, указанный при регистрации.",
        "en": "Enter the mobile number you gave at registration.",
    },
    "send_code": {"kk": "Код жіберу", "ru": "Отправить код", "en": "Send code"},
    "code_sent": {
        "kk": "Егер нөмір тіркелген болса, біз SMS арқылы код жібердік.",
        "ru": "Если номер зарегистрирован, мы отправили код в SMS.",
        "en": "If the number is registered, we sent a code by SMS.",
    },
    "code": {"kk": "Растау коды", "ru": "Код подтверждения", "en": "Confirmation code"},
    "check_code": {"kk": "Растау", "ru": "Подтвердить", "en": "Confirm"},
    "code_wrong": {"kk": "Код қате.", "ru": "Неверный код.", "en": "The code is wrong."},
    "code_exhausted": {
        "kk": "Қате әрекеттер тым көп: жаңа код сұраңыз.",
        "ru": "Слишком много неверных попыток: запросите новый код.",
        "en": "Too many wrong tries: ask for a new code.",
    },
    "code_expired": {
        "kk": "Кодтың мерзімі өтті: жаңа код сұраңыз.",
        "ru": "Срок действия кода истёк: запросите новый код.",
        "en": "The code has expired: ask for a new one.",
    },
    # new password
    "new_password_title": {
        "kk": "Жаңа құпиясөз",
        "ru": "Новый пароль",
        "en": "New password",
    },
    "save": {"kk": "Сақтау", "ru": "Сохранить", "en": "Save"},
    "password_reset": {
        "kk": "Құпиясөз өзгертілді. Жаңа құпиясөзбен кіріңіз: басқа сеанстардың бәрі аяқталды.",
        "ru": "Пароль изменён. Войдите с новым паролем: все остальные сеансы завершены.",
        "en": "The password is changed. Log in with the new one: every other session has ended.",
    },
    "invalid_link": {
        "kk": "Сілтеме жарамсыз немесе пайдаланылған. Жаңасын сұраңыз.",
        "ru": "Ссылка недействительна или уже использована. Запросите новую.",
        "en": "The link is invalid or already used. Ask for a new one.",
    },
    "expired_link": {
        "kk": "Сілтеменің мерзімі өтті. Жаңасын сұраңыз.",
        "ru": "Срок действия ссылки истёк. Запросите новую.",
        "en": "The link has expired. Ask for a new one.",
    },
    # cabinet
    "cabinet": {"kk": "Жеке кабинет", "ru": "Личный кабинет", "en": "Personal cabinet"},
    "cabinet_lead": {
        "kk": "Сіз жүйеге кірдіңіз.",
        "ru": "Вы вошли в систему.",
        "en": "You are logged in.",
    },
    "account": {"kk": "Тіркелгі", "ru": "Учётная запись", "en": "Account"},
    "change_title": {
        "kk": "Құпиясөзді өзгерту",
        "ru": "Смена пароля",
        "en": "Change the password",
    },
    "must_change": {
        "kk": "Жалғастыру алдында құпиясөзді өзгертіңіз.",
        "ru": "Прежде чем продолжить, смените пароль.",
        "en": "Change your password before you go on.",
    },
    "password_changed": {
        "kk": "Құпиясөз өзгертілді. Басқа құрылғылардағы сеанстар аяқталды.",
        "ru": "Пароль изменён. Сеансы на других устройствах завершены.",
        "en": "The password is changed. The sessions on other devices have ended.",
    },
    "wrong_password": {
        "kk": "Ағымдағы құпиясөз қате.",
        "ru": "Текущий пароль неверен.",
        "en": "The current password is wrong.",
    },
    "locked": {
        "kk": "Тіркелгі бұғатталды: құпиясөзді қалпына келтіріңіз.",
        "ru": "Учётная запись заблокирована: восстановите пароль.",
        "en": "The account is locked: reset the password.",
    },
    "too_soon": {
        "kk": "Құпиясөзді тым жиі өзгертуге болмайды.",
        "ru": "Пароль нельзя менять так часто.",
        "en": "The password cannot be changed again so soon.",
    },
    "conflict": {
        "kk": "Құпиясөз осы уақытта өзгерді: қайталап көріңіз.",
        "ru": "Пароль тем временем изменился: попробуйте ещё раз.",
        "en": "The password changed meanwhile: try again.",
    },
    # cabinet: e-mail
    "email_section": {"kk": "Электрондық пошта", "ru": "Электронная почта", "en": "E-mail"},
    "current_email": {"kk": "Ағымдағы мекенжай", "ru": "Текущий адрес", "en": "Current address"},
    "pending_email": {
        "kk": "{email} мекенжайы растауды күтуде: хаттағы сілтемені ашыңыз.",
        "ru": "Адрес {email} ждёт подтверждения: откройте ссылку в письме.",
        "en": "{email} waits for confirmation: open the link in the letter.",
    },
    "new_email": {"kk": "Жаңа мекенжай", "ru": "Новый адрес", "en": "New address"},
    "change_email": {
        "kk": "Мекенжайды өзгерту",
        "ru": "Сменить адрес",
        "en": "Change the address",
    },
    "email_change_sent": {
        "kk": "Жаңа мекенжайға сілтемесі бар хат жібердік. Оны ашқанша бұрынғы мекенжай қалады.",
        "ru": "Мы отправили письмо со ссылкой на новый адрес. Пока вы её не откроете,"
        " остаётся прежний адрес.",
        "en": "We sent a letter with a link to the new address. Until you open it,"
        " the old address stays.",
    },
    "email_change_title": {
        "kk": "Жаңа мекенжайды растау",
        "ru": "Подтверждение нового адреса",
        "en": "Confirm the new address",
    },
    "email_change_lead": {
        "kk": "Бұл мекенжайды тіркелгіңіздің мекенжайы ету үшін батырманы басыңыз.",
        "ru": "Нажмите кнопку, чтобы сделать этот адрес адресом вашей учётной записи.",
        "en": "Press the button to make this address your account's.",
    },
    "email_changed": {
        "kk": "Мекенжай өзгертілді. Басқа құрылғылардағы сеанстар аяқталды.",
        "ru": "Адрес изменён. Сеансы на других устройствах завершены.",
        "en": "The address is changed. The sessions on other devices have ended.",
    },
    "undo_title": {
        "kk": "Бұрынғы мекенжайды қайтару",
        "ru": "Возврат прежнего адреса",
        "en": "Give back the previous address",
    },
    "undo_lead": {
        "kk": "Мекенжайды сіз өзгертпесеңіз, оны қайтарыңыз: барлық сеанстар аяқталады,"
        " құпиясөз өшіріледі, ал жаңасын таңдауға арналған сілтеме осы мекенжайға келеді.",
        "ru": "Если адрес сменили не вы, верните его: все сеансы завершатся, пароль будет"
        " удалён, а ссылка для выбора нового придёт на этот адрес.",
        "en": "If you did not change the address, take it back: every session ends, the"
        " password is removed, and a link to choose a new one comes to this address.",
    },
    "undo_button": {"kk": "Мекенжайды қайтару", "ru": "Вернуть адрес", "en": "Take it back"},
    "email_restored": {
        "kk": "Бұрынғы мекенжай қайтарылды. Жаңа құпиясөз таңдау үшін поштаңызды тексеріңіз.",
        "ru": "Прежний адрес возвращён. Проверьте почту, чтобы выбрать новый пароль.",
        "en": "The previous address is back. Check your e-mail to choose a new password.",
    },
    # cabinet: phone
    "phone_section": {"kk": "Телефон", "ru": "Телефон", "en": "Phone"},
    "no_phone_yet": {
        "kk": "Телефон нөмірі көрсетілмеген.",
        "ru": "Номер телефона не указан.",
        "en": "No phone number yet.",
    },
    "phone_verified_note": {
        "kk": "расталған: құпиясөзді SMS арқылы қалпына келтіре аласыз",
        "ru": "подтверждён: пароль можно восстановить по SMS",
        "en": "confirmed: it can reset the password by SMS",
    },
    "phone_unverified_note": {
        "kk": "расталмаған: тек расталған нөмірге қалпына келтіру коды келеді",
        "ru": "не подтверждён: код восстановления приходит только на подтверждённый номер",
        "en": "not confirmed: only a confirmed number receives reset codes",
    },
    "phone_for_code": {
        "kk": "Нөмір (ағымдағысы немесе жаңасы)",
        "ru": "Номер (текущий или новый)",
        "en": "Number (the current one or a new one)",
    },
    "pending_phone": {
        "kk": "{phone} нөміріне код жібердік: оны төменде енгізіңіз.",
        "ru": "Мы отправили код на {phone}: введите его ниже.",
        "en": "We sent a code to {phone}: enter it below.",
    },
    "phone_code_sent": {
        "kk": "SMS арқылы код жібердік. Нөмірді растау үшін оны енгізіңіз.",
        "ru": "Мы отправили код в SMS. Введите его, чтобы подтвердить номер.",
        "en": "We sent a code by SMS. Enter it to confirm the number.",
    },
    "verify_phone": {"kk": "Нөмірді растау", "ru": "Подтвердить номер", "en": "Confirm the number"},
    "phone_verified": {
        "kk": "Нөмір расталды. Басқа құрылғылардағы сеанстар аяқталды.",
        "ru": "Номер подтверждён. Сеансы на других устройствах завершены.",
        "en": "The number is confirmed. The sessions on other devices have ended.",
    },
    "remove_phone": {"kk": "Нөмірді жою", "ru": "Удалить номер", "en": "Remove the number"},
    "phone_removed": {
        "kk": "Нөмір жойылды. Басқа құрылғылардағы сеанстар аяқталды.",
        "ru": "Номер удалён. Сеансы на других устройствах завершены.",
        "en": "The number is removed. The sessions on other devices have ended.",
    },
    "no_phone": {
        "kk": "Тіркелгіде телефон нөмірі жоқ.",
        "ru": "В учётной записи нет номера телефона.",
        "en": "The account has no phone number.",
    },
    "unchanged": {
        "kk": "Өзгертетін ештеңе жоқ: бұл тіркелгіде бұрыннан бар.",
        "ru": "Менять нечего: это уже есть в учётной записи.",
        "en": "Nothing to change: the account has this already.",
    },
    "contact_conflict": {
        "kk": "Тіркелгі осы уақытта өзгерді: қайталап көріңіз.",
        "ru": "Учётная запись тем временем изменилась: попробуйте ещё раз.",
        "en": "The account changed meanwhile: try again.",
    },
    # common outcomes
    "fix_errors": {
        "kk": "Белгіленген өрістерді түзетіңіз.",
        "ru": "Исправьте отмеченные поля.",
        "en": "Please correct the marked fields.",
    },
    "username_taken": {
        "kk": "Бұл пайдаланушы аты бос емес.",
        "ru": "Это имя пользователя занято.",
        "en": "This user name is taken.",
    },
    "rate_limited": {
        "kk": "Сұраулар тым көп. {seconds} секундтан кейін қайталаңыз.",
        "ru": "Слишком много запросов. Повторите через {seconds} с.",
        "en": "Too many requests. Try again in {seconds} s.",
    },
    "required": {
        "kk": "Бұл өрісті толтырыңыз.",
        "ru": "Заполните это поле.",
        "en": "Fill in this field.",
    },
    "bad_form": {
        "kk": "Форманың мерзімі өтті: бетті жаңартып, қайталаңыз.",
        "ru": "Форма устарела: обновите страницу и повторите.",
        "en": "The form has expired: reload the page and try again.",
    },
    "policy_name": {"kk": "Саясат", "ru": "Политика", "en": "Policy"},
    # dev mailbox
    "mailbox": {"kk": "Әзірлеуші поштасы", "ru": "Почта разработчика", "en": "Developer mailbox"},
    "mailbox_lead": {
        "kk": "Тек әзірлеу режимінде: жергілікті SMTP серверіне келген хаттар және SMS.",
        "ru": "Только в режиме разработки: письма с локального SMTP-сервера и SMS.",
        "en": "Development mode only: the letters the local SMTP server received, and the SMS.",
    },
    "letters": {"kk": "Хаттар", "ru": "Письма", "en": "Letters"},
    "sms": {"kk": "SMS", "ru": "SMS", "en": "SMS"},
    "to": {"kk": "Кімге", "ru": "Кому", "en": "To"},
    "empty": {"kk": "Әзірге ештеңе жоқ.", "ru": "Пока ничего нет.", "en": "Nothing yet."},
}


def text(key: str, lang: str, **params: str) -> str:
    """The portal's line ``key`` in ``lang`` (``{name}`` fields filled from ``params``)."""
    line = TEXT[key][lang]
    return line.format(**params) if params else line
