"""After `make up` started the broker. tansu keeps topics in memory, so a broker started just now is empty and the
stream's committed positions are void (`after_fresh_broker`). A mark is written before the broker starts and removed
once that is done: a `make up` stopped between the two (Ctrl-C in the wait for a running stream query, a broker slow
to be ready) left the broker running with the old positions, the next `make up` saw it running and did nothing, and
every stream run failed (exit 3) until `stream_users --reset` by hand. Now the next `make up` does it."""
from __future__ import annotations

from shopflow.config import Settings

STREAM_END_WAIT_S = 45  # after `make up` started an empty broker, for a stream query to end (it does within ~15 s)


def starting(settings: Settings) -> None:
    """Before the broker starts: its positions are to be forgotten once it runs."""
    settings.fresh_broker_mark.parent.mkdir(parents=True, exist_ok=True)
    settings.fresh_broker_mark.touch()


def after_start(settings: Settings, running: set[str], fresh: bool) -> None:
    """`fresh`: this `make up` started the broker; else only a mark left by one stopped half-way counts, unless the
    stream has committed on the running broker's topic since (its id recorded beside the positions): those are
    valid. The mark stays while the positions could not be looked at or were kept (a query holding them)."""
    mark = settings.fresh_broker_mark
    if not (fresh or mark.exists()):
        return
    if not fresh and "postgres" in running and _recorded_for_running_broker(settings):
        mark.unlink(missing_ok=True)
    elif after_fresh_broker(settings, running):
        mark.unlink(missing_ok=True)


def _recorded_for_running_broker(settings: Settings) -> bool:
    from shopflow.db import pg_connection
    from shopflow.streaming import ledger, topic_identity
    from shopflow.streaming.kafka_offsets import BrokerUnreachable, OffsetsWentBack
    from shopflow.streaming.sink import STREAM

    try:
        now = topic_identity.current(settings.KAFKA_BOOTSTRAP_SERVERS, settings.KAFKA_TOPIC)
    except (BrokerUnreachable, OffsetsWentBack):  # no answer, or no such topic yet
        return False
    with pg_connection(settings) as conn, conn.cursor() as cur:
        return now is not None and ledger.topic_id(cur, settings.POSTGRES_SCHEMA, STREAM, settings.KAFKA_TOPIC) == now


def _say(line: str) -> None:
    print(f"  {line}", flush=True)


def after_fresh_broker(settings: Settings, running: set[str], wait_s: float = STREAM_END_WAIT_S) -> bool:
    """tansu keeps topics in memory: a broker started just now holds no topics, so stream positions committed against
    the previous broker's topics are void. Forget them (and the checkpoint) so the stream starts over, and create the
    topic with KAFKA_TOPIC_PARTITIONS partitions before a producer's first send creates it with the broker's count
    (a running eventgen carries on by itself: after a failed send it starts over with a new producer). The reset
    takes the checkpoint's lock like `stream_users --reset`: a stream query still running (it ends by itself once it
    finds the broker gone or empty) is waited for up to `wait_s`, never reset under. False: the positions are still
    there (Postgres not running, or a query holding them)."""
    from datagen.events import ensure_topic

    ensure_topic(settings)
    if "postgres" not in running:
        return False
    from shopflow.streaming import checkpoint_lock
    from shopflow.streaming.offset_log import NotACheckpoint
    from shopflow.streaming.query import reset

    try:
        with checkpoint_lock.holding(settings, checkpoint_lock.RESET, reset_wait_s=wait_s, say=_say):
            removed = reset(settings)
    except (checkpoint_lock.CheckpointBusy, NotACheckpoint) as kept:
        print(f"  note: the broker started empty, but the stream's committed positions were kept: {kept} "
              "Once that is resolved: .venv/bin/python -m shopflow.jobs.stream_users --reset (or `make up` again)",
              flush=True)
        return False
    if removed:
        print(f"  the broker started empty (memory storage): forgot {removed} committed stream position(s)", flush=True)
    return True
