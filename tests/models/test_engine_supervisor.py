"""The supervisor's restart arithmetic, without processes: backoff doubling, the crash-loop window."""

from __future__ import annotations

from batchin.models.engine_supervisor import RestartPolicy

POLICY = RestartPolicy(
    base_delay=0.5, max_delay=4.0, crash_loop_crashes=3, crash_loop_window=60.0, crash_loop_delay=30.0
)


def test_the_first_death_waits_the_base_delay() -> None:
    assert POLICY.delay([100.0], now=100.0) == 0.5


def test_each_recent_death_doubles_the_delay() -> None:
    policy = RestartPolicy(base_delay=0.5, max_delay=4.0, crash_loop_crashes=10)
    assert [policy.delay([0.0] * n, now=1.0) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_three_deaths_within_the_window_are_a_crash_loop_with_the_long_delay() -> None:
    crashes = [0.0, 10.0, 59.0]
    assert POLICY.crash_loop(crashes, now=59.0)
    assert POLICY.delay(crashes, now=59.0) == 30.0


def test_deaths_older_than_the_window_are_forgotten() -> None:
    crashes = [0.0, 10.0, 70.0]
    assert not POLICY.crash_loop(crashes, now=70.0)
    assert POLICY.recent(crashes, now=70.0) == [10.0, 70.0]
    assert POLICY.delay(crashes, now=70.0) == 1.0


def test_a_crash_loop_ends_once_its_deaths_leave_the_window() -> None:
    crashes = [0.0, 1.0, 2.0]
    assert POLICY.crash_loop(crashes, now=2.0)
    assert not POLICY.crash_loop(crashes, now=61.5)
