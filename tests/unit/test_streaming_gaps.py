"""A batch that starts above the positions in Postgres is refused (offset_log.gaps), and the job's failure says so in
one line (exit 2: the restart mends it)."""
import pytest

from shopflow.streaming.offset_log import PositionsBehind, gaps, merged

T = "users-data"


def _no_broker(topic, partitions):
    pytest.fail(f"the broker was asked for {partitions}")


@pytest.mark.parametrize("start, committed", [
    ({T: {"0": 900, "1": 5}}, {T: {"0": 900, "1": 7}}),  # the next batch, or a replay of one already applied
    ({T: {"0": 0}}, {}),  # the first batch of a new topic: no position, nothing below it
    ({}, {T: {"0": 3}}),
])
def test_a_batch_at_or_below_the_positions_has_no_gap(start, committed):
    assert gaps(start, committed, _no_broker) == []


def test_a_batch_above_a_position_is_a_gap():
    assert gaps({T: {"0": 900, "1": 950}}, {T: {"0": 412, "1": 950}}, _no_broker) == [f"{T}-0: position 412 < 900"]


def test_without_a_position_the_broker_says_where_the_partition_begins():
    asked = []

    def earliest(topic, partitions):
        asked.append((topic, partitions))
        return {1: 40, 2: 0}

    found = gaps({T: {"0": 0, "1": 40, "2": 17}}, {}, earliest)
    assert found == [f"{T}-2: no position, earliest offset 0 < 17"]  # 1 begins at 40 (retention): no gap
    assert asked == [(T, [1, 2])]


def test_within_a_query_only_a_position_changed_since_its_last_batch_is_judged():
    """A partition added meanwhile whose first range held only transaction markers keeps no position (or one short
    of the range's end): this query read it all the same, and it was refused as a gap (a failed run, a message
    blaming a restore). A position that differs from what the query wrote was changed by someone else: judged."""
    assert gaps({T: {"0": 950, "3": 17}}, {T: {"0": 950}}, _no_broker, written={T: {"0": 950}}) == []
    assert gaps({T: {"0": 950, "3": 17}}, {T: {"0": 950, "3": 12}}, _no_broker, written={T: {"0": 950, "3": 12}}) == []
    assert gaps({T: {"0": 950}}, {T: {"0": 412}}, _no_broker, written={T: {"0": 950}}) == [f"{T}-0: position 412 < 950"]
    assert gaps({T: {"0": 950}}, {}, lambda topic, parts: {0: 0}, written={T: {"0": 950}}) == [
        f"{T}-0: no position, earliest offset 0 < 950"]  # the schema recreated under the query


def test_the_positions_after_a_batch_keep_the_greater_of_each():
    assert merged({T: {"0": 5, "1": 9}}, {T: {"1": 7, "2": 3}}) == {T: {"0": 5, "1": 9, "2": 3}}


def test_the_jobs_failure_names_it_in_one_line():
    from shopflow.jobs.stream_users import _gone
    from shopflow.config import load_settings

    relayed = ("An exception was raised by the Python Proxy...\nTraceback (most recent call last):\n  File ...\n"
               "shopflow.streaming.offset_log.PositionsBehind: batch 4 starts above the stream's positions\n  ...")
    gone = _gone(relayed, load_settings(env={}, env_file=None))
    assert isinstance(gone, PositionsBehind) and str(gone) == "batch 4 starts above the stream's positions"
