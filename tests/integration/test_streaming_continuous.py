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


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_continuous_mode_follows_the_topic_until_terminated(stream_case, tmp_path, signum):
    events, expected_users, malformed = make_events(400)
    produce(stream_case, events[:250])
    job = start_job(stream_case, tmp_path / "job.log", args=("--continuous", "--trigger-seconds", "1"))
    try:
        wait_for(lambda: _applied(stream_case) == 250, 300, "the first 250 events", job)
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
