"""The risk layer in Dagster on real data (spot-5m-2024, ../shared/data/exf): exf / esof / acb_state / mc_envelope
materialised in-process with the embedded store and the warehouse in a temporary DOLPHIN_HOME; the ExF check on a
real day and on an empty exf folder; the per-scan ACB update through the scan sensor's run (compare-and-set); the
watchdog sensor GREEN / DEGRADED / store down; the schedules; `dolphin status` showing health.
"""

import os
import threading
import time
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

import dagster as dg
from tests.support.dagster import dagster_env, failure_text

D = "2024-03-05"  # the ACB / ExF day
HIST = 12  # days of scans before D written for the ACB's regime window (>= regime_min_days = 10)
MC_END = "2024-03-15"  # 60 days + the engine history fit in the dev set (from 2024-01-01)


def _ms(day: str) -> int:
    from dolphin.timeutil import day_start_ms

    return day_start_ms(day)


def _day(day: str, k: int) -> str:
    return (date.fromisoformat(day) + timedelta(days=k)).isoformat()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("dolphin_home")
    with dagster_env(home, unset=("DOLPHIN_WAREHOUSE", "DOLPHIN_FEATURE_STORE")):
        from dolphin_assets.definitions import ASSET_CHECKS, ASSETS, resources

        instance = dg.DagsterInstance.get()
        w = {"home": home, "instance": instance, "res": resources(), "assets": [*ASSETS, *ASSET_CHECKS],
             "store_path": home / "store" / "features.sqlite"}

        def mat(day, selection, res=None, run_config=None):
            return dg.materialize(w["assets"], selection=selection, partition_key=day, resources=res or w["res"],
                                  instance=instance, run_config=run_config or {}, raise_on_error=False)

        w["mat"] = mat
        yield w
        instance.dispose()


def _store(world):
    from dolphin.adapters.sqlite_store import EmbeddedStore

    return EmbeddedStore(world["store_path"])


def _meta(result, asset):
    for m in result.get_asset_materialization_events():
        if m.asset_key.to_user_string() == asset:
            return m.event_specific_data.materialization.metadata
    raise KeyError(asset)


def _checks(result):
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _sql(q):
    from dolphin.adapters.duckdb_sql import query

    cols, rows = query(q)
    return pd.DataFrame(rows, columns=cols)


@pytest.fixture(scope="module")
def exf_days(world):
    """exf materialised for D-1 then D (real recorded history); also D-3 afterwards (an older day)."""
    out = {}
    for day in (_day(D, -1), D, _day(D, -3)):
        r = world["mat"](day, dg.AssetSelection.assets("exf"))
        assert r.success, failure_text(r)
        out[day] = r
    return out


# ---------------------------------------------------------------- ExF


def test_exf_publishes_the_recorded_snapshot_at_23_utc(world, exf_days):
    from dolphin.exf.history import ExfHistory
    from dolphin.store import EXF_LATEST, FEATURES

    want = ExfHistory.load().as_of(_ms(D) + 23 * 3_600_000)
    assert want.non_null_count >= 4
    rec = _store(world).get(FEATURES, EXF_LATEST)
    # D-3 ran last but is older: the stored record stays D's (publish_if_newer)
    assert rec.timestamp == f"{D}T23:00:00.000Z" and rec.value == want.to_store_record().value
    assert rec.value["dvol_btc"] is not None
    meta = _meta(exf_days[D], "exf")
    assert meta["non_null_count"].value == want.non_null_count and meta["published_exf_latest"].value is True
    assert _meta(exf_days[_day(D, -3)], "exf")["published_exf_latest"].value is False
    missing = meta["missing"].value
    for name, why in want.reasons.items():
        assert f"- {name}: {why}" in missing
    rows = _sql("select * from dolphin.exf order by day")
    assert list(rows["day"].dt.strftime("%Y-%m-%d")) == [_day(D, -3), _day(D, -1), D]
    row = rows[rows["day"] == pd.Timestamp(D)].iloc[0]
    assert row["non_null_count"] == want.non_null_count
    for n, v in want.values.items():
        assert (pd.isna(row[n]) if v is None else row[n] == v), n


def test_exf_check_passes_on_a_real_day(exf_days):
    (c,) = _checks(exf_days[D]).values()
    assert c.passed and c.metadata["non_null"].value >= 4


