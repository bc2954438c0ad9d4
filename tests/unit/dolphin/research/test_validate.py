"""`dolphin validate` (dolphin.research.walkforward / cli): folds, deflated Sharpe, walk-forward on real data
(no look-ahead by truncation, chained out-of-sample equity, no day twice), record and report."""

import math
import os
import stat

import numpy as np
import pytest

from dolphin.cli import main
from dolphin.data import load_panel
from dolphin.engine.config import BLUE
from dolphin.engine.pipeline import resolve_kline_set, scans_cached
from dolphin.research.records import find_records
from dolphin.research.walkforward import (ValidationError, deflated_sharpe, expected_max_sharpe, make_folds,
                                          probabilistic_sharpe, walk_forward)
from dolphin.timeutil import DAY_MS

SET = "usdtm-5m-2023"


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    path = resolve_kline_set(SET)
    panel = load_panel(path)
    scans, _ = scans_cached(path, panel, cache_dir=tmp_path_factory.mktemp("scans"))
    return panel, scans


def test_folds_roll_without_overlap_and_train_before_test():
    bar = 300_000
    t = np.arange(0, 30 * DAY_MS, bar, dtype=np.int64)
    fl = make_folds(t, bar, folds=4)
    assert len(fl) == 4
    for a, b in zip(fl, fl[1:]):
        assert a.test[1] == b.test[0]  # consecutive test windows: no day twice, none skipped
    for f in fl:
        assert f.train[1] == f.test[0] and f.train[0] < f.train[1] < f.test[1]
        assert (f.train[1] - f.train[0]) == 2 * (f.test[1] - f.test[0])
        assert t[f.test[0]] % DAY_MS == 0  # windows start on a UTC day
    fl = make_folds(t, bar, train_days=10, test_days=5, warmup_bars=2 * 288 + 10)
    assert fl[0].train_days[0] == "1970-01-04" and len(fl) == 3
    with pytest.raises(ValidationError, match="both"):
        make_folds(t, bar, train_days=10)
    with pytest.raises(ValidationError, match="too few"):
        make_folds(t[:3 * 288], bar, folds=4)
    with pytest.raises(ValidationError, match="warm-up"):
        make_folds(t[:100], bar, folds=1, warmup_bars=200)
    with pytest.raises(ValidationError, match="no fold"):
        make_folds(t, bar, train_days=28, test_days=5)


def test_deflated_sharpe_against_hand_computation():
    # one trial: SR0 = 0 and DSR = PSR
    r = np.array([0.01, -0.005, 0.02, 0.0, 0.003, -0.01, 0.015, 0.004])
    d1 = deflated_sharpe(r, 1, 0.5)
    assert d1["sr0_daily"] == 0 and d1["dsr"] == d1["psr"]
    # hand: SR0 for N = 100, V = 0.01 (Bailey & Lopez de Prado 2014, eq. for E[max SR])
    from statistics import NormalDist
    z = NormalDist()
    g = 0.5772156649015329
    want = 0.1 * ((1 - g) * z.inv_cdf(1 - 1 / 100) + g * z.inv_cdf(1 - 1 / (100 * math.e)))
    assert expected_max_sharpe(0.01, 100) == pytest.approx(want, rel=1e-12)
    assert expected_max_sharpe(0.01, 1000) > expected_max_sharpe(0.01, 100) > 0
    # PSR for normal returns: Z(SR sqrt(T-1) / sqrt(1 + SR^2 / 2))
    assert probabilistic_sharpe(0.1, 101, 0.0, 3.0) == pytest.approx(z.cdf(0.1 * 10 / math.sqrt(1 + 0.005)))
    d = deflated_sharpe(r, 100, 0.01)
    assert d["dsr"] < d["psr"] and 0 <= d["dsr"] <= 1
    assert math.isnan(deflated_sharpe(np.zeros(10), 5, 0.01)["dsr"])  # no variance: undefined, not 0 or 1


