"""Room passwords: kept only as a salted scrypt hash, compared in constant time.

Hashing is deliberately slow (tens of milliseconds), so the shell runs :func:`hash_password` in a
worker thread and hands the core finished hashes; the salt is the shell's randomness, not ours.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

__all__ = ["PasswordHash", "hash_password", "SALT_BYTES"]

SALT_BYTES = 16
# scrypt cost: n=2**14, r=8 uses 16 MiB and ~40 ms per guess here; the per-connection rate limit and
# the 128-bit room id in front of it make online guessing hopeless.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32, "maxmem": 64 * 1024 * 1024}


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """A salted scrypt digest of a room password."""

    salt: bytes
    digest: bytes

    def matches(self, other: PasswordHash) -> bool:
        """True if ``other`` is the same password hashed with the same salt (constant time)."""
        return self.salt == other.salt and hmac.compare_digest(self.digest, other.digest)

    def __repr__(self) -> str:  # never print digests into logs or tracebacks
        return "PasswordHash(<redacted>)"


def hash_password(password: str, salt: bytes) -> PasswordHash:
    """Hash a password with a given salt (pure, CPU-heavy: call from a thread)."""
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return PasswordHash(salt, digest)
