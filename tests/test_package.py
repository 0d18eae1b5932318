"""The package surface: public names, lightness of the import, typing marker."""

from __future__ import annotations

import subprocess
import sys
import types
from importlib import resources

import pytest

import kaspi_identity


class TestPublicSurface:
    def test_all_is_complete(self) -> None:
        """`__all__` lists exactly the public names the package defines (ruff keeps it sorted)."""
        public = {
            n
            for n in dir(kaspi_identity)
            if not n.startswith(("_", "@"))
            and not isinstance(getattr(kaspi_identity, n), types.ModuleType)
            and n != "annotations"
        }
        assert set(kaspi_identity.__all__) - {"__version__"} == public

    def test_names_loaded_on_first_use_are_the_real_ones(self) -> None:
        """A name loaded on first use is the very object of the module that defines it."""
        from kaspi_identity import hashing, phone, policy

        assert kaspi_identity.PasswordPolicy is policy.PasswordPolicy
        assert kaspi_identity.PasswordHasher is hashing.PasswordHasher
        assert kaspi_identity.InvalidPhoneError is phone.InvalidPhoneError
        assert issubclass(kaspi_identity.InvalidPhoneError, kaspi_identity.KaspiIdentityError)

    def test_an_unknown_name_is_an_attribute_error(self) -> None:
        """A name the package does not have raises AttributeError, as for any module."""
        with pytest.raises(AttributeError, match="no_such_name"):
            kaspi_identity.no_such_name  # noqa: B018
        code = (
            "try:\n    from kaspi_identity import no_such_name\n"
            "except ImportError as exc:\n    print(type(exc).__name__)\n"
        )
        assert python(code) == "ImportError"

    def test_star_import_gives_every_public_name(self) -> None:
        """``from kaspi_identity import *`` binds every name of ``__all__``."""
        code = (
            "from kaspi_identity import *\nimport kaspi_identity\n"
            "print(sorted(set(kaspi_identity.__all__) - set(globals())))\n"
        )
        assert python(code) == "[]"

    def test_every_public_name_has_a_docstring(self) -> None:
        """Every public class and function says what it is for."""
        for name in kaspi_identity.__all__:
            obj = getattr(kaspi_identity, name)
            if callable(obj):
                assert obj.__doc__, name

    def test_errors_subclass_the_matching_builtins(self) -> None:
        """Both `except KaspiIdentityError` and idiomatic catches work."""
        assert issubclass(kaspi_identity.PolicyConfigError, ValueError)
        assert issubclass(kaspi_identity.UnknownLanguageError, ValueError)
        assert issubclass(kaspi_identity.InvalidHashError, ValueError)
        assert issubclass(kaspi_identity.AccountNotFoundError, LookupError)
        for name in kaspi_identity.__all__:
            obj = getattr(kaspi_identity, name)
            if isinstance(obj, type) and issubclass(obj, Exception):
                assert issubclass(obj, kaspi_identity.KaspiIdentityError), name

    def test_py_typed_is_shipped(self) -> None:
        """The package carries the PEP 561 marker."""
        assert resources.files("kaspi_identity").joinpath("py.typed").is_file()


class TestImportIsLight:
    def test_import_pulls_in_no_heavy_or_test_dependency(self) -> None:
        """`import kaspi_identity` loads neither test tools, zxcvbn nor optional adapters."""
        code = (
            "import sys, kaspi_identity\n"
            "heavy = ['hypothesis', 'pytest', 'zxcvbn', 'redis', 'sqlalchemy', 'phonenumbers',"
            " 'kaspi_identity.testing', 'sqlite3']\n"
            "print(','.join(m for m in heavy if m in sys.modules))\n"
        )
        assert python(code) == ""

    @pytest.mark.parametrize(
        "statement",
        [
            "import kaspi_identity",
            "import kaspi_identity.delivery",
            "from kaspi_identity.delivery import Outbox, render_email",
            "from kaspi_identity.services import IdentityService, IdentitySettings",
            "from kaspi_identity import PasswordPolicy, PasswordHasher",
        ],
    )
    def test_no_mail_or_tls_module_until_a_sender_is_named(self, statement: str) -> None:
        """smtplib, ssl, socket and the email package load only with an SMTP sender."""
        code = (
            f"import sys\n{statement}\n"
            "heavy = ['smtplib', 'ssl', 'email', 'socket', 'kaspi_identity.delivery._smtp']\n"
            "print(','.join(m for m in heavy if m in sys.modules))\n"
        )
        assert python(code) == ""

    def test_naming_the_smtp_sender_loads_smtplib(self) -> None:
        """The SMTP sender is the real class once named, and brings smtplib and ssl with it."""
        code = (
            "import sys\n"
            "from kaspi_identity.delivery import SmtpEmailSender, SmtpSecurity\n"
            "from kaspi_identity.delivery._smtp import SmtpEmailSender as Real\n"
            "assert SmtpEmailSender is Real\n"
            "print(','.join(m for m in ['smtplib', 'ssl', 'email'] if m in sys.modules))\n"
        )
        assert python(code) == "smtplib,ssl,email"

    def test_import_loads_only_the_exceptions(self) -> None:
        """``import kaspi_identity`` loads argon2, the policy engine and i18n on first use only."""
        code = (
            "import sys, kaspi_identity\n"
            "lazy = ['argon2', 'kaspi_identity.policy', 'kaspi_identity.i18n',"
            " 'kaspi_identity.hashing', 'kaspi_identity.storage', 'kaspi_identity.phone']\n"
            "before = [m for m in lazy if m in sys.modules]\n"
            "kaspi_identity.PasswordHasher\n"
            "print(','.join(before), '|', 'argon2' in sys.modules)\n"
        )
        assert python(code) == "| True"

    def test_delivery_loads_the_async_sender_on_first_use(self) -> None:
        """`kaspi_identity.delivery` needs neither aiosmtplib nor greenlet until asked."""
        code = (
            "import sys, kaspi_identity, kaspi_identity.delivery as d\n"
            "heavy = ['aiosmtplib', 'greenlet', 'asyncio']\n"
            "before = [m for m in heavy if m in sys.modules]\n"
            "d.AsyncSmtpEmailSender\n"
            "print(','.join(before), '|', ','.join(m for m in heavy if m in sys.modules))\n"
        )
        assert python(code) == "| aiosmtplib,greenlet,asyncio"


def python(code: str) -> str:
    """What a fresh interpreter prints running ``code``, stripped."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()
