"""`make down`'s sweep for processes of this checkout that outlived supervisord, and who else holds a port."""
import dataclasses
import os
import subprocess
import time

import pytest

from shopflow.config import PROJECT_ROOT
from shopflow.stack import health, processes
from unit_support import unmarked_env


def _retitled_runner(cwd) -> subprocess.Popen:
    """Like an orphaned Airflow task runner: retitled (no project path in its command line), ignores SIGTERM."""
    return subprocess.Popen(["bash", "-c", 'trap "" TERM; exec -a "airflow worker -- 0199-test" sleep 300'],
                            cwd=cwd, start_new_session=True, env=unmarked_env())


def _wait_for_title(process: subprocess.Popen, title: str = "airflow worker") -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{process.pid}/cmdline", "rb") as f:
            if f.read().replace(b"\0", b" ").startswith(title.encode()):
                return
        time.sleep(0.05)
    raise AssertionError("the fake task runner never retitled itself")


def test_a_retitled_airflow_runner_in_the_checkout_is_found_and_killed_despite_ignoring_sigterm(tmp_path):
    ours, elsewhere = _retitled_runner(PROJECT_ROOT), _retitled_runner(tmp_path)
    try:
        _wait_for_title(ours)
        _wait_for_title(elsewhere)
        strays = processes.strays()
        assert ours.pid in strays and elsewhere.pid not in strays
        assert processes.stop([ours.pid], grace_s=1.0) == [ours.pid]  # SIGTERM ignored: SIGKILL
        assert ours.wait(timeout=10) == -9
    finally:
        for process in (ours, elsewhere):
            process.kill()
            process.wait(timeout=10)


def test_strays_carry_the_stacks_mark_a_path_of_the_checkout_in_the_command_line_is_not_enough(tmp_path):
    """`make down` killed the user's `tail -f .local/logs/…` (and editors of the checkout's files): it took any
    process naming a path of the checkout for a leftover of the stack."""
    from shopflow.stack.services import STACK_MARKER

    def sleeper(title: str, mark: str | None) -> subprocess.Popen:
        env = unmarked_env() | ({STACK_MARKER: mark} if mark else {})
        return subprocess.Popen(["bash", "-c", f'exec -a "{title}" sleep 300'], cwd=tmp_path, env=env,
                                start_new_session=True)

    ours = sleeper("java -cp x org.apache.spark.executor.CoarseGrainedExecutorBackend", str(PROJECT_ROOT))
    another = sleeper(f"java -cp {tmp_path}/x Executor", str(tmp_path))  # another checkout's
    users = [sleeper(f"tail -f {PROJECT_ROOT}/.local/logs/postgres.log", None),
             sleeper(f"vim {PROJECT_ROOT}/.env", None)]
    try:
        for process in (ours, another, *users):
            _wait_for_title(process, process.args[-1].split('"')[1])
        strays = processes.strays()
        assert ours.pid in strays
        assert another.pid not in strays and not {u.pid for u in users} & set(strays)
    finally:
        for process in (ours, another, *users):
            process.kill()
            process.wait(timeout=10)


def test_alive_means_running_not_a_zombie_nor_gone():
    """`make down` waits for supervisord's own pid with this (its pid file goes before the process does)."""
    import os

    from shopflow.stack import supervisor

    child = subprocess.Popen(["sleep", "30"])
    try:
        assert supervisor.process_alive(os.getpid()) and supervisor.process_alive(child.pid)
        child.kill()
        deadline = time.monotonic() + 10
        while supervisor.proc_stat(child.pid)[0] != "Z" and time.monotonic() < deadline:  # exited, not reaped
            time.sleep(0.05)
        assert not supervisor.process_alive(child.pid)
    finally:
        child.wait(timeout=10)
    assert supervisor.proc_stat(child.pid) is None and not supervisor.process_alive(child.pid)
    assert not supervisor.process_alive(None)


def _titled(title: str, cwd, parent: bool = False) -> subprocess.Popen:
    """A process whose command line is `title` (a job as `ps` shows it); with `parent`, as the child of a shell."""
    inner = f'exec -a "{title}" sleep 300'
    script = f'({inner}) & wait' if parent else inner
    return subprocess.Popen(["bash", "-c", script], cwd=cwd, start_new_session=True, env=unmarked_env())


