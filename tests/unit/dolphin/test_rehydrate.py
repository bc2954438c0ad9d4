"""Rehydration without Dagster (dolphin.rehydrate): a real embedded store, real scan files (real scans of
spot-5m-2024), a real capital ledger and the published-record log under a temporary DOLPHIN_HOME.

A member restart is simulated by deleting every key. Checked: every expected key comes back with the same
record; a present or newer value is never overwritten (also when a publisher races the rehydrator); a missing or
damaged source is reported by key, never raised; malformed records are replaced; the CLI prints one line per key;
`dolphin status` lists what is missing and what would restore it.
"""

import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dolphin.engine.state import EngineState
from dolphin.ledger import CapitalLedger, DayRecord
from dolphin.store import (ACB_STATE, ESOF_LATEST, EXF_LATEST, FEATURES, MC_FOREWARNER_LATEST, SCAN_LATEST,
                           STATE_LATEST, SYSTEM_HEALTH, VOL_REGIME, Record, StoreUnavailableError, iso_utc, pnl_map,
                           state_map)
from dolphin.adapters.sqlite_store import EmbeddedStore
from dolphin.rehydrate import (KEPT, NO_SOURCE, PRESENT, RESTORED, SOURCE_ERROR, STORE_DOWN, WOULD_RESTORE,
                                     PublishedLog, Sources, newest_scan_record, rehydrate)
from dolphin.store.records import pnl_record, scan_record, state_record

REPO = Path(__file__).resolve().parents[3]
DAYS = ("2024-03-04", "2024-03-05")
T = 1_709_683_200_000  # 2024-03-06 00:00 UTC


@pytest.fixture(scope="module")
def scans():
    """Real scans: the last 6 bars of 2024-03-04 and the first 6 of 2024-03-05."""
    from tests.support.data import twelve_scans

    return twelve_scans(T - 86_400_000 - 6 * 300_000)


def _records():
    return {
        (FEATURES, EXF_LATEST): Record({"non_null_count": 17, "dvol_btc": 61.2, "date": DAYS[1]},
                                       f"{DAYS[1]}T23:00:00.000Z"),
        (FEATURES, ESOF_LATEST): Record({"weekday_name": "Tuesday"}, f"{DAYS[1]}T00:00:00.000Z"),
        (FEATURES, ACB_STATE): Record({"boost": 1.12, "beta": 0.4, "last_date": DAYS[1], "source": "scan"},
                                      iso_utc(T - 3_600_000)),
        (FEATURES, VOL_REGIME): Record({"current_vol": 0.01, "vol_p60": 0.009, "regime_ok": True, "percentile": 60,
                                        "date": DAYS[1]}, iso_utc(T)),
        (FEATURES, MC_FOREWARNER_LATEST): Record({"status": "GREEN", "catastrophic_prob": 0.01}, iso_utc(T)),
        (SYSTEM_HEALTH, "latest"): Record({"status": "GREEN", "failing": []}, iso_utc(T + 60_000)),
    }


def populate(home, scans):
    """What the publishers leave on disk and in the store: scan files, the published-record log, two ledger
    days; the store holds every key exactly as published."""
    from dolphin.scanner import write_day_parquet, write_scan_arrow

    sdir = home / "scans"
    write_day_parquet(scans, sdir)  # 2024-03-04 (last 6 bars) and 2024-03-05 (first 6)
    arrow = write_scan_arrow(scans[3:4], sdir)  # an older per-scan file: the Parquet's last scan is later
    log = PublishedLog()
    store = EmbeddedStore(home / "store" / "features.sqlite")
    for (m, k), rec in _records().items():
        assert log.keep(m, k, rec)
        store.put(m, k, rec)
    book = CapitalLedger(home / "ledger" / "ledger.sqlite")
    s0 = EngineState.fresh(10_000.0).to_dict()
    book.record_day("BLUE", DAYS[0], DayRecord(10_000.0, 10_250.0, 10_250.0, s0, s0, [{"pnl": 250.0}], 288),
                    start_day=DAYS[0])
    book.record_day("BLUE", DAYS[1], DayRecord(10_250.0, 10_100.0, 10_100.0, s0, s0, [{"pnl": -150.0}], 288),
                    start_day=DAYS[0])
    cur = book.current("BLUE")
    store.put(state_map("BLUE"), STATE_LATEST, state_record("BLUE", cur[-1], book.last_seq()))
    for e in cur:
        store.put(pnl_map("BLUE"), e.day, pnl_record("BLUE", e))
    store.put(FEATURES, SCAN_LATEST, scan_record(scans, -1, f"eigen_scans {DAYS[1]}"))
    return store, arrow


