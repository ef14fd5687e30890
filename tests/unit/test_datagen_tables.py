"""The Postgres generator's rows without a database: sizes, consistency, ranges, dates, determinism, COPY text."""
from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from datagen.copyfmt import ChunkReader, copy_chunks, copy_line, money, timestamp, to_python
from datagen.tables import UNDELIVERED, Sizes, generate
from postgresdb.models import LOYALTY_REASONS, LOYALTY_STATUSES, ORDER_STATUSES, TABLES, TABLES_BY_NAME
from shopflow.config import Settings

SETTINGS = Settings()  # the demo sizes of .env: 500 users, 800 products, 3000 orders, ...
SCALE = 0.1


def _decoded(seed: int, scale: float = SCALE) -> dict[str, list[dict]]:
    return {table.name: [to_python(table, row) for row in rows] for table, rows in generate(SETTINGS, seed, scale)}


def _copy_text(seed: int, scale: float = SCALE) -> dict[str, bytes]:
    return {table.name: b"".join(copy_chunks(table, rows)) for table, rows in generate(SETTINGS, seed, scale)}


@pytest.fixture(scope="module")
def data() -> dict[str, list[dict]]:
    return _decoded(seed=7)


def _by_id(rows: list[dict], key: str) -> dict[int, dict]:
    return {row[key]: row for row in rows}


def test_sizes_are_the_settings_times_the_scale(data):
    counts = {name: len(rows) for name, rows in data.items()}
    assert {k: v for k, v in counts.items() if k != "order_details"} == {
        "users": 50, "product_categories": 2, "products": 80, "orders": 300, "reviews": 200, "loyalty_points": 300}
    lines_per_order = Counter(row["order_id"] for row in data["order_details"])
    assert set(lines_per_order) == set(range(1, 301))
    assert min(lines_per_order.values()) == 1 and max(lines_per_order.values()) == 10


def test_sizes_round_and_keep_at_least_one_user_product_and_category():
    tiny = Sizes.from_settings(SETTINGS, 0.0001)
    assert (tiny.users, tiny.products, tiny.categories, tiny.orders, tiny.reviews) == (1, 1, 1, 0, 0)
    assert Sizes.from_settings(SETTINGS, 600).orders == 1_800_000


def test_ids_are_consecutive_from_one(data):
    for table in TABLES:
        ids = [row[table.primary_key] for row in data[table.name]]
        assert ids == list(range(1, len(ids) + 1)), table.name


def test_order_total_is_the_sum_of_its_lines_at_the_product_price(data):
    prices = {p["product_id"]: p["price"] for p in data["products"]}
    sums: dict[int, Decimal] = defaultdict(Decimal)
    for line in data["order_details"]:
        assert line["price_per_unit"] == prices[line["product_id"]]
        assert line["total_price"] == line["quantity"] * line["price_per_unit"]
        assert line["total_price"] == line["total_price"].quantize(Decimal("0.01"))
        sums[line["order_id"]] += line["total_price"]
    assert {o["order_id"]: o["total_amount"] for o in data["orders"]} == dict(sums)


def test_every_foreign_key_points_at_an_existing_row(data):
    for table in TABLES:
        for column in table.foreign_keys:
            target, target_column = column.references.split(".")
            existing = {row[target_column] for row in data[target]}
            values = {row[column.name] for row in data[table.name]} - {None}
            assert values and values <= existing, f"{table.name}.{column.name}"


def test_categories_form_a_tree_of_roots_and_earlier_parents():
    categories = _decoded(seed=7, scale=1)["product_categories"]
    roots = [c for c in categories if c["parent_category_id"] is None]
    assert 1 <= len(roots) < len(categories)
    assert all(c["parent_category_id"] < c["category_id"] for c in categories if c not in roots)


def test_values_are_in_their_allowed_ranges(data):
    assert {r["rating"] for r in data["reviews"]} == {1, 2, 3, 4, 5}
    assert {u["loyalty_status"] for u in data["users"]} == set(LOYALTY_STATUSES)
    assert {o["status"] for o in data["orders"]} | {"Pending", "Processing"} == set(ORDER_STATUSES)  # (recent ones)
    assert {p["reason"] for p in data["loyalty_points"]} <= set(LOYALTY_REASONS)
    assert all(p["points"] > 0 for p in data["loyalty_points"])
    assert all(Decimal("0.99") <= p["price"] <= Decimal("999.99") and p["stock_quantity"] >= 0
               for p in data["products"])
    assert all(1 <= d["quantity"] <= 5 for d in data["order_details"])
    for table in TABLES:
        for column in (c for c in table.columns if c.kind == "text"):
            assert max(len(row[column.name] or "") for row in data[table.name]) <= column.length


