"""The session warm-up waits for the cores the application will get, not more (spark.cores.max caps them); a master
that does not answer ends a job with one line and exit code 2, before Spark starts."""
import dataclasses
import logging
import os
import socket

import pytest
from unit_support import closed_port

from shopflow.config import Settings
from shopflow.jobs.session import MasterUnreachable, check_master, expected_cores


@pytest.mark.parametrize("master, cores_max, expected", [
    ("spark://127.0.0.1:7077", None, 3), ("spark://127.0.0.1:7077", "2", 2), ("spark://127.0.0.1:7077", "8", 3),
    ("spark://127.0.0.1:7077", "0", 3), ("spark://127.0.0.1:7077", "x", 3), ("local[2]", "2", 1)])
def test_expected_cores(master, cores_max, expected):
    settings = dataclasses.replace(Settings(), SPARK_WORKERS=3, SPARK_WORKER_CORES=1, SPARK_MARTS_CORES=1,
                                   SPARK_STREAMING_CORES=1)
    assert expected_cores(settings, master, cores_max) == expected


def test_check_master_needs_one_master_that_answers():
    closed = closed_port()
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        check_master(f"spark://127.0.0.1:{closed},127.0.0.1:{listening.getsockname()[1]}")  # one answers
    with pytest.raises(MasterUnreachable, match=rf"cannot reach the Spark master at spark://127.0.0.1:{closed} "
                                                rf"\(127.0.0.1:{closed}: \[Errno 111\] Connection refused\); is it "
                                                r"running\? `make status` shows it, `make up` starts it"):
        check_master(f"spark://127.0.0.1:{closed}")
    check_master("local[2]")  # nothing to reach


@pytest.mark.parametrize("job", ["replicate_postgres_to_mysql", "build_marts"])
def test_a_batch_job_ends_with_one_line_when_the_master_is_down(job, monkeypatch, capsys, caplog, recorded_runs):
    import importlib

    from shopflow.config import get_settings

    port = closed_port()
    monkeypatch.setenv("SPARK_MASTER_URL", f"spark://127.0.0.1:{port}")
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    get_settings.cache_clear()
    handlers = logging.root.handlers[:]
    try:
        assert importlib.import_module(f"shopflow.jobs.{job}").main([]) == 2
    finally:
        get_settings.cache_clear()
        logging.root.handlers[:] = handlers
    # one job's logging.basicConfig(force=True) replaces the capturing handler: its lines go to stderr
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] + \
        [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and f"cannot reach the Spark master at spark://127.0.0.1:{port} " in errors[0]
    assert [(r.job, r.status) for r in recorded_runs] == [(job, "failed")]
    assert errors[0].endswith(recorded_runs[0].detail)


def test_a_driver_run_directly_for_a_master_on_this_host_listens_on_loopback_only():
    """`make stream` bound its driver's RPC and block manager to the host's first interface (192.0.2.2 here) and
    its UI to every interface (*:4040): a driver run directly now gets SPARK_LOCAL_IP=127.0.0.1. Its JVM's listening
    sockets, as `ss` shows them while the session runs."""
    import subprocess
    import sys

    code = """
import sys
from shopflow.config import get_settings
from shopflow.jobs.session import build_session
spark = build_session("shopflow-loopback-test", get_settings(), master="local[1]")
print("PID", spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid(), flush=True)
sys.stdin.readline()
spark.stop()
"""
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_LOCAL_IP", "PYSPARK_GATEWAY_PORT")}
    job = subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    try:
        line = job.stdout.readline()
        assert line.startswith("PID "), line
        listening = [fields[3] for fields in (row.split() for row in subprocess.run(
            ["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout.splitlines())
            if f"pid={line.split()[1]}," in fields[-1]]
    finally:
        job.communicate("stop\n", timeout=120)
    assert len(listening) >= 3, listening  # RPC, block manager, UI
    assert all(address.rsplit(":", 1)[0] in ("127.0.0.1", "[::ffff:127.0.0.1]") for address in listening), listening


@pytest.mark.parametrize("master, bound", [("local[2]", True), ("spark://127.0.0.1:7077", True),
                                           ("spark://localhost:7077", True), ("spark://spark-master:7077", False),
                                           ("yarn", False), ("spark://127.0.0.2:7077", True),  # the stack allows it
                                           ("spark://10.0.0.5:7077", False)])
def test_only_a_master_on_this_host_binds_the_driver_to_loopback(monkeypatch, master, bound):
    from shopflow.jobs.session import bind_to_loopback

    monkeypatch.delenv("SPARK_LOCAL_IP", raising=False)
    bind_to_loopback(master)
    assert os.environ.get("SPARK_LOCAL_IP") == ("127.0.0.1" if bound else None)
    monkeypatch.setenv("SPARK_LOCAL_IP", "10.0.0.5")  # the user's own choice stays
    bind_to_loopback(master)
    assert os.environ["SPARK_LOCAL_IP"] == "10.0.0.5"
