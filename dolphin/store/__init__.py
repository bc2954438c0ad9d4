"""Feature store: the port (map names, keys, typed records) and the embedded SQLite adapter.

The Hazelcast adapter (near cache, listeners, topics) arrives with the feature-store issue; code that
publishes or reads features depends only on ``FeatureStore`` and picks the adapter by configuration.
"""

from dolphin.store.port import (ACB_STATE, ESOF_LATEST, EXF_LATEST, FEATURES, FEATURE_KEYS, MC_FOREWARNER_LATEST,
                                SAFETY, SCAN_LATEST, STATE_LATEST, SYSTEM_HEALTH, VOL_REGIME, FeatureStore, Record,
                                StoreKeyError, asset_ob_key, check_key, iso_utc, pnl_map, publish_if_newer,
                                state_map)

__all__ = ["FeatureStore", "Record", "StoreKeyError", "publish_if_newer", "check_key", "iso_utc", "FEATURES",
           "FEATURE_KEYS", "SCAN_LATEST", "EXF_LATEST", "ESOF_LATEST", "ACB_STATE", "VOL_REGIME",
           "MC_FOREWARNER_LATEST", "SAFETY", "SYSTEM_HEALTH", "STATE_LATEST", "asset_ob_key", "state_map", "pnl_map"]
