"""The scan-file sensor on real Arrow files (written by write_scan_arrow from real scans): new files, partial
files, corrupt files, same-name rewrites, a scanner restart with lower counters; and the run it triggers."""

import json
import os
import shutil
import time

import pytest

import dagster as dg
from dolphin.scanner import write_scan_arrow
from dolphin.timeutil import parse_time
from tests.support.data import twelve_scans

NOW_NS = time.time_ns()


@pytest.fixture(scope="module")
def scans():
    return twelve_scans(parse_time("2024-02-01"))


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("DOLPHIN_HOME", str(tmp_path))
    from dolphin_assets.definitions import defs
    from dolphin_assets.sensors.scan_files import scan_files_sensor

    with dg.instance_for_test() as instance:
        state = {"cursor": None}

        def tick():
            ctx = dg.build_sensor_context(definitions=defs, cursor=state["cursor"], instance=instance,
                                           resources=defs.resources)
            res = scan_files_sensor(ctx)
            state["cursor"] = res.cursor
            return res

        yield {"dir": tmp_path / "scans", "tick": tick, "instance": instance, "state": state}


def _at(path, seconds_ago):
    """Set mtime explicitly: file times are coarse (a few ms), the tests must not depend on write speed."""
    ns = NOW_NS - int(seconds_ago * 1e9)
    os.utime(path, ns=(ns, ns))
    return path


def _runs(res):
    return list(res.run_requests or [])


def _skip(res):
    return res.skip_reason.skip_message if res.skip_reason else ""


def test_new_files_trigger_once_newest_published(env, scans):
    p1 = _at(write_scan_arrow(scans[0], env["dir"]), 100)
    p2 = _at(write_scan_arrow(scans[1], env["dir"]), 90)
    (req,) = _runs(env["tick"]())
    assert req.run_config["ops"]["scan_latest"]["config"]["path"] == str(p2)
    assert req.tags["dolphin/new_scan_files"] == "2" and req.run_key.endswith(f"@{p2.stat().st_mtime_ns}")
    again = env["tick"]()
    assert not _runs(again) and "no new complete scan file" in _skip(again)
    p3 = _at(write_scan_arrow(scans[2], env["dir"]), 80)
    (req,) = _runs(env["tick"]())
    assert req.tags["dolphin/scan_file"] == f"{p3.parent.name}/{p3.name}" and req.tags["dolphin/new_scan_files"] == "1"
    assert p1.exists()


