"""The stream's validation agrees with the event generator's reference check on every event kind it makes."""
from __future__ import annotations

import random
from datetime import datetime, timezone

from datagen import event_model, pools
from shopflow.streaming import events as ev


def test_valid_exactly_when_the_generator_says_so(spark):
    rng, now = random.Random(5), datetime(2025, 6, 1, tzinfo=timezone.utc)
    mix = event_model.EventMix(rng, pools.build_pools(5), bad_fraction=0.4, duplicate_fraction=0.3)
    payloads = [mix.next_event(now)[0] for _ in range(300)]
    kinds = [event_model.validate_event(p) for p in payloads]
    assert set(kinds) == {None, *event_model.BAD_KINDS}  # every bad kind is exercised

    rows = [(None, p, "t", 0, i, now) for i, p in enumerate(payloads)]
    frame = spark.createDataFrame(rows, "key binary, value binary, topic string, partition int, offset bigint, "
                                        "timestamp timestamp")
    validated = frame.transform(ev.parse_events).transform(ev.validate_events).select("offset", "reason").collect()
    ours = {row.offset: row.reason is None for row in sorted(validated)}
    assert ours == {i: kind is None for i, kind in enumerate(kinds)}
