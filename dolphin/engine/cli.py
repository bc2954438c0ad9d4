"""`dolphin backtest` and `dolphin calibrate`."""

import sys
import time
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("backtest", help="scan (cached) + engine + metrics + HTML report")
    p.add_argument("--data", default="spot-5m-2024", help="candle set name under <data>/klines or a path")
    p.add_argument("--config", default=None, help="preset (blue, green) or YAML file")
    p.add_argument("--start", default=None, help="first day/time (UTC) to trade")
    p.add_argument("--end", default=None, help="last day/time (UTC), inclusive")
    p.add_argument("--split", type=float, default=0.6,
                   help="in-sample fraction of days reported separately (0 = no split)")
    p.add_argument("--report", default=None, help="HTML report path (default: <DOLPHIN_HOME>/reports/...)")
    p.add_argument("--trades-csv", default=None, help="also write the trade list as CSV")
    p.add_argument("--risk-layer", choices=("none", "acb", "full"), default="none",
                   help="none = neutral risk inputs (APEX, boost 1); acb = ACB boost + adverse-turn exit; "
                        "full = ACB + MC forewarner + survival stack (see dolphin.engine.risklayer)")
    p.add_argument("--book", default=None, metavar="PATH",
                   help="order-book history: Binance bookDepth files (a folder, e.g. the cache of `dolphin data "
                        "download --kind bookDepth`); feeds the flow port and Cat3 (dolphin.book.history). "
                        "Without it: neutral flow, Cat3 0.5")
    p.set_defaults(func=cmd_backtest)

    c = sub.add_parser("calibrate", help="choose thresholds/exits on the in-sample part only")
    c.add_argument("--data", default="spot-5m-2024")
    c.add_argument("--config", default=None, help="base preset or YAML")
    c.add_argument("--split", type=float, default=0.6)
    c.add_argument("--out", default=None, help="YAML to write the chosen configuration to")
    c.add_argument("--grid-csv", default=None, help="write the whole grid as CSV")
    c.set_defaults(func=cmd_calibrate)


def cmd_backtest(args) -> int:
    from dolphin.engine.config import load_config
    from dolphin.engine.pipeline import run
    from dolphin.engine.report_data import (floors_table, metrics_table, monthly_table, report_data,
                                            risk_layer_table)
    from dolphin.paths import data_home
    from dolphin.report import write_report
    from dolphin.scanner.writer import time_bounds

    cfg = load_config(args.config)
    start, end = time_bounds(args.start, args.end)
    t0 = time.perf_counter()
    r = run(args.data, cfg, start_ms=start, end_ms=end, split=args.split or None, progress=sys.stderr.isatty(),
            risk_layer=getattr(args, "risk_layer", "none"), book=getattr(args, "book", None))
    elapsed = time.perf_counter() - t0
    print(f"{cfg.name} on {args.data}: {len(r.result.symbols)} assets, {r.panel.n_bars:,} bars, "
          f"scans {'cached' if r.scan_cache_hit else 'computed'}, {elapsed:.1f} s")
    print(f"  flow source: {r.flow_source}")
    for note in r.result.notes:
        print(f"  {note}")
    if r.panel.issues:
        print(f"  data: {len(r.panel.issues)} problem(s) reported (see `dolphin data inspect {args.data}`)")
    print()
    print(metrics_table(r))
    print()
    print(monthly_table(r))
    print()
    print(floors_table(r))
    if r.risk_run is not None:
        print()
        print(risk_layer_table(r))
    name = Path(str(args.data)).name
    suffix = ("" if r.risk_run is None else f"_risk-{args.risk_layer}") + ("" if r.book is None else "_book")
    out = Path(args.report) if args.report else data_home() / "reports" / f"backtest_{name}_{cfg.name.lower()}{suffix}.html"
    rd = report_data(r, f"DOLPHIN {cfg.name} backtest: {name}")
    if cfg.name.upper() == "GREEN":  # GREEN is judged against BLUE on the same data: both side by side
        from dolphin.engine.green import green_comparison

        cmp = green_comparison(args.data, cfg, r, start_ms=start, end_ms=end, split=args.split or None,
                               risk_layer=getattr(args, "risk_layer", "none"), book=getattr(args, "book", None))
        print()
        print(cmp.table())
        rd.sections.append(cmp.section())
    write_report(rd, out)
    if args.trades_csv:
        r.periods["All"]["trades"].to_csv(args.trades_csv, index=False)
    print()
    print(f"report: {out.resolve()}")
    return 0


def cmd_calibrate(args) -> int:
    from dolphin.data import load_panel
    from dolphin.engine.calibrate import calibrate
    from dolphin.engine.config import load_config
    from dolphin.engine.pipeline import scans_cached
    from dolphin.paths import resolve_kline_set
    from dolphin.timeutil import fmt_ms

    base = load_config(args.config)
    path = resolve_kline_set(args.data)
    panel = load_panel(path)
    scans, _ = scans_cached(path, panel, progress=sys.stderr.isatty())
    res = calibrate(panel, scans, base, args.split)
    print(f"in-sample: {res.in_sample_days} days, up to {fmt_ms(res.split_ms)} UTC (exclusive)")
    cols = ["quantile", "entry_threshold", "extreme_threshold", "max_hold_bars", "w_move", "trades",
            "trades_per_day", "roi", "profit_factor", "win_rate", "sharpe", "chosen"]
    print(res.grid[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print()
    print(res.risk_grid.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    b = res.best
    print(f"\nchosen: entry_threshold={b.entry_threshold} extreme_threshold={b.extreme_threshold} "
          f"max_hold_bars={b.max_hold_bars} w_move={b.w_move} capital_fraction={b.capital_fraction}")
    if args.out:
        b.to_yaml(Path(args.out))
        print(f"written: {args.out}")
    if args.grid_csv:
        res.grid.to_csv(args.grid_csv, index=False)
    return 0
