"""Scanner accuracy against a dense numpy reference (np.corrcoef + LAPACK eigh) on real and synthetic data."""

import numpy as np
import pytest

from dolphin.scanner import WINDOWS, LiveScanner, scan
from dolphin.scanner.kernels import lambda2_bound
from tests.support.scanner import (
    DAY_MS,
    bar_of,
    check_against_reference,
    make_panel,
    one_factor_close,
    ref_corr,
    spot_panel,
)

# Three real stretches spread over the set (2 days each after a full warm-up): calm and volatile
# regimes, all four windows, ~3,400 bars x 4 windows checked.
REAL_DAYS = ("2024-02-05", "2024-05-20", "2024-08-04")


@pytest.mark.parametrize("day", REAL_DAYS)
def test_real_data_matches_eigh(day):
    from dolphin.timeutil import parse_time

    p = spot_panel()
    d0 = bar_of(p, parse_time(day))
    sub = p.slice_bars(d0 - 751, d0 + 2 * 288)
    res = scan(sub, start_ms=int(sub.open_time[751]))
    assert len(res) == 576 and res.valid.all()
    n = check_against_reference(res, sub.close, first_bar=751)
    assert n == 576 * 4
    # the iterative path, not the fallback, produced (almost) all of it
    fb = res.fallback_counts()
    assert sum(fb.values()) <= 0.02 * n, fb
    assert (res.matvecs >= 1).all() and res.matvecs.max() <= 25


def test_uncorrelated_returns_take_the_exact_fallback():
    # i.i.d. returns: the spectrum is a Marchenko-Pastur bulk, lambda_1 barely separated
    rng = np.random.default_rng(7)
    r = rng.standard_normal((751 + 300, 50)) * 0.002
    r[0] = 0
    close = 50.0 * np.exp(np.cumsum(r, axis=0))
    res = scan(make_panel(close), start_ms=None)
    rows = range(751, len(res))
    assert check_against_reference(res, close, first_bar=0, rows=rows) == 4 * len(rows)
    fb = res.fallbacks[751:].astype(np.int64)
    for k, w in enumerate(WINDOWS):
        used = ((fb >> k) & 1).mean()
        assert used > 0.9, f"w{w}: exact path used on only {used:.0%} of degenerate bars"


def test_constant_price_asset_is_uncorrelated():
    p = spot_panel()
    d0 = bar_of(p, 1_712_534_400_000)  # 2024-04-08
    close = p.close[d0 - 751:d0 + 200].copy()
    close[:, 7] = 3.25  # never moves
    res = scan(make_panel(close, t0=int(p.open_time[d0 - 751])))
    assert np.isfinite(res.lam[751:]).all()
    check_against_reference(res, close, first_bar=0, rows=range(740, len(res)))
    assert np.abs(res.loadings[751:, :, 7]).max() < 1e-7
    # all assets constant: C = I, lambda = 1 exactly via the exact path
    flat = np.full((800, 4), 2.0)
    res = scan(make_panel(flat), windows=(50, 150))
    assert np.array_equal(res.lam[150:], np.ones((650, 2)))
    assert (res.fallbacks[150:] == 3).all()


def test_gap_filled_asset_within_windows():
    p = spot_panel()
    d0 = bar_of(p, 1_718_668_800_000)  # 2024-06-18
    close = p.close[d0 - 751:d0 + 288].copy()
    filled = np.zeros(close.shape, bool)
    # a 60-bar outage of asset 3 (longer than w50: zero variance there) and a 10-bar one of asset 11
    for a, lo, n in ((3, 800, 60), (11, 900, 10)):
        close[lo:lo + n, a] = close[lo - 1, a]
        filled[lo:lo + n, a] = True
    res = scan(make_panel(close, t0=int(p.open_time[d0 - 751]), filled=filled))
    check_against_reference(res, close, first_bar=0, rows=range(751, len(res)))
    w50 = 0
    assert np.abs(res.loadings[859, w50, 3]) < 1e-7  # bars 800..859 flat -> w50 window at 859 is all zeros


