"""Runtime benchmark (`make bench`): one run, one table.

- decision latency inside DolphinStrategy, from the arrival of the LAST of the N bars of a timestamp
  (wall clock at on_bar entry) to (a) the end of the decision step at every bar close and (b) the
  return of submit_order for bar-triggered orders (entries, exits): p50 / p99 / max in µs. Excludes
  the exchange: in replay, submit_order returns once the command is queued at the simulated venue.
- replay throughput: the Nautilus BacktestEngine with DolphinStrategy (live scanner included) over
  the same bars, next to the dolphin engine's run_kernel (scans precomputed) and batch scan +
  run_kernel, in bar closes/s and instrument-bars/s.

- decision latency with a stalling feature store (issue 10: a Hazelcast member's SIGKILL stalls calls for
  1.1-5 s): ``StoreRiskSource.read`` on the wall clock (background refresher, 50 ms budget, last good values
  up to 10 s old) against the synchronous read every decision did before (the bar-clock path), with every
  store call blocking until a 1.5 s / 5 s stall ends. ``--slow-store`` runs only this part.

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

from dolphin.store.faults import StallingStore  # noqa: E402 (after the sys.path fix)

START, DAYS = "2024-02-26", 30


def slow_store_bench(symbols, stalls=((1.5, 6), (5.0, 3)), healthy_n=200) -> None:
    """Decision latency (ms) of the wall-clock StoreRiskSource vs the synchronous read, healthy and stalled.

    The runtime's layering: the parsed-record cache (1 s max age, invalidated by entry events) over an
    uncached adapter (``open_cached_store_from_env``), here embedded SQLite behind the stall. A bar close
    comes 5 min after the previous check, when the synchronous read's entries have expired: the cache is
    cleared before each of its decisions. The refresher (every 0.5 s) keeps it warm for the wall clock."""
    import tempfile
    from datetime import datetime, timezone

    import numpy as np

    from dolphin.acb import AcbState
    from dolphin.engine.config import POSTURE_NAMES
    from dolphin.mc.forewarner import MCEnvelope
    from dolphin.store import ACB_STATE, EXF_LATEST, FEATURES, MC_FOREWARNER_LATEST, Record, asset_ob_key, iso_utc
    from dolphin.adapters.sqlite_store import EmbeddedStore
    from dolphin.adapters.near_cache import NearCachedStore
    from runtime.risk import BUDGET_MS, STALE_S, StoreRiskSource

    import logging

    for name in ("dolphin.survival", "dolphin.runtime.risk"):  # posture changes, "using last good values"
        logging.getLogger(name).setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="dolphin-bench-slow-") as tmp:
        inner = EmbeddedStore(f"{tmp}/features.sqlite")
        now = datetime.now(timezone.utc)
        ms = int(now.timestamp() * 1000)
        inner.put(FEATURES, MC_FOREWARNER_LATEST, MCEnvelope(
            status="GREEN", reason="bench", catastrophic_prob=0.01, catastrophic_prob_se=0.005, envelope_score=0.8,
            terminal_p05=-0.05, terminal_p50=0.05, terminal_p95=0.15, dd_p50=0.05, dd_p95=0.12, n_paths=2000,
            n_variants=8, n_days=60, horizon_days=30, block_days=5, bootstrap="stationary", dd_threshold=0.2, seed=1,
            timestamp=now).to_store_record())
        inner.put(FEATURES, ACB_STATE, AcbState(
            boost=1.1, beta=0.5, exf_score=0.0, exf_coverage=1.0, regime_score=0.0, regime_days=30, w750_value=None,
            w750_threshold=None, w750_spread=None, signals={}, missing=(), notes=(), last_date=now.date().isoformat(),
            updated_at=ms, source="daily").to_record())
        inner.put(FEATURES, EXF_LATEST, Record({"dvol_btc": 55.0}, iso_utc(ms)))

        def fresh_books():  # the book publisher's job (books are stale after 30 s); not through the stall
            for sym in symbols:
                inner.put(FEATURES, asset_ob_key(sym), Record({"depth_quality": 0.9, "fill_prob": 0.9}, iso_utc()))

        fresh_books()
        store = NearCachedStore(StallingStore(inner), maps=(FEATURES,), max_age_s=1.0)
        stalling = store.inner
        sync = StoreRiskSource(store, symbols=symbols, clock="bar", publish=False)  # the read as it was
        wall = StoreRiskSource(store, symbols=symbols, clock="wall", publish=False)
        try:
            def timed(src):
                if src is sync:
                    store.clear()  # 5 min since its last check: every entry has expired
                t0 = time.perf_counter()
                src.read(time.time_ns())
                return (time.perf_counter() - t0) * 1e3

            rows = []

            def row(name, lat, src):
                a = np.asarray(lat)
                b = src.last.breakdown
                rows.append((name, np.percentile(a, 50), np.percentile(a, 99), a.max(), len(a),
                             f"{POSTURE_NAMES[src.last.posture]}, Cat1={b.cat1:g}"))
                return float(np.percentile(a, 99))

            healthy_sync = [timed(sync) for _ in range(healthy_n)]
            healthy_wall = []
            for _ in range(healthy_n):
                healthy_wall.append(timed(wall))
                time.sleep(0.005)
            p_sync0 = row("healthy store, synchronous read (before)", healthy_sync, sync)
            p_wall0 = row(f"healthy store, wall clock + refresher ({BUDGET_MS:g} ms budget)", healthy_wall, wall)
            ratios = [("healthy", p_sync0 / p_wall0)]
            for stall, rounds in stalls:
                fresh_books()
                lat_sync, lat_wall = [], []
                for _ in range(rounds):  # the decision lands at the start of the stall
                    stalling.stall(stall)
                    lat_sync.append(timed(sync))
                fresh_books()
                time.sleep(1.0)  # the refresher has warmed the cache again
                for _ in range(rounds):  # decisions every 100 ms through the whole stall
                    stalling.stall(stall)
                    end = time.monotonic() + stall
                    while time.monotonic() < end:
                        lat_wall.append(timed(wall))
                        time.sleep(0.1)
                    time.sleep(0.6)  # the refresher's next round completes
                p_s = row(f"{stall:g} s stall, synchronous read (before)", lat_sync, sync)
                p_w = row(f"{stall:g} s stall, wall clock + refresher", lat_wall, wall)
                ratios.append((f"{stall:g} s stall", p_s / p_w))
            misses = wall.budget_misses
        finally:
            wall.close()
            sync.close()
            store.close()
    head = f"decision latency, stalling store, {len(symbols)} books, parsed-record cache (ms)"
    w = max(len(head), *(len(r[0]) for r in rows))
    print(f"\n{head.ljust(w)}  {'p50':>8}  {'p99':>8}  {'max':>8}  {'samples':>7}  last check")
    for name, a, b, c, n, post in rows:
        print(f"{name.ljust(w)}  {a:8.2f}  {b:8.2f}  {c:8.2f}  {n:7d}  {post}")
    print("ratio p99 synchronous / wall clock: " + "; ".join(f"{k} {v:,.1f}x" for k, v in ratios))
    print(f"wall clock: {misses} decision(s) used the last good values (no fresh round within {BUDGET_MS:g} ms; "
          f"limit {STALE_S:g} s, then Cat1 = 0)")


def main() -> int:
    import numpy as np

    if "--slow-store" in sys.argv[1:]:
        slow_store_bench(tuple(f"SYM{i}USDT" for i in range(50)))  # 50 books, as the replay's universe
        return 0

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

    from dolphin.adapters.sqlite_store import EmbeddedStore
    from dolphin.adapters.near_cache import NearCachedStore
    from runtime.risk import StoreRiskSource

    with tempfile.TemporaryDirectory(prefix="dolphin-bench-rt-") as tmp:
        store = NearCachedStore(EmbeddedStore(f"{tmp}/features.sqlite"))
        src = StoreRiskSource(store, symbols=tuple(panel.symbols), clock="bar")
        rs = run_replay(None, cfg, panel=panel, risk=src)
        src.close()  # publishes the last check, stops its threads before the store goes
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
            lo, initial_state(cfg.initial_capital), True, np.ones((T, 2)))
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
    slow_store_bench(tuple(panel.symbols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
