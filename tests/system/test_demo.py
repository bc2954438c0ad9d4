"""`dolphin demo` run as a user runs it (issue 11, section 4): the command in its own process group, Ctrl-C as a
terminal sends it (SIGINT to the whole foreground group), every process it started and every process those
started (Dagster's webserver, daemon, code servers, run workers) found by the one thing they all inherit, the
test's private DOLPHIN_HOME in their environment (/proc).

1. ``test_demo_dagster_sensors_and_ctrl_c`` (always; no Hazelcast member needed): embedded feature store,
   ``dagster dev`` on a free loopback port. Asserts through Dagster's GraphQL API that the scan-file sensor
   (and store rehydration) run before the runtime starts, that a sensor tick requested a ``scan_latest_job``
   run for one of the runtime's scan files and that the run materialised ``scan_latest``; that the watchdog
   sensor is started once the runtime wrote its first scan and ticked; that the demo prints the backtest's
   trade of this window (ETHUSDT short entered and TP'd: ``tests/system/test_system_paper_day.py``) and the replay's
   end; then Ctrl-C: exit 0, every process reported "exit 0", none left alive, the sensors the demo started
   reset to their code default in the instance under ``$DOLPHIN_HOME/dagster``.
2. ``test_demo_on_a_hazelcast_member`` (opt-in, like ``tests/integration/store/test_hazelcast_cluster.py``): when
   ``DOLPHIN_HZ_MEMBER_CMD`` is a template that runs one member in the foreground (``{port}``, ``{cluster}``,
   optional ``{members}``), e.g. ``DOLPHIN_HZ_MEMBER_CMD="/work/hz/run-member.sh {port} {cluster}"``: the same
   demo with only ``DOLPHIN_HZ_MEMBERS`` / ``DOLPHIN_HZ_CLUSTER`` set; the member (read with the hazelcast client
   itself) holds what each process publishes (runtime: ``DOLPHIN_SAFETY``, ``DOLPHIN_STATE_BLUE``; bridge and
   Dagster: ``scan_latest``; the demo's risk feed: ``mc_forewarner_latest``; Dagster's watchdog:
   ``DOLPHIN_SYSTEM_HEALTH``) and no embedded store file was made; Ctrl-C stops everything, the member is
   killed by the test.

Every wait is bounded; nothing asserts on a duration (the figures are printed, ``-s``).
"""

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from dolphin.demo import DagsterUI, free_port

REPO = Path(__file__).resolve().parents[2]
START = "2023-07-17T17:30"  # the window of tests/system/test_system_paper_day.py: the backtest trades ETHUSDT in it
DAYS = "0.1"  # 29 bars at 0.5 s per bar
MEMBER_CMD = os.environ.get("DOLPHIN_HZ_MEMBER_CMD", "").strip()

pytestmark = pytest.mark.timeout(420)


class Demo:
    """`dolphin demo ...` in its own process group (a terminal's foreground job), its output collected."""

    def __init__(self, home: Path, env: dict, *args):
        self.home = home
        self.lines: list = []
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "dolphin.cli", "demo", *args], cwd=REPO, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     text=True, start_new_session=True)
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.text())
            if m:
                return m
            if self.proc.poll() is not None:
                time.sleep(0.2)  # the reader's last lines
                pytest.fail(f"dolphin demo exited {self.proc.returncode} before {pattern!r}:\n{self.text()[-6000:]}"
                            f"\n{self.logs()}")
            time.sleep(0.2)
        pytest.fail(f"no {pattern!r} within {timeout} s:\n{self.text()[-6000:]}\n{self.logs()}")

    def logs(self) -> str:
        out = []
        for f in sorted((self.home / "demo" / "logs").glob("*.log")):
            out.append(f"--- {f.name}\n{f.read_text(errors='replace')[-2500:]}")
        return "\n".join(out)

    def ctrl_c(self, timeout: float = 120.0) -> tuple:
        """SIGINT to the process group, as a terminal's Ctrl-C; (exit code, seconds to exit)."""
        t = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
            pytest.fail(f"dolphin demo did not stop within {timeout} s of Ctrl-C:\n{self.text()[-6000:]}")
        self._t.join(10)
        return code, time.monotonic() - t


def processes_of(home: Path) -> list:
    """[(pid, command)] of live processes whose environment has DOLPHIN_HOME=<home> (zombies excluded)."""
    want = f"DOLPHIN_HOME={home}".encode() + b"\0"
    out = []
    for d in Path("/proc").glob("[0-9]*"):
        if int(d.name) == os.getpid():
            continue
        try:
            if want not in (d / "environ").read_bytes() + b"\0":
                continue
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if cmd:
            out.append((int(d.name), cmd))
    return out


