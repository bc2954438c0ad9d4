"""Alignment rules, each on REAL candles with one defect introduced; exact timestamps and actions asserted."""


import numpy as np
import pytest

from dolphin.data import AlignRules, DataError, align, load_panel, read_candles
from dolphin.data.align import MONDAY_OFFSET_MS, WEEK_MS, find_gaps, infer_bar_ms
from dolphin.data.contracts import Candles
from dolphin.timeutil import parse_time
from tests.support.data import (
    BAR_1H, BAR_5M, COLS, DAY, T0, candles, concat, real_rows, real_rows_at, set_dir, take, write_binance_csv,
)

P = ("open", "high", "low", "close")


def ts(rows, *idx):
    return tuple(int(rows["open_time"][i]) for i in idx)


def by_rule(panel, rule):
    return [i for i in panel.issues if i.rule == rule]


def one(panel, rule, symbol=None):
    found = [i for i in by_rule(panel, rule) if symbol is None or i.symbol == symbol]
    assert len(found) == 1, (rule, symbol, [i.describe() for i in panel.issues])
    return found[0]


def col(panel, sym):
    return panel.symbols.index(sym)


def assert_column_is(panel, sym, rows, bars=None):
    """Panel column equals the real rows exactly (on the given bar indices, default all)."""
    j = col(panel, sym)
    sel = slice(None) if bars is None else bars
    for k in COLS:
        np.testing.assert_array_equal(getattr(panel, k)[sel, j], rows[k][sel], err_msg=f"{sym} {k}")


def assert_filled_from(panel, sym, bars, price):
    j = col(panel, sym)
    for k in P:
        np.testing.assert_array_equal(getattr(panel, k)[bars, j], price, err_msg=k)
    assert (panel.volume[bars, j] == 0).all()
    assert panel.filled[bars, j].all()


# --- clean data ------------------------------------------------------------------------------------


def test_clean_real_data_round_trips_exactly(btc, eth):
    p = align({"ETHUSDT": candles(eth, "ETHUSDT"), "BTCUSDT": candles(btc, "BTCUSDT")})
    assert p.symbols == ["BTCUSDT", "ETHUSDT"]
    assert p.bar_ms == BAR_5M and p.n_bars == 300 and p.warmup_bars == 0
    np.testing.assert_array_equal(p.open_time, btc["open_time"])
    assert p.open_time.dtype == np.int64 and np.all(np.diff(p.open_time) == BAR_5M)
    assert_column_is(p, "BTCUSDT", btc)
    assert_column_is(p, "ETHUSDT", eth)
    for k in COLS:
        a = getattr(p, k)
        assert a.shape == (300, 2) and a.dtype == np.float64 and a.flags.c_contiguous
    for a in (p.filled, p.excluded):
        assert a.shape == (300, 2) and a.dtype == bool and a.flags.c_contiguous and not a.any()
    assert p.issues == []


# --- rows: missing, duplicate, out of order, bad, off-grid ----------------------------------------------


def test_missing_bars_forward_filled_and_reported(btc, eth):
    gone = [10, 11, 12, 50]
    p = align({"BTCUSDT": candles(take(btc, np.setdiff1d(np.arange(300), gone))), "ETHUSDT": candles(eth, "ETHUSDT")})
    issue = one(p, "missing_bars", "BTCUSDT")
    assert issue.count == 4 and issue.timestamps == ts(btc, *gone)
    assert "forward-filled in 2 gap(s)" in issue.action and "volume=0" in issue.action
    assert_filled_from(p, "BTCUSDT", [10, 11, 12], btc["close"][9])
    assert_filled_from(p, "BTCUSDT", [50], btc["close"][49])
    keep = np.setdiff1d(np.arange(300), gone)
    assert_column_is(p, "BTCUSDT", btc, keep)
    assert not p.filled[keep, 0].any() and not p.filled[:, 1].any()
    assert not p.excluded.any()  # 4 of 288 bars of the day
    assert [i.rule for i in p.issues] == ["missing_bars"]