def test_walk_forward_on_real_data_chains_capital_and_never_looks_ahead(real):
    panel, scans = real
    wf = walk_forward(panel, scans, BLUE, data=SET, folds=2)
    assert len(wf.folds) == 2
    # chained: each test window starts from the previous one's closing equity
    assert wf.folds[0].start_equity == BLUE.initial_capital
    assert wf.folds[1].start_equity == pytest.approx(float(wf.folds[0].equity[-1]))
    # every trade opened (and closed) inside its own test window
    for f in wf.folds:
        lo, hi = f.fold.test
        if len(f.trades):
            assert (f.trades.entry_bar >= lo).all() and (f.trades.exit_bar < hi).all()
    # no day counted twice in the out-of-sample daily table
    assert wf.daily["date"].is_unique and len(wf.daily) == sum(
        len(np.unique((f.ts - 1) // DAY_MS)) for f in wf.folds)
    assert wf.n_trials == sum(len(f.grid) for f in wf.folds)
    # truncation: wreck everything after fold 1's test window; fold 1 must not move
    cut = wf.folds[0].fold.test[1]
    p2 = panel.slice_bars(0, panel.n_bars)
    p2.close = panel.close.copy()
    p2.close[cut:] = p2.close[cut:][::-1]
    p2.high, p2.low = np.maximum(panel.high, p2.close), np.minimum(panel.low, p2.close)
    s2 = scans[0:len(scans)]
    s2.velocity = scans.velocity.copy()
    s2.velocity[cut:] = -s2.velocity[cut:]
    wf2 = walk_forward(p2, s2, BLUE, data=SET, folds=2)
    a, b = wf.folds[0], wf2.folds[0]
    assert a.config == b.config
    np.testing.assert_array_equal(a.equity, b.equity)
    assert a.trades.equals(b.trades)


def test_cli_fixed_writes_record_and_a_readable_report(home, capsys):
    out = home / "r.html"
    assert main(["validate", "--data", SET, "--fixed", "--train-days", "6", "--test-days", "3",
                 "--report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "walk-forward on usdtm-5m-2023" in text and "deflated Sharpe" in text
    assert "skipped: N/A" in text  # floors without a complete window are skipped, not failed
    assert "N = 1 trial" in text and "upper bound" in text
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o644
    html = out.read_text()
    assert 'id="folds"' in html and 'id="gate"' in html and "Out-of-sample (walk-forward)" in html
    recs = find_records(BLUE.to_dict(), "short", home)
    assert len(recs) == 1 and recs[0].data_set == SET and recs[0].results["fixed"] is True
    assert set(recs[0].gate) == {"profit_factor", "win_rate", "roi", "max_drawdown", "trades"}
    assert main(["validate", "--data", SET, "--folds", "2", "--train-days", "5", "--test-days", "2"]) == 2


def test_drawdown_floor_on_the_per_bar_series_synthetic_equity():
    # synthetic equity (no real series has a known intraday dip): a 30 % dip inside a day that closes flat
    from dolphin.metrics import daily_table, evaluate_floors

    ts = np.arange(1, 60 * 24 + 1, dtype=np.int64) * 3_600_000
    eq = np.full(ts.size, 100.0)
    eq[30 * 24 + 5] = 70.0  # one bar, recovered by that day's close
    d = daily_table(None, ts, eq, 100.0)
    eod, bar = evaluate_floors(d, None), evaluate_floors(d, None, bars=(ts, eq))
    assert eod["max_drawdown"].worst_value == 0.0 and eod["max_drawdown"].status == "PASS"
    assert bar["max_drawdown"].worst_value == pytest.approx(0.30) and bar["max_drawdown"].status == "FAIL"
    assert (eod.dd_series, bar.dd_series) == ("end-of-day equity", "per-bar equity")


def test_cli_refuses_5m_bar_counts_on_1h_data(home, capsys):
    assert main(["validate", "--data", "mixed-1h-2022-2026", "--fixed"]) == 1
    assert "bar counts are for 5m bars" in capsys.readouterr().err
