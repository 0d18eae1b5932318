"""The offline filter of breached passwords: building, opening, looking up, the policy key."""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaspi_identity import (
    BreachCheck,
    BreachedFilter,
    BreachedFilterError,
    BreachedSourceError,
    PasswordPolicy,
    PolicyConfigError,
    Violation,
)
from kaspi_identity.cli import main
from kaspi_identity.policy import (
    FILTER_VERSION,
    BreachedBuild,
    BuildProgress,
    _breached_build,
    build_breached_filter,
)
from kaspi_identity.policy._breached import HEADER, SHARD, password_key

#: Passwords of the synthetic corpus: Latin, Cyrillic, the QWERTY form of Cyrillic words.
LISTED = (
    "correct horse battery staple",
    "Qwerty123!",
    "Tr0ub4dor&3",
    "gfhjkm",  # "пароль" typed with the QWERTY layout on: how CIS corpora store it
    "fktrctq2024",  # "алексей2024" likewise
    "Алматы2024",
    "ЖаныбекKZ!",
    "pass",  # the NFKC form of "ｐａｓｓ"
    "Almaty-Astana-1997",
)
NOT_LISTED = ("correct horse battery stapler", "qwerty123!", "Zx9$-never-leaked-4711")


def sha1(password: str) -> str:
    return hashlib.sha1(password.encode("utf-8"), usedforsecurity=False).hexdigest().upper()


def random_hashes(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, (n, 20), dtype=np.uint8)
    return [bytes(row).hex().upper() for row in raw]


def corpus(extra: int = 20_000) -> list[tuple[str, int]]:
    """``(sha1, count)`` pairs: the listed passwords (count 1 to 9) and random hashes."""
    pairs = [(sha1(p), i + 1) for i, p in enumerate(LISTED)]
    pairs += [(h, 1 + i % 5) for i, h in enumerate(random_hashes(extra, seed=16))]
    return pairs


def write_source(path: Path, pairs: Iterable[tuple[str, int]], *, newline: str = "\r\n") -> Path:
    text = "".join(f"{h}:{c}{newline}" for h, c in pairs)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode("ascii")))
    else:
        path.write_text(text, encoding="ascii", newline="")
    return path


