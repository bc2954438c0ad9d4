"""Rehydration: put back every feature-store key the asset layer publishes, from where its last
materialisation durably lives, after a cluster restart (Hazelcast keeps nothing) or any missing key.

Where each key comes back from (``Sources.expected``):

===============================  ===================================================================
``DOLPHIN_FEATURES/scan_latest``  the newest scan on disk: the newest complete per-scan Arrow file
                                  (by mtime, as the scan sensor) or the last row of the newest daily
                                  Parquet, whichever scan is later; rebuilt with ``scan_record`` exactly
                                  as ``scan_latest`` / ``eigen_scans`` (and a scan bridge) publish it
``exf_latest``, ``esof_latest``,  the published-record log (``PublishedLog``): the exact record each
``acb_state`` (daily and per-scan),  asset last produced, kept by the asset even when the store was
``vol_regime``,                   down; no other durable copy holds these records whole (the warehouse
``mc_forewarner_latest``,         rows lack fields, the per-scan ACB state and the MC record exist
``DOLPHIN_SYSTEM_HEALTH/latest``  nowhere else)
``DOLPHIN_STATE_<S>/latest``,     the capital ledger (the source of truth), rebuilt with the records
``DOLPHIN_PNL_<S>/<day>``         ``capital_ledger_blue`` publishes
===============================  ===================================================================

Not here: ``DOLPHIN_SAFETY``, ``DOLPHIN_STATE_<S>/runtime_*`` and the heartbeat (the runtime republishes its
own state), ``asset_<SYMBOL>_ob`` (the order-book publisher rewrites it every few seconds).

Rules: only a key that is absent (or malformed, which reads as absent) is written, by compare-and-set with
its publishers' own order (``publish_if_newer``): a value a publisher stores meanwhile is never overwritten
by an older one. Nothing is computed: a key without a durable record stays missing and is reported.
"""

import json
import logging
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dolphin.ledger.db import Migration, Schema
from dolphin.store.port import (ACB_STATE, ESOF_LATEST, EXF_LATEST, FEATURES, MC_FOREWARNER_LATEST, SCAN_LATEST,
                                STATE_LATEST, SYSTEM_HEALTH, VOL_REGIME, FeatureStore, MalformedRecordError, Record,
                                StoreUnavailableError, check_key, pnl_map, publish_if_newer, state_map)
from dolphin.store.records import newer_for
from dolphin.watchdog import HEALTH_KEY

log = logging.getLogger("dolphin.rehydrate")

SENSOR_INTERVAL_S = 30  # store_rehydration_sensor's minimum interval (dolphin_assets.sensors.rehydrate)

# the keys kept in the published-record log, with the asset (or sensor) that publishes them
LOGGED = {(FEATURES, EXF_LATEST): "exf", (FEATURES, ESOF_LATEST): "esof", (FEATURES, ACB_STATE): "acb_state",
          (FEATURES, VOL_REGIME): "vol_regime",
          (FEATURES, MC_FOREWARNER_LATEST): "mc_envelope", (SYSTEM_HEALTH, HEALTH_KEY): "watchdog_sensor"}

# one word per outcome
PRESENT = "present"  # in the store: left alone
RESTORED = "restored"  # was missing, put back from its durable source
KEPT = "kept"  # was missing, but a publisher stored a value meanwhile that is not older: kept
WOULD_RESTORE = "would-restore"  # dry run: missing, the source has a record
NO_SOURCE = "no-source"  # missing and nothing durable holds it (never materialised here)
SOURCE_ERROR = "source-error"  # missing and its durable source could not be read
STORE_DOWN = "store-unavailable"  # the store could not be read or written


def log_path() -> Path:
    """``<data home>/hot-copy/last_published.sqlite``: beside, not inside, the embedded store's folder (wiping
    the store must not wipe what restores it)."""
    from dolphin.paths import data_home

    return data_home() / "hot-copy" / "last_published.sqlite"


# version 1: the table as shipped on 2026-12-02 (an unversioned file holds exactly it, or nothing yet)
_SCHEMA = Schema("published-record log", (Migration(1, "published: the last record per key", """
CREATE TABLE IF NOT EXISTS published (
    map TEXT NOT NULL, key TEXT NOT NULL, record TEXT NOT NULL, kept_at REAL NOT NULL, PRIMARY KEY (map, key))"""),))


