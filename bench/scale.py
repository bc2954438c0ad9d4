"""Scale benchmark (`make bench`): the streaming backtest (dolphin.engine.streaming) at 50 and 400 assets.

Each run is a FRESH process (peak RSS = that process's ru_maxrss): load + align + scan + engine + metrics.

- real, spot-5m-2024: 50 assets x 249 days of 5m bars, streaming (goal: peak RSS <= 500 MB), and the batch
  path beside it for the ratio;
- real, the largest universe the data folder holds at one time: usdtm-5m-2023 (55 perpetuals kept by the
  aligner over its 29-day window; spot-5m-2024's 50 cover 249 days; no two sets overlap in time);
- SYNTHETIC, 400 assets x 250 days of 5m bars (goal: peak RSS <= 4 GB and <= 10 min end to end on this
  2-core machine): a factor model with a fixed seed, written as one Parquet file per symbol with one row
  group per UTC day (as daily archive files are), labelled SYNTHETIC in its folder name and in the output.
  Model: r_i = beta_i * s_m(t) * f_m + g_i * s_s(t) * f_sector(i) + s_i(t) * e_i, with a 3-state Markov
  regime per day (calm / normal / stress: volatility x0.6 / x1 / x2.5, market weight 0.3 / 0.45 / 0.75,
  so correlation rises in stress), a per-asset GARCH(1,1)-like idiosyncratic variance, an intraday U-shaped
  volatility profile and daily 5m vol around 4 %/sqrt(288) (crypto-like); OHLC from the close path.

The machine is shared: `uptime` load averages are printed beside each figure.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# `python bench/scale.py` puts bench/ first on sys.path, where bench/runtime.py would shadow the runtime package
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

GOALS = {"rss50_mb": 500.0, "rss400_mb": 4096.0, "e2e400_s": 600.0}
DAY_MS = 86_400_000
BAR_MS = 300_000

RUN = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from dolphin.engine.config import BLUE
from dolphin.metrics import compute_metrics
t_imp = time.perf_counter() - t0
mode, data = sys.argv[1], sys.argv[2]
t1 = time.perf_counter()
if mode == "stream":
    from dolphin.engine.streaming import run_stream
    r = run_stream(data, BLUE, spill_dir=sys.argv[3])
    lo = r.first_bar
    m = compute_metrics(r.trades, r.ts[lo:], r.equity[lo:], BLUE.initial_capital, bar_ms=r.bar_ms)
    n, T, trades = len(r.symbols), len(r.open_time), len(r.trades)
else:
    from dolphin.engine import pipeline
    r = pipeline.run(data, BLUE, cache_dir=sys.argv[3], split=None)
    n, T, trades = r.panel.n_assets, r.panel.n_bars, len(r.result.trades)
t = time.perf_counter() - t1
print(json.dumps({"s": t, "import_s": t_imp, "assets": n, "bars": T, "trades": trades,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def load() -> str:
    return "load " + " ".join(Path("/proc/loadavg").read_text().split()[:3])


def measure(mode: str, data: str, scratch: str) -> dict:
    before = load()
    p = subprocess.run([sys.executable, "-c", RUN, mode, data, scratch], capture_output=True, text=True,
                       env=dict(os.environ))
    if p.returncode != 0:
        raise SystemExit(f"{mode} {data} failed:\n{p.stderr[-3000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["load"] = f"{before} -> {load().split(' ', 1)[1]}"
    return out


def synth_factor_set(folder: Path, n_assets: int = 400, days: int = 250, seed: int = 17) -> float:
    """Write the SYNTHETIC factor-model set (see the module doc); returns seconds taken."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    n_sect = 12
    sector = rng.integers(0, n_sect, n_assets)
    beta = rng.uniform(0.6, 1.4, n_assets)
    gamma = rng.uniform(0.3, 0.9, n_assets)
    base = 0.04 / np.sqrt(288)  # ~4 % daily vol in 5m bars
    idio_lvl = rng.uniform(0.8, 2.0, n_assets)  # alts are noisier than the market
    price = np.exp(rng.uniform(np.log(0.001), np.log(60000.0), n_assets))
    h = np.ones(n_assets)  # GARCH-like idiosyncratic variance multiplier
    vol_mult, mkt_w = np.array([0.6, 1.0, 2.5]), np.array([0.30, 0.45, 0.75])
    trans = np.array([[0.90, 0.09, 0.01], [0.06, 0.88, 0.06], [0.02, 0.18, 0.80]])
    state = 1
    tod = np.linspace(0, 2 * np.pi, 288, endpoint=False)
    profile = 1.0 + 0.35 * np.cos(tod) ** 2  # U-shaped intraday activity
    t_start = 1_704_067_200_000  # 2024-01-01 00:00 UTC
    schema = pa.schema([("open_time", pa.timestamp("ms", tz="UTC")), ("open", pa.float64()), ("high", pa.float64()),
                        ("low", pa.float64()), ("close", pa.float64()), ("volume", pa.float64())])
    names = [f"SYN{i:03d}USDT" for i in range(n_assets)]
    writers = [pq.ParquetWriter(folder / f"{s}.parquet", schema) for s in names]
    try:
        for d in range(days):
            state = int(rng.choice(3, p=trans[state]))
            vm, w = vol_mult[state], mkt_w[state]
            fm = rng.standard_normal(288) * base * vm * profile
            fs = rng.standard_normal((288, n_sect)) * base * vm * profile[:, None]
            e = rng.standard_normal((288, n_assets))
            rets = np.empty((288, n_assets))
            for k in range(288):  # variance clustering, per bar
                eps = e[k] * np.sqrt(h) * base * vm * profile[k] * idio_lvl
                rets[k] = (np.sqrt(w) * beta * fm[k] + np.sqrt(1 - w) * (gamma * fs[k, sector] + eps))
                h = 0.02 + 0.08 * e[k] ** 2 + 0.90 * h
            close = price * np.exp(np.cumsum(rets, axis=0))
            open_ = np.vstack([price, close[:-1]])
            wig = np.abs(rng.standard_normal((288, n_assets))) * base * 0.5
            high = np.maximum(open_, close) * (1 + wig)
            low = np.minimum(open_, close) * (1 - np.abs(rng.standard_normal((288, n_assets))) * base * 0.5)
            vol = np.exp(rng.normal(8.0, 1.0, (288, n_assets))) * (1 + 4 * np.abs(rets) / base / 10)
            price = close[-1]
            ot = pa.array(t_start + d * DAY_MS + np.arange(288, dtype=np.int64) * BAR_MS, pa.int64()).cast(
                pa.timestamp("ms", tz="UTC"))
            for j, wr in enumerate(writers):
                wr.write_table(pa.table([ot, open_[:, j], high[:, j], low[:, j], close[:, j], vol[:, j]],
                                        schema=schema))
    finally:
        for wr in writers:
            wr.close()
    return time.perf_counter() - t0


