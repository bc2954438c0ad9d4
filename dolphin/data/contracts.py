"""Data contracts shared by every reader, the aligner and the scanner.

All timestamps are int64 milliseconds since the Unix epoch, UTC, and mark the bar OPEN.
A bar's close time is ``open_time + bar_ms``.
"""

from dataclasses import dataclass, field
from typing import Optional

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
    # When the rows were concatenated from several files: the files, and per row the index into them.
    files: tuple = ()
    file_index: Optional[np.ndarray] = None  # (n,) int32 or None

    def __len__(self) -> int:
        return int(self.open_time.shape[0])

    def sources_of(self, rows, limit: int = 3) -> str:
        """The file(s) the given row indices came from, for messages (falls back to ``source``)."""
        if self.file_index is None or not self.files:
            return self.source
        rows = np.asarray(rows)
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
        idx = np.unique(np.asarray(self.file_index)[rows])
        names = [str(self.files[i]) for i in idx[:limit]]
        more = f" (+{len(idx) - limit} more files)" if len(idx) > limit else ""
        return ", ".join(names) + more


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
        shown = len(self.timestamps[:5])
        more = f" (+{self.count - shown} more)" if self.timestamps and self.count > shown else ""
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
    # Leading bars that precede the requested start (load_panel(warmup_bars=...)); trading starts at this row.
    warmup_bars: int = 0
    source: str = ""  # the candle set / folder the panel was read from (load_panel), for messages

    def require_assets(self, n: int, what: str) -> None:
        """DataError naming the input and the assets dropped (and why) when fewer than ``n`` assets are left."""
        if self.n_assets >= n:
            return
        dropped = [f"{i.symbol}: {i.rule} ({i.action})" for i in self.issues
                   if i.symbol != "*" and i.symbol not in self.symbols and i.action.startswith("dropped")]
        kept = ", ".join(self.symbols) or "none"
        why = ("; dropped: " + "; ".join(dropped[:10]) + (f" (+{len(dropped) - 10} more)" if len(dropped) > 10 else "")
               if dropped else "; no asset was dropped: the input holds only these")
        raise DataError(f"{what} needs at least {n} assets; {self.source or 'the input'} leaves {self.n_assets} "
                        f"({kept}){why}")

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
        rows = range(self.n_bars)[start:stop]
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
            warmup_bars=max(0, min(rows.stop, self.warmup_bars) - rows.start),
            source=self.source,
        )