def test_identical_duplicates_dropped(btc):
    p = align({"BTCUSDT": candles(take(btc, np.sort(np.r_[np.arange(300), 20, 21])))})
    issue = one(p, "duplicate")
    assert issue.count == 2 and issue.timestamps == ts(btc, 20, 21)
    assert issue.action == "identical duplicate row(s) dropped"
    assert_column_is(p, "BTCUSDT", btc)
    assert [i.rule for i in p.issues] == ["duplicate"]
    # a repeat that arrives after later bars is also out of order (reported by both rules)
    p = align({"BTCUSDT": candles(concat(take(btc, slice(0, 22)), take(btc, [20, 21]), take(btc, slice(22, 300))))})
    assert one(p, "out_of_order").timestamps == ts(btc, 20) and one(p, "duplicate").timestamps == ts(btc, 20, 21)
    assert_column_is(p, "BTCUSDT", btc)


def test_conflicting_duplicate_keeps_last_row_read(btc):
    fixed = take(btc, [30])
    fixed["close"] = fixed["close"] * 1.01
    fixed["high"] = np.maximum(fixed["high"], fixed["close"])  # a correction is a consistent bar (rule 4b)
    fixed["volume"] = fixed["volume"] + 1.0
    rows = concat(take(btc, slice(0, 31)), fixed, take(btc, slice(31, 300)))
    p = align({"BTCUSDT": candles(rows)})
    issue = one(p, "duplicate_conflict")
    assert issue.count == 1 and issue.timestamps == ts(btc, 30)
    assert "kept the LAST row read" in issue.action
    assert p.close[30, 0] == fixed["close"][0] and p.volume[30, 0] == fixed["volume"][0]
    assert p.open[30, 0] == btc["open"][30]
    assert_column_is(p, "BTCUSDT", btc, np.r_[0:30, 31:300])


def test_overlapping_daily_files_duplicates_named_by_file(tmp_path, btc):
    first, second = take(btc, slice(0, 200)), take(btc, slice(150, 300))
    second["close"] = second["close"].copy()
    second["close"][10] = second["close"][10] + 5.0  # bar 160 re-published with another close
    write_binance_csv(tmp_path / "BTCUSDT-5m-2024-01-01.csv", first)
    write_binance_csv(tmp_path / "BTCUSDT-5m-2024-01-02.csv", second)
    p = align(read_candles(tmp_path))
    ooo = one(p, "out_of_order")
    # rows 150..198 of the second file came after bar 199 (its repeat of 199 itself is only a duplicate)
    assert ooo.count == 49 and ooo.timestamps == ts(btc, *range(150, 199))
    assert ooo.source == str(tmp_path / "BTCUSDT-5m-2024-01-02.csv")
    dup = one(p, "duplicate")
    assert dup.count == 49 and dup.timestamps == ts(btc, *(i for i in range(150, 200) if i != 160))
    conflict = one(p, "duplicate_conflict")
    assert conflict.count == 1 and conflict.timestamps == ts(btc, 160)
    assert conflict.source == f"{tmp_path}/BTCUSDT-5m-2024-01-01.csv, {tmp_path}/BTCUSDT-5m-2024-01-02.csv"
    assert p.close[160, 0] == btc["close"][160] + 5.0  # the later file wins
    assert_column_is(p, "BTCUSDT", btc, np.r_[0:160, 161:300])
    assert not p.filled.any()


def test_swapped_rows_sorted_and_reported(btc):
    order = np.arange(300)
    order[[100, 101]] = [101, 100]
    p = align({"BTCUSDT": candles(take(btc, order))})
    issue = one(p, "out_of_order")
    assert issue.count == 1 and issue.timestamps == ts(btc, 100)
    assert issue.action.startswith("rows sorted by open_time")
    assert_column_is(p, "BTCUSDT", btc)


def test_shuffled_rows_sorted_exactly(btc, eth):
    rng = np.random.default_rng(3)
    p = align({"BTCUSDT": candles(take(btc, rng.permutation(300))), "ETHUSDT": candles(take(eth, rng.permutation(300)))})
    assert_column_is(p, "BTCUSDT", btc)
    assert_column_is(p, "ETHUSDT", eth)
    assert {i.symbol for i in by_rule(p, "out_of_order")} == {"BTCUSDT", "ETHUSDT"}
    assert all(i.count > 100 for i in p.issues) and len(p.issues) == 2


