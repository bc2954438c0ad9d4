"""Engine fill model and decisions on REAL spot-5m-2024 bars with a hand-made vel_div signal.

Every expectation is recomputed here independently from the raw OHLC, so a change in fill prices,
fees, TP / max-hold / liquidation handling or funding makes these fail."""

import numpy as np
import pytest

from dolphin.engine.backtest import run_backtest
from dolphin.engine.config import BLUE, HIBERNATE, RED, STALKER, TURTLE
from dolphin.engine.inputs import RiskInputs
from tests.support.engine import handmade_scans, real_panel

# explicit thresholds so the hand computations below do not move with the calibrated preset
CFG = BLUE.with_(entry_threshold=0.02, extreme_threshold=0.06, vol_gate=False, w_flow=0.0, w_move=0.0,
                 max_hold_bars=24)


def _signal(T, at, value):
    vd = np.zeros(T)
    vd[at] = value
    return vd


def _loadings(T, N, best):
    lo = np.full((T, N), 0.1)
    lo[:, best] = 0.3
    return lo


def test_short_entry_fill_and_exit_match_hand_computation():
    panel = real_panel(n=600)
    T, N = panel.close.shape
    t_sig = 100
    vd = _signal(T, t_sig, -0.04)  # strength (0.04-0.02)/(0.06-0.02) = 0.5
    res = run_backtest(panel, handmade_scans(panel, vd, _loadings(T, N, 1)), CFG)
    assert res.decision[t_sig] == 1 and res.decision_asset[t_sig] == 1
    lev = 1.0 + (6.0 - 1.0) * 0.5
    assert res.decision_leverage[t_sig] == pytest.approx(lev)
    tr = res.trades.iloc[0]
    e = t_sig + 1
    px = panel.open[e, 1] * (1 - 2e-4)  # market short fills at next open minus slippage
    assert tr.entry_bar == e and tr.entry_price == pytest.approx(px, rel=1e-12)
    notional = 25_000.0 * CFG.capital_fraction * lev  # isolated margin = fraction of capital
    qty = notional / px
    tp = px * (1 - 0.0095)
    liq = px * (1 + 1 / lev) / (1 + 0.004)
    # walk forward: liquidation first, then TP, then max hold (decided at scan e+23 -> exit at open e+24)
    exit_bar, exit_px, reason = None, None, None
    for t in range(e, T):
        if panel.high[t, 1] >= liq:
            exit_bar, exit_px, reason = t, liq, "liquidation"
            break
        if panel.low[t, 1] < tp:
            exit_bar, exit_px, reason = t, (min(tp, panel.open[t, 1]) if t > e else tp), "take_profit"
            break
        if t - e + 1 >= 24:
            exit_bar, exit_px, reason = t + 1, panel.open[t + 1, 1] * (1 + 2e-4), "max_hold"
            break
    assert (tr.exit_bar, tr.exit_reason) == (exit_bar, reason)
    assert tr.exit_price == pytest.approx(exit_px, rel=1e-12)
    exit_fee = qty * exit_px * (2e-4 if reason == "take_profit" else 5e-4)
    fees = notional * 5e-4 + exit_fee
    pnl = -qty * (exit_px - px) - fees
    assert tr.fees == pytest.approx(fees, rel=1e-12)
    assert tr.pnl == pytest.approx(pnl, rel=1e-9)
    assert res.equity[exit_bar] == pytest.approx(25_000.0 + pnl, rel=1e-12)


def test_no_signal_no_trade_and_crossing_required():
    panel = real_panel(n=300)
    T = panel.n_bars
    vd = np.full(T, -0.05)  # below threshold all along: never crosses, never enters
    res = run_backtest(panel, handmade_scans(panel, vd), CFG)
    assert len(res.trades) == 0 and np.all(res.equity == 25_000.0)


