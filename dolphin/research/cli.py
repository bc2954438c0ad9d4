"""`dolphin validate`: walk-forward validation of a preset (dolphin.research.walkforward), its report and
its validation record (dolphin.research.records)."""

import math
import sys
import time
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd


def register(sub) -> None:
    p = sub.add_parser("validate", help="walk-forward validation: calibrate, test on the next window, roll; "
                                        "out-of-sample metrics, floors, deflated Sharpe, validation record")
    p.add_argument("--data", default="spot-5m-2024", help="candle set name under <data>/klines or a path")
    p.add_argument("--config", default=None, help="base preset (blue, green) or YAML file")
    p.add_argument("--folds", type=int, default=None,
                   help="K folds: test windows of N/(K+2) days, training windows twice that (default 4)")
    p.add_argument("--train-days", type=int, default=None, help="training window in days (with --test-days)")
    p.add_argument("--test-days", type=int, default=None, help="test window in days (with --train-days)")
    p.add_argument("--fixed", action="store_true",
                   help="test the configuration as given on every test window (no calibration)")
    p.add_argument("--leg", choices=("short", "long"), default=None,
                   help="leg recorded (default: short, or long for a long_only config)")
    p.add_argument("--report", default=None, help="HTML report path (default: <DOLPHIN_HOME>/reports/...)")
    p.add_argument("--max-trade-loss", type=float, default=None,
                   help="override the config's per-trade loss bound (fraction of capital; 0 = off)")
    p.add_argument("--no-record", action="store_true", help="do not store a validation record")
    p.set_defaults(func=cmd_validate)


def _pct(v, d=2):
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v * 100:.{d}f} %"


def _f(v, d=3):
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{d}f}"


def fold_rows(wf) -> list:
    rows = []
    for r in wf.fold_table().to_dict("records"):
        rows.append([str(r["fold"]), r["train"], r["test"], f"{r['entry_thr']:.6f}", str(r["hold"]),
                     f"{r['w_move']:+.0f}", f"{r['cap_frac']:.2f}", _f(r["IS sharpe"], 2), _f(r["IS DSR"], 3),
                     _pct(r["OOS roi"]), str(r["OOS trades"]), _pct(r["OOS win"], 1), _f(r["OOS PF"], 2),
                     _pct(r["OOS maxDD"], 1), _f(r["OOS sharpe"], 2)])
    return rows


FOLD_HEAD = ["fold", "train", "test", "entry thr", "hold", "w_move", "cap frac", "IS Sharpe", "IS DSR",
             "OOS ROI", "OOS trades", "OOS win", "OOS PF", "OOS max DD", "OOS Sharpe"]


def summary_lines(wf) -> list:
    from dolphin.engine.report_data import _floor_cell

    m, d = wf.metrics, wf.dsr
    L = [f"concatenated out-of-sample ({len(wf.folds)} test windows, {len(wf.daily)} days): ROI {_pct(m.roi)}, "
         f"{m.n_trades} trades, win rate {_pct(m.win_rate, 1)}, PF {_f(m.profit_factor, 3)}, max drawdown "
         f"{_pct(m.max_drawdown, 1)} (per bar), Sharpe {_f(m.sharpe, 2)} (daily, sqrt 365)",
         f"deflated Sharpe (Bailey & Lopez de Prado): DSR {_f(d['dsr'], 4)} given {d['n_trials']} configurations "
         f"tried (SR0 {_f(d['sr0_daily'], 4)}/day vs SR {_f(d['sharpe_daily'], 4)}/day over {d['n_obs']} days, "
         f"skew {_f(d['skew'], 2)}, kurtosis {_f(d['kurtosis'], 2)}); PSR(SR > 0) {_f(d['psr'], 4)}",
         f"drawdown: worst 55-day window {_pct(wf.dd_windows.get('per_bar'), 1)} per bar vs "
         f"{_pct(wf.dd_windows.get('end_of_day'), 1)} on end-of-day equity (the floor's definition), same series",
         f"floors on the out-of-sample series: {wf.floors.status}"]
    for fr in wf.floors.floors:
        cell = _floor_cell(fr)
        L.append(f"  {fr.spec.label} ({fr.spec.window_days}-day) {fr.spec.rule}: {cell}")
    return L


