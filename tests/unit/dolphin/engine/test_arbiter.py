"""GREEN's capital arbiter on REAL data: weights sum to 1, both > 0, the stated rule, no look-ahead; leg sizing."""

import numpy as np
import pytest

from dolphin.data import load_panel
from dolphin.engine.arbiter import arbiter_weights
from dolphin.engine.backtest import run_backtest
from dolphin.engine.config import BLUE, GREEN_CFG, ConfigError
from dolphin.exf.history import ExfHistory
from dolphin.scanner.core import scan
from dolphin.timeutil import DAY_MS, parse_time

from tests.support.engine import handmade_scans, real_panel

START, END = "2024-02-01", "2024-02-20"


@pytest.fixture(scope="module")
def real():
    panel = load_panel("spot-5m-2024", start_ms=parse_time(START), end_ms=parse_time(END))
    scans = scan(panel, int(panel.open_time[0]), None)
    return panel, scans, scans.vel_div / panel.n_assets, ExfHistory.load()


def test_weights_sum_to_one_both_positive_and_vary_with_the_regime(real):
    panel, _, vd, exf = real
    w = arbiter_weights(panel, vd, GREEN_CFG, exf)
    assert np.allclose(w.w_short + w.w_long, 1.0)
    assert (w.w_short > 0).all() and (w.w_long > 0).all()
    assert (w.w_long >= 0.5 - GREEN_CFG.arbiter_tilt - 1e-12).all() and (w.w_long <= 0.5 + GREEN_CFG.arbiter_tilt + 1e-12).all()
    assert w.w_long.std() > 0.01, "regime_weighted weights never moved on 19 real days"
    f = w.frame()
    assert list(f.columns[:3]) == ["day", "w_short", "w_long"] and f["stress"].between(0, 1).all()
    # the first day has no history before its 00:00 (the panel starts then): equal weights
    assert w.w_long[0] == pytest.approx(0.5)
    eq = arbiter_weights(panel, vd, GREEN_CFG, exf, mode="equal_weight")
    assert (eq.w_short == 0.5).all() and (eq.w_long == 0.5).all()


def test_rule_by_hand_on_one_real_day(real):
    panel, _, vd, exf = real
    w = arbiter_weights(panel, vd, GREEN_CFG, exf)
    k = 5
    day = int(w.days_ms[k])
    hi = int(np.searchsorted(panel.close_time, day, side="right"))
    lo = hi - GREEN_CFG.arbiter_trend_bars
    win = vd[lo:hi]
    s_vd = win.sum() / np.abs(win).sum()
    b = panel.symbols.index("BTCUSDT")
    r = np.diff(np.log(panel.close[lo:hi, b]))
    s_btc = np.tanh(r.sum() / (r.std() * np.sqrt(len(r))))
    snap = exf.as_of(day)
    fng = snap.values.get("fear_greed")
    assert fng is not None
    c = w.components.iloc[k]
    assert c.s_vd == pytest.approx(s_vd) and c.s_btc == pytest.approx(s_btc)
    assert c.stress >= min(1.0, max(0.0, (50 - fng) / 50)) / 2 - 1e-12  # fng term is one of at most two
    assert w.w_long[k] == pytest.approx(0.5 + GREEN_CFG.arbiter_tilt * (s_vd + s_btc - c.stress) / 3)


def test_truncation_does_not_change_past_weights(real):
    """As-of: the weights of every day that has started by a cut are the same when the bars after it are gone."""
    panel, _, vd, exf = real
    full = arbiter_weights(panel, vd, GREEN_CFG, exf).per_bar(panel.close_time)
    for cut in (1500, 2881, 4000):
        p = panel.slice_bars(0, cut + 1)
        part = arbiter_weights(p, vd[:cut + 1], GREEN_CFG, exf).per_bar(p.close_time)
        assert np.array_equal(full[:cut + 1], part), f"weights changed after truncating at bar {cut}"
    # and the future really is not read: scrambling everything after a day start leaves that day's weights
    day = (int(panel.close_time[3000]) // DAY_MS) * DAY_MS
    j = int(np.searchsorted(panel.close_time, day, side="right"))
    vd2 = vd.copy()
    vd2[j:] = -vd2[j:]
    again = arbiter_weights(panel, vd2, GREEN_CFG, exf).per_bar(panel.close_time)
    same = panel.close_time < day + DAY_MS  # every scan of that day and before uses weights known at its 00:00
    assert np.array_equal(again[same], full[same])
    assert not np.array_equal(again[~same], full[~same])


def test_each_leg_sized_by_its_weight_real_bars():
    """A SHORT entry's margin is capital x fraction x w_short, a LONG one's x w_long (real candles, hand-made signal)."""
    panel = real_panel(n=300)
    T = panel.n_bars
    vd = np.zeros(T)
    vd[100], vd[200] = -0.2, 0.2  # one SHORT crossing, one LONG crossing
    scans = handmade_scans(panel, vd)
    cfg = GREEN_CFG.with_(long_enabled=True, vol_gate=False, max_hold_bars=20, take_profit_bps=1e6)
    lw = np.empty((T, 2))
    lw[:, 0], lw[:, 1] = 0.3, 0.7
    res = run_backtest(panel, scans, cfg, leg_weights=lw)
    tr = res.trades
    assert list(tr.side) == [-1, 1]
    for _, t in tr.iterrows():
        w = 0.3 if t.side < 0 else 0.7
        assert t.notional == pytest.approx(t.capital_before * cfg.capital_fraction * w * t.leverage)
    unit = run_backtest(panel, scans, cfg)
    assert unit.trades.notional.iloc[0] == pytest.approx(tr.notional.iloc[0] / 0.3)
    with pytest.raises(ValueError, match="leg weights"):
        run_backtest(panel, scans, cfg, leg_weights=np.zeros((T, 2)))
    # BLUE never takes the LONG crossing
    assert list(run_backtest(panel, scans, BLUE.with_(vol_gate=False)).trades.side) == [-1]


def test_long_only_direction_takes_no_short_real_bars():
    panel = real_panel(n=300)
    vd = np.zeros(panel.n_bars)
    vd[100], vd[200] = -0.2, 0.2
    res = run_backtest(panel, handmade_scans(panel, vd),
                       GREEN_CFG.with_(direction="long_only", long_enabled=True, vol_gate=False, max_hold_bars=20))
    assert list(res.trades.side) == [1]


def test_arbiter_config_is_checked():
    with pytest.raises(ConfigError, match="arbiter must be"):
        GREEN_CFG.with_(arbiter="whatever")
    with pytest.raises(ConfigError, match="arbiter_tilt"):
        GREEN_CFG.with_(arbiter_tilt=0.5)
