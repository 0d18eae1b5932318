"""The compliance kit: strategies, the pytest plugin and the compliance report."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from kaspi_identity import PRESET_NAMES, VIOLATION_CODES, PasswordPolicy, UserInfo
from kaspi_identity.i18n import Catalog, get_catalog
from kaspi_identity.testing import passwords, policies, run_compliance, violating_passwords

pytest_plugins = ["pytester"]

FAST = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
#: zxcvbn runs on every check: fewer examples.
STRONG = settings(FAST, max_examples=15)

USER = UserInfo(
    username="bolat_k",
    email="bolat.kairatuly@example.kz",
    phone="8 701 555 12 34",
    names=("Болат", "Қайратұлы"),
)
#: The codes one password can carry (the rest need history, a second input or a breach corpus).
SINGLE = tuple(
    c
    for c in VIOLATION_CODES
    if c not in ("reused", "similar_to_previous", "confirmation_mismatch", "breached")
)
KZ = PasswordPolicy.preset("kz-procurement")
#: Codes whose violation needs room: a run, a blocklisted word, a piece of personal data.
FITTED = ("repeated_characters", "too_common", "contains_personal_info")


def rule_on(policy: PasswordPolicy, code: str) -> bool:
    """Whether the rule behind ``code`` is configured."""
    if code.startswith("missing_"):
        return code.removeprefix("missing_") in policy.require
    setting = {
        "too_short": policy.min_length,
        "too_long": policy.max_length,
        "disallowed_character": True,
        "too_few_classes": policy.min_classes,
        "repeated_characters": policy.max_repeat,
        "contains_personal_info": policy.forbid_personal_info,
        "too_common": policy.blocklist,
        "too_weak": policy.min_strength,
    }[code]
    return bool(setting)


class TestPolicies:
    @FAST
    @given(policy=policies(strength=False))
    def test_draws_valid_policies(self, policy: PasswordPolicy) -> None:
        """Every example is a policy that round-trips through its mapping."""
        assert isinstance(policy, PasswordPolicy)
        assert policy.min_strength is None
        assert PasswordPolicy.from_mapping(policy.to_mapping()) == policy

    def test_draws_class_counts(self) -> None:
        """Some drawn policies ask for a class more than once (``require = {digit = 2}``)."""
        policy = find(
            policies(strength=False, presets=False),
            lambda p: any(n > 1 for n in p.require.values()),
            settings=settings(max_examples=500, deadline=None),
        )
        assert isinstance(policy.to_mapping()["require"], dict)

    @FAST
    @given(policy=policies(strength=False, presets=False), data=st.data())
    def test_count_policies_accept_their_passwords(
        self, policy: PasswordPolicy, data: st.DataObject
    ) -> None:
        """``passwords`` meets every class count of a drawn policy."""
        password = data.draw(passwords(policy))
        assert not {"missing_upper", "missing_lower", "missing_digit", "missing_special"} & set(
            policy.check(password).codes
        )

    def test_flags_must_be_bools(self) -> None:
        """A non-bool flag fails when the strategy is made, not when it is drawn."""
        with pytest.raises(InvalidArgument, match="strength must be a bool"):
            policies(strength="yes")  # type: ignore[arg-type]


class TestPasswords:
    @FAST
    @given(data=st.data(), policy=policies(strength=False))
    def test_every_example_is_accepted(self, data: st.DataObject, policy: PasswordPolicy) -> None:
        """For any policy without strength rule, every example passes the policy."""
        password = data.draw(passwords(policy), label="password")
        assert policy.check(password).ok

    @FAST
    @given(data=st.data(), policy=policies(strength=False))
    def test_with_a_user_every_example_is_accepted(
        self, data: st.DataObject, policy: PasswordPolicy
    ) -> None:
        """With personal data in play, every example still passes for that user."""
        password = data.draw(passwords(policy, user=USER), label="password")
        assert policy.check(password, user=USER).ok

    @STRONG
    @given(data=st.data(), policy=policies().filter(lambda p: p.min_strength is not None))
    def test_strong_policies(self, data: st.DataObject, policy: PasswordPolicy) -> None:
        """Policies with a zxcvbn minimum get passwords that reach it."""
        password = data.draw(passwords(policy, user=USER), label="password")
        assert policy.check(password, user=USER).ok

    @pytest.mark.parametrize("name", PRESET_NAMES)
    def test_presets(self, name: str) -> None:
        """Each preset's examples pass it."""
        policy = PasswordPolicy.preset(name)

        @FAST
        @given(passwords(policy))
        def accepted(password: str) -> None:
            assert policy.check(password).ok

        accepted()

    def test_a_policy_only_short_patterns_satisfy(self) -> None:
        """zxcvbn is not monotonic in length: such a policy exists, and gets its passwords."""
        policy = PasswordPolicy(
            alphabet="A1", max_repeat=1, min_length=None, max_length=14, min_strength=1
        )

        @STRONG
        @given(passwords(policy))
        def accepted(password: str) -> None:
            assert policy.check(password).ok

        accepted()

    def test_shrinks_to_a_readable_password(self) -> None:
        """The minimal example reads like a password a person types."""
        assert "Aaaaaa0!" == find(passwords(KZ), lambda p: True)
        assert "aaaaa" == find(passwords(PasswordPolicy.preset("utility-cabinet")), lambda p: True)

    @FAST
    @given(data=st.data(), size=st.integers(8, 12))
    def test_max_size_caps_the_length(self, data: st.DataObject, size: int) -> None:
        """``max_size`` bounds the examples."""
        password = data.draw(passwords(KZ, max_size=size))
        assert 8 <= len(password) <= size

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"max_size": 7}, "max_size=7 is below the shortest password"),
            ({"max_size": "8"}, "max_size must be an int"),
            ({"user": "aliya"}, "user must be a UserInfo"),
        ],
    )
    def test_bad_arguments_fail_fast(self, kwargs: dict[str, object], message: str) -> None:
        """A bad argument raises when the strategy is made, naming it; also a ValueError."""
        with pytest.raises(InvalidArgument, match=message) as info:
            passwords(KZ, **kwargs)  # type: ignore[arg-type]
        assert isinstance(info.value, ValueError)

    def test_policy_must_be_a_policy(self) -> None:
        """A mapping is not a policy."""
        with pytest.raises(InvalidArgument, match="policy must be a PasswordPolicy"):
            passwords({"min_length": 8})  # type: ignore[arg-type]


