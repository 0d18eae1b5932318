"""``policy.document(lang)``: the JSON-ready policy, validated against docs/policy.schema.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaspi_identity import PRESET_NAMES, PasswordPolicy, UnknownLanguageError
from kaspi_identity.cli import main
from kaspi_identity.i18n import SUPPORTED_LANGUAGES
from kaspi_identity.policy import POLICY_DOCUMENT_VERSION
from kaspi_identity.testing import policies

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "docs" / "policy.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def validate(document: dict[str, Any]) -> None:
    """Fail with every schema error of ``document``."""
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(document)]
    assert [] == errors


class TestSchema:
    def test_schema_is_valid(self) -> None:
        """The committed schema is a valid JSON Schema 2020-12 document."""
        jsonschema.Draft202012Validator.check_schema(SCHEMA)

    def test_schema_version_matches(self) -> None:
        """The schema pins the document version the code produces."""
        assert {"const": POLICY_DOCUMENT_VERSION} == SCHEMA["properties"]["version"]

    @pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
    @pytest.mark.parametrize("name", PRESET_NAMES)
    def test_every_preset_validates(self, name: str, lang: str) -> None:
        """Every preset's document, in every language, validates."""
        validate(PasswordPolicy.preset(name).document(lang))

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(policy=policies(), lang=st.sampled_from(SUPPORTED_LANGUAGES))
    def test_random_policies_validate(self, policy: PasswordPolicy, lang: str) -> None:
        """Any policy's document validates, survives JSON, and carries describe()'s lines."""
        document = policy.document(lang)
        validate(document)
        assert document == json.loads(json.dumps(document))
        assert policy.describe(lang) == [line["text"] for line in document["requirements"]]

    def test_schema_rejects_a_wrong_document(self) -> None:
        """The schema is not vacuous: a wrong value or an unknown field fails."""
        document = PasswordPolicy().document()
        document["length"]["min"] = 0
        document["extra"] = True
        assert 2 == len(list(VALIDATOR.iter_errors(document)))


class TestDocument:
    def test_kz_procurement(self) -> None:
        """The e-procurement portal: 8–128, four classes, history of 6 with similarity."""
        document = PasswordPolicy.preset("kz-procurement").document("ru")
        assert document["lang"] == "ru"
        assert {"min": 8, "max": 128, "max_configured": True} == document["length"]
        required = document["classes"]["required"]
        assert ["upper", "lower", "digit", "special"] == [c["class"] for c in required]
        assert all(c["count"] == 1 for c in required)
        assert "0123456789" == required[2]["characters"]
        assert {"count": 6, "similar": True} == document["history"]
        assert document["blocklist"] is None
        assert document["strength"] is None
        assert "От 8 до 128 символов" == document["requirements"][0]["text"]
        assert "requirement.length_range" == document["requirements"][0]["key"]
        assert {"min_length": 8, "max_length": 128} == document["requirements"][0]["params"]

    def test_utility_cabinet(self) -> None:
        """Latin letters and digits, 5 to 10."""
        document = PasswordPolicy.preset("utility-cabinet").document("kk")
        assert {"kind": "latin_alnum", "characters": None} == document["alphabet"]
        assert (5, 10) == (document["length"]["min"], document["length"]["max"])

    def test_limits_and_counts(self) -> None:
        """Class counts, min_classes, repeats, strength and the hard cap when max is off."""
        policy = PasswordPolicy(
            min_length=None,
            max_length=None,
            require={"digit": 2},
            min_classes=2,
            max_repeat=3,
            min_strength=3,
        )
        document = policy.document()
        assert {"min": None, "max": 4096, "max_configured": False} == document["length"]
        assert [{"class": "digit", "count": 2, "characters": "0123456789"}] == document["classes"][
            "required"
        ]
        assert 2 == document["classes"]["min_classes"]
        assert 3 == document["max_repeat"]
        assert {"estimator": "zxcvbn", "min_score": 3, "max_score": 4} == document["strength"]
        assert {"builtin": True, "custom": False} == document["blocklist"]
        assert document["personal_info"] is True

    def test_custom_alphabet_limits_the_special_characters(self) -> None:
        """The special characters listed for the class are those the alphabet allows."""
        policy = PasswordPolicy(alphabet="abcdefgh12345!?", require=["special"], blocklist=False)
        document = policy.document()
        assert {"kind": "custom", "characters": "abcdefgh12345!?"} == document["alphabet"]
        assert "!?" == document["classes"]["required"][0]["characters"]

    def test_blocklist_paths_never_leak(self, tmp_path: Path) -> None:
        """Own blocklist files are said to exist, never named."""
        path = tmp_path / "secret-layout" / "list.txt"
        path.parent.mkdir()
        path.write_text("qwerty\n", encoding="utf-8")
        policy = PasswordPolicy(blocklist={"builtin": True, "files": [str(path)]})
        document = policy.document()
        assert {"builtin": True, "custom": True} == document["blocklist"]
        assert "secret-layout" not in json.dumps(document)
        only_file = PasswordPolicy(blocklist=str(path)).document()
        assert {"builtin": False, "custom": True} == only_file["blocklist"]

    def test_language_tags_are_normalised(self) -> None:
        """A regional tag gives the base language."""
        assert "ru" == PasswordPolicy().document("ru-KZ")["lang"]

    @pytest.mark.parametrize("lang", ["de", "", "kk-Latn"])
    def test_unknown_language(self, lang: str) -> None:
        """A language without a catalog is a typed error, as for describe()."""
        with pytest.raises(UnknownLanguageError):
            PasswordPolicy().document(lang)


class TestDescribeJson:
    def run(self, argv: list[str]) -> tuple[int, str, str]:
        """Run the CLI and return (status, stdout, stderr)."""
        import io

        out, err = io.StringIO(), io.StringIO()
        code = main(argv, stdin=io.StringIO(""), stdout=out, stderr=err)
        return code, out.getvalue(), err.getvalue()

    @pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
    def test_prints_the_document(self, lang: str) -> None:
        """describe --json prints policy.document(lang), non-ASCII text kept as is."""
        code, out, _ = self.run(
            ["describe", "--preset", "kz-procurement", "--json", "--lang", lang]
        )
        assert code == 0
        assert PasswordPolicy.preset("kz-procurement").document(lang) == json.loads(out)
        if lang != "en":
            assert "\\u" not in out

    def test_not_with_deviations(self) -> None:
        """--json and --deviations are two different outputs: a usage error together."""
        code, _, err = self.run(["describe", "--json", "--deviations"])
        assert (code, err) == (2, "kaspi-identity: --json and --deviations cannot be combined\n")
