"""The one schema source: table declarations and the DDL / Spark schemas derived from them."""
from .ddl import mysql_ddl, mysql_table_ddl, postgres_ddl
from .models import TABLES, TABLES_BY_NAME, Column, Table

__all__ = ["TABLES", "TABLES_BY_NAME", "Column", "Table", "mysql_ddl", "mysql_table_ddl", "postgres_ddl"]
