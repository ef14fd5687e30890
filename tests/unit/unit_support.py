"""Helpers of the unit tests (no tests here)."""
from __future__ import annotations

import os
import socket


def closed_port() -> int:
    """A local port nothing listens on: bound, then released at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def unmarked_env() -> dict[str, str]:
    """This process's environment without the stack's mark (services.STACK_MARKER)."""
    from shopflow.stack.services import STACK_MARKER

    return {k: v for k, v in os.environ.items() if k != STACK_MARKER}
