"""`dolphin sql "<query>"`: ad-hoc SQL on the DuckDB warehouse the Dagster assets fill (read-only).

Tables (schema ``dolphin``): eigen_scans, vol_regime, daily_pnl_blue, trades_blue, capital_ledger_blue.
"""

import os
import sys
import time
from pathlib import Path

from dolphin.paths import data_home


class WarehouseError(RuntimeError):
    pass


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

    path = Path(db) if db else warehouse_path()
    if not path.exists():
        raise WarehouseError(f"no warehouse at {path}: materialise the Dagster assets first (make dagster), "
                             f"or pass --db")
    for i in range(attempts):
        try:
            con = duckdb.connect(str(path), read_only=True)
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or i == attempts - 1:
                raise WarehouseError(f"cannot open {path}: {exc}") from None
            time.sleep(0.25)
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


def cmd_sql(args) -> int:
    from dolphin.metrics.fmt import text_table

    try:
        cols, rows = query(args.query, args.db)
    except WarehouseError as exc:
        print(f"dolphin sql: error: {exc}", file=sys.stderr)
        return 1
    if not cols:
        print("ok")
        return 0
    shown = rows[:args.max_rows]
    print(text_table(cols, [[_cell(v) for v in r] for r in shown], align=["l"] * len(cols)))
    more = f" (first {len(shown)} shown; --max-rows)" if len(rows) > len(shown) else ""
    print(f"({len(rows)} row{'s' if len(rows) != 1 else ''}{more})")
    return 0
