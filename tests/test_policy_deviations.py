"""``policy.deviations()``: where a policy departs from NIST SP 800-63B-4 and OWASP ASVS 5.0."""

from __future__ import annotations

import dataclasses
import io

import pytest
from hypothesis import HealthCheck, given, settings

from kaspi_identity import CONFIG_KEYS, Deviation, PasswordPolicy
from kaspi_identity.policy import DEVIATION_STANDARDS, NIST_800_63B_4, OWASP_ASVS_5
from kaspi_identity.testing import policies, run_compliance

NIST = NIST_800_63B_4
ASVS = OWASP_ASVS_5
NIST_CLAUSE = "§3.1.1.2 (Password verifiers)"
# Everything NIST and ASVS ask switched on, so a test changes one setting at a time.
CLEAN = {"min_length": 15, "max_length": 64, "blocklist": True, "forbid_personal_info": True}


def where(policy: PasswordPolicy, *, multi_factor: bool = False) -> list[tuple[str, str, str]]:
    """(rule, standard, clause) of each deviation."""
    return [(d.rule, d.standard, d.clause) for d in policy.deviations(multi_factor=multi_factor)]


def clean(**changes: object) -> PasswordPolicy:
    """A policy meeting both standards, with ``changes``."""
    return PasswordPolicy(**{**CLEAN, **changes})  # type: ignore[arg-type]


class TestPresets:
    def test_kz_procurement(self) -> None:
        """Short minimum (NIST), four classes, no personal-data check, no blocklist."""
        assert [
            ("min_length", NIST, NIST_CLAUSE),
            ("require", NIST, NIST_CLAUSE),
            ("require", ASVS, "6.2.5"),
            ("forbid_personal_info", NIST, NIST_CLAUSE),
            ("forbid_personal_info", ASVS, "6.2.11"),
            ("blocklist", NIST, NIST_CLAUSE),
            ("blocklist", ASVS, "6.2.4"),
            ("blocklist", ASVS, "6.2.12"),
        ] == where(PasswordPolicy.preset("kz-procurement"))

    def test_utility_cabinet(self) -> None:
        """5 to 10 Latin letters and digits: length both ways, alphabet, no checks."""
        assert [
            ("min_length", NIST, NIST_CLAUSE),
            ("min_length", ASVS, "6.2.1"),
            ("max_length", NIST, NIST_CLAUSE),
            ("max_length", ASVS, "6.2.9"),
            ("alphabet", NIST, NIST_CLAUSE),
            ("alphabet", ASVS, "6.2.5"),
            ("forbid_personal_info", NIST, NIST_CLAUSE),
            ("forbid_personal_info", ASVS, "6.2.11"),
            ("blocklist", NIST, NIST_CLAUSE),
            ("blocklist", ASVS, "6.2.4"),
            ("blocklist", ASVS, "6.2.12"),
        ] == where(PasswordPolicy.preset("utility-cabinet"))

    def test_nist(self) -> None:
        """The nist preset departs from neither standard."""
        assert () == PasswordPolicy.preset("nist").deviations()

    def test_default(self) -> None:
        """The default's 8 characters fall short of NIST's 15 for a single factor only."""
        assert [("min_length", NIST, NIST_CLAUSE)] == where(PasswordPolicy())
        assert [] == where(PasswordPolicy(), multi_factor=True)

    def test_what_the_policy_does(self) -> None:
        """The texts name the policy's own numbers and classes."""
        kz = PasswordPolicy.preset("kz-procurement").deviations()
        assert "Accepts 8-character passwords." == kz[0].policy_does
        assert kz[1].policy_does == (
            "Requires at least one uppercase Latin letter, at least one lowercase Latin "
            "letter, at least one digit, at least one special character."
        )
        counted = clean(require={"digit": 2}).deviations()
        assert "Requires at least 2 digits." == counted[0].policy_does


