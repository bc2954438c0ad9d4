"""Backtest / paper-trading performance metrics, daily and monthly tables.

Definitions (all pure functions of the trade frame and the per-bar equity curve, see ``types``):

- ROI: final equity / initial capital - 1 (final = initial when there are no bars).
- Profit factor: gross profit / gross loss of trade pnl (gross loss as a positive number).
  No trades, or only zero-pnl trades -> NaN; profit but no loss -> inf; losses but no profit -> 0.
- Win rate: share of trades with pnl > 0 (zero-pnl trades count as trades, not wins); NaN without trades.
- Expectancy: mean pnl per trade (USDT); NaN without trades.
- Max drawdown: largest fall from a running peak, as a fraction of that peak, on the per-bar equity path
  with the initial capital prepended as a point at the first bar's open (so a loss on the very first bar
  counts). Peak = the latest time the peak value was reached before the trough; recovery = first bar at or
  above the peak after the trough, None if never; all None when the drawdown is 0.
- Daily returns: one per UTC day from the first to the last day (``daily_table``); a day's return is its
  end equity / the previous day's end equity - 1, the first day against the initial capital. Calendar
  days without a bar carry the equity forward (return 0, ``bars`` = 0) so that windows stay calendar days.
- Sharpe: mean / sample std (ddof=1) of the daily returns * sqrt(365). NaN with fewer than 2 days or a
  zero (<= 1e-12) standard deviation: a risk-adjusted return is undefined without measured risk.
- Sortino: mean daily return / downside deviation * sqrt(365), downside deviation = sqrt(mean(min(r, 0)^2))
  over ALL days (not only losing days). NaN with fewer than 2 days; with no losing day: inf if the mean is
  positive, NaN if it is 0.
- Annualised return: (1 + ROI)^(365 / days) - 1 with days = elapsed time of the equity curve (first bar's
  open to last bar's close) in days; -1 if equity ended <= 0. Calmar = annualised return / max drawdown
  (max drawdown 0: inf if the annualised return is positive, else NaN).
- Exposure: share of bars during which a position was open. Bar i covers [ts[i] - bar_ms, ts[i]); a trade
  holds [entry_time, exit_time); a bar counts if they overlap for a positive time (overlapping trades are
  counted once). Average hold: mean (exit_time - entry_time) in minutes and in bars (/ bar_ms).
"""

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from dolphin.metrics.types import EquityCurve, check_trades, day_label, utc_day
from dolphin.timeutil import DAY_MS, fmt_ms

ANNUALISATION_DAYS = 365  # crypto trades every day
ZERO_STD = 1e-12

DAILY_COLUMNS = ("date", "day_ms", "start_equity", "end_equity", "pnl", "return", "trades", "wins", "fees",
                 "funding", "trade_pnl", "bars")
_DAILY_DTYPES = {"date": object, "day_ms": "int64", "trades": "int64", "wins": "int64", "bars": "int64"}
MONTHLY_COLUMNS = ("month", "start_equity", "end_equity", "pnl", "return", "trades", "wins", "fees",
                   "funding", "trade_pnl", "days")


@dataclass(frozen=True)
class Metrics:
    initial_capital: float
    final_equity: float
    roi: float
    total_pnl: float  # sum of trade pnl (realised); differs from final - initial by any open position
    n_trades: int
    n_long: int
    n_short: int
    n_wins: int
    n_losses: int
    win_rate: float
    gross_profit: float
    gross_loss: float  # positive number
    profit_factor: float
    expectancy: float
    avg_win: float
    avg_loss: float
    best_trade: float
    worst_trade: float
    total_fees: float
    total_funding: float
    max_drawdown: float
    max_dd_peak_ms: int | None
    max_dd_trough_ms: int | None
    max_dd_recovery_ms: int | None
    n_days: int
    days: float  # elapsed days used for annualising
    annualised_return: float
    sharpe: float
    sortino: float
    calmar: float
    exposure: float
    avg_hold_minutes: float
    avg_hold_bars: float
    n_bars: int
    start_ms: int | None  # first bar's open
    end_ms: int | None  # last bar's close

    def as_dict(self, *, readable: bool = False) -> dict:
        """Plain Python values; ``readable`` turns the *_ms timestamps into 'YYYY-MM-DD HH:MM:SS' UTC."""
        d = asdict(self)
        if readable:
            d = {(k[:-3] if k.endswith("_ms") else k): (fmt_ms(v) if k.endswith("_ms") and v is not None else v)
                 for k, v in d.items()}
        return d


# ---------------------------------------------------------------- building blocks


def profit_factor(pnl) -> float:
    pnl = np.asarray(pnl, dtype=float)
    gp, gl = pnl[pnl > 0].sum(), -pnl[pnl < 0].sum()
    return _pf(gp, gl, pnl.size)