def snapshot(store):
    maps = [FEATURES, SYSTEM_HEALTH, state_map("BLUE"), pnl_map("BLUE")]
    return {(m, k): store.get(m, k) for m in maps for k in store.keys(m)}


def wipe(store):
    """A member restart: every key gone."""
    for m in [FEATURES, SYSTEM_HEALTH, state_map("BLUE"), pnl_map("BLUE")]:
        for k in store.keys(m):
            store.delete(m, k)


def by_name(results):
    return {r.name: r for r in results}


def test_every_key_comes_back_with_the_same_record(home, scans):
    store, _ = populate(home, scans)
    before = snapshot(store)
    assert len(before) == 10  # scan_latest, 5 logged features + health, BLUE state, 2 PNL days
    assert all(r.state == PRESENT for r in rehydrate(store, Sources.default()))  # nothing to do: nothing written
    wipe(store)
    assert snapshot(store) == {}
    res = rehydrate(store, Sources.default())
    assert {r.state for r in res} == {RESTORED}, [r.line() for r in res]
    assert len(res) == 10
    assert snapshot(store) == before
    again = rehydrate(store, Sources.default())
    assert {r.state for r in again} == {PRESENT}


def test_scan_latest_is_the_later_of_the_newest_arrow_file_and_the_newest_parquet(home, scans):
    from dolphin.scanner import write_scan_arrow

    populate(home, scans)
    rec, src = newest_scan_record(home / "scans")
    assert rec == scan_record(scans, -1, f"eigen_scans {DAYS[1]}") and src == f"eigen_scans {DAYS[1]}"
    # a later live scan file (the scan bridge's path): its own record, source = the file
    (home / "scans" / "scans_2024-03-05.parquet").unlink()
    write_scan_arrow(scans[10:11], home / "scans")
    rec, src = newest_scan_record(home / "scans")  # Parquet now ends on 2024-03-04; the Arrow file is later
    p = home / "scans" / "2024-03-05" / src.rsplit("/", 1)[-1]
    assert rec == scan_record(scans[10:11], -1, str(p)) and src == str(p)
    # the newest Arrow file is half written: the next older complete one counts
    torn = home / "scans" / "2024-03-05" / "scan_99999999999999.arrow"
    torn.write_bytes(p.read_bytes()[:100])
    rec2, src2 = newest_scan_record(home / "scans")
    assert src2 == str(p) and rec2 == rec


def test_a_newer_value_in_the_store_is_never_overwritten(home, scans):
    store, _ = populate(home, scans)
    wipe(store)
    newer_exf = Record({"non_null_count": 20, "date": "2024-03-06"}, "2024-03-06T23:00:00.000Z")
    store.put(FEATURES, EXF_LATEST, newer_exf)  # a publisher got there first
    older_state = Record({"day": "2024-03-01", "ledger_seq": 0}, "2024-03-02T00:00:00.000Z")
    store.put(state_map("BLUE"), STATE_LATEST, older_state)  # present, even if older: left alone
    res = by_name(rehydrate(store, Sources.default()))
    assert res[f"{FEATURES}/{EXF_LATEST}"].state == PRESENT
    assert store.get(FEATURES, EXF_LATEST) == newer_exf
    assert store.get(state_map("BLUE"), STATE_LATEST) == older_state
    assert res[f"{FEATURES}/{VOL_REGIME}"].state == RESTORED


class RacingStore(EmbeddedStore):
    """A publisher writes ``racer`` right after the rehydrator saw the key missing."""

    racer = None

    def get(self, map_name, key):
        cur = super().get(map_name, key)
        if self.racer and (map_name, key) == self.racer[:2] and cur is None:
            m, k, rec = self.racer
            self.racer = None
            EmbeddedStore.put(self, m, k, rec)
        return cur


