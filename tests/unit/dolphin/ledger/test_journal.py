"""Fill journal rules: durable append-only events with stable ids, idempotent re-runs, divergence refused,
positions restored from fills, the store as a hot copy that may be down while the journal is written."""

import sqlite3

import pytest

from dolphin.ledger.journal import (FillJournal, JournalConflictError, JournalError, JournalEvent, Position,
                                    positions_from)
from dolphin.store import StoreUnavailableError, state_map
from dolphin.adapters.sqlite_store import EmbeddedStore
from runtime.ledger import LedgerSink, repopulate

S, SESSION = "BLUE", "paper:test:2024-03-04..2024-03-04:BLUE-x"


def ev(i, role="entry", side="SELL", qty=10.0, price=100.0, capital=25_000.0, sym="BTCUSDT", kind="fill"):
    return JournalEvent(event_id=f"O-{i}:T-{i}", session=SESSION, kind=kind, ts_ns=1_709_510_400_000_000_000 + i,
                        symbol=sym, side=side, role=role, qty=qty, price=price, fee=0.5, capital_after=capital,
                        liquidity="TAKER")


@pytest.fixture
def journal(tmp_path):
    j = FillJournal(tmp_path / "ledger.sqlite")
    j.open_session(S, SESSION, mode="paper", opening_capital=25_000.0)
    return j


