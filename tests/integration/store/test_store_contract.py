"""One contract for every feature-store adapter (DESIGN.md "Feature store keys").

Parametrized over adapters: ``embedded`` always; ``hazelcast`` when ``DOLPHIN_HZ_MEMBERS`` points at a live
cluster (plus DOLPHIN_HZ_CLUSTER / credentials / TLS from the same environment the adapter reads), skipped
otherwise. The Hazelcast "unreachable cluster" test needs no server and always runs.

Other processes are started with "spawn", never "fork": the parent runs listener threads (the embedded
store's pollers hold SQLite's process-wide mutexes while they query), and a child forked while one is held
hangs in ``sqlite3.connect``.
"""

import multiprocessing as mp
import os
import shutil
import socket
import sqlite3
import threading
import time
import uuid

import pytest

from dolphin.store import (ACB_STATE, ADDED, FEATURE_KEYS, FEATURES, REMOVED, SAFETY, SCAN_LATEST, SCAN_TOPIC,
                           STATE_LATEST, SYSTEM_HEALTH, UPDATED, VOL_REGIME, Record, StoreUnavailableError,
                           asset_ob_key, pnl_map, publish_if_newer, state_map)
from dolphin.adapters.store_factory import open_cached_store
from dolphin.adapters.sqlite_store import EmbeddedStore

HZ = os.environ.get("DOLPHIN_HZ_MEMBERS", "")
_NO_HZ = pytest.mark.skipif(
    not HZ, reason="no Hazelcast cluster: set DOLPHIN_HZ_MEMBERS=host:port (and DOLPHIN_HZ_CLUSTER, ...) to run "
                   "the contract against one")
# "+nearcache": the parsed-record near cache (dolphin.adapters.near_cache) as the factory opens it (over an uncached
# adapter), with a long max age so that only entry events can make another client's write visible
ADAPTERS = ["embedded", "embedded+nearcache", pytest.param("hazelcast", marks=_NO_HZ),
            pytest.param("hazelcast+nearcache", marks=_NO_HZ)]
NEARCACHE_MAX_AGE_S = 60.0
ROUND_TRIP_S = 0.25  # allowance for one write and one event delivery / read on a loaded 2-core machine
SPAWN = mp.get_context("spawn")  # never fork: see the module docstring


def _open(kind, path):
    base, _, cached = kind.partition("+")
    hz_kw = {} if base == "embedded" else {"connect_timeout": 10}
    if cached:
        return open_cached_store(base, path=path if base == "embedded" else None, max_age_s=NEARCACHE_MAX_AGE_S,
                                 **hz_kw)
    if base == "embedded":
        return EmbeddedStore(path)
    from dolphin.adapters.hazelcast_store import HazelcastStore

    return HazelcastStore(**hz_kw)


def _visibility_bound(kind, store) -> float:
    """How soon another client's write must be visible, per variant:

    - plain adapters: their stated ``staleness_bound_s`` (embedded: 0, no cache; Hazelcast: its near cache's
      bound), plus ``ROUND_TRIP_S``;
    - ``+nearcache`` (max age 60 s, so only events can make the write visible): the entry-event path -- the
      embedded store's ``poll_interval`` (Hazelcast pushes events: 0), plus ``ROUND_TRIP_S``.
    """
    if kind.endswith("+nearcache"):
        return getattr(store.inner, "poll_interval", 0.0) + ROUND_TRIP_S
    return getattr(store, "staleness_bound_s", 0.0) + ROUND_TRIP_S


