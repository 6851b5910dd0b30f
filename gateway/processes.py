# -*- test-case-name: tests.gateway.test_workers,tests.gateway.test_import_parallel -*-
"""Child processes that end with their parent: the daemon's workers, the importer's decoders."""

from __future__ import annotations

import ctypes
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: signal.Signals) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies; False where it
    cannot (not Linux): the caller then watches the parent some other way."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False
