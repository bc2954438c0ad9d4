"""`dolphin demo`: the live paper path, whole stack, on loopback (issue 11, section 4).

Starts, each as its own process with its log under ``$DOLPHIN_HOME/demo/logs``:

1. ``dolphin venue`` replaying ``usdtm-5m-2023`` (default 2023-07-17, one day, 0.5 s per 5m bar), held at the
   start until the runtime subscribes its klines (``--hold``), so the warm-up joins the first replayed bar;
2. ``dolphin bridge`` (scan files -> ``scan_latest``, ``DOLPHIN_SCAN_EVENTS``, ``acb_state``);
3. ``dagster dev`` (``python -m dolphin_assets.dev``, i.e. ``env --default-signal=INT,TERM dagster dev``) unless
   ``--no-dagster``;
4. ``dolphin runtime sandbox`` reaching the venue by configuration only (``--base-url``), the survival stack
   from the feature store (``--risk store``), warmed up from the recorded bars just before the venue's start.

The feature store is the configured one (embedded under ``$DOLPHIN_HOME``, or Hazelcast when
``DOLPHIN_HZ_MEMBERS`` is set). Risk inputs: nothing in the demo computes the MC forewarner, ExF or an order
book live, so by default this process publishes SYNTHETIC healthy ones (MC GREEN, DVOL 55, book quality 1.0,
refreshed every 2 s; ``--risk-feed none`` leaves the store as it is: the runtime then trades at the posture
the stored inputs give). Prints where to look; Ctrl-C (or SIGTERM) stops every process by its PID, in reverse
order, and reports their exit codes. ``tests/test_system_paper_day.py`` runs the same stack without Dagster.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SYMBOLS = ("BTCUSDT", "DOGEUSDT", "ETHUSDT")  # SOL and XRP have no bars in usdtm-5m-2023 on 2023-07-17
DEFAULT_START = "2023-07-17"


def register(sub) -> None:
    p = sub.add_parser("demo", help="the whole stack on loopback: venue, bridge, Dagster, runtime sandbox",
                       description=__doc__.splitlines()[0])
    p.add_argument("--data", default="usdtm-5m-2023", help="candle set the venue replays (default usdtm-5m-2023)")
    p.add_argument("--start", default=DEFAULT_START, help=f"first replayed bar, UTC (default {DEFAULT_START})")
    p.add_argument("--days", type=float, default=1.0, help="days to replay (default 1)")
    p.add_argument("--speed", type=float, default=0.5, help="wall seconds per bar (default 0.5)")
    p.add_argument("--symbols", default=",".join(DEFAULT_SYMBOLS), help="comma-separated perpetuals")
    p.add_argument("--port", type=int, default=0, help="venue port (default: a free one)")
    p.add_argument("--mode", choices=("sandbox", "live"), default="sandbox",
                   help="sandbox: Nautilus simulates the fills (default); live: the runtime's real Binance orders, "
                        "filled by the venue")
    p.add_argument("--no-dagster", action="store_true", help="do not start `dagster dev`")
    p.add_argument("--dagster-port", type=int, default=3000)
    p.add_argument("--risk-feed", choices=("synthetic", "none"), default="synthetic",
                   help="publish synthetic healthy risk inputs (default) or none")
    p.set_defaults(func=cmd_demo)


class Proc:
    """A subprocess in its own session (a terminal's Ctrl-C reaches only the demo, which stops the others in
    order), output to a log file; stopped by its PID."""

    def __init__(self, name: str, args: list, env: dict, logdir: Path):
        self.name, self.args, self.log = name, args, Path(logdir) / f"{name}.log"
        self._f = open(self.log, "w")
        self.p = subprocess.Popen(args, cwd=REPO, env=env, stdout=self._f, stderr=subprocess.STDOUT, text=True,
                                  start_new_session=True)
        self.pid = self.p.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float):
        import re

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.text())
            if m:
                return m
            if self.p.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.p.returncode} before {pattern!r}:\n{self.text()[-4000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: no {pattern!r} within {timeout} s:\n{self.text()[-4000:]}")

    def stop(self, timeout: float = 30.0, sig=signal.SIGTERM) -> tuple:
        """Signal, wait; (exit code, seconds to exit). SIGKILL after the timeout (code None)."""
        t0 = time.monotonic()
        code = self.p.poll()
        if code is None:
            self.p.send_signal(sig)
            try:
                code = self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                code = None
        self._f.close()
        return code, time.monotonic() - t0


def child_env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PYTHONUNBUFFERED="1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def write_history(out: Path, data: str, symbols, start_ms: int, bars: int) -> Path:
    """The recorded bars just before ``start_ms`` (the venue's first replayed bar), one Parquet per symbol:
    the runtime's warm-up (``--history``)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from dolphin.paths import resolve_kline_set

    src = Path(resolve_kline_set(data))
    out.mkdir(parents=True, exist_ok=True)
    for s in symbols:
        t = pq.read_table(src / f"{s}.parquet")
        t = t.filter(pc.less(pc.cast(t.column("open_time"), "int64"), start_ms))
        pq.write_table(t.slice(max(0, t.num_rows - bars)), out / f"{s}.parquet")
    return out


def publish_synthetic_risk_inputs(store, symbols) -> None:
    """Healthy survival-stack inputs stamped now (MC GREEN, DVOL 55, book quality 1.0): SYNTHETIC, for the demo
    and the system test (no live MC / ExF / order-book publisher runs here)."""
    from dolphin.mc.forewarner import MCEnvelope
    from dolphin.store import EXF_LATEST, FEATURES, MC_FOREWARNER_LATEST, Record, asset_ob_key, iso_utc

    t = datetime.now(timezone.utc) - timedelta(seconds=1)
    store.put(FEATURES, MC_FOREWARNER_LATEST, MCEnvelope(
        status="GREEN", reason="synthetic (dolphin demo)", catastrophic_prob=0.01, catastrophic_prob_se=0.005,
        envelope_score=0.8, terminal_p05=-0.05, terminal_p50=0.05, terminal_p95=0.15, dd_p50=0.05, dd_p95=0.12,
        n_paths=2000, n_variants=8, n_days=60, horizon_days=30, block_days=5, bootstrap="stationary",
        dd_threshold=0.2, seed=1, timestamp=t).to_store_record())
    store.put(FEATURES, EXF_LATEST, Record({"dvol_btc": 55.0, "source": "synthetic (dolphin demo)"}, iso_utc(t)))
    for s in symbols:
        store.put(FEATURES, asset_ob_key(s), Record({"depth_quality": 1.0, "fill_prob": 1.0,
                                                     "source": "synthetic (dolphin demo)"}, iso_utc(t)))


class RiskFeed:
    """Republishes the synthetic inputs every ``every_s`` (the book must stay younger than 30 s for Cat3)."""

    def __init__(self, store, symbols, every_s: float = 2.0):
        self.store, self.symbols, self.every_s = store, tuple(symbols), every_s
        self._stop = threading.Event()
        publish_synthetic_risk_inputs(store, self.symbols)
        self._t = threading.Thread(target=self._loop, name="demo-risk-feed", daemon=True)
        self._t.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                publish_synthetic_risk_inputs(self.store, self.symbols)
            except Exception as e:  # a store outage: the runtime's survival stack is meant to see it
                print(f"demo risk feed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        self._stop.set()
        self._t.join(5)


class Stack:
    """venue -> bridge -> [dagster] -> runtime sandbox, all on loopback; ``stop()`` in reverse order."""

    def __init__(self, home: Path, *, data="usdtm-5m-2023", start=DEFAULT_START, days=1.0, speed=0.5,
                 symbols=DEFAULT_SYMBOLS, port=0, dagster_port=None, runtime_args=(), mode="sandbox"):
        self.home = Path(home)
        self.symbols = tuple(sorted(symbols))  # the order load_panel gives the runtime's --history
        self.logdir = self.home / "demo" / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)
        # one API key pair per stack: the venue accepts it, the runtime's Binance adapter reads it from the
        # environment under its own names (testnet names: the node's default environment)
        import secrets

        key, secret = secrets.token_hex(16), secrets.token_hex(32)
        self.env = child_env(DOLPHIN_HOME=self.home, DOLPHIN_VENUE_API_KEY=key, DOLPHIN_VENUE_API_SECRET=secret,
                             BINANCE_FUTURES_TESTNET_API_KEY=key, BINANCE_FUTURES_TESTNET_API_SECRET=secret)
        self.mode = mode
        self.procs: dict = {}
        self.spec = dict(data=data, start=start, days=days, speed=speed, port=port, dagster_port=dagster_port,
                         runtime_args=tuple(runtime_args))
        self.port = None

    def start(self) -> "Stack":
        from dolphin.engine.config import BLUE
        from dolphin.timeutil import parse_time
        from runtime.replay import warmup_bars

        sp = self.spec
        py = [sys.executable, "-m", "dolphin.cli"]
        start_ms = parse_time(sp["start"])
        hist = write_history(self.home / "demo" / "history", sp["data"], self.symbols, start_ms,
                             warmup_bars(BLUE) + 10)
        self.procs["venue"] = Proc("venue", py + [
            "venue", "--data", sp["data"], "--port", str(sp["port"]), "--symbols", ",".join(self.symbols),
            "--start", sp["start"], "--days", str(sp["days"]), "--speed", str(sp["speed"]), "--hold", "1.0"],
            self.env, self.logdir)
        self.port = int(self.procs["venue"].wait_for(r"listening on http://127\.0\.0\.1:(\d+)", 120).group(1))
        self.procs["bridge"] = Proc("bridge", [sys.executable, "-m", "dolphin.bridge"], self.env, self.logdir)
        if sp["dagster_port"]:
            self.procs["dagster"] = Proc("dagster", [sys.executable, "-m", "dolphin_assets.dev", "--port",
                                                     str(sp["dagster_port"])], self.env, self.logdir)
        self.procs["runtime"] = Proc("runtime", py + [
            "runtime", self.mode, "--base-url", f"http://127.0.0.1:{self.port}", "--symbols", ",".join(self.symbols),
            "--history", str(hist), "--risk", "store", "--bar-timeout-ms", "0", *sp["runtime_args"]],
            self.env, self.logdir)
        return self

    def stop(self, timeout: float = 30.0) -> dict:
        """SIGTERM each process by its PID (dagster dev: SIGINT, its own Ctrl-C), runtime first; exit codes."""
        out = {}
        for name in reversed(list(self.procs)):
            sig = signal.SIGINT if name == "dagster" else signal.SIGTERM
            out[name] = self.procs[name].stop(timeout, sig)
        return out


def cmd_demo(args) -> int:
    from dolphin.ledger.journal import FillJournal
    from dolphin.paths import data_home
    from dolphin.status import ledger_path
    from dolphin.store import open_store_from_env, store_config_from_env

    home = data_home()
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    stack = Stack(home, data=args.data, start=args.start, days=args.days, speed=args.speed, symbols=symbols,
                  port=args.port, dagster_port=None if args.no_dagster else args.dagster_port, mode=args.mode)
    store = feed = None
    stopping = threading.Event()

    def on_term(*_):
        stopping.set()

    # SIGINT too: started in the background by a non-interactive shell, Python inherits SIGINT ignored
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        if args.risk_feed == "synthetic":
            store = open_store_from_env()
            feed = RiskFeed(store, stack.symbols)
        stack.start()
        print(f"dolphin demo: DOLPHIN_HOME={home}; feature store {store_config_from_env().describe()}\n"
              f"  venue    http://127.0.0.1:{stack.port} (REST /fapi, ws /market /public /private), replaying "
              f"{args.data} from {args.start} for {args.days:g} day(s) at {args.speed:g} s per bar; "
              f"symbols {', '.join(stack.symbols)}\n"
              f"  runtime  dolphin runtime {args.mode} --base-url http://127.0.0.1:{stack.port} "
              f"({'Nautilus-simulated fills' if args.mode == 'sandbox' else 'real orders, filled by the venue'})\n"
              + (f"  dagster  http://127.0.0.1:{args.dagster_port}\n" if not args.no_dagster else "")
              + f"  logs     {stack.logdir}/{{venue,bridge,{'dagster,' if not args.no_dagster else ''}runtime}}.log\n"
              f"  scans    {home / 'scans'}   ledger {ledger_path()}\n"
              f"  status   dolphin status   (another terminal, same DOLPHIN_HOME)\n"
              f"  risk     {'SYNTHETIC healthy inputs published by the demo' if feed else 'as stored'}\n"
              "Ctrl-C stops everything.", flush=True)
        journal = FillJournal(ledger_path())
        seen = 0
        while not stopping.is_set():
            for name, p in stack.procs.items():
                if name != "venue" and p.p.poll() is not None:
                    print(f"{name} exited {p.p.returncode}: see {p.log}", flush=True)
                    stopping.set()
            events = [e for e in journal.events("BLUE") if e.session.startswith(f"{args.mode}:127.0.0.1:")]
            for e in events[seen:]:
                print(f"{e.kind} {e.role} {e.symbol} {e.side} {e.qty:g} @ {e.price:g} "
                      f"capital {e.capital_after:,.2f}", flush=True)
            seen = len(events)
            stopping.wait(2.0)
    finally:
        print("stopping ...", flush=True)
        codes = stack.stop()
        if feed is not None:
            feed.stop()
        if store is not None:
            store.close()
        print("stopped: " + ", ".join(f"{n} exit {c} in {s:.1f} s" for n, (c, s) in codes.items()), flush=True)
    return 0 if all(c in (0, -signal.SIGINT, 130) for c, _ in codes.values()) else 1