class PublishedLog:
    """The last record each asset produced per key (one row per key, SQLite WAL, fsync'd at commit). Step
    processes write it concurrently: the compare (the key's publish order) and the write are one
    ``BEGIN IMMEDIATE`` transaction, so an older record never replaces a newer one."""

    def __init__(self, path=None):
        self.path = Path(path) if path else log_path()
        self._ready = False

    def keep(self, map_name: str, key: str, record: Record) -> bool:
        """Store ``record`` unless the logged one is at least as new. Returns whether it was stored."""
        from dolphin.ledger import db

        check_key(map_name, key)
        if not self._ready:  # always, not "if the file is absent": another writer may have created only the file
            db.init(self.path, _SCHEMA)
            self._ready = True
        newer = newer_for(map_name, key)
        with db.write(self.path) as con:
            row = con.execute("SELECT record FROM published WHERE map = ? AND key = ?", (map_name, key)).fetchone()
            if row is not None:
                try:
                    if not newer(record, Record.from_json(row["record"])):
                        return False
                except MalformedRecordError:
                    pass  # an unreadable row is replaced
            con.execute("INSERT OR REPLACE INTO published VALUES (?, ?, ?, ?)",
                        (map_name, key, record.to_json(), time.time()))
            return True

    def get(self, map_name: str, key: str) -> Record | None:
        """The logged record; None when nothing was logged (no file yet: it is not created by reading);
        ``MalformedRecordError`` / ``sqlite3.Error`` when the log is damaged."""
        if not self.path.exists():
            return None
        from dolphin.ledger import db

        with db.connect(self.path, what=_SCHEMA.name) as con:
            db.check_version(con, self.path, _SCHEMA)
            try:
                row = con.execute("SELECT record FROM published WHERE map = ? AND key = ?",
                                  (map_name, key)).fetchone()
            except sqlite3.OperationalError as e:
                if "no such table" in str(e):
                    return None
                raise
        return None if row is None else Record.from_json(row["record"])


def keep_published(log, map_name: str, key: str, record) -> bool:
    """Keep ``record`` in the published-record log (newest per key, the key's publish order) after a publisher
    (an asset, the scan bridge) published it -- also when the store was down, so rehydration restores it once
    the store is back. A log that cannot be written only costs rehydration that record: warned, never fatal."""
    try:
        return PublishedLog().keep(map_name, key, record)
    except (OSError, sqlite3.Error) as e:
        log.warning(f"published-record log not written for {map_name}/{key} (rehydration cannot restore this "
                    f"record): {type(e).__name__}: {e}")
        return False


# ---------------------------------------------------------------- durable sources


def newest_scan_record(scan_dir) -> tuple:
    """(record, file) of the newest scan under ``scan_dir``, or (None, why). Per-scan Arrow files: the newest
    complete one by (mtime, name) -- the scan sensor's rule, files that do not parse (still being written,
    corrupt) are passed over; daily Parquet: the last row of the latest day. The later scan wins."""
    from dolphin.scanner import read_scan_arrow, read_scans
    from dolphin.store.records import scan_record
    from dolphin.timeutil import day_start_ms
    from dolphin.timeutil import DAY_MS

    root = Path(scan_dir)
    if not root.is_dir():
        return None, f"no scan directory {root}"
    found = []
    arrows = []
    for p in root.glob("????-??-??/scan_*.arrow"):
        try:
            arrows.append((p.stat().st_mtime_ns, f"{p.parent.name}/{p.name}", p))
        except FileNotFoundError:  # removed between listing and stat
            continue
    for _, _, p in sorted(arrows, reverse=True):
        try:
            row = read_scan_arrow(p)
        except Exception:  # partial or corrupt: the next older complete file counts
            continue
        if len(row) == 1:
            found.append(scan_record(row, -1, str(p)))  # scan_latest's record (source: the file path)
            break
    days = sorted(p.name[6:16] for p in root.glob("scans_????-??-??.parquet"))
    if days:
        d0 = day_start_ms(days[-1])
        scans = read_scans(root, d0, d0 + DAY_MS - 1)
        if len(scans):
            found.append(scan_record(scans, -1, f"eigen_scans {days[-1]}"))  # eigen_scans' record
    if not found:
        return None, f"no complete scan file under {root}"
    best = max(found, key=lambda r: r.value["scan_time_ms"])
    return best, best.value["source"]


@dataclass
class Expected:
    """One key the asset layer publishes, where its last materialisation lives and how to read it."""

    map_name: str
    key: str
    source: str  # where it comes back from (for the report)
    load: Callable[[], "Record | None"] = None  # None: the source holds nothing for it
    error: str = ""  # the source could not even be listed (e.g. the ledger is unreadable)


