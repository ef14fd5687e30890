"""Spark schemas of the replicated columns (business columns + updated_at), from `models.TABLES`."""
from __future__ import annotations

from pyspark.sql import types as T

from .models import TABLES_BY_NAME, UPDATED_AT, Column

_SPARK_TYPES = {"id": T.LongType, "id_ref": T.LongType, "int": T.IntegerType, "smallint": T.ShortType,
                "text": T.StringType, "longtext": T.StringType, "timestamp": T.TimestampType}


def spark_type(column: Column) -> T.DataType:
    if column.kind == "money":
        return T.DecimalType(12, 2)
    return _SPARK_TYPES[column.kind]()


def spark_schema(table_name: str, with_updated_at: bool = True) -> T.StructType:
    table = TABLES_BY_NAME[table_name]
    fields = [T.StructField(c.name, spark_type(c), c.nullable) for c in table.columns]
    if with_updated_at:
        fields.append(T.StructField(UPDATED_AT, T.TimestampType(), False))
    return T.StructType(fields)
