"""The Django app on a host's own AUTH_USER_MODEL, in a process of its own.

Django is configured once per process and the rest of the suite uses ``auth.User``, so
``tests/django_custom_user`` (e-mail log-in, UUID keys, no user name column) runs its
contract suite and flow in a pytest of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("django")

TESTS = Path(__file__).resolve().parent


def test_custom_user_model() -> None:
    """The contract suite and the e-mail flow pass on ``members.Member``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS.parent / "src"), str(TESTS)]),
        "DJANGO_SETTINGS_MODULE": "django_custom_user.settings",
    }
    env.pop("KASPI_IDENTITY_POSTGRES_URL", None)  # this project is on SQLite only
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "-o",
            "python_files=contract_custom_user.py",
            str(TESTS / "django_custom_user" / "contract_custom_user.py"),
        ],
        cwd=TESTS.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    assert " passed" in done.stdout
