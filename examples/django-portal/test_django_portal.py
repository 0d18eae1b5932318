"""Runs the portal's own Django tests (``manage.py test portal``) in a process of its own.

The portal has its own settings module, and Django is configured once per process, so its
tests run beside the suite's, not inside it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("django")

HERE = Path(__file__).resolve().parent
SRC = HERE.parent.parent / "src"


def test_portal_end_to_end() -> None:
    """``python manage.py test portal`` passes: every flow of the portal works."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(HERE)])}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, "-W", "error", "manage.py", "test", "portal", "--noinput", "-v", "1"],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stderr
