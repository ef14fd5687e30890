"""`make` alone lists the README's commands, each with its one-line description from the Makefile."""
from __future__ import annotations

import re
import subprocess

from shopflow.config import PROJECT_ROOT


def test_make_alone_lists_every_target_with_its_description():
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    phony = set(re.search(r"^\.PHONY: (.*)$", makefile, re.M)[1].split())
    described = dict(re.findall(r"^## ([a-z]+): (.*)$", makefile, re.M))
    assert set(described) == phony  # every target is described, every description is a target
    result = subprocess.run(["make", "--no-print-directory"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    listed = {line.split()[1]: line.split(None, 2)[2] for line in result.stdout.splitlines()}
    assert listed == described
