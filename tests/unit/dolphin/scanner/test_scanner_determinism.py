"""Day anchoring: a UTC day's scans are bit-identical however the run around it is cut."""

import numpy as np
import pytest

from dolphin.data.contracts import DataError
from dolphin.scanner import LiveScanner, scan
from tests.support.scanner import bar_of, spot_panel

FIELDS = ("open_time", "lam", "velocity", "instability", "valid", "loadings", "close", "fallbacks", "vel_div")
DAY = 288


def assert_same(a, b, what=""):
    assert len(a) == len(b), what
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f"{what}: {f} differs"


@pytest.fixture(scope="module")
def long_run():
    p = spot_panel()
    d0 = bar_of(p, 1_714_521_600_000)  # 2024-05-01, 4 days
    sub = p.slice_bars(d0 - 751, d0 + 4 * DAY)
    return p, d0, scan(sub, start_ms=int(p.open_time[d0]))


def test_each_day_alone_is_bit_identical_to_the_long_run(long_run):
    p, d0, res = long_run
    assert len(res) == 4 * DAY
    for day in range(4):
        a = d0 + day * DAY
        for extra in (0, 37):  # exactly the warm-up tail, or more history: must not matter
            alone = scan(p.slice_bars(a - 751 - extra, a + DAY), start_ms=int(p.open_time[a]))
            assert_same(alone, res[day * DAY:(day + 1) * DAY], f"day {day} extra {extra}")
    # the long run really crossed day seeds: velocity exists on every day's first bar
    assert np.isfinite(res.velocity[::DAY]).all()


def test_mid_day_start_and_end_give_the_same_rows(long_run):
    p, d0, res = long_run
    a = d0 + DAY + 150  # 12:30 of day 2
    part = scan(p.slice_bars(d0 - 751, d0 + 4 * DAY), start_ms=int(p.open_time[a]), end_ms=int(p.open_time[a + 200]))
    assert_same(part, res[DAY + 150:DAY + 351], "mid-day")


def test_live_scanner_matches_batch(long_run):
    p, d0, res = long_run
    sub = p.slice_bars(d0 - 751, d0 + 4 * DAY)
    start = 751 + DAY - 5  # warm from history up to 5 bars before a day boundary, then go live
    live = LiveScanner.from_panel(sub, upto_ms=int(sub.open_time[start - 1]))
    rows = [live.push(int(sub.open_time[t]), sub.close[t]) for t in range(start, sub.n_bars)]
    for i, row in enumerate(rows):
        assert_same(row, res[start - 751 + i], f"live row {i}")
    with pytest.raises(DataError):
        live.push(int(sub.open_time[-1]) + 2 * sub.bar_ms, sub.close[-1])  # skipped a bar


def test_repeat_runs_identical(long_run):
    p, d0, res = long_run
    again = scan(p.slice_bars(d0 - 751, d0 + 4 * DAY), start_ms=int(p.open_time[d0]))
    assert_same(again, res, "repeat")
