"""Reading the settings file (`.env`): KEY=VALUE lines, as UTF-8."""
from __future__ import annotations

import codecs
import re
from pathlib import Path

from shopflow import config_values as v
from shopflow.config_values import SettingsError


def _env_text(path: Path) -> str:
    """The file as UTF-8, without the byte-order mark some editors write first; a file in another encoding is one
    line naming where (every command ended in a UnicodeDecodeError traceback)."""
    data = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise SettingsError(f"{path.name} line {line}: not UTF-8 (byte 0x{data[error.start]:02x}); save the file as "
                            "UTF-8") from None


def read_env_file(path: Path, lenient: bool = False) -> dict[str, str]:
    """Parse KEY=VALUE lines; `#` starts a comment line, or a comment after a value and whitespace (`env_value`).
    `lenient`: lines that are not KEY=VALUE are skipped, and bytes not in UTF-8 replaced (`make down` reads the
    state directory of a file the settings refuse)."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    text = path.read_bytes().decode("utf-8", "replace") if lenient else _env_text(path)
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key.strip()):
            if lenient:
                continue
            raise SettingsError(f"{path.name} line {number}: expected KEY=VALUE, got {line!r}")
        values[key.strip()] = v.env_value(value)
    return values
