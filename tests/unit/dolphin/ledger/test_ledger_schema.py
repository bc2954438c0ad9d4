"""Schema versions of the SQLite files DOLPHIN keeps (dolphin.ledger.db, dolphin.ledger.schema): files written
by the OLD code (its DDL written out here literally, with rows, unversioned) are migrated up with their rows
intact; a file from a later DOLPHIN is refused and left byte-identical; a migration failing half-way leaves the
file byte-identical; re-opening a current file writes nothing."""

import sqlite3
import threading

import pytest

from dolphin.ledger import CapitalLedger, DayRecord
from dolphin.ledger.db import Migration, MigrationError, Schema, SchemaVersionError, init, layout_of
from dolphin.ledger.journal import FillJournal, JournalEvent
from dolphin.ledger.schema import LEDGER, V3_SAFETY_OVERRIDES
from dolphin.adapters.safety_override_sqlite import list_overrides, set_override

# ---------------------------------------------------------------- the old code's files, as it wrote them

# dolphin/ledger/sqlite.py as of 02d5350 (2026-11-22)
OLD_LEDGER_DAYS = """
CREATE TABLE IF NOT EXISTS ledger_days (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,  -- global append order
    strategy        TEXT    NOT NULL,
    day             TEXT    NOT NULL,                   -- UTC day, YYYY-MM-DD
    version         INTEGER NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('day', 'void')),
    recorded_at     TEXT    NOT NULL,                   -- ISO 8601 UTC
    run_id          TEXT,
    note            TEXT    NOT NULL DEFAULT '',
    opening_equity  REAL,
    closing_equity  REAL,                               -- mark-to-market at the day's last close
    closing_capital REAL,                               -- realised capital carried to the next day
    peak            REAL,                               -- highest closing equity of the chain so far
    drawdown        REAL,                               -- 1 - closing_equity / peak
    n_trades        INTEGER,
    bars            INTEGER,
    opening_state   TEXT,                               -- JSON (engine state)
    closing_state   TEXT,                               -- JSON (engine state)
    trades          TEXT,                               -- JSON list of the trades closed that day
    UNIQUE (strategy, day, version)
);
"""
# dolphin/ledger/journal.py as of 57987e2 (2026-11-22)
OLD_JOURNAL = """
CREATE TABLE IF NOT EXISTS journal_sessions (
    strategy        TEXT NOT NULL,
    session         TEXT NOT NULL,
    mode            TEXT NOT NULL,               -- paper | sandbox | live
    opening_capital REAL NOT NULL,
    opened_at       TEXT NOT NULL,
    runs            INTEGER NOT NULL DEFAULT 1,   -- starts, restarts included
    status          TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    closing_capital REAL,
    peak            REAL,
    drawdown        REAL,
    n_events        INTEGER,
    closed_at       TEXT,
    PRIMARY KEY (strategy, session)
);
CREATE TABLE IF NOT EXISTS journal_events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    strategy      TEXT    NOT NULL,
    session       TEXT    NOT NULL,
    event_id      TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('fill', 'funding')),
    ts_ns         INTEGER NOT NULL,
    symbol        TEXT    NOT NULL,
    side          TEXT    NOT NULL,               -- BUY | SELL (funding: the position's side)
    role          TEXT    NOT NULL,               -- entry | tp | exit | funding
    qty           REAL    NOT NULL,
    price         REAL    NOT NULL,
    fee           REAL    NOT NULL,               -- commission paid (fills)
    amount        REAL    NOT NULL,               -- funding paid (funding events), 0 for fills
    liquidity     TEXT    NOT NULL,               -- MAKER | TAKER | ''
    capital_after REAL    NOT NULL,               -- the strategy's realised capital after this event
    recorded_at   TEXT    NOT NULL,
    UNIQUE (strategy, event_id)
);
CREATE TRIGGER IF NOT EXISTS journal_events_no_update BEFORE UPDATE ON journal_events
BEGIN SELECT RAISE(ABORT, 'journal_events is append-only'); END;
CREATE TRIGGER IF NOT EXISTS journal_events_no_delete BEFORE DELETE ON journal_events
BEGIN SELECT RAISE(ABORT, 'journal_events is append-only'); END;
"""
# journal.py as of 98c185d (2026-12-03 03:43) added this
OLD_JOURNAL_ENTRIES = """
CREATE TABLE IF NOT EXISTS journal_entries (
    strategy      TEXT    NOT NULL,
    session       TEXT    NOT NULL,
    order_id      TEXT    NOT NULL,               -- the entry order's client order id
    symbol        TEXT    NOT NULL,
    ts_ns         INTEGER NOT NULL,               -- the decision's bar close
    context       TEXT    NOT NULL,               -- JSON object
    recorded_at   TEXT    NOT NULL,
    PRIMARY KEY (strategy, order_id)
);
CREATE TRIGGER IF NOT EXISTS journal_entries_no_update BEFORE UPDATE ON journal_entries
BEGIN SELECT RAISE(ABORT, 'journal_entries is append-only'); END;
CREATE TRIGGER IF NOT EXISTS journal_entries_no_delete BEFORE DELETE ON journal_entries
BEGIN SELECT RAISE(ABORT, 'journal_entries is append-only'); END;
"""
# dolphin/adapters/safety_override_sqlite.py as of d1e9073 (2026-12-03 03:53)
OLD_OVERRIDES = """
CREATE TABLE IF NOT EXISTS safety_overrides (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,      -- append order
    kind        TEXT    NOT NULL CHECK (kind IN ('set', 'clear')),
    posture     TEXT,                                   -- APEX / STALKER / TURTLE / HIBERNATE ('set' only)
    reason      TEXT    NOT NULL,
    who         TEXT    NOT NULL,
    at_ns       INTEGER NOT NULL,                       -- when it was written (UTC epoch ns)
    until_ns    INTEGER,                                -- when a 'set' expires by itself
    recorded_at TEXT    NOT NULL                        -- ISO 8601 UTC (for people)
);
"""

