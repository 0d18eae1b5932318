"""The online range API: the clients against a local server that speaks the protocol.

The server (``RangeServer``) answers ``GET /range/{PREFIX}`` from an in-memory corpus, with
padding lines of count 0 when asked, and can be told to be slow, to fail or to talk garbage.
It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from kaspi_identity import BreachCheckUnavailableError, PasswordPolicy, Violation
from kaspi_identity.delivery import Outbox
from kaspi_identity.hashing import TESTS_ONLY, PasswordHasher
from kaspi_identity.hibp import DEFAULT_RANGE_URL, AsyncRangeClient, RangeClient, range_query
from kaspi_identity.policy._policy import ONLINE_DEFAULTS
from kaspi_identity.services import AsyncIdentityService, IdentityService, IdentitySettings
from kaspi_identity.storage.memory import async_memory_storage, memory_storage

BREACHED = {"P@ssw0rd-2019": 3_861_493, "gfhjkm": 110_000, "Zhuldyz-1990": 2}
CLEAN = "Zx9$-never-leaked-4711"


@dataclass
class State:
    """What the server knows and how it behaves; what it was asked."""

    corpus: dict[str, dict[str, int]] = field(default_factory=dict)
    delay: float = 0.0
    status: int = 200
    body: bytes | None = None
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    gate: threading.Event | None = None  # when set up, each answer waits for it (5 s at most)
    gate_opened: list[bool] = field(default_factory=list)


class RangeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: State) -> None:
        self.state = state
        super().__init__(("127.0.0.1", 0), RangeHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/range/"


class RangeHandler(BaseHTTPRequestHandler):
    server: RangeServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        state = self.server.state
        with state.lock:
            state.requests.append((self.path, dict(self.headers.items())))
        if state.delay:
            time.sleep(state.delay)
        if state.gate is not None:
            state.gate_opened.append(state.gate.wait(5))
        prefix = self.path.removeprefix("/range/")
        lines = [f"{s}:{c}" for s, c in state.corpus.get(prefix, {}).items()]
        if self.headers.get("Add-Padding") == "true":
            lines += [f"{secrets.token_hex(18)[:35].upper()}:0" for _ in range(50)]
        body = state.body if state.body is not None else "\r\n".join(lines).encode()
        try:
            self.send_response(state.status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (time-out)
            pass


@pytest.fixture
def server() -> Iterator[RangeServer]:
    state = State()
    for password, count in BREACHED.items():
        prefix, suffix = range_query(password)
        state.corpus.setdefault(prefix, {})[suffix] = count
    srv = RangeServer(state)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


def online_policy(server: RangeServer, **online: object) -> PasswordPolicy:
    return PasswordPolicy(
        blocklist=False, breached={"online": {"url": server.url, "timeout": 0.5, **online}}
    )


class TestRangeClient:
    def test_counts(self, server: RangeServer) -> None:
        """A breached password has its count; a clean one 0; padding lines are dropped."""
        client = RangeClient(server.url)
        assert 3_861_493 == client.count("P@ssw0rd-2019")
        assert 0 == client.count(CLEAN)
        prefix, _ = range_query(CLEAN)
        assert 0 == len(client.range(prefix))  # 50 padding lines, all of count 0
        client.close()

    def test_only_the_prefix_is_sent(self, server: RangeServer) -> None:
        """The request is GET /range/PREFIX with padding asked for; nothing else of the hash."""
        client = RangeClient(server.url)
        client.count("P@ssw0rd-2019")
        prefix, suffix = range_query("P@ssw0rd-2019")
        [(path, headers)] = server.state.requests
        assert f"/range/{prefix}" == path
        assert "true" == headers["Add-Padding"]
        assert "kaspi-identity" == headers["User-Agent"]
        sent = path + repr(headers)
        assert suffix not in sent
        assert suffix[:8] not in sent
        assert hashlib.sha1(b"P@ssw0rd-2019", usedforsecurity=False).hexdigest() not in sent.lower()

    def test_answers_are_cached_briefly(self, server: RangeServer) -> None:
        """A prefix asked again within cache_seconds is not fetched again; later it is."""
        now = [100.0]
        client = RangeClient(server.url, cache_seconds=60, clock=lambda: now[0])
        client.count("gfhjkm")
        client.count("gfhjkm")
        assert 1 == len(server.state.requests)
        now[0] += 61
        assert 110_000 == client.count("gfhjkm")
        assert 2 == len(server.state.requests)
        uncached = RangeClient(server.url, cache_seconds=0)
        uncached.count("gfhjkm")
        uncached.count("gfhjkm")
        assert 4 == len(server.state.requests)

    def test_the_cache_is_bounded(self, server: RangeServer) -> None:
        """At most cache_size prefixes are kept, the least recently used going first."""
        client = RangeClient(server.url, cache_size=2)
        for password in ("a", "b", "c", "a"):
            client.count(password)
        assert 4 == len(server.state.requests)  # "a" had been pushed out by "c"

    def test_timeout(self, server: RangeServer) -> None:
        """A server slower than the timeout is BreachCheckUnavailableError, soon."""
        server.state.delay = 1.0
        client = RangeClient(server.url, timeout=0.2)
        with pytest.raises(BreachCheckUnavailableError, match=r"did not answer in 0\.2 s"):
            client.count("gfhjkm")

    @pytest.mark.parametrize(
        ("status", "body", "reason"),
        [
            (503, None, "HTTP 503"),
            (429, None, "HTTP 429"),
            (200, b"<html>rate limited</html>", "malformed"),
            (200, "Ж".encode(), "not ASCII"),
            (200, b"A" * (1 << 22 | 1), "too large"),
        ],
    )
    def test_bad_answers(
        self, server: RangeServer, status: int, body: bytes | None, reason: str
    ) -> None:
        """An error status or a body that is not the protocol's is unavailable, never a count."""
        server.state.status = status
        server.state.body = body
        with pytest.raises(BreachCheckUnavailableError, match=reason):
            RangeClient(server.url).count("gfhjkm")

    def test_unreachable(self, server: RangeServer) -> None:
        """Nobody listening: unavailable, with no chained exception holding the URL."""
        url = server.url
        server.shutdown()
        server.server_close()
        with pytest.raises(BreachCheckUnavailableError, match="could not be reached") as caught:
            RangeClient(url, timeout=0.5).count("gfhjkm")
        assert caught.value.__cause__ is None
        assert caught.value.__suppress_context__

    def test_nothing_but_the_prefix_is_logged(
        self, server: RangeServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Debug and warning records name the prefix, never the suffix or the password."""
        caplog.set_level(logging.DEBUG, logger="kaspi_identity.hibp")
        client = RangeClient(server.url)
        client.count("Zhuldyz-1990")
        server.state.status = 500
        with pytest.raises(BreachCheckUnavailableError):
            client.count("P@ssw0rd-2019")
        text = "\n".join(r.getMessage() for r in caplog.records)
        for password in ("Zhuldyz-1990", "P@ssw0rd-2019"):
            prefix, suffix = range_query(password)
            assert prefix in text
            assert suffix[:6] not in text
            assert password not in text

    def test_bad_arguments(self) -> None:
        """Malformed settings, prefixes and passwords are refused before any request."""
        for kwargs in (
            {"timeout": 0},
            {"timeout": True},
            {"cache_size": 0},
            {"cache_seconds": "1"},
        ):
            with pytest.raises(ValueError, match="must be"):
                RangeClient(**kwargs)
        with pytest.raises(ValueError, match="http"):
            RangeClient("ftp://example/")
        client = RangeClient("http://127.0.0.1:9/range/")
        for prefix in ("abcde", "ABCD", "ABCDEF", "GHIJK", 12345):
            with pytest.raises(ValueError, match="5 upper-case hex"):
                client.range(prefix)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            client.count(b"gfhjkm")  # type: ignore[arg-type]
        assert "127.0.0.1:9" in repr(client)

    def test_defaults_agree(self) -> None:
        """The policy's default URL is the client's."""
        assert DEFAULT_RANGE_URL == ONLINE_DEFAULTS["url"]
        assert "https://api.pwnedpasswords.com/range/" == DEFAULT_RANGE_URL

    def test_threads_share_one_client(self, server: RangeServer) -> None:
        """Many threads asking at once all get the right counts."""
        client = RangeClient(server.url, cache_seconds=0)
        results: list[int] = []
        lock = threading.Lock()

        def ask() -> None:
            count = client.count("gfhjkm")
            with lock:
                results.append(count)

        threads = [threading.Thread(target=ask) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [110_000] * 16 == results
        client.close()


class TestAsyncRangeClient:
    def test_counts_cache_and_errors(self, server: RangeServer) -> None:
        """The coroutine face answers, caches and fails as the blocking one does."""

        async def go() -> None:
            client = AsyncRangeClient(server.url, timeout=0.3)
            assert 2 == await client.count("Zhuldyz-1990")
            assert 2 == await client.count("Zhuldyz-1990")
            assert 0 == await client.count(CLEAN)
            assert 2 == len(server.state.requests)
            server.state.delay = 1.0
            with pytest.raises(BreachCheckUnavailableError, match="did not answer"):
                await client.count("gfhjkm")
            server.state.delay = 0
            server.state.status = 502
            with pytest.raises(BreachCheckUnavailableError, match="HTTP 502"):
                await client.count("P@ssw0rd-2019")
            with pytest.raises(TypeError):
                await client.count(None)  # type: ignore[arg-type]

        asyncio.run(go())

    def test_serves_any_loop(self, server: RangeServer) -> None:
        """One client used from two event loops in turn."""
        client = AsyncRangeClient(server.url, cache_seconds=0)
        assert 110_000 == asyncio.run(client.count("gfhjkm"))
        assert 110_000 == asyncio.run(client.count("gfhjkm"))


class TestOnlinePolicy:
    def test_breached_online(self, server: RangeServer) -> None:
        """The online source reports ``breached`` (found) and its count in check_breached."""
        policy = online_policy(server)
        assert (Violation("breached", {"reason": "found"}),) == policy.check(
            "P@ssw0rd-2019"
        ).violations
        answer = policy.check_breached("P@ssw0rd-2019")
        assert (True, "online", 3_861_493) == (answer.breached, answer.source, answer.count)
        assert policy.check(CLEAN)

    def test_qwerty_form_online(self, server: RangeServer) -> None:
        """ "пароль" is asked as itself and as "gfhjkm" (two prefixes)."""
        policy = online_policy(server)
        assert ("breached",) == PasswordPolicy(
            min_length=1, blocklist=False, breached=policy.breached
        ).check("пароль").codes
        paths = [p for p, _ in server.state.requests]
        assert [f"/range/{range_query(w)[0]}" for w in ("пароль", "gfhjkm")] == paths

    def test_min_count(self, server: RangeServer) -> None:
        """Online, a password seen fewer than min_count times is not breached."""
        policy = PasswordPolicy(
            blocklist=False,
            breached={"online": {"url": server.url}, "min_count": 3},
        )
        assert policy.check("Zhuldyz-1990")  # seen twice
        assert not policy.check("P@ssw0rd-2019")

    def test_fail_open(self, server: RangeServer) -> None:
        """With fail = "open" an unavailable API lets the password through, and says so."""
        server.state.status = 503
        policy = online_policy(server, fail="open")
        assert policy.check("P@ssw0rd-2019")
        answer = policy.check_breached("P@ssw0rd-2019")
        assert (False, True, False) == (answer.breached, answer.unavailable, answer.refuse)

    def test_fail_closed(self, server: RangeServer) -> None:
        """With fail = "closed" an unavailable API refuses, with its own reason."""
        server.state.delay = 1.0
        policy = online_policy(server, fail="closed", timeout=0.2)
        result = policy.check(CLEAN)
        assert (Violation("breached", {"reason": "unavailable"}),) == result.violations
        assert "could not be checked" in result.messages("en")[0]
        answer = policy.check_breached(CLEAN)
        assert (False, True, True) == (answer.breached, answer.unavailable, answer.refuse)

    def test_the_filter_is_asked_first(self, server: RangeServer, tmp_path: Any) -> None:
        """A password the filter knows needs no request; one it does not goes online."""
        from kaspi_identity.policy import build_breached_filter

        source = tmp_path / "pwned.txt"
        source.write_text(
            hashlib.sha1(b"gfhjkm", usedforsecurity=False).hexdigest().upper() + ":9\n"
        )
        build_breached_filter([source], tmp_path / "pwned.kib")
        policy = PasswordPolicy(
            blocklist=False,
            breached={"filter": tmp_path / "pwned.kib", "online": {"url": server.url}},
        )
        assert "filter" == policy.check_breached("gfhjkm").source
        assert [] == server.state.requests
        assert "online" == policy.check_breached("P@ssw0rd-2019").source
        assert 1 == len(server.state.requests)
        assert {"offline": True, "online": True, "fail": "open"} == policy.document()["breached"]

    def test_building_a_policy_sends_nothing(self, server: RangeServer) -> None:
        """Construction (and its satisfiability check) never asks the API."""
        policy = online_policy(server)
        assert policy == PasswordPolicy.from_mapping(policy.to_mapping())
        assert [] == server.state.requests
        assert server.url == policy.to_mapping()["breached"]["online"]["url"]


SETTINGS = IdentitySettings(
    secret_keys=(b"k" * 32,),
    confirm_url="https://portal.example.kz/confirm",
    reset_url="https://portal.example.kz/reset",
    site_name="portal.example.kz",
)


class TestFaces:
    def test_registration_refuses_a_breached_password(self, server: RangeServer) -> None:
        """The sync face: register answers with the violation, no account is made."""
        storage = memory_storage()
        service = IdentityService(
            storage,
            SETTINGS,
            email_sender=Outbox(),
            policy=online_policy(server),
            hasher=PasswordHasher(TESTS_ONLY),
        )
        refused = service.register(
            email="a@example.kz",
            password="P@ssw0rd-2019",
            confirmation="P@ssw0rd-2019",
            client_key="c",
        )
        assert ("breached",) == refused.policy.codes
        assert storage.accounts.find_by_login("email", "a@example.kz") is None

    def test_the_async_face_awaits_the_online_check(self, server: RangeServer) -> None:
        """The flow's request is awaited: another task runs while the API has not answered.

        The server holds its answer until that task has ticked five times; were the event
        loop blocked by the request, the task could not tick, the client would time out and
        (failing open) the password would pass.
        """
        gate = server.state.gate = threading.Event()
        policy = online_policy(server, timeout=2)

        async def go() -> list[str]:
            service = AsyncIdentityService(
                async_memory_storage(),
                SETTINGS,
                email_sender=Outbox(),
                policy=policy,
                hasher=PasswordHasher(TESTS_ONLY),
            )
            assert service.policy is policy
            done = asyncio.Event()

            async def ticker() -> None:
                ticks = 0
                while not done.is_set():
                    ticks += 1
                    if ticks == 5:
                        gate.set()
                    await asyncio.sleep(0.01)

            task = asyncio.create_task(ticker())
            refused = await service.register(
                email="a@example.kz",
                password="P@ssw0rd-2019",
                confirmation="P@ssw0rd-2019",
                client_key="c",
            )
            done.set()
            await task
            return list(refused.policy.codes)

        assert ["breached"] == asyncio.run(go())
        assert [True] == server.state.gate_opened

    def test_the_async_face_fails_closed_too(self, server: RangeServer) -> None:
        """On the async face an unavailable API is the same ``unavailable`` violation."""
        server.state.status = 500

        async def go() -> tuple[str, ...]:
            service = AsyncIdentityService(
                async_memory_storage(),
                SETTINGS,
                email_sender=Outbox(),
                policy=online_policy(server, fail="closed"),
                hasher=PasswordHasher(TESTS_ONLY),
            )
            refused = await service.register(
                email="a@example.kz", password=CLEAN, confirmation=CLEAN, client_key="c"
            )
            return refused.policy.codes

        assert ("breached",) == asyncio.run(go())
