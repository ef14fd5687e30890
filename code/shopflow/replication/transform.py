"""Pure transforms of one extracted source table (`DataFrame -> DataFrame`): validation and MySQL type mapping.

The mapping of each column kind to its MySQL type comes from `postgresdb` (`ddl._MYSQL_TYPES` renders the DDL);
`MYSQL_LIMITS` below states what that MySQL type accepts, so a row the target would reject (or silently
truncate/round) is caught here, with its key and reason, before anything is written.
"""
from __future__ import annotations

from decimal import Decimal

from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from postgresdb.models import DATETIME_END, DATETIME_MIN, UPDATED_AT, Column, Table, epoch_micros

REJECT_REASON = "reject_reason"
# MySQL DATETIME(6) holds 1000-01-01 .. 9999-12-31; Postgres 'infinity' arrives as 9999-12-31 23:59:59.999
DATETIME_MIN_US, DATETIME_INFINITY_US = epoch_micros(DATETIME_MIN), epoch_micros(DATETIME_END)
# Fixed-point text form of DATETIME(6), rendered in the session time zone (UTC): no JVM/driver zone conversion.
DATETIME_FORMAT = "yyyy-MM-dd HH:mm:ss.SSSSSS"
MONEY_LIMIT = Decimal("10000000000")  # DECIMAL(12,2): |value| < 10^10

# kind -> (MySQL type, Spark type it is written as, inclusive integer range or None)
MYSQL_TYPES = {
    "id": ("BIGINT", T.LongType(), (-(2**63), 2**63 - 1)),
    "id_ref": ("BIGINT", T.LongType(), (-(2**63), 2**63 - 1)),
    "int": ("INT", T.IntegerType(), (-(2**31), 2**31 - 1)),
    "smallint": ("SMALLINT", T.ShortType(), (-(2**15), 2**15 - 1)),
    "money": ("DECIMAL(12,2)", T.DecimalType(12, 2), None),
    "text": ("VARCHAR", T.StringType(), None),
    "longtext": ("LONGTEXT", T.StringType(), None),
    "timestamp": ("DATETIME(6)", T.StringType(), None),
}
UPDATED_AT_COLUMN = Column(UPDATED_AT, "timestamp")


def replicated_columns(table: Table) -> list[Column]:
    """Every column the replica holds, in DDL order: the business columns, then updated_at."""
    return [*table.columns, UPDATED_AT_COLUMN]


def _problems(column: Column) -> list[tuple[SparkColumn, SparkColumn]]:
    """(condition, message) pairs: each condition true means MySQL would reject or alter the value."""
    c, name = F.col(column.name), column.name
    rules = []
    if not column.nullable:
        rules.append((c.isNull(), F.lit(f"{name}: NULL in a NOT NULL column")))
    limits = MYSQL_TYPES[column.kind][2]
    if limits:
        rules.append(((c < limits[0]) | (c > limits[1]),
                      F.format_string(f"{name}: %s outside {MYSQL_TYPES[column.kind][0]}", c.cast("string"))))
    if column.kind == "money":
        rules.append((F.abs(c) >= F.lit(MONEY_LIMIT), F.format_string(f"{name}: %s outside DECIMAL(12,2)", c)))
        rules.append((c != F.round(c, 2), F.format_string(f"{name}: %s has more than 2 decimals", c)))
    if column.kind == "text":
        rules.append((F.length(c) > column.length,
                      F.format_string(f"{name}: %d characters > VARCHAR({column.length})", F.length(c))))
    if column.choices:
        rules.append((~c.isin(*column.choices),
                      F.format_string(f"{name}: '%s' not one of {', '.join(column.choices)}", c)))
    if column.min_value is not None:
        rules.append((c < column.min_value, F.format_string(f"{name}: %s < {column.min_value}", c.cast("string"))))
    if column.max_value is not None:
        rules.append((c > column.max_value, F.format_string(f"{name}: %s > {column.max_value}", c.cast("string"))))
    if column.kind == "timestamp":
        rules.append(((c < F.timestamp_micros(F.lit(DATETIME_MIN_US)))
                      | (c >= F.timestamp_micros(F.lit(DATETIME_INFINITY_US))),
                      F.format_string(f"{name}: %s outside DATETIME (or infinity)", c.cast("string"))))
    return rules


def with_reject_reason(df: DataFrame, table: Table) -> DataFrame:
    """Adds `reject_reason`: NULL for a row MySQL accepts unchanged, else every problem found, `; `-separated."""
    messages = [F.when(condition, message) for column in replicated_columns(table)
                for condition, message in _problems(column)]
    reason = F.concat_ws("; ", *messages)
    return df.withColumn(REJECT_REASON, F.when(reason != "", reason))


def accepted_rows(checked: DataFrame) -> DataFrame:
    return checked.where(F.col(REJECT_REASON).isNull()).drop(REJECT_REASON)


def rejected_rows(checked: DataFrame, table: Table) -> DataFrame:
    """(row_key, reason) of every row the target would reject."""
    return (checked.where(F.col(REJECT_REASON).isNotNull())
            .select(F.col(table.primary_key).cast("string").alias("row_key"), F.col(REJECT_REASON).alias("reason")))


def _as_mysql(column: Column) -> SparkColumn:
    c = F.col(column.name)
    if column.kind == "timestamp":
        return F.date_format(c, DATETIME_FORMAT).alias(column.name)
    return c.cast(MYSQL_TYPES[column.kind][1]).alias(column.name)


def to_mysql_types(df: DataFrame, table: Table) -> DataFrame:
    """The replicated columns in DDL order, each as the value the MySQL column stores (timestamps as UTC text)."""
    return df.select(*[_as_mysql(column) for column in replicated_columns(table)])
