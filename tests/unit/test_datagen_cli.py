"""The generator CLIs' contract without servers: one-line errors, exit codes 2 (bad input) and 1 (unreachable)."""
from __future__ import annotations

import socket

import pytest

from datagen import events, postgres


def _exit_code_and_stderr(main, argv, capsys) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    return exited.value.code, capsys.readouterr().err.splitlines()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("main, argv, named", [
    (postgres.main, ["--scale", "0"], "--scale"),
    (postgres.main, ["--scale", "lots"], "--scale"),
    (postgres.main, ["--seed", "-1"], "--seed"),
    (postgres.main, ["--sede", "1"], "--sede"),
    (events.main, ["--bad-fraction", "1.5"], "--bad-fraction"),
    (events.main, ["--rate", "0"], "--rate"),
    (events.main, ["--count", "x"], "--count"),
    (events.main, ["--rate", "5e-324"], "the slowest pace"),  # ran: "one event every inf s", then time_t overflow
    (events.main, ["--interval", "1e10"], "the slowest pace"),
    (events.main, ["--rate", "5", "--interval", "2"], "not allowed with argument"),  # --interval was ignored
])
def test_a_bad_argument_is_one_line_naming_it_and_exit_2(capsys, main, argv, named):
    code, lines = _exit_code_and_stderr(main, argv, capsys)
    assert code == 2 and len(lines) == 1
    assert named in lines[0] and "error" in lines[0]


@pytest.mark.parametrize("main", [postgres.main, events.main])
def test_a_bad_setting_is_one_line_naming_the_key_and_exit_2(capsys, monkeypatch, main):
    monkeypatch.setenv("DATAGEN_USERS", "many")
    code, lines = _exit_code_and_stderr(main, ["--count", "1"] if main is events.main else [], capsys)
    assert code == 2 and len(lines) == 1 and "DATAGEN_USERS" in lines[0]


def test_unreachable_postgres_is_one_line_and_exit_1(capsys, monkeypatch):
    port = _free_port()
    monkeypatch.setenv("POSTGRES_HOST", "127.0.0.1")
    monkeypatch.setenv("POSTGRES_PORT", str(port))
    code, lines = _exit_code_and_stderr(postgres.main, [], capsys)
    assert code == 1 and len(lines) == 1
    assert f"cannot reach Postgres at 127.0.0.1:{port}" in lines[0]


def test_help_documents_skip_and_reset(capsys):
    with pytest.raises(SystemExit) as exited:
        postgres.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert exited.value.code == 0
    assert "--reset" in text and "Skips (exit 0) when the source tables already hold data" in text


def test_ctrl_c_is_one_line_saying_nothing_was_loaded(capsys, monkeypatch):
    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(postgres, "load", interrupted)
    with pytest.raises(SystemExit) as ended:
        postgres.main([])
    assert ended.value.code == 130  # was a traceback
    assert capsys.readouterr().err == ("datagen.postgres: error: interrupted: nothing was loaded (the load is one "
                                       "transaction)\n")


@pytest.mark.parametrize("stall, expected", [
    (1.3, [0, 1.3, 1.5, 1.7, 1.9, 2.1, 2.3, 2.5, 2.7, 2.9]),  # the missed second skipped, then one per interval
    (0.5, [0, 0.5, 0.5, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8])])  # the lag made up, so the schedule stays
def test_after_a_long_stall_the_events_go_on_one_per_interval_a_short_one_is_made_up(monkeypatch, stall, expected):
    """The schedule counted from the start: after sends slower than the interval (a broker down, each send waiting
    out its timeout), every missed event went out back to back. A lag of a second or more is now skipped; a shorter
    one (a busy machine in a burst) is still made up, so a burst keeps its rate. On a clock of the test's own (the
    sleeps advance it), so the times are exact whatever the machine's load."""
    import random
    from types import SimpleNamespace

    from datagen.event_model import EventMix
    from datagen.pools import build_pools
    from shopflow.config import get_settings

    now, sent = [0.0], []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    class StallingSender:
        failed = 0

        def __init__(self, *_args):
            pass

        def send(self, _payload, _kind):
            sent.append(round(now[0], 6))
            if len(sent) == 1:
                sleep(stall)

        def close(self):
            pass

    monkeypatch.setattr(events, "time", SimpleNamespace(monotonic=lambda: now[0], sleep=sleep))
    monkeypatch.setattr(events, "_LoggedSender", StallingSender)
    mix = EventMix(random.Random(1), build_pools(1))
    events.produce(get_settings(), mix, count=10, interval=0.2, log_each=True, say=lambda _line: None)
    assert events.CATCH_UP_S == 1.0 and sent == expected


