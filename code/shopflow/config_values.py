"""Parsers of setting values for `shopflow.config.Settings`: each takes the key and the raw text and returns the value
or raises `SettingsError` with one line naming the key.
"""
from __future__ import annotations

import argparse
import base64
import dataclasses
import ipaddress
import math
import re


class SettingsError(ValueError):
    """A setting is missing or malformed; the message is one line naming the key."""


def number(key: str, raw: str, cast, expected: str):
    try:
        value = cast(raw)
    except ValueError:
        raise SettingsError(f"{key}={raw!r}: expected {expected}") from None
    if not math.isfinite(value):  # float('nan') and float('inf') parse, and nan passes every comparison's `not`
        raise SettingsError(f"{key}={raw!r}: expected a finite number")
    return value


def option(parse, *args):
    """A setting's parser as an argparse `type`: `--trigger-seconds 0` says `argument --trigger-seconds: '0': must be
    greater than 0`, as the setting would."""
    def parsed(raw: str):
        try:
            return parse("", raw, *args)
        except SettingsError as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix("=")) from None
    parsed.__name__ = parse.__name__
    return parsed


def not_negative(key: str, raw: str, cast, expected: str):
    value = number(key, raw, cast, expected)
    if value < 0:
        raise SettingsError(f"{key}={raw!r}: must not be negative")
    return value


def positive_int(key: str, raw: str) -> int:
    """A whole number >= 0 (the name is older than the rule)."""
    return not_negative(key, raw, int, "a whole number")


def at_least_one(key: str, raw: str) -> int:
    """A count of things that must exist (workers, cores, partitions, parallel tasks): a whole number >= 1."""
    value = positive_int(key, raw)
    if value < 1:
        raise SettingsError(f"{key}={raw!r}: must be at least 1")
    return value


def port(key: str, raw: str) -> int:
    value = positive_int(key, raw)
    if not 1 <= value <= 65535:
        raise SettingsError(f"{key}={raw!r}: a port must be between 1 and 65535")
    return value


def positive_float(key: str, raw: str) -> float:
    value = number(key, raw, float, "a number")
    if value <= 0:
        raise SettingsError(f"{key}={raw!r}: must be greater than 0")
    return value


def non_negative_float(key: str, raw: str) -> float:
    return not_negative(key, raw, float, "a number")


def text(key: str, raw: str) -> str:
    if not raw.strip():
        raise SettingsError(f"{key} is empty")
    return raw.strip()


def host(key: str, raw: str) -> str:
    """A server's host name or IP address; an IPv6 address with or without its brackets (`url_host` adds them where
    a URL needs them). Anything else (a scheme, a port, a path, a space) is refused here rather than built into a
    URL that points somewhere else."""
    value = text(key, raw)
    bare = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    if value != bare or not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", value):
        raise SettingsError(f"{key}={raw!r}: expected a host name or an IP address, like 127.0.0.1")
    return value


def url_host(host: str) -> str:
    """`host` as the authority part of a URL: an IPv6 address in brackets (`[::1]`), the rest as it is."""
    return f"[{host}]" if ":" in host else host


def address(host: str, port: int) -> str:
    """`host:port` for messages, an IPv6 host in brackets (`[::1]:5432`)."""
    return f"{url_host(host)}:{port}"


AIRFLOW_ONLY_PRESETS = ("@once", "@continuous", "@quarterly")  # Airflow's own presets, which croniter does not know


def schedule(key: str, raw: str) -> str:
    """A DAG schedule as Airflow takes it: a cron expression or a preset (@hourly, @daily, @once, ...)."""
    value = text(key, raw)
    if value in AIRFLOW_ONLY_PRESETS:
        return value
    try:
        from croniter import croniter  # Airflow's own dependency
    except ImportError:  # an image without Airflow: its DAGs are not parsed here
        return value
    try:
        croniter(value)
    except ValueError as error:
        raise SettingsError(f"{key}={raw!r}: expected a cron expression like '*/15 * * * *' or a preset like "
                            f"@hourly ({error})") from None
    return value


def topic(key: str, raw: str) -> str:
    """A Kafka topic name as Kafka accepts it (tansu takes any text, a real broker would refuse the topic)."""
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", raw) or raw in (".", ".."):
        raise SettingsError(f"{key}={raw!r}: expected a Kafka topic name (letters, digits, '.', '_', '-'; at most 249)")
    return raw


def fernet_key(key: str, raw: str) -> str:
    """Airflow encrypts connections with it: 32 bytes in URL-safe base64, as Fernet.generate_key() makes them."""
    try:
        valid = len(base64.urlsafe_b64decode(raw.encode("ascii"))) == 32 and len(raw) == 44
    except (ValueError, UnicodeEncodeError):
        valid = False
    if not valid:
        raise SettingsError(f"{key}: expected a Fernet key (44 characters of URL-safe base64), as made by "
                            "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'")
    return raw


