"""The storage records, argument checks and public surface."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

import kaspi_identity.storage
import kaspi_identity.testing
from kaspi_identity._errors import CorruptRecordError
from kaspi_identity.storage import (
    Account,
    CodeAttempt,
    HistoryEntry,
    NewAccount,
    RateLimitResult,
    Storage,
    require_key,
    require_utc,
)
from kaspi_identity.storage._checks import new_security_stamp
from kaspi_identity.storage._logic import (
    MAX_CANDIDATES,
    check_attempt,
    check_create_with_history,
    check_entry,
    check_keep,
    check_mark_email,
    check_replace_password,
    check_reserve,
    check_rotate_stamp,
    fresh_account,
    login_keys,
    matches_any,
)
from kaspi_identity.storage._rows import decode_names, encode_names
from kaspi_identity.storage.memory import memory_storage

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"
STAMP = "Zm9vYmFyYmF6cXV4cXV1eA"
IIN = "880101300123"
NAMES = ("Алия", "Нурланова")
BAD_IINS: list[tuple[object, type[Exception]]] = [
    ("88010130012", ValueError),
    ("8801013001234", ValueError),
    ("", ValueError),
    (" 880101300123", ValueError),
    ("880101300123\n", ValueError),
    ("88010130012a", ValueError),
    ("８８０１０１３００１２３", ValueError),  # full-width digits
    ("٨٨٠١٠١٣٠٠١٢٣", ValueError),  # Arabic-Indic digits
    ("+880101300123", ValueError),
    (880101300123, TypeError),
    (b"880101300123", TypeError),
]
BAD_NAMES: list[tuple[object, type[Exception]]] = [
    (tuple(f"n{i}" for i in range(9)), ValueError),
    (("x" * 129,), ValueError),
    (("",), ValueError),
    (("a\x00b",), ValueError),
    (("\ud800",), ValueError),
    ("Aliya", TypeError),
    (None, TypeError),
    ((1,), TypeError),
    (("Aliya", None), TypeError),
    ({"Aliya"}, TypeError),
    (iter(["Aliya"]), TypeError),
]


def _account(**changes: object) -> Account:
    fields: dict[str, object] = {
        "id": "a1",
        "username": "aliya",
        "email": None,
        "phone": None,
        "password_hash": HASH,
        "email_confirmed": False,
        "failed_logins": 0,
        "last_failed_login_at": None,
        "last_login_at": None,
        "created_at": T0,
        "security_stamp": STAMP,
    }
    fields.update(changes)
    return Account(**fields)  # type: ignore[arg-type]


class TestNewAccount:
    def test_defaults(self) -> None:
        """Only an identifier is needed; the rest defaults sensibly."""
        new = NewAccount(phone="+77011234567")
        assert (new.username, new.email, new.password_hash) == (None, None, None)
        assert (new.email_confirmed, new.language) == (False, "en")

    def test_needs_an_identifier(self) -> None:
        """An account with no user name, e-mail, phone or IIN is refused; an IIN alone will do."""
        with pytest.raises(ValueError, match="a username, an email, a phone or an iin"):
            NewAccount(password_hash=HASH, names=("Aliya",))
        assert NewAccount(iin="880101300123").iin == "880101300123"

    @pytest.mark.parametrize(
        ("changes", "error"),
        [
            ({"username": ""}, ValueError),
            ({"username": "a\x00b"}, ValueError),
            ({"username": "\ud800"}, ValueError),
            ({"username": "x" * 1_000_000}, ValueError),
            ({"username": b"aliya"}, TypeError),
            ({"email": 5}, TypeError),
            ({"phone": "87011234567"}, ValueError),
            ({"phone": "+0701"}, ValueError),
            ({"phone": "+7701١٢٣٤٥٦٧"}, ValueError),
            ({"password_hash": ""}, ValueError),
            ({"email_confirmed": 1}, TypeError),
            ({"language": "english!"}, ValueError),
            ({"language": None}, TypeError),
        ],
    )
    def test_bad_fields(self, changes: dict[str, object], error: type[Exception]) -> None:
        """Each malformed field is refused with TypeError or ValueError."""
        fields: dict[str, object] = {"username": "aliya", **changes}
        with pytest.raises(error):
            NewAccount(**fields)  # type: ignore[arg-type]

    def test_error_messages_hold_no_secret(self) -> None:
        """A refused password hash is not repeated in the message."""
        with pytest.raises(ValueError, match="password_hash") as caught:
            NewAccount(username="aliya", password_hash="x" * 2000)
        assert "xxxx" not in str(caught.value)

    def test_repr_hides_the_hash(self) -> None:
        """The password hash never shows in a repr."""
        assert HASH not in repr(NewAccount(username="aliya", password_hash=HASH))

    def test_iin_and_names(self) -> None:
        """An IIN is 12 ASCII digits; names a tuple of at most 8, each 1-128 characters."""
        new = NewAccount(iin=IIN, names=NAMES)
        assert (new.iin, new.names) == (IIN, NAMES)
        assert NewAccount(username="aliya").names == ()
        listed = NewAccount(username="aliya", names=["Алия", "Алия"])  # type: ignore[arg-type]
        assert listed.names == ("Алия", "Алия")
        eight = tuple("ә" * 128 for _ in range(8))
        assert NewAccount(username="aliya", names=eight).names == eight

    @pytest.mark.parametrize(("iin", "error"), BAD_IINS)
    def test_bad_iins(self, iin: object, error: type[Exception]) -> None:
        """Anything but 12 ASCII digits is refused, without repeating the value."""
        with pytest.raises(error, match="iin") as caught:
            NewAccount(username="aliya", iin=iin)  # type: ignore[arg-type]
        assert "880101" not in str(caught.value)

    @pytest.mark.parametrize(("names", "error"), BAD_NAMES)
    def test_bad_names(self, names: object, error: type[Exception]) -> None:
        """Nine names, a long, empty, NUL or surrogate one, a bare str or non-str: refused."""
        with pytest.raises(error, match="name") as caught:
            NewAccount(username="aliya", names=names)  # type: ignore[arg-type]
        assert "xxxx" not in str(caught.value)

    def test_repr_hides_iin_and_names(self) -> None:
        """The IIN and the names are personal data: no repr shows them."""
        text = repr(NewAccount(username="aliya", iin=IIN, names=NAMES))
        assert IIN not in text
        assert all(name not in text for name in NAMES)
        assert "iin=" not in text
        assert "names=" not in text

    def test_frozen(self) -> None:
        """Records are immutable."""
        new = NewAccount(username="aliya")
        with pytest.raises(dataclasses.FrozenInstanceError):
            new.username = "other"  # type: ignore[misc]


class TestAccount:
    def test_converts_times_to_utc(self) -> None:
        """Aware times in another zone are stored as the same instant in UTC."""
        almaty = timezone(timedelta(hours=5))
        account = _account(created_at=T0.astimezone(almaty), last_login_at=T0.astimezone(almaty))
        assert account.created_at.tzinfo is timezone.utc
        assert account.last_login_at == T0

    @pytest.mark.parametrize(
        ("changes", "error"),
        [
            ({"created_at": datetime(2025, 1, 1)}, ValueError),
            ({"created_at": "2025-01-01"}, TypeError),
            ({"failed_logins": -1}, ValueError),
            ({"failed_logins": True}, TypeError),
            ({"id": ""}, ValueError),
            ({"last_failed_login_at": 0}, TypeError),
            ({"security_stamp": ""}, ValueError),
            ({"security_stamp": "s" * 65}, ValueError),
            ({"security_stamp": "a\x00b"}, ValueError),
            ({"security_stamp": "\ud800"}, ValueError),
            ({"security_stamp": None}, TypeError),
            ({"security_stamp": b"stamp"}, TypeError),
        ],
    )
    def test_bad_fields(self, changes: dict[str, object], error: type[Exception]) -> None:
        """Each malformed field is refused with TypeError or ValueError."""
        with pytest.raises(error):
            _account(**changes)

    def test_security_stamp_is_required(self) -> None:
        """An account record without a stamp is refused; 1 and 64 characters are fine."""
        fields = dataclasses.asdict(_account())
        del fields["security_stamp"]
        with pytest.raises(TypeError, match="security_stamp"):
            Account(**fields)
        assert _account(security_stamp="s").security_stamp == "s"
        assert _account(security_stamp="s" * 64).security_stamp == "s" * 64

    def test_repr_hides_the_hash(self) -> None:
        """The password hash never shows in a repr."""
        assert HASH not in repr(_account())
        assert "password_hash" not in repr(_account())

    def test_repr_hides_the_stamp(self) -> None:
        """The security stamp never shows in a repr."""
        assert STAMP not in repr(_account())
        assert "security_stamp" not in repr(_account())

    def test_iin_and_names(self) -> None:
        """An account keeps its IIN and names; both default to none and stay out of the repr."""
        account = _account(iin=IIN, names=list(NAMES))
        assert (account.iin, account.names) == (IIN, NAMES)
        assert (_account().iin, _account().names) == (None, ())
        assert IIN not in repr(account)
        assert all(name not in repr(account) for name in NAMES)
        assert account != _account(iin=IIN)  # both take part in equality
        assert _account(names=("a", "b")) != _account(names=("b", "a"))

    @pytest.mark.parametrize(("iin", "error"), BAD_IINS)
    def test_bad_iins(self, iin: object, error: type[Exception]) -> None:
        """The record refuses what NewAccount refuses."""
        with pytest.raises(error, match="iin"):
            _account(iin=iin)

    @pytest.mark.parametrize(("names", "error"), BAD_NAMES)
    def test_bad_names(self, names: object, error: type[Exception]) -> None:
        """The record refuses what NewAccount refuses."""
        with pytest.raises(error, match="name"):
            _account(names=names)

    def test_stamp_errors_hold_no_stamp(self) -> None:
        """A refused stamp is not repeated in the message."""
        with pytest.raises(ValueError, match="security_stamp") as caught:
            _account(security_stamp="secret-stamp-" * 10)
        assert "secret-stamp" not in str(caught.value)

    def test_stamp_takes_part_in_equality(self) -> None:
        """Two records differing only in their stamp are different records."""
        assert _account() != _account(security_stamp="other")

    def test_slotted(self) -> None:
        """Records are slotted: no per-instance dict."""
        assert not hasattr(_account(), "__dict__")


class TestHistoryEntry:
    def test_fingerprint_defaults_to_empty(self) -> None:
        """Without a similarity fingerprint the entry holds b''."""
        assert HistoryEntry(password_hash=HASH, created_at=T0).fingerprint == b""

    @pytest.mark.parametrize(
        ("changes", "error"),
        [
            ({"fingerprint": bytearray(b"x")}, TypeError),
            ({"fingerprint": "abc"}, TypeError),
            ({"fingerprint": b"x" * 70_000}, ValueError),
            ({"password_hash": ""}, ValueError),
            ({"created_at": datetime(2025, 1, 1)}, ValueError),
        ],
    )
    def test_bad_fields(self, changes: dict[str, object], error: type[Exception]) -> None:
        """Each malformed field is refused with TypeError or ValueError."""
        fields: dict[str, object] = {"password_hash": HASH, "created_at": T0, **changes}
        with pytest.raises(error):
            HistoryEntry(**fields)  # type: ignore[arg-type]


class TestSmallTypes:
    def test_code_attempt_values(self) -> None:
        """CodeAttempt has exactly the four documented outcomes."""
        assert [a.value for a in CodeAttempt] == ["missing", "mismatch", "ok", "exhausted"]

    def test_rate_limit_result(self) -> None:
        """RateLimitResult compares by value."""
        assert RateLimitResult(True, timedelta(0)) == RateLimitResult(True, timedelta(0))


class TestChecks:
    def test_require_utc(self) -> None:
        """require_utc converts aware times and refuses naive ones or non-datetimes."""
        assert require_utc(T0.astimezone(timezone(timedelta(hours=6)))).tzinfo is timezone.utc
        with pytest.raises(ValueError, match="now must be timezone-aware"):
            require_utc(datetime(2025, 1, 1))
        with pytest.raises(TypeError, match="expires_at"):
            require_utc("2025-01-01", "expires_at")
        with pytest.raises(ValueError, match="range"):
            require_utc(datetime.max.replace(tzinfo=timezone(timedelta(hours=-5))))

    def test_require_key(self) -> None:
        """require_key passes usable keys through and refuses the rest."""
        assert require_key("ip:1") == "ip:1"
        with pytest.raises(ValueError, match="at most 128"):
            require_key("x" * 129, "token_id", max_length=128)
        with pytest.raises(TypeError):
            require_key(b"ip:1")

    def test_new_security_stamp(self) -> None:
        """Fresh stamps are 22 URL-safe characters, valid on a record, and never repeat."""
        stamps = {new_security_stamp() for _ in range(10_000)}
        assert len(stamps) == 10_000
        for stamp in list(stamps)[:100]:
            assert len(stamp) == 22
            assert stamp.replace("-", "").replace("_", "").isalnum()
            assert _account(security_stamp=stamp).security_stamp == stamp

    def test_check_reserve(self) -> None:
        """check_reserve returns ``now`` in UTC; refuses bad types, negative counts, naive."""
        almaty = timezone(timedelta(hours=5))
        at = check_reserve("a1", 0, T0.astimezone(almaty))
        assert (at, at.tzinfo) == (T0, timezone.utc)
        assert check_reserve("", 2**70, T0) == T0  # any str: the store finds nothing
        for bad_count in ("0", 0.0, None, True):
            with pytest.raises(TypeError, match="expected_failures"):
                check_reserve("a1", bad_count, T0)
        with pytest.raises(ValueError, match="expected_failures"):
            check_reserve("a1", -1, T0)
        with pytest.raises(ValueError, match="aware"):
            check_reserve("a1", 0, datetime(2025, 1, 1))
        with pytest.raises(TypeError, match="account_id"):
            check_reserve(None, 0, T0)

    def test_check_mark_email(self) -> None:
        """check_mark_email gives the casefolded key, or None for what no account can have."""
        assert check_mark_email("Aliya@Example.KZ", T0) == ("aliya@example.kz", T0)
        assert check_mark_email("STRASSE@Straße.kz", T0)[0] == "strasse@strasse.kz"
        for garbage in ("", "x" * 255, "a\x00b", "\udfff"):
            assert check_mark_email(garbage, T0) == (None, T0)
        for bad in (None, b"a@example.kz", 1):
            with pytest.raises(TypeError, match="email"):
                check_mark_email(bad, T0)
        with pytest.raises(ValueError, match="aware"):
            check_mark_email("a@example.kz", datetime(2025, 1, 1))

    def test_check_rotate_stamp(self) -> None:
        """rotate_stamp must be a bool: 0 and 1 are refused."""
        assert check_rotate_stamp(True) is True
        assert check_rotate_stamp(False) is False
        for bad in (0, 1, None, "yes"):
            with pytest.raises(TypeError, match="rotate_stamp"):
                check_rotate_stamp(bad)

    def test_check_attempt(self) -> None:
        """check_attempt returns ``now`` in microseconds and the candidates as a tuple."""
        at, found = check_attempt("k", [b"a", b"b"], now=T0, max_attempts=1)
        assert found == (b"a", b"b")
        assert at == (T0 - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)
        assert check_attempt("k", (b"x",) * MAX_CANDIDATES, now=T0, max_attempts=1)[1] == (
            (b"x",) * 8
        )
        for bare in (b"ab", bytearray(b"ab"), memoryview(b"ab"), "ab", None, 3, {b"a"}):
            with pytest.raises(TypeError, match="candidates"):
                check_attempt("k", bare, now=T0, max_attempts=1)
        with pytest.raises(TypeError, match="candidate"):
            check_attempt("k", [b"a", "b"], now=T0, max_attempts=1)
        for bad in ([], [b"a"] * 9, [b""], [b"x" * 1025]):
            with pytest.raises(ValueError, match="candidate"):
                check_attempt("k", bad, now=T0, max_attempts=1)

    def test_login_keys_and_fresh_account(self) -> None:
        """The unique keys come in the order duplicates are checked; a new account keeps all."""
        new = NewAccount(username="Aliya", email="A@Example.KZ", phone="+77011234567", iin=IIN)
        keys = login_keys(new)
        assert list(keys.items()) == [
            ("username", "aliya"),
            ("email", "a@example.kz"),
            ("phone", "+77011234567"),
            ("iin", IIN),
        ]
        assert login_keys(NewAccount(iin=IIN)) == {
            "username": None,
            "email": None,
            "phone": None,
            "iin": IIN,
        }
        account = fresh_account(replace(new, names=NAMES), "a1", T0)
        assert (account.iin, account.names, account.failed_logins) == (IIN, NAMES, 0)
        assert login_keys(account) == keys

    def test_check_keep_and_entry(self) -> None:
        """keep is an int of at least 1; an entry is a HistoryEntry."""
        entry = HistoryEntry(password_hash=HASH, created_at=T0)
        assert check_keep(1) == 1
        assert check_entry(entry) is entry
        with pytest.raises(ValueError, match="keep"):
            check_keep(0)
        for bad in (True, 1.0, "1", None):
            with pytest.raises(TypeError, match="keep"):
                check_keep(bad)
        for bad_entry in (HASH, None, {"password_hash": HASH}):
            with pytest.raises(TypeError, match="HistoryEntry"):
                check_entry(bad_entry)

    def test_check_create_with_history(self) -> None:
        """The checks of create, a callable or None for entry, and keep."""
        almaty = timezone(timedelta(hours=5))
        new = NewAccount(username="aliya")
        assert check_create_with_history(new, T0.astimezone(almaty), None, 1) == T0
        assert check_create_with_history(new, T0, lambda account: None, 6) == T0
        with pytest.raises(TypeError, match="NewAccount"):
            check_create_with_history({"username": "aliya"}, T0, None, 1)
        with pytest.raises(ValueError, match="aware"):
            check_create_with_history(new, datetime(2025, 1, 1), None, 1)
        with pytest.raises(TypeError, match="entry"):
            check_create_with_history(new, T0, HistoryEntry(password_hash=HASH, created_at=T0), 1)
        with pytest.raises(ValueError, match="keep"):
            check_create_with_history(new, T0, None, 0)

    def test_check_replace_password(self) -> None:
        """The checks of set_password_hash, entry and keep; None when the CAS cannot win."""
        entry = HistoryEntry(password_hash=HASH, created_at=T0)
        assert check_replace_password("a1", HASH, "new", entry, 6) == "a1"
        assert check_replace_password("a1", None, "new", None, 1) == "a1"
        for garbage in ("", "x" * 257, "\x00"):
            assert check_replace_password(garbage, HASH, "new", entry, 6) is None
        assert check_replace_password("a1", "h\x00", "new", entry, 6) is None
        with pytest.raises(ValueError, match="keep"):  # checked though the CAS cannot win
            check_replace_password("", HASH, "new", None, 0)
        with pytest.raises(TypeError, match="entry"):
            check_replace_password("a1", HASH, "new", lambda account: entry, 6)
        with pytest.raises(ValueError, match="new"):
            check_replace_password("a1", HASH, "", entry, 6)
        with pytest.raises(TypeError, match="expected"):
            check_replace_password("a1", b"h", "new", entry, 6)
        with pytest.raises(TypeError, match="account_id"):
            check_replace_password(None, HASH, "new", entry, 6)

    def test_names_encoding(self) -> None:
        """Names go to a compact JSON list and back, in order; garbage is a corrupt row."""
        names = ("Алия", 'O\'Brien "Jr"', "[x], {y} \\", "𝔸" * 128)
        text = encode_names(names)
        assert text.startswith('["Алия",')  # UTF-8 as it is, no \\u escapes
        assert decode_names(text) == names
        assert encode_names(()) == "[]"
        assert decode_names("[]") == ()
        for garbage in ("", "Алия", "[", "null", "{}", '{"a": 1}', "[1]", '["a", null]', "NaN"):
            with pytest.raises(CorruptRecordError, match="names") as caught:
                decode_names(garbage)
            assert "Алия" not in str(caught.value)
        for not_text in (b"[]", None, 7, ["Алия"]):
            with pytest.raises(CorruptRecordError, match="names is not text"):
                decode_names(not_text)

    def test_matches_any(self) -> None:
        """matches_any is true when any candidate equals the stored hash, wherever it stands."""
        assert matches_any(b"a", [b"a"])
        assert matches_any(b"a", (b"b", b"c", b"a"))
        assert matches_any(b"a", (b"a", b"b"))
        assert not matches_any(b"a", (b"b", b"ab", b"A"))
        assert not matches_any(b"a", ())


class TestStorageBundle:
    def test_close_closes_each_component_once(self) -> None:
        """Storage.close() calls close() once per distinct component that has one."""
        closed: list[str] = []

        class Closing:
            def close(self) -> None:
                closed.append("x")

        shared = Closing()
        base = memory_storage()
        storage = dataclasses.replace(base, ledger=shared, codes=shared)  # type: ignore[arg-type]
        with storage:
            pass
        assert closed == ["x"]

    def test_with_history_is_optional_and_closed_once(self) -> None:
        """with_history defaults to None; close() closes it too, once even when shared."""
        base = memory_storage()
        bare = Storage(
            accounts=base.accounts,
            history=base.history,
            ledger=base.ledger,
            codes=base.codes,
            rate_limits=base.rate_limits,
        )
        assert bare.with_history is None
        bare.close()
        closed: list[str] = []

        class Closing:
            def close(self) -> None:
                closed.append("x")

        shared = Closing()
        storage = dataclasses.replace(base, with_history=shared, ledger=shared)  # type: ignore[arg-type]
        storage.close()
        assert closed == ["x"]
        alone = dataclasses.replace(base, with_history=Closing())  # type: ignore[arg-type]
        alone.close()
        assert closed == ["x", "x"]

    def test_frozen(self) -> None:
        """The bundle is immutable; mix stores with dataclasses.replace."""
        storage = memory_storage()
        with pytest.raises(dataclasses.FrozenInstanceError):
            storage.ledger = storage.ledger  # type: ignore[misc]
        assert isinstance(dataclasses.replace(storage), Storage)


class TestPublicSurface:
    def test_storage_all_is_sorted_and_complete(self) -> None:
        """kaspi_identity.storage publishes a sorted __all__ of existing names."""
        names = kaspi_identity.storage.__all__
        assert names == sorted(names)
        assert all(hasattr(kaspi_identity.storage, name) for name in names)

    def test_testing_all_is_sorted_and_complete(self) -> None:
        """kaspi_identity.testing publishes a sorted __all__ of existing names."""
        names = kaspi_identity.testing.__all__
        assert names == sorted(names)
        assert all(hasattr(kaspi_identity.testing, name) for name in names)

    def test_storage_imports_neither_pytest_nor_hypothesis(self) -> None:
        """Importing the storage package and adapters pulls in no test tools."""
        code = (
            "import sys, kaspi_identity.storage, kaspi_identity.storage.memory, "
            "kaspi_identity.storage.sqlite; "
            "print(sorted(m for m in ('pytest', 'hypothesis') if m in sys.modules))"
        )
        output = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        assert output.strip() == "[]"
