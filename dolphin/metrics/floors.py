"""The user's regression floors (DESIGN.md, "Quality gates") on rolling windows of UTC days.

A window ending on day d covers the W consecutive days d-W+1 .. d; only complete windows exist, one per
day from the W-th day on. Per window, from the daily table (``daily_table``) and the trade frame:

- trades:        trades whose exit_time falls in the window (same UTC-day convention as the daily table)
- profit factor: gross profit / gross loss of those trades (NaN without trades or with only zero pnl,
                 inf with profit and no loss)
- win rate:      share of those trades with pnl > 0 (NaN without trades)
- ROI:           compounded daily returns, prod(1 + r) - 1
- max drawdown:  of the end-of-day equity path starting at the equity at the window's start (the previous
                 day's end, or the initial capital); with ``bars=(ts, equity)`` of the per-bar path instead,
                 the same series the max-drawdown metric uses (reports pass it; ``FloorReport.dd_series`` says
                 which one was used)
- Sharpe:        mean / sample std (ddof=1) of the window's daily returns * sqrt(365), NaN at zero std

An undefined (NaN) value fails its floor and ranks as the worst value (it cannot be shown to meet the
floor). Ties for the worst value go to the earliest window. A floor with no complete window (fewer days
than the window) is N/A: neither passed nor failed. Status PASS = every window passes, FAIL = at least one
window fails. Thresholds are exactly DESIGN.md's; nothing is rounded in the comparison.
"""

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from dolphin.metrics.core import ANNUALISATION_DAYS, ZERO_STD
from dolphin.metrics.types import check_trades, day_label, day_to_ms, utc_day
from dolphin.timeutil import DAY_MS

SHORT_WINDOW_DAYS = 10
LONG_WINDOW_DAYS = 55
PROFIT_FACTOR_FLOOR = 1.08  # 10-day window, >=
WIN_RATE_FLOOR = 0.42  # 10-day window, >=
ROI_FLOOR = -0.05  # any 10-day window, >=
MIN_TRADES = 5  # 10-day window, >=
MAX_DRAWDOWN_CEILING = 0.20  # 55-day window, <
SHARPE_FLOOR = 1.5  # 55-day window, >

PASS, FAIL, NA = "PASS", "FAIL", "N/A"


@dataclass(frozen=True)
class FloorSpec:
    key: str
    label: str
    window_days: int
    comparator: str  # ">=", ">" or "<"
    threshold: float

    def passes(self, v) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        with np.errstate(invalid="ignore"):
            ok = {">=": v >= self.threshold, ">": v > self.threshold, "<": v < self.threshold}[self.comparator]
        return ok & ~np.isnan(v)

    @property
    def rule(self) -> str:
        return f"{self.comparator} {self.threshold:g}"


FLOORS = (
    FloorSpec("profit_factor", "profit factor", SHORT_WINDOW_DAYS, ">=", PROFIT_FACTOR_FLOOR),
    FloorSpec("win_rate", "win rate", SHORT_WINDOW_DAYS, ">=", WIN_RATE_FLOOR),
    FloorSpec("roi", "ROI", SHORT_WINDOW_DAYS, ">=", ROI_FLOOR),
    FloorSpec("trades", "trades", SHORT_WINDOW_DAYS, ">=", MIN_TRADES),
    FloorSpec("max_drawdown", "max drawdown", LONG_WINDOW_DAYS, "<", MAX_DRAWDOWN_CEILING),
    FloorSpec("sharpe", "Sharpe", LONG_WINDOW_DAYS, ">", SHARPE_FLOOR),
)


@dataclass
class FloorResult:
    spec: FloorSpec
    n_windows: int
    n_pass: int
    worst_value: float
    worst_start: str | None  # 'YYYY-MM-DD'
    worst_end: str | None
    latest_value: float  # the window ending on the last evaluated day
    latest_start: str | None
    latest_end: str | None
    status: str  # PASS / FAIL / N/A
    n_days: int  # days available (explains N/A)
    windows: pd.DataFrame = field(repr=False)  # start, end, value, passed -- one row per window

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def n_fail(self) -> int:
        return self.n_windows - self.n_pass

    def as_dict(self) -> dict:
        s = self.spec
        return {"floor": s.key, "label": s.label, "window_days": s.window_days, "comparator": s.comparator,
                "threshold": s.threshold, "n_windows": self.n_windows, "n_pass": self.n_pass,
                "worst_value": self.worst_value, "worst_start": self.worst_start, "worst_end": self.worst_end,
                "latest_value": self.latest_value, "latest_start": self.latest_start,
                "latest_end": self.latest_end, "status": self.status, "n_days": self.n_days}


