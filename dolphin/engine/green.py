"""BLUE and GREEN side by side: what `dolphin backtest --config green` prints and adds to its HTML report.

Columns, each on the same data, window and risk layer:
  * BLUE: the SHORT-only champion preset;
  * GREEN: the configuration as loaded (its LONG leg trades only with a passing LONG validation record;
    otherwise GREEN is SHORT-only and equals BLUE except for its name);
  * GREEN bidirectional (research): when GREEN's LONG leg is off, the same configuration with the LONG leg
    on and the capital arbiter splitting capital, labelled NOT DEPLOYABLE: it shows what the LONG leg would
    have done, never what GREEN trades.
Per leg (SHORT / LONG trades) and per period (out-of-sample first), plus the arbiter's weights over time.
"""

from dataclasses import dataclass, field
from html import escape

import numpy as np
import pandas as pd

from dolphin.engine.config import BLUE, EngineConfig
from dolphin.metrics.fmt import _pct, fmt_num, text_table

RESEARCH = "GREEN bidirectional (research, NOT deployable)"


@dataclass
class GreenComparison:
    runs: dict  # column name -> BacktestRun
    notes: list = field(default_factory=list)

    @property
    def arbiter(self):
        for r in self.runs.values():
            if getattr(r, "arbiter", None) is not None:
                return r.arbiter
        return None

    def rows(self, period: str = "Out-of-sample") -> list:
        out = []
        for name, r in self.runs.items():
            p = r.periods.get(period) or r.periods["All"]
            m, tr = p["metrics"], p["trades"]
            row = {"strategy": name, "period": period if period in r.periods else "All", "roi": m.roi,
                   "profit_factor": m.profit_factor, "win_rate": m.win_rate, "max_drawdown": m.max_drawdown,
                   "sharpe": m.sharpe, "trades": m.n_trades}
            for leg, side in (("short", -1), ("long", 1)):
                t = tr[tr.side == side]
                row[f"{leg}_trades"] = len(t)
                row[f"{leg}_pnl"] = float(t.pnl.sum())
            out.append(row)
        return out

    def table(self) -> str:
        lines = []
        for period in ("Out-of-sample", "All"):
            rows = self.rows(period)
            lines.append(f"BLUE vs GREEN, {rows[0]['period'].lower()}:")
            lines.append(text_table(
                ["strategy", "ROI", "PF", "win rate", "max DD", "Sharpe", "trades", "SHORT trades / pnl",
                 "LONG trades / pnl"],
                [[r["strategy"], _pct(r["roi"]), fmt_num(r["profit_factor"]), _pct(r["win_rate"]),
                  _pct(r["max_drawdown"]), fmt_num(r["sharpe"], 3), fmt_num(r["trades"]),
                  f"{r['short_trades']} / {r['short_pnl']:,.0f}", f"{r['long_trades']} / {r['long_pnl']:,.0f}"]
                 for r in rows]))
            lines.append("")
        arb = self.arbiter
        if arb is not None:
            lines.append(weights_summary(arb))
        lines += self.notes
        return "\n".join(lines).rstrip()

    def section(self) -> tuple:
        """(title, HTML) for ReportData.sections: the comparison tables, equity curves and arbiter weights."""
        parts = []
        for period in ("Out-of-sample", "All"):
            rows = self.rows(period)
            head = "".join(f"<th>{escape(h)}</th>" for h in ("strategy", "ROI %", "PF", "win rate %", "max DD %",
                                                              "Sharpe", "trades", "SHORT trades", "SHORT pnl",
                                                              "LONG trades", "LONG pnl"))
            body = "".join(
                "<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in (
                    r["strategy"], f"{r['roi'] * 100:.2f}", fmt_num(r["profit_factor"]), f"{r['win_rate'] * 100:.1f}",
                    f"{r['max_drawdown'] * 100:.2f}", fmt_num(r["sharpe"], 3), r["trades"], r["short_trades"],
                    f"{r['short_pnl']:,.0f}", r["long_trades"], f"{r['long_pnl']:,.0f}")) + "</tr>" for r in rows)
            parts.append(f"<h3>{escape(rows[0]['period'])}</h3><table><tr>{head}</tr>{body}</table>")
        parts.append(_equity_chart(self.runs))
        arb = self.arbiter
        if arb is not None:
            parts.append(_weights_chart(arb))
            parts.append(f"<p>{escape(weights_summary(arb))}</p>")
        parts += [f"<p>{escape(n)}</p>" for n in self.notes]
        return "BLUE vs GREEN (legs, capital arbiter)", "\n".join(parts)


