"""Settings no local stack can run with, refused in one line before anything starts (`make up`, every ensure)."""
from __future__ import annotations

import ipaddress

from shopflow.config import Settings
from shopflow.stack.services import Service, StackError, kafka_host_port, spark_master_host_port


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name other than localhost
        return False


def check_layout(settings: Settings, services: list[Service]) -> None:
    """Settings no local stack can run with, in one line before anything starts: two services on one port (e.g.
    AIRFLOW_PORT=8081, the Spark master UI's), a port outside 1-65535, a listener off loopback."""
    owners: dict[int, str] = {}
    for service in services:
        for i, port in enumerate(service.ports):
            where = f"{service.name} ({service.port_settings[i] if i < len(service.port_settings) else 'fixed'})"
            if not 0 < port < 65536:
                raise StackError(f"{where}: port {port} is not a TCP port (1-65535); set another one in .env.")
            if owners.setdefault(port, where) != where:
                raise StackError(f"port {port} is given to both {owners[port]} and {where}; set one of them to "
                                 "another port in .env.")
    for key, (host, _port) in (("KAFKA_BOOTSTRAP_SERVERS", kafka_host_port(settings)),
                               ("SPARK_MASTER_URL", spark_master_host_port(settings))):
        if not _loopback(host):
            raise StackError(f"{key}: the local stack listens on 127.0.0.1 only, not on {host}; set "
                             f"{key} with host 127.0.0.1 in .env.")
