"""Turn a BacktestRun into terminal tables and the HTML report's data."""

import math

import numpy as np
import pandas as pd

from dolphin.metrics import monthly_from_daily
from dolphin.metrics.fmt import _floor_value, _pct, fmt_num, text_table
from dolphin.report.html import ReportData
from dolphin.timeutil import fmt_ms

# (label, attribute, formatter) shown side by side per period
METRIC_ROWS = [
    ("ROI", "roi", _pct),
    ("final equity", "final_equity", lambda v: fmt_num(v, 2)),
    ("trades", "n_trades", fmt_num),
    ("win rate", "win_rate", _pct),
    ("profit factor", "profit_factor", fmt_num),
    ("expectancy / trade", "expectancy", lambda v: fmt_num(v, 2)),
    ("max drawdown", "max_drawdown", _pct),
    ("Sharpe (daily, sqrt 365)", "sharpe", lambda v: fmt_num(v, 3)),
    ("Sortino", "sortino", lambda v: fmt_num(v, 3)),
    ("Calmar", "calmar", lambda v: fmt_num(v, 3)),
    ("exposure", "exposure", _pct),
    ("avg hold (min)", "avg_hold_minutes", lambda v: fmt_num(v, 1)),
    ("total fees", "total_fees", lambda v: fmt_num(v, 2)),
    ("total funding", "total_funding", lambda v: fmt_num(v, 2)),
    ("days", "n_days", fmt_num),
]


def period_labels(run) -> dict:
    """Truthful display names of the periods (dolphin.research.provenance): "In-sample" only where the
    thresholds' calibration record matches this data and window; else both split periods are named out of
    sample with where the preset was calibrated. Returns {"names": {key: label}, "note": text | None}."""
    cached = getattr(run, "_period_labels", None)
    if cached is not None:
        return cached
    names = {n: n for n in run.periods}
    note = None
    if run.split_ms is not None and "In-sample" in run.periods:
        from dolphin.paths import resolve_kline_set
        from dolphin.research.provenance import day_before, period_labels as labels_for

        m = run.periods["In-sample"]["metrics"]
        first = fmt_ms(m.start_ms)[:10] if m.start_ms is not None else None
        try:
            lab = labels_for(run.result.config, resolve_kline_set(run.data), first, day_before(run.split_ms))
        except Exception as e:  # a label must never break a report: say why it is not "in-sample"
            lab = {"in": "First part (out of sample)", "out": "Last part (out of sample)",
                   "note": f"both periods are labelled out of sample: calibration check failed ({e})"}
        names.update({"In-sample": lab["in"], "Out-of-sample": lab["out"]})
        note = f"{lab['note']}; out-of-sample from {fmt_ms(run.split_ms)} UTC"
    out = {"names": names, "note": note}
    try:
        run._period_labels = out
    except AttributeError:
        pass
    return out


def metrics_table(run) -> str:
    names = list(run.periods)
    shown = period_labels(run)["names"]
    rows = []
    for label, attr, f in METRIC_ROWS:
        rows.append([label] + [f(getattr(run.periods[n]["metrics"], attr)) for n in names])
    span = ["period"] + [f"{fmt_ms(run.periods[n]['metrics'].start_ms)[:10]}..{fmt_ms(run.periods[n]['metrics'].end_ms)[:10]}"
                         if run.periods[n]["metrics"].start_ms is not None else "-" for n in names]
    return text_table(["metric"] + [shown[n] for n in names], [span] + rows)


def _floor_cell(fr) -> str:
    if fr.status == "N/A":  # not enough days for one window: skipped, neither passed nor failed
        return f"skipped: N/A ({fr.n_days} days < {fr.spec.window_days})"
    return (f"{fr.status} {fr.n_pass}/{fr.n_windows} worst {_floor_value(fr.spec.key, fr.worst_value)}"
            f" ({fr.worst_start}..{fr.worst_end})")


def floors_rows(run) -> list:
    names = list(run.periods)
    shown = period_labels(run)["names"]
    first = run.periods[names[0]]["floors"]
    rows = []
    for i, f in enumerate(first.floors):
        s = f.spec
        row = {"floor": f"{s.label} ({s.window_days}-day)", "rule": f"{s.comparator} {_floor_value(s.key, s.threshold)}"}
        if s.key == "max_drawdown":
            row["floor"] += f" on {first.dd_series}"
        for n in names:
            row[shown[n]] = _floor_cell(run.periods[n]["floors"].floors[i])
        rows.append(row)
    return rows


def floors_table(run) -> str:
    rows = floors_rows(run)
    shown = period_labels(run)["names"]
    names = [shown[n] for n in run.periods]
    status = " | ".join(f"{shown[n]}: {run.periods[n]['floors'].status}" for n in run.periods)
    return f"quality floors (rolling windows; PASS = every window passes) -- {status}\n" + text_table(
        ["floor", "rule"] + names, [[r["floor"], r["rule"]] + [r[n] for n in names] for r in rows],
        ["l", "l"] + ["l"] * len(names))


def _metric_dict(m) -> dict:
    d = {}
    for label, attr, _ in METRIC_ROWS:
        v = getattr(m, attr)
        d[label] = v * 100 if attr in ("roi", "win_rate", "max_drawdown", "exposure") and v is not None and \
            not (isinstance(v, float) and math.isnan(v)) else v
    return {("ROI %" if k == "ROI" else f"{k} %" if k in ("win rate", "max drawdown", "exposure") else k): v
            for k, v in d.items()}