def weights_summary(arb) -> str:
    f = arb.frame()
    f["month"] = f["day"].str[:7]
    m = f.groupby("month")["w_long"].agg(["mean", "min", "max"])
    head = (f"arbiter ({arb.mode}) w_long over {len(f)} days: mean {f.w_long.mean():.3f}, "
            f"min {f.w_long.min():.3f}, max {f.w_long.max():.3f}; w_short = 1 - w_long. Monthly mean w_long: ")
    return head + ", ".join(f"{k} {v:.2f}" for k, v in m["mean"].items())


def _equity_chart(runs: dict) -> str:
    from dolphin.report.svg import Chart

    series = []
    for name, r in runs.items():
        lo = r.panel.warmup_bars
        series.append((name, r.result.ts[lo:].astype(float), r.result.equity[lo:].astype(float)))
    x0 = min(s[1][0] for s in series)
    x1 = max(s[1][-1] for s in series)
    y0 = min(float(np.nanmin(s[2])) for s in series)
    y1 = max(float(np.nanmax(s[2])) for s in series)
    c = Chart("Equity (USDT): " + " | ".join(f"{cls}: {n}" for cls, (n, _, _) in zip(("line", "dd", "vd"), series)),
              x0, x1, y0, y1, "USDT").axes()
    for cls, (_, ts, eq) in zip(("line", "dd", "vd"), series):
        c.line(ts, eq, cls)
    return c.svg()


def _weights_chart(arb) -> str:
    from dolphin.report.svg import Chart

    x = arb.days_ms.astype(float) + 43_200_000
    c = Chart(f"Capital arbiter ({arb.mode}): w_long per day (w_short = 1 - w_long)", x[0], x[-1] + 1, 0.0, 1.0,
              "w_long", "{:.2f}").axes()
    c.hline(0.5)
    c.line(x, arb.w_long.astype(float))
    return c.svg()


def green_comparison(data: str, green: EngineConfig, green_run, **run_kw) -> GreenComparison:
    """``green_run``: the GREEN run already made (pipeline.run with ``green``); BLUE (and the research view when
    GREEN's LONG leg is off) run with the same ``run_kw``."""
    from dolphin.engine.pipeline import run

    # BLUE is the SHORT-only strategy: GREEN's own settings (bar counts, costs, sizing) with the LONG leg off,
    # which is the BLUE preset itself when GREEN is the green preset
    blue = green.with_(name="BLUE", direction="short_only", long_enabled=False)
    blue_name = "BLUE" if blue == BLUE else "BLUE (GREEN's settings, SHORT-only)"
    runs = {blue_name: run(data, blue, **run_kw),
            "GREEN" + ("" if green.arbitrated else " (SHORT-only: LONG not validated)"): green_run}
    notes = []
    if not green.arbitrated:
        research = green.with_(direction="bidirectional", long_enabled=True)  # programmatic: never loaded as a preset
        runs[RESEARCH] = run(data, research, **run_kw)
        notes.append("GREEN's LONG leg is off (no passing LONG validation record; see `dolphin validate-long`), so "
                     "GREEN trades SHORT-only. The research column turns the LONG leg on with the capital arbiter "
                     "to show what it would have done; it is not a deployable configuration.")
    return GreenComparison(runs, notes)


def comparison_frame(cmp: GreenComparison) -> pd.DataFrame:
    return pd.DataFrame(cmp.rows("Out-of-sample") + cmp.rows("All"))