def test_bad_prices_treated_as_missing(btc):
    rows = {k: v.copy() for k, v in btc.items()}
    rows["close"][40] = np.nan
    rows["open"][41] = 0.0
    rows["low"][42] = -1.0
    rows["volume"][43] = -5.0
    rows["volume"][44] = np.nan
    rows["high"][45] = np.inf
    rows["volume"][60] = 0.0  # zero volume is a real (quiet) bar
    p = align({"BTCUSDT": candles(rows)})
    bad = one(p, "bad_price")
    assert bad.count == 6 and bad.timestamps == ts(btc, 40, 41, 42, 43, 44, 45)
    assert bad.action == ("row dropped, bar treated as missing (2 NaN/inf price, 1 zero price, 1 negative price, "
                          "2 NaN/negative volume)")
    miss = one(p, "missing_bars")
    assert miss.timestamps == ts(btc, 40, 41, 42, 43, 44, 45) and "1 gap(s)" in miss.action
    assert_filled_from(p, "BTCUSDT", list(range(40, 46)), btc["close"][39])
    assert p.volume[60, 0] == 0.0 and not p.filled[60, 0]
    assert np.isfinite(p.close).all() and (p.close > 0).all()


@pytest.mark.parametrize("field", ["open", "high", "low", "close", "volume"])
@pytest.mark.parametrize("value", [np.nan, np.inf, 0.0, -1.0])
def test_every_bad_value_in_every_field(btc, field, value):
    rows = {k: v.copy() for k, v in btc.items()}
    rows[field][77] = value
    p = align({"BTCUSDT": candles(rows)})
    if field == "volume" and value == 0.0:
        assert p.issues == [] and p.volume[77, 0] == 0.0  # a quiet bar is real
        return
    assert one(p, "bad_price").timestamps == ts(btc, 77)
    assert_filled_from(p, "BTCUSDT", [77], btc["close"][76])


def test_bad_last_duplicate_does_not_hide_good_row(btc):
    bad = take(btc, [30])
    bad["close"] = np.array([np.nan])
    rows = concat(take(btc, slice(0, 31)), bad, take(btc, slice(31, 300)))
    p = align({"BTCUSDT": candles(rows)})
    assert [i.rule for i in p.issues] == ["bad_price"]
    assert_column_is(p, "BTCUSDT", btc)


def test_off_grid_rows_dropped(btc):
    rows = {k: v.copy() for k, v in btc.items()}
    rows["open_time"][70] += 60_000
    p = align({"BTCUSDT": candles(rows)})
    off = one(p, "off_grid")
    assert off.count == 1 and off.timestamps == (int(btc["open_time"][70]) + 60_000,)
    assert off.action == "dropped: open_time is not on the 5m UTC grid"
    assert one(p, "missing_bars").timestamps == ts(btc, 70)
    assert_filled_from(p, "BTCUSDT", [70], btc["close"][69])


def test_asset_without_valid_bars_dropped(btc, eth):
    dead = {k: v.copy() for k, v in eth.items()}
    dead["close"][:] = np.nan
    p = align({"BTCUSDT": candles(btc), "ETHUSDT": candles(dead, "ETHUSDT")})
    assert p.symbols == ["BTCUSDT"]
    assert one(p, "bad_price", "ETHUSDT").count == 300
    assert one(p, "no_data", "ETHUSDT").action == "dropped: no valid bar"
    empty = {k: v[:0] for k, v in eth.items()}
    p2 = align({"BTCUSDT": candles(btc), "ETHUSDT": candles(empty, "ETHUSDT")})
    assert p2.symbols == ["BTCUSDT"] and one(p2, "no_data", "ETHUSDT").count == 0


# --- intervals --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def btc_1h():
    return real_rows_at("BTCUSDT", T0, 48, "mixed-1h-2022-2026")


def test_mixed_intervals_refused_without_bar_ms(eth, btc_1h):
    data = {"ETHUSDT": candles(eth, "ETHUSDT"), "BTCUSDT": candles(btc_1h)}
    with pytest.raises(DataError, match=r"mixed bar intervals \(5m: ETHUSDT; 1h: BTCUSDT\)"):
        align(data)


