"""Find the real database servers the adapter tests run against, or skip (fail in CI).

``scripts/test-servers start`` starts a Redis server, a Redis Cluster (three masters, three
replicas) and a PostgreSQL server on loopback ports and prints ``export`` lines for their
URLs. Without those variables (a developer's laptop) the
tests that need a server skip and say how to enable them; with ``CI=true`` a missing or
unreachable server fails the test instead, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import socket
from typing import NoReturn
from urllib.parse import urlsplit

import pytest

__all__ = ["HOW_TO_ENABLE", "require_server"]

HOW_TO_ENABLE = 'start the test servers with: eval "$(scripts/test-servers start)"'
_DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "redis": 6379, "rediss": 6379}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def _unavailable(message: str) -> NoReturn:
    if _in_ci():
        pytest.fail(f"{message} (CI=true: a missing server is a failure)", pytrace=False)
    pytest.skip(f"{message}; {HOW_TO_ENABLE}")


def _address(url: str) -> tuple[str, int] | None:
    """Return the TCP host and port a server URL points at, or ``None`` if it has none."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0].lower()
    try:
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname, port or _DEFAULT_PORTS.get(scheme, 0)


def require_server(env_var: str) -> str:
    """Return the server URL in ``env_var`` if the server answers on its TCP port.

    Otherwise skip the test with a message saying how to start the servers -- or, when the
    environment has ``CI=true``, fail it.
    """
    url = os.environ.get(env_var, "").strip()
    if not url:
        _unavailable(f"{env_var} is not set")
    address = _address(url)
    if address is None or not address[1]:
        _unavailable(f"{env_var} does not name a TCP host and port")
    try:
        with socket.create_connection(address, timeout=3):
            pass
    except OSError as exc:
        _unavailable(f"the server in {env_var} ({address[0]}:{address[1]}) is unreachable: {exc}")
    return url