class TestViolatingPasswords:
    @FAST
    @given(data=st.data(), policy=policies(strength=False), code=st.sampled_from(SINGLE))
    def test_examples_carry_the_code(
        self, data: st.DataObject, policy: PasswordPolicy, code: str
    ) -> None:
        """Every example has the chosen code; the strategy refuses only rules that are off."""
        try:
            strategy = violating_passwords(policy, code, user=USER)
        except InvalidArgument as exc:
            reason = str(exc)
            strategy = None
        if strategy is None:
            # Off, or what breaks the rule (a run, a blocklisted word) cannot fit max_length.
            assert not rule_on(policy, code) or ("fit" in reason and code in FITTED)
            return
        assert rule_on(policy, code)
        password = data.draw(strategy, label="password")
        assert code in policy.check(password, user=USER).codes

    @STRONG
    @given(data=st.data(), policy=policies().filter(lambda p: p.min_strength is not None))
    def test_too_weak(self, data: st.DataObject, policy: PasswordPolicy) -> None:
        """Weak examples are weak by zxcvbn's judgement."""
        password = data.draw(violating_passwords(policy, "too_weak", user=USER))
        assert "too_weak" in policy.check(password, user=USER).codes

    @pytest.mark.parametrize(
        ("code", "minimal"),
        [
            ("too_short", "Aa0!"),
            ("missing_digit", "Aaaaaaa!"),
            ("missing_special", "Aaaaaaa0"),
            ("missing_upper", "aaaaaa0!"),
            ("missing_lower", "AAAAAA0!"),
            ("disallowed_character", "Aaaaa0!\x00"),
        ],
    )
    def test_shrinks_to_a_near_miss(self, code: str, minimal: str) -> None:
        """The minimal example breaks the chosen rule and little else."""
        example = find(violating_passwords(KZ, code), lambda p: True)
        assert minimal == example
        assert [code] == list(KZ.check(example).codes)

    @pytest.mark.parametrize(
        ("policy", "code", "reason"),
        [
            (KZ, "too_few_classes", "sets no min_classes"),
            (KZ, "too_common", "blocklist=False"),
            (KZ, "too_weak", "sets no min_strength"),
            (KZ, "repeated_characters", "sets no max_repeat"),
            (PasswordPolicy(min_length=None), "too_short", "sets no min_length"),
            (PasswordPolicy(max_length=None), "too_long", "sets no max_length"),
            (PasswordPolicy(), "missing_digit", "does not require 'digit'"),
            (
                PasswordPolicy(max_repeat=5, max_length=5, min_length=1),
                "repeated_characters",
                "does not fit",
            ),
            (PasswordPolicy(), "contains_personal_info", "pass user="),
            (PasswordPolicy(forbid_personal_info=False), "contains_personal_info", "=False"),
            (PasswordPolicy(), "reused", "PasswordHistory"),
            (PasswordPolicy(), "similar_to_previous", "PasswordHistory"),
            (PasswordPolicy(), "confirmation_mismatch", "confirmation="),
            (PasswordPolicy(), "missing_digits", "did you mean 'missing_digit'"),
        ],
    )
    def test_impossible_requests_fail_fast(
        self, policy: PasswordPolicy, code: str, reason: str
    ) -> None:
        """A code the policy cannot report raises at once, with the reason."""
        with pytest.raises(InvalidArgument, match=reason) as info:
            violating_passwords(policy, code)
        assert isinstance(info.value, ValueError)

    def test_personal_info_needs_usable_data(self) -> None:
        """A user with nothing of three characters or more cannot be put in a password."""
        with pytest.raises(InvalidArgument, match="no name, user name"):
            violating_passwords(PasswordPolicy(), "contains_personal_info", user=UserInfo("ab"))

    def test_too_short_with_min_length_one_is_the_empty_password(self) -> None:
        """With ``min_length=1`` the only too-short password is ``""``."""
        policy = PasswordPolicy(min_length=1)

        @FAST
        @given(violating_passwords(policy, "too_short"))
        def only_empty(password: str) -> None:
            assert "" == password

        only_empty()

    @FAST
    @given(password=violating_passwords(PasswordPolicy(blocklist=True), "too_common"))
    def test_common_passwords_include_other_layouts(self, password: str) -> None:
        """Blocklisted passwords come in several spellings, all reported."""
        assert "too_common" in PasswordPolicy().check(password).codes

    def test_common_passwords_typed_in_the_russian_layout(self) -> None:
        """One spelling is the word typed with the Russian layout switched on."""
        found = find(
            violating_passwords(PasswordPolicy(), "too_common"),
            lambda p: any("а" <= c <= "я" for c in p) and p.isalpha(),
        )
        assert "too_common" in PasswordPolicy().check(found).codes