@dataclass
class FloorReport:
    first_day: str | None
    last_day: str | None  # last day evaluated (end_date when given)
    floors: list
    notes: list = field(default_factory=list)
    dd_series: str = "end-of-day equity"  # what the drawdown floor was measured on ("per-bar equity")

    @property
    def status(self) -> str:
        """FAIL if any floor fails, PASS if every floor passes, else INCOMPLETE (some floor is N/A)."""
        st = [f.status for f in self.floors]
        return FAIL if FAIL in st else PASS if all(s == PASS for s in st) else "INCOMPLETE"

    @property
    def failed(self) -> list:
        return [f for f in self.floors if f.status == FAIL]

    def __getitem__(self, key: str) -> FloorResult:
        for f in self.floors:
            if f.key == key:
                return f
        raise KeyError(key)

    def as_dict(self) -> dict:
        return {"first_day": self.first_day, "last_day": self.last_day, "status": self.status,
                "floors": [f.as_dict() for f in self.floors], "notes": list(self.notes)}


# ---------------------------------------------------------------- window values


def _window_values(key, w, ret, start_eq, end_eq, n, wins, gp, gl) -> np.ndarray:
    def sums(a):
        # explicit window sums, not cumsum differences: a window without losses must give exactly 0
        return sliding_window_view(a, w).sum(axis=1)

    if key == "trades":
        return sums(n).astype(float)
    if key == "win_rate":
        cnt = sums(n)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(cnt > 0, sums(wins) / cnt, np.nan)
    if key == "profit_factor":
        p, l, cnt = sums(gp), sums(gl), sums(n)
        with np.errstate(invalid="ignore", divide="ignore"):
            pf = np.where(l > 0, p / l, np.inf)
        return np.where((cnt == 0) | ((p == 0) & (l == 0)), np.nan, pf)
    if key == "roi":
        return np.prod(1.0 + sliding_window_view(ret, w), axis=1) - 1.0
    if key == "max_drawdown":
        path = np.concatenate([start_eq[:len(end_eq) - w + 1, None], sliding_window_view(end_eq, w)], axis=1)
        return np.max(1.0 - path / np.maximum.accumulate(path, axis=1), axis=1)
    if key == "sharpe":
        r = sliding_window_view(ret, w)
        sd = r.std(axis=1, ddof=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(sd > ZERO_STD, r.mean(axis=1) / sd * math.sqrt(ANNUALISATION_DAYS), np.nan)
    raise KeyError(key)


def _worst_index(spec: FloorSpec, v: np.ndarray) -> int:
    nan = np.flatnonzero(np.isnan(v))
    if nan.size:
        return int(nan[0])
    return int(np.argmax(v) if spec.comparator == "<" else np.argmin(v))


def _prepare(daily: pd.DataFrame, trades):
    need = {"start_equity", "end_equity", "return"}
    if missing := need - set(daily.columns):
        raise ValueError(f"daily table lacks column(s) {', '.join(sorted(missing))} (use daily_table)")
    if "day_ms" in daily.columns:
        days = daily["day_ms"].to_numpy(np.int64)
    elif "date" in daily.columns:
        days = np.array([day_to_ms(d) for d in daily["date"]], dtype=np.int64)
    else:
        raise ValueError("daily table needs a 'day_ms' or 'date' column")
    if days.size > 1 and np.any(np.diff(days) != DAY_MS):
        raise ValueError("daily table must have one row per consecutive UTC day (use daily_table)")
    trades = check_trades(trades)
    pnl = trades["pnl"].to_numpy(float)
    di = (utc_day(trades["exit_time"].to_numpy(np.int64)) - (days[0] if days.size else 0)) // DAY_MS
    inside = (di >= 0) & (di < days.size)
    notes = []
    if (~inside).any():
        notes.append(f"{int((~inside).sum())} trade(s) exit outside the daily table's days "
                     f"and are not counted in any window")
    di, pnl = di[inside].astype(np.int64), pnl[inside]

    def per_day(w=None):
        return np.bincount(di, weights=w, minlength=days.size).astype(float)

    cols = dict(ret=daily["return"].to_numpy(float), start_eq=daily["start_equity"].to_numpy(float),
                end_eq=daily["end_equity"].to_numpy(float), n=per_day(), wins=per_day((pnl > 0) * 1.0),
                gp=per_day(np.where(pnl > 0, pnl, 0.0)), gl=per_day(np.where(pnl < 0, -pnl, 0.0)))
    return days, cols, notes


def _bar_window_dd(days: np.ndarray, ends: np.ndarray, w: int, start_eq: np.ndarray, bars) -> np.ndarray:
    """Max drawdown of the per-bar equity path of each w-day window ending on ``ends`` (from the equity at
    the window's start: the previous day's end, or the initial capital)."""
    ts, eq = (np.asarray(x) for x in bars)
    bday = utc_day(ts.astype(np.int64))
    out = np.empty(ends.size)
    for i, e in enumerate(ends):
        s_day = e - (w - 1) * DAY_MS
        a, b = np.searchsorted(bday, s_day, "left"), np.searchsorted(bday, e, "right")
        k = int(np.searchsorted(days, s_day))
        path = np.r_[start_eq[k], eq[a:b].astype(float)]
        out[i] = float(np.max(1.0 - path / np.maximum.accumulate(path)))
    return out


def _evaluate(daily, trades, end_date, only_last: bool, bars=None) -> FloorReport:
    days, cols, notes = _prepare(daily, trades)
    if end_date is not None:
        end = day_to_ms(end_date)
        if days.size == 0 or end > days[-1]:
            last = day_label(days[-1]) if days.size else "none"
            raise ValueError(f"end_date {day_label(end)} is after the last day of the daily table ({last})")
        keep = int(np.searchsorted(days, end, side="right"))
        days, cols = days[:keep], {k: v[:keep] for k, v in cols.items()}
    results = []
    for spec in FLOORS:
        w, nd = spec.window_days, int(days.size)
        if nd >= w:
            lo = nd - w if only_last else 0
            sub = {k: v[lo:] for k, v in cols.items()}
            ends = days[lo + w - 1:]
            if spec.key == "max_drawdown" and bars is not None:
                vals = _bar_window_dd(days, ends, w, cols["start_eq"], bars)
            else:
                vals = _window_values(spec.key, w, **sub)
        else:
            vals, ends = np.array([], float), np.array([], np.int64)
        starts = ends - (w - 1) * DAY_MS
        ok = spec.passes(vals)
        table = pd.DataFrame({"start": [day_label(d) for d in starts], "end": [day_label(d) for d in ends],
                              "value": vals, "passed": ok})
        if vals.size:
            k = _worst_index(spec, vals)
            worst = (float(vals[k]), day_label(starts[k]), day_label(ends[k]))
            latest = (float(vals[-1]), day_label(starts[-1]), day_label(ends[-1]))
            status = PASS if ok.all() else FAIL
        else:
            worst = latest = (math.nan, None, None)
            status = NA
        results.append(FloorResult(spec, int(vals.size), int(ok.sum()), *worst, *latest, status, nd, table))
    first = day_label(days[0]) if days.size else None
    last = day_label(days[-1]) if days.size else None
    return FloorReport(first, last, results, notes, "per-bar equity" if bars is not None else "end-of-day equity")


def evaluate_floors(daily: pd.DataFrame, trades, *, end_date=None, bars=None) -> FloorReport:
    """Every complete window of every floor, over the daily table's days up to ``end_date`` (a UTC day:
    'YYYY-MM-DD', date, Timestamp or midnight ms; default: the last day). ``daily`` comes from
    ``daily_table`` (one row per consecutive UTC day); ``trades`` is the trade frame. ``bars``: (bar close
    ms, equity) of the same run: the drawdown floor then uses the per-bar path (as the metric does)."""
    return _evaluate(daily, trades, end_date, only_last=False, bars=bars)


def evaluate_floors_at(daily: pd.DataFrame, trades, end_date) -> FloorReport:
    """Only the window ending on ``end_date`` per floor (N/A when fewer days than the window exist up to
    that day) -- the per-partition check."""
    return _evaluate(daily, trades, end_date, only_last=True)
