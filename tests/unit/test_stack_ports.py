"""Who holds a port the stack wants: a server of this checkout left without its supervisord, another stack's server
that took the port while ours started (no server needed)."""
import os
import subprocess
import time

import pytest

from shopflow.config import PROJECT_ROOT
from shopflow.stack import health
from unit_support import closed_port, unmarked_env


def _listen_code(host: str, port: int) -> str:
    return f"import socket, time\ns = socket.socket()\ns.bind(('{host}', {port}))\ns.listen()\ntime.sleep(60)"


def _listener(host: str, port: int, marked: bool = False, checkout=PROJECT_ROOT) -> subprocess.Popen:
    """A process listening on host:port; `marked`: like a server the stack in `checkout` started (left under init
    when its supervisord was killed)."""
    from shopflow.stack.services import STACK_MARKER

    env = unmarked_env() | ({STACK_MARKER: str(checkout)} if marked else {})
    return subprocess.Popen(["python3", "-c", _listen_code(host, port)], env=env, start_new_session=True)


def _wait_listening(host: str, port: int) -> None:
    deadline = time.monotonic() + 10
    while not health.port_open(port, host):
        assert time.monotonic() < deadline, f"nothing listens on {host}:{port}"
        time.sleep(0.05)


def test_a_port_held_by_this_checkouts_server_left_without_supervisord_says_make_down(tmp_path, capsys):
    """Seen after `kill -9` of supervisord: `make up` said the port was held by a process "not this checkout's stack"
    (stop it or move the port: a second server on the same data directory), and `make status` "not started"."""
    import dataclasses

    from shopflow.config import get_settings
    from shopflow.stack import __main__ as cli
    from shopflow.stack import manager
    from shopflow.stack.services import Service

    port = closed_port()
    server = _listener("127.0.0.1", port, marked=True)
    try:
        _wait_listening("127.0.0.1", port)
        with pytest.raises(manager.StackError, match=rf"port {port} is held by python3 \(pid {server.pid}\), which "
                                                     r"this checkout's stack started.*`make down` stops"):
            manager._check_ports([Service("postgres", [], (port,), "postgres", ("POSTGRES_PORT",))])
        cli.status(dataclasses.replace(get_settings(), LOCAL_STATE_DIR=str(tmp_path)))  # no supervisord there
        assert "stack run without their supervisord (killed, or it crashed): " in capsys.readouterr().out
    finally:
        server.kill()
        server.wait(timeout=10)


def test_a_port_held_by_another_checkouts_server_left_without_supervisord_names_that_checkout():
    """Seen as a CI runner's job: its stack's Postgres, left under init, ran in the runner's systemd unit, and the
    hint was `systemctl disable --now gitlab-runner.service` (the unit is no database's: no systemctl hint now)."""
    port = closed_port()
    server = _listener("127.0.0.1", port, marked=True, checkout="/srv/ci-build/shopflow")
    try:
        _wait_listening("127.0.0.1", port)
        assert health.port_owner(port) == (f"python3 (pid {server.pid}, left running by the shopflow stack in "
                                           "/srv/ci-build/shopflow: `make down` there stops it)")
    finally:
        server.kill()
        server.wait(timeout=10)
    assert health.service_hint("postgres", "gitlab-runner.service") is None


def test_a_port_another_process_took_while_ours_started_fails_the_start(tmp_path):
    """Two stacks starting at once: the other's server took the port between our port check and our start, answered
    our probe, and `make up` said "shopflow is up" while our server had exited."""
    import dataclasses

    from shopflow.config import get_settings
    from shopflow.stack import supervisor
    from shopflow.stack.services import Service

    port = closed_port()
    subprocess.run(["setsid", "-f", "python3", "-c", _listen_code("127.0.0.1", port)], check=True)  # not ours
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
        with pytest.raises(health.StackError, match=rf"kafka: port {port} is held by python3 \(pid {holder[1]}\), "
                                                     r"which took it while this stack started kafka; its log: "):
            health.check_holders(settings, [service])
    finally:
        os.kill(holder[1], 9)
    ours = _listener("127.0.0.1", port, marked=True)  # a child of this process: ours
    try:
        _wait_listening("127.0.0.1", port)
        health.check_holders(settings, [service])
    finally:
        ours.kill()
        ours.wait(timeout=10)


def test_the_holder_is_the_loopback_listener_not_one_on_another_address():
    """A host's server on 172.17.0.1:5432 (or 127.0.0.2) beside ours on 127.0.0.1: `ss` listed it first, and `make
    up` took it for the holder of our port."""
    port = closed_port()
    other = _listener("127.0.0.2", port)
    try:
        _wait_listening("127.0.0.2", port)
        ours = _listener("127.0.0.1", port)
        try:
            _wait_listening("127.0.0.1", port)
            assert health.port_holder(port) == ("python3", ours.pid)
        finally:
            ours.kill()
            ours.wait(timeout=10)
        assert health.port_holder(port) is None  # 127.0.0.2 only: not the stack's address
    finally:
        other.kill()
        other.wait(timeout=10)


def test_a_supervisord_with_its_state_dir_elsewhere_is_recognised_by_its_mark(tmp_path):
    """LOCAL_STATE_DIR outside the checkout: its supervisord's command line names no `<checkout>/.local`."""
    from shopflow.stack.services import STACK_MARKER

    conf = tmp_path / "state" / "supervisord.conf"
    daemon = subprocess.Popen(["bash", "-c", f'exec -a "supervisord -c {conf}" bash -c "sleep 60 & wait"'],
                              env=unmarked_env() | {STACK_MARKER: str(PROJECT_ROOT)}, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not (children := subprocess.run(["pgrep", "-P", str(daemon.pid)], capture_output=True,
                                               text=True).stdout.split()):
            assert time.monotonic() < deadline, "the fake supervisord started no child"
            time.sleep(0.05)
        assert health._stack_checkout(int(children[0])) == str(PROJECT_ROOT)
        assert not health.orphaned(int(children[0]))
    finally:
        os.killpg(daemon.pid, 9)
        daemon.wait(timeout=10)


def test_the_holder_ignores_ipv6_only_listeners_and_takes_an_interface_bound_loopback(monkeypatch):
    """ss prints a dual-stack wildcard as `*` and an IPv6-only one as `[::]`, which never answers on 127.0.0.1: a host
    nginx on `[::]:8081` listed first was taken for the holder of the Spark master's port."""
    lines = ('LISTEN 0 511 [::]:8081 [::]:* users:(("nginx",pid=700,fd=6))\n'
             'LISTEN 0 50 [::ffff:127.0.0.1]:8081 *:* users:(("java",pid=812,fd=300))\n')
    monkeypatch.setattr(health.subprocess, "run", lambda *_a, **_k: subprocess.CompletedProcess([], 0, lines, ""))
    assert health.port_holder(8081) == ("java", 812)
    lines = 'LISTEN 0 4096 127.0.0.1%lo:53 0.0.0.0:* users:(("dnsmasq",pid=90,fd=5))\n'
    assert health.port_holder(53) == ("dnsmasq", 90)
    lines = 'LISTEN 0 4096 *:9092 *:* users:(("tansu",pid=91,fd=9))\n'
    assert health.port_holder(9092) == ("tansu", 91)
