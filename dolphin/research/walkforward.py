"""Walk-forward validation (DESIGN.md "Validation"): calibrate on a training window with the existing grid
(``dolphin.engine.calibrate.calibrate_window``), test the chosen configuration on the next window, roll by
one test window; the out-of-sample windows are chained (each starts from the previous one's closing
capital) and judged as one series: metrics, the user's floors, and the deflated Sharpe ratio.

Rules, each one a choice stated here and in the report:

- Days are UTC days of the candle set (bars closing in (00:00, 24:00]). ``folds=K``: test windows of
  ``N // (K + 2)`` days, training windows twice that, K folds (the first training window starts on the first
  day); or explicit ``train_days`` / ``test_days`` (as many folds as fit). Every day is in at most one test
  window, and a test window never overlaps the training window it was calibrated on.
- Bars before a window are history only (regime percentile, ranking lookback), never traded; bars after it
  are not given to the engine at all.
- A position still open at the end of a test window is closed at its last close (exit reason ``end``): every
  trade, with its PnL, belongs to the window it was opened in, and the next window starts flat with the
  closing capital. ``--fixed`` tests the configuration as given (no calibration) on the same windows.
- Floors (``dolphin.metrics.evaluate_floors``) run on the daily table of the concatenated out-of-sample
  equity; the drawdown *metric* is per bar, the 55-day drawdown *floor* is on end-of-day equity (the floor's
  own definition); both are printed, and the per-bar one is also given per 55-day window so the two can be
  compared on the same series.
- Deflated Sharpe ratio (Bailey & Lopez de Prado, "The Deflated Sharpe Ratio", 2014): the probability that
  the true Sharpe exceeds the expected maximum Sharpe of ``N`` unskilled trials,
  ``SR0 = sqrt(V) * ((1 - g) * Z^-1(1 - 1/N) + g * Z^-1(1 - 1/(N e)))`` (g = Euler-Mascheroni), with
  ``DSR = Z((SR - SR0) * sqrt(T - 1) / sqrt(1 - skew * SR + (kurt - 1) / 4 * SR^2))``, all in daily,
  non-annualised units. Per fold on the chosen configuration's in-sample days (N = the grid's
  configurations, V = the variance of their in-sample Sharpes); for the out-of-sample series with N = every
  configuration tried over all folds and V pooled over the folds (conservative: out-of-sample data played
  no part in the choice). The probabilistic Sharpe ratio (SR0 = 0) is given next to it.
"""

import math
import time
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
import pandas as pd

from dolphin.engine.backtest import run_backtest
from dolphin.engine.calibrate import calibrate_window
from dolphin.engine.config import EngineConfig
from dolphin.engine.state import EngineState
from dolphin.metrics import compute_metrics, daily_table, evaluate_floors, max_drawdown
from dolphin.metrics.core import ANNUALISATION_DAYS
from dolphin.timeutil import DAY_MS, fmt_ms

EULER_GAMMA = 0.5772156649015329
# DESIGN.md "Validation": the gate a leg must pass out of sample (GREEN's LONG leg also needs multi-year data)
GATE = (("profit_factor", ">", 1.05), ("win_rate", ">", 0.40), ("roi", ">", 0.0), ("max_drawdown", "<", 0.30),
        ("trades", ">", 100))
MULTI_YEAR_DAYS = 730


class ValidationError(ValueError):
    pass


# ------------------------------------------------------------------ statistics

def _moments(r: np.ndarray) -> tuple:
    """(Sharpe per period, skewness, kurtosis (normal = 3)) of returns; NaN when undefined."""
    r = np.asarray(r, float)
    r = r[np.isfinite(r)]
    if r.size < 3:
        return math.nan, math.nan, math.nan
    sd = r.std(ddof=1)
    if not sd > 1e-15:
        return math.nan, math.nan, math.nan
    c = r - r.mean()
    m2 = (c ** 2).mean()
    skew = float((c ** 3).mean() / m2 ** 1.5)
    kurt = float((c ** 4).mean() / m2 ** 2)
    return float(r.mean() / sd), skew, kurt


def expected_max_sharpe(var_trials: float, n_trials: int) -> float:
    """SR0: expected maximum of ``n_trials`` Sharpe estimates of zero-skill strategies (variance ``var_trials``)."""
    if n_trials <= 1 or not var_trials > 0:
        return 0.0
    z = NormalDist()
    return math.sqrt(var_trials) * ((1 - EULER_GAMMA) * z.inv_cdf(1 - 1 / n_trials)
                                    + EULER_GAMMA * z.inv_cdf(1 - 1 / (n_trials * math.e)))


