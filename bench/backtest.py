"""Backtest benchmark (`make bench`): one run, one table.

- end to end on the whole spot-5m-2024 set in a FRESH process with an empty scan cache:
  load + align + scan + engine + metrics (goal <= 15 s), with that process's peak RSS (goal <= 1 GB)
- engine alone on cached scans: scans per second through the numba kernel (goal >= 200k scans/s)
- load + align of spot-5m-2024 alone, CPU seconds (best of 3; goal <= 1 s: catches any per-bar Python loop)
"""

import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

GOALS = {"e2e_s": 15.0, "scans_per_s": 200_000.0, "rss_mb": 1024.0, "load_cpu_s": 1.0}


def load_cpu_seconds() -> float:
    from dolphin.data import load_panel

    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()  # CPU time of all threads: robust to other jobs on the machine
        load_panel("spot-5m-2024")
        best = min(best, time.process_time() - t0)
    return best

E2E = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from dolphin.engine.config import BLUE
from dolphin.engine import pipeline
t_import = time.perf_counter() - t0
t1 = time.perf_counter()
r = pipeline.run("spot-5m-2024", BLUE, cache_dir=sys.argv[1])
t = time.perf_counter() - t1
assert not r.scan_cache_hit
print(json.dumps({"e2e_s": t, "import_s": t_import, "bars": int(r.panel.n_bars), "assets": r.panel.n_assets,
                  "trades": len(r.result.trades),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def engine_rate(cache_dir):
    import numpy as np

    from dolphin.data import load_panel
    from dolphin.engine.config import BLUE
    from dolphin.engine.inputs import NeutralFlowProvider, RiskInputs
    from dolphin.engine.kernel import initial_state, pack_params, run_kernel
    from dolphin.engine.pipeline import scans_cached
    from dolphin.engine.regime import vol_regime
    from dolphin.paths import resolve_kline_set

    path = resolve_kline_set("spot-5m-2024")
    panel = load_panel(path)
    scans, hit = scans_cached(path, panel, cache_dir=cache_dir)
    assert hit, "the end-to-end run should have cached the scans"
    T = panel.n_bars
    risk = RiskInputs.defaults(T)
    flow = NeutralFlowProvider().features(panel.open_time, panel.symbols)
    reg = vol_regime(panel.close, BLUE.vol_window, BLUE.vol_lookback, BLUE.vol_percentile)
    lo = np.ascontiguousarray(scans.loadings[:, scans.window_index(BLUE.rank_window), :])
    vd = np.ascontiguousarray(scans.vel_div / panel.n_assets)
    tradable = ~(panel.filled | panel.excluded)
    fund = np.zeros((T, panel.n_assets))
    args = (pack_params(BLUE), panel.open, panel.high, panel.low, panel.close, tradable, vd, lo, reg.ok,
            risk.posture, risk.mc_status, risk.acb_boost, risk.rm, flow.imbalance, fund, 0,
            initial_state(BLUE.initial_capital), True, np.ones((T, 2)))
    run_kernel(*args)  # compile / load from cache
    reps = 20
    t = time.perf_counter()
    for _ in range(reps):
        out = run_kernel(*args)
    dt = (time.perf_counter() - t) / reps
    return {"scans_per_s": T / dt, "kernel_ms": dt * 1e3, "trades": int(out[0])}


def main():
    with tempfile.TemporaryDirectory(prefix="dolphin-bench-") as cache:
        env = dict(os.environ)
        p = subprocess.run([sys.executable, "-c", E2E, cache], capture_output=True, text=True, env=env)
        if p.returncode != 0:
            print(p.stderr, file=sys.stderr)
            return 1
        e2e = json.loads(p.stdout.strip().splitlines()[-1])
        eng = engine_rate(cache)
    load_cpu = load_cpu_seconds()
    rows = [
        ("end to end, whole spot-5m-2024 (load+align+scan+engine+metrics)", f"{e2e['e2e_s']:.2f} s",
         f"<= {GOALS['e2e_s']:.0f} s", e2e["e2e_s"] <= GOALS["e2e_s"]),
        ("  peak RSS of that process", f"{e2e['rss_mb']:.0f} MB", f"<= {GOALS['rss_mb']:.0f} MB",
         e2e["rss_mb"] <= GOALS["rss_mb"]),
        ("engine alone on cached scans", f"{eng['scans_per_s']:,.0f} scans/s", f">= {GOALS['scans_per_s']:,.0f}",
         eng["scans_per_s"] >= GOALS["scans_per_s"]),
        ("load + align of spot-5m-2024 (CPU, best of 3)", f"{load_cpu:.2f} s", f"<= {GOALS['load_cpu_s']:.0f} s",
         load_cpu <= GOALS["load_cpu_s"]),
    ]
    print(f"backtest benchmark: {e2e['assets']} assets x {e2e['bars']:,} bars, {e2e['trades']} trades "
          f"(imports {e2e['import_s']:.2f} s, not counted; kernel {eng['kernel_ms']:.1f} ms per full pass)")
    w = max(len(r[0]) for r in rows)
    for name, val, goal, ok in rows:
        print(f"{name.ljust(w)}  {val:>18}  goal {goal:<12} {'met' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
