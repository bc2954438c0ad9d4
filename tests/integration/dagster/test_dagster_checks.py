"""The eigen_scans data checks fail on bad scans (each check on its own defect), pass on real ones."""

import numpy as np
import pytest

from dolphin.data import load_panel
from dolphin.scanner import WARMUP_BARS, scan
from dolphin.timeutil import parse_time


@pytest.fixture(scope="module")
def day():
    from dolphin_assets.assets.market import scans_frame

    t0 = parse_time("2024-03-04")
    panel = load_panel("spot-5m-2024", start_ms=t0, end_ms=t0 + 86_400_000 - 1, warmup_bars=WARMUP_BARS)
    s = scan(panel)
    warm = panel.warmup_bars + np.arange(len(s)) >= WARMUP_BARS
    return scans_frame(s, warm), s.loadings


def _passed(df, loadings):
    from dolphin_assets.checks import scan_data_checks

    return {k: v[0] for k, v in scan_data_checks(df, loadings).items()}


def test_real_day_passes(day):
    df, load = day
    assert _passed(df, load) == {"no_nan_after_warmup": True, "lambda_norm_in_range": True,
                                 "scan_count_is_day_bars": True}


def test_nan_after_warmup_fails(day):
    df, load = day
    bad = df.copy()
    bad.loc[100, "velocity_w150"] = np.nan
    assert not _passed(bad, load)["no_nan_after_warmup"]
    load2 = load.copy()
    load2[5, 0, 3] = np.nan
    assert not _passed(df, load2)["no_nan_after_warmup"]
    assert not _passed(df, None)["no_nan_after_warmup"]  # the day's Parquet (loadings) must be there
    cold = df.copy()
    cold["warm"] = False
    cold.loc[:, "lambda_w750"] = np.nan  # not warm yet: NaN is expected, not a defect
    assert _passed(cold, load)["no_nan_after_warmup"]


def test_lambda_norm_out_of_range_fails(day):
    df, load = day
    bad = df.copy()
    bad.loc[7, "lambda_norm_w300"] = 1.01
    assert not _passed(bad, load)["lambda_norm_in_range"]
    bad = df.copy()
    bad.loc[7, "lambda_norm_w50"] = 0.5 / 50
    assert not _passed(bad, load)["lambda_norm_in_range"]


def test_missing_scans_fail_the_count(day):
    df, load = day
    assert not _passed(df.iloc[:-1].reset_index(drop=True), load[:-1])["scan_count_is_day_bars"]


def test_failing_floor_fails_with_error_severity_and_real_value(tmp_path):
    """A losing 10-day chain: the floors fail visibly (ERROR, real values), the 55-day ones are N/A (WARN)."""
    import dagster as dg

    from dolphin.daily import floors_at
    from dolphin.ledger import CapitalLedger, DayRecord
    from dolphin_assets.checks import floor_check_results

    book = CapitalLedger(tmp_path / "l.sqlite")
    eq = 1000.0
    for i in range(10):
        pnl = [-10.0, 4.0] if i % 2 else [-6.0]
        trades = [{"entry_time": 0, "exit_time": parse_time(f"2024-02-{i + 1:02d}") + 3_600_000, "side": -1,
                   "fees": 0.5, "funding": 0.0, "pnl": p} for p in pnl]
        new = eq + sum(pnl)
        book.record_day("BLUE", f"2024-02-{i + 1:02d}", DayRecord(eq, new, new, {"c": eq}, {"c": new}, trades, 288),
                        start_day="2024-02-01")
        eq = new
    res = {r.check_name: r for r in floor_check_results(floors_at(book.current("BLUE"), "2024-02-10"))}
    pf = res["floor_profit_factor_10d"]
    assert not pf.passed and pf.severity == dg.AssetCheckSeverity.ERROR
    assert pf.metadata["value"].value == pytest.approx(20.0 / 80.0) and pf.metadata["status"].value == "FAIL"
    assert not res["floor_win_rate_10d"].passed and res["floor_trades_10d"].passed  # 15 trades >= 5
    sharpe = res["floor_sharpe_55d"]
    assert not sharpe.passed and sharpe.severity == dg.AssetCheckSeverity.WARN and sharpe.metadata["status"].value == "N/A"
    # the Dagster check yields only the floors with a complete window: the 55-day ones show SKIPPED
    from dolphin_assets.checks import applicable_floor_results

    class Log:
        lines = []

        def info(self, m):
            self.lines.append(m)

    log = Log()
    got = {r.check_name for r in applicable_floor_results(floors_at(book.current("BLUE"), "2024-02-10"), log)}
    assert got == set(res) - {"floor_sharpe_55d", "floor_max_drawdown_55d"}
    assert any("floor_sharpe_55d: skipped" in m and "needs 55" in m for m in log.lines)
