"""Faker-built pools of names, phones, words and sentences, drawn from by the generators with `random.Random`.

Calling Faker once per row is far too slow for millions of rows, so each generator builds these pools once
(seeded, so deterministic) and combines entries with its own seeded `random.Random`. The locales are mixed so
non-ASCII names (Müller, Grégoire, ...) flow through every pipeline.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone

from faker import Faker

# Share of each locale in the pools (entries per 10).
LOCALE_WEIGHTS = (("en_US", 6), ("de_DE", 2), ("fr_FR", 2))

# Every generated timestamp lies in this fixed window (UTC) so a seed gives the same data on any day.
WINDOW_START = int(datetime(2022, 1, 1, tzinfo=timezone.utc).timestamp())
WINDOW_END = int(datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp())
DAY = 86_400


@dataclass(frozen=True)
class Person:
    first_name: str
    last_name: str
    email_local: str  # ASCII, e.g. "gregoire.colas"
    email_domain: str  # from the person's locale, e.g. "orange.fr"


@dataclass(frozen=True)
class Pools:
    people: tuple[Person, ...]
    phones: tuple[str, ...]
    words: tuple[str, ...]
    colors: tuple[str, ...]
    sentences: tuple[str, ...]


def ascii_slug(text: str) -> str:
    """'Grégoire' -> 'gregoire'; never empty."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", "", folded) or "user"


def _fakers(seed: int) -> list[tuple[Faker, int]]:
    fakers = []
    for index, (locale, weight) in enumerate(LOCALE_WEIGHTS):
        fake = Faker(locale)
        fake.seed_instance(seed * 31 + index)
        fakers.append((fake, weight))
    return fakers


def _draw(fakers: list[tuple[Faker, int]], per_weight: int, make) -> tuple:
    return tuple(make(fake) for fake, weight in fakers for _ in range(weight * per_weight))


def _person(fake: Faker) -> Person:
    first, last = fake.first_name(), fake.last_name()
    return Person(first, last, f"{ascii_slug(first)}.{ascii_slug(last)}", fake.free_email_domain())


def build_pools(seed: int, per_weight: int = 60) -> Pools:
    """Pools of about `10 * per_weight` entries each (fewer colors), deterministic for a seed."""
    fakers = _fakers(seed)
    small = max(1, per_weight // 6)
    return Pools(
        people=_draw(fakers, per_weight, _person),
        phones=_draw(fakers, per_weight, lambda f: f.phone_number()),
        words=_draw(fakers, per_weight, lambda f: f.word()),
        colors=_draw(fakers, small, lambda f: f.color_name()),
        sentences=_draw(fakers, per_weight // 2 or 1, lambda f: f.sentence(nb_words=10)),
    )
