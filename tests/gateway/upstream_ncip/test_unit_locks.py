# -*- test-case-name: tests.gateway.upstream_ncip.test_unit_locks -*-
"""The item locks of the upstream unit of work: one unit at a time changes an LMS item, and a
run that may not have seen the last holder's commit is not allowed to claim without waiting."""

from __future__ import annotations

from gateway.backends.upstream.ncip.unit import ItemLocks, Unit, lock_name


def test_a_free_lock_is_claimed_by_a_run_that_saw_its_last_release() -> None:
    locks = ItemLocks()
    first, second = Unit(locks), Unit(locks)
    first.begin_run()
    second.begin_run()
    assert first.claim("item:A")
    assert not second.claim("item:A")                 # held
    assert second.claim("item:B")                     # another item: no wait
    locks.release_all(first)
    assert not second.claim("item:A")                 # released after second's run began
    second.begin_run()                                # a new run sees first's commit
    assert second.claim("item:A")
    assert locks.held_count() == 2


def test_waiters_get_the_lock_in_turn() -> None:
    locks = ItemLocks()
    holder, waiter, late = Unit(locks), Unit(locks), Unit(locks)
    holder.begin_run()
    assert holder.claim("item:A")
    got: list[str] = []
    locks.acquire("item:A", waiter).addCallback(lambda _: got.append("waiter"))
    locks.acquire("item:A", late).addCallback(lambda _: got.append("late"))
    assert got == []
    locks.release_all(holder)
    assert got == ["waiter"] and "item:A" in waiter.held
    locks.release_all(waiter)
    assert got == ["waiter", "late"]
    locks.release_all(late)
    assert locks.held_count() == 0


def test_many_releases_are_forgotten_safely() -> None:
    locks = ItemLocks()
    locks.KEEP = 3
    runner = Unit(locks)
    runner.begin_run()
    for n in range(5):
        unit = Unit(locks)
        unit.begin_run()
        assert unit.claim(f"item:{n}")
        locks.release_all(unit)
    assert not runner.claim("item:0")    # forgotten, so taken as released after the run began
    runner.begin_run()
    assert runner.claim("item:0")


def test_what_a_change_is_about() -> None:
    assert lock_name("B1", "R1", "U1") == "item:B1"
    assert lock_name(None, "R1", "U1") == "request:R1"
    assert lock_name(None, None, "U1") == "user:U1"
