"""Who holds a port the stack wants: a server of this checkout left without its supervisord, another stack's server
that took the port while ours started (no server needed)."""
import os
import socket
import subprocess
import time

import pytest

from shopflow.config import PROJECT_ROOT
from shopflow.stack import health
from unit_support import unmarked_env


def _marked_listener(port: int) -> subprocess.Popen:
    """Like a server the stack started, left under init when its supervisord was killed: marked, listening."""
    from shopflow.stack.services import STACK_MARKER

    code = ("import socket, time\ns = socket.socket()\ns.bind(('127.0.0.1', %d))\ns.listen()\ntime.sleep(300)" % port)
    return subprocess.Popen(["python3", "-c", code], env=unmarked_env() | {STACK_MARKER: str(PROJECT_ROOT)},
                            start_new_session=True)


def test_a_port_held_by_this_checkouts_server_left_without_supervisord_says_make_down(tmp_path, capsys):
    """Seen after `kill -9` of supervisord: `make up` said the port was held by a process "not this checkout's stack"
    (stop it or move the port: a second server on the same data directory), and `make status` "not started"."""
    import dataclasses

    from shopflow.config import get_settings
    from shopflow.stack import __main__ as cli
    from shopflow.stack import manager
    from shopflow.stack.services import Service

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = _marked_listener(port)
    try:
        deadline = time.monotonic() + 10
        while not health.port_open(port):
            assert time.monotonic() < deadline and server.poll() is None, "the listener did not start"
            time.sleep(0.05)
        with pytest.raises(manager.StackError, match=rf"port {port} is held by python3 \(pid {server.pid}\), which "
                                                     r"this checkout's stack started.*`make down` stops"):
            manager._check_ports([Service("postgres", [], (port,), "postgres", ("POSTGRES_PORT",))])
        cli.status(dataclasses.replace(get_settings(), LOCAL_STATE_DIR=str(tmp_path)))  # no supervisord there
        assert "stack run without their supervisord (killed, or it crashed): " in capsys.readouterr().out
    finally:
        server.kill()
        server.wait(timeout=10)


def test_a_port_another_process_took_while_ours_started_fails_the_start(tmp_path):
    """Two stacks starting at once: the other's server took the port between our port check and our start, answered
    our probe, and `make up` said "shopflow is up" while our server had exited."""
    import dataclasses

    from shopflow.config import get_settings
    from shopflow.stack import manager, supervisor
    from shopflow.stack.services import Service

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = f"import socket, time\ns = socket.socket()\ns.bind(('127.0.0.1', {port}))\ns.listen()\ntime.sleep(60)"
    subprocess.run(["setsid", "-f", "python3", "-c", code], check=True)  # not a descendant of ours
    settings = dataclasses.replace(get_settings(), LOCAL_STATE_DIR=str(tmp_path))
    pid_file = supervisor.paths(settings)["pid"]
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text(str(os.getpid()))  # this process stands for our supervisord
    service = Service("kafka", [], (port,), "kafka")
    deadline = time.monotonic() + 10
    while (holder := health.port_holder(port)) is None:
        assert time.monotonic() < deadline, "the listener did not start"
        time.sleep(0.05)
    try:
        with pytest.raises(manager.StackError, match=rf"kafka: port {port} is held by python3 \(pid {holder[1]}\), "
                                                     r"which took it while this stack started kafka; its log: "):
            manager._check_holders(settings, [service])
    finally:
        os.kill(holder[1], 9)
    ours = _marked_listener(port)  # a child of this process: ours
    try:
        while health.port_holder(port) is None:
            assert time.monotonic() < deadline + 10, "our listener did not start"
            time.sleep(0.05)
        manager._check_holders(settings, [service])
    finally:
        ours.kill()
        ours.wait(timeout=10)
