"""The LONG gate: walk-forward validation of GREEN's LONG leg, and the load-time rule that enforces it.

Procedure (``validate_long``), on one candle set:
  1. Folds by UTC day: train on ``train_days``, test on the next ``test_days``, roll by ``test_days``; the
     test windows tile the data after the first training window.
  2. In each training window the LONG thresholds are calibrated: ``long_entry_threshold`` at the upper-tail
     quantile q of vel_div/N over the training scans, ``long_extreme_threshold`` at quantile q/10, for q in
     ``LONG_QUANTILES``; the LONG leg alone (direction ``long_only``) is backtested on the training window
     and the q with the best daily Sharpe among those with at least ``MIN_TRAIN_TRADES`` trades wins (ties:
     profit factor). Nothing after the training window is read: scans, vol regime and ranking are as-of.
  3. The chosen thresholds trade the test window (bars before it are history only), starting from the
     previous test window's closing capital; every position is closed at the window's end.
  4. The test windows' trades and equity are concatenated: that out-of-sample record is what the gate
     judges (``GATE``, the seeds' numbers: PF > 1.05, win rate > 40 %, ROI > 0, max DD < 30 %, trades > 100),
     plus the data-span rule of DESIGN.md (multi-year data: at least ``MULTI_YEAR_DAYS`` days).
  5. The LONG parameters a deployment would run are calibrated the same way on the LAST training window (the
     most recent ``train_days``); the stored ``ValidationRecord`` (leg 'long') carries those parameters, the
     walk-forward verdict and every fold. A preset whose LONG parameters equal them is allowed to trade LONG.

Everything else in the LONG leg (exits, sizing, ranking, gates) is the base configuration's, unchanged; the
engine runs without the risk layer (neutral posture, MC, ACB, Rm) so the verdict is about the signal.

``require_long_validation(cfg)`` is the load-time rule: a configuration whose LONG leg is active needs a
passing record for its exact LONG parameters (``long_leg_params``), else ``LongGateError`` names the missing
or failed record. The CLI, the Dagster green chain and the runtime all call it.
"""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dolphin.engine.backtest import run_backtest
from dolphin.engine.config import ConfigError, EngineConfig
from dolphin.engine.state import EngineState
from dolphin.metrics import compute_metrics
from dolphin.metrics.types import day_label
from dolphin.research.records import (ValidationRecord, code_version, config_hash, data_fingerprint,
                                      find_records, save_record)
from dolphin.timeutil import DAY_MS

LONG_QUANTILES = (0.002, 0.005, 0.01, 0.02, 0.05)
MIN_TRAIN_TRADES = 20
MULTI_YEAR_DAYS = 730
# the seeds' gate, out of sample: name -> (comparison, threshold)
GATE = {"profit_factor": (">", 1.05), "win_rate": (">", 0.40), "roi": (">", 0.0), "max_drawdown": ("<", 0.30),
        "trades": (">", 100)}
# per set: (train_days, test_days). The 29-day perpetual set is too short for a meaningful walk-forward; it
# runs with what fits and can never pass the multi-year rule.
FOLDS = {"mixed-1h-2022-2026": (365, 91), "spot-5m-2024": (90, 30), "usdtm-5m-2023": (14, 5)}
# keys that do not shape the LONG leg's trades (SHORT thresholds, labels, the arbiter's split)
_NOT_LONG = {"name", "direction", "long_enabled", "entry_threshold", "extreme_threshold", "arbiter",
             "arbiter_trend_bars", "arbiter_tilt"}


class LongGateError(ConfigError):
    """A configuration trades LONG without a passing LONG validation record."""


def long_leg_params(cfg: EngineConfig) -> dict:
    """The parameters that define the LONG leg's trades: what a validation record is matched on."""
    d = cfg.to_dict()
    return {k: d[k] for k in sorted(d) if k not in _NOT_LONG}


def long_leg_config(cfg: EngineConfig) -> EngineConfig:
    """``cfg`` with only its LONG leg trading (the validation's run)."""
    return cfg.with_(direction="long_only", long_enabled=True)


def gate_verdict(values: dict, data_days: float) -> tuple[dict, bool]:
    gate = {}
    for name, (op, thr) in GATE.items():
        v = values[name]
        ok = bool(math.isfinite(v) and (v > thr if op == ">" else v < thr))
        gate[name] = {"value": float(v), "threshold": f"{op} {thr}", "passed": ok}
    gate["data_days"] = {"value": float(data_days), "threshold": f">= {MULTI_YEAR_DAYS}",
                         "passed": bool(data_days >= MULTI_YEAR_DAYS)}
    return gate, all(g["passed"] for g in gate.values())