def probabilistic_sharpe(sr: float, n_obs: int, skew: float, kurt: float, sr0: float = 0.0) -> float:
    """P(true Sharpe > sr0) given the estimate ``sr`` over ``n_obs`` returns (Bailey & Lopez de Prado 2012)."""
    if not all(map(math.isfinite, (sr, skew, kurt, sr0))) or n_obs < 2:
        return math.nan
    den = 1 - skew * sr + (kurt - 1) / 4 * sr ** 2
    if not den > 0:
        return math.nan
    return NormalDist().cdf((sr - sr0) * math.sqrt(n_obs - 1) / math.sqrt(den))


def deflated_sharpe(returns, n_trials: int, var_trials: float) -> dict:
    sr, skew, kurt = _moments(returns)
    n = int(np.isfinite(np.asarray(returns, float)).sum())
    sr0 = expected_max_sharpe(var_trials, n_trials)
    return {"sharpe_daily": sr, "sharpe_annual": sr * math.sqrt(ANNUALISATION_DAYS) if math.isfinite(sr) else sr,
            "skew": skew, "kurtosis": kurt, "n_obs": n, "n_trials": int(n_trials), "var_trials": var_trials,
            "sr0_daily": sr0, "dsr": probabilistic_sharpe(sr, n, skew, kurt, sr0),
            "psr": probabilistic_sharpe(sr, n, skew, kurt, 0.0)}


# ------------------------------------------------------------------ folds

@dataclass(frozen=True)
class Fold:
    k: int
    train: tuple  # (first bar, end bar) [lo, hi)
    test: tuple
    train_days: tuple  # (first day label, last day label)
    test_days: tuple


def make_folds(open_time: np.ndarray, bar_ms: int, *, folds: int | None = None, train_days: int | None = None,
               test_days: int | None = None, warmup_bars: int = 0) -> list:
    """Folds over the UTC days from the first whole day after ``warmup_bars`` (the engine's warm-up: the
    scanner's longest window plus the vol regime's lookback; before it the engine cannot trade)."""
    close = np.asarray(open_time, np.int64) + int(bar_ms)
    day = (close - 1) // DAY_MS  # day index of each bar (bars closing at midnight belong to the day before)
    days = np.unique(day)
    if warmup_bars > 0:
        if warmup_bars >= len(day):
            raise ValidationError(f"the data ({len(day)} bars) is shorter than the engine's warm-up "
                                  f"({warmup_bars} bars)")
        days = days[days > day[warmup_bars - 1]]
    n = len(days)
    if train_days is None and test_days is None:
        k = 4 if folds is None else int(folds)
        if k < 1:
            raise ValidationError(f"folds must be >= 1, got {folds}")
        test_days = n // (k + 2)
        train_days = 2 * test_days
        if test_days < 1:
            raise ValidationError(f"{n} days are too few for {k} folds (need at least {k + 2} days)")
    elif train_days is None or test_days is None:
        raise ValidationError("give both --train-days and --test-days (or --folds)")
    else:
        if folds is not None:
            raise ValidationError("give either --folds or --train-days/--test-days, not both")
        train_days, test_days = int(train_days), int(test_days)
        if train_days < 1 or test_days < 1:
            raise ValidationError("train and test windows need at least one day each")
        k = (n - train_days) // test_days
        if k < 1:
            raise ValidationError(f"{n} days hold no fold of {train_days} training + {test_days} test days")
    out = []
    for i in range(k):
        a = i * test_days
        t0, t1 = a + train_days, a + train_days + test_days
        if t1 > n:
            break
        first = lambda d: int(np.searchsorted(day, days[d], side="left"))  # noqa: E731
        lo, hi = first(a), first(t0)
        tlo, thi = hi, (first(t1) if t1 < n else len(day))
        lab = lambda d: fmt_ms(int(days[d]) * DAY_MS)[:10]  # noqa: E731
        out.append(Fold(i + 1, (lo, hi), (tlo, thi), (lab(a), lab(t0 - 1)), (lab(t0), lab(t1 - 1))))
    if not out:
        raise ValidationError("no complete fold fits the data")
    return out


# ------------------------------------------------------------------ the run

@dataclass
class FoldResult:
    fold: Fold
    config: EngineConfig
    grid: pd.DataFrame | None  # None with fixed=True
    is_row: dict  # the chosen grid row (in-sample figures)
    is_dsr: dict | None
    oos: dict  # metrics of the test window (dict)
    trades: pd.DataFrame
    ts: np.ndarray
    equity: np.ndarray
    start_equity: float


