"""Continuous mode (processingTime trigger): events sent while the job runs arrive; SIGTERM stops it cleanly."""
from __future__ import annotations

import signal

import pytest

from test_streaming_support import (assert_exact, kill, make_events, pg_rows, produce, start_job, stream_case,
                                    wait_for)

pytestmark = pytest.mark.integration
__all__ = ["stream_case"]


def _applied(settings) -> int:
    return pg_rows(settings, "SELECT coalesce(sum(next_offset), 0) FROM {s}.stream_offsets")[0][0]


def test_continuous_mode_follows_the_topic_until_terminated(stream_case, tmp_path):
    events, expected_users, malformed = make_events(400)
    produce(stream_case, events[:250])
    job = start_job(stream_case, tmp_path / "job.log", args=("--continuous", "--trigger-seconds", "1"))
    try:
        wait_for(lambda: _applied(stream_case) == 250, 300, "the first 250 events", job)
        produce(stream_case, events[250:])  # while the query runs
        wait_for(lambda: _applied(stream_case) == 400, 120, "the events sent later", job)
        job.send_signal(signal.SIGTERM)
        assert job.wait(timeout=120) == 0, (tmp_path / "job.log").read_text()[-3000:]
    finally:
        kill(job)
    assert_exact(stream_case, events, expected_users, malformed)
    assert "stopped" in (tmp_path / "job.log").read_text()
