"""Rehydration through Dagster on real data: the real assets publish every key into the embedded store (and keep
their records in the published-record log), the store is wiped as a member restart wipes Hazelcast, and
``store_rehydration_sensor`` -- ticked with a real sensor context -- puts every key back with the same content;
a newer value is kept; a store outage is a reported tick; a record produced while the store was down comes back
once it is up.
"""

import time

import pytest

import dagster as dg
from tests.support.dagster import dagster_env, failure_text

D = "2024-03-05"
D1 = "2024-03-06"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("dolphin_home")
    with dagster_env(home, unset=("DOLPHIN_WAREHOUSE", "DOLPHIN_FEATURE_STORE")):
        from dolphin.engine.state import EngineState
        from dolphin.ledger import CapitalLedger, DayRecord
        from dolphin.scanner import read_scans, write_scan_arrow
        from dolphin.timeutil import day_start_ms
        from dolphin_assets.definitions import ASSET_CHECKS, ASSETS, defs, resources
        from dolphin_assets.sensors.watchdog import watchdog_sensor

        instance = dg.DagsterInstance.get()
        res, assets = resources(), [*ASSETS, *ASSET_CHECKS]

        def mat(selection, day=None, run_config=None, res_=None):
            r = dg.materialize(assets, selection=selection, partition_key=day, resources=res_ or res,
                               instance=instance, run_config=run_config or {}, raise_on_error=False)
            assert r.success, failure_text(r)
            return r

        # every publishing asset, for real: scans + vol regime, ExF, EsoF, the daily ACB state of D
        mat(dg.AssetSelection.assets("market_bars", "eigen_scans", "vol_regime"), D)
        mat(dg.AssetSelection.assets("exf", "esof", "acb_state"), D)
        # the live path: three per-scan Arrow files of D -> scan_latest run, which steps acb_state per scan
        d0 = day_start_ms(D)
        day = read_scans(home / "scans", d0, d0 + 86_400_000 - 1)
        paths = [write_scan_arrow(day[i:i + 1], home / "scans") for i in range(3)]
        r = mat(dg.AssetSelection.assets("scan_latest"),
                run_config={"ops": {"scan_latest": {"config": {"path": str(paths[-1])}}}})
        assert r.asset_materializations_for_node("scan_latest")[0].metadata["acb_scans_applied"].value == 3
        mat(dg.AssetSelection.assets("mc_envelope"), run_config={"ops": {"mc_envelope": {"config": {
            "end_day": D, "lookback_days": 20, "n_variants": 2, "n_paths": 1000}}}})
        # two BLUE days in the ledger (the engine day itself is test_dagster_assets' business), published by
        # the real capital_ledger_blue
        book = CapitalLedger(home / "ledger" / "ledger.sqlite")
        s0 = EngineState.fresh(10_000.0).to_dict()
        book.record_day("BLUE", "2024-03-04", DayRecord(10_000.0, 10_250.0, 10_250.0, s0, s0, [{"pnl": 250.0}], 288),
                        start_day="2024-03-04")
        book.record_day("BLUE", D, DayRecord(10_250.0, 10_100.0, 10_100.0, s0, s0, [{"pnl": -150.0}], 288),
                        start_day="2024-03-04")
        for d in ("2024-03-04", D):
            mat(dg.AssetSelection.assets("capital_ledger_blue"), d)
        # the watchdog's report
        watchdog_sensor(dg.build_sensor_context(definitions=defs, instance=instance, resources=defs.resources))

        def tick(resources_=None, cursor=None):
            ctx = dg.build_sensor_context(definitions=defs, cursor=cursor, instance=instance,
                                          resources=resources_ or defs.resources)
            from dolphin_assets.sensors.rehydrate import store_rehydration_sensor

            return store_rehydration_sensor(ctx)

        yield {"home": home, "instance": instance, "tick": tick, "mat": mat, "res": res}
        instance.dispose()


def _store(world, path=None):
    from dolphin.adapters.sqlite_store import EmbeddedStore

    return EmbeddedStore(path or world["home"] / "store" / "features.sqlite")


MAPS = ("DOLPHIN_FEATURES", "DOLPHIN_SYSTEM_HEALTH", "DOLPHIN_STATE_BLUE", "DOLPHIN_PNL_BLUE")


def _snapshot(store):
    return {(m, k): store.get(m, k) for m in MAPS for k in store.keys(m)}


def _wipe(store):
    for m in MAPS:
        for k in store.keys(m):
            store.delete(m, k)


