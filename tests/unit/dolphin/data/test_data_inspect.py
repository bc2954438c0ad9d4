"""`dolphin data inspect`: what it prints for real sets and for defective data built from real candles."""

import numpy as np
import pytest

from dolphin.data import align, read_candles
from dolphin.data.inspect_cmd import inspect, main
from tests.support.data import (
    HEADER, binance_csv_lines, real_rows, real_rows_at, set_dir, take, write_binance_csv, write_feather, T0,
)


def run(capsys, *args, **kw):
    rc = inspect(*args, **kw)
    out, err = capsys.readouterr()
    return rc, out, err


def line_starting(out, prefix):
    found = [ln for ln in out.splitlines() if ln.startswith(prefix)]
    assert len(found) == 1, (prefix, out)
    return found[0]


@pytest.mark.slow
def test_inspect_real_spot_set(capsys):
    rc, out, err = run(capsys, "spot-5m-2024")
    assert rc == 0 and err == ""
    assert line_starting(out, "source:") == f"source:   {set_dir()}"
    assert line_starting(out, "format:") == "format:   parquet (50 files)"
    syms = line_starting(out, "symbols:").split()
    assert syms[1] == "50:" and len(syms) == 52 and "BTCUSDT" in syms and syms[2:] == sorted(syms[2:])
    assert line_starting(out, "bar:") == "bar:      5m"
    assert line_starting(out, "BTCUSDT ").split() == ["BTCUSDT", "2024-01-01", "00:00:00", "2024-09-06", "04:40:00",
                                                      "71769", "5m", "0", "0"]
    assert line_starting(out, "common window:") == ("common window: 2024-01-01 00:00:00 .. 2024-09-06 04:40:00 UTC, "
                                                    "71769 bars (249.2 days), 50 of 50 symbols kept")
    assert line_starting(out, "issues:") == "issues:   0"
    assert line_starting(out, "summary:") == ("summary: OK: 50 symbols x 71769 5m bars, 0 filled and 0 excluded "
                                              "asset-bars, 0 issue(s)")


@pytest.mark.slow
def test_inspect_real_usdtm_lists_assets_not_covering_window(capsys):
    rc, out, _ = run(capsys, "usdtm-5m-2023")
    assert rc == 0
    assert line_starting(out, "common window:").startswith(
        "common window: 2023-07-04 12:35:00 .. 2023-08-02 23:20:00 UTC, 8482 bars (29.5 days), 55 of 60 symbols kept")
    assert line_starting(out, "dropped:") == "dropped:  BNBUSDT MATICUSDT SOLUSDT USDCUSDT XRPUSDT"
    assert sum(ln.startswith("  [late_start] ") for ln in out.splitlines()) == 5
    assert line_starting(out, "summary:").endswith("5 issue(s) (late_start: 5)")


def test_inspect_window_on_real_mixed_set_shows_outage_gap(capsys):
    rc, out, _ = run(capsys, "mixed-1h-2022-2026", start_ms=1679270400000, end_ms=1680307200000)  # 03-20 .. 04-01
    assert rc == 0
    assert line_starting(out, "bar:") == "bar:      1h"
    assert line_starting(out, "BTCUSDT ").split() == ["BTCUSDT", "2023-03-20", "00:00:00", "2023-04-01", "00:00:00",
                                                      "288", "1h", "1", "1", "2023-03-24", "13:00:00"]
    assert line_starting(out, "AAVEUSDT ").split()[5:] == ["289", "1h", "0", "0"]
    assert line_starting(out, "common window:").startswith(
        "common window: 2023-03-20 00:00:00 .. 2023-04-01 00:00:00 UTC, 289 bars (12.0 days), 27 of 27 symbols kept")
    assert "  [missing_bars] BTCUSDT in " in out and "1 bar(s) 2023-03-24 13:00:00 -> forward-filled" in out
    assert line_starting(out, "summary:") == ("summary: ISSUES: 27 symbols x 289 1h bars, 10 filled and 0 excluded "
                                              "asset-bars, 10 issue(s) (missing_bars: 10)")


@pytest.fixture
def defective(tmp_path):
    """Two real symbols: BTC as two Binance daily CSVs with gaps, a duplicate and a NaN; ETH as feather."""
    btc, eth = real_rows("BTCUSDT", 576), real_rows("ETHUSDT", 576)
    keep = np.setdiff1d(np.arange(576), np.r_[40:43, 100, 300:370])
    day1, day2 = keep[keep < 288], keep[keep >= 288]
    day1 = np.r_[day1, 287]  # bar 287 written twice
    rows2 = take(btc, day2)
    rows2["close"][5] = np.nan
    write_binance_csv(tmp_path / "BTCUSDT-5m-2024-01-01.csv", take(btc, day1), header=True)
    write_binance_csv(tmp_path / "BTCUSDT-5m-2024-01-02.csv", rows2)
    (tmp_path / "BTCUSDT-5m-2024-01-02.csv.CHECKSUM").write_text("x")
    write_feather(tmp_path / "ETH_USDT-5m.feather", eth)
    return tmp_path


