"""`dolphin demo`: the live paper path, whole stack, on loopback (issue 11, section 4).

Starts, each as its own process with its log under ``$DOLPHIN_HOME/demo/logs``:

1. ``dagster dev`` (``python -m dolphin_assets.dev``, i.e. ``env --default-signal=INT,TERM dagster dev`` on
   127.0.0.1, DAGSTER_HOME ``$DOLPHIN_HOME/dagster``) unless ``--no-dagster``; the runtime starts only once the
   code location is loaded and the demo's sensors run (``DEMO_SENSORS``: the scan-file sensor, the watchdog,
   store rehydration; started through GraphQL when they are not running, reset to their code default at the
   end), so Dagster materialises ``scan_latest`` from the runtime's scan files from the first one;
2. ``dolphin venue`` replaying ``usdtm-5m-2023`` (default 2023-07-17, one day, 0.5 s per 5m bar), held at the
   start until the runtime subscribes its klines (``--hold``), so the warm-up joins the first replayed bar;
3. ``dolphin bridge`` (scan files -> ``scan_latest``, ``DOLPHIN_SCAN_EVENTS``, ``acb_state``);
4. ``dolphin runtime sandbox`` reaching the venue by configuration only (``--base-url``), the survival stack
   from the feature store (``--risk store``), warmed up from the venue's REST klines (``--history venue``);
 - with ``--book publisher``, `dolphin book` on the venue's (SYNTHETIC) depth: the order-book features behind
   Cat3 (by default the synthetic risk feed publishes book quality 1.0 instead).

The feature store is the configured one: embedded under ``$DOLPHIN_HOME``, or Hazelcast when
``DOLPHIN_HZ_MEMBERS`` is set (``DOLPHIN_FEATURE_STORE=hazelcast`` is then implied unless set otherwise), for
this process and every process it starts. Risk inputs: nothing in the demo computes the MC forewarner or ExF
live, so by default this process publishes SYNTHETIC healthy ones (MC GREEN, DVOL 55, refreshed every 2 s;
``--risk-feed none`` leaves the store as it is: the runtime then trades at the posture the stored inputs give). Prints where to look, the replay's start and end, every fill, every finished
Dagster run of the scan-file sensor. Ctrl-C (or SIGTERM) stops every process by its PID, in reverse order,
reports their exit codes, then stops (and reports) any process of the stack that outlived its parent; exit 0
only when every process stopped cleanly. ``tests/system/test_system_paper_day.py`` runs the same stack without
Dagster; ``tests/system/test_demo.py`` runs the command itself.
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
    p.add_argument("--dagster-port", type=int, default=3000,
                   help="the Dagster UI's port on 127.0.0.1 (default 3000; 0: a free one)")
    p.add_argument("--risk-feed", choices=("synthetic", "none"), default="synthetic",
                   help="publish synthetic healthy risk inputs (default) or none")
    p.add_argument("--book", choices=("synthetic", "publisher"), default="synthetic",
                   help="synthetic book quality 1.0 published with the risk feed (default: the window's trade is "
                        "the backtest's, at APEX), or order-book features from `dolphin book` on the venue's "
                        "synthetic depth (Cat3 then moves with it: STALKER bars change the entries)")
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
        self._signalled = None  # monotonic time of send()

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

    def send(self, sig) -> None:
        """Signal it now (its shutdown runs while others stop); ``stop()`` then only waits."""
        if self.p.poll() is None and self._signalled is None:
            self.p.send_signal(sig)
            self._signalled = time.monotonic()

    def stop(self, timeout: float = 30.0, sig=signal.SIGTERM) -> tuple:
        """Signal (unless ``send()`` did), wait; (exit code, seconds from the signal to the exit). SIGKILL after
        the timeout (code None)."""
        t0 = self._signalled or time.monotonic()
        code = self.p.poll()
        if code is None:
            if self._signalled is None:
                self.p.send_signal(sig)
            try:
                code = self.p.wait(max(0.1, timeout - (time.monotonic() - t0)))
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


def publish_synthetic_risk_inputs(store, symbols, book: bool = True) -> None:
    """Healthy survival-stack inputs stamped now (MC GREEN, DVOL 55, and with ``book`` book quality 1.0):
    SYNTHETIC, for the demo and the system tests (no live MC / ExF publisher runs here; `dolphin book` on the
    venue's synthetic depth replaces the book records when the stack runs it)."""
    from dolphin.mc.forewarner import MCEnvelope
    from dolphin.store import EXF_LATEST, FEATURES, MC_FOREWARNER_LATEST, Record, asset_ob_key, iso_utc

    t = datetime.now(timezone.utc) - timedelta(seconds=1)
    store.put(FEATURES, MC_FOREWARNER_LATEST, MCEnvelope(
        status="GREEN", reason="synthetic (dolphin demo)", catastrophic_prob=0.01, catastrophic_prob_se=0.005,
        envelope_score=0.8, terminal_p05=-0.05, terminal_p50=0.05, terminal_p95=0.15, dd_p50=0.05, dd_p95=0.12,
        n_paths=2000, n_variants=8, n_days=60, horizon_days=30, block_days=5, bootstrap="stationary",
        dd_threshold=0.2, seed=1, timestamp=t).to_store_record())
    store.put(FEATURES, EXF_LATEST, Record({"dvol_btc": 55.0, "source": "synthetic (dolphin demo)"}, iso_utc(t)))
    for s in symbols if book else ():
        store.put(FEATURES, asset_ob_key(s), Record({"depth_quality": 1.0, "fill_prob": 1.0,
                                                     "source": "synthetic (dolphin demo)"}, iso_utc(t)))


class RiskFeed:
    """Republishes the synthetic inputs every ``every_s`` (the book must stay younger than 30 s for Cat3)."""

    def __init__(self, store, symbols, every_s: float = 2.0, book: bool = True):
        self.store, self.symbols, self.every_s, self.book = store, tuple(symbols), every_s, book
        self._stop = threading.Event()
        publish_synthetic_risk_inputs(store, self.symbols, book)
        self._t = threading.Thread(target=self._loop, name="demo-risk-feed", daemon=True)
        self._t.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                publish_synthetic_risk_inputs(self.store, self.symbols, self.book)
            except Exception as e:  # a store outage: the runtime's survival stack is meant to see it
                print(f"demo risk feed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        self._stop.set()
        self._t.join(5)


# ---------------------------------------------------------------------------------------------- Dagster (GraphQL)

# Sensors the demo runs while it lasts (each started through GraphQL if it is not running, and reset to its
# code default at the end, so the instance under $DOLPHIN_HOME/dagster keeps no state the demo changed):
# the scan-file sensor (the runtime's scan files -> scan_latest runs, the lineage), the watchdog (system health
# from the store, the scans and the runtime heartbeat -> DOLPHIN_SYSTEM_HEALTH/latest; first tick at start) and
# store rehydration (running by default). Not the freshness-check sensor: it judges the daily paper chain,
# which the demo does not materialise.
DEMO_SENSORS = ("scan_files_sensor", "store_rehydration_sensor")  # running before the runtime starts
# started once the runtime has written its first scan (``Stack.start_sensors``): the watchdog ticks at once and
# then every 10 minutes, so its first report should judge the running stack, not the empty store before it
LATE_SENSORS = ("watchdog_sensor",)
LOCATION, REPOSITORY = "dolphin", "__repository__"
DONE = ("SUCCESS", "FAILURE", "CANCELED")


class DagsterError(RuntimeError):
    pass


class DagsterUI:
    """The demo's ``dagster dev`` through its GraphQL API (``http://127.0.0.1:<port>/graphql``)."""

    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.base = f"http://{host}:{port}"

    def query(self, q: str, timeout: float = 30.0, **variables) -> dict:
        import json
        import urllib.request

        req = urllib.request.Request(self.base + "/graphql", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"query": q, "variables": variables}).encode())
        with urllib.request.urlopen(req, timeout=timeout) as r:
            out = json.load(r)
        if out.get("errors"):
            raise DagsterError(f"GraphQL: {out['errors']}")
        return out["data"]

    def location_status(self) -> str | None:
        """The code location's load status (LOADING / LOADED), with its error if it failed to load."""
        entries = self.query("{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus "
                             "locationOrLoadError { __typename ... on PythonError { message } } } } } }")
        for e in entries["workspaceOrError"].get("locationEntries", []):
            if e["name"] == LOCATION:
                err = e["locationOrLoadError"] or {}
                if err.get("__typename") == "PythonError":
                    raise DagsterError(f"code location {LOCATION!r} failed to load: {err['message']}")
                return e["loadStatus"]
        return None

    def sensors(self) -> dict:
        """{sensor name: RUNNING | STOPPED}."""
        out = self.query('query($r: RepositorySelector!) { sensorsOrError(repositorySelector: $r) { __typename '
                         '... on Sensors { results { name sensorState { status } } } ... on Error { message } } }',
                         r={"repositoryName": REPOSITORY, "repositoryLocationName": LOCATION})["sensorsOrError"]
        if out["__typename"] != "Sensors":
            raise DagsterError(f"sensors: {out}")
        return {s["name"]: s["sensorState"]["status"] for s in out["results"]}

    def _sensor_mutation(self, op: str, name: str) -> str:
        out = self.query('mutation($s: SensorSelector!) { %s(sensorSelector: $s) { __typename '
                         '... on Sensor { sensorState { status } } ... on Error { message } } }' % op,
                         s={"repositoryName": REPOSITORY, "repositoryLocationName": LOCATION, "sensorName": name})[op]
        if out["__typename"] != "Sensor":
            raise DagsterError(f"{op} {name}: {out}")
        return out["sensorState"]["status"]

    def start_sensor(self, name: str) -> str:
        return self._sensor_mutation("startSensor", name)

    def reset_sensor(self, name: str) -> str:
        """Back to the status its code declares (what a fresh instance would have)."""
        return self._sensor_mutation("resetSensor", name)

    def sensor_ticks(self, name: str, limit: int = 100) -> list:
        """The sensor's latest ticks: [{status, timestamp, runIds, skipReason, error}] newest first."""
        out = self.query('query($s: SensorSelector!, $n: Int) { sensorOrError(sensorSelector: $s) { __typename '
                         '... on Sensor { sensorState { ticks(limit: $n) { status timestamp runIds skipReason '
                         'error { message } } } } } }', n=limit,
                         s={"repositoryName": REPOSITORY, "repositoryLocationName": LOCATION, "sensorName": name})
        return out["sensorOrError"]["sensorState"]["ticks"]

    def runs(self, sensor: str | None = None, limit: int = 200) -> list:
        """Runs (newest first): [{runId, jobName, status, startTime, endTime, tags: {key: value}}]."""
        flt = {"tags": [{"key": "dagster/sensor_name", "value": sensor}]} if sensor else {}
        out = self.query('query($f: RunsFilter, $n: Int) { runsOrError(filter: $f, limit: $n) { __typename '
                         '... on Runs { results { runId jobName status startTime endTime tags { key value } } } '
                         '... on Error { message } } }', f=flt, n=limit)["runsOrError"]
        if out["__typename"] != "Runs":
            raise DagsterError(f"runs: {out}")
        return [{**r, "tags": {t["key"]: t["value"] for t in r["tags"]}} for r in out["results"]]

    def materializations(self, asset: str, limit: int = 200) -> list:
        """[{runId, timestamp}] of the asset, newest first."""
        out = self.query('query($k: AssetKeyInput!, $n: Int) { assetOrError(assetKey: $k) { __typename '
                         '... on Asset { assetMaterializations(limit: $n) { runId timestamp } } } }',
                         k={"path": [asset]}, n=limit)["assetOrError"]
        return out.get("assetMaterializations", []) if out["__typename"] == "Asset" else []


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def marked_processes(marker: str) -> list:
    """[(pid, command line)] of the live processes whose environment holds ``marker`` (``NAME=value``): every
    process the demo started and everything they started in turn (Dagster's webserver, daemon, code servers
    and run workers inherit it), whatever became of their parents. Linux /proc; [] elsewhere."""
    want = marker.encode() + b"\0"
    out = []
    for d in Path("/proc").glob("[0-9]*"):
        if int(d.name) == os.getpid():
            continue
        try:
            if want not in (d / "environ").read_bytes() + b"\0":
                continue
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone, or not ours
            continue
        if cmd:  # a zombie has none: it is exiting
            out.append((int(d.name), cmd))
    return out