def test_a_publisher_racing_the_rehydrator_wins_with_a_newer_value(home, scans):
    store, _ = populate(home, scans)
    wipe(store)
    store.close()
    racing = RacingStore(home / "store" / "features.sqlite")
    newer = Record({"boost": 0.9, "last_date": "2024-03-06", "source": "daily"}, iso_utc(T))
    racing.racer = (FEATURES, ACB_STATE, newer)
    res = by_name(rehydrate(racing, Sources.default()))
    assert res[f"{FEATURES}/{ACB_STATE}"].state == KEPT
    assert racing.get(FEATURES, ACB_STATE) == newer
    # an OLDER value appearing meanwhile is replaced by the logged (newer) record, by compare-and-set
    wipe(racing)
    racing.racer = (FEATURES, MC_FOREWARNER_LATEST, Record({"status": "RED"}, iso_utc(T - 86_400_000)))
    res = by_name(rehydrate(racing, Sources.default()))
    assert res[f"{FEATURES}/{MC_FOREWARNER_LATEST}"].state == RESTORED
    assert racing.get(FEATURES, MC_FOREWARNER_LATEST) == _records()[(FEATURES, MC_FOREWARNER_LATEST)]


def test_a_malformed_record_is_replaced(home, scans):
    store, _ = populate(home, scans)
    with sqlite3.connect(home / "store" / "features.sqlite") as con:  # a hand edit / another writer's bug
        con.execute("UPDATE entries SET value = 'not json{' WHERE map = ? AND key = ?", (FEATURES, VOL_REGIME))
    res = by_name(rehydrate(store, Sources.default()))
    r = res[f"{FEATURES}/{VOL_REGIME}"]
    assert r.state == RESTORED and "malformed" in r.detail
    assert store.get(FEATURES, VOL_REGIME) == _records()[(FEATURES, VOL_REGIME)]


def test_missing_or_damaged_sources_are_reported_not_raised(home, scans):
    store = EmbeddedStore(home / "store" / "features.sqlite")
    res = by_name(rehydrate(store, Sources.default()))  # nothing ever materialised here
    assert {r.state for r in res.values()} == {NO_SOURCE} and len(res) == 8  # no ledger: no PNL day expected
    assert res[f"{FEATURES}/{SCAN_LATEST}"].line() == (
        f"{FEATURES}/{SCAN_LATEST}: MISSING, nothing to restore it from (never materialised here)")
    populate(home, scans)
    wipe(store)
    (home / "ledger" / "ledger.sqlite").write_bytes(b"not a database" * 100)
    with sqlite3.connect(home / "hot-copy" / "last_published.sqlite") as con:
        con.execute("UPDATE published SET record = '{' WHERE key = ?", (EXF_LATEST,))
    res = by_name(rehydrate(store, Sources.default()))
    assert res[f"{state_map('BLUE')}/{STATE_LATEST}"].state == SOURCE_ERROR
    assert res[f"{pnl_map('BLUE')}/*"].state == SOURCE_ERROR and "LedgerFileError: ledger file" in res[f"{pnl_map('BLUE')}/*"].detail
    assert res[f"{FEATURES}/{EXF_LATEST}"].state == SOURCE_ERROR
    assert "MalformedRecordError" in res[f"{FEATURES}/{EXF_LATEST}"].detail
    # the others came back all the same
    assert res[f"{FEATURES}/{VOL_REGIME}"].state == RESTORED and res[f"{FEATURES}/{SCAN_LATEST}"].state == RESTORED


class FailingStore(EmbeddedStore):
    fail_after = 3

    def get(self, map_name, key):
        self.fail_after -= 1
        if self.fail_after < 0:
            raise StoreUnavailableError("member gone")
        return super().get(map_name, key)


def test_a_store_outage_mid_way_marks_the_rest_unknown(home, scans):
    populate(home, scans)[0].close()
    store = FailingStore(home / "store" / "features.sqlite")
    res = rehydrate(store, Sources.default())
    assert [r.state for r in res[:3]] == [PRESENT] * 3
    assert {r.state for r in res[3:]} == {STORE_DOWN} and "member gone" in res[-1].detail


def test_dry_run_writes_nothing(home, scans):
    store, _ = populate(home, scans)
    wipe(store)
    res = rehydrate(store, Sources.default(), dry_run=True)
    assert {r.state for r in res} == {WOULD_RESTORE} and snapshot(store) == {}
    line = by_name(res)[f"{FEATURES}/{EXF_LATEST}"].line()
    assert line == (f"{FEATURES}/{EXF_LATEST}: MISSING, would be restored (record as of {DAYS[1]}T23:00:00.000Z) "
                    f"from last record published by exf ({home / 'hot-copy' / 'last_published.sqlite'})")