def _daily_sharpe(res, lo):
    from dolphin.metrics import sharpe, utc_day

    ts, eq = res.ts[lo:], res.equity[lo:]
    if len(ts) == 0:
        return float("nan")
    day = utc_day(ts)
    last = np.flatnonzero(np.r_[day[1:] != day[:-1], True])
    e = np.r_[res.equity[lo - 1] if lo > 0 else res.config.initial_capital, eq[last]]
    return float(sharpe(e[1:] / e[:-1] - 1.0))


def calibrate_long(panel, scans, base: EngineConfig, lo: int, hi: int) -> tuple[EngineConfig, pd.DataFrame]:
    """LONG thresholds from the training bars [lo, hi) only (earlier rows: history; later rows: not read)."""
    p, s = panel.slice_bars(0, hi), scans[0:hi]
    vd = s.vel_div[lo:hi] / panel.n_assets
    vd = vd[np.isfinite(vd)]
    rows = []
    for q in LONG_QUANTILES:
        thr, ext = float(np.quantile(vd, 1 - q)), float(np.quantile(vd, 1 - q / 10))
        if not (thr > 0 and ext > thr):
            continue
        cfg = long_leg_config(base).with_(long_entry_threshold=round(thr, 6), long_extreme_threshold=round(ext, 6))
        res = run_backtest(p, s, cfg, trade_from_ms=int(p.close_time[lo]))
        pnl = res.trades["pnl"].to_numpy()
        gl = -pnl[pnl < 0].sum()
        rows.append({"quantile": q, "long_entry_threshold": cfg.long_entry_threshold,
                     "long_extreme_threshold": cfg.long_extreme_threshold, "trades": len(pnl),
                     "roi": res.final_capital / cfg.initial_capital - 1.0,
                     "profit_factor": pnl[pnl > 0].sum() / gl if gl > 0 else float("nan"),
                     "win_rate": float((pnl > 0).mean()) if len(pnl) else float("nan"),
                     "sharpe": _daily_sharpe(res, lo)})
    grid = pd.DataFrame(rows)
    if grid.empty:
        raise ValueError("LONG calibration: no quantile gives positive thresholds in the training window")
    ok = grid[grid.trades >= MIN_TRAIN_TRADES].copy()
    if ok.empty:  # nothing trades enough: the most active quantile (the verdict will say what it did)
        ok = grid.sort_values("trades", ascending=False).head(1).copy()
    ok["_s"], ok["_pf"] = ok.sharpe.fillna(-np.inf), ok.profit_factor.fillna(-np.inf)
    top = ok.sort_values(["_s", "_pf"], ascending=False).iloc[0]
    grid["chosen"] = grid["quantile"] == top["quantile"]
    best = base.with_(long_entry_threshold=float(top.long_entry_threshold),
                      long_extreme_threshold=float(top.long_extreme_threshold))
    return best, grid


def _day_start_bar(panel, day_ms: int) -> int:
    return int(np.searchsorted(panel.open_time, day_ms))


@dataclass
class LongValidation:
    data_set: str
    record: ValidationRecord
    folds: pd.DataFrame  # one row per fold: windows, chosen thresholds, test metrics
    oos_trades: pd.DataFrame
    oos_ts: np.ndarray
    oos_equity: np.ndarray
    final_config: EngineConfig  # base with the LONG thresholds of the last training window
    record_path: object = None

    @property
    def passed(self) -> bool:
        return self.record.passed


