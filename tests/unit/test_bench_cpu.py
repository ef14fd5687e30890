"""bench/cpu.py: the machine's busy core-seconds in a measure's window, from /proc/stat samples."""
from __future__ import annotations

import os
import time

from bench.cpu import CpuSampler, busy_seconds


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_a_busy_window_counts_at_least_this_process_cpu_and_at_most_every_core():
    with CpuSampler(period_s=0.02) as cpu:
        time.sleep(0.1)
        own, start = time.process_time(), time.time()
        _spin(0.5)
        own, end = time.process_time() - own, time.time()
        used = cpu.core_seconds(start, end)
        described = cpu.describe(start, end)
    assert used is not None
    assert own - 0.05 <= used <= os.cpu_count() * (end - start) + 0.05, (own, used)
    assert described["cpu_core_s"] == round(used, 2)
    assert described["cpu_cores_busy"] == round(used / (end - start), 2) and described["cpu_cores_busy"] >= 0.8


def test_a_window_the_samples_do_not_cover_reports_nothing():
    before = time.time() - 60
    with CpuSampler(period_s=0.02) as cpu:
        time.sleep(0.1)
        assert cpu.core_seconds(before, time.time()) is None
        assert cpu.describe(before, time.time()) == {}
        assert cpu.describe(time.time(), time.time() - 1) == {}  # an empty window


def test_busy_seconds_only_grows():
    first = busy_seconds()
    _spin(0.05)
    assert first is not None and busy_seconds() >= first
