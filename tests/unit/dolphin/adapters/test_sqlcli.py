"""`dolphin sql`: a clear error without a warehouse; read-only queries print a table."""

import argparse

import duckdb

from dolphin.adapters import duckdb_sql as sqlcli


def _run(argv):
    ap = argparse.ArgumentParser()
    sqlcli.register(ap.add_subparsers())
    args = ap.parse_args(argv)
    return args.func(args)


def test_missing_warehouse_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DOLPHIN_HOME", str(tmp_path))
    monkeypatch.delenv("DOLPHIN_WAREHOUSE", raising=False)
    assert _run(["sql", "select 1"]) == 1
    err = capsys.readouterr().err
    assert f"no warehouse at {tmp_path / 'warehouse.duckdb'}" in err and "make dagster" in err
    assert not (tmp_path / "warehouse.duckdb").exists()  # read-only: never creates it


def test_query_prints_a_table_and_cannot_write(tmp_path, capsys):
    db = tmp_path / "w.duckdb"
    con = duckdb.connect(str(db))
    con.execute("create schema dolphin; create table dolphin.t as select * from range(3) r(x)")
    con.close()
    assert _run(["sql", "select x, x * 1.5 as y from dolphin.t order by x", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["x", "y"] and "(3 rows)" in out and "1.5" in out
    assert _run(["sql", "delete from dolphin.t", "--db", str(db)]) == 1
    assert "read-only" in capsys.readouterr().err.lower()