def _random_scans(n: int, seed: int = 3):
    """A one-row ScanResult of n assets with random values (payload size and shape are what is timed)."""
    import numpy as np

    from dolphin.scanner.core import WINDOWS, ScanResult

    rng = np.random.default_rng(seed)
    K = len(WINDOWS)
    now = int(time.time() * 1000) // BAR_MS * BAR_MS
    u = rng.normal(0, 1, (1, K, n))
    u /= np.linalg.norm(u, axis=2, keepdims=True)
    return ScanResult([f"SYN{i:03d}USDT" for i in range(n)], BAR_MS, WINDOWS, np.array([now - BAR_MS]),
                      rng.uniform(5, 30, (1, K)), rng.normal(0, 0.05, (1, K)), rng.uniform(0, 0.1, (1, K)),
                      np.ones((1, K), bool), u, rng.lognormal(3, 2, (1, n)), np.zeros(1, np.int8))


def _pct(fn, n=2000, warm=100):
    import numpy as np

    for _ in range(warm):
        fn()
    ns = np.empty(n)
    for i in range(n):
        t = time.perf_counter_ns()
        fn()
        ns[i] = time.perf_counter_ns() - t
    return float(np.percentile(ns, 50)) / 1e3, float(np.percentile(ns, 99)) / 1e3


