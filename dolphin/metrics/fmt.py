"""Aligned plain-text tables for terminals (no third-party formatter)."""

import math

from dolphin.metrics.core import Metrics
from dolphin.metrics.floors import NA, FloorReport
from dolphin.timeutil import fmt_ms


def text_table(headers, rows, align=None) -> str:
    """``align``: one 'l' or 'r' per column (default: first left, rest right)."""
    rows = [[str(c) for c in r] for r in rows]
    headers = [str(h) for h in headers]
    align = align or ["l"] + ["r"] * (len(headers) - 1)
    widths = [max([len(headers[i])] + [len(r[i]) for r in rows]) for i in range(len(headers))]

    def line(cells):
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align)).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def fmt_num(v, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    v = float(v)
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:,.{digits}f}" if abs(v) < 1000 else f"{v:,.2f}"


def _pct(v) -> str:
    return fmt_num(v) if v is None or not math.isfinite(v) else f"{v * 100:.2f} %"


def _ts(ms) -> str:
    return "-" if ms is None else fmt_ms(ms)


def format_metrics_table(m: Metrics) -> str:
    rows = [
        ("period", f"{_ts(m.start_ms)} .. {_ts(m.end_ms)}  ({m.days:.2f} days, {m.n_bars:,} bars)"),
        ("initial capital", fmt_num(m.initial_capital, 2)),
        ("final equity", fmt_num(m.final_equity, 2)),
        ("ROI", _pct(m.roi)),
        ("annualised return", _pct(m.annualised_return)),
        ("trades (long / short)", f"{m.n_trades:,} ({m.n_long:,} / {m.n_short:,})"),
        ("win rate", _pct(m.win_rate)),
        ("profit factor", fmt_num(m.profit_factor)),
        ("expectancy / trade", fmt_num(m.expectancy, 2)),
        ("avg win / avg loss", f"{fmt_num(m.avg_win, 2)} / {fmt_num(m.avg_loss, 2)}"),
        ("best / worst trade", f"{fmt_num(m.best_trade, 2)} / {fmt_num(m.worst_trade, 2)}"),
        ("total trade pnl", fmt_num(m.total_pnl, 2)),
        ("total fees", fmt_num(m.total_fees, 2)),
        ("total funding", fmt_num(m.total_funding, 2)),
        ("max drawdown", _pct(m.max_drawdown)),
        ("  peak", _ts(m.max_dd_peak_ms)),
        ("  trough", _ts(m.max_dd_trough_ms)),
        ("  recovery", "not recovered" if m.max_dd_trough_ms is not None and m.max_dd_recovery_ms is None
         else _ts(m.max_dd_recovery_ms)),
        ("Sharpe (daily, sqrt 365)", fmt_num(m.sharpe, 3)),
        ("Sortino (daily, sqrt 365)", fmt_num(m.sortino, 3)),
        ("Calmar", fmt_num(m.calmar, 3)),
        ("exposure", _pct(m.exposure)),
        ("avg hold", f"{fmt_num(m.avg_hold_minutes, 1)} min ({fmt_num(m.avg_hold_bars, 2)} bars)"),
        ("days", f"{m.n_days:,}"),
    ]
    return text_table(("metric", "value"), rows, ("l", "l"))


def _floor_value(key, v) -> str:
    if key in ("win_rate", "roi", "max_drawdown") and v is not None and math.isfinite(v):
        return f"{v * 100:.2f} %"
    if key == "trades" and v is not None and math.isfinite(v):
        return f"{int(v)}"
    return fmt_num(v, 3)


def format_floors_table(report: FloorReport) -> str:
    rows = []
    for f in report.floors:
        s = f.spec
        thr = _floor_value(s.key, s.threshold)
        if f.status == NA:
            worst = latest = f"not evaluable ({f.n_days} < {s.window_days} days)"
            n = "-"
        else:
            worst = f"{_floor_value(s.key, f.worst_value)} ({f.worst_start}..{f.worst_end})"
            latest = f"{_floor_value(s.key, f.latest_value)} ({f.latest_end})"
            n = f"{f.n_pass}/{f.n_windows}"
        rows.append((s.label, f"{s.window_days}d", f"{s.comparator} {thr}", n, worst, latest, f.status))
    head = f"floors {report.first_day or '-'} .. {report.last_day or '-'}: {report.status}"
    table = text_table(("floor", "window", "rule", "pass", "worst (window)", "latest (end)", "status"), rows,
                       ("l", "r", "l", "r", "l", "l", "l"))
    return "\n".join([head, table] + [f"note: {n}" for n in report.notes])
