"""The one writer of a password: its hash, its history entry and a new security stamp.

Registration, change of password and both resets write a password here, and log-in's
rehash replaces a hash here too. Where accounts and history share a database
(``Storage.with_history``) the hash and its entry are one transaction. With stores in
different backends the entry is written **first** on a change (if setting the hash then
fails, the old password still works and the only trace is a spare entry: a password that
never went live is remembered as used), and **after** the account on a registration (a
failing history store cannot leave a half-made account nobody can confirm).
"""

from __future__ import annotations

import logging

from kaspi_identity._errors import StorageError
from kaspi_identity.history import PasswordHistory
from kaspi_identity.services._plumbing import Plumbing
from kaspi_identity.storage import Account, HistoryEntry, NewAccount

__all__ = ["PasswordWriter"]

_log = logging.getLogger("kaspi_identity.services")


class PasswordWriter:
    """Hashes passwords and stores them with their history entries.

    Args:
        plumbing: the service's stores, policy, hasher, clock and audit.
        history: the password history the entries are made by.
    """

    def __init__(self, plumbing: Plumbing, history: PasswordHistory) -> None:
        self._p = plumbing
        self.history = history

    @property
    def keep(self) -> int:
        """How many history entries an account keeps (at least one)."""
        return max(self._p.policy.history or 0, 1)

    def hash(self, password: str) -> str:
        """The argon2id hash of a new password."""
        return self._p.hasher.hash(password)

    def create(self, new: NewAccount, password: str) -> Account:
        """Create the account, with its first history entry in the same transaction.

        Where accounts and history share a database (``Storage.with_history``) a failure
        leaves nothing behind, so registering again starts afresh. Otherwise the account is
        created alone; :meth:`record_first` appends its entry once the confirmation letter
        went out.
        """
        p = self._p
        together = p.storage.with_history
        now = p.clock.now()
        if together is None:
            return p.storage.accounts.create(new, now=now)
        password_hash = new.password_hash or ""

        def first_entry(account: Account) -> HistoryEntry:
            return self.history.entry(
                password, password_hash, account_id=account.id, now=account.created_at
            )

        return together.create_with_history(
            new,
            now=now,
            entry=first_entry if p.policy.history else None,
            keep=self.keep,
        )

    def record_first(self, account: Account, password: str) -> None:
        """Split stores: append a new account's first entry; a failure is logged, not raised.

        Nothing to do when accounts and history share a database (:meth:`create` wrote it)
        or the policy keeps no history. The account already exists and its confirmation
        letter is on its way; all a lost entry costs is that the first password is missing
        from the history.
        """
        p = self._p
        if p.storage.with_history is not None or not p.policy.history:
            return
        try:
            self.history.record(
                account.id,
                password,
                account.password_hash or "",
                keep=self.keep,
                now=account.created_at,
            )
        except StorageError as exc:
            _log.warning("first history entry not stored: %s", type(exc).__name__)
            p.emit("history_write_failed", account.id)

    def replace(self, account: Account, password: str) -> bool:
        """Hash, then set the hash and record its history entry as one unit of work.

        The store gives the account a new security stamp and starts the password's age
        afresh (changed now; no change required; no grace log-ins used). Returns ``False``
        (nothing changed) when a concurrent change won the compare-and-set.
        """
        p = self._p
        new_hash = self.hash(password)
        now = p.clock.now()
        entry = (
            self.history.entry(password, new_hash, account_id=account.id, now=now)
            if p.policy.history
            else None
        )
        keep, together = self.keep, p.storage.with_history
        if together is not None:
            return together.replace_password(
                account.id,
                expected=account.password_hash,
                new=new_hash,
                entry=entry,
                keep=keep,
                now=now,
            )
        if entry is not None:
            p.storage.history.append(account.id, entry, keep=keep)
        return p.storage.accounts.set_password_hash(
            account.id, expected=account.password_hash, new=new_hash, now=now
        )

    def rehash(self, account: Account, new_hash: str) -> bool:
        """Replace a hash made with old parameters; the stamp is kept (sessions live on).

        A compare-and-set, so a concurrent change of password wins (``False``).
        """
        return self._p.storage.accounts.set_password_hash(
            account.id, expected=account.password_hash, new=new_hash, rotate_stamp=False
        )
