"""The analytical marts: one module per mart (transform, columns, quality rules), built from the MySQL replica by
`build.build_marts` behind quality gates and published atomically. See README.md."""
from .registry import all_marts
from .spec import Mart, MartColumn

__all__ = ["Mart", "MartColumn", "all_marts"]
