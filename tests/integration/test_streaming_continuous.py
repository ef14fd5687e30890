"""Continuous mode (processingTime trigger): events sent while the job runs arrive; SIGTERM (`kill`) and SIGINT
(Ctrl-C, which PySpark's SparkContext takes over for itself) stop it cleanly."""
from __future__ import annotations

import os
import signal

import pytest

from test_streaming_support import (assert_exact, kill, make_events, pg_rows, produce, start_job, stream_case,
                                    wait_for)

pytestmark = pytest.mark.integration
__all__ = ["stream_case"]


def _applied(settings) -> int:
    return pg_rows(settings, "SELECT coalesce(sum(next_offset), 0) FROM {s}.stream_offsets")[0][0]


def _second_job_is_refused(settings, tmp_path) -> None:
    """Beside a running query, a second continuous one and --reset exit 1 naming it, before any Spark starts (they
    would fail on the checkpoint with CONCURRENT_STREAM_LOG_UPDATE, and --reset would delete it under the query)."""
    for args in (("--continuous",), ("--reset",)):
        log_path = tmp_path / f"second{args[0]}.log"
        second = start_job(settings, log_path, args=args)
        try:
            assert second.wait(timeout=120) == 1, log_path.read_text()[-3000:]
        finally:
            kill(second)
        log = log_path.read_text()
        assert "stream_users continuous (pid" in log and "Stop it" in log and "SparkContext" not in log, log[-3000:]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_continuous_mode_follows_the_topic_until_terminated(stream_case, tmp_path, signum):
    events, expected_users, malformed = make_events(400)
    produce(stream_case, events[:250])
    job = start_job(stream_case, tmp_path / "job.log", args=("--continuous", "--trigger-seconds", "1"))
    try:
        wait_for(lambda: _applied(stream_case) == 250, 300, "the first 250 events", job)
        _second_job_is_refused(stream_case, tmp_path)
        produce(stream_case, events[250:])  # while the query runs
        wait_for(lambda: _applied(stream_case) == 400, 120, "the events sent later", job)
        if signum == signal.SIGINT:  # Ctrl-C: the terminal signals the whole foreground process group
            os.killpg(job.pid, signum)
        else:
            job.send_signal(signum)
        assert job.wait(timeout=120) == 0, (tmp_path / "job.log").read_text()[-3000:]
    finally:
        kill(job)
    assert_exact(stream_case, events, expected_users, malformed)
    log = (tmp_path / "job.log").read_text()
    assert "stopped" in log and "Traceback" not in log, log[-3000:]