def wait_until(pred, timeout: float, what: str, demo: Demo):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if demo.proc.poll() is not None:
            pytest.fail(f"dolphin demo exited {demo.proc.returncode} while waiting for {what}:\n{demo.text()[-6000:]}")
        try:
            v = pred()
            if v:
                return v
        except OSError as e:  # the webserver busy: try again
            last = e
        time.sleep(1.0)
    pytest.fail(f"no {what} within {timeout} s (last error {last}):\n{demo.text()[-6000:]}\n{demo.logs()}")


def demo_env(home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DOLPHIN_HZ_", "DOLPHIN_BINANCE_", "DAGSTER_")) and k != "DOLPHIN_FEATURE_STORE"}
    env.update(DOLPHIN_HOME=str(home), OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    return env


def sensor_statuses_in_instance(dagster_home: Path) -> dict:
    """{sensor name: InstigatorStatus name} stored in the demo's Dagster instance (read after it stopped)."""
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(dagster_home)) as inst:
        return {s.name: s.status.name for s in inst.all_instigator_state()}


def scan_run(ui: DagsterUI):
    """The first successful run the scan-file sensor requested, or None."""
    done = [r for r in ui.runs(sensor="scan_files_sensor") if r["status"] == "SUCCESS"]
    return done[-1] if done else None


def check_stopped(demo: Demo, code: int, stop_s: float, started: list) -> str:
    out = demo.text()
    assert code == 0, out[-6000:]
    stopped = re.search(r"^stopped: (.*)$", out, re.M)
    assert stopped, out[-3000:]
    exits = re.findall(r"(\w+) exit (\S+) in", stopped.group(1))
    assert {n for n, _ in exits} == {"dagster", "venue", "bridge", "runtime"}, stopped.group(0)
    assert all(c == "0" for _, c in exits), stopped.group(0)
    assert "LEFT RUNNING" not in out, out[-3000:]
    left = processes_of(demo.home)
    assert left == [], f"still alive after `dolphin demo` exited: {left}"
    assert len(started) >= 8, started  # demo, venue, bridge, runtime, dagster dev, webserver, daemon, code server
    return stopped.group(0)


def test_demo_dagster_sensors_and_ctrl_c(tmp_path):
    home = tmp_path / "home"
    port = free_port()
    demo = Demo(home, demo_env(home, DOLPHIN_FEATURE_STORE="embedded"), "--start", START, "--days", DAYS,
                "--dagster-port", str(port))
    started = []
    try:
        banner = demo.wait_for(r"up in ([\d.]+) s", 300)
        demo.wait_for(r"Ctrl-C stops everything", 10)
        assert f"dagster  http://127.0.0.1:{port} " in demo.text()
        ui = DagsterUI(port)
        sensors = ui.sensors()
        assert sensors["scan_files_sensor"] == "RUNNING" and sensors["store_rehydration_sensor"] == "RUNNING", sensors
        # the runtime's scan files -> a tick of the scan-file sensor requested a run -> scan_latest materialised
        run = wait_until(lambda: scan_run(ui), 240, "successful scan_latest_job run of scan_files_sensor", demo)
        scan_file = home / "scans" / run["tags"]["dolphin/scan_file"]
        assert run["jobName"] == "scan_latest_job" and scan_file.is_file(), run
        assert run["tags"]["dolphin/scan_dir"] == str(home / "scans"), run
        ticks = ui.sensor_ticks("scan_files_sensor")
        assert any(run["runId"] in t["runIds"] for t in ticks), ticks
        assert run["runId"] in {m["runId"] for m in ui.materializations("scan_latest")}
        # the watchdog, started once the first scan is written, ticked (it publishes DOLPHIN_SYSTEM_HEALTH/latest)
        demo.wait_for(r"watchdog_sensor running", 60)
        wd = wait_until(lambda: ui.sensor_ticks("watchdog_sensor"), 120, "a watchdog_sensor tick", demo)
        assert ui.sensors()["watchdog_sensor"] == "RUNNING"
        # the demo's own output: the backtest's trade of this window, the replay's end
        demo.wait_for(r"fill entry ETHUSDT SELL", 120)
        demo.wait_for(r"fill tp ETHUSDT BUY", 120)
        fin = demo.wait_for(r"replay finished ([\d.]+) s after launch: (\d+) bars \(scan files\), (\d+) fills", 120)
        assert int(fin.group(2)) >= 28 and int(fin.group(3)) == 2, fin.group(0)
        runs = ui.runs(sensor="scan_files_sensor")
        started = processes_of(home)
    finally:
        code, stop_s = demo.ctrl_c()
    stopped = check_stopped(demo, code, stop_s, started)
    # the sensors the demo started are back to their code default (STOPPED): the instance keeps nothing
    states = sensor_statuses_in_instance(home / "dagster")
    assert states.get("scan_files_sensor") == "DECLARED_IN_CODE", states
    assert states.get("watchdog_sensor") == "DECLARED_IN_CODE", states
    print(f"\ndemo: up in {banner.group(1)} s; replay finished {fin.group(1)} s after launch, {fin.group(2)} bars, "
          f"{fin.group(3)} fills; scan_files_sensor: {len(runs)} runs by then ({run['tags']['dolphin/scan_file']}: "
          f"{run['tags']['dolphin/new_scan_files']} new files), watchdog: {wd[0]['status']} "
          f"{(wd[0]['skipReason'] or '')[:120]}; {len(started)} processes; Ctrl-C -> exit {code} in {stop_s:.1f} s; "
          f"{stopped}")


# ------------------------------------------------------------------------------------------ opt-in: Hazelcast

def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def member(tmp_path):
    """One Hazelcast member from DOLPHIN_HZ_MEMBER_CMD on a free port, its own cluster name; killed (its process
    group) at teardown."""
    port, cluster = free_port(), f"dolphin-demo-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    cmd = MEMBER_CMD.format(port=port, cluster=cluster, members=f"127.0.0.1:{port}")
    log = tmp_path / "member.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(shlex.split(cmd), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not _accepting(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"member on {port} not up (exit {proc.poll()}): {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        yield port, cluster
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


def _member_maps(port: int, cluster: str) -> dict:
    """{map: {key: value}} of the maps the stack publishes, read with the hazelcast client itself."""
    import hazelcast

    client = hazelcast.HazelcastClient(cluster_members=[f"127.0.0.1:{port}"], cluster_name=cluster,
                                       cluster_connect_timeout=10.0)
    try:
        out = {}
        for name in ("DOLPHIN_FEATURES", "DOLPHIN_SAFETY", "DOLPHIN_STATE_BLUE", "DOLPHIN_SYSTEM_HEALTH"):
            m = client.get_map(name).blocking()
            out[name] = {k: json.loads(v) if isinstance(v, str) else v for k, v in m.entry_set()}
        return out
    finally:
        client.shutdown()


@pytest.mark.skipif(not MEMBER_CMD, reason="no Hazelcast member command: set DOLPHIN_HZ_MEMBER_CMD to a template that "
                                           "starts one member in the foreground, e.g. 'run-member.sh {port} {cluster}'")
def test_demo_on_a_hazelcast_member(tmp_path, member):
    pytest.importorskip("hazelcast")
    port, cluster = member
    home = tmp_path / "home"
    dport = free_port()
    demo = Demo(home, demo_env(home, DOLPHIN_HZ_MEMBERS=f"127.0.0.1:{port}", DOLPHIN_HZ_CLUSTER=cluster),
                "--start", START, "--days", DAYS, "--dagster-port", str(dport))
    started = []
    try:
        demo.wait_for(r"Ctrl-C stops everything", 300)
        assert f"feature store hazelcast (cluster '{cluster}' at 127.0.0.1:{port})" in demo.text()
        ui = DagsterUI(dport)
        run = wait_until(lambda: scan_run(ui), 240, "successful scan_latest_job run of scan_files_sensor", demo)
        demo.wait_for(r"fill tp ETHUSDT BUY", 120)
        demo.wait_for(r"replay finished", 120)
        wait_until(lambda: ui.sensor_ticks("watchdog_sensor"), 120, "a watchdog_sensor tick", demo)
        maps = _member_maps(port, cluster)
        started = processes_of(home)
    finally:
        code, stop_s = demo.ctrl_c()
    check_stopped(demo, code, stop_s, started)
    feats = maps["DOLPHIN_FEATURES"]
    assert "scan_latest" in feats, sorted(feats)  # the bridge and Dagster's scan_latest runs
    assert "synthetic (dolphin demo)" in json.dumps(feats.get("mc_forewarner_latest")), sorted(feats)  # risk feed
    assert "latest" in maps["DOLPHIN_SAFETY"], maps["DOLPHIN_SAFETY"]  # the runtime's survival stack
    assert "runtime_sandbox" in maps["DOLPHIN_STATE_BLUE"], maps["DOLPHIN_STATE_BLUE"]  # the runtime's capital
    assert "latest" in maps["DOLPHIN_SYSTEM_HEALTH"], maps["DOLPHIN_SYSTEM_HEALTH"]  # Dagster's watchdog sensor
    assert not (home / "store" / "features.sqlite").exists()  # nobody fell back to the embedded store
    print(f"\ndemo on hazelcast 127.0.0.1:{port} ({cluster}): run {run['tags']['dolphin/scan_file']}; "
          f"DOLPHIN_FEATURES keys {sorted(feats)}; posture {maps['DOLPHIN_SAFETY']['latest']}; "
          f"Ctrl-C -> exit {code} in {stop_s:.1f} s")
