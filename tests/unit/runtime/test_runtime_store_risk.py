"""The runtime's survival-stack reader against a store that misbehaves (issue 10):

- decision latency: on the wall clock a stalled store never holds a bar-close decision longer than the budget
  (last good values within the staleness limit, else Cat1 = 0); the bar clock stays synchronous;
- malformed records: every input key, bad JSON text and valid JSON with wrong field types, is reported by
  key once and read exactly as if it were missing; a value stamped after the bar is not used;
- rehydration: keys the runtime owns (DOLPHIN_SAFETY, its heartbeat, DOLPHIN_STATE_<S>/runtime_<mode>) come
  back by themselves after a wipe, within ``keep_s``;
- ``dolphin runtime paper --risk store``.
"""

import logging
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from dolphin.engine.config import APEX, HIBERNATE, ORANGE, RED
from dolphin.ledger.journal import FillJournal
from dolphin.store import (ACB_STATE, EXF_LATEST, FEATURES, MC_FOREWARNER_LATEST, SAFETY, SYSTEM_HEALTH,
                           Record, asset_ob_key, iso_utc, state_map)
from dolphin.adapters.sqlite_store import EmbeddedStore
from dolphin.store.faults import StallingStore
from dolphin.survival.stack import read_safety
from runtime.ledger import LedgerSink
from runtime.risk import StoreRiskSource
from tests.support.risk import _acb, _mc

T0 = datetime(2024, 3, 4, 12, 0, tzinfo=timezone.utc)
SYMS = ("BTCUSDT", "ETHUSDT")
BOOK = asset_ob_key("BTCUSDT")


def _ns(t: datetime) -> int:
    return int(t.timestamp() * 1000) * 1_000_000


def _healthy(store, t: datetime) -> None:
    store.put(FEATURES, ACB_STATE, _acb(t))
    store.put(FEATURES, MC_FOREWARNER_LATEST, _mc("GREEN", t))
    store.put(FEATURES, EXF_LATEST, Record({"dvol_btc": 55.0}, iso_utc(t)))
    for s in SYMS:
        store.put(FEATURES, asset_ob_key(s), Record({"depth_quality": 1.0, "fill_prob": 1.0}, iso_utc(t)))


def _wall_healthy(store) -> None:
    _healthy(store, datetime.now(timezone.utc) - timedelta(seconds=1))


def _put_raw(path, key: str, text: str) -> None:
    """Write a value as raw text, bypassing Record (what a buggy writer or a hand edit leaves)."""
    with sqlite3.connect(path) as con:
        con.execute("INSERT INTO entries (map, key, value) VALUES (?, ?, ?) "
                    "ON CONFLICT (map, key) DO UPDATE SET value = excluded.value", (FEATURES, key, text))




@pytest.fixture
def embedded(tmp_path):
    path = tmp_path / "store" / "features.sqlite"
    return path, EmbeddedStore(path, poll_interval=0.02)


@pytest.fixture
def sources():
    made = []

    def make(store, **kw):
        kw.setdefault("symbols", SYMS)
        src = StoreRiskSource(store, **kw)
        made.append(src)
        assert src.ready(5.0)  # the first round is done (a live node has minutes before its first bar close)
        return src

    yield make
    for src in made:
        src.close(timeout=0.5)


def _timed_read(src):
    t0 = time.perf_counter()
    snap = src.read(time.time_ns())
    return snap, time.perf_counter() - t0


# ------------------------------------------------------------------ decision latency (wall clock)


def test_a_stalled_store_never_holds_the_decision_beyond_the_budget(embedded, sources):
    _, inner = embedded
    store = StallingStore(inner)
    _wall_healthy(inner)
    src = sources(store, clock="wall", budget_ms=50, refresh_s=0.05, stale_s=10.0, publish=False)
    snap, _ = _timed_read(src)
    assert snap.posture == APEX and snap.acb_boost == 1.2 and snap.source == "feature store"
    store.stall(1.5)  # a member SIGKILL: the next calls stall 1.5 s
    time.sleep(0.1)  # the refresher is now inside a stalled call
    seen = [_timed_read(src) for _ in range(3)]
    for snap, dt in seen:
        assert dt < 0.4, f"a decision waited {dt:.3f} s on a stalled store (budget 50 ms)"
        assert snap.posture == APEX and snap.acb_boost == 1.2 and "last good values" in snap.source
    assert src.last.breakdown.cat1 == 1.0 and src.budget_misses >= 3
    # contrast: the synchronous (bar clock) read sits the stall out -- what every decision did before
    store.stall(1.0)
    bar = sources(store, clock="bar", publish=False)
    t0 = time.perf_counter()
    bar.read(time.time_ns())
    assert time.perf_counter() - t0 >= 0.9