def test_exf_check_fails_with_an_empty_exf_folder(world, tmp_path):
    from dolphin_assets.definitions import resources
    from dolphin_assets.resources.exf_source import ExfSource
    from dolphin_assets.resources.feature_store import FeatureStoreResource

    (tmp_path / "exf").mkdir()
    res = resources(exf_source=ExfSource(root=str(tmp_path / "exf")),
                    feature_store=FeatureStoreResource(kind="embedded", path=str(tmp_path / "s.sqlite")))
    r = world["mat"](_day(D, -2), dg.AssetSelection.assets("exf"), res=res)
    assert r.success, failure_text(r)  # the asset records the empty day; the check says it is bad
    (c,) = _checks(r).values()
    assert not c.passed and c.metadata["non_null"].value == 0 and c.severity == dg.AssetCheckSeverity.ERROR
    assert str(tmp_path / "exf") in _meta(r, "exf")["missing"].value


def test_exf_coverage_rule_below_four_fails():
    from dolphin.exf.indicators import INDICATOR_NAMES
    from dolphin_assets.checks import exf_coverage

    row = {n: np.nan for n in INDICATOR_NAMES}
    for n in INDICATOR_NAMES[:3]:
        row[n] = 1.0
    assert not exf_coverage(pd.DataFrame([row]), 4)[0]
    row[INDICATOR_NAMES[3]] = 2.0
    ok, meta = exf_coverage(pd.DataFrame([row]), 4)
    assert ok and meta["non_null"] == 4


def test_live_exf_frame_from_the_warehouse_serves_the_next_day(world, exf_days):
    """Live mode has no recorded history: the ACB reads the 23:00 fetches the exf asset left in the warehouse,
    day d's row serving d+1 (fetched before that midnight, so nothing later than the ACB's as-of)."""
    from dolphin.exf.history import ExfHistory
    from dolphin_assets.resources.exf_source import ExfSource

    f = ExfSource(kind="live").daily_frame(D, _day(D, 1))
    prev = ExfHistory.load().as_of(_ms(D) - 3_600_000)  # D-1 23:00
    row = f.loc[pd.Timestamp(D, tz="UTC")]
    for n, v in prev.values.items():
        assert (np.isnan(row[n]) if v is None else row[n] == v), n
    cur = ExfHistory.load().as_of(_ms(D) + 23 * 3_600_000)
    assert f.loc[pd.Timestamp(_day(D, 1), tz="UTC"), "fear_greed"] == cur.values["fear_greed"]


def test_live_exf_source_with_unreachable_sources_gives_reasons_not_a_crash():
    from dolphin.adapters.exf_http import ExfFetchWarning
    from dolphin_assets.resources.exf_source import ExfSource

    url = "http://127.0.0.1:9"  # discard port: connection refused at once
    src = ExfSource(kind="live", alternative_me_url=url, deribit_url=url, binance_fapi_url=url, fred_url=url,
                    retries=0, connect_timeout=0.5, read_timeout=0.5)
    with pytest.warns(ExfFetchWarning):
        snap = src.snapshot(0)
    assert snap.values["fear_greed"] is None and url in snap.reasons["fear_greed"]
    assert snap.values["dvol_btc"] is None and url in snap.reasons["dvol_btc"]


def test_live_exf_refuses_a_past_partition(world):
    from dolphin_assets.definitions import resources
    from dolphin_assets.resources.exf_source import ExfSource

    r = world["mat"](D, dg.AssetSelection.assets("exf"), res=resources(exf_source=ExfSource(kind="live")))
    assert not r.success and "only serves today's partition" in failure_text(r)


# ---------------------------------------------------------------- EsoF


def test_esof_publishes_the_day_calendar(world):
    from dolphin.esof import esof_record
    from dolphin.store import ESOF_LATEST, FEATURES

    r = world["mat"](D, dg.AssetSelection.assets("esof"))
    assert r.success, failure_text(r)
    rec = _store(world).get(FEATURES, ESOF_LATEST)
    want = esof_record(_ms(D))
    assert rec.timestamp == want.pop("timestamp") and rec.value == want
    assert rec.value["weekday_name"] == "Tuesday"


# ---------------------------------------------------------------- ACB


@pytest.fixture(scope="module")
def acb_scans():
    """Real scans of D-HIST .. D+1 (one scanner run; the Parquet files are what eigen_scans writes)."""
    from dolphin.data import load_panel
    from dolphin.scanner import WARMUP_BARS, scan

    start = _ms(_day(D, -HIST))
    p = load_panel("spot-5m-2024", start_ms=start, end_ms=_ms(_day(D, 2)) - 1, warmup_bars=WARMUP_BARS)
    return scan(p)