def test_append_is_durable_idempotent_and_refuses_different_content(journal, tmp_path):
    assert journal.append(S, ev(1)) == "new"
    assert journal.append(S, ev(1)) == "duplicate"
    with pytest.raises(JournalConflictError, match=r"O-1:T-1 .*price: recorded 100.0, now 101.0"):
        journal.append(S, ev(1, price=101.0))
    again = FillJournal(tmp_path / "ledger.sqlite")  # another process / a restart sees it
    assert [e.event_id for e in again.events(S)] == ["O-1:T-1"]
    with sqlite3.connect(tmp_path / "ledger.sqlite") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        for sql in ("UPDATE journal_events SET price = 1", "DELETE FROM journal_events"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                con.execute(sql)


def test_restore_capital_and_positions(journal):
    journal.append(S, ev(1, side="SELL", qty=10.0, price=100.0, capital=24_999.5))
    r = journal.restore(S, SESSION)
    assert r.capital == 24_999.5 and r.positions == {"BTCUSDT": Position("BTCUSDT", -10.0, 100.0)}
    journal.append(S, ev(2, role="tp", side="BUY", qty=10.0, price=99.0, capital=25_009.0))
    r = journal.restore(S, SESSION)
    assert r.capital == 25_009.0 and r.positions == {} and r.n_fills == 2
    assert "flat" in r.describe()


def test_positions_from_adds_reduces_and_flips():
    e = [ev(1, side="BUY", qty=1.0, price=10.0), ev(2, side="BUY", qty=3.0, price=20.0)]
    assert positions_from(e)["BTCUSDT"] == Position("BTCUSDT", 4.0, 17.5)
    e.append(ev(3, side="SELL", qty=1.0, price=30.0))
    assert positions_from(e)["BTCUSDT"] == Position("BTCUSDT", 3.0, 17.5)
    e.append(ev(4, side="SELL", qty=5.0, price=40.0))
    assert positions_from(e)["BTCUSDT"] == Position("BTCUSDT", -2.0, 40.0)
    assert positions_from([ev(5, kind="funding", role="funding")]) == {}


def test_session_rules(journal):
    with pytest.raises(JournalConflictError, match="already opened as paper with capital 25000.0"):
        journal.open_session(S, SESSION, mode="paper", opening_capital=30_000.0)
    with pytest.raises(JournalError, match="never opened"):
        journal.append(S, JournalEvent(**{**ev(1).__dict__, "session": "other"}))
    journal.append(S, ev(1, capital=24_000.0))
    with pytest.raises(JournalConflictError, match="not the journal's last capital"):
        journal.close_session(S, SESSION, closing_capital=25_000.0)
    closed = journal.close_session(S, SESSION, closing_capital=24_000.0)
    assert closed.status == "closed"
    assert journal.sessions(S)[0]["peak"] == 25_000.0 and journal.sessions(S)[0]["drawdown"] == pytest.approx(0.04)
    journal.close_session(S, SESSION, closing_capital=24_000.0)  # idempotent
    assert journal.append(S, ev(1, capital=24_000.0)) == "duplicate"  # a re-run of a closed session verifies
    with pytest.raises(JournalError, match="closed: new event O-2:T-2 refused"):
        journal.append(S, ev(2))


@pytest.mark.parametrize("bad", [dict(price=float("nan")), dict(qty=0.0), dict(side="SHORT")])
def test_bad_events_are_refused_with_their_id(bad):
    with pytest.raises(JournalError, match="O-1:T-1"):
        ev(1, **bad)


def _record(sink, e):
    sink.record(e.kind, e.event_id, e.ts_ns, e.symbol, e.side, e.role, e.qty, e.price, e.fee, e.amount,
                e.liquidity, e.capital_after)


def test_restarted_sink_confirms_acknowledged_events_then_appends(tmp_path):
    j = FillJournal(tmp_path / "l.sqlite")
    first = LedgerSink(j, S, SESSION, mode="paper", opening_capital=25_000.0)
    _record(first, ev(1, capital=24_999.5))  # then the process dies
    again = LedgerSink(j, S, SESSION, mode="paper", opening_capital=25_000.0)
    assert again.restart and again.restored.positions["BTCUSDT"].qty == -10.0
    _record(again, ev(1, capital=24_999.5))
    _record(again, ev(2, role="tp", side="BUY", capital=25_010.0))
    again.close(25_010.0)
    assert (again.confirmed, again.appended) == (1, 1)
    assert "re-run confirmed 1 acknowledged event(s), appended 1" in again.report()[0]


def test_restarted_sink_refuses_a_diverging_rerun(tmp_path):
    j = FillJournal(tmp_path / "l.sqlite")
    _record(LedgerSink(j, S, SESSION, mode="paper", opening_capital=25_000.0), ev(1))
    again = LedgerSink(j, S, SESSION, mode="paper", opening_capital=25_000.0)
    with pytest.raises(JournalConflictError, match="event #1 of the re-run is O-7:T-7, the journal acknowledged O-1"):
        _record(again, ev(7))
    short = LedgerSink(j, S, SESSION, mode="paper", opening_capital=25_000.0)
    with pytest.raises(JournalConflictError, match="reproduced 0"):
        short.close(25_000.0)


def test_store_down_the_journal_is_still_written_and_the_gap_reported(tmp_path):
    store_path = tmp_path / "store" / "features.sqlite"
    store = EmbeddedStore(store_path)
    j = FillJournal(tmp_path / "l.sqlite")
    sink = LedgerSink(j, S, SESSION, mode="paper", opening_capital=25_000.0, store=store)
    _record(sink, ev(1, capital=24_999.5))
    assert store.get(state_map(S), "runtime_paper").value["capital"] == 24_999.5
    for p in store_path.parent.iterdir():  # the store goes away
        p.unlink()
    with pytest.raises(StoreUnavailableError):
        store.get(state_map(S), "runtime_paper")
    _record(sink, ev(2, role="tp", side="BUY", capital=25_010.0))
    sink.close(25_010.0)
    assert [e.event_id for e in j.events(S)] == ["O-1:T-1", "O-2:T-2"]
    assert len(sink.store_gaps) == 2 and "feature store unavailable for 2 publish(es)" in sink.report()[-1]
    back = EmbeddedStore(tmp_path / "store2" / "features.sqlite")
    rec = repopulate(j, back, S, SESSION, "paper")
    assert back.get(state_map(S), "runtime_paper").value == rec.value
    assert rec.value["capital"] == 25_010.0 and rec.value["positions"] == {} and rec.value["status"] == "closed"


def test_a_continuing_sink_appends_after_the_acknowledged_events(tmp_path):
    """Sandbox / live: the venue keeps its state; a restart continues from the restored capital and new
    fills append (nothing is expected to be re-produced); a re-delivered fill is still recognised."""
    store = EmbeddedStore(tmp_path / "store" / "features.sqlite")
    j = FillJournal(tmp_path / "l.sqlite")
    _record(LedgerSink(j, S, SESSION, mode="live", opening_capital=25_000.0, resimulate=False), ev(1, capital=24_999.5))
    again = LedgerSink(j, S, SESSION, mode="live", opening_capital=25_000.0, resimulate=False, store=store)
    assert again.restart and again.restored.capital == 24_999.5
    _record(again, ev(1, capital=24_999.5))  # the exchange re-delivers the acknowledged fill
    _record(again, ev(2, role="tp", side="BUY", capital=25_010.0))
    assert (again.confirmed, again.appended) == (1, 1)
    assert [e.event_id for e in j.events(S)] == ["O-1:T-1", "O-2:T-2"]
    hot = store.get(state_map(S), "runtime_live").value
    assert hot["capital"] == 25_010.0 and hot["positions"] == {} and hot["events"] == 2 and hot["status"] == "open"