def identifier(key: str, raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", raw):
        raise SettingsError(f"{key}={raw!r}: expected a plain SQL identifier (letters, digits, _)")
    return raw


# Role names Postgres refuses to create, quoted as we create them ("role name ... is reserved"): after the refusal
# its log held the statement with the password, and `make up` ended in a traceback
PG_RESERVED_ROLES = frozenset({"public", "none"})


def pg_role(key: str, raw: str) -> str:
    name = identifier(key, raw)
    if name.startswith("pg_") or name in PG_RESERVED_ROLES:
        reserved = ", ".join(sorted(PG_RESERVED_ROLES))
        raise SettingsError(f"{key}={raw!r}: Postgres reserves this role name (pg_*, {reserved}): pick another")
    return name


# Postgres 15's reserved keywords and those that cannot name a type or function (pg_get_keywords(), catcode R and T):
# neither can name a schema unquoted, and our SQL does not quote it.
PG_RESERVED = frozenset("""all analyse analyze and any array as asc asymmetric authorization binary both case cast check
collate collation column concurrently constraint create cross current_catalog current_date current_role current_schema
current_time current_timestamp current_user default deferrable desc distinct do else end except false fetch for
foreign freeze from full grant group having ilike in initially inner intersect into is isnull join lateral leading
left like limit localtime localtimestamp natural not notnull null offset on only or order outer overlaps placing
primary references returning right select session_user similar some symmetric table tablesample then to trailing
true union unique user using variadic verbose when where window with""".split())


def pg_schema(key: str, raw: str) -> str:
    """A schema name our unquoted SQL can use as it is: Postgres folds an unquoted name to lower case (while the
    catalog lookups compare it as given), and a reserved word fails at the first statement."""
    identifier(key, raw)
    if raw != raw.lower():
        raise SettingsError(f"{key}={raw!r}: expected lower case (Postgres folds unquoted names to lower case): "
                            f"{raw.lower()!r}")
    if raw in PG_RESERVED:
        raise SettingsError(f"{key}={raw!r}: a reserved word in Postgres, which cannot name a schema unquoted; "
                            f"pick another name (e.g. {raw}_data)")
    return raw


def lock_timeout_seconds(key: str, raw: str) -> float:
    """A Postgres `lock_timeout` in seconds: 1 ms to 2^31-1 ms (Postgres' range; 0, its "no timeout", would let a run
    wait for good behind a queued TRUNCATE or ALTER, which is what the setting prevents)."""
    value = number(key, raw, float, "a number")
    if not 0.001 <= value <= 2_147_483:
        raise SettingsError(f"{key}={raw!r}: must be between 0.001 and 2147483 (seconds)")
    return value


EVENT_INTERVAL_MAX_S = 86_400  # a sleep past time_t's range (≈ 9.2e9 s) crashed the event generator


def event_interval_seconds(key: str, raw: str) -> float:
    """Seconds between two generated events: more than 0, at most a day."""
    value = positive_float(key, raw)
    if value > EVENT_INTERVAL_MAX_S:
        raise SettingsError(f"{key}={raw!r}: one event a day ({EVENT_INTERVAL_MAX_S} s between events) is the "
                            "slowest pace")
    return value


def bootstrap_servers(key: str, raw: str) -> str:
    """host:port[,host:port…]: the local stack starts its broker on the first one's port."""
    addresses = [address.strip() for address in text(key, raw).split(",")]
    for address in addresses:
        host, _, number_text = address.rpartition(":")
        if not host or not number_text.isdigit() or not 1 <= int(number_text) <= 65535:
            raise SettingsError(f"{key}={raw!r}: expected host:port[,host:port...] like 127.0.0.1:9092, "
                                f"got {address!r}")
    return ",".join(addresses)


def streaming_source(key: str, raw: str) -> str:
    if raw not in ("python", "kafka"):
        raise SettingsError(f"{key}={raw!r}: expected python (the job's own reader, librdkafka) "
                            "or kafka (Spark's connector jar)")
    return raw


def write_path(key: str, raw: str) -> str:
    if raw not in ("copy", "jdbc"):
        raise SettingsError(f"{key}={raw!r}: expected copy (COPY -> LOAD DATA in Spark tasks) or jdbc (Spark JDBC)")
    return raw


def setting(parse, default=None):
    return dataclasses.field(default=default, metadata={"parse": parse})


def env_value(raw: str) -> str:
    """A value as docker compose reads it from the same file: quoted, what is between the quotes; unquoted, up to a
    `#` after whitespace (an inline comment). Otherwise verbatim: no escapes, no variables."""
    raw = raw.strip()
    if raw[:1] in ("'", '"') and (quoted := re.fullmatch(rf"{raw[0]}(.*?){raw[0]}\s*(?:#.*)?", raw)):
        return quoted.group(1)
    return re.split(r"\s+#", raw, maxsplit=1)[0]