def test_stalker_uses_limit_capped_at_2x_and_turtle_blocks_entries():
    panel = real_panel(n=400)
    T, N = panel.close.shape
    vd = _signal(T, 50, -0.06)
    risk = RiskInputs.defaults(T)
    risk.posture[:] = STALKER
    res = run_backtest(panel, handmade_scans(panel, vd, _loadings(T, N, 0)), CFG, risk=risk)
    assert res.decision_leverage[50] == pytest.approx(2.0)
    lim = panel.close[50, 0]
    if panel.open[51, 0] >= lim:  # sell limit marketable on arrival: fills at the open as a taker
        tr = res.trades.iloc[0]
        assert tr.maker_entry and tr.entry_price == panel.open[51, 0]
        assert tr.fees >= tr.notional * CFG.taker_fee
    elif panel.high[51, 0] > lim:  # else it rests and fills only when the next bar trades through
        tr = res.trades.iloc[0]
        assert tr.maker_entry and tr.entry_price == lim
        assert tr.fees >= tr.notional * CFG.maker_fee
    else:
        assert len(res.trades) == 0
    risk.posture[:] = TURTLE
    assert len(run_backtest(panel, handmade_scans(panel, vd), CFG, risk=risk).trades) == 0
    risk.posture[:] = 0
    risk.mc_status[:] = RED
    assert len(run_backtest(panel, handmade_scans(panel, vd), CFG, risk=risk).trades) == 0


def test_hibernate_closes_position_at_next_open():
    panel = real_panel(n=400)
    T, N = panel.close.shape
    vd = _signal(T, 50, -0.03)
    risk = RiskInputs.defaults(T)
    risk.posture[55:] = HIBERNATE
    cfg = CFG.with_(take_profit_bps=5000.0, max_hold_bars=1000)
    res = run_backtest(panel, handmade_scans(panel, vd, _loadings(T, N, 2)), cfg, risk=risk)
    tr = res.trades.iloc[0]
    assert tr.exit_reason == "hibernate" and tr.exit_bar == 56
    assert tr.exit_price == pytest.approx(panel.open[56, 2] * (1 + 2e-4))


def test_liquidation_loses_the_isolated_margin():
    panel = real_panel(n=2000)
    T, N = panel.close.shape
    # 100x: liquidation ~1 % adverse; pick the first bar after which BTC rises > 1.2 % within 200 bars
    c, h = panel.close[:, 0], panel.high[:, 0]
    t_sig = next(t for t in range(10, T - 250) if h[t + 2:t + 200].max() > panel.open[t + 1, 0] * 1.012)
    vd = _signal(T, t_sig, -0.06)
    cfg = CFG.with_(max_leverage=100.0, abs_max_leverage=100.0, take_profit_bps=5000.0, max_hold_bars=10_000)
    res = run_backtest(panel, handmade_scans(panel, vd, _loadings(T, N, 0)), cfg)
    tr = res.trades.iloc[0]
    assert tr.exit_reason == "liquidation" and tr.leverage == pytest.approx(100.0)
    margin = tr.notional / tr.leverage
    assert tr.notional == pytest.approx(25_000.0 * CFG.capital_fraction * tr.leverage)
    assert tr.pnl == pytest.approx(-margin - tr.fees, rel=1e-12)
    assert res.final_capital == pytest.approx(25_000.0 + tr.pnl, rel=1e-12)


