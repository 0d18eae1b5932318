"""The package surface: public names, lightness of the import, typing marker."""

from __future__ import annotations

import subprocess
import sys
import types
from importlib import resources

import kaspi_identity


class TestPublicSurface:
    def test_all_is_complete(self) -> None:
        """`__all__` lists exactly the public names the package defines (ruff keeps it sorted)."""
        public = {
            n
            for n, v in vars(kaspi_identity).items()
            if not n.startswith(("_", "@"))
            and not isinstance(v, types.ModuleType)
            and n != "annotations"
        }
        assert set(kaspi_identity.__all__) - {"__version__"} == public

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
