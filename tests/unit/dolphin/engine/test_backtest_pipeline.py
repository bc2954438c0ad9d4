"""The main job end to end on real data: pipeline, scan cache, other data sets, config, report in Chromium."""

import argparse
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from dolphin.engine import pipeline
from dolphin.engine.calibrate import calibrate, split_index
from dolphin.engine.config import BLUE, GREEN_CFG, ConfigError, load_config
from dolphin.engine.report_data import floors_table, metrics_table, report_data
from dolphin.report import write_report
from dolphin.timeutil import parse_time
from tests.support import browser


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def dev_run(home):
    return pipeline.run("spot-5m-2024", BLUE, cache_dir=home / "cache")


def test_dev_set_run_is_split_and_deterministic(dev_run, home):
    r = dev_run
    assert set(r.periods) == {"In-sample", "Out-of-sample", "All"}
    # first 150 of 250 UTC days are in-sample, the split moved on to the first midnight with a flat book
    assert r.split_ms >= parse_time("2024-05-30") and r.split_ms % 86_400_000 == 0
    assert r.split_ms == parse_time("2024-05-30") or any("split moved" in n for n in r.result.notes)
    is_tr, oos_tr = r.periods["In-sample"]["trades"], r.periods["Out-of-sample"]["trades"]
    assert len(is_tr) + len(oos_tr) == len(r.periods["All"]["trades"]) == len(r.result.trades)
    assert (is_tr.entry_time < r.split_ms).all() and (oos_tr.entry_time >= r.split_ms).all()
    # no trade straddles the split (its PnL stays in its period) and no day is in both periods
    assert (is_tr.exit_time <= r.split_ms).all()
    assert not set(r.periods["In-sample"]["daily"]["date"]) & set(r.periods["Out-of-sample"]["daily"]["date"])
    assert r.periods["In-sample"]["floors"].dd_series == "per-bar equity"
    # OOS period metrics start from the equity at the split, not from the initial capital
    cut = int(np.searchsorted(r.result.open_time, r.split_ms))
    assert r.periods["Out-of-sample"]["start_equity"] == r.result.equity[cut - 1]
    assert not r.scan_cache_hit
    again = pipeline.run("spot-5m-2024", BLUE, cache_dir=home / "cache")
    assert again.scan_cache_hit
    assert again.result.trades.equals(r.result.trades)
    assert np.array_equal(again.result.equity, r.result.equity)
    # every trade carries the full record
    cols = {"entry_time", "exit_time", "asset", "side", "notional", "leverage", "entry_price", "exit_price",
            "fees", "funding", "pnl", "exit_reason"}
    assert cols <= set(r.result.trades.columns)
    assert (r.result.trades.leverage <= BLUE.abs_max_leverage + 1e-12).all()
    assert (r.result.trades.side == -1).all()  # BLUE is SHORT-only


def test_corrupt_scan_cache_is_recomputed(dev_run, home):
    for f in (home / "cache").glob("*.arrow"):
        f.write_bytes(b"not arrow")
    r = pipeline.run("spot-5m-2024", BLUE, cache_dir=home / "cache")
    assert not r.scan_cache_hit and r.result.trades.equals(dev_run.result.trades)


def test_tables_print_honest_floors(dev_run):
    mt, ft = metrics_table(dev_run), floors_table(dev_run)
    assert "In-sample" in mt and "Out-of-sample" in mt and "profit factor" in mt
    for label in ("profit factor (10-day)", "win rate (10-day)", "ROI (10-day)", "trades (10-day)",
                  "max drawdown (55-day)", "Sharpe (55-day)"):
        assert label in ft
    # statuses shown are exactly the floor evaluations
    for name, p in dev_run.periods.items():
        assert f"{name}: {p['floors'].status}" in ft


def test_usdtm_set_charges_funding(home):
    r = pipeline.run("usdtm-5m-2023", BLUE, cache_dir=home / "cache", split=None)
    assert r.funding_dir is not None and r.funding_dir.name == "usdtm-8h-2023"
    tr = r.result.trades
    assert len(tr) > 0
    held_over_funding = tr[(tr.exit_time - tr.entry_time) > 8 * 3600_000]
    if len(held_over_funding):
        assert (held_over_funding.funding != 0).any()
    assert any("funding charged" in n for n in r.result.notes)
    # the report of the dropped assets is carried through
    assert any(i.rule in ("late_start", "delisted") for i in r.panel.issues)


