"""The `kaspi-identity` command line."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from kaspi_identity import PasswordHasher
from kaspi_identity.cli import main


def run(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


class TestCheck:
    def test_accepted_password_exits_zero(self) -> None:
        """A password meeting the preset prints the localised acceptance and exits 0."""
        code, out, _ = run(["check", "--preset", "kz-procurement", "--lang", "ru"], "Summer2023!\n")
        assert code == 0
        assert "Пароль соответствует требованиям." in out

    def test_rejected_password_lists_every_violation(self) -> None:
        """A rejected password exits 1 and prints each violation's message."""
        code, out, _ = run(["check", "--preset", "kz-procurement"], "summer\n")
        assert code == 1
        assert "Use at least 8 characters." in out
        assert "Add an uppercase Latin letter (A–Z)." in out
        assert "Add a digit (0–9)." in out

    def test_password_is_never_echoed(self) -> None:
        """The password read from stdin does not appear in the output."""
        secret = "Zx9!verysecretvalue"
        _, out, err = run(["check"], secret + "\n")
        assert secret not in out + err

    def test_keyboard_layout_hint_in_kazakh(self) -> None:
        """Cyrillic input under a Latin policy gets the layout hint."""
        code, out, _ = run(["check", "--preset", "utility-cabinet", "--lang", "kk"], "пароль1\n")
        assert code == 1
        assert "ағылшын" in out.lower()

    def test_personal_info_options(self) -> None:
        """--email feeds the personal-information rule."""
        code, out, _ = run(["check", "--email", "aigerim@example.kz"], "aigerim-2024-x\n")
        assert code == 1
        assert "e-mail" in out

    def test_policy_file(self, tmp_path: Path) -> None:
        """--policy reads a TOML file's [password] table."""
        f = tmp_path / "p.toml"
        f.write_text("[password]\nmin_length = 12\nblocklist = false\n", encoding="utf-8")
        assert run(["check", "--policy", str(f)], "short-one\n")[0] == 1
        assert run(["check", "--policy", str(f)], "long-enough-one\n")[0] == 0

    def test_bad_policy_file_exits_two(self, tmp_path: Path) -> None:
        """An invalid policy file is a configuration error: exit 2, the key named."""
        f = tmp_path / "p.toml"
        f.write_text("min_lenght = 3\n", encoding="utf-8")
        code, _, err = run(["check", "--policy", str(f)], "whatever\n")
        assert code == 2
        assert "min_lenght → min_length?" in err

    def test_missing_file_and_empty_stdin_exit_two(self, tmp_path: Path) -> None:
        """A missing policy file or no password on stdin is a usage error."""
        assert run(["check", "--policy", str(tmp_path / "none.toml")], "x\n")[0] == 2
        assert run(["check"], "")[0] == 2

    def test_unknown_preset_and_language_are_usage_errors(self) -> None:
        """argparse rejects unknown choices with exit 2."""
        assert run(["check", "--preset", "nope"], "x\n")[0] == 2
        assert run(["check", "--lang", "de"], "x\n")[0] == 2

    def test_nul_and_control_characters_are_violations(self) -> None:
        """A NUL in the input is a clean violation, not a crash."""
        code, out, _ = run(["check"], "abc\x00defghij\n")
        assert code == 1
        assert "control" in out


class TestDescribe:
    @pytest.mark.parametrize("lang", ["en", "ru", "kk"])
    def test_describe_every_preset(self, lang: str) -> None:
        """describe prints a heading and one line per requirement."""
        for preset in ["kz-procurement", "utility-cabinet", "nist"]:
            code, out, _ = run(["describe", "--preset", preset, "--lang", lang])
            assert code == 0
            assert len(out.strip().splitlines()) >= 3
            assert "{" not in out


class TestHash:
    def test_hash_verifies(self) -> None:
        """hash prints an argon2id hash of the stdin password that verifies."""
        code, out, _ = run(["hash", "--profile", "tests-only"], "Summer2023!\n")
        assert code == 0
        stored = out.strip()
        assert stored.startswith("$argon2id$")
        PasswordHasher().verify(stored, "Summer2023!")

    def test_lone_surrogate_is_refused(self) -> None:
        """A password that cannot be encoded is refused with exit 1, not a traceback."""
        code, _, err = run(["hash", "--profile", "tests-only"], "a\ud800b\n")
        assert code == 1
        assert "Traceback" not in err


class TestCalibrate:
    def test_bad_target_is_usage_error(self) -> None:
        """A non-positive target time is refused."""
        assert run(["calibrate", "--target-ms", "0"])[0] == 2

    def test_calibrate_prints_parameters(self) -> None:
        """calibrate prints a profile for a small target."""
        code, out, _ = run(["calibrate", "--target-ms", "2000", "--memory-kib", "64"])
        assert code == 0
        assert out.startswith("time_cost=")


class TestEntryPoints:
    def test_python_dash_m(self) -> None:
        """`python -m kaspi_identity` runs the same command line."""
        proc = subprocess.run(
            [sys.executable, "-m", "kaspi_identity", "check", "--preset", "nist"],
            input="a-long-enough-passphrase-here\n",
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert "meets" in proc.stdout

    def test_help_exits_zero(self) -> None:
        """--help is not an error."""
        assert run(["--help"])[0] == 0


class TestCompliance:
    def test_preset_passes(self) -> None:
        """The compliance report proves a preset and exits 0."""
        code, out, _ = run(["compliance", "--preset", "utility-cabinet", "--examples", "20"])
        assert code == 0
        assert "PASS" in out
        assert "FAIL" not in out

    def test_policy_file_and_bad_arguments(self, tmp_path: Path) -> None:
        """--policy reads TOML; a missing choice or a bad --examples is a usage error."""
        f = tmp_path / "p.toml"
        f.write_text("[password]\nmin_length = 10\nrequire = ['digit']\n", encoding="utf-8")
        assert run(["compliance", "--policy", str(f), "--examples", "10"])[0] == 0
        assert run(["compliance"])[0] == 2
        assert run(["compliance", "--preset", "nist", "--examples", "0"])[0] == 2


class TestDemo:
    @pytest.mark.parametrize("preset", ["kz-procurement", "utility-cabinet", "nist"])
    def test_demo_runs_the_lifecycle(self, preset: str, tmp_path: Path) -> None:
        """The demo walks every step on a SQLite file and exits 0; no step failed."""
        code, out, _ = run(["demo", "--preset", preset, "--db", str(tmp_path / "d.sqlite3")])
        assert code == 0, out
        assert "Every step behaved as expected." in out
        assert "[11]" in out
        assert (tmp_path / "d.sqlite3").exists()

    def test_demo_narrates_in_kazakh(self) -> None:
        """--lang kk narrates in Kazakh, letters included."""
        code, out, _ = run(["demo", "--lang", "kk"])
        assert code == 0
        assert "Барлық қадам күтілгендей орындалды." in out
