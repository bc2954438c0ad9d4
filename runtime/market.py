"""Market state of ``DolphinStrategy``: the live scanner, the vol regime and the ranking buffers.

One ``step`` per assembled bar set does what the batch scanner, ``dolphin.engine.regime.vol_regime``
and the kernel's ranking lookback do over a whole panel, bar by bar and bit-identically:

- scan: ``dolphin.scanner.LiveScanner`` (same kernels, same UTC-day anchoring as the batch scanner);
- vol regime: the numba ``market_returns``, ``rolling_std`` and ``_interp_pct`` on rolling buffers
  (causal: the percentile is over strictly past bars);
- ranking: the last ``rank_lookback + 1`` closes, tradable flags and eigen-loadings for ``rank_asset``.

No Nautilus here: numbers in, numbers out.
"""

import math
from collections import deque

import numpy as np

from dolphin.engine import kernel as K
from dolphin.engine.regime import _interp_pct, market_returns, rolling_std, vol_regime
from dolphin.scanner import LiveScanner


class MarketState:
    def __init__(self, symbols: list, bar_ms: int, cfg, p, exf="recorded"):
        """``exf``: ExF history for GREEN's capital arbiter (``daily_frame``); "recorded" = the recorded files
        (``ExfHistory.load()``, none found: stress 0), None = stress 0. Unused unless both GREEN legs trade."""
        self.symbols = list(symbols)
        self.N = len(self.symbols)
        self.bar_ms = int(bar_ms)
        self.cfg = cfg
        self.p = p
        self._rank_w = cfg.rank_window
        self.last_close = np.full(self.N, np.nan)  # the previous bar set's closes (forward-fill source)
        self.exf = exf
        self.reset()

    def reset(self) -> None:
        """Cold scanner, regime and ranking buffers: no entries until they are warm again."""
        N = self.N
        self.scanner = LiveScanner(self.symbols, self.bar_ms)
        self._w_idx = self.scanner.windows.index(self._rank_w)
        self.vd_prev = np.nan
        self._m_ring = np.full(self.cfg.vol_window, np.nan)
        self._vol_hist = deque()
        self._vol_sorted = np.empty(self.cfg.vol_lookback + 1)  # insert before evict
        self._n_sorted = 0
        self._n_nonfinite = 0
        lb = self.cfg.rank_lookback + 1
        self._rk_close = np.full((lb, N), np.nan)
        self._rk_trad = np.zeros((lb, N), np.bool_)
        self._rk_load = np.full((lb, N), np.nan)
        self._rk_flow = np.zeros((lb, N))  # order-book flow: neutral until a live OB feed exists
        self._rk_rows = 0
        self._two = np.empty((2, N))
        self.last_close[:] = np.nan
        self.arbiter = None
        if self.cfg.arbitrated:  # GREEN with both legs: each entry sized by its leg's weight of the day
            from runtime.arbiter import LiveArbiter

            if isinstance(self.exf, str):
                from dolphin.exf.history import ExfHistory

                try:
                    self.exf = ExfHistory.load()
                except (FileNotFoundError, OSError, ValueError):
                    self.exf = None
            self.arbiter = LiveArbiter(self.cfg, self.symbols, self.exf)

    def leg_weight(self, side: int) -> float:
        """The capital arbiter's weight of the leg ``side`` trades (1.0 unless both GREEN legs trade)."""
        return 1.0 if self.arbiter is None else self.arbiter.weight(side)

    def precompile(self) -> None:
        """Load the njit decision functions now (from numba's cache, or compile them) with the exact
        argument types used per bar, so the first signal of a session does not pay for it."""
        p, lb = self.p, self._rk_close.shape[0]
        K.signal_side(p, np.nan, np.nan)
        K.signal_leverage(p, -1, 0.0, 0, 1.0, 1.0)
        K.entry_allowed(p, False, 0, 0)
        K.decide_exit(p, 1, 0, 0, 1.0, 0, 1.0)
        z = np.ones((lb, self.N))
        K.rank_asset(p, -1, lb - 1, z, np.zeros((lb, self.N), np.bool_), z, z)
        market_returns(np.ones((2, self.N)))
        rolling_std(np.zeros(self.cfg.vol_window), self.cfg.vol_window)
        _interp_pct(np.zeros(2), 2, 50.0)

    def warm_up(self, hist) -> int | None:
        """Warm every buffer from a ``dolphin.data.Panel``; return the last history bar's close ms."""
        if list(hist.symbols) != self.symbols or int(hist.bar_ms) != self.bar_ms:
            raise ValueError("history must have the strategy's symbols (same order) and bar length")
        n = hist.n_bars
        if n == 0:
            return None
        if n >= 2:
            self.scanner = LiveScanner.from_panel(hist, upto_ms=int(hist.open_time[-2]))
        row = self.scanner.push(int(hist.open_time[-1]), hist.close[-1])
        self.vd_prev = float(row.vel_div[0]) / self.N
        cfg = self.cfg
        reg = vol_regime(hist.close, cfg.vol_window, cfg.vol_lookback, cfg.vol_percentile)
        m = reg.market_return[-cfg.vol_window:]
        self._m_ring[-len(m):] = m
        for v in reg.realised_vol[-cfg.vol_lookback:]:
            self._push_vol(float(v))
        L = self._rk_close.shape[0]
        k = min(L, n)
        self._rk_close[L - k:] = hist.close[n - k:]
        self._rk_trad[L - k:] = ~(hist.filled[n - k:] | hist.excluded[n - k:])
        self._rk_rows = k
        self.last_close[:] = hist.close[-1]
        if self.arbiter is not None:  # the arbiter's window: vel_div and trend of the last history bars
            from dolphin.scanner import scan

            # every history bar (cheap): the day rolls see the same windows as the batch arbiter on the panel
            vd_hist = scan(hist, int(hist.open_time[0]), None).vel_div / self.N
            trad = ~(hist.filled | hist.excluded)
            for r in range(n):
                self.arbiter.push(int(hist.close_time[r]), float(vd_hist[r]), hist.close[r], trad[r])
        return int(hist.open_time[-1]) + self.bar_ms

    def step(self, open_ms: int, close: np.ndarray, tradable: np.ndarray, scan_sink=None):
        """Push one complete bar set; return ``(vd_prev, vd, vol_ok)`` (vel_div / N before and now).
        ``scan_sink``: optional ``write(row)`` called with the scan row as soon as it exists."""
        row = self.scanner.push(open_ms, close)
        if scan_sink is not None: scan_sink.write(row)  # noqa: E701 (queued, off the decision path)
        vd = float(row.vel_div[0]) / self.N
        loadings = row.loadings[0, self._w_idx]
        vol_ok = self._regime_step(close)
        self._rk_close[:-1] = self._rk_close[1:]
        self._rk_trad[:-1] = self._rk_trad[1:]
        self._rk_load[:-1] = self._rk_load[1:]
        self._rk_close[-1] = close
        self._rk_trad[-1] = tradable
        self._rk_load[-1] = loadings
        self._rk_rows = min(self._rk_rows + 1, self._rk_close.shape[0])
        self.last_close[:] = close
        vd_prev, self.vd_prev = self.vd_prev, vd
        if self.arbiter is not None:
            self.arbiter.push(open_ms + self.bar_ms, vd, close, tradable)
        return vd_prev, vd, vol_ok

    def rank(self, side: int) -> int:
        """The kernel's ``rank_asset`` over the ranking lookback (-1: none)."""
        n = self._rk_rows
        return K.rank_asset(self.p, side, n - 1, self._rk_close[-n:], self._rk_trad[-n:], self._rk_load[-n:],
                            self._rk_flow[-n:])

    def _regime_step(self, close: np.ndarray) -> bool:
        self._two[0] = self.last_close
        self._two[1] = close
        m = market_returns(self._two)[1] if not np.isnan(self._two[0]).any() else np.nan
        self._m_ring[:-1] = self._m_ring[1:]
        self._m_ring[-1] = m
        vol = rolling_std(self._m_ring, self.cfg.vol_window)[-1]
        L = self.cfg.vol_lookback
        if len(self._vol_hist) == L and self._n_nonfinite == 0:
            thr = _interp_pct(self._vol_sorted, L, float(self.cfg.vol_percentile))
        else:
            thr = np.nan
        self._push_vol(float(vol))
        return bool(np.isfinite(vol) and np.isfinite(thr) and vol > thr)

    def _push_vol(self, v: float) -> None:
        """Keep the last vol_lookback realised vols and the finite ones sorted (the batch percentile's
        window, as a multiset: same sorted values, so the same interpolated percentile bits)."""
        buf = self._vol_sorted
        self._vol_hist.append(v)
        if math.isfinite(v):
            n = self._n_sorted
            j = int(np.searchsorted(buf[:n], v))
            buf[j + 1:n + 1] = buf[j:n].copy()
            buf[j] = v
            self._n_sorted = n + 1
        else:
            self._n_nonfinite += 1
        if len(self._vol_hist) > self.cfg.vol_lookback:
            old = self._vol_hist.popleft()
            if math.isfinite(old):
                n = self._n_sorted
                k = int(np.searchsorted(buf[:n], old))
                buf[k:n - 1] = buf[k + 1:n].copy()
                self._n_sorted = n - 1
            else:
                self._n_nonfinite -= 1