def test_dates_are_in_order_utc_and_not_in_the_future(data):
    registered = {u["user_id"]: u["registration_date"] for u in data["users"]}
    created = {p["product_id"]: p["creation_date"] for p in data["products"]}
    now = datetime.now(timezone.utc)
    for order in data["orders"]:
        assert registered[order["user_id"]] <= order["order_date"] <= now
        if order["status"] in UNDELIVERED:
            assert order["delivery_date"] is None
        else:
            assert order["order_date"] <= order["delivery_date"] <= now
    ordered = {order["order_id"]: order["order_date"] for order in data["orders"]}
    for line in data["order_details"]:  # no order of a product that did not exist yet
        assert created[line["product_id"]] <= ordered[line["order_id"]], line
    for review in data["reviews"]:
        assert max(registered[review["user_id"]], created[review["product_id"]]) <= review["created_at"] <= now
    for points in data["loyalty_points"]:
        assert registered[points["user_id"]] <= points["created_at"] <= now
    assert all(u["registration_date"].utcoffset().total_seconds() == 0 for u in data["users"])


def test_orders_grow_with_the_users_across_the_window_and_open_ones_are_recent():
    """Dated after the newest of their products, 92 % of the orders fell in the window's last year and a third of
    the weeks had none; Pending and Processing orders were up to four years old."""
    orders = _decoded(seed=7, scale=1)["orders"]
    years = Counter(o["order_date"].year for o in orders)
    assert sorted(years) == [2022, 2023, 2024, 2025] and years[2022] < years[2023] < years[2024] < years[2025]
    assert years[2025] < 0.7 * len(orders) and years[2022] > 0.02 * len(orders)
    weeks = {o["order_date"].isocalendar()[:2] for o in orders if o["order_date"].year >= 2023}
    assert len(weeks) >= 150  # of the 156 weeks of 2023-2025
    opened = [o["order_date"] for o in orders if o["status"] in ("Pending", "Processing")]
    assert opened and min(opened) >= datetime(2025, 12, 2, tzinfo=timezone.utc)


def test_higher_loyalty_tiers_hold_more_points():
    """Points were drawn without regard to the tier: Gold users had fewer on average than Bronze ones."""
    data = _decoded(seed=7, scale=1)
    tier = {u["user_id"]: u["loyalty_status"] for u in data["users"]}
    points, users = Counter(), Counter(tier.values())
    for entry in data["loyalty_points"]:
        points[tier[entry["user_id"]]] += entry["points"]
    gold, silver, bronze = (points[t] / users[t] for t in ("Gold", "Silver", "Bronze"))
    assert gold > 1.5 * silver > 2.25 * bronze


def test_emails_are_unique_ascii_addresses(data):
    emails = [u["email"] for u in data["users"]]
    assert len(set(emails)) == len(emails)
    assert all(e.isascii() and e.count("@") == 1 and "." in e.split("@")[1] for e in emails)


def test_names_include_non_ascii_and_nullable_columns_hold_some_nulls(data):
    names = [u["first_name"] + u["last_name"] for u in data["users"]]
    assert any(not n.isascii() for n in names)
    for table_name, column in [("users", "phone"), ("products", "description"), ("reviews", "review_text"),
                               ("product_categories", "parent_category_id")]:
        values = [row[column] for row in data[table_name]]
        assert None in values and any(v is not None for v in values), column


def test_same_seed_gives_identical_copy_text_and_another_seed_differs():
    first, again, other = _copy_text(seed=3), _copy_text(seed=3), _copy_text(seed=4)
    assert first == again
    assert all(first[name] != other[name] for name in first)


def test_copy_text_escapes_specials_and_writes_null():
    users = TABLES_BY_NAME["users"]
    row = (7, "Zoë\tA", "back\\slash", "a.b.7@example.com", None, 0, "Gold")
    assert copy_line(users, row) == "7\tZoë\\tA\tback\\\\slash\ta.b.7@example.com\t\\N\t1970-01-01 00:00:00+00\tGold\n"


@pytest.mark.parametrize("cents, text", [(0, "0.00"), (5, "0.05"), (1999, "19.99"), (123456789, "1234567.89")])
def test_money_is_exact_with_two_places(cents, text):
    assert money(cents) == text


def test_timestamp_is_postgres_utc_text():
    moment = datetime(2024, 2, 29, 23, 59, 58, tzinfo=timezone.utc)
    assert timestamp(int(moment.timestamp())) == "2024-02-29 23:59:58+00"


def test_copy_chunks_count_rows_and_the_reader_streams_them_in_order():
    products = TABLES_BY_NAME["product_categories"]
    rows = [(i, f"c{i}", None) for i in range(1, 6)]
    counter = [0]
    chunks = list(copy_chunks(products, rows, counter, rows_per_chunk=2))
    assert len(chunks) == 3 and counter == [5]
    reader = ChunkReader(chunks)
    assert b"".join(iter(lambda: reader.read(8192), b"")).decode().splitlines()[4] == "5\tc5\t\\N"