def test_mixed_intervals_with_bar_ms_drop_the_others(eth, btc_1h):
    data = {"ETHUSDT": candles(eth, "ETHUSDT"), "BTCUSDT": candles(btc_1h)}
    p = align(data, AlignRules(bar_ms=BAR_5M))
    assert p.symbols == ["ETHUSDT"] and p.bar_ms == BAR_5M
    issue = one(p, "mixed_interval", "BTCUSDT")
    assert issue.action == "dropped: its bars are 1h apart, the panel uses 5m" and issue.count == 48
    assert_column_is(p, "ETHUSDT", eth)
    p = align(data, AlignRules(bar_ms=BAR_1H))
    assert p.symbols == ["BTCUSDT"] and p.bar_ms == BAR_1H
    assert one(p, "mixed_interval", "ETHUSDT").action == "dropped: its bars are 5m apart, the panel uses 1h"
    assert_column_is(p, "BTCUSDT", btc_1h)


def test_single_bar_assets_need_bar_ms(btc):
    with pytest.raises(DataError, match=r"cannot infer the bar interval"):
        align({"BTCUSDT": candles(take(btc, [5]))})
    p = align({"BTCUSDT": candles(take(btc, [5]))}, AlignRules(bar_ms=BAR_5M))
    assert p.n_bars == 1 and p.close[0, 0] == btc["close"][5]


def test_infer_bar_and_gaps_helpers(btc):
    t = np.delete(btc["open_time"], [3, 4, 10])
    assert infer_bar_ms(t[::-1]) == BAR_5M
    assert infer_bar_ms(t[:1]) is None
    assert find_gaps(t, BAR_5M) == [(int(btc["open_time"][3]), 2), (int(btc["open_time"][10]), 1)]


def test_weekly_bars_on_monday_grid():
    rows = real_rows("BTCUSDT", 288 * 7 * 20)  # 20 real weeks from Monday 2024-01-01
    w = {"open_time": rows["open_time"][:: 288 * 7]}
    for k, f in (("open", lambda a: a[0]), ("high", np.max), ("low", np.min), ("close", lambda a: a[-1]),
                 ("volume", np.sum)):
        w[k] = np.array([f(a) for a in np.split(rows[k], 20)])
    assert AlignRules().offset_for(WEEK_MS) == MONDAY_OFFSET_MS
    p = align({"BTCUSDT": candles(w)})
    assert p.bar_ms == WEEK_MS and p.n_bars == 20 and p.issues == []
    assert_column_is(p, "BTCUSDT", w)
    with pytest.raises(DataError, match="no asset has a valid bar"):
        align({"BTCUSDT": candles(w)}, AlignRules(grid_offset_ms=0))  # epoch-anchored weeks: all off-grid


# --- window: late start, delisting, back-fill, trimming ---------------------------------------------------


def test_late_start_below_coverage_dropped_in_requested_window(btc, eth):
    data = {"BTCUSDT": candles(btc), "ETHUSDT": candles(take(eth, slice(100, 300)), "ETHUSDT")}
    p = align(data, start_ms=T0, end_ms=int(btc["open_time"][-1]))
    assert p.symbols == ["BTCUSDT"] and p.n_bars == 300
    issue = one(p, "late_start", "ETHUSDT")
    assert issue.count == 100 and issue.timestamps == ts(btc, *range(100))
    assert issue.action == ("dropped: its data 2024-01-01 08:20:00 .. 2024-01-02 00:55:00 covers 66.7% of the window "
                            "2024-01-01 00:00:00 .. 2024-01-02 00:55:00 (min_coverage 90%)")
    assert_column_is(p, "BTCUSDT", btc)


def test_common_window_keeps_assets_when_that_pays(btc, eth):
    """Two assets over 200 bars (400 asset-bars) beat one over 300: the default window starts later."""
    p = align({"BTCUSDT": candles(btc), "ETHUSDT": candles(take(eth, slice(100, 300)), "ETHUSDT")})
    assert p.symbols == ["BTCUSDT", "ETHUSDT"] and p.open_time[0] == btc["open_time"][100] and p.n_bars == 200
    assert p.issues == []
    assert_column_is(p, "ETHUSDT", take(eth, slice(100, 300)))


