"""`python -m shopflow.stack.launch NAME`: exec one service with the command and environment `make up` resolved for it.

supervisord starts services through this launcher, so environments (JSON connection strings, secrets written at
first start) never pass through supervisord's config syntax. `manager.ensure` writes them (`supervisor.write_launch`)
just before it starts the service: computed here instead, from supervisord's environment, the settings of the
`make up` that started supervisord would win over the current ones. Without that file (a start through supervisorctl
by hand) they are computed here, as before.
"""
import os
import sys

from shopflow.config import get_settings
from shopflow.stack.services import all_services
from shopflow.stack.supervisor import read_launch

if __name__ == "__main__":
    name, settings = sys.argv[1], get_settings()
    try:
        spec = read_launch(settings, name)
        command, env = spec["command"], spec["env"]
    except FileNotFoundError:
        service = {s.name: s for s in all_services(settings)}[name]
        command, env = service.command, service.env
    os.execvpe(command[0], command, os.environ | env)