@dataclass
class WalkForwardResult:
    data: str
    base: EngineConfig
    fixed: bool
    folds: list
    ts: np.ndarray  # concatenated out-of-sample bar closes
    equity: np.ndarray
    trades: pd.DataFrame
    metrics: object  # dolphin.metrics.Metrics of the concatenated series
    daily: pd.DataFrame
    floors: object  # FloorReport
    dd_windows: dict  # per-bar vs end-of-day worst 55-day drawdown on the same series
    dsr: dict
    n_trials: int
    bar_ms: int
    seconds: float
    notes: list = field(default_factory=list)

    def gate(self, leg: str = "short") -> dict:
        m = self.metrics
        vals = {"profit_factor": m.profit_factor, "win_rate": m.win_rate, "roi": m.roi,
                "max_drawdown": m.max_drawdown, "trades": m.n_trades}
        g = {}
        for key, op, thr in GATE:
            v = vals[key]
            ok = bool(v > thr) if op == ">" else bool(v < thr)
            ok = ok and not (isinstance(v, float) and math.isnan(v))
            g[key] = {"value": _num(v), "threshold": f"{op} {thr:g}", "passed": ok}
        if leg == "long":
            nd = int(len(self.daily))
            g["multi_year"] = {"value": nd, "threshold": f">= {MULTI_YEAR_DAYS} days", "passed": nd >= MULTI_YEAR_DAYS}
        return g

    def fold_table(self) -> pd.DataFrame:
        rows = []
        for f in self.folds:
            c = f.config
            rows.append({"fold": f.fold.k, "train": f"{f.fold.train_days[0]}..{f.fold.train_days[1]}",
                         "test": f"{f.fold.test_days[0]}..{f.fold.test_days[1]}",
                         "entry_thr": c.entry_threshold, "hold": c.max_hold_bars, "w_move": c.w_move,
                         "cap_frac": c.capital_fraction,
                         "IS sharpe": f.is_row.get("sharpe", math.nan), "IS trades": f.is_row.get("trades", math.nan),
                         "IS DSR": (f.is_dsr or {}).get("dsr", math.nan),
                         "OOS roi": f.oos["roi"], "OOS trades": f.oos["n_trades"], "OOS win": f.oos["win_rate"],
                         "OOS PF": f.oos["profit_factor"], "OOS maxDD": f.oos["max_drawdown"],
                         "OOS sharpe": f.oos["sharpe"]})
        return pd.DataFrame(rows)


def _num(v):
    if isinstance(v, (np.floating, np.integer)):
        v = v.item()
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _daily_returns(ts, equity, start_eq) -> np.ndarray:
    d = daily_table(None, ts, equity, start_eq)
    return d["return"].to_numpy(float)


def _worst_window_dd(ts, equity, start_eq, bar_ms, window_days=55) -> dict:
    """Worst drawdown over rolling ``window_days`` windows, per bar and on end-of-day equity, same series."""
    ts = np.asarray(ts, np.int64)
    eq = np.asarray(equity, float)
    day = (ts - 1) // DAY_MS
    days = np.unique(day)
    if len(days) < window_days:
        return {"window_days": window_days, "per_bar": None, "end_of_day": None}
    worst_bar = worst_eod = 0.0
    for i in range(len(days) - window_days + 1):
        a = int(np.searchsorted(day, days[i], "left"))
        b = int(np.searchsorted(day, days[i + window_days - 1], "right"))
        s = float(eq[a - 1]) if a > 0 else float(start_eq)
        path = np.r_[s, eq[a:b]]
        worst_bar = max(worst_bar, float(np.max(1 - path / np.maximum.accumulate(path))))
        ends = np.r_[s, eq[np.r_[np.flatnonzero(np.diff(day[a:b])) , b - a - 1] + a]]
        worst_eod = max(worst_eod, float(np.max(1 - ends / np.maximum.accumulate(ends))))
    return {"window_days": window_days, "per_bar": worst_bar, "end_of_day": worst_eod}


