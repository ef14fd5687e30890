#!/bin/bash
# First start of the mysql container: the read-only account for the dashboard and SQL clients (SELECT only), and
# PROCESS for the app account (a marts build blocked by other sessions' open transactions names them).
set -euo pipefail
escape() { printf "%s" "$1" | sed "s/\\\\/\\\\\\\\/g; s/'/''/g"; }
# the password through the environment, not -p: a command line is readable by every user (ps, /proc/<pid>/cmdline)
MYSQL_PWD="${MYSQL_ROOT_PASSWORD}" mysql --protocol=socket -uroot <<SQL
CREATE USER IF NOT EXISTS '${MARTS_READER_USER}'@'%' IDENTIFIED BY '$(escape "${MARTS_READER_PASSWORD}")';
GRANT SELECT ON \`${MYSQL_DATABASE}\`.* TO '${MARTS_READER_USER}'@'%';
GRANT PROCESS ON *.* TO '${MYSQL_USER}'@'%';
SQL
