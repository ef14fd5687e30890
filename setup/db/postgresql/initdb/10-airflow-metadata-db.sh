#!/bin/bash
# Runs once, when the postgres container initialises an empty data volume (docker-entrypoint-initdb.d).
# Creates Airflow's metadata database and its owner; the shopflow source schema is not made here:
# pg_datagen applies it (idempotently) before generating data.
# AIRFLOW_DB, AIRFLOW_DB_USER and AIRFLOW_DB_PASSWORD come from .env through docker-compose.yml.
set -eo pipefail

# The names and the password reach psql through its environment (\getenv, psql 15+), not --set: a command line is
# readable by every user (ps, /proc/<pid>/cmdline).
psql --set=ON_ERROR_STOP=1 --username="$POSTGRES_USER" --dbname="$POSTGRES_DB" <<'SQL'
\getenv db AIRFLOW_DB
\getenv owner AIRFLOW_DB_USER
\getenv password AIRFLOW_DB_PASSWORD
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'owner', :'password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner')\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')\gexec
SQL
