"""Sensors of the code location, one module each (``dolphin_assets.definitions`` lists them):

- ``scan_files.scan_files_sensor``: new scan Arrow files -> a run of ``scan_latest``;
- ``freshness.freshness_checks_sensor``: evaluates the ``daily_pnl_blue`` freshness check every 10 minutes;
- ``watchdog.watchdog_sensor``: system health -> ``DOLPHIN_SYSTEM_HEALTH/latest``;
- ``rehydrate.store_rehydration_sensor``: puts missing feature-store keys back from their durable source;
- ``alerts``: ``alert_on_run_failure`` and ``alert_on_asset_checks``, the two alert sensors (one module: they
  share the delivery and the check-event reading).
"""
