"""How a listener's limits are shared out between the processes serving it.

Each serving process enforces its share of a cap, so that all together never admit more than
the configuration allows: the kernel hands connections to processes without regard to their
source address, so a share can refuse a connection the whole cap would still have taken (the
error is on the safe side), and asking the primary for admission instead would put a round
trip on every connection.
"""

from __future__ import annotations


def shared_cap(cap: int, processes: int) -> int:
    """One process's share of a connection cap: at least 1, never more than ``cap`` in all
    (0 stays 0: no cap)."""
    if cap <= 0 or processes <= 1:
        return cap
    return max(1, cap // processes)


def shared_rate(rate: float, processes: int) -> float:
    """One process's share of a per-address connection rate (0: unlimited)."""
    if rate <= 0 or processes <= 1:
        return rate
    return rate / processes
