"""Backtest report: metrics (in-sample / out-of-sample / all), floors, equity, drawdown, vel_div with
entries and exits, daily PnL bars and the trade list, in one self-contained HTML file."""

import math
import os
import tempfile
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from dolphin.report.svg import Chart, _fmt_day

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#1d2733;background:#fbfcfd}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde3ea;padding-bottom:4px}
.sub{color:#5b6b7c;font-size:13px} table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{padding:4px 10px;border-bottom:1px solid #e6ebf0;text-align:right} th{background:#eef2f6;text-align:center}
td.l,th.l{text-align:left} .pass{color:#0a7d32;font-weight:600} .fail{color:#c0262d;font-weight:600} .na{color:#8a96a3}
svg{width:100%;max-width:1100px;background:#fff;border:1px solid #e6ebf0;margin:6px 0}
.title{font-size:14px;font-weight:600;fill:#1d2733} .tick{font-size:11px;fill:#5b6b7c}
.frame{fill:none;stroke:#c9d2dc} .grid{stroke:#eef2f6} .ref{stroke:#c0262d;stroke-dasharray:4 3}
.line{fill:none;stroke:#1f6fd1;stroke-width:1.2} .dd{fill:none;stroke:#c0262d;stroke-width:1.2}
.vd{fill:none;stroke:#6c7a89;stroke-width:.8} .entry{fill:#c0262d} .exit{stroke:#0a7d32;stroke-width:1.5;fill:none}
.pos{fill:#2e9d5b} .neg{fill:#d0484f} .split{stroke:#8e44ad;stroke-dasharray:6 4}
.notes li{font-size:13px;color:#3b4a5a} .scroll{max-height:520px;overflow:auto;border:1px solid #e6ebf0}
"""


@dataclass
class ReportData:
    title: str
    subtitle: str
    ts: np.ndarray  # bar close ms
    equity: np.ndarray
    vel_div: np.ndarray
    entry_threshold: float
    trades: pd.DataFrame  # metrics trade frame plus 'asset' names
    daily: pd.DataFrame  # columns date (YYYY-MM-DD), pnl
    metrics: dict  # {"In-sample": {metric: value}, "Out-of-sample": {...}, "All": {...}}
    floors: list  # rows: dicts with keys floor, threshold, and one status/worst string per period
    split_ms: int | None = None
    monthly: pd.DataFrame | None = None  # month, pnl, return, trades, wins, fees
    notes: list = field(default_factory=list)
    config: dict = field(default_factory=dict)
    risk: dict | None = None  # dolphin.engine.report_data.risk_section (None: no risk layer ran)
    sections: list = field(default_factory=list)  # (title, pre-rendered HTML) shown after the metrics
    price_decimals: dict = field(default_factory=dict)  # asset -> decimals of its price grid (from the candles)


def _fmt(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return "inf"
        return f"{v:,.4f}" if abs(v) < 100 else f"{v:,.2f}"
    return escape(str(v))


def _status_cls(s: str) -> str:
    s = str(s)
    return "pass" if s.startswith("PASS") else "fail" if s.startswith("FAIL") else "na"


def _metrics_table(metrics: dict) -> str:
    cols = list(metrics)
    keys = list(dict.fromkeys(k for c in cols for k in metrics[c]))
    head = "".join(f"<th>{escape(c)}</th>" for c in cols)
    rows = "".join(
        f'<tr><td class="l">{escape(k)}</td>' + "".join(f"<td>{_fmt(metrics[c].get(k, ''))}</td>" for c in cols) + "</tr>"
        for k in keys)
    return f'<table id="metrics"><tr><th class="l">metric</th>{head}</tr>{rows}</table>'


def _floors_table(rows: list) -> str:
    if not rows:
        return "<p class='na'>no floors evaluated</p>"
    cols = list(rows[0])
    head = "".join(f'<th class="{"l" if i == 0 else ""}">{escape(c)}</th>' for i, c in enumerate(cols))
    body = ""
    for r in rows:
        cells = ""
        for i, c in enumerate(cols):
            v = str(r[c])
            cls = "l" if i == 0 else _status_cls(v)
            cells += f'<td class="{cls}">{escape(v)}</td>'
        body += f"<tr>{cells}</tr>"
    return f'<table id="floors"><tr>{head}</tr>{body}</table>'


def _charts(d: ReportData) -> str:
    ts, eq = d.ts.astype(float), d.equity.astype(float)
    out = []
    x0, x1 = ts[0], ts[-1]
    c = Chart("Equity (USDT)", x0, x1, float(np.nanmin(eq)), float(np.nanmax(eq)), "USDT").axes()
    c.line(ts, eq)
    if d.split_ms is not None:
        c.parts.append(_vline(c, d.split_ms))
    out.append(c.svg())
    peak = np.maximum.accumulate(eq)
    dd = (eq / peak - 1.0) * 100.0
    c = Chart("Drawdown (%)", x0, x1, float(np.nanmin(dd)), 0.0, "%", "{:.1f}").axes()
    c.line(ts, dd, "dd")
    out.append(c.svg())
    vd = d.vel_div.astype(float)
    fin = vd[np.isfinite(vd)]
    lo, hi = (np.percentile(fin, 0.1), np.percentile(fin, 99.9)) if fin.size else (-1.0, 1.0)
    lo, hi = min(lo, -d.entry_threshold * 1.2), max(hi, d.entry_threshold * 1.2)
    c = Chart("vel_div (v50 − v150) with entries (●) and exits (×)", x0, x1, lo, hi, "vel_div", "{:.2f}").axes()
    c.line(ts, np.clip(vd, lo, hi), "vd", max_points=4000)
    c.hline(-d.entry_threshold)
    tr = d.trades
    if len(tr):
        idx_e = np.searchsorted(d.ts, tr["entry_time"].to_numpy())
        idx_e = np.clip(idx_e, 0, len(vd) - 1)
        y_e = np.clip(np.nan_to_num(vd[np.maximum(idx_e - 1, 0)]), lo, hi)
        c.markers(tr["entry_time"].to_numpy(), y_e, "entry",
                  title=[f"{a} entry {_fmt_day(t)}" for a, t in zip(tr["asset"], tr["entry_time"])])
        idx_x = np.clip(np.searchsorted(d.ts, tr["exit_time"].to_numpy()), 0, len(vd) - 1)
        y_x = np.clip(np.nan_to_num(vd[idx_x]), lo, hi)
        c.markers(tr["exit_time"].to_numpy(), y_x, "exit", shape="x",
                  title=[f"{a} exit ({r})" for a, r in zip(tr["asset"], tr["exit_reason"])])
    if d.split_ms is not None:
        c.parts.append(_vline(c, d.split_ms))
    out.append(c.svg())
    lev = _leverage_series(d.ts, d.trades)
    held = float(np.mean(lev > 0) * 100) if lev.size else 0.0
    c = Chart(f"Leverage held (x; exposure {held:.1f} % of bars)", x0, x1, 0.0, float(max(lev.max(initial=0.0), 1.0)),
              "x", "{:.1f}").axes()
    c.line(ts, lev, "line", max_points=4000)
    out.append(c.svg())
    if len(d.daily):
        day_ms = pd.to_datetime(d.daily["date"]).astype("int64").to_numpy() // 1_000_000 + 43_200_000
        pnl = d.daily["pnl"].to_numpy(float)
        c = Chart("Daily PnL (USDT)", x0, x1, float(min(pnl.min(), 0)), float(max(pnl.max(), 0)), "USDT").axes()
        c.bars(day_ms, pnl, 86_400_000)
        out.append(c.svg())
    return "\n".join(out)


def _vline(c: Chart, x_ms) -> str:
    x = float(c.sx(x_ms))
    return (f'<line x1="{x:.1f}" x2="{x:.1f}" y1="28" y2="226" class="split"/>'
            f'<text x="{x + 4:.1f}" y="40" class="tick">out-of-sample →</text>')


def _trades_table(tr: pd.DataFrame, limit: int = 5000, decimals: dict | None = None) -> str:
    decimals = decimals or {}
    if not len(tr):
        return "<p class='na'>no trades</p>"
    cols = ["entry_time", "exit_time", "asset", "side", "leverage", "notional", "entry_price", "exit_price",
            "fees", "funding", "pnl", "exit_reason"]
    head = "".join(f"<th>{c}</th>" for c in cols)
    rows = []
    for r in tr.head(limit).itertuples(index=False):
        cells = []
        for c in cols:
            v = getattr(r, c)
            if c in ("entry_time", "exit_time"):
                v = pd.Timestamp(int(v), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")
            elif c == "side":
                v = "SHORT" if v < 0 else "LONG"
            elif c in ("entry_price", "exit_price") and r.asset in decimals:
                cells.append(f"<td>{float(v):,.{decimals[r.asset]}f}</td>")  # the instrument's own precision
                continue
            cells.append(f"<td>{_fmt(v)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = f"<p class='sub'>first {limit:,} of {len(tr):,} trades shown</p>" if len(tr) > limit else ""
    return f'<div class="scroll"><table id="trades"><tr>{head}</tr>{"".join(rows)}</table></div>{more}'


def _exit_summary(tr: pd.DataFrame) -> str:
    """At the top: liquidations and stops (the trades that hurt most) and the exit-reason mix."""
    if tr is None or not len(tr) or "exit_reason" not in tr:
        return "<p class='sub' id='exit-summary'>no trades</p>"
    g = tr.groupby("exit_reason")["pnl"].agg(["count", "sum", "min"])
    n = len(tr)
    warn = []
    for reason, label in (("liquidation", "liquidation"), ("stop_loss", "stop-loss exit")):
        if reason in g.index:
            r = g.loc[reason]
            warn.append(f"{int(r['count'])} {label}(s), PnL {r['sum']:,.2f}, worst {r['min']:,.2f}")
    head = (f'<p class="fail" id="exit-alert">{escape("; ".join(warn))}</p>' if warn else
            '<p class="pass" id="exit-alert">no liquidation, no stop-loss exit</p>')
    rows = "".join(f'<tr><td class="l">{escape(str(k))}</td><td>{int(v["count"]):,}</td>'
                   f'<td>{v["count"] / n * 100:.1f} %</td><td>{_fmt(float(v["sum"]))}</td>'
                   f'<td>{_fmt(float(v["min"]))}</td></tr>' for k, v in g.sort_values("count", ascending=False).iterrows())
    return (f'{head}<table id="exit-reasons"><tr><th class="l">exit reason</th><th>trades</th><th>share</th>'
            f"<th>PnL</th><th>worst trade</th></tr>{rows}</table>")


def _asset_table(tr: pd.DataFrame) -> str:
    if tr is None or not len(tr):
        return "<p class='na'>no trades</p>"
    g = tr.groupby("asset")
    t = pd.DataFrame({"trades": g.size(), "wins": g["pnl"].apply(lambda x: int((x > 0).sum())),
                      "pnl": g["pnl"].sum(), "fees": g["fees"].sum(), "avg_lev": g["leverage"].mean(),
                      "worst": g["pnl"].min()}).sort_values("pnl")
    rows = "".join(f'<tr><td class="l">{escape(str(a))}</td><td>{int(r.trades):,}</td>'
                   f"<td>{r.wins / r.trades * 100:.1f} %</td><td>{_fmt(float(r.pnl))}</td><td>{_fmt(float(r.fees))}</td>"
                   f"<td>{r.avg_lev:.2f}x</td><td>{_fmt(float(r.worst))}</td></tr>" for a, r in t.iterrows())
    return ('<div class="scroll"><table id="assets"><tr><th class="l">asset</th><th>trades</th><th>win rate</th>'
            f"<th>PnL</th><th>fees</th><th>avg leverage</th><th>worst trade</th></tr>{rows}</table></div>")


def _leverage_series(ts: np.ndarray, tr: pd.DataFrame) -> np.ndarray:
    """Leverage held at each bar close (0 when flat): each trade's leverage from its entry to its exit."""
    lev = np.zeros(len(ts))
    if tr is None or not len(tr):
        return lev
    t = np.asarray(ts, np.int64)
    for e, x, lv in zip(tr["entry_time"].to_numpy(np.int64), tr["exit_time"].to_numpy(np.int64),
                        tr["leverage"].to_numpy(float)):
        a, b = np.searchsorted(t, e, "right"), np.searchsorted(t, x, "left")
        lev[a:b] = np.maximum(lev[a:b], lv)
    return lev


def _monthly_table(m: pd.DataFrame | None) -> str:
    if m is None or not len(m):
        return ""
    rows = "".join(
        f'<tr><td class="l">{escape(str(r.month))}</td><td>{_fmt(float(r.pnl))}</td>'
        f'<td>{float(r.ret) * 100:.2f} %</td><td>{int(r.trades):,}</td><td>{int(r.wins):,}</td><td>{_fmt(float(r.fees))}</td></tr>'
        for r in m.rename(columns={"return": "ret"}).itertuples(index=False))
    return ('<h2>Per month</h2><table id="monthly"><tr><th class="l">month</th><th>PnL</th><th>return</th>'
            f'<th>trades</th><th>wins</th><th>fees</th></tr>{rows}</table>')


def _risk_section(r: dict | None) -> str:
    if not r:
        return ""
    periods = list(r["time_in_posture"])
    head = "".join(f"<th>{escape(p)}</th>" for p in periods)
    rows = "".join(
        f'<tr><td class="l">{escape(name)}</td>' + "".join(
            f"<td>{r['time_in_posture'][p][name]['fraction'] * 100:.1f} % "
            f"({r['time_in_posture'][p][name]['hours']:,.0f} h)</td>" for p in periods) + "</tr>"
        for name in r["postures"])
    counts, edges = r["boost_hist"]
    total = max(int(counts.sum()), 1)
    hist = "".join(f'<tr><td class="l">{edges[i]:.1f} .. {edges[i + 1]:.1f}</td><td>{int(c):,}</td>'
                   f"<td>{c / total * 100:.1f} %</td></tr>" for i, c in enumerate(counts))
    q = " ".join(f"{k} {v:.3f}" for k, v in r["boost_quantiles"].items())
    mc = " | ".join(f"{k} {v * 100:.1f} %" for k, v in r["mc_share"].items())
    ch = r["changes"]
    ch_head = "".join(f"<th>{escape(k)}</th>" for k in (ch[0] if ch else {}))
    ch_rows = "".join("<tr>" + "".join(f'<td class="l">{escape(str(v))}</td>' if isinstance(v, str)
                                       else f"<td>{_fmt(v)}</td>" for v in c.values()) + "</tr>" for c in ch)
    more = (f"<p class='sub'>first {len(ch)} of {r['n_changes']:,} posture changes shown</p>"
            if r["n_changes"] > len(ch) else "")
    return (f'<h2>Risk layer</h2><p class="sub">{escape(r["layers"])}</p>'
            f'<table id="risk-posture"><tr><th class="l">time in posture</th>{head}</tr>{rows}</table>'
            f'<p>posture changes: {r["n_changes"]:,} | ACB adverse-turn exits: {r["acb_adverse_exits"]:,} | '
            f"MC status (share of scans): {escape(mc)}</p>"
            f'<h3>ACB boost distribution</h3><p class="sub">{escape(q)}</p>'
            f'<table id="risk-boost"><tr><th class="l">boost</th><th>scans</th><th>share</th></tr>{hist}</table>'
            f'<h3>Posture changes</h3><div class="scroll"><table id="risk-changes"><tr>{ch_head}</tr>{ch_rows}'
            f"</table></div>{more}")


def render(d: ReportData) -> str:
    notes = "".join(f"<li>{escape(n)}</li>" for n in d.notes)
    cfg = "".join(f'<tr><td class="l">{escape(str(k))}</td><td class="l">{escape(str(v))}</td></tr>'
                  for k, v in d.config.items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{escape(d.title)}</title>
<style>{CSS}</style></head><body>
<h1>{escape(d.title)}</h1><div class="sub">{escape(d.subtitle)}</div>
{_exit_summary(d.trades)}
<h2>Metrics</h2>{_metrics_table(d.metrics)}
{"".join(f"<h2>{escape(t)}</h2>{body}" for t, body in d.sections)}
<h2>Quality floors (rolling windows)</h2>{_floors_table(d.floors)}
<h2>Charts</h2>{_charts(d)}
{_monthly_table(d.monthly)}
{_risk_section(d.risk)}
<h2>Notes</h2><ul class="notes">{notes}</ul>
<h2>Per asset</h2>{_asset_table(d.trades)}
<h2>Trades</h2>{_trades_table(d.trades, decimals=d.price_decimals)}
<h2>Configuration</h2><table>{cfg}</table>
</body></html>"""


def write_report(d: ReportData, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".report-", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(render(d))
    os.chmod(tmp, 0o644)  # mkstemp makes it 0600: a report is for others to read too
    os.replace(tmp, path)
    return path
