"""`dolphin console` without a browser: the snapshot against the store and the ledger it reads (SYNTHETIC records
written through the real ports: the journal, the capital ledger, the embedded store), an unreachable and a hanging
store, and the process itself on loopback (read-only refusals, operator-token override actions audited, SIGTERM).
The live paper day in Chromium is tests/system/test_console_browser.py."""

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from dolphin.console.collect import Sources, snapshot
from dolphin.console.server import Collector, build
from dolphin.store import (EXF_LATEST, FEATURES, MC_FOREWARNER_LATEST, SAFETY, SCAN_LATEST, SYSTEM_HEALTH, Record,
                           asset_ob_key, iso_utc, state_map)
from dolphin.store.faults import StallingStore

REPO = Path(__file__).resolve().parents[4]
NOW_MS = 1_780_000_000_000  # 2026-05-28T20:26:40Z
NS = 1_000_000


def _fill(j, sid, eid, t_ms, side, role, qty, price, fee, cap):
    from dolphin.ledger.journal import JournalEvent

    j.append("BLUE", JournalEvent(event_id=eid, session=sid, kind="fill", ts_ns=t_ms * NS, symbol="ETHUSDT", side=side,
                                  role=role, qty=qty, price=price, fee=fee, capital_after=cap, liquidity="TAKER"))


@pytest.fixture
def world(home):
    """A synthetic running system: a session with one closed and one open short, a chain of two paper days,
    safety / scan / health / freshness records and the runtime's decision record."""
    from dolphin.ledger import CapitalLedger, DayRecord
    from dolphin.ledger.journal import FillJournal
    from dolphin.adapters.store_factory import open_store_from_env

    led = home / "ledger" / "ledger.sqlite"
    book = CapitalLedger(led)
    for day, eq0, eq1 in (("2026-05-26", 25_000.0, 25_100.0), ("2026-05-27", 25_100.0, 24_900.0)):
        st0 = {"capital": eq0}
        st1 = {"capital": eq1}
        prev = book.current("BLUE")
        book.record_day("BLUE", day, DayRecord(eq0, eq1, eq1, prev[-1].record.closing_state if prev else st0, st1,
                                               [{"pnl": eq1 - eq0}], 288), start_day="2026-05-26")
    j = FillJournal(led)
    sid = "sandbox:127.0.0.1:2026-05-28"
    j.open_session("BLUE", sid, mode="sandbox", opening_capital=25_000.0)
    t = NOW_MS - 3_600_000
    _fill(j, sid, "e1", t, "SELL", "entry", 2.0, 2000.0, 1.0, 24_999.0)
    _fill(j, sid, "x1", t + 600_000, "BUY", "tp", 2.0, 1981.0, 0.5, 25_036.5)
    j.record_entry("BLUE", sid, "o2", "ETHUSDT", (t + 1_200_000) * NS, {"side": -1, "leverage": 3.0})
    _fill(j, sid, "e2", t + 1_500_000, "SELL", "entry", 1.5, 1990.0, 0.75, 25_035.75)
    store = open_store_from_env()
    ts = iso_utc(NOW_MS - 2_000)
    store.put(SAFETY, "latest", Record({"posture": "STALKER", "Rm": 0.52, "breakdown": {
        "Cat1": 1.0, "Cat2": 0.5, "Cat3": 1.0, "Cat4": 1.0, "Cat5": 0.9}, "reasons": {"Cat2": "MC ORANGE"},
        "changed": False, "previous": "STALKER"}, ts))
    store.put(FEATURES, SCAN_LATEST, Record({"vel_div": -0.01, "vel_div_norm": -0.0002, "asset_count": 50,
                                             "lambda_w50": 10.0, "lambda_norm_w50": 0.2, "source": "nowhere"},
                                            iso_utc(NOW_MS - 60_000)))
    store.put(FEATURES, MC_FOREWARNER_LATEST, Record({"status": "ORANGE"}, iso_utc(NOW_MS - 7 * 3_600_000)))
    store.put(FEATURES, EXF_LATEST, Record({"dvol_btc": 50.0}, iso_utc(NOW_MS - 3_600_000)))
    store.put(FEATURES, asset_ob_key("ETHUSDT"), Record({"depth_quality": 1.0}, iso_utc(NOW_MS - 5_000)))
    store.put(FEATURES, asset_ob_key("BTCUSDT"), Record({"depth_quality": 1.0}, iso_utc(NOW_MS - 45_000)))
    store.put(SYSTEM_HEALTH, "runtime_heartbeat", Record({"source": "runtime"}, iso_utc(NOW_MS - 1_000)))
    store.put(SYSTEM_HEALTH, "latest", Record({"status": "DEGRADED", "failing": ["mc_age_h"], "checks": []}, ts))
    store.put(state_map("BLUE"), "decisions", Record({
        "decisions": [{"close_ms": NOW_MS - 300_000, "action": "no_entry", "reason": "vol gate", "vel_div": -0.01,
                       "posture": "STALKER"}],
        "position": {"symbol": "ETHUSDT", "side": "SHORT", "qty": 1.5, "entry_price": 1990.0, "leverage": 3.0,
                     "tp_price": 1971.095, "liquidation_price": 2643.0, "last_close": 1980.0,
                     "max_hold_exit_ms": NOW_MS + 3_600_000},
        "hysteresis": {"pending_direction": "up", "pending_count": 3, "pending_target": "APEX", "checks_down": 2,
                       "checks_up": 5},
        "posture_changes": [{"posture": "STALKER", "previous": "APEX", "Rm": 0.5, "breakdown": {}}]}, ts))
    yield home, store, led
    store.close()


