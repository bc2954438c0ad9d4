"""dolphin.metrics on small hand-computed cases, edge cases, the DESIGN.md floors on constructed histories,
and a few properties. Expected numbers are worked out in the comments, not taken from the code."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dolphin.metrics import (FLOORS, LONG_WINDOW_DAYS, MAX_DRAWDOWN_CEILING, MIN_TRADES, PROFIT_FACTOR_FLOOR,
                             ROI_FLOOR, SHARPE_FLOOR, SHORT_WINDOW_DAYS, WIN_RATE_FLOOR, compute_metrics,
                             daily_table, evaluate_floors, evaluate_floors_at, format_floors_table,
                             format_metrics_table, max_drawdown, monthly_table, text_table)
from dolphin.timeutil import DAY_MS, parse_time

H = 3_600_000
D = DAY_MS
T0 = parse_time("2024-03-01")  # a UTC midnight
SQ365 = math.sqrt(365)


def trades_frame(rows):
    """rows: (entry_time, exit_time, side, pnl[, fees, funding])."""
    out = []
    for e, x, side, pnl, *rest in rows:
        fees, fund = ([*rest, 0.0, 0.0])[:2]
        out.append(dict(entry_time=e, exit_time=x, asset="BTCUSDT", side=side, notional=1000.0, leverage=1.0,
                        entry_price=100.0, exit_price=100.0, fees=fees, funding=fund, pnl=pnl,
                        exit_reason="tp", capital_before=1000.0))
    df = pd.DataFrame(out)
    return df.astype({"entry_time": "int64", "exit_time": "int64", "side": "int64"})


def daily_bars(equity_end_of_day, start=T0):
    """1d bars: bar k covers day k and closes at the next midnight."""
    eq = np.asarray(equity_end_of_day, float)
    return start + D * np.arange(1, eq.size + 1, dtype=np.int64), eq


# ---------------------------------------------------------------- trade statistics


def test_trade_statistics_three_trades():
    # pnl +100, -50, +30: gross profit 130, gross loss 50 -> PF 2.6; 2 of 3 win -> WR 2/3;
    # expectancy 80/3; avg win (100+30)/2 = 65; avg loss -50; fees 1+2+3 = 6; funding 0.5-0.25+0 = 0.25
    tr = trades_frame([(T0, T0 + H, -1, 100.0, 1.0, 0.5), (T0 + H, T0 + 2 * H, -1, -50.0, 2.0, -0.25),
                       (T0 + 2 * H, T0 + 3 * H, +1, 30.0, 3.0, 0.0)])
    ts = T0 + H * np.arange(1, 4)
    m = compute_metrics(tr, ts, np.array([1100.0, 1050.0, 1080.0]), 1000.0, bar_ms=H)
    assert m.n_trades == 3 and m.n_wins == 2 and m.n_losses == 1
    assert m.n_long == 1 and m.n_short == 2
    assert m.gross_profit == 130.0 and m.gross_loss == 50.0
    assert m.profit_factor == pytest.approx(2.6, rel=1e-15)
    assert m.win_rate == pytest.approx(2 / 3, rel=1e-15)
    assert m.expectancy == pytest.approx(80 / 3, rel=1e-15)
    assert (m.avg_win, m.avg_loss) == (65.0, -50.0)
    assert (m.best_trade, m.worst_trade) == (100.0, -50.0)
    assert m.total_pnl == 80.0
    assert m.total_fees == 6.0 and m.total_funding == 0.25
    # ROI from the equity curve, not from trade pnl: 1080 / 1000 - 1
    assert m.roi == pytest.approx(0.08, rel=1e-12)
    assert m.final_equity == 1080.0


def test_no_trades():
    ts, eq = daily_bars([1000.0, 1000.0])
    m = compute_metrics(pd.DataFrame(), ts, eq, 1000.0, bar_ms=D)  # empty frame without columns is allowed
    assert m.n_trades == 0 and m.n_long == 0 and m.n_short == 0
    for v in (m.profit_factor, m.win_rate, m.expectancy, m.best_trade, m.worst_trade, m.avg_hold_minutes):
        assert math.isnan(v)
    assert m.exposure == 0.0 and m.total_fees == 0.0 and m.gross_loss == 0.0
    assert not math.copysign(1.0, m.gross_loss) < 0  # no "-0.0" in reports
    assert m.roi == 0.0 and m.max_drawdown == 0.0


def test_all_wins_all_losses_and_zero_pnl():
    ts, eq = daily_bars([1000.0])
    wins = trades_frame([(T0, T0 + H, -1, 5.0), (T0, T0 + H, -1, 7.0)])
    m = compute_metrics(wins, ts, eq, 1000.0, bar_ms=D)
    assert m.profit_factor == math.inf and m.win_rate == 1.0  # 12 / 0
    losses = trades_frame([(T0, T0 + H, -1, -5.0), (T0, T0 + H, -1, -7.0)])
    m = compute_metrics(losses, ts, eq, 1000.0, bar_ms=D)
    assert m.profit_factor == 0.0 and m.win_rate == 0.0  # 0 / 12
    flat = trades_frame([(T0, T0 + H, -1, 0.0), (T0, T0 + H, +1, 0.0)])
    m = compute_metrics(flat, ts, eq, 1000.0, bar_ms=D)
    assert math.isnan(m.profit_factor)  # 0 / 0
    assert m.win_rate == 0.0 and m.n_trades == 2  # zero pnl is a trade but not a win
    mixed = trades_frame([(T0, T0 + H, -1, 5.0), (T0, T0 + H, -1, 0.0), (T0, T0 + H, -1, 0.0), (T0, T0 + H, -1, -5.0)])
    m = compute_metrics(mixed, ts, eq, 1000.0, bar_ms=D)
    assert m.win_rate == 0.25 and m.profit_factor == 1.0  # 1 win of 4 trades; 5 / 5


# ---------------------------------------------------------------- drawdown


def test_max_drawdown_with_dates():
    # path 100 (initial, at the first bar's open T0) -> 100 -> 120 -> 90 -> 130:
    # peak 120 at bar 2's close, trough 90 at bar 3's close: 1 - 90/120 = 25 %; 130 >= 120 recovers at bar 4
    ts = T0 + H * np.arange(1, 5)
    dd, peak, trough, rec = max_drawdown(ts, [100.0, 120.0, 90.0, 130.0], 100.0, H)
    assert dd == pytest.approx(0.25, rel=1e-15)
    assert (peak, trough, rec) == (T0 + 2 * H, T0 + 3 * H, T0 + 4 * H)
    m = compute_metrics(None, ts, np.array([100.0, 120.0, 90.0, 130.0]), 100.0, bar_ms=H)
    assert (m.max_drawdown, m.max_dd_peak_ms, m.max_dd_trough_ms, m.max_dd_recovery_ms) == (dd, peak, trough, rec)
    assert m.as_dict(readable=True)["max_dd_peak"] == "2024-03-01 02:00:00"


def test_max_drawdown_not_recovered_first_bar_and_latest_peak():
    ts = T0 + H * np.arange(1, 5)
    # 120 -> 90 and only back to 110: never recovered
    assert max_drawdown(ts, [100.0, 120.0, 90.0, 110.0], 100.0, H) == (0.25, T0 + 2 * H, T0 + 3 * H, None)
    # the first bar already loses: 100 (initial, at T0) -> 80 = 20 %, peak stamped at the first bar's open
    dd, peak, trough, rec = max_drawdown(ts[:2], [80.0, 90.0], 100.0, H)
    assert (dd, peak, trough, rec) == (pytest.approx(0.2, rel=1e-15), T0, T0 + H, None)
    # the peak 120 is reached twice (bars 1 and 3) before the 90 trough: the latest one is the peak date
    dd, peak, trough, _ = max_drawdown(ts, [120.0, 110.0, 120.0, 90.0], 100.0, H)
    assert dd == pytest.approx(0.25) and peak == T0 + 3 * H and trough == T0 + 4 * H
    # monotone: no drawdown, no dates
    assert max_drawdown(ts, [100.0, 101.0, 102.0, 103.0], 100.0, H) == (0.0, None, None, None)


# ---------------------------------------------------------------- daily returns, Sharpe, Sortino, Calmar


def test_daily_returns_sharpe_sortino_by_hand():
    # 12h bars; only the last bar of each UTC day counts (the 00:00 close belongs to the day before):
    # day ends 110, 99, 108.9 -> returns +10 %, -10 %, +10 % (the 50 at noon of day 2 is intraday only)
    ts = T0 + 12 * H * np.arange(1, 7)
    eq = np.array([105.0, 110.0, 50.0, 99.0, 104.0, 108.9])
    daily = daily_table(None, ts, eq, 100.0)
    assert list(daily["date"]) == ["2024-03-01", "2024-03-02", "2024-03-03"]
    np.testing.assert_allclose(daily["end_equity"], [110.0, 99.0, 108.9])
    np.testing.assert_allclose(daily["start_equity"], [100.0, 110.0, 99.0])
    np.testing.assert_allclose(daily["return"], [0.1, -0.1, 0.1], rtol=1e-12)
    m = compute_metrics(None, ts, eq, 100.0, bar_ms=12 * H)
    # mean 1/30; deviations 1/15, -2/15, 1/15 -> sum sq 6/225, / (n-1=2) = 1/75 -> sd 1/sqrt(75)
    # Sharpe = (1/30) * sqrt(75) * sqrt(365) = sqrt(365/12) = 5.51513...
    assert m.sharpe == pytest.approx(math.sqrt(365 / 12), rel=1e-9)
    assert m.sharpe == pytest.approx(5.5151307, rel=1e-7)
    # downside dev = sqrt((0 + 0.01 + 0) / 3) = 0.1/sqrt(3); Sortino = (1/30)/(0.1/sqrt3) * sqrt365 = sqrt(365/3)
    assert m.sortino == pytest.approx(math.sqrt(365 / 3), rel=1e-9)
    # max DD: peak 110 (day 1 end), trough 50 (noon day 2): 60/110; elapsed 6 bars * 12h = 3 days
    assert m.max_drawdown == pytest.approx(60 / 110, rel=1e-12)
    assert m.days == 3.0 and m.n_days == 3
    # ROI 8.9 %, annualised (1.089)^(365/3) - 1, Calmar = that / (60/110)
    assert m.annualised_return == pytest.approx(1.089 ** (365 / 3) - 1, rel=1e-9)
    assert m.calmar == pytest.approx((1.089 ** (365 / 3) - 1) / (60 / 110), rel=1e-9)


def test_annualised_return_and_calmar():
    # 73 daily bars: 365/73 = 5 -> ROI 10 % annualises to 1.1^5 - 1 = 0.61051; one 5 % dip -> Calmar 12.2102
    eq = np.full(73, 100.0)
    eq[10], eq[-1] = 95.0, 110.0
    ts, eq = daily_bars(eq)
    m = compute_metrics(None, ts, eq, 100.0, bar_ms=D)
    assert m.days == 73.0
    assert m.annualised_return == pytest.approx(0.61051, rel=1e-9)
    assert m.max_drawdown == pytest.approx(0.05, rel=1e-12)
    assert m.calmar == pytest.approx(12.2102, rel=1e-9)


def test_one_day_and_zero_variance():
    ts, eq = daily_bars([101.0])
    m = compute_metrics(None, ts, eq, 100.0, bar_ms=D)
    assert m.n_days == 1 and math.isnan(m.sharpe) and math.isnan(m.sortino)  # fewer than 2 daily returns
    # flat: every return 0 -> zero std -> Sharpe NaN; no losing day and mean 0 -> Sortino NaN;
    # no drawdown and no gain -> Calmar NaN
    ts, eq = daily_bars([100.0] * 5)
    m = compute_metrics(None, ts, eq, 100.0, bar_ms=D)
    assert math.isnan(m.sharpe) and math.isnan(m.sortino) and math.isnan(m.calmar)
    # constant +10 % a day (std ~1e-17 from rounding): Sharpe still NaN; no losing day, mean > 0 -> Sortino inf;
    # no drawdown with a gain -> Calmar inf
    ts, eq = daily_bars([110.0, 121.0, 133.1, 146.41])
    m = compute_metrics(None, ts, eq, 100.0, bar_ms=D)
    assert math.isnan(m.sharpe) and m.sortino == math.inf and m.calmar == math.inf


def test_no_bars():
    m = compute_metrics(None, np.array([], np.int64), np.array([]), 100.0, bar_ms=D)
    assert m.roi == 0.0 and m.final_equity == 100.0 and m.max_drawdown == 0.0
    assert m.n_bars == 0 and m.n_days == 0 and math.isnan(m.sharpe) and math.isnan(m.exposure)


# ---------------------------------------------------------------- exposure and hold


def test_exposure_and_average_hold():
    # ten 1h bars, bar i covers [T0 + i h, T0 + (i+1) h)
    ts = T0 + H * np.arange(1, 11)
    tr = trades_frame([
        (T0, T0 + 3 * H, -1, 1.0),  # bars 0, 1, 2 (exits at bar 3's open); 180 min
        (T0 + 2 * H, T0 + 5 * H, -1, 1.0),  # bars 2, 3, 4 (bar 2 overlaps the first trade); 180 min
        (T0 + 7 * H + 30 * 60_000, T0 + 8 * H + 15 * 60_000, +1, 1.0),  # mid-bar: bars 7 and 8; 45 min
    ])
    m = compute_metrics(tr, ts, np.full(10, 100.0), 100.0, bar_ms=H)
    assert m.exposure == pytest.approx(7 / 10)  # bars 0-4, 7, 8
    assert m.avg_hold_minutes == pytest.approx((180 + 180 + 45) / 3)  # 135
    assert m.avg_hold_bars == pytest.approx(135 / 60)
    # a zero-length trade holds no bar but still counts in the average hold (0 min)
    z = pd.concat([tr, trades_frame([(T0 + 9 * H, T0 + 9 * H, -1, 1.0)])], ignore_index=True)
    m = compute_metrics(z, ts, np.full(10, 100.0), 100.0, bar_ms=H)
    assert m.exposure == pytest.approx(0.7) and m.avg_hold_minutes == pytest.approx(405 / 4)
    # entering at bar 5's open (= bar 4's close) and leaving at its close holds bar 5 only
    one = trades_frame([(T0 + 5 * H, T0 + 6 * H, -1, 1.0)])
    assert compute_metrics(one, ts, np.full(10, 100.0), 100.0, bar_ms=H).exposure == pytest.approx(0.1)


def test_annualising_uses_elapsed_time_not_calendar_days():
    # 36 hourly bars from 03-01 00:00: 1.5 days elapsed over 2 UTC days; ROI 1 % -> 1.01^(365/1.5) - 1
    ts = T0 + H * np.arange(1, 37)
    eq = np.full(36, 100.0)
    eq[-1] = 101.0
    m = compute_metrics(None, ts, eq, 100.0, bar_ms=H)
    assert m.days == 1.5 and m.n_days == 2
    assert m.annualised_return == pytest.approx(1.01 ** (365 / 1.5) - 1, rel=1e-9)


# ---------------------------------------------------------------- daily and monthly tables


def test_daily_table_midnight_rule_gap_days_and_trade_columns():
    # bars close at 12:00 and 24:00 of 03-01, then none on 03-02, then 24:00 of 03-03
    ts = np.array([T0 + 12 * H, T0 + D, T0 + 3 * D])
    eq = np.array([1010.0, 1020.0, 1005.0])
    tr = trades_frame([
        (T0, T0 + D, -1, 20.0, 1.0, 0.1),  # exit exactly at midnight: still day 03-01
        (T0 + D - H, T0 + D + 1, -1, -5.0, 2.0, 0.2),  # 1 ms after midnight: day 03-02
        (T0 + 2 * D, T0 + 2 * D + 5 * H, +1, -10.0, 3.0, 0.3),  # day 03-03
    ])
    d = daily_table(tr, ts, eq, 1000.0)
    assert list(d["date"]) == ["2024-03-01", "2024-03-02", "2024-03-03"]
    assert list(d["bars"]) == [2, 0, 1]
    np.testing.assert_allclose(d["start_equity"], [1000.0, 1020.0, 1020.0])
    np.testing.assert_allclose(d["end_equity"], [1020.0, 1020.0, 1005.0])  # 03-02 carries 1020 forward
    np.testing.assert_allclose(d["pnl"], [20.0, 0.0, -15.0])
    np.testing.assert_allclose(d["return"], [0.02, 0.0, -15 / 1020])
    assert list(d["trades"]) == [1, 1, 1] and list(d["wins"]) == [1, 0, 0]
    np.testing.assert_allclose(d["fees"], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(d["funding"], [0.1, 0.2, 0.3])
    np.testing.assert_allclose(d["trade_pnl"], [20.0, -5.0, -10.0])


def test_monthly_table():
    # daily ends: 01-30: 110, 01-31: 121 | 02-01: 108.9, 02-02: 119.79
    start = parse_time("2024-01-30")
    ts, eq = daily_bars([110.0, 121.0, 108.9, 119.79], start=start)
    tr = trades_frame([(start, start + H, -1, 10.0, 1.0), (start + 2 * D, start + 2 * D + H, -1, -12.1, 2.0),
                       (start + 3 * D, start + 3 * D + H, -1, 10.89, 4.0)])
    mo = monthly_table(tr, ts, eq, 100.0)
    assert list(mo["month"]) == ["2024-01", "2024-02"]
    np.testing.assert_allclose(mo["start_equity"], [100.0, 121.0])
    np.testing.assert_allclose(mo["end_equity"], [121.0, 119.79])
    np.testing.assert_allclose(mo["return"], [0.21, 119.79 / 121 - 1])  # Feb: 0.9 * 1.1 - 1 = -1 %
    np.testing.assert_allclose(mo["return"].iloc[1], -0.01, rtol=1e-9)
    assert list(mo["trades"]) == [1, 2] and list(mo["wins"]) == [1, 1] and list(mo["days"]) == [2, 2]
    np.testing.assert_allclose(mo["fees"], [1.0, 6.0])


def test_input_validation():
    ts = T0 + H * np.arange(1, 4)
    with pytest.raises(ValueError, match="same length"):
        compute_metrics(None, ts, np.ones(2), 1.0, bar_ms=H)
    with pytest.raises(ValueError, match="increasing"):
        compute_metrics(None, ts[::-1], np.ones(3), 1.0, bar_ms=H)
    with pytest.raises(ValueError, match="pnl"):
        compute_metrics(trades_frame([(T0, T0 + H, -1, 1.0)]).drop(columns="pnl"), ts, np.ones(3), 1.0, bar_ms=H)


# ---------------------------------------------------------------- floors


def test_floor_constants_match_design():
    # DESIGN.md "Quality gates"
    assert (SHORT_WINDOW_DAYS, LONG_WINDOW_DAYS) == (10, 55)
    assert (PROFIT_FACTOR_FLOOR, WIN_RATE_FLOOR, ROI_FLOOR, MIN_TRADES) == (1.08, 0.42, -0.05, 5)
    assert (MAX_DRAWDOWN_CEILING, SHARPE_FLOOR) == (0.20, 1.5)
    assert [(f.key, f.window_days, f.comparator) for f in FLOORS] == [
        ("profit_factor", 10, ">="), ("win_rate", 10, ">="), ("roi", 10, ">="), ("trades", 10, ">="),
        ("max_drawdown", 55, "<"), ("sharpe", 55, ">")]


def _history_12():
    """12 days 03-01..03-12, capital 1000. Trades (closed at noon): d1 +20 | d2 +10, +10 | d3 -10 | d4 +10 |
    d6 -10 | d11 -30. End equity = 1000 + realised pnl, except d12: an open position is 20 under water.
      d1 1020, d2 1040, d3 1030, d4 1040, d5 1040, d6..d10 1030, d11 1000, d12 980
    Windows W1 = d1..d10, W2 = d2..d11, W3 = d3..d12:
      trades  6, 6, 4                    (>= 5: pass, pass, FAIL)
      wins    4, 3, 1 -> WR .667, .5, .25 (>= .42: pass, pass, FAIL)
      PF      50/20 = 2.5, 30/50 = 0.6, 10/50 = 0.2 (>= 1.08: pass, FAIL, FAIL)
      ROI     1030/1000-1 = 3 %, 1000/1020-1 = -1.96 %, 980/1040-1 = -5.77 % (>= -5 %: pass, pass, FAIL)"""
    pnl_by_day = {1: [20.0], 2: [10.0, 10.0], 3: [-10.0], 4: [10.0], 6: [-10.0], 11: [-30.0]}
    rows = [(T0 + (d - 1) * D + 11 * H, T0 + (d - 1) * D + 12 * H, -1, p, 0.5)
            for d, ps in pnl_by_day.items() for p in ps]
    tr = trades_frame(rows)
    ts, eq = daily_bars([1020, 1040, 1030, 1040, 1040, 1030, 1030, 1030, 1030, 1030, 1000, 980])
    return tr, daily_table(tr, ts, eq, 1000.0)


def test_floors_12_day_history():
    tr, daily = _history_12()
    rep = evaluate_floors(daily, tr)
    assert (rep.first_day, rep.last_day) == ("2024-03-01", "2024-03-12")
    pf, wr, roi, n = rep["profit_factor"], rep["win_rate"], rep["roi"], rep["trades"]
    assert [f.n_windows for f in (pf, wr, roi, n)] == [3, 3, 3, 3]
    assert list(pf.windows["value"]) == pytest.approx([2.5, 0.6, 0.2])
    assert list(pf.windows["passed"]) == [True, False, False] and pf.status == "FAIL" and pf.n_pass == 1
    assert (pf.worst_value, pf.worst_start, pf.worst_end) == (pytest.approx(0.2), "2024-03-03", "2024-03-12")
    assert list(wr.windows["value"]) == pytest.approx([4 / 6, 0.5, 0.25]) and wr.n_pass == 2
    assert list(roi.windows["value"]) == pytest.approx([0.03, 1000 / 1020 - 1, 980 / 1040 - 1], rel=1e-12)
    assert list(roi.windows["passed"]) == [True, True, False]
    assert list(n.windows["value"]) == [6, 6, 4] and n.status == "FAIL"
    assert (n.latest_value, n.latest_start, n.latest_end) == (4, "2024-03-03", "2024-03-12")
    assert list(n.windows["start"]) == ["2024-03-01", "2024-03-02", "2024-03-03"]
    # 12 days < 55: the 55-day floors are not evaluable -- neither passed nor failed
    for key in ("max_drawdown", "sharpe"):
        f = rep[key]
        assert f.status == "N/A" and f.n_windows == 0 and f.n_pass == 0 and math.isnan(f.latest_value)
        assert f.worst_start is None and f.n_days == 12
    assert rep.status == "FAIL" and {f.key for f in rep.failed} == {"profit_factor", "win_rate", "roi", "trades"}


def test_floors_end_date_and_single_window():
    tr, daily = _history_12()
    # up to 03-11: windows W1, W2 only -> trades, WR and ROI pass, PF fails on W2
    rep = evaluate_floors(daily, tr, end_date="2024-03-11")
    assert rep.last_day == "2024-03-11"
    assert {f.key: f.status for f in rep.floors} == {"profit_factor": "FAIL", "win_rate": "PASS", "roi": "PASS",
                                                     "trades": "PASS", "max_drawdown": "N/A", "sharpe": "N/A"}
    # the window ending 03-11 only (W2): PF 0.6, WR 0.5, ROI -1.96 %, 6 trades
    at = evaluate_floors_at(daily, tr, pd.Timestamp("2024-03-11"))
    assert all(f.n_windows == 1 for f in at.floors[:4])
    assert at["profit_factor"].latest_value == pytest.approx(0.6) and at["profit_factor"].status == "FAIL"
    assert at["trades"].latest_value == 6 and at["trades"].latest_start == "2024-03-02"
    assert at["roi"].status == "PASS" and at["win_rate"].status == "PASS"
    # 03-09: only 9 days exist up to then -> nothing is evaluable
    at9 = evaluate_floors_at(daily, tr, "2024-03-09")
    assert all(f.status == "N/A" for f in at9.floors) and at9.status == "INCOMPLETE"
    with pytest.raises(ValueError, match="after the last day"):
        evaluate_floors(daily, tr, end_date="2024-03-13")


def _history_60():
    """60 days from 03-01, capital 1000: odd days +2 %, even days -1 %, except day 58: -25 % and day 60: +2 %.
    One trade a day: +20 on odd days, -10 on even days, -250 on day 58, +20 on day 60."""
    r = np.array([0.02 if d % 2 else -0.01 for d in range(1, 61)])
    r[57], r[59] = -0.25, 0.02
    eq = 1000.0 * np.cumprod(1 + r)
    pnl = np.where(r > 0, 20.0, -10.0)
    pnl[57] = -250.0
    tr = trades_frame([(T0 + k * D + 11 * H, T0 + k * D + 12 * H, -1, p) for k, p in enumerate(pnl)])
    ts, eq = daily_bars(eq)
    return tr, daily_table(tr, ts, eq, 1000.0)


def test_floors_60_day_history():
    tr, daily = _history_60()
    rep = evaluate_floors(daily, tr)
    dd, sh = rep["max_drawdown"], rep["sharpe"]
    # 55-day windows end on days 55..60 (6 windows); those ending 58..60 contain the -25 % day
    assert dd.n_windows == 6 and list(dd.windows["passed"]) == [True] * 3 + [False] * 3
    # passing windows: worst fall is one -1 % day -> DD 1 %; failing: 1 - 0.75 = 25 %, earliest on a tie
    np.testing.assert_allclose(dd.windows["value"], [0.01] * 3 + [0.25] * 3, rtol=1e-9)
    assert (dd.worst_start, dd.worst_end, dd.status) == ("2024-03-04", "2024-04-27", "FAIL")
    # Sharpe, window days 1..55: 28 x +0.02, 27 x -0.01. mean 0.29/55; sum sq dev = 28*27*0.03^2/55,
    # sample var = that / 54 -> 6.6555; days 2..56 (27 x +, 28 x -): mean 0.26/55, same std -> 5.9670
    sd = math.sqrt(28 * 27 * 0.0009 / 55 / 54)
    assert sh.windows["value"].iloc[0] == pytest.approx(0.29 / 55 / sd * SQ365, rel=1e-9)
    assert sh.windows["value"].iloc[0] == pytest.approx(6.6555, rel=1e-4)
    assert sh.windows["value"].iloc[1] == pytest.approx(0.26 / 55 / sd * SQ365, rel=1e-9)
    # worst: days 4..58 = 27 x +0.02, 27 x -0.01, 1 x -0.25: sum 0.02, mean 0.02/55;
    # sum r^2 = 27*.0004 + 27*.0001 + .0625 = .076; sum sq dev = .076 - .0004/55; / 54 -> Sharpe 0.18519
    sd_bad = math.sqrt((0.076 - 0.0004 / 55) / 54)
    assert sh.worst_value == pytest.approx(0.02 / 55 / sd_bad * SQ365, rel=1e-9)
    assert sh.worst_value == pytest.approx(0.18519, rel=1e-4)
    assert (sh.worst_start, sh.worst_end) == ("2024-03-04", "2024-04-27")
    assert sh.n_pass == 3 and sh.status == "FAIL"
    # 10-day floors: 51 windows; the 3 ending on days 58..60 contain -250: PF 100/290 (also ending 59), 120/280
    pf = rep["profit_factor"]
    assert pf.n_windows == 51 and pf.n_pass == 48
    assert pf.worst_value == pytest.approx(100 / 290) and pf.worst_end == "2024-04-27"  # tie -> earliest
    assert pf.latest_value == pytest.approx(120 / 280)
    assert rep["trades"].status == "PASS" and rep["trades"].worst_value == 10
    assert rep["win_rate"].status == "PASS" and rep["win_rate"].worst_value == pytest.approx(0.5)
    # ROI over days 49..58: 1.02^5 * 0.99^4 * 0.75 - 1 = -20.46 %
    assert rep["roi"].worst_value == pytest.approx(1.02 ** 5 * 0.99 ** 4 * 0.75 - 1, rel=1e-9)
    assert rep["roi"].n_pass == 48


def test_floors_all_pass_before_the_crash():
    tr, daily = _history_60()
    rep = evaluate_floors(daily, tr, end_date="2024-04-26")  # day 57
    assert rep.status == "PASS" and all(f.status == "PASS" for f in rep.floors)
    assert rep["sharpe"].n_windows == 3 and rep["max_drawdown"].n_windows == 3
    # every clean 10-day window: 5 x +2 %, 5 x -1 %: 1.02^5 * 0.99^5 - 1 = +4.997 %; PF 100/50 = 2
    np.testing.assert_allclose(rep["roi"].windows["value"], 1.02 ** 5 * 0.99 ** 5 - 1, rtol=1e-9)
    np.testing.assert_allclose(rep["profit_factor"].windows["value"], 2.0)
    # the day-58 window alone fails drawdown and Sharpe
    at = evaluate_floors_at(daily, tr, "2024-04-27")
    assert at["max_drawdown"].status == "FAIL" and at["sharpe"].status == "FAIL"
    assert at["max_drawdown"].latest_value == pytest.approx(0.25)


def test_floor_boundaries_are_exact():
    # PF exactly 1.08 and WR exactly 0.42 pass (>=); 4 trades fail (>= 5).
    # 21 wins: 20 x 5 + 8 = 108; 29 losses: 28 x 3.5 + 2 = 100 (all exact in binary) -> PF 108/100, WR 21/50
    day = (T0 + 11 * H, T0 + 12 * H, -1)
    rows = [(*day, 5.0)] * 20 + [(*day, 8.0)] + [(*day, -3.5)] * 28 + [(*day, -2.0)]
    tr = trades_frame(rows)
    ts, eq = daily_bars([1000.0] * 10)
    rep = evaluate_floors(daily_table(tr, ts, eq, 1000.0), tr)
    assert rep["win_rate"].latest_value == 0.42 and rep["win_rate"].status == "PASS"
    assert rep["profit_factor"].latest_value == 1.08 and rep["profit_factor"].status == "PASS"
    # one cent less profit and PF drops below the floor
    cut = trades_frame(rows[:-1] + [(*day, -2.01)])
    assert evaluate_floors(daily_table(cut, ts, eq, 1000.0), cut)["profit_factor"].status == "FAIL"
    few = trades_frame(rows[:4])
    rep = evaluate_floors(daily_table(few, ts, eq, 1000.0), few)
    assert rep["trades"].latest_value == 4 and rep["trades"].status == "FAIL"
    # no trades at all in a window: PF and WR undefined -> fail, and NaN is reported as the worst
    rep = evaluate_floors(daily_table(None, ts, eq, 1000.0), None)
    assert rep["profit_factor"].status == "FAIL" and math.isnan(rep["profit_factor"].worst_value)
    assert rep["win_rate"].status == "FAIL" and rep["roi"].status == "PASS"  # flat: ROI 0 >= -5 %
    # 11 days, trades +10 and -20 on day 1 only: window 1..10 PF 0.5, window 2..11 has no trade (NaN);
    # the undefined window is the worst, though 0.5 is the only number
    ts11, eq11 = daily_bars([1000.0] * 11)
    one_day = trades_frame([(*day, 10.0), (*day, -20.0)])
    pf = evaluate_floors(daily_table(one_day, ts11, eq11, 1000.0), one_day)["profit_factor"]
    assert pf.windows["value"].iloc[0] == 0.5 and math.isnan(pf.windows["value"].iloc[1])
    assert math.isnan(pf.worst_value) and pf.worst_end == "2024-03-11" and pf.n_pass == 0


def test_window_drawdown_starts_from_the_window_start_equity():
    # 56 days: day 1 closes -10 % (1000 -> 900), flat after. The window days 1..55 starts at 1000 -> DD 10 %;
    # the window days 2..56 starts at 900 and stays flat -> DD 0
    ts, eq = daily_bars([900.0] * 56)
    f = evaluate_floors(daily_table(None, ts, eq, 1000.0), None)["max_drawdown"]
    np.testing.assert_allclose(f.windows["value"], [0.1, 0.0], atol=1e-15)
    assert list(f.windows["passed"]) == [True, True]


def test_floor_notes_trades_outside_daily():
    tr, daily = _history_12()
    late = pd.concat([tr, trades_frame([(T0 + 20 * D, T0 + 20 * D + H, -1, 5.0)])], ignore_index=True)
    rep = evaluate_floors(daily, late)
    assert rep["trades"].latest_value == 4  # unchanged: the 03-21 trade is in no window
    assert rep.notes and "1 trade(s)" in rep.notes[0]


# ---------------------------------------------------------------- text tables


def test_text_tables():
    t = text_table(("a", "value"), [("x", "1"), ("longer", "22")]).splitlines()
    assert t == ["a       value", "------  -----", "x           1", "longer     22"]
    tr = trades_frame([(T0, T0 + H, -1, 100.0), (T0, T0 + H, -1, -50.0), (T0, T0 + H, 1, 30.0)])
    ts = T0 + H * np.arange(1, 5)
    s = format_metrics_table(compute_metrics(tr, ts, np.array([100.0, 120.0, 90.0, 130.0]), 100.0, bar_ms=H))
    assert "profit factor" in s and "2.6000" in s and "25.00 %" in s and "2024-03-01 03:00:00" in s
    tr12, daily = _history_12()
    s = format_floors_table(evaluate_floors(daily, tr12))
    lines = s.splitlines()
    assert lines[0].endswith("FAIL")
    sharpe_line = next(ln for ln in lines if ln.startswith("Sharpe"))
    assert "not evaluable (12 < 55 days)" in sharpe_line and sharpe_line.rstrip().endswith("N/A")
    pf_line = next(ln for ln in lines if ln.startswith("profit factor"))
    assert "1/3" in pf_line and "0.200 (2024-03-03..2024-03-12)" in pf_line
    # columns line up: 'status' header starts where each row's status starts
    col = lines[1].index("status")
    assert all(ln[col:].split()[0] in ("PASS", "FAIL", "N/A") for ln in lines[3:9])


# ---------------------------------------------------------------- properties

pnls = st.lists(st.floats(-1e4, 1e4, allow_nan=False).filter(lambda x: abs(x) > 1e-6), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(pnls, st.floats(1e-3, 1e3))
def test_property_pf_and_wr_scale_invariant(pnl, c):
    ts, eq = daily_bars([1000.0])
    a = compute_metrics(trades_frame([(T0, T0 + H, -1, p) for p in pnl]), ts, eq, 1000.0, bar_ms=D)
    b = compute_metrics(trades_frame([(T0, T0 + H, -1, p * c) for p in pnl]), ts, eq, 1000.0, bar_ms=D)
    assert a.win_rate == b.win_rate
    assert a.profit_factor == pytest.approx(b.profit_factor, rel=1e-9) or a.profit_factor == b.profit_factor


equities = st.lists(st.floats(1.0, 1e6, allow_nan=False), min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(equities, st.floats(1.0, 1e6))
def test_property_max_drawdown_bounds_and_dominance(eq, init):
    ts = T0 + H * np.arange(1, len(eq) + 1)
    dd, *_ = max_drawdown(ts, eq, init, H)
    assert 0.0 <= dd < 1.0
    path = [init] + eq  # no pair (earlier, later) falls by more than the max drawdown
    assert all(1 - path[j] / path[i] <= dd + 1e-12 for i in range(len(path)) for j in range(i, len(path)))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(100.0, 1e4), min_size=1, max_size=60), st.lists(st.integers(1, 40), min_size=60,
       max_size=60), st.floats(100.0, 1e4))
def test_property_daily_returns_compound_to_roi(eq, gaps_h, init):
    # irregular bar times (1..40 h apart, gap days included): the daily returns still compound to the ROI
    ts = T0 + H * np.cumsum(gaps_h[:len(eq)])
    m = compute_metrics(None, ts, np.array(eq), init, bar_ms=H)
    d = daily_table(None, ts, np.array(eq), init)
    assert np.prod(1 + d["return"].to_numpy()) - 1 == pytest.approx(m.roi, rel=1e-9, abs=1e-9)
    assert (np.diff(d["day_ms"]) == D).all() and d["bars"].sum() == len(eq)
    # and every 10-day floor ROI is the end-to-start equity ratio of its window
    if len(d) >= 10:
        roi = evaluate_floors(d, None)["roi"].windows["value"].to_numpy()
        ratio = d["end_equity"].to_numpy()[9:] / d["start_equity"].to_numpy()[:len(d) - 9] - 1
        np.testing.assert_allclose(roi, ratio, rtol=1e-9, atol=1e-9)
