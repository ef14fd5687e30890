"""The stream deletes its checkpoint directory whole (`make up` with a fresh broker, `--reset`, `--skip-deleted`, a
checkpoint ahead of Postgres): only when it holds nothing but a checkpoint. STREAMING_CHECKPOINT_DIR=/tmp deleted
every file there."""
import shutil

import pytest

from shopflow.config import load_settings
from shopflow.streaming import query
from shopflow.streaming.offset_log import NotACheckpoint


def _settings(checkpoint):
    return load_settings(env={"STREAMING_CHECKPOINT_DIR": str(checkpoint)}, env_file=None)


def _checkpoint(path):
    """What Spark leaves in a checkpoint (the hidden .crc and .tmp files of its writes included)."""
    for directory in ("offsets", "commits", "sources/0", "state/0"):
        (path / directory).mkdir(parents=True)
    for name in ("metadata", ".metadata.crc", "offsets/0", "offsets/.0.crc", "commits/0", "sources/0/0",
                 ".metadata.9d5c.tmp"):
        (path / name).write_text("v1\n")
    return path


def test_a_checkpoint_is_deleted_whole(tmp_path):
    checkpoint = _checkpoint(tmp_path / "ckpt")
    query._delete_checkpoint(_settings(checkpoint))
    assert not checkpoint.exists()
    query._delete_checkpoint(_settings(checkpoint))  # none there: nothing to do


@pytest.mark.parametrize("foreign", ["postgres", "report.csv", ".X11-unix"])
def test_a_directory_holding_anything_else_is_kept_with_one_line_naming_it(tmp_path, foreign):
    checkpoint = _checkpoint(tmp_path / "ckpt")
    (checkpoint / foreign).mkdir()
    with pytest.raises(NotACheckpoint, match=rf"STREAMING_CHECKPOINT_DIR {checkpoint} holds {foreign}, which no "
                                             "Spark checkpoint holds: not deleted. Give the checkpoint a directory"):
        query._delete_checkpoint(_settings(checkpoint))
    assert sorted(p.name for p in checkpoint.iterdir()) == sorted(
        [".metadata.9d5c.tmp", ".metadata.crc", "commits", "metadata", "offsets", "sources", "state", foreign])


def test_reset_refuses_before_it_forgets_the_positions(tmp_path, monkeypatch):
    (tmp_path / "other.txt").write_text("kept")
    monkeypatch.setattr(query, "ensure_tables", lambda settings: pytest.fail("positions touched"))
    with pytest.raises(NotACheckpoint, match="holds other.txt"):
        query.reset(_settings(tmp_path))
    assert (tmp_path / "other.txt").read_text() == "kept"


def test_skip_deleted_refuses_before_it_moves_any_position(tmp_path, monkeypatch):
    (tmp_path / "other.txt").write_text("kept")
    monkeypatch.setattr(query, "topic_partitions", lambda settings: pytest.fail("the broker asked"))
    with pytest.raises(NotACheckpoint, match="holds other.txt"):
        query.skip_deleted(_settings(tmp_path))


@pytest.mark.parametrize("topics, kept", [({"users-data": 4, "other": 9}, True), ({"other": 9}, False)])
def test_a_checkpoint_of_another_topic_is_deleted_before_the_query_starts(tmp_path, topics, kept):
    """KAFKA_TOPIC changed, or another stream's checkpoint copied in: Spark resumed from the other topic's offsets,
    the batch failed its gap check and every retry the same (exit 2, "the next start resumes from the positions")."""
    import json

    checkpoint = _checkpoint(tmp_path / "ckpt")
    logged = json.dumps({topic: {"0": offset} for topic, offset in topics.items()})
    (checkpoint / "offsets" / "0").write_text(f'v1\n{{"batchWatermarkMs":0}}\n{logged}\n')
    settings = load_settings(env={"STREAMING_CHECKPOINT_DIR": str(checkpoint), "KAFKA_TOPIC": "users-data"},
                             env_file=None)
    query.drop_checkpoint_ahead(settings, {"users-data": {"0": 4}})  # the positions in Postgres
    assert checkpoint.exists() == kept


@pytest.mark.parametrize("damage, found", [
    (None, None), ("offsets/1", "batch 1 committed, not in the offset log"), ("metadata", "its metadata file missing"),
    ("offsets/0", "offsets/0 missing or unreadable, where batch 1 starts")])  # Spark: "batch 0 doesn't exist"
def test_a_checkpoint_spark_would_refuse_without_naming_a_file_is_named_before_the_query(tmp_path, damage, found):
    from shopflow.streaming.offset_log import CheckpointUnreadable, check_readable

    checkpoint = _checkpoint(tmp_path / "ckpt")
    for batch in (0, 1):
        (checkpoint / "offsets" / str(batch)).write_text('v1\n{"batchWatermarkMs":0}\n{"users-data":{"0":4}}\n')
    (checkpoint / "commits" / "1").write_text("v1\n")
    if damage:
        (checkpoint / damage).unlink()
    if found is None:
        check_readable(checkpoint)
        (checkpoint / "offsets" / "1").write_text("")  # cut by hand: Spark writes each entry whole
        found = "offsets/1 unreadable"
    with pytest.raises(CheckpointUnreadable, match=rf"checkpoint {checkpoint} \({found}\): .* \(rm -r {checkpoint}\)"):
        check_readable(checkpoint)


@pytest.mark.parametrize("failure, kind", [
    ("IllegalStateException: Failed to read log file file:{c}/offsets/1. Incomplete log file", "CheckpointUnreadable"),
    ("[STREAMING_CHECKPOINT_MISSING_METADATA_FILE] Checkpoint location file:{c} is in an inconsistent state",
     "CheckpointUnreadable"),
    ("Caused by: org.apache.hadoop.fs.FileAlreadyExistsException: Rename destination file:{c}/.metadata.crc already "
     "exists.", "CheckpointUnreadable"),
    ("org.apache.hadoop.fs.ChecksumException: Checksum error: file:{c}/offsets/3 at 0", "CheckpointUnreadable"),
    ("terminated with exception: File file:{c}/offsets does not exist SQLSTATE: XXKST", "CheckpointDeleted"),
    ("File file:{c}-old/offsets/3 does not exist", None),  # another directory, its name starting as this one's
    ("File file:/elsewhere/offsets does not exist", None), ("java.lang.AssertionError: assertion failed", None)])
def test_sparks_refusals_of_the_checkpoint_are_one_line(tmp_path, failure, kind):
    from shopflow.streaming import offset_log

    checkpoint = _checkpoint(tmp_path / "ckpt")
    if kind == "CheckpointDeleted":
        shutil.rmtree(checkpoint)
    found = offset_log.refused(f"Traceback …\n{failure.format(c=checkpoint)}\n\tat org.apache…", checkpoint)
    assert type(found).__name__ == kind if kind else found is None, found
    if kind == "CheckpointUnreadable":
        line = str(found)
        assert line.startswith(f"Spark cannot resume from the checkpoint {checkpoint} (") and "(rm -r " in line
