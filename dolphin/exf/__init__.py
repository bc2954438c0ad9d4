"""External factors (ExF): indicator registry and point-in-time history from recorded files.

Pure domain code (no Dagster, no Hazelcast, no HTTP): flows call ``ExfHistory.as_of`` or the live fetchers'
``dolphin.adapters.exf_http.fetch_all`` and publish ``ExfSnapshot.to_store_record()`` under
``DOLPHIN_FEATURES/exf_latest``.
"""

from dolphin.exf.history import ExfDataError, ExfHistory, ExfSnapshot, Series, read_exf_csv, to_ms
from dolphin.exf.indicators import (FAMILIES, INDICATOR_NAMES, LIVE_FAMILIES, RECORDED_NAMES, REGISTRY, Indicator,
                                    Publication, family_names, indicator)

__all__ = ["ExfDataError", "ExfHistory", "ExfSnapshot", "Series", "read_exf_csv", "to_ms", "FAMILIES",
           "INDICATOR_NAMES", "LIVE_FAMILIES", "RECORDED_NAMES", "REGISTRY", "Indicator", "Publication",
           "family_names", "indicator"]