def test_published_log_keeps_the_newest_per_key_across_writers(home):
    log = PublishedLog()
    assert log.get(FEATURES, EXF_LATEST) is None and not log.path.exists()  # reading creates nothing
    recs = [Record({"i": i}, iso_utc(T + i * 1000)) for i in range(40)]
    order = recs[::-1] + recs  # newest first, then all again: only strictly newer records replace

    errors = []

    def writer(chunk):
        try:
            w = PublishedLog()
            for r in chunk:
                w.keep(FEATURES, EXF_LATEST, r)
        except Exception as e:  # surfaced below
            errors.append(e)

    ts = [threading.Thread(target=writer, args=(order[i::4],)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    assert log.get(FEATURES, EXF_LATEST) == recs[-1]
    assert not log.keep(FEATURES, EXF_LATEST, recs[0])
    # ACB order: (updated_at, last_date); scan order: scan_time_ms (not the timestamp text)
    a = Record({"last_date": "2024-03-05"}, iso_utc(T))
    assert log.keep(FEATURES, ACB_STATE, a)
    assert log.keep(FEATURES, ACB_STATE, Record({"last_date": "2024-03-06"}, iso_utc(T)))
    assert not log.keep(FEATURES, ACB_STATE, a)


def _env(home, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOLPHIN_")}
    env.update(DOLPHIN_HOME=str(home), PYTHONPATH=str(REPO), **extra)
    return env


def test_cli_one_line_per_key(home, scans):
    store, _ = populate(home, scans)
    wipe(store)  # the CLI runs in its own process, as an operator (or a scan bridge) would
    dry = subprocess.run([sys.executable, "-m", "dolphin.cli", "store", "rehydrate", "--dry-run"], env=_env(home),
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("MISSING, would be restored") == 10 and snapshot(store) == {}
    out = subprocess.run([sys.executable, "-m", "dolphin.cli", "store", "rehydrate"], env=_env(home), cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 11 and lines[-1].startswith("10 expected key(s): 0 present; restored 10: ")
    assert f"{pnl_map('BLUE')}/{DAYS[0]}: RESTORED (record as of {DAYS[1]}T00:00:00.000Z) from capital ledger" in \
        out.stdout
    assert len(snapshot(store)) == 10
    js = subprocess.run([sys.executable, "-m", "dolphin.cli", "store", "rehydrate", "--json"], env=_env(home),
                        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert {r["state"] for r in json.loads(js.stdout)} == {PRESENT}
    # a store that cannot be opened: one clear line, exit 1
    (home / "store" / "features.sqlite").write_bytes(b"not a database" * 500)
    for f in (home / "store").glob("features.sqlite-*"):
        f.unlink()
    down = subprocess.run([sys.executable, "-m", "dolphin.cli", "store", "rehydrate"], env=_env(home), cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert down.returncode == 1 and down.stderr.startswith("dolphin store rehydrate: feature store unavailable:"), \
        down.stderr


def test_status_lists_missing_and_malformed_keys_and_what_restores_them(home, scans):
    from dolphin.status import collect, render

    store, _ = populate(home, scans)
    text = render(collect("BLUE"))
    assert "hot copy        all 10 published key(s) present" in text, text
    store.delete(FEATURES, EXF_LATEST)
    store.delete(pnl_map("BLUE"), DAYS[0])
    with sqlite3.connect(home / "store" / "features.sqlite") as con:
        con.execute("UPDATE entries SET value = '[1]' WHERE map = ? AND key = ?", (FEATURES, ACB_STATE))
    rep = collect("BLUE")
    text = render(rep)
    lines = text.splitlines()
    head = [ln for ln in lines if ln.startswith("hot copy")]
    assert head == ["hot copy        3 of 10 published key(s) MISSING (store_rehydration_sensor restores within "
                    "~30 s when running; now: dolphin store rehydrate)"], text
    missing = [ln for ln in lines if ln.startswith("  missing")]
    assert any(f"{FEATURES}/{EXF_LATEST}: MISSING, would be restored" in ln and "published by exf" in ln
               for ln in missing), text
    assert any(f"{pnl_map('BLUE')}/{DAYS[0]}: MISSING, would be restored" in ln and "capital ledger" in ln
               for ln in missing), text
    acb = [ln for ln in missing if f"{FEATURES}/{ACB_STATE}" in ln]
    assert acb and "stored value malformed" in acb[0], text
    assert [ln for ln in lines if ln.startswith("  malformed")][0].startswith(
        f"  malformed     {FEATURES}/{ACB_STATE}: read as missing:"), text
    assert {m["key"] for m in rep["store"]["hot_copy"]["missing"]} == {EXF_LATEST, DAYS[0], ACB_STATE}
    assert snapshot(store).get((FEATURES, EXF_LATEST)) is None  # status only reports
