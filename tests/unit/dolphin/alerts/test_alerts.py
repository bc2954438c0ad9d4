"""Alerts (dolphin.alerts) against loopback servers: the webhook's JSON POST, Telegram's bot API at a configurable
base URL, a channel that hangs / answers 500 / refuses the connection never blocks the caller nor the other
channel, rate limit and de-duplication, secrets never logged; the watcher's rules (``diff``) on SYNTHETIC
snapshots; corrupt scan files; `dolphin alerts` as a process with SIGTERM."""

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dolphin.alerts import Alert, Dispatcher, TelegramChannel, WebhookChannel, dispatcher_from_env
from dolphin.alerts.watch import CorruptScans, diff
from tests.support.webhook import Loopback

REPO = Path(__file__).resolve().parents[4]
TOKEN = "123456:SECRET-bot-token-abcdefghijklmnop"


@pytest.fixture
def servers():
    made = []

    def make(mode="ok"):
        s = Loopback(mode)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def refused_url() -> str:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_webhook_posts_the_alert_as_json(servers):
    srv = servers()
    d = Dispatcher([WebhookChannel(srv.url + "/hook/abc")])
    assert d.notify(Alert("posture", "posture APEX -> TURTLE", "Rm 0.2", "warning", fields={"rm": 0.2}))
    assert d.flush(5)
    [b] = srv.bodies
    assert srv.paths == ["/hook/abc"]
    assert b["source"] == "dolphin" and b["kind"] == "posture" and b["severity"] == "warning"
    assert b["title"] == "posture APEX -> TURTLE" and b["fields"] == {"rm": 0.2} and b["at"].endswith("Z")
    assert d.stats()["webhook"]["sent"] == 1
    d.close()


def test_telegram_bot_api_at_a_configurable_base_url(servers):
    srv = servers()
    d = dispatcher_from_env({"DOLPHIN_ALERT_TELEGRAM_TOKEN": TOKEN, "DOLPHIN_ALERT_TELEGRAM_CHAT_ID": "-10042",
                             "DOLPHIN_ALERT_TELEGRAM_API": srv.url})
    assert TOKEN not in d.describe()
    d.notify(Alert("hibernate", "HIBERNATE", "Cat1 0", "critical"))
    assert d.flush(5)
    assert srv.paths == [f"/bot{TOKEN}/sendMessage"]
    assert srv.bodies[0]["chat_id"] == "-10042" and srv.bodies[0]["text"].startswith("🚨 DOLPHIN HIBERNATE")
    d.close()


