"""dolphin.book.features: the four formulas, their ranges, both input shapes (live levels, archive bands)."""

import math
import re

import pytest

from dolphin.book.features import (DEFAULT_PARAMS, BandDepth, BookParams, BookSideError, BookState, agreement,
                                   band_from_cumulative, band_from_levels, depth_quality, ewma, fill_prob,
                                   imbalance, mid_from_cumulative, step)


def test_band_from_levels_sums_notional_within_band_and_ignores_zero_qty():
    bids = [["100.0", "2"], ["99.5", "1"], ["98.0", "5"], ["99.9", "0"]]  # 98.0 is outside 1 % of mid 100.05
    asks = [["100.1", "1"], ["101.0", "3"], ["102.0", "7"]]  # 102.0 outside (limit 101.05)
    band, mid = band_from_levels(bids, asks, 1.0)
    assert mid == pytest.approx(100.05)
    assert band.bid_notional == pytest.approx(200.0 + 99.5)
    assert band.ask_notional == pytest.approx(100.1 + 303.0)


@pytest.mark.parametrize("bids,asks,msg", [
    ([], [["1", "1"]], "empty bid side"),
    ([["1", "1"]], [["2", "0"]], "empty ask side"),
    ([["101", "1"]], [["100", "1"]], "crossed book"),
    ([["100", "1"]], [["100", "1"]], "crossed book"),
    ([["nan", "1"]], [["100", "1"]], "bid price"),
    ([["-1", "1"]], [["100", "1"]], "price must be > 0"),
    ([["99", "-1"]], [["100", "1"]], "qty >= 0"),
    ([["99"]], [["100", "1"]], "not [price, qty]"),
])
def test_band_from_levels_rejects_broken_sides(bids, asks, msg):
    with pytest.raises(BookSideError, match=re.escape(msg)):
        band_from_levels(bids, asks)


def test_band_from_cumulative_takes_the_signed_band_rows():
    rows = [(-5, 900.0), (-1, 100.0), (1, 300.0), (5, 1000.0), (-2, 150.0), (2, 400.0)]
    assert band_from_cumulative(rows, 1.0) == BandDepth(100.0, 300.0)
    assert band_from_cumulative(rows, 2.0) == BandDepth(150.0, 400.0)
    with pytest.raises(BookSideError, match=r"no \+/-3 % band.*\[-5.0, -2.0, -1.0, 1.0, 2.0, 5.0\]"):
        band_from_cumulative(rows, 3.0)
    with pytest.raises(BookSideError, match="negative"):
        band_from_cumulative([(-1, -5.0), (1, 3.0)], 1.0)


def test_mid_from_cumulative_is_mean_of_side_average_prices():
    rows = [(-1, 2.0, 198.0), (1, 2.0, 202.0)]  # bid avg 99, ask avg 101
    assert mid_from_cumulative(rows, 1.0) == pytest.approx(100.0)
    with pytest.raises(BookSideError, match="empty ask side"):
        mid_from_cumulative([(-1, 2.0, 198.0), (1, 0.0, 0.0)], 1.0)


def test_imbalance_sign_and_range():
    assert imbalance(BandDepth(300.0, 100.0)) == pytest.approx(0.5)
    assert imbalance(BandDepth(100.0, 300.0)) == pytest.approx(-0.5)
    assert imbalance(BandDepth(0.0, 0.0)) == 0.0
    assert imbalance(BandDepth(5.0, 0.0)) == 1.0
    assert imbalance(BandDepth(0.0, 5.0)) == -1.0


def test_depth_quality_is_thin_side_against_its_reference():
    assert depth_quality(BandDepth(100.0, 50.0), 100.0) == pytest.approx(0.5)
    assert depth_quality(BandDepth(500.0, 400.0), 100.0) == 1.0  # deeper than usual is capped at 1
    assert depth_quality(BandDepth(100.0, 50.0), None) == 1.0  # first observation is its own reference
    assert depth_quality(BandDepth(100.0, 0.0), 100.0) == 0.0  # an empty side is quality 0
    assert depth_quality(BandDepth(10.0, 10.0), 0.0) == 1.0


def test_fill_prob_exponential_absorption_of_the_order():
    q = DEFAULT_PARAMS.order_notional
    assert fill_prob(BandDepth(20 * q, 40 * q)) == pytest.approx(math.exp(-1 / 20))
    assert fill_prob(BandDepth(q, 10 * q)) == pytest.approx(math.exp(-1))
    assert fill_prob(BandDepth(0.0, 10 * q)) == 0.0
    assert fill_prob(BandDepth(1000.0, 1000.0), order_notional=1000.0) == pytest.approx(math.exp(-1))
    # monotone in depth
    assert fill_prob(BandDepth(2 * q, 2 * q)) > fill_prob(BandDepth(q, q))


def test_agreement_sign_follows_book_and_move():
    up, down = 100.0 * math.exp(0.002), 100.0 * math.exp(-0.002)
    assert agreement(0.5, up, 100.0, 0.002) == pytest.approx(0.5 * math.tanh(1.0))
    assert agreement(0.5, down, 100.0, 0.002) == pytest.approx(-0.5 * math.tanh(1.0))
    assert agreement(-0.5, down, 100.0, 0.002) == pytest.approx(0.5 * math.tanh(1.0))
    assert agreement(0.5, 100.0, None) == 0.0
    assert agreement(0.5, None, 100.0) == 0.0
    assert agreement(1.0, 1e9, 1.0) <= 1.0 and agreement(1.0, 1e-9, 1.0) >= -1.0