def validate_long(data_set: str, base: EngineConfig, *, train_days: int | None = None, test_days: int | None = None,
                  home=None, save: bool = True, panel=None, scans=None, path=None) -> LongValidation:
    """Walk-forward validation of ``base``'s LONG leg on ``data_set`` (see the module docstring)."""
    from dolphin.data import load_panel
    from dolphin.engine.pipeline import scans_cached
    from dolphin.paths import resolve_kline_set

    path = path or resolve_kline_set(data_set)
    if panel is None:
        panel = load_panel(path)
    if scans is None:
        scans, _ = scans_cached(path, panel)
    tr_d, te_d = FOLDS.get(data_set, (365, 91))
    tr_d, te_d = train_days or tr_d, test_days or te_d
    d0 = int(panel.open_time[0]) // DAY_MS * DAY_MS
    d_end = int(panel.open_time[-1]) // DAY_MS * DAY_MS + DAY_MS
    span_days = (int(panel.close_time[-1]) - int(panel.open_time[0])) / DAY_MS
    if (d_end - d0) // DAY_MS < tr_d + te_d:
        raise ValueError(f"{data_set}: {(d_end - d0) // DAY_MS} days cannot hold one fold of {tr_d} + {te_d} days")
    capital = base.initial_capital
    trades, ts_parts, eq_parts, fold_rows = [], [], [], []
    start = d0
    while start + (tr_d + 1) * DAY_MS <= d_end:
        tr_lo, tr_hi = _day_start_bar(panel, start), _day_start_bar(panel, start + tr_d * DAY_MS)
        te_hi = _day_start_bar(panel, min(start + (tr_d + te_d) * DAY_MS, d_end))
        if te_hi <= tr_hi:
            break
        chosen, grid = calibrate_long(panel, scans, base, tr_lo, tr_hi)
        run_cfg = long_leg_config(chosen)
        p, s = panel.slice_bars(0, te_hi), scans[0:te_hi]
        res = run_backtest(p, s, run_cfg, trade_from_ms=int(p.close_time[tr_hi]),
                           state=EngineState.fresh(capital))
        t = res.trades.copy()
        t["fold"] = len(fold_rows)
        trades.append(t)
        ts_parts.append(res.ts[tr_hi:])
        eq_parts.append(res.equity[tr_hi:])
        m = compute_metrics(t, res.ts[tr_hi:], res.equity[tr_hi:], capital, bar_ms=panel.bar_ms)
        top = grid[grid.chosen].iloc[0]
        fold_rows.append({"fold": len(fold_rows), "train": f"{day_label(start)}..{day_label(start + (tr_d - 1) * DAY_MS)}",
                          "test": f"{day_label(int(panel.open_time[tr_hi]))}..{day_label(int(panel.open_time[te_hi - 1]))}",
                          "quantile": float(top["quantile"]),
                          "long_entry_threshold": chosen.long_entry_threshold,
                          "long_extreme_threshold": chosen.long_extreme_threshold,
                          "train_trades": int(top.trades), "train_sharpe": float(top.sharpe),
                          "test_trades": m.n_trades, "test_roi": m.roi, "test_pf": m.profit_factor,
                          "test_win_rate": m.win_rate, "test_max_dd": m.max_drawdown})
        capital = float(res.equity[-1])
        start += te_d * DAY_MS
    oos_tr = pd.concat(trades, ignore_index=True) if trades else pd.DataFrame()
    ts, eq = np.concatenate(ts_parts), np.concatenate(eq_parts)
    m = compute_metrics(oos_tr.drop(columns=["fold"]), ts, eq, base.initial_capital, bar_ms=panel.bar_ms)
    values = {"profit_factor": m.profit_factor, "win_rate": m.win_rate, "roi": m.roi,
              "max_drawdown": m.max_drawdown, "trades": float(m.n_trades)}
    gate, passed = gate_verdict(values, span_days)
    # the deployable LONG thresholds: the same calibration on the most recent training window
    last_lo = _day_start_bar(panel, max(d0, d_end - tr_d * DAY_MS))
    final_cfg, final_grid = calibrate_long(panel, scans, base, last_lo, panel.n_bars)
    params = long_leg_params(final_cfg)
    folds = pd.DataFrame(fold_rows)
    results = {"procedure": "walk-forward LONG-leg calibration (dolphin.research.long_gate)",
               "train_days": tr_d, "test_days": te_d, "folds": int(len(folds)),
               "oos_first_day": day_label(int(ts[0]) - panel.bar_ms), "oos_last_day": day_label(int(ts[-1]) - 1),
               "oos_days": float((int(ts[-1]) - int(ts[0]) + panel.bar_ms) / DAY_MS),
               "data_days": float(span_days), "bars": int(panel.n_bars), "assets": int(panel.n_assets),
               "bar_ms": int(panel.bar_ms),  # the params' bar counts are bars of this size
               "oos": {"roi": m.roi, "profit_factor": m.profit_factor, "win_rate": m.win_rate,
                       "max_drawdown": m.max_drawdown, "trades": m.n_trades, "sharpe": m.sharpe},
               "fold_table": _jsonable(folds.to_dict(orient="records")),
               "final_calibration": {"train": f"{day_label(int(panel.open_time[last_lo]))}..{day_label(int(panel.open_time[-1]))}",
                                     "grid": _jsonable(final_grid.to_dict(orient="records"))},
               "risk_layer": "none (neutral posture, MC, ACB, Rm)"}
    rec = ValidationRecord(leg="long", data_fingerprint=data_fingerprint(path, content=False), data_set=data_set,
                           config_hash=config_hash(params), params=params, code_version=code_version(),
                           gate=gate, passed=passed, results=results)
    where = save_record(rec, home) if save else None
    return LongValidation(data_set, rec, folds, oos_tr, ts, eq, final_cfg, where)