class TestPlugin:
    def test_entry_point_is_registered(self) -> None:
        """pytest finds the plugin through the ``pytest11`` entry point ``kaspi_identity``."""
        found = {e.name: e.value for e in entry_points(group="pytest11")}
        assert "kaspi_identity.testing._plugin" == found.get("kaspi_identity")

    def test_loading_the_plugin_is_light(self) -> None:
        """Importing the plugin (what pytest does at start-up) loads no heavy module."""
        code = (
            "import sys, kaspi_identity.testing._plugin\n"
            "heavy = ['hypothesis', 'zxcvbn', 'phonenumbers', 'sqlite3',"
            " 'kaspi_identity.storage.memory', 'kaspi_identity.services',"
            " 'kaspi_identity.testing._machine', 'kaspi_identity.testing._contracts']\n"
            "print(','.join(m for m in heavy if m in sys.modules))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert "" == out.stdout.strip()

    def test_fixtures_in_a_fresh_project(self, pytester: pytest.Pytester) -> None:
        """Without any configuration a host's tests get every fixture, wired together."""
        pytester.makepyfile(
            test_host="""
            from datetime import timedelta
            from kaspi_identity import TESTS_ONLY, PasswordPolicy
            from kaspi_identity.delivery import extract_link

            def test_parts(kaspi_outbox, kaspi_clock, kaspi_hasher, kaspi_storage, kaspi_audit):
                assert kaspi_outbox.emails == []
                start = kaspi_clock.now()
                assert kaspi_clock.advance(minutes=5) - start == timedelta(minutes=5)
                assert kaspi_hasher.profile == TESTS_ONLY
                assert kaspi_storage.accounts.get("nobody") is None
                assert kaspi_audit.kinds() == []

            def test_service(kaspi_identity_service, kaspi_outbox, kaspi_audit, kaspi_policy):
                assert kaspi_identity_service.policy == kaspi_policy == PasswordPolicy()
                pw = "Tengri-Sky-2026"
                result = kaspi_identity_service.register(
                    email="aliya@example.kz", password=pw, confirmation=pw, client_key="t"
                )
                assert result.ok
                assert extract_link(kaspi_outbox.last_email(to="aliya@example.kz")).startswith(
                    "https://portal.test/confirm"
                )
                assert kaspi_audit.kinds() == ["registered"]
            """
        )
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
        result.assert_outcomes(passed=2)

    def test_host_overrides_the_policy(self, pytester: pytest.Pytester) -> None:
        """A ``kaspi_policy`` fixture in the host's conftest reaches the service."""
        pytester.makeconftest(
            """
            import pytest
            from kaspi_identity import PasswordPolicy

            @pytest.fixture
            def kaspi_policy():
                return PasswordPolicy.preset("utility-cabinet")
            """
        )
        pytester.makepyfile(
            """
            def test_policy(kaspi_identity_service):
                assert kaspi_identity_service.policy.max_length == 10
            """
        )
        pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)

    def test_can_be_switched_off(self, pytester: pytest.Pytester) -> None:
        """``-p no:kaspi_identity`` removes the fixtures."""
        pytester.makepyfile("def test_x(kaspi_clock):\n    pass\n")
        result = pytester.runpytest_subprocess("-p", "no:kaspi_identity", "-p", "no:cacheprovider")
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*fixture 'kaspi_clock' not found*"])


