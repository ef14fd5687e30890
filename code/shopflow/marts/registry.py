"""Every mart of the package: a module of `shopflow.marts` that defines `MART` is one (adding a mart = one file)."""
from __future__ import annotations

import importlib
import pkgutil

from postgresdb.models import TABLES_BY_NAME

from .spec import Mart


def all_marts() -> tuple[Mart, ...]:
    """The marts, in name order (imports the package's modules on first call)."""
    package = importlib.import_module(__package__)
    found = []
    for module_info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{__package__}.{module_info.name}")
        if isinstance(getattr(module, "MART", None), Mart):
            found.append(module.MART)
    names = [m.name for m in found]
    if len(set(names)) != len(names):
        raise ValueError(f"two mart modules declare the same mart name: {sorted(names)}")
    return tuple(sorted(found, key=lambda m: m.name))


def replica_columns(marts: tuple[Mart, ...]) -> dict[str, tuple[str, ...]]:
    """Per replica table the columns some mart reads (the job reads only these)."""
    wanted: dict[str, set[str]] = {}
    for mart in marts:
        for table, columns in mart.reads.items():
            wanted.setdefault(table, set()).update(columns)
    return {table: tuple(c for c in TABLES_BY_NAME[table].column_names if c in columns)
            for table, columns in sorted(wanted.items())}
