"""The replayed market: recorded candles and funding on one bar grid, a venue clock, symbol filters
derived from the data, and the synthetic order book.

Clock: ``cur`` is the index of the last CLOSED bar. The venue time is that bar's close (= the next bar's
open), plus the elapsed fraction of the current tick scaled onto the bar (never reaching the next close),
so nothing after ``cur`` is ever served: REST klines, depth, mark prices and the streams only show bars
``<= cur``. One tick closes bar ``cur + 1``.

Synthetic depth (no order-book history exists here; every depth payload carries ``"synthetic": true``):
around the last close c of a bar with range r = high - low, with tick size k, and v the mean base volume of the
last ``DEPTH_VOLUME_BARS`` (12) bars up to it (a real book's depth persists; one bar's volume swings 2-5x from bar
to bar, which made the synthetic book's depth quality, its depth against its own recent normal, swing with it),
  spread     S  = max(k, ceil_k(0.10 * r))             best bid = floor_k(c - S/2), best ask = best bid + S
  level step d  = max(k, ceil_k(0.05 * r))             bid_i = best bid - i*d, ask_i = best ask + i*d
  level size q_i = max(step, round_step(0.01 * v * (1 + i)))   (i = 0, 1, ...)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from dolphin.data.contracts import DataError
from dolphin.data.loader import load_panel
from dolphin.engine.funding import find_funding_dir, funding_grid
from dolphin.paths import resolve_kline_set
from dolphin.timeutil import DAY_MS, bar_label, fmt_ms

DEFAULT_SET = "usdtm-5m-2023"
MIN_NOTIONAL = 5.0  # USDT, Binance's value for most USD-M perpetuals (100 for BTC/ETH there)
DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
DEPTH_VOLUME_BARS = 12  # the synthetic ladder's sizes follow the mean volume of this many bars (1 h at 5m)


def _decimals(values: np.ndarray, cap: int = 8) -> int:
    """Smallest number of decimals that represents every value (the data's own precision)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 2
    v = v[:: max(1, v.size // 4000)]
    for d in range(cap + 1):
        s = v * 10.0 ** d
        if np.all(np.abs(s - np.round(s)) < 1e-6 * np.maximum(1.0, np.abs(s)) + 1e-9):
            return d
    return cap


@dataclass(frozen=True)
class SymbolSpec:
    symbol: str
    base: str
    price_decimals: int
    qty_decimals: int
    onboard_ms: int

    @property
    def tick(self) -> float:
        return 10.0 ** -self.price_decimals

    @property
    def step(self) -> float:
        return 10.0 ** -self.qty_decimals

    def px(self, x: float) -> str:
        return f"{x:.{self.price_decimals}f}"

    def qty(self, x: float) -> str:
        return f"{x:.{self.qty_decimals}f}"


class Market:
    """Candles of one data set, replayed bar by bar."""

    def __init__(self, data: str = DEFAULT_SET, *, start_ms: int | None = None, days: float | None = None,
                 symbols=None, history_bars: int = 1500):
        self.path = Path(resolve_kline_set(data))
        self.name = self.path.name
        probe = load_panel(self.path, symbols=symbols, start_ms=None, end_ms=None) if start_ms is None else None
        if start_ms is None:  # first whole UTC day of the set
            t0 = int(probe.open_time[0])
            start_ms = t0 if t0 % DAY_MS == 0 else (t0 // DAY_MS + 1) * DAY_MS
        end_ms = None if days is None else int(start_ms + days * DAY_MS) - 1
        panel = load_panel(self.path, symbols=symbols, start_ms=start_ms, end_ms=end_ms,
                           warmup_bars=history_bars)
        if panel.n_bars <= panel.warmup_bars:
            raise DataError(f"{self.path}: no bars from {fmt_ms(start_ms)}")
        self.panel = panel
        self.symbols: list[str] = list(panel.symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.bar_ms = int(panel.bar_ms)
        self.interval = bar_label(self.bar_ms)
        self.open_time = panel.open_time.astype(np.int64)
        self.open, self.high, self.low = panel.open, panel.high, panel.low
        self.close, self.volume = panel.close, panel.volume
        self.start_index = int(panel.warmup_bars)
        self.cur = self.start_index - 1  # last closed bar: the clock starts at the first replay bar's open
        self.funding_dir = find_funding_dir(self.path)
        if self.funding_dir is not None:
            self.funding, _ = funding_grid(self.funding_dir, self.symbols, self.open_time, self.bar_ms)
        else:
            self.funding = np.zeros_like(self.close)
        self._funding_hist: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.specs = {s: self._spec(s, j) for s, j in self.index.items()}

    def _spec(self, sym: str, j: int) -> SymbolSpec:
        prices = np.concatenate([self.open[:, j], self.high[:, j], self.low[:, j], self.close[:, j]])
        base = sym[:-4] if sym.endswith("USDT") else sym
        return SymbolSpec(sym, base, _decimals(prices), _decimals(self.volume[:, j], cap=3),
                          int(self.open_time[0]))

    # ------------------------------------------------------------------ clock
    @property
    def n_bars(self) -> int:
        return int(self.open_time.shape[0])

    @property
    def finished(self) -> bool:
        return self.cur + 1 >= self.n_bars

    def bar_close_ms(self, j: int) -> int:
        """Binance's kline close time (open + interval - 1 ms)."""
        return int(self.open_time[j]) + self.bar_ms - 1

    def clock_ms(self, fraction: float = 0.0) -> int:
        """Venue time: the open of the bar in progress plus ``fraction`` of it (< the bar's close)."""
        base = int(self.open_time[self.cur]) + self.bar_ms
        return base + int(min(max(fraction, 0.0), 0.999) * (self.bar_ms - 1))

    def next_open(self, j: int) -> float | None:
        """The open of the bar in progress (the next trade), None at the end of the data."""
        return None if self.finished else float(self.open[self.cur + 1, j])

    # ------------------------------------------------------------------ payloads
    def spec(self, sym: str) -> SymbolSpec:
        return self.specs[sym]

    def kline_row(self, sym: str, t: int) -> list:
        j, s = self.index[sym], self.specs[sym]
        o, h, l, c, v = (float(a[t, j]) for a in (self.open, self.high, self.low, self.close, self.volume))
        quote = v * (o + h + l + c) / 4.0  # no quote volume recorded: base volume x mean OHLC price
        return [int(self.open_time[t]), s.px(o), s.px(h), s.px(l), s.px(c), s.qty(v), self.bar_close_ms(t),
                f"{quote:.4f}", 0, "0", "0", "0"]

    def klines(self, sym: str, start: int | None, end: int | None, limit: int) -> list[list]:
        """Closed bars only (<= cur), Binance's paging: from startTime forward, else the latest ``limit``."""
        last = self.cur
        if last < 0:
            return []
        ot = self.open_time[: last + 1]
        lo = 0 if start is None else int(np.searchsorted(ot, start, "left"))
        hi = last + 1 if end is None else int(np.searchsorted(ot, end, "right"))
        if hi <= lo:
            return []
        rows = range(lo, min(hi, lo + limit)) if start is not None else range(max(lo, hi - limit), hi)
        return [self.kline_row(sym, t) for t in rows]

    def kline_event(self, sym: str, t: int, event_ms: int) -> dict:
        row = self.kline_row(sym, t)
        return {"e": "kline", "E": event_ms, "s": sym, "k": {
            "t": row[0], "T": row[6], "s": sym, "i": self.interval, "f": t * 1000, "L": t * 1000,
            "o": row[1], "c": row[4], "h": row[2], "l": row[3], "v": row[5], "n": 0, "x": True,
            "q": row[7], "V": "0", "Q": "0", "B": "0"}}

    def book(self, sym: str, levels: int) -> tuple[list, list]:
        """The synthetic ladder (module docstring) around the last closed bar."""
        j, s = self.index[sym], self.specs[sym]
        t = max(self.cur, 0)
        c, r = float(self.close[t, j]), float(self.high[t, j] - self.low[t, j])
        v = float(self.volume[max(0, t - DEPTH_VOLUME_BARS + 1): t + 1, j].mean())
        k = s.tick

        def ceil_k(x):
            return math.ceil(round(x / k, 6)) * k

        spread = max(k, ceil_k(0.10 * r))
        d = max(k, ceil_k(0.05 * r))
        bid = math.floor(round((c - spread / 2) / k, 6)) * k
        ask = bid + spread
        bids, asks = [], []
        for i in range(levels):
            q = max(s.step, round(0.01 * v * (1 + i) / s.step) * s.step)
            if bid - i * d > 0:
                bids.append([s.px(bid - i * d), s.qty(q)])
            asks.append([s.px(ask + i * d), s.qty(q)])
        return bids, asks

    def funding_history(self, sym: str) -> tuple[np.ndarray, np.ndarray]:
        if sym not in self._funding_hist:
            f = None if self.funding_dir is None else self.funding_dir / f"{sym}.parquet"
            if f is None or not f.exists():
                self._funding_hist[sym] = (np.zeros(0, np.int64), np.zeros(0))
            else:
                tab = pq.read_table(f, columns=["funding_time", "funding_rate"])
                self._funding_hist[sym] = (tab.column("funding_time").cast("int64").to_numpy(),
                                           tab.column("funding_rate").to_numpy(zero_copy_only=False).astype(float))
        return self._funding_hist[sym]

    def next_funding(self, sym: str, now_ms: int) -> tuple[int, float]:
        """(next funding time, its recorded rate); the next 8h boundary and 0 when none is recorded."""
        ft, fr = self.funding_history(sym)
        i = int(np.searchsorted(ft, now_ms, "right"))
        if i < ft.size:
            return int(ft[i]), float(fr[i])
        return (now_ms // (8 * 3_600_000) + 1) * 8 * 3_600_000, 0.0

    def describe(self) -> str:
        first, last = self.start_index, self.n_bars - 1
        return (f"{self.name} ({self.path}): {len(self.symbols)} symbols, {self.interval} bars, replay "
                f"{fmt_ms(self.open_time[first])} .. {fmt_ms(self.open_time[last])} UTC "
                f"({last - first + 1} bars, {self.start_index} bars of history before), funding "
                f"{'from ' + str(self.funding_dir) if self.funding_dir else 'none recorded'}")