def test_common_window_drops_asset_whose_late_start_costs_more(btc, eth):
    sol = real_rows("SOLUSDT", 300)
    p = align({"BTCUSDT": candles(btc), "SOLUSDT": candles(sol, "SOLUSDT"),
               "ETHUSDT": candles(take(eth, slice(160, 300)), "ETHUSDT")})
    assert p.symbols == ["BTCUSDT", "SOLUSDT"] and p.n_bars == 300
    issue = one(p, "late_start", "ETHUSDT")
    assert issue.count == 160 and "covers 46.7% of the window 2024-01-01 00:00:00 .. 2024-01-02 00:55:00" in issue.action
    assert issue.action.startswith("dropped")


def test_small_late_start_back_filled_in_requested_window(btc, eth):
    data = {"BTCUSDT": candles(btc), "ETHUSDT": candles(take(eth, slice(3, 300)), "ETHUSDT")}
    p = align(data, start_ms=T0)
    assert p.n_bars == 300 and p.open_time[0] == T0
    issue = one(p, "missing_bars", "ETHUSDT")
    assert issue.count == 3 and issue.timestamps == ts(eth, 0, 1, 2)
    assert issue.action.startswith("first bar(s) missing: back-filled from the first real bar 2024-01-01 00:15:00")
    assert_filled_from(p, "ETHUSDT", [0, 1, 2], eth["open"][3])
    assert_column_is(p, "ETHUSDT", eth, slice(3, 300))
    assert not p.excluded.any() and len(p.issues) == 1
    # without a requested start nothing is invented: the common window starts at ETH's first bar
    p = align(data)
    assert p.open_time[0] == eth["open_time"][3] and p.issues == [] and not p.filled.any()


def test_late_start_within_coverage_trims_window():
    b, e = real_rows("BTCUSDT", 1000), real_rows("ETHUSDT", 1000)
    data = {"BTCUSDT": candles(b), "ETHUSDT": candles(take(e, slice(60, 1000)), "ETHUSDT")}
    p = align(data, start_ms=T0, end_ms=int(b["open_time"][-1]))
    assert p.symbols == ["BTCUSDT", "ETHUSDT"] and p.open_time[0] == b["open_time"][60] and p.n_bars == 940
    issue = one(p, "late_start", "ETHUSDT")
    assert issue.count == 60 and issue.timestamps == ts(b, *range(60))
    assert issue.action == ("kept (covers 94.0% of the window 2024-01-01 00:00:00 .. 2024-01-04 11:15:00); its first bar "
                            "is 2024-01-01 05:00:00, so the window starts at 2024-01-01 05:00:00 for all assets")
    assert not p.filled.any() and len(p.issues) == 1


def test_delisted_below_coverage_dropped(btc, eth):
    data = {"BTCUSDT": candles(btc), "ETHUSDT": candles(take(eth, slice(0, 200)), "ETHUSDT")}
    p = align(data, start_ms=T0, end_ms=int(btc["open_time"][-1]))
    assert p.symbols == ["BTCUSDT"]
    issue = one(p, "delisted", "ETHUSDT")
    assert issue.count == 100 and issue.timestamps == ts(btc, *range(200, 300))
    assert issue.action.startswith("dropped: its data 2024-01-01 00:00:00 .. 2024-01-01 16:35:00 covers 66.7%")


def test_delisted_within_coverage_trims_end_and_short_tail_is_filled():
    b, e = real_rows("BTCUSDT", 1000), real_rows("ETHUSDT", 1000)
    end = int(b["open_time"][-1])
    p = align({"BTCUSDT": candles(b), "ETHUSDT": candles(take(e, slice(0, 940)), "ETHUSDT")}, start_ms=T0, end_ms=end)
    assert p.open_time[-1] == e["open_time"][939] and p.n_bars == 940
    issue = one(p, "delisted", "ETHUSDT")
    assert issue.count == 60 and issue.timestamps == ts(b, *range(940, 1000))
    assert issue.action.startswith("kept (covers 94.0%") and "window ends at 2024-01-04 06:15:00" in issue.action
    p = align({"BTCUSDT": candles(b), "ETHUSDT": candles(take(e, slice(0, 990)), "ETHUSDT")}, start_ms=T0, end_ms=end)
    assert p.n_bars == 1000
    issue = one(p, "missing_bars", "ETHUSDT")
    assert issue.timestamps == ts(b, *range(990, 1000)) and "forward-filled in 1 gap(s)" in issue.action
    assert_filled_from(p, "ETHUSDT", list(range(990, 1000)), e["close"][989])


