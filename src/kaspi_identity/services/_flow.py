"""What every flow module is built from: the shared plumbing, the tokens, the password writer."""

from __future__ import annotations

from dataclasses import dataclass

from kaspi_identity.services._passwords import PasswordWriter
from kaspi_identity.services._plumbing import Plumbing
from kaspi_identity.services._tokens import Tokens

__all__ = ["Flow"]


@dataclass(eq=False)
class Flow:
    """The base of each flow: one service's :class:`Plumbing`, :class:`Tokens` and writer."""

    plumbing: Plumbing
    tokens: Tokens
    writer: PasswordWriter
