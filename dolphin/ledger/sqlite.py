"""Append-only capital ledger in SQLite (WAL): one row per (strategy, day, version).

Rules (the capital chain of a strategy):

- **Truth.** Rows are never updated or deleted. Per (strategy, day) the row with the highest version is
  the truth; every lower version is *superseded* (kept as history). A ``void`` row marks a day whose
  result was invalidated by a rebase (see below): the day has no current result until it is re-run.
- **In order.** A day other than the chain's ``start_day`` (which starts from initial capital) is
  recorded only if the previous day has a current result, and its opening state must be exactly that
  day's closing state (``OutOfOrderError`` names the missing day).
- **Re-running a day** appends a new version that supersedes the old one (no double counting). If
  later days already exist, their results were built on this day's closing state, so the re-run is
  accepted only as an exact replay (identical result: a new version, nothing changes downstream);
  a different result is refused (``ReplayConflictError``) unless ``rebase=True``, which voids every
  later day (history kept) so they must be re-run in order.

Connections are short-lived (one per call), so several processes (Dagster steps, the runtime, the CLI)
can share the file; writes take SQLite's write lock up front (``BEGIN IMMEDIATE``).
"""

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from dolphin.capital import DayRecord, LedgerEntry, canon as _canon
from dolphin.ledger import db
from dolphin.ledger.schema import LEDGER


class LedgerError(RuntimeError):
    pass


class OutOfOrderError(LedgerError):
    pass


class ReplayConflictError(LedgerError):
    pass


def _day(d: str) -> date:
    try:
        return date.fromisoformat(str(d))
    except ValueError:
        raise LedgerError(f"not a UTC day (YYYY-MM-DD): {d!r}") from None


def prev_day(d: str) -> str:
    return (_day(d) - timedelta(days=1)).isoformat()


def next_day(d: str) -> str:
    return (_day(d) + timedelta(days=1)).isoformat()


