"""`bench --no-generate`: the source of an earlier run is checked before anything is measured (bench/common.py)."""
from __future__ import annotations

import subprocess
import sys

import pytest
from replication_support import pg, scratch, seed  # noqa: F401

from bench.common import check_source
from shopflow.config import PROJECT_ROOT
from shopflow.db import pg_connection

pytestmark = pytest.mark.integration


def test_no_generate_without_the_source_data_says_how_to_get_it(postgres, mysql, tmp_path):
    run = subprocess.run([sys.executable, "-m", "bench.run", "--no-generate", "--allow-busy",
                          "--skip", "naive,peer,marts,streaming,ours", "--source-schema", "bench_never_generated",
                          "--target-prefix", "test_benchnone", "--results-dir", str(tmp_path / "results")],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    assert ("the Postgres schema bench_never_generated lacks the table(s) users, product_categories, products, orders, "
            "order_details, reviews, loyalty_points. Run the bench once without --no-generate and with "
            "--source-schema bench_never_generated: it generates the data.") in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "results").exists()


def test_no_generate_takes_a_source_with_rows_and_refuses_one_without(postgres, scratch):  # noqa: F811
    """`check_source` on a schema with the tables but no rows, then with rows (which also gets the current DDL)."""
    with pytest.raises(SystemExit, match=f"the Postgres schema {scratch.POSTGRES_SCHEMA} has no order_details rows"):
        check_source(postgres, scratch.POSTGRES_SCHEMA)
    seed(scratch)
    pg(scratch, "DROP TABLE {s}.deleted_rows_horizon")
    check_source(postgres, scratch.POSTGRES_SCHEMA)
    with pg_connection(postgres) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{scratch.POSTGRES_SCHEMA}.deleted_rows_horizon",))
        assert cur.fetchone()[0], "the reused source's DDL is brought up to date"
