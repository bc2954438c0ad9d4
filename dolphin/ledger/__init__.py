"""Capital ledger: the durable, append-only source of truth for a strategy's capital day by day.

Pure Python + sqlite3 (no Dagster, no Hazelcast). See ``sqlite.CapitalLedger`` for the rules, ``schema`` for the
file's versioned layout and ``db`` for how versions are migrated.
"""

from dolphin.ledger.sqlite import (CapitalLedger, DayRecord, LedgerEntry, LedgerError, OutOfOrderError,
                                   ReplayConflictError, next_day, prev_day)

__all__ = ["CapitalLedger", "DayRecord", "LedgerEntry", "LedgerError", "OutOfOrderError", "ReplayConflictError",
           "prev_day", "next_day"]
