"""Dagster code location: the slow-thinking layer as an asset graph (assets, checks, sensors, schedules, resources)."""
