"""`make up`: servers, data, the event generator, one run of each DAG, then where to look."""
from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timezone
from functools import partial
from shlex import quote
from typing import Callable

from shopflow.config import Settings, database_url
from shopflow.stack import airflow_api, manager, supervisor
from shopflow.stack.lock import one_at_a_time
from shopflow.stack.manager import step
from shopflow.stack.services import all_services, base_env

DAG_TIMEOUT_S = 1800


def _generate_data(settings: Settings) -> None:
    with step("generate the Postgres source data (python -m datagen.postgres)"):
        result = subprocess.run([sys.executable, "-m", "datagen.postgres"], env=base_env(settings))
        if result.returncode != 0:
            raise manager.StackError(f"the Postgres data generator failed (exit {result.returncode})")


# Streaming first, so the users it brings in reach MySQL in the same `make up`.
DAG_ORDER = ("kafka_to_postgres_streaming", "replicate_postgres_to_mysql")
# The DAG whose task updates the Asset an Asset-scheduled DAG waits for (code/airflow/dags: REPLICA_ASSET).
ASSET_PRODUCERS = {"build_marts": "replicate_postgres_to_mysql"}


SCHEDULED_RUN_WAIT_S = 30  # how long the scheduler gets to start a DAG's due run after the DAG is unpaused


def _new_run(client, dag_id: str, known: set[str], timeout_s: float) -> str | None:
    """The id of a run of `dag_id` not in `known` once one shows up, None if none does within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        fresh = [r["dag_run_id"] for r in client.runs(dag_id) if r["dag_run_id"] not in known]
        if fresh or time.monotonic() > deadline:
            return fresh[0] if fresh else None
        time.sleep(1)


class ServiceEnded(RuntimeError):
    """A service the DAG runs need ended by itself while `make up` waited for one."""


def _services_alive(settings: Settings) -> None:
    """Raises when a service a DAG run needs ended by itself (supervisord restarts nothing): a run a dead scheduler
    or Spark cluster cannot finish held `make up` for its whole DAG_TIMEOUT_S, which then said the stack was up."""
    needed = [s.name for s in all_services(settings)
              if s.group not in ("eventgen", "dashboard") and s.name != "airflow-log-groomer"]
    if ended := supervisor.ended(settings, needed):
        raise ServiceEnded(f"{', '.join(ended)} ended by {'itself' if len(ended) == 1 else 'themselves'} while a "
                           f"DAG run was under way (log: {settings.state_dir / 'logs'}/<service>.log)")


def _unpause_and_run(client, dag_id: str, scheduled: bool, wait_s: float = SCHEDULED_RUN_WAIT_S,
                     alive: Callable[[], None] = lambda: None) -> str:
    """One run of `dag_id`. Unpausing a DAG whose schedule has a due interval makes the scheduler start that run at
    once (catchup is off): wait for it rather than trigger a second run beside it. Trigger one when the DAG has no
    time schedule, or when no run starts within `wait_s`."""
    with step(f"run DAG {dag_id}"):
        known = {r["dag_run_id"] for r in client.runs(dag_id)}
        client.unpause(dag_id)
        run_id = (_new_run(client, dag_id, known, wait_s) if scheduled else None) or client.trigger(dag_id)
        state = airflow_api.wait_for_run(client, dag_id, run_id, DAG_TIMEOUT_S, alive)
        print(f"  {dag_id} {run_id}: {state}", flush=True)
    return state


def _wait_asset_runs(client, dag_id: str, since: str, alive: Callable[[], None] = lambda: None) -> str:
    """An Asset-scheduled DAG starts by itself after its producer: wait for the run that follows ours."""
    with step(f"wait for DAG {dag_id} (scheduled by the Asset its producer updated)"):
        start = told = time.monotonic()
        while time.monotonic() < start + DAG_TIMEOUT_S:
            runs = [r for r in client.runs(dag_id) if (r.get("run_after") or "") >= since]
            if runs and runs[0]["state"] in ("success", "failed"):
                print(f"  {dag_id} {runs[0]['dag_run_id']}: {runs[0]['state']}", flush=True)
                return runs[0]["state"]
            time.sleep(5)
            alive()
            told = airflow_api.still_running(dag_id, runs[0]["state"] if runs else "not started yet", start, told)
    return "timed out"


def _asset_driven(dag: dict) -> bool:
    return "asset" in (dag.get("timetable_summary") or "").lower()


def _time_scheduled(dag: dict) -> bool:
    return str(dag.get("timetable_summary") or "None") != "None" and not _asset_driven(dag)


def _run_dags(settings: Settings) -> list[str]:
    """Runs each DAG once unless it already ran successfully; returns those whose run did not succeed."""
    rank = {dag_id: i for i, dag_id in enumerate(DAG_ORDER)}
    dag_ids = sorted(airflow_api.project_dag_ids(), key=lambda d: (rank.get(d, len(rank)), d))
    if not dag_ids:
        print("  no DAGs in code/airflow/dags yet: nothing to run", flush=True)
        return []
    with step(f"load DAGs into Airflow ({', '.join(dag_ids)})"):
        airflow_api.reserialize(settings)
        client = airflow_api.AirflowClient(settings)
        airflow_api.wait_for_dags(client, dag_ids)
    since = datetime.now(timezone.utc).isoformat()
    dags = client.dags()
    asset_driven = [d for d in dag_ids if _asset_driven(dags[d])]
    # "Run the DAGs once": a DAG that already has a successful run is left to its schedule (a warm `make up`).
    latest = {d: client.runs(d) for d in dag_ids}
    done = {d for d in dag_ids if any(r["state"] == "success" for r in latest[d])}
    for dag_id in dag_ids:
        # A time-scheduled DAG still to run stays paused until its turn: unpaused now, its due run would start at
        # once, beside the others and before the runs it should follow (streaming before replication).
        if dag_id in done or dag_id in asset_driven:
            client.unpause(dag_id)
        if dag_id in done:
            paused = dags[dag_id].get("is_paused")  # since its run (the UI, the CLI): undone, so said
            print(f"  {dag_id}: already ran successfully; " + ("it was paused and is unpaused now, so it runs on its "
                  "schedule (pause it again after `make up` if it should stay paused)" if paused else
                  "it now runs on its schedule"), flush=True)
            if latest[dag_id][0]["state"] == "failed":  # newest first
                print(f"    but its latest run, {latest[dag_id][0]['dag_run_id']}, failed: see its task log in the "
                      f"Airflow UI", flush=True)
    todo = [d for d in dag_ids if d not in done]
    triggered = [d for d in todo if d not in asset_driven]
    alive = partial(_services_alive, settings)
    states = {d: _unpause_and_run(client, d, scheduled=_time_scheduled(dags[d]), alive=alive) for d in triggered}
    for dag_id in (d for d in todo if d in asset_driven):
        # Its producer succeeded just now: wait for the Asset-triggered run. A producer that failed just now updated
        # no Asset, so nothing would start it. Otherwise (the producer ran before) start it by hand.
        producer = ASSET_PRODUCERS.get(dag_id)
        if producer in states and states[producer] != "success":
            print(f"  {dag_id}: not run, {producer} did not succeed", flush=True)
            states[dag_id] = "not run"
        else:
            states[dag_id] = (_wait_asset_runs(client, dag_id, since, alive) if producer in states
                               else _unpause_and_run(client, dag_id, scheduled=False, alive=alive))
    return [d for d, state in states.items() if state != "success"]


def summary(settings: Settings) -> str:
    s = settings
    # the password in the environment, not in psql's command line (which `ps` shows for the session's length; the
    # mysql client blanks its -p at start)
    url = database_url("postgresql", s.POSTGRES_USER, None, s.POSTGRES_HOST, s.POSTGRES_PORT, s.POSTGRES_DB)
    psql = f"PGPASSWORD={quote(s.POSTGRES_PASSWORD)} psql \"{url}?options=-csearch_path%3D{s.POSTGRES_SCHEMA}\""
    # --protocol=TCP: for the host `localhost` the client takes the system's socket and ignores -P (Debian's own
    # MariaDB, or none), not the stack's server
    mysql = (f"mysql --protocol=TCP -h {s.MYSQL_HOST} -P {s.MYSQL_PORT} -u {quote(s.MYSQL_USER)} "
             f"{quote('-p' + s.MYSQL_PASSWORD)} {quote(s.MYSQL_DATABASE)}")
    return f"""
