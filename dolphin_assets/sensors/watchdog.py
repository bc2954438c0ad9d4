"""The watchdog sensor (every 10 minutes): system health -> ``DOLPHIN_SYSTEM_HEALTH/latest`` (dolphin.watchdog).

Inputs: the feature store's scan / ExF / MC timestamps (``collect_inputs``; an unreachable store is a failed
check, not an exception), the runtime heartbeat (``DOLPHIN_SYSTEM_HEALTH/runtime_heartbeat``, written by the
runtime's risk loop) and the latest daily partition (the capital ledger's last day; the materialisations of
``daily_pnl_blue`` when there is no ledger yet).

The tick's skip reason carries the verdict (``GREEN`` / ``DEGRADED: failing ...``). A report that could not be
published (store down) is kept in the cursor and attached to the next published record as ``unpublished``,
so an outage stays visible in the store once it is back.
"""

import json
from datetime import date, datetime, timezone

from dagster import AssetKey, DefaultSensorStatus, SensorEvaluationContext, SensorResult, SkipReason, sensor

from dolphin.ledger import CapitalLedger
from dolphin.store import SYSTEM_HEALTH, Record, StoreUnavailableError, publish_if_newer
from dolphin.watchdog import HEALTH_KEY, check_health, collect_inputs
from dolphin.rehydrate import keep_published
from dolphin_assets.resources.feature_store import FeatureStoreResource
from dolphin_assets.resources.ledger import Ledger
from dolphin_assets.settings import STRATEGY

HEARTBEAT_KEY = "runtime_heartbeat"  # runtime/risk.py writes it
MAX_KEPT = 20  # unpublished reports carried in the cursor (the oldest are dropped beyond that)


def latest_daily_partition(context: SensorEvaluationContext, ledger: Ledger) -> tuple:
    """(day or None, where it came from)."""
    path = ledger.file()
    if path.exists():
        current = CapitalLedger.existing(path).current(STRATEGY)
        if current:
            return date.fromisoformat(current[-1].day), f"capital ledger ({path})"
    parts = context.instance.get_materialized_partitions(AssetKey("daily_pnl_blue"))
    if parts:
        return date.fromisoformat(max(parts)), "daily_pnl_blue materialisations"
    return None, "no ledger day and no daily_pnl_blue materialisation"


def _heartbeat(store) -> datetime | None:
    rec = store.get(SYSTEM_HEALTH, HEARTBEAT_KEY)
    return None if rec is None else datetime.fromisoformat(rec.timestamp.replace("Z", "+00:00"))


def evaluate(store_res: FeatureStoreResource, ledger: Ledger, context: SensorEvaluationContext, now: datetime,
             cursor: str | None) -> tuple:
    """(report, published, message, new cursor): one watchdog tick."""
    kept = json.loads(cursor).get("unpublished", []) if cursor else []
    store, why_down, heartbeat = None, "", None
    try:
        store = store_res.open()
        heartbeat = _heartbeat(store)
    except StoreUnavailableError as e:
        store, why_down = None, str(e)
    day, day_from = latest_daily_partition(context, ledger)
    report = check_health(collect_inputs(store, now, latest_daily_partition=day, runtime_heartbeat_ts=heartbeat))
    value = report.to_record()
    ts = value.pop("timestamp")
    value["latest_daily_partition_from"] = day_from
    published = False
    if store is not None and report.check("store").ok:
        try:
            published_rec = Record({**value, "unpublished": kept}, ts)
            published = publish_if_newer(store, SYSTEM_HEALTH, HEALTH_KEY, published_rec)
        except StoreUnavailableError as e:
            why_down = str(e)
    if published:
        kept = []
        keep_published(context.log, SYSTEM_HEALTH, HEALTH_KEY, published_rec)
    else:
        kept = (kept + [{"timestamp": ts, "status": report.status, "failing": report.failing}])[-MAX_KEPT:]
    failing = "; ".join(f"{c.name}: {c.detail}" for c in report.checks if not c.ok)
    msg = report.status + (f": {failing}" if failing else "")
    msg += " | published" if published else (f" | NOT published (store unavailable: {why_down})" if why_down
                                            else " | NOT published (a newer record is stored)")
    return report, published, msg[:2000], json.dumps({"unpublished": kept})


@sensor(minimum_interval_seconds=600, default_status=DefaultSensorStatus.STOPPED, name="watchdog_sensor",
        description="System health every 10 minutes (store, scan, daily partition, ExF, MC, runtime heartbeat) "
                    "published to DOLPHIN_SYSTEM_HEALTH/latest; the tick's reason says GREEN or DEGRADED and why.")
def watchdog_sensor(context: SensorEvaluationContext, feature_store: FeatureStoreResource, ledger: Ledger):
    now = datetime.now(timezone.utc)
    report, _, msg, cursor = evaluate(feature_store, ledger, context, now, context.cursor)
    (context.log.info if report.status == "GREEN" else context.log.warning)(msg)
    return SensorResult(skip_reason=SkipReason(msg), cursor=cursor)
