"""Feature-store port + embedded adapter: DESIGN.md names, typed records, compare-and-set across processes."""

import multiprocessing as mp

import pytest

from dolphin.store import (FEATURES, SCAN_LATEST, Record, StoreKeyError, asset_ob_key, pnl_map, publish_if_newer,
                           state_map)
from dolphin.adapters.sqlite_store import EmbeddedStore


@pytest.fixture
def store(tmp_path):
    return EmbeddedStore(tmp_path / "features.sqlite")


def test_names_are_designs():
    assert state_map("blue") == "DOLPHIN_STATE_BLUE" and pnl_map("BLUE") == "DOLPHIN_PNL_BLUE"
    assert asset_ob_key("btcusdt") == "asset_BTCUSDT_ob"


def test_put_get_delete_keys(store):
    r = Record({"vel_div": -0.5, "asset_count": 50}, "2024-02-01T00:05:00.000Z")
    store.put(FEATURES, SCAN_LATEST, r)
    got = store.get(FEATURES, SCAN_LATEST)
    assert got == r and got.timestamp_ms == 1706745900000
    assert '"timestamp":"2024-02-01T00:05:00.000Z"' in got.to_json()
    store.put(pnl_map("BLUE"), "2024-02-01", Record({"pnl": 1.0}))
    assert store.keys(pnl_map("BLUE")) == ["2024-02-01"]
    assert store.delete(FEATURES, SCAN_LATEST) and not store.delete(FEATURES, SCAN_LATEST)
    assert store.get(FEATURES, SCAN_LATEST) is None


def test_unknown_names_are_refused(store):
    with pytest.raises(StoreKeyError, match="unknown feature-store map"):
        store.put("DOLPHIN_FEATURE", SCAN_LATEST, Record())
    with pytest.raises(StoreKeyError, match="unknown DOLPHIN_FEATURES key"):
        store.get(FEATURES, "scan_lastest")
    with pytest.raises(ValueError, match="timestamp"):
        Record({"timestamp": 1})


def test_replace_if_same(store):
    a, b, c = Record({"v": 1}), Record({"v": 2}), Record({"v": 3})
    assert store.replace_if_same(FEATURES, "acb_state", None, a)  # absent -> stored
    assert not store.replace_if_same(FEATURES, "acb_state", None, b)  # present: refused
    assert not store.replace_if_same(FEATURES, "acb_state", b, c)  # stale expectation
    assert store.replace_if_same(FEATURES, "acb_state", a, c)
    assert store.get(FEATURES, "acb_state") == c


def test_publish_if_newer_never_goes_back(store):
    new, old = Record({"x": 2}, "2024-02-02T00:00:00.000Z"), Record({"x": 1}, "2024-02-01T00:00:00.000Z")
    assert publish_if_newer(store, FEATURES, "vol_regime", new)
    assert not publish_if_newer(store, FEATURES, "vol_regime", old)
    assert store.get(FEATURES, "vol_regime") == new


def _increment(path, n):
    s = EmbeddedStore(path)
    for _ in range(n):
        while True:
            cur = s.get(FEATURES, "acb_state")
            nxt = Record({"count": (cur.value["count"] if cur else 0) + 1})
            if s.replace_if_same(FEATURES, "acb_state", cur, nxt):
                break


def test_compare_and_set_across_processes_loses_no_update(tmp_path):
    path = tmp_path / "features.sqlite"
    EmbeddedStore(path)
    # spawn, not fork: a listener thread left running by an earlier test in this process can hold SQLite's
    # process-wide mutex at fork time, and the child then hangs in sqlite3.connect
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_increment, args=(path, 60)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert EmbeddedStore(path).get(FEATURES, "acb_state").value["count"] == 240
