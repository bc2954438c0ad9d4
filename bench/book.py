"""Order-book publisher benchmark (`make bench`): `dolphin book` against `dolphin venue`, 50 and 400 symbols.

Per universe size: a temporary DOLPHIN_HOME with the embedded feature store; ``dolphin venue`` (a subprocess,
one bar per ``DOLPHIN_BENCH_BOOK_SPEED`` s, default 1.0 -> every symbol's ``depth20`` stream sends one message a
second, the venue's synthetic depth) and ``dolphin book`` (a subprocess, as in production, every record
recorded). This process opens its own probe connection to the venue's ``/public`` streams for every symbol and
notes when each update (symbol, ``u``) arrives there: the venue pushes one update to every subscriber at the same
moment, so the probe's arrival time stands for the exchange event time (the venue's ``E`` is its replay clock,
not the wall clock).

- latency event -> store visible: the publisher's ``visible_ms`` (the store ``put`` returned: committed, visible
  to every reader of the embedded store) minus the probe's arrival of the same update; p50 / p99 / max;
- its parts: probe arrival -> publisher receive (transport and queueing in the publisher's loop), receive ->
  visible (features + hand-over to the writer thread + the store write);
- CPU: the publisher process's user+system CPU time over the measured window (``/proc/<pid>/stat``), in % of
  one core;
- records: messages handed to the writer vs records written (the writer keeps only the newest per asset).

50 symbols: the first 50 of usdtm-5m-2023 (real candles, synthetic depth). 400 symbols: the 60 real symbols
plus 340 SYNTHETIC symbols (``SYN001USDT``..., each a symlink to one real symbol's candle file), in a temporary
folder. Environment: DOLPHIN_BENCH_BOOK_SECONDS (measured window, default 60), DOLPHIN_BENCH_BOOK_SIZES
(default "50,400"). Goals: p99 latency < 1 s, record age << 5 s, CPU for 400 symbols < 1 core.
"""

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import numpy as np  # noqa: E402

REPO = _HERE.parent
SECONDS = float(os.environ.get("DOLPHIN_BENCH_BOOK_SECONDS", "60"))
SIZES = [int(x) for x in os.environ.get("DOLPHIN_BENCH_BOOK_SIZES", "50,400").split(",")]
SPEED = float(os.environ.get("DOLPHIN_BENCH_BOOK_SPEED", "1.0"))
WARMUP_S = 8.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / CLK_TCK  # utime, stime


def universe(n: int, tmp: Path) -> tuple[str, list[str], int]:
    from dolphin.paths import resolve_kline_set

    real_dir = resolve_kline_set("usdtm-5m-2023")
    real = sorted(p for p in real_dir.glob("*.parquet"))
    if n <= len(real):
        return str(real_dir), [p.stem for p in real[:n]], 0
    d = tmp / f"klines-{n}"
    d.mkdir()
    syms = []
    for p in real:
        (d / p.name).symlink_to(p)
        syms.append(p.stem)
    for i in range(n - len(real)):
        name = f"SYN{i + 1:03d}USDT"
        (d / f"{name}.parquet").symlink_to(real[i % len(real)])
        syms.append(name)
    return str(d), syms, n - len(real)


def start(cmd, env, pattern=None):
    p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if pattern is None:
        return p, None
    line = p.stdout.readline()
    m = re.search(pattern, line)
    if not m:
        p.kill()
        raise RuntimeError(f"{cmd[3]} did not start: {line!r} {p.stderr.read()[-2000:]}")
    return p, m


async def probe(ws_base: str, syms: list[str], arrivals: dict, stop: asyncio.Event) -> None:
    import json

    from websockets.asyncio.client import connect

    async def one(chunk):
        url = f"{ws_base}/public/stream?streams=" + "/".join(f"{s.lower()}@depth20@500ms" for s in chunk)
        async with connect(url, max_size=2 ** 22, max_queue=None) as ws:
            while not stop.is_set():
                try:
                    text = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                t = time.time() * 1000
                d = json.loads(text)["data"]
                arrivals.setdefault((d["s"], int(d["u"])), t)
    await asyncio.gather(*(one(syms[i:i + 200]) for i in range(0, len(syms), 200)))