def test_no_answer_beyond_the_staleness_limit_is_cat1_zero_then_recovery(embedded, sources):
    _, inner = embedded
    store = StallingStore(inner)
    _wall_healthy(inner)
    src = sources(store, clock="wall", budget_ms=50, refresh_s=0.05, stale_s=0.3, publish=False)
    assert src.read(time.time_ns()).posture == APEX
    store.stall(1.2)
    time.sleep(0.5)  # the last good round started > 0.3 s ago
    snap, dt = _timed_read(src)
    assert dt < 0.4 and snap.posture == HIBERNATE and snap.rm == 0.0 and snap.mc_status == RED
    assert "UNREACHABLE" in snap.source and "no store answer for more than 0.3 s" in snap.source
    assert src.last.invariant_kill
    time.sleep(0.9)  # the store answers again: APEX after exactly 5 healthy checks (DESIGN's hysteresis)
    _wall_healthy(inner)
    assert [src.read(time.time_ns()).posture for _ in range(5)] == [HIBERNATE] * 4 + [APEX]


def test_an_unreachable_store_is_cat1_zero_at_once_on_the_wall_clock(embedded, sources):
    _, inner = embedded
    store = StallingStore(inner)
    _wall_healthy(inner)
    src = sources(store, clock="wall", budget_ms=50, refresh_s=0.05, publish=False)
    assert src.read(time.time_ns()).posture == APEX
    store.down = True  # the backend says so: no waiting for the staleness limit
    snap, dt = _timed_read(src)
    assert dt < 0.4 and snap.posture == HIBERNATE and "store down (injected)" in snap.source


def test_the_bar_clock_reads_synchronously_and_close_stops_the_threads(embedded, sources):
    _, store = embedded
    _healthy(store, T0)
    bar = sources(store, clock="bar")
    assert not any(t.name == "dolphin-risk-refresher" for t in threading.enumerate() if t.is_alive())
    assert bar.read(_ns(T0)).acb_boost == 1.2
    store.put(FEATURES, ACB_STATE, _acb(T0 + timedelta(minutes=1), boost=0.7))
    assert bar.read(_ns(T0 + timedelta(minutes=5))).acb_boost == 0.7  # the write is seen at the next check
    wall = sources(store, clock="wall", refresh_s=0.05)
    threads = [wall._refresher, wall._publisher, bar._publisher]
    assert all(t.is_alive() for t in threads)
    wall.close()
    bar.close()
    assert not any(t.is_alive() for t in threads)


# ------------------------------------------------------------------ malformed and future records

MALFORMED = {  # key -> (bad JSON text, valid JSON with a wrong field type, another wrong value)
    ACB_STATE: ('{"boost": 1.2, "timestamp": ', lambda r: {**r.value, "boost": "high"},
                lambda r: {**r.value, "beta": 7.0}),
    MC_FOREWARNER_LATEST: ("not json at all", lambda r: {**r.value, "status": 2},
                           lambda r: {**r.value, "status": "PURPLE"}),
    EXF_LATEST: ('["dvol_btc", 55]', lambda r: {"dvol_btc": "55.0"}, lambda r: {"dvol_btc": -1.0}),
    BOOK: ('{"depth_quality": 1.0}', lambda r: {"depth_quality": "deep", "fill_prob": 1.0},
           lambda r: {"depth_quality": 7.0, "fill_prob": 1.0}),
}


def _state(src, t):
    s = src.read(_ns(t))
    return (s.posture, s.rm, s.acb_boost, s.mc_status, src.last.breakdown.as_dict(), src.dvol.last_ts is not None)


