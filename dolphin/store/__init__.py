"""Feature store PORT: map names, keys, typed records and the ``FeatureStore`` interface (no I/O).

The math and the publishers depend only on this package. The adapters that talk to a backend live in
``dolphin.adapters``: ``sqlite_store.EmbeddedStore`` (embedded SQLite), ``hazelcast_store.HazelcastStore`` (near
cache, listeners, topics), ``near_cache.NearCachedStore`` (parsed-record cache over either); processes pick one by
configuration with ``dolphin.adapters.store_factory`` (``open_store_from_env``: DOLPHIN_FEATURE_STORE /
DOLPHIN_HZ_*, no Dagster; ``open_cached_store_from_env``: the same under the near cache, for hot-path readers).
"""

from dolphin.store.port import (ACB_STATE, ADDED, ESOF_LATEST, EXF_LATEST, FEATURES, FEATURE_KEYS,
                                MC_FOREWARNER_LATEST, REMOVED, SAFETY, SCAN_LATEST, SCAN_TOPIC, STATE_LATEST,
                                SYSTEM_HEALTH, UPDATED, VOL_REGIME, EntryEvent, FeatureStore, MalformedRecordError, Record,
                                StoreKeyError,
                                StoreUnavailableError, asset_ob_key, check_key, check_topic, iso_utc, pnl_map,
                                publish_if_newer, state_map)

__all__ = ["FeatureStore", "MalformedRecordError", "Record", "StoreKeyError", "StoreUnavailableError", "EntryEvent", "ADDED", "UPDATED",
           "REMOVED", "SCAN_TOPIC", "check_topic", "publish_if_newer", "check_key", "iso_utc", "FEATURES",
           "FEATURE_KEYS", "SCAN_LATEST", "EXF_LATEST", "ESOF_LATEST", "ACB_STATE", "VOL_REGIME",
           "MC_FOREWARNER_LATEST", "SAFETY", "SYSTEM_HEALTH", "STATE_LATEST", "asset_ob_key", "state_map", "pnl_map"]
