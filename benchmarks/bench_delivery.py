"""Delivery off the request path, measured: request latency with a slow SMTP server, throughput.

Run ``python benchmarks/bench_delivery.py [--quick]``. Two measurements, side by side in one
run, each reported as a ratio (issue 15):

1. **Request latency.** ``request_password_reset`` on the SQLite default, with a mail server
   that answers each command slowly (``--delay`` seconds per reply line, 0.3 s by default,
   sent one byte at a time). Four configurations, interleaved call by call: the outbox with
   an :class:`OutboxWorker` thread sending to the slow server, the outbox with an instant
   sender, and -- for contrast -- no outbox (the letter sent in the request) with the slow
   server and with the instant sender. The slow server runs in a process of its own, and
   each round starts with another configuration. Median and p95 ms per request, and the ratio
   outbox+slow / outbox+instant (target <= 1.2: the request does not wait for the server).
2. **Worker throughput.** ``--letters`` letters queued, then delivered by
   ``OutboxWorker.run_until_idle()`` through :class:`SmtpEmailSender` to a local aiosmtpd
   server, next to the same letters sent with ``smtplib`` in a loop (one connection per
   letter, as the sender makes). Letters per second and the ratio worker / smtplib (the
   cost of claiming, writing and marking each message).

Numbers depend on the host (and on other load): compare the ratios. Exit status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import smtplib
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from kaspi_identity.delivery import EmailMessage, Outbox, SmtpEmailSender, render_email
from kaspi_identity.hashing import TESTS_ONLY, PasswordHasher
from kaspi_identity.services import (
    IdentityService,
    IdentitySettings,
    OutboxWorker,
    RateLimit,
)
from kaspi_identity.storage import Storage
from kaspi_identity.storage.sqlite import sqlite_storage

LOOPBACK = "127.0.0.1"
HUGE = RateLimit(10**9, timedelta(hours=1))
PASSWORD = "Correct-Horse-9-Battery"


def settings() -> IdentitySettings:
    """Every limit out of the way: the flows, not the refusals, are measured."""
    return IdentitySettings(
        secret_keys=(b"bench-key-" * 4,),
        confirm_url="https://portal.example.kz/confirm",
        reset_url="https://portal.example.kz/reset",
        site_name="portal.example.kz",
        reset_per_identifier=HUGE,
        reset_per_client=HUGE,
        register_per_client=HUGE,
        register_per_identifier=HUGE,
    )


# -- a slow SMTP server: each reply line trickles out one byte at a time ---------------


class SlowSmtp:
    """A minimal SMTP server in a process of its own; each reply takes ``delay`` s to send.

    A process, not a thread: the byte-by-byte replies must not take the benchmark's GIL.
    """

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.port = 0
        self._process: multiprocessing.Process | None = None

    def serve(self, ports: Any) -> None:
        """The server process: report the port, then serve until killed."""

        async def run() -> None:
            server = await asyncio.start_server(self._client, LOOPBACK, 0)
            ports.put(server.sockets[0].getsockname()[1])
            await server.serve_forever()

        asyncio.run(run())

    async def _reply(self, writer: asyncio.StreamWriter, line: str) -> None:
        data = (line + "\r\n").encode()
        step = self.delay / len(data)
        for index in range(len(data)):
            writer.write(data[index : index + 1])
            await writer.drain()
            await asyncio.sleep(step)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._reply(writer, "220 slow.example.kz ESMTP")
            while line := await reader.readline():
                command = line.decode("ascii", "replace").strip().upper()
                if command.startswith(("EHLO", "HELO")):
                    await self._reply(writer, "250 slow.example.kz")
                elif command == "DATA":
                    await self._reply(writer, "354 go ahead")
                    while (await reader.readline()) not in (b".\r\n", b""):
                        pass
                    await self._reply(writer, "250 2.0.0 OK")
                elif command == "QUIT":
                    await self._reply(writer, "221 bye")
                    break
                else:
                    await self._reply(writer, "250 OK")
        finally:
            writer.close()

    def __enter__(self) -> SlowSmtp:
        ports: Any = multiprocessing.Queue()
        self._process = multiprocessing.Process(target=self.serve, args=(ports,), daemon=True)
        self._process.start()
        self.port = ports.get(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.join(5)


class _Count:
    def __init__(self) -> None:
        self.received = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.received += 1
        return "250 2.0.0 OK"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


# -- 1. request latency ------------------------------------------------------------------


def _service(storage: Storage, sender: Any) -> IdentityService:
    return IdentityService(
        storage,
        settings(),
        email_sender=sender,
        hasher=PasswordHasher(TESTS_ONLY),
    )


def _registered(service: IdentityService, email: str) -> None:
    result = service.register(
        email=email, password=PASSWORD, confirmation=PASSWORD, client_key="bench"
    )
    assert result.ok


def latency(tmp: Path, *, delay: float, requests: int) -> dict[str, list[float]]:
    """Milliseconds per ``request_password_reset`` in each configuration, interleaved."""
    timings: dict[str, list[float]] = {}
    with SlowSmtp(delay) as slow:
        smtp = SmtpEmailSender(
            LOOPBACK, slow.port, sender="noreply@example.kz", security="none", timeout=30
        )
        configs: dict[str, tuple[IdentityService, OutboxWorker | None]] = {}
        for name, queued, sender in (
            ("outbox, slow server", True, smtp),
            ("outbox, instant sender", True, Outbox()),
            ("in request, slow server", False, smtp),
            ("in request, instant sender", False, Outbox()),
        ):
            storage = sqlite_storage(tmp / f"{len(configs)}.sqlite3", outbox=queued)
            service = _service(storage, sender)
            _registered(service, "aliya@example.kz")
            worker = OutboxWorker(service, batch=50) if queued else None
            if worker is not None:
                worker.start(poll=0.05)
            configs[name] = (service, worker)
            timings[name] = []
        try:
            names = list(configs)
            for index in range(requests):
                # A different configuration goes first each round: no place is favoured.
                shift = index % len(names)
                for name in names[shift:] + names[:shift]:
                    service = configs[name][0]
                    if name.startswith("in request, slow") and index >= max(3, requests // 10):
                        continue  # 2 s a request: a few are enough to show it
                    start = time.perf_counter()
                    service.request_password_reset("aliya@example.kz", client_key="bench")
                    timings[name].append((time.perf_counter() - start) * 1000)
        finally:
            for service, worker in configs.values():
                if worker is not None:
                    worker.stop(timeout=60)
                service.storage.close()
    return timings


# -- 2. worker throughput ----------------------------------------------------------------


def throughput(tmp: Path, *, letters: int) -> tuple[float, float]:
    """Letters per second: the worker through SmtpEmailSender, and smtplib in a loop."""
    handler = _Count()
    port = _free_port()
    controller = Controller(handler, hostname=LOOPBACK, port=port, ready_timeout=5.0)
    controller.start()
    try:
        smtp = SmtpEmailSender(LOOPBACK, port, sender="noreply@example.kz", security="none")
        storage = sqlite_storage(tmp / "throughput.sqlite3", outbox=True)
        service = _service(storage, smtp)
        for index in range(letters):
            _registered(service, f"user{index}@example.kz")
        worker = OutboxWorker(service, batch=100)
        start = time.perf_counter()
        run = worker.run_until_idle()
        worker_rate = run.sent / (time.perf_counter() - start)
        storage.close()
        assert run.sent == letters, run
        prepared = [
            render_email(
                "confirm_email",
                "ru",
                to=f"user{index}@example.kz",
                link="https://portal.example.kz/confirm?token=x",
                hours=24,
                site="portal.example.kz",
            )
            for index in range(letters)
        ]
        start = time.perf_counter()
        for message in prepared:
            _smtplib_send(port, message)
        smtplib_rate = letters / (time.perf_counter() - start)
    finally:
        controller.stop()
    return worker_rate, smtplib_rate


def _smtplib_send(port: int, message: EmailMessage) -> None:
    import email.message

    mime = email.message.EmailMessage()
    mime["From"] = "noreply@example.kz"
    mime["To"] = message.to
    mime["Subject"] = message.subject
    mime.set_content(message.text)
    with smtplib.SMTP(LOOPBACK, port) as client:
        client.send_message(mime)


# -- report ------------------------------------------------------------------------------


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def main(argv: list[str] | None = None, *, out: Callable[[str], None] = print) -> int:
    """Run both measurements and print the tables; 0 always (a measurement)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer requests and letters")
    parser.add_argument("--delay", type=float, default=0.3, help="seconds per SMTP reply")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--letters", type=int, default=200)
    args = parser.parse_args(argv)
    requests = 10 if args.quick else args.requests
    letters = 40 if args.quick else args.letters
    with tempfile.TemporaryDirectory(prefix="kaspi-bench-delivery-") as tmp:
        timings = latency(Path(tmp), delay=args.delay, requests=requests)
        out(f"1. request_password_reset, SQLite, SMTP reply delay {args.delay:g} s")
        out(f"   {'configuration':<28} {'n':>4} {'median ms':>10} {'p95 ms':>9}")
        for name, values in timings.items():
            out(
                f"   {name:<28} {len(values):>4} {statistics.median(values):>10.2f}"
                f" {_p95(values):>9.2f}"
            )
        ratio = statistics.median(timings["outbox, slow server"]) / statistics.median(
            timings["outbox, instant sender"]
        )
        out(f"   outbox: slow server / instant sender = {ratio:.2f}x (target <= 1.2x)")
        worker_rate, smtplib_rate = throughput(Path(tmp), letters=letters)
        out(f"2. worker throughput, {letters} letters to a local aiosmtpd server")
        out(f"   OutboxWorker + SmtpEmailSender  {worker_rate:8.1f} letters/s")
        out(f"   smtplib in a loop               {smtplib_rate:8.1f} letters/s")
        out(f"   worker / smtplib = {worker_rate / smtplib_rate:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
