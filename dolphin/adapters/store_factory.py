"""Open the configured feature store from the environment, without Dagster.

The same rules as ``dolphin_assets.resources.feature_store.FeatureStoreResource`` (whose defaults come from the same
variables, read once in ``dolphin_assets.settings``)::

    DOLPHIN_FEATURE_STORE   embedded (default) | hazelcast
    embedded:  <data home>/store/features.sqlite (DOLPHIN_HOME, default ~/.dolphin)
    hazelcast: DOLPHIN_HZ_MEMBERS (comma-separated, default 127.0.0.1:5701), DOLPHIN_HZ_CLUSTER (default
               dolphin); credentials, TLS and timeouts from the other DOLPHIN_HZ_* variables
               (``dolphin.adapters.hazelcast_store``)

``open_cached_store`` / ``open_cached_store_from_env``: the same store under the parsed-record near cache
(``dolphin.adapters.near_cache``), over an UNCACHED adapter (Hazelcast near cache off) so that entry events are
never overtaken by a lagging inner cache. Its ``staleness_bound_s`` is ``max_age_s``.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from dolphin.store.port import FeatureStore

KINDS = ("embedded", "hazelcast")
DEFAULT_MEMBERS = ("127.0.0.1:5701",)
DEFAULT_CLUSTER = "dolphin"


def embedded_path(path: str | os.PathLike | None = None) -> Path:
    """The embedded store's SQLite file: ``path`` if given, else ``<data home>/store/features.sqlite``."""
    if path:
        return Path(path).expanduser()
    from dolphin.paths import data_home

    return data_home() / "store" / "features.sqlite"


@dataclass(frozen=True)
class StoreConfig:
    kind: str  # embedded | hazelcast
    path: Path | None = None  # embedded
    members: tuple = DEFAULT_MEMBERS  # hazelcast
    cluster: str = DEFAULT_CLUSTER  # hazelcast

    def describe(self) -> str:
        if self.kind == "embedded":
            return f"embedded ({self.path})"
        return f"hazelcast (cluster {self.cluster!r} at {','.join(self.members)})"


def store_config_from_env(env=None) -> StoreConfig:
    env = os.environ if env is None else env
    kind = (env.get("DOLPHIN_FEATURE_STORE") or "embedded").strip().lower()
    if kind not in KINDS:
        raise ValueError(f"DOLPHIN_FEATURE_STORE={kind!r}: expected embedded or hazelcast")
    if kind == "embedded":
        return StoreConfig(kind, path=embedded_path())
    members = tuple(m.strip() for m in (env.get("DOLPHIN_HZ_MEMBERS") or "").split(",") if m.strip())
    return StoreConfig(kind, members=members or DEFAULT_MEMBERS,
                       cluster=env.get("DOLPHIN_HZ_CLUSTER") or DEFAULT_CLUSTER)


def open_store(kind: str, *, path=None, members=None, cluster: str | None = None, **hazelcast_kw) -> FeatureStore:
    """``embedded`` at ``path`` (default under the data home) or ``hazelcast`` at ``members`` / ``cluster``
    (``None``: the adapter's own env/defaults). Raises ``StoreUnavailableError`` if it cannot be reached."""
    if kind == "embedded":
        from dolphin.adapters.sqlite_store import EmbeddedStore

        return EmbeddedStore(embedded_path(path))
    if kind == "hazelcast":
        from dolphin.adapters.hazelcast_store import HazelcastStore

        return HazelcastStore(list(members) if members else None, cluster or None, **hazelcast_kw)
    raise ValueError(f"feature store kind {kind!r}: expected embedded or hazelcast")


def open_store_from_env(env=None, **hazelcast_kw) -> FeatureStore:
    """The feature store the environment configures (module docstring)."""
    cfg = store_config_from_env(env)
    return open_store(cfg.kind, path=cfg.path, members=cfg.members, cluster=cfg.cluster, **hazelcast_kw)


def open_cached_store(kind: str, *, path=None, members=None, cluster: str | None = None, max_age_s: float = 1.0,
                      maps=None, **hazelcast_kw) -> FeatureStore:
    """``open_store`` under a ``NearCachedStore`` (``maps``: default DOLPHIN_FEATURES only). The adapter is
    opened without its own near cache: two caches invalidated by different paths (entry events vs the
    member's batched invalidations) could re-cache an old value."""
    from dolphin.adapters.near_cache import NearCachedStore

    if kind == "hazelcast":
        hazelcast_kw["near_cache"] = False
    inner = open_store(kind, path=path, members=members, cluster=cluster, **hazelcast_kw)
    try:
        return NearCachedStore(inner, max_age_s=max_age_s, **({} if maps is None else {"maps": maps}))
    except BaseException:
        inner.close()
        raise


def open_cached_store_from_env(env=None, **kw) -> FeatureStore:
    """``open_store_from_env`` under the parsed-record near cache (``open_cached_store``)."""
    cfg = store_config_from_env(env)
    return open_cached_store(cfg.kind, path=cfg.path, members=cfg.members, cluster=cfg.cluster, **kw)