def run_size(n: int) -> dict:
    import pyarrow.dataset as ds

    with tempfile.TemporaryDirectory(prefix="dolphin-bench-book-") as tmp:
        tmp = Path(tmp)
        data, syms, n_syn = universe(n, tmp)
        env = dict(os.environ, DOLPHIN_HOME=str(tmp / "home"), PYTHONPATH=str(REPO))
        for k in ("DOLPHIN_FEATURE_STORE", "DOLPHIN_HZ_MEMBERS", "DOLPHIN_HZ_CLUSTER"):
            env.pop(k, None)
        venue, m = start([sys.executable, "-m", "dolphin.cli", "venue", "--port", "0", "--data", data, "--speed",
                          str(SPEED), "--days", "1", "--history-bars", "10", "--log-level", "WARNING"], env,
                         r"127\.0\.0\.1:(\d+)")
        port = int(m.group(1))
        import urllib.request

        for _ in range(600):  # the port is bound before the server answers: wait for /fapi/v1/ping
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/fapi/v1/ping", timeout=2).read()
                break
            except OSError:
                if venue.poll() is not None:
                    raise RuntimeError(f"dolphin venue exited {venue.returncode}: {venue.stderr.read()[-2000:]}")
                time.sleep(0.1)
        (tmp / "symbols.txt").write_text("\n".join(syms))
        book, _ = start([sys.executable, "-m", "dolphin.cli", "book", "--symbols", f"@{tmp / 'symbols.txt'}",
                         "--ws-url", f"ws://127.0.0.1:{port}", "--http-url", f"http://127.0.0.1:{port}",
                         "--record-every-s", "0", "--flush-s", "3600"], env)
        arrivals: dict = {}
        out = {}

        async def main():
            stop = asyncio.Event()
            pt = asyncio.create_task(probe(f"ws://127.0.0.1:{port}", syms, arrivals, stop))
            await asyncio.sleep(WARMUP_S)
            c0, t0 = cpu_s(book.pid), time.time()
            await asyncio.sleep(SECONDS)
            c1, t1 = cpu_s(book.pid), time.time()
            out["cpu"] = (c1 - c0) / (t1 - t0) * 100
            out["window"] = (t0 * 1000, t1 * 1000)
            await asyncio.sleep(1.5)
            stop.set()
            await pt
        try:
            asyncio.run(main())
            book.send_signal(signal.SIGTERM)
            rc = book.wait(60)
            err = book.stderr.read()
            if rc != 0:
                raise RuntimeError(f"dolphin book exited {rc}: {err[-2000:]}")
        finally:
            for p in (book, venue):
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    try:
                        p.wait(30)
                    except subprocess.TimeoutExpired:
                        p.kill()
        rows = ds.dataset(tmp / "home" / "book", format="parquet").to_table().to_pylist()
        lo, hi = out["window"]
        lat, xport, proc = [], [], []
        for r in rows:
            a = arrivals.get((r["symbol"], r["update_id"]))
            if a is None or r["visible_ms"] is None or not lo <= r["receive_ms"] <= hi:
                continue
            lat.append(r["visible_ms"] - a)
            xport.append(r["receive_ms"] - a)
            proc.append(r["visible_ms"] - r["receive_ms"])
        m = re.search(r"(\d+) records published, (\d+) written, (\d+) dropped stale", err)
        pubd, written, dropped = (int(x) for x in m.groups()) if m else (0, 0, 0)
        ages = {}
        for r in rows:  # age of the newest record per asset at each write: gaps between an asset's records
            ages.setdefault(r["symbol"], []).append(r["receive_ms"])
        gaps = np.concatenate([np.diff(sorted(v)) for v in ages.values() if len(v) > 1]) if ages else np.zeros(1)
        return {"n": n, "synthetic": n_syn, "cpu": out["cpu"], "lat": np.array(lat), "xport": np.array(xport),
                "proc": np.array(proc), "published": pubd, "written": written, "dropped": dropped,
                "gap_p99": float(np.percentile(gaps, 99)) if gaps.size else float("nan"),
                "gap_max": float(gaps.max()) if gaps.size else float("nan")}


def main() -> int:
    print(f"order-book publisher: `dolphin book` vs `dolphin venue` (synthetic depth, one depth20 message per symbol "
          f"every {SPEED:g} s), embedded store, {SECONDS:g} s measured after {WARMUP_S:g} s warm-up; "
          f"{os.cpu_count()} CPUs shared")
    print(f"{'symbols':>8} {'synthetic':>9} {'CPU %core':>9} {'n':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'xport p50/p99':>14} {'proc p50/p99':>13} {'written/handed':>15} {'rec gap p99/max s':>18}")
    ok = True
    for n in SIZES:
        r = run_size(n)
        lat = r["lat"]
        if lat.size == 0:
            print(f"{n:>8}: no latency samples (probe and publisher did not overlap)")
            ok = False
            continue
        p = lambda a, q: float(np.percentile(a, q))  # noqa: E731
        print(f"{n:>8} {r['synthetic']:>9} {r['cpu']:>9.1f} {lat.size:>7} {p(lat, 50):>8.1f} {p(lat, 99):>8.1f} "
              f"{lat.max():>8.1f} {p(r['xport'], 50):>6.1f}/{p(r['xport'], 99):<7.1f} "
              f"{p(r['proc'], 50):>5.1f}/{p(r['proc'], 99):<7.1f} {r['written']:>7}/{r['published']:<7} "
              f"{r['gap_p99'] / 1000:>8.2f}/{r['gap_max'] / 1000:<8.2f}")
        ok &= p(lat, 99) < 1000
    print("goal p99 < 1 s: " + ("met" if ok else "NOT met"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