def _day_slice(scans, lo_day, hi_day_excl):
    ot = np.asarray(scans.open_time)
    return scans[int(np.searchsorted(ot, _ms(lo_day))):int(np.searchsorted(ot, _ms(hi_day_excl)))]


@pytest.fixture(scope="module")
def acb_run(world, acb_scans, exf_days):
    from dolphin.scanner import write_day_parquet

    scan_dir = world["home"] / "scans"
    write_day_parquet(_day_slice(acb_scans, _day(D, -HIST), D), scan_dir)  # the past only
    first = world["mat"](D, dg.AssetSelection.assets("acb_state"))
    assert first.success, failure_text(first)
    from dolphin.acb import read_acb

    stored = read_acb(_store(world))
    write_day_parquet(_day_slice(acb_scans, D, _day(D, 2)), scan_dir)  # D and D+1 appear (the future of D 00:00)
    again = world["mat"](D, dg.AssetSelection.assets("acb_state"))
    assert again.success, failure_text(again)
    return {"first": first, "again": again, "stored": stored}


def test_acb_state_equals_the_backtest_daily_state(world, acb_run, acb_scans):
    """The asset's state for D is the one dolphin.acb.daily_states gives a backtest over the same scans + ExF."""
    from dolphin.acb import daily_states
    from dolphin.exf.history import ExfHistory

    frame = ExfHistory.load().daily_frame(_day(D, -HIST - 40), _day(D, 1))
    ref = {s.last_date: s for s in daily_states(_day_slice(acb_scans, _day(D, -HIST), _day(D, 1)), frame)}[D]
    got = acb_run["stored"]
    assert got == ref
    assert got.source == "daily" and got.regime_days >= 10 and got.exf_coverage > 0.5
    assert "w750" not in got.missing  # >= regime_min_days of real scans behind it
    meta = _meta(acb_run["first"], "acb_state")
    assert meta["boost"].value == ref.boost and meta["published_acb_state"].value is True
    row = _sql(f"select * from dolphin.acb_state where day = '{D}'")
    assert len(row) == 1 and row["boost"][0] == ref.boost and row["beta"][0] == ref.beta


def test_acb_state_ignores_scans_at_or_after_its_day(acb_run):
    """Truncation: adding the scans of D and D+1 does not change D's state (as of D 00:00)."""
    m1, m2 = _meta(acb_run["first"], "acb_state"), _meta(acb_run["again"], "acb_state")
    for k in ("boost", "beta", "exf_coverage", "regime_days"):
        assert m1[k].value == m2[k].value, k
    assert m2["published_acb_state"].value is False  # same (updated_at, day): nothing newer to store


def test_scan_sensor_run_updates_acb_state_by_compare_and_set(world, acb_run, acb_scans):
    from dolphin.acb import acb_on_scan, read_acb
    from dolphin.scanner import write_scan_arrow
    from dolphin_assets.definitions import defs
    from dolphin_assets.sensors.scan_files import scan_files_sensor

    day_scans = _day_slice(acb_scans, D, _day(D, 1))
    now_ns = time.time_ns()
    paths = []
    for i in range(4):
        p = write_scan_arrow(day_scans[i], world["home"] / "scans")
        os.utime(p, ns=(now_ns - (100 - i) * 10**9,) * 2)
        paths.append(p)
    ctx = dg.build_sensor_context(definitions=defs, cursor=None, instance=world["instance"], resources=defs.resources)
    (req,) = scan_files_sensor(ctx).run_requests
    assert req.run_config["ops"]["scan_latest"]["config"]["path"] == str(paths[-1])
    r = dg.materialize(world["assets"], selection=dg.AssetSelection.assets("scan_latest"), resources=world["res"],
                       instance=world["instance"], run_config=req.run_config, raise_on_error=False)
    assert r.success, failure_text(r)
    # the run publishes only the newest file, but the ACB steps through all four scans, in order
    want = acb_run["stored"]
    k = day_scans.window_index(750)
    for i in range(4):
        want = acb_on_scan(want, float(day_scans.velocity[i, k]), int(day_scans.timestamp[i]))
    got = read_acb(_store(world))
    assert got == want and got.source == "scan" and got.updated_at == int(day_scans.timestamp[3])
    assert _meta(r, "scan_latest")["acb_scans_applied"].value == 4