def validation_section(wf, gate: dict, rec_path) -> str:
    from dolphin.report.svg import Chart

    head = "".join(f"<th>{escape(h)}</th>" for h in FOLD_HEAD)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in fold_rows(wf))
    # per-fold bars: out-of-sample ROI of each test window, placed at the window's middle
    mids, rois = [], []
    for f in wf.folds:
        mids.append(float((f.ts[0] + f.ts[-1]) / 2) if len(f.ts) else 0.0)
        rois.append(float(f.oos["roi"]) * 100)
    x0, x1 = float(wf.ts[0]), float(wf.ts[-1])
    width = (x1 - x0) / max(len(mids), 1) * 0.9
    c = Chart("Out-of-sample ROI per fold (%)", x0, x1, min(min(rois), 0.0), max(max(rois), 0.0), "%", "{:.1f}")
    c.axes().bars(np.array(mids), np.array(rois), width)
    gate_rows = "".join(f'<tr><td class="l">{escape(k)}</td><td>{escape(str(_gv(v["value"])))}</td>'
                        f'<td>{escape(v["threshold"])}</td><td class="{"pass" if v["passed"] else "fail"}">'
                        f'{"PASS" if v["passed"] else "FAIL"}</td></tr>' for k, v in gate.items())
    lines = "".join(f"<li>{escape(s)}</li>" for s in summary_lines(wf))
    rec = f"<p class='sub'>validation record: {escape(str(rec_path))}</p>" if rec_path else ""
    return (f"<ul class='notes'>{lines}</ul>{c.svg()}"
            f'<div class="scroll"><table id="folds"><tr>{head}</tr>{body}</table></div>'
            f'<h3>Validation gate (DESIGN.md, out of sample)</h3><table id="gate"><tr><th class="l">criterion</th>'
            f"<th>value</th><th>rule</th><th>verdict</th></tr>{gate_rows}</table>{rec}")


def _gv(v):
    return f"{v:.4f}" if isinstance(v, float) else v


