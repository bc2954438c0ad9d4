"""Restart reconciliation (runtime.reconcile) against an in-memory venue account: every way the journal and the
venue can disagree after a kill. The whole path against the local venue and Nautilus runs in
tests/system/test_system_paper_day.py (test_sigkill_mid_trade_restart_reconciles_and_loses_or_doubles_no_fill)."""

import pytest

from dolphin.ledger.journal import FillJournal, JournalConflictError
from runtime.ledger import LedgerSink
from runtime.reconcile import ReconcileError, reconcile

S = "BLUE"
CTX = {"side": -1, "leverage": 3.0, "target_notional": 30_000.0, "signal": -0.02, "posture": 0, "boost": 1.0,
       "limit": False, "capital_before": 10_000.0, "decision_close_ms": 1_689_617_700_000}


class FakeAccount:
    """What VenueAccount returns, from lists the test sets; records cancels."""

    def __init__(self, positions=None, open_orders=None, orders=None, trades=None):
        self._pos, self._open = positions or {}, open_orders or []
        self._orders, self._trades = orders or [], trades or []
        self.cancelled = []

    def positions(self):
        return dict(self._pos)

    def open_orders(self, symbol):
        return [o for o in self._open if o["symbol"] == symbol and o["clientOrderId"] not in
                {c for _, c in self.cancelled}]

    def orders(self, symbol, start_ms):
        return [o for o in self._orders if o["symbol"] == symbol]

    def trades(self, symbol, start_ms):
        return [t for t in self._trades if t["symbol"] == symbol and t["time"] >= start_ms]

    def cancel(self, symbol, cid):
        self.cancelled.append((symbol, cid))


@pytest.fixture
def sink(tmp_path):
    def make(entry=True, context=True):
        j = FillJournal(tmp_path / "ledger.sqlite")
        s = LedgerSink(j, S, "live:127.0.0.1:2026-12-02", mode="live", opening_capital=10_000.0, resimulate=False)
        if context:
            j.record_entry(S, s.session, "O-1-001-000-1", "ETHUSDT", 1_689_617_700_000_000_000, CTX)
        if entry:
            s.record("fill", "O-1-001-000-1:501", 1_689_617_705_000_000_000, "ETHUSDT", "SELL", "entry", 10.0, 1900.0,
                     7.6, 0.0, "TAKER", 9_992.4)
        # a restarted process opens the same session again
        return LedgerSink(j, S, s.session, mode="live", opening_capital=10_000.0, resimulate=False)
    return make


def order(cid, side, typ, qty, reduce_only, oid, price="1882.0", symbol="ETHUSDT"):
    return {"symbol": symbol, "clientOrderId": cid, "orderId": oid, "side": side, "type": typ, "origQty": str(qty),
            "price": price, "reduceOnly": reduce_only}


def test_venue_still_holds_the_position_adopted_with_its_take_profit(sink):
    sk = sink()
    tp = order("O-1-001-000-2", "BUY", "LIMIT", 10.0, True, 2)
    acct = FakeAccount(positions={"ETHUSDT": (-10.0, 1900.0)}, open_orders=[tp])
    r = reconcile(sk, ["BTCUSDT", "ETHUSDT"], account=acct)
    a = r.adopt
    assert (a.symbol, a.side, a.qty, a.entry_px, a.fees, a.tp_order_id) == ("ETHUSDT", -1, 10.0, 1900.0, 7.6,
                                                                           "O-1-001-000-2")
    assert a.entry_fill_ns == 1_689_617_705_000_000_000 and a.context["posture"] == 0 and not a.restore
    assert r.journaled == [] and acct.cancelled == []


def test_take_profit_filled_while_down_is_journaled_once_with_binance_pnl(sink):
    sk = sink()
    trade = {"symbol": "ETHUSDT", "id": 502, "orderId": 2, "side": "BUY", "qty": "10.0", "price": "1882.0",
             "commission": "3.764", "commissionAsset": "USDT", "realizedPnl": "180.0", "maker": True,
             "time": 1_689_619_800_000}
    acct = FakeAccount(orders=[order("O-1-001-000-2", "BUY", "LIMIT", 10.0, True, 2)], trades=[trade])
    r = reconcile(sk, ["ETHUSDT"], account=acct)
    assert r.adopt is None and r.journaled == ["O-1-001-000-2:502"]
    ev = sk.journal.events(S)[-1]
    assert (ev.role, ev.side, ev.qty, ev.price, ev.liquidity) == ("tp", "BUY", 10.0, 1882.0, "MAKER")
    assert ev.capital_after == pytest.approx(9_992.4 - 3.764 + 180.0)
    # a second restart finds it journaled: nothing doubles
    again = LedgerSink(sk.journal, S, sk.session, mode="live", opening_capital=10_000.0, resimulate=False)
    assert reconcile(again, ["ETHUSDT"], account=acct).journaled == []
    assert [e.role for e in sk.journal.events(S)] == ["entry", "tp"]


