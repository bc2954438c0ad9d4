"""`dolphin data inspect <path-or-set>`: what a candle set holds and every problem in it.

Exit code 0 whenever the data could be read (problems are reported, not fatal), 1 when it cannot.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from dolphin.data.align import AlignRules, align, find_gaps, infer_bar_ms
from dolphin.data.contracts import DataError
from dolphin.data.loader import read_for_window, skipped_files_issue
from dolphin.paths import DataNotFoundError, resolve_kline_set
from dolphin.timeutil import DAY_MS, bar_label, fmt_ms, parse_bar, parse_time

GAPS_SHOWN = 3


def register(data_sub) -> None:
    p = data_sub.add_parser(
        "inspect",
        help="symbols, bar interval, windows, gaps and every data problem of a candle set",
        description=__doc__,
    )
    p.add_argument("source", help="candle set name (under <data>/klines) or a file / folder")
    p.add_argument("--start", type=parse_time, help="window start (UTC date/time or epoch ms, inclusive)")
    p.add_argument("--end", type=parse_time, help="window end (UTC date/time or epoch ms, inclusive bar open)")
    p.add_argument("--bar-ms", type=parse_bar, help="bar interval to align on (5m, 1h or ms); "
                   "assets with another interval are dropped and reported")
    p.add_argument("--symbols", help="comma-separated symbols to read (default: all)")
    p.add_argument("--timeframe", help="only files named with this timeframe (e.g. 5m), for folders holding several")
    p.set_defaults(func=run)


def run(args) -> int:
    return inspect(
        args.source, start_ms=args.start, end_ms=args.end, bar_ms=args.bar_ms,
        symbols=[s for s in args.symbols.split(",") if s.strip()] if args.symbols else None,
        timeframe=args.timeframe,
    )


def main(argv=None) -> int:
    """Stand-alone entry (``python -m dolphin.data.inspect_cmd``), same arguments as ``dolphin data inspect``."""
    parser = argparse.ArgumentParser(prog="dolphin data inspect")
    register(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["inspect", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


def inspect(source, *, start_ms=None, end_ms=None, bar_ms=None, symbols=None, timeframe=None, out=None) -> int:
    out = out or sys.stdout

    def say(line=""):
        print(line, file=out)

    try:
        path = resolve_kline_set(str(source))
        rules = AlignRules(bar_ms=bar_ms)
        candles = read_for_window(path, symbols=symbols, start_ms=start_ms, end_ms=end_ms, rules=rules,
                                  timeframe=timeframe)
    except (DataError, DataNotFoundError, OSError) as exc:
        print(f"dolphin data inspect: cannot read {source}: {exc}", file=sys.stderr)
        return 1

    say(f"source:   {path}")
    fmts = Counter(candles.file_formats.values())
    say("format:   " + ", ".join(f"{fmt} ({n} file{'s' if n != 1 else ''})" for fmt, n in sorted(fmts.items())))
    for f, why in candles.skipped:
        say(f"skipped:  {Path(f).name}: {why}")
    syms = sorted(candles)
    say(f"symbols:  {len(syms)}: {' '.join(syms)}")

    # the per-symbol view is of the rows inside the requested window (the read includes a day before it)
    view = {}
    for s in syms:
        t = np.asarray(candles[s].open_time)
        m = np.ones(t.shape[0], bool)
        if start_ms is not None:
            m &= t >= start_ms
        if end_ms is not None:
            m &= t <= end_ms
        view[s] = t[m]
    intervals = {s: infer_bar_ms(t) for s, t in view.items()}
    known = sorted({b for b in intervals.values() if b is not None})
    bar = bar_ms or (known[0] if len(known) == 1 else None)
    if bar_ms:
        say(f"bar:      {bar_label(bar_ms)} (requested)")
    elif len(known) == 1:
        say(f"bar:      {bar_label(bar)}")
    else:
        say("bar:      " + ("MIXED " + ", ".join(bar_label(b) for b in known) if known else "unknown (< 2 bars)"))

    say("")
    say(f"{'symbol':<14} {'first bar':<19}  {'last bar':<19}  {'rows':>8} {'bar':>5} {'gaps':>5} {'missing':>8}  first gaps")
    for s in syms:
        t = view[s]
        b = intervals[s] or bar  # its own spacing: a 1h asset in a 5m request is not all gaps
        gaps = find_gaps(t, b) if b else []
        first_gaps = ", ".join(f"{fmt_ms(g)} ({n} bars)" if n > 1 else fmt_ms(g) for g, n in gaps[:GAPS_SHOWN])
        if len(gaps) > GAPS_SHOWN:
            first_gaps += f", ... ({len(gaps) - GAPS_SHOWN} more)"
        span = (fmt_ms(t.min()), fmt_ms(t.max())) if t.size else ("-", "-")
        say(f"{s:<14} {span[0]:<19}  {span[1]:<19}  {t.size:>8} {bar_label(intervals[s]) if intervals[s] else '-':>5} "
            f"{len(gaps):>5} {sum(n for _, n in gaps):>8}  {first_gaps}")

    say("")
    try:
        panel = align(candles, rules, start_ms=start_ms, end_ms=end_ms)
    except DataError as exc:
        say(f"common window: none -- cannot align: {exc}")
        say(f"summary: PROBLEM: {len(syms)} symbol(s) read, not alignable (see above)")
        return 0

    days = panel.n_bars * panel.bar_ms / DAY_MS
    say(f"common window: {fmt_ms(panel.open_time[0])} .. {fmt_ms(panel.open_time[-1])} UTC, {panel.n_bars} bars "
        f"({days:.1f} days), {panel.n_assets} of {len(syms)} symbols kept")
    dropped = sorted(set(syms) - set(panel.symbols))
    if dropped:
        say(f"dropped:  {' '.join(dropped)}")
    issues = list(panel.issues)
    if candles.skipped:
        issues.insert(0, skipped_files_issue(candles))
    say(f"issues:   {len(issues)}")
    for issue in issues:
        say(f"  {issue.describe()}")
    by_rule = Counter(i.rule for i in issues)
    filled, excluded = int(panel.filled.sum()), int(panel.excluded.sum())
    state = "OK" if not issues else "ISSUES"
    say(
        f"summary: {state}: {panel.n_assets} symbols x {panel.n_bars} {bar_label(panel.bar_ms)} bars, "
        f"{filled} filled and {excluded} excluded asset-bars, {len(issues)} issue(s)"
        + (" (" + ", ".join(f"{r}: {n}" for r, n in sorted(by_rule.items())) + ")" if by_rule else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