@dataclass
class Sources:
    """The durable sources of one data home: scan directory, capital ledger, published-record log."""

    scan_dir: Path
    ledger_path: Path
    log: PublishedLog
    strategy: str = "BLUE"

    @classmethod
    def default(cls, strategy: str = "BLUE", scan_dir=None, ledger_path=None, log=None) -> "Sources":
        """The defaults the Dagster resources use (``ScanDir``, ``Ledger``), under the data home."""
        from dolphin.paths import data_home

        home = data_home()
        from dolphin.scanner.writer import scan_dir as default_scan_dir

        return cls(default_scan_dir(scan_dir),
                   Path(ledger_path) if ledger_path else home / "ledger" / "ledger.sqlite",
                   log if log is not None else PublishedLog(), strategy.upper())

    def _ledger(self):
        """(current days, last seq) of the strategy; ([], 0) without a ledger file."""
        if not self.ledger_path.exists():
            return [], 0
        from dolphin.ledger import CapitalLedger

        book = CapitalLedger.existing(self.ledger_path)
        return book.current(self.strategy), book.last_seq()

    def expected(self) -> list:
        from dolphin.store.records import pnl_record, state_record

        out = [Expected(FEATURES, SCAN_LATEST, f"newest scan file under {self.scan_dir}",
                        lambda: newest_scan_record(self.scan_dir)[0])]
        for (m, k), asset in LOGGED.items():
            out.append(Expected(m, k, f"last record published by {asset} ({self.log.path})",
                                lambda m=m, k=k: self.log.get(m, k)))
        smap, pmap, where = state_map(self.strategy), pnl_map(self.strategy), f"capital ledger ({self.ledger_path})"
        try:
            current, seq = self._ledger()
        except Exception as e:  # sqlite3.Error (not a ledger, locked), OSError: reported, never raised
            why = f"{type(e).__name__}: {e}"
            return out + [Expected(smap, STATE_LATEST, where, error=why), Expected(pmap, "*", where, error=why)]
        last = current[-1] if current else None
        out.append(Expected(smap, STATE_LATEST, where,
                            lambda: None if last is None else state_record(self.strategy, last, seq)))
        for e in current:
            out.append(Expected(pmap, e.day, where, lambda e=e: pnl_record(self.strategy, e)))
        return out


# ---------------------------------------------------------------- rehydration


@dataclass(frozen=True)
class KeyResult:
    map_name: str
    key: str
    state: str  # PRESENT | RESTORED | KEPT | WOULD_RESTORE | NO_SOURCE | SOURCE_ERROR | STORE_DOWN
    source: str
    detail: str = ""
    record_ts: str = ""  # the durable record's timestamp (restored / would-restore)

    @property
    def name(self) -> str:
        return f"{self.map_name}/{self.key}"

    @property
    def missing(self) -> bool:
        return self.state not in (PRESENT, RESTORED, KEPT)

    def line(self) -> str:
        what = {PRESENT: "present",
                RESTORED: f"RESTORED (record as of {self.record_ts}) from {self.source}",
                KEPT: f"was missing; a publisher stored it meanwhile (kept): {self.detail}",
                WOULD_RESTORE: f"MISSING, would be restored (record as of {self.record_ts}) from {self.source}",
                NO_SOURCE: f"MISSING, nothing to restore it from ({self.detail or self.source})",
                SOURCE_ERROR: f"MISSING, its source is unreadable: {self.source}: {self.detail}",
                STORE_DOWN: f"unknown, store unavailable: {self.detail}"}[self.state]
        if self.state in (RESTORED, WOULD_RESTORE) and self.detail:
            what += f" [{self.detail}]"
        return f"{self.name}: {what}"

    def to_dict(self) -> dict:
        return {"map": self.map_name, "key": self.key, "state": self.state, "source": self.source,
                "detail": self.detail, "record_ts": self.record_ts}


