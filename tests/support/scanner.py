"""Shared helpers for the scanner tests: real spot-5m-2024 panels, synthetic panels, a dense reference."""

import functools

import numpy as np
import pytest

from dolphin.data.contracts import Panel
from dolphin.timeutil import DAY_MS

BAR = 300_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC


@functools.lru_cache(maxsize=1)
def spot_panel() -> Panel:
    """The whole real spot-5m-2024 set (50 assets, 71,769 bars), loaded once per session."""
    from dolphin.data.loader import load_panel
    from dolphin.paths import DataNotFoundError

    try:
        return load_panel("spot-5m-2024")
    except DataNotFoundError as exc:  # pragma: no cover - CI always has ../shared/data
        pytest.skip(f"real data not available: {exc}")


def bar_of(panel: Panel, ms: int) -> int:
    i = int(np.searchsorted(panel.open_time, ms))
    assert panel.open_time[i] == ms
    return i


def make_panel(close: np.ndarray, t0: int = T0, bar_ms: int = BAR, filled=None) -> Panel:
    close = np.ascontiguousarray(close, dtype=np.float64)
    T, N = close.shape
    z = np.zeros((T, N), bool)
    return Panel(
        symbols=[f"A{i:03d}USDT" for i in range(N)],
        bar_ms=bar_ms,
        open_time=t0 + np.arange(T, dtype=np.int64) * bar_ms,
        open=close, high=close, low=close, close=close, volume=np.ones((T, N)),
        filled=z if filled is None else filled, excluded=z.copy(),
    )


def one_factor_close(T: int, N: int, seed: int, market=0.002) -> np.ndarray:
    """Synthetic one-factor log prices: r = beta f + idiosyncratic noise (avg. correlation ~0.5)."""
    rng = np.random.default_rng(seed)
    beta = rng.uniform(0.5, 1.5, N)
    idio = rng.uniform(0.001, 0.003, N)
    r = rng.standard_normal(T)[:, None] * market * beta + rng.standard_normal((T, N)) * idio
    r[0] = 0.0
    return 100.0 * np.exp(np.cumsum(r, axis=0))


def ref_corr(X: np.ndarray) -> np.ndarray:
    """np.corrcoef of the (W, N) window with the zero-variance rule: a constant asset is uncorrelated."""
    N = X.shape[1]
    keep = (X != 0).any(axis=0)
    C = np.eye(N)
    if keep.sum() >= 2:
        C[np.ix_(keep, keep)] = np.corrcoef(X[:, keep], rowvar=False)
    return C


def ref_top(X: np.ndarray):
    """(lambda_1, sign-fixed u_1, lambda_2) by a full LAPACK eigh of the reference correlation."""
    w, V = np.linalg.eigh(ref_corr(X))
    u = V[:, -1]
    if u.sum() < 0:
        u = -u
    return w[-1], u, w[-2]


def check_against_reference(res, close: np.ndarray, first_bar: int, *, rows=None, rel=1e-9, vec=1e-7):
    """Compare scan rows with the dense reference. ``res`` row k is bar ``first_bar + k`` of ``close``.

    lambda: relative 1e-9 everywhere; velocity: 1e-9 * lambda; loadings (1e-7) and instability (1e-7)
    where the reference gap (lambda_1 - lambda_2)/lambda_1 >= 1e-3 (else the eigenvector is not
    determined to that accuracy by any method). Returns the number of (bar, window) values checked.
    """
    from dolphin.scanner.blas import single_threaded

    with single_threaded():  # the reference's eigh: no spinning BLAS threads on a busy machine
        return _check(res, close, first_bar, rows, rel, vec)


def _check(res, close, first_bar, rows, rel, vec):
    r = np.log(close[1:] / close[:-1])  # r[t-1] = log(c_t / c_{t-1})
    rows = range(len(res)) if rows is None else rows
    checked = 0
    for k, W in enumerate(res.windows):
        prev = None
        for i in rows:
            t = first_bar + i
            if t < W:
                assert not res.valid[i, k] and np.isnan(res.lam[i, k]), (t, W)
                prev = None
                continue
            assert res.valid[i, k], (t, W)
            lam, u, lam2 = ref_top(r[t - W:t])
            got = res.lam[i, k]
            assert abs(got - lam) <= rel * lam, f"w{W} bar {t}: lambda {got!r} vs eigh {lam!r}"
            sep = (lam - lam2) / lam >= 1e-3
            if sep:
                err = np.abs(res.loadings[i, k] - u).max()
                assert err <= vec, f"w{W} bar {t}: loadings off by {err:.2e}"
            if t >= W + 1:
                if prev is None or prev[0] != t - 1:
                    lp, up, l2p = ref_top(r[t - 1 - W:t - 1])
                else:
                    _, lp, up, l2p = prev
                v = res.velocity[i, k]
                assert abs(v - (lam - lp)) <= rel * lam, f"w{W} bar {t}: velocity {v!r} vs {lam - lp!r}"
                if sep and (lp - l2p) / lp >= 1e-3:
                    inst = 1.0 - abs(u @ up)
                    assert abs(res.instability[i, k] - inst) <= vec, f"w{W} bar {t}: instability"
            else:
                assert np.isnan(res.velocity[i, k]) and np.isnan(res.instability[i, k])
            prev = (t, lam, u, lam2)
            checked += 1
    return checked


def day_start(ms: int) -> int:
    return (int(ms) // DAY_MS) * DAY_MS


def write_one_factor_set(folder, days: int = 3, seed: int = 9, symbols=("AAAUSDT", "BBBUSDT", "CCCUSDT")) -> None:
    """A synthetic (one-factor model) 5m candle set as one Parquet file per symbol, from T0, for CLI tests."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = days * 288
    close = one_factor_close(n, len(symbols), seed=seed)
    ot = pa.array(T0 + np.arange(n, dtype=np.int64) * 300_000).cast(pa.timestamp("ms", tz="UTC"))
    for i, sym in enumerate(symbols):
        c = close[:, i]
        pq.write_table(pa.table({"open_time": ot, "open": c, "high": c, "low": c, "close": c,
                                 "volume": np.ones_like(c)}), f"{folder}/{sym}.parquet")
