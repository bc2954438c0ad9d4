"""The one ``Definitions`` of the DOLPHIN code location (``workspace.yaml`` loads ``defs``)."""

from dagster import Definitions, FilesystemIOManager, multiprocess_executor

from dolphin_assets.assets.blue import capital_ledger_blue, daily_pnl_blue
from dolphin_assets.assets.green import GREEN_ASSETS, GREEN_CHECKS, green_paper_day_job, green_paper_day_schedule
from dolphin_assets.assets.live import scan_latest, scan_latest_job
from dolphin_assets.assets.market import eigen_scans, market_bars, vol_regime
from dolphin_assets.assets.risk import RISK_ASSETS, acb_day_job, exf_day_job, mc_envelope_job
from dolphin_assets.checks import FRESHNESS_CHECKS, daily_pnl_blue_floors, eigen_scans_checks, exf_checks
from dolphin_assets.execution import executor_from_env
from dolphin_assets.resources.exf_source import ExfSource
from dolphin_assets.resources.feature_store import FeatureStoreResource
from dolphin_assets.resources.ledger import Ledger
from dolphin_assets.resources.market_data import MarketData
from dolphin_assets.resources.scan_dir import ScanDir
from dolphin_assets.resources.warehouse import Warehouse
from dolphin_assets.schedules import (acb_day_schedule, blue_paper_day_job, blue_paper_day_schedule, exf_schedule,
                                      mc_envelope_schedule)
from dolphin_assets.sensors.alerts import alert_on_asset_checks, alert_on_run_failure
from dolphin_assets.sensors.freshness import freshness_checks_sensor
from dolphin_assets.sensors.rehydrate import store_rehydration_sensor
from dolphin_assets.sensors.scan_files import scan_files_sensor
from dolphin_assets.sensors.watchdog import watchdog_sensor

ASSETS = [market_bars, eigen_scans, vol_regime, daily_pnl_blue, capital_ledger_blue, scan_latest, *RISK_ASSETS,
          *GREEN_ASSETS]
ASSET_CHECKS = [eigen_scans_checks, daily_pnl_blue_floors, *FRESHNESS_CHECKS, exf_checks, *GREEN_CHECKS]


def resources(**overrides) -> dict:
    """Default resources; tests and the bench override single entries (e.g. ``ledger=Ledger(start_day=...)``)."""
    base = {
        # market_bars (a Panel with its warm-up tail) is pickled under the instance's storage directory
        "io_manager": FilesystemIOManager(),
        "warehouse": Warehouse(),
        "market_data": MarketData(),
        "scan_dir": ScanDir(),
        "ledger": Ledger(),
        "feature_store": FeatureStoreResource(),
        "exf_source": ExfSource(),
    }
    return {**base, **overrides}


# Steps run in forked processes of one forkserver that preloaded the code location, Dagster's storage stack
# and the numba kernels (dolphin_assets.preload): a step starts in milliseconds instead of about a second.
# One process per core (the multiprocess executor's default).
EXECUTOR = multiprocess_executor.configured(
    {"start_method": {"forkserver": {"preload_modules": ["dolphin_assets.preload"]}}}, name="multiprocess_forkserver")

defs = Definitions(
    assets=ASSETS,
    asset_checks=ASSET_CHECKS,
    jobs=[blue_paper_day_job, scan_latest_job, exf_day_job, acb_day_job, mc_envelope_job, green_paper_day_job],
    schedules=[blue_paper_day_schedule, exf_schedule, acb_day_schedule, mc_envelope_schedule,
               green_paper_day_schedule],
    sensors=[scan_files_sensor, freshness_checks_sensor, watchdog_sensor, store_rehydration_sensor,
             alert_on_run_failure, alert_on_asset_checks],
    resources=resources(),
    # DOLPHIN_EXECUTOR=dask + DOLPHIN_DASK_SCHEDULER: the steps run on a dask cluster (dolphin_assets.execution)
    executor=executor_from_env(EXECUTOR),
)
