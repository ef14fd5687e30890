"""What a job's session refuses before Spark starts (one line and an exit code instead of pages of Java traces),
and where a driver run directly listens: split from session.py."""
from __future__ import annotations

import ipaddress
import os
import socket

MASTER_CONNECT_TIMEOUT_S = 5.0
RESTART_HINT = "`make status` shows it, `make up` starts it"  # ends every "a server is down" error of the jobs
# A job's exit code when a retry would fail the same way (a quality gate, tables that differ from the models): the DAGs'
# operator (code/airflow/dags/_spark.py) fails the task without Airflow's retries.
NO_RETRY_EXIT = 3


class SessionRefused(RuntimeError):
    """The session cannot start: the entry points log this one line and exit with `exit_code`."""
    exit_code = 2


class MasterUnreachable(SessionRefused):
    """The standalone master does not answer. Spark itself would retry for a minute and then fail with pages of
    Java stack traces; the entry points end with this one line and exit code 2 instead (a retry may find it up)."""


class MissingJars(SessionRefused):
    """spark-submit was not given the JDBC drivers the job needs: it would fail at its first JDBC read with a
    `ClassNotFoundException`. Exit 3: a retry of the same command line fails the same way."""
    exit_code = NO_RETRY_EXIT


def check_drivers(job: str, drivers: dict[str, str]) -> None:
    """Under spark-submit, before the context starts: raises MissingJars unless the JVM spark-submit started can load
    every JDBC driver class of `drivers` ({class: the settings' jar that holds it, for the message}). By class, not
    by file name: `--packages`, a renamed jar or Spark's own jars directory serve as well."""
    from pyspark import SparkContext

    jvm = SparkContext._jvm
    loader = jvm.org.apache.spark.util.Utils.getContextOrSparkClassLoader()
    missing = {}
    for name, jar in drivers.items():
        try:
            jvm.java.lang.Class.forName(name, False, loader)
        except Exception:  # py4j's error for the JVM's ClassNotFoundException
            missing[name] = jar
    if absent := [jar for jar in missing.values() if not os.path.isfile(jar)]:  # the DAG passes them: the path is off
        raise MissingJars(f"the JDBC driver jar(s) {', '.join(absent)} of the settings (POSTGRES_JDBC_JAR / "
                          "MYSQL_JDBC_JAR) do not exist: point them at the jars (`make install` puts Debian's in "
                          "/usr/share/java)")
    if missing:
        raise MissingJars(
            f"spark-submit was not given the JDBC driver(s) {', '.join(missing)}, which this job needs: add "
            f"`--jars {','.join(drivers.values())}`, or run `.venv/bin/python -m shopflow.jobs.{job}`, which "
            "takes the master, the jars and the JVM flags from .env")


def _master_addresses(master: str) -> list[tuple[str, str, str]]:
    """(address, host, port) of each master of a `spark://host:port[,host:port]` URL; none for another master."""
    addresses = master.removeprefix("spark://").split(",") if master.startswith("spark://") else []
    return [(address, *address.rpartition(":")[::2]) for address in addresses]


def check_master(master: str) -> None:
    """Raises MasterUnreachable when no master of a `spark://host:port[,host:port]` URL accepts a connection."""
    if not master.startswith("spark://"):
        return
    errors = []
    for address, host, port in _master_addresses(master):
        try:
            socket.create_connection((host, int(port)), timeout=MASTER_CONNECT_TIMEOUT_S).close()
            return
        except (OSError, ValueError) as error:
            errors.append(f"{address}: {error}")
    raise MasterUnreachable(f"cannot reach the Spark master at {master} ({'; '.join(errors)}); is it running? "
                            f"{RESTART_HINT}")


def bind_to_loopback(master: str) -> None:
    """A driver run directly (`make stream`, `python -m shopflow.jobs.…`) for a master on this host listens on
    127.0.0.1, as the stack's services do: without SPARK_LOCAL_IP, Spark took the host's first interface address for
    its RPC and block manager ports, and every interface for its UI (port 4040). The stack's services and the DAGs'
    spark-submit get SPARK_LOCAL_IP from `stack.services.base_env`; a value set by the user is kept."""
    hosts = [host for _address, host, _port in _master_addresses(master)]
    if master.startswith("local") or (hosts and _loopback(hosts[0])):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def _loopback(host: str) -> bool:
    """localhost, [::1] or any 127.x.y.z (the stack's master may listen on 127.0.0.2: `stack.layout` allows it)."""
    try:
        return host in ("localhost", "[::1]") or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name other than localhost
        return False
