"""The `kaspi-identity` command line."""

from __future__ import annotations

import getpass
import importlib.metadata
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import pytest

from kaspi_identity import PasswordHasher
from kaspi_identity.cli import main


def run(argv: list[str], stdin: str | TextIO = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    source = io.StringIO(stdin) if isinstance(stdin, str) else stdin
    code = main(argv, stdin=source, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


class Terminal(io.StringIO):
    """A standard input that says it is a terminal, so the CLI prompts with getpass."""

    def isatty(self) -> bool:
        return True


def answers(*replies: str | type[BaseException]) -> tuple[list[str], Callable[[str], str]]:
    """A getpass stand-in: returns (or raises) each reply in turn and records the prompts."""
    prompts: list[str] = []
    pending = list(replies)

    def fake_getpass(prompt: str = "Password: ", stream: TextIO | None = None) -> str:
        prompts.append(prompt)
        reply = pending.pop(0)
        if isinstance(reply, str):
            return reply
        raise reply

    return prompts, fake_getpass


# Drives the real command on a pseudo-terminal: waits for the prompt, types one key, and
# relays what the terminal showed and the exit status. It runs in its own interpreter, so
# pty.fork() happens in a process with a single thread.
PTY_DRIVER = r"""
import os, pty, select, sys
key, argv = sys.argv[1].encode("latin-1"), sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, "-m", "kaspi_identity", *argv])
shown = b""
def read(until_prompt):
    global shown
    while select.select([fd], [], [], 10)[0]:
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # EIO: the command has exited and closed the terminal
            return
        if not chunk:
            return
        shown += chunk
        if until_prompt and shown.rstrip().endswith(b":"):
            return
read(until_prompt=True)
os.write(fd, key)
read(until_prompt=False)
_, status = os.waitpid(pid, 0)
sys.stdout.write(shown.decode("utf-8", "replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def on_terminal(key: str, *argv: str) -> tuple[int, str]:
    """Run ``kaspi-identity *argv`` on a pseudo-terminal, press ``key`` at the prompt."""
    proc = subprocess.run(
        [sys.executable, "-c", PTY_DRIVER, key, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.returncode, proc.stdout


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


class TestPrompts:
    @pytest.mark.parametrize(
        ("lang", "prompt"), [("en", "Password: "), ("ru", "Пароль: "), ("kk", "Құпиясөз: ")]
    )
    def test_check_prompt_is_localised(
        self, lang: str, prompt: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """check asks for the password in the --lang language."""
        prompts, fake = answers("Summer2023!")
        monkeypatch.setattr(getpass, "getpass", fake)
        code, _, _ = run(["check", "--preset", "kz-procurement", "--lang", lang], Terminal())
        assert 0 == code
        assert [prompt] == prompts

    def test_hash_prompts_and_mismatch_are_localised(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """hash --lang kk asks twice in Kazakh and says in Kazakh that the two differ."""
        prompts, fake = answers("Summer2023!", "Summer2024!")
        monkeypatch.setattr(getpass, "getpass", fake)
        code, out, err = run(["hash", "--profile", "tests-only", "--lang", "kk"], Terminal())
        assert 1 == code
        assert ["Құпиясөз: ", "Құпиясөзді қайталаңыз: "] == prompts
        assert "kaspi-identity: Құпиясөздер сәйкес келмейді.\n" == err
        assert "" == out

    def test_hash_asks_twice_in_english_by_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without --lang the prompts are English, and two equal answers give a hash."""
        prompts, fake = answers("Summer2023!", "Summer2023!")
        monkeypatch.setattr(getpass, "getpass", fake)
        code, out, _ = run(["hash", "--profile", "tests-only"], Terminal())
        assert 0 == code
        assert ["Password: ", "Repeat the password: "] == prompts
        assert out.startswith("$argon2id$")

    @pytest.mark.parametrize(
        ("interruption", "lang", "message"),
        [
            (KeyboardInterrupt, "en", "kaspi-identity: Interrupted.\n"),
            (KeyboardInterrupt, "ru", "kaspi-identity: Прервано.\n"),
            (KeyboardInterrupt, "kk", "kaspi-identity: Әрекет тоқтатылды.\n"),
            (EOFError, "en", "kaspi-identity: No input: no password was entered.\n"),
            (EOFError, "ru", "kaspi-identity: Нет ввода: пароль не введён.\n"),
            (EOFError, "kk", "kaspi-identity: Енгізу жоқ: құпиясөз енгізілмеді.\n"),
        ],
    )
    def test_ctrl_c_and_ctrl_d_say_why(
        self,
        interruption: type[BaseException],
        lang: str,
        message: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Ctrl-C (KeyboardInterrupt) or Ctrl-D (EOFError) at a prompt: exit 2, saying why."""
        for command in (["check"], ["hash", "--profile", "tests-only"]):
            _, fake = answers(interruption)
            monkeypatch.setattr(getpass, "getpass", fake)
            code, out, err = run([*command, "--lang", lang], Terminal())
            assert (2, "", message) == (code, out, err)

    def test_ctrl_c_at_the_repeat_prompt(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An interruption at the second prompt of hash is reported the same way."""
        _, fake = answers("Summer2023!", KeyboardInterrupt)
        monkeypatch.setattr(getpass, "getpass", fake)
        assert (2, "", "kaspi-identity: Interrupted.\n") == run(
            ["hash", "--profile", "tests-only"], Terminal()
        )

    @pytest.mark.parametrize(
        ("lang", "message"), [("en", "No input"), ("ru", "Нет ввода"), ("kk", "Енгізу жоқ")]
    )
    def test_empty_standard_input_says_why(self, lang: str, message: str) -> None:
        """No line on a piped standard input is "no input" too, in the chosen language."""
        code, _, err = run(["check", "--lang", lang], "")
        assert 2 == code
        assert err.startswith(f"kaspi-identity: {message}")

    @pytest.mark.parametrize(
        ("key", "lang", "message"),
        [
            ("\x03", "en", "Interrupted."),
            ("\x04", "en", "No input: no password was entered."),
            ("\x03", "ru", "Прервано."),
            ("\x04", "kk", "Енгізу жоқ: құпиясөз енгізілмеді."),
        ],
    )
    def test_on_a_real_terminal(self, key: str, lang: str, message: str) -> None:
        """On a pseudo-terminal, Ctrl-C or Ctrl-D at the localised prompt exits 2 with why."""
        code, shown = on_terminal(key, "check", "--lang", lang)
        assert 2 == code, shown
        prompt = {"en": "Password:", "ru": "Пароль:", "kk": "Құпиясөз:"}[lang]
        assert prompt in shown
        assert f"kaspi-identity: {message}" in shown
        assert "Traceback" not in shown


class TestVersion:
    def test_version(self) -> None:
        """--version prints the installed package version and exits 0."""
        expected = f"kaspi-identity {importlib.metadata.version('kaspi-identity')}\n"
        assert (0, expected, "") == run(["--version"])

    def test_version_with_python_dash_m(self) -> None:
        """`python -m kaspi_identity --version` prints the same."""
        proc = subprocess.run(
            [sys.executable, "-m", "kaspi_identity", "--version"],
            capture_output=True,
            text=True,
            check=False,
        )
        version = importlib.metadata.version("kaspi-identity")
        assert (0, f"kaspi-identity {version}\n") == (proc.returncode, proc.stdout)


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

    def test_progress_on_stderr(self) -> None:
        """Each timing is reported on stderr as it is made; stdout holds only the result."""
        code, out, err = run(["calibrate", "--target-ms", "2000", "--memory-kib", "64"])
        assert 0 == code
        assert 1 == len(out.splitlines())
        lines = err.splitlines()
        assert lines[0] == (
            "Measuring argon2id on this host: target 2000 ms per hash, "
            "64 KiB of memory, parallelism 1."
        )
        assert lines[1].startswith("  time_cost=1, run 1/3: ")
        assert lines[1].endswith(" ms")
        assert len(lines) >= 4
        assert f"  {out.split()[0]}, run 1/3: " in err  # the chosen time_cost was measured

    def test_progress_is_localised(self) -> None:
        """calibrate --lang ru reports its progress in Russian."""
        code, _, err = run(
            ["calibrate", "--target-ms", "2000", "--memory-kib", "64", "--lang", "ru"]
        )
        assert 0 == code
        assert err.startswith("Замер argon2id на этом компьютере: цель 2000 мс на хеш")
        assert ", замер 1/3: " in err

    def test_ctrl_c_while_measuring(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Ctrl-C during the measurements: exit 2 with "Interrupted." after the progress."""
        import kaspi_identity.cli as cli

        def interrupted(profile: object) -> float:
            raise KeyboardInterrupt

        monkeypatch.setattr(cli, "_time_one_hash", interrupted)
        code, out, err = run(["calibrate", "--lang", "ru"])
        assert (2, "") == (code, out)
        assert err.startswith("Замер argon2id")
        assert err.endswith("\nkaspi-identity: Прервано.\n")

    def test_help_shows_the_default_target(self, capsys: pytest.CaptureFixture[str]) -> None:
        """calibrate --help says what the target time is when none is given."""
        assert 0 == run(["calibrate", "--help"])[0]
        text = " ".join(capsys.readouterr().out.split())
        assert "target hash time in milliseconds (default: 500)" in text


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

    @pytest.mark.parametrize("where", ["missing-directory", "directory", "not-sqlite"])
    def test_unusable_db_is_a_configuration_error(self, where: str, tmp_path: Path) -> None:
        """docs/cli.md: a --db that cannot be used exits 2 with why, before any step runs."""
        path = {
            "missing-directory": tmp_path / "nonexistent" / "x.db",
            "directory": tmp_path,
            "not-sqlite": tmp_path / "notes.txt",
        }[where]
        (tmp_path / "notes.txt").write_text("not a database\n" * 100, encoding="utf-8")
        code, out, err = run(["demo", "--db", str(path)])
        assert 2 == code
        assert "" == out
        assert err.startswith(f"kaspi-identity: --db {path}: ")
        reason = {
            "missing-directory": f"the directory {path.parent} does not exist",
            "directory": "it is a directory, not a file",
            "not-sqlite": "file is not a database",
        }[where]
        assert reason in err
        assert not (tmp_path / "nonexistent").exists()

    def test_nonexistent_db_in_a_subprocess(self) -> None:
        """The issue's reproduction: demo --db /nonexistent/x.db exits 2."""
        proc = subprocess.run(
            [sys.executable, "-m", "kaspi_identity", "demo", "--db", "/nonexistent/x.db"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert 2 == proc.returncode
        assert "the directory /nonexistent does not exist" in proc.stderr

    def test_demo_narrates_in_kazakh(self) -> None:
        """--lang kk narrates in Kazakh, letters included."""
        code, out, _ = run(["demo", "--lang", "kk"])
        assert code == 0
        assert "Барлық қадам күтілгендей орындалды." in out


class TestDescribeDeviations:
    def test_deviations_are_printed(self) -> None:
        """--deviations adds one block per deviation, in English, after the requirements."""
        code, out, _ = run(
            ["describe", "--preset", "utility-cabinet", "--lang", "ru", "--deviations"]
        )
        assert code == 0
        assert out.startswith("Требования к паролю:")
        assert "Deviations from NIST SP 800-63B-4 and OWASP ASVS 5.0:" in out
        assert "  - max_length: OWASP ASVS 5.0 6.2.9\n" in out
        assert "    this policy:  Rejects passwords longer than 10 characters.\n" in out
        assert out.count("\n  - ") == 2 + 11  # two requirement lines, eleven deviations

    def test_none(self) -> None:
        """A policy without deviations says so."""
        code, out, _ = run(["describe", "--preset", "nist", "--deviations"])
        assert code == 0
        assert out.rstrip().endswith("No deviations from NIST SP 800-63B-4 and OWASP ASVS 5.0.")

    def test_multi_factor(self) -> None:
        """--multi-factor lowers NIST's minimum to 8; it needs --deviations."""
        code, out, _ = run(["describe", "--deviations", "--multi-factor"])
        assert (code, "No deviations" in out) == (0, True)
        code, _, err = run(["describe", "--multi-factor"])
        assert (code, err) == (2, "kaspi-identity: --multi-factor needs --deviations\n")

    def test_without_the_flag_nothing_changes(self) -> None:
        """describe alone prints the requirement lines only."""
        _, out, _ = run(["describe", "--preset", "utility-cabinet"])
        assert "Deviations" not in out
