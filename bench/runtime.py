"""Runtime benchmark (`make bench`): one run, one table.

- decision latency inside DolphinStrategy, from the arrival of the LAST of the N bars of a timestamp
  (wall clock at on_bar entry) to (a) the end of the decision step at every bar close and (b) the
  return of submit_order for bar-triggered orders (entries, exits): p50 / p99 / max in µs. Excludes
  the exchange: in replay, submit_order returns once the command is queued at the simulated venue.
- replay throughput: the Nautilus BacktestEngine with DolphinStrategy (live scanner included) over
  the same bars, next to the dolphin engine's run_kernel (scans precomputed) and batch scan +
  run_kernel, in bar closes/s and instrument-bars/s.

Window: spot-5m-2024, 30 UTC days from 2024-02-26 (50 instruments), BLUE, default risk inputs.
"""

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# `python bench/runtime.py` puts bench/ first on sys.path, where this file would shadow the runtime package
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

START, DAYS = "2024-02-26", 30


def main() -> int:
    import numpy as np

    from dolphin.data import load_panel
    from dolphin.engine.config import BLUE, POSTURE_NAMES
    from dolphin.engine.inputs import NeutralFlowProvider, RiskInputs
    from dolphin.engine.kernel import initial_state, pack_params, run_kernel
    from dolphin.engine.regime import vol_regime
    from dolphin.scanner import scan
    from dolphin.timeutil import DAY_MS, parse_time
    from runtime.replay import run_replay, warmup_bars

    cfg = BLUE
    s = parse_time(START)
    panel = load_panel("spot-5m-2024", start_ms=s, end_ms=s + DAYS * DAY_MS - 1, warmup_bars=warmup_bars(cfg))
    lo, (T, N) = panel.warmup_bars, panel.close.shape
    n_closes = T - lo

    r = run_replay(None, cfg, panel=panel)
    # the same replay with the survival stack read from a feature store (embedded SQLite + the parsed-record
    # near cache) at every bar close, DOLPHIN_SAFETY + heartbeat published at every check
    import tempfile

    from dolphin.store.embedded import EmbeddedStore
    from dolphin.store.nearcache import NearCachedStore
    from runtime.risk import StoreRiskSource

    with tempfile.TemporaryDirectory(prefix="dolphin-bench-rt-") as tmp:
        store = NearCachedStore(EmbeddedStore(f"{tmp}/features.sqlite"))
        src = StoreRiskSource(store, symbols=tuple(panel.symbols), clock="bar")
        rs = run_replay(None, cfg, panel=panel, risk=src)
        store.close()

    # the dolphin engine on the same bars
    t0 = time.perf_counter()
    scans = scan(panel, int(panel.open_time[0]))
    t_scan = time.perf_counter() - t0
    reg = vol_regime(panel.close, cfg.vol_window, cfg.vol_lookback, cfg.vol_percentile)
    risk = RiskInputs.defaults(T)
    flow = NeutralFlowProvider().features(panel.open_time, panel.symbols)
    load = np.ascontiguousarray(scans.loadings[:, scans.window_index(cfg.rank_window), :])
    vd = np.ascontiguousarray(scans.vel_div / N)
    args = (pack_params(cfg), panel.open, panel.high, panel.low, panel.close, ~(panel.filled | panel.excluded), vd,
            load, reg.ok, risk.posture, risk.mc_status, risk.acb_boost, risk.rm, flow.imbalance, np.zeros((T, N)),
            lo, initial_state(cfg.initial_capital), True)
    run_kernel(*args)  # load the compiled kernel
    reps = 50
    t0 = time.perf_counter()
    for _ in range(reps):
        out = run_kernel(*args)
    t_kernel = (time.perf_counter() - t0) / reps
    # batch scan time scaled to the replayed bars (the scan also covered the warm-up days)
    t_scan_window = t_scan * n_closes / (T - scans.open_time.searchsorted(panel.open_time[0]))

    def pct(a, q):
        return float(np.percentile(a, q)) if len(a) else float("nan")

    dec, order = r.bar_to_decision_us, r.bar_to_order_us
    print(f"runtime benchmark: spot-5m-2024 {START} + {DAYS} days, {N} instruments, {n_closes:,} bar closes "
          f"({r.bars:,} instrument-bars), BLUE: replay {len(r.trades)} trades, run_kernel {int(out[0])} trades")
    rows = [
        ("decision latency, last bar of a timestamp -> decision done", f"{pct(dec, 50):8.1f}", f"{pct(dec, 99):8.1f}",
         f"{dec.max():8.1f}", f"{len(dec):,} bar closes"),
        ("decision latency, last bar -> submit_order returned", f"{pct(order, 50):8.1f}", f"{pct(order, 99):8.1f}",
         f"{order.max() if len(order) else float('nan'):8.1f}", f"{len(order):,} orders (entries + exits)"),
        ("... with the survival stack from the store (embedded + near cache)",
         f"{pct(rs.bar_to_decision_us, 50):8.1f}", f"{pct(rs.bar_to_decision_us, 99):8.1f}",
         f"{rs.bar_to_decision_us.max():8.1f}", f"{len(rs.bar_to_decision_us):,} bar closes, posture "
         f"{POSTURE_NAMES[src.last.posture]} (no book data: Cat3 0.5)"),
    ]
    w = max(len(x[0]) for x in rows)
    head = "latency inside the strategy (µs, excl. exchange)"
    print(f"\n{head.ljust(w)}  {'p50':>8}  {'p99':>8}  {'max':>8}  samples")
    for name, a, b, c, d in rows:
        print(f"{name.ljust(w)}  {a}  {b}  {c}  {d}")
    thr = [
        ("Nautilus replay (BacktestEngine + DolphinStrategy, live scanner)", r.wall_s),
        ("dolphin run_kernel alone (scans precomputed)", t_kernel),
        ("dolphin batch scan + run_kernel", t_kernel + t_scan_window),
    ]
    w2 = max(len(x[0]) for x in thr)
    head = "throughput on the same bars"
    print(f"\n{head.ljust(w2)}  {'wall s':>9}  {'bar closes/s':>13}  {'instrument-bars/s':>17}")
    for name, t in thr:
        print(f"{name.ljust(w2)}  {t:9.4f}  {n_closes / t:13,.0f}  {n_closes * N / t:17,.0f}")
    strat_s = dec.sum() / 1e6
    print(f"\nreplay split: strategy decision steps {strat_s:.2f} s of {r.wall_s:.2f} s; the rest is Nautilus "
          f"(data engine, matching of {r.bars:,} bars + {r.bars:,} first-trade ticks, events)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