shopflow is up.
  Airflow UI        http://127.0.0.1:{s.AIRFLOW_PORT}   login {s.AIRFLOW_ADMIN_USER} / {s.AIRFLOW_ADMIN_PASSWORD}
  Dashboard         http://127.0.0.1:{s.DASHBOARD_PORT}
  Spark master UI   http://127.0.0.1:{s.SPARK_MASTER_UI_PORT}
  Kafka             {s.KAFKA_BOOTSTRAP_SERVERS}   topic {s.KAFKA_TOPIC} (an event every {s.KAFKA_EVENT_INTERVAL_SECONDS:g} s)
  Postgres          {psql}
                    JDBC {s.postgres_jdbc_url}
  MySQL (MariaDB)   {mysql}
                    JDBC {s.mysql_jdbc_url}   read-only: {s.MARTS_READER_USER} / {s.MARTS_READER_PASSWORD}
  Status            make status        Logs  {s.state_dir / 'logs'}/
  Stop              make down
"""


@one_at_a_time
def up(settings: Settings) -> int:
    # The data first, Airflow after: a scheduler whose DAGs an earlier `make up` unpaused starts the streaming DAG's
    # due run at once, and streamed users in an empty source made the generator skip (it keeps rows it finds).
    manager.check_ports(settings)  # every group's, before anything starts
    manager.ensure(settings, [g for g in manager.GROUPS if g not in ("airflow", "eventgen", "dashboard")])
    _generate_data(settings)
    manager.ensure(settings, ["airflow"])
    with step("start the Kafka event generator"):
        manager.ensure(settings, ["eventgen"])
    try:
        failed, api_error = _run_dags(settings), None
    except RuntimeError as error:  # Airflow's API gave an error or no answer: the rest of the stack still starts
        failed, api_error = [], error
    with step("start the dashboard"):  # also after a failed run: its Pipeline health page shows why
        manager.ensure(settings, ["dashboard"])
    if isinstance(api_error, airflow_api.LoginRefused):  # its own remedy, not "`make up` again"
        raise manager.StackError(str(api_error))
    if isinstance(api_error, ServiceEnded):  # not "shopflow is up"
        raise manager.StackError(f"{api_error}. `make up` again starts it and runs the DAGs that have not succeeded "
                                 "yet; `make status` shows every service")
    print(summary(settings), flush=True)
    if api_error:
        raise manager.StackError(f"running the DAGs stopped: {api_error}. The rest of the stack is up: `make up` "
                                 "again runs the DAGs that have not succeeded yet")
    if failed:
        raise manager.StackError(f"DAG run(s) did not succeed: {', '.join(failed)}. The stack is up: the Airflow UI "
                                 "has the task logs, the dashboard's Pipeline health page the failed checks")
    return 0