def store_bench(tmp: Path) -> list:
    """scan_latest with per-asset columns, JSON lists vs Arrow IPC (base64 in the record), embedded store:
    publish = build the record + put; read = get + parse + per-asset numpy arrays. And 400 asset_<S>_ob keys."""
    import numpy as np

    from dolphin.store import FEATURES, SCAN_LATEST, Record, asset_ob_key, iso_utc
    from dolphin.store.arrow_scan import scan_arrays, scan_arrow_record
    from dolphin.adapters.sqlite_store import EmbeddedStore
    from dolphin.store.records import scan_record

    def json_record(sc):
        rec = scan_record(sc, -1, "bench")
        v = dict(rec.value, assets=list(sc.symbols), closes=sc.close[-1].tolist())
        for k, w in enumerate(sc.windows):
            v[f"loadings_w{w}"] = sc.loadings[-1, k].tolist()
        return Record(v, rec.timestamp)

    def json_arrays(rec):
        v = rec.value
        return np.asarray(v["closes"]), {w: np.asarray(v[f"loadings_w{w}"]) for w in (50, 150, 300, 750)}

    out = []
    store = EmbeddedStore(tmp / "features.sqlite")
    try:
        for n in (50, 400):
            sc = _random_scans(n)
            for name, make, arrays in (("JSON lists", json_record, json_arrays),
                                       ("Arrow IPC (b64)", lambda s: scan_arrow_record(s, -1, "bench"), scan_arrays)):
                rec = make(sc)
                size = len(rec.to_json())
                pub = _pct(lambda: store.put(FEATURES, SCAN_LATEST, make(sc)), n=500)
                got = store.get(FEATURES, SCAN_LATEST)
                a = arrays(got)
                cl = a[0] if isinstance(a, tuple) else a.close
                assert np.array_equal(cl, sc.close[-1]), "round trip changed the closes"
                rd = _pct(lambda: arrays(store.get(FEATURES, SCAN_LATEST)), n=2000)
                text = got.to_json()
                dec = _pct(lambda: arrays(Record.from_json(text)), n=2000)
                out.append((f"scan_latest {n} assets, {name}", size, pub, rd, dec))
        syms = [f"SYN{i:03d}USDT" for i in range(400)]
        ob = {s: Record({"imbalance": 0.1, "depth_quality": 0.9, "fill_prob": 0.6, "agreement": 0.2,
                         "exchange_time_ms": 0}, iso_utc()) for s in syms}
        t = time.perf_counter()
        for s_ in syms:
            store.put(FEATURES, asset_ob_key(s_), ob[s_])
        put_s = time.perf_counter() - t
        t = time.perf_counter()
        got = [store.get(FEATURES, asset_ob_key(s_)) for s_ in syms]
        get_s = time.perf_counter() - t
        assert all(g == ob[s_] for g, s_ in zip(got, syms))
        assert sum(k.startswith("asset_") for k in store.keys(FEATURES)) == 400
        out.append(("400 asset_<SYMBOL>_ob keys: put all / get all", None, put_s * 1e6, get_s * 1e6, None))
    finally:
        store.close()
    return out


