"""The daily chain under the risk layer: running day by day, each day from the previous day's closing state
with the risk state carried in it (posture controller, Cat5 rolling peak, posture / Rm / Cats in force),
gives exactly one long risk backtest over the same days, on real data (spot-5m-2024)."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from dolphin.acb import boost_series
from dolphin.daily import RISK_CARRY_KEY, run_risk_day
from dolphin.data import load_panel
from dolphin.engine.config import BLUE
from dolphin.engine.risklayer import RiskLayers, mc_daily_envelopes, run_risk_backtest
from dolphin.engine.state import EngineState
from dolphin.mc.forewarner import MCConfig
from dolphin.scanner.core import scan
from dolphin.timeutil import DAY_MS, day_str, parse_time

CFG = BLUE.with_(max_hold_bars=400)  # long holds: positions and pending orders cross midnight
N_DAYS = 10
COLS = ["entry_time", "exit_time", "asset", "side", "notional", "leverage", "entry_price", "exit_price", "fees",
        "funding", "pnl", "exit_reason"]


@pytest.fixture(scope="module")
def data():
    panel = load_panel("spot-5m-2024", start_ms=parse_time("2024-03-15"), end_ms=parse_time("2024-05-01") - 1)
    scans = scan(panel, int(panel.open_time[0]), None)
    hist = CFG.vol_lookback + CFG.vol_window + 2
    day = panel.open_time // DAY_MS
    starts = [int(i) for i in np.flatnonzero(np.r_[True, day[1:] != day[:-1]]) if i >= hist][-N_DAYS:]
    boost, _ = boost_series(scans, None)
    envs = mc_daily_envelopes(panel, scans, CFG, hist, RiskLayers.preset("full"), MCConfig())
    return panel, scans, hist, starts, boost, envs


def _chain(data, layer):
    panel, scans, hist, starts, boost, envs = data
    state = EngineState.fresh(CFG.initial_capital)
    out = []
    for a, b in zip(starts, starts[1:] + [panel.n_bars]):
        p = dataclasses.replace(panel.slice_bars(a - hist, b), warmup_bars=hist)
        d = int(p.open_time[hist])
        day_envs = {k: envs.get(k) for k in (d, d + DAY_MS)}
        rec, rr = run_risk_day(p, scans[a - hist:b], CFG, day=day_str(d), state=state,
                               opening_equity=state.capital, layer=layer, mc_envelopes=day_envs,
                               boost=boost[a - hist:b], dvol=DVOL)
        # what the ledger stores and the next day reads: a JSON round trip
        state = EngineState.from_dict(json.loads(json.dumps(rec.closing_state)))
        out.append((a, b, rec, rr))
    return out


# a fixed DVOL history so Cat4 is exercised identically in both runs (the recorded dvol_btc file is used in
# production): one spike, on 2024-04-22 (published 04-23 00:00, inside the chained days 04-21 .. 04-30)
DVOL = (np.array([parse_time("2024-02-18") + i * DAY_MS for i in range(70)], dtype=np.int64),
        np.r_[np.full(64, 50.0) + np.sin(np.arange(64)), 95.0, 52.0, 51.0, 50.0, 50.5, 50.2])


def test_backfill_equals_one_long_risk_backtest(data):
    panel, scans, hist, starts, boost, envs = data
    chain = _chain(data, "full")
    long = run_risk_backtest(panel, scans, CFG, layers=RiskLayers.preset("full"), exf=None, dvol=DVOL,
                             trade_from_ms=int(panel.close_time[starts[0]]), close_at_end=False,
                             mc_envelopes=envs, boost=boost)
    for a, b, rec, rr in chain:
        off = a - hist
        assert rec.closing_equity == long.result.equity[b - 1]
        np.testing.assert_array_equal(rr.posture[hist:], long.posture[a:b])
        np.testing.assert_array_equal(rr.rm[hist:], long.rm[a:b])
        np.testing.assert_array_equal(rr.cats[hist:], long.cats[a:b])
        np.testing.assert_array_equal(rr.mc_status[hist:], long.mc_status[a:b])
        np.testing.assert_array_equal(rr.result.equity[hist:], long.result.equity[a:b])
        assert (rr.check_bars + off >= a - 1).all()
    chained = pd.concat([rr.result.trades for *_, rr in chain], ignore_index=True)
    pd.testing.assert_frame_equal(chained[COLS], long.result.trades[COLS])
    # the window must exercise what is carried: a posture change, a day opening in a carried posture
    assert len(long.posture_changes) >= 1
    assert len(set(long.posture[starts[0]:].tolist())) >= 2
    assert any(long.posture[a] != long.posture[starts[0]] for a in starts[1:]), "a day opens in a carried posture"
    assert sum(long.cats[starts[0]:, 3] < 1.0) > 0, "Cat4 (the DVOL spike) must be exercised"
    assert len(long.result.trades) >= 3
    # (a position carried over midnight is the engine state's part: tests/unit/dolphin/engine/test_engine_state.py)
    last = chain[-1][2].closing_state["extra"][RISK_CARRY_KEY]
    assert last["controller"] == json.loads(json.dumps(long.carry["controller"]))
    assert last["posture"] == long.carry["posture"]


def test_rerun_of_a_day_is_deterministic_and_layers_do_not_mix(data):
    panel, scans, hist, starts, boost, envs = data
    chain = _chain(data, "full")
    a, b, rec, _ = chain[2]
    state = EngineState.from_dict(json.loads(json.dumps(chain[1][2].closing_state)))
    p = dataclasses.replace(panel.slice_bars(a - hist, b), warmup_bars=hist)
    d = int(p.open_time[hist])
    again, _ = run_risk_day(p, scans[a - hist:b], CFG, day=day_str(d), state=state, opening_equity=state.capital,
                            mc_envelopes={k: envs.get(k) for k in (d, d + DAY_MS)}, boost=boost[a - hist:b],
                            dvol=DVOL)
    assert json.dumps(again.closing_state, sort_keys=True) == json.dumps(rec.closing_state, sort_keys=True)
    assert again.trades == rec.trades
    # a chain keeps its risk layer: a 'none' day cannot continue a 'full' chain silently
    with pytest.raises(ValueError, match="keeps one risk layer"):
        run_risk_day(p, scans[a - hist:b], CFG, day=day_str(d), state=state, opening_equity=state.capital,
                     layer="none")
    with pytest.raises(ValueError, match="risk_layer must be one of"):
        run_risk_day(p, scans[a - hist:b], CFG, day=day_str(d), state=state, opening_equity=state.capital,
                     layer="half")


def test_without_the_risk_layer_equals_the_plain_day_run(data):
    """risk_layer 'none' (the comparison switch) is the engine with neutral risk inputs, as before."""
    from dolphin.daily import run_day

    panel, scans, hist, starts, boost, envs = data
    chain = _chain(data, "none")
    state = EngineState.fresh(CFG.initial_capital)
    for a, b, rec, _ in chain:
        p = dataclasses.replace(panel.slice_bars(a - hist, b), warmup_bars=hist)
        plain, _ = run_day(p, scans[a - hist:b], CFG, day=day_str(int(p.open_time[hist])), state=state,
                           opening_equity=state.capital)
        assert plain.closing_equity == rec.closing_equity and plain.trades == rec.trades
        state = EngineState.from_dict(json.loads(json.dumps(plain.closing_state)))
