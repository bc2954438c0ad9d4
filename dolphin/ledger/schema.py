"""The ledger file's schema (``<data home>/ledger/ledger.sqlite``), versioned (``dolphin.ledger.db``).

One file, one version: it holds the Dagster paper days' chain (``ledger_days``, ``sqlite.CapitalLedger``),
the runtime's fill journal (``journal_*``, ``journal.FillJournal``) and the operator's safety overrides
(``safety_overrides``, ``dolphin.adapters.safety_override_sqlite``), and whichever of them opens the file first brings
ALL of it to the current version.

Versions (from ``git log -p``):

1. 2026-11-22: ``ledger_days`` and the fill journal's ``journal_sessions`` / ``journal_events``: what a file
   written before 2026-12-03 holds.
2. 2026-12-03 (restart reconciliation): ``journal_entries``, the decision behind each entry order.
3. 2026-12-03 (manual safety override): ``safety_overrides``.

A file written before versioning is at ``user_version`` 0 and holds any subset of these tables: each module
used to create only its own (a journal-only file: the runtime ran before any Dagster paper day). So steps
1-3 create with ``IF NOT EXISTS``: on such a file they add what is missing and keep what is there (its rows
untouched); ``db.init`` then checks every table has exactly the version's columns, so a table of another
shape is refused, not adopted. Steps after 3 are ordinary migrations of a file known to be at their start.
"""

from dolphin.ledger.db import Migration, Schema

V1_DAYS_AND_JOURNAL = """
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

# the decision behind each entry order, written when the order is submitted: what a restarted runtime needs
# to adopt the position the order opened (its exit rules read the posture and ACB boost at entry)
V2_JOURNAL_ENTRIES = """
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

V3_SAFETY_OVERRIDES = """
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

LEDGER = Schema("ledger", (
    Migration(1, "capital ledger days and the fill journal", V1_DAYS_AND_JOURNAL),
    Migration(2, "journal_entries: the decision behind each entry order", V2_JOURNAL_ENTRIES),
    Migration(3, "safety_overrides: the operator's audited manual override", V3_SAFETY_OVERRIDES),
))
