"""In-sample calibration of the BLUE thresholds and exits. Never sees the out-of-sample part.

Procedure (documented in the README, "Calibration"):
  1. Cut the panel and its scans at the split (default: first 60 % of UTC days); everything after is
     dropped before any statistic is computed, so out-of-sample data cannot influence the choice.
  2. Entry thresholds come from in-sample quantiles of vel_div/N (lower tail for SHORT): the entry
     threshold at quantile q, the extreme (full-strength) threshold at quantile q/10.
  3. Grid: q x max_hold_bars x w_move (ranking: reversal / loading only / momentum).
  4. Objective: in-sample daily Sharpe, among configurations that trade at least 0.5 trades/day (the
     floor's 5 trades per 10 days); ties broken by profit factor. The whole grid is returned.
  5. Risk budget: with the chosen signal, the largest capital_fraction (margin per trade as a share of
     capital) whose in-sample max drawdown stays below the 20 % drawdown floor -- never above
     MAX_CAPITAL_FRACTION (0.5): a short in-sample drawdown says little about the tail, so the budget is capped.
  Refused (``CalibrationRefused``) when the in-sample part holds fewer than MIN_IN_SAMPLE_DAYS (20) UTC days:
  a drawdown measured on a few days cannot choose a risk budget. Between that and WARN_IN_SAMPLE_DAYS (60)
  days the result carries a warning (``CalibrationResult.warnings``, printed by `dolphin calibrate`).
"""

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dolphin.engine.backtest import run_backtest
from dolphin.engine.config import EngineConfig
from dolphin.metrics import max_drawdown, sharpe, utc_day
from dolphin.timeutil import DAY_MS

QUANTILES = (0.002, 0.005, 0.01, 0.02)
MAX_HOLDS = (12, 36, 72, 144)
W_MOVES = (-1.0, 0.0, 1.0)
FRACTIONS = (1.0, 0.75, 0.5, 0.35, 0.25, 0.15, 0.1, 0.05)
MAX_DD = 0.20
MIN_TRADES_PER_DAY = 0.5
MAX_CAPITAL_FRACTION = 0.5
MIN_IN_SAMPLE_DAYS = 20
WARN_IN_SAMPLE_DAYS = 60


class CalibrationRefused(ValueError):
    pass


