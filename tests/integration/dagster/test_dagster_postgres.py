"""docker/dagster.yaml (the compose deployment's instance: run / event / schedule storage on PostgreSQL through
dagster-postgres) against a REAL PostgreSQL server started on loopback: a run executed through one instance is
read back, with its events, by another process -- what several machines sharing the storage rely on. Skipped
when no PostgreSQL server binaries are installed (Debian: apt-get install postgresql)."""

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PG_BIN = [Path("/usr/local/bin"), *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]


def _pg(tool: str):
    for d in PG_BIN:
        if (d / tool).exists():
            return str(d / tool)
    return shutil.which(tool)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres(tmp_path):
    initdb, pg_ctl = _pg("initdb"), _pg("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries not installed")
    as_user = []
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' user to run the server as")
        as_user = ["runuser", "-u", "postgres", "--"]
    # outside pytest's private (0700) temp root: the server user must reach it
    base = Path(tempfile.mkdtemp(prefix="dolphin-pg-"))
    pw = base / "pw"
    pw.write_text("test-only-password\n")
    if as_user:
        shutil.chown(base, "postgres")
        shutil.chown(pw, "postgres")
    data = base / "data"
    r = subprocess.run([*as_user, initdb, "-D", str(data), "-U", "dolphin", "-A", "md5", f"--pwfile={pw}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    port = _free_port()
    log = base / "server.log"
    r = subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
                        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={base}", "start"],
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr + (log.read_text() if log.exists() else "")
    try:
        import psycopg2

        con = psycopg2.connect(host="127.0.0.1", port=port, user="dolphin", password="test-only-password",
                               dbname="postgres")
        con.autocommit = True
        con.cursor().execute("CREATE DATABASE dagster")
        con.close()
        yield {"port": port, "password": "test-only-password"}
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True,
                       timeout=60)
        shutil.rmtree(base, ignore_errors=True)


JOB = """
import dagster as dg

@dg.op
def answer():
    return 42

@dg.job
def tiny():
    answer()
"""


def test_compose_instance_config_stores_runs_in_postgres(tmp_path, postgres):
    home = tmp_path / "dagster"
    home.mkdir()
    text = (REPO / "docker" / "dagster.yaml").read_text().replace("port: 5432", f"port: {postgres['port']}")
    (home / "dagster.yaml").write_text(text)
    (tmp_path / "tinyjob.py").write_text(JOB)
    env = dict(os.environ, DAGSTER_HOME=str(home), DAGSTER_POSTGRES_HOST="127.0.0.1", DAGSTER_POSTGRES_USER="dolphin",
               DAGSTER_POSTGRES_DB="dagster", POSTGRES_PASSWORD=postgres["password"], PYTHONPATH=str(tmp_path))
    write = ("import dagster as dg, tinyjob\n"
             "with dg.DagsterInstance.get() as inst:\n"
             "    assert type(inst.run_storage).__name__ == 'PostgresRunStorage', type(inst.run_storage)\n"
             "    r = dg.execute_job(dg.reconstructable(tinyjob.tiny), instance=inst)\n"
             "    assert r.success\n"
             "    print(r.run_id)\n")
    p = subprocess.run([sys.executable, "-c", write], capture_output=True, text=True, env=env, timeout=180,
                       cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    run_id = p.stdout.strip().splitlines()[-1]
    # another process (another machine's webserver / worker) sees the run and its events
    read = ("import dagster as dg, sys\n"
            "with dg.DagsterInstance.get() as inst:\n"
            f"    run = inst.get_run_by_id('{run_id}')\n"
            "    print(run.job_name, run.status.value)\n"
            f"    evs = inst.all_logs('{run_id}')\n"
            "    print(sum(1 for e in evs if e.is_dagster_event and e.dagster_event.event_type_value == 'STEP_SUCCESS'))\n")
    q = subprocess.run([sys.executable, "-c", read], capture_output=True, text=True, env=env, timeout=120)
    assert q.returncode == 0, q.stderr[-3000:]
    job, status, steps = q.stdout.split()
    assert (job, status, steps) == ("tiny", "SUCCESS", "1")
    # nothing of the run went to SQLite files under DAGSTER_HOME
    assert not list(home.rglob("*.db")), list(home.rglob("*.db"))


def test_compose_instance_config_without_password_fails_by_name(tmp_path):
    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copy(REPO / "docker" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_PASSWORD",)}
    env.update(DAGSTER_HOME=str(home), DAGSTER_POSTGRES_HOST="127.0.0.1", DAGSTER_POSTGRES_USER="dolphin",
               DAGSTER_POSTGRES_DB="dagster")
    p = subprocess.run([sys.executable, "-c", "import dagster as dg; dg.DagsterInstance.get()"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert p.returncode != 0
    assert "POSTGRES_PASSWORD" in p.stderr