def walk_forward(panel, scans, base: EngineConfig, *, data: str = "", folds: int | None = None,
                 train_days: int | None = None, test_days: int | None = None, fixed: bool = False,
                 funding_dir=None, progress=None) -> WalkForwardResult:
    t0 = time.perf_counter()
    from dolphin.scanner.core import WARMUP_BARS

    warm = WARMUP_BARS + base.vol_lookback + base.vol_window
    fl = make_folds(panel.open_time, panel.bar_ms, folds=folds, train_days=train_days, test_days=test_days,
                    warmup_bars=warm)
    capital = float(base.initial_capital)
    results, n_trials, sr_pool = [], 0, []
    notes = []
    for f in fl:
        idle = False
        if fixed:
            cfg, grid, row, is_dsr = base, None, {}, None
        else:
            try:
                cal = calibrate_window(panel, scans, base, *f.train)
            except ValueError as e:  # the procedure finds nothing to trade: it stays flat, said plainly
                notes.append(f"fold {f.k}: calibration found no usable configuration ({e}); the test window "
                             f"is not traded (flat)")
                cal, idle = None, True
        if not fixed and idle:
            cfg, grid, row, is_dsr = base, None, {}, None
        elif not fixed:
            cfg, grid = cal.best, cal.grid
            row = grid[grid["chosen"]].iloc[0].to_dict()
            n_trials += len(grid)
            sr_daily = grid["sharpe"].to_numpy(float) / math.sqrt(ANNUALISATION_DAYS)
            sr_daily = sr_daily[np.isfinite(sr_daily)]
            var = float(np.var(sr_daily, ddof=1)) if sr_daily.size > 1 else 0.0
            sr_pool.extend(sr_daily.tolist())
            lo, hi = f.train
            res_is = run_backtest(panel.slice_bars(0, hi), scans[0:hi], cfg,
                                  trade_from_ms=int(panel.close_time[lo]) if lo > 0 else None,
                                  funding_dir=funding_dir)
            is_dsr = deflated_sharpe(_daily_returns(res_is.ts[lo:], res_is.equity[lo:], cfg.initial_capital),
                                     len(grid), var)
        lo, hi = f.test
        if idle:  # flat: equity stays at the capital carried in
            n = hi - lo
            ts, eq = panel.close_time[lo:hi].astype(np.int64), np.full(n, capital)
            tr = run_backtest(panel.slice_bars(0, 1), scans[0:1], base).trades.iloc[0:0].copy()
            tr["fold"] = f.k
            m = compute_metrics(tr, ts, eq, capital, bar_ms=panel.bar_ms)
            results.append(FoldResult(f, cfg, grid, row, is_dsr, m.as_dict(), tr, ts, eq, capital))
            continue
        res = run_backtest(panel.slice_bars(0, hi), scans[0:hi], cfg, trade_from_ms=int(panel.close_time[lo]),
                           state=EngineState.fresh(capital), close_at_end=True, funding_dir=funding_dir)
        ts, eq = res.ts[lo:hi], res.equity[lo:hi]
        tr = res.trades[res.trades.entry_bar >= lo].copy()
        if len(tr) != len(res.trades):
            notes.append(f"fold {f.k}: {len(res.trades) - len(tr)} trade(s) before the test window dropped")
        tr["fold"] = f.k
        m = compute_metrics(tr, ts, eq, capital, bar_ms=res.bar_ms)
        results.append(FoldResult(f, cfg, grid, row, is_dsr, m.as_dict(), tr, ts, eq, capital))
        capital = float(eq[-1]) if len(eq) else capital
        if progress:
            progress(f"fold {f.k}/{len(fl)}: train {f.train_days[0]}..{f.train_days[1]}, test "
                     f"{f.test_days[0]}..{f.test_days[1]}: OOS ROI {m.roi * 100:+.2f} %, {m.n_trades} trades")
    ts = np.concatenate([r.ts for r in results])
    eq = np.concatenate([r.equity for r in results])
    trades = pd.concat([r.trades for r in results], ignore_index=True)
    init = float(base.initial_capital)
    m = compute_metrics(trades, ts, eq, init, bar_ms=panel.bar_ms)
    daily = daily_table(trades, ts, eq, init)
    floors = evaluate_floors(daily, trades, bars=(ts, eq))  # drawdown floor on the metric's per-bar series
    if fixed:
        notes.append("fixed configuration: the deflated Sharpe counts N = 1 trial here; whatever selection made "
                     "this configuration elsewhere (e.g. a preset's calibration grid) is not counted, so the DSR is "
                     "an upper bound")
    var_pool = float(np.var(sr_pool, ddof=1)) if len(sr_pool) > 1 else 0.0
    dsr = deflated_sharpe(daily["return"].to_numpy(float), max(n_trials, 1), var_pool)
    dd = _worst_window_dd(ts, eq, init, panel.bar_ms)
    dd["metric_per_bar_all"] = max_drawdown(ts, eq, init, panel.bar_ms)[0]
    return WalkForwardResult(data, base, fixed, results, ts, eq, trades, m, daily, floors, dd, dsr, n_trials,
                             panel.bar_ms, time.perf_counter() - t0, notes)
