"""The seven source tables of the brief, declared once.

Everything else is derived from these declarations: the Postgres DDL (schema `source`), the MySQL/MariaDB DDL
(`mysql_db`, utf8mb4) and the Spark schemas. Change tracking columns are added by the DDL renderers, not here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

LOYALTY_STATUSES = ("Gold", "Silver", "Bronze")
ORDER_STATUSES = ("Pending", "Processing", "Shipped", "Completed", "Cancelled")
LOYALTY_REASONS = ("Order", "Promotion", "Review", "Referral", "Birthday")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # id | int | smallint | text | longtext | money | timestamp
    nullable: bool = False
    length: int | None = None  # for kind=text: max characters
    references: str | None = None  # "table.column"
    unique: bool = False
    choices: tuple[str, ...] = ()
    min_value: int | None = None
    max_value: int | None = None


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    indexes: tuple[tuple[str, ...], ...] = field(default=())

    @property
    def primary_key(self) -> str:
        return self.columns[0].name

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def foreign_keys(self) -> list[Column]:
        return [c for c in self.columns if c.references]

    @property
    def parents(self) -> set[str]:
        """Names of the tables its foreign keys reference (its own name for a self-reference)."""
        return {c.references.split(".")[0] for c in self.foreign_keys}


def _id(name: str) -> Column:
    return Column(name, "id")


def _fk(name: str, target: str, nullable: bool = False) -> Column:
    return Column(name, "id_ref", nullable=nullable, references=target)


USERS = Table("users", (
    _id("user_id"),
    Column("first_name", "text", length=100),
    Column("last_name", "text", length=100),
    Column("email", "text", length=255, unique=True),
    Column("phone", "text", length=50, nullable=True),
    Column("registration_date", "timestamp"),
    Column("loyalty_status", "text", length=10, choices=LOYALTY_STATUSES),
))

PRODUCT_CATEGORIES = Table("product_categories", (
    _id("category_id"),
    Column("name", "text", length=255),
    _fk("parent_category_id", "product_categories.category_id", nullable=True),
))

PRODUCTS = Table("products", (
    _id("product_id"),
    Column("name", "text", length=255),
    Column("description", "longtext", nullable=True),
    _fk("category_id", "product_categories.category_id"),
    Column("price", "money", min_value=0),
    Column("stock_quantity", "int", min_value=0),
    Column("creation_date", "timestamp"),
))

ORDERS = Table("orders", (
    _id("order_id"),
    _fk("user_id", "users.user_id"),
    Column("order_date", "timestamp"),
    Column("total_amount", "money", min_value=0),
    Column("status", "text", length=20, choices=ORDER_STATUSES),
    Column("delivery_date", "timestamp", nullable=True),
), indexes=(("order_date",),))

ORDER_DETAILS = Table("order_details", (
    _id("order_detail_id"),
    _fk("order_id", "orders.order_id"),
    _fk("product_id", "products.product_id"),
    Column("quantity", "int", min_value=1),
    Column("price_per_unit", "money", min_value=0),
    Column("total_price", "money", min_value=0),
))

REVIEWS = Table("reviews", (
    _id("review_id"),
    _fk("user_id", "users.user_id"),
    _fk("product_id", "products.product_id"),
    Column("rating", "smallint", min_value=1, max_value=5),
    Column("review_text", "longtext", nullable=True),
    Column("created_at", "timestamp"),
))

LOYALTY_POINTS = Table("loyalty_points", (
    _id("loyalty_id"),
    _fk("user_id", "users.user_id"),
    Column("points", "int"),
    Column("reason", "text", length=50),
    Column("created_at", "timestamp"),
))

# FK order: a table comes after every table it references.
TABLES: tuple[Table, ...] = (
    USERS, PRODUCT_CATEGORIES, PRODUCTS, ORDERS, ORDER_DETAILS, REVIEWS, LOYALTY_POINTS,
)
TABLES_BY_NAME = {t.name: t for t in TABLES}

# Change tracking (see postgresdb/README.md).
UPDATED_AT = "updated_at"
CHANGE_TXID = "change_txid"
TOMBSTONES = "deleted_rows"
# Per table: its tombstones with change_txid below `pruned_below` may be gone (code/shopflow/replication/tombstones.py)
TOMBSTONE_HORIZON = "deleted_rows_horizon"

# What the replica's DATETIME(6) holds, in UTC: from DATETIME_MIN up to, not including, DATETIME_END (Postgres'
# 'infinity' as the JDBC path reads it). The source refuses the rest (ddl.py); the replication and the stream check it.
DATETIME_MIN = datetime(1000, 1, 1, tzinfo=timezone.utc)
DATETIME_END = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc)


def epoch_micros(moment: datetime) -> int:
    """Microseconds since 1970 (for Spark's timestamp_micros: a datetime literal would pass through Java's hybrid
    Julian calendar)."""
    return (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)