def test_snapshot_shows_the_ledger_and_the_store(world):
    home, store, led = world
    s = snapshot(Sources(store, led, home / "scans"), NOW_MS)
    assert s["store"]["reachable"] and s["safety"]["posture"] == "STALKER" and s["safety"]["Rm"] == 0.52
    assert s["safety"]["age_s"] == pytest.approx(2.0)
    assert s["hysteresis"]["pending_count"] == 3 and s["posture_changes"][0]["previous"] == "APEX"
    g = s["strategies"][0]
    se = g["session"]
    assert se["capital"] == 25_035.75 and se["peak"] == 25_036.5 and se["n_fills"] == 3
    assert se["drawdown"] == pytest.approx(1 - 25_035.75 / 25_036.5)
    assert [f["role"] for f in se["fills_today"]] == ["entry", "tp", "entry"] and se["fills_day"] == "2026-05-28"
    # the closed trade: entry 2 @ 2000 -> TP @ 1981, PnL net of both fees = capital after - capital before
    assert se["trades"] == [{"symbol": "ETHUSDT", "side": "SHORT", "qty": 2.0, "entry_price": 2000.0,
                             "exit_price": 1981.0, "entry": "2026-05-28T19:26:40Z", "exit": "2026-05-28T19:36:40Z",
                             "role": "tp", "pnl": 36.5}]
    [p] = g["positions"]  # the journal's open short, marked by the runtime's decision record
    assert (p["side"], p["qty"], p["entry_price"], p["leverage"]) == ("SHORT", 1.5, 1990.0, 3.0)
    assert p["unrealised"] == pytest.approx((1990.0 - 1980.0) * 1.5)
    assert p["to_tp_pct"] == pytest.approx((1971.095 / 1980.0 - 1) * 100)
    assert p["held_s"] == pytest.approx(3_600 - 1_500)
    assert g["chain_last"]["day"] == "2026-05-27" and g["chain_last"]["equity"] == 24_900.0
    assert g["chain_last"]["drawdown"] == pytest.approx(1 - 24_900 / 25_100)
    assert g["decisions"][0]["reason"] == "vol gate"
    fr = {f["name"]: f for f in s["freshness"]}
    assert fr["scan"]["ok"] and fr["scan"]["age_s"] == 60.0
    assert not fr["MC"]["ok"] and fr["MC"]["limit_s"] == 6 * 3600  # 7 h old
    assert not fr["book"]["ok"] and fr["book"]["age_s"] == 45.0  # the oldest book counts
    assert fr["heartbeat"]["ok"] and fr["ExF"]["ok"]
    assert s["health"]["status"] == "DEGRADED" and s["scan"]["lambda"] == {"50": 10.0}
    out = build(Sources(store, led, home / "scans"))  # the page's snapshot: charts drawn, JSON-clean
    assert out["strategies"][0]["session_svg"].startswith("<svg") and "polyline" in out["strategies"][0]["chain_svg"]
    json.dumps(out, allow_nan=False)