def cmd_validate(args) -> int:
    from dolphin.data import load_panel
    from dolphin.engine.config import load_config
    from dolphin.engine.funding import find_funding_dir
    from dolphin.engine.pipeline import scans_cached
    from dolphin.engine.report_data import _metric_dict
    from dolphin.metrics.fmt import text_table
    from dolphin.paths import data_home, resolve_kline_set
    from dolphin.report import write_report
    from dolphin.report.html import ReportData
    from dolphin.research.records import ValidationRecord, code_version, config_hash, data_fingerprint, save_record
    from dolphin.research.walkforward import ValidationError, walk_forward

    cfg = load_config(args.config)
    from dolphin.engine.cli import _check_bar_size

    _check_bar_size(cfg, args)  # the same refusal as dolphin backtest: 5m bar counts on 1h data are another strategy
    if args.max_trade_loss is not None:
        cfg = cfg.with_(max_trade_loss=args.max_trade_loss)
    leg = args.leg or ("long" if cfg.direction == "long_only" else "short")
    path = resolve_kline_set(args.data)
    t0 = time.perf_counter()
    panel = load_panel(path)
    scans, hit = scans_cached(path, panel, progress=sys.stderr.isatty())
    try:
        wf = walk_forward(panel, scans, cfg, data=str(args.data), folds=args.folds, train_days=args.train_days,
                          test_days=args.test_days, fixed=args.fixed,
                          funding_dir=find_funding_dir(path) if path.is_dir() else None,
                          progress=lambda s: print("  " + s, file=sys.stderr, flush=True))
    except ValidationError as e:
        print(f"dolphin validate: {e}", file=sys.stderr)
        return 2
    name = Path(str(args.data)).name
    mode = "fixed configuration" if args.fixed else "calibrated on each training window (dolphin calibrate's grid)"
    print(f"{cfg.name} walk-forward on {name}: {len(panel.symbols)} assets, {len(wf.folds)} folds, {mode}; "
          f"{time.perf_counter() - t0:.1f} s")
    print(text_table(FOLD_HEAD, fold_rows(wf)))
    for line in summary_lines(wf):
        print(line)
    for n in wf.notes:
        print("  note: " + n)
    gate = wf.gate(leg)
    passed = all(g["passed"] for g in gate.values())
    print(f"validation gate ({leg} leg, out of sample): {'PASS' if passed else 'FAIL'} -- " + "; ".join(
        f"{k} {_gv(v['value'])} {v['threshold']} {'ok' if v['passed'] else 'FAILED'}" for k, v in gate.items()))
    params = cfg.to_dict()
    if not args.fixed:
        from dolphin.engine import calibrate as cal
        params = {**params, "walk_forward": {"grid": {"quantiles": list(cal.QUANTILES),
                                                      "max_holds": list(cal.MAX_HOLDS),
                                                      "w_moves": list(cal.W_MOVES),
                                                      "fractions": list(cal.FRACTIONS)},
                                             "max_dd": cal.MAX_DD, "min_trades_per_day": cal.MIN_TRADES_PER_DAY}}
    first, last = wf.folds[0].fold.test_days[0], wf.folds[-1].fold.test_days[1]
    rec_path = None
    if not args.no_record:
        fp = data_fingerprint(path, wf.folds[0].fold.train_days[0], last)
        m = wf.metrics
        results = {"oos": {k: v for k, v in m.as_dict().items()}, "floors": wf.floors.as_dict(),
                   "deflated_sharpe": wf.dsr, "drawdown_windows": wf.dd_windows,
                   "folds": wf.fold_table().to_dict("records"), "fixed": bool(args.fixed),
                   "window": [first, last], "n_trials": wf.n_trials, "notes": wf.notes,
                   "chosen": [f.config.to_dict() for f in wf.folds]}
        rec = ValidationRecord(leg=leg, data_fingerprint=fp, data_set=name, config_hash=config_hash(params),
                               params=params, code_version=code_version(), gate=gate, passed=passed,
                               results=_jsonable(results))
        rec_path = save_record(rec)
        print(f"validation record: {rec_path}")
    lo_ts = wf.ts
    idx = np.searchsorted(panel.close_time, lo_ts)
    vd = scans.vel_div[idx] / panel.n_assets
    daily = wf.daily[["date", "pnl"]]
    notes = [f"walk-forward: {mode}; every column is out of sample: each test window's configuration was "
             f"chosen on the training window before it only", *wf.notes,
             "positions open at the end of a test window are closed at its last close (exit reason 'end')"]
    rd = ReportData(
        title=f"DOLPHIN {cfg.name} walk-forward validation: {name}",
        subtitle=f"data {name} | {len(panel.symbols)} assets | bar {panel.bar_ms // 60000} min | out of sample "
                 f"{first} .. {last} UTC | {len(wf.folds)} folds | {mode}",
        ts=wf.ts, equity=wf.equity, vel_div=vd, entry_threshold=cfg.entry_threshold, trades=wf.trades,
        daily=pd.DataFrame(daily), metrics={"Out-of-sample (walk-forward)": _metric_dict(wf.metrics)},
        floors=[{"floor": f"{fr.spec.label} ({fr.spec.window_days}-day)", "rule": fr.spec.rule,
                 "Out-of-sample": _floor_cell_text(fr)}
                for fr in wf.floors.floors],
        notes=notes, config=params, sections=[("Walk-forward validation", validation_section(wf, gate, rec_path))])
    suffix = "fixed" if args.fixed else f"wf{len(wf.folds)}"
    out = Path(args.report) if args.report else (
        data_home() / "reports" / f"validate_{name}_{cfg.name.lower()}_{suffix}_{config_hash(params)[:8]}.html")
    write_report(rd, out)
    print(f"report: {out.resolve()}")
    return 0


def _floor_cell_text(fr) -> str:
    from dolphin.engine.report_data import _floor_cell
    return _floor_cell(fr)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v
    if isinstance(x, (np.bool_,)):
        return bool(x)
    return x
