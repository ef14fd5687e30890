"""The stream deletes its checkpoint directory whole (`make up` with a fresh broker, `--reset`, `--skip-deleted`, a
checkpoint ahead of Postgres): only when it holds nothing but a checkpoint. STREAMING_CHECKPOINT_DIR=/tmp deleted
every file there."""
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
