"""Dagster -> alerts (``dolphin.alerts``; channels from the DOLPHIN_ALERT_* environment of the daemon):

- ``alert_on_run_failure``: every failed run of this code location (job, run id, the failure message);
- ``alert_on_asset_checks``: the asset check evaluations of every successful run (a failed run's are sent with
  its failure): a failed check is an alert; the ``daily_pnl_blue`` floors of one run are one "floors results"
  alert listing each floor's PASS / FAIL / N/A (the regression gates, DESIGN.md). Read per run, so it works on
  Dagster's default run-sharded SQLite event log (a cross-run event cursor does not) as on PostgreSQL.

Both are RUNNING by default and skip when no channel is configured. A tick waits at most ``FLUSH_S`` for the
deliveries (sensor processes are short-lived; trading never waits on them).
"""

from dagster import (DagsterEventType, DagsterRunStatus, DefaultSensorStatus, RunFailureSensorContext,
                     RunStatusSensorContext, SkipReason, run_failure_sensor, run_status_sensor)

from dolphin.alerts import Alert, dispatcher_from_env

FLUSH_S = 20.0
FLOORS_ASSET = "daily_pnl_blue"


def _deliver(alerts) -> dict:
    d = dispatcher_from_env()
    try:
        for a in alerts:
            d.notify(a)
        d.flush(FLUSH_S)
        return d.stats()
    finally:
        d.close(1.0)


@run_failure_sensor(name="alert_on_run_failure", default_status=DefaultSensorStatus.RUNNING,
                    minimum_interval_seconds=30,
                    description="Sends an alert (DOLPHIN_ALERT_* webhook / Telegram) for every failed run.")
def alert_on_run_failure(context: RunFailureSensorContext):
    if not dispatcher_from_env().enabled:
        return SkipReason("no alert channel configured (DOLPHIN_ALERT_WEBHOOK_URL / DOLPHIN_ALERT_TELEGRAM_*)")
    run = context.dagster_run
    msg = context.failure_event.message or ""
    part = run.tags.get("dolphin/partition") or run.tags.get("dagster/partition")
    alerts = [Alert("run_failure", f"Dagster run FAILED: {run.job_name}" + (f" [{part}]" if part else ""),
                    f"run {run.run_id}: {msg}"[:3000], "critical", key=f"run-failure:{run.run_id}",
                    fields={"run_id": run.run_id, "job": run.job_name, "partition": part})]
    stats = _deliver(alerts + check_alerts(run_check_records(context.instance, run.run_id),
                                           run.tags.get("dagster/partition")))
    context.log.info(f"alert for failed run {run.run_id}: {stats}")


def check_alerts(records, partition: str | None = None) -> list:
    """Alerts for one run's ASSET_CHECK_EVALUATION event records; ``partition``: the run's partition (checks of
    a partitioned asset carry none of their own in this Dagster version)."""
    out, floors = [], {}
    for r in records:
        ev = r.event_log_entry.dagster_event
        data = ev.event_specific_data
        part = data.partition or partition
        asset = data.asset_key.to_user_string()
        run_id = r.event_log_entry.run_id
        status = "PASS" if data.passed else "FAIL"
        meta = data.metadata or {}
        if "status" in meta:  # the floors carry their own PASS / FAIL / N/A
            status = str(getattr(meta["status"], "value", meta["status"]))
        if asset == FLOORS_ASSET and data.check_name.startswith("floor_"):
            value = getattr(meta.get("value"), "value", None)
            floors.setdefault((run_id, part), []).append((data.check_name, status, value))
            continue
        if not data.passed:
            sev = "warning" if getattr(data.severity, "value", str(data.severity)) == "WARN" else "critical"
            desc = data.description or ""
            out.append(Alert("asset_check", f"asset check FAILED: {asset}.{data.check_name}"
                             + (f" [{part}]" if part else ""), f"run {run_id}. {desc}".strip(),
                             sev, key=f"check:{r.storage_id}"))
    for (run_id, part), rows in floors.items():
        failed = [n for n, s, _ in rows if s == "FAIL"]
        text = "\n".join(f"{n}: {s}" + (f" ({v:.4g})" if isinstance(v, (int, float)) else "") for n, s, v in rows)
        out.append(Alert("floors", f"floors {FLOORS_ASSET} [{part or '-'}]: " +
                         (f"{len(failed)} FAILED ({', '.join(failed)})" if failed else "all evaluated floors pass"),
                         text, "warning" if failed else "info", key=f"floors:{run_id}:{part}"))
    return out


@run_status_sensor(run_status=DagsterRunStatus.SUCCESS, name="alert_on_asset_checks",
                   default_status=DefaultSensorStatus.RUNNING, minimum_interval_seconds=30,
                   description="Sends an alert for every failed asset check of a finished run and the daily_pnl_blue "
                               "floors results.")
def alert_on_asset_checks(context: RunStatusSensorContext):
    run = context.dagster_run
    alerts = check_alerts(run_check_records(context.instance, run.run_id), run.tags.get("dagster/partition"))
    if not alerts:
        return SkipReason(f"run {context.dagster_run.run_id}: no failed check, no floors")
    if not dispatcher_from_env().enabled:
        return SkipReason(f"{len(alerts)} alert(s) not sent: no alert channel configured")
    context.log.info(f"run {context.dagster_run.run_id}: {len(alerts)} check alert(s): {_deliver(alerts)}")


def run_check_records(instance, run_id: str) -> list:
    """The run's ASSET_CHECK_EVALUATION events (per run: works on the run-sharded SQLite event log too)."""
    return list(instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records)
