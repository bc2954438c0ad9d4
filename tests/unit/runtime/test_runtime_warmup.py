"""Warm-up and gap backfill from the venue's REST klines (runtime/warmup.py), against `dolphin venue` on loopback
replaying real usdtm-5m-2023 candles, and the strategy continuing through a gap in its bar feed."""

import numpy as np
import pytest

from dolphin.data import load_panel
from dolphin.engine.config import BLUE
from dolphin.scanner import scan
from runtime.replay import warmup_bars
from runtime.strategy import DolphinStrategy, DolphinStrategyConfig
from runtime.warmup import VenueGapFiller, WarmupError, fetch_klines, venue_history
from tests.support.engine import real_panel
from tests.support.runtime import _bar
from tests.support.venue import VenueProcess

SYMBOLS = ("BTCUSDT", "DOGEUSDT", "ETHUSDT")
START = "2023-07-17T17:30"


@pytest.fixture(scope="module")
def venue():
    # a slow replay (60 s per bar): the venue's clock stays on the first replay bar during the test
    v = VenueProcess("--symbols", ",".join(SYMBOLS), "--start", START, "--days", "0.1", "--speed", "60",
                     "--history-bars", str(warmup_bars(BLUE) + 20))
    yield v
    rc, log = v.stop()
    assert rc == 0, log[-2000:]


def test_warm_up_is_the_recorded_bars_up_to_the_last_closed_bar_paged_over_1500(venue):
    from dolphin.timeutil import parse_time

    n = warmup_bars(BLUE)  # 2817 at 5m: two pages of Binance's 1500 limit
    hist = venue_history(venue.http, SYMBOLS, 300_000, n)
    server_ms = venue.get("/fapi/v1/time")[1]["serverTime"]
    assert hist.n_bars == n and list(hist.symbols) == list(SYMBOLS)
    assert int(hist.close_time[-1]) <= server_ms < int(hist.close_time[-1]) + 300_000  # the newest closed bar
    assert int(hist.close_time[-1]) == parse_time(START)  # the venue's clock: the first replay bar is in progress
    rec = load_panel("usdtm-5m-2023", symbols=list(SYMBOLS), start_ms=int(hist.open_time[0]),
                     end_ms=int(hist.open_time[-1]))
    assert np.array_equal(rec.open_time, hist.open_time)
    # the venue serves prices on each symbol's tick: the recorded closes up to that rounding
    assert np.allclose(hist.close, rec.close, rtol=1e-6, atol=1e-5)
    assert not hist.filled.any()


def test_gap_filler_returns_exactly_the_skipped_bars(venue):
    from dolphin.timeutil import parse_time

    last_open = parse_time(START) - 300_000
    gap = VenueGapFiller(venue.http, SYMBOLS, 300_000)(last_open - 4 * 300_000, last_open)
    assert gap.n_bars == 5 and list(gap.symbols) == list(SYMBOLS)
    assert list(gap.open_time) == [last_open - k * 300_000 for k in (4, 3, 2, 1, 0)]
    one = VenueGapFiller(venue.http, SYMBOLS, 300_000)(last_open, last_open)  # a one-bar gap (no spacing in it)
    assert one.n_bars == 1 and int(one.open_time[0]) == last_open
    assert np.array_equal(one.close[0], gap.close[-1])


def test_unknown_symbol_and_unreachable_venue_are_errors_that_name_them(venue):
    with pytest.raises(WarmupError, match="NOPEUSDT.*-1121|-1121.*NOPEUSDT"):
        venue_history(venue.http, ("BTCUSDT", "NOPEUSDT"), 300_000, 100)
    with pytest.raises(WarmupError, match="127.0.0.1:9/fapi/v1/time"):
        venue_history("http://127.0.0.1:9", SYMBOLS, 300_000, 100, timeout_s=2)
    with pytest.raises(WarmupError, match="longer than"):
        VenueGapFiller(venue.http, SYMBOLS, 300_000)(0, 300_000 * 2000)


def test_paging_pauses_when_the_used_weight_header_nears_the_limit(monkeypatch):
    import runtime.warmup as w

    pages = []

    def fake_get(base, path, params, timeout_s):
        end = params["endTime"] // 300_000 * 300_000
        rows = [[end - k * 300_000, "1", "1", "1", "1", "1"] for k in range(params["limit"])][::-1]
        pages.append(params["limit"])
        return rows, 1900  # above WEIGHT_BUDGET: pause before the next page
    slept = []
    monkeypatch.setattr(w, "_get", fake_get)
    c = fetch_klines("http://x", "BTCUSDT", 300_000, 2000, 1_700_000_100_000, sleep=slept.append)
    assert len(c) == 2000 and pages == [1500, 500] and len(slept) == 2 and all(0 < s <= 61 for s in slept)
    assert np.all(np.diff(c.open_time) == 300_000)


def _panel_filler(panel, calls, fail=False):
    def fill(first_open, last_open):
        calls.append((first_open, last_open))
        if fail:
            raise WarmupError("venue down")
        lo = int(np.searchsorted(panel.open_time, first_open))
        hi = int(np.searchsorted(panel.open_time, last_open)) + 1
        return panel.slice_bars(lo, hi)
    return fill


@pytest.mark.parametrize("fail", [False, True], ids=["backfilled", "filler-fails-cold-restart"])
def test_a_gap_in_the_bar_feed_is_backfilled_and_the_scanner_continues(fail):
    panel = real_panel(("BTCUSDT", "ETHUSDT", "SOLUSDT"), start=0, n=140)
    calls = []
    s = DolphinStrategy(DolphinStrategyConfig(symbols=tuple(panel.symbols), bar_ms=panel.bar_ms),
                        gap_filler=_panel_filler(panel, calls, fail))
    fed = [t for t in range(140) if not 100 <= t < 105]  # five bar closes never arrive
    for t in fed:
        for j in range(3):
            s.on_bar(_bar(panel, j, t))
    assert calls == [(int(panel.open_time[100]), int(panel.open_time[104]))]
    batch = scan(panel, int(panel.open_time[0])).vel_div / 3
    got = np.asarray(s.log_data.vel_div)
    assert s.log_data.close_ms == [int(panel.close_time[t]) for t in fed]  # no decisions on the past bars
    if not fail:
        assert np.array_equal(got, batch[fed], equal_nan=True)  # as if no bar had been lost
    else:
        assert np.isnan(got[100]) and np.array_equal(got[:100], batch[:100], equal_nan=True)