def test_ctrl_c_while_the_event_generator_connects_is_one_line(monkeypatch, capsys):
    """Connecting (the topic, the producer) takes up to 10 s with the broker slow or down: a Ctrl-C then gave a
    traceback."""
    def connecting(_settings):
        raise KeyboardInterrupt

    monkeypatch.setattr(events, "ensure_topic", connecting)
    monkeypatch.setattr(events, "_stop_on_sigterm", lambda: None)  # pytest's own SIGTERM handler stays
    with pytest.raises(SystemExit) as ended:
        events.main(["--count", "1"])
    assert ended.value.code == 130 and capsys.readouterr().err == "datagen.events: error: interrupted\n"


def test_a_burst_and_a_long_table_load_say_how_far_they_got_every_30_s(monkeypatch):
    """A burst (--rate) logs no event, and a big scale's order_details loads for minutes: both printed nothing."""
    import random
    from types import SimpleNamespace

    from datagen.event_model import EventMix
    from datagen.pools import build_pools
    from postgresdb.models import TABLES_BY_NAME
    from shopflow.config import get_settings

    now, lines = [0.0], []

    class Sender:
        failed = 0

        def __init__(self, *_args):
            pass

        def send(self, _payload, _kind):
            now[0] += 1.0

        def close(self):
            pass

    clock = SimpleNamespace(monotonic=lambda: now[0], sleep=lambda seconds: None)
    monkeypatch.setattr(events, "time", clock)
    monkeypatch.setattr(events, "_BurstSender", Sender)
    events.produce(get_settings(), EventMix(random.Random(1), build_pools(1)), count=100, interval=0.001,
                   say=lines.append)
    assert lines == [f"datagen.events: sent {n} events in {n} s (1/s of the 1,000/s asked), 0 failed so far"
                     for n in (30, 60, 90)]  # a rate not met, and failures, said as they happen (only at the end)

    def chunks():
        for _ in range(70):
            now[0] += 1.0
            counter[0] += 1_000
            yield b"x"

    now[0], counter, lines = 0.0, [0], []
    monkeypatch.setattr(postgres, "time", clock)
    assert len(list(postgres._progress(chunks(), TABLES_BY_NAME["order_details"], counter, lines.append, 0.0))) == 70
    assert lines == ["  order_details             30,000 rows so far     30.0 s",
                     "  order_details             60,000 rows so far     60.0 s"]


def test_a_burst_event_the_producer_refuses_at_once_is_counted_failed_not_a_traceback():
    """librdkafka raises KafkaException from produce() in a fatal state (an idempotent producer a broker restarted
    empty fenced): the run ended in a traceback, its summary lost."""
    from confluent_kafka import KafkaException

    class Fenced:
        def produce(self, *_args, **_kwargs):
            raise KafkaException("Fatal error: producer fenced")

        def poll(self, _timeout):
            return 0

    sender = object.__new__(events._BurstSender)
    sender.topic, sender.failed, sender.producer = "users-data", 0, Fenced()
    sender.send(b'{"email": "a@b.c"}', "new")
    sender.send(b'{"email": "d@e.f"}', "new")
    assert sender.failed == 2


def test_a_long_load_says_when_it_checks_its_foreign_keys():
    """After a big table's last "rows so far" line, the validating joins of its foreign keys ran without a word."""
    import time

    from postgresdb.models import TABLES_BY_NAME

    class Cursor:
        def __init__(self):
            self.statements = []

        def execute(self, statement, *_params):
            self.statements.append(statement)

        def fetchall(self):
            return [("fk_a", "FOREIGN KEY (order_id) REFERENCES s.orders(order_id)")]

    lines, cur, table = [], Cursor(), TABLES_BY_NAME["order_details"]
    with postgres._foreign_keys_deferred(cur, "s", table, lines.append, time.monotonic() - postgres.PROGRESS_S):
        pass
    assert lines == ["  order_details       checking 1 foreign key(s) over the loaded rows"]
    with postgres._foreign_keys_deferred(cur, "s", table, lines.append, time.monotonic()):  # a short load: quiet
        pass
    assert len(lines) == 1 and cur.statements[-1].startswith('ALTER TABLE s.order_details ADD CONSTRAINT "fk_a"')