class TestCompliance:
    @pytest.mark.parametrize("name", PRESET_NAMES)
    def test_presets_comply(self, name: str) -> None:
        """Every preset passes every check."""
        out = io.StringIO()
        assert 0 == run_compliance(PasswordPolicy.preset(name), out=out, examples=20)
        report = out.getvalue()
        assert report.startswith("kaspi-identity compliance: ")
        assert "FAIL" not in report
        assert report.rstrip().splitlines()[-1].startswith("OK: all ")

    def test_report_of_a_full_policy(self) -> None:
        """Every configured rule gets a line; none is left out."""
        policy = PasswordPolicy(
            min_length=10,
            require=["upper", "lower", "digit", "special"],
            min_classes=4,
            max_repeat=2,
            min_strength=2,
            history=6,
            history_similar=True,
        )
        out = io.StringIO()
        assert 0 == run_compliance(policy, out=out, examples=10)
        report = out.getvalue()
        for code in SINGLE:
            assert f"PASS  rejects {code} " in report
        assert "PASS  satisfiable" in report
        assert "PASS  accepts what it should" in report
        assert "PASS  messages complete" in report
        assert "rules off" not in report

    def test_a_rule_that_lets_a_password_through_fails(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If the engine forgot a rule, the report names it with a minimal example."""
        real = PasswordPolicy.check

        def forgetful(self: PasswordPolicy, password: str, **kwargs: object) -> object:
            result = real(self, password, **kwargs)  # type: ignore[arg-type]
            kept = tuple(v for v in result.violations if v.code != "missing_digit")
            return type(result)(kept, result.hints)

        monkeypatch.setattr(PasswordPolicy, "check", forgetful)
        out = io.StringIO()
        assert 1 == run_compliance(KZ, out=out, examples=20)
        report = out.getvalue()
        assert "FAIL  rejects missing_digit" in report
        assert "'Aaaaaaa!'" in report
        assert report.rstrip().endswith("FAILED: 1 of 10 checks failed")

    def test_a_rule_that_rejects_a_good_password_fails(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If a structural rule rejected well-formed passwords, acceptance fails."""
        real = PasswordPolicy.check

        def strict(self: PasswordPolicy, password: str, **kwargs: object) -> object:
            result = real(self, password, **kwargs)  # type: ignore[arg-type]
            if "a" in password:
                from kaspi_identity import Violation

                extra = (Violation("repeated_characters", {"max_repeat": 1}),)
                return type(result)(result.violations + extra, result.hints)
            return result

        monkeypatch.setattr(PasswordPolicy, "check", strict)
        out = io.StringIO()
        assert 1 == run_compliance(PasswordPolicy.preset("utility-cabinet"), out=out, examples=20)
        report = out.getvalue()
        assert "FAIL  accepts what it should" in report
        assert "rejected with repeated_characters for 'aaaaa'" in report

    def test_a_missing_translation_fails(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A message absent from the Kazakh catalog is reported."""
        from kaspi_identity.i18n import _catalog

        kk = get_catalog("kk")
        broken = Catalog.from_po_text(
            'msgid ""\nmsgstr ""\n"Language: kk\\n"\n"Plural-Forms: nplurals=1; plural=0;\\n"\n'
        )
        assert broken.keys() < kk.keys()
        monkeypatch.setitem(_catalog._cache, "kk", broken)
        out = io.StringIO()
        assert 1 == run_compliance(KZ, out=out, examples=5)
        report = out.getvalue()
        assert "FAIL  messages complete" in report
        assert "kk: violation." in report

    def test_seed_makes_the_report_reproducible(self) -> None:
        """The same seed gives the same report."""
        reports = []
        for _ in range(2):
            out = io.StringIO()
            run_compliance(PasswordPolicy.preset("nist"), out=out, examples=10, seed=7)
            reports.append(out.getvalue())
        assert reports[0] == reports[1]

    @pytest.mark.parametrize(
        ("kwargs", "error"),
        [
            ({"policy": {"min_length": 8}}, TypeError),
            ({"examples": 0}, ValueError),
            ({"examples": True}, TypeError),
            ({"seed": "0"}, TypeError),
        ],
    )
    def test_bad_arguments(self, kwargs: dict[str, object], error: type[Exception]) -> None:
        """Bad arguments raise before any check runs, and nothing is written."""
        arguments: dict[str, object] = {"policy": KZ, **kwargs}
        out = io.StringIO()
        with pytest.raises(error):
            run_compliance(out=out, **arguments)  # type: ignore[arg-type]
        assert "" == out.getvalue()


_USERS_SCHEMA = """
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    login TEXT, login_key TEXT UNIQUE,
    email TEXT, email_key TEXT UNIQUE,
    phone TEXT UNIQUE,
    pw_hash TEXT,
    email_ok INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    failed_at INTEGER, login_at INTEGER,
    created_at INTEGER NOT NULL,
    lang TEXT NOT NULL DEFAULT 'en',
    stamp VARCHAR(64) NOT NULL,
    iin TEXT UNIQUE,
    names TEXT NOT NULL DEFAULT '[]',
    pw_set_at INTEGER,
    must_change INTEGER NOT NULL DEFAULT 0,
    grace_used INTEGER NOT NULL DEFAULT 0,
    phone_ok INTEGER NOT NULL DEFAULT 0,
    pending_email TEXT, pending_phone TEXT,
    previous_email TEXT, email_changed_at INTEGER,
    time_zone TEXT
)
"""


def _docs_users_table_example() -> str:
    """The ``UsersTableAccounts`` example of docs/storage.md, as the page shows it."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "storage.md").read_text("utf-8")
    blocks: list[str] = re.findall(r"^```python\n(.*?)^```", page, flags=re.DOTALL | re.MULTILINE)
    [example] = [block for block in blocks if "class UsersTableAccounts" in block]
    return example


class TestContractSuiteForHosts:
    """The contract suite as a host runs it: subclassed in the host's own test module."""

    @staticmethod
    def _host_project(pytester: pytest.Pytester, store_module: str) -> None:
        pytester.makepyfile(users_table=store_module)
        pytester.makepyfile(
            test_host=f"""
            import sqlite3
            import pytest
            from users_table import UsersTableAccounts
            from kaspi_identity.testing import AccountStoreContract

            SCHEMA = {_USERS_SCHEMA!r}


            class TestUsersTable(AccountStoreContract):
                @pytest.fixture
                def accounts(self, tmp_path):
                    path = str(tmp_path / "app.db")
                    db = sqlite3.connect(path)
                    db.execute("PRAGMA journal_mode = WAL")
                    db.execute(SCHEMA)
                    db.close()
                    return UsersTableAccounts(path)
            """
        )

    def test_the_documented_users_table_passes(self, pytester: pytest.Pytester) -> None:
        """The host example in docs/storage.md passes the whole AccountStoreContract."""
        self._host_project(pytester, _docs_users_table_example())
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
        outcomes = result.parseoutcomes()
        assert outcomes.get("failed", 0) == outcomes.get("errors", 0) == 0
        assert outcomes["passed"] >= 50

    @pytest.mark.parametrize(
        ("bug", "failing"),
        [
            (  # the old increment: counts however many attempts were read
                (
                    '"UPDATE users SET failures = ?, failed_at = ? WHERE id = ? AND failures = ?"',
                    '"UPDATE users SET failures = failures + 1 + 0 * ?, failed_at = ?'
                    ' WHERE id = ? AND ? IS NOT NULL"',
                ),
                "test_reserve_with_a_stale_count_writes_nothing",
            ),
            (  # confirms whatever address the account has now
                (
                    '"UPDATE users SET email_ok = 1 WHERE id = ? AND email_key = ?"',
                    '"UPDATE users SET email_ok = 1 WHERE id = ? AND ? IS NOT NULL"',
                ),
                "test_mark_email_confirmed_refuses_an_old_address",
            ),
            (  # forgets to rotate the stamp on a change of address
                ('email_ok = ?, stamp = ?"', 'email_ok = ?, stamp = stamp || substr(?, 1, 0)"'),
                "test_set_email_rotates_the_stamp",
            ),
            (  # leaves the IIN to the unique index: a raw IntegrityError, not a duplicate
                ('"phone": new.phone, "iin": new.iin}', '"phone": new.phone}'),
                "test_duplicates_are_refused and iin",
            ),
        ],
    )
    def test_a_broken_store_fails(
        self, pytester: pytest.Pytester, bug: tuple[str, str], failing: str
    ) -> None:
        """The same example with one planted bug fails the contract test that guards it."""
        example = _docs_users_table_example()
        assert bug[0] in example
        self._host_project(pytester, example.replace(bug[0], bug[1]))
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-k", failing)
        result.assert_outcomes(failed=1)
