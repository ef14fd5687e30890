"""What both generator CLIs share: one-line errors with exit code 2, settings loading, argument types."""
from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from shopflow.config import Settings, SettingsError, load_settings

EXIT_UNREACHABLE = 1
EXIT_BAD_INPUT = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument prints one line (no usage block) and exits 2."""

    def error(self, message: str) -> NoReturn:
        fail(self.prog, message, EXIT_BAD_INPUT)


def fail(prog: str, message: str, code: int) -> NoReturn:
    print(f"{prog}: error: {message.splitlines()[0] if message else 'failed'}", file=sys.stderr, flush=True)
    sys.exit(code)


def settings_or_exit(prog: str) -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        fail(prog, f"bad setting {exc}", EXIT_BAD_INPUT)


def _number(raw: str, cast, what: str):
    try:
        return cast(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not {what}") from None


def positive_float(raw: str) -> float:
    value = _number(raw, float, "a number")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{raw!r} must be a finite number greater than 0")
    return value


def non_negative_int(raw: str) -> int:
    value = _number(raw, int, "a whole number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{raw!r} must not be negative")
    return value


def fraction(raw: str) -> float:
    value = _number(raw, float, "a number")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{raw!r} must be between 0 and 1")
    return value