class Interrupted(Exception):
    pass


class Stack:
    """[dagster] -> venue -> bridge -> runtime, all on loopback; ``stop()``: runtime, bridge, venue in that
    order, ``dagster dev`` alongside the runtime.

    With ``dagster_port`` (0: a free one) ``dagster dev`` starts first and the runtime only once the code
    location is loaded and ``sensors`` run (started through GraphQL if needed; reset to their code default at
    ``stop()``), so Dagster sees the runtime's first scan file. ``abort`` (an Event) interrupts the start-up."""

    def __init__(self, home: Path, *, data="usdtm-5m-2023", start=DEFAULT_START, days=1.0, speed=0.5,
                 symbols=DEFAULT_SYMBOLS, port=0, dagster_port=None, runtime_args=(), mode="sandbox",
                 sensors=DEMO_SENSORS, late_sensors=LATE_SENSORS, abort: threading.Event | None = None,
                 book: bool = False):
        import secrets

        self.home = Path(home)
        self.symbols = tuple(sorted(symbols))  # the runtime's order (sorted, as load_panel gives the backtest)
        self.logdir = self.home / "demo" / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)
        # every process of this stack (and its descendants) carries this in its environment: stop() finds any
        # that outlived its parent
        self.marker = f"DOLPHIN_DEMO_ID={secrets.token_hex(8)}"
        # one API key pair per stack: the venue accepts it, the runtime's Binance adapter reads it from the
        # environment under its own names (testnet names: the node's default environment)
        key, secret = secrets.token_hex(16), secrets.token_hex(32)
        self.env = child_env(DOLPHIN_HOME=self.home, DOLPHIN_VENUE_API_KEY=key, DOLPHIN_VENUE_API_SECRET=secret,
                             BINANCE_FUTURES_TESTNET_API_KEY=key, BINANCE_FUTURES_TESTNET_API_SECRET=secret,
                             DOLPHIN_DEMO_ID=self.marker.split("=", 1)[1])
        self.mode = mode
        self.book = book
        self.procs: dict = {}
        self.spec = dict(data=data, start=start, days=days, speed=speed, port=port, runtime_args=tuple(runtime_args))
        self.port = None
        self.dagster_port = (dagster_port or free_port()) if dagster_port is not None else None
        self.dagster = DagsterUI(self.dagster_port) if self.dagster_port else None
        self.sensors = tuple(sensors) if self.dagster else ()
        self.late_sensors = tuple(late_sensors) if self.dagster else ()
        self.sensor_status: dict = {}  # after start-up: {name: status}
        self.sensors_started: list = []  # the ones this stack started (reset at stop)
        self.timings: dict = {}  # seconds from start(): dagster_ready, runtime_started
        self.leftovers: list = []  # [(pid, cmd)] still alive GRACE_S after stop() (then killed)
        self.settle_s = 0.0  # how long the stack's grandchildren took to exit after their parents
        self.abort = abort or threading.Event()

    def _check_abort(self) -> None:
        if self.abort.is_set():
            raise Interrupted("stopped during start-up")

    def _wait_for(self, proc: "Proc", pattern: str, timeout: float):
        import re

        deadline = time.monotonic() + timeout
        while True:
            self._check_abort()
            m = re.search(pattern, proc.text())
            if m:
                return m
            if proc.p.poll() is not None:
                raise RuntimeError(f"{proc.name} exited {proc.p.returncode} before {pattern!r}:\n{proc.text()[-4000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{proc.name}: no {pattern!r} within {timeout} s:\n{proc.text()[-4000:]}")
            time.sleep(0.1)

    def start(self) -> "Stack":
        from dolphin.engine.config import BLUE
        from runtime.replay import warmup_bars

        t0 = time.monotonic()
        sp = self.spec
        py = [sys.executable, "-m", "dolphin.cli"]
        if self.dagster:  # first: the slowest to come up (~20 s), it starts while the venue loads its data
            self.procs["dagster"] = Proc("dagster", [sys.executable, "-m", "dolphin_assets.dev", "--port",
                                                     str(self.dagster_port)], self.env, self.logdir)
        self.procs["venue"] = Proc("venue", py + [
            "venue", "--data", sp["data"], "--port", str(sp["port"]), "--symbols", ",".join(self.symbols),
            "--start", sp["start"], "--days", str(sp["days"]), "--speed", str(sp["speed"]), "--hold", "1.0",
            # the runtime warms up from the venue's REST klines, as after any restart in production
            "--history-bars", str(warmup_bars(BLUE) + 10)],
            self.env, self.logdir)
        self.port = int(self._wait_for(self.procs["venue"], r"listening on http://127\.0\.0\.1:(\d+)", 120).group(1))
        self.procs["bridge"] = Proc("bridge", [sys.executable, "-m", "dolphin.bridge"], self.env, self.logdir)
        if self.book:  # order-book features from the venue's (synthetic) depth, as `dolphin book` does on Binance
            self.procs["book"] = Proc("book", py + [
                "book", "--symbols", ",".join(self.symbols), "--ws-url", f"ws://127.0.0.1:{self.port}",
                "--http-url", f"http://127.0.0.1:{self.port}"], self.env, self.logdir)
        if self.dagster:
            self._dagster_up()
            self.timings["dagster_ready"] = time.monotonic() - t0
        self._check_abort()
        self.procs["runtime"] = Proc("runtime", py + [
            "runtime", self.mode, "--base-url", f"http://127.0.0.1:{self.port}", "--symbols", ",".join(self.symbols),
            "--history", "venue", "--risk", "store", *sp["runtime_args"]],
            self.env, self.logdir)
        self.timings["runtime_started"] = time.monotonic() - t0
        return self

    def _dagster_up(self, timeout: float = 240.0) -> None:
        """Our webserver serves (its own log says so: not another one on the port), the code location is
        loaded, the demo's sensors run."""
        proc, deadline = self.procs["dagster"], time.monotonic() + timeout
        self._wait_for(proc, r"Serving dagster-webserver on http://127\.0\.0\.1:%d " % self.dagster_port, timeout)
        status = None
        while status != "LOADED":
            self._check_abort()
            if proc.p.poll() is not None:
                raise RuntimeError(f"dagster exited {proc.p.returncode}:\n{proc.text()[-4000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"dagster: code location {LOCATION!r} not loaded within {timeout} s "
                                   f"(status {status}):\n{proc.text()[-4000:]}")
            try:
                status = self.dagster.location_status()
            except OSError:
                status = None
            if status != "LOADED":
                time.sleep(0.5)
        before = self.dagster.sensors()
        unknown = [s for s in self.sensors + self.late_sensors if s not in before]
        if unknown:
            raise RuntimeError(f"dagster: no sensor {unknown} in the code location (it has {sorted(before)})")
        self.start_sensors(self.sensors)

    def start_sensors(self, names) -> list:
        """Start (through GraphQL) those of ``names`` that do not run; they are reset at ``stop()``. Returns the
        ones started; raises if any does not run afterwards."""
        before = self.dagster.sensors()
        started = [n for n in names if before.get(n) != "RUNNING"]
        for name in started:
            self.dagster.start_sensor(name)
            self.sensors_started.append(name)
        self.sensor_status = self.dagster.sensors()
        not_running = [s for s in names if self.sensor_status.get(s) != "RUNNING"]
        if not_running:
            raise DagsterError(f"sensors {not_running} do not run after startSensor: {self.sensor_status}")
        return started

    def _reset_sensors(self) -> None:
        for name in list(self.sensors_started):
            try:
                self.dagster.reset_sensor(name)
                self.sensors_started.remove(name)
            except (OSError, DagsterError) as e:
                print(f"dagster: could not reset {name} to its default status ({type(e).__name__}: {e}); it stays "
                      f"RUNNING in {self.home / 'dagster'} (stop it in the UI)", file=sys.stderr, flush=True)

    # dagster dev exits before its code server does: that one ends by itself once its in-flight runs are done
    # (a scan_latest run: 5-20 s on a busy 2-core machine)
    GRACE_S = 60.0

    def stop(self, timeout: float = 30.0) -> dict:
        """SIGTERM each process by its PID, runtime first, then bridge and venue; ``dagster dev`` gets SIGINT
        (its own Ctrl-C) at the same time as the runtime (nothing depends on it; the sensors the stack started
        are reset first). Exit codes. Then waits up to ``GRACE_S`` for every process of the stack (the marker in
        its environment) to be gone; any still alive then is reported in ``leftovers`` and stopped by its PID
        (SIGTERM, SIGKILL after 5 s)."""
        out = {}
        dagster = self.procs.get("dagster")
        if dagster is not None and dagster.p.poll() is None:
            self._reset_sensors()
            dagster.send(signal.SIGINT)
        for name in reversed(list(self.procs)):
            if name != "dagster":
                out[name] = self.procs[name].stop(timeout)
        if dagster is not None:
            out["dagster"] = dagster.stop(timeout, signal.SIGINT)
        t0 = time.monotonic()
        while marked_processes(self.marker) and time.monotonic() < t0 + self.GRACE_S:
            time.sleep(0.1)
        self.settle_s = time.monotonic() - t0
        self.leftovers = marked_processes(self.marker)
        for pid, _ in self.leftovers:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        while self.leftovers and time.monotonic() < deadline and marked_processes(self.marker):
            time.sleep(0.1)
        for pid, _ in marked_processes(self.marker):
            _signal(pid, signal.SIGKILL)
        return out


