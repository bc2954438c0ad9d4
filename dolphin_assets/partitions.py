"""The UTC day partitions and the partition mappings between them."""

import warnings

from dagster import BetaWarning, DailyPartitionsDefinition, TimeWindowPartitionMapping

from dolphin.daily import history_days
from dolphin_assets.settings import ENGINE_CONFIG, SETTINGS

DAILY = DailyPartitionsDefinition(start_date=SETTINGS.start, end_date=SETTINGS.end_exclusive, timezone="UTC")

# A day's engine run reads the scans of the days before it (history_days: 8 at 5m); before the first
# partition there are none, and the panel's history is then shorter by the same amount.
HISTORY_DAYS = history_days(ENGINE_CONFIG, SETTINGS.bar_ms)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", BetaWarning)  # allow_nonexistent_upstream_partitions is beta in 1.13
    SCAN_HISTORY = TimeWindowPartitionMapping(start_offset=-HISTORY_DAYS, end_offset=0,
                                              allow_nonexistent_upstream_partitions=True)
    PREVIOUS_DAY = TimeWindowPartitionMapping(start_offset=-1, end_offset=-1,
                                              allow_nonexistent_upstream_partitions=True)
