"""The BLUE graph on a real dask.distributed cluster on loopback (a `dask scheduler` and 2 `dask worker`
processes, one holding SINGLE_HOST) against the multiprocess executor: a backfill of several real days of
spot-5m-2024 gives the same ledger, scans and warehouse tables; the single-host writers ran only on the
pinned worker; SIGTERM stops the cluster processes."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.dagster import dagster_env

REPO = Path(__file__).resolve().parents[3]
DAYS = ["2024-01-01", "2024-01-02"]
# opt-in: two backfills of the whole BLUE graph (one per engine) plus a cluster start take minutes on the shared
# 2-core VM (measured in the note); the default run keeps the executor choice and the ordering checks below
OPT_IN = pytest.mark.skipif(os.environ.get("DOLPHIN_DISTRIBUTED_TEST") != "1",
                            reason="opt-in: DOLPHIN_DISTRIBUTED_TEST=1 (a real dask cluster on loopback, minutes)")
DASK = str(Path(sys.executable).with_name("dask"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args, log: Path, env):
    f = open(log, "w")
    return subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True), f


def _wait_workers(addr, n, procs, logs, timeout=60):
    from dask.distributed import Client

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for p, log in zip(procs, logs):
            if p.poll() is not None:
                pytest.fail(f"a dask process exited ({p.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with Client(addr, timeout=5) as c:
                if len(c.scheduler_info()["workers"]) >= n:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail("dask workers did not register:\n" + "\n".join(l.read_text()[-1500:] for l in logs))


def _results(home: Path):
    """Ledger days, the day scan files and the warehouse tables of a backfill's data home."""
    import duckdb

    from dolphin.ledger import CapitalLedger

    led = [(e.day, e.record.closing_capital, e.record.closing_equity, e.record.n_trades)
           for e in CapitalLedger(home / "ledger" / "ledger.sqlite").current("BLUE")]
    scans = {p.relative_to(home).as_posix(): p.read_bytes() for p in sorted((home / "scans").rglob("*.parquet"))}
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        tables = {}
        for (schema, name) in con.execute("select table_schema, table_name from information_schema.tables").fetchall():
            df = con.execute(f'select * from "{schema}"."{name}"').df()
            # which run wrote a row (run_id) and when (recorded_at ...) differ between any two backfills
            df = df.drop(columns=[c for c in df.columns if c.endswith("_at") or c == "run_id"])
            tables[f"{schema}.{name}"] = df.sort_values(list(df.columns)).reset_index(drop=True)
    finally:
        con.close()
    return led, scans, tables


def _backfill(home: Path, engine: str, scheduler=None):
    from dolphin_assets.distributed import backfill

    with dagster_env(home):
        t = time.perf_counter()
        # risk layer none: the full layer's first-day MC envelope needs data before 2024-01-01 (its DataError is
        # the asset's, whichever engine runs it); the comparison is between engines, not risk layers
        out = backfill(DAYS, engine=engine, scheduler=scheduler, risk_layer="none", log=lambda *_: None)
        out["wall_s"] = time.perf_counter() - t
    return out


@OPT_IN
def test_backfill_on_a_loopback_dask_cluster_equals_multiprocess(tmp_path):
    import pandas as pd
    from dask.distributed import Client

    mp_home, dk_home = tmp_path / "mp", tmp_path / "dask"
    mp_home.mkdir()
    dk_home.mkdir()
    mp = _backfill(mp_home, "multiprocess")

    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, DOLPHIN_HOME=str(dk_home), DAGSTER_HOME=str(dk_home / "dagster"),
               OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("DOLPHIN_WAREHOUSE", None)
    logs = [tmp_path / "scheduler.log", tmp_path / "pinned.log", tmp_path / "worker.log"]
    procs, files = [], []
    try:
        for args, log in (
            ([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], logs[0]),
            ([DASK, "worker", addr, "--name", "pinned", "--nworkers", "1", "--nthreads", "1", "--host", "127.0.0.1",
              "--no-dashboard", "--resources", "SINGLE_HOST=1"], logs[1]),
            ([DASK, "worker", addr, "--name", "free", "--nworkers", "1", "--nthreads", "1", "--host", "127.0.0.1",
              "--no-dashboard"], logs[2]),
        ):
            p, f = _start(args, log, env)
            procs.append(p)
            files.append(f)
            if len(procs) == 1:
                time.sleep(1.0)
        _wait_workers(addr, 2, procs, logs)
        with Client(addr, timeout=10) as c:
            c.get_task_stream()  # the first call installs the scheduler's task-stream recorder
        t0 = time.time()
        dk = _backfill(dk_home, "dask", scheduler=addr)
        with Client(addr, timeout=10) as c:
            names = {a: w["name"] for a, w in c.scheduler_info()["workers"].items()}
            stream = c.get_task_stream(start=t0)
    finally:
        codes = []
        for p in reversed(procs):  # workers first, then the scheduler
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
            try:
                codes.append(p.wait(timeout=30))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                codes.append("killed")
        for f in files:
            f.close()

    # the same results, whichever engine ran the steps
    led_mp, scans_mp, tab_mp = _results(mp_home)
    led_dk, scans_dk, tab_dk = _results(dk_home)
    assert [d for d, *_ in led_mp] == DAYS
    assert led_dk == led_mp
    assert scans_dk.keys() == scans_mp.keys() and len(scans_mp) == len(DAYS)
    assert scans_dk == scans_mp
    assert tab_dk.keys() == tab_mp.keys()
    for k in tab_mp:
        pd.testing.assert_frame_equal(tab_dk[k], tab_mp[k], obj=k)

    # where each step ran: every step of every run on the cluster; the single-host writers only on "pinned"
    ran = {}
    for t in stream:
        key = t["key"]
        ran.setdefault(key.rsplit(".", 1)[-1], set()).add(names.get(t["worker"], t["worker"]))
    assert {"market_bars", "scan_day", "write_scans", "vol_regime", "daily_pnl_blue", "capital_ledger_blue"} \
        <= ran.keys(), ran
    for step in ("write_scans", "vol_regime", "daily_pnl_blue", "capital_ledger_blue"):
        assert ran[step] == {"pinned"}, (step, ran[step])
    assert all(c == 0 for c in codes), f"dask processes did not exit cleanly on SIGTERM: {codes}\n" + \
        "\n".join(l.read_text()[-800:] for l in logs)
    print(f"backfill of {len(DAYS)} days: multiprocess {mp['wall_s']:.1f} s (scans {mp['scans_s']:.1f}, chain "
          f"{mp['chain_s']:.1f}), dask 2 workers {dk['wall_s']:.1f} s (scans {dk['scans_s']:.1f}, chain "
          f"{dk['chain_s']:.1f}); where the unpinned steps ran: "
          f"{ {k: sorted(v) for k, v in ran.items() if k in ('market_bars', 'scan_day')} }")


