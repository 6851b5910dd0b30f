# -*- test-case-name: tests.gateway.test_secrets -*-
"""Salted scrypt hashes for PINs and passwords, the gateway's own key and what it is used for.

A PIN is stored only as ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``; it is never logged or stored.
The gateway key (32 random bytes) lives in its own file, mode 0600, apart from the database: it
keys the patron-id hashes of the audit log and, through a derived key, seals the exactly-once
replies kept for retries (AES-GCM), so a copy of the database alone reveals neither.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1


def hash_secret(secret: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A salted scrypt hash of ``secret`` in a self-describing text form."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32)
    return (f"scrypt${n}${r}${p}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}")


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


KEY_BYTES = 32


class KeyFileError(Exception):
    """The key file exists but cannot be used (unreadable, wrong content)."""


def read_key_file(path: Path) -> bytes | None:
    """The key in ``path`` (hex text), or None when there is no such file. A file others can
    read is made private (0600) before use."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as e:
        raise KeyFileError(f"{path}: {e.strerror or e}") from None
    with os.fdopen(fd, "r", encoding="ascii") as f:
        if os.fstat(f.fileno()).st_mode & 0o077:
            os.fchmod(f.fileno(), 0o600)
        text = f.read().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise KeyFileError(f"{path}: not a gateway key ({KEY_BYTES} bytes in hex expected)")
    return key


def write_key_file(path: Path, key: bytes) -> None:
    """Create ``path`` holding ``key``, mode 0600 from the start; never overwrite a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key.hex() + "\n")
        f.flush()
        os.fsync(f.fileno())


def derived_key(key: bytes, purpose: str) -> bytes:
    """A key for one purpose, derived from the gateway key (HMAC-SHA256 of the purpose)."""
    return hmac.new(key, b"interlend:" + purpose.encode("utf-8"), hashlib.sha256).digest()


SEALED = b"IE1:"
"""Prefix of a sealed value: version 1, AES-256-GCM, 12-byte nonce, then ciphertext + tag."""


class Sealer:
    """Encrypts and authenticates values bound to a context (e.g. the row they belong to)."""

    def __init__(self, key: bytes) -> None:
        # imported here: only the primary seals (exactly-once replies); a worker process
        # that only hashes patron ids is spared cryptography's libraries (~1.5 MiB private)
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(key)

    def seal(self, data: bytes, context: bytes) -> bytes:
        nonce = os.urandom(12)
        return SEALED + nonce + self._aead.encrypt(nonce, data, context)

    def open(self, blob: bytes, context: bytes) -> bytes:
        """The value sealed for ``context``; raises ValueError if it was not, or was changed."""
        if not blob.startswith(SEALED):
            raise ValueError("not a sealed value")
        nonce = blob[len(SEALED):len(SEALED) + 12]
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(nonce, blob[len(SEALED) + 12:], context)
        except InvalidTag:
            raise ValueError("sealed value does not match its key or context") from None