def _pf(gp, gl, n):
    if n == 0 or (gp == 0 and gl == 0):
        return math.nan
    return math.inf if gl == 0 else float(gp / gl)


def sharpe(returns) -> float:
    r = np.asarray(returns, dtype=float)
    if r.size < 2:
        return math.nan
    sd = r.std(ddof=1)
    if not sd > ZERO_STD:  # also NaN returns
        return math.nan
    return float(r.mean() / sd * math.sqrt(ANNUALISATION_DAYS))


def sortino(returns) -> float:
    r = np.asarray(returns, dtype=float)
    if r.size < 2 or not np.all(np.isfinite(r)):
        return math.nan
    down = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    m = float(r.mean())
    if down == 0.0:
        return math.inf if m > 0 else math.nan
    return m / down * math.sqrt(ANNUALISATION_DAYS)


def max_drawdown(ts, equity, initial_capital, bar_ms) -> tuple[float, int | None, int | None, int | None]:
    """(max drawdown fraction, peak ms, trough ms, recovery ms or None); see the module docstring."""
    ts = np.asarray(ts, dtype=np.int64)
    if ts.size == 0:
        return 0.0, None, None, None
    t = np.r_[ts[0] - int(bar_ms), ts]
    p = np.r_[float(initial_capital), np.asarray(equity, dtype=float)]
    peak = np.maximum.accumulate(p)
    dd = 1.0 - p / peak
    k = int(np.argmax(dd))
    if not dd[k] > 0:
        return 0.0, None, None, None
    j = int(np.flatnonzero(p[:k + 1] == peak[k])[-1])
    rec = np.flatnonzero(p[k + 1:] >= peak[k])
    return float(dd[k]), int(t[j]), int(t[k]), (int(t[k + 1 + rec[0]]) if rec.size else None)


def annualised_return(roi: float, days: float) -> float:
    if not days > 0 or not math.isfinite(roi):
        return math.nan
    if 1.0 + roi <= 0:
        return -1.0
    try:
        return (1.0 + roi) ** (ANNUALISATION_DAYS / days) - 1.0
    except OverflowError:  # a big gain over a few hours
        return math.inf


def exposure(trades, ts, bar_ms) -> float:
    ts = np.asarray(ts, dtype=np.int64)
    if ts.size == 0:
        return math.nan
    trades = check_trades(trades)
    if len(trades) == 0:
        return 0.0
    lo = np.searchsorted(ts, trades["entry_time"].to_numpy(np.int64), side="right")
    hi = np.searchsorted(ts - int(bar_ms), trades["exit_time"].to_numpy(np.int64), side="left")
    keep = hi > lo
    cover = np.zeros(ts.size + 1, dtype=np.int64)
    np.add.at(cover, lo[keep], 1)
    np.add.at(cover, hi[keep], -1)
    return float(np.count_nonzero(np.cumsum(cover[:-1]) > 0) / ts.size)


# ---------------------------------------------------------------- tables


