"""Start the portal with uvicorn: ``kaspi-identity portal`` and ``python -m kaspi_portal``."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from kaspi_identity import PasswordPolicy
from kaspi_identity.policy import PRESET_NAMES
from kaspi_portal._app import PortalConfig, create_app

__all__ = ["add_arguments", "main", "serve"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The portal's options (``kaspi-identity portal`` declares the same ones)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--preset", choices=PRESET_NAMES, help="a named policy (default: kz-procurement)"
    )
    group.add_argument("--policy", metavar="FILE", help="a TOML policy file ([password] table)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    parser.add_argument("--db", metavar="PATH", help="SQLite file (default: a temporary one)")


def serve(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the portal in development mode until interrupted; 0 when it stopped cleanly."""
    import uvicorn

    out = out if out is not None else sys.stdout
    if args.policy:
        policy, name = PasswordPolicy.from_toml(args.policy), Path(args.policy).name
    else:
        name = args.preset or "kz-procurement"
        policy = PasswordPolicy.preset(name)
    with tempfile.TemporaryDirectory(prefix="kaspi-portal-") as scratch:
        db = args.db or str(Path(scratch) / "portal.sqlite3")
        base = f"http://{args.host}:{args.port}"
        config = PortalConfig(policy=policy, policy_name=name, base_url=base, db=db, dev=True)
        app = create_app(config)
        print(f"kaspi-identity portal: {base}/  (policy {name}, SQLite {db})", file=out)
        print(f"letters and SMS: {base}/dev/mailbox  (development mode; Ctrl-C stops)", file=out)
        out.flush()
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kaspi_portal [--preset NAME | --policy FILE] [--host] [--port] [--db]``."""
    parser = argparse.ArgumentParser(prog="python -m kaspi_portal", description=__doc__)
    add_arguments(parser)
    return serve(parser.parse_args(argv))
