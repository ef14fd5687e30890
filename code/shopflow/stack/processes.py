"""This checkout's processes outside supervisord's control, for `make down`.

- Jobs run by hand (`make stream`, `python -m shopflow.jobs.…`, a spark-submit of `code/shopflow/jobs/…`): stopped
  first, while the servers they use still run, so that they end the way Ctrl-C ends them (a stream stops its query)
  instead of failing on a cluster that went away under them.
- Strays: whatever of the checkout outlived supervisord (e.g. a spark-submit started by an Airflow task), known by
  the stack's mark in its environment (services.STACK_MARKER), not by a path of the checkout in its command line:
  the user's `tail -f .local/logs/…` or editor has that too.
"""
from __future__ import annotations

import os
import re
import signal
import time

from shopflow.config import PROJECT_ROOT
from shopflow.stack.services import STACK_MARKER
from shopflow.stack.supervisor import proc_stat, process_alive

_JOB = re.compile(r"(?:^|\s)-m shopflow\.jobs\.\w+|(?:^|[\s/])code/shopflow/jobs/\w+\.py")


def _cmdline(pid: int | str) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace")


def command_line(pid: int) -> str:
    """As `ps` shows it; empty for a process that has ended."""
    try:
        return _cmdline(pid).strip()
    except OSError:
        return ""


def _in_checkout(pid: int | str) -> bool:
    cwd = os.readlink(f"/proc/{pid}/cwd")
    return cwd == str(PROJECT_ROOT) or cwd.startswith(str(PROJECT_ROOT) + "/")


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def ancestors(pid: int) -> list[int]:
    """`pid`, its parent, the parent's parent, … up to init (as far as the chain is still alive)."""
    chain = [pid]
    while pid > 1:
        fields = proc_stat(pid)
        if fields is None:
            break
        pid = int(fields[1])
        chain.append(pid)
    return chain


def _ancestors() -> set[int]:
    return set(ancestors(os.getpid()))


def _descendants(root: int | None) -> set[int]:
    if root is None:
        return set()
    children: dict[int, list[int]] = {}
    for pid in _pids():
        fields = proc_stat(pid)
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(pid)
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found | {root}


_RUNTIME = re.compile(r"(python[\d.]*|java)$")  # what a job runs in (spark-submit ends in java)
# a path in this checkout as an argument of its own (or an option's value), not inside another checkout's path that
# ends with this one's (/ci/work/main/… for /work/main)
_IN_ROOT = re.compile(rf"(?:^|[\s=]){re.escape(str(PROJECT_ROOT))}/")


def stack_mark(pid: int | str) -> str | None:
    """The checkout a process of a shopflow stack belongs to (its STACK_MARKER), None when unmarked or gone."""
    prefix = f"{STACK_MARKER}=".encode()
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            marks = [item[len(prefix):] for item in f.read().split(b"\0") if item.startswith(prefix)]
    except OSError:
        return None
    return marks[0].decode(errors="replace") if marks else None


def of_this_checkout(pid: int | str) -> bool:
    try:
        # Airflow's task runners retitle themselves ("airflow worker -- <task id>"), which overwrites the memory
        # their environment is read from, and leave supervisord's process group: only their working directory
        # still tells where they belong.
        return stack_mark(pid) == str(PROJECT_ROOT) or (_cmdline(pid).startswith("airflow ") and _in_checkout(pid))
    except OSError:
        return False


def _is_job_run_by_hand(pid: int) -> bool:
    """A job's driver (python -m shopflow.jobs.…, a spark-submit of code/shopflow/jobs/….py) of this checkout; not
    an editor or pager with a job's file open."""
    try:
        cmdline = _cmdline(pid)
        runtime = os.path.basename(cmdline.split(" ", 1)[0])
        return (bool(_RUNTIME.match(runtime)) and bool(_JOB.search(cmdline))
                and (bool(_IN_ROOT.search(cmdline)) or _in_checkout(pid)))
    except OSError:
        return False


def strays() -> list[int]:
    """Processes of this checkout that outlived supervisord."""
    keep = _ancestors()
    return [pid for pid in _pids() if pid not in keep and of_this_checkout(pid)]


def _outside_supervisord(daemon: int | None, wanted) -> list[int]:
    """The `wanted` processes that are neither this process's ancestors nor in supervisord's (`daemon`'s) tree."""
    keep = _ancestors() | _descendants(daemon)
    return [pid for pid in _pids() if pid not in keep and wanted(pid)]


def jobs_run_by_hand(daemon: int | None) -> list[int]:
    """The checkout's job drivers that supervisord (`daemon`, its pid) did not start, directly or through Airflow."""
    return _outside_supervisord(daemon, _is_job_run_by_hand)


def airflow_orphans(daemon: int | None) -> list[int]:
    """This checkout's Airflow executor workers and task runners ("airflow worker -- …") outside the tree of
    supervisord (`daemon`, its pid): left by a scheduler that died. They keep its database connection open, and with
    it the transaction in which it had row-locked DAG runs; the next scheduler skips locked runs, so those never move
    again (seen: a replication run stuck in `running` for good after `kill -9` of the scheduler)."""
    return _outside_supervisord(daemon, _is_airflow_worker)


def _is_airflow_worker(pid: int) -> bool:
    try:
        return _cmdline(pid).startswith("airflow worker") and _in_checkout(pid)
    except OSError:
        return False


def stop(pids: list[int], grace_s: float = 10.0) -> list[int]:
    """SIGTERM, then SIGKILL for whatever still runs after `grace_s` (an orphaned Airflow task runner ignores
    SIGTERM); returns the pids that needed SIGKILL."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    while any(process_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    killed = [p for p in pids if process_alive(p)]
    for pid in killed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return killed