def _signal(pid: int, sig) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------------------------------------- the command

def use_hazelcast_when_members_set(env=os.environ) -> bool:
    """``DOLPHIN_HZ_MEMBERS`` set and no ``DOLPHIN_FEATURE_STORE``: the demo (and every process it starts)
    uses Hazelcast (issue 11: "embedded, or Hazelcast when DOLPHIN_HZ_MEMBERS is set"). An explicit
    ``DOLPHIN_FEATURE_STORE`` wins."""
    if (env.get("DOLPHIN_HZ_MEMBERS") or "").strip() and not (env.get("DOLPHIN_FEATURE_STORE") or "").strip():
        env["DOLPHIN_FEATURE_STORE"] = "hazelcast"
        return True
    return False


class Monitor:
    """What the demo prints while it runs: the replay's start and end, every fill journaled by this run's
    runtime, every finished Dagster run of the scan-file sensor; the figures at the end."""

    def __init__(self, stack: Stack, mode: str, t_launch: float, wall_launch: float):
        from dolphin.ledger.journal import FillJournal
        from dolphin.status import ledger_path

        self.stack, self.mode, self.t_launch, self.wall_launch = stack, mode, t_launch, wall_launch
        self.journal = FillJournal(ledger_path())
        self.fills_before = len(self._events())  # an earlier demo's fills in the same DOLPHIN_HOME: not ours
        self.fills: list = []
        self.runs: dict = {}  # run id -> run (finished)
        self.replay_started = self.replay_finished = None  # seconds after launch
        self.summary_printed = False
        self.late_started = not stack.late_sensors
        self._next_dagster = 0.0

    def _events(self) -> list:
        return [e for e in self.journal.events("BLUE") if e.session.startswith(f"{self.mode}:127.0.0.1:")]

    def bars(self) -> int:
        """Scan files the runtime wrote during this run (one per bar close it decided)."""
        from dolphin.scanner.writer import scan_dir

        return sum(1 for f in scan_dir().rglob("scan_*.arrow") if f.stat().st_mtime >= self.wall_launch)

    def poll(self) -> None:
        now = time.monotonic() - self.t_launch
        venue = self.stack.procs["venue"].text()
        if self.replay_started is None and "replay starts" in venue:
            self.replay_started = now
            print(f"replay started {now:.1f} s after launch (runtime subscribed its klines)", flush=True)
        if self.replay_finished is None and "replay finished" in venue:
            self.replay_finished = now
        if not self.late_started and self.replay_started is not None and self.bars() > 0:
            self.late_started = True
            try:
                started = self.stack.start_sensors(self.stack.late_sensors)
                print(f"dagster: the runtime's first scan is written: {', '.join(self.stack.late_sensors)} running"
                      + (f" (started: {', '.join(started)})" if started else ""), flush=True)
            except (OSError, DagsterError) as e:
                print(f"dagster: could not start {self.stack.late_sensors}: {type(e).__name__}: {e}", flush=True)
        for e in self._events()[self.fills_before + len(self.fills):]:
            self.fills.append(e)
            print(f"{e.kind} {e.role} {e.symbol} {e.side} {e.qty:g} @ {e.price:g} capital {e.capital_after:,.2f}",
                  flush=True)
        if self.stack.dagster and time.monotonic() >= self._next_dagster:
            self._next_dagster = time.monotonic() + 5.0
            try:
                runs = self.stack.dagster.runs(sensor="scan_files_sensor")
            except (OSError, DagsterError) as e:
                print(f"dagster: GraphQL: {type(e).__name__}: {e}", flush=True)
                runs = []
            for r in reversed(runs):
                if r["status"] in DONE and r["runId"] not in self.runs:
                    self.runs[r["runId"]] = r
                    took = (r["endTime"] or 0) - (r["startTime"] or 0)
                    print(f"dagster {r['jobName']} {r['status']}: {r['tags'].get('dolphin/scan_file')} "
                          f"({r['tags'].get('dolphin/new_scan_files')} new scan file(s)) in {took:.1f} s, "
                          f"run {r['runId'][:8]}", flush=True)
        if self.replay_finished is not None and not self.summary_printed and now >= self.replay_finished + 3.0:
            self.summary_printed = True  # the last bar's decision and scan file are in by now
            print(f"replay finished {self.replay_finished:.1f} s after launch: {self.figures()}. "
                  f"The stack stays up ({'Dagster UI, ' if self.stack.dagster else ''}dolphin status); Ctrl-C stops it.",
                  flush=True)

    def figures(self) -> str:
        out = f"{self.bars()} bars (scan files), {len(self.fills)} fills"
        if self.stack.dagster:
            ok = sum(1 for r in self.runs.values() if r["status"] == "SUCCESS")
            out += f", {len(self.runs)} Dagster scan_latest runs ({ok} succeeded)"
        return out


