"""`python -m bench.run`'s arguments, checked before anything runs (see `python -m bench.run --help`)."""
from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

from shopflow.config import get_settings
from shopflow.config_values import SettingsError

from . import report
from .common import SOURCE_SCHEMA

MEASURES = ("bound", "ours", "naive", "peer", "marts", "streaming")


def _number(kind, minimum: float, inclusive: bool = False):
    """argparse type: a `kind` number above `minimum` (or at least it, when `inclusive`)."""
    def parse(text: str):
        value = kind(text)  # a ValueError becomes argparse's "invalid <kind> value"
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"must be {'>=' if inclusive else '>'} {minimum:g}, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def _identifier(prefix: str = ""):
    """argparse type: a lower-case SQL identifier (it is written into DDL, where it cannot be a parameter)."""
    def parse(text: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", text) or not text.startswith(prefix):
            raise argparse.ArgumentTypeError(f"{text!r}: want lower-case letters, digits and _"
                                             + (f", starting with {prefix!r}" if prefix else ""))
        return text
    return parse


def parse_args(argv, description: str | None = None, live_schema: str | None = None):
    """`live_schema`: the stack's POSTGRES_SCHEMA (from the settings when None), which the bench must not touch."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=description)
    parser.add_argument("--scale", type=_number(float, 0), default=60.0,
                        help="datagen scale (60: about 1M order_details)")
    parser.add_argument("--skip", default="", help=f"comma separated, from {','.join(MEASURES)}")
    parser.add_argument("--no-generate", action="store_true", help="reuse the bench_source data as it is")
    parser.add_argument("--results-dir", type=Path, default=report.RESULTS_DIR)
    parser.add_argument("--keep", action="store_true",
                        help="keep the scratch databases, and the servers the bench started running")
    parser.add_argument("--repeat", type=_number(int, 1, inclusive=True), default=2,
                        help="attempts of bound, naive, peer, ours full and incremental, and marts; "
                             "the fastest is reported")
    parser.add_argument("--stream-events", type=_number(int, 1, inclusive=True), default=1_000_000,
                        help="backlog the stream drains")
    parser.add_argument("--stream-rate", type=_number(float, 0), default=1000, help="events/s of the continuous run")
    parser.add_argument("--stream-seconds", type=_number(float, 0), default=60, help="length of the continuous run")
    parser.add_argument("--stream-warmup", type=_number(float, 0, inclusive=True), default=30,
                        help="seconds at the same rate before the continuous run is measured (JIT warm-up)")
    parser.add_argument("--stream-trigger", type=_number(float, 0), default=None,
                        help="trigger interval (s) of the continuous run's job; default STREAMING_TRIGGER_SECONDS, "
                             "what `make stream` runs with (the DAG drains with availableNow instead)")
    parser.add_argument("--source-schema", type=_identifier(), default=SOURCE_SCHEMA,
                        help="Postgres schema to generate into")
    parser.add_argument("--target-prefix", type=_identifier("test_"), default="test_bench",
                        help="scratch MySQL databases <prefix>_<measure>")
    parser.add_argument("--allow-busy", action="store_true",
                        help="measure even while services the bench does not use (Airflow, eventgen, dashboard) run; "
                             "the results name them")
    args = parser.parse_args(argv)
    args.defaults = vars(parser.parse_args([]))  # unchecked (`unlike_the_issue`: the checks could refuse them)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = args.skip - set(MEASURES)
    if unknown:
        parser.error(f"unknown measure(s) in --skip: {', '.join(sorted(unknown))}")
    if args.skip >= set(MEASURES):
        parser.error("--skip names every measure: nothing to measure")
    try:
        settings = get_settings()
    except SettingsError as error:
        print(f"bench: bad setting: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.source_schema in {"source", live_schema or settings.POSTGRES_SCHEMA}:
        parser.error(f"--source-schema {args.source_schema}: that is the live source (POSTGRES_SCHEMA), and the bench "
                     "changes its source: it regenerates it, and changes 1 % of its rows before each incremental run "
                     f"(with --no-generate too). Use a schema of its own, e.g. the default {SOURCE_SCHEMA}.")
    if not args.no_generate:
        _check_scale(parser, settings, args.scale)
    if "streaming" not in args.skip:
        _check_stream_pace(parser, args)
    return args


def _check_scale(parser, settings, scale: float) -> None:
    """datagen's own cap, before the servers start: it refused only after them (a traceback at the end)."""
    from datagen.postgres import MAX_ROWS, over_the_cap
    if over := over_the_cap(settings, scale):
        table, rows = over
        parser.error(f"--scale {scale:g}: {table} would get {'too many' if rows is None else f'{rows:,}'} rows; "
                     f"the generator makes at most {MAX_ROWS:,} rows per table")


def _check_stream_pace(parser, args) -> None:
    """The continuous run sends rate x seconds events through datagen.events, which paces at most a day apart."""
    from shopflow.config_values import EVENT_INTERVAL_MAX_S
    if args.stream_rate * EVENT_INTERVAL_MAX_S < 1:
        parser.error(f"--stream-rate {args.stream_rate:g}: the event generator sends at least one event a day "
                     f"(--stream-rate >= {1 / EVENT_INTERVAL_MAX_S:.3g})")
    if int(args.stream_rate * args.stream_seconds) < 1:
        parser.error(f"--stream-rate {args.stream_rate:g} for --stream-seconds {args.stream_seconds:g} sends no event: "
                     "the continuous run needs at least one")


def unlike_the_issue(args, busy: list[str]) -> list[str]:
    """How a run into the default results directory differs from the issue's (its options not the defaults, other
    services beside it): such a run does not replace latest.json and the README's chart. Empty for another
    directory (the harness test's)."""
    if args.results_dir != report.RESULTS_DIR:
        return []
    changed = [f"--{name.replace('_', '-')} {getattr(args, name):g}" for name in
               ("scale", "repeat", "stream_events", "stream_rate", "stream_seconds", "stream_warmup")
               if getattr(args, name) != args.defaults[name]]
    if args.stream_trigger is not None:
        changed.append(f"--stream-trigger {args.stream_trigger:g}")
    if args.no_generate:  # an earlier run's source, of whatever scale it had
        changed.append("--no-generate")
    return changed + ([f"measured beside {', '.join(busy)}"] if busy else [])
