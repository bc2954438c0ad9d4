"""The live paper path as one system, on loopback (issue 11, section 4, first slice).

Processes, each started as a user would start it:
- `dolphin venue` replaying usdtm-5m-2023 (BTC, DOGE, ETH perpetuals, 2023-07-17 17:30 .. ~19:55, 0.5 s per 5m bar), held at
  the start until the runtime subscribes to its kline streams (`--hold`), so a warm-up that ends at the start
  joins the first replayed bar;
- `dolphin bridge` (scan files -> scan_latest, DOLPHIN_SCAN_EVENTS, acb_state);
- `dolphin runtime sandbox` reaching the venue by configuration only (`--base-url`), the survival stack from the
  embedded feature store under a temporary DOLPHIN_HOME (`--risk store`), warmed up from the recorded bars just
  before the venue's start (`--history`).

The test publishes healthy risk inputs into the store (MC GREEN, DVOL, order-book quality refreshed every 2 s:
no order-book publisher exists yet) and asserts: bars reach the runtime (one scan file per bar close), it trades
(fills journaled), DOLPHIN_STATE_BLUE and DOLPHIN_SAFETY are published, the bridge put the newest scan file into
scan_latest, and every process exits 0 on SIGTERM. The window is chosen where `dolphin backtest` on the same
5 symbols trades: ETHUSDT short entered 2023-07-17 18:15, take-profit 18:50.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SYMBOLS = ("BTCUSDT", "DOGEUSDT", "ETHUSDT")  # alphabetical: the order load_panel gives `--history`; SOL and XRP
# have no bars in usdtm-5m-2023 on this day (dropped by the venue and the backtest alike)
START = "2023-07-17T17:30"
DAYS = "0.1"  # 28.8 bars: 17:30 .. 19:55
SPEED = "0.5"  # wall seconds per 5m bar
ENTRY_MS = 1689617700000  # the backtest's entry bar open: 2023-07-17 18:15 (ETHUSDT short, TP at 18:50)

pytest.importorskip("nautilus_trader")


def _env(home: Path) -> dict:
    env = dict(os.environ, DOLPHIN_HOME=str(home), DOLPHIN_FEATURE_STORE="embedded",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1")
    for k in ("DOLPHIN_HZ_MEMBERS", "DOLPHIN_BINANCE_BASE_URL", "DOLPHIN_BINANCE_HTTP_URL",
              "DOLPHIN_BINANCE_WS_MARKET_URL", "DOLPHIN_BINANCE_WS_PRIVATE_URL"):
        env.pop(k, None)
    return env


def write_history(out: Path, start_ms: int, bars: int) -> Path:
    """The recorded bars just before ``start_ms`` (the venue's first replayed bar), one Parquet per symbol."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from dolphin.paths import data_root

    out.mkdir(parents=True, exist_ok=True)
    for s in SYMBOLS:
        t = pq.read_table(data_root() / "klines" / "usdtm-5m-2023" / f"{s}.parquet")
        ms = pc.cast(t.column("open_time"), "int64")
        t = t.filter(pc.less(ms, start_ms))
        pq.write_table(t.slice(max(0, t.num_rows - bars)), out / f"{s}.parquet")
    return out


def _healthy(store) -> None:
    from dolphin.mc.forewarner import MCEnvelope
    from dolphin.store import EXF_LATEST, FEATURES, MC_FOREWARNER_LATEST, Record, asset_ob_key, iso_utc

    t = datetime.now(timezone.utc) - timedelta(seconds=1)
    store.put(FEATURES, MC_FOREWARNER_LATEST, MCEnvelope(
        status="GREEN", reason="system test", catastrophic_prob=0.01, catastrophic_prob_se=0.005,
        envelope_score=0.8, terminal_p05=-0.05, terminal_p50=0.05, terminal_p95=0.15, dd_p50=0.05, dd_p95=0.12,
        n_paths=2000, n_variants=8, n_days=60, horizon_days=30, block_days=5, bootstrap="stationary",
        dd_threshold=0.2, seed=1, timestamp=t).to_store_record())
    store.put(FEATURES, EXF_LATEST, Record({"dvol_btc": 55.0}, iso_utc(t)))
    for s in SYMBOLS:
        store.put(FEATURES, asset_ob_key(s), Record({"depth_quality": 1.0, "fill_prob": 1.0}, iso_utc(t)))


class Proc:
    """A subprocess whose output goes to a file (read while it runs); stopped by its PID."""

    def __init__(self, name: str, args: list, env: dict, logdir: Path):
        self.name, self.log = name, logdir / f"{name}.log"
        self._f = open(self.log, "w")
        self.p = subprocess.Popen(args, cwd=REPO, env=env, stdout=self._f, stderr=subprocess.STDOUT, text=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.text())
            if m:
                return m
            if self.p.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.p.returncode} before {pattern!r}:\n{self.text()[-4000:]}")
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: no {pattern!r} within {timeout} s:\n{self.text()[-4000:]}")

    def stop(self, timeout: float = 30.0) -> tuple:
        """SIGTERM, wait; (exit code, seconds to exit). SIGKILL only after the timeout (then code None)."""
        t0 = time.monotonic()
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                self._f.close()
                return None, time.monotonic() - t0
        self._f.close()
        return self.p.returncode, time.monotonic() - t0