def test_hourly_set_runs_with_windows_in_bars(home):
    r = pipeline.run("mixed-1h-2022-2026", BLUE, cache_dir=home / "cache")
    assert r.result.bar_ms == 3_600_000
    assert r.panel.n_assets == 27
    assert np.isfinite(r.result.equity).all()
    assert any(i.rule == "missing_bars" for i in r.panel.issues)


def test_start_end_restricts_trading_but_uses_warmup(home):
    r = pipeline.run("spot-5m-2024", BLUE, start_ms=parse_time("2024-07-01"), end_ms=parse_time("2024-07-31") + 86_399_999,
                     cache_dir=home / "cache", split=None)
    tr = r.result.trades
    assert r.panel.warmup_bars > 0
    assert (tr.entry_time >= parse_time("2024-07-01")).all()
    assert r.periods["All"]["metrics"].start_ms == parse_time("2024-07-01")


def test_config_yaml_and_presets(tmp_path):
    assert load_config("blue") is BLUE and load_config("GREEN") is GREEN_CFG
    assert GREEN_CFG.direction == "bidirectional" and not GREEN_CFG.long_active  # LONG off until validated
    f = tmp_path / "c.yaml"
    f.write_text("preset: blue\ntake_profit_bps: 120\nmax_hold_bars: 48\n")
    c = load_config(f)
    assert c.take_profit_bps == 120 and c.max_hold_bars == 48 and c.entry_threshold == BLUE.entry_threshold
    BLUE.to_yaml(tmp_path / "b.yaml")
    assert load_config(tmp_path / "b.yaml") == BLUE
    f.write_text("take_profit_bp: 3\n")
    with pytest.raises(ConfigError, match="take_profit_bp"):
        load_config(f)
    f.write_text("entry_threshold: 0.05\nextreme_threshold: 0.01\n")
    with pytest.raises(ConfigError, match="extreme_threshold"):
        load_config(f)
    with pytest.raises(ConfigError, match="nope"):
        load_config("nope")


def test_calibration_never_sees_out_of_sample(home):
    from dolphin.data import load_panel

    panel = load_panel("spot-5m-2024", end_ms=parse_time("2024-03-31") + 86_399_999)
    scans, _ = pipeline.scans_cached(pipeline.resolve_kline_set("spot-5m-2024"), panel, cache_dir=home / "cache")
    a = calibrate(panel, scans, BLUE, 0.6)
    cut = split_index(panel.open_time, 0.6)
    # wreck everything after the split: the calibration must not move
    p2 = panel.slice_bars(0, panel.n_bars)
    p2.close = panel.close.copy()
    p2.close[cut:] = p2.close[cut:][::-1]
    s2 = scans[0:len(scans)]
    s2.velocity = scans.velocity.copy()
    s2.velocity[cut:] = 0.0
    b = calibrate(p2, s2, BLUE, 0.6)
    assert a.best == b.best
    pd.testing.assert_frame_equal(a.grid, b.grid)


def test_report_renders_in_headless_chromium(dev_run, tmp_path):
    out = write_report(report_data(dev_run, "DOLPHIN BLUE backtest: spot-5m-2024"), tmp_path / "r.html")
    png = browser.screenshot(out.as_uri(), tmp_path / "r.png")
    assert browser.non_blank_fraction(png) > 0.05
    dom = browser.rendered_dom(out.as_uri())
    m = dev_run.periods["All"]["metrics"]
    assert f"{m.n_trades:,}" in dom
    assert f"{m.final_equity:,.2f}" in dom
    assert dom.count("<svg") >= 4  # equity, drawdown, vel_div with markers, daily PnL
    assert re.search(r"<table id=\"trades\">", dom)
    for status in (p["floors"].status for p in dev_run.periods.values()):
        assert status in ("PASS", "FAIL", "INCOMPLETE")


def test_cli_backtest_prints_tables_and_report_path(tmp_path, monkeypatch, capsys):
    from dolphin.cli import main

    monkeypatch.setenv("DOLPHIN_HOME", str(tmp_path))
    rc = main(["backtest", "--data", "spot-5m-2024", "--start", "2024-08-01", "--end", "2024-08-20",
               "--report", str(tmp_path / "x.html")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "quality floors" in out and "profit factor" in out
    assert out.strip().endswith(f"report: {(tmp_path / 'x.html').resolve()}")
    assert (tmp_path / "x.html").stat().st_size > 10_000