def test_a_wiped_store_comes_back_with_the_same_records(world):
    from dolphin.store import ACB_STATE, FEATURES, SCAN_LATEST

    with _store(world) as s:
        before = _snapshot(s)
        assert set(k for _, k in before) == {"scan_latest", "exf_latest", "esof_latest", "acb_state", "vol_regime",
                                             "mc_forewarner_latest", "latest", "2024-03-04", D}
        assert len(before) == 10
        assert before[(FEATURES, ACB_STATE)].value["source"] == "scan"  # the per-scan state, not only the daily one
        assert before[(FEATURES, SCAN_LATEST)].value["source"] == f"eigen_scans {D}"  # later than the Arrow files
        _wipe(s)
        assert _snapshot(s) == {}
        t0 = time.perf_counter()
        out = world["tick"]()
        took = time.perf_counter() - t0
        msg = out.skip_reason.skip_message
        assert msg.startswith("10 expected key(s): 0 present; restored 10: DOLPHIN_FEATURES/scan_latest, "), msg
        assert "missing" not in msg, msg
        assert _snapshot(s) == before
    # run-less record: one observation per restored key on the asset that publishes it
    seen = {}
    for ev in out.asset_events:
        world["instance"].report_runless_asset_event(ev)
        seen.setdefault(ev.asset_key.to_user_string(), []).append(ev.metadata["rehydrated"].value)
    assert seen == {"scan_latest": ["DOLPHIN_FEATURES/scan_latest"], "exf": ["DOLPHIN_FEATURES/exf_latest"],
                    "esof": ["DOLPHIN_FEATURES/esof_latest"], "acb_state": ["DOLPHIN_FEATURES/acb_state"],
                    "vol_regime": ["DOLPHIN_FEATURES/vol_regime"],
                    "mc_envelope": ["DOLPHIN_FEATURES/mc_forewarner_latest"],
                    "capital_ledger_blue": ["DOLPHIN_STATE_BLUE/latest", "DOLPHIN_PNL_BLUE/2024-03-04",
                                            f"DOLPHIN_PNL_BLUE/{D}"]}
    obs = world["instance"].fetch_observations(dg.AssetKey("exf"), limit=1).records
    assert obs and obs[0].asset_observation.metadata["rehydrated"].value == "DOLPHIN_FEATURES/exf_latest"
    # the next tick finds everything present and writes nothing
    again = world["tick"](cursor=out.cursor)
    assert again.skip_reason.skip_message.startswith("10 expected key(s): 10 present ("), again.skip_reason
    assert not again.asset_events and again.cursor == out.cursor
    print(f"\nrehydration tick restoring 10 keys: {took:.2f} s")


def test_a_newer_value_in_the_store_is_kept(world):
    from dolphin.store import EXF_LATEST, FEATURES, Record

    with _store(world) as s:
        before = _snapshot(s)
        _wipe(s)
        newer = Record({**before[(FEATURES, EXF_LATEST)].value, "non_null_count": 1}, "2024-03-06T23:00:00.000Z")
        s.put(FEATURES, EXF_LATEST, newer)  # today's exf run was first
        msg = world["tick"]().skip_reason.skip_message
        assert msg.startswith("10 expected key(s): 1 present; restored 9: "), msg
        after = _snapshot(s)
        assert after[(FEATURES, EXF_LATEST)] == newer
        assert {k: v for k, v in after.items() if k != (FEATURES, EXF_LATEST)} == \
               {k: v for k, v in before.items() if k != (FEATURES, EXF_LATEST)}


def test_a_store_outage_is_a_reported_tick(world, tmp_path):
    from dolphin_assets.definitions import defs
    from dolphin_assets.resources.feature_store import FeatureStoreResource

    bad = tmp_path / "store.sqlite"
    bad.write_bytes(b"not a database" * 500)
    out = world["tick"]({**defs.resources, "feature_store": FeatureStoreResource(kind="embedded", path=str(bad))})
    assert out.skip_reason.skip_message.startswith("feature store unavailable, nothing checked: "), out.skip_reason
    assert not out.asset_events


def test_a_record_produced_while_the_store_was_down_comes_back_when_it_is_up(world, tmp_path):
    """esof for D+1 runs while the store is down (store_gap); the log kept the record; a store that comes back
    empty gets it, not D's."""
    from dolphin.esof import esof_record
    from dolphin.timeutil import day_start_ms
    from dolphin.store import ESOF_LATEST, FEATURES
    from dolphin_assets.definitions import defs, resources
    from dolphin_assets.resources.feature_store import FeatureStoreResource

    bad = tmp_path / "down.sqlite"
    bad.write_bytes(b"not a database" * 500)
    r = world["mat"](dg.AssetSelection.assets("esof"), D1,
                     res_=resources(feature_store=FeatureStoreResource(kind="embedded", path=str(bad))))
    meta = r.asset_materializations_for_node("esof")[0].metadata
    assert meta["published_esof_latest"].value is False and meta["store_gap"].value.startswith("feature store")
    fresh = tmp_path / "fresh.sqlite"
    out = world["tick"]({**defs.resources, "feature_store": FeatureStoreResource(kind="embedded", path=str(fresh))})
    assert "DOLPHIN_FEATURES/esof_latest" in out.skip_reason.skip_message
    want = esof_record(day_start_ms(D1))
    with _store(world, fresh) as s:
        got = s.get(FEATURES, ESOF_LATEST)
    assert got.timestamp == want.pop("timestamp") and got.value == want


def test_the_sensor_is_in_the_definitions_running_every_30_s():
    from dolphin_assets.definitions import defs

    s = defs.get_sensor_def("store_rehydration_sensor")
    assert s.minimum_interval_seconds == 30 and s.default_status == dg.DefaultSensorStatus.RUNNING
    assert not s.targets  # run-less: it starts no job