def decision_latency_400(synth: Path, days: float = 2.0) -> dict:
    """The runtime's decision latency (DolphinStrategy in the Nautilus replay) at 400 SYNTHETIC instruments."""
    import numpy as np

    from dolphin.data import load_panel
    from dolphin.engine.config import BLUE
    from runtime.replay import run_replay, warmup_bars

    start = 1_704_067_200_000 + 10 * DAY_MS
    panel = load_panel(synth, start_ms=start, end_ms=start + int(days * DAY_MS) - 1, warmup_bars=warmup_bars(BLUE))
    r = run_replay(None, BLUE, panel=panel, funding_dir=None)
    dec = np.asarray(r.bar_to_decision_us)
    return {"n": panel.n_assets, "closes": len(dec), "p50": float(np.percentile(dec, 50)),
            "p99": float(np.percentile(dec, 99)), "max": float(dec.max()), "wall_s": r.wall_s, "load": load()}


def main():
    rows = []
    with tempfile.TemporaryDirectory(prefix="dolphin-scale-") as tmp:
        tmp = Path(tmp)
        s50 = measure("stream", "spot-5m-2024", str(tmp))
        b50 = measure("batch", "spot-5m-2024", str(tmp / "scan-cache"))
        usd = measure("stream", "usdtm-5m-2023", str(tmp))
        synth = tmp / "SYNTHETIC-factor-400x250d-5m"
        gen_s = synth_factor_set(synth)
        s400 = measure("stream", str(synth), str(tmp))
        st = store_bench(tmp)
        dl = decision_latency_400(synth)
    rows.append(("real spot-5m-2024, streaming", s50, f"RSS <= {GOALS['rss50_mb']:.0f} MB",
                 s50["rss_mb"] <= GOALS["rss50_mb"]))
    rows.append(("real spot-5m-2024, batch (pipeline.run)", b50, "(for the ratio)", None))
    rows.append(("real usdtm-5m-2023 (largest universe), streaming", usd, "(report)", None))
    ok400 = s400["rss_mb"] <= GOALS["rss400_mb"] and s400["s"] <= GOALS["e2e400_s"]
    rows.append(("SYNTHETIC factor model 400 x 250 d, streaming", s400,
                 f"RSS <= {GOALS['rss400_mb']:.0f} MB, <= {GOALS['e2e400_s']:.0f} s", ok400))
    print("scale benchmark: streaming backtest, each run in a fresh process (load+align+scan+engine+metrics)")
    w = max(len(r[0]) for r in rows)
    for name, m, goal, ok in rows:
        verdict = "" if ok is None else ("met" if ok else "MISSED")
        print(f"{name.ljust(w)}  {m['assets']:>3} assets x {m['bars']:>6,} bars  {m['s']:7.1f} s  "
              f"peak RSS {m['rss_mb']:6.0f} MB  trades {m['trades']:>4}  goal {goal:<28} {verdict}  [{m['load']}]")
    print(f"batch / streaming peak RSS at 50 assets: {b50['rss_mb'] / s50['rss_mb']:.2f}x; "
          f"SYNTHETIC set generation (not counted): {gen_s:.0f} s")
    print("\nfeature store (embedded SQLite), scan_latest with per-asset columns (closes + 4 loadings vectors; "
          "SYNTHETIC values): p50 / p99 µs")
    w = max(len(r[0]) for r in st)
    for name, size, pub, rd, dec in st:
        if size is None:
            print(f"{name.ljust(w)}  put {pub / 1e3:8.1f} ms  get {rd / 1e3:8.1f} ms (sequential, one thread)")
        else:
            print(f"{name.ljust(w)}  {size:>7,} B  publish {pub[0]:7.0f} / {pub[1]:7.0f}  read+arrays {rd[0]:7.0f} / "
                  f"{rd[1]:7.0f}  text->arrays (no I/O) {dec[0]:7.1f} / {dec[1]:7.1f}")
    print(f"\nruntime decision latency at {dl['n']} SYNTHETIC instruments (DolphinStrategy in the Nautilus replay, "
          f"{dl['closes']} bar closes): p50 {dl['p50']:.0f} µs, p99 {dl['p99']:.0f} µs, max {dl['max']:.0f} µs "
          f"(replay wall {dl['wall_s']:.0f} s) [{dl['load']}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
