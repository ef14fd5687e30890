"""One stack command at a time per checkout (`make up`, `make down`, and the servers `make test` / `make bench`
start and stop)."""
from __future__ import annotations

import fcntl
import functools
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from shopflow.config import Settings

_HELD = [0]  # depth of `exclusive` in this process: `make up` calls `ensure` under it


@contextmanager
def exclusive(settings: Settings):
    """One stack command at a time per checkout: a second `make up` (another terminal), or a `make down`, during a
    `make up` waits for it, then finds its services running (or stops them), instead of starting the same servers
    twice and reporting this checkout's own Postgres as another's. Re-entrant within a process; the lock is the
    kernel's (flock), so a killed holder leaves none behind."""
    if _HELD[0]:
        _HELD[0] += 1
        try:
            yield
        finally:
            _HELD[0] -= 1
        return
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.state_dir / "stack.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            print(f"  waiting for {handle.read().strip() or 'another stack command'} to end: one stack command at a "
                  "time in this checkout (Ctrl-C in its terminal ends it sooner)", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"`{_command()}` (pid {os.getpid()})")
        handle.flush()
        _HELD[0] = 1
        try:
            yield
        finally:
            _HELD[0] = 0


def _command() -> str:
    """How this process was started: `python -m shopflow.stack up` (what `make up` runs), `python -m pytest …`,
    `python -m bench.run …`, `pytest …` (a console script)."""
    script = Path(sys.argv[0]).resolve()
    parts, folder = ([] if script.name == "__main__.py" else [script.stem]), script.parent
    while (folder / "__init__.py").is_file():  # a module of a package: it was run with -m
        parts.insert(0, folder.name)
        folder = folder.parent
    name = f"python -m {'.'.join(parts)}" if folder != script.parent else script.name
    return " ".join([name, *sys.argv[1:]])[:100]


def one_at_a_time(function):
    """`function(settings, ...)` under `exclusive(settings)`."""
    @functools.wraps(function)
    def locked(settings: Settings, *args, **kwargs):
        with exclusive(settings):
            return function(settings, *args, **kwargs)
    return locked