S = "BLUE"
STATE = {"capital": 10_100.0, "position": None}
DAY_ROW = ("INSERT INTO ledger_days (strategy, day, version, kind, recorded_at, run_id, note, opening_equity, "
           "closing_equity, closing_capital, peak, drawdown, n_trades, bars, opening_state, closing_state, trades) "
           "VALUES ('BLUE', '2024-03-04', 1, 'day', '2026-11-23T00:06:01.000+00:00', 'run-1', '', 10000.0, "
           "10100.0, 10100.0, 10100.0, 0.0, 1, 288, '{\"capital\":10000.0,\"position\":null}', "
           "'{\"capital\":10100.0,\"position\":null}', '[{\"pnl\":100.0}]')")
SESSION_ROW = ("INSERT INTO journal_sessions (strategy, session, mode, opening_capital, opened_at, status) VALUES "
               "('BLUE', 'paper:s1', 'paper', 25000.0, '2026-11-23T00:00:00.000+00:00', 'open')")
EVENT_ROW = ("INSERT INTO journal_events (strategy, session, event_id, kind, ts_ns, symbol, side, role, qty, price, "
             "fee, amount, liquidity, capital_after, recorded_at) VALUES ('BLUE', 'paper:s1', 'O-1-T-1', 'fill', "
             "1709510700000000000, 'ETHUSDT', 'SELL', 'entry', 2.0, 3500.0, 3.5, 0.0, 'TAKER', 24996.5, "
             "'2026-11-23T00:05:00.000+00:00')")
ENTRY_ROW = ("INSERT INTO journal_entries VALUES ('BLUE', 'paper:s1', 'O-1', 'ETHUSDT', 1709510700000000000, "
             "'{\"posture\":0}', '2026-12-03T04:00:00.000+00:00')")
OVERRIDE_ROW = ("INSERT INTO safety_overrides (kind, posture, reason, who, at_ns, until_ns, recorded_at) VALUES "
                "('set', 'TURTLE', 'maintenance', 'ops', 1, 2, '1970-01-01T00:00:00Z')")

# what users' files hold today (all unversioned): (DDL, rows) the old code wrote
OLD_FILES = {
    "days+journal (2026-11-22)": (OLD_LEDGER_DAYS + OLD_JOURNAL, [DAY_ROW, SESSION_ROW, EVENT_ROW]),
    "journal only (runtime before any Dagster day)": (OLD_JOURNAL, [SESSION_ROW, EVENT_ROW]),
    "days only (Dagster before any runtime)": (OLD_LEDGER_DAYS, [DAY_ROW]),
    "every table (2026-12-03, unversioned)": (OLD_LEDGER_DAYS + OLD_JOURNAL + OLD_JOURNAL_ENTRIES + OLD_OVERRIDES,
                                              [DAY_ROW, SESSION_ROW, EVENT_ROW, ENTRY_ROW, OVERRIDE_ROW]),
}


