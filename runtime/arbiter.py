"""The capital arbiter inside the runtime: ``dolphin.engine.arbiter``'s rule, bar by bar.

``LiveArbiter.push`` is called with every bar set (history warm-up, live bars, backfilled gaps) and keeps the
last ``arbiter_trend_bars`` values of vel_div/N and of the trend series (BTCUSDT's log return, or the
equal-weight market's without BTCUSDT). When a bar set closes in a new UTC day, the day's weights are computed
from the bars closed by that day's 00:00 (inclusive) and the ExF stress as of 00:00, exactly as the batch
``arbiter_weights`` does for the backtest; every entry of that day is sized with them. No Nautilus here.
"""

import math
from collections import deque

import numpy as np

from dolphin.engine.arbiter import _exf_stress
from dolphin.timeutil import DAY_MS


class LiveArbiter:
    def __init__(self, cfg, symbols: list, exf=None):
        self.mode = cfg.arbiter
        self.L = int(cfg.arbiter_trend_bars)
        self.tilt = float(cfg.arbiter_tilt)
        self.btc = list(symbols).index("BTCUSDT") if "BTCUSDT" in symbols else -1
        self.exf = exf
        self._vd = deque(maxlen=self.L)
        self._lr = deque(maxlen=self.L)
        self._prev_close = None
        self._prev_trad = None
        self.day = None
        self.w_short, self.w_long = 0.5, 0.5
        self.components = {"s_vd": 0.0, "s_btc": 0.0, "stress": 0.0, "score": 0.0}

    def weight(self, side: int) -> float:
        return self.w_short if side < 0 else self.w_long

    def push(self, close_ms: int, vd: float, close: np.ndarray, tradable: np.ndarray) -> None:
        day = (int(close_ms) // DAY_MS) * DAY_MS
        new_day = day != self.day
        if new_day and close_ms != day:  # the day's 00:00 bar is missing: weights from the bars before this one
            self._roll(day)
        self._vd.append(float(vd))
        self._lr.append(self._log_return(close, tradable))
        if new_day and close_ms == day:  # this bar closed at 00:00: it is the last bar the day's weights see
            self._roll(day)

    def _log_return(self, close, tradable) -> float:
        prev, ptrad = self._prev_close, self._prev_trad
        self._prev_close, self._prev_trad = np.array(close, dtype=np.float64), np.array(tradable, dtype=bool)
        if prev is None:
            return math.nan
        if self.btc >= 0:
            return float(np.log(close[self.btc]) - np.log(prev[self.btc]))
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.log(np.asarray(close, np.float64) / prev)
        r = r[np.asarray(tradable, bool) & ptrad & np.isfinite(r)]
        return float(r.mean()) if r.size else math.nan

    def _roll(self, day: int) -> None:
        self.day = day
        if self.mode == "equal_weight":
            self.w_short = self.w_long = 0.5
            return
        s_vd = s_btc = 0.0
        if len(self._vd) >= 2:
            w = np.asarray(self._vd)
            w = w[np.isfinite(w)]
            den = np.abs(w).sum()
            s_vd = float(w.sum() / den) if den > 0 else 0.0
            r = np.asarray(self._lr)[1:]  # the return INTO the window's first bar is not in the window
            r = r[np.isfinite(r)]
            if len(r) >= 2:
                sd = r.std()
                s_btc = float(np.tanh(r.sum() / (sd * np.sqrt(len(r))))) if sd > 0 else 0.0
        stress = float(_exf_stress(self.exf, np.array([day], np.int64))[0][0])
        score = (s_vd + s_btc - stress) / 3.0
        self.w_long = 0.5 + self.tilt * score
        self.w_short = 1.0 - self.w_long
        self.components = {"s_vd": s_vd, "s_btc": s_btc, "stress": stress, "score": score}
