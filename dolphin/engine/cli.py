"""`dolphin backtest` and `dolphin calibrate`."""

import sys
import time
from pathlib import Path


def register(sub) -> None:
    from dolphin.errors import bar_arg, fraction_arg, time_arg

    p = sub.add_parser("backtest", help="scan (cached) + engine + metrics + HTML report")
    p.add_argument("--data", default="spot-5m-2024", help="candle set name under <data>/klines or a path")
    p.add_argument("--config", default=None, help="preset (blue, green) or YAML file")
    p.add_argument("--start", default=None, type=time_arg, help="first day/time (UTC) to trade")
    p.add_argument("--end", default=None, type=time_arg, help="last day/time (UTC), inclusive")
    p.add_argument("--bar-ms", default=None, type=bar_arg, metavar="BAR",
                   help="bar size to keep (5m, 1h or ms) when the files mix intervals; others dropped, reported")
    p.add_argument("--split", type=fraction_arg(allow_zero=True), default=0.6,
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
    c.add_argument("--split", type=fraction_arg(allow_zero=False), default=0.6,
                   help="in-sample fraction of the days, in (0, 1) (default 0.6)")
    c.add_argument("--bar-ms", default=None, type=bar_arg, metavar="BAR",
                   help="bar size to keep (5m, 1h or ms) when the files mix intervals; others dropped, reported")
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

    from dolphin.data.align import AlignRules
    from dolphin.errors import check_output_file

    cfg = load_config(args.config)
    _check_bar_size(cfg, args)
    start, end = time_bounds(args.start, args.end)
    name = Path(str(args.data)).name
    if args.report:  # checked before the run: a bad path must not cost the whole backtest
        check_output_file(args.report, "--report")
    if args.trades_csv:
        check_output_file(args.trades_csv, "--trades-csv")
    t0 = time.perf_counter()
    r = run(args.data, cfg, start_ms=start, end_ms=end, split=args.split or None, progress=sys.stderr.isatty(),
            risk_layer=getattr(args, "risk_layer", "none"), book=getattr(args, "book", None),
            rules=AlignRules(bar_ms=getattr(args, "bar_ms", None)))
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
    suffix = ("" if r.risk_run is None else f"_risk-{args.risk_layer}") + ("" if r.book is None else "_book")
    from dolphin.research.records import config_hash

    # the config's hash in the name: two configs never overwrite each other's report
    out = Path(args.report) if args.report else data_home() / "reports" / (
        f"backtest_{name}_{cfg.name.lower()}{suffix}_{config_hash(cfg.to_dict())[:8]}.html")
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


def _check_bar_size(cfg, args) -> None:
    """Refuse a config whose bar counts were written for another bar size than the data's."""
    from dolphin.data.loader import data_bar_ms
    from dolphin.engine.configcheck import ConfigValueError, check_bar_size, declared_bar_ms
    from dolphin.errors import UserInputError
    from dolphin.paths import resolve_kline_set

    bar = getattr(args, "bar_ms", None) or data_bar_ms(resolve_kline_set(args.data))
    if bar is None:
        return  # align reports what it finds
    try:
        check_bar_size(cfg, args.config, declared_bar_ms(args.config), bar, str(args.data))
    except ConfigValueError as e:
        raise UserInputError(str(e)) from None


def cmd_calibrate(args) -> int:
    from dolphin.data import load_panel
    from dolphin.engine.calibrate import calibrate
    from dolphin.engine.config import load_config
    from dolphin.engine.pipeline import scans_cached
    from dolphin.paths import resolve_kline_set
    from dolphin.timeutil import fmt_ms

    from dolphin.data.align import AlignRules
    from dolphin.errors import UserInputError, check_output_file

    base = load_config(args.config)
    _check_bar_size(base, args)
    for opt, val in (("--out", args.out), ("--grid-csv", args.grid_csv)):
        if val:  # before the grid is computed: a bad path must not lose it
            check_output_file(val, opt)
    path = resolve_kline_set(args.data)
    from dolphin.engine.calibrate import check_in_sample

    panel = load_panel(path, rules=AlignRules(bar_ms=getattr(args, "bar_ms", None)))
    try:
        check_in_sample(panel.open_time, args.split)  # before the scans: a refusal costs nothing
        scans, _ = scans_cached(path, panel, progress=sys.stderr.isatty())
        res = calibrate(panel, scans, base, args.split)
    except ValueError as e:  # CalibrationRefused / an empty side of the split: the reason, in one line
        raise UserInputError(f"calibrate {args.data}: {e}") from None
    for w in res.warnings or []:
        print(f"WARNING: {w}")
    print(f"in-sample: {res.in_sample_days} days, up to {fmt_ms(res.split_ms)} UTC (exclusive)")
    cols = ["quantile", "entry_threshold", "extreme_threshold", "max_hold_bars", "w_move", "trades",
            "trades_per_day", "roi", "profit_factor", "win_rate", "sharpe", "chosen"]
    print(res.grid[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print()
    print(res.risk_grid.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    b = res.best
    print(f"\nchosen: entry_threshold={b.entry_threshold} extreme_threshold={b.extreme_threshold} "
          f"max_hold_bars={b.max_hold_bars} w_move={b.w_move} capital_fraction={b.capital_fraction}")
    from dolphin.research.provenance import day_before, save_calibration

    # where these values were chosen: reports print "in-sample" only for this data and window
    rec = save_calibration(b, path, Path(str(args.data)).name, fmt_ms(int(panel.open_time[0]))[:10],
                           day_before(res.split_ms))
    print(f"calibration record: {rec}")
    failed = []
    for what, path_, write in (("--out", args.out, lambda p: b.to_yaml(Path(p))),
                               ("--grid-csv", args.grid_csv, lambda p: res.grid.to_csv(p, index=False))):
        if not path_:
            continue
        try:
            write(path_)
            print(f"written: {path_}")
        except OSError as e:  # the path went bad during the run: the results above stay on screen
            failed.append(f"{what} {path_}: {e.strerror or e}")
    if failed:
        print("chosen configuration (not written):\n" + b_yaml(b), file=sys.stderr)
        raise UserInputError("; ".join(failed) + " (the grid and the chosen configuration are printed above)")
    return 0


def b_yaml(cfg) -> str:
    import yaml

    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
