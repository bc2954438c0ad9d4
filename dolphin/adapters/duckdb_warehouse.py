"""The DuckDB warehouse file: open it safely, detect damage at open, rebuild what the ledger holds.

A damaged file must fail at once, naming the file -- not be retried for minutes like a lock held by a
Dagster step (a corrupt header), nor open and let a run report success while later SQL fails (a
truncated file: DuckDB reads the missing blocks only when a query touches them, so the file's size is
checked against the block count DuckDB expects).

`dolphin warehouse check` reports the state of the file; `dolphin warehouse rebuild` moves a damaged file
aside (``<file>.damaged-<UTC time>``, never deleted) and writes a new warehouse holding what the ledger
(the source of truth) holds: ``dolphin.capital_ledger_<s>`` for every strategy in it, and the
``..._latest`` view. The engine's tables (daily_pnl_blue, trades_blue) and the scan tables are derived
again by materialising their Dagster partitions (a backfill), which the command lists.
"""

import re
import time
from pathlib import Path

HEADER_BYTES = 3 * 4096  # DuckDB: main header + two database headers before the first block
# one row per strategy and day: the current result (latest version; a day voided by a rebase has none)
LATEST_VIEW_SQL = ("create or replace view dolphin.{t}_latest as select * from dolphin.{t} "
                   "qualify row_number() over (partition by strategy, day order by version desc) = 1 "
                   "and kind = 'day'")


class WarehouseError(RuntimeError):
    pass


class WarehouseCorrupt(WarehouseError):
    pass


def _is_lock(exc) -> bool:
    # DuckDB: 'Could not set lock on file ...: Conflicting lock is held' (not 'block at location ...')
    return re.search(r"\block\b", str(exc).lower()) is not None


def damaged(path, why) -> WarehouseCorrupt:
    return WarehouseCorrupt(
        f"warehouse {path} is damaged ({' '.join(str(why).split())[:300]}); rebuild it from the ledger with "
        f"`dolphin warehouse rebuild --db {path}` (the damaged file is moved aside, not deleted)")


def verify(con, path) -> None:
    """Raises WarehouseCorrupt when a table's data lives in a block beyond the end of the file (a truncated
    file: DuckDB reads data blocks only when a query touches them). The header's block count is no
    measure -- trailing free blocks are not on disk -- so the tables' own segment block ids are used."""
    try:
        block_size = int(con.execute("pragma database_size").fetchone()[2])
        top = -1
        for schema, table in con.execute("select schema_name, table_name from duckdb_tables() "
                                         "where database_name = current_database()").fetchall():
            name = f'"{schema}"."{table}"'.replace("'", "''")
            b = con.execute(f"select max(block_id) from pragma_storage_info('{name}') where persistent").fetchone()[0]
            top = max(top, -1 if b is None else int(b))
    except Exception as e:  # noqa: BLE001 - any failure to read the storage metadata is damage
        raise damaged(path, e) from None
    need = HEADER_BYTES + block_size * (top + 1)
    have = Path(path).stat().st_size
    if have < need:
        raise damaged(path, f"file is {have:,} bytes, its tables use block {top} = {need:,} bytes: truncated")


def connect(path, *, read_only: bool, wait_s: float = 5.0, config=None):
    """A verified DuckDB connection. Retried only while another process holds the lock (up to ``wait_s``);
    any other open error is damage: WarehouseCorrupt at once."""
    import duckdb

    path = Path(path)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=config or {})
            break
        except duckdb.Error as exc:
            if _is_lock(exc) and time.monotonic() < deadline:
                time.sleep(0.25)
                continue
            if _is_lock(exc):
                raise WarehouseError(f"cannot open {path}: another process holds it ({exc})") from None
            raise damaged(path, exc) from None
    if path.exists() and path.stat().st_size > 0:
        try:
            verify(con, path)
        except WarehouseCorrupt:
            con.close()
            raise
    return con


def ensure_latest_views(con) -> list:
    """``dolphin.capital_ledger_<s>_latest`` (one row per strategy and day: its latest version) for every
    capital_ledger table present; returns the views made."""
    tables = [r[0] for r in con.execute(
        "select table_name from information_schema.tables where table_schema = 'dolphin' "
        "and table_name like 'capital_ledger_%' and table_type = 'BASE TABLE'").fetchall()]
    for t in tables:
        con.execute(LATEST_VIEW_SQL.format(t=t))
    return [f"{t}_latest" for t in tables]


