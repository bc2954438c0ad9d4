"""Capital ledger rules: in order, versions instead of overwrites, exact replays, refused divergent re-runs,
rebase voiding later days, durable across reopen."""

import sqlite3

import pytest

from dolphin.ledger import CapitalLedger, DayRecord, LedgerError, OutOfOrderError, ReplayConflictError

S = "BLUE"
START = "2024-02-01"


def rec(open_eq, close_eq, open_state=None, trades=()):
    return DayRecord(opening_equity=open_eq, closing_equity=close_eq, closing_capital=close_eq,
                     opening_state=open_state or {"capital": open_eq}, closing_state={"capital": close_eq},
                     trades=[{"pnl": p, "fees": 1.0, "funding": 0.0} for p in trades], bars=288)


def chain(book, days_closes):
    """Record consecutive days from START with the given closing equities, each from the previous close."""
    prev = 100.0
    out = []
    for i, c in enumerate(days_closes):
        day = f"2024-02-{1 + i:02d}"
        out.append(book.record_day(S, day, rec(prev, c), start_day=START))
        prev = c
    return out


@pytest.fixture
def book(tmp_path):
    return CapitalLedger(tmp_path / "ledger.sqlite")


def test_chain_peak_drawdown_and_previous(book):
    chain(book, [110.0, 99.0, 120.0])
    cur = book.current(S)
    assert [e.day for e in cur] == ["2024-02-01", "2024-02-02", "2024-02-03"]
    assert [e.peak for e in cur] == [110.0, 110.0, 120.0]
    assert cur[1].drawdown == pytest.approx(1 - 99 / 110)
    assert cur[1].pnl == pytest.approx(-11.0)
    assert book.previous(S, START, start_day=START) is None
    assert book.previous(S, "2024-02-04", start_day=START).day == "2024-02-03"


def test_out_of_order_is_refused_naming_the_missing_day(book):
    chain(book, [110.0])
    with pytest.raises(OutOfOrderError, match="previous day 2024-02-02 has no result"):
        book.previous(S, "2024-02-03", start_day=START)
    with pytest.raises(OutOfOrderError, match="2024-02-02"):
        book.record_day(S, "2024-02-03", rec(110.0, 111.0), start_day=START)
    with pytest.raises(OutOfOrderError, match="before the chain's first day"):
        book.previous(S, "2024-01-31", start_day=START)
    assert [e.day for e in book.current(S)] == ["2024-02-01"]


def test_opening_must_be_the_previous_close(book):
    chain(book, [110.0])
    with pytest.raises(LedgerError, match="not 2024-02-01's current closing state"):
        book.record_day(S, "2024-02-02", rec(110.0, 111.0, open_state={"capital": 999.0}), start_day=START)


def test_rerun_of_last_day_supersedes_keeps_history(book):
    chain(book, [110.0, 99.0])
    book.record_day(S, "2024-02-02", rec(110.0, 105.0), start_day=START)
    cur = book.current(S)
    assert [e.record.closing_equity for e in cur] == [110.0, 105.0]
    hist = book.history(S, "2024-02-02")
    assert [(e.version, e.superseded, e.record.closing_equity) for e in hist] == [(1, True, 99.0), (2, False, 105.0)]


def test_exact_replay_with_later_days_is_accepted(book):
    chain(book, [110.0, 99.0, 120.0])
    before = [e.record.fingerprint() for e in book.current(S)]
    e = book.record_day(S, "2024-02-02", rec(110.0, 99.0), start_day=START)
    assert e.version == 2 and e.note == "replay"
    assert [x.record.fingerprint() for x in book.current(S)] == before


def test_divergent_rerun_with_later_days_is_refused_then_rebased(book):
    chain(book, [110.0, 99.0, 120.0, 125.0])
    with pytest.raises(ReplayConflictError, match=r"later days 2024-02-03\.\.2024-02-04 \(2\)"):
        book.record_day(S, "2024-02-02", rec(110.0, 98.0), start_day=START)
    assert book.entry(S, "2024-02-02").record.closing_equity == 99.0  # nothing changed
    book.record_day(S, "2024-02-02", rec(110.0, 98.0), start_day=START, rebase=True)
    assert [e.day for e in book.current(S)] == ["2024-02-01", "2024-02-02"]
    void = book.history(S, "2024-02-03")
    assert [e.kind for e in void] == ["day", "void"] and void[0].superseded and "rebase" in void[1].note
    with pytest.raises(OutOfOrderError, match="2024-02-03"):
        book.record_day(S, "2024-02-04", rec(98.0, 97.0), start_day=START)
    book.record_day(S, "2024-02-03", rec(98.0, 97.0), start_day=START)
    assert book.entry(S, "2024-02-03").version == 3


def test_append_only_and_durable(book, tmp_path):
    chain(book, [110.0, 99.0])
    book.record_day(S, "2024-02-02", rec(110.0, 99.0), start_day=START)
    again = CapitalLedger(tmp_path / "ledger.sqlite")
    assert [e.record.closing_equity for e in again.current(S)] == [110.0, 99.0]
    with sqlite3.connect(tmp_path / "ledger.sqlite") as con:
        assert con.execute("SELECT COUNT(*) FROM ledger_days").fetchone()[0] == 3
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_file_with_only_the_fill_journal_reads_as_a_ledger_without_days(tmp_path, monkeypatch):
    """The runtime's journal created the shared ledger file alone (a demo / live day before any Dagster paper
    day; unversioned files only: a versioned file has every table): readers see no days, not 'no such table:
    ledger_days'."""
    from dolphin.ledger.journal import FillJournal
    from dolphin.status import _read_ledger
    from dolphin.rehydrate import Sources

    path = tmp_path / "ledger" / "ledger.sqlite"
    FillJournal(path).open_session("BLUE", "sandbox:local:2023-07-17", mode="sandbox", opening_capital=25_000.0)
    with sqlite3.connect(path) as con:  # the file as the journal left it before schema versions: its tables only
        con.executescript("DROP TABLE ledger_days; DROP TABLE safety_overrides; PRAGMA user_version = 0;")
    book = CapitalLedger.existing(path)
    assert book.current("BLUE") == [] and book.history("BLUE") == [] and book.last_seq() == 0
    assert book.entry("BLUE", "2023-07-17") is None
    monkeypatch.setenv("DOLPHIN_HOME", str(tmp_path))
    info = _read_ledger("BLUE")
    assert info["readable"] and info["days"] == 0, info
    with sqlite3.connect(path) as con:  # reading created nothing
        assert not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'ledger_days'").fetchone()
    assert Sources.default()._ledger() == ([], 0)
