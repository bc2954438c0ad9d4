"""`dolphin scan`: eigenvalue scans of a candle set -> daily Parquet (+ optional per-scan Arrow)."""

import sys
import time
from pathlib import Path


def register(sub) -> None:
    from dolphin.errors import bar_arg, time_arg

    p = sub.add_parser(
        "scan",
        help="eigenvalue scans of a candle set -> <out>/scans_YYYY-MM-DD.parquet",
        description="Scan every bar of a candle set: largest eigenvalues of the w50/w150/w300/w750 "
        "correlation matrices, velocities, vel_div, instability, loadings. One Parquet file per UTC "
        "day (by bar open time). With --start, 751 bars before that day are loaded as warm-up.",
    )
    p.add_argument("--data", required=True, help="candle set name under <data>/klines (e.g. spot-5m-2024) or a path")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--start", type=time_arg, help="first bar to emit: UTC date / date-time or unix ms (default: data start)")
    p.add_argument("--bar-ms", default=None, type=bar_arg, metavar="BAR",
                   help="bar size to keep (5m, 1h or ms) when the files mix intervals; others dropped, reported")
    p.add_argument("--end", type=time_arg, help="last bar to emit, inclusive; a date means the whole day (default: data end)")
    p.add_argument("--arrow-files", nargs="?", const="", default=None, metavar="DIR",
                   help="also write one Arrow IPC file per scan to DIR/YYYY-MM-DD/scan_<ms>.arrow; DIR defaults "
                        "to the folder the scan-file sensor and `dolphin bridge` watch ($DOLPHIN_HOME/scans)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from dolphin.data.loader import load_panel
    from dolphin.scanner.core import WARMUP_BARS, scan
    from dolphin.scanner.writer import scan_dir, time_bounds, write_day_parquet, write_scan_arrow
    from dolphin.timeutil import DAY_MS, fmt_ms
    from dolphin.data.align import AlignRules
    from dolphin.errors import UserInputError
    from dolphin.scanner import recovery

    start_ms, end_ms = time_bounds(args.start, args.end)
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out}: is a file; give a folder")
    arrow_dir = None if args.arrow_files is None else scan_dir(args.arrow_files or None)
    # a killed earlier run: say so, and remove its temporary files (no reader ever looks at them)
    prev = recovery.previous_run(out)
    if prev is not None:
        print(f"scan: the previous scan into {out} (pid {prev.get('pid')}, started {prev.get('started')} UTC, "
              f"{prev.get('args')}) did not finish: its output is incomplete; this run rewrites the days it covers",
              file=sys.stderr)
    for root in {out, *([arrow_dir] if arrow_dir is not None else [])}:
        gone = recovery.clean_stale_tmp(root)
        if gone:
            print(f"scan: removed {len(gone)} stale temporary file(s) of a killed scan under {root} "
                  f"(e.g. {gone[0].name})", file=sys.stderr)
    rules = AlignRules(bar_ms=getattr(args, "bar_ms", None))
    t0 = time.perf_counter()
    if start_ms is None:
        panel = load_panel(args.data, end_ms=end_ms, rules=rules)
    else:  # whole UTC days are scanned (day anchoring), warm-up before the day
        panel = load_panel(args.data, start_ms=(start_ms // DAY_MS) * DAY_MS, end_ms=end_ms,
                           warmup_bars=WARMUP_BARS, rules=rules)
    recovery.mark_started(out, f"--data {args.data} --start {args.start} --end {args.end}")
    t1 = time.perf_counter()
    res = scan(panel, start_ms=start_ms, end_ms=end_ms, progress=not args.no_progress)
    t2 = time.perf_counter()
    paths = write_day_parquet(res, out)
    if arrow_dir is not None and len(res):
        from tqdm import tqdm

        for i in tqdm(range(len(res)), unit="file", desc="arrow", disable=args.no_progress):
            write_scan_arrow(res[i], arrow_dir)
    t3 = time.perf_counter()
    recovery.mark_finished(out)

    if len(res) == 0:
        print(f"scan: no bars in the requested range of {args.data}", file=sys.stderr)
        return 1
    fb = res.fallback_counts()
    valid = res.valid.sum(axis=0)
    print(f"scan {args.data}: {res.n_assets} assets, {len(res)} bars "
          f"{fmt_ms(res.open_time[0])} .. {fmt_ms(res.open_time[-1])} UTC, {len(paths)} day file(s) -> {out}")
    if arrow_dir is not None:
        print(f"  {len(res)} per-scan Arrow file(s) -> {arrow_dir}/YYYY-MM-DD/")
    print("  valid bars:  " + ", ".join(f"w{w} {int(v)}" for w, v in zip(res.windows, valid)))
    print("  exact fallbacks: " + ", ".join(f"w{w} {n}" for w, n in fb.items()))
    if panel.issues:
        print(f"  {len(panel.issues)} data issue(s) handled by rule (details: dolphin data inspect {args.data})")
    print(f"  time: load {t1 - t0:.2f}s, scan {t2 - t1:.2f}s ({(t2 - t1) / len(res) * 1e6:.1f} us/bar), "
          f"write {t3 - t2:.2f}s")
    return 0
