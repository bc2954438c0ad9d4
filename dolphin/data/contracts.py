"""Data contracts shared by every reader, the aligner and the scanner.

All timestamps are int64 milliseconds since the Unix epoch, UTC, and mark the bar OPEN.
A bar's close time is ``open_time + bar_ms``.
"""

from dataclasses import dataclass, field

import numpy as np


class DataError(ValueError):
    """Bad market data input. The message names the file / symbol / timestamp at fault."""


@dataclass(frozen=True)
class Candles:
    """Raw candles of one symbol as read from a source (not yet aligned or cleaned)."""

    symbol: str
    open_time: np.ndarray  # int64 ms, bar open, UTC
    open: np.ndarray  # float64
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    source: str = ""  # file (or URL) the rows came from, for error messages

    def __len__(self) -> int:
        return int(self.open_time.shape[0])


@dataclass(frozen=True)
class DataIssue:
    """One reported data problem and the rule applied to it. Never silent."""

    rule: str  # e.g. missing_bars, duplicate, out_of_order, bad_price, late_start, delisted, dropped_asset_day, mixed_interval
    symbol: str
    count: int  # number of affected rows / bars
    timestamps: tuple = ()  # affected bar-open times (ms); may be a prefix of all of them (see count)
    action: str = ""  # what was done, in words
    source: str = ""

    def describe(self) -> str:
        from dolphin.timeutil import fmt_ms

        ts = ", ".join(fmt_ms(t) for t in self.timestamps[:5])
        more = f" (+{self.count - len(self.timestamps[:5])} more)" if self.count > len(self.timestamps[:5]) else ""
        where = f" in {self.source}" if self.source else ""
        return f"[{self.rule}] {self.symbol}{where}: {self.count} bar(s) {ts}{more} -> {self.action}"


@dataclass
class Panel:
    """N assets aligned on one UTC bar grid.

    Arrays are (T, N), C-contiguous, float64; every cell holds a finite positive price for the
    ``close`` column (gaps are forward-filled and flagged in ``filled``). ``excluded`` marks
    asset-bars that must not be traded (asset dropped for that UTC day by the missing-fraction rule).
    """

    symbols: list
    bar_ms: int
    open_time: np.ndarray  # (T,) int64 ms, strictly increasing by bar_ms
    open: np.ndarray  # (T, N)
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    filled: np.ndarray  # (T, N) bool: price forward-filled (no real bar)
    excluded: np.ndarray  # (T, N) bool: asset-day dropped from trading
    issues: list = field(default_factory=list)  # list[DataIssue]

    @property
    def n_bars(self) -> int:
        return int(self.open_time.shape[0])

    @property
    def n_assets(self) -> int:
        return len(self.symbols)

    @property
    def close_time(self) -> np.ndarray:
        return self.open_time + self.bar_ms

    def slice_bars(self, start: int, stop: int) -> "Panel":
        return Panel(
            symbols=list(self.symbols),
            bar_ms=self.bar_ms,
            open_time=self.open_time[start:stop],
            open=self.open[start:stop],
            high=self.high[start:stop],
            low=self.low[start:stop],
            close=self.close[start:stop],
            volume=self.volume[start:stop],
            filled=self.filled[start:stop],
            excluded=self.excluded[start:stop],
            issues=list(self.issues),
        )