def _child_of(parent: subprocess.Popen) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = [pid for pid in processes._pids() if (processes.proc_stat(pid) or [0, 0])[1] == str(parent.pid)]
        if children and processes._cmdline(children[0]).startswith("python "):
            return children[0]
        time.sleep(0.05)
    raise AssertionError("the shell's child never started")


def test_jobs_run_by_hand_in_the_checkout_are_found_but_not_those_under_supervisord(tmp_path):
    """`make down` stops these first, while the servers still run (make stream then ends cleanly)."""
    stream = _titled(".venv/bin/python -m shopflow.jobs.stream_users --continuous", PROJECT_ROOT)
    submitted = _titled("python code/shopflow/jobs/build_marts.py", PROJECT_ROOT)
    elsewhere = _titled(".venv/bin/python -m shopflow.jobs.stream_users --continuous", tmp_path)
    other = _titled(".venv/bin/python -m shopflow.marts.verify", PROJECT_ROOT)
    editor = _titled("vim code/shopflow/jobs/stream_users.py", PROJECT_ROOT)  # a job's file open, not a job
    daemon = _titled("python /x/code/shopflow/jobs/replicate_postgres_to_mysql.py", PROJECT_ROOT, parent=True)
    # another checkout whose path ends with this one's (CI's clone under /ci for /work/main)
    nested = _titled(f"python /ci{PROJECT_ROOT}/code/shopflow/jobs/build_marts.py", tmp_path)
    try:
        for process in (stream, submitted, elsewhere, other, editor, nested):
            _wait_for_title(process, process.args[-1].split('"')[1])
        pids = {"stream": stream.pid, "submitted": submitted.pid, "other": other.pid, "under_daemon": _child_of(daemon)}
        found = processes.jobs_run_by_hand(daemon.pid)
        assert pids["stream"] in found and pids["submitted"] in found
        assert pids["other"] not in found and pids["under_daemon"] not in found  # not a job; supervisord's
        assert editor.pid not in found
        assert elsewhere.pid not in found and nested.pid not in found  # other checkouts'
        assert pids["under_daemon"] in processes.jobs_run_by_hand(None)
    finally:
        for process in (stream, submitted, elsewhere, other, daemon, editor, nested):
            os.killpg(process.pid, 9)
            process.wait(timeout=10)


def test_down_stops_clients_before_their_servers():
    """supervisord lists its programs by name (airflow…, dashboard, …, postgres, spark…); stopping that list
    reversed stopped Postgres before Airflow, whose database it is, and Kafka before eventgen."""
    from shopflow.config import get_settings
    from shopflow.stack.supervisor import stop_order

    running = sorted(["postgres", "mariadb", "kafka", "spark-master", "spark-worker-1", "spark-worker-2",
                      "spark-worker-3", "spark-worker-4", "airflow-api-server", "airflow-scheduler",
                      "airflow-dag-processor", "airflow-triggerer", "eventgen", "dashboard"])
    order = stop_order(dataclasses.replace(get_settings(), SPARK_WORKERS=3), running)
    assert order[0] == "spark-worker-4"  # no longer in the settings (SPARK_WORKERS=3): first
    assert sorted(order) == running
    before = {name: index for index, name in enumerate(order)}
    for client, server in (("airflow-scheduler", "postgres"), ("airflow-api-server", "postgres"),
                           ("eventgen", "kafka"), ("dashboard", "mariadb"), ("spark-worker-1", "spark-master"),
                           ("airflow-scheduler", "spark-master"), ("spark-master", "kafka")):
        assert before[client] < before[server], order