def test_concurrent_acb_updates_lose_no_step(world, acb_run, acb_scans, tmp_path):
    """Two updaters racing over the same store (one up to scan 2, one up to scan 3): compare-and-set on the
    record read means the result is the sequential one, whatever the interleaving."""
    from dolphin.acb import acb_on_scan, publish_acb, read_acb
    from dolphin.scanner import write_scan_arrow
    from dolphin.adapters.sqlite_store import EmbeddedStore
    from dolphin.scan_files import apply_acb_scans

    day_scans = _day_slice(acb_scans, D, _day(D, 1))
    sdir = tmp_path / "scans"
    for i in range(3):
        write_scan_arrow(day_scans[i], sdir)
    k = day_scans.window_index(750)
    want = acb_run["stored"]
    for i in range(3):
        want = acb_on_scan(want, float(day_scans.velocity[i, k]), int(day_scans.timestamp[i]))
    for trial in range(4):
        path = tmp_path / f"race{trial}.sqlite"
        with EmbeddedStore(path) as s:
            publish_acb(s, acb_run["stored"])
        barrier = threading.Barrier(2)
        errors = []

        def worker(upto):
            try:
                with EmbeddedStore(path) as s:
                    barrier.wait()
                    apply_acb_scans(s, sdir, upto)
            except Exception as e:  # surfaced below
                errors.append(e)

        ts = [threading.Thread(target=worker, args=(int(day_scans.timestamp[j]),)) for j in (1, 2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors, errors
        with EmbeddedStore(path) as s:
            assert read_acb(s) == want, trial


# ---------------------------------------------------------------- MC envelope


def test_mc_envelope_publishes_a_valid_status(world):
    from dolphin.data import load_panel
    from dolphin.engine.config import MC_NAMES
    from dolphin.mc.forewarner import MCConfig, MCEnvelope, forewarn
    from dolphin.mc.variants import engine_daily_variants, history_bars
    from dolphin.scanner import scan
    from dolphin.store import FEATURES, MC_FOREWARNER_LATEST
    from dolphin_assets.settings import ENGINE_CONFIG

    t0 = time.perf_counter()
    r = dg.materialize(world["assets"], selection=dg.AssetSelection.assets("mc_envelope"), resources=world["res"],
                       instance=world["instance"], raise_on_error=False,
                       run_config={"ops": {"mc_envelope": {"config": {"end_day": MC_END}}}})
    took = time.perf_counter() - t0
    assert r.success, failure_text(r)
    rec = _store(world).get(FEATURES, MC_FOREWARNER_LATEST)
    env = MCEnvelope.from_record(rec)
    assert env.status in MC_NAMES and env.n_days == 60 and env.n_variants == 8 and env.n_paths == 2000
    assert rec.timestamp == f"{MC_END}T00:00:00.000Z" and rec.value["window_start"] == _day(MC_END, -60)
    meta = _meta(r, "mc_envelope")
    assert meta["status"].value == env.status and meta["catastrophic_prob"].value == env.catastrophic_prob
    assert meta["envelope_score"].value == env.envelope_score
    # the same numbers from the pure functions (the asset adds nothing but I/O)
    end = _ms(MC_END)
    p = load_panel("spot-5m-2024", start_ms=end - 60 * 86_400_000, end_ms=end - 1,
                   warmup_bars=history_bars(ENGINE_CONFIG))
    m, names = engine_daily_variants(p, scan(p, int(p.open_time[0])), ENGINE_CONFIG, end_day=MC_END, n_variants=8,
                                     seed=20240601)
    ref = forewarn(m, MCConfig(seed=20240601), as_of=end, variant_names=names)
    assert ref.to_record() == env.to_record()
    print(f"\nmc_envelope: {env.status} p={env.catastrophic_prob:.4f} score={env.envelope_score:.3f} "
          f"({took:.1f} s)")


# ---------------------------------------------------------------- watchdog


@pytest.fixture
def wd(world, tmp_path):
    """A watchdog over its own store file and ledger, ticking with a real sensor context."""
    from dolphin_assets.definitions import defs
    from dolphin_assets.resources.feature_store import FeatureStoreResource
    from dolphin_assets.resources.ledger import Ledger
    from dolphin_assets.sensors.watchdog import watchdog_sensor

    store_path = tmp_path / "store.sqlite"
    res = {**defs.resources, "feature_store": FeatureStoreResource(kind="embedded", path=str(store_path)),
           "ledger": Ledger(path=str(tmp_path / "ledger.sqlite"))}
    state = {"cursor": None}

    def tick():
        ctx = dg.build_sensor_context(definitions=defs, cursor=state["cursor"], instance=world["instance"],
                                      resources=res)
        out = watchdog_sensor(ctx)
        state["cursor"] = out.cursor
        return out.skip_reason.skip_message

    return {"tick": tick, "store_path": store_path, "ledger_path": tmp_path / "ledger.sqlite"}


def _fresh_world(store_path, ledger_path, *, mc_age_h=1.0):
    """Everything the watchdog checks, fresh: scan 60 s, ExF 2 h, MC ``mc_age_h``, heartbeat 5 s, yesterday's
    ledger day."""
    from dolphin.engine.state import EngineState
    from dolphin.ledger import CapitalLedger, DayRecord
    from dolphin.store import EXF_LATEST, FEATURES, MC_FOREWARNER_LATEST, SCAN_LATEST, SYSTEM_HEALTH, Record, iso_utc
    from dolphin.adapters.sqlite_store import EmbeddedStore

    now = int(time.time() * 1000)
    with EmbeddedStore(store_path) as s:
        s.put(FEATURES, SCAN_LATEST, Record({"scan_time_ms": now - 60_000}, iso_utc(now - 60_000)))
        s.put(FEATURES, EXF_LATEST, Record({"non_null_count": 21}, iso_utc(now - 2 * 3_600_000)))
        s.put(FEATURES, MC_FOREWARNER_LATEST, Record({"status": "GREEN"}, iso_utc(now - int(mc_age_h * 3_600_000))))
        s.put(SYSTEM_HEALTH, "runtime_heartbeat", Record({"source": "runtime"}, iso_utc(now - 5_000)))
    if not ledger_path.exists():
        y = (datetime.now(timezone.utc).date() - timedelta(days=1)).isoformat()
        s0 = EngineState.fresh(10_000.0).to_dict()
        CapitalLedger(ledger_path).record_day("BLUE", y, DayRecord(10_000.0, 10_100.0, 10_100.0, s0, s0, [], 288),
                                              start_day=y)


def test_watchdog_store_down_is_degraded_then_shown_once_back(wd):
    from dolphin.adapters.sqlite_store import EmbeddedStore
    from dolphin.watchdog import read_health

    wd["store_path"].write_bytes(b"not a sqlite file" * 64)
    msg = wd["tick"]()
    assert msg.startswith("DEGRADED") and "store: feature store unreachable" in msg
    assert "NOT published (store unavailable" in msg
    wd["store_path"].unlink()
    _fresh_world(wd["store_path"], wd["ledger_path"])
    msg = wd["tick"]()
    assert msg.startswith("GREEN") and msg.endswith("| published"), msg
    with EmbeddedStore(wd["store_path"]) as s:
        h = read_health(s)
    assert h["status"] == "GREEN" and h["failing"] == []
    (missed,) = h["unpublished"]  # the outage's report, kept in the cursor until the store came back
    assert missed["status"] == "DEGRADED" and "store" in missed["failing"]


def test_watchdog_green_vs_degraded(wd):
    from dolphin.adapters.sqlite_store import EmbeddedStore
    from dolphin.watchdog import read_health

    _fresh_world(wd["store_path"], wd["ledger_path"])
    assert wd["tick"]().startswith("GREEN")
    time.sleep(0.01)  # the next report must be newer than the stored one
    _fresh_world(wd["store_path"], wd["ledger_path"], mc_age_h=7.0)  # MC older than 6 h
    msg = wd["tick"]()
    assert msg.startswith("DEGRADED: mc_age_h:") and msg.endswith("| published"), msg
    with EmbeddedStore(wd["store_path"]) as s:
        h = read_health(s)
    assert h["status"] == "DEGRADED" and h["failing"] == ["mc_age_h"] and h["unpublished"] == []
    assert "capital ledger" in h["latest_daily_partition_from"]


def test_watchdog_without_ledger_or_runtime_is_degraded(wd):
    msg = wd["tick"]()  # empty store: nothing published yet
    for name in ("scan_age_s", "daily_partition_age_days", "exf_age_h", "mc_age_h", "heartbeat_age_s"):
        assert f"{name}:" in msg, name
    assert "store:" not in msg  # reachable


# ---------------------------------------------------------------- schedules, definitions, status


def test_schedules_target_the_current_day_and_skip_outside_the_partitions():
    from dolphin_assets.definitions import defs
    from dolphin_assets.schedules import acb_day_schedule, exf_schedule, mc_envelope_schedule

    def ctx(*a):
        return dg.build_schedule_context(scheduled_execution_time=datetime(*a, tzinfo=timezone.utc))

    req = exf_schedule(ctx(2024, 3, 5, 23, 0))
    assert isinstance(req, dg.RunRequest) and req.partition_key == "2024-03-05"
    assert acb_day_schedule(ctx(2024, 3, 6, 0, 30)).partition_key == "2024-03-06"
    late = exf_schedule(ctx(2031, 1, 1, 23, 0))
    assert isinstance(late, dg.SkipReason) and "not a partition" in late.skip_message
    assert exf_schedule.cron_schedule == "0 23 * * *" and mc_envelope_schedule.cron_schedule == "0 */4 * * *"
    assert defs.get_sensor_def("watchdog_sensor").minimum_interval_seconds == 600
    for job in ("exf_day", "acb_day", "mc_envelope_job"):
        assert defs.resolve_job_def(job).name == job


def test_dolphin_status_shows_health_acb_exf(world, acb_run, exf_days):
    from dolphin.status import collect, render
    from dolphin.store import SAFETY, SYSTEM_HEALTH, Record, iso_utc
    from dolphin.watchdog import HEALTH_KEY

    now = int(time.time() * 1000)
    with _store(world) as s:
        s.put(SYSTEM_HEALTH, HEALTH_KEY, Record({"status": "DEGRADED", "failing": ["mc_age_h", "heartbeat_age_s"],
                                                 "checks": []}, iso_utc(now)))
        s.put(SAFETY, "latest", Record({"posture": "STALKER", "Rm": 0.5, "breakdown": {
            "Cat1": 1.0, "Cat2": 0.5, "Cat3": 1.0, "Cat4": 1.0, "Cat5": 1.0}, "reasons": {
            "Cat1": "store reachable", "Cat2": "MC ORANGE", "Cat3": "", "Cat4": "", "Cat5": ""}}, iso_utc(now)))
    text = render(collect("BLUE"))
    health = [ln for ln in text.splitlines() if ln.startswith("system health")]
    assert health and "DEGRADED" in health[0] and "failing mc_age_h, heartbeat_age_s" in health[0], text
    exf_line = [ln for ln in text.splitlines() if ln.startswith("ExF")][0]
    assert "indicators" in exf_line and D in exf_line, text
    acb_line = [ln for ln in text.splitlines() if ln.startswith("ACB")][0]
    assert "boost" in acb_line and "update of 2024-03-05" in acb_line, text
    assert "Cat2: MC ORANGE" in [ln for ln in text.splitlines() if ln.startswith("  Rm reasons")][0], text
    assert "STALKER  Rm 0.500" in [ln for ln in text.splitlines() if ln.startswith("posture")][0], text


def test_watchdog_reads_the_latest_partition_from_materialisations_without_a_ledger(world, wd):
    from dolphin.adapters.sqlite_store import EmbeddedStore
    from dolphin.watchdog import read_health

    y = (datetime.now(timezone.utc).date() - timedelta(days=1)).isoformat()
    world["instance"].report_runless_asset_event(dg.AssetMaterialization(asset_key="daily_pnl_blue", partition=y))
    wd["tick"]()
    with EmbeddedStore(wd["store_path"]) as s:
        h = read_health(s)
    (c,) = [c for c in h["checks"] if c["name"] == "daily_partition_age_days"]
    assert c["ok"] and f"latest daily partition {y}" in c["detail"]
    assert h["latest_daily_partition_from"] == "daily_pnl_blue materialisations"


def test_unreadable_acb_state_does_not_fail_the_scan_run(tmp_path):
    from dolphin.store import ACB_STATE, FEATURES, Record
    from dolphin.adapters.sqlite_store import EmbeddedStore
    from dolphin.scan_files import apply_acb_scans

    with EmbeddedStore(tmp_path / "s.sqlite") as s:
        bad = Record({"boost": "high"}, "2024-03-05T00:00:00.000Z")
        s.put(FEATURES, ACB_STATE, bad)
        n, note = apply_acb_scans(s, tmp_path / "scans", 1_709_600_000_000)
        assert n == 0 and "unreadable" in note and "'source'" in note
        assert s.get(FEATURES, ACB_STATE) == bad
        s.delete(FEATURES, ACB_STATE)
        assert apply_acb_scans(s, tmp_path / "scans", 1_709_600_000_000) == (0, "no acb_state stored yet "
                                                                              "(materialise acb_state for the day first)")
