"""Feature store: the port (map names, keys, typed records) and the embedded SQLite adapter.

Adapters: ``dolphin.store.embedded.EmbeddedStore`` and ``dolphin.store.hazelcast.HazelcastStore`` (near cache,
listeners, topics); code that publishes or reads features depends only on ``FeatureStore`` and picks the
adapter by configuration (``open_store_from_env``: DOLPHIN_FEATURE_STORE / DOLPHIN_HZ_*, no Dagster;
``open_cached_store_from_env``: the same under the parsed-record near cache, for hot-path readers).
"""

from dolphin.store.port import (ACB_STATE, ADDED, ESOF_LATEST, EXF_LATEST, FEATURES, FEATURE_KEYS,
                                MC_FOREWARNER_LATEST, REMOVED, SAFETY, SCAN_LATEST, SCAN_TOPIC, STATE_LATEST,
                                SYSTEM_HEALTH, UPDATED, VOL_REGIME, EntryEvent, FeatureStore, MalformedRecordError, Record,
                                StoreKeyError,
                                StoreUnavailableError, asset_ob_key, check_key, check_topic, iso_utc, pnl_map,
                                publish_if_newer, state_map)
from dolphin.store.factory import (open_cached_store, open_cached_store_from_env, open_store, open_store_from_env,
                                   store_config_from_env)

__all__ = ["FeatureStore", "MalformedRecordError", "Record", "StoreKeyError", "StoreUnavailableError", "EntryEvent", "ADDED", "UPDATED",
           "REMOVED", "SCAN_TOPIC", "check_topic", "publish_if_newer", "check_key", "iso_utc", "FEATURES",
           "FEATURE_KEYS", "SCAN_LATEST", "EXF_LATEST", "ESOF_LATEST", "ACB_STATE", "VOL_REGIME",
           "MC_FOREWARNER_LATEST", "SAFETY", "SYSTEM_HEALTH", "STATE_LATEST", "asset_ob_key", "state_map", "pnl_map",
           "open_store", "open_store_from_env", "open_cached_store", "open_cached_store_from_env",
           "store_config_from_env"]
