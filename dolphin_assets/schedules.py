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
