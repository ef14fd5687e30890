"""`datagen.postgres` interrupted by Ctrl-C while it loads: reported as an interrupt, and nothing changed."""
from __future__ import annotations

import pytest
from test_datagen_postgres import SEED, fingerprint, pg  # noqa: F401 (pg: the module's fixture)

pytestmark = pytest.mark.integration


def test_ctrl_c_during_the_load_is_reported_as_an_interrupt_and_changes_nothing(pg, monkeypatch, capsys):
    """The rows are generated inside the COPY, so a Ctrl-C nearly always landed there; psycopg2 made it a failed
    COPY, and the load said "Postgres refused the load ... error in .read() call: KeyboardInterrupt", exit 1."""
    import datagen.postgres as generator
    from shopflow.db import apply_postgres_schema

    apply_postgres_schema(pg)  # run alone, the module's schema is not made yet
    before = fingerprint(pg)
    real_generate = generator.generate

    def interrupted_in_the_second_table(*args):
        for index, (table, rows) in enumerate(real_generate(*args)):
            yield table, (rows if index == 0 else _interrupt_after(rows, 1_000))

    monkeypatch.setattr(generator, "generate", interrupted_in_the_second_table)
    monkeypatch.setattr(generator, "settings_or_exit", lambda prog: pg)
    with pytest.raises(SystemExit) as exited:
        generator.main(["--reset", "--seed", str(SEED + 1)])
    assert exited.value.code == 130
    assert capsys.readouterr().err.splitlines()[-1] == ("datagen.postgres: error: interrupted: nothing was loaded "
                                                        "(the load is one transaction)")
    assert fingerprint(pg) == before


def _interrupt_after(rows, count: int):
    for index, row in enumerate(rows):
        if index == count:
            raise KeyboardInterrupt
        yield row
