"""The whole machine's CPU while a measure runs: how close it came to the machine's limit, beside its seconds.

A background thread samples the busy time of all cores from /proc/stat (user, nice, system, irq, softirq, steal;
not idle or iowait) every `PERIOD_S`. A measure that knows the wall-clock window of its timed part gets
`cpu_core_s` (core-seconds the machine spent in that window: every process, the servers and Spark included) and
`cpu_cores_busy` (their average over the window: 2.0 = both cores of this machine busy all the time). Without
/proc/stat (not Linux) nothing is reported.
"""
from __future__ import annotations

import bisect
import os
import threading
import time

PERIOD_S = 0.05
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float | None:
    """CPU time all cores spent busy since boot; None without /proc/stat."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields + [0] * (8 - len(fields))
    return (user + nice + system + irq + softirq + steal) / TICKS_PER_S


class CpuSampler:
    """`with CpuSampler() as cpu: ... cpu.core_seconds(start, end)` (epoch seconds, `time.time()`)."""

    def __init__(self, period_s: float = PERIOD_S):
        self.period_s = period_s
        self.samples: list[tuple[float, float]] = []  # (time.time(), busy seconds), appended as one item
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-cpu", daemon=True)

    def __enter__(self) -> "CpuSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while (busy := busy_seconds()) is not None:
            self.samples.append((time.time(), busy))
            if self._stop.wait(self.period_s):
                return

    def _busy_at(self, moment: float) -> float | None:
        """Busy seconds at `moment`, interpolated between the samples around it."""
        count = len(self.samples)  # the sampler only appends: the first `count` stay as they are
        after = bisect.bisect_left(self.samples, moment, hi=count, key=lambda sample: sample[0])
        if after == 0 or after >= count:
            return None
        (t0, b0), (t1, b1) = self.samples[after - 1], self.samples[after]
        return b0 + (b1 - b0) * (moment - t0) / (t1 - t0) if t1 > t0 else b1

    def core_seconds(self, start: float, end: float) -> float | None:
        """Core-seconds the machine was busy between `start` and `end`; None when the samples do not cover them."""
        deadline = time.time() + 10 * self.period_s
        while self._thread.is_alive() and (not self.samples or self.samples[-1][0] <= end) and time.time() < deadline:
            time.sleep(self.period_s)
        first, last = self._busy_at(start), self._busy_at(end)
        return None if first is None or last is None else max(0.0, last - first)

    def describe(self, start: float, end: float) -> dict:
        """The measure's `cpu_core_s` and `cpu_cores_busy`, or nothing."""
        used = self.core_seconds(start, end) if end > start else None
        if used is None:
            return {}
        return {"cpu_core_s": round(used, 2), "cpu_cores_busy": round(used / (end - start), 2)}
