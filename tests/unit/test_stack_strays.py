"""`make down`'s sweep for processes of this checkout that outlived supervisord."""
import subprocess
import time

from shopflow.config import PROJECT_ROOT
from shopflow.stack import manager


def _retitled_runner(cwd) -> subprocess.Popen:
    """Like an orphaned Airflow task runner: retitled (no project path in its command line), ignores SIGTERM."""
    return subprocess.Popen(["bash", "-c", 'trap "" TERM; exec -a "airflow worker -- 0199-test" sleep 300'],
                            cwd=cwd, start_new_session=True)


def _wait_for_title(process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{process.pid}/cmdline", "rb") as f:
            if f.read().startswith(b"airflow worker"):
                return
        time.sleep(0.05)
    raise AssertionError("the fake task runner never retitled itself")


def test_a_retitled_airflow_runner_in_the_checkout_is_found_and_killed_despite_ignoring_sigterm(tmp_path):
    ours, elsewhere = _retitled_runner(PROJECT_ROOT), _retitled_runner(tmp_path)
    try:
        _wait_for_title(ours)
        _wait_for_title(elsewhere)
        strays = manager._strays()
        assert ours.pid in strays and elsewhere.pid not in strays
        assert manager.stop_strays([ours.pid], grace_s=1.0) == [ours.pid]  # SIGTERM ignored: SIGKILL
        assert ours.wait(timeout=10) == -9
    finally:
        for process in (ours, elsewhere):
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
