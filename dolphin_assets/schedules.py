"""Schedules: the daily paper day (00:05 UTC, the previous day's partition of the BLUE chain)."""

from dagster import AssetSelection, DefaultScheduleStatus, build_schedule_from_partitioned_job, define_asset_job

from dolphin_assets.checks import daily_pnl_blue_floors, eigen_scans_checks

# the freshness check is left to its own sensor (see dolphin_assets.checks)
BLUE_CHAIN = (AssetSelection.assets("market_bars", "eigen_scans", "vol_regime", "daily_pnl_blue", "trades_blue",
                                    "capital_ledger_blue").without_checks()
              | AssetSelection.checks(eigen_scans_checks, daily_pnl_blue_floors))

blue_paper_day_job = define_asset_job("blue_paper_day", selection=BLUE_CHAIN,
                                      description="One UTC day of the BLUE chain: bars, scans, regime, engine "
                                                  "day run, ledger (and their checks).")

blue_paper_day_schedule = build_schedule_from_partitioned_job(
    blue_paper_day_job, hour_of_day=0, minute_of_hour=5, name="blue_paper_day_schedule",
    default_status=DefaultScheduleStatus.STOPPED)


# ---------------------------------------------------------------- risk layer (ExF 23:00, ACB/EsoF 00:30, MC every 4 h)

from datetime import timezone  # noqa: E402

from dagster import RunRequest, ScheduleDefinition, ScheduleEvaluationContext, SkipReason, schedule  # noqa: E402

from dolphin_assets.assets.risk import acb_day_job, exf_day_job, mc_envelope_job  # noqa: E402
from dolphin_assets.partitions import DAILY  # noqa: E402
from dolphin_assets.settings import SETTINGS  # noqa: E402


def _today_partition(context: ScheduleEvaluationContext):
    """A run of the scheduled day's own partition (the stock partitioned schedule targets the previous,
    complete day: ExF at 23:00 and the ACB state as of 00:00 belong to the current day)."""
    day = context.scheduled_execution_time.astimezone(timezone.utc).date().isoformat()
    if not DAILY.has_partition_key(day):
        return SkipReason(f"{day} is not a partition of the code location (partitions {SETTINGS.start} .. "
                          f"{SETTINGS.end or 'open-ended'})")
    return RunRequest(run_key=day, partition_key=day)


@schedule(job=exf_day_job, cron_schedule="0 23 * * *", execution_timezone="UTC", name="exf_schedule",
          default_status=DefaultScheduleStatus.STOPPED,
          description="ExF snapshot of the current UTC day at 23:00 (its exf partition), with its check.")
def exf_schedule(context: ScheduleEvaluationContext):
    return _today_partition(context)


@schedule(job=acb_day_job, cron_schedule="30 0 * * *", execution_timezone="UTC", name="acb_day_schedule",
          default_status=DefaultScheduleStatus.STOPPED,
          description="ACB state and EsoF of the new UTC day at 00:30 (after the 00:05 paper day wrote the "
                      "previous day's scans).")
def acb_day_schedule(context: ScheduleEvaluationContext):
    return _today_partition(context)


mc_envelope_schedule = ScheduleDefinition(name="mc_envelope_schedule", job=mc_envelope_job,
                                          cron_schedule="0 */4 * * *", execution_timezone="UTC",
                                          default_status=DefaultScheduleStatus.STOPPED,
                                          description="MC forewarner envelope every 4 hours (DESIGN.md).")
