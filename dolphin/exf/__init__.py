"""External factors (ExF): indicator registry, point-in-time history from recorded files, live fetchers.

Pure domain code (no Dagster, no Hazelcast): flows call ``fetch_all`` / ``ExfHistory.as_of`` and publish
``ExfSnapshot.to_store_record()`` under ``DOLPHIN_FEATURES/exf_latest``.
"""

from dolphin.exf.history import ExfDataError, ExfHistory, ExfSnapshot, Series, read_exf_csv, to_ms
from dolphin.exf.indicators import (FAMILIES, INDICATOR_NAMES, LIVE_FAMILIES, RECORDED_NAMES, REGISTRY, Indicator,
                                    Publication, family_names, indicator)

__all__ = ["ExfDataError", "ExfHistory", "ExfSnapshot", "Series", "read_exf_csv", "to_ms", "FAMILIES",
           "INDICATOR_NAMES", "LIVE_FAMILIES", "RECORDED_NAMES", "REGISTRY", "Indicator", "Publication",
           "family_names", "indicator"]
