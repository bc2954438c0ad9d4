"""Watchdog: each check's boundary, overall GREEN / DEGRADED, DOLPHIN_SYSTEM_HEALTH round trip, and an
unreachable store reported (not raised)."""

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import pytest

from dolphin.store import EXF_LATEST, FEATURES, MC_FOREWARNER_LATEST, SCAN_LATEST, SYSTEM_HEALTH, Record, iso_utc
from dolphin.adapters.sqlite_store import EmbeddedStore
from dolphin.watchdog import (HealthConfig, HealthInputs, check_health, collect_inputs, publish_health,
                              read_health)

NOW = datetime(2024, 3, 10, 12, 0, tzinfo=timezone.utc)
CFG = HealthConfig()
S, H = timedelta(seconds=1), timedelta(hours=1)


def healthy(**kw) -> HealthInputs:
    base = dict(store_reachable=True, latest_scan_ts=NOW - 60 * S, latest_daily_partition=date(2024, 3, 9),
                exf_ts=NOW - 2 * H, mc_ts=NOW - H, runtime_heartbeat_ts=NOW - 2 * S, now=NOW)
    base.update(kw)
    return HealthInputs(**base)


def test_all_ok_is_green():
    r = check_health(healthy())
    assert r.status == "GREEN" and r.failing == []
    assert [c.name for c in r.checks] == ["store", "scan_age_s", "daily_partition_age_days", "exf_age_h",
                                          "mc_age_h", "heartbeat_age_s"]


@pytest.mark.parametrize("field,name,limit", [
    ("latest_scan_ts", "scan_age_s", 15 * 60 * S),
    ("exf_ts", "exf_age_h", 26 * H),
    ("mc_ts", "mc_age_h", 6 * H),
    ("runtime_heartbeat_ts", "heartbeat_age_s", 30 * S),
])
def test_age_check_boundaries(field, name, limit):
    at = check_health(healthy(**{field: NOW - limit}))
    assert at.check(name).ok and at.status == "GREEN"  # limits are inclusive
    over = check_health(healthy(**{field: NOW - limit - timedelta(milliseconds=1)}))
    c = over.check(name)
    assert not c.ok and over.status == "DEGRADED" and over.failing == [name]
    assert c.value > c.limit and "old >" in c.detail
    missing = check_health(healthy(**{field: None}))
    assert not missing.check(name).ok and missing.check(name).value is None
    assert "missing" in missing.check(name).detail and missing.status == "DEGRADED"
    future = check_health(healthy(**{field: NOW + 10 * S}))
    assert not future.check(name).ok and "in the future" in future.check(name).detail
    assert check_health(healthy(**{field: NOW + S})).check(name).ok  # within the 2 s clock-skew tolerance


def test_daily_partition_boundary_with_grace():
    name = "daily_partition_age_days"
    assert check_health(healthy(latest_daily_partition=date(2024, 3, 10))).check(name).ok  # today
    assert check_health(healthy(latest_daily_partition=date(2024, 3, 9))).check(name).ok  # yesterday
    c = check_health(healthy(latest_daily_partition=date(2024, 3, 8))).check(name)
    assert not c.ok and c.value == 2 and c.limit == 1
    # just after midnight the day before yesterday still counts until the 2 h grace has passed
    early = NOW.replace(hour=1, minute=59, second=59)
    for ts, ok in ((early, True), (NOW.replace(hour=2, minute=0), False)):
        r = check_health(healthy(now=ts, latest_scan_ts=ts, exf_ts=ts, mc_ts=ts, runtime_heartbeat_ts=ts,
                                 latest_daily_partition=date(2024, 3, 8)))
        assert r.check(name).ok is ok, ts
    fut = check_health(healthy(latest_daily_partition=date(2024, 3, 11))).check(name)
    assert not fut.ok and "after today" in fut.detail
    assert not check_health(healthy(latest_daily_partition=None)).check(name).ok


def test_store_unreachable_is_reported_not_raised(tmp_path):
    store = EmbeddedStore(tmp_path / "features.sqlite")
    for f in tmp_path.glob("features.sqlite*"):
        f.unlink()  # the store's file is gone: every read raises StoreUnavailableError
    inp = collect_inputs(store, NOW, latest_daily_partition=date(2024, 3, 9), runtime_heartbeat_ts=NOW)
    r = check_health(inp)
    assert r.status == "DEGRADED"
    assert not r.check("store").ok and r.check("store").detail == "feature store unreachable"
    assert {"store", "scan_age_s", "exf_age_h", "mc_age_h"} <= set(r.failing)
    assert r.check("heartbeat_age_s").ok
    assert check_health(collect_inputs(None, NOW, latest_daily_partition=None, runtime_heartbeat_ts=None)) \
        .check("store").ok is False


def test_collect_from_store_publish_and_read_back(tmp_path):
    store = EmbeddedStore(tmp_path / "features.sqlite")
    store.put(FEATURES, SCAN_LATEST, Record({"vel_div": -0.01}, iso_utc(NOW - 20 * 60 * S)))  # 20 min: stale
    store.put(FEATURES, EXF_LATEST, Record({"fng": 40}, iso_utc(NOW - 3 * H)))
    store.put(FEATURES, MC_FOREWARNER_LATEST, Record({"status": "GREEN"}, iso_utc(NOW - 2 * H)))
    inp = collect_inputs(store, NOW, latest_daily_partition=date(2024, 3, 9), runtime_heartbeat_ts=NOW - S)
    assert inp.exf_ts == NOW - 3 * H and inp.mc_ts == NOW - 2 * H and inp.latest_scan_ts == NOW - 20 * 60 * S
    r = check_health(inp)
    assert r.status == "DEGRADED" and r.failing == ["scan_age_s"]
    assert r.check("scan_age_s").value == pytest.approx(1200.0)
    # a scan time from the scan files (caller) wins over the store's
    assert check_health(collect_inputs(store, NOW, latest_daily_partition=date(2024, 3, 9),
                                       runtime_heartbeat_ts=NOW - S, latest_scan_ts=NOW - S)).status == "GREEN"
    assert read_health(store) is None
    assert publish_health(store, r)
    got = read_health(store)
    assert got == r.to_record()
    assert got["timestamp"] == "2024-03-10T12:00:00.000Z" and got["status"] == "DEGRADED"
    assert got["checks"][1] == {"name": "scan_age_s", "ok": False, "value": pytest.approx(1200.0), "limit": 900.0,
                                "detail": r.check("scan_age_s").detail}
    # an older report never overwrites a newer one
    older = check_health(replace(inp, now=NOW - H, latest_scan_ts=NOW - H))
    assert not publish_health(store, older) and read_health(store)["status"] == "DEGRADED"
    newer = check_health(replace(inp, now=NOW + S, latest_scan_ts=NOW))
    assert publish_health(store, newer) and read_health(store)["status"] == "GREEN"
    assert store.keys(SYSTEM_HEALTH) == ["latest"]
    store.close()


def test_bad_health_inputs_rejected():
    with pytest.raises(ValueError, match="exf_ts must be a timezone-aware datetime"):
        healthy(exf_ts=datetime(2024, 3, 10))
    with pytest.raises(ValueError, match="latest_daily_partition must be a date"):
        healthy(latest_daily_partition=NOW)
    with pytest.raises(ValueError, match="store_reachable must be a bool"):
        healthy(store_reachable="yes")
    with pytest.raises(KeyError, match="no health check named"):
        check_health(healthy()).check("nope")