def report_data(run, title: str) -> ReportData:
    res = run.result
    allp = run.periods["All"]
    lo = run.panel.warmup_bars
    cfg = res.config
    notes = list(res.notes)
    notes.append("scans: reused from cache" if run.scan_cache_hit else "scans: computed (now cached)")
    labels = period_labels(run)
    if labels["note"]:
        notes.append(labels["note"])
    notes.append("vel_div is shown divided by N (the unit the thresholds apply to); "
                 "entries are marked at the fill bar, exits at the exit bar")
    for iss in run.panel.issues[:20]:
        notes.append("data: " + iss.describe())
    daily = allp["daily"][["date", "pnl"]]
    sub = (f"data {run.data} | {len(res.symbols)} assets | bar {res.bar_ms // 60000} min | "
           f"{fmt_ms(res.ts[lo] - res.bar_ms)} .. {fmt_ms(res.ts[-1])} UTC | strategy {cfg.name} | "
           f"flow: {getattr(run, 'flow_source', 'neutral (no order-book data)')}")
    return ReportData(
        title=title, subtitle=sub, ts=res.ts[lo:], equity=res.equity[lo:], vel_div=res.vel_div[lo:],
        entry_threshold=cfg.entry_threshold, trades=allp["trades"], daily=pd.DataFrame(daily),
        metrics={labels["names"][n]: _metric_dict(p["metrics"]) for n, p in run.periods.items()},
        floors=floors_rows(run), split_ms=run.split_ms, monthly=monthly_from_daily(allp["daily"]), notes=notes,
        config=cfg.to_dict(), risk=risk_section(run),
        price_decimals=price_decimals(run.panel, set(allp["trades"]["asset"]) if len(allp["trades"]) else ()))


def price_decimals(panel, assets) -> dict:
    """Decimals of each asset's price grid, read off its candles: the fewest decimals d (0..10) for which
    every open/high/low/close is a multiple of 10^-d (within float noise)."""
    out = {}
    for a in assets:
        i = list(panel.symbols).index(a)
        px = np.concatenate([x[:, i] for x in (panel.open, panel.high, panel.low, panel.close)])
        px = px[np.isfinite(px)][:20_000]
        for d in range(0, 11):
            v = px * 10.0 ** d
            if px.size and np.all(np.abs(v - np.round(v)) < 1e-6 * np.maximum(1.0, np.abs(v)) + 1e-9):
                out[a] = d
                break
        else:
            out[a] = 8
    return out


POSTURE_CHANGES_SHOWN = 50


def risk_section(run) -> dict | None:
    """The HTML report's risk-layer section (None without a risk layer): time in posture per period, the
    first posture changes with their Rm breakdown, the boost distribution and the MC status days."""
    rr = getattr(run, "risk_run", None)
    if rr is None:
        return None
    from dolphin.engine.config import MC_NAMES, POSTURE_NAMES

    lo = run.panel.warmup_bars
    tip = {}
    shown = period_labels(run)["names"]
    for n, p in run.periods.items():
        a, b = p.get("bars", (lo, len(rr.posture)))
        tip[shown[n]] = {k: {"fraction": f, "hours": h} for k, (f, h) in rr.time_in_posture(a, b).items()}
    b = rr.boost[lo:]
    qs = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
    mc = rr.mc_status[lo:]
    changes = [{"time": fmt_ms(c["time_ms"]), "from": c["from"], "to": c["to"], "Rm": c["rm"],
                "drawdown %": c["drawdown"] * 100, **{k: c[k] for k in ("Cat1", "Cat2", "Cat3", "Cat4", "Cat5")},
                "why": "; ".join(f"{k}: {v}" for k, v in c["reasons"].items())}
               for c in rr.posture_changes[:POSTURE_CHANGES_SHOWN]]
    return {"layers": getattr(rr, "description", "") or rr.layers.describe(), "time_in_posture": tip, "postures": list(POSTURE_NAMES),
            "changes": changes, "n_changes": len(rr.posture_changes), "acb_adverse_exits": rr.acb_adverse_exits,
            "boost_quantiles": {f"p{int(q * 100):02d}": float(np.quantile(b, q)) for q in qs},
            "boost_hist": np.histogram(b, bins=np.linspace(0.5, 1.5, 11)),
            "mc_share": {MC_NAMES[k]: float(np.mean(mc == k)) for k in range(3)}}


def risk_layer_table(run) -> str:
    """Terminal summary of the risk layer: time in each posture per period, changes, adverse exits, boost."""
    d = risk_section(run)
    if d is None:
        return ""
    names = list(d["time_in_posture"])
    rows = [[p] + [f"{d['time_in_posture'][n][p]['fraction'] * 100:.1f} % ({d['time_in_posture'][n][p]['hours']:,.0f} h)"
                   for n in names] for p in d["postures"]]
    q = d["boost_quantiles"]
    return (f"{d['layers']}\n" + text_table(["posture"] + names, rows) +
            f"\nposture changes: {d['n_changes']} | ACB adverse-turn exits: {d['acb_adverse_exits']} | boost "
            + " ".join(f"{k} {v:.3f}" for k, v in q.items()) + " | MC status share "
            + " ".join(f"{k} {v * 100:.1f} %" for k, v in d["mc_share"].items()))


def monthly_table(run) -> str:
    m = monthly_from_daily(run.periods["All"]["daily"])
    rows = [[r.month, fmt_num(float(r.pnl), 2), _pct(float(r.ret)), f"{int(r.trades)}", f"{int(r.wins)}"]
            for r in m.rename(columns={"return": "ret"}).itertuples(index=False)]
    return text_table(["month", "PnL", "return", "trades", "wins"], rows)