def daily_table(trades, ts, equity, initial_capital) -> pd.DataFrame:
    """One row per UTC day (see ``types`` for the day convention), from the first to the last day that has
    a bar or a trade exit. ``pnl``/``return`` are the mark-to-market equity change; ``trades``/``wins``/
    ``fees``/``funding``/``trade_pnl`` are of the trades CLOSED that day (by exit_time)."""
    curve = EquityCurve(ts, equity, initial_capital)
    trades = check_trades(trades)
    bar_day = utc_day(curve.ts)
    exit_day = utc_day(trades["exit_time"].to_numpy(np.int64))
    known = np.r_[bar_day, exit_day]
    if known.size == 0:
        return pd.DataFrame({c: pd.Series(dtype=_DAILY_DTYPES.get(c, "float64")) for c in DAILY_COLUMNS})
    days = np.arange(known.min(), known.max() + DAY_MS, DAY_MS, dtype=np.int64)
    last_bar = np.searchsorted(bar_day, days, side="right") - 1  # last bar on or before each day
    end = np.where(last_bar >= 0, curve.equity[np.maximum(last_bar, 0)] if bar_day.size else 0.0,
                   curve.initial_capital)
    start = np.r_[curve.initial_capital, end[:-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        ret = np.where(start > 0, end / start - 1.0, np.nan)
    di = ((exit_day - days[0]) // DAY_MS).astype(np.int64)
    pnl = trades["pnl"].to_numpy(float)

    def per_day(w=None):
        return np.bincount(di, weights=w, minlength=days.size)

    return pd.DataFrame({
        "date": [day_label(d) for d in days],
        "day_ms": days,
        "start_equity": start,
        "end_equity": end,
        "pnl": end - start,
        "return": ret,
        "trades": per_day().astype(np.int64),
        "wins": per_day((pnl > 0).astype(float)).astype(np.int64),
        "fees": per_day(trades["fees"].to_numpy(float)),
        "funding": per_day(trades["funding"].to_numpy(float)),
        "trade_pnl": per_day(pnl),
        "bars": np.bincount(((bar_day - days[0]) // DAY_MS).astype(np.int64), minlength=days.size),
    })


def monthly_from_daily(daily: pd.DataFrame) -> pd.DataFrame:
    if len(daily) == 0:
        return pd.DataFrame({c: pd.Series(dtype=object if c == "month" else "float64") for c in MONTHLY_COLUMNS})
    g = daily.assign(month=daily["date"].str[:7]).groupby("month", sort=True)
    out = pd.DataFrame({
        "start_equity": g["start_equity"].first(),
        "end_equity": g["end_equity"].last(),
        "trades": g["trades"].sum(),
        "wins": g["wins"].sum(),
        "fees": g["fees"].sum(),
        "funding": g["funding"].sum(),
        "trade_pnl": g["trade_pnl"].sum(),
        "days": g.size(),
    }).reset_index()
    out["pnl"] = out["end_equity"] - out["start_equity"]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["return"] = np.where(out["start_equity"] > 0, out["end_equity"] / out["start_equity"] - 1.0, np.nan)
    return out[list(MONTHLY_COLUMNS)]


def monthly_table(trades, ts, equity, initial_capital) -> pd.DataFrame:
    """One row per calendar month (UTC, same day convention): start/end equity, pnl, compounded return,
    closed trades, wins, fees, funding, realised trade pnl, number of days."""
    return monthly_from_daily(daily_table(trades, ts, equity, initial_capital))


# ---------------------------------------------------------------- all metrics


def compute_metrics(trades, ts, equity, initial_capital, *, bar_ms: int) -> Metrics:
    curve = EquityCurve(ts, equity, initial_capital)
    trades = check_trades(trades)
    if int(bar_ms) <= 0:
        raise ValueError(f"bar_ms must be positive, got {bar_ms}")
    bar_ms = int(bar_ms)
    n_bars = int(curve.ts.size)
    final = float(curve.equity[-1]) if n_bars else curve.initial_capital
    roi = final / curve.initial_capital - 1.0

    pnl = trades["pnl"].to_numpy(float)
    side = trades["side"].to_numpy()
    n = int(pnl.size)
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    gp, gl = float(wins.sum()), float(-losses.sum()) + 0.0  # + 0.0: no '-0.0' without losses
    hold = (trades["exit_time"].to_numpy(np.int64) - trades["entry_time"].to_numpy(np.int64)).astype(float)

    def mean_or_nan(a):
        return float(a.mean()) if a.size else math.nan

    dd, peak_ms, trough_ms, rec_ms = max_drawdown(curve.ts, curve.equity, curve.initial_capital, bar_ms)
    daily = daily_table(trades, curve.ts, curve.equity, curve.initial_capital)
    r = daily["return"].to_numpy(float)
    days = (int(curve.ts[-1]) - int(curve.ts[0]) + bar_ms) / DAY_MS if n_bars else 0.0
    ann = annualised_return(roi, days)
    if dd > 0:
        calmar = ann / dd
    else:
        calmar = math.inf if ann > 0 else math.nan
    return Metrics(
        initial_capital=curve.initial_capital,
        final_equity=final,
        roi=roi,
        total_pnl=float(pnl.sum()),
        n_trades=n,
        n_long=int(np.count_nonzero(side > 0)),
        n_short=int(np.count_nonzero(side < 0)),
        n_wins=int(wins.size),
        n_losses=int(losses.size),
        win_rate=wins.size / n if n else math.nan,
        gross_profit=gp,
        gross_loss=gl,
        profit_factor=_pf(gp, gl, n),
        expectancy=mean_or_nan(pnl),
        avg_win=mean_or_nan(wins),
        avg_loss=mean_or_nan(losses),
        best_trade=float(pnl.max()) if n else math.nan,
        worst_trade=float(pnl.min()) if n else math.nan,
        total_fees=float(trades["fees"].to_numpy(float).sum()),
        total_funding=float(trades["funding"].to_numpy(float).sum()),
        max_drawdown=dd,
        max_dd_peak_ms=peak_ms,
        max_dd_trough_ms=trough_ms,
        max_dd_recovery_ms=rec_ms,
        n_days=int(len(daily)),
        days=days,
        annualised_return=ann,
        sharpe=sharpe(r),
        sortino=sortino(r),
        calmar=calmar,
        exposure=exposure(trades, curve.ts, bar_ms),
        avg_hold_minutes=mean_or_nan(hold) / 60_000.0,
        avg_hold_bars=mean_or_nan(hold) / bar_ms,
        n_bars=n_bars,
        start_ms=int(curve.ts[0]) - bar_ms if n_bars else None,
        end_ms=int(curve.ts[-1]) if n_bars else None,
    )