def test_unreachable_store_is_reported_and_the_ledger_still_read(world):
    home, store, led = world
    down = StallingStore(store)
    down.down = True
    s = snapshot(Sources(down, led), NOW_MS)
    assert s["store"]["reachable"] is False and "down" in s["store"]["error"]
    assert s["safety"] is None and s["freshness"] == []
    assert s["strategies"][0]["session"]["capital"] == 25_035.75  # the ledger part is still there


def test_a_hanging_store_is_reported_as_stalled(world):
    home, store, led = world
    slow = StallingStore(store)
    c = Collector(Sources(slow, led), interval=0.05).start()
    try:
        deadline = time.monotonic() + 10
        while c.snap is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert c.snap is not None and c.stalled_s() < 1.0
        slow.stall(2.0)
        time.sleep(1.5)
        assert c.stalled_s() >= 1.0  # the round in progress is visibly stuck (the page says so after 3 s)
    finally:
        slow.until = 0.0
        c.stop()


# ------------------------------------------------------------------ the process on loopback


def _start(home, token=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOLPHIN_HZ")}
    env.update(DOLPHIN_HOME=str(home), DOLPHIN_FEATURE_STORE="embedded", PYTHONPATH=str(REPO))
    env.pop("DOLPHIN_CONSOLE_TOKEN", None)
    if token is not None:
        env["DOLPHIN_CONSOLE_TOKEN"] = token
    p = subprocess.Popen([sys.executable, "-m", "dolphin.cli", "console", "--port", "0"], cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    m = re.search(r"127\.0\.0\.1:(\d+)", line)
    if not m:
        p.kill()
        raise AssertionError(f"console did not start: {line!r} {p.stderr.read()}")
    return p, f"http://127.0.0.1:{m.group(1)}", line


def _post(url, body, token=None):
    h = {"Content-Type": "application/json"}
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=h, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def _stop(p):
    p.terminate()
    try:
        return p.wait(15), p.stderr.read()
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise


def test_read_only_console_refuses_actions_and_audits_them(world):
    home, store, led = world
    p, base, line = _start(home)
    try:
        assert "read-only" in line
        with urllib.request.urlopen(base + "/", timeout=10) as r:
            page = r.read().decode()
        assert "EventSource" in page and "http" not in page.replace("http-equiv", "").split("<script>")[0].replace(
            'href="#"', "")  # no external resource: works offline
        code, out = _post(base + "/api/override", {"posture": "HIBERNATE", "reason": "x", "ttl_s": 60, "who": "ann"})
        assert code == 403 and "read-only" in out["error"]
    finally:
        rc, err = _stop(p)
    assert rc == 0, err
    audit = [json.loads(x) for x in (home / "console" / "audit.jsonl").read_text().splitlines()]
    assert audit[-1]["result"] == "refused" and audit[-1]["who"] == "ann"


def test_operator_token_enables_the_override_every_action_audited(world):
    ov = pytest.importorskip("dolphin.adapters.safety_override_sqlite")
    home, store, led = world
    token = "t0ken-for-the-console-test-9f2c"
    p, base, line = _start(home, token)
    try:
        assert "ENABLED" in line and token not in line
        body = {"posture": "TURTLE", "reason": "exchange incident", "ttl_s": 600, "who": "ann"}
        assert _post(base + "/api/override", body)[0] == 401
        assert _post(base + "/api/override", body, "wrong-token-wrong-token")[0] == 401
        code, out = _post(base + "/api/override", {**body, "ttl_s": -1}, token)
        assert code == 400  # the override module's own validation, refused and audited
        code, out = _post(base + "/api/override", body, token)
        assert code == 200 and out["ok"], out
        now = time.time_ns()
        act = ov.active_override(led, now)
        assert act is not None and act.posture_name == "TURTLE" and act.reason == "exchange incident"
        assert "ann" in act.who
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the page's snapshot shows it
            with urllib.request.urlopen(base + "/api/snapshot", timeout=10) as r:
                snap = json.load(r)
            if (snap.get("override") or {}).get("active"):
                break
            time.sleep(0.1)
        assert snap["override"]["active"]["posture_name"] == "TURTLE" and snap["actions_enabled"] is True
        code, out = _post(base + "/api/override/clear", {"reason": "resolved", "who": "ann"}, token)
        assert code == 200 and ov.active_override(led, time.time_ns()) is None
    finally:
        rc, err = _stop(p)
    assert rc == 0, err
    assert token not in err  # never logged
    audit = [json.loads(x) for x in (home / "console" / "audit.jsonl").read_text().splitlines()]
    assert [a["result"] for a in audit] == ["refused", "refused", "refused", "ok", "ok"]
    assert [a["action"] for a in audit][-2:] == ["override_set", "override_clear"]
    assert token not in (home / "console" / "audit.jsonl").read_text()


def test_a_short_operator_token_is_refused(home, monkeypatch, capsys):
    from dolphin.cli import main

    monkeypatch.setenv("DOLPHIN_CONSOLE_TOKEN", "short")
    assert main(["console", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "at least 16" in err and "short" not in err.replace("at least", "")


@pytest.mark.skipif(not os.environ.get("DOLPHIN_HZ_MEMBERS"),
                    reason="no Hazelcast cluster: set DOLPHIN_HZ_MEMBERS=host:port (and DOLPHIN_HZ_CLUSTER) to run")
def test_snapshot_over_hazelcast(tmp_path):
    """The same snapshot through the Hazelcast adapter (the console reads only the port)."""
    import uuid

    from dolphin.adapters.hazelcast_store import HazelcastStore

    strat = "T" + uuid.uuid4().hex[:10].upper()
    store = HazelcastStore(connect_timeout=10)
    try:
        now = int(time.time() * 1000)
        store.put(SAFETY, "latest", Record({"posture": "TURTLE", "Rm": 0.25, "breakdown": {"Cat1": 1.0},
                                            "reasons": {}}, iso_utc(now - 1_000)))
        store.put(state_map(strat), "decisions", Record({"decisions": [
            {"close_ms": now, "action": "no_entry", "reason": "posture TURTLE (Rm 0.250): no new entries"}],
            "hysteresis": {"pending_direction": None, "pending_count": 0, "pending_target": None, "checks_down": 2,
                           "checks_up": 5}}, iso_utc(now)))
        s = snapshot(Sources(store, tmp_path / "no-ledger.sqlite", strategies=(strat,)), now)
    finally:
        store.close()
    assert s["store"]["reachable"] and s["safety"]["posture"] == "TURTLE"
    assert s["strategies"][0]["decisions"][0]["reason"].startswith("posture TURTLE")
    assert s["hysteresis"]["checks_up"] == 5 and s["ledger"]["exists"] is False


def test_posture_changes_seen_by_the_console_are_merged(world):
    """An override changes the published posture without a controller change: the console lists it too."""
    home, store, led = world
    c = Collector(Sources(store, led), interval=0.05)
    snap = {"safety": {"posture": "STALKER", "timestamp": "2026-05-28T20:26:38.000Z"},
            "posture_changes": [{"posture": "STALKER", "previous": "APEX", "timestamp": "2026-05-28T20:00:00.000Z"}]}
    c._track(snap)
    later = {"safety": {"posture": "HIBERNATE", "Rm": 0.05, "timestamp": "2026-05-28T20:30:00.000Z"},
             "posture_changes": [{"posture": "STALKER", "previous": "APEX", "timestamp": "2026-05-28T20:00:00.000Z"}]}
    c._track(later)
    assert [(x["previous"], x["posture"]) for x in later["posture_changes"]] == [("STALKER", "HIBERNATE"),
                                                                                 ("APEX", "STALKER")]
    assert later["posture_changes"][0]["source"] == "seen by the console"