def behind_ledger(con, ledger_path) -> list:
    """Lines saying where the warehouse's capital_ledger tables miss ledger rows (a day killed between the
    ledger write and the export), [] when in step or when there is no ledger."""
    from dolphin.ledger import CapitalLedger

    if not Path(ledger_path).exists():
        return []
    book = CapitalLedger.existing(ledger_path)
    out = []
    for strategy in ledger_strategies(ledger_path):
        t = f"capital_ledger_{strategy.lower()}"
        have = con.execute("select count(*) from information_schema.tables where table_schema = 'dolphin' "
                           "and table_name = ?", [t]).fetchone()[0]
        seqs = set() if not have else {int(r[0]) for r in con.execute(f"select seq from dolphin.{t}").fetchall()}
        missing = [e for e in book.history(strategy) if e.seq not in seqs]
        if missing:
            days = sorted({e.day for e in missing})
            out.append(f"the warehouse is behind the ledger {ledger_path}: {len(missing)} {strategy} ledger row(s) "
                       f"not in dolphin.{t} (days {', '.join(days[:5])}{' ...' if len(days) > 5 else ''}); "
                       f"materialise capital_ledger_{strategy.lower()} for them")
    return out


def rebuild(path, ledger_path) -> dict:
    """Move a damaged ``path`` aside and write a new warehouse from the ledger. Returns what was done."""
    import duckdb

    from dolphin.ledger import CapitalLedger

    path, ledger_path = Path(path), Path(ledger_path)
    if not ledger_path.exists():
        raise WarehouseError(f"no ledger at {ledger_path}: nothing to rebuild the warehouse from")
    book = CapitalLedger.existing(ledger_path)
    moved = None
    if path.exists():
        try:
            connect(path, read_only=True, wait_s=0).close()
            healthy = True
        except WarehouseCorrupt:
            healthy = False
        if healthy:
            raise WarehouseError(f"warehouse {path} opens and verifies: not rebuilt (move it away yourself to force)")
        moved = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        path.rename(moved)
        wal = path.with_name(path.name + ".wal")
        if wal.exists():
            wal.rename(moved.with_name(moved.name + ".wal"))
    from dolphin_assets.assets.blue import _ledger_frame  # the asset's own export: identical columns

    tables = {}
    con = duckdb.connect(str(path))
    try:
        con.execute("create schema if not exists dolphin")
        for strategy in ledger_strategies(ledger_path):
            rows = book.history(strategy)
            if not rows:
                continue
            df = _ledger_frame(rows)  # noqa: F841 - read by DuckDB's replacement scan below
            t = f"capital_ledger_{strategy.lower()}"
            con.execute(f"create table dolphin.{t} as select * from df")
            tables[t] = len(rows)
        views = ensure_latest_views(con)
    finally:
        con.close()
    return {"moved": moved, "tables": tables, "views": views}


def ledger_strategies(ledger_path) -> list:
    import sqlite3

    con = sqlite3.connect(f"file:{Path(ledger_path)}?mode=ro", uri=True)
    try:
        has = con.execute("select 1 from sqlite_master where type = 'table' and name = 'ledger_days'").fetchone()
        return [r[0] for r in con.execute("select distinct strategy from ledger_days order by 1")] if has else []
    except sqlite3.Error as e:
        raise WarehouseError(f"ledger {ledger_path}: {e}") from None
    finally:
        con.close()


# ------------------------------------------------------------------ command line


def register(sub) -> None:
    p = sub.add_parser("warehouse", help="check the DuckDB warehouse file, or rebuild it from the capital ledger")
    p.add_argument("action", choices=("check", "rebuild"))
    p.add_argument("--db", default=None, help="warehouse file (default: <DOLPHIN_HOME>/warehouse.duckdb)")
    p.add_argument("--ledger", default=None, help="ledger file (default: <DOLPHIN_HOME>/ledger/ledger.sqlite)")
    p.set_defaults(func=cmd_warehouse)


def cmd_warehouse(args) -> int:
    import sys

    from dolphin.adapters.duckdb_sql import warehouse_path
    from dolphin.status import ledger_path

    path = Path(args.db).expanduser() if args.db else warehouse_path()
    led = Path(args.ledger).expanduser() if args.ledger else ledger_path()
    try:
        if args.action == "check":
            if not path.exists():
                print(f"no warehouse at {path}")
                return 1
            con = connect(path, read_only=True)
            try:
                behind = behind_ledger(con, led)
            finally:
                con.close()
            print(f"warehouse {path}: opens and verifies")
            for line in behind:
                print(f"WARNING: {line}")
            return 0
        done = rebuild(path, led)
    except WarehouseError as e:
        print(f"dolphin warehouse: error: {e}", file=sys.stderr)
        return 1
    if done["moved"]:
        print(f"damaged file moved to {done['moved']}")
    for t, n in done["tables"].items():
        print(f"rebuilt dolphin.{t}: {n} ledger row(s) from {led}")
    print(f"views: {', '.join(done['views']) or 'none'}")
    print("then re-derive the engine and scan tables: materialise their Dagster partitions (a backfill of "
          "eigen_scans, vol_regime, daily_pnl_blue, trades_blue), e.g. in the Dagster UI or `dagster asset "
          "materialize`")
    return 0