def rehydrate(store: FeatureStore, sources: Sources, *, dry_run: bool = False) -> list:
    """Check every expected key and put back the missing ones (``dry_run``: only say what would be put
    back). One ``KeyResult`` per key, in ``Sources.expected`` order; never raises for a broken source, and
    a store that goes away mid-way marks the remaining keys ``STORE_DOWN``."""
    out = []
    down = ""
    for ex in sources.expected():
        if ex.error:
            out.append(KeyResult(ex.map_name, ex.key, SOURCE_ERROR, ex.source, ex.error))
            continue
        if down:
            out.append(KeyResult(ex.map_name, ex.key, STORE_DOWN, ex.source, down))
            continue
        try:
            cur = store.get(ex.map_name, ex.key)
        except StoreUnavailableError as e:
            down = str(e)
            out.append(KeyResult(ex.map_name, ex.key, STORE_DOWN, ex.source, down))
            continue
        if cur is not None:
            out.append(KeyResult(ex.map_name, ex.key, PRESENT, ex.source))
            continue
        bad = store.malformed().get((ex.map_name, ex.key))
        note = f"stored value malformed: {bad[0]}" if bad else ""
        try:
            rec = ex.load()
        except Exception as e:  # a damaged log / ledger / scan file: reported by key, the others go on
            out.append(KeyResult(ex.map_name, ex.key, SOURCE_ERROR, ex.source,
                                 f"{type(e).__name__}: {e}"[:300]))
            continue
        if rec is None:
            out.append(KeyResult(ex.map_name, ex.key, NO_SOURCE, ex.source, note or "never materialised here"))
            continue
        if dry_run:
            out.append(KeyResult(ex.map_name, ex.key, WOULD_RESTORE, ex.source, note, rec.timestamp))
            continue
        try:
            # compare-and-set in the publishers' order: absent (or the malformed text) -> the record; a value
            # a publisher put there since our read is replaced only if older
            stored = publish_if_newer(store, ex.map_name, ex.key, rec, newer=newer_for(ex.map_name, ex.key))
        except StoreUnavailableError as e:
            down = str(e)
            out.append(KeyResult(ex.map_name, ex.key, STORE_DOWN, ex.source, down))
            continue
        if stored:
            log.info("rehydrated %s/%s (as of %s) from %s", ex.map_name, ex.key, rec.timestamp, ex.source)
            out.append(KeyResult(ex.map_name, ex.key, RESTORED, ex.source, note, rec.timestamp))
        else:
            out.append(KeyResult(ex.map_name, ex.key, KEPT, ex.source, "the stored value is at least as new"))
    return out


def summary(results: list) -> str:
    """One line: counts per outcome and the keys restored / still missing."""
    restored = [r.name for r in results if r.state == RESTORED]
    missing = [r.name for r in results if r.missing]
    present = sum(r.state == PRESENT for r in results)
    parts = [f"{len(results)} expected key(s): {present} present"]
    if restored:
        parts.append(f"restored {len(restored)}: {', '.join(restored)}")
    if missing:
        parts.append(f"missing {len(missing)}: " + ", ".join(
            f"{r.name} ({r.state})" for r in results if r.missing))
    return "; ".join(parts)


# ---------------------------------------------------------------- CLI: dolphin store rehydrate


def cmd_rehydrate(args) -> int:
    from dolphin.adapters.store_factory import open_store_from_env

    sources = Sources.default(args.strategy, scan_dir=args.scan_dir, ledger_path=args.ledger)
    try:
        store = open_store_from_env()
    except (StoreUnavailableError, ValueError) as e:
        print(f"dolphin store rehydrate: feature store unavailable: {e}", file=sys.stderr)
        return 1
    try:
        results = rehydrate(store, sources, dry_run=args.dry_run)
    finally:
        store.close()
    if args.json:
        print(json.dumps([r.to_dict() for r in results], sort_keys=True))
    else:
        for r in results:
            print(r.line())
        print(summary(results))
    return 1 if any(r.state in (SOURCE_ERROR, STORE_DOWN) for r in results) else 0


def register(sub) -> None:
    p = sub.add_parser("store", help="feature-store maintenance (rehydrate the hot copy)")
    ss = p.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    r = ss.add_parser("rehydrate", help="put back every missing published key from its durable source",
                      description="Checks every key the asset layer publishes and puts back the missing ones from "
                                  "the scan files, the published-record log and the capital ledger (never over a "
                                  "value present in the store). One line per key. Exit 1 if the store or a source "
                                  "could not be read.")
    r.add_argument("--dry-run", action="store_true", help="only report what is missing and what would restore it")
    r.add_argument("--strategy", default="BLUE", help="strategy of DOLPHIN_STATE_/DOLPHIN_PNL_ (default BLUE)")
    r.add_argument("--scan-dir", default=None, help="scan directory (default <data home>/scans)")
    r.add_argument("--ledger", default=None, help="capital ledger (default <data home>/ledger/ledger.sqlite)")
    r.add_argument("--json", action="store_true", help="one JSON list instead of text")
    r.set_defaults(func=cmd_rehydrate)


if __name__ == "__main__":  # python -m dolphin.rehydrate [--dry-run ...]
    import argparse

    ap = argparse.ArgumentParser(prog="dolphin")
    register(ap.add_subparsers(dest="command"))
    ns = ap.parse_args(["store", "rehydrate", *sys.argv[1:]])
    sys.exit(ns.func(ns))
