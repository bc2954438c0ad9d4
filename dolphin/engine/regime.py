"""Vol regime gate: realised vol of the equal-weight market return vs its rolling percentile.

Causal by construction: ``vol[t]`` uses returns up to bar t; the percentile at t is taken over
``vol[t-lookback .. t-1]`` (strictly the past). Until a full lookback of past values exists the
regime is not OK (no entries during warm-up).
"""

from dataclasses import dataclass

import numpy as np
from numba import njit


@njit(cache=True)
def market_returns(close):
    T, N = close.shape
    m = np.full(T, np.nan)
    for t in range(1, T):
        s = 0.0
        for i in range(N):
            s += np.log(close[t, i] / close[t - 1, i])
        m[t] = s / N
    return m


@njit(cache=True)
def rolling_std(x, w):
    """Sample std over the last w values (NaN unless all w are finite). Two-pass per window: exact,
    and O(w) per bar is negligible for the windows used here."""
    T = x.shape[0]
    out = np.full(T, np.nan)
    for t in range(T):
        if t - w + 1 < 0:
            continue
        s = 0.0
        s2 = 0.0
        ok = True
        for j in range(t - w + 1, t + 1):
            v = x[j]
            if not np.isfinite(v):
                ok = False
                break
            s += v
        if not ok:
            continue
        mu = s / w
        for j in range(t - w + 1, t + 1):
            d = x[j] - mu
            s2 += d * d
        out[t] = np.sqrt(s2 / (w - 1))
    return out


@njit(cache=True)
def _interp_pct(buf, n, q):
    # numpy's default 'linear' percentile on a sorted buffer of n values
    pos = q / 100.0 * (n - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return buf[lo] + (buf[hi] - buf[lo]) * frac


@njit(cache=True)
def rolling_past_percentile(x, lookback, q):
    """pct[t] = percentile q of x[t-lookback .. t-1]; NaN until that window is full of finite values."""
    T = x.shape[0]
    out = np.full(T, np.nan)
    buf = np.empty(lookback + 1)
    n = 0
    run_start = 0  # first index of the current run of finite values
    for t in range(T):
        # window x[t-lookback .. t-1] must be fully finite
        if t >= 1:
            v = x[t - 1]
            if not np.isfinite(v):
                n = 0
                run_start = t
            else:
                # insert v keeping buf[:n] sorted
                j = np.searchsorted(buf[:n], v)
                buf[j + 1:n + 1] = buf[j:n].copy()
                buf[j] = v
                n += 1
                if n > lookback:
                    old = x[t - 1 - lookback]
                    k = np.searchsorted(buf[:n], old)
                    buf[k:n - 1] = buf[k + 1:n].copy()
                    n -= 1
        if n == lookback and t - run_start >= lookback:
            out[t] = _interp_pct(buf, n, q)
    return out


@dataclass
class VolRegime:
    market_return: np.ndarray  # (T,)
    realised_vol: np.ndarray  # (T,)
    threshold: np.ndarray  # (T,) rolling past percentile
    ok: np.ndarray  # (T,) bool

    def latest(self) -> dict:
        """The newest value, as published to the feature store (``vol_regime``)."""
        return {"current_vol": float(self.realised_vol[-1]), "vol_p60": float(self.threshold[-1]),
                "regime_ok": bool(self.ok[-1])}


def vol_regime(close: np.ndarray, window: int, lookback: int, percentile: float) -> VolRegime:
    m = market_returns(np.ascontiguousarray(close, dtype=np.float64))
    vol = rolling_std(m, window)
    thr = rolling_past_percentile(vol, lookback, float(percentile))
    ok = np.isfinite(vol) & np.isfinite(thr) & (vol > thr)
    return VolRegime(m, vol, thr, ok)
