"""`dolphin status`: a real embedded store and a real capital ledger under a temporary DOLPHIN_HOME.

Sources are populated through their own APIs (EmbeddedStore.put / publish_if_newer, CapitalLedger.record_day);
the report is checked line by line (text) and as one JSON object, with exit codes from a real process.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dolphin.engine.state import EngineState
from dolphin.ledger import CapitalLedger, DayRecord
from dolphin.status import collect, fmt_age, render
from dolphin.store import (FEATURES, SAFETY, SCAN_LATEST, STATE_LATEST, SYSTEM_HEALTH, VOL_REGIME, MC_FOREWARNER_LATEST,
                           Record, iso_utc, publish_if_newer, state_map)
from dolphin.adapters.store_factory import open_store_from_env
from dolphin.adapters.sqlite_store import EmbeddedStore

REPO = Path(__file__).resolve().parents[3]
NOW = 1_790_000_000_000  # fixed "now" (ms) for exact ages
POSITION = {"symbol": "ETHUSDT", "side": -1, "qty": 1.5, "entry_price": 3012.5, "notional": 4518.75,
            "leverage": 3.2, "entry_time_ms": NOW - 3 * 3600_000, "fees": 1.8, "funding": 0.0, "entry_posture": 0,
            "entry_boost": 1.0, "capital_before": 10_250.0, "signal": -0.031, "maker_entry": True}
PENDING = {"kind": "exit", "symbol": "ETHUSDT", "side": -1, "limit": False, "notional": 4518.75, "leverage": 3.2,
           "price": 2990.0, "signal": 0.0, "posture": 0, "reason": 1}


def _env(home, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOLPHIN_")}
    env.update(DOLPHIN_HOME=str(home), PYTHONPATH=str(REPO), **extra)
    return env


def _status(home, *args, **env):
    return subprocess.run([sys.executable, "-m", "dolphin.status", *args], env=_env(home, **env), cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def _scan_value(vel_div, now=NOW):
    v = {"scan_time_ms": now - 90_000, "date": "2026-09-21", "vel_div": vel_div, "vel_div_norm": vel_div / 50,
         "asset_count": 50, "source": "test"}
    for w in (50, 150, 300, 750):
        v[f"lambda_w{w}"], v[f"lambda_norm_w{w}"] = 20.0 + w / 100, (20.0 + w / 100) / 50
    return v


def populate(home, *, state_day="2026-09-20", safety=True, now=NOW):
    """Store: scan_latest 90 s old, vol_regime 10 min old, DOLPHIN_STATE_BLUE (hot copy of ``state_day``),
    optional DOLPHIN_SAFETY. Ledger: two BLUE days, the second closing with an open SHORT and a pending exit."""
    store = EmbeddedStore(home / "store" / "features.sqlite")
    assert publish_if_newer(store, FEATURES, SCAN_LATEST, Record(_scan_value(-0.021734, now), iso_utc(now - 90_000)))
    store.put(FEATURES, VOL_REGIME, Record({"current_vol": 0.0123, "vol_p60": 0.0101, "regime_ok": True,
                                            "percentile": 60, "date": "2026-09-21"}, iso_utc(now - 600_000)))
    if safety:
        store.put(SAFETY, "latest", Record({"posture": "STALKER", "Rm": 0.62,
                                            "breakdown": {"Cat1": 1.0, "Cat2": 0.62, "Cat3": 1.0, "Cat4": 1.0,
                                                          "Cat5": 1.0}}, iso_utc(now - 5_000)))
    book = CapitalLedger(home / "ledger" / "ledger.sqlite")
    s0 = EngineState.fresh(10_000.0).to_dict()
    s1 = EngineState(capital=10_250.0, as_of_ms=now - 86_400_000).to_dict()
    book.record_day("BLUE", "2026-09-20", DayRecord(10_000.0, 10_250.0, 10_250.0, s0, s1, [{"pnl": 250.0}], 288),
                    start_day="2026-09-20")
    s2 = EngineState(capital=10_180.5, as_of_ms=now, position=POSITION, pending=PENDING).to_dict()
    book.record_day("BLUE", "2026-09-21", DayRecord(10_250.0, 10_142.25, 10_180.5, s1, s2, [], 288),
                    start_day="2026-09-20")
    last = book.current("BLUE")[-1 if state_day == "2026-09-21" else 0]
    store.put(state_map("BLUE"), STATE_LATEST, Record(
        {"strategy": "BLUE", "day": last.day, "capital": last.record.closing_capital,
         "equity": last.record.closing_equity, "peak": last.peak, "drawdown": last.drawdown,
         "ledger_seq": last.seq}, iso_utc(now - 60_000)))
    store.close()
    return book


def _line(text, prefix):
    got = [ln for ln in text.splitlines() if ln.startswith(prefix)]
    assert len(got) == 1, (prefix, text)
    return got[0]


def test_fmt_age():
    assert [fmt_age(s) for s in (0, 59, 90, 3600 + 61, 2 * 86400 + 7200)] == ["0s", "59s", "1m 30s", "1h 01m", "2d 02h"]


def test_populated_home_reports_ledger_capital_position_and_ages(home):
    populate(home)
    rep = collect("BLUE", now_ms=NOW)
    text = render(rep)
    assert rep["ok"]
    assert "reachable: embedded" in _line(text, "feature store")
    scan = _line(text, "latest scan")
    assert "1m 30s old" in scan and "vel_div -0.021734" in scan and "assets 50" in scan
    assert "10m 00s old" in _line(text, "vol regime") and "OK (entries allowed)" in _line(text, "vol regime")
    post = _line(text, "posture")
    assert "STALKER" in post and "Rm 0.620" in post and "Cat2=0.620" in post and "5s old" in post
    # day 2 of the ledger is the truth: capital 10,180.50, peak 10,250 (day 1's equity), dd 1 - 10142.25/10250
    cap = _line(text, "capital")
    assert "10,180.50" in cap and "equity 10,142.25" in cap and "peak 10,250.00" in cap
    assert "drawdown 1.05%" in cap and "source of truth: day 2026-09-21 v1, 2 day(s)" in cap
    c5 = _line(text, "  Cat5 drawdown")  # from the highest close of the last 30 days (DESIGN.md)
    assert "1.05% from the 30-day peak 10,250.00" in c5 and rep["ledger"]["latest"]["cat5_peak"] == 10_250.0
    # the store's hot copy still holds day 1: flagged, not trusted
    copy = _line(text, "  store copy")
    assert "10,250.00" in copy and "DIFFERS from the ledger" in copy and "2026-09-20" in copy
    pos = _line(text, "position")
    assert "SHORT ETHUSDT qty 1.5 @ 3012.5" in pos and "notional 4,518.75" in pos and "leverage 3.20x" in pos
    assert "exit ETHUSDT (close the open position) market" in _line(text, "pending order")
    assert _line(text, "MC forewarner").endswith("not published")
    assert _line(text, "ExF").endswith("not published")
    assert _line(text, "system health").endswith("not published")


def test_hot_copy_matching_ledger_and_published_mc_exf_health(home):
    populate(home, state_day="2026-09-21", safety=False)
    store = EmbeddedStore(home / "store" / "features.sqlite")
    store.put(FEATURES, MC_FOREWARNER_LATEST, Record({"status": "GREEN", "catastrophic_prob": 0.031,
                                                      "envelope_score": 0.8}, iso_utc(NOW - 7 * 3600_000)))
    store.put(FEATURES, "exf_latest", Record({"fng": 41}, iso_utc(NOW - 120_000)))
    store.put(SYSTEM_HEALTH, "latest", Record({"ok": True, "components": {"scanner": "up"}}, iso_utc(NOW - 30_000)))
    rep = collect("BLUE", now_ms=NOW)
    text = render(rep)
    assert "matches the ledger" in _line(text, "  store copy")
    assert _line(text, "posture").endswith("not published (risk layer not running)")
    mc = _line(text, "MC forewarner")
    assert "GREEN" in mc and "7h 00m old" in mc and "STALE (>6h: counts as ORANGE)" in mc
    assert "2m 00s old" in _line(text, "ExF")
    h = _line(text, "system health")
    assert '"scanner": "up"' in h and "30s old" in h


def test_cli_text_and_json_exit_0(home):
    now = int(time.time() * 1000)  # the CLI judges freshness on the real clock
    populate(home, now=now)
    r = _status(home)
    assert r.returncode == 0, r.stderr
    assert "10,180.50" in _line(r.stdout, "capital") and "SHORT ETHUSDT" in _line(r.stdout, "position")
    assert "exit ETHUSDT" in _line(r.stdout, "pending order")
    t0 = time.time() * 1000
    j = _status(home, "--json")
    t1 = time.time() * 1000
    assert j.returncode == 0, j.stderr
    d = json.loads(j.stdout)  # one JSON object, nothing else on stdout
    assert d["ok"] and d["store"]["reachable"] and d["ledger"]["readable"]
    assert d["ledger"]["latest"]["capital"] == 10_180.5 and d["ledger"]["latest"]["position"]["symbol"] == "ETHUSDT"
    assert d["store"]["scan_latest"]["vel_div"] == -0.021734
    # real clock: published 90 s before `now`, judged by the CLI between t0 and t1 (its start-up may take seconds)
    assert 90 + (t0 - now) / 1000 - 1 <= d["store"]["scan_latest"]["age_s"] <= 90 + (t1 - now) / 1000 + 1
    assert d["stale"] == []
    assert d["store"]["safety"]["posture"] == "STALKER" and d["store"]["mc"] is None


def test_other_strategy_has_no_ledger_day(home):
    populate(home)
    text = render(collect("GREEN", now_ms=NOW))
    assert "ledger has no day for GREEN yet" in _line(text, "capital")
    assert _line(text, "position").endswith("unknown (no ledger day)")


def test_empty_home_says_not_published_and_no_ledger_and_creates_nothing(home):
    r = _status(home)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "no store file yet" in _line(out, "feature store")
    for prefix in ("latest scan", "vol regime", "MC forewarner", "ExF", "system health"):
        assert _line(out, prefix).endswith("not published"), prefix
    assert _line(out, "posture").endswith("not published (risk layer not running)")
    assert "no ledger at" in _line(out, "capital")
    assert not (home / "store" / "features.sqlite").exists() and not (home / "ledger").exists()
    d = json.loads(_status(home, "--json").stdout)
    assert d["ok"] and d["ledger"]["exists"] is False and d["store"]["exists"] is False


def test_unreadable_ledger_exit_1(home):
    (home / "ledger").mkdir()
    (home / "ledger" / "ledger.sqlite").write_bytes(b"this is not a sqlite database" * 100)
    r = _status(home)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "ledger UNREADABLE" in _line(r.stdout, "capital")
    assert "Traceback" not in r.stderr


def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return port


def test_store_unreachable_reports_and_exits_1(home):
    populate(home)  # the ledger is fine: its lines still come out
    t0 = time.monotonic()
    r = _status(home, DOLPHIN_FEATURE_STORE="hazelcast", DOLPHIN_HZ_MEMBERS=f"127.0.0.1:{_closed_port()}",
                DOLPHIN_HZ_CONNECT_TIMEOUT="2")
    assert r.returncode == 1, r.stdout + r.stderr
    assert time.monotonic() - t0 < 30
    assert "Traceback" not in r.stderr
    assert "UNREACHABLE: hazelcast" in _line(r.stdout, "feature store")
    assert _line(r.stdout, "latest scan").endswith("unknown (store unreachable)")
    assert "10,180.50" in _line(r.stdout, "capital")
    j = _status(home, "--json", DOLPHIN_FEATURE_STORE="hazelcast",
                DOLPHIN_HZ_MEMBERS=f"127.0.0.1:{_closed_port()}", DOLPHIN_HZ_CONNECT_TIMEOUT="2")
    d = json.loads(j.stdout)
    assert j.returncode == 1 and d["ok"] is False and d["store"]["reachable"] is False
    assert "unreachable" in d["store"]["error"]


def test_embedded_store_file_gone_unreadable(home):
    populate(home)
    (home / "store" / "features.sqlite").unlink()
    (home / "store" / "features.sqlite").mkdir()  # path exists but is not a database
    r = _status(home)
    assert r.returncode == 1 and "UNREACHABLE: embedded" in _line(r.stdout, "feature store"), r.stdout + r.stderr


def test_open_store_from_env(home, monkeypatch):
    s = open_store_from_env()
    assert isinstance(s, EmbeddedStore) and s.path == home / "store" / "features.sqlite"
    monkeypatch.setenv("DOLPHIN_FEATURE_STORE", "redis")
    with pytest.raises(ValueError, match="embedded or hazelcast"):
        open_store_from_env()
    r = _status(home, DOLPHIN_FEATURE_STORE="redis")
    assert r.returncode == 1 and "redis" in _line(r.stdout, "feature store")


def test_bad_strategy_name_is_a_usage_error(home):
    r = _status(home, "--strategy", "blue-2")
    assert r.returncode == 2 and "strategy name" in r.stderr and "Traceback" not in r.stderr