def test_paper_day_whole_stack(tmp_path, monkeypatch):
    from dolphin.engine.config import BLUE
    from dolphin.ledger.journal import FillJournal
    from dolphin.scanner.writer import scan_dir
    from dolphin.store import FEATURES, SCAN_LATEST, STATE_LATEST, state_map
    from dolphin.survival.stack import read_safety
    from dolphin.timeutil import parse_time
    from runtime.replay import warmup_bars

    home = tmp_path / "home"
    home.mkdir()
    env = _env(home)
    start_ms = parse_time(START)
    hist = write_history(tmp_path / "history", start_ms, warmup_bars(BLUE) + 10)
    from dolphin.store import open_store_from_env

    monkeypatch.setenv("DOLPHIN_HOME", str(home))  # this process opens the processes' embedded store
    monkeypatch.setenv("DOLPHIN_FEATURE_STORE", "embedded")
    monkeypatch.delenv("DOLPHIN_HZ_MEMBERS", raising=False)
    store = open_store_from_env()
    _healthy(store)
    stop_feed = threading.Event()

    def feed():  # order-book quality must stay younger than 30 s (Cat3); MC and ExF are refreshed alike
        while not stop_feed.wait(2.0):
            _healthy(store)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    py = [sys.executable, "-m", "dolphin.cli"]
    procs = {}
    t0 = time.monotonic()
    try:
        procs["venue"] = Proc("venue", py + ["venue", "--port", "0", "--symbols", ",".join(SYMBOLS), "--start", START,
                                             "--days", DAYS, "--speed", SPEED, "--hold", "1.0"], env, tmp_path)
        port = int(procs["venue"].wait_for(r"listening on http://127\.0\.0\.1:(\d+)", 60).group(1))
        procs["bridge"] = Proc("bridge", [sys.executable, "-m", "dolphin.bridge"], env, tmp_path)
        procs["runtime"] = Proc("runtime", py + ["runtime", "sandbox", "--base-url", f"http://127.0.0.1:{port}",
                                                 "--symbols", ",".join(SYMBOLS), "--history", str(hist),
                                                 "--risk", "store", "--bar-timeout-ms", "0", "--log-level", "INFO"], env, tmp_path)
        procs["venue"].wait_for(r"replay starts", 120)
        t_replay = time.monotonic()
        procs["venue"].wait_for(r"replay finished", 60)
        t_done = time.monotonic()
        time.sleep(3.0)  # the last bar's decision, scan file, bridge
        journal = FillJournal(home / "ledger" / "ledger.sqlite")
        fills = [e for e in journal.events("BLUE") if e.kind == "fill"]
        scans = sorted(scan_dir().rglob("scan_*.arrow"))
        latest = store.get(FEATURES, SCAN_LATEST)
        state = store.get(state_map("BLUE"), "runtime_sandbox")
        safety = read_safety(store)
    finally:
        stop_feed.set()
        exits = {name: p.stop() for name, p in reversed(list(procs.items()))}
        store.close()
    rt_log = procs["runtime"].text()
    bt = backtest_trades(start_ms)
    print(f"\nstart-up {t_replay - t0:.1f} s, replay {t_done - t_replay:.1f} s; {len(scans)} scan files; "
          f"{len(fills)} fills journaled; exits (code, s) {exits}")
    for e in fills:
        print(f"  fill {e.role} {e.symbol} {e.side} {e.qty} @ {e.price} fee {e.fee:.4f} capital {e.capital_after:.2f}")
    print(f"backtest: {bt[['entry_time', 'exit_time', 'asset', 'side', 'entry_price', 'exit_price', 'exit_reason']]}")
    assert all(code == 0 for code, _ in exits.values()), (exits, rt_log[-4000:])
    # bars reached the runtime: one scan file per decided bar close (29 replayed bars)
    assert len(scans) >= 28, (len(scans), rt_log[-4000:])
    assert "no market" not in rt_log and "OrderRejected" not in rt_log, rt_log[-6000:]
    # it trades as the backtest does on the same bars: the same entry (bar, asset, side) and exit (TP)
    assert [e.role for e in fills] == ["entry", "tp"], (fills, rt_log[-6000:])
    k = bt.iloc[0]
    assert len(bt) == 1 and k.asset == fills[0].symbol == "ETHUSDT" and k.side == -1 and fills[0].side == "SELL"
    assert k.exit_reason == "take_profit" and fills[1].side == "BUY"
    assert fills[0].qty == pytest.approx(18.17)  # sized from the same signal close and capital
    # prices: the sandbox fills a market order at its last price (the signal bar's close), the kernel at the next
    # open + 2 bps slippage; the TP is the same rule (entry x (1 - 95 bps)) on each one's entry price
    assert fills[0].price == pytest.approx(k.entry_price, rel=2e-3)
    assert fills[1].price == pytest.approx(fills[0].price * (1 - 0.0095), rel=1e-4)
    assert state is not None and state.value.get("session", "").startswith("sandbox:127.0.0.1:")
    assert safety is not None
    # the bridge published the newest scan file
    assert latest is not None and latest.timestamp_ms == int(scans[-1].stem.split("_")[1]), latest


def backtest_trades(start_ms: int):
    """`dolphin backtest` (the kernel) on the same bars: the window plus its warm-up, trading from the start."""
    from dolphin.data import load_panel
    from dolphin.engine.backtest import run_backtest
    from dolphin.engine.config import BLUE
    from dolphin.scanner import scan
    from runtime.replay import warmup_bars

    end_ms = start_ms + int(float(DAYS) * 86_400_000) - 1
    p = load_panel("usdtm-5m-2023", symbols=list(SYMBOLS), start_ms=start_ms, end_ms=end_ms,
                   warmup_bars=warmup_bars(BLUE))
    r = run_backtest(p, scan(p, int(p.open_time[0])), BLUE, trade_from_ms=int(p.close_time[p.warmup_bars]))
    return r.trades
