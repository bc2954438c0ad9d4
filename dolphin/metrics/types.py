"""Input contracts and the UTC-day convention shared by every metric.

Trades: one row per closed trade (the engine's trade frame; extra columns are ignored):

    entry_time, exit_time   int64 ms UTC
    asset                   str
    side                    +1 long / -1 short
    notional                USDT at entry
    leverage, entry_price, exit_price
    fees                    USDT, all fees of the trade (entry + exit)
    funding                 USDT paid, positive = cost
    pnl                     net USDT after fees, funding and slippage
    exit_reason             str
    capital_before          capital when the trade was entered

Equity: ``ts`` (int64 ms bar CLOSE times, strictly increasing) and ``equity`` (mark-to-market capital at
each close), plus ``initial_capital`` (capital before the first bar).

Day convention: an instant ``t`` belongs to the UTC day of ``t - 1 ms``, i.e. days are the intervals
(00:00, 24:00]. Bar close times are ``open_time + bar_ms``, so the last bar of a day (23:55-00:00) closes
at 00:00 of the next day; this rule keeps it -- and a trade exit stamped at that instant -- in the day the
bar belongs to, so a day's end equity is the midnight mark. With 1d bars each bar is its own day.
"""

from dataclasses import dataclass
from datetime import date, datetime, timezone

import numpy as np
import pandas as pd

from dolphin.timeutil import DAY_MS

TRADE_COLUMNS = ("entry_time", "exit_time", "asset", "side", "notional", "leverage", "entry_price",
                 "exit_price", "fees", "funding", "pnl", "exit_reason", "capital_before")
# the columns the metrics actually read; the rest are part of the contract but optional here
REQUIRED_TRADE_COLUMNS = ("entry_time", "exit_time", "side", "fees", "funding", "pnl")


def utc_day(ms) -> np.ndarray:
    """Midnight (ms) of the UTC day each instant belongs to, days being (00:00, 24:00]."""
    return ((np.asarray(ms, dtype=np.int64) - 1) // DAY_MS) * DAY_MS


def day_to_ms(d) -> int:
    """'YYYY-MM-DD', date, datetime/Timestamp (date part, UTC) or midnight ms -> midnight ms."""
    if isinstance(d, (int, np.integer)):
        if int(d) % DAY_MS:
            raise ValueError(f"{d} ms is not a UTC midnight")
        return int(d)
    if isinstance(d, str):
        d = date.fromisoformat(d.strip()[:10])
    if isinstance(d, pd.Timestamp):
        d = (d.tz_convert("UTC") if d.tzinfo else d).date()
    elif isinstance(d, datetime):
        d = (d.astimezone(timezone.utc) if d.tzinfo else d).date()
    if isinstance(d, date):
        return int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp() * 1000)
    raise TypeError(f"cannot read a UTC day from {d!r}")


def day_label(day_ms) -> str:
    return datetime.fromtimestamp(int(day_ms) / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


def empty_trades() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("entry_time", "exit_time", "side") else
                                      object if c in ("asset", "exit_reason") else "float64")
                         for c in TRADE_COLUMNS})


def check_trades(trades: pd.DataFrame | None) -> pd.DataFrame:
    """The trade frame, or an empty one for None / an empty frame without columns. A non-empty frame
    missing a column the metrics need is an error (named), never guessed."""
    if trades is None or (len(trades) == 0 and not set(REQUIRED_TRADE_COLUMNS) <= set(trades.columns)):
        return empty_trades()
    missing = [c for c in REQUIRED_TRADE_COLUMNS if c not in trades.columns]
    if missing:
        raise ValueError(f"trades frame lacks column(s) {', '.join(missing)}")
    return trades


@dataclass(frozen=True)
class EquityCurve:
    """Per-bar mark-to-market equity (validated)."""
    ts: np.ndarray
    equity: np.ndarray
    initial_capital: float

    def __post_init__(self):
        ts = np.asarray(self.ts, dtype=np.int64)
        eq = np.asarray(self.equity, dtype=np.float64)
        if ts.ndim != 1 or eq.shape != ts.shape:
            raise ValueError(f"ts {ts.shape} and equity {eq.shape} must be 1-D of the same length")
        if ts.size > 1 and np.any(np.diff(ts) <= 0):
            raise ValueError("ts must be strictly increasing")
        if not np.all(np.isfinite(eq)):
            raise ValueError("equity has non-finite values")
        if not (np.isfinite(self.initial_capital) and self.initial_capital > 0):
            raise ValueError(f"initial_capital must be positive, got {self.initial_capital}")
        object.__setattr__(self, "ts", ts)
        object.__setattr__(self, "equity", eq)
        object.__setattr__(self, "initial_capital", float(self.initial_capital))
