# -*- test-case-name: tests.gateway.test_secrets -*-
"""Salted scrypt hashes for PINs and passwords, and keyed hashes for patron ids in the audit log.

A PIN is stored only as ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``; it is never logged or stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1


def hash_secret(secret: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A salted scrypt hash of ``secret`` in a self-describing text form."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_secret(secret: str, stored: str | None) -> bool:
    """True if ``secret`` matches a hash made by :func:`hash_secret`; constant-time compare."""
    if not stored:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(secret.encode("utf-8"), salt=base64.b64decode(salt),
                                n=int(n), r=int(r), p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def keyed_hash(key: bytes, value: str) -> str:
    """A keyed (HMAC-SHA256) hash of a patron id, so audit rows can be correlated, not read."""
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:32]