def test_inspect_reports_every_problem(capsys, defective):
    rc, out, err = run(capsys, str(defective))
    assert rc == 0 and err == ""
    assert line_starting(out, "format:") == "format:   binance-csv (2 files), feather (1 file)"
    assert line_starting(out, "skipped:") == "skipped:  BTCUSDT-5m-2024-01-02.csv.CHECKSUM: not a candle file extension"
    assert line_starting(out, "symbols:") == "symbols:  2: BTCUSDT ETHUSDT"
    # raw view: 3 gaps (the NaN row is present in the file, so not a gap here; it is an issue below)
    assert line_starting(out, "BTCUSDT ").split() == [
        "BTCUSDT", "2024-01-01", "00:00:00", "2024-01-02", "23:55:00", "503", "5m", "3", "74",
        "2024-01-01", "03:20:00", "(3", "bars),", "2024-01-01", "08:20:00,", "2024-01-02", "01:00:00", "(70", "bars)"]
    panel = align(read_candles(defective))
    for issue in panel.issues:
        assert f"  {issue.describe()}" in out.splitlines()
    # each issue names the file its rows came from
    assert f"  [bad_price] BTCUSDT in {defective}/BTCUSDT-5m-2024-01-02.csv: 1 bar(s) 2024-01-02 00:25:00 -> " in out
    assert f"  [duplicate] BTCUSDT in {defective}/BTCUSDT-5m-2024-01-01.csv: 1 bar(s) 2024-01-01 23:55:00 -> " in out
    miss = [i for i in panel.issues if i.rule == "missing_bars"][0]
    assert miss.count == 75 and miss.timestamps[:5] == (T0 + 40 * 300_000, T0 + 41 * 300_000, T0 + 42 * 300_000,
                                                       T0 + 100 * 300_000, T0 + 293 * 300_000)
    rules = sorted(i.rule for i in panel.issues)
    # the 70-bar gap also leaves BTC's 50-bar signal window mostly filled: rule 10 (outage_window)
    assert rules == ["bad_price", "dropped_asset_day", "duplicate", "missing_bars", "outage_window"]
    assert line_starting(out, "issues:") == "issues:   6"  # + the skipped file
    assert line_starting(out, "summary:") == (
        "summary: ISSUES: 2 symbols x 576 5m bars, 75 filled and 368 excluded asset-bars, 6 issue(s) "
        "(bad_price: 1, dropped_asset_day: 1, duplicate: 1, missing_bars: 1, outage_window: 1, skipped_files: 1)")


def test_inspect_unreadable_path_exit_1(capsys, tmp_path):
    rc, out, err = run(capsys, str(tmp_path / "nothing-here"))
    assert rc == 1 and out == ""
    assert "cannot read" in err and "nothing-here" in err


def test_inspect_malformed_file_exit_1_names_line(capsys, tmp_path):
    lines = binance_csv_lines(real_rows("BTCUSDT", 20))
    lines[3] = lines[3] + ",1"
    (tmp_path / "BTCUSDT-5m-2024-01-01.csv").write_text(HEADER + "\n" + "\n".join(lines) + "\n")
    rc, out, err = run(capsys, str(tmp_path))
    assert rc == 1
    assert "BTCUSDT-5m-2024-01-01.csv: line 5 (open_time 1704068100000 = 2024-01-01 00:15:00 UTC): expected 12 columns, got 13" in err


def test_inspect_mixed_intervals(capsys, tmp_path):
    write_feather(tmp_path / "ETH_USDT-5m.feather", real_rows("ETHUSDT", 300))
    write_feather(tmp_path / "BTC_USDT-1h.feather", real_rows_at("BTCUSDT", T0, 48, "mixed-1h-2022-2026"))
    rc, out, _ = run(capsys, str(tmp_path))
    assert rc == 0
    assert line_starting(out, "bar:") == "bar:      MIXED 5m, 1h"
    assert line_starting(out, "common window:").startswith(
        "common window: none -- cannot align: align: mixed bar intervals (5m: ETHUSDT; 1h: BTCUSDT)")
    assert line_starting(out, "summary:").startswith("summary: PROBLEM")
    rc, out, _ = run(capsys, str(tmp_path), bar_ms=3_600_000)
    assert rc == 0
    assert line_starting(out, "bar:") == "bar:      1h (requested)"
    assert line_starting(out, "dropped:") == "dropped:  ETHUSDT"
    assert "  [mixed_interval] ETHUSDT in " in out and "dropped: its bars are 5m apart, the panel uses 1h" in out


def test_inspect_argument_parsing(capsys):
    rc = main(["spot-5m-2024", "--symbols", "BTCUSDT,ETHUSDT", "--start", "2024-02-01", "--end", "2024-02-01 23:55",
               "--bar-ms", "5m"])
    out = capsys.readouterr().out
    assert rc == 0
    assert line_starting(out, "symbols:") == "symbols:  2: BTCUSDT ETHUSDT"
    assert line_starting(out, "common window:").startswith(
        "common window: 2024-02-01 00:00:00 .. 2024-02-01 23:55:00 UTC, 288 bars (1.0 days), 2 of 2 symbols kept")


def test_dolphin_cli_data_inspect(capsys):
    pytest.importorskip("dolphin.adapters.binance_archive", reason="dolphin data CLI needs the archive module")
    from dolphin.cli import main as dolphin_main

    assert dolphin_main(["data", "inspect", "spot-5m-2024", "--symbols", "BTCUSDT", "--end", "2024-01-02"]) == 0
    assert "common window: 2024-01-01 00:00:00 .. 2024-01-02 00:00:00 UTC" in capsys.readouterr().out
    assert dolphin_main(["data", "inspect", "/no/such/set"]) == 1