def test_partial_files_wait_until_complete(env, scans):
    good = write_scan_arrow(scans[3], env["dir"])
    data = good.read_bytes()
    good.unlink()
    day = good.parent
    # the atomic writer's temporary name is never a candidate, even when complete
    tmp = day / f".{good.name}.4242.tmp"
    tmp.write_bytes(data)
    partial = day / good.name
    partial.write_bytes(data[: len(data) // 2])  # an in-place writer halfway through: no Arrow footer yet
    res = env["tick"]()
    assert not _runs(res) and "1 partial file(s) waiting" in _skip(res)
    assert list(json.loads(env["state"]["cursor"])["pending"]) == [f"{day.name}/{good.name}"]
    older = _at(write_scan_arrow(scans[4], env["dir"]), 300)  # complete, but older than the partial one
    (req,) = _runs(env["tick"]())
    assert req.tags["dolphin/scan_file"].endswith(older.name)
    partial.write_bytes(data)  # the writer finishes
    (req,) = _runs(env["tick"]())
    assert req.tags["dolphin/scan_file"].endswith(good.name)
    assert not _runs(env["tick"]())


def test_corrupt_file_is_reported_and_does_not_block(env, scans, capfd):
    day = write_scan_arrow(scans[5], env["dir"]).parent
    (day / f"scan_{int(scans[5].timestamp[0])}.arrow").unlink()
    bad = day / "scan_0000000000001.arrow"
    bad.write_bytes(b"ARROW1\x00\x00 this is not an arrow file")
    _at(bad, 120)  # untouched for longer than the settle time: corrupt, not partial
    later = _at(write_scan_arrow(scans[6], env["dir"]), 60)
    res = env["tick"]()
    (req,) = _runs(res)
    assert req.tags["dolphin/scan_file"].endswith(later.name)
    assert req.tags["dolphin/corrupt_skipped"] == f"{day.name}/{bad.name}"
    assert f"corrupt scan file skipped: {day.name}/{bad.name}: ArrowInvalid" in capfd.readouterr().err
    res = env["tick"]()
    assert not _runs(res) and "corrupt file" not in _skip(res)  # reported once (the folder name may say "corrupt")
    only_bad = day / "scan_0000000000002.arrow"
    only_bad.write_bytes(b"garbage")
    _at(only_bad, 45)  # newer than the cursor (60 s ago), older than the settle time
    res = env["tick"]()
    assert not _runs(res) and f"corrupt file(s) skipped: {day.name}/{only_bad.name}" in _skip(res)


def test_same_name_rewrite_is_picked_up_once(env, scans):
    p = _at(write_scan_arrow(scans[7], env["dir"]), 50)
    assert len(_runs(env["tick"]())) == 1
    p2 = _at(write_scan_arrow(scans[7], env["dir"]), 40)  # rewritten (atomic replace), new mtime
    assert p2 == p
    (req,) = _runs(env["tick"]())
    assert req.tags["dolphin/scan_file"].endswith(p.name)
    assert not _runs(env["tick"]())


def test_scanner_restart_with_lower_counters(env, scans, tmp_path):
    """NG6-style names scan_<counter>.arrow: after a restart the counter starts again from 1."""
    day = env["dir"] / "2024-02-01"
    day.mkdir(parents=True)
    src = tmp_path / "src"

    def ng6(i, counter, seconds_ago):
        f = write_scan_arrow(scans[i], src)
        return _at(shutil.copyfile(f, day / f"scan_{counter:06d}.arrow"), seconds_ago)

    ng6(8, 500, 30)
    ng6(9, 501, 25)
    (req,) = _runs(env["tick"]())
    assert req.tags["dolphin/scan_file"].endswith("scan_000501.arrow")
    ng6(10, 1, 20)  # restarted scanner: lower counter, newer file
    (req,) = _runs(env["tick"]())
    assert req.tags["dolphin/scan_file"].endswith("scan_000001.arrow")
    # two files sharing one mtime, seen in different polls, are both picked up
    a = ng6(11, 2, 10)
    _runs(env["tick"]())
    b = ng6(11, 3, 10)
    assert a.stat().st_mtime_ns == b.stat().st_mtime_ns
    (req,) = _runs(env["tick"]())
    assert req.tags["dolphin/scan_file"].endswith("scan_000003.arrow")


def test_triggered_run_publishes_scan_latest(env, scans):
    from dolphin.store import FEATURES, SCAN_LATEST
    from dolphin.adapters.sqlite_store import EmbeddedStore
    from dolphin_assets.definitions import ASSETS, resources

    _at(write_scan_arrow(scans[10], env["dir"]), 30)
    newest = _at(write_scan_arrow(scans[11], env["dir"]), 20)
    (req,) = _runs(env["tick"]())
    r = dg.materialize(ASSETS, selection=["scan_latest"], run_config=req.run_config, resources=resources(),
                       instance=env["instance"], tags=req.tags)
    assert r.success
    rec = EmbeddedStore(env["dir"].parent / "store" / "features.sqlite").get(FEATURES, SCAN_LATEST)
    assert rec.value["scan_time_ms"] == int(scans.timestamp[11]) and rec.value["source"] == str(newest)
    assert rec.value["vel_div"] == float(scans.vel_div[11]) and rec.value["asset_count"] == 50
    # an older scan file (e.g. re-sent) never overwrites the newer published scan
    old = write_scan_arrow(scans[10], env["dir"])
    r = dg.materialize(ASSETS, selection=["scan_latest"], resources=resources(), instance=env["instance"],
                       run_config={"ops": {"scan_latest": {"config": {"path": str(old)}}}})
    assert r.success
    mat = r.get_asset_materialization_events()[0].event_specific_data.materialization
    assert mat.metadata["published"].value is False
    assert EmbeddedStore(env["dir"].parent / "store" / "features.sqlite").get(FEATURES, SCAN_LATEST) == rec
