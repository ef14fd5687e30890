# shopflow — the README's commands. Everything runs from the locked environment in .venv.
SHELL := /bin/bash
PY := .venv/bin/python
APT_PACKAGES := postgresql mariadb-server mariadb-client libpostgresql-jdbc-java libmariadb-java openjdk-17-jre-headless iproute2 chromium chromium-driver python3-pip
# uv from PATH, else the one `make install` puts in the user's site-packages (Debian's python3 is externally managed)
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
SCALE ?=

.PHONY: help install up down status test bench airflow stream
.DEFAULT_GOAL := help

# Commands that only use the environment: a fresh clone says what to run first instead of "No such file".
NEED_VENV = @[ -x $(PY) ] || { echo "no .venv in this checkout yet: run \`make install\` (or \`make up\`) first" >&2; \
	exit 2; }

## help: this list (`make` alone)
help:
	@sed -n 's/^## \([a-z]*\): /  make \1\t/p' $(MAKEFILE_LIST) | expand -t 16

## install: Debian packages and the locked Python environment (idempotent, fast when done)
install:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages (a few minutes on a fresh machine): $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@command -v uv >/dev/null || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q --user uv 2>/dev/null \
	  || python3 -m pip install -q --user --break-system-packages uv
	@if [ -x $(PY) ] && [ .venv/.synced -nt uv.lock ]; then $(UV) sync --frozen --quiet; \
	elif [ -x $(PY) ]; then echo "updating .venv to uv.lock (a few minutes when large wheels changed)"; \
	  $(UV) sync --frozen && touch .venv/.synced; else \
	  echo "creating the Python environment in .venv (about 1.7 GB; a few minutes on a fresh machine)"; \
	  $(UV) sync --frozen && touch .venv/.synced; fi

## up: start the whole local stack, load data, run the DAGs once, print URLs
up: install
	@$(PY) -m shopflow.stack up

## down: stop everything this checkout started
down:
	@if [ -x $(PY) ]; then $(PY) -m shopflow.stack down; else echo "no .venv, so nothing could be stopped: if the \
	stack still runs (\`pgrep -af $(CURDIR)\`), \`make install\` then \`make down\` stops it"; fi

## status: each service, its state, port and pid; jobs run by hand (make stream)
status:
	$(NEED_VENV)
	@$(PY) -m shopflow.stack status

## test: the whole suite; starts the servers it needs and stops what it started
test: install
	@$(PY) -m pytest $(PYTEST_ARGS)

## stream: the streaming job in continuous mode (processingTime trigger), outside Airflow; Ctrl-C (or make down) stops it
stream:
	$(NEED_VENV)
	@$(PY) -m shopflow.jobs.stream_users --continuous

## bench: replication, streaming and marts speed side by side (SCALE=60 ≈ 1M order_details; bench/results/)
bench: install
	@$(PY) -m bench.run $(if $(SCALE),--scale $(SCALE)) $(BENCH_ARGS)

## airflow: the airflow CLI with the stack's environment, e.g. make airflow ARGS="dags list"
airflow:
	$(NEED_VENV)
	@$(PY) -m shopflow.stack airflow $(ARGS)