def test_return_leaving_the_window_resets_sums_exactly():
    rng = np.random.default_rng(3)
    close = one_factor_close(900, 6, seed=3)
    # asset 2: moves until bar 400, flat 401..699 (> w150, < w300), moves again from 700
    close[401:700, 2] = close[400, 2]
    close[700:, 2] = close[400, 2] * np.exp(np.cumsum(rng.standard_normal(200) * 0.002))
    sc = LiveScanner([f"A{i}" for i in range(6)], 300_000)
    rows = []
    for t in range(900):
        rows.append(sc.push(1_704_067_200_000 + t * 300_000, close[t]))
        if t == 560:  # w50 and w150 windows (bars 511..560 / 411..560) hold only zero returns of asset 2
            eng = sc._eng
            for k in (0, 1):
                assert eng.nz[k, 2] == 0 and eng.S1[k, 2] == 0.0 and eng.Sd[k, 2] == 0.0
                P = eng.off
                row = [eng.S2[k, P[2] + j] for j in range(3, 6)] + [eng.S2[k, P[i] + 2] for i in range(2)]
                assert all(v == 0.0 for v in row)
            assert eng.nz[2, 2] > 0  # w300 still sees the moves
    from dolphin.scanner.core import ScanResult

    res = ScanResult(symbols=rows[0].symbols, bar_ms=300_000, windows=WINDOWS,
                     open_time=np.concatenate([r.open_time for r in rows]),
                     **{k: np.concatenate([getattr(r, k) for r in rows])
                        for k in ("lam", "velocity", "instability", "valid", "loadings", "close", "fallbacks")})
    check_against_reference(res, close, first_bar=0, rows=range(380, 900))


def test_warmup_nan_and_valid_marking():
    # starts at 22:00 so day boundaries fall inside the warm-up (seeds with partial windows)
    close = one_factor_close(1200, 8, seed=11)
    res = scan(make_panel(close, t0=1_704_067_200_000 - 24 * 300_000))
    for k, W in enumerate(WINDOWS):
        assert not res.valid[:W, k].any() and res.valid[W:, k].all()
        assert np.isnan(res.lam[:W, k]).all() and np.isfinite(res.lam[W:, k]).all()
        assert np.isnan(res.loadings[:W, k]).all() and np.isfinite(res.loadings[W:, k]).all()
        assert np.isnan(res.velocity[:W + 1, k]).all() and np.isfinite(res.velocity[W + 1:, k]).all()
        assert np.isnan(res.instability[:W + 1, k]).all() and np.isfinite(res.instability[W + 1:, k]).all()
    assert np.isnan(res.vel_div[:151]).all() and np.isfinite(res.vel_div[151:]).all()
    assert np.array_equal(res.vel_div, res.velocity[:, 0] - res.velocity[:, 1], equal_nan=True)
    assert np.array_equal(res.lam_norm, res.lam / 8, equal_nan=True)
    assert (res.timestamp == res.open_time + 300_000).all()
    check_against_reference(res, close, first_bar=0, rows=[*range(0, 60), *range(140, 160), *range(740, 760)])


def test_loadings_sign_and_instability_semantics():
    p = spot_panel()
    d0 = bar_of(p, 1_709_251_200_000)  # 2024-03-01
    res = scan(p.slice_bars(d0 - 751, d0 + 100), start_ms=int(p.open_time[d0]))
    L = res.loadings
    assert np.allclose(np.linalg.norm(L, axis=2), 1.0, atol=1e-12)
    assert (L.sum(axis=2) >= 0).all()  # market mode positive
    assert (res.instability >= 0).all() and (res.instability <= 1).all()
    # instability is 1 - |u(t).u(t-1)| of the emitted loadings (away from the day's first bar)
    dots = np.abs(np.einsum("tkn,tkn->tk", L[1:], L[:-1]))
    assert np.allclose(res.instability[1:], np.maximum(0.0, 1.0 - dots), atol=1e-12)


def test_n400_one_factor_sanity():
    N = 400
    close = one_factor_close(751 + 40, N, seed=5)
    panel = make_panel(close, t0=1_704_067_200_000 - 751 * 300_000)
    res = scan(panel, start_ms=1_704_067_200_000)
    assert len(res) == 40 and res.valid.all()
    assert res.fallbacks.sum() == 0  # a strong factor never needs the exact path
    assert (res.lam_norm > 0.35).all() and (res.lam_norm < 0.75).all()
    assert (res.loadings > 0).all()  # positive betas -> every asset loads positively
    check_against_reference(res, close, first_bar=751, rows=[0, 1, 17, 39])


def test_lambda2_bound_is_an_upper_bound():
    rng = np.random.default_rng(0)
    for trial in range(200):
        N = int(rng.integers(3, 40))
        W = int(rng.integers(3, 80))
        X = rng.standard_normal((W, N)) @ np.diag(rng.uniform(0.1, 2, N))
        X += rng.standard_normal((W, 1)) * rng.uniform(0, 3)
        if trial % 7 == 0:
            X[:, 0] = 0.0
        C = ref_corr(X)
        w = np.linalg.eigvalsh(C)
        zc = int((~(X != 0).any(axis=0)).sum())
        mrank = min(W - 1, N - zc) + zc - 1
        fro = float((C * C).sum())
        for theta in (w[-1], w[-1] * (1 - 1e-3), w[-1] * 0.9):
            assert lambda2_bound(theta, fro, N, mrank) >= w[-2] - 1e-12, (trial, N, W)
