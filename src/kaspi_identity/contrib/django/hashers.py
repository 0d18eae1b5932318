"""A hasher that also verifies the hashes of Django's own password hashers, and upgrades them.

A site that adopts kaspi-identity keeps its users' PBKDF2 (or bcrypt, scrypt, ...) hashes.
:class:`DjangoCompatibleHasher` is the service's hasher: an argon2id hash of this library is
checked as always; any other hash is checked by ``django.contrib.auth.hashers
.check_password`` (the hashers in ``PASSWORD_HASHERS``), and a match is answered as a hash
that needs a rehash, so the log-in stores an argon2id hash in its place.
"""

from __future__ import annotations

from django.contrib.auth.hashers import check_password, identify_hasher

from kaspi_identity._errors import PasswordMismatchError
from kaspi_identity.hashing import MAX_PASSWORD_LENGTH, PasswordHasher

__all__ = ["DjangoCompatibleHasher"]


class DjangoCompatibleHasher(PasswordHasher):
    """:class:`~kaspi_identity.hashing.PasswordHasher`, plus Django's hashers for old hashes.

    Takes the arguments of :class:`~kaspi_identity.hashing.PasswordHasher`.
    """

    __slots__ = ()

    @staticmethod
    def _is_django_hash(hash: object) -> bool:
        if not isinstance(hash, str) or hash.startswith("$argon2"):
            return False
        try:
            identify_hasher(hash)
        except ValueError:
            return False
        return True

    def verify(self, hash: str, password: str) -> None:
        """Check ``password`` against ``hash``, an argon2id hash or one of Django's hashers.

        Raises:
            PasswordMismatchError: the password does not match.
            InvalidHashError: ``hash`` is neither.
            TypeError: ``password`` is not a ``str``.

        """
        if not self._is_django_hash(hash):
            super().verify(hash, password)
            return
        if not isinstance(password, str):
            raise TypeError(f"password must be str, not {type(password).__name__}")
        # The password as typed: Django hashed it without normalising it.
        if len(password) > MAX_PASSWORD_LENGTH or not check_password(password, hash):
            raise PasswordMismatchError("the password does not match")

    def needs_rehash(self, hash: str) -> bool:
        """Whether ``hash`` should be replaced: always for another hasher's hash."""
        if self._is_django_hash(hash):
            return True
        return super().needs_rehash(hash)

    def verify_and_update(self, hash: str, password: str) -> tuple[bool, str | None]:
        """Verify, and give an argon2id hash for a match made with old parameters or hasher."""
        try:
            self.verify(hash, password)
        except PasswordMismatchError:
            return False, None
        if self.needs_rehash(hash):
            return True, self.hash(password)
        return True, None