def test_airflow_workers_left_by_a_dead_scheduler_are_found_but_not_those_under_supervisord(tmp_path):
    """`make up` stops them before it starts a scheduler again: they hold the dead one's database transaction."""
    orphan, elsewhere = _retitled_runner(PROJECT_ROOT), _retitled_runner(tmp_path)
    not_a_worker = subprocess.Popen(["bash", "-c", 'exec -a "airflow dags list" sleep 300'], cwd=PROJECT_ROOT)
    try:
        for process in (orphan, elsewhere):
            _wait_for_title(process)
        _wait_for_title(not_a_worker, "airflow dags")
        found = processes.airflow_orphans(daemon=None)
        assert orphan.pid in found and elsewhere.pid not in found and not_a_worker.pid not in found
        assert orphan.pid not in processes.airflow_orphans(daemon=orphan.pid)  # under supervisord: its own
    finally:
        for process in (orphan, elsewhere, not_a_worker):
            process.kill()
            process.wait(timeout=10)


@pytest.mark.parametrize("cgroup, unit", [
    ("0::/system.slice/system-postgresql.slice/postgresql@15-main.service\n", "postgresql@15-main.service"),
    ("0::/system.slice/mariadb.service\n", "mariadb.service"),
    ("12:pids:/system.slice/mariadb.service\n1:name=systemd:/system.slice/mariadb.service\n", "mariadb.service"),
    ("0::/user.slice/user-0.slice/session-3.scope\n", None),  # started by hand in a login session
    ("0::/\n", None),  # a container without systemd (this machine)
])
def test_a_port_holder_run_by_systemd_is_named_by_its_service(tmp_path, cgroup, unit):
    """Debian starts its own postgresql / mariadb services when `make install` adds their packages on a systemd host;
    `make up` then names the service that holds the port, and how to stop it."""
    (tmp_path / "812").mkdir()
    (tmp_path / "812" / "cgroup").write_text(cgroup)
    assert health.system_unit(812, proc=tmp_path) == unit
    assert health.system_unit(813, proc=tmp_path) is None  # gone meanwhile


@pytest.mark.parametrize("name, unit, hint", [
    ("postgres", "postgresql@15-main.service",
     "the system service postgresql@15-main.service: `systemctl disable --now postgresql` stops it for good"),
    ("mariadbd", "mariadb.service", "the system service mariadb.service: `systemctl disable --now mariadb.service` "
                                    "stops it for good"),
    ("docker-proxy", "docker.service", "a Docker container's published port: `docker compose down` if it is this "
                                       "project's compose stack"),  # not the proxy, not Docker: the container
    ("postgres", None, None),  # started by hand
])
def test_a_database_server_run_by_systemd_gets_the_systemctl_hint_docker_proxy_the_container(name, unit, hint):
    assert health.service_hint(name, unit) == hint



HOLD_A_SESSION = """
import time
from pyspark.sql import SparkSession
SparkSession.builder.getOrCreate().range(1).count()
print("ready", flush=True)
time.sleep(300)
"""


def test_a_killed_drivers_spark_dirs_stay_in_the_state_dir_and_down_removes_them(tmp_path, monkeypatch):
    """A driver that `make down` had to kill (a stream's spark-submit under Airflow) never ran its shutdown hooks:
    its spark-*/pyspark-*, userFiles-* dirs stayed in /tmp, ~1.6 MB each, about ten per `make up`/`make down`."""
    import dataclasses
    import signal

    from shopflow.config import get_settings
    from shopflow.stack import manager
    from shopflow.stack.services import VENV_BIN, base_env

    settings = dataclasses.replace(get_settings(), LOCAL_STATE_DIR=str(tmp_path / "state"))
    (script := tmp_path / "hold.py").write_text(HOLD_A_SESSION)
    driver = subprocess.Popen([str(VENV_BIN / "spark-submit"), "--master", "local[1]", "--conf",
                               "spark.ui.enabled=false", str(script)], env=base_env(settings), stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        assert driver.stdout.readline().strip() == "ready"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    left = {p.name.split("-")[0] for p in settings.spark_scratch_dir.glob("spark-*/*")}
    assert {"pyspark", "userFiles"} <= left, sorted(settings.spark_scratch_dir.rglob("*"))
    monkeypatch.setattr(processes, "strays", lambda: [])  # the real checkout's processes are not this test's
    monkeypatch.setattr(processes, "jobs_run_by_hand", lambda daemon: [])
    manager.down(settings)
    assert not settings.spark_scratch_dir.exists()
