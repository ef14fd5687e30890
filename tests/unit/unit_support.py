"""Helpers of the unit tests (no tests here)."""
from __future__ import annotations

import socket


def closed_port() -> int:
    """A local port nothing listens on: bound, then released at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
