"""Parsed-record near cache: serves from memory, drops a key when anyone writes it, never hides an outage
longer than its max age, and never re-caches a value older than an invalidation that raced the read."""

import time

import pytest

from dolphin.store import FEATURES, SCAN_LATEST, Record, StoreUnavailableError, state_map
from dolphin.adapters.sqlite_store import EmbeddedStore
from dolphin.adapters.near_cache import NearCachedStore


def test_hits_are_the_same_parsed_record_and_own_writes_invalidate(tmp_path):
    c = NearCachedStore(EmbeddedStore(tmp_path / "f.sqlite"), max_age_s=60)
    c.put(FEATURES, SCAN_LATEST, Record({"vel_div": 1.0}))
    a = c.get(FEATURES, SCAN_LATEST)
    assert c.get(FEATURES, SCAN_LATEST) is a and c.hits == 1
    c.put(FEATURES, SCAN_LATEST, Record({"vel_div": 2.0}))
    assert c.get(FEATURES, SCAN_LATEST).value == {"vel_div": 2.0}
    hits = c.hits
    assert c.get(state_map("BLUE"), "latest") is None and c.get(state_map("BLUE"), "latest") is None
    assert c.hits == hits  # state maps are not cached: both went to the backend
    c.close()


def test_an_outage_is_visible_after_max_age(tmp_path):
    path = tmp_path / "f.sqlite"
    c = NearCachedStore(EmbeddedStore(path), max_age_s=0.2)
    c.put(FEATURES, SCAN_LATEST, Record({"vel_div": 1.0}))
    assert c.get(FEATURES, SCAN_LATEST).value == {"vel_div": 1.0}
    for p in tmp_path.iterdir():
        p.unlink()
    assert c.get(FEATURES, SCAN_LATEST).value == {"vel_div": 1.0}  # within max age: served
    time.sleep(0.25)
    with pytest.raises(StoreUnavailableError):
        c.get(FEATURES, SCAN_LATEST)
    with pytest.raises(StoreUnavailableError):  # and the failure was not cached as "absent"
        c.get(FEATURES, SCAN_LATEST)


def test_a_read_racing_an_invalidation_does_not_cache_the_old_value(tmp_path):
    inner = EmbeddedStore(tmp_path / "f.sqlite")
    inner.put(FEATURES, SCAN_LATEST, Record({"v": 1}))
    c = NearCachedStore(inner, max_age_s=60)
    real_get = inner.get

    def slow_get(m, k):  # the backend answers the old value, meanwhile someone writes and invalidates
        rec = real_get(m, k)
        c._invalidate(m, k)
        return rec

    inner.get = slow_get
    assert c.get(FEATURES, SCAN_LATEST).value == {"v": 1}
    inner.get = real_get
    inner.put(FEATURES, SCAN_LATEST, Record({"v": 2}))
    assert c.get(FEATURES, SCAN_LATEST).value == {"v": 2}