@pytest.mark.parametrize("kind", ["bad JSON", "wrong types"])
@pytest.mark.parametrize("key", list(MALFORMED))
def test_a_malformed_input_is_reported_once_and_read_as_missing(embedded, sources, caplog, key, kind):
    path, store = embedded
    _healthy(store, T0)
    t = T0 + timedelta(seconds=10)

    def three(src):  # three checks (the posture's hysteresis moves on repeated checks)
        return [_state(src, t) for _ in range(3)]

    healthy = three(sources(store, clock="bar", publish=False))
    good = store.get(FEATURES, key)
    store.delete(FEATURES, key)
    missing = three(sources(store, clock="bar", publish=False))
    assert missing != healthy  # so reading the bad value as healthy would fail this test
    text, wrong, other = MALFORMED[key]
    if kind == "bad JSON":
        _put_raw(path, key, text)
    else:
        store.put(FEATURES, key, Record(wrong(good), good.timestamp))
    caplog.set_level(logging.WARNING)
    src = sources(store, clock="bar", publish=False)
    assert three(src) == missing  # no exception, exactly "missing"
    named = [r for r in caplog.records if f"{FEATURES}/{key}" in r.getMessage()]
    assert len(named) == 1 and "malformed" in named[0].getMessage()  # once per distinct bad value
    if kind == "wrong types":
        assert key in src.malformed
        store.put(FEATURES, key, Record(other(good), good.timestamp))  # another bad value: reported again
        assert _state(src, t)[2:4] == missing[-1][2:4]
        assert len([r for r in caplog.records if f"{FEATURES}/{key}" in r.getMessage()]) == 2
        store.put(FEATURES, key, good)  # repaired: used again
        assert _state(src, t)[2:] == healthy[-1][2:] and key not in src.malformed


def test_a_malformed_input_on_the_wall_clock_keeps_the_refresher_alive(embedded, sources):
    _, store = embedded
    _wall_healthy(store)
    good = store.get(FEATURES, ACB_STATE)
    store.put(FEATURES, ACB_STATE, Record({**good.value, "boost": "high"}, good.timestamp))
    src = sources(store, clock="wall", refresh_s=0.05, publish=False)
    snap = src.read(time.time_ns())
    assert snap.acb_boost == 1.0 and snap.posture == APEX and src.last.breakdown.cat1 == 1.0
    store.put(FEATURES, ACB_STATE, good)  # repaired: a later round reads it (the refresher is alive)
    got, _ = _wait_for(lambda: src.read(time.time_ns()).acb_boost == 1.2, 2.0)
    assert got and src.malformed == {}


def test_a_value_stamped_after_the_bar_is_not_used(embedded, sources, caplog):
    """Bar clock (replays): the store holds only the latest value; one stamped after the bar close being
    decided is look-ahead, so it counts as missing until the replay reaches its time (and never crashes
    the stack's negative-age check)."""
    _, store = embedded
    _healthy(store, T0)
    store.put(FEATURES, MC_FOREWARNER_LATEST, _mc("RED", T0 + timedelta(hours=2)))
    store.put(FEATURES, ACB_STATE, _acb(T0 + timedelta(hours=2), boost=0.6))
    caplog.set_level(logging.INFO, logger="dolphin.runtime.risk")
    src = sources(store, clock="bar", publish=False)
    before = src.read(_ns(T0 + timedelta(hours=1)))
    assert before.mc_status == ORANGE and before.acb_boost == 1.0
    assert any("not yet known at this bar" in r.getMessage() for r in caplog.records)
    after = src.read(_ns(T0 + timedelta(hours=2)))
    assert after.mc_status == RED and after.acb_boost == 0.6


# ------------------------------------------------------------------ rehydration


def _wipe(store, maps):
    for m in maps:
        for k in store.keys(m):
            store.delete(m, k)


def _wait_for(fn, timeout: float):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = fn()
        if v:
            return v, time.monotonic() - t0
        time.sleep(0.02)
    return None, timeout