def old_file(path, ddl: str, rows) -> bytes:
    """The file as the old code left it: WAL (db.init set it first), tables, rows, user_version 0, closed."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.executescript(ddl)
    for r in rows:
        con.execute(r)
    con.close()
    return path.read_bytes()


def version(path) -> int:
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA user_version").fetchone()[0]
    finally:
        con.close()


def layout(path) -> dict:
    con = sqlite3.connect(path)
    try:
        return layout_of(con)
    finally:
        con.close()


def count(path, table) -> int:
    con = sqlite3.connect(path)
    try:
        return con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


# ---------------------------------------------------------------- migrated up

@pytest.mark.parametrize("name", list(OLD_FILES))
def test_an_old_unversioned_file_is_migrated_up_and_its_rows_survive(tmp_path, name):
    path = tmp_path / "ledger.sqlite"
    ddl, rows = OLD_FILES[name]
    old_file(path, ddl, rows)
    assert version(path) == 0

    FillJournal(path)  # any of the file's openers migrates all of it
    assert version(path) == LEDGER.version == 3
    assert layout(path) == LEDGER.layout()

    book, journal = CapitalLedger(path), FillJournal(path)
    if DAY_ROW in rows:
        (day,) = book.current(S)
        assert (day.day, day.version, day.record.closing_capital, day.record.closing_state) == (
            "2024-03-04", 1, 10_100.0, STATE)
        assert day.record.trades == [{"pnl": 100.0}] and day.peak == 10_100.0 and day.run_id == "run-1"
    else:
        assert book.current(S) == []
    if EVENT_ROW in rows:
        r = journal.restore(S, "paper:s1")
        assert (r.status, r.capital, r.n_fills) == ("open", 24_996.5, 1)
        assert r.positions["ETHUSDT"].qty == -2.0 and r.positions["ETHUSDT"].avg_price == 3500.0
    assert [e["order_id"] for e in journal.entries(S)] == (["O-1"] if ENTRY_ROW in rows else [])
    assert [o.posture_name for o in list_overrides(path)] == (["TURTLE"] if OVERRIDE_ROW in rows else [])

    # every table works on the migrated file, the append-only triggers included
    book.record_day(S, "2024-03-05" if DAY_ROW in rows else "2024-03-04", DayRecord(
        opening_equity=10_100.0 if DAY_ROW in rows else 10_000.0, closing_equity=10_200.0, closing_capital=10_200.0,
        opening_state=STATE if DAY_ROW in rows else {}, closing_state={}, trades=[], bars=288),
        start_day="2024-03-04")
    journal.open_session(S, "paper:s1", mode="paper", opening_capital=25_000.0)
    journal.append(S, JournalEvent("O-1-T-2", "paper:s1", "fill", 1709511000000000000, "ETHUSDT", "BUY", "tp", 2.0,
                                   3400.0, 1.36, 25_193.14))
    assert journal.record_entry(S, "paper:s1", "O-2", "ETHUSDT", 1709511000000000000, {"posture": 1}) == "new"
    set_override(path, "HIBERNATE", "drill", 60, "ops", now_ns=10)
    con = sqlite3.connect(path)
    try:
        for table in ("journal_events", "journal_entries"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                con.execute(f"DELETE FROM {table}")
    finally:
        con.close()


def test_reopening_a_current_file_writes_nothing(tmp_path):
    path = tmp_path / "ledger.sqlite"
    old_file(path, OLD_LEDGER_DAYS + OLD_JOURNAL, [DAY_ROW, SESSION_ROW, EVENT_ROW])
    CapitalLedger(path)
    before = path.read_bytes()
    CapitalLedger(path), FillJournal(path), init(path, LEDGER)
    assert path.read_bytes() == before and version(path) == 3


def test_concurrent_openers_of_an_old_file_migrate_it_once(tmp_path):
    path = tmp_path / "ledger.sqlite"
    old_file(path, OLD_LEDGER_DAYS + OLD_JOURNAL, [DAY_ROW, SESSION_ROW, EVENT_ROW])
    errors, go = [], threading.Barrier(4)

    def opener(cls):
        try:
            go.wait()
            cls(path)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=opener, args=(c,)) for c in (CapitalLedger, FillJournal) * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and version(path) == 3 and layout(path) == LEDGER.layout()
    assert count(path, "ledger_days") == 1 and count(path, "journal_events") == 1


# ---------------------------------------------------------------- refused, file untouched

def test_a_file_from_a_later_dolphin_is_refused_and_left_byte_identical(tmp_path):
    path = tmp_path / "ledger.sqlite"
    FillJournal(path).open_session(S, "paper:s1", mode="paper", opening_capital=25_000.0)
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 4")  # what a later DOLPHIN with a 4th migration leaves
    con.close()
    before = path.read_bytes()
    for open_it in (CapitalLedger, FillJournal, CapitalLedger.existing,
                    lambda p: set_override(p, "TURTLE", "x", 60, "ops"), lambda p: init(p, LEDGER)):
        with pytest.raises(SchemaVersionError) as e:
            open_it(path)
        assert str(path) in str(e.value) and "schema version 4 is newer" in str(e.value) and "(version 3)" in str(e.value)
    assert path.read_bytes() == before and version(path) == 4
    assert count(path, "journal_sessions") == 1


def test_a_migration_failing_half_way_rolls_back_and_names_file_and_step(tmp_path):
    path = tmp_path / "ledger.sqlite"
    before = old_file(path, OLD_LEDGER_DAYS + OLD_JOURNAL, [DAY_ROW, SESSION_ROW, EVENT_ROW])
    before_layout = layout(path)

    def step3(con):  # creates its table, then a statement fails (a NOT NULL column left out)
        con.executescript(V3_SAFETY_OVERRIDES)
        con.execute("INSERT INTO safety_overrides (kind, reason) VALUES ('set', 'x')")

    broken = Schema("ledger", LEDGER.steps[:2] + (Migration(3, "safety_overrides", step3),))
    with pytest.raises(MigrationError) as e:
        init(path, broken)  # steps 0 -> 1 and 1 -> 2 ran (journal_entries created) before 2 -> 3 failed
    msg = str(e.value)
    assert str(path) in msg and "migration 2 -> 3 (safety_overrides) failed" in msg and "NOT NULL" in msg
    assert "still version 0" in msg
    assert path.read_bytes() == before and version(path) == 0 and layout(path) == before_layout
    CapitalLedger(path)  # the real migrations still apply afterwards
    assert version(path) == 3 and count(path, "ledger_days") == 1


def test_an_unversioned_table_of_another_shape_is_refused_not_adopted(tmp_path):
    path = tmp_path / "ledger.sqlite"
    before = old_file(path, "CREATE TABLE ledger_days (seq INTEGER PRIMARY KEY, strategy TEXT, day TEXT);",
                      ["INSERT INTO ledger_days (strategy, day) VALUES ('BLUE', '2024-03-04')"])
    with pytest.raises(MigrationError, match=r"layout is not version 3's \(ledger_days: "):
        CapitalLedger(path)
    assert path.read_bytes() == before and version(path) == 0


def test_migrations_must_be_numbered_in_order():
    with pytest.raises(ValueError, match="1, 2, 3"):
        Schema("x", (Migration(1, "a", ""), Migration(3, "b", "")))


# ---------------------------------------------------------------- the store's files

def test_old_embedded_store_and_published_log_files_are_migrated(tmp_path):
    from dolphin.store import FEATURES, SCAN_LATEST, Record, StoreUnavailableError
    from dolphin.adapters.sqlite_store import EmbeddedStore
    from dolphin.rehydrate import PublishedLog

    rec = Record({"vel_div": -0.5}, "2024-02-01T00:05:00.000Z")
    store_path = tmp_path / "features.sqlite"  # the store as 02d5350 created it: the entries table only
    old_file(store_path, "CREATE TABLE IF NOT EXISTS entries (map TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT "
                         "NULL, PRIMARY KEY (map, key)) WITHOUT ROWID;",
             [f"INSERT INTO entries VALUES ('{FEATURES}', '{SCAN_LATEST}', '{rec.to_json()}')"])
    store = EmbeddedStore(store_path)
    assert store.get(FEATURES, SCAN_LATEST) == rec and version(store_path) == 2
    store.put(FEATURES, SCAN_LATEST, Record({"vel_div": -0.6}, "2024-02-01T00:10:00.000Z"))
    assert count(store_path, "changes") == 1  # the change-log triggers came with version 2

    log_path = tmp_path / "last_published.sqlite"
    old_file(log_path, "CREATE TABLE IF NOT EXISTS published (\n    map TEXT NOT NULL, key TEXT NOT NULL, record TEXT "
                       "NOT NULL, kept_at REAL NOT NULL, PRIMARY KEY (map, key))",
             [f"INSERT INTO published VALUES ('{FEATURES}', 'exf_latest', '{rec.to_json()}', 1.0)"])
    log = PublishedLog(log_path)
    assert log.get(FEATURES, "exf_latest") == rec and version(log_path) == 0  # reading migrates nothing
    assert log.keep(FEATURES, "exf_latest", Record({"vel_div": 1.0}, "2024-02-02T00:00:00.000Z"))
    assert version(log_path) == 1 and count(log_path, "published") == 1

    for p in (store_path, log_path):
        con = sqlite3.connect(p)
        con.execute("PRAGMA user_version = 9")
        con.close()
    before = store_path.read_bytes()
    with pytest.raises(StoreUnavailableError, match="schema version 9 is newer than this code knows"):
        EmbeddedStore(store_path)
    assert store_path.read_bytes() == before
    with pytest.raises(SchemaVersionError, match="published-record log file .* schema version 9"):
        log.get(FEATURES, "exf_latest")
