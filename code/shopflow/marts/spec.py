"""What a mart module declares: its columns (MySQL types, from which the Spark schema follows), the replica columns
it reads, its transform, its key and its quality rules."""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Callable, Mapping

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from postgresdb.models import TABLES_BY_NAME
from postgresdb.spark_schemas import spark_type as replica_spark_type
from shopflow.quality.rules import Check, not_null, unique

_SPARK_TYPES = {"BIGINT": T.LongType(), "INT": T.IntegerType(), "SMALLINT": T.ShortType(), "DATE": T.DateType()}


def spark_type(mysql_type: str) -> T.DataType:
    if decimal := re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", mysql_type):
        return T.DecimalType(int(decimal[1]), int(decimal[2]))
    if re.fullmatch(r"VARCHAR\(\d+\)", mysql_type):
        return T.StringType()
    if mysql_type not in _SPARK_TYPES:
        raise ValueError(f"no Spark type for the MySQL type {mysql_type!r}")
    return _SPARK_TYPES[mysql_type]


def varchar_of(table: str, column: str) -> str:
    """The MySQL type of a replica text column: a mart copying it keeps its length."""
    return f"VARCHAR({TABLES_BY_NAME[table].column(column).length})"


@dataclass(frozen=True)
class MartColumn:
    name: str
    mysql_type: str  # BIGINT, INT, SMALLINT, DATE, VARCHAR(n), DECIMAL(p,s)
    nullable: bool = False

    @property
    def ddl(self) -> str:
        return f"`{self.name}` {self.mysql_type} {'NULL' if self.nullable else 'NOT NULL'}"


def schema_of(columns: tuple[MartColumn, ...]) -> T.StructType:
    return T.StructType([T.StructField(c.name, spark_type(c.mysql_type), c.nullable) for c in columns])


def conform(columns: tuple[MartColumn, ...]) -> Callable[[DataFrame], DataFrame]:
    """The mart's columns, in order, cast to their declared types (for `df.transform`)."""
    schema = schema_of(columns)
    return lambda df: df.select(*(F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields))


def rounded_mean(total: str, count: str, scale: int = 2) -> F.Column:
    """total / count rounded HALF_UP to `scale` decimals, exactly, NULL when count is 0.

    Integer arithmetic on total * 10^scale (whole for ratings and for money at `scale` 2): AVG's own
    DECIMAL(p+4, s+4) result would round twice, and 4.00497... would become 4.0050, then 4.01.
    Inputs are never negative here (ratings 1-5, amounts >= 0), for which this is HALF_UP.
    """
    factor = 10 ** scale
    units = F.expr(f"(2 * {total} * {factor} + {count}) div NULLIF(2 * {count}, 0)")
    return units.cast(T.DecimalType(20, 0)) / F.lit(factor)


@dataclass(frozen=True)
class Mart:
    name: str
    build: Callable[..., DataFrame]  # a pure transform: one keyword argument per replica table in `reads`
    reads: Mapping[str, tuple[str, ...]]  # replica table -> the columns the transform uses
    columns: tuple[MartColumn, ...]
    key: tuple[str, ...]
    rules: tuple[Check, ...] = ()
    reference_sql: str = ""  # the same question in plain SQL over the replica (verify.py, tests)

    def __post_init__(self) -> None:
        parameters = list(inspect.signature(self.build).parameters)
        if sorted(parameters) != sorted(self.reads):
            raise ValueError(f"{self.name}: {self.build.__name__}{tuple(parameters)} must take the tables it "
                             f"reads {tuple(self.reads)}")
        unknown = set(self.key) - {c.name for c in self.columns}
        if unknown:
            raise ValueError(f"{self.name}: key column(s) {sorted(unknown)} are not mart columns")
        for table, columns in self.reads.items():  # a typo surfaced as StopIteration, or the job's UNRESOLVED_COLUMN
            if table not in TABLES_BY_NAME:
                raise ValueError(f"{self.name}: reads {table!r}, which is no replica table (postgresdb/models.py: "
                                 f"{', '.join(TABLES_BY_NAME)})")
            declared = TABLES_BY_NAME[table].column_names  # a list built per call of the property
            if missing := [c for c in columns if c not in declared]:
                raise ValueError(f"{self.name}: reads {table}.{missing[0]}, which is no column of {table} "
                                 f"({', '.join(declared)})")

    @property
    def schema(self) -> T.StructType:
        return schema_of(self.columns)

    @property
    def checks(self) -> tuple[Check, ...]:
        return (not_null(*self.key), unique(*self.key)) + self.rules

    def input_schema(self, table: str) -> T.StructType:
        """The columns it reads, typed as the replica reader delivers them (every JDBC column is nullable)."""
        declared = TABLES_BY_NAME[table]
        return T.StructType([T.StructField(c, replica_spark_type(declared.column(c)), True)
                             for c in self.reads[table]])

    def build_from(self, frames: Mapping[str, DataFrame]) -> DataFrame:
        df = self.build(**{table: frames[table] for table in self.reads})
        if [(f.name, f.dataType) for f in df.schema] != [(f.name, f.dataType) for f in self.schema]:
            raise TypeError(f"{self.name}: the transform returned {df.schema.simpleString()}, "
                            f"declared {self.schema.simpleString()}")
        return df

    def ddl(self, table: str) -> str:
        body = [c.ddl for c in self.columns] + [f"PRIMARY KEY ({', '.join(f'`{k}`' for k in self.key)})"]
        return (f"CREATE TABLE `{table}` (\n    " + ",\n    ".join(body) +
                "\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")
