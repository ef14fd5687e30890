"""The stack's Airflow API client against a stand-in server answering a login as Airflow does with other passwords."""
import dataclasses
import http.server
import threading

import pytest

from shopflow.config import get_settings
from shopflow.stack import airflow_api


class _Refusing(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"detail": "Invalid credentials"}')

    def log_message(self, *args):
        pass


def test_a_login_refused_after_the_password_changed_says_to_restart_airflow(tmp_path, monkeypatch, capsys):
    """passwords.json is written when Airflow starts: after AIRFLOW_ADMIN_PASSWORD changed, `make up` logged in with
    the new one, got a 401, and said to run `make up` again, which failed the same way."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = dataclasses.replace(get_settings(), LOCAL_STATE_DIR=str(tmp_path),
                                       AIRFLOW_PORT=server.server_address[1], AIRFLOW_ADMIN_USER="admin")
        with pytest.raises(RuntimeError, match=r"^Airflow refused the login of admin with AIRFLOW_ADMIN_USER/"
                                               r"AIRFLOW_ADMIN_PASSWORD as set now: .* run `make down`, then "
                                               r"`make up`"):
            airflow_api.AirflowClient(settings)
        from shopflow.stack import up
        for name, stub in (("check_ports", lambda _settings: None), ("ensure", lambda _settings, groups: None)):
            monkeypatch.setattr(up.manager, name, stub)
        monkeypatch.setattr(up, "_generate_data", lambda _settings: None)
        monkeypatch.setattr(up.airflow_api, "reserialize", lambda _settings: None)
        with pytest.raises(up.manager.StackError) as refused:  # `make up` added "`make up` again runs the DAGs"
            up.up(settings)
        assert str(refused.value).startswith("Airflow refused the login") and "make up` again" not in str(refused.value)
        assert "shopflow is up" not in capsys.readouterr().out  # its summary gave the login refused
    finally:
        server.shutdown()