def test_funding_charged_only_while_position_open(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    panel = real_panel(n=400)
    T, N = panel.close.shape
    vd = _signal(T, 20, -0.03)
    cfg = CFG.with_(take_profit_bps=5000.0, max_hold_bars=200)
    # one funding event 50 bars after entry and one long after the exit
    f_times = [int(panel.open_time[71]), int(panel.open_time[390])]
    for s in panel.symbols:
        pq.write_table(pa.table({"funding_time": pa.array(f_times, pa.timestamp("ms", tz="UTC")),
                                 "funding_rate": [0.0001, 0.0001]}), tmp_path / f"{s}.parquet")
    res = run_backtest(panel, handmade_scans(panel, vd, _loadings(T, N, 1)), cfg, funding_dir=tmp_path)
    tr = res.trades.iloc[0]
    qty = tr.notional / tr.entry_price
    assert tr.funding == pytest.approx(-1 * 0.0001 * qty * panel.open[71, 1], rel=1e-12)  # shorts receive
    assert tr.exit_bar < 390


def test_same_inputs_same_trades():
    panel = real_panel(n=1500)
    T, N = panel.close.shape
    rng = np.random.default_rng(7)
    vd = rng.normal(0, 0.02, T)
    lo = rng.uniform(0, 1, (T, N))
    a = run_backtest(panel, handmade_scans(panel, vd, lo), CFG)
    b = run_backtest(panel, handmade_scans(panel, vd, lo), CFG)
    assert len(a.trades) > 3
    assert a.trades.equals(b.trades) and np.array_equal(a.equity, b.equity)


def test_green_long_leg_mirrors_short_and_stays_off_until_enabled():
    from dolphin.engine.config import GREEN_CFG

    panel = real_panel(n=600)
    T, N = panel.close.shape
    vd = _signal(T, 100, +0.04)
    green = GREEN_CFG.with_(entry_threshold=0.02, extreme_threshold=0.06, long_entry_threshold=0.02,
                            long_extreme_threshold=0.06, vol_gate=False, w_flow=0.0, w_move=0.0, max_hold_bars=24)
    assert len(run_backtest(panel, handmade_scans(panel, vd, _loadings(T, N, 2)), green).trades) == 0
    res = run_backtest(panel, handmade_scans(panel, vd, _loadings(T, N, 2)), green.with_(long_enabled=True))
    assert res.decision[100] == 2 and res.decision_asset[100] == 2
    tr = res.trades.iloc[0]
    px = panel.open[101, 2] * (1 + 2e-4)  # a market buy pays the slippage
    assert tr.side == 1 and tr.entry_price == pytest.approx(px, rel=1e-12)
    tp = px * (1 + 0.0095)
    hit = [t for t in range(101, 101 + 24) if panel.high[t, 2] > tp]
    if hit:
        assert tr.exit_reason == "take_profit" and tr.exit_bar == hit[0]
    else:
        assert tr.exit_reason == "max_hold" and tr.exit_price == pytest.approx(panel.open[125, 2] * (1 - 2e-4))
    qty = tr.notional / px
    assert tr.pnl == pytest.approx(qty * (tr.exit_price - px) - tr.fees, rel=1e-9)


@pytest.mark.parametrize("case", ["marketable_open_above", "marketable_open_at", "rests_trades_through",
                                  "rests_touch_only"])
def test_stalker_limit_fill_model_like_the_venue_synthetic_prices(case):
    """Synthetic next-bar prices around the sell limit (= signal close): marketable on arrival (open >= limit)
    -> fill at the open, taker, no slippage; otherwise a fill at the limit only if the bar trades THROUGH
    it (maker); touching it is no fill (as Nautilus with prob_fill_on_limit = 0)."""
    panel = real_panel(n=200)
    T, N = panel.close.shape
    risk = RiskInputs.defaults(T)
    risk.posture[:] = STALKER
    lim = float(panel.close[50, 0])
    o, h, lo_ = {"marketable_open_above": (1.001, 1.004, 0.999), "marketable_open_at": (1.0, 1.0, 0.995),
                 "rests_trades_through": (0.998, 1.002, 0.995), "rests_touch_only": (0.998, 1.0, 0.995)}[case]
    panel.open[51, 0], panel.high[51, 0], panel.low[51, 0] = lim * o, lim * h, lim * lo_
    panel.close[51, 0] = lim * lo_
    res = run_backtest(panel, handmade_scans(panel, _signal(T, 50, -0.06), _loadings(T, N, 0)), CFG, risk=risk)
    assert res.decision[50] != 0 and res.decision_asset[50] == 0
    if case == "rests_touch_only":
        assert len(res.trades) == 0
        return
    tr = res.trades.iloc[0]
    assert tr.entry_bar == 51 and tr.maker_entry
    if case.startswith("marketable"):
        assert tr.entry_price == panel.open[51, 0]
        entry_fee = tr.notional * CFG.taker_fee
    else:
        assert tr.entry_price == lim
        entry_fee = tr.notional * CFG.maker_fee
    exit_px, qty = tr.exit_price, tr.notional / tr.entry_price
    exit_fee = qty * exit_px * (CFG.maker_fee if tr.exit_reason == "take_profit" else CFG.taker_fee)
    assert tr.fees == pytest.approx(entry_fee + exit_fee, rel=1e-12)