def test_wiped_keys_come_back_within_keep_s(embedded, sources, tmp_path):
    _, store = embedded
    _wall_healthy(store)
    keep_s = 0.3
    src = sources(store, clock="wall", refresh_s=0.05, keep_s=keep_s)
    j = FillJournal(tmp_path / "ledger.sqlite")
    session = "sandbox:testnet:2024-03-04"
    sink = LedgerSink(j, "BLUE", session, mode="sandbox", opening_capital=25_000.0, store=store, resimulate=False)
    src.attach(sink)
    sink.record("fill", "O-1:T-1", _ns(T0), "BTCUSDT", "SELL", "entry", 2.0, 60_000.0, 0.5, 0.0, "TAKER",
                24_999.5)
    src.read(time.time_ns())
    assert src.flush(2.0)
    smap = state_map("BLUE")
    before = (read_safety(store), store.get(SYSTEM_HEALTH, "runtime_heartbeat"), store.get(smap, "runtime_sandbox"))
    assert all(x is not None for x in before)
    assert before[2].value["capital"] == 24_999.5 and before[2].value["positions"]["BTCUSDT"]["qty"] == -2.0

    _wipe(store, (SAFETY, SYSTEM_HEALTH, smap))  # a cluster restart: every key gone; no new check meanwhile
    assert store.get(smap, "runtime_sandbox") is None and store.get(SAFETY, "latest") is None

    def back():
        got = (read_safety(store), store.get(SYSTEM_HEALTH, "runtime_heartbeat"), store.get(smap, "runtime_sandbox"))
        return got if all(x is not None for x in got) else None

    got, took = _wait_for(back, keep_s + 2.0)  # + the parsed-record cache's 1 s when one sits in between
    assert got is not None, "the runtime's keys did not come back"
    assert took <= keep_s + 1.0  # one keep round (+ scheduling on a loaded machine)
    assert got == before  # the same values: the last check, its heartbeat, the journal's state

    # behind the journal (a publish lost in an outage): the older state is replaced, a newer one is kept
    store.put(smap, "runtime_sandbox", Record({**before[2].value, "events": 0, "capital": 25_000.0},
                                              before[2].timestamp))
    got, _ = _wait_for(lambda: store.get(smap, "runtime_sandbox").value["events"] == 1, keep_s + 1.0)
    assert got and store.get(smap, "runtime_sandbox") == before[2]
    other = Record({**before[2].value, "session": "sandbox:testnet:2024-03-05"}, before[2].timestamp)
    store.put(smap, "runtime_sandbox", other)  # a later session owns the key now: left alone
    time.sleep(keep_s * 2.5)
    assert store.get(smap, "runtime_sandbox") == other


# ------------------------------------------------------------------ dolphin runtime paper --risk store


def _paper(argv, capsys):
    from dolphin.cli import main

    rc = main(["runtime", "paper", "--start", "2024-02-27", "--end", "2024-02-27", "--no-funding", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_paper_risk_store_refuses_an_unreachable_store(tmp_path, monkeypatch, capsys):
    (tmp_path / "store").write_text("")  # <home>/store/features.sqlite cannot be created: a file is in the way
    monkeypatch.setenv("DOLPHIN_FEATURE_STORE", "embedded")
    monkeypatch.setenv("DOLPHIN_HOME", str(tmp_path))
    rc, out, err = _paper(["--risk", "store", "--no-ledger"], capsys)
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("dolphin runtime paper: feature store embedded (") and "unreachable" in err


def test_paper_risk_store_refuses_an_unreachable_hazelcast_cluster(monkeypatch, capsys):
    monkeypatch.setenv("DOLPHIN_FEATURE_STORE", "hazelcast")
    monkeypatch.setenv("DOLPHIN_HZ_MEMBERS", "127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("DOLPHIN_HZ_CONNECT_TIMEOUT", "1")
    t0 = time.monotonic()
    rc, out, err = _paper(["--risk", "store", "--no-ledger"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and time.monotonic() - t0 < 30
    assert "feature store hazelcast (cluster 'dolphin' at 127.0.0.1:9) unreachable" in err


def test_paper_risk_store_replays_with_the_stores_survival_inputs(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    monkeypatch.setenv("DOLPHIN_FEATURE_STORE", "embedded")
    monkeypatch.setenv("DOLPHIN_HOME", str(home))
    store = EmbeddedStore(home / "store" / "features.sqlite")
    day = datetime(2024, 2, 27, tzinfo=timezone.utc)
    store.put(FEATURES, MC_FOREWARNER_LATEST, _mc("RED", day))  # RED before the first bar: no entry all day
    ledger = str(tmp_path / "ledger.sqlite")
    rc, out, err = _paper(["--ledger", ledger], capsys)  # defaults (the default): this day trades
    assert rc == 0 and "risk: survival stack" not in out
    assert "no trades" not in out and " trades (" in out
    rc, out, err = _paper(["--risk", "store", "--ledger", ledger], capsys)  # same ledger: another session
    assert rc == 0, err
    assert "risk: survival stack from the feature store embedded (" in out
    assert "Cat2=0.0" in out and "MC RED" in out  # the last bar's breakdown: RED, decayed
    assert "\nno trades\n" in out, out
    rec = store.get(state_map("BLUE"), "runtime_paper")  # the ledger's hot copy went to the same store
    assert rec is not None and rec.value["status"] == "closed" and rec.value["events"] == 0
    assert rec.value["session"].endswith(":risk-store")
    assert store.get(SAFETY, "latest") is None  # a replay does not publish a (past) posture