def _jsonable(rows):
    out = []
    for r in rows:
        out.append({k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()})
    return out


def require_long_validation(cfg: EngineConfig, home=None) -> None:
    """Refuse a configuration whose LONG leg trades without a passing record for its exact LONG parameters."""
    if not cfg.long_active:
        return
    params = long_leg_params(cfg)
    h = config_hash(params)
    recs = find_records(params, "long", home)
    if any(r.passed for r in recs):
        return
    if not recs:
        raise LongGateError(
            f"config {cfg.name!r} trades LONG (direction {cfg.direction}, long_enabled true) but no LONG validation "
            f"record exists for its LONG parameters (config hash {h[:16]}, long_entry_threshold "
            f"{cfg.long_entry_threshold}, long_extreme_threshold {cfg.long_extreme_threshold}); run "
            f"`dolphin validate-long --data mixed-1h-2022-2026` and use the parameters it prints, or set long_enabled: false")
    r = recs[0]
    failed = ", ".join(f"{k} {g['value']:.4g} (needs {g['threshold']})" for k, g in r.gate.items() if not g["passed"])
    raise LongGateError(
        f"config {cfg.name!r} trades LONG but its LONG validation record failed: {r.file_name} on {r.data_set} "
        f"({r.created_at}): {failed}; GREEN stays SHORT-only (set long_enabled: false)")


def register(sub) -> None:
    p = sub.add_parser("validate-long", help="walk-forward validation of GREEN's LONG leg; stores the record")
    p.add_argument("--data", default="mixed-1h-2022-2026", help="candle set name under <data>/klines or a path")
    p.add_argument("--config", default="green", help="base preset or YAML (its LONG thresholds are recalibrated)")
    p.add_argument("--train-days", type=int, default=None, help="training window (default per set, else 365)")
    p.add_argument("--test-days", type=int, default=None, help="test window and roll step (default per set, else 91)")
    p.add_argument("--no-save", action="store_true", help="do not store the validation record")
    p.set_defaults(func=cmd_validate_long)


def cmd_validate_long(args) -> int:
    import sys
    from pathlib import Path

    import yaml

    from dolphin.engine.config import _load_config_unchecked
    from dolphin.paths import resolve_kline_set

    base = _load_config_unchecked(args.config)  # the base may name LONG thresholds no record covers yet
    path = resolve_kline_set(args.data)
    name = path.name
    try:
        v = validate_long(name, base, train_days=args.train_days, test_days=args.test_days, save=not args.no_save,
                          path=path)
    except ValueError as e:  # a set too short for one fold: the reason in one line
        print(f"dolphin: error: validate-long {args.data}: {e}", file=sys.stderr)
        return 1
    r = v.record
    from dolphin.engine.configcheck import declared_bar_ms
    from dolphin.timeutil import bar_label

    cfg_bar = declared_bar_ms(args.config)
    if cfg_bar != v.record.results["bar_ms"]:  # validated as given: the record matches these exact bar counts
        print(f"NOTE: the config's bar counts are for {bar_label(cfg_bar)} bars and run here on "
              f"{bar_label(v.record.results['bar_ms'])} bars ({v.record.results['bar_ms'] / cfg_bar:g} x the "
              f"durations); a config with `bar: {bar_label(v.record.results['bar_ms'])}` and durations validates "
              f"the same durations")
    print(f"LONG leg walk-forward on {name}: {r.results['folds']} folds, train {r.results['train_days']} d / "
          f"test {r.results['test_days']} d, out of sample {r.results['oos_first_day']} .. {r.results['oos_last_day']}")
    print(v.folds.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    print()
    for k, g in r.gate.items():
        print(f"  {k:<14} {g['value']:>12.4f}  {g['threshold']:<8} {'pass' if g['passed'] else 'FAIL'}")
    print(f"\nLONG gate: {'PASSED' if r.passed else 'FAILED'}"
          + ("" if r.passed else ": GREEN stays SHORT-only (long_enabled: false)"))
    print("LONG parameters (last training window): "
          + yaml.safe_dump({"long_entry_threshold": v.final_config.long_entry_threshold,
                            "long_extreme_threshold": v.final_config.long_extreme_threshold},
                           default_flow_style=True).strip())
    print(f"record: {v.record_path or '(not saved)'}")
    return 0