class TestBoundaries:
    @pytest.mark.parametrize(
        ("min_length", "multi_factor", "expected"),
        [
            (15, False, []),
            (14, False, [NIST]),
            (8, False, [NIST]),
            (8, True, []),
            (7, True, [NIST, ASVS]),
            (7, False, [NIST, ASVS]),
            (None, False, [NIST, ASVS]),
        ],
    )
    def test_min_length(
        self, min_length: int | None, multi_factor: bool, expected: list[str]
    ) -> None:
        """NIST: 15 for a single factor, 8 with MFA; ASVS 6.2.1: 8."""
        found = clean(min_length=min_length).deviations(multi_factor=multi_factor)
        assert expected == [d.standard for d in found]
        assert all(d.rule == "min_length" for d in found)

    def test_no_minimum_is_said(self) -> None:
        """A policy without min_length says so."""
        assert "Sets no minimum length." == clean(min_length=None).deviations()[0].policy_does

    @pytest.mark.parametrize(
        ("max_length", "expected"), [(64, []), (63, [NIST, ASVS]), (None, []), (4096, [])]
    )
    def test_max_length(self, max_length: int | None, expected: list[str]) -> None:
        """At least 64 characters must be allowed (NIST, ASVS 6.2.9); off is the 4096 cap."""
        assert expected == [d.standard for d in clean(max_length=max_length).deviations()]

    @pytest.mark.parametrize(
        ("changes", "rule"),
        [
            ({"require": ["digit"]}, "require"),
            ({"min_classes": 2}, "min_classes"),
            ({"max_repeat": 3}, "max_repeat"),
            ({"alphabet": "ascii"}, "alphabet"),
            ({"alphabet": "latin_alnum"}, "alphabet"),
            ({"alphabet": "abcdefghijklmnopqrstuvwxyz0123456789"}, "alphabet"),
        ],
    )
    def test_composition_and_alphabet(self, changes: dict[str, object], rule: str) -> None:
        """Each composition or alphabet rule departs from NIST and from ASVS 6.2.5."""
        assert [(rule, NIST, NIST_CLAUSE), (rule, ASVS, "6.2.5")] == where(clean(**changes))

    def test_custom_alphabet_is_listed(self) -> None:
        """An explicit alphabet is quoted in what the policy does."""
        found = clean(alphabet="abcdefghijklmnopqrstuvwxyz0123456789").deviations()
        assert found[0].policy_does.endswith("abcdefghijklmnopqrstuvwxyz0123456789")

    def test_checks_off(self) -> None:
        """No personal-data check, no blocklist: each named with its clauses."""
        assert [
            ("forbid_personal_info", NIST, NIST_CLAUSE),
            ("forbid_personal_info", ASVS, "6.2.11"),
        ] == where(clean(forbid_personal_info=False))
        assert [
            ("blocklist", NIST, NIST_CLAUSE),
            ("blocklist", ASVS, "6.2.4"),
            ("blocklist", ASVS, "6.2.12"),
        ] == where(clean(blocklist=False))

    def test_own_blocklist_file_is_not_judged(self, tmp_path: object) -> None:
        """A deployment's own list is a blocklist: the engine does not judge its content."""
        from pathlib import Path

        path = Path(str(tmp_path)) / "list.txt"
        path.write_text("qwerty\n", encoding="utf-8")
        assert [] == where(clean(blocklist=str(path)))

    def test_history_and_strength_are_not_deviations(self) -> None:
        """Neither standard forbids history or a strength check."""
        assert [] == where(clean(history=6, history_similar=True, min_strength=2))

    @pytest.mark.parametrize("value", [1, None, "yes"])
    def test_multi_factor_must_be_bool(self, value: object) -> None:
        """A non-bool multi_factor is a TypeError, not a silent truthiness."""
        with pytest.raises(TypeError, match="multi_factor must be a bool"):
            PasswordPolicy().deviations(multi_factor=value)  # type: ignore[arg-type]


class TestDeviation:
    def test_record(self) -> None:
        """Frozen, with a one-line str and plain data for JSON."""
        deviation = PasswordPolicy.preset("utility-cabinet").deviations()[3]
        assert deviation == Deviation(
            "max_length",
            ASVS,
            "6.2.9",
            "Passwords of at least 64 characters are permitted.",
            "Rejects passwords longer than 10 characters.",
        )
        with pytest.raises(dataclasses.FrozenInstanceError):
            deviation.rule = "other"  # type: ignore[misc]
        assert str(deviation) == (
            "max_length: OWASP ASVS 5.0 6.2.9: Passwords of at least 64 characters are "
            "permitted. This policy: Rejects passwords longer than 10 characters."
        )
        assert set(deviation.to_dict()) == {
            "rule",
            "standard",
            "clause",
            "standard_says",
            "policy_does",
        }

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(policy=policies(strength=False))
    def test_every_deviation_is_well_formed(self, policy: PasswordPolicy) -> None:
        """For any policy: known rules and standards, full sentences, NIST first per rule.

        And a policy has no deviation exactly when it asks what both standards ask.
        """
        found = policy.deviations()
        for deviation in found:
            assert deviation.rule in CONFIG_KEYS
            assert deviation.standard in DEVIATION_STANDARDS
            assert deviation.standard_says.endswith(".")
            assert deviation.clause
            assert deviation.policy_does
        rules = [d.rule for d in found]
        assert rules == sorted(rules, key=CONFIG_KEYS.index)
        meets_both = (
            (policy.min_length or 0) >= 15
            and (policy.max_length is None or policy.max_length >= 64)
            and not policy.require
            and policy.min_classes is None
            and policy.max_repeat is None
            and policy.alphabet == "any"
            and policy.forbid_personal_info
            and bool(policy.blocklist)
        )
        assert meets_both == (found == ())


class TestComplianceReport:
    def test_report_notes_each_deviation(self) -> None:
        """The compliance report ends with a note per deviation; they are not failures."""
        out = io.StringIO()
        assert 0 == run_compliance(PasswordPolicy.preset("utility-cabinet"), out=out, examples=5)
        lines = out.getvalue().splitlines()
        notes = [line for line in lines if line.startswith("note  deviation ")]
        assert len(PasswordPolicy.preset("utility-cabinet").deviations()) == len(notes)
        assert any("max_length" in n and "OWASP ASVS 5.0 6.2.9" in n for n in notes)
        assert lines[-1].startswith("OK: all ")

    def test_report_of_a_policy_without_deviations(self) -> None:
        """The nist preset's report says it departs from neither standard."""
        out = io.StringIO()
        run_compliance(PasswordPolicy.preset("nist"), out=out, examples=5)
        assert "note  deviations" in out.getvalue()
        assert "none from NIST SP 800-63B-4 and OWASP ASVS 5.0" in out.getvalue()

    def test_multi_factor(self) -> None:
        """With multi_factor the default policy's 8 characters are no deviation."""
        out = io.StringIO()
        run_compliance(PasswordPolicy(), out=out, examples=5, multi_factor=True)
        assert "note  deviation " not in out.getvalue()
        with pytest.raises(TypeError, match="multi_factor"):
            run_compliance(PasswordPolicy(), out=out, examples=5, multi_factor=1)  # type: ignore[arg-type]
