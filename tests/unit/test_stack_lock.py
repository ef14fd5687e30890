"""One stack command at a time per checkout: two `make up` at once started the same servers twice, and the second
reported this checkout's own Postgres as another checkout's (seen with two terminals on a stopped stack)."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import time

import pytest

from shopflow.config import get_settings
from shopflow.stack import lock, manager, supervisor, up

HOLD = """
import dataclasses, sys, time
from shopflow.config import get_settings
from shopflow.stack.lock import exclusive
with exclusive(dataclasses.replace(get_settings(), LOCAL_STATE_DIR=sys.argv[1])):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    print(time.monotonic(), flush=True)  # about to release (CLOCK_MONOTONIC is one clock for all processes)
"""


@pytest.fixture
def settings(tmp_path):
    return dataclasses.replace(get_settings(), LOCAL_STATE_DIR=str(tmp_path / "state"))


def test_a_second_stack_command_waits_for_the_first_and_names_it(settings, capsys):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(settings.state_dir), "2"], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        manager.stop(settings, [])  # takes the lock, then stops nothing
        returned = time.monotonic()
        released = float(holder.stdout.readline())
    finally:
        holder.kill()
        holder.wait()
    assert returned >= released, "the lock was taken while the other command still held it"
    assert f"waiting for `-c {settings.state_dir} 2` (pid {holder.pid}) to end" in capsys.readouterr().out


def test_the_lock_is_reentrant_in_one_process_and_free_afterwards(settings, capsys):
    with lock.exclusive(settings):
        with lock.exclusive(settings):  # `make up` calls ensure under its own lock
            pass
        manager.stop(settings, [])
    other = subprocess.run([sys.executable, "-c", HOLD, str(settings.state_dir), "0"], capture_output=True, text=True,
                           timeout=60)
    assert other.stdout.splitlines()[0] == "held" and "waiting" not in capsys.readouterr().out


@pytest.mark.parametrize("command", [up.up, manager.ensure, manager.stop, manager.down, supervisor.shutdown])
def test_every_command_that_starts_or_stops_services_takes_the_lock(command):
    assert getattr(command, "__wrapped__", None) is not None and command.__code__ is lock.one_at_a_time(
        lambda settings: None).__code__
