"""Spark's offset log in the stream's checkpoint, and what the sink learns from it: a batch's planned range.

offsets/<batch id> is written before the batch runs: a version line, the batch's metadata, then one line per source
with its end offsets, `{topic: {"<partition>": next_offset}}` (both sources write that shape).

A batch reads its whole planned range [start, end) of each partition, but not every offset in it holds a record a
consumer sees: a transactional producer's commit (or abort) marker takes an offset, and an aborted transaction's
events are skipped. Positions taken from the rows alone then stop short of the range's end: the stream's lag never
reaches 0 (every DAG run started Spark to read nothing), and the checkpoint, which resumes at the end, looked ahead of
the positions at every restart. `past_invisible` moves the positions to the planned end where that is safe.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

from shopflow.streaming import kafka_offsets as ko


# What Spark writes at a streaming checkpoint's top level (besides the hidden .crc and .tmp files beside them)
CHECKPOINT_ENTRIES = {"metadata", "offsets", "commits", "sources", "state"}


class NotACheckpoint(RuntimeError):
    """The checkpoint directory holds what no checkpoint does: it is not deleted."""


class CheckpointUnreadable(RuntimeError):
    """Spark refuses the checkpoint, changed outside it (a file truncated, deleted or copied in): every retry fails
    the same way until it is deleted. The positions in Postgres are intact."""


class CheckpointDeleted(RuntimeError):
    """The checkpoint was deleted under the running query: the next run starts from the positions in Postgres."""


_REFUSAL = re.compile(r"[^\n]*(?:Incomplete log file|STREAMING_CHECKPOINT_\w+|already exists|does not exist|"
                      r"Checksum error)[^\n]*")


def refused(failure: str, checkpoint: Path) -> RuntimeError | None:
    """Spark's refusal of `checkpoint` in a failure's text as one line (CheckpointDeleted when the checkpoint is gone);
    None for any other failure."""
    path = re.compile(re.escape(str(checkpoint)) + r"(?=[/\s'\"),.;:]|$)")  # not users-stream-old, not .stopping
    line = next((m.group(0).strip() for m in _REFUSAL.finditer(failure) if path.search(m.group(0))), None)
    if line is None:
        return None
    line = line if len(line) <= 300 else line[:300] + " …"
    if not checkpoint.exists():
        return CheckpointDeleted(f"the checkpoint {checkpoint} was deleted under the running query ({line}); the next "
                                 "run starts from the positions in Postgres")
    return _unreadable(checkpoint, line)


def _unreadable(checkpoint: Path, what: str) -> CheckpointUnreadable:
    return CheckpointUnreadable(f"Spark cannot resume from the checkpoint {checkpoint} ({what}): it was changed "
                                "outside Spark. The positions in Postgres are intact: delete the checkpoint while no "
                                f"stream runs (rm -r {checkpoint}) and the next run goes on from them")


def check_readable(checkpoint: Path) -> None:
    """Raises CheckpointUnreadable for a checkpoint Spark would refuse (its own failure names no file: "assertion
    failed", "batch N doesn't exist"): a committed batch missing from the offset log, the log's last entry
    unreadable (Spark writes each whole, by a rename) or the one before it, where the last starts, logs without the
    metadata file."""
    batches = {log: _batch_ids(checkpoint, log) for log in ("offsets", "commits")}
    if batches["commits"] and max(batches["commits"]) not in batches["offsets"]:
        raise _unreadable(checkpoint, f"batch {max(batches['commits'])} committed, not in the offset log")
    if (latest := max(batches["offsets"], default=None)) is not None and logged(checkpoint, latest) is None:
        raise _unreadable(checkpoint, f"offsets/{latest} unreadable")
    if latest and logged(checkpoint, latest - 1) is None:
        raise _unreadable(checkpoint, f"offsets/{latest - 1} missing or unreadable, where batch {latest} starts")
    if (batches["offsets"] or batches["commits"]) and not (checkpoint / "metadata").exists():
        raise _unreadable(checkpoint, "its metadata file missing")


def check_only_checkpoint(checkpoint: Path) -> None:
    """The stream deletes its checkpoint whole (a reset, a checkpoint ahead of Postgres): a setting pointing at a
    directory of other files (`/tmp`, a server's data directory) would delete them."""
    if foreign := sorted(p.name for p in checkpoint.iterdir() if p.name not in CHECKPOINT_ENTRIES
                         and not (p.name.startswith(".") and p.name.endswith((".crc", ".tmp")))):
        raise NotACheckpoint(f"STREAMING_CHECKPOINT_DIR {checkpoint} holds {', '.join(foreign[:3])}"
                             f"{' …' if len(foreign) > 3 else ''}, which no Spark checkpoint holds: not deleted. Give "
                             "the checkpoint a directory of its own (default .local/checkpoints/users-stream)")


def _batch_ids(checkpoint: Path, log: str) -> list[int]:
    """The batch ids of a log (`offsets`, `commits`): its files named by a number."""
    return [int(path.name) for path in (checkpoint / log).glob("*") if path.name.isdigit()]


def _entry(checkpoint: Path, batch_id: int) -> ko.Offsets:
    """The end offsets the log holds for `batch_id` (OSError, ValueError or IndexError without a readable entry)."""
    return json.loads((checkpoint / "offsets" / str(batch_id)).read_text().splitlines()[2])


def logged(checkpoint: Path, batch_id: int) -> ko.Offsets | None:
    """The end offsets the log holds for `batch_id`, None without a readable entry."""
    try:
        return _entry(checkpoint, batch_id)
    except (OSError, ValueError, IndexError):
        return None


def resumes_at(checkpoint: Path) -> ko.Offsets:
    """Where Spark resumes a query from `checkpoint`: the end offsets of its last committed batch. Before any, Spark's
    Kafka source starts from the offsets it wrote at the query's first start (sources/0/0), at every restart, not from
    the job's startingOffsets; the python source recomputes its start ({})."""
    done = _batch_ids(checkpoint, "commits")
    if done:
        return _entry(checkpoint, max(done))
    initial = checkpoint / "sources" / "0" / "0"
    if not initial.exists():
        return {}
    text = initial.read_bytes().removeprefix(b"\0").decode()  # a zero byte, "v1", the offsets (Spark 2.1.0: no v1)
    version, _, offsets = text.partition("\n")
    return json.loads(offsets if version.startswith("v") else text)


def planned_range(checkpoint: Path, batch_id: int, starting: ko.Offsets) -> tuple[ko.Offsets, ko.Offsets] | None:
    """(start, end) of a batch: its end from the log, its start the previous batch's end, or for a query's first
    batch (0: the query started without a checkpoint) the offsets it started from. None when unknown."""
    end = logged(checkpoint, batch_id)
    start = starting if batch_id == 0 else logged(checkpoint, batch_id - 1)
    return (start, end) if end is not None and start is not None else None


def past_invisible(ends: ko.Offsets, committed: ko.Offsets, planned: tuple[ko.Offsets, ko.Offsets] | None
                   ) -> ko.Offsets:
    """`ends` (per partition, the offset after the batch's last record) moved up to the batch's planned end, also for
    partitions without a record in it. Safe when the planned start is known (not -2, earliest) and at or below the
    position committed before the batch: nothing below the range is unread, and the batch read all of the range."""
    moved = {topic: dict(parts) for topic, parts in ends.items()}
    if planned is None:
        return moved
    start, end = planned
    for topic, parts in end.items():
        for partition, planned_end in parts.items():
            begin, before = start.get(topic, {}).get(partition), committed.get(topic, {}).get(partition)
            reached = moved.get(topic, {}).get(partition, before)
            if begin is None or begin < 0 or (before is not None and before < begin):
                continue
            if reached is None or planned_end > reached:
                moved.setdefault(topic, {})[partition] = int(planned_end)
    return moved


def merged(positions: ko.Offsets, ends: ko.Offsets) -> ko.Offsets:
    """The positions after `ledger.advance` of `ends`: per partition the greater."""
    result = {topic: dict(parts) for topic, parts in positions.items()}
    for topic, parts in ends.items():
        for partition, end in parts.items():
            result.setdefault(topic, {})[partition] = max(end, result.get(topic, {}).get(partition, end))
    return result


class PositionsBehind(ko.KafkaOffsetError):
    """A batch starts above the positions committed in Postgres (Postgres restored, or its schema recreated, while
    the query ran; a checkpoint half deleted): applying it would skip the events between, silently. A restart
    resumes from the positions (`query.drop_checkpoint_ahead`), so a retry mends it."""


def gaps(start: ko.Offsets, committed: ko.Offsets, earliest: Callable[[str, list[int]], dict[int, int]],
         written: ko.Offsets | None = None) -> list[str]:
    """`topic-partition: position < start` for each partition of a batch's planned `start` above its committed
    position; without a position, above the partition's `earliest(topic, partitions)` offset (asked only then).
    `written`: the positions this query's previous batch left; a partition whose position is still that (or still
    none) was read by this query up to `start` (a position short of it: transaction markers of a partition added
    meanwhile, which `past_invisible` cannot move past), so only a changed one is judged."""
    found, unknown = [], {}
    for topic, parts in start.items():
        for partition, begin in parts.items():
            before = committed.get(topic, {}).get(partition)
            if written is not None and before == written.get(topic, {}).get(partition):
                continue
            if before is None:
                if begin > 0:
                    unknown.setdefault(topic, []).append(int(partition))
            elif begin > before:
                found.append(f"{topic}-{partition}: position {before} < {begin}")
    for topic, partitions in unknown.items():
        for partition, first in sorted(earliest(topic, partitions).items()):
            if (begin := start[topic][str(partition)]) > first:
                found.append(f"{topic}-{partition}: no position, earliest offset {first} < {begin}")
    return found