def split_index(open_time: np.ndarray, fraction: float) -> int:
    """Index of the first out-of-sample bar: the first bar of the day after the first `fraction` of UTC days."""
    days = np.unique(open_time // DAY_MS)
    n_is = int(np.floor(len(days) * fraction))
    if n_is < 1 or n_is >= len(days):
        raise ValueError(f"split fraction {fraction} leaves an empty in- or out-of-sample part ({len(days)} days)")
    return int(np.searchsorted(open_time, days[n_is] * DAY_MS))


def _daily_sharpe(ts, equity, initial):
    """Sharpe of daily returns with the metrics module's day rule and annualisation."""
    day = utc_day(ts)
    last = np.flatnonzero(np.r_[day[1:] != day[:-1], True])
    eq = np.r_[initial, equity[last]]
    return sharpe(eq[1:] / eq[:-1] - 1.0), len(last)


@dataclass
class CalibrationResult:
    best: EngineConfig
    grid: pd.DataFrame
    split_ms: int  # first out-of-sample bar open
    in_sample_days: int
    risk_grid: pd.DataFrame  # capital_fraction -> in-sample max drawdown
    warnings: list = field(default_factory=list)  # loud notes (short in-sample part, capped risk budget)


def check_in_sample(open_time, fraction: float) -> list:
    """Refuses (CalibrationRefused) an in-sample part too short to choose a risk budget; returns warnings.
    Cheap: `dolphin calibrate` calls it before scanning."""
    days = len(np.unique(np.asarray(open_time) // DAY_MS))
    is_days = int(np.floor(days * fraction))
    if is_days < MIN_IN_SAMPLE_DAYS:
        raise CalibrationRefused(
            f"the in-sample part holds {is_days} UTC day(s) (split {fraction:g} of {days} days); at least "
            f"{MIN_IN_SAMPLE_DAYS} are needed to choose a risk budget: use more data or a larger --split")
    if is_days < WARN_IN_SAMPLE_DAYS:
        return [f"in-sample part is only {is_days} days (< {WARN_IN_SAMPLE_DAYS}): the chosen thresholds and "
                "risk budget rest on little data"]
    return []


def calibrate(panel, scans, base: EngineConfig, fraction: float = 0.6) -> CalibrationResult:
    warnings = check_in_sample(panel.open_time, fraction)
    cut = split_index(panel.open_time, fraction)
    res = calibrate_window(panel, scans, base, 0, cut)
    res.warnings[:0] = warnings
    return res


def calibrate_window(panel, scans, base: EngineConfig, lo: int, hi: int) -> CalibrationResult:
    """The grid on the training window of bars [lo, hi); bars before ``lo`` are history only (regime and
    ranking statistics, as in any run that starts mid-set), bars from ``hi`` on are dropped before anything
    is computed. Quantiles, Sharpe, trade rates and drawdowns use the window's rows only. ``calibrate`` is
    this with lo = 0 (``dolphin validate`` rolls it over the data)."""
    if not 0 <= lo < hi <= panel.n_bars:
        raise ValueError(f"training window [{lo}, {hi}) is not inside the panel's {panel.n_bars} bars")
    p_is = panel.slice_bars(0, hi)
    s_is = scans[0:hi]
    trade_from = int(p_is.close_time[lo]) if lo > 0 else None
    vd = s_is.vel_div[lo:] / p_is.n_assets
    vd = vd[np.isfinite(vd)]
    if vd.size == 0:
        raise ValueError("training window has no finite vel_div (scanner still warming up)")
    rows = []
    for q, hold, wm in itertools.product(QUANTILES, MAX_HOLDS, W_MOVES):
        thr = float(-np.quantile(vd, q))
        ext = float(-np.quantile(vd, q / 10))
        if not (thr > 0 and ext > thr):
            continue
        cfg = base.with_(entry_threshold=round(thr, 6), extreme_threshold=round(ext, 6),
                         max_hold_bars=hold, w_move=wm)
        res = run_backtest(p_is, s_is, cfg, trade_from_ms=trade_from)
        sharpe, n_days = _daily_sharpe(res.ts[lo:], res.equity[lo:], cfg.initial_capital)
        pnl = res.trades["pnl"].to_numpy()
        gl = -pnl[pnl < 0].sum()
        rows.append({"quantile": q, "entry_threshold": cfg.entry_threshold,
                     "extreme_threshold": cfg.extreme_threshold, "max_hold_bars": hold, "w_move": wm,
                     "trades": len(pnl), "trades_per_day": len(pnl) / max(n_days, 1),
                     "roi": res.final_capital / cfg.initial_capital - 1.0,
                     "profit_factor": (pnl[pnl > 0].sum() / gl) if gl > 0 else float("nan"),
                     "win_rate": float((pnl > 0).mean()) if len(pnl) else float("nan"),
                     "sharpe": sharpe})
    grid = pd.DataFrame(rows)
    if grid.empty:
        raise ValueError("no configuration in the grid has a usable threshold on the training window")
    ok = grid[grid["trades_per_day"] >= MIN_TRADES_PER_DAY].copy()
    if ok.empty:
        raise ValueError("no configuration in the grid trades often enough in-sample")
    ok["_s"] = ok["sharpe"].fillna(-np.inf)
    ok["_pf"] = ok["profit_factor"].fillna(-np.inf)
    top = ok.sort_values(["_s", "_pf"], ascending=False).iloc[0]
    best = base.with_(entry_threshold=float(top.entry_threshold), extreme_threshold=float(top.extreme_threshold),
                      max_hold_bars=int(top.max_hold_bars), w_move=float(top.w_move))
    grid["chosen"] = ((grid.entry_threshold == top.entry_threshold) & (grid.max_hold_bars == top.max_hold_bars)
                      & (grid.w_move == top.w_move))
    risk_rows = []
    for frac in (f for f in FRACTIONS if f <= MAX_CAPITAL_FRACTION):
        res = run_backtest(p_is, s_is, best.with_(capital_fraction=frac), trade_from_ms=trade_from)
        dd = max_drawdown(res.ts[lo:], res.equity[lo:], base.initial_capital, res.bar_ms)[0]
        risk_rows.append({"capital_fraction": frac, "max_drawdown": dd,
                          "roi": res.final_capital / base.initial_capital - 1.0})
    risk = pd.DataFrame(risk_rows)
    fitting = risk[risk.max_drawdown < MAX_DD]
    frac = float(fitting.capital_fraction.max()) if len(fitting) else float(FRACTIONS[-1])
    warnings = []
    if not len(fitting):
        warnings.append(f"no capital_fraction keeps the in-sample max drawdown below {MAX_DD:.0%}: the smallest, "
                        f"{frac}, is used")
    elif frac >= MAX_CAPITAL_FRACTION:
        warnings.append(f"capital_fraction capped at {MAX_CAPITAL_FRACTION} (larger ones are never tried)")
    best = best.with_(capital_fraction=min(frac, MAX_CAPITAL_FRACTION))
    return CalibrationResult(best, grid, int(panel.open_time[hi]) if hi < panel.n_bars else
                             int(panel.open_time[hi - 1]) + panel.bar_ms,
                             int(len(np.unique(p_is.open_time[lo:] // DAY_MS))), risk, warnings)