def test_gap_at_requested_start_filled_from_bar_before_window(btc):
    rows = take(btc, np.setdiff1d(np.arange(300), [100]))
    p = align({"BTCUSDT": candles(rows)}, start_ms=int(btc["open_time"][100]))
    assert p.open_time[0] == btc["open_time"][100] and p.n_bars == 200
    issue = one(p, "missing_bars")
    assert issue.timestamps == ts(btc, 100) and issue.action.startswith("forward-filled")
    assert_filled_from(p, "BTCUSDT", [0], btc["close"][99])


def test_window_snaps_inward_to_grid(btc):
    p = align({"BTCUSDT": candles(btc)}, start_ms=int(btc["open_time"][10]) + 1, end_ms=int(btc["open_time"][20]) + 299_999)
    np.testing.assert_array_equal(p.open_time, btc["open_time"][11:21])
    assert_column_is(p, "BTCUSDT", take(btc, slice(11, 21)))


def test_window_beyond_all_data_clipped_and_reported(btc, eth):
    p = align({"BTCUSDT": candles(btc), "ETHUSDT": candles(eth, "ETHUSDT")}, start_ms=T0 - DAY, end_ms=T0 + 3 * DAY)
    assert p.n_bars == 300 and p.symbols == ["BTCUSDT", "ETHUSDT"]
    clips = by_rule(p, "window_clipped")
    assert [c.timestamps for c in clips] == [(T0 - DAY,), (T0 + 3 * DAY,)]
    assert clips[1].action == ("requested end 2024-01-04 00:00:00 is beyond every asset's data: end set to the last bar "
                               "of any asset, 2024-01-02 00:55:00")
    assert len(p.issues) == 2


def test_window_errors(btc):
    data = {"BTCUSDT": candles(btc)}
    with pytest.raises(DataError, match=r"no data in the window 2025-01-01 00:00:00 \.\. \(data end\): the assets' "
                                         r"data spans 2024-01-01 00:00:00 \.\. 2024-01-02 00:55:00"):
        align(data, start_ms=parse_time("2025-01-01"))
    with pytest.raises(DataError, match="is after end"):
        align(data, start_ms=T0 + DAY, end_ms=T0)
    with pytest.raises(DataError, match=r"no 5m bar opens in the window"):
        align(data, start_ms=T0 + 1, end_ms=T0 + 2)


# --- warm-up ------------------------------------------------------------------------------------------


def test_warmup_bars_before_start(btc, eth):
    data = {"BTCUSDT": candles(btc), "ETHUSDT": candles(eth, "ETHUSDT")}
    p = align(data, start_ms=int(btc["open_time"][100]), warmup_bars=30)
    assert p.warmup_bars == 30 and p.open_time[0] == btc["open_time"][70] and p.n_bars == 230
    assert_column_is(p, "BTCUSDT", take(btc, slice(70, 300)))
    assert p.issues == []
    assert p.slice_bars(10, 100).warmup_bars == 20 and p.slice_bars(40, 100).warmup_bars == 0


def test_warmup_short_reported(btc, eth):
    data = {"BTCUSDT": candles(btc), "ETHUSDT": candles(take(eth, slice(40, 300)), "ETHUSDT")}
    p = align(data, start_ms=int(btc["open_time"][100]), warmup_bars=500)
    assert p.warmup_bars == 60 and p.open_time[0] == eth["open_time"][40]
    issue = one(p, "warmup_short")
    assert issue.count == 60 and issue.action == ("asked for 500 warm-up bar(s) before 2024-01-01 08:20:00; only 60 exist "
                                                  "for every kept asset (data from 2024-01-01 03:20:00)")


# --- asset-day exclusion ------------------------------------------------------------------------------


