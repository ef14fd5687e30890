"""Airflow's REST API (v2) as `make up` uses it: log in, unpause and trigger the project's DAGs, wait for runs."""
from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from shopflow.config import PROJECT_ROOT, Settings
from shopflow.stack.services import VENV_BIN, airflow_env
from shopflow.stack.supervisor import read_launch

DAGS_DIR = PROJECT_ROOT / "code" / "airflow" / "dags"
NO_ANSWER_RETRY_S = 120  # a call without an answer is tried again for this long (`make up` waits up to 30 min)
NO_ANSWER_PAUSE_S = 5


class LoginRefused(RuntimeError):
    """Airflow refused the settings' login: its only remedy is a restart of Airflow, not another `make up`."""


class AirflowClient:
    def __init__(self, settings: Settings):
        self.base = f"http://127.0.0.1:{settings.AIRFLOW_PORT}"
        self.log = settings.state_dir / "logs" / "airflow-api-server.log"
        self.token = self._login(settings.AIRFLOW_ADMIN_USER, settings.AIRFLOW_ADMIN_PASSWORD)

    def _login(self, user: str, password: str) -> str:
        try:
            return self.call("POST", "/auth/token", {"username": user, "password": password},
                             auth=False)["access_token"]
        except RuntimeError as error:  # the running Airflow keeps the user it started with
            if ": 401 " not in str(error):
                raise
            raise LoginRefused(f"Airflow refused the login of {user} with AIRFLOW_ADMIN_USER/AIRFLOW_ADMIN_PASSWORD "
                               "as set now: a running Airflow keeps the user it started with (`make up` gives it a "
                               "new password), so after changing AIRFLOW_ADMIN_USER run `make down`, then `make up` "
                               "(`make up` alone fails the same way)") from None

    def call(self, method: str, path: str, body: dict | None = None, auth: bool = True) -> dict:
        """One API call. No answer (the API server restarting, a refused connection, a 30 s timeout) is retried for
        NO_ANSWER_RETRY_S, except a trigger (a POST that may have created its run before the answer was lost): then,
        or once the time is up, RuntimeError naming the call."""
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        deadline = time.monotonic() + (NO_ANSWER_RETRY_S if method != "POST" or not auth else 0)
        while True:
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return json.loads(response.read() or b"{}")
            except urllib.error.HTTPError as error:
                raise RuntimeError(f"Airflow API {method} {path}: {error.code} {error.read()[:300]!r}") from None
            except (urllib.error.URLError, OSError) as error:  # URLError wraps a refusal; a timeout comes bare
                if time.monotonic() >= deadline:
                    reason = getattr(error, "reason", error)
                    raise RuntimeError(f"Airflow API {method} {path}: no answer from {self.base} ({reason}); "
                                       f"`make status` shows whether airflow-api-server runs, {self.log} what it "
                                       "said") from None
                time.sleep(NO_ANSWER_PAUSE_S)

    def dags(self) -> dict[str, dict]:
        return {d["dag_id"]: d for d in self.call("GET", "/api/v2/dags?limit=100")["dags"]}

    def unpause(self, dag_id: str) -> None:
        self.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str) -> str:
        return self.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None})["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict]:
        return self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns?order_by=-run_after&limit=5")["dag_runs"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]


def project_dag_ids() -> list[str]:
    """DAG ids declared in code/airflow/dags (file stem = dag id, by convention)."""
    return sorted(p.stem for p in Path(DAGS_DIR).glob("*.py") if not p.name.startswith("_"))


def reserialize(settings: Settings) -> None:
    """On a fresh metadata DB unpause/list silently do nothing until DAGs are serialized (PLATFORM.md). With the
    environment the dag-processor was started with (its launch file): with the current settings, a `make up` after a
    schedule changed in .env while Airflow ran serialized the new schedule, which the dag-processor, still on the
    old one, put back within ~30 s (two DAG versions, and the new timetable in between)."""
    env = airflow_env(settings)
    try:
        env |= read_launch(settings, "airflow-dag-processor")["env"]
    except (OSError, ValueError, KeyError):  # not started by the stack yet: it starts with the current settings
        pass
    done = subprocess.run([str(VENV_BIN / "airflow"), "dags", "reserialize"], env=env, capture_output=True, text=True)
    if done.returncode:  # was a CalledProcessError traceback, with Airflow's own message captured and never shown
        last = "\n".join((done.stderr or done.stdout).strip().splitlines()[-10:])
        raise RuntimeError(f"`airflow dags reserialize` exited {done.returncode}:\n{last}")


def wait_for_dags(client: AirflowClient, dag_ids: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while missing := [d for d in dag_ids if d not in client.dags()]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"Airflow did not load DAG(s) {missing}; run `make airflow ARGS='dags list-import-errors'`")
        time.sleep(3)


PROGRESS_S = 60


def still_running(dag_id: str, state: str, start: float, told: float) -> float:
    """A line every PROGRESS_S while a DAG run is not over (`make up` waited up to 30 minutes a DAG without a word);
    returns when it last said so."""
    now = time.monotonic()
    if now - told < PROGRESS_S or state in ("success", "failed"):
        return told
    print(f"  {dag_id}: {state} after {now - start:.0f} s (its task log: the Airflow UI, Grid)", flush=True)
    return now


def wait_for_run(client: AirflowClient, dag_id: str, run_id: str, timeout: float,
                 alive: Callable[[], None] = lambda: None) -> str:
    """The run's end state, or its state when `timeout` ran out; `alive` raises when the run cannot end (a service
    it needs ended: `make up` waited its whole timeout on a run a dead scheduler would never finish)."""
    start, state = time.monotonic(), "queued"
    told = start
    while state not in ("success", "failed") and time.monotonic() < start + timeout:
        time.sleep(5)
        state = client.run_state(dag_id, run_id)
        if state not in ("success", "failed"):
            alive()
        told = still_running(dag_id, state, start, told)
    return state
