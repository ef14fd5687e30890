"""`shopflow.stack.launch`, as supervisord runs it: the service gets what `make up` resolved, not supervisord's
environment (no server needed)."""
import dataclasses
import json
import os
import subprocess
import sys

from shopflow.config import PROJECT_ROOT, get_settings
from shopflow.stack import supervisor
from shopflow.stack.services import Service


def test_a_service_starts_with_the_settings_of_this_make_up_not_those_supervisord_inherited(tmp_path):
    """Seen: `make up` interrupted, then `DASHBOARD_PORT=8601 make up` — the port check and the readiness probe used
    8601, but streamlit started on 8501 from supervisord's environment (that of the first `make up`)."""
    settings = dataclasses.replace(get_settings(), LOCAL_STATE_DIR=str(tmp_path))
    show = "import json, os, sys; print(json.dumps([sys.argv[1], os.environ['DASHBOARD_PORT'], os.environ['KEEP']]))"
    service = Service("dashboard", [sys.executable, "-c", show, "--port=8601"], (8601,), "dashboard",
                      env={"DASHBOARD_PORT": "8601"})
    supervisor.write_launch(settings, service)
    assert oct(supervisor.launch_file(settings, "dashboard").stat().st_mode & 0o777) == "0o600"  # it holds passwords

    supervisord_env = os.environ | {"DASHBOARD_PORT": "8501", "KEEP": "inherited", "LOCAL_STATE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "shopflow.stack.launch", "dashboard"], env=supervisord_env,
                         cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == ["--port=8601", "8601", "inherited"]