def test_asset_day_dropped_when_too_many_bars_missing():
    b, e = real_rows("BTCUSDT", 288 * 3), real_rows("ETHUSDT", 288 * 3)
    gone_day2 = np.arange(300, 358)  # 58 of 288 = 20.1 %
    gone_day3 = np.arange(600, 657)  # 57 of 288 = 19.8 %
    keep = np.setdiff1d(np.arange(288 * 3), np.r_[gone_day2, gone_day3])
    # rule 9 alone: the outage rule (10) off, it would also exclude bars after each gap
    p = align({"BTCUSDT": candles(b), "ETHUSDT": candles(take(e, keep), "ETHUSDT")},
              AlignRules(max_filled_window_share=1.0))
    day = one(p, "dropped_asset_day", "ETHUSDT")
    assert day.count == 288 and day.timestamps == ts(b, *range(288, 576))
    assert day.action == ("excluded from trading for UTC day 2024-01-02: 58 of its 288 bar(s) missing (> 20%); "
                          "prices filled, asset stays in the panel")
    j = col(p, "ETHUSDT")
    np.testing.assert_array_equal(np.flatnonzero(p.excluded[:, j]), np.arange(288, 576))
    assert not p.excluded[:, col(p, "BTCUSDT")].any()
    assert p.symbols == ["BTCUSDT", "ETHUSDT"]
    miss = one(p, "missing_bars", "ETHUSDT")
    assert miss.count == 115 and "2 gap(s)" in miss.action
    assert_filled_from(p, "ETHUSDT", gone_day2, e["close"][299])
    assert_column_is(p, "ETHUSDT", e, keep)


def test_day_fraction_boundary_is_strictly_more_than():
    b = real_rows("BTCUSDT", 288 * 2)
    rules = AlignRules(max_missing_day_fraction=0.25)
    exact = np.setdiff1d(np.arange(576), np.arange(100, 172))  # 72 of 288 = exactly 25 %
    assert not by_rule(align({"BTCUSDT": candles(take(b, exact))}, rules), "dropped_asset_day")
    over = np.setdiff1d(np.arange(576), np.arange(100, 173))  # 73 of 288
    p = align({"BTCUSDT": candles(take(b, over))}, rules)
    assert one(p, "dropped_asset_day").timestamps[0] == T0 and p.excluded[:288].all() and not p.excluded[288:].any()


# --- inputs ---------------------------------------------------------------------------------------------


def test_bad_inputs(btc):
    with pytest.raises(DataError, match="no candles"):
        align({})
    short = Candles("BTCUSDT", btc["open_time"], btc["open"][:10], btc["high"], btc["low"], btc["close"], btc["volume"],
                    source="x.csv")
    with pytest.raises(DataError, match=r"BTCUSDT \(x\.csv\): candle arrays differ in length"):
        align({"BTCUSDT": short})
    for bad in (dict(min_coverage=0), dict(min_coverage=1.5), dict(max_missing_day_fraction=-0.1), dict(bar_ms=0)):
        with pytest.raises(ValueError):
            AlignRules(**bad)


# --- the real development sets --------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_spot_set_full_window_no_gaps():
    p = load_panel("spot-5m-2024")
    assert p.n_assets == 50 and p.symbols == sorted(p.symbols)
    assert p.open_time[0] == parse_time("2024-01-01 00:00") and p.open_time[-1] == parse_time("2024-09-06 04:40")
    assert p.n_bars == 71769 and np.all(np.diff(p.open_time) == BAR_5M)
    assert not p.filled.any() and not p.excluded.any() and p.issues == []
    raw = read_candles(set_dir(), symbols=["BTCUSDT", "PEPEUSDT"])
    for sym in raw:
        j = col(p, sym)
        np.testing.assert_array_equal(p.close[:, j], raw[sym].close[: p.n_bars])
        np.testing.assert_array_equal(p.volume[:, j], raw[sym].volume[: p.n_bars])


