"""The rehydration sensor (every 30 s, running by default): puts back every published key missing from the
feature store (after a Hazelcast restart, a wiped embedded file, a malformed record) from its durable source
(``dolphin.rehydrate``; the same as ``dolphin store rehydrate``).

Run-less: it starts no run. The tick's skip reason names what it restored and what is still missing; each
restored key is also an ``AssetObservation`` on the asset that publishes it (metadata ``rehydrated``), and
the cursor keeps the last restore (time and keys). Rehydration time after a restart: the 30 s interval plus
one evaluation (a few hundred ms; README "Rehydration").

Safe to run always: it only writes absent keys, by compare-and-set in the publishers' order, and publishes
only records that were materialised (nothing is computed here).
"""

import json
import time
from datetime import datetime, timezone

from dagster import AssetObservation, DefaultSensorStatus, SensorEvaluationContext, SensorResult, SkipReason, sensor

from dolphin.store import StoreUnavailableError, pnl_map, state_map
from dolphin.rehydrate import (LOGGED, RESTORED, SENSOR_INTERVAL_S, SOURCE_ERROR, STORE_DOWN, PublishedLog,
                                     Sources, rehydrate, summary)
from dolphin_assets.resources.feature_store import FeatureStoreResource
from dolphin_assets.resources.ledger import Ledger
from dolphin_assets.resources.scan_dir import ScanDir
from dolphin_assets.settings import STRATEGY

# the asset whose page shows a restore of its key (the watchdog's report belongs to no asset)
ASSET_OF = {**{k: a for k, a in LOGGED.items() if a != "watchdog_sensor"},
            ("DOLPHIN_FEATURES", "scan_latest"): "scan_latest"}


def _asset_of(map_name: str, key: str) -> str | None:
    if map_name.startswith(("DOLPHIN_STATE_", "DOLPHIN_PNL_")):
        return "capital_ledger_green" if map_name.endswith("_GREEN") else "capital_ledger_blue"
    return ASSET_OF.get((map_name, key))


def evaluate(store_res: FeatureStoreResource, scan_dir: ScanDir, ledger: Ledger, cursor: str | None) -> tuple:
    """(results or None, message, asset events, new cursor): one tick."""
    sources = Sources(scan_dir.dir(), ledger.file(), PublishedLog(), STRATEGY)
    prev = json.loads(cursor) if cursor else {}
    t0 = time.perf_counter()
    try:
        store = store_res.open()
    except StoreUnavailableError as e:
        return None, f"feature store unavailable, nothing checked: {e}"[:2000], [], json.dumps(prev)
    try:
        results = rehydrate(store, sources)
        # GREEN's hot copy too, once the green chain has written ledger days (before that it has no keys)
        green = Sources(sources.scan_dir, sources.ledger_path, sources.log, "GREEN")
        own = (state_map("GREEN"), pnl_map("GREEN"))
        if any(ex.map_name == own[1] for ex in green.expected()):
            results += [r for r in rehydrate(store, green) if r.map_name in own]
    finally:
        store.close()
    took = time.perf_counter() - t0
    restored = [r for r in results if r.state == RESTORED]
    events = []
    for r in restored:
        asset = _asset_of(r.map_name, r.key)
        if asset:
            events.append(AssetObservation(asset_key=asset, metadata={
                "rehydrated": r.name, "record_as_of": r.record_ts, "from": r.source}))
    if restored:
        prev = {"last_restore": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "restored": [r.name for r in restored]}
    msg = f"{summary(results)} ({took:.2f} s)"
    return results, msg[:2000], events, json.dumps(prev)


@sensor(minimum_interval_seconds=SENSOR_INTERVAL_S, default_status=DefaultSensorStatus.RUNNING,
        name="store_rehydration_sensor",
        description="Every 30 s: every key the assets publish (scan_latest, exf/esof/acb/vol regime/MC, "
                    "DOLPHIN_STATE_/PNL_ of the strategy, system health) that is missing from the feature store "
                    "is put back from its last materialisation (scan files, published-record log, capital "
                    "ledger); never over a present value. Run-less; the tick names what it restored.")
def store_rehydration_sensor(context: SensorEvaluationContext, feature_store: FeatureStoreResource,
                             scan_dir: ScanDir, ledger: Ledger):
    results, msg, events, cursor = evaluate(feature_store, scan_dir, ledger, context.cursor)
    for r in results or []:
        if r.state == RESTORED:
            context.log.info(r.line())
        elif r.state == SOURCE_ERROR:
            context.log.warning(r.line())
        # a key never materialised here (NO_SOURCE) is only in the tick's reason: not a warning every 30 s
    if results is None or any(r.state == STORE_DOWN for r in results):
        context.log.warning(msg)
    return SensorResult(skip_reason=SkipReason(msg), cursor=cursor, asset_events=events)
