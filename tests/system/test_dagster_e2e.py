"""End to end: `dagster dev` on workspace.yaml (tmp DAGSTER_HOME / DOLPHIN_HOME, loopback only) -> the GraphQL asset
graph has every asset -> one partition of the BLUE chain launched through GraphQL succeeds -> the lineage page,
rendered by headless Chromium, shows every asset -> SIGTERM to the process group stops everything."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.browser import chromium, non_blank_fraction, rendered_dom, screenshot

REPO = Path(__file__).resolve().parents[2]
ASSETS = ["market_bars", "eigen_scans", "vol_regime", "daily_pnl_blue", "trades_blue", "capital_ledger_blue",
          "scan_latest", "exf", "esof", "acb_state", "mc_envelope", "daily_pnl_green", "trades_green",
          "capital_ledger_green"]
PARTITION = "2024-01-01"  # the chain's first day: starts from initial capital, needs no earlier partition
# all groups expanded (the UI collapses groups by default); a wide window renders full node labels
LINEAGE = "/asset-groups?expanded=" + "%2C".join(f"global%40global%3A{g}" for g in ("blue", "green", "live", "market", "risk"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gql(base, query, variables=None):
    req = urllib.request.Request(f"{base}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        out = json.load(r)
    assert "errors" not in out, out["errors"]
    return out["data"]


def _wait(pred, timeout, what, proc, log):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"dagster dev exited ({proc.returncode}) while waiting for {what}:\n{log.read_text()[-3000:]}")
        try:
            v = pred()
            if v:
                return v
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"timed out after {timeout} s waiting for {what}:\n{log.read_text()[-3000:]}")


LAUNCH = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } ... on InvalidSubsetError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }"""


def test_dagster_dev_end_to_end(tmp_path):
    chromium()  # skips early (or fails on CI) without a browser
    from dolphin_assets.dev import dagster_home

    home = tmp_path / "home"
    env = {**os.environ, "DOLPHIN_HOME": str(home), "DAGSTER_HOME": str(dagster_home(home / "dagster")),
           "OPENBLAS_NUM_THREADS": "1"}
    env.pop("DOLPHIN_WAREHOUSE", None)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    exe = str(Path(sys.executable).parent / "dagster")
    log = tmp_path / "dagster-dev.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(["env", "--default-signal=INT,TERM", exe, "dev", "-h", "127.0.0.1", "-p", str(port),
                                 "-w", "workspace.yaml"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        _wait(lambda: urllib.request.urlopen(f"{base}/server_info", timeout=5).status == 200, 180, "/server_info",
              proc, log)
        loc = _wait(lambda: _gql(base, "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }")
                    ["workspaceOrError"]["locationEntries"], 120, "the code location", proc, log)
        assert loc == [{"name": "dolphin", "loadStatus": "LOADED"}]
        keys = {"/".join(n["assetKey"]["path"]) for n in _gql(base, "{ assetNodes { assetKey { path } } }")["assetNodes"]}
        assert keys == set(ASSETS)

        params = {"selector": {"repositoryLocationName": "dolphin", "repositoryName": "__repository__",
                               "jobName": "blue_paper_day"}, "runConfigData": {},
                  "executionMetadata": {"tags": [{"key": "dagster/partition", "value": PARTITION}]}}
        launched = _gql(base, LAUNCH, {"p": params})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        status_q = '{ runOrError(runId: "%s") { ... on Run { status } } }' % run_id
        status = _wait(lambda: (s := _gql(base, status_q)["runOrError"]["status"]) in ("SUCCESS", "FAILURE", "CANCELED")
                       and s, 420, f"run {run_id}", proc, log)
        assert status == "SUCCESS", f"run {run_id} ended {status}"
        mats = _gql(base, '{ assetOrError(assetKey: {path: ["capital_ledger_blue"]}) { ... on Asset { '
                          'assetMaterializations(partitions: ["%s"]) { partition } } } }' % PARTITION)
        assert mats["assetOrError"]["assetMaterializations"] == [{"partition": PARTITION}]

        assert _gql(base, "mutation { setNuxSeen }")["setNuxSeen"] is True
        dom = rendered_dom(base + LINEAGE, wait_ms=20000, width=8000, height=6000)
        assert "Global asset lineage" in dom
        missing = [a for a in ASSETS if f">{a}<" not in dom]
        assert not missing, f"lineage page lacks {missing}"
        png = screenshot(base + LINEAGE, tmp_path / "lineage.png", width=3600, height=2400, wait_ms=20000)
        assert non_blank_fraction(png) > 0.05
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            pytest.fail(f"dagster dev did not stop on SIGTERM:\n{log.read_text()[-3000:]}")
    assert proc.returncode is not None
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{base}/server_info", timeout=5)
