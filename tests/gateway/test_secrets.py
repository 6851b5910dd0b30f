# -*- test-case-name: tests.gateway.test_secrets -*-
"""The gateway key file, keys derived from it and sealed values (gateway.secrets).

PIN hashing and the audit log's keyed hash are also exercised in test_identifiers and test_audit;
these tests pin down what the key file and the sealer promise on their own.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gateway.secrets import (
    KEY_BYTES,
    SEALED,
    KeyFileError,
    Sealer,
    derived_key,
    hash_secret,
    read_key_file,
    verify_secret,
    write_key_file,
)

KEY = bytes(range(KEY_BYTES))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_key_file_round_trip_is_private_from_the_start(tmp_path: Path) -> None:
    """A written key reads back unchanged, from a file created mode 0600 in a new directory."""
    path = tmp_path / "keys" / "interlend.sqlite3.key"
    write_key_file(path, KEY)
    assert _mode(path) == 0o600
    assert path.read_text(encoding="ascii") == KEY.hex() + "\n"
    assert read_key_file(path) == KEY


def test_key_file_is_never_overwritten(tmp_path: Path) -> None:
    """Writing a key where a file already exists fails and leaves the old key in place."""
    path = tmp_path / "interlend.sqlite3.key"
    write_key_file(path, KEY)
    with pytest.raises(FileExistsError):
        write_key_file(path, bytes(KEY_BYTES))
    assert read_key_file(path) == KEY


def test_missing_key_file_reads_as_none(tmp_path: Path) -> None:
    """No file is not an error: the caller decides whether to create a key."""
    assert read_key_file(tmp_path / "absent.key") is None


def test_readable_key_file_is_made_private(tmp_path: Path) -> None:
    """A key file others can read (restored from a backup, say) is chmod 0600 when read."""
    path = tmp_path / "interlend.sqlite3.key"
    path.write_text(KEY.hex() + "\n", encoding="ascii")
    path.chmod(0o644)
    assert read_key_file(path) == KEY
    assert _mode(path) == 0o600


@pytest.mark.parametrize("content", ["", "not hex at all", KEY.hex()[:-2], KEY.hex() + "00"])
def test_key_file_with_wrong_content_is_refused(tmp_path: Path, content: str) -> None:
    """Anything but 32 bytes in hex is a KeyFileError naming the file, not a short key."""
    path = tmp_path / "interlend.sqlite3.key"
    path.write_text(content, encoding="ascii")
    with pytest.raises(KeyFileError, match=str(path)):
        read_key_file(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_key_file_is_refused(tmp_path: Path) -> None:
    """A key file the daemon cannot open is a KeyFileError naming the file."""
    path = tmp_path / "interlend.sqlite3.key"
    write_key_file(path, KEY)
    path.chmod(0)
    with pytest.raises(KeyFileError, match=str(path)):
        read_key_file(path)


def test_symlinked_key_file_is_refused(tmp_path: Path) -> None:
    """The key file is opened without following a symlink planted in its place."""
    real = tmp_path / "real.key"
    write_key_file(real, KEY)
    link = tmp_path / "interlend.sqlite3.key"
    link.symlink_to(real)
    with pytest.raises(KeyFileError, match=str(link)):
        read_key_file(link)


def test_derived_keys_differ_by_purpose_and_by_key() -> None:
    """One gateway key gives a stable, different key per purpose, none equal to itself."""
    sealing = derived_key(KEY, "idempotency-replies")
    assert sealing == derived_key(KEY, "idempotency-replies")
    assert len(sealing) == 32 and sealing != KEY
    assert sealing != derived_key(KEY, "something-else")
    assert sealing != derived_key(bytes(KEY_BYTES), "idempotency-replies")


def test_sealed_value_opens_only_with_its_context() -> None:
    """A sealed value opens to the original bytes under its own context and no other."""
    sealer = Sealer(derived_key(KEY, "replies"))
    blob = sealer.seal(b"<NCIPMessage/>", b"peer|LookupUser|key-1")
    assert blob.startswith(SEALED) and b"NCIPMessage" not in blob
    assert sealer.open(blob, b"peer|LookupUser|key-1") == b"<NCIPMessage/>"
    with pytest.raises(ValueError, match="does not match"):
        sealer.open(blob, b"peer|LookupUser|key-2")


def test_sealing_twice_gives_different_blobs() -> None:
    """Each seal draws a fresh nonce, so equal replies do not show as equal blobs."""
    sealer = Sealer(derived_key(KEY, "replies"))
    assert sealer.seal(b"same", b"ctx") != sealer.seal(b"same", b"ctx")


def test_tampered_or_foreign_blobs_do_not_open() -> None:
    """A changed byte, another key, or a value that was never sealed is a ValueError."""
    sealer = Sealer(derived_key(KEY, "replies"))
    blob = sealer.seal(b"reply", b"ctx")
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(ValueError, match="does not match"):
        sealer.open(tampered, b"ctx")
    with pytest.raises(ValueError, match="does not match"):
        Sealer(derived_key(bytes(KEY_BYTES), "replies")).open(blob, b"ctx")
    with pytest.raises(ValueError, match="not a sealed value"):
        sealer.open(b"<NCIPMessage/>", b"ctx")


def test_pin_hash_carries_its_own_parameters() -> None:
    """A hash made with other scrypt parameters still verifies (they are stored with it), and
    a hash of another scheme never does."""
    stored = hash_secret("2468", n=2**10, r=4, p=1)
    assert stored.split("$")[1:4] == ["1024", "4", "1"]
    assert verify_secret("2468", stored)
    assert not verify_secret("2468", "bcrypt" + stored[len("scrypt"):])
