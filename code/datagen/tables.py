"""Pure, seeded row generators for the seven source tables (no database).

Rows are tuples in `postgresdb.models` column order, in a compact raw form that is cheap to make by the
million: money is an int number of cents, timestamps are int seconds since the epoch (UTC), NULL is None.
`datagen.copyfmt` turns them into COPY text (`to_python` into Decimal/datetime for tests).

Each table has its own `random.Random` stream, so a seed and a scale give the same rows on every run.
Order totals need the order's lines before the order row is written, and orders must be loaded before
their details (foreign key): the lines stream is therefore replayed, once to sum totals and once to emit.
"""
from __future__ import annotations

import random
from bisect import bisect_right
from dataclasses import dataclass
from typing import Iterator

from postgresdb.models import (LOYALTY_POINTS, LOYALTY_REASONS, ORDER_DETAILS, ORDERS, PRODUCT_CATEGORIES,
                               PRODUCTS, REVIEWS, USERS, Table)
from shopflow.config import Settings

from .pools import DAY, WINDOW_END, WINDOW_START, Pools, build_pools

# Weighted draws as "bags": bag[int(random() * len(bag))] is much faster than random.choices per row.
LOYALTY_BAG = ("Bronze",) * 6 + ("Silver",) * 3 + ("Gold",)
STATUS_BAG = ("Completed",) * 11 + ("Shipped",) * 3 + ("Pending", "Processing") * 2 + ("Cancelled",) * 2
UNDELIVERED = frozenset({"Pending", "Processing", "Cancelled"})
QUANTITY_BAG = (1,) * 5 + (2,) * 3 + (3,) * 2 + (4, 5)
RATING_BAG = (1, 2, 2, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 5)
REASON_POINTS = {"Order": (10, 500), "Promotion": (50, 1000), "Review": (10, 50), "Referral": (100, 300),
                 "Birthday": (100, 200)}
REASON_BAG = ("Order",) * 6 + tuple(LOYALTY_REASONS[1:])