def write_range_files(folder: Path, pairs: Iterable[tuple[str, int]]) -> Path:
    """One ``PREFIX.txt`` of ``SUFFIX:COUNT`` lines per prefix, as the HIBP downloader writes."""
    folder.mkdir()
    by_prefix: dict[str, list[str]] = {}
    for h, c in pairs:
        by_prefix.setdefault(h[:5], []).append(f"{h[5:]}:{c}\r\n")
    for prefix, lines in by_prefix.items():
        (folder / f"{prefix}.txt").write_text("".join(sorted(lines)), newline="")
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A filter of the listed passwords and 20,000 random hashes."""
    folder = tmp_path_factory.mktemp("breached")
    source = write_source(folder / "pwned.txt", corpus())
    out = folder / "pwned.kib"
    build_breached_filter([source], out)
    return out


def build(tmp_path: Path, pairs: Iterable[tuple[str, int]], **kwargs: object) -> Path:
    source = write_source(tmp_path / "src.txt", pairs)
    out = tmp_path / "out.kib"
    build_breached_filter([source], out, **kwargs)  # type: ignore[arg-type]
    return out


class TestBuild:
    def test_every_listed_password_is_found(self, built: Path) -> None:
        """Each password of the corpus is in the filter; the counts are in the header."""
        with BreachedFilter(built) as f:
            assert all(p in f for p in LISTED)
            assert len(LISTED) + 20_000 == len(f) == f.entries == f.lines
            assert 1 == f.min_count
            assert not any(p in f for p in NOT_LISTED)

    def test_gzip_and_plain_give_the_same_file(self, tmp_path: Path, built: Path) -> None:
        """A gzip source is read like a plain one: the very same bytes come out."""
        source = write_source(tmp_path / "pwned.txt.gz", corpus())
        out = tmp_path / "from-gzip.kib"
        build_breached_filter([source], out)
        assert built.read_bytes() == out.read_bytes()

    def test_range_files_give_the_same_file(self, tmp_path: Path, built: Path) -> None:
        """A directory of 5-hex range files holds the same hashes as the one big file."""
        folder = write_range_files(tmp_path / "ranges", corpus())
        out = tmp_path / "from-ranges.kib"
        result = build_breached_filter([folder], out)
        assert built.read_bytes() == out.read_bytes()
        assert len(LISTED) + 20_000 == result.entries == result.lines

    def test_many_sources_and_duplicates(self, tmp_path: Path) -> None:
        """Several files are read in turn; a hash in two of them is one entry."""
        pairs = corpus(1000)
        a = write_source(tmp_path / "a.txt", pairs[:600])
        b = write_source(tmp_path / "b.txt.gz", pairs[400:])
        out = tmp_path / "out.kib"
        result = build_breached_filter([a, b], out)
        assert (len(pairs) + 200, len(pairs)) == (result.lines, result.entries)
        with BreachedFilter(out) as f:
            assert all(p in f for p in LISTED)

    def test_min_count_leaves_out_the_rarer_hashes(self, tmp_path: Path) -> None:
        """Hashes seen fewer than ``min_count`` times are not in the filter."""
        out = build(tmp_path, corpus(0), min_count=5)
        with BreachedFilter(out) as f:
            assert 5 == f.min_count
            assert [p in f for p in LISTED] == [i + 1 >= 5 for i in range(len(LISTED))]
            assert len(LISTED) == f.lines
            assert len(LISTED) - 4 == f.entries

    @pytest.mark.parametrize("newline", ["\n", "\r\n"])
    def test_line_endings_blank_lines_and_a_last_line_without_newline(
        self, tmp_path: Path, newline: str
    ) -> None:
        """LF or CRLF, blank lines skipped, the last line may lack its newline."""
        text = f"{newline}{sha1('one')}:1{newline}{newline}{sha1('two')}:22"
        (tmp_path / "src.txt").write_text(text, newline="")
        out = tmp_path / "out.kib"
        result = build_breached_filter([tmp_path / "src.txt"], out)
        assert 2 == result.lines == result.entries
        with BreachedFilter(out) as f:
            assert "one" in f
            assert "two" in f

    def test_lower_case_hex_is_read(self, tmp_path: Path) -> None:
        """Hex digits in either case."""
        out = tmp_path / "out.kib"
        (tmp_path / "src.txt").write_text(f"{sha1('lower').lower()}:3\n")
        build_breached_filter([tmp_path / "src.txt"], out)
        with BreachedFilter(out) as f:
            assert "lower" in f

    def test_blocks_are_cut_at_lines(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A line split across two reads is joined again (blocks of 100 bytes here)."""
        monkeypatch.setattr(_breached_build, "_BLOCK", 100)
        out = build(tmp_path, corpus(300))
        with BreachedFilter(out) as f:
            assert all(p in f for p in LISTED)
            assert len(LISTED) + 300 == f.entries

    def test_shards(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Many shards (fewer than the 256 temporary files, and more) find every entry."""
        pairs = corpus(6000)
        for target, bits in ((1000, 3), (4, 11)):
            monkeypatch.setattr(_breached_build, "_SHARD_TARGET", target)
            out = build(tmp_path, pairs)
            with BreachedFilter(out) as f:
                assert bits == f.shard_bits
                assert all(p in f for p in LISTED)
                keys = np.array([int(h[:16], 16) for h, _ in pairs], dtype=np.uint64)
                assert f.contains_keys(keys).all()
                f.verify()

    def test_empty_source(self, tmp_path: Path) -> None:
        """No hash at all: a valid filter that finds nothing."""
        (tmp_path / "src.txt").write_text("\n")
        out = tmp_path / "out.kib"
        result = build_breached_filter([tmp_path / "src.txt"], out)
        assert (0, 0) == (result.lines, result.entries)
        with BreachedFilter(out) as f:
            assert "password" not in f
            assert not f.contains_keys(np.arange(1000, dtype=np.uint64)).any()

    def test_result(self, tmp_path: Path) -> None:
        """The build says what it wrote."""
        out = tmp_path / "out.kib"
        source = write_source(tmp_path / "src.txt", corpus(2000))
        result = build_breached_filter([source], out, min_count=2)
        assert isinstance(result, BreachedBuild)
        assert str(out) == result.path
        assert out.stat().st_size == result.size
        assert 2 == result.min_count
        assert result.kept == result.entries < result.lines
        assert result.bytes_per_entry == result.size / result.entries

    def test_progress(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """The callback sees reading, then building, up to the whole."""
        monkeypatch.setattr(_breached_build, "_PROGRESS_EVERY", 0.0)
        monkeypatch.setattr(_breached_build, "_BLOCK", 4096)
        seen: list[BuildProgress] = []
        out = tmp_path / "out.kib"
        build_breached_filter(
            [write_source(tmp_path / "s.txt", corpus(500))], out, progress=seen.append
        )
        phases = [p.phase for p in seen]
        assert "reading" == phases[0]
        assert "building" == phases[-1]
        assert 1.0 == seen[-1].fraction
        assert 0.0 == seen[-1].eta
        assert all(0.0 <= p.fraction <= 1.0 for p in seen)
        assert [p.fraction for p in seen] == sorted(p.fraction for p in seen)
        assert len(LISTED) + 500 == seen[-1].lines

    @pytest.mark.parametrize(
        ("line", "where", "reason"),
        [
            ("NOT-HEX" + "A" * 33 + ":1", 2, "not hexadecimal"),
            ("A" * 40 + ":x1", 2, "not a number"),
            ("A" * 40 + ":", 2, "colon and a count"),
            ("A" * 40 + "1", 2, "colon and a count"),
            ("A" * 41 + ":1", 2, "colon and a count"),
            ("A" * 40 + ":" + "9" * 19, 2, "too long"),
        ],
    )
    def test_a_bad_line_is_refused_by_number(
        self, tmp_path: Path, line: str, where: int, reason: str
    ) -> None:
        """The file and line are named, never the line's text; nothing is written."""
        (tmp_path / "src.txt").write_text(f"{sha1('ok')}:1\n{line}\n")
        out = tmp_path / "out.kib"
        with pytest.raises(BreachedSourceError, match=reason) as caught:
            build_breached_filter([tmp_path / "src.txt"], out)
        assert (str(tmp_path / "src.txt"), where) == (caught.value.source, caught.value.line)
        assert line not in str(caught.value)
        assert ["src.txt"] == sorted(p.name for p in tmp_path.iterdir())

    @pytest.mark.parametrize(
        ("name", "text", "reason"),
        [
            ("plain.txt", "password123\n", "not a SHA1HEX:COUNT line"),
            ("ntlm.txt", "A" * 32 + ":4\n", "NTLM"),
            ("pwned.txt", "A" * 35 + ":4\n", "named by its 5-hex prefix"),
        ],
    )
    def test_a_file_of_another_kind_is_refused(
        self, tmp_path: Path, name: str, text: str, reason: str
    ) -> None:
        """Plain passwords, NTLM hashes, or range lines under a name that gives no prefix."""
        (tmp_path / name).write_text(text)
        with pytest.raises(BreachedSourceError, match=reason) as caught:
            build_breached_filter([tmp_path / name], tmp_path / "out.kib")
        assert "password123" not in str(caught.value)
        assert not (tmp_path / "out.kib").exists()

    def test_bad_arguments(self, tmp_path: Path) -> None:
        """A missing source, no source, a bad min_count, a single path instead of a list."""
        with pytest.raises(BreachedSourceError, match="file not found"):
            build_breached_filter([tmp_path / "absent.txt"], tmp_path / "out.kib")
        with pytest.raises(ValueError, match="no source"):
            build_breached_filter([], tmp_path / "out.kib")
        source = write_source(tmp_path / "src.txt", corpus(0))
        for bad in (0, -1, True, 1.5):
            with pytest.raises(ValueError, match="min_count"):
                build_breached_filter([source], tmp_path / "out.kib", min_count=bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            build_breached_filter(str(source), tmp_path / "out.kib")

    def test_a_truncated_gzip_is_refused(self, tmp_path: Path) -> None:
        """A gzip source cut short is a clear error, not a partial filter."""
        data = gzip.compress(b"".join(f"{h}:{c}\n".encode() for h, c in corpus(3000)))
        (tmp_path / "src.txt.gz").write_bytes(data[: len(data) // 2])
        with pytest.raises(BreachedSourceError, match="cannot read"):
            build_breached_filter([tmp_path / "src.txt.gz"], tmp_path / "out.kib")
        assert not (tmp_path / "out.kib").exists()

    def test_a_failed_build_keeps_the_old_filter(self, tmp_path: Path, built: Path) -> None:
        """The output is replaced only by a complete new filter."""
        out = tmp_path / "out.kib"
        out.write_bytes(built.read_bytes())
        (tmp_path / "bad.txt").write_text("nonsense\n")
        with pytest.raises(BreachedSourceError):
            build_breached_filter([tmp_path / "bad.txt"], out)
        assert built.read_bytes() == out.read_bytes()
        assert ["bad.txt", "out.kib"] == sorted(p.name for p in tmp_path.iterdir())

    @settings(
        max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(passwords=st.sets(st.text(min_size=1, max_size=20), max_size=300))
    def test_every_built_password_is_found(self, tmp_path: Path, passwords: set[str]) -> None:
        """Property: whatever the set, each member is found (no false negatives)."""
        pairs = [
            (hashlib.sha1(p.encode("utf-8", "surrogatepass"), usedforsecurity=False).hexdigest(), 1)
            for p in passwords
        ]
        out = build(tmp_path, pairs)
        with BreachedFilter(out) as f:
            assert all(p in f for p in passwords)
            assert len(passwords) == f.entries


class TestLookups:
    def test_random_non_members_stay_within_the_false_positive_bound(self, built: Path) -> None:
        """One million random keys: about 1/65536 of them are false positives.

        The expectation is 15.3 of a million; more than 40 would happen with a probability
        below 1e-8 for a filter that works as designed (the seed makes the run repeatable).
        """
        rng = np.random.default_rng(2026)
        keys = rng.integers(0, 2**64, 1_000_000, dtype=np.uint64, endpoint=False)
        with BreachedFilter(built) as f:
            found = int(f.contains_keys(keys).sum())
        assert found <= 40

    def test_bulk_and_single_look_ups_agree(self, built: Path) -> None:
        """contains_keys gives what contains_key gives, members and non-members alike."""
        rng = np.random.default_rng(7)
        members = [password_key(p) for p in LISTED]
        keys = [*members, *(int(k) for k in rng.integers(0, 2**63, 5000, dtype=np.uint64))]
        with BreachedFilter(built) as f:
            bulk = f.contains_keys(np.array(keys, dtype=np.uint64)).tolist()
            assert [f.contains_key(k) for k in keys] == bulk
            assert all(bulk[: len(members)])

    def test_hash_forms(self, built: Path) -> None:
        """A SHA-1 as 40 hex digits (either case) or 20 bytes; anything else is refused."""
        digest = hashlib.sha1(b"gfhjkm", usedforsecurity=False)
        with BreachedFilter(built) as f:
            assert f.contains_hash(digest.hexdigest())
            assert f.contains_hash(digest.hexdigest().upper())
            assert f.contains_hash(digest.digest())
            for bad in ("abc", "z" * 40, b"short", digest.hexdigest().encode()):
                with pytest.raises(ValueError, match="SHA-1"):
                    f.contains_hash(bad)
            with pytest.raises(TypeError):
                b"gfhjkm" in f  # noqa: B015

    def test_passwords_are_taken_exactly(self, built: Path) -> None:
        """The filter compares exact strings; case and normalisation are the policy's job."""
        with BreachedFilter(built) as f:
            assert "Qwerty123!" in f
            assert "qwerty123!" not in f
            assert "ｐａｓｓ" not in f
            assert "\ud800" not in f  # a lone surrogate has a key too; no crash

    def test_closed(self, built: Path) -> None:
        """After close, look-ups raise; closing twice is fine."""
        f = BreachedFilter(built)
        f.close()
        f.close()
        with pytest.raises(ValueError, match="closed"):
            "gfhjkm" in f  # noqa: B015

    def test_repr_names_the_file_and_counts(self, built: Path) -> None:
        """repr says which file and how big, nothing else."""
        with BreachedFilter(built) as f:
            assert repr(f) == f"<BreachedFilter {str(built)!r} entries={f.entries} min_count=1>"


def corrupted(tmp_path: Path, built: Path, change: str) -> Path:
    data = bytearray(built.read_bytes())
    if change == "magic":
        data[0:8] = b"NOTAFILT"
    elif change == "version":
        data[8] = FILTER_VERSION + 1
    elif change == "table":
        data[HEADER.size + 3] ^= 0x40
    elif change == "header count":
        data[12] ^= 0x01
    elif change == "truncated":
        del data[-10:]
    elif change == "trailing":
        data += b"\0\0"
    elif change == "short":
        del data[40:]
    elif change == "empty":
        data = bytearray()
    path = tmp_path / f"{change.replace(' ', '-')}.kib"
    path.write_bytes(bytes(data))
    return path


class TestRefusedFiles:
    @pytest.mark.parametrize(
        ("change", "reason"),
        [
            ("magic", "not a breached-password filter"),
            ("version", f"format version {FILTER_VERSION + 1}; this kaspi-identity reads version"),
            ("table", "checksum"),
            ("header count", "checksum"),
            ("truncated", "truncated"),
            ("short", "truncated"),
            ("empty", "truncated"),
            ("trailing", "corrupt"),
        ],
    )
    def test_refused_at_construction(
        self, tmp_path: Path, built: Path, change: str, reason: str
    ) -> None:
        """A bad file is a BreachedFilterError, and a PolicyConfigError naming it."""
        path = corrupted(tmp_path, built, change)
        with pytest.raises(BreachedFilterError, match=reason) as caught:
            BreachedFilter(path)
        assert str(path) == caught.value.path
        with pytest.raises(PolicyConfigError) as config:
            PasswordPolicy(breached=path)
        assert str(path) in config.value.errors["breached"]
        assert reason in config.value.errors["breached"]

    def test_missing_file_and_directory(self, tmp_path: Path) -> None:
        """Neither is a filter; both are named."""
        for path, reason in ((tmp_path / "absent.kib", "file not found"), (tmp_path, "directory")):
            with pytest.raises(PolicyConfigError, match=reason) as caught:
                PasswordPolicy(breached={"filter": path})
            assert str(path) in caught.value.errors["breached"]

    def test_a_changed_fingerprint_is_found_by_verify(self, tmp_path: Path, built: Path) -> None:
        """Opening checks header and table; verify() reads the whole payload's checksum."""
        data = bytearray(built.read_bytes())
        data[-1] ^= 0xFF
        path = tmp_path / "payload.kib"
        path.write_bytes(bytes(data))
        with BreachedFilter(path) as f, pytest.raises(BreachedFilterError, match="fingerprints"):
            f.verify()
        with BreachedFilter(built) as f:
            f.verify()

    def test_a_shard_out_of_bounds(self, tmp_path: Path, built: Path) -> None:
        """A table entry pointing outside the payload is corrupt, even with a right CRC."""
        import struct
        import zlib

        data = bytearray(built.read_bytes())
        seed, offset, length, segment, count_length = SHARD.unpack_from(data, HEADER.size)
        SHARD.pack_into(data, HEADER.size, seed, offset + 1, length, segment, count_length)
        head = (
            bytes(data[: HEADER.size - 8])
            + b"\0\0\0\0"
            + bytes(data[HEADER.size - 4 : HEADER.size])
        )
        crc = zlib.crc32(bytes(data[HEADER.size : HEADER.size + SHARD.size]), zlib.crc32(head))
        struct.pack_into("<I", data, HEADER.size - 8, crc)
        path = tmp_path / "bounds.kib"
        path.write_bytes(bytes(data))
        with pytest.raises(BreachedFilterError, match="out of bounds"):
            BreachedFilter(path)


class TestPolicyKey:
    def test_a_listed_password_is_breached(self, built: Path) -> None:
        """The code is ``breached`` with reason ``found``, in rule order."""
        policy = PasswordPolicy(breached=built)
        result = policy.check("Almaty-Astana-1997")
        assert (Violation("breached", {"reason": "found"}),) == result.violations
        assert policy.check("Zx9$-never-leaked-4711")
        assert ("too_short", "too_common", "breached") == policy.check("pass").codes

    def test_the_nfkc_form_is_checked(self, built: Path) -> None:
        """Full-width letters are looked up in their NFKC form."""
        policy = PasswordPolicy(min_length=1, blocklist=False, breached=built)
        assert ("breached",) == policy.check("ｐａｓｓ").codes

    def test_the_qwerty_form_of_a_russian_layout_password(self, built: Path) -> None:
        """ "пароль" typed meaning "gfhjkm" (the corpus's form) is breached, as is the rest."""
        policy = PasswordPolicy(min_length=1, blocklist=False, breached=built)
        assert ("breached",) == policy.check("пароль").codes
        assert ("breached",) == policy.check("алексей2024").codes
        assert ("breached",) == policy.check("Алматы2024").codes  # as typed
        assert policy.check("пароль1")

    def test_case_matters(self, built: Path) -> None:
        """Breach corpora hash the exact password: another case is another password."""
        policy = PasswordPolicy(blocklist=False, breached=built)
        assert not policy.check("Qwerty123!")
        assert policy.check("QWERTY123!")

    def test_messages(self, built: Path) -> None:
        """kk / ru / en for both reasons."""
        found = Violation("breached", {"reason": "found"})
        unavailable = Violation("breached", {"reason": "unavailable"})
        assert "appeared in a data breach" in found.message("en")
        assert "утечке данных" in found.message("ru")
        assert "ағып кетуінде" in found.message("kk")
        assert "could not be checked" in unavailable.message("en")
        assert "Не удалось проверить" in unavailable.message("ru")
        assert "тексеру мүмкін болмады" in unavailable.message("kk")

    def test_describe_and_document(self, built: Path) -> None:
        """A requirement line; the document says which sources, never the path."""
        policy = PasswordPolicy(breached=built)
        assert "Not a password known from a data breach" in policy.describe("en")
        assert "Не встречается в утечках данных" in policy.describe("ru")
        document = policy.document()
        assert {"offline": True, "online": False, "fail": None} == document["breached"]
        assert str(built) not in repr(document)
        assert PasswordPolicy().document()["breached"] is None

    def test_forms_and_round_trip(self, built: Path) -> None:
        """A path, a PathLike, or a table; to_mapping gives an equal policy back."""
        as_str = PasswordPolicy(breached=str(built))
        assert as_str == PasswordPolicy(breached=built)
        assert str(built) == as_str.breached
        table = PasswordPolicy(breached={"filter": built, "min_count": 1})
        assert {"filter": str(built), "min_count": 1, "online": None} == table.breached
        for policy in (as_str, table):
            assert policy == PasswordPolicy.from_mapping(policy.to_mapping())
            assert hash(policy) == hash(PasswordPolicy.from_mapping(policy.to_mapping()))
        assert PasswordPolicy().breached is None
        assert PasswordPolicy(breached=False).breached is None  # type: ignore[arg-type]

    def test_toml_paths_are_relative_to_the_file(self, tmp_path: Path, built: Path) -> None:
        """``breached = "pwned.kib"`` in a TOML file means the file beside it."""
        (tmp_path / "pwned.kib").write_bytes(built.read_bytes())
        (tmp_path / "policy.toml").write_text('[password]\nbreached = "pwned.kib"\n')
        (tmp_path / "table.toml").write_text('[password.breached]\nfilter = "pwned.kib"\n')
        for name in ("policy.toml", "table.toml"):
            policy = PasswordPolicy.from_toml(tmp_path / name)
            assert not policy.check("Almaty-Astana-1997")

    @pytest.mark.parametrize(
        ("value", "reason"),
        [
            (12, "must be false, the path"),
            (b"pwned.kib", "must be false, the path"),
            (["pwned.kib"], "must be false, the path"),
            ({}, "names no source"),
            ({"filter": None}, "names no source"),
            ({"fliter": "x"}, "unknown key 'fliter'"),
            ({"filter": 3}, "filter must be the path"),
            ({"filter": "", "online": False}, "filter must be the path"),
            ({"online": "yes"}, "online must be true, false or a table"),
            ({"online": {"ur": "x"}}, "online: unknown key 'ur'"),
            ({"online": {"url": "ftp://x/"}}, "http(s) URL"),
            ({"online": {"timeout": 0}}, "timeout must be above 0"),
            ({"online": {"timeout": 61}}, "timeout must be above 0"),
            ({"online": {"timeout": "2"}}, "timeout must be a number"),
            ({"online": {"fail": "shut"}}, "fail must be 'open' or 'closed'"),
            ({"online": {"cache_seconds": -1}}, "cache_seconds"),
            ({"online": True, "min_count": 0.5}, "must be an integer"),
        ],
    )
    def test_bad_values(self, value: object, reason: str) -> None:
        """Every bad value is a PolicyConfigError under ``breached``."""
        with pytest.raises(PolicyConfigError) as caught:
            PasswordPolicy(breached=value)  # type: ignore[arg-type]
        assert reason in caught.value.errors["breached"]

    def test_min_count_must_match_the_filter(self, tmp_path: Path, built: Path) -> None:
        """A filter keeps no counts: the policy's min_count is the one it was built with."""
        with pytest.raises(PolicyConfigError, match="rebuild it with --min-count 10"):
            PasswordPolicy(breached={"filter": built, "min_count": 10})
        out = build(tmp_path, corpus(0), min_count=3)
        policy = PasswordPolicy(breached={"filter": out, "min_count": 3})
        assert policy.check("Almaty-Astana-1997").codes == ("breached",)

    def test_a_breach_corpus_meets_the_blocklist_requirements(self, built: Path) -> None:
        """No blocklist but a breached filter: no NIST or ASVS 6.2.4/6.2.12 deviation."""
        bare = PasswordPolicy(blocklist=False)
        assert {"blocklist"} <= {d.rule for d in bare.deviations()}
        covered = PasswordPolicy(blocklist=False, breached=built)
        assert "blocklist" not in {d.rule for d in covered.deviations()}

    def test_reported_with_other_errors(self, tmp_path: Path) -> None:
        """A bad filter is reported together with the other keys' problems."""
        with pytest.raises(PolicyConfigError) as caught:
            PasswordPolicy(min_length=0.5, breached=tmp_path / "x.kib")  # type: ignore[arg-type]
        assert {"min_length", "breached"} <= set(caught.value.errors)


class TestCheckWithoutBreached:
    def test_breached_false_leaves_the_sources_out(self, built: Path) -> None:
        """check(breached=False) runs every other rule and no breach look-up."""
        policy = PasswordPolicy(breached=built)
        assert ("too_short", "too_common") == policy.check("pass", breached=False).codes
        assert policy.check("Almaty-Astana-1997", breached=False)
        assert not policy.check("Almaty-Astana-1997")
        with pytest.raises(TypeError, match="breached must be a bool"):
            policy.check("Almaty-Astana-1997", breached=None)  # type: ignore[arg-type]


class TestCheckBreached:
    def test_answers(self, built: Path) -> None:
        """Found, not found, and no source configured."""
        policy = PasswordPolicy(breached=built)
        found = policy.check_breached("пароль")
        assert BreachCheck(True, "filter") == found
        assert found
        assert found.refuse
        clean = policy.check_breached("Zx9$-never-leaked-4711")
        assert BreachCheck(False) == clean
        assert not clean.refuse
        none = PasswordPolicy().check_breached("gfhjkm")
        assert (False, False) == (none.breached, none.checked)

    def test_bad_input(self, built: Path) -> None:
        """Non-str is a TypeError; huge, NUL and surrogate strings are answered."""
        policy = PasswordPolicy(breached=built)
        for bad in (None, b"gfhjkm", 12):
            with pytest.raises(TypeError):
                policy.check_breached(bad)  # type: ignore[arg-type]
        assert not policy.check_breached("x" * 1_000_000)
        assert not policy.check_breached("a\0b")
        assert not policy.check_breached("\udcff")


class TestConcurrency:
    def test_threads_share_one_filter(self, built: Path) -> None:
        """Policies built and checked from many threads at once agree, on one mapping."""
        from concurrent.futures import ThreadPoolExecutor

        words = [*LISTED, *NOT_LISTED] * 20

        def work(i: int) -> tuple[bool, ...]:
            policy = PasswordPolicy(min_length=1, blocklist=False, breached=built)
            return tuple(bool(policy.check_breached(w)) for w in words)

        with ThreadPoolExecutor(8) as pool:
            answers = set(pool.map(work, range(32)))
        assert {tuple(w in LISTED for w in words)} == answers

    def test_a_forked_process_uses_the_parents_mapping(self, built: Path) -> None:
        """Workers forked after the policy was built check with the inherited mapping."""
        import multiprocessing

        _FORKED[:] = [PasswordPolicy(min_length=1, blocklist=False, breached=built)]
        try:
            with multiprocessing.get_context("fork").Pool(2) as pool:
                found = pool.map(_breached_in_child, [*LISTED, *NOT_LISTED])
        finally:
            _FORKED.clear()
        assert [True] * len(LISTED) + [False] * len(NOT_LISTED) == found


#: The policy a forked worker inherits (a policy holds a mapping: it is not pickled).
_FORKED: list[PasswordPolicy] = []


def _breached_in_child(password: str) -> bool:
    return bool(_FORKED[0].check_breached(password))


class TestLightness:
    def test_opening_and_checking_import_no_numpy(self, built: Path) -> None:
        """A policy with a filter opens and checks without numpy (or any filter package)."""
        code = (
            "import sys\n"
            "from kaspi_identity import PasswordPolicy\n"
            f"p = PasswordPolicy(breached={str(built)!r})\n"
            "assert not p.check('gfhjkm')\n"
            "print(','.join(m for m in ('numpy', 'httpx', 'greenlet') if m in sys.modules))\n"
        )
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        assert "" == done.stdout.strip()


class TestCommand:
    def test_build_and_verify(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """``breached build`` writes the filter and a summary; ``verify`` checks it."""
        source = write_source(tmp_path / "pwned.txt.gz", corpus(1000))
        out = tmp_path / "pwned.kib"
        assert 0 == main(["breached", "build", str(source), "-o", str(out), "--min-count", "2"])
        printed = capsys.readouterr()
        assert f"{out}: " in printed.out
        assert "(min count 2)" in printed.out
        assert "[" in printed.err  # the progress bar's last line
        assert "100%" in printed.err
        assert 0 == main(["breached", "verify", str(out)])
        assert "ok" in capsys.readouterr().out

    def test_errors(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A bad source, a bad count, a bad filter: exit 2 with the reason."""
        (tmp_path / "bad.txt").write_text("hunter2\n")
        out = tmp_path / "o.kib"
        assert 2 == main(["breached", "build", str(tmp_path / "bad.txt"), "-o", str(out)])
        assert "bad.txt:1: not a SHA1HEX:COUNT line" in capsys.readouterr().err
        assert 2 == main(["breached", "build", "x", "-o", str(out), "--min-count", "0"])
        assert 2 == main(["breached", "verify", str(tmp_path / "bad.txt")])
        assert "not a breached-password filter" in capsys.readouterr().err
        assert 2 == main(["breached", "build", str(tmp_path / "bad.txt")])  # no -o
