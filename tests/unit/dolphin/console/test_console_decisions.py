"""The runtime's decision record (dolphin.console.decisions): the reason for each bar close follows the strategy's
branches; publishing to DOLPHIN_STATE_<S>/decisions runs off the decision path (a stalled or down store never
delays ``record``)."""

import time
from types import SimpleNamespace

import numpy as np
import pytest

from dolphin.console.decisions import DECISIONS_KEY, DecisionLog, explain
from dolphin.engine import kernel as K
from dolphin.engine.config import APEX, BLUE, GREEN, HIBERNATE, RED, STALKER, TURTLE
from dolphin.store import state_map
from dolphin.store.faults import StallingStore

P = K.pack_params(BLUE, False, 0.2)
THR = float(P[K.P_THR])


def risk(posture=APEX, rm=0.9, mc=GREEN, boost=1.0):
    return SimpleNamespace(posture=posture, rm=rm, mc_status=mc, acb_boost=boost)


def why(**kw):
    base = dict(decision=K.D_NONE, lev=0.0, vd_prev=0.0, vd=0.0, vol_ok=True, risk=risk(), in_trade=False,
                pending=False, at_end=False)
    base.update(kw)
    return explain(P, **base)


def test_reasons_follow_the_strategy_branches():
    assert why() == ("no_entry", f"no signal: vel_div +0 did not cross -{THR:.4g}")
    assert why(vd=np.nan)[1].startswith("no signal: scanner warming up")
    assert why(risk=risk(TURTLE, 0.2))[1] == "posture TURTLE (Rm 0.200): no new entries"
    assert why(risk=risk(HIBERNATE, 0.0))[1].startswith("posture HIBERNATE")
    assert why(risk=risk(mc=RED))[1] == "MC forewarner RED"
    assert why(vol_ok=False)[1].startswith("vol gate")
    # posture is checked before MC and the vol gate, as entry_allowed does
    assert why(risk=risk(TURTLE, 0.2, RED), vol_ok=False)[1].startswith("posture TURTLE")
    # a crossing signal whose leverage after Rm is below the minimum order leverage
    crossing = dict(vd_prev=-THR * 0.5, vd=-THR * 1.01)
    assert why(**crossing, risk=risk(STALKER, 0.001))[1].startswith("leverage ")
    assert why(**crossing)[1] == "no tradable asset ranked for the signal"
    assert why(in_trade=True)[0] == "hold" and why(pending=True)[0] == "wait"
    assert why(decision=K.D_ENTER_SHORT, lev=1.5, vd=-0.02) == ("enter_short", "signal vel_div -0.02, leverage 1.50x")
    assert why(decision=K.D_EXIT_HIBERNATE, in_trade=True) == ("exit_hibernate", "hibernate")


def fake_strategy():
    acct = SimpleNamespace(trade=None, pending=None, capital=25_000.0, journal=None)
    return SimpleNamespace(acct=acct, p=P, symbols=["BTCUSDT", "ETHUSDT"], bar_ms=300_000,
                           market=SimpleNamespace(last_close=np.array([30_000.0, 1_900.0])), cfg=BLUE)


def test_record_publishes_the_last_decisions_and_the_open_position(home):
    from dolphin.adapters.store_factory import open_store_from_env
    from runtime.accounting import _Trade

    store = open_store_from_env()
    log = DecisionLog(store, "BLUE", keep=3)
    st = fake_strategy()
    from datetime import datetime, timedelta, timezone

    from dolphin.survival.stack import PostureController, RmBreakdown

    ctrl = PostureController()
    t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    low = RmBreakdown(0.2, 1.0, 0.5, 0.5, 1.0, 0.8)
    for k in range(3):  # two checks down -> TURTLE, then one check up pending
        ctrl.update(low if k < 2 else RmBreakdown(0.9, 1.0, 1.0, 1.0, 1.0, 0.9), t + timedelta(minutes=5 * k))
    st.risk_source = SimpleNamespace(controller=ctrl)
    for i in range(4):
        log.record(st, 1_000_000 + i * 300_000, K.D_NONE, -1, 0.0, 0.0, 0.0, True, risk())
    st.acct.trade = _Trade(asset=1, side=-1, entry_bar=10, entry_fill_ns=3_000_000_000_000, qty=2.0, entry_px=2000.0,
                           target_notional=4000.0, leverage=2.0, fees=1.0, capital_before=25_000.0, signal=-0.02,
                           posture=APEX, boost=1.0, maker_entry=False, tp_price=1981.0)
    log.record(st, 2_500_000, K.D_NONE, -1, 0.0, 0.0, 0.0, True, risk())
    assert log.flush(5)
    time.sleep(0.2)
    rec = store.get(state_map("BLUE"), DECISIONS_KEY)
    v = rec.value
    assert [d["close_ms"] for d in v["decisions"]] == [1_600_000, 1_900_000, 2_500_000]  # keep=3, oldest dropped
    assert v["decisions"][-1]["action"] == "hold"
    assert v["hysteresis"] == {"pending_direction": "up", "pending_count": 1, "pending_target": "APEX",
                               "checks_down": 2, "checks_up": 5}
    assert [(c["previous"], c["posture"]) for c in v["posture_changes"]] == [("APEX", "TURTLE")]
    assert v["posture_changes"][0]["breakdown"]["Cat2"] == 0.5
    pos = v["position"]
    assert pos["symbol"] == "ETHUSDT" and pos["side"] == "SHORT" and pos["qty"] == 2.0
    assert pos["unrealised"] == pytest.approx((2000.0 - 1900.0) * 2.0)  # marked at the last close
    # the kernel's isolated-margin liquidation price for a 2x short, mmr 0.4 %
    assert pos["liquidation_price"] == pytest.approx(2000.0 * 1.5 / 1.004)
    assert pos["max_hold_exit_ms"] == (10 + BLUE.max_hold_bars) * 300_000
    log.close()
    store.close()


def test_a_stalled_or_down_store_never_delays_the_decision(home):
    from dolphin.adapters.store_factory import open_store_from_env

    store = StallingStore(open_store_from_env())
    log = DecisionLog(store, "BLUE")
    st = fake_strategy()
    store.stall(3.0)
    t0 = time.perf_counter()
    for i in range(200):
        log.record(st, i * 300_000, K.D_NONE, -1, 0.0, 0.0, 0.0, True, risk())
    took = time.perf_counter() - t0
    assert took < 1.0, took  # 200 records while the store stalls 3 s per call: none waited for it
    store.down = True
    store.until = 0.0
    log.record(st, 10**9, K.D_NONE, -1, 0.0, 0.0, 0.0, True, risk())
    deadline = time.monotonic() + 5
    while log.failures == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.failures >= 1  # reported, not raised into the strategy
    log.close()
    store.inner.close()