class CapitalLedger:
    _has_chain = True  # False: an existing file that holds only the runtime's fill journal (no days yet)

    def __init__(self, path):
        self.path = Path(path)
        db.init(self.path, LEDGER)

    @classmethod
    def existing(cls, path) -> "CapitalLedger":
        """Open a ledger file that must already exist, without creating it or its schema (readers such as
        ``dolphin status``); ``FileNotFoundError`` if absent, ``sqlite3.Error`` on the first read if the
        file is not a ledger."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"no capital ledger at {p}")
        book = cls.__new__(cls)
        book.path = p
        with db.connect(p) as con:
            db.check_version(con, p, LEDGER)  # a later DOLPHIN's file: refused, not misread
            # unversioned (written before schema versions): the runtime's journal may have created it alone
            book._has_chain = con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = "
                                          "'ledger_days'").fetchone() is not None
        return book

    # ------------------------------------------------------------------ connections

    def _connect(self):
        return db.connect(self.path)

    def _write(self):
        return db.write(self.path)

    # ------------------------------------------------------------------ reads

    def _rows(self, con, strategy: str, day: str | None = None):
        if not self._has_chain:
            return []
        q = ("SELECT d.*, d.version < (SELECT MAX(version) FROM ledger_days m WHERE m.strategy = d.strategy "
             "AND m.day = d.day) AS superseded FROM ledger_days d WHERE d.strategy = ?")
        args = [strategy]
        if day is not None:
            q += " AND d.day = ?"
            args.append(day)
        return [_entry(r) for r in con.execute(q + " ORDER BY d.day, d.version", args)]

    def _current_map(self, con, strategy: str) -> dict:
        return {e.day: e for e in self._rows(con, strategy) if not e.superseded and e.kind == "day"}

    def current(self, strategy: str, upto: str | None = None) -> list:
        """The current result of every day (ascending), optionally up to and including ``upto``."""
        with self._connect() as con:
            days = self._current_map(con, strategy)
        return [e for d, e in sorted(days.items()) if upto is None or d <= upto]

    def entry(self, strategy: str, day: str) -> LedgerEntry | None:
        with self._connect() as con:
            rows = [e for e in self._rows(con, strategy, day) if not e.superseded]
        return rows[0] if rows and rows[0].kind == "day" else None

    def history(self, strategy: str, day: str | None = None) -> list:
        """Every row (all versions, void rows included), with ``superseded`` set."""
        with self._connect() as con:
            return self._rows(con, strategy, day)

    def last_seq(self) -> int:
        if not self._has_chain:
            return 0
        with self._connect() as con:
            return int(con.execute("SELECT COALESCE(MAX(seq), 0) FROM ledger_days").fetchone()[0])

    def previous(self, strategy: str, day: str, *, start_day: str) -> LedgerEntry | None:
        """The entry a run of ``day`` starts from: None on ``start_day`` (initial capital), else the
        previous day's current result; refuses to run out of order."""
        with self._connect() as con:
            return self._previous(self._current_map(con, strategy), strategy, day, start_day)

    @staticmethod
    def _previous(current: dict, strategy: str, day: str, start_day: str) -> LedgerEntry | None:
        if _day(day) < _day(start_day):
            raise OutOfOrderError(f"{strategy} {day}: before the chain's first day {start_day}")
        if day == start_day:
            return None
        p = prev_day(day)
        if p not in current:
            have = sorted(current)
            last = f"; the ledger's last day is {have[-1]}" if have else "; the ledger has no day yet"
            raise OutOfOrderError(
                f"{strategy} {day}: the previous day {p} has no result in the capital ledger{last}. "
                f"Materialise {p} first: days run in order from {start_day} (which starts from initial capital).")
        return current[p]

    # ------------------------------------------------------------------ writes

    def record_day(self, strategy: str, day: str, record: DayRecord, *, start_day: str, run_id: str | None = None,
                   rebase: bool = False) -> LedgerEntry:
        """Append ``record`` as the new current result of ``day`` (rules: module docstring)."""
        with self._write() as con:
            current = self._current_map(con, strategy)
            prev = self._previous(current, strategy, day, start_day)
            if prev is not None and _canon(record.opening_state) != _canon(prev.record.closing_state):
                raise LedgerError(
                    f"{strategy} {day}: the run started from a state that is not {prev.day}'s current closing "
                    f"state (was {prev.day} re-recorded meanwhile?); run {day} again")
            later = sorted(d for d in current if d > day)
            existing = current.get(day)
            if later and (existing is None or existing.record.fingerprint() != record.fingerprint()):
                if not rebase:
                    was = (f"closing equity {existing.record.closing_equity:.2f} -> {record.closing_equity:.2f}"
                           if existing else "it had no current result")
                    raise ReplayConflictError(
                        f"{strategy} {day}: re-run gives a different result ({was}) but later days "
                        f"{later[0]}..{later[-1]} ({len(later)}) were built on the recorded one. Refused: "
                        f"re-run with rebase=True to void {later[0]}..{later[-1]} (history is kept) and then "
                        f"re-run them in order.")
                for d in later:
                    self._insert(con, strategy, d, "void", None, None, None, run_id,
                                 f"voided: {day} was re-recorded with a different result (rebase)")
            peak = max(prev.peak if prev is not None else record.opening_equity, record.closing_equity)
            dd = 1.0 - record.closing_equity / peak if peak > 0 else 0.0
            seq = self._insert(con, strategy, day, "day", record, peak, dd, run_id,
                               "replay" if existing is not None else "")
            return next(e for e in self._rows(con, strategy, day) if e.seq == seq)

    @staticmethod
    def _insert(con, strategy, day, kind, rec: DayRecord | None, peak, dd, run_id, note) -> int:
        version = 1 + con.execute("SELECT COALESCE(MAX(version), 0) FROM ledger_days WHERE strategy = ? AND day = ?",
                                  (strategy, day)).fetchone()[0]
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        vals = (None,) * 8 if rec is None else (
            rec.opening_equity, rec.closing_equity, rec.closing_capital, rec.n_trades, rec.bars,
            _canon(rec.opening_state), _canon(rec.closing_state), _canon(rec.trades))
        cur = con.execute(
            "INSERT INTO ledger_days (strategy, day, version, kind, recorded_at, run_id, note, opening_equity, "
            "closing_equity, closing_capital, n_trades, bars, opening_state, closing_state, trades, peak, drawdown) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (strategy, _day(day).isoformat(), version, kind, now, run_id, note, *vals, peak, dd))
        return int(cur.lastrowid)


def _entry(r) -> LedgerEntry:
    rec = None
    if r["kind"] == "day":
        rec = DayRecord(opening_equity=r["opening_equity"], closing_equity=r["closing_equity"],
                        closing_capital=r["closing_capital"], opening_state=json.loads(r["opening_state"]),
                        closing_state=json.loads(r["closing_state"]), trades=json.loads(r["trades"]),
                        bars=r["bars"])
    return LedgerEntry(seq=r["seq"], strategy=r["strategy"], day=r["day"], version=r["version"], kind=r["kind"],
                       recorded_at=r["recorded_at"], run_id=r["run_id"], note=r["note"], record=rec,
                       peak=r["peak"], drawdown=r["drawdown"], superseded=bool(r["superseded"]))
