"""A call run in a thread, for tests where it must not wait for good behind something the test holds."""
from __future__ import annotations

import threading


class Attempt:
    """Starts `action()` in a daemon thread; `error` is what it raised (None if it returned)."""

    def __init__(self, action):
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(action,), daemon=True)
        self._thread.start()

    def _run(self, action) -> None:
        try:
            action()
        except BaseException as error:  # noqa: BLE001 - the test asserts on it
            self.error = error

    def running_after(self, seconds: float) -> bool:
        """Waits up to `seconds` for the call to end; True if it still runs (the test then releases what it holds
        and calls `running_after` again, so the thread does not outlive the test)."""
        self._thread.join(timeout=seconds)
        return self._thread.is_alive()