def cmd_demo(args) -> int:
    from dolphin.paths import data_home
    from dolphin.status import ledger_path
    from dolphin.store import StoreUnavailableError
    from dolphin.adapters.store_factory import open_store_from_env, store_config_from_env

    t_launch, wall_launch = time.monotonic(), time.time()
    hz = use_hazelcast_when_members_set()
    home = data_home()
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    if not args.no_dagster and args.dagster_port and port_in_use(args.dagster_port):
        print(f"dolphin demo: 127.0.0.1:{args.dagster_port} is in use (another dagster dev?): choose another port "
              "(--dagster-port N, 0 for a free one; make demo DAGSTER_PORT=N)", file=sys.stderr)
        return 2
    cfg = store_config_from_env()
    try:
        store = open_store_from_env()
    except StoreUnavailableError as e:
        print(f"dolphin demo: the feature store {cfg.describe()} is unreachable: {e}", file=sys.stderr)
        return 2
    stopping = threading.Event()
    stack = Stack(home, data=args.data, start=args.start, days=args.days, speed=args.speed, symbols=symbols,
                  port=args.port, dagster_port=None if args.no_dagster else args.dagster_port, mode=args.mode,
                  abort=stopping, book=args.book == "publisher")
    feed = monitor = None
    failed = interrupted = False

    def on_term(*_):
        stopping.set()

    # SIGINT too: started in the background by a non-interactive shell, Python inherits SIGINT ignored
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print(f"dolphin demo: DOLPHIN_HOME={home}; feature store {cfg.describe()}"
          + (" (DOLPHIN_HZ_MEMBERS is set)" if hz else "") + f"; logs {stack.logdir}", flush=True)
    if stack.dagster:
        print(f"starting dagster dev on http://127.0.0.1:{stack.dagster_port}, the venue and the bridge; the runtime "
              "starts once Dagster's sensors run (~20-40 s) ...", flush=True)
    try:
        if args.risk_feed == "synthetic":
            feed = RiskFeed(store, stack.symbols, book=args.book == "synthetic")
        stack.start()
        monitor = Monitor(stack, args.mode, t_launch, wall_launch)
        d = stack.dagster_port
        print(f"up in {time.monotonic() - t_launch:.1f} s"
              + (f" (Dagster ready with its sensors after {stack.timings['dagster_ready']:.1f} s)" if d else "")
              + ":\n"
              f"  venue    http://127.0.0.1:{stack.port} (REST /fapi, ws /market /public /private), replaying "
              f"{args.data} from {args.start} for {args.days:g} day(s) at {args.speed:g} s per bar; "
              f"symbols {', '.join(stack.symbols)}\n"
              f"  runtime  dolphin runtime {args.mode} --base-url http://127.0.0.1:{stack.port} "
              f"({'Nautilus-simulated fills' if args.mode == 'sandbox' else 'real orders, filled by the venue'})\n"
              + (f"  dagster  http://127.0.0.1:{d}  (GraphQL http://127.0.0.1:{d}/graphql; DAGSTER_HOME "
                 f"{home / 'dagster'}); sensors running: "
                 + ", ".join(f"{s}{' (started by the demo)' if s in stack.sensors_started else ''}"
                             for s in stack.sensors)
                 + f"; {', '.join(stack.late_sensors)} once the runtime's first scan is written\n" if d else "")
              + f"  logs     {stack.logdir}/{{{','.join(stack.procs)}}}.log\n"
              f"  scans    {home / 'scans'}   ledger {ledger_path()}\n"
              f"  status   dolphin status   (another terminal, same DOLPHIN_HOME)\n"
              f"  risk     {'SYNTHETIC healthy MC / DVOL published by the demo' if feed else 'as stored'}; "
              + ("order books: dolphin book on the venue's SYNTHETIC depth\n" if stack.book else
                 "order books: SYNTHETIC quality 1.0 published by the demo\n" if feed else "order books: as stored\n")
              + "Ctrl-C stops everything.", flush=True)
        while not stopping.is_set():
            for name, p in stack.procs.items():
                if name != "venue" and p.p.poll() is not None:
                    print(f"{name} exited {p.p.returncode}: see {p.log}", flush=True)
                    failed = True
                    stopping.set()
            monitor.poll()
            stopping.wait(1.0)
    except Interrupted:
        interrupted = True
    except (RuntimeError, DagsterError, OSError) as e:
        failed = True
        print(f"dolphin demo: start-up failed: {e}", file=sys.stderr, flush=True)
    finally:
        t_stop = time.monotonic()
        print("stopping ...", flush=True)
        if monitor is not None:
            try:
                monitor.poll()  # the last fills and runs
            except Exception as e:  # noqa: BLE001 - the stop must go on
                print(f"(last poll: {type(e).__name__}: {e})", flush=True)
        codes = stack.stop()
        if feed is not None:
            feed.stop()
        store.close()
        print("stopped: " + ", ".join(f"{n} exit {c} in {s:.1f} s" for n, (c, s) in codes.items())
              + (f"; the rest of the stack (dagster's code servers) gone {stack.settle_s:.1f} s later" if stack.dagster else "")
              + f"; all stopped {time.monotonic() - t_stop:.1f} s after the stop began", flush=True)
        for pid, cmd in stack.leftovers:
            print(f"LEFT RUNNING after its parent stopped (now killed): pid {pid}: {cmd[:200]}", flush=True)
        if monitor is not None:
            print(f"this run: {monitor.figures()}", flush=True)
    if interrupted:  # Ctrl-C during start-up: a process interrupted while starting may exit 1 (dagster dev does)
        print("interrupted during start-up", flush=True)
        return 130 if all(c is not None for c, _ in codes.values()) and not stack.leftovers else 1
    ok = all(c in (0, -signal.SIGINT, 130) for c, _ in codes.values()) and not stack.leftovers and not failed
    return 0 if ok else 1