@pytest.mark.slow
def test_real_usdtm_set_reports_assets_not_covering_window():
    p = load_panel("usdtm-5m-2023")
    assert p.open_time[0] == parse_time("2023-07-04 12:35") and p.open_time[-1] == parse_time("2023-08-02 23:20")
    assert p.n_assets == 55
    late = by_rule(p, "late_start")
    assert sorted(i.symbol for i in late) == ["BNBUSDT", "MATICUSDT", "SOLUSDT", "USDCUSDT", "XRPUSDT"]
    for i in late:
        assert i.action.startswith("dropped: its data 2023-07-18 11:15:00 .. 2023-08-17 11:05:00 covers 52.7%")
        assert i.symbol not in p.symbols
    assert len(p.issues) == 5 and not p.filled.any()


@pytest.mark.slow
def test_real_mixed_set_spot_outage_bar_filled():
    p = load_panel("mixed-1h-2022-2026")
    assert p.n_assets == 27 and p.bar_ms == BAR_1H
    assert p.open_time[0] == parse_time("2022-05-25 15:00") and p.open_time[-1] == parse_time("2026-05-24 07:00")
    outage = parse_time("2023-03-24 13:00")
    spot = ["ADAUSDT", "AVAXUSDT", "BNBUSDT", "BTCUSDT", "DOGEUSDT", "DOTUSDT", "ETHUSDT", "LINKUSDT", "SOLUSDT", "XRPUSDT"]
    miss = by_rule(p, "missing_bars")
    assert sorted(i.symbol for i in miss) == spot and len(p.issues) == 11
    tick = one(p, "bad_tick", "DASHUSDT")  # a 720x high wick on 2020-04-14, before the window: dropped, reported
    assert tick.timestamps == (parse_time("2020-04-14 07:00"),)
    assert all(i.count == 1 and i.timestamps == (outage,) for i in miss)
    r = int(np.searchsorted(p.open_time, outage))
    assert sorted(p.symbols[j] for j in np.flatnonzero(p.filled[r])) == spot and p.filled.sum() == 10
    for sym in spot:
        j = col(p, sym)
        assert p.close[r, j] == p.close[r - 1, j] == p.open[r, j] == p.high[r, j] == p.low[r, j]
        assert p.volume[r, j] == 0
    assert not p.excluded.any()  # 1 of 24 bars


@pytest.mark.slow
def test_load_panel_window_warmup_symbols():
    start, end = parse_time("2024-03-01"), parse_time("2024-03-31 23:55")
    p = load_panel("spot-5m-2024", start_ms=start, end_ms=end, warmup_bars=300, symbols=["BTCUSDT", "ETHUSDT"])
    assert p.symbols == ["BTCUSDT", "ETHUSDT"] and p.warmup_bars == 300
    assert p.open_time[0] == start - 300 * BAR_5M and p.open_time[p.warmup_bars] == start and p.open_time[-1] == end
    raw = read_candles(set_dir(), symbols=["BTCUSDT"], start_ms=start - 300 * BAR_5M, end_ms=end)["BTCUSDT"]
    np.testing.assert_array_equal(p.close[:, 0], raw.close)
    assert p.issues == []
    p = load_panel(set_dir(), start_ms=T0 + 10 * BAR_5M, end_ms=T0 + DAY, warmup_bars=50, symbols=["SOLUSDT"])
    assert p.warmup_bars == 10 and p.open_time[0] == T0 and [i.rule for i in p.issues] == ["warmup_short"]


def test_load_panel_reads_before_start_so_a_gap_at_start_is_forward_filled(tmp_path):
    from tests.support.data import write_parquet

    b = real_rows("BTCUSDT", 600)
    write_parquet(tmp_path / "BTCUSDT.parquet", take(b, np.setdiff1d(np.arange(600), [300])))
    (tmp_path / "BTCUSDT.parquet.md5").write_text("x")
    p = load_panel(tmp_path, start_ms=int(b["open_time"][300]))
    assert p.open_time[0] == b["open_time"][300] and p.n_bars == 300
    assert [i.rule for i in p.issues] == ["skipped_files", "missing_bars"]
    assert p.issues[0].action == "not read: BTCUSDT.parquet.md5 (not a candle file extension)"
    assert p.issues[1].timestamps == ts(b, 300) and p.issues[1].action.startswith("forward-filled")
    assert_filled_from(p, "BTCUSDT", [0], b["close"][299])