def _wait(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


@pytest.fixture(params=ADAPTERS)
def world(request, tmp_path):
    """(kind, path, store, strategy): a fresh strategy name per test keeps Hazelcast runs independent."""
    kind, path = request.param, tmp_path / "features.sqlite"
    store = _open(kind, path)
    strategy = "T" + uuid.uuid4().hex[:10].upper()
    for key in (*FEATURE_KEYS, asset_ob_key("BTCUSDT"), asset_ob_key("ETHUSDT")):
        store.delete(FEATURES, key)
    yield kind, path, store, strategy
    store.close()


def _scan_row(n_assets=400):
    syms = [f"A{i:03d}USDT" for i in range(n_assets)]
    return {"scan_number": 123456, "assets": syms, "vel_div": -0.0231,
            "loadings": [[(i * 7 + j) % 1000 / 997.0 for j in range(n_assets)] for i in range(4)],
            "closes": [1000.0 + i * 0.123456789 for i in range(n_assets)],
            "eigenvalues": [12.5, 3.25, 1.125, 0.5]}


def test_round_trip_every_key_family(world):
    _, _, store, strat = world
    entries = [(FEATURES, k, Record({"k": k, "x": 1.5})) for k in FEATURE_KEYS]
    entries += [(FEATURES, asset_ob_key("btcusdt"), Record({"bids": [[50000.0, 1.2]], "asks": [[50001.0, 0.7]]})),
                (state_map(strat), STATE_LATEST, Record({"capital": 25000.0, "peak": 26000.0, "drawdown": 0.0385})),
                (pnl_map(strat), "2024-02-01", Record({"pnl": -12.5, "trades": 3})),
                (pnl_map(strat), "2024-02-02", Record({"pnl": 40.0, "trades": 5})),
                (SAFETY, "latest", Record({"posture": "APEX", "Rm": 0.97, "breakdown": {"cat1": 1.0}})),
                (SYSTEM_HEALTH, "latest", Record({"ok": True, "components": {"scanner": "up"}}))]
    for m, k, r in entries:
        store.put(m, k, r)
    for m, k, r in entries:
        got = store.get(m, k)
        assert got == r and got.timestamp == r.timestamp, (m, k)
    assert store.keys(pnl_map(strat)) == ["2024-02-01", "2024-02-02"]
    assert set(store.keys(FEATURES)) >= {*FEATURE_KEYS, "asset_BTCUSDT_ob"}
    assert store.delete(SAFETY, "latest") and not store.delete(SAFETY, "latest")
    assert store.get(SAFETY, "latest") is None
    assert store.get(state_map(strat), "nothing-here") is None


def test_large_value_round_trip(world):
    _, _, store, _ = world
    r = Record(_scan_row(400))
    assert len(r.to_json()) > 20_000
    store.put(FEATURES, SCAN_LATEST, r)
    got = store.get(FEATURES, SCAN_LATEST)
    assert got == r
    assert len(got.value["loadings"]) == 4 and all(len(row) == 400 for row in got.value["loadings"])
    assert got.value["closes"][399] == r.value["closes"][399]


def test_replace_if_same_and_update_helper(world):
    _, _, store, strat = world
    m = state_map(strat)
    a, b, c = Record({"v": 1}), Record({"v": 2}), Record({"v": 3})
    assert store.replace_if_same(m, STATE_LATEST, None, a)
    assert not store.replace_if_same(m, STATE_LATEST, None, b)
    assert not store.replace_if_same(m, STATE_LATEST, b, c)
    assert store.replace_if_same(m, STATE_LATEST, a, c) and store.get(m, STATE_LATEST) == c
    got = store.update(m, STATE_LATEST, lambda cur: Record({"v": cur.value["v"] + 10}))
    assert got.value == {"v": 13} and store.get(m, STATE_LATEST) == got
    assert store.update(m, STATE_LATEST, lambda cur: None) == got  # fn declines: unchanged
    assert store.update(m, "other", lambda cur: Record({"v": 0 if cur is None else -1})).value == {"v": 0}


def _bump(cur):
    return Record({"count": (cur.value["count"] if cur else 0) + 1})


def _increment(kind, path, n, go):
    store = _open(kind, path)
    go.wait(30)
    for _ in range(n):
        store.update(FEATURES, "acb_state", _bump, attempts=1000)
    store.close()


def test_update_under_four_concurrent_processes_loses_nothing(world):
    kind, path, store, _ = world
    go = SPAWN.Event()
    procs = [SPAWN.Process(target=_increment, args=(kind, path, 50, go)) for _ in range(4)]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert store.get(FEATURES, "acb_state").value["count"] == 200


def _writer(kind, path, strat, n):
    store = _open(kind, path)
    for i in range(n):
        store.put(state_map(strat), STATE_LATEST, Record({"i": i}))
    store.delete(state_map(strat), STATE_LATEST)
    store.close()


def test_listener_events_in_order_from_another_process(world):
    kind, path, store, strat = world
    m = state_map(strat)
    events, lock = [], threading.Lock()

    def on(ev):
        with lock:
            events.append(ev)

    store.put(m, "before", Record({"x": 0}))  # before listen: not delivered
    handle = store.listen(m, on)
    p = SPAWN.Process(target=_writer, args=(kind, path, strat, 20))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert _wait(lambda: len(events) >= 21), f"got {len(events)} of 21 events"
    time.sleep(0.2)
    assert [e.type for e in events] == [ADDED] + [UPDATED] * 19 + [REMOVED]
    assert [e.record.value["i"] for e in events[:20]] == list(range(20))
    assert all(e.map_name == m and e.key == STATE_LATEST for e in events)
    assert events[-1].record is None or events[-1].record.value == {"i": 19}
    store.unlisten(handle)
    n = len(events)
    store.put(m, STATE_LATEST, Record({"i": 99}))
    time.sleep(0.5)
    assert len(events) == n  # unlistened: no more events


def test_topic_delivery_in_order(world):
    kind, path, store, strat = world
    other = _open(kind, path)  # publisher: another instance (another client)
    got, got2 = [], []
    h = store.subscribe(SCAN_TOPIC, got.append)
    h2 = other.subscribe(SCAN_TOPIC, got2.append)
    payloads = [{"scan_number": i, "strategy": strat, "vel_div": -0.01 * i} for i in range(30)]
    for pl in payloads:
        other.publish(SCAN_TOPIC, pl)
    mine = lambda xs: [x for x in xs if x.get("strategy") == strat]  # noqa: E731
    assert _wait(lambda: len(mine(got)) >= 30 and len(mine(got2)) >= 30)
    assert mine(got) == payloads and mine(got2) == payloads
    store.unsubscribe(h)
    other.unsubscribe(h2)
    other.close()


def test_another_clients_write_is_seen(world):
    """A cache (Hazelcast's near cache on DOLPHIN_FEATURES, the parsed-record cache) shows ANOTHER client's
    write within the variant's stated bound (``_visibility_bound``), not whenever it happens to."""
    kind, path, store, _ = world
    if kind.endswith("+nearcache"):  # the factory's inner adapter is uncached: the bound is the max age alone
        assert store.staleness_bound_s == store.max_age_s == NEARCACHE_MAX_AGE_S
    bound = _visibility_bound(kind, store)
    other = _open(kind, path)
    store.put(FEATURES, VOL_REGIME, Record({"regime": "low"}))
    for _ in range(5):  # warm this client's caches
        assert store.get(FEATURES, VOL_REGIME).value == {"regime": "low"}
    other.put(FEATURES, VOL_REGIME, Record({"regime": "high"}))
    assert _wait(lambda: store.get(FEATURES, VOL_REGIME).value == {"regime": "high"}, timeout=bound), \
        f"{kind}: another client's write not visible within {bound:.2f}s"
    other.delete(FEATURES, VOL_REGIME)
    assert _wait(lambda: store.get(FEATURES, VOL_REGIME) is None, timeout=bound), \
        f"{kind}: another client's delete not visible within {bound:.2f}s"
    other.close()


@pytest.fixture(params=["embedded", "embedded+nearcache"])
def embedded_world(request, tmp_path):
    kind, path = request.param, tmp_path / "features.sqlite"
    store = _open(kind, path)
    yield kind, path, store
    store.close()


def _write_raw(path, map_name, key, text):
    """Another writer's bug or a hand edit: text straight into the entries table, past every check."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("INSERT INTO entries (map, key, value) VALUES (?, ?, ?) "
                    "ON CONFLICT (map, key) DO UPDATE SET value = excluded.value", (map_name, key, text))
    finally:
        con.close()


@pytest.mark.parametrize("bad", ['{"boost": 1.2', '[1.2]', '{"boost": 1.2}', '{"timestamp": "yesterday"}'],
                         ids=["not-json", "not-object", "no-timestamp", "bad-timestamp"])
def test_malformed_value_reads_as_missing_is_reported_and_replaced(embedded_world, bad):
    kind, path, store = embedded_world
    bound = _visibility_bound(kind, store)
    store.put(FEATURES, ACB_STATE, Record({"boost": 1.0}))
    assert store.get(FEATURES, ACB_STATE).value == {"boost": 1.0}  # (+nearcache: now cached)
    _write_raw(path, FEATURES, ACB_STATE, bad)
    assert _wait(lambda: store.get(FEATURES, ACB_STATE) is None, timeout=bound)  # missing, not an exception
    assert list(store.malformed()) == [(FEATURES, ACB_STATE)]  # reported by map/key
    assert "not a valid record" in store.malformed()[(FEATURES, ACB_STATE)][0]
    # update's compare-and-set replaces the bad text (fn sees "missing")
    got = store.update(FEATURES, ACB_STATE, lambda cur: Record({"boost": 2.0}) if cur is None else None)
    assert got.value == {"boost": 2.0} and store.get(FEATURES, ACB_STATE) == got
    assert store.malformed() == {}
    # and so does publish_if_newer's
    _write_raw(path, FEATURES, VOL_REGIME, bad)
    assert store.get(FEATURES, VOL_REGIME) is None and (FEATURES, VOL_REGIME) in store.malformed()
    assert publish_if_newer(store, FEATURES, VOL_REGIME, Record({"regime": "high"}))
    assert store.get(FEATURES, VOL_REGIME).value == {"regime": "high"} and store.malformed() == {}


def test_embedded_store_gone_raises_unavailable_fast(tmp_path):
    d = tmp_path / "store"
    store = EmbeddedStore(d / "features.sqlite")
    store.put(FEATURES, SCAN_LATEST, Record({"x": 1}))
    shutil.rmtree(d)
    t = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="features.sqlite"):
        store.get(FEATURES, SCAN_LATEST)
    with pytest.raises(StoreUnavailableError):
        store.put(FEATURES, SCAN_LATEST, Record({"x": 2}))  # a write is never silently dropped
    with pytest.raises(StoreUnavailableError):
        store.replace_if_same(FEATURES, SCAN_LATEST, None, Record({"x": 2}))
    assert time.monotonic() - t < 2.0
    assert not d.exists()  # and no fresh empty store was created behind the readers' backs


def _store_with_its_file_deleted(tmp_path):
    path = tmp_path / "features.sqlite"
    store = EmbeddedStore(path)
    store.put(FEATURES, SCAN_LATEST, Record({"x": 1}))
    for f in tmp_path.glob("features.sqlite*"):
        f.unlink()
    return store, path


def test_embedded_store_file_removed_is_not_silently_recreated(tmp_path):
    store, path = _store_with_its_file_deleted(tmp_path)
    with pytest.raises(StoreUnavailableError):  # not None from a fresh empty file
        store.get(FEATURES, SCAN_LATEST)
    with pytest.raises(StoreUnavailableError):
        store.put(FEATURES, SCAN_LATEST, Record({"x": 2}))
    assert not path.exists()


def test_embedded_store_unreadable_raises_unavailable(tmp_path):
    store, path = _store_with_its_file_deleted(tmp_path)
    path.write_bytes(b"this is not a database" * 100)  # e.g. clobbered / wrong file (root ignores chmod)
    with pytest.raises(StoreUnavailableError):
        store.get(FEATURES, SCAN_LATEST)
    with pytest.raises(StoreUnavailableError):
        store.put(FEATURES, SCAN_LATEST, Record({"x": 2}))


def test_hazelcast_unreachable_cluster_fails_fast_naming_members():
    pytest.importorskip("hazelcast")
    from dolphin.adapters.hazelcast_store import HazelcastStore

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # a closed port: nothing listens there
    t = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=f"127.0.0.1:{port}") as err:
        HazelcastStore([f"127.0.0.1:{port}"], "dolphin-test", username="u", password="s3cr3t-pw",
                       connect_timeout=2)
    assert time.monotonic() - t < 6.0
    assert "s3cr3t-pw" not in str(err.value)
