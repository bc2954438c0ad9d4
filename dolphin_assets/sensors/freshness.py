"""The freshness sensor: evaluates ``daily_pnl_blue``'s freshness check (its latest partition by 01:00 UTC) every
10 minutes; the check itself and why it is this builder: ``dolphin_assets.checks``."""

import warnings

from dagster import SupersessionWarning, build_sensor_for_freshness_checks

from dolphin_assets.checks import FRESHNESS_CHECKS

with warnings.catch_warnings():
    warnings.simplefilter("ignore", SupersessionWarning)  # see dolphin_assets.checks
    freshness_checks_sensor = build_sensor_for_freshness_checks(
        freshness_checks=FRESHNESS_CHECKS, minimum_interval_seconds=600, name="freshness_checks_sensor")
