"""`python -m shopflow.stack.launch NAME`: exec one service with its environment computed now.

supervisord starts services through this launcher, so environments (JSON connection strings, secrets written at
first start) never pass through supervisord's config syntax.
"""
import os
import sys

from shopflow.config import get_settings
from shopflow.stack.services import all_services

if __name__ == "__main__":
    service = {s.name: s for s in all_services(get_settings())}[sys.argv[1]]
    os.execvpe(service.command[0], service.command, os.environ | service.env)