def test_ewma_time_weighted_half_life():
    assert ewma(None, 5.0, 10.0, 60.0) == 5.0
    assert ewma(0.0, 1.0, 60.0, 60.0) == pytest.approx(0.5)
    assert ewma(0.0, 1.0, 120.0, 60.0) == pytest.approx(0.75)
    assert ewma(2.0, 1.0, 0.0, 60.0) == 2.0
    assert ewma(2.0, 1.0, -5.0, 60.0) == 2.0


def test_ewma_same_time_constant_whatever_the_sampling_rate():
    """A 500 ms feed and a 30 s archive of the same constant-then-step depth follow the same time constant: equal
    before the step, within one archive interval's discretisation (3 %) after it; a per-sample EWMA would not."""
    def run(every_ms):
        ref = None
        last = None
        for t in range(0, 600_001, every_ms):
            x = 100.0 if t < 300_000 else 50.0
            ref = ewma(ref, x, 0 if last is None else (t - last) / 1000, 120.0)
            last = t
            if t == 299_500 or t == 270_000:
                before = ref
        return before, ref
    (b_fast, a_fast), (b_slow, a_slow) = run(500), run(30_000)
    assert b_fast == pytest.approx(100.0) and b_slow == pytest.approx(100.0)
    assert a_fast == pytest.approx(a_slow, rel=0.03)
    assert 50 < a_slow < 100 and 50 < a_fast < 100


def test_step_uses_history_before_the_observation_and_updates_it():
    p = BookParams(order_notional=1000.0, depth_half_life_s=60.0, price_half_life_s=60.0, move_scale=0.01)
    f0, s0 = step(BookState(), BandDepth(2000.0, 1000.0), 100.0, 1_000, p)
    assert f0.depth_quality == 1.0 and f0.agreement == 0.0
    assert f0.imbalance == pytest.approx(1 / 3)
    assert s0 == BookState(ref_depth=1000.0, ref_mid=100.0, ts_ms=1_000)
    f1, s1 = step(s0, BandDepth(500.0, 1500.0), 101.0, 61_000, p)
    assert f1.depth_quality == pytest.approx(0.5)  # thin 500 against the reference 1000 (before the update)
    assert f1.imbalance == pytest.approx(-0.5)
    assert f1.agreement == pytest.approx(-0.5 * math.tanh(math.log(1.01) / 0.01))
    assert f1.fill_prob == pytest.approx(math.exp(-2.0))
    assert s1.ref_depth == pytest.approx(750.0) and s1.ref_mid == pytest.approx(100.5) and s1.ts_ms == 61_000
    # no mid: agreement 0, mid reference kept
    f2, s2 = step(s1, BandDepth(500.0, 500.0), None, 62_000, p)
    assert f2.agreement == 0.0 and s2.ref_mid == s1.ref_mid
    # out-of-order timestamp: no weight, time does not go back
    _, s3 = step(s2, BandDepth(1.0, 1.0), 50.0, 10_000, p)
    assert s3.ref_depth == s2.ref_depth and s3.ref_mid == s2.ref_mid and s3.ts_ms == 62_000


def test_step_ranges_hold_on_extreme_inputs():
    s = BookState()
    for i, (b, a, mid) in enumerate([(0, 0, 1.0), (1e12, 1, 1e6), (1, 1e12, 1e-6), (5, 5, 3.0), (0, 9, 3.0)]):
        f, s = step(s, BandDepth(float(b), float(a)), mid, i * 1000)
        assert -1 <= f.imbalance <= 1 and 0 <= f.depth_quality <= 1 and 0 <= f.fill_prob <= 1
        assert -1 <= f.agreement <= 1


def test_step_rejects_bad_numbers():
    with pytest.raises(BookSideError, match="ask notional: not finite"):
        step(BookState(), BandDepth(1.0, float("inf")), 1.0, 0)
    with pytest.raises(BookSideError, match="mid must be > 0"):
        step(BookState(), BandDepth(1.0, 1.0), 0.0, 0)
    with pytest.raises(ValueError, match="BookParams.order_notional"):
        BookParams(order_notional=0)


def test_live_and_archive_shapes_agree_on_the_same_book():
    """The same ladder, summarised as live levels or as Binance-style cumulative band rows, gives equal features."""
    bids = [[f"{100 - 0.1 * i:.1f}", "3"] for i in range(30)]
    asks = [[f"{100.2 + 0.1 * i:.1f}", "2"] for i in range(30)]
    band_live, mid = band_from_levels(bids, asks, 1.0)
    lo, hi = mid * 0.99, mid * 1.01
    rows = [(-1.0, sum(float(p) * float(q) for p, q in bids if float(p) >= lo)),
            (1.0, sum(float(p) * float(q) for p, q in asks if float(p) <= hi))]
    band_arch = band_from_cumulative(rows, 1.0)
    assert band_arch.bid_notional == pytest.approx(band_live.bid_notional)
    assert band_arch.ask_notional == pytest.approx(band_live.ask_notional)
    f_live, _ = step(BookState(), band_live, mid, 0)
    f_arch, _ = step(BookState(), band_arch, mid, 0)
    assert f_live == pytest.approx(f_arch)