@pytest.mark.parametrize("failure", ["hang", "500", "refused"])
def test_a_down_channel_never_blocks_the_caller_nor_the_other_channel(failure, servers, caplog):
    good = servers()
    bad_url = refused_url() if failure == "refused" else servers(failure).url
    d = Dispatcher([WebhookChannel(bad_url + "/hook", timeout=2.0),
                    TelegramChannel(TOKEN, "7", base_url=good.url, timeout=2.0)],
                   queue_size=10, rate_per_min=1000, dedup_s=0)
    caplog.set_level(logging.WARNING, logger="dolphin.alerts")
    worst = 0.0
    for i in range(50):
        t0 = time.perf_counter()
        d.notify(Alert("fill", f"fill {i}"))
        worst = max(worst, time.perf_counter() - t0)
    # the caller never waits for delivery (a hanging webhook would cost 2 s per alert)
    assert worst < 0.05, worst
    deadline = time.monotonic() + 10
    while len(good.bodies) < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    st = d.stats()
    # the healthy channel delivered its bounded queue's worth while the other one was failing / hanging
    assert len(good.bodies) >= 10, (st, len(good.bodies))
    assert st["webhook"]["dropped_full"] > 0  # bounded: a dead channel does not grow memory
    if failure != "hang":
        deadline = time.monotonic() + 10
        while d.stats()["webhook"]["failed"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert d.stats()["webhook"]["failed"] > 0
        assert any(("HTTP 500" if failure == "500" else "ConnectionRefused") in r.getMessage() for r in caplog.records)
    t0 = time.monotonic()
    d.close(timeout=1.0)
    assert time.monotonic() - t0 < 3.0  # shutdown is bounded too


def test_rate_limit_and_deduplication(servers):
    srv = servers()
    clock = [0.0]
    d = Dispatcher([WebhookChannel(srv.url)], rate_per_min=3, dedup_s=60, clock=lambda: clock[0])
    assert d.notify(Alert("posture", "same"))
    assert not d.notify(Alert("posture", "same"))  # duplicate within 60 s
    clock[0] = 61.0
    assert d.notify(Alert("posture", "same"))  # after the window: again
    for i in range(5):
        d.notify(Alert("fill", f"f{i}"))
    assert d.flush(5)
    st = d.stats()
    assert len(srv.bodies) == 3 and st["webhook"]["dropped_rate"] == 4 and st["deduplicated"] == 1, st
    d.close()


def test_secrets_never_logged(caplog):
    caplog.set_level(logging.DEBUG, logger="dolphin.alerts")
    hook = refused_url() + "/services/T000/B000/xyzSECRETxyz"
    d = Dispatcher([TelegramChannel(TOKEN, "7", base_url=refused_url(), timeout=1.0), WebhookChannel(hook, 1.0)])
    d.notify(Alert("test", "t"))
    d.flush(5)
    text = "\n".join(r.getMessage() for r in caplog.records) + d.describe()
    assert d.stats()["telegram"]["failed"] == 1 and d.stats()["webhook"]["failed"] == 1
    assert TOKEN not in text and "xyzSECRETxyz" not in text and "SECRET" not in text, text
    d.close()


def test_no_channel_means_alerts_off():
    d = dispatcher_from_env({})
    assert not d.enabled and not d.notify(Alert("x", "y"))
    with pytest.raises(ValueError, match="CHAT_ID"):
        dispatcher_from_env({"DOLPHIN_ALERT_TELEGRAM_TOKEN": TOKEN})
    with pytest.raises(ValueError, match="http"):
        dispatcher_from_env({"DOLPHIN_ALERT_WEBHOOK_URL": "ftp://x"})


# ------------------------------------------------------------------ the watcher's rules (synthetic snapshots)


def snap(posture="APEX", rm=0.9, reachable=True, health="GREEN", failing=(), fills=(), day=None, override=None,
         ts="2026-01-01T00:00:00.000Z", now="n"):
    return {"now": now, "store": {"reachable": reachable, "error": "" if reachable else "gone"},
            "safety": None if posture is None else {
                "posture": posture, "Rm": rm, "timestamp": ts, "breakdown": {"Cat1": 1.0, "Cat2": 0.5},
                "reasons": {"Cat2": "MC ORANGE"}},
            "health": {"status": health, "failing": list(failing), "timestamp": ts,
                       "checks": [{"name": f, "ok": False, "detail": f"{f} too old"} for f in failing]},
            "override": {"available": True, "active": override},
            "strategies": [{"name": "BLUE", "session": {"session": "s1", "capital": 25_000.0, "fills_today": [
                {"event_id": e, "role": "entry", "side": "SELL", "qty": 1.0, "symbol": "ETHUSDT", "price": 2000.0,
                 "fee": 0.8, "capital_after": 24_999.2, "time": "t"} for e in fills]},
                "chain_last": None if day is None else {"day": day, "pnl": -12.5, "equity": 24_987.5,
                                                        "peak": 25_000.0, "drawdown": 0.0005, "trades": 2}}]}


def test_first_round_is_a_baseline_but_a_bad_state_is_announced():
    assert diff(None, snap(fills=["e1"], day="2026-01-01")) == []
    kinds = {a.kind for a in diff(None, snap("HIBERNATE", 0.0, health="DEGRADED", failing=["mc_age_h"]))}
    assert kinds == {"hibernate", "watchdog"}
    assert [a.kind for a in diff(None, snap(None, reachable=False))] == ["store"]


def test_posture_changes_with_breakdown_and_hibernate():
    [a] = diff(snap("APEX"), snap("TURTLE", 0.2, ts="t2"))
    assert a.kind == "posture" and a.severity == "warning" and a.title == "posture APEX -> TURTLE"
    assert "Rm 0.200" in a.text and "Cat2 0.500 (MC ORANGE)" in a.text
    [b] = diff(snap("TURTLE"), snap("APEX", ts="t3"))
    assert b.severity == "info"
    [c] = diff(snap("APEX"), snap("HIBERNATE", 0.0, ts="t4"))
    assert c.kind == "hibernate" and c.severity == "critical"
    assert diff(snap("APEX"), snap("APEX", ts="t5")) == []


def test_store_override_watchdog_fills_and_paper_day():
    down = diff(snap(), snap(None, reachable=False, now="n2"))
    assert [a.kind for a in down] == ["store"] and down[0].severity == "critical"
    assert [a.title for a in diff(snap(None, reachable=False), snap())] == ["feature store reachable again"]
    kill = {"seq": 7, "posture_name": "HIBERNATE", "text": "HIBERNATE until ..."}
    [k] = diff(snap(), snap(override=kill))
    assert k.title.startswith("KILL SWITCH") and k.severity == "critical"
    assert [a.title for a in diff(snap(override=kill), snap())] == ["manual override ended (cleared or expired)"]
    [w] = diff(snap(), snap(health="DEGRADED", failing=["heartbeat_age_s"]))
    assert w.title == "watchdog DEGRADED: heartbeat_age_s" and "heartbeat_age_s too old" in w.text
    assert [a.title for a in diff(snap(health="DEGRADED", failing=["x"]), snap())] == ["watchdog GREEN again"]
    [f] = diff(snap(fills=["e1"]), snap(fills=["e1", "e2"]))
    assert f.kind == "fill" and f.title == "BLUE entry SELL 1 ETHUSDT @ 2000" and "24,999.20" in f.text
    burst = diff(snap(), snap(fills=[f"e{i}" for i in range(9)]))
    assert len(burst) == 1 and burst[0].title == "BLUE: 9 fills"
    [p] = diff(snap(), snap(day="2026-01-02"))
    assert p.kind == "daily_pnl" and p.title == "BLUE paper day 2026-01-02: PnL -12.50 USDT"


def test_corrupt_scan_files_alerted_once(tmp_path):
    d = tmp_path / "scans" / "2026-01-01"
    d.mkdir(parents=True)
    old = d / "scan_1767225600000_1.arrow"
    old.write_bytes(b"garbage present at start")
    w = CorruptScans(tmp_path / "scans", settle_s=0.0)
    assert w.poll() == []  # what was there at start is not re-checked
    time.sleep(0.01)
    bad = d / "scan_1767225900000_2.arrow"
    bad.write_bytes(b"not an arrow file")
    [a] = w.poll()
    assert a.kind == "corrupt_scan" and "2026-01-01/scan_1767225900000_2.arrow" in a.title
    assert w.poll() == []


# ------------------------------------------------------------------ `dolphin alerts` as a process


def test_alerts_process_sends_posture_change_to_the_webhook(home, servers):
    from dolphin.store import SAFETY, Record, iso_utc
    from dolphin.adapters.store_factory import open_store_from_env

    srv = servers()
    store = open_store_from_env()
    rec = lambda p, rm: Record({"posture": p, "Rm": rm, "breakdown": {"Cat1": 1.0}, "reasons": {}},  # noqa: E731
                               iso_utc())
    store.put(SAFETY, "latest", rec("APEX", 0.9))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOLPHIN_HZ", "DOLPHIN_ALERT"))}
    env.update(DOLPHIN_HOME=str(home), DOLPHIN_FEATURE_STORE="embedded", PYTHONPATH=str(REPO),
               DOLPHIN_ALERT_WEBHOOK_URL=srv.url + "/hook/SECRETPATH")
    p = subprocess.Popen([sys.executable, "-m", "dolphin.cli", "alerts", "--interval", "0.2"], cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert "watching" in line and "SECRETPATH" not in line and "webhook http://127.0.0.1:" in line, line
        time.sleep(1.0)  # the baseline round
        store.put(SAFETY, "latest", rec("HIBERNATE", 0.0))
        deadline = time.monotonic() + 15
        while not srv.bodies and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        p.terminate()
        rc = p.wait(15)
        out, err = p.stdout.read(), p.stderr.read()
        store.close()
    assert rc == 0, err
    assert [b["kind"] for b in srv.bodies] == ["hibernate"], srv.bodies
    assert "APEX -> HIBERNATE" in srv.bodies[0]["text"]
    assert "SECRETPATH" not in out + err and "stopped" in out


def test_alerts_test_command(home, servers, monkeypatch, capsys):
    from dolphin.cli import main

    srv = servers()
    for k in [k for k in os.environ if k.startswith("DOLPHIN_ALERT")]:
        monkeypatch.delenv(k)
    assert main(["alerts", "--test"]) == 2 and "no alert channel configured" in capsys.readouterr().err
    monkeypatch.setenv("DOLPHIN_ALERT_TELEGRAM_TOKEN", TOKEN)
    monkeypatch.setenv("DOLPHIN_ALERT_TELEGRAM_CHAT_ID", "9")
    monkeypatch.setenv("DOLPHIN_ALERT_TELEGRAM_API", srv.url)
    assert main(["alerts", "--test"]) == 0
    assert srv.bodies[0]["text"].startswith("DOLPHIN test alert")
    monkeypatch.setenv("DOLPHIN_ALERT_TELEGRAM_API", refused_url())
    assert main(["alerts", "--test"]) == 1
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err