def test_quantity_mismatch_refuses_naming_both_sides(sink):
    with pytest.raises(ReconcileError, match=r"ETHUSDT: journal -10, venue -4"):
        reconcile(sink(), ["ETHUSDT"], account=FakeAccount(positions={"ETHUSDT": (-4.0, 1900.0)}))


def test_a_position_dolphin_did_not_open_refuses(sink):
    acct = FakeAccount(positions={"SOLUSDT": (5.0, 20.0)},
                       trades=[{"symbol": "SOLUSDT", "id": 9, "orderId": 77, "side": "BUY", "qty": "5", "price": "20",
                                "time": 1_689_617_000_000}],
                       orders=[order("web_manual_1", "BUY", "MARKET", 5, False, 77, symbol="SOLUSDT")])
    with pytest.raises(ReconcileError, match=r"SOLUSDT: journal \+0, venue \+5"):
        reconcile(sink(entry=False), ["SOLUSDT"], account=acct)
    assert FillJournal(sink(entry=False).journal.path).events(S) == []  # the manual fill is not journaled as ours


def test_an_entry_in_flight_at_the_kill_is_cancelled_and_foreign_orders_left(sink):
    acct = FakeAccount(open_orders=[order("O-1-001-000-5", "SELL", "LIMIT", 3, False, 5, symbol="BTCUSDT"),
                                    order("my_hand_order", "BUY", "LIMIT", 1, False, 6, symbol="BTCUSDT")])
    r = reconcile(sink(entry=False), ["BTCUSDT"], account=acct)
    assert acct.cancelled == [("BTCUSDT", "O-1-001-000-5")] and r.adopt is None
    assert any("not DOLPHIN's" in ln for ln in r.lines)


def test_an_open_position_without_its_entry_decision_refuses(sink):
    with pytest.raises(ReconcileError, match="no journaled entry decision for order O-1-001-000-1"):
        reconcile(sink(context=False), ["ETHUSDT"], account=FakeAccount(positions={"ETHUSDT": (-10.0, 1900.0)}))


def test_sandbox_adopts_the_journal_position_and_restores_it(sink):
    r = reconcile(sink(), ["ETHUSDT"], account=None)
    assert r.adopt.restore and r.adopt.qty == 10.0 and r.adopt.tp_order_id is None


def test_no_take_profit_at_the_venue_means_the_strategy_places_one(sink):
    stray = order("O-1-001-000-3", "BUY", "LIMIT", 4.0, True, 3)  # reduce-only but not the position's size
    acct = FakeAccount(positions={"ETHUSDT": (-10.0, 1900.0)}, open_orders=[stray])
    r = reconcile(sink(), ["ETHUSDT"], account=acct)
    assert r.adopt.tp_order_id is None and acct.cancelled == [("ETHUSDT", "O-1-001-000-3")]


def test_entry_decisions_are_append_only_and_idempotent(tmp_path):
    j = FillJournal(tmp_path / "l.sqlite")
    j.open_session(S, "s1", mode="live", opening_capital=1.0)
    assert j.record_entry(S, "s1", "O-1", "ETHUSDT", 5, CTX) == "new"
    assert j.record_entry(S, "s1", "O-1", "ETHUSDT", 5, CTX) == "duplicate"
    with pytest.raises(JournalConflictError, match="O-1"):
        j.record_entry(S, "s1", "O-1", "ETHUSDT", 5, dict(CTX, posture=1))
    assert j.entries(S, "ETHUSDT")[0]["boost"] == 1.0 and j.entries(S, "BTCUSDT") == []
    import sqlite3

    with sqlite3.connect(tmp_path / "l.sqlite") as con, pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("UPDATE journal_entries SET context = '{}'")