@dataclass(frozen=True)
class Sizes:
    users: int
    products: int
    categories: int
    orders: int
    reviews: int
    loyalty_points: int
    details_min: int
    details_max: int

    @classmethod
    def from_settings(cls, settings: Settings, scale: float = 1.0) -> "Sizes":
        def scaled(value: int, at_least: int = 0) -> int:
            return max(at_least, round(value * scale))

        return cls(users=scaled(settings.DATAGEN_USERS, 1), products=scaled(settings.DATAGEN_PRODUCTS, 1),
                   categories=scaled(settings.DATAGEN_CATEGORIES, 1), orders=scaled(settings.DATAGEN_ORDERS),
                   reviews=scaled(settings.DATAGEN_REVIEWS), loyalty_points=scaled(settings.DATAGEN_LOYALTY_POINTS),
                   details_min=settings.DATAGEN_DETAILS_MIN, details_max=settings.DATAGEN_DETAILS_MAX)

    def largest(self) -> tuple[str, int]:
        """The table with the most rows and how many (order_details: its expected count)."""
        counts = {"users": self.users, "products": self.products, "product_categories": self.categories,
                  "orders": self.orders, "reviews": self.reviews, "loyalty_points": self.loyalty_points,
                  "order_details": self.orders * (self.details_min + self.details_max) // 2}
        return max(counts.items(), key=lambda item: item[1])


class World:
    """What several tables must agree on: registration times, product prices and creation times."""

    def __init__(self, sizes: Sizes, seed: int, pools: Pools):
        self.sizes, self.seed, self.pools = sizes, seed, pools
        rng = random.Random(f"{seed}:world")
        r = rng.random
        # Registration leaves at least 30 days before the window's end for orders, reviews and points.
        span = WINDOW_END - WINDOW_START - 30 * DAY
        self.registered = [WINDOW_START + int(r() * span) for _ in range(sizes.users)]
        self.product_created = [WINDOW_START + int(r() * span) for _ in range(sizes.products)]
        # the products in the order they were created, and when: an order picks among those that exist by its date
        self.by_created = sorted(range(1, sizes.products + 1), key=lambda p: self.product_created[p - 1])
        self.created_sorted = [self.product_created[p - 1] for p in self.by_created]
        # Prices in cents, log-normal around 30.00, kept within 0.99 .. 999.99.
        self.prices = [min(99_999, max(99, int(rng.lognormvariate(8, 1.1)))) for _ in range(sizes.products)]

    def rng(self, stream: str) -> random.Random:
        return random.Random(f"{self.seed}:{stream}")


def _after(r, start: int) -> int:
    """A time between `start` and the window's end."""
    return start + int(r() * (WINDOW_END - start))


def _pick(r, items):
    return items[int(r() * len(items))]


def users(world: World) -> Iterator[tuple]:
    r, pools = world.rng("users").random, world.pools
    for user_id in range(1, world.sizes.users + 1):
        person = _pick(r, pools.people)
        email = f"{person.email_local}.{user_id}@{person.email_domain}"
        phone = None if r() < 0.1 else _pick(r, pools.phones)
        yield (user_id, person.first_name, person.last_name, email, phone, world.registered[user_id - 1],
               _pick(r, LOYALTY_BAG))


def product_categories(world: World) -> Iterator[tuple]:
    """A tree: the first quarter are roots, every other category hangs under an earlier one."""
    r, words = world.rng("categories").random, world.pools.words
    roots = max(1, world.sizes.categories // 4)
    for category_id in range(1, world.sizes.categories + 1):
        parent = None if category_id <= roots else 1 + int(r() * (category_id - 1))
        name = f"{_pick(r, words).title()} & {_pick(r, words).title()}"
        yield category_id, name, parent


def products(world: World) -> Iterator[tuple]:
    r, pools, categories = world.rng("products").random, world.pools, world.sizes.categories
    for index, price in enumerate(world.prices):
        name = f"{_pick(r, pools.colors)} {_pick(r, pools.words).title()} {_pick(r, pools.words)}"
        description = None if r() < 0.15 else f"{_pick(r, pools.sentences)} {_pick(r, pools.sentences)}"
        yield (index + 1, name, description, 1 + int(r() * categories), price, int(r() * 1000),
               world.product_created[index])


def order_lines(world: World) -> Iterator[tuple[int, int, list[tuple[int, int]]]]:
    """Per order, its user, its date and its lines as (product_id, quantity): DETAILS_MIN..DETAILS_MAX distinct
    products that exist by that date. The date comes first, after the user registered (and once enough products
    exist): dated after the newest of its products instead, 92 % of the orders fell in the window's last year."""
    r, sizes, created, by_created = world.rng("order_lines").random, world.sizes, world.created_sorted, world.by_created
    spread = sizes.details_max - sizes.details_min + 1
    for _ in range(sizes.orders):
        count = min(sizes.products, sizes.details_min + int(r() * spread))
        user_id = 1 + int(r() * sizes.users)
        ordered = _after(r, max(world.registered[user_id - 1], created[count - 1]))
        existing = bisect_right(created, ordered)
        picked: list[int] = []
        while len(picked) < count:
            product_id = by_created[int(r() * existing)]
            if product_id not in picked:
                picked.append(product_id)
        yield user_id, ordered, [(product_id, _pick(r, QUANTITY_BAG)) for product_id in picked]


OPEN_DAYS = 30  # Pending and Processing orders are this recent at most; older ones drawn so are Completed


def orders(world: World) -> Iterator[tuple]:
    r, prices = world.rng("orders").random, world.prices
    for order_id, (user_id, ordered, lines) in enumerate(order_lines(world), start=1):
        status = _pick(r, STATUS_BAG)
        if status in ("Pending", "Processing") and ordered < WINDOW_END - OPEN_DAYS * DAY:
            status = "Completed"
        delivered = None if status in UNDELIVERED else min(WINDOW_END, ordered + DAY + int(r() * 14 * DAY))
        total = sum(quantity * prices[product_id - 1] for product_id, quantity in lines)
        yield order_id, user_id, ordered, total, status, delivered


def order_details(world: World) -> Iterator[tuple]:
    detail_id, prices = 0, world.prices
    for order_id, (_user, _date, lines) in enumerate(order_lines(world), start=1):
        for product_id, quantity in lines:
            detail_id += 1
            price = prices[product_id - 1]
            yield detail_id, order_id, product_id, quantity, price, quantity * price


def reviews(world: World) -> Iterator[tuple]:
    r, pools, sizes = world.rng("reviews").random, world.pools, world.sizes
    for review_id in range(1, sizes.reviews + 1):
        user_id, product_id = 1 + int(r() * sizes.users), 1 + int(r() * sizes.products)
        text = None if r() < 0.2 else _pick(r, pools.sentences)
        earliest = max(world.registered[user_id - 1], world.product_created[product_id - 1])
        yield review_id, user_id, product_id, _pick(r, RATING_BAG), text, _after(r, earliest)


# How often a user of each tier earns points, relative to Gold: drawn without regard to the tier, Gold users had
# fewer points on average than Bronze ones
TIER_EARNING = {"Gold": 1.0, "Silver": 0.5, "Bronze": 0.25}


def loyalty_points(world: World) -> Iterator[tuple]:
    r, sizes = world.rng("loyalty_points").random, world.sizes
    tiers = [user[-1] for user in users(world)]
    for loyalty_id in range(1, sizes.loyalty_points + 1):
        user_id = 1 + int(r() * sizes.users)
        while r() >= TIER_EARNING[tiers[user_id - 1]]:
            user_id = 1 + int(r() * sizes.users)
        reason = _pick(r, REASON_BAG)
        low, high = REASON_POINTS[reason]
        yield loyalty_id, user_id, low + int(r() * (high - low + 1)), reason, _after(r, world.registered[user_id - 1])


GENERATORS = ((USERS, users), (PRODUCT_CATEGORIES, product_categories), (PRODUCTS, products), (ORDERS, orders),
              (ORDER_DETAILS, order_details), (REVIEWS, reviews), (LOYALTY_POINTS, loyalty_points))


def generate(settings: Settings, seed: int, scale: float = 1.0) -> Iterator[tuple[Table, Iterator[tuple]]]:
    """(table, rows) for the seven tables in foreign-key order; rows are lazy and independent of each other."""
    world = World(Sizes.from_settings(settings, scale), seed, build_pools(seed))
    for table, make_rows in GENERATORS:
        yield table, make_rows(world)
