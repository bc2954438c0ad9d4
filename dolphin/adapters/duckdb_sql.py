"""`dolphin sql "<query>"`: ad-hoc SQL on the DuckDB warehouse the Dagster assets fill (read-only).

Tables (schema ``dolphin``): eigen_scans, vol_regime, daily_pnl_blue, trades_blue, capital_ledger_blue.
"""

import os
import sys
import time
from pathlib import Path

from dolphin.paths import data_home


from dolphin.adapters.duckdb_warehouse import WarehouseCorrupt, WarehouseError  # noqa: F401 - re-exported


def warehouse_path() -> Path:
    """``DOLPHIN_WAREHOUSE``, else ``<data home>/warehouse.duckdb``."""
    env = os.environ.get("DOLPHIN_WAREHOUSE")
    return Path(env).expanduser() if env else data_home() / "warehouse.duckdb"


def register(sub) -> None:
    p = sub.add_parser("sql", help="run SQL on the DuckDB warehouse (read-only; tables in schema dolphin)")
    p.add_argument("query", help='e.g. "select * from dolphin.daily_pnl_blue order by day"')
    p.add_argument("--db", default=None, help="warehouse file (default: <DOLPHIN_HOME>/warehouse.duckdb)")
    p.add_argument("--max-rows", type=int, default=200, help="rows printed (default 200)")
    p.set_defaults(func=cmd_sql)


def query(sql: str, db=None, *, attempts: int = 20):
    """(columns, rows) of ``sql`` on the warehouse opened read-only. A Dagster step holding the write lock
    makes the open fail for a moment: retried briefly."""
    import duckdb

    from dolphin.adapters.duckdb_warehouse import connect

    if not sql or not sql.strip():
        raise WarehouseError('empty query: give SQL, e.g. dolphin sql "select * from dolphin.daily_pnl_blue"')
    path = Path(db) if db else warehouse_path()
    if not path.exists():
        raise WarehouseError(f"no warehouse at {path}: materialise the Dagster assets first (make dagster), "
                             f"or pass --db")
    if path.is_dir():
        raise WarehouseError(f"warehouse {path} is a folder, not a DuckDB file")
    con = connect(path, read_only=True, wait_s=attempts * 0.25)  # damage: WarehouseCorrupt at once
    try:
        cur = con.execute(sql)
        cols = [d[0] for d in cur.description] if cur.description else []
        return cols, cur.fetchall()
    except duckdb.Error as exc:
        raise WarehouseError(f"query failed: {exc}") from None
    finally:
        con.close()


def _cell(v) -> str:
    from dolphin.metrics.fmt import fmt_num

    if isinstance(v, float):
        return fmt_num(v, 6)
    return "NULL" if v is None else str(v)


def behind_warnings(db=None) -> list:
    """Where the warehouse misses rows the ledger holds ([] when it cannot tell)."""
    from dolphin.status import ledger_path
    from dolphin.adapters.duckdb_warehouse import behind_ledger, connect

    path = Path(db) if db else warehouse_path()
    try:
        con = connect(path, read_only=True, wait_s=1.0)
    except WarehouseError:
        return []
    try:
        return behind_ledger(con, ledger_path())
    except Exception as e:  # noqa: BLE001 - the query result matters more than this check
        return [f"could not compare the warehouse with the ledger: {type(e).__name__}: {e}"]
    finally:
        con.close()


def cmd_sql(args) -> int:
    from dolphin.metrics.fmt import text_table

    try:
        cols, rows = query(args.query, args.db)
    except WarehouseError as exc:
        print(f"dolphin sql: error: {exc}", file=sys.stderr)
        return 1
    for line in behind_warnings(args.db):
        print(f"dolphin sql: WARNING: {line}", file=sys.stderr)
    if not cols:
        print("ok")
        return 0
    shown = rows[:args.max_rows]
    print(text_table(cols, [[_cell(v) for v in r] for r in shown], align=["l"] * len(cols)))
    more = f" (first {len(shown)} shown; --max-rows)" if len(rows) > len(shown) else ""
    print(f"({len(rows)} row{'s' if len(rows) != 1 else ''}{more})")
    return 0