def test_executor_from_env_choice(monkeypatch):
    import dagster as dg

    from dolphin_assets.execution import executor_from_env

    default = dg.multiprocess_executor
    monkeypatch.delenv("DOLPHIN_EXECUTOR", raising=False)
    assert executor_from_env(default) is default
    monkeypatch.setenv("DOLPHIN_EXECUTOR", "dask")
    monkeypatch.delenv("DOLPHIN_DASK_SCHEDULER", raising=False)
    with pytest.raises(ValueError, match="DOLPHIN_DASK_SCHEDULER"):
        executor_from_env(default)
    monkeypatch.setenv("DOLPHIN_DASK_SCHEDULER", "tcp://127.0.0.1:8786")
    assert executor_from_env(default).name == "dask_pinned_env"
    monkeypatch.setenv("DOLPHIN_EXECUTOR", "celery")
    with pytest.raises(ValueError, match="multiprocess or dask"):
        executor_from_env(default)


def test_backfill_refuses_days_out_of_order():
    from dolphin_assets.distributed import backfill

    with pytest.raises(ValueError, match="day order"):
        backfill(["2024-01-02", "2024-01-01"], engine="multiprocess")
    with pytest.raises(ValueError, match="scheduler"):
        backfill(["2024-01-01"], engine="dask")
    with pytest.raises(ValueError, match="expected dask or multiprocess"):
        backfill(["2024-01-01"], engine="celery")


def test_only_the_single_host_writes_are_pinned():
    """Which steps of the backfill's two jobs the dask executor pins to the SINGLE_HOST worker (its decision,
    read without a cluster): the scan compute (eigen_scans.scan_day) and the bars run on any worker, so the days'
    scans fan out; the DuckDB / ledger / embedded-store writes are pinned; with Hazelcast the store releases."""
    from dolphin_assets.distributed import DEFAULT_PINNED, PIN, dask_defs, pinned_steps

    defs = dask_defs()
    scans, chain = defs.resolve_job_def("blue_scans_day"), defs.resolve_job_def("blue_chain_day")

    def pinned(job, keys):
        steps = pinned_steps(job, keys)
        assert all(r in ({}, {PIN: 1}) for r in steps.values()), steps
        return {k for k, r in steps.items() if r}, set(steps)

    hazelcast = tuple(k for k in DEFAULT_PINNED if k != "feature_store")
    for keys in (DEFAULT_PINNED, hazelcast):
        on_home, every = pinned(scans, keys)
        # eigen_scans is two steps: the scan compute + Parquet file, then the warehouse / scan_latest write
        assert {"market_bars", "eigen_scans.scan_day", "eigen_scans.write_scans", "vol_regime"} <= every, every
        assert "eigen_scans.scan_day" not in on_home and "market_bars" not in on_home, (keys, on_home)
        # vol_regime writes DuckDB; the scan checks read it (the file lives on the home host only)
        assert on_home == {"eigen_scans.write_scans", "vol_regime", "eigen_scans_checks"}, (keys, on_home)
        on_home, every = pinned(chain, keys)
        assert on_home == every, (keys, every - on_home)  # the capital chain writes the ledger and DuckDB
    assert not pinned(scans, ())[0]  # nothing pinned: everything anywhere (the decision is the keys, not names)
