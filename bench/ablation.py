"""Risk-layer ablation (`python bench/ablation.py [--data spot-5m-2024]`): BLUE with / without ACB, with /
without the full risk layer, in-sample (first 60 % of days) and out-of-sample, as one markdown table.

Nothing here is tuned: every layer runs with its documented defaults (dolphin.engine.risklayer)."""

import argparse
import os
import sys
import time
from dataclasses import replace

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dolphin.data import load_panel  # noqa: E402
from dolphin.engine.backtest import run_backtest  # noqa: E402
from dolphin.engine.calibrate import split_index  # noqa: E402
from dolphin.engine.config import BLUE, POSTURE_NAMES, load_config  # noqa: E402
from dolphin.engine.funding import find_funding_dir  # noqa: E402
from dolphin.engine.pipeline import _period, scans_cached  # noqa: E402
from dolphin.engine.risklayer import RiskLayers, run_risk_backtest  # noqa: E402
from dolphin.exf.history import ExfHistory  # noqa: E402
from dolphin.paths import resolve_kline_set  # noqa: E402

FULL = RiskLayers.preset("full")
ROWS = [
    ("BLUE (no risk layer)", None),
    ("BLUE + ACB (boost only)", RiskLayers(acb=True)),
    ("BLUE + ACB + adverse exit", RiskLayers(acb=True, acb_adverse_exit=True)),
    ("BLUE + full risk layer (cat3 no_book_stale)", FULL),
    ("BLUE + full risk layer (cat3 not_modelled)", replace(FULL, cat3_mode="not_modelled")),
    ("BLUE + full (no_book_stale), MC once a day (24 h, ages all day)", replace(FULL, mc_refresh_hours=24.0)),
]


def _pct(v: float) -> str:
    return f"{v * 100:.2f} %"


def ablation(data: str, cfg=BLUE, split: float = 0.6):
    path = resolve_kline_set(data)
    panel = load_panel(path)
    scans, _ = scans_cached(path, panel)
    funding_dir = find_funding_dir(path) if path.is_dir() else None
    exf = ExfHistory.load()
    lo = panel.warmup_bars
    cut = lo + split_index(panel.open_time[lo:], split)
    out = []
    for name, layers in ROWS:
        t0 = time.perf_counter()
        if layers is None:
            res, rr = run_backtest(panel, scans, cfg, funding_dir=funding_dir), None
        else:
            rr = run_risk_backtest(panel, scans, cfg, layers=layers, exf=exf, funding_dir=funding_dir)
            res = rr.result
        secs = time.perf_counter() - t0
        cells = {}
        for pname, (a, b) in (("IS", (lo, cut)), ("OOS", (cut, panel.n_bars))):
            per = _period(res, a, b, cfg.initial_capital)
            m, fl = per["metrics"], per["floors"].floors
            tip = rr.time_in_posture(a, b) if rr is not None else {n: (1.0 if n == "APEX" else 0.0, 0.0)
                                                                    for n in POSTURE_NAMES}
            cells[pname] = (m, sum(f.status == "PASS" for f in fl), len(fl), tip)
        out.append((name, cells, rr, secs))
    return out, panel, cut


def markdown(rows) -> str:
    head = ["row", "period", "ROI", "trades", "win rate", "PF", "max DD", "Sharpe", "floors pass/total",
            "APEX", "STALKER", "TURTLE", "HIBERNATE", "ACB exits", "posture changes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for name, cells, rr, _ in rows:
        for pname in ("IS", "OOS"):
            m, npass, ntot, tip = cells[pname]
            lines.append("| " + " | ".join([
                name, pname, _pct(m.roi), f"{m.n_trades}", _pct(m.win_rate), f"{m.profit_factor:.3f}",
                _pct(m.max_drawdown), f"{m.sharpe:.3f}", f"{npass}/{ntot}",
                *(f"{tip[n][0] * 100:.1f} %" for n in POSTURE_NAMES),
                f"{rr.acb_adverse_exits if rr else 0}" if pname == "IS" else "",
                f"{len(rr.posture_changes) if rr else 0}" if pname == "IS" else ""]) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default="spot-5m-2024")
    ap.add_argument("--config", default=None)
    a = ap.parse_args()
    cfg = load_config(a.config)
    t0 = time.perf_counter()
    rows, panel, cut = ablation(a.data, cfg)
    from dolphin.timeutil import fmt_ms
    print(f"{cfg.name} on {a.data}: {panel.n_bars:,} bars, in-sample to {fmt_ms(int(panel.open_time[cut]))} UTC "
          f"(exclusive), {time.perf_counter() - t0:.1f} s")
    print("ACB exits / posture changes: whole run (IS+OOS). Time in posture: share of the period's bars.\n")
    print(markdown(rows))
    print()
    for name, _, _, secs in rows:
        print(f"- {name}: {secs:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
