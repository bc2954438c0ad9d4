"""Per-trade loss bound (EngineConfig.max_trade_loss): the kernel's protective stop on REAL spot-5m-2024 bars
with a hand-made vel_div signal, recomputed here from the raw OHLC."""

import numpy as np
import pytest

from dolphin.engine.backtest import run_backtest
from dolphin.engine.config import BLUE, ConfigError
from tests.support.engine import handmade_scans, real_panel

CFG = BLUE.with_(entry_threshold=0.02, extreme_threshold=0.06, vol_gate=False, w_flow=0.0, w_move=0.0,
                 take_profit_bps=5000.0, max_hold_bars=10_000)


def _setup(lev, rise):
    panel = real_panel(n=2000)
    T, N = panel.close.shape
    h = panel.high[:, 0]
    t_sig = next(t for t in range(10, T - 250) if h[t + 2:t + 200].max() > panel.open[t + 1, 0] * rise)
    vd = np.zeros(T)
    vd[t_sig] = -0.06
    lo = np.full((T, N), 0.1)
    lo[:, 0] = 0.3
    return panel, handmade_scans(panel, vd, lo), t_sig


def test_stop_bounds_the_loss_before_liquidation():
    panel, scans, t_sig = _setup(100.0, 1.012)
    base = CFG.with_(max_leverage=6.0, abs_max_leverage=6.0)
    off = run_backtest(panel, scans, base).trades.iloc[0]
    cfg = base.with_(max_trade_loss=0.005)  # 0.5 % of capital
    res = run_backtest(panel, scans, cfg)
    tr = res.trades.iloc[0]
    e = t_sig + 1
    qty = tr.notional / tr.entry_price
    stop = tr.entry_price + 0.005 * 25_000.0 / qty
    t = next(t for t in range(e, panel.n_bars) if panel.high[t, 0] >= stop)
    px = (max(stop, panel.open[t, 0]) if t > e else stop) * (1 + 2e-4)
    assert (tr.exit_reason, tr.exit_bar) == ("stop_loss", t)
    assert tr.exit_price == pytest.approx(px, rel=1e-12)
    fees = tr.notional * 5e-4 + qty * px * 5e-4
    assert tr.pnl == pytest.approx(-qty * (px - tr.entry_price) - fees, rel=1e-9)
    assert -tr.pnl < 0.005 * 25_000.0 * 1.5  # bounded: the stop's loss plus slippage, fees and any gap
    assert off.exit_reason != "stop_loss" and off.exit_bar >= tr.exit_bar


def test_liquidation_stays_behind_the_stop():
    panel, scans, _ = _setup(100.0, 1.012)
    # a stop that would lose more than the isolated margin lies beyond the liquidation price: liquidation
    bound = min(0.99, CFG.capital_fraction * 1.2)
    cfg = CFG.with_(max_leverage=100.0, abs_max_leverage=100.0, max_trade_loss=bound)
    tr = run_backtest(panel, scans, cfg).trades.iloc[0]
    assert tr.exit_reason == "liquidation"
    assert tr.pnl == pytest.approx(-tr.notional / tr.leverage - tr.fees, rel=1e-12)


def test_max_trade_loss_validated():
    for bad in (-0.1, 1.0, 2):
        with pytest.raises(ConfigError, match="max_trade_loss"):
            BLUE.with_(max_trade_loss=bad)
    assert BLUE.with_(max_trade_loss=0.0).max_trade_loss == 0.0
